//! SMPP PDUs as zero-copy borrowed representations (SMPP 3.4 §4, SMPP 5.0 §4).
//!
//! [`Pdu::parse`] takes exactly one PDU (as delimited by [`super::frame`]) and returns a
//! [`Pdu`] whose strings and TLV area borrow from the input. [`Pdu::emit`] writes the
//! header (with the right `command_length`) and body into a caller buffer, without
//! allocating. PDUs iwf does not model (query_sm, replace_sm, submit_multi, broadcast,
//! unknown command ids) parse as [`Body::Other`] with their raw body.
//!
//! C-Octet strings are kept as bytes without their NUL; their maximum sizes below count
//! the NUL, as the spec tables do.

use core::fmt;

use super::error::{EmitError, Field, ParseError};
use super::flags::{EsmClass, RegisteredDelivery};
use super::header::{CommandId, Packet, HEADER_LEN};
use super::status::CommandStatus;
use super::tlv::Tlvs;
use crate::wire::bytes::has_nul;

/// `interface_version` of SMPP 3.4.
pub const INTERFACE_VERSION_34: u8 = 0x34;
/// `interface_version` of SMPP 5.0.
pub const INTERFACE_VERSION_50: u8 = 0x50;

/// Max sizes of C-Octet strings, NUL included (SMPP 3.4 §4 tables).
pub mod max {
    /// `system_id`.
    pub const SYSTEM_ID: u8 = 16;
    /// `password`.
    pub const PASSWORD: u8 = 9;
    /// `system_type`.
    pub const SYSTEM_TYPE: u8 = 13;
    /// `address_range`.
    pub const ADDRESS_RANGE: u8 = 41;
    /// `service_type`.
    pub const SERVICE_TYPE: u8 = 6;
    /// `source_addr` / `destination_addr` of submit_sm and deliver_sm.
    pub const SM_ADDR: u8 = 21;
    /// `source_addr` / `destination_addr` of data_sm, `source_addr` / `esme_addr` of
    /// alert_notification.
    pub const LONG_ADDR: u8 = 65;
    /// `schedule_delivery_time` / `validity_period` (empty, or 16 characters).
    pub const TIME: u8 = 17;
    /// `message_id`.
    pub const MESSAGE_ID: u8 = 65;
    /// `short_message` octets.
    pub const SHORT_MESSAGE: usize = 254;
}

// ---------------------------------------------------------------------------------------
// Cursors

/// Reads mandatory fields off the front of a body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, field: Field) -> Result<u8, ParseError> {
        let (&b, rest) = self.rest.split_first().ok_or(ParseError::Truncated { field })?;
        self.rest = rest;
        Ok(b)
    }

    fn cstr(&mut self, field: Field, max: u8) -> Result<&'a [u8], ParseError> {
        if self.rest.is_empty() {
            return Err(ParseError::Truncated { field });
        }
        let window = self.rest.get(..max as usize).unwrap_or(self.rest);
        match window.iter().position(|&b| b == 0) {
            Some(nul) => {
                let value = self.rest.get(..nul).unwrap_or(&[]);
                self.rest = self.rest.get(nul + 1..).unwrap_or(&[]);
                Ok(value)
            }
            None if self.rest.len() >= max as usize => Err(ParseError::CStringTooLong { field, max }),
            None => Err(ParseError::MissingNul { field }),
        }
    }

    fn address(&mut self, fields: [Field; 3], max: u8) -> Result<Address<'a>, ParseError> {
        Ok(Address { ton: self.u8(fields[0])?, npi: self.u8(fields[1])?, addr: self.cstr(fields[2], max)? })
    }

    /// The rest must be a TLV area: validate it and keep it raw.
    fn tlvs(self) -> Result<Tlvs<'a>, ParseError> {
        let tlvs = Tlvs::Raw(self.rest);
        tlvs.validate()?;
        Ok(tlvs)
    }

    /// Nothing may follow.
    fn end(self) -> Result<(), ParseError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes { len: self.rest.len() })
        }
    }
}

/// Writes fields into an output buffer whose size was checked beforehand; every write is
/// still bounds-checked so that a miscount is an error, never a panic.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let end = self.pos.saturating_add(bytes.len());
        let available = self.buf.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall { needed: end, available })?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Result<(), EmitError> {
        self.bytes(&[v])
    }

    fn cstr(&mut self, field: Field, s: &[u8], max: u8) -> Result<(), EmitError> {
        check_cstr(field, s, max)?;
        self.bytes(s)?;
        self.u8(0)
    }

    fn address(&mut self, fields: [Field; 3], a: &Address<'_>, max: u8) -> Result<(), EmitError> {
        self.u8(a.ton)?;
        self.u8(a.npi)?;
        self.cstr(fields[2], a.addr, max)
    }

    fn tlvs(&mut self, tlvs: &Tlvs<'_>) -> Result<(), EmitError> {
        let available = self.buf.len();
        let dst = self.buf.get_mut(self.pos..).unwrap_or(&mut []);
        let n = tlvs.emit(dst).map_err(|e| match e {
            EmitError::BufferTooSmall { needed, .. } => {
                EmitError::BufferTooSmall { needed: self.pos.saturating_add(needed), available }
            }
            other => other,
        })?;
        self.pos = self.pos.saturating_add(n);
        Ok(())
    }
}

fn check_cstr(field: Field, s: &[u8], max: u8) -> Result<(), EmitError> {
    if s.len() >= max as usize {
        return Err(EmitError::CStringTooLong { field, max });
    }
    if has_nul(s) {
        return Err(EmitError::ContainsNul { field });
    }
    Ok(())
}

/// Length of a C-string on the wire.
fn clen(s: &[u8]) -> usize {
    s.len().saturating_add(1)
}

const SOURCE: [Field; 3] = [Field::SourceAddrTon, Field::SourceAddrNpi, Field::SourceAddr];
const DEST: [Field; 3] = [Field::DestAddrTon, Field::DestAddrNpi, Field::DestinationAddr];
const ESME: [Field; 3] = [Field::EsmeAddrTon, Field::EsmeAddrNpi, Field::EsmeAddr];

// ---------------------------------------------------------------------------------------
// Body representations

/// An SME address: type of number, numbering plan indicator, address digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Address<'a> {
    /// Type of number (`*_ton`).
    pub ton: u8,
    /// Numbering plan indicator (`*_npi`).
    pub npi: u8,
    /// The address (C-string without its NUL).
    pub addr: &'a [u8],
}

impl<'a> Address<'a> {
    /// TON unknown.
    pub const TON_UNKNOWN: u8 = 0;
    /// TON international (E.164 without `+`).
    pub const TON_INTERNATIONAL: u8 = 1;
    /// TON national.
    pub const TON_NATIONAL: u8 = 2;
    /// TON network specific.
    pub const TON_NETWORK_SPECIFIC: u8 = 3;
    /// TON subscriber number.
    pub const TON_SUBSCRIBER: u8 = 4;
    /// TON alphanumeric (sender names).
    pub const TON_ALPHANUMERIC: u8 = 5;
    /// TON abbreviated (short codes).
    pub const TON_ABBREVIATED: u8 = 6;
    /// NPI unknown.
    pub const NPI_UNKNOWN: u8 = 0;
    /// NPI ISDN / E.164.
    pub const NPI_ISDN: u8 = 1;
    /// NPI national.
    pub const NPI_NATIONAL: u8 = 8;
    /// NPI private.
    pub const NPI_PRIVATE: u8 = 9;
    /// NPI Internet (IP).
    pub const NPI_INTERNET: u8 = 14;

