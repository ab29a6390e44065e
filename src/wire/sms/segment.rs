//! Segmentation of a long text into concatenated short messages (TS 23.040 §9.2.3.24.1,
//! SMPP 3.4 §5.3.2.22–24 SAR TLVs, §5.3.2.32 `message_payload`).
//!
//! Capacities per part, in units of the encoding (septets / octets / UTF-16 units):
//!
//! ```text
//!                      GSM-7   Latin-1/IA5   UCS-2
//!  single, no UDH       160       140          70
//!  UDH 8-bit ref (6)    153       134          67   (GSM-7: 6 octets + 1 fill bit = 7 septets)
//!  UDH 16-bit ref (7)   152       133          66
//!  SAR TLVs             160       140          70   (no UDH in the payload)
//!  message_payload    one part of up to 65535 octets
//! ```
//!
//! A part never ends inside a GSM-7 escape pair or a UTF-16 surrogate pair. A text that
//! fits one short message is sent as one part without concatenation info, whatever the
//! method. The text is encoded once into a caller buffer ([`SegmentPlan::new`]); the
//! parts are slices of it, and [`Segment::write_user_data`] writes one part's UDH and
//! payload (GSM-7 packed or unpacked) into a caller buffer. Nothing allocates.

use super::{gsm7, udh, ConcatInfo, EncodeError, Encoding, UdhError};
use core::fmt;

/// Most parts a concatenated message may have (the total is one octet).
pub const MAX_SEGMENTS: usize = 255;

/// Most octets of one `message_payload` TLV (its length is 16-bit).
pub const MAX_PAYLOAD_OCTETS: usize = 0xFFFF;

/// How a long text is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concatenation {
    /// No concatenation: a text longer than one short message is an error.
    None,
    /// UDH IE 0x00, 8-bit reference (the low 8 bits of the plan's reference).
    Udh8,
    /// UDH IE 0x08, 16-bit reference.
    Udh16,
    /// SMPP SAR TLVs (`sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`).
    Sar,
    /// One SMPP `message_payload` TLV holding the whole text.
    MessagePayload,
}

impl Concatenation {
    /// Length of the UDH each part carries (0, 6 or 7 octets).
    pub fn udh_len(self) -> usize {
        match self {
            Concatenation::Udh8 => udh::CONCAT_8_UDH_LEN,
            Concatenation::Udh16 => udh::CONCAT_16_UDH_LEN,
            _ => 0,
        }
    }
}

/// How GSM-7 text is laid out in the user data written for SMPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gsm7Form {
    /// One septet per octet (SMPP `data_coding` 0 as most SMSCs expect it).
    Unpacked,
    /// 7-bit packed, after the fill bits that align it behind the UDH.
    Packed,
}

/// Units one part holds when a text needs more than one part (see the module table).
pub fn segment_capacity(encoding: Encoding, method: Concatenation) -> usize {
    let udh_len = method.udh_len();
    match method {
        Concatenation::MessagePayload => MAX_PAYLOAD_OCTETS / encoding.unit_bytes(),
        Concatenation::None | Concatenation::Sar => encoding.single_capacity(),
        Concatenation::Udh8 | Concatenation::Udh16 => match encoding {
            Encoding::Gsm7 => gsm7::MAX_SEPTETS - udh::udh_septets(udh_len),
            Encoding::Ascii | Encoding::Latin1 => 140 - udh_len,
            Encoding::Ucs2 => (140 - udh_len) / 2,
        },
    }
}

