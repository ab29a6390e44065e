//! Legacy → converged: a legacy system's short message becomes a SIP MESSAGE (RFC 3428)
//! carrying CPIM (RFC 3862) with IMDN headers (RFC 5438 §6) and the tag as
//! `imdn.Message-ID`; the converged user's IMDN comes back as one SMPP receipt per
//! segment for that legacy system, and only when that system asked for it.
//!
//! ```text
//!  submit_sm / deliver_sm ──► LegacyMessage ──► legacy_to_sip() ──► SIP MESSAGE bytes
//!        (UDH stripped,          │ addresses → URIs, text → UTF-8,
//!         parts reassembled)     │ registered_delivery → dispositions + tag receipt bits,
//!                                │ TagFields signed with the KeyRing = imdn.Message-ID
//!                                └► returns the Tag / TagFields: segment i's message_id
//!                                   for the *_resp is `segment_tag(keys, fields, i)`
//!
//!  SIP MESSAGE (IMDN) ──► imdn_to_receipts() ──► verify tag ──► exchange_of(system)
//!        ──► ReceiptState, asked for? ──► N × deliver_sm (esm 0x04 / 0x10)
//!                                       or N × submit_sm (esm 0x08 / 0x10)
//! ```
//!
//! Everything here is a pure function: time, SMPP sequence numbers and tag sequences come
//! from the caller, output goes to caller buffers, nothing allocates and nothing panics.
//! Deduplication of receipts (a duplicate IMDN, [`super::state::ReceiptRecord`]) needs
//! state and belongs to the caller.

use core::fmt;

use super::address::{
    self, msisdn_from_uri, AddressError, LegacyParty, Msisdn, Npi, NumberingPlan, SmppAddress, Ton, ALPHA_MAX,
};
use super::content::{eq_ci, media_essence_is, SipContent};
use super::state::ReceiptState;
use super::{BindDirection, ConvergedSide, Exchange};
use crate::tag::{KeyError, KeyRing, Originator, Parties, ReceiptRequest, Tag, TagError, TagFields, TAG_LEN};
use crate::wire::cpim::{self, CpimError, CpimRepr, DateTime, Dispositions, EMPTY_HEADER};
use crate::wire::imdn::{DeliveryStatus, DisplayStatus, Imdn, ImdnError, Notification, XmlText};
use crate::wire::sip::{self, Header, Message, MessageWriter, Method, Parser, Status};
use crate::wire::smpp::{
    Address, Body, CommandStatus, EmitError, EsmClass, MessageState, NetworkErrorCode, Pdu, Receipt, ReceiptDate,
    ReceiptError, ReceiptStat, RegisteredDelivery, SmeAck, SmscReceipt, SubmitSm, TlvWriter, Tlvs,
};
use crate::wire::sms::{gsm7, ConcatInfo, DataCoding, DecodeError, Encoding, Udh, UdhError};

// ---------------------------------------------------------------------------------------
// Legacy message → SIP MESSAGE
// ---------------------------------------------------------------------------------------

/// The user data of a legacy message, UDH removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserData<'a> {
    /// One short message (or one `message_payload`).
    Single(&'a [u8]),
    /// The parts of a concatenated message in order (1..=255 parts), as the caller's
    /// [`crate::wire::sms::Reassembler`] handed them out, each without its UDH.
    Parts(&'a [&'a [u8]]),
}

impl<'a> UserData<'a> {
    /// Number of parts (1 for [`UserData::Single`]).
    pub fn part_count(&self) -> usize {
        match self {
            UserData::Single(_) => 1,
            UserData::Parts(p) => p.len(),
        }
    }

    /// Total octets over all parts.
    pub fn len(&self) -> usize {
        match self {
            UserData::Single(b) => b.len(),
            UserData::Parts(p) => p.iter().fold(0usize, |n, b| n.saturating_add(b.len())),
        }
    }

    /// Whether there is no octet at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every octet, parts in order.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let (single, parts): (&[u8], &[&[u8]]) = match self {
            UserData::Single(b) => (b, &[]),
            UserData::Parts(p) => (&[], p),
        };
        single.iter().copied().chain(parts.iter().flat_map(|p| p.iter().copied()))
    }
}

/// A short message as a legacy system submitted it (submit_sm from a system bound to
/// iwf, or deliver_sm from an SMSC iwf is bound to: the same body, SMPP 3.4 §4.4.1 /
/// §4.6.1), reduced to what the conversion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyMessage<'a> {
    /// `source_addr_ton` / `source_addr_npi` / `source_addr`: the legacy user.
    pub source: Address<'a>,
    /// `dest_addr_ton` / `dest_addr_npi` / `destination_addr`: the converged user.
    pub destination: Address<'a>,
    /// `data_coding` (SMPP 3.4 §5.2.19).
    pub data_coding: u8,
    /// `registered_delivery` (SMPP 3.4 §5.2.17): which receipts the system wants.
    pub registered_delivery: RegisteredDelivery,
    /// `esm_class` (SMPP 3.4 §5.2.12).
    pub esm_class: EsmClass,
    /// The text octets, UDH removed, parts in order.
    pub user_data: UserData<'a>,
}

impl<'a> LegacyMessage<'a> {
    /// The message one submit_sm / deliver_sm carries: `short_message`, or the
    /// `message_payload` TLV when `short_message` is empty; when `esm_class` has UDHI
    /// set the UDH is parsed and stripped. Also returns the concatenation values of the
    /// part (UDH IE 0x00 / 0x08, else the SAR TLVs): when they say `total > 1` this PDU is
    /// one part of a longer message and the caller reassembles the parts first (and
    /// builds the message with [`UserData::Parts`]).
    pub fn from_submit_sm(sm: &SubmitSm<'a>) -> Result<(LegacyMessage<'a>, Option<ConcatInfo>), ConvertError> {
        let payload = sm.payload();
        let (user_data, udh_concat) = if sm.esm_class.udhi() {
            let (udh, text) = Udh::parse(payload).map_err(ConvertError::BadUdh)?;
            (text, udh.concat())
        } else {
            (payload, None)
        };
        let concat = match udh_concat {
            Some(c) => Some(c),
            None => sar_concat(&sm.tlvs),
        };
        Ok((
            LegacyMessage {
                source: sm.source,
                destination: sm.destination,
                data_coding: sm.data_coding,
                registered_delivery: sm.registered_delivery,
                esm_class: sm.esm_class,
                user_data: UserData::Single(user_data),
            },
            concat,
        ))
    }
}

/// Concatenation values from the SAR TLVs, when all three are present and valid.
fn sar_concat(tlvs: &Tlvs<'_>) -> Option<ConcatInfo> {
    let reference = tlvs.sar_msg_ref_num().ok()??;
    let total = tlvs.sar_total_segments().ok()??;
    let seq = tlvs.sar_segment_seqnum().ok()??;
    ConcatInfo::from_sar(reference, total, seq).ok()
}

/// What [`legacy_to_sip`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertedMessage {
    /// Length of the SIP MESSAGE written at the start of the output buffer.
    pub len: usize,
    /// The tag of the whole message: `imdn.Message-ID`, Via branch, Call-ID.
    pub tag: Tag,
    /// What the tag carries. Segment `i` (1-based) of the submission gets
    /// [`segment_tag`]`(keys, &fields, i)` as its `message_id`.
    pub fields: TagFields,
    /// The `imdn.Disposition-Notification` written (empty when none).
    pub dispositions: Dispositions,
}

/// Why a legacy message cannot become a SIP MESSAGE. Each variant names the SMPP
/// `command_status` the legacy system's `submit_sm_resp` / `deliver_sm_resp` gets
/// ([`ConvertError::command_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertError {
    /// `source_addr` does not map to a converged URI.
    InvalidSource(AddressError),
    /// `destination_addr` is not a number a converged user has (or the explicit recipient
    /// URI is unusable).
    InvalidDestination(AddressError),
    /// `data_coding` is binary (2, 4, 0xF4–0xF7) or a value iwf does not decode.
    UnsupportedDataCoding(u8),
    /// The octets are not valid text in the declared coding.
    BadText(DecodeError),
    /// `esm_class` says UDHI but the user data holds no valid UDH.
    BadUdh(UdhError),
    /// `esm_class` marks a receipt or acknowledgement, not a message.
    NotAMessage(EsmClass),
    /// No part, or more than 255.
    BadPartCount(usize),
    /// The key ring has no signing key.
    Key(KeyError),
    /// `now` cannot be written as an RFC 3339 time.
    BadClock,
    /// The converged-side configuration (domain, sent-by, transport) does not fit a SIP
    /// header.
    BadConfig,
    /// The scratch buffer is too small for the text and the CPIM body.
    ScratchTooSmall,
    /// The output buffer is too small for the SIP MESSAGE.
    OutputTooSmall,
}

impl ConvertError {
    /// The `command_status` for the legacy system's `*_resp`:
    ///
    /// | error | status | why |
    /// |---|---|---|
    /// | `InvalidSource` | `ESME_RINVSRCADR` 0x0A | |
    /// | `InvalidDestination` | `ESME_RINVDSTADR` 0x0B | |
    /// | `UnsupportedDataCoding` | `ESME_RINVDCS` 0x104 | SMPP 5.0 code; 3.4 has none closer and clients treat it as a permanent error |
    /// | `BadText` odd UCS-2 length | `ESME_RINVMSGLEN` 0x01 | the length does not fit the coding |
    /// | `BadText` other | `ESME_RINVDCS` 0x104 | octets not valid in the declared coding |
    /// | `BadUdh` | `ESME_RINVMSGLEN` 0x01 | UDHL overruns the user data |
    /// | `NotAMessage` | `ESME_RINVESMCLASS` 0x43 | a receipt type where a message was expected |
    /// | `BadPartCount` | `ESME_RINVNUMMSGS` 0x55 | |
    /// | `Key`, `BadClock`, `BadConfig`, `ScratchTooSmall`, `OutputTooSmall` | `ESME_RSYSERR` 0x08 | iwf's own fault; buffers are sized by the caller for the largest message it accepts |
    pub fn command_status(self) -> CommandStatus {
        match self {
            ConvertError::InvalidSource(_) => CommandStatus::ESME_RINVSRCADR,
            ConvertError::InvalidDestination(_) => CommandStatus::ESME_RINVDSTADR,
            ConvertError::UnsupportedDataCoding(_) => CommandStatus::ESME_RINVDCS,
            ConvertError::BadText(DecodeError::OddLength { .. }) => CommandStatus::ESME_RINVMSGLEN,
            ConvertError::BadText(_) => CommandStatus::ESME_RINVDCS,
            ConvertError::BadUdh(_) => CommandStatus::ESME_RINVMSGLEN,
            ConvertError::NotAMessage(_) => CommandStatus::ESME_RINVESMCLASS,
            ConvertError::BadPartCount(_) => CommandStatus::ESME_RINVNUMMSGS,
            ConvertError::Key(_)
            | ConvertError::BadClock
            | ConvertError::BadConfig
            | ConvertError::ScratchTooSmall
            | ConvertError::OutputTooSmall => CommandStatus::ESME_RSYSERR,
        }
    }

    /// A short snake_case name for metrics labels.
    pub fn reason(self) -> &'static str {
        match self {
            ConvertError::InvalidSource(_) => "invalid_source",
            ConvertError::InvalidDestination(_) => "invalid_destination",
            ConvertError::UnsupportedDataCoding(_) => "unsupported_data_coding",
            ConvertError::BadText(_) => "bad_text",
            ConvertError::BadUdh(_) => "bad_udh",
            ConvertError::NotAMessage(_) => "not_a_message",
            ConvertError::BadPartCount(_) => "bad_part_count",
            ConvertError::Key(_) => "no_signing_key",
            ConvertError::BadClock => "bad_clock",
            ConvertError::BadConfig => "bad_config",
            ConvertError::ScratchTooSmall => "scratch_too_small",
            ConvertError::OutputTooSmall => "output_too_small",
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::InvalidSource(e) => write!(f, "invalid source address: {e}"),
            ConvertError::InvalidDestination(e) => write!(f, "invalid destination address: {e}"),
            ConvertError::UnsupportedDataCoding(dc) => {
                write!(f, "data_coding {} is not text iwf can relay", DataCoding::from_u8(*dc))
            }
            ConvertError::BadText(e) => write!(f, "user data is not valid text: {e}"),
            ConvertError::BadUdh(e) => write!(f, "malformed user data header: {e}"),
            ConvertError::NotAMessage(e) => write!(f, "esm_class {e} is not a message"),
            ConvertError::BadPartCount(n) => write!(f, "{n} parts (1 to 255 allowed)"),
            ConvertError::Key(e) => write!(f, "cannot sign the tag: {e}"),
            ConvertError::BadClock => f.write_str("the clock is outside the RFC 3339 range"),
            ConvertError::BadConfig => f.write_str("converged-side domain, sent-by or transport unusable in SIP"),
            ConvertError::ScratchTooSmall => f.write_str("scratch buffer too small"),
            ConvertError::OutputTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for ConvertError {}

/// Scratch octets [`legacy_to_sip`] needs for `user_data_len` octets of user data: the
/// UTF-8 text (at most 2 octets per GSM-7 septet or Latin-1 octet, 3 per 2 UCS-2
/// octets) plus the CPIM body around it.
pub const fn scratch_len(user_data_len: usize) -> usize {
    2 * user_data_len + CPIM_OVERHEAD
}

/// Room for the CPIM headers around the text (URIs up to 256 octets each).
const CPIM_OVERHEAD: usize = 1024;

/// Longest URI or header value this module builds on the stack.
const LINE_MAX: usize = 256;

/// Max-Forwards of the requests iwf originates (RFC 3261 §8.1.1.6).
pub const MAX_FORWARDS: u32 = 70;

/// The receipts and dispositions a `registered_delivery` asks for:
///
/// | bits | SMPP | tag receipt bits | `imdn.Disposition-Notification` |
/// |---|---|---|---|
/// | 1-0 = 01 | SMSC receipt on success or failure | DELIVERY, FAILURE | positive-delivery, negative-delivery |
/// | 1-0 = 10 | SMSC receipt on failure | FAILURE | negative-delivery |
/// | 1-0 = 11 | success only (SMPP 5.0; reserved in 3.4) | DELIVERY | positive-delivery |
/// | 3-2 = 10 or 11 | SME manual/user ack | USER_ACK, only if `user_ack` | display, only if `user_ack` |
///
/// An SME delivery ack (bits 3-2 = 01) has no converged form beyond the delivery
/// notification and asks for nothing by itself; intermediate notifications (bit 4) are
/// not relayed (the tag has no bit for them), so `processing` is never asked for.
pub fn receipt_request(rd: RegisteredDelivery, user_ack: bool) -> (ReceiptRequest, Dispositions) {
    let (mut req, mut disp) = match rd.smsc_receipt() {
        SmscReceipt::None => (ReceiptRequest::NONE, Dispositions::empty()),
        SmscReceipt::SuccessOrFailure => (
            ReceiptRequest::DELIVERY.union(ReceiptRequest::FAILURE),
            Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY,
        ),
        SmscReceipt::FailureOnly => (ReceiptRequest::FAILURE, Dispositions::NEGATIVE_DELIVERY),
        SmscReceipt::SuccessOnly => (ReceiptRequest::DELIVERY, Dispositions::POSITIVE_DELIVERY),
    };
    if user_ack && matches!(rd.sme_ack(), SmeAck::User | SmeAck::Both) {
        req = req.union(ReceiptRequest::USER_ACK);
        disp.insert(Dispositions::DISPLAY);
    }
    (req, disp)
}

/// The tag returned as `message_id` of segment `index` (1-based) of a submission whose
/// SIP MESSAGE carried `fields`: for a single-part message this is the message tag
/// itself (see [`TagFields::segment`]).
pub fn segment_tag(keys: &KeyRing, fields: &TagFields, index: u8) -> Result<Tag, KeyError> {
    keys.encode(&fields.segment(index))
}

/// Writes segment `index`'s `message_id` (32 ASCII characters) into `out`, returning its
/// length.
pub fn write_segment_message_id(
    keys: &KeyRing,
    fields: &TagFields,
    index: u8,
    out: &mut [u8],
) -> Result<usize, ConvertError> {
    let tag = segment_tag(keys, fields, index).map_err(ConvertError::Key)?;
    out.get_mut(..TAG_LEN).ok_or(ConvertError::OutputTooSmall)?.copy_from_slice(tag.as_bytes());
    Ok(TAG_LEN)
}

/// A small text line built on the stack from `&str` pieces.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line { buf: [0; LINE_MAX], len: 0 }
    }

