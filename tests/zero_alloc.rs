//! Proves that both receipt paths allocate nothing per message (the hot path allocates
//! nothing per packet):
//!
//! - submit_sm bytes → `Pdu::parse` → `LegacyMessage::from_submit_sm` → `legacy_to_sip`;
//! - IMDN SIP bytes → `imdn_to_receipts` → SMPP receipt PDUs;
//! - the whole engine (`flow::Flows`, as a worker drives it): 10 000 round trips of a
//!   legacy message (submit_sm → SIP MESSAGE → 200 → submit_sm_resp) and its IMDN
//!   (MESSAGE → deliver_sm on the SMSC's bind → deliver_sm_resp → 200).
//!
//! A counting global allocator counts allocations made by the measuring thread while
//! its flag is set (other test threads are not counted). Inputs are built beforehand
//! (that allocates, and is not measured); after a warm-up, a few hundred messages with
//! varying texts, codings, receipt requests, segment counts and notifications run
//! through both paths with the counter armed.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use iwf::interwork::address::NumberingPlan;
use iwf::interwork::legacy_to_converged::{
    imdn_to_receipts, legacy_to_sip, scratch_len, LegacyMessage, ReceiptOutcome, UserData, RECEIPT_PDU_MAX_LEN,
};
use iwf::interwork::{BindDirection, Concatenation, ConvergedSide, Encoding, Exchange, IdCanonicalisation};
use iwf::tag::{KeyRing, Tag, TagKey};
use iwf::wire::cpim::{CpimAddress, CpimRepr, DateTime, Dispositions};
use iwf::wire::imdn::{DeliveryStatus, DisplayStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{MessageWriter, Method};
use iwf::wire::smpp::{Address, Body, EsmClass, Pdu, RegisteredDelivery, SubmitSm};
use iwf::wire::sms::{gsm7, ucs2};

struct CountingAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: never touch a thread-local that is being torn down.
    let armed = ARMED.try_with(Cell::get).unwrap_or(false);
    if armed {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` with the counter armed; returns its result and the allocations it made.
fn counting<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, COUNT.with(Cell::get))
}

const NOW: u64 = 1_790_000_000;

const CONVERGED: ConvergedSide<'static> = ConvergedSide {
    legacy_domain: "iwf.ims.lab",
    converged_domain: "ims.lab",
    local_sent_by: "198.18.2.2:5060",
    transport: "UDP",
};

fn exchange(system: u16, direction: BindDirection) -> Exchange<'static> {
    Exchange {
        system,
        name: "lab",
        direction,
        default_encoding: Encoding::Gsm7,
        user_ack: true,
        concatenation: Concatenation::Udh8,
        ids: IdCanonicalisation::Exact,
        numbering: NumberingPlan { country_code: Some("44"), trunk_prefix: "0" },
    }
}

fn exchange_of(system: u16) -> Option<Exchange<'static>> {
    match system {
        1 => Some(exchange(1, BindDirection::LegacyBindsToIwf)),
        3 => Some(exchange(3, BindDirection::IwfBindsToLegacy)),
        _ => None,
    }
}

fn ring() -> KeyRing {
    let mut r = KeyRing::new(1).expect("key id");
    r.insert(1, TagKey::from_bytes([7; 16])).expect("key");
    r
}

/// submit_sm bytes: GSM-7 (with escapes), Latin-1, UCS-2 with emoji, UDH-prefixed.
fn submit_sms() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, text) in ["Hello €uro [x]", "Grüße", "Привет 😀", "plain text 123"].iter().enumerate() {
        let mut ud = vec![0u8; 400];
        let (dc, n) = match i {
            0 | 3 => (0, gsm7::encode_unpacked(text, &mut ud).expect("gsm7")),
            1 => (3, iwf::wire::sms::latin1::encode(text, &mut ud).expect("latin1")),
            _ => (8, ucs2::encode(text, &mut ud).expect("ucs2")),
        };
        ud.truncate(n);
        let (esm, user_data) = if i == 3 {
            let mut with_udh = vec![0x05, 0x00, 0x03, 0x2a, 0x01, 0x01];
            with_udh.extend_from_slice(&ud);
            (EsmClass(0x40), with_udh)
        } else {
            (EsmClass(0), ud)
        };
        for rd in [0x00u8, 0x01, 0x02, 0x03, 0x09] {
            let sm = SubmitSm {
                source: Address::international(b"447000100001"),
                destination: Address::new(2, 1, b"07000200001"),
                esm_class: esm,
                registered_delivery: RegisteredDelivery(rd),
                data_coding: dc,
                short_message: &user_data,
                ..SubmitSm::default()
            };
            let mut buf = vec![0u8; 512];
            let n = Pdu::new(9, Body::SubmitSm(sm)).emit(&mut buf).expect("emit");
            buf.truncate(n);
            v.push(buf);
        }
    }
    v
}

/// An IMDN for `tag` (CPIM From `from`, the converged user).
fn imdn(tag: &Tag, n: Notification, from: &str) -> Vec<u8> {
    let doc = Imdn {
        message_id: XmlText::plain(tag.as_bytes()),
        datetime: DateTime::from_unix(NOW as i64),
        recipient_uri: None,
        original_recipient_uri: None,
        subject: None,
        notification: n,
    };
    let mut xml = [0u8; 1024];
    let xn = doc.emit(&mut xml).expect("imdn");
    let to = "sip:+447000100001@iwf.ims.lab;user=phone";
    let cpim = CpimRepr {
        from: CpimAddress::new(b"", from.as_bytes()),
        to: CpimAddress::new(b"", to.as_bytes()),
        datetime: DateTime::from_unix(NOW as i64 + 5),
        message_id: b"imdn-1",
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: &xml[..xn],
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).expect("cpim");
    let mut out = vec![0u8; 4096];
    let mut w = MessageWriter::request(&mut out, Method::Message, to).expect("writer");
    w.header("Via", "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK1").expect("h");
    w.header("From", &format!("<{from}>;tag=1")).expect("h");
    w.header("To", &format!("<{to}>")).expect("h");
    w.header("Call-ID", "c1@198.18.2.1").expect("h");
    w.header("CSeq", "1 MESSAGE").expect("h");
    w.header("c", "message/cpim").expect("h");
    let n = w.finish(&body[..bn]).expect("finish");
    out.truncate(n);
    out
}

#[test]
fn receipt_paths_allocate_nothing() {
    let keys = ring();
    let submits = submit_sms();
    // Tags of single-part and 3-part messages from two systems (both bind directions).
    let parts: [&[u8]; 3] = [b"part one ", b"part two ", b"part three"];
    let mut tags = Vec::new();
    let mut scratch = vec![0u8; scratch_len(512)];
    let mut sip = vec![0u8; 4096];
    for (system, multi) in [(1u16, false), (1, true), (3, false), (3, true)] {
        let ex = exchange_of(system).expect("exchange");
        let msg = LegacyMessage {
            source: Address::international(b"447000100001"),
            destination: Address::international(b"447000200001"),
            data_coding: 0,
            registered_delivery: RegisteredDelivery(0x09),
            esm_class: EsmClass(0),
            user_data: if multi { UserData::Parts(&parts) } else { UserData::Single(b"hi") },
        };
        let r = legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, 5, NOW, &mut scratch, &mut sip).expect("convert");
        tags.push(r.tag);
    }
    let notifications = [
        Notification::Delivery(DeliveryStatus::Delivered),
        Notification::Delivery(DeliveryStatus::Failed),
        Notification::Display(DisplayStatus::Displayed),
    ];
    // The second sender form takes the general (non fast-path) URI reader.
    let senders = ["sip:+447000200001@ims.lab;user=phone", "tel:+44-7000-200001"];
    let mut imdns = Vec::new();
    for tag in &tags {
        for n in notifications {
            for from in senders {
                imdns.push(imdn(tag, n, from));
            }
        }
    }
    let mut receipts = vec![0u8; 3 * RECEIPT_PDU_MAX_LEN];

    let submit_path = |i: usize, scratch: &mut [u8], sip: &mut [u8]| -> usize {
        let raw = &submits[i % submits.len()];
        let Ok(pdu) = Pdu::parse(raw) else { return 0 };
        let Body::SubmitSm(sm) = pdu.body else {
            return 0;
        };
        let Ok((msg, _)) = LegacyMessage::from_submit_sm(&sm) else {
            return 0;
        };
        let ex = exchange_of(1 + 2 * (i % 2) as u16).expect("exchange");
        legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, i as u32, NOW, scratch, sip).map(|r| r.len).unwrap_or(0)
    };
    let imdn_path = |i: usize, out: &mut [u8]| -> Option<u8> {
        match imdn_to_receipts(&imdns[i % imdns.len()], &keys, NOW + 60, exchange_of, i as u32, out) {
            Ok(ReceiptOutcome::Receipts { count, .. }) => Some(count),
            _ => None,
        }
    };

    // Warm-up (lazy statics, first-use paths), not counted.
    for i in 0..50 {
        assert!(submit_path(i, &mut scratch, &mut sip) > 0);
        assert!(imdn_path(i, &mut receipts).is_some());
    }

    let ((sent, counts), allocations) = counting(|| {
        let mut sent = 0usize;
        let mut counts = [0usize; 4];
        for i in 0..400 {
            if submit_path(i, &mut scratch, &mut sip) > 0 {
                sent += 1;
            }
            if let Some(c) = imdn_path(i, &mut receipts) {
                counts[usize::from(c).min(3)] += 1;
            }
        }
        (sent, counts)
    });
    assert_eq!(allocations, 0, "{allocations} allocations on the receipt paths");
    // The loop really exercised the paths it claims to.
    assert_eq!(sent, 400);
    assert!(counts[1] > 0 && counts[3] > 0, "single and 3-segment receipts: {counts:?}");

    // The counter itself works: an allocation under the armed counter is seen.
    let (_, seen) = counting(|| std::hint::black_box(Vec::<u8>::with_capacity(16)));
    assert_eq!(seen, 1);
}

// ---------------------------------------------------------------------------------------
// The whole engine: round trips through `flow::Flows` as a worker drives it.

mod engine {
    use super::counting;
    use iwf::control::provision::Provision;
    use iwf::flow::{Flows, FlowsConfig, Shared, SipTxn, SmppOut};
    use iwf::ids::ConnRef;
    use iwf::session::sip::{Incoming, ServerConfig, ServerTransactions};
    use iwf::tag::TAG_LEN;
    use iwf::wire::sip::{Header, Parser, Status};
    use iwf::wire::smpp::{Address, Body, CommandStatus, Pdu, RegisteredDelivery, SubmitSm};
    use std::sync::Arc;

    const UNIX: u64 = 1_800_000_000;
    /// smsc-a (system 1 of config/lab.toml), bound to this worker on port 0.
    const SMSC: ConnRef = ConnRef::new(0, 5);
    const CORE: &str = "198.18.2.1:5060";
    /// Where the counter sits in the IMDN's branch and Call-ID (fixed width).
    const COUNTER: &str = "00000000";

    fn submit_sm(seq: u32) -> Vec<u8> {
        let sm = SubmitSm {
            source: Address::international(b"447000100001"),
            destination: Address::international(b"447900000001"),
            registered_delivery: RegisteredDelivery(1),
            short_message: b"hello from the legacy side",
            ..SubmitSm::default()
        };
        let pdu = Pdu::new(seq, Body::SubmitSm(sm));
        let mut out = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut out).unwrap();
        out
    }

    /// A delivery IMDN for a tag of `TAG_LEN` octets at the returned offset, with the
    /// counter's place in its branch and Call-ID at the other returned offsets.
    fn imdn_template() -> (Vec<u8>, usize, Vec<usize>) {
        let tag = "T".repeat(TAG_LEN);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n\
<message-id>{tag}</message-id>\r\n<datetime>2027-01-15T08:00:00Z</datetime>\r\n\
<delivery-notification><status><delivered/></status></delivery-notification>\r\n</imdn>\r\n"
        );
        let cpim = format!(
            "From: <sip:+447900000001@ims.lab;user=phone>\r\nTo: <sip:+447000100001@iwf.ims.lab;user=phone>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: d{COUNTER}\r\nDateTime: 2027-01-15T08:00:00Z\r\n\r\n\
Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        let sip = format!(
            "MESSAGE sip:+447000100001@iwf.ims.lab;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {CORE};branch=z9hG4bKd{COUNTER}\r\n\
Max-Forwards: 70\r\nFrom: <sip:+447900000001@ims.lab;user=phone>;tag=u1\r\nTo: <sip:+447000100001@iwf.ims.lab;user=phone>\r\n\
Call-ID: d{COUNTER}@ims.lab\r\nCSeq: 1 MESSAGE\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
            cpim.len()
        )
        .into_bytes();
        let at_tag = find(&sip, tag.as_bytes()).unwrap();
        let mut counters = Vec::new();
        let mut from = 0;
        while let Some(i) = find(&sip[from..], COUNTER.as_bytes()) {
            counters.push(from + i);
            from += i + COUNTER.len();
        }
        (sip, at_tag, counters)
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn write_counter(buf: &mut [u8], at: &[usize], n: u32) {
        let mut digits = [b'0'; 8];
        let mut v = n;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        for &i in at {
            buf[i..i + 8].copy_from_slice(&digits);
        }
    }

    /// One legacy message → SIP MESSAGE → 200 → submit_sm_resp, then its IMDN →
    /// deliver_sm receipt → deliver_sm_resp → 200 for the IMDN. Panics if any step
    /// does not happen.
    #[allow(clippy::too_many_arguments)]
    fn round_trip(
        f: &mut Flows,
        server: &mut ServerTransactions,
        now: u64,
        n: u32,
        submit: &[u8],
        imdn: &mut [u8],
        at_tag: usize,
        at_counter: &[usize],
    ) {
        let unix = UNIX + now / 1000;
        // Legacy → converged.
        let pdu = Pdu::parse(submit).unwrap();
        f.smpp_request(now, unix, SMSC, n, &pdu);
        let req = f.poll_request().expect("a SIP MESSAGE");
        let tag_at = find(&req.bytes, b"imdn.Message-ID: ").expect("tagged") + 17;
        imdn[at_tag..at_tag + TAG_LEN].copy_from_slice(&req.bytes[tag_at..tag_at + TAG_LEN]);
        f.sip_final(req.token, 200);
        // Sent: the SIP service gives the buffer back, as the worker's does.
        f.recycle(req.bytes);
        assert!(matches!(f.poll_smpp(0), Some((_, SmppOut::Respond { status: CommandStatus::ESME_ROK, .. }))));
        // Its IMDN → the receipt on the SMSC's bind.
        write_counter(imdn, at_counter, n);
        let mut headers = [Header::EMPTY; 32];
        let mut reply = [0u8; 1024];
        let id = match server.handle_request(now, CORE.parse().unwrap(), imdn, &mut headers, &mut reply) {
            Incoming::New { id, .. } => id,
            other => panic!("{other:?}"),
        };
        let txn = SipTxn::Udp { port: 1, id };
        let mut headers = [Header::EMPTY; 32];
        let Ok(Status::Complete(_, msg)) = Parser::datagram().parse(imdn, &mut headers) else { panic!() };
        f.sip_message(now, unix, txn, &msg, imdn);
        f.poll(now, unix);
        let Some((conn, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a deliver_sm") };
        f.smpp_sent(conn, n, send);
        f.smpp_response(unix, conn, n, CommandStatus::ESME_ROK, b"");
        let answer = f.poll_udp_answer(1).expect("the IMDN's answer");
        assert_eq!(answer.status, 200);
        let response = iwf::session::sip::Response { status: 200, reason: "OK", to_tag: None, headers: &[], body: b"" };
        server.respond(now, id, &response, &mut reply).unwrap();
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
    }

    #[test]
    fn engine_round_trips_allocate_nothing() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let config = FlowsConfig {
            core: 0,
            next_hop: CORE.parse().unwrap(),
            local_sent_by: "198.18.2.2:5060".into(),
            parts_aside: 64,
            reassembly: (1024, 1 << 20),
            max_sip_message: 1 << 20,
            mm4_clients: Vec::new(),
        };
        // With message records on: the workers' side of them (an event copied into the
        // ring) must not allocate either; the records thread's side is drained here.
        shared.records_on.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut f = Flows::new(config, Arc::clone(&shared));
        f.bound(SMSC, 1, true);
        let mut server = ServerTransactions::new(ServerConfig { capacity: 8192, ..ServerConfig::default() });
        let submits: Vec<Vec<u8>> = (0..=20_000).map(submit_sm).collect();
        let (mut imdn, at_tag, at_counter) = imdn_template();
        // Warm-up: every table reaches its working size.
        let mut now = 0u64;
        let mut records = 0;
        for n in 1..=10_000u32 {
            now += 5;
            round_trip(&mut f, &mut server, now, n, &submits[n as usize], &mut imdn, at_tag, &at_counter);
            records += shared.drain_events(|_| {});
        }
        let ((), allocations) = counting(|| {
            for n in 10_001..=20_000u32 {
                now += 5;
                round_trip(&mut f, &mut server, now, n, &submits[n as usize], &mut imdn, at_tag, &at_counter);
                records += shared.drain_events(|_| {});
            }
        });
        assert_eq!(allocations, 0, "allocations in 10 000 round trips through the engine");
        // Each round trip's message, answer, IMDN and receipt were recorded.
        assert!(records >= 4 * 20_000, "{records} events");
        assert_eq!(shared.stats.records_dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
