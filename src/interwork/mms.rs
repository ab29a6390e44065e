//! The MMS exchange unit's conversions: MM4 from an MMS centre to a SIP MESSAGE and
//! back, converged notifications to MM4 reports, and the status each side answers
//! with. Like the SMS conversions, pure functions: time, sequence numbers and the
//! system's provisioning come from the caller. An MMS is large, so these write into
//! vectors rather than caller buffers.
//!
//! MMS → converged (an `MM4_forward.REQ`):
//!
//! ```text
//! MESSAGE <recipient> SIP/2.0                    (over TCP: bodies reach a megabyte)
//! From: <sip:+<sender>@<legacy_domain>;user=phone>;tag=...
//! Content-Type: message/cpim
//!
//! From: <sip:+<sender>@<legacy_domain>;user=phone>
//! To: <recipient>
//! NS: imdn <urn:ietf:params:imdn>
//! imdn.Message-ID: <tag: the MMSC's system id, parties, receipts asked>
//! DateTime: ...
//! imdn.Disposition-Notification: positive-delivery, negative-delivery, display
//!
//! Content-Type: multipart/related; type="text/plain"; boundary=...
//!
//! <each MM4 part, its content type kept>
//! ```
//!
//! `X-Mms-Delivery-Report: Yes` asks for delivery notifications (positive and
//! negative), `X-Mms-Read-Reply: Yes` for a display notification, and nothing else
//! is asked. The notifications coming back become MM4 reports ([`report_for`]).
//!
//! Converged → MMS: [`converged_to_mms`] makes the MMS a converged MESSAGE becomes
//! (its content's parts, the reports its dispositions ask for), and an MMS centre's
//! report about it becomes an IMDN through the SMS path's writer ([`report_state`]).
use super::content::SipContent;
use super::converged_to_legacy::StoredCorrelation;
use super::legacy_to_converged::write_message;
use super::ConvergedSide;
use crate::interwork::address::{self, LegacyParty, Msisdn};
use crate::interwork::state::ReceiptState;
use crate::tag::{KeyError, KeyRing, Originator, Parties, ReceiptRequest, Tag, TagFields};
use crate::wire::cpim::{self, CpimAddress, CpimRepr, DateTime, Dispositions};
use crate::wire::imdn::{DeliveryStatus, DisplayStatus, Notification, ProcessingStatus};
use crate::wire::mm4::{self, MessageType, Mm4, MmStatus, ReadStatus, RequestStatus};
use crate::wire::sip::Message;
use crate::wire::smtp::Reply;
use core::fmt;

/// Room for the SIP and CPIM headers around the content.
const HEADROOM: usize = 2048;

/// A SIP MESSAGE made from an MMS.
#[derive(Debug, Clone)]
pub struct ConvertedMms {
    /// The whole request.
    pub bytes: Vec<u8>,
    /// The tag it carries as `imdn.Message-ID`.
    pub tag: Tag,
    /// The tag's fields.
    pub fields: TagFields,
    /// What it asks to be notified of.
    pub dispositions: Dispositions,
}

/// Why an MMS cannot become a SIP MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmsError {
    /// Not an `MM4_forward.REQ`.
    NotAForward(MessageType),
    /// The sender is not a phone number (`+E.164/TYPE=PLMN`).
    BadSender,
    /// The recipient is not a phone number.
    BadRecipient,
    /// No content.
    Empty,
    /// The MESSAGE would exceed the converged side's limit.
    TooLarge {
        /// Octets it would take.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tag cannot be signed (no key).
    Key(KeyError),
    /// The configuration does not make a valid MESSAGE (domains, sent-by).
    BadConfig,
}

impl MmsError {
    /// The MM4 status that says why (an `MM4_forward.RES`).
    pub fn request_status(&self) -> RequestStatus {
        match self {
            MmsError::NotAForward(_) => RequestStatus::ErrorUnsupportedMessage,
            MmsError::BadSender => RequestStatus::ErrorMessageFormatCorrupt,
            MmsError::BadRecipient => RequestStatus::ErrorSendingAddressUnresolved,
            MmsError::Empty | MmsError::TooLarge { .. } => RequestStatus::ErrorContentNotAccepted,
            MmsError::Key(_) | MmsError::BadConfig => RequestStatus::ErrorUnspecified,
        }
    }
}

