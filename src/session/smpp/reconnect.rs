//! When iwf, bound to an SMSC as an ESME, may open the next connection:
//! capped exponential back-off with jitter, and no rebind at all after the
//! SMSC refused iwf's credentials until the operator changes them
//! (a client refused for its credentials must not hammer the peer with rebinds).

use super::CloseReason;

/// Back-off limits of a [`Reconnect`], in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Delay after the first failure (before jitter).
    pub initial: u64,
    /// Cap on the delay (before jitter).
    pub max: u64,
}

impl Default for ReconnectConfig {
    /// 1 s doubling up to 60 s.
    fn default() -> Self {
        ReconnectConfig { initial: 1_000, max: 60_000 }
    }
}

/// The reconnect policy of one client session (iwf → SMSC).
///
/// The caller asks [`Reconnect::next_attempt`] when it may connect, reports
/// each outcome ([`Reconnect::connect_failed`], [`Reconnect::bound`],
/// [`Reconnect::closed`]) and calls [`Reconnect::reset`] when the operator
/// changed the credentials. After [`CloseReason::AuthRejected`] it answers
/// `None` for ever, whatever the clock says: the alarm counter of the session
/// ([`super::SessionCounters::auth_rejected`]) is what the operator sees.
///
/// The delay after the n-th failure in a row is `min(max, initial·2ⁿ⁻¹)`,
/// of which a random half is kept ("equal jitter": between d/2 and d), so
/// that the binds of several cores or restarted appliances spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnect {
    config: ReconnectConfig,
    failures: u32,
    next_at: u64,
    rng: u64,
    stopped: bool,
}

impl Reconnect {
    /// A policy allowing a first attempt at once. `seed` feeds the jitter
    /// (any value; give each session a different one).
    pub fn new(config: ReconnectConfig, seed: u64) -> Self {
        Reconnect {
            config,
            failures: 0,
            next_at: 0,
            // xorshift must not start at 0.
            rng: seed | 1,
            stopped: false,
        }
    }

    /// When the next connection may be opened: `now` or later, or `None`
    /// while stopped by an authentication rejection.
    pub fn next_attempt(&self, now: u64) -> Option<u64> {
        if self.stopped {
            None
        } else {
            Some(self.next_at.max(now))
        }
    }

    /// Whether a connection may be opened at `now`.
    pub fn may_attempt(&self, now: u64) -> bool {
        self.next_attempt(now) == Some(now)
    }

    /// Whether an authentication rejection stopped reconnecting.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Failures in a row since the last bind.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The TCP connection could not be opened (refused, timed out).
    pub fn connect_failed(&mut self, now: u64) {
        self.schedule(now);
    }

    /// The session bound: the back-off starts over.
    pub fn bound(&mut self) {
        self.failures = 0;
    }

    /// The session closed for `reason`: schedules the next attempt, or stops
    /// on [`CloseReason::AuthRejected`].
    pub fn closed(&mut self, now: u64, reason: CloseReason) {
        if let CloseReason::AuthRejected(_) = reason {
            self.stopped = true;
        } else {
            self.schedule(now);
        }
    }

    /// The operator changed the configuration: connect again at once.
    pub fn reset(&mut self) {
        self.stopped = false;
        self.failures = 0;
        self.next_at = 0;
    }

    fn schedule(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(63);
        let base = self.config.initial.max(1).saturating_mul(1u64 << shift).min(self.config.max.max(1));
        let half = base / 2;
        let jitter = self.next_random() % (base - half).saturating_add(1);
        self.next_at = now.saturating_add(half).saturating_add(jitter);
    }

    /// xorshift64*.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::smpp::CommandStatus;

    #[test]
    fn first_attempt_is_immediate() {
        let r = Reconnect::new(ReconnectConfig::default(), 7);
        assert_eq!(r.next_attempt(5), Some(5));
        assert!(r.may_attempt(5));
    }

    #[test]
    fn back_off_doubles_with_jitter_and_is_capped() {
        let cfg = ReconnectConfig { initial: 1_000, max: 8_000 };
        let mut r = Reconnect::new(cfg, 42);
        let mut now = 0;
        for n in 1..=8u32 {
            r.connect_failed(now);
            let at = r.next_attempt(now).unwrap();
            let base = (1_000u64 << (n - 1)).min(8_000);
            let delay = at - now;
            assert!(delay >= base / 2 && delay <= base, "failure {n}: delay {delay} outside [{}, {base}]", base / 2);
            assert!(!r.may_attempt(now + delay - 1) || delay == 0);
            assert!(r.may_attempt(at));
            now = at;
        }
        assert_eq!(r.failures(), 8);
        r.bound();
        r.closed(now, CloseReason::KeepAliveTimeout);
        let delay = r.next_attempt(now).unwrap() - now;
        assert!((500..=1_000).contains(&delay), "{delay}");
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let delays: Vec<u64> = (0..16u64)
            .map(|seed| {
                let mut r = Reconnect::new(ReconnectConfig::default(), seed * 0x9E37);
                r.connect_failed(0);
                r.next_attempt(0).unwrap()
            })
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|&d| d != first), "{delays:?}");
    }

    #[test]
    fn auth_rejection_stops_until_reset() {
        let mut r = Reconnect::new(ReconnectConfig::default(), 1);
        r.closed(10, CloseReason::AuthRejected(CommandStatus::ESME_RINVPASWD));
        assert!(r.is_stopped());
        for now in [10, 1_000, 3_600_000, u64::MAX] {
            assert_eq!(r.next_attempt(now), None);
            assert!(!r.may_attempt(now));
        }
        // Other failures do not resume it either.
        r.connect_failed(20);
        assert_eq!(r.next_attempt(u64::MAX), None);
        r.reset();
        assert_eq!(r.next_attempt(50), Some(50));
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut r = Reconnect::new(ReconnectConfig { initial: u64::MAX, max: u64::MAX }, 3);
        for _ in 0..100 {
            r.connect_failed(u64::MAX - 1);
        }
        assert!(r.next_attempt(0).is_some());
        let mut z = Reconnect::new(ReconnectConfig { initial: 0, max: 0 }, 0);
        z.connect_failed(0);
        assert!(z.next_attempt(0).unwrap() <= 1);
    }
}
