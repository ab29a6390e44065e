//! Optional parameters: Tag-Length-Value fields after the mandatory part of a PDU body
//! (SMPP 3.4 §5.3, SMPP 5.0 §4.8).
//!
//! ```text
//! +----------------+----------------+------------------------+
//! | tag (2 octets) | length (2)     | value (length octets)  |
//! +----------------+----------------+------------------------+
//! ```
//!
//! Parsing is zero-copy: a parsed PDU keeps its whole TLV area as a slice
//! ([`Tlvs::Raw`]) which [`Tlvs::iter`] walks; unknown tags are kept, so re-emitting
//! a parsed PDU reproduces its bytes exactly. To emit, either hand over a list of
//! [`Tlv`]s ([`Tlvs::List`]) or build the area with a [`TlvWriter`].

use core::fmt;

use super::error::{EmitError, TlvError, TlvTag};

/// Length of a TLV's tag and length fields.
pub const TLV_HEADER_LEN: usize = 4;

/// Maximum length of a `receipted_message_id` value, NUL included.
pub const RECEIPTED_MESSAGE_ID_MAX: usize = 65;

enum_with_unknown! {
    /// `message_state` TLV values (SMPP 3.4 §5.2.28, SMPP 5.0 §4.7.15).
    pub enum MessageState(u8) {
        /// 0: scheduled (5.0).
        Scheduled = 0,
        /// 1: in transit (`ENROUTE`).
        Enroute = 1,
        /// 2: delivered (`DELIVRD`).
        Delivered = 2,
        /// 3: validity period expired (`EXPIRED`).
        Expired = 3,
        /// 4: deleted (`DELETED`).
        Deleted = 4,
        /// 5: undeliverable (`UNDELIV`).
        Undeliverable = 5,
        /// 6: accepted, e.g. read by customer service (`ACCEPTD`).
        Accepted = 6,
        /// 7: in invalid state (`UNKNOWN`).
        Unknown = 7,
        /// 8: rejected (`REJECTD`).
        Rejected = 8,
        /// 9: skipped (5.0).
        Skipped = 9,
    }
    /// A value the specs do not assign.
    fallback Other
}

impl MessageState {
    /// The spec's upper-case name (`DELIVERED`), `None` for [`MessageState::Other`].
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            MessageState::Scheduled => "SCHEDULED",
            MessageState::Enroute => "ENROUTE",
            MessageState::Delivered => "DELIVERED",
            MessageState::Expired => "EXPIRED",
            MessageState::Deleted => "DELETED",
            MessageState::Undeliverable => "UNDELIVERABLE",
            MessageState::Accepted => "ACCEPTED",
            MessageState::Unknown => "UNKNOWN",
            MessageState::Rejected => "REJECTED",
            MessageState::Skipped => "SKIPPED",
            MessageState::Other(_) => return None,
        })
    }

    /// Whether the state is final (the message will not change state again).
    pub fn is_final(self) -> bool {
        !matches!(self, MessageState::Scheduled | MessageState::Enroute | MessageState::Other(_))
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "message_state {}", u8::from(*self)),
        }
    }
}

/// `network_error_code` TLV value (SMPP 3.4 §5.3.2.31): network type and a 2-octet code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkErrorCode {
    /// Network type: 1 ANSI-136, 2 IS-95, 3 GSM, 4 ANSI-41 (others reserved).
    pub network_type: u8,
    /// The network-specific error code.
    pub error_code: u16,
}

impl NetworkErrorCode {
    /// Network type 3: GSM (the `error_code` is a MAP/GSM cause).
    pub const GSM: u8 = 3;

    /// The 3-octet TLV value.
    pub fn to_bytes(self) -> [u8; 3] {
        let [hi, lo] = self.error_code.to_be_bytes();
        [self.network_type, hi, lo]
    }
}

