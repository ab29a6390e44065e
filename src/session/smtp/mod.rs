//! SMTP sessions (RFC 5321), sans-IO: the [`server`] an MMS centre relays MM4 to,
//! and the [`client`] iwf delivers MM4 to an MMS centre with. Framing lives here
//! (CRLF lines, the message's dot-stuffing); commands and replies are read by
//! [`crate::wire::smtp`].

pub mod client;
pub mod server;
