#!/usr/bin/env bash
# The README's first command. It shows what exists so far: the protocol core through
# `iwf inspect` and `iwf tag`, then (as root) iwf on DPDK in the lab answering ping and
# real SIP traffic from sipp. The receipt flows between real SMPP and SIP peers join it
# with the receipts issue.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -q
iwf=target/release/iwf
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@" || true; }

echo "iwf demo: the protocol core (sans-IO codecs, the tag, the conversions)"
tag=$($iwf tag --keys config/lab.toml --system 1 --sequence 42 --receipts delivery,failure,user_ack)
show $iwf tag --keys config/lab.toml --system 1 --sequence 42 --receipts delivery,failure,user_ack
show $iwf inspect tag "$tag" --keys config/lab.toml
forged="${tag:0:31}$( [ "${tag:31:1}" = 0 ] && echo 1 || echo 0)"
show $iwf inspect tag "$forged" --keys config/lab.toml
for f in tests/data/demo/*.hex; do
    [ -e "$f" ] || continue
    show $iwf inspect smpp "$(cat "$f")"
done
for f in tests/data/demo/*.sip; do
    [ -e "$f" ] || continue
    show $iwf inspect sip "$f"
done
show $iwf inspect receipt "id:0123456789 sub:001 dlvrd:001 submit date:2611261200 done date:2611261201 stat:DELIVRD err:000 text:Hello from SMSC A"

if [ "$(id -u)" -ne 0 ]; then
    echo
    echo "demo: the lab part needs root (DPDK, namespaces, taps): sudo scripts/demo.sh"
    exit 0
fi
echo
echo "iwf demo: the packet path (DPDK on net_tap, lab topology of DESIGN.md)"
lab() { IWF_BIN=$PWD/$iwf IWF_NO_BUILD=1 scripts/lab.sh "$@"; }
trap 'lab down >/dev/null 2>&1 || true' EXIT
lab up
show ip netns exec iwf-legacy ping -c 2 -W 1 198.18.1.2
show ip netns exec iwf-conv ping -c 2 -W 1 198.18.2.2
mkdir -p target/lab
sipp_run() {
    local scenario=$1 calls=$2
    printf '\n\033[1m$ sipp (in iwf-conv) %s x%s -> 198.18.2.2:5060\033[0m\n' "$scenario" "$calls"
    (cd target/lab && ip netns exec iwf-conv timeout 60 sipp 198.18.2.2:5060 -sf "$OLDPWD/scripts/sipp/$scenario.xml" \
        -i 198.18.2.1 -p 5062 -m "$calls" -r 10 -nostdin -timeout 30s -trace_screen -screen_file "sipp-demo-$scenario.screen" \
        >/dev/null 2>&1) && echo "  all $calls calls got the expected final response" \
        || echo "  sipp reported failures: see target/lab/sipp-demo-$scenario.screen"
}
sipp_run options 5     # OPTIONS -> 200 OK with Allow and Accept
sipp_run message 5     # MESSAGE to a number no route covers -> 404
sleep 2
echo
echo "iwf's counters (target/lab/iwf.log, printed by the control thread):"
grep '^stats port=converged' target/lab/iwf.log | tail -n 1 | tr ' ' '\n' | grep -E '^(rx|tx|sip\.[a-z_0-9]+)=' | sed 's/^/  /'
lab down
trap - EXIT
echo
echo "demo: done"
