//! CPIM message format (RFC 3862, `message/cpim`) with the IMDN headers of RFC 5438 §6,
//! and the RFC 3339 timestamps both use.
//!
//! ```text
//! From: Alice <im:alice@example.com>             ┐
//! To: Bob <im:bob@example.com>                   │ message headers (RFC 3862 §3),
//! NS: imdn <urn:ietf:params:imdn>                │ case-sensitive names, optional
//! imdn.Message-ID: 34jk324j                      │ `prefix.` bound by an `NS` header
//! DateTime: 2006-04-04T12:16:49-05:00            │
//! imdn.Disposition-Notification: positive-delivery, display
//!                                                ┘ blank line
//! Content-type: text/plain                       ┐ encapsulated MIME part headers
//! Content-length: 12                             ┘ (case-insensitive, may fold)
//!                                                  blank line
//! Hello World!                                     content (Content-Length bytes if given)
//! ```
//!
//! [`parse`] is single-pass and zero-copy: every slice in a [`CpimMessage`] borrows
//! from the input and the headers land in a caller-supplied array (httparse style).
//! [`CpimRepr::emit`] writes a body into a caller buffer. Nothing here allocates.

use crate::wire::bytes::find_byte;
use core::fmt;

/// Namespace URN of the IMDN CPIM headers (RFC 5438 §6.1), bound as `NS: imdn <…>`.
pub const IMDN_NS: &[u8] = b"urn:ietf:params:imdn";
/// Namespace of unprefixed CPIM message headers (RFC 3862 §3.4).
pub const CPIM_HEADERS_NS: &[u8] = b"urn:ietf:params:cpim-headers:";
/// Most `NS` declarations one message may carry.
pub const MAX_NAMESPACES: usize = 8;

/// Why a CPIM body could not be parsed or emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpimError {
    /// Input ended inside a header line, or before `Content-Length` bytes of content.
    Truncated,
    /// A header block (message or MIME part) was not closed by a blank line.
    MissingBlankLine,
    /// A header line has no `:`, an empty or malformed name, or starts with whitespace.
    BadHeaderLine,
    /// More headers than the caller's array holds.
    TooManyHeaders,
    /// More than [`MAX_NAMESPACES`] `NS` declarations.
    TooManyNamespaces,
    /// An `NS` header is not `[prefix] <uri>`.
    BadNamespace,
    /// A `prefix.Name` header whose prefix no earlier `NS` header declared.
    UnknownNamespacePrefix,
    /// `Content-Length` is not a decimal number.
    BadContentLength,
    /// A `From`/`To`/route value is not `["Name"] <uri>`.
    BadAddress,
    /// `DateTime` is not an RFC 3339 timestamp.
    BadDateTime(DateTimeError),
    /// No `From` header.
    MissingFrom,
    /// No `To` header.
    MissingTo,
    /// No `DateTime` header.
    MissingDateTime,
    /// No `imdn.Message-ID` header.
    MissingMessageId,
    /// No `Content-Type` in the MIME part.
    MissingContentType,
    /// Emit: a value would break the header syntax (CR/LF, `<`/`>` in a URI, stray `"`,
    /// leading/trailing whitespace, empty required value).
    InvalidValue,
    /// Emit: the output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for CpimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpimError::Truncated => f.write_str("CPIM body truncated"),
            CpimError::MissingBlankLine => f.write_str("CPIM header block not closed by a blank line"),
            CpimError::BadHeaderLine => f.write_str("malformed CPIM header line"),
            CpimError::TooManyHeaders => f.write_str("too many CPIM headers"),
            CpimError::TooManyNamespaces => f.write_str("too many CPIM NS declarations"),
            CpimError::BadNamespace => f.write_str("malformed CPIM NS header"),
            CpimError::UnknownNamespacePrefix => f.write_str("CPIM header prefix not declared by NS"),
            CpimError::BadContentLength => f.write_str("malformed Content-Length"),
            CpimError::BadAddress => f.write_str("malformed CPIM address (expected [\"Name\"] <uri>)"),
            CpimError::BadDateTime(e) => write!(f, "bad CPIM DateTime: {e}"),
            CpimError::MissingFrom => f.write_str("CPIM From header missing"),
            CpimError::MissingTo => f.write_str("CPIM To header missing"),
            CpimError::MissingDateTime => f.write_str("CPIM DateTime header missing"),
            CpimError::MissingMessageId => f.write_str("imdn.Message-ID header missing"),
            CpimError::MissingContentType => f.write_str("Content-Type missing in CPIM MIME part"),
            CpimError::InvalidValue => f.write_str("value not representable in a CPIM header"),
            CpimError::BufferTooSmall => f.write_str("output buffer too small for CPIM body"),
        }
    }
}

impl std::error::Error for CpimError {}

// ---------------------------------------------------------------------------------------
// DateTime (RFC 3339 §5.6)
// ---------------------------------------------------------------------------------------

/// Why an RFC 3339 timestamp could not be parsed or formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateTimeError {
    /// Not `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)`.
    Syntax,
    /// A field is out of its range (month 13, day 31 in April, hour 24, offset 24:00…).
    FieldRange,
    /// The instant is outside years 0000–9999 (in its own offset).
    OutOfRange,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for DateTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DateTimeError::Syntax => "not an RFC 3339 date-time",
            DateTimeError::FieldRange => "date-time field out of range",
            DateTimeError::OutOfRange => "date-time outside years 0000-9999",
            DateTimeError::BufferTooSmall => "output buffer too small for date-time",
        })
    }
}

impl std::error::Error for DateTimeError {}

/// An RFC 3339 `date-time` (RFC 3339 §5.6) as used by CPIM `DateTime` (RFC 3862 §4.4)
/// and IMDN `<datetime>` (RFC 5438 §7): an instant (Unix seconds + nanoseconds) and the
/// UTC offset it was written in. `Z`, `+00:00` and `-00:00` all read as offset 0 and are
/// written `Z`. A leap second (`:60`) reads as the following second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    unix: i64,
    nanos: u32,
    offset_minutes: i16,
}

