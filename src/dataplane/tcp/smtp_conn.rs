//! The SMTP connections of the MMS exchange: MMS centres relaying MM4 to iwf's SMTP
//! server (`smtp_tcp_port`; a peer address no `kind = "mmsc"` system allows gets a RST
//! at its SYN), and iwf's SMTP client toward each MMS centre its port reaches (its
//! `smtp_next_hop`), opened when an MM4 message waits for it.
//!
//! A whole message goes to the engine ([`Input::Mm4`]); its SMTP reply comes back
//! through [`Flows::poll_smtp_answer`], and the session reads nothing more from that
//! connection until then. What the engine has for an MMS centre
//! ([`Flows::poll_mm4_out`]) waits in its client's queue, one message in flight: a
//! transient refusal is tried again after [`MM4_RETRY_MS`], a permanent one is
//! dropped and counted, a message cut off with its connection goes again.
use super::*;
use crate::flow::Mm4Out;
use crate::session::smtp::client::{Client, ClientConfig, Event as ClientEvent, State as ClientState};
use crate::session::smtp::server::{
    Event as ServerEvent, Server, ServerConfig as SmtpServerConfig, State as ServerState,
};
use crate::wire::smtp::Reply;

/// MM4 messages an MMS centre's client holds waiting at most: beyond, one is dropped
/// and counted (the engine refuses new MMS before its own queue gets there).
pub(super) const MM4_WAITING_MAX: usize = 1024;

/// How long a message an MMS centre refused for now waits before it goes again, ms.
pub(super) const MM4_RETRY_MS: u64 = 5_000;

/// iwf's SMTP client toward one MMS centre, from this port.
#[derive(Debug, Clone)]
pub struct Mm4Client {
    /// The MMS centre (its `[[legacy]]` id).
    pub system: u16,
    /// Its SMTP next hop.
    pub remote: SocketAddrV4,
    /// Reconnect back-off, first delay and cap, ms (`reconnect_initial_ms`,
    /// `reconnect_max_ms`).
    pub reconnect_ms: (u64, u64),
}

/// Tries of one MM4 message at most (transient refusals, connections lost with it in
/// flight): then it is dropped and counted.
pub(super) const MM4_ATTEMPTS: u8 = 5;

/// An SMTP server connection: its session and the MMS centre its peer is.
#[derive(Debug)]
pub(super) struct SmtpConn {
    pub(super) server: Server,
    pub(super) system: Option<u16>,
}

impl SmtpConn {
    pub(super) fn new(hostname: &str, max_message_size: usize) -> SmtpConn {
        let config =
            SmtpServerConfig { hostname: hostname.to_string(), max_message_size, ..SmtpServerConfig::default() };
        SmtpConn { server: Server::new(config), system: None }
    }
}

/// iwf's SMTP client connection: its session, what waits for it, what is in flight.
#[derive(Debug)]
pub(super) struct Mm4Conn {
    pub(super) client: Client,
    pub(super) waiting: std::collections::VecDeque<Mm4Out>,
    pub(super) in_flight: Option<Mm4Out>,
    /// Nothing goes before this (a transient refusal's pause), ms.
    pub(super) hold_until: u64,
    next_token: u64,
    /// Something was delivered on the current connection.
    delivered: bool,
    /// The fates of messages with a token ([`Mm4Out::token`]) for the engine
    /// ([`Input::Mm4Done`]): taken by the MMS centre, or not.
    pub(super) done: Vec<(u64, bool)>,
}

impl Mm4Conn {
    pub(super) fn new(hostname: &str) -> Mm4Conn {
        Mm4Conn {
            client: Client::new(ClientConfig { hostname: hostname.to_string(), ..ClientConfig::default() }),
            waiting: std::collections::VecDeque::new(),
            in_flight: None,
            hold_until: 0,
            next_token: 0,
            delivered: false,
            done: Vec::new(),
        }
    }

    /// Whether the queue takes one more.
    pub(super) fn has_room(&self) -> bool {
        self.waiting.len() < MM4_WAITING_MAX
    }

