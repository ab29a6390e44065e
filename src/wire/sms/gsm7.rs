//! GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 §6.2.1 and
//! §6.2.1.1), unpacked (one septet per octet, as SMPP carries `data_coding` 0) and packed
//! (§6.1.2.1.1, with fill bits for a preceding UDH, TS 23.040 §9.2.3.24).
//!
//! ```text
//!  packing, LSB first: septets s0 s1 s2 ... fill bits f (0..=6) come first
//!  octet 0: s0[6..0] at bits f..f+6, s1 low bits above ...
//!  "hellohello" -> E8 32 9B FD 46 97 D9 EC 37
//! ```
//!
//! Decoding choices (documented behaviour, tested):
//! - an escape (0x1B) followed by a code the extension table does not define shows the
//!   base-table character of that code (TS 23.038 §6.2.1.1 note);
//! - escape followed by escape (0x1B 0x1B, "reserved for another extension table") shows a
//!   space and consumes both septets, as the spec asks ("display a space");
//! - a trailing lone escape (the last septet) decodes as a space, not an error: the same
//!   "display a space" rule, and a truncated message still shows all its text.
//!
//! Encoding is strict: a character with no code in either table is an
//! [`EncodeError::Unrepresentable`] (no lossy fallback such as `ç` → `Ç`).

use super::{write_utf8, DecodeError, EncodeError};

/// The escape septet (0x1B) that selects the extension table for the next septet.
pub const ESCAPE: u8 = 0x1B;

/// The most septets one short message carries without a UDH (140 octets × 8 / 7).
pub const MAX_SEPTETS: usize = 160;

/// The default alphabet, indexed by septet (TS 23.038 §6.2.1). Position 0x1B is the
/// escape; as a character it decodes to a space (see the module doc).
pub const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (TS 23.038 §6.2.1.1): the septet that follows an escape, and the
/// character it stands for. Each costs two septets.
pub const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// No code for this character.
const NONE: u16 = 0xFFFF;
/// Marks an extension code in [`REVERSE`]: `EXT | septet`.
const EXT: u16 = 0x1B00;

/// Code points below 0x100 → septet (`< 0x80`), `EXT | septet`, or [`NONE`].
const REVERSE: [u16; 256] = build_reverse();

const fn build_reverse() -> [u16; 256] {
    let mut t = [NONE; 256];
    let mut i = 0;
    while i < 128 {
        let c = BASIC[i] as u32;
        if c < 256 && i != ESCAPE as usize {
            t[c as usize] = i as u16;
        }
        i += 1;
    }
    let mut j = 0;
    while j < EXTENSION.len() {
        let (code, ch) = EXTENSION[j];
        let c = ch as u32;
        if c < 256 {
            t[c as usize] = EXT | code as u16;
        }
        j += 1;
    }
    t
}

/// The GSM 7-bit code of one character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7Code {
    /// A default-alphabet septet (one septet).
    Basic(u8),
    /// An extension-table septet, sent as `ESCAPE, septet` (two septets).
    Extended(u8),
}

impl Gsm7Code {
    /// How many septets the code takes (1 or 2).
    pub fn septets(self) -> usize {
        match self {
            Gsm7Code::Basic(_) => 1,
            Gsm7Code::Extended(_) => 2,
        }
    }
}

/// The code of `ch` in the default alphabet or its extension table, if it has one.
#[inline]
pub fn code_of(ch: char) -> Option<Gsm7Code> {
    let c = ch as u32;
    if c < 256 {
        let v = REVERSE[c as usize];
        return if v == NONE {
            None
        } else if v & EXT == EXT {
            Some(Gsm7Code::Extended((v & 0x7F) as u8))
        } else {
            Some(Gsm7Code::Basic(v as u8))
        };
    }
    let s = match ch {
        'Δ' => 0x10,
        'Φ' => 0x12,
        'Γ' => 0x13,
        'Λ' => 0x14,
        'Ω' => 0x15,
        'Π' => 0x16,
        'Ψ' => 0x17,
        'Σ' => 0x18,
        'Θ' => 0x19,
        'Ξ' => 0x1A,
        '€' => return Some(Gsm7Code::Extended(0x65)),
        _ => return None,
    };
    Some(Gsm7Code::Basic(s))
}

