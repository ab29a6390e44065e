//! The bounded transaction table both transaction kinds share: fixed-capacity
//! slots allocated once, a keyed open-addressing index (linear probing,
//! backward-shift deletion, no tombstones) and an indexed binary min-heap of
//! per-slot deadlines. Nothing here allocates after [`Table::new`].

use siphasher::sip::SipHasher13;

/// Longest transaction key (branch, sent-by, method and separators).
pub(crate) const KEY_MAX: usize = 320;

const NONE: u32 = u32::MAX;

/// One slot's bookkeeping; `state` is `None` while the slot is free.
#[derive(Debug)]
struct Meta<S> {
    generation: u32,
    hash: u64,
    key_len: u16,
    state: Option<S>,
}

/// A slot reference that goes stale when the slot is freed and reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotRef {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// Fixed-capacity table of transactions with per-slot byte storage.
#[derive(Debug)]
pub(crate) struct Table<S> {
    meta: Vec<Meta<S>>,
    keys: Vec<u8>,
    data: Vec<u8>,
    data_len: usize,
    free: Vec<u32>,
    index: Vec<u32>,
    mask: usize,
    timers: TimerHeap,
    hasher: SipHasher13,
    len: usize,
}

impl<S> Table<S> {
    /// A table of `capacity` slots, each with `data_len` bytes of storage.
    pub(crate) fn new(capacity: usize, data_len: usize, secret: [u64; 2]) -> Self {
        let capacity = capacity.clamp(1, (u32::MAX / 4) as usize);
        let buckets = capacity.saturating_mul(2).next_power_of_two();
        Table {
            meta: (0..capacity).map(|_| Meta { generation: 0, hash: 0, key_len: 0, state: None }).collect(),
            keys: vec![0; capacity.saturating_mul(KEY_MAX)],
            data: vec![0; capacity.saturating_mul(data_len)],
            data_len,
            // Popped from the end: slot 0 is used first.
            free: (0..capacity as u32).rev().collect(),
            index: vec![NONE; buckets],
            mask: buckets - 1,
            timers: TimerHeap::new(capacity),
            hasher: SipHasher13::new_with_keys(secret[0], secret[1]),
            len: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.meta.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }

    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    fn key_of(&self, slot: u32) -> &[u8] {
        let m = match self.meta.get(slot as usize) {
            Some(m) => m,
            None => return &[],
        };
        let start = slot as usize * KEY_MAX;
        self.keys.get(start..start + m.key_len as usize).unwrap_or(&[])
    }

    /// The live slot holding `key`.
    pub(crate) fn find(&self, key: &[u8]) -> Option<SlotRef> {
        let hash = self.hash(key);
        let mut i = hash as usize & self.mask;
        loop {
            let s = *self.index.get(i)?;
            if s == NONE {
                return None;
            }
            let m = self.meta.get(s as usize)?;
            if m.hash == hash && self.key_of(s) == key {
                return Some(SlotRef { slot: s, generation: m.generation });
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Take a free slot for `key` (which must not be present: see
    /// [`Table::find`]). `None` when the table is full or the key too long.
    pub(crate) fn insert(&mut self, key: &[u8], state: S) -> Option<SlotRef> {
        if key.len() > KEY_MAX {
            return None;
        }
        let slot = self.free.pop()?;
        let hash = self.hash(key);
        let start = slot as usize * KEY_MAX;
        if let Some(dst) = self.keys.get_mut(start..start + key.len()) {
            dst.copy_from_slice(key);
        }
        let m = self.meta.get_mut(slot as usize)?;
        m.hash = hash;
        m.key_len = key.len() as u16;
        m.state = Some(state);
        let generation = m.generation;
        let mut i = hash as usize & self.mask;
        // At most half the buckets are used, so an empty one exists.
        while let Some(b) = self.index.get_mut(i) {
            if *b == NONE {
                *b = slot;
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.len += 1;
        Some(SlotRef { slot, generation })
    }

    /// Free a slot: unindex it, cancel its timer, bump its generation.
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some(m) = self.meta.get_mut(slot as usize) else {
            return;
        };
        if m.state.take().is_none() {
            return;
        }
        m.generation = m.generation.wrapping_add(1);
        let hash = m.hash;
        self.timers.remove(slot);
        self.free.push(slot);
        self.len -= 1;
        // Find the bucket, then shift the following run back (Knuth 6.4 R).
        let mut i = hash as usize & self.mask;
        loop {
            match self.index.get(i) {
                Some(&s) if s == slot => break,
                Some(&NONE) | None => return,
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = match self.index.get(j) {
                Some(&s) if s != NONE => s,
                _ => break,
            };
            let home = self.meta.get(s as usize).map_or(0, |m| m.hash as usize) & self.mask;
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                if let Some(b) = self.index.get_mut(hole) {
                    *b = s;
                }
                hole = j;
            }
        }
        if let Some(b) = self.index.get_mut(hole) {
            *b = NONE;
        }
    }

    /// The state of a live slot whose generation matches.
    pub(crate) fn get(&self, r: SlotRef) -> Option<&S> {
        let m = self.meta.get(r.slot as usize)?;
        (m.generation == r.generation).then_some(())?;
        m.state.as_ref()
    }

    /// Mutable state of a live slot whose generation matches.
    pub(crate) fn get_mut(&mut self, r: SlotRef) -> Option<&mut S> {
        let m = self.meta.get_mut(r.slot as usize)?;
        (m.generation == r.generation).then_some(())?;
        m.state.as_mut()
    }

    /// State and storage of a live slot together.
    pub(crate) fn entry_mut(&mut self, r: SlotRef) -> Option<(&mut S, &mut [u8])> {
        let m = self.meta.get_mut(r.slot as usize)?;
        (m.generation == r.generation).then_some(())?;
        let start = r.slot as usize * self.data_len;
        let data = self.data.get_mut(start..start + self.data_len)?;
        Some((m.state.as_mut()?, data))
    }

    /// Storage of a slot (live or not).
    pub(crate) fn data(&self, slot: u32) -> &[u8] {
        let start = slot as usize * self.data_len;
        self.data.get(start..start + self.data_len).unwrap_or(&[])
    }

    /// The current generation of a slot.
    pub(crate) fn slot_ref(&self, slot: u32) -> Option<SlotRef> {
        let m = self.meta.get(slot as usize)?;
        m.state.as_ref()?;
        Some(SlotRef { slot, generation: m.generation })
    }

    /// Arm (or re-arm) the slot's one timer.
    pub(crate) fn set_timer(&mut self, slot: u32, at: u64) {
        self.timers.set(slot, at);
    }

    /// The earliest deadline and its slot.
    pub(crate) fn next_timer(&self) -> Option<(u64, u32)> {
        self.timers.peek()
    }
}

/// Indexed binary min-heap: each slot has at most one deadline, updates are
/// O(log n), capacity is fixed.
#[derive(Debug)]
struct TimerHeap {
    heap: Vec<u32>,
    pos: Vec<u32>,
    at: Vec<u64>,
}

impl TimerHeap {
    fn new(capacity: usize) -> Self {
        TimerHeap { heap: Vec::with_capacity(capacity), pos: vec![NONE; capacity], at: vec![0; capacity] }
    }

    fn key(&self, heap_index: usize) -> u64 {
        self.heap.get(heap_index).and_then(|&s| self.at.get(s as usize)).copied().unwrap_or(u64::MAX)
    }

    fn peek(&self) -> Option<(u64, u32)> {
        let &s = self.heap.first()?;
        Some((self.at.get(s as usize).copied().unwrap_or(u64::MAX), s))
    }

    fn set(&mut self, slot: u32, at: u64) {
        let Some(a) = self.at.get_mut(slot as usize) else {
            return;
        };
        *a = at;
        let p = self.pos.get(slot as usize).copied().unwrap_or(NONE);
        let i = if p == NONE {
            if self.heap.len() >= self.pos.len() {
                return;
            }
            self.heap.push(slot);
            let i = self.heap.len() - 1;
            if let Some(p) = self.pos.get_mut(slot as usize) {
                *p = i as u32;
            }
            i
        } else {
            p as usize
        };
        let i = self.sift_up(i);
        self.sift_down(i);
    }

    fn remove(&mut self, slot: u32) {
        let p = match self.pos.get(slot as usize) {
            Some(&p) if p != NONE => p as usize,
            _ => return,
        };
        let last = self.heap.len() - 1;
        self.swap(p, last);
        self.heap.pop();
        if let Some(x) = self.pos.get_mut(slot as usize) {
            *x = NONE;
        }
        if p < self.heap.len() {
            let i = self.sift_up(p);
            self.sift_down(i);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        for i in [a, b] {
            if let Some(&s) = self.heap.get(i) {
                if let Some(p) = self.pos.get_mut(s as usize) {
                    *p = i as u32;
                }
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(i) >= self.key(parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.key(l) < self.key(m) {
                m = l;
            }
            if r < self.heap.len() && self.key(r) < self.key(m) {
                m = r;
            }
            if m == i {
                return;
            }
            self.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insert_find_remove() {
        let mut t: Table<u32> = Table::new(4, 8, [1, 2]);
        let a = t.insert(b"a", 1).unwrap();
        let b = t.insert(b"b", 2).unwrap();
        assert_eq!(t.find(b"a"), Some(a));
        assert_eq!(t.find(b"b"), Some(b));
        assert_eq!(t.find(b"c"), None);
        t.remove(a.slot);
        assert_eq!(t.find(b"a"), None);
        assert_eq!(t.get(a), None, "stale generation");
        assert_eq!(t.get(b), Some(&2));
        assert_eq!(t.len(), 1);
        t.insert(b"c", 3).unwrap();
        t.insert(b"d", 4).unwrap();
        t.insert(b"e", 5).unwrap();
        assert_eq!(t.insert(b"f", 6), None, "full");
        assert_eq!(t.insert(&[b'x'; KEY_MAX + 1], 7), None, "key too long");
    }

    #[test]
    fn timers_in_deadline_order() {
        let mut t: Table<()> = Table::new(8, 0, [0, 0]);
        let refs: Vec<_> = (0..8u8).map(|i| t.insert(&[i], ()).unwrap()).collect();
        for (r, at) in refs.iter().zip([50u64, 10, 70, 30, 20, 80, 60, 40]) {
            t.set_timer(r.slot, at);
        }
        t.set_timer(refs[5].slot, 5); // re-arm earlier
        t.remove(refs[2].slot); // cancel 70
        let mut seen = Vec::new();
        while let Some((at, s)) = t.next_timer() {
            seen.push(at);
            t.remove(s);
        }
        assert_eq!(seen, [5, 10, 20, 30, 40, 50, 60]);
        assert_eq!(t.len(), 0);
    }

    proptest! {
        /// The table agrees with a model map under random inserts/removes
        /// (which exercises backward-shift deletion across probe runs).
        #[test]
        fn index_matches_model(ops in proptest::collection::vec((0u8..24, any::<bool>()), 0..400)) {
            let mut t: Table<u8> = Table::new(16, 0, [7, 9]);
            let mut model = std::collections::HashMap::new();
            for (k, ins) in ops {
                let key = [k, k ^ 0x5a];
                if ins {
                    if t.find(&key).is_none() {
                        if let Some(r) = t.insert(&key, k) {
                            model.insert(k, r);
                        } else {
                            prop_assert_eq!(model.len(), 16);
                        }
                    }
                } else if let Some(r) = model.remove(&k) {
                    t.remove(r.slot);
                }
                prop_assert_eq!(t.len(), model.len());
                for k2 in 0u8..24 {
                    let found = t.find(&[k2, k2 ^ 0x5a]);
                    prop_assert_eq!(found, model.get(&k2).copied());
                }
            }
        }
    }
}
