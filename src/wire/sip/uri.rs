//! URIs: `sip:` / `sips:` (RFC 3261 §19.1, ABNF §25.1), `tel:` (RFC 3966) and
//! any other scheme as opaque data. Views borrow from the input; percent-escapes
//! stay raw ([`unescape_into`], [`escaped_eq`] decode them when needed).
//!
//! ```text
//! SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport = host [ ":" port ]        host = hostname / IPv4address / "[" IPv6 "]"
//! telephone-uri = "tel:" ( global-number / local-number )   ; RFC 3966 §3
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::header::Params;
use super::scan::{find_byte, parse_decimal};
use super::Error;

/// A parsed URI of any scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque (RFC 3261 `absoluteURI`).
    Other(OtherUri<'a>),
}

impl<'a> Uri<'a> {
    /// Parse `s` (no surrounding whitespace or angle brackets).
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        let colon = find_byte(s.as_bytes(), b':').ok_or(Error::BadUri)?;
        let scheme = s.get(..colon).ok_or(Error::BadUri)?;
        let rest = s.get(colon + 1..).ok_or(Error::BadUri)?;
        if !is_scheme(scheme) {
            return Err(Error::BadUri);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(s, false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(s, true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_rest(s, rest).map(Uri::Tel)
        } else {
            if rest.is_empty() || !rest.bytes().all(is_uric) {
                return Err(Error::BadUri);
            }
            Ok(Uri::Other(OtherUri { raw: s, scheme, rest }))
        }
    }

    /// The URI text as received.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Other(u) => u.raw,
        }
    }

    /// The scheme as received (`sip`, `SIPS`, `tel`, ...).
    pub fn scheme(&self) -> &'a str {
        let raw = self.as_str();
        raw.get(..find_byte(raw.as_bytes(), b':').unwrap_or(0)).unwrap_or("")
    }

    /// The SIP/SIPS view, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The tel view, if this is one.
    pub fn as_tel(&self) -> Option<&TelUri<'a>> {
        match self {
            Uri::Tel(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URI of a scheme iwf does not interpret (`http:`, `isbn:`, `soap.beep:` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtherUri<'a> {
    raw: &'a str,
    /// Scheme as received.
    pub scheme: &'a str,
    /// Everything after the first `:`.
    pub rest: &'a str,
}

impl<'a> OtherUri<'a> {
    /// The URI text as received.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

/// Host part of a SIP URI or Via sent-by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as received (compare case-insensitively).
    Domain(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (`[...]` on the wire).
    Ipv6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parse a host: `[v6]`, dotted quad, or hostname.
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(Error::BadHost)?;
            return inner.parse().map(Host::Ipv6).map_err(|_| Error::BadHost);
        }
        if s.is_empty() {
            return Err(Error::BadHost);
        }
        if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return s.parse().map(Host::Ipv4).map_err(|_| Error::BadHost);
        }
        // hostname = *( domainlabel "." ) toplabel [ "." ], labels alphanum / "-"
        // not starting or ending with "-"; "_" tolerated as deployed systems use it.
        let b = s.strip_suffix('.').unwrap_or(s).as_bytes();
        let mut label_len = 0usize;
        let mut prev = b'.';
        for &c in b {
            if c == b'.' {
                if label_len == 0 || prev == b'-' {
                    return Err(Error::BadHost);
                }
                label_len = 0;
            } else if c.is_ascii_alphanumeric() || c == b'_' || (c == b'-' && label_len > 0) {
                label_len += 1;
            } else {
                return Err(Error::BadHost);
            }
            prev = c;
        }
        if label_len == 0 || prev == b'-' {
            return Err(Error::BadHost);
        }
        Ok(Host::Domain(s))
    }

    /// Same host? Domains compare case-insensitively.
    pub fn eq_host(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A `sip:` / `sips:` URI (RFC 3261 §19.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    raw: &'a str,
    /// `sips:`?
    pub secure: bool,
    /// User part, raw (percent-escapes kept; may hold `;` params of a
    /// telephone-subscriber, as in `sip:user;par=u%40example.net@example.com`).
    pub user: Option<&'a str>,
    /// Password, raw (deprecated by RFC 3261 but parsed).
    pub password: Option<&'a str>,
    /// Host.
    pub host: Host<'a>,
    /// Port, if given.
    pub port: Option<u16>,
    /// `uri-parameters` (`;transport=tcp;lr;user=phone`).
    pub params: Params<'a>,
    /// `headers` after `?`, raw, without the `?`.
    pub headers: Option<&'a str>,
}

impl<'a> SipUri<'a> {
    /// Parse a `sip:` or `sips:` URI.
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(Error::BadUri),
        }
    }

    fn parse_rest(raw: &'a str, secure: bool, rest: &'a str) -> Result<Self, Error> {
        let (userinfo, hostpart) = match find_byte(rest.as_bytes(), b'@') {
            Some(at) => (rest.get(..at), rest.get(at + 1..).ok_or(Error::BadUri)?),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match find_byte(ui.as_bytes(), b':') {
                    Some(c) => (ui.get(..c).unwrap_or(""), ui.get(c + 1..)),
                    None => (ui, None),
                };
                if u.is_empty() || !valid_escaped(u, USER) {
                    return Err(Error::BadUri);
                }
                if let Some(p) = p {
                    if !valid_escaped(p, PASSWORD) {
                        return Err(Error::BadUri);
                    }
                }
                (Some(u), p)
            }
        };
        // hostport ends at ';' (params), '?' (headers) or end.
        let hb = hostpart.as_bytes();
        let host_end = if hb.first() == Some(&b'[') {
            find_byte(hb, b']').map(|i| i + 1).ok_or(Error::BadHost)?
        } else {
            hb.iter().position(|&c| matches!(c, b':' | b';' | b'?')).unwrap_or(hb.len())
        };
        let host = Host::parse(hostpart.get(..host_end).ok_or(Error::BadUri)?)?;
        let mut rest = hostpart.get(host_end..).unwrap_or("");
        let mut port = None;
        if let Some(p) = rest.strip_prefix(':') {
            let end = p.bytes().position(|c| c == b';' || c == b'?').unwrap_or(p.len());
            port = Some(parse_port(p.get(..end).unwrap_or(""))?);
            rest = p.get(end..).unwrap_or("");
        }
        let params_end = find_byte(rest.as_bytes(), b'?').unwrap_or(rest.len());
        let params_raw = rest.get(..params_end).unwrap_or("");
        if !params_raw.is_empty() {
            validate_uri_params(params_raw)?;
        }
        let headers = match rest.get(params_end..).and_then(|h| h.strip_prefix('?')) {
            Some(h) => {
                if !valid_uri_headers(h) {
                    return Err(Error::BadUri);
                }
                Some(h)
            }
            None => None,
        };
        Ok(SipUri { raw, secure, user, password, host, port, params: Params::from_validated(params_raw), headers })
    }

    /// The URI text as received.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// `transport=` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }

    /// `user=` parameter (`phone` marks a telephone-subscriber user part).
    pub fn user_param(&self) -> Option<&'a str> {
        self.params.value("user")
    }

    /// `lr` (loose routing) present?
    pub fn lr(&self) -> bool {
        self.params.has("lr")
    }

    /// `maddr=` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }

    /// The telephone-subscriber number of the user part when `user=phone`
    /// (user part up to its first `;`), e.g. `+447000200001`.
    pub fn phone_number(&self) -> Option<&'a str> {
        if !self.user_param()?.eq_ignore_ascii_case("phone") {
            return None;
        }
        let u = self.user?;
        u.get(..u.find(';').unwrap_or(u.len()))
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// A `tel:` URI (RFC 3966 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    raw: &'a str,
    /// The number as written, with visual separators (`+44-7000-200001`).
    pub number: &'a str,
    /// Parameters (`;phone-context=...;ext=...`).
    pub params: Params<'a>,
}

