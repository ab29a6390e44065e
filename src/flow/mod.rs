//! The flows: what one worker does with each message, sans-IO. [`Flows`] sits between the worker's sessions (SMPP binds, SIP transactions)
//! and the conversions in [`crate::interwork`]; it takes events and time from the caller
//! and hands back what to send, so a whole exchange runs in a unit test on a virtual
//! clock.
//!
//! - **Legacy → converged**: a submit_sm (from a system bound to iwf) or deliver_sm (from
//!   an SMSC iwf is bound to) is reassembled when concatenated, converted and sent as a SIP
//!   MESSAGE; each part's `*_resp` goes out only after the SIP final response, with
//!   message_id = the part's tag.
//! - **Converged receipts → legacy**: an IMDN's tag names the legacy system; its receipts
//!   go through that system's lane to the core holding its bind; the IMDN gets its 200
//!   when the system acknowledged them, or when they are stored durably because it has
//!   no bind.
//! - **Converged → legacy**: a MESSAGE to a number is routed by prefix, converted to
//!   submit_sm / deliver_sm, the correlation entry written before sending; the SMSC's
//!   receipt becomes an IMDN to the converged sender, and the receipt is acknowledged
//!   after the IMDN's final response. The receipt's state change is final only with the
//!   IMDN's 2xx: a failed IMDN rolls it back (the SMSC's resend produces the IMDN
//!   again), and receipts for the message that arrive meanwhile wait for it. A receipt
//!   that arrives before its submit_sm_resp waits (unanswered) for the resp and the IMDN.
//!
//! Completions travel as `u64` tokens: the top 16 bits name the core (or the store) that
//! waits, the rest its waiter.
//!
//! Each worker owns one [`Flows`] (its engine) and lends it to its SIP and TCP services
//! per call; nothing else reaches it. Its work is split by job: `legacy` (legacy →
//! converged), `converged` (MESSAGEs and IMDNs from the converged side), `receipts`
//! (SMSC receipts → IMDNs), `completions` (final responses and `*_resp`s), `stats`
//! (what the cores share and count), `store` (the durable store's thread); this file
//! holds the engine's state, its sessions' events, its poll and its outboxes.
#![deny(unsafe_code)]

mod completions;
mod converged;
mod legacy;
mod receipts;
mod stats;
pub mod store;

use stats::inc;
pub use stats::{DropReason, FlowStats, Shared, SystemStats, TABLES};

use crate::control::config::LegacyConfig;
use crate::control::provision::Provision;
use crate::ids::LegacySystemId;
use crate::interwork::address::{LegacyParty, Npi, NumberingPlan, SmppAddress, Ton};
use crate::interwork::content::{SipContent, MAX_CPIM_HEADERS};
use crate::interwork::converged_to_legacy::{
    canonical_id, imdn_for_state, parse_smsc_receipt, sip_content_to_submit, CanonicalId, IdOrigin, ImdnTokens,
    SenderPolicy, SubmitParams,
};
use crate::interwork::legacy_to_converged::{
    imdn_content_to_receipts, legacy_to_sip, segment_tag, sip_status_to_command_status, ImdnRouteError, LegacyMessage,
    ReceiptOutcome, UserData,
};
use crate::interwork::{BindDirection, Concatenation, ConvergedSide, Exchange};
use crate::route::correlation::{self, Checkpoint, CorrelationConfig, CorrelationError, CorrelationTable, NewMessage};
use crate::route::lane::{CoreId, LaneItem, Lanes, PushError};
use crate::session::sip::ServerTxId;
use crate::tag::{TagFields, TAG_LEN};
use crate::wire::sip::Message;
use crate::wire::smpp::{Body, CommandStatus, Pdu, SubmitSm};
use crate::wire::sms::{ConcatInfo, Push, Reassembler, ReassemblyError, ReassemblyLimits};
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Origin of tokens the durable store waits on.
pub const STORE_ORIGIN: u16 = u16::MAX;
/// Largest SIP request iwf writes.
pub const SIP_REQUEST_MAX: usize = 8192;
/// Largest request iwf sends over UDP (RFC 3261 §18.1.1, RFC 3428 §5); longer ones go
/// over TCP.
pub const UDP_MAX_REQUEST: usize = 1300;
/// Lane items one core takes per poll.
const DRAIN_PER_POLL: usize = 64;
/// Spare part lists and request buffers an engine keeps.
const SPARES: usize = 256;
/// Largest request buffer kept for reuse.
const SPARE_BYTES_MAX: usize = 16 * 1024;

pub use crate::ids::ConnRef;

/// Output addressed to a port: one queue per port index, so that a port's services
/// take their own without scanning what waits for another.
#[derive(Debug)]
pub struct ByPort<T> {
    queues: Vec<VecDeque<T>>,
}

impl<T> Default for ByPort<T> {
    fn default() -> Self {
        ByPort { queues: Vec::new() }
    }
}