impl fmt::Display for MmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmsError::NotAForward(t) => write!(f, "{} is not a message to relay", t.as_str()),
            MmsError::BadSender => f.write_str("the sender is not a phone number"),
            MmsError::BadRecipient => f.write_str("the recipient is not a phone number"),
            MmsError::Empty => f.write_str("no content"),
            MmsError::TooLarge { len, max } => write!(f, "{len} octets, the converged side takes {max}"),
            MmsError::Key(e) => write!(f, "tag: {e}"),
            MmsError::BadConfig => f.write_str("the converged side's names do not make a valid request"),
        }
    }
}

/// The tag receipts and the dispositions an MMS asks for.
pub fn mms_receipts(m: &Mm4) -> (ReceiptRequest, Dispositions) {
    let mut req = ReceiptRequest::NONE;
    let mut disp = Dispositions::empty();
    if m.delivery_report {
        req = req.union(ReceiptRequest::DELIVERY).union(ReceiptRequest::FAILURE);
        disp.insert(Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY);
    }
    if m.read_reply {
        req = req.union(ReceiptRequest::USER_ACK);
        disp.insert(Dispositions::DISPLAY);
    }
    (req, disp)
}

/// Converts MMS `m` from system `system` for its recipient number `to` (one of
/// `m.to`) into a SIP MESSAGE toward `recipient` (the converged user's URI from
/// provisioning, or `None` for the template under the converged domain).
#[allow(clippy::too_many_arguments)]
pub fn mm4_to_sip(
    m: &Mm4,
    to: &mm4::MmsAddress,
    system: u16,
    converged: &ConvergedSide<'_>,
    recipient: Option<&str>,
    keys: &KeyRing,
    sequence: u32,
    now_unix: u64,
    max_len: usize,
) -> Result<ConvertedMms, MmsError> {
    if m.kind != MessageType::ForwardReq {
        return Err(MmsError::NotAForward(m.kind));
    }
    let sender = m.from.as_ref().and_then(|a| a.number()).ok_or(MmsError::BadSender)?;
    let sender = Msisdn::parse(sender).map_err(|_| MmsError::BadSender)?;
    let dest = to.number().and_then(|n| Msisdn::parse(n).ok()).ok_or(MmsError::BadRecipient)?;
    if m.parts.is_empty() {
        return Err(MmsError::Empty);
    }
    let legacy_uri = uri(&LegacyParty::Number(sender), converged.legacy_domain)?;
    let recipient = match recipient {
        Some(r) => r.to_string(),
        None => uri(&LegacyParty::Number(dest), converged.converged_domain)?,
    };
    let (receipts, dispositions) = mms_receipts(m);
    let parties = Parties::new(Originator::Number(sender.digits()), dest.digits()).ok_or(MmsError::BadSender)?;
    let fields = TagFields {
        system,
        minutes: TagFields::minutes_at(now_unix),
        sequence,
        segment_index: 0,
        segment_count: 1,
        receipts,
        parties,
    };
    let tag = keys.encode(&fields).map_err(MmsError::Key)?;
    let now = i64::try_from(now_unix).map_err(|_| MmsError::BadConfig)?;
    let datetime = DateTime::new(now, 0, 0).map_err(|_| MmsError::BadConfig)?;
    let (content_type, content) = mm4::entity(&m.parts);
    let cpim = CpimRepr {
        from: CpimAddress::new(b"", legacy_uri.as_bytes()),
        to: CpimAddress::new(b"", recipient.as_bytes()),
        datetime,
        message_id: tag.as_bytes(),
        dispositions,
        imdn_record_route: None,
        content_type: content_type.as_bytes(),
        content_disposition: None,
        content: &content,
    };
    let too_large = |len| MmsError::TooLarge { len, max: max_len };
    if content.len() + HEADROOM / 2 > max_len {
        return Err(too_large(content.len() + HEADROOM / 2));
    }
    let mut body = vec![0u8; content.len() + content_type.len() + HEADROOM];
    let body_len = cpim.emit(&mut body).map_err(|e| match e {
        cpim::CpimError::BufferTooSmall => too_large(body.len()),
        _ => MmsError::BadRecipient,
    })?;
    body.truncate(body_len);
    let mut out = vec![0u8; body_len + HEADROOM];
    let len = write_message(converged, &legacy_uri, &recipient, tag.as_str(), &body, &mut out)
        .map_err(|_| MmsError::BadConfig)?;
    if len > max_len {
        return Err(too_large(len));
    }
    out.truncate(len);
    Ok(ConvertedMms { bytes: out, tag, fields, dispositions })
}

