//! The exchange unit's conversions between the legacy (SMPP) and converged (SIP, CPIM,
//! IMDN) worlds: pure functions over the codecs in [`crate::wire`] and the tag.
#![deny(unsafe_code)]

pub mod address;
pub mod state;