impl<T> ByPort<T> {
    fn push(&mut self, port: u8, t: T) {
        let i = usize::from(port);
        if self.queues.len() <= i {
            // Once per port, at its first output.
            self.queues.resize_with(i + 1, || VecDeque::with_capacity(256));
        }
        if let Some(q) = self.queues.get_mut(i) {
            q.push_back(t);
        }
    }

    fn pop(&mut self, port: u8) -> Option<T> {
        self.queues.get_mut(usize::from(port))?.pop_front()
    }

    fn has(&self, port: u8) -> bool {
        self.queues.get(usize::from(port)).is_some_and(|q| !q.is_empty())
    }

    /// The next of any port (lowest port first): for tests and fuzzers.
    fn pop_any(&mut self) -> Option<T> {
        self.queues.iter_mut().find_map(VecDeque::pop_front)
    }
}

/// What a worker's services tell its engine, through [`Flows::handle`]: every event of
/// the sessions and transactions the engine serves. The engine answers through its
/// outboxes ([`Flows::poll_smpp`], [`Flows::poll_udp_answer`],
/// [`Flows::poll_tcp_answer`], [`Flows::poll_request`]), and runs its timers and the
/// other cores' hand-overs in [`Flows::poll`].
#[derive(Debug)]
pub enum Input<'a> {
    /// An SMPP session of legacy system `system` is bound on `conn`; `receives` when it
    /// may be sent deliver_sm (server role) or is iwf's own transceiver bind.
    Bound {
        /// The connection.
        conn: ConnRef,
        /// The legacy system.
        system: u16,
        /// Whether receipts may go to it.
        receives: bool,
    },
    /// The session on `conn` ended (its outstanding requests came as `SmppLost` first).
    Closed {
        /// The connection.
        conn: ConnRef,
    },
    /// A request read on `conn`; its answer comes through [`Flows::poll_smpp`].
    SmppRequest {
        /// The connection.
        conn: ConnRef,
        /// Its sequence number.
        seq: u32,
        /// The request.
        pdu: &'a Pdu<'a>,
    },
    /// A request of [`SmppOut::Send`] went out on `conn` as `seq`.
    SmppSent {
        /// The connection.
        conn: ConnRef,
        /// The sequence number the session gave it.
        seq: u32,
        /// The request.
        req: SmppSend,
    },
    /// A request of [`SmppOut::Send`] could not go out on `conn`.
    SmppUnsent {
        /// The connection.
        conn: ConnRef,
        /// The request.
        req: SmppSend,
    },
    /// The response to request `seq` on `conn`.
    SmppResponse {
        /// The connection.
        conn: ConnRef,
        /// The request's sequence number.
        seq: u32,
        /// Its command_status.
        status: CommandStatus,
        /// Its message_id (submit_sm_resp; empty otherwise).
        message_id: &'a [u8],
    },
    /// Request `seq` on `conn` got no response (timeout, or the connection went).
    SmppLost {
        /// The connection.
        conn: ConnRef,
        /// The request's sequence number.
        seq: u32,
    },
    /// A SIP MESSAGE on server transaction `txn`; `raw` is its bytes (a hand-over to
    /// another core carries them).
    SipMessage {
        /// The transaction to answer on.
        txn: SipTxn,
        /// The parsed request.
        msg: &'a Message<'a, 'a>,
        /// Its bytes.
        raw: &'a [u8],
    },
    /// The final response (or timeout, as 408) to the engine's request `token`.
    SipFinal {
        /// The request's token ([`SipRequest::token`]).
        token: u64,
        /// The status.
        status: u16,
    },
}

/// A SIP server transaction waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTxn {
    /// On the SIP-over-UDP service of port `port`.
    Udp {
        /// The port index.
        port: u8,
        /// The transaction.
        id: ServerTxId,
    },
    /// On a SIP-over-TCP stream of port `port`.
    Tcp {
        /// The port index.
        port: u8,
        /// The stream's socket slot.
        slot: u16,
        /// The transaction.
        id: ServerTxId,
    },
    /// On another core, which handed the request here ([`Job`]): the answer goes back as
    /// a completion of `token`.
    Remote {
        /// The waiter on the core that holds the transaction.
        token: u64,
    },
}

/// A converged → legacy MESSAGE handed to the core that holds a bind of its legacy
/// system (that core writes the correlation entry and sends the parts).
#[derive(Debug)]
pub struct Job {
    /// The waiter on the core that holds the SIP transaction.
    pub token: u64,
    /// The request as received.
    pub request: Vec<u8>,
}

/// The answer to a SIP request, to send on its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipAnswer {
    /// The transaction.
    pub txn: SipTxn,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// `Retry-After` seconds (503 back-pressure).
    pub retry_after: Option<u32>,
}

/// A SIP request iwf originates, for the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipRequest {
    /// Give it back to [`Flows::sip_final`].
    pub token: u64,
    /// The request.
    pub bytes: Vec<u8>,
    /// Where it goes.
    pub dest: SocketAddrV4,
}

