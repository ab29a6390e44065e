//! Byte searches shared by the codecs.

/// Index of the first `needle` in `hay`. Short inputs (under 64 octets: SIP tokens, URIs,
/// header values, XML attributes) take a plain loop, which beats any setup; longer ones
/// (CPIM and IMDN bodies) go eight bytes at a time (SWAR, safe code).
#[inline]
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    if hay.len() < 64 {
        return hay.iter().position(|&b| b == needle);
    }
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word) ^ pattern;
        // The lowest set bit marks the first zero byte (borrows only run upwards).
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| b == needle).map(|i| base + i)
}

/// Whether `s` holds a NUL: a branch-free fold (vectorised) instead of a `memchr` call,
/// which costs more than the scan on the short strings of an SMPP PDU.
#[inline]
pub(crate) fn has_nul(s: &[u8]) -> bool {
    s.iter().fold(false, |nul, &b| nul | (b == 0))
}

#[cfg(test)]
mod tests {
    use super::find_byte;
    use proptest::prelude::*;

    proptest! {
        /// The same answer as a plain search, for every length around the word size
        /// and for bytes that share bits with the needle (0x8a with `\n`).
        #[test]
        fn find_byte_matches_position(
            hay in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0x8a_u8), Just(0u8), any::<u8>()], 0..40),
            needle in prop_oneof![Just(b'\n'), any::<u8>()],
        ) {
            for start in 0..hay.len().min(40) {
                prop_assert_eq!(find_byte(&hay[start..], needle), hay[start..].iter().position(|&b| b == needle));
            }
        }
    }
}
