//! An ethdev port: one RX and one TX queue per worker lcore, RSS where the port has it,
//! started at open, stopped and closed on drop.
use super::config::PortConfig;
use super::mbuf::Mempool;
use dpdk_sys as sys;
use std::ffi::CString;
use std::time::{Duration, Instant};

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
        let port = Port { id, name: cfg.name.clone(), mac: mac.addr_bytes, queues, rss, driver };
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
        // SAFETY: no worker polls the port any more (they have returned).
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}
