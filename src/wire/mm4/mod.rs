//! MM4, the interface between MMS relays (3GPP TS 23.140 §8.4): RFC 5322 messages
//! with `X-Mms-*` header fields, carried over SMTP.
//!
//! [`Mm4::parse`] reads one message (mail-parser does the RFC 5322 and MIME work:
//! header unfolding, multipart nesting, base64 and quoted-printable, charsets), and
//! checks what the transaction needs: the version, type and transaction id of
//! every MM4 message; the message id, sender and recipients of a forward; the
//! status of a report or response. Identifying fields that appear twice are
//! refused: a relay that reads the first and one that reads the last would
//! disagree. The builders ([`forward_req`], [`forward_res`], [`delivery_report`],
//! [`read_reply_report`]) write with mail-builder.
//!
//! Unlike the codecs beside it, this one allocates: an MMS is one message of up to
//! a megabyte, not a stream of small PDUs, and its parts are handed on as owned
//! buffers. Its size is bounded before it gets here (the SMTP session's limit).

mod types;

pub use types::{AddressKind, MessageType, MmStatus, MmsAddress, ReadStatus, RequestStatus};

use core::fmt;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mail_parser::{HeaderName, MessageParser, MimeHeaders, PartType};

/// The MMS version iwf writes (`X-Mms-3GPP-MMS-Version`, TS 23.140 Release 6).
pub const VERSION: &str = "6.10.0";

/// Parts of one message at most (text, images, a SMIL presentation...).
pub const MAX_PARTS: usize = 32;

/// One part of an MMS: its content type (with parameters, `text/plain;
/// charset=utf-8` for text, which is decoded to UTF-8) and its decoded octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `type/subtype` and parameters.
    pub content_type: String,
    /// `Content-ID` without its angle brackets (a SMIL presentation refers to it).
    pub content_id: Option<String>,
    /// The file name it was attached with.
    pub name: Option<String>,
    /// The content, transfer encoding removed.
    pub body: Vec<u8>,
}

/// A parsed MM4 message: the fields iwf acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mm4 {
    /// `X-Mms-Message-Type`.
    pub kind: MessageType,
    /// `X-Mms-3GPP-MMS-Version`.
    pub version: String,
    /// `X-Mms-Transaction-ID`: a response carries its request's.
    pub transaction_id: String,
    /// `X-Mms-Message-ID`: the multimedia message's id (a report names the original's).
    pub message_id: Option<String>,
    /// `From`.
    pub from: Option<MmsAddress>,
    /// `To` and `Cc`, in order.
    pub to: Vec<MmsAddress>,
    /// `Sender`: the relay that sent it.
    pub sender: Option<String>,
    /// `X-Mms-Originator-System`: where reports about the message go.
    pub originator_system: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `Date`, Unix seconds.
    pub date: Option<i64>,
    /// `X-Mms-Ack-Request: Yes`: the sender wants the `.RES`.
    pub ack_request: bool,
    /// `X-Mms-Delivery-Report: Yes`.
    pub delivery_report: bool,
    /// `X-Mms-Read-Reply: Yes`.
    pub read_reply: bool,
    /// `X-Mms-Request-Status-Code` of a response.
    pub request_status: Option<RequestStatus>,
    /// `X-Mms-Status-Text`.
    pub status_text: Option<String>,
    /// `X-Mms-MM-Status-Code` of a delivery report.
    pub mm_status: Option<MmStatus>,
    /// `X-Mms-Read-Status` of a read-reply report.
    pub read_status: Option<ReadStatus>,
    /// The message's own content type (`multipart/related; ...`).
    pub content_type: Option<String>,
    /// The content's leaf parts, in order (a forward's; empty for reports).
    pub parts: Vec<Part>,
}