impl<'a> TelUri<'a> {
    /// Parse a `tel:` URI.
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        match Uri::parse(s)? {
            Uri::Tel(u) => Ok(u),
            _ => Err(Error::BadUri),
        }
    }

    fn parse_rest(raw: &'a str, rest: &'a str) -> Result<Self, Error> {
        let end = find_byte(rest.as_bytes(), b';').unwrap_or(rest.len());
        let number = rest.get(..end).ok_or(Error::BadTelUri)?;
        let params_raw = rest.get(end..).unwrap_or("");
        if !params_raw.is_empty() {
            validate_uri_params(params_raw).map_err(|_| Error::BadTelUri)?;
        }
        let params = Params::from_validated(params_raw);
        if let Some(global) = number.strip_prefix('+') {
            // global-number-digits = "+" *phonedigit DIGIT *phonedigit
            if !global.bytes().any(|c| c.is_ascii_digit())
                || !global.bytes().all(|c| c.is_ascii_digit() || is_visual_separator(c))
            {
                return Err(Error::BadTelUri);
            }
        } else {
            // local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex,
            // and a local number requires phone-context (RFC 3966 §5.1.5).
            let is_hex = |c: u8| c.is_ascii_hexdigit() || c == b'*' || c == b'#';
            if !number.bytes().any(is_hex)
                || !number.bytes().all(|c| is_hex(c) || is_visual_separator(c))
                || !params.has("phone-context")
            {
                return Err(Error::BadTelUri);
            }
        }
        Ok(TelUri { raw, number, params })
    }

    /// The URI text as received.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// A global number (`+` E.164)?
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// `phone-context=` parameter (required for local numbers).
    pub fn phone_context(&self) -> Option<&'a str> {
        self.params.value("phone-context")
    }

    /// `ext=` parameter.
    pub fn extension(&self) -> Option<&'a str> {
        self.params.value("ext")
    }

    /// The number without visual separators (`+44-7000-200001` → `+447000200001`).
    pub fn digits_into<'b>(&self, out: &'b mut [u8]) -> Result<&'b str, Error> {
        let mut n = 0usize;
        for c in self.number.bytes().filter(|&c| !is_visual_separator(c)) {
            *out.get_mut(n).ok_or(Error::BufferTooSmall)? = c;
            n += 1;
        }
        let used = out.get(..n).ok_or(Error::BufferTooSmall)?;
        std::str::from_utf8(used).map_err(|_| Error::InvalidUtf8)
    }
}

