//! The configuration file's shape, as types: every section and key iwf knows, each
//! value [`Spanned`] so a reader can name its line. Serde refuses any other key
//! (`deny_unknown_fields`) and any value of the wrong type; what a value may be
//! beyond its type (ranges, names, addresses) is checked by the section's reader,
//! which turns these into the typed configuration. Every key is optional here, so a
//! missing one is reported by its reader with what it should hold.
use serde::Deserialize;
use serde_spanned::Spanned;

/// A value with its place in the file.
pub(crate) type S<T> = Option<Spanned<T>>;
/// An array of tables (`[[ports]]`), each with its place.
pub(crate) type Tables<T> = Option<Spanned<Vec<Spanned<T>>>>;
/// An array of strings, each with its place.
pub(crate) type Strings = Option<Spanned<Vec<Spanned<String>>>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    pub tag: S<Tag>,
    pub eal: S<Eal>,
    pub control: S<Control>,
    pub ports: Tables<Port>,
    pub sip: S<Sip>,
    pub tcp: S<Tcp>,
    pub smpp: S<Smpp>,
    pub legacy: Tables<Legacy>,
    pub converged: S<Converged>,
    pub routes: Tables<Route>,
    pub msisdn: S<Msisdn>,
    pub records: S<Records>,
    pub log: S<Log>,
    pub cluster: S<Cluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cluster {
    pub node: S<String>,
    pub servers: Strings,
    pub user: S<String>,
    pub password_file: S<String>,
    pub token_file: S<String>,
    pub tls_ca_file: S<String>,
    pub tls_cert_file: S<String>,
    pub tls_key_file: S<String>,
    pub replicas: S<i64>,
    pub heartbeat_s: S<i64>,
    pub receipts_stream: S<String>,
    pub binds_bucket: S<String>,
    pub correlations_bucket: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Records {
    pub path: S<String>,
    pub max_file_mb: S<i64>,
    pub files: S<i64>,
    pub addresses: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    pub level: S<String>,
    pub format: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tag {
    pub signing_key: S<i64>,
    pub max_age_minutes: S<i64>,
    pub keys: Tables<TagKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TagKey {
    pub id: S<i64>,
    pub secret: S<String>,
    pub secret_file: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Eal {
    pub lcores: S<String>,
    pub file_prefix: S<String>,
    pub hugepages: S<bool>,
    pub memory_mb: S<i64>,
    pub mbufs: S<i64>,
    pub mbuf_cache: S<i64>,
    pub log_level: S<String>,
    pub args: Strings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Control {
    pub core: S<i64>,
    pub stats_interval_ms: S<i64>,
    pub link_wait_ms: S<i64>,
    pub store: S<String>,
    pub admin: S<String>,
    pub admin_token_file: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Port {
    pub name: S<String>,
    pub device: S<String>,
    pub address: S<String>,
    pub gateway: S<String>,
    pub sip_udp_port: S<i64>,
    pub smpp_tcp_port: S<i64>,
    pub sip_tcp_port: S<i64>,
    pub smtp_tcp_port: S<i64>,
    pub rx_desc: S<i64>,
    pub tx_desc: S<i64>,
    pub require_link: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sip {
    pub next_hop: S<String>,
    pub options_interval_ms: S<i64>,
    pub server_transactions: S<i64>,
    pub server_slot_bytes: S<i64>,
    pub client_transactions: S<i64>,
    pub timer_t1_ms: S<i64>,
    pub trusted: Strings,
    pub untrusted: S<String>,
    pub max_message_bytes: S<i64>,
    pub stream_memory_mb: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tcp {
    pub sockets: S<i64>,
    pub rx_buffer: S<i64>,
    pub tx_buffer: S<i64>,
    pub max_connections_per_peer: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Smpp {
    pub specific_bind_errors: S<bool>,
    pub bind_failures: S<i64>,
    pub bind_failure_window_s: S<i64>,
    pub bind_backoff_s: S<i64>,
    pub max_unbound: S<i64>,
    pub parts_aside: S<i64>,
    pub reassembly_messages: S<i64>,
    pub reassembly_bytes: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Legacy {
    pub id: S<i64>,
    pub name: S<String>,
    pub kind: S<String>,
    pub domain: S<String>,
    pub smtp_next_hop: S<String>,
    pub max_message_size: S<i64>,
    pub mm4_version: S<String>,
    pub system_id: S<String>,
    pub password: S<String>,
    pub allow: Strings,
    pub window: S<i64>,
    pub connect: S<String>,
    pub reconnect_initial_ms: S<i64>,
    pub reconnect_max_ms: S<i64>,
    pub user_ack: S<bool>,
    pub default_data_coding: S<String>,
    pub id_canonicalisation: S<String>,
    pub country_code: S<String>,
    pub lane_capacity: S<i64>,
    pub throughput: S<i64>,
    pub receipt_rate: S<i64>,
    pub queue_limit: S<i64>,
    pub alphanumeric_senders: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Converged {
    pub legacy_domain: S<String>,
    pub converged_domain: S<String>,
    pub message_validity_s: S<i64>,
    pub replay_window_s: S<i64>,
    pub replay_capacity: S<i64>,
    pub correlation_capacity: S<i64>,
    pub waiter_capacity: S<i64>,
    pub parked_capacity: S<i64>,
    pub sms_max_parts: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Route {
    pub prefix: S<String>,
    pub system: S<String>,
    pub content_type: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Msisdn {
    pub template: S<String>,
    pub entries: Tables<MsisdnEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MsisdnEntry {
    pub number: S<String>,
    pub uri: S<String>,
}