/// One optional parameter, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: TlvTag,
    /// The value (as many octets as the length field says).
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A TLV with the given tag and value.
    pub const fn new(tag: TlvTag, value: &'a [u8]) -> Self {
        Tlv { tag, value }
    }

    /// Encoded length: 4 + value length.
    pub fn encoded_len(&self) -> usize {
        TLV_HEADER_LEN.saturating_add(self.value.len())
    }

    /// The value as a 1-octet integer.
    pub fn as_u8(&self) -> Result<u8, TlvError> {
        match *self.value {
            [v] => Ok(v),
            _ => Err(TlvError::BadValueLength { tag: self.tag, length: self.value.len() }),
        }
    }

    /// The value as a 2-octet big-endian integer.
    pub fn as_u16(&self) -> Result<u16, TlvError> {
        match *self.value {
            [hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(TlvError::BadValueLength { tag: self.tag, length: self.value.len() }),
        }
    }

    /// The value as a C-Octet string of at most `max` octets NUL included, without its
    /// NUL. Tolerant: a missing terminator is accepted (several SMSCs omit it) and the
    /// string ends at the first NUL.
    pub fn as_cstring(&self, max: usize) -> Result<&'a [u8], TlvError> {
        if self.value.len() > max {
            return Err(TlvError::CStringTooLong { tag: self.tag, max });
        }
        let end = self.value.iter().position(|&b| b == 0).unwrap_or(self.value.len());
        Ok(self.value.get(..end).unwrap_or(&[]))
    }

    /// The value as a [`MessageState`].
    pub fn as_message_state(&self) -> Result<MessageState, TlvError> {
        self.as_u8().map(MessageState::from)
    }

    /// The value as a [`NetworkErrorCode`].
    pub fn as_network_error_code(&self) -> Result<NetworkErrorCode, TlvError> {
        match *self.value {
            [network_type, hi, lo] => Ok(NetworkErrorCode { network_type, error_code: u16::from_be_bytes([hi, lo]) }),
            _ => Err(TlvError::BadValueLength { tag: self.tag, length: self.value.len() }),
        }
    }

    /// Writes the TLV at the start of `buf`, returning its encoded length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = u16::try_from(self.value.len())
            .map_err(|_| EmitError::TlvValueTooLong { tag: self.tag, len: self.value.len() })?;
        let total = self.encoded_len();
        let available = buf.len();
        let dst = buf.get_mut(..total).ok_or(EmitError::BufferTooSmall { needed: total, available })?;
        let (head, value) = dst.split_at_mut(TLV_HEADER_LEN);
        head[..2].copy_from_slice(&self.tag.0.to_be_bytes());
        head[2..].copy_from_slice(&len.to_be_bytes());
        value.copy_from_slice(self.value);
        Ok(total)
    }
}

impl fmt::Display for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.tag)?;
        for b in self.value {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Iterator over a raw TLV area. Yields each TLV, or one error and then stops.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    rest: &'a [u8],
}

impl<'a> TlvIter<'a> {
    /// Iterates over `area`, the bytes after a PDU's mandatory parameters.
    pub fn new(area: &'a [u8]) -> Self {
        TlvIter { rest: area }
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let (Some(&[t0, t1, l0, l1]), Some(after)) = (rest.get(..TLV_HEADER_LEN), rest.get(TLV_HEADER_LEN..)) else {
            self.rest = &[];
            return Some(Err(TlvError::TruncatedHeader { available: rest.len() }));
        };
        let tag = TlvTag(u16::from_be_bytes([t0, t1]));
        let length = u16::from_be_bytes([l0, l1]);
        match (after.get(..length as usize), after.get(length as usize..)) {
            (Some(value), Some(next)) => {
                self.rest = next;
                Some(Ok(Tlv { tag, value }))
            }
            _ => {
                self.rest = &[];
                Some(Err(TlvError::TruncatedValue { tag, length, available: after.len() }))
            }
        }
    }
}

impl core::iter::FusedIterator for TlvIter<'_> {}

/// The optional parameters of a PDU: either the raw area of a parsed PDU (re-emitted
/// verbatim) or a caller-supplied list to encode.
#[derive(Debug, Clone, Copy)]
pub enum Tlvs<'a> {
    /// The raw TLV area, as parsed (validated by [`super::Pdu::parse`]) or as built by a
    /// [`TlvWriter`].
    Raw(&'a [u8]),
    /// A list of TLVs to encode in this order.
    List(&'a [Tlv<'a>]),
}

impl Default for Tlvs<'_> {
    fn default() -> Self {
        Tlvs::EMPTY
    }
}

/// Iterator over [`Tlvs`], raw or listed.
#[derive(Debug, Clone)]
pub enum TlvsIter<'a> {
    /// Walking a raw area.
    Raw(TlvIter<'a>),
    /// Walking a list.
    List(core::slice::Iter<'a, Tlv<'a>>),
}

