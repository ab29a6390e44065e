#!/usr/bin/env python3
"""A scripted SIP UA on UDP standing in for the SIP core and the converged users.

In the lab it runs in namespace iwf-conv at 198.18.2.1:5060, where iwf sends its SIP
MESSAGEs (legacy -> converged) and its keep-alive OPTIONS. Stdlib only.

    sip_ua.py --listen 198.18.2.1:5060 --iwf 198.18.2.2:5060
              [--answer 200|404|503|none]            status for MESSAGEs to converged users
              [--notify delivered|displayed|both|none] IMDNs to send back for those
              [--delivery-status delivered|failed|forbidden|error]
              [--notify-delay S]                     wait S s before the first IMDN
              [--duration S | --until-idle S]        how long to run (default --until-idle 5)
              [--send-to tel:+447000300001 --count N --want delivery|display|both|none]
              [--from sip:+447900000001@ims.lab;user=phone] [--rate R]
              [--forge N] [--seed K]
              [--imdn-first S] [--replay N] [--lie-cpim-to URI] [--tcp] [--picture]
              [--retry N [--retry-delay S]]

Behaviour
- --picture: the --send-to MESSAGEs carry a JPEG picture (image/jpeg) instead of text.
- --tcp: requests are taken over TCP on --listen too (a core's TCP transport: iwf sends
  its large MESSAGEs, an MMS's, that way), framed by Content-Length and answered on
  their connection; everything the UA sends itself still goes over UDP.
- OPTIONS -> 200. MESSAGE -> --answer (Via/From/To/Call-ID/CSeq copied, To tag added,
  Content-Length 0); --answer none sends nothing. A retransmitted request (same branch,
  sent-by and method) gets the stored response again (or nothing, again).
- A MESSAGE whose body is an IMDN (CPIM with message/imdn+xml) is always answered 200 and
  recorded; if it refers to one of our own --send-to messages its status is recorded there.
- For every new non-IMDN MESSAGE answered 2xx that asked for notifications, IMDNs go back
  to --iwf: the delivery notification first (if positive-delivery was asked and --notify
  is delivered|both), then, after its final response, the display notification (if display
  was asked and --notify is displayed|both). Request-URI = the original CPIM From (the
  legacy user), SIP/CPIM From = the converged user, <message-id> = the original
  imdn.Message-ID. Non-INVITE client transactions: Timer E from 500 ms doubling up to
  4 s (4 s after a 1xx), Timer F 32 s.
- --send-to: sends --count MESSAGEs (paced at --rate per second) from --from with unique
  imdn.Message-IDs and the dispositions of --want; records their final responses and the
  IMDNs iwf later delivers for them.
- --imdn-first S: the IMDNs of a MESSAGE go out at once and its final response only S
  seconds later (a core that forwards the IMDN faster than the 200).
- --replay N: each IMDN is sent N more times, each as a new transaction (new Call-ID and
  branch) once the previous one got its final response; their statuses are recorded in
  "replays" (a replay must be answered, and relayed to the legacy system only once).
- --lie-cpim-to URI: the IMDNs' CPIM To names URI instead of the legacy user (the SIP
  To and Request-URI still name the message's own): the receipt must still go to the
  message's own originator.
- --iwf may list several boxes (h1:p1,h2:p2), a core's failover list: requests go to the
  first until --retry moves them on.
- --retry N: an IMDN answered 503 or unanswered (Timer F) is sent again as a new
  transaction --retry-delay S later (default 1), to the next box of --iwf, at most N
  times; each attempt's final status is in its imdns_sent record's "attempts".
- --forge N: when the run would otherwise end, sends N delivery IMDNs whose <message-id>
  is forged (cycling: one character of a real received tag flipped, a random 32-character
  id, a real tag truncated to 31 characters), then waits for their final responses.

The run ends after --duration S, on SIGTERM, or once nothing was received and no transaction or
scheduled send was outstanding for --until-idle S (at most --max-time, default 600 s);
the --forge phase comes after that. Prints ONE JSON object (keys sorted, lists in arrival
order):

  received          [{method, request_uri, call_id, from, to, cpim_from, cpim_to,
                      message_id, dispositions, content_type, text, is_imdn,
                      imdn: {message_id, kind, status} | null, answered, duplicate}]
  received_counts   {message, imdn, options, other, retransmissions}
  imdns_sent        [{message_id, kind, status, imdn_id, call_id, final, retransmits}]
  sent              [{message_id, call_id, to, final, imdns: {kind: status}}]
  imdns_for_sent    {message_id: {kind: status}}
  missing_imdns     [message_id ...]   sent messages lacking a wanted IMDN
  unmatched_imdns   [{message_id, kind, status}]  IMDNs for ids we never sent
  forged            [{kind, message_id, final}]
  responses         {imdn|message|forged: {"200": n, ..., "timeout": n}}
  errors            [text ...]
'final' is the final status code, or null when Timer F fired (or the run ended first).
Exit status 0, or 1 when the socket cannot be opened, 2 on a usage error.
"""
import argparse
import heapq
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import sys
import time
import xml.etree.ElementTree as ET

