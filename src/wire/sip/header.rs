//! Header fields: names and compact forms (RFC 3261 §7.3.3), comma-separated
//! lists (§7.3.1), generic parameters (§25.1 `generic-param`), line folding and
//! quoted strings.

use super::scan::{
    find_in_set, is_lws, is_token, is_token_str, quoted_string_end, trim_lws, LIST_DELIMS, PARAM_DELIMS,
};
use super::Error;

/// One header field as it appears on the wire, borrowed from the message.
///
/// `value` has leading and trailing linear white space removed; a folded value
/// (RFC 3261 §7.3.1 continuation lines) keeps its inner CR LF + WSP as they were:
/// see [`Header::is_folded`] and [`unfold_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name exactly as received (compact or full form, any case).
    pub name: &'a str,
    /// Field value, LWS-trimmed, possibly folded.
    pub value: &'a str,
}

impl<'a> Header<'a> {
    /// An empty header, to initialise the caller's header array.
    pub const EMPTY: Header<'static> = Header { name: "", value: "" };

    /// Does this header have `name`? Case-insensitive and compact-form aware
    /// (`is("From")` matches `f:`; `is("f")` matches `From:`).
    #[inline]
    pub fn is(&self, name: &str) -> bool {
        HeaderKey::new(name).matches(self.name)
    }

    /// Does the value span several lines (RFC 3261 §7.3.1 folding)?
    #[inline]
    pub fn is_folded(&self) -> bool {
        self.value.bytes().any(|c| c == b'\n' || c == b'\r')
    }

    /// The comma-separated elements of the value (RFC 3261 §7.3.1).
    #[inline]
    pub fn items(&self) -> ListItems<'a> {
        ListItems::new(self.value)
    }
}

/// Compact forms registered for SIP header fields (RFC 3261 §7.3.3 and the IANA
/// "Header Fields" registry), as `(letter, full name)`.
pub const COMPACT_FORMS: [(u8, &str); 20] = [
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// The full name of a compact header name (`"f"` → `"From"`), any case.
pub fn full_name(compact: &str) -> Option<&'static str> {
    match compact.as_bytes() {
        [c] => {
            let c = c.to_ascii_lowercase();
            COMPACT_FORMS.iter().find(|(l, _)| *l == c).map(|(_, n)| *n)
        }
        _ => None,
    }
}

/// The compact letter of a full header name (`"Call-ID"` → `'i'`), any case.
pub fn compact_form(full: &str) -> Option<char> {
    COMPACT_FORMS.iter().find(|(_, n)| n.eq_ignore_ascii_case(full)).map(|(l, _)| char::from(*l))
}

/// Do two header names denote the same field (case-insensitive, compact forms
/// equal to their full names)?
pub fn names_match(a: &str, b: &str) -> bool {
    HeaderKey::new(a).matches(b)
}

/// A header name normalised for fast matching: full name plus compact letter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderKey<'n> {
    full: &'n str,
    compact: Option<u8>,
}

impl<'n> HeaderKey<'n> {
    pub(crate) const fn known(full: &'static str, compact: Option<u8>) -> HeaderKey<'static> {
        HeaderKey { full, compact }
    }

    pub(crate) fn new(name: &'n str) -> Self {
        if let [c] = name.as_bytes() {
            let c = c.to_ascii_lowercase();
            if let Some((l, full)) = COMPACT_FORMS.iter().find(|(l, _)| *l == c) {
                return HeaderKey { full, compact: Some(*l) };
            }
            return HeaderKey { full: name, compact: None };
        }
        let compact = COMPACT_FORMS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(l, _)| *l);
        HeaderKey { full: name, compact }
    }

    #[inline]
    pub(crate) fn matches(&self, name: &str) -> bool {
        match (name.as_bytes(), self.compact) {
            ([c], Some(l)) => c.to_ascii_lowercase() == l,
            _ => name.len() == self.full.len() && name.eq_ignore_ascii_case(self.full),
        }
    }
}

