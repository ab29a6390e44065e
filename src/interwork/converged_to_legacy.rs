//! Converged → legacy: a converged user's SIP MESSAGE becomes SMPP `submit_sm`s (or
//! `deliver_sm`s), the legacy system's delivery receipts come back, are matched by a
//! canonical message id, aggregated over the parts of a concatenated message, and turn
//! into one IMDN (RFC 5438) to the converged sender.
//!
//! ```text
//!  SIP MESSAGE ──sip_to_submit──► N × submit_sm / deliver_sm  + CorrelationFacts (store first!)
//!                                              │ SMSC message_ids (submit_sm_resp)
//!                                              ▼ canonical_id(.., IdOrigin::SubmitResp)
//!  deliver_sm receipt ──parse_smsc_receipt──► LegacyReceipt { id: CanonicalId, state }
//!        ──PartAggregate::apply──► one state for the message ──receipt_to_imdn──► SIP MESSAGE (IMDN)
//! ```
//!
//! Everything is a pure function of its inputs: time, sequence numbers, the
//! concatenation reference and unique tokens come from the caller; output goes into
//! caller buffers; nothing allocates or panics.
//!
//! Decisions taken here:
//! - the recipient (Request-URI) must be a global E.164 number (`tel:+…`,
//!   `sip:+…@…[;user=phone]`); anything else is refused with a SIP status
//!   ([`SubmitError::sip_status`]);
//! - the sender is E.164 when its URI is a phone URI; otherwise the caller's
//!   [`SenderPolicy`] decides between refusing (403) and an alphanumeric source
//!   address (TON 5) made of the SIP user part;
//! - `imdn.Disposition-Notification` maps to `registered_delivery`: positive and/or
//!   negative → bits 1-0 = 01 (SMPP 3.4 cannot ask for success-only receipts; the
//!   failure receipts that then arrive are filtered when the IMDN is written), negative
//!   only → 10, `display` → bits 3-2 = 10 **only** when the legacy system handles user
//!   acks (pitfall 7), `processing` → bit 4 (intermediate notification);
//! - without an `imdn.Message-ID` or a `DateTime` no IMDN can be correlated or written,
//!   so nothing is requested (`registered_delivery` 0, dispositions empty);
//! - a text that fits one short message goes in `short_message` whatever the method;
//!   [`Concatenation::MessagePayload`] puts longer texts in one `message_payload`.

use core::fmt;

use super::address::{write_sip_uri, AddressError, LegacyParty, Msisdn, ALPHA_MAX};
use super::content::SipContent;
use super::state::{aggregate, ReceiptRecord, ReceiptState, Transition};
use super::{BindDirection, Concatenation, ConvergedSide, Exchange, IdCanonicalisation};
use crate::wire::cpim::{self, CpimError, CpimRepr, DateTime, Dispositions};
use crate::wire::imdn::{DeliveryStatus, DisplayStatus, Imdn, ImdnError, Notification, ProcessingStatus, XmlText};
use crate::wire::sip::{self, MediaType, Message, MessageWriter, Method, Uri};
use crate::wire::smpp::receipt::{Receipt, ReceiptError};
use crate::wire::smpp::{
    Address, Body, CommandId, EmitError, EsmClass, MessageState, MessageType, NetworkErrorCode, Pdu, ReceiptDate,
    RegisteredDelivery, SmeAck, SmscReceipt, SubmitSm, Tlv, TlvError, TlvTag, Tlvs,
};
use crate::wire::sms::segment::MAX_SEGMENTS;
use crate::wire::sms::{choose_encoding_with, Encoding, Gsm7Form, SegmentError, SegmentPlan};

/// Media types a SIP MESSAGE toward a legacy system may carry: the `Accept` value of a
/// 415 answer.
pub const ACCEPT: &str = "text/plain, message/cpim";

pub use super::content::MAX_CPIM_HEADERS;

/// Largest SMPP `sequence_number` (SMPP 3.4 §3.2: 0x00000001–0x7FFFFFFF).
pub const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// The sequence number after `seq`, wrapping from 0x7FFFFFFF back to 1.
pub const fn next_sequence(seq: u32) -> u32 {
    if seq >= MAX_SEQUENCE || seq == 0 {
        1
    } else {
        seq + 1
    }
}

// ---------------------------------------------------------------------------------------
// SIP MESSAGE → submit_sm
// ---------------------------------------------------------------------------------------

/// Why a SIP MESSAGE cannot become short messages. Each variant maps to the SIP
/// response the caller sends ([`SubmitError::sip_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The request is not a SIP MESSAGE (405).
    NotMessage,
    /// The Request-URI does not parse (400).
    BadRequestUri,
    /// The Request-URI scheme is neither `sip:`, `sips:` nor `tel:` (416).
    UnsupportedUriScheme,
    /// The Request-URI names no telephone number (`sip:alice@…`): no legacy user (404).
    NotAPhoneNumber,
    /// The Request-URI is a telephone number but not a complete E.164 one (local `tel:`
    /// number, too many digits, stray characters) (484).
    IncompleteNumber(AddressError),
    /// A SIP header iwf needs (From, Content-Type) is missing or malformed (400).
    BadSipHeader(sip::Error),
    /// A body without a Content-Type (400).
    MissingContentType,
    /// A content type other than `text/plain` or `message/cpim` wrapping it (415).
    UnsupportedMediaType,
    /// `text/plain` with a charset other than UTF-8 (415).
    UnsupportedCharset,
    /// The body is an IMDN (`message/imdn+xml`): not a text message; the caller routes
    /// it to the notification path instead (answered 415 if it cannot).
    IsImdn,
    /// The `message/cpim` body is malformed (400).
    BadCpim(CpimError),
    /// The text is not UTF-8 (400).
    InvalidUtf8,
    /// The text is empty (400).
    EmptyText,
    /// The sender's URI is not a telephone number and the policy refuses alphanumeric
    /// senders, or the name does not fit one (403).
    SenderNotANumber,
    /// The sender's number is malformed (403).
    BadSender(AddressError),
    /// The text does not fit: no concatenation, or more than a `message_payload` (413).
    TooLong {
        /// Units of the text (septets, octets or UTF-16 units).
        units: usize,
        /// Units allowed.
        capacity: usize,
    },
    /// The text needs more than 255 parts (413).
    TooManySegments,
    /// The scratch buffer cannot hold the encoded text (500).
    ScratchTooSmall,
    /// The output buffer cannot hold the PDUs (500).
    OutputTooSmall,
    /// A PDU could not be written (500).
    Emit(EmitError),
    /// The text could not be segmented (500; never for a text chosen for its encoding).
    Segment(SegmentError),
}

impl SubmitError {
    /// The SIP status code and reason phrase to answer the MESSAGE with.
    pub fn sip_status(self) -> (u16, &'static str) {
        match self {
            SubmitError::NotMessage => (405, "Method Not Allowed"),
            SubmitError::BadRequestUri
            | SubmitError::BadSipHeader(_)
            | SubmitError::MissingContentType
            | SubmitError::BadCpim(_)
            | SubmitError::InvalidUtf8
            | SubmitError::EmptyText => (400, "Bad Request"),
            SubmitError::UnsupportedUriScheme => (416, "Unsupported URI Scheme"),
            SubmitError::NotAPhoneNumber => (404, "Not Found"),
            SubmitError::IncompleteNumber(_) => (484, "Address Incomplete"),
            SubmitError::UnsupportedMediaType | SubmitError::UnsupportedCharset | SubmitError::IsImdn => {
                (415, "Unsupported Media Type")
            }
            SubmitError::SenderNotANumber | SubmitError::BadSender(_) => (403, "Forbidden"),
            SubmitError::TooLong { .. } | SubmitError::TooManySegments => (413, "Request Entity Too Large"),
            SubmitError::ScratchTooSmall
            | SubmitError::OutputTooSmall
            | SubmitError::Emit(_)
            | SubmitError::Segment(_) => (500, "Server Internal Error"),
        }
    }

    /// The `Accept` header value to add to the answer (415 only).
    pub fn accept(self) -> Option<&'static str> {
        match self.sip_status().0 {
            415 => Some(ACCEPT),
            _ => None,
        }
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::NotMessage => f.write_str("request is not a SIP MESSAGE"),
            SubmitError::BadRequestUri => f.write_str("Request-URI does not parse"),
            SubmitError::UnsupportedUriScheme => f.write_str("Request-URI scheme is not sip, sips or tel"),
            SubmitError::NotAPhoneNumber => f.write_str("Request-URI names no telephone number"),
            SubmitError::IncompleteNumber(e) => {
                write!(f, "Request-URI is not a complete E.164 number: {e}")
            }
            SubmitError::BadSipHeader(e) => write!(f, "SIP header: {e}"),
            SubmitError::MissingContentType => f.write_str("body without Content-Type"),
            SubmitError::UnsupportedMediaType => f.write_str("content type is not text/plain or message/cpim"),
            SubmitError::UnsupportedCharset => f.write_str("text/plain charset is not UTF-8"),
            SubmitError::IsImdn => f.write_str("body is an IMDN, not a text message"),
            SubmitError::BadCpim(e) => write!(f, "CPIM: {e}"),
            SubmitError::InvalidUtf8 => f.write_str("text is not UTF-8"),
            SubmitError::EmptyText => f.write_str("text is empty"),
            SubmitError::SenderNotANumber => f.write_str("sender URI is not a telephone number"),
            SubmitError::BadSender(e) => write!(f, "sender number: {e}"),
            SubmitError::TooLong { units, capacity } => {
                write!(f, "text of {units} units exceeds {capacity}")
            }
            SubmitError::TooManySegments => f.write_str("text needs more than 255 short messages"),
            SubmitError::ScratchTooSmall => f.write_str("scratch buffer too small for the encoded text"),
            SubmitError::OutputTooSmall => f.write_str("output buffer too small for the PDUs"),
            SubmitError::Emit(e) => write!(f, "PDU: {e}"),
            SubmitError::Segment(e) => write!(f, "segmentation: {e}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// What to do with a sender whose URI is not a telephone number (`sip:alice@ims.lab`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderPolicy {
    /// Refuse the message ([`SubmitError::SenderNotANumber`], SIP 403): the legacy
    /// recipient could not answer an alphanumeric sender anyway. The default.
    #[default]
    NumberOnly,
    /// Send with an alphanumeric source address (TON 5, NPI 0) made of the SIP user part
    /// (1–20 characters of `[A-Za-z0-9 ._-]`; otherwise still refused).
    AlphanumericFallback,
}

/// The caller's per-message inputs to [`sip_to_submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitParams {
    /// Concatenation reference (low 8 bits with [`Concatenation::Udh8`]).
    pub reference: u16,
    /// `sequence_number` of the first PDU; the next ones follow [`next_sequence`].
    pub first_sequence: u32,
    /// Sender handling.
    pub sender_policy: SenderPolicy,
}

/// What the caller must store **before** sending the PDUs (pitfall 1: a receipt may
/// arrive before the `submit_sm_resp` is processed), borrowed from the SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationFacts<'a> {
    /// The converged message id (CPIM `imdn.Message-ID`); `None` for a plain-text
    /// MESSAGE or a CPIM body without one: no IMDN can be sent then.
    pub message_id: Option<&'a str>,
    /// The sender's URI (CPIM `From`, or SIP `From` for a plain-text MESSAGE).
    pub sender: &'a str,
    /// The legacy recipient.
    pub recipient: Msisdn,
    /// The dispositions iwf will honour: those asked, minus `display` when the legacy
    /// system has no user acks, and none when no IMDN could be correlated or written.
    pub dispositions: Dispositions,
    /// The dispositions the sender asked for, as parsed (for logs and counters).
    pub requested: Dispositions,
    /// CPIM `DateTime` (needed for the IMDN's `<datetime>`).
    pub datetime: Option<DateTime>,
    /// The first `imdn.IMDN-Record-Route` URI (where the IMDN goes), if any.
    pub imdn_record_route: Option<&'a str>,
    /// Number of short messages (receipts to expect).
    pub segments: u8,
}

impl<'a> CorrelationFacts<'a> {
    /// The stored view [`receipt_to_imdn`] needs, when an IMDN can be sent at all.
    pub fn stored(&self) -> Option<StoredCorrelation<'a>> {
        Some(StoredCorrelation {
            message_id: self.message_id?,
            sender: self.sender,
            recipient: self.recipient,
            dispositions: self.dispositions,
            datetime: self.datetime?,
            imdn_record_route: self.imdn_record_route,
        })
    }
}

/// The PDUs [`sip_to_submit`] wrote back to back into `out`, and what to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitBatch<'a> {
    /// Number of PDUs (1..=255), one per part.
    pub count: u8,
    /// Octets written into `out`.
    pub len: usize,
    /// The PDUs' command: `submit_sm` when iwf binds to the system, `deliver_sm` when
    /// the system binds to iwf.
    pub command_id: CommandId,
    /// Encoding of the text.
    pub encoding: Encoding,
    /// `data_coding` of every PDU.
    pub data_coding: u8,
    /// `registered_delivery` of every PDU.
    pub registered_delivery: RegisteredDelivery,
    /// `sequence_number` of the first PDU.
    pub first_sequence: u32,
    /// The correlation facts.
    pub facts: CorrelationFacts<'a>,
    spans: [(u32, u32); MAX_SEGMENTS],
}

impl<'a> SubmitBatch<'a> {
    /// Offset and length in `out` of PDU `index` (0-based).
    pub fn span(&self, index: usize) -> Option<(usize, usize)> {
        if index >= usize::from(self.count) {
            return None;
        }
        self.spans.get(index).map(|&(o, l)| (o as usize, l as usize))
    }

    /// `sequence_number` of PDU `index` (0-based).
    pub fn sequence(&self, index: usize) -> Option<u32> {
        if index >= usize::from(self.count) {
            return None;
        }
        let mut s = self.first_sequence;
        for _ in 0..index {
            s = next_sequence(s);
        }
        Some(s)
    }

    /// The PDUs as slices of `out` (the buffer given to [`sip_to_submit`]), with their
    /// sequence numbers, in order.
    pub fn pdus<'o>(&'o self, out: &'o [u8]) -> impl Iterator<Item = (u32, &'o [u8])> + 'o {
        let mut seq = self.first_sequence;
        self.spans.iter().take(usize::from(self.count)).map(move |&(o, l)| {
            let s = seq;
            seq = next_sequence(seq);
            let start = o as usize;
            (s, out.get(start..start.saturating_add(l as usize)).unwrap_or(&[]))
        })
    }
}

