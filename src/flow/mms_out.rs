//! Converged → MMS: a converged user's MESSAGE for a user of an MMS centre becomes the
//! `MM4_forward.REQ` iwf's SMTP client delivers to that centre. Its correlation is
//! written first, with iwf's own `X-Mms-Message-ID` bound as the message's id (and,
//! with a store, durable before the forward goes); the MESSAGE is answered once the
//! centre took the forward (SMTP 250).
//!
//! The centre's delivery and read-reply reports, and a `.RES` refusing the forward,
//! come back to iwf's SMTP server. They are matched by that id on the worker that sent
//! the forward (the id names it: one landing on another worker is handed over) and
//! become the IMDNs the sender asked for, the way an SMSC receipt does; the centre
//! hears 250 (and its `.RES`) once the IMDN was taken.
use super::mms::{mms_worker_of_id, PendingMm4, ReportAck};
use super::*;
use crate::interwork::mms::sip_to_mms;
use crate::interwork::state::ReceiptState;
use crate::interwork::IdCanonicalisation;
use crate::wire::mm4::{self, MessageType, Mm4, RequestStatus};
use crate::wire::smtp::Reply;

/// The connection reports handed from another worker are settled under (no SMTP
/// connection of this worker).
const HANDED: ConnRef = ConnRef::new(u8::MAX, u16::MAX);

/// The first number a report's outcome is settled under: above every SMPP sequence
/// number (at most 0x7FFF_FFFF), so that [`Flows::respond`] never mistakes one for the
/// other.
const FIRST_ACK: u32 = 0x8000_0000;

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
    /// Not now (the IMDN failed): 451, the centre sends it again.
    Retry,
}

impl Flows {
    /// A converged user's MESSAGE for a user of MMS centre `system`.
    pub(super) fn converged_mms(
        &mut self,
        unix: u64,
        txn: SipTxn,
        msg: &Message<'_, '_>,
        content: &SipContent<'_, '_>,
        system: u16,
        provision: &Provision,
    ) {
        let Some(mmsc) = provision.system(system).and_then(|l| l.mms.as_ref()) else {
            return self.refuse_converged(txn, 500, "Server Internal Error (route to an unknown system)");
        };
        let to = msg
            .request_line()
            .and_then(|r| r.parse_uri().ok())
            .and_then(|u| crate::interwork::legacy_to_converged::uri_msisdn(u.as_str().as_bytes()).ok());
        let Some(to) = to else {
            return self.refuse_converged(txn, 404, "Not Found (no E.164 number in the Request-URI)");
        };
        let t = match sip_to_mms(msg, content, &to, &provision.converged.legacy_domain, &mmsc.domain) {
            Ok(t) => t,
            Err(e) => {
                let (status, reason) = e.sip_status();
                return self.refuse_converged(txn, status, reason);
            }
        };
        if !self.config.mm4_clients.contains(&system) {
            self.shared.count_drop(DropReason::Mm4NoClient);
            return self.refuse_converged(txn, 500, "Server Internal Error (no SMTP client reaches the MMS centre)");
        }
        if self.mm4_queued(system) >= super::mms::MM4_OUT_PER_SYSTEM || self.waiters_full(2) {
            let reason = "Service Unavailable (the MMS centre's queue is full)";
            return self.refuse_converged_later(txn, DropReason::Mm4OutFull, reason, 5);
        }
        let (id, sender) = self.mm4_ids();
        let Ok(canonical) = canonical_id(id.as_bytes(), IdCanonicalisation::Exact, IdOrigin::SubmitResp) else {
            return self.refuse_converged(txn, 500, "Server Internal Error (message id)");
        };
        // The correlation (when an IMDN can be written at all), its id bound at once:
        // iwf chose it, and a report may come back before the forward's 250 is seen.
        let first = self.corr_seq;
        self.corr_seq = first.wrapping_add(1).max(1);
        let Ok(durable) = self.correlate(unix, txn, system, first, 1, t.stored, provision) else { return };
        let mut part = 1;
        if durable.is_some() {
            match self.correlation.resp(LegacySystemId(system), first, &canonical, unix) {
                Ok(o) => part = o.part,
                Err(_) => return self.refuse_converged(txn, 500, "Server Internal Error (correlation)"),
            }
        }
        let e = mm4::Envelope { transaction_id: &id, sender: &sender, rfc_message_id: &id, date: unix as i64 };
        let to_addr = [t.mms.to.clone()];
        let forward = mm4::Forward {
            message_id: &id,
            from: &t.mms.from,
            to: &to_addr,
            subject: None,
            originator_system: &sender,
            delivery_report: t.mms.delivery_report,
            read_reply: t.mms.read_reply,
            ack_request: true,
            parts: &t.mms.parts,
        };
        let data = mm4::forward_req(&e, &forward);
        inc(&self.shared.stats.mm4_forwards_out);
        let waiter = self.waiters.insert(Waiter {
            from: Requester::Sip(txn),
            remaining: 1,
            refused: None,
            answer: None,
            replay: None,
        });
        let message = durable.as_ref().map(|(m, _)| *m);
        let pending = PendingMm4::Forward { waiter: self.token(waiter), system, message };
        let token = self.mm4_pending(unix, pending);
        let out = Mm4Out { system, from: sender, rcpt: t.mms.to.to_string(), data, attempts: 0, token: Some(token) };
        match (durable, self.shared.store.clone()) {
            (Some((message, record)), Some(tx)) => {
                let key = self.store_key();
                self.store_keys.insert(message, key);
                let w = self.waiters.insert(Waiter {
                    from: Requester::MmsForward,
                    remaining: 2,
                    refused: None,
                    answer: None,
                    replay: None,
                });
                let token = self.token(w);
                self.mms.unsent_forwards.insert(w, out);
                let put = store::StoreOp::PutCorrelation { key, record: Box::new(record), token };
                let bind = store::StoreOp::BindId { system, id: canonical, key, part, token };
                if tx.send(put).is_err() || tx.send(bind).is_err() {
                    self.waiters.remove(w);
                    self.forward_stored(w, false);
                }
            }
            _ => self.mm4_out.push_back(out),
        }
    }

