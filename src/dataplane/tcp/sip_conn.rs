//! SIP over TCP: served streams (framed by Content-Length, each request through the
//! same transaction layer as UDP) and the stream iwf opens to its next hop for requests
//! too large for UDP.
use super::*;
use crate::session::sip::Rejection;

/// Bytes buffered per SIP-over-TCP stream at rest: a message's header section must
/// fit, and most messages do whole. A larger message grows its stream's buffer to its
/// size (up to `[sip] max_message_bytes`) out of the [`StreamBudget`], given back
/// once it is read.
pub const SIP_STREAM_BUFFER: usize = 8192;

/// Octets the SIP-over-TCP streams may hold beyond their buffers at rest, all ports
/// and workers together (`[sip] stream_memory_mb`): a flood of large messages is
/// answered 503 rather than taking the machine's memory.
#[derive(Debug)]
pub struct StreamBudget {
    left: std::sync::atomic::AtomicUsize,
}

impl StreamBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> StreamBudget {
        StreamBudget { left: std::sync::atomic::AtomicUsize::new(bytes) }
    }

    /// Takes `n` octets if that many are left.
    pub fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(n)).is_ok()
    }

    /// Gives `n` octets back.
    pub fn give(&self, n: usize) {
        self.left.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
    }

    /// Octets left.
    pub fn left(&self) -> usize {
        self.left.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// One SIP-over-TCP stream's input: its buffer (grown for a large message), the
/// octets it holds, and the octets of a refused message's body still to skip.
#[derive(Debug)]
pub(super) struct StreamIn {
    pub(super) buf: Vec<u8>,
    pub(super) len: usize,
    pub(super) skip: usize,
    /// While the buffer is grown: when the message must be whole (a peer that sends a
    /// large head and then nothing would hold the budget for ever).
    pub(super) grown_until: u64,
}

impl StreamIn {
    pub(super) fn new() -> StreamIn {
        StreamIn { buf: vec![0u8; SIP_STREAM_BUFFER], len: 0, skip: 0, grown_until: 0 }
    }

    /// Back to rest: nothing held, the buffer's growth given back.
    pub(super) fn reset(&mut self, budget: &StreamBudget) {
        self.len = 0;
        self.skip = 0;
        self.shrink(budget);
    }

    /// Gives a grown buffer's growth back once what it holds fits the buffer at rest.
    fn shrink(&mut self, budget: &StreamBudget) {
        if self.buf.len() > SIP_STREAM_BUFFER && self.len <= SIP_STREAM_BUFFER {
            budget.give(self.buf.len() - SIP_STREAM_BUFFER);
            self.buf.truncate(SIP_STREAM_BUFFER);
            self.buf.shrink_to_fit();
        }
    }
}

/// How long a large message may take to arrive whole once its head is read, ms (Timer
/// F's 64·T1: the sender gives up on it by then anyway).
pub(super) const LARGE_MESSAGE_MS: u64 = 32_000;

/// What a stream may hold: the largest message, and the shared budget its growth
/// comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamLimits<'a> {
    pub(super) max_message: usize,
    pub(super) budget: &'a StreamBudget,
}

/// Room a SIP response may need in the socket's send buffer before a request is read.
pub(super) const SIP_REPLY_MAX: usize = 2048;

/// A request iwf sent on its SIP-over-TCP connection, waiting for its final response.
#[derive(Debug)]
pub(super) struct StreamRequest {
    /// The Via branch (the transaction, RFC 3261 §17.1.3).
    pub(super) branch: String,
    /// The flows' token.
    pub(super) token: u64,
    /// Timer F (64·T1 after sending): no final response → 408.
    pub(super) deadline: u64,
}

/// Requests waiting for the connection to the next hop, at most.
pub(super) const SIP_CLIENT_QUEUE: usize = 256;

/// Timer F for requests over TCP when none is configured (64·T1, T1 = 500 ms).
pub(super) const SIP_CLIENT_TIMER_F_MS: u64 = 32_000;

