//! IMDN XML documents (RFC 5438 §7, `message/imdn+xml`): parse and emit, bounded and
//! allocation-free.
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-8"?>
//! <imdn xmlns="urn:ietf:params:xml:ns:imdn">
//!   <message-id>34jk324j</message-id>                 required
//!   <datetime>2008-04-04T12:16:49-05:00</datetime>    required, RFC 3339
//!   <recipient-uri>im:bob@example.com</recipient-uri> optional
//!   <original-recipient-uri>…</original-recipient-uri> optional
//!   <subject>…</subject>                              optional
//!   <delivery-notification>                           exactly one of delivery-,
//!     <status><delivered/></status>                   display-, processing-notification
//!   </delivery-notification>
//! </imdn>
//! ```
//!
//! The document is read by a small single-pass tokenizer built on quick-xml's
//! [`ElementParser`] (tag end, quote-aware) and [`Attributes`] (namespace declarations).
//! quick-xml's `Reader` is not used because it pushes every open element name onto a
//! `Vec` (even with `check_end_names` off), i.e. it allocates per document; here the open
//! elements live in a fixed array of [`DEPTH_CAP`] frames.
//!
//! Safety bounds: input size ([`ImdnLimits::max_len`], 4 KiB by default), element depth
//! ([`ImdnLimits::max_depth`], 8 by default), any `<!DOCTYPE`/`<!ENTITY` markup is refused
//! outright (no entity can be declared, so none is expanded); only the five predefined
//! entities and character references are understood, and only on demand
//! ([`XmlText`] keeps the raw text and unescapes lazily, without allocating).
//! Unknown elements, and elements in foreign namespaces, are skipped with their subtree.

use core::fmt;

use quick_xml::events::attributes::Attributes;
use quick_xml::name::PrefixDeclaration;
use quick_xml::parser::{ElementParser, Parser};

use crate::wire::bytes::find_byte;
use crate::wire::cpim::{DateTime, DateTimeError};

/// XML namespace of IMDN documents (RFC 5438 §7.1).
pub const IMDN_XML_NS: &[u8] = b"urn:ietf:params:xml:ns:imdn";
/// The root's usual namespace declaration, recognised without the attribute parser.
const XMLNS_IMDN: &[u8] = b" xmlns=\"urn:ietf:params:xml:ns:imdn\"";
/// Default bound on the document size, bytes.
pub const DEFAULT_MAX_LEN: usize = 4096;
/// Default bound on element nesting (an IMDN needs 4).
pub const DEFAULT_MAX_DEPTH: usize = 8;
/// Hard bound on element nesting, whatever the limits say (size of the frame array).
pub const DEPTH_CAP: usize = 16;

/// Bounds applied by [`Imdn::parse_with_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImdnLimits {
    /// Largest accepted document, bytes.
    pub max_len: usize,
    /// Deepest accepted element nesting (the root is depth 1); capped at [`DEPTH_CAP`].
    pub max_depth: usize,
}

impl Default for ImdnLimits {
    fn default() -> Self {
        ImdnLimits { max_len: DEFAULT_MAX_LEN, max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// What was wrong with the XML itself (as opposed to the IMDN it should carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// The document is not UTF-8.
    InvalidUtf8,
    /// `<…` without its `>`.
    UnclosedTag,
    /// `<!--` without `-->`.
    UnclosedComment,
    /// `<![CDATA[` without `]]>`.
    UnclosedCData,
    /// `<?` without `?>`.
    UnclosedPi,
    /// A tag with no name (`< a>`, `<>`, `</>`).
    EmptyName,
    /// `</b>` closing `<a>`.
    MismatchedEndTag,
    /// An end tag with no open element.
    UnmatchedEndTag,
    /// The document ended inside an element.
    UnclosedElement,
    /// An attribute is not `name="value"`.
    BadAttribute,
    /// `&…;` is not one of the five predefined entities or a valid character reference.
    BadReference,
    /// Non-whitespace text or a second element outside the root element.
    ContentOutsideRoot,
    /// An IMDN text field split by a comment, CDATA section or child element.
    SplitText,
    /// An IMDN text field holds a character XML 1.0 forbids (control character, U+FFFE/F).
    InvalidChar,
}

impl fmt::Display for XmlErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XmlErrorKind::InvalidUtf8 => "not UTF-8",
            XmlErrorKind::UnclosedTag => "unclosed tag",
            XmlErrorKind::UnclosedComment => "unclosed comment",
            XmlErrorKind::UnclosedCData => "unclosed CDATA section",
            XmlErrorKind::UnclosedPi => "unclosed processing instruction",
            XmlErrorKind::EmptyName => "tag without a name",
            XmlErrorKind::MismatchedEndTag => "mismatched end tag",
            XmlErrorKind::UnmatchedEndTag => "end tag without start tag",
            XmlErrorKind::UnclosedElement => "document ends inside an element",
            XmlErrorKind::BadAttribute => "malformed attribute",
            XmlErrorKind::BadReference => "bad entity or character reference",
            XmlErrorKind::ContentOutsideRoot => "content outside the root element",
            XmlErrorKind::SplitText => "text field split by markup",
            XmlErrorKind::InvalidChar => "character not allowed in XML",
        })
    }
}

/// Why an IMDN document could not be parsed or emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImdnError {
    /// Larger than [`ImdnLimits::max_len`].
    TooLarge,
    /// Nested deeper than [`ImdnLimits::max_depth`].
    TooDeep,
    /// DTD markup (`<!DOCTYPE`, `<!ENTITY`, …) present: refused, never expanded.
    DoctypeForbidden,
    /// The root element is not `imdn` in namespace `urn:ietf:params:xml:ns:imdn`.
    NotImdn,
    /// No (or an empty) `<message-id>`.
    MissingMessageId,
    /// No `<datetime>`.
    MissingDatetime,
    /// `<datetime>` is not RFC 3339.
    BadDatetime(DateTimeError),
    /// None of `delivery-`, `display-`, `processing-notification`.
    NoNotification,
    /// A field or notification appears twice.
    DuplicateElement,
    /// The notification has no `<status>` child this notification allows.
    UnknownStatus,
    /// Malformed XML.
    Xml(XmlErrorKind),
    /// Emit: a text value is not UTF-8 or holds a character XML 1.0 cannot carry.
    InvalidText,
    /// Emit: the output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for ImdnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdnError::TooLarge => f.write_str("IMDN document too large"),
            ImdnError::TooDeep => f.write_str("IMDN document nested too deep"),
            ImdnError::DoctypeForbidden => f.write_str("DOCTYPE/entity declarations are forbidden in IMDN"),
            ImdnError::NotImdn => f.write_str("root element is not urn:ietf:params:xml:ns:imdn imdn"),
            ImdnError::MissingMessageId => f.write_str("IMDN message-id missing"),
            ImdnError::MissingDatetime => f.write_str("IMDN datetime missing"),
            ImdnError::BadDatetime(e) => write!(f, "bad IMDN datetime: {e}"),
            ImdnError::NoNotification => f.write_str("IMDN carries no notification"),
            ImdnError::DuplicateElement => f.write_str("IMDN element repeated"),
            ImdnError::UnknownStatus => f.write_str("IMDN notification without a known status"),
            ImdnError::Xml(k) => write!(f, "malformed IMDN XML: {k}"),
            ImdnError::InvalidText => f.write_str("text not representable in XML"),
            ImdnError::BufferTooSmall => f.write_str("output buffer too small for IMDN"),
        }
    }
}

