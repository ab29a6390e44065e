"""Checks sip_stl.py and smpp_astf.py without TRex (which is not installable here).

The TRex classes the profiles use are replaced by recorders that keep their arguments;
the profiles are loaded the way trex-console loads them (`register()`, then
`get_streams` / `get_profile` with tunables in both the new and the old style), and the
field engine of each SIP stream is executed for a few packets: every varied packet must
keep its length and headers, carry a new Via branch and Call-ID, and have UDP checksum 0.
The varied packets of `--pcap both --streams 3` (3 IMDNs and 3 MESSAGEs, 5 packets of
each: 15 + 15 new transactions) are written to OUT/varied.pcap, which
scripts/trex/validate.sh replays into the lab.

    python3 scripts/trex/check_profiles.py DIR_WITH_PCAPS [OUT]
"""
import importlib.util
import os
import struct
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
PACKETS_PER_STREAM = 5


class Recorder(object):
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def stub(module_name, names):
    module = types.ModuleType(module_name)
    for name in names:
        setattr(module, name, type(name, (Recorder,), {}))
    sys.modules[module_name] = module
    return module


def install_stubs():
    stl = stub("trex_stl_lib.api", ["STLPktBuilder", "STLScVmRaw", "STLStream", "STLTXCont", "STLVmFlowVar", "STLVmWrFlowVar"])

    class STLProfile(Recorder):
        def get_streams(self):
            return list(self.args[0])

    stl.STLProfile = STLProfile
    sys.modules["trex_stl_lib"] = types.ModuleType("trex_stl_lib")
    stub("trex.astf.api", ["ASTFCapInfo", "ASTFIPGen", "ASTFIPGenDist", "ASTFIPGenGlobal", "ASTFProfile"])
    sys.modules["trex"] = types.ModuleType("trex")
    sys.modules["trex.astf"] = types.ModuleType("trex.astf")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.register()


def run_vm(stream, packets):
    """The frames the field engine makes of the stream's packet (op inc, size 1)."""
    builder = stream.kwargs["packet"]
    base = bytearray(builder.kwargs["pkt_buffer"])
    vm = builder.kwargs.get("vm")
    if vm is None:
        return [bytes(base)] * packets
    flow_vars = {}
    writes = []
    for ins in vm.args[0]:
        if type(ins).__name__ == "STLVmFlowVar":
            k = ins.kwargs
            assert k["size"] == 1 and k["op"] == "inc", k
            flow_vars[k["name"]] = [k["min_value"], k["max_value"], k["min_value"]]
        else:
            writes.append((ins.kwargs["fv_name"], ins.kwargs["pkt_offset"]))
    out = []
    for _ in range(packets):
        frame = bytearray(base)
        for name, offset in writes:
            frame[offset] = flow_vars[name][2]
        out.append(bytes(frame))
        for v in flow_vars.values():
            v[2] = v[0] if v[2] >= v[1] else v[2] + 1
    return out


def header(frame, name):
    start = frame.index(b"\r\n" + name + b": ") + len(name) + 4
    return frame[start : frame.index(b"\r\n", start)]


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1, i, len(frame), len(frame)))
            f.write(frame)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pcaps = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else pcaps
    install_stubs()
    sip = load("sip_stl")
    varied = None
    for tunables, kwargs in ((["--pcap", "both", "--dir", pcaps, "--pps", "500", "--streams", "3"], {}),
                             (None, {"pcap": "imdn", "dir": pcaps, "pps": "100", "streams": "2", "port_id": 0})):
        streams = sip.get_streams(direction=0, tunables=tunables, **kwargs)
        rate = sum(s.kwargs["mode"].kwargs["pps"] for s in streams)
        want = float(kwargs.get("pps") or tunables[tunables.index("--pps") + 1])
        assert abs(rate - want) < 1e-6, (rate, want)
        first = varied is None
        varied = varied or []
        for s in streams:
            frames = run_vm(s, PACKETS_PER_STREAM)
            base = s.kwargs["packet"].kwargs["pkt_buffer"]
            branches, calls = set(), set()
            for frame in frames:
                assert len(frame) == len(base)
                udp = 14 + (frame[14] & 0x0F) * 4
                assert frame[udp + 6 : udp + 8] == b"\x00\x00", "UDP checksum 0"
                assert frame.count(b"\r\n") == base.count(b"\r\n")
                via, call = header(frame, b"Via"), header(frame, b"Call-ID")
                assert via.split(b";branch=z9hG4bK")[1][:4].isalpha()
                branches.add(via)
                calls.add(call)
            assert len(branches) == len(calls) == len(frames), "a new transaction per packet"
            if first:
                varied.extend(frames)
    write_pcap(os.path.join(out, "varied.pcap"), varied)

    astf = load("smpp_astf")
    for tunables, kwargs in ((["--pcap", os.path.join(pcaps, "smpp.pcap"), "--cps", "20", "--clients", "198.18.1.10-198.18.1.20"], {}),
                             (None, {"pcap": os.path.join(pcaps, "smpp.pcap"), "cps": "5", "port": "2775"})):
        profile = astf.get_profile(tunables=tunables, **kwargs)
        cap = profile.kwargs["cap_list"][0].kwargs
        assert os.path.isfile(cap["file"]) and cap["cps"] > 0, cap
        gen = profile.kwargs["default_ip_gen"].kwargs
        assert gen["dist_client"].kwargs["ip_range"][0].startswith("198.18.1."), gen
    print("check_profiles: sip_stl.py %d varied frames ok (%s), smpp_astf.py ok" % (len(varied), os.path.join(out, "varied.pcap")))


if __name__ == "__main__":
    main()
