//! Checks made before EAL starts, so the first things operators get wrong come back as
//! one line saying what is wrong and what to do, not as EAL's log.
//!
//! The parsers take the text of `/proc` and `/sys` files, so they are tested without a
//! machine set up for DPDK.
#![deny(unsafe_code)]

/// Hugepage state from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hugepages {
    /// `HugePages_Total`.
    pub total: u64,
    /// `HugePages_Free`.
    pub free: u64,
    /// `Hugepagesize`, kB.
    pub size_kb: u64,
}

/// Reads the hugepage lines of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Hugepages {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Hugepages { total: field("HugePages_Total"), free: field("HugePages_Free"), size_kb: field("Hugepagesize") }
}

/// Whether `/proc/mounts` lists a hugetlbfs mount.
pub fn hugetlbfs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
}

/// Parses a CPU list as in `/sys/devices/system/cpu/online` (`0-3,6`).
pub fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
            cpus.extend(lo..=hi.min(lo.saturating_add(4096)));
        }
    }
    cpus
}

/// The first lcore of `lcores` that is not an online CPU.
pub fn missing_cpu(lcores: &[u32], online: &[u32]) -> Option<u32> {
    lcores.iter().copied().find(|l| !online.contains(l))
}

/// Whether `euid` may run DPDK here (root; capabilities are not inspected).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|r| r.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let t = "MemTotal: 1 kB\nHugePages_Total:     512\nHugePages_Free:      500\nHugePages_Rsvd: 0\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_meminfo(t), Hugepages { total: 512, free: 500, size_kb: 2048 });
        assert_eq!(parse_meminfo("").total, 0);
    }

    #[test]
    fn mounts() {
        assert!(hugetlbfs_mounted("proc /proc proc rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n"));
        assert!(!hugetlbfs_mounted("proc /proc proc rw 0 0\n"));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3"), vec![0, 2, 3]);
        assert_eq!(missing_cpu(&[0, 1, 2], &[0, 1]), Some(2));
        assert_eq!(missing_cpu(&[1, 0], &[0, 1]), None);
    }

    #[test]
    fn root_check_reads_own_status() {
        // Whatever the answer, it must agree with the uid the kernel reports.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let euid_zero = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        assert_eq!(is_root(), euid_zero);
    }
}
