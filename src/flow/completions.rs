//! Completions: SIP final responses, SMPP `*_resp`s, lost requests and the other
//! cores' and the store's answers, each finishing what waited for it.
use super::*;

impl Flows {
    /// The final response (or 408 for Timer F) to SIP request `token`.
    pub fn sip_final(&mut self, token: u64, status: u16) {
        let Some(o) = self.outgoing.remove(token & 0xFFFF_FFFF_FFFF) else { return };
        match o {
            Outgoing::Mms { conn, system, res, origin } => self.mm4_final(conn, system, res, status, origin),
            Outgoing::Message { parts, aside, fields, system } => {
                self.release(&aside);
                let ok = (200..300).contains(&status);
                inc(if ok { &self.shared.stats.sip_messages_ok } else { &self.shared.stats.sip_messages_failed });
                if let Some(st) = self.shared.system(system) {
                    inc(if ok { &st.messages_accepted } else { &st.messages_refused });
                }
                if !ok {
                    self.shared.count_drop(DropReason::SipError);
                }
                let cs = sip_status_to_command_status(status);
                let provision = self.shared.provision.load_full();
                if self.records_on() {
                    let tag = provision.keys.encode(&fields.segment(0));
                    let e = records::Event::new(records::Kind::SmsAnswered, system)
                        .id(tag.as_ref().map_or(&b""[..], |t| t.as_bytes()))
                        .status(u32::from(status))
                        .n(parts.len() as u16);
                    self.record(e);
                }
                for &(conn, seq, part) in &parts {
                    if !ok {
                        self.respond(conn, seq, cs, b"");
                        continue;
                    }
                    // Each part's resp carries its segment's tag (by its part number,
                    // whatever order the parts came in).
                    match segment_tag(&provision.keys, &fields, part) {
                        Ok(tag) => self.respond(conn, seq, CommandStatus::ESME_ROK, tag.as_bytes()),
                        Err(_) => self.respond(conn, seq, CommandStatus::ESME_RSYSERR, b""),
                    }
                }
                self.give_parts(parts);
                // Receipts that beat the resps go out right behind them.
                for (conn, send) in
                    self.awaiting_resp.remove(&(system, fields.minutes, fields.sequence)).unwrap_or_default()
                {
                    self.smpp_out.push(conn.port, (conn, SmppOut::Send(send)));
                }
            }
            Outgoing::Imdn { message, acks, undo, last } => {
                let ok = (200..300).contains(&status);
                self.record_about(
                    message,
                    records::Event::new(records::Kind::ImdnAnswered, 0).status(u32::from(status)),
                );
                inc(if ok { &self.shared.stats.imdns_delivered } else { &self.shared.stats.imdns_failed });
                // A failed IMDN for receipts: their state goes back, so the SMSC's resend
                // (the receipts are refused below) produces the IMDN again. The durable
                // correlation goes only with the 2xx of the final state's IMDN.
                let rolled_back = match (undo, ok) {
                    (Some(undo), false) => self.correlation.roll_back(message, &undo).is_ok(),
                    _ => false,
                };
                if !rolled_back {
                    let _ = self.correlation.release(message, self.unix);
                    if last {
                        self.remove_durable(message);
                    }
                }
                let cs = if ok { CommandStatus::ESME_ROK } else { sip_status_to_command_status(status) };
                for ack in acks {
                    self.settle(ack, cs);
                }
                self.imdn_ended(message);
            }
        }
    }

    /// The durable copy of `message`'s correlation is no longer needed.
    pub(super) fn remove_durable(&mut self, message: correlation::MessageRef) {
        if let (Some(key), Some(tx)) = (self.store_keys.remove(&message), &self.shared.store) {
            let _ = tx.send(store::StoreOp::Correlation(CorrelationWrite::Remove { key }));
        }
    }

