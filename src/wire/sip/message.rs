//! SIP message framing and start line (RFC 3261 §7, §18.3), parsed in one
//! pass, httparse style: headers go into a caller-supplied array, results
//! borrow from the input.
//!
//! ```text
//! generic-message = start-line *message-header CRLF [ message-body ]
//! Request-Line    = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line     = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! message-header  = field-name *(SP / HTAB) ":" SWS field-value CRLF
//! ```

use std::fmt;

use super::fields::{CSeq, MediaType, NameAddr, Via};
use super::header::{self, Header, HeaderKey, ListItems};
use super::method::Method;
use super::scan::{
    all_request_uri_chars, find_line_break, is_lws, is_token, is_token_str, parse_decimal, trim_lws, trim_lws_end,
};
use super::uri::{SipUri, Uri};
use super::Error;

/// Largest message accepted by default (the UDP payload limit, rounded up).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 65_535;

/// `Request-Line` (RFC 3261 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// Method.
    pub method: Method<'a>,
    /// Request-URI text (characters checked, not yet parsed: see [`RequestLine::parse_uri`]).
    pub uri: &'a str,
    /// `SIP/2.0` as received (case-insensitive).
    pub version: &'a str,
}

impl<'a> RequestLine<'a> {
    /// Parse the Request-URI.
    pub fn parse_uri(&self) -> Result<Uri<'a>, Error> {
        Uri::parse(self.uri)
    }
}

/// `Status-Line` (RFC 3261 §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// `SIP/2.0` as received.
    pub version: &'a str,
    /// Status code, 100..=699.
    pub code: u16,
    /// Reason phrase (UTF-8, may be empty).
    pub reason: &'a str,
}

/// The first line of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request.
    Request(RequestLine<'a>),
    /// A response.
    Response(StatusLine<'a>),
}

impl<'a> StartLine<'a> {
    /// Parse a start line (without its CRLF).
    pub fn parse(line: &'a str) -> Result<Self, Error> {
        let b = line.as_bytes();
        if b.is_empty() {
            return Err(Error::BadStartLine);
        }
        if b.len() >= 4 && b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
            return parse_status_line(line).map(StartLine::Response);
        }
        parse_request_line(line).map(StartLine::Request)
    }
}

impl fmt::Display for StartLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request(r) => write!(f, "Request: {} {}", r.method, r.uri),
            StartLine::Response(s) => write!(f, "Status: {} {}", s.code, s.reason),
        }
    }
}

fn is_version(v: &str) -> bool {
    v == "SIP/2.0" || v.eq_ignore_ascii_case("SIP/2.0")
}

fn parse_status_line(line: &str) -> Result<StatusLine<'_>, Error> {
    let sp = line.find(' ').ok_or(Error::BadStartLine)?;
    let version = line.get(..sp).ok_or(Error::BadStartLine)?;
    if !is_version(version) {
        return Err(Error::BadVersion);
    }
    let rest = line.get(sp + 1..).ok_or(Error::BadStartLine)?;
    let rb = rest.as_bytes();
    let digits = rb.get(..3).ok_or(Error::BadStatusCode)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadStatusCode);
    }
    let reason = match rb.get(3) {
        None => "",
        Some(b' ') => rest.get(4..).ok_or(Error::BadStartLine)?,
        Some(_) => return Err(Error::BadStatusCode),
    };
    let code = digits.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    if !(100..=699).contains(&code) {
        return Err(Error::BadStatusCode);
    }
    Ok(StatusLine { version, code, reason })
}

fn parse_request_line(line: &str) -> Result<RequestLine<'_>, Error> {
    // RFC 4475 trws: trailing white space after the version.
    let b = line.as_bytes();
    if matches!(b.last(), Some(b' ' | b'\t')) {
        return Err(Error::BadStartLine);
    }
    // SP is ASCII: byte positions are char boundaries.
    let first = b.iter().position(|&c| c == b' ').ok_or(Error::BadStartLine)?;
    let last = b.iter().rposition(|&c| c == b' ').ok_or(Error::BadStartLine)?;
    let method = line.get(..first).ok_or(Error::BadMethod)?;
    if !is_token_str(method) {
        return Err(Error::BadMethod);
    }
    if last == first {
        return Err(Error::BadStartLine);
    }
    let version = line.get(last + 1..).ok_or(Error::BadStartLine)?;
    if !is_version(version) {
        return Err(if version.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
            Error::BadVersion
        } else {
            Error::BadStartLine
        });
    }
    let uri = line.get(first + 1..last).ok_or(Error::BadStartLine)?;
    // RFC 4475 lwsstart: more than one SP between elements (an empty Request-URI
    // is two SPs in a row).
    if uri.is_empty() || uri.starts_with(' ') || uri.ends_with(' ') {
        return Err(Error::BadStartLine);
    }
    // RFC 4475 lwsruri (embedded LWS) and ltgtruri (angle brackets).
    if !all_request_uri_chars(uri.as_bytes()) {
        return Err(Error::BadRequestUri);
    }
    Ok(RequestLine { method: Method::from_token(method), uri, version })
}

