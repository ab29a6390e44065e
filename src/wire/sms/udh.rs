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
            let data = ies.get(pos + 2..pos + 2 + len).ok_or(UdhError::IeOverrun {
                offset: pos + 1,
                iei: id,
                len: len as u8,
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn concat_8bit_parse_emit() {
        let ud = [0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'];
        let (udh, text) = Udh::parse(&ud).unwrap();
        assert_eq!(text, b"hi");
        assert_eq!(udh.len(), 6);
        assert_eq!(udh.fill_bits(), 1);
        let c = udh.concat().unwrap();
        assert_eq!(c, ConcatInfo { reference: 0x2A, total: 3, seq: 2, ref_16bit: false });
        assert_eq!(udh.to_string(), "UDH len=6 concat ref=42/8 part 2/3");
        let mut out = [0u8; 8];
        assert_eq!(emit_concat(&c, &mut out), Ok(6));
        assert_eq!(&out[..6], &ud[..6]);
        assert_eq!(udh.emit(&mut out), Ok(6));
        assert_eq!(&out[..6], &ud[..6]);
    }

    #[test]
    fn concat_16bit_parse_emit() {
        let ud = [0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01];
        let (udh, text) = Udh::parse(&ud).unwrap();
        assert!(text.is_empty());
        assert_eq!(udh.fill_bits(), 0);
        let c = udh.concat().unwrap();
        assert_eq!(c, ConcatInfo { reference: 0x1234, total: 2, seq: 1, ref_16bit: true });
        let mut out = [0u8; 7];
        assert_eq!(emit_concat(&c, &mut out), Ok(7));
        assert_eq!(out, ud);
        assert_eq!(emit_concat(&c, &mut out[..6]), Err(UdhError::BufferTooSmall));
    }

    #[test]
    fn unknown_ies_are_kept_and_last_concat_wins() {
        // Port addressing (0x05), then two concat IEs.
        let ud = [
            0x13, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x01, 0x02, 0x01, 0x08, 0x04, 0x00, 0x07, 0x02, 0x02,
            0x70, 0x00, 0xAA,
        ];
        let (udh, text) = Udh::parse(&ud).unwrap();
        assert_eq!(text, &[0xAA]);
        let ies: Vec<_> = udh.ies().collect();
        assert_eq!(ies.len(), 4);
        assert_eq!(ies[0], InformationElement { id: 0x05, data: &[0x0B, 0x84, 0x23, 0xF0] });
        assert_eq!(ies[3], InformationElement { id: 0x70, data: &[] });
        assert_eq!(udh.concat(), Some(ConcatInfo { reference: 7, total: 2, seq: 2, ref_16bit: true }));
        let mut out = [0u8; 32];
        let n = emit(&ies, &mut out).unwrap();
        assert_eq!(&out[..n], &ud[..20]);
        assert_eq!(udh.to_string(), "UDH len=20 ie=0x05/4 ie=0x70/0 concat ref=7/16 part 2/2");
    }

    #[test]
    fn bad_lengths_are_specific_errors() {
        assert_eq!(Udh::parse(&[]), Err(UdhError::Truncated));
        assert_eq!(Udh::parse(&[0x05, 0x00, 0x03]), Err(UdhError::UdhlOverrun { udhl: 5, available: 2 }));
        assert_eq!(Udh::parse(&[0x01, 0x00]), Err(UdhError::IeTruncated { offset: 1 }));
        assert_eq!(
            Udh::parse(&[0x04, 0x00, 0x03, 0x01, 0x02]),
            Err(UdhError::IeOverrun { offset: 1, iei: 0x00, len: 3 })
        );
        assert_eq!(Udh::parse(&[0x04, 0x00, 0x02, 0x01, 0x02]), Err(UdhError::BadConcatLength { iei: 0x00, len: 2 }));
        assert_eq!(
            Udh::parse(&[0x06, 0x08, 0x04, 0x00, 0x01, 0x02]),
            Err(UdhError::UdhlOverrun { udhl: 6, available: 5 })
        );
        assert_eq!(
            Udh::parse(&[0x05, 0x08, 0x03, 0x00, 0x01, 0x02]),
            Err(UdhError::BadConcatLength { iei: 0x08, len: 3 })
        );
        assert_eq!(
            Udh::parse(&[0x05, 0x00, 0x03, 0x01, 0x00, 0x00]),
            Err(UdhError::BadConcatSequence { total: 0, seq: 0 })
        );
        assert_eq!(
            Udh::parse(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]),
            Err(UdhError::BadConcatSequence { total: 2, seq: 3 })
        );
        let big = [0u8; 256];
        let mut out = [0u8; 600];
        assert_eq!(
            emit(&[InformationElement { id: 1, data: &big }], &mut out),
            Err(UdhError::IeTooLong { iei: 1, len: 256 })
        );
        let ies = [InformationElement { id: 1, data: &big[..200] }, InformationElement { id: 2, data: &big[..60] }];
        assert_eq!(emit(&ies, &mut out), Err(UdhError::UdhTooLong { len: 265 }));
    }

    #[test]
    fn empty_udh_and_fill_bits() {
        let (udh, text) = Udh::parse(&[0x00, 0x41]).unwrap();
        assert!(udh.is_empty());
        assert_eq!(udh.concat(), None);
        assert_eq!(text, &[0x41]);
        let expect = [0u8, 6, 5, 4, 3, 2, 1, 0, 6];
        for (len, &f) in expect.iter().enumerate() {
            assert_eq!(fill_bits(len), f, "udh_len {len}");
            assert_eq!((len * 8 + f as usize) % 7, 0);
        }
        assert_eq!(udh_septets(6), 7);
        assert_eq!(udh_septets(7), 8);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((udh, text)) = Udh::parse(&bytes) {
                let mut out = [0u8; 64];
                let n = udh.emit(&mut out).unwrap();
                prop_assert_eq!(&out[..n], &bytes[..n]);
                prop_assert_eq!(n + text.len(), bytes.len());
                let ies: Vec<_> = udh.ies().collect();
                let mut out2 = [0u8; 300];
                let m = emit(&ies, &mut out2).unwrap();
                prop_assert_eq!(&out2[..m], &bytes[..n]);
            }
        }

        #[test]
        fn concat_round_trips(reference in any::<u16>(), total in 1u8..=255, seq_off in 0u8..=254, wide in any::<bool>()) {
            let seq = 1 + seq_off % total;
            let reference = if wide { reference } else { reference & 0xFF };
            let c = ConcatInfo::new(reference, total, seq, wide).unwrap();
            let mut out = [0u8; 8];
            let n = emit_concat(&c, &mut out).unwrap();
            let (udh, rest) = Udh::parse(&out[..n]).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(udh.concat(), Some(c));
        }
    }
}
