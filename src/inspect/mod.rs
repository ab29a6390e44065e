//! `iwf inspect`: the operator's dissector. Each function takes raw input and returns
//! a JSON value describing it, or a one-line error.

pub mod mm4;
pub mod receipt;
pub mod sip;
pub mod smpp;
pub mod tag;
