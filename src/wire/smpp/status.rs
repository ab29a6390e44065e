//! `command_status` error codes (SMPP 3.4 §5.1.3, SMPP 5.0 §4.7.6).

use core::fmt;

/// The `command_status` header field. A newtype over the raw value so that codes the
/// specs do not assign (vendor range 0x400–0x4FF, or anything else) stay data; the
/// named constants cover every SMPP 3.4 and 5.0 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandStatus(pub u32);

macro_rules! command_statuses {
    ($( $name:ident = $value:expr, $desc:expr; )+) => {
        impl CommandStatus {
            $(
                #[doc = concat!("`", stringify!($name), "`: ", $desc, ".")]
                pub const $name: CommandStatus = CommandStatus($value);
            )+

            /// The spec name (`ESME_RTHROTTLED`), `None` when the code is not assigned.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($name)), )+
                    _ => None,
                }
            }

            /// The spec description ("Throttling error ..."); vendor-specific and
            /// unassigned codes get a generic text.
            pub fn description(self) -> &'static str {
                match self.0 {
                    $( $value => $desc, )+
                    0x400..=0x4FF => "SMSC vendor-specific error",
                    _ => "reserved error code",
                }
            }
        }
    };
}

command_statuses! {
    ESME_ROK = 0x0000_0000, "No error";
    ESME_RINVMSGLEN = 0x0000_0001, "Message length is invalid";
    ESME_RINVCMDLEN = 0x0000_0002, "Command length is invalid";
    ESME_RINVCMDID = 0x0000_0003, "Invalid command ID";
    ESME_RINVBNDSTS = 0x0000_0004, "Incorrect bind status for given command";
    ESME_RALYBND = 0x0000_0005, "ESME already in bound state";
    ESME_RINVPRTFLG = 0x0000_0006, "Invalid priority flag";
    ESME_RINVREGDLVFLG = 0x0000_0007, "Invalid registered delivery flag";
    ESME_RSYSERR = 0x0000_0008, "System error";
    ESME_RINVSRCADR = 0x0000_000A, "Invalid source address";
    ESME_RINVDSTADR = 0x0000_000B, "Invalid destination address";
    ESME_RINVMSGID = 0x0000_000C, "Message ID is invalid";
    ESME_RBINDFAIL = 0x0000_000D, "Bind failed";
    ESME_RINVPASWD = 0x0000_000E, "Invalid password";
    ESME_RINVSYSID = 0x0000_000F, "Invalid system ID";
    ESME_RCANCELFAIL = 0x0000_0011, "cancel_sm failed";
    ESME_RREPLACEFAIL = 0x0000_0013, "replace_sm failed";
    ESME_RMSGQFUL = 0x0000_0014, "Message queue full";
    ESME_RINVSERTYP = 0x0000_0015, "Invalid service type";
    ESME_RINVNUMDESTS = 0x0000_0033, "Invalid number of destinations";
    ESME_RINVDLNAME = 0x0000_0034, "Invalid distribution list name";
    ESME_RINVDESTFLAG = 0x0000_0040, "Destination flag is invalid (submit_multi)";
    ESME_RINVSUBREP = 0x0000_0042, "Invalid 'submit with replace' request";
    ESME_RINVESMCLASS = 0x0000_0043, "Invalid esm_class field data";
    ESME_RCNTSUBDL = 0x0000_0044, "Cannot submit to distribution list";
    ESME_RSUBMITFAIL = 0x0000_0045, "submit_sm or submit_multi failed";
    ESME_RINVSRCTON = 0x0000_0048, "Invalid source address TON";
    ESME_RINVSRCNPI = 0x0000_0049, "Invalid source address NPI";
    ESME_RINVDSTTON = 0x0000_0050, "Invalid destination address TON";
    ESME_RINVDSTNPI = 0x0000_0051, "Invalid destination address NPI";
    ESME_RINVSYSTYP = 0x0000_0053, "Invalid system_type field";
    ESME_RINVREPFLAG = 0x0000_0054, "Invalid replace_if_present flag";
    ESME_RINVNUMMSGS = 0x0000_0055, "Invalid number of messages";
    ESME_RTHROTTLED = 0x0000_0058, "Throttling error (ESME has exceeded allowed message limits)";
    ESME_RINVSCHED = 0x0000_0061, "Invalid scheduled delivery time";
    ESME_RINVEXPIRY = 0x0000_0062, "Invalid message validity period (expiry time)";
    ESME_RINVDFTMSGID = 0x0000_0063, "Predefined message invalid or not found";
    ESME_RX_T_APPN = 0x0000_0064, "ESME receiver temporary app error code";
    ESME_RX_P_APPN = 0x0000_0065, "ESME receiver permanent app error code";
    ESME_RX_R_APPN = 0x0000_0066, "ESME receiver reject message error code";
    ESME_RQUERYFAIL = 0x0000_0067, "query_sm request failed";
    ESME_RINVOPTPARSTREAM = 0x0000_00C0, "Error in the optional part of the PDU body";
    ESME_ROPTPARNOTALLWD = 0x0000_00C1, "Optional parameter not allowed";
    ESME_RINVPARLEN = 0x0000_00C2, "Invalid parameter length";
    ESME_RMISSINGOPTPARAM = 0x0000_00C3, "Expected optional parameter missing";
    ESME_RINVOPTPARAMVAL = 0x0000_00C4, "Invalid optional parameter value";
    ESME_RDELIVERYFAILURE = 0x0000_00FE, "Transaction delivery failure (used for data_sm_resp)";
    ESME_RUNKNOWNERR = 0x0000_00FF, "Unknown error";
    ESME_RSERTYPUNAUTH = 0x0000_0100, "ESME not authorised to use specified service_type";
    ESME_RPROHIBITED = 0x0000_0101, "ESME prohibited from using specified operation";
    ESME_RSERTYPUNAVAIL = 0x0000_0102, "Specified service_type is unavailable";
    ESME_RSERTYPDENIED = 0x0000_0103, "Specified service_type is denied";
    ESME_RINVDCS = 0x0000_0104, "Invalid data coding scheme";
    ESME_RINVSRCADDRSUBUNIT = 0x0000_0105, "Source address sub unit is invalid";
    ESME_RINVDSTADDRSUBUNIT = 0x0000_0106, "Destination address sub unit is invalid";
    ESME_RINVBCASTFREQINT = 0x0000_0107, "Broadcast frequency interval is invalid";
    ESME_RINVBCASTALIAS_NAME = 0x0000_0108, "Broadcast alias name is invalid";
    ESME_RINVBCASTAREAFMT = 0x0000_0109, "Broadcast area format is invalid";
    ESME_RINVNUMBCAST_AREAS = 0x0000_010A, "Number of broadcast areas is invalid";
    ESME_RINVBCASTCNTTYPE = 0x0000_010B, "Broadcast content type is invalid";
    ESME_RINVBCASTMSGCLASS = 0x0000_010C, "Broadcast message class is invalid";
    ESME_RBCASTFAIL = 0x0000_010D, "broadcast_sm operation failed";
    ESME_RBCASTQUERYFAIL = 0x0000_010E, "query_broadcast_sm operation failed";
    ESME_RBCASTCANCELFAIL = 0x0000_010F, "cancel_broadcast_sm operation failed";
    ESME_RINVBCAST_REP = 0x0000_0110, "Number of repeated broadcasts is invalid";
    ESME_RINVBCASTSRVGRP = 0x0000_0111, "Broadcast service group is invalid";
    ESME_RINVBCASTCHANIND = 0x0000_0112, "Broadcast channel indicator is invalid";
}

