#!/usr/bin/env python3
"""Proves the peer baseline chain (scripts/baseline.sh) end to end. Stdlib only.

A SIP UA on UDP (run it inside namespace iwf-base) sends --count MESSAGEs to Kamailio,
each a CPIM body asking for positive-delivery (the same body tests/peers/sip_ua.py
writes, the body iwf takes), to numbers +4470003NNNNN. Kamailio hands each to Kannel
(sendsms + dlr-url), Kannel submits to the SMSC double, the double's receipt comes back
through Kannel's dlr-url as a SIP MESSAGE carrying a delivery IMDN to this UA.

    baseline_check.py [--listen 127.0.0.1:5062] [--proxy 127.0.0.1:5060]
                      [--count 5] [--window 1] [--timeout S] [--linger 1]

Checks: every MESSAGE gets a 2xx; exactly one delivery IMDN (status delivered) comes
back per MESSAGE, with that MESSAGE's imdn.Message-ID in <message-id> and the IMDN's
CPIM/XML in iwf's layout (CPIM To = our From, Content-Disposition: notification, a
DateTime, a fresh imdn.Message-ID, no Disposition-Notification). Each IMDN is answered
200 (a retransmitted IMDN gets 200 again and is not counted twice). --window N keeps N
MESSAGEs outstanding (waiting for their final response), so the summary's rates also
give a rough figure for the chain.

Prints ONE JSON object: sent, answered {code: n}, imdns, missing, duplicates,
unmatched, bad, elapsed_s, messages_per_s, imdns_per_s, latency_ms {p50, p99}
(MESSAGE sent -> its IMDN received), ok. Exit 0 when ok, 1 otherwise.
"""
import argparse
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sip_ua import (  # noqa: E402  (the load generator's own codecs: same wire format)
    CRLF, addr_uri, build_cpim, build_response, imdn_fields, param, parse_cpim,
    parse_imdn_xml, parse_sip, via_key,
)

T1, T2, TIMER_F = 0.5, 4.0, 32.0


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(p / 100.0 * len(v)))], 2)


