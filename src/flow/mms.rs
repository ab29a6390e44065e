//! The MMS exchange in the engine: an MM4 message an MMS centre relayed to iwf's SMTP
//! server becomes a SIP MESSAGE toward the converged user, and the SMTP reply (and
//! the `MM4_forward.RES`, when one is asked for) waits for its final response.
//!
//! A forward that asks for reports leaves what they need (the centre's message id and
//! addresses, which the IMDN that comes back does not carry) in an [`MmsOrigin`],
//! durable before the MESSAGE goes, kept by the worker that relayed it: the tag's
//! sequence names that worker, so an IMDN arriving on another is handed to it. There
//! the IMDN becomes `MM4_delivery_report.REQ` or `MM4_read_reply_report.REQ` to the
//! centre's `X-Mms-Originator-System`, and is answered 200 only once the centre took
//! the report (SMTP 250), 503 when it did not within [`MM4_REPORT_S`].
//!
//! What goes out: SMTP replies on the connection the message came in on
//! ([`Flows::poll_smtp_answer`]), MM4 messages for an MMS centre's SMTP client
//! ([`Flows::poll_mm4_out`]), and the SIP MESSAGE over TCP (an MMS is large) with the
//! engine's other TCP requests.
use super::*;
use crate::interwork::mms::{
    forward_answer, mm4_to_sip, refusal_reply, report_for, report_of, report_state, sip_final_to_outcome,
    ForwardOutcome, MmsReport,
};
use crate::interwork::state::ReceiptState;
use crate::route::replay::Seen;
use crate::route::store::MmsOrigin;
use crate::tag::ReceiptRequest;
use crate::wire::imdn::Notification;
use crate::wire::mm4::{self, MessageType, Mm4, MmStatus, MmsAddress, RequestStatus};
use crate::wire::smtp::Reply;

/// MM4 messages waiting for one MMS centre's SMTP client at most: beyond, a new
/// request from it is answered 451 (the centre sends it again later) rather than let
/// answers pile up.
pub(super) const MM4_OUT_PER_SYSTEM: usize = 1024;

/// How long an MMS waits for its MESSAGE's final response at most, seconds: Timer F
/// (32 s) and a margin. A MESSAGE that never left (no connection to the SIP core)
/// is answered 451 then, so no SMTP session waits for ever.
const MMS_FINAL_S: u64 = 40;

/// MMS awaiting reports one worker keeps at most: beyond, a new MMS that asks for a
/// report is answered 451 (the centre sends it again later), so a flood of MMS
/// cannot grow the table without bound.
const MMS_ORIGINS_MAX: usize = 65_536;

/// How long what waits for MM4 iwf's SMTP client delivers waits at most, seconds: an
/// IMDN for its report's SMTP 250, a converged user's MESSAGE for its forward's. Inside
/// the SIP sender's Timer F (32 s), so the sender hears 503 and tries again rather than
/// time out; the MM4 expires with it in the client's queue (never sent after its
/// answer, which would make the retry a duplicate).
pub(super) const MM4_REPORT_S: u64 = 25;

/// The worker that relayed the MMS whose tag has `sequence`, of `cores` (the top
/// octet of a sequence iwf gives an MMS is its worker: DPDK's 128 lcores at most fit).
pub fn mms_worker(sequence: u32, cores: usize) -> usize {
    (sequence >> 24) as usize % cores.max(1)
}

/// The worker that sent the MM4 message with id `id` ([`Flows::mm4_ids`]), of `cores`;
/// `None` for an id iwf did not make.
pub fn mms_worker_of_id(id: &str, cores: usize) -> Option<usize> {
    let (worker, rest) = id.split_once('.')?;
    rest.contains('@').then_some(())?;
    Some(worker.parse::<usize>().ok()? % cores.max(1))
}

