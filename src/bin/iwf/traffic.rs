//! The synthetic traffic of the scaling figures: IMDNs for tags a bench key signed,
//! naming [`SYSTEMS`] legacy systems, framed as Ethernet/IPv4/UDP; and the legacy
//! message the pipeline bench converts. Shared by `iwf scaling` and the benches
//! (which include this file), so each uses only part of it.
#![allow(dead_code)]

use iwf::interwork::address::NumberingPlan;
use iwf::interwork::legacy_to_converged::{legacy_to_sip, LegacyMessage};
use iwf::interwork::{BindDirection, Concatenation, ConvergedSide, Encoding, Exchange, IdCanonicalisation};
use iwf::tag::{KeyRing, TagKey};
use iwf::wire::cpim::{CpimAddress, CpimRepr, DateTime, Dispositions};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{MessageWriter, Method};
use iwf::wire::smpp::{Address, Body, Pdu, RegisteredDelivery, SubmitSm};
use iwf::wire::sms::gsm7;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
    UdpPacket, UdpRepr,
};

/// Legacy systems the IMDNs' tags name.
pub const SYSTEMS: u16 = 8;
/// The synthetic traffic's clock (Unix seconds the tags are issued and verified at).
pub const NOW: u64 = 1_790_000_000;

/// The converged side the bench traffic's tags are issued for.
pub const CONVERGED: ConvergedSide<'static> = ConvergedSide {
    legacy_domain: "iwf.ims.lab",
    converged_domain: "ims.lab",
    local_sent_by: "198.18.2.2:5060",
    transport: "UDP",
};

/// The exchange of bench system `system` (1..=[`SYSTEMS`]).
pub fn exchange_of(system: u16) -> Option<Exchange<'static>> {
    (1..=SYSTEMS).contains(&system).then_some(Exchange {
        system,
        name: "bench",
        direction: BindDirection::LegacyBindsToIwf,
        default_encoding: Encoding::Gsm7,
        user_ack: false,
        concatenation: Concatenation::Udh8,
        ids: IdCanonicalisation::Exact,
        numbering: NumberingPlan { country_code: Some("44"), trunk_prefix: "0" },
    })
}

/// The bench's key ring (key 1, a fixed secret: the traffic is synthetic).
pub fn key_ring() -> Result<KeyRing, String> {
    let mut r = KeyRing::new(1).map_err(|e| e.to_string())?;
    r.insert(1, TagKey::from_bytes([7; 16])).map_err(|e| e.to_string())?;
    Ok(r)
}

/// `count` SIP MESSAGEs carrying delivery IMDNs, their tags spread over the systems, each
/// for a submit_sm converted with sequence number i + 1 (what a converged client sends
/// back for messages iwf converted).
pub fn imdn_datagrams(keys: &KeyRing, count: u32) -> Result<Vec<Vec<u8>>, String> {
    let submit = submit_sm_bytes()?;
    let pdu = Pdu::parse(&submit).map_err(|e| e.to_string())?;
    let Body::SubmitSm(sm) = pdu.body else { return Err("not a submit_sm".into()) };
    let (msg, _) = LegacyMessage::from_submit_sm(&sm).map_err(|e| e.to_string())?;
    let (mut scratch, mut out) = ([0u8; 2048], [0u8; 2048]);
    (0..count)
        .map(|i| {
            let ex = exchange_of(1 + (i % u32::from(SYSTEMS)) as u16).ok_or("system")?;
            let tag = legacy_to_sip(&msg, &ex, &CONVERGED, None, keys, i + 1, NOW, &mut scratch, &mut out)
                .map_err(|e| e.to_string())?
                .tag;
            imdn_message(tag.as_bytes()).ok_or_else(|| "cannot build the IMDN".to_string())
        })
        .collect()
}

/// A submit_sm as a legacy ESME sends it: 60 GSM-7 characters, receipt requested.
pub fn submit_sm_bytes() -> Result<Vec<u8>, String> {
    let mut septets = [0u8; 160];
    let n = gsm7::encode_unpacked("Meet you at the station at 10:30, bring the tickets please!", &mut septets)
        .map_err(|e| e.to_string())?;
    let sm = SubmitSm {
        source: Address::international(b"447000100001"),
        destination: Address::international(b"447000200001"),
        registered_delivery: RegisteredDelivery(0x01),
        short_message: septets.get(..n).unwrap_or(&[]),
        ..SubmitSm::default()
    };
    let mut buf = [0u8; 512];
    let len = Pdu::new(42, Body::SubmitSm(sm)).emit(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf.get(..len).unwrap_or(&[]).to_vec())
}

/// The converged client's SIP MESSAGE with the delivery IMDN for `tag`.
pub fn imdn_message(tag: &[u8]) -> Option<Vec<u8>> {
    let imdn = Imdn {
        message_id: XmlText::plain(tag),
        datetime: DateTime::from_unix(NOW as i64),
        recipient_uri: None,
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).ok()?;
    let from = "sip:+447000200001@ims.lab;user=phone";
    let to = "sip:+447000100001@iwf.ims.lab;user=phone";
    let cpim = CpimRepr {
        from: CpimAddress::new(b"", from.as_bytes()),
        to: CpimAddress::new(b"", to.as_bytes()),
        datetime: DateTime::from_unix(NOW as i64 + 30),
        message_id: b"Ba7kDf1x9q",
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: xml.get(..xn)?,
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).ok()?;
    let mut out = [0u8; 4096];
    let mut w = MessageWriter::request(&mut out, Method::Message, to).ok()?;
    w.header("Via", "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds").ok()?;
    w.header("Max-Forwards", "69").ok()?;
    w.header("From", &format!("<{from}>;tag=49583")).ok()?;
    w.header("To", &format!("<{to}>")).ok()?;
    w.header("Call-ID", "a84b4c76e66710@198.18.2.1").ok()?;
    w.header("CSeq", "1 MESSAGE").ok()?;
    w.header("Content-Type", "message/cpim").ok()?;
    let n = w.finish(body.get(..bn)?).ok()?;
    Some(out.get(..n)?.to_vec())
}

const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x02, 0x01]);
const DST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x02, 0x02]);
const SRC_IP: Ipv4Address = Ipv4Address::new(198, 18, 2, 1);
const DST_IP: Ipv4Address = Ipv4Address::new(198, 18, 2, 2);

/// `payload` in an Ethernet/IPv4/UDP frame (5060 → 5060) with its checksums.
pub fn udp_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let udp = UdpRepr { src_port: 5060, dst_port: 5060 };
    let ip = Ipv4Repr {
        src_addr: SRC_IP,
        dst_addr: DST_IP,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr { src_addr: SRC_MAC, dst_addr: DST_MAC, ethertype: EthernetProtocol::Ipv4 };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + 8 + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_checked(frame.payload_mut()).ok()?;
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(&mut datagram, &SRC_IP.into(), &DST_IP.into(), payload.len(), |b| b.copy_from_slice(payload), &caps);
    Some(buf)
}

/// The UDP payload of an Ethernet/IPv4/UDP frame whose checksums hold.
pub fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if !udp.verify_checksum(&src.into(), &dst.into()) {
        return None;
    }
    // Borrow from `frame` itself: the UDP payload's offset and length.
    let len = udp.payload().len();
    let offset = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len()) + 8;
    frame.get(offset..offset + len)
}
