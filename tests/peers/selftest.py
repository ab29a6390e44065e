#!/usr/bin/env python3
"""Self-test of the peer scripts on 127.0.0.1, without iwf (no namespaces, no root).

    selftest.py [--port-base P]        (default 27000; uses P .. P+20, UDP and TCP)

SIP (sip_ua.py against a second sip_ua.py standing in for iwf, and a raw-socket fake):
  basic       MESSAGE -> 200 -> delivery IMDN -> 200, then display IMDN -> 200
  404 / none  an error answer sends no IMDN; no answer times out (short Timer F)
  wire        compact headers + bare LF parse; a retransmitted request gets the same
              response; OPTIONS -> 200; an IMDN is retransmitted (Timer E) until answered,
              a 100 Trying is absorbed
  forge       --forge 3 sends flip / random / truncated ids, all answered
SMPP (legacy_flow.py against a small fake of iwf's SMPP server that answers submit_sm with
32-character ids and sends each receipt to a receiver/transceiver bind of the same system):
  --count 3 --long --user-ack, and --unbind-before-receipts 1
Prints one line per check and exits 1 if any failed.
"""
import argparse
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UA = [sys.executable, os.path.join(HERE, "sip_ua.py")]
FLOW = [sys.executable, os.path.join(HERE, "legacy_flow.py")]
FAILED = []


def check(name, cond, detail=""):
    print("%-4s %s%s" % ("ok" if cond else "FAIL", name, "" if cond else "  " + str(detail)[:600]))
    if not cond:
        FAILED.append(name)


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise SystemExit("no JSON from %s (rc %d): %s %s" % (cmd, p.returncode, p.stdout, p.stderr))


