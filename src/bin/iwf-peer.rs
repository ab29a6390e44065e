//! `iwf-peer`: the lab's SMPP peers on the kernel TCP stack, built on iwf's own
//! sans-IO [`Session`] over `std::net::TcpStream` (std threads, blocking
//! sockets, no async runtime).
//!
//! - `iwf-peer smsc`: an SMSC double (the lab's smsc-c at 198.18.1.1:2776).
//!   Accepts binds with one system_id / password, answers submit_sm with
//!   message ids (hex or decimal) and, for each submit_sm whose
//!   registered_delivery asks for an SMSC receipt, sends a delivery receipt
//!   deliver_sm back on the same bind (esm_class 0x04, `receipted_message_id`
//!   and `message_state` TLVs, Appendix-B text). Prints a one-line JSON
//!   summary on SIGINT / SIGTERM or after `--duration`.
//! - `iwf-peer esme`: a load driver. Binds transceiver, submits `--count`
//!   messages asking for receipts with at most `--window` outstanding (and at
//!   most `--rate` per second), answers the receipts, and prints submit_sm_resp
//!   latency percentiles, throughput and receipt counts as one line of JSON.
//!
//! - `iwf-peer ua`: the converged side on UDP (SIP core and users): answers
//!   MESSAGE and OPTIONS, sends a delivery notification back for each MESSAGE
//!   that asked for one (see `iwf-peer/ua.rs`).
//!
//! - `iwf-peer load`: the load generator, all of the above at once: N legacy systems
//!   with a text mix, the converged side, the SMSC iwf binds to; progress and a report
//!   (see `iwf-peer/load.rs`).
//!
//! They stop by themselves (bounded count, duration and timeouts) and talk
//! only to the address given on the command line. Exit status: 0 done, 1 an
//! error (connect, bind refused: the one-line error names the status), 2 the
//! run ended incomplete (JSON still printed).
#[path = "iwf-peer/load.rs"]
mod load;
#[path = "iwf-peer/mmsc.rs"]
mod mmsc;
#[path = "iwf-peer/pcap.rs"]
mod pcap;
#[path = "iwf-peer/ua.rs"]
mod ua;

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use iwf::ids::LegacySystemId;
use iwf::session::smpp::{
    BindRefusal, BindRequest, CloseReason, Credentials, Event, Role, SendError, Session, SessionConfig, SmppText,
    State as SessionState,
};
use iwf::wire::smpp::{
    Address, Body, CommandId, CommandStatus, EsmClass, MessageState, MessageType, Pdu, Receipt, ReceiptDate,
    ReceiptStat, RegisteredDelivery, SmeAck, SmscReceipt, SubmitSm, TlvWriter, Tlvs,
};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// SMPP peers for the iwf lab on the kernel TCP stack.
#[derive(Parser)]
#[command(name = "iwf-peer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An SMSC double: accepts binds, answers submit_sm, sends delivery receipts.
    Smsc(SmscArgs),
    /// An ESME load driver: binds, submits, collects receipts, reports latency.
    Esme(EsmeArgs),
    /// The converged side on UDP: answers MESSAGEs, sends delivery notifications back.
    Ua(ua::UaArgs),
    /// The load generator: N legacy systems, the converged side and the SMSC iwf binds to.
    Load(Box<load::LoadArgs>),
    /// Captures for load tools (TRex, tcpreplay): IMDNs with valid tags, MESSAGEs, an SMPP session.
    Pcap(pcap::PcapArgs),
}

/// How the SMSC double writes message ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum IdFormat {
    /// Lower-case hexadecimal (`1f4a`).
    Hex,
    /// Decimal (`8010`).
    Decimal,
}