    /// Queues `o` (the dispatcher takes only what [`Mm4Conn::has_room`] allows; past
    /// it, the oldest waiting is dropped and counted).
    pub(super) fn queue(&mut self, o: Mm4Out, tc: &TcpCounters) {
        if self.waiting.len() >= MM4_WAITING_MAX {
            if let Some(old) = self.waiting.pop_front() {
                self.finish(old, false);
            }
            tc.mm4_dropped.inc();
        }
        self.waiting.push_back(o);
    }

    /// Whether a message waits to go (the connection is wanted).
    pub(super) fn wants_connection(&self) -> bool {
        self.in_flight.is_some() || !self.waiting.is_empty()
    }

    /// The connection went: what was in flight goes again first (or is dropped after
    /// its last try). Whether anything was delivered on it.
    pub(super) fn lost(&mut self, tc: &TcpCounters) -> bool {
        self.client.connection_lost();
        while self.client.poll_event().is_some() {}
        self.retry(tc);
        std::mem::take(&mut self.delivered)
    }

    /// Message `o` is done with: its fate goes to the engine when it waits for it.
    pub(super) fn finish(&mut self, o: Mm4Out, delivered: bool) {
        if let Some(token) = o.token {
            self.done.push((token, delivered));
        }
    }

    /// The message in flight failed for now: it goes again first, after a pause, or is
    /// dropped after its last try.
    fn retry(&mut self, tc: &TcpCounters) {
        if let Some(mut o) = self.in_flight.take() {
            o.attempts = o.attempts.saturating_add(1);
            if o.attempts >= MM4_ATTEMPTS {
                tc.mm4_dropped.inc();
                self.finish(o, false);
            } else {
                self.waiting.push_front(o);
            }
        }
    }
}

/// The most a session leaves untaken while it waits for the rest of a line: a reply of
/// the client's `max_reply` (a multi-line EHLO answer), a server's command line.
const PARTIAL_MAX: usize = 8192;

/// Hands what `sock` holds to `input` (which says how much it took) until it takes
/// nothing more; whether it took anything.
///
/// The socket's buffer is a ring and `recv` shows only up to its end. A line cut there
/// (a CRLF split across the wrap, a command's first half) is taken by neither half, so
/// the session would wait for octets it already has: then the ring is read across the
/// wrap into a scratch copy and what the session takes of it is dropped from the ring.
fn read_into(sock: &mut tcp::Socket<'_>, mut input: impl FnMut(&[u8]) -> usize) -> bool {
    let mut any = false;
    while sock.can_recv() {
        let mut seen = 0;
        let used = sock
            .recv(|buf| {
                seen = buf.len();
                let n = input(buf);
                (n, n)
            })
            .unwrap_or(0);
        if used > 0 {
            any = true;
            continue;
        }
        if sock.recv_queue() <= seen {
            break;
        }
        let mut scratch = [0u8; PARTIAL_MAX];
        let n = sock.peek_slice(&mut scratch).unwrap_or(0);
        let used = input(scratch.get(..n).unwrap_or(&[])).min(n);
        if used == 0 || sock.recv_slice(scratch.get_mut(..used).unwrap_or(&mut [])).is_err() {
            break;
        }
        any = true;
    }
    any
}

/// Writes what `output` gives into `sock`'s send buffer; whether anything went.
fn write_from(sock: &mut tcp::Socket<'_>, mut output: impl FnMut(&mut [u8]) -> usize) -> bool {
    if !sock.can_send() {
        return false;
    }
    let n = sock
        .send(|buf| {
            let n = output(buf);
            (n, n)
        })
        .unwrap_or(0);
    n > 0
}