impl<'a> Iterator for TlvsIter<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            TlvsIter::Raw(it) => it.next(),
            TlvsIter::List(it) => it.next().map(|t| Ok(*t)),
        }
    }
}

impl<'a> Tlvs<'a> {
    /// No optional parameters.
    pub const EMPTY: Tlvs<'static> = Tlvs::Raw(&[]);

    /// Iterates over the TLVs.
    pub fn iter(&self) -> TlvsIter<'a> {
        match *self {
            Tlvs::Raw(area) => TlvsIter::Raw(TlvIter::new(area)),
            Tlvs::List(list) => TlvsIter::List(list.iter()),
        }
    }

    /// Whether there are no TLVs.
    pub fn is_empty(&self) -> bool {
        match *self {
            Tlvs::Raw(area) => area.is_empty(),
            Tlvs::List(list) => list.is_empty(),
        }
    }

    /// Checks that every TLV is well formed and fits a 16-bit length.
    pub fn validate(&self) -> Result<(), TlvError> {
        for tlv in self.iter() {
            let tlv = tlv?;
            if tlv.value.len() > u16::MAX as usize {
                return Err(TlvError::BadValueLength { tag: tlv.tag, length: tlv.value.len() });
            }
        }
        Ok(())
    }

    /// Encoded length of the area.
    pub fn encoded_len(&self) -> usize {
        match *self {
            Tlvs::Raw(area) => area.len(),
            Tlvs::List(list) => list.iter().fold(0usize, |n, t| n.saturating_add(t.encoded_len())),
        }
    }

    /// Writes the area at the start of `buf` (validated first), returning its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match *self {
            Tlvs::Raw(area) => {
                self.validate().map_err(EmitError::BadTlv)?;
                let available = buf.len();
                buf.get_mut(..area.len())
                    .ok_or(EmitError::BufferTooSmall { needed: area.len(), available })?
                    .copy_from_slice(area);
                Ok(area.len())
            }
            Tlvs::List(list) => {
                let mut pos = 0usize;
                for tlv in list {
                    let dst = buf.get_mut(pos..).unwrap_or(&mut []);
                    pos = pos.saturating_add(tlv.emit(dst).map_err(|e| match e {
                        EmitError::BufferTooSmall { .. } => {
                            EmitError::BufferTooSmall { needed: self.encoded_len(), available: buf.len() }
                        }
                        other => other,
                    })?);
                }
                Ok(pos)
            }
        }
    }

    /// The first TLV with this tag (TLVs after a malformed one are not seen).
    pub fn get(&self, tag: TlvTag) -> Option<Tlv<'a>> {
        self.iter().map_while(Result::ok).find(|t| t.tag == tag)
    }

    /// `receipted_message_id` (0x001E): C-string ≤ 65 octets, returned without its NUL.
    pub fn receipted_message_id(&self) -> Result<Option<&'a [u8]>, TlvError> {
        self.get(TlvTag::RECEIPTED_MESSAGE_ID).map(|t| t.as_cstring(RECEIPTED_MESSAGE_ID_MAX)).transpose()
    }

    /// `message_state` (0x0427).
    pub fn message_state(&self) -> Result<Option<MessageState>, TlvError> {
        self.get(TlvTag::MESSAGE_STATE).map(|t| t.as_message_state()).transpose()
    }

    /// `network_error_code` (0x0423).
    pub fn network_error_code(&self) -> Result<Option<NetworkErrorCode>, TlvError> {
        self.get(TlvTag::NETWORK_ERROR_CODE).map(|t| t.as_network_error_code()).transpose()
    }

    /// `message_payload` (0x0424): the message when it does not fit `short_message`.
    pub fn message_payload(&self) -> Option<&'a [u8]> {
        self.get(TlvTag::MESSAGE_PAYLOAD).map(|t| t.value)
    }

    /// `user_message_reference` (0x0204, 16 bits).
    pub fn user_message_reference(&self) -> Result<Option<u16>, TlvError> {
        self.u16_of(TlvTag::USER_MESSAGE_REFERENCE)
    }

    /// `sar_msg_ref_num` (0x020C, 16 bits).
    pub fn sar_msg_ref_num(&self) -> Result<Option<u16>, TlvError> {
        self.u16_of(TlvTag::SAR_MSG_REF_NUM)
    }

    /// `sar_total_segments` (0x020E).
    pub fn sar_total_segments(&self) -> Result<Option<u8>, TlvError> {
        self.u8_of(TlvTag::SAR_TOTAL_SEGMENTS)
    }

    /// `sar_segment_seqnum` (0x020F).
    pub fn sar_segment_seqnum(&self) -> Result<Option<u8>, TlvError> {
        self.u8_of(TlvTag::SAR_SEGMENT_SEQNUM)
    }

    /// `sc_interface_version` (0x0210).
    pub fn sc_interface_version(&self) -> Result<Option<u8>, TlvError> {
        self.u8_of(TlvTag::SC_INTERFACE_VERSION)
    }

    /// `source_port` (0x020A, 16 bits).
    pub fn source_port(&self) -> Result<Option<u16>, TlvError> {
        self.u16_of(TlvTag::SOURCE_PORT)
    }

    /// `destination_port` (0x020B, 16 bits).
    pub fn destination_port(&self) -> Result<Option<u16>, TlvError> {
        self.u16_of(TlvTag::DESTINATION_PORT)
    }

    /// `payload_type` (0x0019).
    pub fn payload_type(&self) -> Result<Option<u8>, TlvError> {
        self.u8_of(TlvTag::PAYLOAD_TYPE)
    }

    /// `ms_validity` (0x1204): the first octet (validity behaviour); 5.0 may append
    /// time information, ignored here.
    pub fn ms_validity(&self) -> Result<Option<u8>, TlvError> {
        self.get(TlvTag::MS_VALIDITY)
            .map(|t| t.value.first().copied().ok_or(TlvError::BadValueLength { tag: t.tag, length: 0 }))
            .transpose()
    }

    fn u8_of(&self, tag: TlvTag) -> Result<Option<u8>, TlvError> {
        self.get(tag).map(|t| t.as_u8()).transpose()
    }

    fn u16_of(&self, tag: TlvTag) -> Result<Option<u16>, TlvError> {
        self.get(tag).map(|t| t.as_u16()).transpose()
    }
}

