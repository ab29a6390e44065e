//! The log: `tracing` events from every thread but the workers, as text or JSON lines
//! on stdout (under systemd, the journal takes stdout). Each line has the time (UTC),
//! the level, the target (the module) and the message with its fields.
//!
//! The level is set at start by `[log] level` and changed at run time
//! ([`set_level`], the admin API's `PUT /v1/log-level`): a reload layer holds it, so a
//! change costs one atomic swap and no restart.
use crate::control::config::file::File;
use crate::control::config::{ConfigError, Doc};
use std::sync::OnceLock;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-07T15:04:05.123456Z  INFO iwf::dataplane::app: message key=value`.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// The level at start.
    pub level: LevelFilter,
    /// The format.
    pub format: Format,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: LevelFilter::INFO, format: Format::Text }
    }
}

impl LogConfig {
    /// `[log]` of a file read.
    pub(crate) fn load(doc: &Doc<'_>, file: &File) -> Result<LogConfig, ConfigError> {
        let mut c = LogConfig::default();
        let Some(l) = &file.log else { return Ok(c) };
        let l = l.get_ref();
        if let Some(v) = &l.level {
            c.level = match parse_level(v.get_ref()) {
                Some(level) => level,
                None => return doc.err("log.level", v.span(), format!("`{}`: expected {LEVELS}", v.get_ref())),
            };
        }
        if let Some(v) = &l.format {
            c.format = match v.get_ref().as_str() {
                "text" => Format::Text,
                "json" => Format::Json,
                other => return doc.err("log.format", v.span(), format!("`{other}`: expected \"text\" or \"json\"")),
            };
        }
        Ok(c)
    }
}

/// The levels a configuration or the admin API may name.
pub const LEVELS: &str = "off, error, warn, info, debug or trace";

/// A level by name.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

/// Installs the log for this process (once; a second call leaves the first in place).
pub fn init(c: &LogConfig) {
    let (filter, handle) = reload::Layer::new(c.level);
    let installed = match c.format {
        Format::Text => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::io::stdout))
            .try_init(),
        Format::Json => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().json().with_ansi(false).with_writer(std::io::stdout))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = LEVEL.set(handle);
    }
}

/// The level now, by name.
pub fn level() -> String {
    LEVEL
        .get()
        .and_then(|h| h.clone_current())
        .map_or_else(|| "off".to_string(), |l| l.to_string().to_ascii_lowercase())
}

/// Changes the level; `Err` says why not.
pub fn set_level(name: &str) -> Result<(), String> {
    let level = parse_level(name).ok_or_else(|| format!("`{}`: expected {LEVELS}", name.trim()))?;
    let handle = LEVEL.get().ok_or("no log is installed in this process")?;
    handle.modify(|l| *l = level).map_err(|e| e.to_string())?;
    // Said at warn, so that the change shows at any level but error and off.
    tracing::warn!(level = %level.to_string().to_ascii_lowercase(), "log level changed");
    Ok(())
}
