//! `registered_delivery` (SMPP 3.4 §5.2.17) and `esm_class` (SMPP 3.4 §5.2.12) as small
//! typed wrappers over their octet. Unassigned bit patterns are kept, never rejected.

use core::fmt;

/// SMSC delivery receipt request: `registered_delivery` bits 1-0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmscReceipt {
    /// 00: no SMSC delivery receipt.
    None,
    /// 01: receipt on final outcome, success or failure.
    SuccessOrFailure,
    /// 10: receipt on failure only.
    FailureOnly,
    /// 11: reserved in 3.4; receipt on success only in 5.0.
    SuccessOnly,
}

/// SME-originated acknowledgement request: `registered_delivery` bits 3-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmeAck {
    /// 00: none.
    None,
    /// 01: SME delivery acknowledgement.
    Delivery,
    /// 10: SME manual/user acknowledgement (the only SMPP form of a read report).
    User,
    /// 11: both delivery and user acknowledgement.
    Both,
}

/// The `registered_delivery` octet.
///
/// ```text
///  7 6 5   4            3 2       1 0
/// +-----+------------+---------+---------------+
/// | rsv | intermed.  | SME ack | SMSC receipt  |
/// +-----+------------+---------+---------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RegisteredDelivery(pub u8);

impl RegisteredDelivery {
    /// Nothing requested.
    pub const NONE: RegisteredDelivery = RegisteredDelivery(0);
    /// Bits 1-0 mask.
    pub const SMSC_RECEIPT_MASK: u8 = 0x03;
    /// Bits 3-2 mask.
    pub const SME_ACK_MASK: u8 = 0x0C;
    /// Bit 4: intermediate notification requested.
    pub const INTERMEDIATE: u8 = 0x10;

    /// Builds the octet from its parts.
    pub fn new(receipt: SmscReceipt, ack: SmeAck, intermediate: bool) -> Self {
        let r = match receipt {
            SmscReceipt::None => 0,
            SmscReceipt::SuccessOrFailure => 1,
            SmscReceipt::FailureOnly => 2,
            SmscReceipt::SuccessOnly => 3,
        };
        let a = match ack {
            SmeAck::None => 0,
            SmeAck::Delivery => 1,
            SmeAck::User => 2,
            SmeAck::Both => 3,
        };
        RegisteredDelivery(r | (a << 2) | if intermediate { Self::INTERMEDIATE } else { 0 })
    }

    /// The SMSC receipt request (bits 1-0).
    pub fn smsc_receipt(self) -> SmscReceipt {
        match self.0 & Self::SMSC_RECEIPT_MASK {
            0 => SmscReceipt::None,
            1 => SmscReceipt::SuccessOrFailure,
            2 => SmscReceipt::FailureOnly,
            _ => SmscReceipt::SuccessOnly,
        }
    }

    /// The SME acknowledgement request (bits 3-2).
    pub fn sme_ack(self) -> SmeAck {
        match (self.0 & Self::SME_ACK_MASK) >> 2 {
            0 => SmeAck::None,
            1 => SmeAck::Delivery,
            2 => SmeAck::User,
            _ => SmeAck::Both,
        }
    }

    /// Whether an SME manual/user acknowledgement (read report) is requested.
    pub fn wants_user_ack(self) -> bool {
        matches!(self.sme_ack(), SmeAck::User | SmeAck::Both)
    }

    /// Whether an intermediate notification is requested (bit 4).
    pub fn intermediate(self) -> bool {
        self.0 & Self::INTERMEDIATE != 0
    }
}

impl fmt::Display for RegisteredDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x} ({:?}, ack {:?}", self.0, self.smsc_receipt(), self.sme_ack())?;
        if self.intermediate() {
            f.write_str(", intermediate")?;
        }
        f.write_str(")")
    }
}

/// Messaging mode: `esm_class` bits 1-0 on submit_sm / data_sm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessagingMode {
    /// 00: SMSC default mode (usually store and forward).
    Default,
    /// 01: datagram.
    Datagram,
    /// 10: forward (transaction) mode.
    Forward,
    /// 11: store and forward.
    StoreAndForward,
}

/// Message type: `esm_class` bits 5-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 0000: a normal short message.
    Default,
    /// 0001 (0x04): SMSC delivery receipt (deliver_sm) / ESME delivery ack (submit_sm, 3.4).
    SmscDeliveryReceipt,
    /// 0010 (0x08): SME delivery acknowledgement.
    SmeDeliveryAck,
    /// 0100 (0x10): SME manual/user acknowledgement.
    SmeUserAck,
    /// 0110 (0x18): conversation abort (Korean CDMA).
    ConversationAbort,
    /// 1000 (0x20): intermediate delivery notification.
    IntermediateNotification,
    /// Any other bit pattern (the masked octet, bits 5-2 only).
    Other(u8),
}

/// The `esm_class` octet.
///
/// ```text
///  7 6         5 4 3 2        1 0
/// +---+------+--------------+---------------+
/// |GSM features| message type | messaging mode|
/// +---+------+--------------+---------------+
///  bit 7 reply path, bit 6 UDHI
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EsmClass(pub u8);

