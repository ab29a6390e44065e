//! The Environment Abstraction Layer: start (once per process), lcores, launching work
//! on them, and cleanup (which releases hugepage memory).
use dpdk_sys as sys;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// The text of the calling thread's `rte_errno`.
pub fn last_error() -> String {
    // SAFETY: rte_errno is a thread-local; rte_strerror returns a static or per-lcore
    // string that we copy at once.
    unsafe {
        let e = sys::rte_errno();
        let s = sys::rte_strerror(e);
        if s.is_null() {
            format!("error {e}")
        } else {
            format!("{} (rte_errno {e})", CStr::from_ptr(s).to_string_lossy())
        }
    }
}

/// A started EAL; dropping it calls `rte_eal_cleanup`. Drop ports and mempools first.
#[derive(Debug)]
pub struct Eal {
    file_prefix: String,
    cleaned: bool,
}

/// Work run on a worker lcore.
pub type LcoreJob = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<LcoreJob> leaked by `Eal::launch`, reclaimed exactly once.
    let job = unsafe { Box::from_raw(arg as *mut LcoreJob) };
    // A panic must not unwind into C; a worker that panics reports -1.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

impl Eal {
    /// `rte_eal_init` with `args` (program name first).
    /// `file_prefix` must be the `--file-prefix` in `args`: its files are removed at the end.
    pub fn init(args: &[String], file_prefix: &str) -> Result<Eal, String> {
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| format!("EAL argument `{a}` contains NUL")))
            .collect::<Result<_, _>>()?;
        // EAL may permute argv; it keeps pointers into it, so the strings stay alive
        // (leaked: EAL lives as long as the process).
        let mut argv: Vec<*mut c_char> = cargs.into_iter().map(CString::into_raw).collect();
        let argc = c_int::try_from(argv.len()).map_err(|_| "too many EAL arguments".to_string())?;
        argv.push(std::ptr::null_mut());
        let argv = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv is a NULL-terminated array of valid C strings that outlives EAL.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(last_error());
        }
        Ok(Eal { file_prefix: file_prefix.to_string(), cleaned: false })
    }

    /// The main lcore (the thread that called `init`).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_get_main_lcore() }
    }

    /// The worker lcores, in id order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised; iteration ends at RTE_MAX_LCORE.
        let mut l = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while l < sys::RTE_MAX_LCORE {
            out.push(l);
            l = unsafe { sys::rte_get_next_lcore(l, 1, 0) };
        }
        out
    }

    /// The NUMA socket of an lcore.
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `job` on worker `lcore` (`rte_eal_remote_launch`).
    pub fn launch(&self, lcore: u32, job: LcoreJob) -> Result<(), String> {
        let arg = Box::into_raw(Box::new(job)) as *mut c_void;
        // SAFETY: run_job reclaims `arg`; on failure we reclaim it here.
        let rc = unsafe { sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if rc != 0 {
            // SAFETY: not launched, so still ours.
            drop(unsafe { Box::from_raw(arg as *mut LcoreJob) });
            return Err(format!("cannot launch work on lcore {lcore}: error {rc} (is it busy?)"));
        }
        Ok(())
    }

    /// Waits for every worker lcore to finish (`rte_eal_mp_wait_lcore`).
    pub fn wait_workers(&self) {
        // SAFETY: EAL is initialised; called from the main lcore.
        unsafe { sys::rte_eal_mp_wait_lcore() }
    }

    /// `rte_eal_cleanup`, then removes this process's hugepage files and runtime
    /// directory: EAL unmaps the memory but leaves the files for secondary processes,
    /// and nothing attaches once we stop. Returns (files removed, directory removed).
    pub fn shutdown(mut self) -> (usize, bool) {
        self.cleanup()
    }

    fn cleanup(&mut self) -> (usize, bool) {
        if std::mem::replace(&mut self.cleaned, true) {
            return (0, false);
        }
        // SAFETY: workers have returned and every DPDK object is released by now.
        unsafe {
            sys::rte_eal_cleanup();
        }
        release_runtime_files(&self.file_prefix)
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Removes `<hugetlbfs mount>/<prefix>map_*` and `/var/run/dpdk/<prefix>`; returns how
/// many hugepage files went and whether the directory did.
fn release_runtime_files(prefix: &str) -> (usize, bool) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let stem = format!("{prefix}map_");
    let mut removed = 0;
    for mount in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"hugetlbfs")).then(|| f.get(1).map(|m| m.to_string())).flatten()
    }) {
        let Ok(dir) = std::fs::read_dir(&mount) else { continue };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.strip_prefix(&stem).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    let dir = std::path::Path::new("/var/run/dpdk").join(prefix);
    let dir_removed = dir.is_dir() && std::fs::remove_dir_all(&dir).is_ok();
    (removed, dir_removed)
}
