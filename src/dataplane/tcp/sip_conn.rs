//! SIP over TCP: served streams (framed by Content-Length, each request through the
//! same transaction layer as UDP) and the stream iwf opens to its next hop for requests
//! too large for UDP.
use super::*;

/// Bytes buffered per SIP-over-TCP stream (one request must fit).
pub const SIP_STREAM_BUFFER: usize = 8192;

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
    buf: &mut [u8],
    len: &mut usize,
    peer: SocketAddrV4,
    server: &mut ServerTransactions,
    policy: &mut UasPolicy<Route>,
    reply: &mut [u8],
    tc: &TcpCounters,
    mut flows: Option<(&mut Flows, (u8, u16))>,
) {
    sip_frames(sock, buf, len, tc, |sock, message, _| {
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

/// Reads what `sock` holds into `buf` (`*len` octets held) and hands each whole SIP
/// message in it (framed by Content-Length; CRLF keep-alives between messages skipped,
/// RFC 5626 §3.5.1) to `each`, with the socket and the parsed message; `each` returns
/// false to leave that message for the next pass (back-pressure). A stream that cannot
/// be framed (no Content-Length, garbage, longer than the buffer) cannot be
/// resynchronised: counted and aborted.
pub(super) fn sip_frames(
    sock: &mut tcp::Socket<'_>,
    buf: &mut [u8],
    len: &mut usize,
    tc: &TcpCounters,
    mut each: impl FnMut(&mut tcp::Socket<'_>, &[u8], &Message<'_, '_>) -> bool,
) {
    loop {
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
        let framed = match parse_stream(buf.get(..*len).unwrap_or(&[]), &mut headers) {
            Ok(Status::Complete(n, m)) => {
                if !each(sock, buf.get(..n).unwrap_or(&[]), &m) {
                    return;
                }
                n
            }
            Ok(Status::Partial) if *len < buf.len() => return,
            Ok(Status::Partial) | Err(_) => {
                tc.sip_stream_errors.inc();
                *len = 0;
                sock.abort();
                return;
            }
        };
        buf.copy_within(framed..*len, 0);
        *len -= framed;
    }
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

/// iwf's own SIP-over-TCP connection's state, as one pass uses it.
pub(super) struct ClientStream<'a> {
    /// The response buffer and the octets it holds.
    pub(super) buf: &'a mut [u8],
    pub(super) len: &'a mut usize,
    /// Octets of the first waiting request already written.
    pub(super) sending: &'a mut usize,
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
    let ClientStream { buf, len, sending, out, sent, timer_f_ms } = stream;
    while let Some((_, bytes)) = out.front() {
        if !sock.may_send() {
            break;
        }
        let rest = bytes.get(*sending..).unwrap_or(&[]);
        *sending += sock.send_slice(rest).unwrap_or(0);
        if *sending < bytes.len() {
            break; // the send buffer is full: the rest goes on a later pass
        }
        *sending = 0;
        let Some((token, bytes)) = out.pop_front() else { break };
        tc.sip_client_sent.inc();
        sent.push(StreamRequest { branch: branch_of(&bytes), token, deadline: now.saturating_add(timer_f_ms) });
        if let Some(f) = flows.as_deref_mut() {
            f.recycle(bytes);
        }
    }
    sip_frames(sock, buf, len, tc, |_, _, m| {
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
