//! The legacy-system tag: an authenticated, compact token carried as
//! `imdn.Message-ID` in the SIP MESSAGE iwf sends and as the SMPP `message_id` iwf
//! returns to the legacy system. When the converged user's IMDN echoes it back, iwf
//! verifies it and reads from it which legacy system the receipt belongs to, which
//! segment it stands for and which receipts that system asked for: no state is needed.
//!
//! ```text
//!  bits   field
//!  0..16  legacy system id (u16, stable index from provisioning)
//! 16..40  issue time, minutes since 2024-01-01T00:00:00Z (u24, ~31 years)
//! 40..72  sequence (u32, unique per issuer and minute)
//! 72..80  segment index (0 = the whole message, 1..=count = one SMS segment)
//! 80..88  segment count (1 for a single-part message)
//! 88..91  receipts asked for: bit 0 delivery, bit 1 failure, bit 2 user ack
//! 91..93  format version (1; 0 for tags issued before the parties were signed)
//! 93..96  key id (0..=7)
//! 96..160 MAC: SipHash-2-4 keyed with the 128-bit key, over the 12 bytes above and,
//!         from version 1, the message's parties (not carried: see below)
//! ```
//!
//! **The parties.** A version 1 MAC also covers who the message was between
//! ([`Parties`]: the legacy originator's E.164 digits or sender name, the converged
//! recipient's E.164 digits), fed to SipHash after the 12 bytes as `kind u8 | len u8 |
//! originator | len u8 | recipient`. They are not in the tag: an IMDN names them
//! itself, and [`KeyRing::verify`] takes the pairs it names as candidates and keeps the
//! one the MAC confirms. So a receipt can only be addressed to the message's own
//! parties: a replayed or rewritten IMDN cannot point a receipt elsewhere. Version 0
//! tags (MAC over the 12 bytes only) still verify until they expire, so an upgrade
//! rejects no tag in flight; their parties are whatever the IMDN says, as before.
//!
//! The 20 bytes are written big-endian and encoded as 32 characters of base32 with the
//! alphabet `0-9a-v` (no padding): the tag is exactly 32 characters of `[0-9a-z]`,
//! survives case folding (decoding ignores case), fits SMPP's 64-octet message_id and
//! any IMDN client. SipHash is a keyed PRF designed as a MAC for short inputs; its
//! 64-bit output is the MAC size the design asks for, at a few tens of nanoseconds.
#![deny(unsafe_code)]

use core::fmt;
use core::hash::Hasher;
use siphasher::sip::SipHasher24;

/// Length of an encoded tag in characters.
pub const TAG_LEN: usize = 32;
/// Length of the binary tag in bytes (12 bytes of fields + 8 bytes of MAC).
pub const TAG_BYTES: usize = 20;
/// Number of key slots (the key id is 3 bits).
pub const KEY_SLOTS: usize = 8;
/// Unix time of the tag epoch, 2024-01-01T00:00:00Z.
pub const TAG_EPOCH_UNIX: u64 = 1_704_067_200;
/// The largest minute count the 24-bit time field holds.
pub const MAX_MINUTES: u32 = (1 << 24) - 1;
/// Format version of the tags iwf issues: the MAC covers the parties.
pub const VERSION: u8 = 1;
/// The format before the parties were signed (verified until such tags expire).
pub const VERSION_UNBOUND: u8 = 0;
/// Longest party (an E.164 number is 15 digits, a sender name 11 characters).
pub const PARTY_MAX: usize = 16;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// Which receipts the legacy system asked for, so that a receipt nobody asked for is
/// never sent (`registered_delivery` bits 1-0 ask for SMSC receipts, bits 3-2 for
/// SME acknowledgements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReceiptRequest(u8);

impl ReceiptRequest {
    /// No receipt asked for.
    pub const NONE: ReceiptRequest = ReceiptRequest(0);
    /// A delivery receipt on success.
    pub const DELIVERY: ReceiptRequest = ReceiptRequest(0b001);
    /// A delivery receipt on failure.
    pub const FAILURE: ReceiptRequest = ReceiptRequest(0b010);
    /// An SME manual/user acknowledgement (the SMPP form of a read report).
    pub const USER_ACK: ReceiptRequest = ReceiptRequest(0b100);

    /// Builds a request from its three bits (higher bits are ignored).
    pub const fn from_bits(bits: u8) -> Self {
        ReceiptRequest(bits & 0b111)
    }
    /// The three bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every receipt in `other` was asked for.
    pub const fn contains(self, other: ReceiptRequest) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of two requests.
    pub const fn union(self, other: ReceiptRequest) -> Self {
        ReceiptRequest(self.0 | other.0)
    }
}

