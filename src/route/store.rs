//! The durable store (redb): what iwf must not lose when it is killed.
//!
//! ```text
//!  control plane ── Batch::queue_receipt / put_correlation / bind_id ... ──► Store::commit
//!                     (several puts, one redb write transaction, Durability::Immediate:
//!                      fsync'd when commit returns; every ticket ≤ Committed::through is durable,
//!                      so only then is the IMDN's SIP request answered 200)
//!  a legacy system binds again ── Store::peek(system, max, now) ──► send ──► Store::ack(keys)
//!  upkeep ── Store::sweep(now) ──► receipts and correlations past their validity removed, counted
//! ```
//!
//! Tables (one redb file):
//! - `queued_receipts`: `(system u16, seq u64)` → `enqueued u64 | deadline u64 |
//!   token u64 | PDU`: receipts for legacy systems that have no bind. `seq`
//!   comes from one counter in `meta`, written in the same transaction, so keys
//!   never repeat across restarts and a system's receipts drain in order.
//! - `correlation`: message key `u64` (the caller's) → an encoded
//!   [`DurableCorrelation`]: what a late SMSC receipt needs to become an IMDN
//!   after a restart.
//! - `correlation_ids`: `(system u16, canonical id)` → `(message key, part)`,
//!   and `correlation_parts`, its reverse (`(message key, part)` → id), so a
//!   record goes with its ids without a scan.
//! - `parked_receipts`: store key `u64` → `deadline u64 | system u16 | state u8 |
//!   canonical id`: SMSC receipts whose id no resp had bound yet, answered once
//!   written here (held unanswered they would fill the SMSC's window), applied
//!   when the resp comes, counted unmatched when their park time ends.
//! - `mms_origins`: the key of an MMS's tag (`minutes << 32 | sequence`) → an
//!   encoded [`MmsOrigin`]: what the delivery and read-reply reports to the MMS
//!   centre that sent it need and the converged side's IMDN does not carry (the
//!   centre's message id, its addresses), written before the centre hears 250.
//! - `meta`: format version and the sequence counter.
//! - `quarantine`: `seq u64` → `(table, key, value)`: records that do not decode,
//!   moved aside where they are found (restore, replay, sweep) so one bad record
//!   never stops the others; kept for the operator, never read back by iwf.
//!
//! Everything here runs on the control-plane thread (it blocks on fsync and
//! allocates); the pipelines never call it. Time is unix seconds passed in.
//! A missing file is [`StoreError::Missing`] for [`Store::open`] (use
//! [`Store::create`] for the first start); a file redb cannot read is
//! [`StoreError::Corrupt`]. A single record that does not decode is not an error
//! of the store: it is quarantined and counted ([`Store::quarantined`]).

use core::fmt;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::correlation::{CorrelationTable, MessageRef, NewMessage};
use super::lane::{LaneItem, LANE_ITEM_MAX};
use crate::ids::LegacySystemId;
use crate::interwork::address::Msisdn;
use crate::interwork::converged_to_legacy::{canonical_id, CanonicalId, IdOrigin, StoredCorrelation};
use crate::interwork::state::ReceiptState;
use crate::interwork::IdCanonicalisation;
use crate::wire::cpim::{DateTime, Dispositions};

const QUEUE: TableDefinition<(u16, u64), &[u8]> = TableDefinition::new("queued_receipts");
const CORRELATION: TableDefinition<u64, &[u8]> = TableDefinition::new("correlation");
const CORRELATION_IDS: TableDefinition<(u16, &[u8]), (u64, u8)> = TableDefinition::new("correlation_ids");
const CORRELATION_PARTS: TableDefinition<(u64, u8), &[u8]> = TableDefinition::new("correlation_parts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const QUARANTINE: TableDefinition<u64, (&str, &[u8], &[u8])> = TableDefinition::new("quarantine");
/// SMSC receipts answered once parked here: their id had no message yet (its resp may
/// still come). Value: deadline (u64 BE), system (u16 BE), state (u8), id.
const PARKED: TableDefinition<u64, &[u8]> = TableDefinition::new("parked_receipts");

/// MMS relayed to converged users that still owe the sending MMS centre a report.
const MMS_ORIGINS: TableDefinition<u64, &[u8]> = TableDefinition::new("mms_origins");

/// Version of the record formats in this file.
pub const FORMAT_VERSION: u64 = 1;
const QUEUE_HEADER: usize = 24;

/// Why the store failed. The control plane logs it and stops acknowledging.
#[derive(Debug)]
pub enum StoreError {
    /// [`Store::open`] found no file at the path.
    Missing(PathBuf),
    /// The file is not a readable store (redb refused it, or a record does not
    /// decode).
    Corrupt(String),
    /// Another process holds the file open.
    Locked,
    /// The file was written by a newer or older format.
    Version(u64),
    /// A write or fsync failed.
    Io(String),
    /// A value is not what the store holds (a PDU over [`LANE_ITEM_MAX`], a
    /// string over 64 KiB).
    BadValue(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Missing(p) => write!(f, "store file {} does not exist", p.display()),
            StoreError::Corrupt(why) => write!(f, "store file is corrupt: {why}"),
            StoreError::Locked => f.write_str("store file is open in another process"),
            StoreError::Version(v) => {
                write!(f, "store format {v} is not {FORMAT_VERSION}")
            }
            StoreError::Io(why) => write!(f, "store I/O failed: {why}"),
            StoreError::BadValue(what) => write!(f, "cannot store {what}"),
        }
    }
}