impl fmt::Display for TelUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

fn is_visual_separator(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'(' | b')')
}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic())
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Character classes of RFC 3261 §25.1 URI grammar, one bit each.
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const PARAM: u8 = 4;
const HEADER: u8 = 8;
const URIC: u8 = 16;

static URI_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        // unreserved = alphanum / mark
        let unreserved =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')');
        let mut m = 0;
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            m |= USER;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            m |= PASSWORD;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            m |= PARAM;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            m |= HEADER;
        }
        // RFC 2396 uric (reserved / unreserved / escaped) plus "#" and "[]".
        if unreserved
            || matches!(
                c,
                b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b',' | b'%' | b'#' | b'[' | b']'
            )
        {
            m |= URIC;
        }
        t[i] = m;
        i += 1;
    }
    t
};

#[inline]
fn in_class(c: u8, class: u8) -> bool {
    URI_CLASS[c as usize] & class != 0
}

/// Characters of an opaque `absoluteURI`.
pub(crate) fn is_uric(c: u8) -> bool {
    in_class(c, URIC)
}

/// Every byte is in `class` or part of a well-formed `%HH` escape.
fn valid_escaped(s: &str, class: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if in_class(c, class) {
            i += 1;
        } else if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            return false;
        }
    }
    true
}

fn parse_port(s: &str) -> Result<u16, Error> {
    parse_decimal(s, 5).and_then(|v| u16::try_from(v).ok()).ok_or(Error::BadPort)
}

