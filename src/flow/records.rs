//! What the workers tell the records thread: one fixed-size [`Event`] per step of a
//! message's life (it came in, it was answered, its receipt came back and went on),
//! and the few things an operator's log should say (a bind came up or went).
//!
//! A worker never formats or writes: it copies an event into its own ring
//! ([`Shared::events`]) and goes on. The records thread drains the rings, writes the
//! message records as JSON lines and turns the log events into log lines. When a ring
//! is full the event is dropped and counted (`iwf_records_dropped_total`): a slow disk
//! must never slow the packet path.
use super::*;
use crate::control::records::{mask, msg_key, rfc3339_ms, Addresses, Record, Writer};

/// Events a worker's ring holds (about 240 bytes each).
pub const RING: usize = 8192;

/// A short byte string held inline, cut at `N` bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    /// Nothing.
    pub const EMPTY: Self = Text { len: 0, bytes: [0; N] };

    /// `b`, or its first `N` bytes.
    pub fn of(b: &[u8]) -> Self {
        let n = b.len().min(N).min(usize::from(u8::MAX));
        let mut bytes = [0; N];
        bytes[..n].copy_from_slice(&b[..n]);
        Text { len: n as u8, bytes }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What happened. The name is the record's `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A legacy user's SMS went to the converged side as a MESSAGE (`id`: its tag).
    SmsIn,
    /// A legacy user's SMS was refused (`status`: the command_status it got).
    SmsRefused,
    /// The MESSAGE's final response came, and the parts were answered
    /// (`status`: the SIP status).
    SmsAnswered,
    /// An IMDN for a legacy user's message came (`state`: its disposition).
    ImdnIn,
    /// The IMDN's receipts ended: the legacy system took them, the store holds them,
    /// or they were refused (`status`: the SIP status the IMDN got).
    ReceiptDone,
    /// A converged user's message went to a legacy system (`id`: its
    /// `imdn.Message-ID`; `n`: the parts).
    ConvergedIn,
    /// A legacy system answered one part (`smsc_id`; `status`: command_status).
    Submitted,
    /// A legacy system's delivery receipt came (`smsc_id`, `state`).
    SmscReceipt,
    /// An IMDN went to the converged sender (`id`: the message's `imdn.Message-ID`).
    ImdnSent,
    /// The IMDN's final response (`status`).
    ImdnAnswered,
    /// An MMS centre's MM4 forward went to the converged side (`id`: its tag).
    MmsIn,
    /// Its final response came and the centre was answered (`status`: SIP status).
    MmsAnswered,
    /// A converged user's message went to an MMS centre as MM4 (`id`: its
    /// `imdn.Message-ID`).
    MmsOut,
    /// A log line: a legacy system's bind came up (`status`: [`conn_code`]; `from`:
    /// the peer's address; `to`: the bind type).
    BindUp,
    /// A log line: a bind went (`status`: [`conn_code`]).
    BindDown,
    /// A bind's window in use, once a second (`status`: [`conn_code`]; `n`: iwf's
    /// requests awaiting their response): for the binds table only.
    BindWindow,
}

impl Kind {
    /// The record's `event` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SmsIn => "sms.in",
            Kind::SmsRefused => "sms.refused",
            Kind::SmsAnswered => "sms.answered",
            Kind::ImdnIn => "imdn.in",
            Kind::ReceiptDone => "receipt.done",
            Kind::ConvergedIn => "converged.in",
            Kind::Submitted => "converged.submitted",
            Kind::SmscReceipt => "smsc.receipt",
            Kind::ImdnSent => "imdn.sent",
            Kind::ImdnAnswered => "imdn.answered",
            Kind::MmsIn => "mms.in",
            Kind::MmsAnswered => "mms.answered",
            Kind::MmsOut => "mms.out",
            Kind::BindUp => "bind.up",
            Kind::BindDown => "bind.down",
            Kind::BindWindow => "bind.window",
        }
    }

    /// Whether it is a log line rather than a message record.
    pub fn is_log(self) -> bool {
        matches!(self, Kind::BindUp | Kind::BindDown | Kind::BindWindow)
    }

    /// Which way the message it is about went.
    pub fn direction(self) -> &'static str {
        match self {
            Kind::SmsIn | Kind::SmsRefused | Kind::SmsAnswered | Kind::ImdnIn | Kind::ReceiptDone => {
                "legacy-to-converged"
            }
            Kind::MmsIn | Kind::MmsAnswered => "legacy-to-converged",
            Kind::BindUp | Kind::BindDown | Kind::BindWindow => "-",
            _ => "converged-to-legacy",
        }
    }
}

