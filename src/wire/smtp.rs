//! SMTP commands and replies (RFC 5321), sans-IO and zero-copy: a command line in,
//! a [`Command`] borrowing from it out; a reply's lines in, a [`Reply`] out. The
//! framing (CRLF lines, the DATA body's dot-stuffing) is the session's job
//! (`session::smtp`); these only read one line or one reply.
//!
//! Bounds: a command line is at most [`MAX_COMMAND_LINE`] octets with its CRLF
//! (RFC 5321 §4.5.3.1.4); a reply line at most [`MAX_REPLY_LINE`]
//! (§4.5.3.1.5). Nothing here allocates or panics on input.

use core::fmt;

/// The longest command line, CRLF included: RFC 5321 §4.5.3.1.4's 512, plus the 26
/// octets RFC 1870 allows for `SIZE=` and 14 for ` BODY=8BITMIME` (RFC 6152).
pub const MAX_COMMAND_LINE: usize = 512 + 26 + 14;
/// The longest reply line, CRLF included (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// A command from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo(&'a [u8]),
    /// `HELO domain`.
    Helo(&'a [u8]),
    /// `MAIL FROM:<path> [SIZE=n] [BODY=8BITMIME|7BIT]`.
    Mail {
        /// The reverse path, without its angle brackets (empty: the null path `<>`).
        from: &'a [u8],
        /// The size the client declares (RFC 1870), if it does.
        size: Option<u64>,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        /// The forward path, without its angle brackets.
        to: &'a [u8],
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`, `EXPN`, `HELP`, `STARTTLS`, `AUTH`...: known, not offered.
    NotOffered(&'a [u8]),
}

/// Why a command line is not a command iwf takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Not a command verb (500 5.5.2).
    Unknown,
    /// A known verb with arguments that do not parse (501 5.5.4).
    Syntax,
    /// A `MAIL` parameter iwf does not know (555 5.5.4, RFC 5321 §4.1.1.11).
    Parameter,
}

impl CommandError {
    /// The reply this error gets.
    pub fn reply(self) -> Reply<'static> {
        match self {
            CommandError::Unknown => Reply::new(500, b"5.5.2 Command unrecognized"),
            CommandError::Syntax => Reply::new(501, b"5.5.4 Syntax error in parameters or arguments"),
            CommandError::Parameter => Reply::new(555, b"5.5.4 MAIL FROM/RCPT TO parameters not recognized"),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandError::Unknown => "unknown command",
            CommandError::Syntax => "syntax error in arguments",
            CommandError::Parameter => "unknown parameter",
        })
    }
}

impl<'a> Command<'a> {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &'a [u8]) -> Result<Command<'a>, CommandError> {
        let (verb, rest) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
        if is(b"EHLO") || is(b"HELO") {
            let domain = rest.trim_ascii();
            if domain.is_empty() || domain.iter().any(|&b| b <= b' ' || b >= 0x7f) {
                return Err(CommandError::Syntax);
            }
            return Ok(if is(b"EHLO") { Command::Ehlo(domain) } else { Command::Helo(domain) });
        }
        if is(b"MAIL") {
            let (from, params) = path_after(rest, b"FROM:")?;
            let mut size = None;
            for p in params.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
                let (k, v) = match p.iter().position(|&b| b == b'=') {
                    Some(i) => (&p[..i], &p[i + 1..]),
                    None => (p, &b""[..]),
                };
                if k.eq_ignore_ascii_case(b"SIZE") {
                    size = Some(decimal(v).ok_or(CommandError::Syntax)?);
                } else if k.eq_ignore_ascii_case(b"BODY") {
                    if !(v.eq_ignore_ascii_case(b"8BITMIME") || v.eq_ignore_ascii_case(b"7BIT")) {
                        return Err(CommandError::Parameter);
                    }
                } else {
                    return Err(CommandError::Parameter);
                }
            }
            return Ok(Command::Mail { from, size });
        }
        if is(b"RCPT") {
            let (to, params) = path_after(rest, b"TO:")?;
            if to.is_empty() {
                return Err(CommandError::Syntax);
            }
            if !params.trim_ascii().is_empty() {
                return Err(CommandError::Parameter);
            }
            return Ok(Command::Rcpt { to });
        }
        let bare = rest.trim_ascii().is_empty();
        if is(b"DATA") && bare {
            return Ok(Command::Data);
        }
        if is(b"RSET") && bare {
            return Ok(Command::Rset);
        }
        if is(b"QUIT") && bare {
            return Ok(Command::Quit);
        }
        if is(b"NOOP") {
            return Ok(Command::Noop);
        }
        if [&b"DATA"[..], b"RSET", b"QUIT"].iter().any(|v| is(v)) {
            return Err(CommandError::Syntax);
        }
        const NOT_OFFERED: [&[u8]; 7] = [b"VRFY", b"EXPN", b"HELP", b"STARTTLS", b"AUTH", b"BDAT", b"ETRN"];
        if NOT_OFFERED.iter().any(|v| is(v)) {
            return Ok(Command::NotOffered(verb));
        }
        Err(CommandError::Unknown)
    }
}

/// `FROM:<path> params` / `TO:<path> params`: the path inside its brackets and the
/// parameters after it. A space after the colon is tolerated (many clients send one).
fn path_after<'a>(rest: &'a [u8], keyword: &[u8]) -> Result<(&'a [u8], &'a [u8]), CommandError> {
    let head = rest.get(..keyword.len()).ok_or(CommandError::Syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(CommandError::Syntax);
    }
    let rest = rest[keyword.len()..].trim_ascii_start();
    let Some(inner) = rest.strip_prefix(b"<") else { return Err(CommandError::Syntax) };
    let close = inner.iter().position(|&b| b == b'>').ok_or(CommandError::Syntax)?;
    let path = &inner[..close];
    if path.iter().any(|&b| b < b' ' || b == 0x7f || b == b'<') {
        return Err(CommandError::Syntax);
    }
    // A source route (`@a,@b:user@host`) is accepted and ignored (RFC 5321 §4.1.2).
    let path = match path.first() {
        Some(b'@') => path.iter().position(|&b| b == b':').map_or(path, |i| &path[i + 1..]),
        _ => path,
    };
    Ok((path, &inner[close + 1..]))
}

fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// A reply: its code and the text of its last line (RFC 5321 §4.2). Multi-line
/// replies are read whole by [`Reply::parse`]; their earlier lines (EHLO's
/// extensions) are handed to a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The three-digit code.
    pub code: u16,
    /// The text after the code (an enhanced status code first, RFC 3463, when the
    /// server sends one).
    pub text: &'a [u8],
}

/// What [`Reply::parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus<'a> {
    /// A whole reply, and the octets it took.
    Complete(Reply<'a>, usize),
    /// More input is needed.
    Partial,
}

/// A reply that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`], or a reply of more lines than allowed.
    TooLong,
    /// Not `NNN text` / `NNN-text`, or the lines' codes differ.
    Malformed,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::TooLong => "reply line too long",
            ReplyError::Malformed => "malformed reply",
        })
    }
}

