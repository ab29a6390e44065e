//! Typed views of the header field values iwf reads: name-addr / addr-spec
//! (From, To, Contact, Route, Record-Route), Via, CSeq and Content-Type.
//! Each `parse` validates the whole element and returns a borrowed view.

use std::fmt;
use std::net::IpAddr;

use super::header::{is_token_words, unquote_into, Params};
use super::method::Method;
use super::scan::{
    find_byte, is_lws, is_token, is_token_str, parse_decimal, quoted_string_end, trim_lws, trim_lws_start,
};
use super::uri::{Host, Uri};
use super::Error;

/// `name-addr / addr-spec` followed by header parameters (RFC 3261 §20.10,
/// §20.20, §20.39; ABNF §25.1):
///
/// ```text
/// from-spec = ( name-addr / addr-spec ) *( SEMI from-param )
/// name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
/// display-name = *(token LWS) / quoted-string
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    raw: &'a str,
    /// Display name as received: a quoted string with its quotes, or the
    /// token words; `None` when absent. [`NameAddr::display_name_into`] unquotes.
    pub display_name: Option<&'a str>,
    /// The URI (inside `<>` for the name-addr form).
    pub uri: Uri<'a>,
    /// Header parameters after the URI (`;tag=...`).
    pub params: Params<'a>,
    /// Was the URI enclosed in angle brackets?
    pub angle: bool,
}

impl<'a> NameAddr<'a> {
    /// Parse one element (not a comma-separated list).
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        let t = trim_lws(s);
        let b = t.as_bytes();
        match b.first() {
            None => Err(Error::BadNameAddr),
            Some(b'"') => {
                let end = quoted_string_end(b, 0).ok_or(Error::BadQuotedString)?;
                let rest = trim_lws_start(t.get(end..).unwrap_or(""));
                if !rest.starts_with('<') {
                    return Err(Error::BadNameAddr);
                }
                Self::parse_angle(t, t.get(..end), rest)
            }
            Some(_) => match find_byte(b, b'<') {
                Some(lt) => {
                    let d = trim_lws(t.get(..lt).unwrap_or(""));
                    if !is_token_words(d) {
                        return Err(Error::BadNameAddr);
                    }
                    let display = if d.is_empty() { None } else { Some(d) };
                    Self::parse_angle(t, display, t.get(lt..).unwrap_or(""))
                }
                None => {
                    // addr-spec: the URI ends at the first ';' or LWS; a URI that
                    // needs '?' (or ',' / ';') MUST use the name-addr form (§20).
                    let end = b.iter().position(|&c| c == b';' || is_lws(c)).unwrap_or(b.len());
                    let uri_s = t.get(..end).ok_or(Error::BadNameAddr)?;
                    if uri_s.contains('?') {
                        return Err(Error::BadNameAddr);
                    }
                    Ok(NameAddr {
                        raw: t,
                        display_name: None,
                        uri: Uri::parse(uri_s)?,
                        params: Params::parse_header(t.get(end..).unwrap_or(""))?,
                        angle: false,
                    })
                }
            },
        }
    }

    fn parse_angle(raw: &'a str, display: Option<&'a str>, s: &'a str) -> Result<Self, Error> {
        let gt = find_byte(s.as_bytes(), b'>').ok_or(Error::BadNameAddr)?;
        let inner = s.get(1..gt).ok_or(Error::BadNameAddr)?;
        // RFC 4475 badaspec: no LWS inside the brackets.
        if inner.is_empty() || inner.bytes().any(is_lws) {
            return Err(Error::BadNameAddr);
        }
        Ok(NameAddr {
            raw,
            display_name: display,
            uri: Uri::parse(inner)?,
            params: Params::parse_header(s.get(gt + 1..).unwrap_or(""))?,
            angle: true,
        })
    }

    /// The element text as received (LWS-trimmed).
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }

    /// The display name without quotes and backslash escapes, into `out`.
    /// `Ok("")` when there is none.
    pub fn display_name_into<'b>(&self, out: &'b mut [u8]) -> Result<&'b str, Error> {
        match self.display_name {
            Some(d) => unquote_into(d, out),
            None => Ok(""),
        }
    }
}