/// Why a text could not be segmented or a part written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// The text could not be encoded.
    Encode(EncodeError),
    /// The text does not fit: no concatenation and more than one part's worth, or more
    /// than a `message_payload` holds.
    TooLong {
        /// Units of the text.
        units: usize,
        /// Units allowed.
        capacity: usize,
    },
    /// More than 255 parts would be needed.
    TooManySegments {
        /// Units of the text.
        units: usize,
    },
    /// Encoded UCS-2 input of odd length.
    OddUcs2Length {
        /// The length.
        len: usize,
    },
    /// The UDH could not be written.
    Udh(UdhError),
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Encode(e) => write!(f, "encode: {e}"),
            SegmentError::TooLong { units, capacity } => write!(f, "text of {units} units exceeds {capacity}"),
            SegmentError::TooManySegments { units } => write!(f, "text of {units} units needs more than 255 parts"),
            SegmentError::OddUcs2Length { len } => write!(f, "UCS-2 input of odd length {len}"),
            SegmentError::Udh(e) => write!(f, "UDH: {e}"),
            SegmentError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for SegmentError {}

impl From<EncodeError> for SegmentError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::BufferTooSmall => SegmentError::BufferTooSmall,
            e => SegmentError::Encode(e),
        }
    }
}

impl From<UdhError> for SegmentError {
    fn from(e: UdhError) -> Self {
        match e {
            UdhError::BufferTooSmall => SegmentError::BufferTooSmall,
            e => SegmentError::Udh(e),
        }
    }
}

/// Checks the single-part cases; `Ok(None)` when the text needs concatenation.
fn single_or_capacity(units: usize, encoding: Encoding, method: Concatenation) -> Result<Option<usize>, SegmentError> {
    if method == Concatenation::MessagePayload {
        let capacity = segment_capacity(encoding, method);
        return if units <= capacity { Ok(None) } else { Err(SegmentError::TooLong { units, capacity }) };
    }
    let single = encoding.single_capacity();
    if units <= single {
        return Ok(None);
    }
    if method == Concatenation::None {
        return Err(SegmentError::TooLong { units, capacity: single });
    }
    Ok(Some(segment_capacity(encoding, method)))
}

/// Parts `text` needs in `encoding` with `method`, without encoding it.
pub fn count_segments(text: &str, encoding: Encoding, method: Concatenation) -> Result<u8, SegmentError> {
    let units = encoding.unit_count(text)?;
    let Some(cap) = single_or_capacity(units, encoding, method)? else {
        return Ok(1);
    };
    let mut count = 1usize;
    let mut used = 0usize;
    for ch in text.chars() {
        let w = match encoding {
            Encoding::Gsm7 => gsm7::code_of(ch).map_or(1, gsm7::Gsm7Code::septets),
            Encoding::Ucs2 => ch.len_utf16(),
            Encoding::Ascii | Encoding::Latin1 => 1,
        };
        if used + w > cap {
            count += 1;
            used = 0;
            if count > MAX_SEGMENTS {
                return Err(SegmentError::TooManySegments { units });
            }
        }
        used += w;
    }
    Ok(count as u8)
}