const SECS_MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const SECS_MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
const OFFSET_MAX: i16 = 23 * 60 + 59;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of day `z` since 1970-01-01 (H. Hinnant's
/// algorithm; the inverse of `days_from_civil`): the one calendar of the crate, for
/// CPIM `DateTime` and SMPP receipt dates alike. `z` within ±10¹⁵ days.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Reads `n` ASCII digits at `s[at..]`.
fn digits(s: &[u8], at: usize, n: usize) -> Result<u32, DateTimeError> {
    let field = s.get(at..at + n).ok_or(DateTimeError::Syntax)?;
    let mut v = 0u32;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(DateTimeError::Syntax);
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Ok(v)
}

fn expect(s: &[u8], at: usize, what: u8) -> Result<(), DateTimeError> {
    match s.get(at) {
        Some(&b) if b == what => Ok(()),
        _ => Err(DateTimeError::Syntax),
    }
}

impl DateTime {
    /// Longest text [`DateTime::emit`] writes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+hh:mm`.
    pub const MAX_LEN: usize = 35;

    /// The instant `secs` after the Unix epoch, written in UTC (`Z`).
    pub const fn from_unix(secs: i64) -> DateTime {
        DateTime { unix: secs, nanos: 0, offset_minutes: 0 }
    }

    /// An instant with a fraction and the UTC offset (minutes east) to write it in.
    /// Fails when `nanos ≥ 10⁹`, |offset| > 23:59, or the local date leaves 0000–9999.
    pub fn new(unix: i64, nanos: u32, offset_minutes: i16) -> Result<DateTime, DateTimeError> {
        if nanos >= 1_000_000_000 || offset_minutes.unsigned_abs() > OFFSET_MAX as u16 {
            return Err(DateTimeError::FieldRange);
        }
        let local = unix.checked_add(i64::from(offset_minutes) * 60).ok_or(DateTimeError::OutOfRange)?;
        if !(SECS_MIN..=SECS_MAX).contains(&local) {
            return Err(DateTimeError::OutOfRange);
        }
        Ok(DateTime { unix, nanos, offset_minutes })
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub const fn unix_seconds(&self) -> i64 {
        self.unix
    }

    /// Fraction of the second, in nanoseconds.
    pub const fn nanos(&self) -> u32 {
        self.nanos
    }

    /// UTC offset the timestamp was written in, minutes east of UTC.
    pub const fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// Parses `full-date "T" full-time` (RFC 3339 §5.6); `t`/`z` lowercase and a space
    /// for `T` are accepted. Fraction digits past nanoseconds are read and dropped.
    pub fn parse(s: &[u8]) -> Result<DateTime, DateTimeError> {
        let year = digits(s, 0, 4)?;
        expect(s, 4, b'-')?;
        let month = digits(s, 5, 2)?;
        expect(s, 7, b'-')?;
        let day = digits(s, 8, 2)?;
        match s.get(10) {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(DateTimeError::Syntax),
        }
        let hour = digits(s, 11, 2)?;
        expect(s, 13, b':')?;
        let minute = digits(s, 14, 2)?;
        expect(s, 16, b':')?;
        let second = digits(s, 17, 2)?;
        let mut at = 19;
        let mut nanos = 0u32;
        if s.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            let mut scale = 100_000_000u32;
            while let Some(&b) = s.get(at) {
                if !b.is_ascii_digit() {
                    break;
                }
                nanos += u32::from(b - b'0') * scale;
                scale /= 10;
                at += 1;
            }
            if at == start {
                return Err(DateTimeError::Syntax);
            }
        }
        let offset: i32 = match s.get(at) {
            Some(b'Z' | b'z') => {
                at += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                let oh = digits(s, at + 1, 2)?;
                expect(s, at + 3, b':')?;
                let om = digits(s, at + 4, 2)?;
                at += 6;
                if oh > 23 || om > 59 {
                    return Err(DateTimeError::FieldRange);
                }
                let m = (oh * 60 + om) as i32;
                if sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return Err(DateTimeError::Syntax),
        };
        if at != s.len() {
            return Err(DateTimeError::Syntax);
        }
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(i64::from(year), month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(DateTimeError::FieldRange);
        }
        let days = days_from_civil(i64::from(year), month, day);
        let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
        Ok(DateTime { unix: local - i64::from(offset) * 60, nanos, offset_minutes: offset as i16 })
    }

    /// Writes the timestamp (`…Z` or `…±hh:mm`, fraction only when non-zero, trailing
    /// zeros trimmed) into `buf`; returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, DateTimeError> {
        let local = self
            .unix
            .checked_add(i64::from(self.offset_minutes) * 60)
            .filter(|l| (SECS_MIN..=SECS_MAX).contains(l))
            .ok_or(DateTimeError::OutOfRange)?;
        if self.nanos >= 1_000_000_000 {
            return Err(DateTimeError::FieldRange);
        }
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400) as u32;
        let mut tmp = [0u8; Self::MAX_LEN];
        let put2 = |t: &mut [u8], at: usize, v: u32| {
            t[at] = b'0' + (v / 10 % 10) as u8;
            t[at + 1] = b'0' + (v % 10) as u8;
        };
        let y = y as u32; // 0..=9999 by the range check above
        put2(&mut tmp, 0, y / 100);
        put2(&mut tmp, 2, y % 100);
        tmp[4] = b'-';
        put2(&mut tmp, 5, mo);
        tmp[7] = b'-';
        put2(&mut tmp, 8, d);
        tmp[10] = b'T';
        put2(&mut tmp, 11, sod / 3600);
        tmp[13] = b':';
        put2(&mut tmp, 14, sod / 60 % 60);
        tmp[16] = b':';
        put2(&mut tmp, 17, sod % 60);
        let mut n = 19;
        if self.nanos != 0 {
            tmp[n] = b'.';
            n += 1;
            let mut v = self.nanos;
            let mut width = 9;
            while v.is_multiple_of(10) {
                v /= 10;
                width -= 1;
            }
            for i in (0..width).rev() {
                tmp[n + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            n += width;
        }
        if self.offset_minutes == 0 {
            tmp[n] = b'Z';
            n += 1;
        } else {
            tmp[n] = if self.offset_minutes < 0 { b'-' } else { b'+' };
            let m = u32::from(self.offset_minutes.unsigned_abs());
            put2(&mut tmp, n + 1, m / 60);
            tmp[n + 3] = b':';
            put2(&mut tmp, n + 4, m % 60);
            n += 6;
        }
        let out = buf.get_mut(..n).ok_or(DateTimeError::BufferTooSmall)?;
        out.copy_from_slice(&tmp[..n]);
        Ok(n)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; DateTime::MAX_LEN];
        match self.emit(&mut buf) {
            Ok(n) => f.write_str(core::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?),
            Err(_) => write!(f, "@{}.{:09}", self.unix, self.nanos),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dispositions (RFC 5438 §6.2)
// ---------------------------------------------------------------------------------------

/// The notifications an `imdn.Disposition-Notification` header asks for (RFC 5438 §6.2):
/// a small bit set. Unknown tokens are ignored but remembered ([`Dispositions::has_unknown`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dispositions(u8);

impl Dispositions {
    /// `positive-delivery`: notify when delivered.
    pub const POSITIVE_DELIVERY: Dispositions = Dispositions(1);
    /// `negative-delivery`: notify when delivery failed.
    pub const NEGATIVE_DELIVERY: Dispositions = Dispositions(2);
    /// `processing`: notify on intermediate processing (stored, processed…).
    pub const PROCESSING: Dispositions = Dispositions(4);
    /// `display`: notify when displayed (read).
    pub const DISPLAY: Dispositions = Dispositions(8);
    const KNOWN: u8 = 0x0f;
    const UNKNOWN: u8 = 0x80;

    /// Nothing requested.
    pub const fn empty() -> Dispositions {
        Dispositions(0)
    }

    /// The raw bits (bit 7 = an unknown token was seen).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every disposition in `other` is requested.
    pub const fn contains(self, other: Dispositions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: Dispositions) -> Dispositions {
        Dispositions(self.0 | other.0)
    }

    /// Adds the dispositions of `other`.
    pub fn insert(&mut self, other: Dispositions) {
        self.0 |= other.0;
    }

    /// Whether no known disposition is requested.
    pub const fn is_empty(self) -> bool {
        self.0 & Self::KNOWN == 0
    }

    /// Whether the header carried a token this crate does not know.
    pub const fn has_unknown(self) -> bool {
        self.0 & Self::UNKNOWN != 0
    }

    /// The known dispositions only (unknown marker cleared).
    pub const fn known(self) -> Dispositions {
        Dispositions(self.0 & Self::KNOWN)
    }

    /// Parses a comma-separated token list (tokens case-insensitive, whitespace ignored).
    pub fn parse(value: &[u8]) -> Dispositions {
        let mut d = Dispositions(0);
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            d.0 |= match DISPOSITION_TOKENS.iter().find(|(t, _)| token.eq_ignore_ascii_case(t)) {
                Some((_, bit)) => bit.0,
                None => Self::UNKNOWN,
            };
        }
        d
    }
}

const DISPOSITION_TOKENS: [(&[u8], Dispositions); 4] = [
    (b"positive-delivery", Dispositions::POSITIVE_DELIVERY),
    (b"negative-delivery", Dispositions::NEGATIVE_DELIVERY),
    (b"processing", Dispositions::PROCESSING),
    (b"display", Dispositions::DISPLAY),
];

impl core::ops::BitOr for Dispositions {
    type Output = Dispositions;
    fn bitor(self, rhs: Dispositions) -> Dispositions {
        self.union(rhs)
    }
}

impl fmt::Display for Dispositions {
    /// The header value form: `positive-delivery, display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (token, bit) in DISPOSITION_TOKENS {
            if self.contains(bit) {
                f.write_str(sep)?;
                f.write_str(core::str::from_utf8(token).map_err(|_| fmt::Error)?)?;
                sep = ", ";
            }
        }
        if self.has_unknown() {
            f.write_str(sep)?;
            f.write_str("(unknown)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dispositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dispositions({self})")
    }
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/// A CPIM address (RFC 3862 §4.1 `From`/`To`/`cc`, RFC 5438 §6.3 `IMDN-Record-Route`):
/// `[Formal-name] "<" URI ">"`. Not SIP's `name-addr` ([`crate::wire::sip::NameAddr`]):
/// no parameters follow it, and its URI is kept as bytes. `display` is the raw name: the inside of the quotes
/// (backslash escapes kept) or the unquoted words; empty when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpimAddress<'a> {
    /// Display name (raw), empty when absent.
    pub display: &'a [u8],
    /// The URI between `<` and `>`.
    pub uri: &'a [u8],
}

impl<'a> CpimAddress<'a> {
    /// An address with display name `display` (raw quoted-string content, may be empty).
    pub const fn new(display: &'a [u8], uri: &'a [u8]) -> CpimAddress<'a> {
        CpimAddress { display, uri }
    }

    /// Parses `"Name" <uri>`, `Name Words <uri>` or `<uri>`; a bare URI without angle
    /// brackets and whitespace is accepted too.
    pub fn parse(value: &'a [u8]) -> Result<CpimAddress<'a>, CpimError> {
        let v = value.trim_ascii();
        let (display, rest) = if v.first() == Some(&b'"') {
            let mut i = 1;
            loop {
                match v.get(i) {
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                    None => return Err(CpimError::BadAddress),
                }
            }
            (&v[1..i], v[i + 1..].trim_ascii())
        } else {
            match v.iter().position(|&b| b == b'<') {
                Some(lt) => (v[..lt].trim_ascii(), &v[lt..]),
                None => {
                    // Bare URI (tolerated): one word with a scheme.
                    if v.is_empty() || v.iter().any(|&b| b <= b' ' || b == b'>') || !v.contains(&b':') {
                        return Err(CpimError::BadAddress);
                    }
                    return Ok(CpimAddress { display: &[], uri: v });
                }
            }
        };
        let inner = rest.strip_prefix(b"<").and_then(|r| r.strip_suffix(b">")).ok_or(CpimError::BadAddress)?;
        if inner.is_empty() || inner.iter().any(|&b| b == b'<' || b == b'>' || b == b'\r' || b == b'\n') {
            return Err(CpimError::BadAddress);
        }
        Ok(CpimAddress { display, uri: inner })
    }

    fn check(&self) -> Result<(), CpimError> {
        let uri_ok =
            !self.uri.is_empty() && !self.uri.iter().any(|&b| matches!(b, b'<' | b'>' | b'\r' | b'\n' | b' ' | b'\t'));
        if !uri_ok || !quoted_content_ok(self.display) || self.display.trim_ascii().len() != self.display.len() {
            return Err(CpimError::InvalidValue);
        }
        Ok(())
    }

    fn emit(&self, w: &mut Out<'_>) -> Result<(), CpimError> {
        self.check()?;
        if !self.display.is_empty() {
            w.put(b"\"")?;
            w.put(self.display)?;
            w.put(b"\" ")?;
        }
        w.put(b"<")?;
        w.put(self.uri)?;
        w.put(b">")
    }
}

impl fmt::Display for CpimAddress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.display.is_empty() {
            write!(f, "\"{}\" ", self.display.escape_ascii())?;
        }
        write!(f, "<{}>", self.uri.escape_ascii())
    }
}

