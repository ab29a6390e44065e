//! Converged → legacy: SIP MESSAGEs from the converged side. An IMDN's receipts go
//! through its legacy system's lane (or the durable store); a MESSAGE to a number is
//! routed, converted to submit_sm / deliver_sm, its correlation written before sending.
use super::*;

impl Flows {
    /// A new MESSAGE from the converged side (an IMDN, or a message for a legacy user).
    pub fn sip_message(&mut self, now: u64, unix: u64, txn: SipTxn, msg: &Message<'_, '_>, raw: &[u8]) {
        let provision = self.shared.provision.load_full();
        let first = 1;
        // The body is looked at once: an IMDN's receipts and a user's text both read it.
        let mut cpim_headers = [crate::wire::cpim::EMPTY_HEADER; MAX_CPIM_HEADERS];
        let content = SipContent::of(msg, &mut cpim_headers);
        let routed = imdn_content_to_receipts(
            msg,
            &content,
            &provision.keys,
            unix,
            |s| provision.system(s).map(legacy_exchange_of),
            first,
            &mut self.out,
        );
        match routed {
            Err(ImdnRouteError::NotCpim | ImdnRouteError::NotImdn | ImdnRouteError::NotNotification) => {
                self.converged_message(now, unix, txn, msg, &content, raw, &provision)
            }
            Err(e) => {
                inc(&self.shared.stats.imdns_in);
                self.shared.count_drop(match e {
                    ImdnRouteError::Tag(_) | ImdnRouteError::UnknownSystem(_) => DropReason::from_name(e.reason()),
                    _ => DropReason::ImdnMalformed,
                });
                match e {
                    ImdnRouteError::Tag(crate::tag::TagError::Expired) => {
                        inc(&self.shared.stats.imdn_bad_tag);
                        self.answer(txn, 200, "OK (message-id expired: nothing to relay)");
                    }
                    ImdnRouteError::Tag(_) | ImdnRouteError::UnknownSystem(_) => {
                        inc(&self.shared.stats.imdn_bad_tag);
                        self.answer(txn, 403, "Forbidden (message-id not issued by this IWF)");
                    }
                    _ => {
                        inc(&self.shared.stats.imdn_malformed);
                        self.answer(txn, 400, "Bad Request (malformed IMDN)");
                    }
                }
            }
            Ok(ReceiptOutcome::NotRequested { .. } | ReceiptOutcome::NotRelayed { .. }) => {
                inc(&self.shared.stats.imdns_in);
                inc(&self.shared.stats.receipts_not_requested);
                self.answer(txn, 200, "OK");
            }
            Ok(ReceiptOutcome::Receipts { system, state, count, message_id, .. }) => {
                inc(&self.shared.stats.imdns_in);
                let display = state == crate::interwork::state::ReceiptState::Displayed;
                if self.records_on() {
                    self.record(records::Event::new(records::Kind::ImdnIn, system).id(&message_id).state(state));
                }
                if let Some(seen) = self.admit_notification(unix, txn, &message_id, display) {
                    self.route_receipts(unix, txn, system, count, seen, &message_id);
                }
            }
            Ok(ReceiptOutcome::Mms { system, notification, fields, message_id }) => {
                self.mms_notification(unix, txn, raw, system, notification, fields, &message_id)
            }
        }
    }

