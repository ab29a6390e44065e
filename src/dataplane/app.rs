//! `run(config)`: the appliance's life from configuration to orderly shutdown.
//!
//! 1. read `[eal]`, `[control]`, `[[ports]]`; preflight (root, hugepages, lcores, taps);
//! 2. EAL init; one mempool; every port with one queue pair per worker lcore;
//! 3. one [`Worker`] per worker lcore (`rte_eal_remote_launch`), one control thread
//!    (pinned with core_affinity, never touches a packet: link state, counters to the log);
//! 4. SIGINT/SIGTERM set [`STOP`]: workers return, the counters are reported, ports are
//!    stopped and closed, the mempool freed, `rte_eal_cleanup` releases hugepage memory.
use super::counters::Stats;
use super::dpdk::eal::Eal;
use super::dpdk::mbuf::Mempool;
use super::dpdk::port::{Port, PortError};
use super::dpdk::ring::{RingConsumer, RingProducer};
use super::host::{Host, UDP_SERVICES};
use super::preflight;
use super::sip::{KeepAlive, Route, SipSettings, SipUdp};
use super::tcp::{Directory, Handoff, MbufHandoff, PeerLimits, SmscClient, StackSettings, TcpStack};
use super::worker::{Worker, WorkerPort, STOP};
use crate::control::config::{self, ConfigError, DataplaneConfig, Device};
use crate::session::smpp::{Credentials, ReconnectConfig};
use smoltcp::wire::EthernetAddress;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the appliance could not start (each a one-line message saying what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneError {
    /// The configuration file could not be read.
    Read {
        /// The path.
        path: String,
        /// The OS error.
        error: String,
    },
    /// The configuration is wrong (key and line inside).
    Config {
        /// The path.
        path: String,
        /// What and where.
        error: ConfigError,
    },
    /// Not running as root.
    NotRoot,
    /// No hugepages reserved.
    NoHugepages,
    /// Hugepages reserved but all in use.
    HugepagesInUse {
        /// Total reserved.
        total: u64,
    },
    /// No hugetlbfs mounted.
    NoHugetlbfs,
    /// An lcore (or the control core) that is not an online CPU.
    MissingCpu {
        /// The configuration file.
        path: String,
        /// The key naming it.
        key: &'static str,
        /// Its line in the file.
        line: usize,
        /// The CPU.
        cpu: u32,
        /// The machine's online CPUs.
        online: String,
    },
    /// `/dev/net/tun` is missing.
    NoTun,
    /// A tap's interface name is taken.
    InterfaceExists {
        /// The port.
        port: String,
        /// The interface.
        iface: String,
    },
    /// EAL did not start.
    Eal(String),
    /// A port's device does not exist after EAL init.
    DeviceNotFound {
        /// The configuration file.
        path: String,
        /// The port.
        port: String,
        /// The device.
        device: Box<Device>,
        /// Its line in the file.
        line: usize,
    },
    /// A port failed to set up.
    PortSetup {
        /// The port.
        port: String,
        /// What failed.
        message: String,
    },
    /// A port had no link.
    NoLink {
        /// The port.
        port: String,
        /// Its index in `[[ports]]`.
        index: usize,
        /// How long iwf waited.
        waited: Duration,
    },
    /// Something else in setup (mempool, signals, launch).
    Setup(String),
}

impl fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataplaneError::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            DataplaneError::Config { path, error } => write!(f, "{path}: {error}"),
            DataplaneError::NotRoot => write!(f, "DPDK needs root (hugepages, taps, devices): run iwf with sudo"),
            DataplaneError::NoHugepages => write!(
                f,
                "no hugepages reserved: run `echo 512 > /proc/sys/vm/nr_hugepages` (scripts/setup.sh does) or set eal.hugepages = false with eal.memory_mb"
            ),
            DataplaneError::HugepagesInUse { total } => write!(
                f,
                "all {total} hugepages are in use (another DPDK process, or files left in /dev/hugepages): free some or reserve more in /proc/sys/vm/nr_hugepages"
            ),
            DataplaneError::NoHugetlbfs => write!(
                f,
                "no hugetlbfs mounted: run `mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages` (scripts/setup.sh does)"
            ),
            DataplaneError::MissingCpu { path, key, line, cpu, online } => {
                write!(f, "{path}: line {line}: `{key}`: CPU {cpu} does not exist here (online CPUs: {online}): list existing CPUs")
            }
            DataplaneError::NoTun => write!(f, "/dev/net/tun is missing, so net_tap cannot create its interface: `modprobe tun`"),
            DataplaneError::InterfaceExists { port, iface } => write!(
                f,
                "port {port}: interface {iface} already exists (left from an earlier run? `scripts/lab.sh down`, or `ip link del {iface}`)"
            ),
            DataplaneError::Eal(e) => write!(f, "EAL did not start: {e} (see the EAL lines above)"),
            DataplaneError::DeviceNotFound { path, port, device, line } => match device.as_ref() {
                Device::Vdev { name, iface, .. } if name.starts_with("net_tap") => write!(
                    f,
                    "{path}: line {line}: port {port}: tap creation failed, {name}{} does not exist (see EAL lines above; needs root and /dev/net/tun)",
                    iface.as_deref().map(|i| format!(" (iface {i})")).unwrap_or_default()
                ),
                Device::Vdev { name, .. } => write!(f, "{path}: line {line}: port {port}: vdev {name} was not created (see the EAL lines above)"),
                Device::Pci { address } => write!(
                    f,
                    "{path}: line {line}: port {port}: PCI device {address} is not a DPDK port: bind it with `dpdk-devbind.py -b vfio-pci {address}`"
                ),
            },
            DataplaneError::PortSetup { port, message } => write!(f, "port {port}: {message}"),
            DataplaneError::NoLink { port, index, waited } => write!(
                f,
                "port {port}: no link after {} ms: check the cable or the peer, or set ports[{index}].require_link = false",
                waited.as_millis()
            ),
            DataplaneError::Setup(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DataplaneError {}

fn install_signal_handlers() -> Result<(), DataplaneError> {
    use super::dpdk::signal::set_on;
    set_on(&[libc::SIGINT, libc::SIGTERM], &STOP)
        .and_then(|()| set_on(&[libc::SIGHUP], &crate::control::reload::SIGHUP))
        .map_err(|sig| DataplaneError::Setup(format!("cannot install a handler for signal {sig}")))
}

/// Checks what operators get wrong first, before EAL prints pages of log about it.
fn preflight(path: &str, cfg: &DataplaneConfig) -> Result<(), DataplaneError> {
    if !preflight::is_root() {
        return Err(DataplaneError::NotRoot);
    }
    let online_text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let online = preflight::parse_cpu_list(&online_text);
    if !online.is_empty() {
        if let Some(cpu) = preflight::missing_cpu(&cfg.eal.cpus, &online) {
            let online = online_text.trim().to_string();
            return Err(DataplaneError::MissingCpu {
                path: path.to_string(),
                key: "eal.lcores",
                line: cfg.eal.lcores_line,
                cpu,
                online,
            });
        }
    }
    if cfg.eal.hugepages {
        let hp = preflight::parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
        if hp.total == 0 {
            return Err(DataplaneError::NoHugepages);
        }
        if hp.free == 0 {
            return Err(DataplaneError::HugepagesInUse { total: hp.total });
        }
        if !preflight::hugetlbfs_mounted(&std::fs::read_to_string("/proc/mounts").unwrap_or_default()) {
            return Err(DataplaneError::NoHugetlbfs);
        }
    }
    for p in &cfg.ports {
        if let Device::Vdev { name, iface, .. } = &p.device {
            if name.starts_with("net_tap") && !std::path::Path::new("/dev/net/tun").exists() {
                return Err(DataplaneError::NoTun);
            }
            if let Some(i) = iface {
                if std::path::Path::new("/sys/class/net").join(i).exists() {
                    return Err(DataplaneError::InterfaceExists { port: p.name.clone(), iface: i.clone() });
                }
            }
        }
    }
    Ok(())
}

/// Starts the appliance with `config_path` and runs until SIGINT/SIGTERM. MESSAGEs go to
/// the flows (exchange selection); a SIP service without flows answers them 404 (see
/// [`run_with`]).
pub fn run(config_path: &str) -> Result<(), DataplaneError> {
    run_with(config_path, crate::session::sip::unknown_recipient)
}

/// As [`run`], with `route` deciding the MESSAGEs the SIP service on each port's
/// `sip_udp_port` takes (one [`SipUdp`] per worker and port).
pub fn run_with(config_path: &str, route: Route) -> Result<(), DataplaneError> {
    let (cfg, provision) = load_and_check(config_path)?;
    install_signal_handlers()?;

    let mut args = vec!["iwf".to_string()];
    args.extend(cfg.eal_args());
    tracing::info!("DPDK {} EAL {}", dpdk_sys::DPDK_VERSION, args[1..].join(" "));
    let eal = Eal::init(&args, &cfg.eal.file_prefix).map_err(DataplaneError::Eal)?;
    let workers = eal.worker_lcores();
    let queues = u16::try_from(workers.len()).unwrap_or(u16::MAX);
    if workers.is_empty() {
        return Err(DataplaneError::Setup("EAL gave no worker lcores: list at least two in eal.lcores".into()));
    }
    let socket = i32::try_from(eal.lcore_socket(eal.main_lcore())).unwrap_or(-1);
    let pool = Arc::new(
        Mempool::create("iwf_mbufs", cfg.eal.mbufs, cfg.eal.mbuf_cache, socket).map_err(DataplaneError::Setup)?,
    );
    let ports = open_ports(config_path, &cfg, queues, &pool)?;
    let names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let stats = Arc::new(Stats::new(&names, usize::from(queues)));
    announce(&cfg, &ports);
    let mut handoffs = handoffs(usize::from(queues), socket).map_err(DataplaneError::Setup)?.into_iter();
    // The flows: shared state (provisioning snapshot, lanes, completions), the durable
    // store's thread, one engine per worker.
    let (store_tx, store_rx) = std::sync::mpsc::channel();
    let store = open_store(config_path, &cfg)?;
    let shared = crate::flow::Shared::published(provision.shared(), queues, store.as_ref().map(|_| store_tx))
        .map_err(|e| DataplaneError::Setup(format!("lanes: {e}")))?;
    let shared = Arc::new(shared);
    if let Err(e) = super::dpdk::telemetry::register(Arc::clone(&stats))
        .and_then(|()| super::dpdk::telemetry::register_flows(Arc::clone(&shared)))
    {
        tracing::warn!("DPDK telemetry commands not registered: {e}");
    }
    let registry = Arc::new(crate::control::metrics::MetricsRegistry::new());
    registry.register(Arc::new(super::metrics::StatsMetrics(Arc::clone(&stats))));
    registry.register(Arc::clone(&shared) as Arc<dyn crate::control::metrics::MetricsSource>);
    registry.register(Arc::clone(&provision) as Arc<dyn crate::control::metrics::MetricsSource>);
    registry.register(Arc::new(crate::control::metrics::ProcessMetrics::new()));
    let cluster = cfg.control.cluster.as_ref().map(|_| Arc::new(crate::cluster::Registry::default()));
    let admin = start_admin(config_path, &cfg, &registry, &stats, &provision, &shared, cluster.clone())?;
    let mut store = store;
    let mut all_flows = engines(config_path, &cfg, workers.len(), &shared, store.as_mut())?.into_iter();
    let store_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads = start_threads(&cfg, &shared, (store, store_rx), cluster.as_ref(), &registry, &store_stop)?;
    let directory = Directory::live(provision.shared()).with_operator(Arc::clone(&shared));
    // One per-peer connection table per port, shared by its workers.
    let limits: Vec<Arc<PeerLimits>> =
        cfg.ports.iter().map(|_| Arc::new(PeerLimits::new(cfg.tcp.max_connections_per_peer))).collect();
    let guards: Vec<Arc<super::admission::BindGuard>> = cfg.ports.iter().map(|_| new_guard(&cfg)).collect();
    // One budget for every SIP-over-TCP stream of every port and worker.
    let sip_budget = Arc::new(super::tcp::StreamBudget::new(cfg.sip.stream_memory_mb.saturating_mul(1 << 20)));
    if cfg.sip.trusted.is_empty() && cfg.ports.iter().any(|p| p.sip_udp_port.is_some() || p.sip_tcp_port.is_some()) {
        tracing::warn!("[sip] trusted is empty: any host may send SIP to iwf (name the SIP core there)");
    }
    for (q, lcore) in workers.iter().enumerate() {
        let Some(flows) = all_flows.next() else { break };
        let mut wports = Vec::with_capacity(ports.len());
        for (index, (p, pc)) in ports.iter().zip(&cfg.ports).enumerate() {
            let shared = PortShared {
                limits: &limits,
                guards: &guards,
                directory: &directory,
                stats: &stats,
                sip_budget: &sip_budget,
            };
            wports.push(worker_port(&cfg, q, index, p, pc, route, &shared)?);
        }
        let worker = Worker {
            queue: q as u16,
            ports: wports,
            pool: Arc::clone(&pool),
            stats: Arc::clone(&stats),
            handoff: handoffs.next().unwrap_or_else(Handoff::single),
            flows: Some(flows),
        };
        let beats = Arc::clone(&stats);
        if let Err(e) = eal.launch(*lcore, Box::new(move || beats.liveness.run(q, || worker.run()))) {
            STOP.store(true, Ordering::SeqCst);
            eal.wait_workers();
            return Err(DataplaneError::Setup(e));
        }
    }
    let ports = Arc::new(ports);
    let control_core = cfg.control.core.unwrap_or(eal.main_lcore() as usize);
    let interval = Duration::from_millis(cfg.control.stats_interval_ms);
    let control = {
        let (stats, ports, shared, provision) =
            (Arc::clone(&stats), Arc::clone(&ports), Arc::clone(&shared), Arc::clone(&provision));
        std::thread::Builder::new()
            .name("iwf-control".into())
            .spawn(move || control_loop(control_core, &stats, &ports, &shared, &provision, interval))
            .map_err(|e| {
                // Without its control thread iwf stops at once, orderly.
                STOP.store(true, Ordering::SeqCst);
                tracing::error!("cannot start the control thread: {e}");
            })
            .ok()
    };
    tracing::info!(
        "ready: main lcore {}, worker lcores {:?}, control thread on CPU {control_core}",
        eal.main_lcore(),
        workers
    );

    wait_for_stop(&eal, admin, control, &store_stop, threads);
    final_report(&shared, &stats, &ports);
    // Order matters: rings (drained: their mbufs go back to the pool; each went with
    // the workers that held its ends, the unused ones go here) and ports (stop, close)
    // before the mempool they use, EAL last.
    drop(handoffs);
    drop(ports);
    drop(pool);
    let (files, dir) = eal.shutdown();
    tracing::info!(
        "stopped cleanly (removed {files} hugepage files{})",
        if dir { " and the runtime directory" } else { "" }
    );
    Ok(())
}

/// The configuration and the provisioning of `config_path`, checked against the machine
/// (root, the CPUs named) before EAL prints pages of log about what is wrong.
fn load_and_check(
    config_path: &str,
) -> Result<
    (DataplaneConfig, Arc<crate::control::reload::Reloader<crate::control::provision::Provision>>),
    DataplaneError,
> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| DataplaneError::Read { path: config_path.to_string(), error: e.to_string() })?;
    let cfg = config::load(&text).map_err(|error| DataplaneError::Config { path: config_path.to_string(), error })?;
    // The log from here on: what follows is said through it.
    crate::control::logging::init(&cfg.control.log);
    // Provisioning: parsed whole now, and again on SIGHUP or POST /-/reload (a bad file
    // is refused whole and the running snapshot stays).
    let provision = crate::control::reload::Reloader::load(config_path, crate::control::provision::Provision::parse)
        .map_err(|e| match e {
            crate::control::reload::ReloadError::Config { error, .. } => {
                DataplaneError::Config { path: config_path.to_string(), error }
            }
            other => DataplaneError::Setup(other.to_string()),
        })?;
    let provision = Arc::new(provision);
    preflight(config_path, &cfg)?;
    if let Some(core) = cfg.control.core {
        let online =
            preflight::parse_cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default());
        if !online.is_empty() && !online.contains(&(core as u32)) {
            let line = text.lines().position(|l| l.trim_start().starts_with("core")).map_or(0, |i| i + 1);
            let online = online.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            return Err(DataplaneError::MissingCpu {
                path: config_path.to_string(),
                key: "control.core",
                line,
                cpu: core as u32,
                online,
            });
        }
    }
    Ok((cfg, provision))
}

