#!/usr/bin/env bash
# The peer baseline: iwf's converged -> legacy direction with receipts, built
# the way operators build it from Debian packages, so a benchmark can drive it with the
# same load generator as iwf:
#
#   UA --SIP MESSAGE (CPIM)--> Kamailio --HTTP sendsms--> Kannel smsbox --> bearerbox
#      --SMPP submit_sm--> iwf-peer smsc (SMSC double) --deliver_sm receipt--> bearerbox
#      --> smsbox --HTTP GET dlr-url--> Kamailio (xhttp) --SIP MESSAGE (IMDN)--> UA
#
#   sudo scripts/baseline.sh up       start the chain in network namespace iwf-base
#   sudo scripts/baseline.sh down     stop everything it started, delete the namespace
#   sudo scripts/baseline.sh status   what runs (exit 1 when the chain is not complete)
#   sudo scripts/baseline.sh check    up, tests/peers/baseline_check.py, down
#
# Everything lives in namespace iwf-base (only loopback, 127.0.0.1): Kamailio SIP UDP
# 5060 and HTTP (xhttp, dlr-url callbacks) TCP 8080, smsbox sendsms 13013, bearerbox
# admin 13000 (smsbox link 13001), the SMSC double 2775. A UA runs there too (the check
# listens on 127.0.0.1:5062). Configurations: scripts/baseline/kamailio.cfg and
# kannel.conf (their comments say how they are tuned). Logs, rendered configs and pid
# files: target/baseline/.
#
# Environment:
#   PEER_BIN     the iwf-peer binary (default target/release/iwf-peer)
#   BASE_CPUS    CPU list every process of the chain is pinned to (taskset -c), default
#                "1": the CPU the iwf worker lcore uses in the lab
#   BASE_WINDOW  SMPP window: Kannel's max-pending-submits and the double's --window (64)
#   BASE_QUICKACK  1 (default): no delayed ACKs on the namespace's loopback (Kannel cannot
#                set TCP_NODELAY; see up()); 0: the kernel's defaults (40 ms stalls)
#   BASE_CHECK_ARGS  extra arguments for baseline_check.py in `check` (e.g. "--count 1000
#                --window 32")
# Installs nothing: scripts/setup.sh installs kamailio, kannel and the modules.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

NS=iwf-base
OUT=$ROOT/target/baseline
PEER_BIN=${PEER_BIN:-target/release/iwf-peer}
CPUS=${BASE_CPUS:-1}
WINDOW=${BASE_WINDOW:-64}
QUICKACK=${BASE_QUICKACK:-1}
READY_S=20
# Start order; `down` stops them in reverse.
PROCS=(smsc bearerbox smsbox kamailio)

say() { echo "baseline: $*" >&2; }
die() { say "$*"; exit 1; }
in_ns() { ip netns exec "$NS" "$@"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespace): sudo scripts/baseline.sh $1"
}

