//! The packet path's configuration: `[eal]`, `[control]` and `[[ports]]`. Every error
//! names the key and its line (the same [`ConfigError`] as the `[tag]` section).
//!
//! ```toml
//! [eal]
//! lcores = "0-1"             # first = main lcore (no packets); each other one polls one queue of every port
//! file_prefix = "iwf-lab"    # unique per DPDK process: names /dev/hugepages/<prefix>* and /var/run/dpdk/<prefix>
//! hugepages = true           # false = --no-huge; then memory_mb is required
//! memory_mb = 512            # optional with hugepages (-m)
//! mbufs = 8191               # mbufs in the pool (2^n - 1 is the mempool's sweet spot)
//! mbuf_cache = 256           # per-lcore mempool cache
//! log_level = "notice"       # EAL --log-level
//! args = []                  # further EAL arguments, verbatim
//!
//! [control]
//! core = 0                   # CPU of the control thread (default: the main lcore's CPU)
//! stats_interval_ms = 1000   # counters to the log every so often (0 = only at exit)
//! link_wait_ms = 3000        # how long a port may take to come up at start
//!
//! [[ports]]
//! name = "legacy"
//! device = "net_tap0,iface=iwf-legacy0"   # a vdev spec, or a PCI address 0000:3b:00.0
//! address = "198.18.1.2/24"
//! gateway = "198.18.1.1"     # optional: a neighbour resolved by ARP at start
//! sip_udp_port = 5060        # optional: UDP port handed to the SIP service
//! rx_desc = 1024             # optional ring sizes
//! tx_desc = 1024
//! require_link = true        # a port without link at start is an error
//!
//! [sip]                      # optional: SIP over UDP on the ports with sip_udp_port
//! next_hop = "198.18.2.1:5060"   # the converged core: OPTIONS keep-alive target (optional)
//! options_interval_ms = 30000    # a keep-alive OPTIONS this often (0 = none)
//! server_transactions = 4096     # server transactions per worker (each lives 64*T1 = 32 s)
//! server_slot_bytes = 2048       # bytes stored per server transaction (request fields, then the response)
//! client_transactions = 256      # iwf's own requests in flight per worker
//! max_message_bytes = 1048576    # the largest SIP message over TCP (an MMS); larger: 413
//! stream_memory_mb = 64          # SIP-over-TCP streams' memory beyond 8 KiB each, all together; beyond: 503
//!
//! [tcp]                      # optional: the per-core userspace TCP (smoltcp)
//! sockets = 32               # TCP sockets per worker and port (listeners + connections), allocated at start
//! rx_buffer = 16384          # receive buffer per socket, bytes
//! tx_buffer = 16384          # send buffer per socket, bytes
//! max_connections_per_peer = 8   # connections one peer IP may hold on a port (all workers together)
//!
//! [[legacy]]                 # the provisioned legacy systems (SMPP)
//! id = 1                     # the stable 16-bit index the tag carries
//! name = "smsc-a"
//! system_id = "smsca"        # it binds to iwf with these (smpp_tcp_port of its port) ...
//! password = "pwa"
//! allow = ["198.18.1.0/24"]  # ... from these addresses only
//! window = 10                # its requests iwf holds unanswered at most (more: ESME_RTHROTTLED)
//! # connect = "198.18.1.1:2776"  # instead: iwf binds to it as an ESME with system_id/password
//! # reconnect_initial_ms = 1000  # then: back-off after a failure, doubling ...
//! # reconnect_max_ms = 60000     # ... up to this (jittered); none after ESME_RINVPASWD/RINVSYSID
//! ```
#![deny(unsafe_code)]

use super::file::{self, File};
use super::{ConfigError, Doc};
use crate::interwork::{Encoding, IdCanonicalisation};
use crate::route::select::ExchangeKind;
use serde_spanned::Spanned;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Largest lcore id accepted (DPDK's default `RTE_MAX_LCORE` is 128).
pub const MAX_LCORE: u32 = 127;

/// `[eal]`: how the Environment Abstraction Layer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// The lcores, in the order given; the first is the main lcore.
    pub lcores: Vec<u32>,
    /// The CPU each lcore runs on (`N@C` in `eal.lcores`; the lcore's own number
    /// otherwise), in the order of `lcores`.
    pub cpus: Vec<u32>,
    /// Line of `eal.lcores` (for errors found later, e.g. a CPU that does not exist).
    pub lcores_line: usize,
    /// `--file-prefix`.
    pub file_prefix: String,
    /// Hugepages (true) or `--no-huge`.
    pub hugepages: bool,
    /// `-m`, megabytes.
    pub memory_mb: Option<u32>,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Per-lcore mempool cache.
    pub mbuf_cache: u32,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// Further EAL arguments.
    pub args: Vec<String>,
}

/// `[control]`: the control-plane thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// CPU the control thread is pinned to; `None` = the main lcore's.
    pub core: Option<usize>,
    /// Counters to the log every so often; 0 = only at exit.
    pub stats_interval_ms: u64,
    /// How long a port may take to come up at start.
    pub link_wait_ms: u64,
    /// The durable store's file (receipts for unbound systems); `None`: no durable
    /// queue, such receipts are answered 503.
    pub store: Option<String>,
    /// The admin endpoint (`/metrics`, `/healthz`, `POST /-/reload`); `None`: off.
    pub admin: Option<std::net::SocketAddr>,
    /// The file holding the admin endpoint's bearer token (calls that change
    /// something need it); `None`: such calls are refused.
    pub admin_token_file: Option<String>,
    /// `[records]`: the message records.
    pub records: crate::control::records::RecordsConfig,
    /// `[log]`: the log's level and format at start.
    pub log: crate::control::logging::LogConfig,
    /// `[cluster]`: the NATS JetStream cluster this box is one of; `None`: one box.
    pub cluster: Option<crate::control::cluster::ClusterConfig>,
}

/// What a port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A virtual device (`--vdev`): `net_tap0,iface=NAME`, `net_null0`, ...
    Vdev {
        /// The whole spec, as given to `--vdev`.
        spec: String,
        /// The device name (before the first comma): what ethdev knows it by.
        name: String,
        /// The kernel interface a net_tap creates (`iface=`), if any.
        iface: Option<String>,
    },
    /// A PCI device (`-a`), `DDDD:BB:DD.F`.
    Pci {
        /// The address as given.
        address: String,
    },
}

impl Device {
    /// The ethdev name to look the port up by.
    pub fn ethdev_name(&self) -> &str {
        match self {
            Device::Vdev { name, .. } => name,
            Device::Pci { address } => address,
        }
    }

    /// Parses a device string: a PCI address, else a vdev spec.
    pub fn parse(s: &str) -> Result<Device, String> {
        if is_pci_address(s) {
            return Ok(Device::Pci { address: s.to_string() });
        }
        let name = s.split(',').next().unwrap_or("");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`{s}` is neither a PCI address (0000:3b:00.0) nor a vdev spec (net_tap0,iface=NAME)"));
        }
        let iface = s.split(',').skip(1).find_map(|kv| kv.strip_prefix("iface=")).map(str::to_string);
        if let Some(i) = &iface {
            if i.is_empty() || i.len() > 15 {
                return Err(format!("iface `{i}`: a Linux interface name has 1 to 15 characters"));
            }
        }
        Ok(Device::Vdev { spec: s.to_string(), name: name.to_string(), iface })
    }
}

fn is_pci_address(s: &str) -> bool {
    // DDDD:BB:DD.F, or BB:DD.F
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    match devfn.split_once('.') {
        Some((dev, f)) => hex(bus, 2) && hex(dev, 2) && f.len() == 1 && matches!(f.as_bytes()[0], b'0'..=b'7'),
        None => false,
    }
}

/// One `[[ports]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's name in logs and counters.
    pub name: String,
    /// What it is.
    pub device: Device,
    /// Line of its `device` key.
    pub device_line: usize,
    /// Our address on it.
    pub address: Ipv4Addr,
    /// The prefix length of its subnet.
    pub prefix_len: u8,
    /// A neighbour to resolve at start.
    pub gateway: Option<Ipv4Addr>,
    /// UDP port handed to the SIP service.
    pub sip_udp_port: Option<u16>,
    /// RX ring size.
    pub rx_desc: u16,
    /// TX ring size.
    pub tx_desc: u16,
    /// Whether a port without link at start is an error.
    pub require_link: bool,
    /// TCP port of the SMPP server (legacy systems bind to iwf here).
    pub smpp_tcp_port: Option<u16>,
    /// TCP port of SIP over TCP.
    pub sip_tcp_port: Option<u16>,
    /// TCP port of the SMTP server MMS centres relay MM4 to.
    pub smtp_tcp_port: Option<u16>,
}

