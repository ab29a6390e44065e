//! `iwf-peer pcap`: packet captures for load tools (TRex, tcpreplay), written from an iwf
//! configuration so that what they carry is what iwf accepts.
//!
//! - `imdn.pcap`: SIP MESSAGEs over UDP, converged → iwf, each a delivery notification
//!   (CPIM + `message/imdn+xml`, RFC 5438) whose `<message-id>` is a **valid tag** signed
//!   with the configuration's signing key for one legacy system (`--system`), asking for
//!   delivery and failure receipts: iwf verifies it and routes one receipt to that
//!   system's lane (or its durable queue while it has no bind).
//! - `message.pcap`: SIP MESSAGEs over UDP, converged → legacy (CPIM `text/plain`,
//!   `imdn.Disposition-Notification: positive-delivery`) to a number a `[[routes]]`
//!   prefix sends to a legacy system.
//! - `smpp.pcap`: one SMPP session over TCP as a complete flow (handshake,
//!   bind_transmitter and its resp, submit_sm asking for receipts and their resps whose
//!   message_id is a tag, unbind, FIN both ways): the template TRex ASTF replays.
//!
//! Every request has its own Call-ID, Via branch and `imdn.Message-ID` (derived from
//! `--at`, so captures generated at different times do not collide). Frames are built
//! with smoltcp's `wire` types (IPv4, UDP and TCP checksums filled) and iwf's own SIP,
//! CPIM, IMDN and SMPP emitters; the file is classic libpcap (link type Ethernet) written
//! through smoltcp's [`PcapSink`]. Tags expire after the configuration's
//! `tag.max_age_minutes`: generate the captures again before that.
use iwf::control::config::LegacyConfig;
use iwf::control::provision::Provision;
use iwf::tag::{KeyRing, Originator, Parties, ReceiptRequest, TagFields};
use iwf::wire::cpim::{CpimAddress, CpimRepr, DateTime, Dispositions};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{MessageWriter, Method};
use iwf::wire::smpp::{
    Address, Bind, BindResp, Body, MessageIdResp, Pdu, RegisteredDelivery, SubmitSm, Tlv, TlvTag, Tlvs,
};
use serde_json::json;
use smoltcp::phy::{ChecksumCapabilities, PcapLinkType, PcapSink};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;

