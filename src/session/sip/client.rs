//! Client (UAC) non-INVITE transactions over UDP (RFC 3261 §17.1.2), for
//! iwf's own MESSAGEs (IMDNs, converted messages).
//!
//! ```text
//!                    |start: first send, Timer E = T1, Timer F = 64*T1
//!                    V
//!  Timer E     +-----------+  Timer F: Event::Timeout
//!  resend,     |  Trying   |------------------------------> freed
//!  E=min(2E,T2)+-----------+
//!                |1xx     |200-699: Event::Final, Timer K = T4
//!                V        |
//!  Timer E   +-----------+|  Timer F: Event::Timeout
//!  resend,   | Proceeding|+-----------------------------> freed
//!  E = T2    +-----------+|
//!                |200-699 |
//!                V        V
//!            +-----------+
//!  response  | Completed |  Timer K: freed
//!  absorbed  +-----------+
//! ```
//!
//! Matching (§17.1.3): the top Via branch and the CSeq method.
//! [`ClientTransactions::poll_transmit`] drives every timer: call it until it
//! returns `None` after any input and whenever
//! [`ClientTransactions::poll_timeout`] is reached, then drain
//! [`ClientTransactions::poll_event`].

use std::fmt;
use std::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher13;

use super::table::{SlotRef, Table, KEY_MAX};
use super::{transaction_key, Tag, Timers};
use crate::wire::sip::{Error, Header, Method, Parser, Status, BRANCH_MAGIC_COOKIE};

/// Most header fields a response may have to be matched.
const RESPONSE_HEADERS_MAX: usize = 64;

/// Client table configuration.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    /// Transactions held at once (the table never grows).
    pub capacity: usize,
    /// Largest request stored for retransmission (bytes). RFC 3261 §18.1.1
    /// sends requests over 1300 bytes by TCP, so 1500 is plenty for UDP.
    pub slot_len: usize,
    /// T1/T2/T4.
    pub timers: Timers,
    /// Secret for the hash index and [`ClientTransactions::new_branch`].
    pub secret: [u64; 2],
    /// Written into every [`ClientTransactions::new_branch`] (e.g. the lcore
    /// that owns this table), so that a response landing on another core can
    /// be steered to its owner with [`branch_owner`].
    pub owner: u16,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            capacity: 4096,
            slot_len: 1500,
            timers: Timers::RFC3261,
            secret: [0x6977_665f_7561_635f, 0x6272_616e_6368_6573],
            owner: 0,
        }
    }
}

/// A client transaction, valid until its entry is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientTxId(SlotRef);

/// Why [`ClientTransactions::start`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The request does not parse, or lacks its top Via or CSeq.
    Malformed(Error),
    /// Not a request.
    NotARequest,
    /// INVITE or ACK: not a non-INVITE transaction.
    UnsupportedMethod,
    /// Top Via without an RFC 3261 branch.
    NoBranch,
    /// Branch longer than the key limit.
    BranchTooLong,
    /// A transaction with this branch and method is live.
    DuplicateBranch,
    /// Request larger than [`ClientConfig::slot_len`].
    TooLarge,
    /// Table full: back off (SMPP throttling, lane back-pressure).
    TableFull,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Malformed(e) => write!(f, "malformed request: {e}"),
            ClientError::NotARequest => f.write_str("not a request"),
            ClientError::UnsupportedMethod => f.write_str("INVITE/ACK are not non-INVITE requests"),
            ClientError::NoBranch => f.write_str("top Via has no RFC 3261 branch"),
            ClientError::BranchTooLong => f.write_str("Via branch too long"),
            ClientError::DuplicateBranch => f.write_str("a transaction with this branch is live"),
            ClientError::TooLarge => f.write_str("request larger than the transaction slot"),
            ClientError::TableFull => f.write_str("client transaction table full"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A datagram to send, written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The transaction it belongs to.
    pub id: ClientTxId,
    /// Destination.
    pub dest: SocketAddrV4,
    /// Bytes written at the front of `out`.
    pub len: usize,
    /// `false` for the first send, `true` for Timer E retransmissions.
    pub retransmission: bool,
}