    /// An address with the given TON, NPI and digits.
    pub const fn new(ton: u8, npi: u8, addr: &'a [u8]) -> Self {
        Address { ton, npi, addr }
    }

    /// An international E.164 number (TON 1, NPI 1).
    pub const fn international(addr: &'a [u8]) -> Self {
        Address { ton: Self::TON_INTERNATIONAL, npi: Self::NPI_ISDN, addr }
    }
}

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.ton, self.npi, self.addr.escape_ascii())
    }
}

/// bind_transmitter / bind_receiver / bind_transceiver body (SMPP 3.4 §4.1.1, §4.1.3,
/// §4.1.5).
///
/// ```text
/// system_id C≤16 | password C≤9 | system_type C≤13 | interface_version 1 |
/// addr_ton 1 | addr_npi 1 | address_range C≤41
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bind<'a> {
    /// ESME identity.
    pub system_id: &'a [u8],
    /// Password (sent in clear).
    pub password: &'a [u8],
    /// ESME type (often empty).
    pub system_type: &'a [u8],
    /// SMPP version the ESME supports (0x34, 0x50).
    pub interface_version: u8,
    /// TON of `address_range`.
    pub addr_ton: u8,
    /// NPI of `address_range`.
    pub addr_npi: u8,
    /// Addresses served (a regular expression in practice; often empty).
    pub address_range: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Parses a bind body.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader { rest: body };
        let bind = Bind {
            system_id: r.cstr(Field::SystemId, max::SYSTEM_ID)?,
            password: r.cstr(Field::Password, max::PASSWORD)?,
            system_type: r.cstr(Field::SystemType, max::SYSTEM_TYPE)?,
            interface_version: r.u8(Field::InterfaceVersion)?,
            addr_ton: r.u8(Field::AddrTon)?,
            addr_npi: r.u8(Field::AddrNpi)?,
            address_range: r.cstr(Field::AddressRange, max::ADDRESS_RANGE)?,
        };
        r.end()?;
        Ok(bind)
    }

    fn body_len(&self) -> usize {
        clen(self.system_id) + clen(self.password) + clen(self.system_type) + 3 + clen(self.address_range)
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.cstr(Field::SystemId, self.system_id, max::SYSTEM_ID)?;
        w.cstr(Field::Password, self.password, max::PASSWORD)?;
        w.cstr(Field::SystemType, self.system_type, max::SYSTEM_TYPE)?;
        w.u8(self.interface_version)?;
        w.u8(self.addr_ton)?;
        w.u8(self.addr_npi)?;
        w.cstr(Field::AddressRange, self.address_range, max::ADDRESS_RANGE)
    }
}

/// bind_*_resp body (SMPP 3.4 §4.1.2): `system_id C≤16`, then the optional
/// `sc_interface_version` TLV. An error response usually has no body at all
/// (`system_id: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BindResp<'a> {
    /// SMSC identity; `None` when the body is absent.
    pub system_id: Option<&'a [u8]>,
    /// Optional parameters (`sc_interface_version`).
    pub tlvs: Tlvs<'a>,
}

impl<'a> BindResp<'a> {
    /// Parses a bind_*_resp body; an empty body gives `system_id: None`.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        if body.is_empty() {
            return Ok(BindResp { system_id: None, tlvs: Tlvs::EMPTY });
        }
        let mut r = Reader { rest: body };
        let system_id = r.cstr(Field::SystemId, max::SYSTEM_ID)?;
        Ok(BindResp { system_id: Some(system_id), tlvs: r.tlvs()? })
    }

    fn body_len(&self) -> usize {
        self.system_id.map_or(0, |s| clen(s) + self.tlvs.encoded_len())
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        match self.system_id {
            Some(s) => {
                w.cstr(Field::SystemId, s, max::SYSTEM_ID)?;
                w.tlvs(&self.tlvs)
            }
            None if self.tlvs.is_empty() => Ok(()),
            None => Err(EmitError::TlvsWithoutBody),
        }
    }
}

/// outbind body (SMPP 3.4 §4.1.7): `system_id C≤16 | password C≤9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outbind<'a> {
    /// SMSC identity.
    pub system_id: &'a [u8],
    /// Password.
    pub password: &'a [u8],
}

impl<'a> Outbind<'a> {
    /// Parses an outbind body.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader { rest: body };
        let o = Outbind {
            system_id: r.cstr(Field::SystemId, max::SYSTEM_ID)?,
            password: r.cstr(Field::Password, max::PASSWORD)?,
        };
        r.end()?;
        Ok(o)
    }

    fn body_len(&self) -> usize {
        clen(self.system_id) + clen(self.password)
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.cstr(Field::SystemId, self.system_id, max::SYSTEM_ID)?;
        w.cstr(Field::Password, self.password, max::PASSWORD)
    }
}

/// submit_sm body (SMPP 3.4 §4.4.1); deliver_sm (§4.6.1) has the same layout.
///
/// ```text
/// service_type C≤6 | source_addr_ton 1 | source_addr_npi 1 | source_addr C≤21 |
/// dest_addr_ton 1 | dest_addr_npi 1 | destination_addr C≤21 | esm_class 1 |
/// protocol_id 1 | priority_flag 1 | schedule_delivery_time C≤17 |
/// validity_period C≤17 | registered_delivery 1 | replace_if_present_flag 1 |
/// data_coding 1 | sm_default_msg_id 1 | sm_length 1 | short_message sm_length | TLVs
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmitSm<'a> {
    /// `service_type` (empty = default).
    pub service_type: &'a [u8],
    /// Originator.
    pub source: Address<'a>,
    /// Recipient.
    pub destination: Address<'a>,
    /// `esm_class`.
    pub esm_class: EsmClass,
    /// `protocol_id` (GSM TP-PID).
    pub protocol_id: u8,
    /// `priority_flag`.
    pub priority_flag: u8,
    /// `schedule_delivery_time` (empty, or 16-character SMPP time; empty in deliver_sm).
    pub schedule_delivery_time: &'a [u8],
    /// `validity_period` (empty, or 16-character SMPP time; empty in deliver_sm).
    pub validity_period: &'a [u8],
    /// `registered_delivery`.
    pub registered_delivery: RegisteredDelivery,
    /// `replace_if_present_flag` (0 in deliver_sm).
    pub replace_if_present_flag: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `sm_default_msg_id` (0 in deliver_sm).
    pub sm_default_msg_id: u8,
    /// `short_message` (0–254 octets; `sm_length` is its length).
    pub short_message: &'a [u8],
    /// Optional parameters.
    pub tlvs: Tlvs<'a>,
}

/// deliver_sm body (SMPP 3.4 §4.6.1): the submit_sm layout.
pub type DeliverSm<'a> = SubmitSm<'a>;

