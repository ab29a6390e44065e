//! Message records: one JSON line per step of each message's life, written by the
//! records thread from the workers' events ([`crate::flow::records`]) to a file that
//! rotates at a size (`records.jsonl`, `records.jsonl.1`, ... up to `[records] files`),
//! so the disk they take is bounded. `iwf trace` reads them back
//! ([`trace`]): the tool for a receipt dispute.
//!
//! A record names its message three ways, whichever it knows: `tag` (the tag iwf gave a
//! legacy user's message, which the converged side echoes as `imdn.Message-ID` and the
//! legacy system got as message_id), `msg` (the tag's system:minutes:sequence, the same
//! for every part's tag of a concatenated message), `message_id` (a converged user's
//! `imdn.Message-ID`) and `smsc_id` (the id the legacy system gave a part).
use crate::control::config::file::File;
use crate::control::config::{ConfigError, Doc};
use serde::{Deserialize, Serialize};
use std::fs::{self, File as FsFile, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How a record shows a party's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// As sent.
    Full,
    /// The digits but the first four and the last two as `*` (the default): enough to
    /// tell a customer's number in a dispute, not enough to read it off a disk.
    Masked,
    /// Not written.
    Omitted,
}

/// `[records]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsConfig {
    /// The current file; `None`: no records.
    pub path: Option<PathBuf>,
    /// A file is rotated before it passes this size.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub files: u32,
    /// How addresses are written.
    pub addresses: Addresses,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig { path: None, max_file_bytes: 64 << 20, files: 9, addresses: Addresses::Masked }
    }
}

impl RecordsConfig {
    /// `[records]` of a file read.
    pub(crate) fn load(doc: &Doc<'_>, file: &File) -> Result<RecordsConfig, ConfigError> {
        let mut c = RecordsConfig::default();
        let Some(r) = &file.records else { return Ok(c) };
        let r = r.get_ref();
        if let Some(v) = &r.path {
            if v.get_ref().is_empty() {
                return doc.err("records.path", v.span(), "an empty path: leave the key out for no records");
            }
            c.path = Some(PathBuf::from(v.get_ref()));
        }
        c.max_file_bytes = doc.integer_or("records.max_file_mb", &r.max_file_mb, 1, 65_536, 64)? as u64 * (1 << 20);
        c.files = doc.integer_or("records.files", &r.files, 0, 1000, 9)? as u32;
        if let Some(v) = &r.addresses {
            c.addresses = match v.get_ref().as_str() {
                "full" => Addresses::Full,
                "masked" => Addresses::Masked,
                "omitted" => Addresses::Omitted,
                other => {
                    return doc.err(
                        "records.addresses",
                        v.span(),
                        format!("`{other}`: expected \"full\", \"masked\" or \"omitted\""),
                    )
                }
            };
        }
        Ok(c)
    }

    /// The files, oldest first: `path.N`, ..., `path.1`, `path`.
    pub fn files_oldest_first(path: &Path, files: u32) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = (1..=files).rev().map(|i| rotated(path, i)).collect();
        v.push(path.to_path_buf());
        v
    }
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// One record as written (and read back by `iwf trace`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// What happened ([`Kind::name`]).
    pub event: String,
    /// `legacy-to-converged` or `converged-to-legacy`.
    pub direction: String,
    /// The legacy system's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    /// A legacy user's message: its tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// The tag's system:minutes:sequence (every part's tag of one message has it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    /// A converged user's message: its `imdn.Message-ID`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// The legacy system's message_id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub smsc_id: String,
    /// The sender.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The recipient.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// A receipt state or disposition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// SIP status (`sip_status`) or SMPP command_status (`command_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_status: Option<u32>,
    /// SMPP command_status, as 0x hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command_status: String,
    /// Parts of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u16>,
    /// How the receipts ended (`delivered`, `stored`, `refused`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// The worker.
    pub core: u16,
}

/// The `msg` of a tag's fields.
pub fn msg_key(system: u16, minutes: u32, sequence: u32) -> String {
    format!("{system}:{minutes}:{sequence}")
}

