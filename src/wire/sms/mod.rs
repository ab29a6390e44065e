//! SMS text codecs: the GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1), Latin-1 and
//! IA5 (SMPP 3.4 §5.2.19 `data_coding` 3 and 1), UCS-2 / UTF-16BE (`data_coding` 8),
//! the user data header and its concatenation IEs (TS 23.040 §9.2.3.24), segmentation of
//! long texts, and a bounded sans-IO reassembler.
//!
//! Nothing on the message path allocates: encoders write into a caller `&mut [u8]` and
//! return the length, decoders write UTF-8 into a caller buffer or hand out `char`
//! iterators, the segmenter yields slices of one encoded buffer. Only the
//! [`reassembly::Reassembler`] allocates, within fixed bounds.
//!
//! ```text
//!  outgoing text ─ choose_encoding ─► Encoding::encode(buf) ─► SegmentPlan::new
//!        ─► segments() ─► Segment::write_user_data(out)  (UDH + payload, or SAR values)
//!  incoming ─ Udh::parse ─► ConcatInfo ─► Reassembler::push ─► parts in order ─► decode
//! ```

pub mod gsm7;
pub mod latin1;
pub mod reassembly;
pub mod segment;
pub mod ucs2;
pub mod udh;

pub use reassembly::{Expired, Push, Reassembled, Reassembler, ReassemblyError, ReassemblyLimits};
pub use segment::{count_segments, Concatenation, Gsm7Form, Segment, SegmentError, SegmentPlan, Segments};
pub use udh::{InformationElement, Udh};

use core::fmt;

/// SMPP `data_coding` (SMPP 3.4 §5.2.19; the 0xF0–0xFF group follows TS 23.038 §4).
/// Unknown values are kept as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataCoding {
    /// 0: SMSC default alphabet (GSM 03.38 in practice; configurable per system).
    SmscDefault,
    /// 1: IA5 (CCITT T.50) / ASCII (ANSI X3.4).
    Ia5,
    /// 2: octet unspecified (8-bit binary).
    Binary2,
    /// 3: Latin-1 (ISO-8859-1).
    Latin1,
    /// 4: octet unspecified (8-bit binary), the usual binary value.
    Binary4,
    /// 8: UCS-2 (ISO/IEC-10646), sent as UTF-16BE.
    Ucs2,
    /// 0xF0–0xFF: data coding / message class group (TS 23.038 §4): bit 2 selects 8-bit
    /// data (1) or the default alphabet (0), bits 1–0 the message class. The raw value.
    MessageClass(u8),
    /// Any other value (JIS, Cyrillic, Hebrew, pictogram, ...), kept as is.
    Unknown(u8),
}

impl DataCoding {
    /// Reads a `data_coding` octet.
    pub fn from_u8(v: u8) -> DataCoding {
        match v {
            0 => DataCoding::SmscDefault,
            1 => DataCoding::Ia5,
            2 => DataCoding::Binary2,
            3 => DataCoding::Latin1,
            4 => DataCoding::Binary4,
            8 => DataCoding::Ucs2,
            0xF0..=0xFF => DataCoding::MessageClass(v),
            v => DataCoding::Unknown(v),
        }
    }

    /// The `data_coding` octet.
    pub fn to_u8(self) -> u8 {
        match self {
            DataCoding::SmscDefault => 0,
            DataCoding::Ia5 => 1,
            DataCoding::Binary2 => 2,
            DataCoding::Latin1 => 3,
            DataCoding::Binary4 => 4,
            DataCoding::Ucs2 => 8,
            DataCoding::MessageClass(v) | DataCoding::Unknown(v) => v,
        }
    }

    /// Whether the payload is binary data, not text.
    pub fn is_binary(self) -> bool {
        match self {
            DataCoding::Binary2 | DataCoding::Binary4 => true,
            DataCoding::MessageClass(v) => v & 0x04 != 0,
            _ => false,
        }
    }