/// Who a message was between, as a version 1 tag's MAC covers them: the legacy
/// originator (E.164 digits without `+`, or an alphanumeric sender name) and the
/// converged recipient (E.164 digits without `+`). Empty parties are allowed (tools
/// and tests); iwf always signs the message's own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Parties {
    originator: [u8; PARTY_MAX],
    originator_len: u8,
    originator_is_name: bool,
    recipient: [u8; PARTY_MAX],
    recipient_len: u8,
}

/// The legacy end of [`Parties`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Originator<'a> {
    /// A number: E.164 digits without `+`.
    Number(&'a str),
    /// An alphanumeric sender name.
    Name(&'a str),
}

impl Parties {
    /// No parties (what a version 0 tag's fields carry).
    pub const NONE: Parties = Parties {
        originator: [0; PARTY_MAX],
        originator_len: 0,
        originator_is_name: false,
        recipient: [0; PARTY_MAX],
        recipient_len: 0,
    };

    /// `originator` to `recipient` (E.164 digits); `None` when either is longer than
    /// [`PARTY_MAX`].
    pub fn new(originator: Originator<'_>, recipient: &str) -> Option<Parties> {
        let (o, is_name) = match originator {
            Originator::Number(d) => (d.as_bytes(), false),
            Originator::Name(n) => (n.as_bytes(), true),
        };
        let r = recipient.as_bytes();
        let mut p = Parties { originator_is_name: is_name, ..Parties::NONE };
        p.originator.get_mut(..o.len())?.copy_from_slice(o);
        p.recipient.get_mut(..r.len())?.copy_from_slice(r);
        p.originator_len = o.len() as u8;
        p.recipient_len = r.len() as u8;
        Some(p)
    }

    /// The legacy originator.
    pub fn originator(&self) -> Originator<'_> {
        let b = self.originator.get(..usize::from(self.originator_len)).unwrap_or_default();
        let s = core::str::from_utf8(b).unwrap_or("");
        if self.originator_is_name {
            Originator::Name(s)
        } else {
            Originator::Number(s)
        }
    }

    /// The converged recipient's E.164 digits.
    pub fn recipient(&self) -> &str {
        core::str::from_utf8(self.recipient.get(..usize::from(self.recipient_len)).unwrap_or_default()).unwrap_or("")
    }

    /// Whether these are [`Parties::NONE`].
    pub fn is_none(&self) -> bool {
        *self == Parties::NONE
    }

    fn feed(&self, h: &mut SipHasher24) {
        let o = self.originator.get(..usize::from(self.originator_len)).unwrap_or_default();
        let r = self.recipient.get(..usize::from(self.recipient_len)).unwrap_or_default();
        h.write(&[u8::from(self.originator_is_name), self.originator_len]);
        h.write(o);
        h.write(&[self.recipient_len]);
        h.write(r);
    }
}

impl fmt::Debug for Parties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Parties({:?} -> {})", self.originator(), self.recipient())
    }
}

/// What a tag carries, and the parties its MAC covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagFields {
    /// The legacy system the message came from (provisioning index).
    pub system: u16,
    /// Issue time in minutes since [`TAG_EPOCH_UNIX`] (24 bits).
    pub minutes: u32,
    /// Sequence number, unique per issuer within a minute.
    pub sequence: u32,
    /// 0 for the whole message, 1..=`segment_count` for one segment.
    pub segment_index: u8,
    /// Number of SMS segments the legacy system submitted (≥ 1).
    pub segment_count: u8,
    /// Receipts the legacy system asked for.
    pub receipts: ReceiptRequest,
    /// Who the message was between (covered by the MAC, not carried; [`Parties::NONE`]
    /// in the fields of a version 0 tag).
    pub parties: Parties,
}

impl TagFields {
    /// The tag of segment `index` (1-based) of this message. For a single-part message
    /// the segment tag is the message tag itself (index 0), so that the `message_id`
    /// returned to the legacy system equals the `imdn.Message-ID` the IMDN echoes.
    pub fn segment(self, index: u8) -> TagFields {
        let segment_index = if self.segment_count <= 1 { 0 } else { index };
        TagFields { segment_index, ..self }
    }

    /// Unix time of issue, in seconds.
    pub fn issued_unix(&self) -> u64 {
        TAG_EPOCH_UNIX + u64::from(self.minutes) * 60
    }