#[derive(clap::Args)]
pub(crate) struct SmscArgs {
    /// Address to listen on, e.g. 198.18.1.1:2776 (port 0: any; the bound
    /// address is printed on stderr as `listening on ADDR`).
    #[arg(long)]
    listen: SocketAddr,
    /// The system_id ESMEs must bind with.
    #[arg(long)]
    system_id: String,
    /// The password ESMEs must bind with.
    #[arg(long)]
    password: String,
    /// Delay between a submit_sm_resp and its delivery receipt.
    #[arg(long, default_value_t = 0)]
    receipt_delay_ms: u64,
    /// Requests per bind awaiting an answer (ours and the ESME's).
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Message id format in submit_sm_resp and receipts.
    #[arg(long, value_enum, default_value_t = IdFormat::Hex)]
    ids: IdFormat,
    /// The first message id (then counting up). An SMSC does not hand out an id again
    /// soon after a restart; give each run its own range to play one.
    #[arg(long, default_value_t = 1)]
    first_id: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Most connections served at once (more are closed at once).
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Mobile-originated messages to send to the first bound ESME (deliver_sm, asking
    /// for a delivery receipt): iwf turns them into SIP MESSAGEs and the receipts come
    /// back as submit_sm SME acks (esm_class 0x08 / 0x10), counted as `sme_acks`.
    #[arg(long, default_value_t = 0)]
    mo: u64,
    /// source_addr of the MO messages (international).
    #[arg(long, default_value = "447000300009")]
    mo_from: String,
    /// destination_addr of the MO messages: the converged user (international).
    #[arg(long, default_value = "447900000042")]
    mo_to: String,
    /// Delivery receipts for ids this double never gave out, sent first to the first
    /// bound ESME (what a bind sees after an SMSC failover, or in a pool of gateways
    /// sharing a system_id).
    #[arg(long, default_value_t = 0)]
    unknown_receipts: u64,
    /// Send each delivery receipt on another bind than the one its message came on
    /// (the first other bound connection; it waits for one): an SMSC whose receipts
    /// reach whichever box of a cluster holds a bind.
    #[arg(long)]
    receipts_elsewhere: bool,
}

#[derive(clap::Args)]
struct EsmeArgs {
    /// The SMSC (or iwf) to bind to, e.g. 198.18.1.2:2775.
    #[arg(long)]
    connect: SocketAddr,
    /// system_id to bind with (≤ 15 octets).
    #[arg(long)]
    system_id: String,
    /// Password to bind with (≤ 8 octets).
    #[arg(long)]
    password: String,
    /// Messages to submit.
    #[arg(long)]
    count: u64,
    /// Most submit_sm outstanding.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Most submit_sm per second (unlimited when absent).
    #[arg(long)]
    rate: Option<f64>,
    /// source_addr of the messages (international).
    #[arg(long, default_value = "447000300001")]
    source: String,
    /// destination_addr of the messages (international).
    #[arg(long, default_value = "447000100001")]
    destination: String,
    /// registered_delivery of each submit_sm (1: receipt on success or failure).
    #[arg(long, default_value_t = 1)]
    registered_delivery: u8,
    /// How long a submit_sm may wait for its response.
    #[arg(long, default_value_t = 10_000)]
    response_timeout_ms: u64,
    /// After the last response, how long to wait for the missing receipts.
    #[arg(long, default_value_t = 10_000)]
    receipt_wait_ms: u64,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

// ---------------------------------------------------------------- common --

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`] (the handler only stores to an atomic,
/// which is async-signal-safe).
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: installs a handler that only performs an atomic store.
        unsafe {
            libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
}

/// Milliseconds since the process started: the sessions' clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn peer_v4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// One TCP connection driven through a [`Session`].
struct Conn {
    stream: TcpStream,
    session: Session,
    inbuf: Vec<u8>,
    in_len: usize,
    out: Vec<u8>,
    read_timeout: Option<Duration>,
    eof: bool,
}

impl Conn {
    fn new(stream: TcpStream, session: Session) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(false)?;
        Ok(Conn {
            stream,
            session,
            inbuf: vec![0; 64 * 1024],
            in_len: 0,
            out: vec![0; 64 * 1024],
            read_timeout: None,
            eof: false,
        })
    }

    /// Writes everything the session has to send.
    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            let n = self.session.poll_transmit(&mut self.out);
            if n == 0 {
                return Ok(());
            }
            self.stream.write_all(self.out.get(..n).unwrap_or(&[]))?;
        }
    }

    /// Waits up to `wait` for bytes (or until the timer the session asks
    /// for), then runs the session's timers. Returns false once the peer
    /// closed or the socket failed (the session is told).
    fn read(&mut self, wait: Duration) -> bool {
        let now = now_ms();
        let wait = match self.session.poll_timeout() {
            Some(t) => wait.min(Duration::from_millis(t.saturating_sub(now))),
            None => wait,
        }
        .max(Duration::from_millis(1));
        if self.read_timeout != Some(wait) {
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                self.session.connection_lost(now);
                self.eof = true;
                return false;
            }
            self.read_timeout = Some(wait);
        }
        if self.in_len == self.inbuf.len() {
            // The session pauses input while its output is full: flushing
            // above made room, so only the timers run here.
            self.session.handle_timeout(now_ms());
            return true;
        }
        let got = self.stream.read(self.inbuf.get_mut(self.in_len..).unwrap_or(&mut []));
        match got {
            Ok(0) => {
                self.session.connection_lost(now_ms());
                self.eof = true;
                false
            }
            Ok(n) => {
                self.in_len += n;
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                let now = now_ms();
                if self.session.poll_timeout().is_some_and(|t| t <= now) {
                    self.session.handle_timeout(now);
                }
                true
            }
            Err(_) => {
                self.session.connection_lost(now_ms());
                self.eof = true;
                false
            }
        }
    }

    /// Feeds the buffered bytes to the session; the driver gets each
    /// request the session hands out (submit_sm, deliver_sm, data_sm) to
    /// answer, and every event. Flushes as it goes.
    fn process<D: Driver>(
        &mut self,
        auth: &mut dyn iwf::session::smpp::Authenticator,
        driver: &mut D,
    ) -> std::io::Result<()> {
        let mut pos = 0usize;
        loop {
            self.drain_events(driver)?;
            let bytes = self.inbuf.get(pos..self.in_len).unwrap_or(&[]);
            let input = self.session.handle_input(now_ms(), bytes, auth);
            let consumed = input.consumed;
            let request = input.request.as_ref().map(D::extract);
            pos += consumed;
            match request {
                Some(r) => driver.request(&mut self.session, r),
                None if consumed == 0 => break,
                None => {}
            }
        }
        self.inbuf.copy_within(pos..self.in_len, 0);
        self.in_len -= pos;
        self.drain_events(driver)
    }

    /// Flushes the output and hands every pending event to the driver.
    fn drain_events<D: Driver>(&mut self, driver: &mut D) -> std::io::Result<()> {
        self.flush()?;
        while let Some(ev) = self.session.poll_event() {
            driver.event(&mut self.session, ev);
        }
        self.flush()
    }
}

/// What the owner of a connection does with the session's requests and
/// events.
trait Driver {
    /// A request's content, copied out of the PDU (which borrows the session).
    type Request: Copy;
    /// Copies what the driver needs out of a request.
    fn extract(pdu: &Pdu<'_>) -> Self::Request;
    /// Answers a request.
    fn request(&mut self, session: &mut Session, request: Self::Request);
    /// Takes an event.
    fn event(&mut self, session: &mut Session, event: Event);
}

/// An SMPP address held by value.
#[derive(Clone, Copy)]
struct OwnedAddress {
    ton: u8,
    npi: u8,
    len: u8,
    addr: [u8; 65],
}

impl OwnedAddress {
    fn from(a: &Address<'_>) -> Self {
        let mut addr = [0u8; 65];
        let len = a.addr.len().min(65);
        addr[..len].copy_from_slice(&a.addr[..len]);
        OwnedAddress { ton: a.ton, npi: a.npi, len: len as u8, addr }
    }

    fn as_address(&self) -> Address<'_> {
        Address::new(self.ton, self.npi, &self.addr[..self.len as usize])
    }
}

/// The UTC `YYMMDDhhmmss` of the Unix time `secs`.
fn receipt_date(secs: u64) -> Option<ReceiptDate> {
    let rem = secs % 86_400;
    let (y, m, d) = iwf::wire::cpim::civil_from_days((secs / 86_400) as i64);
    ReceiptDate::new(
        (y % 100) as u8,
        m as u8,
        d as u8,
        (rem / 3_600) as u8,
        (rem / 60 % 60) as u8,
        Some((rem % 60) as u8),
    )
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// ------------------------------------------------------------------ smsc --

#[derive(Default)]
struct SmscStats {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    binds_ok: AtomicU64,
    binds_refused: AtomicU64,
    submit_sm: AtomicU64,
    other_requests: AtomicU64,
    receipts_requested: AtomicU64,
    receipts_sent: AtomicU64,
    receipts_acked: AtomicU64,
    receipts_failed: AtomicU64,
    receipts_unsent: AtomicU64,
    enquire_link: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    mo_sent: AtomicU64,
    mo_accepted: AtomicU64,
    mo_refused: AtomicU64,
    sme_acks: AtomicU64,
    sme_acks_to_sender: AtomicU64,
    user_acks: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A submit_sm as the double keeps it for its receipt.
#[derive(Clone, Copy)]
struct Submitted {
    seq: u32,
    esm_class: EsmClass,
    command: CommandId,
    source: OwnedAddress,
    destination: OwnedAddress,
    registered_delivery: RegisteredDelivery,
    text: [u8; 20],
    text_len: u8,
}

struct PendingReceipt {
    due: u64,
    id: String,
    sub: Submitted,
    submit_date: Option<ReceiptDate>,
}

struct SmscShared {
    args: SmscArgs,
    stats: SmscStats,
    next_id: AtomicU64,
    stop: AtomicBool,
    /// Receipts not yet sent when their connection ended: the next bind gets them (an
    /// SMSC keeps its receipts until the ESME is back).
    held: std::sync::Mutex<VecDeque<PendingReceipt>>,
    /// `--receipts-elsewhere`: receipts with the connection they must not go on.
    crossing: std::sync::Mutex<VecDeque<(u64, PendingReceipt)>>,
    /// Connections accepted (each one's number).
    conns: AtomicU64,
}

fn smsc(args: SmscArgs) -> Result<ExitCode, String> {
    let summary = serve_smsc(args, &AtomicBool::new(false), None)?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// Runs the SMSC double until `--duration`, a signal or `stop`; returns its summary.
/// `binds` (when given) counts successful binds as they happen.
pub(crate) fn serve_smsc(
    args: SmscArgs,
    stop: &AtomicBool,
    binds: Option<&AtomicU64>,
) -> Result<serde_json::Value, String> {
    let listener = TcpListener::bind(args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    listener.set_nonblocking(true).map_err(|e| format!("listener: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("listener: {e}"))?;
    eprintln!("listening on {local}");
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    let started = Instant::now();
    let first_id = args.first_id;
    let unknown = (0..args.unknown_receipts).map(unknown_receipt).collect();
    let shared = Arc::new(SmscShared {
        args,
        stats: SmscStats::default(),
        next_id: AtomicU64::new(first_id),
        stop: AtomicBool::new(false),
        held: std::sync::Mutex::new(unknown),
        crossing: std::sync::Mutex::new(VecDeque::new()),
        conns: AtomicU64::new(0),
    });
    let mut workers: Vec<thread::JoinHandle<()>> = Vec::new();
    while !STOP.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if let Some(b) = binds {
            b.store(shared.stats.binds_ok.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                workers.retain(|w| !w.is_finished());
                if workers.len() >= shared.args.max_connections {
                    add(&shared.stats.connections_refused, 1);
                    drop(stream);
                    continue;
                }
                add(&shared.stats.connections, 1);
                let shared = Arc::clone(&shared);
                workers.push(thread::spawn(move || smsc_connection(&shared, stream, peer)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    let s = &shared.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let summary = json!({
        "role": "smsc",
        "listen": local.to_string(),
        "elapsed_s": elapsed,
        "connections": get(&s.connections),
        "connections_refused": get(&s.connections_refused),
        "binds_ok": get(&s.binds_ok),
        "binds_refused": get(&s.binds_refused),
        "submit_sm": get(&s.submit_sm),
        "other_requests": get(&s.other_requests),
        "submit_sm_per_s": get(&s.submit_sm) as f64 / elapsed.max(1e-9),
        "receipts_requested": get(&s.receipts_requested),
        "receipts_sent": get(&s.receipts_sent),
        "receipts_acked": get(&s.receipts_acked),
        "receipts_failed": get(&s.receipts_failed),
        "receipts_unsent": get(&s.receipts_unsent) + shared.held.lock().map_or(0, |h| h.len() as u64),
        "enquire_link": get(&s.enquire_link),
        "mo_sent": get(&s.mo_sent),
        "mo_accepted": get(&s.mo_accepted),
        "mo_refused": get(&s.mo_refused),
        "sme_acks": get(&s.sme_acks),
        "sme_acks_to_sender": get(&s.sme_acks_to_sender),
        "user_acks": get(&s.user_acks),
        "bytes_in": get(&s.bytes_in),
        "bytes_out": get(&s.bytes_out),
    });
    Ok(summary)
}

/// Receipt `n` for an id no submit_sm_resp of this double gave out.
fn unknown_receipt(n: u64) -> PendingReceipt {
    let mut sub = Submitted {
        seq: 0,
        esm_class: EsmClass::DEFAULT,
        command: CommandId::SubmitSm,
        source: OwnedAddress::from(&Address::international(b"447900000077")),
        destination: OwnedAddress::from(&Address::international(b"447000300077")),
        registered_delivery: RegisteredDelivery(1),
        text: [0; 20],
        text_len: 7,
    };
    sub.text[..7].copy_from_slice(b"unknown");
    PendingReceipt { due: 0, id: format!("unknown{n}"), sub, submit_date: receipt_date(unix_now()) }
}

fn format_id(format: IdFormat, n: u64) -> String {
    match format {
        IdFormat::Hex => format!("{n:x}"),
        IdFormat::Decimal => format!("{n}"),
    }
}

/// One connection of the SMSC double.
struct SmscConn<'a> {
    shared: &'a SmscShared,
    /// This connection's number.
    conn: u64,
    receipts: VecDeque<PendingReceipt>,
    /// Receipts sent and not yet acknowledged, by sequence number: a timeout or a lost
    /// connection puts them back in line (a receipt is delivered, or kept).
    inflight: std::collections::HashMap<u32, PendingReceipt>,
    /// Sequence numbers of MO messages awaiting their deliver_sm_resp.
    mo_inflight: HashSet<u32>,
    closed: bool,
}

impl Driver for SmscConn<'_> {
    type Request = Submitted;

    fn extract(pdu: &Pdu<'_>) -> Submitted {
        let empty = OwnedAddress::from(&Address::new(0, 0, b""));
        let mut s = Submitted {
            seq: pdu.sequence_number,
            esm_class: EsmClass::DEFAULT,
            command: pdu.command_id(),
            source: empty,
            destination: empty,
            registered_delivery: RegisteredDelivery::NONE,
            text: [0; 20],
            text_len: 0,
        };
        if let Body::SubmitSm(m) = &pdu.body {
            s.esm_class = m.esm_class;
            s.source = OwnedAddress::from(&m.source);
            s.destination = OwnedAddress::from(&m.destination);
            s.registered_delivery = m.registered_delivery;
            let text = m.payload();
            let n = text.len().min(20);
            s.text[..n].copy_from_slice(&text[..n]);
            s.text_len = n as u8;
        }
        s
    }

    fn request(&mut self, session: &mut Session, sub: Submitted) {
        let stats = &self.shared.stats;
        if sub.command != CommandId::SubmitSm {
            add(&stats.other_requests, 1);
            let _ = session.respond(sub.seq, CommandStatus::ESME_RINVCMDID, b"");
            return;
        }
        if sub.esm_class.is_receipt() {
            // An SME acknowledgement of one of our MO messages.
            if sub.esm_class.0 & 0x3c == EsmClass::SME_USER_ACK {
                add(&stats.user_acks, 1);
            } else {
                add(&stats.sme_acks, 1);
            }
            let to = sub.destination.as_address();
            if to.addr == self.shared.args.mo_from.as_bytes() {
                add(&stats.sme_acks_to_sender, 1);
            }
            let _ = session.respond(sub.seq, CommandStatus::ESME_ROK, b"");
            return;
        }
        add(&stats.submit_sm, 1);
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format_id(self.shared.args.ids, n);
        if session.respond(sub.seq, CommandStatus::ESME_ROK, id.as_bytes()).is_err() {
            return;
        }
        if matches!(sub.registered_delivery.smsc_receipt(), SmscReceipt::SuccessOrFailure | SmscReceipt::SuccessOnly) {
            add(&stats.receipts_requested, 1);
            let r = PendingReceipt {
                due: now_ms().saturating_add(self.shared.args.receipt_delay_ms),
                id,
                sub,
                submit_date: receipt_date(unix_now()),
            };
            if self.shared.args.receipts_elsewhere {
                if let Ok(mut c) = self.shared.crossing.lock() {
                    c.push_back((self.conn, r));
                }
            } else {
                self.receipts.push_back(r);
            }
        }
    }

    fn event(&mut self, _: &mut Session, ev: Event) {
        let stats = &self.shared.stats;
        match ev {
            Event::Bound { .. } => add(&stats.binds_ok, 1),
            Event::Response { command_id: CommandId::DeliverSmResp, status, seq, .. }
                if self.mo_inflight.remove(&seq) =>
            {
                add(if status.is_ok() { &stats.mo_accepted } else { &stats.mo_refused }, 1);
            }
            Event::Response { command_id: CommandId::DeliverSmResp, status, seq, .. } => {
                let r = self.inflight.remove(&seq);
                if status.is_ok() {
                    add(&stats.receipts_acked, 1)
                } else if status == CommandStatus::ESME_RTHROTTLED || status == CommandStatus::ESME_RX_T_APPN {
                    // Temporary: again later.
                    if let Some(r) = r {
                        self.receipts.push_back(r);
                    }
                } else {
                    add(&stats.receipts_failed, 1)
                }
            }
            Event::Response { .. } => {}
            Event::ResponseTimeout { command_id, seq } | Event::Abandoned { command_id, seq } => {
                if command_id == CommandId::DeliverSm {
                    match self.inflight.remove(&seq) {
                        Some(r) => self.receipts.push_front(r),
                        None => add(&stats.receipts_failed, 1),
                    }
                }
            }
            Event::Closed { reason } => {
                if let CloseReason::BindRefused(_) = reason {
                    add(&stats.binds_refused, 1);
                }
                self.closed = true;
            }
            Event::Throttled { .. } | Event::Resumed => {}
        }
    }
}

fn smsc_connection(shared: &SmscShared, stream: TcpStream, peer: SocketAddr) {
    let args = &shared.args;
    let config = SessionConfig {
        role: Role::Server,
        system_id: SmppText::new(b"smsc-double").unwrap_or_default(),
        window: args.window,
        out_window: args.window,
        // Like the SMSCs it stands in for, the double says why a bind was refused.
        specific_bind_errors: true,
        ..SessionConfig::default()
    };
    let mut session = Session::new(config);
    session.connected(now_ms(), peer_v4(peer));
    let Ok(mut conn) = Conn::new(stream, session) else {
        return;
    };
    let (want_id, want_pw) = (args.system_id.as_bytes(), args.password.as_bytes());
    let mut auth = |b: &BindRequest<'_>| {
        if b.system_id != want_id {
            Err(BindRefusal::UnknownSystem)
        } else if b.password != want_pw {
            Err(BindRefusal::BadPassword)
        } else {
            Ok(LegacySystemId(1))
        }
    };
    let held = shared.held.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
    let mut d = SmscConn {
        shared,
        conn: shared.conns.fetch_add(1, Ordering::Relaxed),
        receipts: held,
        inflight: std::collections::HashMap::new(),
        mo_inflight: HashSet::new(),
        closed: false,
    };
    let mut unbinding_since: Option<Instant> = None;
    loop {
        let now = now_ms();
        if shared.stop.load(Ordering::SeqCst) && unbinding_since.is_none() {
            unbinding_since = Some(Instant::now());
            if conn.session.unbind(now).is_err() {
                break;
            }
        }
        if unbinding_since.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        // MO messages, once bound, as far as the window lets them out.
        if matches!(conn.session.state(), SessionState::Bound(_)) {
            while shared.stats.mo_sent.load(Ordering::Relaxed) < args.mo {
                if conn.session.outstanding_requests() >= args.window {
                    break;
                }
                let n = shared.stats.mo_sent.fetch_add(1, Ordering::Relaxed);
                if n >= args.mo {
                    break;
                }
                match send_mo(&mut conn.session, now, args, n) {
                    Ok(seq) => {
                        d.mo_inflight.insert(seq);
                    }
                    Err(_) => {
                        shared.stats.mo_sent.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        // Receipts an ended connection left behind come to a bound one.
        if matches!(conn.session.state(), SessionState::Bound(_)) {
            if let Ok(mut h) = shared.held.try_lock() {
                d.receipts.extend(h.drain(..));
            }
            // Receipts of messages that came on another connection.
            if let Ok(mut c) = shared.crossing.try_lock() {
                let (mine, theirs): (VecDeque<_>, VecDeque<_>) = c.drain(..).partition(|(from, _)| *from == d.conn);
                *c = mine;
                d.receipts.extend(theirs.into_iter().map(|(_, r)| r));
            }
        }
        // Receipts that are due, as far as the window lets them out.
        let mut throttled_until = None;
        while let Some(r) = d.receipts.front() {
            if r.due > now {
                break;
            }
            match send_receipt(&mut conn.session, now, r) {
                Ok(seq) => {
                    add(&shared.stats.receipts_sent, 1);
                    if let Some(r) = d.receipts.pop_front() {
                        d.inflight.insert(seq, r);
                    }
                }
                Err(SendError::Throttled { until }) => {
                    throttled_until = Some(until);
                    break;
                }
                // Not bound (yet, or any more): kept for this or the next bind.
                Err(SendError::WindowFull | SendError::OutputFull | SendError::NotBound) => break,
                Err(_) => {
                    add(&shared.stats.receipts_unsent, 1);
                    d.receipts.pop_front();
                }
            }
        }
        if conn.process(&mut auth, &mut d).is_err() {
            conn.session.connection_lost(now_ms());
            let _ = conn.drain_events(&mut d);
        }
        if d.closed || conn.eof {
            let _ = conn.drain_events(&mut d);
            break;
        }
        // Wake for the next due receipt, the session's timers, or a stop.
        let mut wait = Duration::from_millis(50);
        if let Some(until) = throttled_until {
            // The ESME answered ESME_RTHROTTLED: hold the receipts back.
            wait = wait.min(Duration::from_millis(until.saturating_sub(now_ms())));
        } else if let Some(r) = d.receipts.front() {
            // (Not bound yet, a due receipt waits for the bind: read it first.)
            if conn.session.outstanding_requests() < args.window
                && matches!(conn.session.state(), SessionState::Bound(_))
            {
                let now = now_ms();
                if r.due <= now {
                    continue; // due now and the window has room: send first
                }
                wait = wait.min(Duration::from_millis(r.due - now));
            }
        }
        conn.read(wait);
    }
    let _ = conn.flush();
    let stats = &shared.stats;
    let c = conn.session.counters();
    if let Ok(mut h) = shared.held.lock() {
        h.extend(d.inflight.drain().map(|(_, r)| r));
        h.extend(d.receipts.drain(..));
    }
    add(&stats.enquire_link, c.pdus_in.enquire_link);
    add(&stats.bytes_in, c.bytes_in);
    add(&stats.bytes_out, c.bytes_out);
}

/// A plain short message between two international numbers (the body of the driver's
/// submit_sm and of the double's MO deliver_sm).
fn short_message<'a>(source: &'a str, destination: &'a str, rd: RegisteredDelivery, text: &'a [u8]) -> SubmitSm<'a> {
    SubmitSm {
        source: Address::international(source.as_bytes()),
        destination: Address::international(destination.as_bytes()),
        registered_delivery: rd,
        short_message: text,
        ..SubmitSm::default()
    }
}

/// MO message `n`: a deliver_sm from a legacy user to a converged one, asking for a
/// delivery receipt (which comes back as an SME acknowledgement).
fn send_mo(session: &mut Session, now: u64, args: &SmscArgs, n: u64) -> Result<u32, SendError> {
    let text = format!("mobile-originated message {n}");
    let sm = short_message(&args.mo_from, &args.mo_to, RegisteredDelivery(1), text.as_bytes());
    let pdu = Pdu::new(0, Body::DeliverSm(sm));
    session.send_request(now, &pdu)
}

fn send_receipt(session: &mut Session, now: u64, r: &PendingReceipt) -> Result<u32, SendError> {
    let done = receipt_date(unix_now());
    let receipt = Receipt {
        id: Some(r.id.as_bytes()),
        sub: Some(1),
        dlvrd: Some(1),
        submit_date: r.submit_date.or(done),
        done_date: done,
        stat: Some(ReceiptStat::Delivered),
        err: Some(b"000"),
        text: Some(&r.sub.text[..r.sub.text_len as usize]),
    };
    let mut text = [0u8; 200];
    let n = receipt.emit(&mut text).map_err(|_| SendError::TooLarge)?;
    let mut area = [0u8; 96];
    let mut w = TlvWriter::new(&mut area);
    w.receipted_message_id(r.id.as_bytes())
        .and_then(|w| w.message_state(MessageState::Delivered))
        .map_err(SendError::Emit)?;
    let tlvs = Tlvs::Raw(w.into_bytes());
    let pdu = Pdu::new(
        0,
        Body::DeliverSm(SubmitSm {
            service_type: b"",
            source: r.sub.destination.as_address(),
            destination: r.sub.source.as_address(),
            esm_class: EsmClass(EsmClass::SMSC_DELIVERY_RECEIPT),
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: b"",
            validity_period: b"",
            registered_delivery: RegisteredDelivery::NONE,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: &text[..n],
            tlvs,
        }),
    );
    session.send_request(now, &pdu)
}

// ------------------------------------------------------------------ esme --

/// A deliver_sm as the driver sees it.
#[derive(Clone, Copy)]
struct Delivered {
    seq: u32,
    is_deliver: bool,
    is_receipt: bool,
    /// An SME manual/user acknowledgement (esm_class 0x10: the converged user read it).
    is_user_ack: bool,
    id: [u8; 65],
    id_len: u8,
}

/// The ESME driver's run state.
pub(crate) struct EsmeRun {
    hist: Histogram<u64>,
    /// submit_sm → its receipt, µs.
    receipt_hist: Histogram<u64>,
    sent_at: HashMap<u32, Instant>,
    /// Message ids answered, awaiting their receipt.
    ids: HashMap<Vec<u8>, Instant>,
    /// Receipts that came before their submit_sm_resp was seen.
    early: HashMap<Vec<u8>, Instant>,
    errors: BTreeMap<String, u64>,
    answered: u64,
    ok: u64,
    timeouts: u64,
    abandoned: u64,
    throttled: u64,
    receipts: u64,
    matched: u64,
    duplicates: u64,
    other_deliver: u64,
    bound_at: Option<Instant>,
    last_answer: Option<Instant>,
    last_receipt: Option<Instant>,
    close: Option<CloseReason>,
    /// Parts awaiting their response, by sequence number, with their destination.
    inflight: HashMap<u32, (Arc<str>, Part)>,
    /// Parts the peer answered ESME_RTHROTTLED: submitted again after the back-off.
    retry: Vec<(Arc<str>, Part)>,
    /// Resubmissions after ESME_RTHROTTLED.
    resubmitted: u64,
    /// Whether the submissions ask for a user acknowledgement.
    wants_user_ack: bool,
    /// Message ids answered, awaiting their user acknowledgement.
    ack_ids: HashSet<Vec<u8>>,
    /// User acks that came before their submit_sm_resp (or for no part of ours).
    early_acks: HashSet<Vec<u8>>,
    user_acks: u64,
}

impl Driver for EsmeRun {
    type Request = Delivered;

    fn extract(pdu: &Pdu<'_>) -> Delivered {
        let mut d = Delivered {
            seq: pdu.sequence_number,
            is_deliver: pdu.command_id() == CommandId::DeliverSm,
            is_receipt: false,
            is_user_ack: false,
            id: [0; 65],
            id_len: 0,
        };
        if let Body::DeliverSm(m) = &pdu.body {
            d.is_user_ack = m.esm_class.message_type() == MessageType::SmeUserAck;
            d.is_receipt = m.esm_class.is_receipt() && !d.is_user_ack;
            // TLVs first, the receipt text as the fallback (SMPP 3.4 receipts may carry
            // only the text).
            let from_tlv = m.tlvs.receipted_message_id().ok().flatten();
            let id = from_tlv.or_else(|| Receipt::parse(m.payload()).ok().and_then(|r| r.id));
            if let Some(id) = id {
                let n = id.len().min(65);
                d.id[..n].copy_from_slice(&id[..n]);
                d.id_len = n as u8;
            }
        }
        d
    }

    fn request(&mut self, session: &mut Session, d: Delivered) {
        if !d.is_deliver {
            let _ = session.respond(d.seq, CommandStatus::ESME_RINVCMDID, b"");
            return;
        }
        let _ = session.respond(d.seq, CommandStatus::ESME_ROK, b"");
        if d.is_user_ack {
            let id = &d.id[..d.id_len as usize];
            if self.ack_ids.remove(id) {
                self.user_acks += 1;
            } else {
                // Before its submit_sm_resp (matched then), or for no part of ours.
                self.early_acks.insert(id.to_vec());
            }
            return;
        }
        if !d.is_receipt {
            self.other_deliver += 1;
            return;
        }
        self.receipts += 1;
        self.last_receipt = Some(Instant::now());
        let id = d.id[..d.id_len as usize].to_vec();
        if let Some(submitted) = self.ids.remove(&id) {
            self.matched += 1;
            let _ = self.receipt_hist.record(submitted.elapsed().as_micros().clamp(1, 120_000_000) as u64);
        } else if self.early.insert(id, Instant::now()).is_some() {
            self.duplicates += 1;
        }
    }

    fn event(&mut self, _: &mut Session, ev: Event) {
        match ev {
            Event::Bound { .. } => self.bound_at = Some(Instant::now()),
            Event::Response {
                seq,
                command_id: CommandId::SubmitSmResp | CommandId::GenericNack,
                status,
                message_id,
            } => {
                let submitted = self.sent_at.remove(&seq);
                let part = self.inflight.remove(&seq);
                if status == CommandStatus::ESME_RTHROTTLED {
                    // Not an answer: the part goes again once the back-off ends.
                    self.throttled += 1;
                    self.retry.extend(part);
                    return;
                }
                if let Some(t) = submitted {
                    let us = t.elapsed().as_micros().clamp(1, 120_000_000) as u64;
                    let _ = self.hist.record(us);
                }
                self.answered += 1;
                self.last_answer = Some(Instant::now());
                if status.is_ok() {
                    self.ok += 1;
                    let id = message_id.as_bytes().to_vec();
                    let submitted = submitted.unwrap_or_else(Instant::now);
                    // A receipt may beat its submit_sm_resp.
                    if let Some(at) = self.early.remove(&id) {
                        self.matched += 1;
                        let us = at.saturating_duration_since(submitted).as_micros().clamp(1, 120_000_000) as u64;
                        let _ = self.receipt_hist.record(us);
                    } else {
                        self.ids.insert(id.clone(), submitted);
                    }
                    if self.wants_user_ack {
                        if self.early_acks.remove(&id) {
                            self.user_acks += 1;
                        } else {
                            self.ack_ids.insert(id);
                        }
                    }
                } else {
                    *self.errors.entry(status.to_string()).or_default() += 1;
                }
            }
            Event::Response { .. } => {}
            Event::ResponseTimeout { seq, .. } => {
                self.inflight.remove(&seq);
                if self.sent_at.remove(&seq).is_some() {
                    self.timeouts += 1;
                }
            }
            Event::Abandoned { seq, .. } => {
                self.inflight.remove(&seq);
                if self.sent_at.remove(&seq).is_some() {
                    self.abandoned += 1;
                }
            }
            Event::Throttled { .. } => {}
            Event::Resumed => {}
            Event::Closed { reason } => self.close = Some(reason),
        }
    }
}

/// One submit_sm of a message: user data (with its UDH when UDHI is set) and coding.
#[derive(Clone)]
pub(crate) struct Part {
    /// esm_class (0, or UDHI for a concatenated part).
    pub esm_class: u8,
    /// data_coding (0 GSM 7-bit unpacked, 8 UCS-2).
    pub data_coding: u8,
    /// short_message octets.
    pub user_data: Vec<u8>,
}

/// The next message an ESME run sends.
#[derive(Default)]
pub(crate) struct Outgoing {
    /// destination_addr (international).
    pub destination: String,
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

/// Where an ESME run gets its messages.
pub(crate) trait MessageSource {
    /// Fills `out` with message `n` (0-based).
    fn message(&mut self, n: u64, out: &mut Outgoing);
}

/// `iwf-peer esme`'s messages: one short GSM text to one destination.
struct PlainMessages {
    destination: String,
}

impl MessageSource for PlainMessages {
    fn message(&mut self, n: u64, out: &mut Outgoing) {
        out.destination.clone_from(&self.destination);
        out.parts.clear();
        out.parts.push(Part { esm_class: 0, data_coding: 0, user_data: format!("iwf-peer message {n}").into_bytes() });
    }
}

/// What one ESME bind does.
pub(crate) struct EsmeSpec {
    pub connect: SocketAddr,
    pub system_id: String,
    pub password: String,
    pub window: usize,
    /// Most messages per second (all parts of a message go together).
    pub rate: Option<f64>,
    /// Most messages.
    pub count: u64,
    /// Stop submitting after this long from the bind.
    pub submit_for: Option<Duration>,
    pub source: String,
    pub registered_delivery: u8,
    pub response_timeout_ms: u64,
    pub receipt_wait_ms: u64,
    /// Give up on the whole run after this many seconds.
    pub timeout: f64,
}

/// A run's counters for a progress line, updated as it goes.
#[derive(Default)]
pub(crate) struct EsmeLive {
    pub messages: AtomicU64,
    pub parts: AtomicU64,
    pub ok: AtomicU64,
    pub refused: AtomicU64,
    pub receipts: AtomicU64,
    pub matched: AtomicU64,
    pub bound: AtomicBool,
    pub done: AtomicBool,
}

/// How an ESME run ended.
pub(crate) struct EsmeOutcome {
    pub run: EsmeRun,
    pub messages: u64,
    pub parts: u64,
    pub pdus: u64,
    /// Bind → last submit_sm_resp, s.
    pub elapsed: f64,
    /// Bind → last submit_sm_resp or receipt, s.
    pub elapsed_all: f64,
    pub reason: CloseReason,
    pub wants_receipt: bool,
    pub complete: bool,
}

/// Binds, submits the source's messages within window, rate, count and time, answers
/// and matches the receipts, unbinds. `stop` ends it early (the receipts still
/// outstanding count as missing).
pub(crate) fn run_esme(
    spec: &EsmeSpec,
    source: &mut dyn MessageSource,
    live: &EsmeLive,
    stop: &AtomicBool,
) -> Result<EsmeOutcome, String> {
    let creds = Credentials::transceiver(spec.system_id.as_bytes(), spec.password.as_bytes())
        .ok_or("system_id (≤ 15 octets) or password (≤ 8 octets) too long")?;
    if spec.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if spec.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    let overall = Instant::now() + Duration::from_secs_f64(spec.timeout.max(0.0));
    let stream = TcpStream::connect_timeout(&spec.connect, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {}: {e}", spec.connect))?;
    let config = SessionConfig {
        role: Role::Client(creds),
        window: spec.window.max(10),
        out_window: spec.window,
        response_timeout: spec.response_timeout_ms,
        ..SessionConfig::default()
    };
    let mut session = Session::new(config);
    session.connected(now_ms(), peer_v4(spec.connect));
    let mut conn = Conn::new(stream, session).map_err(|e| format!("socket: {e}"))?;
    let mut run = EsmeRun {
        hist: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| format!("histogram: {e}"))?,
        receipt_hist: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| format!("histogram: {e}"))?,
        sent_at: HashMap::new(),
        ids: HashMap::new(),
        early: HashMap::new(),
        errors: BTreeMap::new(),
        answered: 0,
        ok: 0,
        timeouts: 0,
        abandoned: 0,
        throttled: 0,
        receipts: 0,
        matched: 0,
        duplicates: 0,
        other_deliver: 0,
        bound_at: None,
        last_answer: None,
        last_receipt: None,
        close: None,
        inflight: HashMap::new(),
        retry: Vec::new(),
        resubmitted: 0,
        wants_user_ack: matches!(RegisteredDelivery(spec.registered_delivery).sme_ack(), SmeAck::User | SmeAck::Both),
        ack_ids: HashSet::new(),
        early_acks: HashSet::new(),
        user_acks: 0,
    };
    let rd = RegisteredDelivery(spec.registered_delivery);
    let wants_receipt = matches!(rd.smsc_receipt(), SmscReceipt::SuccessOrFailure | SmscReceipt::SuccessOnly);
    let mut messages = 0u64;
    let mut parts = 0u64;
    let mut unbinding = false;
    let mut io_error: Option<String> = None;
    let mut next = Outgoing::default();
    // Parts of the current message not yet sent (back to front), with their destination,
    // and throttled parts to submit again (these go first).
    let mut queued: Vec<(Arc<str>, Part)> = Vec::new();
    let mut again: Vec<(Arc<str>, Part)> = Vec::new();
    let pace = |start: Instant, n: u64| spec.rate.map(|rate| start + Duration::from_secs_f64(n as f64 / rate));
    let submitting = |start: Instant, n: u64| n < spec.count && spec.submit_for.is_none_or(|d| start.elapsed() < d);
    let mut throttled_until: Option<u64> = None;

    loop {
        let now = now_ms();
        if throttled_until.is_some_and(|t| t <= now) {
            throttled_until = None;
        }
        // Submit as far as window, rate, count and time allow.
        if let (Some(start), false) = (run.bound_at, unbinding) {
            // Throttled parts first, in their order.
            if throttled_until.is_none() && !run.retry.is_empty() {
                again.extend(run.retry.drain(..).rev());
            }
            loop {
                if queued.is_empty() && again.is_empty() {
                    if !submitting(start, messages) || pace(start, messages).is_some_and(|due| Instant::now() < due) {
                        break;
                    }
                    source.message(messages, &mut next);
                    messages += 1;
                    let to: Arc<str> = Arc::from(next.destination.as_str());
                    queued.extend(next.parts.drain(..).rev().map(|p| (Arc::clone(&to), p)));
                }
                let resubmit = !again.is_empty();
                let Some((to, part)) = again.last().or(queued.last()) else { break };
                let sm = SubmitSm {
                    esm_class: EsmClass(part.esm_class),
                    data_coding: part.data_coding,
                    ..short_message(&spec.source, to, rd, &part.user_data)
                };
                let pdu = Pdu::new(0, Body::SubmitSm(sm));
                match conn.session.send_request(now, &pdu) {
                    Ok(seq) => {
                        run.sent_at.insert(seq, Instant::now());
                        let sent = if resubmit {
                            run.resubmitted += 1;
                            again.pop()
                        } else {
                            parts += 1;
                            queued.pop()
                        };
                        if let Some(p) = sent {
                            run.inflight.insert(seq, p);
                        }
                    }
                    Err(SendError::Throttled { until }) => {
                        // The peer answered ESME_RTHROTTLED: wait until the back-off ends.
                        throttled_until = Some(until);
                        break;
                    }
                    Err(SendError::WindowFull | SendError::OutputFull | SendError::NotBound) => break,
                    Err(e) => return Err(format!("cannot submit: {e}")),
                }
            }
        }
        live.messages.store(messages, Ordering::Relaxed);
        live.parts.store(parts, Ordering::Relaxed);
        live.ok.store(run.ok, Ordering::Relaxed);
        live.refused.store(run.answered - run.ok, Ordering::Relaxed);
        live.receipts.store(run.receipts, Ordering::Relaxed);
        live.matched.store(run.matched, Ordering::Relaxed);
        live.bound.store(run.bound_at.is_some(), Ordering::Relaxed);
        // Done: every submit answered and every receipt back (or given up).
        let sent_all = run.bound_at.is_some_and(|start| !submitting(start, messages))
            && queued.is_empty()
            && again.is_empty()
            && run.retry.is_empty();
        let all_answered = sent_all && run.answered + run.timeouts + run.abandoned >= parts;
        let waited_out = run.last_answer.is_some_and(|t| t.elapsed() > Duration::from_millis(spec.receipt_wait_ms));
        let receipts_done = (!wants_receipt || run.matched >= run.ok || waited_out)
            && (!run.wants_user_ack || run.ack_ids.is_empty() || waited_out);
        let give_up = Instant::now() > overall || stop.load(Ordering::SeqCst);
        if ((all_answered && receipts_done) || give_up) && !unbinding && run.close.is_none() {
            unbinding = true;
            if conn.session.unbind(now).is_err() {
                break;
            }
        }
        if Instant::now() > overall + Duration::from_secs(2) {
            break;
        }
        if let Err(e) = conn.process(&mut iwf::session::smpp::RefuseBinds, &mut run) {
            io_error = Some(e.to_string());
            conn.session.connection_lost(now_ms());
            let _ = conn.drain_events(&mut run);
        }
        if run.close.is_some() || conn.eof {
            let _ = conn.drain_events(&mut run);
            break;
        }
        let mut wait = Duration::from_millis(50);
        if let Some(until) = throttled_until {
            wait = wait.min(Duration::from_millis(until.saturating_sub(now_ms()).max(1)));
        } else if let (Some(start), false) = (run.bound_at, unbinding) {
            if run.sent_at.len() < spec.window
                && (!queued.is_empty() || !again.is_empty() || !run.retry.is_empty() || submitting(start, messages))
            {
                match pace(start, messages) {
                    Some(due) if queued.is_empty() && again.is_empty() && due > Instant::now() => {
                        wait = wait.min(due.saturating_duration_since(Instant::now()));
                    }
                    // The window has room and the pace allows: submit first.
                    _ => continue,
                }
            }
        }
        conn.read(wait);
    }
    live.matched.store(run.matched, Ordering::Relaxed);
    live.done.store(true, Ordering::Relaxed);
    let reason = run.close.unwrap_or(CloseReason::ConnectionLost);
    if run.bound_at.is_none() {
        return Err(match io_error {
            Some(e) => format!("bind failed: {reason} ({e})"),
            None => format!("bind failed: {reason}"),
        });
    }
    let elapsed =
        run.bound_at.map_or(0.0, |t| run.last_answer.unwrap_or_else(Instant::now).duration_since(t).as_secs_f64());
    // Until the last submit_sm_resp or receipt: every PDU of the run.
    let end_all = run.last_answer.max(run.last_receipt).unwrap_or_else(Instant::now);
    let elapsed_all = run.bound_at.map_or(0.0, |t| end_all.duration_since(t).as_secs_f64());
    let counters = conn.session.counters();
    let pdus = counters.pdus_in.total() + counters.pdus_out.total();
    let complete = run.answered == parts
        && run.ok == parts
        && (!wants_receipt || run.matched == run.ok)
        && (!run.wants_user_ack || run.ack_ids.is_empty())
        && (spec.submit_for.is_some() || messages == spec.count);
    Ok(EsmeOutcome { run, messages, parts, pdus, elapsed, elapsed_all, reason, wants_receipt, complete })
}

/// Percentiles of a latency histogram, µs.
pub(crate) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let q = |p: f64| h.value_at_quantile(p);
    json!({
        "count": h.len(), "min": h.min(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
        "p999": q(0.999), "max": h.max(), "mean": h.mean(),
    })
}

fn esme(args: EsmeArgs) -> Result<ExitCode, String> {
    let spec = EsmeSpec {
        connect: args.connect,
        system_id: args.system_id,
        password: args.password,
        window: args.window,
        rate: args.rate,
        count: args.count,
        submit_for: None,
        source: args.source,
        registered_delivery: args.registered_delivery,
        response_timeout_ms: args.response_timeout_ms,
        receipt_wait_ms: args.receipt_wait_ms,
        timeout: args.timeout,
    };
    let mut source = PlainMessages { destination: args.destination };
    let o = run_esme(&spec, &mut source, &EsmeLive::default(), &STOP)?;
    let run = &o.run;
    let summary = json!({
        "role": "esme",
        "connect": spec.connect.to_string(),
        "count": spec.count,
        "window": spec.window,
        "rate": spec.rate,
        "submitted": o.parts,
        "answered": run.answered,
        "ok": run.ok,
        "errors": run.errors,
        "timeouts": run.timeouts,
        "abandoned": run.abandoned,
        "throttled": run.throttled,
        "resubmitted": run.resubmitted,
        "receipts": run.receipts,
        "receipts_matched": run.matched,
        "receipts_unmatched": run.early.len(),
        "receipts_duplicate": run.duplicates,
        "receipts_missing": if o.wants_receipt { run.ok.saturating_sub(run.matched) } else { 0 },
        "other_deliver_sm": run.other_deliver,
        "elapsed_s": o.elapsed,
        "submit_per_s": if o.elapsed > 0.0 { run.answered as f64 / o.elapsed } else { 0.0 },
        "elapsed_all_s": o.elapsed_all,
        "pdus": o.pdus,
        "pdus_per_s": if o.elapsed_all > 0.0 { o.pdus as f64 / o.elapsed_all } else { 0.0 },
        "latency_us": percentiles(&run.hist),
        "receipts_per_s": if o.elapsed_all > 0.0 { run.matched as f64 / o.elapsed_all } else { 0.0 },
        "receipt_latency_us": percentiles(&run.receipt_hist),
        "closed": o.reason.to_string(),
        "complete": o.complete,
    });
    println!("{summary}");
    Ok(if o.complete { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_signal_handlers();
    let _ = now_ms();
    let (name, result) = match cli.command {
        Command::Smsc(a) => ("smsc", smsc(a)),
        Command::Esme(a) => ("esme", esme(a)),
        Command::Ua(a) => ("ua", ua::ua(a)),
        Command::Load(a) => ("load", load::load(*a)),
        Command::Pcap(a) => ("pcap", pcap::pcap(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iwf-peer {name}: {e}");
            ExitCode::from(1)
        }
    }
}
