//! The MMS centre of a load run (`iwf-peer load --mms-rate`): it relays MMS with a
//! picture to converged users over iwf's SMTP server (`MM4_forward.REQ`, a text and an
//! image of `--mms-image-kb`, asking for a delivery report) on `--mms-connections`
//! connections, and takes what iwf relays back on its own SMTP server: each MMS's
//! `MM4_forward.RES` and delivery report, matched by `X-Mms-Message-ID`, with the time
//! from the forward's data to its report in a histogram.
//!
//! Both SMTP sides are iwf's own sans-IO sessions ([`iwf::session::smtp`]) over the
//! kernel's TCP: the load generator speaks exactly what iwf speaks.
use super::percentiles;
use hdrhistogram::Histogram;
use iwf::session::smtp::client::{Client, ClientConfig, Event as ClientEvent, State as ClientState};
use iwf::session::smtp::server::{Event as ServerEvent, Server, ServerConfig, State as ServerState};
use iwf::wire::mm4::{self, Envelope, Forward, MessageType, Mm4, MmStatus, MmsAddress, Part};
use iwf::wire::smtp::Reply;
use serde_json::json;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

use std::thread;
use std::time::{Duration, Instant};

/// The MMS centre's domain and system address in the lab.
const DOMAIN: &str = "mmsc-m.lab";
const SYSTEM: &str = "system-user@mmsc-m.lab";

/// What the MMS centre does.
pub struct MmscConfig {
    /// Its own SMTP server, where iwf delivers `.RES` and reports.
    pub listen: SocketAddr,
    /// iwf's SMTP server.
    pub iwf: SocketAddr,
    /// MMS per second over all connections (0: as fast as they go).
    pub rate: f64,
    /// Most MMS.
    pub count: u64,
    /// Stop sending after this long.
    pub send_for: Duration,
    /// How long to wait for the reports after the last MMS.
    pub drain: Duration,
    /// SMTP connections to iwf, each one MMS at a time (iwf answers after the core).
    pub connections: usize,
    /// The picture's size, octets.
    pub image_bytes: usize,
    /// The sender: this MMS user.
    pub from: String,
    /// Recipients: the converged users `+` + this prefix + a 4-digit number.
    pub to_prefix: String,
    /// Distinct recipients.
    pub users: u64,
}

/// Counters a progress line reads while it runs.
#[derive(Default)]
pub struct MmscLive {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub reports: AtomicU64,
}

/// How the run ended.
pub struct MmscOutcome {
    pub sent: u64,
    pub accepted: u64,
    pub refused: HashMap<u16, u64>,
    pub res_ok: u64,
    pub res_other: u64,
    pub reports: u64,
    pub reports_retrieved: u64,
    pub unmatched: u64,
    /// Accepted MMS whose delivery report never came.
    pub missing: u64,
    /// Connections iwf closed (an MMS in flight on one is counted refused, code 0).
    pub closed_by_iwf: u64,
    /// Connection attempts iwf refused (its per-peer connection limit, say); each
    /// slot tries again after a back-off.
    pub connect_failures: u64,
    /// The first few distinct problems, for the report.
    pub errors: Vec<String>,
    /// The forward's data sent → its delivery report in, µs.
    pub report_hist: Histogram<u64>,
    /// Seconds from the first MMS to the last report.
    pub elapsed: f64,
}

impl MmscOutcome {
    pub fn to_json(&self) -> serde_json::Value {
        let rate = if self.elapsed > 0.0 { self.reports as f64 / self.elapsed } else { 0.0 };
        json!({
            "sent": self.sent, "accepted": self.accepted, "refused": self.refused, "res_ok": self.res_ok,
            "res_other": self.res_other, "reports": self.reports, "reports_retrieved": self.reports_retrieved,
            "unmatched": self.unmatched, "missing": self.missing, "closed_by_iwf": self.closed_by_iwf,
            "connect_failures": self.connect_failures, "errors": self.errors,
            "mms_per_s": rate, "report_latency_us": percentiles(&self.report_hist),
        })
    }
}

/// What the centre's server heard from iwf: the message type and id.
type Heard = (MessageType, String, Option<MmStatus>, Option<mm4::RequestStatus>);

