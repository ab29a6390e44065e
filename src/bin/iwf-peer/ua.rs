//! `iwf-peer ua`: the converged side for load runs, on the kernel's UDP. It stands in
//! for the SIP core and its users: answers OPTIONS and MESSAGE (status `--answer`), and
//! for every MESSAGE whose CPIM asks for `positive-delivery` sends a delivery
//! notification (RFC 5438) back to the sender after `--notify-delay-ms`, retransmitted
//! on Timer E until a final response or Timer F (RFC 3261 §17.1.2). A retransmitted
//! MESSAGE gets the same response again and no second notification. Prints one JSON
//! line at the end (SIGINT / SIGTERM or `--duration`).
use iwf::wire::cpim::{self, CpimRepr, DateTime, Dispositions, EMPTY_HEADER};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{Header, Message, MessageWriter, Method, Parser, Status};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
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
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
}

/// A notification waiting for its final response.
struct Out {
    bytes: Vec<u8>,
    dest: SocketAddr,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Default)]
struct Counts {
    messages: u64,
    retransmitted_messages: u64,
    options: u64,
    other_requests: u64,
    imdns_sent: u64,
    imdn_retransmissions: u64,
    imdns_ok: u64,
    imdns_failed: u64,
    imdn_timeouts: u64,
    malformed: u64,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// The top Via's branch of a parsed message.
fn branch_of(m: &Message<'_, '_>) -> Option<String> {
    m.top_via().ok()?.branch().map(str::to_string)
}

/// The delivery notification for a MESSAGE's CPIM body, as a SIP MESSAGE from the
/// converged user (CPIM To) to the legacy user (CPIM From), or `None` when none was asked.
fn notification(msg: &Message<'_, '_>, local: SocketAddr, n: u64) -> Option<(Vec<u8>, String)> {
    let mut headers = [EMPTY_HEADER; 24];
    let parsed = cpim::parse(msg.body, &mut headers).ok()?;
    let c = CpimRepr::parse(&parsed).ok()?;
    if !c.dispositions.contains(Dispositions::POSITIVE_DELIVERY) || c.message_id.is_empty() {
        return None;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let imdn = Imdn {
        message_id: XmlText::plain(c.message_id),
        datetime: c.datetime,
        recipient_uri: Some(XmlText::plain(c.to.uri)),
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).ok()?;
    let own_id = format!("ua{n:x}");
    let body = CpimRepr {
        from: c.to,
        to: c.from,
        datetime: DateTime::from_unix(i64::try_from(now).unwrap_or(0)),
        message_id: own_id.as_bytes(),
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
    let branch = format!("z9hG4bKua{n:x}");
    let mut out = vec![0u8; 4096];
    let mut w = MessageWriter::request(&mut out, Method::Message, to).ok()?;
    w.header("Via", &format!("SIP/2.0/UDP {local};branch={branch}")).ok()?;
    w.header("Max-Forwards", "70").ok()?;
    w.header("From", &format!("<{from}>;tag=ua{n:x}")).ok()?;
    w.header("To", &format!("<{to}>")).ok()?;
    w.header("Call-ID", &format!("ua{n:x}@{}", local.ip())).ok()?;
    w.header("CSeq", "1 MESSAGE").ok()?;
    w.header("Content-Type", "message/cpim").ok()?;
    let len = w.finish(cbuf.get(..cn)?).ok()?;
    out.truncate(len);
    Some((out, branch))
}

/// Runs the UA until `--duration` or a signal.
pub fn ua(args: UaArgs) -> Result<ExitCode, String> {
    let sock = UdpSocket::bind(args.listen).map_err(|e| format!("cannot bind {}: {e}", args.listen))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    eprintln!("listening on {local}");
    sock.set_read_timeout(Some(Duration::from_millis(5))).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    let mut c = Counts::default();
    let mut answered: HashMap<String, Vec<u8>> = HashMap::new();
    let mut scheduled: VecDeque<(Instant, String, Vec<u8>, SocketAddr)> = VecDeque::new();
    let mut outstanding: HashMap<String, Out> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut reply = vec![0u8; 4096];
    let mut n = 0u64;
    while Instant::now() < end && !super::STOP.load(Ordering::SeqCst) {
        if let Ok((len, src)) = sock.recv_from(&mut buf) {
            let mut headers = [Header::EMPTY; 48];
            match Parser::datagram().parse(buf.get(..len).unwrap_or(&[]), &mut headers) {
                Ok(Status::Complete(_, m)) if m.method().is_some() => {
                    let Some(branch) = branch_of(&m) else {
                        c.malformed += 1;
                        continue;
                    };
                    if let Some(r) = answered.get(&branch) {
                        c.retransmitted_messages += 1;
                        let _ = sock.send_to(r, src);
                        continue;
                    }
                    let (code, reason) = match m.method() {
                        Some(Method::Message) => {
                            c.messages += 1;
                            (args.answer, if args.answer < 300 { "OK" } else { "Refused" })
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
                        let _ = sock.send_to(&r, src);
                        if answered.len() > 200_000 {
                            answered.clear();
                        }
                        answered.insert(branch, r);
                    }
                    if m.method() == Some(Method::Message) && (200..300).contains(&code) {
                        n += 1;
                        if let Some((bytes, b)) = notification(&m, local, n) {
                            let due = Instant::now() + Duration::from_millis(args.notify_delay_ms);
                            scheduled.push_back((due, b, bytes, src));
                        }
                    }
                }
                Ok(Status::Complete(_, m)) => {
                    let status = m.status_code().unwrap_or(0);
                    if status >= 200 {
                        if let Some(b) = branch_of(&m) {
                            if outstanding.remove(&b).is_some() {
                                if status < 300 {
                                    c.imdns_ok += 1;
                                } else {
                                    c.imdns_failed += 1;
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
            let Some((_, b, bytes, dest)) = scheduled.pop_front() else { break };
            let _ = sock.send_to(&bytes, dest);
            c.imdns_sent += 1;
            outstanding.insert(b, Out { bytes, dest, next: now + T1, interval: T1, give_up: now + T1 * 64 });
        }
        let mut gone = Vec::new();
        for (b, o) in outstanding.iter_mut() {
            if o.give_up <= now {
                gone.push(b.clone());
            } else if o.next <= now {
                let _ = sock.send_to(&o.bytes, o.dest);
                c.imdn_retransmissions += 1;
                o.interval = (o.interval * 2).min(T2);
                o.next = now + o.interval;
            }
        }
        for b in gone {
            outstanding.remove(&b);
            c.imdn_timeouts += 1;
        }
    }
    println!(
        "{}",
        json!({
            "role": "ua",
            "listen": local.to_string(),
            "messages": c.messages,
            "retransmitted_messages": c.retransmitted_messages,
            "options": c.options,
            "other_requests": c.other_requests,
            "imdns_sent": c.imdns_sent,
            "imdn_retransmissions": c.imdn_retransmissions,
            "imdns_ok": c.imdns_ok,
            "imdns_failed": c.imdns_failed,
            "imdn_timeouts": c.imdn_timeouts,
            "imdns_unanswered": outstanding.len(),
            "malformed": c.malformed,
        })
    );
    Ok(ExitCode::SUCCESS)
}
