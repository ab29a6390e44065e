//! Server (UAS) non-INVITE transactions over UDP (RFC 3261 §17.2.2).
//!
//! ```text
//!                   |Request received, passed to TU
//!                   V
//!             +-----------+
//!             |  Trying   |-------------+
//!             +-----------+             |
//!                   |1xx from TU        |  200-699 from TU
//!                   V                   |  send response
//!             +-----------+             |
//!  Request -->| Proceeding|------------>+
//!  send 1xx   +-----------+             |
//!                                       V
//!             +-----------+       +-----------+
//!  Request -->| Completed |<------+           |
//!  resend     +-----------+
//!  final            | Timer J fires (64*T1)
//!                   V
//!             Terminated (slot freed)
//! ```
//!
//! Matching (§17.2.3): the top Via `branch` (with the `z9hG4bK` cookie), its
//! sent-by and the method. Requests without an RFC 3261 branch are refused
//! with 400 (RFC 2543 matching is not implemented). A Trying/Proceeding entry
//! the application never answers is freed after
//! [`ServerConfig::tu_timeout`] and counted as abandoned.

use std::fmt;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher13;

use super::table::{SlotRef, Table, KEY_MAX};
use super::{reply_address, transaction_key, Reply, Tag, Timers};
use crate::wire::sip::{CoreFields, Error, Header, Message, MessageWriter, Method, Parser, Status, Uri};

/// Header fields a stored request keeps (what a response copies, §8.2.6.2).
const STORED_FIELDS: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];
/// Most header lines a stored request may have (Via lines included).
const STORED_HEADERS_MAX: usize = 48;

/// Server table configuration.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Transactions held at once (the table never grows).
    pub capacity: usize,
    /// Bytes stored per transaction: the request's Via/From/To/Call-ID/CSeq
    /// while the application decides, then the final response (a larger
    /// response is sent but not stored: retransmissions are then absorbed
    /// without an answer, and counted).
    pub slot_len: usize,
    /// T1/T2/T4.
    pub timers: Timers,
    /// How long a transaction may wait for the application's final response
    /// before it is freed (abandoned). Defaults to 64·T1.
    pub tu_timeout: u64,
    /// `Retry-After` seconds in the 503 sent when the table is full.
    pub retry_after_s: u32,
    /// Methods served; others get 405 with an `Allow` listing these.
    pub allow: &'static [Method<'static>],
    /// Largest request accepted (bytes).
    pub max_request_len: usize,
    /// Secret for the table's hash index and the To tags (pick it at random
    /// per process; a fixed value makes tags predictable, not wrong).
    pub secret: [u64; 2],
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            capacity: 4096,
            slot_len: 2048,
            timers: Timers::RFC3261,
            tu_timeout: Timers::RFC3261.timer_j(),
            retry_after_s: 5,
            allow: &[Method::Message, Method::Options],
            max_request_len: 65_535,
            secret: [0x6977_665f_7561_735f, 0x7472_616e_7361_6374],
        }
    }
}

/// A server transaction, valid until its entry is freed (then it is stale,
/// and [`ServerTransactions::respond`] says [`ServerError::UnknownTransaction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerTxId(SlotRef);

/// What [`ServerTransactions::handle_request`] made of a datagram.
// `New` carries the parsed fields by value: boxing them would allocate per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a, 'h> {
    /// A new transaction for the application, which must answer it with
    /// [`ServerTransactions::respond`].
    New {
        /// The transaction.
        id: ServerTxId,
        /// The request (headers and body).
        request: Message<'a, 'h>,
        /// Its validated core fields.
        core: CoreFields<'a>,
        /// Where responses go.
        reply_to: SocketAddrV4,
    },
    /// A retransmission of a known request: the stored response (the final
    /// one in Completed, the last provisional in Proceeding), if any, is in
    /// `out` for sending again.
    Retransmission {
        /// What to send, if anything.
        reply: Option<Reply>,
    },
    /// Refused by the transaction layer itself. `reply` is the stateless
    /// response written into `out`, or `None` when the request is dropped
    /// silently (no response can or may be built).
    Rejected {
        /// Why.
        reason: Rejection,
        /// What to send, if anything.
        reply: Option<Reply>,
    },
}

/// Why the transaction layer refused a request by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Unparseable or invalid (400 if a response can be built, else dropped).
    Malformed(Error),
    /// Top Via without an RFC 3261 branch (400).
    NoBranch,
    /// Branch and sent-by together exceed the key limit (400).
    KeyTooLong,
    /// A response, not a request: give it to the client table (dropped).
    NotARequest,
    /// ACK: never answered (dropped).
    Ack,
    /// CANCEL: there are no INVITE transactions to cancel (481).
    Cancel,
    /// Method not in [`ServerConfig::allow`] (405 with Allow).
    MethodNotAllowed,
    /// Request-URI scheme neither `sip`, `sips` nor `tel` (416).
    UnsupportedUriScheme,
    /// Max-Forwards 0 on a request other than OPTIONS (483, §16.3).
    TooManyHops,
    /// The request's fields to keep exceed the slot (513).
    TooLarge,
    /// Table full (503 with Retry-After).
    TableFull,
    /// A stream's request whose body is over the configured maximum (413, RFC 3261
    /// §21.4.11): refused from its head, its body skipped unread.
    EntityTooLarge,
    /// A stream's request too large to hold now (the streams' memory is spent): 503
    /// with Retry-After, its body skipped unread.
    NoRoom,
}

