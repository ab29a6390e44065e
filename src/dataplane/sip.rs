//! SIP over UDP on a worker: the sans-IO transaction layer of [`crate::session::sip`]
//! plugged into the packet path, one [`SipUdp`] per worker and port (no locks, no
//! allocation per datagram: the tables are allocated once, at start).
//!
//! ```text
//!  UDP 5060 payload (borrowed from the RX mbuf)
//!     │ classify
//!     ├─ request ──► ServerTransactions ──► new: UasPolicy answer ─► respond ─┐
//!     │                 │ retransmission: stored response ───────────────────┤► reply written
//!     │                 │ rejected: stateless 400/405/481/... or counted drop ─┘  into the TX mbuf
//!     ├─ response ─► ClientTransactions (keep-alive OPTIONS, later iwf's MESSAGEs)
//!     └─ CRLF keep-alive: counted
//!  timers (poll_timeout ≤ now): Timer J/abandon (server), Timer E/F/K (client),
//!  the next keep-alive OPTIONS towards [sip] next_hop
//! ```
//!
//! Every outcome has a counter in [`SipCounters`] (logged as `sip.*` with the port's
//! other counters). The next hop is up after a 2xx to the last keep-alive OPTIONS, down
//! after any other final response or a Timer F timeout.
#![deny(unsafe_code)]

use super::counters::{SipCounters, Stats};
use super::host::UdpSend;
use crate::flow::{Flows, Input, SipTxn};
use crate::session::sip::Response;
use crate::session::sip::{
    classify, Answer, ClientConfig, ClientError, ClientTransactions, ClientTxId, DatagramKind, Event, Incoming,
    Rejection, ResponseMatch, ServerConfig, ServerTransactions, UasPolicy,
};
use crate::wire::sip::{CoreFields, Header, Message, MessageWriter, Method};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddrV4;
use std::sync::Arc;

/// Seconds since the Unix epoch (the tags' and receipts' clock).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Replaces the branch of a request's first Via with `branch` (header section only:
/// the Content-Length stays right).
pub fn set_branch(request: &mut Vec<u8>, branch: &str) {
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(request.len());
    let Some(via) = find(&request[..head_end], b"\r\nVia:").or_else(|| find(&request[..head_end], b"\r\nv:")) else {
        return;
    };
    let line_end = find(&request[via + 2..head_end], b"\r\n").map_or(head_end, |e| via + 2 + e);
    let Some(at) = find(&request[via..line_end], b"branch=").map(|b| via + b + 7) else { return };
    let end = request[at..line_end].iter().position(|c| matches!(c, b';' | b',' | b' ')).map_or(line_end, |e| at + e);
    request.splice(at..end, branch.bytes());
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes the answer a flow decided into `out` through the server transaction.
pub fn answer_into(
    server: &mut ServerTransactions,
    now: u64,
    id: crate::session::sip::ServerTxId,
    status: u16,
    reason: &str,
    retry_after: Option<u32>,
    out: &mut [u8],
) -> Option<crate::session::sip::Reply> {
    let mut secs = [0u8; 10];
    let n = retry_after.map_or(0, |r| {
        use std::io::Write as _;
        let mut c = std::io::Cursor::new(&mut secs[..]);
        let _ = write!(c, "{r}");
        c.position() as usize
    });
    let value = std::str::from_utf8(secs.get(..n).unwrap_or(&[])).unwrap_or("");
    let extra = [("Retry-After", value)];
    let headers: &[(&str, &str)] = if n > 0 { &extra } else { &[] };
    let response = Response { status, reason, to_tag: None, headers, body: b"" };
    server.respond(now, id, &response, out).ok()
}

/// Header fields parsed per request (more = 400 Too Many Headers).
pub const MAX_HEADERS: usize = 48;
/// Largest keep-alive OPTIONS iwf builds.
const KEEPALIVE_MAX: usize = 512;

/// How a SIP service without flows answers a MESSAGE (with flows, MESSAGEs go to the
/// exchange selection instead).
pub type Route = fn(&CoreFields<'_>, &Message<'_, '_>) -> Answer;

/// The keep-alive of the converged next hop: an OPTIONS every `interval_ms` while none
/// is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// The next hop (the SIP core).
    pub next_hop: SocketAddrV4,
    /// Time between the start of two OPTIONS, in milliseconds (at least 1).
    pub interval_ms: u64,
}

/// Sizes and options of one worker's SIP service.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Our address and SIP port (the Via sent-by of iwf's requests).
    pub local: SocketAddrV4,
    /// Server transactions.
    pub server_transactions: usize,
    /// Bytes stored per server transaction.
    pub server_slot_bytes: usize,
    /// Client transactions.
    pub client_transactions: usize,
    /// The keep-alive, on the one worker that sends it.
    pub keepalive: Option<KeepAlive>,
    /// The owner written into client branches (the worker's queue).
    pub owner: u16,
    /// T1 of iwf's client transactions (Timer F = 64·T1).
    pub timer_t1_ms: u64,
    /// `[sip] trusted`: the only sources served (empty: every source).
    pub trusted: Vec<(std::net::Ipv4Addr, u8)>,
    /// What an untrusted request gets.
    pub untrusted: crate::control::config::Untrusted,
}

