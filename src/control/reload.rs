//! Hot reload of a configuration file: SIGHUP (or `POST /-/reload` on the admin
//! endpoint) makes the control thread read and check the **whole** file again; only a
//! file that loads without error replaces the running snapshot, which the packet path
//! reads through an [`ArcSwap`] without a lock. A bad file changes nothing and the error
//! names the file, the key and the line.
//!
//! ```text
//!  SIGHUP ──► take_sighup() ─┐
//!  POST /-/reload ───────────┼──► Reloader::reload(): read → parse → store (generation + 1)
//!                            │                                └─► ArcSwap<T> ──► pipelines load()
//! ```

use super::config::ConfigError;
use super::metrics::{MetricsSource, MetricsWriter};
use arc_swap::ArcSwap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Set by the SIGHUP handler (the packet path's application installs it), cleared
/// by [`take_sighup`].
pub static SIGHUP: AtomicBool = AtomicBool::new(false);

/// Whether SIGHUP arrived since the last call (and clears it): several signals between
/// two calls ask for one reload.
pub fn take_sighup() -> bool {
    SIGHUP.swap(false, Ordering::SeqCst)
}

/// Why a configuration file did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file read but does not load: the key and line are in the error.
    Config {
        /// The file.
        path: PathBuf,
        /// Key, line and what is wrong.
        error: ConfigError,
    },
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Read { path, reason } => write!(f, "{}: cannot read: {reason}", path.display()),
            ReloadError::Config { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Reads a configuration file into a snapshot and publishes each newer one that loads.
///
/// `T` is whatever `parse` builds from the whole file (a key ring, the provisioning
/// tables). The snapshot lives in an `Arc<ArcSwap<T>>` ([`Reloader::shared`]) that the
/// packet path holds and `load()`s per burst without a lock. Reloads are serialised (the
/// SIGHUP path and the admin endpoint may ask at the same time).
pub struct Reloader<T> {
    path: PathBuf,
    parse: fn(&str) -> Result<T, ConfigError>,
    current: Arc<ArcSwap<T>>,
    generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    busy: Mutex<()>,
}

impl<T> fmt::Debug for Reloader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .field("reloads_ok", &self.reloads_ok())
            .field("reloads_failed", &self.reloads_failed())
            .finish()
    }
}

fn read_and_parse<T>(path: &Path, parse: fn(&str) -> Result<T, ConfigError>) -> Result<(T, usize), ReloadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReloadError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    let value = parse(&text).map_err(|error| ReloadError::Config { path: path.to_path_buf(), error })?;
    Ok((value, text.len()))
}

impl<T> Reloader<T> {
    /// Loads `path` for the first time (generation 1). An error here is a start-up error.
    pub fn load(path: impl Into<PathBuf>, parse: fn(&str) -> Result<T, ConfigError>) -> Result<Self, ReloadError> {
        let path = path.into();
        let (value, _) = read_and_parse(&path, parse)?;
        Ok(Reloader {
            path,
            parse,
            current: Arc::new(ArcSwap::from_pointee(value)),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            busy: Mutex::new(()),
        })
    }