/// End (exclusive, in octets) of the part starting at `start`, at most `cap` units long,
/// moved back so it splits no escape pair or surrogate pair.
fn segment_end(encoded: &[u8], start: usize, cap: usize, encoding: Encoding) -> usize {
    let end = start.saturating_add(cap.saturating_mul(encoding.unit_bytes())).min(encoded.len());
    if end == encoded.len() {
        return end;
    }
    match encoding {
        Encoding::Gsm7 => {
            let mut i = start;
            while i < end {
                if encoded.get(i) == Some(&gsm7::ESCAPE) {
                    if i + 1 == end {
                        return end - 1;
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            end
        }
        Encoding::Ucs2 => match encoded.get(end.wrapping_sub(2)..end) {
            Some(&[hi, lo]) if super::ucs2::is_high_surrogate(u16::from_be_bytes([hi, lo])) => end - 2,
            _ => end,
        },
        Encoding::Ascii | Encoding::Latin1 => end,
    }
}

/// A text encoded once and cut into parts: the zero-allocation segmenter.
#[derive(Debug, Clone, Copy)]
pub struct SegmentPlan<'a> {
    encoded: &'a [u8],
    encoding: Encoding,
    method: Concatenation,
    reference: u16,
    count: u8,
    cap: usize,
}

impl<'a> SegmentPlan<'a> {
    /// Encodes `text` into `buf` (GSM-7 unpacked) and plans its parts. `reference` is
    /// the concatenation reference (only its low 8 bits with [`Concatenation::Udh8`]).
    pub fn new(
        text: &str,
        encoding: Encoding,
        method: Concatenation,
        reference: u16,
        buf: &'a mut [u8],
    ) -> Result<SegmentPlan<'a>, SegmentError> {
        let n = encoding.encode(text, buf)?;
        let encoded: &'a [u8] = buf;
        SegmentPlan::from_encoded(encoded.get(..n).unwrap_or(&[]), encoding, method, reference)
    }

    /// Plans the parts of already encoded text (GSM-7 unpacked septets, octets, or
    /// UTF-16BE).
    pub fn from_encoded(
        encoded: &'a [u8],
        encoding: Encoding,
        method: Concatenation,
        reference: u16,
    ) -> Result<SegmentPlan<'a>, SegmentError> {
        if encoding == Encoding::Ucs2 && !encoded.len().is_multiple_of(2) {
            return Err(SegmentError::OddUcs2Length { len: encoded.len() });
        }
        let units = encoded.len() / encoding.unit_bytes();
        let reference = if method == Concatenation::Udh8 { reference & 0xFF } else { reference };
        let mut plan = SegmentPlan { encoded, encoding, method, reference, count: 1, cap: encoded.len() };
        let Some(cap) = single_or_capacity(units, encoding, method)? else {
            return Ok(plan);
        };
        let mut count = 0usize;
        let mut pos = 0usize;
        while pos < encoded.len() {
            count += 1;
            if count > MAX_SEGMENTS {
                return Err(SegmentError::TooManySegments { units });
            }
            pos = segment_end(encoded, pos, cap, encoding);
        }
        plan.count = count as u8;
        plan.cap = cap;
        Ok(plan)
    }

    /// Number of parts (1..=255).
    pub fn count(&self) -> u8 {
        self.count
    }

    /// The encoded text.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The parts, in order.
    pub fn segments(&self) -> Segments<'a> {
        Segments { plan: *self, pos: 0, seq: 0 }
    }

    /// Part `seq` (1-based), walking from the start.
    pub fn segment(&self, seq: u8) -> Option<Segment<'a>> {
        self.segments().nth((seq as usize).checked_sub(1)?)
    }
}

/// Iterator over the parts of a [`SegmentPlan`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    plan: SegmentPlan<'a>,
    pos: usize,
    seq: u8,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let p = &self.plan;
        if self.seq >= p.count {
            return None;
        }
        self.seq += 1;
        let end = if p.count == 1 { p.encoded.len() } else { segment_end(p.encoded, self.pos, p.cap, p.encoding) };
        let payload = p.encoded.get(self.pos..end).unwrap_or(&[]);
        self.pos = end;
        let concat = if p.count > 1 {
            Some(ConcatInfo {
                reference: p.reference,
                total: p.count,
                seq: self.seq,
                ref_16bit: p.method != Concatenation::Udh8,
            })
        } else {
            None
        };
        Some(Segment { concat, payload, encoding: p.encoding, method: p.method })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.plan.count - self.seq) as usize;
        (left, Some(left))
    }
}

/// One part: its concatenation values and its slice of the encoded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Concatenation values (`None` when the text is a single part). With
    /// [`Concatenation::Sar`] these are the SAR TLV values; with UDH they go in the UDH.
    pub concat: Option<ConcatInfo>,
    /// This part of the encoded text (GSM-7 unpacked septets).
    pub payload: &'a [u8],
    /// Encoding of the payload.
    pub encoding: Encoding,
    /// Concatenation method.
    pub method: Concatenation,
}

