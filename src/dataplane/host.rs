//! The IP host each port runs: ARP (answers for our address, learns and resolves
//! neighbours), ICMP echo, IPv4 with header checks, and UDP handed to a per-port service.
//!
//! Sans-IO over byte slices: the worker passes the frame of an mbuf (`&mut [u8]`), the
//! host checks it layer by layer (smoltcp's wire views once the lengths are known good)
//! and either drops it with a [`DropReason`], answers in place (ARP, echo), or hands a
//! UDP datagram to the worker's service for that port (SIP), whose reply
//! [`Host::answer_udp`] frames; what a service originates (requests, Timer E
//! retransmissions) [`Host::originate_udp`] frames towards the resolved neighbour.
//! Nothing here allocates, panics on input, or knows DPDK.
//!
//! ```text
//! Ethernet II (14) | IPv4 header (IHL*4, checksum) | UDP (8, checksum) | payload
//!                  | ARP (28, Ethernet/IPv4 only)  | ICMP (8+, echo only)
//! ```
#![deny(unsafe_code)]

use super::arp::ArpCache;
use super::counters::{DropReason, Handled};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet,
    IpAddress, IpProtocol, Ipv4Packet, TcpPacket, TcpSeqNumber, UdpPacket,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

/// Length of an Ethernet II header.
pub const ETH_HEADER_LEN: usize = 14;
/// Largest frame iwf builds (Ethernet header + 1500).
pub const MAX_FRAME: u16 = 1514;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Offset of the UDP payload in a frame iwf builds (no IP options).
pub const UDP_PAYLOAD_OFFSET: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
/// Length of an Ethernet/IPv4 ARP frame (without padding).
pub const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + 28;
/// TTL of what iwf sends.
pub const TTL: u8 = 64;
/// UDP services per port.
pub const UDP_SERVICES: usize = 4;

/// A datagram a UDP service (the worker's SIP) wrote at the front of the buffer it was
/// given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSend {
    /// Payload length.
    pub len: usize,
    /// Destination.
    pub to: SocketAddrV4,
}

/// Why [`Host::originate_udp`] framed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The neighbour (the destination, or the gateway towards it) is not resolved:
    /// ask ARP for it. The frame is written all the same (`len` octets, the
    /// destination MAC left zero): hold it until the neighbour answers.
    Unresolved {
        /// The neighbour to resolve.
        neighbour: Ipv4Addr,
        /// The frame's length.
        len: usize,
    },
    /// Off-link and no gateway.
    NoRoute,
    /// The buffer is too small or the payload too long.
    TooLong,
}

/// A UDP datagram for one of the host's services; `payload` indexes the frame.
#[derive(Debug, Clone)]
pub struct UdpDatagram {
    /// The peer.
    pub src: SocketAddrV4,
    /// Our address and the service port.
    pub dst: SocketAddrV4,
    /// The peer's (or its router's) MAC address: replies go back to it.
    pub peer_mac: EthernetAddress,
    /// Where the payload sits in the frame.
    pub payload: Range<usize>,
    /// The service slot bound to the destination port (see [`Host::bind_udp`]).
    pub service: usize,
}

/// What became of a received frame.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Consumed; nothing to send.
    Handled(Handled),
    /// The frame was rewritten in place into a reply of `len` bytes: send it back.
    Reply {
        /// Length of the reply frame (padding of the request removed).
        len: usize,
        /// What it answers.
        what: Handled,
    },
    /// A datagram for a UDP service: call [`Host::answer_udp`] with a fresh buffer.
    Udp(UdpDatagram),
    /// A TCP segment for our address (IPv4 checked, TCP header within the packet):
    /// the frame goes, untouched, to the TCP stack of the flow's owner core.
    Tcp(TcpSegment),
}

/// Where a TCP segment for us belongs (enough to find the flow's owner core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// The peer.
    pub src: SocketAddrV4,
    /// Our port.
    pub dst_port: u16,
    /// A connection attempt (SYN without ACK): where admission is decided, before
    /// the attempt costs a socket ([`reset_in_place`] refuses it).
    pub opening: bool,
}

/// A service table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicesFull;

impl std::fmt::Display for ServicesFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at most {UDP_SERVICES} UDP services per port")
    }
}

impl std::error::Error for ServicesFull {}