    /// Reads and parses the whole file again; on success publishes the new snapshot
    /// (generation + 1) and returns a one-line summary; on any error the running
    /// snapshot stays and the error names the file, key and line.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let _serial = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        match read_and_parse(&self.path, self.parse) {
            Ok((value, bytes)) => {
                self.current.store(Arc::new(value));
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(format!("{}: loaded ({bytes} bytes), configuration generation {generation}", self.path.display()))
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// [`Reloader::reload`] with the error as text: the shape the admin endpoint's
    /// reload callback takes.
    pub fn reload_text(&self) -> Result<String, String> {
        self.reload().map_err(|e| e.to_string())
    }

    /// The running snapshot.
    pub fn snapshot(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// The swap cell the packet path reads (`shared().load()` per burst).
    pub fn shared(&self) -> Arc<ArcSwap<T>> {
        Arc::clone(&self.current)
    }

    /// The file this reloader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1 for the file loaded at start, + 1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Successful reloads.
    pub fn reloads_ok(&self) -> u64 {
        self.reloads_ok.load(Ordering::Relaxed)
    }

    /// Reloads refused (unreadable file or a configuration error).
    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }
}

impl<T: Send + Sync> MetricsSource for Reloader<T> {
    fn render(&self, out: &mut MetricsWriter) {
        let help = "Configuration reloads by result: ok (loaded), failed (an unreadable file or an \
                    error; the running configuration stayed).";
        let _ = out.counter("iwf_config_reloads_total", help, &[("result", "ok")], self.reloads_ok());
        let _ = out.counter("iwf_config_reloads_total", help, &[("result", "failed")], self.reloads_failed());
        let _ = out.gauge(
            "iwf_config_generation",
            "Generation of the running configuration (1 at start, + 1 per reload that loaded).",
            &[],
            self.generation() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A unique file under the system's temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!("iwf-reload-{}-{}.toml", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const GOOD: &str =
        "[tag]\nsigning_key = 1\n\n[[tag.keys]]\nid = 1\nsecret = \"9f3c2a71d04be85a6e17c3f20b8d9e44\"\n";
    const OTHER: &str =
        "[tag]\nsigning_key = 2\n\n[[tag.keys]]\nid = 2\nsecret = \"5be0917a3cd24f68a1e3079bc42d6f15\"\n";

    fn keyring(text: &str) -> Result<crate::tag::KeyRing, ConfigError> {
        super::super::config::load_keyring(text)
    }

    #[test]
    fn a_good_file_swaps_the_snapshot() {
        let file = TempFile::new(GOOD);
        let r = Reloader::load(&file.0, keyring).unwrap();
        let cell = r.shared();
        assert_eq!((r.generation(), r.snapshot().signing()), (1, 1));
        file.write(OTHER);
        let summary = r.reload().unwrap();
        assert!(summary.contains("generation 2"), "{summary}");
        assert!(summary.contains(&file.0.display().to_string()), "{summary}");
        assert_eq!((r.generation(), r.snapshot().signing()), (2, 2));
        // The packet path's handle sees the new snapshot.
        assert_eq!(cell.load().signing(), 2);
        assert_eq!((r.reloads_ok(), r.reloads_failed()), (1, 0));
    }

    #[test]
    fn a_bad_file_keeps_the_running_snapshot_and_names_the_line() {
        let file = TempFile::new(GOOD);
        let r = Reloader::load(&file.0, keyring).unwrap();
        let before = r.snapshot();
        // The error sits in line 6; the rest of the file would load.
        file.write(&OTHER.replace("5be0917a3cd24f68a1e3079bc42d6f15", "f0e0"));
        let e = r.reload().unwrap_err();
        match &e {
            ReloadError::Config { path, error } => {
                assert_eq!(path, &file.0);
                assert_eq!((error.key.as_str(), error.line), ("tag.keys[0].secret", 6));
            }
            other => panic!("{other:?}"),
        }
        let text = r.reload_text().unwrap_err();
        assert!(text.starts_with(&format!("{}: line 6: `tag.keys[0].secret`", file.0.display())), "{text}");
        assert!(Arc::ptr_eq(&before, &r.snapshot()));
        assert_eq!((r.generation(), r.reloads_ok(), r.reloads_failed()), (1, 0, 2));
        // Fixed again: the next reload loads.
        file.write(OTHER);
        assert!(r.reload().is_ok());
        assert_eq!((r.generation(), r.snapshot().signing()), (2, 2));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let file = TempFile::new(GOOD);
        let r = Reloader::load(&file.0, keyring).unwrap();
        std::fs::remove_file(&file.0).unwrap();
        let e = r.reload().unwrap_err();
        assert!(matches!(&e, ReloadError::Read { path, .. } if path == &file.0), "{e:?}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert_eq!(r.snapshot().signing(), 1);

        let missing = std::env::temp_dir().join(format!("iwf-reload-missing-{}.toml", std::process::id()));
        let e = Reloader::load(&missing, keyring).unwrap_err();
        assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn counters_are_exported() {
        let file = TempFile::new(GOOD);
        let r = Reloader::load(&file.0, keyring).unwrap();
        r.reload().unwrap();
        file.write("[tag\n");
        assert!(r.reload().is_err());
        let mut w = MetricsWriter::new();
        r.render(&mut w);
        let text = w.finish();
        assert!(text.contains("\niwf_config_reloads_total{result=\"ok\"} 1\n"), "{text}");
        assert!(text.contains("\niwf_config_reloads_total{result=\"failed\"} 1\n"), "{text}");
        assert!(text.contains("\niwf_config_generation 2\n"), "{text}");
    }
}
