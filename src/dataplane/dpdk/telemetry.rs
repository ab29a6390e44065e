//! iwf's commands on DPDK's telemetry socket (`/var/run/dpdk/<file_prefix>/dpdk_telemetry.v2`,
//! read with `dpdk-telemetry.py -f <file_prefix>`):
//!
//! * `/iwf/ports`: the port names, in configuration order;
//! * `/iwf/stats,<port>` (a name or an index): that port's totals, keys `<group>/<counter>`
//!   (the groups of [`Totals::visit`](crate::dataplane::counters::Totals::visit), and `port/link_up`);
//! * `/iwf/flows`: the flows' counters ([`crate::flow::FlowStats`]) and each legacy
//!   system's lane (`lane/<system>/queued`, `lane/<system>/binds`);
//! * `/iwf/stats`: every port, keys `<port>/<group>/<counter>`. A reply holds at most
//!   `RTE_TEL_MAX_DICT_ENTRIES` (256) entries: when every counter of every port does not
//!   fit, only the non-zero ones are listed.
//!
//! Dictionary keys may only hold `[A-Za-z0-9_/]`, so other bytes of a port name become `_`.
//! The callbacks run on DPDK's telemetry thread and read the counters' atomics.

use crate::dataplane::counters::Stats;
use dpdk_sys as sys;
use std::ffi::{c_char, c_int, CStr};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// The counters the callbacks read, set once by [`register`].
static STATS: OnceLock<Arc<Stats>> = OnceLock::new();

/// `/iwf/stats`.
pub const STATS_COMMAND: &CStr = c"/iwf/stats";
/// `/iwf/ports`.
pub const PORTS_COMMAND: &CStr = c"/iwf/ports";
/// `/iwf/flows`.
pub const FLOWS_COMMAND: &CStr = c"/iwf/flows";

/// The flows the `/iwf/flows` callback reads, set once by [`register_flows`].
static FLOWS: OnceLock<Arc<crate::flow::Shared>> = OnceLock::new();

/// Registers `/iwf/flows` over `shared`.
pub fn register_flows(shared: Arc<crate::flow::Shared>) -> Result<(), TelemetryError> {
    FLOWS.set(shared).map_err(|_| TelemetryError::AlreadyRegistered)?;
    let help = c"iwf flow counters and lanes per legacy system. Takes no parameters";
    // SAFETY: NUL-terminated statics; the callback has the telemetry_cb signature.
    let rc = unsafe { sys::rte_telemetry_register_cmd(FLOWS_COMMAND.as_ptr(), Some(flows_cb), help.as_ptr()) };
    if rc != 0 {
        return Err(TelemetryError::Register(rc));
    }
    Ok(())
}

/// Calls `f(key parts, value)` for what `/iwf/flows` returns.
fn flows_entries(shared: &crate::flow::Shared, f: &mut dyn FnMut(&[&str], u64)) {
    shared.stats.visit(&mut |name, v| f(&["flow", name], v));
    for (reason, v) in shared.drops() {
        f(&["drop", reason], v);
    }
    let provision = shared.provision.load();
    for l in &provision.legacy {
        if let Some(st) = shared.system(l.id) {
            st.visit(&mut |counter, v| f(&["system", &l.name, counter], v));
        }
    }
    for lane in shared.lanes.load().lanes() {
        let name = provision.system(lane.system().0).map_or("removed", |l| l.name.as_str());
        f(&["lane", name, "queued"], lane.len() as u64);
        f(&["lane", name, "binds"], u64::from(lane.binds()));
    }
}