/// Why an MM4 message is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mm4Error {
    /// Not an RFC 5322 message.
    NotAMessage,
    /// A header field the message type needs is absent.
    Missing(&'static str),
    /// A header field whose value cannot be read.
    Bad(&'static str),
    /// An identifying header field given more than once.
    Repeated(&'static str),
    /// A message type that is not MM4's.
    UnknownType,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts,
}

impl Mm4Error {
    /// The status a `.RES` answers it with.
    pub fn request_status(&self) -> RequestStatus {
        match self {
            Mm4Error::UnknownType => RequestStatus::ErrorUnsupportedMessage,
            Mm4Error::TooManyParts => RequestStatus::ErrorContentNotAccepted,
            _ => RequestStatus::ErrorMessageFormatCorrupt,
        }
    }
}

impl fmt::Display for Mm4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mm4Error::NotAMessage => f.write_str("not an RFC 5322 message"),
            Mm4Error::Missing(h) => write!(f, "missing {h}"),
            Mm4Error::Bad(h) => write!(f, "unreadable {h}"),
            Mm4Error::Repeated(h) => write!(f, "{h} given more than once"),
            Mm4Error::UnknownType => f.write_str("not an MM4 message type"),
            Mm4Error::TooManyParts => write!(f, "more than {MAX_PARTS} parts"),
        }
    }
}

impl std::error::Error for Mm4Error {}

/// Header fields that name the transaction: each at most once.
const SINGLE: [&str; 9] = [
    "X-Mms-Message-Type",
    "X-Mms-Transaction-ID",
    "X-Mms-Message-ID",
    "X-Mms-3GPP-MMS-Version",
    "X-Mms-Originator-System",
    "X-Mms-Request-Status-Code",
    "X-Mms-MM-Status-Code",
    "X-Mms-Read-Status",
    "From",
];

impl Mm4 {
    /// Reads one MM4 message (RFC 5322 with CRLF or LF line ends).
    pub fn parse(data: &[u8]) -> Result<Mm4, Mm4Error> {
        let message = MessageParser::new()
            .with_mime_headers()
            .header_date(HeaderName::Date)
            .header_text(HeaderName::Subject)
            .parse(data)
            .ok_or(Mm4Error::NotAMessage)?;
        let root = message.root_part();
        if root.headers.is_empty() {
            return Err(Mm4Error::NotAMessage);
        }
        for name in SINGLE {
            if root.headers.iter().filter(|h| h.name().eq_ignore_ascii_case(name)).count() > 1 {
                return Err(Mm4Error::Repeated(name));
            }
        }
        let field = |name: &'static str| -> Option<String> {
            let h = root.headers.iter().find(|h| h.name().eq_ignore_ascii_case(name))?;
            let raw = data.get(h.offset_start() as usize..h.offset_end() as usize)?;
            Some(unfold(raw)).filter(|v| !v.is_empty())
        };
        let need = |name: &'static str| field(name).ok_or(Mm4Error::Missing(name));
        let kind = MessageType::parse(&need("X-Mms-Message-Type")?).ok_or(Mm4Error::UnknownType)?;
        let version = need("X-Mms-3GPP-MMS-Version")?;
        let transaction_id = need("X-Mms-Transaction-ID")?;
        let yes = |name: &'static str| -> Result<bool, Mm4Error> {
            match field(name) {
                None => Ok(false),
                Some(v) if v.eq_ignore_ascii_case("Yes") => Ok(true),
                Some(v) if v.eq_ignore_ascii_case("No") => Ok(false),
                Some(_) => Err(Mm4Error::Bad(name)),
            }
        };
        let address = |v: &str, name: &'static str| MmsAddress::parse(v).ok_or(Mm4Error::Bad(name));
        let mut to = Vec::new();
        for name in ["To", "Cc"] {
            for h in root.headers.iter().filter(|h| h.name().eq_ignore_ascii_case(name)) {
                let raw = data.get(h.offset_start() as usize..h.offset_end() as usize).unwrap_or(b"");
                for a in unfold(raw).split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    to.push(address(a, if name == "To" { "To" } else { "Cc" })?);
                }
            }
        }
        let from = field("From").map(|v| address(&v, "From")).transpose()?;
        let mut m = Mm4 {
            kind,
            version,
            transaction_id,
            message_id: field("X-Mms-Message-ID").map(|v| strip_angles(&v).to_string()),
            from,
            to,
            sender: field("Sender"),
            originator_system: field("X-Mms-Originator-System"),
            subject: message.subject().map(str::to_string),
            date: message.date().map(|d| d.to_timestamp()),
            ack_request: yes("X-Mms-Ack-Request")?,
            delivery_report: yes("X-Mms-Delivery-Report")?,
            read_reply: yes("X-Mms-Read-Reply")?,
            request_status: None,
            status_text: field("X-Mms-Status-Text"),
            mm_status: None,
            read_status: None,
            content_type: field("Content-Type"),
            parts: Vec::new(),
        };
        if let Some(v) = field("X-Mms-Request-Status-Code") {
            m.request_status = Some(RequestStatus::parse(&v).ok_or(Mm4Error::Bad("X-Mms-Request-Status-Code"))?);
        }
        if let Some(v) = field("X-Mms-MM-Status-Code") {
            m.mm_status = Some(MmStatus::parse(&v).ok_or(Mm4Error::Bad("X-Mms-MM-Status-Code"))?);
        }
        if let Some(v) = field("X-Mms-Read-Status") {
            m.read_status = Some(ReadStatus::parse(&v).ok_or(Mm4Error::Bad("X-Mms-Read-Status"))?);
        }
        m.check_required()?;
        if m.kind == MessageType::ForwardReq {
            m.parts = parts(&message)?;
        }
        Ok(m)
    }

    /// What each type needs beyond version, type and transaction id.
    fn check_required(&self) -> Result<(), Mm4Error> {
        let has = |ok: bool, name: &'static str| if ok { Ok(()) } else { Err(Mm4Error::Missing(name)) };
        match self.kind {
            MessageType::ForwardReq => {
                has(self.message_id.is_some(), "X-Mms-Message-ID")?;
                has(self.from.is_some(), "From")?;
                has(!self.to.is_empty(), "To")
            }
            MessageType::DeliveryReportReq => {
                has(self.message_id.is_some(), "X-Mms-Message-ID")?;
                has(self.from.is_some(), "From")?;
                has(!self.to.is_empty(), "To")?;
                has(self.mm_status.is_some(), "X-Mms-MM-Status-Code")
            }
            MessageType::ReadReplyReportReq => {
                has(self.message_id.is_some(), "X-Mms-Message-ID")?;
                has(self.from.is_some(), "From")?;
                has(!self.to.is_empty(), "To")?;
                has(self.read_status.is_some(), "X-Mms-Read-Status")
            }
            MessageType::ForwardRes | MessageType::DeliveryReportRes | MessageType::ReadReplyReportRes => {
                has(self.request_status.is_some(), "X-Mms-Request-Status-Code")
            }
        }
    }
}

