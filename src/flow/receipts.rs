//! SMSC receipts of converged users' messages: matched to their correlation, each
//! becomes an IMDN to the converged sender, acknowledged to the SMSC after the IMDN's
//! final response; receipts for messages not known (yet) are parked.
use super::*;

impl Flows {
    /// An SMSC receipt (deliver_sm from an SMSC iwf is bound to, or submit_sm 0x08/0x10
    /// from a system bound to iwf): matched to its message, it becomes an IMDN to the
    /// converged sender; the receipt is acknowledged after the IMDN's final response.
    pub(super) fn legacy_receipt(
        &mut self,
        _now: u64,
        unix: u64,
        conn: ConnRef,
        system: u16,
        seq: u32,
        sm: &SubmitSm<'_>,
    ) {
        inc(&self.shared.stats.smsc_receipts);
        if let Some(st) = self.shared.system(system) {
            inc(&st.smsc_receipts);
        }
        let provision = self.shared.provision.load_full();
        let Some(l) = provision.system(system) else {
            self.respond(conn, seq, CommandStatus::ESME_RSYSERR, b"");
            return;
        };
        let receipt = match parse_smsc_receipt(sm, l.ids) {
            Ok(r) => r,
            Err(_) => {
                inc(&self.shared.stats.smsc_receipts_absorbed);
                self.shared.count_drop(DropReason::SmscReceiptUnreadable);
                // Unreadable: acknowledged (a retry would not read better), counted.
                self.respond(conn, seq, CommandStatus::ESME_ROK, b"");
                return;
            }
        };
        if self.records_on() {
            let e =
                records::Event::new(records::Kind::SmscReceipt, system).smsc_id(receipt.raw_id).state(receipt.state);
            self.record(e);
        }
        let alt = crate::interwork::converged_to_legacy::alternate_id(receipt.raw_id, l.ids, IdOrigin::Receipt);
        let r = HeldReceipt { conn, seq, system, id: receipt.id, alt, state: receipt.state, parked: None };
        self.apply_receipt(unix, r, &provision);
    }

    /// Applies an SMSC receipt to its message: an IMDN (the resp after its final
    /// response), a duplicate (answered now), or held: parked until its id is bound,
    /// or waiting for the message's IMDN in flight.
    pub(super) fn apply_receipt(&mut self, unix: u64, mut r: HeldReceipt, provision: &Provision) {
        let system = LegacySystemId(r.system);
        // A receipt id with two readings (`auto`): the one a live message holds; none
        // of them when each names another message.
        if let Some(alt) = r.alt.take() {
            let primary = self.correlation.message_of(system, &r.id);
            match (primary, self.correlation.message_of(system, &alt)) {
                (Some(p), Some(a)) if p != a => {
                    inc(&self.shared.stats.receipt_ids_ambiguous);
                    self.shared.count_drop(DropReason::SmscIdAmbiguous);
                    self.settle(r.ack(), CommandStatus::ESME_ROK);
                    return;
                }
                (None, Some(_)) => {
                    inc(&self.shared.stats.receipt_ids_decimal);
                    r.id = alt;
                }
                (Some(_), _) => inc(&self.shared.stats.receipt_ids_as_sent),
                (None, None) => {}
            }
        } else if self.correlation.message_of(system, &r.id).is_some() {
            inc(&self.shared.stats.receipt_ids_as_sent);
        }
        let undo = self.correlation.message_of(system, &r.id).and_then(|m| self.correlation.checkpoint(m).ok());
        match self.correlation.receipt(system, &r.id, r.state, unix) {
            correlation::ReceiptOutcome::Notify { message, state } => {
                self.send_imdn(unix, message, state, vec![r.ack()], undo, provision);
            }
            correlation::ReceiptOutcome::InFlight { message } => match self.imdns.get_mut(&message) {
                Some(f) => f.waiting.push(r),
                None => {
                    // Held with nothing in flight here (cannot happen): free it, retry later.
                    let _ = self.correlation.release(message, unix);
                    self.settle(r.ack(), CommandStatus::ESME_RX_T_APPN);
                }
            },
            correlation::ReceiptOutcome::Absorbed { .. } => {
                inc(&self.shared.stats.smsc_receipts_absorbed);
                self.settle(r.ack(), CommandStatus::ESME_ROK);
            }
            correlation::ReceiptOutcome::Parked => self.park(unix, r),
            correlation::ReceiptOutcome::ParkFull => {
                self.shared.count_drop(DropReason::ParkFull);
                self.settle(r.ack(), CommandStatus::ESME_RMSGQFUL);
            }
        }
    }