/// A stateless `403 Forbidden` to `request` in `out` (its length), if it parses.
fn forbidden(request: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    let crate::wire::sip::Status::Complete(_, msg) =
        crate::wire::sip::Parser::datagram().parse(request, &mut headers).ok()?
    else {
        return None;
    };
    let w = crate::wire::sip::MessageWriter::response_to(out, &msg, 403, "Forbidden", Some("iwf")).ok()?;
    w.finish(b"").ok()
}

/// Two fresh random words per call (std's `RandomState` is seeded from the OS).
fn random_secret() -> [u64; 2] {
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.finish()
    };
    [word(1), word(2)]
}

/// One worker's SIP service on one port.
#[derive(Debug)]
pub struct SipUdp {
    server: ServerTransactions,
    client: ClientTransactions,
    policy: UasPolicy<Route>,
    local: SocketAddrV4,
    keepalive: Option<KeepAlive>,
    /// When the next keep-alive starts (only while none is in flight).
    next_keepalive: u64,
    keepalive_tx: Option<ClientTxId>,
    keepalive_seq: u32,
    stats: Arc<Stats>,
    port: usize,
    queue: usize,
    /// Whether this service sends the flows' requests to the next hop.
    originates: bool,
    /// The flows' requests in flight: client transaction → token.
    tokens: HashMap<ClientTxId, u64>,
    /// The flows' requests wait for a client slot (counted once per episode).
    blocked: bool,
    trusted: Vec<(std::net::Ipv4Addr, u8)>,
    untrusted: crate::control::config::Untrusted,
}

impl SipUdp {
    /// `originates`: this service also sends the flows' requests (the next hop's port,
    /// worker of queue 0).
    pub fn originating(mut self, originates: bool) -> SipUdp {
        self.originates = originates;
        self
    }

    /// A service with `settings`, counting into `stats.ports[port].queues[queue].sip`;
    /// MESSAGEs go to `route`. All transaction storage is allocated here.
    pub fn new(settings: &SipSettings, route: Route, stats: Arc<Stats>, port: usize, queue: usize) -> SipUdp {
        let server = ServerTransactions::new(ServerConfig {
            capacity: settings.server_transactions,
            slot_len: settings.server_slot_bytes,
            secret: random_secret(),
            ..ServerConfig::default()
        });
        let client = ClientTransactions::new(ClientConfig {
            capacity: settings.client_transactions,
            secret: random_secret(),
            owner: settings.owner,
            timers: crate::session::sip::Timers {
                t1: settings.timer_t1_ms.max(1),
                ..crate::session::sip::Timers::RFC3261
            },
            ..ClientConfig::default()
        });
        SipUdp {
            server,
            client,
            policy: UasPolicy::new(route),
            local: settings.local,
            keepalive: settings.keepalive,
            next_keepalive: 0,
            keepalive_tx: None,
            keepalive_seq: 0,
            stats,
            port,
            queue,
            originates: false,
            tokens: HashMap::with_capacity(settings.client_transactions),
            blocked: false,
            trusted: settings.trusted.clone(),
            untrusted: settings.untrusted,
        }
    }

    fn counters(&self) -> Option<&SipCounters> {
        Some(&self.stats.ports.get(self.port)?.queues.get(self.queue)?.sip)
    }

    /// The server transactions (for tests and reports).
    pub fn server(&self) -> &ServerTransactions {
        &self.server
    }

    /// The client transactions (for tests and reports).
    pub fn client(&self) -> &ClientTransactions {
        &self.client
    }

    fn count(&self, f: impl FnOnce(&SipCounters)) {
        if let Some(c) = self.counters() {
            f(c);
        }
    }

    fn count_sent(&self, reply: &[u8]) {
        // "SIP/2.0 NXX": the class digit is at offset 8.
        let class = reply.get(8).copied().unwrap_or(0);
        self.count(|c| match class {
            b'1' => c.tx_1xx.inc(),
            b'2' => c.tx_2xx.inc(),
            b'3' => c.tx_3xx.inc(),
            b'4' => c.tx_4xx.inc(),
            b'5' => c.tx_5xx.inc(),
            _ => c.tx_6xx.inc(),
        });
    }