/// The MMS exchange's state on one worker, beyond the forwards in flight.
#[derive(Debug, Default)]
pub(super) struct MmsBook {
    /// MMS relayed to converged users that still owe their centre a report, by
    /// [`MmsOrigin::key_of`] their tag.
    pub(super) origins: HashMap<u64, MmsOrigin>,
    /// (deadline, key) of `origins` as written: swept once a second.
    origin_deadlines: VecDeque<(u64, u64)>,
    /// MESSAGEs waiting for their origin record to be durable, by that write's waiter
    /// key: the forward's outgoing key, the origin's key, the request.
    unsent: HashMap<u64, (u64, u64, SipRequest)>,
    /// MM4 handed to the SMTP client whose fate something waits for, by their
    /// [`Mm4Out::token`]: reports (an IMDN waits) and forwards (a MESSAGE waits).
    pub(super) pending: HashMap<u64, PendingMm4>,
    /// (deadline, token) of `pending`, in order.
    pending_deadlines: VecDeque<(u64, u64)>,
    next_token: u64,
    /// Forwards waiting for their correlation to be durable, by that write's waiter.
    pub(super) unsent_forwards: HashMap<u64, Mm4Out>,
    /// MMS centres' reports about iwf's forwards, by the (connection, number) their
    /// IMDN's outcome is settled under ([`Flows::respond`] hands it here).
    pub(super) report_acks: HashMap<(ConnRef, u32), ReportAck>,
    pub(super) next_ack: u32,
    /// Reports handed to the worker that sent their MMS, by the waiter of its answer.
    pub(super) handed: HashMap<u64, ReportAck>,
}

/// Where an MMS centre's report came from.
#[derive(Debug)]
pub(super) enum ReportFrom {
    /// This worker's SMTP connection `conn`; `rcpt` is where its `.RES` goes.
    Local { conn: ConnRef, rcpt: String },
    /// Another worker handed it here: its waiter.
    Remote { token: u64 },
}

/// How a report from an MMS centre ended, for the centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportOutcome {
    /// Taken (its IMDN went, or none was due): 250, `.RES` Ok.
    Taken,
    /// About no message iwf keeps: `.RES` Error-message-not-found (or 554).
    NotFound,
    /// Its IMDN was refused for good: 250 and the `.RES` with this status (or the
    /// SMTP refusal that says it).
    Refused(RequestStatus),
    /// Not now (the IMDN failed for now): 451, the centre sends it again.
    Retry,
}

/// The receipt state an MM4 message from an MMS centre reports about a forward of
/// iwf's: a report's, or a failure for a `.RES` refusing the forward; `None` for what
/// makes no IMDN (a read reply "deleted without being read").
pub(super) fn report_state_of(m: &Mm4) -> Option<ReceiptState> {
    match m.kind {
        MessageType::ForwardRes => Some(ReceiptState::Failed),
        _ => report_of(m).and_then(report_state),
    }
}

/// The ids of an MM4 message iwf sends: transaction and message id (`core.unix.n@domain`:
/// the worker first, [`mms_worker_of_id`] reads it), iwf's system address, the date.
pub(super) struct Mm4Ids {
    pub(super) id: String,
    pub(super) sender: String,
    date: i64,
}

impl Mm4Ids {
    pub(super) fn envelope(&self) -> mm4::Envelope<'_> {
        mm4::Envelope { transaction_id: &self.id, sender: &self.sender, rfc_message_id: &self.id, date: self.date }
    }
}

/// What waits for an MM4 message iwf's SMTP client delivers.
#[derive(Debug)]
pub(super) enum PendingMm4 {
    /// A report: the IMDN it answers.
    Report(PendingReport),
    /// A converged user's MMS: the MESSAGE's waiter, and its correlation entry (failed
    /// when the centre does not take it).
    Forward { waiter: u64, system: u16, message: Option<correlation::MessageRef> },
}

/// Who hears how a report from an MMS centre ended: the centre on this worker's SMTP
/// connection (its reply, and the `.RES` when asked), or the worker that handed it here.
#[derive(Debug)]
pub(super) enum ReportAck {
    /// On this worker's connection `conn`.
    Local { conn: ConnRef, system: u16, report: Box<Mm4>, rcpt: String },
    /// Handed from another worker: its waiter.
    Remote { token: u64 },
    /// Its connection closed: nobody (the centre sends the report again).
    Gone,
}

/// A report on its way to an MMS centre and the IMDN it answers.
#[derive(Debug)]
pub(super) struct PendingReport {
    txn: SipTxn,
    seen: Seen,
    system: u16,
    /// The origin it reports on, and the reports it settles once taken
    /// ([`MmsOrigin::owed`] bits).
    key: u64,
    settles: u8,
}