    fn put(&mut self, s: &str) -> Result<&mut Self, ConvertError> {
        let end = self.len.checked_add(s.len()).ok_or(ConvertError::BadConfig)?;
        self.buf.get_mut(self.len..end).ok_or(ConvertError::BadConfig)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(self)
    }

    fn as_str(&self) -> &str {
        // Only `&str` pieces were copied in, so this is valid UTF-8.
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or("")
    }
}

/// The host part of a `sent-by` (`host[:port]`, IPv6 references in brackets).
fn sent_by_host(sent_by: &str) -> &str {
    if sent_by.starts_with('[') {
        match sent_by.find(']') {
            Some(end) => sent_by.get(..=end).unwrap_or(sent_by),
            None => sent_by,
        }
    } else {
        sent_by.split(':').next().unwrap_or(sent_by)
    }
}

/// The characters of the user data as `data_coding` says, written as UTF-8 into `out`.
/// Parts are decoded as one stream, so that a GSM-7 escape or a UTF-16 surrogate pair
/// split between two parts by a careless sender still decodes.
fn decode_text(msg: &LegacyMessage<'_>, default: Encoding, out: &mut [u8]) -> Result<usize, ConvertError> {
    let dc = DataCoding::from_u8(msg.data_coding);
    let encoding = dc.text_encoding(default).ok_or(ConvertError::UnsupportedDataCoding(msg.data_coding))?;
    if let UserData::Single(bytes) = msg.user_data {
        return encoding.decode(bytes, out).map_err(|e| match e {
            DecodeError::BufferTooSmall => ConvertError::ScratchTooSmall,
            e => ConvertError::BadText(e),
        });
    }
    let mut n = 0usize;
    let mut put = |c: char| -> Result<(), ConvertError> {
        let len = c.len_utf8();
        let end = n.checked_add(len).ok_or(ConvertError::ScratchTooSmall)?;
        let dst = out.get_mut(n..end).ok_or(ConvertError::ScratchTooSmall)?;
        c.encode_utf8(dst);
        n = end;
        Ok(())
    };
    let bytes = msg.user_data.bytes();
    match encoding {
        Encoding::Gsm7 | Encoding::Ascii => {
            if let Some((offset, value)) = msg.user_data.bytes().enumerate().find(|(_, b)| *b > 0x7F) {
                return Err(ConvertError::BadText(if encoding == Encoding::Gsm7 {
                    DecodeError::InvalidSeptet { offset, value }
                } else {
                    DecodeError::NonAscii { offset, value }
                }));
            }
            if encoding == Encoding::Gsm7 {
                for c in gsm7::Gsm7Chars::new(bytes) {
                    put(c)?;
                }
            } else {
                for b in bytes {
                    put(char::from(b))?;
                }
            }
        }
        Encoding::Latin1 => {
            for b in bytes {
                put(char::from(b))?;
            }
        }
        Encoding::Ucs2 => {
            let len = msg.user_data.len();
            if !len.is_multiple_of(2) {
                return Err(ConvertError::BadText(DecodeError::OddLength { len }));
            }
            let mut octets = bytes;
            let units = core::iter::from_fn(move || {
                let hi = octets.next()?;
                let lo = octets.next()?;
                Some(u16::from_be_bytes([hi, lo]))
            });
            for (i, c) in char::decode_utf16(units).enumerate() {
                match c {
                    Ok(c) => put(c)?,
                    Err(e) => {
                        return Err(ConvertError::BadText(DecodeError::LoneSurrogate {
                            offset: i.saturating_mul(2),
                            unit: e.unpaired_surrogate(),
                        }))
                    }
                }
            }
        }
    }
    Ok(n)
}

/// Converts a legacy system's short message into a SIP MESSAGE written into `out`.
///
/// - `exchange`: the originating legacy system (its id goes into the tag; its
///   `default_encoding`, `user_ack` and numbering plan are honoured);
/// - `recipient`: the converged user's URI from provisioning (the MSISDN map), or `None`
///   for the template `sip:+<E.164>@<converged_domain>;user=phone`;
/// - `sequence`: the tag sequence, unique per issuer within a minute;
/// - `now_unix`: the time (tag issue time and CPIM `DateTime`);
/// - `scratch`: at least [`scratch_len`]`(user data octets)` octets.
///
/// The message (RFC 3428 §4, RFC 3862, RFC 5438 §6):
///
/// ```text
/// MESSAGE <recipient> SIP/2.0
/// Via: SIP/2.0/<transport> <local_sent_by>;branch=z9hG4bK<tag>
/// Max-Forwards: 70
/// From: <sip:+<E.164>@<legacy_domain>;user=phone>;tag=<last 16 characters of the tag>
/// To: <recipient>
/// Call-ID: <tag>@<local host>
/// CSeq: 1 MESSAGE
/// Content-Type: message/cpim
/// Content-Length: N
///
/// From: <legacy uri>
/// To: <recipient>
/// NS: imdn <urn:ietf:params:imdn>
/// imdn.Message-ID: <tag>
/// DateTime: <now>
/// [imdn.Disposition-Notification: ...]
///
/// Content-Type: text/plain;charset=UTF-8
/// Content-Length: M
///
/// <text>
/// ```
///
/// Whether the result fits a UDP datagram (RFC 3428 §5: 1300 octets) is the transport's
/// choice; this function only needs `out` to be large enough.
#[allow(clippy::too_many_arguments)]
pub fn legacy_to_sip(
    msg: &LegacyMessage<'_>,
    exchange: &Exchange<'_>,
    converged: &ConvergedSide<'_>,
    recipient: Option<&str>,
    keys: &KeyRing,
    sequence: u32,
    now_unix: u64,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<ConvertedMessage, ConvertError> {
    if msg.esm_class.is_receipt() {
        return Err(ConvertError::NotAMessage(msg.esm_class));
    }
    let parts = msg.user_data.part_count();
    let segment_count = match u8::try_from(parts) {
        Ok(n) if n >= 1 => n,
        _ => return Err(ConvertError::BadPartCount(parts)),
    };

    // Addresses.
    let source = smpp_party(&exchange.numbering, msg.source).map_err(ConvertError::InvalidSource)?;
    let mut legacy_uri = [0u8; LINE_MAX];
    let legacy_uri = write_uri(&source, converged.legacy_domain, &mut legacy_uri)?;
    let mut template = [0u8; LINE_MAX];
    let recipient = match recipient {
        Some(uri) => {
            check_recipient(uri)?;
            uri
        }
        None => {
            let party = smpp_party(&exchange.numbering, msg.destination).map_err(ConvertError::InvalidDestination)?;
            let LegacyParty::Number(_) = party else {
                return Err(ConvertError::InvalidDestination(AddressError::NotANumber));
            };
            write_uri(&party, converged.converged_domain, &mut template)?
        }
    };

    // Text, receipts, tag.
    let (text_buf, cpim_buf) =
        scratch.split_at_mut(scratch_len(msg.user_data.len()).saturating_sub(CPIM_OVERHEAD).min(scratch.len()));
    let text_len = decode_text(msg, exchange.default_encoding, text_buf)?;
    let text = text_buf.get(..text_len).unwrap_or_default();
    let (receipts, dispositions) = receipt_request(msg.registered_delivery, exchange.user_ack);
    // The tag's MAC covers who the message is between: its receipts can be addressed to
    // these parties only.
    let dest_digits = match smpp_party(&exchange.numbering, msg.destination) {
        Ok(LegacyParty::Number(m)) => Some(m),
        _ => None,
    };
    let originator = match &source {
        LegacyParty::Number(m) => Originator::Number(m.digits()),
        LegacyParty::Name(n) => Originator::Name(n),
    };
    let parties = Parties::new(originator, dest_digits.as_ref().map_or("", |m| m.digits()))
        .ok_or(ConvertError::InvalidSource(AddressError::TooLong))?;
    let fields = TagFields {
        system: exchange.system,
        minutes: TagFields::minutes_at(now_unix),
        sequence,
        segment_index: 0,
        segment_count,
        receipts,
        parties,
    };
    let tag = keys.encode(&fields).map_err(ConvertError::Key)?;
    let now = i64::try_from(now_unix).map_err(|_| ConvertError::BadClock)?;
    let datetime = DateTime::new(now, 0, 0).map_err(|_| ConvertError::BadClock)?;

    // CPIM body.
    let cpim = CpimRepr {
        from: cpim::CpimAddress::new(b"", legacy_uri.as_bytes()),
        to: cpim::CpimAddress::new(b"", recipient.as_bytes()),
        datetime,
        message_id: tag.as_bytes(),
        dispositions,
        imdn_record_route: None,
        content_type: b"text/plain;charset=UTF-8",
        content_disposition: None,
        content: text,
    };
    let body_len = cpim.emit(cpim_buf).map_err(|e| match e {
        CpimError::BufferTooSmall => ConvertError::ScratchTooSmall,
        _ => ConvertError::InvalidDestination(AddressError::UnsupportedUri),
    })?;
    let body = cpim_buf.get(..body_len).unwrap_or_default();

    let len = write_message(converged, legacy_uri, recipient, tag.as_str(), body, out)?;
    Ok(ConvertedMessage { len, tag, fields, dispositions })
}

/// The SIP MESSAGE carrying `body` from `legacy_uri` to `recipient`, its branch,
/// From tag and Call-ID drawn from the tag, into `out`; its length.
pub(crate) fn write_message(
    converged: &ConvergedSide<'_>,
    legacy_uri: &str,
    recipient: &str,
    tag_str: &str,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, ConvertError> {
    let mut via = Line::new();
    via.put("SIP/2.0/")?
        .put(converged.transport)?
        .put(" ")?
        .put(converged.local_sent_by)?
        .put(";branch=")?
        .put(sip::BRANCH_MAGIC_COOKIE)?
        .put(tag_str)?;
    let mut from = Line::new();
    from.put("<")?.put(legacy_uri)?.put(">;tag=")?.put(tag_str.get(TAG_LEN - 16..).unwrap_or(tag_str))?;
    let mut to = Line::new();
    to.put("<")?.put(recipient)?.put(">")?;
    let mut call_id = Line::new();
    call_id.put(tag_str)?.put("@")?.put(sent_by_host(converged.local_sent_by))?;

    let sip_err = |e: sip::Error| match e {
        sip::Error::BufferTooSmall => ConvertError::OutputTooSmall,
        sip::Error::BadRequestUri => ConvertError::InvalidDestination(AddressError::UnsupportedUri),
        _ => ConvertError::BadConfig,
    };
    let mut w = MessageWriter::request(out, Method::Message, recipient).map_err(sip_err)?;
    w.header("Via", via.as_str())
        .and_then(|w| w.header_u32("Max-Forwards", MAX_FORWARDS))
        .and_then(|w| w.header("From", from.as_str()))
        .and_then(|w| w.header("To", to.as_str()))
        .and_then(|w| w.header("Call-ID", call_id.as_str()))
        .and_then(|w| w.header("CSeq", "1 MESSAGE"))
        .and_then(|w| w.header("Content-Type", "message/cpim"))
        .map_err(sip_err)?;
    w.finish(body).map_err(sip_err)
}

/// The party an SMPP address names, under the system's numbering plan.
fn smpp_party<'b>(plan: &NumberingPlan<'_>, a: Address<'b>) -> Result<LegacyParty<'b>, AddressError> {
    let addr = core::str::from_utf8(a.addr).map_err(|_| AddressError::BadCharacter)?;
    plan.from_smpp(SmppAddress { ton: Ton(a.ton), npi: Npi(a.npi), addr })
}

/// Writes the SIP URI of `party` under `domain` into `buf`.
fn write_uri<'b>(party: &LegacyParty<'_>, domain: &str, buf: &'b mut [u8; LINE_MAX]) -> Result<&'b str, ConvertError> {
    if domain.is_empty() || domain.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))) {
        return Err(ConvertError::BadConfig);
    }
    let n = address::write_sip_uri(party, domain, buf).map_err(|_| ConvertError::BadConfig)?;
    // The writer only emits ASCII.
    core::str::from_utf8(buf.get(..n).unwrap_or_default()).map_err(|_| ConvertError::BadConfig)
}

