//! Service secrets, sealed at rest, and the webhook deliveries already seen.
//!
//! A secret's value is encrypted with ChaCha20-Poly1305 under the server's
//! 32-byte [`SecretKey`] before it reaches SQL, with a fresh random nonce per
//! write and the row's identity (`service_key`, `name`) as associated data,
//! so a sealed value copied onto another row does not open. The stored form
//! is `v1:<key id>:<nonce hex>:<ciphertext hex>`; the key id (the first 8
//! bytes of the key's sha256) lets a server with the wrong key say so
//! instead of reporting a corrupt row. Servers sharing a database must share
//! the key.
//!
//! Events (`dev.pave.secret.set.0.1.0`, `dev.pave.secret.deleted.0.1.0`)
//! name the service and the secret, never the value. Listing returns names
//! and times only; values come out only through [`Store::secret_values`],
//! for the jobs of a run.

use std::collections::BTreeMap;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::{NewEvent, Result, Store, StoreError, events, sql, time};

const SET: &str = "dev.pave.secret.set.0.1.0";
const DELETED: &str = "dev.pave.secret.deleted.0.1.0";

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 128;
/// Largest secret value, in bytes.
pub const MAX_SECRET_VALUE: usize = 64 * 1024;

/// The server key that seals secrets: 32 random bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<SecretKey> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| random_failed(&e))?;
        Ok(SecretKey(bytes))
    }

    /// Parses 64 hex characters or the base64 (standard or URL-safe, padded
    /// or not) of exactly 32 bytes; surrounding whitespace is ignored. The
    /// error never repeats the input.
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text).ok_or("not hex")?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or("a secret key must be 64 hex characters or base64 of 32 bytes")?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            format!("a secret key must be 32 bytes; this one has {}", v.len())
        })?;
        Ok(SecretKey(bytes))
    }

    /// The key as 64 hex characters (what key files hold).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A short public fingerprint of the key (16 hex characters).
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.0)[..8])
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(self.0))
    }

    /// Seals `value` for the row (`service_key`, `name`).
    fn seal(&self, service_key: &str, name: &str, value: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| random_failed(&e))?;
        let aad = associated_data(service_key, name);
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Corrupt("sealing a secret failed".into()))?;
        Ok(format!("v1:{}:{}:{}", self.id(), hex(&nonce), hex(&sealed)))
    }

    /// Opens a sealed value of the row (`service_key`, `name`).
    fn open(&self, service_key: &str, name: &str, sealed: &str) -> Result<String> {
        let corrupt = || StoreError::Corrupt(format!("secret {name} of {service_key}: bad format"));
        let mut parts = sealed.split(':');
        let (Some("v1"), Some(key_id), Some(nonce), Some(body), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(corrupt());
        };
        if key_id != self.id() {
            return Err(StoreError::Corrupt(format!(
                "secret {name} of {service_key} was sealed with another server key \
                 (id {key_id}; this server's is {}): servers sharing a database must \
                 share PAVE_SECRET_KEY",
                self.id()
            )));
        }
        let nonce: [u8; 12] = decode_hex(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let body = decode_hex(body).ok_or_else(corrupt)?;
        let aad = associated_data(service_key, name);
        let plain = self
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &body,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "secret {name} of {service_key} does not authenticate (tampered?)"
                ))
            })?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

/// A stored secret as lists show it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRow {
    pub service_key: String,
    /// `[A-Z_][A-Z0-9_]*`.
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    /// Event actor of the last write.
    pub updated_by: String,
}

/// Checks a secret name: `[A-Z_][A-Z0-9_]*`, at most 128 characters.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    if !first_ok
        || name.len() > MAX_SECRET_NAME
        || !chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "secret names match [A-Z_][A-Z0-9_]* (at most {MAX_SECRET_NAME} characters)"
        ));
    }
    Ok(())
}

/// Creates or replaces a secret and appends `secret.set` (service and name only).
pub(crate) async fn set(
    store: &Store,
    key: &SecretKey,
    service_key: &str,
    name: &str,
    value: &str,
    actor: &str,
) -> Result<SecretRow> {
    check_secret_name(name).map_err(StoreError::Conflict)?;
    if value.len() > MAX_SECRET_VALUE {
        return Err(StoreError::Conflict(format!(
            "a secret value may be at most {MAX_SECRET_VALUE} bytes"
        )));
    }
    let sealed = key.seal(service_key, name, value)?;
    let now = time::now();
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    let created_at: String = sqlx::query_scalar(
        "INSERT INTO secrets (service_key, name, sealed, created_at, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $4, $5) \
         ON CONFLICT (service_key, name) DO UPDATE SET sealed = excluded.sealed, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by \
         RETURNING created_at",
    )
    .bind(service_key.to_string())
    .bind(name.to_string())
    .bind(sealed)
    .bind(now.clone())
    .bind(actor.to_string())
    .fetch_one(&mut *conn)
    .await?;
    tx.append_event(&NewEvent {
        event_type: SET.to_string(),
        subject: format!("secret:{service_key}/{name}"),
        actor: actor.to_string(),
        payload: json!({ "service": service_key, "name": name }),
    })
    .await?;
    tx.commit().await?;
    Ok(SecretRow {
        service_key: service_key.to_string(),
        name: name.to_string(),
        created_at,
        updated_at: now,
        updated_by: actor.to_string(),
    })
}