/// An MM4 message for an MMS centre: what iwf's SMTP client delivers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mm4Out {
    /// The MMS centre (its `[[legacy]]` id).
    pub system: u16,
    /// `MAIL FROM`: iwf's system address.
    pub from: String,
    /// `RCPT TO`: the MMS centre's system address.
    pub rcpt: String,
    /// The RFC 5322 message.
    pub data: Vec<u8>,
    /// Tries so far (the client gives up after a few).
    pub attempts: u8,
    /// For a report or a forward, what the engine hears its fate by
    /// ([`Input::Mm4Done`]).
    pub token: Option<u64>,
    /// The worker's milliseconds after which it is no longer sent (what waited for it
    /// was answered): dropped, its fate told as not delivered.
    pub expires_ms: Option<u64>,
}

/// What the `MM4_forward.RES` of a forward in flight needs.
#[derive(Debug)]
pub(super) struct ResFor {
    system: u16,
    forward: Mm4,
    /// Where the MMS centre takes MM4 for itself.
    rcpt: String,
}

impl Flows {
    /// An MM4 message from MMS centre `system`, whole on SMTP connection `conn` (its
    /// SMTP reply waits in [`Flows::poll_smtp_answer`]).
    pub(super) fn mm4_message(&mut self, unix: u64, conn: ConnRef, system: u16, data: &[u8]) {
        inc(&self.shared.stats.mm4_in);
        let provision = self.shared.provision.load_full();
        let Some(mms) = provision.system(system).and_then(|l| l.mms.clone()) else {
            return self.smtp_answer(conn, Reply::new(554, b"5.7.1 Not an MMS centre of this relay"));
        };
        let m = match Mm4::parse(data) {
            Ok(m) => m,
            Err(e) => {
                // What cannot be read cannot be answered in MM4 either.
                inc(&self.shared.stats.mm4_refused);
                self.shared.count_drop(DropReason::Mm4Invalid);
                return self.smtp_answer(conn, refusal_reply(e.request_status()));
            }
        };
        let rcpt = m
            .originator_system
            .clone()
            .or_else(|| m.sender.clone())
            .unwrap_or_else(|| format!("system@{}", mms.domain));
        let request = matches!(
            m.kind,
            MessageType::ForwardReq | MessageType::DeliveryReportReq | MessageType::ReadReplyReportReq
        );
        if request && self.mm4_queued(system) >= MM4_OUT_PER_SYSTEM {
            // A request may need an MM4 answer, and this centre's answers are backed up.
            self.shared.count_drop(DropReason::Mm4OutFull);
            return self
                .smtp_answer(conn, Reply::new(451, b"4.3.2 Answers to this MMS centre are backed up, try again"));
        }
        match m.kind {
            MessageType::ForwardReq => self.mm4_forward(unix, conn, system, m, rcpt, &provision),
            // A refusal of an MMS iwf forwarded is its failure, for its sender.
            MessageType::ForwardRes if m.request_status.is_some_and(|s| s != RequestStatus::Ok) => {
                inc(&self.shared.stats.mm4_responses);
                let from = ReportFrom::Local { conn, rcpt };
                self.mms_report_in(from, system, m, Some(ReceiptState::Failed), data);
            }
            // Responses to what iwf sent: taken.
            MessageType::ForwardRes | MessageType::DeliveryReportRes | MessageType::ReadReplyReportRes => {
                inc(&self.shared.stats.mm4_responses);
                self.smtp_answer(conn, Reply::new(250, b"2.0.0 Ok"));
            }
            MessageType::DeliveryReportReq | MessageType::ReadReplyReportReq => {
                let state = report_state_of(&m);
                self.mms_report_in(ReportFrom::Local { conn, rcpt }, system, m, state, data);
            }
        }
    }

