//! Reading iwf's TOML configuration. Every error names the key and the line it sits on,
//! so an operator can fix the file without guessing.
//!
//! Here: the error type, `read`, which takes the whole file into its shape
//! (`file`: serde derive, unknown keys refused, every value spanned), and the `[tag]`
//! section. Each section's reader then checks what its values may be. The packet path's sections (`[eal]`, `[control]`, `[[ports]]`, `[sip]`,
//! `[smpp]`, `[tcp]`, `[[legacy]]`) are read by [`appliance`] and re-exported here;
//! routes and names by [`crate::control::provision`].
//!
//! ```toml
//! [tag]
//! signing_key = 1          # key id (0-7) new tags are signed with
//! max_age_minutes = 10080  # optional: how long a tag verifies (default 7 days, at most 30)
//!
//! [[tag.keys]]
//! id = 1
//! secret_file = "/etc/iwf/tag-key-1"   # written by `iwf keygen --out /etc/iwf/tag-key-1`
//!
//! [[tag.keys]]                         # the previous key: verifies tags in flight, signs none
//! id = 0
//! secret = "9f3c2a71d04be85a6e17c3f20b8d9e44"   # or the 32 hex digits inline
//! ```
//!
//! A key that cannot be a random secret (all one byte, counting, few distinct bytes:
//! [`TagKey::from_hex_strong`]) is refused, so an example file's placeholder never
//! signs a tag.

pub mod appliance;
pub(crate) mod file;
pub use appliance::*;

use crate::tag::{KeyRing, TagKey};
use serde_spanned::Spanned;
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A configuration error: which key, on which line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`tag.keys[1].secret`), empty for a syntax error.
    pub key: String,
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong, and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: `{}`: {}", self.line, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes().get(..end).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1
}

/// A configuration text being read: every error it builds names the key and the line.
pub(crate) struct Doc<'t> {
    /// The whole file.
    pub(crate) text: &'t str,
}

impl Doc<'_> {
    pub(crate) fn err<T>(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError { key: key.to_string(), line: line_of(self.text, span.start), message: message.into() })
    }

    /// The line a value sits on.
    pub(crate) fn line<T>(&self, v: &Spanned<T>) -> usize {
        line_of(self.text, v.span().start)
    }

    /// A key the section needs: its value, or an error at `within` (the table's
    /// place) saying what the key should hold.
    pub(crate) fn need<'a, T>(
        &self,
        key: &str,
        v: &'a Option<Spanned<T>>,
        within: Range<usize>,
        what: &str,
    ) -> Result<&'a Spanned<T>, ConfigError> {
        match v {
            Some(v) => Ok(v),
            None => self.err(key, within, format!("missing: {what}")),
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn integer(&self, key: &str, v: &Spanned<i64>, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            self.err(key, v.span(), format!("{n} is out of range, expected {min} to {max}"))
        }
    }

    /// An optional integer within `min..=max`, else `default`.
    pub(crate) fn integer_or(
        &self,
        key: &str,
        v: &Option<Spanned<i64>>,
        min: i64,
        max: i64,
        default: i64,
    ) -> Result<i64, ConfigError> {
        v.as_ref().map_or(Ok(default), |v| self.integer(key, v, min, max))
    }
}

/// Reads a whole configuration file into its shape ([`file::File`]): a syntax error,
/// an unknown key or a value of the wrong type is named by key and line here; what
/// the values may be is left to the sections' readers.
pub(crate) fn read(text: &str) -> Result<file::File, ConfigError> {
    let tree = DeTable::parse(text).map_err(|e| ConfigError {
        key: String::new(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        message: format!("TOML syntax error: {}", e.message().lines().next().unwrap_or("")),
    })?;
    toml::from_str::<file::File>(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = key_at(tree.get_ref(), &span);
        let message = explain(e.message(), !key.contains(['.', '[']));
        ConfigError { key, line: line_of(text, span.start), message }
    })
}