need_tools() {
    local t
    for t in kamailio bearerbox smsbox; do
        command -v "$t" >/dev/null || die "$t missing (scripts/setup.sh installs it)"
    done
    for t in ip taskset ss python3; do
        command -v "$t" >/dev/null || die "$t missing (scripts/setup.sh installs it)"
    done
    [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/http_client.so ] \
        || ls /usr/lib/*/kamailio/modules/http_client.so >/dev/null 2>&1 \
        || die "Kamailio's http_client module missing: kamailio-utils-modules (scripts/setup.sh installs it)"
    [ -x "$PEER_BIN" ] || die "$PEER_BIN missing: cargo build --release --bin iwf-peer (or set PEER_BIN)"
}

# The pid a process file names, if that process still runs the expected program.
live_pid() {
    local name=$1 f="$OUT/$1.pid" pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -d "/proc/$pid" ] || return 1
    case $name in
        smsc) grep -qa "smsc" "/proc/$pid/cmdline" ;;
        *) grep -qa "$name" "/proc/$pid/cmdline" ;;
    esac || return 1
    echo "$pid"
}

# HTTP GET inside the namespace; prints the body (empty on any failure).
http_get() {
    in_ns python3 - "$1" <<'EOF' 2>/dev/null || true
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode("utf-8", "replace"))
except Exception:
    pass
EOF
}

listening() { # proto port
    local flag=-Hltn
    [ "$1" = udp ] && flag=-Hlun
    in_ns ss "$flag" "sport = :$2" 2>/dev/null | grep -q .
}

smsc_online() {
    http_get "http://127.0.0.1:13000/status.txt?password=baseline" | grep -q "^ *dbl\[dbl\].*(online"
}

# wait_for NAME CONDITION...: poll until CONDITION holds, the process dies, or timeout.
wait_for() {
    local name=$1; shift
    local deadline=$((SECONDS + READY_S))
    while ! "$@"; do
        if ! live_pid "$name" >/dev/null; then
            tail -n 20 "$OUT/$name.log" >&2 || true
            die "$name exited during start (log: $OUT/$name.log)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$OUT/$name.log" >&2 || true
            die "$name not ready after ${READY_S}s: $* (log: $OUT/$name.log)"
        fi
        sleep 0.2
    done
}

# start NAME CMD...: run CMD in the namespace pinned to $CPUS, stdout+stderr to the log.
# `ip netns exec` and `taskset` exec the command, so $! is the program's own pid.
start() {
    local name=$1; shift
    # 9>&-: the lock stays with this script, not with the chain.
    ip netns exec "$NS" taskset -c "$CPUS" "$@" >"$OUT/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$OUT/$name.pid"
}

render_configs() {
    cp scripts/baseline/kamailio.cfg "$OUT/kamailio.cfg"
    sed "s/^max-pending-submits = .*/max-pending-submits = $WINDOW/" \
        scripts/baseline/kannel.conf >"$OUT/kannel.conf"
    grep -q "^max-pending-submits = $WINDOW\$" "$OUT/kannel.conf" \
        || die "could not set max-pending-submits in $OUT/kannel.conf"
}

up() {
    need_root up
    need_tools
    if status >/dev/null 2>&1; then
        say "already up"
        return 0
    fi
    down_quiet
    mkdir -p "$OUT"
    CLEANUP=1 # a failed start stops what started (the EXIT trap)
    render_configs
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    if [ "$QUICKACK" = 1 ]; then
        # Kannel has no TCP_NODELAY setting: a small write (smsbox's ack of a receipt)
        # followed by the next message meets Nagle + the peer's delayed ACK, a 40 ms
        # stall per message on the smsbox <-> bearerbox link. Operators tune this away
        # in the kernel: no delayed ACKs on the namespace's loopback routes.
        ip -n "$NS" route change local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
        ip -n "$NS" route change local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
    fi

    # The SMSC double: answers submit_sm, sends a receipt when registered_delivery asks.
    start smsc "$(readlink -f "$PEER_BIN")" smsc --listen 127.0.0.1:2775 \
        --system-id kannel --password kannel --window "$WINDOW" --duration 31536000
    wait_for smsc listening tcp 2775

    # Kannel: -v 3 = errors only on stderr (the configuration has no log files).
    start bearerbox bearerbox -v 3 "$OUT/kannel.conf"
    sleep 0.5
    if ! live_pid bearerbox >/dev/null; then
        say "bearerbox exited at start; starting it again"
        start bearerbox bearerbox -v 3 "$OUT/kannel.conf"
    fi
    wait_for bearerbox listening tcp 13000
    wait_for bearerbox smsc_online
    # smsbox connects to bearerbox's smsbox port at start and exits when it is not
    # there yet (seen once in a test run, without a word at -v 3): wait for it, and
    # look again at once.
    wait_for bearerbox listening tcp 13001
    start smsbox smsbox -v 3 "$OUT/kannel.conf"
    sleep 0.5
    if ! live_pid smsbox >/dev/null; then
        say "smsbox exited at start; starting it again"
        start smsbox smsbox -v 3 "$OUT/kannel.conf"
    fi
    wait_for smsbox listening tcp 13013

    # Kamailio in the foreground (-DD) logging to stderr (-E); 256 MB shared memory
    # (tm transactions), 16 MB private memory per process.
    start kamailio kamailio -f "$OUT/kamailio.cfg" -DD -E -m 256 -M 16
    # Once (in a bench run, not reproduced since) Kamailio exited at start without a word
    # (debug=-1 hides its start-up errors): look again at once, with its errors shown.
    sleep 0.5
    if ! live_pid kamailio >/dev/null; then
        say "kamailio exited at start; starting it again with its errors logged"
        start kamailio kamailio -f "$OUT/kamailio.cfg" -DD -E -m 256 -M 16 --debug=1
    fi
    wait_for kamailio listening udp 5060
    wait_for kamailio listening tcp 8080
    CLEANUP=0
    say "up: Kamailio sip:127.0.0.1:5060 in namespace $NS, pinned to CPU(s) $CPUS (logs: $OUT)"
}

