//! `iwf inspect tag <TAG> --keys <FILE>`: decodes a tag, verifies it against the
//! configured keys and shows every field, and why it would route nowhere if it would.

use crate::control::config::load_keyring;
use crate::tag::{decode_unauthenticated, TagFields};
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

/// Inspects `tag` with the `[tag]` section of the configuration `keys_toml`, at Unix
/// time `now_unix`. A tag that fails to verify is still shown (with `"valid": false`
/// and the reason) when its characters decode; input that is no tag at all is an error.
pub fn inspect_tag(tag: &str, keys_toml: &str, now_unix: u64) -> Result<Value, String> {
    let ring = load_keyring(keys_toml).map_err(|e| format!("key file: {e}"))?;
    let tag = tag.trim();
    let (fields, key_id) = decode_unauthenticated(tag.as_bytes()).map_err(|e| format!("not a tag: {e}"))?;
    let mut out = json!({
        "tag": tag,
        "key_id": key_id,
        "fields": fields_json(&fields),
    });
    match ring.verify(tag.as_bytes(), now_unix) {
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
        };
        let t = ring.encode(&f).unwrap();
        let v = inspect_tag(t.as_str(), KEYS, now).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["fields"]["legacy_system"], 2);
        assert_eq!(v["fields"]["receipts"]["user_ack"], true);

        let mut forged = t.as_str().to_string();
        forged.replace_range(0..1, if forged.starts_with('1') { "2" } else { "1" });
        let v = inspect_tag(&forged, KEYS, now).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["reason"], "bad_mac");

        assert!(inspect_tag("hello", KEYS, now).unwrap_err().contains("not 32 characters"));
        assert!(inspect_tag(t.as_str(), "[tag]\n", now).unwrap_err().starts_with("key file: line"));
    }
}