    /// The text encoding of the payload, given what the system's SMSC default (0) means;
    /// `None` for binary and unknown codings.
    pub fn text_encoding(self, smsc_default: Encoding) -> Option<Encoding> {
        match self {
            DataCoding::SmscDefault => Some(smsc_default),
            DataCoding::Ia5 => Some(Encoding::Ascii),
            DataCoding::Latin1 => Some(Encoding::Latin1),
            DataCoding::Ucs2 => Some(Encoding::Ucs2),
            DataCoding::MessageClass(v) if v & 0x04 == 0 => Some(Encoding::Gsm7),
            _ => None,
        }
    }
}

impl fmt::Display for DataCoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataCoding::SmscDefault => f.write_str("SMSC default (0)"),
            DataCoding::Ia5 => f.write_str("IA5 (1)"),
            DataCoding::Binary2 => f.write_str("binary (2)"),
            DataCoding::Latin1 => f.write_str("Latin-1 (3)"),
            DataCoding::Binary4 => f.write_str("binary (4)"),
            DataCoding::Ucs2 => f.write_str("UCS-2 (8)"),
            DataCoding::MessageClass(v) => {
                let kind = if v & 0x04 != 0 { "8-bit" } else { "GSM-7" };
                write!(f, "{kind} class {} (0x{v:02x})", v & 0x03)
            }
            DataCoding::Unknown(v) => write!(f, "unknown (0x{v:02x})"),
        }
    }
}

/// A text encoding of the SMS user data. GSM-7 is handled in unpacked form (one septet
/// per octet) unless a function says packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 7-bit default alphabet with the extension table; unit = septet.
    Gsm7,
    /// IA5 / ASCII, one octet per character; unit = octet.
    Ascii,
    /// ISO-8859-1, one octet per character; unit = octet.
    Latin1,
    /// UCS-2 / UTF-16BE; unit = UTF-16 code unit (2 octets).
    Ucs2,
}

impl Encoding {
    /// The explicit `data_coding` for text in this encoding (GSM-7 is 0, SMSC default).
    pub fn data_coding(self) -> DataCoding {
        match self {
            Encoding::Gsm7 => DataCoding::SmscDefault,
            Encoding::Ascii => DataCoding::Ia5,
            Encoding::Latin1 => DataCoding::Latin1,
            Encoding::Ucs2 => DataCoding::Ucs2,
        }
    }

    /// Octets per unit in the encoded (unpacked) buffer: 2 for UCS-2, else 1.
    pub fn unit_bytes(self) -> usize {
        match self {
            Encoding::Ucs2 => 2,
            _ => 1,
        }
    }

    /// Units a single short message holds with no UDH: 160 septets, 140 octets, 70
    /// UCS-2 units.
    pub fn single_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => gsm7::MAX_SEPTETS,
            Encoding::Ascii | Encoding::Latin1 => 140,
            Encoding::Ucs2 => ucs2::MAX_UNITS,
        }
    }

    /// Whether every character of `text` is representable.
    pub fn can_encode(self, text: &str) -> bool {
        match self {
            Encoding::Gsm7 => gsm7::is_representable(text),
            Encoding::Ascii => text.is_ascii(),
            Encoding::Latin1 => latin1::is_representable(text),
            Encoding::Ucs2 => true,
        }
    }

    /// Units `text` takes (septets, octets or UTF-16 code units).
    pub fn unit_count(self, text: &str) -> Result<usize, EncodeError> {
        match self {
            Encoding::Gsm7 => gsm7::septet_count(text),
            Encoding::Ascii => match text.char_indices().find(|(_, c)| !c.is_ascii()) {
                Some((offset, ch)) => Err(EncodeError::Unrepresentable { ch, offset }),
                None => Ok(text.len()),
            },
            Encoding::Latin1 => latin1::encoded_len(text),
            Encoding::Ucs2 => Ok(ucs2::unit_count(text)),
        }
    }

    /// Octets `text` takes encoded (GSM-7 unpacked).
    pub fn encoded_len(self, text: &str) -> Result<usize, EncodeError> {
        Ok(self.unit_count(text)? * self.unit_bytes())
    }

    /// Encodes `text` into `out` (GSM-7 unpacked); returns the octets written.
    pub fn encode(self, text: &str, out: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Encoding::Gsm7 => gsm7::encode_unpacked(text, out),
            Encoding::Ascii => latin1::encode_ascii(text, out),
            Encoding::Latin1 => latin1::encode(text, out),
            Encoding::Ucs2 => ucs2::encode(text, out),
        }
    }

    /// Decodes `bytes` (GSM-7 unpacked) into UTF-8 in `out`; returns the octets written.
    /// `2 × bytes.len()` octets of `out` always suffice.
    pub fn decode(self, bytes: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        match self {
            Encoding::Gsm7 => gsm7::decode_unpacked(bytes, out),
            Encoding::Ascii => latin1::decode_ascii(bytes, out),
            Encoding::Latin1 => latin1::decode(bytes, out),
            Encoding::Ucs2 => ucs2::decode(bytes, out),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ascii => "IA5",
            Encoding::Latin1 => "Latin-1",
            Encoding::Ucs2 => "UCS-2",
        })
    }
}

