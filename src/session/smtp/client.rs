//! The SMTP client session (RFC 5321), sans-IO: iwf delivering MM4 to an MMS
//! centre over one kept connection, one message at a time.
//!
//! ```text
//!  connected() ─220─► EHLO ─250─► Ready ◄───────────────────────────────┐
//!                                   │ send()                            │
//!                                   ▼                                   │
//!                     MAIL ─250─► RCPT ─250─► DATA ─354─► body ─250─► Delivered
//!                       └─ 4xx/5xx at any step: RSET ─► Refused ────────┘
//!  quit() when Ready ─► QUIT ─221─► Closed;  a bad reply or timeout ─► Closed
//! ```
//!
//! A server that refuses EHLO (500, 502) gets HELO (RFC 5321 §3.2), and no extension
//! is used with it. The message goes with one recipient (MM4 addresses one MMS centre per
//! transaction; several recipients are several sends). Its octets are dot-stuffed
//! on the way out and must use CRLF line ends. A server that advertised a smaller
//! `SIZE` is not asked to take the message: it is refused here, permanently.
//! Timeouts follow RFC 5321 §4.5.3.2 (the caller sets them).
use crate::wire::smtp::{Reply, ReplyError, ReplyStatus};
use std::collections::VecDeque;

/// Settings of an SMTP client session.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name iwf gives in EHLO.
    pub hostname: String,
    /// How long to wait for the greeting and each command's reply, ms (RFC 5321
    /// §4.5.3.2: 5 minutes).
    pub reply_timeout_ms: u64,
    /// How long to wait for the reply to the message's end, ms (§4.5.3.2.6: 10
    /// minutes).
    pub data_end_timeout_ms: u64,
    /// The largest reply accepted, octets (a multi-line EHLO reply included).
    pub max_reply: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            hostname: "iwf".into(),
            reply_timeout_ms: 300_000,
            data_end_timeout_ms: 600_000,
            max_reply: 8192,
        }
    }
}

/// Where a client session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected.
    Idle,
    /// Waiting for the greeting.
    Greeting,
    /// EHLO sent.
    Ehlo,
    /// HELO sent (the server refused EHLO).
    Helo,
    /// Connected, no message in flight: [`Client::send`] may be called.
    Ready,
    /// MAIL sent.
    Mail,
    /// RCPT sent.
    Rcpt,
    /// DATA sent, waiting for 354.
    Data,
    /// The message sent, waiting for its verdict.
    DataEnd,
    /// RSET sent after a refusal.
    Rset,
    /// QUIT sent.
    Quit,
    /// Closed.
    Closed(CloseReason),
}

/// Why a client session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// iwf quit.
    Quit,
    /// The server refused the connection (greeting 554) or the EHLO.
    Refused,
    /// The server closed with 421 (service not available).
    ServiceClosing,
    /// A reply did not come in time.
    Timeout,
    /// A reply that cannot be read, or out of place.
    Protocol,
    /// The TCP connection went away.
    ConnectionLost,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Connected and greeted: a message may be sent.
    Ready,
    /// The server took message `token` (250 after its end).
    Delivered {
        /// The caller's token of the message.
        token: u64,
    },
    /// The server refused message `token`, or the connection closed with it in
    /// flight (`code` 0 then, and not permanent: send it again).
    Refused {
        /// The caller's token of the message.
        token: u64,
        /// The reply code (0: no reply, the connection closed).
        code: u16,
        /// Whether sending it again will fail the same way (5xx).
        permanent: bool,
        /// The server's text (bounded), for logs.
        text: String,
    },
    /// The session closed: close the connection.
    Closed(CloseReason),
}

/// Why [`Client::send`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Not ready: not connected, or a message is in flight.
    NotReady,
    /// A path with a character that cannot go in a command.
    BadPath,
}