impl Rejection {
    /// The stateless response's status code and reason phrase, if any.
    pub fn status(&self) -> Option<(u16, &'static str)> {
        Some(match self {
            Rejection::Malformed(_) | Rejection::NoBranch | Rejection::KeyTooLong => (400, "Bad Request"),
            Rejection::NotARequest | Rejection::Ack => return None,
            Rejection::Cancel => (481, "Call/Transaction Does Not Exist"),
            Rejection::MethodNotAllowed => (405, "Method Not Allowed"),
            Rejection::UnsupportedUriScheme => (416, "Unsupported URI Scheme"),
            Rejection::TooManyHops => (483, "Too Many Hops"),
            Rejection::TooLarge => (513, "Message Too Large"),
            Rejection::TableFull => (503, "Service Unavailable"),
            Rejection::EntityTooLarge => (413, "Request Entity Too Large"),
            Rejection::NoRoom => (503, "Service Unavailable"),
        })
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(e) => write!(f, "malformed request: {e}"),
            Rejection::NoBranch => f.write_str("top Via has no RFC 3261 branch"),
            Rejection::KeyTooLong => f.write_str("Via branch and sent-by too long"),
            Rejection::NotARequest => f.write_str("not a request"),
            Rejection::Ack => f.write_str("ACK outside an INVITE transaction"),
            Rejection::Cancel => f.write_str("CANCEL without an INVITE transaction"),
            Rejection::MethodNotAllowed => f.write_str("method not allowed"),
            Rejection::UnsupportedUriScheme => f.write_str("unsupported Request-URI scheme"),
            Rejection::TooManyHops => f.write_str("Max-Forwards is 0"),
            Rejection::TooLarge => f.write_str("request fields too large to store"),
            Rejection::TableFull => f.write_str("server transaction table full"),
            Rejection::EntityTooLarge => f.write_str("request body over the maximum"),
            Rejection::NoRoom => f.write_str("no memory to hold the request now"),
        }
    }
}

/// Why [`ServerTransactions::respond`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerError {
    /// The id is stale: the transaction expired or was never this table's.
    UnknownTransaction,
    /// A final response was already sent.
    AlreadyCompleted,
    /// Building the response failed (bad status, reason, header, or `out`
    /// too small); the transaction is unchanged.
    Build(Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::UnknownTransaction => f.write_str("unknown or expired server transaction"),
            ServerError::AlreadyCompleted => f.write_str("final response already sent"),
            ServerError::Build(e) => write!(f, "cannot build response: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// A response for [`ServerTransactions::respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'r> {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'r str,
    /// To tag; `None` derives one from the request (deterministic).
    pub to_tag: Option<&'r str>,
    /// Extra header fields, in order (not Content-Length).
    pub headers: &'r [(&'r str, &'r str)],
    /// Body (set Content-Type in `headers`).
    pub body: &'r [u8],
}

impl<'r> Response<'r> {
    /// A response without extra headers or body, with a derived To tag.
    pub fn new(status: u16, reason: &'r str) -> Self {
        Response { status, reason, to_tag: None, headers: &[], body: b"" }
    }

    /// The same response with extra header fields.
    pub fn with_headers(mut self, headers: &'r [(&'r str, &'r str)]) -> Self {
        self.headers = headers;
        self
    }

    /// The same response with a body.
    pub fn with_body(mut self, body: &'r [u8]) -> Self {
        self.body = body;
        self
    }
}

/// Number of distinct malformed-request reasons ([`ServerCounters::malformed`]).
pub const MALFORMED_REASONS: usize = 33;

/// Index of a codec error in [`ServerCounters::malformed`].
fn malformed_index(e: Error) -> usize {
    match e {
        Error::Truncated => 0,
        Error::TooLong => 1,
        Error::BadStartLine => 2,
        Error::BadMethod => 3,
        Error::BadRequestUri => 4,
        Error::BadVersion => 5,
        Error::BadStatusCode => 6,
        Error::BadReason => 7,
        Error::BadHeaderName => 8,
        Error::BadHeaderValue => 9,
        Error::InvalidUtf8 => 10,
        Error::TooManyHeaders => 11,
        Error::MissingContentLength => 12,
        Error::BadContentLength => 13,
        Error::MultipleContentLength => 14,
        Error::ContentLengthMismatch => 15,
        Error::MissingHeader(_) => 16,
        Error::DuplicateHeader(_) => 17,
        Error::BadUri => 18,
        Error::BadHost => 19,
        Error::BadPort => 20,
        Error::BadTelUri => 21,
        Error::BadNameAddr => 22,
        Error::BadQuotedString => 23,
        Error::BadParam => 24,
        Error::BadVia => 25,
        Error::BadCSeq => 26,
        Error::BadMaxForwards => 27,
        Error::BadExpires => 28,
        Error::BadCallId => 29,
        Error::BadContentType => 30,
        Error::CSeqMethodMismatch => 31,
        Error::BufferTooSmall => 32,
    }
}

/// Server-side counters; plain numbers the caller reads and exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCounters {
    /// Datagrams given to `handle_request`.
    pub requests: u64,
    /// Transactions created.
    pub transactions: u64,
    /// Request retransmissions matched to a transaction.
    pub retransmissions_absorbed: u64,
    /// Stored responses sent again for them.
    pub responses_resent: u64,
    /// Responses built by `respond` (provisional and final).
    pub responses_sent: u64,
    /// Final responses too large for the slot (sent, not stored).
    pub responses_not_stored: u64,
    /// Malformed requests answered with 400.
    pub malformed_answered: u64,
    /// Malformed requests dropped (no response could be built).
    pub malformed_dropped: u64,
    /// Malformed requests by codec error (see [`ServerCounters::malformed_count`]).
    pub malformed: [u64; MALFORMED_REASONS],
    /// Requests without an RFC 3261 branch (400).
    pub no_branch: u64,
    /// Branch/sent-by over the key limit (400).
    pub key_too_long: u64,
    /// Responses given to the server table (dropped).
    pub not_requests: u64,
    /// ACKs dropped.
    pub acks: u64,
    /// CANCELs answered 481.
    pub cancels: u64,
    /// 405 Method Not Allowed.
    pub method_not_allowed: u64,
    /// 416 Unsupported URI Scheme.
    pub unsupported_uri_scheme: u64,
    /// 483 Too Many Hops.
    pub too_many_hops: u64,
    /// 513: request fields too large to store.
    pub too_large: u64,
    /// 503: table full.
    pub table_full: u64,
    /// Stream requests refused 413 from their head (body over the maximum).
    pub entity_too_large: u64,
    /// Stream requests refused 503 from their head (no memory to hold them now).
    pub no_room: u64,
    /// Completed transactions freed by Timer J.
    pub expired: u64,
    /// Transactions freed because the application never answered.
    pub abandoned: u64,
}

