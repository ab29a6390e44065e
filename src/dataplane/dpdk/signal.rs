//! Signals set flags that the loops poll: SIGINT and SIGTERM the stop flag, SIGHUP the
//! reload request. A handler does nothing else, so it is async-signal-safe.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The flag of each signal number (a handler gets only the number). A signal's first
/// flag stays: a process has one stop flag and one reload flag.
static FLAGS: [OnceLock<&'static AtomicBool>; 32] = [const { OnceLock::new() }; 32];

extern "C" fn on_signal(signal: libc::c_int) {
    // `OnceLock::get` is an atomic load, the store an atomic store.
    let flag = usize::try_from(signal).ok().and_then(|s| FLAGS.get(s)).and_then(OnceLock::get);
    if let Some(flag) = flag {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Makes each of `signals` set `flag`. Errs with the signal that could not be handled.
pub fn set_on(signals: &[libc::c_int], flag: &'static AtomicBool) -> Result<(), libc::c_int> {
    for &sig in signals {
        let Some(slot) = usize::try_from(sig).ok().and_then(|s| FLAGS.get(s)) else {
            return Err(sig);
        };
        let _ = slot.set(flag);
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" action; its
        // handler only loads and stores atomics, which is async-signal-safe;
        // SA_RESTART keeps the control thread's blocking calls going.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(sig);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_sets_its_flag_once() {
        static HUP: AtomicBool = AtomicBool::new(false);
        set_on(&[libc::SIGHUP], &HUP).unwrap();
        // `kill -HUP` on our own pid: raise() would be one more unsafe call.
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !HUP.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(HUP.swap(false, Ordering::SeqCst));
        assert!(!HUP.load(Ordering::SeqCst));
    }
}