    /// A verified notification about tag `message_id` (a delivery one, or a display
    /// one): relayed once per replay window, so `None` when it was answered here
    /// already (a replay: 200; a copy still being relayed, or the replay table full:
    /// 503).
    pub(super) fn admit_notification(
        &mut self,
        unix: u64,
        txn: SipTxn,
        message_id: &[u8; crate::tag::TAG_LEN],
        display: bool,
    ) -> Option<crate::route::replay::Seen> {
        use crate::route::replay::Admission;
        let mut key = [0u8; crate::tag::TAG_LEN + 1];
        key[..crate::tag::TAG_LEN].copy_from_slice(message_id);
        key[crate::tag::TAG_LEN] = u8::from(display);
        let (why, reason, retry_after) = match self.shared.replay.admit(&key, unix) {
            Admission::Fresh(seen) => return Some(seen),
            Admission::Replay => {
                inc(&self.shared.stats.imdn_replays);
                self.answer(txn, 200, "OK (already relayed)");
                return None;
            }
            // Its first copy is still on its way: a 200 now would acknowledge what may
            // yet fail. The sender's next try hears the first's outcome.
            Admission::InFlight => {
                (DropReason::ImdnInFlight, "Service Unavailable (an earlier copy is being relayed)", 2)
            }
            Admission::Full => (DropReason::ReplayTableFull, "Service Unavailable (replay table full)", 30),
        };
        self.shared.count_drop(why);
        self.answer_with(SipAnswer { txn, status: 503, reason, retry_after: Some(retry_after) });
        None
    }

    pub(super) fn answer(&mut self, txn: SipTxn, status: u16, reason: &'static str) {
        self.answer_with(SipAnswer { txn, status, reason, retry_after: None });
    }

    /// Queues an answer for its transaction, or sends it to the core that holds it.
    pub(super) fn answer_with(&mut self, a: SipAnswer) {
        match a.txn {
            SipTxn::Remote { token } => self.finish(token, Outcome::Answered(a.status, a.reason)),
            SipTxn::Udp { port, .. } => self.udp_answers.push(port, a),
            SipTxn::Tcp { port, .. } => self.tcp_answers.push(port, a),
        }
    }