    /// Minutes since the tag epoch for a Unix time, saturating at the field's range.
    pub fn minutes_at(unix_secs: u64) -> u32 {
        let m = unix_secs.saturating_sub(TAG_EPOCH_UNIX) / 60;
        if m > u64::from(MAX_MINUTES) {
            MAX_MINUTES
        } else {
            m as u32
        }
    }

    fn to_body(self, key_id: u8, version: u8) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&self.system.to_be_bytes());
        let m = self.minutes.min(MAX_MINUTES).to_be_bytes();
        b[2..5].copy_from_slice(&m[1..4]);
        b[5..9].copy_from_slice(&self.sequence.to_be_bytes());
        b[9] = self.segment_index;
        b[10] = self.segment_count;
        b[11] = (self.receipts.bits() << 5) | ((version & 0b11) << 3) | (key_id & 0b111);
        b
    }

    fn from_body(b: &[u8; 12]) -> (TagFields, u8, u8) {
        let fields = TagFields {
            system: u16::from_be_bytes([b[0], b[1]]),
            minutes: u32::from_be_bytes([0, b[2], b[3], b[4]]),
            sequence: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            segment_index: b[9],
            segment_count: b[10],
            receipts: ReceiptRequest::from_bits(b[11] >> 5),
            parties: Parties::NONE,
        };
        (fields, (b[11] >> 3) & 0b11, b[11] & 0b111)
    }
}

/// A 128-bit tag key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TagKey {
    k0: u64,
    k1: u64,
}

impl TagKey {
    /// A key from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&bytes[..8]);
        b.copy_from_slice(&bytes[8..]);
        TagKey { k0: u64::from_le_bytes(a), k1: u64::from_le_bytes(b) }
    }

    /// A key from 32 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        Ok(TagKey::from_bytes(key_bytes(hex)?))
    }

    /// A key from 32 hexadecimal digits that could be a secret: one that is all one
    /// byte, counts in equal steps or holds fewer than 8 distinct byte values is
    /// refused ([`KeyError::Weak`]): those are placeholders (the zeros of an example
    /// file) or typed by hand, and anyone who guesses one can forge receipts.
    pub fn from_hex_strong(hex: &str) -> Result<Self, KeyError> {
        let b = key_bytes(hex)?;
        if let Some(why) = weakness(&b) {
            return Err(KeyError::Weak(why));
        }
        Ok(TagKey::from_bytes(b))
    }

    fn mac(&self, body: &[u8; 12], parties: Option<&Parties>) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(body);
        if let Some(p) = parties {
            p.feed(&mut h);
        }
        h.finish()
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(..)")
    }
}

fn key_bytes(hex: &str) -> Result<[u8; 16], KeyError> {
    let h = hex.as_bytes();
    if h.len() != 32 {
        return Err(KeyError::BadHexLength);
    }
    let mut out = [0u8; 16];
    for (i, pair) in h.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(KeyError::BadHexDigit)?;
        let lo = hex_val(pair[1]).ok_or(KeyError::BadHexDigit)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

/// Why 16 key bytes cannot be a random secret, if they cannot. A random key has
/// about 15.3 distinct byte values; fewer than 8 happens with odds far below
/// 2^-64, so no random key is ever refused.
fn weakness(b: &[u8; 16]) -> Option<&'static str> {
    let step = b[1].wrapping_sub(b[0]);
    if b.windows(2).all(|w| w[1] == w[0]) {
        return Some("every byte is the same");
    }
    if b.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        return Some("its bytes count in equal steps");
    }
    let mut seen = [false; 256];
    let distinct = b.iter().filter(|&&x| !core::mem::replace(&mut seen[usize::from(x)], true)).count();
    if distinct < 8 {
        return Some("it holds fewer than 8 distinct byte values");
    }
    None
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// A key is 32 hexadecimal digits.
    BadHexLength,
    /// A character that is not a hexadecimal digit.
    BadHexDigit,
    /// Key ids are 0..=7.
    BadKeyId,
    /// The signing key id has no key.
    NoSigningKey,
    /// The key cannot be a random secret (see [`TagKey::from_hex_strong`]).
    Weak(&'static str),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::BadHexLength => "a tag key is 32 hexadecimal digits (128 bits)",
            KeyError::BadHexDigit => "a tag key may only hold hexadecimal digits",
            KeyError::BadKeyId => "a tag key id is 0 to 7",
            KeyError::NoSigningKey => "the signing key id names no configured key",
            KeyError::Weak(why) => {
                return write!(f, "a weak tag key ({why}): make a random one with `iwf keygen`");
            }
        })
    }
}

