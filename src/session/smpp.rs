//! The SMPP session (SMPP 3.4 §2, SMPP 5.0 §2), sans-IO: TCP stream bytes
//! in, stream bytes out, time passed in by the caller.
//!
//! One [`Session`] is one TCP connection's SMPP state, in either role:
//!
//! - [`Role::Server`]: a legacy system (ESME) binds to iwf. Binds are checked
//!   by the caller's [`Authenticator`] (provisioned system_id / password and
//!   the system's source-IP allow-list); what the bound ESME may send depends
//!   on its [`BindType`]; submit_sm / data_sm go to the application, which
//!   answers later with [`Session::respond`]; iwf sends deliver_sm (receipts)
//!   with [`Session::send_request`].
//! - [`Role::Client`]: iwf binds to an SMSC as an ESME
//!   ([`Session::connected`] sends bind_transceiver); the SMSC's deliver_sm go
//!   to the application; iwf submits with [`Session::send_request`]. A
//!   [`Reconnect`] says when to reconnect and refuses to after the SMSC
//!   rejected iwf's credentials.
//!
//! ```text
//!   connected()                               unbind / unbind_resp,
//!  ─────────────► Open ──bind ok──► Bound ─── keep-alive timeout, framing
//!   (server)       │ bind refused   {Tx,Rx,   error, connection_lost()
//!                  │ bind timeout    TRx}  ─────────────────────┐
//!   connected()    ▼                  │ unbind()                ▼
//!  ─────────────► Binding ─bind_resp──┘    └──► Unbinding ──► Closed{reason}
//!   (client)       │ rejected / timeout                         ▲
//!                  └────────────────────────────────────────────┘
//! ```
//!
//! Driving it (quinn-proto style): feed stream bytes to
//! [`Session::handle_input`] until it consumes nothing and returns no request
//! (each call hands back at most one submit_sm / data_sm / deliver_sm, as a
//! [`Pdu`] borrowed from the input or from the session's reassembly buffer);
//! after any input or call, drain [`Session::poll_transmit`] into the TCP
//! socket and [`Session::poll_event`]; call [`Session::handle_timeout`] when
//! [`Session::poll_timeout`] is reached. After [`Event::Closed`], flush the
//! output and close the TCP connection; [`Session::connected`] reuses the
//! session (and its buffers) for the next one.
//!
//! Bounds: everything is allocated in [`Session::new`]: a reassembly buffer of
//! one PDU of [`SessionConfig::max_pdu_len`], an output buffer, a window of
//! [`SessionConfig::window`] requests awaiting the application's answer, a
//! window of [`SessionConfig::out_window`] requests awaiting the peer's
//! response, and an event queue. Nothing is dropped: a request beyond the
//! window is answered `ESME_RTHROTTLED` at once; when the output buffer or
//! event queue lacks room for the answers of one more PDU,
//! [`Session::handle_input`] stops consuming (TCP back-pressure).
//!
//! ```
//! use iwf::ids::LegacySystemId;
//! use iwf::session::smpp::{BindRequest, Event, Session, SessionConfig};
//! use std::net::Ipv4Addr;
//! let mut smsc = Session::new(SessionConfig::default());
//! smsc.connected(0, Ipv4Addr::new(198, 18, 1, 1));
//! // bind_transceiver "smsca" / "pwa", sequence 1
//! let bind = b"\0\0\0\x1f\0\0\0\x09\0\0\0\0\0\0\0\x01smsca\0pwa\0\0\x34\0\0\0";
//! let mut auth = |b: &BindRequest<'_>| {
//!     if b.system_id == b"smsca" && b.password == b"pwa" { Ok(LegacySystemId(1)) }
//!     else { Err(iwf::session::smpp::BindRefusal::BadPassword) }
//! };
//! let input = smsc.handle_input(0, bind, &mut auth);
//! assert_eq!(input.consumed, bind.len());
//! assert!(matches!(smsc.poll_event(), Some(Event::Bound { system: Some(LegacySystemId(1)), .. })));
//! let mut out = [0u8; 64];
//! let n = smsc.poll_transmit(&mut out);
//! assert_eq!(&out[4..8], &[0x80, 0, 0, 0x09]); // bind_transceiver_resp
//! assert_eq!(&out[8..12], &[0, 0, 0, 0]);      // ESME_ROK
//! # let _ = n;
//! ```

use crate::ids::LegacySystemId;
use core::fmt;
use std::net::Ipv4Addr;

use crate::wire::smpp::{
    frame, Bind, BindResp, Body, CommandId, CommandStatus, EmitError, FrameError, MessageIdResp, Packet, Pdu, Tlv,
    TlvTag, Tlvs, HEADER_LEN, INTERFACE_VERSION_34, KANNEL_MAX_PDU_LEN,
};

mod reconnect;

pub use reconnect::{Reconnect, ReconnectConfig};

/// Output room kept per answer the session owes (a `*_resp` with the longest
/// `message_id`: 16 + 65 bytes, rounded up).
const RESP_MAX: usize = 96;

/// Requests of the session itself that may be outstanding beside the
/// application's: bind, enquire_link, unbind.
const CONTROL_SLOTS: usize = 3;

/// A short SMPP text field held inline (`system_id`, `password`,
/// `message_id`): at most `N` octets, no NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmppText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> SmppText<N> {
    /// The text, `None` if longer than `N` octets or containing a NUL.
    pub fn new(text: &[u8]) -> Option<Self> {
        if text.len() > N || text.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes.get_mut(..text.len())?.copy_from_slice(text);
        Some(SmppText { bytes, len: text.len() })
    }

    /// The octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for SmppText<N> {
    fn default() -> Self {
        SmppText { bytes: [0u8; N], len: 0 }
    }
}

impl<const N: usize> fmt::Debug for SmppText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())
    }
}

impl<const N: usize> fmt::Display for SmppText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_bytes().escape_ascii())
    }
}

/// A `message_id` (≤ 64 characters, SMPP 3.4 §5.2.23).
pub type MessageId = SmppText<64>;

/// The three bind types (SMPP 3.4 §2.2), seen from the ESME.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindType {
    /// bind_transmitter: the ESME submits, receives nothing.
    Transmitter,
    /// bind_receiver: the ESME receives deliver_sm, submits nothing.
    Receiver,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindType {
    /// The bind type of a bind request command.
    pub fn from_request(command: CommandId) -> Option<BindType> {
        match command {
            CommandId::BindTransmitter => Some(BindType::Transmitter),
            CommandId::BindReceiver => Some(BindType::Receiver),
            CommandId::BindTransceiver => Some(BindType::Transceiver),
            _ => None,
        }
    }

    /// The bind request's command_id.
    pub fn request(self) -> CommandId {
        match self {
            BindType::Transmitter => CommandId::BindTransmitter,
            BindType::Receiver => CommandId::BindReceiver,
            BindType::Transceiver => CommandId::BindTransceiver,
        }
    }

    /// Whether the ESME may send messages (submit_sm, data_sm, ...).
    pub fn transmits(self) -> bool {
        matches!(self, BindType::Transmitter | BindType::Transceiver)
    }

    /// Whether the ESME may receive messages (deliver_sm, data_sm, alerts).
    pub fn receives(self) -> bool {
        matches!(self, BindType::Receiver | BindType::Transceiver)
    }
}

impl fmt::Display for BindType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindType::Transmitter => "transmitter",
            BindType::Receiver => "receiver",
            BindType::Transceiver => "transceiver",
        })
    }
}

/// Which end of the SMPP association sends a PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Esme,
    Smsc,
}

/// Whether a request `command` sent by `sender` is allowed on a bind of type
/// `bind` (SMPP 3.4 §2.3, table 2-1): messages travel ESME→SMSC on
/// transmitter binds and SMSC→ESME on receiver binds; session management
/// (enquire_link, unbind) is allowed on every bind.
fn allowed(sender: Side, command: CommandId, bind: BindType) -> bool {
    use CommandId::*;
    match command {
        SubmitSm | SubmitMulti | QuerySm | CancelSm | ReplaceSm | BroadcastSm | QueryBroadcastSm
        | CancelBroadcastSm => sender == Side::Esme && bind.transmits(),
        DeliverSm | AlertNotification => sender == Side::Smsc && bind.receives(),
        DataSm => match sender {
            Side::Esme => bind.transmits(),
            Side::Smsc => bind.receives(),
        },
        _ => true,
    }
}

/// A bind request as the [`Authenticator`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindRequest<'a> {
    /// The ESME's `system_id`.
    pub system_id: &'a [u8],
    /// Its `password` (sent in clear: pair it with the IP allow-list).
    pub password: &'a [u8],
    /// Its `system_type`.
    pub system_type: &'a [u8],
    /// The bind type asked for.
    pub bind_type: BindType,
    /// `interface_version` (0x34, 0x50).
    pub interface_version: u8,
    /// The TCP peer's address.
    pub peer: Ipv4Addr,
}

/// Why the [`Authenticator`] refused a bind; each maps to the status the
/// bind_resp carries and to its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindRefusal {
    /// No legacy system has this system_id: `ESME_RINVSYSID`.
    UnknownSystem,
    /// Wrong password: `ESME_RINVPASWD`.
    BadPassword,
    /// The peer address is not on the system's allow-list: `ESME_RBINDFAIL`.
    AddressNotAllowed,
    /// The system already holds all the binds it may: `ESME_RBINDFAIL`.
    TooManyBinds,
    /// Any other refusal: `ESME_RBINDFAIL`.
    Failed,
}

impl BindRefusal {
    /// The bind_resp status.
    pub fn status(self) -> CommandStatus {
        match self {
            BindRefusal::UnknownSystem => CommandStatus::ESME_RINVSYSID,
            BindRefusal::BadPassword => CommandStatus::ESME_RINVPASWD,
            BindRefusal::AddressNotAllowed | BindRefusal::TooManyBinds | BindRefusal::Failed => {
                CommandStatus::ESME_RBINDFAIL
            }
        }
    }
}

impl fmt::Display for BindRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindRefusal::UnknownSystem => "unknown system_id",
            BindRefusal::BadPassword => "wrong password",
            BindRefusal::AddressNotAllowed => "peer address not allowed",
            BindRefusal::TooManyBinds => "too many binds",
            BindRefusal::Failed => "bind refused",
        })
    }
}

/// Checks a bind against provisioning (server role): the caller's view of the
/// legacy systems, their passwords, allow-lists and bind limits.
pub trait Authenticator {
    /// The legacy system the bind authenticates as, or why not.
    fn authenticate(&mut self, bind: &BindRequest<'_>) -> Result<LegacySystemId, BindRefusal>;
}

impl<F> Authenticator for F
where
    F: FnMut(&BindRequest<'_>) -> Result<LegacySystemId, BindRefusal>,
{
    fn authenticate(&mut self, bind: &BindRequest<'_>) -> Result<LegacySystemId, BindRefusal> {
        self(bind)
    }
}

/// An [`Authenticator`] that refuses every bind: for client sessions, which
/// never consult it (a bind from an SMSC is answered `ESME_RINVBNDSTS`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RefuseBinds;

impl Authenticator for RefuseBinds {
    fn authenticate(&mut self, _: &BindRequest<'_>) -> Result<LegacySystemId, BindRefusal> {
        Err(BindRefusal::Failed)
    }
}

/// What iwf binds with in the client role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `system_id` (≤ 15 octets).
    pub system_id: SmppText<15>,
    /// `password` (≤ 8 octets).
    pub password: SmppText<8>,
    /// `system_type` (≤ 12 octets, often empty).
    pub system_type: SmppText<12>,
    /// The bind to ask for (transceiver by default).
    pub bind_type: BindType,
}

impl Credentials {
    /// A transceiver bind with these credentials; `None` if a field is too
    /// long or holds a NUL.
    pub fn transceiver(system_id: &[u8], password: &[u8]) -> Option<Self> {
        Some(Credentials {
            system_id: SmppText::new(system_id)?,
            password: SmppText::new(password)?,
            system_type: SmppText::default(),
            bind_type: BindType::Transceiver,
        })
    }
}

/// Which end of the bind iwf is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// iwf is the SMSC: legacy systems bind to it.
    Server,
    /// iwf is an ESME binding to an SMSC with these credentials.
    Client(Credentials),
}

/// Session configuration. Times in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Server or client.
    pub role: Role,
    /// iwf's `system_id` in bind_resp (server role).
    pub system_id: SmppText<15>,
    /// `interface_version` iwf binds with, and `sc_interface_version` it
    /// answers binds with.
    pub interface_version: u8,
    /// Largest `command_length` accepted from the peer (framing cap; also
    /// the reassembly buffer's size).
    pub max_pdu_len: usize,
    /// Requests from the peer awaiting the application's answer; beyond it,
    /// `ESME_RTHROTTLED`.
    pub window: usize,
    /// The application's requests awaiting the peer's response.
    pub out_window: usize,
    /// Requests the application may set aside ([`Session::set_aside`]): held
    /// unanswered outside the window, so that they do not take the room of
    /// requests that can complete (parts of a concatenated message waiting for
    /// their siblings).
    pub aside: usize,
    /// How long a request of iwf waits for its response.
    pub response_timeout: u64,
    /// Inactivity (nothing received) before iwf sends enquire_link; 0
    /// disables the keep-alive. Its response must come within
    /// `response_timeout`, or the session closes.
    pub enquire_link_interval: u64,
    /// Server: how long a connection may stay unbound. Client: how long the
    /// bind_resp may take.
    pub bind_timeout: u64,
    /// How long to stop sending new requests after an `ESME_RTHROTTLED`
    /// response.
    pub throttle_backoff: u64,
    /// Output buffer size; raised to the minimum the windows need.
    pub out_capacity: usize,
    /// Server: answer each bind refusal with its own status
    /// ([`BindRefusal::status`]). Off (the default), every refusal is
    /// `ESME_RBINDFAIL`, so a stranger learns nothing about which system_ids
    /// exist or whether a password was right; the specific statuses are for
    /// lab debugging.
    pub specific_bind_errors: bool,
}

impl Default for SessionConfig {
    /// Server role, system_id `iwf`, SMPP 3.4, Kannel's PDU cap, windows of
    /// 10, 30 s response timeout and keep-alive, 10 s to bind, 1 s back-off.
    fn default() -> Self {
        SessionConfig {
            role: Role::Server,
            system_id: SmppText::new(b"iwf").unwrap_or_default(),
            interface_version: INTERFACE_VERSION_34,
            max_pdu_len: KANNEL_MAX_PDU_LEN,
            window: 10,
            out_window: 10,
            aside: 0,
            response_timeout: 30_000,
            enquire_link_interval: 30_000,
            bind_timeout: 10_000,
            throttle_backoff: 1_000,
            out_capacity: 0,
            specific_bind_errors: false,
        }
    }
}