/// The leaf parts of a message, in document order.
fn parts(message: &mail_parser::Message<'_>) -> Result<Vec<Part>, Mm4Error> {
    let mut out = Vec::new();
    for part in &message.parts {
        if matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        if out.len() == MAX_PARTS {
            return Err(Mm4Error::TooManyParts);
        }
        let text = matches!(part.body, PartType::Text(_) | PartType::Html(_));
        let content_type = match part.content_type() {
            Some(ct) => {
                let mut s = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("octet-stream"));
                for a in ct.attributes().unwrap_or(&[]) {
                    // Text comes out decoded to UTF-8; its charset says so below.
                    let dropped =
                        a.name.eq_ignore_ascii_case("name") || (text && a.name.eq_ignore_ascii_case("charset"));
                    if !dropped {
                        s.push_str(&format!("; {}={}", a.name, quoted(&a.value)));
                    }
                }
                if text {
                    s.push_str("; charset=utf-8");
                }
                s
            }
            None => "text/plain; charset=utf-8".to_string(),
        };
        out.push(Part {
            content_type,
            content_id: part.content_id().map(|c| strip_angles(c).to_string()),
            name: part.attachment_name().map(str::to_string),
            body: part.contents().to_vec(),
        });
    }
    Ok(out)
}

/// A parameter value, quoted when it is not a token (RFC 2045 §5.1).
fn quoted(v: &str) -> String {
    let token = !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b));
    if token {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A raw header value, unfolded and trimmed.
fn unfold(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        out.push_str(if i > 0 { line } else { line.trim_start() });
    }
    // A bare CR is no line break: dropped, so no value read here can carry one into a
    // header iwf writes.
    out.retain(|c| c != '\r');
    out.trim().to_string()
}

