//! A small per-core ARP cache (RFC 826): a fixed array, no allocation, time passed in by
//! the caller in milliseconds.
//!
//! Each worker owns one per port, so no locks: a neighbour may be resolved once per core.
#![deny(unsafe_code)]

use smoltcp::wire::EthernetAddress;
use std::net::Ipv4Addr;

/// Entries per cache: a port's on-link peers are a handful of routers and servers.
pub const ENTRIES: usize = 16;
/// How long a learned neighbour is trusted, in milliseconds.
pub const LIFETIME_MS: u64 = 300_000;
/// The least time between two requests for the same address, in milliseconds.
pub const RETRY_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// A request went out at `sent_ms`; no answer yet.
    Pending {
        sent_ms: u64,
    },
    /// Resolved; valid until `expires_ms`.
    Resolved {
        mac: EthernetAddress,
        expires_ms: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: Ipv4Addr,
    state: State,
}

/// The neighbour table of one port on one core.
#[derive(Debug, Clone)]
pub struct ArpCache {
    entries: [Entry; ENTRIES],
}

impl Default for ArpCache {
    fn default() -> Self {
        ArpCache { entries: [Entry { ip: Ipv4Addr::UNSPECIFIED, state: State::Free }; ENTRIES] }
    }
}

impl ArpCache {
    /// An empty cache.
    pub fn new() -> ArpCache {
        ArpCache::default()
    }

    fn find(&self, ip: Ipv4Addr) -> Option<usize> {
        self.entries.iter().position(|e| e.state != State::Free && e.ip == ip)
    }

    /// The slot to reuse: a free one, else the one that expires first (pending first).
    fn victim(&self) -> usize {
        let mut best = 0;
        let mut best_key = u64::MAX;
        for (i, e) in self.entries.iter().enumerate() {
            let key = match e.state {
                State::Free => return i,
                State::Pending { sent_ms } => sent_ms / 2,
                State::Resolved { expires_ms, .. } => expires_ms,
            };
            if key < best_key {
                best_key = key;
                best = i;
            }
        }
        best
    }

    /// The MAC address of `ip`, if resolved and not expired.
    pub fn lookup(&self, ip: Ipv4Addr, now_ms: u64) -> Option<EthernetAddress> {
        let e = self.entries.get(self.find(ip)?)?;
        match e.state {
            State::Resolved { mac, expires_ms } if now_ms < expires_ms => Some(mac),
            _ => None,
        }
    }