/// The global E.164 number a Request-URI or sender URI names.
fn e164_of(uri: &Uri<'_>) -> Result<Msisdn, SubmitError> {
    match uri {
        Uri::Tel(t) => {
            if !t.number.starts_with('+') {
                return Err(SubmitError::IncompleteNumber(AddressError::UnsupportedUri));
            }
            Msisdn::parse(t.number).map_err(SubmitError::IncompleteNumber)
        }
        Uri::Sip(s) => {
            let user = s.user.unwrap_or("");
            let number = user.split(';').next().unwrap_or("");
            let phone = s.user_param().is_some_and(|p| p.eq_ignore_ascii_case("phone"));
            if number.starts_with('+') {
                Msisdn::parse(number).map_err(SubmitError::IncompleteNumber)
            } else if phone {
                Err(SubmitError::IncompleteNumber(AddressError::UnsupportedUri))
            } else {
                Err(SubmitError::NotAPhoneNumber)
            }
        }
        Uri::Other(_) => Err(SubmitError::UnsupportedUriScheme),
    }
}

/// A source address: its SMPP form (the digits live in `digits`).
#[derive(Clone, Copy)]
enum Source<'a> {
    Number(Msisdn),
    Name(&'a str),
}

fn sender_of<'a>(uri_text: &'a str, policy: SenderPolicy) -> Result<Source<'a>, SubmitError> {
    let uri = Uri::parse(uri_text).map_err(|_| SubmitError::SenderNotANumber)?;
    match e164_of(&uri) {
        Ok(m) => Ok(Source::Number(m)),
        Err(SubmitError::IncompleteNumber(e)) => Err(SubmitError::BadSender(e)),
        Err(_) if policy == SenderPolicy::AlphanumericFallback => {
            let name = match uri {
                Uri::Sip(s) => s.user.unwrap_or(""),
                _ => "",
            };
            let ok = !name.is_empty()
                && name.len() <= ALPHA_MAX
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'.' | b'_' | b'-'));
            if ok {
                Ok(Source::Name(name))
            } else {
                Err(SubmitError::SenderNotANumber)
            }
        }
        Err(_) => Err(SubmitError::SenderNotANumber),
    }
}

/// Checks a `text/plain` media type: charset UTF-8 or absent.
fn check_text_plain(mt: &MediaType<'_>) -> Result<(), SubmitError> {
    match mt.charset() {
        None => Ok(()),
        Some(c) if c.eq_ignore_ascii_case("utf-8") => Ok(()),
        Some(_) => Err(SubmitError::UnsupportedCharset),
    }
}

/// The parts of a MESSAGE body the conversion uses.
struct Content<'a> {
    text: &'a str,
    sender: &'a str,
    message_id: Option<&'a str>,
    requested: Dispositions,
    datetime: Option<DateTime>,
    route: Option<&'a str>,
}

fn utf8(b: &[u8]) -> Result<&str, SubmitError> {
    core::str::from_utf8(b).map_err(|_| SubmitError::BadCpim(CpimError::InvalidValue))
}

fn content_of<'a>(msg: &Message<'a, '_>, parsed: &SipContent<'_, 'a>) -> Result<Content<'a>, SubmitError> {
    let ct = msg.content_type().map_err(SubmitError::BadSipHeader)?.ok_or(SubmitError::MissingContentType)?;
    if ct.is("message", "imdn+xml") {
        return Err(SubmitError::IsImdn);
    }
    if ct.is("text", "plain") {
        check_text_plain(&ct)?;
        let from = msg.from().map_err(SubmitError::BadSipHeader)?;
        return Ok(Content {
            text: core::str::from_utf8(msg.body).map_err(|_| SubmitError::InvalidUtf8)?,
            sender: from.uri.as_str(),
            message_id: None,
            requested: Dispositions::empty(),
            datetime: None,
            route: None,
        });
    }
    if !ct.is("message", "cpim") {
        return Err(SubmitError::UnsupportedMediaType);
    }
    let c = match parsed {
        SipContent::Cpim(c) => c,
        SipContent::BadCpim(e) => return Err(SubmitError::BadCpim(*e)),
        // The essence said otherwise than the parsed Content-Type: not CPIM to us.
        SipContent::Plain(_) => return Err(SubmitError::UnsupportedMediaType),
    };
    let inner = c.content_type().ok_or(SubmitError::BadCpim(CpimError::MissingContentType))?;
    let inner = MediaType::parse(utf8(inner)?).map_err(|_| SubmitError::UnsupportedMediaType)?;
    let is_notification = c.content_disposition().is_some_and(|d| d.trim_ascii().eq_ignore_ascii_case(b"notification"));
    if inner.is("message", "imdn+xml") || is_notification {
        return Err(SubmitError::IsImdn);
    }
    if !inner.is("text", "plain") {
        return Err(SubmitError::UnsupportedMediaType);
    }
    check_text_plain(&inner)?;
    let from = c.from().map_err(SubmitError::BadCpim)?;
    let route = match c.imdn_record_routes().next() {
        Some(r) => Some(utf8(r.map_err(SubmitError::BadCpim)?.uri)?),
        None => None,
    };
    Ok(Content {
        text: core::str::from_utf8(c.content).map_err(|_| SubmitError::InvalidUtf8)?,
        sender: utf8(from.uri)?,
        message_id: c.message_id().map(utf8).transpose()?.filter(|s| !s.is_empty()),
        requested: c.dispositions().known(),
        datetime: c.datetime().map_err(SubmitError::BadCpim)?,
        route,
    })
}

/// `d` (known dispositions only) without those of `drop`.
fn without(d: Dispositions, drop: Dispositions) -> Dispositions {
    let mut kept = Dispositions::empty();
    for x in [
        Dispositions::POSITIVE_DELIVERY,
        Dispositions::NEGATIVE_DELIVERY,
        Dispositions::PROCESSING,
        Dispositions::DISPLAY,
    ] {
        if d.contains(x) && !drop.contains(x) {
            kept.insert(x);
        }
    }
    kept
}

/// The dispositions iwf promises for a message to `exchange`: `display` only when the
/// system handles SME user acks (`user_ack`).
pub fn honoured_dispositions(requested: Dispositions, exchange: &Exchange<'_>) -> Dispositions {
    if exchange.user_ack {
        requested.known()
    } else {
        without(requested, Dispositions::DISPLAY)
    }
}

/// `registered_delivery` for the dispositions iwf honours:
///
/// | dispositions | bits |
/// |---|---|
/// | positive-delivery (with or without negative) | 1-0 = 01 (SMPP 3.4 has no success-only) |
/// | negative-delivery only | 1-0 = 10 |
/// | display | 3-2 = 10 (SME manual/user ack) |
/// | processing | 4 (intermediate notification) |
///
/// Pass [`honoured_dispositions`] so that `display` is never asked of a system without
/// user acks.
pub fn registered_delivery_for(d: Dispositions) -> RegisteredDelivery {
    let receipt = if d.contains(Dispositions::POSITIVE_DELIVERY) {
        SmscReceipt::SuccessOrFailure
    } else if d.contains(Dispositions::NEGATIVE_DELIVERY) {
        SmscReceipt::FailureOnly
    } else {
        SmscReceipt::None
    };
    let ack = if d.contains(Dispositions::DISPLAY) { SmeAck::User } else { SmeAck::None };
    RegisteredDelivery::new(receipt, ack, d.contains(Dispositions::PROCESSING))
}

fn segment_error(e: SegmentError) -> SubmitError {
    match e {
        SegmentError::TooLong { units, capacity } => SubmitError::TooLong { units, capacity },
        SegmentError::TooManySegments { .. } => SubmitError::TooManySegments,
        SegmentError::BufferTooSmall => SubmitError::ScratchTooSmall,
        e => SubmitError::Segment(e),
    }
}

/// Converts a SIP MESSAGE (RFC 3428) into the short messages for `exchange`: `submit_sm`
/// when iwf binds to the legacy system, `deliver_sm` when the system binds to iwf. The
/// PDUs are written back to back into `out`; `scratch` holds the encoded text (two
/// octets per UTF-16 unit, one per septet or Latin-1 character: `2 × text.len()`
/// always suffices).
///
/// The returned [`SubmitBatch`] carries the [`CorrelationFacts`] the caller must store
/// before sending (pitfall 1). Refusals carry their SIP answer
/// ([`SubmitError::sip_status`], [`SubmitError::accept`]).
pub fn sip_to_submit<'a>(
    msg: &Message<'a, '_>,
    exchange: &Exchange<'_>,
    params: SubmitParams,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<SubmitBatch<'a>, SubmitError> {
    let mut headers = [cpim::EMPTY_HEADER; MAX_CPIM_HEADERS];
    let content = SipContent::of(msg, &mut headers);
    sip_content_to_submit(msg, &content, exchange, params, scratch, out)
}

/// [`sip_to_submit`] for a MESSAGE whose body was looked at already
/// ([`SipContent::of`]), so that its CPIM is parsed once.
pub fn sip_content_to_submit<'a>(
    msg: &Message<'a, '_>,
    parsed: &SipContent<'_, 'a>,
    exchange: &Exchange<'_>,
    params: SubmitParams,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<SubmitBatch<'a>, SubmitError> {
    if msg.method() != Some(Method::Message) {
        return Err(SubmitError::NotMessage);
    }
    let ruri =
        msg.request_line().ok_or(SubmitError::NotMessage)?.parse_uri().map_err(|_| SubmitError::BadRequestUri)?;
    let recipient = e164_of(&ruri)?;
    let content = content_of(msg, parsed)?;
    if content.text.is_empty() {
        return Err(SubmitError::EmptyText);
    }
    let source = sender_of(content.sender, params.sender_policy)?;

    let correlatable = content.message_id.is_some() && content.datetime.is_some();
    let dispositions =
        if correlatable { honoured_dispositions(content.requested, exchange) } else { Dispositions::empty() };
    let registered_delivery = registered_delivery_for(dispositions);

    let encoding = choose_encoding_with(content.text, exchange.default_encoding);
    let data_coding = encoding.data_coding().to_u8();
    let method = exchange.concatenation;
    let plan = SegmentPlan::new(content.text, encoding, method, params.reference, scratch).map_err(segment_error)?;
    let fits_short = plan.encoded().len() <= encoding.single_capacity() * encoding.unit_bytes();

    let source_addr = match &source {
        Source::Number(m) => Address::new(Address::TON_INTERNATIONAL, Address::NPI_ISDN, m.digits().as_bytes()),
        Source::Name(n) => Address::new(Address::TON_ALPHANUMERIC, Address::NPI_UNKNOWN, n.as_bytes()),
    };
    let destination = Address::international(recipient.digits().as_bytes());
    let deliver = exchange.direction == BindDirection::LegacyBindsToIwf;

    let mut spans = [(0u32, 0u32); MAX_SEGMENTS];
    let mut pos = 0usize;
    let mut seq = params.first_sequence;
    let mut count = 0u8;
    for (slot, seg) in spans.iter_mut().zip(plan.segments()) {
        // UDH (≤ 7) + one part (≤ 160 septets unpacked, 140 octets): 254 always suffices.
        let mut ud = [0u8; 254];
        let mut sar = [[0u8; 2]; 3];
        let mut tlv_list = [Tlv::new(TlvTag(0), &[]); 3];
        let (short_message, tlvs): (&[u8], Tlvs<'_>) = if method == Concatenation::MessagePayload && !fits_short {
            tlv_list[0] = Tlv::new(TlvTag::MESSAGE_PAYLOAD, seg.payload);
            (&[], Tlvs::List(&tlv_list[..1]))
        } else {
            let n = seg.write_user_data(Gsm7Form::Unpacked, &mut ud).map_err(SubmitError::Segment)?;
            let tlvs = match (method, seg.concat) {
                (Concatenation::Sar, Some(c)) => {
                    sar[0] = c.reference.to_be_bytes();
                    sar[1][0] = c.total;
                    sar[2][0] = c.seq;
                    tlv_list = [
                        Tlv::new(TlvTag::SAR_MSG_REF_NUM, &sar[0]),
                        Tlv::new(TlvTag::SAR_TOTAL_SEGMENTS, &sar[1][..1]),
                        Tlv::new(TlvTag::SAR_SEGMENT_SEQNUM, &sar[2][..1]),
                    ];
                    Tlvs::List(&tlv_list)
                }
                _ => Tlvs::EMPTY,
            };
            (ud.get(..n).unwrap_or(&[]), tlvs)
        };
        let sm = SubmitSm {
            source: source_addr,
            destination,
            esm_class: EsmClass::DEFAULT.with_udhi(seg.has_udh()),
            registered_delivery,
            data_coding,
            short_message,
            tlvs,
            ..SubmitSm::default()
        };
        let body = if deliver { Body::DeliverSm(sm) } else { Body::SubmitSm(sm) };
        let dst = out.get_mut(pos..).ok_or(SubmitError::OutputTooSmall)?;
        let n = Pdu::new(seq, body).emit(dst).map_err(|e| match e {
            EmitError::BufferTooSmall { .. } => SubmitError::OutputTooSmall,
            e => SubmitError::Emit(e),
        })?;
        let offset = u32::try_from(pos).map_err(|_| SubmitError::OutputTooSmall)?;
        let len = u32::try_from(n).map_err(|_| SubmitError::OutputTooSmall)?;
        *slot = (offset, len);
        pos = pos.checked_add(n).ok_or(SubmitError::OutputTooSmall)?;
        seq = next_sequence(seq);
        count = count.saturating_add(1);
    }

    Ok(SubmitBatch {
        count,
        len: pos,
        command_id: if deliver { CommandId::DeliverSm } else { CommandId::SubmitSm },
        encoding,
        data_coding,
        registered_delivery,
        first_sequence: params.first_sequence,
        facts: CorrelationFacts {
            message_id: content.message_id,
            sender: content.sender,
            recipient,
            dispositions,
            requested: content.requested,
            datetime: content.datetime,
            imdn_record_route: content.route,
            segments: count,
        },
        spans,
    })
}

// ---------------------------------------------------------------------------------------
// Message ids (pitfall 3)
// ---------------------------------------------------------------------------------------

/// Longest canonical id (SMPP message_id without its NUL).
pub const CANONICAL_ID_MAX: usize = 64;

/// Where a raw message id was read: it decides how [`IdCanonicalisation::HexRespDecimalReceipt`]
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdOrigin {
    /// `submit_sm_resp.message_id` (or `deliver_sm_resp`).
    SubmitResp,
    /// A receipt's `receipted_message_id` TLV or text `id:`.
    Receipt,
}

/// Why a message id has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// Empty (or only whitespace).
    Empty,
    /// Longer than 64 characters.
    TooLong,
    /// A byte outside printable ASCII.
    BadCharacter,
    /// Expected hexadecimal digits.
    NotHex,
    /// Expected decimal digits.
    NotDecimal,
    /// The number does not fit 64 bits.
    Overflow,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::Empty => "message id is empty",
            IdError::TooLong => "message id is longer than 64 characters",
            IdError::BadCharacter => "message id has a byte outside printable ASCII",
            IdError::NotHex => "message id is not hexadecimal",
            IdError::NotDecimal => "message id is not decimal",
            IdError::Overflow => "message id number does not fit 64 bits",
        })
    }
}