/// `[tcp]`: the per-core userspace TCP stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Sockets per worker and port (listeners and connections), allocated at start.
    pub sockets: usize,
    /// Receive buffer per socket.
    pub rx_buffer: usize,
    /// Send buffer per socket.
    pub tx_buffer: usize,
    /// Connections one peer address may hold on a port (all workers together).
    pub max_connections_per_peer: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig { sockets: 32, rx_buffer: 16384, tx_buffer: 16384, max_connections_per_peer: 8 }
    }
}

/// One `[[legacy]]` entry: a provisioned legacy system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConfig {
    /// The stable 16-bit index (the tag carries it).
    pub id: u16,
    /// Its name in logs.
    pub name: String,
    /// Server role: the system_id it binds with. Client role: iwf's.
    pub system_id: String,
    /// The password that goes with it.
    pub password: String,
    /// Addresses it may bind from (server role), as (network, prefix length).
    pub allow: Vec<(Ipv4Addr, u8)>,
    /// Its requests iwf holds unanswered at most.
    pub window: usize,
    /// Client role: the SMSC iwf binds to as an ESME.
    pub connect: Option<SocketAddrV4>,
    /// Client role: the port the bind leaves by (index into `ports`).
    pub connect_port: Option<usize>,
    /// Client role: reconnect back-off, first delay and cap (ms).
    pub reconnect_ms: (u64, u64),
    /// Whether it handles SME user acknowledgements (display reports become esm_class 0x10).
    pub user_ack: bool,
    /// What data_coding 0 means to it.
    pub default_encoding: Encoding,
    /// How its message ids compare (submit_sm_resp vs receipt).
    pub ids: IdCanonicalisation,
    /// Country code for its national numbers (`44`), if it sends any.
    pub country_code: Option<String>,
    /// Receipts its lane holds at most before back-pressure.
    pub lane_capacity: usize,
    /// Messages per second it may send, and iwf may send it (0: no limit): beyond,
    /// ESME_RTHROTTLED / SIP 503 + Retry-After.
    pub throughput: u32,
    /// Receipts per second iwf relays to it (0: no limit): beyond, the IMDN gets 503 +
    /// Retry-After (a flood of notifications cannot flood the legacy system).
    pub receipt_rate: u32,
    /// Receipts the durable store holds for it at most while it has no bind: beyond,
    /// the IMDN gets 503 + Retry-After.
    pub queue_limit: u64,
    /// Whether a converged sender without a telephone number (`sip:alice@…`) may reach it
    /// as an alphanumeric source address (else the MESSAGE is refused 403).
    pub alphanumeric_senders: bool,
    /// Its exchange: an SMS centre (SMPP) or an MMS centre (MM4).
    pub exchange: ExchangeKind,
    /// An MMS centre's MM4 settings (`kind = "mmsc"`).
    pub mms: Option<MmscConfig>,
}

/// A `[[legacy]]` MMS centre's MM4 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmscConfig {
    /// Its MMS domain: its users are `+<E.164>/TYPE=PLMN@<domain>`.
    pub domain: String,
    /// Where iwf's SMTP client delivers MM4 to it (a static next hop, no MX lookup).
    pub next_hop: SocketAddrV4,
    /// The port that reaches the next hop (index into `ports`).
    pub next_hop_port: usize,
    /// The largest MM4 message taken from it or sent to it, octets.
    pub max_message_size: usize,
    /// The `X-Mms-3GPP-MMS-Version` iwf writes to it.
    pub mm4_version: String,
}

impl Default for LegacyConfig {
    /// A server-role system with the configuration file's defaults (tests fill in the rest).
    fn default() -> Self {
        LegacyConfig {
            id: 0,
            name: String::new(),
            system_id: String::new(),
            password: String::new(),
            allow: Vec::new(),
            window: 10,
            connect: None,
            connect_port: None,
            reconnect_ms: (1_000, 60_000),
            user_ack: true,
            default_encoding: Encoding::Gsm7,
            ids: IdCanonicalisation::Auto,
            country_code: None,
            lane_capacity: 4096,
            throughput: 0,
            receipt_rate: 0,
            queue_limit: 100_000,
            alphanumeric_senders: false,
            exchange: ExchangeKind::Sms,
            mms: None,
        }
    }
}

impl LegacyConfig {
    /// Whether `ip` is on the allow-list.
    pub fn allows(&self, ip: Ipv4Addr) -> bool {
        self.allow.iter().any(|&(net, len)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        })
    }
}

/// `[sip]`: SIP over UDP on the ports with a `sip_udp_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// The converged next hop (the SIP core): iwf keeps it checked with OPTIONS.
    pub next_hop: Option<SocketAddrV4>,
    /// The port the keep-alive leaves by (index into `ports`): the SIP port whose
    /// subnet holds the next hop, else the first SIP port with a gateway.
    pub next_hop_port: Option<usize>,
    /// A keep-alive OPTIONS this often; 0 = none.
    pub options_interval_ms: u64,
    /// Server transactions per worker.
    pub server_transactions: usize,
    /// Bytes stored per server transaction.
    pub server_slot_bytes: usize,
    /// Client transactions per worker.
    pub client_transactions: usize,
    /// T1 (RFC 3261 §17): Timer F = 64·T1 is how long iwf waits for the final response
    /// to a MESSAGE before answering the legacy system ESME_RX_T_APPN (default 500 ms:
    /// 32 s).
    pub timer_t1_ms: u64,
    /// The hosts that may send SIP to iwf (the SIP core, the next hops): a request
    /// from anywhere else is refused before it costs a transaction, and a TCP
    /// connection at its SYN. Empty: anyone (a warning at start).
    pub trusted: Vec<(Ipv4Addr, u8)>,
    /// What an untrusted UDP request gets.
    pub untrusted: Untrusted,
    /// The largest SIP message taken over TCP (a MESSAGE carrying an MMS), octets;
    /// a larger one is refused 413 from its head.
    pub max_message_bytes: usize,
    /// What the SIP-over-TCP streams may hold beyond their 8 KiB buffers, all ports and
    /// workers together, MiB; a large message beyond it is refused 503.
    pub stream_memory_mb: usize,
}

/// What a SIP request over UDP from outside `[sip] trusted` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Untrusted {
    /// 403 Forbidden, from no transaction (counted).
    #[default]
    Refuse,
    /// Nothing (counted): a scanner learns nothing.
    Drop,
}

/// `[smpp]`: the SMPP server's defences (the systems themselves are `[[legacy]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmppConfig {
    /// Answer each bind refusal with its own status instead of `ESME_RBINDFAIL` (lab
    /// debugging only: it tells a stranger which system_ids exist).
    pub specific_bind_errors: bool,
    /// Failed binds that put an address in back-off, and for how long.
    pub backoff: BackoffPolicy,
    /// Connections not bound yet, on a port as a whole.
    pub max_unbound: usize,
    /// Parts of concatenated messages one bind may hold outside its window while they
    /// wait for their siblings (the room of each message's missing parts is taken at
    /// its first part, so every message admitted can complete).
    pub parts_aside: usize,
    /// Concatenated legacy messages each worker reassembles at once, and the octets
    /// their parts may hold; beyond either, a new part is answered ESME_RTHROTTLED.
    pub reassembly_messages: usize,
    /// See `reassembly_messages`.
    pub reassembly_bytes: usize,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            specific_bind_errors: false,
            backoff: BackoffPolicy::default(),
            max_unbound: 64,
            parts_aside: 64,
            reassembly_messages: 1024,
            reassembly_bytes: 1 << 20,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            next_hop: None,
            next_hop_port: None,
            options_interval_ms: 30_000,
            server_transactions: 4096,
            server_slot_bytes: 2048,
            client_transactions: 256,
            timer_t1_ms: 500,
            trusted: Vec::new(),
            untrusted: Untrusted::Refuse,
            max_message_bytes: 1 << 20,
            stream_memory_mb: 64,
        }
    }
}

/// The packet path's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// `[eal]`.
    pub eal: EalConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// `[[ports]]`, in order.
    pub ports: Vec<PortConfig>,
    /// `[sip]`.
    pub sip: SipConfig,
    /// `[tcp]`.
    pub tcp: TcpConfig,
    /// `[smpp]`.
    pub smpp: SmppConfig,
    /// `[[legacy]]`, in order.
    pub legacy: Vec<LegacyConfig>,
}

impl PortConfig {
    /// Whether `ip` is on this port's subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len.min(32))).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl DataplaneConfig {
    /// The EAL command line (without the program name).
    pub fn eal_args(&self) -> Vec<String> {
        let e = &self.eal;
        let lcores: Vec<String> = e
            .lcores
            .iter()
            .zip(&e.cpus)
            .map(|(l, c)| if l == c { l.to_string() } else { format!("{l}@{c}") })
            .collect();
        let mut a = vec!["--lcores".to_string(), lcores.join(","), format!("--file-prefix={}", e.file_prefix)];
        if !e.hugepages {
            a.push("--no-huge".to_string());
        }
        if let Some(m) = e.memory_mb {
            a.push("-m".to_string());
            a.push(m.to_string());
        }
        let mut pci = false;
        for p in &self.ports {
            match &p.device {
                Device::Vdev { spec, .. } => a.push(format!("--vdev={spec}")),
                Device::Pci { address } => {
                    pci = true;
                    a.push("-a".to_string());
                    a.push(address.clone());
                }
            }
        }
        if !pci {
            a.push("--no-pci".to_string());
        }
        if let Some(l) = &e.log_level {
            a.push(format!("--log-level={l}"));
        }
        a.extend(e.args.iter().cloned());
        a
    }
}

