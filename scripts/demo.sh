#!/usr/bin/env bash
# The README's first command. It shows the protocol core through `iwf inspect` and
# `iwf tag`; then, as root, iwf on DPDK in the lab (README "The lab") answering
# ping and real SIP traffic from sipp, and a short mixed scenario through real peers:
#   - smsc-a and smsc-b bind to iwf (tests/peers/legacy_flow.py) and each send 10 messages
#     plus one 3-part concatenated one to converged users, asking for delivery receipts
#     and user acks;
#   - smsc-c is an SMSC iwf binds to (iwf-peer smsc), sending its receipts 300 ms late;
#   - the converged side (tests/peers/sip_ua.py) answers iwf's MESSAGEs 200, sends
#     delivery and display IMDNs back, sends 5 messages to +447000300001 (routed to
#     smsc-c) and waits for their delivery IMDNs, then sends 3 IMDNs with forged tags;
#   - beside them, the MMS centre mmsc-m (tests/peers/mmsc.py) relays an MMS with a
#     picture to a converged user and gets its delivery and read reports back; then a
#     converged user sends a picture to an MMS user and gets its IMDNs back.
# While it runs, one line a second of iwf's flow counters (/metrics); at the end a table
# of what each legacy system sent and got back. Exits non-zero when a receipt is missing,
# went to the wrong system, or a forged tag was accepted. The lab is torn down at exit.
# Builds with `cargo build --bin iwf --bin iwf-peer` (CARGO_TARGET_DIR respected).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: scripts/setup.sh --demo (what the demo needs; a first run installs it)"
scripts/setup.sh --demo
echo "demo: cargo build --bin iwf --bin iwf-peer (a first build takes a few minutes)"
cargo build --locked --bin iwf --bin iwf-peer
target=${CARGO_TARGET_DIR:-target}
iwf=$target/debug/iwf
peer=$(realpath "$target/debug/iwf-peer")
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
echo "iwf demo: the packet path (DPDK on net_tap, the lab of README \"The lab\")"
lab() { IWF_BIN=$(realpath "$iwf") IWF_NO_BUILD=1 scripts/lab.sh "$@"; }
pids=()   # the peers started below: stopped at exit, before the lab goes
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT
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
grep -oE ': stats port=converged .*' target/lab/iwf.log | tail -n 1 | tr ' ' '\n' | grep -E '^(rx|tx|sip\.[a-z_0-9]+)=' | sed 's/^/  /'

echo
echo "iwf demo: receipts through real peers (three legacy systems and the converged side at once)"
out=target/lab/demo
rm -rf "$out"
mkdir -p "$out"
note() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
metrics() { curl -s --max-time 1 127.0.0.1:9870/metrics || true; }
alive() { kill -0 "$1" 2>/dev/null; }

# smsc-c: the SMSC iwf binds to as an ESME (config/lab.toml), receipts 300 ms after each resp.
note "ip netns exec iwf-legacy iwf-peer smsc --listen 198.18.1.1:2776 --system-id iwf --password pwc --receipt-delay-ms 300 &"
ip netns exec iwf-legacy "$peer" smsc --listen 198.18.1.1:2776 --system-id iwf --password pwc \
    --receipt-delay-ms 300 --duration 60 >"$out/smsc-c.json" 2>"$out/smsc-c.log" </dev/null &
smsc_pid=$!
pids+=("$smsc_pid")
bound=""
for _ in $(seq 1 40); do
    if [[ $'\n'$(metrics) == *$'\n''iwf_smpp_client_up{port="legacy"} 1'* ]]; then bound=1; break; fi
    sleep 0.5
done
[ -n "$bound" ] || { echo "demo: iwf did not bind to smsc-c within 20 s (see target/lab/iwf.log)" >&2; exit 1; }
echo "  iwf bound to smsc-c (iwf_smpp_client_up{port=\"legacy\"} 1)"

