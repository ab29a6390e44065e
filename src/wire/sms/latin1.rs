//! ISO-8859-1 (SMPP `data_coding` 3, SMPP 3.4 §5.2.19) and IA5 / ASCII (`data_coding` 1):
//! one character per octet.

use super::{write_utf8, DecodeError, EncodeError};

/// Whether every character of `text` is in Latin-1 (U+0000..=U+00FF).
pub fn is_representable(text: &str) -> bool {
    text.chars().all(|c| (c as u32) < 0x100)
}

/// Octets `text` takes in Latin-1.
pub fn encoded_len(text: &str) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    for (offset, ch) in text.char_indices() {
        if (ch as u32) > 0xFF {
            return Err(EncodeError::Unrepresentable { ch, offset });
        }
        n += 1;
    }
    Ok(n)
}

/// Encodes `text` as Latin-1 into `out`; returns the octets written.
pub fn encode(text: &str, out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_below(text, 0x100, out)
}

/// Decodes Latin-1 octets (every octet is a character) into UTF-8 in `out`; returns the
/// octets written (at most `2 × bytes.len()`).
pub fn decode(bytes: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    write_utf8(chars(bytes), out)
}

/// The characters of Latin-1 octets.
pub fn chars(bytes: &[u8]) -> impl Iterator<Item = char> + Clone + '_ {
    bytes.iter().map(|&b| char::from(b))
}

/// Whether every character of `text` is ASCII (IA5 International Reference Version).
pub fn is_ascii(text: &str) -> bool {
    text.is_ascii()
}

/// Encodes `text` as IA5 / ASCII into `out`; returns the octets written.
pub fn encode_ascii(text: &str, out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_below(text, 0x80, out)
}

/// Checks IA5 / ASCII octets (each ≤ 0x7F).
pub fn check_ascii(bytes: &[u8]) -> Result<(), DecodeError> {
    match bytes.iter().position(|&b| b > 0x7F) {
        Some(offset) => Err(DecodeError::NonAscii { offset, value: bytes[offset] }),
        None => Ok(()),
    }
}

/// Decodes IA5 / ASCII octets into `out` (a copy: ASCII is UTF-8); returns the length.
pub fn decode_ascii(bytes: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    check_ascii(bytes)?;
    let dst = out.get_mut(..bytes.len()).ok_or(DecodeError::BufferTooSmall)?;
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}

fn encode_below(text: &str, limit: u32, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut n = 0usize;
    for (offset, ch) in text.char_indices() {
        if (ch as u32) >= limit {
            return Err(EncodeError::Unrepresentable { ch, offset });
        }
        *out.get_mut(n).ok_or(EncodeError::BufferTooSmall)? = ch as u32 as u8;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn latin1_fixture_round_trip() {
        let mut buf = [0u8; 16];
        let n = encode("Grüße ÿ", &mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x47, 0x72, 0xFC, 0xDF, 0x65, 0x20, 0xFF]);
        assert_eq!(encoded_len("Grüße ÿ"), Ok(7));
        let mut out = [0u8; 16];
        let m = decode(&buf[..n], &mut out).unwrap();
        assert_eq!(core::str::from_utf8(&out[..m]).unwrap(), "Grüße ÿ");
    }

    #[test]
    fn latin1_errors() {
        let mut buf = [0u8; 16];
        assert_eq!(encode("a€", &mut buf), Err(EncodeError::Unrepresentable { ch: '€', offset: 1 }));
        assert_eq!(encoded_len("xyΩ"), Err(EncodeError::Unrepresentable { ch: 'Ω', offset: 2 }));
        assert_eq!(encode("abc", &mut buf[..2]), Err(EncodeError::BufferTooSmall));
        // 0xE9 decodes to 2 UTF-8 octets.
        assert_eq!(decode(&[0xE9], &mut buf[..1]), Err(DecodeError::BufferTooSmall));
        assert!(!is_representable("€"));
    }

    #[test]
    fn ascii_encode_decode_and_errors() {
        let mut buf = [0u8; 8];
        assert_eq!(encode_ascii("hi!", &mut buf), Ok(3));
        assert_eq!(encode_ascii("hé", &mut buf), Err(EncodeError::Unrepresentable { ch: 'é', offset: 1 }));
        let mut out = [0u8; 8];
        assert_eq!(decode_ascii(b"ok", &mut out), Ok(2));
        assert_eq!(&out[..2], b"ok");
        assert_eq!(decode_ascii(&[0x41, 0xC3], &mut out), Err(DecodeError::NonAscii { offset: 1, value: 0xC3 }));
        assert_eq!(decode_ascii(b"abc", &mut out[..2]), Err(DecodeError::BufferTooSmall));
    }

    proptest! {
        #[test]
        fn latin1_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = [0u8; 600];
            let n = decode(&bytes, &mut out).unwrap();
            let text = core::str::from_utf8(&out[..n]).unwrap();
            let mut back = [0u8; 300];
            let m = encode(text, &mut back).unwrap();
            prop_assert_eq!(&back[..m], &bytes[..]);
        }
    }
}
