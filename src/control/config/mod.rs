//! Reading iwf's TOML configuration. Every error names the key and the line it sits on,
//! so an operator can fix the file without guessing.
//!
//! Here: the error type, the spanned document every reader walks, and the `[tag]`
//! section. The packet path's sections (`[eal]`, `[control]`, `[[ports]]`, `[sip]`,
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

/// A TOML value with its place in the file.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A configuration text being read: every error it builds names the key and the line.
pub(crate) struct Doc<'t> {
    /// The whole file.
    pub(crate) text: &'t str,
}

impl Doc<'_> {
    pub(crate) fn err<T>(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError { key: key.to_string(), line: line_of(self.text, span.start), message: message.into() })
    }

    pub(crate) fn line(&self, v: &Value<'_>) -> usize {
        line_of(self.text, v.span().start)
    }

    pub(crate) fn get<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> Option<&'a Value<'i>> {
        table.iter().find(|(k, _)| k.get_ref().as_ref() == name).map(|(_, v)| v)
    }

    pub(crate) fn only(&self, table: &DeTable<'_>, at: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        for (k, _) in table.iter() {
            let name: &str = k.get_ref().as_ref();
            if !allowed.contains(&name) {
                return self.err(
                    &format!("{at}.{name}"),
                    k.span(),
                    format!("unknown key (expected one of {})", allowed.join(", ")),
                );
            }
        }
        Ok(())
    }

    pub(crate) fn integer(&self, key: &str, v: &Value<'_>, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n =
            v.get_ref().as_integer().and_then(|i| i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok());
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(n) => self.err(key, v.span(), format!("{n} is out of range, expected {min} to {max}")),
            None => self.err(key, v.span(), format!("expected an integer, found {}", v.get_ref().type_str())),
        }
    }

    pub(crate) fn string<'a>(&self, key: &str, v: &'a Value<'_>) -> Result<&'a str, ConfigError> {
        match v.get_ref().as_str() {
            Some(s) => Ok(s),
            None => self.err(key, v.span(), format!("expected a string, found {}", v.get_ref().type_str())),
        }
    }

    pub(crate) fn boolean(&self, key: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
        match v.get_ref().as_bool() {
            Some(b) => Ok(b),
            None => self.err(key, v.span(), format!("expected true or false, found {}", v.get_ref().type_str())),
        }
    }

    pub(crate) fn table<'a, 'i>(&self, key: &str, v: &'a Value<'i>) -> Result<&'a DeTable<'i>, ConfigError> {
        match v.get_ref().as_table() {
            Some(t) => Ok(t),
            None => self.err(key, v.span(), format!("expected a table, found {}", v.get_ref().type_str())),
        }
    }
}

/// Parses a whole TOML document, mapping a syntax error to its line.
pub(crate) fn parse(text: &str) -> Result<Spanned<DeTable<'_>>, ConfigError> {
    DeTable::parse(text).map_err(|e| ConfigError {
        key: String::new(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        message: format!("TOML syntax error: {}", e.message().lines().next().unwrap_or("")),
    })
}

/// The longest `tag.max_age_minutes`: 30 days. A tag verifies for this long after it
/// was issued; longer would keep forged-tag guesses and old receipts meaningful for
/// longer than any SMSC keeps a message (validity periods top out at days).
pub const MAX_AGE_MINUTES: u32 = 30 * 24 * 60;

/// Reads the `[tag]` section of a configuration into a key ring.
pub fn load_keyring(text: &str) -> Result<KeyRing, ConfigError> {
    let doc = Doc { text };
    let root = parse(text)?;
    let Some(tag) = Doc::get(root.get_ref(), "tag") else {
        return doc.err("tag", 0..0, "missing section: the tag keys live in [tag]");
    };
    let Some(tag_table) = tag.get_ref().as_table() else {
        return doc.err("tag", tag.span(), "expected a table");
    };
    doc.only(tag_table, "tag", &["signing_key", "max_age_minutes", "keys"])?;
    let Some(signing) = Doc::get(tag_table, "signing_key") else {
        return doc.err("tag.signing_key", tag.span(), "missing: the key id (0-7) new tags are signed with");
    };
    let signing_id = doc.integer("tag.signing_key", signing, 0, 7)? as u8;
    let mut ring = match KeyRing::new(signing_id) {
        Ok(r) => r,
        Err(e) => return doc.err("tag.signing_key", signing.span(), e.to_string()),
    };
    if let Some(age) = Doc::get(tag_table, "max_age_minutes") {
        ring.set_max_age_minutes(doc.integer("tag.max_age_minutes", age, 1, i64::from(MAX_AGE_MINUTES))? as u32);
    }
    let Some(keys) = Doc::get(tag_table, "keys") else {
        return doc.err("tag.keys", tag.span(), "missing: at least one [[tag.keys]] entry with id and secret");
    };
    let Some(list) = keys.get_ref().as_array() else {
        return doc.err("tag.keys", keys.span(), "expected an array of tables ([[tag.keys]])");
    };
    let mut seen = [false; crate::tag::KEY_SLOTS];
    for (i, entry) in list.iter().enumerate() {
        let at = format!("tag.keys[{i}]");
        let Some(t) = entry.get_ref().as_table() else {
            return doc.err(&at, entry.span(), "expected a table with id and secret");
        };
        doc.only(t, &at, &["id", "secret", "secret_file"])?;
        let Some(id) = Doc::get(t, "id") else {
            return doc.err(&format!("{at}.id"), entry.span(), "missing: the key id (0-7)");
        };
        let id_n = doc.integer(&format!("{at}.id"), id, 0, 7)? as u8;
        if std::mem::replace(&mut seen[usize::from(id_n)], true) {
            return doc.err(&format!("{at}.id"), id.span(), format!("key id {id_n} is defined twice"));
        }
        let (name, value, hex) = match (Doc::get(t, "secret"), Doc::get(t, "secret_file")) {
            (Some(secret), None) => {
                let name = format!("{at}.secret");
                let hex = doc.string(&name, secret)?.to_owned();
                (name, secret, hex)
            }
            (None, Some(file)) => {
                let name = format!("{at}.secret_file");
                let path = doc.string(&name, file)?;
                match std::fs::read_to_string(path) {
                    Ok(text) => (name, file, text.trim().to_owned()),
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
            Err(e) => return doc.err(&name, value.span(), e.to_string()),
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

        let e = load_keyring("[other]\n").unwrap_err();
        assert_eq!(e.key, "tag");
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