impl StoreError {
    /// What the operator should do about it, for the one line start-up prints.
    pub fn advice(&self) -> &'static str {
        match self {
            StoreError::Missing(_) => "check control.store, or start once with the file absent to create it",
            StoreError::Corrupt(_) => {
                "move the file aside and start again (its queued receipts and correlations are lost) or restore it from a backup"
            }
            StoreError::Locked => "another iwf holds it: stop that process or give this one its own control.store",
            StoreError::Version(_) => "run the iwf version that wrote it until its queue drains, or move the file aside",
            StoreError::Io(_) => "check the file system: permissions, free space, the disk",
            StoreError::BadValue(_) => "report this: iwf tried to store a value its format cannot hold",
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
            redb::Error::Corrupted(why) => StoreError::Corrupt(why),
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => StoreError::Corrupt(io.to_string()),
            redb::Error::Io(io) => StoreError::Io(io.to_string()),
            redb::Error::TableTypeMismatch { .. }
            | redb::Error::TypeDefinitionChanged { .. }
            | redb::Error::UpgradeRequired(_) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Where a queued receipt sits: its legacy system and its store sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// The legacy system.
    pub system: LegacySystemId,
    /// Store-wide sequence (drain order).
    pub seq: u64,
}

/// A receipt waiting for its legacy system to bind again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedReceipt {
    /// Its key, to [`Store::ack`] once delivered.
    pub key: QueueKey,
    /// The PDU and the caller's token.
    pub item: LaneItem,
    /// Unix seconds when it was queued.
    pub enqueued: u64,
    /// Unix seconds when its validity period ends.
    pub deadline: u64,
}

/// An owned correlation record as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableCorrelation {
    /// The legacy system the message went to.
    pub system: LegacySystemId,
    /// Parts of the message.
    pub segments: u8,
    /// Unix seconds when its validity period ends.
    pub deadline: u64,
    /// The converged `imdn.Message-ID`.
    pub message_id: String,
    /// The converged sender's URI.
    pub sender: String,
    /// The legacy recipient.
    pub recipient: Msisdn,
    /// The dispositions iwf honours.
    pub dispositions: Dispositions,
    /// The CPIM `DateTime`.
    pub datetime: DateTime,
    /// The first `imdn.IMDN-Record-Route` URI.
    pub imdn_record_route: Option<String>,
}

impl DurableCorrelation {
    /// An owned copy of what the table stored for a message.
    pub fn new(system: LegacySystemId, segments: u8, deadline: u64, s: &StoredCorrelation<'_>) -> Self {
        DurableCorrelation {
            system,
            segments,
            deadline,
            message_id: s.message_id.to_owned(),
            sender: s.sender.to_owned(),
            recipient: s.recipient,
            dispositions: s.dispositions,
            datetime: s.datetime,
            imdn_record_route: s.imdn_record_route.map(str::to_owned),
        }
    }

    /// The message as the in-memory table restores it ([`CorrelationTable::restore`]).
    pub fn new_message(&self) -> NewMessage<'_> {
        NewMessage {
            system: self.system,
            stored: self.stored(),
            segments: self.segments,
            first_sequence: 0,
            deadline: self.deadline,
        }
    }

    /// The borrowed view [`crate::interwork::converged_to_legacy::receipt_to_imdn`] takes.
    pub fn stored(&self) -> StoredCorrelation<'_> {
        StoredCorrelation {
            message_id: &self.message_id,
            sender: &self.sender,
            recipient: self.recipient,
            dispositions: self.dispositions,
            datetime: self.datetime,
            imdn_record_route: self.imdn_record_route.as_deref(),
        }
    }

    /// The record's octets: `deadline u64 | system u16 | segments u8 |
    /// dispositions u8 | unix i64 | nanos u32 | offset i16 | recipient (len u8 +
    /// digits) | message id, sender (len u16 + octets each) | route (flag u8,
    /// len u16 + octets)`, big-endian.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut v = Vec::with_capacity(64 + self.message_id.len() + self.sender.len());
        v.extend_from_slice(&self.deadline.to_be_bytes());
        v.extend_from_slice(&self.system.0.to_be_bytes());
        v.push(self.segments);
        v.push(self.dispositions.bits());
        v.extend_from_slice(&self.datetime.unix_seconds().to_be_bytes());
        v.extend_from_slice(&self.datetime.nanos().to_be_bytes());
        v.extend_from_slice(&self.datetime.offset_minutes().to_be_bytes());
        let digits = self.recipient.digits().as_bytes();
        v.push(digits.len() as u8); // ≤ 15
        v.extend_from_slice(digits);
        let put = |v: &mut Vec<u8>, s: &str| -> Result<(), StoreError> {
            let len = u16::try_from(s.len()).map_err(|_| StoreError::BadValue("string over 64 KiB"))?;
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(s.as_bytes());
            Ok(())
        };
        put(&mut v, &self.message_id)?;
        put(&mut v, &self.sender)?;
        match &self.imdn_record_route {
            Some(r) => {
                v.push(1);
                put(&mut v, r)?;
            }
            None => v.push(0),
        }
        Ok(v)
    }

    /// Reads [`DurableCorrelation::encode`]'s octets.
    pub fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("correlation record does not decode".into());
        let mut r = Reader(b);
        let deadline = u64::from_be_bytes(r.array()?);
        let system = LegacySystemId(u16::from_be_bytes(r.array()?));
        let [segments, disp] = r.array()?;
        let unix = i64::from_be_bytes(r.array()?);
        let nanos = u32::from_be_bytes(r.array()?);
        let offset = i16::from_be_bytes(r.array()?);
        let [n] = r.array()?;
        let digits = r.take(usize::from(n))?;
        let recipient = core::str::from_utf8(digits).ok().and_then(|d| Msisdn::parse(d).ok()).ok_or_else(bad)?;
        let message_id = r.string()?;
        let sender = r.string()?;
        let [flag] = r.array()?;
        let imdn_record_route = match flag {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(bad()),
        };
        if !r.0.is_empty() {
            return Err(bad());
        }
        let datetime = DateTime::new(unix, nanos, offset).map_err(|_| bad())?;
        Ok(DurableCorrelation {
            system,
            segments,
            deadline,
            message_id,
            sender,
            recipient,
            dispositions: dispositions_from_bits(disp),
            datetime,
            imdn_record_route,
        })
    }
}

fn dispositions_from_bits(bits: u8) -> Dispositions {
    [Dispositions::POSITIVE_DELIVERY, Dispositions::NEGATIVE_DELIVERY, Dispositions::PROCESSING, Dispositions::DISPLAY]
        .into_iter()
        .filter(|d| bits & d.bits() != 0)
        .fold(Dispositions::empty(), Dispositions::union)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("record truncated".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let n = u16::from_be_bytes(self.array()?);
        let b = self.take(usize::from(n))?;
        String::from_utf8(b.to_vec()).map_err(|_| StoreError::Corrupt("string is not UTF-8".into()))
    }
}