    /// Keeps receipt `r` until a resp binds its id. With a store it is written there
    /// and answered once durable: held unanswered, receipts for ids iwf never gave out
    /// (after an SMSC failover, or in a pool sharing a system_id) would fill the
    /// SMSC's window and push real receipts out.
    pub(super) fn park(&mut self, unix: u64, mut r: HeldReceipt) {
        if r.parked.is_none() {
            self.ask_cluster(r.system, r.id);
        }
        if r.parked.is_none() && self.shared.store.is_some() && self.waiters_full(1) {
            // No room to wait for the write: the SMSC sends it again later.
            self.shared.count_drop(DropReason::WaitersFull);
            self.respond(r.conn, r.seq, CommandStatus::ESME_RMSGQFUL, b"");
            return;
        }
        if r.parked.is_none() {
            if let Some(tx) = self.shared.store.clone() {
                let key = self.store_key();
                let from = Requester::Parking { resp: Some((r.conn, r.seq)), key, system: r.system, id: r.id };
                let w = self.new_waiter(from, 1);
                let receipt = crate::route::store::ParkedReceipt {
                    key,
                    system: LegacySystemId(r.system),
                    id: r.id,
                    state: r.state,
                    deadline: unix.saturating_add(PARKED_RECORD_S),
                };
                if tx.send(store::StoreOp::Park { receipt, token: self.token(w) }).is_ok() {
                    inc(&self.shared.stats.smsc_receipts_parked_durably);
                    r.parked = Some(key);
                } else {
                    self.waiters.remove(w);
                }
            }
        }
        self.parked.entry((r.system, r.id)).or_default().push(r);
    }

    /// Correlations the cluster found for receipts parked here (messages another box
    /// sent): each message joins this core's table, and the receipts parked for the id
    /// are applied to it.
    pub(super) fn found_in_cluster(&mut self, unix: u64) {
        let shared = Arc::clone(&self.shared);
        let Some(q) = shared.cluster_found.get(usize::from(self.config.core)) else { return };
        let provision = self.shared.provision.load_full();
        while let Some(found) = q.pop() {
            let (restorable, system, id) = *found;
            inc(&self.shared.stats.smsc_receipts_found_in_cluster);
            self.correlation.unpark(LegacySystemId(system), &id);
            // A message already here (another of its parts' receipts brought it) is
            // not made twice. It gets no store key here: the record is the other box's
            // (its key may even be one of this box's), which keeps and removes it.
            let (_, record, ids) = &restorable;
            if self.correlation.message_of(LegacySystemId(system), &id).is_none() {
                let _ = self.correlation.restore(&record.new_message(), ids, unix);
            }
            for r in self.parked.remove(&(system, id)).unwrap_or_default() {
                self.apply_receipt(unix, r, &provision);
            }
        }
    }

    /// This core's table sizes into the shared gauges.
    pub(super) fn publish_tables(&self) {
        let Some(slots) = self.shared.tables.get(usize::from(self.config.core)) else { return };
        let held: usize = self.held.values().map(|h| h.parts.len()).sum();
        let parked = self.correlation.parked_len() + self.parked.len();
        let sizes = [self.correlation.len(), parked, self.waiters.len(), self.sent.len(), held];
        for (slot, n) in slots.iter().zip(sizes) {
            slot.store(n as u64, Ordering::Relaxed);
        }
    }

    /// Receipts whose park time ended without a resp binding their id: no message
    /// iwf sent has it (a resend would not match better). Acknowledged, counted.
    pub(super) fn sweep_parked(&mut self) {
        if !self.retry_receipts.is_empty() {
            let provision = self.shared.provision.load_full();
            for r in std::mem::take(&mut self.retry_receipts) {
                self.apply_receipt(self.unix, r, &provision);
            }
        }
        if self.parked.is_empty() {
            return;
        }
        let gone: Vec<(u16, CanonicalId)> = self
            .parked
            .keys()
            .filter(|(system, id)| !self.correlation.is_parked(LegacySystemId(*system), id))
            .copied()
            .collect();
        for key in gone {
            for r in self.parked.remove(&key).unwrap_or_default() {
                inc(&self.shared.stats.smsc_receipts_absorbed);
                self.shared.count_drop(DropReason::SmscReceiptUnmatched);
                self.settle(r.ack(), CommandStatus::ESME_ROK);
            }
        }
    }

