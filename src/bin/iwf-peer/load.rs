//! `iwf-peer load`: the load generator. One process plays every peer of a load run:
//!
//! - **N legacy systems** binding to iwf (one thread and one transceiver bind each,
//!   windowed): submit_sm asking for receipts, a mix of short GSM texts, long GSM texts
//!   (three concatenated parts, UDH 8-bit reference) and UCS-2 texts (two parts, UDH
//!   16-bit reference), to a range of converged users; every receipt is matched to the
//!   part it belongs to, at the system that sent it (a receipt that reaches another
//!   system is counted as misrouted);
//! - **the converged side** (`--ua-listen`): answers iwf's MESSAGEs 200 and sends the
//!   delivery notification after `--notify-delay-ms` (and display notifications with
//!   `--display`); with `--originate-rate` it also originates converged → legacy
//!   MESSAGEs and matches the delivery notifications that come back;
//! - **the SMSC iwf binds to** (`--smsc-listen`): answers iwf's submit_sm and sends the
//!   delivery receipts that become those notifications;
//! - **an MMS centre** (`--mms-rate`, [`super::mmsc`]): relays MMS with a picture over
//!   iwf's SMTP server and takes their `.RES` and delivery reports on its own; the
//!   converged side then takes MESSAGEs over TCP too.
//!
//! Each side runs in its own network namespace when asked (`--legacy-netns`,
//! `--converged-netns`: the thread enters it before it opens its socket), so one process
//! drives both sides of the lab. Progress goes to stderr every `--progress-ms`; the
//! report is printed as text and written as JSON (`--json PATH`). Exit status 0 when every
//! message was accepted and every receipt and notification came back to its sender,
//! 2 when not (the report says what is missing), 1 on a setup error.
use super::ua::{self, Originate, UaConfig, UaLive, UaOutcome};
use super::{percentiles, run_esme, serve_smsc, EsmeLive, EsmeOutcome, EsmeSpec, MessageSource, Outgoing, Part};
use super::{IdFormat, SmscArgs, STOP};
use hdrhistogram::Histogram;
use iwf::wire::sms::segment::{Concatenation, Gsm7Form, SegmentPlan};
use iwf::wire::sms::Encoding;
use serde_json::json;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// `iwf-peer load` options.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// iwf's SMPP server, where the legacy systems bind.
    #[arg(long, default_value = "198.18.1.2:2775")]
    pub connect: SocketAddr,
    /// A legacy system binding to iwf, `system_id:password` (repeat for N systems).
    #[arg(long = "system")]
    pub systems: Vec<String>,
    /// Network namespace the legacy systems run in (none: the caller's).
    #[arg(long)]
    pub legacy_netns: Option<String>,
    /// Messages per second over all legacy systems (0: as fast as the windows allow).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of submitting (then the run waits up to --drain for what is outstanding).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most messages per system (the run ends at --duration or this, whichever first).
    #[arg(long, default_value_t = u64::MAX)]
    pub count: u64,
    /// submit_sm outstanding per bind.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// The text mix in percent: `short=S,long=L,ucs2=U` (short: one GSM part; long: three
    /// GSM parts; ucs2: two UCS-2 parts).
    #[arg(long, default_value = "short=70,long=20,ucs2=10")]
    pub mix: String,
    /// source_addr of system i's messages: this number plus i (international).
    #[arg(long, default_value = "447000100001")]
    pub source: String,
    /// Converged users: destination_addr = this prefix + a 4-digit user number.
    #[arg(long, default_value = "44790000")]
    pub destination_prefix: String,
    /// Distinct converged users (1..=9999).
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// registered_delivery of each submit_sm (1: receipt on success or failure; 0: none).
    #[arg(long, default_value_t = 1)]
    pub registered_delivery: u8,
    /// Ask for user (read) acknowledgements too (registered_delivery | 0x08): iwf asks the
    /// converged side for display notifications, the converged side sends them (as with
    /// --display) and iwf returns each as a deliver_sm user ack (esm_class 0x10).
    #[arg(long)]
    pub user_ack: bool,
    /// Seconds to wait for outstanding receipts and notifications after submitting ends.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// The converged side: UDP address to listen on (iwf's SIP next hop).
    #[arg(long)]
    pub ua_listen: Option<SocketAddr>,
    /// Network namespace the converged side runs in.
    #[arg(long)]
    pub converged_netns: Option<String>,
    /// Delay between answering a MESSAGE and sending its delivery notification.
    #[arg(long, default_value_t = 0)]
    pub notify_delay_ms: u64,
    /// Send display notifications where display was asked.
    #[arg(long)]
    pub display: bool,
    /// Send the notifications here instead of back to the MESSAGE's sender (in a
    /// cluster: a box that holds no bind of the legacy systems, so their receipts cross
    /// boxes through JetStream).
    #[arg(long)]
    pub notify_to: Option<SocketAddr>,
    /// Converged → legacy MESSAGEs per second from the converged side (0: none, unless
    /// --originate-window is set: then as fast as that window allows).
    #[arg(long, default_value_t = 0.0)]
    pub originate_rate: f64,
    /// Most originated MESSAGEs whose notification has not come back yet (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub originate_window: u64,
    /// Where originated MESSAGEs go.
    #[arg(long, default_value = "198.18.2.2:5060")]
    pub originate_next_hop: SocketAddr,
    /// The converged sender of originated MESSAGEs.
    #[arg(long, default_value = "sip:+447900000001@ims.lab;user=phone")]
    pub originate_from: String,
    /// Recipients of originated MESSAGEs: `tel:` + this prefix + a 5-digit user number.
    #[arg(long, default_value = "+4470003")]
    pub originate_prefix: String,
    /// Distinct legacy recipients of originated MESSAGEs.
    #[arg(long, default_value_t = 100)]
    pub originate_users: u64,
    /// Most originated MESSAGEs.
    #[arg(long, default_value_t = u64::MAX)]
    pub originate_count: u64,
    /// Play the SMSC iwf binds to: the address to listen on (legacy side namespace).
    #[arg(long)]
    pub smsc_listen: Option<SocketAddr>,
    /// The system_id iwf binds to the SMSC with.
    #[arg(long, default_value = "iwf")]
    pub smsc_system_id: String,
    /// The password iwf binds to the SMSC with.
    #[arg(long, default_value = "pwc")]
    pub smsc_password: String,
    /// Seconds to wait for iwf to bind to the SMSC before originating.
    #[arg(long, default_value_t = 30.0)]
    pub smsc_bind_wait: f64,
    /// MMS per second from the MMS centre (0: none): MM4_forward.REQ with a text and a
    /// picture, asking for a delivery report.
    #[arg(long, default_value_t = 0.0)]
    pub mms_rate: f64,
    /// Most MMS.
    #[arg(long, default_value_t = u64::MAX)]
    pub mms_count: u64,
    /// The MMS centre's own SMTP server (iwf's smtp_next_hop for it; legacy namespace).
    #[arg(long, default_value = "198.18.1.1:2525")]
    pub mms_listen: SocketAddr,
    /// iwf's SMTP server.
    #[arg(long, default_value = "198.18.1.2:25")]
    pub mms_connect: SocketAddr,
    /// SMTP connections the MMS centre relays over (one MMS in flight on each). iwf's
    /// `max_connections_per_peer` counts them with the SMPP binds from the same address.
    #[arg(long, default_value_t = 4)]
    pub mms_connections: usize,
    /// The picture's size, KiB.
    #[arg(long, default_value_t = 30)]
    pub mms_image_kb: usize,
    /// The MMS sender (an MMS user).
    #[arg(long, default_value = "+447000400001")]
    pub mms_from: String,
    /// Milliseconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 1000)]
    pub progress_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// The kinds of text in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Text {
    Short,
    Long,
    Ucs2,
}

