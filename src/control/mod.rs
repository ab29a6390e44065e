//! The control plane: configuration, provisioning, metrics and the admin API. It runs on
//! ordinary threads and never touches a packet.
//!
//! * [`config`]: the TOML reader whose errors name key and line;
//! * [`metrics`]: Prometheus text exposition and the [`metrics::MetricsSource`] registry;
//! * [`admin`]: the HTTP/1.1 admin endpoint (`/metrics`, `/healthz`, `/-/reload`);
//! * [`reload`]: SIGHUP and the hot reload of a configuration snapshot;
//! * [`provision`]: the snapshot the flows read (legacy systems, routes, MSISDN map, keys);
//! * [`notify`]: systemd's `sd_notify` protocol (READY, the watchdog, STOPPING);
//! * [`check`]: `iwf check`, a file judged offline (errors as a reload's, and warnings);
//! * [`cluster`]: `[cluster]`, the NATS JetStream cluster a box joins;
//! * [`logging`]: the log (`tracing`), its level changed at run time;
//! * [`records`]: the message records the records thread writes, and `iwf trace`.

pub mod admin;
pub mod check;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod provision;
pub mod records;
pub mod reload;
