//! The SMPP PDU header (SMPP 3.4 §3.2, SMPP 5.0 §3.2) and stream framing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        command_length                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          command_id                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        command_status                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        sequence_number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     body (command_length - 16)                ...
//! ```
//!
//! All integers are big-endian. `command_length` counts the whole PDU, header included.

use core::fmt;

use super::error::ParseError;
use super::status::CommandStatus;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const LENGTH: Range<usize> = 0..4;
    pub const COMMAND_ID: Range<usize> = 4..8;
    pub const STATUS: Range<usize> = 8..12;
    pub const SEQUENCE: Range<usize> = 12..16;
}

/// Length of the SMPP PDU header.
pub const HEADER_LEN: usize = 16;

/// The PDU length cap Kannel applies (`SMPP_MAX_PDU_LEN` style limit of its SMSC module):
/// a good default for [`frame`]'s `max_len`.
pub const KANNEL_MAX_PDU_LEN: usize = 7424;

/// A generous cap for peers that use large `message_payload` TLVs (64 KiB payload plus
/// the largest mandatory part).
pub const SMPP_MAX_PDU_LEN: usize = 70_000;

enum_with_unknown! {
    /// The `command_id` field (SMPP 3.4 §5.1.2.1, SMPP 5.0 §4.7.5). Values iwf does not
    /// know are kept in [`CommandId::Unknown`]; the session answers them with a
    /// `generic_nack` carrying `ESME_RINVCMDID`.
    pub enum CommandId(u32) {
        /// `generic_nack`.
        GenericNack = 0x8000_0000,
        /// `bind_receiver`.
        BindReceiver = 0x0000_0001,
        /// `bind_receiver_resp`.
        BindReceiverResp = 0x8000_0001,
        /// `bind_transmitter`.
        BindTransmitter = 0x0000_0002,
        /// `bind_transmitter_resp`.
        BindTransmitterResp = 0x8000_0002,
        /// `query_sm`.
        QuerySm = 0x0000_0003,
        /// `query_sm_resp`.
        QuerySmResp = 0x8000_0003,
        /// `submit_sm`.
        SubmitSm = 0x0000_0004,
        /// `submit_sm_resp`.
        SubmitSmResp = 0x8000_0004,
        /// `deliver_sm`.
        DeliverSm = 0x0000_0005,
        /// `deliver_sm_resp`.
        DeliverSmResp = 0x8000_0005,
        /// `unbind`.
        Unbind = 0x0000_0006,
        /// `unbind_resp`.
        UnbindResp = 0x8000_0006,
        /// `replace_sm`.
        ReplaceSm = 0x0000_0007,
        /// `replace_sm_resp`.
        ReplaceSmResp = 0x8000_0007,
        /// `cancel_sm`.
        CancelSm = 0x0000_0008,
        /// `cancel_sm_resp`.
        CancelSmResp = 0x8000_0008,
        /// `bind_transceiver`.
        BindTransceiver = 0x0000_0009,
        /// `bind_transceiver_resp`.
        BindTransceiverResp = 0x8000_0009,
        /// `outbind`.
        Outbind = 0x0000_000B,
        /// `enquire_link`.
        EnquireLink = 0x0000_0015,
        /// `enquire_link_resp`.
        EnquireLinkResp = 0x8000_0015,
        /// `submit_multi`.
        SubmitMulti = 0x0000_0021,
        /// `submit_multi_resp`.
        SubmitMultiResp = 0x8000_0021,
        /// `alert_notification`.
        AlertNotification = 0x0000_0102,
        /// `data_sm`.
        DataSm = 0x0000_0103,
        /// `data_sm_resp`.
        DataSmResp = 0x8000_0103,
        /// `broadcast_sm` (5.0).
        BroadcastSm = 0x0000_0111,
        /// `broadcast_sm_resp` (5.0).
        BroadcastSmResp = 0x8000_0111,
        /// `query_broadcast_sm` (5.0).
        QueryBroadcastSm = 0x0000_0112,
        /// `query_broadcast_sm_resp` (5.0).
        QueryBroadcastSmResp = 0x8000_0112,
        /// `cancel_broadcast_sm` (5.0).
        CancelBroadcastSm = 0x0000_0113,
        /// `cancel_broadcast_sm_resp` (5.0).
        CancelBroadcastSmResp = 0x8000_0113,
    }
    /// A command_id the specs do not assign (or a vendor extension).
    fallback Unknown
}

