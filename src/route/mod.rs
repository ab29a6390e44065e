//! Exchange selection: where a piece of work for a legacy system goes.
//!
//! - [`lane`]: one bounded queue per legacy system into the core that owns a
//!   live bind of that system, and the lock-free lane table the pipelines
//!   read ([`Lanes`], [`LaneTable`], [`Lane`], [`LaneItem`]).
//!
//! Everything here is std only, sans-IO and without `unsafe`: the pipelines
//! call it from the packet path, the control plane publishes new tables.
#![deny(unsafe_code)]

pub mod lane;

pub use lane::{
    CoreId, Lane, LaneCounters, LaneError, LaneItem, LaneItemError, LaneTable, Lanes, PushError,
    LANE_ITEM_MAX,
};
