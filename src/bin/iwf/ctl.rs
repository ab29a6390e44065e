//! `iwf ctl`: the operator's questions to a running iwf, over its admin endpoint with
//! the admin token (`GET /v1/systems`, `/v1/queues`, `/v1/config`; `POST /-/reload`),
//! answered as tables or, with `--json`, as the endpoint's JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What `iwf ctl` asks.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Ctl {
    /// The legacy systems: kind, role, state, binds, receipts waiting, counters.
    Systems,
    /// Receipts waiting per system: in its lane (for a bind's window) and in the
    /// durable store (while it has no bind), with their limits.
    Queues,
    /// The running configuration: file, generation, reloads.
    Config,
    /// Reload the configuration file (as SIGHUP): the summary, or the error with its
    /// line and key (the running configuration stays).
    Reload,
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
    let (method, path) = match what {
        Ctl::Systems => ("GET", "/v1/systems"),
        Ctl::Queues => ("GET", "/v1/queues"),
        Ctl::Config => ("GET", "/v1/config"),
        Ctl::Reload => ("POST", "/-/reload"),
    };
    let (status, body) = exchange(admin, method, path, token)?;
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
                ("binds", "binds"),
            ],
        ),
        Ctl::Config | Ctl::Reload => match v.as_object() {
            Some(m) => m.iter().map(|(k, v)| format!("{k}: {}", cell(v))).collect::<Vec<_>>().join("\n"),
            None => v.to_string(),
        },
    })
}

/// A JSON value as a table cell (strings without their quotes).
fn cell(v: &serde_json::Value) -> String {
    match v {
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
