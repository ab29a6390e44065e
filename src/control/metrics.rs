//! Prometheus text exposition (format 0.0.4) for the admin endpoint's `GET /metrics`.
//!
//! ```text
//! # HELP iwf_port_rx_packets_total Frames received.
//! # TYPE iwf_port_rx_packets_total counter
//! iwf_port_rx_packets_total{port="legacy"} 7
//! iwf_port_rx_packets_total{port="converged"} 3
//! ```
//!
//! A [`MetricsWriter`] gathers samples by family, so every family's HELP and TYPE lines
//! come once and its samples stay together however the callers interleave them (the
//! format requires both). Each part of the appliance that has numbers to show implements
//! [`MetricsSource`] and registers it in the [`MetricsRegistry`] the admin server reads.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

/// The `Content-Type` of the text exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family measures (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down (a state, a level).
    Gauge,
    /// Observations counted in buckets: `_bucket{le}` (cumulative), `_sum`, `_count`.
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Why a sample was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricError {
    /// The metric name is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    BadName,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with the reserved `__`.
    BadLabelName,
    /// The family was first written as the other kind (a counter and a gauge share a name).
    KindMismatch,
    /// A histogram's counts are not one per bucket bound plus one for `+Inf`.
    BadBuckets,
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricError::BadName => "metric name is not [a-zA-Z_:][a-zA-Z0-9_:]*",
            MetricError::BadLabelName => "label name is not [a-zA-Z_][a-zA-Z0-9_]* or starts with __",
            MetricError::KindMismatch => "metric family already written with another type",
            MetricError::BadBuckets => "histogram counts are not one per bound plus +Inf",
        })
    }
}

impl std::error::Error for MetricError {}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus itself).
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One family: its HELP and TYPE, then its samples (already formatted lines).
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: MetricKind,
    samples: String,
}

/// Collects samples and writes them as Prometheus text (format 0.0.4).
///
/// Families appear in the order they were first written; within a family, samples in the
/// order written. Writing allocates: this is the control plane, not the packet path.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

impl MetricsWriter {
    /// An empty writer.
    pub fn new() -> MetricsWriter {
        MetricsWriter::default()
    }

    /// Writes a counter sample. `help` is kept from the family's first sample.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) -> Result<(), MetricError> {
        self.sample(name, help, MetricKind::Counter, labels, &value.to_string())
    }

    /// Writes a counter sample that is not a whole count (seconds, say).
    pub fn counter_f64(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricError> {
        self.sample(name, help, MetricKind::Counter, labels, &float_text(value))
    }

    /// Writes a gauge sample (`NaN`, `+Inf` and `-Inf` are written as the format spells them).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Result<(), MetricError> {
        self.sample(name, help, MetricKind::Gauge, labels, &float_text(value))
    }

    /// Writes one histogram: `bounds` (ascending upper bounds, without `+Inf`) and
    /// `cumulative` counts, one per bound and a last one for `+Inf` (= the count).
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        cumulative: &[u64],
        sum: f64,
    ) -> Result<(), MetricError> {
        if cumulative.len() != bounds.len() + 1 {
            return Err(MetricError::BadBuckets);
        }
        let family = self.family(name, help, MetricKind::Histogram, labels)?;
        let bucket = format!("{name}_bucket");
        for (i, c) in cumulative.iter().enumerate() {
            let le = bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| float_text(*b));
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            push_sample(&mut family.samples, &bucket, &with_le, &c.to_string());
        }
        push_sample(&mut family.samples, &format!("{name}_sum"), labels, &float_text(sum));
        let count = cumulative.last().copied().unwrap_or(0);
        push_sample(&mut family.samples, &format!("{name}_count"), labels, &count.to_string());
        Ok(())
    }

    /// The number of families written so far.
    pub fn families(&self) -> usize {
        self.families.len()
    }

    fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: &str,
    ) -> Result<(), MetricError> {
        let family = self.family(name, help, kind, labels)?;
        push_sample(&mut family.samples, name, labels, value);
        Ok(())
    }

    /// Family `name` of `kind` (created on first use), once the names check out.
    fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
    ) -> Result<&mut Family, MetricError> {
        if !valid_metric_name(name) {
            return Err(MetricError::BadName);
        }
        if !labels.iter().all(|(k, _)| valid_label_name(k)) {
            return Err(MetricError::BadLabelName);
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: String::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let Some(family) = self.families.get_mut(i) else {
            return Err(MetricError::BadName);
        };
        if family.kind != kind {
            return Err(MetricError::KindMismatch);
        }
        Ok(family)
    }

    /// Appends the exposition text to `out`.
    pub fn write_to(&self, out: &mut String) {
        for f in &self.families {
            let _ = write!(out, "# HELP {} ", f.name);
            escape_help(out, &f.help);
            let _ = writeln!(out, "\n# TYPE {} {}", f.name, f.kind.as_str());
            out.push_str(&f.samples);
        }
    }

    /// The exposition text.
    pub fn finish(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }
}

