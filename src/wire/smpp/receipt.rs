//! Delivery-receipt text carried in a deliver_sm `short_message` (SMPP 3.4 Appendix B).
//!
//! ```text
//! id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//! ```
//!
//! Appendix B is only an example, and the field is full of variants: `Text:` or any other
//! key case, 12-digit dates with seconds, alphanumeric `err`, missing `sub`/`dlvrd`/`text`,
//! hex or decimal ids with leading zeros, doubled spaces, unknown extra fields.
//! [`Receipt::parse`] reads all of them without copying (the raw id is kept as sent);
//! [`Receipt::emit`] writes the strict canonical form.

use core::fmt;

use super::tlv::MessageState;

/// Longest canonical receipt [`Receipt::emit`] writes (64-character id, 7-character stat,
/// 20-octet text).
pub const RECEIPT_MAX_LEN: usize = 176;

/// Longest id the canonical form carries (SMPP message_id without its NUL).
pub const RECEIPT_ID_MAX: usize = 64;

/// Octets of the original text a canonical receipt repeats.
pub const RECEIPT_TEXT_MAX: usize = 20;

/// A receipt field, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptField {
    /// `id`.
    Id,
    /// `sub`.
    Sub,
    /// `dlvrd`.
    Dlvrd,
    /// `submit date`.
    SubmitDate,
    /// `done date`.
    DoneDate,
    /// `stat`.
    Stat,
    /// `err`.
    Err,
    /// `text`.
    Text,
}

impl ReceiptField {
    /// The canonical key.
    pub fn name(self) -> &'static str {
        match self {
            ReceiptField::Id => "id",
            ReceiptField::Sub => "sub",
            ReceiptField::Dlvrd => "dlvrd",
            ReceiptField::SubmitDate => "submit date",
            ReceiptField::DoneDate => "done date",
            ReceiptField::Stat => "stat",
            ReceiptField::Err => "err",
            ReceiptField::Text => "text",
        }
    }
}

impl fmt::Display for ReceiptField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a receipt text cannot be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptError {
    /// No receipt key at all: this is not a receipt.
    NoFields,
    /// `sub` / `dlvrd` is not a number (or above 65535).
    BadCount {
        /// The field.
        field: ReceiptField,
    },
    /// A date is not 10 or 12 digits of a valid `YYMMDDhhmm[ss]`.
    BadDate {
        /// The field.
        field: ReceiptField,
    },
    /// `stat` is not UTF-8 (parse) or not 1–7 ASCII alphanumerics (emit).
    BadStat,
    /// Emit: a field the canonical form needs is absent.
    MissingField {
        /// The field.
        field: ReceiptField,
    },
    /// Emit: the id is longer than 64 characters.
    IdTooLong {
        /// Its length.
        len: usize,
    },
    /// Emit: the id has characters outside printable ASCII.
    BadId,
    /// Emit: `sub` / `dlvrd` above 999.
    CountTooLarge {
        /// The field.
        field: ReceiptField,
    },
    /// Emit: `err` is neither a number ≤ 999 nor 1–3 ASCII alphanumerics.
    BadErr,
    /// Emit: the output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReceiptError::NoFields => f.write_str("not a delivery receipt: no receipt field found"),
            ReceiptError::BadCount { field } => write!(f, "receipt {field} is not a number"),
            ReceiptError::BadDate { field } => {
                write!(f, "receipt {field} is not a valid YYMMDDhhmm[ss] date")
            }
            ReceiptError::BadStat => f.write_str("receipt stat is malformed"),
            ReceiptError::MissingField { field } => write!(f, "receipt has no {field}"),
            ReceiptError::IdTooLong { len } => {
                write!(f, "receipt id of {len} characters exceeds {RECEIPT_ID_MAX}")
            }
            ReceiptError::BadId => f.write_str("receipt id has non-printable or non-ASCII bytes"),
            ReceiptError::CountTooLarge { field } => write!(f, "receipt {field} exceeds 999"),
            ReceiptError::BadErr => f.write_str("receipt err is not 3 alphanumerics"),
            ReceiptError::BufferTooSmall { needed, available } => {
                write!(f, "output buffer too small: {needed} bytes needed, {available} available")
            }
        }
    }
}

impl std::error::Error for ReceiptError {}

/// A receipt date: `YYMMDDhhmm` with optional seconds (the 12-digit variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiptDate {
    /// Year within the century, 0–99.
    pub yy: u8,
    /// Month, 1–12.
    pub mm: u8,
    /// Day, 1–31.
    pub dd: u8,
    /// Hour, 0–23.
    pub hh: u8,
    /// Minute, 0–59.
    pub mi: u8,
    /// Second, 0–59, when the date had 12 digits.
    pub ss: Option<u8>,
}