/// A caller's place in the commit order: durable once a commit reports a
/// [`Committed::through`] at or past it.
pub type Ticket = u64;

#[derive(Debug)]
enum Op {
    Queue { system: u16, value: Vec<u8> },
    PutCorrelation { key: u64, value: Vec<u8> },
    BindId { system: u16, id: Vec<u8>, key: u64, part: u8 },
    RemoveCorrelation { key: u64 },
    Park { key: u64, value: Vec<u8> },
    Unpark { key: u64 },
    PutMmsOrigin { key: u64, value: Vec<u8> },
    RemoveMmsOrigin { key: u64 },
}

/// An MMS iwf relayed to a converged user, as its reports back to the MMS centre that
/// sent it need it: the IMDN that comes back names only iwf's tag, so the centre's own
/// message id and addresses are kept here, under the tag's key
/// ([`MmsOrigin::key_of`]), until every report asked for went or `deadline` passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsOrigin {
    /// The MMS centre (its `[[legacy]]` id).
    pub system: LegacySystemId,
    /// Unix seconds after which no report is sent for it.
    pub deadline: u64,
    /// The reports still owed: [`MmsOrigin::DELIVERY`], [`MmsOrigin::READ`].
    pub owed: u8,
    /// The centre's `X-Mms-Message-ID`.
    pub message_id: String,
    /// The original's `From` (the report's `To`), as an MMS address.
    pub sender: String,
    /// The original's recipient (the report's `From`), as an MMS address.
    pub recipient: String,
    /// Where reports go: the original's `X-Mms-Originator-System`, else its `Sender`.
    pub report_to: String,
}

impl MmsOrigin {
    /// A delivery report is owed.
    pub const DELIVERY: u8 = 1;
    /// A read-reply report is owed.
    pub const READ: u8 = 2;

    /// The store key of the MMS whose tag has these `minutes` and `sequence`.
    pub fn key_of(minutes: u32, sequence: u32) -> u64 {
        (u64::from(minutes) << 32) | u64::from(sequence)
    }

    /// `deadline u64 | system u16 | owed u8 | message id, sender, recipient, report-to
    /// (len u16 + octets each)`, big-endian.
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let strings = [&self.message_id, &self.sender, &self.recipient, &self.report_to];
        let mut v = Vec::with_capacity(11 + strings.iter().map(|s| s.len() + 2).sum::<usize>());
        v.extend_from_slice(&self.deadline.to_be_bytes());
        v.extend_from_slice(&self.system.0.to_be_bytes());
        v.push(self.owed);
        for s in strings {
            let len = u16::try_from(s.len()).map_err(|_| StoreError::BadValue("string over 64 KiB"))?;
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(s.as_bytes());
        }
        Ok(v)
    }

    fn decode(b: &[u8]) -> Result<MmsOrigin, StoreError> {
        let mut r = Reader(b);
        let deadline = u64::from_be_bytes(r.array()?);
        let system = LegacySystemId(u16::from_be_bytes(r.array()?));
        let [owed] = r.array()?;
        let (message_id, sender, recipient, report_to) = (r.string()?, r.string()?, r.string()?, r.string()?);
        if !r.0.is_empty() {
            return Err(StoreError::Corrupt("MMS origin record has trailing octets".into()));
        }
        Ok(MmsOrigin { system, deadline, owed, message_id, sender, recipient, report_to })
    }
}

/// An SMSC receipt parked durably: answered at once, applied when a resp binds its id
/// (or counted as unmatched when `deadline` passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedReceipt {
    /// Its store key.
    pub key: u64,
    /// The legacy system it came from.
    pub system: LegacySystemId,
    /// The SMSC id it names.
    pub id: CanonicalId,
    /// The state it reports.
    pub state: ReceiptState,
    /// Unix seconds after which it is dropped from the store.
    pub deadline: u64,
}

const STATES: [ReceiptState; 6] = [
    ReceiptState::Buffered,
    ReceiptState::Delivered,
    ReceiptState::Failed,
    ReceiptState::Rejected,
    ReceiptState::Unknown,
    ReceiptState::Displayed,
];

impl ParkedReceipt {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(11 + self.id.as_bytes().len());
        v.extend_from_slice(&self.deadline.to_be_bytes());
        v.extend_from_slice(&self.system.0.to_be_bytes());
        v.push(STATES.iter().position(|s| *s == self.state).unwrap_or(4) as u8);
        v.extend_from_slice(self.id.as_bytes());
        v
    }

    fn decode(key: u64, b: &[u8]) -> Result<ParkedReceipt, StoreError> {
        let mut r = Reader(b);
        let deadline = u64::from_be_bytes(r.array()?);
        let system = LegacySystemId(u16::from_be_bytes(r.array()?));
        let [code] = r.array()?;
        let state = *STATES.get(usize::from(code)).ok_or(StoreError::Corrupt("unknown receipt state".into()))?;
        let id = canonical_id(r.0, IdCanonicalisation::Exact, IdOrigin::Receipt)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(ParkedReceipt { key, system, id, state, deadline })
    }
}

/// Several store writes made durable by one transaction. The control plane
/// pushes the writes as they come, and commits when [`Batch::should_flush`]
/// says so (N writes, or the oldest has waited M µs) or right away.
#[derive(Debug)]
pub struct Batch {
    ops: Vec<Op>,
    next_ticket: Ticket,
    oldest_us: Option<u64>,
    max_items: usize,
    max_wait_us: u64,
}

impl Batch {
    /// A batch flushed every `max_items` writes or when its oldest write has
    /// waited `max_wait_us` microseconds (clock of the caller).
    pub fn new(max_items: usize, max_wait_us: u64) -> Self {
        Batch {
            ops: Vec::with_capacity(max_items.min(4096)),
            next_ticket: 1,
            oldest_us: None,
            max_items: max_items.max(1),
            max_wait_us,
        }
    }

