//! Legacy → converged: SMPP requests from the legacy systems (submit_sm from a system
//! bound to iwf, deliver_sm from an SMSC iwf is bound to), reassembled when
//! concatenated, converted and sent as SIP MESSAGEs; each part's `*_resp` waits for
//! the MESSAGE's final response.
use super::*;

impl Flows {
    /// A submit_sm / deliver_sm / data_sm of the bound system on `conn`. Its answer
    /// comes later through [`Flows::poll_smpp`].
    pub fn smpp_request(&mut self, now: u64, unix: u64, conn: ConnRef, seq: u32, pdu: &Pdu<'_>) {
        let Some(c) = self.conns.get(&conn).copied() else {
            self.respond(conn, seq, CommandStatus::ESME_RINVBNDSTS, b"");
            return;
        };
        let sm = match pdu.body {
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => sm,
            _ => {
                self.respond(conn, seq, CommandStatus::ESME_RINVCMDID, b"");
                return;
            }
        };
        if sm.esm_class.is_receipt() {
            self.legacy_receipt(now, unix, conn, c.system, seq, &sm);
            return;
        }
        // Back-pressure: while the system's lane is full (its receipts are not being
        // taken), it may not send more messages whose receipts would have to wait.
        let full = self.shared.lanes.load().get(LegacySystemId(c.system)).is_some_and(|l| l.len() >= l.capacity());
        let limit = self.shared.provision.load().system(c.system).map_or(0, |l| l.throughput);
        let st = self.shared.system(c.system);
        let over = st.as_ref().is_some_and(|st| !st.admit(unix, limit));
        if full || over {
            if full {
                inc(&self.shared.stats.lane_full);
            }
            if let Some(st) = &st {
                inc(&st.throttled);
            }
            self.shared.count_drop(if full { DropReason::LaneFull } else { DropReason::Throttled });
            self.respond(conn, seq, CommandStatus::ESME_RTHROTTLED, b"");
            return;
        }
        let (msg, concat) = match LegacyMessage::from_submit_sm(&sm) {
            Ok(v) => v,
            Err(e) => {
                inc(&self.shared.stats.legacy_refused);
                self.shared.count_drop(DropReason::LegacyMessageInvalid);
                self.respond(conn, seq, e.command_status(), b"");
                return;
            }
        };
        match concat {
            Some(info) if info.total > 1 => self.legacy_part(now, unix, conn, c.system, seq, &sm, msg, info),
            _ => {
                let mut parts = self.take_parts();
                parts.push((conn, seq, 0));
                self.legacy_message(unix, c.system, parts, Aside::default(), &msg)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn legacy_part(
        &mut self,
        now: u64,
        unix: u64,
        conn: ConnRef,
        system: u16,
        seq: u32,
        sm: &SubmitSm<'_>,
        msg: LegacyMessage<'_>,
        info: ConcatInfo,
    ) {
        inc(&self.shared.stats.legacy_parts);
        let mut source = [0u8; 21];
        let n = sm.source.addr.len().min(21);
        source[..n].copy_from_slice(&sm.source.addr[..n]);
        let key = ReKey { conn_system: system, reference: info.reference, source };
        let UserData::Single(payload) = msg.user_data else { return };
        let charge = self.charge_of(conn, &key, info);
        let taken = match charge {
            Charge::Reserve(n) => n,
            Charge::One => 1,
            Charge::InWindow | Charge::Reserved => 0,
        };
        let room = u16::try_from(self.config.parts_aside).unwrap_or(u16::MAX);
        if taken > 0 && self.conns.get(&conn).map_or(0, |c| c.aside).saturating_add(taken) > room {
            // Held in the window it would take the room its siblings (or another
            // message's) need: the system sends it again once answers free the room.
            inc(&self.shared.stats.parts_aside_full);
            self.shared.count_drop(DropReason::PartsAsideFull);
            self.respond(conn, seq, CommandStatus::ESME_RTHROTTLED, b"");
            return;
        }
        let at = self.epoch + Duration::from_millis(now);
        match self.reassembly.push(key, info, payload, at) {
            // A duplicate of a part held already gets the same answer later.
            Ok(Push::Incomplete { .. } | Push::Duplicate) => {
                if self.timers.reassembly.is_none() {
                    // The first pending message: every later one's deadline is later.
                    self.timers.reassembly = self.reassembly_deadline();
                }
                let h = self.held.entry(key).or_default();
                h.parts.push((conn, seq, info.seq));
                match charge {
                    Charge::InWindow => return,
                    Charge::Reserved => h.aside.unused = h.aside.unused.saturating_sub(1),
                    Charge::Reserve(n) => {
                        h.aside.owner = Some(conn);
                        h.aside.unused = n.saturating_sub(1);
                        h.aside.charges.push((conn, n));
                    }
                    Charge::One => h.aside.charges.push((conn, 1)),
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.aside = c.aside.saturating_add(taken);
                }
                self.smpp_out.push(conn.port, (conn, SmppOut::SetAside { seq }));
            }
            Ok(Push::Complete(whole)) => {
                let HeldParts { mut parts, aside } = self.held.remove(&key).unwrap_or_default();
                parts.push((conn, seq, info.seq));
                let slices: Vec<&[u8]> = whole.parts.iter().map(Vec::as_slice).collect();
                let full = LegacyMessage { user_data: UserData::Parts(&slices), ..msg };
                self.legacy_message(unix, system, parts, aside, &full);
            }
            Err(e) => {
                inc(&self.shared.stats.legacy_refused);
                let status = match e {
                    // Full: the system sends it again later.
                    ReassemblyError::TooManyMessages { .. } | ReassemblyError::TooManyBytes { .. } => {
                        self.shared.count_drop(DropReason::ReassemblyFull);
                        CommandStatus::ESME_RTHROTTLED
                    }
                    _ => {
                        self.shared.count_drop(DropReason::LegacyMessageInvalid);
                        CommandStatus::ESME_RX_T_APPN
                    }
                };
                self.respond(conn, seq, status, b"");
            }
        }
    }

    /// What part `info` of message `key`, arriving on `conn`, would take from its
    /// bind's room outside the window ([`Aside`]).
    pub(super) fn charge_of(&self, conn: ConnRef, key: &ReKey, info: ConcatInfo) -> Charge {
        let held = self.held.get(key);
        let mut seen = [0u64; 4];
        for &(_, _, part) in held.map_or(&[][..], |h| h.parts.as_slice()) {
            seen[usize::from(part >> 6)] |= 1 << (part & 63);
        }
        seen[usize::from(info.seq >> 6)] |= 1 << (info.seq & 63);
        let have: u32 = seen.iter().map(|w| w.count_ones()).sum();
        if self.config.parts_aside == 0 || have >= u32::from(info.total) {
            return Charge::InWindow;
        }
        match held {
            Some(h) if h.aside.owner == Some(conn) && h.aside.unused > 0 => Charge::Reserved,
            Some(_) => Charge::One,
            // A message longer than the whole room keeps its parts in the window.
            None if usize::from(info.total.saturating_sub(1)) > self.config.parts_aside => Charge::InWindow,
            None => Charge::Reserve(u16::from(info.total.saturating_sub(1))),
        }
    }

    /// Whether `n` more waiters would pass `[converged] waiter_capacity`.
    pub(super) fn waiters_full(&self, n: usize) -> bool {
        self.waiters.len().saturating_add(n) > self.shared.provision.load().converged.waiter_capacity
    }

    /// Gives back the room `aside` took on its binds.
    pub(super) fn release(&mut self, aside: &Aside) {
        for &(conn, n) in &aside.charges {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.aside = c.aside.saturating_sub(n);
            }
        }
    }

    pub(super) fn legacy_message(
        &mut self,
        unix: u64,
        system: u16,
        parts: Vec<PartRef>,
        aside: Aside,
        msg: &LegacyMessage<'_>,
    ) {
        inc(&self.shared.stats.legacy_messages);
        if let Some(st) = self.shared.system(system) {
            inc(&st.messages_in);
        }
        let provision = self.shared.provision.load_full();
        let Some(l) = provision.system(system) else {
            return self.answer_parts(parts, &aside, CommandStatus::ESME_RSYSERR);
        };
        let exchange = exchange_of(l);
        // The recipient from the MSISDN map; a number it cannot map is refused.
        let mut uri = [0u8; 512];
        let number = core::str::from_utf8(msg.destination.addr).ok().and_then(|addr| {
            let a = SmppAddress { ton: Ton(msg.destination.ton), npi: Npi(msg.destination.npi), addr };
            match exchange.numbering.from_smpp(a) {
                Ok(LegacyParty::Number(m)) => Some(m),
                _ => None,
            }
        });
        let recipient = number.and_then(|m| {
            let n = provision.msisdns.write_uri(&m, &mut uri).ok()?;
            core::str::from_utf8(uri.get(..n)?).ok()
        });
        let Some(recipient) = recipient else {
            return self.refuse_legacy(system, parts, &aside, CommandStatus::ESME_RINVDSTADR, msg);
        };
        let side = converged_side(&self.config, &provision, "UDP");
        self.tag_seq = self.tag_seq.wrapping_add(1);
        let sequence = self.tag_seq ^ (u32::from(self.config.core) << 24);
        let converted = legacy_to_sip(
            msg,
            &exchange,
            &side,
            Some(recipient),
            &provision.keys,
            sequence,
            unix,
            &mut self.scratch,
            &mut self.out,
        );
        // Too long for UDP: the same message (same tag) with a TCP Via.
        let converted = match converted {
            Ok(c) if c.len > UDP_MAX_REQUEST => legacy_to_sip(
                msg,
                &exchange,
                &ConvergedSide { transport: "TCP", ..side },
                Some(recipient),
                &provision.keys,
                sequence,
                unix,
                &mut self.scratch,
                &mut self.out,
            ),
            other => other,
        };
        match converted {
            Ok(c) => {
                let bytes = self.request_bytes(c.len);
                if self.records_on() {
                    let tag = provision.keys.encode(&c.fields.segment(0));
                    let e = records::Event::new(records::Kind::SmsIn, system)
                        .id(tag.as_ref().map_or(&b""[..], |t| t.as_bytes()))
                        .parties(msg.source.addr, msg.destination.addr)
                        .n(parts.len() as u16);
                    self.record(e);
                }
                self.awaiting_resp.insert((system, c.fields.minutes, c.fields.sequence), Vec::new());
                let key = self.outgoing.insert(Outgoing::Message { parts, aside, fields: c.fields, system });
                let token = self.token(key);
                inc(&self.shared.stats.sip_messages_sent);
                let request = SipRequest { token, bytes, dest: self.config.next_hop };
                if c.len > UDP_MAX_REQUEST {
                    self.sip_requests_tcp.push_back(request);
                } else {
                    self.sip_requests.push_back(request);
                }
            }
            Err(e) => self.refuse_legacy(system, parts, &aside, e.command_status(), msg),
        }
    }

    /// A legacy message refused as invalid: counted, and each part answered `status`.
    fn refuse_legacy(
        &mut self,
        system: u16,
        parts: Vec<PartRef>,
        aside: &Aside,
        status: CommandStatus,
        msg: &LegacyMessage<'_>,
    ) {
        inc(&self.shared.stats.legacy_refused);
        if self.records_on() {
            let e = records::Event::new(records::Kind::SmsRefused, system)
                .parties(msg.source.addr, msg.destination.addr)
                .status(status.0);
            self.record(e);
        }
        self.shared.count_drop(DropReason::LegacyMessageInvalid);
        if let Some(st) = self.shared.system(system) {
            inc(&st.messages_refused);
        }
        self.answer_parts(parts, aside, status);
    }

    /// Answers each part of a message `status` now (its room aside freed); the list
    /// serves the next message.
    pub(super) fn answer_parts(&mut self, parts: Vec<PartRef>, aside: &Aside, status: CommandStatus) {
        self.release(aside);
        for &(conn, seq, _) in &parts {
            self.respond(conn, seq, status, b"");
        }
        self.give_parts(parts);
    }

    pub(super) fn respond(&mut self, conn: ConnRef, seq: u32, status: CommandStatus, id: &[u8]) {
        // A receipt an MMS centre's report became is answered in SMTP (and MM4).
        if !self.mms.report_acks.is_empty() && self.report_acked(conn, seq, status) {
            return;
        }
        let (message_id, id_len) = id_buf(id);
        self.smpp_out.push(conn.port, (conn, SmppOut::Respond { seq, status, message_id, id_len }));
    }
}