fn strip_angles(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(v)
}

/// What every MM4 message iwf writes carries.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `X-Mms-Transaction-ID`.
    pub transaction_id: &'a str,
    /// `Sender`: iwf's system address (`system@iwf.ims.lab`).
    pub sender: &'a str,
    /// `Message-ID` of this RFC 5322 message (`id@host`, without brackets).
    pub rfc_message_id: &'a str,
    /// `Date`, Unix seconds.
    pub date: i64,
}

fn start(kind: MessageType, e: &Envelope<'_>) -> MessageBuilder<'static> {
    start_in(kind, e, e.transaction_id)
}

/// A message of `kind` in transaction `transaction_id` (a response's is its request's).
fn start_in(kind: MessageType, e: &Envelope<'_>, transaction_id: &str) -> MessageBuilder<'static> {
    MessageBuilder::new()
        .header("X-Mms-3GPP-MMS-Version", Raw::new(VERSION))
        .header("X-Mms-Message-Type", Raw::new(kind.as_str()))
        .header("X-Mms-Transaction-ID", raw(transaction_id))
        .header("Sender", raw(e.sender))
        .header("Message-ID", MessageId::new(e.rfc_message_id.to_string()))
        .header("Date", Date::new(e.date))
}

/// A header value as given, without CR or LF: a value taken from a message iwf
/// received can never break the header section of one it writes.
fn raw(v: &str) -> Raw<'static> {
    Raw::new(v.replace(['\r', '\n'], ""))
}

fn yes_no(b: bool) -> Raw<'static> {
    Raw::new(if b { "Yes" } else { "No" })
}

fn write(b: MessageBuilder<'_>) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    b.write_to_vec().unwrap_or_default()
}

/// `MM4_forward.RES` answering `req`: its transaction id (TS 23.140 §8.4.1.2; the
/// envelope's is not used) and its message id.
pub fn forward_res(e: &Envelope<'_>, req: &Mm4, status: RequestStatus, text: Option<&str>) -> Vec<u8> {
    let mut b = start_in(MessageType::ForwardRes, e, &req.transaction_id)
        .header("X-Mms-Request-Status-Code", Raw::new(status.as_str()));
    if let Some(id) = &req.message_id {
        b = b.header("X-Mms-Message-ID", raw(id));
    }
    if let Some(t) = text {
        b = b.header("X-Mms-Status-Text", raw(t));
    }
    write(b)
}

/// The response to report `req` (`MM4_delivery_report.RES` or
/// `MM4_read_reply_report.RES`), in its transaction, naming its message.
pub fn report_res(e: &Envelope<'_>, req: &Mm4, status: RequestStatus) -> Vec<u8> {
    let kind = req.kind.response().unwrap_or(MessageType::DeliveryReportRes);
    let mut b = start_in(kind, e, &req.transaction_id).header("X-Mms-Request-Status-Code", Raw::new(status.as_str()));
    if let Some(id) = &req.message_id {
        b = b.header("X-Mms-Message-ID", raw(id));
    }
    write(b)
}

/// A report about one message: which, between whom.
#[derive(Debug, Clone, Copy)]
pub struct ReportOf<'a> {
    /// The original's `X-Mms-Message-ID`.
    pub message_id: &'a str,
    /// The original's sender: the report's `To`.
    pub original_sender: &'a MmsAddress,
    /// The original's recipient: the report's `From`.
    pub recipient: &'a MmsAddress,
    /// Whether iwf wants the `.RES`.
    pub ack_request: bool,
}

/// `MM4_delivery_report.REQ`.
pub fn delivery_report(e: &Envelope<'_>, r: &ReportOf<'_>, status: MmStatus, text: Option<&str>) -> Vec<u8> {
    let mut b = report(MessageType::DeliveryReportReq, e, r).header("X-Mms-MM-Status-Code", Raw::new(status.as_str()));
    if let Some(t) = text {
        b = b.header("X-Mms-Status-Text", raw(t));
    }
    write(b)
}