/// Why a session closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer unbound (iwf answered unbind_resp).
    PeerUnbound,
    /// iwf unbound ([`Session::unbind`]) and the peer answered.
    Unbound,
    /// The peer sent a `command_length` below 16 or above the cap (iwf
    /// answered generic_nack `ESME_RINVCMDLEN`).
    InvalidCommandLength,
    /// No enquire_link_resp within the response timeout.
    KeepAliveTimeout,
    /// Server: no bind within the bind timeout. Client: no bind_resp.
    BindTimeout,
    /// No unbind_resp within the response timeout.
    UnbindTimeout,
    /// Server: the bind was refused with this status (the connection closes
    /// after the bind_resp, so a password cannot be guessed at line rate).
    BindRefused(CommandStatus),
    /// Client: the SMSC refused iwf's credentials (`ESME_RINVPASWD`,
    /// `ESME_RINVSYSID`, `ESME_RBINDFAIL`): raise the alarm, do not rebind
    /// until the configuration changes.
    AuthRejected(CommandStatus),
    /// Client: the bind failed with another status.
    BindFailed(CommandStatus),
    /// The caller reported the TCP connection gone.
    ConnectionLost,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerUnbound => f.write_str("peer unbound"),
            CloseReason::Unbound => f.write_str("unbound"),
            CloseReason::InvalidCommandLength => f.write_str("invalid command_length"),
            CloseReason::KeepAliveTimeout => f.write_str("enquire_link timed out"),
            CloseReason::BindTimeout => f.write_str("bind timed out"),
            CloseReason::UnbindTimeout => f.write_str("unbind timed out"),
            CloseReason::BindRefused(s) => write!(f, "bind refused with {s}"),
            CloseReason::AuthRejected(s) => write!(f, "SMSC rejected iwf's credentials: {s}"),
            CloseReason::BindFailed(s) => write!(f, "bind failed: {s}"),
            CloseReason::ConnectionLost => f.write_str("connection lost"),
        }
    }
}

/// The session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection yet ([`Session::connected`] not called).
    Idle,
    /// Server: connected, waiting for a bind.
    Open,
    /// Client: bind sent, waiting for its bind_resp.
    Binding,
    /// Bound with this type.
    Bound(BindType),
    /// iwf sent unbind and waits for unbind_resp.
    Unbinding,
    /// Closed: flush the output, then close the TCP connection.
    Closed(CloseReason),
}

/// What the session tells the application, from [`Session::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The session is bound. Server: `system` is the legacy system the
    /// [`Authenticator`] named. Client: `None`.
    Bound {
        /// The bind type.
        bind_type: BindType,
        /// The authenticated legacy system (server role).
        system: Option<LegacySystemId>,
    },
    /// The response to a request sent with [`Session::send_request`].
    Response {
        /// The request's sequence number.
        seq: u32,
        /// The response's command_id (`submit_sm_resp`, `generic_nack`, ...).
        command_id: CommandId,
        /// Its command_status.
        status: CommandStatus,
        /// Its `message_id` (empty when absent or unreadable).
        message_id: MessageId,
    },
    /// No response within the response timeout: the request's fate is
    /// unknown (the peer may still have taken it).
    ResponseTimeout {
        /// The request's sequence number.
        seq: u32,
        /// The request's command_id.
        command_id: CommandId,
    },
    /// The session closed with this request outstanding: send it again on
    /// another bind (its fate is unknown, as for a timeout).
    Abandoned {
        /// The request's sequence number.
        seq: u32,
        /// The request's command_id.
        command_id: CommandId,
    },
    /// The peer answered `ESME_RTHROTTLED`: [`Session::send_request`]
    /// refuses new requests until `until`.
    Throttled {
        /// When sending resumes.
        until: u64,
    },
    /// The throttling back-off is over.
    Resumed,
    /// The session closed (always the last event of a connection).
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why [`Session::send_request`] refused a request. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not bound (or unbinding, or closed).
    NotBound,
    /// The bind type does not carry this request in this direction (a
    /// deliver_sm to a transmitter, a submit_sm on a receiver bind).
    NotPermitted,
    /// A response, a bind, unbind, enquire_link or generic_nack: the session
    /// sends those itself.
    NotARequest,
    /// Paused by an `ESME_RTHROTTLED` until this time.
    Throttled {
        /// When sending resumes.
        until: u64,
    },
    /// [`SessionConfig::out_window`] requests are outstanding.
    WindowFull,
    /// The output buffer lacks room: drain [`Session::poll_transmit`].
    OutputFull,
    /// The PDU is longer than [`SessionConfig::max_pdu_len`].
    TooLarge,
    /// The PDU cannot be encoded.
    Emit(EmitError),
    /// An encoded PDU's header does not frame it (`command_length` is not its length).
    NotAPdu,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotBound => f.write_str("SMPP session not bound"),
            SendError::NotPermitted => f.write_str("request not allowed on this bind type"),
            SendError::NotARequest => f.write_str("not a request the application may send"),
            SendError::Throttled { until } => write!(f, "throttled by the peer until {until}"),
            SendError::WindowFull => f.write_str("SMPP window full"),
            SendError::OutputFull => f.write_str("SMPP output buffer full"),
            SendError::TooLarge => f.write_str("PDU longer than the session's cap"),
            SendError::Emit(e) => write!(f, "cannot encode PDU: {e}"),
            SendError::NotAPdu => f.write_str("encoded PDU with a command_length other than its length"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why [`Session::respond`] failed. The request stays in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespondError {
    /// No request with this sequence number awaits an answer.
    UnknownSequence,
    /// The session is closed (its pending requests were dropped with it).
    NotConnected,
    /// The response cannot be encoded (message_id too long or holding NUL).
    Emit(EmitError),
}

impl fmt::Display for RespondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespondError::UnknownSequence => f.write_str("no pending request with this sequence"),
            RespondError::NotConnected => f.write_str("SMPP session not connected"),
            RespondError::Emit(e) => write!(f, "cannot encode response: {e}"),
        }
    }
}

impl std::error::Error for RespondError {}

/// PDU counts by command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandCounts {
    /// bind_transmitter / bind_receiver / bind_transceiver.
    pub bind: u64,
    /// bind_*_resp.
    pub bind_resp: u64,
    /// unbind.
    pub unbind: u64,
    /// unbind_resp.
    pub unbind_resp: u64,
    /// enquire_link.
    pub enquire_link: u64,
    /// enquire_link_resp.
    pub enquire_link_resp: u64,
    /// submit_sm.
    pub submit_sm: u64,
    /// submit_sm_resp.
    pub submit_sm_resp: u64,
    /// deliver_sm.
    pub deliver_sm: u64,
    /// deliver_sm_resp.
    pub deliver_sm_resp: u64,
    /// data_sm.
    pub data_sm: u64,
    /// data_sm_resp.
    pub data_sm_resp: u64,
    /// generic_nack.
    pub generic_nack: u64,
    /// Any other command, known or not.
    pub other: u64,
}

impl CommandCounts {
    fn slot(&mut self, command: CommandId) -> &mut u64 {
        use CommandId::*;
        match command {
            BindTransmitter | BindReceiver | BindTransceiver => &mut self.bind,
            BindTransmitterResp | BindReceiverResp | BindTransceiverResp => &mut self.bind_resp,
            Unbind => &mut self.unbind,
            UnbindResp => &mut self.unbind_resp,
            EnquireLink => &mut self.enquire_link,
            EnquireLinkResp => &mut self.enquire_link_resp,
            SubmitSm => &mut self.submit_sm,
            SubmitSmResp => &mut self.submit_sm_resp,
            DeliverSm => &mut self.deliver_sm,
            DeliverSmResp => &mut self.deliver_sm_resp,
            DataSm => &mut self.data_sm,
            DataSmResp => &mut self.data_sm_resp,
            GenericNack => &mut self.generic_nack,
            _ => &mut self.other,
        }
    }

    fn count(&mut self, command: CommandId) {
        let c = self.slot(command);
        *c = c.saturating_add(1);
    }

    /// The count for `command` (the bucket it falls in).
    pub fn get(&self, command: CommandId) -> u64 {
        let mut copy = *self;
        *copy.slot(command)
    }

    /// All PDUs.
    pub fn total(&self) -> u64 {
        [
            self.bind,
            self.bind_resp,
            self.unbind,
            self.unbind_resp,
            self.enquire_link,
            self.enquire_link_resp,
            self.submit_sm,
            self.submit_sm_resp,
            self.deliver_sm,
            self.deliver_sm_resp,
            self.data_sm,
            self.data_sm_resp,
            self.generic_nack,
            self.other,
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Session counters (cumulative over the connections a [`Session`] served).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// PDUs received, by command.
    pub pdus_in: CommandCounts,
    /// PDUs sent, by command.
    pub pdus_out: CommandCounts,
    /// Stream bytes taken in PDUs.
    pub bytes_in: u64,
    /// Stream bytes handed to [`Session::poll_transmit`].
    pub bytes_out: u64,
    /// Bytes received while idle or after close, discarded.
    pub discarded_bytes: u64,
    /// Binds accepted (server) or bind_resp OK (client).
    pub binds_ok: u64,
    /// Binds refused: unknown system_id.
    pub binds_refused_system_id: u64,
    /// Binds refused: wrong password.
    pub binds_refused_password: u64,
    /// Binds refused: peer address not on the allow-list.
    pub binds_refused_address: u64,
    /// Binds refused: too many binds for the system.
    pub binds_refused_too_many: u64,
    /// Binds refused for another reason.
    pub binds_refused_other: u64,
    /// Binds whose body did not parse.
    pub binds_malformed: u64,
    /// Binds on a bound session (`ESME_RALYBND`).
    pub binds_already_bound: u64,
    /// Client: the SMSC rejected iwf's credentials (the alarm).
    pub auth_rejected: u64,
    /// Client: the bind failed with another status.
    pub bind_failures: u64,
    /// Binds that timed out (either role).
    pub bind_timeouts: u64,
    /// generic_nack sent with `ESME_RINVCMDLEN` (framing errors).
    pub nacks_invalid_length: u64,
    /// generic_nack sent with `ESME_RINVCMDID` (unknown or unsupported
    /// commands).
    pub nacks_invalid_command: u64,
    /// generic_nack sent with another status.
    pub nacks_other: u64,
    /// Requests refused with `ESME_RINVBNDSTS` (wrong state or bind type).
    pub invalid_bind_status: u64,
    /// Requests whose body did not parse (answered with the parse status).
    pub malformed_requests: u64,
    /// Responses whose body did not parse.
    pub malformed_responses: u64,
    /// Requests answered `ESME_RTHROTTLED` because the window was full.
    pub throttled_window_full: u64,
    /// Requests the application answered `ESME_RTHROTTLED` (lane full).
    pub throttled_by_app: u64,
    /// `ESME_RTHROTTLED` responses to iwf's requests.
    pub throttled_received: u64,
    /// Requests handed to the application.
    pub requests_to_app: u64,
    /// Answers the application gave.
    pub app_responses: u64,
    /// Responses iwf's requests got.
    pub responses: u64,
    /// iwf's requests that timed out.
    pub response_timeouts: u64,
    /// Responses matching no outstanding request.
    pub stray_responses: u64,
    /// iwf's requests outstanding when the session closed.
    pub abandoned: u64,
    /// enquire_link keep-alives sent.
    pub keepalives_sent: u64,
    /// Keep-alives answered.
    pub keepalives_answered: u64,
    /// Keep-alives unanswered (session closed).
    pub keepalive_timeouts: u64,
    /// alert_notification received (not used by iwf).
    pub alerts_ignored: u64,
    /// Times [`Session::handle_input`] stopped for lack of output or event
    /// room (back-pressure).
    pub input_paused: u64,
}

/// What [`Session::handle_input`] did with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input<'a> {
    /// Bytes taken from the front of the input (the caller keeps the rest for
    /// the next call).
    pub consumed: usize,
    /// A submit_sm / data_sm / deliver_sm for the application, which must
    /// answer it with [`Session::respond`] (its sequence number); the PDU
    /// borrows the input or the session's reassembly buffer.
    pub request: Option<Pdu<'a>>,
}

/// A request of the peer awaiting the application's answer.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u32,
    command: CommandId,
    arrival: u64,
    /// Set aside: held outside the window.
    aside: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    App,
    Bind,
    EnquireLink,
    Unbind,
}

/// A request of iwf awaiting the peer's response.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    seq: u32,
    command: CommandId,
    purpose: Purpose,
    deadline: u64,
}