impl Default for ServerCounters {
    fn default() -> Self {
        ServerCounters {
            requests: 0,
            transactions: 0,
            retransmissions_absorbed: 0,
            responses_resent: 0,
            responses_sent: 0,
            responses_not_stored: 0,
            malformed_answered: 0,
            malformed_dropped: 0,
            malformed: [0; MALFORMED_REASONS],
            no_branch: 0,
            key_too_long: 0,
            not_requests: 0,
            acks: 0,
            cancels: 0,
            method_not_allowed: 0,
            unsupported_uri_scheme: 0,
            too_many_hops: 0,
            too_large: 0,
            table_full: 0,
            entity_too_large: 0,
            no_room: 0,
            expired: 0,
            abandoned: 0,
        }
    }
}

impl ServerCounters {
    /// How many malformed requests failed with `e` (its payload ignored).
    pub fn malformed_count(&self, e: Error) -> u64 {
        self.malformed.get(malformed_index(e)).copied().unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Trying,
    Proceeding,
    Completed,
}

/// Per-transaction state; the slot's bytes hold the stored request
/// (`[0, request_len)`) and the stored response (`[response_at, +response_len)`).
#[derive(Debug)]
struct ServerTx {
    phase: Phase,
    reply_to: SocketAddrV4,
    request_len: u16,
    response_at: u16,
    response_len: u16,
}

/// The server transaction table (RFC 3261 §17.2.2 over UDP).
#[derive(Debug)]
pub struct ServerTransactions {
    table: Table<ServerTx>,
    config: ServerConfig,
    tags: SipHasher13,
    counters: ServerCounters,
}

impl ServerTransactions {
    /// A table of `config.capacity` transactions; all storage is allocated here.
    pub fn new(config: ServerConfig) -> Self {
        let slot_len = config.slot_len.min(u16::MAX as usize);
        ServerTransactions {
            table: Table::new(config.capacity, slot_len, config.secret),
            tags: SipHasher13::new_with_keys(config.secret[0] ^ 0x7461_6773, config.secret[1].rotate_left(17)),
            config,
            counters: ServerCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No live transactions?
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Take one UDP datagram from `src`. `headers` receives the parsed header
    /// fields (too few = 400/drop with [`Error::TooManyHeaders`]); any response
    /// the layer sends by itself is written into `out` (1500 bytes suffice
    /// for everything but huge Via stacks; too small = dropped, counted as
    /// malformed [`Error::BufferTooSmall`]).
    pub fn handle_request<'a, 'h>(
        &mut self,
        now: u64,
        src: SocketAddrV4,
        datagram: &'a [u8],
        headers: &'h mut [Header<'a>],
        out: &mut [u8],
    ) -> Incoming<'a, 'h> {
        self.counters.requests += 1;
        let parser = Parser::datagram().with_max_message_len(self.config.max_request_len);
        let request = match parser.parse(datagram, headers) {
            Ok(Status::Complete(_, m)) => m,
            Ok(Status::Partial) => return self.drop_malformed(Error::Truncated),
            Err(e) => return self.drop_malformed(e),
        };
        let Some(method) = request.method() else {
            self.counters.not_requests += 1;
            return Incoming::Rejected { reason: Rejection::NotARequest, reply: None };
        };
        if method == Method::Ack {
            self.counters.acks += 1;
            return Incoming::Rejected { reason: Rejection::Ack, reply: None };
        }
        let core = match request.validate() {
            Ok(c) => c,
            Err(e) => return self.reject_malformed(&request, src, e, out),
        };
        let reply_to = reply_address(&core.top_via, src);
        let Some(branch) = core.top_via.rfc3261_branch() else {
            self.counters.no_branch += 1;
            return self.reject(&request, reply_to, Rejection::NoBranch, out);
        };
        let mut key_buf = [0u8; KEY_MAX];
        let Some(key) = transaction_key(&mut key_buf, branch, Some(&core.top_via), method) else {
            self.counters.key_too_long += 1;
            return self.reject(&request, reply_to, Rejection::KeyTooLong, out);
        };
        if let Some(r) = self.table.find(key) {
            return self.retransmission(r, out);
        }
        let refusal = if method == Method::Cancel {
            self.counters.cancels += 1;
            Some(Rejection::Cancel)
        } else if !self.config.allow.contains(&method) {
            self.counters.method_not_allowed += 1;
            Some(Rejection::MethodNotAllowed)
        } else if matches!(core.request_uri, Some(Uri::Other(_))) {
            self.counters.unsupported_uri_scheme += 1;
            Some(Rejection::UnsupportedUriScheme)
        } else if core.max_forwards == Some(0) && method != Method::Options {
            self.counters.too_many_hops += 1;
            Some(Rejection::TooManyHops)
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self.reject(&request, reply_to, reason, out);
        }
        let state = ServerTx { phase: Phase::Trying, reply_to, request_len: 0, response_at: 0, response_len: 0 };
        let Some(r) = self.table.insert(key, state) else {
            self.counters.table_full += 1;
            return self.reject(&request, reply_to, Rejection::TableFull, out);
        };
        let stored = match self.table.entry_mut(r) {
            Some((tx, data)) => match store_request(&request, data) {
                Some(n) => {
                    tx.request_len = n as u16;
                    tx.response_at = n as u16;
                    true
                }
                None => false,
            },
            None => false,
        };
        if !stored {
            self.table.remove(r.slot);
            self.counters.too_large += 1;
            return self.reject(&request, reply_to, Rejection::TooLarge, out);
        }
        self.table.set_timer(r.slot, now.saturating_add(self.config.tu_timeout));
        self.counters.transactions += 1;
        Incoming::New { id: ServerTxId(r), request, core, reply_to }
    }

    fn retransmission<'a, 'h>(&mut self, r: SlotRef, out: &mut [u8]) -> Incoming<'a, 'h> {
        self.counters.retransmissions_absorbed += 1;
        let Some(tx) = self.table.get(r) else {
            return Incoming::Retransmission { reply: None };
        };
        let reply_to = tx.reply_to;
        let (at, len) = (tx.response_at as usize, tx.response_len as usize);
        if tx.phase == Phase::Trying || len == 0 {
            return Incoming::Retransmission { reply: None };
        }
        let stored = self.table.data(r.slot).get(at..at + len);
        let reply = match (stored, out.get_mut(..len)) {
            (Some(s), Some(o)) => {
                o.copy_from_slice(s);
                self.counters.responses_resent += 1;
                Some(Reply { len, to: reply_to })
            }
            _ => None,
        };
        Incoming::Retransmission { reply }
    }

    fn drop_malformed<'a, 'h>(&mut self, e: Error) -> Incoming<'a, 'h> {
        self.counters.malformed_dropped += 1;
        if let Some(c) = self.counters.malformed.get_mut(malformed_index(e)) {
            *c += 1;
        }
        Incoming::Rejected { reason: Rejection::Malformed(e), reply: None }
    }

    /// 400 for a request that parsed but failed validation, if Via, From,
    /// To, Call-ID and CSeq are there to be copied; else a silent drop.
    fn reject_malformed<'a, 'h>(
        &mut self,
        request: &Message<'_, '_>,
        src: SocketAddrV4,
        e: Error,
        out: &mut [u8],
    ) -> Incoming<'a, 'h> {
        if let Some(c) = self.counters.malformed.get_mut(malformed_index(e)) {
            *c += 1;
        }
        // Reply to the top Via's port if it parses, else to the source.
        let reply_to = request.top_via().map_or(src, |via| reply_address(&via, src));
        let reason = Rejection::Malformed(e);
        match self.reject(request, reply_to, reason, out) {
            Incoming::Rejected { reply: Some(r), .. } => {
                self.counters.malformed_answered += 1;
                Incoming::Rejected { reason, reply: Some(r) }
            }
            _ => {
                self.counters.malformed_dropped += 1;
                Incoming::Rejected { reason, reply: None }
            }
        }
    }

    /// A stateless refusal of a stream's request known only by its head (parsed with
    /// [`crate::wire::sip::Parser::parse_head`]): [`Rejection::EntityTooLarge`] or
    /// [`Rejection::NoRoom`]. No transaction is made (the request was never read
    /// whole); a retransmission gets the same answer again. Counted.
    pub fn refuse_head<'a, 'h>(
        &mut self,
        src: SocketAddrV4,
        head: &Message<'_, '_>,
        reason: Rejection,
        out: &mut [u8],
    ) -> Incoming<'a, 'h> {
        match head.method() {
            // A response, or an ACK, is never answered (RFC 3261 §17.2.1, §8.2.6): it
            // is only skipped.
            None => {
                self.counters.not_requests += 1;
                return Incoming::Rejected { reason: Rejection::NotARequest, reply: None };
            }
            Some(Method::Ack) => {
                self.counters.acks += 1;
                return Incoming::Rejected { reason: Rejection::Ack, reply: None };
            }
            Some(_) => {}
        }
        self.counters.requests += 1;
        match reason {
            Rejection::EntityTooLarge => self.counters.entity_too_large += 1,
            _ => self.counters.no_room += 1,
        }
        let reply_to = head.top_via().map_or(src, |via| reply_address(&via, src));
        self.reject(head, reply_to, reason, out)
    }

    /// A stateless response (§8.2.7) to `request` for `reason`.
    fn reject<'a, 'h>(
        &self,
        request: &Message<'_, '_>,
        reply_to: SocketAddrV4,
        reason: Rejection,
        out: &mut [u8],
    ) -> Incoming<'a, 'h> {
        let reply = reason.status().and_then(|(status, phrase)| {
            let tag = Tag::derive(&self.tags, request.headers);
            let mut w = MessageWriter::response_to(out, request, status, phrase, Some(tag.as_str())).ok()?;
            match reason {
                Rejection::MethodNotAllowed => {
                    w.header_fmt("Allow", format_args!("{}", MethodList(self.config.allow))).ok()?;
                }
                Rejection::TableFull | Rejection::NoRoom => {
                    w.header_u32("Retry-After", self.config.retry_after_s).ok()?;
                }
                Rejection::Malformed(_) | Rejection::NoBranch | Rejection::KeyTooLong => {
                    // RFC 3261 §20.43: 399 = miscellaneous warning.
                    w.header_fmt("Warning", format_args!("399 iwf \"{reason}\"")).ok()?;
                }
                _ => {}
            }
            let len = w.finish(b"").ok()?;
            Some(Reply { len, to: reply_to })
        });
        Incoming::Rejected { reason, reply }
    }

    /// Answer transaction `id`: builds the response with
    /// [`MessageWriter::response_to`] from the stored request (To tag
    /// `response.to_tag` or derived), writes it into `out` and returns where
    /// to send it. A provisional moves the transaction to Proceeding (and is
    /// resent to retransmissions); a final one to Completed, stored for
    /// retransmissions until Timer J.
    pub fn respond(
        &mut self,
        now: u64,
        id: ServerTxId,
        response: &Response<'_>,
        out: &mut [u8],
    ) -> Result<Reply, ServerError> {
        let r = id.0;
        let slot_len = self.table.data_len();
        let (tx, data) = self.table.entry_mut(r).ok_or(ServerError::UnknownTransaction)?;
        if tx.phase == Phase::Completed {
            return Err(ServerError::AlreadyCompleted);
        }
        let len = build_response(&self.tags, data, tx, response, out).map_err(ServerError::Build)?;
        let bytes = out.get(..len).unwrap_or(&[]);
        let final_response = response.status >= 200;
        self.counters.responses_sent += 1;
        // A final response replaces the stored request (no longer needed); a
        // provisional one goes after it.
        let at = if final_response { 0 } else { tx.request_len as usize };
        match data.get_mut(at..at + len) {
            Some(dst) if at + len <= slot_len => {
                dst.copy_from_slice(bytes);
                tx.response_at = at as u16;
                tx.response_len = len as u16;
            }
            _ => {
                tx.response_len = 0;
                if final_response {
                    self.counters.responses_not_stored += 1;
                }
            }
        }
        let reply = Reply { len, to: tx.reply_to };
        if final_response {
            tx.phase = Phase::Completed;
            self.table.set_timer(r.slot, now.saturating_add(self.config.timers.timer_j()));
        } else {
            tx.phase = Phase::Proceeding;
        }
        Ok(reply)
    }

    /// The earliest time [`ServerTransactions::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.table.next_timer().map(|(at, _)| at)
    }