    /// Writes and queues the IMDN for `message` in `state`; `acks` are the receipts to
    /// answer after its final response (answered now when no IMDN is due); `undo` the
    /// message's state before the receipt, restored if the IMDN fails.
    pub(super) fn send_imdn(
        &mut self,
        unix: u64,
        message: correlation::MessageRef,
        state: crate::interwork::state::ReceiptState,
        acks: Vec<ReceiptAck>,
        undo: Option<Checkpoint>,
        provision: &Provision,
    ) {
        let mut strings = [0u8; 2048];
        let Ok(stored) = self.correlation.stored(message, &mut strings) else {
            for ack in acks {
                self.settle(ack, CommandStatus::ESME_ROK);
            }
            return;
        };
        let side = converged_side(&self.config, provision, "UDP");
        self.tag_seq = self.tag_seq.wrapping_add(1);
        let seed = format!("iwf{:x}c{}m{}", unix, self.config.core, self.tag_seq);
        let message_id = format!("n{:x}{}{}", unix, self.config.core, self.tag_seq);
        let tokens = ImdnTokens { message_id: &message_id, seed: &seed };
        // The durable copy goes with the last notification the sender can get: a
        // delivery is not the last while a display (user ack) is still owed.
        let last = state.is_final()
            && !(state == crate::interwork::state::ReceiptState::Delivered
                && stored.dispositions.contains(crate::wire::cpim::Dispositions::DISPLAY));
        let written = imdn_for_state(
            state,
            &stored,
            &side,
            &tokens,
            i64::try_from(unix).unwrap_or(0),
            &mut self.scratch,
            &mut self.out,
        );
        match written {
            Ok(Some(w)) => {
                let bytes = self.request_bytes(w.len);
                // Until its final response the message's receipts wait and it stays.
                let _ = self.correlation.hold(message);
                self.imdns.entry(message).or_default().imdns += 1;
                let undo = undo.map(Box::new);
                let key = self.outgoing.insert(Outgoing::Imdn { message, acks, undo, last });
                let token = self.token(key);
                inc(&self.shared.stats.imdns_sent);
                self.record_about(message, records::Event::new(records::Kind::ImdnSent, 0).state(state));
                self.sip_requests.push_back(SipRequest { token, bytes, dest: self.config.next_hop });
            }
            Ok(None) | Err(_) => {
                // No IMDN is due (not asked, or it cannot be written): nothing to wait for.
                if last {
                    self.remove_durable(message);
                }
                for ack in acks {
                    self.settle(ack, CommandStatus::ESME_ROK);
                }
            }
        }
    }

    /// In a cluster, the message a receipt's id belongs to may be another box's: ask
    /// for it (the answer comes to [`Flows::found_in_cluster`]).
    fn ask_cluster(&self, system: u16, id: CanonicalId) {
        if let Some(link) = self.shared.cluster.get() {
            if link.send(cluster::ClusterOp::Find { system, id, core: self.config.core }) {
                inc(&self.shared.stats.smsc_receipts_asked_cluster);
            }
        }
    }

    /// Receipts of the store's parked table, after a restart: each is applied again
    /// (to a restored correlation, or parked anew until its park time ends, and then,
    /// as a receipt that just came, asked of the cluster).
    pub fn restore_parked(&mut self, records: &[crate::route::store::ParkedReceipt], unix: u64) -> usize {
        let provision = self.shared.provision.load_full();
        for p in records {
            let r = HeldReceipt {
                // No connection waits for its answer: the SMSC had it before the restart.
                conn: ConnRef::new(0, 0),
                seq: 0,
                system: p.system.0,
                id: p.id,
                alt: None,
                state: p.state,
                parked: Some(p.key),
            };
            self.apply_receipt(unix, r, &provision);
            if self.parked.contains_key(&(p.system.0, p.id)) {
                self.ask_cluster(p.system.0, p.id);
            }
        }
        records.len()
    }
}
