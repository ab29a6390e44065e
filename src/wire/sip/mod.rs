//! SIP codec (RFC 3261) for a SIP MESSAGE (RFC 3428) interworking function.
//!
//! Sans-IO and zero-copy: [`Parser::parse`] reads one message from a byte
//! slice in a single pass, httparse style (headers into a caller-supplied
//! `&mut [Header]`, `Complete(consumed, msg)` or `Partial`), with datagram
//! (§18.3: body = rest of datagram, cut to Content-Length) or stream framing
//! (Content-Length mandatory). Typed accessors ([`Message::top_via`],
//! [`Message::from`], [`Message::cseq`], ...) parse header values on demand into
//! borrowed views; URIs ([`Uri`]: `sip:`, `sips:`, `tel:`, others opaque) and
//! name-addrs ([`NameAddr`]) likewise. [`MessageWriter`] writes requests and
//! responses into a caller buffer. Nothing here allocates or panics on input.
//!
//! ```
//! use iwf::wire::sip::{parse_datagram, Header, MessageWriter};
//! let req = b"MESSAGE sip:+447000200001@ims.lab SIP/2.0\r\n\
//! v: SIP/2.0/UDP 198.18.2.1;branch=z9hG4bK77\r\nf: <sip:a@iwf.ims.lab>;tag=1\r\n\
//! t: <sip:+447000200001@ims.lab>\r\ni: c1\r\nCSeq: 1 MESSAGE\r\nl: 2\r\n\r\nhi";
//! let mut headers = [Header::EMPTY; 32];
//! let msg = parse_datagram(req, &mut headers)?;
//! assert_eq!(msg.top_via()?.branch(), Some("z9hG4bK77"));
//! let mut out = [0u8; 512];
//! let n = MessageWriter::response_to(&mut out, &msg, 200, "OK", Some("t1"))?.finish(b"")?;
//! assert!(out[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
//! # Ok::<(), iwf::wire::sip::Error>(())
//! ```

use std::fmt;

mod build;
mod fields;
mod header;
mod message;
mod method;
mod scan;
mod uri;

pub use build::MessageWriter;
pub use fields::{CSeq, MediaType, NameAddr, Via, BRANCH_MAGIC_COOKIE};
pub use header::{
    compact_form, full_name, names_match, unfold_into, unquote_into, Header, ListItems, Param, ParamIter, Params,
    COMPACT_FORMS,
};
pub use message::{
    parse_datagram, parse_stream, CoreFields, HeaderValues, ListValues, Message, NameAddrs, Parser, RequestLine,
    StartLine, Status, StatusLine, Transport, Vias, DEFAULT_MAX_MESSAGE_LEN,
};
pub use method::Method;
pub use uri::{
    escaped_eq, escaped_eq_ignore_case, unescape_into, unescaped, Host, OtherUri, SipUri, TelUri, Unescape, Uri,
};