/// Parses `short=70,long=20,ucs2=10` into cumulative weights.
fn parse_mix(s: &str) -> Result<Vec<(Text, u64)>, String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| format!("--mix: `{item}` is not kind=percent"))?;
        let kind = match k.trim() {
            "short" => Text::Short,
            "long" => Text::Long,
            "ucs2" => Text::Ucs2,
            other => return Err(format!("--mix: unknown kind `{other}` (short, long, ucs2)")),
        };
        let w: u64 = v.trim().parse().map_err(|_| format!("--mix: `{v}` is not a whole number"))?;
        if w > 0 {
            total += w;
            out.push((kind, total));
        }
    }
    if total == 0 {
        return Err("--mix: no kind has a weight above 0".into());
    }
    Ok(out)
}

/// A legacy system's messages: the mix, to a range of converged users.
struct MixSource {
    mix: Vec<(Text, u64)>,
    prefix: String,
    users: u64,
    system: usize,
    reference: u16,
    /// Messages of each kind, in [`Text`] order.
    kinds: [u64; 3],
}

impl MixSource {
    fn kind(&self, n: u64) -> Text {
        let total = self.mix.last().map_or(1, |(_, t)| *t);
        // A multiplicative hash spreads the kinds evenly over any run length.
        let pick = (n.wrapping_add(self.system as u64 * 7919).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % total;
        self.mix.iter().find(|(_, upto)| pick < *upto).map_or(Text::Short, |(k, _)| *k)
    }
}

impl MessageSource for MixSource {
    fn message(&mut self, n: u64, out: &mut Outgoing) {
        let kind = self.kind(n);
        self.kinds[kind as usize] += 1;
        out.destination.clear();
        let _ = write!(out.destination, "{}{:04}", self.prefix, n % self.users.max(1) + 1);
        out.parts.clear();
        let mut text = String::with_capacity(512);
        let (encoding, method, data_coding) = match kind {
            Text::Short => {
                let _ = write!(text, "Load test {n} from system {}: short GSM text.", self.system + 1);
                (Encoding::Gsm7, Concatenation::Udh8, 0)
            }
            Text::Long => {
                let _ = write!(text, "Load test {n} from system {}, a long text in three parts. ", self.system + 1);
                while text.len() < 420 {
                    text.push_str("The quick brown fox jumps over the lazy dog; {curly} [square] ~tilde~ 0123456789. ");
                }
                text.truncate(420);
                (Encoding::Gsm7, Concatenation::Udh8, 0)
            }
            Text::Ucs2 => {
                let _ = write!(text, "Нагрузочный тест {n}, система {}: ", self.system + 1);
                while text.chars().map(char::len_utf16).sum::<usize>() < 110 {
                    text.push_str("привет 你好 👍 ");
                }
                (Encoding::Ucs2, Concatenation::Udh16, 8)
            }
        };
        self.reference = self.reference.wrapping_add(1);
        let mut buf = [0u8; 1024];
        let Ok(plan) = SegmentPlan::new(&text, encoding, method, self.reference, &mut buf) else { return };
        for seg in plan.segments() {
            let mut ud = [0u8; 160];
            if let Ok(len) = seg.write_user_data(Gsm7Form::Unpacked, &mut ud) {
                out.parts.push(Part {
                    esm_class: if seg.has_udh() { 0x40 } else { 0 },
                    data_coding,
                    user_data: ud.get(..len).unwrap_or(&[]).to_vec(),
                });
            }
        }
    }
}

/// Enters network namespace `name` (this thread only: sockets opened after it live there).
fn enter_netns(name: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{name}");
    let f = std::fs::File::open(&path).map_err(|e| format!("network namespace {name}: {path}: {e}"))?;
    #[allow(unsafe_code)]
    // SAFETY: setns(2) on an open namespace file descriptor; it changes only the calling
    // thread's network namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// One legacy system of the run.
struct System {
    name: String,
    spec: EsmeSpec,
    live: EsmeLive,
}

/// One legacy system's result.
struct SystemResult {
    name: String,
    outcome: Result<EsmeOutcome, String>,
    kinds: [u64; 3],
}

/// `iwf-peer load`.
pub fn load(args: LoadArgs) -> Result<ExitCode, String> {
    let mix = parse_mix(&args.mix)?;
    if args.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if !(1..=9999).contains(&args.users) {
        return Err("--users must be 1..=9999".into());
    }
    if args.rate.is_nan() || args.rate < 0.0 || args.originate_rate.is_nan() || args.originate_rate < 0.0 {
        return Err("--rate and --originate-rate must be 0 or more".into());
    }
    let originating = args.originate_rate > 0.0 || args.originate_window > 0;
    let mms = args.mms_rate > 0.0;
    if args.mms_rate.is_nan() || args.mms_rate < 0.0 {
        return Err("--mms-rate must be 0 or more".into());
    }
    if mms && args.ua_listen.is_none() {
        return Err("--mms-rate needs --ua-listen (the converged side takes the MMS)".into());
    }
    if args.systems.is_empty() && !originating && !mms {
        return Err(
            "nothing to do: give --system (legacy → converged), --originate-rate (converged → legacy) or --mms-rate"
                .into(),
        );
    }
    if originating && args.ua_listen.is_none() {
        return Err("--originate-rate / --originate-window need --ua-listen (the converged side's address)".into());
    }
    let source: u64 = args.source.parse().map_err(|_| "--source must be digits".to_string())?;
    let n_systems = args.systems.len().max(1) as f64;
    let systems: Vec<System> = args
        .systems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (id, pw) = s.split_once(':').ok_or_else(|| format!("--system `{s}`: not system_id:password"))?;
            Ok(System {
                name: id.to_string(),
                spec: EsmeSpec {
                    connect: args.connect,
                    system_id: id.to_string(),
                    password: pw.to_string(),
                    window: args.window,
                    rate: (args.rate > 0.0).then_some(args.rate / n_systems),
                    count: args.count,
                    submit_for: Some(Duration::from_secs_f64(args.duration.max(0.0))),
                    source: (source + i as u64).to_string(),
                    registered_delivery: if args.user_ack {
                        args.registered_delivery | 0x08
                    } else {
                        args.registered_delivery
                    },
                    response_timeout_ms: 30_000,
                    receipt_wait_ms: (args.drain.max(0.0) * 1000.0) as u64,
                    timeout: args.duration.max(0.0) + args.drain.max(0.0) + 40.0,
                },
                live: EsmeLive::default(),
            })
        })
        .collect::<Result<_, String>>()?;

