//! `iwf inspect tag <TAG> --keys <FILE> [--originator X --recipient D]`: decodes a tag,
//! verifies it against the configured keys (a version 1 tag with the message's parties)
//! and shows every field, and why it would route nowhere if it would.

use crate::control::config::load_keyring;
use crate::tag::{decode_unauthenticated, Originator, Parties, TagFields};
use serde_json::{json, Value};

fn fields_json(f: &TagFields) -> Value {
    json!({
        "legacy_system": f.system,
        "issued_minutes": f.minutes,
        "issued_unix": f.issued_unix(),
        "sequence": f.sequence,
        "segment_index": f.segment_index,
        "segment_count": f.segment_count,
        "receipts": {
            "delivery": f.receipts.contains(crate::tag::ReceiptRequest::DELIVERY),
            "failure": f.receipts.contains(crate::tag::ReceiptRequest::FAILURE),
            "user_ack": f.receipts.contains(crate::tag::ReceiptRequest::USER_ACK),
        },
    })
}

/// The parties of a tool's command line: the originator as digits (an optional `+`)
/// or else a sender name, the recipient as digits.
pub fn parties_arg(originator: &str, recipient: &str) -> Result<Parties, String> {
    let o = originator.strip_prefix('+').unwrap_or(originator);
    let r = recipient.strip_prefix('+').unwrap_or(recipient);
    if !r.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("--recipient `{recipient}`: E.164 digits"));
    }
    let originator = if o.bytes().all(|b| b.is_ascii_digit()) { Originator::Number(o) } else { Originator::Name(o) };
    Parties::new(originator, r).ok_or_else(|| "--originator / --recipient: at most 16 characters each".to_string())
}

/// Inspects `tag` with the `[tag]` section of the configuration `keys_toml`, at Unix
/// time `now_unix`, `parties` being who the message was between (a version 1 tag
/// verifies only with them). A tag that fails to verify is still shown (with
/// `"valid": false` and the reason) when its characters decode; input that is no tag at
/// all is an error.
pub fn inspect_tag(tag: &str, keys_toml: &str, now_unix: u64, parties: &Parties) -> Result<Value, String> {
    let ring = load_keyring(keys_toml).map_err(|e| format!("key file: {e}"))?;
    let tag = tag.trim();
    let (fields, key_id, version) = decode_unauthenticated(tag.as_bytes()).map_err(|e| format!("not a tag: {e}"))?;
    let mut out = json!({
        "tag": tag,
        "key_id": key_id,
        "version": version,
        "fields": fields_json(&fields),
    });
    match ring.verify(tag.as_bytes(), now_unix, &[*parties]) {
        Ok(_) => {
            out["valid"] = json!(true);
        }
        Err(e) => {
            out["valid"] = json!(false);
            out["reason"] = json!(e.reason());
            out["error"] = json!(e.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{ReceiptRequest, TagFields};

    const KEYS: &str = "[tag]\nsigning_key = 1\n[[tag.keys]]\nid = 1\nsecret = \"9f3c2a71d04be85a6e17c3f20b8d9e44\"\n";

    #[test]
    fn shows_valid_and_forged() {
        let ring = load_keyring(KEYS).unwrap();
        let now = 1_790_000_000;
        let f = TagFields {
            system: 2,
            minutes: TagFields::minutes_at(now),
            sequence: 7,
            segment_index: 0,
            segment_count: 1,
            receipts: ReceiptRequest::USER_ACK,
            parties: parties_arg("+447000100001", "447900000001").unwrap(),
        };
        let p = f.parties;
        let t = ring.encode(&f).unwrap();
        let v = inspect_tag(t.as_str(), KEYS, now, &p).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["version"], 1);
        // Other parties: the MAC does not verify.
        let other = parties_arg("BANK", "447900000001").unwrap();
        assert_eq!(inspect_tag(t.as_str(), KEYS, now, &other).unwrap()["reason"], "bad_mac");
        assert!(parties_arg("1", "+44x").is_err());
        assert_eq!(v["fields"]["legacy_system"], 2);
        assert_eq!(v["fields"]["receipts"]["user_ack"], true);

        let mut forged = t.as_str().to_string();
        forged.replace_range(0..1, if forged.starts_with('1') { "2" } else { "1" });
        let v = inspect_tag(&forged, KEYS, now, &p).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["reason"], "bad_mac");

        assert!(inspect_tag("hello", KEYS, now, &p).unwrap_err().contains("not 32 characters"));
        assert!(inspect_tag(t.as_str(), "[tag]\n", now, &p).unwrap_err().starts_with("key file: line"));
    }
}