impl std::error::Error for KeyError {}

/// The keys tags are signed and verified with. Several keys are live at once so keys can
/// rotate: new tags are signed with `signing`, tags signed with any live key verify.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: [Option<TagKey>; KEY_SLOTS],
    signing: u8,
    max_age_minutes: u32,
    max_skew_minutes: u32,
}

impl KeyRing {
    /// Default validity of a tag: 7 days (the usual SMSC validity period ceiling).
    pub const DEFAULT_MAX_AGE_MINUTES: u32 = 7 * 24 * 60;
    /// How far in the future an issue time may lie (clock skew between nodes).
    pub const DEFAULT_MAX_SKEW_MINUTES: u32 = 5;

    /// An empty key ring signing with key `signing` (add the key before use).
    pub fn new(signing: u8) -> Result<Self, KeyError> {
        if usize::from(signing) >= KEY_SLOTS {
            return Err(KeyError::BadKeyId);
        }
        Ok(KeyRing {
            keys: [None; KEY_SLOTS],
            signing,
            max_age_minutes: Self::DEFAULT_MAX_AGE_MINUTES,
            max_skew_minutes: Self::DEFAULT_MAX_SKEW_MINUTES,
        })
    }

    /// Installs `key` under `id`.
    pub fn insert(&mut self, id: u8, key: TagKey) -> Result<(), KeyError> {
        let slot = self.keys.get_mut(usize::from(id)).ok_or(KeyError::BadKeyId)?;
        *slot = Some(key);
        Ok(())
    }

    /// Removes the key under `id`; tags signed with it no longer verify.
    pub fn remove(&mut self, id: u8) {
        if let Some(slot) = self.keys.get_mut(usize::from(id)) {
            *slot = None;
        }
    }

    /// Chooses the key new tags are signed with.
    pub fn set_signing(&mut self, id: u8) -> Result<(), KeyError> {
        match self.keys.get(usize::from(id)) {
            Some(Some(_)) => {
                self.signing = id;
                Ok(())
            }
            Some(None) => Err(KeyError::NoSigningKey),
            None => Err(KeyError::BadKeyId),
        }
    }

    /// Sets how long a tag stays valid, in minutes.
    pub fn set_max_age_minutes(&mut self, minutes: u32) {
        self.max_age_minutes = minutes;
    }

    /// The signing key id.
    pub fn signing(&self) -> u8 {
        self.signing
    }

    /// The ids that hold a key.
    pub fn key_ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().enumerate().filter(|(_, k)| k.is_some()).map(|(i, _)| i as u8)
    }

    /// Signs `fields` (their parties included: version 1) with the signing key and
    /// writes the 32-character tag.
    pub fn encode(&self, fields: &TagFields) -> Result<Tag, KeyError> {
        let key = self.keys[usize::from(self.signing)].ok_or(KeyError::NoSigningKey)?;
        let body = fields.to_body(self.signing, VERSION);
        let mac = key.mac(&body, Some(&fields.parties));
        let mut raw = [0u8; TAG_BYTES];
        raw[..12].copy_from_slice(&body);
        raw[12..].copy_from_slice(&mac.to_be_bytes());
        Ok(Tag(base32_encode(&raw)))
    }

    /// Signs `fields` as a version 0 tag (MAC over the 12 bytes only): only to re-sign
    /// the segment tags of a message whose own tag verified as version 0, so that its
    /// receipts carry the ids the legacy system was given.
    pub fn encode_unbound(&self, fields: &TagFields) -> Result<Tag, KeyError> {
        let key = self.keys[usize::from(self.signing)].ok_or(KeyError::NoSigningKey)?;
        let body = fields.to_body(self.signing, VERSION_UNBOUND);
        let mac = key.mac(&body, None);
        let mut raw = [0u8; TAG_BYTES];
        raw[..12].copy_from_slice(&body);
        raw[12..].copy_from_slice(&mac.to_be_bytes());
        Ok(Tag(base32_encode(&raw)))
    }

    /// Decodes and verifies a tag at Unix time `now_unix`. Case is ignored. A version
    /// 1 tag verifies only with its own parties: each of `candidates` (the pairs the
    /// IMDN names) is tried and the fields come back with the one the MAC confirms. A
    /// version 0 tag verifies without them and comes back with [`Parties::NONE`].
    pub fn verify(&self, text: &[u8], now_unix: u64, candidates: &[Parties]) -> Result<TagFields, TagError> {
        let (mut fields, version, key_id, body, mac) = decode_unverified(text)?;
        let key = self.keys.get(usize::from(key_id)).copied().flatten().ok_or(TagError::UnknownKey)?;
        // One 64-bit comparison per candidate: no early exit on a partial match.
        if version == VERSION_UNBOUND {
            if key.mac(&body, None) ^ mac != 0 {
                return Err(TagError::BadMac);
            }
        } else {
            let p = candidates.iter().find(|p| key.mac(&body, Some(p)) ^ mac == 0).ok_or(TagError::BadMac)?;
            fields.parties = *p;
        }
        if fields.segment_count == 0 || fields.segment_index > fields.segment_count {
            return Err(TagError::BadSegment);
        }
        let now = TagFields::minutes_at(now_unix);
        if fields.minutes > now.saturating_add(self.max_skew_minutes) {
            return Err(TagError::FromFuture);
        }
        if now.saturating_sub(fields.minutes) > self.max_age_minutes {
            return Err(TagError::Expired);
        }
        Ok(fields)
    }
}