/// An explicit recipient URI must parse and fit between angle brackets.
fn check_recipient(uri: &str) -> Result<(), ConvertError> {
    let bad = ConvertError::InvalidDestination(AddressError::UnsupportedUri);
    if uri.is_empty()
        || uri.len() > LINE_MAX / 2
        || uri.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>' || b >= 0x7f)
    {
        return Err(bad);
    }
    sip::Uri::parse(uri).map_err(|_| bad)?;
    Ok(())
}

/// The SMPP `*_resp` status for the SIP final response to the MESSAGE iwf sent for a
/// legacy message. A 2xx only means the next hop took the message (RFC 3428 §7), so it
/// is `ESME_ROK` and nothing more; the IMDN carries the outcome. The codes are chosen
/// to read right both in a `submit_sm_resp` (iwf as SMSC) and in a `deliver_sm_resp`
/// (iwf as ESME), and to tell the legacy system whether to retry:
///
/// | SIP | SMPP | meaning for the legacy system |
/// |---|---|---|
/// | 2xx | `ESME_ROK` | accepted by the converged core |
/// | 404, 410, 484, 604 | `ESME_RINVDSTADR` | no such user: permanent |
/// | 403, 603 | `ESME_RX_R_APPN` | refused by the recipient or policy: permanent, do not retry |
/// | 413, 513 | `ESME_RINVMSGLEN` | message too large |
/// | 415, 488, 606 | `ESME_RX_P_APPN` | content not acceptable: permanent |
/// | 503 | `ESME_RTHROTTLED` | overload: back off and retry (the mirror of a full lane → 503 + Retry-After) |
/// | 408 (incl. Timer F timeout), 480, 486, 500, 504, 600, other 5xx | `ESME_RX_T_APPN` | temporary: retry later |
/// | 401, 407 | `ESME_RSYSERR` | iwf is not trusted by the core: configuration |
/// | other 3xx, 4xx, 6xx | `ESME_RX_P_APPN` | permanent failure (iwf does not follow redirects) |
/// | 1xx, out of range | `ESME_RSYSERR` | not a final response: a caller bug |
///
/// 480 (Temporarily Unavailable) is deliberately temporary rather than
/// `ESME_RINVDSTADR`: the user exists but is not reachable now, which SMS calls an
/// absent subscriber, and the legacy system should retry. Pass 408 for a transaction
/// timeout (RFC 3261 §8.1.3.1).
pub fn sip_status_to_command_status(code: u16) -> CommandStatus {
    match code {
        200..=299 => CommandStatus::ESME_ROK,
        404 | 410 | 484 | 604 => CommandStatus::ESME_RINVDSTADR,
        403 | 603 => CommandStatus::ESME_RX_R_APPN,
        413 | 513 => CommandStatus::ESME_RINVMSGLEN,
        415 | 488 | 606 => CommandStatus::ESME_RX_P_APPN,
        503 => CommandStatus::ESME_RTHROTTLED,
        408 | 480 | 486 | 600 | 500..=599 => CommandStatus::ESME_RX_T_APPN,
        401 | 407 => CommandStatus::ESME_RSYSERR,
        300..=499 | 601..=699 => CommandStatus::ESME_RX_P_APPN,
        _ => CommandStatus::ESME_RSYSERR,
    }
}

// ---------------------------------------------------------------------------------------
// IMDN → SMPP receipts
// ---------------------------------------------------------------------------------------

/// Most SIP header fields an IMDN request may carry.
pub const MAX_SIP_HEADERS: usize = 32;
pub use super::content::MAX_CPIM_HEADERS;
/// Upper bound of one receipt PDU [`imdn_to_receipts`] writes: size `out` as
/// `segment_count × RECEIPT_PDU_MAX_LEN` (255 segments: 65 KiB) or larger.
pub const RECEIPT_PDU_MAX_LEN: usize = 320;

/// What an IMDN became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// `count` receipt PDUs (one per segment), `len` octets in all, written back to back
    /// at the start of `out` with sequence numbers `first_sequence..first_sequence+count`.
    Receipts {
        /// The legacy system they go to (its lane).
        system: u16,
        /// The state they report.
        state: ReceiptState,
        /// Number of PDUs.
        count: u8,
        /// Octets written.
        len: usize,
        /// The verified tag (`<message-id>`, lower case): with the state, what a replay
        /// of the same notification is known by.
        message_id: [u8; TAG_LEN],
    },
    /// A valid notification the legacy system did not ask for: nothing to send.
    NotRequested {
        /// The legacy system.
        system: u16,
        /// The state it would have reported.
        state: ReceiptState,
    },
    /// A verified notification about an MMS from an MMS centre: its report is the
    /// caller's to make (nothing is written to `out`).
    Mms {
        /// The MMS centre.
        system: u16,
        /// The notification.
        notification: Notification,
        /// The tag's fields (which reports the MMS asked for, its key).
        fields: TagFields,
        /// The verified tag, lower case: what a replay is known by.
        message_id: [u8; TAG_LEN],
    },
    /// A notification SMPP has no receipt for (processing notifications; display
    /// forbidden/error): nothing to send.
    NotRelayed {
        /// The legacy system.
        system: u16,
        /// The notification.
        notification: Notification,
    },
}

/// What kind of legacy system a tag's system is, as the caller provisions it: an SMS
/// centre's receipts are SMPP PDUs written here; an MMS centre's reports need what
/// iwf kept of the MMS ([`ReceiptOutcome::Mms`]).
#[derive(Debug, Clone, Copy)]
pub enum LegacyExchange<'e> {
    /// An SMPP system.
    Smpp(Exchange<'e>),
    /// An MMS centre.
    Mms,
}

impl<'e> From<Exchange<'e>> for LegacyExchange<'e> {
    fn from(e: Exchange<'e>) -> Self {
        LegacyExchange::Smpp(e)
    }
}

/// Why an IMDN routes to no legacy system. Every variant is a drop counter
/// ([`ImdnRouteError::reason`]); the SIP request is still answered by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdnRouteError {
    /// The SIP message does not parse.
    Sip(sip::Error),
    /// Not a MESSAGE request.
    NotMessage,
    /// The SIP body is not `message/cpim`.
    NotCpim,
    /// The CPIM body does not parse.
    Cpim(CpimError),
    /// The CPIM content is not `message/imdn+xml`.
    NotImdn,
    /// The CPIM content is not `Content-Disposition: notification`.
    NotNotification,
    /// The IMDN XML does not parse.
    Imdn(ImdnError),
    /// The `<message-id>` is not a valid tag (forged, altered, expired, ...).
    Tag(TagError),
    /// The tag names a legacy system that is not provisioned.
    UnknownSystem(u16),
    /// Neither the CPIM `From` nor `<recipient-uri>` names a telephone number.
    BadRecipient(AddressError),
    /// The CPIM `To` names no legacy user (number or sender name).
    BadOriginator(AddressError),
    /// A receipt text could not be written.
    Receipt(ReceiptError),
    /// A receipt PDU could not be written (the output buffer is too small, ...).
    Emit(EmitError),
}

impl ImdnRouteError {
    /// A short snake_case name for the drop counter; every tag error has its own.
    pub fn reason(self) -> &'static str {
        match self {
            ImdnRouteError::Sip(_) => "sip_malformed",
            ImdnRouteError::NotMessage => "not_message",
            ImdnRouteError::NotCpim => "not_cpim",
            ImdnRouteError::Cpim(_) => "cpim_malformed",
            ImdnRouteError::NotImdn => "not_imdn",
            ImdnRouteError::NotNotification => "not_notification",
            ImdnRouteError::Imdn(_) => "imdn_malformed",
            ImdnRouteError::Tag(e) => match e {
                TagError::BadLength => "tag_bad_length",
                TagError::BadCharacter => "tag_bad_character",
                TagError::UnsupportedVersion => "tag_unsupported_version",
                TagError::UnknownKey => "tag_unknown_key",
                TagError::BadMac => "tag_bad_mac",
                TagError::BadSegment => "tag_bad_segment",
                TagError::Expired => "tag_expired",
                TagError::FromFuture => "tag_from_future",
            },
            ImdnRouteError::UnknownSystem(_) => "unknown_system",
            ImdnRouteError::BadRecipient(_) => "bad_recipient",
            ImdnRouteError::BadOriginator(_) => "bad_originator",
            ImdnRouteError::Receipt(_) => "receipt_text",
            ImdnRouteError::Emit(EmitError::BufferTooSmall { .. }) => "output_too_small",
            ImdnRouteError::Emit(_) => "emit_failed",
        }
    }
}

impl fmt::Display for ImdnRouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdnRouteError::Sip(e) => write!(f, "IMDN request: {e}"),
            ImdnRouteError::NotMessage => f.write_str("IMDN is not carried by a SIP MESSAGE"),
            ImdnRouteError::NotCpim => f.write_str("SIP body is not message/cpim"),
            ImdnRouteError::Cpim(e) => write!(f, "IMDN CPIM: {e}"),
            ImdnRouteError::NotImdn => f.write_str("CPIM content is not message/imdn+xml"),
            ImdnRouteError::NotNotification => f.write_str("CPIM content disposition is not notification"),
            ImdnRouteError::Imdn(e) => write!(f, "IMDN XML: {e}"),
            ImdnRouteError::Tag(e) => write!(f, "IMDN message-id: {e}"),
            ImdnRouteError::UnknownSystem(s) => write!(f, "tag names unknown legacy system {s}"),
            ImdnRouteError::BadRecipient(e) => write!(f, "IMDN sender has no number: {e}"),
            ImdnRouteError::BadOriginator(e) => write!(f, "IMDN recipient is no legacy user: {e}"),
            ImdnRouteError::Receipt(e) => write!(f, "receipt text: {e}"),
            ImdnRouteError::Emit(e) => write!(f, "receipt PDU: {e}"),
        }
    }
}

impl std::error::Error for ImdnRouteError {}

/// The canonical state of an IMDN notification:
/// delivered → Delivered, failed → Failed, forbidden → Rejected, error → Unknown,
/// displayed → Displayed, any processing notification → Buffered; display
/// forbidden/error have no state (`None`).
pub fn notification_state(n: Notification) -> Option<ReceiptState> {
    Some(match n {
        Notification::Delivery(DeliveryStatus::Delivered) => ReceiptState::Delivered,
        Notification::Delivery(DeliveryStatus::Failed) => ReceiptState::Failed,
        Notification::Delivery(DeliveryStatus::Forbidden) => ReceiptState::Rejected,
        Notification::Delivery(DeliveryStatus::Error) => ReceiptState::Unknown,
        Notification::Display(DisplayStatus::Displayed) => ReceiptState::Displayed,
        Notification::Display(_) => return None,
        Notification::Processing(_) => ReceiptState::Buffered,
    })
}

/// Whether a receipt in `state` was asked for by a system with these tag bits and
/// user-ack support. Buffered is never relayed.
pub fn receipt_wanted(state: ReceiptState, receipts: ReceiptRequest, user_ack: bool) -> bool {
    match state {
        ReceiptState::Delivered => receipts.contains(ReceiptRequest::DELIVERY),
        ReceiptState::Failed | ReceiptState::Rejected | ReceiptState::Unknown => {
            receipts.contains(ReceiptRequest::FAILURE)
        }
        ReceiptState::Displayed => user_ack && receipts.contains(ReceiptRequest::USER_ACK),
        ReceiptState::Buffered => false,
    }
}

/// The SMPP rendering of a receipt state: `message_state`, and for failures the
/// `network_error_code` (network type 3, GSM MAP error) also written as `err:` in the
/// text:
///
/// | state | message_state | stat | network_error_code / err |
/// |---|---|---|---|
/// | Delivered, Displayed | DELIVERED 2 | DELIVRD | none / 000 |
/// | Failed (IMDN failed) | UNDELIVERABLE 5 | UNDELIV | GSM 32 smDeliveryFailure / 032 |
/// | Rejected (IMDN forbidden) | REJECTED 8 | REJECTD | GSM 13 callBarred / 013 |
/// | Unknown (IMDN error) | UNKNOWN 7 | UNKNOWN | GSM 34 systemFailure / 034 |
/// | Buffered | ENROUTE 1 | ENROUTE | none / 000 (never sent) |
pub fn smpp_state(state: ReceiptState) -> (MessageState, Option<NetworkErrorCode>) {
    let gsm = |code| Some(NetworkErrorCode { network_type: NetworkErrorCode::GSM, error_code: code });
    match state {
        ReceiptState::Delivered | ReceiptState::Displayed => (MessageState::Delivered, None),
        ReceiptState::Failed => (MessageState::Undeliverable, gsm(32)),
        ReceiptState::Rejected => (MessageState::Rejected, gsm(13)),
        ReceiptState::Unknown => (MessageState::Unknown, gsm(34)),
        ReceiptState::Buffered => (MessageState::Enroute, None),
    }
}

/// Converts an IMDN (a SIP MESSAGE datagram, or one framed message off a stream) into
/// the SMPP receipts of the legacy system its tag names. See [`imdn_message_to_receipts`] for the parsed-message form.
pub fn imdn_to_receipts<'e, E: Into<LegacyExchange<'e>>>(
    sip: &[u8],
    keys: &KeyRing,
    now_unix: u64,
    exchange_of: impl Fn(u16) -> Option<E>,
    first_sequence: u32,
    out: &mut [u8],
) -> Result<ReceiptOutcome, ImdnRouteError> {
    let mut headers = [Header::EMPTY; MAX_SIP_HEADERS];
    let msg = match Parser::datagram().parse(sip, &mut headers) {
        Ok(Status::Complete(_, m)) => m,
        Ok(Status::Partial) => return Err(ImdnRouteError::Sip(sip::Error::Truncated)),
        Err(e) => return Err(ImdnRouteError::Sip(e)),
    };
    imdn_message_to_receipts(&msg, keys, now_unix, exchange_of, first_sequence, out)
}

