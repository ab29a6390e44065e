//! Per-exchange lanes: one bounded queue per legacy system into the core that
//! owns a live bind of that system.
//!
//! ```text
//!  pipelines (any core)                 lane table snapshot (Arc, arc-swap)
//!  tag → LegacySystemId ──push──►  ┌─ Lane smsc-a  [ring ▮▮▮····]  owner core 1 ──pop──► core 1's binds
//!                                  ├─ Lane smsc-b  [ring ▮·······]  owner core 0 ──pop──► core 0's binds
//!                                  └─ Lane smsc-c  [ring ▮▮······]  no owner: orphaned,
//!                                                                    kept for the durable queue
//!  control plane: add/remove systems ──► publishes a new LaneTable holding the same Arc<Lane>s
//!  sessions on core N: bind_up(system, N) / bind_down(system, N) ──► the lane's owner follows
//! ```
//!
//! - A [`LaneItem`] is fixed-size (a receipt PDU of at most [`LANE_ITEM_MAX`]
//!   octets held inline, the legacy system and a correlation token): pushing
//!   and popping allocates nothing.
//! - A [`Lane`] is a bounded lock-free MPMC ring (crossbeam's `ArrayQueue`).
//!   A full lane is back-pressure: [`Lane::push`] hands the item back in
//!   [`PushError::Full`] so that the caller answers SIP 503 + Retry-After or
//!   SMPP `ESME_RTHROTTLED`. Nothing is ever dropped by the lane.
//! - Each lane counts the live binds of its system per core and records the
//!   **owner**: one core holding a bind. Only the owner pops
//!   ([`Lane::pop`]); when the owner's last bind drops and another core holds
//!   one, ownership moves there and the items stay in the same ring for the
//!   new owner to drain. When the system holds no bind at all, its items stay
//!   queued ([`Lane::orphaned`]) until a bind comes back or the durable
//!   queue takes them ([`Lane::take_orphan`]).
//! - A [`LaneTable`] is an immutable snapshot the pipelines `load()` from
//!   [`Lanes`] once per burst without a lock; the control plane publishes a
//!   new one when a legacy system is added or removed, carrying the other
//!   lanes over as the same `Arc<Lane>` objects, so their queues, owners and
//!   counters are untouched.
//!
//! ```
//! use iwf::route::{LaneItem, Lanes, PushError};
//! use iwf::ids::LegacySystemId;
//! let lanes = Lanes::new(2)?; // two pipeline cores
//! let smsc_a = LegacySystemId(1);
//! lanes.add_system(smsc_a, 1024)?; // control plane, from provisioning
//! lanes.bind_up(smsc_a, 1)?; // a bind of smsc-a came up on core 1
//! // Any core, once per burst: the receipt goes to smsc-a's lane.
//! let item = LaneItem::new(smsc_a, 42, b"deliver_sm octets")?;
//! match lanes.load().push(item) {
//!     Ok(()) => {}
//!     Err(PushError::Full(_)) => { /* answer SIP 503 + Retry-After */ }
//!     Err(e) => return Err(e.into()),
//! }
//! // Core 1, per burst: drain the lanes it owns onto its binds.
//! let table = lanes.load();
//! let mut sent = 0;
//! for lane in table.owned_by(1) {
//!     sent += lane.drain(1, 32, |item| assert_eq!(item.token(), 42));
//! }
//! assert_eq!(sent, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Ownership protocol: the bind counts and the owner word are atomics; after
//! each count change the caller "settles" the owner with compare-and-swap on
//! a generation-tagged word (no ABA), re-checking after every swap. Once the
//! bind events stop, the owner is a core holding a bind, or none iff no core
//! holds one. [`Lane::pop`] additionally requires the popping core itself to
//! hold a bind, so a core never takes an item it has no bind to send on,
//! provided each core reports only its own binds (the sessions of core N
//! call `bind_up(_, N)` / `bind_down(_, N)` from core N's thread).

// A refused push hands the ~340-octet item back by value: no heap, by design.
#![allow(clippy::result_large_err)]

use core::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use crossbeam_queue::ArrayQueue;

use crate::ids::LegacySystemId;
use crate::wire::smpp::{EmitError, Pdu};

/// Largest PDU a [`LaneItem`] holds: a receipt `deliver_sm` (header, service
/// type, two addresses of 21 octets, an Appendix-B text of up to 160 octets,
/// `receipted_message_id` ≤ 65, `message_state`, `network_error_code`).
pub const LANE_ITEM_MAX: usize = 320;

pub use crate::ids::CoreId;

/// The owner word's "no core" value (also the largest core count + 1 bound).
const NO_CORE: u16 = u16::MAX;

/// The largest lane capacity accepted (items; each is about 340 octets).
const MAX_CAPACITY: usize = 1 << 20;

/// One unit of receipt work for a legacy system: the PDU to send, held
/// inline, and the correlation token the caller uses to answer the request
/// that caused it (e.g. the IMDN's SIP transaction) once the legacy system
/// answered.
#[derive(Clone, Copy)]
pub struct LaneItem {
    token: u64,
    system: LegacySystemId,
    len: u16,
    pdu: [u8; LANE_ITEM_MAX],
}

/// Why a [`LaneItem`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneItemError {
    /// The PDU is longer than [`LANE_ITEM_MAX`].
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The PDU cannot be encoded (or does not fit the inline buffer).
    Emit(EmitError),
}