/// Whether `s` can sit between double quotes as is: no CR/LF, every `"` escaped,
/// no dangling backslash.
fn quoted_content_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'\r' | b'\n' | b'"' => return false,
            b'\\' => match s.get(i + 1) {
                Some(b'\r' | b'\n') | None => return false,
                Some(_) => i += 2,
            },
            _ => i += 1,
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// Headers and message
// ---------------------------------------------------------------------------------------

/// One header line of a CPIM body (RFC 3862 §3.6 `Header`), borrowed from the input.
///
/// For message headers `namespace` is the URN the name resolves to ([`CPIM_HEADERS_NS`]
/// when unprefixed, the `NS`-declared URN for `prefix.Name`); MIME part headers have an
/// empty `prefix` and `namespace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpimHeader<'a> {
    /// Name prefix before the `.` (`imdn` in `imdn.Message-ID`), or empty.
    pub prefix: &'a [u8],
    /// Header name without prefix (`Message-ID`).
    pub name: &'a [u8],
    /// Resolved namespace URN of the name.
    pub namespace: &'a [u8],
    /// Header parameters (`;lang=fr` in `Subject:;lang=fr Bonjour`), raw, or empty.
    pub params: &'a [u8],
    /// Value, trimmed of surrounding whitespace (MIME folds are kept inside).
    pub value: &'a [u8],
}

/// An unused header slot to fill caller arrays with.
pub const EMPTY_HEADER: CpimHeader<'static> =
    CpimHeader { prefix: b"", name: b"", namespace: b"", params: b"", value: b"" };

impl CpimHeader<'_> {
    /// Whether this header is `name` in `namespace` (both compared ASCII-case-insensitively,
    /// so that `imdn.message-id` or an upper-case URN is still understood).
    pub fn is(&self, namespace: &[u8], name: &[u8]) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.namespace.eq_ignore_ascii_case(namespace)
    }
}

/// A parsed `message/cpim` body (RFC 3862 §2): message headers, MIME part headers, content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpimMessage<'h, 'a> {
    /// The message headers (RFC 3862 §3), in order.
    pub message_headers: &'h [CpimHeader<'a>],
    /// The encapsulated MIME part headers (`Content-Type`, …), in order.
    pub content_headers: &'h [CpimHeader<'a>],
    /// The content: `Content-Length` bytes when given, else the rest of the input.
    pub content: &'a [u8],
}