    /// An `MM4_forward.REQ`: one recipient, a converged user of iwf's domain.
    fn mm4_forward(&mut self, unix: u64, conn: ConnRef, system: u16, m: Mm4, rcpt: String, provision: &Provision) {
        let st = self.shared.system(system);
        if let Some(st) = &st {
            inc(&st.messages_in);
        }
        let refuse = |f: &mut Flows, m: Mm4, rcpt: String, status: RequestStatus| {
            inc(&f.shared.stats.mm4_refused);
            if let Some(st) = &st {
                inc(&st.messages_refused);
            }
            let (reply, res) = forward_answer(ForwardOutcome::Refused(status), m.ack_request);
            f.smtp_answer(conn, reply);
            if let Some(s) = res {
                f.mm4_response(system, &m, rcpt, s);
            }
        };
        let to = match m.to.as_slice() {
            [one] if one.domain.eq_ignore_ascii_case(&provision.converged.legacy_domain) => one.clone(),
            // Several recipients, or one of another relay: iwf relays for its own users,
            // one per message.
            _ => return refuse(self, m, rcpt, RequestStatus::ErrorSendingAddressUnresolved),
        };
        let mut uri = [0u8; 512];
        let recipient = to
            .number()
            .and_then(|n| crate::interwork::address::Msisdn::parse(n).ok())
            .and_then(|n| provision.msisdns.write_uri(&n, &mut uri).ok())
            .and_then(|n| core::str::from_utf8(uri.get(..n)?).ok());
        let Some(recipient) = recipient else {
            return refuse(self, m, rcpt, RequestStatus::ErrorSendingAddressUnresolved);
        };
        let side = converged_side(&self.config, provision, "TCP");
        // The top octet names this worker: the MMS's reports are made here, where its
        // origin is kept ([`mms_worker`]).
        self.tag_seq = self.tag_seq.wrapping_add(1);
        let sequence = (u32::from(self.config.core) << 24) | (self.tag_seq & 0x00FF_FFFF);
        let max = self.config.max_sip_message;
        let converted = mm4_to_sip(&m, &to, system, &side, Some(recipient), &provision.keys, sequence, unix, max);
        let c = match converted {
            Ok(c) => c,
            Err(e) => return refuse(self, m, rcpt, e.request_status()),
        };
        let origin = (m.delivery_report || m.read_reply).then(|| {
            let owed = if m.delivery_report { MmsOrigin::DELIVERY } else { 0 }
                | if m.read_reply { MmsOrigin::READ } else { 0 };
            MmsOrigin {
                system: LegacySystemId(system),
                deadline: unix.saturating_add(provision.converged.message_validity_s),
                owed,
                message_id: m.message_id.clone().unwrap_or_default(),
                sender: m.from.as_ref().map(MmsAddress::to_string).unwrap_or_default(),
                recipient: to.to_string(),
                report_to: rcpt.clone(),
            }
        });
        let origin_key = MmsOrigin::key_of(c.fields.minutes, c.fields.sequence);
        let crowded = self.mms.origins.len() >= MMS_ORIGINS_MAX || self.mms.origins.contains_key(&origin_key);
        if origin.is_some() && (crowded || self.waiters_full(1)) {
            self.shared.count_drop(DropReason::MmsOriginsFull);
            self.recycle(c.bytes);
            return self.mms_retry(Some(conn), system, b"4.3.2 Too many MMS await their reports, try again");
        }
        if self.records_on() {
            let tag = provision.keys.encode(&c.fields);
            let from = m.from.as_ref().map(MmsAddress::to_string).unwrap_or_default();
            let e = records::Event::new(records::Kind::MmsIn, system)
                .id(tag.as_ref().map_or(&b""[..], |t| t.as_bytes()))
                .smsc_id(m.message_id.as_deref().unwrap_or("").as_bytes())
                .parties(from.as_bytes(), to.to_string().as_bytes());
            self.record(e);
        }
        inc(&self.shared.stats.sip_messages_sent);
        let res = m.ack_request.then(|| Box::new(ResFor { system, forward: m, rcpt }));
        let kept = origin.is_some().then_some(origin_key);
        let key = self.outgoing.insert(Outgoing::Mms { conn: Some(conn), system, res, origin: kept });
        self.mms_deadlines.push_back((unix.saturating_add(MMS_FINAL_S), key));
        let req = SipRequest { token: self.token(key), bytes: c.bytes, dest: self.config.next_hop };
        match origin {
            Some(o) => self.keep_origin(origin_key, o, key, req),
            None => self.sip_requests_tcp.push_back(req),
        }
    }