/// The durable store's thread (with its metrics), over the store if one is configured.
fn start_store(
    store: Option<crate::route::store::Store>,
    intake: std::sync::mpsc::Receiver<crate::flow::store::StoreOp>,
    shared: &Arc<crate::flow::Shared>,
    registry: &crate::control::metrics::MetricsRegistry,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, DataplaneError> {
    let Some(db) = store else { return Ok(None) };
    crate::flow::store::recount(&db, shared);
    let stats = Arc::new(crate::flow::store::StoreStats::default());
    registry.register(Arc::clone(&stats) as Arc<dyn crate::control::metrics::MetricsSource>);
    let (shared, stop) = (Arc::clone(shared), Arc::clone(stop));
    std::thread::Builder::new()
        .name("iwf-store".into())
        .spawn(move || crate::flow::store::run(db, intake, shared, stats, &stop))
        .map(Some)
        .map_err(|e| DataplaneError::Setup(format!("cannot start the store thread: {e}")))
}

/// Runs until SIGINT/SIGTERM (or a fatal error) sets [`STOP`], then stops the threads
/// in order: the workers, the admin endpoint, the control thread, the store thread
/// (which commits what it holds).
fn wait_for_stop(
    eal: &Eal,
    admin: Option<crate::control::admin::AdminHandle>,
    control: Option<std::thread::JoinHandle<()>>,
    store_stop: &std::sync::atomic::AtomicBool,
    threads: [Option<std::thread::JoinHandle<()>>; 3],
) {
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping");
    let _ = crate::control::notify::Notifier::from_env().notify("STOPPING=1");
    eal.wait_workers();
    if let Some(a) = admin {
        a.stop();
    }
    if let Some(c) = control {
        let _ = c.join();
    }
    store_stop.store(true, Ordering::SeqCst);
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
}

/// The threads beside the workers that stop after them: the store's, the records',
/// and the cluster's (each when configured).
#[allow(clippy::type_complexity)]
fn start_threads(
    cfg: &DataplaneConfig,
    shared: &Arc<crate::flow::Shared>,
    (store, intake): (Option<crate::route::store::Store>, std::sync::mpsc::Receiver<crate::flow::store::StoreOp>),
    cluster: Option<&Arc<crate::cluster::Registry>>,
    registry: &crate::control::metrics::MetricsRegistry,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<[Option<std::thread::JoinHandle<()>>; 3], DataplaneError> {
    // The cluster's intake before any thread that hands it work (the store's forwards
    // correlation writes from its first commit) and before the cores start.
    let cluster_intake = match &cfg.control.cluster {
        Some(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            if shared.cluster.set(crate::flow::cluster::ClusterLink::new(tx)).is_err() {
                return Err(DataplaneError::Setup("the cluster's intake was set twice".into()));
            }
            Some(rx)
        }
        None => None,
    };
    Ok([
        start_store(store, intake, shared, registry, stop)?,
        start_records(cfg, shared, stop)?,
        start_cluster(cfg, shared, cluster, cluster_intake, registry, stop)?,
    ])
}

/// The cluster thread (with `[cluster]`): this box's part of the bind registry and of the
/// receipts across boxes. It stops
/// with the store thread, after the workers, taking this box's entries out.
fn start_cluster(
    cfg: &DataplaneConfig,
    shared: &Arc<crate::flow::Shared>,
    cluster: Option<&Arc<crate::cluster::Registry>>,
    intake: Option<std::sync::mpsc::Receiver<crate::flow::cluster::ClusterOp>>,
    registry: &crate::control::metrics::MetricsRegistry,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, DataplaneError> {
    let (Some(c), Some(cluster), Some(intake)) = (&cfg.control.cluster, cluster, intake) else { return Ok(None) };
    registry.register(Arc::clone(cluster) as Arc<dyn crate::control::metrics::MetricsSource>);
    tracing::info!(node = %c.node, servers = ?c.servers, "cluster: joining");
    crate::cluster::start(c.clone(), Arc::clone(shared), Arc::clone(cluster), intake, Arc::clone(stop))
        .map(Some)
        .map_err(|e| DataplaneError::Setup(format!("cannot start the cluster thread: {e}")))
}

/// The records thread: drains the workers' event rings into the message records
/// (when `[records] path` is set) and the log. It stops with the store thread, after
/// the workers, so their last events are written.
fn start_records(
    cfg: &DataplaneConfig,
    shared: &Arc<crate::flow::Shared>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, DataplaneError> {
    let writer = crate::control::records::Writer::open(&cfg.control.records).map_err(|e| {
        let path = cfg.control.records.path.as_ref().map_or(String::new(), |p| p.display().to_string());
        DataplaneError::Setup(format!("records file {path}: {e}"))
    })?;
    if let Some(path) = &cfg.control.records.path {
        tracing::info!("message records to {}", path.display());
    }
    shared.records_on.store(writer.is_some(), Ordering::SeqCst);
    let (shared, stop) = (Arc::clone(shared), Arc::clone(stop));
    std::thread::Builder::new()
        .name("iwf-records".into())
        .spawn(move || crate::flow::records::run(&shared, writer, &stop))
        .map(Some)
        .map_err(|e| DataplaneError::Setup(format!("cannot start the records thread: {e}")))
}

/// What the run did, printed once it stopped: the flows, the counters, each port's
/// hardware counters.
fn final_report(shared: &crate::flow::Shared, stats: &Stats, ports: &[Port]) {
    tracing::info!("final flows {}", shared.stats.line());
    report("final", stats, ports);
    for p in ports {
        let hw = p.hw_stats();
        tracing::info!(
            "final-hw port={} ipackets={} opackets={} imissed={} ierrors={} oerrors={} rx_nombuf={}",
            p.name,
            hw.ipackets,
            hw.opackets,
            hw.imissed,
            hw.ierrors,
            hw.oerrors,
            hw.rx_nombuf
        );
    }
}

/// How long READY=1 waits for iwf's own binds to SMSCs before it goes anyway.
const BIND_GRACE: Duration = Duration::from_secs(10);

/// Sends READY=1 once every SMSC iwf binds to is bound, or [`BIND_GRACE`] has passed;
/// whether it was sent.
fn notify_ready(
    notifier: &crate::control::notify::Notifier,
    stats: &Stats,
    provision: &crate::control::reload::Reloader<crate::control::provision::Provision>,
    elapsed: Duration,
) -> bool {
    let expected = provision.snapshot().legacy.iter().filter(|l| l.connect.is_some()).count() as u64;
    let bound: u64 = (0..stats.ports.len()).map(|i| stats.totals(i).smpp.client_up).sum();
    if bound < expected && elapsed < BIND_GRACE {
        return false;
    }
    let status = format!("serving; {bound} of {expected} SMSC binds up");
    if let Err(e) = notifier.notify(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id())) {
        tracing::warn!("systemd notification failed: {e}");
    }
    if notifier.is_active() {
        tracing::info!("told systemd READY=1 ({status})");
    }
    true
}

/// Opens every configured port with `queues` queue pairs over `pool`.
fn open_ports(
    config_path: &str,
    cfg: &DataplaneConfig,
    queues: u16,
    pool: &Mempool,
) -> Result<Vec<Port>, DataplaneError> {
    let link_wait = Duration::from_millis(cfg.control.link_wait_ms);
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for (index, pc) in cfg.ports.iter().enumerate() {
        match Port::open(pc, queues, pool, link_wait) {
            Ok(p) => ports.push(p),
            Err(PortError::NotFound) => {
                return Err(DataplaneError::DeviceNotFound {
                    path: config_path.to_string(),
                    port: pc.name.clone(),
                    device: Box::new(pc.device.clone()),
                    line: pc.device_line,
                })
            }
            Err(PortError::Setup(message)) => return Err(DataplaneError::PortSetup { port: pc.name.clone(), message }),
            Err(PortError::NoLink(waited)) => {
                return Err(DataplaneError::NoLink { port: pc.name.clone(), index, waited })
            }
        }
    }
    Ok(ports)
}

/// Says what was opened: the ports, the SIP next hop, iwf's own SMPP binds.
fn announce(cfg: &DataplaneConfig, ports: &[Port]) {
    for (p, pc) in ports.iter().zip(&cfg.ports) {
        let link = p.link();
        tracing::info!(
            "port {} = {} (driver {}, port {}) mac {} address {}/{} queues {} rss {} link {}",
            p.name,
            pc.device.ethdev_name(),
            p.driver,
            p.id,
            p.mac_text(),
            pc.address,
            pc.prefix_len,
            p.queues,
            if p.rss { "on" } else { "off" },
            if link.up { "up" } else { "down" }
        );
    }

    if let (Some(nh), Some(i)) = (cfg.sip.next_hop, cfg.sip.next_hop_port) {
        tracing::info!(
            "SIP next hop {nh}: OPTIONS every {} ms from port {} (worker of queue 0)",
            cfg.sip.options_interval_ms,
            cfg.ports.get(i).map_or("?", |p| p.name.as_str())
        );
    }
    for l in &cfg.legacy {
        if let (Some(c), Some(i)) = (l.connect, l.connect_port) {
            tracing::info!(
                "SMPP client {} binds to {c} as `{}` from port {} (worker of queue 0)",
                l.name,
                l.system_id,
                cfg.ports.get(i).map_or("?", |p| p.name.as_str())
            );
        }
    }
}

/// The durable store of `[control] store`, if one is configured.
fn open_store(config_path: &str, cfg: &DataplaneConfig) -> Result<Option<crate::route::store::Store>, DataplaneError> {
    Ok(match &cfg.control.store {
        Some(path) => {
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            let s = crate::route::store::Store::create(path).map_err(|e| {
                DataplaneError::Setup(format!("{config_path}: control.store `{path}`: {e}: {}", e.advice()))
            })?;
            tracing::info!("durable store {path}: {} receipts queued", s.queued_total().unwrap_or(0));
            Some(s)
        }
        None => None,
    })
}

/// One engine per worker; after a restart each gets the correlation records still
/// valid (a receipt may come back on any core holding a bind of its system), and the
/// first the parked SMSC receipts.
fn engines(
    config_path: &str,
    cfg: &DataplaneConfig,
    workers: usize,
    shared: &Arc<crate::flow::Shared>,
    mut store: Option<&mut crate::route::store::Store>,
) -> Result<Vec<crate::flow::Flows>, DataplaneError> {
    let conv_sent_by = cfg
        .sip
        .next_hop_port
        .and_then(|i| cfg.ports.get(i))
        .map(|p| format!("{}:{}", p.address, p.sip_udp_port.unwrap_or(5060)))
        .unwrap_or_else(|| "0.0.0.0:5060".into());
    let unix = super::sip::unix_now();
    let unreadable = |what: &str, e: crate::route::store::StoreError| {
        DataplaneError::Setup(format!("{config_path}: control.store: {what} not readable: {e}: {}", e.advice()))
    };
    let restorable = match store.as_deref_mut().map(|db| db.restorable(unix)) {
        Some(r) => r.map_err(|e| unreadable("correlation records", e))?,
        None => Vec::new(),
    };
    // SMSC receipts answered when parked: applied again on the first core.
    let parked = match store.as_deref_mut().map(|db| db.parked(unix)) {
        Some(r) => r.map_err(|e| unreadable("parked receipts", e))?,
        None => Vec::new(),
    };
    // What reports of MMS relayed before the restart need: each to the worker its tag names.
    let mms_origins = match store.as_deref_mut().map(|db| db.mms_origins(unix)) {
        Some(r) => r.map_err(|e| unreadable("MMS origins", e))?,
        None => Vec::new(),
    };
    if let Some(n) = store.as_deref().and_then(|db| db.quarantined().ok()).filter(|n| *n > 0) {
        tracing::warn!("durable store: {n} records do not decode and are quarantined (table `quarantine`)");
    }
    let all_flows: Vec<crate::flow::Flows> = (0..workers)
        .map(|q| {
            let next_hop =
                cfg.sip.next_hop.unwrap_or(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 5060));
            let config = crate::flow::FlowsConfig {
                core: q as u16,
                next_hop,
                local_sent_by: conv_sent_by.clone(),
                parts_aside: cfg.smpp.parts_aside,
                reassembly: (cfg.smpp.reassembly_messages, cfg.smpp.reassembly_bytes),
                max_sip_message: cfg.sip.max_message_bytes,
                // Every worker has a client toward each MMS centre, on the port that
                // reaches it.
                mm4_clients: cfg.legacy.iter().filter(|l| l.mms.is_some()).map(|l| l.id).collect(),
            };
            let mut f = crate::flow::Flows::new(config, Arc::clone(shared));
            if store.is_some() {
                let n = f.restore(&restorable, super::sip::unix_now());
                let m = f.restore_mms_origins(&mms_origins);
                if m > 0 {
                    tracing::info!("worker {q}: {m} MMS awaiting reports restored from the store");
                }
                if q == 0 {
                    tracing::info!("{n} correlation records restored from the store");
                    let p = f.restore_parked(&parked, super::sip::unix_now());
                    tracing::info!("{p} parked SMSC receipts restored from the store");
                }
            }
            f
        })
        .collect();
    Ok(all_flows)
}

/// The admin endpoint of `[control] admin`, if one is configured: metrics, health,
/// reload.
fn start_admin(
    config_path: &str,
    cfg: &DataplaneConfig,
    registry: &Arc<crate::control::metrics::MetricsRegistry>,
    stats: &Arc<Stats>,
    provision: &Arc<crate::control::reload::Reloader<crate::control::provision::Provision>>,
    shared: &Arc<crate::flow::Shared>,
    cluster: Option<Arc<crate::cluster::Registry>>,
) -> Result<Option<crate::control::admin::AdminHandle>, DataplaneError> {
    let node = cfg.control.cluster.as_ref().map(|c| c.node.clone()).unwrap_or_default();
    Ok(match cfg.control.admin {
        Some(addr) => {
            let (hs, rp, rs) = (Arc::clone(stats), Arc::clone(provision), Arc::clone(shared));
            let rs2 = Arc::clone(shared);
            let hc = cluster.clone();
            let handlers = crate::control::admin::Handlers {
                metrics: Arc::clone(registry),
                health: Some(Box::new(move || {
                    let links: serde_json::Map<String, serde_json::Value> =
                        hs.ports.iter().map(|p| (p.name.clone(), p.link_up.load(Ordering::Relaxed).into())).collect();
                    // Healthy while the pipelines run; the links are reported, not
                    // judged (net_tap reads "down" once its tap moved to a namespace).
                    let flows = rs2.stats.line();
                    // A worker that stopped polling for a second, or died, makes iwf
                    // unhealthy, by name.
                    let troubles = hs.liveness.troubles(WORKER_STALL_MS, STOP.load(Ordering::Relaxed));
                    let workers: Vec<serde_json::Value> = hs
                        .liveness
                        .ages_ms()
                        .iter()
                        .enumerate()
                        .map(|(q, age)| {
                            let trouble = troubles.iter().find(|(w, _)| *w == q).map(|(_, t)| t.to_string());
                            serde_json::json!({ "worker": q, "last_poll_ms_ago": age, "trouble": trouble })
                        })
                        .collect();
                    let mut details = serde_json::json!({ "links_up": links, "flows": flows, "workers": workers });
                    // The cluster's state is reported, not judged: without a quorum this
                    // box still relays what it holds binds for (and refuses the rest
                    // 503), so a balancer should keep sending it work.
                    if let Some(c) = &hc {
                        details["cluster"] = c.health();
                    }
                    crate::control::admin::Health {
                        healthy: !STOP.load(Ordering::Relaxed) && troubles.is_empty(),
                        details,
                    }
                })),
                reload: Some(Box::new(move || {
                    let r = rp.reload_text();
                    if r.is_ok() {
                        rs.sync_lanes();
                    }
                    r
                })),
                api: {
                    let (shared, provision) = (Arc::clone(shared), Arc::clone(provision));
                    Some(Box::new(move |what: &str| match what {
                        "config" => Some(serde_json::json!({
                            "path": provision.path().display().to_string(),
                            "generation": provision.generation(),
                            "reloads_ok": provision.reloads_ok(),
                            "reloads_failed": provision.reloads_failed(),
                            "systems": provision.snapshot().legacy.len(),
                        })),
                        "cluster" => Some(match &cluster {
                            Some(c) => c.view(&node),
                            None => serde_json::json!({ "node": null, "connected": false, "holders": [] }),
                        }),
                        other => shared.operator_view(other),
                    }))
                },
                action: {
                    let shared = Arc::clone(shared);
                    Some(Box::new(move |action: &str, system: &str| shared.operator_action(action, system)))
                },
                token: match &cfg.control.admin_token_file {
                    Some(path) => Some(
                        crate::control::admin::AdminToken::read(std::path::Path::new(path))
                            .map_err(|e| {
                                DataplaneError::Setup(format!(
                                    "{config_path}: control.admin_token_file: {e} (write one with `iwf keygen --out {path}`)"
                                ))
                            })?,
                    ),
                    None => None,
                },
            };
            let a = crate::control::admin::Admin::start(addr, handlers)
                .map_err(|e| DataplaneError::Setup(format!("admin endpoint on {addr}: {e}")))?;
            tracing::info!("admin endpoint http://{addr}/ (metrics, healthz, POST /-/reload with the token)");
            Some(a)
        }
        None => None,
    })
}

/// What the workers of one application share per port (and the counters).
struct PortShared<'a> {
    limits: &'a [Arc<PeerLimits>],
    guards: &'a [Arc<super::admission::BindGuard>],
    directory: &'a Directory,
    stats: &'a Arc<Stats>,
    sip_budget: &'a Arc<super::tcp::StreamBudget>,
}

/// The bind admission of one port (all its workers share it).
fn new_guard(cfg: &DataplaneConfig) -> Arc<super::admission::BindGuard> {
    Arc::new(super::admission::BindGuard::new(
        cfg.smpp.backoff,
        cfg.smpp.max_unbound,
        4096,
        cfg.smpp.specific_bind_errors,
    ))
}

/// Worker `q`'s view of port `index`: its IP host, its SIP service, its TCP stack (SMPP
/// server and clients, SIP over TCP) and its queue pair.
fn worker_port(
    cfg: &DataplaneConfig,
    q: usize,
    index: usize,
    p: &Port,
    pc: &crate::control::config::PortConfig,
    route: Route,
    shared: &PortShared<'_>,
) -> Result<WorkerPort, DataplaneError> {
    let mut host = Host::new(EthernetAddress(p.mac), pc.address).with_subnet(pc.prefix_len, pc.gateway);
    let mut services: Vec<Option<SipUdp>> = (0..UDP_SERVICES).map(|_| None).collect();
    if let Some(port) = pc.sip_udp_port {
        let slot = host.bind_udp(port).map_err(|e| DataplaneError::Setup(e.to_string()))?;
        // The keep-alive goes from the worker of queue 0 of the next hop's port.
        let keepalive = match (cfg.sip.next_hop, cfg.sip.next_hop_port) {
            (Some(next_hop), Some(i)) if i == index && q == 0 && cfg.sip.options_interval_ms > 0 => {
                Some(KeepAlive { next_hop, interval_ms: cfg.sip.options_interval_ms })
            }
            _ => None,
        };
        let settings = SipSettings {
            local: std::net::SocketAddrV4::new(pc.address, port),
            server_transactions: cfg.sip.server_transactions,
            server_slot_bytes: cfg.sip.server_slot_bytes,
            client_transactions: cfg.sip.client_transactions,
            keepalive,
            owner: q as u16,
            timer_t1_ms: cfg.sip.timer_t1_ms,
            trusted: cfg.sip.trusted.clone(),
            untrusted: cfg.sip.untrusted,
        };
        // iwf's own requests (MESSAGEs, IMDNs) leave from the next hop's port.
        let originates = cfg.sip.next_hop_port == Some(index);
        if let Some(s) = services.get_mut(slot) {
            *s = Some(SipUdp::new(&settings, route, Arc::clone(shared.stats), index, q).originating(originates));
        }
    }
    // iwf's binds to SMSCs leave from the worker of queue 0 of their port.
    let clients: Vec<SmscClient> = cfg
        .legacy
        .iter()
        .filter(|l| q == 0 && l.connect_port == Some(index))
        .filter_map(|l| {
            Some(SmscClient {
                system: l.id,
                remote: l.connect?,
                credentials: Credentials::transceiver(l.system_id.as_bytes(), l.password.as_bytes())?,
                window: l.window,
                reconnect: ReconnectConfig { initial: l.reconnect_ms.0, max: l.reconnect_ms.1 },
            })
        })
        .collect();
    // iwf's own SIP requests over 1300 octets go to the next hop over TCP from
    // its port (each worker its own connection: active opens belong to it).
    let sip_next_hop = cfg.sip.next_hop.filter(|_| cfg.sip.next_hop_port == Some(index));
    // Each worker its own SMTP client toward each MMS centre this port reaches.
    let mm4_clients: Vec<super::tcp::Mm4Client> = cfg
        .legacy
        .iter()
        .filter_map(|l| l.mms.as_ref().map(|m| (l.id, m)))
        .filter(|(_, m)| m.next_hop_port == index)
        .map(|(system, m)| {
            let reconnect_ms = cfg.legacy.iter().find(|l| l.id == system).map_or((1_000, 60_000), |l| l.reconnect_ms);
            super::tcp::Mm4Client { system, remote: m.next_hop, reconnect_ms }
        })
        .collect();
    let tcp = (pc.smpp_tcp_port.is_some()
        || pc.sip_tcp_port.is_some()
        || pc.smtp_tcp_port.is_some()
        || !clients.is_empty()
        || !mm4_clients.is_empty()
        || sip_next_hop.is_some())
    .then(|| {
        let settings = StackSettings {
            mac: EthernetAddress(p.mac),
            ip: pc.address,
            prefix_len: pc.prefix_len,
            gateway: pc.gateway,
            smpp_port: pc.smpp_tcp_port,
            sip_port: pc.sip_tcp_port,
            clients,
            tcp: cfg.tcp,
            limits: shared
                .limits
                .get(index)
                .map_or_else(|| Arc::new(PeerLimits::new(cfg.tcp.max_connections_per_peer)), Arc::clone),
            bind_guard: shared.guards.get(index).map_or_else(|| new_guard(cfg), Arc::clone),
            parts_aside: cfg.smpp.parts_aside,
            sip_trusted: cfg.sip.trusted.clone(),
            queue: q as u16,
            sip_transactions: 1024,
            sip_slot_bytes: cfg.sip.server_slot_bytes,
            sip_next_hop,
            timer_f_ms: cfg.sip.timer_t1_ms.saturating_mul(64),
            sip_max_message: cfg.sip.max_message_bytes,
            sip_budget: Arc::clone(shared.sip_budget),
            smtp_port: pc.smtp_tcp_port,
            mm4_clients,
            // An address literal names iwf in SMTP (RFC 5321 §4.1.3): the port's own.
            smtp_hostname: format!("[{}]", pc.address),
            smtp_max_message: cfg
                .legacy
                .iter()
                .filter_map(|l| l.mms.as_ref().map(|m| m.max_message_size))
                .max()
                .unwrap_or(1 << 20),
        };
        TcpStack::new(&settings, shared.directory.clone(), route, 0).on_port(index as u8)
    });
    let arp_hold = super::arp::ArpHold::new(
        super::worker::ARP_HOLD_PER_NEIGHBOUR,
        super::worker::ARP_HOLD_MAX,
        super::worker::ARP_HOLD_MS,
    );
    let queue = p
        .queue(q as u16)
        .ok_or_else(|| DataplaneError::Setup(format!("port {}: no queue {q} for worker {q}", p.name)))?;
    let scratch = vec![0u8; usize::from(super::host::MAX_FRAME)].into_boxed_slice();
    Ok(WorkerPort { queue, index, host, gateway: pc.gateway, services, tcp, arp_hold, scratch })
}

/// The SP/SC rings between every ordered pair of workers (none with one worker), as
/// each worker's [`MbufHandoff`]: its producer ends towards the others, its consumer
/// ends from them. A ring is freed once both its ends are gone (the workers stopped).
fn handoffs(workers: usize, socket: i32) -> Result<Vec<MbufHandoff>, String> {
    /// Ring size (a power of two; one slot stays empty).
    const SIZE: u32 = 1024;
    if workers <= 1 {
        return Ok(vec![Handoff::single()]);
    }
    let mut out: Vec<Vec<Option<RingProducer>>> = (0..workers).map(|_| (0..workers).map(|_| None).collect()).collect();
    let mut inbound: Vec<Vec<Option<RingConsumer>>> =
        (0..workers).map(|_| (0..workers).map(|_| None).collect()).collect();
    for src in 0..workers {
        for dst in (0..workers).filter(|d| *d != src) {
            let (p, c) = super::dpdk::ring::create(&format!("iwf_tcp_{src}_{dst}"), SIZE, socket)
                .map_err(|e| format!("the TCP handoff ring {src}->{dst}: {e}"))?;
            if let Some(slot) = out.get_mut(src).and_then(|v| v.get_mut(dst)) {
                *slot = Some(p);
            }
            if let Some(slot) = inbound.get_mut(dst).and_then(|v| v.get_mut(src)) {
                *slot = Some(c);
            }
        }
    }
    Ok(out
        .into_iter()
        .zip(inbound)
        .enumerate()
        .map(|(me, (out, inbound))| Handoff::new(me as u16, workers as u16, out, inbound))
        .collect())
}

fn report(tag: &str, stats: &Stats, ports: &[Port]) {
    for (i, p) in stats.ports.iter().enumerate() {
        let link = if p.link_up.load(Ordering::Relaxed) { "up" } else { "down" };
        let _ = ports;
        tracing::info!("{tag} port={} link={link} {}", p.name, stats.totals(i).line());
    }
}

/// The control thread: pins itself, watches links, logs counters when they change.
/// A worker silent for this long is unhealthy (`/healthz` 503, logged).
const WORKER_STALL_MS: u64 = 1000;

fn control_loop(
    core: usize,
    stats: &Stats,
    ports: &[Port],
    shared: &crate::flow::Shared,
    provision: &crate::control::reload::Reloader<crate::control::provision::Provision>,
    interval: Duration,
) {
    let mut last_flows = String::new();
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        tracing::warn!("control thread could not be pinned to CPU {core}; running unpinned");
    }
    let mut last: Vec<String> = vec![String::new(); stats.ports.len()];
    let mut next_hop: Vec<u64> = vec![0; stats.ports.len()];
    let mut next = Instant::now();
    let mut next_nic = Instant::now();
    // systemd (Type=notify): READY=1 once iwf's own binds are up (or after a grace time,
    // for SMSCs that are down: the status line says so), the watchdog fed while every
    // worker polls.
    let notifier = crate::control::notify::Notifier::from_env();
    let mut watchdog = crate::control::notify::Watchdog::from_env(Instant::now());
    let started = Instant::now();
    let mut ready_sent = false;
    // The troubles already logged (each is said once, and again once it clears).
    let mut told: Vec<(usize, bool)> = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        let troubles = stats.liveness.troubles(WORKER_STALL_MS, false);
        for (w, t) in &troubles {
            let kind = matches!(t, crate::dataplane::liveness::Trouble::Stalled(_));
            if !told.contains(&(*w, kind)) {
                tracing::warn!("worker {w} {t}");
                told.push((*w, kind));
            }
        }
        told.retain(|(w, kind)| {
            let still = troubles
                .iter()
                .any(|(x, t)| x == w && matches!(t, crate::dataplane::liveness::Trouble::Stalled(_)) == *kind);
            if !still {
                tracing::info!("worker {w} polling again");
            }
            still
        });
        if !ready_sent {
            ready_sent = notify_ready(&notifier, stats, provision, started.elapsed());
        }
        if let Some(w) = watchdog.as_mut().filter(|_| ready_sent) {
            if w.due(Instant::now(), troubles.is_empty()) {
                let _ = notifier.notify("WATCHDOG=1");
            }
        }
        if crate::control::reload::take_sighup() {
            let _ = notifier.notify("RELOADING=1");
            match provision.reload() {
                Ok(summary) => {
                    let added = shared.sync_lanes();
                    tracing::info!("reload (SIGHUP): {summary}; {added} new lanes");
                    let _ = notifier.notify(&format!("READY=1\nSTATUS=reloaded: {summary}"));
                }
                Err(e) => {
                    tracing::warn!("reload (SIGHUP) refused, the running configuration stays: {e}");
                    let _ = notifier.notify(&format!("READY=1\nSTATUS=reload refused: {e}"));
                }
            }
        }
        let read_nic = Instant::now() >= next_nic;
        if read_nic {
            next_nic = Instant::now() + Duration::from_secs(1);
        }
        for (i, p) in ports.iter().enumerate() {
            let up = p.link().up;
            if let Some(pc) = stats.ports.get(i) {
                if pc.link_up.swap(up, Ordering::Relaxed) != up {
                    tracing::info!("port {} link {}", p.name, if up { "up" } else { "down" });
                }
                if read_nic {
                    let hw = p.hw_stats();
                    pc.nic.store([hw.ipackets, hw.opackets, hw.imissed, hw.ierrors, hw.oerrors, hw.rx_nombuf]);
                }
            }
        }
        for (i, p) in stats.ports.iter().enumerate() {
            let state = stats.totals(i).sip.next_hop_state;
            if let Some(prev) = next_hop.get_mut(i) {
                if *prev != state && state > 0 {
                    tracing::info!("port {} SIP next hop {}", p.name, if state == 2 { "up" } else { "down" });
                }
                *prev = state;
            }
        }
        if !interval.is_zero() && Instant::now() >= next {
            next = Instant::now() + interval;
            let line = shared.stats.line();
            if line != last_flows {
                tracing::info!("flows {line}");
                last_flows = line;
            }
            for (i, p) in stats.ports.iter().enumerate() {
                let line = stats.totals(i).line();
                if let Some(prev) = last.get_mut(i) {
                    if *prev != line {
                        let link = if p.link_up.load(Ordering::Relaxed) { "up" } else { "down" };
                        tracing::info!("stats port={} link={link} {line}", p.name);
                        *prev = line;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