/// A 4-byte-per-step pattern that does not compress into nothing, framed as a JPEG.
fn picture(bytes: usize) -> Vec<u8> {
    let mut p = vec![0xff, 0xd8, 0xff, 0xe0];
    let mut x: u32 = 0x9e37_79b9;
    while p.len() + 2 < bytes.max(8) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    p.extend_from_slice(&[0xff, 0xd9]);
    p
}

/// The centre's SMTP server: every connection iwf opens, each message answered 250
/// and its type and id told to the run.
fn serve(listener: TcpListener, heard: Sender<Heard>, stop: &AtomicBool) {
    let _ = listener.set_nonblocking(true);
    let epoch = Instant::now();
    let mut conns: Vec<(TcpStream, Server)> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut out = vec![0u8; 16_384];
    while !stop.load(Ordering::Relaxed) {
        let now = epoch.elapsed().as_millis() as u64;
        while let Ok((s, _)) = listener.accept() {
            let _ = s.set_nonblocking(true);
            let config = ServerConfig { hostname: DOMAIN.into(), max_message_size: 8 << 20, ..ServerConfig::default() };
            let mut server = Server::new(config);
            server.connected(now, true);
            conns.push((s, server));
        }
        let mut idle = true;
        for (s, server) in conns.iter_mut() {
            let mut any = |_: &[u8]| -> Result<(), Reply<'static>> { Ok(()) };
            match s.read(&mut buf) {
                Ok(0) => server.connection_lost(),
                Ok(n) => {
                    idle = false;
                    let mut at = 0;
                    while at < n {
                        let used = server.handle_input(now, buf.get(at..n).unwrap_or(&[]), &mut any);
                        if used == 0 {
                            break;
                        }
                        at += used;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => server.connection_lost(),
            }
            while let Some(e) = server.poll_event() {
                if let ServerEvent::Message = e {
                    let data = server.message().map(|m| m.data.to_vec()).unwrap_or_default();
                    if let Ok(m) = Mm4::parse(&data) {
                        let id = m.message_id.clone().unwrap_or_default();
                        let _ = heard.send((m.kind, id, m.mm_status, m.request_status));
                    }
                    let _ = server.answer(now, Reply::new(250, b"2.0.0 Ok"));
                }
            }
            while server.wants_transmit() {
                let n = server.poll_transmit(&mut out);
                if n == 0 || s.write_all(out.get(..n).unwrap_or(&[])).is_err() {
                    break;
                }
            }
        }
        conns.retain(|(_, server)| !matches!(server.state(), ServerState::Closed(_)));
        if idle {
            thread::sleep(Duration::from_micros(500));
        }
    }
}

/// One connection to iwf: sends its share of the MMS, one at a time.
struct Sending {
    stream: TcpStream,
    client: Client,
    /// The id of the MMS in flight, with when its data went.
    in_flight: Option<(String, Instant)>,
}

/// A connection slot: its connection, or when to try again after a refusal.
struct Slot {
    conn: Option<Sending>,
    retry_at: Instant,
    backoff: Duration,
}

impl MmscOutcome {
    /// Keeps a problem's text once, and only the first few.
    fn note(&mut self, e: String) {
        if self.errors.len() < 8 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
}

/// The MMS `n`: its id and the MM4_forward.REQ.
fn forward(cfg: &MmscConfig, run: &str, n: u64, image: &[u8]) -> (String, String, Vec<u8>) {
    let id = format!("mm-{run}-{n}@{DOMAIN}");
    let tid = format!("mt-{run}-{n}");
    let to = format!("+{}{:04}", cfg.to_prefix, n % cfg.users.max(1) + 1);
    let rcpt = format!("{to}/TYPE=PLMN@iwf.ims.lab");
    let from = MmsAddress::plmn(&cfg.from, DOMAIN);
    let to = [MmsAddress::plmn(&to, "iwf.ims.lab")];
    let parts = [
        Part {
            content_type: "text/plain; charset=utf-8".into(),
            content_id: None,
            name: None,
            body: format!("Load test MMS {n}").into_bytes(),
        },
        Part { content_type: "image/jpeg".into(), content_id: Some(format!("p{n}")), name: None, body: image.to_vec() },
    ];
    let e = Envelope { transaction_id: &tid, sender: SYSTEM, rfc_message_id: &tid, date: 0 };
    let f = Forward {
        message_id: &id,
        from: &from,
        to: &to,
        subject: None,
        originator_system: SYSTEM,
        delivery_report: true,
        read_reply: false,
        ack_request: true,
        parts: &parts,
    };
    let data = mm4::forward_req(&e, &f);
    (id, rcpt, data)
}

/// `iwf-peer load`'s MMS centre: sends, then waits for the reports.
pub fn run(cfg: &MmscConfig, live: &MmscLive, stop: &AtomicBool) -> Result<MmscOutcome, String> {
    let listener = TcpListener::bind(cfg.listen).map_err(|e| format!("MMS centre {}: {e}", cfg.listen))?;
    let (tx, rx) = channel();
    let server_stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| serve(listener, tx, &server_stop));
        let r = send_and_collect(cfg, live, stop, &rx);
        server_stop.store(true, Ordering::Relaxed);
        r
    })
}