/// `iwf-peer pcap` options.
#[derive(clap::Args)]
pub struct PcapArgs {
    /// The iwf configuration (`[tag]` keys, `[[legacy]]`, `[[routes]]`), e.g. config/lab.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Directory the captures are written to (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Requests per capture (IMDNs, MESSAGEs, submit_sm; at most 1,000,000: the
    /// captures are built in memory).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub count: u32,
    /// The legacy system (`[[legacy]] name`) whose tags the IMDNs carry and whose route
    /// the MESSAGEs take (default: the first system).
    #[arg(long)]
    pub system: Option<String>,
    /// The legacy user the MESSAGEs go to (E.164 with `+`; default: a number under the
    /// chosen system's route, else the first route). Must be routed by `[[routes]]`.
    #[arg(long)]
    pub to: Option<String>,
    /// The converged user (E.164 with `+`) that sends the MESSAGEs and IMDNs.
    #[arg(long, default_value = "+447900000001")]
    pub converged_user: String,
    /// Converged peer (the SIP core) the requests come from.
    #[arg(long, default_value = "198.18.2.1:5062")]
    pub sip_peer: SocketAddrV4,
    /// iwf's SIP address on the converged port.
    #[arg(long, default_value = "198.18.2.2:5060")]
    pub sip_iwf: SocketAddrV4,
    /// Legacy peer (the SMSC / ESME binding to iwf) in smpp.pcap.
    #[arg(long, default_value = "198.18.1.1:40000")]
    pub smpp_peer: SocketAddrV4,
    /// iwf's SMPP server on the legacy port.
    #[arg(long, default_value = "198.18.1.2:2775")]
    pub smpp_iwf: SocketAddrV4,
    /// Source MAC of the peer's frames (locally administered default; TRex and
    /// tcprewrite rewrite it, tcpreplay into the lab needs the namespace tap's).
    #[arg(long, default_value = "02:00:00:00:00:01", value_parser = parse_mac)]
    pub src_mac: EthernetAddress,
    /// Destination MAC of the peer's frames: iwf's port (it drops frames for other
    /// unicast MACs; in the lab: `ip -n iwf-conv neigh show 198.18.2.2`).
    #[arg(long, default_value = "02:00:00:00:00:02", value_parser = parse_mac)]
    pub dst_mac: EthernetAddress,
    /// Issue time of the tags and first frame's timestamp (Unix seconds; default now).
    #[arg(long)]
    pub at: Option<u64>,
    /// Microseconds between two requests in the captures' timestamps (tcpreplay's pace
    /// without `--pps`/`--topspeed`).
    #[arg(long, default_value_t = 1000)]
    pub gap_us: u32,
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`).
fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    s.parse().map_err(|()| format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

/// `aa:bb:cc:dd:ee:ff`, the form tcprewrite and trex_cfg.yaml take.
fn mac_text(m: EthernetAddress) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Largest IPv4 datagram a frame carries (Ethernet MTU).
const MTU: usize = 1500;
/// Ethernet + IPv4 + UDP headers.
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;

/// A classic libpcap file in memory (link type Ethernet, microsecond timestamps):
/// smoltcp's [`PcapSink`] writes the global and record headers.
pub struct PcapFile {
    bytes: Vec<u8>,
    frames: usize,
}

impl PcapSink for PcapFile {
    fn write(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }
}

impl PcapFile {
    /// An empty capture: the global header only.
    pub fn new() -> PcapFile {
        let mut f = PcapFile { bytes: Vec::new(), frames: 0 };
        f.global_header(PcapLinkType::Ethernet);
        f
    }

    /// Appends one frame captured at `micros` after the Unix epoch.
    pub fn push(&mut self, micros: i64, frame: &[u8]) -> Result<(), String> {
        // PcapSink::packet_header asserts the 16-bit snap length.
        if frame.len() > ETH_LEN + MTU {
            return Err(format!("a {}-octet frame exceeds the 1500-octet MTU", frame.len()));
        }
        self.packet(Instant::from_micros(micros), frame);
        self.frames += 1;
        Ok(())
    }

    /// Frames written.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One end of a flow: Ethernet and IPv4/port addresses.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// MAC address.
    pub mac: EthernetAddress,
    /// IPv4 address and port.
    pub addr: SocketAddrV4,
}

fn ip(a: &SocketAddrV4) -> IpAddress {
    IpAddress::Ipv4(*a.ip())
}

/// Ethernet + IPv4 header around an L4 payload of `l4_len` octets written by `l4`.
fn ipv4_frame(
    src: &Endpoint,
    dst: &Endpoint,
    ident: u16,
    protocol: IpProtocol,
    l4_len: usize,
    l4: impl FnOnce(&mut [u8]),
) -> Result<Vec<u8>, String> {
    if IPV4_LEN + l4_len > MTU {
        return Err(format!("a {}-octet IPv4 datagram exceeds the 1500-octet MTU", IPV4_LEN + l4_len));
    }
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0u8; ETH_LEN + IPV4_LEN + l4_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr { src_addr: src.mac, dst_addr: dst.mac, ethertype: EthernetProtocol::Ipv4 }.emit(&mut eth);
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    let repr = Ipv4Repr {
        src_addr: *src.addr.ip(),
        dst_addr: *dst.addr.ip(),
        next_header: protocol,
        payload_len: l4_len,
        hop_limit: 64,
    };
    repr.emit(&mut packet, &caps);
    packet.set_ident(ident);
    packet.fill_checksum();
    l4(packet.payload_mut());
    Ok(buf)
}

/// One UDP datagram in an Ethernet frame, IPv4 and UDP checksums filled.
pub fn udp_frame(src: &Endpoint, dst: &Endpoint, ident: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    ipv4_frame(src, dst, ident, IpProtocol::Udp, UDP_LEN + payload.len(), |l4| {
        let mut udp = UdpPacket::new_unchecked(l4);
        UdpRepr { src_port: src.addr.port(), dst_port: dst.addr.port() }.emit(
            &mut udp,
            &ip(&src.addr),
            &ip(&dst.addr),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// A TCP connection written as frames: sequence and acknowledgement numbers follow the
/// data each side sent; every segment after the client's SYN acknowledges everything
/// the other side sent.
pub struct TcpFlow {
    client: Endpoint,
    server: Endpoint,
    client_next: TcpSeqNumber,
    server_next: TcpSeqNumber,
    ident: u16,
    /// The frames, in order, with `true` for the client's.
    pub frames: Vec<(bool, Vec<u8>)>,
}

impl TcpFlow {
    /// A flow whose client and server start with these initial sequence numbers.
    pub fn new(client: Endpoint, server: Endpoint, client_isn: u32, server_isn: u32) -> TcpFlow {
        TcpFlow {
            client,
            server,
            client_next: TcpSeqNumber(client_isn as i32),
            server_next: TcpSeqNumber(server_isn as i32),
            ident: 1,
            frames: Vec::new(),
        }
    }

    fn segment(&mut self, from_client: bool, control: TcpControl, payload: &[u8]) -> Result<(), String> {
        let (src, dst, seq, ack) = if from_client {
            (self.client, self.server, self.client_next, self.server_next)
        } else {
            (self.server, self.client, self.server_next, self.client_next)
        };
        let first_syn = from_client && control == TcpControl::Syn;
        let repr = TcpRepr {
            src_port: src.addr.port(),
            dst_port: dst.addr.port(),
            control,
            seq_number: seq,
            ack_number: (!first_syn).then_some(ack),
            window_len: 65_535,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let frame = ipv4_frame(&src, &dst, self.ident, IpProtocol::Tcp, repr.buffer_len(), |l4| {
            let mut tcp = TcpPacket::new_unchecked(l4);
            repr.emit(&mut tcp, &ip(&src.addr), &ip(&dst.addr), &ChecksumCapabilities::default());
        })?;
        self.ident = self.ident.wrapping_add(1);
        let next = seq + repr.segment_len();
        if from_client {
            self.client_next = next;
        } else {
            self.server_next = next;
        }
        self.frames.push((from_client, frame));
        Ok(())
    }

    /// SYN, SYN-ACK, ACK.
    pub fn open(&mut self) -> Result<(), String> {
        self.segment(true, TcpControl::Syn, &[])?;
        self.segment(false, TcpControl::Syn, &[])?;
        self.segment(true, TcpControl::None, &[])
    }

    /// Data from one side, split into segments of at most 1460 octets (PSH on each).
    pub fn data(&mut self, from_client: bool, bytes: &[u8]) -> Result<(), String> {
        for chunk in bytes.chunks(MTU - IPV4_LEN - 20) {
            self.segment(from_client, TcpControl::Psh, chunk)?;
        }
        Ok(())
    }

    /// The client's FIN, the server's FIN-ACK, the client's last ACK.
    pub fn close(&mut self) -> Result<(), String> {
        self.segment(true, TcpControl::Fin, &[])?;
        self.segment(false, TcpControl::Fin, &[])?;
        self.segment(true, TcpControl::None, &[])
    }
}

fn sip_uri(number: &str, domain: &str) -> String {
    format!("sip:{number}@{domain};user=phone")
}

/// A MESSAGE over UDP from `peer` to `iwf` carrying `cpim` (already emitted).
fn sip_message(peer: &SocketAddrV4, from: &str, to: &str, call: &str, cpim: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; 4096];
    let e = |e: iwf::wire::sip::Error| format!("SIP: {e}");
    let mut w = MessageWriter::request(&mut out, Method::Message, to).map_err(e)?;
    w.header("Via", &format!("SIP/2.0/UDP {peer};branch=z9hG4bK{call}")).map_err(e)?;
    w.header("Max-Forwards", "70").map_err(e)?;
    w.header("From", &format!("<{from}>;tag={call}")).map_err(e)?;
    w.header("To", &format!("<{to}>")).map_err(e)?;
    w.header("Call-ID", &format!("{call}@{}", peer.ip())).map_err(e)?;
    w.header("CSeq", "1 MESSAGE").map_err(e)?;
    w.header("Content-Type", "message/cpim").map_err(e)?;
    let n = w.finish(cpim).map_err(e)?;
    out.truncate(n);
    Ok(out)
}

/// The delivery notification (RFC 5438 §7.2.1.1) for the message tagged `tag`, from
/// the converged user `converged` back to the legacy user `legacy`.
pub fn imdn_request(
    peer: &SocketAddrV4,
    converged: &str,
    legacy: &str,
    tag: &str,
    sent: DateTime,
    now: DateTime,
    call: &str,
) -> Result<Vec<u8>, String> {
    let imdn = Imdn {
        message_id: XmlText::plain(tag.as_bytes()),
        datetime: sent,
        recipient_uri: Some(XmlText::plain(converged.as_bytes())),
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).map_err(|e| format!("IMDN: {e}"))?;
    let cpim = CpimRepr {
        from: CpimAddress::new(b"", converged.as_bytes()),
        to: CpimAddress::new(b"", legacy.as_bytes()),
        datetime: now,
        message_id: call.as_bytes(),
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: xml.get(..xn).unwrap_or(&[]),
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).map_err(|e| format!("CPIM: {e}"))?;
    sip_message(peer, converged, legacy, call, body.get(..bn).unwrap_or(&[]))
}

/// A text message from the converged user to the legacy user, asking for a delivery
/// notification; `id` is its `imdn.Message-ID`, Call-ID and branch.
pub fn message_request(
    peer: &SocketAddrV4,
    converged: &str,
    legacy: &str,
    text: &str,
    now: DateTime,
    id: &str,
) -> Result<Vec<u8>, String> {
    let cpim = CpimRepr {
        from: CpimAddress::new(b"", converged.as_bytes()),
        to: CpimAddress::new(b"", legacy.as_bytes()),
        datetime: now,
        message_id: id.as_bytes(),
        dispositions: Dispositions::POSITIVE_DELIVERY,
        imdn_record_route: None,
        content_type: b"text/plain;charset=UTF-8",
        content_disposition: None,
        content: text.as_bytes(),
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).map_err(|e| format!("CPIM: {e}"))?;
    sip_message(peer, converged, legacy, id, body.get(..bn).unwrap_or(&[]))
}

/// One PDU's bytes.
fn pdu(seq: u32, body: Body<'_>) -> Result<Vec<u8>, String> {
    let p = Pdu::new(seq, body);
    let mut out = vec![0u8; p.buffer_len()];
    let n = p.emit(&mut out).map_err(|e| format!("SMPP: {e}"))?;
    out.truncate(n);
    Ok(out)
}

/// What one SMPP session in smpp.pcap says.
pub struct SmppScript<'a> {
    /// The system binding (system_id, password).
    pub system: &'a LegacyConfig,
    /// submit_sm to send.
    pub submits: u32,
    /// source_addr digits (the legacy user).
    pub source: &'a str,
    /// destination_addr digits (the converged user).
    pub destination: &'a str,
    /// The message_id iwf answers the i-th submit_sm with (0-based).
    pub message_id: &'a dyn Fn(u32) -> Result<String, String>,
}

/// bind_transmitter, its resp, `submits` × (submit_sm asking for a receipt, its resp),
/// unbind, unbind_resp: a complete TCP flow from `client` to `server`.
pub fn smpp_flow(client: Endpoint, server: Endpoint, isn: (u32, u32), s: &SmppScript<'_>) -> Result<TcpFlow, String> {
    let mut flow = TcpFlow::new(client, server, isn.0, isn.1);
    flow.open()?;
    let bind = Bind {
        system_id: s.system.system_id.as_bytes(),
        password: s.system.password.as_bytes(),
        system_type: b"",
        interface_version: 0x34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: b"",
    };
    flow.data(true, &pdu(1, Body::BindTransmitter(bind))?)?;
    // What iwf answers (src/session/smpp.rs): its system_id and sc_interface_version, so
    // that ASTF's receive lengths taken from this capture match iwf's real answers.
    let version = [0x34];
    let tlvs = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &version)];
    let resp = BindResp { system_id: Some(b"iwf"), tlvs: Tlvs::List(&tlvs) };
    flow.data(false, &pdu(1, Body::BindTransmitterResp(resp))?)?;
    for i in 0..s.submits {
        let seq = i + 2;
        let text = format!("load {i}");
        let sm = SubmitSm {
            source: Address::international(s.source.as_bytes()),
            destination: Address::international(s.destination.as_bytes()),
            registered_delivery: RegisteredDelivery(1),
            short_message: text.as_bytes(),
            ..SubmitSm::default()
        };
        flow.data(true, &pdu(seq, Body::SubmitSm(sm))?)?;
        let id = (s.message_id)(i)?;
        let resp = MessageIdResp { message_id: Some(id.as_bytes()), ..MessageIdResp::default() };
        flow.data(false, &pdu(seq, Body::SubmitSmResp(resp))?)?;
    }
    let last = s.submits.saturating_add(2);
    flow.data(true, &pdu(last, Body::Unbind)?)?;
    flow.data(false, &pdu(last, Body::UnbindResp)?)?;
    flow.close()?;
    Ok(flow)
}

/// A number under route prefix `digits` (12 digits when the prefix leaves room).
fn number_under(digits: &str, i: u32) -> String {
    let width = 12usize.saturating_sub(digits.len()).clamp(1, 8);
    let modulus = 10u64.pow(width as u32);
    format!("+{digits}{:0width$}", (u64::from(i) + 1) % modulus)
}

fn write(dir: &std::path::Path, name: &str, file: &PcapFile) -> Result<String, String> {
    let path = dir.join(name);
    std::fs::write(&path, file.bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// Writes imdn.pcap, message.pcap and smpp.pcap; prints a JSON summary.
pub fn pcap(args: PcapArgs) -> Result<ExitCode, String> {
    let text =
        std::fs::read_to_string(&args.config).map_err(|e| format!("cannot read {}: {e}", args.config.display()))?;
    let provision = Provision::parse(&text).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let keys: &KeyRing = &provision.keys;
    let system = match &args.system {
        Some(name) => provision.legacy.iter().find(|l| &l.name == name).ok_or_else(|| {
            let names: Vec<&str> = provision.legacy.iter().map(|l| l.name.as_str()).collect();
            format!("no [[legacy]] system `{name}` (known: {})", names.join(", "))
        })?,
        None => provision.legacy.first().ok_or("the configuration has no [[legacy]] system")?,
    };
    // The SMPP session binds to iwf: the chosen system, unless iwf binds to it.
    let binder = if system.connect.is_none() {
        system
    } else {
        provision
            .legacy
            .iter()
            .find(|l| l.connect.is_none())
            .ok_or("no [[legacy]] system binds to iwf (all have `connect`): no smpp.pcap to write")?
    };
    let routes = provision.routes.entries();
    let text_route = |ct: Option<&str>| ct.is_none_or(|c| c.eq_ignore_ascii_case("text/plain"));
    let to_prefix = match &args.to {
        Some(number) => {
            let digits = number.strip_prefix('+').unwrap_or(number);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("--to {number}: not an E.164 number (+ and digits)"));
            }
            provision
                .routes
                .select_digits(digits.as_bytes(), Some("text/plain"))
                .map_err(|e| format!("--to {number}: {e}"))?;
            None
        }
        None => Some(
            routes
                .iter()
                .find(|(_, s, ct)| s.0 == system.id && text_route(*ct))
                .or_else(|| routes.iter().find(|(_, _, ct)| text_route(*ct)))
                .ok_or("the configuration has no [[routes]] for text: no message.pcap to write (or give --to)")?,
        ),
    };
    let to_number = |i: u32| match (&args.to, to_prefix) {
        (Some(n), _) => n.clone(),
        (_, Some((digits, _, _))) => number_under(digits, i),
        _ => String::new(),
    };
    let routed_to = {
        let first = to_number(0);
        let id = provision.routes.select_digits(first.trim_start_matches('+').as_bytes(), Some("text/plain"));
        id.ok().and_then(|id| provision.system(id.0)).map_or("?", |l| l.name.as_str()).to_string()
    };

    let at = args.at.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    let at_dt = DateTime::from_unix(i64::try_from(at).map_err(|_| "--at out of range")?);
    let sent_dt = DateTime::from_unix(i64::try_from(at.saturating_sub(60)).unwrap_or(0));
    let run = format!("{at:x}");
    let minutes = TagFields::minutes_at(at);
    let seq_base = (at as u32).wrapping_mul(1000);
    // Each tag is signed for its message's parties (legacy user `to_number(i)`, the
    // converged user), which its IMDN names: iwf verifies it with them.
    let converged_digits = args.converged_user.trim_start_matches('+').to_string();
    let tag_for = |sys: &LegacyConfig, i: u32| -> Result<String, String> {
        let legacy = to_number(i);
        let parties = Parties::new(Originator::Number(legacy.trim_start_matches('+')), &converged_digits)
            .ok_or("a party is longer than 16 digits")?;
        let fields = TagFields {
            system: sys.id,
            minutes,
            sequence: seq_base.wrapping_add(i),
            segment_index: 0,
            segment_count: 1,
            receipts: ReceiptRequest::DELIVERY.union(ReceiptRequest::FAILURE),
            parties,
        };
        let tag = keys.encode(&fields).map_err(|e| format!("tag: {e}"))?;
        let tag = tag.as_str().to_string();
        // What iwf will do with it: verify, at the issue time.
        keys.verify(tag.as_bytes(), at, &[parties]).map_err(|e| format!("a minted tag does not verify: {e}"))?;
        Ok(tag)
    };

    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let peer = Endpoint { mac: args.src_mac, addr: args.sip_peer };
    let iwf_sip = Endpoint { mac: args.dst_mac, addr: args.sip_iwf };
    let t0 = i64::try_from(at).unwrap_or(0) * 1_000_000;
    let gap = i64::from(args.gap_us);
    let conv = &provision.converged;
    let converged_uri = sip_uri(&args.converged_user, &conv.converged_domain);

    let mut imdns = PcapFile::new();
    let mut first_tag = String::new();
    for i in 0..args.count {
        let tag = tag_for(system, i)?;
        if i == 0 {
            first_tag = tag.clone();
        }
        let legacy_uri = sip_uri(&to_number(i), &conv.legacy_domain);
        let call = format!("imdn-{run}-{i}");
        let sip = imdn_request(&args.sip_peer, &converged_uri, &legacy_uri, &tag, sent_dt, at_dt, &call)?;
        imdns.push(t0 + gap * i64::from(i), &udp_frame(&peer, &iwf_sip, i as u16, &sip)?)?;
    }
    let mut messages = PcapFile::new();
    for i in 0..args.count {
        let legacy_uri = sip_uri(&to_number(i), &conv.legacy_domain);
        let id = format!("msg-{run}-{i}");
        let sip = message_request(&args.sip_peer, &converged_uri, &legacy_uri, &format!("load {i}"), at_dt, &id)?;
        messages.push(t0 + gap * i64::from(i), &udp_frame(&peer, &iwf_sip, i as u16, &sip)?)?;
    }
    let source = to_number(0);
    let destination = args.converged_user.trim_start_matches('+').to_string();
    let message_id = |i: u32| tag_for(binder, i);
    let script = SmppScript {
        system: binder,
        submits: args.count,
        source: source.trim_start_matches('+'),
        destination: &destination,
        message_id: &message_id,
    };
    let client = Endpoint { mac: args.src_mac, addr: args.smpp_peer };
    let server = Endpoint { mac: args.dst_mac, addr: args.smpp_iwf };
    let flow = smpp_flow(client, server, (at as u32, (at as u32).rotate_left(16)), &script)?;
    let mut smpp = PcapFile::new();
    for (k, (_, frame)) in flow.frames.iter().enumerate() {
        smpp.push(t0 + 100 * k as i64, frame)?;
    }

    let files = [
        (write(&args.out, "imdn.pcap", &imdns)?, imdns.frames()),
        (write(&args.out, "message.pcap", &messages)?, messages.frames()),
        (write(&args.out, "smpp.pcap", &smpp)?, smpp.frames()),
    ];
    println!(
        "{}",
        json!({
            "role": "pcap",
            "config": args.config.display().to_string(),
            "tags_issued_at": at,
            "files": {
                "imdn": {
                    "path": files[0].0, "frames": files[0].1, "imdns": args.count,
                    "system": system.name, "system_index": system.id, "first_tag": first_tag,
                    "receipts": "delivery,failure",
                },
                "message": {
                    "path": files[1].0, "frames": files[1].1, "messages": args.count,
                    "to_first": to_number(0), "routed_to": routed_to,
                },
                "smpp": {
                    "path": files[2].0, "frames": files[2].1, "submits": args.count,
                    "system": binder.name, "system_id": binder.system_id,
                },
            },
            "sip": { "from": args.sip_peer.to_string(), "to": args.sip_iwf.to_string() },
            "smpp_tcp": { "from": args.smpp_peer.to_string(), "to": args.smpp_iwf.to_string() },
            "mac": { "src": mac_text(args.src_mac), "dst": mac_text(args.dst_mac) },
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iwf::wire::cpim::{self, EMPTY_HEADER};
    use iwf::wire::sip::{parse_datagram, Header};

    fn ends() -> (Endpoint, Endpoint) {
        let a = Endpoint { mac: EthernetAddress([2, 0, 0, 0, 0, 1]), addr: "198.18.2.1:5062".parse().unwrap() };
        let b = Endpoint { mac: EthernetAddress([2, 0, 0, 0, 0, 2]), addr: "198.18.2.2:5060".parse().unwrap() };
        (a, b)
    }

    fn lab() -> Provision {
        Provision::parse(include_str!("../../../config/lab.toml")).unwrap()
    }

    /// The frame's IPv4 packet, checked, with its header checksum verified.
    fn ipv4(frame: &[u8]) -> Ipv4Packet<&[u8]> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
        let p = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
        assert!(p.verify_checksum(), "IPv4 header checksum");
        assert_eq!(usize::from(p.total_len()), frame.len() - ETH_LEN);
        p
    }

    #[test]
    fn the_pcap_file_has_libpcap_headers_in_native_order() {
        let mut f = PcapFile::new();
        assert_eq!(f.bytes().len(), 24);
        f.push(1_700_000_000_123_456, &[0xaa; 60]).unwrap();
        let b = f.bytes();
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_ne_bytes(b[i..i + 2].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        assert_eq!((u16_at(4), u16_at(6)), (2, 4));
        assert_eq!(u32_at(16), 65_535);
        assert_eq!(u32_at(20), 1, "LINKTYPE_ETHERNET");
        assert_eq!((u32_at(24), u32_at(28)), (1_700_000_000, 123_456));
        assert_eq!((u32_at(32), u32_at(36)), (60, 60));
        assert_eq!(&b[40..], &[0xaa; 60]);
        assert_eq!(f.frames(), 1);
    }

    #[test]
    fn an_oversize_frame_is_refused_not_written() {
        let mut f = PcapFile::new();
        assert!(f.push(0, &vec![0; ETH_LEN + MTU + 1]).is_err());
        assert_eq!((f.frames(), f.bytes().len()), (0, 24));
        let (a, b) = ends();
        assert!(udp_frame(&a, &b, 0, &[0; MTU - IPV4_LEN - UDP_LEN + 1]).is_err());
        assert!(udp_frame(&a, &b, 0, &[0; MTU - IPV4_LEN - UDP_LEN]).is_ok());
    }

    #[test]
    fn udp_frames_carry_valid_checksums_and_the_payload() {
        let (a, b) = ends();
        let frame = udp_frame(&a, &b, 7, b"hello").unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (a.mac, b.mac));
        let p = ipv4(&frame);
        assert_eq!((p.ident(), p.next_header(), p.hop_limit()), (7, IpProtocol::Udp, 64));
        let udp = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(udp.verify_checksum(&ip(&a.addr), &ip(&b.addr)));
        assert_ne!(udp.checksum(), 0);
        assert_eq!((udp.src_port(), udp.dst_port(), udp.payload()), (5062, 5060, &b"hello"[..]));
        // A flipped payload bit breaks the UDP checksum, not the IPv4 one.
        let mut bad = frame.clone();
        *bad.last_mut().unwrap() ^= 1;
        let p = ipv4(&bad);
        assert!(!UdpPacket::new_checked(p.payload()).unwrap().verify_checksum(&ip(&a.addr), &ip(&b.addr)));
    }

    #[test]
    fn an_smpp_flow_is_a_complete_tcp_conversation_with_consistent_numbers() {
        let p = lab();
        let sys = &p.legacy[0];
        let ids = |i: u32| Ok(format!("id{i}"));
        let script = SmppScript {
            system: sys,
            submits: 3,
            source: "447000100001",
            destination: "447900000001",
            message_id: &ids,
        };
        let (c, s) = ends();
        let flow = smpp_flow(c, s, (0xffff_fff0, 1000), &script).unwrap();
        // SYN, SYN-ACK, ACK, bind + resp, 3 × (submit + resp), unbind + resp, FIN, FIN-ACK, ACK.
        assert_eq!(flow.frames.len(), 3 + 2 + 6 + 2 + 3);
        let mut next = [None::<TcpSeqNumber>; 2]; // what each side sends next: [client, server]
        let mut streams = [Vec::new(), Vec::new()];
        for (k, (from_client, frame)) in flow.frames.iter().enumerate() {
            let p = ipv4(frame);
            let tcp = TcpPacket::new_checked(p.payload()).unwrap();
            assert!(tcp.verify_checksum(&IpAddress::Ipv4(p.src_addr()), &IpAddress::Ipv4(p.dst_addr())), "frame {k}");
            let (me, other) = if *from_client { (0, 1) } else { (1, 0) };
            if let Some(n) = next[me] {
                assert_eq!(tcp.seq_number(), n, "frame {k}: seq continues");
            }
            assert_eq!(tcp.ack(), k > 0, "frame {k}: ACK on all but the first SYN");
            if tcp.ack() {
                assert_eq!(Some(tcp.ack_number()), next[other], "frame {k}: acks all the other side sent");
            }
            let len = tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin());
            next[me] = Some(tcp.seq_number() + len);
            streams[me].extend_from_slice(tcp.payload());
        }
        let (first, last) = (&flow.frames[0].1, &flow.frames[flow.frames.len() - 1].1);
        let syn = TcpPacket::new_checked(ipv4(first).payload()).unwrap();
        assert!(syn.syn() && !syn.ack() && syn.seq_number() == TcpSeqNumber(0xffff_fff0u32 as i32));
        assert!(TcpPacket::new_checked(ipv4(last).payload()).unwrap().ack());
        // Each direction is a sequence of whole PDUs, answered in order.
        let pdus = |mut s: &[u8]| {
            let mut out = Vec::new();
            while !s.is_empty() {
                let n = u32::from_be_bytes(s[..4].try_into().unwrap()) as usize;
                let p = Pdu::parse(&s[..n]).unwrap();
                let text = match p.body {
                    Body::BindTransmitter(b) => String::from_utf8_lossy(b.system_id).into_owned(),
                    Body::BindTransmitterResp(r) => format!("version={:?}", r.tlvs.sc_interface_version()),
                    Body::SubmitSm(sm) => format!("rd={}", sm.registered_delivery.0),
                    Body::SubmitSmResp(r) => String::from_utf8_lossy(r.message_id.unwrap_or(b"")).into_owned(),
                    _ => String::new(),
                };
                out.push((u32::from(p.command_id()), p.sequence_number, text));
                s = &s[n..];
            }
            out
        };
        let (reqs, resps) = (pdus(&streams[0]), pdus(&streams[1]));
        assert_eq!((reqs.len(), resps.len()), (5, 5));
        for (q, r) in reqs.iter().zip(&resps) {
            assert_eq!(q.1, r.1);
            assert_eq!(r.0, q.0 | 0x8000_0000);
        }
        assert_eq!((reqs[0].0, reqs[0].2.as_str()), (0x0000_0002, "smsca"));
        assert_eq!(resps[0].2, "version=Ok(Some(52))", "iwf's bind_transmitter_resp: sc_interface_version 0x34");
        assert_eq!(reqs[2].2, "rd=1");
        assert_eq!(resps[2].2, "id1");
        assert_eq!(reqs[4].0, 0x0000_0006);
    }

    #[test]
    fn an_imdn_carries_a_tag_iwf_verifies_for_the_system() {
        let p = lab();
        let fields = TagFields {
            system: 2,
            minutes: TagFields::minutes_at(1_800_000_000),
            sequence: 9,
            segment_index: 0,
            segment_count: 1,
            receipts: ReceiptRequest::DELIVERY,
            parties: Parties::new(Originator::Number("447000200001"), "447900000001").unwrap(),
        };
        let tag = p.keys.encode(&fields).unwrap();
        let peer: SocketAddrV4 = "198.18.2.1:5062".parse().unwrap();
        let dt = DateTime::from_unix(1_800_000_000);
        let sip = imdn_request(
            &peer,
            "sip:+447900000001@ims.lab;user=phone",
            "sip:+447000200001@iwf.ims.lab;user=phone",
            tag.as_str(),
            dt,
            dt,
            "imdn-x-1",
        )
        .unwrap();
        let mut headers = [Header::EMPTY; 24];
        let m = parse_datagram(&sip, &mut headers).unwrap();
        assert_eq!(m.method(), Some(Method::Message));
        assert_eq!(m.call_id().unwrap(), "imdn-x-1@198.18.2.1");
        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).unwrap();
        assert_eq!(c.content_type(), Some(&b"message/imdn+xml"[..]));
        let imdn = Imdn::parse(c.content).unwrap();
        assert_eq!(imdn.notification, Notification::Delivery(DeliveryStatus::Delivered));
        let mut buf = [0u8; 64];
        let id = imdn.message_id.unescape_into(&mut buf).unwrap();
        assert_eq!(p.keys.verify(id, 1_800_000_000, &[fields.parties]), Ok(fields));
        // What iwf's flows do with it: one delivery receipt for smsc-b.
        let routed = iwf::interwork::legacy_to_converged::imdn_message_to_receipts(
            &m,
            &p.keys,
            1_800_000_000,
            |_| None::<iwf::interwork::Exchange>,
            1,
            &mut [0u8; 4096],
        );
        assert!(matches!(routed, Err(iwf::interwork::legacy_to_converged::ImdnRouteError::UnknownSystem(2))));
    }

    #[test]
    fn a_message_is_cpim_text_asking_for_delivery_to_a_routed_number() {
        let p = lab();
        let routes = p.routes.entries();
        let (digits, system, _) = routes.iter().find(|r| r.1 .0 == 2).unwrap();
        let number = number_under(digits, 0);
        assert_eq!(number, "+447000200001");
        assert_eq!(p.routes.select_digits(number.as_bytes(), Some("text/plain")), Ok(*system));
        let peer: SocketAddrV4 = "198.18.2.1:5062".parse().unwrap();
        let to = sip_uri(&number, "iwf.ims.lab");
        let sip =
            message_request(&peer, "sip:+447900000001@ims.lab;user=phone", &to, "hi", DateTime::from_unix(0), "m-1")
                .unwrap();
        let mut headers = [Header::EMPTY; 24];
        let m = parse_datagram(&sip, &mut headers).unwrap();
        assert_eq!(m.request_line().unwrap().uri, to);
        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).unwrap();
        let r = CpimRepr::parse(&c).unwrap();
        assert!(r.dispositions.contains(Dispositions::POSITIVE_DELIVERY));
        assert_eq!((r.message_id, r.content), (&b"m-1"[..], &b"hi"[..]));
    }

    #[test]
    fn numbers_under_a_prefix_are_twelve_digits_and_distinct() {
        assert_eq!(number_under("4470001", 0), "+447000100001");
        assert_eq!(number_under("4470001", 41), "+447000100042");
        assert_eq!(number_under("447000100001234", 5), "+4470001000012346");
        assert_ne!(number_under("4470001", 1), number_under("4470001", 2));
    }
}
