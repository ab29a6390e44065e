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
mod steering;

pub use device::*;
pub use sip_conn::*;
pub use smpp_conn::*;
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

impl Directory {
    /// The systems of `[[legacy]]` that bind to iwf (those without `connect`).
    pub fn new(legacy: &[LegacyConfig]) -> Self {
        Directory { source: DirectorySource::Fixed(legacy.iter().filter(|l| l.connect.is_none()).cloned().collect()) }
    }

    /// The systems of the current provisioning snapshot, read at every bind.
    pub fn live(provision: std::sync::Arc<arc_swap::ArcSwap<crate::control::provision::Provision>>) -> Self {
        Directory { source: DirectorySource::Live(provision) }
    }

    /// Runs `f` over the systems that bind to iwf (those without `connect`).
    fn with<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &LegacyConfig>) -> R) -> R {
        match &self.source {
            DirectorySource::Fixed(v) => f(&mut v.iter().filter(|l| l.connect.is_none())),
            DirectorySource::Live(p) => {
                let p = p.load();
                f(&mut p.legacy.iter().filter(|l| l.connect.is_none()))
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
    Sip { port: u16, buf: Vec<u8>, len: usize },
    /// iwf's own connection to the SIP next hop, for its requests over 1300 octets
    /// (RFC 3261 §18.1.1), opened when one waits.
    SipClient { remote: SocketAddrV4, connecting: bool, since: u64, retry_at: u64, buf: Vec<u8>, len: usize },
}

#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    service: Service,
    smpp: Option<SmppConn>,
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
}

impl Endpoint {
    /// Admission at the SYN, before the attempt costs a socket or a handshake: to the
    /// SMPP port only from an address some legacy system allows and that is not in
    /// its bind back-off; to the SIP port only from `[sip] trusted`. Other ports are
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
        if smpp {
            if !self.smpp_slot(i, now, gone, qc, flows) {
                return;
            }
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
        let Endpoint { slots, sockets, sip, reply, sip_out, sip_sent, timer_f_ms, port, .. } = self;
        let Some(slot) = slots.get_mut(i) else { return };
        let sock = sockets.get_mut::<tcp::Socket>(slot.handle);
        match &mut slot.service {
            Service::Sip { buf, len, .. } => {
                if !gone {
                    if let Some((server, policy)) = sip.as_mut() {
                        let peer =
                            SocketAddrV4::new(slot.peer.unwrap_or(Ipv4Addr::UNSPECIFIED), remote.map_or(0, |e| e.port));
                        let flows = flows.as_deref_mut().map(|f| (f, (*port, i as u16)));
                        sip_stream(now, sock, buf, len, peer, server, policy, reply, tc, flows);
                    }
                }
                if !gone && !sock.may_recv() && sock.send_queue() == 0 {
                    sock.close();
                }
            }
            Service::SipClient { buf, len, .. } => {
                if !gone {
                    sip_client_stream(now, sock, buf, len, sip_out, sip_sent, *timer_f_ms, flows.as_deref_mut(), tc);
                }
                if gone {
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
            Service::SmppServer { .. } | Service::SmppClient { .. } => {}
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
        let is_client = matches!(s.service, Service::SmppClient { .. } | Service::SipClient { .. });
        let connecting = matches!(
            s.service,
            Service::SmppClient { connecting: true, .. } | Service::SipClient { connecting: true, .. }
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
            Service::SmppClient { connecting, .. } => *connecting = false,
            Service::SipClient { connecting, len, .. } => {
                *connecting = false;
                *len = 0;
            }
            _ => tc.accepted.inc(),
        }
        if let Service::Sip { len, .. } = &mut slot.service {
            *len = 0;
        }
        if let Some(c) = slot.smpp.as_mut() {
            c.pending.clear();
            c.session.connected(now, ip);
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
            Service::SmppServer { port } | Service::Sip { port, .. } => {
                // A slot in TIME-WAIT listens again once it has passed (10 s).
                if state == TcpState::Closed {
                    let _ = sock.listen(*port);
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
            Service::SmppClient { remote, reconnect, connecting, since, .. } => {
                if *connecting {
                    if state == TcpState::Closed || now.saturating_sub(*since) > CONNECT_TIMEOUT_MS {
                        sock.abort();
                        *connecting = false;
                        reconnect.connect_failed(now);
                        tc.connect_failed.inc();
                    }
                } else if state == TcpState::TimeWait {
                    sock.abort();
                } else if state == TcpState::Closed && reconnect.may_attempt(now) {
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
        if let (Service::SmppServer { .. }, Some(id)) = (&slot.service, conn.session.system()) {
            if now >= conn.window_read.saturating_add(1000) {
                conn.window_read = now;
                conn.window = directory.window(id);
            }
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
        if let (Some(ip), false) =
            (slot.peer, matches!(slot.service, Service::SmppClient { .. } | Service::SipClient { .. }))
        {
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
    let own = settings.clients.len() + usize::from(settings.sip_next_hop.is_some());
    let total = settings.tcp.sockets.max(own + 2);
    let mut sockets = SocketSet::new(Vec::with_capacity(total));
    let mut slots = Vec::with_capacity(total);
    let specific_bind_errors = settings.bind_guard.specific_bind_errors;
    let smpp_conn = |role: Role, window: usize| SmppConn {
        session: Session::new(SessionConfig {
            role,
            window,
            out_window: window,
            aside: settings.parts_aside,
            specific_bind_errors,
            ..SessionConfig::default()
        }),
        pending: Vec::with_capacity(window),
        waiting: std::collections::VecDeque::new(),
        // Named by the dispatcher when a request first waits on it.
        conn_id: ConnRef::new(0, 0),
        window,
        window_read: 0,
        seen: SessionCounters::default(),
    };
    for (i, c) in settings.clients.iter().enumerate() {
        let s = new_socket(&settings.tcp);
        let handle = sockets.add(s);
        let reconnect = Reconnect::new(c.reconnect, seed(i as u64 + 100));
        slots.push(Slot {
            handle,
            service: Service::SmppClient { remote: c.remote, reconnect, connecting: false, since: 0, system: c.system },
            smpp: Some(smpp_conn(Role::Client(c.credentials), c.window)),
            peer: None,
            open: false,
            unbound: false,
        });
    }
    let listeners = total.saturating_sub(own);
    let (smpp_n, sip_n) = match (settings.smpp_port, settings.sip_port) {
        (Some(_), Some(_)) => (listeners / 2, listeners - listeners / 2),
        (Some(_), None) => (listeners, 0),
        (None, Some(_)) => (0, listeners),
        (None, None) => (0, 0),
    };
    if let Some(port) = settings.smpp_port {
        for _ in 0..smpp_n {
            let handle = sockets.add(new_socket(&settings.tcp));
            slots.push(Slot {
                handle,
                service: Service::SmppServer { port },
                smpp: Some(smpp_conn(Role::Server, window)),
                peer: None,
                open: false,
                unbound: false,
            });
        }
    }
    if let Some(port) = settings.sip_port {
        for _ in 0..sip_n {
            let handle = sockets.add(new_socket(&settings.tcp));
            slots.push(Slot {
                handle,
                service: Service::Sip { port, buf: vec![0u8; SIP_STREAM_BUFFER], len: 0 },
                smpp: None,
                peer: None,
                open: false,
                unbound: false,
            });
        }
    }
    if let Some(remote) = settings.sip_next_hop {
        let handle = sockets.add(new_socket(&settings.tcp));
        slots.push(Slot {
            handle,
            service: Service::SipClient {
                remote,
                connecting: false,
                since: 0,
                retry_at: 0,
                buf: vec![0u8; SIP_STREAM_BUFFER],
                len: 0,
            },
            smpp: None,
            peer: None,
            open: false,
            unbound: false,
        });
    }
    (sockets, slots)
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
mod tests;
