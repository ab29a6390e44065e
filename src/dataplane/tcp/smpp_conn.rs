//! The SMPP connections: the [`Directory`] that authenticates binds against the
//! provisioned systems, each connection's session and its window, iwf's own binds to
//! SMSCs, and the hand-over of requests, responses and session events to the engine.
use super::*;

/// The provisioned legacy systems that bind to iwf: the server role's [`Authenticator`]
/// (system_id, password, source-address allow-list).
#[derive(Debug, Clone)]
pub struct Directory {
    pub(super) source: DirectorySource,
    /// The systems' operator state (`iwf ctl disable`): a disabled system's binds
    /// are refused.
    pub(super) operator: Option<std::sync::Arc<crate::flow::Shared>>,
}

#[derive(Debug, Clone)]
pub(super) enum DirectorySource {
    /// A fixed list (tests, tools).
    Fixed(Vec<LegacyConfig>),
    /// The provisioning snapshot the control plane republishes on reload: a system
    /// added by a reload can bind at once, a changed password applies to the next bind.
    Live(std::sync::Arc<arc_swap::ArcSwap<crate::control::provision::Provision>>),
}

/// Compares a bind's password with the provisioned one in constant time (both padded
/// to SMPP's 8 octets plus their length), so the time a refusal takes tells nothing
/// about how much of a guess was right.
pub(super) fn password_matches(provisioned: &[u8], offered: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let pad = |p: &[u8]| {
        let mut out = [0u8; 10];
        let n = p.len().min(9);
        out[..n].copy_from_slice(&p[..n]);
        out[9] = p.len().min(255) as u8;
        out
    };
    bool::from(pad(provisioned).ct_eq(&pad(offered)))
}

impl Authenticator for Directory {
    /// The address first (a peer no system allows learns nothing else), then the
    /// system_id, then the password, compared in constant time.
    fn authenticate(&mut self, bind: &BindRequest<'_>) -> Result<LegacySystemId, BindRefusal> {
        self.with(|it| {
            let mut allowed = false;
            let mut found = None;
            for s in it {
                allowed |= s.allows(bind.peer);
                if found.is_none() && s.system_id.as_bytes() == bind.system_id {
                    found = Some(s);
                }
            }
            if !allowed {
                return Err(BindRefusal::AddressNotAllowed);
            }
            let system = found.ok_or(BindRefusal::UnknownSystem)?;
            if !system.allows(bind.peer) {
                return Err(BindRefusal::AddressNotAllowed);
            }
            if !password_matches(system.password.as_bytes(), bind.password) {
                return Err(BindRefusal::BadPassword);
            }
            // Out of service by the operator's word: refused after the credentials, so
            // the refusal tells only the system itself.
            if self.operator.as_ref().is_some_and(|s| s.is_disabled(system.id)) {
                return Err(BindRefusal::Failed);
            }
            Ok(LegacySystemId(system.id))
        })
    }
}

/// Requests waiting at most for room in one session's window; beyond, they are handed
/// back to the flows as unsendable (a receipt returns to its lane, a part fails).
pub(super) const SEND_WAIT_MAX: usize = 1024;

/// Whether a request a session refused may go later.
pub(super) enum Sendable {
    /// Its window, output or a throttle is full: later.
    Later,
    /// Not bound, not permitted, unencodable: never on this session.
    Never,
}

/// Offers `req` to `session`: its sequence number, or why not.
pub(super) fn send_to(session: &mut Session, now: u64, req: &crate::flow::SmppSend) -> Result<u32, Sendable> {
    use crate::session::smpp::SendError;
    // Written once by the engine's encoder; the session only fills in the sequence.
    session.send_encoded(now, req.item.pdu()).map_err(|e| match e {
        SendError::WindowFull | SendError::OutputFull | SendError::Throttled { .. } => Sendable::Later,
        _ => Sendable::Never,
    })
}

