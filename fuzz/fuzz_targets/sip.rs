//! Fuzz the SIP codec: parse in datagram and stream mode, parse every URI,
//! name-addr and Via found, and rebuild each parsed message with the writer
//! and parse it again: the second parse must succeed and agree.
#![no_main]

use iwf::wire::sip::{
    names_match, unfold_into, Header, Message, MessageWriter, NameAddr, Parser, StartLine, Status,
    Transport, Uri, Via,
};
use libfuzzer_sys::fuzz_target;

/// Header fields whose elements are name-addr / addr-spec.
const NAME_ADDR_FIELDS: [&str; 8] = [
    "From",
    "To",
    "Contact",
    "Route",
    "Record-Route",
    "Refer-To",
    "Reply-To",
    "P-Asserted-Identity",
];

fuzz_target!(|data: &[u8]| {
    for transport in [Transport::Datagram, Transport::Stream] {
        let mut headers = [Header::EMPTY; 64];
        let Ok(Status::Complete(used, msg)) = Parser::new(transport).parse(data, &mut headers)
        else {
            continue;
        };
        assert!(used <= data.len());
        exercise(&msg);
        rebuild_and_reparse(&msg);
    }
    // The raw input as a lone URI / name-addr / Via value.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(u) = Uri::parse(text) {
            assert_eq!(u.as_str(), text);
        }
        if let Ok(n) = NameAddr::parse(text) {
            assert_eq!(Uri::parse(n.uri.as_str()), Ok(n.uri));
        }
        let _ = Via::parse(text).map(|v| (v.branch(), v.received(), v.rport(), v.to_string()));
    }
});

fn exercise(msg: &Message<'_, '_>) {
    let _ = msg.validate();
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.max_forwards(),
        msg.expires(),
        msg.content_type(),
    );
    let _ = msg.to_string();
    if let Some(r) = msg.request_line() {
        if let Ok(u) = r.parse_uri() {
            // A parsed URI is a view of its text: reparsing gives the same view.
            assert_eq!(Uri::parse(u.as_str()), Ok(u));
        }
    }
    for v in msg.vias().flatten() {
        let _ = (
            v.branch(),
            v.rfc3261_branch(),
            v.received(),
            v.rport(),
            v.to_string(),
        );
    }
    for h in msg.headers {
        if NAME_ADDR_FIELDS.iter().any(|f| names_match(f, h.name)) {
            for item in h.items() {
                if let Ok(n) = NameAddr::parse(item) {
                    let _ = (n.tag(), n.display_name_into(&mut [0u8; 256]));
                    assert_eq!(Uri::parse(n.uri.as_str()), Ok(n.uri));
                }
            }
        }
    }
}

fn rebuild_and_reparse(msg: &Message<'_, '_>) {
    // Rebuilding adds at most ": " and CR per field and one Content-Length line.
    let mut out = vec![0u8; 4 * (msg.body.len() + 64) + 16 * msg.headers.len() + 4096];
    let extra: usize = msg
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum();
    out.resize(out.len() + extra, 0);
    let mut scratch = vec![0u8; msg.headers.iter().map(|h| h.value.len()).max().unwrap_or(0)];

    let mut w = match msg.start_line {
        StartLine::Request(r) => MessageWriter::request(&mut out, r.method, r.uri),
        StartLine::Response(s) => MessageWriter::response(&mut out, s.code, s.reason),
    }
    .expect("a parsed start line can be written");
    let mut kept = 0usize;
    for h in msg.headers {
        if names_match("Content-Length", h.name) {
            continue;
        }
        let v = unfold_into(h.value, &mut scratch).expect("unfolding never grows a value");
        w.header(h.name, v).expect("a parsed field can be written");
        kept += 1;
    }
    let n = w.finish(msg.body).expect("buffer sized for the message");

    let mut headers = [Header::EMPTY; 64];
    let Ok(Status::Complete(used, again)) = Parser::datagram()
        .with_max_message_len(usize::MAX)
        .parse(&out[..n], &mut headers)
    else {
        panic!(
            "rebuilt message does not parse: {:?}",
            String::from_utf8_lossy(&out[..n])
        );
    };
    assert_eq!(used, n);
    assert_eq!(again.body, msg.body);
    assert_eq!(again.headers.len(), kept + 1);
    match (msg.start_line, again.start_line) {
        (StartLine::Request(a), StartLine::Request(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(a.uri, b.uri);
        }
        (StartLine::Response(a), StartLine::Response(b)) => {
            assert_eq!(a.code, b.code);
            assert_eq!(a.reason, b.reason);
        }
        _ => panic!("start line kind changed"),
    }
    let originals = msg
        .headers
        .iter()
        .filter(|h| !names_match("Content-Length", h.name));
    for (orig, got) in originals.zip(again.headers) {
        assert_eq!(orig.name, got.name);
        let v = unfold_into(orig.value, &mut scratch).expect("fits");
        assert_eq!(v, got.value);
    }
}