impl EsmClass {
    /// A default message.
    pub const DEFAULT: EsmClass = EsmClass(0);
    /// Bits 1-0 mask.
    pub const MESSAGING_MODE_MASK: u8 = 0x03;
    /// Bits 5-2 mask.
    pub const MESSAGE_TYPE_MASK: u8 = 0x3C;
    /// 0x04: SMSC delivery receipt.
    pub const SMSC_DELIVERY_RECEIPT: u8 = 0x04;
    /// 0x08: SME delivery acknowledgement.
    pub const SME_DELIVERY_ACK: u8 = 0x08;
    /// 0x10: SME manual/user acknowledgement.
    pub const SME_USER_ACK: u8 = 0x10;
    /// 0x20: intermediate delivery notification.
    pub const INTERMEDIATE_NOTIFICATION: u8 = 0x20;
    /// 0x40: the short message starts with a user data header.
    pub const UDHI: u8 = 0x40;
    /// 0x80: set reply path.
    pub const REPLY_PATH: u8 = 0x80;

    /// The messaging mode (bits 1-0; meaningful on submit_sm and data_sm).
    pub fn messaging_mode(self) -> MessagingMode {
        match self.0 & Self::MESSAGING_MODE_MASK {
            0 => MessagingMode::Default,
            1 => MessagingMode::Datagram,
            2 => MessagingMode::Forward,
            _ => MessagingMode::StoreAndForward,
        }
    }

    /// The message type (bits 5-2).
    pub fn message_type(self) -> MessageType {
        match self.0 & Self::MESSAGE_TYPE_MASK {
            0x00 => MessageType::Default,
            0x04 => MessageType::SmscDeliveryReceipt,
            0x08 => MessageType::SmeDeliveryAck,
            0x10 => MessageType::SmeUserAck,
            0x18 => MessageType::ConversationAbort,
            0x20 => MessageType::IntermediateNotification,
            other => MessageType::Other(other),
        }
    }

    /// Whether this is any kind of receipt or acknowledgement rather than a message.
    pub fn is_receipt(self) -> bool {
        matches!(
            self.message_type(),
            MessageType::SmscDeliveryReceipt
                | MessageType::SmeDeliveryAck
                | MessageType::SmeUserAck
                | MessageType::IntermediateNotification
        )
    }

    /// UDH indicator (bit 6).
    pub fn udhi(self) -> bool {
        self.0 & Self::UDHI != 0
    }

    /// Reply path (bit 7).
    pub fn reply_path(self) -> bool {
        self.0 & Self::REPLY_PATH != 0
    }

    /// The same octet with UDHI set or cleared.
    pub fn with_udhi(self, udhi: bool) -> Self {
        EsmClass(if udhi { self.0 | Self::UDHI } else { self.0 & !Self::UDHI })
    }
}

impl fmt::Display for EsmClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x} ({:?}", self.0, self.message_type())?;
        if self.udhi() {
            f.write_str(", UDHI")?;
        }
        if self.reply_path() {
            f.write_str(", reply path")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_delivery_bits() {
        let rd = RegisteredDelivery(0x01);
        assert_eq!(rd.smsc_receipt(), SmscReceipt::SuccessOrFailure);
        assert_eq!(rd.sme_ack(), SmeAck::None);
        assert!(!rd.intermediate());
        let rd = RegisteredDelivery(0x1A);
        assert_eq!(rd.smsc_receipt(), SmscReceipt::FailureOnly);
        assert_eq!(rd.sme_ack(), SmeAck::User);
        assert!(rd.wants_user_ack());
        assert!(rd.intermediate());
        assert_eq!(RegisteredDelivery(0x0F).sme_ack(), SmeAck::Both);
        assert_eq!(RegisteredDelivery(0x03).smsc_receipt(), SmscReceipt::SuccessOnly);
    }

    #[test]
    fn registered_delivery_new_round_trips() {
        for byte in 0u8..0x20 {
            let rd = RegisteredDelivery(byte);
            assert_eq!(RegisteredDelivery::new(rd.smsc_receipt(), rd.sme_ack(), rd.intermediate()), rd);
        }
    }

    #[test]
    fn esm_class_bits() {
        let e = EsmClass(0x04);
        assert_eq!(e.message_type(), MessageType::SmscDeliveryReceipt);
        assert!(e.is_receipt());
        assert_eq!(EsmClass(0x08).message_type(), MessageType::SmeDeliveryAck);
        assert_eq!(EsmClass(0x10).message_type(), MessageType::SmeUserAck);
        assert_eq!(EsmClass(0x20).message_type(), MessageType::IntermediateNotification);
        assert_eq!(EsmClass(0x0C).message_type(), MessageType::Other(0x0C));
        let e = EsmClass(0xC3);
        assert!(e.udhi());
        assert!(e.reply_path());
        assert_eq!(e.messaging_mode(), MessagingMode::StoreAndForward);
        assert_eq!(e.message_type(), MessageType::Default);
        assert!(!e.is_receipt());
        assert_eq!(EsmClass(0x01).messaging_mode(), MessagingMode::Datagram);
        assert_eq!(EsmClass(0x02).messaging_mode(), MessagingMode::Forward);
        assert_eq!(EsmClass(0x00).with_udhi(true), EsmClass(0x40));
        assert_eq!(EsmClass(0x44).with_udhi(false), EsmClass(0x04));
        assert_eq!(EsmClass(0x44).to_string(), "0x44 (SmscDeliveryReceipt, UDHI)");
    }
}