/// The next line at `pos`: (content without CR/LF, position after the LF).
fn line_at(input: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = input.get(pos..)?;
    let nl = find_byte(rest, b'\n')?;
    let line = &rest[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, pos + nl + 1))
}

fn is_name_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && b != b':'
}

/// [`is_name_char`] as a table, for the per-line hot loop.
static NAME_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'!';
    while b < 0x7f {
        t[b as usize] = b != b':';
        b += 1;
    }
    t
};

/// Reads `Name:` at the start of a header line: (name, index just after the colon).
/// Whitespace between the name and the colon is tolerated.
fn header_name(line: &[u8]) -> Result<(&[u8], usize), CpimError> {
    let end = line.iter().position(|&b| !NAME_CHAR[usize::from(b)]).unwrap_or(line.len());
    let mut colon = end;
    while matches!(line.get(colon), Some(b' ' | b'\t')) {
        colon += 1;
    }
    if end == 0 || line.get(colon) != Some(&b':') {
        return Err(CpimError::BadHeaderLine);
    }
    Ok((&line[..end], colon + 1))
}

/// Parses `NS: [prefix] <urn>` into (prefix, urn).
fn parse_ns(value: &[u8]) -> Result<(&[u8], &[u8]), CpimError> {
    let lt = value.iter().position(|&b| b == b'<').ok_or(CpimError::BadNamespace)?;
    let prefix = value[..lt].trim_ascii();
    let urn = value[lt + 1..].strip_suffix(b">").ok_or(CpimError::BadNamespace)?;
    if urn.is_empty()
        || urn.iter().any(|&b| b <= b' ' || b == b'<' || b == b'>')
        || !prefix.iter().all(|&b| is_name_char(b) && b != b'.')
    {
        return Err(CpimError::BadNamespace);
    }
    Ok((prefix, urn))
}

/// Parses a `message/cpim` body (RFC 3862 §2) into `headers` (message headers first,
/// then MIME part headers). Single pass, no allocation.
///
/// `NS: prefix <urn>` binds `prefix` for the headers after it; a prefixed header whose
/// prefix is unbound is [`CpimError::UnknownNamespacePrefix`]. A prefix-less `NS` is kept
/// as a header but does not re-map unprefixed names (core headers stay core).
/// Line ends may be CRLF or bare LF. Message headers may not fold; MIME part headers may.
pub fn parse<'h, 'a>(input: &'a [u8], headers: &'h mut [CpimHeader<'a>]) -> Result<CpimMessage<'h, 'a>, CpimError> {
    let none: &'a [u8] = b"";
    let mut ns: [(&'a [u8], &'a [u8]); MAX_NAMESPACES] = [(none, none); MAX_NAMESPACES];
    let mut ns_len = 0usize;
    let mut n = 0usize;
    let mut pos = 0usize;

    // Message headers.
    loop {
        let Some((line, next)) = line_at(input, pos) else {
            return Err(if pos >= input.len() { CpimError::MissingBlankLine } else { CpimError::Truncated });
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        let (full_name, after_colon) = header_name(line)?;
        let after = &line[after_colon..];
        let (params, value) = if after.first() == Some(&b';') {
            let sp = after.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(after.len());
            after.split_at(sp)
        } else {
            (&after[..0], after)
        };
        let value = value.trim_ascii();
        let (prefix, name) = match full_name.iter().position(|&b| b == b'.') {
            Some(dot) => (&full_name[..dot], &full_name[dot + 1..]),
            None => (&full_name[..0], full_name),
        };
        if name.is_empty() || (prefix.is_empty() && name.len() != full_name.len()) {
            return Err(CpimError::BadHeaderLine);
        }
        let namespace: &'a [u8] = if prefix.is_empty() {
            if name.eq_ignore_ascii_case(b"NS") {
                let (p, urn) = parse_ns(value)?;
                if !p.is_empty() {
                    match ns[..ns_len].iter_mut().find(|(q, _)| q.eq_ignore_ascii_case(p)) {
                        Some(slot) => slot.1 = urn,
                        None => {
                            let slot = ns.get_mut(ns_len).ok_or(CpimError::TooManyNamespaces)?;
                            *slot = (p, urn);
                            ns_len += 1;
                        }
                    }
                }
            }
            CPIM_HEADERS_NS
        } else {
            match ns[..ns_len].iter().find(|(q, _)| q.eq_ignore_ascii_case(prefix)) {
                Some((_, urn)) => urn,
                None => return Err(CpimError::UnknownNamespacePrefix),
            }
        };
        let slot = headers.get_mut(n).ok_or(CpimError::TooManyHeaders)?;
        *slot = CpimHeader { prefix, name, namespace, params, value };
        n += 1;
    }
    let message_count = n;

    // MIME part headers.
    let mut content_length: Option<usize> = None;
    let mut cur = line_at(input, pos);
    loop {
        let Some((line, mut next)) = cur else {
            return Err(if pos >= input.len() { CpimError::MissingBlankLine } else { CpimError::Truncated });
        };
        if line.is_empty() {
            pos = next;
            break;
        }
        let (name, after_colon) = header_name(line)?;
        let value_start = pos + after_colon;
        let mut value_end = pos + line.len();
        // Folded continuation lines (leading SP/HT) extend the value.
        cur = line_at(input, next);
        while let Some((cont, after)) = cur {
            if !matches!(cont.first(), Some(b' ' | b'\t')) {
                break;
            }
            value_end = next + cont.len();
            next = after;
            cur = line_at(input, next);
        }
        pos = next;
        let value = input.get(value_start..value_end).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"Content-Length") {
            content_length = Some(parse_decimal(value).ok_or(CpimError::BadContentLength)?);
        }
        let slot = headers.get_mut(n).ok_or(CpimError::TooManyHeaders)?;
        *slot = CpimHeader { prefix: b"", name, namespace: b"", params: b"", value };
        n += 1;
    }

    let rest = input.get(pos..).unwrap_or_default();
    let content = match content_length {
        Some(len) => rest.get(..len).ok_or(CpimError::Truncated)?,
        None => rest,
    };
    let filled: &'h [CpimHeader<'a>] = headers;
    let (message_headers, content_headers) = filled.get(..n).unwrap_or_default().split_at(message_count);
    Ok(CpimMessage { message_headers, content_headers, content })
}

fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v = 0usize;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    Some(v)
}

