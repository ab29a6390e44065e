//! SIP non-INVITE transactions over UDP (RFC 3261 §17), sans-IO.
//!
//! - [`ServerTransactions`]: the UAS side (§17.2.2). [`ServerTransactions::handle_request`]
//!   takes a datagram and says whether it is a [`Incoming::New`] transaction
//!   for the application, a retransmission (answered with the stored response),
//!   or a request the transaction layer rejects by itself (400, 405, 416, 481,
//!   483, 503, 513 — statelessly, RFC 3261 §8.2.7, so a flood of bad requests
//!   takes no table space). The application answers with
//!   [`ServerTransactions::respond`]; the final response is stored and resent
//!   to retransmissions until Timer J (64·T1) frees the entry.
//! - [`ClientTransactions`]: the UAC side (§17.1.2) for iwf's own MESSAGEs
//!   (IMDNs, converted messages): [`ClientTransactions::start`],
//!   [`ClientTransactions::poll_transmit`] (first send and Timer E
//!   retransmissions), [`ClientTransactions::handle_response`],
//!   [`ClientTransactions::poll_event`] ([`Event::Final`], [`Event::Timeout`]
//!   at Timer F), Timer K absorbing response retransmissions.
//! - [`UasPolicy`]: what iwf answers (OPTIONS → 200 with Allow/Accept, MESSAGE →
//!   a route hook, 404 by default), kept apart from the state machines.
//!
//! Plugging into a packet path (one instance of each table per core): a UDP
//! datagram on the SIP port goes by [`classify`] to the server table
//! (requests) or the client table (responses). Request retransmissions share
//! the original's 5-tuple, so RSS keeps them on the core holding the server
//! transaction; a response may land anywhere, so [`response_owner`] reads the
//! owning core out of the branch [`ClientTransactions::new_branch`] wrote.
//! Outputs are written into a caller buffer (an mbuf's data room): 1500 bytes
//! per datagram.
//!
//! Time is `now: u64` milliseconds from any monotonic origin the caller picks.
//! Each table has a fixed capacity chosen at construction (its storage is
//! allocated once, in `new`); a full table is an error the layer answers with
//! `503` + `Retry-After` (server) or returns ([`ClientError::TableFull`]).
//!
//! ```
//! use iwf::session::sip::{Incoming, Response, ServerConfig, ServerTransactions};
//! use iwf::wire::sip::Header;
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! let mut uas = ServerTransactions::new(ServerConfig::default());
//! let req = b"OPTIONS sip:iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1;branch=z9hG4bK1\r\n\
//! From: <sip:p@ims.lab>;tag=1\r\nTo: <sip:iwf.ims.lab>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
//! let src = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);
//! let (mut headers, mut out) = ([Header::EMPTY; 32], [0u8; 1500]);
//! let id = match uas.handle_request(0, src, req, &mut headers, &mut out) {
//!     Incoming::New { id, .. } => id,
//!     other => panic!("{other:?}"),
//! };
//! let reply = uas.respond(0, id, &Response::new(200, "OK"), &mut out).unwrap();
//! assert!(out[..reply.len].starts_with(b"SIP/2.0 200 OK\r\n"));
//! assert_eq!(reply.to, src);
//! ```

use std::hash::Hasher;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher13;

use crate::wire::sip::{Header, Host, Method, Via};

mod client;
mod policy;
mod server;
mod table;

pub use client::{
    branch_owner, response_owner, Branch, ClientConfig, ClientCounters, ClientError, ClientTransactions, ClientTxId,
    Event, ResponseMatch, Transmit,
};
pub use policy::{unknown_recipient, Answer, UasPolicy, ACCEPT, ALLOW};
pub use server::{
    Incoming, Rejection, Response, ServerConfig, ServerCounters, ServerError, ServerTransactions, ServerTxId,
    MALFORMED_REASONS,
};

/// The RFC 3261 timer base values (§17.1.1.1, table 4), in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// T1, the RTT estimate (500 ms).
    pub t1: u64,
    /// T2, the cap on non-INVITE request retransmission intervals (4 s).
    pub t2: u64,
    /// T4, how long a message may stay in the network (5 s).
    pub t4: u64,
}

impl Timers {
    /// The RFC 3261 defaults: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
    pub const RFC3261: Timers = Timers { t1: 500, t2: 4_000, t4: 5_000 };

