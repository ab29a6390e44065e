//! Who may hold an SMPP connection to iwf, decided as early as possible: a peer that
//! failed to bind too often is refused at its SYN for a while ([`BindBackoff`]), and
//! connections that have not bound yet are capped for the port as a whole
//! ([`UnboundCap`]), so a stranger cannot hold the sockets legacy systems need.
//!
//! Both are shared by every worker of a port and lock-free: a SYN is answered on the
//! packet path. Addresses are placed by a hash keyed at start (std's `RandomState`,
//! SipHash with random keys), so nobody can choose an address that lands where a
//! legacy system's entry is.
//!
//! ```text
//!  entry (u64):  peer IPv4 (32) | failures (8) | since, seconds (24)
//!               failures < threshold: counting since the first failure of the window
//!               failures = threshold: refused since `since`, for the back-off period
//! ```
use crate::control::config::BackoffPolicy;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots probed from an address's home slot before it is left untracked.
const PROBE: usize = 4;
/// Seconds are kept in 24 bits (194 days); ages are computed modulo that.
const SECONDS_MASK: u32 = 0x00FF_FFFF;

/// Failed binds per peer address, and the addresses refused for a back-off period.
#[derive(Debug)]
pub struct BindBackoff {
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    policy: BackoffPolicy,
}

fn pack(ip: Ipv4Addr, failures: u8, since: u32) -> u64 {
    (u64::from(u32::from(ip)) << 32) | (u64::from(failures) << 24) | u64::from(since & SECONDS_MASK)
}

fn unpack(e: u64) -> (u32, u8, u32) {
    ((e >> 32) as u32, (e >> 24) as u8, (e as u32) & SECONDS_MASK)
}

fn age(now: u32, since: u32) -> u32 {
    now.wrapping_sub(since) & SECONDS_MASK
}

impl BindBackoff {
    /// A table of `slots` addresses (rounded up to a power of two, at least 64).
    pub fn new(slots: usize, policy: BackoffPolicy) -> BindBackoff {
        let n = slots.max(64).next_power_of_two();
        BindBackoff {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            policy: BackoffPolicy { failures: policy.failures.max(1), ..policy },
        }
    }

    /// The policy.
    pub fn policy(&self) -> BackoffPolicy {
        self.policy
    }

    fn home(&self, ip: Ipv4Addr) -> usize {
        (self.hasher.hash_one(u32::from(ip)) as usize) & (self.slots.len() - 1)
    }

    fn probe(&self, ip: Ipv4Addr) -> impl Iterator<Item = &AtomicU64> {
        let home = self.home(ip);
        let mask = self.slots.len() - 1;
        (0..PROBE).filter_map(move |i| self.slots.get((home + i) & mask))
    }

    /// Whether an entry no longer says anything (its window or back-off is over).
    fn stale(&self, e: u64, now: u32) -> bool {
        let (ip, failures, since) = unpack(e);
        if ip == 0 {
            return true;
        }
        let span = if failures >= self.policy.failures { self.policy.backoff_s } else { self.policy.window_s };
        age(now, since) >= span
    }

    /// Whether `ip` is refused now (`now_s`: seconds on any steady clock).
    pub fn refused(&self, ip: Ipv4Addr, now_s: u64) -> bool {
        let now = now_s as u32;
        self.probe(ip).any(|slot| {
            let e = slot.load(Ordering::Acquire);
            let (who, failures, since) = unpack(e);
            who == u32::from(ip) && failures >= self.policy.failures && age(now, since) < self.policy.backoff_s
        })
    }

    /// A bind from `ip` failed; `true` when this failure starts its back-off.
    pub fn failed(&self, ip: Ipv4Addr, now_s: u64) -> bool {
        let now = now_s as u32;
        // Its own entry first, else the first slot that holds nothing live.
        let slot = self
            .probe(ip)
            .find(|s| unpack(s.load(Ordering::Acquire)).0 == u32::from(ip))
            .or_else(|| self.probe(ip).find(|s| self.stale(s.load(Ordering::Acquire), now)));
        let Some(slot) = slot else { return false };
        let mut started = false;
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
            started = false;
            let (who, failures, since) = unpack(e);
            if who != u32::from(ip) || self.stale(e, now) {
                // Another address took the slot meanwhile and is live: leave it be.
                if who != u32::from(ip) && !self.stale(e, now) {
                    return None;
                }
                started = self.policy.failures == 1;
                return Some(pack(ip, 1, now));
            }
            if failures >= self.policy.failures {
                return None; // refused already: the back-off runs from its start
            }
            let n = failures + 1;
            if n >= self.policy.failures {
                started = true;
                return Some(pack(ip, self.policy.failures, now));
            }
            Some(pack(ip, n, since))
        });
        started
    }

    /// A bind from `ip` succeeded: its failures are forgotten.
    pub fn bound(&self, ip: Ipv4Addr) {
        for slot in self.probe(ip) {
            let _ =
                slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| (unpack(e).0 == u32::from(ip)).then_some(0));
        }
    }
}