/// Parses an lcore list: `0-3`, `0,2,4`, `1,3-5`.
pub fn parse_lcores(s: &str) -> Result<Vec<u32>, String> {
    Ok(parse_lcore_map(s)?.into_iter().map(|(l, _)| l).collect())
}

/// Parses an lcore list with optional CPU placement: `0-3`, `0,1,2@1` (lcore 2 runs on
/// CPU 1, sharing it with lcore 1: for trying several workers on a small machine).
pub fn parse_lcore_map(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for part in s.split(',').map(str::trim) {
        if let Some((l, c)) = part.split_once('@') {
            let (Ok(l), Ok(c)) = (l.trim().parse::<u32>(), c.trim().parse::<u32>()) else {
                return Err(format!("`{part}` is not LCORE@CPU (e.g. \"2@1\")"));
            };
            if l > MAX_LCORE {
                return Err(format!("`{part}`: lcores run from 0 to {MAX_LCORE}"));
            }
            if out.iter().any(|(x, _)| *x == l) {
                return Err(format!("lcore {l} is listed twice"));
            }
            out.push((l, c));
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) else {
            return Err(format!("`{part}` is not an lcore number or range (e.g. \"0-1\" or \"0,2,4\")"));
        };
        if lo > hi || hi > MAX_LCORE {
            return Err(format!("`{part}`: lcores run from 0 to {MAX_LCORE}, low to high"));
        }
        for l in lo..=hi {
            if out.iter().any(|(x, _)| *x == l) {
                return Err(format!("lcore {l} is listed twice"));
            }
            out.push((l, l));
        }
    }
    Ok(out)
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("`{s}` is not an IPv4 address with prefix length (198.18.1.2/24)");
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = p.parse().map_err(|_| bad())?;
    if len == 0 || len > 32 || addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
        return Err(bad());
    }
    Ok((addr, len))
}

/// Reads `[eal]`, `[control]` and `[[ports]]` from a configuration file's text (other
/// sections, like `[tag]`, are left to their own readers).
pub fn load(text: &str) -> Result<DataplaneConfig, ConfigError> {
    let file = super::read(text)?;
    dataplane(&Doc { text }, &file)
}

/// The packet path's sections, from the file read.
pub(crate) fn dataplane(doc: &Doc<'_>, file: &File) -> Result<DataplaneConfig, ConfigError> {
    let eal = load_eal(doc, file)?;
    let control = load_control(doc, file)?;
    let ports = load_ports(doc, file)?;
    let sip = load_sip(doc, file, &ports)?;
    let tcp = load_tcp(doc, file)?;
    let smpp = load_smpp(doc, file)?;
    let legacy = load_legacy(doc, file, &ports)?;
    if let (None, Some((i, _))) = (sip.next_hop, legacy.iter().enumerate().find(|(_, l)| l.mms.is_some())) {
        // An MMS goes to the SIP core over TCP, which is iwf's connection to its next hop.
        let span = file.legacy.as_ref().and_then(|l| l.get_ref().get(i)).map_or(0..0, Spanned::span);
        return doc.err(
            &format!("legacy[{i}].kind"),
            span,
            "an MMS centre needs [sip] next_hop (MMS go to the SIP core over TCP)",
        );
    }
    Ok(DataplaneConfig { eal, control, ports, sip, tcp, smpp, legacy })
}

/// A string value parsed by `parse`, its error named by key and line.
fn parsed<T>(
    doc: &Doc<'_>,
    key: &str,
    v: &Spanned<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(v.get_ref()).or_else(|m| doc.err(key, v.span(), m))
}

/// `[eal]`.
fn load_eal(doc: &Doc<'_>, file: &File) -> Result<EalConfig, ConfigError> {
    let Some(eal) = &file.eal else {
        return doc.err("eal", 0..0, "missing section [eal] (lcores, file_prefix, ...)");
    };
    let (e, within) = (eal.get_ref(), eal.span());
    let lc = doc.need("eal.lcores", &e.lcores, within.clone(), "the lcore list, e.g. \"0-1\" (first = main lcore)")?;
    let map = parsed(doc, "eal.lcores", lc, parse_lcore_map)?;
    let lcores: Vec<u32> = map.iter().map(|(l, _)| *l).collect();
    let cpus: Vec<u32> = map.iter().map(|(_, c)| *c).collect();
    if lcores.len() < 2 {
        return doc.err(
            "eal.lcores",
            lc.span(),
            "needs at least two lcores: the first is the main lcore, the others poll the ports",
        );
    }
    let fp = doc.need(
        "eal.file_prefix",
        &e.file_prefix,
        within.clone(),
        "a prefix unique to this DPDK process, e.g. \"iwf\"",
    )?;
    let file_prefix = fp.get_ref();
    if file_prefix.is_empty() || !file_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return doc.err("eal.file_prefix", fp.span(), "use letters, digits, - and _ only (it names files)");
    }
    let hugepages = e.hugepages.as_ref().is_none_or(|h| *h.get_ref());
    let memory_mb = match &e.memory_mb {
        Some(v) => Some(doc.integer("eal.memory_mb", v, 64, 1 << 20)? as u32),
        None => None,
    };
    if !hugepages && memory_mb.is_none() {
        let at = e.hugepages.as_ref().map_or(within, Spanned::span);
        return doc.err("eal.memory_mb", at, "hugepages = false (--no-huge) needs memory_mb, e.g. 512");
    }
    Ok(EalConfig {
        lcores,
        cpus,
        lcores_line: doc.line(lc),
        file_prefix: file_prefix.clone(),
        hugepages,
        memory_mb,
        mbufs: doc.integer_or("eal.mbufs", &e.mbufs, 1023, 1 << 24, 8191)? as u32,
        mbuf_cache: doc.integer_or("eal.mbuf_cache", &e.mbuf_cache, 0, 512, 256)? as u32,
        log_level: e.log_level.as_ref().map(|l| l.get_ref().clone()),
        args: e.args.as_ref().map_or_else(Vec::new, |a| a.get_ref().iter().map(|s| s.get_ref().clone()).collect()),
    })
}

/// `[control]`.
fn load_control(doc: &Doc<'_>, file: &File) -> Result<ControlConfig, ConfigError> {
    let mut control = ControlConfig {
        core: None,
        stats_interval_ms: 1000,
        link_wait_ms: 3000,
        store: None,
        admin: None,
        admin_token_file: None,
        records: crate::control::records::RecordsConfig::load(doc, file)?,
        log: crate::control::logging::LogConfig::load(doc, file)?,
        cluster: crate::control::cluster::ClusterConfig::load(doc, file)?,
    };
    let Some(c) = &file.control else {
        return cluster_has_store(doc, file, control);
    };
    let c = c.get_ref();
    if let Some(v) = &c.admin_token_file {
        // Read at start (iwf run), not here: the file may be made after the
        // configuration is written (`iwf keygen --out`).
        if v.get_ref().is_empty() {
            return doc.err("control.admin_token_file", v.span(), "an empty path: leave the key out for no token");
        }
        control.admin_token_file = Some(v.get_ref().clone());
    }
    if let Some(v) = &c.store {
        if v.get_ref().is_empty() {
            return doc.err("control.store", v.span(), "an empty path: leave the key out for no durable queue");
        }
        control.store = Some(v.get_ref().clone());
    }
    if let Some(v) = &c.admin {
        control.admin = Some(parsed(doc, "control.admin", v, |text| match text.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Ok(a),
            Ok(_) => Err(format!("`{text}`: the admin endpoint listens on loopback only (127.0.0.1:9870)")),
            Err(_) => Err(format!("`{text}` is not an address and port (127.0.0.1:9870)")),
        })?);
    }
    if let Some(v) = &c.core {
        control.core = Some(doc.integer("control.core", v, 0, i64::from(MAX_LCORE))? as usize);
    }
    control.stats_interval_ms =
        doc.integer_or("control.stats_interval_ms", &c.stats_interval_ms, 0, 86_400_000, 1000)? as u64;
    control.link_wait_ms = doc.integer_or("control.link_wait_ms", &c.link_wait_ms, 0, 600_000, 3000)? as u64;
    cluster_has_store(doc, file, control)
}