impl std::error::Error for IdError {}

/// A message id in the canonical form of its legacy system: an inline buffer usable as a
/// map key together with the system (pitfall 2: key by (system, canonical id)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalId {
    len: u8,
    bytes: [u8; CANONICAL_ID_MAX],
}

impl CanonicalId {
    fn from_slice(s: &[u8]) -> Result<CanonicalId, IdError> {
        let mut id = CanonicalId { len: 0, bytes: [0; CANONICAL_ID_MAX] };
        let dst = id.bytes.get_mut(..s.len()).ok_or(IdError::TooLong)?;
        dst.copy_from_slice(s);
        id.len = s.len() as u8;
        Ok(id)
    }

    fn from_number(mut v: u64) -> CanonicalId {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // 20 digits always fit 64 octets.
        CanonicalId::from_slice(&tmp[i..]).unwrap_or(CanonicalId { len: 0, bytes: [0; CANONICAL_ID_MAX] })
    }

    /// The canonical octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The canonical text (always printable ASCII).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Display for CanonicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CanonicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalId({})", self.as_str())
    }
}

fn parse_radix(digits: &[u8], radix: u32, not: IdError) -> Result<u64, IdError> {
    let mut v = 0u64;
    for &b in digits {
        let d = char::from(b).to_digit(radix).ok_or(not)?;
        v = v.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(u64::from(d))).ok_or(IdError::Overflow)?;
    }
    Ok(v)
}

/// The canonical form of a legacy system's message id, so that
/// the id of a `submit_sm_resp` and the id of its receipt compare equal:
///
/// - [`IdCanonicalisation::Auto`]: hex digits (≤ 16 after leading zeros) as their
///   number (`00A1b2` = `a1b2`), written in decimal; anything else folded;
///   [`alternate_id`] gives a receipt's decimal reading;
/// - [`IdCanonicalisation::Exact`]: as sent;
/// - [`IdCanonicalisation::Folded`]: lower case, leading zeros dropped (`0000A1B2` = `a1b2`);
/// - [`IdCanonicalisation::HexRespDecimalReceipt`]: the number, read as hex from a
///   `submit_sm_resp` and as decimal from a receipt (`1F` = `31`), written in decimal;
/// - [`IdCanonicalisation::Decimal`]: the decimal number, leading zeros dropped.
///
/// Surrounding whitespace is ignored. The raw form stays with the caller (and in
/// [`LegacyReceipt::raw_id`]).
pub fn canonical_id(raw: &[u8], ids: IdCanonicalisation, origin: IdOrigin) -> Result<CanonicalId, IdError> {
    let raw = raw.trim_ascii();
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > CANONICAL_ID_MAX {
        return Err(IdError::TooLong);
    }
    if !raw.iter().all(|b| b.is_ascii_graphic()) {
        return Err(IdError::BadCharacter);
    }
    let folded = || {
        let zeros = raw.iter().take_while(|&&b| b == b'0').count();
        let kept = raw.get(zeros.min(raw.len() - 1)..).unwrap_or(raw);
        let mut id = CanonicalId::from_slice(kept)?;
        id.bytes.make_ascii_lowercase();
        Ok(id)
    };
    match (ids, origin) {
        (IdCanonicalisation::Auto, _) => match parse_radix(raw, 16, IdError::NotHex) {
            Ok(n) => Ok(CanonicalId::from_number(n)),
            Err(_) => folded(),
        },
        (IdCanonicalisation::Exact, _) => CanonicalId::from_slice(raw),
        (IdCanonicalisation::Folded, _) => folded(),
        (IdCanonicalisation::HexRespDecimalReceipt, IdOrigin::SubmitResp) => {
            parse_radix(raw, 16, IdError::NotHex).map(CanonicalId::from_number)
        }
        (IdCanonicalisation::HexRespDecimalReceipt, IdOrigin::Receipt) | (IdCanonicalisation::Decimal, _) => {
            parse_radix(raw, 10, IdError::NotDecimal).map(CanonicalId::from_number)
        }
    }
}

/// The second reading [`IdCanonicalisation::Auto`] gives a receipt's id: a decimal
/// number (an SMSC that reports in decimal what it answered in hex), when the id is
/// decimal digits and that reading differs from [`canonical_id`]'s. `None` otherwise,
/// and for every other setting.
pub fn alternate_id(raw: &[u8], ids: IdCanonicalisation, origin: IdOrigin) -> Option<CanonicalId> {
    if ids != IdCanonicalisation::Auto || origin != IdOrigin::Receipt {
        return None;
    }
    let raw = raw.trim_ascii();
    let decimal = parse_radix(raw, 10, IdError::NotDecimal).ok().map(CanonicalId::from_number)?;
    let primary = canonical_id(raw, ids, origin).ok()?;
    (decimal != primary).then_some(decimal)
}

// ---------------------------------------------------------------------------------------
// SMSC receipts
// ---------------------------------------------------------------------------------------

/// Which receipt a PDU carries (`esm_class` bits 5-2, SMPP 3.4 §5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptKind {
    /// 0x04: SMSC delivery receipt.
    SmscDeliveryReceipt,
    /// 0x08: SME delivery acknowledgement.
    SmeDeliveryAck,
    /// 0x10: SME manual/user acknowledgement (a read report).
    SmeUserAck,
    /// 0x20: intermediate delivery notification.
    Intermediate,
}

/// Where a receipt field was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldSource {
    /// A TLV (`receipted_message_id`, `message_state`).
    Tlv,
    /// The Appendix-B text.
    Text,
    /// Implied by the receipt kind (a user ack is a display; a delivery ack a delivery).
    Kind,
}

/// A receipt from a legacy system, read from a `deliver_sm` (or `submit_sm`) PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyReceipt<'a> {
    /// What kind of receipt.
    pub kind: ReceiptKind,
    /// The id as sent (TLV first, else the text `id:`).
    pub raw_id: &'a [u8],
    /// The canonical id to look the message up by.
    pub id: CanonicalId,
    /// Where the id was read.
    pub id_source: FieldSource,
    /// The canonical state.
    pub state: ReceiptState,
    /// The SMPP state as reported (TLV, else mapped from the text `stat:`).
    pub message_state: Option<MessageState>,
    /// Where the state was read.
    pub state_source: FieldSource,
    /// `network_error_code` TLV (a malformed one is ignored).
    pub network_error: Option<NetworkErrorCode>,
    /// The text `err:` value, as sent.
    pub err: Option<&'a [u8]>,
    /// The text `done date:`.
    pub done_date: Option<ReceiptDate>,
}

/// Why a PDU is not a usable receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptParseError {
    /// `esm_class` says it is a normal message, not a receipt.
    NotAReceipt,
    /// A receipt TLV is malformed.
    Tlv(TlvError),
    /// The text was needed (a TLV missing) and is not a receipt text.
    Text(ReceiptError),
    /// Neither a `receipted_message_id` TLV nor a text `id:`.
    NoId,
    /// Neither a `message_state` TLV nor a text `stat:`.
    NoState,
    /// The state has no canonical meaning (unassigned `message_state`, unknown `stat:`).
    UnknownState,
    /// The id has no canonical form.
    Id(IdError),
}

impl fmt::Display for ReceiptParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptParseError::NotAReceipt => f.write_str("esm_class marks a message, not a receipt"),
            ReceiptParseError::Tlv(e) => write!(f, "receipt TLV: {e}"),
            ReceiptParseError::Text(e) => write!(f, "receipt text: {e}"),
            ReceiptParseError::NoId => f.write_str("receipt carries no message id"),
            ReceiptParseError::NoState => f.write_str("receipt carries no state"),
            ReceiptParseError::UnknownState => f.write_str("receipt state has no canonical meaning"),
            ReceiptParseError::Id(e) => write!(f, "receipt id: {e}"),
        }
    }
}

impl std::error::Error for ReceiptParseError {}

/// The canonical state of an SMPP `message_state`:
/// DELIVERED → delivered; UNDELIVERABLE, EXPIRED, DELETED (and 5.0 SKIPPED) → failed;
/// REJECTED → rejected; UNKNOWN → unknown; ACCEPTED, ENROUTE (and 5.0 SCHEDULED) →
/// buffered; unassigned values → `None`.
pub fn receipt_state_of(state: MessageState) -> Option<ReceiptState> {
    Some(match state {
        MessageState::Delivered => ReceiptState::Delivered,
        MessageState::Undeliverable | MessageState::Expired | MessageState::Deleted | MessageState::Skipped => {
            ReceiptState::Failed
        }
        MessageState::Rejected => ReceiptState::Rejected,
        MessageState::Unknown => ReceiptState::Unknown,
        MessageState::Accepted | MessageState::Enroute | MessageState::Scheduled => ReceiptState::Buffered,
        MessageState::Other(_) => return None,
    })
}

/// Reads a receipt from a `deliver_sm` (or an SME ack `submit_sm`): the `esm_class` says
/// whether it is one; the TLVs (`receipted_message_id`, `message_state`,
/// `network_error_code`) are read first, the Appendix-B text (parsed tolerantly) fills
/// what they lack. A user ack (0x10) is [`ReceiptState::Displayed`] whatever its state
/// says; a delivery ack (0x08) without a state is [`ReceiptState::Delivered`]. The id is
/// canonicalised for the system ([`canonical_id`] with [`IdOrigin::Receipt`]).
pub fn parse_smsc_receipt<'a>(
    sm: &SubmitSm<'a>,
    ids: IdCanonicalisation,
) -> Result<LegacyReceipt<'a>, ReceiptParseError> {
    let kind = match sm.esm_class.message_type() {
        MessageType::SmscDeliveryReceipt => ReceiptKind::SmscDeliveryReceipt,
        MessageType::SmeDeliveryAck => ReceiptKind::SmeDeliveryAck,
        MessageType::SmeUserAck => ReceiptKind::SmeUserAck,
        MessageType::IntermediateNotification => ReceiptKind::Intermediate,
        _ => return Err(ReceiptParseError::NotAReceipt),
    };
    let tlv_id = sm.tlvs.receipted_message_id().map_err(ReceiptParseError::Tlv)?;
    let tlv_state = sm.tlvs.message_state().map_err(ReceiptParseError::Tlv)?;
    let network_error = sm.tlvs.network_error_code().ok().flatten();
    // The text is read whenever present; it is only required for what the TLVs lack.
    let text = Receipt::parse(sm.payload());

    let (raw_id, id_source) = match (tlv_id, &text) {
        (Some(id), _) => (id, FieldSource::Tlv),
        (None, Ok(Receipt { id: Some(id), .. })) => (*id, FieldSource::Text),
        (None, Err(e)) => return Err(ReceiptParseError::Text(*e)),
        (None, Ok(_)) => return Err(ReceiptParseError::NoId),
    };
    let text_state = text.as_ref().ok().and_then(|r| r.stat);
    let (message_state, state_source) = match (tlv_state, text_state) {
        (Some(s), _) => (Some(s), FieldSource::Tlv),
        (None, Some(stat)) => (Some(stat.message_state().ok_or(ReceiptParseError::UnknownState)?), FieldSource::Text),
        (None, None) => (None, FieldSource::Kind),
    };
    let state = match (kind, message_state) {
        (ReceiptKind::SmeUserAck, _) => ReceiptState::Displayed,
        (_, Some(s)) => receipt_state_of(s).ok_or(ReceiptParseError::UnknownState)?,
        (ReceiptKind::SmeDeliveryAck, None) => ReceiptState::Delivered,
        (_, None) => {
            return Err(match text {
                Err(e) => ReceiptParseError::Text(e),
                Ok(_) => ReceiptParseError::NoState,
            })
        }
    };
    let state_source = if kind == ReceiptKind::SmeUserAck { FieldSource::Kind } else { state_source };
    let id = canonical_id(raw_id, ids, IdOrigin::Receipt).map_err(ReceiptParseError::Id)?;
    let (err, done_date) = match text {
        Ok(r) => (r.err, r.done_date),
        Err(_) => (None, None),
    };
    Ok(LegacyReceipt { kind, raw_id, id, id_source, state, message_state, state_source, network_error, err, done_date })
}

// ---------------------------------------------------------------------------------------
// Receipt → IMDN
// ---------------------------------------------------------------------------------------

/// What the caller stored for a message sent to a legacy system (a borrowed view of its
/// correlation record; [`CorrelationFacts::stored`] builds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCorrelation<'s> {
    /// The converged `imdn.Message-ID` (the IMDN's `<message-id>`).
    pub message_id: &'s str,
    /// The converged sender's URI (the IMDN's To, and its Request-URI without a route).
    pub sender: &'s str,
    /// The legacy recipient (the IMDN's From and `<recipient-uri>`).
    pub recipient: Msisdn,
    /// The dispositions iwf honours for the message.
    pub dispositions: Dispositions,
    /// The original CPIM `DateTime` (the IMDN's `<datetime>`).
    pub datetime: DateTime,
    /// The first `imdn.IMDN-Record-Route` URI, where the IMDN goes if present.
    pub imdn_record_route: Option<&'s str>,
}

/// Unique values the caller supplies for one IMDN request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImdnTokens<'t> {
    /// The IMDN's own `imdn.Message-ID`.
    pub message_id: &'t str,
    /// A unique token (``[A-Za-z0-9.!%*_+`'~-]``): the From tag, the Via branch
    /// (`z9hG4bK<seed>`) and the Call-ID (`<seed>@<local_sent_by>`).
    pub seed: &'t str,
}

/// Why an IMDN could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdnWriteError {
    /// The seed is empty or not a SIP token.
    BadSeed,
    /// The legacy recipient's URI could not be written.
    Address(AddressError),
    /// The IMDN XML could not be written (a text XML cannot carry).
    Xml(ImdnError),
    /// The CPIM body could not be written (a value CPIM cannot carry).
    Cpim(CpimError),
    /// The SIP request could not be written (a URI or value SIP cannot carry).
    Sip(sip::Error),
    /// `scratch` cannot hold the XML and the CPIM body.
    ScratchTooSmall,
    /// `out` cannot hold the SIP request.
    OutputTooSmall,
}

impl fmt::Display for ImdnWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdnWriteError::BadSeed => f.write_str("IMDN seed is not a SIP token"),
            ImdnWriteError::Address(e) => write!(f, "IMDN recipient URI: {e}"),
            ImdnWriteError::Xml(e) => write!(f, "IMDN XML: {e}"),
            ImdnWriteError::Cpim(e) => write!(f, "IMDN CPIM: {e}"),
            ImdnWriteError::Sip(e) => write!(f, "IMDN SIP: {e}"),
            ImdnWriteError::ScratchTooSmall => f.write_str("scratch buffer too small for the IMDN body"),
            ImdnWriteError::OutputTooSmall => f.write_str("output buffer too small for the IMDN request"),
        }
    }
}