/// `s` with its digits but the first four and the last two as `*`.
pub fn mask(s: &str) -> String {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if digits <= 6 {
        return s.to_string();
    }
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen > 4 && seen <= digits - 2 {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// UTC time of Unix milliseconds, `2026-12-07T15:04:05.123Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, unix_ms % 1000)
}

/// The records file being written, rotated at its size.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    max_bytes: u64,
    files: u32,
    addresses: Addresses,
    out: BufWriter<FsFile>,
    size: u64,
    line: Vec<u8>,
}

impl Writer {
    /// Opens (appends to) the records file of `c`; `None` when records are off.
    pub fn open(c: &RecordsConfig) -> std::io::Result<Option<Writer>> {
        let Some(path) = &c.path else { return Ok(None) };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let size = f.metadata()?.len();
        Ok(Some(Writer {
            path: path.clone(),
            max_bytes: c.max_file_bytes,
            files: c.files,
            addresses: c.addresses,
            out: BufWriter::with_capacity(256 * 1024, f),
            size,
            line: Vec::with_capacity(512),
        }))
    }

    /// How this file shows addresses.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Writes `r`.
    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, r).map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        if self.size > 0 && self.size + self.line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(&self.line)?;
        self.size += self.line.len() as u64;
        Ok(())
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.files == 0 {
            let f = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?;
            self.out = BufWriter::with_capacity(256 * 1024, f);
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(&self.path, self.files));
        for i in (1..self.files).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        let f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.out = BufWriter::with_capacity(256 * 1024, f);
        self.size = 0;
        Ok(())
    }
}

/// The records about one message: those `query` names (a tag, a `msg`, an
/// `imdn.Message-ID`, an SMSC's message_id, or a number), and those linked to them by
/// any of their ids, from the files in `files` (oldest first), in time order.
pub fn trace(files: &[PathBuf], query: &str) -> std::io::Result<Vec<Record>> {
    let mut keys = std::collections::HashSet::new();
    keys.insert(query.to_string());
    if let Ok((f, _, _)) = crate::tag::decode_unauthenticated(query.as_bytes()) {
        keys.insert(msg_key(f.system, f.minutes, f.sequence));
    }
    // The SMSC ids the message's parts were given (`system/id`), each with when. An SMSC
    // reuses its ids, so a receipt with one belongs to this message only from shortly
    // before that submission (RECEIPT_EARLY_MS) to RECEIPT_WINDOW_MS after it.
    let mut smsc: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let number: String = query.chars().filter(char::is_ascii_digit).collect();
    let is_number = number.len() >= 5 && query.trim_start_matches('+').chars().all(|c| c.is_ascii_digit());
    // A record's ids link it to others: a receipt names its message only by the
    // smsc_id, a converged message's first record by its number. Each pass adds the
    // ids of what matched; it stops when a pass finds nothing new.
    let mut found = Vec::new();
    for _ in 0..4 {
        found.clear();
        let before = keys.len() + smsc.len();
        for path in files {
            let Ok(f) = FsFile::open(path) else { continue };
            for line in BufReader::new(f).lines() {
                let line = line?;
                let Ok(r) = serde_json::from_str::<Record>(&line) else { continue };
                let ids = ids_of(&r);
                let smsc_key = (!r.smsc_id.is_empty()).then(|| format!("{}/{}", r.system, r.smsc_id));
                let at = time_ms(&r.time).unwrap_or(0);
                let by_smsc = r.event == "smsc.receipt"
                    && smsc_key
                        .as_ref()
                        .and_then(|k| smsc.get(k))
                        .is_some_and(|&since| at + RECEIPT_EARLY_MS >= since && at <= since + RECEIPT_WINDOW_MS);
                let hit = ids.iter().any(|k| keys.contains(k))
                    || by_smsc
                    || (!r.smsc_id.is_empty() && r.smsc_id == query)
                    || (is_number && (same_number(&r.from, &number) || same_number(&r.to, &number)));
                if hit {
                    keys.extend(ids);
                    if let (Some(k), false) = (smsc_key, r.event == "smsc.receipt") {
                        let since = smsc.entry(k).or_insert(at);
                        *since = (*since).min(at);
                    }
                    found.push(r);
                }
            }
        }
        if keys.len() + smsc.len() == before {
            break;
        }
    }
    found.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(found)
}

