//! The SIP method: a word of the request line and of CSeq, so both the message and
//! its header fields use it.

use std::fmt;

/// A SIP method (RFC 3261 §7.1, case-sensitive). Unknown methods are data.
#[derive(Clone, Copy, Debug, Eq)]
pub enum Method<'a> {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// REGISTER (RFC 3261).
    Register,
    /// OPTIONS (RFC 3261).
    Options,
    /// MESSAGE (RFC 3428).
    Message,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// PUBLISH (RFC 3903).
    Publish,
    /// An extension method token (`NEWMETHOD`, `RE%47IST%45R`, ...).
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// Classify a method token (case-sensitive, as RFC 3261 §7.1 requires).
    pub fn from_token(s: &'a str) -> Self {
        match s.as_bytes() {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other(s),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl PartialEq for Method<'_> {
    fn eq(&self, other: &Method<'_>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
