#!/usr/bin/env bash
# The packet-path benchmark: SIP MESSAGE transactions/s through iwf, against
# the raw kernel -> tap -> DPDK packet ceiling measured in the same run, and their ratio.
#
#   sudo scripts/bench.sh          release build, measure, append rows to BENCHMARKS.md
#
# 1. ceiling: dpdk-testpmd --forward-mode=rxonly on a net_tap port (its own file prefix,
#    --no-huge); a UDP flood of MESSAGE-sized datagrams (python, one socket, as fast as
#    the kernel takes them) into the tap's kernel side for CEILING_S seconds; the
#    ceiling is testpmd's RX-packets over that time.
# 2. SIP: the lab (scripts/lab.sh up, release binary, config/lab.toml with a larger
#    server table: every transaction lives 64*T1 = 32 s); sipp in iwf-conv sends MESSAGEs
#    (scripts/sipp/message.xml, answered 404) at increasing rates (-r, -m bounded); a
#    step counts when at most 0.1% of its calls failed; the figure is the highest
#    completed rate (successful calls / wall time of the step).
# 3. SMPP: in the same lab, `iwf-peer esme` in iwf-legacy binds to iwf (smsca, SMPP over
#    iwf's userspace TCP, one worker lcore) and submits SMPP_COUNT submit_sm with at most
#    SMPP_WINDOW outstanding, to a destination that is no number: iwf's flows refuse each
#    at once (ESME_RINVDSTADR), so the figure is the SMPP transport (TCP, framing,
#    sessions, the flows' first look) without the SIP leg; the SMSC double answers ROK;
#    then the same client against `iwf-peer smsc` on the kernel stack in the same
#    namespace (kernel TCP over loopback: no tap). Figure: PDUs/s (requests + responses)
#    of each, and iwf's over the kernel's.
# e2e: the mission end to end in the same lab: `iwf-peer esme` as smsc-a submits
#    E2E_COUNT messages asking for receipts (window E2E_WINDOW); `iwf-peer ua` in iwf-conv
#    answers each SIP MESSAGE 200 and sends the delivery IMDN back; the driver matches
#    every deliver_sm receipt to the message_id it was given. Figures: receipts/s and
#    submit → receipt p50 / p99 (hdrhistogram).
# load: `iwf-peer load` (the load generator) plays smsc-a and smsc-b (window 64 each, the
#    text mix short 70% / long 3-part 20% / UCS-2 2-part 10%, to 1000 converged users) and
#    the converged side, for LOAD_S seconds as fast as the windows allow: receipts/s (every
#    receipt matched at the system that sent its part) and submit → receipt p99; then again
#    at half that load for the p99 there. iwf's CPU time per receipt = its worker's
#    non-empty polls (busy_ns of both ports) + the CPU time of every other iwf thread
#    (store, control, admin), over the receipts.
# mms: the load generator's MMS centre (mmsc-m) relays MMS with a 30 KiB picture over 4
#    SMTP connections as fast as iwf answers, beside smsc-a and smsc-b at 200 messages/s:
#    MMS/s whose delivery reports came back to the centre, and forward → report p50/p99.
# originate: converged → legacy: the load generator's converged side sends MESSAGEs asking
#    for delivery notifications (closed loop, 64 awaiting their notification) through iwf
#    to smsc-c, which the load generator also plays (answers, sends the receipt); every
#    notification is matched: notifications/s, MESSAGE → notification p99, CPU per
#    notification. With the baseline part, again at the baseline's comfortable load.
# baseline: the same converged → legacy measurement through Kamailio + Kannel
#    (scripts/baseline.sh, pinned to BASE_CPUS), before iwf's lab is up: the iwf / baseline
#    ratios of notifications/s, p99 at the baseline's comfortable load (half its maximum)
#    and CPU time per notification.
# rss: iwf's resident memory (VmRSS) and its correlation entries (iwf_table_entries
#    {table="correlation"}) every 30 s under RSS_RATE messages/s from the legacy systems and
#    RSS_ORIGINATE converged → legacy messages/s (each leaves a correlation entry that must
#    go once its receipt came and it lingered) for RSS_S seconds (default 600): after
#    warm-up, at the end, and the growth.
# memory: bytes per pending correlation entry at 1 M entries (cargo bench --bench memory).
# scaling: `iwf scaling`: the receipt path on 1, 2, 4, 8 worker lcores over a DPDK net_ring
#    port (frames circulating in memory, no NIC or tap limit: rx_burst, checksums, SIP/CPIM/
#    IMDN parse, tag verify, deliver_sm into the shared lanes, drained by their owners,
#    tx_burst), as many as the machine has CPUs; and the same path without DPDK on pinned
#    threads (cargo bench --bench scaling). Receipts/s and efficiency = receipts/s(N) /
#    (N · receipts/s(1)).
# 4. ratio = transactions/s / ceiling packets/s (one request in per transaction, as the
#    ceiling counts packets in); rows (date, machine, figure, value, ratio) appended to
#    BENCHMARKS.md.
#
# Stops by itself (each tool under `timeout`, the whole run under BENCH_LIMIT_S) and
# cleans up on every exit (lab down, testpmd, its tap and runtime directory).
# Environment: CARGO_TARGET_DIR, IWF_NO_BUILD=1, BENCH_RATES ("2000 5000 ..."),
# CEILING_S (5), STEP_S (4), BENCH_LIMIT_S (600 + RSS_S), BENCH_PARTS ("ceiling sip smpp
# e2e load mms originate baseline rss cluster memory scaling": which figures to measure),
# SMPP_COUNT (300000), SMPP_WINDOW (10), E2E_COUNT (20000), E2E_WINDOW (64), LOAD_S (10),
# RSS_S (600), RSS_RATE (2000), BASE_CPUS (1), CLUSTER_RATE (300 messages/s).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (taps, namespaces, DPDK): sudo scripts/bench.sh" >&2; exit 1; }
for t in dpdk-testpmd sipp python3 ip; do
    command -v "$t" >/dev/null || { echo "bench: $t missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
# The build, and the memory and scaling benches, run cargo: with sudo, root's PATH may
# lack it (sudo env PATH="$PATH" scripts/bench.sh).
command -v cargo >/dev/null || { echo "bench: cargo not on PATH (sudo env PATH=\"\$PATH\" scripts/bench.sh)" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-target}
RATES=${BENCH_RATES:-"2000 5000 10000 15000 20000 30000 40000"}
PARTS=${BENCH_PARTS:-"ceiling sip smpp e2e load mms originate baseline rss cluster memory scaling"}
LOAD_S=${LOAD_S:-10}
CLUSTER_RATE=${CLUSTER_RATE:-300}
RSS_S=${RSS_S:-600}
RSS_RATE=${RSS_RATE:-2000}
RSS_ORIGINATE=${RSS_ORIGINATE:-400}
E2E_COUNT=${E2E_COUNT:-20000}
SMPP_COUNT=${SMPP_COUNT:-300000}
SMPP_WINDOW=${SMPP_WINDOW:-10}
CEILING_S=${CEILING_S:-5}
STEP_S=${STEP_S:-4}
LIMIT_S=${BENCH_LIMIT_S:-$((600 + RSS_S))}
OUT=target/bench
PMD_PREFIX=iwf-bench-pmd
PMD_TAP=iwf-bench0
PAYLOAD_LEN=450 # about the size of scripts/sipp/message.xml's MESSAGE
START=$(date +%s)
mkdir -p "$OUT"

say() { echo "bench: $*"; }
want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
left() { echo $((LIMIT_S - ($(date +%s) - START))); }
# About how long each part takes (seconds, on the lab's 2-vCPU VM): the progress line
# of each part says which of how many it is, and when the run should end.
estimate() {
    case $1 in
        ceiling) echo $((CEILING_S + 10)) ;;
        sip) echo $(($(echo "$RATES" | wc -w) * (STEP_S + 8))) ;;
        smpp) echo 25 ;;
        e2e) echo 20 ;;
        load) echo $((5 * LOAD_S + 25)) ;;
        mms) echo $((LOAD_S + 10)) ;;
        originate) echo $((2 * LOAD_S + 15)) ;;
        baseline) echo 90 ;;
        rss) echo $((RSS_S + 10)) ;;
        memory) echo 40 ;;
        scaling) echo 40 ;;
        cluster) echo $((2 * LOAD_S + 70)) ;;
        *) echo 10 ;;
    esac
}
DONE_PARTS=""
# part NAME: the progress line as part NAME starts (parts in PARTS order).
part() {
    local n=0 i=0 rest=0 p
    for p in $PARTS; do
        n=$((n + 1))
        case " $DONE_PARTS " in *" $p "*) continue ;; esac
        [ "$p" = "$1" ] && i=$n
        rest=$((rest + $(estimate "$p")))
    done
    DONE_PARTS="$DONE_PARTS $1"
    say "[$i/$n] $1: about $(estimate "$1") s; $(($(date +%s) - START)) s so far, about ${rest} s left (ETA $(date -d "@$(($(date +%s) + rest))" +%H:%M:%S))"
}

