//! The SMTP server session (RFC 5321), sans-IO: TCP stream bytes in, replies out,
//! time passed in by the caller. One [`Server`] is one connection from an MMS
//! centre that relays MM4 to iwf.
//!
//! ```text
//!  connected(allowed) ──► Greeted ──EHLO/HELO──► Ready ──MAIL──► Mail ──RCPT──► Rcpt
//!   (554 + close when       ▲                      ▲                              │ DATA
//!    not allowed)           │                      └── answer() ◄── Awaiting ◄── Data
//!                           │                           (the application's verdict)
//!   QUIT, idle timeout, too many errors ──► Closed{reason}
//! ```
//!
//! It offers `SIZE` (RFC 1870), `8BITMIME` (RFC 6152), `PIPELINING` (RFC 2920) and
//! `ENHANCEDSTATUSCODES` (RFC 2034). A recipient is accepted or refused by the
//! caller's [`RecipientPolicy`]. A whole message is handed to the application
//! ([`Event::Message`], read with [`Server::message`]), and the session answers
//! nothing and reads nothing more until the application gives its verdict with
//! [`Server::answer`]: the 250 goes out only once the message went on to its next
//! hop or was stored.
//!
//! Bounds: a message over [`ServerConfig::max_message_size`] is refused at `MAIL`
//! when its declared `SIZE` says so, else read to its end, discarded and answered
//! 552; at most [`ServerConfig::max_recipients`] recipients; a command line over
//! [`MAX_COMMAND_LINE`] is answered 500 and skipped; more than
//! [`ServerConfig::max_errors`] bad commands close the connection with 421. When
//! [`ServerConfig::max_output`] octets of replies wait unsent, input is not consumed
//! (TCP back-pressure).
use super::reply_line;
use crate::wire::smtp::{Command, Reply, MAX_COMMAND_LINE};
use std::ops::Range;

/// Message octets a session keeps room for between messages.
const KEPT_CAPACITY: usize = 64 * 1024;

/// Settings of an SMTP server session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name iwf gives in its greeting and EHLO reply.
    pub hostname: String,
    /// The largest message accepted, octets (advertised as `SIZE`).
    pub max_message_size: usize,
    /// Recipients of one message at most.
    pub max_recipients: usize,
    /// Bad commands tolerated on one connection before it is closed.
    pub max_errors: u32,
    /// Replies waiting unsent at most before input is held back, octets.
    pub max_output: usize,
    /// How long a connection may stay silent (RFC 5321 §4.5.3.2.7: at least 5
    /// minutes), milliseconds.
    pub idle_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: "iwf".into(),
            max_message_size: 1 << 20,
            max_recipients: 16,
            max_errors: 10,
            max_output: 8192,
            idle_timeout_ms: 300_000,
        }
    }
}

/// Decides whether a recipient is one this server takes.
pub trait RecipientPolicy {
    /// `Ok` to accept `to` (250), or the reply refusing it.
    fn recipient(&mut self, to: &[u8]) -> Result<(), Reply<'static>>;
}

impl<F: FnMut(&[u8]) -> Result<(), Reply<'static>>> RecipientPolicy for F {
    fn recipient(&mut self, to: &[u8]) -> Result<(), Reply<'static>> {
        self(to)
    }
}

/// Where a server session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected.
    Idle,
    /// Greeted; waiting for EHLO or HELO.
    Greeted,
    /// No mail transaction.
    Ready,
    /// MAIL accepted; waiting for recipients.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
    /// Reading the message.
    Data,
    /// A whole message is with the application; waiting for [`Server::answer`].
    Awaiting,
    /// The client's address may not relay (554 greeting): every command but QUIT is
    /// answered 503 (RFC 5321 §3.1), until QUIT or too many.
    Refusing,
    /// Closed (the final reply may still be in the output).
    Closed(CloseReason),
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client's address may not relay to iwf (554 at connection).
    NotAllowed,
    /// Silent longer than the idle timeout (421).
    Timeout,
    /// Too many bad commands (421).
    TooManyErrors,
    /// The TCP connection went away.
    ConnectionLost,
}

/// What happened, for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A whole message: read it with [`Server::message`], then [`Server::answer`].
    Message,
    /// The session closed: flush the output, then close the connection.
    Closed(CloseReason),
}