    /// Hands the `count` receipt PDUs at the front of `self.out` to `system`'s lane (or
    /// the store when it has no bind); the IMDN is answered once all are acknowledged.
    pub(super) fn route_receipts(
        &mut self,
        unix: u64,
        txn: SipTxn,
        system: u16,
        count: u8,
        seen: crate::route::replay::Seen,
        tag: &[u8; TAG_LEN],
    ) {
        let st = self.shared.system(system);
        let lanes = self.shared.lanes.load();
        let Some(lane) = lanes.get(LegacySystemId(system)) else {
            self.shared.replay.forget(seen);
            self.answer(txn, 500, "Server Internal Error (no lane)");
            return;
        };
        // A system bound elsewhere in a cluster has no queue here to fill.
        let unbound = lane.owner().is_none() && self.shared.cluster.get().is_none();
        if let Some((why, retry)) = self.receipts_over_limit(unix, system, count, unbound) {
            self.shared.replay.forget(seen);
            self.shared.count_drop(why);
            if let Some(st) = &st {
                inc(&st.receipts_refused_limit);
            }
            self.answer_with(SipAnswer {
                txn,
                status: 503,
                reason: match why {
                    DropReason::ReceiptRate => "Service Unavailable (legacy system's receipt rate)",
                    DropReason::QueueLimit => "Service Unavailable (legacy system's durable queue is full)",
                    _ => "Service Unavailable (too many requests waiting)",
                },
                retry_after: Some(retry),
            });
            return;
        }
        let key = self.waiters.insert(Waiter {
            from: Requester::Sip(txn),
            remaining: u16::from(count),
            refused: None,
            answer: None,
            replay: Some(seen),
            latency: Some((system, self.now_ms)),
            record: self.records_on().then_some((*tag, system, records::Ending::None)),
        });
        let token = self.token(key);
        let validity = self.shared.provision.load().converged.message_validity_s;
        let mut at = 0usize;
        let mut failed = None;
        for _ in 0..count {
            let Some(head) = self.out.get(at..at + 4) else { break };
            let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let Some(bytes) = self.out.get(at..at + n) else { break };
            at += n;
            let Ok(item) = LaneItem::new(LegacySystemId(system), token, bytes) else {
                failed = failed.or(Some("Service Unavailable (legacy lane full or unbound)"));
                continue;
            };
            if let Err(why) = self.hand_receipt(lane, item, unix, validity, st.as_deref()) {
                failed = failed.or(Some(why));
            }
        }
        if let Some(reason) = failed {
            // Items already handed over still complete; the IMDN is answered 503 now
            // and its completions are ignored (the converged side resends; a duplicate
            // receipt is harmless to the legacy system's correlation).
            if let Some(seen) = self.waiters.remove(key).and_then(|w| w.replay) {
                self.shared.replay.forget(seen);
            }
            self.answer_with(SipAnswer { txn, status: 503, reason, retry_after: Some(5) });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn converged_message<'a>(
        &mut self,
        now: u64,
        unix: u64,
        txn: SipTxn,
        msg: &Message<'a, '_>,
        content: &SipContent<'_, 'a>,
        raw: &[u8],
        provision: &Provision,
    ) {
        let _ = now;
        if !matches!(txn, SipTxn::Remote { .. }) {
            inc(&self.shared.stats.converged_messages);
        }
        let Some(system) = self.admit_converged(unix, txn, msg, content, provision) else { return };
        let Some(l) = provision.system(system) else {
            return self.refuse_converged(txn, 500, "Server Internal Error (route to an unknown system)");
        };
        if l.mms.is_some() {
            // Every worker has an SMTP client toward each MMS centre it was started
            // with: no hand-over.
            return self.converged_mms(unix, txn, msg, content, system, provision);
        }
        // The bind the parts leave on: this core's, one that receives; else the core
        // that holds one gets the request (it keeps the correlation: the receipts come
        // back on that bind).
        let Some(conn) = self.pick_conn(system) else {
            return self.hand_over(txn, system, raw);
        };
        let exchange = exchange_of(l);
        self.concat_ref = self.concat_ref.wrapping_add(1);
        let first = self.corr_seq;
        let params = SubmitParams {
            reference: self.concat_ref,
            first_sequence: first,
            sender_policy: if l.alphanumeric_senders {
                SenderPolicy::AlphanumericFallback
            } else {
                SenderPolicy::NumberOnly
            },
        };
        let batch = match sip_content_to_submit(msg, content, &exchange, params, &mut self.scratch, &mut self.out) {
            Ok(b) => b,
            Err(e) => {
                let (status, reason) = e.sip_status();
                return self.refuse_converged(txn, status, reason);
            }
        };
        let count = batch.count;
        if self.records_on() {
            let f = &batch.facts;
            let e = records::Event::new(records::Kind::ConvergedIn, system)
                .id(f.message_id.unwrap_or("").as_bytes())
                .parties(f.sender.as_bytes(), f.recipient.digits().as_bytes())
                .n(u16::from(count));
            self.record(e);
        }
        self.corr_seq = first.wrapping_add(u32::from(count)).max(1);
        let Ok(durable) = self.correlate(unix, txn, system, first, count, batch.facts.stored(), provision) else {
            return;
        };
        // With a store, the 200 also waits for every part's id to be durable (the record
        // is, before the parts go).
        let store_waits = if durable.is_some() && self.shared.store.is_some() { u16::from(count) } else { 0 };
        let key = self.new_waiter(Requester::Sip(txn), u16::from(count) + store_waits);
        let token = self.token(key);
        let mut items = Vec::with_capacity(usize::from(count));
        for (i, (_, bytes)) in batch.pdus(&self.out).enumerate() {
            let corr = batch.facts.stored().map(|_| (system, first.wrapping_add(i as u32)));
            items.push((LaneItem::new(LegacySystemId(system), token, bytes), corr));
        }
        let mut parts = Vec::with_capacity(items.len());
        for (item, corr) in items {
            match item {
                Ok(item) => parts.push(SmppSend { token, item, correlation: corr }),
                Err(_) => {
                    // Never sent: its entry part fails, and its id's write will not come.
                    if let Some((system, c)) = corr {
                        let _ = self.correlation.refused(LegacySystemId(system), c, unix);
                    }
                    if store_waits > 0 {
                        self.complete_local(token, Outcome::Stored);
                    }
                    self.complete_local(token, Outcome::Refused(CommandStatus::ESME_RINVMSGLEN))
                }
            }
        }
        self.send_parts(key, conn, system, parts, durable);
    }

    pub(super) fn refuse_converged(&mut self, txn: SipTxn, status: u16, reason: &'static str) {
        inc(&self.shared.stats.converged_refused);
        self.answer(txn, status, reason);
    }

    pub(super) fn refuse_converged_later(
        &mut self,
        txn: SipTxn,
        drop: DropReason,
        reason: &'static str,
        retry_after: u32,
    ) {
        self.shared.count_drop(drop);
        inc(&self.shared.stats.converged_refused);
        self.answer_with(SipAnswer { txn, status: 503, reason, retry_after: Some(retry_after) });
    }

    /// The legacy system a converged user's MESSAGE goes to (by the Request-URI's
    /// number and the content's type), if it may go now: its throughput and this
    /// core's waiters allow it. `None`: answered already.
    fn admit_converged(
        &mut self,
        unix: u64,
        txn: SipTxn,
        msg: &Message<'_, '_>,
        content: &SipContent<'_, '_>,
        provision: &Provision,
    ) -> Option<u16> {
        let number = msg
            .request_line()
            .and_then(|r| r.parse_uri().ok())
            .and_then(|u| crate::interwork::legacy_to_converged::uri_msisdn(u.as_str().as_bytes()).ok());
        let Some(number) = number else {
            self.refuse_converged(txn, 404, "Not Found (no E.164 number in the Request-URI)");
            return None;
        };
        let mut media = [0u8; 128];
        let content_type = content_type_of(content, &mut media);
        let body = match content {
            SipContent::Cpim(parsed) => parsed.content,
            _ => msg.body,
        };
        let fits = fits_sms(content_type, body, provision.converged.sms_max_parts);
        let class = crate::route::select::ContentClass::of(content_type, fits);
        let system = match provision.routes.select_for(number.digits().as_bytes(), content_type, class) {
            Ok(s) => s.0,
            Err(e) => {
                self.shared.count_drop(DropReason::NoRoute);
                let (status, reason) = e.sip_status();
                self.refuse_converged(txn, status, reason);
                return None;
            }
        };
        let Some(throughput) = provision.system(system).map(|l| l.throughput) else {
            self.refuse_converged(txn, 500, "Server Internal Error (route to an unknown system)");
            return None;
        };
        let st = self.shared.system(system);
        if !matches!(txn, SipTxn::Remote { .. }) && st.as_ref().is_some_and(|st| !st.admit(unix, throughput)) {
            if let Some(st) = &st {
                inc(&st.throttled);
            }
            let reason = "Service Unavailable (legacy system's throughput limit)";
            self.refuse_converged_later(txn, DropReason::Throttled, reason, 1);
            return None;
        }
        // A waiter for the answer and one for the correlation record's write.
        if self.waiters_full(2) {
            let reason = "Service Unavailable (too many requests waiting)";
            self.refuse_converged_later(txn, DropReason::WaitersFull, reason, 1);
            return None;
        }
        Some(system)
    }

    /// No bind of `system` here: the core that holds one gets the request (once; a
    /// request handed over already is not handed on).
    fn hand_over(&mut self, txn: SipTxn, system: u16, raw: &[u8]) {
        let owner = self.shared.lanes.load().get(LegacySystemId(system)).and_then(|l| l.owner());
        match owner {
            Some(core) if core != self.config.core && !matches!(txn, SipTxn::Remote { .. }) => {
                if !self.hand_to(core, txn, raw) {
                    self.refuse_converged(txn, 503, "Service Unavailable (core hand-over full)");
                }
            }
            _ => {
                self.shared.count_drop(DropReason::NotBound);
                self.refuse_converged(txn, 480, "Temporarily Unavailable (legacy system not bound)");
            }
        }
    }

    /// Hands request `raw` on `txn` to worker `core` (its answer comes back to `txn`);
    /// false when that worker's hand-over ring is full (`txn` is the caller's to answer).
    pub(super) fn hand_to(&mut self, core: CoreId, txn: SipTxn, raw: &[u8]) -> bool {
        let key = self.new_waiter(Requester::Sip(txn), 1);
        let job = Job { token: self.token(key), request: raw.to_vec(), mm4_from: None };
        let pushed = matches!(self.shared.jobs.get(usize::from(core)).map(|q| q.push(job)), Some(Ok(())));
        if !pushed {
            self.waiters.remove(key);
        }
        pushed
    }

    /// The correlation entry of a message that asked for notifications (and what its
    /// durable record will hold); `Err` when the table is full (answered 503).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn correlate(
        &mut self,
        unix: u64,
        txn: SipTxn,
        system: u16,
        first: u32,
        count: u8,
        stored: Option<crate::interwork::converged_to_legacy::StoredCorrelation<'_>>,
        provision: &Provision,
    ) -> Result<Option<(correlation::MessageRef, crate::route::store::DurableCorrelation)>, ()> {
        let Some(stored) = stored else { return Ok(None) };
        let entry = NewMessage {
            system: LegacySystemId(system),
            stored,
            segments: count,
            first_sequence: first,
            deadline: unix + provision.converged.message_validity_s,
        };
        let full = self.correlation.len() >= provision.converged.correlation_capacity;
        let inserted = if full { None } else { self.correlation.insert(&entry, unix).ok() };
        let Some(message) = inserted else {
            // Full (its capacity, or the table's own limit): the sender retries later.
            let reason = "Service Unavailable (correlation table full)";
            self.refuse_converged_later(txn, DropReason::CorrelationFull, reason, 10);
            return Err(());
        };
        let record =
            crate::route::store::DurableCorrelation::new(LegacySystemId(system), count, entry.deadline, &stored);
        Ok(Some((message, record)))
    }