/// The dotted path (`tag.keys[1].id`) of the key at `span` (an unknown key's name) or
/// of the innermost value holding it (a value of the wrong type).
fn key_at(root: &DeTable<'_>, span: &Range<usize>) -> String {
    let mut best: Option<(usize, String)> = None;
    let mut visit = |path: &str, key: Option<&Range<usize>>, value: &Range<usize>| {
        if key == Some(span) {
            best = Some((0, path.to_string()));
        } else if value.start <= span.start && span.end <= value.end {
            let len = value.end - value.start + 1;
            if best.as_ref().is_none_or(|(l, _)| len < *l) {
                best = Some((len, path.to_string()));
            }
        }
    };
    walk_table(root, "", &mut visit);
    best.map(|(_, p)| p).unwrap_or_default()
}

type Visit<'v> = dyn FnMut(&str, Option<&Range<usize>>, &Range<usize>) + 'v;

fn walk_table(table: &DeTable<'_>, at: &str, visit: &mut Visit<'_>) {
    for (k, v) in table.iter() {
        let name: &str = k.get_ref().as_ref();
        let path = if at.is_empty() { name.to_string() } else { format!("{at}.{name}") };
        visit(&path, Some(&k.span()), &v.span());
        walk_value(v.get_ref(), &path, visit);
    }
}

fn walk_value(v: &DeValue<'_>, path: &str, visit: &mut Visit<'_>) {
    if let Some(t) = v.as_table() {
        walk_table(t, path, visit);
    } else if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            visit(&path, None, &item.span());
            walk_value(item.get_ref(), &path, visit);
        }
    }
}

/// Serde's wording, in the file's terms: "unknown key (expected one of a, b)",
/// "expected an integer, found string \"x\"".
fn explain(message: &str, section: bool) -> String {
    let message = message.lines().next().unwrap_or("");
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let allowed = rest.split_once(", expected ").map_or("", |(_, a)| a);
        let allowed = allowed.trim_start_matches("one of ").replace(" or ", ", ").replace('`', "");
        let what = if section { "section" } else { "key" };
        return format!("unknown {what} (expected one of {allowed})");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            if found.contains(" as i128") {
                return format!("{} is out of range", found.trim_start_matches("integer ").replace(" as i128", ""));
            }
            let expected = match expected {
                "i64" => "an integer",
                "a boolean" => "true or false",
                "a sequence" => "an array",
                e if e.starts_with("struct ") => "a table",
                e => e,
            };
            return format!("expected {expected}, found {found}");
        }
    }
    message.to_string()
}

/// The longest `tag.max_age_minutes`: 30 days. A tag verifies for this long after it
/// was issued; longer would keep forged-tag guesses and old receipts meaningful for
/// longer than any SMSC keeps a message (validity periods top out at days).
pub const MAX_AGE_MINUTES: u32 = 30 * 24 * 60;

/// Reads the `[tag]` section of a configuration into a key ring.
pub fn load_keyring(text: &str) -> Result<KeyRing, ConfigError> {
    let file = read(text)?;
    keyring(&Doc { text }, &file)
}