    fn request(
        &mut self,
        flows: Option<&mut Flows>,
        now: u64,
        payload: &[u8],
        src: SocketAddrV4,
        reply: &mut [u8],
    ) -> Option<UdpSend> {
        let mut headers = [Header::EMPTY; MAX_HEADERS];
        let sent = match self.server.handle_request(now, src, payload, &mut headers, reply) {
            Incoming::New { id, request, core, .. } => {
                let method = core.cseq.method;
                self.count(|c| match method {
                    Method::Options => c.rx_options.inc(),
                    Method::Message => c.rx_message.inc(),
                    _ => c.rx_other.inc(),
                });
                if method == Method::Message {
                    if let Some(f) = flows {
                        // Answered later, when the flow completes (poll_transmit).
                        let txn = SipTxn::Udp { port: self.port as u8, id };
                        f.handle(now, Input::SipMessage { txn, msg: &request, raw: payload });
                        return None;
                    }
                }
                let answer = self.policy.answer(&core, &request);
                match self.server.respond(now, id, &answer.response(), reply) {
                    Ok(r) => Some(r),
                    Err(_) => {
                        self.count(|c| c.respond_failed.inc());
                        None
                    }
                }
            }
            Incoming::Retransmission { reply: r } => {
                self.count(|c| {
                    c.retransmissions_absorbed.inc();
                    if r.is_some() {
                        c.responses_resent.inc();
                    }
                });
                r
            }
            Incoming::Rejected { reason, reply: r } => {
                self.count(|c| {
                    match reason {
                        Rejection::Malformed(_) if r.is_some() => c.rejected_malformed.inc(),
                        Rejection::Malformed(_) | Rejection::NotARequest => c.dropped_malformed.inc(),
                        Rejection::NoBranch => c.rejected_no_branch.inc(),
                        Rejection::KeyTooLong => c.rejected_key_too_long.inc(),
                        Rejection::Ack => c.dropped_ack.inc(),
                        Rejection::Cancel => c.rejected_cancel.inc(),
                        Rejection::MethodNotAllowed => c.rejected_method.inc(),
                        Rejection::UnsupportedUriScheme => c.rejected_uri_scheme.inc(),
                        Rejection::TooManyHops => c.rejected_too_many_hops.inc(),
                        // A datagram is read whole: the stream-only refusals are counted
                        // with their nearest kin.
                        Rejection::TooLarge | Rejection::EntityTooLarge => c.rejected_too_large.inc(),
                        Rejection::TableFull | Rejection::NoRoom => c.rejected_table_full.inc(),
                    }
                    if matches!(reason, Rejection::Ack | Rejection::Cancel | Rejection::MethodNotAllowed) {
                        c.rx_other.inc();
                    }
                });
                r
            }
        }?;
        self.count_sent(reply.get(..sent.len).unwrap_or(&[]));
        Some(UdpSend { len: sent.len, to: sent.to })
    }

    /// A datagram from outside `[sip] trusted`: a request is answered 403 without a
    /// transaction (or dropped, as configured), anything else dropped; all counted.
    /// It never reaches the transaction table or the flows.
    fn untrusted(
        &mut self,
        kind: DatagramKind,
        payload: &[u8],
        src: SocketAddrV4,
        reply: &mut [u8],
    ) -> Option<UdpSend> {
        let refuse = self.untrusted == crate::control::config::Untrusted::Refuse && kind == DatagramKind::Request;
        let sent = refuse.then(|| forbidden(payload, reply)).flatten();
        match sent {
            Some(len) => {
                self.count(|c| c.untrusted_refused.inc());
                self.count_sent(reply.get(..len).unwrap_or(&[]));
                Some(UdpSend { len, to: src })
            }
            None => {
                self.count(|c| c.untrusted_dropped.inc());
                None
            }
        }
    }

    fn response(&mut self, flows: Option<&mut Flows>, now: u64, payload: &[u8]) {
        let matched = self.client.handle_response(now, payload);
        let keepalive = self.keepalive_tx;
        self.count(|c| match matched {
            ResponseMatch::Provisional { .. } => c.client_1xx.inc(),
            ResponseMatch::Final { id, status } => {
                if (200..300).contains(&status) {
                    c.client_2xx.inc();
                    if Some(id) == keepalive && status == 200 {
                        c.ka_options_200.inc();
                    }
                } else {
                    c.client_3456xx.inc();
                }
            }
            ResponseMatch::Retransmission { .. } => c.client_absorbed.inc(),
            ResponseMatch::Stray => c.stray_responses.inc(),
            ResponseMatch::Malformed(_) => c.malformed_responses.inc(),
        });
        self.drain_events(flows, now);
    }

    /// Applies the client's outcomes: the keep-alive's ends the next hop's state.
    fn drain_events(&mut self, mut flows: Option<&mut Flows>, now: u64) {
        while let Some(e) = self.client.poll_event() {
            let (id, up) = match e {
                Event::Final { id, status } => {
                    if let (Some(token), Some(f)) = (self.tokens.remove(&id), flows.as_deref_mut()) {
                        f.handle(now, Input::SipFinal { token, status });
                    }
                    (id, (200..300).contains(&status))
                }
                Event::Timeout { id } => {
                    self.count(|c| c.client_timeouts.inc());
                    if let (Some(token), Some(f)) = (self.tokens.remove(&id), flows.as_deref_mut()) {
                        f.handle(now, Input::SipFinal { token, status: 408 });
                    }
                    (id, false)
                }
            };
            if Some(id) == self.keepalive_tx {
                self.keepalive_tx = None;
                self.next_keepalive = self.next_keepalive.max(now);
                self.count(|c| c.next_hop_state.set(if up { 2 } else { 1 }));
            }
        }
    }

    /// Whether the client table can take one more of the flows' requests. With a
    /// keep-alive, the last slot is kept for it, so that a backlog of IMDNs cannot
    /// starve it (and mark a busy next hop down).
    fn client_has_room(&self) -> bool {
        let reserve = usize::from(self.keepalive.is_some() && self.client.capacity() > 1);
        self.client.len().saturating_add(reserve) < self.client.capacity()
    }