impl<'h, 'a> CpimMessage<'h, 'a> {
    /// Message headers named `name` in `namespace`, in order.
    pub fn headers_named<'s>(
        &'s self,
        namespace: &'s [u8],
        name: &'s [u8],
    ) -> impl Iterator<Item = &'h CpimHeader<'a>> + 's {
        self.message_headers.iter().filter(move |h| h.is(namespace, name))
    }

    /// Value of the first message header `name` in `namespace`.
    pub fn header(&self, namespace: &[u8], name: &[u8]) -> Option<&'a [u8]> {
        self.message_headers.iter().find(|h| h.is(namespace, name)).map(|h| h.value)
    }

    /// Value of the first MIME part header `name` (case-insensitive).
    pub fn content_header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.content_headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// `From` (RFC 3862 §4.1).
    pub fn from(&self) -> Result<CpimAddress<'a>, CpimError> {
        CpimAddress::parse(self.header(CPIM_HEADERS_NS, b"From").ok_or(CpimError::MissingFrom)?)
    }

    /// The first `To` (RFC 3862 §4.2).
    pub fn to(&self) -> Result<CpimAddress<'a>, CpimError> {
        CpimAddress::parse(self.header(CPIM_HEADERS_NS, b"To").ok_or(CpimError::MissingTo)?)
    }

    /// Every `To`, in order.
    pub fn to_all<'s>(&'s self) -> impl Iterator<Item = Result<CpimAddress<'a>, CpimError>> + 's {
        self.headers_named(CPIM_HEADERS_NS, b"To").map(|h| CpimAddress::parse(h.value))
    }

    /// Every `cc` (RFC 3862 §4.3), in order.
    pub fn cc<'s>(&'s self) -> impl Iterator<Item = Result<CpimAddress<'a>, CpimError>> + 's {
        self.headers_named(CPIM_HEADERS_NS, b"cc").map(|h| CpimAddress::parse(h.value))
    }

    /// `DateTime` (RFC 3862 §4.4), `None` when absent.
    pub fn datetime(&self) -> Result<Option<DateTime>, CpimError> {
        match self.header(CPIM_HEADERS_NS, b"DateTime") {
            Some(v) => DateTime::parse(v).map(Some).map_err(CpimError::BadDateTime),
            None => Ok(None),
        }
    }

    /// `Subject` (RFC 3862 §4.5), first one, raw.
    pub fn subject(&self) -> Option<&'a [u8]> {
        self.header(CPIM_HEADERS_NS, b"Subject")
    }

    /// `imdn.Message-ID` (RFC 5438 §6.3), under whatever prefix binds [`IMDN_NS`].
    pub fn message_id(&self) -> Option<&'a [u8]> {
        self.header(IMDN_NS, b"Message-ID")
    }

    /// Union of all `imdn.Disposition-Notification` headers (RFC 5438 §6.2); empty when none.
    pub fn dispositions(&self) -> Dispositions {
        self.headers_named(IMDN_NS, b"Disposition-Notification")
            .fold(Dispositions::empty(), |d, h| d | Dispositions::parse(h.value))
    }

    /// Every `imdn.IMDN-Record-Route` (RFC 5438 §6.3), in order.
    pub fn imdn_record_routes<'s>(&'s self) -> impl Iterator<Item = Result<CpimAddress<'a>, CpimError>> + 's {
        self.headers_named(IMDN_NS, b"IMDN-Record-Route").map(|h| CpimAddress::parse(h.value))
    }

    /// Every `imdn.IMDN-Route` (RFC 5438 §6.3), in order.
    pub fn imdn_routes<'s>(&'s self) -> impl Iterator<Item = Result<CpimAddress<'a>, CpimError>> + 's {
        self.headers_named(IMDN_NS, b"IMDN-Route").map(|h| CpimAddress::parse(h.value))
    }

    /// `imdn.Original-To` (RFC 5438 §6.4), `None` when absent.
    pub fn original_to(&self) -> Result<Option<CpimAddress<'a>>, CpimError> {
        self.header(IMDN_NS, b"Original-To").map(CpimAddress::parse).transpose()
    }

    /// MIME part `Content-Type`.
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.content_header(b"Content-Type")
    }

    /// MIME part `Content-Disposition` (`notification` for an IMDN).
    pub fn content_disposition(&self) -> Option<&'a [u8]> {
        self.content_header(b"Content-Disposition")
    }

    /// MIME part `Content-ID`.
    pub fn content_id(&self) -> Option<&'a [u8]> {
        self.content_header(b"Content-ID")
    }
}

impl fmt::Display for CpimMessage<'_, '_> {
    /// One line: `CPIM <from> → <to> id=… dt=… disp=… <content-type> (N bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CPIM")?;
        if let Ok(a) = self.from() {
            write!(f, " {a}")?;
        }
        if let Ok(a) = self.to() {
            write!(f, " -> {a}")?;
        }
        if let Some(id) = self.message_id() {
            write!(f, " id={}", id.escape_ascii())?;
        }
        if let Ok(Some(dt)) = self.datetime() {
            write!(f, " dt={dt}")?;
        }
        let d = self.dispositions();
        if d.bits() != 0 {
            write!(f, " disp=[{d}]")?;
        }
        if let Some(ct) = self.content_type() {
            write!(f, " {}", ct.escape_ascii())?;
        }
        write!(f, " ({} bytes)", self.content.len())
    }
}

// ---------------------------------------------------------------------------------------
// Emit
// ---------------------------------------------------------------------------------------

struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CpimError> {
        let end = self.len.checked_add(bytes.len()).ok_or(CpimError::BufferTooSmall)?;
        self.buf.get_mut(self.len..end).ok_or(CpimError::BufferTooSmall)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn put_decimal(&mut self, mut v: usize) -> Result<(), CpimError> {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&tmp[i..])
    }
}

/// A header value emit accepts: non-empty, no CR/LF, no surrounding whitespace.
fn check_value(v: &[u8]) -> Result<&[u8], CpimError> {
    if v.is_empty() || v.trim_ascii().len() != v.len() || v.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(CpimError::InvalidValue);
    }
    Ok(v)
}

/// What iwf writes as a `message/cpim` body (RFC 3862 §2 with the RFC 5438 §6 headers):
///
/// ```text
/// From: ["Name" ]<uri>
/// To: ["Name" ]<uri>
/// NS: imdn <urn:ietf:params:imdn>
/// imdn.Message-ID: <message_id>
/// DateTime: <datetime>
/// [imdn.Disposition-Notification: <dispositions>]     when non-empty
/// [imdn.IMDN-Record-Route: <uri>]
///
/// Content-Type: <content_type>
/// [Content-Disposition: <content_disposition>]        `notification` for an IMDN
/// Content-Length: <len>
///
/// <content>
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpimRepr<'a> {
    /// `From`.
    pub from: CpimAddress<'a>,
    /// `To`.
    pub to: CpimAddress<'a>,
    /// `DateTime`.
    pub datetime: DateTime,
    /// `imdn.Message-ID`.
    pub message_id: &'a [u8],
    /// `imdn.Disposition-Notification` (omitted when empty; unknown marker not written).
    pub dispositions: Dispositions,
    /// `imdn.IMDN-Record-Route`.
    pub imdn_record_route: Option<CpimAddress<'a>>,
    /// MIME part `Content-Type`.
    pub content_type: &'a [u8],
    /// MIME part `Content-Disposition`.
    pub content_disposition: Option<&'a [u8]>,
    /// The content.
    pub content: &'a [u8],
}