    let ua_stop = AtomicBool::new(false);
    let smsc_stop = AtomicBool::new(false);
    let smsc_binds = AtomicU64::new(0);
    let smsc_up = AtomicBool::new(false);
    let ua_live = UaLive::default();
    let ua_ready = AtomicBool::new(false);
    let ua_cfg = UaConfig {
        answer: 200,
        notify_delay_ms: args.notify_delay_ms,
        display: args.display || args.user_ack,
        originate: originating.then(|| Originate {
            next_hop: args.originate_next_hop,
            from: args.originate_from.clone(),
            to_prefix: args.originate_prefix.clone(),
            users: args.originate_users.max(1),
            rate: args.originate_rate,
            window: args.originate_window,
            count: args.originate_count,
            send_for: Duration::from_secs_f64(args.duration.max(0.0)),
            drain: Duration::from_secs_f64(args.drain.max(0.0)),
        }),
        tcp_notify_to: mms.then_some(args.originate_next_hop),
        notify_to: args.notify_to,
    };
    let mmsc_cfg = super::mmsc::MmscConfig {
        listen: args.mms_listen,
        iwf: args.mms_connect,
        rate: args.mms_rate,
        count: args.mms_count,
        send_for: Duration::from_secs_f64(args.duration.max(0.0)),
        drain: Duration::from_secs_f64(args.drain.max(0.0)),
        connections: args.mms_connections.max(1),
        image_bytes: args.mms_image_kb.saturating_mul(1024),
        from: args.mms_from.clone(),
        to_prefix: args.destination_prefix.clone(),
        users: args.users,
    };
    let mmsc_live = super::mmsc::MmscLive::default();
    let mmsc_stop = AtomicBool::new(false);
    let started = Instant::now();
    let hard_end = started + Duration::from_secs_f64(args.duration.max(0.0) + args.drain.max(0.0) + 60.0);