/// A `[cluster]` box needs its own store: the store's thread hands the cluster what a
/// lane could not deliver when its system's last bind here went, and the SMSC receipts
/// parked for a resp live there.
fn cluster_has_store(doc: &Doc<'_>, file: &File, control: ControlConfig) -> Result<ControlConfig, ConfigError> {
    match (&file.cluster, &control.store) {
        (Some(cluster), None) => doc.err("control.store", cluster.span(), "a [cluster] box needs its own store"),
        _ => Ok(control),
    }
}

/// `[[ports]]`.
fn load_ports(doc: &Doc<'_>, file: &File) -> Result<Vec<PortConfig>, ConfigError> {
    let Some(list) = &file.ports else {
        return doc.err("ports", 0..0, "missing: at least one [[ports]] entry");
    };
    if list.get_ref().is_empty() {
        return doc.err("ports", list.span(), "at least one [[ports]] entry");
    }
    let mut ports: Vec<PortConfig> = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let port = load_port(doc, &format!("ports[{i}]"), entry, &ports)?;
        ports.push(port);
    }
    Ok(ports)
}

/// One `[[ports]]` entry (`at`: its key), checked against the ones before it.
fn load_port(
    doc: &Doc<'_>,
    at: &str,
    entry: &Spanned<file::Port>,
    before: &[PortConfig],
) -> Result<PortConfig, ConfigError> {
    let (t, within) = (entry.get_ref(), entry.span());
    let key = |k: &str| format!("{at}.{k}");
    let name_v = doc.need(&key("name"), &t.name, within.clone(), "the port's name, e.g. \"legacy\"")?;
    let name = name_v.get_ref();
    if name.is_empty() || before.iter().any(|p| &p.name == name) {
        return doc.err(&key("name"), name_v.span(), format!("`{name}`: port names must be unique and non-empty"));
    }
    let dev_v =
        doc.need(&key("device"), &t.device, within.clone(), "a vdev spec (net_tap0,iface=NAME) or a PCI address")?;
    let device = parsed(doc, &key("device"), dev_v, Device::parse)?;
    if let Some(other) = before.iter().find(|p| p.device.ethdev_name() == device.ethdev_name()) {
        let why = format!("`{}` is already port `{}`", device.ethdev_name(), other.name);
        return doc.err(&key("device"), dev_v.span(), why);
    }
    let what = "our address with prefix length, e.g. \"198.18.1.2/24\"";
    let addr_v = doc.need(&key("address"), &t.address, within, what)?;
    let (address, prefix_len) = parsed(doc, &key("address"), addr_v, parse_cidr)?;
    let gateway = match &t.gateway {
        Some(v) => Some(parsed(doc, &key("gateway"), v, |g| match g.parse::<Ipv4Addr>() {
            Ok(g) if g != address && !g.is_unspecified() && !g.is_multicast() && !g.is_broadcast() => Ok(g),
            _ => Err("expected a neighbour's unicast IPv4 address".to_string()),
        })?),
        None => None,
    };
    let udp_or_tcp = |k: &str, v: &Option<Spanned<i64>>| -> Result<Option<u16>, ConfigError> {
        v.as_ref().map(|v| doc.integer(&key(k), v, 1, 65535).map(|n| n as u16)).transpose()
    };
    let sip_udp_port = udp_or_tcp("sip_udp_port", &t.sip_udp_port)?;
    let smpp_tcp_port = udp_or_tcp("smpp_tcp_port", &t.smpp_tcp_port)?;
    let sip_tcp_port = udp_or_tcp("sip_tcp_port", &t.sip_tcp_port)?;
    let smtp_tcp_port = udp_or_tcp("smtp_tcp_port", &t.smtp_tcp_port)?;
    if let (Some(a), Some(b), Some(v)) = (smpp_tcp_port, sip_tcp_port, &t.sip_tcp_port) {
        if a == b {
            return doc.err(&key("sip_tcp_port"), v.span(), format!("{b} is already smpp_tcp_port"));
        }
    }
    if let (Some(c), Some(v)) = (smtp_tcp_port, &t.smtp_tcp_port) {
        if smpp_tcp_port == Some(c) || sip_tcp_port == Some(c) {
            return doc.err(&key("smtp_tcp_port"), v.span(), format!("{c} is already this port's SMPP or SIP port"));
        }
    }
    let desc = |k: &str, v: &Option<Spanned<i64>>| -> Result<u16, ConfigError> {
        let n = doc.integer_or(&key(k), v, 64, 16384, 1024)?;
        match v {
            Some(v) if n & (n - 1) != 0 => doc.err(&key(k), v.span(), format!("{n} is not a power of two")),
            _ => Ok(n as u16),
        }
    };
    Ok(PortConfig {
        name: name.clone(),
        device,
        device_line: doc.line(dev_v),
        address,
        prefix_len,
        gateway,
        sip_udp_port,
        rx_desc: desc("rx_desc", &t.rx_desc)?,
        tx_desc: desc("tx_desc", &t.tx_desc)?,
        require_link: t.require_link.as_ref().is_none_or(|r| *r.get_ref()),
        smpp_tcp_port,
        sip_tcp_port,
        smtp_tcp_port,
    })
}

fn load_tcp(doc: &Doc<'_>, file: &File) -> Result<TcpConfig, ConfigError> {
    let d = TcpConfig::default();
    let Some(t) = &file.tcp else {
        return Ok(d);
    };
    let t = t.get_ref();
    Ok(TcpConfig {
        sockets: doc.integer_or("tcp.sockets", &t.sockets, 4, 65_536, d.sockets as i64)? as usize,
        rx_buffer: doc.integer_or("tcp.rx_buffer", &t.rx_buffer, 2048, 1 << 24, d.rx_buffer as i64)? as usize,
        tx_buffer: doc.integer_or("tcp.tx_buffer", &t.tx_buffer, 2048, 1 << 24, d.tx_buffer as i64)? as usize,
        max_connections_per_peer: doc.integer_or(
            "tcp.max_connections_per_peer",
            &t.max_connections_per_peer,
            1,
            65_536,
            d.max_connections_per_peer as i64,
        )? as usize,
    })
}

