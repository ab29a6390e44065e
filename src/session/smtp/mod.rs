//! SMTP sessions (RFC 5321), sans-IO: the [`server`] an MMS centre relays MM4 to,
//! and the [`client`] iwf delivers MM4 to an MMS centre with. Framing lives here
//! (CRLF lines, the message's dot-stuffing); commands and replies are read by
//! [`crate::wire::smtp`].

pub mod client;
pub mod server;

/// Writes one reply line: `code`, `sep` (`' '` on a reply's last line, `'-'` before
/// it), the text in `parts`, CRLF.
fn reply_line(out: &mut Vec<u8>, code: u16, sep: u8, parts: &[&[u8]]) {
    let c = code.min(599);
    out.extend_from_slice(&[b'0' + (c / 100) as u8, b'0' + (c / 10 % 10) as u8, b'0' + (c % 10) as u8, sep]);
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// Moves up to `buf.len()` octets from the front of a session's output into `buf`;
/// how many.
fn take(out: &mut Vec<u8>, buf: &mut [u8]) -> usize {
    let n = buf.len().min(out.len());
    buf[..n].copy_from_slice(&out[..n]);
    out.drain(..n);
    n
}

#[cfg(test)]
mod tests {
    /// The one reply writer: what a session sends is what a reply reads back.
    #[test]
    fn reply_lines_read_back() {
        use crate::wire::smtp::{Reply, ReplyStatus};
        let mut out = Vec::new();
        super::reply_line(&mut out, 250, b'-', &[b"iwf"]);
        super::reply_line(&mut out, 250, b' ', &[b"2.0.0 ", b"Ok"]);
        assert_eq!(out, b"250-iwf\r\n250 2.0.0 Ok\r\n");
        let mut first = Vec::new();
        let parsed = Reply::parse(&out, |l| first.push(l.to_vec()));
        assert_eq!(parsed, Ok(ReplyStatus::Complete(Reply::new(250, b"2.0.0 Ok"), out.len())));
        assert_eq!(first, [b"iwf".to_vec()]);
    }
}