/// How the message arrived (RFC 3261 §18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: one message per datagram; the body is the rest of the datagram,
    /// cut to Content-Length when that is smaller.
    Datagram,
    /// TCP/TLS: Content-Length is mandatory and frames the message.
    Stream,
}

/// Outcome of a parse that may need more bytes (stream transports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole message: bytes consumed from the buffer (leading CRLFs
    /// included), and the message.
    Complete(usize, T),
    /// More bytes are needed; nothing was consumed.
    Partial,
}

/// Message parser configuration: transport framing and the size bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parser {
    /// Framing rules.
    pub transport: Transport,
    /// Largest message (start line, headers and body) accepted.
    pub max_message_len: usize,
}

/// A parsed SIP message borrowing from the input (`'a`) and the caller's
/// header array (`'h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a, 'h> {
    /// Request or status line.
    pub start_line: StartLine<'a>,
    /// Header fields in order of appearance.
    pub headers: &'h [Header<'a>],
    /// Message body (framed by Content-Length, see [`Transport`]).
    pub body: &'a [u8],
    content_length: Option<usize>,
}

/// Where a message's header section lies, and what it says.
struct HeadSection<'a> {
    /// The message's first octet (after keep-alive CRLFs).
    start: usize,
    /// The first octet after the blank line.
    end: usize,
    start_line: StartLine<'a>,
    /// Header fields parsed.
    fields: usize,
    content_length: Option<usize>,
}

impl<'a> HeadSection<'a> {
    /// The message of this head, its fields among `headers`, with `body`.
    fn message<'h>(self, headers: &'h [Header<'a>], body: &'a [u8]) -> Message<'a, 'h> {
        let headers = headers.get(..self.fields).unwrap_or(&[]);
        Message { start_line: self.start_line, headers, body, content_length: self.content_length }
    }
}

