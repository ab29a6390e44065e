//! User Data Header (3GPP TS 23.040 §9.2.3.24) and its concatenation information
//! elements (§9.2.3.24.1 8-bit reference, §9.2.3.24.8 16-bit reference).
//!
//! ```text
//!  user data:  UDHL | IEI | IEDL | IED ... | IEI | IEDL | IED ... | text ...
//!              1      1     1      IEDL                            (fill bits for GSM-7)
//!  IE 0x00, IEDL 3:  ref | total | seq         (UDH 05 00 03 rr tt ss  = 6 octets)
//!  IE 0x08, IEDL 4:  ref hi | ref lo | total | seq   (UDH 06 08 04 rr rr tt ss = 7 octets)
//! ```
//!
//! Unknown IEs are data: they parse, are kept in [`Udh::ies`] and re-emitted by
//! [`Udh::emit`]. A concatenation IE with a wrong length, a zero total, or a sequence
//! number of 0 or above the total is an error (the spec lets a receiver ignore such an
//! IE; the caller gets the specific reason and picks its policy). When a concatenation
//! IE repeats, the last one wins (§9.2.3.24: "the last occurrence shall be used").

use super::{ConcatInfo, UdhError};

/// IEI of concatenated short messages with an 8-bit reference (§9.2.3.24.1).
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of concatenated short messages with a 16-bit reference (§9.2.3.24.8).
pub const IEI_CONCAT_16: u8 = 0x08;
/// Length of a whole UDH holding only an 8-bit concatenation IE (`05 00 03 rr tt ss`).
pub const CONCAT_8_UDH_LEN: usize = 6;
/// Length of a whole UDH holding only a 16-bit concatenation IE (`06 08 04 rr rr tt ss`).
pub const CONCAT_16_UDH_LEN: usize = 7;

/// One information element: identifier and data (borrowed from the user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InformationElement<'a> {
    /// IEI.
    pub id: u8,
    /// IED (IEDL octets).
    pub data: &'a [u8],
}

/// A parsed user data header: the IE area (after UDHL), checked so that walking it
/// cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udh<'a> {
    ies: &'a [u8],
    concat: Option<ConcatInfo>,
}

impl<'a> Udh<'a> {
    /// Parses the UDH at the start of `user_data`; returns it and the rest (the text,
    /// with its fill bits when GSM-7 packed).
    pub fn parse(user_data: &'a [u8]) -> Result<(Udh<'a>, &'a [u8]), UdhError> {
        let (&udhl, rest) = user_data.split_first().ok_or(UdhError::Truncated)?;
        let udhl = udhl as usize;
        if udhl > rest.len() {
            return Err(UdhError::UdhlOverrun { udhl: udhl as u8, available: rest.len() });
        }
        let (ies, text) = rest.split_at(udhl);
        let mut concat = None;
        let mut pos = 0usize;
        while pos < ies.len() {
            let (id, len) = match ies.get(pos..pos + 2) {
                Some(h) => (h[0], h[1] as usize),
                None => return Err(UdhError::IeTruncated { offset: pos + 1 }),
            };
            let data = ies
                .get(pos + 2..pos + 2 + len)
                .ok_or(UdhError::IeOverrun { offset: pos + 1, iei: id, len: len as u8 })?;
            match id {
                IEI_CONCAT_8 | IEI_CONCAT_16 => concat = Some(concat_from_ie(id, data)?),
                _ => {}
            }
            pos += 2 + len;
        }
        Ok((Udh { ies, concat }, text))
    }

    /// The concatenation IE, if present (the last one when repeated).
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.concat
    }

    /// The information elements, in order, unknown ones included.
    pub fn ies(&self) -> IeIter<'a> {
        IeIter { ies: self.ies }
    }

    /// Whole length of the header on the wire: UDHL octet plus the IEs.
    pub fn len(&self) -> usize {
        1 + self.ies.len()
    }

    /// Whether the header has no IEs (UDHL 0).
    pub fn is_empty(&self) -> bool {
        self.ies.is_empty()
    }

    /// Fill bits a GSM-7 packed text needs after this header.
    pub fn fill_bits(&self) -> u8 {
        fill_bits(self.len())
    }

    /// Writes the header (UDHL and IEs as parsed) into `out`; returns the length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, UdhError> {
        let dst = out.get_mut(..self.len()).ok_or(UdhError::BufferTooSmall)?;
        dst[0] = self.ies.len() as u8;
        dst[1..].copy_from_slice(self.ies);
        Ok(self.len())
    }
}