from picture import JPEG

COMPACT = {
    "i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length",
    "c": "content-type", "m": "contact", "k": "supported", "s": "subject",
    "e": "content-encoding", "o": "event", "r": "refer-to", "u": "allow-events",
}
TAG_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
IMDN_URN = "urn:ietf:params:imdn"
IMDN_XMLNS = "urn:ietf:params:xml:ns:imdn"
CRLF = "\r\n"
MAX_XML = 16384


# ---------------------------------------------------------------- parsing

class SipMessage:
    def __init__(self, start, headers, body):
        self.start = start
        self.headers = headers  # [(lowercase full name, value)] in wire order
        self.body = body
        parts = start.split(" ", 2)
        self.is_response = parts[0].upper().startswith("SIP/")
        if self.is_response:
            self.status = int(parts[1])
            self.method = None
            self.uri = None
        else:
            if len(parts) < 3 or not parts[2].upper().startswith("SIP/"):
                raise ValueError("bad request line: %r" % start)
            self.method, self.uri, self.status = parts[0].upper(), parts[1], None

    def get(self, name, default=""):
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def all(self, name):
        return [v for n, v in self.headers if n == name]

    def vias(self):
        out = []
        for v in self.all("via"):
            out.extend(x.strip() for x in split_commas(v) if x.strip())
        return out

    def cseq_method(self):
        parts = self.get("cseq").split()
        return parts[1].upper() if len(parts) > 1 else ""


def split_commas(value):
    """Split a header value on commas outside quotes and angle brackets."""
    out, cur, quote, angle = [], [], False, 0
    for ch in value:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            angle += 1
        elif not quote and ch == ">":
            angle = max(0, angle - 1)
        if ch == "," and not quote and not angle:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def split_head_body(data):
    """Split at the first empty line (CRLF CRLF, or bare LF LF)."""
    m = re.search(rb"\r?\n\r?\n", data)
    if not m:
        return data, b""
    return data[:m.start()], data[m.end():]


def parse_header_lines(text):
    """Unfold and split 'Name: value' lines; returns [(lowercase name, value)]."""
    lines = re.split(r"\r?\n", text)
    unfolded = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line:
            unfolded.append(line)
    headers = []
    for line in unfolded:
        if ":" not in line:
            raise ValueError("header without colon: %r" % line)
        name, value = line.split(":", 1)
        headers.append((name.strip().lower(), value.strip()))
    return headers


def parse_sip(data):
    head, body = split_head_body(data)
    text = head.decode("utf-8", "replace")
    first, _, rest = text.partition("\n")
    headers = [(COMPACT.get(n, n), v) for n, v in parse_header_lines(rest)]
    msg = SipMessage(first.strip(), headers, body)
    cl = msg.get("content-length")
    if cl.strip().isdigit() and int(cl) <= len(body):
        msg.body = body[: int(cl)]
    return msg