impl Segment<'_> {
    /// Units in this part.
    pub fn units(&self) -> usize {
        self.payload.len() / self.encoding.unit_bytes()
    }

    /// Length of this part's UDH (0 without one).
    pub fn udh_len(&self) -> usize {
        if self.concat.is_some() {
            self.method.udh_len()
        } else {
            0
        }
    }

    /// Writes this part's UDH into `out`; returns its length (0 when it has none).
    pub fn write_udh(&self, out: &mut [u8]) -> Result<usize, UdhError> {
        match self.concat {
            Some(c) if self.udh_len() > 0 => udh::emit_concat(&c, out),
            _ => Ok(0),
        }
    }

    /// Octets [`Segment::write_user_data`] writes.
    pub fn user_data_len(&self, form: Gsm7Form) -> usize {
        let udh_len = self.udh_len();
        match (self.encoding, form) {
            (Encoding::Gsm7, Gsm7Form::Packed) => {
                udh_len + gsm7::packed_len(self.payload.len(), udh::fill_bits(udh_len))
            }
            _ => udh_len + self.payload.len(),
        }
    }

    /// TP-UDL of this part (TS 23.040 §9.2.3.16): septets (UDH and fill bits included)
    /// for GSM-7, else octets.
    pub fn tp_udl(&self) -> usize {
        let udh_len = self.udh_len();
        match self.encoding {
            Encoding::Gsm7 => udh::udh_septets(udh_len) + self.payload.len(),
            _ => udh_len + self.payload.len(),
        }
    }

    /// Whether the user data starts with a UDH (set esm_class UDHI, 0x40).
    pub fn has_udh(&self) -> bool {
        self.udh_len() > 0
    }

    /// Writes this part's user data (UDH, then the payload; GSM-7 packed behind its fill
    /// bits when `form` says so) into `out`; returns the octets written.
    pub fn write_user_data(&self, form: Gsm7Form, out: &mut [u8]) -> Result<usize, SegmentError> {
        let n = self.write_udh(out)?;
        let rest = out.get_mut(n..).ok_or(SegmentError::BufferTooSmall)?;
        let m = match (self.encoding, form) {
            (Encoding::Gsm7, Gsm7Form::Packed) => gsm7::pack(self.payload, udh::fill_bits(n), rest)?,
            _ => {
                let dst = rest.get_mut(..self.payload.len()).ok_or(SegmentError::BufferTooSmall)?;
                dst.copy_from_slice(self.payload);
                self.payload.len()
            }
        };
        Ok(n + m)
    }
}