fn load_legacy(doc: &Doc<'_>, file: &File, ports: &[PortConfig]) -> Result<Vec<LegacyConfig>, ConfigError> {
    let mut out: Vec<LegacyConfig> = Vec::new();
    let Some(list) = &file.legacy else {
        return Ok(out);
    };
    for (i, entry) in list.get_ref().iter().enumerate() {
        let at = format!("legacy[{i}]");
        let t = entry.get_ref();
        let key = |k: &str| format!("{at}.{k}");
        let kind = match &t.kind {
            None => ExchangeKind::Sms,
            Some(k) => parsed(doc, &key("kind"), k, |s| match s {
                "smsc" => Ok(ExchangeKind::Sms),
                "mmsc" => Ok(ExchangeKind::Mms),
                other => Err(format!("`{other}`: expected \"smsc\" (SMPP) or \"mmsc\" (MM4)")),
            })?,
        };
        if kind == ExchangeKind::Mms {
            let l = legacy_mmsc(doc, &at, entry, &out, ports)?;
            out.push(l);
            continue;
        }
        for (name, v) in [
            ("domain", t.domain.as_ref().map(Spanned::span)),
            ("smtp_next_hop", t.smtp_next_hop.as_ref().map(Spanned::span)),
            ("max_message_size", t.max_message_size.as_ref().map(Spanned::span)),
            ("mm4_version", t.mm4_version.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = v {
                return doc.err(&key(name), span, "an MM4 key: only a kind = \"mmsc\" system has it");
            }
        }
        let mut l = legacy_identity(doc, &at, entry, &out)?;
        legacy_limits(doc, &at, t, &mut l)?;
        if let Some(c) = &t.connect {
            let (addr, port) = legacy_connect(doc, &key("connect"), c, ports)?;
            l.connect = Some(addr);
            l.connect_port = Some(port);
        } else if l.allow.is_empty() {
            return doc.err(
                &key("allow"),
                entry.span(),
                "missing: the networks it may bind from (or `connect` for an SMSC iwf binds to)",
            );
        }
        if l.connect.is_none() && out.iter().any(|o| o.connect.is_none() && o.system_id == l.system_id) {
            let span = t.system_id.as_ref().map_or(entry.span(), Spanned::span);
            return doc.err(&key("system_id"), span, format!("`{}` is used twice", l.system_id));
        }
        legacy_exchange(doc, &at, t, &mut l)?;
        out.push(l);
    }
    Ok(out)
}

/// A `[[legacy]]` MMS centre (`kind = "mmsc"`): its identity, the networks it relays
/// from, its domain and SMTP next hop, checked against the entries before it. SMPP's
/// keys have no meaning for it and are refused.
fn legacy_mmsc(
    doc: &Doc<'_>,
    at: &str,
    entry: &Spanned<file::Legacy>,
    before: &[LegacyConfig],
    ports: &[PortConfig],
) -> Result<LegacyConfig, ConfigError> {
    let (t, within) = (entry.get_ref(), entry.span());
    let key = |k: &str| format!("{at}.{k}");
    let smpp_only = [
        ("system_id", t.system_id.as_ref().map(Spanned::span)),
        ("password", t.password.as_ref().map(Spanned::span)),
        ("connect", t.connect.as_ref().map(Spanned::span)),
        ("window", t.window.as_ref().map(Spanned::span)),
        ("user_ack", t.user_ack.as_ref().map(Spanned::span)),
        ("default_data_coding", t.default_data_coding.as_ref().map(Spanned::span)),
        ("id_canonicalisation", t.id_canonicalisation.as_ref().map(Spanned::span)),
        ("country_code", t.country_code.as_ref().map(Spanned::span)),
        ("alphanumeric_senders", t.alphanumeric_senders.as_ref().map(Spanned::span)),
    ];
    if let Some((name, Some(span))) = smpp_only.into_iter().find(|(_, s)| s.is_some()) {
        return doc.err(&key(name), span, "an SMPP key: a kind = \"mmsc\" system has none");
    }
    let (id, name) = legacy_name(doc, at, entry, before)?;
    let dom = doc.need(&key("domain"), &t.domain, within.clone(), "its MMS domain, e.g. \"mmsc-m.lab\"")?;
    let domain = parsed(doc, &key("domain"), dom, |d| {
        let ok = !d.is_empty() && d.len() <= 253 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if ok {
            Ok(d.to_ascii_lowercase())
        } else {
            Err(format!("`{d}` is not a domain name"))
        }
    })?;
    let hop = doc.need(
        &key("smtp_next_hop"),
        &t.smtp_next_hop,
        within.clone(),
        "where iwf delivers MM4 to it, e.g. \"198.18.1.1:2525\"",
    )?;
    let (next_hop, next_hop_port) = legacy_connect(doc, &key("smtp_next_hop"), hop, ports)?;
    let allow = match &t.allow {
        Some(a) if !a.get_ref().is_empty() => networks(doc, &key("allow"), a)?,
        _ => return doc.err(&key("allow"), within, "missing: the networks it relays MM4 from"),
    };
    if !ports.iter().any(|p| p.smtp_tcp_port.is_some()) {
        return doc.err(&key("kind"), within, "an MMS centre needs a [[ports]] entry with smtp_tcp_port");
    }
    let max_message_size =
        doc.integer_or(&key("max_message_size"), &t.max_message_size, 1024, 64 << 20, 1 << 20)? as usize;
    let mm4_version = match &t.mm4_version {
        None => crate::wire::mm4::VERSION.to_string(),
        Some(v) => parsed(doc, &key("mm4_version"), v, |s| {
            let ok = s.split('.').count() == 3
                && s.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if ok {
                Ok(s.to_string())
            } else {
                Err(format!("`{s}` is not a version like \"6.10.0\""))
            }
        })?,
    };
    let mut l = LegacyConfig {
        id,
        name,
        allow,
        exchange: ExchangeKind::Mms,
        mms: Some(MmscConfig { domain, next_hop, next_hop_port, max_message_size, mm4_version }),
        ..LegacyConfig::default()
    };
    legacy_limits(doc, at, t, &mut l)?;
    Ok(l)
}

/// A legacy system's limits, either exchange's: reconnect back-off, throughput,
/// receipt rate, durable queue limit, lane capacity, into `l`.
fn legacy_limits(doc: &Doc<'_>, at: &str, t: &file::Legacy, l: &mut LegacyConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let initial = doc.integer_or(&key("reconnect_initial_ms"), &t.reconnect_initial_ms, 10, 3_600_000, 1_000)?;
    let max = doc.integer_or(&key("reconnect_max_ms"), &t.reconnect_max_ms, initial, 3_600_000, 60_000.max(initial))?;
    l.reconnect_ms = (initial as u64, max as u64);
    l.throughput = doc.integer_or(&key("throughput"), &t.throughput, 0, 1_000_000, 0)? as u32;
    l.receipt_rate = doc.integer_or(&key("receipt_rate"), &t.receipt_rate, 0, 1_000_000, 0)? as u32;
    l.queue_limit = doc.integer_or(&key("queue_limit"), &t.queue_limit, 1, 100_000_000, 100_000)? as u64;
    l.lane_capacity = doc.integer_or(&key("lane_capacity"), &t.lane_capacity, 1, 1 << 20, 4096)? as usize;
    Ok(())
}

/// A `[[legacy]]` entry's id and name, unique among the entries before it.
fn legacy_name(
    doc: &Doc<'_>,
    at: &str,
    entry: &Spanned<file::Legacy>,
    before: &[LegacyConfig],
) -> Result<(u16, String), ConfigError> {
    let (t, within) = (entry.get_ref(), entry.span());
    let key = |k: &str| format!("{at}.{k}");
    let id_v = doc.need(&key("id"), &t.id, within.clone(), "the system's stable index, 1 to 65535")?;
    let id = doc.integer(&key("id"), id_v, 1, 65_535)? as u16;
    if before.iter().any(|l| l.id == id) {
        return doc.err(&key("id"), id_v.span(), format!("id {id} is used twice"));
    }
    let name_v = doc.need(&key("name"), &t.name, within, "the system's name, e.g. \"smsc-a\"")?;
    let name = name_v.get_ref();
    if name.is_empty() || before.iter().any(|l| &l.name == name) {
        return doc.err(&key("name"), name_v.span(), format!("`{name}`: names must be unique and non-empty"));
    }
    Ok((id, name.clone()))
}

/// A `[[legacy]]` entry's identity: id, name, credentials, allow-list and window,
/// checked against the entries before it.
fn legacy_identity(
    doc: &Doc<'_>,
    at: &str,
    entry: &Spanned<file::Legacy>,
    before: &[LegacyConfig],
) -> Result<LegacyConfig, ConfigError> {
    let (t, within) = (entry.get_ref(), entry.span());
    let key = |k: &str| format!("{at}.{k}");
    let (id, name) = legacy_name(doc, at, entry, before)?;
    let sid_v =
        doc.need(&key("system_id"), &t.system_id, within.clone(), "the SMPP system_id (at most 15 characters)")?;
    let system_id = sid_v.get_ref();
    if system_id.is_empty() || system_id.len() > 15 || system_id.contains('\0') {
        return doc.err(&key("system_id"), sid_v.span(), "1 to 15 characters, no NUL (SMPP 3.4 §5.2.1)");
    }
    let pw_v = doc.need(&key("password"), &t.password, within, "the SMPP password (at most 8 characters)")?;
    let password = pw_v.get_ref();
    if password.len() > 8 || password.contains('\0') {
        return doc.err(&key("password"), pw_v.span(), "at most 8 characters, no NUL (SMPP 3.4 §5.2.2)");
    }
    let allow = match &t.allow {
        Some(a) => networks(doc, &key("allow"), a)?,
        None => Vec::new(),
    };
    Ok(LegacyConfig {
        id,
        name,
        system_id: system_id.clone(),
        password: password.clone(),
        allow,
        window: doc.integer_or(&key("window"), &t.window, 1, 1024, 10)? as usize,
        ..LegacyConfig::default()
    })
}

/// `[[legacy]] connect`: the SMSC's address, and the port that reaches it.
fn legacy_connect(
    doc: &Doc<'_>,
    key: &str,
    c: &Spanned<String>,
    ports: &[PortConfig],
) -> Result<(SocketAddrV4, usize), ConfigError> {
    let text = c.get_ref();
    let Ok(addr) = text.parse::<SocketAddrV4>() else {
        return doc.err(key, c.span(), format!("`{text}` is not an IPv4 address and port (198.18.1.1:2776)"));
    };
    let ip = *addr.ip();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || addr.port() == 0 {
        return doc.err(key, c.span(), format!("`{text}`: expected a unicast address and a port"));
    }
    let port = ports
        .iter()
        .position(|p| p.on_link(ip) && p.address != ip)
        .or_else(|| ports.iter().position(|p| p.gateway.is_some() && p.smpp_tcp_port.is_some()));
    let Some(port) = port else {
        return doc.err(
            key,
            c.span(),
            format!("no [[ports]] entry reaches {ip} (on its subnet, or an SMPP port with a gateway)"),
        );
    };
    Ok((addr, port))
}

/// An SMS centre's exchange options (receipts, coding, ids, numbers) into `l`.
fn legacy_exchange(doc: &Doc<'_>, at: &str, t: &file::Legacy, l: &mut LegacyConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    if let Some(v) = &t.default_data_coding {
        l.default_encoding = parsed(doc, &key("default_data_coding"), v, |s| match s {
            "gsm7" => Ok(Encoding::Gsm7),
            "latin1" => Ok(Encoding::Latin1),
            other => Err(format!("`{other}`: expected \"gsm7\" or \"latin1\" (what data_coding 0 means to it)")),
        })?;
    }
    if let Some(v) = &t.id_canonicalisation {
        l.ids = parsed(doc, &key("id_canonicalisation"), v, |s| match s {
            "auto" => Ok(IdCanonicalisation::Auto),
            "exact" => Ok(IdCanonicalisation::Exact),
            "folded" => Ok(IdCanonicalisation::Folded),
            "hex-resp-decimal-receipt" => Ok(IdCanonicalisation::HexRespDecimalReceipt),
            "decimal" => Ok(IdCanonicalisation::Decimal),
            other => Err(format!("`{other}`: expected auto, exact, folded, hex-resp-decimal-receipt or decimal")),
        })?;
    }
    if let Some(v) = &t.country_code {
        l.country_code = Some(parsed(doc, &key("country_code"), v, |cc| {
            if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
                return Err("1 to 3 digits, without `+` (\"44\")".to_string());
            }
            Ok(cc.to_string())
        })?);
    }
    l.user_ack = t.user_ack.as_ref().is_none_or(|v| *v.get_ref());
    l.alphanumeric_senders = t.alphanumeric_senders.as_ref().is_some_and(|v| *v.get_ref());
    Ok(())
}