    /// Free every transaction whose timer expired at `now` (Timer J in
    /// Completed; the application timeout otherwise).
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some((at, slot)) = self.table.next_timer() {
            if at > now {
                break;
            }
            let completed = self
                .table
                .slot_ref(slot)
                .and_then(|r| self.table.get(r))
                .is_some_and(|tx| tx.phase == Phase::Completed);
            if completed {
                self.counters.expired += 1;
            } else {
                self.counters.abandoned += 1;
            }
            self.table.remove(slot);
        }
    }
}

/// Copy the request line and the fields a response copies into `data`, as a
/// minimal request [`build_response`] parses again. `None` if it does not fit.
fn store_request(request: &Message<'_, '_>, data: &mut [u8]) -> Option<usize> {
    let line = request.request_line()?;
    let mut n = 0usize;
    let mut put = |b: &[u8]| -> Option<()> {
        let end = n.checked_add(b.len())?;
        data.get_mut(n..end)?.copy_from_slice(b);
        n = end;
        Some(())
    };
    put(line.method.as_str().as_bytes())?;
    put(b" ")?;
    put(line.uri.as_bytes())?;
    put(b" SIP/2.0\r\n")?;
    let mut lines = 0usize;
    for h in request.headers.iter().filter(|h| STORED_FIELDS.iter().any(|f| h.is(f))) {
        lines += 1;
        if lines > STORED_HEADERS_MAX {
            return None;
        }
        put(h.name.as_bytes())?;
        put(b": ")?;
        put(h.value.as_bytes())?;
        put(b"\r\n")?;
    }
    put(b"\r\n")?;
    Some(n)
}

