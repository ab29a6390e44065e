//! Writing SIP messages into a caller-supplied buffer (no allocation).
//!
//! [`MessageWriter`] writes the start line, then header fields in call order,
//! then `Content-Length` and the body in [`MessageWriter::finish`].
//! [`MessageWriter::response_to`] starts a response to a parsed request with
//! the fields RFC 3261 §8.2.6.2 says to copy.

use std::fmt;

use super::fields::NameAddr;
use super::header::{self, HeaderKey};
use super::message::Message;
use super::method::Method;
use super::scan::{find_line_break, fmt_decimal, is_lws, is_request_uri_char, is_token_str};
use super::Error;

/// Writes one SIP message into `buf`. Every method checks the room left and
/// returns [`Error::BufferTooSmall`] instead of writing past the end; text that
/// would break the framing (CR/LF in a value, a non-token name) is refused.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

/// Characters allowed in a Request-URI written on the wire (see the parser).
fn uri_ok(uri: &str) -> bool {
    !uri.is_empty() && uri.bytes().all(is_request_uri_char)
}

fn no_line_break(s: &str) -> bool {
    !s.bytes().any(|c| c == b'\r' || c == b'\n')
}

impl<'b> MessageWriter<'b> {
    /// Start a request: `METHOD uri SIP/2.0`.
    pub fn request(buf: &'b mut [u8], method: Method<'_>, uri: &str) -> Result<Self, Error> {
        if !is_token_str(method.as_str()) {
            return Err(Error::BadMethod);
        }
        if !uri_ok(uri) {
            return Err(Error::BadRequestUri);
        }
        let mut w = MessageWriter { buf, len: 0 };
        w.put(method.as_str().as_bytes())?;
        w.put(b" ")?;
        w.put(uri.as_bytes())?;
        w.put(b" SIP/2.0\r\n")?;
        Ok(w)
    }

    /// Start a response: `SIP/2.0 code reason`.
    pub fn response(buf: &'b mut [u8], code: u16, reason: &str) -> Result<Self, Error> {
        if !(100..=699).contains(&code) {
            return Err(Error::BadStatusCode);
        }
        if !no_line_break(reason) {
            return Err(Error::BadReason);
        }
        let mut w = MessageWriter { buf, len: 0 };
        w.put(b"SIP/2.0 ")?;
        let mut d = [0u8; 20];
        w.put(fmt_decimal(u64::from(code), &mut d))?;
        w.put(b" ")?;
        w.put(reason.as_bytes())?;
        w.put(b"\r\n")?;
        Ok(w)
    }

