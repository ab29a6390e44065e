#!/usr/bin/env python3
"""ESME scenarios against iwf's SMPP server (tests/lab.rs runs this in iwf-legacy).

Uses smpplib (PyPI) for binds, enquire_link, submit_sm and unbind, and a raw socket for
the window test (all PDUs in one write, so that they reach iwf in one poll). Prints one
JSON object with what each scenario saw; tests/lab.rs asserts on it.

    smpp_esme.py HOST PORT [--window-burst N]
"""
import json
import socket
import struct
import sys

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

HOST = sys.argv[1] if len(sys.argv) > 1 else "198.18.1.2"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 2775
BURST = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--window-burst" else 15


def client():
    c = smpplib.client.Client(HOST, PORT, timeout=5)
    c.connect()
    return c


def bind_status(kind, system_id, password):
    """The bind_*_resp status (0 = bound); the connection is left open on success."""
    c = client()
    try:
        getattr(c, "bind_" + kind)(system_id=system_id, password=password)
        return 0, c
    except smpplib.exceptions.PDUError as e:
        c.disconnect()
        return int(e.args[1]), None


def roundtrip(c, pdu):
    c.send_pdu(pdu)
    return c.read_pdu()


def transceiver():
    out = {}
    status, c = bind_status("transceiver", "smsca", "pwa")
    out["bind"] = status
    if c is None:
        return out
    resp = roundtrip(c, smpplib.smpp.make_pdu("enquire_link", client=c))
    out["enquire_link_resp"] = [resp.command, int(resp.status)]
    resp = roundtrip(
        c,
        smpplib.smpp.make_pdu(
            "submit_sm",
            client=c,
            source_addr="447000100001",
            destination_addr="447000200002",
            short_message=b"hello converged",
            registered_delivery=1,
        ),
    )
    out["submit_sm_resp"] = [resp.command, int(resp.status)]
    resp = c.unbind()
    out["unbind_resp"] = [resp.command, int(resp.status)]
    c.disconnect()
    return out


def tx_plus_rx():
    st, tx = bind_status("transmitter", "smscb", "pwb")
    sr, rx = bind_status("receiver", "smscb", "pwb")
    out = {"transmitter": st, "receiver": sr}
    for c in (tx, rx):
        if c is not None:
            out.setdefault("unbind", []).append(int(c.unbind().status))
            c.disconnect()
    return out


def pdu(command_id, seq, body=b""):
    return struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body


def cstr(s):
    return s.encode() + b"\0"


def read_pdu(s):
    head = b""
    while len(head) < 16:
        chunk = s.recv(16 - len(head))
        if not chunk:
            raise EOFError("connection closed")
        head += chunk
    length, command_id, status, seq = struct.unpack(">IIII", head)
    body = b""
    while len(body) < length - 16:
        chunk = s.recv(length - 16 - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return command_id, status, seq


def window_burst():
    """BURST submit_sm in one write: the window's worth are answered, the rest
    ESME_RTHROTTLED; every one gets a response (none dropped)."""
    s = socket.create_connection((HOST, PORT), timeout=5)
    bind = cstr("smsca") + cstr("pwa") + cstr("") + bytes([0x34, 0, 0]) + cstr("")
    s.sendall(pdu(0x09, 1, bind))
    _, bind_st, _ = read_pdu(s)
    body = cstr("") + bytes([1, 1]) + cstr("447000100001") + bytes([1, 1]) + cstr("447000200002")
    body += bytes([0, 0, 0]) + cstr("") + cstr("") + bytes([1, 0, 0, 0, 2]) + b"hi"
    s.sendall(b"".join(pdu(0x04, 100 + i, body) for i in range(BURST)))
    statuses = {}
    seqs = set()
    for _ in range(BURST):
        command_id, status, seq = read_pdu(s)
        assert command_id == 0x80000004, hex(command_id)
        statuses[hex(status)] = statuses.get(hex(status), 0) + 1
        seqs.add(seq)
    s.sendall(pdu(0x06, 999))
    unbind = read_pdu(s)
    s.close()
    return {"bind": bind_st, "statuses": statuses, "answered": len(seqs), "unbind_resp": [hex(unbind[0]), unbind[1]]}


def peer_limit(n):
    """n TCP connections at once from this address: iwf keeps max_connections_per_peer
    (8 in config/lab.toml) and resets the rest. Returns how many stayed up."""
    socks = [socket.create_connection((HOST, PORT), timeout=5) for _ in range(n)]
    alive = 0
    for s in socks:
        # enquire_link before bind: answered (generic_nack or enquire_link_resp) while
        # the connection lives; a reset connection gives an error or EOF.
        try:
            s.sendall(pdu(0x15, 7))
            read_pdu(s)
            alive += 1
        except (EOFError, OSError):
            pass
    for s in socks:
        s.close()
    return alive


result = {
    "transceiver": transceiver(),
    "tx_plus_rx": tx_plus_rx(),
    "wrong_password": bind_status("transceiver", "smsca", "wrong")[0],
    "unknown_system_id": bind_status("transceiver", "nosuch", "pwa")[0],
    "window_burst": window_burst(),
    "peer_limit_10": peer_limit(10),
}
print(json.dumps(result, sort_keys=True))