    /// Records `ip` at `mac`. `create` says whether a new entry may be made (RFC 826:
    /// only when the packet was addressed to us); an existing entry is always refreshed.
    /// Returns whether the cache changed.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now_ms: u64, create: bool) -> bool {
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || !mac.is_unicast() {
            return false;
        }
        let slot = match self.find(ip) {
            Some(i) => i,
            None if create => self.victim(),
            None => return false,
        };
        match self.entries.get_mut(slot) {
            Some(e) => {
                *e = Entry { ip, state: State::Resolved { mac, expires_ms: now_ms.saturating_add(LIFETIME_MS) } };
                true
            }
            None => false,
        }
    }

    /// Whether a request for `ip` should go out now; if so, it is recorded as sent.
    /// False while `ip` is resolved or a request is younger than [`RETRY_MS`].
    pub fn request_due(&mut self, ip: Ipv4Addr, now_ms: u64) -> bool {
        if self.lookup(ip, now_ms).is_some() {
            return false;
        }
        let slot = match self.find(ip) {
            Some(i) => {
                if let Some(Entry { state: State::Pending { sent_ms }, .. }) = self.entries.get(i) {
                    if now_ms.saturating_sub(*sent_ms) < RETRY_MS {
                        return false;
                    }
                }
                i
            }
            None => self.victim(),
        };
        if let Some(e) = self.entries.get_mut(slot) {
            *e = Entry { ip, state: State::Pending { sent_ms: now_ms } };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    #[test]
    fn learns_only_when_addressed_then_expires() {
        let mut c = ArpCache::new();
        assert!(!c.learn(PEER, MAC, 0, false));
        assert_eq!(c.lookup(PEER, 0), None);
        assert!(c.learn(PEER, MAC, 10, true));
        assert_eq!(c.lookup(PEER, 11), Some(MAC));
        assert_eq!(c.lookup(PEER, 10 + LIFETIME_MS), None);
        // An existing entry is refreshed even by a packet not addressed to us.
        assert!(c.learn(PEER, MAC, LIFETIME_MS, false));
        assert_eq!(c.lookup(PEER, LIFETIME_MS + 1), Some(MAC));
    }

    #[test]
    fn refuses_broadcast_and_unspecified() {
        let mut c = ArpCache::new();
        assert!(!c.learn(Ipv4Addr::UNSPECIFIED, MAC, 0, true));
        assert!(!c.learn(PEER, EthernetAddress::BROADCAST, 0, true));
        assert!(!c.learn(Ipv4Addr::BROADCAST, MAC, 0, true));
    }

    #[test]
    fn requests_are_rate_limited() {
        let mut c = ArpCache::new();
        assert!(c.request_due(PEER, 0));
        assert!(!c.request_due(PEER, RETRY_MS - 1));
        assert!(c.request_due(PEER, RETRY_MS));
        c.learn(PEER, MAC, RETRY_MS + 1, false);
        assert!(!c.request_due(PEER, RETRY_MS + 2));
    }

    #[test]
    fn full_cache_evicts_the_oldest() {
        let mut c = ArpCache::new();
        for i in 0..ENTRIES as u8 {
            assert!(c.learn(Ipv4Addr::new(10, 0, 0, i), MAC, u64::from(i), true));
        }
        assert!(c.learn(Ipv4Addr::new(10, 0, 1, 0), MAC, 100, true));
        assert_eq!(c.lookup(Ipv4Addr::new(10, 0, 0, 0), 101), None);
        assert_eq!(c.lookup(Ipv4Addr::new(10, 0, 0, 1), 101), Some(MAC));
        assert_eq!(c.lookup(Ipv4Addr::new(10, 0, 1, 0), 101), Some(MAC));
    }
}

/// Frames waiting for their neighbour's ARP reply: a few per neighbour and a few
/// neighbours at once (like the kernel's queue of unresolved packets), each sent as soon
/// as its neighbour resolves and dropped, counted, when resolving takes longer than the
/// timeout. Without it the first datagram to a neighbour not yet (or no longer) in the
/// cache was lost, and a peer that does not retransmit never heard it.
#[derive(Debug)]
pub struct ArpHold<T> {
    held: Vec<(Ipv4Addr, u64, T)>,
    per_neighbour: usize,
    max: usize,
    timeout_ms: u64,
}

impl<T> ArpHold<T> {
    /// At most `per_neighbour` frames per neighbour and `max` in all, each for
    /// `timeout_ms`. Allocated here, once.
    pub fn new(per_neighbour: usize, max: usize, timeout_ms: u64) -> ArpHold<T> {
        ArpHold { held: Vec::with_capacity(max), per_neighbour, max, timeout_ms }
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `frame` for `neighbour` from `now_ms`; a full hold hands it back.
    pub fn hold(&mut self, neighbour: Ipv4Addr, now_ms: u64, frame: T) -> Result<(), T> {
        let for_it = self.held.iter().filter(|(n, _, _)| *n == neighbour).count();
        if for_it >= self.per_neighbour || self.held.len() >= self.max {
            return Err(frame);
        }
        self.held.push((neighbour, now_ms.saturating_add(self.timeout_ms), frame));
        Ok(())
    }

    /// Hands every frame whose neighbour `resolve` now knows to `send` (in the order
    /// held), and every one past its timeout to `expired`.
    pub fn release(
        &mut self,
        now_ms: u64,
        mut resolve: impl FnMut(Ipv4Addr) -> Option<EthernetAddress>,
        mut send: impl FnMut(EthernetAddress, T),
        mut expired: impl FnMut(T),
    ) {
        let mut i = 0;
        while i < self.held.len() {
            let Some(&(neighbour, deadline, _)) = self.held.get(i) else { break };
            if let Some(mac) = resolve(neighbour) {
                let (_, _, frame) = self.held.remove(i);
                send(mac, frame);
            } else if now_ms >= deadline {
                let (_, _, frame) = self.held.remove(i);
                expired(frame);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 9);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    #[test]
    fn held_frames_go_out_when_their_neighbour_resolves() {
        let mut h = ArpHold::new(3, 8, 3000);
        for f in 1..=3 {
            assert!(h.hold(A, 0, f).is_ok());
        }
        assert_eq!(h.hold(A, 0, 4), Err(4), "three per neighbour");
        assert!(h.hold(B, 0, 10).is_ok());
        let mut sent = Vec::new();
        let mut gone = Vec::new();
        // Nothing resolved yet: all stay.
        h.release(100, |_| None, |m, f| sent.push((m, f)), |f| gone.push(f));
        assert!(sent.is_empty() && gone.is_empty());
        // A answers: its frames leave in order; B's stays.
        h.release(200, |n| (n == A).then_some(MAC), |m, f| sent.push((m, f)), |f| gone.push(f));
        assert_eq!(sent, vec![(MAC, 1), (MAC, 2), (MAC, 3)]);
        assert_eq!(h.len(), 1);
        // B never answers: dropped at the timeout.
        h.release(3000, |_| None, |m, f| sent.push((m, f)), |f| gone.push(f));
        assert_eq!(gone, vec![10]);
        assert!(h.is_empty());
    }

    #[test]
    fn the_hold_is_bounded_overall() {
        let mut h = ArpHold::new(3, 4, 3000);
        let refused = (0..10u8).filter(|i| h.hold(Ipv4Addr::new(10, 0, 0, *i), 0, *i).is_err()).count();
        assert_eq!((h.len(), refused), (4, 6));
    }
}
