#!/usr/bin/env bash
# The README's first command. Today it shows the protocol core at work through
# `iwf inspect` and `iwf tag`; the lab (DPDK, real SMPP and SIP peers) joins it with the
# packet-path and receipts issues.
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
echo
echo "demo: done"
