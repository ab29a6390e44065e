//! The exchange unit's conversions between the legacy (SMPP) and converged (SIP, CPIM,
//! IMDN) worlds: pure functions over the codecs in [`crate::wire`] and the tag. They take
//! everything they need from the caller (time, sequence numbers, the legacy system's
//! provisioning, the converged side's addresses) and write into caller buffers.
#![deny(unsafe_code)]

pub mod address;
pub mod content;
pub mod converged_to_legacy;
pub mod legacy_to_converged;
pub mod mms;
pub mod state;

use address::NumberingPlan;

/// How iwf and a legacy system are connected over SMPP. It decides which PDU carries a
/// message or a receipt toward that system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindDirection {
    /// The legacy system binds to iwf as an ESME: it sends submit_sm, iwf delivers
    /// messages and receipts with deliver_sm.
    LegacyBindsToIwf,
    /// iwf binds to the legacy system (an SMSC) as an ESME: the SMSC sends deliver_sm,
    /// iwf sends messages and SME acknowledgements with submit_sm.
    IwfBindsToLegacy,
}

pub use crate::wire::sms::Concatenation;
pub use crate::wire::sms::Encoding;

/// How a legacy system writes message ids, so that the id in its receipt can be matched
/// with the id in its submit_sm_resp (SMSCs write the same id differently in the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCanonicalisation {
    /// Tolerant, the default: an id of hexadecimal digits (at most 16 after leading
    /// zeros) is the number it spells in hex, so case and leading zeros do not matter;
    /// any other id is compared folded (lower case, no leading zeros). A receipt id of
    /// decimal digits that matches nothing that way is tried as the decimal number (an
    /// SMSC that answers in hex and reports in decimal). A receipt that would match two
    /// live messages, one each way, is refused as ambiguous.
    Auto,
    /// Compare ids as they are.
    Exact,
    /// Compare case-insensitively and without leading zeros.
    Folded,
    /// submit_sm_resp ids are hexadecimal, receipt ids decimal: compare as numbers.
    HexRespDecimalReceipt,
    /// Both forms are decimal numbers: compare as numbers (drops leading zeros).
    Decimal,
}

/// What the conversions need to know of one legacy system (its exchange unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange<'a> {
    /// Stable 16-bit index from provisioning: the tag carries it.
    pub system: u16,
    /// Operator's name for the system (`smsc-a`).
    pub name: &'a str,
    /// Who binds to whom.
    pub direction: BindDirection,
    /// What data_coding 0 means for this system (GSM 03.38 unpacked in practice), and
    /// the encoding preferred for outgoing text when the text fits it.
    pub default_encoding: Encoding,
    /// Whether the system handles SME manual/user acknowledgements (esm_class 0x10):
    /// only then is a display (read) report promised or relayed (most SMSCs never send
    /// a user ack, so promising one would leave the sender waiting for ever).
    pub user_ack: bool,
    /// How iwf sends concatenated messages to it.
    pub concatenation: Concatenation,
    /// How its message ids are compared.
    pub ids: IdCanonicalisation,
    /// Numbering plan for its national numbers.
    pub numbering: NumberingPlan<'a>,
}

/// The converged side as the conversions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergedSide<'a> {
    /// Domain under which legacy users appear: `sip:+<E.164>@<legacy_domain>;user=phone`.
    pub legacy_domain: &'a str,
    /// Domain of converged users: `sip:+<E.164>@<converged_domain>;user=phone`.
    pub converged_domain: &'a str,
    /// iwf's own sent-by for Via headers and the host part of Call-IDs (`198.18.2.2:5060`).
    pub local_sent_by: &'a str,
    /// Transport iwf's requests go out on (`UDP` or `TCP`).
    pub transport: &'a str,
}