fn uri(party: &LegacyParty<'_>, domain: &str) -> Result<String, MmsError> {
    let mut buf = [0u8; 256];
    let n = address::write_sip_uri(party, domain, &mut buf).map_err(|_| MmsError::BadConfig)?;
    core::str::from_utf8(buf.get(..n).unwrap_or_default()).map(str::to_string).map_err(|_| MmsError::BadConfig)
}

/// What the SIP final response to an MMS's MESSAGE means for the MMS centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The converged core took it.
    Relayed,
    /// Try again later: the MMS centre keeps it (SMTP 4xx).
    Retry,
    /// Refused for good, with this status.
    Refused(RequestStatus),
}

/// The outcome of a SIP final response (408 for a transaction timeout):
///
/// | SIP | outcome |
/// |---|---|
/// | 2xx | relayed |
/// | 404, 410, 484, 604 | refused: Error-sending-address-unresolved |
/// | 403, 603 | refused: Error-service-denied |
/// | 413, 415, 488, 513, 606 | refused: Error-content-not-accepted |
/// | 401, 407, 408, 480, 486, 500, 503, 504, 600, other 5xx | retry |
/// | other 3xx, 4xx, 6xx | refused: Error-unspecified |
pub fn sip_final_to_outcome(code: u16) -> ForwardOutcome {
    use ForwardOutcome::{Refused, Relayed, Retry};
    match code {
        200..=299 => Relayed,
        404 | 410 | 484 | 604 => Refused(RequestStatus::ErrorSendingAddressUnresolved),
        403 | 603 => Refused(RequestStatus::ErrorServiceDenied),
        413 | 415 | 488 | 513 | 606 => Refused(RequestStatus::ErrorContentNotAccepted),
        401 | 407 | 408 | 480 | 486 | 500..=599 | 600 => Retry,
        _ => Refused(RequestStatus::ErrorUnspecified),
    }
}

/// How iwf answers the MMS centre for a forward with `outcome`: the SMTP reply to
/// its DATA, and the status of the `MM4_forward.RES` to send when it asked for one
/// (`ack_request`).
///
/// With an acknowledgement asked for, a refusal is accepted at the SMTP level and
/// told in the `.RES` (the MM4 way); without, it is the SMTP reply that refuses. A
/// transient failure is a 451 either way: the MMS centre keeps the message and
/// sends it again, and iwf keeps nothing.
pub fn forward_answer(outcome: ForwardOutcome, ack_request: bool) -> (Reply<'static>, Option<RequestStatus>) {
    match outcome {
        ForwardOutcome::Relayed => {
            (Reply::new(250, b"2.0.0 Relayed to the converged core"), ack_request.then_some(RequestStatus::Ok))
        }
        ForwardOutcome::Retry => (Reply::new(451, b"4.4.1 The converged core is not available, try again"), None),
        ForwardOutcome::Refused(s) if ack_request => (Reply::new(250, b"2.0.0 Refused, see MM4_forward.RES"), Some(s)),
        ForwardOutcome::Refused(s) => (refusal_reply(s), None),
    }
}

/// The SMTP refusal that says what status `s` says.
pub fn refusal_reply(s: RequestStatus) -> Reply<'static> {
    match s {
        RequestStatus::ErrorSendingAddressUnresolved => Reply::new(550, b"5.1.1 Recipient unknown"),
        RequestStatus::ErrorServiceDenied => Reply::new(550, b"5.7.1 Refused by the recipient or policy"),
        RequestStatus::ErrorContentNotAccepted => Reply::new(554, b"5.6.0 Content not accepted"),
        RequestStatus::ErrorMessageFormatCorrupt => Reply::new(554, b"5.6.0 Not a well-formed MM4 message"),
        RequestStatus::ErrorUnsupportedMessage => Reply::new(554, b"5.6.0 MM4 message type not supported"),
        RequestStatus::ErrorNetworkProblem => Reply::new(451, b"4.4.1 Network problem, try again"),
        RequestStatus::Ok | RequestStatus::ErrorUnspecified | RequestStatus::ErrorMessageNotFound => {
            Reply::new(554, b"5.0.0 Refused")
        }
    }
}