impl core::fmt::Display for Udh<'_> {
    /// One line, e.g. `UDH len=6 concat ref=42/8 part 2/3`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "UDH len={}", self.len())?;
        for ie in self.ies() {
            match ie.id {
                IEI_CONCAT_8 | IEI_CONCAT_16 => {}
                id => write!(f, " ie=0x{id:02x}/{}", ie.data.len())?,
            }
        }
        if let Some(c) = self.concat {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// Iterator over the IEs of a parsed [`Udh`].
#[derive(Debug, Clone)]
pub struct IeIter<'a> {
    ies: &'a [u8],
}

impl<'a> Iterator for IeIter<'a> {
    type Item = InformationElement<'a>;

    fn next(&mut self) -> Option<InformationElement<'a>> {
        let (&id, rest) = self.ies.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let data = rest.get(..len as usize)?;
        self.ies = rest.get(len as usize..).unwrap_or(&[]);
        Some(InformationElement { id, data })
    }
}

fn concat_from_ie(id: u8, data: &[u8]) -> Result<ConcatInfo, UdhError> {
    let (reference, total, seq, ref_16bit) = match (id, data) {
        (IEI_CONCAT_8, &[r, t, s]) => (r as u16, t, s, false),
        (IEI_CONCAT_16, &[r0, r1, t, s]) => (u16::from_be_bytes([r0, r1]), t, s, true),
        _ => return Err(UdhError::BadConcatLength { iei: id, len: data.len() as u8 }),
    };
    ConcatInfo::new(reference, total, seq, ref_16bit).map_err(|_| UdhError::BadConcatSequence { total, seq })
}

/// Fill bits (0..=6) that align a GSM-7 packed text on a septet boundary after a UDH
/// of `udh_len` octets (UDHL included): TS 23.040 §9.2.3.24.
pub fn fill_bits(udh_len: usize) -> u8 {
    let bits = (udh_len % 7) * 8;
    ((7 - bits % 7) % 7) as u8
}

/// Septets a UDH of `udh_len` octets takes from a GSM-7 message, fill bits included.
pub fn udh_septets(udh_len: usize) -> usize {
    (udh_len.saturating_mul(8)).div_ceil(7)
}

/// Writes a UDH holding only the concatenation IE of `info` (8- or 16-bit reference as
/// `info.ref_16bit` says); returns 6 or 7.
pub fn emit_concat(info: &ConcatInfo, out: &mut [u8]) -> Result<usize, UdhError> {
    if info.ref_16bit {
        let dst = out.get_mut(..CONCAT_16_UDH_LEN).ok_or(UdhError::BufferTooSmall)?;
        let [r0, r1] = info.reference.to_be_bytes();
        dst.copy_from_slice(&[6, IEI_CONCAT_16, 4, r0, r1, info.total, info.seq]);
        Ok(CONCAT_16_UDH_LEN)
    } else {
        let dst = out.get_mut(..CONCAT_8_UDH_LEN).ok_or(UdhError::BufferTooSmall)?;
        let r = info.reference as u8;
        dst.copy_from_slice(&[5, IEI_CONCAT_8, 3, r, info.total, info.seq]);
        Ok(CONCAT_8_UDH_LEN)
    }
}

/// Writes a UDH made of `ies` in order; returns its length (UDHL included).
pub fn emit(ies: &[InformationElement<'_>], out: &mut [u8]) -> Result<usize, UdhError> {
    let mut n = 1usize;
    for ie in ies {
        let len = u8::try_from(ie.data.len()).map_err(|_| UdhError::IeTooLong { iei: ie.id, len: ie.data.len() })?;
        let dst = out.get_mut(n..n + 2 + ie.data.len()).ok_or(UdhError::BufferTooSmall)?;
        dst[0] = ie.id;
        dst[1] = len;
        dst[2..].copy_from_slice(ie.data);
        n += 2 + ie.data.len();
    }
    let udhl = u8::try_from(n - 1).map_err(|_| UdhError::UdhTooLong { len: n })?;
    *out.first_mut().ok_or(UdhError::BufferTooSmall)? = udhl;
    Ok(n)
}