unsafe extern "C" fn flows_cb(_cmd: *const c_char, params: *const c_char, d: *mut sys::rte_tel_data) -> c_int {
    let Some(shared) = FLOWS.get() else {
        return -libc::ENODEV;
    };
    // SAFETY: as in `stats_cb`.
    if !params_str(params).trim().is_empty() {
        return -libc::EINVAL;
    }
    // SAFETY: `d` is the reply the telemetry library allocated for this call.
    if sys::rte_tel_data_start_dict(d) != 0 {
        return -libc::EINVAL;
    }
    let mut buf = [0u8; KEY_LEN];
    let mut failed = 0i32;
    flows_entries(shared, &mut |parts, value| match key(&mut buf, parts) {
        // SAFETY: `d` is a started dict; `name` is NUL-terminated and outlives the call.
        Some(name) => {
            let rc = unsafe { sys::rte_tel_data_add_dict_u64(d, name.as_ptr(), value) };
            if rc < 0 && failed == 0 {
                failed = rc;
            }
        }
        None => failed = -libc::E2BIG,
    });
    failed
}

/// Longest key, NUL included (`RTE_TEL_MAX_STRING_LEN`).
const KEY_LEN: usize = sys::RTE_TEL_MAX_STRING_LEN as usize;
/// Most entries in one reply (`RTE_TEL_MAX_DICT_ENTRIES`).
const MAX_ENTRIES: usize = sys::RTE_TEL_MAX_DICT_ENTRIES as usize;

/// Why the commands could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelemetryError {
    /// [`register`] was called before (the commands exist once per process).
    AlreadyRegistered,
    /// `rte_telemetry_register_cmd` refused (negative errno).
    Register(i32),
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TelemetryError::AlreadyRegistered => f.write_str("telemetry commands are already registered"),
            TelemetryError::Register(rc) => write!(f, "rte_telemetry_register_cmd failed ({rc})"),
        }
    }
}

impl std::error::Error for TelemetryError {}

/// Registers `/iwf/stats` and `/iwf/ports` over `stats`. Call once, before or after
/// `rte_eal_init` (the telemetry socket serves them once EAL is up).
pub fn register(stats: Arc<Stats>) -> Result<(), TelemetryError> {
    STATS.set(stats).map_err(|_| TelemetryError::AlreadyRegistered)?;
    let commands: [(&CStr, sys::telemetry_cb, &CStr); 2] = [
        (
            STATS_COMMAND,
            Some(stats_cb),
            c"iwf counters. Parameters: a port name or index (none: every port, non-zero only if they do not fit)",
        ),
        (PORTS_COMMAND, Some(ports_cb), c"iwf port names. Takes no parameters"),
    ];
    for (cmd, cb, help) in commands {
        // SAFETY: both strings are NUL-terminated statics; the callback is an
        // `extern "C" fn` with the telemetry_cb signature that lives for the process.
        let rc = unsafe { sys::rte_telemetry_register_cmd(cmd.as_ptr(), cb, help.as_ptr()) };
        if rc != 0 {
            return Err(TelemetryError::Register(rc));
        }
    }
    Ok(())
}

/// A dictionary key from `parts` joined by `/`, bytes outside `[A-Za-z0-9_]` as `_`;
/// `None` when it does not fit [`KEY_LEN`].
fn key<'b>(buf: &'b mut [u8; KEY_LEN], parts: &[&str]) -> Option<&'b CStr> {
    let mut n = 0usize;
    for (i, part) in parts.iter().enumerate() {
        let sep = (i > 0).then_some(b'/');
        for b in sep.into_iter().chain(part.bytes().map(|b| if b.is_ascii_alphanumeric() { b } else { b'_' })) {
            // Keep the last byte for the NUL.
            *buf.get_mut(n).filter(|_| n + 1 < KEY_LEN)? = b;
            n += 1;
        }
    }
    *buf.get_mut(n)? = 0;
    CStr::from_bytes_with_nul(buf.get(..=n)?).ok()
}