/// One SMPP session and what the glue keeps beside it.
#[derive(Debug)]
pub(super) struct SmppConn {
    pub(super) session: Session,
    /// iwf's requests waiting for room in the session's window, in order (a
    /// converged message's part is never failed for want of window).
    pub(super) waiting: std::collections::VecDeque<crate::flow::SmppSend>,
    /// The connection the waiting requests are for.
    pub(super) conn_id: ConnRef,
    /// Sequence numbers of this poll's requests, answered after the input was read.
    pub(super) pending: Vec<u32>,
    /// The bound system's window.
    pub(super) window: usize,
    /// When the window was last read from the live provisioning (a reload changes it).
    pub(super) window_read: u64,
    /// The session's counters at the last look (deltas go to the port's counters).
    pub(super) seen: SessionCounters,
}

/// Room every server session allocates for the peer's requests: the most any system's
/// window may become by a reload without a restart (each bind holds its own system's).
pub(super) const WINDOW_ROOM: usize = 256;

/// An SMSC iwf binds to as an ESME.
#[derive(Debug, Clone, Copy)]
pub struct SmscClient {
    /// The legacy system it is.
    pub system: u16,
    /// Its address.
    pub remote: SocketAddrV4,
    /// iwf's credentials.
    pub credentials: Credentials,
    /// Requests outstanding at most.
    pub window: usize,
    /// Reconnect back-off.
    pub reconnect: ReconnectConfig,
}

/// Moves a session's counter increases into the port's SMPP counters.
pub(super) fn sync_counters(seen: &mut SessionCounters, now: &SessionCounters, sc: &SmppCounters) {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    sc.pdus_in.add(d(now.pdus_in.total(), seen.pdus_in.total()));
    sc.pdus_out.add(d(now.pdus_out.total(), seen.pdus_out.total()));
    sc.enquire_link_in.add(d(now.pdus_in.enquire_link, seen.pdus_in.enquire_link));
    sc.enquire_link_out.add(d(now.pdus_out.enquire_link, seen.pdus_out.enquire_link));
    sc.unbind_in.add(d(now.pdus_in.unbind, seen.pdus_in.unbind));
    sc.generic_nack_out.add(d(now.pdus_out.generic_nack, seen.pdus_out.generic_nack));
    sc.throttled.add(d(now.throttled_window_full, seen.throttled_window_full));
    sc.bind_refused_system_id.add(d(now.binds_refused_system_id, seen.binds_refused_system_id));
    sc.bind_refused_password.add(d(now.binds_refused_password, seen.binds_refused_password));
    sc.bind_refused_address.add(d(now.binds_refused_address, seen.binds_refused_address));
    sc.bind_refused_other.add(d(
        now.binds_refused_too_many + now.binds_refused_other + now.binds_malformed,
        seen.binds_refused_too_many + seen.binds_refused_other + seen.binds_malformed,
    ));
    *seen = *now;
}

pub(super) fn smpp_event(
    now: u64,
    e: Event,
    service: &mut Service,
    window: &mut usize,
    directory: &Directory,
    sc: &SmppCounters,
) {
    match (e, service) {
        (Event::Bound { system: Some(id), .. }, _) => {
            sc.binds_ok.inc();
            *window = directory.window(id);
        }
        (Event::Bound { system: None, .. }, Service::SmppClient { reconnect, .. }) => {
            reconnect.bound();
            sc.client_bound.inc();
            sc.client_up.set(1);
        }
        (Event::Closed { reason }, Service::SmppClient { reconnect, .. }) => {
            sc.sessions_closed.inc();
            sc.client_up.set(0);
            match reason {
                crate::session::smpp::CloseReason::AuthRejected(_) => sc.client_auth_rejected.inc(),
                crate::session::smpp::CloseReason::BindFailed(_) | crate::session::smpp::CloseReason::BindTimeout => {
                    sc.client_bind_failed.inc()
                }
                _ => sc.client_lost.inc(),
            }
            reconnect.closed(now, reason);
        }
        (Event::Closed { .. }, _) => sc.sessions_closed.inc(),
        _ => {}
    }
}

