//! The converged → legacy correlation table: what iwf remembers of a message it
//! sent to a legacy system until that system's receipts have come back.
//!
//! ```text
//!  sip_to_submit ──insert(before sending!)──► entry, parts keyed by (system, sequence)
//!  submit_sm_resp ──resp(system, seq, CanonicalId)──► parts re-keyed by (system, id)
//!                                          └─► receipts parked for that id are applied now
//!  receipt ──receipt(system, id, state)──► Notify(state) → one IMDN │ Absorbed │ Parked
//!  control plane ──expire(now, budget)──► entries past their validity, parked receipts past 30 s
//! ```
//!
//! - The entry is written **before** the PDUs go out, keyed by
//!   `(legacy system, sequence_number)` per part; the `submit_sm_resp` re-keys
//!   the part by `(legacy system, canonical message_id)` (pitfall 2: never by
//!   bind, never globally).
//! - A receipt whose id is unknown is **parked** for
//!   [`CorrelationConfig::park_secs`] (≥ 30 s by default): its resp may still
//!   be on its way (pitfall 1). [`CorrelationTable::resp`] applies what was
//!   parked for the id.
//! - Per-part state: a single-part message keeps a packed [`ReceiptRecord`];
//!   a concatenated one a [`PartAggregate`] in a side slab, so N part receipts
//!   make one IMDN (pitfall 6). Duplicates and stale receipts are absorbed.
//! - A message whose outcome is complete (a final delivery state, and a
//!   display if one was asked) lingers [`CorrelationConfig::linger_secs`] to
//!   absorb late duplicates, then goes; any entry goes at its validity deadline.
//!   Expiry costs O(what expires): every message sits in one of two lists kept
//!   in deadline order (live messages by validity, complete ones by the end of
//!   their linger), linked through the message records themselves; each list's
//!   deadlines grow with insertion order (a constant offset from now), so a new
//!   deadline goes at the tail, and [`CorrelationTable::expire`] takes from the
//!   heads only what is due.
//! - While the IMDN of a state change is in flight the caller holds the message
//!   ([`CorrelationTable::hold`]): its receipts answer [`ReceiptOutcome::InFlight`]
//!   (nothing applied) and it does not expire. The IMDN's 2xx makes the change final
//!   ([`CorrelationTable::release`]); its failure restores the state taken before
//!   ([`CorrelationTable::checkpoint`], [`CorrelationTable::roll_back`]), so the
//!   receipt's resend produces the IMDN again.
//! - An SMSC id reused while an entry still holds it: a complete (lingering) holder is
//!   evicted and the id goes to the new part; a live holder keeps it
//!   ([`CorrelationError::IdInUse`], then [`CorrelationTable::detach`]).
//!
//! # Memory
//!
//! Sized for millions of pending entries (≤ 128 octets per entry at
//! 1 M). Per message a fixed 56-octet record; per part a 16-octet key record;
//! the index is an open-addressing table of `u32` (linear probing, load ≤ ¾,
//! backward-shift deletion: no tombstones); the variable strings (converged
//! message id, sender URI, IMDN route, non-numeric SMSC ids) go back to back
//! into a chunked arena (64 KiB chunks, so growth never doubles a big buffer).
//! Numbers are packed into `u64`: the recipient, a numeric SMSC id, and the
//! sender when its URI has the converged template's form
//! (`sip:+{msisdn}@ims.lab;user=phone`). [`CorrelationTable::memory_bytes`]
//! accounts every heap octet the table holds.
//!
//! Lookups, receipts and resps allocate nothing once capacity is reached;
//! growth (index rehash, a new arena chunk, slab doubling) is amortised.
//! Time is unix seconds passed in by the caller.

use core::fmt;
use core::hash::Hasher;
use std::collections::HashMap;

use siphasher::sip::SipHasher13;

use super::select::{pack_msisdn, unpack_msisdn, UriTemplate};
use crate::ids::LegacySystemId;
use crate::interwork::converged_to_legacy::{next_sequence, CanonicalId, PartAggregate, StoredCorrelation};
use crate::interwork::state::{ReceiptRecord, ReceiptState, Transition};
use crate::tag::TAG_EPOCH_UNIX;
use crate::wire::cpim::{DateTime, Dispositions};

const NONE: u32 = u32::MAX;
/// Arena chunk size (a string never spans chunks).
const CHUNK: usize = 1 << 16;
/// Longest string group one message may store (message id + sender + route).
pub const STRINGS_MAX: usize = 4096;
/// `sender_len` value: the sender is the packed number in the template's form.
const SENDER_TEMPLATED: u16 = u16::MAX;
/// `route_len` value: no IMDN route.
const NO_ROUTE: u16 = u16::MAX;
/// Most receipts parked per id.
const PARK_DEPTH: usize = 4;

/// Distinct ids parked at most by default.
pub const DEFAULT_MAX_PARKED: usize = 65_536;

/// Settings of a [`CorrelationTable`].
#[derive(Debug, Clone)]
pub struct CorrelationConfig {
    /// How long a receipt with an unknown id waits for its resp (seconds; ≥ 30
    /// recommended: an SMSC may send a receipt before the submit_sm_resp that gives out its id).
    pub park_secs: u64,
    /// Most distinct ids parked at once; beyond, receipts are refused
    /// ([`ReceiptOutcome::ParkFull`]).
    pub max_parked: usize,
    /// How long a complete message stays to absorb duplicate receipts (seconds).
    pub linger_secs: u64,
    /// The converged users' URI form: senders of this form are stored as a
    /// packed number instead of their text.
    pub sender_template: Option<UriTemplate>,
    /// Key of the index hash (random per process by default: ids come from
    /// outside, so collisions must not be predictable).
    pub hash_key: [u8; 16],
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            park_secs: 30,
            max_parked: DEFAULT_MAX_PARKED,
            linger_secs: 30,
            sender_template: None,
            hash_key: random_key(),
        }
    }
}

/// 16 octets that differ per process (from std's randomly seeded hasher).
fn random_key() -> [u8; 16] {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let mut key = [0u8; 16];
    for (i, half) in key.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// Why a correlation operation failed. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelationError {
    /// A message of 0 parts.
    NoParts,
    /// A part's `(system, sequence)` is already pending.
    SequenceInUse(u32),
    /// The message id, sender and route together exceed [`STRINGS_MAX`].
    TooLong,
    /// More entries than the table's `u32` indices or arena hold.
    Full,
    /// No pending part has this `(system, sequence)`.
    UnknownSequence(u32),
    /// The id is already pending for another part of this system.
    IdInUse,
    /// The message reference names no live entry.
    StaleRef,
    /// A restored part number is 0 or above the message's part count.
    PartOutOfRange(u8),
    /// The buffer for the sender URI is too small.
    BufferTooSmall,
}

impl fmt::Display for CorrelationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorrelationError::NoParts => f.write_str("message of 0 parts"),
            CorrelationError::SequenceInUse(s) => write!(f, "sequence {s} already pending"),
            CorrelationError::TooLong => {
                write!(f, "message id, sender and route exceed {STRINGS_MAX} octets")
            }
            CorrelationError::Full => f.write_str("correlation table full"),
            CorrelationError::UnknownSequence(s) => write!(f, "no pending part with sequence {s}"),
            CorrelationError::IdInUse => f.write_str("message id already pending for the system"),
            CorrelationError::StaleRef => f.write_str("no live entry for the message reference"),
            CorrelationError::PartOutOfRange(p) => write!(f, "part {p} outside the message"),
            CorrelationError::BufferTooSmall => f.write_str("buffer too small for the sender URI"),
        }
    }
}

impl std::error::Error for CorrelationError {}

/// A live entry of the table. Valid until the next call that takes the table
/// mutably (an entry may then have expired and its slot be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageRef(u32);

impl MessageRef {
    /// The slot index (for logs).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// A message about to be sent to a legacy system: what [`CorrelationTable::insert`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewMessage<'a> {
    /// The legacy system the parts go to.
    pub system: LegacySystemId,
    /// What the IMDN needs ([`crate::interwork::converged_to_legacy::CorrelationFacts::stored`]).
    pub stored: StoredCorrelation<'a>,
    /// Number of parts (1..=255).
    pub segments: u8,
    /// `sequence_number` of the first part; the others follow [`next_sequence`].
    pub first_sequence: u32,
    /// Unix seconds when the message's validity period ends.
    pub deadline: u64,
}

/// What a submit_sm_resp did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespOutcome {
    /// The message the part belongs to.
    pub message: MessageRef,
    /// The part (1-based).
    pub part: u8,
    /// The state to send one IMDN for now (a receipt was parked for the id, or
    /// the refusal decided the message), if any.
    pub notify: Option<ReceiptState>,
    /// A complete (lingering) message that held the same id and was removed to
    /// give the id to this part (the SMSC reuses its ids).
    pub evicted: Option<MessageRef>,
}

/// What to do with a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Send one IMDN for the message with this state (the IMDN writer still
    /// filters it by the dispositions asked).
    Notify {
        /// The message.
        message: MessageRef,
        /// Its new state.
        state: ReceiptState,
    },
    /// Nothing to send: a duplicate, a stale receipt, or a part while others
    /// are still open.
    Absorbed {
        /// The message.
        message: MessageRef,
    },
    /// The message's IMDN is in flight ([`CorrelationTable::hold`]): nothing
    /// applied; apply the receipt again once the IMDN has ended.
    InFlight {
        /// The message.
        message: MessageRef,
    },
    /// No entry for the id (yet): parked until its resp or the park timeout.
    Parked,
    /// No entry for the id, and the park is full: refused (count it).
    ParkFull,
}

/// What [`CorrelationTable::expire`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryReport {
    /// Messages past their validity deadline with an incomplete outcome.
    pub expired: usize,
    /// Complete messages whose linger ended.
    pub completed: usize,
    /// Parked receipts whose park time ended unmatched.
    pub parked_dropped: usize,
    /// Message slots looked at.
    pub scanned: usize,
}