impl fmt::Display for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// One Via element (RFC 3261 §20.42, §18.2.1):
///
/// ```text
/// via-parm = sent-protocol LWS sent-by *( SEMI via-params )
/// sent-protocol = protocol-name SLASH protocol-version SLASH transport
/// sent-by = host [ COLON port ]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP`.
    pub protocol: &'a str,
    /// `2.0`.
    pub version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, or any other token.
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// via-params (`branch`, `received`, `rport`, `maddr`, `ttl`, ...).
    pub params: Params<'a>,
}

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

impl<'a> Via<'a> {
    /// Parse one via-parm (not a comma-separated list).
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        let t = trim_lws(s);
        let (protocol, rest) = split_slash(t)?;
        let (version, rest) = split_slash(rest)?;
        let rest = trim_lws_start(rest);
        let rb = rest.as_bytes();
        let tend = rb.iter().position(|&c| !is_token(c)).unwrap_or(rb.len());
        let transport = rest.get(..tend).ok_or(Error::BadVia)?;
        if transport.is_empty() || !matches!(rb.get(tend), Some(&c) if is_lws(c)) {
            return Err(Error::BadVia);
        }
        let rest = trim_lws_start(rest.get(tend..).unwrap_or(""));
        let rb = rest.as_bytes();
        let hend = if rb.first() == Some(&b'[') {
            find_byte(rb, b']').map(|i| i + 1).ok_or(Error::BadVia)?
        } else {
            rb.iter().position(|&c| c == b':' || c == b';' || is_lws(c)).unwrap_or(rb.len())
        };
        let host = Host::parse(rest.get(..hend).ok_or(Error::BadVia)?).map_err(|_| Error::BadVia)?;
        let mut rest = trim_lws_start(rest.get(hend..).unwrap_or(""));
        let mut port = None;
        if let Some(p) = rest.strip_prefix(':') {
            let p = trim_lws_start(p);
            let pb = p.as_bytes();
            let pend = pb.iter().position(|c| !c.is_ascii_digit()).unwrap_or(pb.len());
            let v = parse_decimal(p.get(..pend).unwrap_or(""), 5).ok_or(Error::BadVia)?;
            port = Some(u16::try_from(v).map_err(|_| Error::BadVia)?);
            rest = p.get(pend..).unwrap_or("");
        }
        let params = Params::parse_header_with(rest, |p| {
            let ok = if p.name.eq_ignore_ascii_case("branch") {
                p.value.is_some_and(is_token_str)
            } else if p.name.eq_ignore_ascii_case("rport") {
                p.value.is_none_or(|v| parse_decimal(v, 5).and_then(|v| u16::try_from(v).ok()).is_some())
            } else if p.name.eq_ignore_ascii_case("received") {
                p.value.is_some_and(|r| r.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok())
            } else {
                true
            };
            if ok {
                Ok(())
            } else {
                Err(Error::BadVia)
            }
        })?;
        Ok(Via { protocol, version, transport, host, port, params })
    }

    /// The `branch` parameter as received.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.value("branch")
    }

    /// The branch if it is an RFC 3261 transaction id: starts with the magic
    /// cookie and has something after it (RFC 4475 `badbranch` has only the
    /// cookie and must be treated as an RFC 2543 request).
    pub fn rfc3261_branch(&self) -> Option<&'a str> {
        self.branch().filter(|b| b.len() > BRANCH_MAGIC_COOKIE.len() && b.starts_with(BRANCH_MAGIC_COOKIE))
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<IpAddr> {
        let r = self.params.value("received")?;
        r.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    /// The `rport` parameter (RFC 3581): `None` absent, `Some(None)` requested
    /// (flag), `Some(Some(port))` filled in by the server.
    pub fn rport(&self) -> Option<Option<u16>> {
        let p = self.params.get("rport")?;
        Some(p.value.and_then(|v| parse_decimal(v, 5)).and_then(|v| u16::try_from(v).ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }
}

fn split_slash(s: &str) -> Result<(&str, &str), Error> {
    let i = find_byte(s.as_bytes(), b'/').ok_or(Error::BadVia)?;
    let head = trim_lws(s.get(..i).unwrap_or(""));
    if !is_token_str(head) {
        return Err(Error::BadVia);
    }
    Ok((head, trim_lws_start(s.get(i + 1..).unwrap_or(""))))
}

impl fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{} {}", self.protocol, self.version, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(self.params.as_str())
    }
}

