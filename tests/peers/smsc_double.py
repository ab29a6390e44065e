#!/usr/bin/env python3
"""A minimal SMSC double for the lab: accepts binds (system_id / password checked),
answers enquire_link, unbind, and submit_sm / deliver_sm responses; prints one line per
event (flushed) so that tests/lab.rs can follow it. Used until `iwf-peer smsc` lands.

    smsc_double.py HOST:PORT SYSTEM_ID PASSWORD
"""
import socket
import struct
import sys
import threading

host, port = sys.argv[1].rsplit(":", 1)
SYSTEM_ID, PASSWORD = sys.argv[2].encode(), sys.argv[3].encode()
BINDS = {0x01, 0x02, 0x09}


def say(*a):
    print(*a, flush=True)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def serve(s, peer):
    try:
        while True:
            length, command_id, status, seq = struct.unpack(">IIII", recv_exact(s, 16))
            body = recv_exact(s, length - 16)
            if command_id in BINDS:
                fields = body.split(b"\0")
                ok = fields[0] == SYSTEM_ID and fields[1] == PASSWORD
                st = 0 if ok else (0x0E if fields[0] == SYSTEM_ID else 0x0F)
                resp_body = b"smsc\0" if ok else b""
                s.sendall(struct.pack(">IIII", 16 + len(resp_body), command_id | 0x80000000, st, seq) + resp_body)
                say("bind", fields[0].decode(errors="replace"), "ok" if ok else "refused", hex(st), peer)
                if not ok:
                    return
            elif command_id in (0x15, 0x06):  # enquire_link, unbind
                s.sendall(struct.pack(">IIII", 16, command_id | 0x80000000, 0, seq))
                say("enquire_link" if command_id == 0x15 else "unbind", peer)
                if command_id == 0x06:
                    return
            elif command_id & 0x80000000:
                say("response", hex(command_id), hex(status), peer)
            else:
                s.sendall(struct.pack(">IIII", 16, 0x80000000, 0x03, seq))  # generic_nack RINVCMDID
                say("nack", hex(command_id), peer)
    except (EOFError, ConnectionError, OSError):
        pass
    finally:
        say("closed", peer)
        s.close()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, int(port)))
srv.listen(8)
say("listening", sys.argv[1])
while True:
    conn, addr = srv.accept()
    threading.Thread(target=serve, args=(conn, "%s:%d" % addr), daemon=True).start()
