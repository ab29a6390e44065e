//! A bounded, sans-IO reassembler of concatenated short messages (TS 23.040 §9.2.3.24.1).
//!
//! Parts are keyed by `(caller key, reference)`: the caller key scopes references (e.g.
//! legacy system and originating address), since references are only unique per sender.
//! Parts may arrive out of order and repeated (the first copy is kept). Time comes from
//! the caller (`now`): a message whose first part arrived more than
//! [`ReassemblyLimits::timeout`] ago is handed back by [`Reassembler::poll_expired`] with
//! the parts present and the missing numbers. This is not on the per-receipt hot path:
//! it allocates, but never beyond [`ReassemblyLimits`] (messages in flight, octets held,
//! octets per part); a part beyond them is a specific error. Expiry and
//! [`Reassembler::next_timeout`] scan the pending messages (bounded by `max_messages`).
//!
//! Completion forgets the message: a copy of one of its parts that arrives after it
//! completed starts a new pending message, which later expires with the others missing
//! (remembering completed references would instead drop a new message that reuses one).
//!
//! Parts are stored as given (e.g. GSM-7 unpacked septets, or UTF-16BE): concatenate the
//! parts of a complete message, then decode once, so a character split across parts by
//! a careless sender still decodes. Unpack GSM-7 packed parts before pushing them: each
//! has its own fill bits.

use super::{ConcatError, ConcatInfo};
use core::fmt;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Bounds of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Most messages pending at once.
    pub max_messages: usize,
    /// Most octets held over all pending parts.
    pub max_bytes: usize,
    /// Most octets of one part.
    pub max_part_len: usize,
    /// How long after its first part a message may stay incomplete.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    /// 1024 messages, 1 MiB, 255 octets per part (SMPP `short_message`), 120 s.
    fn default() -> Self {
        ReassemblyLimits {
            max_messages: 1024,
            max_bytes: 1 << 20,
            max_part_len: 255,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a part was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// Invalid concatenation values.
    Concat(ConcatError),
    /// A new message while `max_messages` are pending.
    TooManyMessages {
        /// The limit.
        max: usize,
    },
    /// Storing the part would exceed `max_bytes`.
    TooManyBytes {
        /// The limit.
        max: usize,
    },
    /// A part longer than `max_part_len`.
    PartTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A part whose total differs from the earlier parts with the same key and reference.
    TotalMismatch {
        /// Total of the pending message.
        expected: u8,
        /// Total in this part.
        got: u8,
    },
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReassemblyError::Concat(e) => write!(f, "concatenation: {e}"),
            ReassemblyError::TooManyMessages { max } => write!(f, "reassembly full: {max} messages pending"),
            ReassemblyError::TooManyBytes { max } => write!(f, "reassembly full: {max} octets held"),
            ReassemblyError::PartTooLarge { len, max } => write!(f, "part of {len} octets exceeds {max}"),
            ReassemblyError::TotalMismatch { expected, got } => {
                write!(f, "part says {got} parts, message has {expected}")
            }
        }
    }
}

impl std::error::Error for ReassemblyError {}

/// What a pushed part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push<K> {
    /// Stored; the message still misses parts.
    Incomplete {
        /// Parts held.
        received: u8,
        /// Parts in the message.
        total: u8,
    },
    /// This part was already held; the copy is dropped.
    Duplicate,
    /// The last missing part: the whole message, parts in order.
    Complete(Reassembled<K>),
}

/// A complete message: its parts in order (`seq` 1..=total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled<K> {
    /// Caller key.
    pub key: K,
    /// Concatenation reference.
    pub reference: u16,
    /// Parts, in order.
    pub parts: Vec<Vec<u8>>,
}

impl<K> Reassembled<K> {
    /// Total octets over all parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Whether every part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the parts, in order, into `out`; returns the octets written (`None` when
    /// `out` is too small).
    pub fn concat_into(&self, out: &mut [u8]) -> Option<usize> {
        let mut n = 0usize;
        for p in &self.parts {
            out.get_mut(n..n + p.len())?.copy_from_slice(p);
            n += p.len();
        }
        Some(n)
    }
}

