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

pub mod cluster;
mod completions;
mod converged;
mod legacy;
mod mms;
mod mms_out;
mod receipts;
pub mod records;
mod stats;
pub mod store;

pub use mms::Mm4Out;

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
use crate::interwork::legacy_to_converged::LegacyExchange;
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

    /// Keeps only what `keep` says of port `port`'s queue.
    fn retain(&mut self, port: u8, keep: impl FnMut(&T) -> bool) {
        if let Some(q) = self.queues.get_mut(usize::from(port)) {
            q.retain(keep);
        }
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
    /// A whole MM4 message from MMS centre `system` on SMTP connection `conn`; its
    /// SMTP reply waits in [`Flows::poll_smtp_answer`].
    Mm4 {
        /// The connection.
        conn: ConnRef,
        /// The MMS centre.
        system: u16,
        /// The RFC 5322 message (dot-stuffing removed).
        data: &'a [u8],
    },
    /// iwf's SMTP client is done with MM4 message `token` ([`Mm4Out::token`]): the MMS
    /// centre took it (`delivered`: SMTP 250), or it refused it or it could not go.
    Mm4Done {
        /// The message's token.
        token: u64,
        /// Whether the MMS centre took it.
        delivered: bool,
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
    /// `None`: a SIP request. `Some(system)`: an MM4 report from MMS centre `system`
    /// about an MMS the receiving worker forwarded.
    pub mm4_from: Option<u16>,
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

/// A write to a converged → legacy message's correlation: the store's thread makes it
/// durable ([`store::StoreOp::Correlation`]) and, in a cluster, then hands it to the
/// cluster thread ([`cluster::ClusterOp::Correlation`]), which puts it in the shared
/// bucket. A waiting token completes with [`Outcome::Stored`] once it is durable
/// everywhere it must be (before the converged sender hears 200, before the parts go).
#[derive(Debug, Clone)]
pub enum CorrelationWrite {
    /// The message's record.
    Put {
        /// The message's store key (unique across boxes: it holds the box's start time).
        key: u64,
        /// The record.
        record: Box<crate::route::store::DurableCorrelation>,
        /// The waiter.
        token: u64,
    },
    /// Part `part` of message `key` has the SMSC id `id`.
    BindId {
        /// The legacy system.
        system: u16,
        /// The canonical SMSC id.
        id: crate::interwork::converged_to_legacy::CanonicalId,
        /// The message's store key.
        key: u64,
        /// The part (1-based).
        part: u8,
        /// The waiter.
        token: u64,
    },
    /// Message `key` is complete: forget it (nobody waits).
    Remove {
        /// The message's store key.
        key: u64,
    },
}

impl CorrelationWrite {
    /// Its waiter's token, if one waits.
    pub fn token(&self) -> Option<u64> {
        match self {
            CorrelationWrite::Put { token, .. } | CorrelationWrite::BindId { token, .. } => Some(*token),
            CorrelationWrite::Remove { .. } => None,
        }
    }
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

/// When the engine's timers next have work, in the worker's milliseconds.
///
/// Two clocks drive them: the correlation table, the parked receipts and the
/// published table sizes count Unix seconds (their deadlines are seconds), so they
/// run once each time the Unix second changes, or every poll while an expiry backlog
/// is left; reassembly deadlines count the worker's milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Timers {
    /// The worker's milliseconds when the Unix second last changed: the next change
    /// is due a second later.
    second_began: u64,
    /// The earliest reassembly deadline, if a message is pending.
    reassembly: Option<u64>,
    /// More correlation entries were due than one run removes.
    backlog: bool,
    /// The worker's milliseconds at the last run.
    last: u64,
}

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
    /// The largest SIP message iwf writes (`sip.max_message_bytes`): an MMS that
    /// would make a larger MESSAGE is refused, never cut.
    pub max_sip_message: usize,
    /// The MMS centres this worker has SMTP clients for (MM4 for another is dropped,
    /// counted).
    pub mm4_clients: Vec<u16>,
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
    /// iwf's requests on it awaiting their response (its window in use).
    in_flight: u16,
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
    /// An MMS from an MMS centre: its SMTP reply on `conn` (none once that closed) and
    /// the `.RES` it asked for after the final response.
    /// `origin`: the key of the origin kept for its reports, if any.
    Mms { conn: Option<ConnRef>, system: u16, res: Option<Box<mms::ResFor>>, origin: Option<u64> },
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
    /// What an MMS's reports need being stored: its MESSAGE (in [`mms::MmsBook`] under
    /// this waiter's key) goes once it is durable.
    MmsOrigin,
    /// A converged user's MMS whose correlation is being stored: the forward (in
    /// [`mms::MmsBook`] under this waiter's key) goes once it is durable.
    MmsForward,
    /// An MMS centre's report handed to the worker that forwarded its MMS: the centre
    /// hears its answer ([`mms::MmsBook`] keeps whom, under this waiter's key).
    Mm4Report,
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
    /// An IMDN's receipts: their system and when the IMDN came (the worker's ms), for
    /// the system's latency histogram once the system acknowledged them all; none once
    /// one was stored instead.
    latency: Option<(u16, u64)>,
    /// An IMDN's receipts: the tag, system and how they ended so far, for the
    /// `receipt.done` record.
    record: Option<([u8; TAG_LEN], u16, records::Ending)>,
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
    /// The worker's milliseconds at the last input or poll.
    now_ms: u64,
    /// The second the correlation table was last swept.
    expired_at: u64,
    /// The timers [`Flows::poll_timeout`] reports and [`Flows::handle_timeout`] runs.
    timers: Timers,
    corr_seq: u32,
    tag_seq: u32,
    concat_ref: u16,
    rr: usize,
    smpp_out: ByPort<(ConnRef, SmppOut)>,
    /// SMTP replies to MMS centres' connections, by port.
    smtp_answers: ByPort<(ConnRef, crate::wire::smtp::Reply<'static>)>,
    /// MM4 messages for MMS centres' SMTP clients.
    mm4_out: VecDeque<Mm4Out>,
    mm4_seq: u32,
    /// MMS forwards in flight by when their final response is due (Unix seconds), in
    /// order: [`Flows::handle_timeout`] answers the overdue 451.
    mms_deadlines: VecDeque<(u64, u64)>,
    /// MMS that owe their centre reports, and the reports on their way.
    mms: mms::MmsBook,
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

/// How an IMDN about a message of `l` goes back: SMPP receipts, or an MMS centre's
/// report.
fn legacy_exchange_of(l: &LegacyConfig) -> LegacyExchange<'_> {
    match l.mms {
        Some(_) => LegacyExchange::Mms,
        None => LegacyExchange::Smpp(exchange_of(l)),
    }
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
fn content_type_of<'b>(content: &SipContent<'_, '_>, buf: &'b mut [u8]) -> Option<&'b str> {
    let media = match content {
        SipContent::Cpim(parsed) => essence(parsed.content_header(b"Content-Type")?),
        SipContent::BadCpim(_) | SipContent::Plain(b"") => return None,
        SipContent::Plain(content_type) => essence(content_type),
    };
    let out = buf.get_mut(..media.len())?;
    out.copy_from_slice(media);
    out.make_ascii_lowercase();
    core::str::from_utf8(out).ok()
}

/// The converged side as provisioned now, iwf's requests (from `config`'s sent-by)
/// going over `transport`.
fn converged_side<'p>(config: &'p FlowsConfig, provision: &'p Provision, transport: &'static str) -> ConvergedSide<'p> {
    ConvergedSide {
        legacy_domain: &provision.converged.legacy_domain,
        converged_domain: &provision.converged.converged_domain,
        local_sent_by: &config.local_sent_by,
        transport,
    }
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
            now_ms: 0,
            expired_at: 0,
            timers: Timers::default(),
            corr_seq: 1,
            // Tags issued in the same minute before a restart must not repeat theirs
            // (an MMS's origin is kept under its tag): a start that is not the last one's.
            tag_seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)),
            concat_ref: 0,
            rr: 0,
            smpp_out: ByPort::default(),
            smtp_answers: ByPort::default(),
            mm4_out: VecDeque::new(),
            mm4_seq: 0,
            mms_deadlines: VecDeque::new(),
            mms: mms::MmsBook::default(),
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
        if let Some(old) = self.conns.insert(conn, Conn { system, receives, aside: 0, in_flight: 0 }) {
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
            self.record(records::Event::new(records::Kind::BindDown, c.system).status(records::conn_code(conn)));
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
                // Its reply would reach the slot's next connection: none goes.
                Outgoing::Mms { conn: c, .. } if *c == Some(conn) => *c = None,
                Outgoing::Mms { .. } => {}
            }
        }
        // Reports of an MMS centre on it: their IMDNs still go, their answer does not
        // (the centre sends them again), nor does a reply queued for it.
        self.mms.report_acks.retain(|(c, _), _| *c != conn);
        for ack in self.mms.handed.values_mut() {
            if matches!(ack, mms::ReportAck::Local { conn: c, .. } if *c == conn) {
                *ack = mms::ReportAck::Gone;
            }
        }
        self.smtp_answers.retain(conn.port, |(c, _)| *c != conn);
    }

    /// A waiter for `remaining` completions, answered to `from`: its key.
    fn new_waiter(&mut self, from: Requester, remaining: u16) -> u64 {
        self.waiters.insert(Waiter {
            from,
            remaining,
            refused: None,
            answer: None,
            replay: None,
            latency: None,
            record: None,
        })
    }

    // ---- time and the outboxes -------------------------------------------------------
    /// Work not driven by this worker's input: completions from other cores and the
    /// store, hand-overs, this core's lanes; then the timers, when
    /// [`Flows::poll_timeout`] has passed (checked without a scan, so a worker calls
    /// this on every clock read).
    pub fn poll(&mut self, now: u64, unix: u64) {
        self.unix = unix;
        self.now_ms = now;
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
                if let Some(system) = job.mm4_from {
                    self.handed_report(job.token, system, &job.request);
                    continue;
                }
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
        if shared.cluster.get().is_some() {
            self.found_in_cluster(unix);
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
        if self.timer_due(now, unix) {
            self.handle_timeout(now, unix);
        }
    }

    /// Whether a timer is due at `now` / `unix` (what [`Flows::poll`] asks before it
    /// runs them: cheap, no scan).
    fn timer_due(&self, now: u64, unix: u64) -> bool {
        let t = &self.timers;
        unix != self.expired_at || t.backlog || t.reassembly.is_some_and(|at| at <= now)
    }

    /// When the engine's timers next have work, in the worker's milliseconds: the
    /// earliest reassembly deadline, the next change of the Unix second (correlation
    /// expiry, parked receipts, table sizes), or the last run's time while an expiry
    /// backlog is left. The per-second upkeep always runs, so there is always an
    /// answer. Inputs only arm timers later than this (a reassembly deadline lies its
    /// whole timeout ahead), so a host may sleep until it unless input arrives.
    pub fn poll_timeout(&self) -> u64 {
        let t = &self.timers;
        let mut at = t.second_began.saturating_add(1000);
        if let Some(r) = t.reassembly {
            at = at.min(r);
        }
        if t.backlog {
            at = at.min(t.last);
        }
        at
    }

    /// Runs the timers due at `now` (the worker's milliseconds) and `unix` (seconds):
    /// concatenated legacy messages whose parts stopped coming are answered
    /// ESME_RX_T_APPN, and once per Unix second correlation entries past their
    /// validity expire, parked receipts past their park time are dropped and the
    /// table sizes are published. [`Flows::poll`] calls it when
    /// [`Flows::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: u64, unix: u64) {
        self.unix = unix;
        self.timers.last = now;
        let at = self.epoch + Duration::from_millis(now);
        if self.timers.reassembly.is_some_and(|r| r <= now) {
            while let Some(expired) = self.reassembly.poll_expired(at) {
                // Parts of a message that never completed: the system resends them.
                let HeldParts { parts, aside } = self.held.remove(&expired.key).unwrap_or_default();
                self.answer_parts(parts, &aside, CommandStatus::ESME_RX_T_APPN);
            }
            self.timers.reassembly = self.reassembly_deadline();
        }
        if unix != self.expired_at || self.timers.backlog {
            // Correlation expiry costs what is due, bounded per run so a burst of
            // expiries never stalls the packet path: what is left runs next poll.
            let report = self.correlation.expire(unix, EXPIRE_PER_POLL);
            self.timers.backlog = report.expired + report.completed >= EXPIRE_PER_POLL;
        }
        if unix != self.expired_at {
            self.expired_at = unix;
            self.timers.second_began = now;
            self.sweep_parked();
            self.expire_mms(unix);
            self.expire_mm4_reports(unix);
            self.publish_tables();
            self.publish_binds();
        }
    }

    /// The earliest reassembly deadline in the worker's milliseconds (rounded up, so
    /// the deadline has passed when it is due).
    fn reassembly_deadline(&self) -> Option<u64> {
        let at = self.reassembly.next_timeout()?;
        let ms = at.saturating_duration_since(self.epoch).as_micros().div_ceil(1000);
        Some(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Takes one event of the worker's sessions and transactions at `now` (the
    /// worker's milliseconds). The tags' clock (Unix seconds) is the one of the last
    /// [`Flows::poll`], which the worker runs whenever it reads its clock.
    pub fn handle(&mut self, now: u64, input: Input<'_>) {
        let unix = self.unix;
        self.now_ms = now;
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
            Input::Mm4 { conn, system, data } => self.mm4_message(unix, conn, system, data),
            Input::Mm4Done { token, delivered } => self.mm4_done(token, delivered),
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
mod tests {
    //! The engine's exchanges on a virtual clock, without DPDK: each test drives [`Flows`]
    //! as the worker's services would and checks what it hands back.
    use super::*;
    use crate::session::sip::{ServerConfig, ServerTransactions};
    use crate::wire::sip::{Header, Parser, Status};
    use crate::wire::smpp::{Address, EsmClass, RegisteredDelivery, Tlvs};

    const NOW: u64 = 1_800_000_000;
    const SMSCA: ConnRef = ConnRef::new(0, 5);
    const SMSCC: ConnRef = ConnRef::new(0, 1);

    fn shared(store: Option<std::sync::mpsc::Sender<store::StoreOp>>) -> Arc<Shared> {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, store).unwrap())
    }

    fn f_config() -> FlowsConfig {
        FlowsConfig {
            core: 0,
            next_hop: "198.18.2.1:5060".parse().unwrap(),
            local_sent_by: "198.18.2.2:5060".into(),
            parts_aside: 64,
            reassembly: (1024, 1 << 20),
            max_sip_message: 1 << 20,
            mm4_clients: vec![4, 9],
        }
    }

    fn flows(shared: &Arc<Shared>) -> Flows {
        Flows::new(f_config(), Arc::clone(shared))
    }

    fn submit(seq: u32, rd: u8, esm: u8, text: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let sm = SubmitSm {
            source: Address::international(b"447000100001"),
            destination: Address::international(b"447900000001"),
            esm_class: EsmClass(esm),
            registered_delivery: RegisteredDelivery(rd),
            short_message: text,
            tlvs: Tlvs::Raw(tlvs),
            ..SubmitSm::default()
        };
        let pdu = Pdu::new(seq, Body::SubmitSm(sm));
        let mut out = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut out).unwrap();
        out
    }

    /// A server transaction id to answer on (the table stands in for the SIP service).
    fn txn(server: &mut ServerTransactions, request: &[u8]) -> SipTxn {
        let mut headers = [Header::EMPTY; 32];
        let mut reply = [0u8; 2048];
        match server.handle_request(0, "198.18.2.1:5060".parse().unwrap(), request, &mut headers, &mut reply) {
            crate::session::sip::Incoming::New { id, .. } => SipTxn::Udp { port: 1, id },
            other => panic!("{other:?}"),
        }
    }

    fn deliver(f: &mut Flows, shared: &Shared, unix: u64, request: &[u8], txn: SipTxn) {
        let mut headers = [Header::EMPTY; 32];
        let Ok(Status::Complete(_, msg)) = Parser::datagram().parse(request, &mut headers) else { panic!() };
        f.sip_message(0, unix, txn, &msg, request);
        let _ = shared;
    }

    fn imdn(tag: &str, status: &str, kind: &str) -> Vec<u8> {
        imdn_between(tag, status, kind, "+447900000001@ims.lab", "+447000100001@iwf.ims.lab", "")
    }

    /// An IMDN from converged user `converged` to legacy user `legacy` (`number@host`
    /// each); `n` tells apart a resend (a new transaction).
    fn imdn_between(tag: &str, status: &str, kind: &str, converged: &str, legacy: &str, n: &str) -> Vec<u8> {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n\
    <message-id>{tag}</message-id>\r\n<datetime>2027-01-15T08:00:00Z</datetime>\r\n\
    <{kind}-notification><status><{status}/></status></{kind}-notification>\r\n</imdn>\r\n"
        );
        let cpim = format!(
            "From: <sip:{converged};user=phone>\r\nTo: <sip:{legacy};user=phone>\r\n\
    NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: own{status}{n}\r\nDateTime: 2027-01-15T08:00:00Z\r\n\r\n\
    Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        format!(
            "MESSAGE sip:{legacy};user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK{status}{n}{}\r\n\
    Max-Forwards: 70\r\nFrom: <sip:{converged};user=phone>;tag=u1\r\nTo: <sip:{legacy};user=phone>\r\n\
    Call-ID: {status}{n}{tag}\r\nCSeq: 1 MESSAGE\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
            &tag[..8.min(tag.len())],
            cpim.len()
        )
        .into_bytes()
    }

    fn tag_of(sip: &[u8]) -> String {
        let text = String::from_utf8_lossy(sip);
        let at = text.find("imdn.Message-ID: ").unwrap() + 17;
        text[at..at + TAG_LEN].to_string()
    }

    fn respond_of(out: Option<(ConnRef, SmppOut)>) -> (ConnRef, u32, CommandStatus, String) {
        match out {
            Some((c, SmppOut::Respond { seq, status, message_id, id_len })) => {
                (c, seq, status, String::from_utf8_lossy(&message_id[..id_len as usize]).into_owned())
            }
            other => panic!("expected a resp, got {other:?}"),
        }
    }

    /// The durable store's thread over a fresh file, with the shared state it serves.
    struct StoreRun {
        shared: Arc<Shared>,
        stats: Arc<store::StoreStats>,
        path: std::path::PathBuf,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    }

    impl StoreRun {
        fn start(name: &str) -> StoreRun {
            StoreRun::start_for(name, shared)
        }

        /// Over the provisioning `make` gives.
        fn start_for(name: &str, make: fn(Option<std::sync::mpsc::Sender<store::StoreOp>>) -> Arc<Shared>) -> StoreRun {
            let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let db = crate::route::store::Store::create(&path).unwrap();
            StoreRun::over_for(db, path, make)
        }

        fn over(db: crate::route::store::Store, path: std::path::PathBuf) -> StoreRun {
            StoreRun::over_for(db, path, shared)
        }

        fn over_for(
            db: crate::route::store::Store,
            path: std::path::PathBuf,
            make: fn(Option<std::sync::mpsc::Sender<store::StoreOp>>) -> Arc<Shared>,
        ) -> StoreRun {
            let (tx, rx) = std::sync::mpsc::channel();
            let shared = make(Some(tx));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stats = Arc::new(store::StoreStats::default());
            let thread = {
                let (shared, stop, stats) = (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&stats));
                std::thread::spawn(move || store::run(db, rx, shared, stats, &stop))
            };
            StoreRun { shared, stats, path, stop, thread }
        }

        /// Stops the thread as a process end would (nothing more is written).
        fn stop(self) {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.join().unwrap();
        }
    }

    /// Polls `f` until it sends a request: with a store, a converged message's parts
    /// wait for its correlation record to be durable, and a stored receipt for its lane.
    fn send_within(f: &mut Flows) -> SmppSend {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            f.poll(0, NOW);
            if let Some((_, SmppOut::Send(send))) = f.poll_smpp(0) {
                return send;
            }
            assert!(Instant::now() < deadline, "no submit_sm");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Polls `f` until an answer comes (the store thread completes asynchronously).
    fn answer_within(f: &mut Flows, what: &str) -> SipAnswer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            f.poll(0, NOW);
            if let Some(a) = f.poll_any_answer() {
                return a;
            }
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn conv_message(number: &str, call: &str) -> String {
        conv_message_asking(number, call, "positive-delivery")
    }

    fn conv_message_asking(number: &str, call: &str, dispositions: &str) -> String {
        conv_text(number, call, dispositions, "hi")
    }

    fn conv_text(number: &str, call: &str, dispositions: &str, text: &str) -> String {
        let cpim = format!(
            "From: <sip:+447900000001@ims.lab;user=phone>\r\nTo: <tel:{number}>\r\n\
    NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: conv-1\r\nDateTime: 2027-01-15T08:00:00Z\r\n\
    imdn.Disposition-Notification: {dispositions}\r\n\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        format!(
            "MESSAGE tel:{number} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\n\
    From: <sip:+447900000001@ims.lab;user=phone>;tag=a\r\nTo: <tel:{number}>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\n\
    Content-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
            cpim.len()
        )
    }

    fn smsc_receipt(seq: u32, id: &str) -> Vec<u8> {
        let text = format!(
            "id:{id} sub:001 dlvrd:001 submit date:2701150800 done date:2701150801 stat:DELIVRD err:000 text:hi"
        );
        let mut receipt = submit(seq, 0, 0x04, text.as_bytes(), &[]);
        receipt[4..8].copy_from_slice(&0x0000_0005u32.to_be_bytes()); // deliver_sm
        receipt
    }

    #[test]
    fn a_correlation_acknowledged_before_a_restart_still_turns_its_receipt_into_an_imdn() {
        let store = StoreRun::start("iwf-flow-corr");
        let (shared, stats, path) = (Arc::clone(&store.shared), Arc::clone(&store.stats), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let sip = conv_message("+447000300001", "corr1");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let send = send_within(&mut f);
        f.smpp_sent(SMSCC, 9, send);
        f.smpp_response(NOW, SMSCC, 9, CommandStatus::ESME_ROK, b"smsc-9");
        let answer = answer_within(&mut f, "no 200 after the store");
        assert_eq!(answer.status, 200);
        assert!(stats.writes.load(Ordering::Relaxed) >= 2, "record and id durable before the 200");
        // The process dies here (nothing more is written); a new one reads the store.
        store.stop();
        drop(f);
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let shared2 = self::shared(None);
        let mut f2 = flows(&shared2);
        assert_eq!(f2.restore(&db.restorable(NOW + 30).unwrap(), NOW + 30), 1);
        f2.bound(SMSCC, 3, true);
        f2.smpp_request(0, NOW + 60, SMSCC, 5, &Pdu::parse(&smsc_receipt(5, "smsc-9")).unwrap());
        let r = f2.poll_request().expect("the IMDN, from the restored correlation");
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(text.contains("<message-id>conv-1</message-id>") && text.contains("<delivered/>"), "{text}");
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    /// Answers polled until `n` deliver_sm_resps came (the store completes
    /// asynchronously); each `(seq, status)`.
    fn resps_within(f: &mut Flows, n: usize, what: &str) -> Vec<(u32, CommandStatus)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            f.poll(0, NOW);
            while let Some((_, o)) = f.poll_smpp(0) {
                if let SmppOut::Respond { seq, status, .. } = o {
                    got.push((seq, status));
                }
            }
            assert!(Instant::now() < deadline, "{what}: {got:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
        got
    }

    /// Receipts for ids iwf never gave out (more than the SMSC's window) are answered
    /// once durably parked, not held for their park time; a real message's receipt on
    /// the same bind still turns into its IMDN at once. A parked receipt whose resp
    /// comes later becomes its IMDN, and its record goes with the IMDN's 2xx.
    #[test]
    fn receipts_for_unknown_ids_are_answered_once_durably_parked() {
        let store = StoreRun::start("iwf-flow-park");
        let (shared, path) = (Arc::clone(&store.shared), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        // A message submitted whose resp has not come yet.
        let t = conv_submitted(&mut f, &mut server, "park-late", 40, "positive-delivery");
        for seq in 1..=15u32 {
            receipt_in(&mut f, NOW, seq, &format!("unknown-{seq}"));
        }
        // The late message's own receipt, before its resp, too.
        receipt_in(&mut f, NOW, 16, "late-1");
        let resps = resps_within(&mut f, 16, "every parked receipt answered");
        assert!(resps.iter().all(|(_, st)| *st == CommandStatus::ESME_ROK), "{resps:?}");
        assert_eq!(shared.stats.smsc_receipts_parked_durably.load(Ordering::Relaxed), 16);
        // A real message on the same bind: its receipt becomes an IMDN at once.
        conv_sent(&mut f, &mut server, "park-real", 41, b"real-1");
        let _ = answer_within(&mut f, "the real message's 200");
        receipt_in(&mut f, NOW, 17, "real-1");
        let imdn = f.poll_request().expect("the real message's IMDN");
        f.sip_final(imdn.token, 200);
        assert_eq!(resps_within(&mut f, 1, "the real receipt's resp"), [(17, CommandStatus::ESME_ROK)]);
        // The late resp binds the parked id: its IMDN goes, and nothing more is owed to
        // the SMSC (the receipt was answered when parked).
        f.smpp_response(NOW, SMSCC, 40, CommandStatus::ESME_ROK, b"late-1");
        let late = f.poll_request().expect("the parked receipt's IMDN");
        assert!(String::from_utf8_lossy(&late.bytes).contains("<delivered/>"));
        let writes = store.stats.writes.load(Ordering::Relaxed);
        f.sip_final(late.token, 200);
        assert!(f.poll_smpp(0).is_none(), "no second answer for a parked receipt");
        let _ = t;
        // The removal is committed with the store's next batch.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.stats.writes.load(Ordering::Relaxed) == writes {
            assert!(Instant::now() < deadline, "the parked record's removal never committed");
            std::thread::sleep(Duration::from_millis(2));
        }
        store.stop();
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let left: Vec<_> = db.parked(NOW).unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(left.len(), 15, "the applied one's record went, the unknown ones wait");
        assert!(left.iter().all(|id| id.as_bytes().starts_with(b"unknown-")));
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    /// A receipt answered when parked, then its IMDN failed: it is applied again at
    /// the next sweep (its SMSC will not send it again), and after a restart a parked
    /// receipt is applied again from the store.
    #[test]
    fn a_parked_receipt_survives_a_failed_imdn_and_a_restart() {
        let store = StoreRun::start("iwf-flow-park2");
        let (shared, path) = (Arc::clone(&store.shared), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_submitted(&mut f, &mut server, "park-fail", 50, "positive-delivery");
        receipt_in(&mut f, NOW, 1, "pf-1");
        assert_eq!(resps_within(&mut f, 1, "parked"), [(1, CommandStatus::ESME_ROK)]);
        f.smpp_response(NOW, SMSCC, 50, CommandStatus::ESME_ROK, b"pf-1");
        let _ = answer_within(&mut f, "the message's 200");
        let first = f.poll_request().expect("the IMDN");
        f.sip_final(first.token, 503);
        assert!(f.poll_request().is_none());
        // The next second's sweep applies it again.
        f.poll(0, NOW + 1);
        let again = f.poll_request().expect("the IMDN again");
        assert!(String::from_utf8_lossy(&again.bytes).contains("<delivered/>"));
        // A receipt parked for an id that only the restored store knows.
        conv_submitted(&mut f, &mut server, "park-restart", 51, "positive-delivery");
        receipt_in(&mut f, NOW, 2, "pr-1");
        assert_eq!(resps_within(&mut f, 1, "parked"), [(2, CommandStatus::ESME_ROK)]);
        store.stop();
        drop(f);
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let parked = db.parked(NOW).unwrap();
        assert_eq!(parked.len(), 2, "{parked:?}");
        let shared2 = self::shared(None);
        // (In a cluster: the box restarting may hold receipts of another box's messages.)
        let (tx, intake) = std::sync::mpsc::channel();
        shared2.cluster.set(cluster::ClusterLink::new(tx)).unwrap();
        let mut f2 = flows(&shared2);
        assert_eq!(f2.restore_parked(&parked, NOW + 5), 2);
        // Parked anew (their resps never come after a restart), each asked of the
        // cluster, and counted unmatched when the park time ends (the cluster knew none).
        let asked: Vec<String> = intake
            .try_iter()
            .filter_map(|op| match op {
                cluster::ClusterOp::Find { id, .. } => Some(String::from_utf8_lossy(id.as_bytes()).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(f2.poll_request().is_none());
        f2.poll(0, NOW + 5 + 31);
        assert_eq!(shared2.stats.smsc_receipts_absorbed.load(Ordering::Relaxed), 2);
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_route_restricted_to_another_content_type_answers_415() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replace("system = \"smsc-c\"", "system = \"smsc-c\"\ncontent_type = \"application/x-other\"");
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let sip = conv_message("+447000300001", "ct1");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(415));
        assert!(f.poll_smpp(0).is_none());
        let mut buf = [0u8; 64];
        let mut headers = [Header::EMPTY; 32];
        let Ok(Status::Complete(_, msg)) = Parser::datagram().parse(sip.as_bytes(), &mut headers) else { panic!() };
        let mut cpim_headers = [crate::wire::cpim::EMPTY_HEADER; MAX_CPIM_HEADERS];
        let content = SipContent::of(&msg, &mut cpim_headers);
        assert!(matches!(content, SipContent::Cpim(_)), "the CPIM body, parsed once");
        assert_eq!(content_type_of(&content, &mut buf), Some("text/plain"));
    }

    /// Exchange selection by length: a text over `[converged] sms_max_parts` SMS parts,
    /// for a number with only SMS routes, is answered 488 and nothing is submitted; the
    /// same text within the limit goes to the SMS centre.
    #[test]
    fn text_over_the_sms_limit_without_an_mms_route_answers_488() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replace("[converged]", "[converged]\nsms_max_parts = 2");
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let sip = conv_text("+447000300001", "len1", "positive-delivery", &"x".repeat(2 * 153 + 1));
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        assert_eq!(
            f.poll_any_answer().map(|a| (a.status, a.reason)),
            Some((488, crate::route::select::SelectError::TextTooLong.sip_status().1))
        );
        assert!(f.poll_smpp(0).is_none(), "nothing submitted");
        // Two parts exactly: submitted.
        let sip = conv_text("+447000300001", "len2", "positive-delivery", &"x".repeat(2 * 153));
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        assert!(f.poll_any_answer().is_none(), "waiting for the SMSC");
    }

    const MMSC: ConnRef = ConnRef::new(0, 7);

    /// The lab's provisioning with MMS centre 9 (`mmsc-m`) beside the SMS centres.
    fn mms_shared() -> Arc<Shared> {
        mms_shared_with(None)
    }

    fn mms_shared_with(store: Option<std::sync::mpsc::Sender<store::StoreOp>>) -> Arc<Shared> {
        Arc::new(Shared::new(mms_provision(), 1, store).unwrap())
    }

    fn mms_provision() -> Provision {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let mut p = Provision::parse(&text).unwrap();
        p.legacy.push(LegacyConfig {
            id: 9,
            name: "mmsc-m".into(),
            allow: vec![(std::net::Ipv4Addr::new(198, 18, 1, 1), 32)],
            exchange: crate::route::select::ExchangeKind::Mms,
            mms: Some(crate::control::config::MmscConfig {
                domain: "mmsc-m.lab".into(),
                next_hop: "198.18.1.1:2525".parse().unwrap(),
                next_hop_port: 0,
                max_message_size: 1 << 20,
                mm4_version: "6.10.0".into(),
            }),
            ..LegacyConfig::default()
        });
        p
    }

    fn mm4_forward(to: &str, ack: &str) -> Vec<u8> {
        format!(
            "X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_forward.REQ\r\nX-Mms-Transaction-ID: mt-1\r\n\
             X-Mms-Message-ID: <mm-1@mmsc-m.lab>\r\nFrom: +447000400001/TYPE=PLMN@mmsc-m.lab\r\nTo: {to}\r\n\
             X-Mms-Delivery-Report: Yes\r\nX-Mms-Read-Reply: Yes\r\nX-Mms-Ack-Request: {ack}\r\n\
             X-Mms-Originator-System: system-user@mmsc-m.lab\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nlook\r\n\
             --b\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n/9j/4AAQSkZJRgABDQou\r\n--b--\r\n"
        )
        .into_bytes()
    }

    const MMS_USER: &str = "+447000200001/TYPE=PLMN@iwf.ims.lab";

    /// An MMS from an MMS centre becomes a MESSAGE over TCP carrying its parts and the
    /// centre's tag; the SMTP reply and the MM4_forward.RES wait for its final response.
    #[test]
    fn an_mms_is_relayed_and_answered_after_the_final_response() {
        let shared = mms_shared();
        let mut f = flows(&shared);
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        assert!(f.poll_smtp_answer(0).is_none(), "no answer before the converged side's");
        assert!(f.poll_request().is_none(), "an MMS goes over TCP");
        let r = f.poll_request_tcp().expect("a MESSAGE");
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(
            text.starts_with("MESSAGE sip:+447000200001@ims.lab;user=phone SIP/2.0\r\nVia: SIP/2.0/TCP "),
            "{text}"
        );
        assert!(text.contains("multipart/related") && text.contains("image/jpeg"), "{text}");
        assert!(text.contains("positive-delivery") && text.contains("display"), "{text}");
        let tag = text.split("imdn.Message-ID: ").nth(1).and_then(|t| t.get(..TAG_LEN)).unwrap();
        assert_eq!(crate::tag::decode_unauthenticated(tag.as_bytes()).unwrap().0.system, 9);
        f.sip_final(r.token, 200);
        let (conn, reply) = f.poll_smtp_answer(0).unwrap();
        assert_eq!((conn, reply.code), (MMSC, 250));
        let res = f.poll_mm4_out(|_| true).expect("the MM4_forward.RES");
        assert_eq!(
            (res.system, res.rcpt.as_str(), res.from.as_str()),
            (9, "system-user@mmsc-m.lab", "system@iwf.ims.lab")
        );
        let m = crate::wire::mm4::Mm4::parse(&res.data).unwrap();
        assert_eq!(
            (m.kind, m.request_status),
            (crate::wire::mm4::MessageType::ForwardRes, Some(crate::wire::mm4::RequestStatus::Ok))
        );
        assert_eq!((m.transaction_id.as_str(), m.message_id.as_deref()), ("mt-1", Some("mm-1@mmsc-m.lab")));
        assert_eq!(shared.stats.mm4_in.load(Ordering::Relaxed), 1);
        // Per MMS centre, as for the SMS centres (its rows in /metrics).
        let st = shared.system(9).unwrap();
        assert_eq!((st.messages_in.load(Ordering::Relaxed), st.messages_accepted.load(Ordering::Relaxed)), (1, 1));
    }

    /// How each outcome is answered: a refusal in the .RES when one is asked for (SMTP
    /// 250), in the SMTP reply when not; a transient failure 451 and no .RES; what
    /// cannot be read 554; a report about no message iwf sent, Error-message-not-found.
    #[test]
    fn mms_refusals_are_specific() {
        use crate::wire::mm4::{Mm4, RequestStatus};
        let shared = mms_shared();
        let mut f = flows(&shared);
        let status_of = |o: &Mm4Out| Mm4::parse(&o.data).unwrap().request_status;
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        let r = f.poll_request_tcp().unwrap();
        f.sip_final(r.token, 404);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        assert_eq!(
            f.poll_mm4_out(|_| true).map(|o| status_of(&o)),
            Some(Some(RequestStatus::ErrorSendingAddressUnresolved))
        );
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "No") });
        let r = f.poll_request_tcp().unwrap();
        f.sip_final(r.token, 603);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(550));
        assert!(f.poll_mm4_out(|_| true).is_none());
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        let r = f.poll_request_tcp().unwrap();
        f.sip_final(r.token, 503);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(451));
        assert!(f.poll_mm4_out(|_| true).is_none(), "the MMS centre sends it again: no .RES");
        // Unreadable; another relay's user; two recipients.
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: b"Subject: hi\r\n\r\nbody" });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(554));
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward("+4412/TYPE=PLMN@elsewhere.lab", "No") });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(550));
        let two = format!("{MMS_USER}, +447000200002/TYPE=PLMN@iwf.ims.lab");
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(&two, "Yes") });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        assert_eq!(
            f.poll_mm4_out(|_| true).map(|o| status_of(&o)),
            Some(Some(RequestStatus::ErrorSendingAddressUnresolved))
        );
        assert!(f.poll_request_tcp().is_none());
        // A report about no message iwf forwarded.
        let report = b"X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_delivery_report.REQ\r\nX-Mms-Transaction-ID: d1\r\nX-Mms-Message-ID: nope\r\nFrom: +447000400001/TYPE=PLMN@mmsc-m.lab\r\nTo: +447000200001/TYPE=PLMN@iwf.ims.lab\r\nX-Mms-MM-Status-Code: Retrieved\r\nX-Mms-Ack-Request: Yes\r\n\r\n";
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: report });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        let res = f.poll_mm4_out(|_| true).unwrap();
        let m = Mm4::parse(&res.data).unwrap();
        assert_eq!(
            (m.kind, m.request_status),
            (crate::wire::mm4::MessageType::DeliveryReportRes, Some(RequestStatus::ErrorMessageNotFound))
        );
        // An SMS centre is no MMS centre.
        f.handle(0, Input::Mm4 { conn: MMSC, system: 1, data: &mm4_forward(MMS_USER, "Yes") });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(554));
        // The connection gone before the final: no reply reaches the slot's next one,
        // the .RES still goes.
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        let r = f.poll_request_tcp().unwrap();
        f.handle(0, Input::Closed { conn: MMSC });
        f.sip_final(r.token, 200);
        assert!(f.poll_smtp_answer(0).is_none());
        assert_eq!(f.poll_mm4_out(|_| true).map(|o| status_of(&o)), Some(Some(RequestStatus::Ok)));
        assert_eq!(shared.drops().find(|(n, _)| *n == "mm4_invalid").map(|(_, c)| c), Some(1));
    }

    /// An MMS whose MESSAGE gets no final response (it never left: no connection to
    /// the SIP core) is answered 451 once its time is up, not left waiting; a final
    /// response after that changes nothing.
    #[test]
    fn an_mms_without_a_final_response_is_answered_451_in_time() {
        let shared = mms_shared();
        let mut f = flows(&shared);
        f.poll(0, NOW);
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        let r = f.poll_request_tcp().expect("the MESSAGE");
        f.poll(1_000, NOW + 39);
        assert!(f.poll_smtp_answer(0).is_none(), "not yet");
        f.poll(2_000, NOW + 40);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(451));
        f.sip_final(r.token, 200);
        assert!(f.poll_smtp_answer(0).is_none() && f.poll_mm4_out(|_| true).is_none());
        assert_eq!(shared.stats.mm4_retry.load(Ordering::Relaxed), 1);
    }

    /// An IMDN from the converged user about an MMS.
    fn mms_imdn(tag: &str, status: &str, kind: &str, n: &str) -> Vec<u8> {
        imdn_between(tag, status, kind, "+447000200001@ims.lab", "+447000400001@iwf.ims.lab", n)
    }

    /// Relays one MMS (asking for both reports) and returns its tag.
    fn relay_mms(f: &mut Flows) -> String {
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "No") });
        let r = f.poll_request_tcp().expect("the MESSAGE");
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        tag_of(&r.bytes)
    }

    /// The converged user's IMDNs about an MMS become the MM4 reports the MMS asked
    /// for, to the centre's originator system and naming the centre's own message id;
    /// each IMDN is answered 200 only once the centre took its report (SMTP 250), 503
    /// when it refused it (the resend makes it again); once every report went, the
    /// MMS is forgotten.
    #[test]
    fn an_mms_imdn_becomes_its_centres_report_answered_after_the_centre_took_it() {
        use crate::wire::mm4::{MessageType, Mm4, MmStatus, ReadStatus};
        let shared = mms_shared();
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.poll(0, NOW);
        let tag = relay_mms(&mut f);
        let mut imdn_in = |f: &mut Flows, status: &str, kind: &str, n: &str| {
            let sip = mms_imdn(&tag, status, kind, n);
            let t = txn(&mut server, &sip);
            deliver(f, &shared, NOW, &sip, t);
        };
        imdn_in(&mut f, "delivered", "delivery", "");
        let early = f.poll_any_answer();
        assert!(early.is_none(), "no answer before the centre took the report: {early:?}");
        let out = f.poll_mm4_out(|_| true).expect("the delivery report");
        assert_eq!((out.system, out.rcpt.as_str()), (9, "system-user@mmsc-m.lab"));
        let m = Mm4::parse(&out.data).unwrap();
        assert_eq!(
            (m.kind, m.mm_status, m.message_id.as_deref()),
            (MessageType::DeliveryReportReq, Some(MmStatus::Retrieved), Some("mm-1@mmsc-m.lab"))
        );
        assert_eq!(m.from.map(|a| a.to_string()).as_deref(), Some(MMS_USER));
        assert_eq!(m.to.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["+447000400001/TYPE=PLMN@mmsc-m.lab"]);
        assert!(m.ack_request);
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        // The display: refused by the centre first (503), taken on the resend.
        imdn_in(&mut f, "displayed", "display", "");
        let out = f.poll_mm4_out(|_| true).expect("the read-reply report");
        let m = Mm4::parse(&out.data).unwrap();
        assert_eq!((m.kind, m.read_status), (MessageType::ReadReplyReportReq, Some(ReadStatus::Read)));
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: false });
        let a = f.poll_any_answer().unwrap();
        assert_eq!((a.status, a.retry_after), (503, Some(30)));
        assert_eq!(f.mms.origins.len(), 1, "still owed");
        imdn_in(&mut f, "displayed", "display", "2");
        let out = f.poll_mm4_out(|_| true).expect("the read-reply report again");
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        assert!(f.mms.origins.is_empty(), "every report went: forgotten");
        // A resend of the delivery IMDN is a replay; nothing goes again.
        imdn_in(&mut f, "delivered", "delivery", "3");
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        assert!(f.poll_mm4_out(|_| true).is_none());
        assert_eq!(shared.stats.mm4_reports_sent.load(Ordering::Relaxed), 2);
        assert_eq!(shared.stats.mm4_reports_failed.load(Ordering::Relaxed), 1);
        assert_eq!(shared.system(9).unwrap().receipts_delivered.load(Ordering::Relaxed), 2);
    }

    /// A report the centre does not take in time answers its IMDN 503 (its sender
    /// tries again), a late outcome changes nothing; a failed delivery settles the
    /// read reply too; an IMDN about an MMS no longer kept is answered 200 and
    /// counted; a deferral makes a report and settles nothing.
    #[test]
    fn mms_reports_are_bounded_in_time_and_settle_what_they_report() {
        use crate::wire::mm4::{Mm4, MmStatus};
        let shared = mms_shared();
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.poll(0, NOW);
        let tag = relay_mms(&mut f);
        let mut imdn_in = |f: &mut Flows, status: &str, kind: &str, n: &str| {
            let sip = mms_imdn(&tag, status, kind, n);
            let t = txn(&mut server, &sip);
            deliver(f, &shared, NOW, &sip, t);
        };
        imdn_in(&mut f, "stored", "processing", "");
        let out = f.poll_mm4_out(|_| true).expect("a deferral report");
        assert_eq!(Mm4::parse(&out.data).unwrap().mm_status, Some(MmStatus::Deferred));
        f.poll(1_000, NOW + 24);
        assert!(f.poll_any_answer().is_none(), "not yet");
        f.poll(2_000, NOW + 25);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(503));
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert!(f.poll_any_answer().is_none(), "answered already");
        imdn_in(&mut f, "failed", "delivery", "");
        let out = f.poll_mm4_out(|_| true).expect("a failure report");
        assert_eq!(Mm4::parse(&out.data).unwrap().mm_status, Some(MmStatus::Rejected));
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        assert!(f.mms.origins.is_empty(), "no read reply follows a failed delivery");
        imdn_in(&mut f, "displayed", "display", "");
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        assert!(f.poll_mm4_out(|_| true).is_none());
        assert_eq!(shared.stats.mm4_reports_unowed.load(Ordering::Relaxed), 1);
        // Past the provisioned validity an MMS's origin is gone.
        let tag2 = relay_mms(&mut f);
        assert_eq!(f.mms.origins.len(), 1);
        let past = f.unix + shared.provision.load().converged.message_validity_s + 1;
        f.poll(3_000, past);
        assert!(f.mms.origins.is_empty());
        let sip = mms_imdn(&tag2, "delivered", "delivery", "");
        let t = txn(&mut server, &sip);
        deliver(&mut f, &shared, past, &sip, t);
        assert!(f.poll_mm4_out(|_| true).is_none());
    }

    /// An IMDN about an MMS that landed on another worker is handed to the worker that
    /// relayed the MMS (its tag names it), which keeps its origin and makes the report;
    /// the answer goes back to the IMDN's transaction once the centre took it.
    #[test]
    fn an_mms_imdn_on_another_worker_is_reported_by_the_one_that_relayed_it() {
        let shared = Arc::new(Shared::new(mms_provision(), 2, None).unwrap());
        let (mut c0, mut c1) = (flows(&shared), Flows::new(FlowsConfig { core: 1, ..f_config() }, Arc::clone(&shared)));
        c0.poll(0, NOW);
        c1.poll(0, NOW);
        let tag = relay_mms(&mut c1);
        let mut server = ServerTransactions::new(ServerConfig::default());
        let sip = mms_imdn(&tag, "delivered", "delivery", "");
        let t = txn(&mut server, &sip);
        deliver(&mut c0, &shared, NOW, &sip, t);
        assert!(c0.poll_mm4_out(|_| true).is_none() && c0.poll_any_answer().is_none(), "core 0 keeps nothing of it");
        c1.poll(1, NOW);
        let out = c1.poll_mm4_out(|_| true).expect("core 1 makes the report");
        c1.handle(1, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        c0.poll(2, NOW);
        assert_eq!(c0.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        let owed: Vec<u8> = c1.mms.origins.values().map(|o| o.owed).collect();
        assert_eq!(owed, [crate::route::store::MmsOrigin::READ], "the delivery settled, the read reply still owed");
    }

    /// An MM4 report from the lab's mmsc-m (system 4) about MMS `id`: `kind` is
    /// `delivery_report` (`status` an MM status) or `read_reply_report` (a read status).
    fn mmsc_report(kind: &str, id: &str, status: &str) -> Vec<u8> {
        let (name, header) = match kind {
            "delivery_report" => ("MM4_delivery_report.REQ", "X-Mms-MM-Status-Code"),
            _ => ("MM4_read_reply_report.REQ", "X-Mms-Read-Status"),
        };
        format!(
            "X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: {name}\r\nX-Mms-Transaction-ID: r-{status}\r\n\
             X-Mms-Message-ID: {id}\r\nFrom: +447000400001/TYPE=PLMN@mmsc-m.lab\r\n\
             To: +447900000001/TYPE=PLMN@iwf.ims.lab\r\n{header}: {status}\r\nX-Mms-Ack-Request: Yes\r\n\r\n"
        )
        .into_bytes()
    }

    /// A converged user's MESSAGE to an MMS user (the lab's +4470004 route to mmsc-m)
    /// and what it becomes: an MM4_forward.REQ to the centre, correlated first, the
    /// MESSAGE answered 200 once the centre took it; the centre's delivery and
    /// read-reply reports become the sender's IMDNs, and the centre hears 250 and its
    /// .RES once each IMDN was taken.
    #[test]
    fn a_converged_message_to_an_mms_user_is_forwarded_and_its_reports_become_imdns() {
        use crate::wire::mm4::{MessageType, Mm4, RequestStatus};
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.poll(0, NOW);
        let sip = conv_text("+447000400001", "mms-out1", "positive-delivery, display", "a picture, soon");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let out = f.poll_mm4_out(|_| true).expect("the MM4_forward.REQ");
        assert_eq!((out.system, out.rcpt.as_str()), (4, "+447000400001/TYPE=PLMN@mmsc-m.lab"));
        let m = Mm4::parse(&out.data).unwrap();
        assert_eq!(m.kind, MessageType::ForwardReq);
        assert_eq!(m.from.as_ref().map(|a| a.to_string()).as_deref(), Some("+447900000001/TYPE=PLMN@iwf.ims.lab"));
        assert!(m.delivery_report && m.read_reply && m.ack_request);
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.parts[0].body, b"a picture, soon");
        let id = m.message_id.clone().unwrap();
        assert!(f.poll_any_answer().is_none(), "no 200 before the centre took it");
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert_eq!(f.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        // The centre's .RES: taken. Its delivery report: the IMDN, then 250 and a .RES.
        let res = crate::wire::mm4::forward_res(
            &crate::wire::mm4::Envelope {
                transaction_id: "x",
                sender: "system-user@mmsc-m.lab",
                rfc_message_id: "x@mmsc-m.lab",
                date: 0,
            },
            &m,
            RequestStatus::Ok,
            None,
        );
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &res });
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("delivery_report", &id, "Retrieved") });
        assert!(f.poll_smtp_answer(0).is_none(), "not before the IMDN was taken");
        let r = f.poll_request().expect("the delivery IMDN");
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(text.contains("<message-id>conv-1</message-id>") && text.contains("<delivered/>"), "{text}");
        assert!(text.starts_with("MESSAGE sip:+447900000001@ims.lab"), "to the converged sender: {text}");
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(c, r)| (c, r.code)), Some((MMSC, 250)));
        let res = Mm4::parse(&f.poll_mm4_out(|_| true).expect("the .RES").data).unwrap();
        assert_eq!((res.kind, res.request_status), (MessageType::DeliveryReportRes, Some(RequestStatus::Ok)));
        // The read reply: the display IMDN; a failed IMDN makes the centre try again.
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("read_reply_report", &id, "Read") });
        let r = f.poll_request().expect("the display IMDN");
        assert!(String::from_utf8_lossy(&r.bytes).contains("<displayed/>"));
        f.sip_final(r.token, 503);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(451));
        assert!(f.poll_mm4_out(|_| true).is_none(), "no .RES for a report not relayed");
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("read_reply_report", &id, "Read") });
        let r = f.poll_request().expect("the display IMDN again");
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        assert_eq!(shared.stats.mm4_reports_in.load(Ordering::Relaxed), 3);
        assert_eq!(shared.system(4).unwrap().messages_out.load(Ordering::Relaxed), 1);
    }

    /// A forward the centre does not take answers its MESSAGE 503 and drops its
    /// correlation; a .RES refusing a forward is its sender's failure notification;
    /// a report about an id iwf never gave is Error-message-not-found.
    #[test]
    fn converged_mms_failures_are_answered_and_refusals_become_failure_imdns() {
        use crate::wire::mm4::{Mm4, RequestStatus};
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.poll(0, NOW);
        let sip = conv_text("+447000400001", "mms-out2", "positive-delivery, negative-delivery", "one");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let out = f.poll_mm4_out(|_| true).unwrap();
        let corr = f.in_flight().3;
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: false });
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(503));
        assert_eq!(f.in_flight().3, corr - 1, "its correlation went");
        // Taken, then refused in the centre's .RES: a failure IMDN.
        let sip = conv_text("+447000400001", "mms-out3", "positive-delivery, negative-delivery", "two");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let out = f.poll_mm4_out(|_| true).unwrap();
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        let m = Mm4::parse(&out.data).unwrap();
        let e = crate::wire::mm4::Envelope {
            transaction_id: "x",
            sender: "s@mmsc-m.lab",
            rfc_message_id: "y@mmsc-m.lab",
            date: 0,
        };
        let res = crate::wire::mm4::forward_res(&e, &m, RequestStatus::ErrorSendingAddressUnresolved, None);
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &res });
        let r = f.poll_request().expect("the failure IMDN");
        assert!(String::from_utf8_lossy(&r.bytes).contains("<failed/>"), "{}", String::from_utf8_lossy(&r.bytes));
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        assert!(f.poll_mm4_out(|_| true).is_none(), "no .RES for a .RES");
        // An id iwf never gave.
        f.handle(
            0,
            Input::Mm4 {
                conn: MMSC,
                system: 4,
                data: &mmsc_report("delivery_report", "0.1.2@iwf.ims.lab", "Retrieved"),
            },
        );
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        let res = Mm4::parse(&f.poll_mm4_out(|_| true).unwrap().data).unwrap();
        assert_eq!(res.request_status, Some(RequestStatus::ErrorMessageNotFound));
    }

    /// What an MMS that was not relayed kept for its reports goes with it (the centre's
    /// resend gets a new tag); a report whose IMDN is refused for good is answered so
    /// (250 and the .RES's error status), not left for the centre to resend for ever; a
    /// connection that closes takes its reports' answers with it.
    #[test]
    fn mms_state_goes_with_what_it_was_for() {
        use crate::wire::mm4::{Mm4, RequestStatus};
        let shared = mms_shared();
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.poll(0, NOW);
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "No") });
        let r = f.poll_request_tcp().unwrap();
        assert_eq!(f.mms.origins.len(), 1);
        f.sip_final(r.token, 480);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(451));
        assert!(f.mms.origins.is_empty(), "not relayed: nothing to report on");
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "No") });
        let _ = f.poll_request_tcp().unwrap();
        f.poll(1_000, NOW + 40);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(451));
        assert!(f.mms.origins.is_empty(), "timed out: nothing to report on");
        // Converged → MMS: a report whose IMDN the core refuses for good.
        let sip = conv_text("+447000400001", "mms-out9", "positive-delivery, display", "x");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW + 40, sip.as_bytes(), t);
        let out = f.poll_mm4_out(|_| true).unwrap();
        f.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        let _ = f.poll_any_answer();
        let id = Mm4::parse(&out.data).unwrap().message_id.unwrap();
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("delivery_report", &id, "Retrieved") });
        let r = f.poll_request().expect("the IMDN");
        f.sip_final(r.token, 404);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        let res = Mm4::parse(&f.poll_mm4_out(|_| true).unwrap().data).unwrap();
        assert_eq!(res.request_status, Some(RequestStatus::ErrorSendingAddressUnresolved));
        // The read reply's connection closes before its IMDN's answer: nothing is
        // answered on the slot, and nothing is kept.
        f.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("read_reply_report", &id, "Read") });
        let r = f.poll_request().expect("the display IMDN");
        f.handle(0, Input::Closed { conn: MMSC });
        assert!(f.mms.report_acks.is_empty());
        f.sip_final(r.token, 200);
        assert!(f.poll_smtp_answer(0).is_none() && f.poll_mm4_out(|_| true).is_none());
    }

    /// A report landing on another worker than the one that forwarded its MMS is
    /// handed there (the id names it); its IMDN goes from there, and the centre hears
    /// 250 on its own connection once the IMDN was taken.
    #[test]
    fn an_mms_report_on_another_worker_is_handed_to_the_one_that_forwarded_it() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 2, None).unwrap());
        let (mut c0, mut c1) = (flows(&shared), Flows::new(FlowsConfig { core: 1, ..f_config() }, Arc::clone(&shared)));
        c0.poll(0, NOW);
        c1.poll(0, NOW);
        let mut server = ServerTransactions::new(ServerConfig::default());
        let sip = conv_text("+447000400001", "mms-out4", "positive-delivery", "three");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut c1, &shared, NOW, sip.as_bytes(), t);
        let out = c1.poll_mm4_out(|_| true).unwrap();
        c1.handle(0, Input::Mm4Done { token: out.token.unwrap(), delivered: true });
        let id = crate::wire::mm4::Mm4::parse(&out.data).unwrap().message_id.unwrap();
        assert!(id.starts_with("1."), "{id}");
        c0.handle(0, Input::Mm4 { conn: MMSC, system: 4, data: &mmsc_report("delivery_report", &id, "Retrieved") });
        assert!(c0.poll_request().is_none() && c0.poll_smtp_answer(0).is_none());
        c1.poll(1, NOW);
        let r = c1.poll_request().expect("core 1 sends the IMDN");
        c1.sip_final(r.token, 200);
        c0.poll(2, NOW);
        assert_eq!(c0.poll_smtp_answer(0).map(|(c, r)| (c, r.code)), Some((MMSC, 250)));
        assert!(c0.poll_mm4_out(|_| true).is_some(), "core 0 sends the .RES on its client");
    }

    /// With a store, what an MMS's reports need is durable before its MESSAGE goes,
    /// and survives a restart: the IMDN that comes after one still becomes the report.
    #[test]
    fn an_mms_origin_is_durable_before_its_message_and_survives_a_restart() {
        let store = StoreRun::start_for("iwf-flow-mms", mms_shared_with);
        let (shared, stats, path) = (Arc::clone(&store.shared), Arc::clone(&store.stats), store.path.clone());
        let mut f = flows(&shared);
        f.poll(0, NOW);
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "No") });
        assert!(f.poll_request_tcp().is_none(), "not before the origin is durable");
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            f.poll(0, NOW);
            if let Some(r) = f.poll_request_tcp() {
                break r;
            }
            assert!(Instant::now() < deadline, "no MESSAGE");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(stats.writes.load(Ordering::Relaxed) >= 1);
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        let tag = tag_of(&r.bytes);
        store.stop();
        drop(f);
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let shared2 = mms_shared();
        let mut f2 = flows(&shared2);
        assert_eq!(f2.restore_mms_origins(&db.mms_origins(NOW).unwrap()), 1);
        let mut server = ServerTransactions::new(ServerConfig::default());
        let sip = mms_imdn(&tag, "delivered", "delivery", "");
        let t = txn(&mut server, &sip);
        deliver(&mut f2, &shared2, NOW + 60, &sip, t);
        let out = f2.poll_mm4_out(|_| true).expect("the report, from the restored origin");
        let m = crate::wire::mm4::Mm4::parse(&out.data).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("mm-1@mmsc-m.lab"));
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    /// The .RES for an MMS centre no SMTP client of this worker reaches is dropped and
    /// counted, not queued for ever.
    #[test]
    fn mm4_for_a_centre_no_client_reaches_is_dropped_and_counted() {
        let shared = mms_shared();
        let mut f = Flows::new(FlowsConfig { mm4_clients: Vec::new(), ..f_config() }, Arc::clone(&shared));
        f.handle(0, Input::Mm4 { conn: MMSC, system: 9, data: &mm4_forward(MMS_USER, "Yes") });
        let r = f.poll_request_tcp().unwrap();
        f.sip_final(r.token, 200);
        assert_eq!(f.poll_smtp_answer(0).map(|(_, r)| r.code), Some(250));
        assert!(!f.has_mm4_out(|_| true));
        assert_eq!(shared.drops().find(|(n, _)| *n == "mm4_no_client").map(|(_, c)| c), Some(1));
    }

    #[test]
    fn a_full_lane_throttles_the_systems_new_messages() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replace("system_id = \"smsca\"", "system_id = \"smsca\"\nlane_capacity = 2");
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        // smsc-a binds as a transmitter only: nothing takes its receipts.
        f.bound(SMSCA, 1, false);
        for token in 0..2 {
            let item = LaneItem::new(LegacySystemId(1), token, &submit(1, 0, 4, b"r", &[])).unwrap();
            shared.lanes.load().push(item).unwrap();
        }
        f.smpp_request(0, NOW, SMSCA, 9, &Pdu::parse(&submit(9, 1, 0, b"m", &[])).unwrap());
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RTHROTTLED);
        assert!(f.poll_request().is_none());
        assert_eq!(shared.stats.lane_full.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn two_cores_hand_receipts_and_converged_messages_to_the_core_holding_the_bind() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 2, None).unwrap());
        let core = |c: u16| {
            let config = FlowsConfig {
                core: c,
                next_hop: "198.18.2.1:5060".parse().unwrap(),
                local_sent_by: "198.18.2.2:5060".into(),
                parts_aside: 64,
                reassembly: (1024, 1 << 20),
                max_sip_message: 1 << 20,
                mm4_clients: Vec::new(),
            };
            Flows::new(config, Arc::clone(&shared))
        };
        let (mut c0, mut c1) = (core(0), core(1));
        let mut server = ServerTransactions::new(ServerConfig::default());
        // smsc-a and smsc-c are bound on core 0.
        c0.bound(SMSCA, 1, true);
        c0.bound(SMSCC, 3, true);
        c0.smpp_request(0, NOW, SMSCA, 1, &Pdu::parse(&submit(1, 1, 0, b"x", &[])).unwrap());
        let r = c0.poll_request().unwrap();
        let tag = tag_of(&r.bytes);
        c0.sip_final(r.token, 200);
        let _ = c0.poll_smpp(0);
        // The IMDN lands on core 1: the receipt goes out on core 0, the 200 on core 1.
        let dn = imdn(&tag, "delivered", "delivery");
        let t = txn(&mut server, &dn);
        deliver(&mut c1, &shared, NOW, &dn, t);
        c0.poll(1, NOW);
        let Some((conn, SmppOut::Send(send))) = c0.poll_smpp(0) else { panic!("core 0 sends the receipt") };
        assert_eq!(conn, SMSCA);
        c0.smpp_sent(SMSCA, 50, send);
        c0.smpp_response(NOW, SMSCA, 50, CommandStatus::ESME_ROK, b"");
        assert!(c0.poll_any_answer().is_none());
        c1.poll(1, NOW);
        assert_eq!(c1.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        // A converged message for smsc-c lands on core 1: core 0 correlates and sends it.
        let sip = conv_message("+447000300001", "x1");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut c1, &shared, NOW, sip.as_bytes(), t);
        assert!(c1.poll_smpp(0).is_none() && c1.poll_any_answer().is_none());
        c0.poll(2, NOW);
        let Some((conn, SmppOut::Send(send))) = c0.poll_smpp(0) else { panic!("core 0 sends the submit_sm") };
        assert_eq!(conn, SMSCC);
        assert_eq!(c0.in_flight().3, 1, "the correlation entry lives on core 0");
        c0.smpp_sent(SMSCC, 51, send);
        c0.smpp_response(NOW, SMSCC, 51, CommandStatus::ESME_ROK, b"c-1");
        c1.poll(3, NOW);
        assert_eq!(c1.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        // Its receipt arrives on core 0's bind: the IMDN leaves from core 0.
        c0.smpp_request(0, NOW + 9, SMSCC, 6, &Pdu::parse(&smsc_receipt(6, "c-1")).unwrap());
        assert!(c0.poll_request().is_some_and(|r| String::from_utf8_lossy(&r.bytes).contains("<delivered/>")));
        assert_eq!(c1.in_flight().0, 0);
    }

    #[test]
    fn a_throughput_limit_throttles_both_directions_per_second() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text
            .replace("system_id = \"smsca\"", "system_id = \"smsca\"\nthroughput = 2")
            .replace("system_id = \"iwf\"", "system_id = \"iwf\"\nthroughput = 1");
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCA, 1, true);
        f.bound(SMSCC, 3, true);
        for seq in 1..=3 {
            f.smpp_request(0, NOW, SMSCA, seq, &Pdu::parse(&submit(seq, 1, 0, b"m", &[])).unwrap());
        }
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RTHROTTLED, "the third in one second");
        assert_eq!((f.poll_request().is_some(), f.poll_request().is_some()), (true, true));
        // The next second admits again.
        f.smpp_request(0, NOW + 1, SMSCA, 4, &Pdu::parse(&submit(4, 1, 0, b"m", &[])).unwrap());
        assert!(f.poll_request().is_some());
        // Toward smsc-c: 1 per second, the second is 503 + Retry-After.
        for call in ["t1", "t2"] {
            let sip = conv_message("+447000300001", call);
            let t = txn(&mut server, sip.as_bytes());
            deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        }
        let a = f.poll_any_answer().expect("the second is refused at once");
        assert_eq!((a.status, a.retry_after), (503, Some(1)));
        assert_eq!(shared.system(1).unwrap().throttled.load(Ordering::Relaxed), 1);
        assert_eq!(shared.system(3).unwrap().throttled.load(Ordering::Relaxed), 1);
        assert_eq!(shared.drops().find(|(r, _)| *r == "throttled").map(|(_, n)| n), Some(2));
    }

    #[test]
    fn a_sender_without_a_number_needs_the_systems_alphanumeric_senders() {
        let message = conv_message("+447000300001", "al1")
            .replace("From: <sip:+447900000001@ims.lab;user=phone>\r\nTo", "From: <sip:alice@ims.lab>\r\nTo")
            .replace("From: <sip:+447900000001@ims.lab;user=phone>;tag=a", "From: <sip:alice@ims.lab>;tag=a");
        // The CPIM body got shorter: fix the SIP Content-Length.
        let (head, body) = message.split_once("\r\n\r\n").unwrap();
        let head = head.split("\r\n").filter(|l| !l.starts_with("Content-Length")).collect::<Vec<_>>().join("\r\n");
        let sip = format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        for (allowed, want) in [(false, Some(403)), (true, None)] {
            let text = if allowed {
                text.replace("system_id = \"iwf\"", "system_id = \"iwf\"\nalphanumeric_senders = true")
            } else {
                text.clone()
            };
            let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
            let mut f = flows(&shared);
            let mut server = ServerTransactions::new(ServerConfig::default());
            f.bound(SMSCC, 3, true);
            let t = txn(&mut server, sip.as_bytes());
            deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
            assert_eq!(f.poll_any_answer().map(|a| a.status), want);
            if allowed {
                let Some((_, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a submit_sm") };
                let Body::SubmitSm(sm) = Pdu::parse(send.item.pdu()).unwrap().body else { panic!() };
                assert_eq!((sm.source.ton, sm.source.addr), (5, &b"alice"[..]));
            }
        }
    }

    #[test]
    fn a_submit_is_answered_after_the_sip_final_with_its_tag_and_the_imdn_returns_as_a_receipt() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCA, 1, true);
        let pdu = submit(7, 0x09, 0, b"hello", &[]);
        f.smpp_request(0, NOW, SMSCA, 7, &Pdu::parse(&pdu).unwrap());
        assert!(f.poll_smpp(0).is_none(), "nothing answered before the SIP final response");
        let req = f.poll_request().expect("a SIP MESSAGE");
        let text = String::from_utf8_lossy(&req.bytes).into_owned();
        assert!(text.starts_with("MESSAGE sip:+447900000001@ims.lab;user=phone SIP/2.0\r\n"), "{text}");
        assert!(text.contains("positive-delivery") && text.contains("display"), "{text}");
        let tag = tag_of(&req.bytes);
        f.sip_final(req.token, 200);
        let (conn, seq, status, id) = respond_of(f.poll_smpp(0));
        assert_eq!((conn, seq, status, id.as_str()), (SMSCA, 7, CommandStatus::ESME_ROK, tag.as_str()));

        // The delivery notification: a deliver_sm receipt to smsc-a, 200 after its resp.
        let dn = imdn(&tag, "delivered", "delivery");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW + 5, &dn, t);
        assert!(f.poll_any_answer().is_none(), "no 200 before the legacy system acknowledged");
        f.poll(10, NOW + 5);
        let Some((conn, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a deliver_sm") };
        assert_eq!(conn, SMSCA);
        let pdu = Pdu::parse(send.item.pdu()).unwrap();
        let Body::DeliverSm(sm) = pdu.body else { panic!("{pdu:?}") };
        assert_eq!(sm.esm_class.0 & 0x3c, 0x04);
        assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(tag.as_bytes()));
        f.smpp_sent(SMSCA, 900, send);
        assert!(f.poll_any_answer().is_none());
        f.smpp_response(NOW + 5, SMSCA, 900, CommandStatus::ESME_ROK, b"");
        let a = f.poll_any_answer().expect("the IMDN's answer");
        assert_eq!((a.txn, a.status), (t, 200));

        // The display notification: user ack (0x10), asked with registered_delivery 0x09.
        let dn = imdn(&tag, "displayed", "display");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW + 9, &dn, t);
        f.poll(20, NOW + 9);
        let Some((_, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a user ack") };
        let Body::DeliverSm(sm) = Pdu::parse(send.item.pdu()).unwrap().body else { panic!() };
        assert_eq!(sm.esm_class.0 & 0x3c, 0x10);
        f.smpp_sent(SMSCA, 901, send);
        f.smpp_response(NOW + 9, SMSCA, 901, CommandStatus::ESME_ROK, b"");
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        assert_eq!(f.in_flight(), (0, 0, 0, 0));
        assert_eq!(shared.stats.receipts_delivered.load(Ordering::Relaxed), 2);
        let a = shared.system(1).unwrap();
        assert_eq!(a.messages_in.load(Ordering::Relaxed), 1);
        assert_eq!(a.messages_accepted.load(Ordering::Relaxed), 1);
        assert_eq!(a.receipts_routed.load(Ordering::Relaxed), 2);
        assert_eq!(a.receipts_delivered.load(Ordering::Relaxed), 2);
        assert_eq!(shared.system(2).unwrap().receipts_delivered.load(Ordering::Relaxed), 0);
        // Both timed, IMDN in → deliver_sm_resp: the second waited from the poll at 10 ms
        // to the one at 20 ms.
        let (counts, sum_ms) = a.receipt_latency.cumulative();
        assert_eq!(counts.last(), Some(&2), "{counts:?}");
        assert!((10..=20).contains(&sum_ms), "{sum_ms}");
        assert_eq!(shared.system(2).unwrap().receipt_latency.cumulative().0.last(), Some(&0));
    }

    #[test]
    fn sip_failures_map_to_command_status_and_unmapped_numbers_are_refused() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        f.smpp_request(0, NOW, SMSCA, 1, &Pdu::parse(&submit(1, 1, 0, b"a", &[])).unwrap());
        let r = f.poll_request().unwrap();
        f.sip_final(r.token, 404);
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RINVDSTADR);
        f.smpp_request(0, NOW, SMSCA, 2, &Pdu::parse(&submit(2, 1, 0, b"b", &[])).unwrap());
        let r = f.poll_request().unwrap();
        f.sip_final(r.token, 408);
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RX_T_APPN);
        f.smpp_request(0, NOW, SMSCA, 3, &Pdu::parse(&submit(3, 1, 0, b"c", &[])).unwrap());
        let r = f.poll_request().unwrap();
        f.sip_final(r.token, 503);
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RTHROTTLED);
        // An unbound connection's request.
        f.smpp_request(0, NOW, ConnRef::new(0, 99), 4, &Pdu::parse(&submit(4, 1, 0, b"d", &[])).unwrap());
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RINVBNDSTS);
    }

    #[test]
    fn concatenated_parts_are_sent_as_one_message_and_each_resp_gets_its_segment_tag() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        for (seq, part) in [(11u32, 1u8), (12, 2), (13, 3)] {
            let mut sm = vec![5, 0, 3, 0x42, 3, part];
            sm.extend_from_slice(b"part ");
            f.smpp_request(0, NOW, SMSCA, seq, &Pdu::parse(&submit(seq, 1, 0x40, &sm, &[])).unwrap());
        }
        // The first two wait for their siblings outside the window.
        let aside: Vec<_> = std::iter::from_fn(|| f.smpp_out.pop_any()).map(|(_, o)| o).collect();
        assert_eq!(aside, [SmppOut::SetAside { seq: 11 }, SmppOut::SetAside { seq: 12 }]);
        let r = f.poll_request().expect("one MESSAGE for three parts");
        assert!(f.poll_request().is_none());
        assert!(String::from_utf8_lossy(&r.bytes).contains("part part part "));
        f.sip_final(r.token, 200);
        let ids: Vec<_> = (0..3).map(|_| respond_of(f.poll_smpp(0))).collect();
        assert_eq!(ids.iter().map(|r| r.1).collect::<Vec<_>>(), [11, 12, 13]);
        let keys = &shared.provision.load().keys;
        for (i, r) in ids.iter().enumerate() {
            let _ = keys;
            let fields = crate::tag::decode_unauthenticated(r.3.as_bytes()).unwrap().0;
            assert_eq!((fields.segment_index, fields.segment_count), (i as u8 + 1, 3));
        }
    }

    /// The engine says when its timers next have work, and nothing runs before: a
    /// part whose siblings never come is answered ESME_RX_T_APPN at its reassembly
    /// deadline, not a poll earlier, and the deadline is what `poll_timeout` named.
    #[test]
    fn poll_timeout_names_the_reassembly_deadline_and_nothing_fires_before_it() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        f.poll(0, NOW);
        assert_eq!(f.poll_timeout(), 1000, "with nothing armed: the next second's upkeep");
        let mut sm = vec![5, 0, 3, 0x42, 2, 1];
        sm.extend_from_slice(b"half");
        f.smpp_request(10, NOW, SMSCA, 21, &Pdu::parse(&submit(21, 1, 0x40, &sm, &[])).unwrap());
        assert_eq!(f.smpp_out.pop_any().map(|(_, o)| o), Some(SmppOut::SetAside { seq: 21 }));
        let timeout = ReassemblyLimits::default().timeout.as_millis() as u64;
        // The upkeep keeps ticking each second while the part waits.
        for second in 1..=timeout / 1000 {
            let now = f.poll_timeout();
            assert_eq!(now, second * 1000);
            f.poll(now, NOW + second);
            assert!(f.poll_smpp(0).is_none(), "nothing answered at {now} ms");
        }
        let last = NOW + timeout / 1000;
        assert_eq!(f.poll_timeout(), 10 + timeout, "the reassembly deadline comes before the next second");
        f.poll(9 + timeout, last);
        assert!(f.poll_smpp(0).is_none(), "a millisecond before the deadline");
        f.poll(10 + timeout, last);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCA, 21, CommandStatus::ESME_RX_T_APPN, String::new()));
        assert!(f.poll_timeout() > 10 + timeout, "no reassembly deadline left");
    }

    /// Concatenated messages whose parts come out of order against a small window (a
    /// legacy system retrying its throttled parts): parts waiting for their siblings
    /// are held outside the window, so each message completes and every submit_sm is
    /// answered. Held in the window, the first parts of two messages filled it and
    /// every sibling was throttled for good.
    #[test]
    fn parts_waiting_for_their_siblings_leave_the_window_to_them() {
        use crate::session::smpp::{BindRefusal, BindRequest, Session, SessionConfig};
        let shared = shared(None);
        let mut f = Flows::new(FlowsConfig { parts_aside: 4, ..f_config() }, Arc::clone(&shared));
        let mut s = Session::new(SessionConfig { window: 2, out_window: 2, aside: 4, ..SessionConfig::default() });
        s.connected(0, std::net::Ipv4Addr::new(198, 18, 1, 1));
        let mut auth = |_: &BindRequest<'_>| -> Result<LegacySystemId, BindRefusal> { Ok(LegacySystemId(1)) };
        let body = b"smsca\0pwa\0\0\x34\x01\x01\0";
        let mut stream = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1]);
        stream.extend_from_slice(body);
        f.bound(SMSCA, 1, true);
        // Three 3-part messages, each part's first try in this order (the order
        // throttled parts come back in); throttled ones are sent again next round.
        let order = [(1u8, 1u8), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2), (1, 3), (2, 3), (3, 3)];
        let mut to_send: Vec<(u8, u8)> = order.to_vec();
        let mut answered: HashMap<u32, CommandStatus> = HashMap::new();
        let mut seq_of: HashMap<u32, (u8, u8)> = HashMap::new();
        let mut next_seq = 100u32;
        let mut out = vec![0u8; 1 << 16];
        for _round in 0..20 {
            for (msg, part) in std::mem::take(&mut to_send) {
                let mut sm = vec![5, 0, 3, msg, 3, part];
                sm.extend_from_slice(b"text ");
                next_seq += 1;
                seq_of.insert(next_seq, (msg, part));
                stream.extend_from_slice(&submit(next_seq, 1, 0x40, &sm, &[]));
            }
            let mut used = 0;
            loop {
                let input = s.handle_input(0, &stream[used..], &mut auth);
                if input.consumed == 0 && input.request.is_none() {
                    break;
                }
                used += input.consumed;
                if let Some(pdu) = input.request {
                    f.smpp_request(0, NOW, SMSCA, pdu.sequence_number, &pdu);
                }
                // The flows' instructions reach the session as the dataplane applies
                // them: after each request.
                while let Some((_, o)) = f.poll_smpp(0) {
                    match o {
                        SmppOut::SetAside { seq } => assert!(s.set_aside(seq)),
                        SmppOut::Respond { seq, status, message_id, id_len } => {
                            s.respond(seq, status, &message_id[..usize::from(id_len)]).unwrap()
                        }
                        SmppOut::Send(_) => {}
                    }
                }
            }
            stream.drain(..used);
            while let Some(r) = f.poll_request() {
                f.sip_final(r.token, 200);
            }
            while let Some((_, o)) = f.poll_smpp(0) {
                if let SmppOut::Respond { seq, status, message_id, id_len } = o {
                    s.respond(seq, status, &message_id[..usize::from(id_len)]).unwrap();
                }
            }
            // What the session answered: ROK ends a part, RTHROTTLED sends it again.
            let n = s.poll_transmit(&mut out);
            let mut at = 0;
            while at < n {
                let len = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
                let pdu = Pdu::parse(&out[at..at + len]).unwrap();
                at += len;
                if pdu.sequence_number == 1 {
                    continue; // the bind_resp
                }
                answered.insert(pdu.sequence_number, pdu.command_status);
                if pdu.command_status == CommandStatus::ESME_RTHROTTLED {
                    to_send.push(seq_of[&pdu.sequence_number]);
                }
            }
            if to_send.is_empty() && s.pending_requests() == 0 {
                break;
            }
        }
        let ok = answered.values().filter(|st| **st == CommandStatus::ESME_ROK).count();
        assert_eq!(ok, 9, "every part of the three messages accepted: {answered:?}");
        assert_eq!(answered.len() as u32, next_seq - 100, "every submit_sm answered");
        assert_eq!((s.pending_requests(), s.aside_requests()), (0, 0));
        assert!(f.conns.values().all(|c| c.aside == 0), "the room outside the window is given back");
        assert!(f.held.is_empty());
    }

    /// A bind's room outside the window is taken for a whole message at its first
    /// part: a new message that would not fit is throttled at once, while the parts
    /// of the messages already admitted still get in.
    #[test]
    fn a_new_message_gets_room_outside_the_window_only_for_all_its_parts() {
        let shared = shared(None);
        let mut f = Flows::new(FlowsConfig { parts_aside: 3, ..f_config() }, Arc::clone(&shared));
        f.bound(SMSCA, 1, true);
        let part = |f: &mut Flows, seq: u32, msg: u8, total: u8, part: u8| {
            let mut sm = vec![5, 0, 3, msg, total, part];
            sm.extend_from_slice(b"text ");
            f.smpp_request(0, NOW, SMSCA, seq, &Pdu::parse(&submit(seq, 1, 0x40, &sm, &[])).unwrap());
            std::iter::from_fn(|| f.smpp_out.pop_any()).map(|(_, o)| o).collect::<Vec<_>>()
        };
        // Message 1 (3 parts) reserves 2 of the 3 slots.
        assert_eq!(part(&mut f, 1, 1, 3, 2), [SmppOut::SetAside { seq: 1 }]);
        // Message 2 (3 parts) needs 2: refused now, nothing of it held.
        let refused = part(&mut f, 2, 2, 3, 1);
        assert!(matches!(refused[..], [SmppOut::Respond { seq: 2, status: CommandStatus::ESME_RTHROTTLED, .. }]));
        assert_eq!(shared.stats.parts_aside_full.load(Ordering::Relaxed), 1);
        // Message 3 (2 parts) needs 1: it fits.
        assert_eq!(part(&mut f, 3, 3, 2, 1), [SmppOut::SetAside { seq: 3 }]);
        // Message 1's second held part uses its own reservation; its last completes it.
        assert_eq!(part(&mut f, 4, 1, 3, 1), [SmppOut::SetAside { seq: 4 }]);
        assert_eq!(part(&mut f, 5, 1, 3, 3), []);
        let r = f.poll_request().expect("message 1");
        f.sip_final(r.token, 200);
        let answers: Vec<_> = std::iter::from_fn(|| f.smpp_out.pop_any()).map(|(_, o)| o).collect();
        assert_eq!(answers.len(), 3);
        // Its room is back: message 2 gets in now.
        assert_eq!(part(&mut f, 6, 2, 3, 1), [SmppOut::SetAside { seq: 6 }]);
    }

    #[test]
    fn forged_and_unasked_imdns_route_nowhere() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCA, 1, true);
        f.smpp_request(0, NOW, SMSCA, 1, &Pdu::parse(&submit(1, 0x01, 0, b"x", &[])).unwrap());
        let r = f.poll_request().unwrap();
        let tag = tag_of(&r.bytes);
        f.sip_final(r.token, 200);
        let _ = f.poll_smpp(0);
        let mut forged = tag.clone().into_bytes();
        forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
        let dn = imdn(std::str::from_utf8(&forged).unwrap(), "delivered", "delivery");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(403));
        // A display report nobody asked for (registered_delivery 1: delivery only).
        let dn = imdn(&tag, "displayed", "display");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        f.poll(1, NOW);
        assert!(f.poll_smpp(0).is_none(), "no legacy system saw either");
        assert_eq!(shared.stats.imdn_bad_tag.load(Ordering::Relaxed), 1);
        let drops: HashMap<&str, u64> = shared.drops().collect();
        assert_eq!(drops["tag_bad_mac"], 1, "{drops:?}");
        assert_eq!(drops.values().sum::<u64>(), 1, "{drops:?}");
        assert_eq!(shared.stats.receipts_not_requested.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_converged_message_is_correlated_before_sending_and_the_smsc_receipt_becomes_an_imdn() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let sip = conv_message("+447000300001", "conv1");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let Some((conn, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a submit_sm") };
        assert_eq!(conn, SMSCC);
        let Body::SubmitSm(sm) = Pdu::parse(send.item.pdu()).unwrap().body else { panic!() };
        assert_eq!(sm.destination.addr, b"447000300001");
        assert_eq!(sm.registered_delivery.0 & 3, 1);
        assert_eq!(f.in_flight().3, 1, "the correlation entry exists before the PDU leaves");
        f.smpp_sent(SMSCC, 44, send);
        f.smpp_response(NOW, SMSCC, 44, CommandStatus::ESME_ROK, b"smsc-77");
        assert_eq!(f.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        // The SMSC's receipt (text form).
        let receipt = smsc_receipt(5, "smsc-77");
        f.smpp_request(0, NOW + 60, SMSCC, 5, &Pdu::parse(&receipt).unwrap());
        assert!(f.poll_smpp(0).is_none(), "the receipt is acknowledged after the IMDN's final response");
        let r = f.poll_request().expect("an IMDN");
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(text.starts_with("MESSAGE sip:+447900000001@ims.lab;user=phone SIP/2.0"), "{text}");
        assert!(text.contains("<message-id>conv-1</message-id>") && text.contains("<delivered/>"), "{text}");
        f.sip_final(r.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_ROK);
        assert_eq!(shared.stats.imdns_sent.load(Ordering::Relaxed), 1);
        // No route: 404; a routed system without a bind: 480.
        let other = conv_message("+15550100", "conv3");
        let t = txn(&mut server, other.as_bytes());
        deliver(&mut f, &shared, NOW, other.as_bytes(), t);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(404));
        let unbound = conv_message("+447000200001", "conv2");
        let t = txn(&mut server, unbound.as_bytes());
        deliver(&mut f, &shared, NOW, unbound.as_bytes(), t);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(480));
    }

    /// A converged message to smsc-c sent and acknowledged with SMSC id `id` (seq `seq`).
    fn conv_sent(f: &mut Flows, server: &mut ServerTransactions, call: &str, seq: u32, id: &[u8]) -> SipTxn {
        conv_sent_asking(f, server, call, seq, id, "positive-delivery")
    }

    fn conv_sent_asking(
        f: &mut Flows,
        server: &mut ServerTransactions,
        call: &str,
        seq: u32,
        id: &[u8],
        dispositions: &str,
    ) -> SipTxn {
        let t = conv_submitted(f, server, call, seq, dispositions);
        f.smpp_response(NOW, SMSCC, seq, CommandStatus::ESME_ROK, id);
        t
    }

    /// A converged MESSAGE to smsc-c, submitted there as sequence `seq` (its resp still
    /// to come).
    fn conv_submitted(
        f: &mut Flows,
        server: &mut ServerTransactions,
        call: &str,
        seq: u32,
        dispositions: &str,
    ) -> SipTxn {
        let sip = conv_message_asking("+447000300001", call, dispositions);
        let t = txn(server, sip.as_bytes());
        let mut headers = [Header::EMPTY; 32];
        let Ok(Status::Complete(_, msg)) = Parser::datagram().parse(sip.as_bytes(), &mut headers) else { panic!() };
        f.sip_message(0, NOW, t, &msg, sip.as_bytes());
        let send = send_within(f);
        f.smpp_sent(SMSCC, seq, send);
        t
    }

    fn receipt_in(f: &mut Flows, unix: u64, seq: u32, id: &str) {
        f.smpp_request(0, unix, SMSCC, seq, &Pdu::parse(&smsc_receipt(seq, id)).unwrap());
    }

    #[test]
    fn a_failed_imdn_rolls_its_receipt_back_and_the_resend_produces_it_again() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_sent(&mut f, &mut server, "rb1", 44, b"smsc-77");
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        receipt_in(&mut f, NOW + 60, 5, "smsc-77");
        let r1 = f.poll_request().expect("an IMDN");
        f.sip_final(r1.token, 408);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCC, 5, CommandStatus::ESME_RX_T_APPN, String::new()));
        // The SMSC resends the receipt: not a duplicate, the IMDN goes again.
        receipt_in(&mut f, NOW + 90, 6, "smsc-77");
        let r2 = f.poll_request().expect("the resend produces the IMDN again");
        assert!(String::from_utf8_lossy(&r2.bytes).contains("<delivered/>"));
        // Another resend while that IMDN is in flight: not acknowledged before its 2xx.
        receipt_in(&mut f, NOW + 91, 7, "smsc-77");
        assert!(f.poll_smpp(0).is_none() && f.poll_request().is_none());
        f.sip_final(r2.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)).1, 6);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCC, 7, CommandStatus::ESME_ROK, String::new()));
        assert!(f.poll_request().is_none(), "after the 2xx a resend is a duplicate");
        // A resend held while the IMDN fails produces the IMDN again itself.
        conv_sent(&mut f, &mut server, "rb2", 45, b"smsc-78");
        receipt_in(&mut f, NOW + 60, 8, "smsc-78");
        let r3 = f.poll_request().unwrap();
        receipt_in(&mut f, NOW + 61, 9, "smsc-78");
        f.sip_final(r3.token, 503);
        assert_eq!(respond_of(f.poll_smpp(0)).1, 8);
        assert!(f.poll_smpp(0).is_none(), "the held resend waits for its own IMDN");
        let r4 = f.poll_request().expect("the held resend's IMDN");
        f.sip_final(r4.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCC, 9, CommandStatus::ESME_ROK, String::new()));
        let st = &shared.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!((n(&st.imdns_sent), n(&st.imdns_delivered), n(&st.imdns_failed)), (4, 2, 2));
        assert!(shared.stats.line().contains("imdns_delivered=2 imdns_failed=2"), "{}", shared.stats.line());
        assert_eq!(f.in_flight().1, 0);
        assert!(f.imdns.is_empty());
    }

    #[test]
    fn a_receipt_before_its_submit_sm_resp_is_answered_after_its_imdn() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let t = conv_submitted(&mut f, &mut server, "early1", 44, "positive-delivery");
        // The receipt overtakes the submit_sm_resp: parked, not acknowledged.
        receipt_in(&mut f, NOW, 5, "smsc-88");
        assert!(f.poll_smpp(0).is_none(), "a parked receipt is not acknowledged");
        f.smpp_response(NOW, SMSCC, 44, CommandStatus::ESME_ROK, b"smsc-88");
        assert_eq!(f.poll_any_answer().map(|a| (a.txn, a.status)), Some((t, 200)));
        let r = f.poll_request().expect("the parked receipt's IMDN");
        assert!(f.poll_smpp(0).is_none(), "the receipt waits for its IMDN");
        f.sip_final(r.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCC, 5, CommandStatus::ESME_ROK, String::new()));
        // A receipt no resp ever binds: answered when its park time ends, counted.
        f.poll(0, NOW);
        receipt_in(&mut f, NOW, 6, "nobody");
        f.poll(0, NOW + 30);
        assert!(f.poll_smpp(0).is_none());
        f.poll(0, NOW + 31);
        assert_eq!(respond_of(f.poll_smpp(0)), (SMSCC, 6, CommandStatus::ESME_ROK, String::new()));
        let drops: HashMap<&str, u64> = shared.drops().collect();
        assert_eq!(drops["smsc_receipt_unmatched"], 1);
        assert!(f.parked.is_empty());
    }

    #[test]
    fn a_closed_session_leaves_no_answer_for_the_next_one_on_its_conn() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_submitted(&mut f, &mut server, "gone1", 44, "positive-delivery");
        // A receipt overtakes the resp (parked), then the session ends.
        receipt_in(&mut f, NOW, 5, "smsc-77");
        f.smpp_lost(NOW, SMSCC, 44);
        f.closed(SMSCC);
        assert!(f.parked.is_empty(), "the closed session's parked receipt is forgotten");
        // The next session on the same ConnRef reuses sequence 5: nothing answers it.
        f.bound(SMSCC, 3, true);
        f.poll(0, NOW + 31);
        while let Some(out) = f.poll_smpp(0) {
            assert!(!matches!(out.1, SmppOut::Respond { seq: 5, .. }), "a stale answer: {out:?}");
        }
        assert_eq!(f.poll_any_answer().map(|a| (a.txn, a.status)).map(|(_, s)| s >= 400), Some(true));
    }

    #[test]
    fn the_durable_correlation_goes_only_with_the_final_imdns_2xx() {
        let store = StoreRun::start("iwf-flow-durable");
        let (shared, path) = (Arc::clone(&store.shared), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_sent(&mut f, &mut server, "du1", 41, b"smsc-1");
        assert_eq!(answer_within(&mut f, "message 1").status, 200);
        conv_sent(&mut f, &mut server, "du2", 42, b"smsc-2");
        assert_eq!(answer_within(&mut f, "message 2").status, 200);
        // Message 1's IMDN is queued but gets no answer; message 2's gets its 2xx.
        receipt_in(&mut f, NOW, 5, "smsc-1");
        let _pending = f.poll_request().expect("IMDN 1");
        receipt_in(&mut f, NOW, 6, "smsc-2");
        let r2 = f.poll_request().expect("IMDN 2");
        f.sip_final(r2.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)).1, 6);
        // A third message: once its 200 is out, the store has taken every earlier op.
        conv_sent(&mut f, &mut server, "du3", 43, b"smsc-3");
        assert_eq!(answer_within(&mut f, "message 3").status, 200);
        // The process dies before IMDN 1's answer: its correlation survives.
        store.stop();
        drop(f);
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let shared2 = self::shared(None);
        let mut f2 = flows(&shared2);
        assert_eq!(f2.restore(&db.restorable(NOW + 30).unwrap(), NOW + 30), 2, "messages 1 and 3, not 2");
        f2.bound(SMSCC, 3, true);
        receipt_in(&mut f2, NOW + 60, 7, "smsc-1");
        assert!(f2.poll_request().is_some(), "the receipt's resend still becomes an IMDN");
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_durable_correlation_stays_while_a_display_is_still_owed() {
        let store = StoreRun::start("iwf-flow-display");
        let (shared, path) = (Arc::clone(&store.shared), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_sent_asking(&mut f, &mut server, "dd1", 41, b"smsc-1", "positive-delivery, display");
        assert_eq!(answer_within(&mut f, "message 1").status, 200);
        // Delivered, and the delivery IMDN answered: the read report is still to come.
        receipt_in(&mut f, NOW, 5, "smsc-1");
        let r = f.poll_request().expect("the delivery IMDN");
        f.sip_final(r.token, 200);
        assert_eq!(respond_of(f.poll_smpp(0)).1, 5);
        // Once a later message's 200 is out, the store has taken every earlier op.
        conv_sent(&mut f, &mut server, "dd2", 42, b"smsc-2");
        assert_eq!(answer_within(&mut f, "message 2").status, 200);
        store.stop();
        drop(f);
        let mut db = crate::route::store::Store::open(&path).unwrap();
        let shared2 = self::shared(None);
        let mut f2 = flows(&shared2);
        assert_eq!(f2.restore(&db.restorable(NOW + 30).unwrap(), NOW + 30), 2, "message 1 waits for its display");
        drop(db);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_reused_smsc_id_still_answers_the_message() {
        let store = StoreRun::start("iwf-flow-reuse");
        let (shared, path) = (Arc::clone(&store.shared), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        conv_sent(&mut f, &mut server, "re1", 41, b"smsc-5");
        assert_eq!(answer_within(&mut f, "message 1").status, 200);
        // The SMSC restarted and gives the same id while message 1 awaits its receipt.
        let t = conv_sent(&mut f, &mut server, "re2", 42, b"smsc-5");
        let a = answer_within(&mut f, "a reused id left the MESSAGE unanswered");
        assert_eq!((a.txn, a.status), (t, 200));
        let drops: HashMap<&str, u64> = shared.drops().collect();
        assert_eq!(drops["smsc_id_in_use"], 1);
        // Message 1 gets its receipt and completes; its id lingers, then is reused: the
        // new message takes it over.
        receipt_in(&mut f, NOW, 5, "smsc-5");
        let r = f.poll_request().expect("IMDN 1");
        f.sip_final(r.token, 200);
        let _ = f.poll_smpp(0);
        receipt_in(&mut f, NOW, 6, "smsc-5");
        assert!(f.poll_request().is_none(), "a duplicate while message 1 lingers");
        let _ = f.poll_smpp(0);
        let t = conv_sent(&mut f, &mut server, "re3", 43, b"smsc-5");
        let a = answer_within(&mut f, "message 3");
        assert_eq!((a.txn, a.status), (t, 200));
        receipt_in(&mut f, NOW + 5, 7, "smsc-5");
        assert!(f.poll_request().is_some(), "the reused id's receipt is the new message's");
        assert_eq!(shared.drops().find(|(r, _)| *r == "smsc_id_in_use").map(|(_, n)| n), Some(1));
        store.stop();
        let _ = std::fs::remove_file(&path);
    }

    /// smsc-a sends a message (its tag returned), then its bind goes before any receipt.
    fn sent_then_unbound(f: &mut Flows) -> String {
        f.bound(SMSCA, 1, true);
        f.smpp_request(0, NOW, SMSCA, 1, &Pdu::parse(&submit(1, 1, 0, b"x", &[])).unwrap());
        let r = f.poll_request().unwrap();
        let tag = tag_of(&r.bytes);
        f.sip_final(r.token, 200);
        let _ = f.poll_smpp(0);
        f.closed(SMSCA);
        tag
    }

    #[test]
    fn receipts_for_an_unbound_system_are_stored_then_delivered_when_it_binds() {
        let store = StoreRun::start("iwf-flow-store");
        let (shared, stats, dir) = (Arc::clone(&store.shared), Arc::clone(&store.stats), store.path.clone());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        // A message from smsc-a, then smsc-a unbinds before the IMDN comes.
        let tag = sent_then_unbound(&mut f);
        let dn = imdn(&tag, "delivered", "delivery");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        let answer = answer_within(&mut f, "no answer after the store");
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!((answer.txn, answer.status), (t, 200));
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
        // It binds again: the stored receipt comes out of its lane.
        f.bound(ConnRef::new(0, 6), 1, true);
        let send = send_within(&mut f);
        let Body::DeliverSm(sm) = Pdu::parse(send.item.pdu()).unwrap().body else { panic!() };
        assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(tag.as_bytes()));
        f.smpp_sent(ConnRef::new(0, 6), 3, send);
        f.smpp_response(NOW, ConnRef::new(0, 6), 3, CommandStatus::ESME_ROK, b"");
        while stats.acked.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the delivered receipt was not removed from the store");
            std::thread::sleep(Duration::from_millis(2));
        }
        store.stop();
        let db = crate::route::store::Store::open(&dir).unwrap();
        assert_eq!(db.queued_total().unwrap(), 0);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn in_a_cluster_receipts_of_a_system_bound_elsewhere_go_to_the_cluster_and_are_answered_on_its_ack() {
        let shared = shared(None);
        let (tx, intake) = std::sync::mpsc::channel();
        shared.cluster.set(cluster::ClusterLink::new(tx)).unwrap();
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        // A message from smsc-a, which then unbinds here (it is bound to another box).
        let tag = sent_then_unbound(&mut f);
        // The cluster cannot take receipts now (no quorum): 503 at once, nothing handed
        // over, and the notification is not remembered as relayed.
        let dn = imdn_between(&tag, "delivered", "delivery", "+447900000001@ims.lab", "+447000100001@iwf.ims.lab", "1");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        let a = answer_within(&mut f, "no answer while the cluster is down");
        assert_eq!((a.txn, a.status, a.reason), (t, 503, "Service Unavailable (the cluster cannot store it now)"));
        assert!(intake.try_recv().is_err(), "nothing handed to the cluster");
        assert_eq!(shared.drops().find(|(r, _)| *r == "cluster_unavailable").map(|(_, n)| n), Some(1));
        // It can: the receipt goes to the cluster thread (not the store), and the resend
        // of the IMDN is answered only once JetStream has it.
        shared.cluster.get().unwrap().writable.store(true, Ordering::Relaxed);
        let dn = imdn_between(&tag, "delivered", "delivery", "+447900000001@ims.lab", "+447000100001@iwf.ims.lab", "2");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        let Ok(cluster::ClusterOp::Publish { item }) = intake.try_recv() else {
            panic!("the receipt was not handed over")
        };
        let Body::DeliverSm(sm) = Pdu::parse(item.pdu()).unwrap().body else { panic!() };
        assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(tag.as_bytes()));
        f.poll(0, NOW);
        assert!(f.poll_any_answer().is_none(), "no 200 before JetStream's acknowledgement");
        shared.complete(item.token(), Outcome::Stored).unwrap();
        let a = answer_within(&mut f, "no answer after the cluster's ack");
        assert_eq!((a.txn, a.status), (t, 200));
        assert_eq!(shared.stats.receipts_clustered.load(Ordering::Relaxed), 1);
        // On the box holding the bind, a receipt taken from the stream goes through the
        // lane; the legacy system's resp completes it to the cluster thread.
        f.bound(ConnRef::new(0, 6), 1, true);
        let token = (u64::from(cluster::CLUSTER_ORIGIN) << 48) | 7;
        let taken = LaneItem::new(LegacySystemId(1), token, item.pdu()).unwrap();
        shared.lanes.load().push(taken).unwrap();
        let send = send_within(&mut f);
        assert_eq!(send.token, token);
        f.smpp_sent(ConnRef::new(0, 6), 3, send);
        f.smpp_response(NOW, ConnRef::new(0, 6), 3, CommandStatus::ESME_ROK, b"");
        f.poll(0, NOW);
        assert_eq!(shared.cluster_completions.pop(), Some(Completion { token, outcome: Outcome::Delivered }));
    }

    /// A disk in memory that is full on command: writes that would grow it fail as a
    /// full file system fails them (ENOSPC), and succeed again once space returns.
    #[derive(Debug, Clone, Default)]
    struct FillingDisk {
        bytes: Arc<std::sync::Mutex<Vec<u8>>>,
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FillingDisk {
        fn refuse(&self, grow: bool) -> std::io::Result<()> {
            if grow && self.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    impl redb::StorageBackend for FillingDisk {
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
        fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
            let b = self.bytes.lock().unwrap();
            let at = usize::try_from(offset).unwrap();
            Ok(b.get(at..at + len).ok_or(std::io::ErrorKind::UnexpectedEof)?.to_vec())
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            let mut b = self.bytes.lock().unwrap();
            self.refuse(len as usize > b.len())?;
            b.resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
            self.refuse(true)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.refuse(true)?;
            let mut b = self.bytes.lock().unwrap();
            let at = usize::try_from(offset).unwrap();
            if b.len() < at + data.len() {
                b.resize(at + data.len(), 0);
            }
            b[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_refuses_at_once_and_recovers_when_space_returns() {
        let disk = FillingDisk::default();
        let db = crate::route::store::Store::with_backend(disk.clone()).unwrap();
        let store = StoreRun::over(db, std::path::PathBuf::new());
        let (shared, stats) = (Arc::clone(&store.shared), Arc::clone(&store.stats));
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        // Two messages from smsc-a; smsc-a unbinds before their IMDNs come.
        f.bound(SMSCA, 1, true);
        let mut tags = Vec::new();
        for seq in 1..=2 {
            f.smpp_request(0, NOW, SMSCA, seq, &Pdu::parse(&submit(seq, 1, 0, b"x", &[])).unwrap());
            let r = f.poll_request().unwrap();
            tags.push(tag_of(&r.bytes));
            f.sip_final(r.token, 200);
            let _ = f.poll_smpp(0);
        }
        f.closed(SMSCA);
        // The disk is full: the receipt cannot be made durable, and its IMDN hears so
        // at once (500: the converged side sends it again), rather than never.
        disk.full.store(true, Ordering::SeqCst);
        let dn = imdn(&tags[0], "delivered", "delivery");
        let t = txn(&mut server, &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        let answer = answer_within(&mut f, "a receipt the store could not write was never answered");
        assert_eq!((answer.txn, answer.status), (t, 500));
        assert!(stats.errors.load(Ordering::Relaxed) >= 1);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
        // Space returns: the next receipt is stored and answered 200.
        disk.full.store(false, Ordering::SeqCst);
        let dn = imdn(&tags[1], "delivered", "delivery");
        // (the fixture's branch is the tag's first characters, which both tags share)
        let t = txn(&mut ServerTransactions::new(ServerConfig::default()), &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        let answer = answer_within(&mut f, "no answer once space returned");
        assert_eq!((answer.txn, answer.status), (t, 200));
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
        store.stop();
    }

    /// A converged message's parts go out only once its correlation record is durable:
    /// on a full disk none goes and the MESSAGE is answered 500 (a receipt for it could
    /// otherwise come back after a restart that forgot it); once space returns they go
    /// after the write.
    #[test]
    fn converged_parts_wait_for_their_correlation_to_be_durable() {
        let disk = FillingDisk::default();
        let db = crate::route::store::Store::with_backend(disk.clone()).unwrap();
        let store = StoreRun::over(db, std::path::PathBuf::new());
        let (shared, stats) = (Arc::clone(&store.shared), Arc::clone(&store.stats));
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        disk.full.store(true, Ordering::SeqCst);
        let sip = conv_message("+447000300001", "durable-first");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        assert!(f.poll_smpp(0).is_none(), "no part before its record is durable");
        let answer = answer_within(&mut f, "the MESSAGE whose record could not be written");
        assert_eq!((answer.txn, answer.status), (t, 500));
        assert!(f.poll_smpp(0).is_none(), "no part at all: its record was never durable");
        assert_eq!(shared.stats.converged_parts_sent.load(Ordering::Relaxed), 0);
        assert!(f.unsent.is_empty() && f.waiters.len() == 0, "nothing left waiting");
        // Space returns: the next message's part goes, after its record's write.
        disk.full.store(false, Ordering::SeqCst);
        let writes = stats.writes.load(Ordering::Relaxed);
        let sip = conv_message("+447000300001", "durable-second");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let send = send_within(&mut f);
        assert!(stats.writes.load(Ordering::Relaxed) > writes, "the record was written before the part went");
        f.smpp_sent(SMSCC, 3, send);
        f.smpp_response(NOW, SMSCC, 3, CommandStatus::ESME_ROK, b"dur-2");
        assert_eq!(answer_within(&mut f, "the second MESSAGE's 200").status, 200);
        store.stop();
    }

    /// `auto`, the default: a receipt whose id drifted from its submit_sm_resp (case,
    /// leading zeros, decimal for hex) still becomes its IMDN; one whose two readings
    /// name two live messages is refused, counted, and becomes nothing.
    #[test]
    fn receipt_ids_that_drift_from_their_resp_still_match_and_ambiguity_is_refused() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        for (i, resp_id) in ["0000A1B2", "4D2", "1234", "3039"].iter().enumerate() {
            let sip = conv_message(&format!("+44700030010{i}"), &format!("drift{i}"));
            let t = txn(&mut server, sip.as_bytes());
            deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
            let Some((_, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("a submit_sm") };
            let seq = 10 + i as u32;
            f.smpp_sent(SMSCC, seq, send);
            f.smpp_response(NOW, SMSCC, seq, CommandStatus::ESME_ROK, resp_id.as_bytes());
            assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
        }
        let stats = &shared.stats;
        let mut receipt = |seq: u32, id: &str| {
            f.smpp_request(0, NOW + 1, SMSCC, seq, &Pdu::parse(&smsc_receipt(seq, id)).unwrap());
            f.poll_request().is_some()
        };
        assert!(receipt(20, "a1b2"), "case and leading zeros: the IMDN of 0000A1B2");
        assert!(receipt(21, "4d2"), "the IMDN of 4D2");
        assert!(receipt(22, "12345"), "decimal of 0x3039: its IMDN");
        assert_eq!(stats.receipt_ids_as_sent.load(Ordering::Relaxed), 2);
        assert_eq!(stats.receipt_ids_decimal.load(Ordering::Relaxed), 1);
        // "1234": hex 0x1234 is the resp 1234's, decimal 1234 is 4D2's: refused.
        assert!(!receipt(23, "1234"), "an ambiguous id becomes no IMDN");
        assert_eq!(stats.receipt_ids_ambiguous.load(Ordering::Relaxed), 1);
        assert!(shared.drops().any(|(r, n)| r == "smsc_id_ambiguous" && n == 1));
        let answered = std::iter::from_fn(|| f.poll_smpp(0))
            .any(|(_, out)| matches!(out, SmppOut::Respond { seq: 23, status: CommandStatus::ESME_ROK, .. }));
        assert!(answered, "the ambiguous receipt is answered, not held");
    }

    /// One message from smsc-a, its resp answered; returns its tag.
    fn one_message_from_smsca(f: &mut Flows, seq: u32) -> String {
        f.smpp_request(0, NOW, SMSCA, seq, &Pdu::parse(&submit(seq, 1, 0, b"x", &[])).unwrap());
        let r = f.poll_request().unwrap();
        let tag = tag_of(&r.bytes);
        f.sip_final(r.token, 200);
        assert!(matches!(f.poll_smpp(0), Some((_, SmppOut::Respond { .. }))));
        tag
    }

    /// Request `dn` as the `n`th new transaction of the same request (its own branch
    /// and Call-ID).
    fn as_new_txn(dn: &str, n: u32) -> String {
        dn.replacen("branch=z9hG4bK", &format!("branch=z9hG4bKround{n}x"), 1).replacen(
            "Call-ID: ",
            &format!("Call-ID: round{n}x"),
            1,
        )
    }

    /// Delivers `dn` as a new transaction (its own branch and Call-ID), lets the lane
    /// drain and acknowledges what goes to smsc-a; returns the deliver_sm PDUs sent and
    /// the IMDN's answer.
    fn imdn_round(f: &mut Flows, shared: &Arc<Shared>, dn: &str, n: u32) -> (Vec<Vec<u8>>, u16) {
        let dn = as_new_txn(dn, n);
        let t = txn(&mut ServerTransactions::new(ServerConfig::default()), dn.as_bytes());
        deliver(f, shared, NOW, dn.as_bytes(), t);
        f.poll(0, NOW);
        let mut sent = Vec::new();
        while let Some((conn, out)) = f.poll_smpp(0) {
            if let SmppOut::Send(send) = out {
                sent.push(send.item.pdu().to_vec());
                f.smpp_sent(conn, 500 + n, send);
                f.smpp_response(NOW, conn, 500 + n, CommandStatus::ESME_ROK, b"");
            }
        }
        f.poll(0, NOW);
        (sent, f.poll_any_answer().filter(|a| a.txn == t).map_or(0, |a| a.status))
    }

    /// A notification sent again (a new transaction: the core timed the first out, or
    /// failed over and back) while its first copy is still on its way to the legacy
    /// system is not answered 200: that copy may yet fail, or the box die with it, and
    /// the 200 would have acknowledged a receipt nobody has. It is refused 503 for now;
    /// once the first is delivered, a resend is a replay (200, nothing sent again), and
    /// once the first failed, a resend is relayed.
    #[test]
    fn a_resend_while_the_first_is_in_flight_is_not_acknowledged() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        // One transaction table: each resend is a transaction of its own.
        let mut server = ServerTransactions::new(ServerConfig::default());
        let mut send = |f: &mut Flows, dn: &str| {
            let t = txn(&mut server, dn.as_bytes());
            deliver(f, &shared, NOW, dn.as_bytes(), t);
            f.poll(0, NOW);
            t
        };
        let answer_of = |f: &mut Flows, t: SipTxn| {
            let mut found = None;
            while let Some(a) = f.poll_any_answer() {
                if a.txn == t {
                    found = Some(a);
                }
            }
            found
        };
        for (round, first_ok) in [(1u32, true), (2, false)] {
            let tag = one_message_from_smsca(&mut f, round);
            let dn = String::from_utf8(imdn(&tag, "delivered", "delivery")).unwrap();
            let first = send(&mut f, &as_new_txn(&dn, round * 10));
            let Some((conn, SmppOut::Send(req))) = f.poll_smpp(0) else { panic!("the receipt goes") };
            f.smpp_sent(conn, 700 + round, req);
            // The core sends it again before the legacy system answered.
            let again = send(&mut f, &as_new_txn(&dn, round * 10 + 1));
            let a = answer_of(&mut f, again).expect("the resend is answered at once");
            assert_eq!((a.status, a.retry_after.is_some()), (503, true), "round {round}: {a:?}");
            assert!(f.poll_smpp(0).is_none(), "round {round}: nothing more goes meanwhile");
            assert!(answer_of(&mut f, first).is_none(), "round {round}: the first waits for its resp");
            let status = if first_ok { CommandStatus::ESME_ROK } else { CommandStatus::ESME_RX_T_APPN };
            f.smpp_response(NOW, conn, 700 + round, status, b"");
            f.poll(0, NOW);
            let a = answer_of(&mut f, first).expect("the first is answered");
            assert_eq!(a.status == 200, first_ok, "round {round}: {a:?}");
            // The next resend: a replay once delivered, relayed once failed.
            let (sent, status) = imdn_round(&mut f, &shared, &dn, round * 10 + 2);
            assert_eq!(status, 200, "round {round}");
            assert_eq!(sent.len(), usize::from(!first_ok), "round {round}: relayed only if the first failed");
        }
    }

    /// A notification is relayed once per window however often it is replayed, and a
    /// receipt goes to the message's own parties whatever the IMDN claims.
    #[test]
    fn replayed_imdns_are_relayed_once_and_cannot_be_redirected() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        let tag = one_message_from_smsca(&mut f, 1);
        let dn = String::from_utf8(imdn(&tag, "delivered", "delivery")).unwrap();
        let mut relayed = 0;
        for n in 0..5 {
            let (sent, status) = imdn_round(&mut f, &shared, &dn, n);
            assert_eq!(status, 200, "replay {n} is answered");
            relayed += sent.len();
        }
        assert_eq!(relayed, 1, "relayed once");
        assert_eq!(shared.stats.imdn_replays.load(Ordering::Relaxed), 4);
        // The display of the same tag is another notification: relayed (if asked for).
        let (_, status) =
            imdn_round(&mut f, &shared, &String::from_utf8(imdn(&tag, "displayed", "display")).unwrap(), 9);
        assert_eq!(status, 200);

        // An IMDN whose CPIM names another legacy user: the receipt still goes to the
        // message's own (the SIP To names it, and the tag's MAC picks it).
        let tag = one_message_from_smsca(&mut f, 2);
        let lying = String::from_utf8(imdn(&tag, "delivered", "delivery")).unwrap().replace(
            "To: <sip:+447000100001@iwf.ims.lab;user=phone>\r\nNS:",
            "To: <sip:+447000100099@iwf.ims.lab;user=phone>\r\nNS:",
        );
        assert!(lying.contains("+447000100099"), "the CPIM To was rewritten");
        let (sent, status) = imdn_round(&mut f, &shared, &lying, 20);
        assert_eq!((sent.len(), status), (1, 200));
        let Body::DeliverSm(sm) = Pdu::parse(&sent[0]).unwrap().body else { panic!("a deliver_sm") };
        assert_eq!(sm.destination.addr, b"447000100001", "the message's own originator");
        assert_eq!(sm.source.addr, b"447900000001", "the message's own recipient");
        // Every address in it rewritten: nothing verifies, nothing is relayed.
        let tag = one_message_from_smsca(&mut f, 3);
        let redirected =
            String::from_utf8(imdn(&tag, "delivered", "delivery")).unwrap().replace("+447000100001", "+447000100099");
        let (sent, status) = imdn_round(&mut f, &shared, &redirected, 30);
        assert_eq!((sent.len(), status), (0, 403));
    }

    /// A legacy system's receipt rate and its durable queue limit refuse IMDNs with 503
    /// (the converged side resends later); the refused notification is not remembered.
    #[test]
    fn receipt_rate_and_queue_limits_answer_503() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replace("system_id = \"smsca\"", "system_id = \"smsca\"\nreceipt_rate = 1");
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        let (a, b) = (one_message_from_smsca(&mut f, 1), one_message_from_smsca(&mut f, 2));
        let dn = |t: &str| String::from_utf8(imdn(t, "delivered", "delivery")).unwrap();
        let (sent, status) = imdn_round(&mut f, &shared, &dn(&a), 1);
        assert_eq!((sent.len(), status), (1, 200));
        let (sent, status) = imdn_round(&mut f, &shared, &dn(&b), 2);
        assert_eq!((sent.len(), status), (0, 503), "one receipt a second");
        assert!(shared.drops().any(|(r, n)| r == "receipt_rate" && n == 1));
        // Not remembered: its resend, a second later, is relayed.
        let later = |f: &mut Flows| {
            let dn =
                dn(&b).replacen("branch=z9hG4bK", "branch=z9hG4bKlater", 1).replacen("Call-ID: ", "Call-ID: later", 1);
            let t = txn(&mut ServerTransactions::new(ServerConfig::default()), dn.as_bytes());
            deliver(f, &shared, NOW + 1, dn.as_bytes(), t);
            f.poll(0, NOW + 1);
            std::iter::from_fn(|| f.poll_smpp(0)).filter(|(_, o)| matches!(o, SmppOut::Send(_))).count()
        };
        assert_eq!(later(&mut f), 1);
    }

    #[test]
    fn an_unbound_systems_durable_queue_has_a_limit() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replace("system_id = \"smsca\"", "system_id = \"smsca\"\nqueue_limit = 1");
        let path = std::env::temp_dir().join(format!("iwf-flow-qlimit-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, Some(tx)).unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            let db = crate::route::store::Store::create(&path).unwrap();
            std::thread::spawn(move || store::run(db, rx, shared, Arc::new(store::StoreStats::default()), &stop))
        };
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        let (a, b) = (one_message_from_smsca(&mut f, 1), one_message_from_smsca(&mut f, 2));
        f.closed(SMSCA);
        let mut answer = |tag: &str, n: u32| {
            let dn = String::from_utf8(imdn(tag, "delivered", "delivery")).unwrap();
            let dn = dn.replacen("branch=z9hG4bK", &format!("branch=z9hG4bKq{n}x"), 1);
            let t = txn(&mut ServerTransactions::new(ServerConfig::default()), dn.as_bytes());
            deliver(&mut f, &shared, NOW, dn.as_bytes(), t);
            answer_within(&mut f, "an answer").status
        };
        assert_eq!(answer(&a, 1), 200, "stored");
        assert_eq!(answer(&b, 2), 503, "the queue holds one");
        assert!(shared.drops().any(|(r, n)| r == "queue_limit" && n == 1));
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    /// A converged message's part that finds its bind's window full waits its turn in
    /// the session's glue (it was failed, and its MESSAGE answered 500, when handed back
    /// as unsent): the flows take a part sent late, in order, like any other.
    #[test]
    fn a_part_beyond_the_window_waits_its_turn() {
        let shared = shared(None);
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig::default());
        f.bound(SMSCC, 3, true);
        let text = "a long text ".repeat(30);
        let sip = conv_message("+447000300001", "win1")
            .replace("Content-Length: 2\r\n\r\nhi", &format!("Content-Length: {}\r\n\r\n{text}", text.len()));
        let sip = {
            // The SIP Content-Length follows the CPIM body.
            let (head, body) = sip.split_once("\r\n\r\n").unwrap();
            let head = head.split("\r\n").filter(|l| !l.starts_with("Content-Length")).collect::<Vec<_>>().join("\r\n");
            format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let mut parts: Vec<SmppSend> = std::iter::from_fn(|| match f.poll_smpp(0) {
            Some((_, SmppOut::Send(s))) => Some(s),
            _ => None,
        })
        .collect();
        assert!(parts.len() >= 2, "a concatenated message: {}", parts.len());
        let n = parts.len();
        // The window takes the first part; the others wait (in the glue).
        let first = parts.remove(0);
        f.smpp_sent(SMSCC, 40, first);
        f.poll(0, NOW);
        assert!(f.poll_any_answer().is_none(), "nothing failed");
        // Room again: the waiting parts go, in order, and the message completes.
        f.smpp_response(NOW, SMSCC, 40, CommandStatus::ESME_ROK, b"id-40");
        for (i, p) in parts.into_iter().enumerate() {
            let seq = 41 + i as u32;
            f.smpp_sent(SMSCC, seq, p);
            f.smpp_response(NOW, SMSCC, seq, CommandStatus::ESME_ROK, format!("id-{seq}").as_bytes());
        }
        assert!(n >= 2);
        assert_eq!(f.poll_any_answer().map(|a| a.status), Some(200));
    }

    /// The converged side may send its IMDN before its final response to the MESSAGE:
    /// the receipt then waits, and reaches the legacy system just after the
    /// submit_sm_resp that gives it its id (a strict ESME drops it otherwise).
    #[test]
    fn a_receipt_never_overtakes_its_submit_sm_resp() {
        let shared = shared(None);
        let mut f = flows(&shared);
        f.bound(SMSCA, 1, true);
        f.smpp_request(0, NOW, SMSCA, 1, &Pdu::parse(&submit(1, 1, 0, b"x", &[])).unwrap());
        let r = f.poll_request().unwrap();
        let tag = tag_of(&r.bytes);
        // The IMDN first ...
        let dn = imdn(&tag, "delivered", "delivery");
        let t = txn(&mut ServerTransactions::new(ServerConfig::default()), &dn);
        deliver(&mut f, &shared, NOW, &dn, t);
        f.poll(0, NOW);
        assert!(f.poll_smpp(0).is_none(), "no receipt before the resp");
        assert_eq!(shared.stats.receipts_before_resp.load(Ordering::Relaxed), 1);
        // ... then the 200: the resp, and right behind it the receipt.
        f.sip_final(r.token, 200);
        assert!(matches!(f.poll_smpp(0), Some((_, SmppOut::Respond { seq: 1, status: CommandStatus::ESME_ROK, .. }))));
        let Some((conn, SmppOut::Send(send))) = f.poll_smpp(0) else { panic!("the receipt after the resp") };
        let Body::DeliverSm(sm) = Pdu::parse(send.item.pdu()).unwrap().body else { panic!("a deliver_sm") };
        assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(tag.as_bytes()));
        // Its resp completes the IMDN.
        f.smpp_sent(conn, 9, send);
        f.smpp_response(NOW, conn, 9, CommandStatus::ESME_ROK, b"");
        assert_eq!(f.poll_any_answer().filter(|a| a.txn == t).map(|a| a.status), Some(200));
    }

    /// The correlation table has a configured capacity: full, a converged MESSAGE is
    /// refused 503 with Retry-After and counted, never sent uncorrelated.
    #[test]
    fn a_full_correlation_table_answers_503() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replacen("[converged]", "[converged]\ncorrelation_capacity = 1024", 1);
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, None).unwrap());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig { capacity: 4096, ..ServerConfig::default() });
        f.bound(SMSCC, 3, true);
        for i in 0..1025u32 {
            let sip = conv_message(&format!("+44700030{i:05}"), &format!("cap{i}"));
            let t = txn(&mut server, sip.as_bytes());
            deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
            while f.poll_smpp(0).is_some() {}
        }
        assert_eq!(f.in_flight().3, 1024);
        let a = std::iter::from_fn(|| f.poll_any_answer()).last().expect("the 1025th is answered");
        assert_eq!((a.status, a.retry_after), (503, Some(10)));
        assert!(shared.drops().any(|(r, n)| r == "correlation_full" && n == 1));
    }

    /// Each drop reason indexes its own counter under its own name, and every reason a
    /// tag or an unknown system gives an IMDN has a counter of its own (not `other`).
    #[test]
    fn drop_reasons_are_distinct_and_cover_what_imdns_fail_for() {
        let names: std::collections::HashSet<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(DropReason::from_name(r.name()), *r);
        }
        for e in crate::tag::TagError::ALL {
            let reason = ImdnRouteError::Tag(e).reason();
            assert_ne!(DropReason::from_name(reason), DropReason::Other, "{reason}");
        }
        let unknown = ImdnRouteError::UnknownSystem(9).reason();
        assert_eq!(DropReason::from_name(unknown), DropReason::UnknownSystem);
    }

    /// The waiters are bounded too: past `waiter_capacity`, a MESSAGE gets 503 +
    /// Retry-After (an IMDN likewise) and a receipt to park ESME_RMSGQFUL, each counted.
    #[test]
    fn a_full_waiter_table_answers_503_and_message_queue_full() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        let text = text.replacen("[converged]", "[converged]\nwaiter_capacity = 64", 1);
        // A store that never answers.
        let (tx, _rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(Provision::parse(&text).unwrap(), 1, Some(tx)).unwrap());
        let mut f = flows(&shared);
        let mut server = ServerTransactions::new(ServerConfig { capacity: 4096, ..ServerConfig::default() });
        f.bound(SMSCC, 3, true);
        // With a store, each MESSAGE waits twice: for its answer and its record's write
        // (the store here never answers): 32 fill the 64.
        for i in 0..32u32 {
            let sip = conv_message(&format!("+44700030{i:05}"), &format!("w{i}"));
            let t = txn(&mut server, sip.as_bytes());
            deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        }
        assert_eq!(f.in_flight().0, 64);
        assert!(f.poll_any_answer().is_none());
        let sip = conv_message("+447000300099", "w-over");
        let t = txn(&mut server, sip.as_bytes());
        deliver(&mut f, &shared, NOW, sip.as_bytes(), t);
        let a = f.poll_any_answer().expect("the 33rd MESSAGE answered at once");
        assert_eq!((a.txn, a.status, a.retry_after), (t, 503, Some(1)));
        // A receipt for an id no resp bound: it cannot wait for its park's write.
        receipt_in(&mut f, NOW, 7, "no-such-id");
        assert_eq!(respond_of(f.poll_smpp(0)).2, CommandStatus::ESME_RMSGQFUL);
        assert!(shared.drops().any(|(r, n)| r == "waiters_full" && n == 2));
    }
}