/// Counters since the table was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CorrelationCounters {
    /// Messages inserted.
    pub inserted: u64,
    /// Receipts that led to an IMDN.
    pub notified: u64,
    /// Receipts absorbed (duplicates, stale, parts).
    pub absorbed: u64,
    /// Receipts parked.
    pub parked: u64,
    /// Parked receipts matched by a later resp.
    pub unparked: u64,
    /// Receipts refused because the park was full.
    pub park_full: u64,
    /// Parked receipts dropped unmatched.
    pub parked_dropped: u64,
    /// Messages expired incomplete.
    pub expired: u64,
    /// Complete messages removed early because the SMSC reused their id.
    pub evicted: u64,
    /// State changes rolled back (their IMDN failed).
    pub rolled_back: u64,
}

/// A message's receipt state before a change, to restore when the change's IMDN
/// fails ([`CorrelationTable::roll_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    message: u32,
    record: u8,
    deadline: u32,
    agg: Option<PartAggregate>,
}

/// One message: fixed size (60 octets: its 64-bit values are kept as two `u32`
/// so the record aligns to 4 and needs no padding). `segments == 0` marks a free
/// slot.
#[derive(Debug, Clone, Copy)]
struct MessageRec {
    /// Neighbours in its deadline list ([`NONE`] at the ends); which list is in
    /// `record` ([`QUEUE`]).
    prev: u32,
    next: u32,
    datetime_unix: [u32; 2],
    recipient: [u32; 2],
    sender: [u32; 2],
    strings: u32,
    deadline: u32,
    datetime_nanos: u32,
    agg: u32,
    /// The DateTime's offset in minutes (12 bits, signed: at most ±1439) and, in
    /// the top 4 bits, the dispositions asked for.
    offset_dispositions: u16,
    id_len: u16,
    sender_len: u16,
    route_len: u16,
    system: u16,
    segments: u8,
    /// Single part: packed [`ReceiptRecord`]; bit 7: complete.
    record: u8,
}

const COMPLETE: u8 = 0x80;
/// `record` bit: an IMDN of the message is in flight ([`CorrelationTable::hold`]).
const HELD: u8 = 0x40;
/// `record` bits: the deadline list that holds the message (0 none, 1 live, 2 lingering).
const QUEUE: u8 = 0x30;