impl std::error::Error for ImdnWriteError {}

/// An IMDN request written into `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenImdn {
    /// Octets of the SIP request.
    pub len: usize,
    /// The notification it carries.
    pub notification: Notification,
}

/// The notification for `state`, if the sender asked for it (send only what was asked):
/// delivered needs `positive-delivery`; failed / rejected / unknown (→ failed /
/// forbidden / error) need `negative-delivery`; buffered (→ processing/stored) needs
/// `processing`; displayed needs `display`.
pub fn notification_for(state: ReceiptState, asked: Dispositions) -> Option<Notification> {
    let (n, needs) = match state {
        ReceiptState::Delivered => (Notification::Delivery(DeliveryStatus::Delivered), Dispositions::POSITIVE_DELIVERY),
        ReceiptState::Failed => (Notification::Delivery(DeliveryStatus::Failed), Dispositions::NEGATIVE_DELIVERY),
        ReceiptState::Rejected => (Notification::Delivery(DeliveryStatus::Forbidden), Dispositions::NEGATIVE_DELIVERY),
        ReceiptState::Unknown => (Notification::Delivery(DeliveryStatus::Error), Dispositions::NEGATIVE_DELIVERY),
        ReceiptState::Buffered => (Notification::Processing(ProcessingStatus::Stored), Dispositions::PROCESSING),
        ReceiptState::Displayed => (Notification::Display(DisplayStatus::Displayed), Dispositions::DISPLAY),
    };
    asked.contains(needs).then_some(n)
}

fn is_seed_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Writes the SIP MESSAGE carrying the IMDN (RFC 5438 §7) for a message now in `state`
/// (one receipt's, or a [`PartAggregate`]'s), or returns `Ok(None)` when the sender did
/// not ask for that notification.
///
/// ```text
/// MESSAGE <first IMDN-Record-Route, else the sender> SIP/2.0
/// Via: SIP/2.0/<transport> <local_sent_by>;branch=z9hG4bK<seed>
/// Max-Forwards: 70
/// From: <sip:+<E.164>@<legacy_domain>;user=phone>;tag=<seed>
/// To: <sender>
/// Call-ID: <seed>@<local_sent_by>
/// CSeq: 1 MESSAGE
/// Content-Type: message/cpim
///
/// From: <legacy recipient>  To: <sender>  NS: imdn  imdn.Message-ID: <tokens.message_id>
/// DateTime: <now>           (no Disposition-Notification: an IMDN never asks for one)
/// Content-Type: message/imdn+xml  Content-Disposition: notification
/// <imdn><message-id>original</message-id><datetime>original</datetime>
///   <recipient-uri>legacy recipient</recipient-uri><…-notification>…</imdn>
/// ```
///
/// `scratch` holds the XML and the CPIM body (1 KiB is plenty for ordinary URIs).
pub fn imdn_for_state(
    state: ReceiptState,
    stored: &StoredCorrelation<'_>,
    side: &ConvergedSide<'_>,
    tokens: &ImdnTokens<'_>,
    now: i64,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<Option<WrittenImdn>, ImdnWriteError> {
    let Some(notification) = notification_for(state, stored.dispositions) else {
        return Ok(None);
    };
    if tokens.seed.is_empty() || !tokens.seed.bytes().all(is_seed_char) {
        return Err(ImdnWriteError::BadSeed);
    }
    let mut uri_buf = [0u8; 256];
    let n = write_sip_uri(&LegacyParty::Number(stored.recipient), side.legacy_domain, &mut uri_buf)
        .map_err(ImdnWriteError::Address)?;
    let legacy_uri = uri_buf.get(..n).unwrap_or(&[]);
    let legacy_uri_str =
        core::str::from_utf8(legacy_uri).map_err(|_| ImdnWriteError::Address(AddressError::BadCharacter))?;

    let imdn = Imdn {
        message_id: XmlText::plain(stored.message_id.as_bytes()),
        datetime: stored.datetime,
        recipient_uri: Some(XmlText::plain(legacy_uri)),
        original_recipient_uri: None,
        subject: None,
        notification,
    };
    // The XML first, at the start of scratch; the CPIM body (which embeds it) after it.
    let xml_len = imdn.emit(scratch).map_err(|e| match e {
        ImdnError::BufferTooSmall => ImdnWriteError::ScratchTooSmall,
        e => ImdnWriteError::Xml(e),
    })?;
    let (xml_buf, cpim_buf) = scratch.split_at_mut(xml_len.min(scratch.len()));
    let cpim = CpimRepr {
        from: cpim::CpimAddress::new(b"", legacy_uri),
        to: cpim::CpimAddress::new(b"", stored.sender.as_bytes()),
        datetime: DateTime::from_unix(now),
        message_id: tokens.message_id.as_bytes(),
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: xml_buf,
    };
    let cpim_len = cpim.emit(cpim_buf).map_err(|e| match e {
        CpimError::BufferTooSmall => ImdnWriteError::ScratchTooSmall,
        e => ImdnWriteError::Cpim(e),
    })?;
    let body = cpim_buf.get(..cpim_len).unwrap_or(&[]);

    let sip_err = |e: sip::Error| match e {
        sip::Error::BufferTooSmall => ImdnWriteError::OutputTooSmall,
        e => ImdnWriteError::Sip(e),
    };
    let ruri = stored.imdn_record_route.unwrap_or(stored.sender);
    let mut w = MessageWriter::request(out, Method::Message, ruri).map_err(sip_err)?;
    w.header_fmt(
        "Via",
        format_args!("SIP/2.0/{} {};branch=z9hG4bK{}", side.transport, side.local_sent_by, tokens.seed),
    )
    .map_err(sip_err)?;
    w.header_u32("Max-Forwards", 70).map_err(sip_err)?;
    w.header_fmt("From", format_args!("<{}>;tag={}", legacy_uri_str, tokens.seed)).map_err(sip_err)?;
    w.header_fmt("To", format_args!("<{}>", stored.sender)).map_err(sip_err)?;
    w.header_fmt("Call-ID", format_args!("{}@{}", tokens.seed, side.local_sent_by)).map_err(sip_err)?;
    w.header("CSeq", "1 MESSAGE").map_err(sip_err)?;
    w.header("Content-Type", "message/cpim").map_err(sip_err)?;
    let len = w.finish(body).map_err(sip_err)?;
    Ok(Some(WrittenImdn { len, notification }))
}

/// [`imdn_for_state`] for one receipt's state: for a message of one part whose
/// duplicates and stale receipts the caller already absorbed (a
/// [`ReceiptRecord`] per message, or `PartAggregate::new(1)`); concatenated messages go
/// through [`PartAggregate`] and then [`imdn_for_state`].
pub fn receipt_to_imdn(
    receipt: &LegacyReceipt<'_>,
    stored: &StoredCorrelation<'_>,
    side: &ConvergedSide<'_>,
    tokens: &ImdnTokens<'_>,
    now: i64,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<Option<WrittenImdn>, ImdnWriteError> {
    imdn_for_state(receipt.state, stored, side, tokens, now, scratch, out)
}

// ---------------------------------------------------------------------------------------
// Aggregation of concatenated parts (pitfall 6)
// ---------------------------------------------------------------------------------------

/// Why a part receipt cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateError {
    /// The part number is 0 or above the message's part count.
    PartOutOfRange {
        /// The part (1-based).
        part: u8,
        /// Parts of the message.
        total: u8,
    },
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateError::PartOutOfRange { part, total } => {
                write!(f, "receipt for part {part} of a {total}-part message")
            }
        }
    }
}

impl std::error::Error for AggregateError {}

/// The receipts of one concatenated message (≤ 255 parts), aggregated into the one IMDN
/// the converged sender gets: delivered when every part is
/// delivered; failed (with the first final failure's kind) as soon as any part finally
/// fails; buffered once while parts are buffered and none failed; displayed once every
/// part was displayed (SME user acks). A final state is never replaced, duplicates are
/// absorbed, and nothing follows a final delivery-track state except a display. Fixed
/// size (about 300 octets), no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartAggregate {
    total: u8,
    parts: [Option<ReceiptState>; MAX_SEGMENTS],
    displayed: [u64; 4],
    sent: ReceiptRecord,
}

impl PartAggregate {
    /// An aggregate for a message of `total` parts (1..=255; 0 is taken as 1).
    pub fn new(total: u8) -> PartAggregate {
        PartAggregate {
            total: total.max(1),
            parts: [None; MAX_SEGMENTS],
            displayed: [0; 4],
            sent: ReceiptRecord::default(),
        }
    }

    /// Parts of the message.
    pub fn total(&self) -> u8 {
        self.total
    }

    /// The delivery-track state of part `part` (1-based).
    pub fn part(&self, part: u8) -> Option<ReceiptState> {
        let i = usize::from(part).checked_sub(1)?;
        if i >= usize::from(self.total) {
            return None;
        }
        self.parts.get(i).copied().flatten()
    }

    /// What was already reported for the whole message.
    pub fn reported(&self) -> ReceiptRecord {
        self.sent
    }