impl<'a> CpimRepr<'a> {
    /// The fields of a parsed message this type can carry (first `To`, first
    /// `IMDN-Record-Route`, known dispositions). Fails on a missing required field.
    pub fn parse(msg: &CpimMessage<'_, 'a>) -> Result<CpimRepr<'a>, CpimError> {
        Ok(CpimRepr {
            from: msg.from()?,
            to: msg.to()?,
            datetime: msg.datetime()?.ok_or(CpimError::MissingDateTime)?,
            message_id: msg.message_id().ok_or(CpimError::MissingMessageId)?,
            dispositions: msg.dispositions().known(),
            imdn_record_route: msg.imdn_record_routes().next().transpose()?,
            content_type: msg.content_type().ok_or(CpimError::MissingContentType)?,
            content_disposition: msg.content_disposition(),
            content: msg.content,
        })
    }

    /// Writes the body into `buf` (CRLF line ends); returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, CpimError> {
        let mut w = Out { buf, len: 0 };
        w.put(b"From: ")?;
        self.from.emit(&mut w)?;
        w.put(b"\r\nTo: ")?;
        self.to.emit(&mut w)?;
        w.put(b"\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: ")?;
        w.put(check_value(self.message_id)?)?;
        w.put(b"\r\nDateTime: ")?;
        let mut dt = [0u8; DateTime::MAX_LEN];
        let n = self.datetime.emit(&mut dt).map_err(CpimError::BadDateTime)?;
        w.put(&dt[..n])?;
        w.put(b"\r\n")?;
        let d = self.dispositions.known();
        if !d.is_empty() {
            w.put(b"imdn.Disposition-Notification: ")?;
            let mut sep: &[u8] = b"";
            for (token, bit) in DISPOSITION_TOKENS {
                if d.contains(bit) {
                    w.put(sep)?;
                    w.put(token)?;
                    sep = b", ";
                }
            }
            w.put(b"\r\n")?;
        }
        if let Some(route) = &self.imdn_record_route {
            w.put(b"imdn.IMDN-Record-Route: ")?;
            route.emit(&mut w)?;
            w.put(b"\r\n")?;
        }
        w.put(b"\r\nContent-Type: ")?;
        w.put(check_value(self.content_type)?)?;
        if let Some(cd) = self.content_disposition {
            w.put(b"\r\nContent-Disposition: ")?;
            w.put(check_value(cd)?)?;
        }
        w.put(b"\r\nContent-Length: ")?;
        w.put_decimal(self.content.len())?;
        w.put(b"\r\n\r\n")?;
        w.put(self.content)?;
        Ok(w.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 3862 §6 example (the MIME part of the SIP/MIME envelope removed).
    const RFC3862: &[u8] = b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n\
DateTime: 2000-12-13T13:40:00-08:00\r\n\
Subject: the weather will be fine today\r\n\
Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
Require: MyFeatures.VitalMessageOption\r\n\
MyFeatures.VitalMessageOption: Confirmation-requested\r\n\
MyFeatures.WackyMessageOption: Use-silly-font\r\n\
\r\n\
Content-type: text/xml; charset=utf-8\r\n\
Content-ID: <1234567890@foo.com>\r\n\
\r\n\
<body>\r\n\
Here is the text of my message.\r\n\
</body>\r\n";

    /// RFC 5438 §6 / §9 style: a message requesting notifications.
    const IMDN_REQUEST: &[u8] = b"From: Alice <im:alice@example.com>\r\n\
To: Bob <im:bob@example.com>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: 34jk324j\r\n\
DateTime: 2006-04-04T12:16:49-05:00\r\n\
imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n\
imdn.IMDN-Record-Route: <sip:bob-proxy@example.com>\r\n\
imdn.IMDN-Record-Route: <sip:hop2@example.com>\r\n\
\r\n\
Content-type: text/plain\r\n\
Content-length: 12\r\n\
\r\n\
Hello World!";

    fn parse_ok(input: &[u8]) -> (Vec<CpimHeader<'_>>, usize, &[u8]) {
        let mut h = [EMPTY_HEADER; 32];
        let m = parse(input, &mut h).unwrap();
        let (nm, c) = (m.message_headers.len(), m.content);
        let all = m.message_headers.iter().chain(m.content_headers).copied().collect();
        (all, nm, c)
    }

    #[test]
    fn rfc3862_example() {
        let mut h = [EMPTY_HEADER; 16];
        let m = parse(RFC3862, &mut h).unwrap();
        assert_eq!(m.message_headers.len(), 9);
        assert_eq!(m.content_headers.len(), 2);
        let from = m.from().unwrap();
        assert_eq!(from.display, b"MR SANDERS");
        assert_eq!(from.uri, b"im:piglet@100akerwood.com");
        assert_eq!(m.to().unwrap().uri, b"im:eeyore@100akerwood.com");
        let dt = m.datetime().unwrap().unwrap();
        assert_eq!(dt.unix_seconds(), 976_743_600); // 2000-12-13T21:40:00Z
        assert_eq!(dt.offset_minutes(), -480);
        assert_eq!(m.subject(), Some(&b"the weather will be fine today"[..]));
        let fr = &m.message_headers[4];
        assert_eq!(
            (fr.name, fr.params, fr.value),
            (&b"Subject"[..], &b";lang=fr"[..], &b"beau temps prevu pour aujourd'hui"[..])
        );
        let v = m.headers_named(b"mid:MessageFeatures@id.foo.com", b"VitalMessageOption").next().unwrap();
        assert_eq!(v.prefix, b"MyFeatures");
        assert_eq!(v.value, b"Confirmation-requested");
        assert_eq!(m.content_type(), Some(&b"text/xml; charset=utf-8"[..]));
        assert_eq!(m.content_id(), Some(&b"<1234567890@foo.com>"[..]));
        assert!(m.content.starts_with(b"<body>\r\n"));
        assert!(m.content.ends_with(b"</body>\r\n"));
        assert_eq!(m.message_id(), None);
        assert!(m.dispositions().is_empty());
    }

    #[test]
    fn imdn_headers() {
        let mut h = [EMPTY_HEADER; 16];
        let m = parse(IMDN_REQUEST, &mut h).unwrap();
        assert_eq!(m.message_id(), Some(&b"34jk324j"[..]));
        let d = m.dispositions();
        assert!(d.contains(Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY));
        assert!(!d.contains(Dispositions::DISPLAY) && !d.has_unknown());
        let routes: Vec<_> = m.imdn_record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, [&b"sip:bob-proxy@example.com"[..], b"sip:hop2@example.com"]);
        assert_eq!(m.imdn_routes().count(), 0);
        assert_eq!(m.content, b"Hello World!");
        assert_eq!(m.content_type(), Some(&b"text/plain"[..]));
        assert_eq!(m.original_to().unwrap(), None);
        let s = m.to_string();
        assert!(s.contains("id=34jk324j") && s.contains("positive-delivery"), "{s}");
    }

    #[test]
    fn other_prefix_same_namespace() {
        let input = b"From: <sip:a@x>\r\nTo: <sip:b@x>\r\nNS: foo <urn:ietf:params:imdn>\r\n\
foo.Message-ID: abc\r\nfoo.Disposition-Notification: display, bogus\r\nfoo.Original-To: \"B\" <sip:orig@x>\r\n\r\n\
Content-Type: text/plain\r\n\r\nhi";
        let mut h = [EMPTY_HEADER; 16];
        let m = parse(input, &mut h).unwrap();
        assert_eq!(m.message_id(), Some(&b"abc"[..]));
        let d = m.dispositions();
        assert!(d.contains(Dispositions::DISPLAY) && d.has_unknown());
        assert_eq!(d.known(), Dispositions::DISPLAY);
        assert_eq!(m.original_to().unwrap(), Some(CpimAddress::new(b"B", b"sip:orig@x")));
        assert_eq!(m.content, b"hi");
    }

    #[test]
    fn case_tolerant_and_lf_only() {
        let input = b"from: <sip:a@x>\nTO: \"Bob \\\"B\\\"\" <sip:b@x>\nNS: IMDN <URN:IETF:PARAMS:IMDN>\n\
imdn.message-id: q1\n\ncontent-type: text/plain\n\nbody\n";
        let mut h = [EMPTY_HEADER; 8];
        let m = parse(input, &mut h).unwrap();
        assert_eq!(m.from().unwrap().uri, b"sip:a@x");
        assert_eq!(m.to().unwrap().display, br#"Bob \"B\""#);
        assert_eq!(m.message_id(), Some(&b"q1"[..]));
        assert_eq!(m.content, b"body\n");
    }

    #[test]
    fn folded_mime_header_and_no_mime_headers() {
        let input = b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\r\nx";
        let (h, nm, c) = parse_ok(input);
        assert_eq!(nm, 1);
        assert_eq!(h[1].value, b"text/plain;\r\n charset=utf-8");
        assert_eq!(c, b"x");
        let (h, nm, c) = parse_ok(b"From: <sip:a@x>\r\n\r\n\r\nraw");
        assert_eq!((h.len(), nm, c), (1, 1, &b"raw"[..]));
    }

    #[test]
    fn negative_cases() {
        let mut h = [EMPTY_HEADER; 16];
        let cases: &[(&[u8], CpimError)] = &[
            (b"", CpimError::MissingBlankLine),
            (b"From: <sip:a@x>", CpimError::Truncated),
            (b"From: <sip:a@x>\r\n", CpimError::MissingBlankLine),
            (b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n", CpimError::MissingBlankLine),
            (b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain", CpimError::Truncated),
            (b"From <sip:a@x>\r\n\r\n\r\n", CpimError::BadHeaderLine),
            (b": v\r\n\r\n\r\n", CpimError::BadHeaderLine),
            (b" From: <sip:a@x>\r\n\r\n\r\n", CpimError::BadHeaderLine),
            (b"Bad Name: v\r\n\r\n\r\n", CpimError::BadHeaderLine),
            (b"imdn.Message-ID: x\r\n\r\n\r\n", CpimError::UnknownNamespacePrefix),
            (b"NS: imdn urn:ietf:params:imdn\r\n\r\n\r\n", CpimError::BadNamespace),
            (b"From: x\r\n\r\nContent-Length: 1x\r\n\r\n", CpimError::BadContentLength),
            (b"From: x\r\n\r\nContent-Length: 99999999999999999999\r\n\r\n", CpimError::BadContentLength),
            (b"From: x\r\n\r\nContent-Length: 5\r\n\r\nabc", CpimError::Truncated),
        ];
        for (input, err) in cases {
            assert_eq!(parse(input, &mut h).unwrap_err(), *err, "{}", input.escape_ascii());
        }
        let mut small = [EMPTY_HEADER; 2];
        assert_eq!(parse(IMDN_REQUEST, &mut small).unwrap_err(), CpimError::TooManyHeaders);
        let many_ns: Vec<u8> = (0..=MAX_NAMESPACES)
            .flat_map(|i| format!("NS: p{i} <urn:x:{i}>\r\n").into_bytes())
            .chain(b"\r\n\r\n".iter().copied())
            .collect();
        assert_eq!(parse(&many_ns, &mut h).unwrap_err(), CpimError::TooManyNamespaces);
        // Accessor-level errors.
        let m = parse(b"From: nobody\r\nDateTime: 2024-02-30T00:00:00Z\r\n\r\n\r\n", &mut h).unwrap();
        assert_eq!(m.from().unwrap_err(), CpimError::BadAddress);
        assert_eq!(m.to().unwrap_err(), CpimError::MissingTo);
        assert_eq!(m.datetime().unwrap_err(), CpimError::BadDateTime(DateTimeError::FieldRange));
        assert_eq!(CpimRepr::parse(&m).unwrap_err(), CpimError::BadAddress);
    }

    #[test]
    fn every_truncation_errors_or_shrinks() {
        // Cutting IMDN_REQUEST anywhere before its content never panics, and never parses
        // (the Content-Length of 12 cannot be met).
        let mut h = [EMPTY_HEADER; 16];
        let body_start = IMDN_REQUEST.len() - 12;
        for cut in 0..body_start + 11 {
            assert!(parse(&IMDN_REQUEST[..cut], &mut h).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn name_addr_forms() {
        assert_eq!(CpimAddress::parse(b"<sip:a@x>").unwrap(), CpimAddress::new(b"", b"sip:a@x"));
        assert_eq!(CpimAddress::parse(b" \"A B\"<sip:a@x> ").unwrap(), CpimAddress::new(b"A B", b"sip:a@x"));
        assert_eq!(CpimAddress::parse(b"sip:a@x").unwrap(), CpimAddress::new(b"", b"sip:a@x"));
        for bad in [&b"\"A <sip:a@x>"[..], b"A <sip:a@x", b"<>", b"\"A\" sip:a@x", b"", b"two words"] {
            assert_eq!(CpimAddress::parse(bad).unwrap_err(), CpimError::BadAddress, "{}", bad.escape_ascii());
        }
    }

    fn imdn_repr() -> CpimRepr<'static> {
        CpimRepr {
            from: CpimAddress::new(b"Bob", b"sip:bob@example.com"),
            to: CpimAddress::new(b"", b"sip:alice@example.com"),
            datetime: DateTime::parse(b"2008-04-04T12:16:49-05:00").unwrap(),
            message_id: b"dfjkleriou432333",
            dispositions: Dispositions::empty(),
            imdn_record_route: None,
            content_type: b"message/imdn+xml",
            content_disposition: Some(b"notification"),
            content: b"<imdn/>",
        }
    }

    #[test]
    fn emit_exact_bytes() {
        let mut buf = [0u8; 512];
        let repr = CpimRepr {
            dispositions: Dispositions::POSITIVE_DELIVERY | Dispositions::DISPLAY,
            imdn_record_route: Some(CpimAddress::new(b"", b"sip:iwf@example.net")),
            ..imdn_repr()
        };
        let n = repr.emit(&mut buf).unwrap();
        let expected: &[u8] = b"From: \"Bob\" <sip:bob@example.com>\r\n\
To: <sip:alice@example.com>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: dfjkleriou432333\r\n\
DateTime: 2008-04-04T12:16:49-05:00\r\n\
imdn.Disposition-Notification: positive-delivery, display\r\n\
imdn.IMDN-Record-Route: <sip:iwf@example.net>\r\n\
\r\n\
Content-Type: message/imdn+xml\r\n\
Content-Disposition: notification\r\n\
Content-Length: 7\r\n\
\r\n\
<imdn/>";
        assert_eq!(&buf[..n], expected, "{}", buf[..n].escape_ascii());
        let mut h = [EMPTY_HEADER; 16];
        let m = parse(&buf[..n], &mut h).unwrap();
        assert_eq!(CpimRepr::parse(&m).unwrap(), repr);
        // Every shorter buffer fails cleanly.
        for len in 0..n {
            assert_eq!(repr.emit(&mut buf[..len]).unwrap_err(), CpimError::BufferTooSmall);
        }
    }

    #[test]
    fn emit_rejects_injection() {
        let mut buf = [0u8; 512];
        let bad = [
            CpimRepr { message_id: b"a\r\nTo: evil", ..imdn_repr() },
            CpimRepr { message_id: b"", ..imdn_repr() },
            CpimRepr { content_type: b" text/plain", ..imdn_repr() },
            CpimRepr { from: CpimAddress::new(b"a\"b", b"sip:x"), ..imdn_repr() },
            CpimRepr { from: CpimAddress::new(b"ab\\", b"sip:x"), ..imdn_repr() },
            CpimRepr { to: CpimAddress::new(b"", b"sip:x>y"), ..imdn_repr() },
            CpimRepr { to: CpimAddress::new(b"", b""), ..imdn_repr() },
            CpimRepr { content_disposition: Some(b"x\ny"), ..imdn_repr() },
        ];
        for r in bad {
            assert_eq!(r.emit(&mut buf).unwrap_err(), CpimError::InvalidValue, "{r:?}");
        }
    }

    #[test]
    fn datetime_fixtures() {
        let cases: &[(&[u8], i64, u32, i16)] = &[
            (b"1970-01-01T00:00:00Z", 0, 0, 0),
            (b"2000-12-13T13:40:00-08:00", 976_743_600, 0, -480),
            (b"1985-04-12T23:20:50.52Z", 482_196_050, 520_000_000, 0),
            (b"1996-12-19T16:39:57-08:00", 851_042_397, 0, -480),
            (b"1990-12-31T23:59:60Z", 662_688_000, 0, 0),
            (b"1937-01-01T12:00:27.87+00:20", -1_041_336_000 + 27 - 20 * 60, 870_000_000, 20),
            (b"2024-02-29t10:00:00.123456789123z", 1_709_200_800, 123_456_789, 0),
            (b"0000-01-01T00:00:00Z", SECS_MIN, 0, 0),
            (b"9999-12-31T23:59:59Z", SECS_MAX, 0, 0),
        ];
        for &(s, unix, nanos, off) in cases {
            let dt = DateTime::parse(s).unwrap_or_else(|e| panic!("{}: {e}", s.escape_ascii()));
            assert_eq!(
                (dt.unix_seconds(), dt.nanos(), dt.offset_minutes()),
                (unix, nanos, off),
                "{}",
                s.escape_ascii()
            );
        }
        assert_eq!(DateTime::from_unix(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(DateTime::new(0, 500_000_000, -330).unwrap().to_string(), "1969-12-31T18:30:00.5-05:30");
        for bad in [
            &b"2024-01-01"[..],
            b"2024-01-01T00:00:00",
            b"2024-01-01T00:00:00.Z",
            b"2024-01-01T00:00:00+0100",
            b"2024-1-01T00:00:00Z",
            b"2024-01-01T00:00:00Zx",
            b"2024-01-01X00:00:00Z",
            b"+024-01-01T00:00:00Z",
        ] {
            assert_eq!(DateTime::parse(bad).unwrap_err(), DateTimeError::Syntax, "{}", bad.escape_ascii());
        }
        for bad in [
            &b"2023-02-29T00:00:00Z"[..],
            b"2024-13-01T00:00:00Z",
            b"2024-04-31T00:00:00Z",
            b"2024-01-00T00:00:00Z",
            b"2024-01-01T24:00:00Z",
            b"2024-01-01T00:60:00Z",
            b"2024-01-01T00:00:61Z",
            b"2024-01-01T00:00:00+24:00",
        ] {
            assert_eq!(DateTime::parse(bad).unwrap_err(), DateTimeError::FieldRange, "{}", bad.escape_ascii());
        }
        let mut small = [0u8; 19];
        assert_eq!(DateTime::from_unix(0).emit(&mut small).unwrap_err(), DateTimeError::BufferTooSmall);
        assert_eq!(DateTime::from_unix(SECS_MAX + 1).emit(&mut [0; 40]).unwrap_err(), DateTimeError::OutOfRange);
        assert_eq!(DateTime::new(0, 1_000_000_000, 0).unwrap_err(), DateTimeError::FieldRange);
        assert_eq!(DateTime::new(i64::MAX, 0, 60).unwrap_err(), DateTimeError::OutOfRange);
    }

    fn arb_datetime() -> impl Strategy<Value = DateTime> {
        (SECS_MIN + 86_400..SECS_MAX - 86_400, prop_oneof![Just(0u32), 0..1_000_000_000u32], -OFFSET_MAX..=OFFSET_MAX)
            .prop_map(|(u, n, o)| DateTime::new(u, n, o).unwrap())
    }

    fn arb_token() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b'-'), Just(b'@'), Just(b'.')], 1..24)
    }

    fn arb_display() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![b'a'..=b'z', Just(b' '), Just(b'\'')], 0..12)
            .prop_map(|v| v.trim_ascii().to_vec())
    }

    proptest! {
        #[test]
        fn datetime_round_trip(dt in arb_datetime()) {
            let mut buf = [0u8; DateTime::MAX_LEN];
            let n = dt.emit(&mut buf).unwrap();
            prop_assert_eq!(DateTime::parse(&buf[..n]).unwrap(), dt);
        }

        #[test]
        fn datetime_parse_never_panics(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = DateTime::parse(&s);
        }

        #[test]
        fn cpim_round_trip(
            fd in arb_display(), fu in arb_token(), tu in arb_token(), id in arb_token(),
            dt in arb_datetime(), disp in 0u8..16, route in proptest::option::of(arb_token()),
            cd in proptest::option::of(arb_token()),
            content in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (fu, tu) = ([b"sip:", &fu[..]].concat(), [b"sip:", &tu[..]].concat());
            let route = route.map(|r| [b"sip:", &r[..]].concat());
            let repr = CpimRepr {
                from: CpimAddress::new(&fd, &fu),
                to: CpimAddress::new(b"", &tu),
                datetime: dt,
                message_id: &id,
                dispositions: Dispositions(disp),
                imdn_record_route: route.as_deref().map(|r| CpimAddress::new(b"", r)),
                content_type: b"text/plain;charset=UTF-8",
                content_disposition: cd.as_deref(),
                content: &content,
            };
            let mut buf = [0u8; 1024];
            let n = repr.emit(&mut buf).unwrap();
            let mut h = [EMPTY_HEADER; 16];
            let m = parse(&buf[..n], &mut h).unwrap();
            prop_assert_eq!(CpimRepr::parse(&m).unwrap(), repr);
        }

        #[test]
        fn parse_never_panics(input in proptest::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b':'), Just(b'.'), Just(b'<'), Just(b'>'), Just(b' '), Just(b'"'),
            b'a'..=b'e', any::<u8>()], 0..128)) {
            let mut h = [EMPTY_HEADER; 8];
            if let Ok(m) = parse(&input, &mut h) {
                let _ = (m.from(), m.datetime(), m.dispositions(), m.to_string());
                let _ = CpimRepr::parse(&m);
            }
        }
    }
}