impl fmt::Display for LaneItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaneItemError::TooLong { len } => {
                write!(f, "lane item of {len} octets exceeds {LANE_ITEM_MAX}")
            }
            LaneItemError::Emit(e) => write!(f, "cannot encode lane item: {e}"),
        }
    }
}

impl std::error::Error for LaneItemError {}

impl LaneItem {
    /// An item carrying a copy of `pdu` (already encoded).
    pub fn new(system: LegacySystemId, token: u64, pdu: &[u8]) -> Result<Self, LaneItemError> {
        let mut item = LaneItem::empty(system, token);
        let dst = item.pdu.get_mut(..pdu.len()).ok_or(LaneItemError::TooLong { len: pdu.len() })?;
        dst.copy_from_slice(pdu);
        item.len = pdu.len() as u16; // ≤ LANE_ITEM_MAX < u16::MAX
        Ok(item)
    }

    /// An item whose PDU is encoded straight into its inline buffer.
    pub fn from_pdu(system: LegacySystemId, token: u64, pdu: &Pdu<'_>) -> Result<Self, LaneItemError> {
        let mut item = LaneItem::empty(system, token);
        let len = pdu.buffer_len();
        if len > LANE_ITEM_MAX {
            return Err(LaneItemError::TooLong { len });
        }
        let n = pdu.emit(&mut item.pdu).map_err(LaneItemError::Emit)?;
        item.len = n as u16; // ≤ LANE_ITEM_MAX
        Ok(item)
    }

    fn empty(system: LegacySystemId, token: u64) -> Self {
        LaneItem { token, system, len: 0, pdu: [0; LANE_ITEM_MAX] }
    }

    /// The legacy system the item is for.
    pub fn system(&self) -> LegacySystemId {
        self.system
    }

    /// The caller's correlation token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The PDU's octets.
    pub fn pdu(&self) -> &[u8] {
        self.pdu.get(..self.len as usize).unwrap_or(&[])
    }
}

impl fmt::Debug for LaneItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneItem")
            .field("system", &self.system)
            .field("token", &self.token)
            .field("len", &self.len)
            .finish()
    }
}

impl PartialEq for LaneItem {
    fn eq(&self, other: &Self) -> bool {
        self.system == other.system && self.token == other.token && self.pdu() == other.pdu()
    }
}

impl Eq for LaneItem {}

impl fmt::Display for LaneItem {
    /// `lane item for legacy system 3 token=17 <pdu summary>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lane item for {} token={}", self.system, self.token)?;
        match Pdu::parse(self.pdu()) {
            Ok(pdu) => write!(f, " {pdu}"),
            Err(_) => write!(f, " ({} octets)", self.len),
        }
    }
}

/// Why [`Lane::push`] refused an item; the item comes back, never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The lane is full: back-pressure (SIP 503 + Retry-After, SMPP
    /// `ESME_RTHROTTLED`).
    Full(LaneItem),
    /// The legacy system was removed from provisioning.
    Retired(LaneItem),
    /// No lane exists for the item's legacy system ([`LaneTable::push`]).
    NoLane(LaneItem),
}

impl PushError {
    /// The refused item.
    pub fn into_item(self) -> LaneItem {
        match self {
            PushError::Full(i) | PushError::Retired(i) | PushError::NoLane(i) => i,
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(i) => write!(f, "lane of {} full", i.system),
            PushError::Retired(i) => write!(f, "{} was removed", i.system),
            PushError::NoLane(i) => write!(f, "no lane for {}", i.system),
        }
    }
}

impl std::error::Error for PushError {}

/// Why a lane-table or bind operation failed. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneError {
    /// No lane for this legacy system.
    UnknownSystem(LegacySystemId),
    /// The legacy system already has a lane.
    SystemExists(LegacySystemId),
    /// The core index is outside `0..cores`.
    BadCore {
        /// The index given.
        core: CoreId,
        /// The number of cores.
        cores: u16,
    },
    /// `bind_down` for a core that holds no bind of the system.
    NoBind {
        /// The legacy system.
        system: LegacySystemId,
        /// The core.
        core: CoreId,
    },
    /// A lane capacity of zero or above 2^20 items.
    BadCapacity(usize),
    /// A core count of zero or above 65534.
    BadCoreCount(usize),
}

impl fmt::Display for LaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaneError::UnknownSystem(s) => write!(f, "no lane for {s}"),
            LaneError::SystemExists(s) => write!(f, "{s} already has a lane"),
            LaneError::BadCore { core, cores } => {
                write!(f, "core {core} out of range (cores: {cores})")
            }
            LaneError::NoBind { system, core } => {
                write!(f, "core {core} holds no bind of {system}")
            }
            LaneError::BadCapacity(n) => write!(f, "lane capacity {n} not in 1..={MAX_CAPACITY}"),
            LaneError::BadCoreCount(n) => write!(f, "core count {n} not in 1..=65534"),
        }
    }
}

impl std::error::Error for LaneError {}