pub(crate) const VIA: HeaderKey<'static> = HeaderKey::known("Via", Some(b'v'));
pub(crate) const FROM: HeaderKey<'static> = HeaderKey::known("From", Some(b'f'));
pub(crate) const TO: HeaderKey<'static> = HeaderKey::known("To", Some(b't'));
pub(crate) const CALL_ID: HeaderKey<'static> = HeaderKey::known("Call-ID", Some(b'i'));
pub(crate) const CSEQ: HeaderKey<'static> = HeaderKey::known("CSeq", None);
pub(crate) const MAX_FORWARDS: HeaderKey<'static> = HeaderKey::known("Max-Forwards", None);
pub(crate) const CONTENT_TYPE: HeaderKey<'static> = HeaderKey::known("Content-Type", Some(b'c'));
pub(crate) const CONTENT_LENGTH: HeaderKey<'static> = HeaderKey::known("Content-Length", Some(b'l'));
pub(crate) const EXPIRES: HeaderKey<'static> = HeaderKey::known("Expires", None);
pub(crate) const CONTACT: HeaderKey<'static> = HeaderKey::known("Contact", Some(b'm'));
pub(crate) const ROUTE: HeaderKey<'static> = HeaderKey::known("Route", None);
pub(crate) const RECORD_ROUTE: HeaderKey<'static> = HeaderKey::known("Record-Route", None);
pub(crate) const ACCEPT: HeaderKey<'static> = HeaderKey::known("Accept", None);

/// Iterator over the elements of a comma-separated header value
/// (RFC 3261 §7.3.1): splits on commas outside quoted strings and `<...>`,
/// trims LWS around each element. An all-blank value yields nothing; empty
/// elements between commas are yielded as `""` (typed parsers reject them).
#[derive(Clone, Debug)]
pub struct ListItems<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> ListItems<'a> {
    /// Split `value`.
    pub fn new(value: &'a str) -> Self {
        let rest = trim_lws(value);
        ListItems { rest, done: rest.is_empty() }
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.rest.as_bytes();
        let mut i = 0;
        let mut angle = false;
        while let Some(d) = find_in_set(b, i, &LIST_DELIMS) {
            i = d;
            match b.get(d) {
                Some(b'"') if !angle => match quoted_string_end(b, d) {
                    Some(end) => {
                        i = end;
                        continue;
                    }
                    None => break,
                },
                Some(b'<') => angle = true,
                Some(b'>') => angle = false,
                Some(b',') if !angle => {
                    let item = self.rest.get(..d).unwrap_or("");
                    self.rest = self.rest.get(d + 1..).unwrap_or("");
                    return Some(trim_lws(item));
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(trim_lws(self.rest))
    }
}

/// One generic parameter (`;name` or `;name=value`), LWS-trimmed. A quoted
/// value is returned with its quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name.
    pub name: &'a str,
    /// Parameter value, `None` for a flag parameter.
    pub value: Option<&'a str>,
}

/// A validated parameter list: the raw text starting at the first `;`
/// (or empty). Header parameters (RFC 3261 `generic-param`) and URI
/// parameters (`uri-parameter`) share this view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// No parameters.
    pub const EMPTY: Params<'static> = Params { raw: "" };

    /// The raw text, `""` or starting with `;`.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Are there no parameters?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterate over the parameters in order.
    #[inline]
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// The first parameter called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Param<'a>> {
        self.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The value of parameter `name`; `None` if absent or a flag.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|p| p.value)
    }

    /// Is parameter `name` present (with or without value)?
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Validate header parameters (`*( SEMI generic-param )`) in `s`, which must
    /// be empty or start (after LWS) with `;`.
    pub(crate) fn parse_header(s: &'a str) -> Result<Self, Error> {
        Self::parse_header_with(s, |_| Ok(()))
    }

    /// [`Params::parse_header`], also running a field-specific `check` on each
    /// parameter in the same pass.
    pub(crate) fn parse_header_with(
        s: &'a str,
        mut check: impl FnMut(&Param<'a>) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let t = trim_lws(s);
        if t.is_empty() {
            return Ok(Params::EMPTY);
        }
        if !t.starts_with(';') {
            return Err(Error::BadParam);
        }
        let params = Params { raw: t };
        for p in params.iter() {
            if !is_token_str(p.name) {
                return Err(Error::BadParam);
            }
            if let Some(v) = p.value {
                if !is_gen_value(v) {
                    return Err(Error::BadParam);
                }
            }
            check(&p)?;
        }
        Ok(params)
    }

    /// Wrap already validated text (used by the URI parser).
    pub(crate) fn from_validated(raw: &'a str) -> Self {
        Params { raw }
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Param<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// `gen-value = token / host / quoted-string`, leniently: a well-formed quoted
/// string, or a non-empty run of visible characters other than the separators
/// `; , " < > \` and white space.
fn is_gen_value(v: &str) -> bool {
    let b = v.as_bytes();
    if b.first() == Some(&b'"') {
        return quoted_string_end(b, 0) == Some(b.len());
    }
    !b.is_empty() && b.iter().all(|&c| c > b' ' && c != 0x7f && !matches!(c, b';' | b',' | b'"' | b'<' | b'>' | b'\\'))
}

/// Iterator over a [`Params`] list.
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        // Validated lists start each parameter with ';' (LWS sits inside items).
        let s = self.rest.strip_prefix(';')?;
        let b = s.as_bytes();
        let mut i = 0;
        let mut eq = None;
        while let Some(d) = find_in_set(b, i, &PARAM_DELIMS) {
            i = d;
            match b.get(d) {
                Some(b'=') if eq.is_none() => eq = Some(d),
                Some(b'"') => {
                    i = quoted_string_end(b, d).unwrap_or(b.len());
                    continue;
                }
                Some(b';') => break,
                _ => {}
            }
            i += 1;
        }
        if b.get(i) != Some(&b';') {
            i = b.len();
        }
        self.rest = s.get(i..).unwrap_or("");
        Some(match eq {
            Some(eq) => Param {
                name: trim_lws(s.get(..eq).unwrap_or("")),
                value: Some(trim_lws(s.get(eq + 1..i).unwrap_or(""))),
            },
            None => Param { name: trim_lws(s.get(..i).unwrap_or("")), value: None },
        })
    }
}