impl CommandId {
    /// The spec name (`submit_sm`, ...), `None` for [`CommandId::Unknown`].
    pub fn name(self) -> Option<&'static str> {
        use CommandId::*;
        Some(match self {
            GenericNack => "generic_nack",
            BindReceiver => "bind_receiver",
            BindReceiverResp => "bind_receiver_resp",
            BindTransmitter => "bind_transmitter",
            BindTransmitterResp => "bind_transmitter_resp",
            QuerySm => "query_sm",
            QuerySmResp => "query_sm_resp",
            SubmitSm => "submit_sm",
            SubmitSmResp => "submit_sm_resp",
            DeliverSm => "deliver_sm",
            DeliverSmResp => "deliver_sm_resp",
            Unbind => "unbind",
            UnbindResp => "unbind_resp",
            ReplaceSm => "replace_sm",
            ReplaceSmResp => "replace_sm_resp",
            CancelSm => "cancel_sm",
            CancelSmResp => "cancel_sm_resp",
            BindTransceiver => "bind_transceiver",
            BindTransceiverResp => "bind_transceiver_resp",
            Outbind => "outbind",
            EnquireLink => "enquire_link",
            EnquireLinkResp => "enquire_link_resp",
            SubmitMulti => "submit_multi",
            SubmitMultiResp => "submit_multi_resp",
            AlertNotification => "alert_notification",
            DataSm => "data_sm",
            DataSmResp => "data_sm_resp",
            BroadcastSm => "broadcast_sm",
            BroadcastSmResp => "broadcast_sm_resp",
            QueryBroadcastSm => "query_broadcast_sm",
            QueryBroadcastSmResp => "query_broadcast_sm_resp",
            CancelBroadcastSm => "cancel_broadcast_sm",
            CancelBroadcastSmResp => "cancel_broadcast_sm_resp",
            Unknown(_) => return None,
        })
    }

    /// The raw 32-bit value.
    pub fn value(self) -> u32 {
        u32::from(self)
    }

    /// Whether this is a response (bit 31 set), which carries the request's sequence
    /// number and is never answered.
    pub fn is_response(self) -> bool {
        self.value() & 0x8000_0000 != 0
    }

    /// The response command_id of a request (`submit_sm` → `submit_sm_resp`); the
    /// `generic_nack` for a response or an unknown request (SMPP 3.4 §4.3).
    pub fn response(self) -> CommandId {
        if self.is_response() {
            CommandId::GenericNack
        } else {
            match CommandId::from(self.value() | 0x8000_0000) {
                CommandId::Unknown(_) => CommandId::GenericNack,
                resp => resp,
            }
        }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "command_id 0x{:08x}", self.value()),
        }
    }
}