    /// Writes waiting.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether to commit now.
    pub fn should_flush(&self, now_us: u64) -> bool {
        self.ops.len() >= self.max_items || self.oldest_us.is_some_and(|t| now_us.saturating_sub(t) >= self.max_wait_us)
    }

    /// When the oldest write's wait ends (for the caller's timer), if any waits.
    pub fn flush_at(&self) -> Option<u64> {
        self.oldest_us.map(|t| t.saturating_add(self.max_wait_us))
    }

    fn push(&mut self, op: Op, now_us: u64) -> Ticket {
        self.ops.push(op);
        self.oldest_us.get_or_insert(now_us);
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    /// Queues a receipt for its (unbound) legacy system until `deadline`.
    pub fn queue_receipt(&mut self, item: &LaneItem, enqueued: u64, deadline: u64, now_us: u64) -> Ticket {
        let pdu = item.pdu();
        let mut value = Vec::with_capacity(QUEUE_HEADER + pdu.len());
        value.extend_from_slice(&enqueued.to_be_bytes());
        value.extend_from_slice(&deadline.to_be_bytes());
        value.extend_from_slice(&item.token().to_be_bytes());
        value.extend_from_slice(pdu);
        self.push(Op::Queue { system: item.system().0, value }, now_us)
    }

    /// Stores a correlation record under the caller's message `key`.
    pub fn put_correlation(
        &mut self,
        key: u64,
        record: &DurableCorrelation,
        now_us: u64,
    ) -> Result<Ticket, StoreError> {
        let value = record.encode()?;
        Ok(self.push(Op::PutCorrelation { key, value }, now_us))
    }

    /// Records that part `part` of message `key` has the SMSC id `id`.
    pub fn bind_id(&mut self, system: LegacySystemId, id: &CanonicalId, key: u64, part: u8, now_us: u64) -> Ticket {
        self.push(Op::BindId { system: system.0, id: id.as_bytes().to_vec(), key, part }, now_us)
    }

    /// Removes message `key` and its ids (its outcome is complete).
    pub fn remove_correlation(&mut self, key: u64, now_us: u64) -> Ticket {
        self.push(Op::RemoveCorrelation { key }, now_us)
    }

    /// Parks an SMSC receipt under `receipt.key`.
    pub fn park(&mut self, receipt: &ParkedReceipt, now_us: u64) -> Ticket {
        self.push(Op::Park { key: receipt.key, value: receipt.encode() }, now_us)
    }

    /// Removes parked receipt `key` (applied, a duplicate, or unmatched).
    pub fn unpark(&mut self, key: u64, now_us: u64) -> Ticket {
        self.push(Op::Unpark { key }, now_us)
    }

    /// Stores what the reports of an MMS need under its tag's `key`.
    pub fn put_mms_origin(&mut self, key: u64, origin: &MmsOrigin, now_us: u64) -> Result<Ticket, StoreError> {
        let value = origin.encode()?;
        Ok(self.push(Op::PutMmsOrigin { key, value }, now_us))
    }

    /// Removes MMS origin `key` (its reports went).
    pub fn remove_mms_origin(&mut self, key: u64, now_us: u64) -> Ticket {
        self.push(Op::RemoveMmsOrigin { key }, now_us)
    }
}

/// What a commit made durable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Committed {
    /// Every ticket up to this one is durable (0: none yet).
    pub through: Ticket,
    /// Writes in the transaction.
    pub writes: usize,
    /// The keys of the receipts queued, in the order pushed.
    pub queued: Vec<QueueKey>,
}

/// A correlation record to restore: its store key, the record, its parts' SMSC ids.
pub type Restorable = (u64, DurableCorrelation, Vec<(u8, CanonicalId)>);

/// What [`Store::sweep`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Queued receipts past their validity (never delivered: count them).
    pub receipts_expired: usize,
    /// Correlation records past their validity.
    pub correlations_expired: usize,
    /// Parked receipts past their deadline (their flows count them unmatched first).
    pub parked_expired: usize,
    /// MMS origins past their deadline (reports no longer sent).
    pub mms_origins_expired: usize,
}

/// The durable store. See the module documentation.
#[derive(Debug)]
pub struct Store {
    /// `None` after a write failed: redb refuses every later transaction of a
    /// database whose write failed, so the file is closed and opened again
    /// ([`Store::commit`] retries), which is how a full disk recovers once space
    /// returns.
    db: Option<Database>,
    reopen: Reopen,
    path: PathBuf,
    next_seq: u64,
    committed_through: Ticket,
}

/// How the store opens its database again after a failed write.
struct Reopen(Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>);

impl fmt::Debug for Reopen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reopen")
    }
}

