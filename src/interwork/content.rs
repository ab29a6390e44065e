//! A SIP MESSAGE's body, looked at once: whether it is CPIM and, if so, the parsed CPIM
//! message that every later step reads (the IMDN check, the media type, the
//! conversion), so that no step parses it again.
use crate::wire::cpim::{self, CpimError, CpimHeader, CpimMessage};
use crate::wire::sip::Message;

/// CPIM header fields parsed per message (more: the CPIM message does not parse).
pub const MAX_CPIM_HEADERS: usize = 32;

/// What a MESSAGE carries.
#[derive(Debug)]
pub enum SipContent<'h, 'a> {
    /// `message/cpim`, parsed.
    Cpim(CpimMessage<'h, 'a>),
    /// `message/cpim` that does not parse.
    BadCpim(CpimError),
    /// Another media type, or none: the SIP body itself is the content, of this
    /// Content-Type value (empty when absent).
    Plain(&'a [u8]),
}

impl<'h, 'a> SipContent<'h, 'a> {
    /// Looks at `msg`'s Content-Type (its essence only: no parameter is parsed) and
    /// parses a CPIM body into `headers`.
    pub fn of(msg: &Message<'a, '_>, headers: &'h mut [CpimHeader<'a>]) -> SipContent<'h, 'a> {
        let content_type = msg
            .headers
            .iter()
            .find(|h| match h.name.as_bytes() {
                [c] => c | 0x20 == b'c',
                name => eq_ci(name, b"Content-Type"),
            })
            .map_or(&b""[..], |h| h.value.as_bytes());
        if !media_essence_is(content_type, b"message/cpim") {
            return SipContent::Plain(content_type);
        }
        match cpim::parse(msg.body, headers) {
            Ok(c) => SipContent::Cpim(c),
            Err(e) => SipContent::BadCpim(e),
        }
    }
}

/// ASCII case-insensitive equality, with the exact match first (the common case).
#[inline]
pub(crate) fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

/// Whether a MIME header value's first token (before `;`) is `essence`, any case.
pub(crate) fn media_essence_is(value: &[u8], essence: &[u8]) -> bool {
    let v = value.trim_ascii();
    match (v.get(..essence.len()), v.get(essence.len()..)) {
        (Some(head), Some(rest)) if eq_ci(head, essence) => matches!(rest.trim_ascii().first(), None | Some(b';')),
        _ => false,
    }
}