/// Connections that have not bound yet, on a port as a whole, at most `max`.
#[derive(Debug)]
pub struct UnboundCap {
    held: AtomicU32,
    max: u32,
}

impl UnboundCap {
    /// At most `max` unbound connections.
    pub fn new(max: usize) -> UnboundCap {
        UnboundCap { held: AtomicU32::new(0), max: u32::try_from(max).unwrap_or(u32::MAX) }
    }

    /// Takes one; `false` when `max` are held.
    pub fn acquire(&self) -> bool {
        self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    /// Gives one back (the connection bound or closed).
    pub fn release(&self) {
        let _ = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Held now.
    pub fn held(&self) -> u32 {
        self.held.load(Ordering::Acquire)
    }
}

/// What a port's SMPP server shares between its workers to decide who may connect.
#[derive(Debug)]
pub struct BindGuard {
    /// Failed binds and back-offs per address.
    pub backoff: BindBackoff,
    /// Unbound connections on the port.
    pub unbound: UnboundCap,
    /// Answer each bind refusal with its own status (unknown system_id, wrong
    /// password, ...) instead of `ESME_RBINDFAIL` for all: for lab debugging only,
    /// since it tells a stranger which system_ids exist.
    pub specific_bind_errors: bool,
}

impl BindGuard {
    /// A guard with the policy, `max_unbound` unbound connections and room to track
    /// `slots` addresses.
    pub fn new(policy: BackoffPolicy, max_unbound: usize, slots: usize, specific_bind_errors: bool) -> BindGuard {
        BindGuard {
            backoff: BindBackoff::new(slots, policy),
            unbound: UnboundCap::new(max_unbound),
            specific_bind_errors,
        }
    }
}

impl Default for BindGuard {
    fn default() -> Self {
        BindGuard::new(BackoffPolicy::default(), 64, 4096, false)
    }
}

/// Whether `ip` lies in one of `cidrs`; an empty list answers `empty`.
pub fn in_cidrs(cidrs: &[(Ipv4Addr, u8)], ip: Ipv4Addr, empty: bool) -> bool {
    if cidrs.is_empty() {
        return empty;
    }
    cidrs.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
        u32::from(ip) & mask == u32::from(net) & mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 9);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    #[test]
    fn five_failures_in_a_minute_start_a_minute_of_refusal() {
        let b = BindBackoff::new(64, BackoffPolicy::default());
        for t in 0..4 {
            assert!(!b.failed(A, 1000 + t));
            assert!(!b.refused(A, 1000 + t));
        }
        assert!(b.failed(A, 1010), "the fifth failure starts the back-off");
        assert!(b.refused(A, 1010));
        assert!(b.refused(A, 1069));
        assert!(!b.failed(A, 1030), "failures while refused do not extend it");
        assert!(!b.refused(A, 1070), "over after 60 s");
        assert!(!b.refused(B, 1010), "other addresses are not touched");
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_trip_it() {
        let b = BindBackoff::new(64, BackoffPolicy::default());
        for i in 0..20 {
            assert!(!b.failed(A, 1000 + i * 20), "failure {i}");
            if i % 4 == 3 {
                // A mistyped password now and then, across minutes.
                assert!(!b.refused(A, 1000 + i * 20));
            }
        }
        // Two mistakes, then the right password: the count starts over.
        let b = BindBackoff::new(64, BackoffPolicy::default());
        for t in 0..4 {
            b.failed(B, 100 + t);
        }
        b.bound(B);
        assert!(!b.failed(B, 105) && !b.refused(B, 105));
    }

    #[test]
    fn a_full_neighbourhood_leaves_the_newcomer_untracked_not_others_refused() {
        // With 64 slots and a 4-slot probe, many addresses overflow some homes.
        let b = BindBackoff::new(64, BackoffPolicy { failures: 1, window_s: 60, backoff_s: 60 });
        let mut refused = 0;
        for i in 1..=1000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            if b.failed(ip, 10) {
                refused += 1;
                assert!(b.refused(ip, 10));
            }
        }
        assert!((64..1000).contains(&refused), "{refused}");
        assert!(!b.refused(B, 10));
    }

    #[test]
    fn the_unbound_cap_holds_across_threads() {
        let cap = std::sync::Arc::new(UnboundCap::new(10));
        let got: u32 = (0..4)
            .map(|_| {
                let cap = std::sync::Arc::clone(&cap);
                std::thread::spawn(move || (0..100).filter(|_| cap.acquire()).count() as u32)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!((got, cap.held()), (10, 10));
        cap.release();
        assert!(cap.acquire() && !cap.acquire());
        for _ in 0..20 {
            cap.release();
        }
        assert_eq!(cap.held(), 0);
    }
}