/// A multi-line reply has at most this many lines (EHLO lists a dozen extensions).
const MAX_REPLY_LINES: usize = 64;

impl<'a> Reply<'a> {
    /// A reply to send.
    pub const fn new(code: u16, text: &'a [u8]) -> Reply<'a> {
        Reply { code, text }
    }

    /// Reads one whole reply from the start of `input`; `line` sees the text of
    /// every line but the last (EHLO's keywords).
    pub fn parse(input: &'a [u8], mut line: impl FnMut(&'a [u8])) -> Result<ReplyStatus<'a>, ReplyError> {
        let mut at = 0;
        let mut code = None;
        for _ in 0..MAX_REPLY_LINES {
            let rest = &input[at..];
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                return if rest.len() >= MAX_REPLY_LINE { Err(ReplyError::TooLong) } else { Ok(ReplyStatus::Partial) };
            };
            if end + 2 > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            let l = &rest[..end];
            let (digits, sep, text) = match l {
                [a, b, c] => ([*a, *b, *c], b' ', &b""[..]),
                [a, b, c, s, text @ ..] => ([*a, *b, *c], *s, text),
                _ => return Err(ReplyError::Malformed),
            };
            if !(b'2'..=b'5').contains(&digits[0]) || !digits[1..].iter().all(u8::is_ascii_digit) {
                return Err(ReplyError::Malformed);
            }
            let n = u16::from(digits[0] - b'0') * 100 + u16::from(digits[1] - b'0') * 10 + u16::from(digits[2] - b'0');
            if code.is_some_and(|c| c != n) {
                return Err(ReplyError::Malformed);
            }
            code = Some(n);
            at += end + 2;
            match sep {
                b' ' => return Ok(ReplyStatus::Complete(Reply { code: n, text }, at)),
                b'-' => line(text),
                _ => return Err(ReplyError::Malformed),
            }
        }
        Err(ReplyError::TooLong)
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx: the same request will fail again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, String::from_utf8_lossy(self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(Command::parse(b"EHLO mmsc-m.lab"), Ok(Command::Ehlo(b"mmsc-m.lab")));
        assert_eq!(Command::parse(b"helo x"), Ok(Command::Helo(b"x")));
        assert_eq!(
            Command::parse(b"MAIL FROM:<mms@mmsc-m.lab> SIZE=30000 BODY=8BITMIME"),
            Ok(Command::Mail { from: b"mms@mmsc-m.lab", size: Some(30000) })
        );
        assert_eq!(Command::parse(b"MAIL FROM:<>"), Ok(Command::Mail { from: b"", size: None }));
        assert_eq!(Command::parse(b"mail from: <a@b>"), Ok(Command::Mail { from: b"a@b", size: None }));
        assert_eq!(
            Command::parse(b"RCPT TO:<+447000200001/TYPE=PLMN@iwf.ims.lab>"),
            Ok(Command::Rcpt { to: b"+447000200001/TYPE=PLMN@iwf.ims.lab" })
        );
        assert_eq!(Command::parse(b"RCPT TO:<@relay.lab:a@b>"), Ok(Command::Rcpt { to: b"a@b" }));
        assert_eq!(Command::parse(b"DATA"), Ok(Command::Data));
        assert_eq!(Command::parse(b"quit"), Ok(Command::Quit));
        assert_eq!(Command::parse(b"NOOP hello"), Ok(Command::Noop));
        assert_eq!(Command::parse(b"STARTTLS"), Ok(Command::NotOffered(b"STARTTLS")));
    }

    #[test]
    fn bad_commands_name_their_reply() {
        assert_eq!(Command::parse(b"FOO"), Err(CommandError::Unknown));
        assert_eq!(Command::parse(b""), Err(CommandError::Unknown));
        assert_eq!(Command::parse(b"EHLO"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:a@b"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b> SIZE=x"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b> SIZE=99999999999999999999"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b> SMTPUTF8"), Err(CommandError::Parameter));
        assert_eq!(Command::parse(b"RCPT TO:<>"), Err(CommandError::Syntax));
        assert_eq!(Command::parse(b"DATA now"), Err(CommandError::Syntax));
        assert_eq!(CommandError::Parameter.reply().code, 555);
    }

    #[test]
    fn replies_single_and_multi_line() {
        let mut keywords = Vec::new();
        let input = b"250-mmsc-m.lab\r\n250-SIZE 1048576\r\n250 PIPELINING\r\n221 bye\r\n";
        let Ok(ReplyStatus::Complete(r, n)) = Reply::parse(input, |l| keywords.push(l)) else { panic!() };
        assert_eq!((r.code, r.text, n), (250, &b"PIPELINING"[..], 50));
        assert_eq!(keywords, [&b"mmsc-m.lab"[..], b"SIZE 1048576"]);
        assert_eq!(Reply::parse(b"250-a\r\n250 b", |_| {}), Ok(ReplyStatus::Partial));
        assert_eq!(Reply::parse(b"250-a\r\n251 b\r\n", |_| {}), Err(ReplyError::Malformed));
        assert_eq!(Reply::parse(b"hello\r\n", |_| {}), Err(ReplyError::Malformed));
        assert_eq!(Reply::parse(b"354\r\n", |_| {}), Ok(ReplyStatus::Complete(Reply::new(354, b""), 5)));
        assert_eq!(Reply::parse(&[b'2'; 600], |_| {}), Err(ReplyError::TooLong));
    }
}
