//! `iwf ctl`: the operator's questions to a running iwf, over its admin endpoint with
//! the admin token (`GET /v1/systems`, `/v1/queues`, `/v1/config`; `POST /-/reload`),
//! answered as tables or, with `--json`, as the endpoint's JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What `iwf ctl` asks.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Ctl {
    /// The legacy systems: kind, role, state, binds, receipts waiting, counters.
    Systems,
    /// Every SMPP bind: system, peer, bind type, since when, the window in use.
    Binds,
    /// The cluster as this box sees it: its node, its NATS connection, and which
    /// boxes hold binds of which legacy system (the bind registry).
    Cluster,
    /// Receipts waiting per system: in its lane (for a bind's window) and in the
    /// durable store (while it has no bind), with their limits.
    Queues,
    /// The running configuration: file, generation, reloads.
    Config,
    /// Reload the configuration file (as SIGHUP): the summary, or the error with its
    /// line and key (the running configuration stays).
    Reload,
    /// The log level: shown, or changed to LEVEL (off, error, warn, info, debug, trace)
    /// at once, without a restart.
    LogLevel {
        /// The new level.
        level: Option<String>,
    },
    /// Take a legacy system out of service: its binds are unbound and refused (iwf's
    /// own bind to it is not made) and its receipts wait in the durable store.
    Disable {
        /// The system's name ([[legacy]] name).
        system: String,
    },
    /// Put a disabled system back in service: it may bind again, and receives what
    /// waited for it.
    Enable {
        /// The system's name.
        system: String,
    },
    /// Drop every receipt the durable store holds for a system (one that will not
    /// come back for them): the count dropped.
    Expire {
        /// The system's name.
        system: String,
    },
}