/// The character an extension-table septet stands for, if the table defines it.
#[inline]
pub fn extension_char(septet: u8) -> Option<char> {
    match septet {
        0x0A => Some('\u{000C}'),
        0x14 => Some('^'),
        0x28 => Some('{'),
        0x29 => Some('}'),
        0x2F => Some('\\'),
        0x3C => Some('['),
        0x3D => Some('~'),
        0x3E => Some(']'),
        0x40 => Some('|'),
        0x65 => Some('€'),
        _ => None,
    }
}

/// Whether every character of `text` has a GSM 7-bit code.
pub fn is_representable(text: &str) -> bool {
    text.chars().all(|c| code_of(c).is_some())
}

/// How many septets `text` takes (extension characters count 2).
pub fn septet_count(text: &str) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    for (offset, ch) in text.char_indices() {
        match code_of(ch) {
            Some(code) => n = n.saturating_add(code.septets()),
            None => return Err(EncodeError::Unrepresentable { ch, offset }),
        }
    }
    Ok(n)
}

/// Encodes `text` as unpacked septets (one per octet) into `out`; returns the septet
/// count written.
pub fn encode_unpacked(text: &str, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    for (offset, ch) in text.char_indices() {
        match code_of(ch) {
            Some(Gsm7Code::Basic(s)) => {
                *out.get_mut(n).ok_or(EncodeError::BufferTooSmall)? = s;
                n += 1;
            }
            Some(Gsm7Code::Extended(s)) => {
                let pair = out.get_mut(n..n + 2).ok_or(EncodeError::BufferTooSmall)?;
                pair[0] = ESCAPE;
                pair[1] = s;
                n += 2;
            }
            None => return Err(EncodeError::Unrepresentable { ch, offset }),
        }
    }
    Ok(n)
}

/// Rejects fill bits outside 0..=6.
fn check_fill(fill_bits: u8) -> Result<(), u8> {
    if fill_bits > 6 {
        Err(fill_bits)
    } else {
        Ok(())
    }
}

/// Octets that `septets` septets take when packed after `fill_bits` fill bits.
pub fn packed_len(septets: usize, fill_bits: u8) -> usize {
    if septets == 0 {
        return 0;
    }
    septets.saturating_mul(7).saturating_add(fill_bits as usize).saturating_add(7) / 8
}

/// The most septets `octets` packed octets can hold after `fill_bits` fill bits. When
/// the count is not carried alongside (TP-UDL), a trailing `@` (0x00) may be padding: TS
/// 23.038 §6.1.2.3.1 has senders pad 7 spare bits with CR instead.
pub fn max_septets_in(octets: usize, fill_bits: u8) -> usize {
    octets.saturating_mul(8).saturating_sub(fill_bits as usize) / 7
}

/// Packs septets (values 0..=0x7F) into `out`, LSB first, after `fill_bits` zero fill
/// bits (0..=6); returns the octets written.
pub fn pack(septets: &[u8], fill_bits: u8, out: &mut [u8]) -> Result<usize, EncodeError> {
    check_fill(fill_bits).map_err(EncodeError::FillBitsOutOfRange)?;
    let len = packed_len(septets.len(), fill_bits);
    let out = out.get_mut(..len).ok_or(EncodeError::BufferTooSmall)?;
    let mut w = PackWriter::new(out, fill_bits);
    for (offset, &s) in septets.iter().enumerate() {
        if s > 0x7F {
            return Err(EncodeError::InvalidSeptet { offset, value: s });
        }
        w.push(s)?;
    }
    w.finish()
}