def pair(conv_args, iwf_args, base):
    """Run the converged UA and a UA acting as iwf against each other; returns both JSONs."""
    a_addr, b_addr = "127.0.0.1:%d" % base, "127.0.0.1:%d" % (base + 1)
    a = subprocess.Popen(UA + ["--listen", a_addr, "--iwf", b_addr] + conv_args,
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    b = run_json(UA + ["--listen", b_addr, "--iwf", a_addr,
                       "--from", "sip:+447000100001@iwf.ims.lab;user=phone"] + iwf_args)
    out, _ = a.communicate(timeout=120)
    return json.loads(out), b


# ---------------------------------------------------------------- SIP

def sip_basic(base):
    a, b = pair(["--until-idle", "2"],
                ["--until-idle", "2", "--send-to", "sip:+447900000002@ims.lab;user=phone",
                 "--count", "3", "--want", "both"], base)
    check("basic: 3 MESSAGEs answered 200", b["responses"].get("message") == {"200": 3}, b["responses"])
    check("basic: delivery+display IMDN for each",
          all(v == {"delivery": "delivered", "display": "displayed"} for v in b["imdns_for_sent"].values())
          and len(b["imdns_for_sent"]) == 3 and not b["missing_imdns"], b["imdns_for_sent"])
    check("basic: converged UA got 3 non-IMDN messages with dispositions",
          a["received_counts"]["message"] == 3
          and all(r["dispositions"] == ["positive-delivery", "negative-delivery", "display"]
                  for r in a["received"]), a["received"])
    kinds = [s["kind"] for s in a["imdns_sent"]]
    check("basic: IMDNs sent delivery first, all answered 200",
          kinds == ["delivery", "display"] * 3 and a["responses"].get("imdn") == {"200": 6}, a["imdns_sent"])
    imdn = [r for r in b["received"] if r["is_imdn"]]
    check("basic: IMDN addressed to the legacy user, CPIM From = converged user",
          imdn and all(r["request_uri"] == "sip:+447000100001@iwf.ims.lab;user=phone"
                       and r["cpim_from"] == "sip:+447900000002@ims.lab;user=phone" for r in imdn), imdn[:1])
    check("basic: no errors", not a["errors"] and not b["errors"], a["errors"] + b["errors"])


def sip_error_answers(base):
    a, b = pair(["--until-idle", "2", "--answer", "404"],
                ["--until-idle", "2", "--send-to", "sip:+447900000002@ims.lab", "--count", "2"], base)
    check("404: answered 404, no IMDN", b["responses"].get("message") == {"404": 2}
          and not a["imdns_sent"] and not b["missing_imdns"], [b["responses"], a["imdns_sent"]])
    a, b = pair(["--until-idle", "4", "--answer", "none"],
                ["--until-idle", "1", "--timer-f", "3", "--send-to", "sip:+447900000002@ims.lab",
                 "--count", "1"], base + 2)
    check("none: request times out, retransmissions absorbed",
          b["responses"].get("message") == {"timeout": 1} and b["sent"][0]["retransmits"] >= 2
          and a["received_counts"]["retransmissions"] == b["sent"][0]["retransmits"]
          and a["received_counts"]["message"] == 1, [b["sent"], a["received_counts"]])


def raw_message(branch, body, compact):
    if compact:
        hdr = ["MESSAGE sip:+447900000009@ims.lab SIP/2.0",
               "v: SIP/2.0/UDP 127.0.0.1:1;branch=%s" % branch,
               "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKouter",
               "f: <sip:+447000100001@iwf.ims.lab;user=phone>;tag=abc",
               "t: <sip:+447900000009@ims.lab;user=phone>",
               "i: raw-1@127.0.0.1", "CSeq: 7 MESSAGE",
               "c: message/cpim", "l: %d" % len(body)]
        return ("\n".join(hdr) + "\n\n").encode() + body
    hdr = ["OPTIONS sip:127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:1;branch=%s" % branch,
           "From: <sip:iwf@iwf.ims.lab>;tag=o1", "To: <sip:core@ims.lab>", "Call-ID: opt-1",
           "CSeq: 1 OPTIONS", "Content-Length: 0"]
    return ("\r\n".join(hdr) + "\r\n\r\n").encode()


def sip_wire(base):
    """A raw socket plays iwf: compact headers, LF-only, retransmission, Timer E, 100 Trying."""
    ua_addr = ("127.0.0.1", base)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", base + 1))
    s.settimeout(5)
    a = subprocess.Popen(UA + ["--listen", "127.0.0.1:%d" % base, "--iwf", "127.0.0.1:%d" % (base + 1),
                               "--until-idle", "1.5", "--notify", "delivered"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    s.sendto(raw_message("z9hG4bKopt1", b"", False), ua_addr)
    opt = s.recv(65535).decode()
    check("wire: OPTIONS -> 200", opt.startswith("SIP/2.0 200"), opt)
    body = (b"From: <sip:+447000100001@iwf.ims.lab;user=phone>\nTo: <sip:+447900000009@ims.lab;user=phone>\n"
            b"NS: i <urn:ietf:params:imdn>\ni.Message-ID: 0123456789abcdefghijklmnopqrstuv\n"
            b"DateTime: 2024-01-01T00:00:00Z\ni.Disposition-Notification: positive-delivery, negative-delivery\n"
            b"\nContent-Type: text/plain\n\nhello from raw")
    pkt = raw_message("z9hG4bKraw1", body, True)
    s.sendto(pkt, ua_addr)
    time.sleep(0.05)
    s.sendto(pkt, ua_addr)
    # Two responses, and the IMDN: let three copies go unanswered, then 100, then 200.
    responses, times, imdn = [], [], None
    while len(times) < 3 or len(responses) < 2:
        data = s.recv(65535)
        if data.startswith(b"MESSAGE"):
            times.append(time.monotonic())
            imdn = data
        else:
            responses.append(data)
    r1, r2 = responses[0], responses[1]
    r1t = r1.decode()
    check("wire: compact/LF MESSAGE -> 200 with both Vias, To tag, Content-Length 0",
          r1t.startswith("SIP/2.0 200") and r1t.count("Via: ") == 2 and ";tag=" in r1t.split("To: ")[1].split("\r\n")[0]
          and "Content-Length: 0" in r1t and "Call-ID: raw-1@127.0.0.1" in r1t, r1t)
    check("wire: retransmitted request gets the same response", r1 == r2)
    gaps = [round(times[i + 1] - times[i], 2) for i in range(2)]
    check("wire: IMDN retransmitted on Timer E (0.5 s, 1 s)",
          0.4 <= gaps[0] <= 0.75 and 0.9 <= gaps[1] <= 1.3, gaps)
    text = imdn.decode()
    check("wire: IMDN carries the tag, NS, Content-Disposition, delivered",
          "<message-id>0123456789abcdefghijklmnopqrstuv</message-id>" in text
          and "NS: imdn <urn:ietf:params:imdn>" in text and "Content-Disposition: notification" in text
          and "<delivered/>" in text and text.startswith("MESSAGE sip:+447000100001@iwf.ims.lab;user=phone SIP/2.0"),
          text)
    head = text.split("\r\n\r\n")[0]
    via = re.search(r"Via: (.*)", head).group(1)
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head.split("\r\n")[1:]}

    def resp(code, reason):
        return ("SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=x\r\nCall-ID: %s\r\nCSeq: %s\r\n"
                "Content-Length: 0\r\n\r\n" % (code, reason, via, hdrs["from"], hdrs["to"], hdrs["call-id"],
                                               hdrs["cseq"])).encode()
    s.sendto(resp(100, "Trying"), ua_addr)
    time.sleep(0.3)
    s.sendto(resp(200, "OK"), ua_addr)
    out, _ = a.communicate(timeout=30)
    a = json.loads(out)
    check("wire: IMDN final 200 recorded, message parsed",
          a["imdns_sent"][0]["final"] == 200 and a["received"][0]["message_id"] == "0123456789abcdefghijklmnopqrstuv"
          and a["received"][0]["text"] == "hello from raw" and a["received"][0]["dispositions"] == ["positive-delivery", "negative-delivery"]
          and a["received_counts"] == {"message": 1, "imdn": 0, "options": 1, "other": 0, "retransmissions": 1},
          a)
    s.close()


def sip_forge(base):
    a, b = pair(["--until-idle", "1.5", "--forge", "3", "--notify", "delivered"],
                ["--until-idle", "2.5", "--send-to", "sip:+447900000002@ims.lab", "--count", "1"], base)
    tag = a["received"][0]["message_id"]
    f = a["forged"]
    check("forge: flip/random/truncated sent and answered",
          [x["kind"] for x in f] == ["flip", "random", "truncated"] and all(x["final"] == 200 for x in f)
          and a["responses"].get("forged") == {"200": 3}, f)
    check("forge: ids differ from the real tag the right way",
          len(f[0]["message_id"]) == len(tag) and f[0]["message_id"] != tag
          and sum(x != y for x, y in zip(tag, f[0]["message_id"])) == 1
          and re.match(r"^[0-9a-v]{32}$", f[1]["message_id"]) and f[2]["message_id"] == tag[:-1], [tag, f])
    check("forge: the peer saw them as IMDNs for unknown ids",
          sorted(x["message_id"] for x in b["unmatched_imdns"]) == sorted(x["message_id"] for x in f),
          b["unmatched_imdns"])


# ---------------------------------------------------------------- SMPP fake

def cstr(b, pos):
    end = b.index(b"\0", pos)
    return b[pos:end].decode("latin-1"), end + 1


class FakeSmsc:
    """Just enough of iwf's SMPP server for legacy_flow.py: binds, submit_sm, receipts."""

    def __init__(self, port):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(16)
        self.lock = threading.Lock()
        self.binds = {}    # system_id -> [(sock, wlock)] that can receive
        self.queue = {}    # system_id -> [pdu bytes] not yet delivered
        self.seq = 1000
        self.rng = random.Random(7)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.srv.accept()
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def deliver(self, sysid):
        with self.lock:
            targets = self.binds.get(sysid, [])
            if not targets:
                return
            pending, self.queue[sysid] = self.queue.get(sysid, []), []
        for i, pdu in enumerate(pending):
            sock, wl = targets[i % len(targets)]
            with wl:
                sock.sendall(pdu)

    def conn(self, c):
        wl, sysid, entry = threading.Lock(), None, None

        def send(cmd, status, seq, body=b""):
            with wl:
                c.sendall(struct.pack(">IIII", 16 + len(body), cmd, status, seq) + body)
        try:
            while True:
                head = b""
                while len(head) < 16:
                    d = c.recv(16 - len(head))
                    if not d:
                        raise EOFError
                    head += d
                length, cmd, _, seq = struct.unpack(">IIII", head)
                body = b""
                while len(body) < length - 16:
                    body += c.recv(length - 16 - len(body))
                if cmd in (1, 2, 9):  # bind_receiver, bind_transmitter, bind_transceiver
                    sysid, _ = cstr(body, 0)
                    send(cmd | 0x80000000, 0, seq, b"fake\0")
                    if cmd in (1, 9):
                        entry = (c, wl)
                        with self.lock:
                            self.binds.setdefault(sysid, []).append(entry)
                        self.deliver(sysid)
                elif cmd == 4:  # submit_sm
                    pos = cstr(body, 0)[1] + 2
                    src, pos = cstr(body, pos)
                    pos += 2
                    dst, pos = cstr(body, pos)
                    _, pos = cstr(body, pos + 3)  # esm_class, protocol_id, priority; schedule
                    _, pos = cstr(body, pos)      # validity period
                    rd = body[pos]                # registered_delivery
                    mid = "".join(self.rng.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(32))
                    send(0x80000004, 0, seq, mid.encode() + b"\0")
                    kinds = [0x04] if rd & 0x03 else []
                    if rd & 0x08:
                        kinds.append(0x10)
                    for esm in kinds:
                        text = ("id:%s sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 "
                                "stat:DELIVRD err:000 text:" % mid).encode()
                        b = (b"\0" + bytes([1, 1]) + dst.encode() + b"\0" + bytes([1, 1]) + src.encode() + b"\0"
                             + bytes([esm, 0, 0]) + b"\0\0" + bytes([0, 0, 0, 0, len(text)]) + text
                             + struct.pack(">HH", 0x001E, len(mid) + 1) + mid.encode() + b"\0"
                             + struct.pack(">HHB", 0x0427, 1, 2))
                        with self.lock:
                            self.seq += 1
                            self.queue.setdefault(sysid, []).append(
                                struct.pack(">IIII", 16 + len(b), 5, 0, self.seq) + b)
                    self.deliver(sysid)
                elif cmd == 6:  # unbind
                    send(0x80000006, 0, seq)
                    break
                elif cmd == 0x15:
                    send(0x80000015, 0, seq)
        except (EOFError, OSError):
            pass
        finally:
            if entry is not None:
                with self.lock:
                    self.binds[sysid].remove(entry)
            c.close()


def smpp_flow(base):
    FakeSmsc(base)
    r = run_json(FLOW + ["--host", "127.0.0.1", "--port", str(base), "--count", "3", "--long", "--user-ack",
                         "--receipt-timeout", "10"])
    a, b = r["systems"]["smsc-a"], r["systems"]["smsc-b"]
    check("smpp: 6 submit_sm per system, all 0x0",
          a["resp_statuses"] == {"0x0": 6} and b["resp_statuses"] == {"0x0": 6}, [a["resp_statuses"], b["resp_statuses"]])
    check("smpp: receipts + user acks all matched, none missing",
          r["checks"] == {"every_receipt_matches": True, "missing": [], "missing_user_ack": [],
                          "unexpected": [], "misrouted": [], "errors": 0}, r["checks"])
    check("smpp: smsc-a receipts on transceiver, smsc-b on receiver, TLVs read",
          {x["bind"] for x in a["receipts"]} == {"transceiver"} and {x["bind"] for x in b["receipts"]} == {"receiver"}
          and len(a["receipts"]) == 12 and all(x["message_state"] == 2 and x["stat"] == "DELIVRD" for x in a["receipts"]),
          a["receipts"][:2])
    check("smpp: registered_delivery 0x09 with --user-ack", a["registered_delivery"] == 9)
    r = run_json(FLOW + ["--host", "127.0.0.1", "--port", str(base), "--count", "2",
                         "--unbind-before-receipts", "1", "--receipt-timeout", "10"])
    b = r["systems"]["smsc-b"]
    check("smpp: unbind-before-receipts: queued receipts arrive after the rebind",
          r["checks"]["every_receipt_matches"] and not r["checks"]["missing"]
          and len(b["receipts"]) == 2 and all(x["phase"] == "after_rebind" for x in b["receipts"]), r["checks"])
    check("smpp: no errors", not a["errors"] and not b["errors"], a["errors"] + b["errors"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-base", type=int, default=27000)
    base = p.parse_args().port_base
    sip_basic(base)
    sip_error_answers(base + 2)
    sip_wire(base + 6)
    sip_forge(base + 8)
    smpp_flow(base + 10)
    print("selftest: %s" % ("FAILED " + ", ".join(FAILED) if FAILED else "all passed"))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