impl std::error::Error for ImdnError {}

impl From<XmlErrorKind> for ImdnError {
    fn from(k: XmlErrorKind) -> Self {
        ImdnError::Xml(k)
    }
}

// ---------------------------------------------------------------------------------------
// Notifications (RFC 5438 §7.2.1)
// ---------------------------------------------------------------------------------------

/// `<status>` of a `<delivery-notification>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// `<delivered/>`.
    Delivered,
    /// `<failed/>`.
    Failed,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// `<status>` of a `<display-notification>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisplayStatus {
    /// `<displayed/>`.
    Displayed,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// `<status>` of a `<processing-notification>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessingStatus {
    /// `<processed/>`.
    Processed,
    /// `<stored/>`.
    Stored,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// The notification an IMDN carries, with its status (RFC 5438 §7.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notification {
    /// `<delivery-notification>`.
    Delivery(DeliveryStatus),
    /// `<display-notification>`.
    Display(DisplayStatus),
    /// `<processing-notification>`.
    Processing(ProcessingStatus),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Delivery,
    Display,
    Processing,
}

impl Kind {
    fn from_element(local: &[u8]) -> Option<Kind> {
        match local {
            b"delivery-notification" => Some(Kind::Delivery),
            b"display-notification" => Some(Kind::Display),
            b"processing-notification" => Some(Kind::Processing),
            _ => None,
        }
    }

    fn status(self, local: &[u8]) -> Option<Notification> {
        use Notification as N;
        Some(match (self, local) {
            (Kind::Delivery, b"delivered") => N::Delivery(DeliveryStatus::Delivered),
            (Kind::Delivery, b"failed") => N::Delivery(DeliveryStatus::Failed),
            (Kind::Delivery, b"forbidden") => N::Delivery(DeliveryStatus::Forbidden),
            (Kind::Delivery, b"error") => N::Delivery(DeliveryStatus::Error),
            (Kind::Display, b"displayed") => N::Display(DisplayStatus::Displayed),
            (Kind::Display, b"forbidden") => N::Display(DisplayStatus::Forbidden),
            (Kind::Display, b"error") => N::Display(DisplayStatus::Error),
            (Kind::Processing, b"processed") => N::Processing(ProcessingStatus::Processed),
            (Kind::Processing, b"stored") => N::Processing(ProcessingStatus::Stored),
            (Kind::Processing, b"forbidden") => N::Processing(ProcessingStatus::Forbidden),
            (Kind::Processing, b"error") => N::Processing(ProcessingStatus::Error),
            _ => return None,
        })
    }
}

impl Notification {
    /// Element name of the notification (`delivery-notification`, …).
    pub const fn element_name(&self) -> &'static str {
        match self {
            Notification::Delivery(_) => "delivery-notification",
            Notification::Display(_) => "display-notification",
            Notification::Processing(_) => "processing-notification",
        }
    }

    /// Element name of the status (`delivered`, `displayed`, `stored`, …).
    pub const fn status_name(&self) -> &'static str {
        match self {
            Notification::Delivery(DeliveryStatus::Delivered) => "delivered",
            Notification::Delivery(DeliveryStatus::Failed) => "failed",
            Notification::Display(DisplayStatus::Displayed) => "displayed",
            Notification::Processing(ProcessingStatus::Processed) => "processed",
            Notification::Processing(ProcessingStatus::Stored) => "stored",
            Notification::Delivery(DeliveryStatus::Forbidden)
            | Notification::Display(DisplayStatus::Forbidden)
            | Notification::Processing(ProcessingStatus::Forbidden) => "forbidden",
            Notification::Delivery(DeliveryStatus::Error)
            | Notification::Display(DisplayStatus::Error)
            | Notification::Processing(ProcessingStatus::Error) => "error",
        }
    }
}

impl fmt::Display for Notification {
    /// `delivery/delivered`, `display/forbidden`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.element_name();
        let kind = kind.strip_suffix("-notification").unwrap_or(kind);
        write!(f, "{kind}/{}", self.status_name())
    }
}

// ---------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Decodes the reference at the start of `s` (just after `&`): (char, bytes incl. `;`).
fn decode_ref(s: &[u8]) -> Option<(char, usize)> {
    let semi = s.iter().take(12).position(|&b| b == b';')?;
    let name = &s[..semi];
    let c = match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        [b'#', b'x', hex @ ..] => char::from_u32(parse_radix(hex, 16)?)?,
        [b'#', dec @ ..] => char::from_u32(parse_radix(dec, 10)?)?,
        _ => return None,
    };
    is_xml_char(c).then_some((c, semi + 1))
}

/// Scans UTF-8 text once: `Err` on a character XML 1.0 forbids (C0 controls but TAB,
/// LF, CR; U+FFFE/U+FFFF), else whether it contains `&`.
fn scan_text(s: &[u8]) -> Result<bool, XmlErrorKind> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Skip whole words holding no byte below `'` and no 0xEF (SWAR, as `find_byte`):
    // the bytes the loop below has to look at.
    let mut start = 0;
    while let Some(Ok(word)) = s.get(start..start + 8).map(<[u8; 8]>::try_from) {
        let w = u64::from_le_bytes(word);
        let low = w.wrapping_sub(LO * u64::from(b'\'')) & !w & HI;
        let e = w ^ (LO * 0xef);
        let ef = e.wrapping_sub(LO) & !e & HI;
        if low | ef != 0 {
            break;
        }
        start += 8;
    }
    let mut amp = false;
    for (i, &b) in s.iter().enumerate().skip(start) {
        if b > b'&' && b != 0xef {
            continue;
        }
        match b {
            b'&' => amp = true,
            b'\t' | b'\n' | b'\r' => {}
            0..=0x1f => return Err(XmlErrorKind::InvalidChar),
            // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
            0xef if matches!(s.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => return Err(XmlErrorKind::InvalidChar),
            _ => {}
        }
    }
    Ok(amp)
}

fn parse_radix(digits: &[u8], radix: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |v, &b| Some(v * radix + char::from(b).to_digit(radix)?))
}

/// Text content of an IMDN field, borrowed from the document.
///
/// Holds either literal text (no unescaping needed: [`XmlText::plain`], CDATA, or parsed
/// text without `&`) or escaped text straight from the document (predefined entities and
/// character references, validated at parse time). Equality compares the unescaped text.
#[derive(Clone, Copy)]
pub struct XmlText<'a> {
    bytes: &'a [u8],
    escaped: bool,
}