/// Parse one datagram (UDP): a missing end of headers is [`Error::Truncated`].
pub fn parse_datagram<'a, 'h>(buf: &'a [u8], headers: &'h mut [Header<'a>]) -> Result<Message<'a, 'h>, Error> {
    match Parser::datagram().parse(buf, headers)? {
        Status::Complete(_, m) => Ok(m),
        Status::Partial => Err(Error::Truncated),
    }
}

/// Parse the front of a stream buffer (TCP/TLS).
pub fn parse_stream<'a, 'h>(buf: &'a [u8], headers: &'h mut [Header<'a>]) -> Result<Status<Message<'a, 'h>>, Error> {
    Parser::stream().parse(buf, headers)
}

/// Where a line break at `i` ends: `Ok(Some(next line start))`, `Ok(None)` if
/// the buffer stops between CR and LF, `Err` for a bare CR.
#[inline]
fn line_end(buf: &[u8], i: usize) -> Result<Option<usize>, ()> {
    match buf.get(i) {
        Some(b'\n') => Ok(Some(i + 1)),
        Some(b'\r') => match buf.get(i + 1) {
            Some(b'\n') => Ok(Some(i + 2)),
            None => Ok(None),
            Some(_) => Err(()),
        },
        _ => Err(()),
    }
}

fn parse_content_length(v: &str) -> Result<usize, Error> {
    parse_decimal(v, 10).and_then(|n| usize::try_from(n).ok()).ok_or(Error::BadContentLength)
}

/// Header lines located but not yet validated as UTF-8 (byte offsets in the buffer).
#[derive(Clone, Copy, Default)]
struct PendingField {
    line_start: usize,
    name_len: usize,
    value_start: usize,
    value_end: usize,
}

/// One line of the header section, read from `*pos` (advanced past it).
enum Line {
    /// A header field (folded continuation lines included).
    Field(PendingField),
    /// The empty line that ends the section.
    End,
    /// The buffer ends first.
    More,
}

/// Reads the header line at `*pos`: `name *LWS ":" *LWS value` up to the line break
/// that is not followed by a continuation, or the section's end.
#[inline]
fn header_line(buf: &[u8], pos: &mut usize) -> Result<Line, Error> {
    match buf.get(*pos) {
        None => return Ok(Line::More),
        Some(b'\n') => {
            *pos += 1;
            return Ok(Line::End);
        }
        Some(b'\r') => match buf.get(*pos + 1) {
            Some(b'\n') => {
                *pos += 2;
                return Ok(Line::End);
            }
            None => return Ok(Line::More),
            Some(_) => return Err(Error::BadHeaderName),
        },
        Some(_) => {}
    }
    let line_start = *pos;
    let rest = buf.get(*pos..).unwrap_or(&[]);
    let name_len = rest.iter().position(|&c| !is_token(c)).unwrap_or(rest.len());
    *pos += name_len;
    while matches!(buf.get(*pos), Some(b' ' | b'\t')) {
        *pos += 1;
    }
    match buf.get(*pos) {
        Some(b':') if name_len > 0 => *pos += 1,
        None => return Ok(Line::More),
        Some(_) => return Err(Error::BadHeaderName),
    }
    while matches!(buf.get(*pos), Some(b' ' | b'\t')) {
        *pos += 1;
    }
    let value_start = *pos;
    let value_end = loop {
        let Some(i) = find_line_break(buf, *pos) else {
            return Ok(Line::More);
        };
        let nx = match line_end(buf, i) {
            Ok(Some(nx)) => nx,
            Ok(None) => return Ok(Line::More),
            Err(()) => return Err(Error::BadHeaderValue),
        };
        match buf.get(nx) {
            // A continuation line (RFC 3261 §7.3.1 folding).
            Some(b' ' | b'\t') => *pos = nx,
            Some(_) => {
                *pos = nx;
                break i;
            }
            None => return Ok(Line::More),
        }
    };
    Ok(Line::Field(PendingField { line_start, name_len, value_start, value_end }))
}

/// Lines validated per `from_utf8` call.
const BATCH: usize = 32;

/// Validate `buf[region_start..region_end]` (the lines of `fields`) as UTF-8
/// once, then store the fields as `&str` headers and read Content-Length.
fn flush<'a>(
    buf: &'a [u8],
    region_start: usize,
    region_end: usize,
    fields: &[PendingField],
    headers: &mut [Header<'a>],
    n: &mut usize,
    content_length: &mut Option<usize>,
) -> Result<(), Error> {
    let region = buf.get(region_start..region_end).ok_or(Error::BadHeaderValue)?;
    let region = std::str::from_utf8(region).map_err(|_| Error::InvalidUtf8)?;
    for f in fields {
        let ls = f.line_start - region_start;
        let name = region.get(ls..ls + f.name_len).ok_or(Error::BadHeaderName)?;
        let value =
            region.get(f.value_start - region_start..f.value_end - region_start).ok_or(Error::BadHeaderValue)?;
        // Leading SP/HT were skipped on bytes; only a value that starts on a
        // continuation line still begins with LWS (CR LF).
        let value = match value.as_bytes().first() {
            Some(b'\r' | b'\n') => trim_lws(value),
            _ => trim_lws_end(value),
        };
        *headers.get_mut(*n).ok_or(Error::TooManyHeaders)? = Header { name, value };
        *n += 1;
        if is_content_length(name.as_bytes()) {
            let v = parse_content_length(value)?;
            match *content_length {
                Some(prev) if prev != v => return Err(Error::MultipleContentLength),
                _ => *content_length = Some(v),
            }
        }
    }
    Ok(())
}

/// `Content-Length` or its compact form `l`, any case.
#[inline]
fn is_content_length(name: &[u8]) -> bool {
    match name.len() {
        1 => name.first().is_some_and(|c| c | 0x20 == b'l'),
        14 => name.eq_ignore_ascii_case(b"Content-Length"),
        _ => false,
    }
}

impl Parser {
    /// A parser for `transport` with [`DEFAULT_MAX_MESSAGE_LEN`].
    pub const fn new(transport: Transport) -> Self {
        Parser { transport, max_message_len: DEFAULT_MAX_MESSAGE_LEN }
    }

    /// UDP framing.
    pub const fn datagram() -> Self {
        Parser::new(Transport::Datagram)
    }

    /// TCP/TLS framing.
    pub const fn stream() -> Self {
        Parser::new(Transport::Stream)
    }

    /// The same parser with another size bound.
    pub const fn with_max_message_len(mut self, max: usize) -> Self {
        self.max_message_len = max;
        self
    }

    /// Parse one message from the front of `buf`, filling `headers`.
    ///
    /// Leading CRLFs (stream keep-alives, RFC 3261 §7.5) are skipped and
    /// counted as consumed. In datagram mode the result is never `Partial`.
    pub fn parse<'a, 'h>(
        &self,
        buf: &'a [u8],
        headers: &'h mut [Header<'a>],
    ) -> Result<Status<Message<'a, 'h>>, Error> {
        let Status::Complete(_, head) = self.head(buf, headers)? else {
            return Ok(Status::Partial);
        };
        let Some(body) = self.body(buf, head.start, head.end, head.content_length)? else {
            return Ok(Status::Partial);
        };
        Ok(Status::Complete(head.end + body.len(), head.message(headers, body)))
    }

    /// Parse the start line and header fields of the message at the front of a
    /// stream buffer, whatever of its body has arrived: the octets up to the body,
    /// and the message with an empty body (its [`Message::content_length`] says how
    /// long the body is). For a stream that must decide about a message before
    /// holding all of it (one too large to read gets its answer from this).
    pub fn parse_head<'a, 'h>(
        &self,
        buf: &'a [u8],
        headers: &'h mut [Header<'a>],
    ) -> Result<Status<Message<'a, 'h>>, Error> {
        let Status::Complete(_, head) = self.head(buf, headers)? else {
            return Ok(Status::Partial);
        };
        let end = head.end;
        Ok(Status::Complete(end, head.message(headers, &[])))
    }

    /// The start line and header section at the front of `buf`.
    fn head<'a>(&self, buf: &'a [u8], headers: &mut [Header<'a>]) -> Result<Status<HeadSection<'a>>, Error> {
        let max = self.max_message_len;
        let datagram = self.transport == Transport::Datagram;
        if datagram && buf.len() > max {
            return Err(Error::TooLong);
        }
        // Verdict when the header section is not complete yet.
        let more = || {
            if datagram {
                Err(Error::Truncated)
            } else if buf.len() >= max {
                Err(Error::TooLong)
            } else {
                Ok(Status::Partial)
            }
        };
        let mut pos = 0usize;
        while buf.get(pos..pos + 2) == Some(b"\r\n") {
            pos += 2;
        }
        let start = pos;

        // Start line.
        let Some(le) = find_line_break(buf, pos) else {
            return more();
        };
        let next = match line_end(buf, le) {
            Ok(Some(n)) => n,
            Ok(None) => return more(),
            Err(()) => return Err(Error::BadStartLine),
        };
        let line = buf.get(pos..le).ok_or(Error::BadStartLine)?;
        let line = std::str::from_utf8(line).map_err(|_| Error::InvalidUtf8)?;
        let start_line = StartLine::parse(line)?;
        pos = next;

        // Header fields. Lines are located on bytes and validated as UTF-8 in
        // batches (one `from_utf8` per BATCH lines instead of one per line).
        let mut n = 0usize;
        let mut content_length: Option<usize> = None;
        let mut pending = [PendingField::default(); BATCH];
        let mut npend = 0usize;
        let mut region_start = pos;
        loop {
            let field = match header_line(buf, &mut pos)? {
                Line::Field(f) => f,
                Line::End => break,
                Line::More => return more(),
            };
            let value_end = field.value_end;
            if pos - start > max {
                return Err(Error::TooLong);
            }
            if n + npend >= headers.len() {
                return Err(Error::TooManyHeaders);
            }
            if let Some(p) = pending.get_mut(npend) {
                *p = field;
                npend += 1;
            }
            if npend == BATCH {
                let region_end = value_end;
                flush(buf, region_start, region_end, &pending, headers, &mut n, &mut content_length)?;
                npend = 0;
                region_start = pos;
            }
        }
        if npend > 0 {
            let region_end = pending.get(npend - 1).map_or(region_start, |p| p.value_end);
            let fields = pending.get(..npend).unwrap_or(&[]);
            flush(buf, region_start, region_end, fields, headers, &mut n, &mut content_length)?;
        }
        if pos - start > max {
            return Err(Error::TooLong);
        }
        Ok(Status::Complete(pos, HeadSection { start, end: pos, start_line, fields: n, content_length }))
    }

    /// The body after a header section that ends at `pos` (the message started at
    /// `start`): per Content-Length, which a stream requires; `None` when a stream has
    /// not all of it yet.
    fn body<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        pos: usize,
        content_length: Option<usize>,
    ) -> Result<Option<&'a [u8]>, Error> {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let datagram = self.transport == Transport::Datagram;
        let max = self.max_message_len;
        let body = if datagram {
            match content_length {
                // RFC 3261 §18.3: a larger Content-Length is an error, a smaller
                // one truncates the datagram.
                Some(cl) => rest.get(..cl).ok_or(Error::ContentLengthMismatch)?,
                None => rest,
            }
        } else {
            let cl = content_length.ok_or(Error::MissingContentLength)?;
            let total = pos.checked_add(cl).ok_or(Error::TooLong)?;
            if total - start > max {
                return Err(Error::TooLong);
            }
            match buf.get(pos..total) {
                Some(b) => b,
                None => return Ok(None),
            }
        };
        Ok(Some(body))
    }
}