    /// The correlation of the forward held under waiter `w` is durable (`stored`), or
    /// could not be written: the forward goes, or its MESSAGE hears 500.
    pub(super) fn forward_stored(&mut self, w: u64, stored: bool) {
        let Some(out) = self.mms.unsent_forwards.remove(&w) else { return };
        if stored {
            return self.mm4_out.push_back(out);
        }
        if let Some(PendingMm4::Forward { waiter, system, message }) =
            out.token.and_then(|t| self.mms.pending.remove(&t))
        {
            if let Some(w) = self.waiters.get_mut(waiter & 0xFFFF_FFFF_FFFF) {
                w.answer = Some((500, "Server Internal Error (store write failed)"));
            }
            self.forward_done(waiter, system, message, false);
        }
    }

    /// The forward whose MESSAGE waits under `waiter` was taken by its centre
    /// (`delivered`), or not: 200, or 503 and its correlation goes.
    pub(super) fn forward_done(
        &mut self,
        waiter: u64,
        system: u16,
        message: Option<correlation::MessageRef>,
        delivered: bool,
    ) {
        if delivered {
            if let Some(st) = self.shared.system(system) {
                inc(&st.messages_out);
            }
            return self.finish(waiter, Outcome::Delivered);
        }
        inc(&self.shared.stats.mm4_forwards_failed);
        if let Some(m) = message {
            self.remove_durable(m);
            let _ = self.correlation.remove(m);
        }
        self.finish(waiter, Outcome::Answered(503, "Service Unavailable (the MMS centre did not take the message)"));
    }

    /// A report from MMS centre `system` about an MMS iwf forwarded (`state`: what it
    /// reports; `None` for one no IMDN exists for), as read from `data`.
    pub(super) fn mms_report_in(
        &mut self,
        from: ReportFrom,
        system: u16,
        report: Mm4,
        state: Option<ReceiptState>,
        data: &[u8],
    ) {
        inc(&self.shared.stats.mm4_reports_in);
        let id = report.message_id.clone().unwrap_or_default();
        let owner = mms_worker_of_id(&id, self.shared.jobs.len());
        if let (ReportFrom::Local { conn, rcpt }, Some(owner)) = (&from, owner) {
            if owner != usize::from(self.config.core) {
                let ack = ReportAck::Local { conn: *conn, system, report: Box::new(report), rcpt: rcpt.clone() };
                return self.hand_report(owner as CoreId, ack, system, data);
            }
        }
        let id = canonical_id(id.as_bytes(), IdCanonicalisation::Exact, IdOrigin::Receipt)
            .ok()
            .filter(|id| self.correlation.message_of(LegacySystemId(system), id).is_some());
        let (Some(id), Some(state)) = (id, state) else {
            let outcome = if id.is_some() { ReportOutcome::Taken } else { ReportOutcome::NotFound };
            return self.report_settled(Self::ack_of(from, system, report), outcome);
        };
        self.mms.next_ack = self.mms.next_ack.wrapping_add(1) | FIRST_ACK;
        let seq = self.mms.next_ack;
        let conn = match &from {
            ReportFrom::Local { conn, .. } => *conn,
            ReportFrom::Remote { .. } => HANDED,
        };
        self.mms.report_acks.insert((conn, seq), Self::ack_of(from, system, report));
        let provision = self.shared.provision.load_full();
        let r = HeldReceipt { conn, seq, system, id, alt: None, state, parked: None };
        self.apply_receipt(self.unix, r, &provision);
    }