impl PartialEq for Tlvs<'_> {
    /// Semantic equality: the same TLVs in the same order, whatever the representation
    /// (a list compares equal to the raw area it encodes to).
    fn eq(&self, other: &Self) -> bool {
        if let (Tlvs::Raw(a), Tlvs::Raw(b)) = (self, other) {
            return a == b;
        }
        self.iter().eq(other.iter())
    }
}

impl Eq for Tlvs<'_> {}

/// Writes TLVs one after another into a caller buffer, producing a raw area for
/// [`Tlvs::Raw`]. Never allocates; a full buffer is an error.
///
/// ```
/// use iwf::wire::smpp::{MessageState, TlvWriter, Tlvs};
/// let mut area = [0u8; 64];
/// let mut w = TlvWriter::new(&mut area);
/// w.receipted_message_id(b"4f2a9c")?.message_state(MessageState::Delivered)?;
/// let tlvs = Tlvs::Raw(w.as_bytes());
/// assert_eq!(tlvs.receipted_message_id()?, Some(&b"4f2a9c"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TlvWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> TlvWriter<'b> {
    /// A writer filling `buf` from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        TlvWriter { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Consumes the writer, returning the written area with the buffer's lifetime.
    pub fn into_bytes(self) -> &'b [u8] {
        let len = self.len;
        let buf: &'b [u8] = self.buf;
        buf.get(..len).unwrap_or(&[])
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes a TLV whose value is made of `parts` concatenated.
    fn write_parts(&mut self, tag: TlvTag, parts: &[&[u8]]) -> Result<&mut Self, EmitError> {
        let value_len = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        let len = u16::try_from(value_len).map_err(|_| EmitError::TlvValueTooLong { tag, len: value_len })?;
        let total = TLV_HEADER_LEN + value_len;
        let available = self.buf.len().saturating_sub(self.len);
        let end = self.len.saturating_add(total);
        let dst = self.buf.get_mut(self.len..end).ok_or(EmitError::BufferTooSmall { needed: total, available })?;
        let (head, mut value) = dst.split_at_mut(TLV_HEADER_LEN);
        head[..2].copy_from_slice(&tag.0.to_be_bytes());
        head[2..].copy_from_slice(&len.to_be_bytes());
        for part in parts {
            let (d, rest) = value.split_at_mut(part.len());
            d.copy_from_slice(part);
            value = rest;
        }
        self.len = end;
        Ok(self)
    }

    /// Writes a TLV with a raw value.
    pub fn tlv(&mut self, tag: TlvTag, value: &[u8]) -> Result<&mut Self, EmitError> {
        self.write_parts(tag, &[value])
    }

    /// Writes a 1-octet integer TLV.
    pub fn u8(&mut self, tag: TlvTag, value: u8) -> Result<&mut Self, EmitError> {
        self.write_parts(tag, &[&[value]])
    }

    /// Writes a 2-octet integer TLV.
    pub fn u16(&mut self, tag: TlvTag, value: u16) -> Result<&mut Self, EmitError> {
        self.write_parts(tag, &[&value.to_be_bytes()])
    }

    /// Writes a C-Octet string TLV: `value` (which must not contain NUL) plus a NUL.
    pub fn cstring(&mut self, tag: TlvTag, value: &[u8]) -> Result<&mut Self, EmitError> {
        if crate::wire::bytes::has_nul(value) {
            return Err(EmitError::TlvContainsNul { tag });
        }
        self.write_parts(tag, &[value, &[0]])
    }

    /// Writes `receipted_message_id` (C-string, ≤ 64 characters).
    pub fn receipted_message_id(&mut self, id: &[u8]) -> Result<&mut Self, EmitError> {
        if id.len() >= RECEIPTED_MESSAGE_ID_MAX {
            return Err(EmitError::TlvValueTooLong {
                tag: TlvTag::RECEIPTED_MESSAGE_ID,
                len: id.len().saturating_add(1),
            });
        }
        self.cstring(TlvTag::RECEIPTED_MESSAGE_ID, id)
    }

    /// Writes `message_state`.
    pub fn message_state(&mut self, state: MessageState) -> Result<&mut Self, EmitError> {
        self.u8(TlvTag::MESSAGE_STATE, state.into())
    }

    /// Writes `network_error_code`.
    pub fn network_error_code(&mut self, code: NetworkErrorCode) -> Result<&mut Self, EmitError> {
        self.write_parts(TlvTag::NETWORK_ERROR_CODE, &[&code.to_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // receipted_message_id "1A2B\0", message_state 2, network_error_code GSM/0x0001,
    // and an unknown vendor tag 0x1401 with 2 octets.
    const AREA: &[u8] = &[
        0x00, 0x1E, 0x00, 0x05, b'1', b'A', b'2', b'B', 0x00, //
        0x04, 0x27, 0x00, 0x01, 0x02, //
        0x04, 0x23, 0x00, 0x03, 0x03, 0x00, 0x01, //
        0x14, 0x01, 0x00, 0x02, 0xAB, 0xCD,
    ];

    #[test]
    fn iterate_and_typed_accessors() {
        let tlvs = Tlvs::Raw(AREA);
        assert_eq!(tlvs.iter().count(), 4);
        assert!(tlvs.validate().is_ok());
        assert_eq!(tlvs.receipted_message_id(), Ok(Some(&b"1A2B"[..])));
        assert_eq!(tlvs.message_state(), Ok(Some(MessageState::Delivered)));
        assert_eq!(tlvs.network_error_code(), Ok(Some(NetworkErrorCode { network_type: 3, error_code: 1 })));
        let vendor = tlvs.get(TlvTag(0x1401)).unwrap();
        assert_eq!(vendor.value, &[0xAB, 0xCD]);
        assert!(vendor.tag.is_vendor_specific());
        assert_eq!(vendor.tag.to_string(), "tlv 0x1401");
        assert_eq!(tlvs.message_payload(), None);
        assert_eq!(tlvs.sar_msg_ref_num(), Ok(None));
    }

    #[test]
    fn truncated_areas() {
        let mut it = TlvIter::new(&AREA[..2]);
        assert_eq!(it.next(), Some(Err(TlvError::TruncatedHeader { available: 2 })));
        assert_eq!(it.next(), None);
        let mut it = TlvIter::new(&AREA[..8]);
        assert_eq!(
            it.next(),
            Some(Err(TlvError::TruncatedValue { tag: TlvTag::RECEIPTED_MESSAGE_ID, length: 5, available: 4 }))
        );
        assert_eq!(it.next(), None);
        assert!(Tlvs::Raw(&AREA[..AREA.len() - 1]).validate().is_err());
        // A truncated area can't be re-emitted.
        let mut buf = [0u8; 64];
        assert!(matches!(
            Tlvs::Raw(&AREA[..AREA.len() - 1]).emit(&mut buf),
            Err(EmitError::BadTlv(TlvError::TruncatedValue { .. }))
        ));
    }

    #[test]
    fn typed_accessors_reject_bad_sizes() {
        let area = [0x04, 0x27, 0x00, 0x02, 0x00, 0x02];
        assert_eq!(
            Tlvs::Raw(&area).message_state(),
            Err(TlvError::BadValueLength { tag: TlvTag::MESSAGE_STATE, length: 2 })
        );
        let area = [0x02, 0x04, 0x00, 0x01, 0x07];
        assert!(Tlvs::Raw(&area).user_message_reference().is_err());
        let mut long = [b'x'; 4 + 66];
        long[..4].copy_from_slice(&[0x00, 0x1E, 0x00, 66]);
        assert_eq!(
            Tlvs::Raw(&long).receipted_message_id(),
            Err(TlvError::CStringTooLong { tag: TlvTag::RECEIPTED_MESSAGE_ID, max: 65 })
        );
        // A receipted_message_id without NUL is accepted.
        let area = [0x00, 0x1E, 0x00, 0x02, b'4', b'2'];
        assert_eq!(Tlvs::Raw(&area).receipted_message_id(), Ok(Some(&b"42"[..])));
    }

    #[test]
    fn writer_produces_the_spec_bytes() {
        let mut buf = [0u8; 64];
        let mut w = TlvWriter::new(&mut buf);
        w.receipted_message_id(b"1A2B")
            .unwrap()
            .message_state(MessageState::Delivered)
            .unwrap()
            .network_error_code(NetworkErrorCode { network_type: 3, error_code: 1 })
            .unwrap()
            .tlv(TlvTag(0x1401), &[0xAB, 0xCD])
            .unwrap();
        assert_eq!(w.as_bytes(), AREA);
        let mut w = TlvWriter::new(&mut buf);
        w.u16(TlvTag::SAR_MSG_REF_NUM, 0x1234).unwrap().u8(TlvTag::SAR_TOTAL_SEGMENTS, 3).unwrap();
        assert_eq!(w.into_bytes(), &[0x02, 0x0C, 0, 2, 0x12, 0x34, 0x02, 0x0E, 0, 1, 3]);
    }

    #[test]
    fn writer_errors() {
        let mut buf = [0u8; 8];
        let mut w = TlvWriter::new(&mut buf);
        assert_eq!(
            w.receipted_message_id(b"12345").unwrap_err(),
            EmitError::BufferTooSmall { needed: 10, available: 8 }
        );
        assert!(w.is_empty());
        assert_eq!(
            w.cstring(TlvTag::RECEIPTED_MESSAGE_ID, b"a\0b").unwrap_err(),
            EmitError::TlvContainsNul { tag: TlvTag::RECEIPTED_MESSAGE_ID }
        );
        let mut big = [0u8; 128];
        let mut w = TlvWriter::new(&mut big);
        assert!(matches!(w.receipted_message_id(&[b'1'; 65]), Err(EmitError::TlvValueTooLong { .. })));
        assert!(w.receipted_message_id(&[b'1'; 64]).is_ok());
    }

    #[test]
    fn list_emit_matches_raw() {
        let list = [
            Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"1A2B\0"),
            Tlv::new(TlvTag::MESSAGE_STATE, &[2]),
            Tlv::new(TlvTag::NETWORK_ERROR_CODE, &[3, 0, 1]),
            Tlv::new(TlvTag(0x1401), &[0xAB, 0xCD]),
        ];
        let tlvs = Tlvs::List(&list);
        assert_eq!(tlvs.encoded_len(), AREA.len());
        let mut buf = [0u8; 64];
        let n = tlvs.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], AREA);
        assert_eq!(tlvs, Tlvs::Raw(AREA));
        let mut small = [0u8; 10];
        assert_eq!(tlvs.emit(&mut small).unwrap_err(), EmitError::BufferTooSmall { needed: AREA.len(), available: 10 });
    }

    #[test]
    fn message_state_values() {
        for v in 0u8..=255 {
            assert_eq!(u8::from(MessageState::from(v)), v);
        }
        assert_eq!(MessageState::from(9), MessageState::Skipped);
        assert_eq!(MessageState::from(10), MessageState::Other(10));
        assert!(MessageState::Delivered.is_final());
        assert!(!MessageState::Enroute.is_final());
        assert_eq!(MessageState::Undeliverable.to_string(), "UNDELIVERABLE");
    }
}
