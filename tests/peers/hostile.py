#!/usr/bin/env python3
"""A stranger probing iwf (tests/lab.rs runs this inside the lab's namespaces).

    hostile.py binds HOST PORT --source IP --bind SYSTEM_ID:PASSWORD [--bind ...]
        One TCP connection per --bind, from IP: a bind_transceiver, and what came back:
        the bind_transceiver_resp command_status, "refused" (RST to the SYN), "reset"
        or "closed" (the connection ended without a response), "timeout".
    sip HOST PORT --source IP
        A MESSAGE (text) and a MESSAGE carrying an IMDN over UDP from IP:5070, and a TCP
        connection to PORT from IP: the status line of each UDP answer (or "none") and
        the TCP outcome ("connected", "refused", "timeout").

Prints one JSON object. Raw sockets, so the source address can be chosen.
"""
import json
import socket
import struct
import sys


def bind_pdu(seq, system_id, password):
    body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
    return struct.pack(">IIII", 16 + len(body), 0x00000009, 0, seq) + body


def probe_bind(host, port, source, system_id, password):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((source, 0))
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    try:
        s.sendall(bind_pdu(1, system_id, password))
        head = b""
        while len(head) < 16:
            chunk = s.recv(16 - len(head))
            if not chunk:
                return "closed"
            head += chunk
        _length, command, status, _seq = struct.unpack(">IIII", head)
        if command != 0x80000009:
            return "command 0x%08x" % command
        if status == 0:
            s.sendall(struct.pack(">IIII", 16, 0x00000006, 0, 2))  # unbind
            try:
                s.recv(16)
            except OSError:
                pass
        return status
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    finally:
        s.close()


def message(host, port, source, call, content_type, body):
    return (
        "MESSAGE sip:+447000100001@iwf.ims.lab;user=phone SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:5070;branch=z9hG4bK{call}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+447900000009@ims.lab;user=phone>;tag={call}\r\n"
        "To: <sip:+447000100001@iwf.ims.lab;user=phone>\r\n"
        f"Call-ID: {call}@{source}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def imdn_body():
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<imdn xmlns="urn:ietf:params:xml:ns:imdn">\r\n'
        "<message-id>0000000000000000000000000000000a</message-id>\r\n"
        "<datetime>2027-01-15T08:00:00Z</datetime>\r\n"
        "<delivery-notification><status><delivered/></status></delivery-notification>\r\n</imdn>\r\n"
    )
    return (
        "From: <sip:+447900000009@ims.lab;user=phone>\r\nTo: <sip:+447000100001@iwf.ims.lab;user=phone>\r\n"
        "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: stranger1\r\nDateTime: 2027-01-15T08:00:00Z\r\n\r\n"
        "Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n"
        f"Content-Length: {len(xml)}\r\n\r\n{xml}"
    )


def probe_sip(host, port, source):
    out = {}
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.bind((source, 5070))
    for name, ctype, body in (("message", "text/plain", "hello"), ("imdn", "message/cpim", imdn_body())):
        u.sendto(message(host, port, source, "stranger" + name, ctype, body), (host, port))
        try:
            data, _ = u.recvfrom(4096)
            out[name] = data.split(b"\r\n", 1)[0].decode(errors="replace")
        except socket.timeout:
            out[name] = "none"
    u.close()
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.settimeout(5)
    t.bind((source, 0))
    try:
        t.connect((host, port))
        out["tcp"] = "connected"
    except ConnectionRefusedError:
        out["tcp"] = "refused"
    except socket.timeout:
        out["tcp"] = "timeout"
    finally:
        t.close()
    return out


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    what, host, port = argv[1], argv[2], int(argv[3])
    source, binds = None, []
    rest = argv[4:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--source":
            source = value
        elif flag == "--bind":
            binds.append(tuple(value.split(":", 1)))
        else:
            sys.exit("unknown option " + flag)
    if what == "binds":
        result = {"binds": [probe_bind(host, port, source, s, p) for s, p in binds]}
    elif what == "sip":
        result = probe_sip(host, port, source)
    else:
        sys.exit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
