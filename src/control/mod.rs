//! The control plane: configuration, provisioning and (later) metrics and the admin
//! API. It runs on one ordinary thread and never touches a packet.

pub mod config;
pub mod provision;