impl<'a> XmlText<'a> {
    /// Literal text (escaped when emitted).
    pub const fn plain(text: &'a [u8]) -> XmlText<'a> {
        XmlText { bytes: text, escaped: false }
    }

    /// Already-escaped XML character data: UTF-8, no `<`, every `&` a predefined entity or
    /// a character reference.
    pub fn from_escaped(raw: &'a [u8]) -> Result<XmlText<'a>, ImdnError> {
        core::str::from_utf8(raw).map_err(|_| ImdnError::InvalidText)?;
        if raw.contains(&b'<') {
            return Err(ImdnError::InvalidText);
        }
        Self::from_document(raw).map_err(|_| ImdnError::InvalidText)
    }

    /// Text from a UTF-8 document (references validated here).
    fn from_document(raw: &'a [u8]) -> Result<XmlText<'a>, ImdnError> {
        let mut escaped = false;
        let mut i = 0;
        while let Some(amp) = raw.get(i..).and_then(|r| find_byte(r, b'&')) {
            let at = i + amp + 1;
            let (_, n) = decode_ref(raw.get(at..).unwrap_or_default()).ok_or(XmlErrorKind::BadReference)?;
            escaped = true;
            i = at + n;
        }
        Ok(XmlText { bytes: raw, escaped })
    }

    /// The bytes as held: raw document text when [`XmlText::is_escaped`], else literal.
    pub const fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the held bytes contain references still to be unescaped.
    pub const fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The literal text when no unescaping is needed (the common case: zero-copy).
    pub const fn as_plain(&self) -> Option<&'a [u8]> {
        if self.escaped {
            None
        } else {
            Some(self.bytes)
        }
    }

    /// The literal text, byte by byte (references decoded on the fly).
    pub fn bytes(&self) -> Unescaped<'a> {
        Unescaped { rest: self.bytes, escaped: self.escaped, pending: [0; 4], at: 0, len: 0 }
    }

    /// Writes the literal text into `buf`; returns the written part.
    pub fn unescape_into<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], ImdnError> {
        let mut n = 0;
        for b in self.bytes() {
            *buf.get_mut(n).ok_or(ImdnError::BufferTooSmall)? = b;
            n += 1;
        }
        Ok(&buf[..n])
    }

    /// Whether the literal text equals `literal`.
    pub fn eq_literal(&self, literal: &[u8]) -> bool {
        match self.as_plain() {
            Some(p) => p == literal,
            None => self.bytes().eq(literal.iter().copied()),
        }
    }

    /// Writes the text escaped for XML character data (`&`, `<`, `>`, CR, and leading or
    /// trailing whitespace as references so that a trimming reader keeps it).
    fn emit(&self, w: &mut Out<'_>) -> Result<(), ImdnError> {
        if self.escaped {
            return w.put(self.bytes);
        }
        let s = self.bytes;
        core::str::from_utf8(s).map_err(|_| ImdnError::InvalidText)?;
        let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let first = s.iter().position(|b| !is_ws(b)).unwrap_or(s.len());
        let last = s.iter().rposition(|b| !is_ws(b)).map_or(0, |i| i + 1);
        // Copy runs that need no escaping in one go. In valid UTF-8 the characters XML
        // 1.0 forbids are the C0 controls and U+FFFE/U+FFFF (EF BF BE/BF).
        let mut run = 0;
        for (i, &b) in s.iter().enumerate() {
            if b > b'>' && b != 0xef {
                continue;
            }
            let edge = i < first || i >= last;
            let replacement: &[u8] = match b {
                b'&' => b"&amp;",
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                b'\r' => b"&#xD;",
                b' ' if edge => b"&#x20;",
                b'\t' if edge => b"&#x9;",
                b'\n' if edge => b"&#xA;",
                b'\t' | b'\n' => continue,
                0..=0x1f => return Err(ImdnError::InvalidText),
                0xef if matches!(s.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => return Err(ImdnError::InvalidText),
                _ => continue,
            };
            w.put(&s[run..i])?;
            w.put(replacement)?;
            run = i + 1;
        }
        w.put(&s[run..])?;
        Ok(())
    }
}

impl PartialEq for XmlText<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self.as_plain(), other.as_plain()) {
            (Some(a), Some(b)) => a == b,
            _ => self.bytes().eq(other.bytes()),
        }
    }
}

impl Eq for XmlText<'_> {}

impl fmt::Debug for XmlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Display for XmlText<'_> {
    /// The literal text, non-printable bytes escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.bytes() {
            write!(f, "{}", core::ascii::escape_default(b))?;
        }
        Ok(())
    }
}

/// Iterator over the literal bytes of an [`XmlText`] (see [`XmlText::bytes`]).
#[derive(Clone, Debug)]
pub struct Unescaped<'a> {
    rest: &'a [u8],
    escaped: bool,
    pending: [u8; 4],
    at: u8,
    len: u8,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.at < self.len {
            let b = self.pending.get(usize::from(self.at)).copied();
            self.at += 1;
            return b;
        }
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        if b == b'&' && self.escaped {
            if let Some((c, n)) = decode_ref(rest) {
                self.rest = rest.get(n..).unwrap_or_default();
                let len = c.encode_utf8(&mut self.pending).len();
                self.len = len as u8;
                self.at = 1;
                return Some(self.pending[0]);
            }
        }
        Some(b)
    }
}

// ---------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------

/// An IMDN (RFC 5438 §7): the disposition of one message, borrowed from the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imdn<'a> {
    /// `<message-id>`: the `imdn.Message-ID` of the message this IMDN is about.
    pub message_id: XmlText<'a>,
    /// `<datetime>`: the `DateTime` of that message.
    pub datetime: DateTime,
    /// `<recipient-uri>`.
    pub recipient_uri: Option<XmlText<'a>>,
    /// `<original-recipient-uri>`.
    pub original_recipient_uri: Option<XmlText<'a>>,
    /// `<subject>`.
    pub subject: Option<XmlText<'a>>,
    /// The notification and its status.
    pub notification: Notification,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Root,
    MessageId,
    Datetime,
    RecipientUri,
    OriginalRecipientUri,
    Subject,
    Notification(Kind),
    Status(Kind),
    Other,
}

impl Node {
    fn is_leaf(self) -> bool {
        matches!(
            self,
            Node::MessageId | Node::Datetime | Node::RecipientUri | Node::OriginalRecipientUri | Node::Subject
        )
    }
}

/// One open element.
#[derive(Clone, Copy)]
struct Frame<'a> {
    name: &'a [u8],
    node: Node,
    /// Whether the default namespace in scope is the IMDN one.
    default_imdn: bool,
    /// The prefix bound to the IMDN namespace in scope, if any.
    imdn_prefix: Option<&'a [u8]>,
    text: Option<XmlText<'a>>,
}

const NO_FRAME: Frame<'static> =
    Frame { name: b"", node: Node::Other, default_imdn: false, imdn_prefix: None, text: None };