/// Calls `f(port, group, counter, value)` for what `/iwf/stats,<params>` returns: one
/// port's counters, or every port's (only the non-zero ones when they would not all fit
/// one reply). `None` for a port that does not exist.
fn stats_entries(stats: &Stats, params: &str, f: &mut dyn FnMut(&str, &str, &str, u64)) -> Option<()> {
    let params = params.trim();
    let selected: Vec<usize> = if params.is_empty() {
        (0..stats.ports.len()).collect()
    } else {
        let by_name = stats.ports.iter().position(|p| p.name == params);
        vec![by_name.or_else(|| params.parse().ok().filter(|&i: &usize| i < stats.ports.len()))?]
    };
    let mut per_port = 1;
    stats.totals(0).visit(&mut |_, _, _| per_port += 1);
    let skip_zero = per_port * selected.len() > MAX_ENTRIES;
    for i in selected {
        let port = stats.ports.get(i)?;
        let link = u64::from(port.link_up.load(Ordering::Relaxed));
        if !(skip_zero && link == 0) {
            f(&port.name, "port", "link_up", link);
        }
        stats.totals(i).visit(&mut |group, counter, value| {
            if !(skip_zero && value == 0) {
                f(&port.name, group, counter, value);
            }
        });
    }
    Some(())
}

/// Reads a callback's `params` (NULL or a C string).
///
/// # Safety
/// `params` is NULL or a NUL-terminated string valid for the call.
unsafe fn params_str<'a>(params: *const c_char) -> &'a str {
    if params.is_null() {
        ""
    } else {
        CStr::from_ptr(params).to_str().unwrap_or("\u{0}")
    }
}

unsafe extern "C" fn stats_cb(_cmd: *const c_char, params: *const c_char, d: *mut sys::rte_tel_data) -> c_int {
    let Some(stats) = STATS.get() else {
        return -libc::ENODEV;
    };
    // SAFETY: telemetry passes NULL or the request's parameter string.
    let params = params_str(params);
    let one_port = !params.trim().is_empty();
    // SAFETY: `d` is the reply the telemetry library allocated for this call.
    if sys::rte_tel_data_start_dict(d) != 0 {
        return -libc::EINVAL;
    }
    let mut buf = [0u8; KEY_LEN];
    let mut failed = 0i32;
    let found = stats_entries(stats, params, &mut |port, group, counter, value| {
        let name = if one_port { key(&mut buf, &[group, counter]) } else { key(&mut buf, &[port, group, counter]) };
        match name {
            // SAFETY: `d` is a started dict; `name` is NUL-terminated and outlives the call.
            Some(name) => {
                let rc = unsafe { sys::rte_tel_data_add_dict_u64(d, name.as_ptr(), value) };
                if rc < 0 && failed == 0 {
                    failed = rc;
                }
            }
            None => failed = -libc::E2BIG,
        }
    });
    match found {
        None => -libc::EINVAL,
        Some(()) => failed,
    }
}