class Check:
    def __init__(self, args):
        self.a = args
        self.listen = hostport(args.listen)
        self.proxy = hostport(args.proxy)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(self.listen)
        self.run_id = "%x%x" % (os.getpid(), int(time.time()))
        self.pending = {}     # branch -> tx {data, next, interval, start, mid}
        self.msgs = {}        # mid -> {final, sent_at, imdns: [...], latency}
        self.imdn_seen = {}   # (branch, sent-by) of IMDN requests -> stored 200
        self.answered = {}
        self.unmatched = []
        self.bad = []
        self.next_index = 0

    def send_message(self):
        i = self.next_index
        self.next_index += 1
        mid = "bc-%s-%d" % (self.run_id, i)
        to = "sip:+4470003%05d@ims.lab;user=phone" % (i % 100000)
        frm = "sip:+447900000001@ims.lab;user=phone"
        body = build_cpim(frm, to, mid, "positive-delivery", "text/plain",
                          ("baseline check %d" % i).encode())
        branch = "z9hG4bKbc%s%d" % (self.run_id, i)
        lines = [
            "MESSAGE %s SIP/2.0" % to,
            "Via: SIP/2.0/UDP %s:%d;branch=%s" % (self.listen[0], self.listen[1], branch),
            "Max-Forwards: 70",
            "From: <%s>;tag=bc%d" % (frm, i),
            "To: <%s>" % to,
            "Call-ID: bc-%s-%d@%s" % (self.run_id, i, self.listen[0]),
            "CSeq: 1 MESSAGE",
            "Content-Type: message/cpim",
            "Content-Length: %d" % len(body),
        ]
        data = (CRLF.join(lines) + CRLF + CRLF).encode() + body
        now = time.monotonic()
        self.msgs[mid] = {"final": None, "sent_at": now, "imdns": [], "latency": None}
        self.pending[branch] = {"data": data, "next": now + T1, "interval": T1,
                                "start": now, "mid": mid}
        self.sock.sendto(data, self.proxy)

    def on_response(self, msg):
        branch = param(msg.vias()[0], "branch") if msg.vias() else ""
        tx = self.pending.get(branch)
        if tx is None:
            return
        if msg.status < 200:
            tx["interval"] = T2
            return
        del self.pending[branch]
        self.msgs[tx["mid"]]["final"] = msg.status
        key = str(msg.status)
        self.answered[key] = self.answered.get(key, 0) + 1

    def on_request(self, msg, addr):
        key = via_key(msg.vias()[0]) if msg.vias() else ("", "")
        if key in self.imdn_seen:  # a retransmission: the stored answer again
            self.sock.sendto(self.imdn_seen[key], addr)
            return
        if msg.method != "MESSAGE":
            resp = build_response(msg, 405, "Method Not Allowed", "bc")
            self.sock.sendto(resp, addr)
            return
        resp = build_response(msg, 200, "OK", "bc%d" % len(self.imdn_seen))
        self.imdn_seen[key] = resp
        self.sock.sendto(resp, addr)
        try:
            self.check_imdn(msg)
        except Exception as e:  # noqa: BLE001 (any parse failure is a finding)
            self.bad.append("IMDN %s: %s" % (msg.get("call-id"), e))

    def check_imdn(self, msg):
        if "message/cpim" not in msg.get("content-type").lower():
            raise ValueError("Content-Type %r" % msg.get("content-type"))
        cpim, mime, content = parse_cpim(msg.body)
        f = imdn_fields(cpim)
        problems = []
        if "message/imdn+xml" not in mime.get("content-type", ""):
            problems.append("inner Content-Type %r" % mime.get("content-type"))
        if mime.get("content-disposition", "").lower() != "notification":
            problems.append("Content-Disposition %r" % mime.get("content-disposition"))
        if not f.get("message-id"):
            problems.append("no imdn.Message-ID")
        if "disposition-notification" in f:
            problems.append("an IMDN asks for an IMDN")
        if not f.get(":datetime"):
            problems.append("no CPIM DateTime")
        if addr_uri(f.get(":to", "")) != addr_uri(msg.get("to")):
            problems.append("CPIM To %r is not SIP To %r" % (f.get(":to"), msg.get("to")))
        x = parse_imdn_xml(content)
        rec = self.msgs.get(x["message_id"])
        if rec is None:
            self.unmatched.append(x)
            return
        if x["kind"] != "delivery" or x["status"] != "delivered":
            problems.append("%s/%s" % (x["kind"], x["status"]))
        if not x["datetime"]:
            problems.append("no <datetime>")
        if rec["latency"] is None:
            rec["latency"] = (time.monotonic() - rec["sent_at"]) * 1000.0
        rec["imdns"].append({"kind": x["kind"], "status": x["status"]})
        if problems:
            self.bad.append("IMDN for %s: %s" % (x["message_id"], "; ".join(problems)))

    def run(self):
        a = self.a
        start = time.monotonic()
        deadline = start + a.timeout
        quiet_until = None
        while True:
            now = time.monotonic()
            while self.next_index < a.count and len(self.pending) < a.window:
                self.send_message()
            all_sent = self.next_index >= a.count and not self.pending
            all_in = all_sent and all(r["imdns"] for r in self.msgs.values())
            if all_in and quiet_until is None:
                # Linger a little: a second IMDN for a message would be a finding.
                self.last_imdn = now
                quiet_until = now + a.linger
            if (quiet_until is not None and now >= quiet_until) or now >= deadline:
                break
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if r:
                data, addr = self.sock.recvfrom(65535)
                if data.strip():
                    try:
                        msg = parse_sip(data)
                    except ValueError as e:
                        self.bad.append("unparsable datagram: %s" % e)
                        continue
                    if msg.is_response:
                        self.on_response(msg)
                    else:
                        self.on_request(msg, addr)
            now = time.monotonic()
            for branch, tx in list(self.pending.items()):
                if now - tx["start"] >= TIMER_F:
                    del self.pending[branch]
                    self.answered["timeout"] = self.answered.get("timeout", 0) + 1
                elif now >= tx["next"]:
                    self.sock.sendto(tx["data"], self.proxy)
                    tx["interval"] = min(tx["interval"] * 2, T2)
                    tx["next"] = now + tx["interval"]
        return self.report(start)

    def report(self, start):
        last = [r["sent_at"] + r["latency"] / 1000.0 for r in self.msgs.values()
                if r["latency"] is not None]
        elapsed = (max(last) if last else time.monotonic()) - start
        lat = [r["latency"] for r in self.msgs.values() if r["latency"] is not None]
        missing = [m for m, r in self.msgs.items() if not r["imdns"]]
        dup = [m for m, r in self.msgs.items() if len(r["imdns"]) > 1]
        not_2xx = [m for m, r in self.msgs.items() if not (r["final"] and 200 <= r["final"] < 300)]
        imdns = sum(len(r["imdns"]) for r in self.msgs.values())
        ok = (len(self.msgs) == self.a.count and not missing and not dup and not not_2xx
              and not self.unmatched and not self.bad)
        return {
            "sent": len(self.msgs),
            "answered": self.answered,
            "not_2xx": not_2xx[:20],
            "imdns": imdns,
            "missing": missing[:20],
            "missing_count": len(missing),
            "duplicates": dup[:20],
            "unmatched": self.unmatched[:20],
            "bad": self.bad[:20],
            "window": self.a.window,
            "elapsed_s": round(elapsed, 3),
            "messages_per_s": round(len(self.msgs) / elapsed, 1) if elapsed > 0 else None,
            "imdns_per_s": round(imdns / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99)},
            "ok": ok,
        }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:5062")
    p.add_argument("--proxy", default="127.0.0.1:5060")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--window", type=int, default=1,
                   help="MESSAGEs awaiting their final response at once")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds (default 20 + count / 100)")
    p.add_argument("--linger", type=float, default=1.0,
                   help="seconds to wait for duplicate IMDNs after the last one")
    a = p.parse_args(argv)
    if a.count < 1 or a.window < 1:
        p.error("--count and --window must be >= 1")
    if a.timeout is None:
        a.timeout = 20.0 + a.count / 100.0
    out = Check(a).run()
    print(json.dumps(out, sort_keys=True))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
