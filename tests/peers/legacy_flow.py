#!/usr/bin/env python3
"""The legacy side of an end-to-end run: two SMSCs bound to iwf as ESMEs (smpplib).

In the lab it runs in namespace iwf-legacy against iwf's SMPP server at 198.18.1.2:2775,
while tests/peers/sip_ua.py plays the converged side.

    legacy_flow.py --host 198.18.1.2 --port 2775 --count N
                   [--long] [--user-ack] [--unbind-before-receipts S]
                   [--receipt-timeout S] [--resp-timeout S] [--window W]
                   [--registered-delivery HEX] [--also-host H]
                   [--failover-host H [--failover-after S]] [--linger S]

- smsc-a: system_id smsca / pwa, one transceiver bind; sources 447000100001,
  destinations +447900000001, +447900000002, ...
- smsc-b: system_id smscb / pwb, a transmitter bind and a separate receiver bind;
  sources 447000200001, destinations +447900005001, +447900005002, ...
Both systems run concurrently (one thread each, plus one for smsc-b's receiver). Each sends
N submit_sm (registered_delivery 0x01; with --user-ack 0x09 = SMSC receipt + SME
manual/user ack, SMPP 3.4 5.2.17; --registered-delivery overrides), keeping at most W
outstanding, and records every submit_sm_resp (iwf answers after the SIP final response).
--long adds, per system, one concatenated message of --long-parts parts (default 3; UDH 05 00 03 ref N i,
esm_class 0x40): three submit_sm, three message_ids, three receipts expected.
Then each system collects deliver_sm (answering deliver_sm_resp) until every accepted
message_id has its receipt(s) or --receipt-timeout passes (default 30 s).
--also-host H: each system also binds a receiver to H (another box of a cluster) before
it submits; receipts on it count as on any bind, and the bind may be lost (the box
killed) without an error; its receipts' "bind" is "receiver@H".
--failover-host H: when the receipts stop coming from the main box for --failover-after
seconds (default 3; it died) before all arrived, each system binds a receiver to H and
collects the rest there until the receipt timeout; those receipts have "phase":
"failed_over", and the report says "failed_over": true.
--linger S: once every receipt arrived (or the receipt timeout passed), each system stays
bound S more seconds and keeps collecting: what a cluster had delivered and not seen
acknowledged (a dead box's, a NATS node's) comes back after JetStream's ack wait, to
whichever box holds the system, and is counted among the duplicates. With
--failover-host the system stays bound to H (binding a receiver there if it had not
failed over); without, to its own binds.
--unbind-before-receipts S: smsc-b binds only its transmitter, submits, unbinds once all
resps are in, waits S seconds (iwf must queue its receipts), then binds its receiver and
collects; receipts are marked "phase": "after_rebind".

Prints ONE JSON object:
  systems: {smsc-a|smsc-b: {
      submitted, resp_statuses {"0x0": n, ...}, message_ids [..] (accepted, in send order),
      submissions [{dest, part, status, message_id}],
      receipts [{bind, phase, esm_class, receipted_message_id, message_state,
                 text_id, stat, err, source_addr, destination_addr, text}],
      checks {every_receipt_matches, missing, missing_user_ack, unexpected, misrouted,
              duplicates, text_id_mismatch, message_ids_well_formed, states},
      errors [..]}}
  checks: {every_receipt_matches, missing, missing_user_ack, unexpected, misrouted,
           early, wrong_address, duplicates,
           errors (how many entries the systems' errors lists hold)}
early: receipts whose id no submit_sm_resp had given out when they arrived.
wrong_address: receipts not from the converged user the message went to, or not to the
legacy user who sent it.
every_receipt_matches: each receipt's receipted_message_id is one of the ids iwf gave THIS
system, and no receipt came to the wrong system. missing: accepted ids without an
esm_class 0x04 receipt; missing_user_ack (only with --user-ack): ids without a 0x10 one.
Exit status 0, or 1 when a TCP connection to iwf could not be made, 2 on a usage error.
"""
import argparse
import json
import re
import select
import sys
import threading
import time
import warnings

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

warnings.simplefilter("ignore", DeprecationWarning)