/// One SMTP client connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    out: Vec<u8>,
    /// The message in flight: its token, its RCPT and its stuffed body.
    token: u64,
    rcpt: Vec<u8>,
    body: Vec<u8>,
    /// The server's advertised `SIZE` (0: none), and whether it pipelines.
    max_size: u64,
    pipelining: bool,
    deadline: Option<u64>,
    events: VecDeque<Event>,
}

impl Client {
    /// A session, not connected yet.
    pub fn new(config: ClientConfig) -> Client {
        Client {
            config,
            state: State::Idle,
            out: Vec::new(),
            token: 0,
            rcpt: Vec::new(),
            body: Vec::new(),
            max_size: 0,
            pipelining: false,
            deadline: None,
            events: VecDeque::new(),
        }
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the server advertised PIPELINING.
    pub fn server_pipelines(&self) -> bool {
        self.pipelining
    }

    /// The TCP connection is up: wait for the greeting.
    pub fn connected(&mut self, now: u64) {
        self.out.clear();
        self.events.clear();
        self.max_size = 0;
        self.pipelining = false;
        self.state = State::Greeting;
        self.deadline = Some(now + self.config.reply_timeout_ms);
    }

    /// The TCP connection went away; a message in flight is refused, not
    /// permanently.
    pub fn connection_lost(&mut self) {
        if !matches!(self.state, State::Closed(_) | State::Idle) {
            self.close(CloseReason::ConnectionLost);
        }
    }

    /// Sends message `data` (RFC 5322, CRLF line ends) from `from` to `to`
    /// (paths without angle brackets), known later by `token`.
    pub fn send(&mut self, now: u64, token: u64, from: &[u8], to: &[u8], data: &[u8]) -> Result<(), SendError> {
        if self.state != State::Ready {
            return Err(SendError::NotReady);
        }
        let bad = |p: &[u8]| p.iter().any(|&b| b <= b' ' || b == b'<' || b == b'>' || b == 0x7f);
        if bad(from) || bad(to) || to.is_empty() {
            return Err(SendError::BadPath);
        }
        self.token = token;
        if self.max_size != 0 && data.len() as u64 > self.max_size {
            self.events.push_back(Event::Refused {
                token,
                code: 552,
                permanent: true,
                text: format!("5.3.4 {} octets, the server takes {}", data.len(), self.max_size),
            });
            return Ok(());
        }
        self.rcpt.clear();
        self.rcpt.extend_from_slice(b"RCPT TO:<");
        self.rcpt.extend_from_slice(to);
        self.rcpt.extend_from_slice(b">\r\n");
        stuff(data, &mut self.body);
        self.out.extend_from_slice(b"MAIL FROM:<");
        self.out.extend_from_slice(from);
        self.out.extend_from_slice(b">");
        if self.max_size != 0 {
            self.out.extend_from_slice(format!(" SIZE={}", data.len()).as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        self.state = State::Mail;
        self.deadline = Some(now + self.config.reply_timeout_ms);
        Ok(())
    }

    /// Says goodbye when no message is in flight.
    pub fn quit(&mut self, now: u64) {
        if self.state == State::Ready {
            self.out.extend_from_slice(b"QUIT\r\n");
            self.state = State::Quit;
            self.deadline = Some(now + self.config.reply_timeout_ms);
        }
    }

    /// Takes TCP stream bytes (the server's replies); returns how many it consumed.
    pub fn handle_input(&mut self, now: u64, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() && !matches!(self.state, State::Closed(_) | State::Idle) {
            let mut size = None;
            let mut pipelining = false;
            let rest = &bytes[at..];
            let parsed = Reply::parse(rest, |l| extension(l, &mut size, &mut pipelining));
            match parsed {
                Ok(ReplyStatus::Complete(reply, used)) => {
                    if self.state == State::Ehlo && reply.is_positive() {
                        // The last line names an extension too.
                        extension(reply.text, &mut size, &mut pipelining);
                        self.max_size = size.unwrap_or(0);
                        self.pipelining = pipelining;
                    }
                    at += used;
                    self.reply(now, reply);
                }
                Ok(ReplyStatus::Partial) if rest.len() < self.config.max_reply => break,
                Ok(ReplyStatus::Partial) | Err(ReplyError::TooLong | ReplyError::Malformed) => {
                    self.close(CloseReason::Protocol);
                    at = bytes.len();
                }
            }
        }
        at
    }

    fn reply(&mut self, now: u64, r: Reply<'_>) {
        self.deadline = Some(now + self.config.reply_timeout_ms);
        if r.code == 421 {
            return self.close(CloseReason::ServiceClosing);
        }
        match (self.state, r.code) {
            (State::Greeting, 220) => {
                self.hello(b"EHLO ");
                self.state = State::Ehlo;
            }
            // A server without ESMTP: HELO (RFC 5321 §3.2), and no extensions.
            (State::Ehlo, 500 | 502) => {
                self.hello(b"HELO ");
                self.state = State::Helo;
            }
            (State::Greeting | State::Ehlo | State::Helo, _) if !r.is_positive() => self.close(CloseReason::Refused),
            (State::Ehlo | State::Helo, _) => {
                self.state = State::Ready;
                self.deadline = None;
                self.events.push_back(Event::Ready);
            }
            (State::Mail, c) if (200..300).contains(&c) => {
                self.out.extend_from_slice(&self.rcpt);
                self.state = State::Rcpt;
            }
            (State::Rcpt, c) if (200..300).contains(&c) => {
                self.out.extend_from_slice(b"DATA\r\n");
                self.state = State::Data;
            }
            (State::Data, 354) => {
                self.out.extend_from_slice(&self.body);
                self.out.extend_from_slice(b".\r\n");
                self.state = State::DataEnd;
                self.deadline = Some(now + self.config.data_end_timeout_ms);
            }
            (State::DataEnd, c) if (200..300).contains(&c) => {
                self.events.push_back(Event::Delivered { token: self.token });
                self.ready();
            }
            (State::Mail | State::Rcpt | State::Data | State::DataEnd, _) => {
                self.events.push_back(Event::Refused {
                    token: self.token,
                    code: r.code,
                    permanent: r.is_permanent(),
                    text: String::from_utf8_lossy(r.text.get(..200).unwrap_or(r.text)).into_owned(),
                });
                // Back to a clean slate for the next message (RFC 5321 §4.1.1.5).
                self.out.extend_from_slice(b"RSET\r\n");
                self.state = State::Rset;
            }
            (State::Rset, c) if (200..300).contains(&c) => self.ready(),
            (State::Quit, _) => self.close(CloseReason::Quit),
            _ => self.close(CloseReason::Protocol),
        }
    }

    fn hello(&mut self, verb: &[u8]) {
        self.out.extend_from_slice(verb);
        self.out.extend_from_slice(self.config.hostname.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn ready(&mut self) {
        self.state = State::Ready;
        self.deadline = None;
        self.body.clear();
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Mail | State::Rcpt | State::Data | State::DataEnd) {
            let text = match reason {
                CloseReason::Timeout => "no reply in time",
                _ => "the connection closed",
            };
            self.events.push_back(Event::Refused { token: self.token, code: 0, permanent: false, text: text.into() });
        }
        self.body.clear();
        self.state = State::Closed(reason);
        self.deadline = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// Commands to send: copies up to `out.len()` octets and returns how many.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> usize {
        super::take(&mut self.out, out)
    }

    /// Whether commands wait unsent.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Runs the reply timer: a reply overdue closes the session.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.close(CloseReason::Timeout);
        }
    }
}

/// Reads an EHLO reply line's extension: `SIZE n`, `PIPELINING`.
fn extension(line: &[u8], size: &mut Option<u64>, pipelining: &mut bool) {
    let (k, v) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    if k.eq_ignore_ascii_case(b"SIZE") {
        *size = core::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok());
    } else if k.eq_ignore_ascii_case(b"PIPELINING") {
        *pipelining = true;
    }
}

/// Copies `data` into `out` with every line's leading `.` doubled (RFC 5321
/// §4.5.2) and a final CRLF if it lacks one.
pub fn stuff(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(data.len() + 16);
    let mut line_start = true;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::smtp::server::{Event as ServerEvent, Server, ServerConfig};

    fn take(c: &mut Client) -> String {
        let mut out = vec![0u8; 1 << 20];
        let n = c.poll_transmit(&mut out);
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    fn ready() -> Client {
        let mut c = Client::new(ClientConfig { hostname: "iwf.ims.lab".into(), ..ClientConfig::default() });
        c.connected(0);
        assert_eq!(c.handle_input(1, b"220 mmsc ESMTP\r\n"), 16);
        assert_eq!(take(&mut c), "EHLO iwf.ims.lab\r\n");
        c.handle_input(2, b"250-mmsc\r\n250-SIZE 100\r\n250 PIPELINING\r\n");
        assert_eq!(c.poll_event(), Some(Event::Ready));
        assert!(c.server_pipelines());
        c
    }

    #[test]
    fn a_message_goes_command_by_command_and_is_delivered() {
        let mut c = ready();
        c.send(3, 7, b"iwf@iwf.ims.lab", b"+447000400001/TYPE=PLMN@mmsc-m.lab", b"A: b\r\n\r\n.x\r\nend").unwrap();
        assert_eq!(c.send(3, 8, b"a", b"b", b""), Err(SendError::NotReady));
        assert_eq!(take(&mut c), "MAIL FROM:<iwf@iwf.ims.lab> SIZE=15\r\n");
        c.handle_input(4, b"250 2.1.0 Ok\r\n");
        assert_eq!(take(&mut c), "RCPT TO:<+447000400001/TYPE=PLMN@mmsc-m.lab>\r\n");
        c.handle_input(5, b"250 2.1.5 Ok\r\n");
        assert_eq!(take(&mut c), "DATA\r\n");
        c.handle_input(6, b"354 go\r\n");
        assert_eq!(take(&mut c), "A: b\r\n\r\n..x\r\nend\r\n.\r\n");
        assert_eq!(c.poll_timeout(), Some(600_006));
        c.handle_input(7, b"250 2.0.0 queued\r\n");
        assert_eq!(c.poll_event(), Some(Event::Delivered { token: 7 }));
        assert_eq!(c.state(), State::Ready);
        c.quit(8);
        assert_eq!(take(&mut c), "QUIT\r\n");
        c.handle_input(9, b"221 bye\r\n");
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Quit)));
    }

    #[test]
    fn refusals_are_reported_and_the_session_reset() {
        let mut c = ready();
        c.send(3, 1, b"a@b", b"c@d", b"x\r\n").unwrap();
        take(&mut c);
        c.handle_input(4, b"250 ok\r\n550 5.1.1 no such user\r\n");
        let Some(Event::Refused { token: 1, code: 550, permanent: true, .. }) = c.poll_event() else { panic!() };
        assert_eq!(take(&mut c), "RCPT TO:<c@d>\r\nRSET\r\n");
        c.handle_input(5, b"250 ok\r\n");
        assert_eq!(c.state(), State::Ready);
        // Too big for the server's SIZE: refused here, nothing sent.
        c.send(6, 2, b"a@b", b"c@d", &[b'x'; 200]).unwrap();
        let Some(Event::Refused { token: 2, code: 552, permanent: true, .. }) = c.poll_event() else { panic!() };
        assert_eq!(take(&mut c), "");
        // A transient refusal at the end of data, then the connection drops mid-message.
        c.send(7, 3, b"a@b", b"c@d", b"x\r\n").unwrap();
        c.handle_input(8, b"250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 try later\r\n");
        let Some(Event::Refused { token: 3, code: 451, permanent: false, .. }) = c.poll_event() else { panic!() };
        c.handle_input(9, b"250 ok\r\n");
        c.send(10, 4, b"a@b", b"c@d", b"x\r\n").unwrap();
        c.connection_lost();
        let Some(Event::Refused { token: 4, code: 0, permanent: false, .. }) = c.poll_event() else { panic!() };
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ConnectionLost)));
    }

    #[test]
    fn a_server_without_esmtp_gets_helo_and_size_may_come_last() {
        let mut c = Client::new(ClientConfig { hostname: "iwf".into(), ..ClientConfig::default() });
        c.connected(0);
        c.handle_input(1, b"220 old\r\n");
        assert_eq!(take(&mut c), "EHLO iwf\r\n");
        c.handle_input(2, b"502 5.5.1 what\r\n");
        assert_eq!(take(&mut c), "HELO iwf\r\n");
        c.handle_input(3, b"250 old\r\n");
        assert_eq!(c.poll_event(), Some(Event::Ready));
        c.send(4, 1, b"a@b", b"c@d", &[b'x'; 200]).unwrap();
        assert_eq!(take(&mut c), "MAIL FROM:<a@b>\r\n", "no SIZE without the extension");
        // SIZE on the last line of the EHLO reply is honoured.
        let mut c = Client::new(ClientConfig::default());
        c.connected(0);
        c.handle_input(1, b"220 x\r\n");
        c.handle_input(2, b"250-x\r\n250 SIZE 100\r\n");
        assert_eq!(c.poll_event(), Some(Event::Ready));
        c.send(3, 2, b"a@b", b"c@d", &[b'x'; 200]).unwrap();
        let Some(Event::Refused { token: 2, code: 552, permanent: true, .. }) = c.poll_event() else { panic!() };
    }

    #[test]
    fn greeting_refusals_timeouts_and_garbage_close() {
        let mut c = Client::new(ClientConfig::default());
        c.connected(0);
        c.handle_input(1, b"554 go away\r\n");
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Refused)));
        let mut c = Client::new(ClientConfig::default());
        c.connected(0);
        c.handle_timeout(299_999);
        assert_eq!(c.poll_event(), None);
        c.handle_timeout(300_000);
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Timeout)));
        let mut c = ready();
        c.handle_input(3, b"hello\r\n");
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Protocol)));
        let mut c = ready();
        c.send(3, 9, b"a@b", b"c@d", b"x\r\n").unwrap();
        c.handle_input(4, b"421 4.3.2 shutting down\r\n");
        let Some(Event::Refused { token: 9, code: 0, permanent: false, .. }) = c.poll_event() else { panic!() };
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ServiceClosing)));
    }

    /// iwf's client against iwf's server: the message arrives as sent, dots and all.
    #[test]
    fn client_and_server_agree() {
        let mut s = Server::new(ServerConfig::default());
        let mut c = Client::new(ClientConfig::default());
        s.connected(0, true);
        c.connected(0);
        let mut accept = |_: &[u8]| Ok(());
        let data = b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nlast".to_vec();
        let mut sent = false;
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..20 {
            let n = s.poll_transmit(&mut buf);
            c.handle_input(1, &buf[..n]);
            if c.state() == State::Ready && !sent {
                c.send(1, 5, b"iwf@x", b"u@y", &data).unwrap();
                sent = true;
            }
            let n = c.poll_transmit(&mut buf);
            assert_eq!(s.handle_input(1, &buf[..n], &mut accept), n);
            if s.poll_event() == Some(ServerEvent::Message) {
                assert_eq!(s.message().unwrap().data, b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nlast\r\n");
                s.answer(1, Reply::new(250, b"2.0.0 Ok")).unwrap();
            }
        }
        assert_eq!(c.poll_event(), Some(Event::Ready));
        assert_eq!(c.poll_event(), Some(Event::Delivered { token: 5 }));
    }
}
