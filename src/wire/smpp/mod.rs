//! SMPP 3.4 / 5.0 codec: framing, header, PDUs, TLVs, command status codes and the
//! delivery-receipt text.
//!
//! Everything here is sans-IO and zero-copy: parsed representations borrow from the input
//! bytes, emit writes into a caller-supplied `&mut [u8]` and returns the length written,
//! and nothing on the parse or emit path allocates or panics.
//!
//! - [`header`]: the 16-byte PDU header as a [`Packet`] view, [`CommandId`] and the
//!   stream reassembly helper [`frame`];
//! - [`status`]: [`CommandStatus`] with every SMPP 3.4 and 5.0 error code;
//! - [`tlv`]: optional parameters ([`Tlv`], [`Tlvs`], [`TlvWriter`], [`MessageState`]);
//! - [`flags`]: [`RegisteredDelivery`] and [`EsmClass`];
//! - [`pdu`]: the PDUs iwf uses as borrowed representations ([`Pdu`], [`Body`]);
//! - [`receipt`]: the delivery-receipt text of SMPP 3.4 Appendix B ([`Receipt`]).
//!
//! Typical use on a TCP stream:
//!
//! ```
//! use iwf::wire::smpp::{frame, Pdu, Body, KANNEL_MAX_PDU_LEN};
//! let stream = [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7]; // enquire_link
//! let len = frame(&stream, KANNEL_MAX_PDU_LEN).unwrap().unwrap();
//! let pdu = Pdu::parse(&stream[..len]).unwrap();
//! assert_eq!(pdu.body, Body::EnquireLink);
//! assert_eq!(pdu.sequence_number, 7);
//! ```

/// Defines a `Copy` enum over an integer type whose unassigned values are kept as data
/// in a fallback variant (smoltcp's `enum_with_unknown!`).
macro_rules! enum_with_unknown {
    (
        $(#[$enum_meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
        $(#[$fallback_meta:meta])*
        fallback $fallback:ident
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
            $(#[$fallback_meta])*
            $fallback($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::$fallback(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::$fallback(other) => other,
                }
            }
        }
    };
}

pub mod error;
pub mod flags;
pub mod header;
pub mod pdu;
pub mod receipt;
pub mod status;
pub mod tlv;

pub use error::{EmitError, Field, ParseError, TlvError, TlvTag};
pub use flags::{EsmClass, MessageType, MessagingMode, RegisteredDelivery, SmeAck, SmscReceipt};
pub use header::{frame, CommandId, FrameError, Packet, HEADER_LEN, KANNEL_MAX_PDU_LEN, SMPP_MAX_PDU_LEN};
pub use pdu::{
    Address, AlertNotification, Bind, BindResp, Body, DataSm, DeliverSm, MessageIdResp, Outbind, Pdu, SubmitSm,
    INTERFACE_VERSION_34, INTERFACE_VERSION_50,
};
pub use receipt::{Receipt, ReceiptDate, ReceiptError, ReceiptField, ReceiptStat};
pub use status::CommandStatus;
pub use tlv::{MessageState, NetworkErrorCode, Tlv, TlvIter, TlvWriter, Tlvs};