unsafe extern "C" fn ports_cb(_cmd: *const c_char, params: *const c_char, d: *mut sys::rte_tel_data) -> c_int {
    let Some(stats) = STATS.get() else {
        return -libc::ENODEV;
    };
    // SAFETY: as in `stats_cb`.
    if !params_str(params).trim().is_empty() {
        return -libc::EINVAL;
    }
    // SAFETY: `d` is the reply the telemetry library allocated for this call.
    if sys::rte_tel_data_start_array(d, sys::RTE_TEL_STRING_VAL) != 0 {
        return -libc::EINVAL;
    }
    for p in &stats.ports {
        let mut buf = [0u8; KEY_LEN];
        let Some(name) = key(&mut buf, &[&p.name]) else {
            return -libc::E2BIG;
        };
        // SAFETY: `d` is a started string array; `name` is NUL-terminated.
        let rc = sys::rte_tel_data_add_array_string(d, name.as_ptr());
        if rc < 0 {
            return rc;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| if i == 0 { "legacy".to_string() } else { format!("conv-{i}") }).collect()
    }

    #[test]
    fn keys_are_telemetry_names() {
        let mut buf = [0u8; KEY_LEN];
        assert_eq!(key(&mut buf, &["conv-1", "sip", "rx_message"]).unwrap(), c"conv_1/sip/rx_message");
        assert_eq!(key(&mut buf, &["port", "link_up"]).unwrap(), c"port/link_up");
        assert_eq!(key(&mut buf, &["é"]).unwrap(), c"__");
        let long = "x".repeat(KEY_LEN - 1);
        assert_eq!(key(&mut buf, &[&long]).unwrap().to_bytes().len(), KEY_LEN - 1);
        assert!(key(&mut buf, &[&long, "y"]).is_none());
        assert!(key(&mut buf, &["x".repeat(KEY_LEN).as_str()]).is_none());
    }

    fn collect(stats: &Stats, params: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        stats_entries(stats, params, &mut |p, g, c, v| out.push(format!("{p}/{g}/{c}={v}")))?;
        Some(out)
    }

    #[test]
    fn one_port_or_all_that_fit() {
        let stats = Stats::new(&names(2), 2);
        stats.ports[1].queues[1].sip.rx_message.add(3);
        stats.ports[1].link_up.store(true, Ordering::Relaxed);
        let legacy = collect(&stats, "legacy").unwrap();
        assert_eq!(legacy, collect(&stats, " 0 ").unwrap());
        assert!(legacy.len() > 100 && legacy.len() <= MAX_ENTRIES);
        assert!(legacy.iter().all(|e| e.starts_with("legacy/")));
        let conv = collect(&stats, "1").unwrap();
        assert!(conv.contains(&"conv-1/sip/rx_message=3".to_string()));
        assert!(conv.contains(&"conv-1/port/link_up=1".to_string()));
        // Every port in one reply: whole when they fit, else their non-zero counters.
        let all = collect(&stats, "").unwrap();
        assert!(all.len() <= MAX_ENTRIES);
        if legacy.len() + conv.len() <= MAX_ENTRIES {
            assert_eq!(all.len(), legacy.len() + conv.len());
        } else {
            assert!(all.iter().all(|e| !e.ends_with("=0")), "{all:?}");
        }
        assert!(all.contains(&"conv-1/sip/rx_message=3".to_string()));
        assert!(all.contains(&"conv-1/port/link_up=1".to_string()));
        assert!(collect(&stats, "nope").is_none());
        assert!(collect(&stats, "2").is_none());
    }

    #[test]
    fn too_many_ports_list_non_zero_counters_only() {
        let stats = Stats::new(&names(3), 1);
        stats.ports[2].queues[0].smpp.binds_ok.add(2);
        stats.ports[0].queues[0].rx_packets.add(1);
        assert_eq!(
            collect(&stats, "").unwrap(),
            vec!["legacy/port/rx_packets=1".to_string(), "conv-2/smpp/binds_ok=2".to_string()]
        );
        // One port at a time still lists every counter.
        assert!(collect(&stats, "conv-2").unwrap().len() > 100);
    }

    /// The callbacks against the real telemetry data functions (no EAL needed: the reply
    /// is a malloc'd structure, and registering appends to a list).
    #[test]
    fn callbacks_fill_a_telemetry_reply() {
        let stats = Arc::new(Stats::new(&names(2), 1));
        register(Arc::clone(&stats)).unwrap();
        assert_eq!(register(stats), Err(TelemetryError::AlreadyRegistered));
        // SAFETY: alloc/free pair; the callbacks get a valid reply and C strings.
        unsafe {
            for (cb, params, expect_ok) in [
                (stats_cb as unsafe extern "C" fn(_, _, _) -> c_int, c"", true),
                (stats_cb, c"legacy", true),
                (stats_cb, c"conv-1", true),
                (stats_cb, c"missing", false),
                (ports_cb, c"", true),
                (ports_cb, c"x", false),
            ] {
                let d = sys::rte_tel_data_alloc();
                assert!(!d.is_null());
                let rc = cb(STATS_COMMAND.as_ptr(), params.as_ptr(), d);
                assert_eq!(rc == 0, expect_ok, "{params:?}: {rc}");
                sys::rte_tel_data_free(d);
            }
            let d = sys::rte_tel_data_alloc();
            assert_eq!(stats_cb(STATS_COMMAND.as_ptr(), std::ptr::null(), d), 0);
            sys::rte_tel_data_free(d);
        }
    }
}
