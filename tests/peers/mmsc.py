#!/usr/bin/env python3
"""An MMS centre double (MMSC mmsc-m) speaking MM4 over SMTP, for the lab.

It runs in namespace iwf-legacy. Its SMTP server (aiosmtpd) on --listen takes what iwf
relays to it (MM4_forward.RES, MM4_delivery_report.REQ, MM4_read_reply_report.REQ);
its client (smtplib) sends MM4_forward.REQ to iwf's SMTP server at --iwf: a text part
and a JPEG picture, asking for the .RES, a delivery report and a read reply. A report
iwf sends with X-Mms-Ack-Request: Yes gets its .RES back, as a real MMS centre's would.

    mmsc.py --listen 198.18.1.1:2525 --iwf 198.18.1.2:25 --count N
            [--to +447000200001] [--timeout S] [--hostile] [--answer-forwards M] [--start-delay S]

--hostile sends what a broken or hostile MMS centre would instead (with swaks where it is
a plain SMTP matter): a message over iwf's SIZE, one that is no MM4 message, one for a
user of another relay, a forward without its X-Mms-Message-ID; and records iwf's replies.

--answer-forwards M: the centre also takes M MMS iwf forwards to it (converged users'
messages to its users), answers each with its .RES, then a delivery report (Retrieved)
and a read-reply report (Read) to iwf, each asking for iwf's .RES.

The run ends when every forward has its .RES and both reports, and every MMS taken has
its reports' .RES, or after --timeout S (default 60) after the last send. Prints ONE
JSON object (keys sorted):

  forwards    [{transaction_id, message_id, smtp, res: {status, transaction_id, message_id}|null,
                delivery: {status, message_id, from, to}|null,
                read: {status, message_id, from, to}|null}]
  received    {message type: count}  everything iwf relayed here
  res_sent    [{type, smtp}]         the .RES this double answered reports with
  taken       [{message_id, from, to, rcpt, delivery_report, read_reply, content_types,
                res_smtp, delivery_smtp, read_smtp, delivery_res, read_res}]
                                     the MMS iwf forwarded here and what became of its reports
  hostile     {case: SMTP reply code}    (--hostile)
  errors      [text ...]
Exit status 0 (the checks are the caller's), 2 on a usage error.
"""
import argparse
import email
import email.policy
import json
import queue
import smtplib
import subprocess
import sys
import time
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid

from aiosmtpd.controller import Controller

from picture import JPEG

DOMAIN = "mmsc-m.lab"
SYSTEM = "system-user@" + DOMAIN
IWF_DOMAIN = "iwf.ims.lab"


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def mms_address(number, domain):
    return "%s/TYPE=PLMN@%s" % (number, domain)


def header(m, name):
    v = m.get(name)
    return None if v is None else str(v).strip().strip("<>")