    /// The final response `status` to the MESSAGE an MMS became: the SMTP reply on
    /// `conn`, and the `.RES` when one was asked for; the MMS's origin (`origin`) goes
    /// unless it was relayed (a resend gets a new tag, hence a new origin).
    pub(super) fn mm4_final(
        &mut self,
        conn: Option<ConnRef>,
        system: u16,
        res: Option<Box<ResFor>>,
        status: u16,
        origin: Option<u64>,
    ) {
        let outcome = sip_final_to_outcome(status);
        if let (Some(key), false) = (origin, outcome == ForwardOutcome::Relayed) {
            self.forget_origin(key, true);
        }
        if let Some(st) = self.shared.system(system) {
            inc(if outcome == ForwardOutcome::Relayed { &st.messages_accepted } else { &st.messages_refused });
        }
        inc(match outcome {
            ForwardOutcome::Relayed => &self.shared.stats.mm4_relayed,
            ForwardOutcome::Retry => &self.shared.stats.mm4_retry,
            ForwardOutcome::Refused(_) => &self.shared.stats.mm4_refused,
        });
        let (reply, res_status) = forward_answer(outcome, res.is_some());
        if let Some(conn) = conn {
            self.smtp_answer(conn, reply);
        }
        if let (Some(r), Some(s)) = (res, res_status) {
            self.mm4_response(r.system, &r.forward, r.rcpt, s);
        }
    }

    /// MMS forwards whose final response is overdue (see [`MMS_FINAL_S`]): answered 451,
    /// with no `.RES` (the MMS centre sends them again). Runs once a second.
    pub(super) fn expire_mms(&mut self, unix: u64) {
        while let Some(&(deadline, key)) = self.mms_deadlines.front() {
            if deadline > unix {
                break;
            }
            self.mms_deadlines.pop_front();
            if !matches!(self.outgoing.get_mut(key), Some(Outgoing::Mms { .. })) {
                continue; // answered already (its slot may serve another request now)
            }
            if let Some(Outgoing::Mms { conn, system, origin, .. }) = self.outgoing.remove(key) {
                if let Some(k) = origin {
                    self.forget_origin(k, true);
                }
                self.mms_retry(conn, system, b"4.4.1 No answer from the converged core, try again");
            }
        }
    }

    /// An MMS of `system` not relayed for now: 451 `text` on `conn` (the MMS centre
    /// sends it again), no `.RES`.
    fn mms_retry(&mut self, conn: Option<ConnRef>, system: u16, text: &'static [u8]) {
        inc(&self.shared.stats.mm4_retry);
        if let Some(st) = self.shared.system(system) {
            inc(&st.messages_refused);
        }
        if let Some(conn) = conn {
            self.smtp_answer(conn, Reply::new(451, text));
        }
    }

    /// Keeps `origin` under `key` and sends the MMS's MESSAGE `req` (of outgoing
    /// `outgoing`): with a store, once the origin is durable.
    fn keep_origin(&mut self, key: u64, origin: MmsOrigin, outgoing: u64, req: SipRequest) {
        self.mms.origin_deadlines.push_back((origin.deadline, key));
        let Some(tx) = self.shared.store.clone() else {
            self.mms.origins.insert(key, origin);
            self.sip_requests_tcp.push_back(req);
            return;
        };
        let w = self.new_waiter(Requester::MmsOrigin, 1);
        let op = store::StoreOp::PutMmsOrigin { key, origin: Box::new(origin.clone()), token: self.token(w) };
        self.mms.origins.insert(key, origin);
        self.mms.unsent.insert(w, (outgoing, key, req));
        if tx.send(op).is_err() {
            self.waiters.remove(w);
            self.origin_stored(w, false);
        }
    }