/// Like [`imdn_to_receipts`], for a SIP message the caller already parsed (its
/// transaction layer needs it too).
///
/// Steps: the request must be a MESSAGE with a `message/cpim` body whose content is
/// `message/imdn+xml` with `Content-Disposition: notification` (RFC 5438 §7.1); the
/// `<message-id>` must verify as a tag; the tag's system must be provisioned; the
/// notification's state must be one the system asked for. Then one PDU per segment
/// (`segment_count` from the tag; segment `i` carries `fields.segment(i)` as
/// `receipted_message_id` and `id:`), toward the system in its bind direction:
///
/// | direction | delivery / failure | display |
/// |---|---|---|
/// | legacy binds to iwf | deliver_sm, esm_class 0x04 | deliver_sm, esm_class 0x10 |
/// | iwf binds to legacy | submit_sm, esm_class 0x08 | submit_sm, esm_class 0x10 |
///
/// `source_addr` is the converged recipient (the IMDN's CPIM `From`, else
/// `<recipient-uri>`) as TON 1 / NPI 1 E.164 digits; `destination_addr` the legacy
/// originator (the IMDN's CPIM `To`: `sip:+E.164@legacy_domain`, TON 1 / NPI 1, or a
/// sender name, TON 5 / NPI 0). TLVs: `receipted_message_id`, `message_state`,
/// `network_error_code` for failures ([`smpp_state`]). `short_message` is the canonical
/// Appendix-B text: `id:<segment tag> sub:001 dlvrd:001|000 submit date:<tag issue
/// time> done date:<IMDN's CPIM DateTime, else now> stat:… err:… text:` (UTC). A tag
/// naming one segment (index ≥ 1) yields that segment's receipt only.
pub fn imdn_message_to_receipts<'e, E: Into<LegacyExchange<'e>>>(
    msg: &Message<'_, '_>,
    keys: &KeyRing,
    now_unix: u64,
    exchange_of: impl Fn(u16) -> Option<E>,
    first_sequence: u32,
    out: &mut [u8],
) -> Result<ReceiptOutcome, ImdnRouteError> {
    let mut cheaders = [EMPTY_HEADER; MAX_CPIM_HEADERS];
    let content = SipContent::of(msg, &mut cheaders);
    imdn_content_to_receipts(msg, &content, keys, now_unix, exchange_of, first_sequence, out)
}

/// [`imdn_message_to_receipts`] for a MESSAGE whose body was looked at already
/// ([`SipContent::of`]): the caller that may go on with the message as a converged
/// user's text parses its CPIM once for both.
pub fn imdn_content_to_receipts<'e, E: Into<LegacyExchange<'e>>>(
    msg: &Message<'_, '_>,
    content: &SipContent<'_, '_>,
    keys: &KeyRing,
    now_unix: u64,
    exchange_of: impl Fn(u16) -> Option<E>,
    first_sequence: u32,
    out: &mut [u8],
) -> Result<ReceiptOutcome, ImdnRouteError> {
    if msg.method() != Some(Method::Message) {
        return Err(ImdnRouteError::NotMessage);
    }
    let cm = match content {
        SipContent::Cpim(cm) => cm,
        SipContent::BadCpim(e) => return Err(ImdnRouteError::Cpim(*e)),
        SipContent::Plain(_) => return Err(ImdnRouteError::NotCpim),
    };
    let env = Envelope::of(cm);
    if !media_essence_is(env.content_type, b"message/imdn+xml") {
        return Err(ImdnRouteError::NotImdn);
    }
    if !media_essence_is(env.content_disposition, b"notification") {
        return Err(ImdnRouteError::NotNotification);
    }
    let imdn = Imdn::parse(cm.content).map_err(ImdnRouteError::Imdn)?;

    // The tag.
    let mut id_buf = [0u8; TAG_LEN];
    let id = xml_text(&imdn.message_id, &mut id_buf).ok_or(ImdnRouteError::Tag(TagError::BadLength))?;
    let id = id.trim_ascii();
    // The parties the IMDN names (CPIM first, then the SIP header fields and the IMDN's
    // own URIs): the tag's MAC picks the message's own among them, so a replay or a
    // rewritten IMDN cannot address the receipt to anyone else.
    // The CPIM pair comes first: a conforming UA copies it from the message (To and
    // From swapped), so it verifies alone and the other fields are not read; only when
    // it does not is every pair tried (the first of which is that same pair).
    let mut primary_name = [0u8; ALPHA_MAX];
    let primary = primary_parties(&env, &mut primary_name);
    let fields = verify_tag(msg, &env, &imdn, id, keys, now_unix, primary.as_ref().map(|(p, ..)| *p))?;
    // Verified, so exactly TAG_LEN characters of the tag alphabet; canonical case.
    let mut message_id = [0u8; TAG_LEN];
    if let Some(src) = id.get(..TAG_LEN) {
        message_id.copy_from_slice(src);
    }
    message_id.make_ascii_lowercase();
    let system = fields.system;
    let exchange = match exchange_of(system).ok_or(ImdnRouteError::UnknownSystem(system))?.into() {
        LegacyExchange::Smpp(e) => e,
        LegacyExchange::Mms => {
            return Ok(ReceiptOutcome::Mms { system, notification: imdn.notification, fields, message_id })
        }
    };

    // Asked for?
    let Some(state) = notification_state(imdn.notification) else {
        return Ok(ReceiptOutcome::NotRelayed { system, notification: imdn.notification });
    };
    if state == ReceiptState::Buffered {
        return Ok(ReceiptOutcome::NotRelayed { system, notification: imdn.notification });
    }
    if !receipt_wanted(state, fields.receipts, exchange.user_ack) {
        return Ok(ReceiptOutcome::NotRequested { system, state });
    }

    // Addresses: those the tag authenticated; a version 0 tag's from the CPIM headers.
    let mut name_buf = [0u8; ALPHA_MAX];
    let signed_primary = primary.filter(|(p, ..)| *p == fields.parties && !fields.parties.is_none());
    let (recipient, originator) = match signed_primary {
        Some((_, recipient, originator)) => (recipient, originator),
        None => receipt_parties(&env, &imdn, &fields, &mut name_buf)?,
    };
    let (rton, rnpi, rdigits) = NumberingPlan::to_smpp(&recipient);
    let originator_number;
    let destination = match originator {
        LegacyParty::Number(m) => {
            originator_number = m;
            let (ton, npi, digits) = NumberingPlan::to_smpp(&originator_number);
            Address::new(ton.0, npi.0, digits.as_bytes())
        }
        LegacyParty::Name(n) => Address::new(Ton::ALPHANUMERIC.0, Npi::UNKNOWN.0, n.as_bytes()),
    };
    let source = Address::new(rton.0, rnpi.0, rdigits.as_bytes());

    // Dates (UTC).
    let done_unix = match env.datetime.map(DateTime::parse) {
        Some(Ok(dt)) => dt.unix_seconds(),
        _ => i64::try_from(now_unix).unwrap_or(i64::MAX),
    };
    let submit_date = receipt_date(i64::try_from(fields.issued_unix()).unwrap_or(0));
    let done_date = receipt_date(done_unix);

    let esm_class = EsmClass(match (exchange.direction, state) {
        (_, ReceiptState::Displayed) => EsmClass::SME_USER_ACK,
        (BindDirection::LegacyBindsToIwf, _) => EsmClass::SMSC_DELIVERY_RECEIPT,
        (BindDirection::IwfBindsToLegacy, _) => EsmClass::SME_DELIVERY_ACK,
    });
    let (message_state, network_error) = smpp_state(state);
    let err: &[u8] = match network_error {
        Some(NetworkErrorCode { error_code: 13, .. }) => b"013",
        Some(NetworkErrorCode { error_code: 32, .. }) => b"032",
        Some(NetworkErrorCode { error_code: 34, .. }) => b"034",
        _ => b"000",
    };
    let delivered = matches!(state, ReceiptState::Delivered | ReceiptState::Displayed);

    let parts = ReceiptParts {
        source,
        destination,
        esm_class,
        message_state,
        network_error,
        err,
        delivered,
        submit_date,
        done_date,
        direction: exchange.direction,
    };
    let (count, pos) = write_receipts(keys, &fields, message_id, &parts, first_sequence, out)?;
    Ok(ReceiptOutcome::Receipts { system, state, count, len: pos, message_id })
}

/// The tag `id` verified against the `primary` pair first, then against every pair the
/// IMDN names; an IMDN that names none is refused for the party it lacks.
fn verify_tag(
    msg: &Message<'_, '_>,
    env: &Envelope<'_>,
    imdn: &Imdn<'_>,
    id: &[u8],
    keys: &KeyRing,
    now_unix: u64,
    primary: Option<Parties>,
) -> Result<TagFields, ImdnRouteError> {
    let verified = match primary {
        Some(p) => keys.verify(id, now_unix, &[p]),
        None => Err(TagError::BadMac),
    };
    match verified {
        Err(TagError::BadMac) => {
            let mut candidates = [Parties::NONE; MAX_CANDIDATES];
            let n = party_candidates(msg, env, imdn, &mut candidates);
            if n == 0 {
                // No pair to verify with: say which party the IMDN fails to name.
                converged_number(env.from, imdn)?;
                let to = cpim::CpimAddress::parse(env.to.ok_or(ImdnRouteError::Cpim(CpimError::MissingTo))?)
                    .map_err(ImdnRouteError::Cpim)?;
                legacy_party_from_uri(to.uri, &mut [0u8; ALPHA_MAX])?;
            }
            keys.verify(id, now_unix, candidates.get(..n).unwrap_or(&[]))
        }
        other => other,
    }
    .map_err(ImdnRouteError::Tag)
}

/// The converged recipient and the legacy originator of the receipts: those the tag
/// authenticated, or for a version 0 tag the IMDN's CPIM headers.
fn receipt_parties<'n>(
    env: &Envelope<'_>,
    imdn: &Imdn<'_>,
    fields: &TagFields,
    name_buf: &'n mut [u8; ALPHA_MAX],
) -> Result<(Msisdn, LegacyParty<'n>), ImdnRouteError> {
    Ok(if fields.parties.is_none() {
        let recipient = converged_number(env.from, imdn)?;
        let to = cpim::CpimAddress::parse(env.to.ok_or(ImdnRouteError::Cpim(CpimError::MissingTo))?)
            .map_err(ImdnRouteError::Cpim)?;
        (recipient, legacy_party_from_uri(to.uri, name_buf)?)
    } else {
        let p = &fields.parties;
        let recipient = Msisdn::parse(p.recipient()).map_err(ImdnRouteError::BadRecipient)?;
        let originator = match p.originator() {
            Originator::Number(d) => LegacyParty::Number(Msisdn::parse(d).map_err(ImdnRouteError::BadOriginator)?),
            Originator::Name(n) => {
                let b = name_buf.get_mut(..n.len()).ok_or(ImdnRouteError::BadOriginator(AddressError::TooLong))?;
                b.copy_from_slice(n.as_bytes());
                LegacyParty::Name(core::str::from_utf8(b).unwrap_or_default())
            }
        };
        (recipient, originator)
    })
}

/// What every receipt PDU of one IMDN shares.
struct ReceiptParts<'a> {
    source: Address<'a>,
    destination: Address<'a>,
    esm_class: EsmClass,
    message_state: MessageState,
    network_error: Option<NetworkErrorCode>,
    err: &'static [u8],
    delivered: bool,
    submit_date: Option<ReceiptDate>,
    done_date: Option<ReceiptDate>,
    direction: BindDirection,
}

/// The receipt PDUs for the segments `fields` names (one, or every segment of the
/// message), numbered from `first_sequence`, into `out`: how many, and their length.
fn write_receipts(
    keys: &KeyRing,
    fields: &TagFields,
    message_id: [u8; TAG_LEN],
    p: &ReceiptParts<'_>,
    first_sequence: u32,
    out: &mut [u8],
) -> Result<(u8, usize), ImdnRouteError> {
    let segments =
        if fields.segment_index != 0 { fields.segment_index..=fields.segment_index } else { 1..=fields.segment_count };
    let out_len = out.len();
    let mut pos = 0usize;
    let mut count = 0u8;
    for i in segments {
        // The message's own tag (single part) is the verified id in canonical (lower)
        // case; other segments' tags are signed afresh.
        let seg_fields = fields.segment(i);
        let seg_id: [u8; TAG_LEN] = if seg_fields == *fields {
            message_id
        } else {
            let tag =
                if fields.parties.is_none() { keys.encode_unbound(&seg_fields) } else { keys.encode(&seg_fields) };
            *tag.map_err(|_| ImdnRouteError::Tag(TagError::UnknownKey))?.as_bytes()
        };
        let seg_id = &seg_id;
        let mut text = [0u8; crate::wire::smpp::receipt::RECEIPT_MAX_LEN];
        let receipt = Receipt {
            id: Some(seg_id),
            sub: Some(1),
            dlvrd: Some(u16::from(p.delivered)),
            submit_date: p.submit_date,
            done_date: p.done_date,
            stat: Some(ReceiptStat::from_message_state(p.message_state)),
            err: Some(p.err),
            text: Some(b""),
        };
        let text_len = receipt.emit(&mut text).map_err(ImdnRouteError::Receipt)?;
        let mut tlv_buf = [0u8; 64];
        let mut tlvs = TlvWriter::new(&mut tlv_buf);
        tlvs.receipted_message_id(seg_id)
            .and_then(|w| w.message_state(p.message_state))
            .map_err(ImdnRouteError::Emit)?;
        if let Some(code) = p.network_error {
            tlvs.network_error_code(code).map_err(ImdnRouteError::Emit)?;
        }
        let sm = SubmitSm {
            source: p.source,
            destination: p.destination,
            esm_class: p.esm_class,
            short_message: text.get(..text_len).unwrap_or_default(),
            tlvs: Tlvs::Raw(tlvs.as_bytes()),
            ..SubmitSm::default()
        };
        let body = match p.direction {
            BindDirection::LegacyBindsToIwf => Body::DeliverSm(sm),
            BindDirection::IwfBindsToLegacy => Body::SubmitSm(sm),
        };
        let pdu = Pdu::new(first_sequence.wrapping_add(u32::from(count)), body);
        let dst = out.get_mut(pos..).unwrap_or_default();
        let written = pdu.emit(dst).map_err(|e| {
            ImdnRouteError::Emit(match e {
                EmitError::BufferTooSmall { needed, .. } => {
                    EmitError::BufferTooSmall { needed: pos.saturating_add(needed), available: out_len }
                }
                e => e,
            })
        })?;
        pos = pos.saturating_add(written);
        count = count.saturating_add(1);
    }
    Ok((count, pos))
}