/// Fields collected while reading.
#[derive(Default)]
struct Fields<'a> {
    message_id: Option<XmlText<'a>>,
    datetime: Option<XmlText<'a>>,
    recipient_uri: Option<XmlText<'a>>,
    original_recipient_uri: Option<XmlText<'a>>,
    subject: Option<XmlText<'a>>,
    kind: Option<Kind>,
    notification: Option<Notification>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..).and_then(|h| find_byte(h, first)) {
        let at = from + i;
        if hay.get(at..)?.starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn trim_xml(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

fn set_once<'a>(slot: &mut Option<XmlText<'a>>, v: XmlText<'a>) -> Result<(), ImdnError> {
    if slot.replace(v).is_some() {
        return Err(ImdnError::DuplicateElement);
    }
    Ok(())
}

/// A start tag's layout (`tag` is what follows its `<`): the name's length, its prefix
/// colon, and where the closing `>` is.
#[inline]
fn start_tag(tag: &[u8]) -> Result<(usize, Option<usize>, usize), ImdnError> {
    // The name ends at whitespace, `/` or `>`; a tag without attributes ends
    // right there. Otherwise the first `>` ends it unless a quoted attribute
    // value precedes it: then quick-xml's quote-aware scanner decides.
    // One pass over the name also finds its prefix colon.
    let mut colon = None;
    let mut name_end = None;
    for (i, &b) in tag.iter().enumerate() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' => {
                name_end = Some(i);
                break;
            }
            b':' if colon.is_none() => colon = Some(i),
            _ => {}
        }
    }
    let name_len = name_end.ok_or(XmlErrorKind::UnclosedTag)?;
    let gt = match (tag[name_len], tag.get(name_len + 1)) {
        (b'>', _) => name_len,
        (b'/', Some(b'>')) => name_len + 1,
        // `<imdn xmlns="urn:ietf:params:xml:ns:imdn">`: the quotes are
        // balanced and hold no `>`, so the next byte ends the tag.
        _ if tag.get(name_len..name_len + XMLNS_IMDN.len()) == Some(XMLNS_IMDN)
            && tag.get(name_len + XMLNS_IMDN.len()) == Some(&b'>') =>
        {
            name_len + XMLNS_IMDN.len()
        }
        _ => {
            let attrs = &tag[name_len..];
            match find_byte(attrs, b'>') {
                Some(gt) if !attrs[..gt].iter().any(|&b| b == b'"' || b == b'\'') => name_len + gt,
                _ => ElementParser::default().feed(tag).ok_or(XmlErrorKind::UnclosedTag)?,
            }
        }
    };
    Ok((name_len, colon, gt))
}