/// `[tag]`, from the file read.
pub(crate) fn keyring(doc: &Doc<'_>, file: &file::File) -> Result<KeyRing, ConfigError> {
    let Some(tag) = &file.tag else {
        return doc.err("tag", 0..0, "missing section: the tag keys live in [tag]");
    };
    let (t, within) = (tag.get_ref(), tag.span());
    let signing =
        doc.need("tag.signing_key", &t.signing_key, within.clone(), "the key id (0-7) new tags are signed with")?;
    let signing_id = doc.integer("tag.signing_key", signing, 0, 7)? as u8;
    let mut ring = match KeyRing::new(signing_id) {
        Ok(r) => r,
        Err(e) => return doc.err("tag.signing_key", signing.span(), e.to_string()),
    };
    if let Some(age) = &t.max_age_minutes {
        ring.set_max_age_minutes(doc.integer("tag.max_age_minutes", age, 1, i64::from(MAX_AGE_MINUTES))? as u32);
    }
    let what = "at least one [[tag.keys]] entry with id and secret";
    let keys = doc.need("tag.keys", &t.keys, within, what)?;
    let mut seen = [false; crate::tag::KEY_SLOTS];
    for (i, entry) in keys.get_ref().iter().enumerate() {
        let at = format!("tag.keys[{i}]");
        let k = entry.get_ref();
        let id = doc.need(&format!("{at}.id"), &k.id, entry.span(), "the key id (0-7)")?;
        let id_n = doc.integer(&format!("{at}.id"), id, 0, 7)? as u8;
        if std::mem::replace(&mut seen[usize::from(id_n)], true) {
            return doc.err(&format!("{at}.id"), id.span(), format!("key id {id_n} is defined twice"));
        }
        let (name, span, hex) = match (&k.secret, &k.secret_file) {
            (Some(secret), None) => (format!("{at}.secret"), secret.span(), secret.get_ref().clone()),
            (None, Some(file)) => {
                let name = format!("{at}.secret_file");
                let path = file.get_ref();
                match std::fs::read_to_string(path) {
                    Ok(text) => (name, file.span(), text.trim().to_owned()),
                    Err(e) => {
                        let why = format!("cannot read {path}: {e} (write a key there with `iwf keygen --out {path}`)");
                        return doc.err(&name, file.span(), why);
                    }
                }
            }
            (Some(_), Some(file)) => {
                return doc.err(&format!("{at}.secret_file"), file.span(), "give secret or secret_file, not both")
            }
            (None, None) => {
                let why = "missing: secret (32 hex digits) or secret_file (a file `iwf keygen` wrote)";
                return doc.err(&format!("{at}.secret"), entry.span(), why);
            }
        };
        let key = match TagKey::from_hex_strong(&hex) {
            Ok(k) => k,
            Err(e) => return doc.err(&name, span, e.to_string()),
        };
        if ring.insert(id_n, key).is_err() {
            return doc.err(&format!("{at}.id"), id.span(), "a tag key id is 0 to 7");
        }
    }
    if !seen[usize::from(signing_id)] {
        return doc.err("tag.signing_key", signing.span(), format!("key id {signing_id} has no [[tag.keys]] entry"));
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[tag]\nsigning_key = 2\n\n[[tag.keys]]\nid = 1\nsecret = \"9f3c2a71d04be85a6e17c3f20b8d9e44\"\n\n[[tag.keys]]\nid = 2\nsecret = \"5be0917a3cd24f68a1e3079bc42d6f15\"\n";

    #[test]
    fn reads_two_live_keys() {
        let r = load_keyring(GOOD).unwrap();
        assert_eq!(r.signing(), 2);
        assert_eq!(r.key_ids().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn errors_name_key_and_line() {
        let bad = GOOD.replace("5be0917a3cd24f68a1e3079bc42d6f15", "f0e0");
        let e = load_keyring(&bad).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].secret", 10));
        assert!(e.to_string().contains("32 hexadecimal digits"), "{e}");

        let e = load_keyring(&GOOD.replace("signing_key = 2", "signing_key = 5")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.signing_key", 2));

        let e = load_keyring(&GOOD.replace("id = 2", "id = 1")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].id", 9));
        assert!(e.message.contains("twice"));

        let e = load_keyring(&GOOD.replace("id = 2", "id = \"two\"")).unwrap_err();
        assert_eq!(e.key, "tag.keys[1].id");
        assert!(e.message.contains("expected an integer"));

        let e = load_keyring(&GOOD.replace("id = 2", "idd = 2")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].idd", 9));

        let e = load_keyring(&GOOD.replace("signing_key = 2", "signing_key = 2\nmax_age_minute = 5")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.max_age_minute", 3));

        let e = load_keyring("[tag\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("TOML syntax error"));

        let e = load_keyring("[control]\n").unwrap_err();
        assert_eq!(e.key, "tag");
        // Every reader reads the whole file: a misspelt section is never skipped.
        let e = load_keyring(&format!("{GOOD}\n[other]\n")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("other", 12));
        assert!(e.message.starts_with("unknown section (expected one of tag, eal,"), "{e}");
    }

    /// The file's shape is checked before any section is read: a value of the wrong
    /// type, deep in an array of tables, is named by its whole path, its line and the
    /// type expected, in the file's words rather than serde's.
    #[test]
    fn wrong_types_and_unknown_keys_are_named_by_path() {
        let e = load_keyring(&GOOD.replace("id = 2", "id = 2.5")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].id", 9));
        assert_eq!(e.message, "expected an integer, found floating point `2.5`");
        let e = load_keyring(&GOOD.replace("signing_key = 2", "signing_key = 99999999999999999999")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.signing_key", 2));
        assert!(e.message.contains("out of range"), "{e}");
        let e = load_keyring("[tag]\nsigning_key = 1\nkeys = 5\n").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line, e.message.as_str()),
            ("tag.keys", 3, "expected an array, found integer `5`")
        );
        let e = load_keyring("tag = true\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag", 1));
        assert!(e.message.starts_with("expected a table"), "{e}");
        let e = load_keyring(&GOOD.replace("id = 2\n", "id = 2\nsecrets = 1\n")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].secrets", 10));
        assert_eq!(e.message, "unknown key (expected one of id, secret, secret_file)");
        let e = load_keyring(&GOOD.replace("[[tag.keys]]\nid = 1", "[[tag.keys]]\nid = true")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line, e.message.as_str()),
            ("tag.keys[0].id", 5, "expected an integer, found boolean `true`")
        );
    }

    #[test]
    fn weak_keys_and_endless_ages_are_refused() {
        let zeros = GOOD.replace("5be0917a3cd24f68a1e3079bc42d6f15", "00000000000000000000000000000000");
        let e = load_keyring(&zeros).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].secret", 10));
        assert!(e.message.contains("weak") && e.message.contains("iwf keygen"), "{e}");
        let counting = GOOD.replace("5be0917a3cd24f68a1e3079bc42d6f15", "000102030405060708090a0b0c0d0e0f");
        assert_eq!(load_keyring(&counting).unwrap_err().key, "tag.keys[1].secret");

        let forever = GOOD.replace("signing_key = 2", "signing_key = 2\nmax_age_minutes = 4294967295");
        let e = load_keyring(&forever).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.max_age_minutes", 3));
        let month = GOOD.replace("signing_key = 2", "signing_key = 2\nmax_age_minutes = 43200");
        assert!(load_keyring(&month).is_ok());
    }

    #[test]
    fn a_key_file_is_read_and_its_absence_named() {
        let path = std::env::temp_dir().join(format!("iwf-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let text = GOOD
            .replace("secret = \"5be0917a3cd24f68a1e3079bc42d6f15\"", &format!("secret_file = \"{}\"", path.display()));
        let e = load_keyring(&text).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("tag.keys[1].secret_file", 10));
        assert!(e.message.contains("iwf keygen --out"), "{e}");
        std::fs::write(&path, "5be0917a3cd24f68a1e3079bc42d6f15\n").unwrap();
        let ring = load_keyring(&text).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), vec![1, 2]);
        // The same key inline and from the file sign the same tags.
        let fields = crate::tag::TagFields {
            system: 1,
            minutes: 1000,
            sequence: 1,
            segment_index: 0,
            segment_count: 1,
            receipts: crate::tag::ReceiptRequest::DELIVERY,
            parties: crate::tag::Parties::NONE,
        };
        assert_eq!(ring.encode(&fields).unwrap(), load_keyring(GOOD).unwrap().encode(&fields).unwrap());
        std::fs::write(&path, "00000000000000000000000000000000\n").unwrap();
        assert!(load_keyring(&text).unwrap_err().message.contains("weak"));
        let both = text.replace("id = 2\n", "id = 2\nsecret = \"5be0917a3cd24f68a1e3079bc42d6f15\"\n");
        assert!(load_keyring(&both).unwrap_err().message.contains("not both"));
        let _ = std::fs::remove_file(&path);
    }
}
