//! An ethdev port: one RX and one TX queue per worker lcore, RSS where the port has it,
//! started at open, stopped and closed on drop; and the burst API a worker polls it
//! with: a [`PortQueue`] is the one handle of a queue pair, [`RxBurst`] receives into
//! owned [`Mbuf`]s, [`TxBatch`] collects frames and sends them a burst at a time.
use super::mbuf::{Mbuf, Mempool};
use crate::control::config::PortConfig;
use dpdk_sys as sys;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames per RX burst (a multiple of 8 for the vector drivers).
pub const BURST: usize = 32;
/// Frames collected per queue before a TX burst is forced.
pub const TX_BATCH: usize = 2 * BURST;

/// Why a port did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// EAL has no device of that name (the vdev failed to probe, or the PCI device is
    /// not bound to a DPDK driver).
    NotFound,
    /// A setup step failed: what, and why.
    Setup(String),
    /// No link within the wait.
    NoLink(Duration),
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Up or down.
    pub up: bool,
    /// Mbit/s (0 when unknown).
    pub speed_mbps: u32,
}

/// Hardware counters of a port (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Packets the NIC dropped because RX queues were full.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// An open, started port.
#[derive(Debug)]
pub struct Port {
    /// ethdev port id.
    pub id: u16,
    /// Name from the configuration.
    pub name: String,
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// Queue pairs (one per worker lcore).
    pub queues: u16,
    /// Whether RSS spreads RX over the queues.
    pub rss: bool,
    /// The driver's name.
    pub driver: String,
    /// Which queue pairs have a live [`PortQueue`].
    taken: Arc<[AtomicBool]>,
}

/// One queue pair of a started port: the only handle to it while it lives, so that
/// one lcore at a time polls the queue (DPDK's RX and TX queues are not thread-safe).
/// It is `Send`, not `Clone`; dropping it frees the queue for another handle.
#[derive(Debug)]
pub struct PortQueue {
    port: u16,
    queue: u16,
    taken: Arc<[AtomicBool]>,
}

impl PortQueue {
    /// The ethdev port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to [`BURST`] frames into `rx` (what `rx` still held is freed first);
    /// returns how many arrived.
    pub fn receive(&self, rx: &mut RxBurst) -> usize {
        rx.clear();
        // SAFETY: this handle is the queue's only one, used from one thread (it is not
        // Sync); the port was started with this queue (Port::queue checked the index)
        // and is closed only after every handle is gone (the application joins its
        // workers before dropping ports); `pkts` has room for BURST pointers.
        let n = unsafe { sys::rte_eth_rx_burst(self.port, self.queue, rx.pkts.as_mut_ptr(), BURST as u16) };
        rx.n = usize::from(n).min(BURST);
        rx.next = 0;
        rx.n
    }

    /// Receives and frees frames until the queue is empty; returns how many.
    pub fn drain(&self) -> usize {
        let mut rx = RxBurst::new();
        let mut total = 0;
        loop {
            let n = self.receive(&mut rx);
            total += n;
            if n == 0 {
                return total;
            }
        }
    }
}

impl Drop for PortQueue {
    fn drop(&mut self) {
        if let Some(t) = self.taken.get(usize::from(self.queue)) {
            t.store(false, Ordering::Release);
        }
    }
}

/// The frames of one RX burst, handed out one by one as owned [`Mbuf`]s; those not
/// taken are freed with the next burst or on drop.
pub struct RxBurst {
    pkts: [*mut sys::rte_mbuf; BURST],
    n: usize,
    next: usize,
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst::new()
    }
}

impl std::fmt::Debug for RxBurst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBurst").field("left", &(self.n - self.next)).finish()
    }
}

impl RxBurst {
    /// An empty burst.
    pub fn new() -> RxBurst {
        RxBurst { pkts: [std::ptr::null_mut(); BURST], n: 0, next: 0 }
    }