def param(value, name):
    """A ;name=value parameter of a header value (after the name-addr), or ''."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value
    for p in tail.split(";")[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == name:
            return v.strip()
    return ""


def addr_uri(value):
    """The URI of a name-addr / addr-spec header value."""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1).strip()
    return value.split(";", 1)[0].strip()


def via_key(via):
    """(branch, sent-by) of one Via value."""
    parts = via.split(";")
    sent_by = parts[0].split()[-1] if parts[0].split() else ""
    branch = ""
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "branch":
            branch = v.strip()
    return branch, sent_by.lower()


def parse_cpim(body):
    """message/cpim -> (cpim headers [(name, value)], mime headers {lname: value}, content)."""
    head, rest = split_head_body(body)
    cpim = []
    for n, v in parse_header_lines(head.decode("utf-8", "replace")):
        cpim.append((n, v))
    mime_head, content = split_head_body(rest)
    mime = dict(parse_header_lines(mime_head.decode("utf-8", "replace")))
    cl = mime.get("content-length", "")
    if cl.isdigit() and int(cl) <= len(content):
        content = content[: int(cl)]
    return cpim, mime, content


def imdn_fields(cpim_headers):
    """CPIM headers in the IMDN namespace, by lowercase local name; plus From/To/DateTime."""
    prefixes = {"imdn"}
    for n, v in cpim_headers:
        if n == "ns":
            m = re.match(r"\s*(\S*)\s*<([^>]*)>", v)
            if m and m.group(2).strip().lower() == IMDN_URN:
                prefixes.add(m.group(1).lower())
    out = {}
    for n, v in cpim_headers:
        if "." in n:
            prefix, local = n.split(".", 1)
            if prefix in prefixes:
                out.setdefault(local, v)
        elif n in ("from", "to", "datetime"):
            out.setdefault(":" + n, v)
    return out


def parse_imdn_xml(content):
    """<imdn> -> {message_id, datetime, kind, status}; raises ValueError when unusable."""
    if len(content) > MAX_XML:
        raise ValueError("IMDN XML too large")
    if b"<!DOCTYPE" in content.upper() or b"<!ENTITY" in content.upper():
        raise ValueError("IMDN XML with a DTD")
    root = ET.fromstring(content)

    def local(tag):
        return tag.rsplit("}", 1)[-1]

    out = {"message_id": None, "datetime": None, "kind": None, "status": None}
    for el in root.iter():
        name = local(el.tag)
        if name == "message-id":
            out["message_id"] = (el.text or "").strip()
        elif name == "datetime":
            out["datetime"] = (el.text or "").strip()
        elif name.endswith("-notification"):
            out["kind"] = name[: -len("-notification")]
            for st in el.iter():
                if local(st.tag) == "status" and len(st):
                    out["status"] = local(st[0].tag)
    return out


# ---------------------------------------------------------------- building

def now_datetime():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_cpim(from_uri, to_uri, msg_id, dispositions, content_type, content,
               disposition_header=None):
    lines = [
        "From: <%s>" % from_uri,
        "To: <%s>" % to_uri,
        "NS: imdn <%s>" % IMDN_URN,
        "imdn.Message-ID: %s" % msg_id,
        "DateTime: %s" % now_datetime(),
    ]
    if dispositions:
        lines.append("imdn.Disposition-Notification: %s" % dispositions)
    mime = ["Content-Type: %s" % content_type]
    if disposition_header:
        mime.append("Content-Disposition: %s" % disposition_header)
    mime.append("Content-Length: %d" % len(content))
    return (CRLF.join(lines) + CRLF + CRLF + CRLF.join(mime) + CRLF + CRLF).encode() + content


def build_imdn_xml(message_id, datetime, recipient, kind, status):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>' + CRLF
        + '<imdn xmlns="%s">' % IMDN_XMLNS + CRLF
        + "<message-id>%s</message-id>" % xml_escape(message_id) + CRLF
        + "<datetime>%s</datetime>" % xml_escape(datetime) + CRLF
        + "<recipient-uri>%s</recipient-uri>" % xml_escape(recipient) + CRLF
        + "<original-recipient-uri>%s</original-recipient-uri>" % xml_escape(recipient) + CRLF
        + "<%s-notification><status><%s/></status></%s-notification>" % (kind, status, kind) + CRLF
        + "</imdn>" + CRLF
    ).encode()


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_response(req, status, reason, to_tag):
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for v in req.all("via"):
        lines.append("Via: " + v)
    lines.append("From: " + req.get("from"))
    to = req.get("to")
    if not param(to, "tag"):
        to += ";tag=" + to_tag
    lines.append("To: " + to)
    lines.append("Call-ID: " + req.get("call-id"))
    lines.append("CSeq: " + req.get("cseq"))
    lines.append("Server: iwf-peers-sip-ua")
    lines.append("Content-Length: 0")
    return (CRLF.join(lines) + CRLF + CRLF).encode()


REASONS = {200: "OK", 202: "Accepted", 404: "Not Found", 405: "Method Not Allowed",
           480: "Temporarily Unavailable", 486: "Busy Here", 500: "Server Internal Error",
           503: "Service Unavailable"}


# ---------------------------------------------------------------- the UA

class ClientTx:
    def __init__(self, kind, data, dest, record, on_final, t1):
        self.kind = kind          # "imdn", "message" or "forged": the responses bucket
        self.data = data
        self.dest = dest
        self.record = record      # the dict in the JSON output that gets 'final'
        self.on_final = on_final
        self.interval = t1
        self.provisional = False
        self.done = False


class UA:
    def __init__(self, args):
        self.args = args
        self.listen = hostport(args.listen)
        # --iwf may name several boxes: a core's failover list (the first until it fails).
        self.iwfs = [hostport(h) for h in args.iwf.split(",")]
        self.iwf = self.iwfs[0]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(self.listen)
        self.via_host = "%s:%d" % self.sock.getsockname()
        self.rng = random.Random(args.seed)
        self.uniq = "%x%x" % (os.getpid(), int(time.time()) & 0xFFFFFF)
        self.counter = itertools.count(1)
        self.server_tx = {}       # key -> response bytes or None (answer none)
        self.client_tx = {}       # branch -> ClientTx
        self.timers = []          # heap of (due, n, callable)
        self.received = []
        self.counts = {"message": 0, "imdn": 0, "options": 0, "other": 0, "retransmissions": 0}
        self.seen_ids = set()
        self.imdns_sent = []
        self.replays = []
        self.sent = []
        self.sent_by_id = {}
        self.unmatched_imdns = []
        self.forged = []
        self.responses = {}
        self.errors = []
        self.last_activity = time.monotonic()
        self.tcp = None
        self.conns = {}           # fileno -> [socket, bytearray]
        if args.tcp:
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind(self.listen)
            self.tcp.listen(16)

    # -- plumbing

    def new_id(self, prefix):
        return "%s%s%06d" % (prefix, self.uniq, next(self.counter))

    def later(self, delay, fn):
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self.counter), fn))

    def send(self, data, dest):
        if dest[0] == "tcp":
            conn = self.conns.get(dest[1])
            if conn is None:
                self.errors.append("TCP connection %d gone before its answer" % dest[1])
                return
            try:
                conn[0].sendall(data)
            except OSError as e:
                self.errors.append("TCP send: %s" % e)
            return
        try:
            self.sock.sendto(data, dest)
        except OSError as e:
            self.errors.append("sendto %s:%d: %s" % (dest[0], dest[1], e))

    def on_tcp(self, fd):
        """Reads connection `fd`; each whole message (by Content-Length) goes on."""
        conn = self.conns[fd]
        try:
            data = conn[0].recv(65536)
        except OSError:
            data = b""
        if not data:
            conn[0].close()
            del self.conns[fd]
            return
        buf = conn[1]
        buf += data
        while True:
            while buf[:2] == b"\r\n":
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", bytes(buf[:end + 2]))
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                return
            frame = bytes(buf[:total])
            del buf[:total]
            self.on_packet(frame, ("tcp", fd))

    def start_tx(self, kind, data, record, on_final=None, dest=None):
        branch = re.search(rb"branch=([^;\r\n ]+)", data).group(1).decode()
        tx = ClientTx(kind, data, dest or self.iwf, record, on_final, self.args.t1)
        tx.started = time.monotonic()
        tx.next_retx = tx.started + tx.interval
        record["final"] = None
        record["retransmits"] = 0
        self.client_tx[branch] = tx
        self.send(data, tx.dest)
        self.last_activity = time.monotonic()

    def finish_tx(self, branch, status):
        tx = self.client_tx.pop(branch)
        tx.done = True
        tx.record["final"] = status
        key = "timeout" if status is None else str(status)
        bucket = self.responses.setdefault(tx.kind, {})
        bucket[key] = bucket.get(key, 0) + 1
        if tx.on_final:
            tx.on_final(status)

    def request(self, method, ruri, from_uri, to_uri, body, content_type):
        branch = "z9hG4bK" + self.new_id("ua")
        call_id = self.new_id("c") + "@" + self.listen[0]
        lines = [
            "%s %s SIP/2.0" % (method, ruri),
            "Via: SIP/2.0/UDP %s;branch=%s" % (self.via_host, branch),
            "Max-Forwards: 70",
            "From: <%s>;tag=%s" % (from_uri, self.new_id("t")),
            "To: <%s>" % to_uri,
            "Call-ID: %s" % call_id,
            "CSeq: 1 %s" % method,
            "User-Agent: iwf-peers-sip-ua",
            "Content-Type: %s" % content_type,
            "Content-Length: %d" % len(body),
        ]
        return (CRLF.join(lines) + CRLF + CRLF).encode() + body, call_id

    # -- the loop

    def run(self):
        a = self.args
        start = time.monotonic()
        if a.send_to:
            for i in range(a.count):
                self.later(i / a.rate if a.rate > 0 else 0, lambda i=i: self.send_own(i))
        phase = "main"
        # SIGTERM ends the run as --duration would (the report is still printed).
        self.terminated = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "terminated", True))
        while True:
            now = time.monotonic()
            busy = bool(self.client_tx) or bool(self.timers)
            if self.terminated:
                break
            if phase == "main":
                end = now - start >= a.max_time
                if a.duration is not None:
                    end = end or now - start >= a.duration
                else:
                    end = end or (not busy and now - self.last_activity >= a.until_idle)
                if end:
                    if a.forge > 0:
                        phase = "forge"
                        forge_end = now + a.timer_f + 3
                        self.send_forged()
                        continue
                    break
            elif not self.client_tx or now >= forge_end:
                break
            due = [now + 0.1]
            if self.timers:
                due.append(self.timers[0][0])
            for tx in self.client_tx.values():
                due.append(tx.next_retx)
            wait = max(0.0, min(due) - now)
            watch = [self.sock] + ([self.tcp] if self.tcp else []) + [c[0] for c in self.conns.values()]
            r, _, _ = select.select(watch, [], [], wait)
            for s in r:
                self.last_activity = time.monotonic()
                if s is self.sock:
                    try:
                        data, addr = self.sock.recvfrom(65535)
                    except OSError as e:
                        self.errors.append("recvfrom: %s" % e)
                        continue
                    self.on_packet(data, addr)
                elif s is self.tcp:
                    c, _ = self.tcp.accept()
                    self.conns[c.fileno()] = [c, bytearray()]
                else:
                    self.on_tcp(s.fileno())
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                fn()
            for branch, tx in list(self.client_tx.items()):
                if now - tx.started >= a.timer_f:
                    self.finish_tx(branch, None)
                elif now >= tx.next_retx:
                    self.send(tx.data, tx.dest)
                    tx.record["retransmits"] += 1
                    tx.interval = a.t2 if tx.provisional else min(tx.interval * 2, a.t2)
                    tx.next_retx = now + tx.interval
        return self.report()

    # -- incoming

    def on_packet(self, data, addr):
        if not data.strip():
            return  # CRLF keep-alive
        try:
            msg = parse_sip(data)
        except (ValueError, IndexError) as e:
            self.errors.append("unparsable packet from %s:%s: %s" % (addr[0], addr[1], e))
            return
        if msg.is_response:
            self.on_response(msg)
        else:
            self.on_request(msg, addr)

    def on_response(self, msg):
        vias = msg.vias()
        branch = via_key(vias[0])[0] if vias else ""
        tx = self.client_tx.get(branch)
        if tx is None:
            return  # a retransmitted final response, or a stray one
        if msg.status < 200:
            tx.provisional = True
            tx.interval = self.args.t2
            tx.next_retx = time.monotonic() + tx.interval
            return
        self.finish_tx(branch, msg.status)

    def on_request(self, msg, addr):
        vias = msg.vias()
        branch, sent_by = via_key(vias[0]) if vias else ("", "")
        if branch.startswith("z9hG4bK"):
            key = (branch, sent_by, msg.method)
        else:
            key = (msg.get("call-id"), msg.get("cseq"), param(msg.get("from"), "tag"), msg.method)
        if key in self.server_tx:
            self.counts["retransmissions"] += 1
            if self.server_tx[key] is not None:
                self.send(self.server_tx[key], addr)
            return
        if msg.method == "ACK":
            return
        if msg.method == "OPTIONS":
            self.counts["options"] += 1
            self.respond(key, msg, addr, 200)
        elif msg.method == "MESSAGE":
            self.on_message(key, msg, addr)
        else:
            self.counts["other"] += 1
            self.respond(key, msg, addr, 405)

    def respond(self, key, msg, addr, status):
        if status is None:
            self.server_tx[key] = None
            return
        data = build_response(msg, status, REASONS.get(status, "Status"), self.new_id("s"))
        self.server_tx[key] = data
        self.send(data, addr)

    def on_message(self, key, msg, addr):
        ctype = msg.get("content-type").split(";")[0].strip().lower()
        rec = {
            "method": "MESSAGE",
            "request_uri": msg.uri,
            "call_id": msg.get("call-id"),
            "from": addr_uri(msg.get("from")),
            "to": addr_uri(msg.get("to")),
            "cpim_from": None, "cpim_to": None, "message_id": None, "dispositions": [],
            "content_type": ctype, "text": None, "is_imdn": False, "imdn": None,
            "answered": None, "duplicate": False,
        }
        datetime = None
        try:
            if ctype == "message/cpim":
                cpim, mime, content = parse_cpim(msg.body)
                f = imdn_fields(cpim)
                rec["cpim_from"] = addr_uri(f[":from"]) if ":from" in f else None
                rec["cpim_to"] = addr_uri(f[":to"]) if ":to" in f else None
                rec["message_id"] = f.get("message-id")
                datetime = f.get(":datetime")
                disp = f.get("disposition-notification", "")
                rec["dispositions"] = [d.strip().lower() for d in disp.split(",") if d.strip()]
                inner = mime.get("content-type", "").split(";")[0].strip().lower()
                rec["content_type"] = inner or ctype
                is_imdn = inner == "message/imdn+xml" or \
                    mime.get("content-disposition", "").lower().startswith("notification")
                if is_imdn:
                    rec["is_imdn"] = True
                    x = parse_imdn_xml(content)
                    rec["imdn"] = {k: x[k] for k in ("message_id", "kind", "status")}
                else:
                    rec["text"] = content.decode("utf-8", "replace")
            else:
                rec["text"] = msg.body.decode("utf-8", "replace")
        except (ValueError, ET.ParseError) as e:
            self.errors.append("bad MESSAGE body (Call-ID %s): %s" % (rec["call_id"], e))
        self.received.append(rec)
        if rec["is_imdn"]:
            self.counts["imdn"] += 1
            rec["answered"] = 200
            self.respond(key, msg, addr, 200)
            self.on_imdn(rec)
            return
        self.counts["message"] += 1
        status = None if self.args.answer == "none" else int(self.args.answer)
        rec["answered"] = status
        if self.args.imdn_first is not None and status is not None:
            # Nothing for retransmissions meanwhile; the answer comes after the IMDNs.
            self.server_tx[key] = None
            self.later(self.args.imdn_first, lambda: self.respond(key, msg, addr, status))
        else:
            self.respond(key, msg, addr, status)
        mid = rec["message_id"]
        if mid is not None:
            if mid in self.seen_ids:
                rec["duplicate"] = True
                return
            self.seen_ids.add(mid)
        if status is None or status >= 300 or mid is None:
            return
        self.plan_imdns(rec, datetime or now_datetime())

    def on_imdn(self, rec):
        info = rec["imdn"] or {}
        mid = info.get("message_id")
        sent = self.sent_by_id.get(mid)
        if sent is None:
            self.unmatched_imdns.append(dict(info))
            return
        sent["imdns"][info.get("kind") or "?"] = info.get("status")

    # -- IMDNs back to iwf

    def plan_imdns(self, rec, datetime):
        a = self.args
        disp = rec["dispositions"]
        kinds = []
        if "positive-delivery" in disp and a.notify in ("delivered", "both"):
            kinds.append(("delivery", a.delivery_status))
        if "display" in disp and a.notify in ("displayed", "both"):
            kinds.append(("display", "displayed"))
        if not kinds:
            return

        def chain(i):
            if i < len(kinds):
                kind, status = kinds[i]
                self.send_imdn(rec, datetime, kind, status, "imdn", lambda _st: chain(i + 1))

        self.later(0 if a.imdn_first is not None else a.notify_delay, lambda: chain(0))

    def send_imdn(self, orig, datetime, kind, status, bucket, on_final=None, message_id=None):
        user = orig.get("cpim_to") or orig.get("to") or self.args.from_uri
        legacy = orig.get("cpim_from") or orig.get("from") or "sip:+447000100001@iwf.ims.lab;user=phone"
        mid = message_id if message_id is not None else orig["message_id"]
        imdn_id = self.new_id("imdn")
        xml = build_imdn_xml(mid, datetime, user, kind, status)
        cpim_to = self.args.lie_cpim_to if bucket == "imdn" and self.args.lie_cpim_to else legacy
        body = build_cpim(user, cpim_to, imdn_id, None, "message/imdn+xml", xml, "notification")
        data, call_id = self.request("MESSAGE", legacy, user, legacy, body, "message/cpim")
        record = {"message_id": mid, "kind": kind, "status": status, "imdn_id": imdn_id,
                  "call_id": call_id}
        if bucket == "imdn":
            self.imdns_sent.append(record)
            replays = self.args.replay

            def replayed(st, n=1):
                # The same notification again, as a new transaction, once the last ended.
                if n > 1:
                    self.replays.append({"message_id": mid, "kind": kind, "final": st})
                if n <= replays:
                    again, _ = self.request("MESSAGE", legacy, user, legacy, body, "message/cpim")
                    self.start_tx("replay", again, {"message_id": mid}, lambda st2: replayed(st2, n + 1))
                elif on_final:
                    on_final(st)

            done = replayed if replays > 0 else on_final
            if self.args.retry > 0:
                done = self.retrying(record, body, legacy, user, done)
            self.start_tx(bucket, data, record, done)
            return record
        self.start_tx(bucket, data, record, on_final)
        return record

    def retrying(self, record, body, legacy, user, on_final):
        """A core's retry of a notification refused 503 or unanswered: the same IMDN again as
        a new transaction, --retry-delay later, to the next box of --iwf (failover), at
        most --retry times. Each attempt's status is in record["attempts"]."""
        record["attempts"] = []
        box = [self.iwf]

        def done(st):
            record["attempts"].append(st)
            if (st is None or st == 503) and len(record["attempts"]) <= self.args.retry:
                # The next box after the one that failed; new requests go there too (the
                # core marks the box down) until it fails in turn.
                box[0] = self.iwfs[(self.iwfs.index(box[0]) + 1) % len(self.iwfs)]
                self.iwf = box[0]

                def again():
                    data, call_id = self.request("MESSAGE", legacy, user, legacy, body, "message/cpim")
                    record["call_id"] = call_id
                    self.start_tx("imdn", data, record, done, dest=box[0])

                self.later(self.args.retry_delay, again)
            elif on_final:
                on_final(st)

        return done

    def send_forged(self):
        tags = [r["message_id"] for r in self.received
                if not r["is_imdn"] and r["message_id"] and not r["duplicate"]]
        origs = [r for r in self.received if not r["is_imdn"] and r["message_id"]]
        kinds = ["flip", "random", "truncated"]
        for i in range(self.args.forge):
            kind = kinds[i % 3]
            if not tags and kind != "random":
                kind = "random"
            if kind == "random":
                mid = "".join(self.rng.choice(TAG_ALPHABET) for _ in range(32))
                orig = origs[i % len(origs)] if origs else {}
            else:
                orig = origs[i % len(origs)]
                tag = orig["message_id"]
                if kind == "flip":
                    pos = (i * 7) % len(tag)
                    c = tag[pos].lower()
                    nc = TAG_ALPHABET[(TAG_ALPHABET.index(c) + 1) % 32] if c in TAG_ALPHABET else "0"
                    mid = tag[:pos] + nc + tag[pos + 1:]
                else:
                    mid = tag[:-1]
            rec = self.send_imdn(orig, now_datetime(), "delivery", "delivered", "forged",
                                 message_id=mid)
            self.forged.append({"kind": kind, "message_id": mid, "record": rec})

    # -- own MESSAGEs

    def send_own(self, i):
        a = self.args
        mid = self.new_id("m")
        disp = {"delivery": "positive-delivery, negative-delivery", "display": "display",
                "both": "positive-delivery, negative-delivery, display", "none": None}[a.want]
        if a.picture:
            ctype, content = "image/jpeg", JPEG
        else:
            ctype, content = "text/plain;charset=utf-8", ("converged to legacy #%d" % (i + 1)).encode()
        body = build_cpim(a.from_uri, a.send_to, mid, disp, ctype, content)
        data, call_id = self.request("MESSAGE", a.send_to, a.from_uri, a.send_to, body,
                                     "message/cpim")
        record = {"message_id": mid, "call_id": call_id, "to": a.send_to, "imdns": {}}
        self.sent.append(record)
        self.sent_by_id[mid] = record
        self.start_tx("message", data, record)

    # -- output

    def report(self):
        wanted = {"delivery": ["delivery"], "display": ["display"],
                  "both": ["delivery", "display"], "none": []}[self.args.want]
        missing = [s["message_id"] for s in self.sent
                   if s["final"] is not None and 200 <= s["final"] < 300
                   and any(k not in s["imdns"] for k in wanted)]
        return {
            "received": self.received,
            "received_counts": self.counts,
            "imdns_sent": self.imdns_sent,
            "replays": self.replays,
            "sent": self.sent,
            "imdns_for_sent": {s["message_id"]: s["imdns"] for s in self.sent},
            "missing_imdns": missing,
            "unmatched_imdns": self.unmatched_imdns,
            "forged": [{"kind": f["kind"], "message_id": f["message_id"],
                        "final": f["record"]["final"]} for f in self.forged],
            "responses": self.responses,
            "errors": self.errors,
        }


