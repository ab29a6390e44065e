//! `iwf-peer ua`: the converged side for load runs, on the kernel's UDP. It stands in
//! for the SIP core and its users: answers OPTIONS and MESSAGE (status `--answer`), and
//! for every MESSAGE whose CPIM asks for `positive-delivery` sends a delivery
//! notification (RFC 5438) back to the sender after `--notify-delay-ms` (then, when
//! `display` was asked too and `--display` is on, a display notification once the
//! delivery notification got its final response), retransmitted on Timer E until a final
//! response or Timer F (RFC 3261 §17.1.2). A retransmitted MESSAGE gets the same response
//! again and no second notification.
//!
//! It can also originate converged → legacy traffic ([`Originate`]): MESSAGEs with CPIM
//! asking for `positive-delivery`, paced, retransmitted like the notifications, and the
//! delivery notifications that come back for them matched by `imdn.Message-ID`, with the
//! MESSAGE → notification latency in a histogram. `iwf-peer load` drives it; `iwf-peer ua`
//! prints one JSON line at the end (SIGINT / SIGTERM or `--duration`).
//!
//! With [`UaConfig::tcp_notify_to`] it takes requests over TCP on its address too (a
//! core's TCP transport: iwf sends an MMS's large MESSAGE that way), framed by
//! Content-Length and answered on their connection; their notifications go over UDP to
//! that address.
use super::percentiles;
use hdrhistogram::Histogram;
use iwf::wire::cpim::{self, CpimAddress, CpimRepr, DateTime, Dispositions, EMPTY_HEADER};
use iwf::wire::imdn::{DeliveryStatus, DisplayStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{Header, Message, MessageWriter, Method, Parser, Status};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `iwf-peer ua` options.
#[derive(clap::Args)]
pub struct UaArgs {
    /// UDP address to listen on and send from, e.g. 198.18.2.1:5060.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Status for MESSAGEs (200: take them).
    #[arg(long, default_value_t = 200)]
    pub answer: u16,
    /// Delay between answering a MESSAGE and sending its delivery notification.
    #[arg(long, default_value_t = 0)]
    pub notify_delay_ms: u64,
    /// Also send a display notification where `display` was asked.
    #[arg(long)]
    pub display: bool,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
}

/// Converged → legacy traffic the UA originates.
pub struct Originate {
    /// Where the MESSAGEs go (iwf's converged port, or the baseline's SIP proxy).
    pub next_hop: SocketAddr,
    /// The converged sender (`sip:+447900000001@ims.lab;user=phone`).
    pub from: String,
    /// Recipients: `tel:` + this prefix + a zero-padded user number.
    pub to_prefix: String,
    /// Distinct recipients (user numbers 1..=users).
    pub users: u64,
    /// MESSAGEs per second (0: as fast as `window` allows).
    pub rate: f64,
    /// Most MESSAGEs whose notification has not come back yet (0: no limit).
    pub window: u64,
    /// Most MESSAGEs.
    pub count: u64,
    /// Stop originating after this long.
    pub send_for: Duration,
    /// How long to wait for the notifications after the last MESSAGE's final response.
    pub drain: Duration,
}

/// What the UA does.
pub struct UaConfig {
    /// Status for MESSAGEs that are not notifications.
    pub answer: u16,
    /// Delay before a delivery notification.
    pub notify_delay_ms: u64,
    /// Send display notifications where asked.
    pub display: bool,
    /// Converged → legacy traffic to originate.
    pub originate: Option<Originate>,
    /// Take requests over TCP too; their notifications go to this address (iwf's SIP
    /// over UDP).
    pub tcp_notify_to: Option<SocketAddr>,
    /// Where the notifications of MESSAGEs over UDP go (none: back to their sender): in
    /// a cluster, another box than the one that sent the MESSAGE.
    pub notify_to: Option<SocketAddr>,
}

/// The length of the first whole SIP message in `acc` (its head, and the body its
/// Content-Length gives), if it is all there.
fn frame_len(acc: &[u8]) -> Option<usize> {
    let head = acc.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = core::str::from_utf8(acc.get(..head)?).ok()?;
    let body = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (acc.len() >= head + body).then_some(head + body)
}

/// Answers `bytes` where its request came from: `conn` (a TCP stream) or `src` (UDP).
fn answer(
    sock: &UdpSocket,
    streams: &mut HashMap<u64, (TcpStream, Vec<u8>)>,
    conn: Option<u64>,
    src: SocketAddr,
    bytes: &[u8],
) {
    use std::io::Write;
    match conn {
        Some(id) => {
            if let Some((s, _)) = streams.get_mut(&id) {
                let _ = s.write_all(bytes);
            }
        }
        None => {
            let _ = sock.send_to(bytes, src);
        }
    }
}

/// Counters a progress line reads while the UA runs.
#[derive(Default)]
pub struct UaLive {
    pub messages: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_ok: AtomicU64,
    pub originated: AtomicU64,
    pub originated_ok: AtomicU64,
    pub notifications_back: AtomicU64,
    /// Origination finished: everything sent and every notification back (or the drain
    /// time passed).
    pub originate_done: AtomicBool,
}

/// A request of ours waiting for its final response.
struct Out {
    bytes: Vec<u8>,
    dest: SocketAddr,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    what: Sent,
}

/// What an outstanding request is.
enum Sent {
    /// A notification; the display notification to send once it is answered 2xx.
    Notification { then: Option<Request> },
    /// One of our own MESSAGEs, by its imdn.Message-ID.
    Own(String),
}

/// What the UA counted.
#[derive(Default)]
pub struct Counts {
    pub messages: u64,
    pub retransmitted_messages: u64,
    pub options: u64,
    pub other_requests: u64,
    pub imdns_sent: u64,
    pub display_sent: u64,
    pub imdn_retransmissions: u64,
    pub imdns_ok: u64,
    pub imdns_failed: u64,
    pub imdn_timeouts: u64,
    pub malformed: u64,
    pub originated: u64,
    pub originated_retransmissions: u64,
    pub originated_ok: u64,
    pub originated_refused: HashMap<u16, u64>,
    pub originated_timeouts: u64,
    pub notifications_back: u64,
    pub delivered_back: u64,
    pub failed_back: u64,
    pub notifications_unmatched: u64,
    pub notifications_duplicate: u64,
}

/// How a UA run ended.
pub struct UaOutcome {
    pub local: SocketAddr,
    pub counts: Counts,
    /// Requests still waiting for their final response.
    pub unanswered: usize,
    /// Own MESSAGEs accepted whose notification never came.
    pub missing: u64,
    /// The first few of them (imdn.Message-IDs, in sending order).
    pub missing_sample: Vec<String>,
    /// MESSAGE sent → its delivery notification received, µs.
    pub notification_hist: Histogram<u64>,
    /// Seconds from the first own MESSAGE to the last notification back.
    pub originate_elapsed: f64,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// The top Via's branch of a parsed message.
fn branch_of(m: &Message<'_, '_>) -> Option<String> {
    m.top_via().ok()?.branch().map(str::to_string)
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(0)
}

/// A token unique to this run (time and process id), so that branches, Call-IDs and
/// imdn.Message-IDs never repeat those of an earlier run: iwf's server transactions
/// outlive a run (64·T1) and would answer a repeated branch as a retransmission.
fn run_token() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}.", (nanos as u64 ^ (u64::from(std::process::id()) << 40)) & 0xffff_ffff_ffff)
}