/// One pass of an SMTP server connection: its input to the session (a whole message to
/// the engine), the session's timers, its replies to the socket.
pub(super) fn drive_smtp(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    conn: &mut SmtpConn,
    conn_id: ConnRef,
    tc: &TcpCounters,
    mut flows: Option<&mut Flows>,
) {
    // Recipients are iwf's to judge from the MM4 message itself (its To), at the end
    // of data: the envelope takes any.
    let mut any = |_: &[u8]| -> Result<(), Reply<'static>> { Ok(()) };
    for _ in 0..4 {
        let server = &mut conn.server;
        let mut progressed = read_into(sock, |buf| server.handle_input(now, buf, &mut any));
        while let Some(e) = conn.server.poll_event() {
            progressed = true;
            match (e, flows.as_deref_mut(), conn.system) {
                (ServerEvent::Message, Some(f), Some(system)) => {
                    tc.smtp_messages.inc();
                    let data = conn.server.message().map_or(&[][..], |m| m.data);
                    f.handle(now, Input::Mm4 { conn: conn_id, system, data });
                }
                (ServerEvent::Message, ..) => {
                    // No engine here: iwf cannot deliver it, so it must not take it.
                    let _ = conn.server.answer(now, Reply::new(451, b"4.3.0 Not relaying now, try again"));
                }
                (ServerEvent::Closed(_), f, _) => {
                    if let Some(f) = f {
                        f.handle(now, Input::Closed { conn: conn_id });
                    }
                }
            }
        }
        if conn.server.poll_timeout().is_some_and(|t| t <= now) {
            conn.server.handle_timeout(now);
        }
        let server = &mut conn.server;
        if server.wants_transmit() {
            progressed |= write_from(sock, |buf| server.poll_transmit(buf));
        }
        if !progressed {
            break;
        }
    }
    if matches!(conn.server.state(), ServerState::Closed(_)) && !conn.server.wants_transmit() && sock.send_queue() == 0
    {
        sock.close();
    }
}

/// One pass of iwf's SMTP client connection: the server's replies to the session, its
/// outcomes to the queue, the next message when the session is ready, its commands to
/// the socket.
pub(super) fn drive_mm4(now: u64, sock: &mut tcp::Socket<'_>, conn: &mut Mm4Conn, tc: &TcpCounters) {
    for _ in 0..4 {
        let client = &mut conn.client;
        let mut progressed = read_into(sock, |buf| client.handle_input(now, buf));
        while let Some(e) = conn.client.poll_event() {
            progressed = true;
            match e {
                ClientEvent::Ready => {}
                ClientEvent::Delivered { .. } => {
                    if let Some(o) = conn.in_flight.take() {
                        conn.finish(o, true);
                    }
                    conn.delivered = true;
                    tc.mm4_sent.inc();
                }
                ClientEvent::Refused { permanent: true, .. } => {
                    if let Some(o) = conn.in_flight.take() {
                        conn.finish(o, false);
                    }
                    tc.mm4_refused.inc();
                }
                ClientEvent::Refused { .. } => {
                    // A transient refusal (4xx): the same message again, after a pause.
                    conn.retry(tc);
                    conn.hold_until = now.saturating_add(MM4_RETRY_MS);
                }
                ClientEvent::Closed(_) => conn.retry(tc),
            }
        }
        // The MMS centre closed its side (FIN): a message started now would meet its
        // RST. Ours closes; what waits goes on the next connection (what was in flight
        // goes again once this one is gone).
        if sock.state() == TcpState::CloseWait {
            sock.close();
            break;
        }
        // What waited past its time was answered already: it is not sent (the answer's
        // retry would make it a duplicate).
        while conn.waiting.front().is_some_and(|o| o.expires_ms.is_some_and(|t| t < now)) {
            if let Some(o) = conn.waiting.pop_front() {
                tc.mm4_dropped.inc();
                conn.finish(o, false);
            }
        }
        let ready = conn.client.state() == ClientState::Ready && sock.may_send();
        if ready && conn.in_flight.is_none() && now >= conn.hold_until {
            if let Some(o) = conn.waiting.pop_front() {
                conn.next_token = conn.next_token.wrapping_add(1);
                match conn.client.send(now, conn.next_token, o.from.as_bytes(), o.rcpt.as_bytes(), &o.data) {
                    Ok(()) => conn.in_flight = Some(o),
                    // An address no SMTP command can carry: it can never go.
                    Err(_) => {
                        tc.mm4_refused.inc();
                        conn.finish(o, false);
                    }
                }
                progressed = true;
            }
        }
        if conn.client.poll_timeout().is_some_and(|t| t <= now) {
            conn.client.handle_timeout(now);
        }
        let client = &mut conn.client;
        if client.wants_transmit() {
            progressed |= write_from(sock, |buf| client.poll_transmit(buf));
        }
        if !progressed {
            break;
        }
    }
    if matches!(conn.client.state(), ClientState::Closed(_)) && !conn.client.wants_transmit() && sock.send_queue() == 0
    {
        sock.close();
    }
}