impl fmt::Display for Segment<'_> {
    /// E.g. `GSM-7 153 units concat ref=7/8 part 1/3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} units", self.encoding, self.units())?;
        if let Some(c) = self.concat {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sms::{gsm7, ucs2, Udh};
    use proptest::prelude::*;

    fn a(n: usize) -> String {
        "a".repeat(n)
    }

    fn plan_counts(text: &str, enc: Encoding, method: Concatenation) -> (u8, Vec<usize>) {
        let mut buf = vec![0u8; 70_000];
        let plan = SegmentPlan::new(text, enc, method, 7, &mut buf).unwrap();
        let units: Vec<usize> = plan.segments().map(|s| s.units()).collect();
        assert_eq!(units.len(), plan.count() as usize);
        assert_eq!(count_segments(text, enc, method).unwrap(), plan.count());
        (plan.count(), units)
    }

    #[test]
    fn capacities_table() {
        use Concatenation::*;
        use Encoding::*;
        let want = [
            (Gsm7, Udh8, 153),
            (Latin1, Udh8, 134),
            (Ucs2, Udh8, 67),
            (Gsm7, Udh16, 152),
            (Latin1, Udh16, 133),
            (Ucs2, Udh16, 66),
            (Gsm7, Sar, 160),
            (Latin1, Sar, 140),
            (Ucs2, Sar, 70),
        ];
        for (enc, method, cap) in want {
            assert_eq!(segment_capacity(enc, method), cap, "{enc} {method:?}");
        }
    }

    #[test]
    fn counts_at_exact_capacities() {
        use Concatenation::*;
        use Encoding::*;
        assert_eq!(plan_counts(&a(160), Gsm7, Udh8), (1, vec![160]));
        assert_eq!(plan_counts(&a(161), Gsm7, Udh8), (2, vec![153, 8]));
        assert_eq!(plan_counts(&a(306), Gsm7, Udh8).0, 2);
        assert_eq!(plan_counts(&a(307), Gsm7, Udh8), (3, vec![153, 153, 1]));
        assert_eq!(plan_counts(&a(304), Gsm7, Udh16).0, 2);
        assert_eq!(plan_counts(&a(305), Gsm7, Udh16).0, 3);
        assert_eq!(plan_counts(&a(320), Gsm7, Sar), (2, vec![160, 160]));
        assert_eq!(plan_counts(&a(321), Gsm7, Sar).0, 3);
        let u = "ж";
        assert_eq!(plan_counts(&u.repeat(70), Ucs2, Udh8), (1, vec![70]));
        assert_eq!(plan_counts(&u.repeat(71), Ucs2, Udh8), (2, vec![67, 4]));
        assert_eq!(plan_counts(&u.repeat(134), Ucs2, Udh8).0, 2);
        assert_eq!(plan_counts(&u.repeat(135), Ucs2, Udh8).0, 3);
        assert_eq!(plan_counts(&u.repeat(132), Ucs2, Udh16).0, 2);
        assert_eq!(plan_counts(&u.repeat(133), Ucs2, Udh16).0, 3);
        assert_eq!(plan_counts(&u.repeat(140), Ucs2, Sar).0, 2);
        assert_eq!(plan_counts(&"é".repeat(140), Latin1, Udh8).0, 1);
        assert_eq!(plan_counts(&"é".repeat(141), Latin1, Udh8), (2, vec![134, 7]));
        assert_eq!(plan_counts(&"é".repeat(268), Latin1, Udh8).0, 2);
        assert_eq!(plan_counts(&"é".repeat(267), Latin1, Udh16), (3, vec![133, 133, 1]));
        assert_eq!(plan_counts("", Gsm7, Udh8), (1, vec![0]));
    }

    #[test]
    fn euro_in_gsm_vs_ucs2() {
        let text = "€".repeat(80);
        assert_eq!(plan_counts(&text, Encoding::Gsm7, Concatenation::Udh8), (1, vec![160]));
        assert_eq!(plan_counts(&text, Encoding::Ucs2, Concatenation::Udh8), (2, vec![67, 13]));
        // 81 € = 162 septets: 76 pairs (152) then 5, never 153 with a split pair.
        let text = "€".repeat(81);
        assert_eq!(plan_counts(&text, Encoding::Gsm7, Concatenation::Udh8), (2, vec![152, 10]));
    }

    #[test]
    fn escape_pair_at_153rd_septet_moves_whole() {
        let text = format!("{}€{}", a(152), a(20));
        let mut buf = [0u8; 400];
        let plan = SegmentPlan::new(&text, Encoding::Gsm7, Concatenation::Udh8, 1, &mut buf).unwrap();
        let segs: Vec<_> = plan.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].payload.len(), 152);
        assert_eq!(&segs[1].payload[..2], &[gsm7::ESCAPE, 0x65]);
        // Pair ends exactly at 153: stays.
        let text = format!("{}€{}", a(151), a(20));
        let plan = SegmentPlan::new(&text, Encoding::Gsm7, Concatenation::Udh8, 1, &mut buf).unwrap();
        let first = plan.segment(1).unwrap();
        assert_eq!(first.payload.len(), 153);
        assert_eq!(&first.payload[151..], &[gsm7::ESCAPE, 0x65]);
    }

    #[test]
    fn emoji_pair_at_segment_boundary_moves_whole() {
        let text = format!("{}😀{}", a(66), "b".repeat(10));
        let mut buf = [0u8; 400];
        let plan = SegmentPlan::new(&text, Encoding::Ucs2, Concatenation::Udh8, 1, &mut buf).unwrap();
        let segs: Vec<_> = plan.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].units(), 66);
        assert_eq!(&segs[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        let mut out = [0u8; 400];
        for s in &segs {
            // Each part decodes on its own: no lone surrogate.
            assert!(ucs2::decode(s.payload, &mut out).is_ok());
        }
        // With 16-bit UDH the cap is 66: the emoji starts part 2 (units 66 = 'a' × 66).
        let plan = SegmentPlan::new(&text, Encoding::Ucs2, Concatenation::Udh16, 1, &mut buf).unwrap();
        assert_eq!(plan.segment(1).unwrap().units(), 66);
        let text = format!("{}😀{}", a(65), "b".repeat(10));
        let plan = SegmentPlan::new(&text, Encoding::Ucs2, Concatenation::Udh16, 1, &mut buf).unwrap();
        assert_eq!(plan.segment(1).unwrap().units(), 65);
        assert_eq!(count_segments(&text, Encoding::Ucs2, Concatenation::Udh16), Ok(2));
    }

    #[test]
    fn user_data_with_udh_packed_and_unpacked() {
        let text = a(200);
        let mut buf = [0u8; 400];
        let plan = SegmentPlan::new(&text, Encoding::Gsm7, Concatenation::Udh8, 0x1234, &mut buf).unwrap();
        let first = plan.segment(1).unwrap();
        assert_eq!(first.concat, Some(ConcatInfo { reference: 0x34, total: 2, seq: 1, ref_16bit: false }));
        assert_eq!(first.to_string(), "GSM-7 153 units concat ref=52/8 part 1/2");
        assert!(first.has_udh());
        assert_eq!(first.tp_udl(), 160);
        let mut out = [0u8; 200];
        let n = first.write_user_data(Gsm7Form::Packed, &mut out).unwrap();
        assert_eq!(n, 140);
        assert_eq!(first.user_data_len(Gsm7Form::Packed), 140);
        assert_eq!(&out[..6], &[0x05, 0x00, 0x03, 0x34, 0x02, 0x01]);
        let (udh, rest) = Udh::parse(&out[..n]).unwrap();
        let mut txt = [0u8; 200];
        let m = gsm7::decode_packed(rest, 153, udh.fill_bits(), &mut txt).unwrap();
        assert_eq!(&txt[..m], a(153).as_bytes());
        let n = first.write_user_data(Gsm7Form::Unpacked, &mut out).unwrap();
        assert_eq!(n, 159);
        assert_eq!(&out[6..n], a(153).as_bytes());
        assert_eq!(first.write_user_data(Gsm7Form::Packed, &mut out[..139]), Err(SegmentError::BufferTooSmall));
        assert_eq!(first.write_user_data(Gsm7Form::Unpacked, &mut out[..5]), Err(SegmentError::BufferTooSmall));
    }

    #[test]
    fn sar_and_single_parts_have_no_udh() {
        let mut buf = [0u8; 400];
        let plan = SegmentPlan::new(&a(161), Encoding::Gsm7, Concatenation::Sar, 0x1234, &mut buf).unwrap();
        let s = plan.segment(2).unwrap();
        assert_eq!(s.concat.unwrap().to_sar(), (0x1234, 2, 2));
        assert!(s.concat.unwrap().ref_16bit);
        assert_eq!(s.udh_len(), 0);
        let mut out = [0u8; 8];
        assert_eq!(s.write_udh(&mut out), Ok(0));
        let plan = SegmentPlan::new(&a(10), Encoding::Gsm7, Concatenation::Udh16, 9, &mut buf).unwrap();
        let s = plan.segment(1).unwrap();
        assert_eq!((s.concat, s.udh_len()), (None, 0));
        assert!(plan.segment(2).is_none());
        assert!(plan.segment(0).is_none());
    }

    #[test]
    fn limits_and_errors() {
        let mut buf = vec![0u8; 70_000];
        assert_eq!(
            SegmentPlan::new(&a(161), Encoding::Gsm7, Concatenation::None, 0, &mut buf).map(|p| p.count()),
            Err(SegmentError::TooLong { units: 161, capacity: 160 })
        );
        let p = SegmentPlan::new(&a(1000), Encoding::Gsm7, Concatenation::MessagePayload, 0, &mut buf).unwrap();
        assert_eq!(p.count(), 1);
        assert_eq!(p.segment(1).unwrap().payload.len(), 1000);
        assert_eq!(
            count_segments(&a(65_536), Encoding::Latin1, Concatenation::MessagePayload),
            Err(SegmentError::TooLong { units: 65_536, capacity: 65_535 })
        );
        assert_eq!(count_segments(&a(255 * 153), Encoding::Gsm7, Concatenation::Udh8), Ok(255));
        assert_eq!(
            count_segments(&a(255 * 153 + 1), Encoding::Gsm7, Concatenation::Udh8),
            Err(SegmentError::TooManySegments { units: 255 * 153 + 1 })
        );
        assert_eq!(
            SegmentPlan::new(&a(255 * 153 + 1), Encoding::Gsm7, Concatenation::Udh8, 0, &mut buf).map(|p| p.count()),
            Err(SegmentError::TooManySegments { units: 255 * 153 + 1 })
        );
        assert_eq!(
            SegmentPlan::new("a`", Encoding::Gsm7, Concatenation::Udh8, 0, &mut buf).map(|p| p.count()),
            Err(SegmentError::Encode(EncodeError::Unrepresentable { ch: '`', offset: 1 }))
        );
        assert_eq!(
            SegmentPlan::new(&a(10), Encoding::Gsm7, Concatenation::Udh8, 0, &mut buf[..5]).map(|p| p.count()),
            Err(SegmentError::BufferTooSmall)
        );
        assert_eq!(
            SegmentPlan::from_encoded(&[0, 0x61, 0], Encoding::Ucs2, Concatenation::Udh8, 0).map(|p| p.count()),
            Err(SegmentError::OddUcs2Length { len: 3 })
        );
    }

    fn gsm_or_wide_char() -> impl Strategy<Value = char> {
        prop_oneof![proptest::sample::select(vec!['a', 'Z', '€', '[', '^', '@', 'Ω', ' ', '\n']), any::<char>(),]
    }

    proptest! {
        #[test]
        fn parts_cover_the_text_and_never_split_pairs(
            chars in proptest::collection::vec(gsm_or_wide_char(), 0..700),
            method in proptest::sample::select(vec![
                Concatenation::Udh8, Concatenation::Udh16, Concatenation::Sar, Concatenation::MessagePayload,
            ]),
        ) {
            let text: String = chars.into_iter().collect();
            let enc = crate::wire::sms::choose_encoding(&text);
            let mut buf = vec![0u8; 4096];
            let plan = SegmentPlan::new(&text, enc, method, 0xBEEF, &mut buf).unwrap();
            prop_assert_eq!(count_segments(&text, enc, method).unwrap(), plan.count());
            let cap = if plan.count() == 1 { usize::MAX } else { segment_capacity(enc, method) };
            let mut joined = String::new();
            let mut out = [0u8; 4096];
            for (i, s) in plan.segments().enumerate() {
                prop_assert!(s.units() <= cap);
                if let Some(c) = s.concat {
                    prop_assert_eq!(c.seq as usize, i + 1);
                    prop_assert_eq!(c.total, plan.count());
                }
                // Each part decodes alone to whole characters.
                let n = enc.decode(s.payload, &mut out).unwrap();
                joined.push_str(core::str::from_utf8(&out[..n]).unwrap());
                if enc == Encoding::Gsm7 {
                    // No part ends on a lone escape.
                    let mut it = s.payload.iter();
                    while let Some(&b) = it.next() {
                        if b == gsm7::ESCAPE { prop_assert!(it.next().is_some()); }
                    }
                }
            }
            prop_assert_eq!(joined, text);
        }
    }
}