/// A received message: its envelope and its content (dot-stuffing removed, CRLF
/// line ends as sent).
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The reverse path (`MAIL FROM`), empty for the null path.
    pub from: &'a [u8],
    paths: &'a [u8],
    rcpts: &'a [Range<usize>],
    /// The message (RFC 5322 header and body).
    pub data: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// The forward paths (`RCPT TO`), in order.
    pub fn recipients(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let paths = self.paths;
        self.rcpts.iter().map(move |r| paths.get(r.clone()).unwrap_or(&[]))
    }
}

/// Why [`Server::answer`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAwaiting;

/// Counts of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Messages handed to the application.
    pub messages: u64,
    /// Messages refused for their size.
    pub oversized: u64,
    /// Bad commands (unknown, out of sequence, malformed, over-long).
    pub errors: u64,
    /// Recipients refused by the policy.
    pub recipients_refused: u64,
}

/// One SMTP server connection.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    state: State,
    out: Vec<u8>,
    from: Range<usize>,
    /// Reverse and forward paths of the transaction, one after the other.
    paths: Vec<u8>,
    rcpts: Vec<Range<usize>>,
    data: Vec<u8>,
    /// Reading the message: at the start of a line (where a `.` is stuffing or the end).
    line_start: bool,
    /// Reading the message: it outgrew the limit; read on to its end, keep nothing.
    oversized: bool,
    /// Skipping the rest of an over-long command line.
    skipping: bool,
    errors: u32,
    last_input: u64,
    events: Vec<Event>,
    counters: ServerCounters,
}

impl Server {
    /// A session, not connected yet.
    pub fn new(config: ServerConfig) -> Server {
        Server {
            out: Vec::with_capacity(config.max_output.min(4096)),
            config,
            state: State::Idle,
            from: 0..0,
            paths: Vec::new(),
            rcpts: Vec::new(),
            data: Vec::new(),
            line_start: true,
            oversized: false,
            skipping: false,
            errors: 0,
            last_input: 0,
            events: Vec::new(),
            counters: ServerCounters::default(),
        }
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its counts.
    pub fn counters(&self) -> ServerCounters {
        self.counters
    }

    /// A client connected (`allowed`: its address is on the allow-list): the
    /// greeting, or 554 and close.
    pub fn connected(&mut self, now: u64, allowed: bool) {
        self.out.clear();
        self.events.clear();
        self.reset_transaction();
        self.errors = 0;
        self.skipping = false;
        self.last_input = now;
        if allowed {
            reply_line(&mut self.out, 220, b' ', &[self.config.hostname.as_bytes(), b" ESMTP MM4 ready"]);
            self.state = State::Greeted;
        } else {
            self.reply(554, b"5.7.1 This address may not relay MM4 here");
            self.state = State::Refusing;
        }
    }

    /// The TCP connection went away.
    pub fn connection_lost(&mut self) {
        if !matches!(self.state, State::Closed(_) | State::Idle) {
            self.close(CloseReason::ConnectionLost);
        }
    }

    /// Takes TCP stream bytes; returns how many it consumed. It stops at a whole
    /// message (until [`Server::answer`]), when replies pile up, and after close.
    pub fn handle_input(&mut self, now: u64, bytes: &[u8], policy: &mut dyn RecipientPolicy) -> usize {
        let mut at = 0;
        if !bytes.is_empty() {
            self.last_input = now;
        }
        while at < bytes.len() && self.out.len() < self.config.max_output {
            let rest = &bytes[at..];
            let used = match self.state {
                State::Data => self.data_input(rest),
                State::Greeted | State::Ready | State::Mail | State::Rcpt | State::Refusing => {
                    self.command_input(rest, policy)
                }
                State::Idle | State::Awaiting | State::Closed(_) => 0,
            };
            if used == 0 {
                break;
            }
            at += used;
        }
        at
    }

    /// One command line from `rest`: the octets taken (0: a partial line).
    fn command_input(&mut self, rest: &[u8], policy: &mut dyn RecipientPolicy) -> usize {
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() >= MAX_COMMAND_LINE {
                // The line is too long to be a command: refuse it once, skip to its end.
                if !self.skipping {
                    self.error(500, b"5.5.6 Line too long");
                }
                self.skipping = true;
                return rest.len();
            }
            return 0;
        };
        if std::mem::take(&mut self.skipping) {
            return lf + 1;
        }
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if lf + 1 > MAX_COMMAND_LINE {
            self.error(500, b"5.5.6 Line too long");
        } else {
            match Command::parse(line) {
                Ok(c) => self.command(c, policy),
                Err(e) => {
                    let r = e.reply();
                    self.error(r.code, r.text);
                }
            }
        }
        lf + 1
    }

