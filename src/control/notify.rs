//! systemd's service notification protocol (`sd_notify(3)`), for `Type=notify` units:
//! `READY=1` once ports and binds are up, `WATCHDOG=1` while every worker polls,
//! `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` on the way out, `STATUS=` for
//! `systemctl status`. One datagram per message to the socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace); without it every call is a no-op,
//! so iwf runs the same outside systemd.
//!
//! The watchdog is fed by the control thread only when the workers' heartbeats say they
//! all poll ([`Watchdog::due`]): a stalled worker stops the pings and systemd restarts
//! the service after `WatchdogSec`.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names (none when it is unset or unusable).
    pub fn from_env() -> Notifier {
        Notifier::to(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    /// A notifier to `path` (`@name`: the abstract namespace), or a silent one.
    pub fn to(path: Option<&str>) -> Notifier {
        let socket = path.filter(|p| !p.is_empty()).and_then(|p| {
            let addr = match p.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => std::os::unix::net::SocketAddr::from_pathname(p).ok()?,
            };
            let sock = UnixDatagram::unbound().ok()?;
            // A listener that stops reading must not block the control thread: a full
            // queue drops the notification instead (the caller hears of it).
            sock.set_nonblocking(true).ok()?;
            Some((sock, addr))
        });
        Notifier { socket }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` assignments); a failure is returned
    /// for the caller to log, never fatal.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        match &self.socket {
            Some((s, addr)) => s.send_to_addr(state.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// When to feed the watchdog: every half of `WatchdogSec` (`WATCHDOG_USEC`), and only
/// while the workers are well.
#[derive(Debug, Clone)]
pub struct Watchdog {
    interval: Duration,
    next: Instant,
}

impl Watchdog {
    /// The watchdog systemd asked for through `WATCHDOG_USEC` (and `WATCHDOG_PID`, when
    /// set, naming this process), if it did.
    pub fn from_env(now: Instant) -> Option<Watchdog> {
        let usec = std::env::var("WATCHDOG_USEC").ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim() != std::process::id().to_string() {
                return None;
            }
        }
        Watchdog::every(usec.trim().parse().ok()?, now)
    }

    /// A watchdog of `usec` microseconds (0: none), fed at half of it.
    pub fn every(usec: u64, now: Instant) -> Option<Watchdog> {
        (usec > 0).then(|| Watchdog { interval: Duration::from_micros(usec / 2), next: now })
    }

    /// Whether to send `WATCHDOG=1` now: the interval has passed and `workers_well`.
    /// A ping skipped because a worker is not well is not made up later: systemd sees
    /// the silence.
    pub fn due(&mut self, now: Instant, workers_well: bool) -> bool {
        if now < self.next || !workers_well {
            return false;
        }
        self.next = now + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_the_named_socket() {
        let path = std::env::temp_dir().join(format!("iwf-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str());
        assert!(n.is_active());
        n.notify("READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn abstract_names_and_no_socket() {
        let name = format!("iwf-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(Some(&format!("@{name}"))).notify("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 16];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let silent = Notifier::to(None);
        assert!(!silent.is_active() && silent.notify("READY=1").is_ok());
        assert!(!Notifier::to(Some("")).is_active());
    }

    #[test]
    fn the_watchdog_is_fed_at_half_its_period_and_only_while_workers_are_well() {
        let t0 = Instant::now();
        assert!(Watchdog::every(0, t0).is_none());
        let mut w = Watchdog::every(2_000_000, t0).unwrap();
        assert!(w.due(t0, true), "at once");
        assert!(!w.due(t0 + Duration::from_millis(999), true));
        assert!(w.due(t0 + Duration::from_millis(1000), true));
        // A stalled worker: no ping however long, then pings again once it polls.
        assert!(!w.due(t0 + Duration::from_millis(2500), false));
        assert!(!w.due(t0 + Duration::from_millis(9000), false));
        assert!(w.due(t0 + Duration::from_millis(9100), true));
    }
}
