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
