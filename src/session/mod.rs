//! Sans-IO session state machines (quinn-proto style): input and time are
//! pushed in by the caller, output is polled out; no clock, socket, thread or
//! DPDK inside, and nothing allocates on the per-packet path.
//!
//! - [`sip`]: SIP non-INVITE transactions over UDP (RFC 3261 §17.1.2,
//!   §17.2.2), the transaction layer under iwf's SIP MESSAGE (RFC 3428) and
//!   OPTIONS handling.
//! - [`smpp`]: the SMPP session over a TCP stream (SMPP 3.4 §2), as server
//!   (legacy systems bind to iwf) and as client (iwf binds to an SMSC).
//! - [`smtp`]: SMTP over a TCP stream (RFC 5321), as server (an MMS centre relays
//!   MM4 to iwf) and as client (iwf delivers MM4 to an MMS centre).

mod fifo;
pub mod sip;
pub mod smpp;
pub mod smtp;

pub(crate) use fifo::BoundedFifo;
