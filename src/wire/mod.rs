//! Sans-IO, zero-copy wire codecs. Results borrow from the input; nothing here
//! allocates on the parse path, does I/O, reads a clock or panics on bad input.
//! The one exception to the allocation rule is [`mm4`]: an MMS is one message of up
//! to a megabyte whose parts are handed on as owned buffers.

mod bytes;
pub mod cpim;
pub mod imdn;
pub mod mm4;
pub mod sip;
pub mod smpp;
pub mod sms;
pub mod smtp;