/// `MM4_read_reply_report.REQ`.
pub fn read_reply_report(e: &Envelope<'_>, r: &ReportOf<'_>, status: ReadStatus) -> Vec<u8> {
    write(report(MessageType::ReadReplyReportReq, e, r).header("X-Mms-Read-Status", Raw::new(status.as_str())))
}

fn report(kind: MessageType, e: &Envelope<'_>, r: &ReportOf<'_>) -> MessageBuilder<'static> {
    start(kind, e)
        .header("X-Mms-Message-ID", raw(r.message_id))
        .header("From", raw(&r.recipient.to_string()))
        .header("To", raw(&r.original_sender.to_string()))
        .header("X-Mms-Ack-Request", yes_no(r.ack_request))
}

/// A multimedia message iwf forwards to a relay.
#[derive(Debug, Clone)]
pub struct Forward<'a> {
    /// `X-Mms-Message-ID` iwf gives it (reports come back naming it).
    pub message_id: &'a str,
    /// `From`.
    pub from: &'a MmsAddress,
    /// `To`.
    pub to: &'a [MmsAddress],
    /// `Subject`, if any.
    pub subject: Option<&'a str>,
    /// `X-Mms-Originator-System`: where reports go.
    pub originator_system: &'a str,
    /// `X-Mms-Delivery-Report`.
    pub delivery_report: bool,
    /// `X-Mms-Read-Reply`.
    pub read_reply: bool,
    /// `X-Mms-Ack-Request`.
    pub ack_request: bool,
    /// The content: one part as the body, several as `multipart/related`.
    pub parts: &'a [Part],
}

/// `MM4_forward.REQ`.
pub fn forward_req(e: &Envelope<'_>, f: &Forward<'_>) -> Vec<u8> {
    let to: Vec<String> = f.to.iter().map(MmsAddress::to_string).collect();
    let mut b = start(MessageType::ForwardReq, e)
        .header("X-Mms-Message-ID", raw(f.message_id))
        .header("From", raw(&f.from.to_string()))
        .header("To", raw(&to.join(", ")))
        .header("X-Mms-Originator-System", raw(f.originator_system))
        .header("X-Mms-Delivery-Report", yes_no(f.delivery_report))
        .header("X-Mms-Read-Reply", yes_no(f.read_reply))
        .header("X-Mms-Ack-Request", yes_no(f.ack_request));
    if let Some(s) = f.subject {
        b = b.subject(s.to_string());
    }
    let body = match f.parts {
        [one] => mime_part(one),
        parts => related(parts),
    };
    write(b.body(body))
}

/// `parts` as one MIME entity, for a body that is not an MM4 message (a CPIM
/// content): one part as it is, several as `multipart/related`. Its Content-Type
/// (with the boundary) and its octets.
pub fn entity(parts: &[Part]) -> (String, Vec<u8>) {
    if let [one] = parts {
        return (one.content_type.clone(), one.body.clone());
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = related(parts).write_part(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let body = out.get(split + 4..).unwrap_or_default().to_vec();
    let ct = head
        .split("\r\n")
        .fold(Vec::<String>::new(), |mut lines, l| {
            match lines.last_mut() {
                Some(last) if l.starts_with([' ', '\t']) => last.push_str(l.trim_start()),
                _ => lines.push(l.to_string()),
            }
            lines
        })
        .into_iter()
        .find_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("Content-Type")).map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "multipart/related".to_string());
    (ct, body)
}

/// The parts of a MIME entity given by its Content-Type and octets (a CPIM
/// content): a multipart's leaves, or the entity itself as one part.
pub fn entity_parts(content_type: &str, body: &[u8]) -> Result<Vec<Part>, Mm4Error> {
    if content_type.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(Mm4Error::Bad("Content-Type"));
    }
    let mut whole = Vec::with_capacity(content_type.len() + body.len() + 20);
    whole.extend_from_slice(b"Content-Type: ");
    whole.extend_from_slice(content_type.as_bytes());
    whole.extend_from_slice(b"\r\n\r\n");
    whole.extend_from_slice(body);
    let message = MessageParser::new().with_mime_headers().parse(&whole).ok_or(Mm4Error::NotAMessage)?;
    parts(&message)
}