    /// The origin write of waiter `w` is durable (`stored`) or failed: its MESSAGE
    /// goes, or its MMS is answered 451 (the centre sends it again).
    pub(super) fn origin_stored(&mut self, w: u64, stored: bool) {
        let Some((outgoing, key, req)) = self.mms.unsent.remove(&w) else { return };
        // Still this MMS's: its slot serves another request once its deadline answered it.
        let ours = matches!(self.outgoing.get_mut(outgoing), Some(Outgoing::Mms { origin: Some(k), .. }) if *k == key);
        if stored && ours {
            self.sip_requests_tcp.push_back(req);
            return;
        }
        // Not durable, or the forward was answered meanwhile (its deadline passed).
        self.recycle(req.bytes);
        self.forget_origin(key, stored);
        if !ours {
            return;
        }
        if let Some(Outgoing::Mms { conn, system, .. }) = self.outgoing.remove(outgoing) {
            self.mms_retry(conn, system, b"4.3.0 Could not be stored, try again");
        }
    }

    /// Origin `key` owes no more reports; `stored` when the store holds it.
    fn forget_origin(&mut self, key: u64, stored: bool) {
        if self.mms.origins.remove(&key).is_none() || !stored {
            return;
        }
        if let Some(tx) = &self.shared.store {
            let _ = tx.send(store::StoreOp::RemoveMmsOrigin { key });
        }
    }

    /// After a restart: the MMS origins still valid come back from the store, each to
    /// the worker its tag names. Returns how many this worker took.
    pub fn restore_mms_origins(&mut self, origins: &[(u64, MmsOrigin)]) -> usize {
        let cores = self.shared.jobs.len();
        let mut n = 0;
        for (key, o) in origins {
            if mms_worker(*key as u32, cores) == usize::from(self.config.core) {
                self.mms.origin_deadlines.push_back((o.deadline, *key));
                self.mms.origins.insert(*key, o.clone());
                n += 1;
            }
        }
        let mut deadlines: Vec<_> = self.mms.origin_deadlines.drain(..).collect();
        deadlines.sort_unstable();
        self.mms.origin_deadlines.extend(deadlines);
        n
    }

