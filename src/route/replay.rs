//! The notifications relayed or being relayed, so a replayed IMDN is relayed at most
//! once within a window (1 h by default): each `(tag, notification)` is remembered as
//! one 64-bit word in a fixed table every core shares, without a lock.
//!
//! ```text
//!  word (u64):  fingerprint (39 bits) | relayed (1 bit) | minute first seen (24 bits)
//!               0 = free
//!  two buckets of 8 slots (one cache line each), chosen by a keyed 128-bit hash;
//!  a notification lives in the one that had room, the emptier one
//! ```
//!
//! A notification is remembered from its first arrival, and marked relayed once the
//! next hop took it ([`ReplayGuard::relayed`]). A copy arriving in between is a
//! resend of a core that stopped waiting (Timer F, or a failover and back): it is not
//! answered 200, as the first copy may still fail or die with its box, and the 200
//! would acknowledge a receipt nobody holds ([`Admission::InFlight`]). A relay not done
//! after two minute stamps (61 to 120 s) is taken as lost and the next copy is relayed:
//! a receipt held up longer than that (a legacy system throttling for minutes) may go
//! more than once, never zero times.
//!
//! The fingerprint is 39 bits of a keyed SipHash of the notification, its lowest bit
//! always set (the key is random per process), so two notifications share one with
//! odds of 2^-38 per slot looked at, and nobody outside can aim at one. A slot whose
//! minute is older than the window is free again. Memory is 8 octets a slot, fixed at
//! start: two slots per notification a window holds, 16 octets each. With two choices
//! of bucket at that load the table takes the capacity it was made for without refusing
//! one (one linear probe of 8 slots at 1.25 slots each refused the first at a fifth of
//! its capacity, and one in twenty at capacity). When both buckets are live the table
//! is full for that notification: the caller refuses it (503), never relays it
//! unremembered.
use core::hash::Hasher;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots of a bucket: 64 octets, one cache line.
const BUCKET: usize = 8;
const MINUTE_BITS: u32 = 24;
const MINUTE_MASK: u64 = (1 << MINUTE_BITS) - 1;
/// Set once the notification's relay succeeded.
const RELAYED: u64 = 1 << MINUTE_BITS;
/// Minutes (by the minute stamps: 61 to 120 s) after which a notification still not
/// relayed counts as a relay that was lost, not one in flight: an SMPP response times
/// out in 30 s, a store commit or a cluster publish in seconds; only a receipt the
/// legacy system keeps throttling, or one waiting in a lane for a bind, takes longer.
const STALE_IN_FLIGHT_MINUTES: u64 = 2;
/// Where the fingerprint starts.
const FINGERPRINT_SHIFT: u32 = MINUTE_BITS + 1;

/// What [`ReplayGuard::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First seen within the window: relay it, then mark it [`ReplayGuard::relayed`]
    /// once the next hop took it, or [`ReplayGuard::forget`] it if the relay failed (so
    /// the sender's retry is relayed). Until one of the two, a copy is
    /// [`Admission::InFlight`].
    Fresh(Seen),
    /// Relayed within the window: a replay.
    Replay,
    /// Seen, its relay not yet done: a resend while the first copy is on its way (to
    /// be refused for now; the first's outcome decides what a later resend gets).
    InFlight,
    /// No room to remember it: refuse it for now.
    Full,
}

/// A remembered notification, to mark relayed when its relay succeeded, or to forget
/// when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    slot: u32,
    word: u64,
}

/// The shared table (see the module documentation).
#[derive(Debug)]
pub struct ReplayGuard {
    slots: Box<[AtomicU64]>,
    key: (u64, u64),
    window_minutes: u64,
}