/// `*( ";" pname [ "=" pvalue ] )`, pname/pvalue = 1*paramchar.
fn validate_uri_params(raw: &str) -> Result<(), Error> {
    let b = raw.as_bytes();
    if b.first() != Some(&b';') {
        return Err(Error::BadUri);
    }
    // One pass: each parameter is `;name` or `;name=value`, both non-empty.
    let mut i = 1;
    loop {
        let name_start = i;
        while matches!(b.get(i), Some(&c) if c != b';' && c != b'=') {
            i += 1;
        }
        let name = raw.get(name_start..i).unwrap_or("");
        if name.is_empty() || !valid_escaped(name, PARAM) {
            return Err(Error::BadUri);
        }
        if b.get(i) == Some(&b'=') {
            i += 1;
            let value_start = i;
            while matches!(b.get(i), Some(&c) if c != b';') {
                i += 1;
            }
            let value = raw.get(value_start..i).unwrap_or("");
            if value.is_empty() || !valid_escaped(value, PARAM) {
                return Err(Error::BadUri);
            }
        }
        match b.get(i) {
            Some(b';') => i += 1,
            _ => return Ok(()),
        }
    }
}

/// `hname "=" hvalue *( "&" hname "=" hvalue )`.
fn valid_uri_headers(h: &str) -> bool {
    h.split('&').all(|kv| match kv.find('=') {
        Some(eq) => {
            let name = kv.get(..eq).unwrap_or("");
            let value = kv.get(eq + 1..).unwrap_or("");
            !name.is_empty() && valid_escaped(name, HEADER) && valid_escaped(value, HEADER)
        }
        None => false,
    })
}

/// Iterator decoding percent-escapes byte by byte; a `%` not followed by two
/// hex digits is yielded literally.
#[derive(Clone, Debug)]
pub struct Unescape<'a> {
    b: &'a [u8],
    i: usize,
}

/// Decode the percent-escapes of `s` lazily.
pub fn unescaped(s: &str) -> Unescape<'_> {
    Unescape { b: s.as_bytes(), i: 0 }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if c == b'%' {
            let h = self.b.get(self.i + 1).copied().and_then(hex_val);
            let l = self.b.get(self.i + 2).copied().and_then(hex_val);
            if let (Some(h), Some(l)) = (h, l) {
                self.i += 3;
                return Some(h << 4 | l);
            }
        }
        self.i += 1;
        Some(c)
    }
}

/// Decode the percent-escapes of `s` into `out` (RFC 3261 §19.1.2); the result
/// may contain any byte, NUL included (RFC 4475 `escnull`).
pub fn unescape_into<'b>(s: &str, out: &'b mut [u8]) -> Result<&'b [u8], Error> {
    let mut n = 0usize;
    for c in unescaped(s) {
        *out.get_mut(n).ok_or(Error::BufferTooSmall)? = c;
        n += 1;
    }
    out.get(..n).ok_or(Error::BufferTooSmall)
}

/// Equal after decoding percent-escapes (RFC 3261 §19.1.4: `sip:%61lice@x`
/// equals `sip:alice@x`); case-sensitive, as user parts are.
pub fn escaped_eq(a: &str, b: &str) -> bool {
    unescaped(a).eq(unescaped(b))
}

