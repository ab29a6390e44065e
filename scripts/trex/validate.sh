#!/usr/bin/env bash
# Replays the load tools' captures into the lab and checks that iwf counted them: the
# captures TRex sends (scripts/trex/README.md) are generated from config/lab.toml with
# `iwf-peer pcap`, then replayed with tcpreplay from the kernel side of the converged
# tap (namespace iwf-conv), and iwf's counters are compared before/after at /metrics:
#   imdn.pcap     N delivery IMDNs whose tags name smsc-c: imdns_in +N, imdn_bad_tag +0,
#                 smsc-c's receipts routed (or queued) +N and acknowledged +N;
#   message.pcap  N MESSAGEs to a number routed to smsc-c: converged_messages +N,
#                 converged_refused +0, smsc-c's messages_out +N.
#   varied.pcap   what sip_stl.py's field engine makes of them (check_profiles.py): each
#                 packet a new transaction, counted like the above.
# smsc-c is `iwf-peer smsc` (iwf binds to it); `iwf-peer ua` stands in for the SIP core
# (it takes the IMDNs iwf sends for smsc-c's receipts). smpp.pcap is a TCP session: it
# cannot be replayed open-loop into a real stack (tests/peer.rs checks it frame by frame).
# Needs root (the lab). Environment: VALIDATE_COUNT (default 200), VALIDATE_PPS (default
# 200), IWF_BIN / CARGO_TARGET_DIR (as scripts/lab.sh), IWF_NO_BUILD=1. Exits non-zero
# with the counter that did not move as expected. The lab is torn down at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