/// Unpacks `count` septets from `packed` (after `fill_bits` fill bits) into `out`, one
/// septet per octet; returns `count`.
pub fn unpack(packed: &[u8], count: usize, fill_bits: u8, out: &mut [u8]) -> Result<usize, DecodeError> {
    let it = PackedSeptets::new(packed, count, fill_bits)?;
    let out = out.get_mut(..count).ok_or(DecodeError::BufferTooSmall)?;
    for (o, s) in out.iter_mut().zip(it) {
        *o = s;
    }
    Ok(count)
}

/// Encodes `text` straight into packed form after `fill_bits` fill bits; returns
/// `(octets, septets)` written. Needs no scratch buffer.
pub fn encode_packed(text: &str, fill_bits: u8, out: &mut [u8]) -> Result<(usize, usize), EncodeError> {
    check_fill(fill_bits).map_err(EncodeError::FillBitsOutOfRange)?;
    let mut w = PackWriter::new(out, fill_bits);
    for (offset, ch) in text.char_indices() {
        match code_of(ch) {
            Some(Gsm7Code::Basic(s)) => w.push(s)?,
            Some(Gsm7Code::Extended(s)) => {
                w.push(ESCAPE)?;
                w.push(s)?;
            }
            None => return Err(EncodeError::Unrepresentable { ch, offset }),
        }
    }
    let septets = w.septets;
    Ok((w.finish()?, septets))
}

/// Bit accumulator that packs septets LSB first and writes whole octets as they fill.
struct PackWriter<'a> {
    out: &'a mut [u8],
    acc: u32,
    bits: u32,
    written: usize,
    septets: usize,
}

impl<'a> PackWriter<'a> {
    fn new(out: &'a mut [u8], fill_bits: u8) -> Self {
        PackWriter { out, acc: 0, bits: fill_bits as u32, written: 0, septets: 0 }
    }

    #[inline]
    fn push(&mut self, s: u8) -> Result<(), EncodeError> {
        self.acc |= ((s & 0x7F) as u32) << self.bits;
        self.bits += 7;
        self.septets += 1;
        if self.bits >= 8 {
            *self.out.get_mut(self.written).ok_or(EncodeError::BufferTooSmall)? = self.acc as u8;
            self.written += 1;
            self.acc >>= 8;
            self.bits -= 8;
        }
        Ok(())
    }

    /// Writes the last partial octet; returns the octets written.
    fn finish(mut self) -> Result<usize, EncodeError> {
        if self.bits > 0 && self.septets > 0 {
            *self.out.get_mut(self.written).ok_or(EncodeError::BufferTooSmall)? = self.acc as u8;
            self.written += 1;
        }
        Ok(self.written)
    }
}

/// Iterator over the septets of packed user data (TS 23.038 §6.1.2.1.1).
#[derive(Debug, Clone)]
pub struct PackedSeptets<'a> {
    packed: &'a [u8],
    bit: usize,
    left: usize,
}

impl<'a> PackedSeptets<'a> {
    /// Checks that `packed` holds `count` septets after `fill_bits` fill bits.
    pub fn new(packed: &'a [u8], count: usize, fill_bits: u8) -> Result<Self, DecodeError> {
        check_fill(fill_bits).map_err(DecodeError::FillBitsOutOfRange)?;
        if packed.len() < packed_len(count, fill_bits) {
            return Err(DecodeError::Truncated);
        }
        Ok(PackedSeptets { packed, bit: fill_bits as usize, left: count })
    }
}

impl Iterator for PackedSeptets<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        if self.left == 0 {
            return None;
        }
        let byte = self.bit / 8;
        let lo = *self.packed.get(byte)? as u16;
        let hi = self.packed.get(byte + 1).copied().unwrap_or(0) as u16;
        let s = (((hi << 8) | lo) >> (self.bit % 8)) as u8 & 0x7F;
        self.bit += 7;
        self.left -= 1;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Checks that every octet of unpacked data is a septet (0..=0x7F).
