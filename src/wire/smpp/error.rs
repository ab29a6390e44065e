//! What the SMPP codecs say when bytes are not a PDU or a PDU cannot be written, and
//! the names those errors use (the mandatory fields, the TLV tags). It depends only
//! on the status codes, so that the header, PDU and TLV codecs can all use it without
//! depending on one another.

use core::fmt;

use super::status::CommandStatus;

/// A TLV tag. A newtype so that unknown and vendor tags (0x1400–0x3FFF) are plain data;
/// the constants name every SMPP 3.4 and 5.0 tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlvTag(pub u16);

macro_rules! tlv_tags {
    ($( $name:ident = $value:expr, $spec:expr; )+) => {
        impl TlvTag {
            $(
                #[doc = concat!("`", $spec, "`.")]
                pub const $name: TlvTag = TlvTag($value);
            )+

            /// The spec name (`receipted_message_id`), `None` for unknown tags.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($spec), )+
                    _ => None,
                }
            }
        }
    };
}

tlv_tags! {
    DEST_ADDR_SUBUNIT = 0x0005, "dest_addr_subunit";
    DEST_NETWORK_TYPE = 0x0006, "dest_network_type";
    DEST_BEARER_TYPE = 0x0007, "dest_bearer_type";
    DEST_TELEMATICS_ID = 0x0008, "dest_telematics_id";
    SOURCE_ADDR_SUBUNIT = 0x000D, "source_addr_subunit";
    SOURCE_NETWORK_TYPE = 0x000E, "source_network_type";
    SOURCE_BEARER_TYPE = 0x000F, "source_bearer_type";
    SOURCE_TELEMATICS_ID = 0x0010, "source_telematics_id";
    QOS_TIME_TO_LIVE = 0x0017, "qos_time_to_live";
    PAYLOAD_TYPE = 0x0019, "payload_type";
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D, "additional_status_info_text";
    RECEIPTED_MESSAGE_ID = 0x001E, "receipted_message_id";
    MS_MSG_WAIT_FACILITIES = 0x0030, "ms_msg_wait_facilities";
    PRIVACY_INDICATOR = 0x0201, "privacy_indicator";
    SOURCE_SUBADDRESS = 0x0202, "source_subaddress";
    DEST_SUBADDRESS = 0x0203, "dest_subaddress";
    USER_MESSAGE_REFERENCE = 0x0204, "user_message_reference";
    USER_RESPONSE_CODE = 0x0205, "user_response_code";
    SOURCE_PORT = 0x020A, "source_port";
    DESTINATION_PORT = 0x020B, "destination_port";
    SAR_MSG_REF_NUM = 0x020C, "sar_msg_ref_num";
    LANGUAGE_INDICATOR = 0x020D, "language_indicator";
    SAR_TOTAL_SEGMENTS = 0x020E, "sar_total_segments";
    SAR_SEGMENT_SEQNUM = 0x020F, "sar_segment_seqnum";
    SC_INTERFACE_VERSION = 0x0210, "sc_interface_version";
    CALLBACK_NUM_PRES_IND = 0x0302, "callback_num_pres_ind";
    CALLBACK_NUM_ATAG = 0x0303, "callback_num_atag";
    NUMBER_OF_MESSAGES = 0x0304, "number_of_messages";
    CALLBACK_NUM = 0x0381, "callback_num";
    DPF_RESULT = 0x0420, "dpf_result";
    SET_DPF = 0x0421, "set_dpf";
    MS_AVAILABILITY_STATUS = 0x0422, "ms_availability_status";
    NETWORK_ERROR_CODE = 0x0423, "network_error_code";
    MESSAGE_PAYLOAD = 0x0424, "message_payload";
    DELIVERY_FAILURE_REASON = 0x0425, "delivery_failure_reason";
    MORE_MESSAGES_TO_SEND = 0x0426, "more_messages_to_send";
    MESSAGE_STATE = 0x0427, "message_state";
    CONGESTION_STATE = 0x0428, "congestion_state";
    USSD_SERVICE_OP = 0x0501, "ussd_service_op";
    BROADCAST_CHANNEL_INDICATOR = 0x0600, "broadcast_channel_indicator";
    BROADCAST_CONTENT_TYPE = 0x0601, "broadcast_content_type";
    BROADCAST_CONTENT_TYPE_INFO = 0x0602, "broadcast_content_type_info";
    BROADCAST_MESSAGE_CLASS = 0x0603, "broadcast_message_class";
    BROADCAST_REP_NUM = 0x0604, "broadcast_rep_num";
    BROADCAST_FREQUENCY_INTERVAL = 0x0605, "broadcast_frequency_interval";
    BROADCAST_AREA_IDENTIFIER = 0x0606, "broadcast_area_identifier";
    BROADCAST_ERROR_STATUS = 0x0607, "broadcast_error_status";
    BROADCAST_AREA_SUCCESS = 0x0608, "broadcast_area_success";
    BROADCAST_END_TIME = 0x0609, "broadcast_end_time";
    BROADCAST_SERVICE_GROUP = 0x060A, "broadcast_service_group";
    BILLING_IDENTIFICATION = 0x060B, "billing_identification";
    SOURCE_NETWORK_ID = 0x060D, "source_network_id";
    DEST_NETWORK_ID = 0x060E, "dest_network_id";
    SOURCE_NODE_ID = 0x060F, "source_node_id";
    DEST_NODE_ID = 0x0610, "dest_node_id";
    DEST_ADDR_NP_RESOLUTION = 0x0611, "dest_addr_np_resolution";
    DEST_ADDR_NP_INFORMATION = 0x0612, "dest_addr_np_information";
    DEST_ADDR_NP_COUNTRY = 0x0613, "dest_addr_np_country";
    DISPLAY_TIME = 0x1201, "display_time";
    SMS_SIGNAL = 0x1203, "sms_signal";
    MS_VALIDITY = 0x1204, "ms_validity";
    ALERT_ON_MESSAGE_DELIVERY = 0x130C, "alert_on_message_delivery";
    ITS_REPLY_TYPE = 0x1380, "its_reply_type";
    ITS_SESSION_INFO = 0x1383, "its_session_info";
}