/// The encoding for an outgoing text: GSM-7 when every character has a code, else UCS-2.
pub fn choose_encoding(text: &str) -> Encoding {
    choose_encoding_with(text, Encoding::Gsm7)
}

/// The encoding for an outgoing text given the system's configured default: the default
/// when it can carry every character (so Latin-1 only where a system asks for it), else
/// UCS-2.
pub fn choose_encoding_with(text: &str, preferred: Encoding) -> Encoding {
    if preferred.can_encode(text) {
        preferred
    } else {
        Encoding::Ucs2
    }
}

/// Concatenation values of one part, from a UDH IE (0x00 or 0x08) or the SMPP SAR TLVs
/// (`sar_msg_ref_num` 0x020C, `sar_total_segments` 0x020E, `sar_segment_seqnum` 0x020F).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Reference number shared by all parts (≤ 255 unless `ref_16bit`).
    pub reference: u16,
    /// Number of parts, 1..=255.
    pub total: u8,
    /// This part's number, 1..=`total`.
    pub seq: u8,
    /// Whether the reference is 16-bit (UDH IE 0x08, or SAR whose ref is 16-bit).
    pub ref_16bit: bool,
}

impl ConcatInfo {
    /// Checks the values: total ≥ 1, 1 ≤ seq ≤ total, an 8-bit reference ≤ 255.
    pub fn new(reference: u16, total: u8, seq: u8, ref_16bit: bool) -> Result<ConcatInfo, ConcatError> {
        if total == 0 {
            return Err(ConcatError::ZeroTotal);
        }
        if seq == 0 || seq > total {
            return Err(ConcatError::SeqOutOfRange { seq, total });
        }
        if !ref_16bit && reference > 0xFF {
            return Err(ConcatError::ReferenceTooWide { reference });
        }
        Ok(ConcatInfo { reference, total, seq, ref_16bit })
    }

    /// From the SMPP SAR TLV values (the reference is 16-bit there).
    pub fn from_sar(msg_ref_num: u16, total_segments: u8, segment_seqnum: u8) -> Result<ConcatInfo, ConcatError> {
        ConcatInfo::new(msg_ref_num, total_segments, segment_seqnum, true)
    }

    /// The SMPP SAR TLV values `(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum)`.
    pub fn to_sar(&self) -> (u16, u8, u8) {
        (self.reference, self.total, self.seq)
    }
}

impl fmt::Display for ConcatInfo {
    /// E.g. `concat ref=42/8 part 2/3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = if self.ref_16bit { 16 } else { 8 };
        write!(f, "concat ref={}/{bits} part {}/{}", self.reference, self.seq, self.total)
    }
}

/// Why concatenation values are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcatError {
    /// Total number of parts is 0.
    ZeroTotal,
    /// Sequence number is 0 or above the total.
    SeqOutOfRange {
        /// Sequence number.
        seq: u8,
        /// Total number of parts.
        total: u8,
    },
    /// An 8-bit reference above 255.
    ReferenceTooWide {
        /// The reference.
        reference: u16,
    },
}

