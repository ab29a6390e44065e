//! Address mapping between SMPP addresses (TON / NPI / digits) and converged URIs
//! (`tel:+E.164`, `sip:+E.164@domain;user=phone`).
//!
//! SMPP 3.4 §5.2.5 / §5.2.6 give TON and NPI; E.164 numbers have at most 15 digits
//! (ITU-T E.164 §6). A national number (TON 2) becomes international with the
//! configured country code; a number with a national trunk prefix (`0…`) and unknown
//! TON is treated the same. Alphanumeric senders (TON 5) have no E.164 form: they
//! map to a SIP URI with the name as the user part, never to `tel:`.

use core::fmt;

/// SMPP type of number (SMPP 3.4 §5.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ton(pub u8);

impl Ton {
    /// Unknown.
    pub const UNKNOWN: Ton = Ton(0);
    /// International (the number carries its country code).
    pub const INTERNATIONAL: Ton = Ton(1);
    /// National (no country code).
    pub const NATIONAL: Ton = Ton(2);
    /// Network specific.
    pub const NETWORK_SPECIFIC: Ton = Ton(3);
    /// Subscriber number.
    pub const SUBSCRIBER: Ton = Ton(4);
    /// Alphanumeric (a sender name).
    pub const ALPHANUMERIC: Ton = Ton(5);
    /// Abbreviated (short code).
    pub const ABBREVIATED: Ton = Ton(6);
}

/// SMPP numbering plan indicator (SMPP 3.4 §5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Npi(pub u8);

impl Npi {
    /// Unknown.
    pub const UNKNOWN: Npi = Npi(0);
    /// ISDN / telephone numbering plan (E.163 / E.164).
    pub const ISDN: Npi = Npi(1);
}

/// Maximum digits of an E.164 number.
pub const E164_MAX_DIGITS: usize = 15;
/// Maximum length of an alphanumeric SMPP address (source_addr is 21 octets with NUL).
pub const ALPHA_MAX: usize = 20;

/// Why an address cannot be mapped. Each maps to a specific protocol error
/// (`ESME_RINVSRCADR` / `ESME_RINVDSTADR`, SIP 404 / 484).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// No digits.
    Empty,
    /// More than 15 digits (E.164) or 20 characters (alphanumeric).
    TooLong,
    /// A character that is neither a digit nor a visual separator.
    BadCharacter,
    /// A national number but no country code is configured.
    NoCountryCode,
    /// An alphanumeric address cannot be a `tel:` URI or an SMPP destination.
    NotANumber,
    /// The URI is not `tel:`, nor `sip:`/`sips:` with a telephone-number user part.
    UnsupportedUri,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "address has no digits",
            AddressError::TooLong => "address is longer than an E.164 number (15 digits)",
            AddressError::BadCharacter => "address holds a character that is not a digit",
            AddressError::NoCountryCode => "national number but no country code is configured",
            AddressError::NotANumber => "alphanumeric address where a number is required",
            AddressError::UnsupportedUri => "URI is neither tel: nor sip: with a telephone number",
            AddressError::BufferTooSmall => "output buffer too small for the address",
        })
    }
}

impl std::error::Error for AddressError {}

/// An E.164 number (digits only, country code first), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Msisdn {
    digits: [u8; E164_MAX_DIGITS],
    len: u8,
}

impl Msisdn {
    /// An E.164 number from digits with optional leading `+` and visual separators
    /// (`-`, `.`, `(`, `)`, space: RFC 3966 §5.1.1).
    pub fn parse(text: &str) -> Result<Msisdn, AddressError> {
        let mut m = Msisdn { digits: [0; E164_MAX_DIGITS], len: 0 };
        let body = text.strip_prefix('+').unwrap_or(text);
        for c in body.bytes() {
            match c {
                b'0'..=b'9' => m.push(c)?,
                b'-' | b'.' | b'(' | b')' | b' ' => {}
                _ => return Err(AddressError::BadCharacter),
            }
        }
        if m.len == 0 {
            return Err(AddressError::Empty);
        }
        Ok(m)
    }