    /// Starts the flows' next request, if any and the client table has room. A full
    /// table holds the request in the flows' queue (sent first once Timer K frees a
    /// slot): an IMDN or converted MESSAGE is never failed for want of a slot, since
    /// its receipt or part would be answered with an error while the correlation has
    /// already taken the state (the SMSC's resend is then absorbed and the
    /// notification lost).
    fn originate(&mut self, now_ms: u64, f: &mut Flows) {
        if !f.has_request() {
            return;
        }
        if !self.client_has_room() {
            if !self.blocked {
                self.blocked = true;
                self.count(|c| c.client_table_full.inc());
            }
            return;
        }
        let Some(mut req) = f.poll_request() else { return };
        self.blocked = false;
        // This table's branch (it names the worker, so a response landing on another
        // worker's queue is steered here).
        let branch = self.client.new_branch();
        set_branch(&mut req.bytes, branch.as_str());
        match self.client.start(now_ms, &req.bytes, req.dest) {
            Ok(id) => {
                self.tokens.insert(id, req.token);
                // The client table holds its own copy: the buffer serves the next one.
                f.recycle(req.bytes);
            }
            Err(ClientError::TableFull) => {
                // Not reached while client_has_room holds; kept for safety: hold it.
                self.blocked = true;
                self.count(|c| c.client_table_full.inc());
                f.hold_request(req);
            }
            Err(_) => {
                // The request itself is unusable: retrying would not help.
                self.count(|c| c.client_start_failed.inc());
                f.handle(now_ms, Input::SipFinal { token: req.token, status: 500 });
                f.recycle(req.bytes);
            }
        }
    }

    /// Starts the next keep-alive OPTIONS if one is due and none is in flight.
    fn start_keepalive(&mut self, now: u64) {
        let Some(ka) = self.keepalive else { return };
        if self.keepalive_tx.is_some() || now < self.next_keepalive {
            return;
        }
        self.next_keepalive = now.saturating_add(ka.interval_ms.max(1));
        self.keepalive_seq = self.keepalive_seq.wrapping_add(1);
        let branch = self.client.new_branch();
        let mut buf = [0u8; KEEPALIVE_MAX];
        let built = keepalive_options(&mut buf, self.local, ka.next_hop, branch.as_str(), self.keepalive_seq);
        let started = built.and_then(|n| self.client.start(now, buf.get(..n)?, ka.next_hop).ok());
        match started {
            Some(id) => {
                self.keepalive_tx = Some(id);
                self.count(|c| c.ka_started.inc());
            }
            None => self.count(|c| c.ka_start_failed.inc()),
        }
    }
}

/// Writes the keep-alive OPTIONS (RFC 3261 §11) from `local` to `next_hop` into `out`;
/// its Call-ID is the branch's random part, so every keep-alive is its own call.
pub fn keepalive_options(
    out: &mut [u8],
    local: SocketAddrV4,
    next_hop: SocketAddrV4,
    branch: &str,
    seq: u32,
) -> Option<usize> {
    let id = branch.get(branch.len().saturating_sub(16)..).unwrap_or(branch);
    // The Request-URI is the next hop itself, formatted on the stack.
    let mut uri = [0u8; 40];
    let uri_len = {
        use std::io::Write as _;
        let mut cur = std::io::Cursor::new(&mut uri[..]);
        write!(cur, "sip:{next_hop}").ok()?;
        usize::try_from(cur.position()).ok()?
    };
    let uri = std::str::from_utf8(uri.get(..uri_len)?).ok()?;
    let mut w = MessageWriter::request(out, Method::Options, uri).ok()?;
    w.header_fmt("Via", format_args!("SIP/2.0/UDP {local};branch={branch};rport"))
        .ok()?
        .header_u32("Max-Forwards", 70)
        .ok()?
        .header_fmt("From", format_args!("<sip:iwf@{}>;tag={id}", local.ip()))
        .ok()?
        .header_fmt("To", format_args!("<{uri}>"))
        .ok()?
        .header_fmt("Call-ID", format_args!("ka-{id}@{}", local.ip()))
        .ok()?
        .header_fmt("CSeq", format_args!("{seq} OPTIONS"))
        .ok()?
        .header("Accept", crate::session::sip::ACCEPT)
        .ok()?;
    w.finish(b"").ok()
}

/// The worker drives its SIP service through these three calls, with its engine (`None`:
/// MESSAGEs are answered by the policy, nothing is originated for the flows).
impl SipUdp {
    /// Reads one datagram's payload from `src`; may write a reply payload into `reply`
    /// (the room of a fresh mbuf after the headers) and say where it goes.
    pub fn receive(
        &mut self,
        flows: Option<&mut Flows>,
        now_ms: u64,
        payload: &[u8],
        src: SocketAddrV4,
        reply: &mut [u8],
    ) -> Option<UdpSend> {
        self.receive_classified(flows, classify(payload), now_ms, payload, src, reply)
    }

    /// [`SipUdp::receive`] for a datagram the caller classified already (the worker
    /// does, to steer responses), so that it is classified once.
    pub fn receive_classified(
        &mut self,
        flows: Option<&mut Flows>,
        kind: DatagramKind,
        now_ms: u64,
        payload: &[u8],
        src: SocketAddrV4,
        reply: &mut [u8],
    ) -> Option<UdpSend> {
        if !super::admission::in_cidrs(&self.trusted, *src.ip(), true) {
            return self.untrusted(kind, payload, src, reply);
        }
        match kind {
            DatagramKind::Request => self.request(flows, now_ms, payload, src, reply),
            DatagramKind::Response => {
                self.response(flows, now_ms, payload);
                None
            }
            DatagramKind::KeepAlive => {
                self.count(|c| c.keepalives.inc());
                None
            }
        }
    }

