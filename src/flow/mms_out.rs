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
use super::mms::{mms_worker_of_id, report_state_of, PendingMm4, ReportAck, ReportFrom, ReportOutcome};
use super::*;
use crate::interwork::mms::{refusal_reply, sip_to_mms};
use crate::interwork::state::ReceiptState;
use crate::interwork::IdCanonicalisation;
use crate::wire::mm4::{self, MessageType, Mm4, RequestStatus};
use crate::wire::smtp::Reply;

/// The connection reports handed from another worker are settled under: no SMTP
/// connection of this worker (no port has index 255).
const HANDED: ConnRef = ConnRef::new(u8::MAX, u16::MAX);

/// The first number a report's outcome is settled under. The (connection, number)
/// pairs are an SMTP connection's (or [`HANDED`]), never an SMPP session's, and
/// [`Flows::closed`] drops a connection's; the numbers start high all the same.
const FIRST_ACK: u32 = 0x8000_0000;

/// How the failure of a report's IMDN (its receipt settled with `status`) is told to
/// the MMS centre: for now (it sends the report again) or for good.
fn report_outcome_of(status: CommandStatus) -> ReportOutcome {
    match status {
        CommandStatus::ESME_ROK => ReportOutcome::Taken,
        CommandStatus::ESME_RINVDSTADR => ReportOutcome::Refused(RequestStatus::ErrorSendingAddressUnresolved),
        CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN => {
            ReportOutcome::Refused(RequestStatus::ErrorServiceDenied)
        }
        CommandStatus::ESME_RINVMSGLEN => ReportOutcome::Refused(RequestStatus::ErrorContentNotAccepted),
        _ => ReportOutcome::Retry,
    }
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
        let ids = self.mm4_ids(unix);
        let Ok(canonical) = canonical_id(ids.id.as_bytes(), IdCanonicalisation::Exact, IdOrigin::SubmitResp) else {
            return self.refuse_converged(txn, 500, "Server Internal Error (message id)");
        };
        // The correlation (when an IMDN can be written at all), its id bound at once:
        // iwf chose it, and a report may come back before the forward's 250 is seen.
        let first = self.corr_seq;
        self.corr_seq = first.wrapping_add(1).max(1);
        let Ok(durable) = self.correlate(unix, txn, system, first, 1, t.stored, provision) else { return };
        let mut part = 1;
        if let Some((message, _)) = &durable {
            match self.correlation.resp(LegacySystemId(system), first, &canonical, unix) {
                Ok(o) => part = o.part,
                Err(_) => {
                    let _ = self.correlation.remove(*message);
                    return self.refuse_converged(txn, 500, "Server Internal Error (correlation)");
                }
            }
        }
        let to_addr = [t.mms.to.clone()];
        let forward = mm4::Forward {
            message_id: &ids.id,
            from: &t.mms.from,
            to: &to_addr,
            subject: None,
            originator_system: &ids.sender,
            delivery_report: t.mms.delivery_report,
            read_reply: t.mms.read_reply,
            ack_request: true,
            parts: &t.mms.parts,
        };
        let data = mm4::forward_req(&ids.envelope(), &forward);
        inc(&self.shared.stats.mm4_forwards_out);
        if self.records_on() {
            let e = records::Event::new(records::Kind::MmsOut, system)
                .smsc_id(ids.id.as_bytes())
                .parties(t.mms.from.to_string().as_bytes(), t.mms.to.to_string().as_bytes());
            self.record(match t.stored {
                Some(s) => e.id(s.message_id.as_bytes()),
                None => e,
            });
        }
        let waiter = self.new_waiter(Requester::Sip(txn), 1);
        let message = durable.as_ref().map(|(m, _)| *m);
        let pending = PendingMm4::Forward { waiter: self.token(waiter), system, message };
        let (token, expires_ms) = self.mm4_pending(unix, pending);
        let rcpt = t.mms.to.to_string();
        let out = Mm4Out {
            system,
            from: ids.sender,
            rcpt,
            data,
            attempts: 0,
            token: Some(token),
            expires_ms: Some(expires_ms),
        };
        match (durable, self.shared.store.clone()) {
            (Some((message, record)), Some(tx)) => {
                let key = self.store_key();
                self.store_keys.insert(message, key);
                let w = self.new_waiter(Requester::MmsForward, 2);
                let token = self.token(w);
                self.mms.unsent_forwards.insert(w, out);
                let put = store::StoreOp::Correlation(CorrelationWrite::Put { key, record: Box::new(record), token });
                let bind =
                    store::StoreOp::Correlation(CorrelationWrite::BindId { system, id: canonical, key, part, token });
                if tx.send(put).is_err() || tx.send(bind).is_err() {
                    self.waiters.remove(w);
                    self.forward_stored(w, false);
                }
            }
            _ => self.mm4_out.push_back(out),
        }
    }

    /// The correlation of the forward held under waiter `w` is durable (`stored`), or
    /// could not be written: the forward goes (unless its MESSAGE was answered
    /// meanwhile, at its deadline), or its MESSAGE hears 500.
    pub(super) fn forward_stored(&mut self, w: u64, stored: bool) {
        let Some(out) = self.mms.unsent_forwards.remove(&w) else { return };
        let Some(token) = out.token.filter(|t| self.mms.pending.contains_key(t)) else { return };
        if stored {
            return self.mm4_out.push_back(out);
        }
        if let Some(PendingMm4::Forward { waiter, system, message }) = self.mms.pending.remove(&token) {
            self.forward_done(waiter, system, message, Err((500, "Server Internal Error (store write failed)")));
        }
    }

    /// The forward whose MESSAGE waits under `waiter` was taken by its centre (`Ok`:
    /// 200), or not (the answer; its correlation goes).
    pub(super) fn forward_done(
        &mut self,
        waiter: u64,
        system: u16,
        message: Option<correlation::MessageRef>,
        result: Result<(), (u16, &'static str)>,
    ) {
        let (status, reason) = match result {
            Ok(()) => {
                if let Some(st) = self.shared.system(system) {
                    inc(&st.messages_out);
                }
                return self.finish(waiter, Outcome::Delivered);
            }
            Err(answer) => answer,
        };
        if status == 503 {
            inc(&self.shared.stats.mm4_forwards_failed);
        }
        if let Some(m) = message {
            self.remove_durable(m);
            let _ = self.correlation.remove(m);
        }
        self.finish(waiter, Outcome::Answered(status, reason));
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
        let id = report.message_id.clone().unwrap_or_default();
        let owner = mms_worker_of_id(&id, self.shared.jobs.len());
        if let (ReportFrom::Local { conn, rcpt }, Some(owner)) = (&from, owner) {
            if owner != usize::from(self.config.core) {
                let ack = ReportAck::Local { conn: *conn, system, report: Box::new(report), rcpt: rcpt.clone() };
                return self.hand_report(owner as CoreId, ack, system, data);
            }
        }
        inc(&self.shared.stats.mm4_reports_in);
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
        let w = self.new_waiter(Requester::Mm4Report, 1);
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
        let state = report_state_of(&m);
        self.mms_report_in(ReportFrom::Remote { token }, system, m, state, data);
    }

    /// The worker a report was handed to answered (its waiter `w`, with SIP-style
    /// `status`): the centre hears it.
    pub(super) fn report_handed_back(&mut self, w: u64, status: u16) {
        let Some(ack) = self.mms.handed.remove(&w) else { return };
        let outcome = match status {
            200..=299 => ReportOutcome::Taken,
            404 => ReportOutcome::NotFound,
            410 => ReportOutcome::Refused(RequestStatus::ErrorSendingAddressUnresolved),
            403 => ReportOutcome::Refused(RequestStatus::ErrorServiceDenied),
            415 => ReportOutcome::Refused(RequestStatus::ErrorContentNotAccepted),
            400 => ReportOutcome::Refused(RequestStatus::ErrorUnspecified),
            _ => ReportOutcome::Retry,
        };
        self.report_settled(ack, outcome);
    }

    /// The receipt a report became was settled under (`conn`, `seq`) with `status`
    /// ([`Flows::respond`] hands it here): whether it was one.
    pub(super) fn report_acked(&mut self, conn: ConnRef, seq: u32, status: CommandStatus) -> bool {
        let Some(ack) = self.mms.report_acks.remove(&(conn, seq)) else { return false };
        self.report_settled(ack, report_outcome_of(status));
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
                    ReportOutcome::Refused(RequestStatus::ErrorSendingAddressUnresolved) => {
                        Outcome::Answered(410, "Gone (the sender)")
                    }
                    ReportOutcome::Refused(RequestStatus::ErrorServiceDenied) => Outcome::Answered(403, "Forbidden"),
                    ReportOutcome::Refused(RequestStatus::ErrorContentNotAccepted) => {
                        Outcome::Answered(415, "Unsupported Media Type")
                    }
                    ReportOutcome::Refused(_) => Outcome::Answered(400, "Bad Request"),
                    ReportOutcome::Retry => Outcome::Answered(503, "Service Unavailable (try again)"),
                };
                return self.finish(token, o);
            }
            ReportAck::Gone => return,
        };
        // A response (a .RES refusing a forward) is taken whatever became of it: no
        // reply refuses it, no .RES answers it.
        if report.kind == MessageType::ForwardRes {
            let reply = if outcome == ReportOutcome::Retry { 451 } else { 250 };
            return self.smtp_answer(conn, Reply::new(reply, b"2.0.0 Ok"));
        }
        let status = match outcome {
            ReportOutcome::Taken => RequestStatus::Ok,
            ReportOutcome::NotFound => RequestStatus::ErrorMessageNotFound,
            ReportOutcome::Refused(s) => s,
            ReportOutcome::Retry => {
                return self.smtp_answer(conn, Reply::new(451, b"4.3.0 Not relayed now, try again"));
            }
        };
        if status != RequestStatus::Ok {
            inc(&self.shared.stats.mm4_refused);
        }
        match (report.ack_request, status) {
            (true, _) | (false, RequestStatus::Ok) => {
                let text: &'static [u8] =
                    if status == RequestStatus::Ok { b"2.0.0 Ok" } else { b"2.0.0 Answered in the .RES" };
                self.smtp_answer(conn, Reply::new(250, text));
                if report.ack_request {
                    self.mm4_response(system, &report, rcpt, status);
                }
            }
            (false, RequestStatus::ErrorMessageNotFound) => {
                self.smtp_answer(conn, Reply::new(554, b"5.6.0 No such message"))
            }
            (false, s) => self.smtp_answer(conn, refusal_reply(s)),
        }
    }
}
