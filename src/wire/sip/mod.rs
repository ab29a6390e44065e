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
mod scan;
mod uri;

pub use build::MessageWriter;
pub use fields::{CSeq, MediaType, NameAddr, Via, BRANCH_MAGIC_COOKIE};
pub use header::{
    compact_form, full_name, names_match, unfold_into, unquote_into, Header, ListItems, Param,
    ParamIter, Params, COMPACT_FORMS,
};
pub use message::{
    parse_datagram, parse_stream, HeaderValues, ListValues, Message, Method, NameAddrs, Parser,
    RequestLine, StartLine, Status, StatusLine, Transport, Vias, DEFAULT_MAX_MESSAGE_LEN,
};
pub use uri::{
    escaped_eq, escaped_eq_ignore_case, unescape_into, unescaped, Host, OtherUri, SipUri, TelUri,
    Unescape, Uri,
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