SYSTEMS = {
    "smsc-a": {"system_id": "smsca", "password": "pwa", "source": "447000100001",
               "dest_base": 447900000001, "split": False},
    "smsc-b": {"system_id": "smscb", "password": "pwb", "source": "447000200001",
               "dest_base": 447900005001, "split": True},
}
TAG_RE = re.compile(r"^[0-9a-v]{32}$")
LONG_TEXT = ("This is part %d of %d of a long message from the legacy side to the converged "
             "side, padded so that each segment is well over a hundred characters long. ")


class Bind:
    """One SMPP connection; read/dispatch loop without smpplib's own listen()."""

    def __init__(self, args, system, kind, on_receipt, host=None):
        self.system = system
        self.kind = kind  # transceiver | transmitter | receiver
        self.on_receipt = on_receipt
        self.c = smpplib.client.Client(host or args.host, args.port, timeout=10,
                                       allow_unknown_opt_params=True)
        self.retries = args.connect_retries
        self.closed = False
        # An --also-host bind: losing its box is part of the test, not an error; its
        # receipts say which box they came from.
        self.tolerant = host is not None
        self.label = kind if host is None else "%s@%s" % (kind, host)
        self.last_tx = time.monotonic()

    def open(self):
        cfg = SYSTEMS[self.system]
        # --connect-retries: an ESME tries a refused connection again (a box of a
        # cluster may still be closing the previous run's connections).
        for _ in range(self.retries):
            try:
                self.c.connect()
                break
            except smpplib.exceptions.ConnectionError:
                # A socket whose connect failed is not used again.
                try:
                    self.c._socket.close()
                except OSError:
                    pass
                self.c._socket = None
                time.sleep(0.5)
        try:
            if self.c.state == smpplib.consts.SMPP_CLIENT_STATE_CLOSED:
                self.c.connect()
            getattr(self.c, "bind_" + self.kind)(system_id=cfg["system_id"], password=cfg["password"])
        except Exception:
            self.c.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
            self.c.disconnect()
            raise

    def send(self, pdu):
        self.c.send_pdu(pdu)
        self.last_tx = time.monotonic()

    def poll(self, timeout):
        """Read and handle one PDU if one comes within timeout; returns it (or None)."""
        if self.closed:
            time.sleep(timeout)
            return None
        if time.monotonic() - self.last_tx > 20:
            self.send(smpplib.smpp.make_pdu("enquire_link", client=self.c))
        try:
            r, _, _ = select.select([self.c._socket], [], [], timeout)
            if not r:
                return None
            pdu = self.c.read_pdu()
        except (smpplib.exceptions.ConnectionError, OSError, ValueError):
            if not self.tolerant:
                raise
            self.closed = True
            self.lost = True
            return None
        if pdu.command == "deliver_sm":
            self.on_receipt(self, pdu)
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.c)
            resp.sequence = pdu.sequence
            self.send(resp)
        elif pdu.command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=self.c)
            resp.sequence = pdu.sequence
            self.send(resp)
        elif pdu.command == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=self.c)
            resp.sequence = pdu.sequence
            self.send(resp)
            self.closed = True
        return pdu

    def close(self):
        try:
            if not self.closed:
                self.c.send_pdu(smpplib.smpp.make_pdu("unbind", client=self.c))
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    pdu = self.poll(deadline - time.monotonic())
                    if pdu is not None and pdu.command == "unbind_resp":
                        break
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            pass
        self.closed = True
        self.c.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
        self.c.disconnect()