/// A SIP MESSAGE over UDP from `local` carrying a CPIM body; returns it and its branch.
fn request(local: SocketAddr, ruri: &str, from: &str, to: &str, tag: &str, body: &[u8]) -> Option<(Vec<u8>, String)> {
    let branch = format!("z9hG4bK{tag}");
    let mut out = vec![0u8; 2048 + body.len()];
    let mut w = MessageWriter::request(&mut out, Method::Message, ruri).ok()?;
    w.header("Via", &format!("SIP/2.0/UDP {local};branch={branch}")).ok()?;
    w.header("Max-Forwards", "70").ok()?;
    w.header("From", &format!("<{from}>;tag={tag}")).ok()?;
    w.header("To", &format!("<{to}>")).ok()?;
    w.header("Call-ID", &format!("{tag}@{}", local.ip())).ok()?;
    w.header("CSeq", "1 MESSAGE").ok()?;
    w.header("Content-Type", "message/cpim").ok()?;
    let len = w.finish(body).ok()?;
    out.truncate(len);
    Some((out, branch))
}

/// A notification about the message `c` (CPIM of a received MESSAGE) from its recipient
/// (CPIM To) back to its sender (CPIM From).
fn notification_for(c: &CpimRepr<'_>, local: SocketAddr, tag: &str, what: Notification) -> Option<(Vec<u8>, String)> {
    let imdn = Imdn {
        message_id: XmlText::plain(c.message_id),
        datetime: c.datetime,
        recipient_uri: Some(XmlText::plain(c.to.uri)),
        original_recipient_uri: None,
        subject: None,
        notification: what,
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).ok()?;
    let body = CpimRepr {
        from: c.to,
        to: c.from,
        datetime: DateTime::from_unix(unix_now()),
        message_id: tag.as_bytes(),
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: xml.get(..xn)?,
    };
    let mut cbuf = [0u8; 2048];
    let cn = body.emit(&mut cbuf).ok()?;
    let to = std::str::from_utf8(c.from.uri).ok()?;
    let from = std::str::from_utf8(c.to.uri).ok()?;
    request(local, to, from, to, tag, cbuf.get(..cn)?)
}