    /// An E.164 number from ASCII digits only (no `+`, no separators): what
    /// [`Msisdn::parse`] makes of such text, copied in one go.
    pub(crate) fn from_ascii_digits(digits: &[u8]) -> Result<Msisdn, AddressError> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(AddressError::BadCharacter);
        }
        let mut m = Msisdn { digits: [0; E164_MAX_DIGITS], len: 0 };
        let slot = m.digits.get_mut(..digits.len()).ok_or(AddressError::TooLong)?;
        slot.copy_from_slice(digits);
        m.len = u8::try_from(digits.len()).map_err(|_| AddressError::TooLong)?;
        if m.len == 0 {
            return Err(AddressError::Empty);
        }
        Ok(m)
    }

    fn push(&mut self, digit: u8) -> Result<(), AddressError> {
        let slot = self.digits.get_mut(usize::from(self.len)).ok_or(AddressError::TooLong)?;
        *slot = digit;
        self.len += 1;
        Ok(())
    }

    /// The digits, without `+`.
    pub fn digits(&self) -> &str {
        core::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("")
    }

    /// Whether the number starts with `prefix` (digits, `+` ignored): exchange selection.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.digits().starts_with(prefix.strip_prefix('+').unwrap_or(prefix))
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.digits())
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn(+{})", self.digits())
    }
}

/// An address as SMPP carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmppAddress<'a> {
    /// Type of number.
    pub ton: Ton,
    /// Numbering plan.
    pub npi: Npi,
    /// The address characters (digits, or a name for TON 5).
    pub addr: &'a str,
}

/// What a legacy-side address stands for on the converged side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyParty<'a> {
    /// A telephone number.
    Number(Msisdn),
    /// An alphanumeric sender name (TON 5).
    Name(&'a str),
}

/// How numbers are written and read: the operator's numbering plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberingPlan<'a> {
    /// Country code added to national numbers (`44`), without `+`.
    pub country_code: Option<&'a str>,
    /// National trunk prefix stripped from national numbers (`0`).
    pub trunk_prefix: &'a str,
}

impl Default for NumberingPlan<'_> {
    fn default() -> Self {
        NumberingPlan { country_code: None, trunk_prefix: "0" }
    }
}

impl<'a> NumberingPlan<'a> {
    /// Maps an SMPP address to the party it names.
    pub fn from_smpp<'b>(&self, a: SmppAddress<'b>) -> Result<LegacyParty<'b>, AddressError> {
        if a.ton == Ton::ALPHANUMERIC {
            if a.addr.is_empty() {
                return Err(AddressError::Empty);
            }
            if a.addr.len() > ALPHA_MAX {
                return Err(AddressError::TooLong);
            }
            if !a.addr.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'-' | b'.' | b'_')) {
                return Err(AddressError::BadCharacter);
            }
            return Ok(LegacyParty::Name(a.addr));
        }
        let raw = a.addr.trim();
        let national = a.ton == Ton::NATIONAL
            || (a.ton == Ton::UNKNOWN
                && !raw.starts_with('+')
                && raw.starts_with(self.trunk_prefix)
                && !self.trunk_prefix.is_empty());
        if national {
            let cc = self.country_code.ok_or(AddressError::NoCountryCode)?;
            let local = raw.strip_prefix(self.trunk_prefix).unwrap_or(raw);
            let mut m = Msisdn::parse(cc)?;
            for c in local.bytes() {
                match c {
                    b'0'..=b'9' => m.push(c)?,
                    _ => return Err(AddressError::BadCharacter),
                }
            }
            if local.is_empty() {
                return Err(AddressError::Empty);
            }
            return Ok(LegacyParty::Number(m));
        }
        Msisdn::parse(raw).map(LegacyParty::Number)
    }

    /// The SMPP form of a number iwf sends: international, ISDN plan, digits only.
    pub fn to_smpp(m: &Msisdn) -> (Ton, Npi, &str) {
        (Ton::INTERNATIONAL, Npi::ISDN, m.digits())
    }
}

