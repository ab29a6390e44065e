//! Sans-IO, zero-copy wire codecs. Results borrow from the input; nothing here
//! allocates on the parse path, does I/O, reads a clock or panics on bad input.

mod bytes;
pub mod cpim;
pub mod imdn;
pub mod sip;
pub mod smpp;
pub mod sms;
