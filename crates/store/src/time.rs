//! Times as stored: RFC 3339 UTC with milliseconds, e.g.
//! `2026-11-21T23:40:00.123Z`, which sorts lexically.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{Result, StoreError};

/// The current time in the stored format.
pub(crate) fn now() -> String {
    format(Utc::now())
}

/// Formats a time in the stored format.
pub(crate) fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 time and returns it in the stored format, so that
/// lexical comparison with stored times is correct.
pub(crate) fn normalize(input: &str, what: &str) -> Result<String> {
    DateTime::parse_from_rfc3339(input)
        .map(|t| format(t.with_timezone(&Utc)))
        .map_err(|e| StoreError::Conflict(format!("{what} `{input}` is not an RFC 3339 time: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_format_and_normalization() {
        let n = now();
        assert_eq!(n.len(), 24, "{n}");
        assert!(n.ends_with('Z'));
        assert_eq!(
            normalize("2026-11-21T23:40:00Z", "t").ok().as_deref(),
            Some("2026-11-21T23:40:00.000Z")
        );
        assert_eq!(
            normalize("2026-11-22T01:40:00.5+02:00", "t")
                .ok()
                .as_deref(),
            Some("2026-11-21T23:40:00.500Z")
        );
        assert!(normalize("yesterday", "t").is_err());
    }
}
