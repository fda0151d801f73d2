//! ULIDs: 48-bit millisecond time + 80 random bits, Crockford base32 (26
//! chars). Monotonic within this process: ids made in the same millisecond
//! increment the random part, so they sort in creation order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Result, StoreError};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_MASK: u128 = (1 << 80) - 1;

/// Last (millisecond, random) pair handed out.
static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A new ULID.
pub(crate) fn new() -> Result<String> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
            "OS random source failed: {e}"
        ))))
    })?;
    let random = bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));

    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (ms, random) = if ms <= last.0 {
        // Same (or an earlier, clock went back) millisecond: stay monotonic.
        let next = last.1 + 1;
        if next > RANDOM_MASK {
            (last.0 + 1, random)
        } else {
            (last.0, next)
        }
    } else {
        (ms, random)
    };
    *last = (ms, random);
    drop(last);
    Ok(encode((u128::from(ms) << 80) | random))
}

/// Crockford base32 of a 128-bit value, 26 characters.
fn encode(value: u128) -> String {
    (0..26)
        .map(|i| ALPHABET[((value >> (125 - 5 * i)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_order() {
        let a = new().unwrap();
        let b = new().unwrap();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} < {b}");
        assert!(a.chars().all(|c| ALPHABET.contains(&(c as u8))));
        assert_eq!(encode(0), "00000000000000000000000000");
        assert_eq!(encode(u128::MAX), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    }
}