pub fn check_unpacked(septets: &[u8]) -> Result<(), DecodeError> {
    match septets.iter().position(|&s| s > 0x7F) {
        Some(offset) => Err(DecodeError::InvalidSeptet { offset, value: septets[offset] }),
        None => Ok(()),
    }
}

/// Decodes septets into characters, without allocating. Built by [`chars`] (unpacked,
/// checked) or [`chars_packed`]; septets above 0x7F are masked to 7 bits.
#[derive(Debug, Clone)]
pub struct Gsm7Chars<I> {
    septets: I,
}

impl<I: Iterator<Item = u8>> Gsm7Chars<I> {
    /// Wraps any septet iterator.
    pub fn new(septets: I) -> Self {
        Gsm7Chars { septets }
    }
}

impl<I: Iterator<Item = u8>> Iterator for Gsm7Chars<I> {
    type Item = char;

    #[inline]
    fn next(&mut self) -> Option<char> {
        let s = self.septets.next()? & 0x7F;
        if s != ESCAPE {
            return Some(BASIC[s as usize]);
        }
        Some(match self.septets.next() {
            // Trailing lone escape: a space (module doc).
            None => ' ',
            Some(n) => {
                let n = n & 0x7F;
                match extension_char(n) {
                    Some(c) => c,
                    // 0x1B 0x1B: reserved for another table; "display a space".
                    None if n == ESCAPE => ' ',
                    // Unknown extension code: show the base-table character.
                    None => BASIC[n as usize],
                }
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.septets.size_hint();
        (lo.div_ceil(2), hi)
    }
}

/// The characters of unpacked septets, after checking every octet is a septet.
pub fn chars(septets: &[u8]) -> Result<Gsm7Chars<core::iter::Copied<core::slice::Iter<'_, u8>>>, DecodeError> {
    check_unpacked(septets)?;
    Ok(Gsm7Chars::new(septets.iter().copied()))
}

/// The characters of `count` packed septets after `fill_bits` fill bits.
pub fn chars_packed(packed: &[u8], count: usize, fill_bits: u8) -> Result<Gsm7Chars<PackedSeptets<'_>>, DecodeError> {
    Ok(Gsm7Chars::new(PackedSeptets::new(packed, count, fill_bits)?))
}

/// Decodes unpacked septets into UTF-8 in `out`; returns the octets written.
pub fn decode_unpacked(septets: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    write_utf8(chars(septets)?, out)
}

/// Decodes `count` packed septets (after `fill_bits` fill bits) into UTF-8 in `out`;
/// returns the octets written.
pub fn decode_packed(packed: &[u8], count: usize, fill_bits: u8, out: &mut [u8]) -> Result<usize, DecodeError> {
    write_utf8(chars_packed(packed, count, fill_bits)?, out)
}

/// Largest UTF-8 length one septet can decode to (`€` is 3 octets for 2 septets, Greek
/// letters 2 octets for 1 septet): a buffer of `2 × septets` octets always suffices.
pub const MAX_UTF8_PER_SEPTET: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(text: &str) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let n = encode_unpacked(text, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn dec(septets: &[u8]) -> String {
        let mut buf = [0u8; 2048];
        let n = decode_unpacked(septets, &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn hellohello_packed_fixture() {
        // TS 23.038 / the classic packing example.
        let want = [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37];
        let mut out = [0u8; 16];
        let (octets, septets) = encode_packed("hellohello", 0, &mut out).unwrap();
        assert_eq!((octets, septets), (9, 10));
        assert_eq!(&out[..9], &want);
        let mut out2 = [0u8; 16];
        assert_eq!(pack(b"hellohello", 0, &mut out2).unwrap(), 9);
        assert_eq!(&out2[..9], &want);
        let mut text = [0u8; 32];
        let n = decode_packed(&want, 10, 0, &mut text).unwrap();
        assert_eq!(&text[..n], b"hellohello");
        let mut sept = [0u8; 10];
        assert_eq!(unpack(&want, 10, 0, &mut sept).unwrap(), 10);
        assert_eq!(&sept, b"hellohello");
    }

    #[test]
    fn packed_with_fill_bits_fixture() {
        // After a 6-octet UDH: 1 fill bit. Bit-by-bit reference computed independently.
        let mut out = [0u8; 8];
        let (octets, septets) = encode_packed("hello", 1, &mut out).unwrap();
        assert_eq!((octets, septets), (5, 5));
        assert_eq!(&out[..5], &[0xD0, 0x65, 0x36, 0xFB, 0x0D]);
        let (octets, _) = encode_packed("€10", 1, &mut out).unwrap();
        assert_eq!(&out[..octets], &[0x36, 0xE5, 0x18, 0x0C]);
        let mut text = [0u8; 16];
        let n = decode_packed(&out[..octets], 4, 1, &mut text).unwrap();
        assert_eq!(core::str::from_utf8(&text[..n]).unwrap(), "€10");
    }

    #[test]
    fn eight_septets_fill_seven_octets() {
        let mut out = [0xAAu8; 8];
        let (octets, _) = encode_packed("ABCDEFGH", 0, &mut out).unwrap();
        assert_eq!(&out[..octets], &[0x41, 0xE1, 0x90, 0x58, 0x34, 0x1E, 0x91]);
        assert_eq!(out[7], 0xAA, "nothing written past the packed length");
        assert_eq!(max_septets_in(7, 0), 8);
        assert_eq!(max_septets_in(7, 1), 7);
        assert_eq!(packed_len(160, 0), 140);
        assert_eq!(packed_len(153, 1), 134);
        assert_eq!(packed_len(0, 3), 0);
    }

    #[test]
    fn every_extension_char_is_an_escape_pair() {
        for &(code, ch) in EXTENSION.iter() {
            let s = ch.to_string();
            assert_eq!(enc(&s), vec![ESCAPE, code], "{ch:?}");
            assert_eq!(septet_count(&s).unwrap(), 2);
            assert_eq!(dec(&[ESCAPE, code]), s);
            assert_eq!(extension_char(code), Some(ch));
        }
        let all = "^{}\\[~]|€\u{000C}";
        assert_eq!(septet_count(all).unwrap(), 20);
        assert_eq!(dec(&enc(all)), all);
    }

    #[test]
    fn every_basic_char_round_trips() {
        for (i, &ch) in BASIC.iter().enumerate() {
            if i == ESCAPE as usize {
                continue;
            }
            assert_eq!(code_of(ch), Some(Gsm7Code::Basic(i as u8)), "{ch:?}");
            assert_eq!(dec(&[i as u8]), ch.to_string());
        }
        assert_eq!(enc("@£$¥"), vec![0x00, 0x01, 0x02, 0x03]);
        assert_eq!(enc("ΔΦΓΛΩΠΨΣΘΞ"), (0x10..=0x1A).filter(|&c| c != 0x11).collect::<Vec<u8>>());
        assert_eq!(enc(" "), vec![0x20]);
    }

    #[test]
    fn escape_edge_cases_decode_as_documented() {
        // Unknown extension code: the base character.
        assert_eq!(dec(&[ESCAPE, 0x41, 0x42]), "AB");
        // Escape escape: a space, both consumed.
        assert_eq!(dec(&[0x41, ESCAPE, ESCAPE, 0x42]), "A B");
        // Trailing lone escape: a space.
        assert_eq!(dec(&[0x41, ESCAPE]), "A ");
        assert_eq!(dec(&[ESCAPE]), " ");
    }

    #[test]
    fn unrepresentable_reports_char_and_offset() {
        let mut buf = [0u8; 16];
        assert_eq!(encode_unpacked("ab`c", &mut buf), Err(EncodeError::Unrepresentable { ch: '`', offset: 2 }));
        assert_eq!(septet_count("é日"), Err(EncodeError::Unrepresentable { ch: '日', offset: 2 }));
        assert_eq!(encode_packed("x😀", 0, &mut buf), Err(EncodeError::Unrepresentable { ch: '😀', offset: 1 }));
        // Strict: no ç → Ç fallback.
        assert!(!is_representable("ç"));
        assert!(is_representable("Ç€[]"));
    }

    #[test]
    fn buffers_too_small() {
        let mut buf = [0u8; 2];
        assert_eq!(encode_unpacked("a€", &mut buf), Err(EncodeError::BufferTooSmall));
        assert_eq!(encode_unpacked("ab", &mut buf), Ok(2));
        assert_eq!(encode_packed("abc", 0, &mut buf), Err(EncodeError::BufferTooSmall));
        assert_eq!(pack(b"abc", 0, &mut buf), Err(EncodeError::BufferTooSmall));
        let mut out = [0u8; 1];
        assert_eq!(decode_unpacked(&[0x10], &mut out), Err(DecodeError::BufferTooSmall));
        assert_eq!(unpack(&[0xE8, 0x32], 2, 0, &mut out), Err(DecodeError::BufferTooSmall));
    }

    #[test]
    fn bad_inputs_are_specific_errors() {
        let mut out = [0u8; 16];
        assert_eq!(
            decode_unpacked(&[0x41, 0x80], &mut out),
            Err(DecodeError::InvalidSeptet { offset: 1, value: 0x80 })
        );
        assert_eq!(pack(&[0x41, 0xFF], 0, &mut out), Err(EncodeError::InvalidSeptet { offset: 1, value: 0xFF }));
        assert_eq!(pack(b"a", 7, &mut out), Err(EncodeError::FillBitsOutOfRange(7)));
        assert_eq!(decode_packed(&[0xE8], 1, 9, &mut out), Err(DecodeError::FillBitsOutOfRange(9)));
        // 10 septets need 9 octets.
        let packed = [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC];
        assert_eq!(decode_packed(&packed, 10, 0, &mut out), Err(DecodeError::Truncated));
    }

    fn gsm_char() -> impl Strategy<Value = char> {
        let mut all: Vec<char> =
            BASIC.iter().enumerate().filter(|(i, _)| *i != ESCAPE as usize).map(|(_, &c)| c).collect();
        all.extend(EXTENSION.iter().map(|&(_, c)| c));
        proptest::sample::select(all)
    }

    proptest! {
        #[test]
        fn gsm_text_round_trips(chars in proptest::collection::vec(gsm_char(), 0..400), fill in 0u8..=6) {
            let text: String = chars.into_iter().collect();
            let septets = enc(&text);
            prop_assert_eq!(septets.len(), septet_count(&text).unwrap());
            prop_assert_eq!(dec(&septets), text.clone());
            // Packed straight from text equals packing the septets.
            let mut a = [0u8; 1024];
            let mut b = [0u8; 1024];
            let (na, ns) = encode_packed(&text, fill, &mut a).unwrap();
            let nb = pack(&septets, fill, &mut b).unwrap();
            prop_assert_eq!(ns, septets.len());
            prop_assert_eq!(&a[..na], &b[..nb]);
            let mut out = [0u8; 2048];
            let n = decode_packed(&a[..na], ns, fill, &mut out).unwrap();
            prop_assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), text.as_str());
            // The char iterator agrees.
            let it: String = chars_packed(&a[..na], ns, fill).unwrap().collect();
            prop_assert_eq!(it, text);
        }

        #[test]
        fn arbitrary_septets_never_panic(bytes in proptest::collection::vec(0u8..=0x7F, 0..300)) {
            let mut out = [0u8; 600];
            let n = decode_unpacked(&bytes, &mut out).unwrap();
            prop_assert!(n <= bytes.len() * MAX_UTF8_PER_SEPTET);
            prop_assert!(core::str::from_utf8(&out[..n]).is_ok());
        }
    }
}