/// One pass of an SMPP connection: read what the socket holds (answering each request
/// after the input, `ESME_RTHROTTLED` beyond the bind's window), run the timers, write
/// what the session has to send.
pub(super) fn drive_smpp(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    conn: &mut SmppConn,
    auth: &mut dyn Authenticator,
    sc: &SmppCounters,
    mut flows: Option<(&mut Flows, ConnRef)>,
) {
    let window = conn.window.max(1).min(conn.pending.capacity().max(1));
    // Input stops right after the bind completes, until the caller has handed the
    // session's Bound event to the flows: a receipt or message that came in the same
    // segment as the bind (an SMSC sends its queued receipts at once) must find its
    // bind known there, or it is refused as unbound.
    let bound_before = matches!(conn.session.state(), SmppState::Bound(_));
    let mut just_bound = false;
    for _ in 0..4 {
        let mut progressed = false;
        while sock.can_recv() && !just_bound {
            let session = &mut conn.session;
            let pending = &mut conn.pending;
            let used = sock
                .recv(|buf| {
                    let mut used = 0usize;
                    loop {
                        if !bound_before && matches!(session.state(), SmppState::Bound(_)) {
                            just_bound = true;
                            break;
                        }
                        let input = session.handle_input(now, buf.get(used..).unwrap_or(&[]), auth);
                        let consumed = input.consumed;
                        let request = input.request.map(|p| p.sequence_number);
                        if let (Some(pdu), Some((f, id))) = (input.request, flows.as_mut()) {
                            // The flows answer it later; beyond the window the session
                            // itself answered ESME_RTHROTTLED at once (and counted it).
                            let seq = pdu.sequence_number;
                            f.handle(now, Input::SmppRequest { conn: *id, seq, pdu: &pdu });
                            used = used.saturating_add(consumed);
                            continue;
                        }
                        used = used.saturating_add(consumed);
                        if let Some(seq) = request {
                            if pending.len() < window {
                                pending.push(seq);
                            } else if session.respond(seq, CommandStatus::ESME_RTHROTTLED, b"").is_ok() {
                                sc.throttled.inc();
                            }
                        }
                        if consumed == 0 && request.is_none() {
                            break;
                        }
                    }
                    (used, used)
                })
                .unwrap_or(0);
            if used == 0 {
                break;
            }
            progressed = true;
        }
        // Without flows (a configuration with no legacy → converged path): iwf cannot deliver them
        // and must never acknowledge what it has not delivered: ESME_RX_T_APPN
        // ("temporary application error, retry").
        for seq in conn.pending.drain(..) {
            if conn.session.respond(seq, CommandStatus::ESME_RX_T_APPN, b"").is_ok() {
                sc.rx_t_appn.inc();
            }
        }
        if conn.session.poll_timeout().is_some_and(|t| t <= now) {
            conn.session.handle_timeout(now);
        }
        let session = &mut conn.session;
        if sock.can_send() && session.buffered_output() > 0 {
            let n = sock
                .send(|buf| {
                    let n = session.poll_transmit(buf);
                    (n, n)
                })
                .unwrap_or(0);
            progressed |= n > 0;
        }
        if !progressed || !sock.can_recv() || just_bound {
            break;
        }
    }
}

/// Tells the flows what a session event means for them.
pub(super) fn flow_event(f: &mut Flows, now: u64, conn: ConnRef, e: &Event, service: &Service) {
    let input = match (e, service) {
        (Event::Bound { system: Some(id), bind_type }, _) => {
            Input::Bound { conn, system: id.0, receives: bind_type.receives() }
        }
        (Event::Bound { system: None, .. }, Service::SmppClient { system, .. }) => {
            Input::Bound { conn, system: *system, receives: true }
        }
        (Event::Response { seq, status, message_id, .. }, _) => {
            Input::SmppResponse { conn, seq: *seq, status: *status, message_id: message_id.as_bytes() }
        }
        (Event::ResponseTimeout { seq, .. } | Event::Abandoned { seq, .. }, _) => Input::SmppLost { conn, seq: *seq },
        (Event::Closed { .. }, _) => Input::Closed { conn },
        _ => return,
    };
    f.handle(now, input);
}