/// `CSeq = 1*DIGIT LWS Method` (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (32-bit unsigned, RFC 3261 §8.1.1.5).
    pub number: u32,
    /// Method, which must equal the request's (RFC 4475 mismatch01/02).
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parse a CSeq value.
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        let t = trim_lws(s);
        let b = t.as_bytes();
        let dend = b.iter().position(|c| !c.is_ascii_digit()).unwrap_or(b.len());
        let number =
            parse_decimal(t.get(..dend).unwrap_or(""), 10).and_then(|v| u32::try_from(v).ok()).ok_or(Error::BadCSeq)?;
        if !matches!(b.get(dend), Some(&c) if is_lws(c)) {
            return Err(Error::BadCSeq);
        }
        let m = trim_lws_start(t.get(dend..).unwrap_or(""));
        if !is_token_str(m) {
            return Err(Error::BadCSeq);
        }
        Ok(CSeq { number, method: Method::from_token(m) })
    }
}

impl fmt::Display for CSeq<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number, self.method)
    }
}

/// `media-type = m-type SLASH m-subtype *(SEMI m-parameter)` (RFC 3261 §20.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type (`message`).
    pub type_name: &'a str,
    /// Subtype (`cpim`).
    pub subtype: &'a str,
    /// Parameters (`;charset=UTF-8`).
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parse a Content-Type value.
    pub fn parse(s: &'a str) -> Result<Self, Error> {
        let t = trim_lws(s);
        let slash = find_byte(t.as_bytes(), b'/').ok_or(Error::BadContentType)?;
        let type_name = trim_lws(t.get(..slash).unwrap_or(""));
        let rest = trim_lws_start(t.get(slash + 1..).unwrap_or(""));
        let rb = rest.as_bytes();
        let send = rb.iter().position(|&c| !is_token(c)).unwrap_or(rb.len());
        let subtype = rest.get(..send).unwrap_or("");
        if !is_token_str(type_name) || !is_token_str(subtype) {
            return Err(Error::BadContentType);
        }
        let params = Params::parse_header(rest.get(send..).unwrap_or(""))?;
        Ok(MediaType { type_name, subtype, params })
    }

    /// Is this `type/subtype` (case-insensitive)?
    pub fn is(&self, type_name: &str, subtype: &str) -> bool {
        self.type_name.eq_ignore_ascii_case(type_name) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// Is this the media type `essence` (`"message/cpim"`), case-insensitive?
    pub fn is_essence(&self, essence: &str) -> bool {
        match essence.split_once('/') {
            Some((t, s)) => self.is(t, s),
            None => false,
        }
    }

    /// `charset` parameter, unquoted if it was a simple quoted token.
    pub fn charset(&self) -> Option<&'a str> {
        self.params.value("charset").map(|c| c.trim_matches('"'))
    }
}