impl ReceiptDate {
    /// A validated date.
    pub fn new(yy: u8, mm: u8, dd: u8, hh: u8, mi: u8, ss: Option<u8>) -> Option<Self> {
        let d = ReceiptDate { yy, mm, dd, hh, mi, ss };
        d.is_valid().then_some(d)
    }

    fn is_valid(&self) -> bool {
        self.yy <= 99
            && (1..=12).contains(&self.mm)
            && (1..=31).contains(&self.dd)
            && self.hh <= 23
            && self.mi <= 59
            && self.ss.is_none_or(|s| s <= 59)
    }

    /// Parses 10 or 12 ASCII digits.
    pub fn parse(digits: &[u8]) -> Option<Self> {
        if !(digits.len() == 10 || digits.len() == 12) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let two = |i: usize| -> Option<u8> {
            let pair = digits.get(i..i + 2)?;
            Some((pair[0] - b'0') * 10 + (pair[1] - b'0'))
        };
        let ss = if digits.len() == 12 { Some(two(10)?) } else { None };
        ReceiptDate::new(two(0)?, two(2)?, two(4)?, two(6)?, two(8)?, ss)
    }

    /// The canonical 10-digit form (seconds dropped).
    pub fn to_digits(&self) -> [u8; 10] {
        let mut out = [0u8; 10];
        for (i, v) in [self.yy, self.mm, self.dd, self.hh, self.mi].into_iter().enumerate() {
            out[2 * i] = b'0' + v / 10 % 10;
            out[2 * i + 1] = b'0' + v % 10;
        }
        out
    }

    /// The same date without seconds (what survives a canonical round trip).
    pub fn without_seconds(self) -> Self {
        ReceiptDate { ss: None, ..self }
    }
}

impl fmt::Display for ReceiptDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:02}{:02}{:02}{:02}", self.yy, self.mm, self.dd, self.hh, self.mi)?;
        if let Some(ss) = self.ss {
            write!(f, "{ss:02}")?;
        }
        Ok(())
    }
}

/// The `stat` field: the Appendix B 7-character states, or anything else as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStat<'a> {
    /// `DELIVRD`.
    Delivered,
    /// `EXPIRED`.
    Expired,
    /// `DELETED`.
    Deleted,
    /// `UNDELIV`.
    Undeliverable,
    /// `ACCEPTD`.
    Accepted,
    /// `UNKNOWN`.
    Unknown,
    /// `REJECTD`.
    Rejected,
    /// `ENROUTE`.
    Enroute,
    /// Anything else, as sent.
    Other(&'a str),
}

impl<'a> ReceiptStat<'a> {
    /// Parses a stat value, case-insensitively; the spelled-out forms (`DELIVERED`,
    /// `UNDELIVERABLE`, `ACCEPTED`, `REJECTED`) are recognised too.
    pub fn parse(value: &'a [u8]) -> Result<Self, ReceiptError> {
        const NAMES: &[(&str, ReceiptStat<'static>)] = &[
            ("DELIVRD", ReceiptStat::Delivered),
            ("DELIVERED", ReceiptStat::Delivered),
            ("EXPIRED", ReceiptStat::Expired),
            ("DELETED", ReceiptStat::Deleted),
            ("UNDELIV", ReceiptStat::Undeliverable),
            ("UNDELIVERABLE", ReceiptStat::Undeliverable),
            ("ACCEPTD", ReceiptStat::Accepted),
            ("ACCEPTED", ReceiptStat::Accepted),
            ("UNKNOWN", ReceiptStat::Unknown),
            ("REJECTD", ReceiptStat::Rejected),
            ("REJECTED", ReceiptStat::Rejected),
            ("ENROUTE", ReceiptStat::Enroute),
        ];
        for (name, stat) in NAMES {
            if value.eq_ignore_ascii_case(name.as_bytes()) {
                return Ok(*stat);
            }
        }
        core::str::from_utf8(value).map(ReceiptStat::Other).map_err(|_| ReceiptError::BadStat)
    }

    /// The canonical 7-character code (`DELIVRD`), or the [`ReceiptStat::Other`] text.
    pub fn as_str(&self) -> &'a str {
        match *self {
            ReceiptStat::Delivered => "DELIVRD",
            ReceiptStat::Expired => "EXPIRED",
            ReceiptStat::Deleted => "DELETED",
            ReceiptStat::Undeliverable => "UNDELIV",
            ReceiptStat::Accepted => "ACCEPTD",
            ReceiptStat::Unknown => "UNKNOWN",
            ReceiptStat::Rejected => "REJECTD",
            ReceiptStat::Enroute => "ENROUTE",
            ReceiptStat::Other(s) => s,
        }
    }