    fn command(&mut self, c: Command<'_>, policy: &mut dyn RecipientPolicy) {
        if self.state == State::Refusing {
            return match c {
                Command::Quit => {
                    self.reply(221, b"2.0.0 Bye");
                    self.close(CloseReason::NotAllowed);
                }
                _ => self.error(503, b"5.7.1 This address may not relay MM4 here"),
            };
        }
        let greeted = !matches!(self.state, State::Greeted);
        match c {
            Command::Ehlo(_) => {
                self.reset_transaction();
                let size = self.config.max_message_size.to_string();
                let out = &mut self.out;
                reply_line(out, 250, b'-', &[self.config.hostname.as_bytes()]);
                reply_line(out, 250, b'-', &[b"SIZE ", size.as_bytes()]);
                reply_line(out, 250, b'-', &[b"8BITMIME"]);
                reply_line(out, 250, b'-', &[b"PIPELINING"]);
                reply_line(out, 250, b' ', &[b"ENHANCEDSTATUSCODES"]);
                self.state = State::Ready;
            }
            Command::Helo(_) => {
                self.reset_transaction();
                reply_line(&mut self.out, 250, b' ', &[self.config.hostname.as_bytes()]);
                self.state = State::Ready;
            }
            Command::Mail { from, size } => {
                if self.state != State::Ready {
                    let text: &[u8] = if greeted { b"5.5.1 Nested MAIL command" } else { b"5.5.1 Send EHLO first" };
                    return self.error(503, text);
                }
                if size.is_some_and(|s| s > self.config.max_message_size as u64) {
                    self.counters.oversized += 1;
                    return self.reply(552, b"5.3.4 Message size exceeds fixed maximum message size");
                }
                self.paths.clear();
                self.paths.extend_from_slice(from);
                self.from = 0..from.len();
                self.state = State::Mail;
                self.reply(250, b"2.1.0 Ok");
            }
            Command::Rcpt { to } => {
                if !matches!(self.state, State::Mail | State::Rcpt) {
                    return self.error(503, b"5.5.1 Need MAIL before RCPT");
                }
                if self.rcpts.len() >= self.config.max_recipients {
                    return self.reply(452, b"4.5.3 Too many recipients");
                }
                match policy.recipient(to) {
                    Ok(()) => {
                        let start = self.paths.len();
                        self.paths.extend_from_slice(to);
                        self.rcpts.push(start..self.paths.len());
                        self.state = State::Rcpt;
                        self.reply(250, b"2.1.5 Ok");
                    }
                    Err(r) => {
                        // A refused recipient counts toward the error limit: a client
                        // cannot probe addresses without end.
                        self.counters.recipients_refused += 1;
                        self.error(r.code, r.text);
                    }
                }
            }
            Command::Data => match self.state {
                State::Rcpt => {
                    self.data.clear();
                    self.line_start = true;
                    self.oversized = false;
                    self.state = State::Data;
                    self.reply(354, b"End data with <CR><LF>.<CR><LF>");
                }
                State::Mail => self.error(554, b"5.5.1 No valid recipients"),
                _ => self.error(503, b"5.5.1 Need RCPT before DATA"),
            },
            Command::Rset => {
                self.reset_transaction();
                if greeted {
                    self.state = State::Ready;
                }
                self.reply(250, b"2.0.0 Ok");
            }
            Command::Noop => self.reply(250, b"2.0.0 Ok"),
            Command::Quit => {
                self.reply(221, b"2.0.0 Bye");
                self.close(CloseReason::Quit);
            }
            Command::NotOffered(_) => self.error(502, b"5.5.1 Command not implemented"),
        }
    }