/// Copy `value` into `out` with every fold (LWS run containing CR/LF) replaced
/// by one SP (RFC 3261 §7.3.1: a fold is equivalent to a single SP). Returns the
/// unfolded text.
pub fn unfold_into<'b>(value: &str, out: &'b mut [u8]) -> Result<&'b str, Error> {
    let b = value.as_bytes();
    let mut n = 0usize;
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == b'\r' || c == b'\n' {
            // Replace the whole surrounding LWS run (already-copied SP/HT too) by one SP.
            while n > 0 && matches!(out.get(n - 1), Some(b' ' | b'\t')) {
                n -= 1;
            }
            while matches!(b.get(i), Some(&c) if is_lws(c)) {
                i += 1;
            }
            *out.get_mut(n).ok_or(Error::BufferTooSmall)? = b' ';
            n += 1;
            continue;
        }
        *out.get_mut(n).ok_or(Error::BufferTooSmall)? = c;
        n += 1;
        i += 1;
    }
    let used = out.get(..n).ok_or(Error::BufferTooSmall)?;
    std::str::from_utf8(used).map_err(|_| Error::InvalidUtf8)
}

/// Remove the quotes and backslash escapes of an RFC 3261 `quoted-string`
/// (`"J Rosenberg \\\""` → `J Rosenberg \"`), writing into `out`. Text that is
/// not quoted is copied unchanged.
pub fn unquote_into<'b>(quoted: &str, out: &'b mut [u8]) -> Result<&'b str, Error> {
    let t = trim_lws(quoted);
    let b = t.as_bytes();
    let inner = if b.first() == Some(&b'"') {
        if quoted_string_end(b, 0) != Some(b.len()) {
            return Err(Error::BadQuotedString);
        }
        b.get(1..b.len() - 1).unwrap_or(&[])
    } else {
        b
    };
    let mut n = 0usize;
    let mut i = 0usize;
    while let Some(&c) = inner.get(i) {
        let c = if c == b'\\' {
            i += 1;
            *inner.get(i).ok_or(Error::BadQuotedString)?
        } else {
            c
        };
        *out.get_mut(n).ok_or(Error::BufferTooSmall)? = c;
        n += 1;
        i += 1;
    }
    let used = out.get(..n).ok_or(Error::BufferTooSmall)?;
    std::str::from_utf8(used).map_err(|_| Error::InvalidUtf8)
}

