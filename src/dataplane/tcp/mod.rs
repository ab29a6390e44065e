//! TCP on the packet path: one smoltcp [`Interface`] per worker lcore and port, over a
//! [`phy::Device`] backed by the worker's RX burst and TX mbufs, with its sockets, SMPP
//! sessions and SIP-over-TCP streams allocated at start ([`TcpStack`]); and the flow
//! ownership rule with the per-core-pair rings that carry a segment to its owner
//! ([`Handoff`]).
//!
//! ```text
//!  rx burst ─► Host::receive ─► Verdict::Tcp(seg) ─► owner = flow_owner(seg)
//!                    │ ARP aimed at us: a copy,        │ this core: TcpStack::queue(mbuf)
//!                    │ shown as a reply, to smoltcp    │ other core: Handoff::pass → ring[me][owner]
//!                    ▼                                 ▼
//!              ARP/ICMP/UDP answered       TcpStack::poll: iface.poll (RxToken = the mbuf's
//!              by host.rs as before        data, TxToken = a fresh mbuf's data room) → the
//!                                          sockets' SMPP sessions / SIP streams → iface.poll
//! ```
//!
//! **Flow ownership.** A flow's owner is the worker that did its active open, else the
//! hash of its 4-tuple modulo the number of workers ([`flow_owner`]). Active opens take
//! their local port from the owner's own slice of the ephemeral range
//! ([`ephemeral_range`]): the registration of the flow with its owner *is* the port
//! number, written before the SYN leaves, so no shared table, lock or race exists
//! between the SYN and its SYN-ACK landing on another queue. Every core listens on the
//! service ports; a SYN that lands elsewhere is passed to the owner, whose listener
//! accepts it. Segments cross cores through one single-producer/single-consumer ring per
//! ordered core pair (DPDK `rte_ring` of mbuf pointers), counted on both ends; a full
//! ring is a counted drop (TCP retransmits).
//!
//! **ARP.** host.rs keeps answering ARP; smoltcp keeps its own neighbour cache (its API
//! has no way to fill it from outside). Each ARP frame aimed at our address is copied
//! (ARP is rare: no cost that matters) with its operation set to *reply* and handed to
//! smoltcp, which learns the sender from it and — since it is a reply — never answers
//! it: one ARP answer per request, from host.rs, and a warm neighbour cache for the
//! SYN-ACK of a passive open without an extra ARP round trip.
//!
//! **SMPP.** One [`Session`] per TCP connection on its owner core (server role on
//! `smpp_tcp_port`, the [`Directory`] of `[[legacy]]` systems authenticates binds;
//! client role towards each `[[legacy]]` entry with `connect`, from the worker of queue
//! 0, paced by [`Reconnect`]). Requests go to the worker's engine, which answers each
//! only once its message is delivered onwards or stored (without an engine, as in some
//! tests, they are answered `ESME_RX_T_APPN`, "retry later"). Requests beyond the bind's
//! window in one poll are answered `ESME_RTHROTTLED`, never dropped.
//!
//! **Connection limits.** A connection is accepted only while its peer address holds
//! fewer than `max_connections_per_peer` on the port, counted in a lock-free table all
//! of the port's workers share ([`PeerLimits`]); beyond it the connection is reset and
//! counted (`tcp.refused_peer_limit`).
//!
//! **SIP over TCP.** `sip_tcp_port` streams are framed by Content-Length
//! ([`parse_stream`]) and each request goes through the same transaction layer and UAS
//! policy as UDP (OPTIONS 200, MESSAGE to the flows, or per route without them),
//! answered on the stream.
//!
//! Nothing on the per-packet path allocates: sockets, buffers, sessions and queues are
//! allocated in [`TcpStack::new`].
//!
//! The files: this one is the stack (the interface, its sockets and their slots);
//! `device` the smoltcp device over mbufs, `steering` flow ownership and the rings
//! between cores, `smpp_conn` and `sip_conn` the connections' applications.

use super::admission::{in_cidrs, BindGuard};
use super::counters::{DropReason, QueueCounters, SmppCounters, TcpCounters};
use super::dpdk::mbuf::{Mbuf, Mempool};
use super::dpdk::port::TxBatch;
use super::host::MAX_FRAME;
use super::sip::{answer_into, Route, MAX_HEADERS};
use crate::control::config::{LegacyConfig, TcpConfig};
use crate::flow::{Flows, Input, SipTxn, SmppOut};
use crate::ids::ConnRef;
use crate::ids::LegacySystemId;
use crate::session::sip::{Incoming, ServerConfig, ServerTransactions, UasPolicy};
use crate::session::smpp::{
    Authenticator, BindRefusal, BindRequest, Credentials, Event, Reconnect, ReconnectConfig, RefuseBinds, Role,
    Session, SessionConfig, SessionCounters, State as SmppState,
};
use crate::wire::sip::{parse_stream, Header, Message, Status};
use crate::wire::smpp::CommandStatus;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, CongestionControl, State as TcpState};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};

mod device;
mod sip_conn;
mod smpp_conn;
mod smtp_conn;
mod steering;

pub use device::*;
pub use sip_conn::*;
pub use smpp_conn::*;
pub use smtp_conn::Mm4Client;
use smtp_conn::{drive_mm4, drive_smtp, Mm4Conn, SmtpConn};
pub use steering::*;

/// How often sessions are looked at without traffic (keep-alives, reconnects), ms.
const SERVICE_EVERY_MS: u64 = 10;

/// An active open gives up after this long without an answer, ms.
const CONNECT_TIMEOUT_MS: u64 = 3000;

impl<S: SegmentSender, R: SegmentReceiver<Item = S::Item>> Handoff<S, R> {
    /// Worker `me` of `workers`, with its outgoing and incoming rings (indexed by the
    /// other worker).
    pub fn new(me: u16, workers: u16, out: Vec<Option<S>>, inbound: Vec<Option<R>>) -> Self {
        Handoff { me, workers: workers.max(1), out, inbound }
    }

    /// How many workers share the flows.
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// This worker.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// A handoff for a single worker (no rings).
    pub fn single() -> Self {
        Handoff { me: 0, workers: 1, out: Vec::new(), inbound: Vec::new() }
    }

    /// Where the segment from `peer` to our `local_port` goes.
    pub fn steer(&self, peer: SocketAddrV4, local_port: u16) -> Steer {
        let owner = flow_owner(peer, local_port, self.workers);
        if owner == self.me {
            Steer::Local
        } else {
            Steer::To(owner)
        }
    }

    /// Passes `item` to worker `to`; hands it back when its ring is full or missing.
    pub fn pass(&self, to: u16, item: S::Item) -> Result<(), S::Item> {
        match self.out.get(usize::from(to)).and_then(Option::as_ref) {
            Some(r) => r.push(item),
            None => Err(item),
        }
    }

    /// Takes up to `max` segments from each incoming ring.
    pub fn drain(&self, max: usize, mut f: impl FnMut(R::Item)) -> usize {
        let mut n = 0;
        for r in self.inbound.iter().flatten() {
            for _ in 0..max {
                let Some(item) = r.pop() else { break };
                f(item);
                n += 1;
            }
        }
        n
    }
}

impl FrameQueue {
    fn new(capacity: usize) -> Self {
        FrameQueue { slots: (0..capacity.max(1)).map(|_| None).collect(), head: 0, len: 0 }
    }

    fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len >= self.slots.len() {
            return Err(m);
        }
        let i = (self.head + self.len) % self.slots.len();
        match self.slots.get_mut(i) {
            Some(s) => {
                *s = Some(m);
                self.len += 1;
                Ok(())
            }
            None => Err(m),
        }
    }

    fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        let m = self.slots.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        m
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Connections per peer address, shared by every worker's endpoint on a port: a fixed
/// table of atomic counts indexed by a hash of the address (two addresses that share a
/// bucket share its limit: stricter, never looser). The hash is keyed at start (std's
/// `RandomState`), so nobody can pick an address that shares a legacy system's bucket.
/// Lock-free; no allocation after [`PeerLimits::new`].
#[derive(Debug)]
pub struct PeerLimits {
    buckets: Vec<std::sync::atomic::AtomicU32>,
    max: u32,
    hasher: std::collections::hash_map::RandomState,
}

impl PeerLimits {
    /// Buckets in the table.
    pub const BUCKETS: usize = 4096;