PMD_PID=""
SMSC_PID=""
RSS_LOAD_PID=""
BASELINE_UP=""
cleanup() {
    set +e
    if [ -n "$SMSC_PID" ] && kill -0 "$SMSC_PID" 2>/dev/null; then kill -TERM "$SMSC_PID" 2>/dev/null; fi
    exec 7>&- 2>/dev/null
    if [ -n "$PMD_PID" ] && kill -0 "$PMD_PID" 2>/dev/null; then kill -KILL "$PMD_PID" 2>/dev/null; fi
    # $PMD_PID is timeout's pid; testpmd itself is its child: find it by its file prefix.
    pkill -KILL -f -- "--file-prefix $PMD_PREFIX" 2>/dev/null
    ip link del "$PMD_TAP" 2>/dev/null
    rm -rf "/var/run/dpdk/$PMD_PREFIX" "$OUT/pmd.fifo" /var/run/dpdk/iwf-scaling-*
    if [ -n "$RSS_LOAD_PID" ] && kill -0 "$RSS_LOAD_PID" 2>/dev/null; then kill -TERM "$RSS_LOAD_PID" 2>/dev/null; fi
    if [ -n "$BASELINE_UP" ]; then scripts/baseline.sh down >/dev/null 2>&1; fi
    IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${IWF_NO_BUILD:-}" ]; then
    say "release build"
    cargo build --release --quiet --bin iwf --bin iwf-peer
    if want memory || want scaling; then cargo bench --quiet --no-run --bench memory --bench scaling 2>/dev/null; fi
fi
IWF_BIN=$TARGET/release/iwf
PEER_BIN=$TARGET/release/iwf-peer
[ -x "$IWF_BIN" ] || { echo "bench: no release binary at $IWF_BIN" >&2; exit 1; }
if want smpp || want e2e || want load || want mms || want originate || want baseline || want rss || want cluster; then [ -x "$PEER_BIN" ] || { echo "bench: no release binary at $PEER_BIN" >&2; exit 1; }; fi
IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null 2>&1 || true

# --- 1. the tap ceiling ------------------------------------------------------------
CEILING=0
if want ceiling; then
part ceiling
say "ceiling: dpdk-testpmd rxonly on net_tap, ${CEILING_S} s of ${PAYLOAD_LEN}-byte UDP"
rm -f "$OUT/pmd.fifo"
mkfifo "$OUT/pmd.fifo"
stdbuf -oL timeout -s KILL $((CEILING_S + 30)) dpdk-testpmd -l 0,1 --no-huge -m 512 \
    --file-prefix "$PMD_PREFIX" --no-pci --vdev="net_tap0,iface=$PMD_TAP" --log-level=notice -- \
    -i --forward-mode=rxonly --nb-cores=1 --total-num-mbufs=8191 \
    <"$OUT/pmd.fifo" >"$OUT/testpmd.log" 2>&1 &
PMD_PID=$!
exec 7>"$OUT/pmd.fifo"
for _ in $(seq 1 100); do ip link show "$PMD_TAP" >/dev/null 2>&1 && break; sleep 0.1; done
ip link show "$PMD_TAP" >/dev/null 2>&1 || { echo "bench: testpmd made no tap (see $OUT/testpmd.log)" >&2; exit 1; }
ip addr add 198.18.9.1/24 dev "$PMD_TAP"
ip link set "$PMD_TAP" up
ip neigh replace 198.18.9.2 lladdr 02:00:00:00:09:02 dev "$PMD_TAP"
echo "start" >&7
sleep 1
echo "clear port stats all" >&7
sleep 0.5
SENT=$(taskset -c 0 python3 - "$CEILING_S" "$PAYLOAD_LEN" <<'EOF'
import socket, sys, time
seconds, size = float(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"M" * size
n, t0 = 0, time.monotonic()
end = t0 + seconds
while time.monotonic() < end:
    for _ in range(500):
        try:
            s.sendto(payload, ("198.18.9.2", 5060))
            n += 1
        except OSError:
            pass
print(n, time.monotonic() - t0)
EOF
)
echo "show port stats 0" >&7
sleep 1
echo "stop" >&7
sleep 0.5
echo "quit" >&7
exec 7>&-
for _ in $(seq 1 50); do kill -0 "$PMD_PID" 2>/dev/null || break; sleep 0.1; done
PMD_RX=$(grep -m1 -o 'RX-packets: *[0-9]*' "$OUT/testpmd.log" | grep -o '[0-9]*$' || echo 0)
read -r SENT_N SENT_S <<<"$SENT"
CEILING=$(python3 -c "print(round($PMD_RX / $SENT_S))")
say "ceiling: testpmd received $PMD_RX of $SENT_N datagrams offered in ${SENT_S%.*} s: $CEILING packets/s"
[ "$PMD_RX" -gt 0 ] || { echo "bench: testpmd received nothing (see $OUT/testpmd.log)" >&2; exit 1; }
fi

# --- the load generator's runs ----------------------------------------------------------
# jget FILE a.b.c: a value from a JSON report (0 when absent).
jget() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null || echo 0
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else (v or {}).get(k)
print(0 if v is None else (round(v) if isinstance(v, float) else v))
PY
}
# iwf's CPU time so far, ns: its worker's non-empty polls (busy_ns on the last stats line
# of each port: idle polls of a busy-polling core are not work) plus the CPU time of every
# other iwf thread (store, control, admin, EAL helpers).
iwf_cpu_ns() {
    sleep 1.2
    local busy other pid
    busy=$(for p in legacy converged; do
        (grep -oE ": stats port=$p .*" target/lab/iwf.log || true) | tail -n1 | tr ' ' '\n' | awk -F= '$1 == "busy_ns" { print $2 }'
    done | awk '{ s += $1 } END { printf "%.0f", s }')
    pid=$(cat target/lab/iwf.pid 2>/dev/null || echo 0)
    other=$(for t in /proc/"$pid"/task/*; do
        case "$(cat "$t/comm" 2>/dev/null)" in rte-worker-*) ;; *) awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null ;; esac
    done | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.0f", s * 1e9 / hz }')
    echo $((busy + other))
}
# Packets iwf received and sent so far on both ports (rx + tx of their last stats lines).
iwf_packets() {
    for p in legacy converged; do
        (grep -oE ": stats port=$p .*" target/lab/iwf.log || true) | tail -n1 | tr ' ' '\n' | awk -F= '$1 == "rx" || $1 == "tx" { print $2 }'
    done | awk '{ s += $1 } END { printf "%.0f", s }'
}
# load_cmd NAME SECONDS WHERE...: the load generator command line (WHERE: how to reach the
# system under test), SECONDS of load then up to 10 s of drain, report in $OUT/load-NAME.json.
load_cmd() {
    local name=$1 secs=$2
    shift 2
    LOAD_CMD=(timeout $((secs + 120)) "$@" --duration "$secs" --drain 10 --progress-ms 5000 --json "$OUT/load-$name.json")
}
# The load generator against the lab: the legacy systems and SMSC in iwf-legacy, the
# converged side in iwf-conv.
LAB_LOAD=("$PEER_BIN" load --legacy-netns iwf-legacy --converged-netns iwf-conv --ua-listen 198.18.2.1:5060)
# run_load NAME SECONDS ARGS...: a lab run, its text report shown.
run_load() {
    local name=$1 secs=$2
    shift 2
    load_cmd "$name" "$secs" "${LAB_LOAD[@]}"
    "${LOAD_CMD[@]}" "$@" >"$OUT/load-$name.txt" 2>"$OUT/load-$name.progress" || true
    sed 's/^/bench:   /' "$OUT/load-$name.txt"
}
# --- baseline: Kamailio + Kannel, converged → legacy with receipts ------------------------
# Before iwf's lab is up: its busy-polling worker would share BASE_CPUS with the chain.
BASE_NPS=0
BASE_P99=0
BASE_NS=0
BASE_COMFORT=0
BASE_COMFORT_P99=0
BASE_CPUS=${BASE_CPUS:-1}
# CPU time of the chain's processes so far, ns (every process started in namespace iwf-base
# but the SMSC double: kamailio, bearerbox, smsbox).
base_cpu_ns() {
    local pids
    pids=$(ip netns pids iwf-base 2>/dev/null || true)
    for p in $pids; do
        case "$(cat /proc/"$p"/comm 2>/dev/null)" in iwf-peer) ;; *) awk '{ print $14 + $15 }' /proc/"$p"/stat 2>/dev/null ;; esac
    done | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.0f", s * 1e9 / hz }'
}
if want baseline; then
    part baseline
    say "baseline: Kamailio + Kannel in namespace iwf-base, pinned to CPU $BASE_CPUS (scripts/baseline.sh)"
    PEER_BIN="$PEER_BIN" BASE_CPUS="$BASE_CPUS" scripts/baseline.sh up >"$OUT/baseline-up.log" 2>&1 ||
        { cat "$OUT/baseline-up.log" >&2; echo "bench: the baseline did not come up" >&2; exit 1; }
    BASELINE_UP=1
    base_load() { # NAME ARGS...
        local name=$1
        shift
        load_cmd "$name" "$LOAD_S" ip netns exec iwf-base "$PEER_BIN" load --ua-listen 127.0.0.1:5062 \
            --originate-next-hop 127.0.0.1:5060
        "${LOAD_CMD[@]}" "$@" >"$OUT/load-$name.txt" 2>"$OUT/load-$name.progress" || true
        sed 's/^/bench:   /' "$OUT/load-$name.txt"
    }
    c0=$(base_cpu_ns)
    base_load base-max --originate-window 64
    c1=$(base_cpu_ns)
    BASE_NPS=$(jget "$OUT/load-base-max.json" converged.notifications_per_s)
    BASE_P99=$(jget "$OUT/load-base-max.json" converged.notification_latency_us.p99)
    n=$(jget "$OUT/load-base-max.json" converged.delivered_back)
    BASE_NS=$(((c1 - c0) / (n > 0 ? n : 1)))
    BASE_COMFORT=$((BASE_NPS / 2 > 0 ? BASE_NPS / 2 : 1))
    base_load base-comfort --originate-rate "$BASE_COMFORT"
    BASE_COMFORT_P99=$(jget "$OUT/load-base-comfort.json" converged.notification_latency_us.p99)
    say "baseline: $BASE_NPS notifications/s (p99 $BASE_P99 µs), $BASE_NS ns CPU per notification; at $BASE_COMFORT/s p99 $BASE_COMFORT_P99 µs"
    scripts/baseline.sh down >/dev/null 2>&1 || true
    BASELINE_UP=""
    [ "$BASE_NPS" -gt 0 ] || { echo "bench: the baseline measured nothing (see $OUT/load-base-max.*, target/baseline/)" >&2; exit 1; }
fi

# --- 2. SIP MESSAGE transactions/s through iwf ---------------------------------------
sed -e 's/^server_transactions = .*/server_transactions = 524288 # bench: 32 s of Timer J at 16 k\/s/' \
    -e 's/^server_slot_bytes = .*/server_slot_bytes = 768/' \
    -e 's/^options_interval_ms = .*/options_interval_ms = 30000/' \
    -e 's/^stats_interval_ms = .*/stats_interval_ms = 1000/' \
    -e 's/^client_transactions = .*/client_transactions = 65536 # bench: (RTT + Timer K 5 s) at 13 k\/s/' \
    -e 's/^window = 10$/window = 64/' config/lab.toml >"$OUT/bench.toml"
if want sip || want smpp || want e2e || want load || want mms || want originate || want rss; then
    say "lab up (release binary, $OUT/bench.toml)"
    IWF_NO_BUILD=1 IWF_BIN="$IWF_BIN" IWF_CONFIG="$OUT/bench.toml" scripts/lab.sh up >"$OUT/lab-up.log" 2>&1 ||
        { cat "$OUT/lab-up.log" >&2; exit 1; }
fi

BEST=0
BEST_RATE=0
want sip || RATES=""
# The worker's time on non-empty polls of the converged port (busy_ns, printed by the
# control thread every second): how much of its core iwf actually needed.
busy_ns() {
    sleep 1.2
    (grep -oE ': stats port=converged .*' target/lab/iwf.log || true) | tail -n1 | tr ' ' '\n' |
        awk -F= '$1 == "busy_ns" { print $2 }' | tail -n1
}
BEST_BUSY_SHARE=0
BEST_NS_PER_TX=0
want sip && part sip
echo "offered,completed" >"$OUT/sip-steps.csv"
for rate in $RATES; do
    [ "$(left)" -gt $((STEP_S + 40)) ] || { say "time box reached, no more steps"; break; }
    calls=$((rate * STEP_S))
    screen="$ROOT/$OUT/sipp-$rate.screen"
    rm -f "$screen"
    b0=$(busy_ns)
    t0=$(date +%s.%N)
    set +e
    (cd "$OUT" && ip netns exec iwf-conv timeout $((STEP_S * 4 + 30)) sipp 198.18.2.2:5060 \
        -sf "$ROOT/scripts/sipp/message.xml" -i 198.18.2.1 -p 5062 -r "$rate" -m "$calls" \
        -l $((rate * 2)) -nostdin -timeout $((STEP_S * 4 + 20))s -trace_screen -screen_file "$screen" \
        >/dev/null 2>&1)
    rc=$?
    set -e
    t1=$(date +%s.%N)
    ok=$( (grep 'Successful call' "$screen" 2>/dev/null || true) | tail -n1 | awk -F'|' '{gsub(/ /,"",$3); print $3+0}')
    failed=$( (grep 'Failed call' "$screen" 2>/dev/null || true) | tail -n1 | awk -F'|' '{gsub(/ /,"",$3); print $3+0}')
    ok=${ok:-0}
    failed=${failed:-0}
    b1=$(busy_ns)
    tps=$(python3 -c "print(round($ok / ($t1 - $t0)))")
    good=$(python3 -c "print(int($ok > 0 and $failed <= 0.001 * ($ok + $failed)))")
    share=$(python3 -c "print(round((${b1:-0} - ${b0:-0}) / 1e9 / ($t1 - $t0), 3))")
    ns_tx=$(python3 -c "print(round((${b1:-0} - ${b0:-0}) / max($ok, 1)))")
    say "rate $rate/s: $ok successful, $failed failed, sipp exit $rc, $tps transactions/s; iwf worker busy $share of its core, $ns_tx ns per transaction"
    echo "$rate,$tps" >>"$OUT/sip-steps.csv"
    if [ "$good" = 1 ] && [ "$tps" -gt "$BEST" ]; then
        BEST=$tps
        BEST_RATE=$rate
        BEST_BUSY_SHARE=$share
        BEST_NS_PER_TX=$ns_tx
    fi
    [ "$good" = 1 ] || { say "more than 0.1% failed: stop"; break; }
    # Offered faster than completed by more than 10%: the rate is no longer sustained.
    if [ "$tps" -lt $((rate * 9 / 10)) ]; then say "completed < 90% of the offered rate: stop"; break; fi
done
sleep 1.5
if want sip; then
    STATS=$( (grep -oE ': stats port=converged .*' target/lab/iwf.log || true) | tail -n1 | tr ' ' '\n' |
        (grep -E '^(rx|tx|sip\.(rx_message|tx_4xx|rejected_table_full|retransmissions_absorbed)|drop\..*)=' || true) | tr '\n' ' ')
    say "iwf converged port: $STATS"
fi

# --- 3. SMPP PDUs/s through iwf's userspace TCP vs the kernel's ------------------------
SMPP_IWF=0
SMPP_KERNEL=0
pdus_per_s() { python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read().strip().splitlines()[-1]).get("pdus_per_s", 0)))' 2>/dev/null || echo 0; }
if want smpp; then
    part smpp
    esme() { # connect system_id password
        ip netns exec iwf-legacy timeout 90 "$PEER_BIN" esme --connect "$1" --system-id "$2" --password "$3" \
            --count "$SMPP_COUNT" --window "$SMPP_WINDOW" --registered-delivery 0 --receipt-wait-ms 0 --timeout 80 \
            --destination 44NOTANUMBER \
            2>>"$OUT/esme.err" || true
    }
    say "SMPP: iwf-peer esme -> iwf 198.18.1.2:2775 ($SMPP_COUNT submit_sm, window $SMPP_WINDOW)"
    IWF_JSON=$(esme 198.18.1.2:2775 smsca pwa)
    echo "$IWF_JSON" >"$OUT/esme-iwf.json"
    SMPP_IWF=$(echo "$IWF_JSON" | pdus_per_s)
    ip netns exec iwf-legacy timeout 120 "$PEER_BIN" smsc --listen 198.18.1.1:2777 --system-id bench \
        --password pwbench --window "$SMPP_WINDOW" --duration 100 >"$OUT/smsc.json" 2>"$OUT/smsc.err" &
    SMSC_PID=$!
    for _ in $(seq 1 50); do grep -q listening "$OUT/smsc.err" 2>/dev/null && break; sleep 0.1; done
    say "SMPP: the same client -> iwf-peer smsc 198.18.1.1:2777 (kernel TCP)"
    KERNEL_JSON=$(esme 198.18.1.1:2777 bench pwbench)
    echo "$KERNEL_JSON" >"$OUT/esme-kernel.json"
    SMPP_KERNEL=$(echo "$KERNEL_JSON" | pdus_per_s)
    kill -TERM "$SMSC_PID" 2>/dev/null || true
    wait "$SMSC_PID" 2>/dev/null || true
    SMSC_PID=""
    sleep 1.5
    STATS=$( (grep -oE ': stats port=legacy .*' target/lab/iwf.log || true) | tail -n1 | tr ' ' '\n' |
        (grep -E '^(rx|tx|tcp\..*|smpp\.(pdus_in|pdus_out|rx_t_appn|throttled)|drop\..*)=' || true) | tr '\n' ' ')
    say "iwf legacy port: $STATS"
    say "SMPP: iwf $SMPP_IWF PDUs/s, kernel $SMPP_KERNEL PDUs/s"
    [ "$SMPP_IWF" -gt 0 ] && [ "$SMPP_KERNEL" -gt 0 ] || { echo "bench: an SMPP run measured nothing (see $OUT/esme*.json, $OUT/esme.err)" >&2; exit 1; }
fi
# --- 3b. the mission end to end ----------------------------------------------------------
# `iwf-peer esme` as smsc-a (window E2E_WINDOW) submits E2E_COUNT messages asking for
# receipts; iwf turns each into a SIP MESSAGE; `iwf-peer ua` in iwf-conv (the SIP core
# and its users) answers 200 and sends the delivery notification back; iwf routes it by
# the tag to smsc-a's lane and sends the deliver_sm receipt, which the driver matches to
# the message_id it was given. Figures: receipts/s, submit → receipt latency.
E2E_RPS=0
E2E_P50=0
E2E_P99=0
E2E_WINDOW=${E2E_WINDOW:-64}
if want e2e; then
    part e2e
    ip netns exec iwf-conv timeout 200 "$PEER_BIN" ua --listen 198.18.2.1:5060 --duration 150 \
        >"$OUT/ua.json" 2>"$OUT/ua.err" &
    UA_PID=$!
    sleep 0.5
    say "end to end: iwf-peer esme (smsca, $E2E_COUNT submit_sm asking for receipts, window $E2E_WINDOW) -> iwf -> iwf-peer ua -> IMDN -> iwf -> receipt"
    E2E_JSON=$(ip netns exec iwf-legacy timeout 150 "$PEER_BIN" esme --connect 198.18.1.2:2775 --system-id smsca --password pwa \
        --count "$E2E_COUNT" --window "$E2E_WINDOW" --registered-delivery 1 --destination 447900000001 \
        --receipt-wait-ms 10000 --timeout 140 2>>"$OUT/esme.err" || true)
    echo "$E2E_JSON" >"$OUT/esme-e2e.json"
    kill -TERM "$UA_PID" 2>/dev/null || true
    wait "$UA_PID" 2>/dev/null || true
    read -r E2E_RPS E2E_P50 E2E_P99 E2E_MATCHED < <(echo "$E2E_JSON" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
l = d.get("receipt_latency_us", {})
print(round(d.get("receipts_per_s", 0)), l.get("p50", 0), l.get("p99", 0), d.get("receipts_matched", 0))' 2>/dev/null || echo "0 0 0 0")
    say "end to end: $E2E_MATCHED receipts matched, $E2E_RPS receipts/s, submit -> receipt p50 $E2E_P50 us, p99 $E2E_P99 us"
    say "iwf flows: $(grep -oE ': flows .*' target/lab/iwf.log | cut -c3- | tail -n1)"
    [ "$E2E_RPS" -gt 0 ] || { echo "bench: the end-to-end run measured nothing (see $OUT/esme-e2e.json, $OUT/ua.json, target/lab/iwf.log)" >&2; exit 1; }
fi
# --- load: legacy → converged with the load generator --------------------------------------
LOAD_RPS=0
LOAD_P99=0
LOAD_NS=0
HALF_RPS=0
HALF_P99=0
LOAD_MISSING=0
LOAD_PKTS=0
LOAD_PPS=0
if want load; then
    part load
    say "load: smsc-a + smsc-b (window 64, text mix) -> iwf -> converged side, ${LOAD_S} s as fast as the windows allow"
    c0=$(iwf_cpu_ns)
    p0=$(iwf_packets)
    run_load max "$LOAD_S" --system smsca:pwa --system smscb:pwb --rate 0
    c1=$(iwf_cpu_ns)
    p1=$(iwf_packets)
    LOAD_RPS=$(jget "$OUT/load-max.json" legacy.receipts_per_s)
    LOAD_P99=$(jget "$OUT/load-max.json" legacy.receipt_latency_us.p99)
    n=$(jget "$OUT/load-max.json" legacy.receipts_matched)
    LOAD_MISSING=$(( $(jget "$OUT/load-max.json" legacy.receipts_missing) + $(jget "$OUT/load-max.json" legacy.receipts_misrouted) ))
    LOAD_NS=$(((c1 - c0) / (n > 0 ? n : 1)))
    LOAD_PKTS=$(python3 -c "print(round(($p1 - $p0) / max($n, 1), 1))")
    LOAD_PPS=$(python3 -c "print(round($LOAD_RPS * ($p1 - $p0) / max($n, 1)))")
    parts=$(jget "$OUT/load-max.json" legacy.parts)
    msgs=$(jget "$OUT/load-max.json" legacy.messages)
    half=$(python3 -c "print(max(1, round($LOAD_RPS / 2 / max($parts, 1) * max($msgs, 1))))")
    say "load: at half that ($half messages/s)"
    run_load half "$LOAD_S" --system smsca:pwa --system smscb:pwb --rate "$half"
    HALF_RPS=$(jget "$OUT/load-half.json" legacy.receipts_per_s)
    HALF_P99=$(jget "$OUT/load-half.json" legacy.receipt_latency_us.p99)
    # The curve for the plots: a quarter and three quarters of the maximum too; offered
    # load in receipts/s (messages/s times the parts each asks receipts for; the
    # maximum's offered load is what it completed: its windows close the loop).
    for share in 25 75; do
        run_load "q$share" "$LOAD_S" --system smsca:pwa --system smscb:pwb --rate $((half * share / 50))
    done
    python3 - "$OUT" "$half" "$parts" "$msgs" >"$OUT/load-sweep.csv" <<'PY'
import json, sys
out, half, parts, msgs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
per_msg = parts / msgs if msgs else 1
print("offered,receipts_per_s,p50_us,p90_us,p99_us,p999_us")
for name, rate in (("q25", half // 2), ("half", half), ("q75", half * 3 // 2), ("max", None)):
    try:
        d = json.load(open(f"{out}/load-{name}.json"))["legacy"]
    except (OSError, ValueError, KeyError):
        continue
    l = d.get("receipt_latency_us", {})
    offered = d.get("receipts_per_s", 0) if rate is None else rate * per_msg
    print(f"{offered:.0f},{d.get('receipts_per_s', 0):.0f},{l.get('p50', 0)},{l.get('p90', 0)},{l.get('p99', 0)},{l.get('p999', 0)}")
PY
    say "load: $LOAD_RPS receipts/s (p99 $LOAD_P99 µs, $LOAD_MISSING missing or misrouted), $LOAD_PKTS packets per receipt ($LOAD_PPS packets/s), $LOAD_NS ns iwf CPU per receipt; at half: $HALF_RPS receipts/s, p99 $HALF_P99 µs"
    [ "$LOAD_RPS" -gt 0 ] || { echo "bench: the load run measured nothing (see $OUT/load-max.*)" >&2; exit 1; }
fi
# --- mms: MMS from mmsc-m with a 30 KiB picture, beside the SMS load ------------------------
MMS_PS=0
MMS_P50=0
MMS_P99=0
MMS_MISSING=0
MMS_SMS_RPS=0
if want mms; then
    part mms
    say "mms: mmsc-m (4 SMTP connections, 30 KiB pictures, as fast as iwf answers) beside smsc-a + smsc-b at 200 messages/s"
    run_load mms "$LOAD_S" --system smsca:pwa --system smscb:pwb --rate 200 \
        --mms-rate 100000 --mms-connections 4 --mms-image-kb 30
    MMS_PS=$(jget "$OUT/load-mms.json" mms.mms_per_s)
    MMS_P50=$(jget "$OUT/load-mms.json" mms.report_latency_us.p50)
    MMS_P99=$(jget "$OUT/load-mms.json" mms.report_latency_us.p99)
    MMS_MISSING=$(jget "$OUT/load-mms.json" mms.missing)
    MMS_SMS_RPS=$(jget "$OUT/load-mms.json" legacy.receipts_per_s)
    say "mms: $MMS_PS MMS/s with their delivery reports back (p50 $MMS_P50 µs, p99 $MMS_P99 µs, $MMS_MISSING missing); SMS beside: $MMS_SMS_RPS receipts/s"
fi
# --- originate: converged → legacy through iwf ----------------------------------------------
ORIG_NPS=0
ORIG_P99=0
ORIG_NS=0
ORIG_COMFORT_P99=0
if want originate; then
    part originate
    say "originate: converged side -> iwf -> smsc-c (played by the load generator) -> receipt -> IMDN back, window 64"
    c0=$(iwf_cpu_ns)
    run_load orig-max "$LOAD_S" --originate-window 64 --smsc-listen 198.18.1.1:2776
    c1=$(iwf_cpu_ns)
    ORIG_NPS=$(jget "$OUT/load-orig-max.json" converged.notifications_per_s)
    ORIG_P99=$(jget "$OUT/load-orig-max.json" converged.notification_latency_us.p99)
    n=$(jget "$OUT/load-orig-max.json" converged.delivered_back)
    ORIG_NS=$(((c1 - c0) / (n > 0 ? n : 1)))
    if [ "$BASE_COMFORT" -gt 0 ]; then
        say "originate: at the baseline's comfortable load ($BASE_COMFORT/s)"
        run_load orig-comfort "$LOAD_S" --originate-rate "$BASE_COMFORT" --smsc-listen 198.18.1.1:2776
        ORIG_COMFORT_P99=$(jget "$OUT/load-orig-comfort.json" converged.notification_latency_us.p99)
    fi
    say "originate: $ORIG_NPS notifications/s (p99 $ORIG_P99 µs), $ORIG_NS ns iwf CPU per notification; at the baseline's comfortable load p99 $ORIG_COMFORT_P99 µs"
    [ "$ORIG_NPS" -gt 0 ] || { echo "bench: the originate run measured nothing (see $OUT/load-orig-max.*)" >&2; exit 1; }
fi
# --- rss: resident memory under steady load -------------------------------------------------
RSS_WARM=0
RSS_END=0
CORR_WARM=0
CORR_END=0
if want rss; then
    part rss
    say "rss: $RSS_RATE messages/s for $RSS_S s, iwf's VmRSS every 30 s ($OUT/rss.csv)"
    pid=$(cat target/lab/iwf.pid)
    # timeout itself in the background (not a subshell): cleanup's TERM reaches it, and it
    # passes the signal on to the load generator.
    load_cmd rss "$RSS_S" "${LAB_LOAD[@]}"
    "${LOAD_CMD[@]}" --system smsca:pwa --system smscb:pwb --rate "$RSS_RATE" \
        --originate-rate "$RSS_ORIGINATE" --smsc-listen 198.18.1.1:2776 \
        >"$OUT/load-rss.txt" 2>"$OUT/load-rss.progress" &
    RSS_LOAD_PID=$!
    echo "seconds,vmrss_kb,correlation_entries" >"$OUT/rss.csv"
    t0=$(date +%s)
    while kill -0 "$RSS_LOAD_PID" 2>/dev/null; do
        t=$(($(date +%s) - t0))
        kb=$(awk '/^VmRSS/ { print $2 }' /proc/"$pid"/status 2>/dev/null || echo 0)
        corr=$(curl -s --max-time 2 127.0.0.1:9870/metrics | awk '/^iwf_table_entries\{table="correlation"\}/ { print $2 }')
        corr=${corr:-0}
        [ "$t" -le "$RSS_S" ] && echo "$t,$kb,$corr" >>"$OUT/rss.csv"
        [ "$t" -ge 60 ] && [ "$RSS_WARM" = 0 ] && { RSS_WARM=$kb; CORR_WARM=$corr; }
        [ "$t" -le "$RSS_S" ] && { RSS_END=$kb; CORR_END=$corr; }
        sleep 30 & wait $! || true
    done
    wait "$RSS_LOAD_PID" 2>/dev/null || true
    sed 's/^/bench:   /' "$OUT/load-rss.txt"
    say "rss: ${RSS_WARM} kB after 60 s, ${RSS_END} kB at the end ($((RSS_END - RSS_WARM)) kB growth)"
    say "rss: correlation entries ${CORR_WARM} after 60 s, ${CORR_END} at the end"
fi
IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null
# --- cluster: receipts across boxes through JetStream, beside the local path -----------------
# Two boxes on three nats-server nodes (scripts/lab.sh up --cluster). smsc-a and smsc-b
# bind to iwf-2 and send CLUSTER_RATE messages/s; the converged side's notifications go
# to iwf-2 (the local path: lane → deliver_sm), then, in a second run on the same lab, to
# iwf-1, which holds no bind: publish → JetStream (3 replicas) → iwf-2 pulls → deliver_sm
# → ack. The CPU time counts both boxes (workers' non-empty polls and every other
# thread) and every nats-server, per receipt.
CL_LOCAL_RPS=0
CL_LOCAL_P99=0
CL_LOCAL_NS=0
CL_RPS=0
CL_P99=0
CL_NS=0
CL_MISSING=0
CL_PUB_P50=0
CL_PUB_P99=0
CL_IDLE_NS_PER_S=0
cluster_cpu_ns() {
    sleep 1.2
    local busy other
    busy=$(for log in target/lab/iwf.log target/lab/iwf-2.log; do
        for p in legacy converged; do
            (grep -oE ": stats port=$p .*" "$log" || true) | tail -n1 | tr ' ' '\n' | awk -F= '$1 == "busy_ns" { print $2 }'
        done
    done | awk '{ s += $1 } END { printf "%.0f", s }')
    other=$({
        for pid in $(cat target/lab/iwf.pid target/lab/iwf-2.pid 2>/dev/null); do
            for t in /proc/"$pid"/task/*; do
                case "$(cat "$t/comm" 2>/dev/null)" in rte-worker-*) ;; *) awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null ;; esac
            done
        done
        for p in $(pgrep -f 'nats-server -c' || true); do awk '{ print $14 + $15 }' /proc/"$p"/stat 2>/dev/null; done
    } | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.0f", s * 1e9 / hz }')
    echo $((busy + other))
}
# cluster_run NAME NOTIFY_TO: one run; prints receipts/s, p99 µs, CPU ns per receipt (less
# what the same time costs idle: CL_IDLE_NS_PER_S), missing.
cluster_run() {
    local c0 c1 t0 t1 n f="$OUT/load-cluster-$1.json"
    c0=$(cluster_cpu_ns)
    t0=$(date +%s%N)
    load_cmd "cluster-$1" "$LOAD_S" "${LAB_LOAD[@]}"
    "${LOAD_CMD[@]}" --connect 198.18.1.3:2775 --notify-to "$2" --system smsca:pwa --system smscb:pwb \
        --rate "$CLUSTER_RATE" --mix short=100 >"$OUT/load-cluster-$1.txt" 2>"$OUT/load-cluster-$1.progress" || true
    c1=$(cluster_cpu_ns)
    t1=$(date +%s%N)
    n=$(jget "$f" legacy.receipts_matched)
    local busy=$((c1 - c0 - CL_IDLE_NS_PER_S * (t1 - t0) / 1000000000))
    echo "$(jget "$f" legacy.receipts_per_s) $(jget "$f" legacy.receipt_latency_us.p99) $((busy / (n > 0 ? n : 1))) $(($(jget "$f" legacy.receipts_missing) + $(jget "$f" legacy.receipts_misrouted)))"
}
if want cluster; then
    part cluster
    say "cluster: iwf-1 + iwf-2 on three nats-server nodes; smsc-a + smsc-b bound to iwf-2, $CLUSTER_RATE messages/s for $LOAD_S s; notifications to iwf-2 (local), then to iwf-1 (across boxes)"
    IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null 2>&1 || true
    IWF_NO_BUILD=1 IWF_BIN="$IWF_BIN" IWF_CONFIG="$OUT/bench.toml" scripts/lab.sh up --cluster >"$OUT/lab-cluster-up.log" 2>&1 ||
        { cat "$OUT/lab-cluster-up.log" >&2; exit 1; }
    # The admin API wants the lab's token (scripts/lab.sh wrote it).
    cluster_view() { "$IWF_BIN" ctl --token-file target/lab/admin.token --json --admin "$1" cluster 2>/dev/null; }
    for _ in $(seq 1 60); do
        cluster_view 127.0.0.1:9870 | grep -q '"writable": *true' && break
        sleep 1
    done
    # What the two boxes and the NATS nodes cost idle (busy-polling workers excluded:
    # their idle polls are not counted), per second, over 10 s.
    c0=$(cluster_cpu_ns)
    t0=$(date +%s%N)
    sleep 10
    c1=$(cluster_cpu_ns)
    t1=$(date +%s%N)
    CL_IDLE_NS_PER_S=$(((c1 - c0) * 1000000000 / (t1 - t0)))
    read -r CL_LOCAL_RPS CL_LOCAL_P99 CL_LOCAL_NS _ <<<"$(cluster_run local 198.18.2.3:5060)"
    read -r CL_RPS CL_P99 CL_NS CL_MISSING <<<"$(cluster_run across 198.18.2.2:5060)"
    cluster_view 127.0.0.1:9870 >"$OUT/cluster-iwf-1.json" || true
    CL_PUB_P50=$(jget "$OUT/cluster-iwf-1.json" receipts.publish_us_all.p50)
    CL_PUB_P99=$(jget "$OUT/cluster-iwf-1.json" receipts.publish_us_all.p99)
    say "cluster: idle $((CL_IDLE_NS_PER_S / 1000000)) ms CPU per s; local $CL_LOCAL_RPS receipts/s (p99 $CL_LOCAL_P99 µs, $CL_LOCAL_NS ns CPU per receipt); across boxes $CL_RPS receipts/s (p99 $CL_P99 µs, $CL_NS ns, $CL_MISSING missing); JetStream publish p50 / p99 $CL_PUB_P50 / $CL_PUB_P99 µs"
    IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null
fi
# --- memory: bytes per pending correlation entry ---------------------------------------------
MEM_PER_ENTRY=0
if want memory; then
    part memory
    MEM_JSON=$(cargo bench --quiet --bench memory 2>/dev/null | tail -n1 || true)
    echo "$MEM_JSON" >"$OUT/memory.json"
    MEM_PER_ENTRY=$(jget "$OUT/memory.json" bytes_per_entry)
    say "memory: $MEM_PER_ENTRY bytes per pending correlation entry at 1 M entries"
fi
SCALING=""
if want scaling; then
    part scaling
    counts=$(python3 -c "import os; n = os.cpu_count() or 1; print(','.join(str(w) for w in (1, 2, 4, 8) if w <= n))")
    timeout 120 "$IWF_BIN" scaling --workers "$counts" --seconds 3 >"$OUT/scaling.json" 2>"$OUT/scaling.err" ||
        { cat "$OUT/scaling.err" >&2; echo "bench: iwf scaling failed" >&2; exit 1; }
    cargo bench --quiet --bench scaling 2>/dev/null | grep '"figure":"scaling"' >>"$OUT/scaling.json" || true
    SCALING=$(python3 - "$OUT/scaling.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("; ".join(f"{'DPDK rings' if r['figure'] == 'scaling_dpdk_ring' else 'threads'} {r['workers']} workers: "
                f"{round(r['receipts_per_s'])} receipts/s (efficiency {r['efficiency']})" for r in rows if "receipts_per_s" in r))
PY
)
    say "scaling: $SCALING"
fi

# --- 4. report ------------------------------------------------------------------------
MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/  */ /g')
MACHINE="$MODEL, $(nproc) CPUs, $(awk '/MemTotal/ {printf "%d GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
RATIO=$(python3 -c "print(f'{$BEST / $CEILING:.2f}' if $CEILING else '-')")
DATE=$(date -u +%Y-%m-%d)
if [ ! -f BENCHMARKS.md ]; then
    cat >BENCHMARKS.md <<'EOF'
# Benchmarks

Written by `scripts/bench.sh` (one row per figure per run; newest last). The ceiling is
kernel -> net_tap -> DPDK, measured in the same run with `dpdk-testpmd
--forward-mode=rxonly` on one queue, fed MESSAGE-sized UDP datagrams from the kernel side.
The SIP figure is SIP MESSAGE transactions/s through iwf (request in, 404 out, one worker
lcore), sipp in the `iwf-conv` namespace, the highest completed rate with at most 0.1%
failed calls. The ratio is transactions/s over ceiling packets/s. The SMPP rows are one
`iwf-peer esme` bind (window 10) in `iwf-legacy`: through iwf's userspace TCP over the tap,
and against `iwf-peer smsc` on the kernel stack in the same run; their ratio is iwf's over
the kernel's. On a small VM all of them are the VM's (the peers and the tap's kernel side
share the CPUs with iwf), not iwf's.

| date | machine | figure | value | ratio |
|---|---|---|---|---|
EOF
fi
{
    if want ceiling; then
        echo "| $DATE | $MACHINE | kernel→tap→DPDK ceiling (testpmd rxonly, ${PAYLOAD_LEN} B UDP, 1 queue) | $CEILING packets/s | 1.00 |"
    fi
    if want sip; then
        echo "| $DATE | $MACHINE | SIP MESSAGE transactions/s through iwf (sipp -r $BEST_RATE, ≤ 0.1% failed) | $BEST transactions/s | $RATIO |"
        echo "| $DATE | $MACHINE | iwf worker's share of its core spent on packets at that rate (non-empty polls) | $BEST_BUSY_SHARE | |"
        echo "| $DATE | $MACHINE | iwf worker CPU time per SIP MESSAGE transaction (non-empty polls) | $BEST_NS_PER_TX ns | |"
    fi
    if want smpp; then
        SMPP_RATIO=$(python3 -c "print(f'{$SMPP_IWF / $SMPP_KERNEL:.2f}')")
        echo "| $DATE | $MACHINE | SMPP, same client (iwf-peer esme, $SMPP_COUNT submit_sm, window $SMPP_WINDOW) against iwf-peer smsc on the kernel stack (loopback in iwf-legacy) | $SMPP_KERNEL PDUs/s | 1.00 |"
        echo "| $DATE | $MACHINE | SMPP PDUs/s through iwf's userspace TCP (smoltcp, 1 worker lcore; submit_sm → ESME_RINVDSTADR from the flows), ratio to the kernel row | $SMPP_IWF PDUs/s | $SMPP_RATIO |"
    fi
    if want e2e; then
        E2E_RATIO=$(python3 -c "print(f'{$E2E_RPS / $CEILING:.3f}' if $CEILING else '')")
        echo "| $DATE | $MACHINE | receipts/s end to end: submit_sm (iwf-peer esme, window $E2E_WINDOW) → SIP MESSAGE → 200 + delivery IMDN (iwf-peer ua) → deliver_sm receipt matched at the sender; ratio to the tap ceiling when measured | $E2E_RPS receipts/s | $E2E_RATIO |"
        echo "| $DATE | $MACHINE | submit_sm → its receipt back at the sender, p50 / p99 (same run) | $E2E_P50 / $E2E_P99 µs | |"
    fi
    if want load; then
        r=$(python3 -c "print(f'{$LOAD_RPS / $CEILING:.3f}' if $CEILING else '')")
        echo "| $DATE | $MACHINE | receipts/s, load generator: smsc-a + smsc-b (window 64, text mix 70/20/10 short/long/UCS-2) → iwf → converged side → receipts matched at their senders ($LOAD_MISSING missing or misrouted); ratio to the tap ceiling | $LOAD_RPS receipts/s | $r |"
        r=$(python3 -c "print(f'{$LOAD_PPS / $CEILING:.2f}' if $CEILING else '')")
        echo "| $DATE | $MACHINE | packets through iwf's taps at that load ($LOAD_PKTS packets per receipt: SMPP, TCP ACKs, SIP MESSAGE, 200, IMDN, 200, rx + tx), ratio to the tap ceiling | $LOAD_PPS packets/s | $r |"
        echo "| $DATE | $MACHINE | submit → receipt p99 at that load / at half that load ($HALF_RPS receipts/s) | $LOAD_P99 / $HALF_P99 µs | |"
        echo "| $DATE | $MACHINE | iwf CPU time per receipt (worker's non-empty polls + all other iwf threads) | $LOAD_NS ns | |"
    fi
    if want mms; then
        echo "| $DATE | $MACHINE | MMS/s: MM4_forward.REQ (30 KiB picture, 4 SMTP connections) → SIP MESSAGE over TCP → 200 + delivery IMDN → MM4_delivery_report.REQ back at the MMS centre, beside SMS at 200 messages/s ($MMS_SMS_RPS receipts/s; $MMS_MISSING reports missing) | $MMS_PS MMS/s | |"
        echo "| $DATE | $MACHINE | MMS forward → its delivery report at the MMS centre, p50 / p99 (same run) | $MMS_P50 / $MMS_P99 µs | |"
    fi
    if want originate; then
        echo "| $DATE | $MACHINE | converged → legacy: MESSAGE → iwf → submit_sm → SMSC receipt → IMDN back, notifications/s (window 64) | $ORIG_NPS notifications/s | |"
        echo "| $DATE | $MACHINE | converged → legacy: MESSAGE → its notification p99 at that load | $ORIG_P99 µs | |"
        echo "| $DATE | $MACHINE | iwf CPU time per converged → legacy message and its notification | $ORIG_NS ns | |"
    fi
    if want baseline; then
        echo "| $DATE | $MACHINE | baseline Kamailio + Kannel (pinned to CPU $BASE_CPUS), same load generator, converged → legacy notifications/s (window 64) | $BASE_NPS notifications/s | 1.00 |"
        if want originate; then
            r=$(python3 -c "print(f'{$ORIG_NPS / $BASE_NPS:.1f}' if $BASE_NPS else '')")
            echo "| $DATE | $MACHINE | iwf / baseline notifications/s | $ORIG_NPS / $BASE_NPS | $r |"
            r=$(python3 -c "print(f'{$BASE_COMFORT_P99 / $ORIG_COMFORT_P99:.1f}' if $ORIG_COMFORT_P99 else '')")
            echo "| $DATE | $MACHINE | p99 MESSAGE → notification at the baseline's comfortable load ($BASE_COMFORT/s), baseline / iwf | $BASE_COMFORT_P99 / $ORIG_COMFORT_P99 µs | $r |"
            r=$(python3 -c "print(f'{$BASE_NS / $ORIG_NS:.1f}' if $ORIG_NS else '')")
            echo "| $DATE | $MACHINE | CPU time per message and notification, baseline / iwf | $BASE_NS / $ORIG_NS ns | $r |"
        fi
    fi
    if want rss; then
        echo "| $DATE | $MACHINE | iwf VmRSS under $RSS_RATE messages/s legacy → converged and $RSS_ORIGINATE/s converged → legacy for $RSS_S s: after 60 s / at the end (growth) | $RSS_WARM / $RSS_END kB ($((RSS_END - RSS_WARM)) kB) | |"
        echo "| $DATE | $MACHINE | correlation entries (iwf_table_entries) in the same run: after 60 s / at the end | $CORR_WARM / $CORR_END | |"
    fi
    if want scaling; then
        python3 - "$OUT/scaling.json" "$DATE" "$MACHINE" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "receipts_per_s" not in r:
        continue
    if r["figure"] == "scaling_dpdk_ring":
        what = "iwf scaling: receipt path on DPDK net_ring queues (rx_burst → IMDN → tag verify → deliver_sm → shared lanes, every receipt to another core's lane for N > 1 → owner → tx_burst)"
    else:
        what = "receipt path on pinned threads, no DPDK (IMDN → tag verify → deliver_sm → shared lanes, every receipt to another core's lane for N > 1 → owner)"
    print(f"| {sys.argv[2]} | {sys.argv[3]} | {what}, {r['workers']} worker(s); ratio = efficiency vs N × 1 worker "
          f"| {round(r['receipts_per_s'])} receipts/s | {r['efficiency']:.2f} |")
PY
    fi
    if want cluster; then
        r=$(python3 -c "print(f'{$CL_NS / $CL_LOCAL_NS:.2f}' if $CL_LOCAL_NS else '')")
        echo "| $DATE | $MACHINE | CPU time per receipt, two boxes + three nats-server nodes at $CLUSTER_RATE messages/s: the local path (notification to the box holding the bind) / across boxes (to the other box: JetStream publish → pull → deliver_sm → ack; $CL_MISSING missing); ratio across / local | $CL_LOCAL_NS / $CL_NS ns | $r |"
        echo "| $DATE | $MACHINE | submit → receipt p99 in the same runs, local / across boxes ($CL_LOCAL_RPS / $CL_RPS receipts/s) | $CL_LOCAL_P99 / $CL_P99 µs | |"
        echo "| $DATE | $MACHINE | JetStream publish → acknowledgement (3 replicas, file storage) at that load, p50 / p99 | $CL_PUB_P50 / $CL_PUB_P99 µs | |"
    fi
    if want memory; then
        echo "| $DATE | $MACHINE | bytes per pending correlation entry at 1 M entries (counting allocator) | $MEM_PER_ENTRY B | |"
    fi
} >>BENCHMARKS.md
# The summary table at the top (latest value of each figure against its target) and the
# plots (docs/bench/*.svg, kept beside BENCHMARKS.md), from what this run measured.
python3 scripts/bench_report.py
python3 scripts/bench_plots.py "$OUT" docs/bench "$MACHINE, $DATE" | sed 's/^/bench: /'
say "ceiling $CEILING packets/s; iwf $BEST SIP MESSAGE transactions/s; ratio $RATIO; SMPP iwf $SMPP_IWF / kernel $SMPP_KERNEL PDUs/s; end to end $E2E_RPS receipts/s, p99 $E2E_P99 µs (BENCHMARKS.md)"
say "load $LOAD_RPS receipts/s (p99 $LOAD_P99 µs, half-load p99 $HALF_P99 µs); converged → legacy $ORIG_NPS notifications/s vs baseline $BASE_NPS; RSS $RSS_WARM → $RSS_END kB; $MEM_PER_ENTRY B per correlation entry"
say "done in $(($(date +%s) - START)) s"