    /// Timer F, the client's give-up time: 64·T1.
    pub fn timer_f(&self) -> u64 {
        self.t1.saturating_mul(64)
    }

    /// Timer J, how long a completed server transaction absorbs
    /// retransmissions over UDP: 64·T1.
    pub fn timer_j(&self) -> u64 {
        self.t1.saturating_mul(64)
    }

    /// Timer K, how long a completed client transaction absorbs response
    /// retransmissions over UDP: T4.
    pub fn timer_k(&self) -> u64 {
        self.t4
    }
}

impl Default for Timers {
    fn default() -> Self {
        Timers::RFC3261
    }
}

/// A message written into the caller's buffer, to be sent to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes written at the front of the caller's `out` buffer.
    pub len: usize,
    /// Destination (RFC 3261 §18.2.2 with RFC 3581 `rport`).
    pub to: SocketAddrV4,
}

/// What a UDP datagram on the SIP port is, from its first bytes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramKind {
    /// Starts like a request: hand it to [`ServerTransactions::handle_request`].
    Request,
    /// Starts with `SIP/2.0 `: hand it to [`ClientTransactions::handle_response`].
    Response,
    /// Only CR/LF (an RFC 5626 keep-alive) or empty: nothing to answer.
    KeepAlive,
}

/// Classify a datagram without parsing it, to pick the table it goes to.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    let start = datagram.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(datagram.len());
    let rest = datagram.get(start..).unwrap_or(&[]);
    if rest.is_empty() {
        DatagramKind::KeepAlive
    } else if rest.starts_with(b"SIP/2.0 ") {
        DatagramKind::Response
    } else {
        DatagramKind::Request
    }
}

/// Where a response to a request from `src` with top Via `via` goes over UDP
/// (RFC 3261 §18.2.2): the source address (the `received` address), to the
/// source port if the Via asks for `rport` (RFC 3581), else to the sent-by
/// port or 5060.
pub fn reply_address(via: &Via<'_>, src: SocketAddrV4) -> SocketAddrV4 {
    let port = if via.rport().is_some() { src.port() } else { via.port.unwrap_or(5060) };
    SocketAddrV4::new(*src.ip(), port)
}

/// Write a transaction key into `buf`: `branch NUL sent-by-host NUL port
/// method` (host lowercased, as sent-by compares case-insensitively;
/// §17.2.3). `None` if it does not fit.
pub(crate) fn transaction_key<'k>(
    buf: &'k mut [u8],
    branch: &str,
    sent_by: Option<&Via<'_>>,
    method: Method<'_>,
) -> Option<&'k [u8]> {
    let mut w = KeyWriter { buf, len: 0 };
    w.put(branch.as_bytes())?;
    w.put(&[0])?;
    if let Some(via) = sent_by {
        match via.host {
            Host::Domain(d) => {
                for c in d.bytes() {
                    w.put(&[c.to_ascii_lowercase()])?;
                }
            }
            Host::Ipv4(a) => w.put(&a.octets())?,
            Host::Ipv6(a) => w.put(&a.octets())?,
        }
        w.put(&[0])?;
        w.put(&via.port.map_or([0xff; 3], |p| {
            let [h, l] = p.to_be_bytes();
            [0, h, l]
        }))?;
    }
    w.put(method.as_str().as_bytes())?;
    let KeyWriter { buf, len } = w;
    buf.get(..len)
}

struct KeyWriter<'k> {
    buf: &'k mut [u8],
    len: usize,
}

impl KeyWriter<'_> {
    fn put(&mut self, b: &[u8]) -> Option<()> {
        let end = self.len.checked_add(b.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(b);
        self.len = end;
        Some(())
    }
}

/// A To tag: 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tag([u8; 16]);

impl Tag {
    /// A tag derived from the request's identifying fields (the raw top Via,
    /// From, Call-ID and CSeq), so that a retransmission of the request gets a
    /// byte-identical response even from a stateless answer.
    pub(crate) fn derive(hasher: &SipHasher13, headers: &[Header<'_>]) -> Tag {
        let mut h = *hasher;
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            if let Some(v) = headers.iter().find(|x| x.is(name)) {
                h.write(v.value.as_bytes());
            }
            h.write_u8(0);
        }
        Tag::from_u64(h.finish())
    }

