//! Whether each worker still polls: a heartbeat every worker writes as it loops, and
//! what became of a worker that ended (returned, or panicked with its message). The
//! control thread reads them: `/healthz` answers 503 naming a worker that stopped
//! polling for more than a second or died, and the log says why, once.
//!
//! A heartbeat is one relaxed store of a millisecond count on the worker's own cache
//! line; reading it takes no lock.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// A worker that is not well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// No heartbeat for this long (milliseconds).
    Stalled(u64),
    /// It panicked with this message.
    Panicked(String),
    /// It returned while iwf was not stopping.
    Exited,
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Stalled(ms) => write!(f, "stopped polling {ms} ms ago"),
            Trouble::Panicked(why) => write!(f, "panicked: {why}"),
            Trouble::Exited => f.write_str("exited"),
        }
    }
}

const RUNNING: u8 = 0;
const EXITED: u8 = 1;
const PANICKED: u8 = 2;

#[derive(Debug)]
#[repr(align(64))]
struct Beat {
    /// Milliseconds since [`Liveness`]'s epoch, plus one (0: not started).
    at: AtomicU64,
    state: AtomicU8,
    /// The panic's message, written once by the dying worker.
    panic: OnceLock<String>,
}

/// The heartbeats of every worker (one per queue).
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    beats: Vec<Beat>,
}

impl Liveness {
    /// Room for `workers` workers, none started.
    pub fn new(workers: usize) -> Liveness {
        Liveness {
            epoch: Instant::now(),
            beats: (0..workers)
                .map(|_| Beat { at: AtomicU64::new(0), state: AtomicU8::new(RUNNING), panic: OnceLock::new() })
                .collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Worker `worker` is polling (called from its loop).
    pub fn beat(&self, worker: usize) {
        if let Some(b) = self.beats.get(worker) {
            b.at.store(self.now_ms().saturating_add(1), Ordering::Relaxed);
        }
    }

    /// Runs worker `worker`'s loop `job`, recording how it ended: a panic is caught
    /// (the lcore returns -1) and its message kept for the log and `/healthz`.
    pub fn run(&self, worker: usize, job: impl FnOnce() -> i32) -> i32 {
        self.beat(worker);
        let outcome = catch_unwind(AssertUnwindSafe(job));
        let Some(b) = self.beats.get(worker) else { return outcome.unwrap_or(-1) };
        match outcome {
            Ok(rc) => {
                b.state.store(EXITED, Ordering::Release);
                rc
            }
            Err(p) => {
                let why = crate::panic_message(p.as_ref()).unwrap_or_else(|| "(no message)".into());
                let _ = b.panic.set(why);
                b.state.store(PANICKED, Ordering::Release);
                -1
            }
        }
    }

    /// The workers that are not well: no heartbeat for more than `stall_ms` (only
    /// once started), panicked, or exited (`stopping`: exits are expected).
    pub fn troubles(&self, stall_ms: u64, stopping: bool) -> Vec<(usize, Trouble)> {
        let now = self.now_ms().saturating_add(1);
        let mut out = Vec::new();
        for (i, b) in self.beats.iter().enumerate() {
            match b.state.load(Ordering::Acquire) {
                PANICKED => {
                    let why = b.panic.get().cloned().unwrap_or_default();
                    out.push((i, Trouble::Panicked(why)));
                }
                EXITED if !stopping => out.push((i, Trouble::Exited)),
                EXITED => {}
                _ => {
                    let at = b.at.load(Ordering::Relaxed);
                    let idle = now.saturating_sub(at);
                    if at > 0 && idle > stall_ms {
                        out.push((i, Trouble::Stalled(idle)));
                    }
                }
            }
        }
        out
    }

    /// Milliseconds since each worker's last heartbeat (`None`: not started).
    pub fn ages_ms(&self) -> Vec<Option<u64>> {
        let now = self.now_ms().saturating_add(1);
        self.beats
            .iter()
            .map(|b| match b.at.load(Ordering::Relaxed) {
                0 => None,
                at => Some(now.saturating_sub(at)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_silent_worker_is_named_after_the_stall_time() {
        let l = Liveness::new(2);
        assert!(l.troubles(100, false).is_empty(), "not started yet: nothing to judge");
        l.beat(0);
        l.beat(1);
        std::thread::sleep(Duration::from_millis(150));
        l.beat(1);
        let t = l.troubles(100, false);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].0, 0);
        assert!(matches!(t[0].1, Trouble::Stalled(ms) if ms >= 150), "{t:?}");
        assert!(t[0].1.to_string().starts_with("stopped polling"));
        l.beat(0);
        assert!(l.troubles(100, false).is_empty());
    }

    #[test]
    fn a_panic_is_caught_and_kept_with_its_message() {
        let l = Liveness::new(2);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rc = l.run(1, || panic!("index out of bounds: the len is 3 but the index is 7"));
        std::panic::set_hook(prev);
        assert_eq!(rc, -1);
        assert_eq!(
            l.troubles(1000, false),
            vec![(1, Trouble::Panicked("index out of bounds: the len is 3 but the index is 7".into()))]
        );
        // A panic is a trouble even while stopping; a return is not.
        assert_eq!(l.run(0, || 0), 0);
        assert_eq!(l.troubles(1000, true).len(), 1);
        assert_eq!(l.troubles(1000, false).len(), 2);
    }
}