/// A new SMTP connection to iwf, greeted.
fn connect(cfg: &MmscConfig, ms: u64) -> Result<Sending, String> {
    let stream = TcpStream::connect_timeout(&cfg.iwf, Duration::from_secs(5))
        .map_err(|e| format!("iwf's SMTP server {}: {e}", cfg.iwf))?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut client = Client::new(ClientConfig { hostname: DOMAIN.into(), ..ClientConfig::default() });
    client.connected(ms);
    Ok(Sending { stream, client, in_flight: None })
}

fn send_and_collect(
    cfg: &MmscConfig,
    live: &MmscLive,
    stop: &AtomicBool,
    heard: &Receiver<Heard>,
) -> Result<MmscOutcome, String> {
    // Ids of an earlier run's MMS may still be about: each run its own.
    let run = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    );
    let image = picture(cfg.image_bytes);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| format!("histogram: {e}"))?;
    let mut o = MmscOutcome {
        sent: 0,
        accepted: 0,
        refused: HashMap::new(),
        res_ok: 0,
        res_other: 0,
        reports: 0,
        reports_retrieved: 0,
        unmatched: 0,
        missing: 0,
        closed_by_iwf: 0,
        connect_failures: 0,
        errors: Vec::new(),
        report_hist: Histogram::new(3).map_err(|e| format!("histogram: {e}"))?,
        elapsed: 0.0,
    };
    let epoch = Instant::now();
    // The first connection must open (else iwf is not there); the others retry.
    let first = connect(cfg, 0)?;
    let mut slots: Vec<Slot> = (0..cfg.connections.max(1))
        .map(|_| Slot { conn: None, retry_at: epoch, backoff: Duration::from_millis(100) })
        .collect();
    if let Some(s) = slots.first_mut() {
        s.conn = Some(first);
    }
    // Accepted MMS by id: when their data went, and whether the report came.
    let mut waiting: HashMap<String, (Instant, bool)> = HashMap::new();
    // Reports heard before their MMS's 250 was read (iwf relays the report on another
    // connection, which can be read first): matched when the 250 is.
    let mut early: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    let mut last = start;
    let mut buf = vec![0u8; 16_384];
    let mut out = vec![0u8; 65_536];
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let ms = epoch.elapsed().as_millis() as u64;
        let sending = next < cfg.count && now.duration_since(start) < cfg.send_for;
        let pending = waiting.values().filter(|(_, back)| !back).count() as u64
            + o.accepted.saturating_sub(o.res_ok + o.res_other);
        let busy = slots.iter().any(|s| s.conn.as_ref().is_some_and(|c| c.in_flight.is_some()));
        if !sending && !busy && (pending == 0 || now.duration_since(last) > cfg.drain) {
            break;
        }
        for slot in slots.iter_mut() {
            if slot.conn.as_ref().is_some_and(|c| matches!(c.client.state(), ClientState::Closed(_))) {
                slot.conn = None;
                slot.retry_at = now + slot.backoff;
            }
            if slot.conn.is_none() && sending && now >= slot.retry_at {
                // iwf closed it (an idle timeout, a restart) or refused it: a new one
                // carries on, after a back-off that grows while iwf refuses.
                match connect(cfg, ms) {
                    Ok(fresh) => {
                        slot.conn = Some(fresh);
                        slot.backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        o.connect_failures += 1;
                        o.note(e);
                        slot.retry_at = now + slot.backoff;
                        slot.backoff = (slot.backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            let Some(c) = slot.conn.as_mut() else { continue };
            match c.stream.read(&mut buf) {
                Ok(0) => c.client.connection_lost(),
                Ok(n) => {
                    let mut at = 0;
                    while at < n {
                        let used = c.client.handle_input(ms, buf.get(at..n).unwrap_or(&[]));
                        if used == 0 {
                            break;
                        }
                        at += used;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.client.connection_lost(),
            }
            while let Some(e) = c.client.poll_event() {
                match e {
                    ClientEvent::Delivered { .. } => {
                        if let Some((id, at)) = c.in_flight.take() {
                            o.accepted += 1;
                            let report = early.remove(&id);
                            if let Some(back) = report {
                                o.reports += 1;
                                last = back;
                                let _ = hist.record(back.duration_since(at).as_micros().clamp(1, 120_000_000) as u64);
                            }
                            waiting.insert(id, (at, report.is_some()));
                        }
                    }
                    ClientEvent::Refused { code, .. } => {
                        c.in_flight = None;
                        *o.refused.entry(code).or_default() += 1;
                    }
                    ClientEvent::Closed(why) => {
                        // An MMS in flight was answered Refused (code 0) just before.
                        c.in_flight = None;
                        if !matches!(why, iwf::session::smtp::client::CloseReason::Quit) {
                            o.closed_by_iwf += 1;
                        }
                    }
                    ClientEvent::Ready => {}
                }
            }
            let due = cfg.rate <= 0.0 || start + Duration::from_secs_f64(next as f64 / cfg.rate) <= now;
            if sending && due && c.in_flight.is_none() && c.client.state() == ClientState::Ready {
                let (id, rcpt, data) = forward(cfg, &run, next, &image);
                next += 1;
                if c.client.send(ms, next, SYSTEM.as_bytes(), rcpt.as_bytes(), &data).is_ok() {
                    o.sent += 1;
                    c.in_flight = Some((id, Instant::now()));
                }
            }
            while c.client.wants_transmit() {
                let n = c.client.poll_transmit(&mut out);
                if n == 0 {
                    break;
                }
                if let Err(e) = write_all_nonblocking(&mut c.stream, out.get(..n).unwrap_or(&[])) {
                    o.note(format!("write to iwf: {e}"));
                    c.client.connection_lost();
                    break;
                }
            }
            if c.client.poll_timeout().is_some_and(|t| t <= ms) {
                c.client.handle_timeout(ms);
            }
        }
        while let Ok((kind, id, mm, request)) = heard.try_recv() {
            match kind {
                MessageType::ForwardRes if request == Some(mm4::RequestStatus::Ok) => o.res_ok += 1,
                MessageType::ForwardRes => o.res_other += 1,
                MessageType::DeliveryReportReq => match waiting.get_mut(&id) {
                    Some((at, back)) if !*back => {
                        *back = true;
                        o.reports += 1;
                        o.reports_retrieved += u64::from(mm == Some(MmStatus::Retrieved));
                        last = Instant::now();
                        let _ = hist.record(at.elapsed().as_micros().clamp(1, 120_000_000) as u64);
                    }
                    None if id.contains(&run) && !early.contains_key(&id) => {
                        o.reports_retrieved += u64::from(mm == Some(MmStatus::Retrieved));
                        early.insert(id, Instant::now());
                    }
                    _ => o.unmatched += 1,
                },
                _ => o.unmatched += 1,
            }
        }
        live.sent.store(o.sent, Ordering::Relaxed);
        live.accepted.store(o.accepted, Ordering::Relaxed);
        live.reports.store(o.reports, Ordering::Relaxed);
        if !slots.iter().any(|s| s.conn.as_ref().is_some_and(|c| c.client.wants_transmit())) {
            thread::sleep(Duration::from_micros(200));
        }
    }
    o.unmatched += early.len() as u64;
    for c in slots.iter_mut().filter_map(|s| s.conn.as_mut()) {
        c.client.quit(epoch.elapsed().as_millis() as u64);
        let n = c.client.poll_transmit(&mut out);
        let _ = c.stream.write_all(out.get(..n).unwrap_or(&[]));
    }
    o.missing = waiting.values().filter(|(_, back)| !back).count() as u64;
    o.elapsed = last.duration_since(start).as_secs_f64();
    o.report_hist = hist;
    Ok(o)
}

/// Writes all of `data` to a non-blocking stream (waiting while its buffer is full).
fn write_all_nonblocking(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = data.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < give_up => {
                thread::sleep(Duration::from_micros(100))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