/// A message that timed out incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired<K> {
    /// Caller key.
    pub key: K,
    /// Concatenation reference.
    pub reference: u16,
    /// Parts by position (`parts[seq - 1]`), `None` where missing.
    pub parts: Vec<Option<Vec<u8>>>,
}

impl<K> Expired<K> {
    /// Sequence numbers (1-based) of the missing parts.
    pub fn missing(&self) -> impl Iterator<Item = u8> + '_ {
        self.parts.iter().enumerate().filter(|(_, p)| p.is_none()).map(|(i, _)| (i + 1) as u8)
    }
}

#[derive(Debug)]
struct Pending {
    total: u8,
    received: u8,
    bytes: usize,
    deadline: Instant,
    parts: Vec<Option<Vec<u8>>>,
}

/// Collects the parts of concatenated messages (see the module doc).
#[derive(Debug)]
pub struct Reassembler<K> {
    limits: ReassemblyLimits,
    pending: HashMap<(K, u16), Pending>,
    bytes: usize,
}

impl<K: Hash + Eq + Clone> Reassembler<K> {
    /// An empty reassembler with these bounds.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler { limits, pending: HashMap::new(), bytes: 0 }
    }

    /// The bounds.
    pub fn limits(&self) -> &ReassemblyLimits {
        &self.limits
    }

    /// Messages pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no message is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Octets held over all pending parts.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Takes one part. A single-part message (`total` 1) completes at once.
    pub fn push(&mut self, key: K, info: ConcatInfo, payload: &[u8], now: Instant) -> Result<Push<K>, ReassemblyError> {
        let info =
            ConcatInfo::new(info.reference, info.total, info.seq, info.ref_16bit).map_err(ReassemblyError::Concat)?;
        if payload.len() > self.limits.max_part_len {
            return Err(ReassemblyError::PartTooLarge { len: payload.len(), max: self.limits.max_part_len });
        }
        if info.total == 1 {
            return Ok(Push::Complete(Reassembled { key, reference: info.reference, parts: vec![payload.to_vec()] }));
        }
        let slot_key = (key, info.reference);
        let idx = (info.seq - 1) as usize;
        if let Some(p) = self.pending.get(&slot_key) {
            if p.total != info.total {
                return Err(ReassemblyError::TotalMismatch { expected: p.total, got: info.total });
            }
            if p.parts.get(idx).is_some_and(Option::is_some) {
                return Ok(Push::Duplicate);
            }
        } else if self.pending.len() >= self.limits.max_messages {
            return Err(ReassemblyError::TooManyMessages { max: self.limits.max_messages });
        }
        if self.bytes.saturating_add(payload.len()) > self.limits.max_bytes {
            return Err(ReassemblyError::TooManyBytes { max: self.limits.max_bytes });
        }
        let deadline = now.checked_add(self.limits.timeout).unwrap_or(now);
        let p = self.pending.entry(slot_key.clone()).or_insert_with(|| Pending {
            total: info.total,
            received: 0,
            bytes: 0,
            deadline,
            parts: vec![None; info.total as usize],
        });
        if let Some(slot) = p.parts.get_mut(idx) {
            *slot = Some(payload.to_vec());
        }
        p.received += 1;
        p.bytes += payload.len();
        self.bytes += payload.len();
        if p.received < p.total {
            return Ok(Push::Incomplete { received: p.received, total: p.total });
        }
        let Some(p) = self.pending.remove(&slot_key) else {
            return Ok(Push::Incomplete { received: 0, total: info.total });
        };
        self.bytes -= p.bytes;
        let (key, reference) = slot_key;
        Ok(Push::Complete(Reassembled { key, reference, parts: p.parts.into_iter().flatten().collect() }))
    }

    /// When the earliest pending message times out, if any.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Removes and returns one message whose deadline is at or before `now` (earliest
    /// first); call until `None`.
    pub fn poll_expired(&mut self, now: Instant) -> Option<Expired<K>> {
        let slot_key = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .min_by_key(|(_, p)| p.deadline)
            .map(|(k, _)| k.clone())?;
        let p = self.pending.remove(&slot_key)?;
        self.bytes -= p.bytes;
        let (key, reference) = slot_key;
        Some(Expired { key, reference, parts: p.parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sms::{Concatenation, SegmentPlan};
    use proptest::prelude::*;

    fn ci(reference: u16, total: u8, seq: u8) -> ConcatInfo {
        ConcatInfo { reference, total, seq, ref_16bit: false }
    }

    fn small() -> ReassemblyLimits {
        ReassemblyLimits { max_messages: 2, max_bytes: 64, max_part_len: 16, timeout: Duration::from_secs(10) }
    }

    #[test]
    fn out_of_order_with_duplicate_completes_in_order() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(small());
        assert_eq!(r.push("smsc-a", ci(5, 3, 3), b"C", t0), Ok(Push::Incomplete { received: 1, total: 3 }));
        assert_eq!(r.push("smsc-a", ci(5, 3, 1), b"A", t0), Ok(Push::Incomplete { received: 2, total: 3 }));
        assert_eq!(r.push("smsc-a", ci(5, 3, 1), b"X", t0), Ok(Push::Duplicate));
        assert_eq!(r.bytes_held(), 2);
        let done = r.push("smsc-a", ci(5, 3, 2), b"B", t0).unwrap();
        let Push::Complete(m) = done else { panic!("not complete: {done:?}") };
        assert_eq!(m.key, "smsc-a");
        assert_eq!(m.reference, 5);
        assert_eq!(m.parts, vec![b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]);
        let mut out = [0u8; 3];
        assert_eq!(m.concat_into(&mut out), Some(3));
        assert_eq!(&out, b"ABC");
        assert_eq!(m.concat_into(&mut out[..2]), None);
        assert!(r.is_empty());
        assert_eq!(r.bytes_held(), 0);
    }

    #[test]
    fn keys_scope_references() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(small());
        r.push(1u32, ci(9, 2, 1), b"a1", t0).unwrap();
        r.push(2u32, ci(9, 2, 2), b"b2", t0).unwrap();
        assert_eq!(r.len(), 2);
        let Ok(Push::Complete(m)) = r.push(1u32, ci(9, 2, 2), b"a2", t0) else { panic!() };
        assert_eq!(m.parts.concat(), b"a1a2");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn late_duplicate_after_completion_starts_over_and_expires() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(small());
        r.push(0u8, ci(4, 2, 1), b"a", t0).unwrap();
        assert!(matches!(r.push(0u8, ci(4, 2, 2), b"b", t0), Ok(Push::Complete(_))));
        assert_eq!(r.push(0u8, ci(4, 2, 2), b"b", t0), Ok(Push::Incomplete { received: 1, total: 2 }));
        let e = r.poll_expired(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(e.missing().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn single_part_completes_at_once() {
        let mut r = Reassembler::new(small());
        let Ok(Push::Complete(m)) = r.push(0u8, ci(1, 1, 1), b"solo", Instant::now()) else { panic!() };
        assert_eq!(m.parts, vec![b"solo".to_vec()]);
        assert!(r.is_empty());
    }

    #[test]
    fn missing_part_times_out_on_caller_clock() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(small());
        r.push(7u8, ci(1, 3, 1), b"one", t0).unwrap();
        r.push(7u8, ci(2, 2, 2), b"x", t0 + Duration::from_secs(3)).unwrap();
        r.push(7u8, ci(1, 3, 3), b"three", t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(r.next_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(r.poll_expired(t0 + Duration::from_secs(9)), None);
        let e = r.poll_expired(t0 + Duration::from_secs(20)).unwrap();
        assert_eq!((e.key, e.reference), (7, 1));
        assert_eq!(e.missing().collect::<Vec<_>>(), vec![2]);
        assert_eq!(e.parts[0].as_deref(), Some(&b"one"[..]));
        let e = r.poll_expired(t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(e.reference, 2);
        assert_eq!(e.missing().collect::<Vec<_>>(), vec![1]);
        assert_eq!(r.poll_expired(t0 + Duration::from_secs(20)), None);
        assert_eq!(r.next_timeout(), None);
        assert_eq!(r.bytes_held(), 0);
    }

    #[test]
    fn bounded_with_specific_errors() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(small());
        r.push(0u8, ci(1, 2, 1), b"a", t0).unwrap();
        r.push(0u8, ci(2, 2, 1), b"b", t0).unwrap();
        assert_eq!(r.push(0u8, ci(3, 2, 1), b"c", t0), Err(ReassemblyError::TooManyMessages { max: 2 }));
        // Parts of pending messages are still taken.
        assert!(matches!(r.push(0u8, ci(1, 2, 2), b"a", t0), Ok(Push::Complete(_))));
        assert_eq!(r.push(0u8, ci(3, 2, 1), &[0u8; 17], t0), Err(ReassemblyError::PartTooLarge { len: 17, max: 16 }));
        assert_eq!(r.push(0u8, ci(2, 3, 2), b"x", t0), Err(ReassemblyError::TotalMismatch { expected: 2, got: 3 }));
        assert_eq!(
            r.push(0u8, ci(2, 2, 0), b"x", t0),
            Err(ReassemblyError::Concat(ConcatError::SeqOutOfRange { seq: 0, total: 2 }))
        );
        assert_eq!(r.push(0u8, ci(2, 0, 1), b"x", t0), Err(ReassemblyError::Concat(ConcatError::ZeroTotal)));
        let mut r = Reassembler::new(ReassemblyLimits { max_bytes: 20, ..small() });
        r.push(0u8, ci(1, 3, 1), &[0u8; 16], t0).unwrap();
        assert_eq!(r.push(0u8, ci(1, 3, 2), &[0u8; 5], t0), Err(ReassemblyError::TooManyBytes { max: 20 }));
        assert_eq!(r.bytes_held(), 16);
    }

    proptest! {
        #[test]
        fn segment_then_reassemble_in_any_order(
            text in "[a-zA-Z0-9 €\\[\\]ЖжΩ😀]{0,600}",
            reference in any::<u16>(),
            method in proptest::sample::select(vec![Concatenation::Udh8, Concatenation::Udh16, Concatenation::Sar]),
            seed in any::<u64>(),
        ) {
            let enc = crate::wire::sms::choose_encoding(&text);
            let mut buf = vec![0u8; 4096];
            let plan = SegmentPlan::new(&text, enc, method, reference, &mut buf).unwrap();
            let mut parts: Vec<_> = plan.segments().collect();
            // Deterministic shuffle, plus one duplicate.
            let mut s = seed | 1;
            for i in (1..parts.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                parts.swap(i, (s % (i as u64 + 1)) as usize);
            }
            if plan.count() > 1 {
                parts.insert(1, parts[0]);
            }
            let mut r = Reassembler::new(ReassemblyLimits::default());
            let t0 = Instant::now();
            let mut whole = None;
            for p in parts {
                let info = p.concat.unwrap_or(ConcatInfo { reference, total: 1, seq: 1, ref_16bit: true });
                match r.push("k", info, p.payload, t0).unwrap() {
                    Push::Complete(m) => { prop_assert!(whole.is_none()); whole = Some(m); }
                    Push::Incomplete { .. } | Push::Duplicate => {}
                }
            }
            let m = whole.unwrap();
            let joined = m.parts.concat();
            prop_assert_eq!(&joined[..], plan.encoded());
            let mut out = vec![0u8; 8192];
            let n = enc.decode(&joined, &mut out).unwrap();
            prop_assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), text.as_str());
            prop_assert!(r.is_empty());
        }
    }
}