impl CommandStatus {
    /// SMPP 5.0 name of 0xC0 ([`CommandStatus::ESME_RINVOPTPARSTREAM`] in 3.4).
    pub const ESME_RINVTLVSTREAM: CommandStatus = CommandStatus::ESME_RINVOPTPARSTREAM;
    /// SMPP 5.0 name of 0xC1 ([`CommandStatus::ESME_ROPTPARNOTALLWD`] in 3.4).
    pub const ESME_RTLVNOTALLWD: CommandStatus = CommandStatus::ESME_ROPTPARNOTALLWD;
    /// SMPP 5.0 name of 0xC2 ([`CommandStatus::ESME_RINVPARLEN`] in 3.4).
    pub const ESME_RINVTLVLEN: CommandStatus = CommandStatus::ESME_RINVPARLEN;
    /// SMPP 5.0 name of 0xC3 ([`CommandStatus::ESME_RMISSINGOPTPARAM`] in 3.4).
    pub const ESME_RMISSINGTLV: CommandStatus = CommandStatus::ESME_RMISSINGOPTPARAM;
    /// SMPP 5.0 name of 0xC4 ([`CommandStatus::ESME_RINVOPTPARAMVAL`] in 3.4).
    pub const ESME_RINVTLVVAL: CommandStatus = CommandStatus::ESME_RINVOPTPARAMVAL;

