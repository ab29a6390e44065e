//! Byte-level scanning primitives shared by the SIP parsers.
//!
//! Everything here is safe Rust: the word-at-a-time search reads 8-byte chunks
//! through `chunks_exact`, so no index can leave the slice.

/// RFC 3261 §25.1 `token` characters:
/// `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

/// A 256-entry membership table for the bytes in `set`.
const fn byte_set(set: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
}

/// Bytes that end or structure a generic parameter: `;` `=` `"`.
pub(crate) static PARAM_DELIMS: [bool; 256] = byte_set(b";=\"");
/// Bytes that matter when splitting a comma list: `,` `"` `<` `>`.
pub(crate) static LIST_DELIMS: [bool; 256] = byte_set(b",\"<>");

/// First index of a byte of `set` in `b` at or after `from`.
#[inline]
pub(crate) fn find_in_set(b: &[u8], from: usize, set: &[bool; 256]) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| set[c as usize]).map(|i| i + from)
}

pub(crate) use crate::wire::bytes::find_byte;

/// Is `c` an RFC 3261 token character?
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Is every byte of `s` a token character (and `s` non-empty)?
#[inline]
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Linear white space inside a header value: SP, HTAB and the CR LF of a fold.
#[inline]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing LWS (folds included).
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    trim_lws_end(trim_lws_start(s))
}

/// `s` without leading LWS.
#[inline]
pub(crate) fn trim_lws_start(s: &str) -> &str {
    let n = s.bytes().take_while(|&c| is_lws(c)).count();
    // LWS bytes are ASCII, so `n` is a char boundary.
    s.get(n..).unwrap_or("")
}

/// `s` without trailing LWS.
#[inline]
pub(crate) fn trim_lws_end(s: &str) -> &str {
    let n = s.bytes().rev().take_while(|&c| is_lws(c)).count();
    s.get(..s.len() - n).unwrap_or("")
}

/// Characters allowed in a Request-URI on the wire: visible ASCII except the
/// RFC 2396 `delims` and `unwise` sets (`< > " { } | \ ^ \``).
static REQUEST_URI: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = !matches!(i as u8, b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`');
        i += 1;
    }
    t
};

/// Is every byte of `s` allowed in a Request-URI on the wire? Eight table lookups are
/// and-ed per step without a branch each (same answer as `all(is_request_uri_char)`).
#[inline]
pub(crate) fn all_request_uri_chars(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        if !c.iter().fold(true, |ok, &b| ok & REQUEST_URI[usize::from(b)]) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| REQUEST_URI[usize::from(b)])
}

/// Is `c` allowed in a Request-URI on the wire?
#[inline]
pub(crate) fn is_request_uri_char(c: u8) -> bool {
    REQUEST_URI[c as usize]
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const CR8: u64 = LO * b'\r' as u64;
const LF8: u64 = LO * b'\n' as u64;

/// Non-zero iff some byte of `v` is zero; the lowest set bit marks the first one.
#[inline]
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Index of the first CR or LF in `b[from..]` (as an index into `b`).
///
/// Scans 8 bytes per step (SWAR); false positives of the zero-byte trick can only
/// occur above a true match, so the lowest flagged byte is exact.
#[inline]
pub(crate) fn find_line_break(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut off = from;
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let w = u64::from_le_bytes(a);
        let m = zero_bytes(w ^ CR8) | zero_bytes(w ^ LF8);
        if m != 0 {
            return Some(off + (m.trailing_zeros() / 8) as usize);
        }
        off += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'\r' || c == b'\n').map(|i| off + i)
}

/// Given `b[start] == '"'`, the index just past the closing quote, or `None`
/// when the quoted string is unterminated.
pub(crate) fn quoted_string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start.checked_add(1)?;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Parse an ASCII decimal of at most `max_digits` digits into a `u64`.
/// Returns `None` for empty input, a non-digit or too many digits.
#[inline]
pub(crate) fn parse_decimal(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    let mut v: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Decimal digits of `v` into `out`, returning the used tail of `out`.
#[inline]
pub(crate) fn fmt_decimal(mut v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uri_check_matches_bytewise() {
        let base = b"sip:+447000100001@iwf.ims.lab;user=phone";
        for len in 0..=base.len() {
            for at in 0..=len {
                for bad in [b' ', b'<', b'`', 0x7f, 0x80, b'a'] {
                    let mut s = base[..len].to_vec();
                    if let Some(b) = s.get_mut(at) {
                        *b = bad;
                    }
                    let bytewise = s.iter().all(|&c| is_request_uri_char(c));
                    assert_eq!(all_request_uri_chars(&s), bytewise, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn line_break_search_matches_naive() {
        let samples: [&[u8]; 6] =
            [b"", b"abc", b"0123456789abcdef\r\n", b"\n", b"0123456\r", b"01234567890123456789012345\n6789"];
        for s in samples {
            for from in 0..=s.len() {
                let naive = s.iter().skip(from).position(|&c| c == b'\r' || c == b'\n').map(|i| i + from);
                assert_eq!(find_line_break(s, from), naive, "{s:?} from {from}");
            }
        }
        assert_eq!(find_line_break(b"ab", 5), None);
    }

    #[test]
    fn high_bytes_are_not_line_breaks() {
        // 0x8A / 0x8D share the low bits of LF / CR: must not match.
        let s = [0x8au8, 0x8d, 0xff, 0x0b, 0x0c, 0x0e, 0x09, 0x00, b'\n'];
        assert_eq!(find_line_break(&s, 0), Some(8));
    }

    #[test]
    fn tokens_and_quotes() {
        assert!(is_token_str("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token_str(""));
        assert!(!is_token_str("a b"));
        assert_eq!(quoted_string_end(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(quoted_string_end(br#""abc"#, 0), None);
        assert_eq!(quoted_string_end(b"\"\\", 0), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0068", 10), Some(68));
        assert_eq!(parse_decimal("", 10), None);
        assert_eq!(parse_decimal("-1", 10), None);
        assert_eq!(parse_decimal("99999999999999999999", 20), None);
        assert_eq!(parse_decimal("12345", 4), None);
        let mut b = [0u8; 20];
        assert_eq!(fmt_decimal(0, &mut b), b"0");
        assert_eq!(fmt_decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
