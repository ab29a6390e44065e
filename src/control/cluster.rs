//! `[cluster]`: how this box joins the others of an iwf service on NATS JetStream (the
//! bind registry, the receipts of systems bound elsewhere, the shared correlations).
//! Without the section iwf is one box, its durable state in its own store.
//!
//! ```toml
//! [cluster]
//! node = "iwf-1"                               # unique per box
//! servers = ["nats://10.0.0.11:4222", "nats://10.0.0.12:4222", "nats://10.0.0.13:4222"]
//! user = "iwf"                                 # optional: the servers' user, with
//! password_file = "/etc/iwf/nats.password"     #   its password in a file (mode 0600);
//! # token_file = "/etc/iwf/nats.token"         #   or a token instead
//! tls_ca_file = "/etc/iwf/nats-ca.pem"         # optional: TLS to the servers, this CA
//! tls_cert_file = "/etc/iwf/nats-client.pem"   # optional client certificate (with its key)
//! tls_key_file = "/etc/iwf/nats-client.key"
//! replicas = 3                                 # of every stream and bucket (1 to 5)
//! heartbeat_s = 2                              # the bind registry's refresh (entries live 3x, 30 s at least)
//! receipts_stream = "IWF_RECEIPTS"
//! binds_bucket = "iwf_binds"
//! correlations_bucket = "iwf_correlations"
//! ```
use crate::control::config::file::File;
use crate::control::config::{ConfigError, Doc};
use serde_spanned::Spanned;

/// `[cluster]`, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This box's name (`[A-Za-z0-9_-]`, unique in the cluster).
    pub node: String,
    /// The NATS servers (`nats://` or `tls://`, host and port).
    pub servers: Vec<String>,
    /// How this box authenticates to the servers, if they want it.
    pub auth: ClusterAuth,
    /// The CA that signs the servers' certificates: with it, TLS.
    pub tls_ca_file: Option<String>,
    /// A client certificate and its key, for servers that verify clients.
    pub tls_client: Option<(String, String)>,
    /// Replicas of every stream and bucket.
    pub replicas: u8,
    /// Seconds between the bind registry's refreshes; an entry lives [`Self::entry_life`].
    pub heartbeat_s: u64,
    /// The work-queue stream of receipts for systems bound elsewhere.
    pub receipts_stream: String,
    /// The KV bucket of the bind registry.
    pub binds_bucket: String,
    /// The KV bucket of converged → legacy correlations.
    pub correlations_bucket: String,
}

/// How a box authenticates to the NATS servers (the secrets stay in files of their
/// own, never in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAuth {
    /// Nothing.
    None,
    /// A user and the file holding its password.
    User {
        /// The user.
        user: String,
        /// The password's file.
        password_file: String,
    },
    /// The file holding a token.
    Token {
        /// The token's file.
        token_file: String,
    },
}

/// A NATS stream, bucket or node name: letters, digits, `_` and `-` (subjects and
/// API names take nothing else safely).
fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A server URL: `nats://` or `tls://`, a host, a port.
fn server_ok(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("nats://")
        .or_else(|| s.strip_prefix("tls://"))
        .ok_or_else(|| format!("`{s}`: a server is nats://HOST:PORT or tls://HOST:PORT"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("`{s}`: no port (nats://HOST:4222)"))?;
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("`{s}`: no host (nats://HOST:4222; a user goes in user and password_file)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{s}`: `{port}` is not a port")),
    }
}

impl ClusterConfig {
    /// How long a bind registry entry lives unrefreshed: three heartbeats, and at least
    /// 30 s, so that it outlives a JetStream leader election (10 to 15 s on
    /// nats-server 2.9), during which no box can refresh its entries.
    pub fn entry_life(&self) -> std::time::Duration {
        std::time::Duration::from_secs((3 * self.heartbeat_s).max(30))
    }