fn split(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

fn join(v: [u32; 2]) -> u64 {
    (u64::from(v[0]) << 32) | u64::from(v[1])
}

impl MessageRec {
    const FREE: MessageRec = MessageRec {
        prev: NONE,
        next: NONE,
        datetime_unix: [0; 2],
        recipient: [0; 2],
        sender: [0; 2],
        strings: 0,
        deadline: 0,
        datetime_nanos: 0,
        agg: NONE,
        offset_dispositions: 0,
        id_len: 0,
        sender_len: 0,
        route_len: NO_ROUTE,
        system: 0,
        segments: 0,
        record: 0,
    };

    fn offset(&self) -> i16 {
        // Sign-extend the low 12 bits.
        ((self.offset_dispositions << 4) as i16) >> 4
    }

    fn dispositions(&self) -> u8 {
        (self.offset_dispositions >> 12) as u8
    }

    fn strings_len(&self) -> usize {
        usize::from(self.id_len)
            + if self.sender_len == SENDER_TEMPLATED { 0 } else { usize::from(self.sender_len) }
            + if self.route_len == NO_ROUTE { 0 } else { usize::from(self.route_len) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum KeyKind {
    Free = 0,
    Sequence = 1,
    NumId = 2,
    ArenaId = 3,
}

/// One part's index key (16 octets). `kind == Free` marks a free slot.
#[derive(Debug, Clone, Copy)]
struct PartRec {
    /// Sequence, numeric id, or arena ref << 8 | length.
    key: u64,
    message: u32,
    system: u16,
    part: u8,
    kind: KeyKind,
}

impl PartRec {
    const FREE: PartRec = PartRec { key: 0, message: NONE, system: 0, part: 0, kind: KeyKind::Free };
}

/// Append-only chunked string arena; space comes back by [`Arena::compact`].
#[derive(Debug, Default)]
struct Arena {
    chunks: Vec<Box<[u8]>>,
    fill: usize,
    live: usize,
}

impl Arena {
    /// Stores the concatenation of `parts` (≤ CHUNK octets), returning its ref.
    fn put(&mut self, parts: &[&[u8]]) -> Result<u32, CorrelationError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > CHUNK {
            return Err(CorrelationError::TooLong);
        }
        if self.chunks.is_empty() || self.fill + len > CHUNK {
            if self.chunks.len() >= (1 << 16) {
                return Err(CorrelationError::Full);
            }
            self.chunks.push(vec![0u8; CHUNK].into_boxed_slice());
            self.fill = 0;
        }
        let chunk_index = self.chunks.len() - 1;
        let at = self.fill;
        let chunk = self.chunks.get_mut(chunk_index).ok_or(CorrelationError::Full)?;
        let mut o = at;
        for p in parts {
            if let Some(dst) = chunk.get_mut(o..o + p.len()) {
                dst.copy_from_slice(p);
            }
            o += p.len();
        }
        self.fill = o;
        self.live += len;
        Ok(((chunk_index as u32) << 16) | at as u32)
    }

    fn get(&self, r: u32, len: usize) -> &[u8] {
        let (c, o) = ((r >> 16) as usize, (r & 0xffff) as usize);
        self.chunks.get(c).and_then(|ch| ch.get(o..o.saturating_add(len))).unwrap_or(&[])
    }

    fn free(&mut self, len: usize) {
        self.live = self.live.saturating_sub(len);
    }

    fn allocated(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    fn dead(&self) -> usize {
        let used = match self.chunks.len() {
            0 => 0,
            n => (n - 1) * CHUNK + self.fill,
        };
        used.saturating_sub(self.live)
    }
}

/// A concatenated message's aggregate and the refs of its parts 2..=N (the
/// vector keeps its capacity when the slot is reused).
#[derive(Debug, Clone)]
struct Concat {
    agg: PartAggregate,
    extra: Vec<u32>,
}

/// Part refs with this bit live in `extra`; without it, part 1 of message
/// `ref` in `parts` (parallel to `messages`).
const EXTRA: u32 = 1 << 31;

/// Receipts waiting for their resp.
#[derive(Debug, Clone, Copy)]
struct Parked {
    states: [Option<ReceiptState>; PARK_DEPTH],
    until: u64,
}

/// The correlation table. See the module documentation.
#[derive(Debug)]
pub struct CorrelationTable {
    config: CorrelationConfig,
    messages: Vec<MessageRec>,
    free_messages: Vec<u32>,
    /// Part 1 of each message, parallel to `messages`.
    parts: Vec<PartRec>,
    /// Parts 2..=N of concatenated messages.
    extra: Vec<PartRec>,
    free_extra: Vec<u32>,
    /// Part ref + 1; 0 = empty. Power-of-two length.
    index: Vec<u32>,
    index_len: usize,
    aggregates: Vec<Concat>,
    free_aggregates: Vec<u32>,
    arena: Arena,
    parked: HashMap<(u16, CanonicalId), Parked>,
    /// When the parked receipts were last swept (unix seconds).
    parked_swept: u64,
    live: usize,
    /// Deadline lists: `[live, lingering]`, each `(head, tail)`.
    queues: [(u32, u32); 2],
    counters: CorrelationCounters,
}

/// How a new message's parts are keyed.
#[derive(Clone, Copy)]
enum Keys<'k> {
    /// By sequence, from this first one.
    Sequences(u32),
    /// By the SMSC ids known for some parts.
    Ids(&'k [(u8, CanonicalId)]),
}

/// A key as looked up: `(kind, value)` with the bytes for arena ids.
#[derive(Clone, Copy)]
enum Probe<'a> {
    Sequence(u32),
    NumId(u64),
    Bytes(&'a [u8]),
}

/// The compact form of a canonical id: a number when it is decimal digits
/// without a leading zero that fit 63 bits, else its bytes.
fn probe_of(id: &CanonicalId) -> Probe<'_> {
    let b = id.as_bytes();
    if !b.is_empty() && b.len() <= 18 && b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || b.first() != Some(&b'0'))
    {
        let v = b.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
        Probe::NumId(v)
    } else {
        Probe::Bytes(b)
    }
}

fn to_epoch(unix: u64) -> u32 {
    u32::try_from(unix.saturating_sub(TAG_EPOCH_UNIX)).unwrap_or(u32::MAX)
}

fn pack_record(r: ReceiptRecord) -> u8 {
    let d = match r.delivery {
        None => 0,
        Some(ReceiptState::Buffered) => 1,
        Some(ReceiptState::Delivered) => 2,
        Some(ReceiptState::Failed) => 3,
        Some(ReceiptState::Rejected) => 4,
        Some(ReceiptState::Unknown) => 5,
        Some(ReceiptState::Displayed) => 6,
    };
    d | if r.displayed { 0x08 } else { 0 }
}

fn unpack_record(b: u8) -> ReceiptRecord {
    let delivery = match b & 0x07 {
        1 => Some(ReceiptState::Buffered),
        2 => Some(ReceiptState::Delivered),
        3 => Some(ReceiptState::Failed),
        4 => Some(ReceiptState::Rejected),
        5 => Some(ReceiptState::Unknown),
        6 => Some(ReceiptState::Displayed),
        _ => None,
    };
    ReceiptRecord { delivery, displayed: b & 0x08 != 0 }
}

impl CorrelationTable {
    /// An empty table.
    pub fn new(config: CorrelationConfig) -> Self {
        CorrelationTable::with_capacity(config, 0)
    }

    /// An empty table with room for `messages` single-part messages before it
    /// grows (index, slabs; the arena grows by chunks anyway).
    pub fn with_capacity(config: CorrelationConfig, messages: usize) -> Self {
        let slots = (messages.saturating_mul(4) / 3 + 1).next_power_of_two().max(16);
        CorrelationTable {
            config,
            messages: Vec::with_capacity(messages),
            free_messages: Vec::new(),
            parts: Vec::with_capacity(messages),
            extra: Vec::new(),
            free_extra: Vec::new(),
            index: vec![0; slots],
            index_len: 0,
            aggregates: Vec::new(),
            free_aggregates: Vec::new(),
            arena: Arena::default(),
            parked: HashMap::new(),
            parked_swept: 0,
            live: 0,
            queues: [(NONE, NONE); 2],
            counters: CorrelationCounters::default(),
        }
    }

    /// Live messages.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no message is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Distinct ids with parked receipts.
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// Counters since the table was made.
    pub fn counters(&self) -> CorrelationCounters {
        self.counters
    }

    /// Heap octets the table holds (capacities of every structure, arena
    /// chunks, the park), for the memory budget and metrics.
    pub fn memory_bytes(&self) -> usize {
        use core::mem::size_of;
        self.messages.capacity() * size_of::<MessageRec>()
            + self.free_messages.capacity() * 4
            + (self.parts.capacity() + self.extra.capacity()) * size_of::<PartRec>()
            + self.free_extra.capacity() * 4
            + self.index.capacity() * 4
            + self.aggregates.capacity() * size_of::<Concat>()
            + self.aggregates.iter().map(|c| c.extra.capacity() * 4).sum::<usize>()
            + self.free_aggregates.capacity() * 4
            + self.arena.chunks.capacity() * size_of::<Box<[u8]>>()
            + self.arena.allocated()
            + self.parked.capacity() * (size_of::<((u16, CanonicalId), Parked)>() + 1)
    }

    // ---- index ---------------------------------------------------------------

    fn hash_probe(&self, system: u16, p: Probe<'_>) -> u64 {
        let (k0, k1) = self.config.hash_key.split_at(8);
        let k0 = u64::from_le_bytes(k0.try_into().unwrap_or([0; 8]));
        let k1 = u64::from_le_bytes(k1.try_into().unwrap_or([0; 8]));
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write_u16(system);
        match p {
            Probe::Sequence(s) => {
                h.write_u8(1);
                h.write_u32(s);
            }
            Probe::NumId(v) => {
                h.write_u8(2);
                h.write_u64(v);
            }
            Probe::Bytes(b) => {
                h.write_u8(3);
                h.write(b);
            }
        }
        h.finish()
    }

    fn part(&self, r: u32) -> Option<&PartRec> {
        if r & EXTRA != 0 {
            self.extra.get((r & !EXTRA) as usize)
        } else {
            self.parts.get(r as usize)
        }
    }

    fn part_mut(&mut self, r: u32) -> Option<&mut PartRec> {
        if r & EXTRA != 0 {
            self.extra.get_mut((r & !EXTRA) as usize)
        } else {
            self.parts.get_mut(r as usize)
        }
    }

    fn probe_of_part(&self, p: &PartRec) -> Probe<'_> {
        match p.kind {
            KeyKind::Sequence => Probe::Sequence(p.key as u32),
            KeyKind::NumId => Probe::NumId(p.key),
            _ => Probe::Bytes(self.arena.get((p.key >> 8) as u32, (p.key & 0xff) as usize)),
        }
    }

    fn part_matches(&self, p: &PartRec, system: u16, probe: Probe<'_>) -> bool {
        if p.system != system {
            return false;
        }
        match (p.kind, probe) {
            (KeyKind::Sequence, Probe::Sequence(s)) => p.key == u64::from(s),
            (KeyKind::NumId, Probe::NumId(v)) => p.key == v,
            (KeyKind::ArenaId, Probe::Bytes(b)) => self.arena.get((p.key >> 8) as u32, (p.key & 0xff) as usize) == b,
            _ => false,
        }
    }

    /// The index slot holding the part with this key.
    fn find(&self, system: u16, probe: Probe<'_>) -> Option<(usize, u32)> {
        let mask = self.index.len().checked_sub(1)?;
        let mut i = self.hash_probe(system, probe) as usize & mask;
        for _ in 0..self.index.len() {
            let v = *self.index.get(i)?;
            if v == 0 {
                return None;
            }
            let part = v - 1;
            if let Some(p) = self.part(part) {
                if self.part_matches(p, system, probe) {
                    return Some((i, part));
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn home_of(&self, part: u32) -> usize {
        let mask = self.index.len().saturating_sub(1);
        match self.part(part) {
            Some(p) => self.hash_probe(p.system, self.probe_of_part(p)) as usize & mask,
            None => 0,
        }
    }

    fn index_insert(&mut self, part: u32) {
        if (self.index_len + 1) * 4 > self.index.len() * 3 {
            self.grow_index();
        }
        let mask = self.index.len() - 1;
        let mut i = self.home_of(part);
        while let Some(slot) = self.index.get_mut(i) {
            if *slot == 0 {
                *slot = part + 1;
                self.index_len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow_index(&mut self) {
        let new_len = (self.index.len() * 2).max(16);
        let old = core::mem::replace(&mut self.index, vec![0; new_len]);
        let mask = new_len - 1;
        for v in old.into_iter().filter(|&v| v != 0) {
            let mut i = self.home_of(v - 1);
            while let Some(slot) = self.index.get_mut(i) {
                if *slot == 0 {
                    *slot = v;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// Removes index slot `hole` (backward-shift deletion).
    fn index_remove_slot(&mut self, mut hole: usize) {
        let mask = self.index.len() - 1;
        if let Some(s) = self.index.get_mut(hole) {
            *s = 0;
        }
        self.index_len = self.index_len.saturating_sub(1);
        let mut j = (hole + 1) & mask;
        loop {
            let v = self.index.get(j).copied().unwrap_or(0);
            if v == 0 {
                return;
            }
            let home = self.home_of(v - 1);
            // Move v into the hole when its home is not cyclically in (hole, j].
            let dist_home = j.wrapping_sub(home) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                if let Some(s) = self.index.get_mut(hole) {
                    *s = v;
                }
                if let Some(s) = self.index.get_mut(j) {
                    *s = 0;
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
    }

    fn remove_part_key(&mut self, part: u32) {
        let Some(p) = self.part(part).copied() else {
            return;
        };
        let probe = self.probe_of_part(&p);
        if let Some((slot, _)) = self.find(p.system, probe) {
            self.index_remove_slot(slot);
        }
        if p.kind == KeyKind::ArenaId {
            self.arena.free((p.key & 0xff) as usize);
        }
    }

    // ---- slabs ---------------------------------------------------------------

    fn alloc_extra(&mut self, rec: PartRec) -> Result<u32, CorrelationError> {
        if let Some(i) = self.free_extra.pop() {
            if let Some(slot) = self.extra.get_mut(i as usize) {
                *slot = rec;
                return Ok(i | EXTRA);
            }
        }
        let i = u32::try_from(self.extra.len()).ok().filter(|&i| i < EXTRA - 1).ok_or(CorrelationError::Full)?;
        self.extra.push(rec);
        Ok(i | EXTRA)
    }

    // ---- operations ------------------------------------------------------------

    /// Records a message **before** its PDUs are sent: one key per part,
    /// `(system, sequence)`, the sequences following [`next_sequence`].
    pub fn insert(&mut self, msg: &NewMessage<'_>, _now: u64) -> Result<MessageRef, CorrelationError> {
        self.insert_keyed(msg, Keys::Sequences(msg.first_sequence))
    }

    /// Re-creates a message from the durable store after a restart: parts
    /// whose SMSC id was known (`(part, id)`, 1-based) are keyed by it; the
    /// others stay unkeyed (their resp died with the old process) and the
    /// message completes only by its deadline if they matter.
    /// `msg.first_sequence` is not used.
    pub fn restore(
        &mut self,
        msg: &NewMessage<'_>,
        ids: &[(u8, CanonicalId)],
        _now: u64,
    ) -> Result<MessageRef, CorrelationError> {
        self.insert_keyed(msg, Keys::Ids(ids))
    }

    fn insert_keyed(&mut self, msg: &NewMessage<'_>, keys: Keys<'_>) -> Result<MessageRef, CorrelationError> {
        if msg.segments == 0 {
            return Err(CorrelationError::NoParts);
        }
        let system = msg.system.0;
        self.check_keys_free(system, msg.segments, keys)?;
        let s = &msg.stored;
        let templated = self.config.sender_template.as_ref().and_then(|t| t.match_uri(s.sender));
        let sender_bytes: &[u8] = if templated.is_some() { b"" } else { s.sender.as_bytes() };
        let route_bytes = s.imdn_record_route.map(str::as_bytes).unwrap_or(b"");
        let total = s.message_id.len() + sender_bytes.len() + route_bytes.len();
        if total > STRINGS_MAX {
            return Err(CorrelationError::TooLong);
        }
        if self.messages.len() >= (EXTRA - 1) as usize && self.free_messages.is_empty() {
            return Err(CorrelationError::Full);
        }
        let strings = self.arena.put(&[s.message_id.as_bytes(), sender_bytes, route_bytes])?;
        let agg = if msg.segments > 1 { self.new_aggregate(msg.segments) } else { NONE };
        let rec = MessageRec {
            prev: NONE,
            next: NONE,
            datetime_unix: split(s.datetime.unix_seconds() as u64),
            recipient: split(pack_msisdn(&s.recipient)),
            sender: split(templated.map(|m| pack_msisdn(&m)).unwrap_or(0)),
            strings,
            deadline: to_epoch(msg.deadline),
            datetime_nanos: s.datetime.nanos(),
            agg,
            offset_dispositions: (u16::from(s.dispositions.bits() & 0x0F) << 12)
                | (s.datetime.offset_minutes() as u16 & 0x0FFF),
            id_len: s.message_id.len() as u16,
            sender_len: if templated.is_some() { SENDER_TEMPLATED } else { sender_bytes.len() as u16 },
            route_len: if s.imdn_record_route.is_some() { route_bytes.len() as u16 } else { NO_ROUTE },
            system,
            segments: msg.segments,
            record: 0,
        };
        let index = match self.free_messages.pop() {
            Some(i) => {
                if let Some(slot) = self.messages.get_mut(i as usize) {
                    *slot = rec;
                }
                i
            }
            None => {
                self.messages.push(rec);
                self.parts.push(PartRec::FREE);
                (self.messages.len() - 1) as u32
            }
        };
        self.key_parts(index, agg, system, msg.segments, keys)?;
        self.place(index);
        self.live += 1;
        self.counters.inserted += 1;
        Ok(MessageRef(index))
    }

    /// Whether the keys a new message's parts would take are free (and in range).
    fn check_keys_free(&self, system: u16, segments: u8, keys: Keys<'_>) -> Result<(), CorrelationError> {
        match keys {
            Keys::Sequences(first) => {
                let mut seq = first;
                for _ in 0..segments {
                    if self.find(system, Probe::Sequence(seq)).is_some() {
                        return Err(CorrelationError::SequenceInUse(seq));
                    }
                    seq = next_sequence(seq);
                }
            }
            Keys::Ids(ids) => {
                for (i, (part, id)) in ids.iter().enumerate() {
                    if *part == 0 || *part > segments {
                        return Err(CorrelationError::PartOutOfRange(*part));
                    }
                    let earlier = ids.get(..i).unwrap_or(&[]);
                    if self.find(system, probe_of(id)).is_some() || earlier.iter().any(|(p, e)| p == part || e == id) {
                        return Err(CorrelationError::IdInUse);
                    }
                }
            }
        }
        Ok(())
    }

    /// A part aggregate for a message of `segments` parts (a freed one reused).
    fn new_aggregate(&mut self, segments: u8) -> u32 {
        let agg = PartAggregate::new(segments);
        match self.free_aggregates.pop() {
            Some(i) => {
                if let Some(slot) = self.aggregates.get_mut(i as usize) {
                    slot.agg = agg;
                    slot.extra.clear();
                }
                i
            }
            None => {
                self.aggregates.push(Concat { agg, extra: Vec::with_capacity(usize::from(segments) - 1) });
                (self.aggregates.len() - 1) as u32
            }
        }
    }

    /// The part records of message `index` with their keys, indexed.
    fn key_parts(
        &mut self,
        index: u32,
        agg: u32,
        system: u16,
        segments: u8,
        keys: Keys<'_>,
    ) -> Result<(), CorrelationError> {
        let mut seq = match keys {
            Keys::Sequences(first) => first,
            Keys::Ids(_) => 0,
        };
        for part in 1..=segments {
            let (kind, key) = match keys {
                Keys::Sequences(_) => (KeyKind::Sequence, u64::from(seq)),
                Keys::Ids(ids) => match ids.iter().find(|(p, _)| *p == part) {
                    None => (KeyKind::Free, 0),
                    Some((_, id)) => match probe_of(id) {
                        Probe::NumId(v) => (KeyKind::NumId, v),
                        Probe::Bytes(b) => {
                            let r = self.arena.put(&[b])?;
                            (KeyKind::ArenaId, (u64::from(r) << 8) | b.len() as u64)
                        }
                        Probe::Sequence(_) => (KeyKind::Free, 0),
                    },
                },
            };
            let rec = PartRec { key, message: index, system, part, kind };
            let r = if part == 1 {
                if let Some(slot) = self.parts.get_mut(index as usize) {
                    *slot = rec;
                }
                index
            } else {
                let r = self.alloc_extra(rec)?;
                if let Some(c) = self.aggregates.get_mut(agg as usize) {
                    c.extra.push(r);
                }
                r
            };
            if kind != KeyKind::Free {
                self.index_insert(r);
            }
            seq = next_sequence(seq);
        }
        Ok(())
    }

    // ---- deadline lists ---------------------------------------------------------------

    /// Takes message `i` out of its deadline list.
    fn unlink(&mut self, i: u32) {
        let Some(r) = self.messages.get(i as usize).copied() else { return };
        let Some(q) = usize::from((r.record & QUEUE) >> 4).checked_sub(1) else { return };
        match self.messages.get_mut(r.prev as usize) {
            Some(p) => p.next = r.next,
            None => self.queues[q].0 = r.next,
        }
        match self.messages.get_mut(r.next as usize) {
            Some(n) => n.prev = r.prev,
            None => self.queues[q].1 = r.prev,
        }
        if let Some(m) = self.messages.get_mut(i as usize) {
            (m.prev, m.next) = (NONE, NONE);
            m.record &= !QUEUE;
        }
    }

    /// Puts message `i` in the list its state names (complete: lingering), in
    /// deadline order: from the tail back past later deadlines, which only a
    /// changed validity or linger setting produces, so this is O(1) in service.
    fn place(&mut self, i: u32) {
        self.unlink(i);
        let Some(r) = self.messages.get(i as usize).copied() else { return };
        if r.segments == 0 {
            return;
        }
        let q = usize::from(r.record & COMPLETE != 0);
        let mut after = self.queues[q].1;
        while let Some(a) = self.messages.get(after as usize).filter(|a| a.deadline > r.deadline) {
            after = a.prev;
        }
        let next = match self.messages.get_mut(after as usize) {
            Some(a) => core::mem::replace(&mut a.next, i),
            None => core::mem::replace(&mut self.queues[q].0, i),
        };
        match self.messages.get_mut(next as usize) {
            Some(n) => n.prev = i,
            None => self.queues[q].1 = i,
        }
        if let Some(m) = self.messages.get_mut(i as usize) {
            (m.prev, m.next) = (after, next);
            m.record = (m.record & !QUEUE) | ((q as u8 + 1) << 4);
        }
    }

    fn message(&self, m: MessageRef) -> Result<&MessageRec, CorrelationError> {
        self.messages.get(m.0 as usize).filter(|r| r.segments != 0).ok_or(CorrelationError::StaleRef)
    }

    /// The legacy system a message went to.
    pub fn system(&self, m: MessageRef) -> Result<LegacySystemId, CorrelationError> {
        Ok(LegacySystemId(self.message(m)?.system))
    }

    /// Parts of a message.
    pub fn segments(&self, m: MessageRef) -> Result<u8, CorrelationError> {
        Ok(self.message(m)?.segments)
    }

    /// What the IMDN of a message needs. A sender stored as a number is
    /// written into `buf` from the template; a stored sender text is borrowed.
    pub fn stored<'s>(&'s self, m: MessageRef, buf: &'s mut [u8]) -> Result<StoredCorrelation<'s>, CorrelationError> {
        let r = self.message(m)?;
        let all = self.arena.get(r.strings, r.strings_len());
        let (id, rest) = all.split_at(usize::from(r.id_len).min(all.len()));
        let (sender, route) = if r.sender_len == SENDER_TEMPLATED {
            let t = self.config.sender_template.as_ref().ok_or(CorrelationError::StaleRef)?;
            let number = unpack_msisdn(join(r.sender)).ok_or(CorrelationError::StaleRef)?;
            let n = t.write(&number, buf).map_err(|_| CorrelationError::BufferTooSmall)?;
            let sender = core::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("");
            (sender, rest)
        } else {
            let (s, route) = rest.split_at(usize::from(r.sender_len).min(rest.len()));
            (core::str::from_utf8(s).unwrap_or(""), route)
        };
        let text = |b: &'s [u8]| core::str::from_utf8(b).unwrap_or("");
        Ok(StoredCorrelation {
            message_id: text(id),
            sender,
            recipient: unpack_msisdn(join(r.recipient)).ok_or(CorrelationError::StaleRef)?,
            dispositions: dispositions_from_bits(r.dispositions()),
            datetime: DateTime::new(join(r.datetime_unix) as i64, r.datetime_nanos, r.offset())
                .unwrap_or(DateTime::from_unix(join(r.datetime_unix) as i64)),
            imdn_record_route: (r.route_len != NO_ROUTE).then(|| text(route)),
        })
    }

    /// The `submit_sm_resp` of part `sequence` carried the SMSC's message id:
    /// the part is re-keyed by `(system, id)`, and receipts parked for the id
    /// are applied (the last advance, if any, is in [`RespOutcome::notify`]).
    pub fn resp(
        &mut self,
        system: LegacySystemId,
        sequence: u32,
        id: &CanonicalId,
        now: u64,
    ) -> Result<RespOutcome, CorrelationError> {
        let (_, part) =
            self.find(system.0, Probe::Sequence(sequence)).ok_or(CorrelationError::UnknownSequence(sequence))?;
        let probe = probe_of(id);
        let mut evicted = None;
        if let Some((_, holder)) = self.find(system.0, probe) {
            // A complete message only lingers to absorb duplicates: the SMSC reused
            // its id (a restart), so the id is the new part's now.
            let holder = self.part(holder).map_or(NONE, |p| p.message);
            let lingering =
                self.messages.get(holder as usize).is_some_and(|r| r.record & (COMPLETE | HELD) == COMPLETE);
            if !lingering || self.part(part).is_some_and(|p| p.message == holder) {
                return Err(CorrelationError::IdInUse);
            }
            self.remove_index(holder);
            self.counters.evicted += 1;
            evicted = Some(MessageRef(holder));
        }
        // The eviction may have moved index slots: find the sequence key again.
        let (slot, part) =
            self.find(system.0, Probe::Sequence(sequence)).ok_or(CorrelationError::UnknownSequence(sequence))?;
        let (kind, key) = match probe {
            Probe::NumId(v) => (KeyKind::NumId, v),
            Probe::Bytes(b) => {
                let r = self.arena.put(&[b])?;
                (KeyKind::ArenaId, (u64::from(r) << 8) | b.len() as u64)
            }
            Probe::Sequence(_) => return Err(CorrelationError::UnknownSequence(sequence)),
        };
        self.index_remove_slot(slot);
        let (message, part_no) = match self.part_mut(part) {
            Some(p) => {
                p.kind = kind;
                p.key = key;
                (p.message, p.part)
            }
            None => return Err(CorrelationError::UnknownSequence(sequence)),
        };
        self.index_insert(part);
        let mut notify = None;
        if let Some(parked) = self.parked.remove(&(system.0, *id)) {
            if parked.until >= now {
                for state in parked.states.into_iter().flatten() {
                    self.counters.unparked += 1;
                    if let Some(s) = self.apply(message, part_no, state, now) {
                        notify = Some(s);
                    }
                }
            } else {
                self.counters.parked_dropped += 1;
            }
        }
        Ok(RespOutcome { message: MessageRef(message), part: part_no, notify, evicted })
    }

    /// The `submit_sm_resp` of part `sequence` carried an id that a live entry holds
    /// ([`CorrelationError::IdInUse`] from [`CorrelationTable::resp`]): the part loses
    /// its sequence key and stays without one. Its receipts carry the holder's id and
    /// go to the holder (the two cannot be told apart); this message gets no receipt
    /// for the part and goes at its validity deadline.
    pub fn detach(&mut self, system: LegacySystemId, sequence: u32) -> Result<RespOutcome, CorrelationError> {
        let (slot, part) =
            self.find(system.0, Probe::Sequence(sequence)).ok_or(CorrelationError::UnknownSequence(sequence))?;
        self.index_remove_slot(slot);
        let p = self.part_mut(part).ok_or(CorrelationError::UnknownSequence(sequence))?;
        p.kind = KeyKind::Free;
        p.key = 0;
        Ok(RespOutcome { message: MessageRef(p.message), part: p.part, notify: None, evicted: None })
    }

    /// The legacy system refused part `sequence` (an error `command_status`, or
    /// no resp in time): the part has failed; the message's IMDN state, if it
    /// changes, is in [`RespOutcome::notify`].
    pub fn refused(
        &mut self,
        system: LegacySystemId,
        sequence: u32,
        now: u64,
    ) -> Result<RespOutcome, CorrelationError> {
        let (_, part) =
            self.find(system.0, Probe::Sequence(sequence)).ok_or(CorrelationError::UnknownSequence(sequence))?;
        let (message, part_no) =
            self.part(part).map(|p| (p.message, p.part)).ok_or(CorrelationError::UnknownSequence(sequence))?;
        let notify = self.apply(message, part_no, ReceiptState::Failed, now);
        Ok(RespOutcome { message: MessageRef(message), part: part_no, notify, evicted: None })
    }

    /// The message whose part has the id `(system, id)`.
    pub fn message_of(&self, system: LegacySystemId, id: &CanonicalId) -> Option<MessageRef> {
        let (_, part) = self.find(system.0, probe_of(id))?;
        self.part(part).map(|p| MessageRef(p.message))
    }

    /// Whether receipts for `(system, id)` are parked.
    pub fn is_parked(&self, system: LegacySystemId, id: &CanonicalId) -> bool {
        self.parked.contains_key(&(system.0, *id))
    }

    /// Drops the receipts parked for `(system, id)` (the caller applies its own
    /// copies); whether there were any.
    pub fn unpark(&mut self, system: LegacySystemId, id: &CanonicalId) -> bool {
        self.parked.remove(&(system.0, *id)).is_some()
    }

    /// The message's receipt state now, to restore if the IMDN of the next change fails.
    pub fn checkpoint(&self, m: MessageRef) -> Result<Checkpoint, CorrelationError> {
        let r = self.message(m)?;
        let agg = if r.agg == NONE { None } else { self.aggregates.get(r.agg as usize).map(|c| c.agg) };
        Ok(Checkpoint { message: m.0, record: r.record & !HELD, deadline: r.deadline, agg })
    }

    /// An IMDN of the message is in flight: its receipts answer
    /// [`ReceiptOutcome::InFlight`] and it does not expire until
    /// [`CorrelationTable::release`] or [`CorrelationTable::roll_back`].
    pub fn hold(&mut self, m: MessageRef) -> Result<(), CorrelationError> {
        self.message(m)?;
        if let Some(r) = self.messages.get_mut(m.0 as usize) {
            r.record |= HELD;
        }
        Ok(())
    }

    /// The IMDN got its 2xx: the change is final (a complete message lingers from now on).
    pub fn release(&mut self, m: MessageRef, now: u64) -> Result<(), CorrelationError> {
        self.message(m)?;
        let linger = to_epoch(now.saturating_add(self.config.linger_secs));
        if let Some(r) = self.messages.get_mut(m.0 as usize) {
            r.record &= !HELD;
            if r.record & COMPLETE != 0 {
                // Late duplicates are absorbed for the linger time after the 2xx.
                r.deadline = r.deadline.max(linger);
            }
        }
        self.place(m.0);
        Ok(())
    }

    /// The IMDN failed: the message's state goes back to `checkpoint` (taken before the
    /// change), so the receipt's resend produces the IMDN again; the hold ends.
    pub fn roll_back(&mut self, m: MessageRef, checkpoint: &Checkpoint) -> Result<(), CorrelationError> {
        let r = *self.message(m)?;
        if checkpoint.message != m.0 {
            return Err(CorrelationError::StaleRef);
        }
        if let (Some(agg), Some(c)) = (checkpoint.agg, self.aggregates.get_mut(r.agg as usize)) {
            c.agg = agg;
        }
        if let Some(rec) = self.messages.get_mut(m.0 as usize) {
            // The state goes back; the list it sits in is `place`'s to change.
            rec.record = (checkpoint.record & !(HELD | QUEUE)) | (rec.record & QUEUE);
            rec.deadline = checkpoint.deadline;
        }
        self.place(m.0);
        self.counters.rolled_back += 1;
        Ok(())
    }

    /// A receipt for `(system, id)`: applied to its part; parked when the id
    /// is not (yet) known.
    pub fn receipt(
        &mut self,
        system: LegacySystemId,
        id: &CanonicalId,
        state: ReceiptState,
        now: u64,
    ) -> ReceiptOutcome {
        let found =
            self.find(system.0, probe_of(id)).and_then(|(_, part)| self.part(part).map(|p| (p.message, p.part)));
        let held = |m: u32| self.messages.get(m as usize).is_some_and(|r| r.record & HELD != 0);
        match found {
            Some((message, _)) if held(message) => ReceiptOutcome::InFlight { message: MessageRef(message) },
            Some((message, part)) => match self.apply(message, part, state, now) {
                Some(state) => {
                    self.counters.notified += 1;
                    ReceiptOutcome::Notify { message: MessageRef(message), state }
                }
                None => {
                    self.counters.absorbed += 1;
                    ReceiptOutcome::Absorbed { message: MessageRef(message) }
                }
            },
            None => self.park(system.0, id, state, now),
        }
    }

    fn park(&mut self, system: u16, id: &CanonicalId, state: ReceiptState, now: u64) -> ReceiptOutcome {
        let until = now.saturating_add(self.config.park_secs);
        let full = self.parked.len() >= self.config.max_parked;
        match self.parked.get_mut(&(system, *id)) {
            Some(p) => {
                if p.states.contains(&Some(state)) {
                    // A duplicate while parked: keep one.
                } else if let Some(slot) = p.states.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(state);
                } else if let Some(last) = p.states.last_mut() {
                    *last = Some(state);
                }
            }
            None if full => {
                self.counters.park_full += 1;
                return ReceiptOutcome::ParkFull;
            }
            None => {
                let mut states = [None; PARK_DEPTH];
                states[0] = Some(state);
                self.parked.insert((system, *id), Parked { states, until });
            }
        }
        self.counters.parked += 1;
        ReceiptOutcome::Parked
    }

    /// Applies a part's state; returns the message state to notify, if any.
    fn apply(&mut self, message: u32, part: u8, state: ReceiptState, now: u64) -> Option<ReceiptState> {
        let r = *self.messages.get(message as usize)?;
        if r.segments == 0 || r.record & COMPLETE != 0 {
            return None;
        }
        let (notify, reported) = if r.agg == NONE {
            let mut rec = unpack_record(r.record);
            let t = rec.apply(state);
            if let Some(m) = self.messages.get_mut(message as usize) {
                m.record = pack_record(rec) | (m.record & (HELD | QUEUE));
            }
            ((t == Transition::Advance).then_some(state), rec)
        } else {
            let a = &mut self.aggregates.get_mut(r.agg as usize)?.agg;
            (a.apply(part, state).ok().flatten(), a.reported())
        };
        let display_asked = dispositions_from_bits(r.dispositions()).contains(Dispositions::DISPLAY);
        let done = reported.delivery.is_some_and(ReceiptState::is_final) && (!display_asked || reported.displayed);
        if done {
            let linger = to_epoch(now.saturating_add(self.config.linger_secs));
            if let Some(m) = self.messages.get_mut(message as usize) {
                m.record |= COMPLETE;
                m.deadline = m.deadline.min(linger);
            }
            self.place(message);
        }
        notify
    }

    /// Removes a message and its keys now (e.g. after its final IMDN was
    /// acknowledged and no display is awaited).
    pub fn remove(&mut self, m: MessageRef) -> Result<(), CorrelationError> {
        self.message(m)?;
        self.remove_index(m.0);
        Ok(())
    }

    fn remove_index(&mut self, message: u32) {
        let Some(r) = self.messages.get(message as usize).copied() else {
            return;
        };
        self.unlink(message);
        self.remove_part_key(message);
        if let Some(p) = self.parts.get_mut(message as usize) {
            *p = PartRec::FREE;
        }
        if r.agg != NONE {
            let extra = match self.aggregates.get_mut(r.agg as usize) {
                Some(c) => core::mem::take(&mut c.extra),
                None => Vec::new(),
            };
            for &e in &extra {
                self.remove_part_key(e);
                if let Some(p) = self.part_mut(e) {
                    *p = PartRec::FREE;
                }
                self.free_extra.push(e & !EXTRA);
            }
            if let Some(c) = self.aggregates.get_mut(r.agg as usize) {
                c.extra = extra; // keep the capacity for the next message
                c.extra.clear();
            }
            self.free_aggregates.push(r.agg);
        }
        self.arena.free(r.strings_len());
        if let Some(slot) = self.messages.get_mut(message as usize) {
            *slot = MessageRec::FREE;
        }
        self.free_messages.push(message);
        self.live = self.live.saturating_sub(1);
    }

    /// Removes up to `budget` messages past their deadline or linger, taking
    /// them from the heads of the deadline lists: the cost is what expires (a
    /// message whose IMDN is in flight is stepped over; it is rare and short),
    /// nothing when nothing is due, so it can run every poll. Parked receipts
    /// past their park time are dropped once per second.
    pub fn expire(&mut self, now: u64, budget: usize) -> ExpiryReport {
        let mut report = ExpiryReport::default();
        if now != self.parked_swept {
            self.parked_swept = now;
            let before = self.parked.len();
            self.parked.retain(|_, p| p.until >= now);
            report.parked_dropped = before - self.parked.len();
            self.counters.parked_dropped += report.parked_dropped as u64;
        }
        let now_e = to_epoch(now);
        for q in 0..self.queues.len() {
            let mut i = self.queues[q].0;
            while report.expired + report.completed < budget {
                let Some(r) = self.messages.get(i as usize).copied().filter(|r| r.deadline < now_e) else {
                    break;
                };
                report.scanned += 1;
                let next = r.next;
                if r.record & HELD == 0 {
                    if r.record & COMPLETE != 0 {
                        report.completed += 1;
                    } else {
                        report.expired += 1;
                        self.counters.expired += 1;
                    }
                    self.remove_index(i);
                }
                i = next;
            }
        }
        if self.arena.dead() > self.arena.live.max(4 * CHUNK) {
            self.compact_arena();
        }
        report
    }

    /// Rewrites the arena with only live strings (the control plane's upkeep;
    /// [`CorrelationTable::expire`] calls it when more than half is dead).
    pub fn compact_arena(&mut self) {
        let mut fresh = Arena::default();
        let old = core::mem::take(&mut self.arena);
        for m in self.messages.iter_mut().filter(|m| m.segments != 0) {
            let len = m.strings_len();
            let bytes = old.get(m.strings, len);
            if let Ok(r) = fresh.put(&[bytes]) {
                m.strings = r;
            }
        }
        for p in self.parts.iter_mut().chain(self.extra.iter_mut()).filter(|p| p.kind == KeyKind::ArenaId) {
            let len = (p.key & 0xff) as usize;
            let bytes = old.get((p.key >> 8) as u32, len);
            if let Ok(r) = fresh.put(&[bytes]) {
                p.key = (u64::from(r) << 8) | len as u64;
            }
        }
        self.arena = fresh;
    }
}

fn dispositions_from_bits(bits: u8) -> Dispositions {
    let mut d = Dispositions::empty();
    for one in [
        Dispositions::POSITIVE_DELIVERY,
        Dispositions::NEGATIVE_DELIVERY,
        Dispositions::PROCESSING,
        Dispositions::DISPLAY,
    ] {
        if bits & one.bits() != 0 {
            d = d.union(one);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interwork::address::Msisdn;
    use crate::interwork::converged_to_legacy::{canonical_id, IdOrigin};
    use crate::interwork::IdCanonicalisation;
    use proptest::prelude::*;
    use ReceiptState::*;

    const T0: u64 = 1_800_000_000;
    const SYS: LegacySystemId = LegacySystemId(3);

    fn config() -> CorrelationConfig {
        CorrelationConfig {
            sender_template: Some(UriTemplate::parse("sip:+{msisdn}@ims.lab;user=phone").unwrap()),
            ..CorrelationConfig::default()
        }
    }

    fn stored(id: &'static str, sender: &'static str, d: Dispositions) -> StoredCorrelation<'static> {
        StoredCorrelation {
            message_id: id,
            sender,
            recipient: Msisdn::parse("+447000312345").unwrap(),
            dispositions: d,
            datetime: DateTime::new(1_700_000_000, 123_000_000, 60).unwrap(),
            imdn_record_route: None,
        }
    }

    fn delivery() -> Dispositions {
        Dispositions::POSITIVE_DELIVERY.union(Dispositions::NEGATIVE_DELIVERY)
    }

    fn new(seq: u32, segments: u8, s: StoredCorrelation<'static>) -> NewMessage<'static> {
        NewMessage { system: SYS, stored: s, segments, first_sequence: seq, deadline: T0 + 3600 }
    }

    fn id(s: &str) -> CanonicalId {
        canonical_id(s.as_bytes(), IdCanonicalisation::Folded, IdOrigin::SubmitResp).unwrap()
    }

    #[test]
    fn hash_keys_differ_per_table_config() {
        assert_ne!(CorrelationConfig::default().hash_key, CorrelationConfig::default().hash_key);
    }

    #[test]
    fn sizes_stay_compact() {
        // 52 octets of message, 8 of deadline-list links (expiry by what is due).
        assert_eq!(core::mem::size_of::<MessageRec>(), 60);
        for offset in [-1439i16, -1, 0, 1, 60, 1439] {
            let r = MessageRec { offset_dispositions: (0xF << 12) | (offset as u16 & 0x0FFF), ..MessageRec::FREE };
            assert_eq!((r.offset(), r.dispositions()), (offset, 0xF));
        }
        assert_eq!(core::mem::size_of::<PartRec>(), 16);
    }

    #[test]
    fn resp_then_receipt_notifies_once() {
        let mut t = CorrelationTable::new(config());
        let m =
            t.insert(&new(10, 1, stored("Xy9-77aQ", "sip:+447700900001@ims.lab;user=phone", delivery())), T0).unwrap();
        assert_eq!(t.len(), 1);
        let r = t.resp(SYS, 10, &id("0A1B"), T0).unwrap();
        assert_eq!((r.message, r.part, r.notify), (m, 1, None));
        // The sequence key is gone, the id key is live.
        assert_eq!(t.resp(SYS, 10, &id("ffff"), T0), Err(CorrelationError::UnknownSequence(10)));
        assert_eq!(
            t.receipt(SYS, &id("a1b"), Buffered, T0 + 1),
            ReceiptOutcome::Notify { message: m, state: Buffered }
        );
        assert_eq!(t.receipt(SYS, &id("a1b"), Buffered, T0 + 1), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(
            t.receipt(SYS, &id("A1B"), Delivered, T0 + 2),
            ReceiptOutcome::Notify { message: m, state: Delivered }
        );
        // Complete: duplicates are absorbed while it lingers.
        assert_eq!(t.receipt(SYS, &id("a1b"), Delivered, T0 + 3), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.receipt(SYS, &id("a1b"), Failed, T0 + 3), ReceiptOutcome::Absorbed { message: m });
        let mut buf = [0u8; 128];
        let s = t.stored(m, &mut buf).unwrap();
        assert_eq!(s, stored("Xy9-77aQ", "sip:+447700900001@ims.lab;user=phone", delivery()));
        // Another system's receipt with the same id is not this message's.
        assert_eq!(t.receipt(LegacySystemId(4), &id("a1b"), Delivered, T0), ReceiptOutcome::Parked);
        let rep = t.expire(T0 + 2 + 30, 100);
        assert_eq!((rep.completed, rep.parked_dropped), (0, 1));
        let rep = t.expire(T0 + 2 + 31, 100);
        assert_eq!((rep.completed, rep.expired), (1, 0));
        assert!(t.is_empty());
        assert_eq!(t.stored(m, &mut buf), Err(CorrelationError::StaleRef));
    }

    #[test]
    fn receipt_before_resp_is_parked_and_matched() {
        let mut t = CorrelationTable::new(config());
        let m = t.insert(&new(7, 1, stored("m1", "sip:alice@ims.lab", delivery())), T0).unwrap();
        assert_eq!(t.receipt(SYS, &id("99"), Buffered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.receipt(SYS, &id("99"), Delivered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.receipt(SYS, &id("99"), Delivered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.parked_len(), 1);
        let r = t.resp(SYS, 7, &id("99"), T0 + 29).unwrap();
        assert_eq!(r.notify, Some(Delivered));
        assert_eq!(r.message, m);
        assert_eq!(t.parked_len(), 0);
        assert_eq!(t.counters().unparked, 2);
        let mut buf = [0u8; 8];
        assert_eq!(t.stored(m, &mut buf).unwrap().sender, "sip:alice@ims.lab");
    }

    #[test]
    fn parked_receipt_expires_after_park_time() {
        let mut t = CorrelationTable::new(config());
        t.insert(&new(7, 1, stored("m1", "sip:a@x", delivery())), T0).unwrap();
        assert_eq!(t.receipt(SYS, &id("42"), Delivered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.expire(T0 + 30, 0).parked_dropped, 0);
        assert_eq!(t.expire(T0 + 31, 0).parked_dropped, 1);
        assert_eq!(t.resp(SYS, 7, &id("42"), T0 + 31).unwrap().notify, None);
        // A parked receipt past its time is not applied even if expire did not run.
        let mut t = CorrelationTable::new(config());
        t.insert(&new(7, 1, stored("m1", "sip:a@x", delivery())), T0).unwrap();
        t.receipt(SYS, &id("42"), Delivered, T0);
        assert_eq!(t.resp(SYS, 7, &id("42"), T0 + 31).unwrap().notify, None);
    }

    #[test]
    fn park_is_bounded() {
        let mut t = CorrelationTable::new(CorrelationConfig { max_parked: 2, ..config() });
        assert_eq!(t.receipt(SYS, &id("1"), Delivered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.receipt(SYS, &id("2"), Delivered, T0), ReceiptOutcome::Parked);
        assert_eq!(t.receipt(SYS, &id("3"), Delivered, T0), ReceiptOutcome::ParkFull);
        assert_eq!(t.receipt(SYS, &id("2"), Failed, T0), ReceiptOutcome::Parked);
        assert_eq!(t.counters().park_full, 1);
    }

    #[test]
    fn concatenated_parts_make_one_imdn() {
        let mut t = CorrelationTable::new(config());
        let m = t.insert(&new(100, 3, stored("long", "sip:+1555@ims.lab;user=phone", delivery())), T0).unwrap();
        assert_eq!(t.segments(m), Ok(3));
        for (seq, i) in [(100, "a"), (101, "b"), (102, "c")] {
            assert_eq!(t.resp(SYS, seq, &id(i), T0).unwrap().notify, None);
        }
        assert_eq!(t.receipt(SYS, &id("a"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.receipt(SYS, &id("b"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.receipt(SYS, &id("b"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.receipt(SYS, &id("c"), Delivered, T0), ReceiptOutcome::Notify { message: m, state: Delivered });
        assert_eq!(t.receipt(SYS, &id("c"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        t.remove(m).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.receipt(SYS, &id("a"), Delivered, T0), ReceiptOutcome::Parked);
        // The slots are reused, keys do not leak.
        let m2 = t.insert(&new(200, 2, stored("two", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(m2, m);
        assert_eq!(t.extra.len(), 2);
        assert_eq!(t.index_len, 2);
    }

    #[test]
    fn a_held_message_waits_for_its_imdn_and_a_failed_imdn_rolls_its_state_back() {
        let mut t = CorrelationTable::new(config());
        let m = t.insert(&new(1, 1, stored("r", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 1, &id("5"), T0).unwrap();
        assert_eq!(t.message_of(SYS, &id("5")), Some(m));
        let before = t.checkpoint(m).unwrap();
        assert_eq!(t.receipt(SYS, &id("5"), Delivered, T0), ReceiptOutcome::Notify { message: m, state: Delivered });
        t.hold(m).unwrap();
        // While its IMDN is in flight: a resend is not applied, the entry does not expire.
        assert_eq!(t.receipt(SYS, &id("5"), Delivered, T0 + 1), ReceiptOutcome::InFlight { message: m });
        assert_eq!(t.expire(T0 + 40, 10).completed, 0);
        // The IMDN failed: the resend produces it again.
        t.roll_back(m, &before).unwrap();
        assert_eq!(t.counters().rolled_back, 1);
        assert_eq!(
            t.receipt(SYS, &id("5"), Delivered, T0 + 40),
            ReceiptOutcome::Notify { message: m, state: Delivered }
        );
        t.hold(m).unwrap();
        // Its 2xx: final; duplicates are absorbed for the linger time from then.
        t.release(m, T0 + 60).unwrap();
        assert_eq!(t.receipt(SYS, &id("5"), Delivered, T0 + 61), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.expire(T0 + 90, 10).completed, 0);
        assert_eq!(t.expire(T0 + 91, 10).completed, 1);
        assert_eq!(t.roll_back(m, &before), Err(CorrelationError::StaleRef));
        // A concatenated message's aggregate goes back too.
        let m = t.insert(&new(10, 2, stored("c", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 10, &id("a"), T0).unwrap();
        t.resp(SYS, 11, &id("b"), T0).unwrap();
        assert_eq!(t.receipt(SYS, &id("a"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        let before = t.checkpoint(m).unwrap();
        assert_eq!(t.receipt(SYS, &id("b"), Delivered, T0), ReceiptOutcome::Notify { message: m, state: Delivered });
        t.hold(m).unwrap();
        t.roll_back(m, &before).unwrap();
        assert_eq!(t.receipt(SYS, &id("b"), Delivered, T0), ReceiptOutcome::Notify { message: m, state: Delivered });
    }

    #[test]
    fn a_reused_id_evicts_a_lingering_entry_but_not_a_live_one() {
        let mut t = CorrelationTable::new(config());
        let old = t.insert(&new(1, 1, stored("old", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 1, &id("77"), T0).unwrap();
        assert_eq!(t.receipt(SYS, &id("77"), Delivered, T0), ReceiptOutcome::Notify { message: old, state: Delivered });
        // Complete and lingering: the id goes to the new part.
        let new_m = t.insert(&new(2, 1, stored("new", "sip:b@x", delivery())), T0).unwrap();
        let r = t.resp(SYS, 2, &id("77"), T0 + 1).unwrap();
        assert_eq!((r.message, r.evicted), (new_m, Some(old)));
        assert_eq!(t.counters().evicted, 1);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.receipt(SYS, &id("77"), Delivered, T0 + 2),
            ReceiptOutcome::Notify { message: new_m, state: Delivered }
        );
        // A live holder (no receipt yet) keeps the id; the new part is detached.
        let live = t.insert(&new(3, 1, stored("live", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 3, &id("88"), T0).unwrap();
        let late = t.insert(&new(4, 1, stored("late", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(t.resp(SYS, 4, &id("88"), T0), Err(CorrelationError::IdInUse));
        let r = t.detach(SYS, 4).unwrap();
        assert_eq!((r.message, r.part, r.notify), (late, 1, None));
        assert_eq!(t.detach(SYS, 4), Err(CorrelationError::UnknownSequence(4)));
        assert_eq!(t.message_of(SYS, &id("88")), Some(live));
        assert_eq!(t.index_len, 2);
        // A held holder is not evicted either.
        let m = t.insert(&new(5, 1, stored("held", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 5, &id("99"), T0).unwrap();
        t.receipt(SYS, &id("99"), Delivered, T0);
        t.hold(m).unwrap();
        t.insert(&new(6, 1, stored("next", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(t.resp(SYS, 6, &id("99"), T0), Err(CorrelationError::IdInUse));
    }

    #[test]
    fn a_failed_part_fails_the_message() {
        let mut t = CorrelationTable::new(config());
        let m = t.insert(&new(100, 2, stored("long", "sip:b@x", delivery())), T0).unwrap();
        t.resp(SYS, 100, &id("a"), T0).unwrap();
        let r = t.refused(SYS, 101, T0).unwrap();
        assert_eq!((r.message, r.part, r.notify), (m, 2, Some(Failed)));
        assert_eq!(t.receipt(SYS, &id("a"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.refused(SYS, 100, T0), Err(CorrelationError::UnknownSequence(100)));
    }

    #[test]
    fn display_keeps_the_entry_until_read() {
        let mut t = CorrelationTable::new(config());
        let d = delivery().union(Dispositions::DISPLAY);
        let m = t.insert(&new(1, 1, stored("r", "sip:b@x", d)), T0).unwrap();
        t.resp(SYS, 1, &id("5"), T0).unwrap();
        assert_eq!(t.receipt(SYS, &id("5"), Delivered, T0), ReceiptOutcome::Notify { message: m, state: Delivered });
        // Not complete: a read report may follow long after the linger time.
        assert_eq!(t.expire(T0 + 100, 10).completed, 0);
        assert_eq!(
            t.receipt(SYS, &id("5"), Displayed, T0 + 100),
            ReceiptOutcome::Notify { message: m, state: Displayed }
        );
        assert_eq!(t.receipt(SYS, &id("5"), Displayed, T0 + 100), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.expire(T0 + 131, 10).completed, 1);
    }

    #[test]
    fn validity_deadline_expires_incomplete_entries() {
        let mut t = CorrelationTable::new(config());
        t.insert(&new(1, 1, stored("a", "sip:b@x", delivery())), T0).unwrap();
        t.insert(&new(2, 2, stored("b", "sip:b@x", delivery())), T0).unwrap();
        let rep = t.expire(T0 + 3600, 10);
        assert_eq!((rep.scanned, rep.expired), (0, 0), "nothing due: nothing looked at");
        // The budget bounds the removals of one call; the rest wait for the next.
        let rep = t.expire(T0 + 3601, 1);
        assert_eq!((rep.scanned, rep.expired), (1, 1));
        let rep = t.expire(T0 + 3601, 1);
        assert_eq!(rep.expired, 1);
        assert!(t.is_empty());
        assert_eq!(t.index_len, 0);
        assert_eq!(t.counters().expired, 2);
    }

    /// Expiry costs what expires: among 100 000 live entries, the 300 that completed
    /// (scattered over the table) all go once their linger ends, and nothing else is
    /// looked at. A scan of a fixed number of slots per call let completed entries
    /// pile up whenever more completed per call than it scanned.
    #[test]
    fn expiry_takes_what_is_due_wherever_it_sits() {
        let mut t = CorrelationTable::new(config());
        let mut refs = Vec::new();
        for seq in 1..=100_000u32 {
            let m = t.insert(&new(seq, 1, stored("m", "sip:b@x", delivery())), T0).unwrap();
            refs.push((seq, m));
        }
        for (n, &(seq, m)) in refs.iter().enumerate().filter(|(n, _)| n % 333 == 7) {
            t.resp(SYS, seq, &id(&format!("{n}")), T0 + 1).unwrap();
            assert!(matches!(
                t.receipt(SYS, &id(&format!("{n}")), ReceiptState::Delivered, T0 + 1),
                ReceiptOutcome::Notify { message, .. } if message == m
            ));
        }
        let linger = config().linger_secs;
        assert_eq!(t.expire(T0 + 1 + linger, 100_000).scanned, 0, "the linger has not ended");
        let rep = t.expire(T0 + 2 + linger, 100_000);
        assert_eq!((rep.completed, rep.expired, rep.scanned), (301, 0, 301));
        assert_eq!(t.len(), 100_000 - 301);
        // Sustained: 400 messages a second, each complete at once, expiry once a
        // second with a budget the rate fits: the table holds rate × linger.
        let mut t = CorrelationTable::new(config());
        let mut seq = 1u32;
        let mut peak = 0;
        for sec in 0..600u64 {
            let now = T0 + sec;
            for _ in 0..400 {
                let m = t.insert(&new(seq, 1, stored("m", "sip:b@x", delivery())), now).unwrap();
                let smsc = id(&format!("s{seq}"));
                t.resp(SYS, seq, &smsc, now).unwrap();
                assert!(matches!(t.receipt(SYS, &smsc, ReceiptState::Delivered, now), ReceiptOutcome::Notify { .. }));
                t.release(m, now).unwrap();
                seq = next_sequence(seq);
            }
            t.expire(now, 4096);
            if sec > 60 {
                peak = peak.max(t.len());
            }
        }
        let steady = 400 * (linger as usize + 1);
        assert!(peak <= steady, "{peak} entries held, rate × linger is {steady}");
    }

    #[test]
    fn insert_errors() {
        let mut t = CorrelationTable::new(config());
        assert_eq!(t.insert(&new(1, 0, stored("a", "sip:b@x", delivery())), T0), Err(CorrelationError::NoParts));
        t.insert(&new(5, 1, stored("a", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(
            t.insert(&new(4, 2, stored("a", "sip:b@x", delivery())), T0),
            Err(CorrelationError::SequenceInUse(5))
        );
        let long: &'static str = Box::leak("x".repeat(STRINGS_MAX + 1).into_boxed_str());
        assert_eq!(t.insert(&new(9, 1, stored(long, "sip:b@x", delivery())), T0), Err(CorrelationError::TooLong));
        // Sequences wrap from 0x7FFFFFFF to 1.
        t.insert(&new(0x7FFF_FFFF, 2, stored("w", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(
            t.insert(&new(1, 1, stored("a", "sip:b@x", delivery())), T0),
            Err(CorrelationError::SequenceInUse(1))
        );
        t.resp(SYS, 5, &id("77"), T0).unwrap();
        t.insert(&new(6, 1, stored("c", "sip:b@x", delivery())), T0).unwrap();
        assert_eq!(t.resp(SYS, 6, &id("77"), T0), Err(CorrelationError::IdInUse));
        assert!(!CorrelationError::IdInUse.to_string().is_empty());
    }

    #[test]
    fn strings_survive_arena_compaction() {
        let mut t = CorrelationTable::new(config());
        let mut keep = Vec::new();
        for i in 0..20_000u32 {
            let s = StoredCorrelation {
                imdn_record_route: (i % 3 == 0).then_some("sip:route@ims.lab"),
                ..stored("0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p", "sip:somebody@ims.lab", delivery())
            };
            let m = t.insert(&new(i + 1, 1, s), T0).unwrap();
            t.resp(SYS, i + 1, &id(&format!("h{i:x}")), T0).unwrap();
            if i % 10 == 0 {
                keep.push((m, i));
            } else {
                t.remove(m).unwrap();
            }
        }
        let before = t.arena.allocated();
        t.expire(T0, 0);
        assert!(t.arena.allocated() < before / 4, "{} vs {before}", t.arena.allocated());
        let mut buf = [0u8; 64];
        for (m, i) in keep {
            let s = t.stored(m, &mut buf).unwrap();
            assert_eq!(s.sender, "sip:somebody@ims.lab");
            assert_eq!(s.imdn_record_route, (i % 3 == 0).then_some("sip:route@ims.lab"));
            assert_eq!(
                t.receipt(SYS, &id(&format!("h{i:x}")), Delivered, T0),
                ReceiptOutcome::Notify { message: m, state: Delivered }
            );
        }
    }

    #[test]
    fn restore_keys_parts_by_their_known_ids() {
        let mut t = CorrelationTable::new(config());
        let msg = new(0, 3, stored("long", "sip:b@x", delivery()));
        assert_eq!(t.restore(&msg, &[(4, id("a"))], T0), Err(CorrelationError::PartOutOfRange(4)));
        assert_eq!(t.restore(&msg, &[(1, id("a")), (1, id("b"))], T0), Err(CorrelationError::IdInUse));
        assert_eq!(t.restore(&msg, &[(1, id("a")), (2, id("a"))], T0), Err(CorrelationError::IdInUse));
        assert!(t.is_empty());
        // Part 3's resp never came before the restart: it has no key.
        let m = t.restore(&msg, &[(1, id("a")), (2, id("12"))], T0).unwrap();
        assert_eq!(t.index_len, 2);
        assert_eq!(t.receipt(SYS, &id("a"), Delivered, T0), ReceiptOutcome::Absorbed { message: m });
        assert_eq!(t.receipt(SYS, &id("12"), Failed, T0), ReceiptOutcome::Notify { message: m, state: Failed });
        assert_eq!(t.restore(&msg, &[(1, id("a"))], T0), Err(CorrelationError::IdInUse));
        t.remove(m).unwrap();
        assert_eq!(t.index_len, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn numeric_and_text_ids_are_kept_apart() {
        assert!(matches!(probe_of(&id("123")), Probe::NumId(123)));
        assert!(matches!(
            probe_of(&CanonicalId::clone(
                &canonical_id(b"0123", IdCanonicalisation::Exact, IdOrigin::Receipt).unwrap()
            )),
            Probe::Bytes(_)
        ));
        assert!(matches!(probe_of(&id("1234567890123456789")), Probe::Bytes(_)));
        let mut t = CorrelationTable::new(config());
        t.insert(&new(1, 1, stored("a", "sip:b@x", delivery())), T0).unwrap();
        t.insert(&new(2, 1, stored("b", "sip:b@x", delivery())), T0).unwrap();
        let exact = |s: &str| canonical_id(s.as_bytes(), IdCanonicalisation::Exact, IdOrigin::Receipt).unwrap();
        let a = t.resp(SYS, 1, &exact("123"), T0).unwrap().message;
        let b = t.resp(SYS, 2, &exact("0123"), T0).unwrap().message;
        assert_eq!(
            t.receipt(SYS, &exact("0123"), Delivered, T0),
            ReceiptOutcome::Notify { message: b, state: Delivered }
        );
        assert_eq!(
            t.receipt(SYS, &exact("123"), Delivered, T0),
            ReceiptOutcome::Notify { message: a, state: Delivered }
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Resp(usize),
        Receipt(usize, u8),
        Remove(usize),
        Expire(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..4).prop_map(Op::Insert),
            any::<usize>().prop_map(Op::Resp),
            (any::<usize>(), 0u8..6).prop_map(|(i, s)| Op::Receipt(i, s)),
            any::<usize>().prop_map(Op::Remove),
            any::<u16>().prop_map(Op::Expire),
        ]
    }

    /// A part in the model: its sequence, and its SMSC id once re-keyed.
    type ModelPart = (u32, Option<String>);

    proptest! {
        /// Against a model: every inserted part is found by its sequence until
        /// re-keyed, then by its id; the index holds exactly the live keys.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut t = CorrelationTable::with_capacity(config(), 4);
            // (message, sequence, id once re-keyed)
            let mut live: Vec<(MessageRef, Vec<ModelPart>)> = Vec::new();
            let mut seq = 1u32;
            let mut next_id = 0u32;
            for op in ops {
                match op {
                    Op::Insert(n) => {
                        let m = t.insert(&new(seq, n, stored("x", "sip:+1@ims.lab;user=phone", delivery())), T0).unwrap();
                        let parts = (0..n).map(|k| (seq + u32::from(k), None)).collect();
                        seq += u32::from(n);
                        live.push((m, parts));
                    }
                    Op::Resp(i) if !live.is_empty() => {
                        let k = i % live.len();
                        let (m, parts) = &mut live[k];
                        if let Some(p) = parts.iter_mut().find(|p| p.1.is_none()) {
                            let text = format!("{next_id:x}z");
                            next_id += 1;
                            let r = t.resp(SYS, p.0, &id(&text), T0).unwrap();
                            prop_assert_eq!(r.message, *m);
                            p.1 = Some(text);
                        }
                    }
                    Op::Receipt(i, s) if !live.is_empty() => {
                        let (m, parts) = &live[i % live.len()];
                        let state = [Buffered, Delivered, Failed, Rejected, Unknown, Displayed][usize::from(s)];
                        for p in parts {
                            if let Some(text) = &p.1 {
                                let got = t.receipt(SYS, &id(text), state, T0);
                                let ok = matches!(got, ReceiptOutcome::Notify { message, .. } | ReceiptOutcome::Absorbed { message } if message == *m);
                                prop_assert!(ok, "{:?}", got);
                            }
                        }
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let (m, _) = live.swap_remove(i % live.len());
                        t.remove(m).unwrap();
                    }
                    Op::Expire(b) => {
                        // Nothing is past its deadline or linger at T0.
                        let rep = t.expire(T0, usize::from(b));
                        prop_assert_eq!(rep.expired + rep.completed, 0);
                    }
                    _ => {}
                }
                let keys: usize = live.iter().map(|l| l.1.len()).sum();
                prop_assert_eq!(t.index_len, keys);
                prop_assert_eq!(t.len(), live.len());
                for (m, parts) in &live {
                    for p in parts {
                        let found = match &p.1 {
                            None => t.find(SYS.0, Probe::Sequence(p.0)),
                            Some(text) => { let c = id(text); t.find(SYS.0, probe_of(&c)) }
                        };
                        let found = found.and_then(|(_, r)| t.part(r)).map(|r| r.message);
                        prop_assert_eq!(found, Some(m.0));
                    }
                }
            }
        }
    }
}
