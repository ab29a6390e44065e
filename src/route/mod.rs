//! Exchange selection: where a piece of work for a legacy system goes.
//!
//! - [`lane`]: one bounded queue per legacy system into the core that owns a
//!   live bind of that system, and the lock-free lane table the pipelines
//!   read ([`Lanes`], [`LaneTable`], [`Lane`], [`LaneItem`]).
//! - [`select`]: converged → legacy routes by longest number prefix and content
//!   type, and the MSISDN → converged URI map, published as one snapshot.
//! - [`correlation`]: the converged → legacy correlation table (entries written
//!   before the submit_sm goes out, receipts parked when they beat their resp,
//!   parts aggregated into one IMDN), compact enough for millions of entries.
//! - [`store`]: the durable store (redb) of correlation entries and of receipts
//!   queued for legacy systems without a bind.
//! - [`replay`]: the notifications already relayed (each at most once a window).
//!
//! Everything here is std only, sans-IO and without `unsafe`: the pipelines
//! call it from the packet path, the control plane publishes new tables.
#![deny(unsafe_code)]

pub mod correlation;
pub mod lane;
pub mod replay;
pub mod select;
pub mod store;

pub use correlation::{CorrelationConfig, CorrelationTable, MessageRef, NewMessage};
pub use select::{MsisdnMap, RouteSpec, RoutingTable, SelectError, Selection};
pub use store::{Batch, Store, StoreError};

pub use lane::{
    CoreId, Lane, LaneCounters, LaneError, LaneItem, LaneItemError, LaneTable, Lanes, PushError, LANE_ITEM_MAX,
};