impl fmt::Display for ConcatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConcatError::ZeroTotal => f.write_str("concatenation total is 0"),
            ConcatError::SeqOutOfRange { seq, total } => write!(f, "concatenation part {seq} outside 1..={total}"),
            ConcatError::ReferenceTooWide { reference } => write!(f, "8-bit concatenation reference {reference} > 255"),
        }
    }
}

impl std::error::Error for ConcatError {}

/// Why a text could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A character with no code in the encoding, at byte `offset` of the text.
    Unrepresentable {
        /// The character.
        ch: char,
        /// Its byte offset in the input `&str`.
        offset: usize,
    },
    /// The output buffer is too small.
    BufferTooSmall,
    /// A value above 0x7F given as a septet to pack.
    InvalidSeptet {
        /// Index in the input.
        offset: usize,
        /// The value.
        value: u8,
    },
    /// Fill bits outside 0..=6.
    FillBitsOutOfRange(u8),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Unrepresentable { ch, offset } => {
                write!(f, "character {:?} (U+{:04X}) at offset {offset} not representable", ch, *ch as u32)
            }
            EncodeError::BufferTooSmall => f.write_str("output buffer too small"),
            EncodeError::InvalidSeptet { offset, value } => {
                write!(f, "value 0x{value:02x} at {offset} is not a septet")
            }
            EncodeError::FillBitsOutOfRange(n) => write!(f, "{n} fill bits (0..=6 allowed)"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why encoded text could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// An octet above 0x7F in unpacked GSM-7 data.
    InvalidSeptet {
        /// Its index.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// An octet above 0x7F in IA5 / ASCII data.
    NonAscii {
        /// Its index.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// UCS-2 data of odd length.
    OddLength {
        /// The length.
        len: usize,
    },
    /// A UTF-16 surrogate without its partner.
    LoneSurrogate {
        /// Octet offset of the unit.
        offset: usize,
        /// The unit.
        unit: u16,
    },
    /// Packed data shorter than the septet count needs.
    Truncated,
    /// Fill bits outside 0..=6.
    FillBitsOutOfRange(u8),
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidSeptet { offset, value } => {
                write!(f, "octet 0x{value:02x} at {offset} is not a septet")
            }
            DecodeError::NonAscii { offset, value } => write!(f, "octet 0x{value:02x} at {offset} is not ASCII"),
            DecodeError::OddLength { len } => write!(f, "UCS-2 data of odd length {len}"),
            DecodeError::LoneSurrogate { offset, unit } => write!(f, "lone surrogate 0x{unit:04x} at offset {offset}"),
            DecodeError::Truncated => f.write_str("packed data shorter than its septet count"),
            DecodeError::FillBitsOutOfRange(n) => write!(f, "{n} fill bits (0..=6 allowed)"),
            DecodeError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a user data header is malformed or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdhError {
    /// No UDHL octet.
    Truncated,
    /// UDHL claims more octets than the user data holds.
    UdhlOverrun {
        /// UDHL.
        udhl: u8,
        /// Octets after UDHL.
        available: usize,
    },
    /// An IE header (IEI, IEDL) cut by the end of the UDH.
    IeTruncated {
        /// Offset of the IEI in the user data.
        offset: usize,
    },
    /// An IE whose IEDL runs past the end of the UDH.
    IeOverrun {
        /// Offset of the IEI in the user data.
        offset: usize,
        /// IEI.
        iei: u8,
        /// IEDL.
        len: u8,
    },
    /// A concatenation IE whose IEDL is not 3 (IE 0x00) or 4 (IE 0x08).
    BadConcatLength {
        /// IEI.
        iei: u8,
        /// IEDL.
        len: u8,
    },
    /// A concatenation IE with total 0, or seq 0 or above total.
    BadConcatSequence {
        /// Total.
        total: u8,
        /// Sequence number.
        seq: u8,
    },
    /// An IE to write has more than 255 octets.
    IeTooLong {
        /// IEI.
        iei: u8,
        /// Data length.
        len: usize,
    },
    /// The IEs to write exceed UDHL 255.
    UdhTooLong {
        /// Whole length.
        len: usize,
    },
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for UdhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdhError::Truncated => f.write_str("UDH truncated: no UDHL"),
            UdhError::UdhlOverrun { udhl, available } => {
                write!(f, "UDHL {udhl} exceeds {available} octets of user data")
            }
            UdhError::IeTruncated { offset } => write!(f, "IE header at {offset} truncated"),
            UdhError::IeOverrun { offset, iei, len } => {
                write!(f, "IE 0x{iei:02x} at {offset} length {len} overruns the UDH")
            }
            UdhError::BadConcatLength { iei, len } => write!(f, "concatenation IE 0x{iei:02x} has length {len}"),
            UdhError::BadConcatSequence { total, seq } => write!(f, "concatenation part {seq} of {total} invalid"),
            UdhError::IeTooLong { iei, len } => write!(f, "IE 0x{iei:02x} data of {len} octets exceeds 255"),
            UdhError::UdhTooLong { len } => write!(f, "UDH of {len} octets exceeds UDHL 255"),
            UdhError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for UdhError {}

/// Writes characters as UTF-8 into `out`; returns the octets written.
pub(crate) fn write_utf8(chars: impl Iterator<Item = char>, out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut n = 0usize;
    for c in chars {
        let len = c.len_utf8();
        let dst = out.get_mut(n..n + len).ok_or(DecodeError::BufferTooSmall)?;
        c.encode_utf8(dst);
        n += len;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_coding_values() {
        let cases = [
            (0, DataCoding::SmscDefault),
            (1, DataCoding::Ia5),
            (2, DataCoding::Binary2),
            (3, DataCoding::Latin1),
            (4, DataCoding::Binary4),
            (8, DataCoding::Ucs2),
            (0xF0, DataCoding::MessageClass(0xF0)),
            (0xF6, DataCoding::MessageClass(0xF6)),
            (5, DataCoding::Unknown(5)),
            (0x18, DataCoding::Unknown(0x18)),
        ];
        for (v, dc) in cases {
            assert_eq!(DataCoding::from_u8(v), dc);
            assert_eq!(dc.to_u8(), v);
        }
        assert!(DataCoding::Binary4.is_binary());
        assert!(DataCoding::MessageClass(0xF5).is_binary());
        assert!(!DataCoding::MessageClass(0xF1).is_binary());
        assert_eq!(DataCoding::SmscDefault.text_encoding(Encoding::Latin1), Some(Encoding::Latin1));
        assert_eq!(DataCoding::MessageClass(0xF0).text_encoding(Encoding::Latin1), Some(Encoding::Gsm7));
        assert_eq!(DataCoding::Ucs2.text_encoding(Encoding::Gsm7), Some(Encoding::Ucs2));
        assert_eq!(DataCoding::Binary2.text_encoding(Encoding::Gsm7), None);
        assert_eq!(DataCoding::Unknown(6).text_encoding(Encoding::Gsm7), None);
        assert_eq!(DataCoding::MessageClass(0xF1).to_string(), "GSM-7 class 1 (0xf1)");
        assert_eq!(DataCoding::Unknown(0x0e).to_string(), "unknown (0x0e)");
        for e in [Encoding::Gsm7, Encoding::Ascii, Encoding::Latin1, Encoding::Ucs2] {
            assert_eq!(e.data_coding().text_encoding(Encoding::Gsm7), Some(e));
        }
    }

    #[test]
    fn choose_encoding_by_content_and_preference() {
        assert_eq!(choose_encoding("Price: 5€ [ok]"), Encoding::Gsm7);
        assert_eq!(choose_encoding("ç"), Encoding::Ucs2);
        assert_eq!(choose_encoding("hi 😀"), Encoding::Ucs2);
        assert_eq!(choose_encoding(""), Encoding::Gsm7);
        assert_eq!(choose_encoding_with("ça va", Encoding::Latin1), Encoding::Latin1);
        assert_eq!(choose_encoding_with("5€", Encoding::Latin1), Encoding::Ucs2);
        assert_eq!(choose_encoding_with("plain", Encoding::Ascii), Encoding::Ascii);
        assert_eq!(choose_encoding_with("é", Encoding::Ascii), Encoding::Ucs2);
    }

    #[test]
    fn euro_costs_two_septets_or_one_unit() {
        assert_eq!(Encoding::Gsm7.unit_count("€"), Ok(2));
        assert_eq!(Encoding::Ucs2.unit_count("€"), Ok(1));
        assert_eq!(Encoding::Ucs2.encoded_len("€😀"), Ok(6));
        assert_eq!(Encoding::Latin1.unit_count("€"), Err(EncodeError::Unrepresentable { ch: '€', offset: 0 }));
        assert_eq!(Encoding::Ascii.unit_count("a€"), Err(EncodeError::Unrepresentable { ch: '€', offset: 1 }));
        let mut buf = [0u8; 8];
        assert_eq!(Encoding::Gsm7.encode("€", &mut buf), Ok(2));
        assert_eq!(&buf[..2], &[0x1B, 0x65]);
        assert_eq!(Encoding::Ucs2.encode("€", &mut buf), Ok(2));
        assert_eq!(&buf[..2], &[0x20, 0xAC]);
    }

    #[test]
    fn concat_info_checks_and_sar() {
        assert_eq!(ConcatInfo::new(1, 0, 1, false), Err(ConcatError::ZeroTotal));
        assert_eq!(ConcatInfo::new(1, 2, 3, false), Err(ConcatError::SeqOutOfRange { seq: 3, total: 2 }));
        assert_eq!(ConcatInfo::new(300, 2, 1, false), Err(ConcatError::ReferenceTooWide { reference: 300 }));
        let c = ConcatInfo::from_sar(300, 2, 1).unwrap();
        assert!(c.ref_16bit);
        assert_eq!(c.to_sar(), (300, 2, 1));
        assert_eq!(c.to_string(), "concat ref=300/16 part 1/2");
    }

    #[test]
    fn error_messages_are_one_line() {
        let msgs = [
            EncodeError::Unrepresentable { ch: '😀', offset: 3 }.to_string(),
            DecodeError::LoneSurrogate { offset: 2, unit: 0xD83D }.to_string(),
            UdhError::IeOverrun { offset: 1, iei: 0, len: 3 }.to_string(),
            SegmentError::TooManySegments { units: 40000 }.to_string(),
            ReassemblyError::TooManyMessages { max: 2 }.to_string(),
        ];
        for m in msgs {
            assert!(!m.is_empty() && !m.contains('\n'), "{m}");
        }
        assert_eq!(
            EncodeError::Unrepresentable { ch: '😀', offset: 3 }.to_string(),
            "character '😀' (U+1F600) at offset 3 not representable"
        );
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips_what_it_accepts(text in "\\PC{0,100}") {
            for e in [Encoding::Gsm7, Encoding::Ascii, Encoding::Latin1, Encoding::Ucs2] {
                let mut buf = [0u8; 1024];
                match e.encode(&text, &mut buf) {
                    Ok(n) => {
                        prop_assert!(e.can_encode(&text));
                        prop_assert_eq!(n, e.encoded_len(&text).unwrap());
                        let mut out = [0u8; 2048];
                        let m = e.decode(&buf[..n], &mut out).unwrap();
                        prop_assert_eq!(core::str::from_utf8(&out[..m]).unwrap(), text.as_str());
                    }
                    Err(EncodeError::Unrepresentable { ch, offset }) => {
                        prop_assert!(!e.can_encode(&text));
                        prop_assert_eq!(text[offset..].chars().next(), Some(ch));
                    }
                    Err(other) => prop_assert!(false, "{other}"),
                }
            }
        }
    }
}