/// One pass of a SIP-over-TCP stream: append what the socket holds, then answer each
/// whole request (framed by Content-Length) through the transaction layer and the UAS
/// policy, while the send buffer has room for a response.
#[allow(clippy::too_many_arguments)]
pub(super) fn sip_stream(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    input: &mut StreamIn,
    limits: StreamLimits<'_>,
    peer: SocketAddrV4,
    server: &mut ServerTransactions,
    policy: &mut UasPolicy<Route>,
    reply: &mut [u8],
    tc: &TcpCounters,
    mut flows: Option<(&mut Flows, (u8, u16))>,
) {
    sip_frames(now, sock, input, limits, tc, true, |sock, frame| {
        let message = match frame {
            Frame::Whole(message, _) => message,
            Frame::Refused(head, reason) => {
                if sock.send_capacity().saturating_sub(sock.send_queue()) < reply.len() {
                    return false; // answered on a later pass, once the peer read ours
                }
                tc.sip_requests.inc();
                tc.sip_refused_large.inc();
                if let Incoming::Rejected { reply: Some(r), .. } = server.refuse_head(peer, head, reason, reply) {
                    tc.sip_tx_other.inc();
                    let _ = sock.send_slice(reply.get(..r.len).unwrap_or(&[]));
                }
                return true;
            }
        };
        if sock.send_capacity().saturating_sub(sock.send_queue()) < reply.len() {
            return false; // back-pressure: the peer reads our responses first
        }
        tc.sip_requests.inc();
        let mut headers = [Header::EMPTY; MAX_HEADERS];
        let sent = match server.handle_request(now, peer, message, &mut headers, reply) {
            Incoming::New { id, request, core, .. } => match flows.as_mut() {
                // A MESSAGE goes to the flows, answered when its flow completes.
                Some((f, (port, slot))) if core.cseq.method == crate::wire::sip::Method::Message => {
                    let txn = SipTxn::Tcp { port: *port, slot: *slot, id };
                    f.handle(now, Input::SipMessage { txn, msg: &request, raw: message });
                    None
                }
                _ => {
                    let answer = policy.answer(&core, &request);
                    server.respond(now, id, &answer.response(), reply).ok()
                }
            },
            Incoming::Retransmission { reply: r } | Incoming::Rejected { reply: r, .. } => r,
        };
        if let Some(r) = sent {
            let out = reply.get(..r.len).unwrap_or(&[]);
            if out.get(8) == Some(&b'2') {
                tc.sip_tx_2xx.inc();
            } else {
                tc.sip_tx_other.inc();
            }
            let _ = sock.send_slice(out);
        }
        true
    });
}

/// What a stream hands on: a whole message (its octets and its parse), or one it will
/// not read whole, refused from its head (413: over the maximum; 503: no memory now)
/// while its body is skipped.
pub(super) enum Frame<'f, 'a, 'h> {
    /// A whole message.
    Whole(&'f [u8], &'f Message<'a, 'h>),
    /// A message to refuse, known by its head.
    Refused(&'f Message<'a, 'h>, Rejection),
}