impl<'a> SubmitSm<'a> {
    /// Parses a submit_sm or deliver_sm body.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader { rest: body };
        let service_type = r.cstr(Field::ServiceType, max::SERVICE_TYPE)?;
        let source = r.address(SOURCE, max::SM_ADDR)?;
        let destination = r.address(DEST, max::SM_ADDR)?;
        let esm_class = EsmClass(r.u8(Field::EsmClass)?);
        let protocol_id = r.u8(Field::ProtocolId)?;
        let priority_flag = r.u8(Field::PriorityFlag)?;
        let schedule_delivery_time = r.cstr(Field::ScheduleDeliveryTime, max::TIME)?;
        let validity_period = r.cstr(Field::ValidityPeriod, max::TIME)?;
        let registered_delivery = RegisteredDelivery(r.u8(Field::RegisteredDelivery)?);
        let replace_if_present_flag = r.u8(Field::ReplaceIfPresentFlag)?;
        let data_coding = r.u8(Field::DataCoding)?;
        let sm_default_msg_id = r.u8(Field::SmDefaultMsgId)?;
        let sm_length = r.u8(Field::SmLength)?;
        let available = r.rest.len();
        if sm_length as usize > max::SHORT_MESSAGE || sm_length as usize > available {
            return Err(ParseError::BadSmLength { sm_length, available });
        }
        let (short_message, rest) = r.rest.split_at(sm_length as usize);
        r.rest = rest;
        Ok(SubmitSm {
            service_type,
            source,
            destination,
            esm_class,
            protocol_id,
            priority_flag,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            replace_if_present_flag,
            data_coding,
            sm_default_msg_id,
            short_message,
            tlvs: r.tlvs()?,
        })
    }

    fn body_len(&self) -> usize {
        clen(self.service_type)
            + 2
            + clen(self.source.addr)
            + 2
            + clen(self.destination.addr)
            + 3
            + clen(self.schedule_delivery_time)
            + clen(self.validity_period)
            + 5
            + self.short_message.len()
            + self.tlvs.encoded_len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let sm_length = u8::try_from(self.short_message.len())
            .ok()
            .filter(|&n| n as usize <= max::SHORT_MESSAGE)
            .ok_or(EmitError::ShortMessageTooLong { len: self.short_message.len() })?;
        w.cstr(Field::ServiceType, self.service_type, max::SERVICE_TYPE)?;
        w.address(SOURCE, &self.source, max::SM_ADDR)?;
        w.address(DEST, &self.destination, max::SM_ADDR)?;
        w.u8(self.esm_class.0)?;
        w.u8(self.protocol_id)?;
        w.u8(self.priority_flag)?;
        w.cstr(Field::ScheduleDeliveryTime, self.schedule_delivery_time, max::TIME)?;
        w.cstr(Field::ValidityPeriod, self.validity_period, max::TIME)?;
        w.u8(self.registered_delivery.0)?;
        w.u8(self.replace_if_present_flag)?;
        w.u8(self.data_coding)?;
        w.u8(self.sm_default_msg_id)?;
        w.u8(sm_length)?;
        w.bytes(self.short_message)?;
        w.tlvs(&self.tlvs)
    }

    /// The message text octets: `short_message`, or the `message_payload` TLV when
    /// `short_message` is empty.
    pub fn payload(&self) -> &'a [u8] {
        if self.short_message.is_empty() {
            self.tlvs.message_payload().unwrap_or(&[])
        } else {
            self.short_message
        }
    }
}

/// submit_sm_resp (§4.4.2), deliver_sm_resp (§4.6.2), data_sm_resp (§4.7.2) body:
/// `message_id C≤65`, then TLVs (data_sm_resp; 5.0 allows them on the others).
/// The body is absent on most error responses (`message_id: None`); deliver_sm_resp's
/// `message_id` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageIdResp<'a> {
    /// The SMSC's message id; `None` when the body is absent.
    pub message_id: Option<&'a [u8]>,
    /// Optional parameters.
    pub tlvs: Tlvs<'a>,
}

impl<'a> MessageIdResp<'a> {
    /// Parses the body. An empty body is accepted (`message_id: None`) when
    /// `body_optional` (error status, or deliver_sm_resp); otherwise it is
    /// [`ParseError::Truncated`].
    pub fn parse_body(body: &'a [u8], body_optional: bool) -> Result<Self, ParseError> {
        if body.is_empty() && body_optional {
            return Ok(MessageIdResp { message_id: None, tlvs: Tlvs::EMPTY });
        }
        let mut r = Reader { rest: body };
        let message_id = r.cstr(Field::MessageId, max::MESSAGE_ID)?;
        Ok(MessageIdResp { message_id: Some(message_id), tlvs: r.tlvs()? })
    }

    fn body_len(&self) -> usize {
        self.message_id.map_or(0, |s| clen(s) + self.tlvs.encoded_len())
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        match self.message_id {
            Some(s) => {
                w.cstr(Field::MessageId, s, max::MESSAGE_ID)?;
                w.tlvs(&self.tlvs)
            }
            None if self.tlvs.is_empty() => Ok(()),
            None => Err(EmitError::TlvsWithoutBody),
        }
    }
}

/// data_sm body (SMPP 3.4 §4.7.1).
///
/// ```text
/// service_type C≤6 | source_addr_ton 1 | source_addr_npi 1 | source_addr C≤65 |
/// dest_addr_ton 1 | dest_addr_npi 1 | destination_addr C≤65 | esm_class 1 |
/// registered_delivery 1 | data_coding 1 | TLVs
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataSm<'a> {
    /// `service_type`.
    pub service_type: &'a [u8],
    /// Originator.
    pub source: Address<'a>,
    /// Recipient.
    pub destination: Address<'a>,
    /// `esm_class`.
    pub esm_class: EsmClass,
    /// `registered_delivery`.
    pub registered_delivery: RegisteredDelivery,
    /// `data_coding`.
    pub data_coding: u8,
    /// Optional parameters (the text travels in `message_payload`).
    pub tlvs: Tlvs<'a>,
}

impl<'a> DataSm<'a> {
    /// Parses a data_sm body.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader { rest: body };
        Ok(DataSm {
            service_type: r.cstr(Field::ServiceType, max::SERVICE_TYPE)?,
            source: r.address(SOURCE, max::LONG_ADDR)?,
            destination: r.address(DEST, max::LONG_ADDR)?,
            esm_class: EsmClass(r.u8(Field::EsmClass)?),
            registered_delivery: RegisteredDelivery(r.u8(Field::RegisteredDelivery)?),
            data_coding: r.u8(Field::DataCoding)?,
            tlvs: r.tlvs()?,
        })
    }

    fn body_len(&self) -> usize {
        clen(self.service_type)
            + 2
            + clen(self.source.addr)
            + 2
            + clen(self.destination.addr)
            + 3
            + self.tlvs.encoded_len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.cstr(Field::ServiceType, self.service_type, max::SERVICE_TYPE)?;
        w.address(SOURCE, &self.source, max::LONG_ADDR)?;
        w.address(DEST, &self.destination, max::LONG_ADDR)?;
        w.u8(self.esm_class.0)?;
        w.u8(self.registered_delivery.0)?;
        w.u8(self.data_coding)?;
        w.tlvs(&self.tlvs)
    }
}

/// alert_notification body (SMPP 3.4 §4.12.1).
///
/// ```text
/// source_addr_ton 1 | source_addr_npi 1 | source_addr C≤65 |
/// esme_addr_ton 1 | esme_addr_npi 1 | esme_addr C≤65 | TLVs (ms_availability_status)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertNotification<'a> {
    /// The MS that became available.
    pub source: Address<'a>,
    /// The ESME that asked to be alerted.
    pub esme: Address<'a>,
    /// Optional parameters.
    pub tlvs: Tlvs<'a>,
}

