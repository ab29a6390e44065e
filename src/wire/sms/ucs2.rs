//! UCS-2 as sent in practice: UTF-16BE (SMPP `data_coding` 8, TS 23.038 §6.2.3), with
//! surrogate pairs for characters beyond the BMP (emoji), which SMSCs and handsets pass
//! through. Decoding rejects odd lengths and lone surrogates with specific errors.

use super::{write_utf8, DecodeError, EncodeError};

/// The most UTF-16 code units one short message carries without a UDH (140 / 2).
pub const MAX_UNITS: usize = 70;

/// UTF-16 code units `text` takes (2 for a character beyond the BMP).
pub fn unit_count(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Encodes `text` as UTF-16BE into `out`; returns the octets written (2 per unit).
pub fn encode(text: &str, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    let mut units = [0u16; 2];
    for ch in text.chars() {
        for &u in ch.encode_utf16(&mut units).iter() {
            let dst = out.get_mut(n..n + 2).ok_or(EncodeError::BufferTooSmall)?;
            dst.copy_from_slice(&u.to_be_bytes());
            n += 2;
        }
    }
    Ok(n)
}

/// Whether a code unit is a high (leading) surrogate.
#[inline]
pub fn is_high_surrogate(unit: u16) -> bool {
    (0xD800..=0xDBFF).contains(&unit)
}

/// Whether a code unit is a low (trailing) surrogate.
#[inline]
pub fn is_low_surrogate(unit: u16) -> bool {
    (0xDC00..=0xDFFF).contains(&unit)
}

/// Decodes UTF-16BE octets into characters, without allocating. Built by [`chars`],
/// which has checked the length is even; yields an error at the first lone surrogate.
#[derive(Debug, Clone)]
pub struct Ucs2Chars<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Ucs2Chars<'_> {
    type Item = Result<char, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.pos;
        let u = unit_at(self.bytes, at)?;
        self.pos += 2;
        if is_high_surrogate(u) {
            match unit_at(self.bytes, self.pos) {
                Some(l) if is_low_surrogate(l) => {
                    self.pos += 2;
                    let c = 0x10000 + (((u as u32) - 0xD800) << 10) + ((l as u32) - 0xDC00);
                    Some(char::from_u32(c).ok_or(DecodeError::LoneSurrogate { offset: at, unit: u }))
                }
                _ => {
                    self.pos = self.bytes.len();
                    Some(Err(DecodeError::LoneSurrogate { offset: at, unit: u }))
                }
            }
        } else {
            match char::from_u32(u as u32) {
                Some(c) => Some(Ok(c)),
                None => {
                    self.pos = self.bytes.len();
                    Some(Err(DecodeError::LoneSurrogate { offset: at, unit: u }))
                }
            }
        }
    }
}

#[inline]
fn unit_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The characters of UTF-16BE octets; an odd length is an error up front.
pub fn chars(bytes: &[u8]) -> Result<Ucs2Chars<'_>, DecodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DecodeError::OddLength { len: bytes.len() });
    }
    Ok(Ucs2Chars { bytes, pos: 0 })
}

/// Decodes UTF-16BE octets into UTF-8 in `out`; returns the octets written (at most
/// `3 / 2 × bytes.len()`).
pub fn decode(bytes: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut n = 0usize;
    for c in chars(bytes)? {
        n += write_utf8(core::iter::once(c?), out.get_mut(n..).ok_or(DecodeError::BufferTooSmall)?)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(bytes: &[u8]) -> Result<String, DecodeError> {
        let mut out = [0u8; 1024];
        let n = decode(bytes, &mut out)?;
        Ok(String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn euro_and_emoji_fixture() {
        let mut buf = [0u8; 16];
        let n = encode("€😀a", &mut buf).unwrap();
        // € U+20AC; 😀 U+1F600 = D83D DE00.
        assert_eq!(&buf[..n], &[0x20, 0xAC, 0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x61]);
        assert_eq!(unit_count("€😀a"), 4);
        assert_eq!(dec(&buf[..n]).unwrap(), "€😀a");
    }

    #[test]
    fn odd_length_and_lone_surrogates() {
        assert_eq!(dec(&[0x00, 0x61, 0x00]), Err(DecodeError::OddLength { len: 3 }));
        // High surrogate at the end.
        assert_eq!(dec(&[0x00, 0x61, 0xD8, 0x3D]), Err(DecodeError::LoneSurrogate { offset: 2, unit: 0xD83D }));
        // High surrogate followed by a non-surrogate.
        assert_eq!(dec(&[0xD8, 0x3D, 0x00, 0x61]), Err(DecodeError::LoneSurrogate { offset: 0, unit: 0xD83D }));
        // Low surrogate alone.
        assert_eq!(dec(&[0x00, 0x61, 0xDE, 0x00]), Err(DecodeError::LoneSurrogate { offset: 2, unit: 0xDE00 }));
        // Two high surrogates.
        assert_eq!(dec(&[0xD8, 0x3D, 0xD8, 0x3D]), Err(DecodeError::LoneSurrogate { offset: 0, unit: 0xD83D }));
    }

    #[test]
    fn buffers_too_small() {
        let mut buf = [0u8; 3];
        assert_eq!(encode("ab", &mut buf), Err(EncodeError::BufferTooSmall));
        assert_eq!(encode("😀", &mut buf), Err(EncodeError::BufferTooSmall));
        let mut out = [0u8; 2];
        assert_eq!(decode(&[0x20, 0xAC], &mut out), Err(DecodeError::BufferTooSmall));
    }

    #[test]
    fn chars_iterator_stops_after_error() {
        let mut it = chars(&[0x00, 0x41, 0xDC, 0x00, 0x00, 0x42]).unwrap();
        assert_eq!(it.next(), Some(Ok('A')));
        assert_eq!(it.next(), Some(Err(DecodeError::LoneSurrogate { offset: 2, unit: 0xDC00 })));
        assert_eq!(it.next(), None);
    }

    proptest! {
        #[test]
        fn unicode_round_trips(text in "\\PC{0,200}") {
            let mut buf = [0u8; 2048];
            let n = encode(&text, &mut buf).unwrap();
            prop_assert_eq!(n, unit_count(&text) * 2);
            let std: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
            prop_assert_eq!(&buf[..n], &std[..]);
            prop_assert_eq!(dec(&buf[..n]).unwrap(), text);
        }

        #[test]
        fn arbitrary_bytes_match_std(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let ours = dec(&bytes);
            if bytes.len() % 2 != 0 {
                prop_assert_eq!(ours, Err(DecodeError::OddLength { len: bytes.len() }));
            } else {
                let units: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                let std = String::from_utf16(&units);
                prop_assert_eq!(ours.is_ok(), std.is_ok());
                if let (Ok(a), Ok(b)) = (ours, std) {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