    /// Start a response to `request` (RFC 3261 §8.2.6.2): copies every Via in
    /// order, From, To, Call-ID and CSeq (folds replaced by SP). If `to_tag` is
    /// given, the code is above 100 and the To has no tag yet, `;tag=<to_tag>`
    /// is appended to To (an unparseable To is copied as is).
    pub fn response_to(
        buf: &'b mut [u8],
        request: &Message<'_, '_>,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Result<Self, Error> {
        if let Some(t) = to_tag {
            if !is_token_str(t) {
                return Err(Error::BadParam);
            }
        }
        let mut w = MessageWriter::response(buf, code, reason)?;
        let mut vias = 0usize;
        for h in request.headers.iter().filter(|h| header::VIA.matches(h.name)) {
            w.field_unfolded("Via", h.value, None)?;
            vias += 1;
        }
        if vias == 0 {
            return Err(Error::MissingHeader("Via"));
        }
        let copy: [(HeaderKey<'static>, &'static str); 4] =
            [(header::FROM, "From"), (header::TO, "To"), (header::CALL_ID, "Call-ID"), (header::CSEQ, "CSeq")];
        for (key, name) in copy {
            let v = request
                .headers
                .iter()
                .find(|h| key.matches(h.name))
                .map(|h| h.value)
                .ok_or(Error::MissingHeader(name))?;
            let tag = match (name, to_tag) {
                // Without the letters "tag" the To cannot have a tag parameter;
                // only then is the full name-addr parse needed.
                ("To", Some(t)) if code > 100 => {
                    let maybe_tagged = v.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"tag"));
                    match maybe_tagged.then(|| NameAddr::parse(v)) {
                        None => Some(t),
                        Some(Ok(na)) if na.tag().is_none() => Some(t),
                        Some(_) => None,
                    }
                }
                _ => None,
            };
            w.field_unfolded(name, v, tag)?;
        }
        Ok(w)
    }

    /// Run `f`; on error forget whatever it wrote.
    fn atomic(&mut self, f: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        let mark = self.len;
        let r = f(self);
        if r.is_err() {
            self.len = mark;
        }
        r
    }

    fn put(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.len.checked_add(b.len()).ok_or(Error::BufferTooSmall)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(())
    }

    fn check_name(name: &str) -> Result<(), Error> {
        if !is_token_str(name) || header::CONTENT_LENGTH.matches(name) {
            return Err(Error::BadHeaderName);
        }
        Ok(())
    }

    /// `name: value` with each fold of `value` written as one SP, and an
    /// optional `;tag=` appended.
    fn field_unfolded(&mut self, name: &str, value: &str, tag: Option<&str>) -> Result<(), Error> {
        self.put(name.as_bytes())?;
        self.put(b": ")?;
        let b = value.as_bytes();
        if find_line_break(b, 0).is_none() {
            self.put(b)?;
            if let Some(t) = tag {
                self.put(b";tag=")?;
                self.put(t.as_bytes())?;
            }
            return self.put(b"\r\n");
        }
        let mut i = 0;
        while i < b.len() {
            let run = b.get(i..).unwrap_or(&[]);
            let lws = run.iter().take_while(|&&c| is_lws(c)).count();
            if lws > 0 {
                let ws = run.get(..lws).unwrap_or(&[]);
                if ws.iter().any(|&c| c == b'\r' || c == b'\n') {
                    self.put(b" ")?;
                } else {
                    self.put(ws)?;
                }
                i += lws;
            } else {
                let text = run.iter().take_while(|&&c| !is_lws(c)).count();
                self.put(run.get(..text).unwrap_or(&[]))?;
                i += text;
            }
        }
        if let Some(t) = tag {
            self.put(b";tag=")?;
            self.put(t.as_bytes())?;
        }
        self.put(b"\r\n")
    }

    /// Add a header field. `name` must be a token and not Content-Length
    /// ([`MessageWriter::finish`] writes that); `value` must not contain CR or LF.
    pub fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, Error> {
        Self::check_name(name)?;
        if !no_line_break(value) {
            return Err(Error::BadHeaderValue);
        }
        self.atomic(|w| {
            w.put(name.as_bytes())?;
            w.put(b": ")?;
            w.put(value.as_bytes())?;
            w.put(b"\r\n")
        })?;
        Ok(self)
    }

    /// Add a header field with a decimal value (`CSeq`-free numbers such as
    /// `Max-Forwards`, `Expires`).
    pub fn header_u32(&mut self, name: &str, value: u32) -> Result<&mut Self, Error> {
        let mut d = [0u8; 20];
        let digits = fmt_decimal(u64::from(value), &mut d);
        Self::check_name(name)?;
        self.atomic(|w| {
            w.put(name.as_bytes())?;
            w.put(b": ")?;
            w.put(digits)?;
            w.put(b"\r\n")
        })?;
        Ok(self)
    }

    /// Add a header field whose value is formatted (`format_args!`), without
    /// allocating. A formatted CR or LF is refused and nothing is kept.
    pub fn header_fmt(&mut self, name: &str, value: fmt::Arguments<'_>) -> Result<&mut Self, Error> {
        Self::check_name(name)?;
        self.atomic(|w| {
            w.put(name.as_bytes())?;
            w.put(b": ")?;
            let value_start = w.len;
            let mut sink = Sink { w: &mut *w, failed: false };
            if fmt::write(&mut sink, value).is_err() || sink.failed {
                return Err(Error::BufferTooSmall);
            }
            let written = w.buf.get(value_start..w.len).unwrap_or(&[]);
            if written.iter().any(|&c| c == b'\r' || c == b'\n') {
                return Err(Error::BadHeaderValue);
            }
            w.put(b"\r\n")
        })?;
        Ok(self)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet? (Never true after a constructor succeeded.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `Content-Length`, the blank line and `body`; returns the total length.
    pub fn finish(mut self, body: &[u8]) -> Result<usize, Error> {
        let mut d = [0u8; 20];
        self.put(b"Content-Length: ")?;
        self.put(fmt_decimal(body.len() as u64, &mut d))?;
        self.put(b"\r\n\r\n")?;
        self.put(body)?;
        Ok(self.len)
    }
}

struct Sink<'w, 'b> {
    w: &'w mut MessageWriter<'b>,
    failed: bool,
}

impl fmt::Write for Sink<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.w.put(s.as_bytes()).map_err(|_| {
            self.failed = true;
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::message::parse_datagram;
    use crate::wire::sip::Header;

    #[test]
    fn request_round_trip() {
        let mut buf = [0u8; 512];
        let mut w = MessageWriter::request(&mut buf, Method::Message, "sip:+447000200001@ims.lab").unwrap();
        w.header("Via", "SIP/2.0/UDP 198.18.2.2;branch=z9hG4bK1")
            .unwrap()
            .header_u32("Max-Forwards", 70)
            .unwrap()
            .header_fmt("CSeq", format_args!("{} {}", 7, Method::Message))
            .unwrap()
            .header("Content-Type", "text/plain")
            .unwrap();
        let n = w.finish(b"hi").unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            text,
            "MESSAGE sip:+447000200001@ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\nCSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        let mut h = [Header::EMPTY; 8];
        let m = parse_datagram(&buf[..n], &mut h).unwrap();
        assert_eq!(m.cseq().unwrap().number, 7);
        assert_eq!(m.body, b"hi");
    }

    #[test]
    fn refusals() {
        let mut buf = [0u8; 64];
        assert_eq!(
            MessageWriter::request(&mut buf, Method::Other("BAD METHOD"), "sip:a").unwrap_err(),
            Error::BadMethod
        );
        assert_eq!(MessageWriter::request(&mut buf, Method::Ack, "sip:a b").unwrap_err(), Error::BadRequestUri);
        assert_eq!(MessageWriter::request(&mut buf, Method::Ack, "").unwrap_err(), Error::BadRequestUri);
        assert_eq!(MessageWriter::response(&mut buf, 99, "x").unwrap_err(), Error::BadStatusCode);
        assert_eq!(MessageWriter::response(&mut buf, 200, "O\r\nK").unwrap_err(), Error::BadReason);
        let mut w = MessageWriter::response(&mut buf, 200, "OK").unwrap();
        assert_eq!(w.header("X", "a\r\nInjected: 1").unwrap_err(), Error::BadHeaderValue);
        assert_eq!(w.header("Bad Name", "a").unwrap_err(), Error::BadHeaderName);
        assert_eq!(w.header("l", "5").unwrap_err(), Error::BadHeaderName);
        assert_eq!(w.header_u32("Content-Length", 5).unwrap_err(), Error::BadHeaderName);
        let before = w.len();
        assert_eq!(w.header_fmt("X", format_args!("a{}b", "\n")).unwrap_err(), Error::BadHeaderValue);
        assert_eq!(w.len(), before);
        assert_eq!(w.header("X", &"y".repeat(100)).unwrap_err(), Error::BufferTooSmall);
        assert_eq!(w.header_fmt("X", format_args!("{}", "y".repeat(100))).unwrap_err(), Error::BufferTooSmall);
        assert_eq!(w.len(), before);
        assert!(!w.is_empty());
        // Every buffer size below the needed one fails cleanly.
        for size in 0..40 {
            let mut small = vec![0u8; size];
            let r = MessageWriter::response(&mut small, 200, "OK").and_then(|mut w| {
                w.header("Call-ID", "abc")?;
                w.finish(b"body")
            });
            assert_eq!(r, Err(Error::BufferTooSmall), "size {size}");
        }
    }

    #[test]
    fn response_to_copies_and_tags() {
        let req = b"MESSAGE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nf: <sip:c@d>;tag=1\r\nt: <sip:a@b>\r\ni: cid\r\nCSeq: 5\r\n MESSAGE\r\nl: 0\r\n\r\n";
        let mut h = [Header::EMPTY; 16];
        let m = parse_datagram(req, &mut h).unwrap();
        let mut buf = [0u8; 512];
        let n = MessageWriter::response_to(&mut buf, &m, 200, "OK", Some("xyz")).unwrap().finish(b"").unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=xyz\r\nCall-ID: cid\r\n\
CSeq: 5 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        // 100 Trying gets no tag; a To that has one keeps it.
        let n = MessageWriter::response_to(&mut buf, &m, 100, "Trying", Some("xyz")).unwrap().finish(b"").unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().contains("\r\nTo: <sip:a@b>\r\n"));
        assert_eq!(MessageWriter::response_to(&mut buf, &m, 200, "OK", Some("bad tag")).unwrap_err(), Error::BadParam);
        let no_via = b"MESSAGE sip:a@b SIP/2.0\r\nf: <sip:c@d>;tag=1\r\n\r\n";
        let m = parse_datagram(no_via, &mut h).unwrap();
        assert_eq!(MessageWriter::response_to(&mut buf, &m, 200, "OK", None).unwrap_err(), Error::MissingHeader("Via"));
    }
}