/// An array of IPv4 networks (`"198.18.1.0/24"`, or an address for /32).
fn networks(doc: &Doc<'_>, key: &str, v: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<(Ipv4Addr, u8)>, ConfigError> {
    let mut out = Vec::with_capacity(v.get_ref().len());
    for (j, item) in v.get_ref().iter().enumerate() {
        out.push(parsed(doc, &format!("{key}[{j}]"), item, |text| {
            let net = match text.split_once('/') {
                Some((a, l)) => a.parse::<Ipv4Addr>().ok().zip(l.parse::<u8>().ok().filter(|l| *l <= 32)),
                None => text.parse::<Ipv4Addr>().ok().map(|a| (a, 32)),
            };
            net.ok_or_else(|| format!("`{text}` is not an IPv4 network (198.18.1.0/24)"))
        })?);
    }
    Ok(out)
}

fn load_smpp(doc: &Doc<'_>, file: &File) -> Result<SmppConfig, ConfigError> {
    let mut smpp = SmppConfig::default();
    let Some(t) = &file.smpp else {
        return Ok(smpp);
    };
    let t = t.get_ref();
    let d = SmppConfig::default();
    if let Some(v) = &t.specific_bind_errors {
        smpp.specific_bind_errors = *v.get_ref();
    }
    let b = d.backoff;
    smpp.backoff.failures = doc.integer_or("smpp.bind_failures", &t.bind_failures, 1, 255, b.failures.into())? as u8;
    smpp.backoff.window_s =
        doc.integer_or("smpp.bind_failure_window_s", &t.bind_failure_window_s, 1, 86_400, b.window_s.into())? as u32;
    smpp.backoff.backoff_s =
        doc.integer_or("smpp.bind_backoff_s", &t.bind_backoff_s, 1, 86_400, b.backoff_s.into())? as u32;
    smpp.max_unbound = doc.integer_or("smpp.max_unbound", &t.max_unbound, 1, 65_536, d.max_unbound as i64)? as usize;
    smpp.parts_aside = doc.integer_or("smpp.parts_aside", &t.parts_aside, 0, 4_096, d.parts_aside as i64)? as usize;
    smpp.reassembly_messages = doc.integer_or(
        "smpp.reassembly_messages",
        &t.reassembly_messages,
        16,
        10_000_000,
        d.reassembly_messages as i64,
    )? as usize;
    smpp.reassembly_bytes =
        doc.integer_or("smpp.reassembly_bytes", &t.reassembly_bytes, 4096, 1 << 34, d.reassembly_bytes as i64)?
            as usize;
    Ok(smpp)
}

fn load_sip(doc: &Doc<'_>, file: &File, ports: &[PortConfig]) -> Result<SipConfig, ConfigError> {
    let mut sip = SipConfig::default();
    let Some(t) = &file.sip else {
        return Ok(sip);
    };
    let t = t.get_ref();
    let d = SipConfig::default();
    if let Some(v) = &t.trusted {
        sip.trusted = networks(doc, "sip.trusted", v)?;
    }
    if let Some(v) = &t.untrusted {
        sip.untrusted = parsed(doc, "sip.untrusted", v, |s| match s {
            "refuse" => Ok(Untrusted::Refuse),
            "drop" => Ok(Untrusted::Drop),
            other => Err(format!("`{other}`: expected refuse or drop")),
        })?;
    }
    let int = |k: &str, v: &Option<Spanned<i64>>, min: i64, max: i64, default: i64| {
        doc.integer_or(&format!("sip.{k}"), v, min, max, default)
    };
    sip.options_interval_ms =
        int("options_interval_ms", &t.options_interval_ms, 0, 86_400_000, d.options_interval_ms as i64)? as u64;
    sip.server_transactions =
        int("server_transactions", &t.server_transactions, 16, 1 << 22, d.server_transactions as i64)? as usize;
    sip.server_slot_bytes =
        int("server_slot_bytes", &t.server_slot_bytes, 512, 65_535, d.server_slot_bytes as i64)? as usize;
    sip.timer_t1_ms = int("timer_t1_ms", &t.timer_t1_ms, 10, 10_000, d.timer_t1_ms as i64)? as u64;
    sip.client_transactions =
        int("client_transactions", &t.client_transactions, 1, 1 << 20, d.client_transactions as i64)? as usize;
    sip.max_message_bytes =
        int("max_message_bytes", &t.max_message_bytes, 8192, 64 << 20, d.max_message_bytes as i64)? as usize;
    sip.stream_memory_mb =
        int("stream_memory_mb", &t.stream_memory_mb, 1, 1 << 20, d.stream_memory_mb as i64)? as usize;
    if let Some(nh) = &t.next_hop {
        let (addr, port) = sip_next_hop(doc, nh, ports)?;
        sip.next_hop = Some(addr);
        sip.next_hop_port = Some(port);
    }
    Ok(sip)
}

/// `[sip] next_hop`: the SIP core's address, and the SIP port that reaches it.
fn sip_next_hop(
    doc: &Doc<'_>,
    nh: &Spanned<String>,
    ports: &[PortConfig],
) -> Result<(SocketAddrV4, usize), ConfigError> {
    let text = nh.get_ref();
    let Ok(addr) = text.parse::<SocketAddrV4>() else {
        let why = format!("`{text}` is not an IPv4 address and port (198.18.2.1:5060)");
        return doc.err("sip.next_hop", nh.span(), why);
    };
    let ip = *addr.ip();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || addr.port() == 0 {
        return doc.err("sip.next_hop", nh.span(), format!("`{text}`: expected a unicast address and a port"));
    }
    let sip_ports = || ports.iter().enumerate().filter(|(_, p)| p.sip_udp_port.is_some());
    let port = sip_ports()
        .find(|(_, p)| p.on_link(ip))
        .or_else(|| sip_ports().find(|(_, p)| p.gateway.is_some()))
        .map(|(i, _)| i);
    let Some(port) = port else {
        return doc.err(
            "sip.next_hop",
            nh.span(),
            format!("no [[ports]] entry with sip_udp_port reaches {ip} (on its subnet, or through its gateway)"),
        );
    };
    if ports.get(port).is_some_and(|p| p.address == ip) {
        return doc.err("sip.next_hop", nh.span(), format!("{ip} is iwf's own address"));
    }
    Ok((addr, port))
}

/// `[smpp] bind_backoff_*`: how failed binds from one address are slowed down (the
/// packet path's `BindBackoff` applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures within `window_s` that start a back-off (1-255).
    pub failures: u8,
    /// The window the failures are counted in, seconds.
    pub window_s: u32,
    /// How long an address is refused once it reached `failures`, seconds.
    pub backoff_s: u32,
}