/// What to do on an SMPP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a lane item by value: no allocation per PDU
pub enum SmppOut {
    /// Answer request `seq`.
    Respond {
        /// The request's sequence number.
        seq: u32,
        /// command_status.
        status: CommandStatus,
        /// message_id (submit_sm_resp).
        message_id: [u8; TAG_LEN],
        /// Octets of `message_id` used.
        id_len: u8,
    },
    /// Send this request, then hand it back with its sequence number to
    /// [`Flows::smpp_sent`] (or to [`Flows::smpp_unsent`] when the session refused it).
    Send(SmppSend),
    /// Hold request `seq` outside the bind's window
    /// ([`crate::session::smpp::Session::set_aside`]): a part of a concatenated
    /// message that waits for its siblings, whose answer comes only once they are
    /// all in. In the window it would take the room its siblings need.
    SetAside {
        /// The request's sequence number.
        seq: u32,
    },
}

/// A request for a legacy system and what its response completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmppSend {
    /// The waiter.
    pub token: u64,
    /// The PDU (its sequence number is the session's).
    pub item: LaneItem,
    /// Converged → legacy: (system, correlation sequence) the resp re-keys.
    pub correlation: Option<(u16, u32)>,
}

/// How a receipt or message handed to a legacy system ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The system acknowledged it (`ESME_ROK`).
    Delivered,
    /// Stored durably for a system without a bind.
    Stored,
    /// The system refused it with this status.
    Refused(CommandStatus),
    /// Another core answered a request handed to it ([`Job`]) with this SIP status.
    Answered(u16, &'static str),
    /// The store could not make it durable (a failed commit): its waiter is
    /// answered 500 at once rather than left to time out.
    StoreFailed,
}

/// A completion for the waiter a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The token.
    pub token: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Legacy messages awaiting their `*_resp`, by their tag's (system, minutes, sequence),
/// with the receipts held for them.
type AwaitingResp = HashMap<(u16, u32, u32), Vec<(ConnRef, SmppSend)>>;

/// The awaited message a receipt is for, when its resp has not gone out yet.
fn receipt_awaits(awaiting: &AwaitingResp, item: &LaneItem) -> Option<(u16, u32, u32)> {
    if awaiting.is_empty() {
        return None;
    }
    let pdu = Pdu::parse(item.pdu()).ok()?;
    let (Body::DeliverSm(sm) | Body::SubmitSm(sm)) = pdu.body else { return None };
    let id = sm.tlvs.receipted_message_id().ok()??;
    let (f, _, _) = crate::tag::decode_unauthenticated(id).ok()?;
    let key = (f.system, f.minutes, f.sequence);
    awaiting.contains_key(&key).then_some(key)
}

/// How long the store keeps a parked receipt at most (its flows drop it, counted as
/// unmatched, once its park time ends; this bounds what a lost removal leaves).
const PARKED_RECORD_S: u64 = 3600;

/// Correlation entries removed per poll at most (a worker polls thousands of times a
/// second: far more than any completion rate needs).
const EXPIRE_PER_POLL: usize = 64;

/// Settings of one core's [`Flows`].
#[derive(Debug, Clone)]
pub struct FlowsConfig {
    /// This worker.
    pub core: CoreId,
    /// The converged next hop (the SIP core).
    pub next_hop: SocketAddrV4,
    /// iwf's sent-by on the converged side (`198.18.2.2:5060`).
    pub local_sent_by: String,
    /// Parts a bind may hold outside its window (`smpp.parts_aside`; the sessions
    /// are given the same room).
    pub parts_aside: usize,
    /// Concatenated legacy messages reassembled at once, and the octets their parts
    /// hold (`smpp.reassembly_messages`, `smpp.reassembly_bytes`).
    pub reassembly: (usize, usize),
}

/// A small slab with generation-checked keys (24-bit index, 24-bit generation).
#[derive(Debug)]
struct Slab<T> {
    items: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }
    fn insert(&mut self, t: T) -> u64 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.items.push((0, None));
                (self.items.len() - 1) as u32
            }
        };
        let Some(e) = self.items.get_mut(i as usize) else { return u64::MAX };
        e.0 = (e.0 + 1) & 0xFF_FFFF;
        e.1 = Some(t);
        (u64::from(e.0) << 24) | u64::from(i)
    }
    fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let (g, i) = ((key >> 24) & 0xFF_FFFF, key & 0xFF_FFFF);
        let e = self.items.get_mut(i as usize)?;
        if u64::from(e.0) != g {
            return None;
        }
        e.1.as_mut()
    }
    fn remove(&mut self, key: u64) -> Option<T> {
        let (g, i) = ((key >> 24) & 0xFF_FFFF, key & 0xFF_FFFF);
        let e = self.items.get_mut(i as usize)?;
        if u64::from(e.0) != g {
            return None;
        }
        let t = e.1.take();
        if t.is_some() {
            self.free.push(i as u32);
        }
        t
    }
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut().filter_map(|(_, t)| t.as_mut())
    }
}

/// A bound SMPP session of this worker.
#[derive(Debug, Clone, Copy)]
struct Conn {
    system: u16,
    receives: bool,
    /// Slots of its `parts_aside` room taken ([`Aside`]).
    aside: u16,
}