    /// `[cluster]` of a file read; `None` without the section.
    pub(crate) fn load(doc: &Doc<'_>, file: &File) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(c) = &file.cluster else { return Ok(None) };
        let (c, within) = (c.get_ref(), c.span());
        let node =
            doc.need("cluster.node", &c.node, within.clone(), "this box's name in the cluster, e.g. \"iwf-1\"")?;
        let node = named(doc, "cluster.node", node)?;
        let list =
            doc.need("cluster.servers", &c.servers, within, "the NATS servers, e.g. [\"nats://10.0.0.11:4222\"]")?;
        if list.get_ref().is_empty() {
            return doc.err("cluster.servers", list.span(), "an empty list: name at least one NATS server");
        }
        let mut servers = Vec::new();
        for (i, s) in list.get_ref().iter().enumerate() {
            if let Err(m) = server_ok(s.get_ref()) {
                return doc.err(&format!("cluster.servers[{i}]"), s.span(), m);
            }
            servers.push(s.get_ref().clone());
        }
        let path = |key: &str, v: &Option<Spanned<String>>| -> Result<Option<String>, ConfigError> {
            match v {
                Some(p) if p.get_ref().is_empty() => doc.err(key, p.span(), "an empty path: leave the key out"),
                Some(p) => Ok(Some(p.get_ref().clone())),
                None => Ok(None),
            }
        };
        let auth = match (
            &c.user,
            path("cluster.password_file", &c.password_file)?,
            path("cluster.token_file", &c.token_file)?,
        ) {
            (None, None, None) => ClusterAuth::None,
            (Some(u), Some(password_file), None) => ClusterAuth::User { user: u.get_ref().clone(), password_file },
            (None, None, Some(token_file)) => ClusterAuth::Token { token_file },
            (Some(u), None, _) => return doc.err("cluster.user", u.span(), "a user needs its password_file"),
            (_, _, Some(_)) => {
                let at = c.token_file.as_ref().map_or(0..0, Spanned::span);
                return doc.err("cluster.token_file", at, "a token or a user with a password, not both");
            }
            (None, Some(_), None) => {
                let at = c.password_file.as_ref().map_or(0..0, Spanned::span);
                return doc.err("cluster.password_file", at, "a password_file needs its user");
            }
        };
        let tls_ca_file = path("cluster.tls_ca_file", &c.tls_ca_file)?;
        let cert = path("cluster.tls_cert_file", &c.tls_cert_file)?;
        let key = path("cluster.tls_key_file", &c.tls_key_file)?;
        let tls_client = match (cert, key, &c.tls_cert_file, &c.tls_key_file) {
            (Some(c), Some(k), _, _) => Some((c, k)),
            (None, None, _, _) => None,
            (Some(_), None, Some(v), _) | (None, Some(_), _, Some(v)) => {
                return doc.err("cluster.tls_cert_file", v.span(), "a client certificate needs its key, and a key its certificate: set both tls_cert_file and tls_key_file")
            }
            _ => None,
        };
        let replicas = doc.integer_or("cluster.replicas", &c.replicas, 1, 5, 3)? as u8;
        let heartbeat_s = doc.integer_or("cluster.heartbeat_s", &c.heartbeat_s, 1, 60, 2)? as u64;
        let name_or = |key: &str, v: &Option<Spanned<String>>, default: &str| match v {
            Some(v) => named(doc, key, v),
            None => Ok(default.to_string()),
        };
        Ok(Some(ClusterConfig {
            node,
            servers,
            auth,
            tls_ca_file,
            tls_client,
            replicas,
            heartbeat_s,
            receipts_stream: name_or("cluster.receipts_stream", &c.receipts_stream, "IWF_RECEIPTS")?,
            binds_bucket: name_or("cluster.binds_bucket", &c.binds_bucket, "iwf_binds")?,
            correlations_bucket: name_or("cluster.correlations_bucket", &c.correlations_bucket, "iwf_correlations")?,
        }))
    }
}

fn named(doc: &Doc<'_>, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    if name_ok(v.get_ref()) {
        Ok(v.get_ref().clone())
    } else {
        doc.err(key, v.span(), format!("`{}`: letters, digits, `_` and `-` only (at most 64)", v.get_ref()))
    }
}

#[cfg(test)]
mod tests {
    use crate::control::config;

    const BASE: &str = include_str!("../../config/lab.toml");

    fn with(cluster: &str) -> Result<config::DataplaneConfig, config::ConfigError> {
        config::load(&format!("{BASE}\n[cluster]\n{cluster}\n"))
    }

    #[test]
    fn a_cluster_section_is_read_with_its_defaults() {
        assert_eq!(config::load(BASE).unwrap().control.cluster, None, "no section: one box");
        let c = with("node = \"iwf-1\"\nservers = [\"nats://10.0.0.11:4222\", \"tls://nats-2:4443\"]")
            .unwrap()
            .control
            .cluster
            .unwrap();
        assert_eq!((c.node.as_str(), c.servers.len(), c.replicas, c.heartbeat_s), ("iwf-1", 2, 3, 2));
        assert_eq!((c.receipts_stream.as_str(), c.binds_bucket.as_str()), ("IWF_RECEIPTS", "iwf_binds"));
        assert_eq!(c.tls_client, None);
    }

    #[test]
    fn cluster_errors_name_key_and_line() {
        let line = BASE.lines().count() + 2; // the [cluster] header
        let cases = [
            ("servers = [\"nats://a:4222\"]", "cluster.node", "missing"),
            ("node = \"iwf 1\"\nservers = [\"nats://a:4222\"]", "cluster.node", "letters, digits"),
            ("node = \"n\"\nservers = []", "cluster.servers", "empty list"),
            ("node = \"n\"\nservers = [\"a:4222\"]", "cluster.servers[0]", "nats://HOST:PORT"),
            ("node = \"n\"\nservers = [\"nats://a\"]", "cluster.servers[0]", "no port"),
            ("node = \"n\"\nservers = [\"nats://u:p@a:4222\"]", "cluster.servers[0]", "password_file"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\nuser = \"iwf\"", "cluster.user", "password_file"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\nuser = \"iwf\"\npassword_file = \"p\"\ntoken_file = \"t\"", "cluster.token_file", "not both"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\nreplicas = 7", "cluster.replicas", "1 to 5"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\ntls_cert_file = \"c.pem\"", "cluster.tls_cert_file", "its key"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\nbinds_bucket = \"a.b\"", "cluster.binds_bucket", "letters"),
            ("node = \"n\"\nservers = [\"nats://a:4222\"]\nleader = true", "cluster.leader", "unknown"),
        ];
        for (text, key, says) in cases {
            let e = with(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
            assert!(e.line >= line, "{text}: line {} is in the section: {e}", e.line);
        }
        // A cluster box keeps its own store (for what it hands the cluster back).
        let no_store: String = BASE.lines().filter(|l| !l.starts_with("store =")).collect::<Vec<_>>().join("\n");
        let e = config::load(&format!("{no_store}\n[cluster]\nnode = \"n\"\nservers = [\"nats://a:4222\"]\n"))
            .expect_err("a cluster box without a store");
        assert_eq!((e.key.as_str(), e.line), ("control.store", no_store.lines().count() + 1), "{e}");
        assert!(e.message.contains("its own store"), "{e}");
    }
}