count=${VALIDATE_COUNT:-200}
pps=${VALIDATE_PPS:-200}
target=${CARGO_TARGET_DIR:-target}
die() { echo "validate: $*" >&2; exit 1; }
say() { echo "validate: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (the lab): sudo scripts/trex/validate.sh"
command -v tcpreplay >/dev/null || die "tcpreplay missing: apt-get install tcpreplay (scripts/setup.sh does)"
command -v curl >/dev/null || die "curl missing"
if [ -z "${IWF_NO_BUILD:-}" ]; then
    say "cargo build --bin iwf --bin iwf-peer"
    cargo build --locked -q --bin iwf --bin iwf-peer
fi
iwf=$(realpath "${IWF_BIN:-$target/debug/iwf}")
peer=$(realpath "$(dirname "$iwf")/iwf-peer")
[ -x "$iwf" ] && [ -x "$peer" ] || die "no iwf / iwf-peer next to $iwf (build them, or set IWF_BIN)"

work=target/lab/trex
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    IWF_BIN=$iwf IWF_NO_BUILD=1 scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
IWF_BIN=$iwf IWF_NO_BUILD=1 scripts/lab.sh up
rm -rf "$work"
mkdir -p "$work"

metrics() { curl -s --max-time 2 127.0.0.1:9870/metrics; }
# value NAME FILE: the sample's value (0 when absent).
value() { awk -v k="$1" '$1 == k { v = $2 } END { printf "%d\n", v + 0 }' "$2"; }

# smsc-c: iwf binds to it; the SIP core on 198.18.2.1:5060 takes iwf's IMDNs.
ip netns exec iwf-legacy "$peer" smsc --listen 198.18.1.1:2776 --system-id iwf --password pwc --duration 300 \
    >"$work/smsc-c.json" 2>"$work/smsc-c.log" &
pids+=($!)
ip netns exec iwf-conv "$peer" ua --listen 198.18.2.1:5060 --duration 300 >"$work/ua.json" 2>"$work/ua.log" &
pids+=($!)
bound=""
for _ in $(seq 1 100); do
    if metrics | grep -q '^iwf_smpp_client_up{port="legacy"} 1'; then bound=1; break; fi
    sleep 0.1
done
[ -n "$bound" ] || die "iwf did not bind to smsc-c (iwf-peer smsc) within 10 s (see target/lab/iwf.log)"
say "iwf bound to smsc-c"

# The frames must reach iwf's port MAC (it drops other unicast): the namespace learnt it
# by ARP (lab.sh pinged it); the source is the tap's own MAC.
ip netns exec iwf-conv ping -c 1 -W 1 198.18.2.2 >/dev/null || die "iwf does not answer ping at 198.18.2.2"
iwf_mac=$(ip -n iwf-conv neigh show 198.18.2.2 | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
tap_mac=$(ip -n iwf-conv link show iwf-conv0 | awk '$1 == "link/ether" { print $2 }')
[ -n "$iwf_mac" ] && [ -n "$tap_mac" ] || die "cannot read the MACs (iwf: '$iwf_mac', tap: '$tap_mac')"
say "converged tap $tap_mac -> iwf $iwf_mac"

"$peer" pcap --config config/lab.toml --out "$work" --count "$count" --system smsc-c \
    --src-mac "$tap_mac" --dst-mac "$iwf_mac" >"$work/pcap.json"
say "iwf-peer pcap: $(cat "$work/pcap.json")"
# The TRex profiles, without TRex: they compile, load with tunables, and their field
# engine's packets (new branch and Call-ID each, UDP checksum 0) go to varied.pcap.
PYTHONPYCACHEPREFIX=$work/pycache python3 -m py_compile scripts/trex/sip_stl.py scripts/trex/smpp_astf.py
python3 -B scripts/trex/check_profiles.py "$work" | sed 's/^/validate: /'

fail=0
# expect LABEL NAME WANT BEFORE AFTER: the counter moved by exactly WANT.
expect() {
    local d=$(($(value "$2" "$5") - $(value "$2" "$4")))
    if [ "$d" -eq "$3" ]; then
        printf 'validate:   ok   %-60s +%s\n' "$2" "$d"
    else
        printf 'validate:   FAIL %-60s +%s, expected +%s (%s)\n' "$2" "$d" "$3" "$1" >&2
        fail=1
    fi
}
# replay FILE CONDITION...: replays FILE, then waits (30 s at most) until every
# "NAME DELTA" condition holds between the snapshots before and after.
replay() {
    local file=$1 name
    shift
    name=$(basename "$file" .pcap)
    metrics >"$work/$name.before"
    say "tcpreplay $name.pcap at $pps/s into iwf-conv0"
    ip netns exec iwf-conv tcpreplay -i iwf-conv0 --pps "$pps" "$file" >"$work/$name.tcpreplay" 2>&1 \
        || { cat "$work/$name.tcpreplay" >&2; die "tcpreplay failed"; }
    grep -E '^Actual:' "$work/$name.tcpreplay" | sed 's/^/validate:   /'
    local done_ c n want
    for _ in $(seq 1 300); do
        metrics >"$work/$name.after"
        done_=1
        for c in "$@"; do
            read -r n want <<<"$c"
            [ $(($(value "$n" "$work/$name.after") - $(value "$n" "$work/$name.before"))) -ge "$want" ] || done_=""
        done
        [ -n "$done_" ] && break
        sleep 0.1
    done
    sleep 0.5 # anything arriving late (a second count) shows up as a mismatch
    metrics >"$work/$name.after"
    for c in "$@"; do
        read -r n want <<<"$c"
        expect "$name.pcap" "$n" "$want" "$work/$name.before" "$work/$name.after"
    done
}

sys='{system="smsc-c"}'
replay "$work/imdn.pcap" \
    "iwf_flow_imdns_in_total $count" \
    "iwf_flow_imdn_bad_tag_total 0" \
    "iwf_flow_imdn_malformed_total 0" \
    "iwf_flow_receipts_routed_total $count" \
    "iwf_system_receipts_routed_total$sys $count" \
    "iwf_system_receipts_delivered_total$sys $count"
replay "$work/message.pcap" \
    "iwf_flow_converged_messages_total $count" \
    "iwf_flow_converged_refused_total 0" \
    "iwf_system_messages_out_total$sys $count"

# What sip_stl.py sends (check_profiles.py: 3 IMDN and 3 MESSAGE streams, 5 packets
# each, every one a new transaction): iwf counts each. Its field engine varies the Via
# branch and the Call-ID, not the tag (a MAC it cannot make): its IMDNs are replays of
# notifications imdn.pcap had relayed, answered 200 and relayed no more.
replay "$work/varied.pcap" \
    "iwf_flow_imdns_in_total 15" \
    "iwf_flow_imdn_bad_tag_total 0" \
    "iwf_flow_imdn_replays_total 15" \
    "iwf_system_receipts_routed_total$sys 0" \
    "iwf_flow_converged_messages_total 15" \
    "iwf_flow_converged_refused_total 0" \
    "iwf_system_messages_out_total$sys 15"

[ "$fail" -eq 0 ] || die "counters did not move as the captures say (snapshots and logs in $work, iwf log target/lab/iwf.log)"
say "ok: $count IMDNs with valid tags routed to smsc-c and acknowledged, $count MESSAGEs sent to it, no bad tags; sip_stl.py's varied packets counted as new transactions, its IMDNs as replays"