/// Decodes a tag without checking its MAC or age: for the operator's dissector only.
/// Returns the fields, the key id and the format version.
pub fn decode_unauthenticated(text: &[u8]) -> Result<(TagFields, u8, u8), TagError> {
    let (fields, version, key_id, _, _) = decode_unverified(text)?;
    Ok((fields, key_id, version))
}

fn decode_unverified(text: &[u8]) -> Result<(TagFields, u8, u8, [u8; 12], u64), TagError> {
    if text.len() != TAG_LEN {
        return Err(TagError::BadLength);
    }
    let raw = base32_decode(text)?;
    let mut body = [0u8; 12];
    body.copy_from_slice(&raw[..12]);
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&raw[12..]);
    let (fields, version, key_id) = TagFields::from_body(&body);
    if version != VERSION && version != VERSION_UNBOUND {
        return Err(TagError::UnsupportedVersion);
    }
    Ok((fields, version, key_id, body, u64::from_be_bytes(mac)))
}

/// Why a tag routes nowhere. Each variant is a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagError {
    /// Not 32 characters: not an iwf tag (or truncated).
    BadLength,
    /// A character outside `[0-9a-vA-V]`.
    BadCharacter,
    /// A format version this iwf does not know.
    UnsupportedVersion,
    /// Signed with a key id that holds no key (retired, or forged).
    UnknownKey,
    /// The MAC does not match: forged or altered.
    BadMac,
    /// Segment index above segment count, or a zero count.
    BadSegment,
    /// Issued longer ago than the validity allows.
    Expired,
    /// Issued in the future beyond the allowed clock skew.
    FromFuture,
}

impl TagError {
    /// Every reason, for counters.
    pub const ALL: [TagError; 8] = [
        TagError::BadLength,
        TagError::BadCharacter,
        TagError::UnsupportedVersion,
        TagError::UnknownKey,
        TagError::BadMac,
        TagError::BadSegment,
        TagError::Expired,
        TagError::FromFuture,
    ];

    /// A short snake_case name for metrics labels.
    pub fn reason(self) -> &'static str {
        match self {
            TagError::BadLength => "bad_length",
            TagError::BadCharacter => "bad_character",
            TagError::UnsupportedVersion => "unsupported_version",
            TagError::UnknownKey => "unknown_key",
            TagError::BadMac => "bad_mac",
            TagError::BadSegment => "bad_segment",
            TagError::Expired => "expired",
            TagError::FromFuture => "from_future",
        }
    }
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagError::BadLength => "tag is not 32 characters long",
            TagError::BadCharacter => "tag holds a character outside [0-9a-v]",
            TagError::UnsupportedVersion => "tag format version is not supported",
            TagError::UnknownKey => "tag is signed with a key id that holds no key",
            TagError::BadMac => "tag MAC does not verify (forged or altered)",
            TagError::BadSegment => "tag segment index is above its segment count",
            TagError::Expired => "tag has expired",
            TagError::FromFuture => "tag issue time lies in the future",
        })
    }
}

impl std::error::Error for TagError {}

/// An encoded tag: 32 ASCII characters of `[0-9a-v]`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag([u8; TAG_LEN]);

impl Tag {
    /// The tag's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8; TAG_LEN] {
        &self.0
    }
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        // The alphabet is ASCII, so this never fails; fall back to "" rather than panic.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.as_str())
    }
}