    /// An IMDN of `message` ended: when it was the last in flight, the receipts that
    /// waited for it are applied now (a duplicate is absorbed after a 2xx, and
    /// produces the IMDN again after a failure).
    pub(super) fn imdn_ended(&mut self, message: correlation::MessageRef) {
        let Some(f) = self.imdns.get_mut(&message) else { return };
        f.imdns = f.imdns.saturating_sub(1);
        if f.imdns > 0 {
            // Another IMDN of the message is still in flight: keep holding it.
            let _ = self.correlation.hold(message);
            return;
        }
        let Some(f) = self.imdns.remove(&message) else { return };
        let provision = self.shared.provision.load_full();
        for r in f.waiting {
            self.apply_receipt(self.unix, r, &provision);
        }
    }

    // ---- what the sessions report ----------------------------------------------------
    /// The session on `conn` sent `req` as sequence number `seq`.
    pub fn smpp_sent(&mut self, conn: ConnRef, seq: u32, req: SmppSend) {
        if self.sent.insert((conn, seq), req).is_none() {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.in_flight = c.in_flight.saturating_add(1);
            }
        }
    }

    /// Request `seq` on `conn` is answered or lost: what it held.
    fn take_sent(&mut self, conn: ConnRef, seq: u32) -> Option<SmppSend> {
        let req = self.sent.remove(&(conn, seq))?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        Some(req)
    }

    /// The session on `conn` cannot send `req` at all (not bound, not permitted on its
    /// bind type, unencodable): a receipt goes back to its lane (or completes as refused
    /// when it cannot), a converged message's part fails.
    pub fn smpp_unsent(&mut self, conn: ConnRef, req: SmppSend) {
        let _ = conn;
        self.retry(req);
    }

    /// The response to request `seq` iwf sent on `conn`.
    pub fn smpp_response(&mut self, unix: u64, conn: ConnRef, seq: u32, status: CommandStatus, message_id: &[u8]) {
        let Some(req) = self.take_sent(conn, seq) else { return };
        if let Some((system, corr)) = req.correlation {
            let provision = self.shared.provision.load_full();
            let ids = provision.system(system).map_or(crate::interwork::IdCanonicalisation::Auto, |l| l.ids);
            let mut bind_sent = false;
            let mut parked = Vec::new();
            let outcome = if status == CommandStatus::ESME_ROK {
                match canonical_id(message_id, ids, IdOrigin::SubmitResp) {
                    Ok(id) => {
                        // Receipts that came before this resp: held here (their resps wait),
                        // applied below once the id is bound.
                        self.correlation.unpark(LegacySystemId(system), &id);
                        parked = self.parked.remove(&(system, id)).unwrap_or_default();
                        match self.correlation.resp(LegacySystemId(system), corr, &id, unix) {
                            Err(CorrelationError::IdInUse) => {
                                // The SMSC reused an id a live entry still waits a receipt
                                // for: that entry keeps it. The SMSC took this part, so the
                                // sender still hears 200 (an error would make it resend a
                                // message that was sent); the part stays unkeyed: its
                                // receipt carries the same id and goes to the older entry,
                                // this message gets no IMDN for it and goes at its validity.
                                self.shared.count_drop(DropReason::SmscIdInUse);
                                self.correlation.detach(LegacySystemId(system), corr)
                            }
                            r => {
                                if let Ok(o) = &r {
                                    let key = self.store_keys.get(&o.message).copied();
                                    if let (Some(key), Some(tx)) = (key, &self.shared.store) {
                                        let write = CorrelationWrite::BindId {
                                            system,
                                            id,
                                            key,
                                            part: o.part,
                                            token: req.token,
                                        };
                                        let op = store::StoreOp::Correlation(write);
                                        bind_sent = tx.send(op).is_ok();
                                    }
                                }
                                r
                            }
                        }
                    }
                    Err(_) => self.correlation.refused(LegacySystemId(system), corr, unix),
                }
            } else {
                self.correlation.refused(LegacySystemId(system), corr, unix)
            };
            if self.records_on() {
                let e = records::Event::new(records::Kind::Submitted, system).smsc_id(message_id).status(status.0);
                match &outcome {
                    Ok(o) => self.record_about(o.message, e),
                    Err(_) => self.record(e),
                }
            }
            if let Some(evicted) = outcome.as_ref().ok().and_then(|o| o.evicted) {
                // A lingering entry gave its id to this part.
                self.remove_durable(evicted);
            }
            // A part that binds no durable id still counts for the store's share.
            if !bind_sent && self.shared.store.is_some() {
                self.finish(req.token, Outcome::Stored);
            }
            if let Ok(o) = outcome {
                if let Some(state) = o.notify {
                    self.send_imdn(unix, o.message, state, Vec::new(), None, &provision);
                }
            }
            for r in parked {
                self.apply_receipt(unix, r, &provision);
            }
        }
        if req.correlation.is_none() {
            if status == CommandStatus::ESME_ROK {
                if let Some(st) = self.shared.system(req.item.system().0) {
                    inc(&st.receipts_delivered);
                }
            }
            match status {
                CommandStatus::ESME_ROK => inc(&self.shared.stats.receipts_delivered),
                CommandStatus::ESME_RTHROTTLED | CommandStatus::ESME_RMSGQFUL => {}
                _ => inc(&self.shared.stats.receipts_refused),
            }
        }
        match status {
            CommandStatus::ESME_ROK => self.finish(req.token, Outcome::Delivered),
            CommandStatus::ESME_RTHROTTLED | CommandStatus::ESME_RMSGQFUL if req.correlation.is_none() => {
                self.retry(req)
            }
            s => self.finish(req.token, Outcome::Refused(s)),
        }
    }

    /// Request `seq` on `conn` got no response in time, or its session closed: a
    /// receipt goes back to its lane (the legacy system absorbs a duplicate); a
    /// converged message part fails (the sender retries).
    pub fn smpp_lost(&mut self, unix: u64, conn: ConnRef, seq: u32) {
        let Some(req) = self.take_sent(conn, seq) else { return };
        match req.correlation {
            None => self.retry(req),
            Some(_) => self.part_failed(unix, req),
        }
    }

    /// A converged → legacy part that got no id: it has failed (the sender retries);
    /// its share of the store's work is done too.
    pub(super) fn part_failed(&mut self, unix: u64, req: SmppSend) {
        if let Some((system, corr)) = req.correlation {
            let _ = self.correlation.refused(LegacySystemId(system), corr, unix);
            if self.shared.store.is_some() {
                self.finish(req.token, Outcome::Stored);
            }
        }
        self.finish(req.token, Outcome::Refused(CommandStatus::ESME_RX_T_APPN));
    }

    pub(super) fn retry(&mut self, req: SmppSend) {
        if req.correlation.is_some() {
            self.part_failed(self.unix, req);
            return;
        }
        match self.shared.lanes.load().push(req.item) {
            Ok(()) => {}
            Err(_) => self.finish(req.token, Outcome::Refused(CommandStatus::ESME_RTHROTTLED)),
        }
    }

    /// A completion for `token`, here or on the core (or store) that waits for it.
    pub(super) fn finish(&mut self, token: u64, outcome: Outcome) {
        if (token >> 48) as u16 == self.config.core {
            self.complete_local(token, outcome);
        } else if let Err(c) = self.shared.complete(token, outcome) {
            // The other side's ring is full: kept here, sent again from `poll`.
            inc(&self.shared.stats.completions_deferred);
            self.deferred.push_back(c);
        }
    }

    pub(super) fn complete_local(&mut self, token: u64, outcome: Outcome) {
        let key = token & 0xFFFF_FFFF_FFFF;
        let Some(w) = self.waiters.get_mut(key) else { return };
        w.remaining = w.remaining.saturating_sub(1);
        match outcome {
            Outcome::Refused(s) => w.refused = Some(s),
            Outcome::Answered(status, reason) => w.answer = Some((status, reason)),
            Outcome::StoreFailed => w.answer = Some((500, "Server Internal Error (store write failed)")),
            // Stored for an unbound system: no acknowledgement to time.
            Outcome::Stored => {
                w.latency = None;
                if let Some(r) = &mut w.record {
                    r.2 = records::Ending::Stored;
                }
            }
            Outcome::Delivered => {}
        }
        if w.remaining > 0 {
            return;
        }
        let Some(w) = self.waiters.remove(key) else { return };
        let (status, reason) = match (w.answer, w.refused) {
            (Some(a), _) => a,
            (None, None) => (200, "OK"),
            (None, Some(s)) => sip_for_command_status(s),
        };
        if let (Some((system, since)), (200, None)) = (w.latency, (status, w.refused)) {
            if let Some(st) = self.shared.system(system) {
                st.receipt_latency.record(self.now_ms.saturating_sub(since));
            }
        }
        if let Some((tag, system, ending)) = w.record {
            let ending = match (w.refused, (200..300).contains(&status)) {
                (Some(_), _) | (None, false) => records::Ending::Refused,
                (None, true) if ending == records::Ending::Stored => ending,
                (None, true) => records::Ending::Delivered,
            };
            let mut e = records::Event::new(records::Kind::ReceiptDone, system).id(&tag).status(u32::from(status));
            e.ending = ending;
            self.record(e);
        }
        if let Some(seen) = w.replay {
            if (200..300).contains(&status) {
                // Delivered or stored: a copy from now on is a replay.
                self.shared.replay.relayed(seen);
            } else {
                // Not relayed: the sender's retry must be.
                self.shared.replay.forget(seen);
            }
        }
        match w.from {
            Requester::Sip(txn) => self.answer(txn, status, reason),
            Requester::Correlation { message } => {
                let ok = (200..300).contains(&status);
                self.release_parts(key, message, ok);
            }
            Requester::MmsOrigin => self.origin_stored(key, (200..300).contains(&status)),
            Requester::MmsForward => self.forward_stored(key, (200..300).contains(&status)),
            Requester::Mm4Report => self.report_handed_back(key, status),
            Requester::Parking { resp, key, system, id } => {
                let stored = (200..300).contains(&status);
                if !stored {
                    // Not durable: the receipt is forgotten here and the SMSC, told to
                    // retry, sends it again.
                    if let Some(list) = self.parked.get_mut(&(system, id)) {
                        list.retain(|h| h.parked != Some(key));
                    }
                    self.parked.retain(|_, list| !list.is_empty());
                }
                if let Some((conn, seq)) = resp {
                    let cs = if stored { CommandStatus::ESME_ROK } else { CommandStatus::ESME_RX_T_APPN };
                    self.respond(conn, seq, cs, b"");
                }
            }
        }
    }

    /// The parts held under waiter `key` for their correlation record: sent now that it
    /// is durable (on their bind, or another of the system's if it went), or failed
    /// when it could not be written, which answers their message 500.
    pub(super) fn release_parts(&mut self, key: u64, message: u64, stored: bool) {
        let Some(u) = self.unsent.remove(&key) else { return };
        let usable = |f: &Flows, c: ConnRef| f.conns.get(&c).is_some_and(|b| b.system == u.system && b.receives);
        let conn = if usable(self, u.conn) { Some(u.conn) } else { self.pick_conn(u.system) };
        match (stored, conn) {
            (true, Some(conn)) => {
                let st = self.shared.system(u.system);
                for send in u.parts {
                    inc(&self.shared.stats.converged_parts_sent);
                    if let Some(st) = &st {
                        inc(&st.messages_out);
                    }
                    self.smpp_out.push(conn.port, (conn, SmppOut::Send(send)));
                }
            }
            _ => {
                if !stored {
                    if let Some(w) = self.waiters.get_mut(message) {
                        w.answer = Some((500, "Server Internal Error (store write failed)"));
                    }
                }
                for send in u.parts {
                    self.part_failed(self.unix, send);
                }
            }
        }
    }

    /// Tells an SMSC receipt how it ended: its deliver_sm_resp with `status`, or for
    /// one answered when parked, its record goes (`ESME_ROK`: done with) or it is
    /// applied again at the next sweep (a temporary failure).
    pub(super) fn settle(&mut self, ack: ReceiptAck, status: CommandStatus) {
        match ack {
            ReceiptAck::Resp(conn, seq) => self.respond(conn, seq, status, b""),
            ReceiptAck::Parked(r) if status == CommandStatus::ESME_ROK => {
                if let (Some(key), Some(tx)) = (r.parked, &self.shared.store) {
                    let _ = tx.send(store::StoreOp::Unpark { key });
                }
            }
            ReceiptAck::Parked(r) => self.retry_receipts.push(r),
        }
    }
}