/// The MM4 report a converged notification becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmsReport {
    /// `MM4_delivery_report.REQ` with this status.
    Delivery(MmStatus),
    /// `MM4_read_reply_report.REQ` with this status.
    ReadReply(ReadStatus),
}

/// The report for notification `n`, if it makes one:
///
/// | IMDN | MM4 |
/// |---|---|
/// | delivered | delivery report, Retrieved |
/// | failed | delivery report, Rejected |
/// | forbidden (delivery or processing) | delivery report, Rejected |
/// | error (delivery or processing) | delivery report, Indeterminate |
/// | stored | delivery report, Deferred |
/// | displayed | read-reply report, Read |
/// | processed, display forbidden or error | none |
///
/// A display `forbidden` is the user declining to send read reports, which MMS has
/// no report for; `processed` says nothing about delivery.
pub fn report_for(n: Notification) -> Option<MmsReport> {
    use MmsReport::{Delivery, ReadReply};
    Some(match n {
        Notification::Delivery(DeliveryStatus::Delivered) => Delivery(MmStatus::Retrieved),
        Notification::Delivery(DeliveryStatus::Failed | DeliveryStatus::Forbidden) => Delivery(MmStatus::Rejected),
        Notification::Delivery(DeliveryStatus::Error) => Delivery(MmStatus::Indeterminate),
        Notification::Processing(ProcessingStatus::Stored) => Delivery(MmStatus::Deferred),
        Notification::Processing(ProcessingStatus::Forbidden) => Delivery(MmStatus::Rejected),
        Notification::Processing(ProcessingStatus::Error) => Delivery(MmStatus::Indeterminate),
        Notification::Display(DisplayStatus::Displayed) => ReadReply(ReadStatus::Read),
        Notification::Processing(ProcessingStatus::Processed)
        | Notification::Display(DisplayStatus::Forbidden | DisplayStatus::Error) => return None,
    })
}

/// The state an MMS centre's report about a message iwf forwarded reports, which
/// [`super::converged_to_legacy::imdn_for_state`] turns into the IMDN the sender
/// asked for (the same path as an SMSC receipt's):
///
/// | MM4 | state | IMDN |
/// |---|---|---|
/// | Retrieved, Forwarded | delivered | delivered |
/// | Rejected | rejected | forbidden |
/// | Expired, Unrecognised | failed | failed |
/// | Indeterminate | unknown | error |
/// | Deferred | buffered | processing: stored |
/// | read reply Read | displayed | displayed |
/// | read reply Deleted without being read | none | none (IMDN has no such status) |
pub fn report_state(report: MmsReport) -> Option<ReceiptState> {
    Some(match report {
        MmsReport::Delivery(MmStatus::Retrieved | MmStatus::Forwarded) => ReceiptState::Delivered,
        MmsReport::Delivery(MmStatus::Rejected) => ReceiptState::Rejected,
        MmsReport::Delivery(MmStatus::Expired | MmStatus::Unrecognised) => ReceiptState::Failed,
        MmsReport::Delivery(MmStatus::Indeterminate) => ReceiptState::Unknown,
        MmsReport::Delivery(MmStatus::Deferred) => ReceiptState::Buffered,
        MmsReport::ReadReply(ReadStatus::Read) => ReceiptState::Displayed,
        MmsReport::ReadReply(ReadStatus::DeletedWithoutBeingRead) => return None,
    })
}

/// The report an MM4 request carries, if it is a report.
pub fn report_of(m: &Mm4) -> Option<MmsReport> {
    match m.kind {
        MessageType::DeliveryReportReq => m.mm_status.map(MmsReport::Delivery),
        MessageType::ReadReplyReportReq => m.read_status.map(MmsReport::ReadReply),
        _ => None,
    }
}

/// A converged user's message to an MMS user, as iwf forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsOut {
    /// `From`: the converged sender as an MMS address under iwf's domain.
    pub from: mm4::MmsAddress,
    /// `To`: the recipient under the MMS centre's domain.
    pub to: mm4::MmsAddress,
    /// `X-Mms-Delivery-Report`: the sender asked for delivery notifications.
    pub delivery_report: bool,
    /// `X-Mms-Read-Reply`: the sender asked for a display notification.
    pub read_reply: bool,
    /// The content's parts.
    pub parts: Vec<mm4::Part>,
}