/// Pending output bytes: `buf[start..end]`, compacted to the front when an
/// append does not fit behind it (PDUs are emitted contiguously).
#[derive(Debug)]
struct OutBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl OutBuf {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn free(&self) -> usize {
        self.buf.len() - self.len()
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The free room at the end, at least `needed` octets (what waits is moved to the
    /// front when the tail is too short).
    fn room(&mut self, needed: usize) -> Result<&mut [u8], EmitError> {
        if needed > self.free() {
            return Err(EmitError::BufferTooSmall { needed, available: self.free() });
        }
        if self.buf.len() - self.end < needed {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        Ok(self.buf.get_mut(self.end..).unwrap_or(&mut []))
    }

    fn emit(&mut self, pdu: &Pdu<'_>) -> Result<usize, EmitError> {
        let n = pdu.emit(self.room(pdu.buffer_len())?)?;
        self.end += n;
        Ok(n)
    }

    /// Appends `bytes` (a whole PDU already encoded) and returns where they now sit,
    /// for the header fields the session fills in.
    fn append(&mut self, bytes: &[u8]) -> Result<&mut [u8], EmitError> {
        let needed = bytes.len();
        self.room(needed)?
            .get_mut(..needed)
            .ok_or(EmitError::BufferTooSmall { needed, available: 0 })?
            .copy_from_slice(bytes);
        // After `room`, which may have moved what waits: the bytes sit at the end.
        let at = self.end;
        self.end += needed;
        Ok(self.buf.get_mut(at..at + needed).unwrap_or(&mut []))
    }

    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = self.len().min(out.len());
        if let (Some(d), Some(s)) = (out.get_mut(..n), self.buf.get(self.start..self.start + n)) {
            d.copy_from_slice(s);
        }
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
        n
    }
}

/// Bounded FIFO of events, allocated once.
type EventQueue = crate::session::BoundedFifo<Event>;

/// The reassembly buffer: the front of one PDU that arrived in pieces.
#[derive(Debug)]
struct InBuf {
    buf: Vec<u8>,
    len: usize,
}

/// Where the PDU handed to the application lies.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// `bytes[start..end]` of the caller's input.
    External(usize, usize),
    /// The first `n` bytes of the reassembly buffer.
    Internal(usize),
}

/// What [`Core::on_frame`] made of one PDU.
enum Step {
    /// Handled inside the session.
    Done,
    /// A request for the application, if its body parses.
    Candidate { seq: u32, command: CommandId },
}

/// Everything but the reassembly buffer (split so that a PDU borrowed from
/// that buffer can be returned while the rest is updated).
#[derive(Debug)]
struct Core {
    config: SessionConfig,
    state: State,
    peer: Ipv4Addr,
    system: Option<LegacySystemId>,
    opened_at: u64,
    last_rx: u64,
    next_seq: u32,
    out: OutBuf,
    pending: Vec<Option<Pending>>,
    pending_len: usize,
    /// Of `pending_len`, those set aside (outside the window).
    aside_len: usize,
    /// The peer's requests held at most now ([`Session::set_window`]; the room
    /// allocated is `config.window`).
    window: usize,
    /// The application's requests outstanding at most now (within `config.out_window`).
    out_window: usize,
    arrivals: u64,
    outstanding: Vec<Option<Outstanding>>,
    app_outstanding: usize,
    paused_until: Option<u64>,
    events: EventQueue,
    close_reported: bool,
    counters: SessionCounters,
}

/// One SMPP session over one TCP connection (reusable for the next).
#[derive(Debug)]
pub struct Session {
    inbuf: InBuf,
    core: Core,
}

impl Session {
    /// A session with its buffers and tables allocated; [`State::Idle`]
    /// until [`Session::connected`]. Zero windows and a PDU cap below the
    /// header are raised to the minimum.
    pub fn new(config: SessionConfig) -> Session {
        let mut config = config;
        config.max_pdu_len = config.max_pdu_len.max(HEADER_LEN);
        config.window = config.window.max(1);
        config.out_window = config.out_window.max(1);
        let held = config.window.saturating_add(config.aside);
        let min_out = config.max_pdu_len.saturating_add((held + CONTROL_SLOTS + 1).saturating_mul(RESP_MAX));
        config.out_capacity = config.out_capacity.max(min_out);
        let events = config.window + config.out_window + 8;
        Session {
            inbuf: InBuf { buf: vec![0; config.max_pdu_len], len: 0 },
            core: Core {
                config,
                state: State::Idle,
                peer: Ipv4Addr::UNSPECIFIED,
                system: None,
                opened_at: 0,
                last_rx: 0,
                next_seq: 1,
                out: OutBuf { buf: vec![0; config.out_capacity], start: 0, end: 0 },
                pending: vec![None; held],
                pending_len: 0,
                aside_len: 0,
                window: config.window,
                out_window: config.out_window,
                arrivals: 0,
                outstanding: vec![None; config.out_window + CONTROL_SLOTS],
                app_outstanding: 0,
                paused_until: None,
                events: EventQueue::new(events.max(2)),
                close_reported: true,
                counters: SessionCounters::default(),
            },
        }
    }

    /// The configuration in force (after [`Session::new`]'s adjustments).
    pub fn config(&self) -> &SessionConfig {
        &self.core.config
    }

    /// Holds at most `window` of the peer's requests from now on (beyond them:
    /// `ESME_RTHROTTLED`) and keeps at most `window` of the application's requests
    /// outstanding, within the room the configuration allocated: the bound system's
    /// own window, from the live provisioning, rather than the largest any system has.
    /// Requests already held or outstanding are not refused.
    pub fn set_window(&mut self, window: usize) {
        self.core.window = window.clamp(1, self.core.config.window.max(1));
        self.core.out_window = window.clamp(1, self.core.config.out_window.max(1));
    }

    /// The peer's requests held at most now.
    pub fn window(&self) -> usize {
        self.core.window
    }

    /// The state.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// The legacy system a server session is bound as.
    pub fn system(&self) -> Option<LegacySystemId> {
        self.core.system
    }

    /// The TCP peer given to [`Session::connected`].
    pub fn peer(&self) -> Ipv4Addr {
        self.core.peer
    }

    /// The counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.core.counters
    }

    /// Requests of the peer awaiting [`Session::respond`] (those set aside included).
    pub fn pending_requests(&self) -> usize {
        self.core.pending_len
    }

    /// Requests of the peer set aside ([`Session::set_aside`]).
    pub fn aside_requests(&self) -> usize {
        self.core.aside_len
    }

    /// Moves the pending request `seq` (the oldest with that number not yet set
    /// aside) out of the window: it stays unanswered until [`Session::respond`], and
    /// its window slot takes the next request. Refused (`false`) when
    /// [`SessionConfig::aside`] requests are set aside already or none is pending
    /// with `seq`; the request then stays in the window.
    pub fn set_aside(&mut self, seq: u32) -> bool {
        let c = &mut self.core;
        if c.aside_len >= c.config.aside {
            return false;
        }
        let oldest = c.pending.iter_mut().flatten().filter(|p| p.seq == seq && !p.aside).min_by_key(|p| p.arrival);
        match oldest {
            Some(p) => {
                p.aside = true;
                c.aside_len += 1;
                true
            }
            None => false,
        }
    }

    /// iwf's requests awaiting the peer's response (the application's and
    /// the session's own).
    pub fn outstanding_requests(&self) -> usize {
        self.core.outstanding.iter().flatten().count()
    }

    /// Output bytes waiting for [`Session::poll_transmit`].
    pub fn buffered_output(&self) -> usize {
        self.core.out.len()
    }

    /// Bytes of a partial PDU held for reassembly.
    pub fn buffered_input(&self) -> usize {
        self.inbuf.len
    }

    /// The caller's TCP connection to `peer` is up (accepted, or connected):
    /// the session starts over (Open in the server role; in the client role
    /// it sends its bind). Unpolled events and output of a previous
    /// connection are discarded.
    pub fn connected(&mut self, now: u64, peer: Ipv4Addr) {
        self.inbuf.len = 0;
        let c = &mut self.core;
        c.out.clear();
        c.pending.iter_mut().for_each(|p| *p = None);
        c.pending_len = 0;
        c.aside_len = 0;
        c.outstanding.iter_mut().for_each(|o| *o = None);
        c.app_outstanding = 0;
        c.paused_until = None;
        c.events.clear();
        c.close_reported = false;
        c.system = None;
        c.peer = peer;
        c.opened_at = now;
        c.last_rx = now;
        match c.config.role {
            Role::Server => c.state = State::Open,
            Role::Client(creds) => {
                c.state = State::Binding;
                let bind = Bind {
                    system_id: creds.system_id.as_bytes(),
                    password: creds.password.as_bytes(),
                    system_type: creds.system_type.as_bytes(),
                    interface_version: c.config.interface_version,
                    addr_ton: 0,
                    addr_npi: 0,
                    address_range: &[],
                };
                let body = match creds.bind_type {
                    BindType::Transmitter => Body::BindTransmitter(bind),
                    BindType::Receiver => Body::BindReceiver(bind),
                    BindType::Transceiver => Body::BindTransceiver(bind),
                };
                let timeout = c.config.bind_timeout;
                if c.send(now, body, Purpose::Bind, timeout).is_err() {
                    // Credentials are checked by SmppText; only a config
                    // far too small could get here.
                    c.close(CloseReason::BindFailed(CommandStatus::ESME_RSYSERR));
                }
            }
        }
    }

    /// The caller's TCP connection is gone (reset, FIN, error).
    pub fn connection_lost(&mut self, _now: u64) {
        if !matches!(self.core.state, State::Closed(_) | State::Idle) {
            self.core.close(CloseReason::ConnectionLost);
        }
    }

    /// Takes TCP stream bytes. Returns how many it consumed and, at most one
    /// per call, a request for the application. Call again with the rest
    /// while it consumes bytes or returns a request; it consumes nothing when
    /// the output buffer or event queue lacks room for the answers of one
    /// more PDU (drain them, then call again). After close, bytes are
    /// consumed and discarded.
    pub fn handle_input<'a>(&'a mut self, now: u64, bytes: &'a [u8], auth: &mut dyn Authenticator) -> Input<'a> {
        let mut consumed = 0usize;
        let (source, seq, command) = loop {
            let rest = bytes.get(consumed..).unwrap_or(&[]);
            if !matches!(self.core.state, State::Open | State::Binding | State::Bound(_) | State::Unbinding) {
                let c = &mut self.core.counters;
                c.discarded_bytes = c.discarded_bytes.saturating_add(rest.len() as u64);
                self.inbuf.len = 0;
                return Input { consumed: bytes.len(), request: None };
            }
            if rest.is_empty() {
                return Input { consumed, request: None };
            }
            if !self.core.has_room() {
                let c = &mut self.core.counters;
                c.input_paused = c.input_paused.saturating_add(1);
                return Input { consumed, request: None };
            }
            let max = self.core.config.max_pdu_len;
            if self.inbuf.len == 0 {
                match frame(rest, max) {
                    Ok(Some(n)) => {
                        let start = consumed;
                        consumed += n;
                        let pdu = rest.get(..n).unwrap_or(&[]);
                        let was_bound = matches!(self.core.state, State::Bound(_));
                        if let Step::Candidate { seq, command } = self.core.on_frame(now, pdu, auth) {
                            break (Source::External(start, consumed), seq, command);
                        }
                        if !was_bound && matches!(self.core.state, State::Bound(_)) {
                            // The caller hears of the bind (Event::Bound) before the
                            // requests that follow it in the same input.
                            return Input { consumed, request: None };
                        }
                    }
                    Ok(None) => {
                        // A partial PDU: shorter than its command_length,
                        // which is within the cap, so it fits.
                        let k = rest.len().min(self.inbuf.buf.len());
                        if let (Some(d), Some(s)) = (self.inbuf.buf.get_mut(..k), rest.get(..k)) {
                            d.copy_from_slice(s);
                        }
                        self.inbuf.len = k;
                        consumed += k;
                    }
                    Err(_) if rest.len() < HEADER_LEN => {
                        // Wait for the whole header, so that the
                        // generic_nack carries the sequence number.
                        if let Some(d) = self.inbuf.buf.get_mut(..rest.len()) {
                            d.copy_from_slice(rest);
                        }
                        self.inbuf.len = rest.len();
                        consumed += rest.len();
                    }
                    Err(e) => {
                        self.core.framing_error(rest, e);
                    }
                }
            } else {
                let have = self.inbuf.len;
                let want = if have < HEADER_LEN {
                    HEADER_LEN
                } else {
                    Packet::new_unchecked(self.inbuf.buf.get(..have).unwrap_or(&[])).command_length() as usize
                };
                let k = want.saturating_sub(have).min(rest.len());
                if let (Some(d), Some(s)) = (self.inbuf.buf.get_mut(have..have + k), rest.get(..k)) {
                    d.copy_from_slice(s);
                    self.inbuf.len = have + k;
                    consumed += k;
                } else {
                    // Cannot happen (want ≤ max = buffer size); never loop.
                    self.inbuf.len = 0;
                    self.core.close(CloseReason::InvalidCommandLength);
                    continue;
                }
                let held = self.inbuf.buf.get(..self.inbuf.len).unwrap_or(&[]);
                match frame(held, max) {
                    Ok(Some(n)) => {
                        self.inbuf.len = 0;
                        let pdu = self.inbuf.buf.get(..n).unwrap_or(&[]);
                        let was_bound = matches!(self.core.state, State::Bound(_));
                        if let Step::Candidate { seq, command } = self.core.on_frame(now, pdu, auth) {
                            break (Source::Internal(n), seq, command);
                        }
                        if !was_bound && matches!(self.core.state, State::Bound(_)) {
                            return Input { consumed, request: None };
                        }
                    }
                    Ok(None) => {}
                    Err(_) if self.inbuf.len < HEADER_LEN => {}
                    Err(e) => {
                        self.inbuf.len = 0;
                        let held = self.inbuf.buf.get(..have + k).unwrap_or(&[]);
                        self.core.framing_error(held, e);
                    }
                }
            }
        };
        let buf = match source {
            Source::External(start, end) => bytes.get(start..end),
            Source::Internal(n) => self.inbuf.buf.get(..n),
        }
        .unwrap_or(&[]);
        match Pdu::parse(buf) {
            Ok(pdu) => {
                self.core.admit(seq, command);
                Input { consumed, request: Some(pdu) }
            }
            Err(e) => {
                self.core.reply(seq, command.response(), e.command_status());
                let c = &mut self.core.counters;
                c.malformed_requests = c.malformed_requests.saturating_add(1);
                Input { consumed, request: None }
            }
        }
    }

    /// Answers a request handed out by [`Session::handle_input`] (the oldest
    /// pending one with this sequence number): `*_resp` with `status`, and
    /// `message_id` for a successful submit_sm / data_sm (deliver_sm_resp's
    /// is always empty; error responses carry no body). The output room was
    /// reserved when the request arrived, so this never waits.
    pub fn respond(&mut self, seq: u32, status: CommandStatus, message_id: &[u8]) -> Result<(), RespondError> {
        self.core.respond(seq, status, message_id)
    }

    /// Sends a request of the application (deliver_sm toward a bound ESME,
    /// submit_sm toward an SMSC, data_sm, ...) with the session's next
    /// sequence number (its `sequence_number` field is ignored), and returns
    /// that number; its outcome comes as [`Event::Response`],
    /// [`Event::ResponseTimeout`] or [`Event::Abandoned`].
    pub fn send_request(&mut self, now: u64, pdu: &Pdu<'_>) -> Result<u32, SendError> {
        self.core.send_request(now, pdu)
    }

    /// As [`Session::send_request`], for a request already encoded (header and body,
    /// as iwf's own encoders write them into a lane item): the bytes are copied once
    /// and the session's sequence number written into their header, with no parse and
    /// no second encoding. Only the header is read: the body must come from a trusted
    /// encoder.
    pub fn send_encoded(&mut self, now: u64, pdu: &[u8]) -> Result<u32, SendError> {
        self.core.send_encoded(now, pdu)
    }

    /// Starts an orderly unbind (bound sessions only): new requests are
    /// refused, pending ones may still be answered; [`Event::Closed`] with
    /// [`CloseReason::Unbound`] follows the unbind_resp.
    pub fn unbind(&mut self, now: u64) -> Result<u32, SendError> {
        let c = &mut self.core;
        if !matches!(c.state, State::Bound(_)) {
            return Err(SendError::NotBound);
        }
        let timeout = c.config.response_timeout;
        let seq = c.send(now, Body::Unbind, Purpose::Unbind, timeout)?;
        c.state = State::Unbinding;
        Ok(seq)
    }