    /// The parts of a converged message: onto the bind `conn` now, or, with a store and
    /// a correlation, once its record is durable (a receipt must never come for a
    /// message a restart would forget).
    fn send_parts(
        &mut self,
        key: u64,
        conn: ConnRef,
        system: u16,
        parts: Vec<SmppSend>,
        durable: Option<(correlation::MessageRef, crate::route::store::DurableCorrelation)>,
    ) {
        if let (Some((message, record)), Some(tx)) = (durable, self.shared.store.clone()) {
            let store_key = self.store_key();
            self.store_keys.insert(message, store_key);
            let from = Requester::Correlation { message: key };
            let w = self.new_waiter(from, 1);
            self.unsent.insert(w, UnsentParts { conn, system, parts });
            let write = CorrelationWrite::Put { key: store_key, record: Box::new(record), token: self.token(w) };
            let op = store::StoreOp::Correlation(write);
            if tx.send(op).is_err() {
                self.waiters.remove(w);
                self.release_parts(w, key, false);
            }
            return;
        }
        let st = self.shared.system(system);
        for send in parts {
            inc(&self.shared.stats.converged_parts_sent);
            if let Some(st) = &st {
                inc(&st.messages_out);
            }
            self.smpp_out.push(conn.port, (conn, SmppOut::Send(send)));
        }
    }