/// A legacy request answered once its whole message is: (bind, sequence number,
/// part number; 0 for a single-part message).
type PartRef = (ConnRef, u32, u8);

/// Room a concatenated message's parts take outside their binds' windows
/// (`smpp.parts_aside`). The bind of the first part that arrives reserves room for
/// every part but the last at once, so a message once admitted can always complete:
/// a part that waits for its siblings never holds a window slot they need. A part
/// that arrives on another bind takes one slot there.
#[derive(Debug, Default)]
struct Aside {
    /// Slots taken, per bind.
    charges: Vec<(ConnRef, u16)>,
    /// The bind holding the reservation.
    owner: Option<ConnRef>,
    /// Slots of the reservation not used yet.
    unused: u16,
}

impl Aside {
    /// Bind `conn` closed: its slots went with it.
    fn forget(&mut self, conn: ConnRef) {
        self.charges.retain(|(c, _)| *c != conn);
        if self.owner == Some(conn) {
            self.owner = None;
            self.unused = 0;
        }
    }
}

/// The parts of a concatenated legacy message held for their siblings.
#[derive(Debug, Default)]
struct HeldParts {
    parts: Vec<PartRef>,
    aside: Aside,
}

/// What a part about to be held takes from its bind's room outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Nothing: it completes its message, or it holds its window slot (no room is
    /// configured, or the message has more parts than the room).
    InWindow,
    /// A slot of its message's reservation.
    Reserved,
    /// The reservation of a new message: this many slots.
    Reserve(u16),
    /// One slot of its own bind (its message's reservation is on another bind).
    One,
}

/// What a SIP request iwf sent waits to finish.
#[derive(Debug)]
enum Outgoing {
    /// A legacy message: its parts' `*_resp` after the final response.
    Message { parts: Vec<PartRef>, aside: Aside, fields: TagFields, system: u16 },
    /// An IMDN for a correlated message: the receipts' `*_resp` after the final
    /// response; `undo` restores the message's state when it fails (receipt-driven).
    Imdn { message: correlation::MessageRef, acks: Vec<ReceiptAck>, undo: Option<Box<Checkpoint>>, last: bool },
}

/// An SMSC receipt whose `*_resp` is held: parked for its id, or waiting for the IMDN
/// of its message in flight.
#[derive(Debug, Clone, Copy)]
struct HeldReceipt {
    conn: ConnRef,
    seq: u32,
    system: u16,
    id: CanonicalId,
    /// The id's second reading ([`crate::interwork::converged_to_legacy::alternate_id`]).
    alt: Option<CanonicalId>,
    state: crate::interwork::state::ReceiptState,
    /// The store key of its parked record: it was answered once that was durable
    /// (`conn` and `seq` are spent), and the record goes when it is done with.
    parked: Option<u64>,
}

/// Who hears how an SMSC receipt ended.
#[derive(Debug, Clone, Copy)]
enum ReceiptAck {
    /// Its deliver_sm_resp (`conn`, `seq`), sent then.
    Resp(ConnRef, u32),
    /// A receipt answered when it was durably parked: its record goes once it is done
    /// with; after a failed IMDN it is applied again at the next sweep.
    Parked(HeldReceipt),
}

impl HeldReceipt {
    fn ack(self) -> ReceiptAck {
        match self.parked {
            Some(_) => ReceiptAck::Parked(self),
            None => ReceiptAck::Resp(self.conn, self.seq),
        }
    }
}

/// Who hears what a [`Waiter`] collected.
#[derive(Debug, Clone, Copy)]
enum Requester {
    /// A SIP request: its final response.
    Sip(SipTxn),
    /// An SMSC receipt being parked durably (store key `key`): its deliver_sm_resp
    /// once the park is stored (`None` once its session closed).
    Parking { resp: Option<(ConnRef, u32)>, key: u64, system: u16, id: CanonicalId },
    /// A converged message's correlation record being stored: its parts (in
    /// [`Flows::unsent`] under this waiter's key) go out once it is durable, so a
    /// receipt can never come for a message a restart would forget.
    Correlation { message: u64 },
}

/// A converged message's parts waiting for its correlation record to be durable.
#[derive(Debug)]
struct UnsentParts {
    conn: ConnRef,
    system: u16,
    parts: Vec<SmppSend>,
}

/// The IMDN(s) of a correlated message in flight and the receipts that wait for them.
#[derive(Debug, Default)]
struct InFlight {
    imdns: u16,
    waiting: Vec<HeldReceipt>,
}

/// A SIP transaction waiting for legacy-side completions.
#[derive(Debug)]
struct Waiter {
    from: Requester,
    remaining: u16,
    /// The worst outcome seen (the answer).
    refused: Option<CommandStatus>,
    /// The answer another core gave (a [`Job`]).
    answer: Option<(u16, &'static str)>,
    /// The notification this IMDN is remembered as (forgotten if it is not relayed).
    replay: Option<crate::route::replay::Seen>,
}

/// Key of a concatenated legacy message being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ReKey {
    conn_system: u16,
    reference: u16,
    source: [u8; 21],
}