/// Reads what `sock` holds into the stream's buffer and hands each whole SIP message in
/// it (framed by Content-Length; CRLF keep-alives between messages skipped, RFC 5626
/// §3.5.1) to `each`, with the socket and the parsed message; `each` returns false to
/// leave that message for the next pass (back-pressure).
///
/// A message larger than the buffer at rest grows it to the message's size out of the
/// budget; one over `max_message`, or one the budget cannot hold now, is handed on as
/// [`Frame::Refused`] when the stream `refuses` (a served stream answers it), its body
/// skipped as it arrives; else (iwf's own connection, whose peer sends responses) it
/// breaks the stream. A stream that cannot be framed (no Content-Length, garbage, a
/// header section over the buffer) cannot be resynchronised: counted and aborted.
pub(super) fn sip_frames(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    input: &mut StreamIn,
    limits: StreamLimits<'_>,
    tc: &TcpCounters,
    refuses: bool,
    mut each: impl FnMut(&mut tcp::Socket<'_>, Frame<'_, '_, '_>) -> bool,
) {
    let parser = crate::wire::sip::Parser::stream().with_max_message_len(limits.max_message.max(SIP_STREAM_BUFFER));
    if input.buf.len() > SIP_STREAM_BUFFER && now > input.grown_until {
        // A large message that stopped coming: its memory goes back, the stream cannot
        // be framed again.
        tc.sip_stream_errors.inc();
        input.reset(limits.budget);
        sock.abort();
        return;
    }
    loop {
        while input.skip > 0 {
            // The socket's buffer is a ring: one recv sees up to its end, so go on.
            let skipped = sock
                .recv(|data| {
                    let n = data.len().min(input.skip);
                    (n, n)
                })
                .unwrap_or(0);
            input.skip -= skipped;
            if skipped == 0 {
                return;
            }
        }
        let StreamIn { buf, len, .. } = input;
        if *len < buf.len() && sock.can_recv() {
            if let Ok(n) = sock.recv_slice(buf.get_mut(*len..).unwrap_or(&mut [])) {
                *len = (*len).saturating_add(n).min(buf.len());
            }
        }
        let skip = buf.get(..*len).unwrap_or(&[]).iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        if skip > 0 {
            buf.copy_within(skip..*len, 0);
            *len -= skip;
            continue;
        }
        if *len == 0 {
            return;
        }
        let mut headers = [Header::EMPTY; MAX_HEADERS];
        let framed = match parser.parse(buf.get(..*len).unwrap_or(&[]), &mut headers) {
            Ok(Status::Complete(n, m)) => {
                if !each(sock, Frame::Whole(buf.get(..n).unwrap_or(&[]), &m)) {
                    return;
                }
                n
            }
            Ok(Status::Partial) if *len < buf.len() => return,
            Ok(Status::Partial) | Err(crate::wire::sip::Error::TooLong) => {
                // The buffer is full and the message is not whole: grow for it, or refuse it.
                match make_room(now, sock, input, limits, tc, refuses, &mut each) {
                    true => continue,
                    false => return,
                }
            }
            Err(_) => {
                tc.sip_stream_errors.inc();
                input.len = 0;
                sock.abort();
                return;
            }
        };
        buf.copy_within(framed..*len, 0);
        *len -= framed;
        input.shrink(limits.budget);
    }
}

/// A full buffer holding the start of a message larger than it: grow the buffer to the
/// message's size out of the budget (true: read on), or refuse the message from its
/// head and skip the rest of it (true), or break a stream that cannot be framed
/// (false).
fn make_room(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    input: &mut StreamIn,
    limits: StreamLimits<'_>,
    tc: &TcpCounters,
    refuses: bool,
    each: &mut impl FnMut(&mut tcp::Socket<'_>, Frame<'_, '_, '_>) -> bool,
) -> bool {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    let held = input.buf.get(..input.len).unwrap_or(&[]);
    let head = crate::wire::sip::Parser::stream().parse_head(held, &mut headers);
    let (head_len, m) = match head {
        Ok(Status::Complete(n, m)) if m.content_length().is_some() => (n, m),
        _ => {
            tc.sip_stream_errors.inc();
            input.len = 0;
            sock.abort();
            return false;
        }
    };
    let total = head_len.saturating_add(m.content_length().unwrap_or(0));
    let reason = if total > limits.max_message {
        Rejection::EntityTooLarge
    } else if limits.budget.take(total - input.buf.len()) {
        input.buf.reserve_exact(total - input.buf.len());
        input.buf.resize(total, 0);
        input.grown_until = now.saturating_add(LARGE_MESSAGE_MS);
        return true;
    } else {
        Rejection::NoRoom
    };
    if !refuses {
        tc.sip_stream_errors.inc();
        input.len = 0;
        sock.abort();
        return false;
    }
    if !each(sock, Frame::Refused(&m, reason)) {
        return false; // no room to answer yet: tried again on the next pass
    }
    let skip = total.saturating_sub(input.len);
    input.len = 0;
    if skip > limits.max_message {
        // Skipping more than any message may hold (a Content-Length out of all reason)
        // would swallow the stream: it closes once the answer is out (RFC 3261 §21.4.11
        // allows it).
        tc.sip_stream_errors.inc();
        sock.close();
        return false;
    }
    input.skip = skip;
    true
}

/// The branch of a message's top Via.
pub(super) fn top_branch(m: &Message<'_, '_>) -> Option<String> {
    m.top_via().ok().and_then(|v| v.branch().map(str::to_string))
}