/// A request's bytes and its Via branch.
type Request = (Vec<u8>, String);

/// The notifications a received MESSAGE asks for: delivery (first), display (after it).
type Notifications = (Option<Request>, Option<Request>);

fn notifications(c: &CpimRepr<'_>, local: SocketAddr, run: &str, n: u64, display: bool) -> Notifications {
    if c.message_id.is_empty() || c.content_type.starts_with(b"message/imdn") {
        return (None, None);
    }
    let delivery = c
        .dispositions
        .contains(Dispositions::POSITIVE_DELIVERY)
        .then(|| {
            notification_for(c, local, &format!("ua{run}{n:x}"), Notification::Delivery(DeliveryStatus::Delivered))
        })
        .flatten();
    let shown = (display && c.dispositions.contains(Dispositions::DISPLAY))
        .then(|| notification_for(c, local, &format!("uad{run}{n:x}"), Notification::Display(DisplayStatus::Displayed)))
        .flatten();
    (delivery, shown)
}

/// A notification received: (the message id it is about, delivered?), or `None` when the
/// MESSAGE is not a notification.
fn received_notification(c: &CpimRepr<'_>) -> Option<(String, bool)> {
    if !c.content_type.starts_with(b"message/imdn") && c.content_disposition != Some(b"notification") {
        return None;
    }
    let imdn = Imdn::parse(c.content).ok()?;
    let delivered = matches!(imdn.notification, Notification::Delivery(DeliveryStatus::Delivered));
    Some((imdn.message_id.to_string(), delivered))
}

/// Own MESSAGE `n`: CPIM text asking for positive-delivery.
fn own_message(o: &Originate, local: SocketAddr, n: u64, id: &str) -> Option<(Vec<u8>, String)> {
    let user = n % o.users.max(1) + 1;
    let to = format!("tel:{}{user:05}", o.to_prefix);
    let text = format!("converged to legacy load message {n}");
    let body = CpimRepr {
        from: CpimAddress { display: b"", uri: o.from.as_bytes() },
        to: CpimAddress { display: b"", uri: to.as_bytes() },
        datetime: DateTime::from_unix(unix_now()),
        message_id: id.as_bytes(),
        dispositions: Dispositions::POSITIVE_DELIVERY,
        imdn_record_route: None,
        content_type: b"text/plain;charset=utf-8",
        content_disposition: None,
        content: text.as_bytes(),
    };
    let mut cbuf = [0u8; 2048];
    let cn = body.emit(&mut cbuf).ok()?;
    request(local, &to, &o.from, &to, id, cbuf.get(..cn)?)
}