    /// The `message_state` this stat means; `SKIPPED` and `SCHEDUL(ED)` map to the 5.0
    /// states, other unrecognised values to `None`.
    pub fn message_state(&self) -> Option<MessageState> {
        Some(match *self {
            ReceiptStat::Delivered => MessageState::Delivered,
            ReceiptStat::Expired => MessageState::Expired,
            ReceiptStat::Deleted => MessageState::Deleted,
            ReceiptStat::Undeliverable => MessageState::Undeliverable,
            ReceiptStat::Accepted => MessageState::Accepted,
            ReceiptStat::Unknown => MessageState::Unknown,
            ReceiptStat::Rejected => MessageState::Rejected,
            ReceiptStat::Enroute => MessageState::Enroute,
            ReceiptStat::Other(s) if s.eq_ignore_ascii_case("SKIPPED") => MessageState::Skipped,
            ReceiptStat::Other(s) if s.eq_ignore_ascii_case("SCHEDUL") || s.eq_ignore_ascii_case("SCHEDULED") => {
                MessageState::Scheduled
            }
            ReceiptStat::Other(_) => return None,
        })
    }

    /// The stat for a `message_state` (`Scheduled` → `SCHEDUL`, `Skipped` → `SKIPPED`,
    /// unassigned values → `UNKNOWN`).
    pub fn from_message_state(state: MessageState) -> ReceiptStat<'static> {
        match state {
            MessageState::Scheduled => ReceiptStat::Other("SCHEDUL"),
            MessageState::Enroute => ReceiptStat::Enroute,
            MessageState::Delivered => ReceiptStat::Delivered,
            MessageState::Expired => ReceiptStat::Expired,
            MessageState::Deleted => ReceiptStat::Deleted,
            MessageState::Undeliverable => ReceiptStat::Undeliverable,
            MessageState::Accepted => ReceiptStat::Accepted,
            MessageState::Unknown | MessageState::Other(_) => ReceiptStat::Unknown,
            MessageState::Rejected => ReceiptStat::Rejected,
            MessageState::Skipped => ReceiptStat::Other("SKIPPED"),
        }
    }
}

impl fmt::Display for ReceiptStat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery receipt, borrowed from its text. Every field is optional on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receipt<'a> {
    /// `id`: the message id as sent (hex or decimal, leading zeros kept).
    pub id: Option<&'a [u8]>,
    /// `sub`: number of messages originally submitted.
    pub sub: Option<u16>,
    /// `dlvrd`: number of messages delivered.
    pub dlvrd: Option<u16>,
    /// `submit date`.
    pub submit_date: Option<ReceiptDate>,
    /// `done date`.
    pub done_date: Option<ReceiptDate>,
    /// `stat`.
    pub stat: Option<ReceiptStat<'a>>,
    /// `err`: network or SMSC error code, as sent (may be alphanumeric).
    pub err: Option<&'a [u8]>,
    /// `text`: everything after the `text:` key, as sent.
    pub text: Option<&'a [u8]>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn word_end(input: &[u8], from: usize) -> usize {
    let run = input.get(from..).unwrap_or(&[]).iter().take_while(|b| b.is_ascii_alphabetic() || **b == b'_').count();
    from + run
}

/// If a receipt key starts at `pos`, returns it and the position just after its colon.
fn match_key(input: &[u8], pos: usize) -> Option<(ReceiptField, usize)> {
    let end = word_end(input, pos);
    let word = input.get(pos..end)?;
    let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
    let (field, end) = if is("id") {
        (ReceiptField::Id, end)
    } else if is("sub") {
        (ReceiptField::Sub, end)
    } else if is("dlvrd") {
        (ReceiptField::Dlvrd, end)
    } else if is("stat") {
        (ReceiptField::Stat, end)
    } else if is("err") {
        (ReceiptField::Err, end)
    } else if is("text") {
        (ReceiptField::Text, end)
    } else if is("submit_date") || is("submitdate") {
        (ReceiptField::SubmitDate, end)
    } else if is("done_date") || is("donedate") {
        (ReceiptField::DoneDate, end)
    } else if is("submit") || is("done") {
        // "submit date", with any run of spaces between the two words.
        let gap = input.get(end..)?.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let date_start = end + gap;
        let date_end = word_end(input, date_start);
        if gap == 0 || !input.get(date_start..date_end)?.eq_ignore_ascii_case(b"date") {
            return None;
        }
        let field = if is("submit") { ReceiptField::SubmitDate } else { ReceiptField::DoneDate };
        (field, date_end)
    } else {
        return None;
    };
    (input.get(end) == Some(&b':')).then_some((field, end + 1))
}