def hostport(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host, int(port)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="198.18.2.1:5060")
    p.add_argument("--iwf", default="198.18.2.2:5060")
    p.add_argument("--answer", default="200", choices=["200", "202", "404", "480", "486", "503", "none"])
    p.add_argument("--notify", default="both", choices=["delivered", "displayed", "both", "none"])
    p.add_argument("--delivery-status", default="delivered",
                   choices=["delivered", "failed", "forbidden", "error"])
    p.add_argument("--notify-delay", type=float, default=0.0)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=float)
    g.add_argument("--until-idle", type=float, default=5.0)
    p.add_argument("--max-time", type=float, default=600.0)
    p.add_argument("--send-to")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--want", default="delivery", choices=["delivery", "display", "both", "none"])
    p.add_argument("--from", dest="from_uri", default="sip:+447900000001@ims.lab;user=phone")
    p.add_argument("--rate", type=float, default=50.0, help="own MESSAGEs per second")
    p.add_argument("--forge", type=int, default=0)
    p.add_argument("--imdn-first", type=float, default=None)
    p.add_argument("--replay", type=int, default=0)
    p.add_argument("--lie-cpim-to", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tcp", action="store_true")
    p.add_argument("--picture", action="store_true")
    p.add_argument("--retry", type=int, default=0)
    p.add_argument("--retry-delay", type=float, default=1.0)
    p.add_argument("--t1", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--t2", type=float, default=4.0, help=argparse.SUPPRESS)
    p.add_argument("--timer-f", type=float, default=32.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        hostport(args.listen)
        for h in args.iwf.split(","):
            hostport(h)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    try:
        ua = UA(args)
    except OSError as e:
        print(json.dumps({"errors": ["socket %s: %s" % (args.listen, e)]}, sort_keys=True))
        return 1
    print(json.dumps(ua.run(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