/// Equal after decoding percent-escapes, ASCII case-insensitively (for hosts
/// and parameter names/values).
pub fn escaped_eq_ignore_case(a: &str, b: &str) -> bool {
    unescaped(a).map(|c| c.to_ascii_lowercase()).eq(unescaped(b).map(|c| c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u = SipUri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y").unwrap();
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=x&h=y"));
        assert_eq!(u.to_string(), "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y");

        let u = SipUri::parse("sip:+447000200001@ims.lab;user=phone").unwrap();
        assert_eq!(u.phone_number(), Some("+447000200001"));
        assert_eq!(u.host, Host::Domain("ims.lab"));
        assert_eq!(u.port, None);

        let u = SipUri::parse("sip:192.0.2.4").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 4)));
        assert!(Uri::parse("SIP:Example.COM").unwrap().as_sip().is_some());
    }

    #[test]
    fn torture_uris() {
        // RFC 4475 intmeth: user with ? / ; and a password full of marks.
        let u = SipUri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(u.user, Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(u.password, Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        assert_eq!(u.host, Host::Domain("example.com"));
        // semiuri: the ';' belongs to the user part.
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
        // esc01
        let u = SipUri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(unescape_into(u.user.unwrap(), &mut buf).unwrap(), b"sips:user@example.com");
        let u = SipUri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31").unwrap();
        assert!(escaped_eq(u.user.unwrap(), "caller"));
        let p: Vec<_> = u.params.iter().collect();
        assert!(escaped_eq(p[0].name, "lr"));
        assert!(escaped_eq(p[1].name, "name"));
        assert_eq!(unescape_into(p[1].value.unwrap(), &mut buf).unwrap(), b"value%41");
        // escnull
        let u = SipUri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(unescape_into(u.user.unwrap(), &mut buf).unwrap(), b"null-\0-null");
        // escruri keeps its headers
        let u = SipUri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(u.headers, Some("Route=%3Csip:example.com%3E"));
    }

    #[test]
    fn bad_sip_uris() {
        for s in [
            "sip:",
            "sip:@example.com",
            "sip:user@",
            "sip:user@exa mple.com",
            "sip:user@example.com:99999",
            "sip:user@example.com:",
            "sip:user@[::1",
            "sip:user@[zz::1]",
            "sip:user@300.1.1.1",
            "sip:user@example.com;;lr",
            "sip:user@example.com;x=",
            "sip:us%zzer@example.com",
            "sip:user@example.com?noequals",
            "sip:user@-bad-.com",
            "<sip:user@example.com>",
            ":nothing",
            "1sip:x",
        ] {
            assert!(Uri::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn tel_uris() {
        let t = TelUri::parse("tel:+44-7000-200001;ext=12").unwrap();
        assert!(t.is_global());
        assert_eq!(t.number, "+44-7000-200001");
        assert_eq!(t.extension(), Some("12"));
        let mut b = [0u8; 32];
        assert_eq!(t.digits_into(&mut b).unwrap(), "+447000200001");
        let t = TelUri::parse("tel:7042;phone-context=example.com").unwrap();
        assert!(!t.is_global());
        assert_eq!(t.phone_context(), Some("example.com"));
        let t = TelUri::parse("tel:863-1234;phone-context=+1-914-555").unwrap();
        assert_eq!(t.phone_context(), Some("+1-914-555"));
        assert_eq!(TelUri::parse("tel:7042"), Err(Error::BadTelUri));
        assert_eq!(TelUri::parse("tel:+"), Err(Error::BadTelUri));
        assert_eq!(TelUri::parse("tel:+1 2"), Err(Error::BadTelUri));
        assert_eq!(TelUri::parse("tel:+12;;x"), Err(Error::BadTelUri));
        assert_eq!(t.digits_into(&mut [0u8; 3]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn other_schemes_are_data() {
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme(), "soap.beep");
        assert_eq!(u.as_str(), "soap.beep://192.0.2.103:3002");
        let u = Uri::parse("isbn:2983792873").unwrap();
        assert!(matches!(u, Uri::Other(OtherUri { scheme: "isbn", rest: "2983792873", .. })));
        assert!(Uri::parse("http:").is_err());
        assert!(Uri::parse("http:a b").is_err());
    }

    #[test]
    fn escapes() {
        assert!(escaped_eq("%75se%72", "user"));
        assert!(!escaped_eq("%75se%72", "USER"));
        assert!(escaped_eq_ignore_case("%75se%72", "USER"));
        assert!(escaped_eq("100%", "100%"));
        assert!(escaped_eq("%Z%45", "%ZE"));
        assert_eq!(unescape_into("%41%4", &mut [0u8; 8]).unwrap(), b"A%4");
        assert_eq!(unescape_into("abc", &mut [0u8; 2]), Err(Error::BufferTooSmall));
    }
}