    /// Copies pending output into `out` (the TCP socket's send buffer) and
    /// returns the number of bytes written.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> usize {
        let n = self.core.out.take(out);
        let c = &mut self.core.counters;
        c.bytes_out = c.bytes_out.saturating_add(n as u64);
        n
    }

    /// The next event. After close: [`Event::Abandoned`] for each request
    /// left outstanding, then [`Event::Closed`] once.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// When [`Session::handle_timeout`] must next be called (`None`: no
    /// timer runs).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.core.poll_timeout()
    }

    /// Runs the timers due at `now`: response timeouts, the bind timeout,
    /// the end of a throttling back-off, the keep-alive.
    pub fn handle_timeout(&mut self, now: u64) {
        self.core.handle_timeout(now)
    }
}

impl Core {
    /// The side the peer plays.
    fn peer_side(&self) -> Side {
        match self.config.role {
            Role::Server => Side::Esme,
            Role::Client(_) => Side::Smsc,
        }
    }

    fn own_side(&self) -> Side {
        match self.peer_side() {
            Side::Esme => Side::Smsc,
            Side::Smsc => Side::Esme,
        }
    }

    /// Output room promised to the application's pending answers, plus slack
    /// for the session's own small PDUs.
    fn reserved(&self) -> usize {
        (self.pending_len + 2).saturating_mul(RESP_MAX)
    }

    /// Whether the answers to one more input PDU fit.
    fn has_room(&self) -> bool {
        self.out.free() >= self.reserved().saturating_add(RESP_MAX) && self.events.free() >= 2
    }