/// One worker's flows.
#[derive(Debug)]
pub struct Flows {
    config: FlowsConfig,
    shared: Arc<Shared>,
    epoch: Instant,
    conns: HashMap<ConnRef, Conn>,
    /// The connections that may be sent receipts, per legacy system, in order: kept
    /// up to date at bind and close, so that picking one allocates nothing.
    receivers: HashMap<u16, Vec<ConnRef>>,
    /// Emptied part lists and request buffers, kept for the next message so that the
    /// engine's steady state allocates nothing ([`SPARES`] of each at most).
    spare_parts: Vec<Vec<PartRef>>,
    spare_bytes: Vec<Vec<u8>>,
    outgoing: Slab<Outgoing>,
    waiters: Slab<Waiter>,
    sent: HashMap<(ConnRef, u32), SmppSend>,
    reassembly: Reassembler<ReKey>,
    held: HashMap<ReKey, HeldParts>,
    correlation: CorrelationTable,
    /// Store keys of the correlated messages (durable copies).
    store_keys: HashMap<correlation::MessageRef, u64>,
    /// Correlated messages with an IMDN in flight (held in the table).
    imdns: HashMap<correlation::MessageRef, InFlight>,
    /// SMSC receipts parked for an id no resp bound yet. With a store each is answered
    /// once its record is durable, so unknown ids never hold the SMSC's window;
    /// without one its resp waits (the SMPP window bounds them).
    parked: HashMap<(u16, CanonicalId), Vec<HeldReceipt>>,
    /// Receipts answered when parked whose IMDN failed: applied again at the next
    /// sweep (their resps were sent; nothing else would bring them back).
    retry_receipts: Vec<HeldReceipt>,
    /// Converged messages' parts waiting for their correlation record to be durable,
    /// by the key of the waiter of that write.
    unsent: HashMap<u64, UnsentParts>,
    next_store_key: u64,
    /// The Unix time of the last poll.
    unix: u64,
    /// The second the correlation table was last swept.
    expired_at: u64,
    corr_seq: u32,
    tag_seq: u32,
    concat_ref: u16,
    rr: usize,
    smpp_out: ByPort<(ConnRef, SmppOut)>,
    /// Answers to SIP transactions on UDP, by port.
    udp_answers: ByPort<SipAnswer>,
    /// Answers to SIP transactions on TCP streams, by port.
    tcp_answers: ByPort<SipAnswer>,
    sip_requests: VecDeque<SipRequest>,
    /// Requests over [`UDP_MAX_REQUEST`] octets: over TCP (RFC 3261 §18.1.1).
    sip_requests_tcp: VecDeque<SipRequest>,
    scratch: Vec<u8>,
    /// Completions for other cores whose rings were full, oldest first.
    deferred: VecDeque<Completion>,
    /// Legacy messages whose `*_resp` is not sent yet (their SIP final is awaited), by
    /// their tag's (system, minutes, sequence), with the receipts for them that came
    /// first: a receipt must not reach the legacy system before the resp that gives it
    /// its id, so these wait until just after it.
    awaiting_resp: AwaitingResp,
    out: Vec<u8>,
}

fn id_buf(id: &[u8]) -> ([u8; TAG_LEN], u8) {
    let mut b = [0u8; TAG_LEN];
    let n = id.len().min(TAG_LEN);
    b[..n].copy_from_slice(&id[..n]);
    (b, n as u8)
}

fn exchange_of(l: &LegacyConfig) -> Exchange<'_> {
    Exchange {
        system: l.id,
        name: &l.name,
        direction: if l.connect.is_some() { BindDirection::IwfBindsToLegacy } else { BindDirection::LegacyBindsToIwf },
        default_encoding: l.default_encoding,
        user_ack: l.user_ack,
        concatenation: Concatenation::Udh8,
        ids: l.ids,
        numbering: NumberingPlan { country_code: l.country_code.as_deref(), trunk_prefix: "0" },
    }
}

/// The SIP answer for a converged request whose legacy side refused with `status`.
fn sip_for_command_status(status: CommandStatus) -> (u16, &'static str) {
    match status {
        CommandStatus::ESME_RINVDSTADR => (404, "Not Found (legacy destination refused)"),
        CommandStatus::ESME_RTHROTTLED | CommandStatus::ESME_RMSGQFUL => {
            (503, "Service Unavailable (legacy throttled)")
        }
        CommandStatus::ESME_RINVMSGLEN => (413, "Request Entity Too Large"),
        CommandStatus::ESME_RX_T_APPN | CommandStatus::ESME_RSYSERR => (500, "Server Internal Error (legacy system)"),
        _ => (403, "Forbidden (refused by the legacy system)"),
    }
}

/// `type/subtype` of a Content-Type value (parameters and blanks dropped).
fn essence(v: &[u8]) -> &[u8] {
    let v = v.split(|b| *b == b';').next().unwrap_or(v);
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or(&[])
}