/// Values of every header with a given name, in order.
#[derive(Clone, Debug)]
pub struct HeaderValues<'a, 'h, 'n> {
    iter: std::slice::Iter<'h, Header<'a>>,
    key: HeaderKey<'n>,
}

impl<'a, 'h, 'n> Iterator for HeaderValues<'a, 'h, 'n> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let key = self.key;
        self.iter.by_ref().find(|h| key.matches(h.name)).map(|h| h.value)
    }
}

/// Comma-separated elements of every header with a given name, in order
/// (RFC 3261 §7.3.1: `Route: a, b` equals `Route: a` + `Route: b`).
#[derive(Clone, Debug)]
pub struct ListValues<'a, 'h, 'n> {
    headers: HeaderValues<'a, 'h, 'n>,
    items: Option<ListItems<'a>>,
}

impl<'a, 'h, 'n> Iterator for ListValues<'a, 'h, 'n> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(item) = self.items.as_mut().and_then(Iterator::next) {
                return Some(item);
            }
            self.items = Some(ListItems::new(self.headers.next()?));
        }
    }
}

/// Every Via element, top first, parsed.
#[derive(Clone, Debug)]
pub struct Vias<'a, 'h>(ListValues<'a, 'h, 'static>);

impl<'a, 'h> Iterator for Vias<'a, 'h> {
    type Item = Result<Via<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(Via::parse)
    }
}

/// Every name-addr element of a header (Contact, Route, Record-Route), parsed.
#[derive(Clone, Debug)]
pub struct NameAddrs<'a, 'h>(ListValues<'a, 'h, 'static>);

impl<'a, 'h> Iterator for NameAddrs<'a, 'h> {
    type Item = Result<NameAddr<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(NameAddr::parse)
    }
}