/// Writes `sip:+<E.164>@<domain>;user=phone` (or `sip:<name>@<domain>` for a sender name)
/// into `out`, returning the length.
pub fn write_sip_uri(party: &LegacyParty<'_>, domain: &str, out: &mut [u8]) -> Result<usize, AddressError> {
    let mut w = Writer { out, pos: 0 };
    w.put("sip:")?;
    match party {
        LegacyParty::Number(m) => {
            w.put("+")?;
            w.put(m.digits())?;
            w.put("@")?;
            w.put(domain)?;
            w.put(";user=phone")?;
        }
        LegacyParty::Name(n) => {
            for c in n.bytes() {
                // RFC 3261 user part: unreserved characters pass, others are escaped.
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
                    w.put_byte(c)?;
                } else {
                    w.put_byte(b'%')?;
                    w.put_byte(HEX[usize::from(c >> 4)])?;
                    w.put_byte(HEX[usize::from(c & 15)])?;
                }
            }
            w.put("@")?;
            w.put(domain)?;
        }
    }
    Ok(w.pos)
}

/// Writes `tel:+<E.164>` into `out`, returning the length.
pub fn write_tel_uri(m: &Msisdn, out: &mut [u8]) -> Result<usize, AddressError> {
    let mut w = Writer { out, pos: 0 };
    w.put("tel:+")?;
    w.put(m.digits())?;
    Ok(w.pos)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, s: &str) -> Result<(), AddressError> {
        let end = self.pos.checked_add(s.len()).ok_or(AddressError::BufferTooSmall)?;
        self.out.get_mut(self.pos..end).ok_or(AddressError::BufferTooSmall)?.copy_from_slice(s.as_bytes());
        self.pos = end;
        Ok(())
    }
    fn put_byte(&mut self, b: u8) -> Result<(), AddressError> {
        *self.out.get_mut(self.pos).ok_or(AddressError::BufferTooSmall)? = b;
        self.pos += 1;
        Ok(())
    }
}

