//! The values MM4 headers carry: message types, status codes, MMS addresses.

/// The MM4 transaction an MM4 message carries (`X-Mms-Message-Type`, 3GPP TS
/// 23.140 §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A multimedia message, relay to relay (§8.4.1.1).
    ForwardReq,
    /// Its acknowledgement (§8.4.1.2).
    ForwardRes,
    /// A delivery report back to the originator's relay (§8.4.2.1).
    DeliveryReportReq,
    /// Its acknowledgement (§8.4.2.2).
    DeliveryReportRes,
    /// A read-reply report back to the originator's relay (§8.4.3.1).
    ReadReplyReportReq,
    /// Its acknowledgement (§8.4.3.2).
    ReadReplyReportRes,
}

impl MessageType {
    const ALL: [(MessageType, &'static str); 6] = [
        (MessageType::ForwardReq, "MM4_forward.REQ"),
        (MessageType::ForwardRes, "MM4_forward.RES"),
        (MessageType::DeliveryReportReq, "MM4_delivery_report.REQ"),
        (MessageType::DeliveryReportRes, "MM4_delivery_report.RES"),
        (MessageType::ReadReplyReportReq, "MM4_read_reply_report.REQ"),
        (MessageType::ReadReplyReportRes, "MM4_read_reply_report.RES"),
    ];

    /// The header value (`MM4_forward.REQ`).
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or("", |(_, s)| s)
    }

    /// Reads a header value (case-insensitive, as relays differ).
    pub fn parse(s: &str) -> Option<MessageType> {
        Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(s.trim())).map(|(t, _)| *t)
    }

    /// The response type of a request type.
    pub fn response(self) -> Option<MessageType> {
        match self {
            MessageType::ForwardReq => Some(MessageType::ForwardRes),
            MessageType::DeliveryReportReq => Some(MessageType::DeliveryReportRes),
            MessageType::ReadReplyReportReq => Some(MessageType::ReadReplyReportRes),
            _ => None,
        }
    }
}

/// `X-Mms-Request-Status-Code` of an MM4 response (TS 23.140 §8.4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Accepted.
    Ok,
    /// Refused, no reason given.
    ErrorUnspecified,
    /// Refused by policy.
    ErrorServiceDenied,
    /// Not a well-formed MM4 message.
    ErrorMessageFormatCorrupt,
    /// The recipient cannot be resolved.
    ErrorSendingAddressUnresolved,
    /// The message referred to is unknown.
    ErrorMessageNotFound,
    /// A transient network problem: try again.
    ErrorNetworkProblem,
    /// The content cannot be taken (too large, a type refused).
    ErrorContentNotAccepted,
    /// A message type or version not supported.
    ErrorUnsupportedMessage,
}

impl RequestStatus {
    const ALL: [(RequestStatus, &'static str); 9] = [
        (RequestStatus::Ok, "Ok"),
        (RequestStatus::ErrorUnspecified, "Error-unspecified"),
        (RequestStatus::ErrorServiceDenied, "Error-service-denied"),
        (RequestStatus::ErrorMessageFormatCorrupt, "Error-message-format-corrupt"),
        (RequestStatus::ErrorSendingAddressUnresolved, "Error-sending-address-unresolved"),
        (RequestStatus::ErrorMessageNotFound, "Error-message-not-found"),
        (RequestStatus::ErrorNetworkProblem, "Error-network-problem"),
        (RequestStatus::ErrorContentNotAccepted, "Error-content-not-accepted"),
        (RequestStatus::ErrorUnsupportedMessage, "Error-unsupported-message"),
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or("", |(_, s)| s)
    }

    /// Reads a header value (case-insensitive).
    pub fn parse(s: &str) -> Option<RequestStatus> {
        Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(s.trim())).map(|(t, _)| *t)
    }
}

/// `X-Mms-MM-Status-Code` of a delivery report (TS 23.140 §8.4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmStatus {
    /// The message expired before it was retrieved.
    Expired,
    /// The recipient retrieved it.
    Retrieved,
    /// The recipient rejected it.
    Rejected,
    /// The recipient deferred retrieval.
    Deferred,
    /// Its fate cannot be told (e.g. it left for a system without reports).
    Indeterminate,
    /// The recipient forwarded it without retrieving it.
    Forwarded,
    /// The recipient is unknown.
    Unrecognised,
}