    /// Message octets from `rest`: the octets taken (0: what is there may be the end
    /// marker or a CRLF, not whole yet).
    ///
    /// Only CRLF ends a line (RFC 5321 §2.3.8): the end of data is `CRLF . CRLF` and
    /// nothing else, and a bare LF or CR is message content. A server that also ended
    /// on `LF . LF` would let a sender smuggle a second message, and its commands, past
    /// a relay that does not (SMTP smuggling).
    fn data_input(&mut self, rest: &[u8]) -> usize {
        let (line, whole) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(cr) => (&rest[..cr + 2], true),
            // All but a last CR, which may begin a CRLF.
            None => (rest.strip_suffix(b"\r").unwrap_or(rest), false),
        };
        if self.line_start {
            if line == b".\r\n" {
                self.end_of_data();
                return line.len();
            }
            if !whole && (rest == b"." || rest == b".\r") {
                return 0;
            }
        }
        if line.is_empty() {
            return 0;
        }
        // A leading dot at a line's start was doubled by the client (RFC 5321 §4.5.2).
        let body = if self.line_start { line.strip_prefix(b".").unwrap_or(line) } else { line };
        if !self.oversized {
            if self.data.len() + body.len() > self.config.max_message_size {
                self.oversized = true;
                self.data.clear();
            } else {
                self.data.extend_from_slice(body);
            }
        }
        self.line_start = whole;
        line.len()
    }

    fn end_of_data(&mut self) {
        if self.oversized {
            self.counters.oversized += 1;
            self.reset_transaction();
            self.state = State::Ready;
            self.reply(552, b"5.3.4 Message size exceeds fixed maximum message size");
            return;
        }
        self.counters.messages += 1;
        self.state = State::Awaiting;
        self.events.push(Event::Message);
    }

    /// The message waiting for [`Server::answer`], if one is.
    pub fn message(&self) -> Option<Envelope<'_>> {
        (self.state == State::Awaiting).then(|| Envelope {
            from: self.paths.get(self.from.clone()).unwrap_or(&[]),
            paths: &self.paths,
            rcpts: &self.rcpts,
            data: &self.data,
        })
    }

    /// The application's verdict on the message at `now`: 250 once it is delivered
    /// onward or stored, else a 4xx (try again later) or 5xx (never). Reading resumes,
    /// and the idle timer starts again (the client waited for this answer).
    pub fn answer(&mut self, now: u64, reply: Reply<'_>) -> Result<(), NotAwaiting> {
        if self.state != State::Awaiting {
            return Err(NotAwaiting);
        }
        self.last_input = now;
        self.reset_transaction();
        // A large message's memory goes back; the next message grows it again.
        self.data.shrink_to(KEPT_CAPACITY);
        self.state = State::Ready;
        self.reply(reply.code, reply.text);
        Ok(())
    }

    /// Replies to send: copies up to `out.len()` octets and returns how many.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> usize {
        super::take(&mut self.out, out)
    }

    /// Whether replies wait unsent.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// When [`Server::handle_timeout`] must next be called (`None`: no timer runs;
    /// a message with the application is the application's to time).
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Idle | State::Awaiting | State::Closed(_) => None,
            _ => Some(self.last_input.saturating_add(self.config.idle_timeout_ms)),
        }
    }

    /// Runs the idle timer.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            self.reply(421, b"4.4.2 Idle too long, closing connection");
            self.close(CloseReason::Timeout);
        }
    }

    fn reset_transaction(&mut self) {
        self.paths.clear();
        self.rcpts.clear();
        self.from = 0..0;
        self.data.clear();
        self.oversized = false;
        self.line_start = true;
    }

    fn error(&mut self, code: u16, text: &[u8]) {
        self.counters.errors += 1;
        self.errors += 1;
        if self.errors > self.config.max_errors {
            self.reply(421, b"4.7.0 Too many errors, closing connection");
            self.close(CloseReason::TooManyErrors);
        } else {
            self.reply(code, text);
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.reset_transaction();
        self.state = State::Closed(reason);
        self.events.push(Event::Closed(reason));
    }

    fn reply(&mut self, code: u16, text: &[u8]) {
        reply_line(&mut self.out, code, b' ', &[text]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_all(_: &[u8]) -> Result<(), Reply<'static>> {
        Ok(())
    }

    fn drain(s: &mut Server) -> String {
        let mut out = vec![0u8; 65536];
        let n = s.poll_transmit(&mut out);
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    fn connected() -> Server {
        let mut s = Server::new(ServerConfig { hostname: "iwf.ims.lab".into(), ..ServerConfig::default() });
        s.connected(0, true);
        assert_eq!(drain(&mut s), "220 iwf.ims.lab ESMTP MM4 ready\r\n");
        s
    }

    #[test]
    fn a_pipelined_transaction_waits_for_the_applications_verdict() {
        let mut s = connected();
        let input = b"EHLO mmsc-m.lab\r\nMAIL FROM:<mms@mmsc-m.lab> SIZE=40\r\nRCPT TO:<+447000200001/TYPE=PLMN@iwf.ims.lab>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n";
        let used = s.handle_input(1, input, &mut accept_all);
        assert_eq!(&input[used..], b"QUIT\r\n", "nothing after the message is read before the verdict");
        assert_eq!(
            drain(&mut s),
            "250-iwf.ims.lab\r\n250-SIZE 1048576\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
        );
        assert_eq!(s.poll_event(), Some(Event::Message));
        let m = s.message().unwrap();
        assert_eq!(m.from, b"mms@mmsc-m.lab");
        assert_eq!(m.recipients().collect::<Vec<_>>(), [&b"+447000200001/TYPE=PLMN@iwf.ims.lab"[..]]);
        assert_eq!(m.data, b"Subject: x\r\n\r\n.dot\r\nline\r\n");
        assert_eq!(s.handle_input(2, &input[used..], &mut accept_all), 0);
        s.answer(2, Reply::new(250, b"2.0.0 Ok: queued")).unwrap();
        assert_eq!(s.answer(2, Reply::new(250, b"again")), Err(NotAwaiting));
        assert_eq!(s.handle_input(3, &input[used..], &mut accept_all), 6);
        assert_eq!(drain(&mut s), "250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
        assert_eq!(s.poll_event(), Some(Event::Closed(CloseReason::Quit)));
    }

    #[test]
    fn input_split_anywhere_reads_the_same() {
        let input: &[u8] = b"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<b@c>\r\nDATA\r\n.a\r\n..\r\nx.\r\n.\r\n";
        for cut in 1..input.len() {
            let mut s = connected();
            let mut buf = input[..cut].to_vec();
            let used = s.handle_input(0, &buf, &mut accept_all);
            buf.drain(..used);
            buf.extend_from_slice(&input[cut..]);
            let used = s.handle_input(0, &buf, &mut accept_all);
            assert_eq!(used, buf.len(), "cut at {cut}");
            assert_eq!(s.message().map(|m| m.data.to_vec()), Some(b"a\r\n.\r\nx.\r\n".to_vec()), "cut at {cut}");
        }
    }

    #[test]
    fn refusals_are_specific_and_cost_nothing_else() {
        let mut s = connected();
        let mut refuse_unknown = |to: &[u8]| {
            if to.ends_with(b"@iwf.ims.lab") {
                Ok(())
            } else {
                Err(Reply::new(550, b"5.1.1 No such user here"))
            }
        };
        let input = b"MAIL FROM:<a@b>\r\nEHLO x\r\nRCPT TO:<a@b>\r\nMAIL FROM:<a@b> SIZE=2000000\r\nMAIL FROM:<a@b>\r\nDATA\r\nRCPT TO:<x@elsewhere>\r\nVRFY x\r\nFOO\r\nRSET\r\nNOOP\r\n";
        let used = s.handle_input(0, input, &mut refuse_unknown);
        assert_eq!(used, input.len());
        let out = drain(&mut s);
        let codes: Vec<&str> = out.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| &l[..3]).collect();
        assert_eq!(codes, ["503", "250", "503", "552", "250", "554", "550", "502", "500", "250", "250"]);
        assert_eq!(s.counters().errors, 6, "the refused recipient counts too");
        assert_eq!(s.counters().recipients_refused, 1);
        assert_eq!(s.state(), State::Ready);
    }

    /// Only CRLF . CRLF ends the data: `LF . LF` and `CRLF . LF` are content, so a
    /// sender cannot smuggle a second message (or commands) past this server.
    #[test]
    fn only_crlf_dot_crlf_ends_the_data() {
        let mut s = connected();
        let input = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nA: 1\r\n\r\none\n.\nMAIL FROM:<evil@x>\r\ntwo\r\n.\nthree\r\n.\r\n";
        assert_eq!(s.handle_input(0, input, &mut accept_all), input.len());
        assert_eq!(s.poll_event(), Some(Event::Message));
        // (A line that starts with a dot and has more on it loses the dot, §4.5.2.)
        assert_eq!(s.message().unwrap().data, b"A: 1\r\n\r\none\n.\nMAIL FROM:<evil@x>\r\ntwo\r\n\nthree\r\n");
        // A bare CR at the end of a read waits for what follows it.
        let mut s = connected();
        let first = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody\r";
        assert_eq!(s.handle_input(0, first, &mut accept_all), first.len() - 1);
        assert_eq!(s.handle_input(0, b"\r\n.\r\n", &mut accept_all), 5);
        assert_eq!(s.message().unwrap().data, b"body\r\n");
    }

    #[test]
    fn an_oversized_message_is_read_to_its_end_and_refused() {
        let mut s = Server::new(ServerConfig { max_message_size: 10, ..ServerConfig::default() });
        s.connected(0, true);
        drain(&mut s);
        let input = b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n0123456789\r\nmore\r\n.\r\nNOOP\r\n";
        assert_eq!(s.handle_input(0, input, &mut accept_all), input.len());
        let out = drain(&mut s);
        assert!(
            out.ends_with("552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n"),
            "{out}"
        );
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.counters().oversized, 1);
    }

    #[test]
    fn limits_close_or_refuse() {
        // Not on the allow-list: 554, then 503 to everything until QUIT.
        let mut s = Server::new(ServerConfig::default());
        s.connected(0, false);
        assert!(drain(&mut s).starts_with("554 5.7.1"));
        assert_eq!(s.poll_event(), None);
        let input = b"EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n";
        assert_eq!(s.handle_input(0, input, &mut accept_all), input.len());
        let out = drain(&mut s);
        assert!(out.starts_with("503 5.7.1") && out.ends_with("221 2.0.0 Bye\r\n"), "{out}");
        assert_eq!(out.matches("503 ").count(), 2, "{out}");
        assert_eq!(s.poll_event(), Some(Event::Closed(CloseReason::NotAllowed)));
        assert_eq!(s.handle_input(0, b"EHLO x\r\n", &mut accept_all), 0);
        // An over-long line is refused once and skipped.
        let mut s = connected();
        let mut long = vec![b'A'; 2000];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(s.handle_input(0, &long[..700], &mut accept_all), 700);
        assert_eq!(s.handle_input(0, &long[700..], &mut accept_all), long.len() - 700);
        assert_eq!(drain(&mut s), "500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n");
        // Too many errors: 421 and closed.
        let mut s = connected();
        let junk = b"X\r\n".repeat(20);
        s.handle_input(0, &junk, &mut accept_all);
        assert!(drain(&mut s).ends_with("421 4.7.0 Too many errors, closing connection\r\n"));
        assert_eq!(s.poll_event(), Some(Event::Closed(CloseReason::TooManyErrors)));
        // Too many recipients: 452 for each beyond.
        let mut s = Server::new(ServerConfig { max_recipients: 2, ..ServerConfig::default() });
        s.connected(0, true);
        drain(&mut s);
        s.handle_input(
            0,
            b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n",
            &mut accept_all,
        );
        assert!(drain(&mut s).ends_with("250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n"));
        // Silence: 421 at the idle timeout, not before.
        let mut s = connected();
        s.handle_input(1000, b"HELO x\r\n", &mut accept_all);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(301_000));
        s.handle_timeout(300_999);
        assert_eq!(s.poll_event(), None);
        s.handle_timeout(301_000);
        assert_eq!(drain(&mut s), "421 4.4.2 Idle too long, closing connection\r\n");
        assert_eq!(s.poll_event(), Some(Event::Closed(CloseReason::Timeout)));
    }

    #[test]
    fn replies_piling_up_hold_the_input_back() {
        let mut s = Server::new(ServerConfig { max_output: 64, ..ServerConfig::default() });
        s.connected(0, true);
        drain(&mut s);
        let noops = b"NOOP\r\n".repeat(100);
        let used = s.handle_input(0, &noops, &mut accept_all);
        assert!(used < noops.len() && used > 0);
        drain(&mut s);
        assert!(s.handle_input(0, &noops[used..], &mut accept_all) > 0);
    }
}