    let (results, ua_result, smsc_result, mms_result) = thread::scope(|s| {
        let smsc = args.smsc_listen.map(|listen| {
            let smsc_args = SmscArgs {
                listen,
                system_id: args.smsc_system_id.clone(),
                password: args.smsc_password.clone(),
                receipt_delay_ms: 0,
                window: args.window.max(10),
                ids: IdFormat::Hex,
                // Ids of an earlier run may still be held by iwf (a correlation lingers
                // after its notification): each run takes its own range, as an SMSC would.
                first_id: (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    & 0xff_ffff)
                    << 24,
                duration: args.duration.max(0.0) + args.drain.max(0.0) + 120.0,
                max_connections: 64,
                mo: 0,
                mo_from: String::new(),
                unknown_receipts: 0,
                receipts_elsewhere: false,
                mo_to: String::new(),
            };
            let (stop, binds, up) = (&smsc_stop, &smsc_binds, &smsc_up);
            let netns = args.legacy_netns.clone();
            s.spawn(move || {
                if let Some(ns) = &netns {
                    enter_netns(ns)?;
                }
                up.store(true, Ordering::SeqCst);
                serve_smsc(smsc_args, stop, Some(binds))
            })
        });
        // The converged side first: iwf's first MESSAGEs must find it listening.
        let ua = args.ua_listen.map(|listen| {
            let (cfg, live, stop, ready) = (&ua_cfg, &ua_live, &ua_stop, &ua_ready);
            let netns = args.converged_netns.clone();
            let smsc_wanted = args.smsc_listen.is_some() && cfg.originate.is_some();
            let (binds, wait) = (&smsc_binds, Duration::from_secs_f64(args.smsc_bind_wait.max(0.0)));
            s.spawn(move || -> Result<UaOutcome, String> {
                if let Some(ns) = &netns {
                    enter_netns(ns)?;
                }
                let sock = UdpSocket::bind(listen).map_err(|e| format!("converged side: cannot bind {listen}: {e}"))?;
                if smsc_wanted {
                    // Originating before iwf has bound to the SMSC would measure 480s.
                    let until = Instant::now() + wait;
                    while binds.load(Ordering::Relaxed) == 0 && Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                    if binds.load(Ordering::Relaxed) == 0 {
                        return Err(format!("iwf did not bind to the SMSC at {:?} within {wait:?}", args.smsc_listen));
                    }
                }
                // Ready only now: while it waited for iwf's bind to the SMSC nobody read
                // the socket, and the legacy systems' MESSAGEs would have waited for
                // iwf's retransmissions (seconds of latency that are the test's own).
                ready.store(true, Ordering::SeqCst);
                ua::run(&sock, cfg, live, stop)
            })
        });
        while (ua.as_ref().is_some_and(|h| !h.is_finished()) && !ua_ready.load(Ordering::SeqCst))
            || (smsc.as_ref().is_some_and(|h| !h.is_finished()) && !smsc_up.load(Ordering::SeqCst))
        {
            thread::sleep(Duration::from_millis(5));
        }
        let mmsc = mms.then(|| {
            let (cfg, live, stop) = (&mmsc_cfg, &mmsc_live, &mmsc_stop);
            let netns = args.legacy_netns.clone();
            s.spawn(move || {
                if let Some(ns) = &netns {
                    enter_netns(ns)?;
                }
                super::mmsc::run(cfg, live, stop)
            })
        });
        let handles: Vec<_> = systems
            .iter()
            .enumerate()
            .map(|(i, sys)| {
                let netns = args.legacy_netns.clone();
                let mut src = MixSource {
                    mix: mix.clone(),
                    prefix: args.destination_prefix.clone(),
                    users: args.users,
                    system: i,
                    reference: (i as u16).wrapping_mul(4099),
                    kinds: [0; 3],
                };
                s.spawn(move || {
                    let outcome = match &netns {
                        Some(ns) => enter_netns(ns),
                        None => Ok(()),
                    }
                    .and_then(|()| run_esme(&sys.spec, &mut src, &sys.live, &STOP));
                    sys.live.done.store(true, Ordering::SeqCst);
                    SystemResult { name: sys.name.clone(), outcome, kinds: src.kinds }
                })
            })
            .collect();
        let mut last = (Instant::now(), 0u64, 0u64);
        let mut next_progress = Instant::now() + Duration::from_millis(args.progress_ms.max(1));
        loop {
            let legacy_done = systems.iter().all(|s| s.live.done.load(Ordering::SeqCst));
            let originate_done = ua_cfg.originate.is_none()
                || ua.as_ref().is_none_or(|h| h.is_finished())
                || ua_live.originate_done.load(Ordering::SeqCst);
            let mms_done = mmsc.as_ref().is_none_or(|h| h.is_finished());
            if (legacy_done && originate_done && mms_done) || STOP.load(Ordering::SeqCst) || Instant::now() > hard_end {
                break;
            }
            if args.progress_ms > 0 && Instant::now() >= next_progress {
                next_progress += Duration::from_millis(args.progress_ms);
                last = progress(started, last, &systems, &ua_live, &smsc_binds);
                if mms {
                    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                    let l = &mmsc_live;
                    eprintln!(
                        "load {:6.1}s | MMS: {} sent {} accepted {} reports",
                        started.elapsed().as_secs_f64(),
                        get(&l.sent),
                        get(&l.accepted),
                        get(&l.reports)
                    );
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        if args.progress_ms > 0 {
            progress(started, last, &systems, &ua_live, &smsc_binds);
        }
        // The last notifications' 200s and the last receipts' resps go out first.
        thread::sleep(Duration::from_millis(500));
        let results: Vec<SystemResult> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| SystemResult {
                    name: "?".into(),
                    outcome: Err("thread panicked".into()),
                    kinds: [0; 3],
                })
            })
            .collect();
        mmsc_stop.store(true, Ordering::SeqCst);
        let mms_result = mmsc.map(|h| h.join().unwrap_or_else(|_| Err("the MMS centre panicked".into())));
        ua_stop.store(true, Ordering::SeqCst);
        smsc_stop.store(true, Ordering::SeqCst);
        let ua_result = ua.map(|h| h.join().unwrap_or_else(|_| Err("the converged side panicked".into())));
        let smsc_result = smsc.map(|h| h.join().unwrap_or_else(|_| Err("the SMSC thread panicked".into())));
        (results, ua_result, smsc_result, mms_result)
    });
    let mut report = Report::new(&args, &results, ua_result.as_ref(), smsc_result.as_ref(), started.elapsed());
    if let Some(r) = &mms_result {
        report.add_mms(r);
    }
    print!("{}", report.text);
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{}\n", report.json)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(e) = report.setup_error {
        return Err(e);
    }
    Ok(if report.complete { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Prints one progress line; returns (when, receipts, notifications) for the next rates.
fn progress(
    started: Instant,
    last: (Instant, u64, u64),
    systems: &[System],
    ua: &UaLive,
    smsc_binds: &AtomicU64,
) -> (Instant, u64, u64) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let sum = |f: fn(&EsmeLive) -> &AtomicU64| systems.iter().map(|s| get(f(&s.live))).sum::<u64>();
    let (messages, parts, ok, refused, matched) =
        (sum(|l| &l.messages), sum(|l| &l.parts), sum(|l| &l.ok), sum(|l| &l.refused), sum(|l| &l.matched));
    let back = get(&ua.notifications_back);
    let now = Instant::now();
    let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
    let mut line = format!("load {:6.1}s", started.elapsed().as_secs_f64());
    if !systems.is_empty() {
        let bound = systems.iter().filter(|s| s.live.bound.load(Ordering::Relaxed)).count();
        let _ = write!(
            line,
            " | legacy {bound}/{} bound: {messages} msgs {parts} parts {ok} ok {refused} refused {matched} receipts ({:.0}/s)",
            systems.len(),
            matched.saturating_sub(last.1) as f64 / dt
        );
    }
    let _ =
        write!(line, " | converged: {} MESSAGEs {} notifications sent", get(&ua.messages), get(&ua.notifications_sent));
    if get(&ua.originated) > 0 {
        let _ = write!(
            line,
            " | originated {} 2xx {} notifications back {back} ({:.0}/s), smsc binds {}",
            get(&ua.originated),
            get(&ua.originated_ok),
            back.saturating_sub(last.2) as f64 / dt,
            get(smsc_binds)
        );
    }
    eprintln!("{line}");
    (now, matched, back)
}

/// The run's report, as text and JSON.
struct Report {
    text: String,
    json: serde_json::Value,
    complete: bool,
    setup_error: Option<String>,
}

impl Report {
    /// The MMS centre's part: every accepted MMS's delivery report came back.
    fn add_mms(&mut self, r: &Result<super::mmsc::MmscOutcome, String>) {
        // Before the verdict, the text's last line.
        let verdict = self.text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
        self.text.truncate(verdict);
        match r {
            Ok(o) => {
                let p = percentiles(&o.report_hist);
                let _ = writeln!(
                    self.text,
                    "MMS: {} sent, {} accepted (SMTP 250), {} .RES Ok, {} delivery reports back, {} missing; \
                     {:.1} MMS/s; report latency µs p50 {} p99 {}",
                    o.sent,
                    o.accepted,
                    o.res_ok,
                    o.reports,
                    o.missing,
                    if o.elapsed > 0.0 { o.reports as f64 / o.elapsed } else { 0.0 },
                    p["p50"],
                    p["p99"]
                );
                if o.closed_by_iwf > 0 || o.connect_failures > 0 || o.unmatched > 0 || !o.refused.is_empty() {
                    let _ = writeln!(
                        self.text,
                        "     {} connections closed by iwf, {} connection attempts refused, {} unmatched reports, \
                         refused {:?}{}",
                        o.closed_by_iwf,
                        o.connect_failures,
                        o.unmatched,
                        o.refused,
                        o.errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
                    );
                }
                // Every MMS sent was taken and its report came back (a refused
                // reconnection loses nothing: the slot tried again).
                if o.sent == 0 || o.accepted != o.sent || o.missing > 0 || o.unmatched > 0 {
                    self.complete = false;
                }
                self.json["mms"] = o.to_json();
            }
            Err(e) => {
                let _ = writeln!(self.text, "MMS: {e}");
                self.complete = false;
                self.setup_error.get_or_insert_with(|| e.clone());
            }
        }
        self.json["complete"] = json!(self.complete);
        let _ = writeln!(self.text, "{}", if self.complete { "complete" } else { "INCOMPLETE" });
    }

    fn new(
        args: &LoadArgs,
        results: &[SystemResult],
        ua: Option<&Result<UaOutcome, String>>,
        smsc: Option<&Result<serde_json::Value, String>>,
        wall: Duration,
    ) -> Report {
        let mut text = String::new();
        let mut complete = true;
        let mut setup_error = None;
        let mut systems_json = Vec::new();
        let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).ok();
        let (mut t_matched, mut t_parts, mut t_messages, mut t_missing, mut t_misrouted) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut t_elapsed: f64 = 0.0;
        let _ = writeln!(text, "iwf-peer load: {:.1} s", wall.as_secs_f64());
        if !results.is_empty() {
            let _ = writeln!(
                text,
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9}",
                "system",
                "messages",
                "parts",
                "accepted",
                "refused",
                "receipts",
                "missing",
                "misrouted",
                "receipts/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs"
            );
        }
        for (i, r) in results.iter().enumerate() {
            let o = match &r.outcome {
                Ok(o) => o,
                Err(e) => {
                    complete = false;
                    let _ = writeln!(text, "{:<10} failed: {e}", r.name);
                    systems_json.push(json!({ "system": r.name, "error": e }));
                    setup_error.get_or_insert_with(|| format!("{}: {e}", r.name));
                    continue;
                }
            };
            let run = &o.run;
            // Receipts that reached this system for another system's part.
            let misrouted =
                run.early
                    .keys()
                    .filter(|id| {
                        results.iter().enumerate().any(|(j, other)| {
                            j != i && other.outcome.as_ref().is_ok_and(|oo| oo.run.ids.contains_key(*id))
                        })
                    })
                    .count() as u64;
            let missing = if o.wants_receipt { run.ok.saturating_sub(run.matched) } else { 0 };
            let refused = run.answered - run.ok;
            let rps = if o.elapsed_all > 0.0 { run.matched as f64 / o.elapsed_all } else { 0.0 };
            let h = &run.receipt_hist;
            let _ = writeln!(
                text,
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>10.0} {:>9} {:>9} {:>9}",
                r.name,
                o.messages,
                o.parts,
                run.ok,
                refused,
                run.matched,
                missing,
                misrouted,
                rps,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999)
            );
            if !run.errors.is_empty() {
                let _ = writeln!(text, "{:<10} refusals: {:?}", "", run.errors);
            }
            if run.throttled > 0 {
                let _ =
                    writeln!(text, "{:<10} {} ESME_RTHROTTLED answers, each part submitted again", "", run.throttled);
            }
            let acks_missing = if run.wants_user_ack { run.ok.saturating_sub(run.user_acks) } else { 0 };
            if run.wants_user_ack {
                let _ = writeln!(
                    text,
                    "{:<10} user acks: {} matched, {} missing, {} unknown",
                    "",
                    run.user_acks,
                    acks_missing,
                    run.early_acks.len() as u64
                );
            }
            if missing > 0
                || misrouted > 0
                || refused > 0
                || run.timeouts > 0
                || !o.complete
                || acks_missing > 0
                || run.early_acks.len() as u64 > 0
            {
                complete = false;
            }
            if let Some(a) = all.as_mut() {
                let _ = a.add(h);
            }
            t_matched += run.matched;
            t_parts += o.parts;
            t_messages += o.messages;
            t_missing += missing;
            t_misrouted += misrouted;
            t_elapsed = t_elapsed.max(o.elapsed_all);
            systems_json.push(json!({
                "system": r.name,
                "messages": o.messages,
                "texts": { "short": r.kinds[0], "long": r.kinds[1], "ucs2": r.kinds[2] },
                "parts": o.parts,
                "accepted": run.ok,
                "refused": refused,
                "refusals": run.errors,
                "response_timeouts": run.timeouts,
                "throttled": run.throttled,
                "resubmitted": run.resubmitted,
                "receipts": run.receipts,
                "receipts_matched": run.matched,
                "receipts_missing": missing,
                "receipts_misrouted": misrouted,
                "receipts_unknown": (run.early.len() as u64).saturating_sub(misrouted),
                "receipts_duplicate": run.duplicates,
                "user_acks": run.user_acks,
                "user_acks_missing": acks_missing,
                "user_acks_unknown": run.early_acks.len() as u64,
                "elapsed_s": o.elapsed_all,
                "receipts_per_s": rps,
                "submit_resp_latency_us": percentiles(&run.hist),
                "receipt_latency_us": percentiles(h),
                "closed": o.reason.to_string(),
                "complete": o.complete,
            }));
        }
        let legacy_total = (!results.is_empty()).then(|| {
            let rps = if t_elapsed > 0.0 { t_matched as f64 / t_elapsed } else { 0.0 };
            let l = all.as_ref().map(percentiles).unwrap_or_default();
            let _ = writeln!(
                text,
                "legacy → converged: {t_messages} messages, {t_parts} parts, {t_matched} receipts back to their senders, \
                 {t_missing} missing, {t_misrouted} misrouted; {rps:.0} receipts/s; submit → receipt p50 {} µs, p99 {} µs",
                l["p50"], l["p99"]
            );
            json!({
                "messages": t_messages, "parts": t_parts, "receipts_matched": t_matched, "receipts_missing": t_missing,
                "receipts_misrouted": t_misrouted, "receipts_per_s": rps, "receipt_latency_us": l,
            })
        });
        let ua_json = match ua {
            None => serde_json::Value::Null,
            Some(Err(e)) => {
                complete = false;
                setup_error.get_or_insert_with(|| e.clone());
                let _ = writeln!(text, "converged side failed: {e}");
                json!({ "error": e })
            }
            Some(Ok(u)) => {
                let j = u.to_json();
                let c = &u.counts;
                let _ = writeln!(
                    text,
                    "converged side: {} MESSAGEs answered, {} delivery + {} display notifications sent ({} answered 2xx, \
                     {} refused, {} timed out, {} retransmissions)",
                    c.messages, c.imdns_sent, c.display_sent, c.imdns_ok, c.imdns_failed, c.imdn_timeouts,
                    c.imdn_retransmissions
                );
                if c.imdn_timeouts > 0 || c.imdns_failed > 0 {
                    complete = false;
                }
                if c.originated > 0 {
                    let l = &j["notification_latency_us"];
                    let _ = writeln!(
                        text,
                        "converged → legacy: {} MESSAGEs, {} accepted, refused {:?}, {} timed out; {} notifications back \
                         ({} delivered), {} missing, {} unknown; {:.0} notifications/s; MESSAGE → notification p50 {} µs, \
                         p99 {} µs",
                        c.originated,
                        c.originated_ok,
                        c.originated_refused,
                        c.originated_timeouts,
                        c.notifications_back,
                        c.delivered_back,
                        u.missing,
                        c.notifications_unmatched,
                        j["notifications_per_s"].as_f64().unwrap_or(0.0),
                        l["p50"],
                        l["p99"]
                    );
                    if u.missing > 0
                        || c.originated_ok < c.originated
                        || c.notifications_unmatched > 0
                        || c.failed_back > 0
                    {
                        complete = false;
                    }
                }
                j
            }
        };
        let smsc_json = match smsc {
            None => serde_json::Value::Null,
            Some(Err(e)) => {
                complete = false;
                setup_error.get_or_insert_with(|| e.clone());
                let _ = writeln!(text, "SMSC failed: {e}");
                json!({ "error": e })
            }
            Some(Ok(v)) => {
                let _ = writeln!(
                    text,
                    "SMSC: {} binds, {} submit_sm, {} receipts sent, {} acknowledged",
                    v["binds_ok"], v["submit_sm"], v["receipts_sent"], v["receipts_acked"]
                );
                v.clone()
            }
        };
        let _ = writeln!(text, "{}", if complete { "complete" } else { "INCOMPLETE" });
        let json = json!({
            "role": "load",
            "wall_s": wall.as_secs_f64(),
            "config": {
                "systems": results.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                "rate": args.rate, "duration_s": args.duration, "window": args.window, "mix": args.mix,
                "users": args.users, "notify_delay_ms": args.notify_delay_ms, "display": args.display,
                "originate_rate": args.originate_rate, "originate_window": args.originate_window,
            },
            "legacy": legacy_total,
            "systems": systems_json,
            "converged": ua_json,
            "smsc": smsc_json,
            "complete": complete,
        });
        Report { text, json, complete, setup_error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_rejects() {
        let m = parse_mix("short=70,long=20,ucs2=10").unwrap();
        assert_eq!(m, vec![(Text::Short, 70), (Text::Long, 90), (Text::Ucs2, 100)]);
        assert!(parse_mix("short=0").is_err());
        assert!(parse_mix("tiny=5").unwrap_err().contains("tiny"));
        assert!(parse_mix("short").is_err());
    }

    #[test]
    fn mix_source_follows_the_weights_and_segments() {
        let mut src = MixSource {
            mix: parse_mix("short=50,long=30,ucs2=20").unwrap(),
            prefix: "44790000".into(),
            users: 10,
            system: 0,
            reference: 0,
            kinds: [0; 3],
        };
        let mut out = Outgoing::default();
        for n in 0..10_000 {
            src.message(n, &mut out);
            let kind = src.kind(n);
            let (parts, dc) = match kind {
                Text::Short => (1, 0),
                Text::Long => (3, 0),
                Text::Ucs2 => (2, 8),
            };
            assert_eq!(out.parts.len(), parts, "{kind:?}");
            assert!(out.parts.iter().all(|p| p.data_coding == dc && p.user_data.len() <= 160));
            assert_eq!(out.parts.iter().all(|p| p.esm_class == 0x40), parts > 1);
            assert_eq!(out.destination, format!("44790000{:04}", n % 10 + 1));
        }
        // Within 2 points of the weights over 10 000 messages.
        for (i, want) in [5000i64, 3000, 2000].iter().enumerate() {
            assert!((src.kinds[i] as i64 - want).abs() < 200, "{:?}", src.kinds);
        }
    }
}