def text_of(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.rstrip("\0")


class System:
    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.cfg = SYSTEMS[name]
        self.lock = threading.Lock()
        self.submissions = []
        self.receipts = []
        self.errors = []
        self.phase = "bound"
        self.rd = args.registered_delivery
        if self.rd is None:
            self.rd = 0x09 if args.user_ack else 0x01

    # -- what to send

    def plan(self):
        out = []
        for i in range(self.args.count):
            dest = str(self.cfg["dest_base"] + i)
            text = ("legacy %s to converged #%d" % (self.name, i + 1)).encode()
            out.append((dest, "single", 0, text))
        if self.args.long:
            dest = str(self.cfg["dest_base"] + self.args.count)
            ref = 0x42 if self.name == "smsc-a" else 0x43
            n = self.args.long_parts
            for i in range(1, n + 1):
                udh = bytes([0x05, 0x00, 0x03, ref, n, i])
                out.append((dest, "%d/%d" % (i, n), 0x40, udh + (LONG_TEXT % (i, n)).encode()[:153]))
        return out

    # -- receipts

    def on_receipt(self, bind, pdu):
        text = text_of(pdu.short_message) or text_of(getattr(pdu, "message_payload", None)) or ""
        m_id = re.search(r"\bid:(\S+)", text, re.I)
        m_st = re.search(r"\bstat:(\S+)", text, re.I)
        m_err = re.search(r"\berr:(\S+)", text, re.I)
        state = getattr(pdu, "message_state", None)
        rec = {
            "bind": bind.label,
            "phase": self.phase,
            "esm_class": int(pdu.esm_class or 0),
            "receipted_message_id": text_of(getattr(pdu, "receipted_message_id", None)),
            "message_state": int(state) if state is not None else None,
            "text_id": m_id.group(1) if m_id else None,
            "stat": m_st.group(1) if m_st else None,
            "err": m_err.group(1) if m_err else None,
            "source_addr": text_of(pdu.source_addr),
            "destination_addr": text_of(pdu.destination_addr),
            "text": text,
        }
        self.last_receipt = time.monotonic()
        with self.lock:
            # A receipt whose id no submit_sm_resp has given out yet: a strict ESME
            # (Kannel) drops it. Only a transceiver bind orders the two (a receiver
            # bind is another connection).
            rec["early"] = bind.kind == "transceiver" and rec["receipted_message_id"] not in set(self.accepted_ids())
            self.receipts.append(rec)

    def wrong_address(self, r):
        """Whether a receipt is not addressed to its message's own parties: from the
        converged user the message went to, to this system's user who sent it."""
        sub = next((s for s in self.submissions if s["message_id"] == r["receipted_message_id"]), None)
        if sub is None:
            return False
        return (r["source_addr"] or "").lstrip("+") != sub["dest"].lstrip("+") \
            or (r["destination_addr"] or "").lstrip("+") != self.cfg["source"].lstrip("+")

    def accepted_ids(self):
        return [s["message_id"] for s in self.submissions if s["status"] == 0 and s["message_id"]]

    def complete(self):
        ids = set(self.accepted_ids())
        with self.lock:
            got = {(r["receipted_message_id"], r["esm_class"] & 0x3C) for r in self.receipts}
        want = [0x04] + ([0x10] if self.rd & 0x08 else [])
        return all((i, w) in got for i in ids for w in want)

    # -- the run

    def submit_all(self, bind):
        pending = list(self.plan())
        outstanding = {}
        deadline = None
        while pending or outstanding:
            while pending and len(outstanding) < self.args.window:
                dest, part, esm, text = pending.pop(0)
                pdu = smpplib.smpp.make_pdu(
                    "submit_sm", client=bind.c,
                    source_addr_ton=1, source_addr_npi=1, source_addr=self.cfg["source"],
                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=dest,
                    esm_class=esm, registered_delivery=self.rd, data_coding=0,
                    short_message=text)
                rec = {"dest": "+" + dest, "part": part, "status": None, "message_id": None}
                self.submissions.append(rec)
                outstanding[pdu.sequence] = rec
                bind.send(pdu)
                deadline = time.monotonic() + self.args.resp_timeout
            pdu = bind.poll(0.5)
            if pdu is not None and pdu.command in ("submit_sm_resp", "generic_nack"):
                rec = outstanding.pop(pdu.sequence, None)
                if rec is None:
                    self.errors.append("%s with unknown sequence %d" % (pdu.command, pdu.sequence))
                    continue
                rec["status"] = int(pdu.status)
                if pdu.command == "submit_sm_resp" and int(pdu.status) == 0:
                    rec["message_id"] = text_of(pdu.message_id)
                if pdu.command == "generic_nack":
                    rec["generic_nack"] = True
                deadline = time.monotonic() + self.args.resp_timeout
            if bind.closed:
                self.errors.append("%s bind closed by iwf during submission" % bind.kind)
                break
            if deadline is not None and time.monotonic() > deadline and outstanding:
                self.errors.append("%d submit_sm without resp after %.0f s"
                                   % (len(outstanding), self.args.resp_timeout))
                break

    def quiet(self):
        """With --failover-host: whether the main box has been silent long enough to
        give up on it (nothing received for --failover-after seconds)."""
        a = self.args
        return a.failover_host is not None and time.monotonic() - self.last_receipt > a.failover_after

    def collect(self, binds, deadline):
        binds = binds + self.also
        self.last_receipt = max(self.last_receipt, time.monotonic())
        while time.monotonic() < deadline and not self.complete() and not self.quiet():
            if all(b.closed for b in binds):
                self.errors.append("all binds closed by iwf while waiting for receipts")
                break
            for b in binds:
                b.poll(0.2 / len(binds))

    def linger(self, binds):
        """--linger without --failover-host: stays on these binds, collecting, S seconds."""
        if not self.args.failover_host:
            self.stay(binds, self.args.linger)

    def stay(self, binds, seconds):
        """Stays on these binds, collecting, for seconds (less once all are closed)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not all(b.closed for b in binds):
            for b in binds:
                b.poll(0.2 / len(binds))

    def run(self):
        self.also = []
        self.last_receipt = time.monotonic()
        self.deadline = None
        try:
            self._run()
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as e:
            self.errors.append("%s: %s" % (type(e).__name__, e))
        a = self.args
        if a.failover_host and not self.complete():
            # The main box went quiet (or away): the rest comes over a receiver bind to
            # the other box, until complete or the receipt timeout.
            self.failed_over = True
            try:
                b = Bind(a, self.name, "receiver", self.on_receipt, host=a.failover_host)
                b.open()
                self.also.append(b)
                self.phase = "failed_over"
                self.last_receipt = time.monotonic()
                end = self.deadline or time.monotonic() + a.receipt_timeout
                while time.monotonic() < end and not self.complete():
                    b.poll(0.2)
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as e:
                self.errors.append("failover: %s: %s" % (type(e).__name__, e))
        if a.failover_host and a.linger > 0:
            try:
                if getattr(self, "failed_over", False):
                    b = self.also[-1]
                else:
                    b = Bind(a, self.name, "receiver", self.on_receipt, host=a.failover_host)
                    b.open()
                    self.also.append(b)
                self.stay([b], a.linger)
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as e:
                self.errors.append("linger: %s: %s" % (type(e).__name__, e))
        for b in self.also:
            try:
                b.close()
            except Exception:  # its box may be gone
                pass

    def _run(self):
        a = self.args
        # --also-host: a receiver bind to that box too, open from the start (its
        # receipts count as any other's; losing it is tolerated).
        if a.also_host:
            b = Bind(a, self.name, "receiver", self.on_receipt, host=a.also_host)
            b.open()
            self.also.append(b)
        if not self.cfg["split"]:
            trx = self.bind("transceiver")
            self.submit_all(trx)
            self.deadline = time.monotonic() + a.receipt_timeout
            self.collect([trx], self.deadline)
            self.linger([trx])
            trx.close()
            return
        if a.unbind_before_receipts is not None:
            tx = self.bind("transmitter")
            self.submit_all(tx)
            tx.close()
            time.sleep(a.unbind_before_receipts)
            self.phase = "after_rebind"
            rx = self.bind("receiver")
            self.collect([rx], time.monotonic() + a.receipt_timeout)
            self.linger([rx])
            rx.close()
            return
        tx = self.bind("transmitter")
        rx = self.bind("receiver")
        stop = threading.Event()

        def listen():
            try:
                while not stop.is_set():
                    rx.poll(0.2)
            except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as e:
                self.errors.append("receiver: %s: %s" % (type(e).__name__, e))

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        self.submit_all(tx)
        deadline = self.deadline = time.monotonic() + a.receipt_timeout
        self.last_receipt = max(self.last_receipt, time.monotonic())
        while time.monotonic() < deadline and not self.complete() and t.is_alive() and not self.quiet():
            tx.poll(0.2)  # answers enquire_link; receipts never come on a transmitter
        if t.is_alive():
            self.linger([tx])  # the listener collects meanwhile
        stop.set()
        t.join()
        tx.close()
        rx.close()

    def bind(self, kind):
        b = Bind(self.args, self.name, kind, self.on_receipt)
        try:
            b.open()
        except smpplib.exceptions.PDUError as e:
            raise smpplib.exceptions.PDUError("bind_%s refused: status 0x%x" % (kind, e.args[1]))
        return b

    # -- output

    def report(self, other_ids):
        ids = self.accepted_ids()
        own = set(ids)
        receipts = sorted(self.receipts, key=lambda r: (r["receipted_message_id"] or "",
                                                        r["esm_class"], r["text"]))
        seen, dups = set(), []
        for r in receipts:
            k = (r["receipted_message_id"], r["esm_class"])
            if k in seen:
                dups.append(r["receipted_message_id"])
            seen.add(k)
        got04 = {r["receipted_message_id"] for r in receipts if r["esm_class"] & 0x3C == 0x04}
        got10 = {r["receipted_message_id"] for r in receipts if r["esm_class"] & 0x3C == 0x10}
        unexpected = [r["receipted_message_id"] for r in receipts
                      if r["receipted_message_id"] not in own]
        misrouted = [i for i in unexpected if i in other_ids]
        states = {}
        for r in receipts:
            k = "%s/%s" % (r["stat"], r["message_state"])
            states[k] = states.get(k, 0) + 1
        statuses = {}
        for s in self.submissions:
            k = "none" if s["status"] is None else "0x%x" % s["status"]
            statuses[k] = statuses.get(k, 0) + 1
        checks = {
            "every_receipt_matches": not unexpected,
            "missing": [i for i in ids if i not in got04],
            "missing_user_ack": [i for i in ids if i not in got10] if self.rd & 0x08 else [],
            "unexpected": unexpected,
            "misrouted": misrouted,
            "duplicates": dups,
            "early": [r["receipted_message_id"] for r in receipts if r.get("early")],
            "wrong_address": [r["receipted_message_id"] for r in receipts if self.wrong_address(r)],
            "text_id_mismatch": [r["receipted_message_id"] for r in receipts
                                 if (r["text_id"] or "").lower() != (r["receipted_message_id"] or "").lower()],
            "message_ids_well_formed": all(TAG_RE.match(i) for i in ids),
            "states": states,
        }
        return {
            "submitted": len(self.submissions),
            "registered_delivery": self.rd,
            "resp_statuses": statuses,
            "message_ids": ids,
            "submissions": self.submissions,
            "receipts": receipts,
            "checks": checks,
            "errors": self.errors,
            "failed_over": getattr(self, "failed_over", False),
        }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="198.18.1.2")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--long", action="store_true")
    p.add_argument("--long-parts", type=int, default=3,
                   help="parts of the --long message (2..255; 8 makes a SIP MESSAGE over 1300 octets)")
    p.add_argument("--user-ack", action="store_true")
    p.add_argument("--registered-delivery", type=lambda s: int(s, 0))
    p.add_argument("--unbind-before-receipts", type=float)
    p.add_argument("--receipt-timeout", type=float, default=30.0)
    p.add_argument("--resp-timeout", type=float, default=45.0)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--also-host")
    p.add_argument("--connect-retries", type=int, default=0)
    p.add_argument("--failover-host")
    p.add_argument("--failover-after", type=float, default=3.0)
    p.add_argument("--linger", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.count < 0 or args.window < 1:
        p.error("--count must be >= 0 and --window >= 1")

    systems = {name: System(name, args) for name in SYSTEMS}
    threads = [threading.Thread(target=s.run) for s in systems.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    out = {"systems": {}}
    for name, s in systems.items():
        other = set()
        for oname, o in systems.items():
            if oname != name:
                other.update(o.accepted_ids())
        out["systems"][name] = s.report(other)
    reports = out["systems"].values()
    out["checks"] = {
        "every_receipt_matches": all(r["checks"]["every_receipt_matches"] for r in reports),
        "missing": sorted(i for r in reports for i in r["checks"]["missing"]),
        "missing_user_ack": sorted(i for r in reports for i in r["checks"]["missing_user_ack"]),
        "unexpected": sorted(i or "" for r in reports for i in r["checks"]["unexpected"]),
        "misrouted": sorted(i for r in reports for i in r["checks"]["misrouted"]),
        "early": sorted(i for r in reports for i in r["checks"]["early"]),
        "wrong_address": sorted(i for r in reports for i in r["checks"]["wrong_address"]),
        "duplicates": sorted(i or "" for r in reports for i in r["checks"]["duplicates"]),
        "errors": sum(len(r["errors"]) for r in reports),
    }
    print(json.dumps(out, sort_keys=True))
    refused = any("ConnectionError" in e for s in systems.values() for e in s.errors)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