/// The IP host of one port on one core.
#[derive(Debug, Clone)]
pub struct Host {
    mac: EthernetAddress,
    ip: Ipv4Addr,
    arp: ArpCache,
    udp: [Option<u16>; UDP_SERVICES],
    ident: u16,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Rewrites a received TCP segment (Ethernet + IPv4 + TCP, checked by
/// [`Host::receive`]) in place into the RST that refuses it (RFC 9293 §3.10.7.1: a
/// segment without ACK is answered `seq 0, ACK = its seq + its length`), and returns
/// the reply's length: addresses and ports swapped, no options, no payload.
pub fn reset_in_place(frame: &mut [u8]) -> Option<usize> {
    let ip_len = usize::from(frame.get(ETH_HEADER_LEN)? & 0x0F) * 4;
    let total = usize::from(be16(frame, ETH_HEADER_LEN + 2)?);
    let tcp_at = ETH_HEADER_LEN + ip_len;
    let data_offset = usize::from(frame.get(tcp_at + 12)? >> 4) * 4;
    let flags = *frame.get(tcp_at + 13)?;
    let seq = u32::from_be_bytes(frame.get(tcp_at + 4..tcp_at + 8)?.try_into().ok()?);
    let ack = u32::from_be_bytes(frame.get(tcp_at + 8..tcp_at + 12)?.try_into().ok()?);
    let payload = total.checked_sub(ip_len + data_offset)?;
    let (syn, fin, has_ack) = (flags & 0x02 != 0, flags & 0x01 != 0, flags & 0x10 != 0);
    let seg_len = payload as u32 + u32::from(syn) + u32::from(fin);
    let mut peer_ip = [0u8; 4];
    let mut our_ip = [0u8; 4];
    peer_ip.copy_from_slice(frame.get(ETH_HEADER_LEN + 12..ETH_HEADER_LEN + 16)?);
    our_ip.copy_from_slice(frame.get(ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20)?);
    let (sport, dport) = (be16(frame, tcp_at)?, be16(frame, tcp_at + 2)?);
    let len = ETH_HEADER_LEN + IPV4_HEADER_LEN + TCP_HEADER_LEN;
    let out = frame.get_mut(..len)?;
    // Ethernet: back to the sender.
    let mut mac = [0u8; 12];
    mac.copy_from_slice(&out[..12]);
    out[..6].copy_from_slice(&mac[6..12]);
    out[6..12].copy_from_slice(&mac[..6]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut out[ETH_HEADER_LEN..]);
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER_LEN as u8);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len((IPV4_HEADER_LEN + TCP_HEADER_LEN) as u16);
        ip.set_ident(0);
        ip.clear_flags();
        ip.set_dont_frag(true);
        ip.set_frag_offset(0);
        ip.set_hop_limit(64);
        ip.set_next_header(IpProtocol::Tcp);
        ip.set_src_addr(Ipv4Addr::from(our_ip));
        ip.set_dst_addr(Ipv4Addr::from(peer_ip));
        ip.fill_checksum();
    }
    let mut tcp = TcpPacket::new_unchecked(&mut out[ETH_HEADER_LEN + IPV4_HEADER_LEN..]);
    tcp.set_src_port(dport);
    tcp.set_dst_port(sport);
    tcp.set_header_len(TCP_HEADER_LEN as u8);
    tcp.clear_flags();
    tcp.set_rst(true);
    if has_ack {
        tcp.set_seq_number(TcpSeqNumber(ack as i32));
        tcp.set_ack_number(TcpSeqNumber(0));
    } else {
        tcp.set_seq_number(TcpSeqNumber(0));
        tcp.set_ack_number(TcpSeqNumber(seq.wrapping_add(seg_len) as i32));
        tcp.set_ack(true);
    }
    tcp.set_window_len(0);
    tcp.set_urgent_at(0);
    tcp.fill_checksum(&IpAddress::Ipv4(Ipv4Addr::from(our_ip)), &IpAddress::Ipv4(Ipv4Addr::from(peer_ip)));
    Some(len)
}