/// The media type (`type/subtype`, lower case) of a MESSAGE's content: the CPIM part's
/// for `message/cpim` (as parsed once, in `content`), else the SIP body's; written into
/// `buf`.
fn content_type_of<'b>(msg: &Message<'_, '_>, content: &SipContent<'_, '_>, buf: &'b mut [u8]) -> Option<&'b str> {
    let media = match content {
        SipContent::Cpim(parsed) => essence(parsed.content_header(b"Content-Type")?),
        SipContent::BadCpim(_) => return None,
        SipContent::Plain => essence(
            msg.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("Content-Type") || h.name.eq_ignore_ascii_case("c"))
                .map(|h| h.value.as_bytes())?,
        ),
    };
    let out = buf.get_mut(..media.len())?;
    out.copy_from_slice(media);
    out.make_ascii_lowercase();
    core::str::from_utf8(out).ok()
}

impl Flows {
    /// The flows of worker `config.core`.
    pub fn new(config: FlowsConfig, shared: Arc<Shared>) -> Flows {
        let template = shared.provision.load().msisdns.template().cloned();
        let parked_capacity = shared.provision.load().converged.parked_capacity;
        let (max_messages, max_bytes) = config.reassembly;
        Flows {
            config,
            shared,
            epoch: Instant::now(),
            conns: HashMap::with_capacity(64),
            receivers: HashMap::with_capacity(64),
            spare_parts: Vec::with_capacity(SPARES),
            spare_bytes: Vec::with_capacity(SPARES),
            outgoing: Slab::new(),
            waiters: Slab::new(),
            sent: HashMap::with_capacity(1024),
            reassembly: Reassembler::new(ReassemblyLimits { max_messages, max_bytes, ..ReassemblyLimits::default() }),
            held: HashMap::new(),
            correlation: CorrelationTable::new(CorrelationConfig {
                sender_template: template,
                max_parked: parked_capacity,
                ..CorrelationConfig::default()
            }),
            store_keys: HashMap::new(),
            imdns: HashMap::new(),
            parked: HashMap::new(),
            retry_receipts: Vec::new(),
            unsent: HashMap::new(),
            next_store_key: 0,
            unix: 0,
            expired_at: 0,
            corr_seq: 1,
            tag_seq: 0,
            concat_ref: 0,
            rr: 0,
            smpp_out: ByPort::default(),
            udp_answers: ByPort::default(),
            tcp_answers: ByPort::default(),
            sip_requests: VecDeque::with_capacity(256),
            sip_requests_tcp: VecDeque::new(),
            scratch: vec![0u8; 16 * 1024],
            deferred: VecDeque::new(),
            awaiting_resp: HashMap::new(),
            out: vec![0u8; 16 * 1024],
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// After a restart: the correlation records still valid at `unix` come back from
    /// the store (parts keyed by the SMSC ids they had), so receipts for messages
    /// acknowledged before the restart still become IMDNs. Returns how many.
    /// `records` come from [`crate::route::store::Store::restorable`], read once for
    /// every core; one the table refuses (full) is skipped: its receipts still find
    /// it in the store.
    pub fn restore(&mut self, records: &[crate::route::store::Restorable], unix: u64) -> usize {
        let mut n = 0;
        for (key, rec, ids) in records {
            if let Ok(m) = self.correlation.restore(&rec.new_message(), ids, unix) {
                self.store_keys.insert(m, *key);
                n += 1;
            }
        }
        n
    }

    /// A store key unique across cores and restarts: core, start time, counter.
    fn store_key(&mut self) -> u64 {
        if self.next_store_key == 0 {
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() & 0xFFFF_FFFF);
            self.next_store_key = (u64::from(self.config.core & 0xFF) << 56) | (start << 24);
        }
        self.next_store_key += 1;
        self.next_store_key
    }

    fn token(&self, key: u64) -> u64 {
        (u64::from(self.config.core) << 48) | (key & 0xFFFF_FFFF_FFFF)
    }

    // ---- sessions ------------------------------------------------------------------
    /// An SMPP session of legacy system `system` is bound on `conn`; `receives` when
    /// the bind may be sent deliver_sm (server role) or is iwf's own transceiver bind.
    pub fn bound(&mut self, conn: ConnRef, system: u16, receives: bool) {
        if let Some(old) = self.conns.insert(conn, Conn { system, receives, aside: 0 }) {
            self.forget_receiver(old.system, conn);
            if old.receives {
                let _ = self.shared.lanes.bind_down(LegacySystemId(old.system), self.config.core);
            }
        }
        if receives {
            let list = self.receivers.entry(system).or_default();
            if let Err(at) = list.binary_search(&conn) {
                list.insert(at, conn);
            }
            let _ = self.shared.lanes.bind_up(LegacySystemId(system), self.config.core);
            if let Some(tx) = &self.shared.store {
                let _ = tx.send(store::StoreOp::Bound { system });
            }
        }
    }

    /// The session on `conn` ended (requests still outstanding come as
    /// [`Flows::smpp_lost`] first).
    pub fn closed(&mut self, conn: ConnRef) {
        if let Some(c) = self.conns.remove(&conn) {
            self.forget_receiver(c.system, conn);
            if c.receives {
                let _ = self.shared.lanes.bind_down(LegacySystemId(c.system), self.config.core);
            }
        }
        // Answers still owed to this session's requests are forgotten: a later session
        // that gets the same ConnRef restarts its sequence numbers, so an answer kept for
        // (conn, seq) would reach one of its requests. Nothing is lost by it: held
        // receipts had no state applied (the SMSC sends them again on its next bind), and
        // a message's parts were never acknowledged (the legacy system sends them again).
        // Receipts answered when parked durably owe this session nothing: they stay.
        for list in self.parked.values_mut() {
            list.retain(|h| h.parked.is_some() || h.conn != conn);
        }
        self.parked.retain(|_, list| !list.is_empty());
        for f in self.imdns.values_mut() {
            f.waiting.retain(|h| h.parked.is_some() || h.conn != conn);
        }
        for w in self.waiters.iter_mut() {
            if let Requester::Parking { resp, .. } = &mut w.from {
                if resp.is_some_and(|(c, _)| c == conn) {
                    *resp = None;
                }
            }
        }
        for h in self.held.values_mut() {
            h.parts.retain(|(c, ..)| *c != conn);
            h.aside.forget(conn);
        }
        for o in self.outgoing.iter_mut() {
            match o {
                Outgoing::Message { parts, aside, .. } => {
                    parts.retain(|(c, ..)| *c != conn);
                    aside.forget(conn);
                }
                Outgoing::Imdn { acks, .. } => acks.retain(|a| !matches!(a, ReceiptAck::Resp(c, _) if *c == conn)),
            }
        }
    }

    // ---- time and the outboxes -------------------------------------------------------
    /// Work not driven by input: completions from other cores and the store, this
    /// core's lanes, reassembly and correlation timeouts.
    pub fn poll(&mut self, now: u64, unix: u64) {
        self.unix = unix;
        let core = self.config.core;
        let shared = Arc::clone(&self.shared);
        if let Some(q) = shared.completions.get(core as usize) {
            while let Some(c) = q.pop() {
                self.complete_local(c.token, c.outcome);
            }
        }
        while let Some(c) = self.deferred.pop_front() {
            if let Err(c) = shared.complete(c.token, c.outcome) {
                self.deferred.push_front(c);
                break;
            }
        }
        if let Some(q) = shared.jobs.get(core as usize) {
            for _ in 0..DRAIN_PER_POLL {
                let Some(job) = q.pop() else { break };
                let mut headers = [crate::wire::sip::Header::EMPTY; 48];
                let txn = SipTxn::Remote { token: job.token };
                match crate::wire::sip::Parser::datagram().parse(&job.request, &mut headers) {
                    Ok(crate::wire::sip::Status::Complete(_, msg)) => {
                        self.sip_message(now, unix, txn, &msg, &job.request)
                    }
                    _ => self.answer(txn, 500, "Server Internal Error (hand-over)"),
                }
            }
        }
        let lanes = shared.lanes.load();
        for lane in lanes.owned_by(core) {
            let system = lane.system().0;
            let mut n = 0;
            while n < DRAIN_PER_POLL {
                let Some(conn) = self.pick_conn(system) else { break };
                let Some(item) = lane.pop(core) else { break };
                let send = SmppSend { token: item.token(), item, correlation: None };
                match receipt_awaits(&self.awaiting_resp, &send.item) {
                    Some(key) => {
                        inc(&self.shared.stats.receipts_before_resp);
                        if let Some(held) = self.awaiting_resp.get_mut(&key) {
                            held.push((conn, send));
                        }
                    }
                    None => self.smpp_out.push(conn.port, (conn, SmppOut::Send(send))),
                }
                n += 1;
            }
        }
        let at = self.epoch + Duration::from_millis(now);
        while let Some(expired) = self.reassembly.poll_expired(at) {
            // Parts of a message that never completed: the system resends them.
            let HeldParts { parts, aside } = self.held.remove(&expired.key).unwrap_or_default();
            self.release(&aside);
            for (conn, seq, _) in parts {
                self.respond(conn, seq, CommandStatus::ESME_RX_T_APPN, b"");
            }
        }
        // Correlation expiry costs what is due (nothing when nothing is): every poll,
        // bounded per poll so a burst of expiries never stalls the packet path.
        let _ = self.correlation.expire(unix, EXPIRE_PER_POLL);
        if unix != self.expired_at {
            self.expired_at = unix;
            self.sweep_parked();
            self.publish_tables();
        }
    }

    /// Takes one event of the worker's sessions and transactions at `now` (the
    /// worker's milliseconds). The tags' clock (Unix seconds) is the one of the last
    /// [`Flows::poll`], which the worker runs whenever it reads its clock.
    pub fn handle(&mut self, now: u64, input: Input<'_>) {
        let unix = self.unix;
        match input {
            Input::Bound { conn, system, receives } => self.bound(conn, system, receives),
            Input::Closed { conn } => self.closed(conn),
            Input::SmppRequest { conn, seq, pdu } => self.smpp_request(now, unix, conn, seq, pdu),
            Input::SmppSent { conn, seq, req } => self.smpp_sent(conn, seq, req),
            Input::SmppUnsent { conn, req } => self.smpp_unsent(conn, req),
            Input::SmppResponse { conn, seq, status, message_id } => {
                self.smpp_response(unix, conn, seq, status, message_id)
            }
            Input::SmppLost { conn, seq } => self.smpp_lost(unix, conn, seq),
            Input::SipMessage { txn, msg, raw } => self.sip_message(now, unix, txn, msg, raw),
            Input::SipFinal { token, status } => self.sip_final(token, status),
        }
    }

    fn forget_receiver(&mut self, system: u16, conn: ConnRef) {
        if let Some(list) = self.receivers.get_mut(&system) {
            list.retain(|&c| c != conn);
        }
    }

    /// An empty part list, reused when one is spare.
    fn take_parts(&mut self) -> Vec<PartRef> {
        self.spare_parts.pop().unwrap_or_default()
    }

    /// Keeps an emptied part list for the next message.
    fn give_parts(&mut self, mut parts: Vec<PartRef>) {
        if self.spare_parts.len() < SPARES {
            parts.clear();
            self.spare_parts.push(parts);
        }
    }

    /// The request written in `self.out[..len]`, in a buffer of its own (a spare one
    /// when there is one).
    fn request_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = self.spare_bytes.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(self.out.get(..len).unwrap_or(&[]));
        v
    }