/// Runs the UA on `sock` until `stop`.
pub fn run(sock: &UdpSocket, cfg: &UaConfig, live: &UaLive, stop: &AtomicBool) -> Result<UaOutcome, String> {
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let run = run_token();
    sock.set_read_timeout(Some(Duration::from_millis(2))).map_err(|e| e.to_string())?;
    let mut c = Counts::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| format!("histogram: {e}"))?;
    let mut answered: HashMap<String, Vec<u8>> = HashMap::new();
    let mut scheduled: VecDeque<(Instant, Request, Option<Request>, SocketAddr)> = VecDeque::new();
    let mut outstanding: HashMap<String, Out> = HashMap::new();
    // Own MESSAGEs by imdn.Message-ID: when sent, and whether their notification came.
    let mut own: HashMap<String, (Instant, bool)> = HashMap::new();
    let mut own_first: Option<Instant> = None;
    let mut own_last_back: Option<Instant> = None;
    let mut own_last_final: Option<Instant> = None;
    let started = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut reply = vec![0u8; 4096];
    let mut n = 0u64;
    let mut sent_own = 0u64;
    let mut pending_own = 0u64;
    let tcp = match cfg.tcp_notify_to {
        Some(_) => {
            let l = TcpListener::bind(local).map_err(|e| format!("TCP {local}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    let mut streams: HashMap<u64, (TcpStream, Vec<u8>)> = HashMap::new();
    let mut frames: VecDeque<(Vec<u8>, u64)> = VecDeque::new();
    let mut next_stream = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if let Some(l) = &tcp {
            while let Ok((s, _)) = l.accept() {
                if s.set_nonblocking(true).is_ok() {
                    next_stream += 1;
                    streams.insert(next_stream, (s, Vec::new()));
                }
            }
            let mut gone = Vec::new();
            for (id, (s, acc)) in streams.iter_mut() {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            gone.push(*id);
                            break;
                        }
                        Ok(n) => acc.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                        Err(_) => break,
                    }
                }
                while let Some(len) = frame_len(acc) {
                    frames.push_back((acc.drain(..len).collect(), *id));
                }
            }
            for id in gone {
                streams.remove(&id);
            }
        }
        // A TCP request first (they are few: the large ones), else a datagram.
        let tcp_frame = frames.pop_front();
        let input = match &tcp_frame {
            Some((frame, id)) => Some((frame.as_slice(), cfg.tcp_notify_to.unwrap_or(local), Some(*id))),
            None => sock.recv_from(&mut buf).ok().map(|(len, src)| (buf.get(..len).unwrap_or(&[]), src, None)),
        };
        if let Some((data, src, conn)) = input {
            let mut headers = [Header::EMPTY; 48];
            match Parser::datagram().parse(data, &mut headers) {
                Ok(Status::Complete(_, m)) if m.method().is_some() => {
                    let Some(branch) = branch_of(&m) else {
                        c.malformed += 1;
                        continue;
                    };
                    if let Some(r) = answered.get(&branch) {
                        c.retransmitted_messages += 1;
                        answer(sock, &mut streams, conn, src, r);
                        continue;
                    }
                    // A MESSAGE's CPIM, parsed once: a notification back, or a message.
                    let mut cpim_headers = [EMPTY_HEADER; 24];
                    let cpim = (m.method() == Some(Method::Message))
                        .then(|| cpim::parse(m.body, &mut cpim_headers).ok().and_then(|p| CpimRepr::parse(&p).ok()))
                        .flatten();
                    let back = cpim.as_ref().and_then(received_notification);
                    let (code, reason) = match m.method() {
                        Some(Method::Message) if back.is_some() => (200, "OK"),
                        Some(Method::Message) => {
                            c.messages += 1;
                            (cfg.answer, if cfg.answer < 300 { "OK" } else { "Refused" })
                        }
                        Some(Method::Options) => {
                            c.options += 1;
                            (200, "OK")
                        }
                        _ => {
                            c.other_requests += 1;
                            (405, "Method Not Allowed")
                        }
                    };
                    let rn = MessageWriter::response_to(&mut reply, &m, code, reason, Some("ua"))
                        .and_then(|w| w.finish(b""))
                        .ok();
                    if let Some(rn) = rn {
                        let r = reply.get(..rn).unwrap_or(&[]).to_vec();
                        answer(sock, &mut streams, conn, src, &r);
                        if answered.len() > 200_000 {
                            answered.clear();
                        }
                        answered.insert(branch, r);
                    }
                    if let Some((id, delivered)) = back {
                        c.notifications_back += 1;
                        if delivered {
                            c.delivered_back += 1;
                        } else {
                            c.failed_back += 1;
                        }
                        match own.get_mut(&id) {
                            Some((at, seen)) if !*seen => {
                                *seen = true;
                                pending_own = pending_own.saturating_sub(1);
                                own_last_back = Some(Instant::now());
                                let _ = hist.record(at.elapsed().as_micros().clamp(1, 120_000_000) as u64);
                            }
                            Some(_) => c.notifications_duplicate += 1,
                            None => c.notifications_unmatched += 1,
                        }
                    } else if m.method() == Some(Method::Message) && (200..300).contains(&code) {
                        n += 1;
                        let due = Instant::now() + Duration::from_millis(cfg.notify_delay_ms);
                        let asked = cpim.as_ref().map(|c| notifications(c, local, &run, n, cfg.display));
                        match asked.unwrap_or((None, None)) {
                            (Some(delivery), then) => {
                                scheduled.push_back((due, delivery, then, cfg.notify_to.unwrap_or(src)))
                            }
                            // Display asked without delivery: the display notification alone.
                            (None, Some(display)) => {
                                scheduled.push_back((due, display, None, cfg.notify_to.unwrap_or(src)))
                            }
                            (None, None) => {}
                        }
                    }
                }
                Ok(Status::Complete(_, m)) => {
                    let status = m.status_code().unwrap_or(0);
                    if status >= 200 {
                        if let Some(o) = branch_of(&m).and_then(|b| outstanding.remove(&b)) {
                            match o.what {
                                Sent::Notification { then } => {
                                    if status < 300 {
                                        c.imdns_ok += 1;
                                        if let Some((bytes, b)) = then {
                                            let now = Instant::now();
                                            let _ = sock.send_to(&bytes, o.dest);
                                            c.display_sent += 1;
                                            let out = Out::new(bytes, o.dest, now, Sent::Notification { then: None });
                                            outstanding.insert(b, out);
                                        }
                                    } else {
                                        c.imdns_failed += 1;
                                    }
                                }
                                Sent::Own(id) => {
                                    own_last_final = Some(Instant::now());
                                    if status < 300 {
                                        c.originated_ok += 1;
                                    } else {
                                        *c.originated_refused.entry(status).or_default() += 1;
                                        if own.remove(&id).is_some_and(|(_, seen)| !seen) {
                                            pending_own = pending_own.saturating_sub(1);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                _ => c.malformed += 1,
            }
        }
        let now = Instant::now();
        while scheduled.front().is_some_and(|(due, ..)| *due <= now) {
            let Some((_, (bytes, b), then, dest)) = scheduled.pop_front() else { break };
            let _ = sock.send_to(&bytes, dest);
            c.imdns_sent += 1;
            outstanding.insert(b, Out::new(bytes, dest, now, Sent::Notification { then }));
        }
        if let Some(o) = &cfg.originate {
            let start = *own_first.get_or_insert(now);
            while sent_own < o.count
                && now.duration_since(start) < o.send_for
                && (o.rate <= 0.0 || start + Duration::from_secs_f64(sent_own as f64 / o.rate) <= now)
                && (o.window == 0 || pending_own < o.window)
            {
                let id = format!("lo{run}{sent_own:x}");
                let Some((bytes, b)) = own_message(o, local, sent_own, &id) else {
                    return Err("cannot build a MESSAGE (sender or prefix too long?)".into());
                };
                sent_own += 1;
                let _ = sock.send_to(&bytes, o.next_hop);
                c.originated += 1;
                own.insert(id.clone(), (now, false));
                pending_own += 1;
                outstanding.insert(b, Out::new(bytes, o.next_hop, now, Sent::Own(id)));
            }
            let sending = sent_own < o.count && now.duration_since(start) < o.send_for;
            let drained = own_last_final.max(own_last_back).is_some_and(|t| now.duration_since(t) > o.drain)
                || (sent_own == 0 && !sending);
            let waiting = outstanding.values().any(|o| matches!(o.what, Sent::Own(_)));
            if !sending && !waiting && (pending_own == 0 || drained) {
                live.originate_done.store(true, Ordering::Relaxed);
            }
        }
        let mut gone = Vec::new();
        for (b, o) in outstanding.iter_mut() {
            if o.give_up <= now {
                gone.push(b.clone());
            } else if o.next <= now {
                let _ = sock.send_to(&o.bytes, o.dest);
                match o.what {
                    Sent::Own(_) => c.originated_retransmissions += 1,
                    Sent::Notification { .. } => c.imdn_retransmissions += 1,
                }
                o.interval = (o.interval * 2).min(T2);
                o.next = now + o.interval;
            }
        }
        for b in gone {
            match outstanding.remove(&b).map(|o| o.what) {
                Some(Sent::Own(id)) => {
                    c.originated_timeouts += 1;
                    own_last_final = Some(now);
                    if own.remove(&id).is_some_and(|(_, seen)| !seen) {
                        pending_own = pending_own.saturating_sub(1);
                    }
                }
                Some(Sent::Notification { .. }) => c.imdn_timeouts += 1,
                None => {}
            }
        }
        live.messages.store(c.messages, Ordering::Relaxed);
        live.notifications_sent.store(c.imdns_sent + c.display_sent, Ordering::Relaxed);
        live.notifications_ok.store(c.imdns_ok, Ordering::Relaxed);
        live.originated.store(c.originated, Ordering::Relaxed);
        live.originated_ok.store(c.originated_ok, Ordering::Relaxed);
        live.notifications_back.store(c.notifications_back, Ordering::Relaxed);
    }
    let missing = own.values().filter(|(_, seen)| !seen).count() as u64;
    let mut missing_sample: Vec<(Instant, String)> =
        own.iter().filter(|(_, (_, seen))| !seen).map(|(id, (at, _))| (*at, id.clone())).collect();
    missing_sample.sort();
    let missing_sample = missing_sample.into_iter().take(10).map(|(_, id)| id).collect();
    let originate_elapsed = match (own_first, own_last_back) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => started.elapsed().as_secs_f64(),
    };
    Ok(UaOutcome {
        local,
        counts: c,
        unanswered: outstanding.len(),
        missing,
        missing_sample,
        notification_hist: hist,
        originate_elapsed,
    })
}

impl Out {
    fn new(bytes: Vec<u8>, dest: SocketAddr, now: Instant, what: Sent) -> Out {
        Out { bytes, dest, next: now + T1, interval: T1, give_up: now + T1 * 64, what }
    }
}

impl UaOutcome {
    /// The run as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.counts;
        let refused: HashMap<String, u64> = c.originated_refused.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        json!({
            "listen": self.local.to_string(),
            "messages": c.messages,
            "retransmitted_messages": c.retransmitted_messages,
            "options": c.options,
            "other_requests": c.other_requests,
            "imdns_sent": c.imdns_sent,
            "display_sent": c.display_sent,
            "imdn_retransmissions": c.imdn_retransmissions,
            "imdns_ok": c.imdns_ok,
            "imdns_failed": c.imdns_failed,
            "imdn_timeouts": c.imdn_timeouts,
            "imdns_unanswered": self.unanswered,
            "malformed": c.malformed,
            "originated": c.originated,
            "originated_ok": c.originated_ok,
            "originated_refused": refused,
            "originated_timeouts": c.originated_timeouts,
            "originated_retransmissions": c.originated_retransmissions,
            "notifications_back": c.notifications_back,
            "delivered_back": c.delivered_back,
            "failed_back": c.failed_back,
            "notifications_missing": self.missing,
            "notifications_missing_sample": self.missing_sample,
            "notifications_unmatched": c.notifications_unmatched,
            "notifications_duplicate": c.notifications_duplicate,
            "notifications_per_s": if self.originate_elapsed > 0.0 {
                (c.notifications_back - c.notifications_duplicate - c.notifications_unmatched) as f64
                    / self.originate_elapsed
            } else {
                0.0
            },
            "notification_latency_us": percentiles(&self.notification_hist),
        })
    }
}

/// `iwf-peer ua`: runs until `--duration` or a signal, prints one JSON line.
pub fn ua(args: UaArgs) -> Result<ExitCode, String> {
    let sock = UdpSocket::bind(args.listen).map_err(|e| format!("cannot bind {}: {e}", args.listen))?;
    eprintln!("listening on {}", sock.local_addr().map_err(|e| e.to_string())?);
    let cfg = UaConfig {
        answer: args.answer,
        notify_delay_ms: args.notify_delay_ms,
        display: args.display,
        originate: None,
        tcp_notify_to: None,
        notify_to: None,
    };
    let stop = AtomicBool::new(false);
    let end = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    let outcome = std::thread::scope(|s| {
        let runner = s.spawn(|| run(&sock, &cfg, &UaLive::default(), &stop));
        while Instant::now() < end && !super::STOP.load(Ordering::SeqCst) && !runner.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        runner.join().unwrap_or_else(|_| Err("the UA thread panicked".into()))
    })?;
    let mut j = outcome.to_json();
    j["role"] = json!("ua");
    println!("{j}");
    Ok(ExitCode::SUCCESS)
}