    /// Whether `count` receipts for `system` exceed its receipt rate, the store's room
    /// for it while it has no bind (`unbound`), or this core's waiters: the drop reason
    /// and the Retry-After of the 503 the IMDN gets.
    fn receipts_over_limit(&self, unix: u64, system: u16, count: u8, unbound: bool) -> Option<(DropReason, u32)> {
        let provision = self.shared.provision.load();
        let (rate, queue_limit) =
            provision.system(system).map(|l| (l.receipt_rate, l.queue_limit)).unwrap_or((0, u64::MAX));
        match self.shared.system(system) {
            Some(st) if !st.admit_receipts(unix, rate, u32::from(count)) => Some((DropReason::ReceiptRate, 1)),
            Some(st)
                if unbound && st.queued_now.load(Ordering::Relaxed).saturating_add(u64::from(count)) > queue_limit =>
            {
                Some((DropReason::QueueLimit, 30))
            }
            _ if self.waiters_full(1) => Some((DropReason::WaitersFull, 1)),
            _ => None,
        }
    }

    /// One receipt into its system's lane; while the system has no bind here, to the
    /// cluster (in one: a box holding a bind takes it) or else the store. `Err` is the
    /// 503's reason when it could go to none.
    fn hand_receipt(
        &self,
        lane: &crate::route::Lane,
        item: LaneItem,
        unix: u64,
        validity: u64,
        st: Option<&SystemStats>,
    ) -> Result<(), &'static str> {
        const LANE: &str = "Service Unavailable (legacy lane full or unbound)";
        if lane.owner().is_none() {
            if let Some(link) = self.shared.cluster.get() {
                if !link.publish(item) {
                    self.shared.count_drop(DropReason::ClusterUnavailable);
                    return Err("Service Unavailable (the cluster cannot store it now)");
                }
                inc(&self.shared.stats.receipts_clustered);
                if let Some(st) = st {
                    inc(&st.receipts_queued);
                }
                return Ok(());
            }
            let Some(tx) = &self.shared.store else { return Err(LANE) };
            inc(&self.shared.stats.receipts_queued);
            if let Some(st) = st {
                inc(&st.receipts_queued);
            }
            let op = store::StoreOp::Queue { item, enqueued: unix, deadline: unix + validity };
            if tx.send(op).is_err() {
                return Err(LANE);
            }
            if let Some(st) = st {
                st.queued_now.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        match lane.push(item) {
            Ok(()) => {
                inc(&self.shared.stats.receipts_routed);
                if let Some(st) = st {
                    inc(&st.receipts_routed);
                }
                Ok(())
            }
            Err(PushError::Full(_)) => {
                inc(&self.shared.stats.lane_full);
                self.shared.count_drop(DropReason::LaneFull);
                Err(LANE)
            }
            Err(_) => Err(LANE),
        }
    }

    /// A connection of `system` that may be sent receipts, in turn.
    pub(super) fn pick_conn(&mut self, system: u16) -> Option<ConnRef> {
        let candidates = self.receivers.get(&system).filter(|c| !c.is_empty())?;
        self.rr = self.rr.wrapping_add(1);
        candidates.get(self.rr % candidates.len()).copied()
    }
}

/// Whether a text content (`content_type` text/* or none) fits `max_parts` SMS parts as
/// 8-bit-reference concatenation counts them, in the encoding it needs (GSM 7-bit, else
/// UCS-2). A text short enough to fit whatever its characters is not counted (the
/// common case costs no pass over it); text that is not UTF-8 is left to the SMS
/// conversion to refuse. Non-text content is not asked (it is media whatever its size).
fn fits_sms(content_type: Option<&str>, text: &[u8], max_parts: usize) -> bool {
    use crate::wire::sms::{choose_encoding, count_segments, Concatenation};
    /// UCS-2 characters per part of a concatenated message: the fewest of any encoding.
    const UCS2_PART: usize = 67;
    if !crate::route::select::is_text(content_type) || text.len() <= max_parts.saturating_mul(UCS2_PART) {
        return true;
    }
    let Ok(text) = core::str::from_utf8(text) else { return true };
    count_segments(text, choose_encoding(text), Concatenation::Udh8).is_ok_and(|n| usize::from(n) <= max_parts)
}