/// Everything that can go wrong parsing or writing SIP; one variant per cause,
/// so each maps to a drop counter or a 400 reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The datagram ends before the end of the header section.
    Truncated,
    /// The message exceeds the parser's `max_message_len`.
    TooLong,
    /// Start line malformed (separators, trailing white space, bare CR).
    BadStartLine,
    /// Method is not a token.
    BadMethod,
    /// Request-URI has characters a URI cannot have (LWS, `<>`), or (in
    /// [`Message::validate`]) does not parse or carries `?headers`.
    BadRequestUri,
    /// SIP-Version is not `SIP/2.0`.
    BadVersion,
    /// Status code is not three digits in 100..=699.
    BadStatusCode,
    /// Reason phrase contains CR or LF (writer).
    BadReason,
    /// Header field name is not a token or lacks its colon.
    BadHeaderName,
    /// Header field value contains a bare CR (or CR/LF, when writing).
    BadHeaderValue,
    /// Start line or header field is not UTF-8.
    InvalidUtf8,
    /// More header fields than the caller's array holds.
    TooManyHeaders,
    /// Stream transport without Content-Length (RFC 3261 §18.3).
    MissingContentLength,
    /// Content-Length is not a decimal number (e.g. `-999`).
    BadContentLength,
    /// Content-Length appears twice with different values.
    MultipleContentLength,
    /// Content-Length is larger than the datagram's remaining bytes.
    ContentLengthMismatch,
    /// A required header field is absent.
    MissingHeader(&'static str),
    /// A single-valued header field appears more than once.
    DuplicateHeader(&'static str),
    /// URI does not parse.
    BadUri,
    /// URI host is not a hostname, IPv4 address or IPv6 reference.
    BadHost,
    /// Port is not a number in 0..=65535.
    BadPort,
    /// `tel:` URI malformed (RFC 3966).
    BadTelUri,
    /// name-addr / addr-spec malformed (LWS inside `<>`, non-token display
    /// name, `?` in a bare addr-spec, missing `>`).
    BadNameAddr,
    /// Unterminated quoted string.
    BadQuotedString,
    /// Header parameter malformed (`;;`, empty value, junk after the value).
    BadParam,
    /// Via malformed.
    BadVia,
    /// CSeq malformed or above 2^32-1.
    BadCSeq,
    /// Max-Forwards not a number in 0..=255.
    BadMaxForwards,
    /// Expires not a number in 0..=2^32-1.
    BadExpires,
    /// Call-ID empty or with white space.
    BadCallId,
    /// Content-Type malformed.
    BadContentType,
    /// CSeq method differs from the request method (RFC 4475 mismatch01).
    CSeqMethodMismatch,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::Truncated => "message truncated before the end of its header section",
            Error::TooLong => "message longer than the configured maximum",
            Error::BadStartLine => "malformed start line",
            Error::BadMethod => "method is not a token",
            Error::BadRequestUri => "malformed Request-URI",
            Error::BadVersion => "SIP version is not SIP/2.0",
            Error::BadStatusCode => "status code is not 100..699",
            Error::BadReason => "reason phrase contains a line break",
            Error::BadHeaderName => "malformed header field name",
            Error::BadHeaderValue => "header field value contains a bare CR or line break",
            Error::InvalidUtf8 => "text is not UTF-8",
            Error::TooManyHeaders => "too many header fields",
            Error::MissingContentLength => "Content-Length missing on a stream transport",
            Error::BadContentLength => "malformed Content-Length",
            Error::MultipleContentLength => "conflicting Content-Length header fields",
            Error::ContentLengthMismatch => "Content-Length larger than the datagram",
            Error::MissingHeader(h) => return write!(f, "missing {h} header field"),
            Error::DuplicateHeader(h) => return write!(f, "{h} header field appears more than once"),
            Error::BadUri => "malformed URI",
            Error::BadHost => "malformed host",
            Error::BadPort => "malformed port",
            Error::BadTelUri => "malformed tel URI",
            Error::BadNameAddr => "malformed name-addr",
            Error::BadQuotedString => "unterminated quoted string",
            Error::BadParam => "malformed header parameter",
            Error::BadVia => "malformed Via",
            Error::BadCSeq => "malformed CSeq",
            Error::BadMaxForwards => "Max-Forwards is not 0..255",
            Error::BadExpires => "Expires is not 0..2^32-1",
            Error::BadCallId => "malformed Call-ID",
            Error::BadContentType => "malformed Content-Type",
            Error::CSeqMethodMismatch => "CSeq method differs from the request method",
            Error::BufferTooSmall => "output buffer too small",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    //! RFC 4475 torture messages (tests/data/sip/*.dat, rebuilt byte for byte
    //! from the RFC's text), the iwf fixtures (*.sip), robustness sweeps and
    //! builder ↔ parser round trips.
    use super::*;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sip/", $name))
        };
    }

    const FIXTURES: [(&str, &[u8]); 42] = [
        ("wsinv", fixture!("wsinv.dat")),
        ("intmeth", fixture!("intmeth.dat")),
        ("esc01", fixture!("esc01.dat")),
        ("escnull", fixture!("escnull.dat")),
        ("esc02", fixture!("esc02.dat")),
        ("lwsdisp", fixture!("lwsdisp.dat")),
        ("longreq", fixture!("longreq.dat")),
        ("dblreq", fixture!("dblreq.dat")),
        ("semiuri", fixture!("semiuri.dat")),
        ("transports", fixture!("transports.dat")),
        ("unreason", fixture!("unreason.dat")),
        ("noreason", fixture!("noreason.dat")),
        ("badinv01", fixture!("badinv01.dat")),
        ("clerr", fixture!("clerr.dat")),
        ("ncl", fixture!("ncl.dat")),
        ("scalar02", fixture!("scalar02.dat")),
        ("scalarlg", fixture!("scalarlg.dat")),
        ("quotbal", fixture!("quotbal.dat")),
        ("ltgtruri", fixture!("ltgtruri.dat")),
        ("lwsruri", fixture!("lwsruri.dat")),
        ("lwsstart", fixture!("lwsstart.dat")),
        ("trws", fixture!("trws.dat")),
        ("escruri", fixture!("escruri.dat")),
        ("baddate", fixture!("baddate.dat")),
        ("regbadct", fixture!("regbadct.dat")),
        ("badaspec", fixture!("badaspec.dat")),
        ("baddn", fixture!("baddn.dat")),
        ("badvers", fixture!("badvers.dat")),
        ("mismatch01", fixture!("mismatch01.dat")),
        ("mismatch02", fixture!("mismatch02.dat")),
        ("bigcode", fixture!("bigcode.dat")),
        ("badbranch", fixture!("badbranch.dat")),
        ("insuf", fixture!("insuf.dat")),
        ("unkscm", fixture!("unkscm.dat")),
        ("novelsc", fixture!("novelsc.dat")),
        ("unksm2", fixture!("unksm2.dat")),
        ("mcl01", fixture!("mcl01.dat")),
        ("multi01", fixture!("multi01.dat")),
        ("zeromf", fixture!("zeromf.dat")),
        ("message_cpim", fixture!("message_cpim.sip")),
        ("ok200", fixture!("ok200.sip")),
        ("options", fixture!("options.sip")),
    ];

    fn bytes(name: &str) -> &'static [u8] {
        FIXTURES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).expect("fixture")
    }

    /// Parse fixture `name` as one UDP datagram into `h`.
    fn dgram<'h>(name: &str, h: &'h mut [Header<'static>]) -> Result<Message<'static, 'h>, Error> {
        parse_datagram(bytes(name), h)
    }

    fn hdrs() -> [Header<'static>; 64] {
        [Header::EMPTY; 64]
    }

    /// Outcome of the whole receipt-side check: framing, then `validate`.
    fn verdict(name: &str) -> Result<(), Error> {
        let mut h = hdrs();
        dgram(name, &mut h)?.validate().map(|_| ())
    }

    #[test]
    fn torture_verdicts() {
        // RFC 4475 §3.1.1 (valid) and §3.1.2 / §3.3 (invalid or semantically odd).
        let expected: [(&str, Result<(), Error>); 39] = [
            ("wsinv", Ok(())),
            ("intmeth", Ok(())),
            ("esc01", Ok(())),
            ("escnull", Ok(())),
            ("esc02", Ok(())),
            ("lwsdisp", Ok(())),
            ("longreq", Ok(())),
            ("dblreq", Ok(())),
            ("semiuri", Ok(())),
            ("transports", Ok(())),
            ("unreason", Ok(())),
            ("noreason", Ok(())),
            ("badinv01", Err(Error::BadParam)),
            ("clerr", Err(Error::ContentLengthMismatch)),
            ("ncl", Err(Error::BadContentLength)),
            ("scalar02", Err(Error::BadCSeq)),
            ("scalarlg", Err(Error::BadCSeq)),
            ("quotbal", Err(Error::BadQuotedString)),
            ("ltgtruri", Err(Error::BadRequestUri)),
            ("lwsruri", Err(Error::BadRequestUri)),
            ("lwsstart", Err(Error::BadStartLine)),
            ("trws", Err(Error::BadStartLine)),
            ("escruri", Err(Error::BadRequestUri)),
            ("baddate", Ok(())),
            ("regbadct", Err(Error::BadNameAddr)),
            ("badaspec", Err(Error::BadNameAddr)),
            ("baddn", Err(Error::BadNameAddr)),
            ("badvers", Err(Error::BadVersion)),
            ("mismatch01", Err(Error::CSeqMethodMismatch)),
            ("mismatch02", Err(Error::CSeqMethodMismatch)),
            ("bigcode", Err(Error::BadStatusCode)),
            ("badbranch", Ok(())),
            ("insuf", Err(Error::MissingHeader("To"))),
            ("unkscm", Ok(())),
            ("novelsc", Ok(())),
            ("unksm2", Ok(())),
            ("mcl01", Err(Error::MultipleContentLength)),
            ("multi01", Err(Error::DuplicateHeader("CSeq"))),
            ("zeromf", Ok(())),
        ];
        for (name, want) in expected {
            assert_eq!(verdict(name), want, "{name}");
        }
    }

    #[test]
    fn wsinv_short_tortuous_invite() {
        let mut h = hdrs();
        let m = dgram("wsinv", &mut h).unwrap();
        assert_eq!(m.headers.len(), 14);
        assert_eq!(m.method(), Some(Method::Invite));
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        assert!(ruri.as_sip().unwrap().params.has("unknownparam"));
        let to = m.to().unwrap();
        assert_eq!(to.tag(), Some("1918181833n"));
        assert_eq!(to.uri.as_sip().unwrap().user, Some("vivekg"));
        let from = m.from().unwrap();
        assert_eq!(from.tag(), Some("98asjd8"));
        let mut buf = [0u8; 64];
        assert_eq!(from.display_name_into(&mut buf).unwrap(), "J Rosenberg \\\"");
        assert_eq!(m.max_forwards(), Ok(Some(68)));
        assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
        assert_eq!(m.content_length(), Some(150));
        assert_eq!(m.body.len(), 150);
        assert_eq!(m.cseq().unwrap(), CSeq { number: 9, method: Method::Invite });
        let vias: Vec<(&str, String, Option<&str>)> =
            m.vias().map(|v| v.unwrap()).map(|v| (v.transport, v.host.to_string(), v.branch())).collect();
        assert_eq!(
            vias,
            [
                ("UDP", "192.0.2.2".to_string(), Some("390skdjuw")),
                ("TCP", "spindle.example.com".to_string(), Some("z9hG4bK9ikj8")),
                ("UDP", "192.168.255.111".to_string(), Some("z9hG4bK30239")),
            ]
        );
        assert_eq!(m.header("Subject"), Some(""));
        assert_eq!(m.values("s").count(), 0);
        let nf = m.headers.iter().find(|h| h.is("newfangledheader")).unwrap();
        assert!(nf.is_folded());
        assert_eq!(unfold_into(nf.value, &mut [0u8; 64]).unwrap(), "newfangled value continued newfangled value");
        assert_eq!(m.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
        let routes: Vec<NameAddr> = m.routes().map(|r| r.unwrap()).collect();
        assert_eq!(routes.len(), 1);
        let r = routes[0].uri.as_sip().unwrap();
        assert!(r.lr());
        assert_eq!(r.params.value("unknownwith"), Some("value"));
        assert!(r.params.has("unknown-no-value"));
        let c: Vec<NameAddr> = m.contacts().map(|c| c.unwrap()).collect();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].display_name, Some("\"Quoted string \\\"\\\"\""));
        assert_eq!(c[0].params.value("newparam"), Some("newvalue"));
        assert!(c[0].params.has("secondparam"));
        assert_eq!(c[0].params.value("q"), Some("0.33"));
        assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
    }

    #[test]
    fn intmeth_wide_range_of_valid_characters() {
        let mut h = hdrs();
        let m = dgram("intmeth", &mut h).unwrap();
        let method = "!interesting-Method0123456789_*+`.%indeed'~";
        assert_eq!(m.method(), Some(Method::Other(method)));
        assert_eq!(m.cseq().unwrap().method.as_str(), method);
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        let s = ruri.as_sip().unwrap();
        assert_eq!(s.user, Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(s.password, Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
        let mut buf = [0u8; 64];
        assert_eq!(m.to().unwrap().display_name_into(&mut buf).unwrap(), "BEL:\x07 NUL:\x00 DEL:\x7f");
        let from = m.from().unwrap();
        assert_eq!(from.display_name, Some("token1~` token2'+_ token3*%!.-"));
        assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
        assert_eq!(from.params.value("fromParam''~+*_!.-%"), Some("\"работающий\""));
        assert_eq!(m.call_id(), Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"));
        assert_eq!(m.max_forwards(), Ok(Some(255)));
        assert_eq!(m.header("extensionHeader-!.%*+_`'~"), Some("\u{feff}大停電"));
    }

    #[test]
    fn escapes_esc01_escnull_esc02() {
        let mut h = hdrs();
        let m = dgram("esc01", &mut h).unwrap();
        let mut buf = [0u8; 64];
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        assert_eq!(ruri.as_sip().unwrap().host, Host::Domain("example.net"));
        assert_eq!(unescape_into(ruri.as_sip().unwrap().user.unwrap(), &mut buf).unwrap(), b"sips:user@example.com");
        assert!(escaped_eq(m.to().unwrap().uri.as_sip().unwrap().user.unwrap(), "user"));
        let from = m.from().unwrap();
        assert_eq!(unescape_into(from.uri.as_sip().unwrap().user.unwrap(), &mut buf).unwrap(), b"I have spaces");
        assert_eq!(m.call_id(), Ok("esc01.239409asdfakjkn23onasd0-3234"));
        assert!(m.content_type().unwrap().unwrap().is_essence("application/sdp"));
        let c = m.contacts().next().unwrap().unwrap();
        assert!(escaped_eq(c.uri.as_sip().unwrap().user.unwrap(), "caller"));

        let mut h = hdrs();
        let m = dgram("escnull", &mut h).unwrap();
        let users: Vec<&str> = m.contacts().map(|c| c.unwrap().uri.as_sip().unwrap().user.unwrap()).collect();
        assert_eq!(users, ["%00", "%00%00"]);
        assert_eq!(unescape_into(users[1], &mut buf).unwrap(), b"\0\0");
        assert_eq!(m.content_length(), Some(0));

        let mut h = hdrs();
        let m = dgram("esc02", &mut h).unwrap();
        assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
        assert_ne!(m.method(), Some(Method::Register));
        assert_eq!(m.contacts().count(), 2, "C%6Fntact is an unknown header");
        assert_eq!(m.header("C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
        assert_eq!(m.to().unwrap().display_name, Some("\"%Z%45\""));
    }

    #[test]
    fn lwsdisp_longreq_semiuri_transports() {
        let mut h = hdrs();
        let m = dgram("lwsdisp", &mut h).unwrap();
        assert_eq!(m.from().unwrap().display_name, Some("caller"));

        let mut small = [Header::EMPTY; 32];
        assert_eq!(dgram("longreq", &mut small).unwrap_err(), Error::TooManyHeaders);
        let mut h = hdrs();
        let m = dgram("longreq", &mut h).unwrap();
        assert_eq!(m.headers.len(), 43);
        assert_eq!(m.vias().count(), 34);
        assert_eq!(m.top_via().unwrap().host, Host::Domain("sip33.example.com"));
        let last = m.vias().last().unwrap().unwrap();
        assert_eq!(last.received(), Some("192.0.2.5".parse().unwrap()));
        assert_eq!(last.branch().map(str::len), Some(4 + 4 * 50 + 11));
        assert_eq!(m.to().unwrap().uri.as_sip().unwrap().port, Some(6000));
        assert_eq!(m.from().unwrap().tag().map(str::len), Some(2 + 150 + 3));
        assert_eq!(m.body.len(), 150);

        let mut h = hdrs();
        let m = dgram("semiuri", &mut h).unwrap();
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        assert_eq!(ruri.as_sip().unwrap().user, Some("user;par=u%40example.net"));
        assert_eq!(ruri.as_sip().unwrap().host, Host::Domain("example.com"));
        let accept: Vec<&str> = m.accept().collect();
        assert_eq!(accept.len(), 6);
        assert_eq!(accept[5], "message/sipfrag");

        let mut h = hdrs();
        let m = dgram("transports", &mut h).unwrap();
        let t: Vec<&str> = m.vias().map(|v| v.unwrap().transport).collect();
        assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    }

    #[test]
    fn dblreq_extra_octets_in_datagram() {
        let b = bytes("dblreq");
        let mut h = hdrs();
        let Status::Complete(n, m) = Parser::datagram().parse(b, &mut h).unwrap() else { panic!() };
        assert_eq!(m.method(), Some(Method::Register));
        assert!(m.body.is_empty());
        assert!(b[n..].starts_with(b"\r\nINVITE"));
        // On a stream the next message is the INVITE after a keep-alive CRLF.
        let mut h2 = hdrs();
        let Status::Complete(n2, second) = parse_stream(&b[n..], &mut h2).unwrap() else { panic!() };
        assert!(b[n + n2..].len() < 8, "the INVITE's Content-Length frames it");
        assert_eq!(second.method(), Some(Method::Invite));
        assert_eq!(second.body.len(), 150);
    }

    #[test]
    fn responses_unreason_noreason_bigcode_scalarlg() {
        let mut h = hdrs();
        let m = dgram("unreason", &mut h).unwrap();
        let s = m.status_line().unwrap();
        assert_eq!(s.code, 200);
        assert_eq!(s.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
        assert_eq!(m.body.len(), 154);
        let mut h = hdrs();
        let m = dgram("noreason", &mut h).unwrap();
        assert_eq!(m.status_line().unwrap().reason, "");
        assert_eq!(m.status_code(), Some(100));
        let mut h = hdrs();
        let m = dgram("scalarlg", &mut h).unwrap();
        assert_eq!(m.status_code(), Some(503));
        assert_eq!(m.cseq(), Err(Error::BadCSeq));
        assert_eq!(m.header("Retry-After"), Some("949302838503028349304023988"));
        assert_eq!(m.top_via().unwrap().received(), Some("192.0.2.129".parse().unwrap()));
        assert_eq!(dgram("bigcode", &mut h).unwrap_err(), Error::BadStatusCode);
    }

    #[test]
    fn invalid_messages_fail_specifically() {
        let mut h = hdrs();
        let m = dgram("badinv01", &mut h).unwrap();
        assert_eq!(m.top_via(), Err(Error::BadParam));
        assert_eq!(m.contacts().next(), Some(Err(Error::BadParam)));

        let mut h = hdrs();
        assert_eq!(parse_stream(bytes("clerr"), &mut h), Ok(Status::Partial));
        assert_eq!(parse_stream(bytes("ncl"), &mut h), Err(Error::BadContentLength));

        let mut h = hdrs();
        let m = dgram("scalar02", &mut h).unwrap();
        assert_eq!(m.cseq(), Err(Error::BadCSeq));
        assert_eq!(m.max_forwards(), Err(Error::BadMaxForwards));
        assert_eq!(m.expires(), Err(Error::BadExpires));
        assert_eq!(m.contacts().next().unwrap().unwrap().params.value("expires"), Some("280297596632815"));

        let mut h = hdrs();
        let m = dgram("quotbal", &mut h).unwrap();
        assert_eq!(m.to(), Err(Error::BadQuotedString));
        assert!(m.from().is_ok());

        let mut h = hdrs();
        let m = dgram("escruri", &mut h).unwrap();
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        assert_eq!(ruri.as_sip().unwrap().headers, Some("Route=%3Csip:example.com%3E"));

        let mut h = hdrs();
        let m = dgram("baddate", &mut h).unwrap();
        assert_eq!(m.header("Date"), Some("Fri, 01 Jan 2010 16:00:00 EST"));

        let mut h = hdrs();
        let m = dgram("regbadct", &mut h).unwrap();
        assert_eq!(m.contacts().next(), Some(Err(Error::BadNameAddr)));

        let mut h = hdrs();
        let m = dgram("badaspec", &mut h).unwrap();
        assert_eq!(m.from().unwrap().display_name, Some("\"Bell, Alexander\""));
        assert_eq!(m.to(), Err(Error::BadNameAddr));

        let mut h = hdrs();
        let m = dgram("baddn", &mut h).unwrap();
        assert_eq!(m.from(), Err(Error::BadNameAddr));

        let mut h = hdrs();
        let m = dgram("mismatch02", &mut h).unwrap();
        assert_eq!(m.method(), Some(Method::Other("NEWMETHOD")));
        assert_eq!(m.body.len(), 138);

        let mut h = hdrs();
        let m = dgram("badbranch", &mut h).unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(BRANCH_MAGIC_COOKIE));
        assert_eq!(m.top_via().unwrap().rfc3261_branch(), None);

        let mut h = hdrs();
        let m = dgram("unksm2", &mut h).unwrap();
        assert_eq!(m.to().unwrap().uri.scheme(), "isbn");
        assert_eq!(m.from().unwrap().uri.scheme(), "http");
        assert_eq!(m.contacts().next().unwrap().unwrap().uri.as_str(), "name:John_Smith");

        let mut h = hdrs();
        let m = dgram("novelsc", &mut h).unwrap();
        assert!(matches!(m.request_line().unwrap().parse_uri(), Ok(Uri::Other(_))));

        let mut h = hdrs();
        let m = dgram("zeromf", &mut h).unwrap();
        assert_eq!(m.max_forwards(), Ok(Some(0)));
    }

    #[test]
    fn iwf_message_with_cpim_body() {
        let mut h = hdrs();
        let m = dgram("message_cpim", &mut h).unwrap();
        let core = m.validate().unwrap();
        assert_eq!(core.call_id, "a84b4c76e66710@198.18.2.1");
        assert_eq!(core.cseq, CSeq { number: 1, method: Method::Message });
        assert_eq!(core.from.tag(), Some("49583"));
        assert!(core.to.uri.as_tel().is_some());
        assert_eq!(core.top_via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(core.max_forwards, Some(69));
        assert!(core.content_type.unwrap().is_essence("message/cpim"));
        assert_eq!(core.request_uri.unwrap().scheme(), "sip");
        assert_eq!(m.method(), Some(Method::Message));
        let ruri = m.request_line().unwrap().parse_uri().unwrap();
        assert_eq!(ruri.as_sip().unwrap().phone_number(), Some("+447000200001"));
        let ct = m.content_type().unwrap().unwrap();
        assert!(ct.is_essence("message/cpim"));
        assert!(m.body.starts_with(b"From: <sip:+447000100001@iwf.ims.lab>\r\n"));
        assert!(m.body.ends_with(b"\r\n\r\nHello world!"));
        assert_eq!(m.content_length(), Some(m.body.len()));
        let vias: Vec<Via> = m.vias().map(|v| v.unwrap()).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].rport(), Some(None));
        assert_eq!(vias[1].host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(vias[1].port, Some(5061));
        assert_eq!(vias[1].received(), Some("192.0.2.7".parse().unwrap()));
        let to = m.to().unwrap();
        let tel = to.uri.as_tel().unwrap();
        assert_eq!(tel.digits_into(&mut [0u8; 16]).unwrap(), "+447000200001");
        let mut dn = [0u8; 32];
        assert_eq!(m.from().unwrap().display_name_into(&mut dn).unwrap(), "Legacy User");
        let routes: Vec<SipUri> = m.routes().map(|r| *r.unwrap().uri.as_sip().unwrap()).collect();
        assert_eq!(routes.len(), 2);
        assert!(routes.iter().all(SipUri::lr));
        assert_eq!(routes[1].transport(), Some("tcp"));
        assert_eq!(m.max_forwards(), Ok(Some(69)));
        assert_eq!(
            m.to_string(),
            format!(
                "Request: MESSAGE sip:+447000200001@ims.lab;user=phone (CSeq 1 MESSAGE, 10 headers, {}-byte body)",
                m.body.len()
            )
        );

        // The 200 OK iwf sends back, parsed again.
        let mut out = [0u8; 1024];
        let n = MessageWriter::response_to(&mut out, &m, 200, "OK", Some("iwf1")).unwrap().finish(b"").unwrap();
        let mut h2 = hdrs();
        let r = parse_datagram(&out[..n], &mut h2).unwrap();
        assert!(r.validate().is_ok());
        assert_eq!(r.status_code(), Some(200));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.to().unwrap().tag(), Some("iwf1"));
        assert_eq!(r.from().unwrap().tag(), Some("49583"));
        assert_eq!(r.call_id(), m.call_id());
        assert_eq!(r.cseq(), m.cseq());
        assert_eq!(r.content_length(), Some(0));
        // And a 404 with a reason body-less, through stream framing.
        let n = MessageWriter::response_to(&mut out, &m, 404, "Not Found", Some("iwf1")).unwrap().finish(b"").unwrap();
        let mut h3 = hdrs();
        assert!(
            matches!(parse_stream(&out[..n], &mut h3), Ok(Status::Complete(k, r)) if k == n && r.status_code() == Some(404))
        );
    }

    #[test]
    fn iwf_compact_200_and_options() {
        let mut h = hdrs();
        let m = dgram("ok200", &mut h).unwrap();
        assert!(m.validate().is_ok());
        let v = m.top_via().unwrap();
        assert_eq!(v.received(), Some("198.18.2.9".parse().unwrap()));
        assert_eq!(v.rport(), Some(Some(5062)));
        assert_eq!(m.from().unwrap().tag(), Some("a73kszlfl"));
        assert_eq!(m.to().unwrap().tag(), Some("8321234356"));
        assert_eq!(m.call_id(), Ok("1j9FpLxk3uxtm8tn@198.18.2.2"));
        assert_eq!(m.cseq().unwrap(), CSeq { number: 4711, method: Method::Message });
        assert_eq!(m.header("Content-Length"), Some("0"));
        assert_eq!(m.headers("From").count(), 1);

        let mut h = hdrs();
        let m = dgram("options", &mut h).unwrap();
        assert!(m.validate().is_ok());
        assert_eq!(m.accept().collect::<Vec<_>>(), ["application/sdp", "message/cpim"]);
        let c = m.contacts().next().unwrap().unwrap();
        assert_eq!(c.uri.as_sip().unwrap().transport(), Some("udp"));
        assert_eq!(c.uri.as_sip().unwrap().port, Some(5060));
        assert_eq!(m.from().unwrap().display_name, Some("Alice"));
    }

    /// Exercise every accessor; used by the robustness sweeps.
    fn touch_everything(m: &Message<'_, '_>) {
        let _ = m.validate();
        let _ = (m.call_id(), m.cseq(), m.from(), m.to(), m.top_via());
        let _ = (m.max_forwards(), m.expires(), m.content_type(), m.to_string());
        for v in m.vias().flatten() {
            let _ = (v.branch(), v.received(), v.rport(), v.rfc3261_branch(), v.to_string());
        }
        for n in m.contacts().chain(m.routes()).chain(m.record_routes()).flatten() {
            let _ = (n.tag(), n.display_name_into(&mut [0u8; 32]), n.uri.to_string());
        }
        if let Some(r) = m.request_line() {
            let _ = r.parse_uri();
        }
        for hd in m.headers {
            let _ = unfold_into(hd.value, &mut [0u8; 128]);
            let _ = hd.items().count();
        }
    }

    #[test]
    fn no_prefix_of_any_fixture_panics() {
        for (name, b) in FIXTURES {
            for cut in 0..=b.len() {
                let mut h = hdrs();
                if let Ok(m) = parse_datagram(&b[..cut], &mut h) {
                    touch_everything(&m);
                }
                let mut h = hdrs();
                if let Ok(Status::Complete(n, m)) = parse_stream(&b[..cut], &mut h) {
                    assert!(n <= cut, "{name}");
                    touch_everything(&m);
                }
            }
        }
    }

    #[test]
    fn error_display_is_one_line() {
        for e in [Error::Truncated, Error::MissingHeader("To"), Error::DuplicateHeader("CSeq"), Error::BufferTooSmall] {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
        assert_eq!(Error::MissingHeader("To").to_string(), "missing To header field");
    }

    fn header_name() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,15}".prop_filter("Content-Length is the writer's", |n| {
            !n.eq_ignore_ascii_case("l") && !n.eq_ignore_ascii_case("content-length")
        })
    }

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof!["[!-~]([ -~]{0,40}[!-~])?", "[!-~]\\PC{0,20}[!-~]", Just(String::new()),]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn built_messages_parse_back(
            request in any::<bool>(),
            method in "[A-Z]{3,10}",
            user in "[a-z0-9+.]{1,12}",
            code in 100u16..700,
            reason in "[ -~]{0,20}",
            fields in proptest::collection::vec((header_name(), header_value()), 0..16),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let uri = format!("sip:{user}@example.com");
            let mut buf = vec![0u8; 4096];
            let mut w = if request {
                MessageWriter::request(&mut buf, Method::from_token(&method), &uri).unwrap()
            } else {
                MessageWriter::response(&mut buf, code, &reason).unwrap()
            };
            for (n, v) in &fields {
                w.header(n, v).unwrap();
            }
            let len = w.finish(&body).unwrap();
            let wire = &buf[..len];
            for transport in [Transport::Datagram, Transport::Stream] {
                let mut h = [Header::EMPTY; 32];
                let Status::Complete(used, m) = Parser::new(transport).parse(wire, &mut h).unwrap() else {
                    panic!("partial")
                };
                prop_assert_eq!(used, len);
                prop_assert_eq!(m.body, &body[..]);
                prop_assert_eq!(m.headers.len(), fields.len() + 1);
                for (got, (n, v)) in m.headers.iter().zip(&fields) {
                    prop_assert_eq!(got.name, n.as_str());
                    prop_assert_eq!(got.value, v.as_str());
                }
                prop_assert_eq!(m.content_length(), Some(body.len()));
                match m.start_line {
                    StartLine::Request(r) => {
                        prop_assert!(request);
                        prop_assert_eq!(r.method.as_str(), method.as_str());
                        prop_assert_eq!(r.uri, uri.as_str());
                    }
                    StartLine::Response(s) => {
                        prop_assert!(!request);
                        prop_assert_eq!(s.code, code);
                        prop_assert_eq!(s.reason, reason.as_str());
                    }
                }
            }
        }

        #[test]
        fn sip_uris_parse_back(
            secure in any::<bool>(),
            user in proptest::option::of("[a-zA-Z0-9+_.!~*'()&=$,-]{1,16}"),
            labels in proptest::collection::vec("[a-z]([a-z0-9-]{0,8}[a-z0-9])?", 1..4),
            port in proptest::option::of(any::<u16>()),
            params in proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", proptest::option::of("[a-zA-Z0-9.-]{1,10}")), 0..4),
        ) {
            let host = labels.join(".");
            let mut s = String::from(if secure { "sips:" } else { "sip:" });
            if let Some(u) = &user { s.push_str(u); s.push('@'); }
            s.push_str(&host);
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            for (n, v) in &params {
                s.push(';');
                s.push_str(n);
                if let Some(v) = v { s.push('='); s.push_str(v); }
            }
            let u = SipUri::parse(&s).unwrap();
            prop_assert_eq!(u.secure, secure);
            prop_assert_eq!(u.user, user.as_deref());
            prop_assert_eq!(u.port, port);
            prop_assert_eq!(u.host.to_string(), host.clone());
            let got: Vec<(String, Option<String>)> =
                u.params.iter().map(|p| (p.name.to_string(), p.value.map(str::to_string))).collect();
            prop_assert_eq!(got, params.clone());
            // And as a name-addr with a tag.
            let na = format!("\"Some One\" <{s}>;tag=abc");
            let n = NameAddr::parse(&na).unwrap();
            prop_assert_eq!(n.uri.as_str(), s.as_str());
            prop_assert_eq!(n.tag(), Some("abc"));
        }

        #[test]
        fn arbitrary_and_mutated_input_never_panics(
            idx in 0usize..42,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut b = FIXTURES[idx].1.to_vec();
            for (i, v) in &flips {
                let at = i.index(b.len());
                b[at] = *v;
            }
            for input in [&b[..], &junk[..]] {
                let mut h = [Header::EMPTY; 64];
                if let Ok(m) = parse_datagram(input, &mut h) {
                    touch_everything(&m);
                }
                let mut h = [Header::EMPTY; 64];
                if let Ok(Status::Complete(_, m)) = parse_stream(input, &mut h) {
                    touch_everything(&m);
                }
            }
        }
    }
}