impl<'a, 'h> Message<'a, 'h> {
    fn first(&self, key: HeaderKey<'_>) -> Option<&'a str> {
        self.headers.iter().find(|h| key.matches(h.name)).map(|h| h.value)
    }

    fn required(&self, key: HeaderKey<'_>, name: &'static str) -> Result<&'a str, Error> {
        self.first(key).ok_or(Error::MissingHeader(name))
    }

    fn list(&self, key: HeaderKey<'static>) -> ListValues<'a, 'h, 'static> {
        ListValues { headers: HeaderValues { iter: self.headers.iter(), key }, items: None }
    }

    /// Is this a request?
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request(_))
    }

    /// The request line, for a request.
    pub fn request_line(&self) -> Option<&RequestLine<'a>> {
        match &self.start_line {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }

    /// The status line, for a response.
    pub fn status_line(&self) -> Option<&StatusLine<'a>> {
        match &self.start_line {
            StartLine::Response(s) => Some(s),
            StartLine::Request(_) => None,
        }
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<Method<'a>> {
        self.request_line().map(|r| r.method)
    }

    /// The status code, for a response.
    pub fn status_code(&self) -> Option<u16> {
        self.status_line().map(|s| s.code)
    }

    /// The first value of header `name` (case-insensitive, compact forms honoured).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.first(HeaderKey::new(name))
    }

    /// Every value of header `name`, one per header line.
    pub fn headers<'n>(&self, name: &'n str) -> HeaderValues<'a, 'h, 'n> {
        HeaderValues { iter: self.headers.iter(), key: HeaderKey::new(name) }
    }

    /// Every comma-separated element of every header `name`.
    pub fn values<'n>(&self, name: &'n str) -> ListValues<'a, 'h, 'n> {
        ListValues { headers: self.headers(name), items: None }
    }

    /// Call-ID (RFC 3261 §20.8): `word [ "@" word ]`, checked for LWS.
    pub fn call_id(&self) -> Result<&'a str, Error> {
        check_call_id(self.required(header::CALL_ID, "Call-ID")?)
    }

    /// CSeq (RFC 3261 §20.16).
    pub fn cseq(&self) -> Result<CSeq<'a>, Error> {
        CSeq::parse(self.required(header::CSEQ, "CSeq")?)
    }

    /// From (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr<'a>, Error> {
        NameAddr::parse(self.required(header::FROM, "From")?)
    }

    /// To (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr<'a>, Error> {
        NameAddr::parse(self.required(header::TO, "To")?)
    }

    /// The topmost Via element (RFC 3261 §20.42).
    pub fn top_via(&self) -> Result<Via<'a>, Error> {
        match self.vias().next() {
            Some(v) => v,
            None => Err(Error::MissingHeader("Via")),
        }
    }

    /// Every Via element, top first.
    pub fn vias(&self) -> Vias<'a, 'h> {
        Vias(self.list(header::VIA))
    }

    /// Max-Forwards (RFC 3261 §20.22), 0..=255.
    pub fn max_forwards(&self) -> Result<Option<u8>, Error> {
        self.first(header::MAX_FORWARDS).map(parse_max_forwards).transpose()
    }

    /// Expires (RFC 3261 §20.19), delta-seconds up to 2^32-1.
    pub fn expires(&self) -> Result<Option<u32>, Error> {
        self.first(header::EXPIRES).map(parse_expires).transpose()
    }

    /// Content-Type (RFC 3261 §20.15).
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, Error> {
        self.first(header::CONTENT_TYPE).map(MediaType::parse).transpose()
    }

    /// Content-Length as framed by the parser.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// Contact elements (RFC 3261 §20.10). A wildcard `*` yields
    /// `Err(BadNameAddr)`: see [`Message::is_wildcard_contact`].
    pub fn contacts(&self) -> NameAddrs<'a, 'h> {
        NameAddrs(self.list(header::CONTACT))
    }

    /// Is the Contact the REGISTER wildcard `*`?
    pub fn is_wildcard_contact(&self) -> bool {
        self.first(header::CONTACT) == Some("*")
    }

    /// Route elements in order (RFC 3261 §20.34).
    pub fn routes(&self) -> NameAddrs<'a, 'h> {
        NameAddrs(self.list(header::ROUTE))
    }

    /// Record-Route elements in order (RFC 3261 §20.30).
    pub fn record_routes(&self) -> NameAddrs<'a, 'h> {
        NameAddrs(self.list(header::RECORD_ROUTE))
    }

    /// Accept media ranges (RFC 3261 §20.1), raw.
    pub fn accept(&self) -> ListValues<'a, 'h, 'static> {
        self.list(header::ACCEPT)
    }

    /// Check what a SIP MESSAGE interworking function relies on (RFC 3261
    /// §8.1.1, §8.2) and return those fields parsed: To, From, Call-ID, CSeq
    /// and Via present, the single-valued fields at most once; the top Via,
    /// From, To, every Contact, CSeq, Max-Forwards, Expires and Content-Type
    /// parse; for a request the Request-URI parses, carries no `?headers`
    /// (§19.1.1), and the CSeq method equals the request method.
    ///
    /// Lower Vias (copied opaquely into responses), Route and Record-Route are
    /// not checked here: their iterators ([`Message::vias`], [`Message::routes`],
    /// [`Message::record_routes`]) parse them when a caller needs them.
    pub fn validate(&self) -> Result<CoreFields<'a>, Error> {
        // One pass over the fields: classify each name once.
        let mut first = [None::<&'a str>; Known::SINGLE];
        let mut top_via = None;
        for h in self.headers {
            let kind = Known::classify(h.name);
            match kind {
                Known::Via if top_via.is_none() => {
                    let top = ListItems::new(h.value).next().ok_or(Error::BadVia)?;
                    top_via = Some(Via::parse(top)?);
                }
                Known::Contact if h.value != "*" => {
                    for c in ListItems::new(h.value) {
                        NameAddr::parse(c)?;
                    }
                }
                _ => {}
            }
            if let Some(slot) = first.get_mut(kind as usize) {
                if slot.is_some() {
                    return Err(Error::DuplicateHeader(kind.name()));
                }
                *slot = Some(h.value);
            }
        }
        let get = |k: Known| first.get(k as usize).copied().flatten();
        let need = |k: Known| get(k).ok_or(Error::MissingHeader(k.name()));
        let (to, from, call_id, cseq) =
            (need(Known::To)?, need(Known::From)?, need(Known::CallId)?, need(Known::CSeq)?);
        let top_via = top_via.ok_or(Error::MissingHeader("Via"))?;
        let request_uri = match self.request_line() {
            Some(r) => match r.parse_uri() {
                Ok(Uri::Sip(SipUri { headers: Some(_), .. })) | Err(_) => return Err(Error::BadRequestUri),
                Ok(u) => Some(u),
            },
            None => None,
        };
        let from = NameAddr::parse(from)?;
        let to = NameAddr::parse(to)?;
        let call_id = check_call_id(call_id)?;
        let cseq = CSeq::parse(cseq)?;
        if let Some(m) = self.method() {
            if m != cseq.method {
                return Err(Error::CSeqMethodMismatch);
            }
        }
        let max_forwards = get(Known::MaxForwards).map(parse_max_forwards).transpose()?;
        get(Known::Expires).map(parse_expires).transpose()?;
        let content_type = get(Known::ContentType).map(MediaType::parse).transpose()?;
        Ok(CoreFields { request_uri, call_id, cseq, from, to, top_via, max_forwards, content_type })
    }
}

