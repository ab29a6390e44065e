//! `iwf check`: a configuration file judged offline, as the appliance would judge it.
//!
//! First the same parse a start and a reload make (the packet path's sections and the
//! provisioning snapshot), so an error reads exactly as a refused reload's does: line,
//! key, what was expected. A file that loads is then searched for settings that load
//! but hurt in service, each a [`Warning`] with its line and key:
//!
//! * a server-role SMS centre (one that binds to iwf) while no `[[ports]]` has
//!   `smpp_tcp_port`, or one whose `allow` list is empty: it can never bind (an MMS
//!   centre without an `smtp_tcp_port` is an error already);
//! * an `allow` network wider than /16 (`0.0.0.0/0` admits the whole Internet to the
//!   bind's password);
//! * a tag key written into the file (`secret =`) instead of a `secret_file`, and a key
//!   or admin token file that others than its owner may read.
//!
//! Weak keys need no warning: the parse refuses them.

use super::config::{self, ConfigError, LegacyConfig};
use crate::route::select::ExchangeKind;
use std::fmt;

/// A setting that loads but should not go into service as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the setting (0 when it is an absence, such as a missing port).
    pub line: usize,
    /// Dotted path of the key, as errors name it (`legacy[2].allow`).
    pub key: String,
    /// What is dangerous and what to do instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: `{}`: {}", self.line, self.key, self.message)
    }
}

/// Allow-list networks shorter than this many prefix bits are called too wide.
const WIDEST_ALLOW: u8 = 16;

/// Parses `text` as a start would; on success, the warnings about it.
pub fn check(text: &str) -> Result<Vec<Warning>, ConfigError> {
    let cfg = config::load(text)?;
    super::provision::Provision::parse(text)?;
    let mut warnings = Vec::new();
    let smpp_served = cfg.ports.iter().any(|p| p.smpp_tcp_port.is_some());
    for (i, l) in cfg.legacy.iter().enumerate() {
        // An MMS centre always relays in; an SMS centre does unless iwf binds to it.
        let sms = l.exchange != ExchangeKind::Mms;
        if sms && l.connect.is_none() && !smpp_served {
            warnings.push(Warning {
                line: legacy_line(text, i, "name"),
                key: format!("legacy[{i}].name"),
                message: format!(
                    "`{}` connects in, but no [[ports]] entry has `smpp_tcp_port`: it can never bind",
                    l.name
                ),
            });
        }
        if !sms || l.connect.is_none() {
            allow_warnings(text, i, l, &mut warnings);
        }
    }
    key_warnings(text, &mut warnings);
    let mut secrets = Vec::new();
    if let Some(path) = &cfg.control.admin_token_file {
        secrets.push(("control.admin_token_file", "admin_token_file", path.as_str()));
    }
    if let Some(c) = &cfg.control.cluster {
        match &c.auth {
            crate::control::cluster::ClusterAuth::User { password_file, .. } => {
                secrets.push(("cluster.password_file", "password_file", password_file.as_str()))
            }
            crate::control::cluster::ClusterAuth::Token { token_file } => {
                secrets.push(("cluster.token_file", "token_file", token_file.as_str()))
            }
            crate::control::cluster::ClusterAuth::None => {}
        }
    }
    for (key, name, path) in secrets {
        if let Some(w) = readable_by_others(path) {
            warnings.push(Warning { line: key_line(text, name), key: key.into(), message: w });
        }
    }
    Ok(warnings)
}

/// An empty or too wide `allow` of server-role system `i`.
fn allow_warnings(text: &str, i: usize, l: &LegacyConfig, out: &mut Vec<Warning>) {
    let key = format!("legacy[{i}].allow");
    let line = legacy_line(text, i, "allow");
    if l.allow.is_empty() {
        out.push(Warning {
            line,
            key,
            message: format!("`{}` allows no address: every connection from it is refused", l.name),
        });
        return;
    }
    for (net, len) in &l.allow {
        if *len < WIDEST_ALLOW {
            out.push(Warning {
                line,
                key: key.clone(),
                message: format!(
                    "{net}/{len} is an open allow-list ({} addresses may try `{}`'s password): name the \
                     system's own hosts or networks",
                    1u64 << (32 - u32::from(*len)),
                    l.name
                ),
            });
        }
    }
}

/// Tag keys given inline, and key files others may read.
fn key_warnings(text: &str, out: &mut Vec<Warning>) {
    // The `[[tag.keys]]` tables seen so far, and whether the line is in one.
    let (mut tables, mut in_keys) = (0usize, false);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_keys = t.starts_with("[[tag.keys]]");
            tables += usize::from(in_keys);
            continue;
        }
        // 0-based, as errors name it.
        let Some(n) = tables.checked_sub(1).filter(|_| in_keys) else { continue };
        let Some((k, v)) = t.split_once('=') else { continue };
        match k.trim() {
            "secret" => out.push(Warning {
                line: i + 1,
                key: format!("tag.keys[{n}].secret"),
                message: "the tag key is written into the configuration file (which backups, tickets and \
                          version control copy): keep it in a file of mode 0600 named by `secret_file`"
                    .into(),
            }),
            "secret_file" => {
                let path = v.split('#').next().unwrap_or("").trim().trim_matches('"');
                if let Some(w) = readable_by_others(path) {
                    out.push(Warning { line: i + 1, key: format!("tag.keys[{n}].secret_file"), message: w });
                }
            }
            _ => {}
        }
    }
}