/// One sample line: `name{labels} value`.
fn push_sample(s: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    s.push_str(name);
    if !labels.is_empty() {
        s.push('{');
        for (n, (k, v)) in labels.iter().enumerate() {
            if n > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push_str("=\"");
            escape_label_value(s, v);
            s.push('"');
        }
        s.push('}');
    }
    s.push(' ');
    s.push_str(value);
    s.push('\n');
}

/// A sample value as the text format spells it (`NaN`, `+Inf`, `-Inf`).
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

/// Label values escape `\`, `"` and line feed.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and line feed (not `"`).
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Something with numbers to show on `GET /metrics` (the packet path's counters, the
/// configuration reloader, a flow's lanes). Called on the admin thread, so it reads
/// atomics or snapshots and never blocks on the packet path.
pub trait MetricsSource: Send + Sync {
    /// Writes this source's samples.
    fn render(&self, out: &mut MetricsWriter);
}

/// The sources the admin endpoint renders, in registration order. Sources may join at
/// any time (a flow registers its own when it starts).
#[derive(Default)]
pub struct MetricsRegistry {
    sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry").field("sources", &self.len()).finish()
    }
}

impl MetricsRegistry {
    /// An empty registry.
    pub fn new() -> MetricsRegistry {
        MetricsRegistry::default()
    }

    /// Adds a source.
    pub fn register(&self, source: Arc<dyn MetricsSource>) {
        match self.sources.write() {
            Ok(mut s) => s.push(source),
            Err(poisoned) => poisoned.into_inner().push(source),
        }
    }

    /// The number of sources.
    pub fn len(&self) -> usize {
        self.sources.read().map_or_else(|p| p.into_inner().len(), |s| s.len())
    }

    /// Whether no source is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every source's samples as exposition text.
    pub fn render(&self) -> String {
        let sources: Vec<Arc<dyn MetricsSource>> =
            self.sources.read().map_or_else(|p| p.into_inner().clone(), |s| s.clone());
        let mut w = MetricsWriter::new();
        for s in &sources {
            s.render(&mut w);
        }
        w.finish()
    }
}

/// The process's own numbers under the names every Prometheus client library uses
/// (`process_*`), read from `/proc/self` at each scrape, and `iwf_build_info`.
#[derive(Debug, Clone)]
pub struct ProcessMetrics {
    /// When iwf started, Unix seconds (taken when the appliance builds this source).
    start_unix: f64,
}

impl ProcessMetrics {
    /// A source whose start time is now.
    pub fn new() -> ProcessMetrics {
        let start_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        ProcessMetrics { start_unix }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        ProcessMetrics::new()
    }
}