impl<'a> AlertNotification<'a> {
    /// Parses an alert_notification body.
    pub fn parse_body(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader { rest: body };
        Ok(AlertNotification {
            source: r.address(SOURCE, max::LONG_ADDR)?,
            esme: r.address(ESME, max::LONG_ADDR)?,
            tlvs: r.tlvs()?,
        })
    }

    fn body_len(&self) -> usize {
        2 + clen(self.source.addr) + 2 + clen(self.esme.addr) + self.tlvs.encoded_len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.address(SOURCE, &self.source, max::LONG_ADDR)?;
        w.address(ESME, &self.esme, max::LONG_ADDR)?;
        w.tlvs(&self.tlvs)
    }
}

/// The body of a PDU, by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// bind_receiver.
    BindReceiver(Bind<'a>),
    /// bind_receiver_resp.
    BindReceiverResp(BindResp<'a>),
    /// bind_transmitter.
    BindTransmitter(Bind<'a>),
    /// bind_transmitter_resp.
    BindTransmitterResp(BindResp<'a>),
    /// bind_transceiver.
    BindTransceiver(Bind<'a>),
    /// bind_transceiver_resp.
    BindTransceiverResp(BindResp<'a>),
    /// outbind.
    Outbind(Outbind<'a>),
    /// unbind (no body).
    Unbind,
    /// unbind_resp (no body).
    UnbindResp,
    /// enquire_link (no body).
    EnquireLink,
    /// enquire_link_resp (no body).
    EnquireLinkResp,
    /// generic_nack (no body).
    GenericNack,
    /// submit_sm.
    SubmitSm(SubmitSm<'a>),
    /// submit_sm_resp.
    SubmitSmResp(MessageIdResp<'a>),
    /// deliver_sm.
    DeliverSm(DeliverSm<'a>),
    /// deliver_sm_resp.
    DeliverSmResp(MessageIdResp<'a>),
    /// data_sm.
    DataSm(DataSm<'a>),
    /// data_sm_resp.
    DataSmResp(MessageIdResp<'a>),
    /// alert_notification.
    AlertNotification(AlertNotification<'a>),
    /// Any other command (known but not modelled, or unknown), with its raw body.
    Other {
        /// The command.
        command_id: CommandId,
        /// The raw body.
        body: &'a [u8],
    },
}

impl<'a> Body<'a> {
    /// The command_id of this body.
    pub fn command_id(&self) -> CommandId {
        match *self {
            Body::BindReceiver(_) => CommandId::BindReceiver,
            Body::BindReceiverResp(_) => CommandId::BindReceiverResp,
            Body::BindTransmitter(_) => CommandId::BindTransmitter,
            Body::BindTransmitterResp(_) => CommandId::BindTransmitterResp,
            Body::BindTransceiver(_) => CommandId::BindTransceiver,
            Body::BindTransceiverResp(_) => CommandId::BindTransceiverResp,
            Body::Outbind(_) => CommandId::Outbind,
            Body::Unbind => CommandId::Unbind,
            Body::UnbindResp => CommandId::UnbindResp,
            Body::EnquireLink => CommandId::EnquireLink,
            Body::EnquireLinkResp => CommandId::EnquireLinkResp,
            Body::GenericNack => CommandId::GenericNack,
            Body::SubmitSm(_) => CommandId::SubmitSm,
            Body::SubmitSmResp(_) => CommandId::SubmitSmResp,
            Body::DeliverSm(_) => CommandId::DeliverSm,
            Body::DeliverSmResp(_) => CommandId::DeliverSmResp,
            Body::DataSm(_) => CommandId::DataSm,
            Body::DataSmResp(_) => CommandId::DataSmResp,
            Body::AlertNotification(_) => CommandId::AlertNotification,
            Body::Other { command_id, .. } => command_id,
        }
    }

    /// Parses the body of a PDU with this command and status.
    pub fn parse(command_id: CommandId, command_status: CommandStatus, body: &'a [u8]) -> Result<Self, ParseError> {
        let empty = |b: Body<'a>| {
            if body.is_empty() {
                Ok(b)
            } else {
                Err(ParseError::TrailingBytes { len: body.len() })
            }
        };
        let error = !command_status.is_ok();
        Ok(match command_id {
            CommandId::BindReceiver => Body::BindReceiver(Bind::parse_body(body)?),
            CommandId::BindTransmitter => Body::BindTransmitter(Bind::parse_body(body)?),
            CommandId::BindTransceiver => Body::BindTransceiver(Bind::parse_body(body)?),
            CommandId::BindReceiverResp => Body::BindReceiverResp(BindResp::parse_body(body)?),
            CommandId::BindTransmitterResp => Body::BindTransmitterResp(BindResp::parse_body(body)?),
            CommandId::BindTransceiverResp => Body::BindTransceiverResp(BindResp::parse_body(body)?),
            CommandId::Outbind => Body::Outbind(Outbind::parse_body(body)?),
            CommandId::Unbind => empty(Body::Unbind)?,
            CommandId::UnbindResp => empty(Body::UnbindResp)?,
            CommandId::EnquireLink => empty(Body::EnquireLink)?,
            CommandId::EnquireLinkResp => empty(Body::EnquireLinkResp)?,
            CommandId::GenericNack => empty(Body::GenericNack)?,
            CommandId::SubmitSm => Body::SubmitSm(SubmitSm::parse_body(body)?),
            CommandId::DeliverSm => Body::DeliverSm(SubmitSm::parse_body(body)?),
            CommandId::DataSm => Body::DataSm(DataSm::parse_body(body)?),
            CommandId::SubmitSmResp => Body::SubmitSmResp(MessageIdResp::parse_body(body, error)?),
            CommandId::DeliverSmResp => Body::DeliverSmResp(MessageIdResp::parse_body(body, true)?),
            CommandId::DataSmResp => Body::DataSmResp(MessageIdResp::parse_body(body, error)?),
            CommandId::AlertNotification => Body::AlertNotification(AlertNotification::parse_body(body)?),
            command_id => Body::Other { command_id, body },
        })
    }

    /// Encoded body length.
    pub fn body_len(&self) -> usize {
        match self {
            Body::BindReceiver(b) | Body::BindTransmitter(b) | Body::BindTransceiver(b) => b.body_len(),
            Body::BindReceiverResp(b) | Body::BindTransmitterResp(b) | Body::BindTransceiverResp(b) => b.body_len(),
            Body::Outbind(b) => b.body_len(),
            Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => 0,
            Body::SubmitSm(b) | Body::DeliverSm(b) => b.body_len(),
            Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => b.body_len(),
            Body::DataSm(b) => b.body_len(),
            Body::AlertNotification(b) => b.body_len(),
            Body::Other { body, .. } => body.len(),
        }
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        match self {
            Body::BindReceiver(b) | Body::BindTransmitter(b) | Body::BindTransceiver(b) => b.emit_body(w),
            Body::BindReceiverResp(b) | Body::BindTransmitterResp(b) | Body::BindTransceiverResp(b) => b.emit_body(w),
            Body::Outbind(b) => b.emit_body(w),
            Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => Ok(()),
            Body::SubmitSm(b) | Body::DeliverSm(b) => b.emit_body(w),
            Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => b.emit_body(w),
            Body::DataSm(b) => b.emit_body(w),
            Body::AlertNotification(b) => b.emit_body(w),
            Body::Other { body, .. } => w.bytes(body),
        }
    }

    /// The TLVs of this body (empty for bodies without TLVs).
    pub fn tlvs(&self) -> Tlvs<'a> {
        match *self {
            Body::BindReceiverResp(b) | Body::BindTransmitterResp(b) | Body::BindTransceiverResp(b) => b.tlvs,
            Body::SubmitSm(b) | Body::DeliverSm(b) => b.tlvs,
            Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => b.tlvs,
            Body::DataSm(b) => b.tlvs,
            Body::AlertNotification(b) => b.tlvs,
            _ => Tlvs::EMPTY,
        }
    }
}

/// One SMPP PDU: header fields plus typed body (`command_length` and `command_id` are
/// derived from the body on emit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// `command_status` (0 in requests).
    pub command_status: CommandStatus,
    /// `sequence_number`.
    pub sequence_number: u32,
    /// The body.
    pub body: Body<'a>,
}

impl<'a> Pdu<'a> {
    /// A request (or successful response) with `ESME_ROK`.
    pub const fn new(sequence_number: u32, body: Body<'a>) -> Self {
        Pdu { command_status: CommandStatus::ESME_ROK, sequence_number, body }
    }

    /// A `generic_nack` with this status (e.g. `ESME_RINVCMDID` for an unknown command).
    pub const fn generic_nack(sequence_number: u32, status: CommandStatus) -> Self {
        Pdu { command_status: status, sequence_number, body: Body::GenericNack }
    }

    /// Parses exactly one PDU: `buf.len()` must equal `command_length`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let packet = Packet::new_checked(buf)?;
        let command_length = packet.command_length();
        if command_length as usize != buf.len() {
            return Err(ParseError::LengthMismatch { command_length, buffer_len: buf.len() });
        }
        let body = buf.get(HEADER_LEN..).unwrap_or(&[]);
        Ok(Pdu {
            command_status: packet.command_status(),
            sequence_number: packet.sequence_number(),
            body: Body::parse(packet.command_id(), packet.command_status(), body)?,
        })
    }

    /// The command_id.
    pub fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Encoded length (`command_length`).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.body.body_len())
    }

    /// Writes the PDU at the start of `buf`, returning its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.buffer_len();
        let command_length = u32::try_from(len).map_err(|_| EmitError::PduTooLong { len })?;
        if buf.len() < len {
            return Err(EmitError::BufferTooSmall { needed: len, available: buf.len() });
        }
        let mut w = Writer { buf, pos: HEADER_LEN };
        self.body.emit_body(&mut w)?;
        debug_assert_eq!(w.pos, len);
        let mut packet = Packet::new_unchecked(&mut w.buf[..]);
        packet.set_command_length(command_length);
        packet.set_command_id(self.command_id());
        packet.set_command_status(self.command_status);
        packet.set_sequence_number(self.sequence_number);
        Ok(len)
    }
}

impl fmt::Display for Pdu<'_> {
    /// A tshark-like one-line summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SMPP {} seq={}", self.command_id(), self.sequence_number)?;
        if !self.command_status.is_ok() || self.command_id().is_response() {
            write!(f, " status={}", self.command_status)?;
        }
        match &self.body {
            Body::BindReceiver(b) | Body::BindTransmitter(b) | Body::BindTransceiver(b) => {
                write!(f, " system_id={} version=0x{:02x}", b.system_id.escape_ascii(), b.interface_version)
            }
            Body::BindReceiverResp(b) | Body::BindTransmitterResp(b) | Body::BindTransceiverResp(b) => {
                match b.system_id {
                    Some(s) => write!(f, " system_id={}", s.escape_ascii()),
                    None => Ok(()),
                }
            }
            Body::Outbind(b) => write!(f, " system_id={}", b.system_id.escape_ascii()),
            Body::SubmitSm(b) | Body::DeliverSm(b) => write!(
                f,
                " {} -> {} esm_class=0x{:02x} registered_delivery=0x{:02x} data_coding=0x{:02x} sm_length={}",
                b.source,
                b.destination,
                b.esm_class.0,
                b.registered_delivery.0,
                b.data_coding,
                b.short_message.len()
            ),
            Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => match b.message_id {
                Some(s) => write!(f, " message_id={}", s.escape_ascii()),
                None => Ok(()),
            },
            Body::DataSm(b) => write!(
                f,
                " {} -> {} esm_class=0x{:02x} registered_delivery=0x{:02x} data_coding=0x{:02x}",
                b.source, b.destination, b.esm_class.0, b.registered_delivery.0, b.data_coding
            ),
            Body::AlertNotification(b) => write!(f, " {} esme={}", b.source, b.esme),
            Body::Other { body, .. } => write!(f, " body_len={}", body.len()),
            Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::smpp::error::{TlvError, TlvTag};
    use crate::wire::smpp::tlv::{MessageState, Tlv, TlvWriter};
    use proptest::prelude::*;

    /// Builds a PDU from a header and body parts, for fixtures whose length would be
    /// tedious to count by hand (the literal fixtures below check the arithmetic).
    fn pdu(command_id: u32, status: u32, seq: u32, parts: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
        v.extend_from_slice(&command_id.to_be_bytes());
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    fn round_trip(bytes: &[u8]) -> Pdu<'_> {
        let pdu = Pdu::parse(bytes).unwrap();
        assert_eq!(pdu.buffer_len(), bytes.len());
        let mut out = vec![0u8; bytes.len()];
        assert_eq!(pdu.emit(&mut out), Ok(bytes.len()));
        assert_eq!(out, bytes);
        // Too small a buffer is an error, not a panic.
        let mut small = vec![0u8; bytes.len() - 1];
        assert_eq!(
            pdu.emit(&mut small),
            Err(EmitError::BufferTooSmall { needed: bytes.len(), available: bytes.len() - 1 })
        );
        // Every truncation fails.
        for cut in 0..bytes.len() {
            assert!(Pdu::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        pdu
    }

    // bind_transmitter, SMPP 3.4 §4.1.1 layout: system_id "SMPP3TEST", password
    // "secret08", system_type "SUBMIT1", interface_version 0x34, addr_ton 1, addr_npi 1,
    // address_range "". command_length 47 = 16 + 10 + 9 + 8 + 3 + 1.
    const BIND_TRANSMITTER: &[u8] = &[
        0x00, 0x00, 0x00, 0x2F, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, b'S', b'M',
        b'P', b'P', b'3', b'T', b'E', b'S', b'T', 0x00, b's', b'e', b'c', b'r', b'e', b't', b'0', b'8', 0x00, b'S',
        b'U', b'B', b'M', b'I', b'T', b'1', 0x00, 0x34, 0x01, 0x01, 0x00,
    ];

    // submit_sm, SMPP 3.4 §4.4.1 layout: service_type "", 1/1 "447700900123" ->
    // 1/1 "447700900456", esm_class 0, protocol_id 0, priority 0, no schedule, no
    // validity, registered_delivery 1, replace 0, data_coding 0, default_msg_id 0,
    // sm_length 5 "hello", user_message_reference (0x0204) = 7.
    // command_length 68 = 16 + 1 + 15 + 15 + 3 + 1 + 1 + 4 + 1 + 5 + 6.
    const SUBMIT_SM: &[u8] = &[
        0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
        0x01, b'4', b'4', b'7', b'7', b'0', b'0', b'9', b'0', b'0', b'1', b'2', b'3', 0x00, 0x01, 0x01, b'4', b'4',
        b'7', b'7', b'0', b'0', b'9', b'0', b'0', b'4', b'5', b'6', 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0x02, 0x04, 0x00, 0x02, 0x00, 0x07,
    ];

    const RECEIPT_TEXT: &[u8] =
        b"id:1A2B sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hello";

    fn deliver_sm_receipt() -> Vec<u8> {
        pdu(
            0x0000_0005,
            0,
            9,
            &[
                b"\0",
                &[1, 1],
                b"447700900456\0",
                &[1, 1],
                b"447700900123\0",
                &[0x04, 0, 0],
                b"\0\0",
                &[0, 0, 0, 0],
                &[RECEIPT_TEXT.len() as u8],
                RECEIPT_TEXT,
                &[0x00, 0x1E, 0x00, 0x05],
                b"1A2B\0",
                &[0x04, 0x27, 0x00, 0x01, 0x02],
            ],
        )
    }

    #[test]
    fn bind_transmitter_fixture() {
        let pdu = round_trip(BIND_TRANSMITTER);
        assert_eq!(pdu.sequence_number, 1);
        let Body::BindTransmitter(b) = pdu.body else { panic!("{pdu:?}") };
        assert_eq!(b.system_id, b"SMPP3TEST");
        assert_eq!(b.password, b"secret08");
        assert_eq!(b.system_type, b"SUBMIT1");
        assert_eq!(b.interface_version, INTERFACE_VERSION_34);
        assert_eq!((b.addr_ton, b.addr_npi), (1, 1));
        assert_eq!(b.address_range, b"");
        assert_eq!(pdu.to_string(), "SMPP bind_transmitter seq=1 system_id=SMPP3TEST version=0x34");
    }

    #[test]
    fn bind_receiver_and_transceiver_share_the_layout() {
        let mut v = BIND_TRANSMITTER.to_vec();
        v[7] = 0x01;
        assert!(matches!(round_trip(&v).body, Body::BindReceiver(_)));
        v[7] = 0x09;
        assert!(matches!(round_trip(&v).body, Body::BindTransceiver(_)));
    }

    #[test]
    fn bind_resp_fixtures() {
        // bind_transceiver_resp "SMSC" + sc_interface_version 0x34.
        let ok = pdu(0x8000_0009, 0, 1, &[b"SMSC\0", &[0x02, 0x10, 0x00, 0x01, 0x34]]);
        let p = round_trip(&ok);
        let Body::BindTransceiverResp(r) = p.body else { panic!() };
        assert_eq!(r.system_id, Some(&b"SMSC"[..]));
        assert_eq!(r.tlvs.sc_interface_version(), Ok(Some(0x34)));
        // Error response without body (ESME_RINVPASWD).
        let err = pdu(0x8000_0002, 0x0E, 1, &[]);
        let p = round_trip(&err);
        assert_eq!(p.command_status, CommandStatus::ESME_RINVPASWD);
        assert_eq!(p.body, Body::BindTransmitterResp(BindResp::default()));
        assert_eq!(p.to_string(), "SMPP bind_transmitter_resp seq=1 status=ESME_RINVPASWD");
        // Error response with an empty system_id is also fine.
        let err = pdu(0x8000_0001, 0x0D, 1, &[b"\0"]);
        let p = round_trip(&err);
        assert_eq!(p.body, Body::BindReceiverResp(BindResp { system_id: Some(b""), tlvs: Tlvs::EMPTY }));
    }

    #[test]
    fn outbind_and_header_only_pdus() {
        let o = pdu(0x0B, 0, 3, &[b"SMSC\0", b"pw\0"]);
        let p = round_trip(&o);
        assert_eq!(p.body, Body::Outbind(Outbind { system_id: b"SMSC", password: b"pw" }));
        for (id, body) in [
            (0x06, Body::Unbind),
            (0x8000_0006, Body::UnbindResp),
            (0x15, Body::EnquireLink),
            (0x8000_0015, Body::EnquireLinkResp),
            (0x8000_0000, Body::GenericNack),
        ] {
            let bytes = pdu(id, 0, 42, &[]);
            assert_eq!(round_trip(&bytes).body, body);
            // A body where none belongs.
            let bad = pdu(id, 0, 42, &[b"x"]);
            assert_eq!(Pdu::parse(&bad), Err(ParseError::TrailingBytes { len: 1 }));
        }
        let nack = Pdu::generic_nack(7, CommandStatus::ESME_RINVCMDID);
        let mut buf = [0u8; 16];
        assert_eq!(nack.emit(&mut buf), Ok(16));
        assert_eq!(buf, [0, 0, 0, 16, 0x80, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 7]);
    }

    #[test]
    fn submit_sm_fixture() {
        let pdu = round_trip(SUBMIT_SM);
        let Body::SubmitSm(sm) = pdu.body else { panic!() };
        assert_eq!(sm.service_type, b"");
        assert_eq!(sm.source, Address::international(b"447700900123"));
        assert_eq!(sm.destination, Address::international(b"447700900456"));
        assert_eq!(sm.registered_delivery, RegisteredDelivery(1));
        assert_eq!(sm.short_message, b"hello");
        assert_eq!(sm.payload(), b"hello");
        assert_eq!(sm.tlvs.user_message_reference(), Ok(Some(7)));
        assert_eq!(
            pdu.to_string(),
            "SMPP submit_sm seq=2 1/1:447700900123 -> 1/1:447700900456 esm_class=0x00 \
             registered_delivery=0x01 data_coding=0x00 sm_length=5"
        );
    }

    #[test]
    fn submit_sm_resp_fixtures() {
        let ok = pdu(0x8000_0004, 0, 2, &[b"4f2a9c01\0"]);
        let p = round_trip(&ok);
        assert_eq!(p.body, Body::SubmitSmResp(MessageIdResp { message_id: Some(b"4f2a9c01"), tlvs: Tlvs::EMPTY }));
        // Throttled, no body.
        let thr = pdu(0x8000_0004, 0x58, 2, &[]);
        assert_eq!(round_trip(&thr).body, Body::SubmitSmResp(MessageIdResp::default()));
        // Success without message_id is malformed.
        let bad = pdu(0x8000_0004, 0, 2, &[]);
        assert_eq!(Pdu::parse(&bad), Err(ParseError::Truncated { field: Field::MessageId }));
        // message_id of 64 characters is the maximum.
        let id = [b'7'; 64];
        let long = pdu(0x8000_0004, 0, 2, &[&id, b"\0"]);
        round_trip(&long);
        let id = [b'7'; 65];
        let too_long = pdu(0x8000_0004, 0, 2, &[&id, b"\0"]);
        assert_eq!(Pdu::parse(&too_long), Err(ParseError::CStringTooLong { field: Field::MessageId, max: 65 }));
    }

    #[test]
    fn deliver_sm_receipt_fixture() {
        let bytes = deliver_sm_receipt();
        let p = round_trip(&bytes);
        let Body::DeliverSm(sm) = p.body else { panic!() };
        assert!(sm.esm_class.is_receipt());
        assert_eq!(sm.short_message, RECEIPT_TEXT);
        assert_eq!(sm.tlvs.receipted_message_id(), Ok(Some(&b"1A2B"[..])));
        assert_eq!(sm.tlvs.message_state(), Ok(Some(MessageState::Delivered)));
        // Emit the same receipt from a TLV list and from a TlvWriter area.
        let list = [Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"1A2B\0"), Tlv::new(TlvTag::MESSAGE_STATE, &[2])];
        let mut area = [0u8; 32];
        let mut w = TlvWriter::new(&mut area);
        w.receipted_message_id(b"1A2B").unwrap().message_state(MessageState::Delivered).unwrap();
        for tlvs in [Tlvs::List(&list), Tlvs::Raw(w.as_bytes())] {
            let built = Pdu::new(
                9,
                Body::DeliverSm(DeliverSm {
                    source: Address::international(b"447700900456"),
                    destination: Address::international(b"447700900123"),
                    esm_class: EsmClass(EsmClass::SMSC_DELIVERY_RECEIPT),
                    short_message: RECEIPT_TEXT,
                    tlvs,
                    ..DeliverSm::default()
                }),
            );
            let mut out = [0u8; 256];
            let n = built.emit(&mut out).unwrap();
            assert_eq!(&out[..n], &bytes[..]);
            assert_eq!(built, p);
        }
        // deliver_sm_resp: empty message_id, or no body at all.
        let resp = pdu(0x8000_0005, 0, 9, &[b"\0"]);
        assert_eq!(
            round_trip(&resp).body,
            Body::DeliverSmResp(MessageIdResp { message_id: Some(b""), tlvs: Tlvs::EMPTY })
        );
        let resp = pdu(0x8000_0005, 0, 9, &[]);
        assert_eq!(round_trip(&resp).body, Body::DeliverSmResp(MessageIdResp::default()));
    }

    #[test]
    fn data_sm_and_resp_fixtures() {
        let long_addr = [b'9'; 64];
        let bytes = pdu(
            0x0000_0103,
            0,
            11,
            &[
                b"WAP\0",
                &[1, 1],
                &long_addr,
                b"\0",
                &[5, 0],
                b"Acme\0",
                &[0x40, 0x01, 0x08],
                &[0x04, 0x24, 0x00, 0x03, 0xAA, 0xBB, 0xCC],
            ],
        );
        let p = round_trip(&bytes);
        let Body::DataSm(d) = p.body else { panic!() };
        assert_eq!(d.service_type, b"WAP");
        assert_eq!(d.source.addr, &long_addr[..]);
        assert_eq!(d.destination, Address::new(5, 0, b"Acme"));
        assert!(d.esm_class.udhi());
        assert_eq!(d.data_coding, 8);
        assert_eq!(d.tlvs.message_payload(), Some(&[0xAA, 0xBB, 0xCC][..]));
        let resp = pdu(0x8000_0103, 0, 11, &[b"abc\0", &[0x04, 0x25, 0x00, 0x01, 0x00]]);
        let p = round_trip(&resp);
        let Body::DataSmResp(r) = p.body else { panic!() };
        assert_eq!(r.message_id, Some(&b"abc"[..]));
        assert_eq!(r.tlvs.get(TlvTag::DELIVERY_FAILURE_REASON).unwrap().value, &[0]);
        let fail = pdu(0x8000_0103, 0xFE, 11, &[]);
        assert_eq!(round_trip(&fail).body, Body::DataSmResp(MessageIdResp::default()));
    }

    #[test]
    fn alert_notification_fixture() {
        let bytes =
            pdu(0x0000_0102, 0, 12, &[&[1, 1], b"447700900123\0", &[0, 0], b"iwf\0", &[0x04, 0x22, 0x00, 0x01, 0x00]]);
        let p = round_trip(&bytes);
        let Body::AlertNotification(a) = p.body else { panic!() };
        assert_eq!(a.source, Address::international(b"447700900123"));
        assert_eq!(a.esme, Address::new(0, 0, b"iwf"));
        assert_eq!(a.tlvs.get(TlvTag::MS_AVAILABILITY_STATUS).unwrap().value, &[0]);
    }

    #[test]
    fn other_commands_are_data() {
        let q = pdu(0x0000_0003, 0, 5, &[b"123\0", &[1, 1], b"447700900123\0"]);
        let p = round_trip(&q);
        assert_eq!(p.command_id(), CommandId::QuerySm);
        let u = pdu(0x0001_0000, 0, 5, &[b"zz"]);
        let p = round_trip(&u);
        assert_eq!(p.body, Body::Other { command_id: CommandId::Unknown(0x1_0000), body: b"zz" });
        assert_eq!(p.to_string(), "SMPP command_id 0x00010000 seq=5 body_len=2");
    }

    #[test]
    fn header_errors() {
        assert_eq!(Pdu::parse(&SUBMIT_SM[..10]), Err(ParseError::TruncatedHeader { len: 10 }));
        let mut v = SUBMIT_SM.to_vec();
        v[3] = 0x0F;
        assert_eq!(Pdu::parse(&v), Err(ParseError::CommandLengthTooShort { command_length: 15 }));
        v[3] = 0x45; // claims one byte more than given
        assert_eq!(Pdu::parse(&v), Err(ParseError::LengthMismatch { command_length: 0x45, buffer_len: 0x44 }));
        v[3] = 0x43; // one byte less: trailing byte outside the PDU
        assert_eq!(Pdu::parse(&v), Err(ParseError::LengthMismatch { command_length: 0x43, buffer_len: 0x44 }));
        let mut v = SUBMIT_SM.to_vec();
        v.push(0);
        assert!(matches!(Pdu::parse(&v), Err(ParseError::LengthMismatch { .. })));
    }

    #[test]
    fn cstring_errors() {
        // system_id of 16 characters: no NUL within 16 octets.
        let bytes = pdu(0x02, 0, 1, &[b"ABCDEFGHIJKLMNOP\0pw\0\0", &[0x34, 0, 0], b"\0"]);
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::CStringTooLong { field: Field::SystemId, max: 16 }));
        assert_eq!(
            ParseError::CStringTooLong { field: Field::SystemId, max: 16 }.command_status(),
            CommandStatus::ESME_RINVSYSID
        );
        // password of 9 characters.
        let bytes = pdu(0x02, 0, 1, &[b"id\0", b"123456789\0", b"\0", &[0x34, 0, 0], b"\0"]);
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::CStringTooLong { field: Field::Password, max: 9 }));
        // Missing NUL at the end of the body.
        let bytes = pdu(0x02, 0, 1, &[b"id\0", b"pw\0", b"\0", &[0x34, 0, 0], b"range"]);
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::MissingNul { field: Field::AddressRange }));
        // Missing field.
        let bytes = pdu(0x02, 0, 1, &[b"id\0", b"pw\0", b"\0", &[0x34]]);
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::Truncated { field: Field::AddrTon }));
        // Trailing bytes after a bind.
        let mut bytes = BIND_TRANSMITTER.to_vec();
        bytes.push(0xAA);
        bytes[3] += 1;
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::TrailingBytes { len: 1 }));
        // source_addr of 21 digits in submit_sm.
        let mut v = SUBMIT_SM.to_vec();
        let addr = [b'1'; 21];
        v.splice(19..31, addr.iter().copied());
        v[3] = v.len() as u8;
        let err = Pdu::parse(&v).unwrap_err();
        assert_eq!(err, ParseError::CStringTooLong { field: Field::SourceAddr, max: 21 });
        assert_eq!(err.command_status(), CommandStatus::ESME_RINVSRCADR);
    }

    #[test]
    fn sm_length_errors() {
        // sm_length 6 with 5 octets of text and TLVs after it... point sm_length past the
        // body end instead.
        let mut v = SUBMIT_SM.to_vec();
        v[56] = 200;
        assert_eq!(Pdu::parse(&v), Err(ParseError::BadSmLength { sm_length: 200, available: 11 }));
        assert_eq!(
            ParseError::BadSmLength { sm_length: 200, available: 11 }.command_status(),
            CommandStatus::ESME_RINVMSGLEN
        );
        // sm_length 255 is invalid even when the bytes are there.
        let filler = [b'x'; 255];
        let bytes = pdu(
            0x04,
            0,
            1,
            &[b"\0", &[1, 1], b"1\0", &[1, 1], b"2\0", &[0, 0, 0], b"\0\0", &[0, 0, 0, 0, 255], &filler],
        );
        assert_eq!(Pdu::parse(&bytes), Err(ParseError::BadSmLength { sm_length: 255, available: 255 }));
        // sm_length shifted by one makes the TLV area malformed.
        let mut v = SUBMIT_SM.to_vec();
        v[56] = 6;
        assert!(matches!(Pdu::parse(&v), Err(ParseError::Tlv(_))));
    }

    #[test]
    fn tlv_truncated_in_pdu() {
        let mut v = SUBMIT_SM.to_vec();
        v.pop();
        v[3] -= 1;
        let err = Pdu::parse(&v).unwrap_err();
        assert_eq!(
            err,
            ParseError::Tlv(TlvError::TruncatedValue { tag: TlvTag::USER_MESSAGE_REFERENCE, length: 2, available: 1 })
        );
        assert_eq!(err.command_status(), CommandStatus::ESME_RINVOPTPARSTREAM);
        assert_eq!(err.to_string(), "SMPP TLV user_message_reference length 2 exceeds the 1 bytes left");
    }

    #[test]
    fn emit_errors() {
        let mut buf = [0u8; 512];
        let long_sys = Pdu::new(1, Body::BindTransceiver(Bind { system_id: &[b'a'; 16], ..Bind::default() }));
        assert_eq!(long_sys.emit(&mut buf), Err(EmitError::CStringTooLong { field: Field::SystemId, max: 16 }));
        let nul = Pdu::new(1, Body::Outbind(Outbind { system_id: b"a\0b", password: b"" }));
        assert_eq!(nul.emit(&mut buf), Err(EmitError::ContainsNul { field: Field::SystemId }));
        let text = [b'x'; 255];
        let sm = Pdu::new(1, Body::SubmitSm(SubmitSm { short_message: &text, ..SubmitSm::default() }));
        assert_eq!(sm.emit(&mut buf), Err(EmitError::ShortMessageTooLong { len: 255 }));
        let list = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &[0x34])];
        let resp = Pdu {
            command_status: CommandStatus::ESME_RBINDFAIL,
            sequence_number: 1,
            body: Body::BindTransmitterResp(BindResp { system_id: None, tlvs: Tlvs::List(&list) }),
        };
        assert_eq!(resp.emit(&mut buf), Err(EmitError::TlvsWithoutBody));
        let bad_area = [0x00, 0x1E, 0x00];
        let resp = Pdu::new(1, Body::DataSmResp(MessageIdResp { message_id: Some(b"1"), tlvs: Tlvs::Raw(&bad_area) }));
        assert!(matches!(resp.emit(&mut buf), Err(EmitError::BadTlv(_))));
    }

    fn cstring(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..max)
    }

    prop_compose! {
        fn tlv_list()(tlvs in proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6)
        ) -> Vec<(u16, Vec<u8>)> { tlvs }
    }

    prop_compose! {
        fn sm_fields()(
            service_type in cstring(6),
            src in cstring(21), dst in cstring(21),
            tons in any::<[u8; 4]>(),
            flags in any::<[u8; 8]>(),
            sched in cstring(17), validity in cstring(17),
            short_message in proptest::collection::vec(any::<u8>(), 0..=254),
            tlvs in tlv_list(),
            seq in any::<u32>(),
            deliver in any::<bool>(),
        ) -> (Vec<Vec<u8>>, [u8; 4], [u8; 8], Vec<u8>, Vec<(u16, Vec<u8>)>, u32, bool) {
            (vec![service_type, src, dst, sched, validity], tons, flags, short_message, tlvs, seq, deliver)
        }
    }

    proptest! {
        #[test]
        fn submit_and_deliver_sm_round_trip(
            (strings, tons, flags, short_message, tlvs, seq, deliver) in sm_fields()
        ) {
            let list: Vec<Tlv<'_>> =
                tlvs.iter().map(|(t, v)| Tlv::new(TlvTag(*t), v)).collect();
            let sm = SubmitSm {
                service_type: &strings[0],
                source: Address::new(tons[0], tons[1], &strings[1]),
                destination: Address::new(tons[2], tons[3], &strings[2]),
                esm_class: EsmClass(flags[0]),
                protocol_id: flags[1],
                priority_flag: flags[2],
                schedule_delivery_time: &strings[3],
                validity_period: &strings[4],
                registered_delivery: RegisteredDelivery(flags[3]),
                replace_if_present_flag: flags[4],
                data_coding: flags[5],
                sm_default_msg_id: flags[6],
                short_message: &short_message,
                tlvs: Tlvs::List(&list),
            };
            let body = if deliver { Body::DeliverSm(sm) } else { Body::SubmitSm(sm) };
            let pdu = Pdu::new(seq, body);
            let mut buf = vec![0u8; pdu.buffer_len()];
            let n = pdu.emit(&mut buf).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert_eq!(crate::wire::smpp::frame(&buf, usize::MAX), Ok(Some(n)));
            let parsed = Pdu::parse(&buf).unwrap();
            prop_assert_eq!(parsed, pdu);
            let mut again = vec![0u8; n];
            prop_assert_eq!(parsed.emit(&mut again), Ok(n));
            prop_assert_eq!(again, buf);
        }

        #[test]
        fn mutated_fixtures_parse_to_exact_round_trips_or_errors(
            which in 0usize..3,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut bytes = match which {
                0 => SUBMIT_SM.to_vec(),
                1 => BIND_TRANSMITTER.to_vec(),
                _ => deliver_sm_receipt(),
            };
            for (at, v) in edits {
                let i = 4 + at % (bytes.len() - 4); // keep command_length, mutate the rest
                bytes[i] = v;
            }
            bytes.truncate(16.max(cut % (bytes.len() + 1)));
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_be_bytes());
            if let Ok(pdu) = Pdu::parse(&bytes) {
                let mut out = vec![0u8; bytes.len()];
                prop_assert_eq!(pdu.emit(&mut out), Ok(bytes.len()));
                prop_assert_eq!(out, bytes);
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(pdu) = Pdu::parse(&bytes) {
                let mut out = vec![0u8; bytes.len()];
                prop_assert_eq!(pdu.emit(&mut out), Ok(bytes.len()));
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