/// Why a converged message cannot go to an MMS centre, with the SIP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToMmsError {
    /// The sender's URI has no phone number (MMS addresses are numbers): 403.
    SenderNotANumber,
    /// The content is not a MIME entity that reads: 400.
    BadContent(mm4::Mm4Error),
    /// No content: 400.
    Empty,
}

impl ToMmsError {
    /// The SIP status and reason phrase.
    pub fn sip_status(&self) -> (u16, &'static str) {
        match self {
            ToMmsError::SenderNotANumber => (403, "Forbidden (the sender has no number for MMS)"),
            ToMmsError::BadContent(_) | ToMmsError::Empty => (400, "Bad Request (content)"),
        }
    }
}

/// The MMS a converged MESSAGE becomes: from `sender_uri` (a `tel:` or
/// `sip:+<E.164>...;user=phone` URI) to number `to` at the MMS centre of
/// `mmsc_domain`; the content (`content_type`, `content`: the CPIM content, or the
/// SIP body) split into its parts; the notifications asked become the reports asked.
pub fn converged_to_mms(
    sender_uri: &str,
    to: &Msisdn,
    legacy_domain: &str,
    mmsc_domain: &str,
    dispositions: Dispositions,
    content_type: &str,
    content: &[u8],
) -> Result<MmsOut, ToMmsError> {
    let sender = address::msisdn_from_uri(sender_uri).map_err(|_| ToMmsError::SenderNotANumber)?;
    if content.is_empty() {
        return Err(ToMmsError::Empty);
    }
    let content_type = if content_type.trim().is_empty() { "text/plain; charset=utf-8" } else { content_type };
    let parts = mm4::entity_parts(content_type, content).map_err(ToMmsError::BadContent)?;
    if parts.is_empty() {
        return Err(ToMmsError::Empty);
    }
    Ok(MmsOut {
        from: mm4::MmsAddress::plmn(&format!("+{}", sender.digits()), legacy_domain),
        to: mm4::MmsAddress::plmn(&format!("+{}", to.digits()), mmsc_domain),
        delivery_report: dispositions.contains(Dispositions::POSITIVE_DELIVERY)
            || dispositions.contains(Dispositions::NEGATIVE_DELIVERY),
        read_reply: dispositions.contains(Dispositions::DISPLAY),
        parts,
    })
}

/// A converged user's MESSAGE for an MMS user: the MMS it becomes, and what the IMDNs
/// for its reports need (none when the message cannot be correlated: no
/// `imdn.Message-ID` or `DateTime`; then no report is asked either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToMms<'a> {
    /// The MMS.
    pub mms: MmsOut,
    /// The correlation's facts.
    pub stored: Option<StoredCorrelation<'a>>,
}