impl Host {
    /// A host at `ip` with the port's `mac`, no UDP services, on a /32 without gateway
    /// until [`Host::with_subnet`].
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr) -> Host {
        Host { mac, ip, arp: ArpCache::new(), udp: [None; UDP_SERVICES], ident: 0, prefix_len: 32, gateway: None }
    }

    /// The same host on a subnet of `prefix_len` bits, reaching the rest by `gateway`.
    pub fn with_subnet(mut self, prefix_len: u8, gateway: Option<Ipv4Addr>) -> Host {
        self.prefix_len = prefix_len.min(32);
        self.gateway = gateway;
        self
    }

    /// Binds UDP `port` to a service slot (the same slot when bound again); returns the
    /// slot, which [`UdpDatagram::service`] carries.
    pub fn bind_udp(&mut self, port: u16) -> Result<usize, ServicesFull> {
        let slot = self
            .udp
            .iter()
            .position(|s| *s == Some(port))
            .or_else(|| self.udp.iter().position(Option::is_none))
            .ok_or(ServicesFull)?;
        if let Some(s) = self.udp.get_mut(slot) {
            *s = Some(port);
        }
        Ok(slot)
    }

    /// The UDP port of service slot `slot`.
    pub fn udp_port(&self, slot: usize) -> Option<u16> {
        self.udp.get(slot).copied().flatten()
    }

    /// The neighbour a datagram to `dst` goes to: `dst` on our subnet, else the gateway.
    pub fn neighbour_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        if u32::from(dst) & mask == u32::from(self.ip) & mask {
            Some(dst)
        } else {
            self.gateway
        }
    }

    /// Our MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// Our IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The neighbour cache.
    pub fn arp(&self) -> &ArpCache {
        &self.arp
    }

    /// Handles one received frame; see [`Verdict`].
    pub fn receive(&mut self, frame: &mut [u8], now_ms: u64) -> Verdict {
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let dst = eth.dst_addr();
        if dst != self.mac && !dst.is_broadcast() {
            return Verdict::Drop(if dst.is_multicast() { DropReason::EthMulticast } else { DropReason::EthOtherHost });
        }
        let peer_mac = eth.src_addr();
        match eth.ethertype() {
            EthernetProtocol::Arp => self.arp_in(frame, now_ms),
            EthernetProtocol::Ipv4 => self.ipv4_in(frame, peer_mac),
            _ => Verdict::Drop(DropReason::EthUnknownType),
        }
    }

    fn arp_in(&mut self, frame: &mut [u8], now_ms: u64) -> Verdict {
        let Some(body) = frame.get(ETH_HEADER_LEN..) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let Ok(packet) = ArpPacket::new_checked(body) else {
            return Verdict::Drop(DropReason::ArpMalformed);
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            return Verdict::Drop(DropReason::ArpMalformed);
        };
        let for_us = tpa == self.ip;
        let learned = self.arp.learn(spa, sha, now_ms, for_us);
        match operation {
            ArpOperation::Request if for_us => {
                let reply = ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: self.mac,
                    source_protocol_addr: self.ip,
                    target_hardware_addr: sha,
                    target_protocol_addr: spa,
                };
                match self.emit_arp(frame, sha, &reply) {
                    Some(len) => Verdict::Reply { len, what: Handled::ArpAnswered },
                    None => Verdict::Drop(DropReason::ArpMalformed),
                }
            }
            _ if learned => Verdict::Handled(Handled::ArpLearned),
            _ => Verdict::Drop(DropReason::ArpOtherTarget),
        }
    }

    fn emit_arp(&self, out: &mut [u8], eth_dst: EthernetAddress, repr: &ArpRepr) -> Option<usize> {
        let frame = out.get_mut(..ARP_FRAME_LEN)?;
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(eth_dst);
        eth.set_src_addr(self.mac);
        eth.set_ethertype(EthernetProtocol::Arp);
        repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        Some(ARP_FRAME_LEN)
    }

    /// Writes a broadcast ARP request for `target` into `out`; returns its length, or
    /// `None` when `out` is shorter than [`ARP_FRAME_LEN`].
    pub fn arp_request(&self, out: &mut [u8], target: Ipv4Addr) -> Option<usize> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        self.emit_arp(out, EthernetAddress::BROADCAST, &repr)
    }

    /// Whether an ARP request for `target` should be sent now (not resolved, none sent
    /// within the retry interval); records it as sent.
    pub fn arp_request_due(&mut self, target: Ipv4Addr, now_ms: u64) -> bool {
        self.arp.request_due(target, now_ms)
    }

    fn ipv4_in(&mut self, frame: &mut [u8], peer_mac: EthernetAddress) -> Verdict {
        let Some(ip) = frame.get(ETH_HEADER_LEN..) else {
            return Verdict::Drop(DropReason::EthTruncated);
        };
        let (Some(&ver_ihl), Some(total)) = (ip.first(), be16(ip, 2)) else {
            return Verdict::Drop(DropReason::IpTruncated);
        };
        if ip.len() < IPV4_HEADER_LEN {
            return Verdict::Drop(DropReason::IpTruncated);
        }
        if ver_ihl >> 4 != 4 {
            return Verdict::Drop(DropReason::IpBadVersion);
        }
        let header_len = usize::from(ver_ihl & 0x0f) * 4;
        let total = usize::from(total);
        if header_len < IPV4_HEADER_LEN {
            return Verdict::Drop(DropReason::IpBadHeaderLen);
        }
        if total < header_len {
            return Verdict::Drop(DropReason::IpBadTotalLen);
        }
        if total > ip.len() {
            return Verdict::Drop(DropReason::IpTruncated);
        }
        // Lengths are good: smoltcp's accessors cannot panic on this slice.
        let Some(ip) = frame.get_mut(ETH_HEADER_LEN..ETH_HEADER_LEN + total) else {
            return Verdict::Drop(DropReason::IpTruncated);
        };
        let packet = Ipv4Packet::new_unchecked(&*ip);
        if !packet.verify_checksum() {
            return Verdict::Drop(DropReason::IpBadChecksum);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Verdict::Drop(DropReason::IpFragment);
        }
        if packet.dst_addr() != self.ip {
            return Verdict::Drop(DropReason::IpOtherHost);
        }
        let src = packet.src_addr();
        match packet.next_header() {
            IpProtocol::Icmp => self.icmp_in(frame, header_len, total, peer_mac),
            IpProtocol::Udp => self.udp_in(frame, header_len, total, src, peer_mac),
            IpProtocol::Tcp => Self::tcp_in(frame, header_len, total, src),
            _ => Verdict::Drop(DropReason::IpUnhandledProtocol),
        }
    }

    /// Checks that the TCP header lies within the IP payload; the checksum and the rest
    /// are the TCP stack's (smoltcp verifies them).
    fn tcp_in(frame: &[u8], header_len: usize, total: usize, src: Ipv4Addr) -> Verdict {
        let Some(tcp) = frame.get(ETH_HEADER_LEN + header_len..ETH_HEADER_LEN + total) else {
            return Verdict::Drop(DropReason::TcpTruncated);
        };
        let (Some(sport), Some(dport), Some(&offset), Some(&flags)) =
            (be16(tcp, 0), be16(tcp, 2), tcp.get(12), tcp.get(13))
        else {
            return Verdict::Drop(DropReason::TcpTruncated);
        };
        let data_offset = usize::from(offset >> 4) * 4;
        if data_offset < TCP_HEADER_LEN || data_offset > tcp.len() {
            return Verdict::Drop(DropReason::TcpTruncated);
        }
        // SYN (0x02) without ACK (0x10) or RST (0x04).
        let opening = flags & 0x16 == 0x02;
        Verdict::Tcp(TcpSegment { src: SocketAddrV4::new(src, sport), dst_port: dport, opening })
    }

    fn icmp_in(&mut self, frame: &mut [u8], header_len: usize, total: usize, peer_mac: EthernetAddress) -> Verdict {
        let end = ETH_HEADER_LEN + total;
        let Some(icmp) = frame.get_mut(ETH_HEADER_LEN + header_len..end) else {
            return Verdict::Drop(DropReason::IcmpTruncated);
        };
        let Ok(mut icmp) = Icmpv4Packet::new_checked(icmp) else {
            return Verdict::Drop(DropReason::IcmpTruncated);
        };
        if !icmp.verify_checksum() {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
            return Verdict::Drop(DropReason::IcmpUnhandled);
        }
        icmp.set_msg_type(Icmpv4Message::EchoReply);
        icmp.fill_checksum();
        self.turn_around(frame, total, peer_mac);
        Verdict::Reply { len: end, what: Handled::IcmpEchoAnswered }
    }

    /// Swaps the addresses of a validated IPv4 frame in place so it goes back to its sender.
    fn turn_around(&mut self, frame: &mut [u8], total: usize, peer_mac: EthernetAddress) {
        if let Some(ip) = frame.get_mut(ETH_HEADER_LEN..ETH_HEADER_LEN + total) {
            let mut packet = Ipv4Packet::new_unchecked(ip);
            let src = packet.src_addr();
            packet.set_src_addr(self.ip);
            packet.set_dst_addr(src);
            packet.set_hop_limit(TTL);
            packet.fill_checksum();
        }
        let mut eth = EthernetFrame::new_unchecked(frame);
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(self.mac);
    }

    fn udp_in(
        &mut self,
        frame: &[u8],
        header_len: usize,
        total: usize,
        src: Ipv4Addr,
        peer_mac: EthernetAddress,
    ) -> Verdict {
        let start = ETH_HEADER_LEN + header_len;
        let Some(udp) = frame.get(start..ETH_HEADER_LEN + total) else {
            return Verdict::Drop(DropReason::UdpTruncated);
        };
        let Some(len) = be16(udp, 4) else {
            return Verdict::Drop(DropReason::UdpTruncated);
        };
        if udp.len() < UDP_HEADER_LEN {
            return Verdict::Drop(DropReason::UdpTruncated);
        }
        let len = usize::from(len);
        let Some(udp) = udp.get(..len).filter(|_| len >= UDP_HEADER_LEN) else {
            return Verdict::Drop(DropReason::UdpBadLength);
        };
        let packet = UdpPacket::new_unchecked(udp);
        if !packet.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(self.ip)) {
            return Verdict::Drop(DropReason::UdpBadChecksum);
        }
        let port = packet.dst_port();
        let Some(service) = self.udp.iter().position(|p| *p == Some(port)) else {
            return Verdict::Drop(DropReason::UdpNoService);
        };
        Verdict::Udp(UdpDatagram {
            src: SocketAddrV4::new(src, packet.src_port()),
            dst: SocketAddrV4::new(self.ip, port),
            peer_mac,
            payload: start + UDP_HEADER_LEN..start + len,
            service,
        })
    }

    /// The payload room of a frame buffer `out` (IPv4 total length is 16 bits).
    fn payload_room(out: &mut [u8]) -> Option<&mut [u8]> {
        let room = out.len().min(usize::from(u16::MAX) - IPV4_HEADER_LEN + ETH_HEADER_LEN);
        out.get_mut(UDP_PAYLOAD_OFFSET..room)
    }

    /// Runs `service` on the datagram's `payload` with `out` as the reply frame: the
    /// service writes its payload at [`UDP_PAYLOAD_OFFSET`], the host the Ethernet, IPv4
    /// and UDP headers (checksums filled). The reply goes to the sender's MAC address
    /// (the service picks the port: SIP answers the Via's). Returns the reply frame's
    /// length, or `None` when the service has nothing to say.
    pub fn answer_udp(
        &mut self,
        dgram: &UdpDatagram,
        out: &mut [u8],
        service: impl FnOnce(&mut [u8]) -> Option<UdpSend>,
    ) -> Option<usize> {
        let reply = Self::payload_room(out)?;
        let room = reply.len();
        let send = service(reply)?;
        self.emit_udp(out, dgram.peer_mac, dgram.dst, send.to, send.len.min(room))
    }

    /// Asks `service` (bound at `slot`) for the next datagram it originates at `now_ms`
    /// and frames it into `out` towards the resolved neighbour. `Ok(None)`: nothing due.
    pub fn originate_udp(
        &mut self,
        slot: usize,
        now_ms: u64,
        out: &mut [u8],
        service: impl FnOnce(&mut [u8]) -> Option<UdpSend>,
    ) -> Result<Option<usize>, Unsent> {
        let port = self.udp_port(slot).ok_or(Unsent::NoRoute)?;
        let room = Self::payload_room(out).ok_or(Unsent::TooLong)?;
        let room_len = room.len();
        let Some(send) = service(room) else {
            return Ok(None);
        };
        let neighbour = self.neighbour_for(*send.to.ip()).ok_or(Unsent::NoRoute)?;
        let src = SocketAddrV4::new(self.ip, port);
        match self.arp.lookup(neighbour, now_ms) {
            Some(mac) => self.emit_udp(out, mac, src, send.to, send.len.min(room_len)).map(Some).ok_or(Unsent::TooLong),
            None => {
                // Framed for a MAC to come: the caller holds it for the ARP reply.
                let zero = EthernetAddress([0; 6]);
                let len = self.emit_udp(out, zero, src, send.to, send.len.min(room_len)).ok_or(Unsent::TooLong)?;
                Err(Unsent::Unresolved { neighbour, len })
            }
        }
    }

    /// The MAC address of `neighbour` if it is resolved at `now_ms`.
    pub fn neighbour_mac(&self, neighbour: Ipv4Addr, now_ms: u64) -> Option<EthernetAddress> {
        self.arp.lookup(neighbour, now_ms)
    }

    /// Writes Ethernet, IPv4 and UDP headers in front of the `payload_len` bytes already
    /// at `out[UDP_PAYLOAD_OFFSET..]`; returns the frame length.
    pub fn emit_udp(
        &mut self,
        out: &mut [u8],
        eth_dst: EthernetAddress,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload_len: usize,
    ) -> Option<usize> {
        let udp_len = UDP_HEADER_LEN.checked_add(payload_len)?;
        let ip_len = u16::try_from(IPV4_HEADER_LEN + udp_len).ok()?;
        let frame_len = ETH_HEADER_LEN + usize::from(ip_len);
        let frame = out.get_mut(..frame_len)?;
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(eth_dst);
        eth.set_src_addr(self.mac);
        eth.set_ethertype(EthernetProtocol::Ipv4);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER_LEN as u8);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(ip_len);
        self.ident = self.ident.wrapping_add(1);
        ip.set_ident(self.ident);
        ip.clear_flags();
        ip.set_dont_frag(true);
        ip.set_frag_offset(0);
        ip.set_hop_limit(TTL);
        ip.set_next_header(IpProtocol::Udp);
        ip.set_src_addr(*src.ip());
        ip.set_dst_addr(*dst.ip());
        ip.fill_checksum();
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        udp.set_src_port(src.port());
        udp.set_dst_port(dst.port());
        udp.set_len(udp_len as u16);
        udp.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
        Some(frame_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0x10, 0, 0, 0, 2]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0x20, 0, 0, 0, 1]);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

    fn host() -> Host {
        let mut h = Host::new(OUR_MAC, OUR_IP).with_subnet(24, Some(Ipv4Addr::new(198, 18, 2, 254)));
        assert_eq!(h.bind_udp(5060), Ok(0));
        h
    }

    /// Answers "re:" + payload to the sender; originates `pending` datagrams "ping"
    /// to `to` once `now_ms >= due`.
    #[derive(Debug)]
    struct Echo {
        pending: usize,
        due: u64,
        to: SocketAddrV4,
    }

    fn echo() -> Echo {
        Echo { pending: 0, due: 0, to: SocketAddrV4::new(PEER_IP, 5060) }
    }

    impl Echo {
        fn receive(&mut self, payload: &[u8], src: SocketAddrV4, reply: &mut [u8]) -> Option<UdpSend> {
            if payload == b"x" {
                return None;
            }
            let out = reply.get_mut(..payload.len() + 3)?;
            out[..3].copy_from_slice(b"re:");
            out[3..].copy_from_slice(payload);
            Some(UdpSend { len: payload.len() + 3, to: src })
        }

        fn poll_transmit(&mut self, now_ms: u64, out: &mut [u8]) -> Option<UdpSend> {
            if self.pending == 0 || now_ms < self.due {
                return None;
            }
            self.pending -= 1;
            out.get_mut(..4)?.copy_from_slice(b"ping");
            Some(UdpSend { len: 4, to: self.to })
        }
    }

    /// Internet checksum of `data` (RFC 1071), for independent checks.
    fn rfc1071(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn eth(dst: [u8; 6], ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&PEER_MAC.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn arp(op: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
        let mut b = vec![0, 1, 8, 0, 6, 4];
        b.extend_from_slice(&op.to_be_bytes());
        b.extend_from_slice(&PEER_MAC.0);
        b.extend_from_slice(&spa.octets());
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&tpa.octets());
        let mut f = eth([0xff; 6], 0x0806, &b);
        f.resize(60, 0); // minimum frame, padded
        f
    }

    fn ipv4(proto: u8, body: &[u8]) -> Vec<u8> {
        let total = (20 + body.len()) as u16;
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&PEER_IP.octets());
        h.extend_from_slice(&OUR_IP.octets());
        let c = rfc1071(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(body);
        eth(OUR_MAC.0, 0x0800, &h)
    }

    fn echo_request(data: &[u8]) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0x00, 0x07, 0x00, 0x01];
        icmp.extend_from_slice(data);
        let c = rfc1071(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ipv4(1, &icmp)
    }

    fn udp(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let len = (8 + payload.len()) as u16;
        let mut u = vec![0x13, 0xc4];
        u.extend_from_slice(&dst_port.to_be_bytes());
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let mut pseudo = PEER_IP.octets().to_vec();
        pseudo.extend_from_slice(&OUR_IP.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&len.to_be_bytes());
        pseudo.extend_from_slice(&u);
        let c = rfc1071(&pseudo);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        ipv4(17, &u)
    }

    fn drop_of(frame: &mut [u8]) -> DropReason {
        match host().receive(frame, 0) {
            Verdict::Drop(r) => r,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    #[test]
    fn answers_arp_request_for_our_address_and_learns_the_sender() {
        let mut h = host();
        let mut f = arp(1, PEER_IP, OUR_IP);
        let Verdict::Reply { len, what } = h.receive(&mut f, 5) else { panic!() };
        assert_eq!((len, what), (ARP_FRAME_LEN, Handled::ArpAnswered));
        let r = &f[..len];
        assert_eq!(&r[0..6], &PEER_MAC.0);
        assert_eq!(&r[6..12], &OUR_MAC.0);
        assert_eq!(&r[12..14], &[0x08, 0x06]);
        assert_eq!(&r[20..22], &[0, 2], "operation reply");
        assert_eq!(&r[22..28], &OUR_MAC.0);
        assert_eq!(&r[28..32], &OUR_IP.octets());
        assert_eq!(&r[32..38], &PEER_MAC.0);
        assert_eq!(&r[38..42], &PEER_IP.octets());
        assert_eq!(h.arp().lookup(PEER_IP, 6), Some(PEER_MAC));
    }

    #[test]
    fn arp_for_others_is_counted_and_replies_resolve() {
        assert_eq!(drop_of(&mut arp(1, PEER_IP, Ipv4Addr::new(198, 18, 2, 9))), DropReason::ArpOtherTarget);
        let mut h = host();
        assert!(h.arp_request_due(PEER_IP, 0));
        let mut f = arp(2, PEER_IP, OUR_IP);
        assert!(matches!(h.receive(&mut f, 1), Verdict::Handled(Handled::ArpLearned)));
        assert_eq!(h.arp().lookup(PEER_IP, 2), Some(PEER_MAC));
        assert!(!h.arp_request_due(PEER_IP, 5000));
        let mut bad = arp(1, PEER_IP, OUR_IP);
        bad[18] = 5; // hardware length 5
        assert_eq!(drop_of(&mut bad), DropReason::ArpMalformed);
        assert_eq!(drop_of(&mut arp(1, PEER_IP, OUR_IP)[..30].to_vec()), DropReason::ArpMalformed);
    }

    #[test]
    fn arp_request_frame() {
        let h = host();
        let mut out = [0u8; 64];
        assert_eq!(h.arp_request(&mut out[..41], PEER_IP), None);
        assert_eq!(h.arp_request(&mut out, PEER_IP), Some(ARP_FRAME_LEN));
        assert_eq!(&out[0..6], &[0xff; 6]);
        assert_eq!(&out[20..22], &[0, 1]);
        assert_eq!(&out[28..32], &OUR_IP.octets());
        assert_eq!(&out[38..42], &PEER_IP.octets());
    }

    #[test]
    fn echo_request_is_answered_in_place() {
        let mut f = echo_request(b"abcdefgh");
        let request = f.clone();
        f.extend_from_slice(&[0; 6]); // trailing padding is not echoed
        let Verdict::Reply { len, what } = host().receive(&mut f, 0) else { panic!() };
        assert_eq!((len, what), (request.len(), Handled::IcmpEchoAnswered));
        let r = &f[..len];
        assert_eq!(&r[0..6], &PEER_MAC.0);
        assert_eq!(&r[6..12], &OUR_MAC.0);
        assert_eq!(rfc1071(&r[14..34]), 0, "IP header checksum");
        assert_eq!(&r[26..30], &OUR_IP.octets());
        assert_eq!(&r[30..34], &PEER_IP.octets());
        assert_eq!(r[34], 0, "echo reply");
        assert_eq!(rfc1071(&r[34..]), 0, "ICMP checksum");
        assert_eq!(&r[38..], &request[38..], "identifier, sequence and data echoed");
    }

    #[test]
    fn malformed_ip_is_counted_by_reason() {
        let good = echo_request(b"x");
        assert_eq!(drop_of(&mut good[..14 + 10].to_vec()), DropReason::IpTruncated);
        let mut f = good.clone();
        f[14] = 0x65;
        assert_eq!(drop_of(&mut f), DropReason::IpBadVersion);
        let mut f = good.clone();
        f[14] = 0x44;
        assert_eq!(drop_of(&mut f), DropReason::IpBadHeaderLen);
        let mut f = good.clone();
        f[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(drop_of(&mut f), DropReason::IpBadTotalLen);
        let mut f = good.clone();
        f[16..18].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(drop_of(&mut f), DropReason::IpTruncated);
        let mut f = good.clone();
        f[24] ^= 1; // checksum
        assert_eq!(drop_of(&mut f), DropReason::IpBadChecksum);
        let mut f = good.clone();
        f[34 + 5] ^= 1; // ICMP identifier, ICMP checksum now wrong
        assert_eq!(drop_of(&mut f), DropReason::IcmpBadChecksum);
        assert_eq!(drop_of(&mut ipv4(47, &[0; 20])), DropReason::IpUnhandledProtocol);
        assert_eq!(drop_of(&mut ipv4(6, &[0; 19])), DropReason::TcpTruncated);
        let mut short = [0u8; 20];
        short[12] = 0x40; // data offset 4 words
        assert_eq!(drop_of(&mut ipv4(6, &short)), DropReason::TcpTruncated);
        let mut long = [0u8; 20];
        long[12] = 0x60; // data offset 6 words beyond the segment
        assert_eq!(drop_of(&mut ipv4(6, &long)), DropReason::TcpTruncated);
        let mut syn = [0u8; 20];
        syn[0..2].copy_from_slice(&40000u16.to_be_bytes());
        syn[2..4].copy_from_slice(&2775u16.to_be_bytes());
        syn[12] = 0x50;
        syn[13] = 0x02;
        let Verdict::Tcp(seg) = host().receive(&mut ipv4(6, &syn), 0) else { panic!("TCP goes to the stack") };
        assert_eq!(seg, TcpSegment { src: SocketAddrV4::new(PEER_IP, 40000), dst_port: 2775, opening: true });
        syn[13] = 0x12; // SYN-ACK: not an opening
        let Verdict::Tcp(seg) = host().receive(&mut ipv4(6, &syn), 0) else { panic!("TCP goes to the stack") };
        assert!(!seg.opening);
        assert_eq!(drop_of(&mut ipv4(1, &[8, 0, 0])), DropReason::IcmpTruncated);
        let mut ts = vec![13, 0, 0, 0, 0, 0, 0, 0];
        let c = rfc1071(&ts);
        ts[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(drop_of(&mut ipv4(1, &ts)), DropReason::IcmpUnhandled);
        assert_eq!(drop_of(&mut good[..10].to_vec()), DropReason::EthTruncated);
    }

    fn with_ip_fix(mut f: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        edit(&mut f[14..34]);
        f[24..26].copy_from_slice(&[0, 0]);
        let c = rfc1071(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn fragments_and_other_hosts_are_dropped() {
        let f = with_ip_fix(echo_request(b"x"), |ip| ip[6] |= 0x20); // MF
        assert_eq!(drop_of(&mut f.clone()), DropReason::IpFragment);
        let f = with_ip_fix(echo_request(b"x"), |ip| ip[7] = 8); // offset 64
        assert_eq!(drop_of(&mut f.clone()), DropReason::IpFragment);
        let f = with_ip_fix(echo_request(b"x"), |ip| ip[19] = 7);
        assert_eq!(drop_of(&mut f.clone()), DropReason::IpOtherHost);
        let mut f = echo_request(b"x");
        f[0] = 0x04; // unicast, not ours
        assert_eq!(drop_of(&mut f), DropReason::EthOtherHost);
        f[0] = 0x33; // IPv6 multicast MAC
        assert_eq!(drop_of(&mut f), DropReason::EthMulticast);
        let mut f = echo_request(b"x");
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(drop_of(&mut f), DropReason::EthUnknownType);
    }

    #[test]
    fn udp_to_a_service_is_delivered_and_answered() {
        let mut h = host();
        let mut f = udp(5060, b"OPTIONS");
        let Verdict::Udp(d) = h.receive(&mut f, 0) else { panic!() };
        assert_eq!(d.src, SocketAddrV4::new(PEER_IP, 5060));
        assert_eq!(d.dst, SocketAddrV4::new(OUR_IP, 5060));
        assert_eq!(&f[d.payload.clone()], b"OPTIONS");
        let mut out = [0u8; 256];
        let n = h.answer_udp(&d, &mut out, |r| echo().receive(&f[d.payload.clone()], d.src, r)).unwrap();
        let r = &out[..n];
        assert_eq!(n, UDP_PAYLOAD_OFFSET + 10);
        assert_eq!(&r[0..6], &PEER_MAC.0);
        assert_eq!(rfc1071(&r[14..34]), 0);
        assert_eq!(&r[26..30], &OUR_IP.octets());
        assert_eq!(&r[30..34], &PEER_IP.octets());
        let mut pseudo = OUR_IP.octets().to_vec();
        pseudo.extend_from_slice(&PEER_IP.octets());
        pseudo.extend_from_slice(&[0, 17, 0, 18]);
        pseudo.extend_from_slice(&r[34..]);
        assert_eq!(rfc1071(&pseudo), 0, "UDP checksum");
        assert_eq!(&r[UDP_PAYLOAD_OFFSET..], b"re:OPTIONS");
        // A service may answer nothing.
        let Verdict::Udp(d) = h.receive(&mut udp(5060, b"x"), 0) else { panic!() };
        assert_eq!(h.answer_udp(&d, &mut out, |r| echo().receive(b"x", d.src, r)), None);
        // Too small a buffer frames nothing.
        assert_eq!(
            h.answer_udp(&d, &mut out[..UDP_PAYLOAD_OFFSET + 4], |r| echo().receive(b"OPTIONS", d.src, r)),
            None
        );
    }

    #[test]
    fn originated_datagrams_go_to_the_resolved_neighbour() {
        let mut h = host();
        let mut out = [0u8; 256];
        let mut svc = Echo { pending: 1, due: 10, ..echo() };
        assert_eq!(h.originate_udp(0, 5, &mut out, |r| svc.poll_transmit(5, r)), Ok(None), "not due");
        assert_eq!(
            h.originate_udp(0, 10, &mut out, |r| svc.poll_transmit(10, r)),
            Err(Unsent::Unresolved { neighbour: PEER_IP, len: UDP_PAYLOAD_OFFSET + 4 })
        );
        assert_eq!(svc.pending, 0, "the service has handed it over: framed, to hold for the ARP reply");
        assert_eq!(&out[0..6], &[0; 6], "its destination MAC comes with the reply");
        assert_eq!(&out[30..34], &PEER_IP.octets());
        let mut reply = arp(2, PEER_IP, OUR_IP);
        assert!(matches!(h.receive(&mut reply, 10), Verdict::Handled(Handled::ArpLearned)));
        let mut svc = Echo { pending: 1, due: 10, ..echo() };
        let n = h.originate_udp(0, 11, &mut out, |r| svc.poll_transmit(11, r)).unwrap().unwrap();
        let r = &out[..n];
        assert_eq!(n, UDP_PAYLOAD_OFFSET + 4);
        assert_eq!(&r[0..6], &PEER_MAC.0);
        assert_eq!(rfc1071(&r[14..34]), 0);
        assert_eq!(&r[26..30], &OUR_IP.octets());
        assert_eq!(&r[30..34], &PEER_IP.octets());
        assert_eq!(&r[34..36], &5060u16.to_be_bytes(), "from the service's port");
        assert_eq!(&r[UDP_PAYLOAD_OFFSET..], b"ping");
        // Off-link goes by the gateway; without one there is no route.
        let far = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5060);
        let mut svc = Echo { pending: 1, due: 0, to: far };
        assert_eq!(
            h.originate_udp(0, 11, &mut out, |r| svc.poll_transmit(11, r)),
            Err(Unsent::Unresolved { neighbour: Ipv4Addr::new(198, 18, 2, 254), len: UDP_PAYLOAD_OFFSET + 4 })
        );
        let mut bare = Host::new(OUR_MAC, OUR_IP);
        bare.bind_udp(5060).unwrap();
        let mut svc = Echo { pending: 1, due: 0, to: far };
        assert_eq!(bare.originate_udp(0, 11, &mut out, |r| svc.poll_transmit(11, r)), Err(Unsent::NoRoute));
        assert_eq!(bare.neighbour_for(OUR_IP), Some(OUR_IP));
        assert_eq!(
            bare.originate_udp(3, 11, &mut out, |r| echo().poll_transmit(11, r)),
            Err(Unsent::NoRoute),
            "unbound slot"
        );
    }

    #[test]
    fn malformed_udp_is_counted_by_reason() {
        assert_eq!(drop_of(&mut udp(5061, b"x")), DropReason::UdpNoService);
        let mut f = udp(5060, b"hello");
        f[34 + 4..34 + 6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(drop_of(&mut f), DropReason::UdpBadLength);
        let mut f = udp(5060, b"hello");
        f[34 + 4..34 + 6].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(drop_of(&mut f), DropReason::UdpBadLength);
        let mut f = udp(5060, b"hello");
        f[34 + 8] ^= 1;
        assert_eq!(drop_of(&mut f), DropReason::UdpBadChecksum);
        assert_eq!(drop_of(&mut ipv4(17, &[0x13, 0xc4, 0x13])), DropReason::UdpTruncated);
        // A zero checksum means "none" (RFC 768).
        let mut f = udp(5060, b"hello");
        f[40..42].copy_from_slice(&[0, 0]);
        assert!(matches!(host().receive(&mut f, 0), Verdict::Udp(_)));
    }

    #[test]
    fn services_table_is_bounded() {
        let mut h = Host::new(OUR_MAC, OUR_IP);
        for p in 0..UDP_SERVICES as u16 {
            assert_eq!(h.bind_udp(p), Ok(usize::from(p)));
        }
        assert_eq!(h.bind_udp(0), Ok(0)); // rebinding is fine
        assert_eq!(h.bind_udp(99), Err(ServicesFull));
        assert_eq!(h.udp_port(2), Some(2));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_frames(mut f in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let mut h = host();
            let _ = h.receive(&mut f, 0);
        }

        #[test]
        fn never_panics_on_mutated_frames(seed in 0usize..4, at in 0usize..80, byte in proptest::prelude::any::<u8>(), cut in 0usize..80) {
            let mut f = match seed { 0 => echo_request(b"0123456789"), 1 => udp(5060, b"OPTIONS sip:x SIP/2.0"), 2 => arp(1, PEER_IP, OUR_IP), _ => udp(9, b"") };
            if let Some(b) = f.get_mut(at) { *b = byte; }
            f.truncate(f.len().saturating_sub(cut % 8));
            let mut h = host();
            if let Verdict::Udp(d) = h.receive(&mut f, 0) {
                let payload = f[d.payload.clone()].to_vec();
                let mut out = [0u8; 128];
                let _ = h.answer_udp(&d, &mut out, |r| echo().receive(&payload, d.src, r));
            }
        }
    }

    #[test]
    fn a_refused_syn_becomes_its_reset_in_place() {
        let mut syn = [0u8; 24]; // with 4 octets of options (MSS)
        syn[0..2].copy_from_slice(&40000u16.to_be_bytes());
        syn[2..4].copy_from_slice(&2775u16.to_be_bytes());
        syn[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        syn[12] = 0x60;
        syn[13] = 0x02;
        syn[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        let mut f = ipv4(6, &syn);
        let (peer_mac, our_mac) = (f[6..12].to_vec(), f[0..6].to_vec());
        let len = reset_in_place(&mut f).unwrap();
        assert_eq!(len, 54);
        let f = &f[..len];
        assert_eq!((&f[0..6], &f[6..12]), (&peer_mac[..], &our_mac[..]));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (OUR_IP, PEER_IP));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(OUR_IP), &IpAddress::Ipv4(PEER_IP)));
        assert_eq!((tcp.src_port(), tcp.dst_port()), (2775, 40000));
        assert!(tcp.rst() && tcp.ack() && !tcp.syn());
        assert_eq!(tcp.seq_number(), TcpSeqNumber(0));
        // The SYN's sequence number plus one, wrapping.
        assert_eq!(tcp.ack_number(), TcpSeqNumber(0xFFFF_FFF1u32 as i32));
        assert!(reset_in_place(&mut [0u8; 20]).is_none(), "too short to answer");
    }
}