/// CPU time of every thread of the process, seconds: `/proc/self/schedstat`'s first
/// field is nanoseconds on a CPU (no clock-tick size to guess).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// A `/proc/self/status` line's kB value, as bytes (`VmRSS`, `VmSize`).
fn status_bytes(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.get(key.len()..)?.trim_start_matches(':').split_whitespace().next()?.parse().ok()?;
    Some(kb as f64 * 1024.0)
}

/// The soft limit of open files from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?.split_whitespace().next()?.parse::<u64>().ok().map(|n| n as f64)
}

impl MetricsSource for ProcessMetrics {
    fn render(&self, out: &mut MetricsWriter) {
        let _ = out.gauge(
            "iwf_build_info",
            "The running build: version and profile as labels, value 1.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("profile", if cfg!(debug_assertions) { "debug" } else { "release" }),
            ],
            1.0,
        );
        let _ = out.gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            &[],
            self.start_unix,
        );
        if let Some(s) = cpu_seconds() {
            let _ = out.counter_f64(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[],
                s,
            );
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(b) = status_bytes(&status, "VmRSS") {
            let _ = out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes (hugepages not included).",
                &[],
                b,
            );
        }
        if let Some(b) = status_bytes(&status, "VmSize") {
            let _ = out.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", &[], b);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let _ = out.gauge("process_open_fds", "Number of open file descriptors.", &[], fds.count() as f64);
        }
        if let Some(n) = max_fds() {
            let _ = out.gauge("process_max_fds", "Maximum number of open file descriptors.", &[], n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_with_help_and_type_once() {
        let mut w = MetricsWriter::new();
        w.counter("iwf_rx_total", "Frames received.", &[("port", "legacy")], 7).unwrap();
        w.gauge("iwf_link_up", "Link state.", &[("port", "legacy")], 1.0).unwrap();
        w.counter("iwf_rx_total", "ignored", &[("port", "converged")], 3).unwrap();
        w.gauge("iwf_temp", "A level.", &[], -2.5).unwrap();
        assert_eq!(w.families(), 3);
        assert_eq!(
            w.finish(),
            "# HELP iwf_rx_total Frames received.\n# TYPE iwf_rx_total counter\n\
             iwf_rx_total{port=\"legacy\"} 7\niwf_rx_total{port=\"converged\"} 3\n\
             # HELP iwf_link_up Link state.\n# TYPE iwf_link_up gauge\niwf_link_up{port=\"legacy\"} 1\n\
             # HELP iwf_temp A level.\n# TYPE iwf_temp gauge\niwf_temp -2.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = MetricsWriter::new();
        w.counter("a_total", "back\\slash\nand \"quotes\"", &[("v", "a\\b\"c\nd"), ("w", "é")], 1).unwrap();
        let text = w.finish();
        assert!(text.contains("# HELP a_total back\\\\slash\\nand \"quotes\"\n"), "{text}");
        assert!(text.contains("a_total{v=\"a\\\\b\\\"c\\nd\",w=\"é\"} 1\n"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn special_gauge_values() {
        let mut w = MetricsWriter::new();
        w.gauge("g", "", &[("k", "nan")], f64::NAN).unwrap();
        w.gauge("g", "", &[("k", "inf")], f64::INFINITY).unwrap();
        w.gauge("g", "", &[("k", "-inf")], f64::NEG_INFINITY).unwrap();
        let text = w.finish();
        assert!(text.contains("g{k=\"nan\"} NaN\ng{k=\"inf\"} +Inf\ng{k=\"-inf\"} -Inf\n"), "{text}");
    }

    #[test]
    fn names_are_validated() {
        let mut w = MetricsWriter::new();
        for bad in ["", "1abc", "a-b", "a b", "a{b}", "é"] {
            assert_eq!(w.counter(bad, "", &[], 1), Err(MetricError::BadName), "{bad:?}");
        }
        for good in ["a", "_a", ":a", "iwf:x_total", "A9_:"] {
            assert_eq!(w.counter(good, "", &[], 1), Ok(()), "{good:?}");
        }
        for bad in ["", "__reserved", "9x", "a:b", "a-b"] {
            assert_eq!(w.counter("x", "", &[(bad, "v")], 1), Err(MetricError::BadLabelName), "{bad:?}");
        }
        assert_eq!(w.gauge("a", "", &[], 1.0), Err(MetricError::KindMismatch));
        // Rejected samples leave no trace.
        assert!(!w.finish().contains("9x"));
        assert_eq!(w.families(), 5);
    }

    struct Fixed(&'static str, u64);
    impl MetricsSource for Fixed {
        fn render(&self, out: &mut MetricsWriter) {
            let _ = out.counter("iwf_fixed_total", "Fixed.", &[("src", self.0)], self.1);
        }
    }

    #[test]
    fn registry_renders_every_source_in_order() {
        let r = MetricsRegistry::new();
        assert!(r.is_empty());
        assert_eq!(r.render(), "");
        r.register(Arc::new(Fixed("a", 1)));
        r.register(Arc::new(Fixed("b", 2)));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.render(),
            "# HELP iwf_fixed_total Fixed.\n# TYPE iwf_fixed_total counter\n\
             iwf_fixed_total{src=\"a\"} 1\niwf_fixed_total{src=\"b\"} 2\n"
        );
    }

    #[test]
    fn process_metrics_read_proc_self() {
        let mut w = MetricsWriter::new();
        ProcessMetrics::new().render(&mut w);
        let text = w.finish();
        for family in [
            "iwf_build_info gauge",
            "process_start_time_seconds gauge",
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_virtual_memory_bytes gauge",
            "process_open_fds gauge",
            "process_max_fds gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family}: {text}");
        }
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name) && !l.starts_with('#'))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        };
        assert!(value("process_resident_memory_bytes") > 1e5, "{text}");
        assert!(value("process_open_fds") >= 3.0 && value("process_max_fds") >= value("process_open_fds"), "{text}");
        assert!(value("process_cpu_seconds_total") > 0.0, "{text}");
        assert!(text.contains(&format!("iwf_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION"))), "{text}");
        assert_eq!(status_bytes("VmRSS:\t  2048 kB\n", "VmRSS"), Some(2048.0 * 1024.0));
    }

    #[test]
    fn histograms_are_one_family_with_buckets_sum_and_count() {
        let mut w = MetricsWriter::new();
        w.histogram("iwf_h_seconds", "A latency.", &[("system", "a")], &[0.001, 0.5], &[1, 3, 4], 0.75).unwrap();
        w.histogram("iwf_h_seconds", "ignored", &[("system", "b")], &[0.001, 0.5], &[0, 0, 0], 0.0).unwrap();
        assert_eq!(w.histogram("iwf_h_seconds", "", &[], &[1.0], &[1], 0.0), Err(MetricError::BadBuckets));
        assert_eq!(w.counter("iwf_h_seconds", "", &[], 1), Err(MetricError::KindMismatch));
        assert_eq!(
            w.finish(),
            "# HELP iwf_h_seconds A latency.\n# TYPE iwf_h_seconds histogram\n\
             iwf_h_seconds_bucket{system=\"a\",le=\"0.001\"} 1\niwf_h_seconds_bucket{system=\"a\",le=\"0.5\"} 3\n\
             iwf_h_seconds_bucket{system=\"a\",le=\"+Inf\"} 4\niwf_h_seconds_sum{system=\"a\"} 0.75\n\
             iwf_h_seconds_count{system=\"a\"} 4\n\
             iwf_h_seconds_bucket{system=\"b\",le=\"0.001\"} 0\niwf_h_seconds_bucket{system=\"b\",le=\"0.5\"} 0\n\
             iwf_h_seconds_bucket{system=\"b\",le=\"+Inf\"} 0\niwf_h_seconds_sum{system=\"b\"} 0\n\
             iwf_h_seconds_count{system=\"b\"} 0\n"
        );
    }
}
