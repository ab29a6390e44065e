//! The identities every layer speaks of: which legacy system, which pipeline core,
//! which connection of a worker. They sit at the bottom so that codecs, sessions,
//! routes and the engine can name them without importing one another.
use std::fmt;

/// The stable 16-bit index of a legacy system from provisioning (the same
/// number the tag carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacySystemId(pub u16);

impl fmt::Display for LegacySystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "legacy system {}", self.0)
    }
}

/// The index of a pipeline core (lcore order, `0..cores`).
pub type CoreId = u16;

/// One TCP connection of a worker: the port it was accepted or opened on and its
/// socket slot in that port's stack. Both halves are kept apart, so that the
/// engine's output is addressed to a port without unpacking an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnRef {
    /// The port index (`[[port]]` order).
    pub port: u8,
    /// The socket slot in the port's TCP stack.
    pub slot: u16,
}

impl ConnRef {
    /// The connection in slot `slot` of port `port`.
    pub const fn new(port: u8, slot: u16) -> ConnRef {
        ConnRef { port, slot }
    }
}

impl fmt::Display for ConnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} connection {}", self.port, self.slot)
    }
}