    fn displayed_bit(&self, i: usize) -> bool {
        self.displayed.get(i / 64).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Applies the receipt of part `part` (1-based). Returns the state to send one IMDN
    /// for now, or `None` when the receipt changes nothing the sender should hear
    /// (a duplicate, a stale receipt, or a part while others are still open).
    pub fn apply(&mut self, part: u8, state: ReceiptState) -> Result<Option<ReceiptState>, AggregateError> {
        let total = self.total;
        let i = usize::from(part)
            .checked_sub(1)
            .filter(|&i| i < usize::from(total))
            .ok_or(AggregateError::PartOutOfRange { part, total })?;
        let mut record =
            ReceiptRecord { delivery: self.parts.get(i).copied().flatten(), displayed: self.displayed_bit(i) };
        if record.apply(state) != Transition::Advance {
            return Ok(None);
        }
        if let Some(slot) = self.parts.get_mut(i) {
            *slot = record.delivery;
        }
        if record.displayed {
            if let Some(w) = self.displayed.get_mut(i / 64) {
                *w |= 1u64 << (i % 64);
            }
        }
        let whole = if state == ReceiptState::Displayed {
            let all = (0..usize::from(total)).all(|j| self.displayed_bit(j));
            all.then_some(ReceiptState::Displayed)
        } else {
            aggregate(self.parts.get(..usize::from(total)).unwrap_or(&[]))
        };
        match whole {
            Some(s) if self.sent.apply(s) == Transition::Advance => Ok(Some(s)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interwork::address::NumberingPlan;
    use crate::wire::cpim::EMPTY_HEADER;
    use crate::wire::imdn::Imdn as ImdnDoc;
    use crate::wire::sip::{parse_datagram, Header};
    use crate::wire::smpp::TlvWriter;
    use crate::wire::sms::{ConcatInfo, DataCoding, Udh};
    use proptest::prelude::*;

    const FIXTURE: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sip/message_cpim.sip"));

    fn exchange(direction: BindDirection, enc: Encoding, concat: Concatenation, user_ack: bool) -> Exchange<'static> {
        Exchange {
            system: 1,
            name: "smsc-a",
            direction,
            default_encoding: enc,
            user_ack,
            concatenation: concat,
            ids: IdCanonicalisation::Folded,
            numbering: NumberingPlan { country_code: Some("44"), trunk_prefix: "0" },
        }
    }

    fn smsc(concat: Concatenation) -> Exchange<'static> {
        exchange(BindDirection::IwfBindsToLegacy, Encoding::Gsm7, concat, false)
    }

    const SIDE: ConvergedSide<'static> = ConvergedSide {
        legacy_domain: "iwf.ims.lab",
        converged_domain: "ims.lab",
        local_sent_by: "198.18.2.2:5060",
        transport: "UDP",
    };

    const PARAMS: SubmitParams =
        SubmitParams { reference: 0x1234, first_sequence: 7, sender_policy: SenderPolicy::NumberOnly };

    fn sip_request(method: &str, ruri: &str, from: &str, ct: Option<&str>, body: &[u8]) -> Vec<u8> {
        let ct = ct.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
        let mut v = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c1@198.18.2.1\r\nCSeq: 1 {method}\r\n{ct}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    const REQUEST_HEADERS: &str = "imdn.Message-ID: m-0001\r\nDateTime: 2024-05-01T12:00:00Z\r\n";

    fn cpim_body(from: &str, extra: &str, inner_ct: &str, text: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "From: <{from}>\r\nTo: <sip:+447000200001@ims.lab>\r\nNS: imdn <urn:ietf:params:imdn>\r\n{extra}\r\nContent-Type: {inner_ct}\r\n\r\n"
        )
        .into_bytes();
        v.extend_from_slice(text);
        v
    }

    fn cpim_message(text: &str, dispositions: Option<&str>) -> Vec<u8> {
        let mut extra = REQUEST_HEADERS.to_string();
        if let Some(d) = dispositions {
            extra += &format!("imdn.Disposition-Notification: {d}\r\n");
        }
        let body = cpim_body("sip:+447000100001@ims.lab", &extra, "text/plain;charset=utf-8", text.as_bytes());
        sip_request(
            "MESSAGE",
            "sip:+447000200001@iwf.ims.lab;user=phone",
            "sip:+447000100001@ims.lab",
            Some("message/cpim"),
            &body,
        )
    }

    /// What a batch holds, decoded with the real SMPP / SMS codecs.
    #[derive(Debug)]
    struct Decoded {
        text: String,
        commands: Vec<CommandId>,
        concat: Vec<Option<ConcatInfo>>,
        short_lens: Vec<usize>,
        esm: Vec<u8>,
        payload_tlv: bool,
    }

    fn decode(batch: &SubmitBatch<'_>, out: &[u8], ex: &Exchange<'_>) -> Decoded {
        let mut d = Decoded {
            text: String::new(),
            commands: vec![],
            concat: vec![],
            short_lens: vec![],
            esm: vec![],
            payload_tlv: false,
        };
        let mut all = Vec::new();
        let mut expect_offset = 0usize;
        for (i, (seq, bytes)) in batch.pdus(out).enumerate() {
            assert_eq!(batch.span(i).unwrap().0, expect_offset);
            expect_offset += bytes.len();
            assert_eq!(batch.sequence(i), Some(seq));
            let pdu = Pdu::parse(bytes).unwrap();
            assert_eq!(pdu.sequence_number, seq);
            assert_eq!(pdu.command_id(), batch.command_id);
            d.commands.push(pdu.command_id());
            let sm = match pdu.body {
                Body::SubmitSm(sm) | Body::DeliverSm(sm) => sm,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(sm.registered_delivery, batch.registered_delivery);
            assert_eq!(sm.data_coding, batch.data_coding);
            assert_eq!(sm.destination.ton, 1);
            assert_eq!(sm.destination.npi, 1);
            assert_eq!(sm.destination.addr, batch.facts.recipient.digits().as_bytes());
            d.esm.push(sm.esm_class.0);
            d.short_lens.push(sm.short_message.len());
            let (concat, payload) = if sm.esm_class.udhi() {
                let (udh, rest) = Udh::parse(sm.short_message).unwrap();
                (udh.concat(), rest)
            } else if let Some(r) = sm.tlvs.sar_msg_ref_num().unwrap() {
                let info = ConcatInfo::from_sar(
                    r,
                    sm.tlvs.sar_total_segments().unwrap().unwrap(),
                    sm.tlvs.sar_segment_seqnum().unwrap().unwrap(),
                )
                .unwrap();
                (Some(info), sm.short_message)
            } else {
                if sm.short_message.is_empty() {
                    d.payload_tlv = true;
                }
                (None, sm.payload())
            };
            d.concat.push(concat);
            all.extend_from_slice(payload);
        }
        assert_eq!(expect_offset, batch.len);
        assert_eq!(d.commands.len(), usize::from(batch.count));
        let enc = DataCoding::from_u8(batch.data_coding).text_encoding(ex.default_encoding).unwrap();
        assert_eq!(enc, batch.encoding);
        let mut buf = vec![0u8; all.len() * 4 + 4];
        let n = enc.decode(&all, &mut buf).unwrap();
        d.text = String::from_utf8(buf[..n].to_vec()).unwrap();
        // Concatenation values are consistent: same reference and total, parts 1..=N in order.
        if batch.count > 1 {
            for (i, c) in d.concat.iter().enumerate() {
                let c = c.expect("every part of a concatenated message carries concat info");
                assert_eq!(usize::from(c.seq), i + 1);
                assert_eq!(c.total, batch.count);
            }
        } else {
            assert_eq!(d.concat, vec![None]);
        }
        d
    }

    fn convert(raw: &[u8], ex: &Exchange<'_>) -> Result<(Decoded, u8, u8, Option<String>, Dispositions), SubmitError> {
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(raw, &mut headers).unwrap();
        let mut scratch = vec![0u8; 2 * raw.len() + 16];
        let mut out = vec![0u8; 64 * 1024];
        let batch = sip_to_submit(&msg, ex, PARAMS, &mut scratch, &mut out)?;
        let d = decode(&batch, &out, ex);
        Ok((
            d,
            batch.registered_delivery.0,
            batch.data_coding,
            batch.facts.message_id.map(str::to_string),
            batch.facts.dispositions,
        ))
    }

    fn round_trip(text: &str, ex: &Exchange<'_>) -> Decoded {
        let (d, ..) = convert(&cpim_message(text, None), ex).unwrap();
        assert_eq!(d.text, text);
        d
    }

    #[test]
    fn fixture_becomes_one_submit_sm_with_facts() {
        let ex = smsc(Concatenation::Udh8);
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(FIXTURE, &mut headers).unwrap();
        let mut scratch = [0u8; 256];
        let mut out = [0u8; 512];
        let batch = sip_to_submit(&msg, &ex, PARAMS, &mut scratch, &mut out).unwrap();
        assert_eq!(batch.count, 1);
        assert_eq!(batch.command_id, CommandId::SubmitSm);
        assert_eq!(batch.registered_delivery, RegisteredDelivery(0x01));
        assert_eq!(batch.data_coding, 0);
        let f = batch.facts;
        assert_eq!(f.message_id, Some("0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p"));
        assert_eq!(f.sender, "sip:+447000100001@iwf.ims.lab");
        assert_eq!(f.recipient.digits(), "447000200001");
        assert_eq!(f.dispositions, Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY);
        assert_eq!(f.datetime, Some(DateTime::parse(b"2024-05-01T12:00:00.000Z").unwrap()));
        assert_eq!(f.imdn_record_route, None);
        assert_eq!(f.segments, 1);
        let pdu = Pdu::parse(&out[..batch.len]).unwrap();
        assert_eq!(pdu.sequence_number, 7);
        let Body::SubmitSm(sm) = pdu.body else { panic!("not submit_sm") };
        assert_eq!(sm.short_message, b"Hello world!");
        assert_eq!((sm.source.ton, sm.source.npi, sm.source.addr), (1, 1, &b"447000100001"[..]));
        assert_eq!(sm.esm_class, EsmClass::DEFAULT);
        assert!(sm.tlvs.is_empty());
        let stored = f.stored().unwrap();
        assert_eq!(stored.message_id, "0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p");
    }

    #[test]
    fn gsm7_extension_chars_udh8_never_split_an_escape() {
        let ex = smsc(Concatenation::Udh8);
        // 152 plain septets then '€' (ESC + code): the escape pair straddles 153.
        let text = format!("{}€{}[]{{}}~^|\\ end", "a".repeat(152), "b".repeat(140));
        let d = round_trip(&text, &ex);
        // 152 + 2 + 140 + 8 × 2 + 4 = 314 septets: three parts of ≤ 153.
        assert_eq!(d.commands.len(), 3);
        assert!(d.commands.iter().all(|c| *c == CommandId::SubmitSm));
        assert!(d.esm.iter().all(|e| *e == 0x40), "UDHI set: {:?}", d.esm);
        let c = d.concat[0].unwrap();
        assert_eq!(c.reference, 0x34, "8-bit reference is the low byte");
        assert!(!c.ref_16bit);
        // First part: UDH (6) + 152 septets (the escape moved to part 2).
        assert_eq!(d.short_lens[0], 6 + 152);
        assert!(d.short_lens.iter().all(|&l| l <= 6 + 153));
    }

    #[test]
    fn ucs2_emoji_udh16_keeps_surrogate_pairs() {
        let ex = smsc(Concatenation::Udh16);
        let text = format!("x{}", "😀".repeat(80));
        let d = round_trip(&text, &ex);
        assert_eq!(d.commands.len(), 3); // 161 units / 66
        assert!(d.concat.iter().all(|c| c.unwrap().ref_16bit && c.unwrap().reference == 0x1234));
        assert!(d.short_lens.iter().all(|&l| l <= 7 + 132 && (l - 7) % 2 == 0));
        let (_, _, dc, _, _) = convert(&cpim_message(&text, None), &ex).unwrap();
        assert_eq!(dc, 8);
    }

    #[test]
    fn latin1_preference_and_fallbacks() {
        let latin = exchange(BindDirection::IwfBindsToLegacy, Encoding::Latin1, Concatenation::Udh8, false);
        let (d, _, dc, _, _) = convert(&cpim_message("café señor ½", None), &latin).unwrap();
        assert_eq!((dc, d.text.as_str()), (3, "café señor ½"));
        // Not Latin-1: UCS-2.
        let (_, _, dc, _, _) = convert(&cpim_message("café 😀", None), &latin).unwrap();
        assert_eq!(dc, 8);
        // A GSM-7 system: é is in the GSM basic table, ½ is not.
        let gsm = smsc(Concatenation::Udh8);
        assert_eq!(convert(&cpim_message("café", None), &gsm).unwrap().2, 0);
        assert_eq!(convert(&cpim_message("½", None), &gsm).unwrap().2, 8);
        // Latin-1 long text over UDH8: 134 octets per part.
        let d = round_trip(&"é".repeat(300), &latin);
        assert_eq!(d.short_lens, vec![6 + 134, 6 + 134, 6 + 32]);
    }

    #[test]
    fn sar_and_message_payload() {
        let text = "0123456789".repeat(40);
        let sar = smsc(Concatenation::Sar);
        let d = round_trip(&text, &sar);
        assert_eq!(d.short_lens, vec![160, 160, 80]);
        assert!(d.esm.iter().all(|&e| e == 0), "no UDHI with SAR");
        assert!(d.concat.iter().all(|c| c.unwrap().reference == 0x1234));

        let payload = smsc(Concatenation::MessagePayload);
        let d = round_trip(&text, &payload);
        assert_eq!(d.commands.len(), 1);
        assert!(d.payload_tlv);
        // Short text: in short_message.
        let d = round_trip("short", &payload);
        assert!(!d.payload_tlv);
        assert_eq!(d.short_lens, vec![5]);
    }

    #[test]
    fn no_concatenation_refuses_long_text() {
        let none = smsc(Concatenation::None);
        round_trip(&"a".repeat(160), &none);
        let e = convert(&cpim_message(&"a".repeat(161), None), &none).unwrap_err();
        assert_eq!(e, SubmitError::TooLong { units: 161, capacity: 160 });
        assert_eq!(e.sip_status().0, 413);
        let e = convert(&cpim_message(&"a".repeat(153 * 255 + 1), None), &smsc(Concatenation::Udh8)).unwrap_err();
        assert_eq!(e, SubmitError::TooManySegments);
    }

    #[test]
    fn esme_bound_to_iwf_gets_deliver_sm() {
        let ex = exchange(BindDirection::LegacyBindsToIwf, Encoding::Gsm7, Concatenation::Udh8, false);
        let d = round_trip(&"z".repeat(200), &ex);
        assert_eq!(d.commands, vec![CommandId::DeliverSm, CommandId::DeliverSm]);
    }

    #[test]
    fn registered_delivery_table() {
        let cases: [(Option<&str>, bool, u8, Dispositions); 9] = [
            (
                Some("positive-delivery, negative-delivery"),
                false,
                0x01,
                Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY,
            ),
            (Some("negative-delivery"), false, 0x02, Dispositions::NEGATIVE_DELIVERY),
            (Some("positive-delivery"), false, 0x01, Dispositions::POSITIVE_DELIVERY),
            (Some("display"), true, 0x08, Dispositions::DISPLAY),
            (Some("display"), false, 0x00, Dispositions::empty()),
            (Some("positive-delivery, display"), true, 0x09, Dispositions::POSITIVE_DELIVERY | Dispositions::DISPLAY),
            (Some("negative-delivery, display, x-unknown"), false, 0x02, Dispositions::NEGATIVE_DELIVERY),
            (Some("processing"), false, 0x10, Dispositions::PROCESSING),
            (None, true, 0x00, Dispositions::empty()),
        ];
        for (asked, user_ack, rd, honoured) in cases {
            let ex = exchange(BindDirection::IwfBindsToLegacy, Encoding::Gsm7, Concatenation::Udh8, user_ack);
            let (_, got, _, id, disp) = convert(&cpim_message("hi", asked), &ex).unwrap();
            assert_eq!((got, disp), (rd, honoured), "{asked:?} user_ack={user_ack}");
            assert_eq!(id.as_deref(), Some("m-0001"));
        }
        // No imdn.Message-ID, or no DateTime: nothing can be correlated, nothing asked.
        for extra in ["DateTime: 2024-05-01T12:00:00Z\r\n", "imdn.Message-ID: m-1\r\n"] {
            let body = cpim_body(
                "sip:+447000100001@ims.lab",
                &format!("{extra}imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n"),
                "text/plain",
                b"hi",
            );
            let raw = sip_request("MESSAGE", "tel:+447000200001", "sip:a@b", Some("message/cpim"), &body);
            let mut headers = [Header::EMPTY; 32];
            let msg = parse_datagram(&raw, &mut headers).unwrap();
            let batch =
                sip_to_submit(&msg, &smsc(Concatenation::Udh8), PARAMS, &mut [0u8; 64], &mut [0u8; 256]).unwrap();
            assert_eq!(batch.registered_delivery, RegisteredDelivery::NONE);
            assert!(batch.facts.dispositions.is_empty());
            assert!(batch.facts.requested.contains(Dispositions::POSITIVE_DELIVERY));
            assert!(batch.facts.stored().is_none());
        }
    }

    fn convert_err(raw: &[u8]) -> SubmitError {
        convert(raw, &smsc(Concatenation::Udh8)).unwrap_err()
    }

    #[test]
    fn content_type_errors() {
        let r = "tel:+447000200001";
        let f = "tel:+447000100001";
        let cases: [(Option<&str>, Vec<u8>, SubmitError); 9] = [
            (Some("text/html"), b"<p>hi</p>".to_vec(), SubmitError::UnsupportedMediaType),
            (Some("text/plain;charset=iso-8859-1"), b"hi".to_vec(), SubmitError::UnsupportedCharset),
            (
                Some("message/cpim"),
                cpim_body(f, REQUEST_HEADERS, "text/html", b"<p/>"),
                SubmitError::UnsupportedMediaType,
            ),
            (
                Some("message/cpim"),
                cpim_body(f, REQUEST_HEADERS, "text/plain; charset=\"windows-1252\"", b"x"),
                SubmitError::UnsupportedCharset,
            ),
            (None, b"hi".to_vec(), SubmitError::MissingContentType),
            (Some("text/plain"), b"".to_vec(), SubmitError::EmptyText),
            (Some("message/cpim"), cpim_body(f, REQUEST_HEADERS, "text/plain", b""), SubmitError::EmptyText),
            (Some("text/plain"), b"\xff\xfe".to_vec(), SubmitError::InvalidUtf8),
            (Some("message/cpim"), b"garbage without blank line".to_vec(), SubmitError::BadCpim(CpimError::Truncated)),
        ];
        for (ct, body, want) in cases {
            let e = convert_err(&sip_request("MESSAGE", r, f, ct, &body));
            assert_eq!(e, want, "{ct:?}");
            let (code, _) = e.sip_status();
            assert_eq!(e.accept().is_some(), code == 415);
            assert!(code == 415 || code == 400, "{e}: {code}");
        }
        assert_eq!(SubmitError::UnsupportedMediaType.accept(), Some("text/plain, message/cpim"));
        // Plain text/plain with the SIP From as sender works.
        let (d, rd, ..) = convert(
            &sip_request("MESSAGE", r, f, Some("text/plain; charset=UTF-8"), b"hello"),
            &smsc(Concatenation::Udh8),
        )
        .unwrap();
        assert_eq!((d.text.as_str(), rd), ("hello", 0));
    }

    #[test]
    fn imdn_is_not_a_text_message() {
        let xml = b"<?xml version=\"1.0\"?><imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>x</message-id>\
<datetime>2024-05-01T12:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>";
        let f = "sip:+447000100001@ims.lab";
        let wrapped = cpim_body(
            f,
            "imdn.Message-ID: n1\r\nDateTime: 2024-05-01T12:00:01Z\r\n",
            "message/imdn+xml\r\nContent-Disposition: notification",
            xml,
        );
        let e = convert_err(&sip_request("MESSAGE", "tel:+447000200001", f, Some("message/cpim"), &wrapped));
        assert_eq!(e, SubmitError::IsImdn);
        let e = convert_err(&sip_request("MESSAGE", "tel:+447000200001", f, Some("message/imdn+xml"), xml));
        assert_eq!(e, SubmitError::IsImdn);
        // Content-Disposition: notification alone marks it too.
        let odd = cpim_body(f, REQUEST_HEADERS, "text/plain\r\nContent-Disposition: notification", b"x");
        assert_eq!(
            convert_err(&sip_request("MESSAGE", "tel:+447000200001", f, Some("message/cpim"), &odd)),
            SubmitError::IsImdn
        );
    }

    #[test]
    fn request_uri_and_method_errors() {
        let f = "tel:+447000100001";
        let cases: [(&str, &str, SubmitError, u16); 7] = [
            ("MESSAGE", "sip:alice@ims.lab", SubmitError::NotAPhoneNumber, 404),
            ("MESSAGE", "tel:7000;phone-context=+44", SubmitError::IncompleteNumber(AddressError::UnsupportedUri), 484),
            (
                "MESSAGE",
                "sip:7000@ims.lab;user=phone",
                SubmitError::IncompleteNumber(AddressError::UnsupportedUri),
                484,
            ),
            ("MESSAGE", "tel:+1234567890123456", SubmitError::IncompleteNumber(AddressError::TooLong), 484),
            ("MESSAGE", "sip:+44x1@ims.lab", SubmitError::IncompleteNumber(AddressError::BadCharacter), 484),
            ("MESSAGE", "mailto:bob@example.com", SubmitError::UnsupportedUriScheme, 416),
            ("INFO", "tel:+447000200001", SubmitError::NotMessage, 405),
        ];
        for (method, ruri, want, code) in cases {
            let e = convert_err(&sip_request(method, ruri, f, Some("text/plain"), b"hi"));
            assert_eq!((e, e.sip_status().0), (want, code), "{ruri}");
        }
        // Accepted forms.
        for ruri in
            ["tel:+44-7000-200001", "sip:+447000200001@iwf.ims.lab", "sips:+447000200001;isub=1@x.lab;user=phone"]
        {
            let (d, ..) =
                convert(&sip_request("MESSAGE", ruri, f, Some("text/plain"), b"ok"), &smsc(Concatenation::Udh8))
                    .unwrap();
            assert_eq!(d.text, "ok");
        }
    }

    #[test]
    fn sender_policy() {
        let body = cpim_body("sip:alice@ims.lab", REQUEST_HEADERS, "text/plain", b"hi");
        let raw = sip_request("MESSAGE", "tel:+447000200001", "sip:alice@ims.lab", Some("message/cpim"), &body);
        let e = convert_err(&raw);
        assert_eq!((e, e.sip_status().0), (SubmitError::SenderNotANumber, 403));
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(&raw, &mut headers).unwrap();
        let params = SubmitParams { sender_policy: SenderPolicy::AlphanumericFallback, ..PARAMS };
        let mut out = [0u8; 256];
        let batch = sip_to_submit(&msg, &smsc(Concatenation::Udh8), params, &mut [0u8; 16], &mut out).unwrap();
        let Body::SubmitSm(sm) = Pdu::parse(&out[..batch.len]).unwrap().body else { panic!() };
        assert_eq!((sm.source.ton, sm.source.npi, sm.source.addr), (5, 0, &b"alice"[..]));
        // Too long for an alphanumeric address: still refused.
        let body = cpim_body("sip:a-very-long-user-name-indeed@ims.lab", REQUEST_HEADERS, "text/plain", b"hi");
        let raw = sip_request("MESSAGE", "tel:+447000200001", "sip:x@y", Some("message/cpim"), &body);
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(&raw, &mut headers).unwrap();
        assert_eq!(
            sip_to_submit(&msg, &smsc(Concatenation::Udh8), params, &mut [0u8; 16], &mut out).unwrap_err(),
            SubmitError::SenderNotANumber
        );
        // A malformed number.
        let body = cpim_body("tel:+4470001000019999", REQUEST_HEADERS, "text/plain", b"hi");
        let e = convert_err(&sip_request("MESSAGE", "tel:+447000200001", "sip:x@y", Some("message/cpim"), &body));
        assert_eq!(e, SubmitError::BadSender(AddressError::TooLong));
    }

    #[test]
    fn small_buffers_are_errors() {
        let raw = cpim_message(&"€uro".repeat(100), Some("positive-delivery"));
        let ex = smsc(Concatenation::Udh16);
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(&raw, &mut headers).unwrap();
        let mut scratch = [0u8; 1024];
        let mut big = [0u8; 4096];
        let full = sip_to_submit(&msg, &ex, PARAMS, &mut scratch, &mut big).unwrap();
        for n in 0..full.len {
            let mut out = vec![0u8; n];
            assert_eq!(
                sip_to_submit(&msg, &ex, PARAMS, &mut scratch, &mut out).unwrap_err(),
                SubmitError::OutputTooSmall,
                "out {n}"
            );
        }
        // "€uro" is 5 septets: the scratch holds exactly the 500 encoded septets.
        sip_to_submit(&msg, &ex, PARAMS, &mut [0u8; 500], &mut big).unwrap();
        for n in 0..500 {
            let mut s = vec![0u8; n];
            assert_eq!(
                sip_to_submit(&msg, &ex, PARAMS, &mut s, &mut big).unwrap_err(),
                SubmitError::ScratchTooSmall,
                "scratch {n}"
            );
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert_eq!(next_sequence(1), 2);
        assert_eq!(next_sequence(MAX_SEQUENCE), 1);
        assert_eq!(next_sequence(0), 1);
        let raw = cpim_message(&"a".repeat(400), None);
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(&raw, &mut headers).unwrap();
        let mut out = [0u8; 2048];
        let params = SubmitParams { first_sequence: MAX_SEQUENCE - 1, ..PARAMS };
        let batch = sip_to_submit(&msg, &smsc(Concatenation::Udh8), params, &mut [0u8; 512], &mut out).unwrap();
        let seqs: Vec<u32> = batch.pdus(&out).map(|(s, _)| s).collect();
        assert_eq!(seqs, vec![MAX_SEQUENCE - 1, MAX_SEQUENCE, 1]);
        assert_eq!(batch.sequence(3), None);
        assert_eq!(batch.span(3), None);
    }

    const ROUTE_FIXTURE: &[u8] =
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/interwork/c2l-message-route.sip"));

    /// Compact headers, a tel: Request-URI, UCS-2 text, display asked, two
    /// IMDN-Record-Routes and a DateTime with an offset and a fraction: the facts, then a
    /// user ack answered with a display notification along the first route.
    #[test]
    fn route_fixture_display_loop() {
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(ROUTE_FIXTURE, &mut headers).unwrap();
        let mut scratch = [0u8; 256];
        let mut out = [0u8; 512];
        let no_ack = smsc(Concatenation::Udh8);
        let batch = sip_to_submit(&msg, &no_ack, PARAMS, &mut scratch, &mut out).unwrap();
        assert_eq!(batch.registered_delivery, RegisteredDelivery(0x01));
        assert_eq!(batch.facts.dispositions, Dispositions::POSITIVE_DELIVERY);
        assert_eq!(batch.facts.requested, Dispositions::POSITIVE_DELIVERY | Dispositions::DISPLAY);

        let ex = exchange(BindDirection::LegacyBindsToIwf, Encoding::Gsm7, Concatenation::Udh8, true);
        let batch = sip_to_submit(&msg, &ex, PARAMS, &mut scratch, &mut out).unwrap();
        let d = decode(&batch, &out, &ex);
        assert_eq!(d.text, "Grüße aus London 😀 — bis bald!");
        assert_eq!((batch.data_coding, batch.count, batch.command_id), (8, 1, CommandId::DeliverSm));
        assert_eq!(batch.registered_delivery, RegisteredDelivery(0x09));
        let f = batch.facts;
        assert_eq!(f.message_id, Some("Xy9-77aQ"));
        assert_eq!(f.sender, "sip:+447000100001@ims.lab;user=phone");
        assert_eq!(f.recipient.digits(), "447000300042");
        assert_eq!(f.imdn_record_route, Some("sip:imdn@as1.ims.lab;lr"));
        let dt = f.datetime.unwrap();
        assert_eq!((dt.unix_seconds(), dt.nanos(), dt.offset_minutes()), (1_714_564_800, 250_000_000, 120));

        // The ESME answers with a user ack (submit_sm esm_class 0x10) for iwf's id.
        let area = tlv_area(Some(b"IWF00017"), None, None);
        let ack = receipt_pdu(0x10, &area, b"read");
        let r = read_receipt(&ack, IdCanonicalisation::Folded).unwrap();
        assert_eq!(r.id.as_str(), "iwf00017");
        let st = f.stored().unwrap();
        let mut s2 = [0u8; 2048];
        let mut o2 = [0u8; 2048];
        let w = receipt_to_imdn(&r, &st, &SIDE, &TOKENS, NOW, &mut s2, &mut o2).unwrap().unwrap();
        assert_eq!(w.notification, Notification::Display(DisplayStatus::Displayed));
        let mut h = [Header::EMPTY; 16];
        let m = parse_datagram(&o2[..w.len], &mut h).unwrap();
        assert_eq!(m.request_line().unwrap().parse_uri().unwrap().as_str(), "sip:imdn@as1.ims.lab;lr");
        assert_eq!(m.to().unwrap().uri.as_str(), "sip:+447000100001@ims.lab;user=phone");
        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).unwrap();
        let doc = ImdnDoc::parse(c.content).unwrap();
        assert!(doc.message_id.eq_literal(b"Xy9-77aQ"));
        assert_eq!(doc.datetime, dt);
        assert!(doc.recipient_uri.unwrap().eq_literal(b"sip:+447000300042@iwf.ims.lab;user=phone"));
    }

    // ---- receipts ----------------------------------------------------------------------

    fn tlv_area(id: Option<&[u8]>, state: Option<MessageState>, net: Option<NetworkErrorCode>) -> Vec<u8> {
        let mut area = [0u8; 128];
        let mut w = TlvWriter::new(&mut area);
        if let Some(id) = id {
            w.receipted_message_id(id).unwrap();
        }
        if let Some(s) = state {
            w.message_state(s).unwrap();
        }
        if let Some(n) = net {
            w.network_error_code(n).unwrap();
        }
        w.as_bytes().to_vec()
    }

    fn receipt_pdu(esm: u8, tlvs: &[u8], text: &[u8]) -> Vec<u8> {
        let sm = SubmitSm {
            source: Address::international(b"447000200001"),
            destination: Address::international(b"447000100001"),
            esm_class: EsmClass(esm),
            short_message: text,
            tlvs: Tlvs::Raw(tlvs),
            ..SubmitSm::default()
        };
        let mut buf = vec![0u8; 1024];
        let n = Pdu::new(9, Body::DeliverSm(sm)).emit(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn read_receipt(raw: &[u8], ids: IdCanonicalisation) -> Result<LegacyReceipt<'_>, ReceiptParseError> {
        match Pdu::parse(raw).unwrap().body {
            Body::DeliverSm(sm) | Body::SubmitSm(sm) => parse_smsc_receipt(&sm, ids),
            other => panic!("{other:?}"),
        }
    }

    const TEXT: &[u8] =
        b"id:31 sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 stat:DELIVRD err:000 text:Hello";

    #[test]
    fn receipt_from_tlvs_only() {
        let net = NetworkErrorCode { network_type: 3, error_code: 0x0022 };
        let raw = receipt_pdu(0x04, &tlv_area(Some(b"0000A1B2"), Some(MessageState::Undeliverable), Some(net)), b"");
        let r = read_receipt(&raw, IdCanonicalisation::Folded).unwrap();
        assert_eq!(r.kind, ReceiptKind::SmscDeliveryReceipt);
        assert_eq!(r.raw_id, b"0000A1B2");
        assert_eq!(r.id.as_str(), "a1b2");
        assert_eq!(r.id, canonical_id(b"a1b2", IdCanonicalisation::Folded, IdOrigin::SubmitResp).unwrap());
        assert_eq!((r.id_source, r.state_source), (FieldSource::Tlv, FieldSource::Tlv));
        assert_eq!(r.state, ReceiptState::Failed);
        assert_eq!(r.message_state, Some(MessageState::Undeliverable));
        assert_eq!(r.network_error, Some(net));
        assert_eq!((r.err, r.done_date), (None, None));
    }

    #[test]
    fn receipt_from_text_only_with_hex_decimal_drift() {
        let raw = receipt_pdu(0x04, &[], TEXT);
        let r = read_receipt(&raw, IdCanonicalisation::HexRespDecimalReceipt).unwrap();
        assert_eq!((r.id_source, r.state_source), (FieldSource::Text, FieldSource::Text));
        assert_eq!(r.raw_id, b"31");
        assert_eq!(r.id, canonical_id(b"1F", IdCanonicalisation::HexRespDecimalReceipt, IdOrigin::SubmitResp).unwrap());
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.err, Some(&b"000"[..]));
        assert_eq!(r.done_date, ReceiptDate::new(24, 5, 1, 12, 1, None));
        // Tolerant text: Text: key, 12-digit dates, missing sub/dlvrd, odd case.
        let raw = receipt_pdu(
            0x04,
            &[],
            b"ID:0031 Submit Date:240501120000 done date:240501120105 Stat:expired Err:X1 Text:",
        );
        let r = read_receipt(&raw, IdCanonicalisation::Decimal).unwrap();
        assert_eq!((r.id.as_str(), r.state), ("31", ReceiptState::Failed));
    }

    #[test]
    fn tlvs_win_over_text() {
        let raw = receipt_pdu(0x04, &tlv_area(Some(b"77"), Some(MessageState::Rejected), None), TEXT);
        let r = read_receipt(&raw, IdCanonicalisation::Exact).unwrap();
        assert_eq!((r.raw_id, r.state), (&b"77"[..], ReceiptState::Rejected));
        assert_eq!(r.err, Some(&b"000"[..]), "text fields still read");
        // Only the id in a TLV: the state comes from the text.
        let raw = receipt_pdu(0x04, &tlv_area(Some(b"77"), None, None), TEXT);
        let r = read_receipt(&raw, IdCanonicalisation::Exact).unwrap();
        assert_eq!(
            (r.raw_id, r.id_source, r.state, r.state_source),
            (&b"77"[..], FieldSource::Tlv, ReceiptState::Delivered, FieldSource::Text)
        );
        // Only the state in a TLV: the id comes from the text.
        let raw = receipt_pdu(0x04, &tlv_area(None, Some(MessageState::Enroute), None), TEXT);
        let r = read_receipt(&raw, IdCanonicalisation::Exact).unwrap();
        assert_eq!((r.raw_id, r.id_source, r.state), (&b"31"[..], FieldSource::Text, ReceiptState::Buffered));
        // Both TLVs and a text that is not a receipt: fine.
        let raw = receipt_pdu(0x04, &tlv_area(Some(b"5"), Some(MessageState::Delivered), None), b"hello there");
        assert_eq!(read_receipt(&raw, IdCanonicalisation::Exact).unwrap().state, ReceiptState::Delivered);
    }

    #[test]
    fn every_stat_and_state() {
        let stats: [(&str, Option<ReceiptState>); 14] = [
            ("DELIVRD", Some(ReceiptState::Delivered)),
            ("delivered", Some(ReceiptState::Delivered)),
            ("UNDELIV", Some(ReceiptState::Failed)),
            ("EXPIRED", Some(ReceiptState::Failed)),
            ("DELETED", Some(ReceiptState::Failed)),
            ("REJECTD", Some(ReceiptState::Rejected)),
            ("UNKNOWN", Some(ReceiptState::Unknown)),
            ("ACCEPTD", Some(ReceiptState::Buffered)),
            ("ENROUTE", Some(ReceiptState::Buffered)),
            ("SCHEDUL", Some(ReceiptState::Buffered)),
            ("SKIPPED", Some(ReceiptState::Failed)),
            ("WHATEVR", None),
            ("REJECTED", Some(ReceiptState::Rejected)),
            ("undeliverable", Some(ReceiptState::Failed)),
        ];
        for (stat, want) in stats {
            let text = format!("id:1 stat:{stat} err:0");
            let raw = receipt_pdu(0x04, &[], text.as_bytes());
            let got = read_receipt(&raw, IdCanonicalisation::Exact).map(|r| r.state);
            match want {
                Some(s) => assert_eq!(got, Ok(s), "{stat}"),
                None => assert_eq!(got, Err(ReceiptParseError::UnknownState), "{stat}"),
            }
        }
        let states = [
            (0u8, Some(ReceiptState::Buffered)),
            (1, Some(ReceiptState::Buffered)),
            (2, Some(ReceiptState::Delivered)),
            (3, Some(ReceiptState::Failed)),
            (4, Some(ReceiptState::Failed)),
            (5, Some(ReceiptState::Failed)),
            (6, Some(ReceiptState::Buffered)),
            (7, Some(ReceiptState::Unknown)),
            (8, Some(ReceiptState::Rejected)),
            (9, Some(ReceiptState::Failed)),
            (42, None),
        ];
        for (v, want) in states {
            assert_eq!(receipt_state_of(MessageState::from(v)), want, "state {v}");
            let raw = receipt_pdu(0x04, &tlv_area(Some(b"1"), Some(MessageState::from(v)), None), b"");
            let got = read_receipt(&raw, IdCanonicalisation::Exact).map(|r| r.state);
            assert_eq!(got, want.ok_or(ReceiptParseError::UnknownState), "state {v}");
        }
    }

    #[test]
    fn receipt_kinds_and_refusals() {
        let area = tlv_area(Some(b"1"), Some(MessageState::Delivered), None);
        assert_eq!(
            read_receipt(&receipt_pdu(0x00, &area, b""), IdCanonicalisation::Exact),
            Err(ReceiptParseError::NotAReceipt)
        );
        assert_eq!(
            read_receipt(&receipt_pdu(0x40, &area, b""), IdCanonicalisation::Exact),
            Err(ReceiptParseError::NotAReceipt)
        );
        // User ack: displayed whatever the state says.
        let pdu = receipt_pdu(0x10, &area, b"");
        let r = read_receipt(&pdu, IdCanonicalisation::Exact).unwrap();
        assert_eq!(
            (r.kind, r.state, r.state_source),
            (ReceiptKind::SmeUserAck, ReceiptState::Displayed, FieldSource::Kind)
        );
        // SME delivery ack without a state: delivered.
        let pdu = receipt_pdu(0x08, &tlv_area(Some(b"1"), None, None), b"ok");
        let r = read_receipt(&pdu, IdCanonicalisation::Exact).unwrap();
        assert_eq!(
            (r.kind, r.state, r.state_source),
            (ReceiptKind::SmeDeliveryAck, ReceiptState::Delivered, FieldSource::Kind)
        );
        // Intermediate notification.
        let pdu = receipt_pdu(0x20, &tlv_area(Some(b"1"), Some(MessageState::Enroute), None), b"");
        let r = read_receipt(&pdu, IdCanonicalisation::Exact).unwrap();
        assert_eq!((r.kind, r.state), (ReceiptKind::Intermediate, ReceiptState::Buffered));
        // Missing pieces.
        assert_eq!(
            read_receipt(&receipt_pdu(0x04, &[], b"stat:DELIVRD"), IdCanonicalisation::Exact),
            Err(ReceiptParseError::NoId)
        );
        assert_eq!(
            read_receipt(
                &receipt_pdu(0x04, &tlv_area(Some(b"1"), None, None), b"id:1 err:0"),
                IdCanonicalisation::Exact
            ),
            Err(ReceiptParseError::NoState)
        );
        assert_eq!(
            read_receipt(&receipt_pdu(0x04, &[], b"no receipt here"), IdCanonicalisation::Exact),
            Err(ReceiptParseError::Text(ReceiptError::NoFields))
        );
        assert_eq!(
            read_receipt(&receipt_pdu(0x04, &[], b"id:1F stat:DELIVRD"), IdCanonicalisation::HexRespDecimalReceipt),
            Err(ReceiptParseError::Id(IdError::NotDecimal))
        );
        // A malformed message_state TLV (two octets).
        let bad = [0x04, 0x27, 0x00, 0x02, 0x02, 0x00];
        assert!(matches!(
            read_receipt(&receipt_pdu(0x04, &bad, TEXT), IdCanonicalisation::Exact),
            Err(ReceiptParseError::Tlv(_))
        ));
    }

    #[test]
    fn id_canonicalisation_drift() {
        use IdCanonicalisation::*;
        use IdOrigin::*;
        let c = |raw: &str, ids, origin| canonical_id(raw.as_bytes(), ids, origin);
        // Leading zeros and case.
        assert_eq!(c("0000A1B2", Folded, SubmitResp), c("a1b2", Folded, Receipt));
        assert_ne!(c("0000A1B2", Exact, SubmitResp), c("a1b2", Exact, Receipt));
        assert_eq!(c("AbC", Folded, SubmitResp).unwrap().as_str(), "abc");
        assert_eq!(c("000", Folded, SubmitResp).unwrap().as_str(), "0");
        assert_eq!(c(" 42 ", Exact, SubmitResp).unwrap().as_str(), "42");
        // Hex in the response, decimal in the receipt.
        assert_eq!(c("1F", HexRespDecimalReceipt, SubmitResp), c("31", HexRespDecimalReceipt, Receipt));
        assert_eq!(c("0001f", HexRespDecimalReceipt, SubmitResp).unwrap().as_str(), "31");
        assert_ne!(c("31", HexRespDecimalReceipt, SubmitResp), c("31", HexRespDecimalReceipt, Receipt));
        assert_eq!(
            c("FFFFFFFFFFFFFFFF", HexRespDecimalReceipt, SubmitResp),
            c("18446744073709551615", HexRespDecimalReceipt, Receipt)
        );
        assert_eq!(c("00031", Decimal, SubmitResp), c("31", Decimal, Receipt));
        // Overflow and malformed.
        assert_eq!(c("1FFFFFFFFFFFFFFFF", HexRespDecimalReceipt, SubmitResp), Err(IdError::Overflow));
        assert_eq!(c("18446744073709551616", Decimal, Receipt), Err(IdError::Overflow));
        assert_eq!(c("xyz", HexRespDecimalReceipt, SubmitResp), Err(IdError::NotHex));
        assert_eq!(c("1F", Decimal, Receipt), Err(IdError::NotDecimal));
        assert_eq!(c("  ", Exact, Receipt), Err(IdError::Empty));
        assert_eq!(c(&"9".repeat(65), Exact, Receipt), Err(IdError::TooLong));
        assert_eq!(c(&"9".repeat(64), Exact, Receipt).unwrap().as_bytes().len(), 64);
        // auto: hex as a number (case and zeros do not matter), others folded.
        assert_eq!(c("0000A1B2", Auto, SubmitResp), c("a1b2", Auto, Receipt));
        assert_eq!(c("0000A1B2", Auto, SubmitResp).unwrap().as_bytes(), b"41394");
        assert_eq!(c("Msg-0001", Auto, SubmitResp), c("msg-0001", Auto, Receipt));
        assert_eq!(c("00Msg-1", Auto, SubmitResp), c("msg-1", Auto, Receipt));
        assert_ne!(c("4D2", Auto, SubmitResp), c("1234", Auto, Receipt), "first reading: hex");
        assert_eq!(alternate_id(b"1234", Auto, Receipt), c("4D2", Auto, SubmitResp).ok(), "second: decimal");
        assert_eq!(alternate_id(b"a1b2", Auto, Receipt), None, "not decimal digits");
        assert_eq!(alternate_id(b"1234", Auto, SubmitResp), None, "resps have one reading");
        assert_eq!(alternate_id(b"1234", Exact, Receipt), None);
        assert_eq!(alternate_id(b"7", Auto, Receipt), None, "both readings agree");
        // Over 16 hex digits: folded, not a number.
        assert_eq!(c("00112233445566778899", Auto, Receipt).unwrap().as_bytes(), b"112233445566778899");
        assert_eq!(canonical_id(b"a\x00b", Exact, Receipt), Err(IdError::BadCharacter));
        assert_eq!(canonical_id("é".as_bytes(), Folded, Receipt), Err(IdError::BadCharacter));
        // Usable as a map key.
        let mut m = std::collections::HashMap::new();
        m.insert((1u16, c("0000A1B2", Folded, SubmitResp).unwrap()), "pending");
        assert_eq!(m.get(&(1u16, c("A1B2", Folded, Receipt).unwrap())), Some(&"pending"));
    }

    // ---- IMDN --------------------------------------------------------------------------

    fn stored(dispositions: Dispositions, route: Option<&'static str>) -> StoredCorrelation<'static> {
        StoredCorrelation {
            message_id: "m-0001",
            sender: "sip:+447000100001@ims.lab;user=phone",
            recipient: Msisdn::parse("+447000200001").unwrap(),
            dispositions,
            datetime: DateTime::parse(b"2024-05-01T12:00:00Z").unwrap(),
            imdn_record_route: route,
        }
    }

    const TOKENS: ImdnTokens<'static> = ImdnTokens { message_id: "n-42", seed: "s3ed.1" };
    const NOW: i64 = 1_714_564_800 + 90; // 2024-05-01T12:01:30Z

    fn all_dispositions() -> Dispositions {
        Dispositions::POSITIVE_DELIVERY
            | Dispositions::NEGATIVE_DELIVERY
            | Dispositions::PROCESSING
            | Dispositions::DISPLAY
    }

    #[test]
    fn imdn_parsed_back_field_by_field() {
        let cases = [
            (ReceiptState::Delivered, "delivery-notification", "delivered"),
            (ReceiptState::Failed, "delivery-notification", "failed"),
            (ReceiptState::Rejected, "delivery-notification", "forbidden"),
            (ReceiptState::Unknown, "delivery-notification", "error"),
            (ReceiptState::Buffered, "processing-notification", "stored"),
            (ReceiptState::Displayed, "display-notification", "displayed"),
        ];
        for route in [None, Some("sip:imdn-rr@as.ims.lab;lr")] {
            for (state, element, status) in cases {
                let st = stored(all_dispositions(), route);
                let mut scratch = [0u8; 2048];
                let mut out = [0u8; 2048];
                let w = imdn_for_state(state, &st, &SIDE, &TOKENS, NOW, &mut scratch, &mut out).unwrap().unwrap();
                assert_eq!((w.notification.element_name(), w.notification.status_name()), (element, status));
                let raw = &out[..w.len];
                let mut headers = [Header::EMPTY; 16];
                let msg = parse_datagram(raw, &mut headers).unwrap();
                msg.validate().unwrap();
                assert_eq!(msg.method(), Some(Method::Message));
                let ruri = msg.request_line().unwrap().parse_uri().unwrap();
                assert_eq!(ruri.as_str(), route.unwrap_or(st.sender));
                let from = msg.from().unwrap();
                assert_eq!(from.uri.as_str(), "sip:+447000200001@iwf.ims.lab;user=phone");
                assert_eq!(from.tag(), Some("s3ed.1"));
                let to = msg.to().unwrap();
                assert_eq!((to.uri.as_str(), to.tag()), (st.sender, None));
                let via = msg.top_via().unwrap();
                assert_eq!((via.transport, via.branch()), ("UDP", Some("z9hG4bKs3ed.1")));
                assert_eq!(msg.call_id().unwrap(), "s3ed.1@198.18.2.2:5060");
                let cseq = msg.cseq().unwrap();
                assert_eq!((cseq.number, cseq.method), (1, Method::Message));
                assert_eq!(msg.max_forwards().unwrap(), Some(70));
                assert!(msg.content_type().unwrap().unwrap().is("message", "cpim"));

                let mut ch = [EMPTY_HEADER; 16];
                let c = cpim::parse(msg.body, &mut ch).unwrap();
                assert_eq!(c.from().unwrap().uri, b"sip:+447000200001@iwf.ims.lab;user=phone");
                assert_eq!(c.to().unwrap().uri, st.sender.as_bytes());
                assert_eq!(c.datetime().unwrap(), Some(DateTime::from_unix(NOW)));
                assert_eq!(c.message_id(), Some(&b"n-42"[..]));
                assert!(c.dispositions().is_empty());
                assert_eq!(c.headers_named(cpim::IMDN_NS, b"Disposition-Notification").count(), 0);
                assert_eq!(c.content_type(), Some(&b"message/imdn+xml"[..]));
                assert_eq!(c.content_disposition(), Some(&b"notification"[..]));

                let doc = ImdnDoc::parse(c.content).unwrap();
                assert!(doc.message_id.eq_literal(b"m-0001"));
                assert_eq!(doc.datetime, st.datetime);
                assert!(doc.recipient_uri.unwrap().eq_literal(b"sip:+447000200001@iwf.ims.lab;user=phone"));
                assert_eq!(doc.notification, w.notification);
            }
        }
    }

    #[test]
    fn only_what_was_asked_is_sent() {
        use ReceiptState::*;
        let p = Dispositions::POSITIVE_DELIVERY;
        let n = Dispositions::NEGATIVE_DELIVERY;
        let pr = Dispositions::PROCESSING;
        let d = Dispositions::DISPLAY;
        let needs = [(Delivered, p), (Failed, n), (Rejected, n), (Unknown, n), (Buffered, pr), (Displayed, d)];
        for bits in 0u8..16 {
            let mut asked = Dispositions::empty();
            for x in [p, n, pr, d] {
                if bits & x.bits() != 0 {
                    asked.insert(x);
                }
            }
            for (state, need) in needs {
                let mut scratch = [0u8; 2048];
                let mut out = [0u8; 2048];
                let got =
                    imdn_for_state(state, &stored(asked, None), &SIDE, &TOKENS, NOW, &mut scratch, &mut out).unwrap();
                assert_eq!(got.is_some(), asked.contains(need), "{state:?} asked {asked}");
                assert_eq!(notification_for(state, asked).is_some(), asked.contains(need));
            }
        }
        // Through a parsed receipt too.
        let raw = receipt_pdu(0x04, &tlv_area(Some(b"1"), Some(MessageState::Delivered), None), b"");
        let r = read_receipt(&raw, IdCanonicalisation::Exact).unwrap();
        let mut scratch = [0u8; 2048];
        let mut out = [0u8; 2048];
        assert_eq!(receipt_to_imdn(&r, &stored(n, None), &SIDE, &TOKENS, NOW, &mut scratch, &mut out), Ok(None));
        assert!(receipt_to_imdn(&r, &stored(p, None), &SIDE, &TOKENS, NOW, &mut scratch, &mut out).unwrap().is_some());
    }

    #[test]
    fn imdn_small_buffers_and_bad_tokens() {
        let st = stored(all_dispositions(), None);
        let mut scratch = [0u8; 2048];
        let mut big = [0u8; 2048];
        let full =
            imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &TOKENS, NOW, &mut scratch, &mut big).unwrap().unwrap();
        for n in 0..full.len {
            let mut out = vec![0u8; n];
            assert_eq!(
                imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &TOKENS, NOW, &mut scratch, &mut out),
                Err(ImdnWriteError::OutputTooSmall),
                "out {n}"
            );
        }
        let ok = |n: usize| {
            let mut s = vec![0u8; n];
            let mut o = [0u8; 2048];
            imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &TOKENS, NOW, &mut s, &mut o).is_ok()
        };
        let need = (0..4096).find(|&n| ok(n)).unwrap();
        assert!(need > 500, "XML and CPIM body both live in scratch: {need}");
        for n in 0..need {
            let mut s = vec![0u8; n];
            assert_eq!(
                imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &TOKENS, NOW, &mut s, &mut big),
                Err(ImdnWriteError::ScratchTooSmall),
                "scratch {n}"
            );
        }
        for seed in ["", "a b", "x;y", "a\r\n"] {
            let t = ImdnTokens { message_id: "n", seed };
            assert_eq!(
                imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &t, NOW, &mut scratch, &mut big),
                Err(ImdnWriteError::BadSeed)
            );
        }
        let t = ImdnTokens { message_id: "bad\r\nid", seed: "s" };
        assert_eq!(
            imdn_for_state(ReceiptState::Delivered, &st, &SIDE, &t, NOW, &mut scratch, &mut big),
            Err(ImdnWriteError::Cpim(CpimError::InvalidValue))
        );
        let bad_sender = StoredCorrelation { sender: "sip:a b@c", ..st };
        assert!(
            imdn_for_state(ReceiptState::Delivered, &bad_sender, &SIDE, &TOKENS, NOW, &mut scratch, &mut big).is_err()
        );
    }

    // ---- aggregation -------------------------------------------------------------------

    fn permutations3() -> Vec<[u8; 3]> {
        vec![[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1]]
    }

    #[test]
    fn three_parts_delivered_in_every_order() {
        for order in permutations3() {
            let mut a = PartAggregate::new(3);
            let mut emitted = vec![];
            for (k, &part) in order.iter().enumerate() {
                let e = a.apply(part, ReceiptState::Delivered).unwrap();
                if k < 2 {
                    assert_eq!(e, None, "{order:?}");
                }
                emitted.extend(e);
                // Duplicates are absorbed.
                assert_eq!(a.apply(part, ReceiptState::Delivered).unwrap(), None);
            }
            assert_eq!(emitted, vec![ReceiptState::Delivered], "{order:?}");
            // A late buffered or failure receipt never follows the final one.
            assert_eq!(a.apply(order[0], ReceiptState::Buffered).unwrap(), None);
            assert_eq!(a.apply(order[1], ReceiptState::Failed).unwrap(), None);
            assert_eq!(a.reported().delivery, Some(ReceiptState::Delivered));
        }
    }

    #[test]
    fn three_parts_with_a_failure_in_every_order() {
        for failing in 1u8..=3 {
            for order in permutations3() {
                let mut a = PartAggregate::new(3);
                let mut emitted = vec![];
                for &part in &order {
                    let state = if part == failing { ReceiptState::Failed } else { ReceiptState::Delivered };
                    let e = a.apply(part, state).unwrap();
                    if part == failing {
                        assert_eq!(e, Some(ReceiptState::Failed), "failure is reported at once: {order:?}");
                    }
                    emitted.extend(e);
                }
                assert_eq!(emitted, vec![ReceiptState::Failed], "{order:?} failing {failing}");
                // Another final failure of a different kind: still nothing.
                let other = order.iter().copied().find(|&p| p != failing).unwrap();
                assert_eq!(a.apply(other, ReceiptState::Rejected).unwrap(), None);
            }
        }
    }

    #[test]
    fn aggregation_buffered_display_and_bounds() {
        let mut a = PartAggregate::new(3);
        assert_eq!(a.apply(2, ReceiptState::Buffered).unwrap(), Some(ReceiptState::Buffered));
        assert_eq!(a.apply(1, ReceiptState::Buffered).unwrap(), None, "one processing notification");
        assert_eq!(a.apply(1, ReceiptState::Delivered).unwrap(), None);
        assert_eq!(a.apply(2, ReceiptState::Delivered).unwrap(), None);
        assert_eq!(a.apply(3, ReceiptState::Unknown).unwrap(), Some(ReceiptState::Unknown));
        assert_eq!(a.part(3), Some(ReceiptState::Unknown));
        assert_eq!(a.part(4), None);
        // Display: once every part was displayed, after and beside the delivery track.
        assert_eq!(a.apply(1, ReceiptState::Displayed).unwrap(), None);
        assert_eq!(a.apply(3, ReceiptState::Displayed).unwrap(), None);
        assert_eq!(a.apply(3, ReceiptState::Displayed).unwrap(), None);
        assert_eq!(a.apply(2, ReceiptState::Displayed).unwrap(), Some(ReceiptState::Displayed));
        assert_eq!(a.apply(2, ReceiptState::Displayed).unwrap(), None);
        assert_eq!(a.apply(0, ReceiptState::Delivered), Err(AggregateError::PartOutOfRange { part: 0, total: 3 }));
        assert_eq!(a.apply(4, ReceiptState::Delivered), Err(AggregateError::PartOutOfRange { part: 4, total: 3 }));
        // One part and 255 parts.
        let mut one = PartAggregate::new(1);
        assert_eq!(one.apply(1, ReceiptState::Delivered).unwrap(), Some(ReceiptState::Delivered));
        let mut many = PartAggregate::new(255);
        for p in 1..=254u8 {
            assert_eq!(many.apply(p, ReceiptState::Delivered).unwrap(), None);
        }
        assert_eq!(many.apply(255, ReceiptState::Delivered).unwrap(), Some(ReceiptState::Delivered));
        assert_eq!(PartAggregate::new(0).total(), 1);
    }

    /// The whole loop: SIP MESSAGE → 3 submit_sm → (hex ids in the responses) → decimal
    /// receipts in scrambled order → one IMDN parsed back.
    #[test]
    fn end_to_end_concatenated_message() {
        let mut ex = smsc(Concatenation::Udh8);
        ex.ids = IdCanonicalisation::HexRespDecimalReceipt;
        let raw = cpim_message(&"abc ".repeat(100), Some("positive-delivery, negative-delivery"));
        let mut headers = [Header::EMPTY; 32];
        let msg = parse_datagram(&raw, &mut headers).unwrap();
        let mut scratch = [0u8; 512];
        let mut out = [0u8; 2048];
        let batch = sip_to_submit(&msg, &ex, PARAMS, &mut scratch, &mut out).unwrap();
        assert_eq!(batch.count, 3);
        let facts = batch.facts;
        // The SMSC answers each submit_sm with a hex id; the caller keys part numbers by them.
        let resp_ids = ["00FF01", "ff02", "FF03"];
        let keys: Vec<CanonicalId> =
            resp_ids.iter().map(|r| canonical_id(r.as_bytes(), ex.ids, IdOrigin::SubmitResp).unwrap()).collect();
        let mut agg = PartAggregate::new(facts.segments);
        let mut sent = vec![];
        for (decimal, stat) in [("65283", "DELIVRD"), ("65281", "DELIVRD"), ("065282", "DELIVRD")] {
            let text = format!("id:{decimal} sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 stat:{stat} err:000 text:abc");
            let pdu = receipt_pdu(0x04, &[], text.as_bytes());
            let r = read_receipt(&pdu, ex.ids).unwrap();
            let part = keys.iter().position(|k| *k == r.id).expect("receipt matches a part") as u8 + 1;
            if let Some(state) = agg.apply(part, r.state).unwrap() {
                let st = facts.stored().unwrap();
                let mut s2 = [0u8; 2048];
                let mut o2 = [0u8; 2048];
                let w = imdn_for_state(state, &st, &SIDE, &TOKENS, NOW, &mut s2, &mut o2).unwrap().unwrap();
                sent.push(w.notification);
                let mut h = [Header::EMPTY; 16];
                let m = parse_datagram(&o2[..w.len], &mut h).unwrap();
                let mut ch = [EMPTY_HEADER; 16];
                let c = cpim::parse(m.body, &mut ch).unwrap();
                let doc = ImdnDoc::parse(c.content).unwrap();
                assert!(doc.message_id.eq_literal(b"m-0001"));
            }
        }
        assert_eq!(sent, vec![Notification::Delivery(DeliveryStatus::Delivered)]);
    }

    // ---- property tests ----------------------------------------------------------------

    fn text_strategy() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a", "Z", "0", " ", "@", "£", "é", "Ä", "ñ", "€", "{", "}", "[", "]", "~", "^", "|", "\\", "\n", "½", "ÿ",
            "Ω", "😀", "🇬🇧", "中",
        ]);
        prop::collection::vec(pieces, 1..700).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn prop_text_round_trips(
            text in text_strategy(),
            enc in prop::sample::select(vec![Encoding::Gsm7, Encoding::Latin1, Encoding::Ascii, Encoding::Ucs2]),
            concat in prop::sample::select(vec![Concatenation::Udh8, Concatenation::Udh16, Concatenation::Sar, Concatenation::MessagePayload, Concatenation::None]),
            deliver in any::<bool>(),
        ) {
            let dir = if deliver { BindDirection::LegacyBindsToIwf } else { BindDirection::IwfBindsToLegacy };
            let ex = exchange(dir, enc, concat, true);
            match convert(&cpim_message(&text, Some("positive-delivery, display")), &ex) {
                Ok((d, rd, _, _, _)) => {
                    prop_assert_eq!(d.text, text);
                    prop_assert_eq!(rd, 0x09);
                    let want = if deliver { CommandId::DeliverSm } else { CommandId::SubmitSm };
                    prop_assert!(d.commands.iter().all(|c| *c == want));
                }
                Err(SubmitError::TooLong { .. }) => prop_assert_eq!(concat, Concatenation::None),
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }

        #[test]
        fn prop_never_panics_on_any_body(body in prop::collection::vec(any::<u8>(), 0..600), ct in prop::sample::select(vec!["message/cpim", "text/plain", "message/imdn+xml", "application/x"])) {
            let raw = sip_request("MESSAGE", "tel:+447000200001", "tel:+447000100001", Some(ct), &body);
            let mut headers = [Header::EMPTY; 32];
            let msg = parse_datagram(&raw, &mut headers).unwrap();
            for concat in [Concatenation::Udh8, Concatenation::Sar, Concatenation::None] {
                let _ = sip_to_submit(&msg, &smsc(concat), PARAMS, &mut [0u8; 300], &mut [0u8; 700]);
            }
        }

        #[test]
        fn prop_receipt_parse_never_panics(esm in any::<u8>(), text in prop::collection::vec(any::<u8>(), 0..200), tlvs in prop::collection::vec(any::<u8>(), 0..40)) {
            let sm = SubmitSm { esm_class: EsmClass(esm), short_message: &text, tlvs: Tlvs::Raw(&tlvs), ..SubmitSm::default() };
            for ids in [IdCanonicalisation::Exact, IdCanonicalisation::Folded, IdCanonicalisation::HexRespDecimalReceipt, IdCanonicalisation::Decimal] {
                let _ = parse_smsc_receipt(&sm, ids);
            }
        }

        #[test]
        fn prop_folded_ids_ignore_case_and_zeros(id in "[0-9a-fA-F]{1,40}", zeros in 0usize..10) {
            let padded = format!("{}{}", "0".repeat(zeros), id.to_ascii_uppercase());
            let a = canonical_id(padded.as_bytes(), IdCanonicalisation::Folded, IdOrigin::SubmitResp).unwrap();
            let b = canonical_id(id.to_ascii_lowercase().as_bytes(), IdCanonicalisation::Folded, IdOrigin::Receipt).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn prop_hex_resp_matches_decimal_receipt(v in any::<u64>(), zeros in 0usize..4) {
            let hex = format!("{}{:X}", "0".repeat(zeros), v);
            let dec = format!("{}{}", "0".repeat(zeros), v);
            prop_assert_eq!(
                canonical_id(hex.as_bytes(), IdCanonicalisation::HexRespDecimalReceipt, IdOrigin::SubmitResp),
                canonical_id(dec.as_bytes(), IdCanonicalisation::HexRespDecimalReceipt, IdOrigin::Receipt)
            );
        }

        #[test]
        fn prop_aggregate_emits_at_most_one_final(states in prop::collection::vec((1u8..=5, 0u8..6), 0..40)) {
            let mut a = PartAggregate::new(5);
            let mut finals = 0;
            let mut displays = 0;
            for (part, s) in states {
                let state = [ReceiptState::Buffered, ReceiptState::Delivered, ReceiptState::Failed, ReceiptState::Rejected, ReceiptState::Unknown, ReceiptState::Displayed][usize::from(s)];
                match a.apply(part, state).unwrap() {
                    Some(ReceiptState::Displayed) => displays += 1,
                    Some(ReceiptState::Buffered) => prop_assert_eq!(finals, 0, "buffered after a final"),
                    Some(_) => finals += 1,
                    None => {}
                }
            }
            prop_assert!(finals <= 1 && displays <= 1);
        }
    }
}