fn related(parts: &[Part]) -> MimePart<'static> {
    // RFC 2387 §3.1: a multipart/related names its root part's type.
    let root = parts.first().map_or("text/plain", |p| p.content_type.split(';').next().unwrap_or("").trim());
    let ct = ContentType::new("multipart/related").attribute("type", root.to_string());
    MimePart::new(ct, parts.iter().map(mime_part).collect::<Vec<_>>())
}

/// One part for mail-builder: text as text (it picks the transfer encoding),
/// anything else as octets.
fn mime_part(p: &Part) -> MimePart<'static> {
    let mut params = p.content_type.split(';');
    let mut ct = ContentType::new(params.next().unwrap_or("application/octet-stream").trim().to_string());
    for param in params {
        if let Some((k, v)) = param.split_once('=') {
            let v = v.trim().trim_matches('"');
            ct = ct.attribute(k.trim().to_ascii_lowercase(), v.to_string());
        }
    }
    let text = ct.c_type.starts_with("text/");
    let mut m = match core::str::from_utf8(&p.body) {
        Ok(s) if text => MimePart::new(ct, s.to_string()),
        _ => MimePart::new(ct, p.body.clone()),
    };
    if let Some(id) = &p.content_id {
        m = m.cid(id.clone());
    }
    if let Some(n) = &p.name {
        m = m.attachment(n.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG's first octets: binary, with bytes a text codec would mangle.
    const JPEG: &[u8] = &[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x0d, 0x0a, 0x2e];

    fn forward_from_mmsc() -> Vec<u8> {
        let mut m = b"X-Mms-3GPP-MMS-Version: 6.10.0\r\n\
X-Mms-Message-Type: MM4_forward.REQ\r\n\
X-Mms-Transaction-ID: mmsc-m-0001\r\n\
X-Mms-Message-ID: <m-42@mmsc-m.lab>\r\n\
From: +447000400001/TYPE=PLMN@mmsc-m.lab\r\n\
To: +447000200001/TYPE=PLMN@iwf.ims.lab\r\n\
Subject: holiday\r\n\
Date: Mon, 07 Dec 2026 04:00:00 +0000\r\n\
X-Mms-Delivery-Report: Yes\r\n\
X-Mms-Read-Reply: yes\r\n\
X-Mms-Ack-Request: Yes\r\n\
X-Mms-Originator-System: system-user@mmsc-m.lab\r\n\
Sender: system-user@mmsc-m.lab\r\n\
Message-ID: <rfc-1@mmsc-m.lab>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"b1\"; type=\"text/plain\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=FC=DFe from the beach\r\n\
--b1\r\n\
Content-Type: image/jpeg\r\n\
Content-ID: <img1>\r\n\
Content-Disposition: attachment; filename=\"beach.jpg\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n"
            .to_vec();
        m.extend_from_slice(b"/9j/4AAQSkZJRgABDQou\r\n--b1--\r\n");
        m
    }

    #[test]
    fn a_forward_from_an_mmsc_reads_whole() {
        let m = Mm4::parse(&forward_from_mmsc()).unwrap();
        assert_eq!(m.kind, MessageType::ForwardReq);
        assert_eq!((m.version.as_str(), m.transaction_id.as_str()), ("6.10.0", "mmsc-m-0001"));
        assert_eq!(m.message_id.as_deref(), Some("m-42@mmsc-m.lab"));
        assert_eq!(m.from, Some(MmsAddress::plmn("+447000400001", "mmsc-m.lab")));
        assert_eq!(m.to, [MmsAddress::plmn("+447000200001", "iwf.ims.lab")]);
        assert!(m.delivery_report && m.read_reply && m.ack_request);
        assert_eq!(m.originator_system.as_deref(), Some("system-user@mmsc-m.lab"));
        assert_eq!(m.subject.as_deref(), Some("holiday"));
        assert_eq!(m.date, Some(1_796_616_000));
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.parts[0].content_type, "text/plain; charset=utf-8");
        assert_eq!(m.parts[0].body, "Grüße from the beach".as_bytes());
        assert_eq!(m.parts[1].content_type, "image/jpeg");
        assert_eq!(m.parts[1].body, JPEG);
        assert_eq!((m.parts[1].content_id.as_deref(), m.parts[1].name.as_deref()), (Some("img1"), Some("beach.jpg")));
    }

    #[test]
    fn what_iwf_writes_reads_back() {
        let e = Envelope {
            transaction_id: "iwf-7",
            sender: "system@iwf.ims.lab",
            rfc_message_id: "r7@iwf.ims.lab",
            date: 1_796_616_000,
        };
        let req = Mm4::parse(&forward_from_mmsc()).unwrap();
        let res = Mm4::parse(&forward_res(&e, &req, RequestStatus::Ok, Some("relayed"))).unwrap();
        assert_eq!((res.kind, res.request_status), (MessageType::ForwardRes, Some(RequestStatus::Ok)));
        assert_eq!((res.transaction_id.as_str(), res.message_id.as_deref()), ("mmsc-m-0001", Some("m-42@mmsc-m.lab")));
        assert_eq!((res.status_text.as_deref(), res.sender.as_deref()), (Some("relayed"), Some("system@iwf.ims.lab")));
        // A CR in a value read is no line break in what iwf writes back.
        let sneaky = String::from_utf8(forward_from_mmsc()).unwrap().replace("mmsc-m-0001", "t1\rX-Evil: 1");
        let written = forward_res(&e, &Mm4::parse(sneaky.as_bytes()).unwrap(), RequestStatus::Ok, None);
        assert!(!written.windows(8).any(|w| w == b"\rX-Evil:"), "{}", String::from_utf8_lossy(&written));
        assert_eq!(Mm4::parse(&written).unwrap().transaction_id, "t1X-Evil: 1");

        let sender = MmsAddress::plmn("+447000400001", "mmsc-m.lab");
        let recipient = MmsAddress::plmn("+447000200001", "iwf.ims.lab");
        let of = ReportOf {
            message_id: "m-42@mmsc-m.lab",
            original_sender: &sender,
            recipient: &recipient,
            ack_request: true,
        };
        let dr = Mm4::parse(&delivery_report(&e, &of, MmStatus::Retrieved, None)).unwrap();
        assert_eq!((dr.kind, dr.mm_status), (MessageType::DeliveryReportReq, Some(MmStatus::Retrieved)));
        assert_eq!((dr.from.as_ref(), dr.to.as_slice()), (Some(&recipient), &[sender.clone()][..]));
        assert_eq!((dr.message_id.as_deref(), dr.ack_request, dr.date), (Some("m-42@mmsc-m.lab"), true, Some(e.date)));
        let rr = Mm4::parse(&read_reply_report(&e, &of, ReadStatus::Read)).unwrap();
        assert_eq!((rr.kind, rr.read_status), (MessageType::ReadReplyReportReq, Some(ReadStatus::Read)));

        let parts = [
            Part {
                content_type: "text/plain; charset=utf-8".into(),
                content_id: None,
                name: None,
                body: "é.\r\n.".into(),
            },
            Part {
                content_type: "image/jpeg".into(),
                content_id: Some("p1".into()),
                name: Some("a b.jpg".into()),
                body: JPEG.to_vec(),
            },
        ];
        let f = Forward {
            message_id: "iwf-m-1",
            from: &recipient,
            to: std::slice::from_ref(&sender),
            subject: Some("ünïcode"),
            originator_system: "system@iwf.ims.lab",
            delivery_report: true,
            read_reply: false,
            ack_request: true,
            parts: &parts,
        };
        let fw = Mm4::parse(&forward_req(&e, &f)).unwrap();
        assert_eq!((fw.kind, fw.message_id.as_deref()), (MessageType::ForwardReq, Some("iwf-m-1")));
        assert_eq!((fw.delivery_report, fw.read_reply, fw.ack_request), (true, false, true));
        assert_eq!(fw.subject.as_deref(), Some("ünïcode"));
        assert_eq!(fw.parts, parts);
        let ct = fw.content_type.unwrap();
        assert!(ct.starts_with("multipart/related") && ct.contains("type=\"text/plain\""), "{ct}");
    }

    #[test]
    fn malformed_messages_are_refused_by_name() {
        let good = String::from_utf8(forward_from_mmsc()).unwrap();
        let e = |text: &str| Mm4::parse(text.as_bytes()).unwrap_err();
        assert_eq!(
            e(&good.replace("X-Mms-Message-Type: MM4_forward.REQ\r\n", "")),
            Mm4Error::Missing("X-Mms-Message-Type")
        );
        assert_eq!(e(&good.replace("MM4_forward.REQ", "MM1_send.REQ")), Mm4Error::UnknownType);
        assert_eq!(Mm4Error::UnknownType.request_status(), RequestStatus::ErrorUnsupportedMessage);
        let twice = good.replace("X-Mms-Transaction-ID", "X-Mms-Message-Type: MM4_forward.RES\r\nX-Mms-Transaction-ID");
        assert_eq!(e(&twice), Mm4Error::Repeated("X-Mms-Message-Type"));
        assert_eq!(
            e(&good.replace("X-Mms-Read-Reply: yes", "X-Mms-Read-Reply: maybe")),
            Mm4Error::Bad("X-Mms-Read-Reply")
        );
        assert_eq!(
            e(&good.replace("X-Mms-Message-ID: <m-42@mmsc-m.lab>\r\n", "")),
            Mm4Error::Missing("X-Mms-Message-ID")
        );
        assert_eq!(e(&good.replace("To: +447000200001/TYPE=PLMN", "To: +4470002x/TYPE=PLMN")), Mm4Error::Bad("To"));
        assert_eq!(
            e(&good.replace("X-Mms-Transaction-ID: mmsc-m-0001\r\n", "")),
            Mm4Error::Missing("X-Mms-Transaction-ID")
        );
        let many = good.replace("--b1--\r\n", &"--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n".repeat(40));
        assert_eq!(e(&format!("{many}--b1--\r\n")), Mm4Error::TooManyParts);
        assert_eq!(Mm4::parse(b"").unwrap_err(), Mm4Error::NotAMessage);
        assert!(Mm4::parse(b"\x00\xff garbage").is_err());
        let res =
            "X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_forward.RES\r\nX-Mms-Transaction-ID: t\r\n\r\n";
        assert_eq!(e(res), Mm4Error::Missing("X-Mms-Request-Status-Code"));
        let bad = res.replace("\r\n\r\n", "\r\nX-Mms-Request-Status-Code: Fine\r\n\r\n");
        assert_eq!(e(&bad), Mm4Error::Bad("X-Mms-Request-Status-Code"));
        let ok = res.replace("\r\n\r\n", "\r\nX-Mms-Request-Status-Code: error-network-problem\r\n\r\n");
        assert_eq!(Mm4::parse(ok.as_bytes()).unwrap().request_status, Some(RequestStatus::ErrorNetworkProblem));
    }

    #[test]
    fn addresses() {
        let a = MmsAddress::parse("\"Ann\" <+447000200001/TYPE=PLMN@IWF.ims.lab>").unwrap();
        assert_eq!((a.number(), a.domain.as_str()), (Some("+447000200001"), "iwf.ims.lab"));
        assert_eq!(a.to_string(), "+447000200001/TYPE=PLMN@iwf.ims.lab");
        let e = MmsAddress::parse("ann@example.net").unwrap();
        assert_eq!((e.kind, e.number()), (None, None));
        assert_eq!(MmsAddress::parse("10.0.0.1/TYPE=IPv4@x.lab").unwrap().kind, Some(AddressKind::Ipv4));
        for bad in
            ["", "@x", "a@", "+44/TYPE=PLMN", "+44x/TYPE=PLMN@x", "/TYPE=PLMN@x", "a/TYPE=FAX@x", "<a@b", "a b@c"]
        {
            assert_eq!(MmsAddress::parse(bad), None, "{bad}");
        }
    }
}