impl Store {
    /// Opens an existing store; a missing file is [`StoreError::Missing`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let owned = path.to_path_buf();
        Store::start(guard(|| Database::open(path))?, path, Reopen(Box::new(move || Database::open(&owned))))
    }

    /// Opens the store, creating an empty one when the file does not exist.
    pub fn create(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let owned = path.to_path_buf();
        Store::start(guard(|| Database::create(path))?, path, Reopen(Box::new(move || Database::open(&owned))))
    }

    /// A store over any redb storage backend (a clone of it serves a reopen after
    /// a failed write): for tests that need a disk that fails on command.
    pub fn with_backend<B>(backend: B) -> Result<Store, StoreError>
    where
        B: redb::StorageBackend + Clone + Send + 'static,
    {
        let first = backend.clone();
        let db = guard(|| Database::builder().create_with_backend(first))?;
        let reopen = Reopen(Box::new(move || Database::builder().create_with_backend(backend.clone())));
        Store::start(db, Path::new("(backend)"), reopen)
    }

    fn start(db: Database, path: &Path, reopen: Reopen) -> Result<Store, StoreError> {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        let next_seq;
        {
            tx.open_table(QUEUE)?;
            tx.open_table(CORRELATION)?;
            tx.open_table(CORRELATION_IDS)?;
            tx.open_table(CORRELATION_PARTS)?;
            tx.open_table(QUARANTINE)?;
            tx.open_table(PARKED)?;
            tx.open_table(MMS_ORIGINS)?;
            let mut meta = tx.open_table(META)?;
            let version = meta.get("version")?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("version", FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(v) => return Err(StoreError::Version(v)),
            }
            next_seq = meta.get("next_seq")?.map(|v| v.value()).unwrap_or(1);
        }
        tx.commit()?;
        Ok(Store { db: Some(db), reopen, path: path.to_path_buf(), next_seq, committed_through: 0 })
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Io("the store is closed after a failed write".into()))
    }

    /// After a failed write: close the database and open it again (redb refuses
    /// every transaction after an I/O error until then). A reopen that fails
    /// leaves it closed; the next commit tries again.
    fn recover(&mut self) {
        self.db = None;
        self.db = guard(|| (self.reopen.0)()).ok();
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits every write of `batch` in one transaction, durable
    /// (fsync'd) when this returns `Ok`; the batch is emptied. On error nothing
    /// of the batch is stored and the batch keeps its writes for a retry.
    pub fn commit(&mut self, batch: &mut Batch) -> Result<Committed, StoreError> {
        if batch.ops.is_empty() {
            return Ok(Committed { through: self.committed_through, ..Committed::default() });
        }
        if self.db.is_none() {
            self.recover();
        }
        let r = self.commit_batch(batch);
        if matches!(r, Err(StoreError::Io(_))) {
            self.recover();
        }
        r
    }

    fn commit_batch(&mut self, batch: &mut Batch) -> Result<Committed, StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        let mut seq = self.next_seq;
        let mut queued = Vec::new();
        {
            let mut queue = tx.open_table(QUEUE)?;
            let mut corr = tx.open_table(CORRELATION)?;
            let mut ids = tx.open_table(CORRELATION_IDS)?;
            let mut parts = tx.open_table(CORRELATION_PARTS)?;
            let mut parked = tx.open_table(PARKED)?;
            let mut origins = tx.open_table(MMS_ORIGINS)?;
            for op in &batch.ops {
                match op {
                    Op::Queue { system, value } => {
                        queue.insert((*system, seq), value.as_slice())?;
                        queued.push(QueueKey { system: LegacySystemId(*system), seq });
                        seq += 1;
                    }
                    Op::PutCorrelation { key, value } => {
                        corr.insert(*key, value.as_slice())?;
                    }
                    Op::BindId { system, id, key, part } => {
                        ids.insert((*system, id.as_slice()), (*key, *part))?;
                        parts.insert((*key, *part), id.as_slice())?;
                    }
                    Op::RemoveCorrelation { key } => {
                        remove_correlation(&mut corr, &mut ids, &mut parts, *key)?;
                    }
                    Op::Park { key, value } => {
                        parked.insert(*key, value.as_slice())?;
                    }
                    Op::Unpark { key } => {
                        parked.remove(*key)?;
                    }
                    Op::PutMmsOrigin { key, value } => {
                        origins.insert(*key, value.as_slice())?;
                    }
                    Op::RemoveMmsOrigin { key } => {
                        origins.remove(*key)?;
                    }
                }
            }
            let mut meta = tx.open_table(META)?;
            meta.insert("next_seq", seq)?;
        }
        tx.commit()?;
        self.next_seq = seq;
        let through = batch.next_ticket - 1;
        self.committed_through = through;
        let writes = batch.ops.len();
        batch.ops.clear();
        batch.oldest_us = None;
        Ok(Committed { through, writes, queued })
    }

    /// Queues one receipt, durable when this returns (one transaction).
    pub fn put_receipt(&mut self, item: &LaneItem, enqueued: u64, deadline: u64) -> Result<QueueKey, StoreError> {
        let mut b = Batch::new(1, 0);
        b.queue_receipt(item, enqueued, deadline, 0);
        self.commit(&mut b)?.queued.first().copied().ok_or(StoreError::Io("commit queued nothing".into()))
    }

    /// Up to `max` receipts queued for `system`, oldest first, skipping those
    /// past their validity at `now`. Nothing is removed: [`Store::ack`] the
    /// ones delivered. A receipt that does not decode is quarantined on the way
    /// (it would otherwise block its system's replay for ever).
    pub fn peek(&mut self, system: LegacySystemId, max: usize, now: u64) -> Result<Vec<QueuedReceipt>, StoreError> {
        let mut bad = Vec::new();
        let mut out = Vec::new();
        {
            let tx = self.db()?.begin_read()?;
            let queue = tx.open_table(QUEUE)?;
            for entry in queue.range((system.0, 0u64)..=(system.0, u64::MAX))? {
                if out.len() >= max {
                    break;
                }
                let (k, v) = entry?;
                let (sys, seq) = k.value();
                match decode_queued(QueueKey { system: LegacySystemId(sys), seq }, v.value()) {
                    Ok(r) if r.deadline >= now => out.push(r),
                    Ok(_) => {}
                    Err(_) => bad.push((sys, seq)),
                }
            }
        }
        if !bad.is_empty() {
            self.quarantine_queued(&bad)?;
        }
        Ok(out)
    }

    fn quarantine_queued(&mut self, keys: &[(u16, u64)]) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut queue = tx.open_table(QUEUE)?;
            let mut q = tx.open_table(QUARANTINE)?;
            let mut meta = tx.open_table(META)?;
            let mut seq = meta.get("next_quarantine")?.map(|v| v.value()).unwrap_or(1);
            for &(system, s) in keys {
                let Some(v) = queue.remove((system, s))?.map(|v| v.value().to_vec()) else { continue };
                let mut key = system.to_be_bytes().to_vec();
                key.extend_from_slice(&s.to_be_bytes());
                q.insert(seq, ("queued_receipts", key.as_slice(), v.as_slice()))?;
                seq += 1;
            }
            meta.insert("next_quarantine", seq)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records set aside because they do not decode (kept for the operator).
    pub fn quarantined(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        Ok(tx.open_table(QUARANTINE)?.len()?)
    }

    /// Removes delivered receipts, durably; returns how many were there.
    pub fn ack(&mut self, keys: &[QueueKey]) -> Result<usize, StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        let mut removed = 0;
        {
            let mut queue = tx.open_table(QUEUE)?;
            for k in keys {
                if queue.remove((k.system.0, k.seq))?.is_some() {
                    removed += 1;
                }
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Receipts queued for `system`.
    pub fn queued_len(&self, system: LegacySystemId) -> Result<usize, StoreError> {
        let tx = self.db()?.begin_read()?;
        let queue = tx.open_table(QUEUE)?;
        let mut n = 0;
        for e in queue.range((system.0, 0u64)..=(system.0, u64::MAX))? {
            e?;
            n += 1;
        }
        Ok(n)
    }

    /// When the oldest receipt queued for `system` was stored (Unix seconds), if one
    /// is. Keys grow with each receipt stored, so the first of the system's range is
    /// the oldest: one B-tree seek.
    pub fn oldest(&self, system: LegacySystemId) -> Result<Option<u64>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let queue = tx.open_table(QUEUE)?;
        let Some(first) = queue.range((system.0, 0u64)..=(system.0, u64::MAX))?.next() else { return Ok(None) };
        let (_, v) = first?;
        Ok(v.value().get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
    }

    /// Drops every receipt queued for `system` (the operator's `iwf ctl expire`, for a
    /// system that will not come back for them): how many went.
    pub fn expire_queue(&mut self, system: LegacySystemId) -> Result<usize, StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        let removed = {
            let mut queue = tx.open_table(QUEUE)?;
            let keys: Vec<(u16, u64)> = queue
                .range((system.0, 0u64)..=(system.0, u64::MAX))?
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in &keys {
                queue.remove(*k)?;
            }
            keys.len()
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Receipts queued for all systems.
    pub fn queued_total(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read()?;
        Ok(tx.open_table(QUEUE)?.len()?)
    }

    /// The correlation record of message `key`.
    pub fn correlation(&self, key: u64) -> Result<Option<DurableCorrelation>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let corr = tx.open_table(CORRELATION)?;
        let v = corr.get(key)?;
        v.map(|v| DurableCorrelation::decode(v.value())).transpose()
    }

    /// The message and part a `(system, id)` belongs to, with its record: a
    /// receipt's way back to its IMDN after a restart.
    pub fn find_by_id(
        &self,
        system: LegacySystemId,
        id: &CanonicalId,
    ) -> Result<Option<(u64, u8, DurableCorrelation)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let ids = tx.open_table(CORRELATION_IDS)?;
        let Some(hit) = ids.get((system.0, id.as_bytes()))? else {
            return Ok(None);
        };
        let (key, part) = hit.value();
        let corr = tx.open_table(CORRELATION)?;
        let Some(v) = corr.get(key)? else {
            return Ok(None);
        };
        Ok(Some((key, part, DurableCorrelation::decode(v.value())?)))
    }

    /// The SMSC ids bound to the parts of message `key`: `(part, id)`.
    pub fn correlation_ids(&self, key: u64) -> Result<Vec<(u8, CanonicalId)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let parts = tx.open_table(CORRELATION_PARTS)?;
        let mut out = Vec::new();
        for e in parts.range((key, 0u8)..=(key, u8::MAX))? {
            let (k, v) = e?;
            let id = canonical_id(v.value(), IdCanonicalisation::Exact, IdOrigin::Receipt)
                .map_err(|e| StoreError::Corrupt(format!("stored id of message {key}: {e}")))?;
            out.push((k.value().1, id));
        }
        Ok(out)
    }

    /// Reloads every correlation record still within its validity at `now`
    /// into a fresh in-memory table after a restart (parts keyed by their
    /// stored SMSC ids); returns each store key with its table reference.
    /// Record by record: one that does not decode (the record or one of its
    /// ids) is quarantined, and one the table refuses is left in the store
    /// (its receipts still find it through [`Store::find_by_id`]).
    pub fn reload(&mut self, table: &mut CorrelationTable, now: u64) -> Result<Vec<(u64, MessageRef)>, StoreError> {
        let mut out = Vec::new();
        for (key, rec, ids) in self.restorable(now)? {
            if let Ok(m) = table.restore(&rec.new_message(), &ids, now) {
                out.push((key, m));
            }
        }
        Ok(out)
    }

    /// Every correlation record still valid at `now` with its SMSC ids, each
    /// decoded on its own: those that do not decode are quarantined first.
    pub fn restorable(&mut self, now: u64) -> Result<Vec<Restorable>, StoreError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        {
            let tx = self.db()?.begin_read()?;
            let corr = tx.open_table(CORRELATION)?;
            let parts = tx.open_table(CORRELATION_PARTS)?;
            for e in corr.iter()? {
                let (k, v) = e?;
                let key = k.value();
                let Ok(rec) = DurableCorrelation::decode(v.value()) else {
                    bad.push(key);
                    continue;
                };
                let ids = parts
                    .range((key, 0u8)..=(key, u8::MAX))?
                    .map(|e| {
                        let (k, v) = e.map_err(StoreError::from)?;
                        let id = canonical_id(v.value(), IdCanonicalisation::Exact, IdOrigin::Receipt)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        Ok((k.value().1, id))
                    })
                    .collect::<Result<Vec<_>, StoreError>>();
                match ids {
                    Ok(_) if rec.deadline < now => {}
                    Ok(ids) => out.push((key, rec, ids)),
                    Err(_) => bad.push(key),
                }
            }
        }
        if !bad.is_empty() {
            self.quarantine_correlations(&bad)?;
        }
        // In deadline order: the in-memory table keeps its expiry lists sorted, and
        // records that come in order each go at a list's tail.
        out.sort_by_key(|(_, rec, _)| rec.deadline);
        Ok(out)
    }

    fn quarantine_correlations(&mut self, keys: &[u64]) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut corr = tx.open_table(CORRELATION)?;
            let mut ids = tx.open_table(CORRELATION_IDS)?;
            let mut parts = tx.open_table(CORRELATION_PARTS)?;
            let mut q = tx.open_table(QUARANTINE)?;
            let mut meta = tx.open_table(META)?;
            let mut seq = meta.get("next_quarantine")?.map(|v| v.value()).unwrap_or(1);
            for &key in keys {
                let Some(v) = corr.get(key)?.map(|v| v.value().to_vec()) else { continue };
                q.insert(seq, ("correlation", key.to_be_bytes().as_slice(), v.as_slice()))?;
                seq += 1;
                remove_correlation(&mut corr, &mut ids, &mut parts, key)?;
            }
            meta.insert("next_quarantine", seq)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every parked receipt still valid at `now`, each decoded on its own: those that
    /// do not decode are quarantined.
    pub fn parked(&mut self, now: u64) -> Result<Vec<ParkedReceipt>, StoreError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        {
            let tx = self.db()?.begin_read()?;
            let parked = tx.open_table(PARKED)?;
            for e in parked.iter()? {
                let (k, v) = e?;
                match ParkedReceipt::decode(k.value(), v.value()) {
                    Ok(r) if r.deadline < now => {}
                    Ok(r) => out.push(r),
                    Err(_) => bad.push((k.value(), v.value().to_vec())),
                }
            }
        }
        self.quarantine_records(PARKED, "parked_receipt", &bad)?;
        Ok(out)
    }

    /// Every MMS origin still valid at `now` with its key, each decoded on its own:
    /// those that do not decode are quarantined.
    pub fn mms_origins(&mut self, now: u64) -> Result<Vec<(u64, MmsOrigin)>, StoreError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        {
            let tx = self.db()?.begin_read()?;
            let origins = tx.open_table(MMS_ORIGINS)?;
            for e in origins.iter()? {
                let (k, v) = e?;
                match MmsOrigin::decode(v.value()) {
                    Ok(o) if o.deadline < now => {}
                    Ok(o) => out.push((k.value(), o)),
                    Err(_) => bad.push((k.value(), v.value().to_vec())),
                }
            }
        }
        self.quarantine_records(MMS_ORIGINS, "mms_origin", &bad)?;
        Ok(out)
    }

    /// Moves the records `bad` (key, value) of `table` (called `name` in the
    /// quarantine) aside, in one transaction.
    fn quarantine_records(
        &mut self,
        table: TableDefinition<u64, &[u8]>,
        name: &str,
        bad: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if bad.is_empty() {
            return Ok(());
        }
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut records = tx.open_table(table)?;
            let mut q = tx.open_table(QUARANTINE)?;
            let mut meta = tx.open_table(META)?;
            let mut seq = meta.get("next_quarantine")?.map(|v| v.value()).unwrap_or(1);
            for (key, v) in bad {
                q.insert(seq, (name, key.to_be_bytes().as_slice(), v.as_slice()))?;
                seq += 1;
                records.remove(*key)?;
            }
            meta.insert("next_quarantine", seq)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every correlation record that decodes (the others are left for
    /// [`Store::restorable`] to quarantine).
    pub fn correlations(&self) -> Result<Vec<(u64, DurableCorrelation)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let corr = tx.open_table(CORRELATION)?;
        let mut out = Vec::new();
        for e in corr.iter()? {
            let (k, v) = e?;
            if let Ok(rec) = DurableCorrelation::decode(v.value()) {
                out.push((k.value(), rec));
            }
        }
        Ok(out)
    }

    /// Removes every queued receipt and correlation record past its validity
    /// at `now` (durably), counting them.
    pub fn sweep(&mut self, now: u64) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut queue = tx.open_table(QUEUE)?;
            queue.retain(|_, v| {
                let keep = deadline_of(v).is_none_or(|d| d >= now);
                report.receipts_expired += usize::from(!keep);
                keep
            })?;
            let mut corr = tx.open_table(CORRELATION)?;
            let mut ids = tx.open_table(CORRELATION_IDS)?;
            let mut parts = tx.open_table(CORRELATION_PARTS)?;
            let mut gone = Vec::new();
            for e in corr.iter()? {
                let (k, v) = e?;
                if deadline_of_record(v.value()).is_some_and(|d| d < now) {
                    gone.push(k.value());
                }
            }
            for &key in &gone {
                remove_correlation(&mut corr, &mut ids, &mut parts, key)?;
            }
            report.correlations_expired = gone.len();
            let mut parked = tx.open_table(PARKED)?;
            parked.retain(|_, v| {
                let keep = deadline_of_record(v).is_none_or(|d| d >= now);
                report.parked_expired += usize::from(!keep);
                keep
            })?;
            let mut origins = tx.open_table(MMS_ORIGINS)?;
            origins.retain(|_, v| {
                let keep = deadline_of_record(v).is_none_or(|d| d >= now);
                report.mms_origins_expired += usize::from(!keep);
                keep
            })?;
        }
        tx.commit()?;
        Ok(report)
    }
}