/// Reads the E.164 number a converged URI names: `tel:+4470001234` (global number,
/// parameters after `;` ignored), or `sip:`/`sips:` whose user part is `+digits`
/// (with or without `;user=phone`; RFC 3261 §19.1.6). Local `tel:` numbers with a
/// `phone-context` are not E.164 and are refused. Only the URI text is needed: the
/// angle brackets of a name-addr must already be stripped.
pub fn msisdn_from_uri(uri: &str) -> Result<Msisdn, AddressError> {
    let uri = uri.trim();
    let has_scheme = |scheme: &str| uri.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme));
    if has_scheme("tel:") {
        let rest = &uri[4..];
        let number = rest.split(';').next().unwrap_or("");
        if !number.starts_with('+') {
            return Err(AddressError::UnsupportedUri);
        }
        return Msisdn::parse(number);
    }
    let rest = if has_scheme("sip:") {
        &uri[4..]
    } else if has_scheme("sips:") {
        &uri[5..]
    } else {
        return Err(AddressError::UnsupportedUri);
    };
    let Some(at) = rest.find('@') else {
        return Err(AddressError::UnsupportedUri);
    };
    // The user part may carry tel parameters (`+44...;isub=1`) before the `@`.
    let user = rest[..at].split(';').next().unwrap_or("");
    let user = user.split(':').next().unwrap_or(""); // drop a password
    if !user.starts_with('+') {
        return Err(AddressError::UnsupportedUri);
    }
    Msisdn::parse(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UK: NumberingPlan<'static> = NumberingPlan { country_code: Some("44"), trunk_prefix: "0" };

    fn num(s: &str) -> LegacyParty<'static> {
        LegacyParty::Number(Msisdn::parse(s).unwrap())
    }

    #[test]
    fn from_ascii_digits_is_parse_of_digits() {
        let all = "1234567890123456789";
        for n in 0..=all.len() {
            let d = &all[..n];
            assert_eq!(Msisdn::from_ascii_digits(d.as_bytes()), Msisdn::parse(d), "{d}");
        }
        assert_eq!(Msisdn::from_ascii_digits(b"44+7"), Err(AddressError::BadCharacter));
    }

    #[test]
    fn smpp_to_party() {
        let a = |ton, addr| SmppAddress { ton: Ton(ton), npi: Npi::ISDN, addr };
        assert_eq!(UK.from_smpp(a(1, "447000123456")), Ok(num("447000123456")));
        assert_eq!(UK.from_smpp(a(2, "07000123456")), Ok(num("447000123456")));
        assert_eq!(UK.from_smpp(a(0, "07000123456")), Ok(num("447000123456")));
        assert_eq!(UK.from_smpp(a(0, "+447000123456")), Ok(num("447000123456")));
        assert_eq!(UK.from_smpp(a(5, "SMSC A")), Ok(LegacyParty::Name("SMSC A")));
        assert_eq!(NumberingPlan::default().from_smpp(a(2, "07000")), Err(AddressError::NoCountryCode));
        assert_eq!(UK.from_smpp(a(1, "1234567890123456")), Err(AddressError::TooLong));
        assert_eq!(UK.from_smpp(a(1, "44x")), Err(AddressError::BadCharacter));
        assert_eq!(UK.from_smpp(a(1, "")), Err(AddressError::Empty));
        assert_eq!(UK.from_smpp(a(2, "0")), Err(AddressError::Empty));
        assert_eq!(UK.from_smpp(a(5, "a-name-longer-than-twenty")), Err(AddressError::TooLong));
    }

    #[test]
    fn uris() {
        let mut b = [0u8; 64];
        let n = write_sip_uri(&num("447000123456"), "iwf.ims.lab", &mut b).unwrap();
        assert_eq!(&b[..n], b"sip:+447000123456@iwf.ims.lab;user=phone");
        let n = write_sip_uri(&LegacyParty::Name("SMSC A"), "iwf.ims.lab", &mut b).unwrap();
        assert_eq!(&b[..n], b"sip:SMSC%20A@iwf.ims.lab");
        let m = Msisdn::parse("+44 (70) 00-123.456").unwrap();
        let n = write_tel_uri(&m, &mut b).unwrap();
        assert_eq!(&b[..n], b"tel:+447000123456");
        assert_eq!(write_tel_uri(&m, &mut [0u8; 10]), Err(AddressError::BufferTooSmall));
    }

    #[test]
    fn uri_to_msisdn() {
        let m = Msisdn::parse("447000123456").unwrap();
        assert_eq!(msisdn_from_uri("tel:+44-7000-123456;phone-context=x"), Ok(m));
        assert_eq!(msisdn_from_uri("TEL:+447000123456"), Ok(m));
        assert_eq!(msisdn_from_uri("sip:+447000123456@ims.lab;user=phone"), Ok(m));
        assert_eq!(msisdn_from_uri("sips:+447000123456;isub=1@ims.lab"), Ok(m));
        assert_eq!(msisdn_from_uri("tel:7000;phone-context=+44"), Err(AddressError::UnsupportedUri));
        assert_eq!(msisdn_from_uri("sip:alice@ims.lab"), Err(AddressError::UnsupportedUri));
        assert_eq!(msisdn_from_uri("mailto:a@b"), Err(AddressError::UnsupportedUri));
        assert_eq!(msisdn_from_uri("sip:+44"), Err(AddressError::UnsupportedUri));
        assert!(m.has_prefix("+4470001"));
        assert!(!m.has_prefix("4471"));
    }

    proptest! {
        #[test]
        fn prop_number_round_trip(d in "[1-9][0-9]{0,14}") {
            let party = UK.from_smpp(SmppAddress { ton: Ton::INTERNATIONAL, npi: Npi::ISDN, addr: &d }).unwrap();
            let mut b = [0u8; 80];
            let n = write_sip_uri(&party, "ims.lab", &mut b).unwrap();
            let back = msisdn_from_uri(core::str::from_utf8(&b[..n]).unwrap()).unwrap();
            prop_assert_eq!(back.digits(), d.as_str());
            prop_assert_eq!(NumberingPlan::to_smpp(&back).2, d.as_str());
        }

        #[test]
        fn prop_never_panics(s in ".{0,40}", ton in 0u8..8) {
            let _ = UK.from_smpp(SmppAddress { ton: Ton(ton), npi: Npi::ISDN, addr: &s });
            let _ = msisdn_from_uri(&s);
        }
    }
}