impl ReplayGuard {
    /// Room for about `capacity` notifications per window of `window_minutes`.
    pub fn new(capacity: usize, window_minutes: u32) -> ReplayGuard {
        let n = capacity.saturating_mul(2).max(BUCKET * 8).div_ceil(BUCKET) * BUCKET;
        let key = {
            use std::hash::BuildHasher;
            let s = std::collections::hash_map::RandomState::new();
            (s.hash_one(1u8), s.hash_one(2u8))
        };
        ReplayGuard {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            key,
            window_minutes: u64::from(window_minutes.max(1)),
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Live entries (a scan: for metrics, not the packet path).
    pub fn len(&self, now_unix: u64) -> usize {
        let now = now_unix / 60;
        self.slots.iter().filter(|s| self.live(s.load(Ordering::Relaxed), now)).count()
    }

    /// Whether the table remembers nothing live.
    pub fn is_empty(&self, now_unix: u64) -> bool {
        self.len(now_unix) == 0
    }

    fn live(&self, word: u64, now_minute: u64) -> bool {
        word != 0 && (now_minute & MINUTE_MASK).wrapping_sub(word & MINUTE_MASK) & MINUTE_MASK < self.window_minutes
    }

    /// A keyed 128-bit hash of `notification`: the fingerprint from one half, the two
    /// buckets from the other.
    fn hash(&self, notification: &[u8]) -> (u64, u64) {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(notification);
        let h = h.finish128();
        (h.h1, h.h2)
    }

    /// Records `notification` (the tag and the kind of notification, as bytes) at
    /// `now_unix`, or says it was seen within the window.
    pub fn admit(&self, notification: &[u8], now_unix: u64) -> Admission {
        let (place, fp) = self.hash(notification);
        let fingerprint = (fp >> FINGERPRINT_SHIFT) | 1; // never 0: 0 marks a free slot
        let now = now_unix / 60;
        let word = (fingerprint << FINGERPRINT_SHIFT) | (now & MINUTE_MASK);
        let buckets = (self.slots.len() / BUCKET) as u64;
        let first = (place % buckets) as usize * BUCKET;
        let second = ((place >> 32) % buckets) as usize * BUCKET;
        'retry: for _ in 0..4 {
            // Both buckets are looked at whole (a notification may sit in either); the
            // free slot goes in the emptier one.
            let mut free: [Option<(usize, u64)>; 2] = [None, None];
            let mut live = [0usize; 2];
            for (b, start) in [first, second].into_iter().enumerate() {
                for at in start..start + BUCKET {
                    let Some(slot) = self.slots.get(at) else { continue };
                    let w = slot.load(Ordering::Acquire);
                    if self.live(w, now) {
                        if w >> FINGERPRINT_SHIFT == fingerprint {
                            if w & RELAYED != 0 {
                                return Admission::Replay;
                            }
                            if (now.wrapping_sub(w) & MINUTE_MASK) < STALE_IN_FLIGHT_MINUTES {
                                return Admission::InFlight;
                            }
                            // A relay not done after two minute stamps is taken as
                            // lost: this copy is relayed (if the first still
                            // arrives, the receipt goes twice; it is never lost).
                            if slot.compare_exchange(w, word, Ordering::AcqRel, Ordering::Acquire).is_err() {
                                continue 'retry;
                            }
                            return Admission::Fresh(Seen { slot: at as u32, word });
                        }
                        live[b] += 1;
                    } else if free[b].is_none() {
                        free[b] = Some((at, w));
                    }
                }
            }
            let pick = if live[1] < live[0] { [free[1], free[0]] } else { free };
            let Some((at, old)) = pick[0].or(pick[1]) else { return Admission::Full };
            let Some(slot) = self.slots.get(at) else { return Admission::Full };
            if slot.compare_exchange(old, word, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // Another core took that slot meanwhile (perhaps with this very
                // notification): look again.
                continue 'retry;
            }
            return Admission::Fresh(Seen { slot: at as u32, word });
        }
        Admission::Full
    }

    /// Marks a notification relayed: its next arrivals within the window are replays.
    pub fn relayed(&self, seen: Seen) {
        if let Some(slot) = self.slots.get(seen.slot as usize) {
            let _ = slot.compare_exchange(seen.word, seen.word | RELAYED, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Forgets a notification whose relay failed, so that its next arrival is relayed.
    pub fn forget(&self, seen: Seen) {
        if let Some(slot) = self.slots.get(seen.slot as usize) {
            let _ = slot.compare_exchange(seen.word, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    /// Admits `notification` at `unix` and marks it relayed at once.
    fn relay(g: &ReplayGuard, notification: &[u8], unix: u64) -> Admission {
        let a = g.admit(notification, unix);
        if let Admission::Fresh(seen) = a {
            g.relayed(seen);
        }
        a
    }

    #[test]
    fn a_notification_passes_once_per_window() {
        let g = ReplayGuard::new(1000, 60);
        assert!(matches!(relay(&g, b"tag-a/delivery", T0), Admission::Fresh(_)));
        assert_eq!(g.admit(b"tag-a/delivery", T0 + 10), Admission::Replay);
        assert_eq!(g.admit(b"tag-a/delivery", T0 + 59 * 60), Admission::Replay);
        // Another notification of the same tag is its own.
        assert!(matches!(relay(&g, b"tag-a/display", T0 + 10), Admission::Fresh(_)));
        // After the window it is news again.
        assert!(matches!(g.admit(b"tag-a/delivery", T0 + 61 * 60), Admission::Fresh(_)));
        assert_eq!(g.len(T0 + 61 * 60), 1, "the display, seen 61 minutes ago, is forgotten");
    }

    #[test]
    fn a_copy_while_the_first_is_relayed_is_in_flight_until_it_is_done() {
        let g = ReplayGuard::new(1000, 60);
        let Admission::Fresh(seen) = g.admit(b"tag-c/delivery", T0) else { panic!() };
        assert_eq!(g.admit(b"tag-c/delivery", T0 + 1), Admission::InFlight);
        assert_eq!(g.admit(b"tag-c/delivery", T0 + 2), Admission::InFlight);
        g.relayed(seen);
        assert_eq!(g.admit(b"tag-c/delivery", T0 + 3), Admission::Replay);
        // A relay that never ends does not keep its notification out for the window:
        // after two minute stamps a copy is relayed instead.
        let Admission::Fresh(lost) = g.admit(b"tag-d/delivery", T0) else { panic!() };
        assert_eq!(g.admit(b"tag-d/delivery", T0 + 60), Admission::InFlight);
        let Admission::Fresh(taken) = g.admit(b"tag-d/delivery", T0 + 121) else { panic!("a stale relay") };
        g.relayed(lost); // the lost relay's late end changes nothing
        assert_eq!(g.admit(b"tag-d/delivery", T0 + 122), Admission::InFlight);
        g.relayed(taken);
        assert_eq!(g.admit(b"tag-d/delivery", T0 + 123), Admission::Replay);
        assert_eq!(g.len(T0 + 123), 2, "one slot each");
        // Still remembered for the window, and gone after it.
        assert_eq!(g.admit(b"tag-c/delivery", T0 + 59 * 60), Admission::Replay);
        assert!(matches!(g.admit(b"tag-c/delivery", T0 + 61 * 60), Admission::Fresh(_)));
    }

    #[test]
    fn a_failed_relay_is_forgotten_so_its_retry_passes() {
        let g = ReplayGuard::new(1000, 60);
        let Admission::Fresh(seen) = g.admit(b"tag-b/delivery", T0) else { panic!() };
        g.forget(seen);
        assert!(matches!(g.admit(b"tag-b/delivery", T0 + 1), Admission::Fresh(_)));
    }

    #[test]
    fn a_full_table_refuses_rather_than_forgets() {
        let g = ReplayGuard::new(10, 60);
        let cap = g.capacity();
        let mut fresh = 0;
        let mut full = 0;
        for i in 0..cap * 2 {
            match relay(&g, format!("tag-{i}").as_bytes(), T0) {
                Admission::Fresh(_) => fresh += 1,
                Admission::Full => full += 1,
                Admission::Replay | Admission::InFlight => panic!("distinct notifications are not replays"),
            }
        }
        assert!(fresh <= cap && full >= cap, "{fresh} fresh, {full} refused of {}", cap * 2);
        // Everything it took is still known.
        let replays = (0..cap * 2).filter(|i| g.admit(format!("tag-{i}").as_bytes(), T0) == Admission::Replay).count();
        assert_eq!(replays, fresh);
        // The window passes: room again.
        assert!(matches!(g.admit(b"tag-new", T0 + 3600 + 60), Admission::Fresh(_)));
    }

    #[test]
    fn cores_racing_on_one_notification_relay_it_once() {
        let g = std::sync::Arc::new(ReplayGuard::new(1 << 16, 60));
        for round in 0..200 {
            let key = format!("race-{round}");
            let fresh: usize = (0..4)
                .map(|_| {
                    let (g, key) = (std::sync::Arc::clone(&g), key.clone());
                    std::thread::spawn(move || usize::from(matches!(g.admit(key.as_bytes(), T0), Admission::Fresh(_))))
                })
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(fresh, 1, "round {round}");
        }
    }

    #[test]
    fn the_table_takes_the_capacity_it_was_made_for() {
        for capacity in [10_000usize, 1_000_000] {
            let g = ReplayGuard::new(capacity, 60);
            let refused = (0..capacity as u64).filter(|i| relay(&g, &i.to_le_bytes(), T0) == Admission::Full).count();
            assert_eq!(refused, 0, "{refused} of {capacity} notifications refused below capacity");
            let replays = (0..capacity as u64).filter(|i| g.admit(&i.to_le_bytes(), T0) == Admission::Replay).count();
            assert_eq!(replays, capacity, "each is remembered");
        }
    }

    #[test]
    fn memory_per_notification() {
        let g = ReplayGuard::new(1_000_000, 60);
        let per = (g.capacity() * 8) as f64 / 1_000_000.0;
        assert!(per <= 16.0, "{per} octets per remembered notification");
    }
}