/// [`converged_to_mms`] for a SIP MESSAGE (its body looked at already,
/// [`SipContent::of`]) to number `to`: the CPIM content with its type, sender, id and
/// notifications when the body is CPIM, else the SIP body as it is from the SIP `From`.
pub fn sip_to_mms<'a>(
    msg: &Message<'a, '_>,
    parsed: &SipContent<'_, 'a>,
    to: &Msisdn,
    legacy_domain: &str,
    mmsc_domain: &str,
) -> Result<ToMms<'a>, ToMmsError> {
    let text = |b: &'a [u8]| core::str::from_utf8(b).map_err(|_| ToMmsError::Empty);
    let (sender, content_type, content, stored) = match parsed {
        SipContent::Cpim(c) => {
            let sender = text(c.from().map_err(|_| ToMmsError::SenderNotANumber)?.uri)?;
            let content_type = text(c.content_type().unwrap_or_default())?;
            let route = match c.imdn_record_routes().next() {
                Some(Ok(r)) => Some(text(r.uri)?),
                _ => None,
            };
            let id = c.message_id().map(text).transpose()?.filter(|s| !s.is_empty());
            let stored = match (id, c.datetime().ok().flatten()) {
                (Some(message_id), Some(datetime)) => Some(StoredCorrelation {
                    message_id,
                    sender,
                    recipient: *to,
                    dispositions: c.dispositions().known(),
                    datetime,
                    imdn_record_route: route,
                }),
                _ => None,
            };
            (sender, content_type, c.content, stored)
        }
        SipContent::BadCpim(_) => return Err(ToMmsError::Empty),
        SipContent::Plain(content_type) => {
            let from = msg.from().map_err(|_| ToMmsError::SenderNotANumber)?;
            (from.uri.as_str(), text(content_type)?, msg.body, None)
        }
    };
    let asked = stored.map_or(Dispositions::empty(), |s| s.dispositions);
    let mms = converged_to_mms(sender, to, legacy_domain, mmsc_domain, asked, content_type, content)?;
    Ok(ToMms { mms, stored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mm4::{MmsAddress, Part};
    use crate::wire::sip::{Header, Parser, Status};

    fn keys() -> KeyRing {
        let mut k = KeyRing::new(1).unwrap();
        k.insert(1, crate::tag::TagKey::from_hex_strong("9f3c2a71d04be85a6e17c3f20b8d9e44").unwrap()).unwrap();
        k
    }

    fn side() -> ConvergedSide<'static> {
        ConvergedSide {
            legacy_domain: "iwf.ims.lab",
            converged_domain: "ims.lab",
            local_sent_by: "198.18.2.2:5060",
            transport: "TCP",
        }
    }

    fn forward(parts: Vec<Part>, delivery: bool, read: bool) -> Mm4 {
        Mm4 {
            kind: MessageType::ForwardReq,
            version: "6.10.0".into(),
            transaction_id: "t1".into(),
            message_id: Some("m1@mmsc-m.lab".into()),
            from: Some(MmsAddress::plmn("+447000400001", "mmsc-m.lab")),
            to: vec![MmsAddress::plmn("+447000200001", "iwf.ims.lab")],
            sender: None,
            originator_system: Some("system@mmsc-m.lab".into()),
            subject: None,
            date: None,
            ack_request: true,
            delivery_report: delivery,
            read_reply: read,
            request_status: None,
            status_text: None,
            mm_status: None,
            read_status: None,
            content_type: None,
            parts,
        }
    }

    fn picture() -> Vec<Part> {
        vec![
            Part {
                content_type: "text/plain; charset=utf-8".into(),
                content_id: None,
                name: None,
                body: b"look".to_vec(),
            },
            Part {
                content_type: "image/jpeg".into(),
                content_id: Some("i1".into()),
                name: Some("a.jpg".into()),
                body: vec![0xff, 0xd8, 0, 13, 10, 46, 13, 10, 0xff, 0xd9],
            },
        ]
    }

    #[test]
    fn an_mms_becomes_a_message_carrying_its_parts_and_the_tag() {
        let m = forward(picture(), true, true);
        let c = mm4_to_sip(&m, &m.to[0], 7, &side(), None, &keys(), 3, 1_796_616_000, 1 << 20).unwrap();
        let mut headers = [Header::EMPTY; 32];
        let Ok(Status::Complete(_, msg)) = Parser::stream().parse(&c.bytes, &mut headers) else { panic!() };
        assert_eq!(msg.header("Content-Type"), Some("message/cpim"));
        let mut ch = [cpim::EMPTY_HEADER; 16];
        let cpim = cpim::parse(msg.body, &mut ch).unwrap();
        assert_eq!(cpim.message_id(), Some(&c.tag.as_bytes()[..]));
        assert_eq!(c.fields.system, 7);
        assert_eq!(
            c.dispositions,
            Dispositions::POSITIVE_DELIVERY | Dispositions::NEGATIVE_DELIVERY | Dispositions::DISPLAY
        );
        assert_eq!(
            c.fields.receipts,
            ReceiptRequest::DELIVERY.union(ReceiptRequest::FAILURE).union(ReceiptRequest::USER_ACK)
        );
        let ct = core::str::from_utf8(cpim.content_type().unwrap()).unwrap();
        assert!(ct.starts_with("multipart/related"), "{ct}");
        let parts = mm4::entity_parts(ct, cpim.content).unwrap();
        assert_eq!(parts, picture(), "every part arrives with its content type");
        let text = String::from_utf8_lossy(&c.bytes);
        assert!(text.contains("From: <sip:+447000400001@iwf.ims.lab;user=phone>"), "{text}");
        assert!(text.contains("To: <sip:+447000200001@ims.lab;user=phone>"), "{text}");
        // Only what the MMS asked for is asked for.
        let none = mm4_to_sip(
            &forward(picture(), false, false),
            &m.to[0],
            7,
            &side(),
            None,
            &keys(),
            4,
            1_796_616_000,
            1 << 20,
        )
        .unwrap();
        assert_eq!((none.dispositions, none.fields.receipts), (Dispositions::empty(), ReceiptRequest::NONE));
    }

    #[test]
    fn a_single_part_goes_as_it_is_and_too_large_is_refused_not_cut() {
        let one = vec![Part { content_type: "image/png".into(), content_id: None, name: None, body: vec![1; 5000] }];
        let m = forward(one, true, false);
        let c = mm4_to_sip(&m, &m.to[0], 7, &side(), None, &keys(), 3, 1_796_616_000, 1 << 20).unwrap();
        let text = String::from_utf8_lossy(&c.bytes);
        assert!(text.contains("Content-Type: image/png"), "{text}");
        let e = mm4_to_sip(&m, &m.to[0], 7, &side(), None, &keys(), 3, 1_796_616_000, 4000).unwrap_err();
        assert!(matches!(e, MmsError::TooLarge { max: 4000, .. }), "{e}");
        assert_eq!(e.request_status(), RequestStatus::ErrorContentNotAccepted);
        let mut bad = forward(picture(), true, false);
        bad.from = Some(MmsAddress::parse("ann@example.net").unwrap());
        assert_eq!(
            mm4_to_sip(&bad, &m.to[0], 7, &side(), None, &keys(), 3, 0, 1 << 20).unwrap_err(),
            MmsError::BadSender
        );
        let email = MmsAddress::parse("bob@example.net").unwrap();
        assert_eq!(
            mm4_to_sip(&m, &email, 7, &side(), None, &keys(), 3, 0, 1 << 20).unwrap_err(),
            MmsError::BadRecipient
        );
        assert_eq!(
            mm4_to_sip(&forward(vec![], true, false), &m.to[0], 7, &side(), None, &keys(), 3, 0, 1 << 20).unwrap_err(),
            MmsError::Empty
        );
    }

    #[test]
    fn outcomes_and_answers() {
        assert_eq!(sip_final_to_outcome(202), ForwardOutcome::Relayed);
        assert_eq!(sip_final_to_outcome(404), ForwardOutcome::Refused(RequestStatus::ErrorSendingAddressUnresolved));
        assert_eq!(sip_final_to_outcome(415), ForwardOutcome::Refused(RequestStatus::ErrorContentNotAccepted));
        assert_eq!(sip_final_to_outcome(603), ForwardOutcome::Refused(RequestStatus::ErrorServiceDenied));
        assert_eq!(sip_final_to_outcome(408), ForwardOutcome::Retry);
        assert_eq!(sip_final_to_outcome(503), ForwardOutcome::Retry);
        assert_eq!(sip_final_to_outcome(420), ForwardOutcome::Refused(RequestStatus::ErrorUnspecified));
        let (r, s) = forward_answer(ForwardOutcome::Relayed, true);
        assert_eq!((r.code, s), (250, Some(RequestStatus::Ok)));
        let (r, s) = forward_answer(ForwardOutcome::Refused(RequestStatus::ErrorServiceDenied), true);
        assert_eq!((r.code, s), (250, Some(RequestStatus::ErrorServiceDenied)));
        let (r, s) = forward_answer(ForwardOutcome::Refused(RequestStatus::ErrorServiceDenied), false);
        assert_eq!((r.code, s), (550, None));
        assert_eq!(forward_answer(ForwardOutcome::Retry, true).0.code, 451);
    }

    #[test]
    fn notifications_and_reports_map_both_ways() {
        use Notification as N;
        assert_eq!(report_for(N::Delivery(DeliveryStatus::Delivered)), Some(MmsReport::Delivery(MmStatus::Retrieved)));
        assert_eq!(report_for(N::Delivery(DeliveryStatus::Failed)), Some(MmsReport::Delivery(MmStatus::Rejected)));
        assert_eq!(report_for(N::Delivery(DeliveryStatus::Forbidden)), Some(MmsReport::Delivery(MmStatus::Rejected)));
        assert_eq!(report_for(N::Display(DisplayStatus::Displayed)), Some(MmsReport::ReadReply(ReadStatus::Read)));
        assert_eq!(report_for(N::Processing(ProcessingStatus::Processed)), None);
        assert_eq!(report_state(MmsReport::Delivery(MmStatus::Retrieved)), Some(ReceiptState::Delivered));
        assert_eq!(report_state(MmsReport::Delivery(MmStatus::Expired)), Some(ReceiptState::Failed));
        assert_eq!(report_state(MmsReport::Delivery(MmStatus::Deferred)), Some(ReceiptState::Buffered));
        assert_eq!(report_state(MmsReport::ReadReply(ReadStatus::Read)), Some(ReceiptState::Displayed));
        assert_eq!(report_state(MmsReport::ReadReply(ReadStatus::DeletedWithoutBeingRead)), None);
    }

    /// An MMS centre's report about a message iwf forwarded becomes the IMDN the
    /// converged sender asked for, through the SMS path's IMDN writer.
    #[test]
    fn a_report_becomes_the_imdn_asked_for() {
        use crate::interwork::converged_to_legacy::{imdn_for_state, ImdnTokens, StoredCorrelation};
        let text = "X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_delivery_report.REQ\r\nX-Mms-Transaction-ID: t\r\nX-Mms-Message-ID: iwf-1\r\nFrom: +447000400001/TYPE=PLMN@mmsc-m.lab\r\nTo: +447000200001/TYPE=PLMN@iwf.ims.lab\r\nX-Mms-MM-Status-Code: Retrieved\r\n\r\n";
        let report = report_of(&Mm4::parse(text.as_bytes()).unwrap()).unwrap();
        let stored = StoredCorrelation {
            message_id: "conv-1",
            sender: "sip:+447000200001@ims.lab;user=phone",
            recipient: Msisdn::parse("+447000400001").unwrap(),
            dispositions: Dispositions::POSITIVE_DELIVERY,
            datetime: DateTime::from_unix(1_796_616_000),
            imdn_record_route: None,
        };
        let tokens = ImdnTokens { message_id: "imdn-1", seed: "s1" };
        let (mut scratch, mut out) = ([0u8; 2048], [0u8; 4096]);
        let state = report_state(report).unwrap();
        let w =
            imdn_for_state(state, &stored, &side(), &tokens, 1_796_616_100, &mut scratch, &mut out).unwrap().unwrap();
        let sip = String::from_utf8_lossy(&out[..w.len]);
        assert!(sip.contains("<delivered/>") && sip.contains("<message-id>conv-1</message-id>"), "{sip}");
        // A read reply the sender did not ask for makes no IMDN.
        let read = report_state(MmsReport::ReadReply(ReadStatus::Read)).unwrap();
        assert_eq!(imdn_for_state(read, &stored, &side(), &tokens, 0, &mut scratch, &mut out), Ok(None));
    }

    #[test]
    fn a_converged_message_becomes_an_mms_with_its_parts_and_reports() {
        let to = Msisdn::parse("+447000400001").unwrap();
        let (ct, body) = mm4::entity(&picture());
        let asked = Dispositions::POSITIVE_DELIVERY | Dispositions::DISPLAY;
        let m = converged_to_mms(
            "sip:+447000200001@ims.lab;user=phone",
            &to,
            "iwf.ims.lab",
            "mmsc-m.lab",
            asked,
            &ct,
            &body,
        )
        .unwrap();
        assert_eq!(m.from.to_string(), "+447000200001/TYPE=PLMN@iwf.ims.lab");
        assert_eq!(m.to.to_string(), "+447000400001/TYPE=PLMN@mmsc-m.lab");
        assert!(m.delivery_report && m.read_reply);
        assert_eq!(m.parts, picture());
        let text =
            converged_to_mms("tel:+447000200001", &to, "iwf.ims.lab", "mmsc-m.lab", Dispositions::empty(), "", b"hi")
                .unwrap();
        assert_eq!((text.parts.len(), text.delivery_report, text.read_reply), (1, false, false));
        assert_eq!(text.parts[0].body, b"hi");
        let e = converged_to_mms("sip:alice@ims.lab", &to, "iwf.ims.lab", "mmsc-m.lab", asked, "text/plain", b"x");
        assert_eq!(e.unwrap_err().sip_status().0, 403);
        let e = converged_to_mms("tel:+447000200001", &to, "i", "m", asked, "text/plain", b"");
        assert_eq!(e.unwrap_err(), ToMmsError::Empty);
    }
}