/// The fields every SIP transaction relies on, parsed by [`Message::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreFields<'a> {
    /// The Request-URI, for a request.
    pub request_uri: Option<Uri<'a>>,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq.
    pub cseq: CSeq<'a>,
    /// From.
    pub from: NameAddr<'a>,
    /// To.
    pub to: NameAddr<'a>,
    /// The topmost Via element.
    pub top_via: Via<'a>,
    /// Max-Forwards, if present.
    pub max_forwards: Option<u8>,
    /// Content-Type, if present.
    pub content_type: Option<MediaType<'a>>,
}

/// Header fields [`Message::validate`] knows; the first `SINGLE` are single-valued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    To,
    From,
    CallId,
    CSeq,
    MaxForwards,
    ContentType,
    Expires,
    Via,
    Contact,
    Route,
    RecordRoute,
    Other,
}

impl Known {
    const SINGLE: usize = 7;

    /// Classify a field name (case-insensitive, compact forms) by its length first.
    fn classify(name: &str) -> Known {
        let b = name.as_bytes();
        let is = |full: &str| b.eq_ignore_ascii_case(full.as_bytes());
        match b.len() {
            1 => match b.first().map_or(0, |c| c | 0x20) {
                b't' => Known::To,
                b'f' => Known::From,
                b'i' => Known::CallId,
                b'c' => Known::ContentType,
                b'v' => Known::Via,
                b'm' => Known::Contact,
                _ => Known::Other,
            },
            2 if is("To") => Known::To,
            3 if is("Via") => Known::Via,
            4 if is("From") => Known::From,
            4 if is("CSeq") => Known::CSeq,
            5 if is("Route") => Known::Route,
            7 if is("Call-ID") => Known::CallId,
            7 if is("Expires") => Known::Expires,
            7 if is("Contact") => Known::Contact,
            12 if is("Max-Forwards") => Known::MaxForwards,
            12 if is("Content-Type") => Known::ContentType,
            12 if is("Record-Route") => Known::RecordRoute,
            _ => Known::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Known::To => "To",
            Known::From => "From",
            Known::CallId => "Call-ID",
            Known::CSeq => "CSeq",
            Known::MaxForwards => "Max-Forwards",
            Known::ContentType => "Content-Type",
            Known::Expires => "Expires",
            Known::Via => "Via",
            Known::Contact => "Contact",
            Known::Route => "Route",
            Known::RecordRoute => "Record-Route",
            Known::Other => "",
        }
    }
}

fn check_call_id(v: &str) -> Result<&str, Error> {
    if v.is_empty() || v.bytes().any(is_lws) {
        return Err(Error::BadCallId);
    }
    Ok(v)
}