/// How the receipts of a [`Kind::ReceiptDone`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Not said.
    None,
    /// The legacy system acknowledged them.
    Delivered,
    /// The durable store holds them for a system without a bind.
    Stored,
    /// Refused (`status` says how).
    Refused,
}

impl Ending {
    /// The record's `outcome` field.
    pub fn name(self) -> &'static str {
        match self {
            Ending::None => "",
            Ending::Delivered => "delivered",
            Ending::Stored => "stored",
            Ending::Refused => "refused",
        }
    }
}

/// One step of one message, as a worker saw it.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Unix time, milliseconds.
    pub unix_ms: u64,
    /// What happened.
    pub kind: Kind,
    /// The worker.
    pub core: u16,
    /// The legacy system (its id; 0: none).
    pub system: u16,
    /// A SIP status, an SMPP command_status or an SMTP code, as the kind says.
    pub status: u32,
    /// A count (parts) or a port, as the kind says.
    pub n: u16,
    /// A receipt state or IMDN disposition ([`crate::interwork::state::ReceiptState`]).
    pub state: Option<crate::interwork::state::ReceiptState>,
    /// How it ended.
    pub ending: Ending,
    /// The tag (legacy → converged) or the converged `imdn.Message-ID`.
    pub id: Text<64>,
    /// The legacy system's message_id.
    pub smsc_id: Text<64>,
    /// The sender (an MSISDN or the converged sender's URI, as sent).
    pub from: Text<48>,
    /// The recipient.
    pub to: Text<48>,
}

impl Event {
    /// An event of `kind` about `system`, everything else empty.
    pub fn new(kind: Kind, system: u16) -> Event {
        Event {
            unix_ms: 0,
            kind,
            core: 0,
            system,
            status: 0,
            n: 0,
            state: None,
            ending: Ending::None,
            id: Text::EMPTY,
            smsc_id: Text::EMPTY,
            from: Text::EMPTY,
            to: Text::EMPTY,
        }
    }

    /// With its id (a tag or `imdn.Message-ID`).
    pub fn id(mut self, id: &[u8]) -> Event {
        self.id = Text::of(id);
        self
    }

    /// With the legacy system's message_id.
    pub fn smsc_id(mut self, id: &[u8]) -> Event {
        self.smsc_id = Text::of(id);
        self
    }

    /// With its parties.
    pub fn parties(mut self, from: &[u8], to: &[u8]) -> Event {
        self.from = Text::of(from);
        self.to = Text::of(to);
        self
    }

    /// With a status.
    pub fn status(mut self, status: u32) -> Event {
        self.status = status;
        self
    }

    /// With a count.
    pub fn n(mut self, n: u16) -> Event {
        self.n = n;
        self
    }

    /// With a receipt state.
    pub fn state(mut self, state: crate::interwork::state::ReceiptState) -> Event {
        self.state = Some(state);
        self
    }
}

/// A connection as one number: its port in the high 16 bits, its slot in the low.
pub fn conn_code(conn: ConnRef) -> u32 {
    (u32::from(conn.port) << 16) | u32::from(conn.slot)
}

/// A bind as the binds table (`iwf ctl binds`) shows it: the records thread keeps the
/// table from the workers' bind events and publishes it in [`Shared::binds`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The legacy system (its id).
    pub system: u16,
    /// The worker holding it.
    pub core: u16,
    /// Its connection ([`conn_code`]).
    pub conn: u32,
    /// The peer's address, as the worker saw it.
    pub peer: String,
    /// `transmitter`, `receiver`, `transceiver`; `transceiver (iwf binds)` for iwf's
    /// own bind to an SMSC.
    pub bind_type: String,
    /// When it came up, Unix milliseconds.
    pub since_unix_ms: u64,
    /// iwf's requests on it awaiting their response, as of the last second.
    pub in_flight: u16,
}

/// A bind's table entry from the events about it; whether the table changed.
pub fn apply_bind_event(table: &mut Vec<Bind>, e: &Event) -> bool {
    let at = table.iter().position(|b| b.core == e.core && b.conn == e.status);
    match (e.kind, at) {
        (Kind::BindUp, at) => {
            let b = Bind {
                system: e.system,
                core: e.core,
                conn: e.status,
                peer: String::from_utf8_lossy(e.from.as_bytes()).into_owned(),
                bind_type: String::from_utf8_lossy(e.to.as_bytes()).into_owned(),
                since_unix_ms: e.unix_ms,
                in_flight: 0,
            };
            match at {
                Some(i) => table[i] = b,
                None => table.push(b),
            }
            true
        }
        (Kind::BindDown, Some(i)) => {
            table.remove(i);
            true
        }
        (Kind::BindWindow, Some(i)) if table[i].in_flight != e.n || table[i].system != e.system => {
            table[i].in_flight = e.n;
            table[i].system = e.system;
            true
        }
        (Kind::BindWindow, None) => {
            // Its BindUp was dropped (a full ring): known from here on, without a peer.
            table.push(Bind {
                system: e.system,
                core: e.core,
                conn: e.status,
                peer: String::new(),
                bind_type: String::new(),
                since_unix_ms: e.unix_ms,
                in_flight: e.n,
            });
            true
        }
        _ => false,
    }
}