/// A snapshot of a lane's counters (cumulative since the lane was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneCounters {
    /// Items accepted by [`Lane::push`].
    pub pushed: u64,
    /// Items the owner took with [`Lane::pop`].
    pub popped: u64,
    /// Pushes refused because the lane was full.
    pub full: u64,
    /// Items that found the lane without a bind: pushed while no core held
    /// one, or queued when the last bind dropped.
    pub orphaned: u64,
    /// Orphaned items handed to the durable queue with [`Lane::take_orphan`].
    pub taken: u64,
    /// Owner changes (a bind came up on an unowned lane, the owner's last
    /// bind dropped).
    pub owner_moves: u64,
    /// Items queued now.
    pub queued: u64,
}

/// A value on its own cache line, so that producers' and the owner's
/// counters do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// The bounded queue of one legacy system, with its owner and bind counts.
#[derive(Debug)]
pub struct Lane {
    system: LegacySystemId,
    queue: ArrayQueue<LaneItem>,
    /// Generation (bits 63..16) and owner core (bits 15..0, `NO_CORE`).
    owner: Padded<AtomicU64>,
    /// Live binds of the system per core.
    binds: Box<[AtomicU32]>,
    retired: AtomicBool,
    pushed: Padded<AtomicU64>,
    full: AtomicU64,
    orphaned: AtomicU64,
    popped: Padded<AtomicU64>,
    taken: AtomicU64,
    owner_moves: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Lane {
    /// A lane for `system` holding at most `capacity` items, for `cores`
    /// cores, with no owner.
    pub fn new(system: LegacySystemId, capacity: usize, cores: u16) -> Result<Self, LaneError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(LaneError::BadCapacity(capacity));
        }
        if cores == 0 || cores == NO_CORE {
            return Err(LaneError::BadCoreCount(cores as usize));
        }
        Ok(Lane {
            system,
            queue: ArrayQueue::new(capacity),
            owner: Padded(AtomicU64::new(NO_CORE as u64)),
            binds: (0..cores).map(|_| AtomicU32::new(0)).collect(),
            retired: AtomicBool::new(false),
            pushed: Padded::default(),
            full: AtomicU64::new(0),
            orphaned: AtomicU64::new(0),
            popped: Padded::default(),
            taken: AtomicU64::new(0),
            owner_moves: AtomicU64::new(0),
        })
    }

    /// The legacy system.
    pub fn system(&self) -> LegacySystemId {
        self.system
    }

    /// How many items it holds at most.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The core that owns the lane: one holding a live bind of the system.
    pub fn owner(&self) -> Option<CoreId> {
        let core = (self.owner.0.load(Ordering::SeqCst) & 0xFFFF) as u16;
        (core != NO_CORE).then_some(core)
    }

    /// Live binds of the system on `core` (0 for a core out of range).
    pub fn binds_on(&self, core: CoreId) -> u32 {
        self.binds.get(core as usize).map_or(0, |b| b.load(Ordering::SeqCst))
    }

    /// Live binds of the system on all cores.
    pub fn binds(&self) -> u32 {
        self.binds.iter().fold(0u32, |n, b| n.saturating_add(b.load(Ordering::SeqCst)))
    }

    /// Whether the system was removed from provisioning (pushes are refused).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Items queued while no core holds a bind of the system: they wait for
    /// a bind, or for the durable queue ([`Lane::take_orphan`]).
    pub fn orphaned(&self) -> usize {
        if self.owner().is_none() {
            self.queue.len()
        } else {
            0
        }
    }

    /// The counters.
    pub fn counters(&self) -> LaneCounters {
        LaneCounters {
            pushed: self.pushed.0.load(Ordering::Relaxed),
            popped: self.popped.0.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            orphaned: self.orphaned.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            owner_moves: self.owner_moves.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
        }
    }

    /// Queues an item (any core, any thread). A full lane hands it back in
    /// [`PushError::Full`]: answer the request with back-pressure.
    pub fn push(&self, item: LaneItem) -> Result<(), PushError> {
        if self.is_retired() {
            return Err(PushError::Retired(item));
        }
        match self.queue.push(item) {
            Ok(()) => {
                bump(&self.pushed.0, 1);
                if self.owner().is_none() {
                    bump(&self.orphaned, 1);
                }
                Ok(())
            }
            Err(item) => {
                bump(&self.full, 1);
                Err(PushError::Full(item))
            }
        }
    }

    /// Takes the oldest item if `core` owns the lane and holds a bind of the
    /// system; `None` otherwise or when the lane is empty.
    pub fn pop(&self, core: CoreId) -> Option<LaneItem> {
        if self.owner() != Some(core) || self.binds_on(core) == 0 {
            return None;
        }
        let item = self.queue.pop()?;
        bump(&self.popped.0, 1);
        Some(item)
    }

    /// Pops up to `max` items for `core` (see [`Lane::pop`]) into `sink`,
    /// returning how many; the owner's per-burst drain.
    pub fn drain(&self, core: CoreId, max: usize, mut sink: impl FnMut(LaneItem)) -> usize {
        let mut n = 0;
        while n < max {
            match self.pop(core) {
                Some(item) => {
                    sink(item);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Takes the oldest item while no core holds a bind of the system (the
    /// durable queue's intake); `None` when the lane has an owner or is
    /// empty.
    pub fn take_orphan(&self) -> Option<LaneItem> {
        if self.owner().is_some() {
            return None;
        }
        let item = self.queue.pop()?;
        bump(&self.taken, 1);
        Some(item)
    }

    /// A bind of the system came up on `core`; the lane gets an owner if it
    /// had none.
    pub fn bind_up(&self, core: CoreId) -> Result<(), LaneError> {
        let slot = self.bind_slot(core)?;
        slot.fetch_add(1, Ordering::SeqCst);
        self.settle();
        Ok(())
    }

    /// A bind of the system on `core` dropped; when it was the owner's last,
    /// ownership moves to another core holding a bind, or to none (the items
    /// stay queued, orphaned).
    pub fn bind_down(&self, core: CoreId) -> Result<(), LaneError> {
        let slot = self.bind_slot(core)?;
        slot.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map_err(|_| LaneError::NoBind { system: self.system, core })?;
        self.settle();
        Ok(())
    }

    fn bind_slot(&self, core: CoreId) -> Result<&AtomicU32, LaneError> {
        self.binds.get(core as usize).ok_or(LaneError::BadCore { core, cores: self.binds.len() as u16 })
    }

    /// A core holding a bind, looking from the one after `after` (spreads
    /// lanes over cores), or `NO_CORE`.
    fn pick(&self, after: CoreId) -> CoreId {
        let n = self.binds.len();
        let start = if after == NO_CORE { 0 } else { after as usize + 1 };
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&c| self.binds.get(c).is_some_and(|b| b.load(Ordering::SeqCst) > 0))
            .map_or(NO_CORE, |c| c as CoreId)
    }

    /// Makes the owner a core holding a bind (or none iff no core holds
    /// one). Lock-free: compare-and-swap on the generation-tagged owner
    /// word, re-checked after every successful swap.
    fn settle(&self) {
        loop {
            let word = self.owner.0.load(Ordering::SeqCst);
            let current = (word & 0xFFFF) as u16;
            if current != NO_CORE && self.binds_on(current) > 0 {
                return;
            }
            let next = self.pick(current);
            if next == current {
                return; // no owner and no bind anywhere
            }
            let generation = (word >> 16).wrapping_add(1) & 0xFFFF_FFFF_FFFF;
            let new = (generation << 16) | next as u64;
            if self.owner.0.compare_exchange(word, new, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                bump(&self.owner_moves, 1);
                if next == NO_CORE {
                    bump(&self.orphaned, self.queue.len() as u64);
                }
            }
        }
    }
}

/// An immutable snapshot of the lanes, sorted by legacy system; the
/// pipelines read it without a lock ([`Lanes::load`] once per burst).
#[derive(Debug, Default)]
pub struct LaneTable {
    lanes: Vec<Arc<Lane>>,
    generation: u64,
}

impl LaneTable {
    /// The lane of `system`.
    pub fn get(&self, system: LegacySystemId) -> Option<&Arc<Lane>> {
        self.lanes.binary_search_by_key(&system, |l| l.system).ok().and_then(|i| self.lanes.get(i))
    }

    /// Queues `item` on its system's lane.
    pub fn push(&self, item: LaneItem) -> Result<(), PushError> {
        match self.get(item.system) {
            Some(lane) => lane.push(item),
            None => Err(PushError::NoLane(item)),
        }
    }

    /// All lanes, by legacy system.
    pub fn lanes(&self) -> &[Arc<Lane>] {
        &self.lanes
    }

    /// The lanes `core` owns (the ones it drains).
    pub fn owned_by(&self, core: CoreId) -> impl Iterator<Item = &Arc<Lane>> + '_ {
        self.lanes.iter().filter(move |l| l.owner() == Some(core))
    }

    /// The lanes with items queued and no bind, and how many items each
    /// holds: the durable queue's work list.
    pub fn orphaned(&self) -> impl Iterator<Item = (LegacySystemId, usize)> + '_ {
        self.lanes.iter().map(|l| (l.system, l.orphaned())).filter(|&(_, n)| n > 0)
    }

    /// The publication number (0 for the first table, +1 per publication).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of lanes.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Whether there is no lane.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

/// The lane table as published: the control plane adds and removes legacy
/// systems; pipelines [`Lanes::load`] the current snapshot per burst and
/// report their binds.
#[derive(Debug)]
pub struct Lanes {
    table: ArcSwap<LaneTable>,
    cores: u16,
    /// Serialises publishers (the control plane); readers never take it.
    publish: Mutex<()>,
}

impl Lanes {
    /// An empty table for `cores` pipeline cores.
    pub fn new(cores: u16) -> Result<Self, LaneError> {
        if cores == 0 || cores == NO_CORE {
            return Err(LaneError::BadCoreCount(cores as usize));
        }
        Ok(Lanes { table: ArcSwap::from_pointee(LaneTable::default()), cores, publish: Mutex::new(()) })
    }

    /// The number of pipeline cores.
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// The current snapshot, lock-free (hold it for one burst).
    pub fn load(&self) -> Guard<Arc<LaneTable>> {
        self.table.load()
    }

    /// The current snapshot as an owned `Arc` (for long-lived holders).
    pub fn snapshot(&self) -> Arc<LaneTable> {
        self.table.load_full()
    }

    fn publish_with(
        &self,
        change: impl FnOnce(&LaneTable) -> Result<(Vec<Arc<Lane>>, Arc<Lane>), LaneError>,
    ) -> Result<Arc<Lane>, LaneError> {
        let _publisher = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        let (lanes, lane) = change(&current)?;
        self.table.store(Arc::new(LaneTable { lanes, generation: current.generation.wrapping_add(1) }));
        Ok(lane)
    }

    /// Adds a lane of `capacity` items for `system` and publishes the new
    /// table; the other lanes are carried over untouched.
    pub fn add_system(&self, system: LegacySystemId, capacity: usize) -> Result<Arc<Lane>, LaneError> {
        let lane = Arc::new(Lane::new(system, capacity, self.cores)?);
        self.publish_with(|current| {
            let at = match current.lanes.binary_search_by_key(&system, |l| l.system) {
                Ok(_) => return Err(LaneError::SystemExists(system)),
                Err(at) => at,
            };
            let mut lanes = current.lanes.clone();
            lanes.insert(at, Arc::clone(&lane));
            Ok((lanes, lane))
        })
    }

    /// Removes the lane of `system` and publishes the new table. The lane
    /// comes back, retired (pushes are refused), with whatever it still
    /// holds: hand those items to the durable queue. A pipeline that loaded
    /// the previous table just before may still complete one push: drain the
    /// lane again after the pipelines moved past their burst.
    pub fn remove_system(&self, system: LegacySystemId) -> Result<Arc<Lane>, LaneError> {
        self.publish_with(|current| {
            let at = current
                .lanes
                .binary_search_by_key(&system, |l| l.system)
                .map_err(|_| LaneError::UnknownSystem(system))?;
            let mut lanes = current.lanes.clone();
            let lane = lanes.remove(at);
            lane.retired.store(true, Ordering::SeqCst);
            Ok((lanes, lane))
        })
    }

    /// A bind of `system` came up on `core` (call from that core).
    pub fn bind_up(&self, system: LegacySystemId, core: CoreId) -> Result<(), LaneError> {
        self.check_core(core)?;
        self.load().get(system).ok_or(LaneError::UnknownSystem(system))?.bind_up(core)
    }

    /// A bind of `system` on `core` dropped (call from that core).
    pub fn bind_down(&self, system: LegacySystemId, core: CoreId) -> Result<(), LaneError> {
        self.check_core(core)?;
        self.load().get(system).ok_or(LaneError::UnknownSystem(system))?.bind_down(core)
    }

    fn check_core(&self, core: CoreId) -> Result<(), LaneError> {
        if core < self.cores {
            Ok(())
        } else {
            Err(LaneError::BadCore { core, cores: self.cores })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::smpp::{Address, Body, EsmClass, RegisteredDelivery, SubmitSm, Tlvs};
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::thread;

    const A: LegacySystemId = LegacySystemId(1);
    const B: LegacySystemId = LegacySystemId(2);

    fn item(system: LegacySystemId, token: u64) -> LaneItem {
        LaneItem::new(system, token, &token.to_be_bytes()).unwrap()
    }

    /// A receipt deliver_sm as the receipts path would queue it.
    fn receipt_pdu(text: &[u8]) -> Pdu<'_> {
        Pdu::new(
            0,
            Body::DeliverSm(SubmitSm {
                service_type: b"",
                source: Address::international(b"447000300001"),
                destination: Address::international(b"447000100001"),
                esm_class: EsmClass(EsmClass::SMSC_DELIVERY_RECEIPT),
                protocol_id: 0,
                priority_flag: 0,
                schedule_delivery_time: b"",
                validity_period: b"",
                registered_delivery: RegisteredDelivery::NONE,
                replace_if_present_flag: 0,
                data_coding: 0,
                sm_default_msg_id: 0,
                short_message: text,
                tlvs: Tlvs::EMPTY,
            }),
        )
    }

    #[test]
    fn item_holds_a_receipt_pdu_inline() {
        let text =
            b"id:4f2a9c sub:001 dlvrd:001 submit date:2401021504 done date:2401021505 stat:DELIVRD err:000 text:hello";
        let pdu = receipt_pdu(text);
        let it = LaneItem::from_pdu(A, 7, &pdu).unwrap();
        assert_eq!(it.system(), A);
        assert_eq!(it.token(), 7);
        assert_eq!(it.pdu().len(), pdu.buffer_len());
        assert_eq!(Pdu::parse(it.pdu()).unwrap(), pdu);
        let shown = it.to_string();
        assert!(shown.starts_with("lane item for legacy system 1 token=7 SMPP deliver_sm"), "{shown}");
        // The same bytes through new().
        assert_eq!(LaneItem::new(A, 7, it.pdu()).unwrap(), it);
    }

    #[test]
    fn item_too_long_is_refused() {
        let big = [b'x'; 254];
        let mut pdu = receipt_pdu(&big);
        // A message_payload TLV of 100 octets pushes it past the inline buffer.
        let mut area = [b'y'; 104];
        area[..4].copy_from_slice(&[0x04, 0x24, 0x00, 100]);
        if let Body::DeliverSm(ref mut d) = pdu.body {
            d.tlvs = Tlvs::Raw(&area);
        }
        assert!(pdu.buffer_len() > LANE_ITEM_MAX);
        match LaneItem::from_pdu(A, 1, &pdu) {
            Err(LaneItemError::TooLong { len }) => assert_eq!(len, pdu.buffer_len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            LaneItem::new(A, 1, &[0; LANE_ITEM_MAX + 1]),
            Err(LaneItemError::TooLong { len: LANE_ITEM_MAX + 1 })
        );
        assert!(LaneItem::new(A, 1, &[0; LANE_ITEM_MAX]).is_ok());
        assert!(LaneItem::new(A, 1, &[]).unwrap().pdu().is_empty());
    }

    #[test]
    fn lane_rejects_bad_sizes() {
        assert_eq!(Lane::new(A, 0, 1).unwrap_err(), LaneError::BadCapacity(0));
        assert_eq!(Lane::new(A, MAX_CAPACITY + 1, 1).unwrap_err(), LaneError::BadCapacity(MAX_CAPACITY + 1));
        assert_eq!(Lane::new(A, 1, 0).unwrap_err(), LaneError::BadCoreCount(0));
        assert_eq!(Lanes::new(u16::MAX).unwrap_err(), LaneError::BadCoreCount(65535));
    }

    #[test]
    fn only_the_owner_with_a_bind_pops() {
        let lane = Lane::new(A, 8, 3).unwrap();
        lane.push(item(A, 1)).unwrap();
        assert_eq!(lane.owner(), None);
        assert_eq!(lane.pop(0), None);
        lane.bind_up(1).unwrap();
        assert_eq!(lane.owner(), Some(1));
        assert_eq!(lane.pop(0), None);
        assert_eq!(lane.pop(2), None);
        assert_eq!(lane.pop(1).map(|i| i.token()), Some(1));
        assert_eq!(lane.pop(1), None);
        let c = lane.counters();
        assert_eq!((c.pushed, c.popped, c.queued), (1, 1, 0));
    }

    #[test]
    fn full_lane_is_back_pressure_and_hands_the_item_back() {
        let lane = Lane::new(A, 4, 1).unwrap();
        lane.bind_up(0).unwrap();
        for t in 0..4 {
            lane.push(item(A, t)).unwrap();
        }
        let refused = lane.push(item(A, 99)).unwrap_err();
        assert_eq!(refused, PushError::Full(item(A, 99)));
        assert_eq!(refused.to_string(), "lane of legacy system 1 full");
        assert_eq!(refused.into_item().token(), 99);
        assert_eq!(lane.counters().full, 1);
        assert_eq!(lane.len(), 4);
        // FIFO, and room again after one pop.
        assert_eq!(lane.pop(0).unwrap().token(), 0);
        lane.push(item(A, 99)).unwrap();
        let order: Vec<u64> = (0..4).filter_map(|_| lane.pop(0)).map(|i| i.token()).collect();
        assert_eq!(order, vec![1, 2, 3, 99]);
        let c = lane.counters();
        assert_eq!((c.pushed, c.popped, c.full, c.queued), (5, 5, 1, 0));
    }

    #[test]
    fn ownership_follows_the_binds() {
        let lane = Lane::new(A, 16, 4).unwrap();
        lane.bind_up(2).unwrap();
        lane.bind_up(3).unwrap();
        lane.bind_up(2).unwrap();
        assert_eq!(lane.owner(), Some(2));
        assert_eq!((lane.binds_on(2), lane.binds_on(3), lane.binds()), (2, 1, 3));
        for t in 0..5 {
            lane.push(item(A, t)).unwrap();
        }
        assert_eq!(lane.pop(2).unwrap().token(), 0);
        // One of core 2's binds drops: it still owns the lane.
        lane.bind_down(2).unwrap();
        assert_eq!(lane.owner(), Some(2));
        // Its last drops: the lane moves to core 3 with its items.
        lane.bind_down(2).unwrap();
        assert_eq!(lane.owner(), Some(3));
        assert_eq!(lane.pop(2), None);
        let got: Vec<u64> = (0..4).filter_map(|_| lane.pop(3)).map(|i| i.token()).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(lane.orphaned(), 0);
        let c = lane.counters();
        assert_eq!(c.owner_moves, 2);
        assert_eq!(c.orphaned, 0);
    }

    #[test]
    fn bind_errors() {
        let lanes = Lanes::new(2).unwrap();
        lanes.add_system(A, 4).unwrap();
        assert_eq!(lanes.bind_down(A, 0), Err(LaneError::NoBind { system: A, core: 0 }));
        assert_eq!(lanes.bind_up(A, 2), Err(LaneError::BadCore { core: 2, cores: 2 }));
        assert_eq!(lanes.bind_up(B, 0), Err(LaneError::UnknownSystem(B)));
        lanes.bind_up(A, 1).unwrap();
        lanes.bind_down(A, 1).unwrap();
        assert_eq!(lanes.bind_down(A, 1), Err(LaneError::NoBind { system: A, core: 1 }));
        assert_eq!(lanes.load().get(A).unwrap().owner(), None);
        assert_eq!(LaneError::NoBind { system: A, core: 1 }.to_string(), "core 1 holds no bind of legacy system 1");
    }

    #[test]
    fn orphans_stay_queued_and_are_accounted() {
        let lanes = Lanes::new(2).unwrap();
        let lane = lanes.add_system(A, 16).unwrap();
        lanes.bind_up(A, 0).unwrap();
        for t in 0..3 {
            lanes.load().push(item(A, t)).unwrap();
        }
        assert_eq!(lane.orphaned(), 0);
        // The last bind drops: three items orphaned, none dropped.
        lanes.bind_down(A, 0).unwrap();
        assert_eq!(lane.owner(), None);
        assert_eq!(lane.orphaned(), 3);
        assert_eq!(lane.counters().orphaned, 3);
        // Pushes while unbound are kept too, and counted.
        lanes.load().push(item(A, 3)).unwrap();
        lanes.load().push(item(A, 4)).unwrap();
        assert_eq!(lane.counters().orphaned, 5);
        let table = lanes.load();
        let listed: Vec<_> = table.orphaned().collect();
        assert_eq!(listed, vec![(A, 5)]);
        assert_eq!(lane.pop(0), None);
        // The durable queue takes one.
        assert_eq!(lane.take_orphan().unwrap().token(), 0);
        // A bind comes back on core 1: it gets the rest; nothing is taken any more.
        lanes.bind_up(A, 1).unwrap();
        assert_eq!(lane.take_orphan(), None);
        assert_eq!(lane.orphaned(), 0);
        assert_eq!(table.orphaned().count(), 0);
        let mut got = Vec::new();
        assert_eq!(lane.drain(1, 10, |i| got.push(i.token())), 4);
        assert_eq!(got, vec![1, 2, 3, 4]);
        let c = lane.counters();
        assert_eq!(c.pushed, c.popped + c.taken + c.queued);
        assert_eq!((c.pushed, c.popped, c.taken, c.queued), (5, 4, 1, 0));
    }

    #[test]
    fn republishing_keeps_the_other_lanes() {
        let lanes = Lanes::new(2).unwrap();
        assert!(lanes.load().is_empty());
        let a = lanes.add_system(A, 8).unwrap();
        let c = lanes.add_system(LegacySystemId(3), 8).unwrap();
        assert_eq!(lanes.add_system(A, 8).unwrap_err(), LaneError::SystemExists(A));
        lanes.bind_up(A, 1).unwrap();
        lanes.load().push(item(A, 1)).unwrap();
        let before = lanes.snapshot();
        assert_eq!(before.generation(), 2);
        let b = lanes.add_system(B, 8).unwrap();
        let after = lanes.load();
        assert_eq!(after.generation(), 3);
        let systems: Vec<_> = after.lanes().iter().map(|l| l.system()).collect();
        assert_eq!(systems, vec![A, B, LegacySystemId(3)]);
        assert!(Arc::ptr_eq(after.get(A).unwrap(), &a));
        assert!(Arc::ptr_eq(after.get(LegacySystemId(3)).unwrap(), &c));
        assert!(Arc::ptr_eq(after.get(B).unwrap(), &b));
        // The old snapshot still works and sees the same lane state.
        assert_eq!(before.get(A).unwrap().len(), 1);
        assert_eq!(after.get(A).unwrap().owner(), Some(1));
        assert_eq!(after.owned_by(1).map(|l| l.system()).collect::<Vec<_>>(), vec![A]);
        // Removal: retired, items handed back with the lane.
        lanes.load().push(item(B, 5)).unwrap();
        let removed = lanes.remove_system(B).unwrap();
        assert!(removed.is_retired());
        assert_eq!(removed.take_orphan().unwrap().token(), 5);
        assert_eq!(removed.push(item(B, 6)), Err(PushError::Retired(item(B, 6))));
        assert_eq!(lanes.load().push(item(B, 6)), Err(PushError::NoLane(item(B, 6))));
        assert_eq!(lanes.remove_system(B).unwrap_err(), LaneError::UnknownSystem(B));
        assert!(Arc::ptr_eq(lanes.load().get(A).unwrap(), &a));
        assert_eq!(a.len(), 1);
        assert_eq!(lanes.load().generation(), 4);
    }

    /// Several threads churn binds of one lane on their own cores; once they
    /// stop, the owner holds a bind, or there is none iff nobody does.
    #[test]
    fn concurrent_bind_churn_settles() {
        for round in 0..20u64 {
            let lane = Arc::new(Lane::new(A, 4, 4).unwrap());
            let threads: Vec<_> = (0..4u16)
                .map(|core| {
                    let lane = Arc::clone(&lane);
                    thread::spawn(move || {
                        let mut x = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (core as u64 + 1);
                        let mut held = 0u32;
                        for _ in 0..2_000 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            if held == 0 || (x.is_multiple_of(3) && held < 3) {
                                lane.bind_up(core).unwrap();
                                held += 1;
                            } else {
                                lane.bind_down(core).unwrap();
                                held -= 1;
                            }
                        }
                        // Leave some cores bound, others not.
                        if (core as u64 + round).is_multiple_of(2) {
                            while held > 0 {
                                lane.bind_down(core).unwrap();
                                held -= 1;
                            }
                        }
                        held
                    })
                })
                .collect();
            let held: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            for (core, h) in held.iter().enumerate() {
                assert_eq!(lane.binds_on(core as u16), *h);
            }
            match lane.owner() {
                Some(core) => assert!(lane.binds_on(core) > 0, "owner {core} holds no bind"),
                None => assert_eq!(lane.binds(), 0, "binds held but no owner"),
            }
            assert_eq!(lane.owner().is_some(), held.iter().any(|&h| h > 0));
        }
    }

    enum Command {
        Up(LegacySystemId),
        Down(LegacySystemId),
    }

    /// Producers push to several lanes while each lane's owner drains it;
    /// binds move between cores, go away for a while, and the table is
    /// republished, all mid-run. Every item arrives exactly once, at a core
    /// that owned its lane and held a bind of its system.
    #[test]
    fn items_arrive_exactly_once_through_moves_and_republishes() {
        const CORES: u16 = 3;
        const PRODUCERS: u64 = 3;
        const PER_PRODUCER: u64 = 20_000;
        let systems: Vec<LegacySystemId> = (1..=4).map(LegacySystemId).collect();
        let lanes = Arc::new(Lanes::new(CORES).unwrap());
        let originals: Vec<Arc<Lane>> = systems.iter().map(|&s| lanes.add_system(s, 64).unwrap()).collect();
        let total = PRODUCERS * PER_PRODUCER;
        let received = Arc::new(AtomicU64::new(0));
        let moves_done = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut cores = Vec::new();
        for core in 0..CORES {
            let (tx, rx) = mpsc::channel::<Command>();
            senders.push(tx);
            let lanes = Arc::clone(&lanes);
            let received = Arc::clone(&received);
            let moves_done = Arc::clone(&moves_done);
            cores.push(thread::spawn(move || {
                let mut got: Vec<(u64, LegacySystemId)> = Vec::new();
                loop {
                    while let Ok(cmd) = rx.try_recv() {
                        match cmd {
                            Command::Up(s) => lanes.bind_up(s, core).unwrap(),
                            Command::Down(s) => lanes.bind_down(s, core).unwrap(),
                        }
                    }
                    let table = lanes.load();
                    let mut n = 0;
                    for lane in table.lanes() {
                        n += lane.drain(core, 32, |it| {
                            assert_eq!(it.system(), lane.system(), "item on the wrong lane");
                            assert_eq!(lane.owner(), Some(core), "popped by a non-owner");
                            assert!(lane.binds_on(core) > 0, "popped without a bind");
                            assert_eq!(it.pdu(), &it.token().to_be_bytes());
                            got.push((it.token(), it.system()));
                        });
                    }
                    received.fetch_add(n as u64, Ordering::SeqCst);
                    if moves_done.load(Ordering::SeqCst) && received.load(Ordering::SeqCst) == total {
                        return got;
                    }
                    if n == 0 {
                        thread::yield_now();
                    }
                }
            }));
        }
        // Initial binds: system s on core s % CORES.
        let mut bound: Vec<u16> = systems.iter().map(|s| s.0 % CORES).collect();
        for (i, s) in systems.iter().enumerate() {
            senders[bound[i] as usize].send(Command::Up(*s)).unwrap();
        }
        let full = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let lanes = Arc::clone(&lanes);
                let full = Arc::clone(&full);
                thread::spawn(move || {
                    for i in 0..PER_PRODUCER {
                        let token = (p << 32) | i;
                        let system = LegacySystemId(1 + ((i * 7 + p) % 4) as u16);
                        let mut it = item(system, token);
                        loop {
                            match lanes.load().push(it) {
                                Ok(()) => break,
                                Err(PushError::Full(back)) => {
                                    full.fetch_add(1, Ordering::Relaxed);
                                    it = back;
                                    thread::yield_now();
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        // Controller: move binds around (sometimes with a gap, leaving the
        // lane orphaned for a while) and republish the table.
        for round in 0..60u16 {
            let i = (round as usize) % systems.len();
            let s = systems[i];
            let from = bound[i];
            let to = (from + 1 + round % 2) % CORES;
            if round % 3 == 0 {
                senders[from as usize].send(Command::Down(s)).unwrap();
                thread::sleep(std::time::Duration::from_millis(2));
                senders[to as usize].send(Command::Up(s)).unwrap();
            } else {
                senders[to as usize].send(Command::Up(s)).unwrap();
                senders[from as usize].send(Command::Down(s)).unwrap();
            }
            bound[i] = to;
            let extra = LegacySystemId(100 + round);
            lanes.add_system(extra, 8).unwrap();
            if round % 2 == 1 {
                lanes.remove_system(extra).unwrap();
            }
            let table = lanes.load();
            for (s, orig) in systems.iter().zip(&originals) {
                assert!(Arc::ptr_eq(table.get(*s).unwrap(), orig), "lane replaced");
            }
            thread::sleep(std::time::Duration::from_millis(1));
        }
        moves_done.store(true, Ordering::SeqCst);
        for p in producers {
            p.join().unwrap();
        }
        let mut seen = HashSet::new();
        let mut count = 0u64;
        for c in cores {
            for (token, system) in c.join().unwrap() {
                let (p, i) = (token >> 32, token & 0xFFFF_FFFF);
                assert_eq!(system, LegacySystemId(1 + ((i * 7 + p) % 4) as u16));
                assert!(seen.insert(token), "token {token:#x} twice");
                count += 1;
            }
        }
        assert_eq!(count, total);
        assert_eq!(seen.len() as u64, total);
        let mut pushed = 0;
        for lane in &originals {
            let c = lane.counters();
            assert_eq!(c.pushed, c.popped, "{:?}", lane.system());
            assert_eq!(c.queued, 0);
            pushed += c.pushed;
        }
        assert_eq!(pushed, total);
        assert_eq!(originals.iter().map(|l| l.counters().full).sum::<u64>(), full.load(Ordering::Relaxed) as u64);
    }
}