    /// At most `max` connections per address.
    pub fn new(max: usize) -> PeerLimits {
        PeerLimits {
            buckets: (0..Self::BUCKETS).map(|_| std::sync::atomic::AtomicU32::new(0)).collect(),
            max: u32::try_from(max).unwrap_or(u32::MAX),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn slot(&self, ip: Ipv4Addr) -> usize {
        usize::try_from(self.hasher.hash_one(u32::from(ip)) % Self::BUCKETS as u64).unwrap_or(0)
    }

    fn bucket(&self, ip: Ipv4Addr) -> Option<&std::sync::atomic::AtomicU32> {
        self.buckets.get(self.slot(ip))
    }

    /// Takes one connection for `ip`; `false` when it holds the maximum already.
    pub fn acquire(&self, ip: Ipv4Addr) -> bool {
        use std::sync::atomic::Ordering;
        let Some(b) = self.bucket(ip) else { return false };
        b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    /// Gives one connection of `ip` back.
    pub fn release(&self, ip: Ipv4Addr) {
        use std::sync::atomic::Ordering;
        if let Some(b) = self.bucket(ip) {
            let _ = b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Connections `ip`'s bucket holds.
    pub fn held(&self, ip: Ipv4Addr) -> u32 {
        self.bucket(ip).map_or(0, |b| b.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// Whether legacy system `l` binds to iwf over SMPP: an SMS centre without `connect`
/// (an MMS centre relays over SMTP; its allow-list is the SMTP server's).
fn binds_here(l: &LegacyConfig) -> bool {
    l.connect.is_none() && l.exchange == crate::route::select::ExchangeKind::Sms
}

impl Directory {
    /// The systems of `[[legacy]]`: those that bind to iwf (SMS centres without
    /// `connect`), and the MMS centres that relay to its SMTP server.
    pub fn new(legacy: &[LegacyConfig]) -> Self {
        Directory { source: DirectorySource::Fixed(legacy.to_vec()), operator: None }
    }

    /// The MMS centre whose allow-list holds `ip`, if one does.
    pub fn mmsc_of(&self, ip: Ipv4Addr) -> Option<u16> {
        let find = |all: &[LegacyConfig]| {
            all.iter().find(|l| l.exchange == crate::route::select::ExchangeKind::Mms && l.allows(ip)).map(|l| l.id)
        };
        match &self.source {
            DirectorySource::Fixed(v) => find(v),
            DirectorySource::Live(p) => find(&p.load().legacy),
        }
    }

    /// The systems of the current provisioning snapshot, read at every bind.
    pub fn live(provision: std::sync::Arc<arc_swap::ArcSwap<crate::control::provision::Provision>>) -> Self {
        Directory { source: DirectorySource::Live(provision), operator: None }
    }

    /// Binds of a system the operator disabled in `shared` are refused.
    pub fn with_operator(mut self, shared: std::sync::Arc<crate::flow::Shared>) -> Self {
        self.operator = Some(shared);
        self
    }

    /// Runs `f` over the systems that bind to iwf (SMS centres without `connect`).
    fn with<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &LegacyConfig>) -> R) -> R {
        match &self.source {
            DirectorySource::Fixed(v) => f(&mut v.iter().filter(|l| binds_here(l))),
            DirectorySource::Live(p) => {
                let p = p.load();
                f(&mut p.legacy.iter().filter(|l| binds_here(l)))
            }
        }
    }

    /// The window of system `id` (10 when unknown).
    pub fn window(&self, id: LegacySystemId) -> usize {
        self.with(|mut it| Iterator::find(&mut it, |s| s.id == id.0).map_or(10, |s| s.window))
    }

    /// The largest window of any system (the sessions' window).
    pub fn max_window(&self) -> usize {
        self.with(|mut it| Iterator::max(Iterator::map(&mut it, |s| s.window)).unwrap_or(10))
    }
}

impl Directory {
    /// Whether any system that binds to iwf allows `ip`: a connection from anywhere
    /// else is refused at its SYN.
    pub fn admits(&self, ip: Ipv4Addr) -> bool {
        self.with(|it| {
            let mut any = false;
            for s in it {
                any |= s.allows(ip);
            }
            any
        })
    }
}

/// What a socket slot serves.
#[derive(Debug)]
enum Service {
    /// A listener/connection of the SMPP server.
    SmppServer { port: u16 },
    /// iwf's bind to an SMSC.
    SmppClient { remote: SocketAddrV4, reconnect: Reconnect, connecting: bool, since: u64, system: u16 },
    /// A listener/connection of SIP over TCP.
    Sip { port: u16, input: StreamIn },
    /// iwf's own connection to the SIP next hop, for its requests over 1300 octets
    /// (RFC 3261 §18.1.1), opened when one waits. `sending`: octets of the first
    /// waiting request already in the socket (a request larger than the send buffer
    /// goes in pieces).
    SipClient { remote: SocketAddrV4, connecting: bool, since: u64, retry_at: u64, input: StreamIn, sending: Sending },
    /// A listener/connection of the SMTP server MMS centres relay MM4 to.
    SmtpServer { port: u16 },
    /// iwf's SMTP client toward MMS centre `system`, opened when a message waits.
    /// `backoff`: the wait after the next failure, between `reconnect_ms` (the MMS
    /// centre's `reconnect_initial_ms`, `reconnect_max_ms`).
    SmtpClient {
        system: u16,
        remote: SocketAddrV4,
        connecting: bool,
        since: u64,
        retry_at: u64,
        backoff: u64,
        reconnect_ms: (u64, u64),
    },
}

#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    service: Service,
    smpp: Option<SmppConn>,
    /// An SMTP server connection's session.
    smtp: Option<Box<SmtpConn>>,
    /// iwf's SMTP client's session and queue.
    mm4: Option<Box<Mm4Conn>>,
    peer: Option<Ipv4Addr>,
    open: bool,
    /// An SMPP server connection not bound yet: it holds one of the port's
    /// [`UnboundCap`](super::admission::UnboundCap) places.
    unbound: bool,
}

/// What [`TcpStack::new`] needs.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// The port's MAC address.
    pub mac: EthernetAddress,
    /// Our address on it.
    pub ip: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Its gateway.
    pub gateway: Option<Ipv4Addr>,
    /// SMPP server port.
    pub smpp_port: Option<u16>,
    /// SIP-over-TCP port.
    pub sip_port: Option<u16>,
    /// SMSCs this stack binds to (client role).
    pub clients: Vec<SmscClient>,
    /// `[tcp]`.
    pub tcp: TcpConfig,
    /// This worker (for its ephemeral ports and seeds).
    pub queue: u16,
    /// The port's per-peer connection counts (one table shared by the port's workers).
    pub limits: std::sync::Arc<PeerLimits>,
    /// The port's bind back-off and unbound-connection cap (shared likewise).
    pub bind_guard: std::sync::Arc<BindGuard>,
    /// Requests a bind may hold outside its window (`smpp.parts_aside`).
    pub parts_aside: usize,
    /// `[sip] trusted`: the addresses that may open SIP-over-TCP connections (empty:
    /// anyone).
    pub sip_trusted: Vec<(Ipv4Addr, u8)>,
    /// SIP server transactions for the TCP streams.
    pub sip_transactions: usize,
    /// Bytes per SIP server transaction.
    pub sip_slot_bytes: usize,
    /// The SIP next hop iwf's large requests go to over TCP from this port (none: the
    /// next hop is not behind this port).
    pub sip_next_hop: Option<SocketAddrV4>,
    /// Timer F of those requests (64·T1; 0: 32 s).
    pub timer_f_ms: u64,
    /// The largest SIP message a stream takes (`[sip] max_message_bytes`).
    pub sip_max_message: usize,
    /// What the streams may hold beyond their buffers at rest, shared by every stack.
    pub sip_budget: std::sync::Arc<StreamBudget>,
    /// The SMTP server's port (MMS centres relay MM4 to it).
    pub smtp_port: Option<u16>,
    /// The MMS centres this port's SMTP clients deliver MM4 to.
    pub mm4_clients: Vec<Mm4Client>,
    /// The name iwf gives in SMTP (its greeting, EHLO).
    pub smtp_hostname: String,
    /// The largest MM4 message the SMTP server takes.
    pub smtp_max_message: usize,
}

/// One worker's TCP on one port: the frames waiting for smoltcp, and the [`Endpoint`].
#[derive(Debug)]
pub struct TcpStack {
    rx: FrameQueue,
    endpoint: Endpoint,
}

impl TcpStack {
    /// See [`Endpoint::new`]; plus the input queue of [`RX_QUEUE`] frames.
    pub fn new(settings: &StackSettings, directory: Directory, route: Route, now_ms: u64) -> TcpStack {
        TcpStack { rx: FrameQueue::new(RX_QUEUE), endpoint: Endpoint::new(settings, directory, route, now_ms) }
    }

    /// The stack of port `port` (the port index its connections are named by).
    pub fn on_port(mut self, port: u8) -> TcpStack {
        self.endpoint.port = port;
        self
    }

    /// Queues a frame for smoltcp's next poll; hands it back when the queue is full.
    pub fn queue(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        self.rx.push(m)
    }

    /// Whether a connection attempt (a SYN) from `peer` to our `port` may go on; see
    /// [`Endpoint::admit`].
    pub fn admit(&self, peer: Ipv4Addr, port: u16, now_ms: u64) -> Result<(), Refusal> {
        self.endpoint.admit(peer, port, now_ms)
    }

    /// Runs smoltcp and the applications over the worker's mbufs when frames wait or a
    /// timer is due (frames go on `tx`); SMPP requests and SIP-over-TCP MESSAGEs go to
    /// the worker's engine `flows` (`None`: answered `ESME_RX_T_APPN` and by the policy).
    pub fn poll(
        &mut self,
        now_ms: u64,
        pool: &Mempool,
        counters: &QueueCounters,
        tx: &mut TxBatch,
        flows: Option<&mut Flows>,
    ) {
        let input = !self.rx.is_empty();
        let mut dev = MbufDevice { rx: &mut self.rx, pool, tx, counters };
        self.endpoint.poll(now_ms, input, counters, &mut dev, flows);
    }
}

/// The smoltcp interface and sockets of one worker on one port, and the SMPP and SIP
/// applications on them; driven over any [`phy::Device`] (the worker's mbufs, or frames
/// in memory in tests).
pub struct Endpoint {
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
    directory: Directory,
    sip: Option<(ServerTransactions, UasPolicy<Route>)>,
    reply: Vec<u8>,
    ephemeral: std::ops::Range<u16>,
    next_ephemeral: u16,
    limits: std::sync::Arc<PeerLimits>,
    guard: std::sync::Arc<BindGuard>,
    /// `[sip] trusted`: who may open a SIP-over-TCP connection (empty: anyone).
    sip_trusted: Vec<(Ipv4Addr, u8)>,
    smpp_port: Option<u16>,
    sip_port: Option<u16>,
    next_poll: u64,
    next_service: u64,
    /// This port's index (the port of its [`ConnRef`]s).
    port: u8,
    /// iwf's requests waiting for the connection to the next hop: (token, bytes).
    sip_out: std::collections::VecDeque<(u64, Vec<u8>)>,
    /// iwf's requests sent on it, waiting for their final responses.
    sip_sent: Vec<StreamRequest>,
    /// Their Timer F.
    timer_f_ms: u64,
    /// The largest SIP message a stream takes.
    sip_max_message: usize,
    /// The SMTP server's port.
    smtp_port: Option<u16>,
    /// What the SIP streams may hold beyond their buffers at rest (all stacks).
    sip_budget: std::sync::Arc<StreamBudget>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

fn seed(salt: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.finish()
}

fn new_socket(tcp: &TcpConfig) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; tcp.rx_buffer]),
        tcp::SocketBuffer::new(vec![0u8; tcp.tx_buffer]),
    );
    s.set_congestion_control(CongestionControl::Cubic);
    // SMPP and SIP are request/response: send each PDU at once.
    s.set_nagle_enabled(false);
    s
}

/// Why a connection attempt was refused at its SYN (answered with a RST, counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// SMPP: no legacy system allows the address.
    NotAllowed,
    /// SMPP: the address failed to bind too often and waits out its back-off.
    Backoff,
    /// SIP over TCP: the address is not in `[sip] trusted`.
    Untrusted,
    /// SMTP: no MMS centre allows the address.
    NotMmsc,
}

impl Endpoint {
    /// Admission at the SYN, before the attempt costs a socket or a handshake: to the
    /// SMPP port only from an address some legacy system allows and that is not in
    /// its bind back-off; to the SIP port only from `[sip] trusted`; to the SMTP port
    /// only from an address some MMS centre allows. Other ports are
    /// smoltcp's (nothing listens: it resets them itself).
    pub fn admit(&self, peer: Ipv4Addr, port: u16, now_ms: u64) -> Result<(), Refusal> {
        if self.smpp_port == Some(port) {
            if !self.directory.admits(peer) {
                return Err(Refusal::NotAllowed);
            }
            if self.guard.backoff.refused(peer, now_ms / 1000) {
                return Err(Refusal::Backoff);
            }
        } else if self.sip_port == Some(port) && !in_cidrs(&self.sip_trusted, peer, true) {
            return Err(Refusal::Untrusted);
        } else if self.smtp_port == Some(port) && self.directory.mmsc_of(peer).is_none() {
            return Err(Refusal::NotMmsc);
        }
        Ok(())
    }