impl<'a> Imdn<'a> {
    /// Parses an IMDN document with the default [`ImdnLimits`] (4 KiB, depth 8).
    pub fn parse(input: &'a [u8]) -> Result<Imdn<'a>, ImdnError> {
        Self::parse_with_limits(input, ImdnLimits::default())
    }

    /// Parses an IMDN document (RFC 5438 §7) within `limits`. Single pass, no allocation.
    ///
    /// The root must be `imdn` in `urn:ietf:params:xml:ns:imdn`, as the default namespace
    /// (`<imdn xmlns="…">`) or under a prefix (`<p:imdn xmlns:p="…">`); namespace
    /// declarations on inner elements are honoured for the IMDN namespace.
    pub fn parse_with_limits(input: &'a [u8], limits: ImdnLimits) -> Result<Imdn<'a>, ImdnError> {
        if input.len() > limits.max_len {
            return Err(ImdnError::TooLarge);
        }
        if !input.is_ascii() {
            core::str::from_utf8(input).map_err(|_| XmlErrorKind::InvalidUtf8)?;
        }
        let max_depth = limits.max_depth.min(DEPTH_CAP);
        let mut stack = [NO_FRAME; DEPTH_CAP];
        let mut depth = 0usize;
        let mut root_seen = false;
        let mut f = Fields::default();
        let mut pos = if input.starts_with("\u{feff}".as_bytes()) { 3 } else { 0 };

        loop {
            let rest = input.get(pos..).unwrap_or_default();
            let lt = find_byte(rest, b'<');
            let text = &rest[..lt.unwrap_or(rest.len())];
            if !text.is_empty() {
                Self::on_text(&mut stack, depth, text, false)?;
            }
            let Some(lt) = lt else { break };
            let lt = pos + lt;
            let markup = &input[lt..];
            if markup.starts_with(b"<?") {
                let end = find(&markup[2..], b"?>").ok_or(XmlErrorKind::UnclosedPi)?;
                pos = lt + 2 + end + 2;
            } else if markup.starts_with(b"<!--") {
                let end = find(&markup[4..], b"-->").ok_or(XmlErrorKind::UnclosedComment)?;
                pos = lt + 4 + end + 3;
            } else if markup.starts_with(b"<![CDATA[") {
                let end = find(&markup[9..], b"]]>").ok_or(XmlErrorKind::UnclosedCData)?;
                Self::on_text(&mut stack, depth, &markup[9..9 + end], true)?;
                pos = lt + 9 + end + 3;
            } else if markup.starts_with(b"<!") {
                return Err(ImdnError::DoctypeForbidden);
            } else if markup.starts_with(b"</") {
                // The common `</name>` of the open element: its name holds no `>` nor
                // whitespace, so this is where the general path would find the tag end.
                if let Some(top) = depth.checked_sub(1) {
                    let frame = stack[top];
                    let end = frame.name.len() + 2;
                    if markup.get(2..end) == Some(frame.name) && markup.get(end) == Some(&b'>') {
                        Self::on_close(&mut f, &frame)?;
                        depth = top;
                        pos = lt + end + 1;
                        continue;
                    }
                }
                let gt = find_byte(markup, b'>').ok_or(XmlErrorKind::UnclosedTag)?;
                let name = trim_xml(&markup[2..gt]);
                if name.is_empty() || markup.get(2).is_none_or(|b| b.is_ascii_whitespace()) {
                    return Err(XmlErrorKind::EmptyName.into());
                }
                let top = depth.checked_sub(1).ok_or(XmlErrorKind::UnmatchedEndTag)?;
                let frame = stack[top];
                if frame.name != name {
                    return Err(XmlErrorKind::MismatchedEndTag.into());
                }
                Self::on_close(&mut f, &frame)?;
                depth = top;
                pos = lt + gt + 1;
            } else {
                let (name_len, colon, gt) = start_tag(&markup[1..])?;
                let content = input.get(lt + 1..lt + 1 + gt).ok_or(XmlErrorKind::UnclosedTag)?;
                let (content, empty) = match content.strip_suffix(b"/") {
                    Some(c) => (c, true),
                    None => (content, false),
                };
                pos = lt + 1 + gt + 1;
                if depth == 0 && root_seen {
                    return Err(XmlErrorKind::ContentOutsideRoot.into());
                }
                if depth >= max_depth {
                    return Err(ImdnError::TooDeep);
                }
                let frame = Self::open(&stack, depth, content, name_len, colon, &mut f)?;
                if depth == 0 {
                    if frame.node != Node::Root {
                        return Err(ImdnError::NotImdn);
                    }
                    root_seen = true;
                }
                if empty {
                    Self::on_close(&mut f, &frame)?;
                } else {
                    stack[depth] = frame;
                    depth += 1;
                }
            }
        }
        if depth != 0 {
            return Err(XmlErrorKind::UnclosedElement.into());
        }
        if !root_seen {
            return Err(ImdnError::NotImdn);
        }
        Self::finish(f)
    }

    /// Text (or CDATA when `cdata`) at the current depth.
    fn on_text(stack: &mut [Frame<'a>; DEPTH_CAP], depth: usize, text: &'a [u8], cdata: bool) -> Result<(), ImdnError> {
        let Some(top) = depth.checked_sub(1) else {
            return if cdata || !trim_xml(text).is_empty() {
                Err(XmlErrorKind::ContentOutsideRoot.into())
            } else {
                Ok(())
            };
        };
        let frame = &mut stack[top];
        if !frame.node.is_leaf() {
            return Ok(());
        }
        let t = if cdata { text } else { trim_xml(text) };
        if t.is_empty() && !cdata {
            return Ok(());
        }
        let t = match scan_text(t)? {
            true if !cdata => XmlText::from_document(t)?,
            _ => XmlText::plain(t),
        };
        if frame.text.replace(t).is_some() {
            return Err(XmlErrorKind::SplitText.into());
        }
        Ok(())
    }

    /// Reads a start tag's `content` (name and attributes) opened under `stack[..depth]`.
    fn open(
        stack: &[Frame<'a>; DEPTH_CAP],
        depth: usize,
        content: &'a [u8],
        name_len: usize,
        colon: Option<usize>,
        f: &mut Fields<'a>,
    ) -> Result<Frame<'a>, ImdnError> {
        let bytes = content;
        let name = bytes.get(..name_len).unwrap_or_default();
        if name.is_empty() {
            return Err(XmlErrorKind::EmptyName.into());
        }
        let parent = depth.checked_sub(1).map(|i| stack[i]);
        let mut frame = Frame {
            name,
            node: Node::Other,
            default_imdn: parent.is_some_and(|p| p.default_imdn),
            imdn_prefix: parent.and_then(|p| p.imdn_prefix),
            text: None,
        };
        if bytes.get(name_len..) == Some(XMLNS_IMDN) {
            // The one attribute the attribute parser would read as the IMDN namespace.
            frame.default_imdn = true;
        } else if name_len < bytes.len() {
            // The document is valid UTF-8 and `<`, `>`, `/` are ASCII: a char-boundary cut.
            let content = core::str::from_utf8(content).map_err(|_| XmlErrorKind::InvalidUtf8)?;
            for attr in Attributes::new(content, name_len).with_checks(false) {
                let attr = attr.map_err(|_| XmlErrorKind::BadAttribute)?;
                let is_imdn = attr.value.as_ref() == IMDN_XML_NS;
                match attr.key.as_namespace_binding() {
                    Some(PrefixDeclaration::Default) => frame.default_imdn = is_imdn,
                    Some(PrefixDeclaration::Named(p)) => {
                        if is_imdn {
                            frame.imdn_prefix = Some(p);
                        } else if frame.imdn_prefix == Some(p) {
                            frame.imdn_prefix = None;
                        }
                    }
                    None => {}
                }
            }
        }
        // `colon` is the first `:` of the name (found while reading it).
        let (in_imdn, local) = match colon.filter(|&c| c < name_len) {
            None => (frame.default_imdn, name),
            Some(colon) => (frame.imdn_prefix == name.get(..colon), name.get(colon + 1..).unwrap_or_default()),
        };
        if !in_imdn {
            return Ok(frame);
        }
        frame.node = match parent.map(|p| p.node) {
            None if local == b"imdn" => Node::Root,
            Some(Node::Root) => match local {
                b"message-id" => Node::MessageId,
                b"datetime" => Node::Datetime,
                b"recipient-uri" => Node::RecipientUri,
                b"original-recipient-uri" => Node::OriginalRecipientUri,
                b"subject" => Node::Subject,
                _ => match Kind::from_element(local) {
                    Some(k) => {
                        if f.kind.replace(k).is_some() {
                            return Err(ImdnError::DuplicateElement);
                        }
                        Node::Notification(k)
                    }
                    None => Node::Other,
                },
            },
            Some(Node::Notification(k)) if local == b"status" => Node::Status(k),
            Some(Node::Status(k)) => {
                if let Some(n) = k.status(local) {
                    if f.notification.replace(n).is_some() {
                        return Err(ImdnError::DuplicateElement);
                    }
                }
                Node::Other
            }
            _ => Node::Other,
        };
        Ok(frame)
    }

    /// An element closes: a leaf hands its text to its field.
    fn on_close(f: &mut Fields<'a>, frame: &Frame<'a>) -> Result<(), ImdnError> {
        let text = frame.text.unwrap_or(XmlText::plain(b""));
        match frame.node {
            Node::MessageId => set_once(&mut f.message_id, text),
            Node::Datetime => set_once(&mut f.datetime, text),
            Node::RecipientUri => set_once(&mut f.recipient_uri, text),
            Node::OriginalRecipientUri => set_once(&mut f.original_recipient_uri, text),
            Node::Subject => set_once(&mut f.subject, text),
            _ => Ok(()),
        }
    }

    fn finish(f: Fields<'a>) -> Result<Imdn<'a>, ImdnError> {
        let message_id = f.message_id.filter(|t| !t.raw().is_empty()).ok_or(ImdnError::MissingMessageId)?;
        let dt = f.datetime.ok_or(ImdnError::MissingDatetime)?;
        let mut tmp = [0u8; 64];
        let dt_bytes = match dt.as_plain() {
            Some(p) => p,
            None => dt.unescape_into(&mut tmp).map_err(|_| ImdnError::BadDatetime(DateTimeError::Syntax))?,
        };
        let datetime = DateTime::parse(dt_bytes).map_err(ImdnError::BadDatetime)?;
        if f.kind.is_none() {
            return Err(ImdnError::NoNotification);
        }
        Ok(Imdn {
            message_id,
            datetime,
            recipient_uri: f.recipient_uri,
            original_recipient_uri: f.original_recipient_uri,
            subject: f.subject,
            notification: f.notification.ok_or(ImdnError::UnknownStatus)?,
        })
    }

    /// Writes the document into `buf`; returns its length.
    ///
    /// ```text
    /// <?xml version="1.0" encoding="UTF-8"?>
    /// <imdn xmlns="urn:ietf:params:xml:ns:imdn">
    /// <message-id>…</message-id>
    /// <datetime>…</datetime>
    /// [<recipient-uri>…</recipient-uri>] [<original-recipient-uri>…] [<subject>…]
    /// <delivery-notification><status><delivered/></status></delivery-notification>
    /// </imdn>
    /// ```
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ImdnError> {
        if self.message_id.raw().is_empty() {
            return Err(ImdnError::MissingMessageId);
        }
        let mut w = Out { buf, len: 0 };
        w.put(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n<message-id>",
        )?;
        self.message_id.emit(&mut w)?;
        w.put(b"</message-id>\n<datetime>")?;
        let mut dt = [0u8; DateTime::MAX_LEN];
        let n = self.datetime.emit(&mut dt).map_err(ImdnError::BadDatetime)?;
        w.put(&dt[..n])?;
        w.put(b"</datetime>\n")?;
        let optional: [(&[u8], &Option<XmlText<'_>>); 3] = [
            (b"recipient-uri", &self.recipient_uri),
            (b"original-recipient-uri", &self.original_recipient_uri),
            (b"subject", &self.subject),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                w.put(b"<")?;
                w.put(name)?;
                w.put(b">")?;
                v.emit(&mut w)?;
                w.put(b"</")?;
                w.put(name)?;
                w.put(b">\n")?;
            }
        }
        let element = self.notification.element_name().as_bytes();
        w.put(b"<")?;
        w.put(element)?;
        w.put(b"><status><")?;
        w.put(self.notification.status_name().as_bytes())?;
        w.put(b"/></status></")?;
        w.put(element)?;
        w.put(b">\n</imdn>\n")?;
        Ok(w.len)
    }
}

impl fmt::Display for Imdn<'_> {
    /// One line: `IMDN delivery/delivered id=… dt=… [rcpt=…]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IMDN {} id={} dt={}", self.notification, self.message_id, self.datetime)?;
        if let Some(r) = &self.recipient_uri {
            write!(f, " rcpt={r}")?;
        }
        Ok(())
    }
}

struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ImdnError> {
        let end = self.len.checked_add(bytes.len()).ok_or(ImdnError::BufferTooSmall)?;
        self.buf.get_mut(self.len..end).ok_or(ImdnError::BufferTooSmall)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5438 §7.2.1.1 style delivery notification.
    const RFC5438_DELIVERY: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>im:bob@example.com</recipient-uri>
  <original-recipient-uri>im:bob@example.com</original-recipient-uri>
  <delivery-notification>
    <status>
      <delivered/>
    </status>
  </delivery-notification>
</imdn>
"#;

    /// RFC 5438 §7.2.1.2 style display notification.
    const RFC5438_DISPLAY: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>im:bob@example.com</recipient-uri>
  <original-recipient-uri>im:bob@example.com</original-recipient-uri>
  <subject>Hi there</subject>
  <display-notification>
    <status>
      <displayed/>
    </status>
  </display-notification>
</imdn>
"#;

    fn imdn_with(body: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\"?><imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>m1</message-id>\
<datetime>2024-01-02T03:04:05Z</datetime>{body}</imdn>"
        )
        .into_bytes()
    }

    #[test]
    fn rfc5438_delivery() {
        let d = Imdn::parse(RFC5438_DELIVERY).unwrap();
        assert_eq!(d.message_id.as_plain(), Some(&b"34jk324j"[..]));
        assert_eq!(d.datetime, DateTime::parse(b"2008-04-04T12:16:49-05:00").unwrap());
        assert_eq!(d.recipient_uri.unwrap().as_plain(), Some(&b"im:bob@example.com"[..]));
        assert!(d.original_recipient_uri.unwrap().eq_literal(b"im:bob@example.com"));
        assert_eq!(d.subject, None);
        assert_eq!(d.notification, Notification::Delivery(DeliveryStatus::Delivered));
        assert_eq!(
            d.to_string(),
            "IMDN delivery/delivered id=34jk324j dt=2008-04-04T12:16:49-05:00 rcpt=im:bob@example.com"
        );
    }

    #[test]
    fn rfc5438_display() {
        let d = Imdn::parse(RFC5438_DISPLAY).unwrap();
        assert_eq!(d.notification, Notification::Display(DisplayStatus::Displayed));
        assert!(d.subject.unwrap().eq_literal(b"Hi there"));
    }

    #[test]
    fn every_status() {
        let all = [
            Notification::Delivery(DeliveryStatus::Delivered),
            Notification::Delivery(DeliveryStatus::Failed),
            Notification::Delivery(DeliveryStatus::Forbidden),
            Notification::Delivery(DeliveryStatus::Error),
            Notification::Display(DisplayStatus::Displayed),
            Notification::Display(DisplayStatus::Forbidden),
            Notification::Display(DisplayStatus::Error),
            Notification::Processing(ProcessingStatus::Processed),
            Notification::Processing(ProcessingStatus::Stored),
            Notification::Processing(ProcessingStatus::Forbidden),
            Notification::Processing(ProcessingStatus::Error),
        ];
        for n in all {
            let doc = imdn_with(&format!("<{0}><status><{1}/></status></{0}>", n.element_name(), n.status_name()));
            assert_eq!(Imdn::parse(&doc).unwrap().notification, n);
            // Non-empty form of the status element too.
            let doc = imdn_with(&format!("<{0}><status><{1}></{1}></status></{0}>", n.element_name(), n.status_name()));
            assert_eq!(Imdn::parse(&doc).unwrap().notification, n);
        }
    }

    #[test]
    fn prefixed_namespace_and_foreign_elements() {
        let doc = br#"<i:imdn xmlns:i="urn:ietf:params:xml:ns:imdn" xmlns:x="urn:example:ext">
<i:message-id>abc</i:message-id><x:message-id>NOT-THIS</x:message-id>
<i:datetime>2024-01-02T03:04:05.5+01:00</i:datetime>
<message-id>nor-this</message-id>
<x:extra><i:message-id>deep-ignored</i:message-id></x:extra>
<i:unknown-element a='1'>text</i:unknown-element>
<!-- a comment -->
<i:delivery-notification><i:status><x:reason>r</x:reason><i:failed/></i:status></i:delivery-notification>
</i:imdn>"#;
        let d = Imdn::parse(doc).unwrap();
        assert!(d.message_id.eq_literal(b"abc"));
        assert_eq!(d.datetime.offset_minutes(), 60);
        assert_eq!(d.notification, Notification::Delivery(DeliveryStatus::Failed));
        // Redeclared default namespace on an inner element.
        let doc = imdn_with(
            "<delivery-notification xmlns=\"urn:other\"><status><delivered/></status></delivery-notification>",
        );
        assert_eq!(Imdn::parse(&doc).unwrap_err(), ImdnError::NoNotification);
        let doc = imdn_with("<q:delivery-notification xmlns:q=\"urn:ietf:params:xml:ns:imdn\"><q:status><q:stored/><q:error/></q:status></q:delivery-notification>");
        assert_eq!(Imdn::parse(&doc).unwrap().notification, Notification::Delivery(DeliveryStatus::Error));
    }

    #[test]
    fn root_declaration_spellings_agree() {
        // The literal `xmlns="…imdn"` root is read without the attribute parser; every
        // other spelling takes the general path and must mean the same.
        let doc = |root: &str, end: &str| {
            format!(
                "{root}<message-id>m1</message-id><datetime>2024-01-02T03:04:05Z</datetime>\
<display-notification><status><displayed/></status></display-notification>{end}"
            )
            .into_bytes()
        };
        let fast_doc = doc("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">", "</imdn>");
        let fast = Imdn::parse(&fast_doc).unwrap();
        for root in [
            "<imdn xmlns='urn:ietf:params:xml:ns:imdn'>",
            "<imdn  xmlns=\"urn:ietf:params:xml:ns:imdn\" >",
            "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\" a=\">\">",
        ] {
            assert_eq!(Imdn::parse(&doc(root, "</imdn>")).unwrap(), fast, "{root}");
        }
        for root in [
            "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\" xmlns=\"urn:other\">",
            "<imdn xmlns=\"urn:ietf:params:xml:ns:imdnx\">",
            "<imdn xmlns:x=\"urn:ietf:params:xml:ns:imdn\">",
        ] {
            assert_eq!(Imdn::parse(&doc(root, "</imdn>")), Err(ImdnError::NotImdn), "{root}");
        }
        // Mismatched and unmatched end tags still fail after the `</name>` fast path.
        assert!(Imdn::parse(&doc("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">", "</imdnx>")).is_err());
        assert!(Imdn::parse(&doc("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">", "</imdn ></x>")).is_err());
        let spaced = doc("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">", "</imdn >");
        assert_eq!(Imdn::parse(&spaced).unwrap(), fast);
    }

    #[test]
    fn escapes_and_cdata() {
        let doc = imdn_with(
            "<subject> a &amp; b &lt;&#x263A;&#65;&gt; </subject><recipient-uri><![CDATA[sip:a&b@x]]></recipient-uri>\
<display-notification><status><displayed/></status></display-notification>",
        );
        let d = Imdn::parse(&doc).unwrap();
        let s = d.subject.unwrap();
        assert!(s.is_escaped() && s.as_plain().is_none());
        let mut buf = [0u8; 32];
        assert_eq!(s.unescape_into(&mut buf).unwrap(), "a & b <\u{263A}A>".as_bytes());
        assert_eq!(s.unescape_into(&mut buf[..3]).unwrap_err(), ImdnError::BufferTooSmall);
        assert_eq!(d.recipient_uri.unwrap().as_plain(), Some(&b"sip:a&b@x"[..]));
        for bad in ["&bogus;", "&#0;", "&#xD800;", "&amp", "&#x110000;", "&#;"] {
            let doc = imdn_with(&format!("<subject>{bad}</subject>"));
            assert_eq!(Imdn::parse(&doc).unwrap_err(), ImdnError::Xml(XmlErrorKind::BadReference), "{bad}");
        }
    }

    #[test]
    fn negative_cases() {
        let deep = imdn_with(&"<x>".repeat(8));
        let cases: Vec<(Vec<u8>, ImdnError)> = vec![
            (vec![b' '; DEFAULT_MAX_LEN + 1], ImdnError::TooLarge),
            (deep, ImdnError::TooDeep),
            (
                br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><imdn xmlns="urn:ietf:params:xml:ns:imdn">&lol2;</imdn>"#.to_vec(),
                ImdnError::DoctypeForbidden,
            ),
            (imdn_with("<!ENTITY x 'y'>"), ImdnError::DoctypeForbidden),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn:v2\"/>".to_vec(), ImdnError::NotImdn),
            (b"<imdn/>".to_vec(), ImdnError::NotImdn),
            (b"<x:imdn xmlns=\"urn:ietf:params:xml:ns:imdn\" xmlns:x=\"urn:y\"/>".to_vec(), ImdnError::NotImdn),
            (b"<other xmlns=\"urn:ietf:params:xml:ns:imdn\"/>".to_vec(), ImdnError::NotImdn),
            (b"".to_vec(), ImdnError::NotImdn),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><datetime>2024-01-02T03:04:05Z</datetime><delivery-notification/></imdn>".to_vec(), ImdnError::MissingMessageId),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id/><datetime>2024-01-02T03:04:05Z</datetime></imdn>".to_vec(), ImdnError::MissingMessageId),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>a</message-id></imdn>".to_vec(), ImdnError::MissingDatetime),
            (imdn_with(""), ImdnError::NoNotification),
            (imdn_with("<delivery-notification><status><displayed/></status></delivery-notification>"), ImdnError::UnknownStatus),
            (imdn_with("<delivery-notification/>"), ImdnError::UnknownStatus),
            (imdn_with("<message-id>again</message-id>"), ImdnError::DuplicateElement),
            (imdn_with("<display-notification/><delivery-notification/>"), ImdnError::DuplicateElement),
            (imdn_with("<delivery-notification><status><delivered/><failed/></status></delivery-notification>"), ImdnError::DuplicateElement),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>a</message-id><datetime>yesterday</datetime><delivery-notification/></imdn>".to_vec(), ImdnError::BadDatetime(DateTimeError::Syntax)),
            (imdn_with("<subject>a<!--c-->b</subject>"), ImdnError::Xml(XmlErrorKind::SplitText)),
            (imdn_with("<subject>a\u{1}b</subject>"), ImdnError::Xml(XmlErrorKind::InvalidChar)),
            (imdn_with("<subject><![CDATA[\u{FFFF}]]></subject>"), ImdnError::Xml(XmlErrorKind::InvalidChar)),
            (imdn_with("<x>"), ImdnError::Xml(XmlErrorKind::MismatchedEndTag)),
            (imdn_with("</x>"), ImdnError::Xml(XmlErrorKind::MismatchedEndTag)),
            (imdn_with("<x a=1/>"), ImdnError::Xml(XmlErrorKind::BadAttribute)),
            (imdn_with("< x/>"), ImdnError::Xml(XmlErrorKind::EmptyName)),
            (imdn_with("<!-- x"), ImdnError::Xml(XmlErrorKind::UnclosedComment)),
            (imdn_with("<![CDATA[ x"), ImdnError::Xml(XmlErrorKind::UnclosedCData)),
            (imdn_with("<? x"), ImdnError::Xml(XmlErrorKind::UnclosedPi)),
            (imdn_with("<x a='>"), ImdnError::Xml(XmlErrorKind::UnclosedTag)),
            ([&imdn_with("")[..], b"<imdn/>"].concat(), ImdnError::Xml(XmlErrorKind::ContentOutsideRoot)),
            ([&imdn_with("")[..], b"junk"].concat(), ImdnError::Xml(XmlErrorKind::ContentOutsideRoot)),
            (b"</imdn>".to_vec(), ImdnError::Xml(XmlErrorKind::UnmatchedEndTag)),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>a".to_vec(), ImdnError::Xml(XmlErrorKind::UnclosedElement)),
            (b"<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\xff</imdn>".to_vec(), ImdnError::Xml(XmlErrorKind::InvalidUtf8)),
        ];
        for (doc, err) in cases {
            assert_eq!(Imdn::parse(&doc).unwrap_err(), err, "{}", doc.escape_ascii());
        }
        // Limits are parameters.
        let d = imdn_with("<delivery-notification><status><delivered/></status></delivery-notification>");
        assert!(Imdn::parse(&d).is_ok());
        assert_eq!(
            Imdn::parse_with_limits(&d, ImdnLimits { max_len: d.len() - 1, ..Default::default() }).unwrap_err(),
            ImdnError::TooLarge
        );
        assert_eq!(
            Imdn::parse_with_limits(&d, ImdnLimits { max_depth: 3, ..Default::default() }).unwrap_err(),
            ImdnError::TooDeep
        );
        assert!(Imdn::parse_with_limits(&d, ImdnLimits { max_depth: 4, ..Default::default() }).is_ok());
        assert!(Imdn::parse_with_limits(RFC5438_DELIVERY, ImdnLimits { max_depth: 1000, ..Default::default() }).is_ok());
    }

    #[test]
    fn every_truncation_fails() {
        let end = RFC5438_DELIVERY.len() - b"</imdn>\n".len();
        for cut in 0..end {
            assert!(Imdn::parse(&RFC5438_DELIVERY[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn sample() -> Imdn<'static> {
        Imdn {
            message_id: XmlText::plain(b"0123456789abcdefghijklmnopqrstuv"),
            datetime: DateTime::from_unix(1_700_000_000),
            recipient_uri: Some(XmlText::plain(b"sip:+15551234567@example.com;user=phone")),
            original_recipient_uri: None,
            subject: None,
            notification: Notification::Delivery(DeliveryStatus::Delivered),
        }
    }

    #[test]
    fn emit_exact_bytes() {
        let mut buf = [0u8; 512];
        let n = sample().emit(&mut buf).unwrap();
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n\
<message-id>0123456789abcdefghijklmnopqrstuv</message-id>\n<datetime>2023-11-14T22:13:20Z</datetime>\n\
<recipient-uri>sip:+15551234567@example.com;user=phone</recipient-uri>\n\
<delivery-notification><status><delivered/></status></delivery-notification>\n</imdn>\n";
        assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), expected);
        assert_eq!(Imdn::parse(&buf[..n]).unwrap(), sample());
        for len in 0..n {
            assert_eq!(sample().emit(&mut buf[..len]).unwrap_err(), ImdnError::BufferTooSmall);
        }
    }

    #[test]
    fn emit_escapes_and_rejects() {
        let mut buf = [0u8; 512];
        let x = Imdn { subject: Some(XmlText::plain(b" <a&b>\r\n ")), ..sample() };
        let n = x.emit(&mut buf).unwrap();
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(s.contains("<subject>&#x20;&lt;a&amp;b&gt;&#xD;&#xA;&#x20;</subject>"), "{s}");
        assert_eq!(Imdn::parse(&buf[..n]).unwrap(), x);
        for bad in [&b"\x01"[..], b"\xff", b"\xef\xbf\xbe"] {
            let x = Imdn { subject: Some(XmlText::plain(bad)), ..sample() };
            assert_eq!(x.emit(&mut buf).unwrap_err(), ImdnError::InvalidText);
        }
        let x = Imdn { message_id: XmlText::plain(b""), ..sample() };
        assert_eq!(x.emit(&mut buf).unwrap_err(), ImdnError::MissingMessageId);
        assert_eq!(XmlText::from_escaped(b"a<b").unwrap_err(), ImdnError::InvalidText);
        assert_eq!(XmlText::from_escaped(b"a&b").unwrap_err(), ImdnError::InvalidText);
        let raw = XmlText::from_escaped(b"a&amp;b").unwrap();
        assert_eq!(raw, XmlText::plain(b"a&b"));
        let x = Imdn { subject: Some(raw), ..sample() };
        let n = x.emit(&mut buf).unwrap();
        assert!(core::str::from_utf8(&buf[..n]).unwrap().contains("<subject>a&amp;b</subject>"));
    }

    fn arb_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('&'),
                Just('<'),
                Just('>'),
                Just(' '),
                Just('\t'),
                Just('\n'),
                Just('\r'),
                Just('"'),
                Just('\''),
                Just(';'),
                Just('#'),
                Just('é'),
                Just('\u{263A}'),
                Just('\u{1F600}'),
                proptest::char::range('a', 'z'),
            ],
            0..20,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn arb_notification() -> impl Strategy<Value = Notification> {
        prop_oneof![
            prop_oneof![
                Just(DeliveryStatus::Delivered),
                Just(DeliveryStatus::Failed),
                Just(DeliveryStatus::Forbidden),
                Just(DeliveryStatus::Error)
            ]
            .prop_map(Notification::Delivery),
            prop_oneof![Just(DisplayStatus::Displayed), Just(DisplayStatus::Forbidden), Just(DisplayStatus::Error)]
                .prop_map(Notification::Display),
            prop_oneof![
                Just(ProcessingStatus::Processed),
                Just(ProcessingStatus::Stored),
                Just(ProcessingStatus::Forbidden),
                Just(ProcessingStatus::Error)
            ]
            .prop_map(Notification::Processing),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            id in arb_text().prop_filter("non-empty", |s| !s.is_empty()),
            secs in -62_000_000_000i64..253_000_000_000, nanos in 0u32..1_000_000_000, off in -1439i16..=1439,
            rcpt in proptest::option::of(arb_text()), orig in proptest::option::of(arb_text()),
            subject in proptest::option::of(arb_text()), notification in arb_notification(),
        ) {
            let x = Imdn {
                message_id: XmlText::plain(id.as_bytes()),
                datetime: DateTime::new(secs, nanos, off).unwrap(),
                recipient_uri: rcpt.as_deref().map(|s| XmlText::plain(s.as_bytes())),
                original_recipient_uri: orig.as_deref().map(|s| XmlText::plain(s.as_bytes())),
                subject: subject.as_deref().map(|s| XmlText::plain(s.as_bytes())),
                notification,
            };
            let mut buf = [0u8; 2048];
            let n = x.emit(&mut buf).unwrap();
            let parsed = Imdn::parse(&buf[..n]).unwrap();
            prop_assert_eq!(parsed, x);
            // Emitting the parsed (raw, escaped) form gives the same bytes.
            let mut again = [0u8; 2048];
            let m = parsed.emit(&mut again).unwrap();
            prop_assert_eq!(&again[..m], &buf[..n]);
        }

        #[test]
        fn scan_text_matches_bytewise(text in proptest::collection::vec(prop_oneof![
            Just(b'&'), Just(b'\''), Just(0xef_u8), Just(0xbf_u8), Just(0xbe_u8), Just(b'\t'),
            Just(0x1f_u8), b'a'..=b'z', any::<u8>()], 0..40)) {
            // The plain per-byte definition the word-at-a-time scan must agree with.
            let bytewise = |s: &[u8]| -> Result<bool, XmlErrorKind> {
                let mut amp = false;
                for (i, &b) in s.iter().enumerate() {
                    match b {
                        b'&' => amp = true,
                        b'\t' | b'\n' | b'\r' => {}
                        0..=0x1f => return Err(XmlErrorKind::InvalidChar),
                        0xef if matches!(s.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => {
                            return Err(XmlErrorKind::InvalidChar)
                        }
                        _ => {}
                    }
                }
                Ok(amp)
            };
            for start in 0..text.len().min(9) {
                prop_assert_eq!(scan_text(&text[start..]), bytewise(&text[start..]));
            }
        }

        #[test]
        fn parse_never_panics(input in proptest::collection::vec(prop_oneof![
            Just(b'<'), Just(b'>'), Just(b'/'), Just(b'!'), Just(b'?'), Just(b'&'), Just(b';'), Just(b'"'),
            Just(b'='), Just(b':'), Just(b' '), b'a'..=b'z', any::<u8>()], 0..200)) {
            let doc = [&RFC5438_DELIVERY[..RFC5438_DELIVERY.len() / 2], &input[..]].concat();
            let unbounded = ImdnLimits { max_len: usize::MAX, ..ImdnLimits::default() };
            for doc in [&input[..], &doc[..]] {
                // Whatever parses emits, and parses back to the same IMDN.
                if let Ok(x) = Imdn::parse(doc) {
                    let mut buf = vec![0u8; doc.len() * 6 + 512];
                    let n = x.emit(&mut buf).unwrap();
                    prop_assert_eq!(Imdn::parse_with_limits(&buf[..n], unbounded).unwrap(), x);
                }
            }
        }
    }
}