/// What [`ClientTransactions::handle_response`] made of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMatch {
    /// 1xx: the transaction is Proceeding.
    Provisional {
        /// The transaction.
        id: ClientTxId,
        /// Status code.
        status: u16,
    },
    /// The first final response: the transaction completed and
    /// [`Event::Final`] is queued.
    Final {
        /// The transaction.
        id: ClientTxId,
        /// Status code.
        status: u16,
    },
    /// A response to a completed transaction: absorbed.
    Retransmission {
        /// The transaction.
        id: ClientTxId,
    },
    /// No live transaction has this branch and method: dropped (§17.1.3).
    Stray,
    /// Not a parseable response, or no top Via branch / CSeq: dropped.
    Malformed(Error),
}

/// Transaction outcomes for the application, from
/// [`ClientTransactions::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A final response arrived.
    Final {
        /// The transaction.
        id: ClientTxId,
        /// Status code, 200..=699.
        status: u16,
    },
    /// Timer F fired with no final response (RFC 3261 §17.1.2.2; treat as 408).
    Timeout {
        /// The transaction.
        id: ClientTxId,
    },
}

/// Client-side counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Transactions started.
    pub started: u64,
    /// `start` refused with [`ClientError::TableFull`].
    pub table_full: u64,
    /// First sends.
    pub transmissions: u64,
    /// Timer E retransmissions.
    pub retransmissions: u64,
    /// Sends skipped because `out` was too small (retried at the next E).
    pub transmit_buffer_too_small: u64,
    /// Provisional responses matched.
    pub provisional: u64,
    /// Final responses completing a transaction.
    pub finals: u64,
    /// Response retransmissions absorbed in Completed.
    pub responses_absorbed: u64,
    /// Responses matching no transaction.
    pub stray_responses: u64,
    /// Unparseable responses.
    pub malformed_responses: u64,
    /// Timer F timeouts.
    pub timeouts: u64,
    /// Completed transactions freed by Timer K.
    pub terminated: u64,
    /// Events lost because the application did not poll them.
    pub events_dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug)]
struct ClientTx {
    phase: Phase,
    dest: SocketAddrV4,
    len: usize,
    /// Delay before the next send; 0 before the first send.
    delay: u64,
    send_at: u64,
    f_at: u64,
    k_at: u64,
}

impl ClientTx {
    fn deadline(&self) -> u64 {
        match self.phase {
            Phase::Completed => self.k_at,
            _ => self.send_at.min(self.f_at),
        }
    }
}

/// Length of a [`Branch`]: the cookie, 4 hex digits of owner, 16 of id.
const BRANCH_LEN: usize = 27;

/// A branch made by [`ClientTransactions::new_branch`]: the magic cookie, the
/// table's [`ClientConfig::owner`] in 4 hex digits, and 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Branch([u8; BRANCH_LEN]);

/// The owner written into a branch by [`ClientTransactions::new_branch`];
/// `None` for a branch of any other shape. Lets the packet path steer a
/// response (whose top Via carries the branch) to the core whose table sent
/// the request.
pub fn branch_owner(branch: &str) -> Option<u16> {
    let b = branch.as_bytes();
    if b.len() != BRANCH_LEN || !branch.starts_with(BRANCH_MAGIC_COOKIE) {
        return None;
    }
    let hex = b.get(BRANCH_MAGIC_COOKIE.len()..)?;
    if !hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let owner = branch.get(BRANCH_MAGIC_COOKIE.len()..BRANCH_MAGIC_COOKIE.len() + 4)?;
    u16::from_str_radix(owner, 16).ok()
}

/// The owner ([`branch_owner`]) of the branch in a response's top Via, for
/// steering the response to the core whose client table sent the request.
/// Parses the header section (no allocation); `None` if that fails or the
/// branch is not one [`ClientTransactions::new_branch`] made.
pub fn response_owner(datagram: &[u8]) -> Option<u16> {
    let mut headers = [Header::EMPTY; RESPONSE_HEADERS_MAX];
    let msg = match Parser::datagram().parse(datagram, &mut headers) {
        Ok(Status::Complete(_, m)) => m,
        _ => return None,
    };
    branch_owner(msg.top_via().ok()?.branch()?)
}