/// A stack buffer `core::fmt::Write` fills (a peer's address, without allocating).
struct Buf {
    bytes: [u8; 48],
    len: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let Some(dst) = self.bytes.get_mut(self.len..end) else { return Err(core::fmt::Error) };
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Shared {
    /// Worker `core`'s event `e` into its ring (dropped, counted, when the ring is
    /// full or the records are off).
    pub fn record(&self, core: u16, mut e: Event) {
        if !self.records_on.load(Ordering::Relaxed) && !e.kind.is_log() {
            return;
        }
        e.core = core;
        e.unix_ms = unix_ms();
        let pushed = self.events.get(usize::from(core)).is_some_and(|q| q.push(e).is_ok());
        if !pushed {
            inc(&self.stats.records_dropped);
        }
    }

    /// Every event waiting in the workers' rings, to `f` (the records thread's drain).
    pub fn drain_events(&self, mut f: impl FnMut(&Event)) -> usize {
        let mut n = 0;
        for q in &self.events {
            // At most a ring's worth per call, so one busy worker cannot starve the
            // others' rings.
            for _ in 0..RING {
                let Some(e) = q.pop() else { break };
                f(&e);
                n += 1;
            }
        }
        n
    }
}

impl Flows {
    /// Tells the records thread about `e`.
    pub(super) fn record(&self, e: Event) {
        self.shared.record(self.config.core, e);
    }

    /// The bind on `conn` (just reported [`Input::Bound`]) came from `peer` as
    /// `bind_type`: for the log and the binds table.
    pub fn bind_seen(&mut self, conn: ConnRef, peer: Option<std::net::Ipv4Addr>, bind_type: &str) {
        let Some(c) = self.conns.get(&conn) else { return };
        let mut buf = Buf { bytes: [0; 48], len: 0 };
        if let Some(ip) = peer {
            let _ = core::fmt::Write::write_fmt(&mut buf, format_args!("{ip}"));
        }
        let e = Event::new(Kind::BindUp, c.system).status(conn_code(conn));
        self.record(e.parties(&buf.bytes[..buf.len], bind_type.as_bytes()));
    }

    /// Each bind's window in use, for the binds table (once a second).
    pub(super) fn publish_binds(&self) {
        for (conn, c) in &self.conns {
            self.record(Event::new(Kind::BindWindow, c.system).status(conn_code(*conn)).n(c.in_flight));
        }
    }

    /// Whether message records are written (building one costs a copy, or a MAC).
    pub(super) fn records_on(&self) -> bool {
        self.shared.records_on.load(Ordering::Relaxed)
    }