/// Is `s` a sequence of tokens separated by LWS (an unquoted `display-name`)?
/// Non-ASCII UTF-8 is tolerated, as deployed user agents send it.
pub(crate) fn is_token_words(s: &str) -> bool {
    s.bytes().all(|c| is_token(c) || is_lws(c) || c >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_map_both_ways() {
        assert_eq!(full_name("f"), Some("From"));
        assert_eq!(full_name("I"), Some("Call-ID"));
        assert_eq!(full_name("z"), None);
        assert_eq!(full_name("From"), None);
        assert_eq!(compact_form("content-length"), Some('l'));
        assert_eq!(compact_form("CSeq"), None);
        assert!(names_match("v", "VIA"));
        assert!(names_match("Via", "v"));
        assert!(names_match("max-forwards", "Max-Forwards"));
        assert!(!names_match("To", "Tx"));
        assert!(!names_match("z", "Z-Header"));
        assert!(names_match("z", "Z"));
        let h = Header { name: "m", value: "<sip:a@b>" };
        assert!(h.is("Contact"));
        assert!(!h.is("Content-Type"));
    }

    #[test]
    fn list_items_respect_quotes_and_angles() {
        let v = r#""Bell, Alexander" <sip:a@b;x=1,2>;tag=1 , <sip:c@d> ,,x"#;
        let items: Vec<&str> = ListItems::new(v).collect();
        assert_eq!(items, [r#""Bell, Alexander" <sip:a@b;x=1,2>;tag=1"#, "<sip:c@d>", "", "x"]);
        assert_eq!(ListItems::new("  \r\n ").count(), 0);
        let folded = "application/sdp, application/pkcs7-mime,\r\n        multipart/mixed";
        assert_eq!(ListItems::new(folded).nth(2), Some("multipart/mixed"));
        // Unterminated quote: the rest is one element.
        assert_eq!(ListItems::new(r#""a, b"#).count(), 1);
    }

    #[test]
    fn params_validate_and_iterate() {
        let p = Params::parse_header(" ;   tag    = 1918181833n ; lr;q=\"a;b\"").unwrap();
        let v: Vec<Param> = p.iter().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Param { name: "tag", value: Some("1918181833n") });
        assert_eq!(v[1], Param { name: "lr", value: None });
        assert_eq!(v[2].value, Some("\"a;b\""));
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert!(p.has("lr"));
        assert!(!p.has("x"));
        assert_eq!(Params::parse_header(";;;;"), Err(Error::BadParam));
        assert_eq!(Params::parse_header(";tag="), Err(Error::BadParam));
        assert_eq!(Params::parse_header("tag=1"), Err(Error::BadParam));
        assert_eq!(Params::parse_header(";a=b c"), Err(Error::BadParam));
        assert_eq!(Params::parse_header(";a=\"open"), Err(Error::BadParam));
        assert_eq!(Params::parse_header("  ").unwrap(), Params::EMPTY);
        let folded = Params::parse_header(";\r\n  tag = 98asjd8").unwrap();
        assert_eq!(folded.value("tag"), Some("98asjd8"));
    }

    #[test]
    fn unfold_and_unquote() {
        let mut b = [0u8; 64];
        assert_eq!(unfold_into("a  \r\n   b\r\n\tc", &mut b).unwrap(), "a b c");
        assert_eq!(unfold_into("plain", &mut b).unwrap(), "plain");
        assert_eq!(unfold_into("abc", &mut [0u8; 2]), Err(Error::BufferTooSmall));
        assert_eq!(unquote_into(r#""J Rosenberg \\\"""#, &mut b).unwrap(), r#"J Rosenberg \""#);
        assert_eq!(unquote_into("caller", &mut b).unwrap(), "caller");
        assert_eq!(unquote_into("\"open", &mut b), Err(Error::BadQuotedString));
        assert_eq!(unquote_into("\"ab\"", &mut [0u8; 1]), Err(Error::BufferTooSmall));
    }
}
