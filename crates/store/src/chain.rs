//! The hash chain: canonical JSON of an event and
//! `hash_n = sha256(raw(hash_{n-1}) || canonical_json(event_n))`, where the
//! event is the object `{"actor","id","payload","seq","subject","time","type"}`.
//!
//! Canonical JSON: object keys sorted bytewise at every level, no
//! whitespace, strings escaped exactly as serde_json does. The writer sorts
//! keys itself instead of relying on `serde_json::Map` being a BTreeMap, so
//! hashes stay stable even if a crate in the build enables serde_json's
//! `preserve_order` feature.

use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed fields of one event; the payload is already canonical JSON.
pub(crate) struct Entry<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub time: &'a str,
    pub event_type: &'a str,
    pub subject: &'a str,
    pub actor: &'a str,
    pub payload_json: &'a str,
}

/// Canonical JSON text of `value`.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Appends the canonical JSON of `value` to `out`.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Number's Display is serde_json's own number serialization; writing
        // to a String cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a JSON string literal, escaped like serde_json.
pub(crate) fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0A => "\\n",
            0x0C => "\\f",
            0x0D => "\\r",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The hash of `entry` chained onto `prev_hash` (lowercase hex), or `None`
/// when `prev_hash` is not 64 lowercase hex digits.
pub(crate) fn hash(prev_hash: &str, entry: &Entry<'_>) -> Option<String> {
    let prev = decode_hex32(prev_hash)?;
    // Keys in sorted order: actor, id, payload, seq, subject, time, type.
    let mut body = String::with_capacity(entry.payload_json.len() + 256);
    body.push_str("{\"actor\":");
    write_str(&mut body, entry.actor);
    body.push_str(",\"id\":");
    write_str(&mut body, entry.id);
    body.push_str(",\"payload\":");
    body.push_str(entry.payload_json);
    let _ = write!(body, ",\"seq\":{}", entry.seq);
    body.push_str(",\"subject\":");
    write_str(&mut body, entry.subject);
    body.push_str(",\"time\":");
    write_str(&mut body, entry.time);
    body.push_str(",\"type\":");
    write_str(&mut body, entry.event_type);
    body.push('}');
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body.as_bytes());
    Some(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn canonical_json_sorts_keys_recursively_without_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": 1, "a": { "z": [ {"y": 2, "x": 1} ], "c": "é\n" }, "A": null, "t": true }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"A":null,"a":{"c":"é\n","z":[{"x":1,"y":2}]},"b":1,"t":true}"#
        );
        // Insertion order does not matter.
        let mut m = Map::new();
        m.insert("zeta".into(), json!(1));
        m.insert("alpha".into(), json!(2.5));
        assert_eq!(
            canonical_json(&Value::Object(m)),
            r#"{"alpha":2.5,"zeta":1}"#
        );
    }

    #[test]
    fn matches_serde_json_output_for_sorted_maps() {
        // serde_json::Value without `preserve_order` keeps map keys sorted, so
        // its compact output must equal ours; this checks escaping and numbers.
        let all_bytes: String = (0u8..128).map(char::from).collect();
        let v = json!({
            "s": all_bytes, "u": "é ☃ 𝄞 \u{7f}", "n": [0, -1, 1.5, -0.0, 1e300, 18446744073709551615u64, i64::MIN],
            "nested": { "b": [true, false, null], "a": {} }, "": [],
        });
        assert_eq!(canonical_json(&v), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn floats_round_trip_through_text() {
        for text in [
            "-0.0",
            "1.0",
            "1e300",
            "0.1",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let again: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
            assert_eq!(canonical_json(&v), canonical_json(&again), "{text}");
        }
    }

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let e = Entry {
            seq: 1,
            id: "01",
            time: "t",
            event_type: "x",
            subject: "s",
            actor: "a",
            payload_json: "{}",
        };
        let h = hash(GENESIS, &e).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(hash(GENESIS, &e).unwrap(), h);
        // Equal to sha256 of the canonical JSON object.
        let body = canonical_json(
            &json!({"seq":1,"id":"01","time":"t","type":"x","subject":"s","actor":"a","payload":{}}),
        );
        let mut hasher = Sha256::new();
        hasher.update([0u8; 32]);
        hasher.update(body.as_bytes());
        assert_eq!(hex(&hasher.finalize()), h);
        for changed in [
            Entry { seq: 2, ..e },
            Entry { id: "02", ..e },
            Entry { time: "u", ..e },
            Entry {
                event_type: "y",
                ..e
            },
            Entry { subject: "z", ..e },
            Entry { actor: "b", ..e },
            Entry {
                payload_json: "{\"k\":1}",
                ..e
            },
        ] {
            assert_ne!(hash(GENESIS, &changed).unwrap(), h);
        }
        assert_ne!(hash(&h, &e).unwrap(), h);
        assert!(hash("xyz", &e).is_none());
        assert!(hash(&"A".repeat(64), &e).is_none());
        assert_eq!(decode_hex32(&h).map(|b| hex(&b)), Some(h));
    }
}