impl<'a> Receipt<'a> {
    /// Parses a receipt text tolerantly (see the module docs). Unknown `key:value`
    /// tokens and stray words are skipped; the first occurrence of a key wins;
    /// `text:` takes the rest of the input. Fails only when no key is found or a
    /// present `sub`/`dlvrd`/date/`stat` value is malformed.
    pub fn parse(input: &'a [u8]) -> Result<Self, ReceiptError> {
        let mut r = Receipt::default();
        let mut found = false;
        let mut pos = 0usize;
        let len = input.len();
        while pos < len {
            while input.get(pos).is_some_and(|&b| is_space(b)) {
                pos += 1;
            }
            if pos >= len {
                break;
            }
            let Some((field, after)) = match_key(input, pos) else {
                // Not a key: skip the token.
                while input.get(pos).is_some_and(|&b| !is_space(b)) {
                    pos += 1;
                }
                continue;
            };
            found = true;
            if field == ReceiptField::Text {
                if r.text.is_none() {
                    r.text = Some(input.get(after..).unwrap_or(&[]));
                }
                break;
            }
            // The value: the next token, unless it is the next key (empty value).
            let mut start = after;
            while input.get(start).is_some_and(|&b| b == b' ' || b == b'\t') {
                start += 1;
            }
            let mut end = start;
            if match_key(input, start).is_none() {
                while input.get(end).is_some_and(|&b| !is_space(b)) {
                    end += 1;
                }
            }
            pos = end;
            let value = input.get(start..end).unwrap_or(&[]);
            if value.is_empty() {
                continue;
            }
            match field {
                ReceiptField::Id if r.id.is_none() => r.id = Some(value),
                ReceiptField::Sub if r.sub.is_none() => r.sub = Some(parse_count(value, field)?),
                ReceiptField::Dlvrd if r.dlvrd.is_none() => r.dlvrd = Some(parse_count(value, field)?),
                ReceiptField::SubmitDate if r.submit_date.is_none() => {
                    r.submit_date = Some(ReceiptDate::parse(value).ok_or(ReceiptError::BadDate { field })?)
                }
                ReceiptField::DoneDate if r.done_date.is_none() => {
                    r.done_date = Some(ReceiptDate::parse(value).ok_or(ReceiptError::BadDate { field })?)
                }
                ReceiptField::Stat if r.stat.is_none() => r.stat = Some(ReceiptStat::parse(value)?),
                ReceiptField::Err if r.err.is_none() => r.err = Some(value),
                _ => {}
            }
        }
        if found {
            Ok(r)
        } else {
            Err(ReceiptError::NoFields)
        }
    }

    /// The `message_state` the `stat` maps to.
    pub fn message_state(&self) -> Option<MessageState> {
        self.stat.and_then(|s| s.message_state())
    }

    /// `err` as a number, when it is all digits.
    pub fn err_code(&self) -> Option<u32> {
        let err = self.err?;
        if err.is_empty() || !err.iter().all(u8::is_ascii_digit) {
            return None;
        }
        err.iter().try_fold(0u32, |n, d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
    }

    /// Length of the canonical text [`Receipt::emit`] writes.
    pub fn buffer_len(&self) -> Result<usize, ReceiptError> {
        Ok(self.canonical()?.len())
    }

    fn canonical(&self) -> Result<Canonical<'a>, ReceiptError> {
        let id = self.id.ok_or(ReceiptError::MissingField { field: ReceiptField::Id })?;
        if id.len() > RECEIPT_ID_MAX {
            return Err(ReceiptError::IdTooLong { len: id.len() });
        }
        // A branch-free fold (vectorised): the id is at most RECEIPT_ID_MAX bytes.
        if id.is_empty() || !id.iter().fold(true, |ok, b| ok & b.is_ascii_graphic()) {
            return Err(ReceiptError::BadId);
        }
        let stat = self.stat.ok_or(ReceiptError::MissingField { field: ReceiptField::Stat })?;
        let stat = stat.as_str().as_bytes();
        if stat.is_empty() || stat.len() > 7 || !stat.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ReceiptError::BadStat);
        }
        let submit = self
            .submit_date
            .filter(ReceiptDate::is_valid)
            .ok_or(ReceiptError::MissingField { field: ReceiptField::SubmitDate })?;
        let done = self
            .done_date
            .filter(ReceiptDate::is_valid)
            .ok_or(ReceiptError::MissingField { field: ReceiptField::DoneDate })?;
        let delivered = self.stat == Some(ReceiptStat::Delivered);
        let sub = self.sub.unwrap_or(1);
        let dlvrd = self.dlvrd.unwrap_or(u16::from(delivered));
        if sub > 999 {
            return Err(ReceiptError::CountTooLarge { field: ReceiptField::Sub });
        }
        if dlvrd > 999 {
            return Err(ReceiptError::CountTooLarge { field: ReceiptField::Dlvrd });
        }
        let mut err = [b'0'; 3];
        let mut err_len = 3;
        match self.err {
            None => {}
            // Three digits are their own zero-padded form.
            Some(&[a, b, c]) if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
                err = [a, b, c];
            }
            Some(e) if !e.is_empty() && e.iter().all(u8::is_ascii_digit) => {
                let code = self.err_code().filter(|&c| c <= 999).ok_or(ReceiptError::BadErr)?;
                err = digits3(code as u16);
            }
            Some(e) if (1..=3).contains(&e.len()) && e.iter().all(u8::is_ascii_alphanumeric) => {
                err[..e.len()].copy_from_slice(e);
                err_len = e.len();
            }
            Some(_) => return Err(ReceiptError::BadErr),
        }
        let text = self.text.unwrap_or(&[]);
        let mut cut = text.len().min(RECEIPT_TEXT_MAX);
        let head = text.get(..cut).unwrap_or(&[]);
        if let Err(e) = core::str::from_utf8(head) {
            // Never split a UTF-8 character cut at the end; other bytes stay as they are.
            if e.error_len().is_none() {
                cut = e.valid_up_to();
            }
        }
        Ok(Canonical {
            id,
            sub: digits3(sub),
            dlvrd: digits3(dlvrd),
            submit: submit.to_digits(),
            done: done.to_digits(),
            stat,
            err,
            err_len,
            text: text.get(..cut).unwrap_or(&[]),
        })
    }

    /// Writes the canonical Appendix-B text into `buf`, returning its length:
    /// `id:<≤64> sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    /// stat:DDDDDDD err:EEE text:<first 20 octets>`.
    ///
    /// Needs `id`, `stat` and both dates. A missing `sub` is written `001`, a missing
    /// `dlvrd` `001` when delivered else `000`, a missing `err` `000`; a numeric `err` is
    /// zero-padded to 3 digits. Seconds are dropped from the dates. Allocation-free.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReceiptError> {
        let c = self.canonical()?;
        let needed = c.len();
        if buf.len() < needed {
            return Err(ReceiptError::BufferTooSmall { needed, available: buf.len() });
        }
        let parts: [&[u8]; 16] = [
            b"id:",
            c.id,
            b" sub:",
            &c.sub,
            b" dlvrd:",
            &c.dlvrd,
            b" submit date:",
            &c.submit,
            b" done date:",
            &c.done,
            b" stat:",
            c.stat,
            b" err:",
            c.err.get(..c.err_len).unwrap_or(&[]),
            b" text:",
            c.text,
        ];
        let available = buf.len();
        let mut pos = 0usize;
        for part in parts {
            let end = pos + part.len();
            buf.get_mut(pos..end).ok_or(ReceiptError::BufferTooSmall { needed, available })?.copy_from_slice(part);
            pos = end;
        }
        Ok(pos)
    }
}