    pub(crate) fn from_u64(v: u64) -> Tag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let nibble = (v >> (60 - 4 * i)) & 0xf;
            *o = HEX.get(nibble as usize).copied().unwrap_or(b'0');
        }
        Tag(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    //! Both tables together on a virtual clock, through an in-memory link.
    use super::*;
    use crate::wire::sip::MessageWriter;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const IWF: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 2), 5060);
    const CORE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);

    fn build_message(branch: &str, out: &mut [u8]) -> usize {
        let mut w = MessageWriter::request(out, Method::Message, "sip:+447000200001@ims.lab").unwrap();
        w.header_fmt("Via", format_args!("SIP/2.0/UDP 198.18.2.2:5060;branch={branch}"))
            .unwrap()
            .header_u32("Max-Forwards", 70)
            .unwrap()
            .header("From", "<sip:+447000100001@iwf.ims.lab>;tag=iwf1")
            .unwrap()
            .header("To", "<sip:+447000200001@ims.lab>")
            .unwrap()
            .header("Call-ID", "lossy@iwf.ims.lab")
            .unwrap()
            .header("CSeq", "1 MESSAGE")
            .unwrap()
            .header("Content-Type", "text/plain")
            .unwrap();
        w.finish(b"hello over a lossy link").unwrap()
    }

    /// A UAC (iwf) sends a MESSAGE to a UAS (the core) that answers with the
    /// policy's verdict; the link drops the first `lost_requests` requests
    /// and the first `lost_responses` responses. Returns the final event,
    /// both sides' counters and when the event came.
    fn lossy_exchange(
        lost_requests: usize,
        lost_responses: usize,
        status: u16,
    ) -> (Event, ClientCounters, ServerCounters, u64) {
        let mut uac = ClientTransactions::new(ClientConfig::default());
        let mut uas = ServerTransactions::new(ServerConfig::default());
        let branch = uac.new_branch();
        let mut req = [0u8; 1500];
        let n = build_message(branch.as_str(), &mut req);
        let id = uac.start(0, &req[..n], CORE).unwrap();
        let (mut requests, mut responses) = (0usize, 0usize);
        let mut lose = |dg: &[u8]| {
            let (count, limit) = match classify(dg) {
                DatagramKind::Response => (&mut responses, lost_responses),
                _ => (&mut requests, lost_requests),
            };
            *count += 1;
            *count <= limit
        };
        let (mut out, mut reply) = ([0u8; 1500], [0u8; 1500]);
        let mut now = 0u64;
        loop {
            while let Some(t) = uac.poll_transmit(now, &mut out) {
                assert_eq!((t.id, t.dest), (id, CORE));
                if lose(&out[..t.len]) {
                    continue;
                }
                let mut headers = [crate::wire::sip::Header::EMPTY; 32];
                match uas.handle_request(now, IWF, &out[..t.len], &mut headers, &mut reply) {
                    Incoming::New { id: sid, request, core, reply_to } => {
                        assert_eq!(reply_to, IWF);
                        assert_eq!(request.body, b"hello over a lossy link");
                        let policy = UasPolicy::new(
                            move |_: &crate::wire::sip::CoreFields<'_>, _: &crate::wire::sip::Message<'_, '_>| {
                                Answer::new(status, "Verdict")
                            },
                        );
                        let answer = policy.answer(&core, &request);
                        let r = uas.respond(now, sid, &answer.response(), &mut reply).unwrap();
                        if !lose(&reply[..r.len]) {
                            uac.handle_response(now, &reply[..r.len]);
                        }
                    }
                    Incoming::Retransmission { reply: Some(r) } => {
                        if !lose(&reply[..r.len]) {
                            uac.handle_response(now, &reply[..r.len]);
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
            if let Some(e) = uac.poll_event() {
                // Let both sides run out their timers.
                let end = now + 40_000;
                while let Some(t) = [uac.poll_timeout(), uas.poll_timeout()].into_iter().flatten().min() {
                    assert!(t <= end);
                    uac.poll_transmit(t, &mut out);
                    uas.handle_timeout(t);
                }
                assert!(uac.is_empty() && uas.is_empty());
                return (e, *uac.counters(), *uas.counters(), now);
            }
            now = uac.poll_timeout().expect("a live transaction has a timer");
        }
    }

    #[test]
    fn message_completes_through_a_lossy_link() {
        // Request k (0-based) goes out at these times (Timer E).
        let times = [0u64, 500, 1500, 3500, 7500, 11500, 15500, 19500];
        for lost_requests in 0..4 {
            for lost_responses in 0..4 {
                let (e, c, s, at) = lossy_exchange(lost_requests, lost_responses, 404);
                let case = format!("{lost_requests} requests, {lost_responses} responses lost");
                let Event::Final { status, .. } = e else { panic!("{case}: {e:?}") };
                assert_eq!(status, 404, "{case}");
                assert_eq!(at, times[lost_requests + lost_responses], "{case}");
                assert_eq!(s.transactions, 1, "{case}: one server transaction");
                // Every retransmission that reached the UAS after its answer got
                // the stored response again.
                assert_eq!(s.retransmissions_absorbed, lost_responses as u64, "{case}");
                assert_eq!(s.responses_resent, lost_responses as u64, "{case}");
                assert_eq!(c.retransmissions, (lost_requests + lost_responses) as u64, "{case}");
                assert_eq!((c.finals, c.responses_absorbed, c.stray_responses), (1, 0, 0), "{case}");
            }
        }
    }

    #[test]
    fn a_dead_link_times_out_at_timer_f() {
        let (e, c, _, at) = lossy_exchange(usize::MAX, 0, 200);
        assert!(matches!(e, Event::Timeout { .. }));
        assert_eq!(at, 32_000);
        assert_eq!(c.retransmissions, 10);
        // Requests get through, every answer is lost: Timer F too.
        let (e, _, s, at) = lossy_exchange(0, usize::MAX, 200);
        assert!(matches!(e, Event::Timeout { .. }));
        assert_eq!(at, 32_000);
        assert_eq!((s.transactions, s.responses_resent), (1, 10));
    }

    #[test]
    fn classify_datagrams() {
        assert_eq!(classify(b"SIP/2.0 200 OK\r\n"), DatagramKind::Response);
        assert_eq!(classify(b"\r\nMESSAGE sip:a SIP/2.0\r\n"), DatagramKind::Request);
        assert_eq!(classify(b"\r\n\r\n"), DatagramKind::KeepAlive);
        assert_eq!(classify(b""), DatagramKind::KeepAlive);
    }

    fn drain(uas: &mut ServerTransactions, uac: &mut ClientTransactions) {
        let mut out = [0u8; 1500];
        while let Some(t) = [uac.poll_timeout(), uas.poll_timeout()].into_iter().flatten().min() {
            while uac.poll_transmit(t, &mut out).is_some() {}
            uas.handle_timeout(t);
        }
        while uac.poll_event().is_some() {}
    }

    /// Mutations of a valid request, to reach deep into validation.
    fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
        let mut base = [0u8; 1500];
        let n = build_message("z9hG4bKprop", &mut base);
        let base = base[..n].to_vec();
        (proptest::collection::vec((0..n, any::<u8>()), 0..6), 0..=n).prop_map(move |(edits, cut)| {
            let mut v = base.clone();
            for (i, b) in edits {
                v[i] = b;
            }
            v.truncate(cut);
            v
        })
    }

    proptest! {
        #[test]
        fn garbage_never_panics_nor_leaks(
            datagrams in proptest::collection::vec(
                prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), mutated_request()],
                1..24,
            ),
            respond_mask in any::<u32>(),
        ) {
            let mut uas = ServerTransactions::new(ServerConfig { capacity: 8, ..ServerConfig::default() });
            let mut uac = ClientTransactions::new(ClientConfig { capacity: 8, ..ClientConfig::default() });
            let (mut out, mut resp) = ([0u8; 1500], [0u8; 1500]);
            for (i, dg) in datagrams.iter().enumerate() {
                let now = i as u64 * 100;
                let mut headers = [crate::wire::sip::Header::EMPTY; 32];
                if let Incoming::New { id, .. } = uas.handle_request(now, CORE, dg, &mut headers, &mut out) {
                    if respond_mask & (1 << (i % 32)) != 0 {
                        let _ = uas.respond(now, id, &Response::new(200, "OK"), &mut resp);
                    }
                }
                let _ = uac.handle_response(now, dg);
                let _ = uac.start(now, dg, CORE);
                while uac.poll_transmit(now, &mut out).is_some() {}
            }
            drain(&mut uas, &mut uac);
            prop_assert!(uas.is_empty());
            prop_assert!(uac.is_empty());
            prop_assert_eq!(uas.poll_timeout(), None);
            prop_assert_eq!(uac.poll_timeout(), None);
        }
    }
}