/// Why a byte stream cannot be framed into PDUs. Any of these closes the session
/// (a framing error closes the session: nothing after it can be framed reliably).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `command_length` is smaller than the 16-byte header.
    CommandLengthTooShort {
        /// The value read.
        command_length: u32,
    },
    /// `command_length` is above the configured cap.
    CommandLengthTooLong {
        /// The value read.
        command_length: u32,
        /// The configured cap.
        max_len: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::CommandLengthTooShort { command_length } => {
                write!(f, "SMPP command_length {command_length} is below the 16-byte header")
            }
            FrameError::CommandLengthTooLong { command_length, max_len } => {
                write!(f, "SMPP command_length {command_length} exceeds the cap of {max_len}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Stream reassembly: looks at the start of `buf` (bytes received so far on a TCP
/// stream) and returns `Ok(Some(len))` when a whole PDU of `len` bytes is there,
/// `Ok(None)` when more bytes are needed, or an error as soon as the `command_length`
/// is readable and is below 16 or above `max_len` (use [`KANNEL_MAX_PDU_LEN`] unless
/// the peer is known to send more).
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(len) = read_u32(buf, field::LENGTH) else {
        return Ok(None);
    };
    if (len as usize) < HEADER_LEN {
        return Err(FrameError::CommandLengthTooShort { command_length: len });
    }
    if len as usize > max_len {
        return Err(FrameError::CommandLengthTooLong { command_length: len, max_len });
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    Ok(Some(len as usize))
}

fn read_u32(buf: &[u8], range: core::ops::Range<usize>) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(range)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// A read/write view of an SMPP PDU header and body over a buffer (smoltcp style).
///
/// After [`Packet::new_checked`] the buffer holds at least `command_length` ≥ 16 bytes,
/// so no accessor can fail; on an unchecked view the getters read missing bytes as 0 and
/// the setters ignore them rather than panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds a header and that `command_length` is at least 16
    /// and fits in the buffer (trailing bytes beyond it are allowed here; [`frame`] and
    /// [`super::Pdu::parse`] are stricter).
    pub fn check_len(&self) -> Result<(), ParseError> {
        let buf = self.buffer.as_ref();
        let Some(len) = read_u32(buf, field::LENGTH) else {
            return Err(ParseError::TruncatedHeader { len: buf.len() });
        };
        if buf.len() < HEADER_LEN {
            return Err(ParseError::TruncatedHeader { len: buf.len() });
        }
        if (len as usize) < HEADER_LEN {
            return Err(ParseError::CommandLengthTooShort { command_length: len });
        }
        if len as usize > buf.len() {
            return Err(ParseError::LengthMismatch { command_length: len, buffer_len: buf.len() });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `command_length`: the whole PDU's length, header included.
    pub fn command_length(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LENGTH).unwrap_or(0)
    }

    /// `command_id`.
    pub fn command_id(&self) -> CommandId {
        CommandId::from(read_u32(self.buffer.as_ref(), field::COMMAND_ID).unwrap_or(0))
    }

    /// `command_status` (0 in requests).
    pub fn command_status(&self) -> CommandStatus {
        CommandStatus(read_u32(self.buffer.as_ref(), field::STATUS).unwrap_or(0))
    }

    /// `sequence_number`.
    pub fn sequence_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQUENCE).unwrap_or(0)
    }

    /// The body: bytes 16 .. `command_length` (clamped to the buffer).
    pub fn body(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = (self.command_length() as usize).min(buf.len());
        buf.get(HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn write_u32(&mut self, range: core::ops::Range<usize>, value: u32) {
        if let Some(dst) = self.buffer.as_mut().get_mut(range) {
            dst.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Sets `command_length`.
    pub fn set_command_length(&mut self, value: u32) {
        self.write_u32(field::LENGTH, value)
    }

    /// Sets `command_id`.
    pub fn set_command_id(&mut self, value: CommandId) {
        self.write_u32(field::COMMAND_ID, value.into())
    }

    /// Sets `command_status`.
    pub fn set_command_status(&mut self, value: CommandStatus) {
        self.write_u32(field::STATUS, value.0)
    }

    /// Sets `sequence_number`.
    pub fn set_sequence_number(&mut self, value: u32) {
        self.write_u32(field::SEQUENCE, value)
    }

    /// The body, mutable: bytes 16 .. `command_length` (clamped to the buffer).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = self.command_length() as usize;
        let buf = self.buffer.as_mut();
        let end = end.min(buf.len());
        buf.get_mut(HEADER_LEN..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SMPP {} len={} status={} seq={}",
            self.command_id(),
            self.command_length(),
            self.command_status(),
            self.sequence_number()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // enquire_link, sequence 1 (SMPP 3.4 §4.11.1: header only).
    const ENQUIRE_LINK: [u8; 16] =
        [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01];

    #[test]
    fn packet_getters() {
        let p = Packet::new_checked(&ENQUIRE_LINK[..]).unwrap();
        assert_eq!(p.command_length(), 16);
        assert_eq!(p.command_id(), CommandId::EnquireLink);
        assert_eq!(p.command_status(), CommandStatus::ESME_ROK);
        assert_eq!(p.sequence_number(), 1);
        assert!(p.body().is_empty());
    }

    #[test]
    fn packet_setters_round_trip() {
        let mut buf = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_command_length(20);
        p.set_command_id(CommandId::SubmitSmResp);
        p.set_command_status(CommandStatus::ESME_RTHROTTLED);
        p.set_sequence_number(0xdead_beef);
        p.body_mut().copy_from_slice(b"abc\0");
        assert_eq!(buf, [0, 0, 0, 20, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0xde, 0xad, 0xbe, 0xef, b'a', b'b', b'c', 0]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.command_id(), CommandId::SubmitSmResp);
        assert_eq!(p.command_status(), CommandStatus::ESME_RTHROTTLED);
        assert_eq!(p.body(), b"abc\0");
    }

    #[test]
    fn packet_truncated_and_bad_lengths() {
        assert_eq!(Packet::new_checked(&ENQUIRE_LINK[..15]).unwrap_err(), ParseError::TruncatedHeader { len: 15 });
        let mut short = ENQUIRE_LINK;
        short[3] = 15;
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            ParseError::CommandLengthTooShort { command_length: 15 }
        );
        let mut long = ENQUIRE_LINK;
        long[3] = 17;
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap_err(),
            ParseError::LengthMismatch { command_length: 17, buffer_len: 16 }
        );
        // Unchecked views never panic.
        let p = Packet::new_unchecked(&[0u8, 0, 0][..]);
        assert_eq!(p.command_length(), 0);
        assert_eq!(p.sequence_number(), 0);
        assert!(p.body().is_empty());
    }

    #[test]
    fn frame_waits_for_full_pdu() {
        assert_eq!(frame(&[], KANNEL_MAX_PDU_LEN), Ok(None));
        assert_eq!(frame(&ENQUIRE_LINK[..3], KANNEL_MAX_PDU_LEN), Ok(None));
        assert_eq!(frame(&ENQUIRE_LINK[..15], KANNEL_MAX_PDU_LEN), Ok(None));
        assert_eq!(frame(&ENQUIRE_LINK, KANNEL_MAX_PDU_LEN), Ok(Some(16)));
        let mut two = [0u8; 40];
        two[..16].copy_from_slice(&ENQUIRE_LINK);
        two[16..32].copy_from_slice(&ENQUIRE_LINK);
        assert_eq!(frame(&two, KANNEL_MAX_PDU_LEN), Ok(Some(16)));
        assert_eq!(frame(&two[16..], KANNEL_MAX_PDU_LEN), Ok(Some(16)));
        assert_eq!(frame(&two[32..], KANNEL_MAX_PDU_LEN), Err(FrameError::CommandLengthTooShort { command_length: 0 }));
    }

    #[test]
    fn frame_rejects_bad_lengths_early() {
        // Rejected as soon as the 4 length bytes are there.
        assert_eq!(
            frame(&[0, 0, 0, 15], KANNEL_MAX_PDU_LEN),
            Err(FrameError::CommandLengthTooShort { command_length: 15 })
        );
        assert_eq!(
            frame(&[0, 0, 0x1d, 0x01], KANNEL_MAX_PDU_LEN),
            Err(FrameError::CommandLengthTooLong { command_length: 7425, max_len: 7424 })
        );
        assert_eq!(frame(&[0, 0, 0x1d, 0x00], KANNEL_MAX_PDU_LEN), Ok(None));
        assert_eq!(
            frame(&[0xff, 0xff, 0xff, 0xff], SMPP_MAX_PDU_LEN),
            Err(FrameError::CommandLengthTooLong { command_length: u32::MAX, max_len: 70_000 })
        );
    }

    #[test]
    fn command_id_values_and_names() {
        assert_eq!(CommandId::from(0x8000_0004), CommandId::SubmitSmResp);
        assert_eq!(CommandId::from(0x1234), CommandId::Unknown(0x1234));
        assert_eq!(u32::from(CommandId::DataSm), 0x103);
        assert_eq!(CommandId::DeliverSm.name(), Some("deliver_sm"));
        assert_eq!(CommandId::Unknown(0x1234).to_string(), "command_id 0x00001234");
        assert_eq!(CommandId::SubmitSm.response(), CommandId::SubmitSmResp);
        assert_eq!(CommandId::EnquireLink.response(), CommandId::EnquireLinkResp);
        assert_eq!(CommandId::Unknown(0x55).response(), CommandId::GenericNack);
        assert_eq!(CommandId::SubmitSmResp.response(), CommandId::GenericNack);
        assert!(CommandId::GenericNack.is_response());
        assert!(!CommandId::Outbind.is_response());
    }
}