/// Parse the stored request and write `response` to it into `out`.
fn build_response(
    tags: &SipHasher13,
    data: &[u8],
    tx: &ServerTx,
    response: &Response<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let stored = data.get(..tx.request_len as usize).unwrap_or(&[]);
    let mut headers = [Header::EMPTY; STORED_HEADERS_MAX];
    let request = match Parser::datagram().parse(stored, &mut headers)? {
        Status::Complete(_, m) => m,
        Status::Partial => return Err(Error::Truncated),
    };
    let derived = Tag::derive(tags, request.headers);
    let tag = response.to_tag.unwrap_or(derived.as_str());
    let mut w = MessageWriter::response_to(out, &request, response.status, response.reason, Some(tag))?;
    for (name, value) in response.headers {
        w.header(name, value)?;
    }
    w.finish(response.body)
}

/// `MESSAGE, OPTIONS` for an Allow header, written without allocating.
struct MethodList(&'static [Method<'static>]);

impl fmt::Display for MethodList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::parse_datagram;
    use std::net::Ipv4Addr;

    const SRC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);

    fn request(method: &str, branch: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.2.1:5060;branch={branch}\r\n\
Via: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKlower\r\n\
Max-Forwards: 69\r\n\
From: <sip:+447000200001@ims.lab>;tag=abc\r\n\
To: <sip:+447000100001@iwf.ims.lab>\r\n\
Call-ID: c-{branch}@ims.lab\r\n\
CSeq: 7 {method}\r\n{extra}\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\r\nhello"
        )
        .into_bytes()
    }

    struct Uas {
        t: ServerTransactions,
        out: [u8; 1500],
    }

    impl Uas {
        fn new(config: ServerConfig) -> Self {
            Uas { t: ServerTransactions::new(config), out: [0; 1500] }
        }

        /// Feed a datagram; returns (kind, response bytes).
        fn feed(&mut self, now: u64, dg: &[u8]) -> (String, Option<Vec<u8>>, Option<ServerTxId>) {
            let mut h = [Header::EMPTY; 32];
            match self.t.handle_request(now, SRC, dg, &mut h, &mut self.out) {
                Incoming::New { id, core, .. } => {
                    assert_eq!(core.cseq.number, 7);
                    ("new".into(), None, Some(id))
                }
                Incoming::Retransmission { reply } => {
                    ("retransmission".into(), reply.map(|r| self.out[..r.len].to_vec()), None)
                }
                Incoming::Rejected { reason, reply } => {
                    (format!("rejected {reason:?}"), reply.map(|r| self.out[..r.len].to_vec()), None)
                }
            }
        }

        fn respond(&mut self, now: u64, id: ServerTxId, status: u16, reason: &str) -> Vec<u8> {
            let r = self.t.respond(now, id, &Response::new(status, reason), &mut self.out).unwrap();
            assert_eq!(r.to, SRC);
            self.out[..r.len].to_vec()
        }
    }

    fn status_of(resp: &[u8]) -> u16 {
        let mut h = [Header::EMPTY; 32];
        parse_datagram(resp, &mut h).unwrap().status_code().unwrap()
    }

    fn header_of(resp: &[u8], name: &str) -> Option<String> {
        let mut h = [Header::EMPTY; 32];
        let m = parse_datagram(resp, &mut h).unwrap();
        m.header(name).map(str::to_owned)
    }

    #[test]
    fn respond_then_retransmission_gets_the_stored_response() {
        let mut uas = Uas::new(ServerConfig::default());
        let req = request("MESSAGE", "z9hG4bKa1", "");
        let (kind, _, id) = uas.feed(0, &req);
        assert_eq!(kind, "new");
        let id = id.unwrap();
        // Retransmission while Trying: absorbed, nothing to send.
        assert_eq!(uas.feed(300, &req), ("retransmission".into(), None, None));
        let resp = uas.respond(400, id, 200, "OK");
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        // Both Vias copied in order, To tagged, CSeq copied.
        assert!(text.contains(
            "Via: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bKa1\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKlower\r\n"
        ));
        let to = header_of(&resp, "To").unwrap();
        assert!(to.starts_with("<sip:+447000100001@iwf.ims.lab>;tag="), "{to}");
        assert_eq!(header_of(&resp, "CSeq").unwrap(), "7 MESSAGE");
        for t in [500, 1500, 3500] {
            let (kind, again, _) = uas.feed(t, &req);
            assert_eq!(kind, "retransmission");
            assert_eq!(again.as_deref(), Some(&resp[..]), "byte-identical");
        }
        let c = uas.t.counters();
        assert_eq!((c.transactions, c.retransmissions_absorbed, c.responses_resent), (1, 4, 3));
        assert_eq!(
            uas.t.respond(4000, id, &Response::new(200, "OK"), &mut [0u8; 1500]),
            Err(ServerError::AlreadyCompleted)
        );
    }

    #[test]
    fn provisional_is_resent_until_the_final_response() {
        let mut uas = Uas::new(ServerConfig::default());
        let req = request("MESSAGE", "z9hG4bKp", "");
        let id = uas.feed(0, &req).2.unwrap();
        let trying = uas.respond(10, id, 100, "Trying");
        assert!(header_of(&trying, "To").unwrap().ends_with("iwf.ims.lab>"), "100 has no tag");
        assert_eq!(uas.feed(500, &req).1.as_deref(), Some(&trying[..]));
        let ok = uas.respond(600, id, 202, "Accepted");
        assert_eq!(status_of(&ok), 202);
        assert_eq!(uas.feed(1500, &req).1.as_deref(), Some(&ok[..]));
    }

    #[test]
    fn key_is_branch_sent_by_and_method() {
        let mut uas = Uas::new(ServerConfig::default());
        let a = request("MESSAGE", "z9hG4bKk1", "");
        let id = uas.feed(0, &a).2.unwrap();
        uas.respond(0, id, 200, "OK");
        // Different branch → a new transaction.
        assert_eq!(uas.feed(1, &request("MESSAGE", "z9hG4bKk2", "")).0, "new");
        // Same branch, other method → a new transaction.
        assert_eq!(uas.feed(2, &request("OPTIONS", "z9hG4bKk1", "")).0, "new");
        // Same branch, other sent-by → new.
        let other_host = String::from_utf8(a.clone()).unwrap().replacen("198.18.2.1:5060", "198.18.2.9:5060", 1);
        assert_eq!(uas.feed(3, other_host.as_bytes()).0, "new");
        // Same sent-by in other case → the same transaction.
        let upper = String::from_utf8(request("MESSAGE", "z9hG4bKh", "")).unwrap().replacen(
            "198.18.2.1:5060",
            "Core.IMS.lab",
            1,
        );
        let lower = upper.replacen("Core.IMS.lab", "core.ims.lab", 1);
        assert_eq!(uas.feed(4, upper.as_bytes()).0, "new");
        assert_eq!(uas.feed(5, lower.as_bytes()).0, "retransmission");
        assert_eq!(uas.t.len(), 5);
    }

    #[test]
    fn timer_j_frees_the_entry_and_a_late_copy_is_new() {
        let mut uas = Uas::new(ServerConfig::default());
        let req = request("MESSAGE", "z9hG4bKj", "");
        let id = uas.feed(0, &req).2.unwrap();
        uas.respond(100, id, 200, "OK");
        assert_eq!(uas.t.poll_timeout(), Some(100 + 32_000));
        uas.t.handle_timeout(32_099);
        assert_eq!(uas.t.len(), 1);
        uas.t.handle_timeout(32_100);
        assert!(uas.t.is_empty());
        assert_eq!(uas.t.counters().expired, 1);
        assert_eq!(uas.t.poll_timeout(), None);
        assert_eq!(
            uas.t.respond(32_200, id, &Response::new(200, "OK"), &mut [0u8; 1500]),
            Err(ServerError::UnknownTransaction)
        );
        assert_eq!(uas.feed(40_000, &req).0, "new");
    }

    #[test]
    fn unanswered_transactions_are_abandoned() {
        let mut uas = Uas::new(ServerConfig::default());
        uas.feed(0, &request("MESSAGE", "z9hG4bKu", "")).2.unwrap();
        uas.t.handle_timeout(32_000);
        assert!(uas.t.is_empty());
        assert_eq!(uas.t.counters().abandoned, 1);
    }

    #[test]
    fn full_table_answers_503_with_retry_after() {
        let mut uas = Uas::new(ServerConfig { capacity: 2, retry_after_s: 7, ..ServerConfig::default() });
        assert_eq!(uas.feed(0, &request("MESSAGE", "z9hG4bKf1", "")).0, "new");
        assert_eq!(uas.feed(0, &request("MESSAGE", "z9hG4bKf2", "")).0, "new");
        let (kind, resp, _) = uas.feed(0, &request("MESSAGE", "z9hG4bKf3", ""));
        assert_eq!(kind, "rejected TableFull");
        let resp = resp.unwrap();
        assert_eq!(status_of(&resp), 503);
        assert_eq!(header_of(&resp, "Retry-After").as_deref(), Some("7"));
        assert_eq!(uas.t.counters().table_full, 1);
        // A retransmission of a held request is still absorbed.
        assert_eq!(uas.feed(1, &request("MESSAGE", "z9hG4bKf1", "")).0, "retransmission");
    }

    #[test]
    fn policy_rejections() {
        let mut uas = Uas::new(ServerConfig::default());
        let (kind, resp, _) = uas.feed(0, &request("INVITE", "z9hG4bKi", ""));
        assert_eq!(kind, "rejected MethodNotAllowed");
        let resp = resp.unwrap();
        assert_eq!(status_of(&resp), 405);
        assert_eq!(header_of(&resp, "Allow").as_deref(), Some("MESSAGE, OPTIONS"));
        assert!(header_of(&resp, "To").unwrap().contains(";tag="));
        // Stateless but deterministic: the retransmission gets the same bytes.
        assert_eq!(uas.feed(500, &request("INVITE", "z9hG4bKi", "")).1, Some(resp));

        let (kind, resp, _) = uas.feed(0, &request("MESSAGE", "z9hG4bKm", "Max-Forwards: 0\r\n"));
        // Two Max-Forwards: the duplicate is malformed.
        assert_eq!(kind, "rejected Malformed(DuplicateHeader(\"Max-Forwards\"))");
        assert_eq!(status_of(&resp.unwrap()), 400);
        let mf0 = String::from_utf8(request("MESSAGE", "z9hG4bKm", ""))
            .unwrap()
            .replace("Max-Forwards: 69", "Max-Forwards: 0");
        let (kind, resp, _) = uas.feed(0, mf0.as_bytes());
        assert_eq!(kind, "rejected TooManyHops");
        assert_eq!(status_of(&resp.unwrap()), 483);
        // OPTIONS with Max-Forwards 0 is answered by the final recipient (§16.3).
        let opt0 = mf0.replace("MESSAGE", "OPTIONS");
        assert_eq!(uas.feed(0, opt0.as_bytes()).0, "new");

        let mailto = String::from_utf8(request("MESSAGE", "z9hG4bKs", "")).unwrap().replacen(
            "sip:+447000100001@iwf.ims.lab SIP",
            "mailto:a@b.c SIP",
            1,
        );
        let (kind, resp, _) = uas.feed(0, mailto.as_bytes());
        assert_eq!(kind, "rejected UnsupportedUriScheme");
        assert_eq!(status_of(&resp.unwrap()), 416);
        let tel = String::from_utf8(request("MESSAGE", "z9hG4bKt", "")).unwrap().replacen(
            "sip:+447000100001@iwf.ims.lab SIP",
            "tel:+447000100001 SIP",
            1,
        );
        assert_eq!(uas.feed(0, tel.as_bytes()).0, "new");

        let (kind, resp, _) = uas.feed(0, &request("CANCEL", "z9hG4bKc", ""));
        assert_eq!(kind, "rejected Cancel");
        assert_eq!(status_of(&resp.unwrap()), 481);
        let (kind, resp, _) = uas.feed(0, &request("ACK", "z9hG4bKc", ""));
        assert_eq!((kind.as_str(), resp), ("rejected Ack", None));

        let c = *uas.t.counters();
        assert_eq!(
            (c.method_not_allowed, c.too_many_hops, c.unsupported_uri_scheme, c.cancels, c.acks),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(uas.t.len(), 2, "only the OPTIONS and the tel: MESSAGE hold entries");
    }

    #[test]
    fn malformed_requests() {
        let mut uas = Uas::new(ServerConfig::default());
        let good = String::from_utf8(request("MESSAGE", "z9hG4bKx", "")).unwrap();
        // (mutation, expected status or None for a silent drop, reason)
        let cases: [(String, Option<u16>, Error); 7] = [
            (good.replace("CSeq: 7 MESSAGE", "CSeq: x MESSAGE"), Some(400), Error::BadCSeq),
            (good.replace("CSeq: 7 MESSAGE", "CSeq: 7 OPTIONS"), Some(400), Error::CSeqMethodMismatch),
            (good.replace("Call-ID: c-z9hG4bKx@ims.lab\r\n", ""), None, Error::MissingHeader("Call-ID")),
            (
                good.replace("From: <sip:+447000200001@ims.lab>;tag=abc", "From: <sip:a b>"),
                Some(400),
                Error::BadNameAddr,
            ),
            (good.replace("\r\n\r\nhello", "\r\nhello"), None, Error::Truncated),
            (good.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia"), None, Error::BadVersion),
            (good.replace("Max-Forwards: 69", "Max-Forwards: 300"), Some(400), Error::BadMaxForwards),
        ];
        for (dg, status, reason) in &cases {
            let (kind, resp, _) = uas.feed(0, dg.as_bytes());
            assert_eq!(kind, format!("rejected Malformed({reason:?})"));
            assert_eq!(resp.as_deref().map(status_of), *status, "{reason:?}");
            if let Some(r) = resp {
                let w = header_of(&r, "Warning").unwrap();
                assert!(w.starts_with("399 iwf \"malformed request: "), "{w}");
            }
            assert_eq!(uas.t.counters().malformed_count(*reason), 1);
        }
        let no_branch = good.replace("branch=z9hG4bKx", "branch=1");
        let (kind, resp, _) = uas.feed(0, no_branch.as_bytes());
        assert_eq!(kind, "rejected NoBranch");
        assert_eq!(status_of(&resp.unwrap()), 400);
        let long = good.replace("z9hG4bKx", &format!("z9hG4bK{}", "y".repeat(400)));
        assert_eq!(uas.feed(0, long.as_bytes()).0, "rejected KeyTooLong");
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert_eq!(uas.feed(0, resp).0, "rejected NotARequest");
        let c = *uas.t.counters();
        assert_eq!((c.malformed_answered, c.malformed_dropped), (4, 3));
        assert!(uas.t.is_empty());
        // Too many headers for the caller's array: parse error, dropped.
        let mut h = [Header::EMPTY; 4];
        let r = uas.t.handle_request(0, SRC, good.as_bytes(), &mut h, &mut [0; 1500]);
        assert_eq!(r, Incoming::Rejected { reason: Rejection::Malformed(Error::TooManyHeaders), reply: None });
    }

    #[test]
    fn reply_address_honours_rport_and_sent_by_port() {
        let mut uas = Uas::new(ServerConfig::default());
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 40000);
        let mut h = [Header::EMPTY; 32];
        let rport = String::from_utf8(request("OPTIONS", "z9hG4bKr", "")).unwrap().replacen(
            ";branch=z9hG4bKr",
            ";rport;branch=z9hG4bKr",
            1,
        );
        match uas.t.handle_request(0, src, rport.as_bytes(), &mut h, &mut uas.out) {
            Incoming::New { reply_to, .. } => assert_eq!(reply_to, src),
            o => panic!("{o:?}"),
        }
        let mut h = [Header::EMPTY; 32];
        let plain = request("OPTIONS", "z9hG4bKq", "");
        match uas.t.handle_request(0, src, &plain, &mut h, &mut uas.out) {
            Incoming::New { reply_to, .. } => assert_eq!(reply_to, SRC),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn response_too_large_is_sent_but_not_stored() {
        let mut uas = Uas::new(ServerConfig { slot_len: 600, ..ServerConfig::default() });
        let req = request("MESSAGE", "z9hG4bKbig", "");
        let id = uas.feed(0, &req).2.unwrap();
        let body = [b'x'; 700];
        let mut out = [0u8; 1500];
        let r = uas.t.respond(0, id, &Response::new(200, "OK").with_body(&body), &mut out).unwrap();
        assert!(r.len > 700);
        assert_eq!(uas.t.counters().responses_not_stored, 1);
        assert_eq!(uas.feed(500, &req), ("retransmission".into(), None, None));
        // Too small an out buffer is an error that leaves the transaction open.
        let id = uas.feed(0, &request("MESSAGE", "z9hG4bKsmall", "")).2.unwrap();
        assert_eq!(
            uas.t.respond(0, id, &Response::new(200, "OK"), &mut [0u8; 40]),
            Err(ServerError::Build(Error::BufferTooSmall))
        );
        assert_eq!(status_of(&uas.respond(1, id, 200, "OK")), 200);
    }

    #[test]
    fn caller_tag_and_extra_headers() {
        let mut uas = Uas::new(ServerConfig::default());
        let id = uas.feed(0, &request("MESSAGE", "z9hG4bKe", "")).2.unwrap();
        let mut out = [0u8; 1500];
        let resp = Response {
            to_tag: Some("mytag"),
            ..Response::new(200, "OK").with_headers(&[("Content-Type", "text/plain")]).with_body(b"ok")
        };
        let r = uas.t.respond(0, id, &resp, &mut out).unwrap();
        let m = &out[..r.len];
        assert!(header_of(m, "To").unwrap().ends_with(";tag=mytag"));
        assert_eq!(header_of(m, "Content-Type").as_deref(), Some("text/plain"));
        assert!(m.ends_with(b"\r\n\r\nok"));
    }
}