/// Why a secret file is exposed, if it is: readable or writable by group or others.
fn readable_by_others(path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0)
        .then(|| format!("{path} has mode {mode:04o}: others than its owner may read it (chmod 600 {path})"))
}

/// The line of key `k` inside the `i`-th `[[legacy]]` table (0-based), else the table's
/// own line, else 0.
fn legacy_line(text: &str, i: usize, k: &str) -> usize {
    let mut table = None;
    let mut seen = 0;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            if table.is_some() {
                break;
            }
            if t.starts_with("[[legacy]]") {
                if seen == i {
                    table = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if table.is_some() && t.split_once('=').is_some_and(|(key, _)| key.trim() == k) {
            return n + 1;
        }
    }
    table.unwrap_or(0)
}

/// The first line that sets key `k` (in any table), else 0.
fn key_line(text: &str, k: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().split_once('=').is_some_and(|(key, _)| key.trim() == k))
        .map_or(0, |n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = include_str!("../../config/lab.toml");

    fn keys(ws: &[Warning]) -> Vec<&str> {
        ws.iter().map(|w| w.key.as_str()).collect()
    }

    #[test]
    fn the_lab_file_has_only_its_inline_keys_to_say() {
        let ws = check(LAB).expect("loads");
        assert_eq!(keys(&ws), ["tag.keys[0].secret", "tag.keys[1].secret"], "{ws:?}");
        assert_eq!(ws[0].line, LAB.lines().position(|l| l.starts_with("secret =")).unwrap() + 1);
    }

    #[test]
    fn errors_are_the_reloads_errors() {
        let e = check(&LAB.replacen("signing_key = 1", "signing_key = 9", 1)).unwrap_err();
        assert_eq!(e.key, "tag.signing_key", "{e}");
        let e = check(&LAB.replacen("password = \"pwa\"", "password = 7", 1)).unwrap_err();
        assert!(e.key.starts_with("legacy[0]"), "{e}");
    }

    #[test]
    fn a_system_no_port_serves_and_open_allow_lists_are_named() {
        let without: String =
            LAB.lines().filter(|l| !l.starts_with("smpp_tcp_port")).map(|l| format!("{l}\n")).collect();
        let text = without.replacen("198.18.1.1/32", "0.0.0.0/0", 1);
        let ws = check(&text).expect("loads");
        let k = keys(&ws);
        assert!(k.contains(&"legacy[0].name") && k.contains(&"legacy[1].name"), "{ws:?}");
        assert!(!k.contains(&"legacy[2].name"), "smsc-c is bound to by iwf: {ws:?}");
        let w = ws.iter().find(|w| w.key == "legacy[0].name").unwrap();
        assert!(w.message.contains("`smsc-a` connects in") && w.message.contains("never bind"), "{w}");
        assert_eq!(w.line, text.lines().position(|l| l == "name = \"smsc-a\"").unwrap() + 1);
        let w = ws.iter().find(|w| w.key == "legacy[0].allow").expect("the open allow-list");
        assert!(w.message.contains("0.0.0.0/0 is an open allow-list"), "{w}");
        // The MMS centre's allow-list is judged too.
        let open = LAB.replace("allow = [\"198.18.1.1/32\"]", "allow = [\"198.0.0.0/8\"]");
        let ws = check(&open).expect("loads");
        assert!(keys(&ws).contains(&"legacy[3].allow"), "mmsc-m: {ws:?}");
        // /16 is the widest that passes.
        let ws = check(&LAB.replacen("198.18.1.1/32", "198.18.0.0/16", 1)).expect("loads");
        assert_eq!(ws.len(), 2, "{ws:?}");
    }

    #[test]
    fn key_files_others_can_read_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("iwf-check-key-{}", std::process::id()));
        std::fs::write(&path, "9f3c2a71d04be85a6e17c3f20b8d9e44\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let first = LAB.lines().find(|l| l.starts_with("secret =")).unwrap();
        let text = LAB.replacen(first, &format!("secret_file = \"{}\"", path.display()), 1);
        let ws = check(&text).expect("loads");
        assert_eq!(keys(&ws), ["tag.keys[0].secret_file", "tag.keys[1].secret"], "{ws:?}");
        assert!(ws[0].message.contains("mode 0644"), "{}", ws[0]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(keys(&check(&text).expect("loads")), ["tag.keys[1].secret"]);
        let _ = std::fs::remove_file(&path);
    }
}