    /// Gives back a request's buffer once it is sent ([`SipRequest::bytes`]): the
    /// next request is written into it, so that sending allocates nothing.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        if self.spare_bytes.len() < SPARES && bytes.capacity() <= SPARE_BYTES_MAX {
            self.spare_bytes.push(bytes);
        }
    }

    /// The next SMPP action for the sessions of port `port`.
    pub fn poll_smpp(&mut self, port: u8) -> Option<(ConnRef, SmppOut)> {
        self.smpp_out.pop(port)
    }

    /// Whether SMPP actions wait for the sessions of port `port`.
    pub fn has_smpp_for(&self, port: u8) -> bool {
        self.smpp_out.has(port)
    }

    /// The next answer to a SIP-over-UDP transaction of port `port`.
    pub fn poll_udp_answer(&mut self, port: u8) -> Option<SipAnswer> {
        self.udp_answers.pop(port)
    }

    /// Whether answers wait for the SIP-over-UDP transactions of port `port`.
    pub fn has_udp_answer(&self, port: u8) -> bool {
        self.udp_answers.has(port)
    }

    /// The next answer to a SIP-over-TCP transaction of port `port`.
    pub fn poll_tcp_answer(&mut self, port: u8) -> Option<SipAnswer> {
        self.tcp_answers.pop(port)
    }

    /// Whether answers wait for the SIP-over-TCP transactions of port `port`.
    pub fn has_tcp_answer(&self, port: u8) -> bool {
        self.tcp_answers.has(port)
    }

    /// The next answer of any port and transport (UDP first): what a test or a fuzzer
    /// that stands in for every service drains.
    pub fn poll_any_answer(&mut self) -> Option<SipAnswer> {
        self.udp_answers.pop_any().or_else(|| self.tcp_answers.pop_any())
    }

    /// Whether SIP requests wait to be sent.
    pub fn has_request(&self) -> bool {
        !self.sip_requests.is_empty()
    }

    /// The next SIP request iwf sends over TCP (over [`UDP_MAX_REQUEST`] octets).
    pub fn poll_request_tcp(&mut self) -> Option<SipRequest> {
        self.sip_requests_tcp.pop_front()
    }

    /// Whether requests wait for TCP.
    pub fn has_request_tcp(&self) -> bool {
        !self.sip_requests_tcp.is_empty()
    }

    /// The next SIP request iwf originates.
    pub fn poll_request(&mut self) -> Option<SipRequest> {
        self.sip_requests.pop_front()
    }

    /// Gives back a request from [`Flows::poll_request`] that could not be sent yet
    /// (the client transaction table is full): it is sent first when there is room.
    /// Nothing is answered for it meanwhile (its receipt or part stays unacknowledged,
    /// which holds the legacy system's window).
    pub fn hold_request(&mut self, req: SipRequest) {
        self.sip_requests.push_front(req);
    }

    /// SIP requests waiting to be sent over UDP (the metrics' backlog).
    pub fn requests_waiting(&self) -> usize {
        self.sip_requests.len()
    }

    /// Waiters, outgoing requests, unanswered sent PDUs and correlation entries (for
    /// tests and the metrics).
    pub fn in_flight(&self) -> (usize, usize, usize, usize) {
        (self.waiters.len(), self.outgoing.len(), self.sent.len(), self.correlation.len())
    }
}

#[cfg(test)]
mod tests;