    /// Whether this is `ESME_ROK`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Whether this code lies in the SMSC vendor-specific range 0x400–0x4FF.
    pub fn is_vendor_specific(self) -> bool {
        (0x400..=0x4FF).contains(&self.0)
    }
}

impl From<u32> for CommandStatus {
    fn from(value: u32) -> Self {
        CommandStatus(value)
    }
}

impl From<CommandStatus> for u32 {
    fn from(value: CommandStatus) -> Self {
        value.0
    }
}

impl fmt::Display for CommandStatus {
    /// `ESME_RTHROTTLED`, or `0x00000401` for unnamed codes; `{:#}` adds the description.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "0x{:08x}", self.0)?,
        }
        if f.alternate() {
            write!(f, " ({})", self.description())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_values() {
        let table: &[(CommandStatus, u32, &str)] = &[
            (CommandStatus::ESME_ROK, 0, "ESME_ROK"),
            (CommandStatus::ESME_RINVMSGLEN, 1, "ESME_RINVMSGLEN"),
            (CommandStatus::ESME_RSYSERR, 8, "ESME_RSYSERR"),
            (CommandStatus::ESME_RINVSRCADR, 0xA, "ESME_RINVSRCADR"),
            (CommandStatus::ESME_RINVPASWD, 0xE, "ESME_RINVPASWD"),
            (CommandStatus::ESME_RINVSYSID, 0xF, "ESME_RINVSYSID"),
            (CommandStatus::ESME_RCANCELFAIL, 0x11, "ESME_RCANCELFAIL"),
            (CommandStatus::ESME_RINVNUMDESTS, 0x33, "ESME_RINVNUMDESTS"),
            (CommandStatus::ESME_RINVDSTTON, 0x50, "ESME_RINVDSTTON"),
            (CommandStatus::ESME_RTHROTTLED, 0x58, "ESME_RTHROTTLED"),
            (CommandStatus::ESME_RX_R_APPN, 0x66, "ESME_RX_R_APPN"),
            (CommandStatus::ESME_RQUERYFAIL, 0x67, "ESME_RQUERYFAIL"),
            (CommandStatus::ESME_RINVTLVSTREAM, 0xC0, "ESME_RINVOPTPARSTREAM"),
            (CommandStatus::ESME_RINVOPTPARAMVAL, 0xC4, "ESME_RINVOPTPARAMVAL"),
            (CommandStatus::ESME_RDELIVERYFAILURE, 0xFE, "ESME_RDELIVERYFAILURE"),
            (CommandStatus::ESME_RUNKNOWNERR, 0xFF, "ESME_RUNKNOWNERR"),
            (CommandStatus::ESME_RSERTYPUNAUTH, 0x100, "ESME_RSERTYPUNAUTH"),
            (CommandStatus::ESME_RINVDCS, 0x104, "ESME_RINVDCS"),
            (CommandStatus::ESME_RINVBCASTCHANIND, 0x112, "ESME_RINVBCASTCHANIND"),
        ];
        for &(status, value, name) in table {
            assert_eq!(status.0, value);
            assert_eq!(status.name(), Some(name));
        }
    }

    #[test]
    fn every_5_0_addition_is_named() {
        for code in 0x100..=0x112u32 {
            assert!(CommandStatus(code).name().is_some(), "0x{code:x}");
        }
        assert_eq!(CommandStatus(0x113).name(), None);
    }

    #[test]
    fn unknown_codes_are_data() {
        let vendor = CommandStatus(0x401);
        assert_eq!(vendor.name(), None);
        assert!(vendor.is_vendor_specific());
        assert_eq!(vendor.description(), "SMSC vendor-specific error");
        assert_eq!(vendor.to_string(), "0x00000401");
        assert_eq!(CommandStatus(0x9).description(), "reserved error code");
    }

    #[test]
    fn display() {
        assert_eq!(CommandStatus::ESME_RTHROTTLED.to_string(), "ESME_RTHROTTLED");
        assert_eq!(format!("{:#}", CommandStatus::ESME_RINVPASWD), "ESME_RINVPASWD (Invalid password)");
        assert!(CommandStatus::ESME_ROK.is_ok());
        assert!(!CommandStatus::ESME_RSYSERR.is_ok());
    }
}