    /// The earliest time [`SipUdp::poll_transmit`] has work; `None` = none.
    pub fn poll_timeout(&self, flows: Option<&Flows>) -> Option<u64> {
        let keepalive = match (self.keepalive, self.keepalive_tx) {
            (Some(_), None) => Some(self.next_keepalive),
            _ => None,
        };
        // Work the flows left for this service: now.
        let port = self.port as u8;
        let flows = flows.and_then(|f| {
            (f.has_udp_answer(port) || (self.originates && f.has_request() && self.client_has_room())).then_some(0)
        });
        [self.server.poll_timeout(), self.client.poll_timeout(), keepalive, flows].into_iter().flatten().min()
    }

    /// Runs what is due at `now_ms` and returns the next datagram to send, written into
    /// `out`. The worker calls it until `None` once [`SipUdp::poll_timeout`] is reached.
    pub fn poll_transmit(&mut self, mut flows: Option<&mut Flows>, now_ms: u64, out: &mut [u8]) -> Option<UdpSend> {
        if self.server.poll_timeout().is_some_and(|t| t <= now_ms) {
            self.server.handle_timeout(now_ms);
        }
        if let Some(f) = flows.as_deref_mut() {
            let port = self.port as u8;
            let answer = f.poll_udp_answer(port);
            if let Some(a) = answer {
                if let SipTxn::Udp { id, .. } = a.txn {
                    if let Some(r) = answer_into(&mut self.server, now_ms, id, a.status, a.reason, a.retry_after, out) {
                        self.count_sent(out.get(..r.len).unwrap_or(&[]));
                        return Some(UdpSend { len: r.len, to: r.to });
                    }
                    self.count(|c| c.respond_failed.inc());
                }
            }
            if self.originates {
                self.originate(now_ms, f);
            }
        }
        self.start_keepalive(now_ms);
        let sent = self.client.poll_transmit(now_ms, out);
        if let Some(t) = sent {
            self.count(|c| if t.retransmission { c.client_retransmissions.inc() } else { c.client_sent.inc() });
        }
        self.drain_events(flows, now_ms);
        sent.map(|t| UdpSend { len: t.len, to: t.dest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::{parse_datagram, MessageWriter};
    use std::net::Ipv4Addr;

    const IWF: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 2), 5060);
    const CORE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);
    const UAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5062);

    fn service(keepalive: bool) -> (SipUdp, Arc<Stats>) {
        let stats = Arc::new(Stats::new(&["converged".to_string()], 1));
        let settings = SipSettings {
            local: IWF,
            server_transactions: 16,
            server_slot_bytes: 1024,
            client_transactions: 4,
            keepalive: keepalive.then_some(KeepAlive { next_hop: CORE, interval_ms: 1000 }),
            owner: 0,
            timer_t1_ms: 500,
            trusted: vec![(Ipv4Addr::new(198, 18, 2, 1), 32)],
            untrusted: crate::control::config::Untrusted::Refuse,
        };
        let route: Route = crate::session::sip::unknown_recipient;
        (SipUdp::new(&settings, route, Arc::clone(&stats), 0, 0), stats)
    }

    fn request(method: &str, branch: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5062;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:+447000200001@ims.lab>;tag=a1\r\nTo: <sip:+447000100001@iwf.ims.lab>\r\n\
Call-ID: {branch}@ims.lab\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 2\r\n\r\nhi"
        )
        .into_bytes()
    }

    fn answer(svc: &mut SipUdp, now: u64, dg: &[u8]) -> Option<(String, SocketAddrV4)> {
        let mut out = [0u8; 1500];
        let s = svc.receive(None, now, dg, UAC, &mut out)?;
        Some((String::from_utf8(out[..s.len].to_vec()).unwrap(), s.to))
    }

    fn sip(stats: &Stats) -> crate::dataplane::counters::SipTotals {
        stats.totals(0).sip
    }

    #[test]
    fn set_branch_replaces_only_the_first_via_branch() {
        let mut r = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKold;rport\r\n\
Via: SIP/2.0/UDP 5.6.7.8;branch=z9hG4bKkeep\r\nContent-Length: 2\r\n\r\nhi"
            .to_vec();
        set_branch(&mut r, "z9hG4bK0001abcdef0123456789");
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("branch=z9hG4bK0001abcdef0123456789;rport\r\n"), "{text}");
        assert!(text.contains("branch=z9hG4bKkeep") && text.ends_with("\r\n\r\nhi"), "{text}");
        let mut r = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKold\r\n\r\n".to_vec();
        set_branch(&mut r, "z9hG4bKnew");
        assert!(String::from_utf8(r).unwrap().contains("branch=z9hG4bKnew\r\n"));
    }

    #[test]
    fn options_message_and_other_methods_are_answered() {
        let (mut svc, stats) = service(false);
        let (r, to) = answer(&mut svc, 0, &request("OPTIONS", "z9hG4bK1", "")).unwrap();
        assert_eq!(to, UAC, "to the Via's port");
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert!(
            r.contains("\r\nAllow: MESSAGE, OPTIONS\r\n") && r.contains("\r\nAccept: message/cpim, text/plain\r\n"),
            "{r}"
        );
        let (r, _) = answer(&mut svc, 0, &request("MESSAGE", "z9hG4bK2", "Content-Type: text/plain\r\n")).unwrap();
        assert!(r.starts_with("SIP/2.0 404 Not Found\r\n"), "{r}");
        let (r, _) = answer(&mut svc, 0, &request("INVITE", "z9hG4bK3", "")).unwrap();
        assert!(r.starts_with("SIP/2.0 405 Method Not Allowed\r\n") && r.contains("Allow: "), "{r}");
        let (r, _) = answer(&mut svc, 0, &request("CANCEL", "z9hG4bK4", "")).unwrap();
        assert!(r.starts_with("SIP/2.0 481 "), "{r}");
        assert_eq!(answer(&mut svc, 0, &request("ACK", "z9hG4bK5", "")), None);
        let c = sip(&stats);
        assert_eq!((c.rx_options, c.rx_message, c.rx_other), (1, 1, 3));
        assert_eq!((c.tx_2xx, c.tx_4xx), (1, 3));
        assert_eq!((c.rejected_method, c.rejected_cancel, c.dropped_ack), (1, 1, 1));
        // Every reply parses.
        let (r, _) = answer(&mut svc, 0, &request("OPTIONS", "z9hG4bK6", "")).unwrap();
        let mut h = [Header::EMPTY; 32];
        let m = parse_datagram(r.as_bytes(), &mut h).unwrap();
        assert_eq!(m.status_code(), Some(200));
        assert!(m.to().unwrap().tag().is_some(), "a To tag");
    }

    #[test]
    fn untrusted_sources_are_refused_before_a_transaction() {
        let (mut svc, stats) = service(false);
        let stranger = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 9), 5062);
        let mut out = [0u8; 1500];
        let msg = request("MESSAGE", "z9hG4bKx1", "Content-Type: text/plain\r\n");
        let sent = svc.receive(None, 0, &msg, stranger, &mut out).expect("a 403");
        assert_eq!(sent.to, stranger, "back to the sender, whatever its Via says");
        let r = std::str::from_utf8(&out[..sent.len]).unwrap();
        assert!(r.starts_with("SIP/2.0 403 Forbidden\r\n"), "{r}");
        assert_eq!(svc.server().len(), 0, "no transaction spent on it");
        // A response and a keep-alive from there are dropped.
        assert!(svc.receive(None, 0, &ok_to(&msg), stranger, &mut out).is_none());
        assert!(svc.receive(None, 0, b"\r\n\r\n", stranger, &mut out).is_none());
        let c = sip(&stats);
        assert_eq!((c.untrusted_refused, c.untrusted_dropped, c.rx_message, c.tx_4xx), (1, 2, 0, 1));
        // The trusted core is served as before.
        let (r, _) = answer(&mut svc, 0, &msg).unwrap();
        assert!(r.starts_with("SIP/2.0 404 "), "{r}");
        assert_eq!(svc.server().len(), 1);
        // Configured to drop, the stranger hears nothing.
        svc.untrusted = crate::control::config::Untrusted::Drop;
        assert!(svc.receive(None, 0, &request("OPTIONS", "z9hG4bKx2", ""), stranger, &mut out).is_none());
        assert_eq!(sip(&stats).untrusted_dropped, 3);
    }

    #[test]
    fn retransmissions_get_the_stored_response() {
        let (mut svc, stats) = service(false);
        let req = request("MESSAGE", "z9hG4bKre", "Content-Type: text/plain\r\n");
        let first = answer(&mut svc, 10, &req).unwrap();
        let again = answer(&mut svc, 500, &req).unwrap();
        assert_eq!(first, again, "byte for byte");
        let c = sip(&stats);
        assert_eq!((c.rx_message, c.retransmissions_absorbed, c.responses_resent, c.tx_4xx), (1, 1, 1, 2));
        assert_eq!(svc.server().len(), 1);
        // Timer J frees it, through the timer path.
        let j = svc.poll_timeout(None).unwrap();
        assert_eq!(j, 10 + 32_000);
        let mut out = [0u8; 1500];
        assert_eq!(svc.poll_transmit(None, j, &mut out), None);
        assert!(svc.server().is_empty());
        assert_eq!(svc.poll_timeout(None), None);
    }

    #[test]
    fn malformed_requests_are_counted_by_outcome() {
        let (mut svc, stats) = service(false);
        assert_eq!(answer(&mut svc, 0, b"\x00\xffgarbage that is not SIP\x01"), None);
        assert_eq!(answer(&mut svc, 0, b"\r\n\r\n"), None);
        // Parses, fails validation (no CSeq): a stateless 400 is impossible without CSeq.
        let no_cseq = String::from_utf8(request("OPTIONS", "z9hG4bK9", "")).unwrap().replace("CSeq: 1 OPTIONS\r\n", "");
        assert_eq!(answer(&mut svc, 0, no_cseq.as_bytes()), None);
        // A bad Max-Forwards: 400 with a Warning.
        let bad = String::from_utf8(request("OPTIONS", "z9hG4bK8", ""))
            .unwrap()
            .replace("Max-Forwards: 70", "Max-Forwards: x");
        let (r, _) = answer(&mut svc, 0, bad.as_bytes()).unwrap();
        assert!(r.starts_with("SIP/2.0 400 Bad Request\r\n") && r.contains("Warning: 399 iwf"), "{r}");
        // No RFC 3261 branch: 400.
        let (r, _) = answer(&mut svc, 0, &request("OPTIONS", "old", "")).unwrap();
        assert!(r.starts_with("SIP/2.0 400 "), "{r}");
        let c = sip(&stats);
        assert_eq!((c.dropped_malformed, c.rejected_malformed, c.rejected_no_branch, c.keepalives), (2, 1, 1, 1));
        assert!(svc.server().is_empty(), "no table space for rejects");
    }

    /// A 200 to `request` (its Via, From, To, Call-ID and CSeq copied).
    fn ok_to(request: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(request);
        let mut r = String::from("SIP/2.0 200 OK\r\n");
        for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
            if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"].iter().any(|h| line.starts_with(h)) {
                r.push_str(line);
                r.push_str("\r\n");
            }
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        r.into_bytes()
    }

    #[test]
    fn a_full_client_table_holds_the_flows_requests_until_a_slot_frees() {
        use crate::flow::{FlowsConfig, Shared, SmppOut};
        use crate::wire::smpp::{Address, Body, CommandStatus, Pdu, RegisteredDelivery, SubmitSm};
        const SMSCA: crate::ids::ConnRef = crate::ids::ConnRef::new(0, 5);
        const MESSAGES: u32 = 7;
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let provision = crate::control::provision::Provision::parse(&text).unwrap();
        let shared = Arc::new(Shared::new(provision, 1, None).unwrap());
        let config = FlowsConfig {
            core: 0,
            next_hop: CORE,
            local_sent_by: IWF.to_string(),
            parts_aside: 64,
            reassembly: (1024, 1 << 20),
            max_sip_message: 1 << 20,
            mm4_clients: Vec::new(),
        };
        let mut flows = Flows::new(config, Arc::clone(&shared));
        flows.bound(SMSCA, 1, true);
        // Legacy messages from smsc-a: each becomes one SIP MESSAGE of the flows, and
        // its submit_sm is answered after that MESSAGE's final response.
        for seq in 1..=MESSAGES {
            let sm = SubmitSm {
                source: Address::international(b"447000100001"),
                destination: Address::international(b"447900000001"),
                registered_delivery: RegisteredDelivery(1),
                short_message: b"hello",
                ..SubmitSm::default()
            };
            let pdu = Pdu::new(seq, Body::SubmitSm(sm));
            let mut buf = vec![0u8; pdu.buffer_len()];
            pdu.emit(&mut buf).unwrap();
            flows.smpp_request(0, unix_now(), SMSCA, seq, &Pdu::parse(&buf).unwrap());
        }
        // A client table of 4: the flows' requests outnumber it.
        let (svc, stats) = service(false);
        let mut svc = svc.originating(true);
        let mut out = [0u8; 1500];
        let mut first_sends = Vec::new();
        let mut now = 0;
        while now <= 30_000 {
            assert!(svc.client().len() <= svc.client().capacity());
            while let Some(s) = svc.poll_transmit(Some(&mut flows), now, &mut out) {
                let request = out[..s.len].to_vec();
                if request.starts_with(b"MESSAGE ") {
                    first_sends.push(now);
                    // The UA answers at once; the transaction holds its slot for Timer K.
                    let _ = svc.receive(Some(&mut flows), now, &ok_to(&request), CORE, &mut [0u8; 1500]);
                }
            }
            now += 50;
        }
        let c = sip(&stats);
        assert_eq!(c.client_sent, u64::from(MESSAGES), "every request sent, first sends at {first_sends:?}");
        assert_eq!(c.client_2xx, u64::from(MESSAGES));
        assert!(first_sends.iter().any(|&t| t >= 5_000), "some waited for Timer K: {first_sends:?}");
        assert_eq!(c.client_table_full, 1, "one episode of a full table");
        assert_eq!(c.client_start_failed, 0);
        // Every submit_sm answered ESME_ROK (none throttled for want of a slot).
        let f = &mut flows;
        let mut answered = Vec::new();
        while let Some((conn, out)) = f.poll_smpp(0) {
            let SmppOut::Respond { seq, status, .. } = out else { panic!("{out:?}") };
            assert_eq!((conn, status), (SMSCA, CommandStatus::ESME_ROK), "seq {seq}");
            answered.push(seq);
        }
        answered.sort_unstable();
        assert_eq!(answered, (1..=MESSAGES).collect::<Vec<_>>());
        assert_eq!(f.requests_waiting(), 0);
    }

    #[test]
    fn table_full_is_a_503() {
        let (mut svc, stats) = service(false);
        for i in 0..16 {
            answer(&mut svc, 0, &request("OPTIONS", &format!("z9hG4bKf{i}"), "")).unwrap();
        }
        let (r, _) = answer(&mut svc, 0, &request("OPTIONS", "z9hG4bKfull", "")).unwrap();
        assert!(r.starts_with("SIP/2.0 503 ") && r.contains("Retry-After: 5"), "{r}");
        assert_eq!(sip(&stats).rejected_table_full, 1);
    }

    /// The next hop's answer to a keep-alive OPTIONS.
    fn reply_to(options: &[u8], status: u16) -> Vec<u8> {
        let mut h = [Header::EMPTY; 32];
        let m = parse_datagram(options, &mut h).unwrap();
        let mut out = [0u8; 1500];
        let w = MessageWriter::response_to(&mut out, &m, status, "Whatever", Some("core1")).unwrap();
        let n = w.finish(b"").unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn keepalive_marks_the_next_hop_up_then_down_at_timer_f() {
        let (mut svc, stats) = service(true);
        let mut out = [0u8; 1500];
        assert_eq!(svc.poll_timeout(None), Some(0), "the first keep-alive is due at once");
        let s = svc.poll_transmit(None, 0, &mut out).unwrap();
        assert_eq!(s.to, CORE);
        let options = out[..s.len].to_vec();
        let text = String::from_utf8(options.clone()).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK"),
            "{text}"
        );
        assert!(text.contains("\r\nCSeq: 1 OPTIONS\r\n") && text.contains(";rport\r\n"), "{text}");
        let mut h = [Header::EMPTY; 32];
        parse_datagram(&options, &mut h).unwrap().validate().unwrap();
        assert_eq!(svc.poll_transmit(None, 0, &mut out), None);
        assert_eq!(sip(&stats).next_hop_state, 0, "not known yet");
        // Timer E: a retransmission at T1, answered 200.
        assert_eq!(svc.poll_timeout(None), Some(500));
        let s = svc.poll_transmit(None, 500, &mut out).unwrap();
        assert_eq!(&out[..s.len], &options[..], "the same request");
        assert_eq!(svc.receive(None, 600, &reply_to(&options, 200), CORE, &mut out), None);
        let c = sip(&stats);
        assert_eq!(
            (c.ka_started, c.client_sent, c.client_retransmissions, c.client_2xx, c.ka_options_200),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(c.next_hop_state, 2, "up");
        assert!(stats.totals(0).line().contains(" sip.next_hop_up=1"));
        // A response retransmission is absorbed; a response to nothing is stray.
        svc.receive(None, 700, &reply_to(&options, 200), CORE, &mut out);
        let other = String::from_utf8(options.clone()).unwrap().replace("branch=z9hG4bK", "branch=z9hG4bKx");
        svc.receive(None, 700, &reply_to(other.as_bytes(), 200), CORE, &mut out);
        let c = sip(&stats);
        assert_eq!((c.client_absorbed, c.stray_responses), (1, 1));
        // The next keep-alive at interval (1000); nobody answers: E at 500, 1000, 2000,
        // 4000, 4000, ... then F at 64*T1.
        assert_eq!(svc.poll_timeout(None), Some(1000));
        let s = svc.poll_transmit(None, 1000, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out[..s.len]).contains("CSeq: 2 OPTIONS"));
        let mut now = 1000;
        let mut retransmissions = 0;
        while let Some(t) = svc.poll_timeout(None) {
            if t > 1000 + 32_000 {
                break;
            }
            now = t;
            while svc.poll_transmit(None, now, &mut out).is_some() {
                retransmissions += 1;
            }
            if sip(&stats).client_timeouts > 0 {
                break;
            }
        }
        assert_eq!(now, 1000 + 32_000, "Timer F");
        assert_eq!(retransmissions, 10);
        let c = sip(&stats);
        assert_eq!((c.client_timeouts, c.next_hop_state, c.ka_started), (1, 1, 2));
        assert!(stats.totals(0).line().contains(" sip.next_hop_up=0"));
        // And keep-alives go on.
        assert_eq!(svc.poll_timeout(None).map(|t| t <= now + 5000), Some(true));
        let s = svc.poll_transmit(None, now, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out[..s.len]).contains("CSeq: 3 OPTIONS"));
    }

    #[test]
    fn a_final_error_marks_the_next_hop_down() {
        let (mut svc, stats) = service(true);
        let mut out = [0u8; 1500];
        let s = svc.poll_transmit(None, 0, &mut out).unwrap();
        let options = out[..s.len].to_vec();
        svc.receive(None, 5, &reply_to(&options, 503), CORE, &mut out);
        let c = sip(&stats);
        assert_eq!((c.client_3456xx, c.ka_options_200, c.next_hop_state), (1, 0, 1));
    }

    #[test]
    fn without_keepalive_nothing_is_originated() {
        let (mut svc, _) = service(false);
        let mut out = [0u8; 1500];
        assert_eq!(svc.poll_timeout(None), None);
        assert_eq!(svc.poll_transmit(None, 100, &mut out), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_datagrams(dgs in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 1..16)) {
            let (mut svc, _) = service(true);
            let mut out = [0u8; 1500];
            for (i, d) in dgs.iter().enumerate() {
                let _ = svc.receive(None, i as u64 * 300, d, UAC, &mut out);
                while svc.poll_transmit(None, i as u64 * 300, &mut out).is_some() {}
            }
        }
    }
}