/// Removes record `key` with its ids. The ids are found through the record's
/// system; a record that does not decode cannot be trusted to name it, and has
/// its ids found by a scan (rare: only quarantine meets such a record).
fn remove_correlation(
    corr: &mut redb::Table<u64, &[u8]>,
    ids: &mut redb::Table<(u16, &[u8]), (u64, u8)>,
    parts: &mut redb::Table<(u64, u8), &[u8]>,
    key: u64,
) -> Result<(), StoreError> {
    let system = match corr.remove(key)? {
        Some(v) => DurableCorrelation::decode(v.value()).ok().map(|r| r.system.0),
        None => return Ok(()),
    };
    let mut bound: Vec<(u8, Vec<u8>)> = Vec::new();
    for e in parts.range((key, 0u8)..=(key, u8::MAX))? {
        let (k, v) = e?;
        bound.push((k.value().1, v.value().to_vec()));
    }
    for (part, id) in &bound {
        if let Some(system) = system {
            ids.remove((system, id.as_slice()))?;
        }
        parts.remove((key, *part))?;
    }
    if system.is_none() && !bound.is_empty() {
        ids.retain(|_, (k, _)| k != key)?;
    }
    Ok(())
}

/// redb 2 asserts on some damaged files (a file cut shorter than its header
/// says) instead of returning an error: such a panic is a corrupt file too.
fn guard(open: impl FnOnce() -> Result<Database, redb::DatabaseError>) -> Result<Database, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(r) => Ok(r?),
        Err(p) => {
            Err(StoreError::Corrupt(crate::panic_message(p.as_ref()).unwrap_or_else(|| "redb refused the file".into())))
        }
    }
}