/// How long after a submission a receipt with its SMSC id is taken as its receipt: the
/// longest validity a legacy system gives a message (48 h).
const RECEIPT_WINDOW_MS: u64 = 48 * 3600 * 1000;

/// How long before a submission's record a receipt with its SMSC id is still taken as
/// its receipt: an SMSC may send the receipt before the submit_sm_resp that gives iwf
/// the id (they cross), and iwf records the receipt when it comes, holding it until the
/// resp.
const RECEIPT_EARLY_MS: u64 = 60_000;

/// Unix milliseconds of a record's time (`2026-12-07T15:04:05.123Z`).
fn time_ms(t: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, min, sec, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + min) * 60 * 1000 + sec * 1000 + ms).ok()
}

/// The ids a record links by (an SMSC's id links a receipt to a submission apart, in
/// [`trace`]).
fn ids_of(r: &Record) -> Vec<String> {
    let mut v = Vec::new();
    for k in [&r.tag, &r.msg, &r.message_id] {
        if !k.is_empty() {
            v.push(k.clone());
        }
    }
    v
}

/// Whether address `field` (as written: full or masked) is `number` (digits).
fn same_number(field: &str, number: &str) -> bool {
    let shown: Vec<char> = field.chars().filter(|c| c.is_ascii_digit() || *c == '*').collect();
    if shown.is_empty() {
        return false;
    }
    // The address's digit run is the number, or ends with it (a URI's user part with
    // a country code the query left out is not guessed at).
    let n: Vec<char> = number.chars().collect();
    shown.len() == n.len() && shown.iter().zip(&n).all(|(s, d)| *s == '*' || s == d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339_ms(1_796_659_200_001), "2026-12-07T16:00:00.001Z");
    }

    #[test]
    fn record_times_read_back() {
        for ms in [0u64, 951_827_696_789, 1_796_659_200_001] {
            assert_eq!(time_ms(&rfc3339_ms(ms)), Some(ms));
        }
    }

    #[test]
    fn masking_keeps_the_first_four_and_last_two_digits() {
        assert_eq!(mask("447700900123"), "4477******23");
        assert_eq!(mask("sip:+447700900123@ims.example"), "sip:+4477******23@ims.example");
        assert_eq!(mask("12345"), "12345");
        assert!(same_number("4477******23", "447700900123"));
        assert!(!same_number("4477******24", "447700900123"));
        assert!(same_number("sip:+447700900123@ims.example", "447700900123"));
    }

    #[test]
    fn records_rotate_at_their_size_and_keep_so_many_files() {
        let dir = std::env::temp_dir().join(format!("iwf-records-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("records.jsonl");
        let c = RecordsConfig { path: Some(path.clone()), max_file_bytes: 1000, files: 2, addresses: Addresses::Full };
        let mut w = Writer::open(&c).unwrap().unwrap();
        for i in 0..40u32 {
            let r = Record { event: "converged.submitted".into(), smsc_id: format!("id{i}"), ..Record::default() };
            w.write(&r).unwrap();
        }
        w.flush().unwrap();
        let files = RecordsConfig::files_oldest_first(&path, 2);
        let sizes: Vec<u64> = files.iter().map(|f| fs::metadata(f).map_or(0, |m| m.len())).collect();
        assert!(sizes.iter().all(|&s| s <= 1000) && sizes[0] > 0, "{sizes:?}");
        assert!(!rotated(&path, 3).exists());
        // The newest is in the current file, the oldest kept in .2; older ones went.
        let all: Vec<String> = files.iter().map(|f| fs::read_to_string(f).unwrap()).collect();
        assert!(all[2].contains("\"id39\""));
        assert!(!all.concat().contains("\"id0\""));
        let _ = fs::remove_dir_all(&dir);
    }
}