class Relay:
    """What iwf relays to this MMS centre, filed by message type."""

    def __init__(self):
        self.inbox = queue.Queue()

    async def handle_DATA(self, server, session, envelope):
        self.inbox.put((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued"


def forward(n, to, uniq):
    """MM4_forward.REQ number `n`: a text and a picture, asking for everything."""
    m = MIMEMultipart("related")
    m.attach(MIMEText("Look at this, %d" % n, "plain", "utf-8"))
    m.attach(MIMEImage(JPEG, "jpeg", name="pic%d.jpg" % n))
    tid = "mt-%s-%d" % (uniq, n)
    mid = "mm-%s-%d@%s" % (uniq, n, DOMAIN)
    for k, v in [
        ("X-Mms-3GPP-MMS-Version", "6.10.0"),
        ("X-Mms-Message-Type", "MM4_forward.REQ"),
        ("X-Mms-Transaction-ID", tid),
        ("X-Mms-Message-ID", "<%s>" % mid),
        ("From", mms_address("+447000400001", DOMAIN)),
        ("To", mms_address(to, IWF_DOMAIN)),
        ("Sender", SYSTEM),
        ("Subject", "picture %d" % n),
        ("Date", format_datetime(email.utils.localtime())),
        ("Message-ID", make_msgid(domain=DOMAIN)),
        ("X-Mms-Ack-Request", "Yes"),
        ("X-Mms-Delivery-Report", "Yes"),
        ("X-Mms-Read-Reply", "Yes"),
        ("X-Mms-Originator-System", SYSTEM),
    ]:
        m[k] = v
    return tid, mid, m.as_bytes(policy=email.policy.SMTP)


def via_postfix(m):
    """Whether a Postfix relay stamped the message on its way here."""
    return any("(Postfix)" in str(h) for h in m.get_all("Received", []))


def response_to(req, uniq, n):
    """The .RES for a report iwf sent (same transaction id), status Ok."""
    kind = header(req, "X-Mms-Message-Type").replace(".REQ", ".RES")
    lines = [
        "X-Mms-3GPP-MMS-Version: 6.10.0",
        "X-Mms-Message-Type: " + kind,
        "X-Mms-Transaction-ID: " + (header(req, "X-Mms-Transaction-ID") or ""),
        "X-Mms-Message-ID: " + (header(req, "X-Mms-Message-ID") or ""),
        "X-Mms-Request-Status-Code: Ok",
        "Sender: " + SYSTEM,
        "Message-ID: <res-%s-%d@%s>" % (uniq, n, DOMAIN),
        "Date: " + format_datetime(email.utils.localtime()),
        "",
        "",
    ]
    return kind, "\r\n".join(lines).encode()


def smtp_send(iwf, source, mail_from, rcpt, data, options=()):
    """One SMTP transaction to iwf: the reply code to its data (or the first refusal)."""
    try:
        with smtplib.SMTP(iwf[0], iwf[1], local_hostname=DOMAIN, timeout=60,
                          source_address=(source, 0)) as s:
            s.ehlo()
            s.sendmail(mail_from, [rcpt], data, mail_options=list(options))
            return 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return next(iter(e.recipients.values()))[0]
    except (OSError, smtplib.SMTPException) as e:
        return "error: %s" % e


def swaks(iwf, source, args):
    """swaks against iwf; the last server reply code it printed."""
    out = subprocess.run(["swaks", "--server", iwf[0], "--port", str(iwf[1]), "--local-interface", source,
                          # The envelope's recipient: iwf judges the MM4 To (swaks reads a
                          # leading + as an option, so no MMS address here).
                          "--helo", DOMAIN, "--from", SYSTEM, "--to", "system@" + IWF_DOMAIN,
                          "--timeout", "60"] + args, capture_output=True, text=True, check=False).stdout
    codes = [line.split()[1] for line in out.splitlines() if line.startswith("<~ ") or line.startswith("<** ")]
    codes = [c[:3] for c in codes if c[:3].isdigit()]
    return int(codes[-1]) if codes else "no reply: %s" % out[-200:]


def take(m, mail_from, rcpts, iwf, source, uniq, n):
    """An MMS iwf forwarded here: its .RES, then its delivery and read-reply reports."""
    mid = header(m, "X-Mms-Message-ID")
    rec = {"message_id": mid, "from": header(m, "From"), "to": header(m, "To"), "rcpt": rcpts,
           "mail_from": mail_from, "delivery_report": header(m, "X-Mms-Delivery-Report"),
           "read_reply": header(m, "X-Mms-Read-Reply"),
           "content_types": [p.get_content_type() for p in m.walk() if not p.is_multipart()],
           "res_smtp": None, "delivery_smtp": None, "read_smtp": None, "delivery_res": None, "read_res": None}
    iwf_system = "system@" + IWF_DOMAIN

    def mm4(kind, extra, k):
        lines = ["X-Mms-3GPP-MMS-Version: 6.10.0", "X-Mms-Message-Type: " + kind,
                 "X-Mms-Transaction-ID: %s-%s-%d-%d" % (kind, uniq, n, k), "X-Mms-Message-ID: " + mid,
                 "Sender: " + SYSTEM, "Message-ID: <%s-%d-%d@%s>" % (uniq, n, k, DOMAIN),
                 "Date: " + format_datetime(email.utils.localtime())] + extra + ["", ""]
        return "\r\n".join(lines).encode()

    if (header(m, "X-Mms-Ack-Request") or "").lower() == "yes":
        res = mm4("MM4_forward.RES", ["X-Mms-Request-Status-Code: Ok"], 0)
        res = res.replace(b"X-Mms-Transaction-ID: MM4_forward.RES-%s-%d-0" % (uniq.encode(), n),
                          ("X-Mms-Transaction-ID: " + (header(m, "X-Mms-Transaction-ID") or "")).encode())
        rec["res_smtp"] = smtp_send(iwf, source, SYSTEM, iwf_system, res)
    parties = ["From: " + (rec["to"] or ""), "To: " + (rec["from"] or ""), "X-Mms-Ack-Request: Yes"]
    rec["delivery_smtp"] = smtp_send(iwf, source, SYSTEM, iwf_system,
                                     mm4("MM4_delivery_report.REQ", parties + ["X-Mms-MM-Status-Code: Retrieved"], 1))
    rec["read_smtp"] = smtp_send(iwf, source, SYSTEM, iwf_system,
                                 mm4("MM4_read_reply_report.REQ", parties + ["X-Mms-Read-Status: Read"], 2))
    return rec


def hostile(iwf, source, uniq):
    cases = {}
    to = mms_address("+447000200001", IWF_DOMAIN)
    # Over the SIZE iwf announces: refused at MAIL FROM when declared, after the data
    # when not.
    big = ("X-Mms-Message-Type: MM4_forward.REQ\r\n\r\n" + "A" * (2 * 1024 * 1024) + "\r\n").encode()
    cases["oversized_declared"] = smtp_send(iwf, source, SYSTEM, to, big, ["SIZE=%d" % len(big)])
    cases["oversized"] = smtp_send(iwf, source, SYSTEM, to, big)
    # Not an MM4 message at all.
    cases["not_mm4"] = swaks(iwf, source, ["--header", "Subject: hello", "--body", "just mail"])
    # A user of another relay.
    _, _, data = forward(900, "+447000200001", uniq)
    other = data.replace(("To: %s" % mms_address("+447000200001", IWF_DOMAIN)).encode(),
                         ("To: %s" % mms_address("+447000200001", "elsewhere.lab")).encode())
    cases["other_relay"] = smtp_send(iwf, source, SYSTEM, to, other)
    # A forward without its X-Mms-Message-ID.
    _, mid, data = forward(901, "+447000200001", uniq)
    data = data.replace(("X-Mms-Message-ID: <%s>\r\n" % mid).encode(), b"")
    cases["no_message_id"] = smtp_send(iwf, source, SYSTEM, to, data)
    return cases


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="198.18.1.1:2525")
    p.add_argument("--iwf", default="198.18.1.2:25")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--to", default="+447000200001")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--hostile", action="store_true")
    p.add_argument("--answer-forwards", type=int, default=0)
    p.add_argument("--start-delay", type=float, default=0.0, help="seconds between listening and sending")
    a = p.parse_args(argv)
    listen, iwf = hostport(a.listen), hostport(a.iwf)
    uniq = "%x" % (int(time.time() * 1000) & 0xFFFFFFFF)
    out = {"forwards": [], "received": {}, "res_sent": [], "taken": [], "errors": []}
    taken = {}
    relay = Relay()
    controller = Controller(relay, hostname=listen[0], port=listen[1], server_hostname=DOMAIN,
                            data_size_limit=4 * 1024 * 1024)
    controller.start()
    time.sleep(a.start_delay)
    try:
        # The hostile cases' forwards that iwf takes are answered in a .RES.
        hostile_ids = {"mm-%s-%d@%s" % (uniq, n, DOMAIN): case for n, case in ((900, "other_relay"),)}
        if a.hostile:
            out["hostile"] = hostile(iwf, listen[0], uniq)
            out["hostile_res"] = {}
        by_mid = {}
        for n in range(a.count):
            tid, mid, data = forward(n, a.to, uniq)
            rec = {"transaction_id": tid, "message_id": mid, "res": None, "delivery": None, "read": None}
            rec["smtp"] = smtp_send(iwf, listen[0], SYSTEM, mms_address(a.to, IWF_DOMAIN), data)
            out["forwards"].append(rec)
            by_mid[mid] = rec
        deadline = time.monotonic() + a.timeout
        answered = 0

        def complete():
            sent = all(r["res"] and r["delivery"] and r["read"] for r in out["forwards"])
            answered = len(out["taken"]) >= a.answer_forwards and \
                all(t["delivery_res"] and t["read_res"] for t in out["taken"])
            return sent and answered

        while not complete() and time.monotonic() < deadline:
            try:
                mail_from, rcpts, content = relay.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            m = email.message_from_bytes(content, policy=email.policy.default)
            kind = header(m, "X-Mms-Message-Type") or "?"
            out["received"][kind] = out["received"].get(kind, 0) + 1
            mid = header(m, "X-Mms-Message-ID")
            if kind == "MM4_forward.REQ":
                taken[mid] = take(m, mail_from, rcpts, iwf, listen[0], uniq, len(out["taken"]))
                out["taken"].append(taken[mid])
                continue
            if kind in ("MM4_delivery_report.RES", "MM4_read_reply_report.RES") and mid in taken:
                slot = "delivery_res" if kind.startswith("MM4_delivery") else "read_res"
                taken[mid][slot] = header(m, "X-Mms-Request-Status-Code")
                continue
            rec = by_mid.get(mid)
            if mid in hostile_ids and kind == "MM4_forward.RES":
                out["hostile_res"][hostile_ids[mid]] = header(m, "X-Mms-Request-Status-Code")
                continue
            if rec is None:
                out["errors"].append("%s for an unknown message id %r" % (kind, mid))
                continue
            if kind == "MM4_forward.RES":
                rec["res"] = {"status": header(m, "X-Mms-Request-Status-Code"), "message_id": mid,
                              "transaction_id": header(m, "X-Mms-Transaction-ID"), "via_postfix": via_postfix(m)}
            elif kind in ("MM4_delivery_report.REQ", "MM4_read_reply_report.REQ"):
                slot = "delivery" if kind.startswith("MM4_delivery") else "read"
                status = header(m, "X-Mms-MM-Status-Code" if slot == "delivery" else "X-Mms-Read-Status")
                rec[slot] = {"status": status, "message_id": mid, "from": header(m, "From"),
                             "to": header(m, "To"), "rcpt": rcpts, "mail_from": mail_from,
                             "via_postfix": via_postfix(m)}
                if (header(m, "X-Mms-Ack-Request") or "").lower() == "yes":
                    answered += 1
                    res_kind, res = response_to(m, uniq, answered)
                    code = smtp_send(iwf, listen[0], SYSTEM, "system@" + IWF_DOMAIN, res)
                    out["res_sent"].append({"type": res_kind, "smtp": code})
            else:
                out["errors"].append("unexpected %s" % kind)
    finally:
        controller.stop()
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