/// Deletes a secret and appends `secret.deleted`; false when absent.
pub(crate) async fn delete(
    store: &Store,
    service_key: &str,
    name: &str,
    actor: &str,
) -> Result<bool> {
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    let gone = sqlx::query("DELETE FROM secrets WHERE service_key = $1 AND name = $2")
        .bind(service_key.to_string())
        .bind(name.to_string())
        .execute(&mut *conn)
        .await?;
    if gone.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.append_event(&NewEvent {
        event_type: DELETED.to_string(),
        subject: format!("secret:{service_key}/{name}"),
        actor: actor.to_string(),
        payload: json!({ "service": service_key, "name": name }),
    })
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A service's secrets by name (no values).
pub(crate) async fn list(pool: &AnyPool, service_key: &str) -> Result<Vec<SecretRow>> {
    sqlx::query(
        "SELECT service_key, name, created_at, updated_at, updated_by FROM secrets \
         WHERE service_key = $1 ORDER BY name",
    )
    .bind(service_key.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// A service's secrets, opened: for the jobs of its runs only.
pub(crate) async fn values(
    pool: &AnyPool,
    key: &SecretKey,
    service_key: &str,
) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query("SELECT name, sealed FROM secrets WHERE service_key = $1")
        .bind(service_key.to_string())
        .fetch_all(pool)
        .await?;
    let mut out = BTreeMap::new();
    for row in &rows {
        let name: String = sql::get(row, "name")?;
        let sealed: String = sql::get(row, "sealed")?;
        let value = key.open(service_key, &name, &sealed)?;
        out.insert(name, value);
    }
    Ok(out)
}

fn from_row(row: &AnyRow) -> Result<SecretRow> {
    Ok(SecretRow {
        service_key: sql::get(row, "service_key")?,
        name: sql::get(row, "name")?,
        created_at: sql::get(row, "created_at")?,
        updated_at: sql::get(row, "updated_at")?,
        updated_by: sql::get(row, "updated_by")?,
    })
}

// ------------------------------------------------- webhook deliveries

/// Records a webhook delivery id; false when it was recorded before (a
/// redelivery). Atomic across servers sharing the database (primary key).
pub(crate) async fn record_delivery(store: &Store, provider: &str, id: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (provider, delivery_id, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (provider, delivery_id) DO NOTHING",
    )
    .bind(provider.to_string())
    .bind(id.to_string())
    .bind(time::now())
    .execute(tx.connection())
    .await?;
    if inserted.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Forgets a delivery (its handling failed, so a redelivery may retry it).
pub(crate) async fn forget_delivery(store: &Store, provider: &str, id: &str) -> Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2")
        .bind(provider.to_string())
        .bind(id.to_string())
        .execute(tx.connection())
        .await?;
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------ helpers

/// Binds a sealed value to its row.
fn associated_data(service_key: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(service_key.len() + name.len() + 12);
    aad.extend_from_slice(b"pave-secret\0");
    aad.extend_from_slice(service_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn random_failed(e: &getrandom::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
        "OS random source failed: {e}"
    ))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["A", "_X", "API_TOKEN_2", "__"] {
            assert!(check_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "1A", "A-B", "A B", "Ä", &"A".repeat(129)] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse_from_hex_and_base64_without_echoing() {
        let key = SecretKey::from_bytes([7u8; 32]);
        let hex_form = key.to_hex();
        assert_eq!(SecretKey::parse(&hex_form).unwrap().to_hex(), hex_form);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            SecretKey::parse(&format!(" {b64}\n")).unwrap().to_hex(),
            hex_form
        );
        let err = SecretKey::parse("hunter2hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(SecretKey::parse(&short).unwrap_err().contains("16"));
    }

    #[test]
    fn sealing_round_trips_and_is_bound_to_its_row() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal("component:default/a", "TOKEN", "s3cr3t").unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert_ne!(
            sealed,
            key.seal("component:default/a", "TOKEN", "s3cr3t").unwrap(),
            "fresh nonce per write"
        );
        assert_eq!(
            key.open("component:default/a", "TOKEN", &sealed).unwrap(),
            "s3cr3t"
        );
        assert!(key.open("component:default/b", "TOKEN", &sealed).is_err());
        assert!(key.open("component:default/a", "OTHER", &sealed).is_err());
        let other = SecretKey::generate().unwrap();
        let err = other
            .open("component:default/a", "TOKEN", &sealed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another server key"), "{err}");
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(key.open("component:default/a", "TOKEN", &tampered).is_err());
    }
}