    /// Everything allocated here: the interface, `tcp.sockets` sockets with their
    /// buffers (one per client, the rest split between the SMPP and SIP listeners), a
    /// session per SMPP socket, a stream buffer per SIP socket.
    pub fn new(settings: &StackSettings, directory: Directory, route: Route, now_ms: u64) -> Endpoint {
        let mut config = Config::new(HardwareAddress::Ethernet(settings.mac));
        config.random_seed = seed(u64::from(settings.queue));
        let now = SmolInstant::from_millis(i64::try_from(now_ms).unwrap_or(0));
        let mut iface = Interface::new(config, &mut NoFrames, now);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(settings.ip), settings.prefix_len));
        });
        if let Some(gw) = settings.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let (sockets, slots) = slots_of(settings, directory.max_window().max(WINDOW_ROOM));
        let sip = settings.sip_port.map(|_| {
            let server = ServerTransactions::new(ServerConfig {
                capacity: settings.sip_transactions,
                slot_len: settings.sip_slot_bytes,
                secret: [seed(7), seed(8)],
                max_request_len: settings.sip_max_message.max(ServerConfig::default().max_request_len),
                ..ServerConfig::default()
            });
            (server, UasPolicy::new(route))
        });
        let ephemeral = ephemeral_range(settings.queue);
        Endpoint {
            iface,
            sockets,
            slots,
            directory,
            sip,
            reply: vec![0u8; SIP_REPLY_MAX],
            next_ephemeral: ephemeral.start,
            ephemeral,
            limits: std::sync::Arc::clone(&settings.limits),
            guard: std::sync::Arc::clone(&settings.bind_guard),
            sip_trusted: settings.sip_trusted.clone(),
            smpp_port: settings.smpp_port,
            sip_port: settings.sip_port,
            next_poll: 0,
            next_service: 0,
            port: 0,
            sip_out: std::collections::VecDeque::new(),
            sip_sent: Vec::new(),
            timer_f_ms: if settings.timer_f_ms == 0 { SIP_CLIENT_TIMER_F_MS } else { settings.timer_f_ms },
            sip_max_message: settings.sip_max_message.max(SIP_STREAM_BUFFER),
            smtp_port: settings.smtp_port,
            sip_budget: std::sync::Arc::clone(&settings.sip_budget),
        }
    }

    /// Runs smoltcp and the applications over `dev` when `input` frames wait or a timer
    /// is due: ingress, the sessions and streams, egress.
    pub fn poll<D: phy::Device>(
        &mut self,
        now_ms: u64,
        input: bool,
        counters: &QueueCounters,
        dev: &mut D,
        flows: Option<&mut Flows>,
    ) {
        let port = self.port;
        let flows_work = flows.as_deref().is_some_and(|f| {
            f.has_smpp_for(port)
                || f.has_tcp_answer(port)
                || f.has_smtp_answer(port)
                || f.has_mm4_out(|system| mm4_takes(&self.slots, system))
                || (f.has_request_tcp()
                    && self.sip_out.len() < SIP_CLIENT_QUEUE
                    && self.slots.iter().any(|s| matches!(s.service, Service::SipClient { .. })))
        });
        if !input && !flows_work && now_ms < self.next_poll && now_ms < self.next_service {
            return;
        }
        let now = SmolInstant::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        self.iface.poll(now, dev, &mut self.sockets);
        self.service(now_ms, counters, flows);
        self.iface.poll(now, dev, &mut self.sockets);
        self.next_service = now_ms.saturating_add(SERVICE_EVERY_MS);
        self.next_poll =
            self.iface.poll_at(now, &self.sockets).map_or(u64::MAX, |t| u64::try_from(t.total_millis()).unwrap_or(0));
    }

    fn service(&mut self, now: u64, qc: &QueueCounters, mut flows: Option<&mut Flows>) {
        self.dispatch(now, qc, flows.as_deref_mut());
        if self.sip_sent.iter().any(|r| r.deadline <= now) {
            if let Some(f) = flows.as_deref_mut() {
                self.sip_sent.retain(|r| {
                    if r.deadline > now {
                        return true;
                    }
                    qc.tcp.sip_client_timeouts.inc();
                    f.handle(now, Input::SipFinal { token: r.token, status: 408 });
                    false
                });
            }
        }
        for i in 0..self.slots.len() {
            self.service_slot(i, now, qc, flows.as_deref_mut());
        }
        // What the flows decided while the slots were read goes out in this poll.
        if self.dispatch(now, qc, flows) {
            self.flush(now);
        }
    }

    /// Applies the flows' SMPP actions and SIP-over-TCP answers for this port; true when
    /// anything was applied.
    fn dispatch(&mut self, now: u64, qc: &QueueCounters, flows: Option<&mut Flows>) -> bool {
        let Some(f) = flows else { return false };
        let mut any = false;
        // What waited for room in a session's window goes first, in order, as far as
        // the window now allows (one refused try per connection, whatever waits).
        for slot in &mut self.slots {
            let Some(c) = slot.smpp.as_mut() else { continue };
            while let Some(req) = c.waiting.pop_front() {
                match send_to(&mut c.session, now, &req) {
                    Ok(seq) => {
                        any = true;
                        f.handle(now, Input::SmppSent { conn: c.conn_id, seq, req });
                    }
                    Err(Sendable::Later) => {
                        c.waiting.push_front(req);
                        break;
                    }
                    Err(Sendable::Never) => f.handle(now, Input::SmppUnsent { conn: c.conn_id, req }),
                }
            }
        }
        while let Some((conn, out)) = f.poll_smpp(self.port) {
            any = true;
            let slot = usize::from(conn.slot);
            let Some(c) = self.slots.get_mut(slot).and_then(|s| s.smpp.as_mut()) else {
                if let SmppOut::Send(req) = out {
                    f.handle(now, Input::SmppUnsent { conn, req });
                }
                continue;
            };
            match out {
                SmppOut::Send(req) => {
                    // Behind what already waits for this connection, or sent now.
                    let sent =
                        if c.waiting.is_empty() { send_to(&mut c.session, now, &req) } else { Err(Sendable::Later) };
                    match sent {
                        Ok(seq) => f.handle(now, Input::SmppSent { conn, seq, req }),
                        Err(Sendable::Later) if c.waiting.len() < SEND_WAIT_MAX => {
                            qc.smpp.send_deferred.inc();
                            c.conn_id = conn;
                            c.waiting.push_back(req);
                        }
                        Err(_) => f.handle(now, Input::SmppUnsent { conn, req }),
                    }
                }
                SmppOut::SetAside { seq } => {
                    if c.session.set_aside(seq) {
                        qc.smpp.parts_aside.inc();
                    } else {
                        qc.smpp.parts_aside_refused.inc();
                    }
                }
                SmppOut::Respond { seq, status, message_id, id_len } => {
                    let id = message_id.get(..usize::from(id_len)).unwrap_or(&[]);
                    // An error means the session answered it already (throttled, or the
                    // connection went): nothing is left to answer.
                    let _ = c.session.respond(seq, status, id);
                }
            }
        }
        if self.slots.iter().any(|s| matches!(s.service, Service::SipClient { .. })) {
            // A full queue leaves the requests in the flows (their receipts or parts stay
            // unanswered) rather than failing them: a failed IMDN's receipt would be
            // answered with an error after the correlation took its state.
            while self.sip_out.len() < SIP_CLIENT_QUEUE {
                let Some(req) = f.poll_request_tcp() else { break };
                any = true;
                self.sip_out.push_back((req.token, req.bytes));
            }
        }
        while let Some((conn, reply)) = f.poll_smtp_answer(self.port) {
            any = true;
            // A reply for a connection gone is dropped (the engine forgets closed ones).
            if let Some(c) = self.slots.get_mut(usize::from(conn.slot)).and_then(|s| s.smtp.as_mut()) {
                let _ = c.server.answer(now, reply);
            }
        }
        while let Some(o) = f.poll_mm4_out(|system| mm4_takes(&self.slots, system)) {
            any = true;
            let slot = self
                .slots
                .iter_mut()
                .find(|s| matches!(s.service, Service::SmtpClient { system, .. } if system == o.system));
            match slot.and_then(|s| s.mm4.as_mut()) {
                Some(c) => c.queue(o, &qc.tcp),
                None => {
                    qc.tcp.mm4_dropped.inc();
                    if let Some(token) = o.token {
                        f.handle(now, Input::Mm4Done { token, delivered: false });
                    }
                }
            }
        }
        while let Some(a) = f.poll_tcp_answer(self.port) {
            any = true;
            let SipTxn::Tcp { slot, id, .. } = a.txn else { continue };
            let Some((server, _)) = self.sip.as_mut() else { continue };
            let Some(r) = answer_into(server, now, id, a.status, a.reason, a.retry_after, &mut self.reply) else {
                continue;
            };
            let Some(handle) = self.slots.get(usize::from(slot)).map(|s| s.handle) else { continue };
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            if sock.may_send() {
                let _ = sock.send_slice(self.reply.get(..r.len).unwrap_or(&[]));
                if self.reply.get(8) == Some(&b'2') {
                    qc.tcp.sip_tx_2xx.inc();
                } else {
                    qc.tcp.sip_tx_other.inc();
                }
            }
        }
        any
    }

    /// Writes what the SMPP sessions have to send into their sockets.
    fn flush(&mut self, _now: u64) {
        for slot in &mut self.slots {
            let Some(c) = slot.smpp.as_mut() else { continue };
            if !slot.open {
                continue;
            }
            let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            let session = &mut c.session;
            if sock.can_send() && session.buffered_output() > 0 {
                let _ = sock.send(|buf| {
                    let n = session.poll_transmit(buf);
                    (n, n)
                });
            }
        }
    }

    fn service_slot(&mut self, i: usize, now: u64, qc: &QueueCounters, flows: Option<&mut Flows>) {
        let tc = &qc.tcp;
        let Some(handle) = self.slots.get(i).map(|s| s.handle) else { return };
        let (state, remote) = {
            let sock = self.sockets.get::<tcp::Socket>(handle);
            (sock.state(), sock.remote_endpoint())
        };
        if !self.accept_slot(i, now, state, remote, tc) {
            return;
        }
        if !self.slots.get(i).is_some_and(|s| s.open) {
            self.idle_slot(i, now, state, qc, flows);
            return;
        }
        // Open slots: drive the application.
        let gone = matches!(state, TcpState::Closed | TcpState::TimeWait | TcpState::Listen);
        let smpp = matches!(
            self.slots.get(i).map(|s| &s.service),
            Some(Service::SmppServer { .. } | Service::SmppClient { .. })
        );
        let smtp = matches!(
            self.slots.get(i).map(|s| &s.service),
            Some(Service::SmtpServer { .. } | Service::SmtpClient { .. })
        );
        if smpp {
            if !self.smpp_slot(i, now, gone, qc, flows) {
                return;
            }
        } else if smtp {
            self.smtp_slot(i, now, gone, tc, flows);
        } else {
            self.sip_slot(i, now, gone, remote, tc, flows);
        }
        if gone {
            self.release_slot(i, tc);
        }
    }

    /// An open SIP connection: a served stream's requests to the transaction layer, or
    /// iwf's own requests onto its stream to the next hop.
    fn sip_slot(
        &mut self,
        i: usize,
        now: u64,
        gone: bool,
        remote: Option<IpEndpoint>,
        tc: &TcpCounters,
        mut flows: Option<&mut Flows>,
    ) {
        let Endpoint {
            slots,
            sockets,
            sip,
            reply,
            sip_out,
            sip_sent,
            timer_f_ms,
            port,
            sip_max_message,
            sip_budget,
            ..
        } = self;
        let Some(slot) = slots.get_mut(i) else { return };
        let sock = sockets.get_mut::<tcp::Socket>(slot.handle);
        match &mut slot.service {
            Service::Sip { input, .. } => {
                let limits = StreamLimits { max_message: *sip_max_message, budget: sip_budget };
                if !gone {
                    if let Some((server, policy)) = sip.as_mut() {
                        let peer =
                            SocketAddrV4::new(slot.peer.unwrap_or(Ipv4Addr::UNSPECIFIED), remote.map_or(0, |e| e.port));
                        let flows = flows.as_deref_mut().map(|f| (f, (*port, i as u16)));
                        sip_stream(now, sock, input, limits, peer, server, policy, reply, tc, flows);
                    }
                } else {
                    input.reset(sip_budget);
                }
                if !gone && !sock.may_recv() && sock.send_queue() == 0 {
                    sock.close();
                }
            }
            Service::SipClient { input, sending, .. } => {
                if !gone {
                    let limits = StreamLimits { max_message: *sip_max_message, budget: sip_budget };
                    let stream =
                        ClientStream { input, limits, sending, out: sip_out, sent: sip_sent, timer_f_ms: *timer_f_ms };
                    sip_client_stream(now, sock, stream, flows.as_deref_mut(), tc);
                }
                if gone {
                    // A request cut off mid-way is not sent again (a next hop that resets
                    // it would get it for ever): it is answered as a transport error.
                    if std::mem::take(sending).octets > 0 {
                        if let Some((token, _)) = sip_out.pop_front() {
                            tc.sip_client_failed.inc();
                            if let Some(f) = flows.as_deref_mut() {
                                f.handle(now, Input::SipFinal { token, status: 503 });
                            }
                        }
                    }
                    input.reset(sip_budget);
                    // Requests whose responses were on the lost connection: their fate is
                    // unknown, answered as a transport error.
                    for r in sip_sent.drain(..) {
                        tc.sip_client_failed.inc();
                        if let Some(f) = flows.as_deref_mut() {
                            f.handle(now, Input::SipFinal { token: r.token, status: 503 });
                        }
                    }
                }
            }
            Service::SmppServer { .. }
            | Service::SmppClient { .. }
            | Service::SmtpServer { .. }
            | Service::SmtpClient { .. } => {}
        }
    }

    /// An open SMTP connection: an MMS centre's (its messages to the engine, the
    /// engine's replies back) or iwf's own toward one (its queue to the MMS centre).
    fn smtp_slot(&mut self, i: usize, now: u64, gone: bool, tc: &TcpCounters, flows: Option<&mut Flows>) {
        let port = self.port;
        let Some(slot) = self.slots.get_mut(i) else { return };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        if let Some(c) = slot.smtp.as_mut() {
            let conn_id = ConnRef::new(port, i as u16);
            if gone {
                c.server.connection_lost();
                if let Some(f) = flows {
                    f.handle(now, Input::Closed { conn: conn_id });
                }
                while c.server.poll_event().is_some() {}
            } else {
                drive_smtp(now, sock, c, conn_id, tc, flows);
            }
        } else if let Some(c) = slot.mm4.as_mut() {
            if gone {
                let delivered = c.lost(tc);
                if let Service::SmtpClient { retry_at, backoff, reconnect_ms, .. } = &mut slot.service {
                    // A connection that closed without delivering anything is tried again
                    // later and later (an MMS centre that refuses at its greeting, or
                    // resets, is not hammered).
                    *backoff =
                        if delivered { reconnect_ms.0 } else { (*backoff * 2).clamp(reconnect_ms.0, reconnect_ms.1) };
                    *retry_at = now.saturating_add(*backoff);
                }
            } else {
                drive_mm4(now, sock, c, tc);
            }
            if let Some(f) = flows {
                for (token, delivered) in c.done.drain(..) {
                    f.handle(now, Input::Mm4Done { token, delivered });
                }
            }
        }
    }

    /// A listener or active open of slot `i` that reached a connected state becomes an
    /// open connection, if the per-peer limit and the unbound cap let it: false when it
    /// was refused (and reset).
    fn accept_slot(
        &mut self,
        i: usize,
        now: u64,
        state: TcpState,
        remote: Option<IpEndpoint>,
        tc: &TcpCounters,
    ) -> bool {
        let Some(s) = self.slots.get(i) else { return false };
        let handle = s.handle;
        let is_client =
            matches!(s.service, Service::SmppClient { .. } | Service::SipClient { .. } | Service::SmtpClient { .. });
        let connecting = matches!(
            s.service,
            Service::SmppClient { connecting: true, .. }
                | Service::SipClient { connecting: true, .. }
                | Service::SmtpClient { connecting: true, .. }
        );
        let connected = matches!(state, TcpState::Established | TcpState::CloseWait);
        if s.open || !connected || (is_client && !connecting) {
            return true;
        }
        let ip = remote
            .map(|e| match e.addr {
                IpAddress::Ipv4(a) => a,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        if !is_client && !self.limits.acquire(ip) {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            tc.refused_peer_limit.inc();
            return false;
        }
        let smpp_server = matches!(s.service, Service::SmppServer { .. });
        if smpp_server && !self.guard.unbound.acquire() {
            // Strangers may not hold every socket: unbound connections are capped.
            self.limits.release(ip);
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            tc.refused_unbound_cap.inc();
            return false;
        }
        let Some(slot) = self.slots.get_mut(i) else { return false };
        slot.open = true;
        slot.peer = Some(ip);
        slot.unbound = smpp_server;
        match &mut slot.service {
            Service::SmppClient { connecting, .. } | Service::SmtpClient { connecting, .. } => *connecting = false,
            Service::SipClient { connecting, input, sending, .. } => {
                *connecting = false;
                input.reset(&self.sip_budget);
                *sending = Sending::default();
            }
            _ => tc.accepted.inc(),
        }
        if let Service::Sip { input, .. } = &mut slot.service {
            input.reset(&self.sip_budget);
        }
        if let Some(c) = slot.smpp.as_mut() {
            c.pending.clear();
            c.session.connected(now, ip);
        }
        if let Some(c) = slot.smtp.as_mut() {
            c.system = self.directory.mmsc_of(ip);
            c.server.connected(now, c.system.is_some());
        }
        if let Some(c) = slot.mm4.as_mut() {
            c.client.connected(now);
        }
        true
    }

    /// An idle slot: a listener listens again; a client connects when its back-off
    /// allows, and a SIP client that cannot connect fails what waits for it.
    fn idle_slot(&mut self, i: usize, now: u64, state: TcpState, qc: &QueueCounters, flows: Option<&mut Flows>) {
        let (tc, sc) = (&qc.tcp, &qc.smpp);
        let Some(slot) = self.slots.get_mut(i) else { return };
        let sock = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        match &mut slot.service {
            Service::SmppServer { port } | Service::Sip { port, .. } | Service::SmtpServer { port } => {
                // A slot in TIME-WAIT listens again once it has passed (10 s).
                if state == TcpState::Closed {
                    let _ = sock.listen(*port);
                }
            }
            Service::SmtpClient { remote, connecting, since, retry_at, backoff, reconnect_ms, .. } => {
                let wanted = slot.mm4.as_ref().is_some_and(|c| c.wants_connection());
                if *connecting {
                    if state == TcpState::Closed || now.saturating_sub(*since) > CONNECT_TIMEOUT_MS {
                        sock.abort();
                        *connecting = false;
                        *retry_at = now.saturating_add(*backoff);
                        *backoff = (*backoff * 2).clamp(reconnect_ms.0, reconnect_ms.1);
                        tc.connect_failed.inc();
                    }
                } else if state == TcpState::TimeWait {
                    sock.abort();
                } else if state == TcpState::Closed && wanted && now >= *retry_at {
                    // What waits stays queued while the MMS centre cannot be reached.
                    let (next, range) = (&mut self.next_ephemeral, &self.ephemeral);
                    match active_open(sock, self.iface.context(), *remote, next, range) {
                        Ok(()) => {
                            *connecting = true;
                            *since = now;
                            tc.active_opens.inc();
                        }
                        Err(_) => {
                            *retry_at = now.saturating_add(*backoff);
                            tc.connect_failed.inc();
                        }
                    }
                }
            }
            Service::SipClient { remote, connecting, since, retry_at, .. } => {
                let mut failed = false;
                if *connecting {
                    if state == TcpState::Closed || now.saturating_sub(*since) > CONNECT_TIMEOUT_MS {
                        sock.abort();
                        *connecting = false;
                        failed = true;
                    }
                } else if state == TcpState::TimeWait {
                    sock.abort();
                } else if state == TcpState::Closed && !self.sip_out.is_empty() && now >= *retry_at {
                    let (next, range) = (&mut self.next_ephemeral, &self.ephemeral);
                    match active_open(sock, self.iface.context(), *remote, next, range) {
                        Ok(()) => {
                            *connecting = true;
                            *since = now;
                            tc.active_opens.inc();
                        }
                        Err(_) => failed = true,
                    }
                }
                if failed {
                    // The next hop is unreachable over TCP: what waits is answered
                    // as a transport error (503: the legacy side retries later).
                    tc.connect_failed.inc();
                    *retry_at = now.saturating_add(1_000);
                    if let Some(f) = flows {
                        for (token, _) in self.sip_out.drain(..) {
                            tc.sip_client_failed.inc();
                            f.handle(now, Input::SipFinal { token, status: 503 });
                        }
                    }
                }
            }
            Service::SmppClient { remote, reconnect, connecting, since, system } => {
                if *connecting {
                    if state == TcpState::Closed || now.saturating_sub(*since) > CONNECT_TIMEOUT_MS {
                        sock.abort();
                        *connecting = false;
                        reconnect.connect_failed(now);
                        tc.connect_failed.inc();
                    }
                } else if state == TcpState::TimeWait {
                    sock.abort();
                } else if state == TcpState::Closed
                    && reconnect.may_attempt(now)
                    && !flows.as_deref().is_some_and(|f| f.shared().is_disabled(*system))
                {
                    let (next, range) = (&mut self.next_ephemeral, &self.ephemeral);
                    match active_open(sock, self.iface.context(), *remote, next, range) {
                        Ok(()) => {
                            *connecting = true;
                            *since = now;
                            tc.active_opens.inc();
                            sc.client_connects.inc();
                        }
                        Err(_) => {
                            reconnect.connect_failed(now);
                            tc.connect_failed.inc();
                        }
                    }
                }
            }
        }
    }

    /// An open SMPP connection: its input to the session, the session's events to the
    /// engine and to admission, its window as provisioned now. False when the slot has
    /// no session (nothing more to do for it).
    fn smpp_slot(&mut self, i: usize, now: u64, gone: bool, qc: &QueueCounters, mut flows: Option<&mut Flows>) -> bool {
        let sc = &qc.smpp;
        let Endpoint { slots, sockets, directory, guard, port, .. } = self;
        let Some(slot) = slots.get_mut(i) else { return false };
        let sock = sockets.get_mut::<tcp::Socket>(slot.handle);
        let is_client = matches!(slot.service, Service::SmppClient { .. });
        let Some(conn) = slot.smpp.as_mut() else { return false };
        let conn_id = ConnRef::new(*port, i as u16);
        if gone {
            conn.session.connection_lost(now);
        }
        if !matches!(conn.session.state(), SmppState::Bound(_)) {
            // What waited for this session's window will not go on it.
            if let Some(f) = flows.as_deref_mut() {
                for req in conn.waiting.drain(..) {
                    f.handle(now, Input::SmppUnsent { conn: conn_id, req });
                }
            }
        }
        if !gone {
            let flows = flows.as_deref_mut().map(|f| (f, conn_id));
            if is_client {
                drive_smpp(now, sock, conn, &mut RefuseBinds, sc, flows);
            } else {
                drive_smpp(now, sock, conn, directory, sc, flows);
            }
            if !sock.may_recv() && !matches!(conn.session.state(), SmppState::Closed(_)) {
                conn.session.connection_lost(now);
            }
        }
        let window = &mut conn.window;
        while let Some(e) = conn.session.poll_event() {
            if let Some(f) = flows.as_deref_mut() {
                flow_event(f, now, conn_id, &e, &slot.service);
                if let Event::Bound { system, bind_type } = &e {
                    let kind = match (system, bind_type) {
                        (None, _) => "transceiver (iwf binds)",
                        (Some(_), crate::session::smpp::BindType::Transmitter) => "transmitter",
                        (Some(_), crate::session::smpp::BindType::Receiver) => "receiver",
                        (Some(_), crate::session::smpp::BindType::Transceiver) => "transceiver",
                    };
                    f.bind_seen(conn_id, slot.peer, kind);
                }
            }
            if let (Service::SmppServer { .. }, Some(ip)) = (&slot.service, slot.peer) {
                match &e {
                    Event::Bound { .. } => {
                        guard.backoff.bound(ip);
                        if std::mem::take(&mut slot.unbound) {
                            guard.unbound.release();
                        }
                    }
                    Event::Closed { reason: crate::session::smpp::CloseReason::BindRefused(_) }
                        if guard.backoff.failed(ip, now / 1000) =>
                    {
                        sc.bind_backoffs.inc();
                    }
                    _ => {}
                }
            }
            smpp_event(now, e, &mut slot.service, window, directory, sc);
        }
        // A bind holds its own system's window, as provisioned now (read again
        // once a second, so a reload changes it on live binds).
        // And a system the operator disabled is unbound (its receipts wait in the
        // store; its binds are refused and iwf's own does not reconnect meanwhile).
        if now >= conn.window_read.saturating_add(1000) {
            conn.window_read = now;
            if let (Service::SmppServer { .. }, Some(id)) = (&slot.service, conn.session.system()) {
                conn.window = directory.window(id);
            }
            let system = match &slot.service {
                Service::SmppClient { system, .. } => Some(*system),
                _ => conn.session.system().map(|s| s.0),
            };
            let disabled = system.is_some_and(|id| flows.as_deref().is_some_and(|f| f.shared().is_disabled(id)));
            if disabled && matches!(conn.session.state(), SmppState::Bound(_)) {
                let _ = conn.session.unbind(now);
            }
        }
        if let (Service::SmppServer { .. }, Some(_)) = (&slot.service, conn.session.system()) {
            conn.session.set_window(conn.window);
        }
        sync_counters(&mut conn.seen, conn.session.counters(), sc);
        if matches!(conn.session.state(), SmppState::Closed(_))
            && conn.session.buffered_output() == 0
            && !gone
            && sock.send_queue() == 0
        {
            sock.close();
        }
        true
    }

    /// A connection of slot `i` is gone: its peer's and the unbound cap's places freed.
    fn release_slot(&mut self, i: usize, tc: &TcpCounters) {
        let Some(slot) = self.slots.get_mut(i) else { return };
        if let (Some(ip), false) = (
            slot.peer,
            matches!(slot.service, Service::SmppClient { .. } | Service::SipClient { .. } | Service::SmtpClient { .. }),
        ) {
            self.limits.release(ip);
        }
        if std::mem::take(&mut slot.unbound) {
            self.guard.unbound.release();
        }
        slot.open = false;
        slot.peer = None;
        tc.closed.inc();
    }
}

/// The sockets of one stack and their slots, allocated here once: iwf's binds to
/// SMSCs, then the SMPP and SIP listeners (the sockets left, shared between the two
/// ports), then iwf's connection to its SIP next hop. `window` sizes each served
/// SMPP session (the largest a system is provisioned with).
fn slots_of(settings: &StackSettings, window: usize) -> (SocketSet<'static>, Vec<Slot>) {
    let own = settings.clients.len() + usize::from(settings.sip_next_hop.is_some()) + settings.mm4_clients.len();
    let total = settings.tcp.sockets.max(own + 2);
    let mut sockets = SocketSet::new(Vec::with_capacity(total));
    let mut slots = Vec::with_capacity(total);
    let mut add = |service: Service, smpp: Option<SmppConn>, smtp: Option<Box<SmtpConn>>, mm4: Option<Box<Mm4Conn>>| {
        let handle = sockets.add(new_socket(&settings.tcp));
        slots.push(Slot { handle, service, smpp, smtp, mm4, peer: None, open: false, unbound: false });
    };
    for (i, c) in settings.clients.iter().enumerate() {
        let reconnect = Reconnect::new(c.reconnect, seed(i as u64 + 100));
        let service =
            Service::SmppClient { remote: c.remote, reconnect, connecting: false, since: 0, system: c.system };
        add(service, Some(smpp_conn(settings, Role::Client(c.credentials), c.window)), None, None);
    }
    let (smpp_n, sip_n, smtp_n) = listener_shares(settings, total.saturating_sub(own));
    for port in settings.smpp_port.into_iter().flat_map(|p| std::iter::repeat_n(p, smpp_n)) {
        add(Service::SmppServer { port }, Some(smpp_conn(settings, Role::Server, window)), None, None);
    }
    for port in settings.sip_port.into_iter().flat_map(|p| std::iter::repeat_n(p, sip_n)) {
        add(Service::Sip { port, input: StreamIn::new() }, None, None, None);
    }
    for port in settings.smtp_port.into_iter().flat_map(|p| std::iter::repeat_n(p, smtp_n)) {
        let conn = SmtpConn::new(&settings.smtp_hostname, settings.smtp_max_message);
        add(Service::SmtpServer { port }, None, Some(Box::new(conn)), None);
    }
    for c in &settings.mm4_clients {
        let service = Service::SmtpClient {
            system: c.system,
            remote: c.remote,
            connecting: false,
            since: 0,
            retry_at: 0,
            backoff: c.reconnect_ms.0,
            reconnect_ms: c.reconnect_ms,
        };
        add(service, None, None, Some(Box::new(Mm4Conn::new(&settings.smtp_hostname))));
    }
    if let Some(remote) = settings.sip_next_hop {
        let input = StreamIn::new();
        let service =
            Service::SipClient { remote, connecting: false, since: 0, retry_at: 0, input, sending: Sending::default() };
        add(service, None, None, None);
    }
    (sockets, slots)
}

/// Whether this stack has an SMTP client for MMS centre `system` with room in its
/// queue (what it cannot take stays with the engine, which then answers 451).
fn mm4_takes(slots: &[Slot], system: u16) -> bool {
    slots.iter().any(|s| {
        matches!(s.service, Service::SmtpClient { system: x, .. } if x == system)
            && s.mm4.as_ref().is_some_and(|c| c.has_room())
    })
}

/// The listener sockets of the SMPP, SIP and SMTP ports: `listeners` shared evenly
/// between the ports served, the first ones getting what does not divide.
fn listener_shares(settings: &StackSettings, listeners: usize) -> (usize, usize, usize) {
    let served = [settings.smpp_port, settings.sip_port, settings.smtp_port];
    let n = served.iter().filter(|p| p.is_some()).count();
    let mut nth = 0;
    let mut share = |present: bool| {
        if !present || n == 0 {
            return 0;
        }
        nth += 1;
        listeners / n + usize::from(nth - 1 < listeners % n)
    };
    (share(served[0].is_some()), share(served[1].is_some()), share(served[2].is_some()))
}

/// A served or client SMPP connection's session, its window allocated here.
fn smpp_conn(settings: &StackSettings, role: Role, window: usize) -> SmppConn {
    SmppConn {
        session: Session::new(SessionConfig {
            role,
            window,
            out_window: window,
            aside: settings.parts_aside,
            specific_bind_errors: settings.bind_guard.specific_bind_errors,
            ..SessionConfig::default()
        }),
        pending: Vec::with_capacity(window),
        waiting: std::collections::VecDeque::new(),
        // Named by the dispatcher when a request first waits on it.
        conn_id: ConnRef::new(0, 0),
        window,
        window_read: 0,
        seen: SessionCounters::default(),
    }
}

/// Connects `sock` to `remote` from the next port of this worker's ephemeral `range`
/// (the port names the worker, so the return traffic finds its owner).
fn active_open(
    sock: &mut tcp::Socket<'_>,
    cx: &mut smoltcp::iface::Context,
    remote: SocketAddrV4,
    next: &mut u16,
    range: &std::ops::Range<u16>,
) -> Result<(), tcp::ConnectError> {
    let local = *next;
    *next = if local.saturating_add(1) >= range.end { range.start } else { local + 1 };
    sock.connect(cx, (IpAddress::Ipv4(*remote.ip()), remote.port()), local)
}

#[cfg(test)]
mod tests {
    //! The TCP stack against smoltcp peers in memory: binds, windows, admission, flow
    //! steering between workers, SIP over TCP.
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A bounded ring for tests (the packet path uses `rte_ring`).
    struct TestRing<T = u32>(Arc<Mutex<VecDeque<T>>>, usize);

    impl<T> Clone for TestRing<T> {
        fn clone(&self) -> Self {
            TestRing(Arc::clone(&self.0), self.1)
        }
    }

    impl<T> std::fmt::Debug for TestRing<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TestRing")
        }
    }

    impl<T: Send> SegmentSender for TestRing<T> {
        type Item = T;
        fn push(&self, item: T) -> Result<(), T> {
            let mut q = self.0.lock().unwrap();
            if q.len() >= self.1 {
                return Err(item);
            }
            q.push_back(item);
            Ok(())
        }
    }

    impl<T: Send> SegmentReceiver for TestRing<T> {
        type Item = T;
        fn pop(&self) -> Option<T> {
            self.0.lock().unwrap().pop_front()
        }
    }

    fn peer(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), port)
    }

    #[test]
    fn one_worker_owns_everything() {
        for p in [1u16, 2775, 40000, 65535] {
            assert_eq!(flow_owner(peer(p), 2775, 1), 0);
            assert_eq!(flow_owner(peer(p), EPHEMERAL_BASE + 300, 1), 0);
        }
    }

    #[test]
    fn active_opens_belong_to_the_worker_that_made_them() {
        for q in 0..4u16 {
            let r = ephemeral_range(q);
            assert_eq!(r.len(), usize::from(EPHEMERAL_PER_WORKER));
            for local in [r.start, r.start + 17, r.end - 1] {
                for p in [2776u16, 5060, 9] {
                    assert_eq!(flow_owner(peer(p), local, 4), q, "port {local}");
                }
            }
        }
        // A slice beyond the worker count is hashed like any passive flow.
        let beyond = ephemeral_range(9).start;
        assert!(flow_owner(peer(1), beyond, 4) < 4);
        assert!(ephemeral_range(3).end <= ephemeral_range(4).start);
    }

    #[test]
    fn passive_flows_spread_by_hash_and_stay_put() {
        let mut per = [0usize; 4];
        for p in 30000..34000u16 {
            let o = flow_owner(peer(p), 2775, 4);
            assert_eq!(o, flow_owner(peer(p), 2775, 4), "deterministic");
            per[usize::from(o)] += 1;
        }
        // 4000 flows over 4 cores: each gets a fair share (within 20 %).
        assert!(per.iter().all(|&n| (800..=1200).contains(&n)), "{per:?}");
    }

    #[test]
    fn segments_reach_their_owner_through_the_ring() {
        const W: u16 = 3;
        // rings[src][dst]
        let rings: Vec<Vec<Option<TestRing<u32>>>> = (0..W)
            .map(|s| (0..W).map(|d| (s != d).then(|| TestRing(Arc::new(Mutex::new(VecDeque::new())), 4))).collect())
            .collect();
        let handoff = |me: u16| {
            let out = rings[usize::from(me)].clone();
            let inbound = (0..W).map(|s| rings[usize::from(s)][usize::from(me)].clone()).collect();
            Handoff::new(me, W, out, inbound)
        };
        let h: Vec<_> = (0..W).map(handoff).collect();
        // Worker 0 receives segments of many flows; each must end at its owner.
        let mut local = Vec::new();
        let mut passed = 0;
        let mut full = 0;
        for p in 40000..40012u16 {
            match h[0].steer(peer(p), 2775) {
                Steer::Local => local.push(u32::from(p)),
                Steer::To(q) => match h[0].pass(q, u32::from(p)) {
                    Ok(()) => passed += 1,
                    Err(_) => full += 1,
                },
            }
        }
        // The active open of worker 2 comes back on worker 0 and goes to worker 2.
        let mine = ephemeral_range(2).start;
        assert_eq!(h[0].steer(peer(2776), mine), Steer::To(2));
        assert_eq!(h[2].steer(peer(2776), mine), Steer::Local);
        let mut got = vec![Vec::new(); usize::from(W)];
        for q in 1..W {
            h[usize::from(q)].drain(HANDOFF_BURST, |s| got[usize::from(q)].push(s));
            for s in &got[usize::from(q)] {
                assert_eq!(flow_owner(peer(*s as u16), 2775, W), q);
            }
        }
        assert_eq!(got[1].len() + got[2].len(), passed);
        assert_eq!(local.len() + passed + full, 12);
        assert!(local.iter().all(|p| flow_owner(peer(*p as u16), 2775, W) == 0));
        // A full ring hands the segment back (the caller counts and drops it).
        let tiny: TestRing<u32> = TestRing(Arc::new(Mutex::new(VecDeque::new())), 1);
        let h1 = Handoff::new(0, 2, vec![None, Some(tiny.clone())], Vec::<Option<TestRing<u32>>>::from([None, None]));
        assert_eq!(h1.pass(1, 7), Ok(()));
        assert_eq!(h1.pass(1, 8), Err(8));
        assert_eq!(h1.pass(0, 9), Err(9), "no ring to itself");
        assert_eq!(Handoff::<TestRing, TestRing>::single().steer(peer(1), 2775), Steer::Local);
    }

    /// Frames in memory: a device receives from `inbox` and sends to `out`.
    #[derive(Default)]
    struct Wire {
        inbox: VecDeque<Vec<u8>>,
        out: VecDeque<Vec<u8>>,
    }

    struct VecRx(Vec<u8>);

    impl phy::RxToken for VecRx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    struct VecTx<'a>(&'a mut VecDeque<Vec<u8>>);

    impl phy::TxToken for VecTx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut b = vec![0u8; len];
            let r = f(&mut b);
            self.0.push_back(b);
            r
        }
    }

    impl phy::Device for Wire {
        type RxToken<'a> = VecRx;
        type TxToken<'a> = VecTx<'a>;

        fn receive(&mut self, _: SmolInstant) -> Option<(VecRx, VecTx<'_>)> {
            let f = self.inbox.pop_front()?;
            Some((VecRx(f), VecTx(&mut self.out)))
        }

        fn transmit(&mut self, _: SmolInstant) -> Option<VecTx<'_>> {
            Some(VecTx(&mut self.out))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            capabilities()
        }
    }

    const IWF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

    fn lab_provision() -> crate::control::provision::Provision {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
        crate::control::provision::Provision::parse(&text).unwrap()
    }

    /// Worker 0's engine over `provision`, with SMTP clients for `mm4_clients`.
    fn lab_flows(provision: crate::control::provision::Provision, mm4_clients: Vec<u16>) -> crate::flow::Flows {
        let shared = Arc::new(crate::flow::Shared::new(provision, 1, None).unwrap());
        let config = crate::flow::FlowsConfig {
            core: 0,
            next_hop: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060),
            local_sent_by: "198.18.2.2:5060".into(),
            parts_aside: 64,
            reassembly: (1024, 1 << 20),
            max_sip_message: 1 << 20,
            mm4_clients,
        };
        crate::flow::Flows::new(config, shared)
    }

    /// An ESME host on kernel-less TCP (plain smoltcp) facing one [`Endpoint`].
    struct Lab {
        iwf: Endpoint,
        iwf_wire: Wire,
        esme: Interface,
        esme_wire: Wire,
        sockets: SocketSet<'static>,
        counters: QueueCounters,
        now: u64,
        /// The engine iwf's endpoint hands requests to (none: it answers them itself).
        flows: Option<crate::flow::Flows>,
    }

    fn settings(per_peer: usize) -> StackSettings {
        StackSettings {
            mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ip: IWF_IP,
            prefix_len: 24,
            gateway: None,
            smpp_port: Some(2775),
            sip_port: None,
            clients: Vec::new(),
            tcp: TcpConfig { sockets: 8, rx_buffer: 4096, tx_buffer: 4096, max_connections_per_peer: per_peer },
            limits: std::sync::Arc::new(PeerLimits::new(per_peer)),
            bind_guard: std::sync::Arc::new(BindGuard::default()),
            parts_aside: 0,
            sip_trusted: Vec::new(),
            queue: 0,
            sip_transactions: 16,
            sip_slot_bytes: 1024,
            sip_next_hop: None,
            timer_f_ms: 0,
            sip_max_message: 1 << 20,
            sip_budget: std::sync::Arc::new(StreamBudget::new(1 << 20)),
            smtp_port: None,
            mm4_clients: Vec::new(),
            smtp_hostname: "[198.18.1.2]".into(),
            smtp_max_message: 1 << 20,
        }
    }

    impl Lab {
        fn new(per_peer: usize) -> Lab {
            Lab::build(settings(per_peer))
        }

        fn build(settings: StackSettings) -> Lab {
            let legacy = [LegacyConfig {
                id: 1,
                name: "smsc-a".into(),
                system_id: "smsca".into(),
                password: "pwa".into(),
                allow: vec![(Ipv4Addr::new(198, 18, 1, 0), 24)],
                window: 10,
                connect: None,
                connect_port: None,
                reconnect_ms: (1000, 60_000),
                ..LegacyConfig::default()
            }];
            let iwf = Endpoint::new(&settings, Directory::new(&legacy), crate::session::sip::unknown_recipient, 0);
            let mut esme_wire = Wire::default();
            let mut esme = Interface::new(
                Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1]))),
                &mut esme_wire,
                SmolInstant::from_millis(0),
            );
            esme.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::new(198, 18, 1, 1)), 24));
            });
            Lab {
                iwf,
                iwf_wire: Wire::default(),
                esme,
                esme_wire,
                sockets: SocketSet::new(Vec::new()),
                counters: QueueCounters::default(),
                now: 0,
                flows: None,
            }
        }

        fn connect(&mut self, local_port: u16) -> SocketHandle {
            self.connect_to(2775, local_port)
        }

        fn connect_to(&mut self, port: u16, local_port: u16) -> SocketHandle {
            let s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
            let h = self.sockets.add(s);
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            sock.connect(self.esme.context(), (IpAddress::Ipv4(IWF_IP), port), local_port).unwrap();
            h
        }

        fn listen(&mut self, port: u16) -> SocketHandle {
            let s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
            let h = self.sockets.add(s);
            self.sockets.get_mut::<tcp::Socket>(h).listen(port).unwrap();
            h
        }

        fn text(&mut self, h: SocketHandle) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock(h).recv_slice(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }

        /// Runs both ends for `ms` milliseconds of virtual time.
        fn run(&mut self, ms: u64) {
            for _ in 0..ms {
                self.now += 1;
                let t = SmolInstant::from_millis(self.now as i64);
                self.esme.poll(t, &mut self.esme_wire, &mut self.sockets);
                self.iwf_wire.inbox.extend(self.esme_wire.out.drain(..));
                let input = !self.iwf_wire.inbox.is_empty();
                self.iwf.poll(self.now, input, &self.counters, &mut self.iwf_wire, self.flows.as_mut());
                self.esme_wire.inbox.extend(self.iwf_wire.out.drain(..));
            }
        }

        fn sock(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(h)
        }

        /// The (command_id, status, sequence) of every whole PDU the ESME received.
        fn responses(&mut self, h: SocketHandle) -> Vec<(u32, u32, u32)> {
            let mut bytes = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.sock(h).recv_slice(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
            }
            let word = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
            let mut out = Vec::new();
            let mut at = 0;
            while bytes.len() >= at + 16 {
                let len = word(&bytes, at) as usize;
                out.push((word(&bytes, at + 4), word(&bytes, at + 8), word(&bytes, at + 12)));
                at += len.max(16);
            }
            out
        }
    }

    fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut p = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&command_id.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn bind(system_id: &str, password: &str) -> Vec<u8> {
        let body = [system_id.as_bytes(), b"\0", password.as_bytes(), b"\0\0\x34\0\0\0"].concat();
        pdu(0x09, 1, &body)
    }

    fn submit_sm(seq: u32) -> Vec<u8> {
        let body = b"\0\x01\x01447000100001\0\x01\x01447000200002\0\0\0\0\0\0\x01\0\0\0\x02hi";
        pdu(0x04, seq, body)
    }

    #[test]
    fn smpp_over_smoltcp_binds_answers_rx_t_appn_and_throttles_beyond_the_window() {
        let mut lab = Lab::new(8);
        let h = lab.connect(40000);
        lab.run(50);
        assert_eq!(lab.sock(h).state(), TcpState::Established);
        assert_eq!(lab.counters.tcp.accepted.get(), 1);
        lab.sock(h).send_slice(&bind("smsca", "pwa")).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(h), [(0x8000_0009, 0, 1)], "bind_transceiver_resp ESME_ROK");
        assert_eq!(lab.counters.smpp.binds_ok.get(), 1);
        // Twelve submit_sm in one segment: the window's ten answered ESME_RX_T_APPN
        // (iwf cannot deliver yet), two ESME_RTHROTTLED; none dropped.
        let burst: Vec<u8> = (10..22).flat_map(submit_sm).collect();
        lab.sock(h).send_slice(&burst).unwrap();
        lab.run(50);
        let got = lab.responses(h);
        assert_eq!(got.len(), 12, "{got:?}");
        assert!(got.iter().all(|r| r.0 == 0x8000_0004), "{got:?}");
        assert_eq!(got.iter().filter(|r| r.1 == 0x64).count(), 10, "{got:?}");
        assert_eq!(got.iter().filter(|r| r.1 == 0x58).count(), 2, "{got:?}");
        let mut seqs: Vec<u32> = got.iter().map(|r| r.2).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (10..22).collect::<Vec<_>>());
        assert_eq!((lab.counters.smpp.rx_t_appn.get(), lab.counters.smpp.throttled.get()), (10, 2));
        // enquire_link, then unbind: answered, and iwf's side closes after the peer's FIN.
        lab.sock(h).send_slice(&[pdu(0x15, 30, b""), pdu(0x06, 31, b"")].concat()).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(h), [(0x8000_0015, 0, 30), (0x8000_0006, 0, 31)]);
        lab.sock(h).close();
        lab.run(100);
        assert_eq!(lab.counters.smpp.unbind_in.get(), 1);
        assert_eq!(lab.counters.smpp.sessions_closed.get(), 1);
        assert_eq!(lab.counters.tcp.closed.get(), 1);
        assert_eq!(lab.counters.smpp.pdus_in.get(), 15);
        assert_eq!(lab.counters.smpp.pdus_out.get(), 15);
    }

    /// A bind and a submit_sm in one segment (an ESME or SMSC that sends its queue as
    /// soon as it binds): the flows learn of the bind before the request reaches them,
    /// so it is taken, not refused as unbound.
    #[test]
    fn a_request_in_the_bind_segment_reaches_the_flows_as_bound() {
        let mut lab = Lab::new(8);
        lab.flows = Some(lab_flows(lab_provision(), Vec::new()));
        let h = lab.connect(40000);
        lab.run(50);
        lab.sock(h).send_slice(&[bind("smsca", "pwa"), submit_sm(7)].concat()).unwrap();
        lab.run(50);
        // The bind answered; the submit_sm waits for its SIP MESSAGE's final response.
        assert_eq!(lab.responses(h), [(0x8000_0009, 0, 1)]);
        let flows = lab.flows.as_mut().unwrap();
        assert!(flows.poll_request().is_some(), "the submit_sm became a SIP MESSAGE");
    }

    /// An MMS centre relays an MM4_forward.REQ to iwf's SMTP server: the engine gets it
    /// whole, the SMTP 250 waits for the MESSAGE's final response, and the
    /// MM4_forward.RES goes to the MMS centre's own SMTP server through iwf's client.
    /// A stranger's SYN to the SMTP port is refused.
    /// The lab with MMS centre 9 (mmsc-m at 198.18.1.1, its server on 2525) provisioned,
    /// iwf's SMTP server on 25 and its MM4 client toward the centre.
    fn mms_centre_lab() -> Lab {
        let mmsc = LegacyConfig {
            id: 9,
            name: "mmsc-m".into(),
            allow: vec![(Ipv4Addr::new(198, 18, 1, 1), 32)],
            exchange: crate::route::select::ExchangeKind::Mms,
            mms: Some(crate::control::config::MmscConfig {
                domain: "mmsc-m.lab".into(),
                next_hop: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2525),
                next_hop_port: 0,
                max_message_size: 1 << 20,
                mm4_version: "6.10.0".into(),
            }),
            ..LegacyConfig::default()
        };
        let mut st = settings(8);
        st.smpp_port = None;
        st.smtp_port = Some(25);
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2525);
        st.mm4_clients = vec![Mm4Client { system: 9, remote, reconnect_ms: (1_000, 60_000) }];
        let mut lab = Lab::build(st);
        lab.iwf.directory = Directory::new(std::slice::from_ref(&mmsc));
        assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 1, 1), 25, 0), Ok(()));
        assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 1, 9), 25, 0), Err(Refusal::NotMmsc));
        let mut provision = lab_provision();
        provision.legacy.push(mmsc);
        lab.flows = Some(lab_flows(provision, vec![9]));
        // The worker polls its engine with the clock (tags carry the time); the lab does here.
        let unix = crate::dataplane::sip::unix_now();
        if let Some(f) = lab.flows.as_mut() {
            f.poll(0, unix);
        }
        lab
    }

    #[test]
    fn an_mms_centre_relays_over_smtp_and_gets_its_forward_res() {
        let mut lab = mms_centre_lab();
        let own_server = lab.listen(2525);
        let h = lab.connect_to(25, 40025);
        lab.run(50);
        assert!(lab.text(h).starts_with("220 [198.18.1.2] ESMTP"));
        let mm4 =
            "X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_forward.REQ\r\nX-Mms-Transaction-ID: t-9\r\n\
                   X-Mms-Message-ID: <m-9@mmsc-m.lab>\r\nFrom: +447000400001/TYPE=PLMN@mmsc-m.lab\r\n\
                   To: +447000200001/TYPE=PLMN@iwf.ims.lab\r\nX-Mms-Ack-Request: Yes\r\nX-Mms-Delivery-Report: Yes\r\n\
                   X-Mms-Originator-System: system-user@mmsc-m.lab\r\nContent-Type: text/plain\r\n\r\n.hello\r\n";
        let session = format!(
            "EHLO mmsc-m.lab\r\nMAIL FROM:<system-user@mmsc-m.lab>\r\nRCPT TO:<+447000200001/TYPE=PLMN@iwf.ims.lab>\r\nDATA\r\n{}.\r\n",
            mm4.replace("\r\n.hello", "\r\n..hello")
        );
        lab.sock(h).send_slice(session.as_bytes()).unwrap();
        lab.run(50);
        let replies = lab.text(h);
        assert!(replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"), "nothing after the data yet: {replies}");
        assert_eq!(lab.counters.tcp.smtp_messages.get(), 1);
        let flows = lab.flows.as_mut().unwrap();
        let r = flows.poll_request_tcp().expect("the MESSAGE");
        assert!(String::from_utf8_lossy(&r.bytes).ends_with(".hello\r\n"), "unstuffed");
        flows.sip_final(r.token, 200);
        lab.run(50);
        assert_eq!(lab.text(h), "250 2.0.0 Relayed to the converged core\r\n");
        // iwf's client delivers the .RES to the MMS centre's own server, played here.
        let mut heard = String::new();
        let mut step = |lab: &mut Lab, say: &str| {
            if !say.is_empty() {
                lab.sock(own_server).send_slice(say.as_bytes()).unwrap();
            }
            lab.run(30);
            let got = lab.text(own_server);
            heard.push_str(&got);
            got
        };
        step(&mut lab, "");
        assert!(step(&mut lab, "220 mmsc-m.lab ESMTP\r\n").starts_with("EHLO [198.18.1.2]"));
        assert_eq!(step(&mut lab, "250 mmsc-m.lab\r\n"), "MAIL FROM:<system@iwf.ims.lab>\r\n");
        assert_eq!(step(&mut lab, "250 ok\r\n"), "RCPT TO:<system-user@mmsc-m.lab>\r\n");
        assert_eq!(step(&mut lab, "250 ok\r\n"), "DATA\r\n");
        let data = step(&mut lab, "354 go\r\n");
        assert!(
            data.contains("X-Mms-Message-Type: MM4_forward.RES") && data.contains("X-Mms-Request-Status-Code: Ok"),
            "{data}"
        );
        assert!(data.contains("X-Mms-Transaction-ID: t-9") && data.ends_with("\r\n.\r\n"), "{data}");
        step(&mut lab, "250 2.0.0 queued\r\n");
        assert_eq!(lab.counters.tcp.mm4_sent.get(), 1, "{heard}");
        // The converged user's delivery IMDN becomes the delivery report on the same
        // connection; the engine hears that the centre took it.
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        let tag = text.split("imdn.Message-ID: ").nth(1).and_then(|t| t.get(..crate::tag::TAG_LEN)).unwrap();
        let xml = format!(
            "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>{tag}</message-id>\
             <datetime>2027-01-15T08:00:00Z</datetime><delivery-notification><status><delivered/></status>\
             </delivery-notification></imdn>"
        );
        let cpim = format!(
            "From: <sip:+447000200001@ims.lab;user=phone>\r\nTo: <sip:+447000400001@iwf.ims.lab;user=phone>\r\n\
             NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: dn1\r\nDateTime: 2027-01-15T08:00:00Z\r\n\r\n\
             Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        let imdn = format!(
            "MESSAGE sip:+447000400001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bKdn1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+447000200001@ims.lab>;tag=1\r\nTo: <sip:+447000400001@iwf.ims.lab>\r\n\
             Call-ID: dn1\r\nCSeq: 1 MESSAGE\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
            cpim.len()
        );
        let mut headers = [crate::wire::sip::Header::EMPTY; 32];
        let Ok(crate::wire::sip::Status::Complete(_, msg)) =
            crate::wire::sip::Parser::datagram().parse(imdn.as_bytes(), &mut headers)
        else {
            panic!("the IMDN parses")
        };
        let flows = lab.flows.as_mut().unwrap();
        let now = lab.now;
        flows.handle(now, Input::SipMessage { txn: SipTxn::Remote { token: 1 }, msg: &msg, raw: imdn.as_bytes() });
        lab.run(30);
        assert_eq!(step(&mut lab, ""), "MAIL FROM:<system@iwf.ims.lab>\r\n", "{heard}");
        assert_eq!(step(&mut lab, "250 ok\r\n"), "RCPT TO:<system-user@mmsc-m.lab>\r\n");
        assert_eq!(step(&mut lab, "250 ok\r\n"), "DATA\r\n");
        let data = step(&mut lab, "354 go\r\n");
        assert!(data.contains("MM4_delivery_report.REQ") && data.contains("X-Mms-MM-Status-Code: Retrieved"), "{data}");
        assert!(data.contains("X-Mms-Message-ID: m-9@mmsc-m.lab"), "{data}");
        let shared = std::sync::Arc::clone(lab.flows.as_ref().unwrap().shared());
        let sent = || shared.stats.mm4_reports_sent.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(sent(), 0, "not before the 250");
        step(&mut lab, "250 2.0.0 queued\r\n");
        assert_eq!(sent(), 1, "the engine heard the 250");
        // The MMS centre's server closes its side (a restart): the next .RES goes on a
        // new connection, not into the half-closed one.
        let second = lab.listen(2525);
        lab.sock(own_server).close();
        lab.run(50);
        let h2 = lab.connect_to(25, 40026);
        lab.run(50);
        lab.sock(h2).send_slice(session.as_bytes()).unwrap();
        lab.run(50);
        let flows = lab.flows.as_mut().unwrap();
        let r = flows.poll_request_tcp().expect("the second MESSAGE");
        flows.sip_final(r.token, 200);
        // The client reconnects after its back-off (reconnect_ms: 1 s).
        lab.run(1_200);
        assert_eq!(lab.text(own_server), "", "nothing on the half-closed connection");
        lab.sock(second).send_slice(b"220 mmsc-m.lab ESMTP\r\n").unwrap();
        lab.run(30);
        assert!(lab.text(second).starts_with("EHLO [198.18.1.2]"), "on a new connection");
    }

    #[test]
    fn a_line_cut_by_the_receive_rings_end_is_read_whole() {
        // The socket's receive buffer (settings: 4096 octets) is a ring; its first wrap
        // lies at stream offset 4096. A line's CRLF, or the data's closing `.` CRLF, split
        // there was taken by neither half and the connection waited for ever.
        for dot_at_the_wrap in [false, true] {
            let mut lab = mms_centre_lab();
            let h = lab.connect_to(25, 40025);
            lab.run(50);
            assert!(lab.text(h).starts_with("220 "));
            let mut session = "EHLO mmsc-m.lab\r\nMAIL FROM:<system-user@mmsc-m.lab>\r\n\
                        RCPT TO:<+447000200001/TYPE=PLMN@iwf.ims.lab>\r\nDATA\r\n\
                        X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_forward.REQ\r\n\
                        X-Mms-Transaction-ID: t-9\r\nX-Mms-Message-ID: <m-9@mmsc-m.lab>\r\n\
                        From: +447000400001/TYPE=PLMN@mmsc-m.lab\r\nTo: +447000200001/TYPE=PLMN@iwf.ims.lab\r\n\
                        Content-Type: text/plain\r\n\r\n"
                .to_string();
            while session.len() + 160 < 4096 {
                session.push_str(&format!("{}\r\n", "x".repeat(76)));
            }
            // The last line before the wrap ends with its CR at 4095, or ends at 4095 so
            // that the closing dot sits there.
            let fill = 4096 - session.len() - if dot_at_the_wrap { 3 } else { 1 };
            session.push_str(&format!("{}\r\n", "y".repeat(fill)));
            if !dot_at_the_wrap {
                assert_eq!(session.as_bytes()[4095], b'\r');
                session.push_str(&format!("{}\r\n", "z".repeat(76)).repeat(10));
            }
            let end = session.len();
            session.push_str(".\r\n");
            assert!(!dot_at_the_wrap || end == 4096 - 1, "{end}");
            let mut at = 0;
            for _ in 0..40 {
                at += lab.sock(h).send_slice(&session.as_bytes()[at..]).unwrap();
                lab.run(20);
            }
            assert_eq!(at, session.len());
            assert_eq!(
                lab.counters.tcp.smtp_messages.get(),
                1,
                "the message's end was seen (dot at the wrap: {dot_at_the_wrap})"
            );
            let r = lab.flows.as_mut().unwrap().poll_request_tcp().expect("the MESSAGE");
            let text = String::from_utf8_lossy(&r.bytes).into_owned();
            assert!(text.contains(&format!("{}\r\n", "y".repeat(fill))), "{text}");
        }
    }

    #[test]
    fn admission_at_the_syn_and_the_bind_back_off() {
        let mut lab = Lab::new(8);
        let esme = Ipv4Addr::new(198, 18, 1, 1);
        // Only the SMPP port is judged, and only addresses a system allows pass.
        assert_eq!(lab.iwf.admit(esme, 2775, 0), Ok(()));
        assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 2, 9), 2775, 0), Err(Refusal::NotAllowed));
        assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 2, 9), 2776, 0), Ok(()), "not a service: smoltcp's");
        // Four wrong passwords: still admitted; the fifth starts the back-off.
        for i in 0..5u16 {
            let h = lab.connect(42000 + i);
            lab.run(30);
            lab.sock(h).send_slice(&bind("smsca", "guess")).unwrap();
            lab.run(50);
            assert_eq!(lab.responses(h), [(0x8000_0009, 0x0d, 1)]);
            let admitted = lab.iwf.admit(esme, 2775, lab.now);
            assert_eq!(admitted.is_ok(), i < 4, "after failure {}", i + 1);
            lab.sock(h).abort();
            lab.run(20);
        }
        assert_eq!(lab.counters.smpp.bind_backoffs.get(), 1);
        assert_eq!(lab.iwf.admit(esme, 2775, lab.now + 59_000), Err(Refusal::Backoff));
        assert_eq!(lab.iwf.admit(esme, 2775, lab.now + 61_000), Ok(()), "a minute later");
        // Every unbound place went back when those connections closed.
        assert_eq!(lab.iwf.guard.unbound.held(), 0);
    }

    #[test]
    fn unbound_connections_are_capped_for_the_port_and_a_bind_frees_a_place() {
        let mut s = settings(8);
        s.bind_guard = std::sync::Arc::new(BindGuard::new(Default::default(), 2, 64, false));
        let mut lab = Lab::build(s);
        let hs: Vec<_> = (0..3).map(|i| lab.connect(43000 + i)).collect();
        lab.run(100);
        let up: Vec<_> = hs.iter().filter(|h| lab.sock(**h).state() == TcpState::Established).copied().collect();
        assert_eq!(up.len(), 2);
        assert_eq!(lab.counters.tcp.refused_unbound_cap.get(), 1);
        // One binds: its place is free for the next stranger.
        lab.sock(up[0]).send_slice(&bind("smsca", "pwa")).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(up[0]), [(0x8000_0009, 0, 1)]);
        assert_eq!(lab.iwf.guard.unbound.held(), 1);
        let h = lab.connect(43010);
        lab.run(100);
        assert_eq!(lab.sock(h).state(), TcpState::Established);
    }

    #[test]
    fn passwords_compare_whole() {
        assert!(password_matches(b"pwa", b"pwa"));
        assert!(!password_matches(b"pwa", b"pw"));
        assert!(!password_matches(b"pwa", b"pwa\0"));
        assert!(!password_matches(b"", b"x"));
        assert!(!password_matches(b"12345678", b"12345679"));
    }

    #[test]
    fn a_stranger_learns_nothing_from_the_refusal_reason() {
        let legacy = [LegacyConfig {
            id: 1,
            system_id: "smsca".into(),
            password: "pwa".into(),
            allow: vec![(Ipv4Addr::new(198, 18, 1, 1), 32)],
            ..LegacyConfig::default()
        }];
        let mut d = Directory::new(&legacy);
        let bind = |system_id: &'static [u8], password: &'static [u8], peer| BindRequest {
            system_id,
            password,
            system_type: b"",
            bind_type: crate::session::smpp::BindType::Transceiver,
            interface_version: 0x34,
            peer,
        };
        let stranger = Ipv4Addr::new(198, 18, 1, 9);
        // Unknown system_id, wrong password, right password: the address is checked first.
        for (id, pw) in [(&b"nobody"[..], &b"pwa"[..]), (b"smsca", b"wrong"), (b"smsca", b"pwa")] {
            assert_eq!(d.authenticate(&bind(id, pw, stranger)), Err(BindRefusal::AddressNotAllowed));
        }
        let esme = Ipv4Addr::new(198, 18, 1, 1);
        assert_eq!(d.authenticate(&bind(b"nobody", b"pwa", esme)), Err(BindRefusal::UnknownSystem));
        assert_eq!(d.authenticate(&bind(b"smsca", b"wrong", esme)), Err(BindRefusal::BadPassword));
        assert_eq!(d.authenticate(&bind(b"smsca", b"pwa", esme)), Ok(LegacySystemId(1)));
    }

    #[test]
    fn refused_binds_close_and_the_per_peer_limit_resets() {
        let mut lab = Lab::new(2);
        let h = lab.connect(40001);
        lab.run(30);
        lab.sock(h).send_slice(&bind("smsca", "nope")).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(h), [(0x8000_0009, 0x0d, 1)], "ESME_RBINDFAIL, the only refusal a peer sees");
        assert!(!lab.sock(h).may_recv(), "iwf closed the connection after the refusal");
        assert_eq!(lab.counters.smpp.bind_refused_password.get(), 1);
        lab.sock(h).close();
        lab.run(50);
        // Three connections from one address, two allowed: the third is reset.
        let hs: Vec<_> = (0..3).map(|i| lab.connect(41000 + i)).collect();
        lab.run(100);
        let states: Vec<_> = hs.iter().map(|h| lab.sock(*h).state()).collect();
        assert_eq!(states.iter().filter(|s| **s == TcpState::Established).count(), 2, "{states:?}");
        assert_eq!(states.iter().filter(|s| **s == TcpState::Closed).count(), 1, "{states:?}");
        assert_eq!(lab.counters.tcp.refused_peer_limit.get(), 1);
        // An unknown system_id on an allowed connection.
        let ok = *hs.iter().find(|h| lab.sock(**h).state() == TcpState::Established).unwrap();
        lab.sock(ok).send_slice(&bind("nosuch", "pwa")).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(ok), [(0x8000_0009, 0x0d, 1)], "ESME_RBINDFAIL for an unknown system_id too");
        assert_eq!(lab.counters.smpp.bind_refused_system_id.get(), 1);
    }

    #[test]
    fn smpp_client_backs_off_binds_and_stops_after_an_auth_rejection() {
        let mut st = settings(8);
        st.smpp_port = None;
        st.clients = vec![SmscClient {
            system: 3,
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2776),
            credentials: Credentials::transceiver(b"iwf", b"pwc").unwrap(),
            window: 10,
            reconnect: ReconnectConfig { initial: 100, max: 400 },
        }];
        let mut lab = Lab::build(st);
        // Nothing listens: each SYN is reset; the attempts follow the back-off (100 ms
        // doubling to 400 ms, jittered), not the 1 ms loop.
        lab.run(3000);
        let failed = lab.counters.tcp.connect_failed.get();
        assert!((5..=20).contains(&failed), "{failed} attempts in 3 s");
        assert_eq!(lab.counters.smpp.client_connects.get(), failed);
        // The SMSC listens: iwf connects from its own ephemeral slice and binds.
        let smsc = lab.listen(2776);
        lab.run(600);
        assert_eq!(lab.sock(smsc).state(), TcpState::Established);
        let local = lab.sock(smsc).remote_endpoint().unwrap().port;
        assert!(ephemeral_range(0).contains(&local), "local port {local}");
        let mut buf = [0u8; 256];
        let n = lab.sock(smsc).recv_slice(&mut buf).unwrap();
        assert_eq!(&buf[4..8], &[0, 0, 0, 9], "bind_transceiver");
        assert_eq!(&buf[16..n], b"iwf\0pwc\0\0\x34\0\0\0");
        let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
        lab.sock(smsc).send_slice(&pdu(0x8000_0009, seq, b"smsc\0")).unwrap();
        lab.run(50);
        assert_eq!((lab.counters.smpp.client_bound.get(), lab.counters.smpp.client_up.get()), (1, 1));
        // The SMSC goes away: the session is lost, iwf reconnects.
        lab.sock(smsc).abort();
        lab.run(100);
        assert_eq!((lab.counters.smpp.client_lost.get(), lab.counters.smpp.client_up.get()), (1, 0));
        let before = lab.counters.smpp.client_connects.get();
        lab.run(1000);
        assert!(lab.counters.smpp.client_connects.get() > before, "reconnects after the loss");
        // It comes back and refuses iwf's password: the alarm, and no rebind at all.
        let smsc = lab.listen(2776);
        lab.run(600);
        let n = lab.sock(smsc).recv_slice(&mut buf).unwrap();
        assert!(n >= 16);
        let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
        let mut refusal = pdu(0x8000_0009, seq, b"");
        refusal[8..12].copy_from_slice(&0x0eu32.to_be_bytes());
        lab.sock(smsc).send_slice(&refusal).unwrap();
        lab.run(100);
        assert_eq!(lab.counters.smpp.client_auth_rejected.get(), 1);
        let connects = lab.counters.smpp.client_connects.get();
        lab.run(3000);
        assert_eq!(lab.counters.smpp.client_connects.get(), connects, "no rebind after ESME_RINVPASWD");
    }

    #[test]
    fn sip_over_tcp_is_framed_by_content_length_and_answered_on_the_stream() {
        let mut st = settings(8);
        st.smpp_port = None;
        st.sip_port = Some(5060);
        let mut lab = Lab::build(st);
        let h = lab.connect_to(5060, 42000);
        lab.run(30);
        let request = |method: &str, n: u32, body: &str| {
            format!(
                "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.1:42000;branch=z9hG4bK-t{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:a@ims.lab>;tag={n}\r\nTo: <sip:+447000100001@iwf.ims.lab>\r\n\
                 Call-ID: c{n}\r\nCSeq: 1 {method}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // A MESSAGE in two segments, then an OPTIONS right behind it (CRLF keep-alive between).
        let message = request("MESSAGE", 1, "hello over TCP");
        let (a, b) = message.split_at(message.len() - 5);
        lab.sock(h).send_slice(a.as_bytes()).unwrap();
        lab.run(20);
        assert_eq!(lab.text(h), "", "nothing before the whole body arrived");
        lab.sock(h).send_slice(format!("{b}\r\n\r\n{}", request("OPTIONS", 2, "")).as_bytes()).unwrap();
        lab.run(20);
        let answers = lab.text(h);
        assert!(answers.starts_with("SIP/2.0 404 "), "{answers}");
        assert_eq!(answers.matches("SIP/2.0 ").count(), 2, "{answers}");
        assert!(answers.contains("SIP/2.0 200 OK"), "{answers}");
        assert!(answers.contains("CSeq: 1 OPTIONS"), "{answers}");
        assert_eq!(lab.counters.tcp.sip_requests.get(), 2);
        assert_eq!((lab.counters.tcp.sip_tx_2xx.get(), lab.counters.tcp.sip_tx_other.get()), (1, 1));
        // A stream that cannot be framed is closed.
        lab.sock(h).send_slice(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n").unwrap();
        lab.run(50);
        assert_eq!(lab.counters.tcp.sip_stream_errors.get(), 1);
        assert!(!lab.sock(h).is_active(), "reset by iwf");
    }

    /// A MESSAGE larger than a stream's buffer (an MMS toward an MMS user) is read
    /// whole, its buffer grown out of the shared budget and given back; one over the
    /// maximum is answered 413 and one the budget cannot hold now 503, each from its
    /// head, its body skipped, and the stream goes on serving the next request.
    #[test]
    fn large_messages_over_tcp_are_read_whole_or_refused_from_their_head() {
        let mut st = settings(8);
        st.smpp_port = None;
        st.sip_port = Some(5060);
        st.tcp.rx_buffer = 16384;
        st.sip_max_message = 60_000;
        st.sip_budget = std::sync::Arc::new(StreamBudget::new(70_000));
        let budget = std::sync::Arc::clone(&st.sip_budget);
        let mut lab = Lab::build(st);
        let h = lab.connect_to(5060, 42001);
        lab.run(30);
        let request = |method: &str, n: u32, body: &str| {
            format!(
                "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.1:42001;branch=z9hG4bK-l{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:a@ims.lab>;tag={n}\r\nTo: <sip:+447000100001@iwf.ims.lab>\r\n\
                 Call-ID: l{n}\r\nCSeq: 1 {method}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let send_all = |lab: &mut Lab, h: SocketHandle, bytes: &[u8]| {
            let mut at = 0;
            let mut answers = String::new();
            // Bounded: a stream iwf closes stops taking octets.
            for _ in 0..2000 {
                if at == bytes.len() {
                    break;
                }
                at += lab.sock(h).send_slice(&bytes[at..]).unwrap_or(0);
                lab.run(5);
                answers.push_str(&lab.text(h));
            }
            lab.run(50);
            answers.push_str(&lab.text(h));
            answers
        };
        // 50 000 octets: read whole (answered by the policy, 404), the growth given back.
        let big = request("MESSAGE", 1, &"b".repeat(50_000));
        let answers = send_all(&mut lab, h, big.as_bytes());
        assert!(answers.starts_with("SIP/2.0 404 ") && answers.contains("CSeq: 1 MESSAGE"), "{answers}");
        assert_eq!(budget.left(), 70_000, "the growth is given back");
        // Over the maximum: 413, then the OPTIONS behind it is answered on the same stream.
        let over = format!("{}{}", request("MESSAGE", 2, &"o".repeat(61_000)), request("OPTIONS", 3, ""));
        let answers = send_all(&mut lab, h, over.as_bytes());
        assert!(answers.starts_with("SIP/2.0 413 Request Entity Too Large"), "{answers}");
        assert!(answers.contains("SIP/2.0 200 OK") && answers.contains("CSeq: 1 OPTIONS"), "{answers}");
        // The budget spent elsewhere: 503 with Retry-After, and the stream serves on.
        assert!(budget.take(65_000));
        let starved = format!("{}{}", request("MESSAGE", 4, &"s".repeat(20_000)), request("OPTIONS", 5, ""));
        let answers = send_all(&mut lab, h, starved.as_bytes());
        assert!(answers.starts_with("SIP/2.0 503 ") && answers.contains("Retry-After:"), "{answers}");
        assert!(answers.contains("CSeq: 1 OPTIONS"), "{answers}");
        assert_eq!(lab.counters.tcp.sip_refused_large.get(), 2);
        assert_eq!(lab.counters.tcp.sip_stream_errors.get(), 0);
        assert!(lab.sock(h).is_active());
        budget.give(65_000);
        // A large ACK is skipped, never answered.
        let ack = format!("{}{}", request("ACK", 6, &"a".repeat(61_000)), request("OPTIONS", 7, ""));
        let answers = send_all(&mut lab, h, ack.as_bytes());
        assert!(answers.starts_with("SIP/2.0 200 OK") && answers.matches("SIP/2.0 ").count() == 1, "{answers}");
        // A large message that stops coming: after its time the stream goes, and its
        // memory comes back.
        let cut = request("MESSAGE", 8, &"c".repeat(50_000));
        let _ = send_all(&mut lab, h, &cut.as_bytes()[..20_000]);
        assert!(budget.left() < 70_000, "the buffer grew");
        lab.run(sip_conn::LARGE_MESSAGE_MS + 100);
        assert_eq!(budget.left(), 70_000);
        assert_eq!(lab.counters.tcp.sip_stream_errors.get(), 1);
        // A Content-Length out of all reason: 413, then the stream closes rather than
        // skip for ever.
        let h = lab.connect_to(5060, 42002);
        lab.run(30);
        let absurd = request("MESSAGE", 9, "").replace("Content-Length: 0", "Content-Length: 99999999");
        let answers = send_all(&mut lab, h, format!("{absurd}{}", "z".repeat(9000)).as_bytes());
        assert!(answers.starts_with("SIP/2.0 413 "), "{answers}");
        lab.run(100);
        assert!(!lab.sock(h).may_recv() || !lab.sock(h).is_active(), "closed by iwf");
    }

    /// iwf's own request larger than its socket's send buffer (an MMS of a megabyte
    /// toward the SIP core) goes in pieces over several passes, whole and in order;
    /// its Timer F starts when its last octet is written.
    #[test]
    fn a_request_larger_than_the_send_buffer_goes_in_pieces() {
        let mut st = settings(8);
        st.smpp_port = None;
        st.sip_next_hop = Some(SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 5060));
        let mut lab = Lab::build(st);
        let core = lab.listen(5060);
        let body = "x".repeat(50_000);
        let request = format!(
            "MESSAGE sip:+447000200001@ims.lab SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bK-big\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        lab.iwf.sip_out.push_back((7, request.clone().into_bytes()));
        let mut got = Vec::new();
        for _ in 0..400 {
            lab.run(5);
            let mut buf = [0u8; 4096];
            while let Ok(n) = lab.sock(core).recv_slice(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() >= request.len() {
                break;
            }
        }
        assert_eq!(got.len(), request.len(), "the whole request arrived");
        assert!(got == request.as_bytes(), "in order, unchanged");
        assert_eq!(lab.counters.tcp.sip_client_sent.get(), 1);
        assert_eq!(lab.iwf.sip_sent.len(), 1, "waiting for its final response");
        assert!(lab.iwf.sip_out.is_empty());
        // A next hop that stops reading: the request half written times out (408) and
        // the connection goes, rather than hold it for ever.
        lab.iwf.sip_out.push_back((8, request.into_bytes()));
        lab.run(SIP_CLIENT_TIMER_F_MS + 500);
        assert!(lab.iwf.sip_out.is_empty(), "given up");
        assert!(lab.counters.tcp.sip_client_timeouts.get() >= 1);
    }

    /// A next hop that closed its side of iwf's connection (a core restarting: its
    /// FIN came, its socket is gone) gets no new request on it, which its kernel
    /// would answer with a RST: the connection closes and the request goes on a new one.
    #[test]
    fn a_next_hop_that_closed_its_side_gets_the_next_request_on_a_new_connection() {
        let mut st = settings(8);
        st.smpp_port = None;
        st.sip_next_hop = Some(SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 5060));
        let mut lab = Lab::build(st);
        let (first, second) = (lab.listen(5060), lab.listen(5060));
        let request = |n: u32| {
            format!("OPTIONS sip:core SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bK-{n}\r\nContent-Length: 0\r\n\r\n")
        };
        lab.iwf.sip_out.push_back((1, request(1).into_bytes()));
        lab.run(50);
        assert!(lab.text(first).contains("branch=z9hG4bK-1"));
        lab.sock(first)
            .send_slice(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bK-1\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        lab.sock(first).close();
        lab.run(50);
        assert!(lab.iwf.sip_sent.is_empty(), "the response before the FIN was read");
        lab.iwf.sip_out.push_back((2, request(2).into_bytes()));
        lab.run(100);
        assert_eq!(lab.text(first), "", "nothing on the half-closed connection");
        assert!(lab.text(second).contains("branch=z9hG4bK-2"), "on a new connection");
        assert_eq!((lab.counters.tcp.active_opens.get(), lab.counters.tcp.sip_client_failed.get()), (2, 0));
    }

    /// Two workers on one port, each with its own [`Endpoint`], behind a "NIC" that
    /// spreads the peer's frames over the two queues by its own hash (not iwf's): every
    /// TCP segment goes to its owner through the rings, so the ESMEs' binds and the
    /// active open of worker 1 (whose replies land on either queue) all work, and the
    /// per-peer limit holds across both workers.
    /// One worker of the two-worker test: its endpoint, its wire, its rings.
    type TestWorker = (Endpoint, Wire, Handoff<TestRing<Vec<u8>>, TestRing<Vec<u8>>>);

    #[test]
    fn two_workers_hand_segments_to_the_flow_owner() {
        let limits = Arc::new(PeerLimits::new(6));
        let mut workers: Vec<TestWorker> = Vec::new();
        let rings: Vec<Vec<Option<TestRing<Vec<u8>>>>> = (0..2)
            .map(|s| (0..2).map(|d| (s != d).then(|| TestRing(Arc::new(Mutex::new(VecDeque::new())), 64))).collect())
            .collect();
        for q in 0..2u16 {
            let mut st = settings(6);
            st.limits = Arc::clone(&limits);
            st.queue = q;
            if q == 1 {
                st.clients = vec![SmscClient {
                    system: 3,
                    remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2776),
                    credentials: Credentials::transceiver(b"iwf", b"pwc").unwrap(),
                    window: 10,
                    reconnect: ReconnectConfig { initial: 50, max: 200 },
                }];
            }
            let base = Lab::build(st);
            let out = rings[usize::from(q)].clone();
            let inbound = (0..2).map(|s| rings[s][usize::from(q)].clone()).collect();
            workers.push((base.iwf, Wire::default(), Handoff::new(q, 2, out, inbound)));
        }
        // The peer host: ESMEs and the SMSC of worker 1's bind.
        let mut peer = Lab::new(6);
        let smsc = peer.listen(2776);
        let esmes: Vec<SocketHandle> = (0..8).map(|i| peer.connect(44000 + i)).collect();
        let counters = [QueueCounters::default(), QueueCounters::default()];
        let mut redirected = 0;
        let mut answered_bind = false;
        for now in 1..3000u64 {
            let t = SmolInstant::from_millis(now as i64);
            peer.esme.poll(t, &mut peer.esme_wire, &mut peer.sockets);
            // The "NIC": its own queue choice (TCP source port parity; ARP to both).
            for f in peer.esme_wire.out.drain(..) {
                let tcp = f.get(12..14) == Some(&[8, 0][..]) && f.get(23) == Some(&6);
                if !tcp {
                    workers.iter_mut().for_each(|w| w.1.inbox.push_back(f.clone()));
                    continue;
                }
                let sport = u16::from_be_bytes([f[34], f[35]]);
                let q = usize::from(sport % 2);
                let src = SocketAddrV4::new(Ipv4Addr::new(f[26], f[27], f[28], f[29]), sport);
                let dport = u16::from_be_bytes([f[36], f[37]]);
                match workers[q].2.steer(src, dport) {
                    Steer::Local => workers[q].1.inbox.push_back(f),
                    Steer::To(o) => {
                        workers[q].2.pass(o, f).expect("ring has room");
                        redirected += 1;
                    }
                }
            }
            for q in 0..2 {
                let (ep, wire, handoff) = &mut workers[q];
                handoff.drain(HANDOFF_BURST, |f| wire.inbox.push_back(f));
                let input = !wire.inbox.is_empty();
                ep.poll(now, input, &counters[q], wire, None);
                peer.esme_wire.inbox.extend(wire.out.drain(..));
            }
            // Each ESME binds once connected; the SMSC answers iwf's bind.
            if now == 200 {
                for h in &esmes {
                    if peer.sock(*h).state() == TcpState::Established {
                        peer.sock(*h).send_slice(&bind("smsca", "pwa")).unwrap();
                    }
                }
            }
            if !answered_bind && peer.sock(smsc).recv_queue() >= 16 {
                let mut buf = [0u8; 64];
                let n = peer.sock(smsc).recv_slice(&mut buf).unwrap();
                assert!(n >= 16 && buf[4..8] == [0, 0, 0, 9]);
                let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
                peer.sock(smsc).send_slice(&pdu(0x8000_0009, seq, b"smsc\0")).unwrap();
                answered_bind = true;
            }
        }
        let sum = |f: fn(&QueueCounters) -> u64| counters.iter().map(f).sum::<u64>();
        assert!(redirected > 0, "the NIC's choice differs from the owner for some flows");
        // Six ESMEs bound (the limit, across both workers), two reset.
        let bound: Vec<_> = esmes.iter().map(|h| peer.responses(*h)).filter(|r| r == &[(0x8000_0009, 0, 1)]).collect();
        assert_eq!(bound.len(), 6);
        assert_eq!(sum(|c| c.smpp.binds_ok.get()), 6);
        assert_eq!(sum(|c| c.tcp.refused_peer_limit.get()), 2);
        assert!(counters.iter().all(|c| c.tcp.accepted.get() > 0), "both workers own some flows");
        // Worker 1's active open: bound, though its SMSC's replies reach queue 0 half the time.
        assert_eq!(counters[1].smpp.client_bound.get(), 1);
        assert_eq!(counters[1].smpp.client_up.get(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Whatever a peer writes on the SMPP or the SIP port (framing errors, garbage,
        /// truncated PDUs), the endpoint never panics and keeps accepting connections.
        #[test]
        fn any_stream_leaves_the_endpoint_serving(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..6),
            sip in proptest::prelude::any::<bool>(),
            with_bind in proptest::prelude::any::<bool>(),
        ) {
            let mut st = settings(8);
            st.sip_port = Some(5060);
            let mut lab = Lab::build(st);
            let port = if sip { 5060 } else { 2775 };
            let h = lab.connect_to(port, 43000);
            lab.run(20);
            if with_bind && !sip {
                lab.sock(h).send_slice(&bind("smsca", "pwa")).unwrap();
                lab.run(10);
            }
            for c in &chunks {
                let _ = lab.sock(h).send_slice(c);
                lab.run(5);
            }
            lab.run(50);
            let again = lab.connect_to(port, 43001);
            lab.run(30);
            proptest::prop_assert_eq!(lab.sock(again).state(), TcpState::Established);
        }
    }

    #[test]
    fn peer_limits_are_shared_and_exact_per_address() {
        let limits = std::sync::Arc::new(PeerLimits::new(2));
        let a = Ipv4Addr::new(198, 18, 1, 1);
        let others: Vec<Ipv4Addr> = (2..200u8).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect();
        // Two workers share the table: the limit holds across them.
        let (w0, w1) = (std::sync::Arc::clone(&limits), std::sync::Arc::clone(&limits));
        assert!(w0.acquire(a));
        assert!(w1.acquire(a));
        assert!(!w0.acquire(a) && !w1.acquire(a));
        assert_eq!(limits.held(a), 2);
        // Other addresses do not share its limit unless they share its bucket, which a
        // key drawn at start decides: nobody can pick an address that does.
        let apart: Vec<Ipv4Addr> = others.iter().copied().filter(|o| limits.slot(*o) != limits.slot(a)).collect();
        assert!(
            apart.len() >= others.len() - 20,
            "{} of {} share a's bucket",
            others.len() - apart.len(),
            others.len()
        );
        for o in &apart {
            assert!(limits.acquire(*o), "{o}");
            limits.release(*o);
        }
        let placements: Vec<Vec<usize>> =
            (0..4).map(|_| PeerLimits::new(2)).map(|l| others.iter().map(|o| l.slot(*o)).collect()).collect();
        assert!(placements.windows(2).any(|w| w[0] != w[1]), "the buckets differ from table to table");
        w1.release(a);
        assert!(w0.acquire(a));
        for _ in 0..5 {
            limits.release(a); // never below zero
        }
        assert_eq!(limits.held(a), 0);
        // Concurrent takers never exceed the limit.
        let l = std::sync::Arc::new(PeerLimits::new(8));
        let got: usize = (0..4)
            .map(|_| {
                let l = std::sync::Arc::clone(&l);
                std::thread::spawn(move || (0..100).filter(|_| l.acquire(a)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(got, 8);
    }

    #[test]
    fn directory_authenticates_binds() {
        let sys = |id: u16, sid: &str, pw: &str, connect: Option<SocketAddrV4>| LegacyConfig {
            id,
            name: format!("s{id}"),
            system_id: sid.into(),
            password: pw.into(),
            allow: vec![(Ipv4Addr::new(198, 18, 1, 0), 24)],
            window: 5 + usize::from(id),
            connect,
            connect_port: None,
            reconnect_ms: (1000, 60_000),
            ..LegacyConfig::default()
        };
        let mut d = Directory::new(&[sys(1, "smsca", "pwa", None), sys(3, "iwf", "pwc", Some(peer(2776)))]);
        let bind = |sid: &'static [u8], pw: &'static [u8], ip: Ipv4Addr| BindRequest {
            system_id: sid,
            password: pw,
            system_type: b"",
            bind_type: crate::session::smpp::BindType::Transceiver,
            interface_version: 0x34,
            peer: ip,
        };
        let ok = Ipv4Addr::new(198, 18, 1, 1);
        assert_eq!(d.authenticate(&bind(b"smsca", b"pwa", ok)), Ok(LegacySystemId(1)));
        assert_eq!(d.authenticate(&bind(b"smsca", b"pwb", ok)), Err(BindRefusal::BadPassword));
        assert_eq!(d.authenticate(&bind(b"nobody", b"pwa", ok)), Err(BindRefusal::UnknownSystem));
        assert_eq!(
            d.authenticate(&bind(b"smsca", b"pwa", Ipv4Addr::new(10, 0, 0, 1))),
            Err(BindRefusal::AddressNotAllowed)
        );
        // A system iwf binds to never binds to iwf.
        assert_eq!(d.authenticate(&bind(b"iwf", b"pwc", ok)), Err(BindRefusal::UnknownSystem));
        assert_eq!((d.window(LegacySystemId(1)), d.max_window()), (6, 6));
    }
}