    /// `e`, about converged message `message`: with its `imdn.Message-ID`, sender and
    /// recipient from its correlation entry.
    pub(super) fn record_about(&self, message: correlation::MessageRef, mut e: Event) {
        if !self.records_on() {
            return;
        }
        let mut strings = [0u8; 2048];
        if let Ok(s) = self.correlation.stored(message, &mut strings) {
            e.id = Text::of(s.message_id.as_bytes());
            e.from = Text::of(s.sender.as_bytes());
            e.to = Text::of(s.recipient.digits().as_bytes());
        }
        if e.system == 0 {
            e.system = self.correlation.system(message).map_or(0, |s| s.0);
        }
        self.record(e);
    }
}

/// The record of worker event `e`; `system` names a legacy system by id.
pub fn record_of(e: &Event, addresses: Addresses, system: &dyn Fn(u16) -> String) -> Record {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let id = text(e.id.as_bytes());
    let tag_id = matches!(e.kind, Kind::SmsIn | Kind::SmsAnswered | Kind::ImdnIn | Kind::ReceiptDone | Kind::MmsIn);
    let (tag, message_id) = if tag_id { (id, String::new()) } else { (String::new(), id) };
    let msg = crate::tag::decode_unauthenticated(tag.as_bytes())
        .map(|(f, _, _)| msg_key(f.system, f.minutes, f.sequence))
        .unwrap_or_default();
    let party = |b: &[u8]| match addresses {
        Addresses::Full => text(b),
        Addresses::Masked => mask(&text(b)),
        Addresses::Omitted => String::new(),
    };
    let (sip_status, command_status) = match e.kind {
        Kind::SmsRefused | Kind::Submitted => (None, format!("0x{:08x}", e.status)),
        _ if e.status == 0 => (None, String::new()),
        _ => (Some(e.status), String::new()),
    };
    Record {
        time: rfc3339_ms(e.unix_ms),
        event: e.kind.name().to_string(),
        direction: e.kind.direction().to_string(),
        system: if e.system == 0 { String::new() } else { system(e.system) },
        tag,
        msg,
        message_id,
        smsc_id: text(e.smsc_id.as_bytes()),
        from: party(e.from.as_bytes()),
        to: party(e.to.as_bytes()),
        state: e.state.map(|s| format!("{s:?}").to_ascii_lowercase()).unwrap_or_default(),
        sip_status,
        command_status,
        parts: (e.n > 0 && !e.kind.is_log()).then_some(e.n),
        outcome: e.ending.name().to_string(),
        core: e.core,
    }
}

/// The records thread's loop: the workers' events into `writer` (records) and the log,
/// until `stop`, then what is left.
pub fn run(shared: &Shared, mut writer: Option<Writer>, stop: &std::sync::atomic::AtomicBool) {
    let mut failed = false;
    let mut binds: Vec<Bind> = Vec::new();
    loop {
        let mut binds_changed = false;
        let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
        let provision = shared.provision.load();
        let name = |id: u16| provision.system(id).map_or_else(|| id.to_string(), |l| l.name.clone());
        let n = shared.drain_events(|e| {
            if e.kind.is_log() {
                binds_changed |= apply_bind_event(&mut binds, e);
                return log_event(e, &name);
            }
            let Some(w) = &mut writer else { return };
            if let Err(err) = w.write(&record_of(e, w.addresses(), &name)) {
                // Said once per failure run: a full disk must not fill the log too.
                if !failed {
                    tracing::error!("message records not written: {err}");
                }
                failed = true;
                inc(&shared.stats.records_dropped);
            } else {
                failed = false;
            }
        });
        if binds_changed {
            shared.binds.store(std::sync::Arc::new(binds.clone()));
        }
        if n == 0 {
            if let Some(w) = &mut writer {
                if let Err(err) = w.flush() {
                    tracing::error!("message records not written: {err}");
                }
            }
            if stopping {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A worker's log event as a log line.
fn log_event(e: &Event, name: &dyn Fn(u16) -> String) {
    let system = name(e.system);
    match e.kind {
        Kind::BindUp => {
            let (peer, kind) = (String::from_utf8_lossy(e.from.as_bytes()), String::from_utf8_lossy(e.to.as_bytes()));
            tracing::info!(target: "iwf::worker", core = e.core, conn = e.status, %peer, "bind up: {system} ({kind})")
        }
        Kind::BindDown => tracing::info!(target: "iwf::worker", core = e.core, conn = e.status, "bind down: {system}"),
        _ => {}
    }
}

/// Now, in Unix milliseconds (a vDSO clock read: no system call).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(_: u16) -> String {
        "smsc-a".to_string()
    }

    #[test]
    fn a_record_names_its_message_every_way_it_is_known() {
        let mut keys = crate::tag::KeyRing::new(1).unwrap();
        keys.insert(1, crate::tag::TagKey::from_hex("3f8a1c5e9b7d20461e8f3a5c7b9d1f02").unwrap()).unwrap();
        let fields = crate::tag::TagFields {
            system: 1,
            minutes: 1000,
            sequence: 77,
            segment_index: 0,
            segment_count: 2,
            receipts: crate::tag::ReceiptRequest::DELIVERY,
            parties: crate::tag::Parties::NONE,
        };
        let tag = keys.encode(&fields).unwrap();
        let part = keys.encode(&fields.segment(2)).unwrap();
        let e = Event::new(Kind::SmsIn, 1).id(tag.as_bytes()).parties(b"447700900123", b"447900000001").n(2);
        let r = record_of(&e, Addresses::Masked, &name);
        assert_eq!(
            (r.event.as_str(), r.direction.as_str(), r.system.as_str()),
            ("sms.in", "legacy-to-converged", "smsc-a")
        );
        let tag = String::from_utf8_lossy(tag.as_bytes()).into_owned();
        assert_eq!((r.tag.as_str(), r.msg.as_str(), r.parts), (tag.as_str(), "1:1000:77", Some(2)));
        assert_eq!((r.from.as_str(), r.to.as_str()), ("4477******23", "4479******01"));
        // A part's tag (what the legacy system got for one part) names the same message.
        let p = record_of(&Event::new(Kind::ImdnIn, 1).id(part.as_bytes()), Addresses::Full, &name);
        assert_eq!(p.msg, r.msg);
        let s = record_of(&Event::new(Kind::Submitted, 3).smsc_id(b"abc").status(0x58), Addresses::Omitted, &name);
        assert_eq!((s.command_status.as_str(), s.sip_status, s.from.as_str()), ("0x00000058", None, ""));
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains("\"tag\"") && line.contains("\"smsc_id\":\"abc\""), "{line}");
    }

    #[test]
    fn a_trace_follows_a_number_to_its_smsc_ids_and_receipts() {
        let dir = std::env::temp_dir().join(format!("iwf-trace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("records.jsonl");
        let c = crate::control::records::RecordsConfig {
            path: Some(path.clone()),
            max_file_bytes: 1 << 20,
            files: 1,
            addresses: Addresses::Masked,
        };
        let mut w = Writer::open(&c).unwrap().unwrap();
        let mut at = 1_796_659_200_000;
        let mut put = |w: &mut Writer, mut e: Event| {
            at += 1;
            e.unix_ms = at;
            w.write(&record_of(&e, w.addresses(), &name)).unwrap();
        };
        let conv = Event::new(Kind::ConvergedIn, 3).id(b"m-1").parties(b"sip:alice@ims", b"447700900123").n(1);
        put(&mut w, conv);
        put(&mut w, Event::new(Kind::ConvergedIn, 3).id(b"m-2").parties(b"sip:bob@ims", b"447700900999"));
        put(&mut w, Event::new(Kind::Submitted, 3).id(b"m-1").smsc_id(b"77"));
        put(&mut w, Event::new(Kind::Submitted, 3).id(b"m-2").smsc_id(b"78"));
        put(
            &mut w,
            Event::new(Kind::SmscReceipt, 3).smsc_id(b"77").state(crate::interwork::state::ReceiptState::Delivered),
        );
        put(&mut w, Event::new(Kind::SmscReceipt, 3).smsc_id(b"78"));
        let mut done = Event::new(Kind::ImdnAnswered, 3).id(b"m-1").status(200);
        done.ending = Ending::None;
        put(&mut w, done);
        // Three days later the SMSC gives another message the same id 77: its receipt is
        // that message's, not m-1's.
        let later = |mut e: Event, ms: u64| {
            e.unix_ms = 1_796_659_200_000 + 3 * 86_400_000 + ms;
            e
        };
        let w2 = &mut w;
        for e in [
            later(Event::new(Kind::ConvergedIn, 3).id(b"m-3").parties(b"sip:carol@ims", b"447700900555"), 1),
            later(Event::new(Kind::Submitted, 3).id(b"m-3").smsc_id(b"77"), 2),
            later(Event::new(Kind::SmscReceipt, 3).smsc_id(b"77"), 3),
            // m-4's receipt came before the resp that gave iwf its id (they crossed).
            later(Event::new(Kind::ConvergedIn, 3).id(b"m-4").parties(b"sip:dan@ims", b"447700900777"), 10),
            later(Event::new(Kind::SmscReceipt, 3).smsc_id(b"79"), 11),
            later(Event::new(Kind::Submitted, 3).id(b"m-4").smsc_id(b"79"), 12),
        ] {
            w2.write(&record_of(&e, w2.addresses(), &name)).unwrap();
        }
        w.flush().unwrap();
        let files = crate::control::records::RecordsConfig::files_oldest_first(&path, 1);
        let events = |q: &str| -> Vec<String> {
            crate::control::records::trace(&files, q)
                .unwrap()
                .iter()
                .map(|r| format!("{} {}{}", r.event, r.message_id, r.smsc_id))
                .collect()
        };
        let by_number = events("+447700900123");
        assert_eq!(
            by_number,
            ["converged.in m-1", "converged.submitted m-177", "smsc.receipt 77", "imdn.answered m-1"],
            "{by_number:?}"
        );
        // The id itself names every message and receipt that carried it.
        assert_eq!(events("77").len(), 7, "both messages with it, and their receipts");
        assert_eq!(events("m-2").len(), 3);
        assert_eq!(events("m-3"), ["converged.in m-3", "converged.submitted m-377", "smsc.receipt 77"]);
        assert_eq!(events("m-4"), ["converged.in m-4", "smsc.receipt 79", "converged.submitted m-479"]);
        assert!(events("nothing").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