/// Most party pairs an IMDN is verified against (3 originators × 4 recipients).
const MAX_CANDIDATES: usize = 12;

/// The pair of the IMDN's CPIM `To` (the legacy user) and `From` (the converged user):
/// the first [`party_candidates`] yields, without reading anything else.
/// With the pair, the two parties as read (the converged user's number, the legacy
/// user), so that a tag signed for them need not be read again.
fn primary_parties<'n>(
    env: &Envelope<'_>,
    name_buf: &'n mut [u8; ALPHA_MAX],
) -> Option<(Parties, Msisdn, LegacyParty<'n>)> {
    let to = cpim::CpimAddress::parse(env.to?).ok()?.uri;
    let from = uri_msisdn(cpim::CpimAddress::parse(env.from?).ok()?.uri).ok()?;
    let legacy = legacy_party_from_uri(to, name_buf).ok()?;
    let parties = match legacy {
        LegacyParty::Number(m) => Parties::new(Originator::Number(m.digits()), from.digits()),
        LegacyParty::Name(n) => Parties::new(Originator::Name(n), from.digits()),
    }?;
    Some((parties, from, legacy))
}

/// The (originator, recipient) pairs an IMDN names, deduplicated, into `out`; returns
/// how many. Originators: the CPIM `To`, the SIP `To`, the Request-URI (the legacy
/// user, as a number or a sender name). Recipients: the CPIM `From`, the IMDN's
/// `<recipient-uri>` and `<original-recipient-uri>`, the SIP `From` (a number).
fn party_candidates(msg: &Message<'_, '_>, env: &Envelope<'_>, imdn: &Imdn<'_>, out: &mut [Parties]) -> usize {
    let mut originators: [Option<Parties>; 3] = [None; 3];
    let mut name_buf = [0u8; ALPHA_MAX];
    let sip_to = msg.to().ok().map(|t| t.uri.as_str().as_bytes());
    let cpim_to = env.to.and_then(|t| cpim::CpimAddress::parse(t).ok()).map(|t| t.uri);
    let r_uri = msg.request_line().map(|r| r.uri.as_bytes());
    for (slot, uri) in originators.iter_mut().zip([cpim_to, sip_to, r_uri]) {
        let Some(uri) = uri else { continue };
        *slot = match legacy_party_from_uri(uri, &mut name_buf) {
            Ok(LegacyParty::Number(m)) => Parties::new(Originator::Number(m.digits()), ""),
            Ok(LegacyParty::Name(n)) => Parties::new(Originator::Name(n), ""),
            Err(_) => None,
        };
    }
    let mut recipients: [Option<Msisdn>; 4] = [None; 4];
    recipients[0] = env.from.and_then(|f| cpim::CpimAddress::parse(f).ok()).and_then(|f| uri_msisdn(f.uri).ok());
    let mut buf = [0u8; LINE_MAX];
    for (slot, x) in recipients[1..3].iter_mut().zip([&imdn.recipient_uri, &imdn.original_recipient_uri]) {
        *slot = x.as_ref().and_then(|x| xml_text(x, &mut buf).and_then(|u| uri_msisdn(u).ok()));
    }
    recipients[3] = msg.from().ok().and_then(|f| uri_msisdn(f.uri.as_str().as_bytes()).ok());
    let mut n = 0;
    for o in originators.iter().flatten() {
        for r in recipients.iter().flatten() {
            let Some(p) = Parties::new(o.originator(), r.digits()) else { continue };
            if out.get(..n).is_some_and(|seen| seen.contains(&p)) {
                continue;
            }
            let Some(slot) = out.get_mut(n) else { return n };
            *slot = p;
            n += 1;
        }
    }
    n
}

/// The telephone number of the converged user who sent the IMDN: CPIM `From`, else the
/// IMDN `<recipient-uri>`.
fn converged_number(from: Option<&[u8]>, imdn: &Imdn<'_>) -> Result<Msisdn, ImdnRouteError> {
    let from_err = match from.map(cpim::CpimAddress::parse) {
        Some(Ok(from)) => match uri_msisdn(from.uri) {
            Ok(m) => return Ok(m),
            Err(e) => e,
        },
        _ => AddressError::Empty,
    };
    let Some(r) = &imdn.recipient_uri else {
        return Err(ImdnRouteError::BadRecipient(from_err));
    };
    let mut buf = [0u8; LINE_MAX];
    let uri = xml_text(r, &mut buf).ok_or(ImdnRouteError::BadRecipient(AddressError::TooLong))?;
    uri_msisdn(uri).map_err(ImdnRouteError::BadRecipient)
}

/// The E.164 number a URI names, as [`msisdn_from_uri`] reads it, with a fast path for
/// the forms iwf mints and IMS cores send (`sip:+<digits>[;params]@…`,
/// `tel:+<digits>[;params]`); anything else takes the general path.
pub fn uri_msisdn(uri: &[u8]) -> Result<Msisdn, AddressError> {
    let scheme = |b: &[u8], name: &[u8; 3]| b.iter().zip(name).all(|(c, n)| c | 0x20 == *n);
    let fast = match uri {
        [a, b, c, b':', b'+', rest @ ..] if scheme(&[*a, *b, *c], b"sip") => Some((rest, true)),
        [a, b, c, b':', b'+', rest @ ..] if scheme(&[*a, *b, *c], b"tel") => Some((rest, false)),
        _ => None,
    };
    if let Some((rest, sip)) = fast {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let term_ok = match rest.get(n) {
            Some(b'@') => sip,
            None => !sip,
            Some(b';') => !sip || rest.get(n..).is_some_and(|r| r.contains(&b'@')),
            Some(_) => false,
        };
        if n > 0 && term_ok {
            if let Some(digits) = rest.get(..n) {
                return Msisdn::from_ascii_digits(digits);
            }
        }
    }
    core::str::from_utf8(uri).map_err(|_| AddressError::BadCharacter).and_then(msisdn_from_uri)
}

/// The legacy user a URI iwf minted names: `sip:+E.164@…` (or `tel:`), or a sender name
/// `sip:<escaped name>@…` (unescaped into `name_buf`).
fn legacy_party_from_uri<'b>(uri: &[u8], name_buf: &'b mut [u8; ALPHA_MAX]) -> Result<LegacyParty<'b>, ImdnRouteError> {
    let bad = ImdnRouteError::BadOriginator;
    match uri_msisdn(uri) {
        Ok(m) => return Ok(LegacyParty::Number(m)),
        Err(AddressError::UnsupportedUri) => {}
        Err(e) => return Err(bad(e)),
    }
    let uri = core::str::from_utf8(uri).map_err(|_| bad(AddressError::BadCharacter))?;
    let rest = match uri.get(..4) {
        Some(s) if s.eq_ignore_ascii_case("sip:") => uri.get(4..).unwrap_or_default(),
        _ => return Err(bad(AddressError::UnsupportedUri)),
    };
    let user = rest.split('@').next().filter(|_| rest.contains('@')).ok_or(bad(AddressError::UnsupportedUri))?;
    let user = user.split(';').next().unwrap_or_default();
    let name = sip::unescape_into(user, name_buf).map_err(|_| bad(AddressError::TooLong))?;
    let name = core::str::from_utf8(name).map_err(|_| bad(AddressError::BadCharacter))?;
    let plan = NumberingPlan::default();
    match plan.from_smpp(SmppAddress { ton: Ton::ALPHANUMERIC, npi: Npi::UNKNOWN, addr: name }) {
        Ok(p) => Ok(p),
        Err(e) => Err(bad(e)),
    }
}

/// The CPIM headers an IMDN is read by, found in one pass over the header lines (the
/// first of each wins, as in [`cpim::CpimMessage::header`]).
#[derive(Default)]
struct Envelope<'a> {
    /// `From` (the converged user who sends the IMDN).
    from: Option<&'a [u8]>,
    /// `To` (the legacy originator).
    to: Option<&'a [u8]>,
    /// `DateTime` (when the notification was made).
    datetime: Option<&'a [u8]>,
    /// MIME part `Content-Type`.
    content_type: &'a [u8],
    /// MIME part `Content-Disposition`.
    content_disposition: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn of(cm: &cpim::CpimMessage<'_, 'a>) -> Envelope<'a> {
        let mut e = Envelope::default();
        for h in cm.message_headers {
            // Unprefixed names are the core CPIM headers (RFC 3862 §3.4).
            if !h.prefix.is_empty() {
                continue;
            }
            let slot = match h.name.len() {
                4 if eq_ci(h.name, b"From") => &mut e.from,
                2 if eq_ci(h.name, b"To") => &mut e.to,
                8 if eq_ci(h.name, b"DateTime") => &mut e.datetime,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(h.value);
            }
        }
        let (mut ct, mut cd) = (None, None);
        for h in cm.content_headers {
            let slot = match h.name.len() {
                12 if eq_ci(h.name, b"Content-Type") => &mut ct,
                19 if eq_ci(h.name, b"Content-Disposition") => &mut cd,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(h.value);
            }
        }
        e.content_type = ct.unwrap_or_default();
        e.content_disposition = cd.unwrap_or_default();
        e
    }
}

/// The literal text of an XML value, into `buf` when it has entity references.
fn xml_text<'b>(t: &XmlText<'b>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    match t.as_plain() {
        Some(p) => Some(p),
        None => t.unescape_into(buf).ok(),
    }
}