/// The Via branch of a request iwf wrote (`;branch=` of its top Via).
pub(super) fn branch_of(request: &[u8]) -> String {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    match parse_stream(request, &mut headers) {
        Ok(Status::Complete(_, m)) => top_branch(&m).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The writing of a request larger than the send buffer, begun and not finished.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sending {
    /// Octets written.
    pub(super) octets: usize,
    /// When it must be finished (Timer F from its first octet: a next hop that stops
    /// reading does not hold it for ever).
    pub(super) until: u64,
}

/// iwf's own SIP-over-TCP connection's state, as one pass uses it.
pub(super) struct ClientStream<'a> {
    /// The responses' input.
    pub(super) input: &'a mut StreamIn,
    /// Its limits.
    pub(super) limits: StreamLimits<'a>,
    /// The first waiting request's writing, once begun.
    pub(super) sending: &'a mut Sending,
    /// The requests waiting to be written, and those written awaiting their final.
    pub(super) out: &'a mut std::collections::VecDeque<(u64, Vec<u8>)>,
    pub(super) sent: &'a mut Vec<StreamRequest>,
    /// Timer F of a written request.
    pub(super) timer_f_ms: u64,
}

/// One pass of iwf's own SIP-over-TCP connection to the next hop: write the requests
/// that wait, as far as the send buffer takes them (a request larger than the buffer
/// goes over several passes, its Timer F started when its last octet is written), then
/// read responses (framed by Content-Length) and hand each final one to the flows by
/// its Via branch.
pub(super) fn sip_client_stream(
    now: u64,
    sock: &mut tcp::Socket<'_>,
    stream: ClientStream<'_>,
    mut flows: Option<&mut Flows>,
    tc: &TcpCounters,
) {
    let ClientStream { input, limits, sending, out, sent, timer_f_ms } = stream;
    if sending.octets > 0 && now > sending.until {
        // Half a request is on the wire and the next hop stopped reading: it gets 408,
        // and the connection (whose stream is cut mid-request) goes.
        if let Some((token, _)) = out.pop_front() {
            tc.sip_client_timeouts.inc();
            if let Some(f) = flows.as_deref_mut() {
                f.handle(now, Input::SipFinal { token, status: 408 });
            }
        }
        *sending = Sending::default();
        sock.abort();
        return;
    }
    // The next hop closed its side (FIN): a request started now would meet its RST, so
    // none starts; ours closes once nothing is half sent, and what waits goes on the next
    // connection. Responses it sent before its FIN are still read below.
    let half_closed = sock.state() == TcpState::CloseWait;
    if half_closed && sending.octets == 0 {
        sock.close();
    }
    while let Some((_, bytes)) = out.front() {
        if !sock.may_send() || (half_closed && sending.octets == 0) {
            break;
        }
        if sending.octets == 0 {
            sending.until = now.saturating_add(timer_f_ms);
        }
        let rest = bytes.get(sending.octets..).unwrap_or(&[]);
        sending.octets += sock.send_slice(rest).unwrap_or(0);
        if sending.octets < bytes.len() {
            break; // the send buffer is full: the rest goes on a later pass
        }
        *sending = Sending::default();
        let Some((token, bytes)) = out.pop_front() else { break };
        tc.sip_client_sent.inc();
        sent.push(StreamRequest { branch: branch_of(&bytes), token, deadline: now.saturating_add(timer_f_ms) });
        if let Some(f) = flows.as_deref_mut() {
            f.recycle(bytes);
        }
    }
    sip_frames(now, sock, input, limits, tc, false, |_, frame| {
        let Frame::Whole(_, m) = frame else { return true };
        match (m.status_code(), top_branch(m)) {
            (Some(code), Some(branch)) => {
                tc.sip_client_responses.inc();
                if code >= 200 {
                    if let Some(i) = sent.iter().position(|r| r.branch == branch) {
                        let r = sent.swap_remove(i);
                        if let Some(f) = flows.as_deref_mut() {
                            f.handle(now, Input::SipFinal { token: r.token, status: code });
                        }
                    }
                }
            }
            // A request on iwf's client connection (or a response without a branch):
            // not iwf's business here; counted.
            _ => tc.sip_client_ignored.inc(),
        }
        true
    });
}