/// One HTTP/1.1 exchange with the admin endpoint: the status and the body.
fn exchange(admin: &str, method: &str, path: &str, token: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(admin).map_err(|e| format!("admin endpoint {admin}: {e} (is iwf running?)"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| format!("admin endpoint {admin}: {e}"))?;
    let status =
        text.get(9..12).and_then(|c| c.parse().ok()).ok_or_else(|| format!("admin endpoint {admin}: not HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

/// Runs `what` against `admin`; the text to print.
pub fn run(admin: &str, token_file: &str, json: bool, what: Ctl) -> Result<String, String> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("{token_file}: {e} (the admin token: --token-file, [control] admin_token_file)"))?;
    let token = token.trim();
    let (method, path) = match &what {
        Ctl::Systems => ("GET", "/v1/systems".to_string()),
        Ctl::Binds => ("GET", "/v1/binds".to_string()),
        Ctl::Cluster => ("GET", "/v1/cluster".to_string()),
        Ctl::Disable { system } => ("POST", format!("/v1/disable/{system}")),
        Ctl::Enable { system } => ("POST", format!("/v1/enable/{system}")),
        Ctl::Expire { system } => ("POST", format!("/v1/expire/{system}")),
        Ctl::Queues => ("GET", "/v1/queues".to_string()),
        Ctl::Config => ("GET", "/v1/config".to_string()),
        Ctl::Reload => ("POST", "/-/reload".to_string()),
        Ctl::LogLevel { level: None } => ("GET", "/v1/log-level".to_string()),
        Ctl::LogLevel { level: Some(l) } => ("POST", format!("/v1/log-level?level={}", l.trim())),
    };
    let (status, body) = exchange(admin, method, &path, token)?;
    if status != 200 {
        return Err(format!("{method} {path}: {status} {}", body.trim()));
    }
    if json || matches!(what, Ctl::Reload) {
        return Ok(body.trim_end().to_string());
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON: {e}"))?;
    Ok(match what {
        Ctl::Systems => table(
            &v,
            &[
                ("system", "system"),
                ("id", "id"),
                ("kind", "kind"),
                ("role", "role"),
                ("state", "state"),
                ("binds", "binds"),
                ("lane", "lane_queued"),
                ("stored", "stored"),
                ("msgs in", "counters.messages_in"),
                ("msgs out", "counters.messages_out"),
                ("receipts", "counters.receipts_delivered"),
                ("smsc receipts", "counters.smsc_receipts"),
            ],
        ),
        Ctl::Queues => table(
            &v,
            &[
                ("system", "system"),
                ("lane", "lane_queued"),
                ("lane capacity", "lane_capacity"),
                ("stored", "stored"),
                ("queue limit", "queue_limit"),
                ("oldest stored", "oldest_stored"),
                ("age (s)", "oldest_stored_age_s"),
                ("binds", "binds"),
                ("disabled", "disabled"),
            ],
        ),
        Ctl::Binds => table(
            &v,
            &[
                ("system", "system"),
                ("peer", "peer"),
                ("bind type", "bind_type"),
                ("since", "since"),
                ("up (s)", "up_s"),
                ("in flight", "in_flight"),
                ("window", "window"),
                ("worker", "worker"),
            ],
        ),
        Ctl::Cluster => {
            let head = format!("node: {}\nconnected: {}\n", cell(&v["node"]), cell(&v["connected"]));
            head + &table(&v["holders"], &[("system", "system"), ("node", "node"), ("binds", "binds")])
        }
        Ctl::Config
        | Ctl::Reload
        | Ctl::LogLevel { .. }
        | Ctl::Disable { .. }
        | Ctl::Enable { .. }
        | Ctl::Expire { .. } => match v.as_object() {
            Some(m) => m.iter().map(|(k, v)| format!("{k}: {}", cell(v))).collect::<Vec<_>>().join("\n"),
            None => v.to_string(),
        },
    })
}

/// `iwf trace`: the records about `query`, as a table or JSON lines.
pub fn trace(query: &str, config: &str, records: Option<&str>, json: bool) -> Result<String, String> {
    use iwf::control::records::{self, RecordsConfig};
    let (path, files) = match records {
        Some(p) => (std::path::PathBuf::from(p), RecordsConfig::default().files),
        None => {
            let text = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?;
            let c = iwf::control::config::load(&text).map_err(|e| format!("{config}: {e}"))?;
            let r = c.control.records;
            let path = r.path.ok_or_else(|| format!("{config}: no [records] path: iwf keeps no message records"))?;
            (path, r.files)
        }
    };
    // Rotated files a smaller `files` setting left behind are read too.
    let files = RecordsConfig::files_oldest_first(&path, files.max(RecordsConfig::default().files));
    let found = records::trace(&files, query).map_err(|e| format!("{}: {e}", path.display()))?;
    if found.is_empty() {
        return Err(format!("no record names `{query}` in {} (or its rotated files)", path.display()));
    }
    if json {
        let lines: Vec<String> = found.iter().filter_map(|r| serde_json::to_string(r).ok()).collect();
        return Ok(lines.join("\n"));
    }
    let rows: Vec<serde_json::Value> = found
        .iter()
        .map(|r| {
            let status = match (r.sip_status, r.command_status.as_str()) {
                (Some(s), _) => s.to_string(),
                (None, "") => String::new(),
                (None, cs) => cs.to_string(),
            };
            let id = if r.tag.is_empty() { &r.message_id } else { &r.tag };
            serde_json::json!({
                "time": r.time, "event": r.event, "system": r.system, "id": id, "smsc_id": r.smsc_id,
                "from": r.from, "to": r.to, "state": r.state, "status": status, "outcome": r.outcome,
            })
        })
        .collect();
    let columns = [
        ("time", "time"),
        ("event", "event"),
        ("system", "system"),
        ("tag / message id", "id"),
        ("smsc id", "smsc_id"),
        ("from", "from"),
        ("to", "to"),
        ("state", "state"),
        ("status", "status"),
        ("outcome", "outcome"),
    ];
    Ok(table(&serde_json::Value::Array(rows), &columns))
}

/// A JSON value as a table cell (strings without their quotes).
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.is_empty() => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// Rows of `v` (an array of objects) under `columns` (heading, dotted path), aligned.
fn table(v: &serde_json::Value, columns: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|row| columns.iter().map(|(_, path)| cell(path.split('.').fold(row, |v, k| &v[k]))).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut out = vec![line(columns.iter().map(|(h, _)| *h).collect())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_reach_into_objects() {
        let v = serde_json::json!([
            { "system": "smsc-a", "binds": 2, "counters": { "messages_in": 10 } },
            { "system": "mmsc-m", "binds": 0, "counters": {} },
        ]);
        let t = table(&v, &[("system", "system"), ("binds", "binds"), ("in", "counters.messages_in")]);
        assert_eq!(t, "system  binds  in\nsmsc-a  2      10\nmmsc-m  0      -");
    }
}