fn parse_max_forwards(v: &str) -> Result<u8, Error> {
    parse_decimal(v, 10).and_then(|n| u8::try_from(n).ok()).ok_or(Error::BadMaxForwards)
}

fn parse_expires(v: &str) -> Result<u32, Error> {
    parse_decimal(v, 10).and_then(|n| u32::try_from(n).ok()).ok_or(Error::BadExpires)
}

impl fmt::Display for Message<'_, '_> {
    /// One line, like tshark's SIP summary:
    /// `Request: MESSAGE sip:bob@example.com (CSeq 1 MESSAGE, 9 headers, 12-byte body)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.start_line)?;
        if let Some(c) = self.first(header::CSEQ) {
            write!(f, "CSeq {}, ", trim_lws(c))?;
        }
        write!(f, "{} headers, {}-byte body)", self.headers.len(), self.body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn start_lines() {
        let r = StartLine::parse("MESSAGE sip:a@b SIP/2.0").unwrap();
        assert_eq!(r, StartLine::Request(RequestLine { method: Method::Message, uri: "sip:a@b", version: "SIP/2.0" }));
        assert_eq!(r.to_string(), "Request: MESSAGE sip:a@b");
        let s = StartLine::parse("SIP/2.0 404 Not Found").unwrap();
        assert_eq!(s, StartLine::Response(StatusLine { version: "SIP/2.0", code: 404, reason: "Not Found" }));
        assert_eq!(s.to_string(), "Status: 404 Not Found");
        assert!(matches!(
            StartLine::parse("sip/2.0 200"),
            Ok(StartLine::Response(StatusLine { code: 200, reason: "", .. }))
        ));
        for (line, e) in [
            ("", Error::BadStartLine),
            ("INVITE", Error::BadStartLine),
            ("INVITE sip:a@b", Error::BadStartLine),
            ("INVITE sip:a@b SIP/2.0 ", Error::BadStartLine),
            ("INVITE  sip:a@b SIP/2.0", Error::BadStartLine),
            // An empty Request-URI (found by the fuzzer: the writer refuses it).
            ("OPTIONS  SIP/2.0", Error::BadStartLine),
            ("INVITE sip:a@b HTTP/1.1", Error::BadStartLine),
            ("INVITE sip:a@b SIP/3.0", Error::BadVersion),
            ("INV<TE sip:a@b SIP/2.0", Error::BadMethod),
            (" sip:a@b SIP/2.0", Error::BadMethod),
            ("INVITE <sip:a@b> SIP/2.0", Error::BadRequestUri),
            ("INVITE sip:a@b; lr SIP/2.0", Error::BadRequestUri),
            ("SIP/2.0 4294967301 big", Error::BadStatusCode),
            ("SIP/2.0 20 short", Error::BadStatusCode),
            ("SIP/2.0 099 low", Error::BadStatusCode),
            ("SIP/2.0 700 high", Error::BadStatusCode),
            ("SIP/2.0  200 OK", Error::BadStatusCode),
            ("SIP/1.0 200 OK", Error::BadVersion),
            ("SIP/2.0", Error::BadStartLine),
        ] {
            assert_eq!(StartLine::parse(line), Err(e), "{line:?}");
        }
    }

    #[test]
    fn methods_are_case_sensitive_data() {
        assert_eq!(Method::from_token("MESSAGE"), Method::Message);
        assert_eq!(Method::from_token("message"), Method::Other("message"));
        assert_eq!(Method::Other("INVITE"), Method::Invite);
        assert_ne!(Method::Other("invite"), Method::Invite);
        assert_eq!(Method::Publish.to_string(), "PUBLISH");
    }

    #[test]
    fn stream_framing_every_split() {
        let mut h = [Header::EMPTY; 16];
        let Status::Complete(n, m) = parse_stream(MIN, &mut h).unwrap() else { panic!("partial") };
        assert_eq!(n, MIN.len());
        assert_eq!(m.body, b"body");
        assert_eq!(m.headers.len(), 6);
        for cut in 0..MIN.len() {
            let mut h = [Header::EMPTY; 16];
            assert_eq!(parse_stream(&MIN[..cut], &mut h), Ok(Status::Partial), "cut {cut}");
            let mut h = [Header::EMPTY; 16];
            let r = parse_datagram(&MIN[..cut], &mut h);
            assert!(matches!(r, Err(Error::Truncated | Error::ContentLengthMismatch)), "cut {cut}: {r:?}");
        }
        // Two pipelined messages with keep-alive CRLFs in front.
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(MIN);
        two.extend_from_slice(MIN);
        let mut h = [Header::EMPTY; 16];
        let Status::Complete(n, _) = parse_stream(&two, &mut h).unwrap() else { panic!() };
        assert_eq!(n, 4 + MIN.len());
        let mut h = [Header::EMPTY; 16];
        assert!(matches!(parse_stream(&two[n..], &mut h), Ok(Status::Complete(l, _)) if l == MIN.len()));
        let mut h = [Header::EMPTY; 16];
        assert_eq!(parse_stream(b"\r\n\r\n", &mut h), Ok(Status::Partial));
        assert_eq!(parse_datagram(b"\r\n", &mut h), Err(Error::Truncated));
    }

    #[test]
    fn datagram_body_rules() {
        let no_cl = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nrest of datagram";
        let mut h = [Header::EMPTY; 4];
        let m = parse_datagram(no_cl, &mut h).unwrap();
        assert_eq!(m.body, b"rest of datagram");
        assert_eq!(m.content_length(), None);
        let mut h = [Header::EMPTY; 4];
        assert_eq!(parse_stream(no_cl, &mut h), Err(Error::MissingContentLength));
        let short = b"MESSAGE sip:a@b SIP/2.0\r\nl: 4\r\n\r\nrest of datagram";
        let mut h = [Header::EMPTY; 4];
        let Status::Complete(n, m) = Parser::datagram().parse(short, &mut h).unwrap() else { panic!() };
        assert_eq!(m.body, b"rest");
        assert_eq!(n, short.len() - 12);
        let long = b"MESSAGE sip:a@b SIP/2.0\r\nl: 40\r\n\r\nrest";
        assert_eq!(parse_datagram(long, &mut h), Err(Error::ContentLengthMismatch));
    }

    #[test]
    fn header_errors_and_limits() {
        let mut h = [Header::EMPTY; 8];
        let cases: [(&[u8], Error); 9] = [
            (b"MESSAGE sip:a@b SIP/2.0\r\n: x\r\n\r\n", Error::BadHeaderName),
            (b"MESSAGE sip:a@b SIP/2.0\r\n folded-start: x\r\n\r\n", Error::BadHeaderName),
            (b"MESSAGE sip:a@b SIP/2.0\r\nNa<me: x\r\n\r\n", Error::BadHeaderName),
            (b"MESSAGE sip:a@b SIP/2.0\r\nName x\r\n\r\n", Error::BadHeaderName),
            (b"MESSAGE sip:a@b SIP/2.0\r\nName: a\rb\r\n\r\n", Error::BadHeaderValue),
            (b"MESSAGE sip:a@b SIP/2.0\r\nName: \xff\r\n\r\n", Error::InvalidUtf8),
            (b"MESSAGE sip:a@b SIP/2.0\r\nl: -999\r\n\r\n", Error::BadContentLength),
            (b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab", Error::MultipleContentLength),
            (b"MESSAGE sip:a@b SIP/2.0\rX\r\n\r\n", Error::BadStartLine),
        ];
        for (m, e) in cases {
            assert_eq!(parse_datagram(m, &mut h), Err(e), "{:?}", String::from_utf8_lossy(m));
        }
        let mut one = [Header::EMPTY; 1];
        assert_eq!(
            parse_datagram(b"MESSAGE sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\n\r\n", &mut one),
            Err(Error::TooManyHeaders)
        );
        let small = Parser::stream().with_max_message_len(64);
        assert_eq!(small.parse(MIN, &mut h), Err(Error::TooLong));
        assert_eq!(small.parse(&[b'A'; 100], &mut h), Err(Error::TooLong));
        assert_eq!(small.parse(&MIN[..40], &mut h), Ok(Status::Partial));
        let dg = Parser::datagram().with_max_message_len(64);
        assert_eq!(dg.parse(MIN, &mut h), Err(Error::TooLong));
        // Same Content-Length twice is tolerated; bare-LF line ends accepted.
        let m = parse_datagram(b"MESSAGE sip:a@b SIP/2.0\nl: 2\nContent-Length: 2\n\nab", &mut h).unwrap();
        assert_eq!(m.body, b"ab");
    }

    #[test]
    fn accessors_and_display() {
        let mut h = [Header::EMPTY; 16];
        let m = parse_datagram(MIN, &mut h).unwrap();
        assert_eq!(m.call_id(), Ok("x"));
        assert_eq!(m.cseq().unwrap().number, 1);
        assert_eq!(m.from().unwrap().tag(), Some("1"));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.top_via().unwrap().transport, "TCP");
        assert_eq!(m.max_forwards(), Ok(None));
        assert_eq!(m.expires(), Ok(None));
        assert_eq!(m.content_type(), Ok(None));
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.header("l"), Some("4"));
        assert_eq!(m.header("x-missing"), None);
        assert_eq!(m.contacts().count(), 0);
        assert!(m.validate().is_ok());
        assert_eq!(m.to_string(), "Request: OPTIONS sip:a@b (CSeq 1 OPTIONS, 6 headers, 4-byte body)");
        let bare = b"SIP/2.0 200 OK\r\nCall-ID: a b\r\nMax-Forwards: 256\r\nExpires: x\r\n\r\n";
        let m = parse_datagram(bare, &mut h).unwrap();
        assert_eq!(m.call_id(), Err(Error::BadCallId));
        assert_eq!(m.max_forwards(), Err(Error::BadMaxForwards));
        assert_eq!(m.expires(), Err(Error::BadExpires));
        assert_eq!(m.cseq(), Err(Error::MissingHeader("CSeq")));
        assert_eq!(m.top_via(), Err(Error::MissingHeader("Via")));
        assert_eq!(m.validate(), Err(Error::MissingHeader("To")));
        assert_eq!(m.method(), None);
        assert_eq!(m.status_code(), Some(200));
    }
}