impl Default for BackoffPolicy {
    /// 5 failed binds in a minute refuse the address for a minute: a mistyped password
    /// or two never trips it; a password guesser gets 5 tries a minute.
    fn default() -> Self {
        BackoffPolicy { failures: 5, window_s: 60, backoff_s: 60 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[tag]
signing_key = 1

[eal]
lcores = "0-1"
file_prefix = "iwf-test"
hugepages = false
memory_mb = 256
log_level = "notice"

[control]
core = 0
stats_interval_ms = 500

[[ports]]
name = "legacy"
device = "net_tap0,iface=iwf-legacy0"
address = "198.18.1.2/24"
gateway = "198.18.1.1"

[[ports]]
name = "converged"
device = "net_tap1,iface=iwf-conv0"
address = "198.18.2.2/24"
sip_udp_port = 5060
"#;

    #[test]
    fn reads_the_lab_shape_and_builds_eal_args() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.eal.lcores, vec![0, 1]);
        assert_eq!(c.eal.lcores_line, 5);
        assert_eq!(c.control.stats_interval_ms, 500);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].gateway, Some(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.ports[1].sip_udp_port, Some(5060));
        assert_eq!(c.ports[1].device_line, 23);
        assert_eq!(
            c.ports[1].device,
            Device::Vdev {
                spec: "net_tap1,iface=iwf-conv0".into(),
                name: "net_tap1".into(),
                iface: Some("iwf-conv0".into())
            }
        );
        assert_eq!(
            c.eal_args().join(" "),
            "--lcores 0,1 --file-prefix=iwf-test --no-huge -m 256 --vdev=net_tap0,iface=iwf-legacy0 --vdev=net_tap1,iface=iwf-conv0 --no-pci --log-level=notice"
        );
    }

    #[test]
    fn pci_ports_are_allowlisted() {
        let text = GOOD.replace("net_tap0,iface=iwf-legacy0", "0000:3b:00.0").replace("hugepages = false\n", "");
        let c = load(&text).unwrap();
        assert_eq!(c.ports[0].device, Device::Pci { address: "0000:3b:00.0".into() });
        let args = c.eal_args().join(" ");
        assert!(
            args.contains("-a 0000:3b:00.0") && !args.contains("--no-pci") && !args.contains("--no-huge"),
            "{args}"
        );
    }

    #[test]
    fn lcore_lists() {
        assert_eq!(parse_lcores("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_lcores(" 3 , 1 ").unwrap(), vec![3, 1]);
        assert!(parse_lcores("1,1").unwrap_err().contains("twice"));
        assert!(parse_lcores("2-1").is_err());
        assert!(parse_lcores("0-500").is_err());
        assert!(parse_lcores("a").is_err());
        assert_eq!(parse_lcore_map("0,1,2@1").unwrap(), vec![(0, 0), (1, 1), (2, 1)]);
        assert!(parse_lcore_map("1,1@0").unwrap_err().contains("twice"));
        assert!(parse_lcore_map("2@x").is_err());
        assert!(parse_lcores("").is_err());
    }

    fn err(text: &str) -> ConfigError {
        load(text).unwrap_err()
    }

    /// An MMS centre: its MM4 keys are read, SMPP's refused, and what it needs named.
    #[test]
    fn an_mms_centre_is_provisioned_with_its_mm4_keys() {
        let base = GOOD.replace("gateway = \"198.18.1.1\"", "gateway = \"198.18.1.1\"\nsmtp_tcp_port = 25")
            + "\n[sip]\nnext_hop = \"198.18.2.1:5060\"\n";
        let mmsc = "[[legacy]]\nid = 4\nname = \"mmsc-m\"\nkind = \"mmsc\"\ndomain = \"MMSC-M.lab\"\nallow = [\"198.18.1.1\"]\nsmtp_next_hop = \"198.18.1.1:2525\"\n";
        let c = load(&format!("{base}\n{mmsc}")).unwrap();
        assert_eq!(c.ports[0].smtp_tcp_port, Some(25));
        let l = &c.legacy[0];
        assert_eq!((l.exchange, l.allow.as_slice()), (ExchangeKind::Mms, &[(Ipv4Addr::new(198, 18, 1, 1), 32)][..]));
        let m = l.mms.as_ref().unwrap();
        assert_eq!((m.domain.as_str(), m.next_hop.port(), m.next_hop_port), ("mmsc-m.lab", 2525, 0));
        assert_eq!((m.max_message_size, m.mm4_version.as_str()), (1 << 20, "6.10.0"));
        let line_of_added = base.lines().count() + 2;
        let bad = |extra: &str| load(&format!("{base}\n{extra}")).unwrap_err();
        let e = bad(&mmsc.replace("kind = \"mmsc\"\n", "kind = \"mmsc\"\npassword = \"x\"\n"));
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].password", line_of_added + 4), "{e}");
        assert!(e.message.contains("SMPP key"), "{e}");
        let e = bad(&mmsc.replace("kind = \"mmsc\"", "kind = \"fax\""));
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].kind", line_of_added + 3), "{e}");
        let e = bad(&mmsc.replace("smtp_next_hop = \"198.18.1.1:2525\"\n", ""));
        assert_eq!(e.key, "legacy[0].smtp_next_hop", "{e}");
        let e = bad(&mmsc.replace("domain = \"MMSC-M.lab\"", "domain = \"mmsc m\""));
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].domain", line_of_added + 4), "{e}");
        let e = bad(&mmsc.replace("allow = [\"198.18.1.1\"]\n", ""));
        assert_eq!(e.key, "legacy[0].allow", "{e}");
        let e = bad(&format!("{mmsc}mm4_version = \"six\"\n"));
        assert_eq!(e.key, "legacy[0].mm4_version", "{e}");
        let e = load(&format!("{GOOD}\n{mmsc}")).unwrap_err();
        assert!(e.message.contains("smtp_tcp_port"), "no port serves it: {e}");
        let no_core = GOOD.replace("gateway = \"198.18.1.1\"", "gateway = \"198.18.1.1\"\nsmtp_tcp_port = 25");
        let e = load(&format!("{no_core}\n{mmsc}")).unwrap_err();
        assert_eq!(e.key, "legacy[0].kind", "{e}");
        assert!(e.message.contains("[sip] next_hop"), "MMS go to the SIP core over TCP: {e}");
        let smsc = "[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"a\"\npassword = \"b\"\nallow = [\"1.2.3.4\"]\ndomain = \"x.lab\"\n";
        let e = bad(smsc);
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].domain", line_of_added + 6), "{e}");
        assert!(e.message.contains("MM4 key"), "{e}");
        let e = err(&base.replace("smtp_tcp_port = 25", "smtp_tcp_port = 25\nsmpp_tcp_port = 25"));
        assert_eq!(e.key, "ports[0].smtp_tcp_port", "{e}");
    }

    #[test]
    fn legacy_and_tcp_errors_name_key_and_line() {
        let base = GOOD.to_string();
        let line_of_added = base.lines().count() + 2;
        let bad = |extra: &str| load(&format!("{base}\n{extra}")).unwrap_err();
        let e = bad("[smpp]\nbind_failures = 0\n");
        assert_eq!((e.key.as_str(), e.line), ("smpp.bind_failures", line_of_added + 1), "{e}");
        let e = bad("[smpp]\nbind_backof_s = 5\n");
        assert_eq!((e.key.as_str(), e.line), ("smpp.bind_backof_s", line_of_added + 1), "{e}");
        let e = bad("[smpp]\nspecific_bind_errors = \"yes\"\n");
        assert_eq!(e.key, "smpp.specific_bind_errors", "{e}");
        let e = bad("[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"this-is-far-too-long\"\npassword = \"x\"\nallow = [\"1.2.3.0/24\"]\n");
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].system_id", line_of_added + 3), "{e}");
        let e = bad("[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"a\"\npassword = \"x\"\nallow = [\"1.2.3/24\"]\n");
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].allow[0]", line_of_added + 5), "{e}");
        let e = bad("[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"a\"\npassword = \"123456789\"\nallow = []\n");
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].password", line_of_added + 4), "{e}");
        let e =
            bad("[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"a\"\npassword = \"b\"\nconnect = \"10.9.9.9:1\"\n");
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].connect", line_of_added + 5), "{e}");
        let e = bad("[[legacy]]\nid = 1\nname = \"a\"\nsystem_id = \"a\"\npassword = \"b\"\nwindow = 0\nallow = [\"1.2.3.4\"]\n");
        assert_eq!((e.key.as_str(), e.line), ("legacy[0].window", line_of_added + 5), "{e}");
        let e = bad("[tcp]\nsockets = 1\n");
        assert_eq!((e.key.as_str(), e.line), ("tcp.sockets", line_of_added + 1), "{e}");
        let e = bad("[tcp]\nsocket = 9\n");
        assert_eq!((e.key.as_str(), e.line), ("tcp.socket", line_of_added + 1), "{e}");
        let ok = load(&format!(
            "{base}\n[[legacy]]\nid = 7\nname = \"x\"\nsystem_id = \"x\"\npassword = \"\"\nallow = [\"10.0.0.1\"]\n"
        ))
        .unwrap();
        assert_eq!(ok.legacy[0].allow, [(Ipv4Addr::new(10, 0, 0, 1), 32)]);
        assert_eq!(ok.legacy[0].window, 10);
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = err(&format!("{GOOD}\n[sipp]\nnext_hop = \"198.18.2.1:5060\"\n"));
        assert_eq!(e.key, "sipp");
        assert_eq!(e.line, GOOD.lines().count() + 2);
        assert!(e.message.contains("unknown section"), "{e}");
        let e = err(&GOOD.replace("\"0-1\"", "\"0\""));
        assert_eq!((e.key.as_str(), e.line), ("eal.lcores", 5));
        assert!(e.message.contains("at least two"), "{e}");
        let e = err(&GOOD.replace("\"0-1\"", "\"0-x\""));
        assert_eq!((e.key.as_str(), e.line), ("eal.lcores", 5));
        let e = err(&GOOD.replace("memory_mb = 256\n", ""));
        assert_eq!((e.key.as_str(), e.line), ("eal.memory_mb", 7));
        let e = err(&GOOD.replace("198.18.2.2/24", "198.18.2.2"));
        assert_eq!((e.key.as_str(), e.line), ("ports[1].address", 24));
        let e = err(&GOOD.replace("net_tap1,iface=iwf-conv0", "net_tap0"));
        assert_eq!((e.key.as_str(), e.line), ("ports[1].device", 23));
        assert!(e.message.contains("already port `legacy`"), "{e}");
        let e = err(&GOOD.replace("name = \"converged\"", "name = \"legacy\""));
        assert_eq!((e.key.as_str(), e.line), ("ports[1].name", 22));
        let e = err(&GOOD.replace("sip_udp_port = 5060", "sip_udp_port = 70000"));
        assert_eq!((e.key.as_str(), e.line), ("ports[1].sip_udp_port", 25));
        let e = err(&GOOD.replace("gateway = ", "gatway = "));
        assert_eq!((e.key.as_str(), e.line), ("ports[0].gatway", 19));
        let e = err(&GOOD.replace("file_prefix = \"iwf-test\"", "file_prefix = \"a/b\""));
        assert_eq!((e.key.as_str(), e.line), ("eal.file_prefix", 6));
        let e = err(&GOOD.replace("iface=iwf-conv0", "iface=an-interface-name-too-long"));
        assert_eq!(e.key, "ports[1].device");
        let e = err(&GOOD.replace("stats_interval_ms = 500", "stats_interval_ms = \"x\""));
        assert_eq!((e.key.as_str(), e.line), ("control.stats_interval_ms", 13));
        let e = err("[eal]\nlcores = \"0-1\"\nfile_prefix = \"x\"\n");
        assert_eq!(e.key, "ports");
        let e = err("[tag]\n");
        assert_eq!(e.key, "eal");
        let e = err("[eal\n");
        assert!(e.message.starts_with("TOML syntax error"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[[ports]]\nname = \"x\"\ndevice = \"net_null0\"\naddress = \"10.0.0.1/8\"\nrx_desc = 1000\n"
        ));
        assert_eq!((e.key.as_str(), e.line), ("ports[2].rx_desc", 31));
    }

    #[test]
    fn sip_section() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.sip, SipConfig::default());
        let text = format!(
            "{GOOD}\n[sip]\nnext_hop = \"198.18.2.1:5060\"\noptions_interval_ms = 2000\nserver_transactions = 65536\n"
        );
        let c = load(&text).unwrap();
        assert_eq!(c.sip.next_hop, Some("198.18.2.1:5060".parse().unwrap()));
        assert_eq!(c.sip.next_hop_port, Some(1));
        assert_eq!((c.sip.options_interval_ms, c.sip.server_transactions), (2000, 65536));
        // Off the SIP port's subnet, it needs a gateway there.
        let e = err(&text.replace("198.18.2.1:5060", "10.1.1.1:5060"));
        assert_eq!((e.key.as_str(), e.line), ("sip.next_hop", 28));
        assert!(e.message.contains("reaches 10.1.1.1"), "{e}");
        let routed = text
            .replace("198.18.2.1:5060", "10.1.1.1:5060")
            .replace("sip_udp_port = 5060", "sip_udp_port = 5060\ngateway = \"198.18.2.1\"");
        assert_eq!(load(&routed).unwrap().sip.next_hop_port, Some(1));
        let e = err(&text.replace("198.18.2.1:5060", "198.18.2.1"));
        assert_eq!((e.key.as_str(), e.line), ("sip.next_hop", 28));
        let e = err(&text.replace("198.18.2.1:5060", "198.18.2.2:5060"));
        assert!(e.message.contains("own address"), "{e}");
        let e = err(&text.replace("server_transactions = 65536", "server_transactions = 1"));
        assert_eq!((e.key.as_str(), e.line), ("sip.server_transactions", 30));
        let e = err(&text.replace("options_interval_ms", "options_interval"));
        assert_eq!((e.key.as_str(), e.line), ("sip.options_interval", 29));
        // The trusted hosts: networks, named by key and line when wrong.
        let trusted = text.replace(
            "server_transactions = 65536",
            "server_transactions = 65536\ntrusted = [\"198.18.2.1\", \"10.0.0.0/8\"]\nuntrusted = \"drop\"",
        );
        let c = load(&trusted).unwrap();
        assert_eq!(c.sip.trusted, vec![(Ipv4Addr::new(198, 18, 2, 1), 32), (Ipv4Addr::new(10, 0, 0, 0), 8)]);
        assert_eq!(c.sip.untrusted, Untrusted::Drop);
        let e = err(&trusted.replace("10.0.0.0/8", "10.0.0.0/33"));
        assert_eq!((e.key.as_str(), e.line), ("sip.trusted[1]", 31));
        let e = err(&trusted.replace("\"drop\"", "\"ignore\""));
        assert_eq!((e.key.as_str(), e.line), ("sip.untrusted", 32));
    }

    #[test]
    fn device_strings() {
        assert!(matches!(Device::parse("3b:00.1"), Ok(Device::Pci { .. })));
        assert!(matches!(Device::parse("net_null0"), Ok(Device::Vdev { iface: None, .. })));
        assert!(Device::parse("").is_err());
        assert!(Device::parse("net tap").is_err());
        assert!(Device::parse("0000:3b:00.9").is_err());
    }
}