# The converged side: the SIP core and its users.
# The MMS centre listens first (for what iwf relays to it) and sends its MMS 2 s later.
note "ip netns exec iwf-legacy python3 tests/peers/mmsc.py --count 1 --start-delay 2 &"
ip netns exec iwf-legacy python3 tests/peers/mmsc.py --listen 198.18.1.1:2525 --iwf 198.18.1.2:25 \
    --count 1 --start-delay 2 --timeout 30 >"$out/mmsc.json" 2>"$out/mmsc.log" </dev/null &
mmsc_pid=$!
pids+=("$mmsc_pid")
note "ip netns exec iwf-conv python3 tests/peers/sip_ua.py --tcp --notify both --duration 12 --send-to tel:+447000300001 --count 5 --want delivery --forge 3 &"
ip netns exec iwf-conv python3 tests/peers/sip_ua.py --listen 198.18.2.1:5060 --iwf 198.18.2.2:5060 \
    --tcp --notify both --duration 12 --send-to tel:+447000300001 --count 5 --want delivery --forge 3 \
    >"$out/sip_ua.json" 2>"$out/sip_ua.log" </dev/null &
ua_pid=$!
pids+=("$ua_pid")
sleep 0.5

# smsc-a (transceiver) and smsc-b (transmitter + receiver) bind to iwf.
note "ip netns exec iwf-legacy python3 tests/peers/legacy_flow.py --host 198.18.1.2 --port 2775 --count 10 --user-ack --long &"
ip netns exec iwf-legacy python3 tests/peers/legacy_flow.py --host 198.18.1.2 --port 2775 \
    --count 10 --user-ack --long --receipt-timeout 20 >"$out/legacy_flow.json" 2>"$out/legacy_flow.log" </dev/null &
flow_pid=$!
pids+=("$flow_pid")

echo
echo "live, from curl 127.0.0.1:9870/metrics (iwf_flow_*), once a second:"
progress() {
    metrics | awk -v t="$1" '
        /^iwf_flow_[a-z_]+ / { v[substr($1, 10)] = $2 }
        END {
            printf "  %3ss  a,b→conv: messages %d (concat parts %d) → MESSAGE %d (200 %d), IMDNs in %d → receipts delivered %d queued %d | conv→c: submit_sm %d, SMSC receipts %d → IMDNs %d | bad tags %d\n",
                t, v["legacy_messages_total"], v["legacy_parts_total"], v["sip_messages_sent_total"], v["sip_messages_ok_total"], v["imdns_in_total"],
                v["receipts_delivered_total"], v["receipts_queued_total"], v["converged_parts_sent_total"],
                v["smsc_receipts_total"], v["imdns_sent_total"], v["imdn_bad_tag_total"]
        }'
}
t=0
while alive "$ua_pid" || alive "$flow_pid"; do
    sleep 1
    t=$((t + 1))
    progress "$t"
    if [ "$t" -ge 60 ]; then echo "demo: the peers did not finish within 60 s" >&2; exit 1; fi
done
wait "$flow_pid" || true
wait "$ua_pid" || true
wait "$mmsc_pid" || true
# Converged → MMS: a converged user sends a picture to an MMS user; mmsc-m takes it and
# reports delivery and reading.
note "ip netns exec iwf-legacy python3 tests/peers/mmsc.py --count 0 --answer-forwards 1 &"
ip netns exec iwf-legacy python3 tests/peers/mmsc.py --listen 198.18.1.1:2525 --iwf 198.18.1.2:25 \
    --count 0 --answer-forwards 1 --timeout 20 >"$out/mmsc-taken.json" 2>"$out/mmsc-taken.log" </dev/null &
taken_pid=$!
pids+=("$taken_pid")
sleep 1
note "ip netns exec iwf-conv python3 tests/peers/sip_ua.py --send-to tel:+447000400001 --picture --want both --duration 8"
ip netns exec iwf-conv python3 tests/peers/sip_ua.py --listen 198.18.2.1:5060 --iwf 198.18.2.2:5060 \
    --send-to tel:+447000400001 --picture --want both --count 1 --duration 8 \
    >"$out/sip_ua_mms.json" 2>"$out/sip_ua_mms.log" </dev/null || true