impl MmStatus {
    const ALL: [(MmStatus, &'static str); 7] = [
        (MmStatus::Expired, "Expired"),
        (MmStatus::Retrieved, "Retrieved"),
        (MmStatus::Rejected, "Rejected"),
        (MmStatus::Deferred, "Deferred"),
        (MmStatus::Indeterminate, "Indeterminate"),
        (MmStatus::Forwarded, "Forwarded"),
        (MmStatus::Unrecognised, "Unrecognised"),
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or("", |(_, s)| s)
    }

    /// Reads a header value (case-insensitive; `Unrecognized` too).
    pub fn parse(s: &str) -> Option<MmStatus> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("Unrecognized") {
            return Some(MmStatus::Unrecognised);
        }
        Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)).map(|(t, _)| *t)
    }
}

/// `X-Mms-Read-Status` of a read-reply report (TS 23.140 §8.4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// The recipient read it.
    Read,
    /// The recipient deleted it unread.
    DeletedWithoutBeingRead,
}

impl ReadStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadStatus::Read => "Read",
            ReadStatus::DeletedWithoutBeingRead => "Deleted without being read",
        }
    }

    /// Reads a header value (case-insensitive).
    pub fn parse(s: &str) -> Option<ReadStatus> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("Read") {
            Some(ReadStatus::Read)
        } else if s.eq_ignore_ascii_case("Deleted without being read") || s.eq_ignore_ascii_case("Deleted") {
            Some(ReadStatus::DeletedWithoutBeingRead)
        } else {
            None
        }
    }
}

/// An MMS address as MM4 writes it (TS 23.140 §8.4.4; RFC 2822 addr-spec with a
/// `/TYPE=` suffix): `+447000200001/TYPE=PLMN@iwf.ims.lab`, or a plain e-mail
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsAddress {
    /// The user part: the number (`+447000200001`) for PLMN addresses.
    pub user: String,
    /// The address type (`PLMN`, `IPv4`, `IPv6`), `None` for an e-mail address.
    pub kind: Option<AddressKind>,
    /// The domain (the MMS relay's).
    pub domain: String,
}

/// The `/TYPE=` of an MMS address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// A phone number (E.164 with `+`, or national digits).
    Plmn,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
}

impl MmsAddress {
    /// A PLMN address: `number/TYPE=PLMN@domain`.
    pub fn plmn(number: &str, domain: &str) -> MmsAddress {
        MmsAddress { user: number.to_string(), kind: Some(AddressKind::Plmn), domain: domain.to_string() }
    }

    /// Reads an address: an addr-spec, in angle brackets or not, with a display
    /// name or not.
    pub fn parse(s: &str) -> Option<MmsAddress> {
        let s = s.trim();
        let spec = match (s.rfind('<'), s.rfind('>')) {
            (Some(a), Some(b)) if a < b => &s[a + 1..b],
            (None, None) => s,
            _ => return None,
        };
        let (local, domain) = spec.trim().rsplit_once('@')?;
        if local.is_empty() || domain.is_empty() || domain.bytes().any(|b| b <= b' ' || b"<>@,;\"".contains(&b)) {
            return None;
        }
        if local.bytes().any(|b| b <= b' ' || b"<>@,;\"".contains(&b)) {
            return None;
        }
        let (user, kind) = match local.rsplit_once("/TYPE=").or_else(|| local.rsplit_once("/type=")) {
            Some((user, t)) if t.eq_ignore_ascii_case("PLMN") => (user, Some(AddressKind::Plmn)),
            Some((user, t)) if t.eq_ignore_ascii_case("IPv4") => (user, Some(AddressKind::Ipv4)),
            Some((user, t)) if t.eq_ignore_ascii_case("IPv6") => (user, Some(AddressKind::Ipv6)),
            Some(_) => return None,
            None => (local, None),
        };
        if user.is_empty() {
            return None;
        }
        if kind == Some(AddressKind::Plmn) {
            let digits = user.strip_prefix('+').unwrap_or(user);
            if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
        }
        Some(MmsAddress { user: user.to_string(), kind, domain: domain.to_ascii_lowercase() })
    }

    /// The number of a PLMN address.
    pub fn number(&self) -> Option<&str> {
        (self.kind == Some(AddressKind::Plmn)).then_some(self.user.as_str())
    }
}

impl core::fmt::Display for MmsAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match self.kind {
            Some(AddressKind::Plmn) => "/TYPE=PLMN",
            Some(AddressKind::Ipv4) => "/TYPE=IPv4",
            Some(AddressKind::Ipv6) => "/TYPE=IPv6",
            None => "",
        };
        write!(f, "{}{kind}@{}", self.user, self.domain)
    }
}