    fn ack_of(from: ReportFrom, system: u16, report: Mm4) -> ReportAck {
        match from {
            ReportFrom::Local { conn, rcpt } => ReportAck::Local { conn, system, report: Box::new(report), rcpt },
            ReportFrom::Remote { token } => ReportAck::Remote { token },
        }
    }

    /// Hands a report to worker `core`, which keeps its MMS's correlation; `ack` is
    /// answered when it tells how the report ended.
    fn hand_report(&mut self, core: CoreId, ack: ReportAck, system: u16, data: &[u8]) {
        let w = self.waiters.insert(Waiter {
            from: Requester::Mm4Report,
            remaining: 1,
            refused: None,
            answer: None,
            replay: None,
        });
        let job = Job { token: self.token(w), request: data.to_vec(), mm4_from: Some(system) };
        if matches!(self.shared.jobs.get(usize::from(core)).map(|q| q.push(job)), Some(Ok(()))) {
            self.mms.handed.insert(w, ack);
        } else {
            self.waiters.remove(w);
            self.report_settled(ack, ReportOutcome::Retry);
        }
    }

    /// A report handed here from another worker (MM4 `data` from MMS centre `system`).
    pub(super) fn handed_report(&mut self, token: u64, system: u16, data: &[u8]) {
        let Ok(m) = Mm4::parse(data) else {
            return self.finish(token, Outcome::Answered(503, "Service Unavailable (hand-over)"));
        };
        let state = match m.kind {
            MessageType::ForwardRes => Some(ReceiptState::Failed),
            _ => crate::interwork::mms::report_of(&m).and_then(crate::interwork::mms::report_state),
        };
        self.mms_report_in(ReportFrom::Remote { token }, system, m, state, data);
    }

    /// The worker a report was handed to answered (its waiter `w`, with SIP-style
    /// `status`): the centre hears it.
    pub(super) fn report_handed_back(&mut self, w: u64, status: u16) {
        let Some(ack) = self.mms.handed.remove(&w) else { return };
        let outcome = match status {
            200..=299 => ReportOutcome::Taken,
            404 => ReportOutcome::NotFound,
            _ => ReportOutcome::Retry,
        };
        self.report_settled(ack, outcome);
    }

    /// The receipt a report became was settled under (`conn`, `seq`) with `status`
    /// ([`Flows::respond`] hands it here): whether it was one.
    pub(super) fn report_acked(&mut self, conn: ConnRef, seq: u32, status: CommandStatus) -> bool {
        let Some(ack) = self.mms.report_acks.remove(&(conn, seq)) else { return false };
        let outcome = if status == CommandStatus::ESME_ROK { ReportOutcome::Taken } else { ReportOutcome::Retry };
        self.report_settled(ack, outcome);
        true
    }

    /// Tells the centre (or the worker that handed the report here) how it ended.
    fn report_settled(&mut self, ack: ReportAck, outcome: ReportOutcome) {
        let (conn, system, report, rcpt) = match ack {
            ReportAck::Local { conn, system, report, rcpt } => (conn, system, report, rcpt),
            ReportAck::Remote { token } => {
                let o = match outcome {
                    ReportOutcome::Taken => Outcome::Delivered,
                    ReportOutcome::NotFound => Outcome::Answered(404, "Not Found (no such message)"),
                    ReportOutcome::Retry => Outcome::Answered(503, "Service Unavailable (try again)"),
                };
                return self.finish(token, o);
            }
        };
        // A response (a .RES refusing a forward) gets no .RES of its own.
        let answers = report.ack_request && report.kind != MessageType::ForwardRes;
        match outcome {
            ReportOutcome::Taken => {
                self.smtp_answer(conn, Reply::new(250, b"2.0.0 Ok"));
                if answers {
                    self.mm4_response(system, &report, rcpt, RequestStatus::Ok);
                }
            }
            ReportOutcome::NotFound => {
                inc(&self.shared.stats.mm4_refused);
                if answers {
                    self.smtp_answer(conn, Reply::new(250, b"2.0.0 Answered in the .RES"));
                    self.mm4_response(system, &report, rcpt, RequestStatus::ErrorMessageNotFound);
                } else {
                    self.smtp_answer(conn, Reply::new(554, b"5.6.0 No such message"));
                }
            }
            ReportOutcome::Retry => self.smtp_answer(conn, Reply::new(451, b"4.3.0 Not relayed now, try again")),
        }
    }
}