/// A receipt date (UTC, `YYMMDDhhmm`) for a Unix time.
fn receipt_date(unix: i64) -> Option<ReceiptDate> {
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = crate::wire::cpim::civil_from_days(unix.div_euclid(86_400));
    ReceiptDate::new(
        u8::try_from(y.rem_euclid(100)).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(d).ok()?,
        u8::try_from(secs / 3600).ok()?,
        u8::try_from(secs % 3600 / 60).ok()?,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interwork::{Concatenation, IdCanonicalisation};
    use crate::tag::TagKey;
    use crate::wire::imdn::ProcessingStatus;
    use crate::wire::sip::parse_datagram;
    use crate::wire::smpp::{CommandId, MessageIdResp};
    use proptest::prelude::*;

    const NOW: u64 = 1_790_000_000; // 2026-09-21T14:13:20Z
    const UK: NumberingPlan<'static> = NumberingPlan { country_code: Some("44"), trunk_prefix: "0" };
    const CONVERGED: ConvergedSide<'static> = ConvergedSide {
        legacy_domain: "iwf.ims.lab",
        converged_domain: "ims.lab",
        local_sent_by: "198.18.2.2:5060",
        transport: "UDP",
    };
    const LEGACY_NUM: &str = "447000100001";
    const CONV_NUM: &str = "447000200001";

    /// A tag as `<message-id>` reports it: lower case.
    fn lower(tag: &str) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.to_ascii_lowercase().as_bytes());
        out
    }

    fn ring() -> KeyRing {
        let mut r = KeyRing::new(1).unwrap();
        r.insert(1, TagKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
        r
    }

    fn exchange(system: u16, direction: BindDirection, user_ack: bool) -> Exchange<'static> {
        Exchange {
            system,
            name: "smsc-a",
            direction,
            default_encoding: Encoding::Gsm7,
            user_ack,
            concatenation: Concatenation::Udh8,
            ids: IdCanonicalisation::Exact,
            numbering: UK,
        }
    }

    fn legacy(text: &[u8], dc: u8, rd: u8) -> LegacyMessage<'_> {
        LegacyMessage {
            source: Address::international(LEGACY_NUM.as_bytes()),
            destination: Address::international(CONV_NUM.as_bytes()),
            data_coding: dc,
            registered_delivery: RegisteredDelivery(rd),
            esm_class: EsmClass::DEFAULT,
            user_data: UserData::Single(text),
        }
    }

    /// Converts and returns (SIP bytes, result).
    fn convert(msg: &LegacyMessage<'_>, ex: &Exchange<'_>) -> (Vec<u8>, ConvertedMessage) {
        let mut scratch = [0u8; 4096];
        let mut out = [0u8; 4096];
        let r = legacy_to_sip(msg, ex, &CONVERGED, None, &ring(), 77, NOW, &mut scratch, &mut out).unwrap();
        (out[..r.len].to_vec(), r)
    }

    /// An IMDN as a converged client sends it (RFC 5438 §7.2, §9).
    fn imdn_sip(tag: &[u8], n: Notification, from: &str, to: &str, dt: i64) -> Vec<u8> {
        imdn_sip_with(tag, n, from, to, dt, None)
    }

    fn imdn_sip_with(tag: &[u8], n: Notification, from: &str, to: &str, dt: i64, rcpt: Option<&str>) -> Vec<u8> {
        let imdn = Imdn {
            message_id: XmlText::plain(tag),
            datetime: DateTime::from_unix(NOW as i64),
            recipient_uri: rcpt.map(|r| XmlText::plain(r.as_bytes())),
            original_recipient_uri: None,
            subject: None,
            notification: n,
        };
        let mut xml = [0u8; 1024];
        let xn = imdn.emit(&mut xml).unwrap();
        let cpim = CpimRepr {
            from: cpim::CpimAddress::new(b"", from.as_bytes()),
            to: cpim::CpimAddress::new(b"", to.as_bytes()),
            datetime: DateTime::from_unix(dt),
            message_id: b"imdn-own-id-1",
            dispositions: Dispositions::empty(),
            imdn_record_route: None,
            content_type: b"message/imdn+xml",
            content_disposition: Some(b"notification"),
            content: &xml[..xn],
        };
        let mut body = [0u8; 2048];
        let bn = cpim.emit(&mut body).unwrap();
        let mut out = [0u8; 4096];
        let mut w = MessageWriter::request(&mut out, Method::Message, to).unwrap();
        w.header("Via", "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bKimdn1").unwrap();
        w.header("Max-Forwards", "69").unwrap();
        w.header("From", &format!("<{from}>;tag=c1")).unwrap();
        w.header("To", &format!("<{to}>")).unwrap();
        w.header("Call-ID", "imdn-call-1@198.18.2.1").unwrap();
        w.header("CSeq", "1 MESSAGE").unwrap();
        w.header("Content-Type", "message/cpim").unwrap();
        let n = w.finish(&body[..bn]).unwrap();
        out[..n].to_vec()
    }

    fn conv_uri() -> String {
        format!("sip:+{CONV_NUM}@ims.lab;user=phone")
    }
    fn legacy_uri() -> String {
        format!("sip:+{LEGACY_NUM}@iwf.ims.lab;user=phone")
    }

    fn delivered() -> Notification {
        Notification::Delivery(DeliveryStatus::Delivered)
    }

    /// Runs an IMDN for `tag` through imdn_to_receipts for system `ex`.
    fn receipts(
        tag: &[u8],
        n: Notification,
        ex: Exchange<'static>,
    ) -> (Result<ReceiptOutcome, ImdnRouteError>, Vec<u8>) {
        let sip = imdn_sip(tag, n, &conv_uri(), &legacy_uri(), NOW as i64 + 90);
        let mut out = vec![0u8; 255 * RECEIPT_PDU_MAX_LEN];
        let r = imdn_to_receipts(&sip, &ring(), NOW + 120, |s| (s == ex.system).then_some(ex), 1000, &mut out);
        let len = match r {
            Ok(ReceiptOutcome::Receipts { len, .. }) => len,
            _ => 0,
        };
        out.truncate(len);
        (r, out)
    }

    /// Splits back-to-back PDUs.
    fn pdus(mut b: &[u8]) -> Vec<Pdu<'_>> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            assert!(len <= RECEIPT_PDU_MAX_LEN, "receipt PDU of {len} octets");
            v.push(Pdu::parse(&b[..len]).unwrap());
            b = &b[len..];
        }
        v
    }

    fn body_sm<'a>(p: &Pdu<'a>) -> SubmitSm<'a> {
        match p.body {
            Body::DeliverSm(sm) | Body::SubmitSm(sm) => sm,
            other => panic!("unexpected body {other:?}"),
        }
    }

    fn date_digits(unix: i64) -> String {
        let mut b = [0u8; DateTime::MAX_LEN];
        let n = DateTime::from_unix(unix).emit(&mut b).unwrap();
        let s = std::str::from_utf8(&b[..n]).unwrap();
        // YYYY-MM-DDTHH:MM:SSZ → YYMMDDhhmm
        format!("{}{}{}{}{}", &s[2..4], &s[5..7], &s[8..10], &s[11..13], &s[14..16])
    }

    #[test]
    fn submit_to_sip_round_trip_every_field() {
        // GSM-7 with extension characters (€ [ ] are escape pairs).
        let mut septets = [0u8; 64];
        let sn = gsm7::encode_unpacked("Hi €5 [ok]", &mut septets).unwrap();
        let msg = legacy(&septets[..sn], 0, 0x01);
        let (sip, r) = convert(&msg, &exchange(3, BindDirection::LegacyBindsToIwf, false));
        assert_eq!(r.len, sip.len());
        let tag = r.tag.as_str();
        assert_eq!(r.fields.system, 3);
        assert_eq!(r.fields.sequence, 77);
        assert_eq!(r.fields.segment_count, 1);
        assert_eq!(r.fields.segment_index, 0);
        assert_eq!(r.fields.minutes, TagFields::minutes_at(NOW));
        assert_eq!(r.fields.receipts, ReceiptRequest::DELIVERY.union(ReceiptRequest::FAILURE));
        assert_eq!(ring().verify(tag.as_bytes(), NOW, &[r.fields.parties]), Ok(r.fields));
        // Signed for the message's own parties: the legacy sender and the converged user.
        assert_eq!(r.fields.parties.originator(), crate::tag::Originator::Number(LEGACY_NUM));
        assert_eq!(r.fields.parties.recipient(), CONV_NUM);

        let mut h = [Header::EMPTY; 32];
        let m = parse_datagram(&sip, &mut h).unwrap();
        let core = m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Message));
        assert_eq!(core.request_uri.unwrap().as_str(), conv_uri());
        assert_eq!(core.top_via.transport, "UDP");
        assert_eq!(core.top_via.branch(), Some(format!("z9hG4bK{tag}").as_str()));
        assert_eq!(core.max_forwards, Some(70));
        assert_eq!(core.from.uri.as_str(), legacy_uri());
        assert_eq!(core.from.tag(), Some(&tag[16..]));
        assert_eq!(core.to.uri.as_str(), conv_uri());
        assert_eq!(core.to.tag(), None);
        assert_eq!(core.call_id, format!("{tag}@198.18.2.2"));
        assert_eq!((core.cseq.number, core.cseq.method), (1, Method::Message));
        assert!(core.content_type.unwrap().is("message", "cpim"));
        assert_eq!(m.content_length(), Some(m.body.len()));

        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).unwrap();
        let repr = CpimRepr::parse(&c).unwrap();
        assert_eq!(repr.from.uri, legacy_uri().as_bytes());
        assert_eq!(repr.to.uri, conv_uri().as_bytes());
        assert_eq!(repr.message_id, tag.as_bytes());
        assert_eq!(repr.datetime.unix_seconds(), NOW as i64);
        assert_eq!(repr.dispositions, Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY);
        assert_eq!(repr.content_type, b"text/plain;charset=UTF-8");
        assert_eq!(repr.content, "Hi €5 [ok]".as_bytes());
        assert_eq!(r.dispositions, repr.dispositions);

        // The converged user's IMDN comes back as one deliver_sm.
        let (res, out) = receipts(tag.as_bytes(), delivered(), exchange(3, BindDirection::LegacyBindsToIwf, false));
        assert_eq!(
            res,
            Ok(ReceiptOutcome::Receipts {
                system: 3,
                state: ReceiptState::Delivered,
                count: 1,
                len: out.len(),
                message_id: lower(tag)
            })
        );
        let ps = pdus(&out);
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].command_id(), CommandId::DeliverSm);
        assert_eq!(ps[0].sequence_number, 1000);
        let sm = body_sm(&ps[0]);
        assert_eq!(sm.esm_class, EsmClass(0x04));
        assert_eq!(sm.source, Address::new(1, 1, CONV_NUM.as_bytes()));
        assert_eq!(sm.destination, Address::new(1, 1, LEGACY_NUM.as_bytes()));
        let seg = segment_tag(&ring(), &r.fields, 1).unwrap();
        assert_eq!(seg, r.tag, "a single-part message's segment id is the message tag");
        assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(seg.as_bytes().as_slice()));
        assert_eq!(sm.tlvs.message_state().unwrap(), Some(MessageState::Delivered));
        assert_eq!(sm.tlvs.network_error_code().unwrap(), None);
        let rc = Receipt::parse(sm.short_message).unwrap();
        assert_eq!(rc.id, Some(seg.as_bytes().as_slice()));
        assert_eq!((rc.sub, rc.dlvrd), (Some(1), Some(1)));
        assert_eq!(rc.stat, Some(ReceiptStat::Delivered));
        assert_eq!(rc.err, Some(&b"000"[..]));
        assert_eq!(rc.submit_date.unwrap().to_string(), date_digits(r.fields.issued_unix() as i64));
        assert_eq!(rc.done_date.unwrap().to_string(), date_digits(NOW as i64 + 90));
        assert_eq!(rc.text, Some(&b""[..]));
    }

    #[test]
    fn registered_delivery_variants() {
        let ex = exchange(5, BindDirection::LegacyBindsToIwf, false);
        let failed = Notification::Delivery(DeliveryStatus::Failed);
        let cases: [(u8, Dispositions, bool, bool); 4] = [
            (0x00, Dispositions::empty(), false, false),
            (0x01, Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY, true, true),
            (0x02, Dispositions::NEGATIVE_DELIVERY, false, true),
            (0x03, Dispositions::POSITIVE_DELIVERY, true, false),
        ];
        for (rd, disp, want_ok, want_fail) in cases {
            let msg = legacy(b"x", 0, rd);
            let (sip, r) = convert(&msg, &ex);
            assert_eq!(r.dispositions, disp, "rd {rd}");
            let mut h = [Header::EMPTY; 32];
            let m = parse_datagram(&sip, &mut h).unwrap();
            let mut ch = [EMPTY_HEADER; 16];
            assert_eq!(cpim::parse(m.body, &mut ch).unwrap().dispositions(), disp);
            for (n, want, state) in
                [(delivered(), want_ok, ReceiptState::Delivered), (failed, want_fail, ReceiptState::Failed)]
            {
                let (res, out) = receipts(r.tag.as_bytes(), n, ex);
                if want {
                    assert!(
                        matches!(res, Ok(ReceiptOutcome::Receipts { count: 1, state: s, .. }) if s == state),
                        "rd {rd} {n}: {res:?}"
                    );
                    let ps = pdus(&out);
                    let sm = body_sm(&ps[0]);
                    if state == ReceiptState::Failed {
                        assert_eq!(sm.tlvs.message_state().unwrap(), Some(MessageState::Undeliverable));
                        assert_eq!(
                            sm.tlvs.network_error_code().unwrap(),
                            Some(NetworkErrorCode { network_type: 3, error_code: 32 })
                        );
                        let rc = Receipt::parse(sm.short_message).unwrap();
                        assert_eq!(
                            (rc.stat, rc.dlvrd, rc.err),
                            (Some(ReceiptStat::Undeliverable), Some(0), Some(&b"032"[..]))
                        );
                    }
                } else {
                    assert_eq!(res, Ok(ReceiptOutcome::NotRequested { system: 5, state }), "rd {rd} {n}");
                    assert!(out.is_empty());
                }
            }
        }
    }

    #[test]
    fn rejected_and_unknown_map_to_their_states() {
        let ex = exchange(5, BindDirection::LegacyBindsToIwf, false);
        let (_, r) = convert(&legacy(b"x", 0, 0x01), &ex);
        for (status, ms, code, stat) in [
            (DeliveryStatus::Forbidden, MessageState::Rejected, 13, ReceiptStat::Rejected),
            (DeliveryStatus::Error, MessageState::Unknown, 34, ReceiptStat::Unknown),
        ] {
            let (res, out) = receipts(r.tag.as_bytes(), Notification::Delivery(status), ex);
            assert!(matches!(res, Ok(ReceiptOutcome::Receipts { count: 1, .. })), "{res:?}");
            let ps = pdus(&out);
            let sm = body_sm(&ps[0]);
            assert_eq!(sm.tlvs.message_state().unwrap(), Some(ms));
            assert_eq!(sm.tlvs.network_error_code().unwrap().map(|c| c.error_code), Some(code));
            assert_eq!(Receipt::parse(sm.short_message).unwrap().stat, Some(stat));
        }
    }

    #[test]
    fn display_only_with_user_ack() {
        let displayed = Notification::Display(DisplayStatus::Displayed);
        // rd 0x09: SMSC receipt on success or failure + SME manual/user ack.
        let with = exchange(2, BindDirection::LegacyBindsToIwf, true);
        let (_, r) = convert(&legacy(b"x", 0, 0x09), &with);
        assert!(r.dispositions.contains(Dispositions::DISPLAY));
        assert!(r.fields.receipts.contains(ReceiptRequest::USER_ACK));
        let (res, out) = receipts(r.tag.as_bytes(), displayed, with);
        assert_eq!(
            res,
            Ok(ReceiptOutcome::Receipts {
                system: 2,
                state: ReceiptState::Displayed,
                count: 1,
                len: out.len(),
                message_id: lower(r.tag.as_str())
            })
        );
        let ps = pdus(&out);
        let sm = body_sm(&ps[0]);
        assert_eq!(ps[0].command_id(), CommandId::DeliverSm);
        assert_eq!(sm.esm_class, EsmClass(0x10));
        assert_eq!(sm.tlvs.message_state().unwrap(), Some(MessageState::Delivered));
        // The system stopped supporting user acks since: nothing is sent.
        let without_now = exchange(2, BindDirection::LegacyBindsToIwf, false);
        assert_eq!(
            receipts(r.tag.as_bytes(), displayed, without_now).0,
            Ok(ReceiptOutcome::NotRequested { system: 2, state: ReceiptState::Displayed })
        );

        // A system without user acks is never promised a display notification.
        let without = exchange(2, BindDirection::LegacyBindsToIwf, false);
        let (_, r) = convert(&legacy(b"x", 0, 0x09), &without);
        assert!(!r.dispositions.contains(Dispositions::DISPLAY));
        assert!(!r.fields.receipts.contains(ReceiptRequest::USER_ACK));
        assert_eq!(
            receipts(r.tag.as_bytes(), displayed, with).0,
            Ok(ReceiptOutcome::NotRequested { system: 2, state: ReceiptState::Displayed })
        );
        // SME delivery ack alone (bits 3-2 = 01) asks for nothing.
        let (_, r) = convert(&legacy(b"x", 0, 0x04), &with);
        assert!(r.dispositions.is_empty());
        // Display forbidden / error and processing notifications are never relayed.
        let (_, r) = convert(&legacy(b"x", 0, 0x0d), &with);
        for n in [
            Notification::Display(DisplayStatus::Forbidden),
            Notification::Display(DisplayStatus::Error),
            Notification::Processing(ProcessingStatus::Stored),
            Notification::Processing(ProcessingStatus::Processed),
        ] {
            let (res, out) = receipts(r.tag.as_bytes(), n, with);
            assert_eq!(res, Ok(ReceiptOutcome::NotRelayed { system: 2, notification: n }));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn bad_tags_route_nowhere_each_with_its_reason() {
        let ex = exchange(3, BindDirection::LegacyBindsToIwf, false);
        let (_, r) = convert(&legacy(b"x", 0, 0x01), &ex);
        let good = *r.tag.as_bytes();
        // A forgery: well-formed fields, MAC made with a key iwf does not hold.
        let mut forger = KeyRing::new(1).unwrap();
        forger.insert(1, TagKey::from_bytes([0x42; 16])).unwrap();
        let forged = *forger.encode(&r.fields).unwrap().as_bytes();
        let mut altered = good;
        altered[31] = if altered[31] == b'0' { b'1' } else { b'0' };
        let reason = |tag: &[u8], keys: &KeyRing, now: u64| {
            let sip = imdn_sip(tag, delivered(), &conv_uri(), &legacy_uri(), NOW as i64);
            let mut out = [0u8; 1024];
            imdn_to_receipts(&sip, keys, now, |_| Some(ex), 1, &mut out).unwrap_err().reason()
        };
        let ring = ring();
        assert_eq!(reason(&forged, &ring, NOW), "tag_bad_mac");
        assert_eq!(reason(&altered, &ring, NOW), "tag_bad_mac");
        assert_eq!(reason(&good, &ring, NOW + 8 * 86_400), "tag_expired");
        assert_eq!(reason(&good, &ring, NOW - 3600), "tag_from_future");
        assert_eq!(reason(&good[..31], &ring, NOW), "tag_bad_length");
        assert_eq!(reason(&[b'v'; 32], &ring, NOW), "tag_unsupported_version");
        assert_eq!(reason(b"wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww", &ring, NOW), "tag_bad_character");
        let mut wrong_key = KeyRing::new(1).unwrap();
        wrong_key.insert(1, TagKey::from_bytes([9; 16])).unwrap();
        assert_eq!(reason(&good, &wrong_key, NOW), "tag_bad_mac");
        let mut other_id = KeyRing::new(2).unwrap();
        other_id.insert(2, TagKey::from_bytes([9; 16])).unwrap();
        assert_eq!(reason(&good, &other_id, NOW), "tag_unknown_key");
        // Upper case survives (tags decode case-insensitively).
        let upper = good.to_ascii_uppercase();
        let sip = imdn_sip(&upper, delivered(), &conv_uri(), &legacy_uri(), NOW as i64);
        let mut out = [0u8; 1024];
        assert!(imdn_to_receipts(&sip, &ring, NOW, |_| Some(ex), 1, &mut out).is_ok());
        // A valid tag of an unprovisioned system.
        assert_eq!(
            imdn_to_receipts(&sip, &ring, NOW, |_| None::<Exchange>, 1, &mut out),
            Err(ImdnRouteError::UnknownSystem(3))
        );
        // Every reason is distinct.
        let mut all: Vec<&str> = TagError::ALL.iter().map(|e| ImdnRouteError::Tag(*e).reason()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), TagError::ALL.len());
    }

    #[test]
    fn three_segments_three_receipts() {
        let ex = exchange(9, BindDirection::LegacyBindsToIwf, false);
        let parts: [&[u8]; 3] = [b"first part ", b"second part ", b"third"];
        let mut msg = legacy(b"", 0, 0x01);
        msg.user_data = UserData::Parts(&parts);
        let (sip, r) = convert(&msg, &ex);
        assert_eq!(r.fields.segment_count, 3);
        let mut h = [Header::EMPTY; 32];
        let m = parse_datagram(&sip, &mut h).unwrap();
        let mut ch = [EMPTY_HEADER; 16];
        assert_eq!(cpim::parse(m.body, &mut ch).unwrap().content, b"first part second part third");
        let ids: Vec<Tag> = (1..=3).map(|i| segment_tag(&ring(), &r.fields, i).unwrap()).collect();
        assert!(ids.iter().all(|t| *t != r.tag));
        let mut buf = [0u8; 40];
        assert_eq!(write_segment_message_id(&ring(), &r.fields, 2, &mut buf), Ok(32));
        assert_eq!(&buf[..32], ids[1].as_bytes());
        assert_eq!(write_segment_message_id(&ring(), &r.fields, 2, &mut buf[..31]), Err(ConvertError::OutputTooSmall));

        let (res, out) = receipts(r.tag.as_bytes(), delivered(), ex);
        assert!(matches!(res, Ok(ReceiptOutcome::Receipts { count: 3, system: 9, .. })));
        let ps = pdus(&out);
        assert_eq!(ps.len(), 3);
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.sequence_number, 1000 + i as u32);
            let sm = body_sm(p);
            assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(ids[i].as_bytes().as_slice()));
            assert_eq!(Receipt::parse(sm.short_message).unwrap().id, Some(ids[i].as_bytes().as_slice()));
            let f = crate::tag::decode_unauthenticated(ids[i].as_bytes()).unwrap().0;
            assert_eq!((f.system, f.segment_index, f.segment_count), (9, i as u8 + 1, 3));
        }
        // An IMDN naming one segment yields that segment's receipt only.
        let (res, out) = receipts(ids[1].as_bytes(), delivered(), ex);
        assert!(matches!(res, Ok(ReceiptOutcome::Receipts { count: 1, .. })));
        assert_eq!(body_sm(&pdus(&out)[0]).tlvs.receipted_message_id().unwrap(), Some(ids[1].as_bytes().as_slice()));
    }

    #[test]
    fn iwf_binds_to_legacy_gets_submit_sm() {
        let ex = exchange(4, BindDirection::IwfBindsToLegacy, true);
        let (_, r) = convert(&legacy(b"x", 0, 0x09), &ex);
        for (n, esm) in [(delivered(), 0x08), (Notification::Display(DisplayStatus::Displayed), 0x10)] {
            let (res, out) = receipts(r.tag.as_bytes(), n, ex);
            assert!(matches!(res, Ok(ReceiptOutcome::Receipts { count: 1, .. })));
            let ps = pdus(&out);
            assert_eq!(ps[0].command_id(), CommandId::SubmitSm);
            assert_eq!(body_sm(&ps[0]).esm_class, EsmClass(esm));
        }
    }

    #[test]
    fn text_codings() {
        let ex = exchange(1, BindDirection::LegacyBindsToIwf, false);
        let content = |msg: &LegacyMessage<'_>| {
            let (sip, _) = convert(msg, &ex);
            let mut h = [Header::EMPTY; 32];
            let m = parse_datagram(&sip, &mut h).unwrap();
            let mut ch = [EMPTY_HEADER; 16];
            String::from_utf8(cpim::parse(m.body, &mut ch).unwrap().content.to_vec()).unwrap()
        };
        // Latin-1.
        assert_eq!(content(&legacy(b"Gr\xfc\xdfe \xa3", 3, 0)), "Grüße £");
        // IA5.
        assert_eq!(content(&legacy(b"plain", 1, 0)), "plain");
        // UCS-2 with an emoji (surrogate pair).
        let mut u = [0u8; 64];
        let un = crate::wire::sms::ucs2::encode("Привет 😀!", &mut u).unwrap();
        assert_eq!(content(&legacy(&u[..un], 8, 0)), "Привет 😀!");
        // The pair split between two parts still decodes; so does a GSM-7 escape.
        let emoji_at = un - 6; // 😀 is 4 octets before "!"
        let parts: [&[u8]; 2] = [&u[..emoji_at + 2], &u[emoji_at + 2..un]];
        let mut m = legacy(b"", 8, 0);
        m.user_data = UserData::Parts(&parts);
        assert_eq!(content(&m), "Привет 😀!");
        let parts: [&[u8]; 2] = [b"a\x1b", b"\x65b"];
        let mut m = legacy(b"", 0, 0);
        m.user_data = UserData::Parts(&parts);
        assert_eq!(content(&m), "a€b");
        // data_coding 0 follows the system's default.
        let mut latin_default = ex;
        latin_default.default_encoding = Encoding::Latin1;
        let (sip, _) = convert(&legacy(b"\xe9", 0, 0), &latin_default);
        assert!(sip.ends_with("é".as_bytes()));
        // 0xF0 group, GSM-7 class 0.
        assert_eq!(content(&legacy(b"ok", 0xF0, 0)), "ok");
    }

    #[test]
    fn conversion_errors_and_their_statuses() {
        let ex = exchange(1, BindDirection::LegacyBindsToIwf, false);
        let run = |msg: &LegacyMessage<'_>| {
            let mut scratch = [0u8; 2048];
            let mut out = [0u8; 2048];
            legacy_to_sip(msg, &ex, &CONVERGED, None, &ring(), 1, NOW, &mut scratch, &mut out).unwrap_err()
        };
        let e = run(&legacy(b"\x00\x01", 4, 0));
        assert_eq!(e, ConvertError::UnsupportedDataCoding(4));
        assert_eq!(e.command_status(), CommandStatus::ESME_RINVDCS);
        assert_eq!(run(&legacy(b"x", 2, 0)).command_status(), CommandStatus::ESME_RINVDCS);
        assert_eq!(run(&legacy(b"x", 0xF4, 0)).command_status(), CommandStatus::ESME_RINVDCS);
        assert_eq!(run(&legacy(b"x", 0x0E, 0)).command_status(), CommandStatus::ESME_RINVDCS);
        let e = run(&legacy(b"\x00a\x00", 8, 0));
        assert_eq!(e, ConvertError::BadText(DecodeError::OddLength { len: 3 }));
        assert_eq!(e.command_status(), CommandStatus::ESME_RINVMSGLEN);
        assert_eq!(run(&legacy(b"\xd8\x3d\x00a", 8, 0)).command_status(), CommandStatus::ESME_RINVDCS);
        assert_eq!(run(&legacy(b"a\x80", 0, 0)).command_status(), CommandStatus::ESME_RINVDCS);
        assert_eq!(run(&legacy(b"a\x80", 1, 0)).command_status(), CommandStatus::ESME_RINVDCS);

        let mut m = legacy(b"x", 0, 0);
        m.destination = Address::new(5, 0, b"ALICE");
        assert_eq!(run(&m), ConvertError::InvalidDestination(AddressError::NotANumber));
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVDSTADR);
        m.destination = Address::new(1, 1, b"44x");
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVDSTADR);
        m.destination = Address::new(1, 1, b"");
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVDSTADR);
        let mut m = legacy(b"x", 0, 0);
        m.source = Address::new(1, 1, b"12345678901234567");
        assert_eq!(run(&m), ConvertError::InvalidSource(AddressError::TooLong));
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVSRCADR);
        let mut m = legacy(b"x", 0, 0);
        m.esm_class = EsmClass(0x04);
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVESMCLASS);
        let mut m = legacy(b"x", 0, 0);
        m.user_data = UserData::Parts(&[]);
        assert_eq!(run(&m).command_status(), CommandStatus::ESME_RINVNUMMSGS);
        let many: Vec<&[u8]> = vec![b"a"; 256];
        m.user_data = UserData::Parts(&many);
        assert_eq!(run(&m), ConvertError::BadPartCount(256));
        let mut bad_key = KeyRing::new(3).unwrap();
        bad_key.insert(1, TagKey::from_bytes([1; 16])).unwrap();
        let mut s = [0u8; 2048];
        let mut o = [0u8; 2048];
        let e =
            legacy_to_sip(&legacy(b"x", 0, 0), &ex, &CONVERGED, None, &bad_key, 1, NOW, &mut s, &mut o).unwrap_err();
        assert_eq!(e.command_status(), CommandStatus::ESME_RSYSERR);
        // National numbers and a sender name under the system's numbering plan.
        let mut m = legacy(b"x", 0, 0);
        m.destination = Address::new(2, 1, b"07000200001");
        m.source = Address::new(5, 0, b"SMSC A");
        let (sip, _) = convert(&m, &ex);
        let mut h = [Header::EMPTY; 32];
        let p = parse_datagram(&sip, &mut h).unwrap();
        assert_eq!(p.request_line().unwrap().uri, conv_uri());
        assert_eq!(p.from().unwrap().uri.as_str(), "sip:SMSC%20A@iwf.ims.lab");
    }

    #[test]
    fn explicit_recipient_uri() {
        let ex = exchange(1, BindDirection::LegacyBindsToIwf, false);
        let mut s = [0u8; 2048];
        let mut o = [0u8; 2048];
        let msg = legacy(b"x", 0, 0);
        let r =
            legacy_to_sip(&msg, &ex, &CONVERGED, Some("sip:alice@ims.lab"), &ring(), 1, NOW, &mut s, &mut o).unwrap();
        assert!(o[..r.len].starts_with(b"MESSAGE sip:alice@ims.lab SIP/2.0\r\n"));
        for bad in ["", "alice", "sip:a b@x", "sip:<x>@y", "sip:"] {
            let e = legacy_to_sip(&msg, &ex, &CONVERGED, Some(bad), &ring(), 1, NOW, &mut s, &mut o).unwrap_err();
            assert_eq!(e.command_status(), CommandStatus::ESME_RINVDSTADR, "{bad:?}");
        }
        // An explicit recipient URI may hold no number: the receipt's source_addr then
        // comes from the IMDN's <recipient-uri>; without one the IMDN routes nowhere.
        let r = legacy_to_sip(
            &legacy(b"x", 0, 1),
            &ex,
            &CONVERGED,
            Some("sip:alice@ims.lab"),
            &ring(),
            1,
            NOW,
            &mut s,
            &mut o,
        )
        .unwrap();
        let mut out = [0u8; 1024];
        let sip = imdn_sip(r.tag.as_bytes(), delivered(), "sip:alice@ims.lab", &legacy_uri(), NOW as i64);
        let e = imdn_to_receipts(&sip, &ring(), NOW, |_| Some(ex), 1, &mut out);
        assert_eq!(e, Err(ImdnRouteError::BadRecipient(AddressError::UnsupportedUri)));
        assert_eq!(e.unwrap_err().reason(), "bad_recipient");
        let rcpt = format!("tel:+{CONV_NUM}");
        let sip =
            imdn_sip_with(r.tag.as_bytes(), delivered(), "sip:alice@ims.lab", &legacy_uri(), NOW as i64, Some(&rcpt));
        let Ok(ReceiptOutcome::Receipts { len, .. }) = imdn_to_receipts(&sip, &ring(), NOW, |_| Some(ex), 1, &mut out)
        else {
            panic!()
        };
        assert_eq!(body_sm(&pdus(&out[..len])[0]).source, Address::new(1, 1, CONV_NUM.as_bytes()));
    }

    #[test]
    fn buffers_too_small_are_errors() {
        let ex = exchange(1, BindDirection::LegacyBindsToIwf, false);
        let msg = legacy(b"hello there", 0, 0x01);
        let (full, r) = convert(&msg, &ex);
        let mut scratch = [0u8; 4096];
        for n in 0..full.len() {
            let mut out = vec![0u8; n];
            assert_eq!(
                legacy_to_sip(&msg, &ex, &CONVERGED, None, &ring(), 77, NOW, &mut scratch, &mut out),
                Err(ConvertError::OutputTooSmall),
                "out {n}"
            );
        }
        let mut out = [0u8; 4096];
        let mut n = 0;
        loop {
            let mut scratch = vec![0u8; n];
            match legacy_to_sip(&msg, &ex, &CONVERGED, None, &ring(), 77, NOW, &mut scratch, &mut out) {
                Err(e) => assert_eq!(e, ConvertError::ScratchTooSmall, "scratch {n}"),
                Ok(done) => {
                    assert_eq!(&out[..done.len], &full[..]);
                    break;
                }
            }
            n += 1;
        }
        assert!(n > msg.user_data.len() && n <= scratch_len(msg.user_data.len()));
        let parts: [&[u8]; 3] = [b"a", b"b", b"c"];
        let mut m3 = msg;
        m3.user_data = UserData::Parts(&parts);
        let (_, r3) = convert(&m3, &ex);
        for (tag, total) in [(r.tag, 1usize), (r3.tag, 3)] {
            let sip = imdn_sip(tag.as_bytes(), delivered(), &conv_uri(), &legacy_uri(), NOW as i64);
            let mut big = [0u8; 2048];
            let Ok(ReceiptOutcome::Receipts { len, .. }) =
                imdn_to_receipts(&sip, &ring(), NOW, |_| Some(ex), 1, &mut big)
            else {
                panic!()
            };
            assert!(len <= total * RECEIPT_PDU_MAX_LEN);
            for n in 0..len {
                let mut out = vec![0u8; n];
                let e = imdn_to_receipts(&sip, &ring(), NOW, |_| Some(ex), 1, &mut out).unwrap_err();
                assert!(matches!(e, ImdnRouteError::Emit(EmitError::BufferTooSmall { .. })), "{n}: {e:?}");
                assert_eq!(e.reason(), "output_too_small");
            }
        }
    }

    #[test]
    fn not_an_imdn() {
        let ex = exchange(1, BindDirection::LegacyBindsToIwf, false);
        let (sip, r) = convert(&legacy(b"x", 0, 0x01), &ex);
        let route = |b: &[u8]| {
            let mut out = [0u8; 1024];
            imdn_to_receipts(b, &ring(), NOW, |_| Some(ex), 1, &mut out)
        };
        // A text message, not a notification.
        assert_eq!(route(&sip).unwrap_err(), ImdnRouteError::NotImdn);
        let imdn = imdn_sip(r.tag.as_bytes(), delivered(), &conv_uri(), &legacy_uri(), NOW as i64);
        let swap = |from: &str, to: &str| {
            let s = String::from_utf8(imdn.clone()).unwrap();
            s.replacen(from, to, 1).into_bytes()
        };
        assert_eq!(route(&swap("MESSAGE sip", "OPTIONS sip")).unwrap_err(), ImdnRouteError::NotMessage);
        assert_eq!(
            route(&swap("Content-Type: message/cpim", "Content-Type: text/plain")).unwrap_err(),
            ImdnRouteError::NotCpim
        );
        assert_eq!(
            route(&swap("Content-Disposition: notification", "Content-Disposition: renderrender")).unwrap_err(),
            ImdnRouteError::NotNotification
        );
        assert_eq!(route(&swap("<delivered/>", "<deliverex/>")).unwrap_err().reason(), "imdn_malformed");
        assert_eq!(route(&swap("\r\n\r\nFrom: <", "\r\n\r\nFrom; <")).unwrap_err().reason(), "cpim_malformed");
        assert_eq!(route(b"MESSAGE sip:x SIP/2.0\r\n").unwrap_err().reason(), "sip_malformed");
        assert_eq!(route(b"").unwrap_err().reason(), "sip_malformed");
        // Responses are not IMDNs.
        assert_eq!(route(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap_err(), ImdnRouteError::NotMessage);
        // The originator must be a legacy user.
        let bad_to = imdn_sip(r.tag.as_bytes(), delivered(), &conv_uri(), "mailto:x@y", NOW as i64);
        assert_eq!(route(&bad_to).unwrap_err().reason(), "bad_originator");
        // Sender name originator: the receipt goes back to TON 5 (for a message that came
        // from that name: the tag is signed for its parties).
        let from_name = LegacyMessage { source: Address::new(5, 0, b"SMSC A"), ..legacy(b"x", 0, 1) };
        let (_, rn) = convert(&from_name, &ex);
        assert_eq!(
            route(&imdn_sip(r.tag.as_bytes(), delivered(), &conv_uri(), "sip:SMSC%20A@iwf.ims.lab", NOW as i64))
                .unwrap_err()
                .reason(),
            "tag_bad_mac",
            "another message's tag"
        );
        let named = imdn_sip(rn.tag.as_bytes(), delivered(), &conv_uri(), "sip:SMSC%20A@iwf.ims.lab", NOW as i64);
        let mut out = [0u8; 1024];
        let Ok(ReceiptOutcome::Receipts { len, .. }) =
            imdn_to_receipts(&named, &ring(), NOW, |_| Some(ex), 1, &mut out)
        else {
            panic!()
        };
        assert_eq!(body_sm(&pdus(&out[..len])[0]).destination, Address::new(5, 0, b"SMSC A"));
    }

    #[test]
    fn from_submit_sm_strips_udh_and_reads_payload() {
        let udh_text = b"\x05\x00\x03\x2a\x03\x02hello";
        let sm = SubmitSm {
            source: Address::international(LEGACY_NUM.as_bytes()),
            destination: Address::international(CONV_NUM.as_bytes()),
            esm_class: EsmClass(0x40),
            registered_delivery: RegisteredDelivery(1),
            short_message: udh_text,
            ..SubmitSm::default()
        };
        let (m, c) = LegacyMessage::from_submit_sm(&sm).unwrap();
        assert_eq!(m.user_data, UserData::Single(b"hello"));
        assert_eq!(c, Some(ConcatInfo::new(0x2a, 3, 2, false).unwrap()));
        let bad = SubmitSm { short_message: b"\x09\x00", ..sm };
        let e = LegacyMessage::from_submit_sm(&bad).unwrap_err();
        assert!(matches!(e, ConvertError::BadUdh(_)));
        assert_eq!(e.command_status(), CommandStatus::ESME_RINVMSGLEN);
        // message_payload, SAR TLVs.
        let mut area = [0u8; 64];
        let mut w = TlvWriter::new(&mut area);
        w.tlv(crate::wire::smpp::TlvTag::MESSAGE_PAYLOAD, b"payload text").unwrap();
        w.u16(crate::wire::smpp::TlvTag::SAR_MSG_REF_NUM, 0x1234).unwrap();
        w.u8(crate::wire::smpp::TlvTag::SAR_TOTAL_SEGMENTS, 2).unwrap();
        w.u8(crate::wire::smpp::TlvTag::SAR_SEGMENT_SEQNUM, 1).unwrap();
        let p = SubmitSm { esm_class: EsmClass(0), short_message: b"", tlvs: Tlvs::Raw(w.as_bytes()), ..sm };
        let (m, c) = LegacyMessage::from_submit_sm(&p).unwrap();
        assert_eq!(m.user_data, UserData::Single(b"payload text"));
        assert_eq!(c, Some(ConcatInfo::from_sar(0x1234, 2, 1).unwrap()));
        // A whole submit_sm off the wire.
        let mut raw = [0u8; 256];
        let n = Pdu::new(7, Body::SubmitSm(SubmitSm { esm_class: EsmClass(0), short_message: b"hi", ..sm }))
            .emit(&mut raw)
            .unwrap();
        let Body::SubmitSm(parsed) = Pdu::parse(&raw[..n]).unwrap().body else { panic!() };
        let (m, c) = LegacyMessage::from_submit_sm(&parsed).unwrap();
        assert_eq!((m.user_data, c), (UserData::Single(&b"hi"[..]), None));
        let _ = MessageIdResp::default();
    }

    #[test]
    fn sip_status_table() {
        let cases: [(u16, CommandStatus); 22] = [
            (200, CommandStatus::ESME_ROK),
            (202, CommandStatus::ESME_ROK),
            (404, CommandStatus::ESME_RINVDSTADR),
            (484, CommandStatus::ESME_RINVDSTADR),
            (604, CommandStatus::ESME_RINVDSTADR),
            (410, CommandStatus::ESME_RINVDSTADR),
            (480, CommandStatus::ESME_RX_T_APPN),
            (403, CommandStatus::ESME_RX_R_APPN),
            (603, CommandStatus::ESME_RX_R_APPN),
            (408, CommandStatus::ESME_RX_T_APPN),
            (504, CommandStatus::ESME_RX_T_APPN),
            (500, CommandStatus::ESME_RX_T_APPN),
            (486, CommandStatus::ESME_RX_T_APPN),
            (503, CommandStatus::ESME_RTHROTTLED),
            (413, CommandStatus::ESME_RINVMSGLEN),
            (415, CommandStatus::ESME_RX_P_APPN),
            (488, CommandStatus::ESME_RX_P_APPN),
            (401, CommandStatus::ESME_RSYSERR),
            (302, CommandStatus::ESME_RX_P_APPN),
            (400, CommandStatus::ESME_RX_P_APPN),
            (180, CommandStatus::ESME_RSYSERR),
            (0, CommandStatus::ESME_RSYSERR),
        ];
        for (code, status) in cases {
            assert_eq!(sip_status_to_command_status(code), status, "{code}");
        }
    }

    #[test]
    fn media_essence() {
        assert!(media_essence_is(b"message/cpim", b"message/cpim"));
        assert!(media_essence_is(b" Message/CPIM ; charset=x", b"message/cpim"));
        assert!(media_essence_is(b"notification;handling=required", b"notification"));
        assert!(!media_essence_is(b"message/cpimx", b"message/cpim"));
        assert!(!media_essence_is(b"message/cp", b"message/cpim"));
        assert!(!media_essence_is(b"", b"notification"));
        assert!(!media_essence_is("message/cpim€".as_bytes(), b"message/cpim"));
    }

    #[test]
    fn receipt_dates_match_rfc3339() {
        for t in [0i64, 951_782_400, 1_790_000_000, 4_102_444_799, 1_709_164_800] {
            assert_eq!(receipt_date(t).unwrap().to_string(), date_digits(t), "{t}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// submit → SIP MESSAGE → IMDN → receipts: every receipt reaches the system the
        /// message came from, with the segment ids its *_resp carried.
        #[test]
        fn prop_full_loop(
            text in "[ -~€äöüΩ😀]{0,120}",
            rd in 0u8..16,
            parts in 1usize..5,
            system in 1u16..2000,
            seq in any::<u32>(),
            user_ack in any::<bool>(),
            failed in any::<bool>(),
            display in any::<bool>(),
            iwf_binds in any::<bool>(),
        ) {
            let direction = if iwf_binds { BindDirection::IwfBindsToLegacy } else { BindDirection::LegacyBindsToIwf };
            let ex = exchange(system, direction, user_ack);
            let mut enc = [0u8; 1024];
            let en = crate::wire::sms::ucs2::encode(&text, &mut enc).unwrap();
            // Split into `parts` pieces at even offsets (surrogates may be split).
            let units = en / 2;
            let mut cuts = vec![0usize];
            for i in 1..parts { cuts.push(units * i / parts * 2); }
            cuts.push(en);
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &enc[w[0]..w[1]]).collect();
            let mut msg = legacy(b"", 8, rd);
            msg.user_data = UserData::Parts(&pieces);
            let mut scratch = [0u8; 4096];
            let mut out = [0u8; 4096];
            let keys = ring();
            let r = legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, seq, NOW, &mut scratch, &mut out).unwrap();
            let mut h = [Header::EMPTY; 32];
            let m = parse_datagram(&out[..r.len], &mut h).unwrap();
            let mut ch = [EMPTY_HEADER; 16];
            let c = cpim::parse(m.body, &mut ch).unwrap();
            prop_assert_eq!(c.content, text.as_bytes());
            prop_assert_eq!(c.message_id(), Some(r.tag.as_bytes().as_slice()));
            let n = if display {
                Notification::Display(DisplayStatus::Displayed)
            } else if failed {
                Notification::Delivery(DeliveryStatus::Failed)
            } else {
                delivered()
            };
            let (res, pdu_bytes) = receipts(r.tag.as_bytes(), n, ex);
            let state = notification_state(n).unwrap();
            let (req, _) = receipt_request(RegisteredDelivery(rd), user_ack);
            if receipt_wanted(state, req, user_ack) {
                let Ok(ReceiptOutcome::Receipts { system: s, count, .. }) = res else {
                    return Err(TestCaseError::fail(format!("{res:?}")));
                };
                prop_assert_eq!(s, system);
                prop_assert_eq!(usize::from(count), parts);
                for (i, p) in pdus(&pdu_bytes).iter().enumerate() {
                    let id = segment_tag(&keys, &r.fields, i as u8 + 1).unwrap();
                    let sm = body_sm(p);
                    prop_assert_eq!(sm.tlvs.receipted_message_id().unwrap(), Some(id.as_bytes().as_slice()));
                    prop_assert_eq!(keys.verify(id.as_bytes(), NOW, &[r.fields.parties]).unwrap().system, system);
                    let cmd = if iwf_binds { CommandId::SubmitSm } else { CommandId::DeliverSm };
                    prop_assert_eq!(p.command_id(), cmd);
                }
            } else {
                prop_assert_eq!(res, Ok(ReceiptOutcome::NotRequested { system, state }));
            }
        }

        #[test]
        fn prop_fast_msisdn_path_agrees(
            scheme in "(sip|SIP|tel|TEL|sips|Tel):",
            plus in "\\+?",
            digits in "[0-9]{0,17}",
            tail in "(@ims.lab;user=phone|;isub=1@x|;phone-context=y|@|;|x@y|-1@y|)",
        ) {
            let uri = format!("{scheme}{plus}{digits}{tail}");
            prop_assert_eq!(uri_msisdn(uri.as_bytes()), msisdn_from_uri(&uri), "{}", uri);
        }

        #[test]
        fn prop_never_panics_on_junk(junk in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut out = [0u8; 1024];
            let _ = imdn_to_receipts(&junk, &ring(), NOW, |_| None::<Exchange>, 1, &mut out);
        }
    }
}