/// The validated pieces of a canonical receipt.
struct Canonical<'a> {
    id: &'a [u8],
    sub: [u8; 3],
    dlvrd: [u8; 3],
    submit: [u8; 10],
    done: [u8; 10],
    stat: &'a [u8],
    err: [u8; 3],
    err_len: usize,
    text: &'a [u8],
}

impl Canonical<'_> {
    fn len(&self) -> usize {
        // "id:" " sub:" " dlvrd:" " submit date:" " done date:" " stat:" " err:" " text:"
        const FIXED: usize = 3 + 5 + 3 + 7 + 3 + 13 + 10 + 11 + 10 + 6 + 5 + 6;
        FIXED + self.id.len() + self.stat.len() + self.err_len + self.text.len()
    }
}

fn digits3(n: u16) -> [u8; 3] {
    [b'0' + (n / 100 % 10) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

fn parse_count(value: &[u8], field: ReceiptField) -> Result<u16, ReceiptError> {
    if !value.iter().all(u8::is_ascii_digit) {
        return Err(ReceiptError::BadCount { field });
    }
    value
        .iter()
        .try_fold(0u16, |n, d| n.checked_mul(10)?.checked_add(u16::from(d - b'0')))
        .ok_or(ReceiptError::BadCount { field })
}

impl fmt::Display for Receipt<'_> {
    /// A one-line summary: `receipt id=… stat=… err=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receipt")?;
        if let Some(id) = self.id {
            write!(f, " id={}", id.escape_ascii())?;
        }
        if let Some(stat) = self.stat {
            write!(f, " stat={stat}")?;
        }
        if let Some(err) = self.err {
            write!(f, " err={}", err.escape_ascii())?;
        }
        if let Some(d) = self.done_date {
            write!(f, " done={d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> Option<ReceiptDate> {
        Some(ReceiptDate::parse(s.as_bytes()).unwrap())
    }

    fn emit(r: &Receipt<'_>) -> Vec<u8> {
        let mut buf = [0u8; RECEIPT_MAX_LEN];
        let n = r.emit(&mut buf).unwrap();
        assert_eq!(r.buffer_len(), Ok(n));
        buf[..n].to_vec()
    }

    #[test]
    fn appendix_b_example() {
        let text = b"id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 stat:DELIVRD err:000 text:Hello World";
        let r = Receipt::parse(text).unwrap();
        assert_eq!(
            r,
            Receipt {
                id: Some(b"0123456789"),
                sub: Some(1),
                dlvrd: Some(1),
                submit_date: date("0610191018"),
                done_date: date("0610191018"),
                stat: Some(ReceiptStat::Delivered),
                err: Some(b"000"),
                text: Some(b"Hello World"),
            }
        );
        assert_eq!(r.message_state(), Some(MessageState::Delivered));
        // Canonical in, identical canonical out.
        assert_eq!(emit(&r), text);
    }

    #[test]
    fn kannel_shape_with_empty_text() {
        let r = Receipt::parse(
            b"id:1234567890 sub:001 dlvrd:001 submit date:1402131200 done date:1402131201 stat:DELIVRD err:000 text:",
        )
        .unwrap();
        assert_eq!(r.id, Some(&b"1234567890"[..]));
        assert_eq!(r.text, Some(&b""[..]));
        assert_eq!(r.done_date, date("1402131201"));
    }

    #[test]
    fn jasmin_shape_uuid_id() {
        let r = Receipt::parse(b"id:b3a8e3a1-8c9a-4b2b-9d6f-1f0d8b4f2c11 sub:001 dlvrd:001 submit date:1809251215 done date:1809251215 stat:DELIVRD err:000 text:-").unwrap();
        assert_eq!(r.id, Some(&b"b3a8e3a1-8c9a-4b2b-9d6f-1f0d8b4f2c11"[..]));
        assert_eq!(r.text, Some(&b"-"[..]));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
    }

    #[test]
    fn capital_text_key_and_undeliv() {
        let r = Receipt::parse(b"id:7220130303 sub:001 dlvrd:000 submit date:1303031212 done date:1303031213 stat:UNDELIV err:001 Text:Test message").unwrap();
        assert_eq!(r.text, Some(&b"Test message"[..]));
        assert_eq!(r.message_state(), Some(MessageState::Undeliverable));
        assert_eq!(r.err_code(), Some(1));
    }

    #[test]
    fn twelve_digit_dates() {
        let r = Receipt::parse(
            b"id:9876 sub:001 dlvrd:000 submit date:130303121255 done date:130303121301 stat:EXPIRED err:027 text:x",
        )
        .unwrap();
        assert_eq!(r.submit_date, ReceiptDate::new(13, 3, 3, 12, 12, Some(55)));
        assert_eq!(r.done_date.unwrap().ss, Some(1));
        assert_eq!(r.message_state(), Some(MessageState::Expired));
        // Canonical form drops the seconds.
        assert_eq!(
            emit(&r),
            b"id:9876 sub:001 dlvrd:000 submit date:1303031212 done date:1303031213 stat:EXPIRED err:027 text:x"
        );
    }

    #[test]
    fn numeric_err_is_zero_padded() {
        let base = Receipt::parse(
            b"id:42 sub:001 dlvrd:000 submit date:2401011200 done date:2401011300 stat:UNDELIV err:000 text:",
        )
        .unwrap();
        for (err, want) in [
            (&b"7"[..], Some(&b"007"[..])),
            (b"42", Some(b"042")),
            (b"013", Some(b"013")),
            (b"999", Some(b"999")),
            (b"0999", Some(b"999")),
            (b"1000", None),
            (b"1a3", Some(b"1a3")),
            (b"1 3", None),
        ] {
            let r = Receipt { err: Some(err), ..base };
            let mut buf = [0u8; RECEIPT_MAX_LEN];
            match (r.emit(&mut buf), want) {
                (Ok(n), Some(w)) => assert!(buf[..n].ends_with(&[b"err:", w, b" text:"].concat())),
                (Err(e), None) => assert_eq!(e, ReceiptError::BadErr),
                (got, want) => panic!("err {err:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn alphanumeric_err() {
        let r = Receipt::parse(
            b"id:42 sub:001 dlvrd:000 submit date:2401011200 done date:2401011300 stat:REJECTD err:G0B text:",
        )
        .unwrap();
        assert_eq!(r.err, Some(&b"G0B"[..]));
        assert_eq!(r.err_code(), None);
        assert_eq!(r.message_state(), Some(MessageState::Rejected));
        assert!(emit(&r).ends_with(b"stat:REJECTD err:G0B text:"));
    }

    #[test]
    fn missing_sub_dlvrd_and_text() {
        let r = Receipt::parse(b"id:12345 submit date:2401011200 done date:2401011201 stat:DELIVRD err:0").unwrap();
        assert_eq!((r.sub, r.dlvrd, r.text), (None, None, None));
        assert_eq!(r.err_code(), Some(0));
        assert_eq!(
            emit(&r),
            b"id:12345 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:"
        );
    }

    #[test]
    fn upper_case_keys_lower_case_stat_hex_id() {
        let r = Receipt::parse(
            b"ID:4f2a9c01 SUB:001 DLVRD:001 SUBMIT DATE:2401011200 DONE DATE:2401011201 STAT:delivrd ERR:000 TEXT:abc",
        )
        .unwrap();
        assert_eq!(r.id, Some(&b"4f2a9c01"[..]));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
        assert_eq!(r.submit_date, date("2401011200"));
        assert_eq!(r.text, Some(&b"abc"[..]));
    }

    #[test]
    fn leading_zeros_and_extra_spaces() {
        let r = Receipt::parse(
            b"id:000000123  sub:1   dlvrd:1  submit  date: 2401011200  done date:2401011201 stat:DELIVRD  err:000",
        )
        .unwrap();
        assert_eq!(r.id, Some(&b"000000123"[..]));
        assert_eq!((r.sub, r.dlvrd), (Some(1), Some(1)));
        assert_eq!(r.submit_date, date("2401011200"));
        assert_eq!(r.done_date, date("2401011201"));
    }

    #[test]
    fn trailing_crlf_unknown_fields_and_underscored_keys() {
        let r = Receipt::parse(
            b"id:55 imsi:234150000000000 submit_date:2401011200 done_date:2401011201 stat:ACCEPTD err:000\r\n",
        )
        .unwrap();
        assert_eq!(r.id, Some(&b"55"[..]));
        assert_eq!(r.err, Some(&b"000"[..]));
        assert_eq!(r.submit_date, date("2401011200"));
        assert_eq!(r.message_state(), Some(MessageState::Accepted));
    }

    #[test]
    fn spelled_out_and_unknown_stats() {
        let r = Receipt::parse(b"id:1 stat:DELIVERED").unwrap();
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
        let r = Receipt::parse(b"id:1 stat:ENROUTE").unwrap();
        assert_eq!(r.message_state(), Some(MessageState::Enroute));
        let r = Receipt::parse(b"id:1 stat:FAILED err:").unwrap();
        assert_eq!(r.stat, Some(ReceiptStat::Other("FAILED")));
        assert_eq!(r.message_state(), None);
        assert_eq!(r.err, None);
        let r = Receipt::parse(b"id:1 stat:SKIPPED").unwrap();
        assert_eq!(r.message_state(), Some(MessageState::Skipped));
    }

    #[test]
    fn empty_values_and_space_after_colon() {
        let r = Receipt::parse(b"id: sub:001 stat:DELIVRD text:hi there stat:UNDELIV").unwrap();
        assert_eq!(r.id, None);
        assert_eq!(r.sub, Some(1));
        // text takes the rest, keys inside it included.
        assert_eq!(r.text, Some(&b"hi there stat:UNDELIV"[..]));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
        let r = Receipt::parse(b"id: 77 stat: UNDELIV").unwrap();
        assert_eq!(r.id, Some(&b"77"[..]));
        assert_eq!(r.stat, Some(ReceiptStat::Undeliverable));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Receipt::parse(b"hello world"), Err(ReceiptError::NoFields));
        assert_eq!(Receipt::parse(b""), Err(ReceiptError::NoFields));
        assert_eq!(Receipt::parse(b"identity:5"), Err(ReceiptError::NoFields));
        assert_eq!(
            Receipt::parse(b"id:1 submit date:2413011200"),
            Err(ReceiptError::BadDate { field: ReceiptField::SubmitDate })
        );
        assert_eq!(
            Receipt::parse(b"id:1 done date:24010112"),
            Err(ReceiptError::BadDate { field: ReceiptField::DoneDate })
        );
        assert_eq!(Receipt::parse(b"id:1 sub:abc"), Err(ReceiptError::BadCount { field: ReceiptField::Sub }));
        assert_eq!(Receipt::parse(b"id:1 dlvrd:99999999"), Err(ReceiptError::BadCount { field: ReceiptField::Dlvrd }));
        assert_eq!(Receipt::parse(b"id:1 stat:\xff\xfe"), Err(ReceiptError::BadStat));
    }

    #[test]
    fn emit_truncates_text_and_respects_utf8() {
        let base = Receipt {
            id: Some(b"abc"),
            submit_date: date("2401011200"),
            done_date: date("2401011201"),
            stat: Some(ReceiptStat::Undeliverable),
            err: Some(b"5"),
            text: Some(b"0123456789abcdefghijKLMNOP"),
            ..Receipt::default()
        };
        assert_eq!(
            emit(&base),
            b"id:abc sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:005 text:0123456789abcdefghij"
        );
        // 19 ASCII + a 2-byte character: the character is not split.
        let text = "0123456789abcdefghié".as_bytes();
        let r = Receipt { text: Some(text), ..base };
        assert!(emit(&r).ends_with(b"text:0123456789abcdefghi"));
        // Binary text is cut at 20 octets.
        let bin = [0xFFu8; 30];
        let r = Receipt { text: Some(&bin), ..base };
        assert!(emit(&r).ends_with(&[0xFF; 20]));
    }

    #[test]
    fn emit_errors() {
        let ok = Receipt {
            id: Some(b"abc"),
            submit_date: date("2401011200"),
            done_date: date("2401011201"),
            stat: Some(ReceiptStat::Delivered),
            ..Receipt::default()
        };
        let mut buf = [0u8; RECEIPT_MAX_LEN];
        let cases: &[(Receipt<'_>, ReceiptError)] = &[
            (Receipt { id: None, ..ok }, ReceiptError::MissingField { field: ReceiptField::Id }),
            (Receipt { stat: None, ..ok }, ReceiptError::MissingField { field: ReceiptField::Stat }),
            (Receipt { submit_date: None, ..ok }, ReceiptError::MissingField { field: ReceiptField::SubmitDate }),
            (Receipt { id: Some(&[b'1'; 65]), ..ok }, ReceiptError::IdTooLong { len: 65 }),
            (Receipt { id: Some(b"a b"), ..ok }, ReceiptError::BadId),
            (Receipt { sub: Some(1000), ..ok }, ReceiptError::CountTooLarge { field: ReceiptField::Sub }),
            (Receipt { err: Some(b"1234"), ..ok }, ReceiptError::BadErr),
            (Receipt { err: Some(b"ABCD"), ..ok }, ReceiptError::BadErr),
            (Receipt { stat: Some(ReceiptStat::Other("TOOLONGX")), ..ok }, ReceiptError::BadStat),
        ];
        for (r, e) in cases {
            assert_eq!(r.emit(&mut buf), Err(*e), "{r:?}");
        }
        let mut small = [0u8; 50];
        assert!(matches!(ok.emit(&mut small), Err(ReceiptError::BufferTooSmall { .. })));
        // The longest receipt fits RECEIPT_MAX_LEN exactly.
        let longest = Receipt { id: Some(&[b'9'; 64]), text: Some(&[b't'; 40]), ..ok };
        assert_eq!(longest.emit(&mut buf), Ok(RECEIPT_MAX_LEN));
    }

    #[test]
    fn stat_message_state_mapping_round_trips() {
        for v in 1u8..=8 {
            let state = MessageState::from(v);
            assert_eq!(ReceiptStat::from_message_state(state).message_state(), Some(state));
        }
        assert_eq!(
            ReceiptStat::from_message_state(MessageState::Scheduled).message_state(),
            Some(MessageState::Scheduled)
        );
        assert_eq!(ReceiptStat::from_message_state(MessageState::Other(42)), ReceiptStat::Unknown);
    }

    fn stat_strategy() -> impl Strategy<Value = ReceiptStat<'static>> {
        prop_oneof![
            Just(ReceiptStat::Delivered),
            Just(ReceiptStat::Expired),
            Just(ReceiptStat::Deleted),
            Just(ReceiptStat::Undeliverable),
            Just(ReceiptStat::Accepted),
            Just(ReceiptStat::Unknown),
            Just(ReceiptStat::Rejected),
            Just(ReceiptStat::Enroute),
            Just(ReceiptStat::Other("FAILED")),
        ]
    }

    fn date_strategy() -> impl Strategy<Value = ReceiptDate> {
        (0u8..100, 1u8..13, 1u8..32, 0u8..24, 0u8..60).prop_map(|(yy, mm, dd, hh, mi)| ReceiptDate {
            yy,
            mm,
            dd,
            hh,
            mi,
            ss: None,
        })
    }

    proptest! {
        #[test]
        fn emit_parse_round_trip(
            id in "[0-9A-Za-z-]{1,64}",
            sub in 0u16..1000, dlvrd in 0u16..1000,
            submit in date_strategy(), done in date_strategy(),
            stat in stat_strategy(),
            err in 0u16..1000,
            text in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let err = digits3(err);
            let r = Receipt {
                id: Some(id.as_bytes()),
                sub: Some(sub),
                dlvrd: Some(dlvrd),
                submit_date: Some(submit),
                done_date: Some(done),
                stat: Some(stat),
                err: Some(&err),
                text: Some(&text),
            };
            let mut buf = [0u8; RECEIPT_MAX_LEN];
            let n = r.emit(&mut buf).unwrap();
            let back = Receipt::parse(&buf[..n]).unwrap();
            let cut = back.text.unwrap().len();
            prop_assert!(cut <= text.len());
            prop_assert_eq!(back, Receipt { text: Some(&text[..cut]), ..r });
        }

        #[test]
        fn parse_never_panics_and_canonical_is_stable(
            bytes in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Ok(r) = Receipt::parse(&bytes) {
                let mut buf = [0u8; RECEIPT_MAX_LEN];
                if let Ok(n) = r.emit(&mut buf) {
                    let back = Receipt::parse(&buf[..n]).unwrap();
                    let mut again = [0u8; RECEIPT_MAX_LEN];
                    let m = back.emit(&mut again).unwrap();
                    prop_assert_eq!(&buf[..n], &again[..m]);
                }
            }
        }
    }
}