wait "$taken_pid" || true
kill -TERM "$smsc_pid" 2>/dev/null || true   # it prints its summary at exit
wait "$smsc_pid" || true
sleep 1.1   # the control thread publishes the counters once a second
metrics >"$out/metrics.txt"

echo
echo "what each legacy system sent and got back (JSON from the peers in $out/):"
status=0
python3 - "$out" <<'EOF' || status=1
import json, os, sys

out = sys.argv[1]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name)).read())
    except (OSError, ValueError) as e:
        print("  %s: no JSON result (%s); see %s" % (name, e, name.replace(".json", ".log")))
        return None

flow, ua, smsc = load("legacy_flow.json"), load("sip_ua.json"), load("smsc-c.json")
mmsc, taken, ua_mms = load("mmsc.json"), load("mmsc-taken.json"), load("sip_ua_mms.json")
metrics = {}
for line in open(os.path.join(out, "metrics.txt")):
    if line.startswith("iwf_flow_"):
        k, _, v = line.partition(" ")
        metrics[k[len("iwf_flow_"):]] = int(float(v))
failed = []
def check(ok, what):
    if not ok:
        failed.append(what)

print()
print("  legacy → converged: smsc-a and smsc-b bound to iwf, each message asks for a receipt and a user ack")
head = ("system", "sent", "accepted", "delivery receipts", "user acks", "misrouted", "missing", "unexpected")
fmt = "  %-7s %5s %9s %18s %10s %10s %8s %11s"
print(fmt % head)
if flow:
    for name in ("smsc-a", "smsc-b"):
        s = flow["systems"].get(name, {})
        c = s.get("checks", {})
        accepted = s.get("resp_statuses", {}).get("0x0", 0)
        receipts = s.get("receipts", [])
        dlr = len({r["receipted_message_id"] for r in receipts if r["esm_class"] & 0x3C == 0x04})
        ack = len({r["receipted_message_id"] for r in receipts if r["esm_class"] & 0x3C == 0x10})
        missing = len(c.get("missing", [])) + len(c.get("missing_user_ack", []))
        print(fmt % (name, s.get("submitted", 0), accepted, dlr, ack, len(c.get("misrouted", [])),
                     missing, len(c.get("unexpected", []))))
        check(s.get("submitted", 0) > 0 and accepted == s.get("submitted"), "%s: every submit_sm accepted" % name)
        check(dlr == accepted and ack == accepted, "%s: a delivery receipt and a user ack per accepted message" % name)
        check(not c.get("misrouted") and not c.get("unexpected"), "%s: no receipt of another system, none unknown" % name)
        check(not missing, "%s: no receipt missing" % name)
        check(not s.get("errors"), "%s: no errors (%s)" % (name, s.get("errors")))
    check(flow["checks"].get("every_receipt_matches") is True, "every receipt reached the system that sent the message")
else:
    check(False, "legacy_flow.py result")

print()
print("  converged → legacy: a converged user messages +447000300001 (routed to smsc-c, iwf bound to it)")
head = ("system", "sent", "200 OK", "submit_sm got", "SMSC receipts sent", "acked by iwf", "IMDNs back", "missing")
fmt = "  %-7s %5s %7s %14s %19s %13s %11s %8s"
print(fmt % head)
if ua and smsc:
    sent = ua.get("sent", [])
    ok = ua.get("responses", {}).get("message", {}).get("200", 0)
    back = sum(1 for m in sent if m.get("imdns", {}).get("delivery") == "delivered")
    print(fmt % ("smsc-c", len(sent), ok, smsc.get("submit_sm"), smsc.get("receipts_sent"),
                 smsc.get("receipts_acked"), back, len(ua.get("missing_imdns", []))))
    check(len(sent) > 0 and ok == len(sent), "smsc-c: every converged MESSAGE answered 200")
    check(smsc.get("submit_sm") == len(sent), "smsc-c: one submit_sm per converged message")
    check(smsc.get("receipts_sent") == len(sent) and smsc.get("receipts_acked") == len(sent),
          "smsc-c: a receipt per message, each acknowledged by iwf")
    check(back == len(sent) and not ua.get("missing_imdns"), "smsc-c: each SMSC receipt came back as a delivery IMDN")
    check(not ua.get("unmatched_imdns"), "converged side: no IMDN for a message it never sent")