impl TlvTag {
    /// Whether the tag lies in the SMSC vendor-specific range 0x1400–0x3FFF.
    pub fn is_vendor_specific(self) -> bool {
        (0x1400..=0x3FFF).contains(&self.0)
    }
}

impl fmt::Display for TlvTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "tlv 0x{:04x}", self.0),
        }
    }
}

/// A mandatory PDU field, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Field {
    SystemId,
    Password,
    SystemType,
    InterfaceVersion,
    AddrTon,
    AddrNpi,
    AddressRange,
    ServiceType,
    SourceAddrTon,
    SourceAddrNpi,
    SourceAddr,
    DestAddrTon,
    DestAddrNpi,
    DestinationAddr,
    EsmClass,
    ProtocolId,
    PriorityFlag,
    ScheduleDeliveryTime,
    ValidityPeriod,
    RegisteredDelivery,
    ReplaceIfPresentFlag,
    DataCoding,
    SmDefaultMsgId,
    SmLength,
    ShortMessage,
    MessageId,
    EsmeAddrTon,
    EsmeAddrNpi,
    EsmeAddr,
}

impl Field {
    /// The spec's field name.
    pub fn name(self) -> &'static str {
        use Field::*;
        match self {
            SystemId => "system_id",
            Password => "password",
            SystemType => "system_type",
            InterfaceVersion => "interface_version",
            AddrTon => "addr_ton",
            AddrNpi => "addr_npi",
            AddressRange => "address_range",
            ServiceType => "service_type",
            SourceAddrTon => "source_addr_ton",
            SourceAddrNpi => "source_addr_npi",
            SourceAddr => "source_addr",
            DestAddrTon => "dest_addr_ton",
            DestAddrNpi => "dest_addr_npi",
            DestinationAddr => "destination_addr",
            EsmClass => "esm_class",
            ProtocolId => "protocol_id",
            PriorityFlag => "priority_flag",
            ScheduleDeliveryTime => "schedule_delivery_time",
            ValidityPeriod => "validity_period",
            RegisteredDelivery => "registered_delivery",
            ReplaceIfPresentFlag => "replace_if_present_flag",
            DataCoding => "data_coding",
            SmDefaultMsgId => "sm_default_msg_id",
            SmLength => "sm_length",
            ShortMessage => "short_message",
            MessageId => "message_id",
            EsmeAddrTon => "esme_addr_ton",
            EsmeAddrNpi => "esme_addr_npi",
            EsmeAddr => "esme_addr",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a valid PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than 16 bytes: no complete header.
    TruncatedHeader {
        /// Bytes available.
        len: usize,
    },
    /// `command_length` is below 16.
    CommandLengthTooShort {
        /// The value read.
        command_length: u32,
    },
    /// `command_length` differs from the number of bytes given.
    LengthMismatch {
        /// The value read.
        command_length: u32,
        /// Bytes given.
        buffer_len: usize,
    },
    /// The body ends before this integer field (or before this C-string starts).
    Truncated {
        /// The field.
        field: Field,
    },
    /// The body ends inside this C-string, before its NUL.
    MissingNul {
        /// The field.
        field: Field,
    },
    /// No NUL within the C-string's maximum size.
    CStringTooLong {
        /// The field.
        field: Field,
        /// Its maximum size, NUL included.
        max: u8,
    },
    /// `sm_length` is above 254 or runs past the end of the body.
    BadSmLength {
        /// The value read.
        sm_length: u8,
        /// Bytes left in the body.
        available: usize,
    },
    /// Bytes after the last field of a PDU that takes no (more) parameters.
    TrailingBytes {
        /// How many.
        len: usize,
    },
    /// The TLV area is malformed.
    Tlv(TlvError),
}

impl ParseError {
    /// The `command_status` to answer the offending request with (in its `*_resp`, or
    /// in a `generic_nack` when the header itself is bad).
    pub fn command_status(&self) -> CommandStatus {
        match *self {
            ParseError::TruncatedHeader { .. }
            | ParseError::CommandLengthTooShort { .. }
            | ParseError::LengthMismatch { .. }
            | ParseError::TrailingBytes { .. } => CommandStatus::ESME_RINVCMDLEN,
            ParseError::BadSmLength { .. } => CommandStatus::ESME_RINVMSGLEN,
            ParseError::Tlv(TlvError::BadValueLength { .. }) => CommandStatus::ESME_RINVPARLEN,
            ParseError::Tlv(_) => CommandStatus::ESME_RINVOPTPARSTREAM,
            ParseError::Truncated { field }
            | ParseError::MissingNul { field }
            | ParseError::CStringTooLong { field, .. } => match field {
                Field::SystemId => CommandStatus::ESME_RINVSYSID,
                Field::Password => CommandStatus::ESME_RINVPASWD,
                Field::SystemType => CommandStatus::ESME_RINVSYSTYP,
                Field::ServiceType => CommandStatus::ESME_RINVSERTYP,
                Field::SourceAddr => CommandStatus::ESME_RINVSRCADR,
                Field::DestinationAddr => CommandStatus::ESME_RINVDSTADR,
                Field::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
                Field::ValidityPeriod => CommandStatus::ESME_RINVEXPIRY,
                Field::MessageId => CommandStatus::ESME_RINVMSGID,
                _ => CommandStatus::ESME_RINVCMDLEN,
            },
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::TruncatedHeader { len } => {
                write!(f, "SMPP header truncated: {len} of 16 bytes")
            }
            ParseError::CommandLengthTooShort { command_length } => {
                write!(f, "SMPP command_length {command_length} is below the 16-byte header")
            }
            ParseError::LengthMismatch { command_length, buffer_len } => {
                write!(f, "SMPP command_length {command_length} but {buffer_len} bytes given")
            }
            ParseError::Truncated { field } => write!(f, "SMPP body truncated before {field}"),
            ParseError::MissingNul { field } => {
                write!(f, "SMPP {field} has no NUL terminator before the end of the body")
            }
            ParseError::CStringTooLong { field, max } => {
                write!(f, "SMPP {field} longer than {max} octets (NUL included)")
            }
            ParseError::BadSmLength { sm_length, available } => {
                write!(f, "SMPP sm_length {sm_length} invalid ({available} body bytes left)")
            }
            ParseError::TrailingBytes { len } => {
                write!(f, "SMPP PDU has {len} unexpected trailing bytes")
            }
            ParseError::Tlv(e) => write!(f, "SMPP {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<TlvError> for ParseError {
    fn from(e: TlvError) -> Self {
        ParseError::Tlv(e)
    }
}

/// Why a PDU (or TLV area, or receipt) cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A C-string is too long for its field.
    CStringTooLong {
        /// The field.
        field: Field,
        /// Its maximum size, NUL included.
        max: u8,
    },
    /// A C-string contains a NUL.
    ContainsNul {
        /// The field.
        field: Field,
    },
    /// `short_message` is longer than 254 octets (use `message_payload`).
    ShortMessageTooLong {
        /// Its length.
        len: usize,
    },
    /// A TLV value is longer than 65535 octets (or its spec maximum).
    TlvValueTooLong {
        /// The tag.
        tag: TlvTag,
        /// Its length.
        len: usize,
    },
    /// A C-string TLV value contains a NUL.
    TlvContainsNul {
        /// The tag.
        tag: TlvTag,
    },
    /// A raw TLV area is malformed.
    BadTlv(TlvError),
    /// TLVs were given for a response without body (`message_id` / `system_id` `None`).
    TlvsWithoutBody,
    /// The PDU would exceed `u32::MAX` octets.
    PduTooLong {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EmitError::BufferTooSmall { needed, available } => {
                write!(f, "output buffer too small: {needed} bytes needed, {available} available")
            }
            EmitError::CStringTooLong { field, max } => {
                write!(f, "SMPP {field} longer than {max} octets (NUL included)")
            }
            EmitError::ContainsNul { field } => write!(f, "SMPP {field} contains a NUL"),
            EmitError::ShortMessageTooLong { len } => {
                write!(f, "SMPP short_message of {len} octets exceeds 254")
            }
            EmitError::TlvValueTooLong { tag, len } => {
                write!(f, "SMPP TLV {tag} value of {len} octets is too long")
            }
            EmitError::TlvContainsNul { tag } => write!(f, "SMPP TLV {tag} contains a NUL"),
            EmitError::BadTlv(e) => write!(f, "SMPP {e}"),
            EmitError::TlvsWithoutBody => f.write_str("SMPP TLVs given for a body-less response"),
            EmitError::PduTooLong { len } => write!(f, "SMPP PDU of {len} octets is too long"),
        }
    }
}

impl std::error::Error for EmitError {}

/// Why a TLV area or value is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvError {
    /// Fewer than 4 bytes left where a TLV header should start.
    TruncatedHeader {
        /// Bytes left.
        available: usize,
    },
    /// The length field runs past the end of the area.
    TruncatedValue {
        /// The TLV's tag.
        tag: TlvTag,
        /// Its length field.
        length: u16,
        /// Bytes actually left.
        available: usize,
    },
    /// A typed value has the wrong size (e.g. a 2-byte `message_state`).
    BadValueLength {
        /// The TLV's tag.
        tag: TlvTag,
        /// The value's length.
        length: usize,
    },
    /// A C-string value is longer than the spec allows.
    CStringTooLong {
        /// The TLV's tag.
        tag: TlvTag,
        /// The maximum, NUL included.
        max: usize,
    },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TlvError::TruncatedHeader { available } => {
                write!(f, "TLV header truncated ({available} bytes left, 4 needed)")
            }
            TlvError::TruncatedValue { tag, length, available } => {
                write!(f, "TLV {tag} length {length} exceeds the {available} bytes left")
            }
            TlvError::BadValueLength { tag, length } => {
                write!(f, "TLV {tag} has a bad value length {length}")
            }
            TlvError::CStringTooLong { tag, max } => {
                write!(f, "TLV {tag} is longer than {max} octets")
            }
        }
    }
}

impl std::error::Error for TlvError {}
