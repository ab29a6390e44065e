"""TRex stateless (STL) profile: the converged side's SIP MESSAGEs towards iwf.

Sends the captures `iwf-peer pcap` writes (see README.md beside this file):
  imdn.pcap     delivery IMDNs whose <message-id> is a valid tag of one legacy system:
                iwf routes one receipt per IMDN to that system;
  message.pcap  MESSAGEs converged -> legacy to a number a [[routes]] prefix covers.

Each packet of the capture becomes one continuous stream; together they send --pps
packets per second (trex-console's -m multiplies it). With --vary on (the default) the
field engine rewrites four letters of the Via branch and of the Call-ID in every packet
it sends (counters over 26, 25, 23 and 19 letters: 284,050 distinct values per stream),
so that a packet sent again is a new SIP transaction for iwf, not a retransmission
(iwf answers a retransmission from the transaction it keeps for 32 s and counts nothing
new). The UDP checksum is set to 0 ("no checksum", RFC 768) because the payload changes
after the capture was written; the IPv4 header does not change.

Tunables (new TRex: `start -f sip_stl.py -t --pps 5000 --pcap message`;
older TRex: `-t pps=5000,pcap=message`):
  --pcap     imdn | message | both | a path to a capture  (default imdn)
  --dir      where imdn.pcap / message.pcap are            (default: this profile's dir)
  --pps      packets per second, all streams together      (default 1000)
  --streams  at most this many packets of the capture      (default 256)
  --vary     on | off                                      (default on)
"""
import argparse
import os
import struct

from trex_stl_lib.api import (
    STLPktBuilder,
    STLProfile,
    STLScVmRaw,
    STLStream,
    STLTXCont,
    STLVmFlowVar,
    STLVmWrFlowVar,
)

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = {"imdn": ["imdn.pcap"], "message": ["message.pcap"], "both": ["imdn.pcap", "message.pcap"]}
# Letters per rewritten position: pairwise coprime, so the four counters (all stepping
# once per packet) repeat together only after 26*25*23*19 packets.
ALPHABETS = (26, 25, 23, 19)
ETH_LEN = 14


def read_pcap(path):
    """The frames of a classic libpcap file (either byte order, Ethernet)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: not a pcap file" % path)
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        order = "<"
    elif magic == 0xD4C3B2A1:
        order = ">"
    else:
        raise ValueError("%s: not a microsecond libpcap file (magic %#x)" % (path, magic))
    if struct.unpack(order + "I", data[20:24])[0] != 1:
        raise ValueError("%s: link type is not Ethernet" % path)
    frames, at = [], 24
    while at + 16 <= len(data):
        caplen = struct.unpack(order + "I", data[at + 8 : at + 12])[0]
        frames.append(data[at + 16 : at + 16 + caplen])
        at += 16 + caplen
    return frames


def udp_offset(frame):
    """Offset of the UDP header of an Ethernet/IPv4/UDP frame."""
    if frame[12:14] != b"\x08\x00" or frame[ETH_LEN + 9] != 17:
        raise ValueError("not an IPv4/UDP frame")
    return ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4


def vary_program(frame):
    """Field engine program: four letters after `z9hG4bK` and at the start of the
    Call-ID change on every packet sent."""
    branch = frame.find(b"z9hG4bK")
    call_id = frame.find(b"\r\nCall-ID: ")
    if branch < 0 or call_id < 0:
        raise ValueError("no Via branch or Call-ID to vary")
    at = [branch + len(b"z9hG4bK"), call_id + len(b"\r\nCall-ID: ")]
    instructions = []
    for k, letters in enumerate(ALPHABETS):
        instructions.append(
            STLVmFlowVar(name="l%d" % k, min_value=ord("a"), max_value=ord("a") + letters - 1, size=1, op="inc")
        )
    for base in at:
        for k in range(len(ALPHABETS)):
            instructions.append(STLVmWrFlowVar(fv_name="l%d" % k, pkt_offset=base + k))
    return STLScVmRaw(instructions)


class SipMessages(object):
    """IMDNs and MESSAGEs from `iwf-peer pcap` as continuous streams."""

    def _options(self, tunables, kwargs):
        parser = argparse.ArgumentParser(
            prog="sip_stl.py", description="iwf: the converged side's SIP MESSAGEs (iwf-peer pcap captures)"
        )
        parser.add_argument("--pcap", default="imdn", help="imdn | message | both | a capture's path")
        parser.add_argument("--dir", default=HERE, help="directory of imdn.pcap and message.pcap")
        parser.add_argument("--pps", type=float, default=1000.0, help="packets per second, all streams")
        parser.add_argument("--streams", type=int, default=256, help="at most this many packets per capture")
        parser.add_argument("--vary", choices=("on", "off"), default="on", help="new branch and Call-ID per packet")
        args = parser.parse_args(list(tunables or []))
        # Older TRex passes `-t key=value,...` as keyword arguments.
        for key in ("pcap", "dir", "pps", "streams", "vary"):
            if key in kwargs:
                setattr(args, key, type(getattr(args, key))(kwargs[key]))
        if args.pps <= 0 or args.streams <= 0:
            parser.error("--pps and --streams must be positive")
        return args

    def get_streams(self, direction=0, tunables=None, **kwargs):
        args = self._options(tunables, kwargs)
        names = CAPTURES.get(args.pcap)
        paths = [os.path.join(args.dir, n) for n in names] if names else [args.pcap]
        frames = []
        for path in paths:
            frames.extend(read_pcap(path)[: args.streams])
        if not frames:
            raise ValueError("no frames in %s" % ", ".join(paths))
        per_stream = args.pps / len(frames)
        streams = []
        for i, frame in enumerate(frames):
            frame = bytearray(frame)
            vm = None
            if args.vary == "on":
                udp = udp_offset(frame)
                frame[udp + 6 : udp + 8] = b"\x00\x00"  # UDP checksum: none (payload varies)
                vm = vary_program(bytes(frame))
            streams.append(
                STLStream(
                    name="sip%d" % i,
                    packet=STLPktBuilder(pkt_buffer=bytes(frame), vm=vm),
                    mode=STLTXCont(pps=per_stream),
                )
            )
        return STLProfile(streams).get_streams()


# dynamic load: trex-console, the Python API and the simulator call this.
def register():
    return SipMessages()