else:
    check(False, "sip_ua.py and iwf-peer smsc results")

print()
if ua:
    rc = ua.get("received_counts", {})
    imdn_ok = ua.get("responses", {}).get("imdn", {})
    forged = ua.get("responses", {}).get("forged", {})
    print("  converged side: got %d MESSAGEs from iwf, sent %d IMDNs back (responses %s), "
          "%d IMDNs from iwf" % (rc.get("message", 0), len(ua.get("imdns_sent", [])),
                                 json.dumps(imdn_ok, sort_keys=True), rc.get("imdn", 0)))
    print("  forged tags: %d IMDNs with a forged <message-id> sent, answered %s; iwf counted %d bad tags; "
          "unexpected receipts at smsc-a/smsc-b: %d" % (len(ua.get("forged", [])), json.dumps(forged, sort_keys=True),
          metrics.get("imdn_bad_tag_total", -1), len(flow["checks"]["unexpected"]) if flow else -1))
    check(len(ua.get("forged", [])) == 3 and forged == {"403": 3}, "forged tags refused (403)")
    check(metrics.get("imdn_bad_tag_total") == 3, "iwf counted the forged tags")
    check(not ua.get("errors"), "converged side: no errors (%s)" % ua.get("errors"))
print()
print("  MMS: mmsc-m relays an MMS with a picture to a converged user (MM4 over SMTP, beside the SMS systems)")
head = ("system", "sent", "SMTP", "forward.RES", "delivery report", "read report", "at")
fmt = "  %-7s %5s %5s %12s %16s %12s  %s"
print(fmt % head)
if mmsc:
    for f in mmsc.get("forwards", []):
        d, r = f.get("delivery") or {}, f.get("read") or {}
        print(fmt % ("mmsc-m", 1, f.get("smtp"), (f.get("res") or {}).get("status"), d.get("status"),
                     r.get("status"), ",".join(d.get("rcpt", []))))
        check(f.get("smtp") == 250 and (f.get("res") or {}).get("status") == "Ok", "mmsc-m: its MMS relayed")
        check(d.get("status") == "Retrieved" and r.get("status") == "Read" and d.get("message_id") == f["message_id"],
              "mmsc-m: the delivery and read reports of its own message came back to it")
    check(len(mmsc.get("forwards", [])) == 1 and not mmsc.get("errors"), "mmsc-m: no errors (%s)" % mmsc.get("errors"))
else:
    check(False, "mmsc.py result")
print("  MMS: a converged user sends a picture to +447000400001 (routed to mmsc-m)")
if taken and ua_mms:
    t = (taken.get("taken") or [{}])[0]
    sent = ua_mms.get("sent") or [{}]
    print("    mmsc-m took %s (%s), reported delivery and reading; the sender got 200 %s and IMDNs %s"
          % (",".join(t.get("content_types", [])), t.get("message_id"), sent[0].get("final"),
             json.dumps(sent[0].get("imdns"), sort_keys=True)))
    check(t.get("content_types") == ["image/jpeg"] and sent[0].get("final") == 200, "the picture reached mmsc-m")
    check(sent[0].get("imdns") == {"delivery": "delivered", "display": "displayed"},
          "mmsc-m's reports came back to the sender as IMDNs")
else:
    check(False, "mmsc.py --answer-forwards and sip_ua.py results")
print()
if failed:
    print("  FAILED: " + "; ".join(failed))
    sys.exit(1)
print("  checks: every receipt reached the system that sent the message, none missing, none misrouted, "
      "forged tags routed nowhere")
EOF
lab down
trap - EXIT
echo
if [ "$status" -ne 0 ]; then
    echo "demo: FAILED (peer outputs and logs in $out/, iwf's log target/lab/iwf.log)"
    exit 1
fi
echo "demo: done (${SECONDS} s)"