# Stop one process: TERM, up to 5 s, then KILL.
stop() {
    local name=$1 pid i
    pid=$(live_pid "$name") || { rm -f "$OUT/$name.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$OUT/$name.pid"
}

down_quiet() {
    local i pid
    for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
        stop "${PROCS[$i]}"
    done
    if ip netns list 2>/dev/null | grep -qw "^$NS"; then
        # Whatever else still runs in our namespace (Kamailio's children, a check UA)
        # was started in it by us: stop it by pid before deleting the namespace.
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
        for i in $(seq 30); do
            [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break
            sleep 0.1
        done
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$NS" 2>/dev/null || true
    fi
}

down() {
    need_root down
    down_quiet
    say "down"
}

status() {
    local name pid bad=0
    if ! ip netns list 2>/dev/null | grep -qw "^$NS"; then
        echo "namespace $NS: absent"
        return 1
    fi
    echo "namespace $NS: present"
    for name in "${PROCS[@]}"; do
        if pid=$(live_pid "$name"); then
            echo "$name: running (pid $pid, CPUs $(taskset -cp "$pid" 2>/dev/null | sed 's/.*: //'))"
        else
            echo "$name: not running"
            bad=1
        fi
    done
    if smsc_online; then echo "kannel smsc dbl: online"; else echo "kannel smsc dbl: not online"; bad=1; fi
    return $bad
}

check() {
    need_root check
    # Kannel's boxes have, rarely, exited during start without a word (a test run saw
    # smsbox once, bearerbox once, never reproduced): bring the chain up once more.
    if ! (up); then
        say "the chain did not come up; down and up once more"
        down_quiet
        up
    fi
    CLEANUP=1 # down on every exit, Ctrl-C included
    local rc=0
    # shellcheck disable=SC2086 # BASE_CHECK_ARGS is a list of arguments
    in_ns python3 tests/peers/baseline_check.py ${BASE_CHECK_ARGS:-} || rc=$?
    CLEANUP=0
    down_quiet
    if [ $rc -eq 0 ]; then say "check: ok"; else say "check: FAILED (logs: $OUT)"; fi
    return $rc
}

CLEANUP=0
on_exit() {
    local rc=$?
    if [ "$CLEANUP" = 1 ]; then
        say "stopping what started"
        down_quiet
    fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# One baseline.sh at a time (the namespace and the pid files are shared).
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock -w 60 9 || die "another scripts/baseline.sh holds $OUT/.lock"

case ${1:-} in
    up) up ;;
    down) down ;;
    status) need_root status; status ;;
    check) check ;;
    *) echo "usage: sudo scripts/baseline.sh up|down|status|check" >&2; exit 2 ;;
esac