    fn next_sequence(&mut self) -> u32 {
        loop {
            let seq = self.next_seq;
            self.next_seq = if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 };
            if !self.outstanding.iter().flatten().any(|o| o.seq == seq) {
                return seq;
            }
        }
    }

    /// Emits a request and records it as outstanding.
    fn send(&mut self, now: u64, body: Body<'_>, purpose: Purpose, timeout: u64) -> Result<u32, SendError> {
        let slot = self.outstanding.iter().position(Option::is_none).ok_or(SendError::WindowFull)?;
        let seq = self.next_sequence();
        let pdu = Pdu::new(seq, body);
        self.out.emit(&pdu).map_err(|e| match e {
            EmitError::BufferTooSmall { .. } => SendError::OutputFull,
            e => SendError::Emit(e),
        })?;
        if let Some(s) = self.outstanding.get_mut(slot) {
            *s = Some(Outstanding { seq, command: body.command_id(), purpose, deadline: now.saturating_add(timeout) });
        }
        self.counters.pdus_out.count(body.command_id());
        Ok(seq)
    }

    /// Whether an application request of `command`, `len` octets long, may go now.
    fn admit_request(&self, command: CommandId, len: usize) -> Result<(), SendError> {
        let bind = match self.state {
            State::Bound(b) => b,
            _ => return Err(SendError::NotBound),
        };
        if command.is_response()
            || matches!(
                command,
                CommandId::BindTransmitter
                    | CommandId::BindReceiver
                    | CommandId::BindTransceiver
                    | CommandId::Unbind
                    | CommandId::EnquireLink
                    | CommandId::Outbind
            )
        {
            return Err(SendError::NotARequest);
        }
        if !allowed(self.own_side(), command, bind) {
            return Err(SendError::NotPermitted);
        }
        if let Some(until) = self.paused_until {
            return Err(SendError::Throttled { until });
        }
        if self.app_outstanding >= self.out_window {
            return Err(SendError::WindowFull);
        }
        if len > self.config.max_pdu_len {
            return Err(SendError::TooLarge);
        }
        if self.out.free() < self.reserved().saturating_add(len) {
            return Err(SendError::OutputFull);
        }
        Ok(())
    }

    fn send_request(&mut self, now: u64, pdu: &Pdu<'_>) -> Result<u32, SendError> {
        self.admit_request(pdu.command_id(), pdu.buffer_len())?;
        let timeout = self.config.response_timeout;
        let seq = self.send(now, pdu.body, Purpose::App, timeout)?;
        self.app_outstanding += 1;
        Ok(seq)
    }

    fn send_encoded(&mut self, now: u64, bytes: &[u8]) -> Result<u32, SendError> {
        let packet = Packet::new_checked(bytes).map_err(|_| SendError::NotAPdu)?;
        if packet.command_length() as usize != bytes.len() {
            return Err(SendError::NotAPdu);
        }
        let command = packet.command_id();
        self.admit_request(command, bytes.len())?;
        let slot = self.outstanding.iter().position(Option::is_none).ok_or(SendError::WindowFull)?;
        let seq = self.next_sequence();
        let written = self.out.append(bytes).map_err(|_| SendError::OutputFull)?;
        Packet::new_unchecked(written).set_sequence_number(seq);
        let deadline = now.saturating_add(self.config.response_timeout);
        if let Some(s) = self.outstanding.get_mut(slot) {
            *s = Some(Outstanding { seq, command, purpose: Purpose::App, deadline });
        }
        self.counters.pdus_out.count(command);
        self.app_outstanding += 1;
        Ok(seq)
    }

    /// A response without body (or a generic_nack), counted.
    fn reply(&mut self, seq: u32, command: CommandId, status: CommandStatus) {
        let pdu =
            Pdu { command_status: status, sequence_number: seq, body: Body::Other { command_id: command, body: &[] } };
        // Room for it was checked before the input was taken.
        if self.out.emit(&pdu).is_ok() {
            self.counters.pdus_out.count(command);
        }
        if command == CommandId::GenericNack {
            let c = &mut self.counters;
            let n = match status {
                CommandStatus::ESME_RINVCMDLEN => &mut c.nacks_invalid_length,
                CommandStatus::ESME_RINVCMDID => &mut c.nacks_invalid_command,
                _ => &mut c.nacks_other,
            };
            *n = n.saturating_add(1);
        }
    }

    fn refuse_bind_status(&mut self, seq: u32, command: CommandId) {
        self.reply(seq, command.response(), CommandStatus::ESME_RINVBNDSTS);
        self.counters.invalid_bind_status = self.counters.invalid_bind_status.saturating_add(1);
    }

    fn framing_error(&mut self, head: &[u8], _e: FrameError) {
        let seq = Packet::new_unchecked(head).sequence_number();
        self.reply(seq, CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN);
        self.close(CloseReason::InvalidCommandLength);
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed(reason);
        self.pending.iter_mut().for_each(|p| *p = None);
        self.pending_len = 0;
        self.aside_len = 0;
        self.paused_until = None;
        // The session's own requests die with it; the application's are
        // reported as Abandoned by poll_event.
        for slot in self.outstanding.iter_mut() {
            if matches!(slot, Some(o) if o.purpose != Purpose::App) {
                *slot = None;
            }
        }
        self.close_reported = false;
    }

    /// Handles one whole PDU.
    fn on_frame(&mut self, now: u64, buf: &[u8], auth: &mut dyn Authenticator) -> Step {
        self.last_rx = now;
        self.counters.bytes_in = self.counters.bytes_in.saturating_add(buf.len() as u64);
        let p = Packet::new_unchecked(buf);
        let (command, seq, status) = (p.command_id(), p.sequence_number(), p.command_status());
        self.counters.pdus_in.count(command);
        if let CommandId::Unknown(_) = command {
            self.reply(seq, CommandId::GenericNack, CommandStatus::ESME_RINVCMDID);
            return Step::Done;
        }
        if command.is_response() {
            self.on_response(now, buf, command, seq, status);
            return Step::Done;
        }
        let bound = match self.state {
            State::Bound(b) => Some(b),
            _ => None,
        };
        match command {
            CommandId::BindTransmitter | CommandId::BindReceiver | CommandId::BindTransceiver => {
                self.on_bind(buf, command, seq, auth)
            }
            CommandId::EnquireLink => {
                // Answered in every state (SMPP 5.0 allows it in OPEN too).
                let status = match Pdu::parse(buf) {
                    Ok(_) => CommandStatus::ESME_ROK,
                    Err(e) => e.command_status(),
                };
                self.reply(seq, CommandId::EnquireLinkResp, status);
            }
            CommandId::Unbind => match self.state {
                State::Bound(_) | State::Unbinding => {
                    self.reply(seq, CommandId::UnbindResp, CommandStatus::ESME_ROK);
                    let reason =
                        if self.state == State::Unbinding { CloseReason::Unbound } else { CloseReason::PeerUnbound };
                    self.close(reason);
                }
                _ => self.refuse_bind_status(seq, command),
            },
            CommandId::SubmitSm | CommandId::DataSm | CommandId::DeliverSm => {
                let Some(bind) = bound else {
                    self.refuse_bind_status(seq, command);
                    return Step::Done;
                };
                if !allowed(self.peer_side(), command, bind) {
                    self.refuse_bind_status(seq, command);
                    return Step::Done;
                }
                if self.pending_len - self.aside_len >= self.window {
                    self.reply(seq, command.response(), CommandStatus::ESME_RTHROTTLED);
                    let c = &mut self.counters;
                    c.throttled_window_full = c.throttled_window_full.saturating_add(1);
                    return Step::Done;
                }
                return Step::Candidate { seq, command };
            }
            CommandId::AlertNotification => match Pdu::parse(buf) {
                // No response exists for alert_notification (SMPP 3.4 §4.12).
                Ok(_) => self.counters.alerts_ignored = self.counters.alerts_ignored.saturating_add(1),
                Err(e) => self.reply(seq, CommandId::GenericNack, e.command_status()),
            },
            CommandId::Outbind => {
                // Only meaningful before an ESME binds on an SMSC's request;
                // iwf does not use it. It has no response.
            }
            _ => {
                // Known requests iwf does not serve (query_sm, replace_sm,
                // cancel_sm, submit_multi, broadcast_sm, ...).
                if bound.is_some() {
                    self.reply(seq, CommandId::GenericNack, CommandStatus::ESME_RINVCMDID);
                } else {
                    self.refuse_bind_status(seq, command);
                }
            }
        }
        Step::Done
    }

    fn on_bind(&mut self, buf: &[u8], command: CommandId, seq: u32, auth: &mut dyn Authenticator) {
        let resp = command.response();
        if self.config.role != Role::Server {
            self.refuse_bind_status(seq, command);
            return;
        }
        match self.state {
            State::Open => {}
            State::Bound(_) | State::Unbinding => {
                self.reply(seq, resp, CommandStatus::ESME_RALYBND);
                let c = &mut self.counters;
                c.binds_already_bound = c.binds_already_bound.saturating_add(1);
                return;
            }
            _ => {
                self.refuse_bind_status(seq, command);
                return;
            }
        }
        let (Some(bind_type), Ok(pdu)) = (BindType::from_request(command), Pdu::parse(buf)) else {
            let status = match Pdu::parse(buf).err() {
                Some(e) if self.config.specific_bind_errors => e.command_status(),
                _ => CommandStatus::ESME_RBINDFAIL,
            };
            self.reply(seq, resp, status);
            self.counters.binds_malformed = self.counters.binds_malformed.saturating_add(1);
            self.close(CloseReason::BindRefused(status));
            return;
        };
        let bind = match pdu.body {
            Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => b,
            _ => Bind::default(),
        };
        let request = BindRequest {
            system_id: bind.system_id,
            password: bind.password,
            system_type: bind.system_type,
            bind_type,
            interface_version: bind.interface_version,
            peer: self.peer,
        };
        match auth.authenticate(&request) {
            Ok(system) => {
                let version = [self.config.interface_version];
                let tlvs = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &version)];
                let body = BindResp { system_id: Some(self.config.system_id.as_bytes()), tlvs: Tlvs::List(&tlvs) };
                let body = match bind_type {
                    BindType::Transmitter => Body::BindTransmitterResp(body),
                    BindType::Receiver => Body::BindReceiverResp(body),
                    BindType::Transceiver => Body::BindTransceiverResp(body),
                };
                if self.out.emit(&Pdu::new(seq, body)).is_ok() {
                    self.counters.pdus_out.count(resp);
                }
                self.state = State::Bound(bind_type);
                self.system = Some(system);
                self.counters.binds_ok = self.counters.binds_ok.saturating_add(1);
                self.events.push(Event::Bound { bind_type, system: Some(system) });
            }
            Err(refusal) => {
                let status =
                    if self.config.specific_bind_errors { refusal.status() } else { CommandStatus::ESME_RBINDFAIL };
                self.reply(seq, resp, status);
                let c = &mut self.counters;
                let n = match refusal {
                    BindRefusal::UnknownSystem => &mut c.binds_refused_system_id,
                    BindRefusal::BadPassword => &mut c.binds_refused_password,
                    BindRefusal::AddressNotAllowed => &mut c.binds_refused_address,
                    BindRefusal::TooManyBinds => &mut c.binds_refused_too_many,
                    BindRefusal::Failed => &mut c.binds_refused_other,
                };
                *n = n.saturating_add(1);
                self.close(CloseReason::BindRefused(status));
            }
        }
    }

    fn on_response(&mut self, now: u64, buf: &[u8], command: CommandId, seq: u32, status: CommandStatus) {
        let found = self.outstanding.iter().position(|o| {
            matches!(o, Some(o) if o.seq == seq
                && (command == CommandId::GenericNack || o.command.response() == command))
        });
        let Some(entry) = found.and_then(|i| self.outstanding.get_mut(i)).and_then(Option::take) else {
            self.counters.stray_responses = self.counters.stray_responses.saturating_add(1);
            return;
        };
        let message_id = match Pdu::parse(buf) {
            Ok(pdu) => match pdu.body {
                Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => {
                    r.message_id.and_then(MessageId::new).unwrap_or_default()
                }
                _ => MessageId::default(),
            },
            Err(_) => {
                let c = &mut self.counters;
                c.malformed_responses = c.malformed_responses.saturating_add(1);
                MessageId::default()
            }
        };
        match entry.purpose {
            Purpose::App => {
                self.app_outstanding = self.app_outstanding.saturating_sub(1);
                self.counters.responses = self.counters.responses.saturating_add(1);
                self.events.push(Event::Response { seq, command_id: command, status, message_id });
                if status == CommandStatus::ESME_RTHROTTLED {
                    let c = &mut self.counters;
                    c.throttled_received = c.throttled_received.saturating_add(1);
                    let until = now.saturating_add(self.config.throttle_backoff);
                    if self.paused_until.is_none() {
                        self.events.push(Event::Throttled { until });
                    }
                    self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
                }
            }
            Purpose::Bind => {
                let bind_type = BindType::from_request(entry.command).unwrap_or(BindType::Transceiver);
                if status.is_ok() && command != CommandId::GenericNack {
                    self.state = State::Bound(bind_type);
                    self.counters.binds_ok = self.counters.binds_ok.saturating_add(1);
                    self.events.push(Event::Bound { bind_type, system: None });
                } else if matches!(
                    status,
                    CommandStatus::ESME_RINVPASWD | CommandStatus::ESME_RINVSYSID | CommandStatus::ESME_RBINDFAIL
                ) {
                    self.counters.auth_rejected = self.counters.auth_rejected.saturating_add(1);
                    self.close(CloseReason::AuthRejected(status));
                } else {
                    self.counters.bind_failures = self.counters.bind_failures.saturating_add(1);
                    self.close(CloseReason::BindFailed(status));
                }
            }
            Purpose::EnquireLink => {
                let c = &mut self.counters;
                c.keepalives_answered = c.keepalives_answered.saturating_add(1);
            }
            Purpose::Unbind => self.close(CloseReason::Unbound),
        }
    }

    /// Records a request handed to the application.
    fn admit(&mut self, seq: u32, command: CommandId) {
        if let Some(slot) = self.pending.iter_mut().find(|p| p.is_none()) {
            self.arrivals = self.arrivals.wrapping_add(1);
            *slot = Some(Pending { seq, command, arrival: self.arrivals, aside: false });
            self.pending_len += 1;
            self.counters.requests_to_app = self.counters.requests_to_app.saturating_add(1);
        }
    }

    fn respond(&mut self, seq: u32, status: CommandStatus, message_id: &[u8]) -> Result<(), RespondError> {
        if matches!(self.state, State::Closed(_) | State::Idle) {
            return Err(RespondError::NotConnected);
        }
        let index = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.filter(|p| p.seq == seq).map(|p| (i, p.arrival)))
            .min_by_key(|&(_, arrival)| arrival)
            .map(|(i, _)| i)
            .ok_or(RespondError::UnknownSequence)?;
        let Some(pending) = self.pending.get(index).copied().flatten() else {
            return Err(RespondError::UnknownSequence);
        };
        let resp = pending.command.response();
        let ok = |id| MessageIdResp { message_id: Some(id), tlvs: Tlvs::EMPTY };
        let body = match (status.is_ok(), pending.command) {
            (true, CommandId::SubmitSm) => Body::SubmitSmResp(ok(message_id)),
            (true, CommandId::DataSm) => Body::DataSmResp(ok(message_id)),
            (true, CommandId::DeliverSm) => Body::DeliverSmResp(ok(&[])),
            _ => Body::Other { command_id: resp, body: &[] },
        };
        let pdu = Pdu { command_status: status, sequence_number: seq, body };
        self.out.emit(&pdu).map_err(RespondError::Emit)?;
        if let Some(slot) = self.pending.get_mut(index) {
            *slot = None;
        }
        self.pending_len = self.pending_len.saturating_sub(1);
        if pending.aside {
            self.aside_len = self.aside_len.saturating_sub(1);
        }
        let c = &mut self.counters;
        c.pdus_out.count(resp);
        c.app_responses = c.app_responses.saturating_add(1);
        if status == CommandStatus::ESME_RTHROTTLED {
            c.throttled_by_app = c.throttled_by_app.saturating_add(1);
        }
        Ok(())
    }

    fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop() {
            return Some(e);
        }
        let State::Closed(reason) = self.state else {
            return None;
        };
        for slot in self.outstanding.iter_mut() {
            if let Some(o) = slot.take() {
                if o.purpose == Purpose::App {
                    self.app_outstanding = self.app_outstanding.saturating_sub(1);
                    self.counters.abandoned = self.counters.abandoned.saturating_add(1);
                    return Some(Event::Abandoned { seq: o.seq, command_id: o.command });
                }
            }
        }
        if self.close_reported {
            None
        } else {
            self.close_reported = true;
            Some(Event::Closed { reason })
        }
    }

    fn keepalive_due(&self) -> Option<u64> {
        let interval = self.config.enquire_link_interval;
        let waiting = self.outstanding.iter().flatten().any(|o| o.purpose == Purpose::EnquireLink);
        match self.state {
            State::Bound(_) if interval > 0 && !waiting => Some(self.last_rx.saturating_add(interval)),
            _ => None,
        }
    }

    fn poll_timeout(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        match self.state {
            State::Idle | State::Closed(_) => return None,
            State::Open => consider(self.opened_at.saturating_add(self.config.bind_timeout)),
            _ => {}
        }
        self.outstanding.iter().flatten().for_each(|o| consider(o.deadline));
        if let Some(until) = self.paused_until {
            consider(until);
        }
        if let Some(t) = self.keepalive_due() {
            consider(t);
        }
        next
    }

    fn handle_timeout(&mut self, now: u64) {
        match self.state {
            State::Idle | State::Closed(_) => return,
            State::Open if now >= self.opened_at.saturating_add(self.config.bind_timeout) => {
                self.counters.bind_timeouts = self.counters.bind_timeouts.saturating_add(1);
                self.close(CloseReason::BindTimeout);
                return;
            }
            _ => {}
        }
        for i in 0..self.outstanding.len() {
            let Some(o) = self.outstanding.get(i).copied().flatten() else {
                continue;
            };
            if o.deadline > now {
                continue;
            }
            match o.purpose {
                Purpose::App => {
                    if self.events.free() == 0 {
                        // Reported at the next call, once events are drained.
                        break;
                    }
                    if let Some(s) = self.outstanding.get_mut(i) {
                        *s = None;
                    }
                    self.app_outstanding = self.app_outstanding.saturating_sub(1);
                    let c = &mut self.counters;
                    c.response_timeouts = c.response_timeouts.saturating_add(1);
                    self.events.push(Event::ResponseTimeout { seq: o.seq, command_id: o.command });
                }
                Purpose::Bind => {
                    self.counters.bind_timeouts = self.counters.bind_timeouts.saturating_add(1);
                    self.close(CloseReason::BindTimeout);
                    return;
                }
                Purpose::EnquireLink => {
                    let c = &mut self.counters;
                    c.keepalive_timeouts = c.keepalive_timeouts.saturating_add(1);
                    self.close(CloseReason::KeepAliveTimeout);
                    return;
                }
                Purpose::Unbind => {
                    self.close(CloseReason::UnbindTimeout);
                    return;
                }
            }
        }
        if let Some(until) = self.paused_until {
            if now >= until && self.events.push(Event::Resumed) {
                self.paused_until = None;
            }
        }
        if let Some(due) = self.keepalive_due() {
            if now >= due && self.out.free() >= HEADER_LEN {
                let timeout = self.config.response_timeout;
                if self.send(now, Body::EnquireLink, Purpose::EnquireLink, timeout).is_ok() {
                    let c = &mut self.counters;
                    c.keepalives_sent = c.keepalives_sent.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Sessions on a virtual clock; server and client back to back through
    //! in-memory byte pipes delivering random chunk sizes.
    use super::*;
    use crate::wire::smpp::{Address, DataSm, EsmClass, RegisteredDelivery, SubmitSm};
    use proptest::prelude::*;

    const ESME_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    const IWF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

    /// The lab's provisioning: smsca/pwa from 198.18.1.1 is system 1.
    struct LabAuth;

    impl Authenticator for LabAuth {
        fn authenticate(&mut self, b: &BindRequest<'_>) -> Result<LegacySystemId, BindRefusal> {
            if b.system_id != b"smsca" {
                return Err(BindRefusal::UnknownSystem);
            }
            if b.peer != ESME_IP {
                return Err(BindRefusal::AddressNotAllowed);
            }
            if b.password != b"pwa" {
                return Err(BindRefusal::BadPassword);
            }
            Ok(LegacySystemId(1))
        }
    }

    fn to_vec(pdu: &Pdu<'_>) -> Vec<u8> {
        let mut v = vec![0u8; pdu.buffer_len()];
        let n = pdu.emit(&mut v).unwrap();
        assert_eq!(n, v.len());
        v
    }

    fn bind_bytes(seq: u32, bind_type: BindType, system_id: &[u8], password: &[u8]) -> Vec<u8> {
        let b = Bind {
            system_id,
            password,
            system_type: b"",
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: b"",
        };
        let body = match bind_type {
            BindType::Transmitter => Body::BindTransmitter(b),
            BindType::Receiver => Body::BindReceiver(b),
            BindType::Transceiver => Body::BindTransceiver(b),
        };
        to_vec(&Pdu::new(seq, body))
    }

    fn submit_body<'a>(text: &'a [u8]) -> SubmitSm<'a> {
        SubmitSm {
            source: Address::international(b"447000100001"),
            destination: Address::international(b"447000200001"),
            registered_delivery: RegisteredDelivery(1),
            short_message: text,
            ..SubmitSm::default()
        }
    }

    fn submit_bytes(seq: u32) -> Vec<u8> {
        to_vec(&Pdu::new(seq, Body::SubmitSm(submit_body(b"hello"))))
    }

    fn header_only(seq: u32, command: u32) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 16];
        v.extend_from_slice(&command.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&seq.to_be_bytes());
        v
    }

    fn receipt_body<'a>(text: &'a [u8]) -> SubmitSm<'a> {
        SubmitSm {
            source: Address::international(b"447000200001"),
            destination: Address::international(b"447000100001"),
            esm_class: EsmClass(0x04),
            short_message: text,
            ..SubmitSm::default()
        }
    }

    /// A response as the tests see it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        command: CommandId,
        status: CommandStatus,
        seq: u32,
        body: Vec<u8>,
    }

    fn drain(s: &mut Session) -> Vec<Seen> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 37];
        loop {
            let n = s.poll_transmit(&mut buf);
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let mut seen = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = frame(rest, SMPP_MAX).unwrap().expect("whole PDUs only");
            let p = Packet::new_checked(&rest[..n]).unwrap();
            seen.push(Seen {
                command: p.command_id(),
                status: p.command_status(),
                seq: p.sequence_number(),
                body: p.body().to_vec(),
            });
            rest = &rest[n..];
        }
        seen
    }

    const SMPP_MAX: usize = crate::wire::smpp::SMPP_MAX_PDU_LEN;

    /// Feeds all of `bytes` (asserting nothing is left), returning the
    /// requests handed to the application.
    fn feed(s: &mut Session, now: u64, bytes: &[u8], auth: &mut dyn Authenticator) -> Vec<(u32, CommandId)> {
        let (reqs, used) = feed_some(s, now, bytes, auth);
        assert_eq!(used, bytes.len(), "input left unconsumed");
        reqs
    }

    fn feed_some(
        s: &mut Session,
        now: u64,
        bytes: &[u8],
        auth: &mut dyn Authenticator,
    ) -> (Vec<(u32, CommandId)>, usize) {
        let mut off = 0;
        let mut reqs = Vec::new();
        loop {
            let input = s.handle_input(now, &bytes[off..], auth);
            off += input.consumed;
            match input.request {
                Some(p) => reqs.push((p.sequence_number, p.command_id())),
                None if input.consumed == 0 => break,
                None => {}
            }
        }
        (reqs, off)
    }

    fn events(s: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn server(config: SessionConfig) -> Session {
        let mut s = Session::new(config);
        s.connected(0, ESME_IP);
        s
    }

    fn bound_server(config: SessionConfig, bind_type: BindType) -> Session {
        let mut s = server(config);
        feed(&mut s, 0, &bind_bytes(1, bind_type, b"smsca", b"pwa"), &mut LabAuth);
        assert_eq!(s.state(), State::Bound(bind_type));
        drain(&mut s);
        events(&mut s);
        s
    }

    #[test]
    fn bind_ok_answers_with_system_id_and_interface_version() {
        let mut s = server(SessionConfig::default());
        assert_eq!(s.state(), State::Open);
        let reqs = feed(&mut s, 5, &bind_bytes(7, BindType::Transceiver, b"smsca", b"pwa"), &mut LabAuth);
        assert!(reqs.is_empty());
        assert_eq!(s.state(), State::Bound(BindType::Transceiver));
        assert_eq!(s.system(), Some(LegacySystemId(1)));
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, CommandId::BindTransceiverResp);
        assert_eq!(out[0].status, CommandStatus::ESME_ROK);
        assert_eq!(out[0].seq, 7);
        let resp = BindResp::parse_body(&out[0].body).unwrap();
        assert_eq!(resp.system_id, Some(&b"iwf"[..]));
        assert_eq!(resp.tlvs.sc_interface_version(), Ok(Some(0x34)));
        assert_eq!(
            events(&mut s),
            vec![Event::Bound { bind_type: BindType::Transceiver, system: Some(LegacySystemId(1)) }]
        );
        assert_eq!(s.counters().binds_ok, 1);
        assert_eq!(s.counters().pdus_in.bind, 1);
        assert_eq!(s.counters().pdus_out.bind_resp, 1);
    }

    #[test]
    fn bind_refusals_map_to_statuses_and_close() {
        let cases: [(&[u8], &[u8], Ipv4Addr, CommandStatus); 4] = [
            (b"smsca", b"wrong", ESME_IP, CommandStatus::ESME_RINVPASWD),
            (b"nobody", b"pwa", ESME_IP, CommandStatus::ESME_RINVSYSID),
            (b"smsca", b"pwa", Ipv4Addr::new(10, 0, 0, 9), CommandStatus::ESME_RBINDFAIL),
            // A 16-character system_id has no room for its NUL: parse error.
            (b"sixteen-chars-id", b"pwa", ESME_IP, CommandStatus::ESME_RINVSYSID),
        ];
        // Specific statuses when configured for lab debugging; by default every
        // refusal is ESME_RBINDFAIL, so a stranger learns nothing from it.
        let uniform = cases.map(|(a, b, c, _)| (a, b, c, CommandStatus::ESME_RBINDFAIL));
        let runs = cases.into_iter().map(|c| (true, c)).chain(uniform.into_iter().map(|c| (false, c)));
        for (specific, (system_id, password, peer, status)) in runs {
            let mut s = Session::new(SessionConfig { specific_bind_errors: specific, ..SessionConfig::default() });
            s.connected(0, peer);
            let bytes = if system_id.len() == 16 {
                // Emit refuses it, so build the body by hand.
                let mut v = header_only(3, 0x2);
                v.extend_from_slice(system_id);
                v.extend_from_slice(b"\0pwa\0\0\x34\0\0\0");
                let len = v.len() as u32;
                v[..4].copy_from_slice(&len.to_be_bytes());
                v
            } else {
                bind_bytes(3, BindType::Transmitter, system_id, password)
            };
            feed(&mut s, 0, &bytes, &mut LabAuth);
            let out = drain(&mut s);
            assert_eq!(out.len(), 1, "{status}");
            assert_eq!(out[0].command, CommandId::BindTransmitterResp);
            assert_eq!(out[0].status, status);
            assert_eq!(out[0].seq, 3);
            assert!(out[0].body.is_empty());
            assert_eq!(s.state(), State::Closed(CloseReason::BindRefused(status)));
            assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::BindRefused(status) }]);
            // Anything after is discarded.
            feed(&mut s, 1, &submit_bytes(4), &mut LabAuth);
            assert!(drain(&mut s).is_empty());
        }
    }

    #[test]
    fn refusal_counters_by_reason() {
        let mut totals = SessionCounters::default();
        for (sys, pw, peer) in
            [(&b"smsca"[..], &b"x"[..], ESME_IP), (b"zz", b"pwa", ESME_IP), (b"smsca", b"pwa", IWF_IP)]
        {
            let mut s = Session::new(SessionConfig::default());
            s.connected(0, peer);
            feed(&mut s, 0, &bind_bytes(1, BindType::Receiver, sys, pw), &mut LabAuth);
            let c = s.counters();
            totals.binds_refused_password += c.binds_refused_password;
            totals.binds_refused_system_id += c.binds_refused_system_id;
            totals.binds_refused_address += c.binds_refused_address;
        }
        assert_eq!(totals.binds_refused_password, 1);
        assert_eq!(totals.binds_refused_system_id, 1);
        assert_eq!(totals.binds_refused_address, 1);
    }

    #[test]
    fn bind_twice_is_already_bound() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transmitter);
        feed(&mut s, 1, &bind_bytes(2, BindType::Receiver, b"smsca", b"pwa"), &mut LabAuth);
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, CommandId::BindReceiverResp);
        assert_eq!(out[0].status, CommandStatus::ESME_RALYBND);
        assert_eq!(s.state(), State::Bound(BindType::Transmitter));
        assert_eq!(s.counters().binds_already_bound, 1);
    }

    #[test]
    fn requests_before_bind_get_invalid_bind_status() {
        let mut s = server(SessionConfig::default());
        let mut bytes = submit_bytes(1);
        bytes.extend(header_only(2, 0x6)); // unbind
        bytes.extend(header_only(3, 0x15)); // enquire_link: answered in OPEN
        bytes.extend(header_only(4, 0x3)); // query_sm (empty body)
        let reqs = feed(&mut s, 0, &bytes, &mut LabAuth);
        assert!(reqs.is_empty());
        let out = drain(&mut s);
        let got: Vec<_> = out.iter().map(|o| (o.command, o.status, o.seq)).collect();
        assert_eq!(
            got,
            vec![
                (CommandId::SubmitSmResp, CommandStatus::ESME_RINVBNDSTS, 1),
                (CommandId::UnbindResp, CommandStatus::ESME_RINVBNDSTS, 2),
                (CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, 3),
                (CommandId::QuerySmResp, CommandStatus::ESME_RINVBNDSTS, 4),
            ]
        );
        assert_eq!(s.state(), State::Open);
        assert_eq!(s.counters().invalid_bind_status, 3);
    }

    #[test]
    fn bind_types_limit_what_flows() {
        // A receiver may not submit.
        let mut rx = bound_server(SessionConfig::default(), BindType::Receiver);
        assert!(feed(&mut rx, 1, &submit_bytes(5), &mut LabAuth).is_empty());
        let out = drain(&mut rx);
        assert_eq!((out[0].command, out[0].status), (CommandId::SubmitSmResp, CommandStatus::ESME_RINVBNDSTS));
        // ... but gets deliver_sm.
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"id:1 stat:DELIVRD")));
        assert!(rx.send_request(1, &receipt).is_ok());
        // A transmitter gets no deliver_sm, may submit.
        let mut tx = bound_server(SessionConfig::default(), BindType::Transmitter);
        assert_eq!(tx.send_request(1, &receipt), Err(SendError::NotPermitted));
        assert_eq!(feed(&mut tx, 1, &submit_bytes(6), &mut LabAuth), vec![(6, CommandId::SubmitSm)]);
        // An ESME may not send deliver_sm to iwf.
        let deliver = to_vec(&Pdu::new(8, Body::DeliverSm(receipt_body(b"x"))));
        assert!(feed(&mut tx, 1, &deliver, &mut LabAuth).is_empty());
        let out = drain(&mut tx);
        assert_eq!(
            (out[0].command, out[0].status, out[0].seq),
            (CommandId::DeliverSmResp, CommandStatus::ESME_RINVBNDSTS, 8)
        );
        // The session's own requests are not the application's to send.
        let enquire = Pdu::new(0, Body::EnquireLink);
        assert_eq!(tx.send_request(1, &enquire), Err(SendError::NotARequest));
        let resp = Pdu::new(0, Body::SubmitSmResp(MessageIdResp::default()));
        assert_eq!(tx.send_request(1, &resp), Err(SendError::NotARequest));
    }

    #[test]
    fn an_encoded_request_goes_out_as_encoded_with_the_session_sequence() {
        let mut by_pdu = bound_server(SessionConfig::default(), BindType::Receiver);
        let mut by_bytes = bound_server(SessionConfig::default(), BindType::Receiver);
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"id:1 stat:DELIVRD")));
        let encoded = to_vec(&receipt);
        let a = by_pdu.send_request(1, &receipt).unwrap();
        let b = by_bytes.send_encoded(1, &encoded).unwrap();
        assert_eq!(a, b, "the same sequence number");
        let (mut x, mut y) = ([0u8; 512], [0u8; 512]);
        let (n, m) = (by_pdu.poll_transmit(&mut x), by_bytes.poll_transmit(&mut y));
        assert_eq!(x[..n], y[..m], "byte for byte what send_request writes");
        assert_eq!(Packet::new_unchecked(&y[..m]).sequence_number(), b);
        // Its response ends it as any request's does.
        assert_eq!(by_bytes.counters().pdus_out, by_pdu.counters().pdus_out);
        // The same rules as send_request: bind type, and bytes that are not one PDU.
        let mut tx = bound_server(SessionConfig::default(), BindType::Transmitter);
        assert_eq!(tx.send_encoded(1, &encoded), Err(SendError::NotPermitted));
        assert_eq!(by_bytes.send_encoded(1, &encoded[..encoded.len() - 1]), Err(SendError::NotAPdu));
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(by_bytes.send_encoded(1, &longer), Err(SendError::NotAPdu));
        assert_eq!(by_bytes.send_encoded(1, &encoded[..10]), Err(SendError::NotAPdu));
    }

    #[test]
    fn submit_and_data_sm_answered_by_the_app() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let data = to_vec(&Pdu::new(
            11,
            Body::DataSm(DataSm {
                source: Address::international(b"447000100001"),
                destination: Address::international(b"447000200001"),
                ..DataSm::default()
            }),
        ));
        let mut bytes = submit_bytes(10);
        bytes.extend(&data);
        let reqs = feed(&mut s, 1, &bytes, &mut LabAuth);
        assert_eq!(reqs, vec![(10, CommandId::SubmitSm), (11, CommandId::DataSm)]);
        // Transaction mode: nothing goes out before the app answers.
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.pending_requests(), 2);
        s.respond(11, CommandStatus::ESME_ROK, b"tag11").unwrap();
        s.respond(10, CommandStatus::ESME_ROK, b"tag10").unwrap();
        let out = drain(&mut s);
        assert_eq!(out[0].command, CommandId::DataSmResp);
        assert_eq!(out[0].body, b"tag11\0");
        assert_eq!(out[1].command, CommandId::SubmitSmResp);
        assert_eq!((out[1].seq, &out[1].body[..]), (10, &b"tag10\0"[..]));
        assert_eq!(s.respond(10, CommandStatus::ESME_ROK, b"x"), Err(RespondError::UnknownSequence));
        assert_eq!(s.counters().app_responses, 2);
    }

    #[test]
    fn respond_errors_keep_the_request() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transmitter);
        feed(&mut s, 1, &submit_bytes(3), &mut LabAuth);
        let long = [b'a'; 65];
        assert!(matches!(s.respond(3, CommandStatus::ESME_ROK, &long), Err(RespondError::Emit(_))));
        assert_eq!(s.pending_requests(), 1);
        // An error answer carries no body, whatever message_id says.
        s.respond(3, CommandStatus::ESME_RSUBMITFAIL, &long).unwrap();
        let out = drain(&mut s);
        assert_eq!((out[0].status, out[0].body.len()), (CommandStatus::ESME_RSUBMITFAIL, 0));
    }

    #[test]
    fn enquire_link_and_clean_unbind() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        feed(&mut s, 1, &header_only(9, 0x15), &mut LabAuth);
        let out = drain(&mut s);
        assert_eq!(
            (out[0].command, out[0].status, out[0].seq),
            (CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, 9)
        );
        // An enquire_link with a body is answered with an error.
        let mut bad = header_only(10, 0x15);
        bad.push(0);
        bad[3] = 17;
        feed(&mut s, 1, &bad, &mut LabAuth);
        let out = drain(&mut s);
        assert_eq!(out[0].status, CommandStatus::ESME_RINVCMDLEN);
        assert_eq!(s.state(), State::Bound(BindType::Transceiver));

        feed(&mut s, 2, &header_only(11, 0x6), &mut LabAuth);
        let out = drain(&mut s);
        assert_eq!((out[0].command, out[0].status, out[0].seq), (CommandId::UnbindResp, CommandStatus::ESME_ROK, 11));
        assert_eq!(s.state(), State::Closed(CloseReason::PeerUnbound));
        assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::PeerUnbound }]);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn iwf_initiated_unbind() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let seq = s.unbind(5).unwrap();
        assert_eq!(s.state(), State::Unbinding);
        let out = drain(&mut s);
        assert_eq!((out[0].command, out[0].seq), (CommandId::Unbind, seq));
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"x")));
        assert_eq!(s.send_request(5, &receipt), Err(SendError::NotBound));
        let mut resp = header_only(seq, 0x8000_0006);
        resp[8..12].copy_from_slice(&[0, 0, 0, 0]);
        feed(&mut s, 6, &resp, &mut LabAuth);
        assert_eq!(s.state(), State::Closed(CloseReason::Unbound));
        // Without an answer it times out instead.
        let mut t = bound_server(SessionConfig::default(), BindType::Transceiver);
        t.unbind(0).unwrap();
        t.handle_timeout(30_000);
        assert_eq!(t.state(), State::Closed(CloseReason::UnbindTimeout));
    }

    #[test]
    fn unknown_and_unsupported_commands_get_generic_nack() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let mut bytes = header_only(21, 0x0000_0999);
        bytes.extend(header_only(22, 0x0000_0003)); // query_sm
        bytes.extend(header_only(23, 0x8000_0999)); // unknown response id
        feed(&mut s, 1, &bytes, &mut LabAuth);
        let out = drain(&mut s);
        let got: Vec<_> = out.iter().map(|o| (o.command, o.status, o.seq)).collect();
        assert_eq!(
            got,
            vec![
                (CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 21),
                (CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 22),
                (CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 23),
            ]
        );
        assert_eq!(s.state(), State::Bound(BindType::Transceiver));
        assert_eq!(s.counters().nacks_invalid_command, 3);
    }

    #[test]
    fn bad_command_length_nacks_and_closes() {
        for (len, max) in [(8u32, KANNEL_MAX_PDU_LEN), (0, KANNEL_MAX_PDU_LEN), (7425, KANNEL_MAX_PDU_LEN), (300, 256)]
        {
            let mut s =
                bound_server(SessionConfig { max_pdu_len: max, ..SessionConfig::default() }, BindType::Transceiver);
            let mut bytes = header_only(0x42, 0x15);
            bytes[..4].copy_from_slice(&len.to_be_bytes());
            bytes.extend(submit_bytes(0x43)); // never looked at
            feed(&mut s, 1, &bytes, &mut LabAuth);
            let out = drain(&mut s);
            assert_eq!(out.len(), 1, "len {len}");
            assert_eq!(
                (out[0].command, out[0].status, out[0].seq),
                (CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x42)
            );
            assert_eq!(s.state(), State::Closed(CloseReason::InvalidCommandLength));
            assert_eq!(s.counters().nacks_invalid_length, 1);
        }
        // Also when the bad length arrives in pieces.
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let mut bytes = header_only(0x44, 0x15);
        bytes[..4].copy_from_slice(&8u32.to_be_bytes());
        for b in bytes.chunks(1) {
            feed(&mut s, 1, b, &mut LabAuth);
        }
        let out = drain(&mut s);
        assert_eq!((out[0].status, out[0].seq), (CommandStatus::ESME_RINVCMDLEN, 0x44));
        assert_eq!(s.state(), State::Closed(CloseReason::InvalidCommandLength));
    }

    #[test]
    fn malformed_bodies_get_their_resp_with_the_parse_status() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let mut bad = submit_bytes(30);
        // sm_length is the byte before "hello": claim 200 octets.
        let at = bad.len() - 6;
        bad[at] = 200;
        let mut bytes = bad;
        // An alert_notification (no resp exists) that does not parse.
        bytes.extend(header_only(31, 0x102));
        let reqs = feed(&mut s, 1, &bytes, &mut LabAuth);
        assert!(reqs.is_empty());
        let out = drain(&mut s);
        let got: Vec<_> = out.iter().map(|o| (o.command, o.status, o.seq)).collect();
        assert_eq!(
            got,
            vec![
                (CommandId::SubmitSmResp, CommandStatus::ESME_RINVMSGLEN, 30),
                (CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 31),
            ]
        );
        assert_eq!(s.counters().malformed_requests, 1);
        assert_eq!(s.pending_requests(), 0);
    }

    #[test]
    fn partial_pdus_across_chunks() {
        let mut stream = bind_bytes(1, BindType::Transceiver, b"smsca", b"pwa");
        for seq in 2..=6 {
            stream.extend(submit_bytes(seq));
        }
        stream.extend(header_only(7, 0x15));
        for chunk in [1usize, 2, 3, 5, 15, 16, 17, 33, 1000] {
            let mut s = server(SessionConfig::default());
            let mut reqs = Vec::new();
            for piece in stream.chunks(chunk) {
                reqs.extend(feed(&mut s, 1, piece, &mut LabAuth));
                assert!(s.buffered_input() < s.config().max_pdu_len);
            }
            let seqs: Vec<u32> = reqs.iter().map(|r| r.0).collect();
            assert_eq!(seqs, vec![2, 3, 4, 5, 6], "chunk {chunk}");
            let out = drain(&mut s);
            assert_eq!(out.len(), 2);
            assert_eq!(out[1].command, CommandId::EnquireLinkResp);
        }
    }

    #[test]
    fn window_full_throttles_and_drops_nothing() {
        let config = SessionConfig { window: 3, ..SessionConfig::default() };
        let mut s = bound_server(config, BindType::Transmitter);
        let bytes: Vec<u8> = (100..105).flat_map(submit_bytes).collect();
        let reqs = feed(&mut s, 1, &bytes, &mut LabAuth);
        assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![100, 101, 102]);
        let out = drain(&mut s);
        let got: Vec<_> = out.iter().map(|o| (o.status, o.seq)).collect();
        assert_eq!(got, vec![(CommandStatus::ESME_RTHROTTLED, 103), (CommandStatus::ESME_RTHROTTLED, 104)]);
        assert_eq!(s.counters().throttled_window_full, 2);
        // The app's lane is full for one of them: it throttles it itself.
        s.respond(101, CommandStatus::ESME_RTHROTTLED, b"").unwrap();
        s.respond(100, CommandStatus::ESME_ROK, b"m100").unwrap();
        s.respond(102, CommandStatus::ESME_ROK, b"m102").unwrap();
        let out = drain(&mut s);
        assert_eq!(out.len(), 3);
        assert_eq!(s.counters().throttled_by_app, 1);
        // Every request got exactly one answer.
        assert_eq!(s.counters().pdus_in.submit_sm, 5);
        assert_eq!(s.counters().pdus_out.submit_sm_resp, 5);
        // The window is free again.
        let reqs = feed(&mut s, 2, &submit_bytes(105), &mut LabAuth);
        assert_eq!(reqs, vec![(105, CommandId::SubmitSm)]);
    }

    /// Requests set aside leave their window slot to the next request, stay answerable
    /// and stay bounded: beyond `aside` they are refused and keep their slot.
    #[test]
    fn requests_set_aside_free_the_window_within_their_own_bound() {
        let config = SessionConfig { window: 2, aside: 2, ..SessionConfig::default() };
        let mut s = bound_server(config, BindType::Transmitter);
        let reqs = feed(&mut s, 1, &(100..103).flat_map(submit_bytes).collect::<Vec<u8>>(), &mut LabAuth);
        assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![100, 101]);
        assert_eq!(drain(&mut s).len(), 1, "102 throttled: the window is full");
        assert!(s.set_aside(100));
        assert!(!s.set_aside(100), "set aside once only");
        assert!(!s.set_aside(999), "nothing pending with 999");
        let reqs = feed(&mut s, 2, &submit_bytes(103), &mut LabAuth);
        assert_eq!(reqs, vec![(103, CommandId::SubmitSm)], "100's slot took 103");
        assert!(s.set_aside(101));
        assert!(!s.set_aside(103), "two aside at most");
        assert_eq!((s.pending_requests(), s.aside_requests()), (3, 2));
        let reqs = feed(&mut s, 3, &(104..106).flat_map(submit_bytes).collect::<Vec<u8>>(), &mut LabAuth);
        assert_eq!(reqs, vec![(104, CommandId::SubmitSm)]);
        assert_eq!(drain(&mut s).len(), 1, "105 throttled: 103 and 104 fill the window");
        for seq in [100, 101, 103, 104] {
            s.respond(seq, CommandStatus::ESME_ROK, b"m").unwrap();
        }
        assert_eq!((s.pending_requests(), s.aside_requests()), (0, 0));
        assert_eq!(s.counters().pdus_out.submit_sm_resp, 6, "each request answered once");
        assert!(!s.set_aside(100), "answered: nothing to set aside");
    }

    /// A session allocated for the largest window holds only its bound system's, and
    /// a later change (a reload) applies to the next requests.
    #[test]
    fn the_bound_systems_window_applies_not_the_largest() {
        let config = SessionConfig { window: 10, ..SessionConfig::default() };
        let mut s = bound_server(config, BindType::Transceiver);
        s.set_window(2);
        let reqs = feed(&mut s, 1, &(100..105).flat_map(submit_bytes).collect::<Vec<u8>>(), &mut LabAuth);
        assert_eq!(reqs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![100, 101]);
        assert_eq!(drain(&mut s).len(), 3, "three throttled");
        s.respond(100, CommandStatus::ESME_ROK, b"a").unwrap();
        s.respond(101, CommandStatus::ESME_ROK, b"b").unwrap();
        let _ = drain(&mut s);
        // Raised (never beyond the room allocated): four now.
        s.set_window(4);
        assert_eq!(s.window(), 4);
        let reqs = feed(&mut s, 2, &(110..116).flat_map(submit_bytes).collect::<Vec<u8>>(), &mut LabAuth);
        assert_eq!(reqs.len(), 4);
        s.set_window(1000);
        assert_eq!(s.window(), 10);
        // iwf's own requests to the peer are held to it too.
        let mut s = bound_server(
            SessionConfig { window: 10, out_window: 10, ..SessionConfig::default() },
            BindType::Transceiver,
        );
        s.set_window(1);
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"id:1 stat:DELIVRD")));
        assert!(s.send_request(1, &receipt).is_ok());
        assert_eq!(s.send_request(1, &receipt), Err(SendError::WindowFull));
    }

    #[test]
    fn response_timeout_then_late_response_is_stray() {
        let config = SessionConfig { response_timeout: 5_000, enquire_link_interval: 0, ..SessionConfig::default() };
        let mut s = bound_server(config, BindType::Receiver);
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"id:1 stat:DELIVRD")));
        let seq = s.send_request(100, &receipt).unwrap();
        let out = drain(&mut s);
        assert_eq!((out[0].command, out[0].seq), (CommandId::DeliverSm, seq));
        assert_eq!(s.poll_timeout(), Some(5_100));
        s.handle_timeout(5_099);
        assert!(events(&mut s).is_empty());
        s.handle_timeout(5_100);
        assert_eq!(events(&mut s), vec![Event::ResponseTimeout { seq, command_id: CommandId::DeliverSm }]);
        assert_eq!(s.counters().response_timeouts, 1);
        feed(&mut s, 6_000, &header_only(seq, 0x8000_0005), &mut LabAuth);
        assert_eq!(s.counters().stray_responses, 1);
        assert!(events(&mut s).is_empty());
        assert_eq!(s.state(), State::Bound(BindType::Receiver));
    }

    #[test]
    fn responses_match_by_sequence_and_command() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"r")));
        let a = s.send_request(0, &receipt).unwrap();
        let b = s.send_request(0, &receipt).unwrap();
        assert_ne!(a, b);
        // Wrong command for the sequence: stray, entry kept.
        feed(&mut s, 1, &header_only(a, 0x8000_0004), &mut LabAuth);
        assert_eq!(s.counters().stray_responses, 1);
        let mut resp =
            to_vec(&Pdu::new(b, Body::DeliverSmResp(MessageIdResp { message_id: Some(b""), tlvs: Tlvs::EMPTY })));
        let mut nack = header_only(a, 0x8000_0000);
        nack[11] = 0x08;
        resp.extend(nack);
        feed(&mut s, 1, &resp, &mut LabAuth);
        assert_eq!(
            events(&mut s),
            vec![
                Event::Response {
                    seq: b,
                    command_id: CommandId::DeliverSmResp,
                    status: CommandStatus::ESME_ROK,
                    message_id: MessageId::default()
                },
                Event::Response {
                    seq: a,
                    command_id: CommandId::GenericNack,
                    status: CommandStatus::ESME_RSYSERR,
                    message_id: MessageId::default()
                },
            ]
        );
        assert_eq!(s.outstanding_requests(), 0);
    }

    #[test]
    fn keepalive_sent_after_inactivity_and_timeout_closes() {
        let config =
            SessionConfig { enquire_link_interval: 30_000, response_timeout: 10_000, ..SessionConfig::default() };
        let mut s = bound_server(config, BindType::Transceiver);
        feed(&mut s, 1_000, &header_only(2, 0x15), &mut LabAuth);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(31_000));
        s.handle_timeout(30_999);
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(31_000);
        let out = drain(&mut s);
        assert_eq!(out[0].command, CommandId::EnquireLink);
        assert_eq!(s.counters().keepalives_sent, 1);
        // Answered: the next one comes 30 s after the answer.
        feed(&mut s, 32_000, &header_only(out[0].seq, 0x8000_0015), &mut LabAuth);
        assert_eq!(s.counters().keepalives_answered, 1);
        assert_eq!(s.poll_timeout(), Some(62_000));
        s.handle_timeout(62_000);
        assert_eq!(drain(&mut s)[0].command, CommandId::EnquireLink);
        // Unanswered: closed.
        assert_eq!(s.poll_timeout(), Some(72_000));
        s.handle_timeout(72_000);
        assert_eq!(s.state(), State::Closed(CloseReason::KeepAliveTimeout));
        assert_eq!(s.counters().keepalive_timeouts, 1);
        assert_eq!(events(&mut s), vec![Event::Closed { reason: CloseReason::KeepAliveTimeout }]);
    }

    #[test]
    fn unbound_connection_times_out() {
        let mut s = server(SessionConfig::default());
        assert_eq!(s.poll_timeout(), Some(10_000));
        s.handle_timeout(10_000);
        assert_eq!(s.state(), State::Closed(CloseReason::BindTimeout));
        assert_eq!(s.counters().bind_timeouts, 1);
    }

    #[test]
    fn close_abandons_outstanding_requests() {
        let mut s = bound_server(SessionConfig::default(), BindType::Receiver);
        let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"r")));
        let a = s.send_request(0, &receipt).unwrap();
        let b = s.send_request(0, &receipt).unwrap();
        s.connection_lost(1);
        let mut ev = events(&mut s);
        let last = ev.pop();
        assert_eq!(last, Some(Event::Closed { reason: CloseReason::ConnectionLost }));
        let mut seqs: Vec<u32> = ev
            .iter()
            .map(|e| match e {
                Event::Abandoned { seq, .. } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        seqs.sort();
        assert_eq!(seqs, vec![a, b]);
        assert_eq!(s.counters().abandoned, 2);
        assert_eq!(s.respond(1, CommandStatus::ESME_ROK, b""), Err(RespondError::NotConnected));
        // The session is reused for the next connection.
        s.connected(10, ESME_IP);
        assert_eq!(s.state(), State::Open);
        feed(&mut s, 10, &bind_bytes(1, BindType::Receiver, b"smsca", b"pwa"), &mut LabAuth);
        assert_eq!(s.state(), State::Bound(BindType::Receiver));
    }

    #[test]
    fn back_pressure_when_output_is_not_drained() {
        let mut s = bound_server(SessionConfig::default(), BindType::Transceiver);
        let n = 2_000u32;
        let bytes: Vec<u8> = (1..=n).flat_map(|q| header_only(q, 0x15)).collect();
        let (_, used) = feed_some(&mut s, 1, &bytes, &mut LabAuth);
        assert!(used < bytes.len(), "the output buffer should fill");
        assert!(s.buffered_output() <= s.config().out_capacity);
        assert!(s.counters().input_paused > 0);
        let mut answers = drain(&mut s).len();
        let mut off = used;
        while off < bytes.len() {
            let (_, used) = feed_some(&mut s, 1, &bytes[off..], &mut LabAuth);
            off += used;
            answers += drain(&mut s).len();
        }
        assert_eq!(answers, n as usize);
    }

    // ---- client role -------------------------------------------------

    fn client_config(password: &[u8]) -> SessionConfig {
        SessionConfig {
            role: Role::Client(Credentials::transceiver(b"smsca", password).unwrap()),
            ..SessionConfig::default()
        }
    }

    /// One direction of a TCP connection: bytes sent and not yet taken.
    #[derive(Default)]
    struct Pipe {
        bytes: Vec<u8>,
    }

    /// Requests handed to the application: (sequence number, command).
    type Requests = Vec<(u32, CommandId)>;

    struct Link {
        rng: u64,
        c2s: Pipe,
        s2c: Pipe,
    }

    impl Link {
        fn new(seed: u64) -> Link {
            Link { rng: seed | 1, c2s: Pipe::default(), s2c: Pipe::default() }
        }

        fn chunk(&mut self) -> usize {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            1 + (self.rng % 300) as usize
        }

        /// Moves bytes both ways in random chunk sizes; returns the requests
        /// each side's application received.
        fn pump(&mut self, now: u64, client: &mut Session, server: &mut Session) -> (Requests, Requests) {
            let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
            for _ in 0..64 {
                let mut moved = false;
                let mut buf = vec![0u8; self.chunk()];
                let n = client.poll_transmit(&mut buf);
                self.c2s.bytes.extend_from_slice(&buf[..n]);
                let mut buf = vec![0u8; self.chunk()];
                let n = server.poll_transmit(&mut buf);
                self.s2c.bytes.extend_from_slice(&buf[..n]);
                let k = self.chunk().min(self.c2s.bytes.len());
                let (reqs, used) = feed_some(server, now, &self.c2s.bytes[..k], &mut LabAuth);
                self.c2s.bytes.drain(..used);
                moved |= used > 0 || n > 0;
                to_server.extend(reqs);
                let k = self.chunk().min(self.s2c.bytes.len());
                let (reqs, used) = feed_some(client, now, &self.s2c.bytes[..k], &mut RefuseBinds);
                self.s2c.bytes.drain(..used);
                moved |= used > 0;
                to_client.extend(reqs);
                if !moved
                    && self.c2s.bytes.is_empty()
                    && self.s2c.bytes.is_empty()
                    && client.buffered_output() == 0
                    && server.buffered_output() == 0
                {
                    break;
                }
            }
            (to_client, to_server)
        }
    }

    #[test]
    fn client_binds_to_server_back_to_back() {
        let mut client = Session::new(client_config(b"pwa"));
        let mut server = Session::new(SessionConfig::default());
        server.connected(0, ESME_IP);
        client.connected(0, IWF_IP);
        assert_eq!(client.state(), State::Binding);
        let mut link = Link::new(9);
        link.pump(1, &mut client, &mut server);
        assert_eq!(client.state(), State::Bound(BindType::Transceiver));
        assert_eq!(server.state(), State::Bound(BindType::Transceiver));
        assert_eq!(events(&mut client), vec![Event::Bound { bind_type: BindType::Transceiver, system: None }]);
        assert_eq!(client.counters().binds_ok, 1);
    }

    #[test]
    fn client_auth_rejection_raises_alarm_and_never_rebinds() {
        let mut client = Session::new(client_config(b"bad"));
        let mut server = Session::new(SessionConfig::default());
        let mut reconnect = Reconnect::new(ReconnectConfig::default(), 77);
        let mut attempts = 0;
        let mut link = Link::new(3);
        // Ten virtual minutes of a supervisor loop that reconnects whenever
        // allowed.
        let mut now = 0;
        while now < 600_000 {
            if matches!(client.state(), State::Idle | State::Closed(_)) && reconnect.may_attempt(now) {
                attempts += 1;
                link = Link::new(now + 3);
                server.connected(now, ESME_IP);
                client.connected(now, IWF_IP);
            }
            link.pump(now, &mut client, &mut server);
            for e in events(&mut client) {
                match e {
                    Event::Closed { reason } => reconnect.closed(now, reason),
                    Event::Bound { .. } => reconnect.bound(),
                    _ => {}
                }
            }
            now += 500;
        }
        assert_eq!(attempts, 1);
        // The server answers every refusal ESME_RBINDFAIL (no hint for a guesser).
        assert_eq!(client.state(), State::Closed(CloseReason::AuthRejected(CommandStatus::ESME_RBINDFAIL)));
        assert_eq!(client.counters().auth_rejected, 1);
        assert_eq!(server.counters().pdus_in.bind, 1);
        assert!(reconnect.is_stopped());
        reconnect.reset();
        assert!(reconnect.may_attempt(now));
    }

    #[test]
    fn client_bind_timeout_and_other_failures() {
        let mut c = Session::new(client_config(b"pwa"));
        c.connected(0, IWF_IP);
        let bind = drain(&mut c);
        assert_eq!(bind[0].command, CommandId::BindTransceiver);
        c.handle_timeout(10_000);
        assert_eq!(c.state(), State::Closed(CloseReason::BindTimeout));
        // A bind_resp with a non-credential error is a plain failure.
        c.connected(20_000, IWF_IP);
        let seq = drain(&mut c)[0].seq;
        let mut resp = header_only(seq, 0x8000_0009);
        resp[11] = 0x08;
        feed(&mut c, 20_001, &resp, &mut RefuseBinds);
        assert_eq!(c.state(), State::Closed(CloseReason::BindFailed(CommandStatus::ESME_RSYSERR)));
        assert_eq!(c.counters().auth_rejected, 0);
        assert_eq!(c.counters().bind_failures, 1);
        // A bind sent to a client is refused.
        let mut c = Session::new(client_config(b"pwa"));
        c.connected(0, IWF_IP);
        drain(&mut c);
        feed(&mut c, 0, &bind_bytes(5, BindType::Transceiver, b"x", b"y"), &mut RefuseBinds);
        let out = drain(&mut c);
        assert_eq!((out[0].command, out[0].status), (CommandId::BindTransceiverResp, CommandStatus::ESME_RINVBNDSTS));
    }

    fn bound_client() -> Session {
        let mut c = Session::new(client_config(b"pwa"));
        c.connected(0, IWF_IP);
        let seq = drain(&mut c)[0].seq;
        let resp =
            to_vec(&Pdu::new(seq, Body::BindTransceiverResp(BindResp { system_id: Some(b"smsc"), tlvs: Tlvs::EMPTY })));
        feed(&mut c, 0, &resp, &mut RefuseBinds);
        assert_eq!(c.state(), State::Bound(BindType::Transceiver));
        events(&mut c);
        c
    }

    #[test]
    fn client_backs_off_on_throttled() {
        let mut c = bound_client();
        let submit = Pdu::new(0, Body::SubmitSm(submit_body(b"hi")));
        let a = c.send_request(100, &submit).unwrap();
        let b = c.send_request(100, &submit).unwrap();
        drain(&mut c);
        let mut resp = header_only(a, 0x8000_0004);
        resp[11] = 0x58;
        feed(&mut c, 200, &resp, &mut RefuseBinds);
        assert_eq!(
            events(&mut c),
            vec![
                Event::Response {
                    seq: a,
                    command_id: CommandId::SubmitSmResp,
                    status: CommandStatus::ESME_RTHROTTLED,
                    message_id: MessageId::default()
                },
                Event::Throttled { until: 1_200 }
            ]
        );
        assert_eq!(c.counters().throttled_received, 1);
        assert_eq!(c.send_request(300, &submit), Err(SendError::Throttled { until: 1_200 }));
        // Responses to requests already out are still taken.
        let ok =
            to_vec(&Pdu::new(b, Body::SubmitSmResp(MessageIdResp { message_id: Some(b"smsc-1"), tlvs: Tlvs::EMPTY })));
        feed(&mut c, 400, &ok, &mut RefuseBinds);
        match events(&mut c).as_slice() {
            [Event::Response { seq, message_id, .. }] => {
                assert_eq!(*seq, b);
                assert_eq!(message_id.as_bytes(), b"smsc-1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.poll_timeout(), Some(1_200));
        c.handle_timeout(1_200);
        assert_eq!(events(&mut c), vec![Event::Resumed]);
        assert!(c.send_request(1_200, &submit).is_ok());
    }

    #[test]
    fn client_window_limits_outstanding_submits() {
        let mut c = bound_client();
        let submit = Pdu::new(0, Body::SubmitSm(submit_body(b"hi")));
        for _ in 0..10 {
            c.send_request(1, &submit).unwrap();
        }
        assert_eq!(c.send_request(1, &submit), Err(SendError::WindowFull));
        // The keep-alive still has its own slot.
        c.handle_timeout(30_000);
        let out = drain(&mut c);
        assert_eq!(out.last().map(|o| o.command), Some(CommandId::EnquireLink));
    }

    #[test]
    fn sequence_numbers_wrap_below_2_pow_31() {
        let mut c = bound_client();
        c.core.next_seq = 0x7FFF_FFFF;
        let submit = Pdu::new(0, Body::SubmitSm(submit_body(b"hi")));
        assert_eq!(c.send_request(1, &submit), Ok(0x7FFF_FFFF));
        assert_eq!(c.send_request(1, &submit), Ok(1));
    }

    /// The whole exchange: the client submits 100 messages (window 10), the
    /// server's app answers each with a message_id, the server sends 100
    /// receipts back, the client's app answers them.
    #[test]
    fn full_loop_100_submits_and_receipts() {
        let mut client = Session::new(client_config(b"pwa"));
        let mut server = Session::new(SessionConfig::default());
        server.connected(0, ESME_IP);
        client.connected(0, IWF_IP);
        let mut link = Link::new(0x5EED);
        let (mut submitted, mut receipts_sent) = (0u32, 0u32);
        let mut server_app: Vec<u32> = Vec::new(); // submits awaiting an answer
        let mut to_receipt: Vec<String> = Vec::new(); // ids to send receipts for
        let mut client_app: Vec<u32> = Vec::new();
        let mut submit_ids = Vec::new();
        let mut receipt_responses = 0;
        let mut now = 0u64;
        while now < 100_000 && (receipt_responses < 100 || submit_ids.len() < 100) {
            now += 1;
            let (to_client, to_server) = link.pump(now, &mut client, &mut server);
            server_app.extend(to_server.iter().map(|r| {
                assert_eq!(r.1, CommandId::SubmitSm);
                r.0
            }));
            client_app.extend(to_client.iter().map(|r| {
                assert_eq!(r.1, CommandId::DeliverSm);
                r.0
            }));
            // The server's app answers one submit per tick (transaction
            // mode: after "the SIP side" answered).
            if let Some(seq) = server_app.pop() {
                let id = format!("m{seq}");
                server.respond(seq, CommandStatus::ESME_ROK, id.as_bytes()).unwrap();
                to_receipt.push(id);
            }
            for seq in client_app.drain(..) {
                client.respond(seq, CommandStatus::ESME_ROK, b"").unwrap();
            }
            while submitted < 100 {
                let text = format!("message {submitted}");
                let pdu = Pdu::new(0, Body::SubmitSm(submit_body(text.as_bytes())));
                match client.send_request(now, &pdu) {
                    Ok(_) => submitted += 1,
                    Err(SendError::WindowFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            while let Some(id) = to_receipt.first() {
                let text = format!("id:{id} sub:001 dlvrd:001 stat:DELIVRD err:000");
                let pdu = Pdu::new(0, Body::DeliverSm(receipt_body(text.as_bytes())));
                match server.send_request(now, &pdu) {
                    Ok(_) => {
                        receipts_sent += 1;
                        to_receipt.remove(0);
                    }
                    Err(SendError::WindowFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            for e in events(&mut client) {
                match e {
                    Event::Response { status, message_id, command_id, .. } => {
                        assert_eq!(command_id, CommandId::SubmitSmResp);
                        assert_eq!(status, CommandStatus::ESME_ROK);
                        submit_ids.push(message_id.to_string());
                    }
                    Event::Bound { .. } => {}
                    other => panic!("client: {other:?}"),
                }
            }
            for e in events(&mut server) {
                match e {
                    Event::Response { status, command_id, .. } => {
                        assert_eq!(command_id, CommandId::DeliverSmResp);
                        assert_eq!(status, CommandStatus::ESME_ROK);
                        receipt_responses += 1;
                    }
                    Event::Bound { .. } => {}
                    other => panic!("server: {other:?}"),
                }
            }
            assert!(client.outstanding_requests() <= 10 + CONTROL_SLOTS);
            assert!(server.pending_requests() <= 10);
        }
        assert_eq!(submit_ids.len(), 100);
        let mut unique = submit_ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 100, "every submit got its own message_id");
        assert_eq!(receipts_sent, 100);
        assert_eq!(receipt_responses, 100);
        let (c, s) = (client.counters(), server.counters());
        assert_eq!(c.pdus_out.submit_sm, 100);
        assert_eq!(s.pdus_in.submit_sm, 100);
        assert_eq!(s.pdus_out.submit_sm_resp, 100);
        assert_eq!(c.pdus_in.submit_sm_resp, 100);
        assert_eq!(s.pdus_out.deliver_sm, 100);
        assert_eq!(c.pdus_in.deliver_sm, 100);
        assert_eq!(c.pdus_out.deliver_sm_resp, 100);
        assert_eq!(s.pdus_in.deliver_sm_resp, 100);
        assert_eq!(s.throttled_window_full + c.throttled_window_full, 0);
        assert_eq!(s.stray_responses + c.stray_responses, 0);
        assert_eq!(c.bytes_out, s.bytes_in);
        assert_eq!(s.bytes_out, c.bytes_in);
        assert_eq!(c.pdus_out.total(), s.pdus_in.total());
        assert_eq!(s.pdus_out.total(), c.pdus_in.total());
    }

    // ---- properties ----------------------------------------------------

    /// A stream segment: a valid PDU, a header with a random body, or junk.
    fn segment() -> impl Strategy<Value = Vec<u8>> {
        let commands = prop::sample::select(vec![
            0x1u32,
            0x2,
            0x3,
            0x4,
            0x5,
            0x6,
            0x9,
            0x15,
            0x102,
            0x103,
            0x8000_0004,
            0x8000_0005,
            0x8000_0015,
            0x8000_0000,
            0x999,
        ]);
        prop_oneof![
            (1u32..20).prop_map(submit_bytes),
            (1u32..20).prop_map(|q| bind_bytes(q, BindType::Transceiver, b"smsca", b"pwa")),
            (1u32..20, commands.clone()).prop_map(|(q, c)| header_only(q, c)),
            (1u32..20, commands, prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(q, c, body)| {
                let mut v = header_only(q, c);
                v.extend(&body);
                let len = v.len() as u32;
                v[..4].copy_from_slice(&len.to_be_bytes());
                v
            }),
            prop::collection::vec(any::<u8>(), 0..24),
        ]
    }

    fn check_bounds(s: &Session) {
        let c = s.config();
        assert!(s.pending_requests() <= c.window);
        assert!(s.outstanding_requests() <= c.out_window + CONTROL_SLOTS);
        assert!(s.buffered_output() <= c.out_capacity);
        assert!(s.buffered_input() < c.max_pdu_len);
        assert!(s.core.events.len() <= s.core.events.capacity());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_streams_never_panic_and_stay_bounded(
            segments in prop::collection::vec(segment(), 0..40),
            cuts in prop::collection::vec(1usize..64, 1..16),
            answer in any::<bool>(),
            client in any::<bool>(),
        ) {
            let config = SessionConfig {
                window: 4,
                out_window: 2,
                max_pdu_len: 128,
                ..if client { client_config(b"pwa") } else { SessionConfig::default() }
            };
            let mut s = Session::new(config);
            s.connected(0, ESME_IP);
            let stream: Vec<u8> = segments.concat();
            let mut off = 0;
            let mut now = 0;
            let mut i = 0;
            while off < stream.len() {
                let end = (off + cuts[i % cuts.len()]).min(stream.len());
                i += 1;
                let (reqs, used) = feed_some(&mut s, now, &stream[off..end], &mut LabAuth);
                off += used;
                if answer {
                    for (seq, _) in reqs {
                        let _ = s.respond(seq, CommandStatus::ESME_ROK, b"id");
                    }
                }
                let receipt = Pdu::new(0, Body::DeliverSm(receipt_body(b"r")));
                let _ = s.send_request(now, &receipt);
                check_bounds(&s);
                let _ = drain_raw(&mut s);
                while s.poll_event().is_some() {}
                now += 3_000;
                s.handle_timeout(now);
                check_bounds(&s);
            }
        }

        /// Valid requests in random chunks: each gets exactly one answer
        /// with its sequence number, throttled or not.
        #[test]
        fn every_request_is_answered_once(
            kinds in prop::collection::vec(0u8..4, 1..60),
            cuts in prop::collection::vec(1usize..90, 1..16),
            window in 1usize..6,
        ) {
            let mut s = bound_server(SessionConfig { window, ..SessionConfig::default() }, BindType::Transceiver);
            let mut stream = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                let seq = 1_000 + i as u32;
                stream.extend(match k {
                    0 | 1 => submit_bytes(seq),
                    2 => header_only(seq, 0x15),
                    _ => header_only(seq, 0x777),
                });
            }
            let mut answered = std::collections::HashMap::<u32, usize>::new();
            let (mut off, mut i) = (0, 0);
            let mut held = Vec::new();
            while off < stream.len() || !held.is_empty() {
                let end = (off + cuts[i % cuts.len()]).min(stream.len());
                i += 1;
                let (reqs, used) = feed_some(&mut s, 1, &stream[off..end], &mut LabAuth);
                off += used;
                held.extend(reqs.into_iter().map(|r| r.0));
                // Answer half of what is held each round.
                let n = held.len().div_ceil(2);
                for seq in held.drain(..n) {
                    s.respond(seq, CommandStatus::ESME_ROK, b"x").unwrap();
                }
                for o in drain(&mut s) {
                    *answered.entry(o.seq).or_default() += 1;
                }
            }
            prop_assert_eq!(answered.len(), kinds.len());
            prop_assert!(answered.values().all(|&n| n == 1));
        }
    }

    fn drain_raw(s: &mut Session) -> usize {
        let mut buf = [0u8; 200];
        let mut total = 0;
        loop {
            let n = s.poll_transmit(&mut buf);
            if n == 0 {
                return total;
            }
            total += n;
        }
    }
}