impl Branch {
    /// The branch text (`z9hG4bK` + 4 + 16 hex digits).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or(BRANCH_MAGIC_COOKIE)
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounded FIFO of events, allocated once.
type EventQueue = crate::session::BoundedFifo<Event>;

/// The client transaction table (RFC 3261 §17.1.2 over UDP).
#[derive(Debug)]
pub struct ClientTransactions {
    table: Table<ClientTx>,
    config: ClientConfig,
    events: EventQueue,
    branches: SipHasher13,
    branch_seq: u64,
    counters: ClientCounters,
}

impl ClientTransactions {
    /// A table of `config.capacity` transactions; all storage is allocated here.
    pub fn new(config: ClientConfig) -> Self {
        ClientTransactions {
            table: Table::new(config.capacity, config.slot_len, config.secret),
            events: EventQueue::new(config.capacity.saturating_mul(2)),
            branches: SipHasher13::new_with_keys(config.secret[1] ^ 0x6272_616e_6368, config.secret[0].rotate_left(29)),
            branch_seq: 0,
            config,
            counters: ClientCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No live transactions?
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// A fresh branch for a request this table will send (unique per table
    /// for 2^64 calls, unpredictable without the secret).
    pub fn new_branch(&mut self) -> Branch {
        let mut h = self.branches;
        h.write_u64(self.branch_seq);
        self.branch_seq = self.branch_seq.wrapping_add(1);
        let id = Tag::from_u64(h.finish());
        let owner = Tag::from_u64(u64::from(self.config.owner));
        let mut b = [0u8; BRANCH_LEN];
        let (cookie, rest) = b.split_at_mut(BRANCH_MAGIC_COOKIE.len());
        cookie.copy_from_slice(BRANCH_MAGIC_COOKIE.as_bytes());
        let (o, hex) = rest.split_at_mut(4);
        o.copy_from_slice(owner.as_str().as_bytes().get(12..).unwrap_or(b"0000"));
        hex.copy_from_slice(id.as_str().as_bytes());
        Branch(b)
    }

    /// Start a transaction for `request` (a whole SIP request; its top Via
    /// branch and CSeq method become the key) towards `dest`. The first send
    /// comes out of the next [`ClientTransactions::poll_transmit`].
    pub fn start(&mut self, now: u64, request: &[u8], dest: SocketAddrV4) -> Result<ClientTxId, ClientError> {
        if request.len() > self.table.data_len() {
            return Err(ClientError::TooLarge);
        }
        let mut headers = [Header::EMPTY; RESPONSE_HEADERS_MAX];
        let msg = match Parser::datagram().parse(request, &mut headers) {
            Ok(Status::Complete(_, m)) => m,
            Ok(Status::Partial) => return Err(ClientError::Malformed(Error::Truncated)),
            Err(e) => return Err(ClientError::Malformed(e)),
        };
        let method = msg.method().ok_or(ClientError::NotARequest)?;
        if method == Method::Invite || method == Method::Ack {
            return Err(ClientError::UnsupportedMethod);
        }
        let via = msg.top_via().map_err(ClientError::Malformed)?;
        let cseq = msg.cseq().map_err(ClientError::Malformed)?;
        if cseq.method != method {
            return Err(ClientError::Malformed(Error::CSeqMethodMismatch));
        }
        let branch = via.rfc3261_branch().ok_or(ClientError::NoBranch)?;
        let mut key_buf = [0u8; KEY_MAX];
        let key = transaction_key(&mut key_buf, branch, None, method).ok_or(ClientError::BranchTooLong)?;
        if self.table.find(key).is_some() {
            return Err(ClientError::DuplicateBranch);
        }
        let f_at = now.saturating_add(self.config.timers.timer_f());
        let state = ClientTx { phase: Phase::Trying, dest, len: request.len(), delay: 0, send_at: now, f_at, k_at: 0 };
        let Some(r) = self.table.insert(key, state) else {
            self.counters.table_full += 1;
            return Err(ClientError::TableFull);
        };
        if let Some((_, data)) = self.table.entry_mut(r) {
            if let Some(dst) = data.get_mut(..request.len()) {
                dst.copy_from_slice(request);
            }
        }
        self.table.set_timer(r.slot, now);
        self.counters.started += 1;
        Ok(ClientTxId(r))
    }

    /// The earliest time [`ClientTransactions::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.table.next_timer().map(|(at, _)| at)
    }

    /// Run the timers due at `now` (Timer F → [`Event::Timeout`], Timer K →
    /// freed) and return the next datagram due (first send or Timer E
    /// retransmission), written into `out`. Call until `None`.
    pub fn poll_transmit(&mut self, now: u64, out: &mut [u8]) -> Option<Transmit> {
        let timers = self.config.timers;
        loop {
            let (at, slot) = self.table.next_timer()?;
            if at > now {
                return None;
            }
            let Some(r) = self.table.slot_ref(slot) else {
                // A timer on a free slot cannot exist; drop it defensively.
                self.table.remove(slot);
                continue;
            };
            let (tx, data) = self.table.entry_mut(r)?;
            if tx.phase == Phase::Completed {
                self.counters.terminated += 1;
                self.table.remove(slot);
                continue;
            }
            if tx.f_at <= now {
                self.counters.timeouts += 1;
                self.table.remove(slot);
                self.push_event(Event::Timeout { id: ClientTxId(r) });
                continue;
            }
            // Timer E (or the first send).
            let retransmission = tx.delay > 0;
            tx.delay = match (tx.phase, retransmission) {
                (_, false) => timers.t1,
                (Phase::Proceeding, true) => timers.t2,
                (_, true) => tx.delay.saturating_mul(2).min(timers.t2),
            };
            tx.send_at = now.saturating_add(tx.delay);
            let (dest, len, deadline) = (tx.dest, tx.len, tx.deadline());
            let sent = match (data.get(..len), out.get_mut(..len)) {
                (Some(src), Some(dst)) => {
                    dst.copy_from_slice(src);
                    true
                }
                _ => false,
            };
            self.table.set_timer(slot, deadline);
            if !sent {
                self.counters.transmit_buffer_too_small += 1;
                continue;
            }
            if retransmission {
                self.counters.retransmissions += 1;
            } else {
                self.counters.transmissions += 1;
            }
            return Some(Transmit { id: ClientTxId(r), dest, len, retransmission });
        }
    }

    fn push_event(&mut self, e: Event) {
        if !self.events.push(e) {
            self.counters.events_dropped += 1;
        }
    }

    /// The next transaction outcome.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Take a response datagram and match it to a transaction by its top Via
    /// branch and CSeq method (RFC 3261 §17.1.3).
    pub fn handle_response(&mut self, now: u64, datagram: &[u8]) -> ResponseMatch {
        let mut headers = [Header::EMPTY; RESPONSE_HEADERS_MAX];
        let msg = match Parser::datagram().parse(datagram, &mut headers) {
            Ok(Status::Complete(_, m)) => m,
            Ok(Status::Partial) => return self.malformed(Error::Truncated),
            Err(e) => return self.malformed(e),
        };
        let Some(status) = msg.status_code() else {
            return self.malformed(Error::BadStatusCode);
        };
        let via = match msg.top_via() {
            Ok(v) => v,
            Err(e) => return self.malformed(e),
        };
        let cseq = match msg.cseq() {
            Ok(c) => c,
            Err(e) => return self.malformed(e),
        };
        let mut key_buf = [0u8; KEY_MAX];
        let found = via
            .rfc3261_branch()
            .and_then(|b| transaction_key(&mut key_buf, b, None, cseq.method))
            .and_then(|key| self.table.find(key));
        let Some(r) = found else {
            self.counters.stray_responses += 1;
            return ResponseMatch::Stray;
        };
        let id = ClientTxId(r);
        let k = self.config.timers.timer_k();
        let Some(tx) = self.table.get_mut(r) else {
            self.counters.stray_responses += 1;
            return ResponseMatch::Stray;
        };
        match (tx.phase, status) {
            (Phase::Completed, _) => {
                self.counters.responses_absorbed += 1;
                ResponseMatch::Retransmission { id }
            }
            (_, 100..=199) => {
                tx.phase = Phase::Proceeding;
                self.counters.provisional += 1;
                ResponseMatch::Provisional { id, status }
            }
            _ => {
                tx.phase = Phase::Completed;
                tx.k_at = now.saturating_add(k);
                let deadline = tx.deadline();
                self.table.set_timer(r.slot, deadline);
                self.counters.finals += 1;
                self.push_event(Event::Final { id, status });
                ResponseMatch::Final { id, status }
            }
        }
    }

    fn malformed(&mut self, e: Error) -> ResponseMatch {
        self.counters.malformed_responses += 1;
        ResponseMatch::Malformed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);

    fn message(branch: &str) -> Vec<u8> {
        format!(
            "MESSAGE sip:+447000200001@ims.lab SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.2.2:5060;branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:+447000100001@iwf.ims.lab>;tag=i1\r\nTo: <sip:+447000200001@ims.lab>\r\n\
Call-ID: {branch}@iwf\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
        .into_bytes()
    }

    fn response(branch: &str, status: u16, method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch={branch}\r\n\
From: <sip:+447000100001@iwf.ims.lab>;tag=i1\r\nTo: <sip:+447000200001@ims.lab>;tag=r\r\n\
Call-ID: {branch}@iwf\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Send times from `from` to `to` (ms) polling every millisecond.
    fn sends(uac: &mut ClientTransactions, from: u64, to: u64) -> Vec<u64> {
        let mut out = [0u8; 1500];
        let mut v = Vec::new();
        for now in from..=to {
            while let Some(t) = uac.poll_transmit(now, &mut out) {
                assert_eq!(t.dest, DEST);
                v.push(now);
            }
        }
        v
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_times_out() {
        let mut uac = ClientTransactions::new(ClientConfig::default());
        let req = message("z9hG4bKe1");
        let id = uac.start(0, &req, DEST).unwrap();
        let mut out = [0u8; 1500];
        let t = uac.poll_transmit(0, &mut out).unwrap();
        assert_eq!((t.id, t.len, t.retransmission), (id, req.len(), false));
        assert_eq!(&out[..t.len], &req[..]);
        assert_eq!(uac.poll_timeout(), Some(500));
        let times = sends(&mut uac, 1, 32_000);
        assert_eq!(times, [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert_eq!(uac.poll_event(), Some(Event::Timeout { id }));
        assert_eq!(uac.poll_event(), None);
        assert!(uac.is_empty());
        let c = uac.counters();
        assert_eq!((c.transmissions, c.retransmissions, c.timeouts), (1, 10, 1));
    }

    #[test]
    fn provisional_switches_to_t2_and_final_completes() {
        let mut uac = ClientTransactions::new(ClientConfig::default());
        let id = uac.start(0, &message("z9hG4bKp1"), DEST).unwrap();
        assert_eq!(sends(&mut uac, 0, 600), [0, 500]);
        assert_eq!(
            uac.handle_response(700, &response("z9hG4bKp1", 100, "MESSAGE")),
            ResponseMatch::Provisional { id, status: 100 }
        );
        // E already armed for 1500 fires there, then every T2.
        assert_eq!(sends(&mut uac, 601, 10_000), [1500, 5500, 9500]);
        assert_eq!(
            uac.handle_response(10_000, &response("z9hG4bKp1", 200, "MESSAGE")),
            ResponseMatch::Final { id, status: 200 }
        );
        assert_eq!(uac.poll_event(), Some(Event::Final { id, status: 200 }));
        // Completed: no more sends; duplicates absorbed until Timer K.
        assert_eq!(
            uac.handle_response(12_000, &response("z9hG4bKp1", 200, "MESSAGE")),
            ResponseMatch::Retransmission { id }
        );
        assert_eq!(uac.poll_timeout(), Some(15_000));
        assert_eq!(sends(&mut uac, 10_001, 15_000), Vec::<u64>::new());
        assert!(uac.is_empty());
        assert_eq!(uac.handle_response(15_001, &response("z9hG4bKp1", 200, "MESSAGE")), ResponseMatch::Stray);
        let c = *uac.counters();
        assert_eq!((c.provisional, c.finals, c.responses_absorbed, c.terminated, c.stray_responses), (1, 1, 1, 1, 1));
        assert_eq!(uac.poll_event(), None);
    }

    #[test]
    fn matching_needs_branch_and_method() {
        let mut uac = ClientTransactions::new(ClientConfig::default());
        let id = uac.start(0, &message("z9hG4bKm1"), DEST).unwrap();
        assert_eq!(uac.handle_response(1, &response("z9hG4bKm1", 200, "OPTIONS")), ResponseMatch::Stray);
        assert_eq!(uac.handle_response(1, &response("z9hG4bKm2", 200, "MESSAGE")), ResponseMatch::Stray);
        assert_eq!(
            uac.handle_response(1, b"SIP/2.0 200 OK\r\nCSeq: 1 MESSAGE\r\n\r\n"),
            ResponseMatch::Malformed(Error::MissingHeader("Via"))
        );
        assert_eq!(uac.handle_response(1, &message("z9hG4bKm1")), ResponseMatch::Malformed(Error::BadStatusCode));
        assert_eq!(
            uac.handle_response(1, &response("z9hG4bKm1", 404, "MESSAGE")),
            ResponseMatch::Final { id, status: 404 }
        );
    }

    #[test]
    fn start_refusals_and_table_full() {
        let mut uac = ClientTransactions::new(ClientConfig { capacity: 1, slot_len: 400, ..ClientConfig::default() });
        let b = uac.new_branch();
        assert!(b.as_str().starts_with("z9hG4bK0000") && b.as_str().len() == 27);
        assert_eq!(branch_owner(b.as_str()), Some(0));
        assert_ne!(uac.new_branch(), b);
        uac.start(0, &message(b.as_str()), DEST).unwrap();
        assert_eq!(uac.start(0, &message(b.as_str()), DEST), Err(ClientError::DuplicateBranch));
        assert_eq!(uac.start(0, &message("z9hG4bKother"), DEST), Err(ClientError::TableFull));
        assert_eq!(uac.counters().table_full, 1);
        assert_eq!(uac.start(0, &message("abc"), DEST), Err(ClientError::NoBranch));
        assert_eq!(uac.start(0, &[b'x'; 401], DEST), Err(ClientError::TooLarge));
        let invite = String::from_utf8(message("z9hG4bKi")).unwrap().replace("MESSAGE", "INVITE");
        assert_eq!(uac.start(0, invite.as_bytes(), DEST), Err(ClientError::UnsupportedMethod));
        assert_eq!(uac.start(0, &response("z9hG4bKr", 200, "MESSAGE"), DEST), Err(ClientError::NotARequest));
        assert_eq!(uac.start(0, b"MESSAGE sip:a SIP/2.0\r\n", DEST), Err(ClientError::Malformed(Error::Truncated)));
    }

    #[test]
    fn branches_carry_their_owner() {
        let mut uac = ClientTransactions::new(ClientConfig { owner: 0xbeef, ..ClientConfig::default() });
        let b = uac.new_branch();
        assert_eq!(&b.as_str()[..11], "z9hG4bKbeef");
        assert_eq!(branch_owner(b.as_str()), Some(0xbeef));
        assert_eq!(branch_owner(&b.to_string()), Some(0xbeef));
        assert_eq!(branch_owner("z9hG4bKbeef"), None);
        assert_eq!(branch_owner("z9hG4bKbeefXXXXXXXXXXXXXXXX"), None);
        assert_eq!(branch_owner("x9hG4bKbeef0123456789abcdef"), None);
        assert_eq!(branch_owner("z9hG4bKbéef0123456789abcde"), None);
        let resp = response(b.as_str(), 200, "MESSAGE");
        assert_eq!(response_owner(&resp), Some(0xbeef));
        assert_eq!(response_owner(&response("z9hG4bKforeign", 200, "MESSAGE")), None);
        assert_eq!(response_owner(b"garbage"), None);
    }

    #[test]
    fn small_out_buffer_skips_a_send_and_retries() {
        let mut uac = ClientTransactions::new(ClientConfig::default());
        uac.start(0, &message("z9hG4bKs"), DEST).unwrap();
        assert_eq!(uac.poll_transmit(0, &mut [0u8; 10]), None);
        assert_eq!(uac.counters().transmit_buffer_too_small, 1);
        let mut out = [0u8; 1500];
        assert!(uac.poll_transmit(500, &mut out).is_some());
    }
}