    fn clear(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}

impl Iterator for RxBurst {
    type Item = Mbuf;

    fn next(&mut self) -> Option<Mbuf> {
        while self.next < self.n {
            let raw = self.pkts.get(self.next).copied()?;
            self.next += 1;
            // SAFETY: rx_burst handed entries `..n` over to us and each is taken once
            // (`next` only grows).
            if let Some(m) = unsafe { Mbuf::from_raw(raw) } {
                return Some(m);
            }
        }
        None
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// What a [`TxBatch`] did since it was last asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxTotals {
    /// Frames the driver took.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames it did not take (its ring was full): freed.
    pub dropped: u64,
}

/// Frames waiting for a TX burst on one queue. Full, it sends before taking more; the
/// caller sends the rest with [`TxBatch::flush`] at the end of its poll.
pub struct TxBatch {
    port: u16,
    queue: u16,
    pkts: [*mut sys::rte_mbuf; TX_BATCH],
    n: usize,
    bytes: u64,
    totals: TxTotals,
}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBatch").field("port", &self.port).field("queue", &self.queue).field("n", &self.n).finish()
    }
}

impl TxBatch {
    /// An empty batch for `q` (it borrows the handle's queue for as long as the batch
    /// is used on this thread; a batch is not `Send`).
    pub fn new(q: &PortQueue) -> TxBatch {
        TxBatch {
            port: q.port,
            queue: q.queue,
            pkts: [std::ptr::null_mut(); TX_BATCH],
            n: 0,
            bytes: 0,
            totals: TxTotals::default(),
        }
    }

    /// Adds a frame, sending the batch first when it is full.
    pub fn push(&mut self, m: Mbuf) {
        if self.n == TX_BATCH {
            self.send();
        }
        if let Some(slot) = self.pkts.get_mut(self.n) {
            self.bytes += m.pkt_len() as u64;
            *slot = m.into_raw();
            self.n += 1;
        }
    }

    fn send(&mut self) {
        if self.n == 0 {
            return;
        }
        let n = self.n.min(TX_BATCH);
        // SAFETY: pkts[..n] are mbufs we own; the queue is the one of a live PortQueue
        // on this thread (TxBatch is not Send); the driver takes the first `sent`.
        let sent =
            usize::from(unsafe { sys::rte_eth_tx_burst(self.port, self.queue, self.pkts.as_mut_ptr(), n as u16) });
        let sent = sent.min(n);
        let mut bytes = self.bytes;
        for raw in self.pkts.get(sent..n).unwrap_or(&[]) {
            // SAFETY: not taken by the driver, so still ours: free it (count it first).
            if let Some(m) = unsafe { Mbuf::from_raw(*raw) } {
                bytes = bytes.saturating_sub(m.pkt_len() as u64);
                self.totals.dropped += 1;
            }
        }
        self.totals.sent += sent as u64;
        self.totals.bytes += bytes;
        self.n = 0;
        self.bytes = 0;
    }

    /// Sends what waits; returns what the batch did since the last flush.
    pub fn flush(&mut self) -> TxTotals {
        self.send();
        std::mem::take(&mut self.totals)
    }
}

impl Drop for TxBatch {
    fn drop(&mut self) {
        // Nothing waits past its batch: what was not flushed is sent now.
        self.send();
    }
}

fn check(rc: i32, what: &str) -> Result<(), PortError> {
    if rc < 0 {
        let e = std::io::Error::from_raw_os_error(-rc);
        return Err(PortError::Setup(format!("{what} failed: {e}")));
    }
    Ok(())
}