#[cfg(test)]
mod shipped_files {
    use super::*;

    #[test]
    fn lab_and_example_configurations_load() {
        let lab = load(include_str!("../../../config/lab.toml")).unwrap();
        assert_eq!(lab.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["legacy", "converged"]);
        assert_eq!(lab.ports[0].address, Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(lab.ports[1].address, Ipv4Addr::new(198, 18, 2, 2));
        assert_eq!(lab.ports[1].sip_udp_port, Some(5060));
        assert_eq!(lab.eal.file_prefix, "iwf-lab");
        assert_eq!(lab.sip.next_hop, Some(SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060)));
        assert_eq!(lab.sip.next_hop_port, Some(1));
        assert_eq!((lab.ports[0].smpp_tcp_port, lab.ports[1].sip_tcp_port), (Some(2775), Some(5060)));
        let names: Vec<_> = lab.legacy.iter().map(|l| (l.id, l.name.as_str(), l.system_id.as_str())).collect();
        assert_eq!(names[..3], [(1, "smsc-a", "smsca"), (2, "smsc-b", "smscb"), (3, "smsc-c", "iwf")]);
        let mmsc = lab.legacy[3].mms.as_ref().expect("mmsc-m is an MMS centre");
        assert_eq!((lab.legacy[3].name.as_str(), mmsc.domain.as_str()), ("mmsc-m", "mmsc-m.lab"));
        assert_eq!(mmsc.next_hop, SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2525));
        assert_eq!(lab.ports[0].smtp_tcp_port, Some(25));
        assert!(lab.legacy[0].allows(Ipv4Addr::new(198, 18, 1, 1)));
        assert!(!lab.legacy[0].allows(Ipv4Addr::new(198, 18, 2, 1)));
        assert_eq!(lab.legacy[2].connect, Some(SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2776)));
        assert_eq!(lab.legacy[2].connect_port, Some(0));
        assert_eq!(lab.legacy[2].reconnect_ms, (500, 4000));
        assert_eq!(lab.legacy[0].reconnect_ms, (1000, 60_000));
        assert_eq!(lab.tcp.max_connections_per_peer, 8);
        assert_eq!(lab.sip.trusted, vec![(Ipv4Addr::new(198, 18, 2, 1), 32)]);
        assert_eq!((lab.smpp.backoff.failures, lab.smpp.backoff.backoff_s), (5, 5));
        assert!(!lab.smpp.specific_bind_errors);
        assert_eq!(lab.control.admin_token_file.as_deref(), Some("target/lab/admin.token"));
        let example = load(include_str!("../../../config/example.toml")).unwrap();
        assert_eq!(example.eal.lcores, vec![2, 3, 4, 5, 6]);
        assert_eq!(example.sip.untrusted, Untrusted::Refuse);
        assert_eq!((example.smpp.max_unbound, example.smpp.backoff.window_s), (64, 60));
        assert_eq!((example.legacy[0].receipt_rate, example.legacy[0].queue_limit), (500, 100_000));
        assert!(matches!(example.ports[0].device, Device::Pci { .. }));
        // The [tag] section of both still loads with its own reader.
        crate::control::config::load_keyring(include_str!("../../../config/lab.toml")).unwrap();
        let e = crate::control::config::load_keyring(include_str!("../../../config/example.toml")).unwrap_err();
        assert_eq!(e.key, "tag.keys[0].secret_file", "the example names a key file that does not exist yet");
    }
}