impl fmt::Display for MediaType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.type_name, self.subtype, self.params.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::uri::SipUri;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""Legacy User" <sip:+447000100001@iwf.ims.lab>;tag=49583"#).unwrap();
        assert_eq!(n.display_name, Some(r#""Legacy User""#));
        assert_eq!(n.tag(), Some("49583"));
        assert!(n.angle);
        assert_eq!(n.uri.as_str(), "sip:+447000100001@iwf.ims.lab");
        let mut b = [0u8; 32];
        assert_eq!(n.display_name_into(&mut b).unwrap(), "Legacy User");

        let n = NameAddr::parse("sip:user@example.com;tag=3xfe-9921883-z9f").unwrap();
        assert!(!n.angle);
        assert_eq!(n.uri.as_str(), "sip:user@example.com");
        assert_eq!(n.tag(), Some("3xfe-9921883-z9f"));

        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name, Some("caller"));
        assert_eq!(n.display_name_into(&mut b).unwrap(), "caller");

        let n = NameAddr::parse(" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.tag(), Some("1918181833n"));

        let n = NameAddr::parse("<tel:+1-201-555-0123>").unwrap();
        assert_eq!(n.uri.as_tel().unwrap().number, "+1-201-555-0123");
        assert_eq!(n.display_name_into(&mut b).unwrap(), "");

        let n = NameAddr::parse("isbn:2983792873").unwrap();
        assert_eq!(n.uri.scheme(), "isbn");
    }

    #[test]
    fn name_addr_errors() {
        assert_eq!(NameAddr::parse(""), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#), Err(Error::BadQuotedString));
        assert_eq!(NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#), Err(Error::BadParam));
        assert_eq!(NameAddr::parse("<sip:a@b"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(r#""x" sip:a@b"#), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse("<sip:a@b> junk"), Err(Error::BadParam));
        assert_eq!(NameAddr::parse("<>"), Err(Error::BadNameAddr));
        assert!(NameAddr::parse("<sip:@b>").is_err());
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host, Host::Ipv4("198.18.2.1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
        assert_eq!(v.to_string(), "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds;rport");

        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert_eq!(v.rfc3261_branch(), None);

        let v = Via::parse(" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239").unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK30239"));

        let v = Via::parse("SIP/2.0/TLS [2001:db8::9]:5061;received=2001:db8::1;rport=5062").unwrap();
        assert_eq!(v.host, Host::Ipv6("2001:db8::9".parse().unwrap()));
        assert_eq!(v.received(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(v.rport(), Some(Some(5062)));

        let v = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert_eq!(v.rfc3261_branch(), None);
        let v = Via::parse("SIP/2.0/TCP host.example.com ; maddr = 224.0.0.1").unwrap();
        assert_eq!(v.maddr(), Some("224.0.0.1"));
        assert_eq!(v.port, None);
    }

    #[test]
    fn via_errors() {
        for s in [
            "",
            "SIP/2.0",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP192.0.2.1",
            "SIP/2.0/UDP 192.0.2.1:99999",
            "SIP/2.0/UDP 192.0.2.1;rport=x",
            "SIP/2.0/UDP 192.0.2.1;received=host",
            "SIP/2.0/UDP 192.0.2.1;branch",
            "SIP 2.0/UDP x",
            "SIP/2.0/UDP bad..host",
        ] {
            assert!(Via::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(Via::parse("SIP/2.0/UDP 192.0.2.15;;"), Err(Error::BadParam));
    }

    #[test]
    fn cseq_and_media_type() {
        let c = CSeq::parse("0009\r\n  INVITE").unwrap();
        assert_eq!(c, CSeq { number: 9, method: Method::Invite });
        assert_eq!(c.to_string(), "9 INVITE");
        assert_eq!(CSeq::parse("36893488147419103232 REGISTER"), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("1INVITE"), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("1 "), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("x INVITE"), Err(Error::BadCSeq));
        assert_eq!(CSeq::parse("4294967295 FOO").unwrap().method, Method::Other("FOO"));

        let m = MediaType::parse("text/plain ; charset=\"UTF-8\"").unwrap();
        assert!(m.is("TEXT", "Plain"));
        assert!(m.is_essence("text/plain"));
        assert!(!m.is_essence("text"));
        assert_eq!(m.charset(), Some("UTF-8"));
        let m = MediaType::parse("message / cpim").unwrap();
        assert!(m.is_essence("message/cpim"));
        assert_eq!(MediaType::parse("text"), Err(Error::BadContentType));
        assert_eq!(MediaType::parse("text/"), Err(Error::BadContentType));
        assert_eq!(MediaType::parse("text/plain junk"), Err(Error::BadParam));
        let _ = SipUri::parse("sip:a@b").unwrap();
    }
}