fn base32_encode(raw: &[u8; TAG_BYTES]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    // 20 bytes = 4 groups of 5 bytes = 4 groups of 8 characters.
    for (g, chunk) in raw.chunks_exact(5).enumerate() {
        let mut v = 0u64;
        for &b in chunk {
            v = (v << 8) | u64::from(b);
        }
        for i in 0..8 {
            let shift = 35 - 5 * i;
            out[g * 8 + i] = ALPHABET[((v >> shift) & 31) as usize];
        }
    }
    out
}

/// The 5-bit value of each base32 character (`0-9a-v`, either case); 0xFF for the rest,
/// so one OR over a tag's values tells whether any was bad (bit 7).
static BASE32_VALUES: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0u8;
    while i < 10 {
        t[(b'0' + i) as usize] = i;
        i += 1;
    }
    let mut i = 0u8;
    while i < 22 {
        t[(b'a' + i) as usize] = 10 + i;
        t[(b'A' + i) as usize] = 10 + i;
        i += 1;
    }
    t
};

fn base32_decode(text: &[u8]) -> Result<[u8; TAG_BYTES], TagError> {
    let mut raw = [0u8; TAG_BYTES];
    // No branch per character: the values are OR-ed and checked once.
    let mut seen = 0u8;
    for (g, chunk) in text.chunks_exact(8).enumerate() {
        let mut v = 0u64;
        for &c in chunk {
            let d = BASE32_VALUES[usize::from(c)];
            seen |= d;
            v = (v << 5) | u64::from(d & 0x1F);
        }
        for i in 0..5 {
            if let Some(b) = raw.get_mut(g * 5 + i) {
                *b = (v >> (32 - 8 * i)) as u8;
            }
        }
    }
    if seen & 0x80 != 0 {
        return Err(TagError::BadCharacter);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_790_000_000; // 2026-09-21

    fn ring() -> KeyRing {
        let mut r = KeyRing::new(1).unwrap();
        r.insert(1, TagKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
        r.insert(2, TagKey::from_hex("f0e0d0c0b0a090807060504030201000").unwrap()).unwrap();
        r
    }

    fn fields() -> TagFields {
        TagFields {
            system: 3,
            minutes: TagFields::minutes_at(NOW),
            sequence: 0xdead_beef,
            segment_index: 0,
            segment_count: 1,
            receipts: ReceiptRequest::DELIVERY.union(ReceiptRequest::FAILURE),
            parties: parties(),
        }
    }

    fn parties() -> Parties {
        Parties::new(Originator::Number("447000100001"), "447900000001").unwrap()
    }

    #[test]
    fn encode_is_32_chars_of_the_alphabet() {
        let t = ring().encode(&fields()).unwrap();
        assert_eq!(t.as_str().len(), TAG_LEN);
        assert!(t.as_str().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(&c)));
    }

    #[test]
    fn round_trip_and_case_folding() {
        let r = ring();
        let t = r.encode(&fields()).unwrap();
        assert_eq!(r.verify(t.as_bytes(), NOW, &[parties()]).unwrap(), fields());
        let upper = t.as_str().to_ascii_uppercase();
        assert_eq!(r.verify(upper.as_bytes(), NOW, &[parties()]).unwrap(), fields());
    }

    #[test]
    fn rotation_keeps_old_tags_valid() {
        let mut r = ring();
        let old = r.encode(&fields()).unwrap();
        r.set_signing(2).unwrap();
        let new = r.encode(&fields()).unwrap();
        assert_ne!(old, new);
        assert!(r.verify(old.as_bytes(), NOW, &[parties()]).is_ok());
        assert!(r.verify(new.as_bytes(), NOW, &[parties()]).is_ok());
        r.remove(1);
        assert_eq!(r.verify(old.as_bytes(), NOW, &[parties()]), Err(TagError::UnknownKey));
        assert!(r.verify(new.as_bytes(), NOW, &[parties()]).is_ok());
    }

    #[test]
    fn other_key_does_not_verify() {
        let t = ring().encode(&fields()).unwrap();
        let mut other = KeyRing::new(1).unwrap();
        other.insert(1, TagKey::from_hex("ffffffffffffffffffffffffffffffff").unwrap()).unwrap();
        assert_eq!(other.verify(t.as_bytes(), NOW, &[parties()]), Err(TagError::BadMac));
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let r = ring();
        let t = r.encode(&fields()).unwrap();
        for i in 0..TAG_LEN {
            for &c in ALPHABET.iter() {
                let mut b = *t.as_bytes();
                if b[i] == c {
                    continue;
                }
                b[i] = c;
                assert!(r.verify(&b, NOW, &[parties()]).is_err(), "altered at {i} to {}", c as char);
            }
        }
    }

    #[test]
    fn malformed_inputs() {
        let r = ring();
        let t = r.encode(&fields()).unwrap();
        assert_eq!(r.verify(&t.as_bytes()[..31], NOW, &[parties()]), Err(TagError::BadLength));
        assert_eq!(r.verify(b"", NOW, &[parties()]), Err(TagError::BadLength));
        let mut b = *t.as_bytes();
        b[5] = b'w';
        assert_eq!(r.verify(&b, NOW, &[parties()]), Err(TagError::BadCharacter));
        b[5] = b'-';
        assert_eq!(r.verify(&b, NOW, &[parties()]), Err(TagError::BadCharacter));
    }

    #[test]
    fn expiry_and_future() {
        let r = ring();
        let t = r.encode(&fields()).unwrap();
        let week = u64::from(KeyRing::DEFAULT_MAX_AGE_MINUTES) * 60;
        assert!(r.verify(t.as_bytes(), NOW + week, &[parties()]).is_ok());
        assert_eq!(r.verify(t.as_bytes(), NOW + week + 120, &[parties()]), Err(TagError::Expired));
        assert_eq!(r.verify(t.as_bytes(), NOW - 3600, &[parties()]), Err(TagError::FromFuture));
    }

    #[test]
    fn segments() {
        let r = ring();
        let whole = TagFields { segment_count: 3, ..fields() };
        let tags: Vec<Tag> = (1..=3).map(|i| r.encode(&whole.segment(i)).unwrap()).collect();
        let w = r.encode(&whole).unwrap();
        assert!(!tags.contains(&w));
        for (i, t) in tags.iter().enumerate() {
            let f = r.verify(t.as_bytes(), NOW, &[parties()]).unwrap();
            assert_eq!(f.segment_index as usize, i + 1);
            assert_eq!(f.segment_count, 3);
        }
        // A single-part message's segment tag is the message tag.
        assert_eq!(r.encode(&fields().segment(1)).unwrap(), r.encode(&fields()).unwrap());
        // Index above count is refused even with a valid MAC.
        let bad = r.encode(&TagFields { segment_index: 4, ..whole }).unwrap();
        assert_eq!(r.verify(bad.as_bytes(), NOW, &[parties()]), Err(TagError::BadSegment));
    }

    #[test]
    fn weak_keys_are_refused_and_random_ones_accepted() {
        for (hex, why) in [
            ("00000000000000000000000000000000", "every byte is the same"),
            ("abababababababababababababababab", "every byte is the same"),
            ("000102030405060708090a0b0c0d0e0f", "its bytes count in equal steps"),
            ("f0e0d0c0b0a090807060504030201000", "its bytes count in equal steps"),
            ("01020102010201020102010201020102", "it holds fewer than 8 distinct byte values"),
            ("31323334353637313233343536373132", "it holds fewer than 8 distinct byte values"),
        ] {
            assert_eq!(TagKey::from_hex_strong(hex), Err(KeyError::Weak(why)), "{hex}");
            assert!(TagKey::from_hex(hex).is_ok(), "the codec itself reads any 32 digits");
        }
        assert!(TagKey::from_hex_strong("6c61622d6b65792d6f6e652d31323334").is_ok());
        assert!(TagKey::from_hex_strong("9f3c2a71d04be85a6e17c3f20b8d9e44").is_ok());
        assert!(KeyError::Weak("x").to_string().contains("iwf keygen"));
    }

    #[test]
    fn key_errors() {
        assert_eq!(TagKey::from_hex("00"), Err(KeyError::BadHexLength));
        assert_eq!(TagKey::from_hex("zz0102030405060708090a0b0c0d0e0f"), Err(KeyError::BadHexDigit));
        assert!(KeyRing::new(8).is_err());
        let mut r = KeyRing::new(0).unwrap();
        assert_eq!(r.encode(&fields()), Err(KeyError::NoSigningKey));
        assert_eq!(r.set_signing(3), Err(KeyError::NoSigningKey));
        assert_eq!(r.insert(9, TagKey::from_bytes([0; 16])), Err(KeyError::BadKeyId));
    }

    /// A tag names its message's parties: verified with another pair (a replay aimed at
    /// someone else) it fails; among candidates, the one that is the message's is kept.
    #[test]
    fn the_parties_are_signed_and_chosen_by_the_mac() {
        let r = ring();
        let t = r.encode(&fields()).unwrap();
        let other = Parties::new(Originator::Number("447000100099"), "447900000001").unwrap();
        let swapped = Parties::new(Originator::Number("447900000001"), "447000100001").unwrap();
        let named = Parties::new(Originator::Name("BANK"), "447900000001").unwrap();
        for wrong in [other, swapped, named, Parties::NONE] {
            assert_eq!(r.verify(t.as_bytes(), NOW, &[wrong]), Err(TagError::BadMac), "{wrong:?}");
        }
        assert_eq!(r.verify(t.as_bytes(), NOW, &[]), Err(TagError::BadMac));
        let got = r.verify(t.as_bytes(), NOW, &[other, parties(), named]).unwrap();
        assert_eq!(got.parties, parties());
        assert_eq!(got.parties.originator(), Originator::Number("447000100001"));
        assert_eq!(got.parties.recipient(), "447900000001");
        // A sender name is a party too, told apart from digits.
        let from_name = r.encode(&TagFields { parties: named, ..fields() }).unwrap();
        assert_eq!(r.verify(from_name.as_bytes(), NOW, &[named]).unwrap().parties, named);
        let digits_named = Parties::new(Originator::Number("BANK"), "447900000001").unwrap();
        assert_eq!(r.verify(from_name.as_bytes(), NOW, &[digits_named]), Err(TagError::BadMac));
        assert!(Parties::new(Originator::Number("12345678901234567"), "1").is_none());
    }

    /// Tags issued before the parties were signed (version 0) verify until they expire.
    #[test]
    fn version_0_tags_still_verify() {
        let r = ring();
        let key = TagKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        let body = fields().to_body(1, VERSION_UNBOUND);
        let mut raw = [0u8; TAG_BYTES];
        raw[..12].copy_from_slice(&body);
        raw[12..].copy_from_slice(&key.mac(&body, None).to_be_bytes());
        let old = base32_encode(&raw);
        let got = r.verify(&old, NOW, &[parties()]).unwrap();
        assert!(got.parties.is_none(), "its parties are not known: the IMDN's are used");
        assert_eq!(TagFields { parties: parties(), ..got }, fields());
        assert_eq!(r.verify(&old, NOW + 8 * 86_400, &[]), Err(TagError::Expired));
        // Any other version is refused.
        let mut raw3 = raw;
        raw3[11] |= 0b11 << 3;
        assert_eq!(r.verify(&base32_encode(&raw3), NOW, &[]), Err(TagError::UnsupportedVersion));
    }

    #[test]
    fn known_vector_is_stable() {
        // Freezes the wire format: a change here breaks every tag in flight.
        let f = TagFields {
            system: 1,
            minutes: 0,
            sequence: 1,
            segment_index: 0,
            segment_count: 1,
            receipts: ReceiptRequest::DELIVERY,
            parties: Parties::NONE,
        };
        let body = f.to_body(1, VERSION_UNBOUND);
        // Last byte: receipts 001 (delivery), version 00, key id 001.
        let flags: u8 = (0b001 << 5) | 0b001;
        assert_eq!(body, [0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, flags]);
        // Version 1: the same bytes but for the version bits.
        assert_eq!(f.to_body(1, VERSION)[11], flags | (1 << 3));
        let t = ring().encode(&f).unwrap();
        // (the version bits sit in byte 11, past the 16 characters shown)
        assert_eq!(&t.as_str()[..16], "000g000000000080");
    }

    proptest! {
        #[test]
        fn prop_round_trip(system: u16, minutes in 0u32..=MAX_MINUTES, sequence: u32,
                           count in 1u8..=255, idx: u8, receipts in 0u8..8, key in 0u8..8) {
            let idx = idx % (count.saturating_add(1)).max(1);
            let f = TagFields { system, minutes, sequence, segment_index: idx,
                                segment_count: count, receipts: ReceiptRequest::from_bits(receipts),
                                parties: parties() };
            let mut r = KeyRing::new(key).unwrap();
            r.insert(key, TagKey::from_bytes([key; 16])).unwrap();
            let t = r.encode(&f).unwrap();
            prop_assert_eq!(r.verify(t.as_bytes(), f.issued_unix(), &[parties()]), Ok(f));
            prop_assert_eq!(decode_unauthenticated(t.as_bytes()), Ok((TagFields { parties: Parties::NONE, ..f }, key, VERSION)));
        }

        #[test]
        fn prop_garbage_never_panics(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ring().verify(&s, NOW, &[parties()]);
        }
    }
}