    /// A verified notification about an MMS from MMS centre `system` (`raw`, on
    /// `txn`): its report to the centre, made on the worker that keeps the MMS's origin.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mms_notification(
        &mut self,
        unix: u64,
        txn: SipTxn,
        raw: &[u8],
        system: u16,
        notification: Notification,
        fields: TagFields,
        message_id: &[u8; TAG_LEN],
    ) {
        let owner = mms_worker(fields.sequence, self.shared.jobs.len());
        if owner != usize::from(self.config.core) && !matches!(txn, SipTxn::Remote { .. }) {
            if !self.hand_to(owner as CoreId, txn, raw) {
                self.answer_with(SipAnswer {
                    txn,
                    status: 503,
                    reason: "Service Unavailable (core hand-over full)",
                    retry_after: Some(1),
                });
            }
            return;
        }
        inc(&self.shared.stats.imdns_in);
        if self.records_on() {
            let e = records::Event::new(records::Kind::ImdnIn, system).id(message_id);
            self.record(match crate::interwork::legacy_to_converged::notification_state(notification) {
                Some(s) => e.state(s),
                None => e,
            });
        }
        // Which report, which of the MMS's requests it needs, which owed reports it
        // settles (a deferral settles none; a failure the read reply too: none comes).
        let Some(report) = report_for(notification) else {
            inc(&self.shared.stats.receipts_not_requested);
            return self.answer(txn, 200, "OK");
        };
        let (asked, settles) = match report {
            MmsReport::Delivery(MmStatus::Retrieved | MmStatus::Forwarded) => {
                (ReceiptRequest::DELIVERY, MmsOrigin::DELIVERY)
            }
            MmsReport::Delivery(MmStatus::Deferred) => (ReceiptRequest::FAILURE, 0),
            MmsReport::Delivery(_) => (ReceiptRequest::FAILURE, MmsOrigin::DELIVERY | MmsOrigin::READ),
            MmsReport::ReadReply(_) => (ReceiptRequest::USER_ACK, MmsOrigin::READ),
        };
        if !fields.receipts.contains(asked) {
            inc(&self.shared.stats.receipts_not_requested);
            return self.answer(txn, 200, "OK");
        }
        let key = MmsOrigin::key_of(fields.minutes, fields.sequence);
        if self.mms.origins.get(&key).is_none_or(|o| o.system.0 != system) {
            // Its validity ended (or its centre was provisioned anew): nothing to report to.
            inc(&self.shared.stats.mm4_reports_unowed);
            return self.answer(txn, 200, "OK (no report is owed for this message)");
        }
        let display = matches!(report, MmsReport::ReadReply(_));
        let Some(seen) = self.admit_notification(unix, txn, message_id, display) else { return };
        let refused = if !self.config.mm4_clients.contains(&system) {
            Some((DropReason::Mm4NoClient, 500, "Server Internal Error (no SMTP client reaches the MMS centre)"))
        } else if self.mm4_queued(system) >= MM4_OUT_PER_SYSTEM {
            Some((DropReason::Mm4OutFull, 503, "Service Unavailable (reports to the MMS centre are backed up)"))
        } else {
            None
        };
        if let Some((why, status, reason)) = refused {
            self.shared.count_drop(why);
            self.shared.replay.forget(seen);
            return self.answer_with(SipAnswer { txn, status, reason, retry_after: Some(5) });
        }
        let Some(out) = self.report_out(key, report) else {
            inc(&self.shared.stats.mm4_reports_unowed);
            self.shared.replay.forget(seen);
            return self.answer(txn, 200, "OK (no report is owed for this message)");
        };
        let pending = PendingMm4::Report(PendingReport { txn, seen, system, key, settles });
        let (token, expires_ms) = self.mm4_pending(unix, pending);
        self.mm4_out.push_back(Mm4Out { token: Some(token), expires_ms: Some(expires_ms), ..out });
    }

    /// The MM4 report `report` about the MMS of origin `key`, to its centre.
    fn report_out(&mut self, key: u64, report: MmsReport) -> Option<Mm4Out> {
        let o = self.mms.origins.get(&key)?;
        let (original_sender, recipient) = (MmsAddress::parse(&o.sender)?, MmsAddress::parse(&o.recipient)?);
        let (system, rcpt, message_id) = (o.system.0, o.report_to.clone(), o.message_id.clone());
        let ids = self.mm4_ids(self.unix);
        let e = ids.envelope();
        let r = mm4::ReportOf {
            message_id: &message_id,
            original_sender: &original_sender,
            recipient: &recipient,
            ack_request: true,
        };
        let data = match report {
            MmsReport::Delivery(status) => mm4::delivery_report(&e, &r, status, None),
            MmsReport::ReadReply(status) => mm4::read_reply_report(&e, &r, status),
        };
        Some(Mm4Out { system, from: ids.sender.clone(), rcpt, data, attempts: 0, token: None, expires_ms: None })
    }

    /// New ids for MM4 iwf sends at `unix`.
    pub(super) fn mm4_ids(&mut self, unix: u64) -> Mm4Ids {
        let provision = self.shared.provision.load();
        let domain = &provision.converged.legacy_domain;
        self.mm4_seq = self.mm4_seq.wrapping_add(1);
        Mm4Ids {
            id: format!("{}.{unix}.{}@{domain}", self.config.core, self.mm4_seq),
            sender: format!("system@{domain}"),
            date: i64::try_from(unix).unwrap_or(0),
        }
    }

    /// A token for MM4 whose fate `p` waits for, answered as failed at the deadline;
    /// and the worker's milliseconds after which the MM4 is not sent.
    pub(super) fn mm4_pending(&mut self, unix: u64, p: PendingMm4) -> (u64, u64) {
        self.mms.next_token = self.mms.next_token.wrapping_add(1);
        let token = self.mms.next_token;
        self.mms.pending.insert(token, p);
        self.mms.pending_deadlines.push_back((unix.saturating_add(MM4_REPORT_S), token));
        (token, self.timers.last.saturating_add(MM4_REPORT_S * 1000))
    }

    /// iwf's SMTP client is done with MM4 message `token`: a report the centre took
    /// answers its IMDN 200 and settles what it reports, one it did not 503; a
    /// converged user's MMS likewise answers its MESSAGE.
    pub(super) fn mm4_done(&mut self, token: u64, delivered: bool) {
        // Gone when its deadline answered already.
        let p = match self.mms.pending.remove(&token) {
            Some(PendingMm4::Report(p)) => p,
            Some(PendingMm4::Forward { waiter, system, message }) => {
                let failure = (503, "Service Unavailable (the MMS centre did not take the message)");
                return self.forward_done(waiter, system, message, if delivered { Ok(()) } else { Err(failure) });
            }
            None => return,
        };
        if !delivered {
            return self.report_failed(p);
        }
        self.shared.replay.relayed(p.seen);
        inc(&self.shared.stats.mm4_reports_sent);
        if let Some(st) = self.shared.system(p.system) {
            inc(&st.receipts_delivered);
        }
        if let Some(o) = self.mms.origins.get_mut(&p.key) {
            o.owed &= !p.settles;
            if o.owed == 0 {
                self.forget_origin(p.key, true);
            }
        }
        self.answer(p.txn, 200, "OK");
    }

    pub(super) fn report_failed(&mut self, p: PendingReport) {
        inc(&self.shared.stats.mm4_reports_failed);
        self.shared.replay.forget(p.seen);
        self.answer_with(SipAnswer {
            txn: p.txn,
            status: 503,
            reason: "Service Unavailable (the MMS centre did not take the report)",
            retry_after: Some(30),
        });
    }

    /// Reports whose centre did not take them in time ([`MM4_REPORT_S`]), and origins
    /// past their validity. Runs once a second.
    pub(super) fn expire_mm4_reports(&mut self, unix: u64) {
        while let Some(&(deadline, token)) = self.mms.pending_deadlines.front() {
            if deadline > unix {
                break;
            }
            self.mms.pending_deadlines.pop_front();
            self.mm4_done(token, false);
        }
        while let Some(&(deadline, key)) = self.mms.origin_deadlines.front() {
            if deadline > unix {
                break;
            }
            self.mms.origin_deadlines.pop_front();
            // The store sweeps its copy by the same deadline.
            if self.mms.origins.get(&key).is_some_and(|o| o.deadline <= unix) {
                self.mms.origins.remove(&key);
            }
        }
    }

    /// MM4 messages waiting for MMS centre `system`'s client.
    pub(super) fn mm4_queued(&self, system: u16) -> usize {
        self.mm4_out.iter().filter(|o| o.system == system).count()
    }

    /// Queues the `.RES` answering `req` for MMS centre `system` (dropped and counted
    /// when no SMTP client of this worker reaches it: its port has none).
    pub(super) fn mm4_response(&mut self, system: u16, req: &Mm4, rcpt: String, status: RequestStatus) {
        if !self.config.mm4_clients.contains(&system) {
            self.shared.count_drop(DropReason::Mm4NoClient);
            return;
        }
        let ids = self.mm4_ids(self.unix);
        let e = ids.envelope();
        let data = match req.kind {
            MessageType::ForwardReq => mm4::forward_res(&e, req, status, None),
            _ => mm4::report_res(&e, req, status),
        };
        let from = ids.sender.clone();
        self.mm4_out.push_back(Mm4Out { system, from, rcpt, data, attempts: 0, token: None, expires_ms: None });
    }

    pub(super) fn smtp_answer(&mut self, conn: ConnRef, reply: Reply<'static>) {
        self.smtp_answers.push(conn.port, (conn, reply));
    }

    /// The next SMTP reply for a connection of `port`.
    pub fn poll_smtp_answer(&mut self, port: u8) -> Option<(ConnRef, Reply<'static>)> {
        self.smtp_answers.pop(port)
    }

    /// Whether an SMTP reply waits for a connection of `port`.
    pub fn has_smtp_answer(&self, port: u8) -> bool {
        self.smtp_answers.has(port)
    }

    /// The oldest MM4 message for an MMS centre the caller's clients reach (`takes`
    /// says which systems they are).
    pub fn poll_mm4_out(&mut self, takes: impl Fn(u16) -> bool) -> Option<Mm4Out> {
        let i = self.mm4_out.iter().position(|o| takes(o.system))?;
        self.mm4_out.remove(i)
    }

    /// Whether an MM4 message waits for an MMS centre the caller's clients reach.
    pub fn has_mm4_out(&self, takes: impl Fn(u16) -> bool) -> bool {
        self.mm4_out.iter().any(|o| takes(o.system))
    }
}