/// The deadline a correlation, parked receipt or MMS origin record starts with.
fn deadline_of_record(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn deadline_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(8..16)?.try_into().ok()?))
}

fn decode_queued(key: QueueKey, v: &[u8]) -> Result<QueuedReceipt, StoreError> {
    let bad = || StoreError::Corrupt(format!("queued receipt {} of {} does not decode", key.seq, key.system));
    let mut r = Reader(v);
    let enqueued = u64::from_be_bytes(r.array().map_err(|_| bad())?);
    let deadline = u64::from_be_bytes(r.array().map_err(|_| bad())?);
    let token = u64::from_be_bytes(r.array().map_err(|_| bad())?);
    if r.0.len() > LANE_ITEM_MAX {
        return Err(bad());
    }
    let item = LaneItem::new(key.system, token, r.0).map_err(|_| bad())?;
    Ok(QueuedReceipt { key, item, enqueued, deadline })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(route: Option<&str>) -> DurableCorrelation {
        DurableCorrelation {
            system: LegacySystemId(3),
            segments: 2,
            deadline: 1_800_000_000,
            message_id: "0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p".into(),
            sender: "sip:+447700900001@ims.lab;user=phone".into(),
            recipient: Msisdn::parse("+447000312345").unwrap(),
            dispositions: Dispositions::POSITIVE_DELIVERY.union(Dispositions::DISPLAY),
            datetime: DateTime::new(1_700_000_000, 5, -120).unwrap(),
            imdn_record_route: route.map(str::to_owned),
        }
    }

    #[test]
    fn correlation_record_round_trips() {
        for r in [record(None), record(Some("sip:imdn@ims.lab"))] {
            let b = r.encode().unwrap();
            assert_eq!(DurableCorrelation::decode(&b).unwrap(), r);
            assert_eq!(DurableCorrelation::new(r.system, r.segments, r.deadline, &r.stored()), r);
        }
    }

    #[test]
    fn truncated_or_padded_records_are_corrupt() {
        let b = record(Some("sip:x@y")).encode().unwrap();
        for n in 0..b.len() {
            assert!(matches!(DurableCorrelation::decode(&b[..n]), Err(StoreError::Corrupt(_))), "{n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(DurableCorrelation::decode(&long), Err(StoreError::Corrupt(_))));
        let too_long = DurableCorrelation { sender: "s".repeat(70_000), ..record(None) };
        assert!(matches!(too_long.encode(), Err(StoreError::BadValue(_))));
    }

    #[test]
    fn mms_origin_records_round_trip_and_refuse_damage() {
        let o = MmsOrigin {
            system: LegacySystemId(9),
            deadline: 1_800_000_000,
            owed: MmsOrigin::READ,
            message_id: "20261207-1@mmsc-m.lab".into(),
            sender: "+447000400001/TYPE=PLMN@mmsc-m.lab".into(),
            recipient: "+447000200001/TYPE=PLMN@iwf.ims.lab".into(),
            report_to: "system-user@mmsc-m.lab".into(),
        };
        let b = o.encode().unwrap();
        assert_eq!(MmsOrigin::decode(&b).unwrap(), o);
        for n in 0..b.len() {
            assert!(MmsOrigin::decode(&b[..n]).is_err(), "{n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(MmsOrigin::decode(&long).is_err());
        assert!(MmsOrigin { report_to: "r".repeat(70_000), ..o }.encode().is_err());
        assert_eq!(MmsOrigin::key_of(1, 2), (1 << 32) | 2);
    }

    #[test]
    fn batch_flush_policy() {
        let mut b = Batch::new(3, 500);
        assert!(!b.should_flush(0));
        assert_eq!(b.flush_at(), None);
        let item = LaneItem::new(LegacySystemId(1), 9, b"pdu").unwrap();
        assert_eq!(b.queue_receipt(&item, 1, 2, 1000), 1);
        assert_eq!(b.flush_at(), Some(1500));
        assert!(!b.should_flush(1499));
        assert!(b.should_flush(1500));
        assert_eq!(b.remove_correlation(7, 1200), 2);
        b.bind_id(
            LegacySystemId(1),
            &crate::interwork::converged_to_legacy::canonical_id(
                b"1",
                crate::interwork::IdCanonicalisation::Exact,
                crate::interwork::converged_to_legacy::IdOrigin::Receipt,
            )
            .unwrap(),
            7,
            1,
            1300,
        );
        assert!(b.should_flush(1300));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn queued_values_decode_strictly() {
        let key = QueueKey { system: LegacySystemId(1), seq: 1 };
        assert!(decode_queued(key, &[0; 23]).is_err());
        let mut v = vec![0u8; 24];
        v.extend_from_slice(&[1; LANE_ITEM_MAX + 1]);
        assert!(decode_queued(key, &v).is_err());
        let mut v = vec![0u8; 24];
        v[15] = 9;
        v.extend_from_slice(b"abc");
        let r = decode_queued(key, &v).unwrap();
        assert_eq!((r.deadline, r.item.pdu()), (9, &b"abc"[..]));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = DurableCorrelation::decode(&b);
            let _ = MmsOrigin::decode(&b);
            let _ = decode_queued(QueueKey { system: LegacySystemId(1), seq: 1 }, &b);
        }

        #[test]
        fn records_round_trip(id in "[ -~]{1,64}", sender in "[ -~]{1,200}", digits in "[1-9][0-9]{0,14}", d in 0u8..16) {
            let r = DurableCorrelation {
                message_id: id,
                sender,
                recipient: Msisdn::parse(&digits).unwrap(),
                dispositions: dispositions_from_bits(d),
                ..record(None)
            };
            prop_assert_eq!(DurableCorrelation::decode(&r.encode().unwrap()).unwrap(), r);
        }
    }
}
