"""TRex advanced stateful (ASTF) profile: legacy systems binding to iwf over SMPP.

Replays smpp.pcap, which `iwf-peer pcap` writes (see README.md beside this file): one
TCP connection from a legacy system to iwf's SMPP port with bind_transmitter (the
system's system_id / password from the iwf configuration), N submit_sm asking for
delivery receipts, unbind. ASTF turns the capture into a client program (send each
request, then wait for as many bytes as the capture's answer has) and opens --cps such
connections per second from the client range to iwf. The capture's answers are iwf's
own: bind_transmitter_resp with sc_interface_version, submit_sm_resp with a 32-character
tag, so the byte counts match what iwf sends. iwf answers a submit_sm once the
converged side took the SIP MESSAGE: the SIP core (or `iwf-peer ua`) must be up.

iwf is a real server, so TRex runs the client side only (`--astf-client-mask`, see
README.md): the server range is iwf's SMPP address and nothing answers on TRex's
server port.

Tunables (new TRex: `start -f smpp_astf.py -t --cps 20 --clients 198.18.1.10-198.18.1.10`;
older TRex: `-t cps=20,...`):
  --pcap     the capture                            (default: smpp.pcap beside this file)
  --cps      new connections per second             (default 10)
  --clients  client address range FIRST-LAST        (default 198.18.1.1-198.18.1.1)
  --servers  iwf's SMPP address range FIRST-LAST    (default 198.18.1.2-198.18.1.2)
  --port     iwf's SMPP port (default: the capture's, 2775 for the lab)
"""
import argparse
import os

from trex.astf.api import ASTFCapInfo, ASTFIPGen, ASTFIPGenDist, ASTFIPGenGlobal, ASTFProfile

HERE = os.path.dirname(os.path.abspath(__file__))


def address_range(text):
    first, sep, last = text.partition("-")
    return [first.strip(), (last if sep else first).strip()]


class SmppSessions(object):
    """Legacy systems binding to iwf, one SMPP session per connection."""

    def _options(self, tunables, kwargs):
        parser = argparse.ArgumentParser(
            prog="smpp_astf.py", description="iwf: SMPP sessions of a legacy system (iwf-peer pcap's smpp.pcap)"
        )
        parser.add_argument("--pcap", default=os.path.join(HERE, "smpp.pcap"), help="the SMPP session capture")
        parser.add_argument("--cps", type=float, default=10.0, help="new connections per second")
        parser.add_argument("--clients", default="198.18.1.1-198.18.1.1", help="client addresses FIRST-LAST")
        parser.add_argument("--servers", default="198.18.1.2-198.18.1.2", help="iwf's SMPP addresses FIRST-LAST")
        parser.add_argument("--port", type=int, default=0, help="iwf's SMPP port (0: the capture's)")
        args = parser.parse_args(list(tunables or []))
        for key in ("pcap", "cps", "clients", "servers", "port"):
            if key in kwargs:
                setattr(args, key, type(getattr(args, key))(kwargs[key]))
        if args.cps <= 0:
            parser.error("--cps must be positive")
        if not os.path.isfile(args.pcap):
            parser.error("no capture at %s: run `iwf-peer pcap --config ... --out %s`" % (args.pcap, HERE))
        return args

    def get_profile(self, tunables=None, **kwargs):
        args = self._options(tunables, kwargs)
        clients = ASTFIPGenDist(ip_range=address_range(args.clients), distribution="seq")
        servers = ASTFIPGenDist(ip_range=address_range(args.servers), distribution="seq")
        # No offset between port pairs: iwf has the addresses it has.
        ip_gen = ASTFIPGen(glob=ASTFIPGenGlobal(ip_offset="0.0.0.0"), dist_client=clients, dist_server=servers)
        cap = {"file": args.pcap, "cps": args.cps}
        if args.port:
            cap["port"] = args.port
        return ASTFProfile(default_ip_gen=ip_gen, cap_list=[ASTFCapInfo(**cap)])


# dynamic load: trex-console, the Python API and the simulator call this.
def register():
    return SmppSessions()