impl Port {
    /// Finds the port of `cfg.device`, configures `queues` queue pairs with buffers from
    /// `pool`, starts it and waits up to `link_wait` for its link.
    pub fn open(cfg: &PortConfig, queues: u16, pool: &Mempool, link_wait: Duration) -> Result<Port, PortError> {
        let name = CString::new(cfg.device.ethdev_name()).map_err(|_| PortError::NotFound)?;
        let mut id = 0u16;
        // SAFETY: EAL is initialised; `name` is a valid C string, `id` a valid out pointer.
        if unsafe { sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) } != 0 {
            return Err(PortError::NotFound);
        }
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out pointer.
        check(unsafe { sys::rte_eth_dev_info_get(id, &mut info) }, "rte_eth_dev_info_get")?;
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: a static string of the driver.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        if queues > info.max_rx_queues || queues > info.max_tx_queues {
            return Err(PortError::Setup(format!(
                "{driver} supports {} RX / {} TX queues, {queues} needed (one per worker lcore): list fewer lcores",
                info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let rss_hf = sys::rss_hf_ip_udp_tcp() & info.flow_type_rss_offloads;
        let rss = queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // Every mbuf comes from one pool with refcount 1: the driver may free fast.
        let fast_free = sys::tx_offload_mbuf_fast_free();
        if info.tx_offload_capa & fast_free != 0 {
            conf.txmode.offloads |= fast_free;
        }
        // SAFETY: valid port, conf initialised.
        check(unsafe { sys::rte_eth_dev_configure(id, queues, queues, &conf) }, "rte_eth_dev_configure")?;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port and out pointers.
        check(
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) },
            "adjusting ring sizes",
        )?;
        // SAFETY: valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(sys::SOCKET_ID_ANY as u32);
        for q in 0..queues {
            // SAFETY: configured port, queue index in range, NULL conf = driver default.
            check(
                unsafe { sys::rte_eth_rx_queue_setup(id, q, rx_desc, socket, std::ptr::null(), pool.as_ptr()) },
                &format!("RX queue {q} setup"),
            )?;
            check(
                unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) },
                &format!("TX queue {q} setup"),
            )?;
        }
        // SAFETY: queues are set up.
        check(unsafe { sys::rte_eth_dev_start(id) }, "rte_eth_dev_start")?;
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port and out pointer.
        check(unsafe { sys::rte_eth_macaddr_get(id, &mut mac) }, "reading the MAC address")?;
        let taken: Arc<[AtomicBool]> = (0..queues).map(|_| AtomicBool::new(false)).collect();
        let port = Port { id, name: cfg.name.clone(), mac: mac.addr_bytes, queues, rss, driver, taken };
        if cfg.require_link {
            let deadline = Instant::now() + link_wait;
            while !port.link().up {
                if Instant::now() >= deadline {
                    return Err(PortError::NoLink(link_wait));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(port)
    }

    /// The handle of queue pair `q`: `None` when the port has no such queue or a handle
    /// of it is alive.
    pub fn queue(&self, q: u16) -> Option<PortQueue> {
        // Taken by whoever flips it first: two callers never both get a handle.
        let t = self.taken.get(usize::from(q))?;
        t.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok()?;
        Some(PortQueue { port: self.id, queue: q, taken: Arc::clone(&self.taken) })
    }

    /// Current link state (`rte_eth_link_get_nowait`).
    pub fn link(&self) -> Link {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid port and out pointer; does not wait.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc != 0 {
            return Link { up: false, speed_mbps: 0 };
        }
        Link { up: u32::from(l.link_status()) == sys::RTE_ETH_LINK_UP, speed_mbps: l.link_speed }
    }

    /// Hardware counters.
    pub fn hw_stats(&self) -> HwStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out pointer.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut s) } != 0 {
            return HwStats::default();
        }
        HwStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// The MAC address as text.
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let polled = self.taken.iter().any(|t| t.load(Ordering::Acquire));
        if polled {
            // A queue handle outlived its port: closing under it would let it poll a
            // closed device. The port is left to the process's end instead.
            tracing::warn!("port {} not closed: a queue of it is still held", self.name);
            return;
        }
        // SAFETY: no queue handle is alive, so nothing polls the port any more.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}
