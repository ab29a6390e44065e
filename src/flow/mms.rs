//! The MMS exchange in the engine: an MM4 message an MMS centre relayed to iwf's SMTP
//! server becomes a SIP MESSAGE toward the converged user, and the SMTP reply (and
//! the `MM4_forward.RES`, when one is asked for) waits for its final response.
//!
//! What goes out: SMTP replies on the connection the message came in on
//! ([`Flows::poll_smtp_answer`]), MM4 messages for an MMS centre's SMTP client
//! ([`Flows::poll_mm4_out`]), and the SIP MESSAGE over TCP (an MMS is large) with the
//! engine's other TCP requests.
use super::*;
use crate::interwork::mms::{forward_answer, mm4_to_sip, refusal_reply, sip_final_to_outcome, ForwardOutcome};
use crate::wire::mm4::{self, MessageType, Mm4, RequestStatus};
use crate::wire::smtp::Reply;

/// MM4 messages waiting for one MMS centre's SMTP client at most: beyond, a new
/// request from it is answered 451 (the centre sends it again later) rather than let
/// answers pile up.
const MM4_OUT_PER_SYSTEM: usize = 1024;

/// How long an MMS waits for its MESSAGE's final response at most, seconds: Timer F
/// (32 s) and a margin. A MESSAGE that never left (no connection to the SIP core)
/// is answered 451 then, so no SMTP session waits for ever.
const MMS_FINAL_S: u64 = 40;

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
            // Responses to what iwf sent: taken.
            MessageType::ForwardRes | MessageType::DeliveryReportRes | MessageType::ReadReplyReportRes => {
                inc(&self.shared.stats.mm4_responses);
                self.smtp_answer(conn, Reply::new(250, b"2.0.0 Ok"));
            }
            // iwf forwards no MMS to an MMS centre yet, so no report can be about one
            // of its messages.
            MessageType::DeliveryReportReq | MessageType::ReadReplyReportReq => {
                inc(&self.shared.stats.mm4_refused);
                if m.ack_request {
                    self.smtp_answer(conn, Reply::new(250, b"2.0.0 Answered in the .RES"));
                    self.mm4_response(system, &m, rcpt, RequestStatus::ErrorMessageNotFound);
                } else {
                    self.smtp_answer(conn, Reply::new(554, b"5.6.0 No such message"));
                }
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
        self.tag_seq = self.tag_seq.wrapping_add(1);
        let sequence = self.tag_seq ^ (u32::from(self.config.core) << 24);
        let max = self.config.max_sip_message;
        let converted = mm4_to_sip(&m, &to, system, &side, Some(recipient), &provision.keys, sequence, unix, max);
        match converted {
            Ok(c) => {
                inc(&self.shared.stats.sip_messages_sent);
                let res = m.ack_request.then(|| Box::new(ResFor { system, forward: m, rcpt }));
                let key = self.outgoing.insert(Outgoing::Mms { conn: Some(conn), system, res });
                self.mms_deadlines.push_back((unix.saturating_add(MMS_FINAL_S), key));
                let token = self.token(key);
                self.sip_requests_tcp.push_back(SipRequest { token, bytes: c.bytes, dest: self.config.next_hop });
            }
            Err(e) => refuse(self, m, rcpt, e.request_status()),
        }
    }

    /// The final response `status` to the MESSAGE an MMS became: the SMTP reply on
    /// `conn`, and the `.RES` when one was asked for.
    pub(super) fn mm4_final(&mut self, conn: Option<ConnRef>, system: u16, res: Option<Box<ResFor>>, status: u16) {
        let outcome = sip_final_to_outcome(status);
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
            if let Some(Outgoing::Mms { conn, system, .. }) = self.outgoing.remove(key) {
                inc(&self.shared.stats.mm4_retry);
                if let Some(st) = self.shared.system(system) {
                    inc(&st.messages_refused);
                }
                if let Some(conn) = conn {
                    self.smtp_answer(conn, Reply::new(451, b"4.4.1 No answer from the converged core, try again"));
                }
            }
        }
    }

    /// MM4 messages waiting for MMS centre `system`'s client.
    fn mm4_queued(&self, system: u16) -> usize {
        self.mm4_out.iter().filter(|o| o.system == system).count()
    }

    /// Queues the `.RES` answering `req` for MMS centre `system` (dropped and counted
    /// when no SMTP client of this worker reaches it: its port has none).
    fn mm4_response(&mut self, system: u16, req: &Mm4, rcpt: String, status: RequestStatus) {
        if !self.config.mm4_clients.contains(&system) {
            self.shared.count_drop(DropReason::Mm4NoClient);
            return;
        }
        let provision = self.shared.provision.load_full();
        let domain = &provision.converged.legacy_domain;
        let sender = format!("system@{domain}");
        self.mm4_seq = self.mm4_seq.wrapping_add(1);
        let id = format!("{}.{}.{}@{domain}", self.config.core, self.unix, self.mm4_seq);
        let e = mm4::Envelope { transaction_id: &id, sender: &sender, rfc_message_id: &id, date: self.unix as i64 };
        let data = match req.kind {
            MessageType::ForwardReq => mm4::forward_res(&e, req, status, None),
            _ => mm4::report_res(&e, req, status),
        };
        self.mm4_out.push_back(Mm4Out { system, from: sender, rcpt, data, attempts: 0 });
    }

    fn smtp_answer(&mut self, conn: ConnRef, reply: Reply<'static>) {
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
