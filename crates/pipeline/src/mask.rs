//! Secret masking for log lines.
//!
//! Policy (like GitHub Actions): every non-empty secret is masked, however
//! short, because a leaked secret is worse than an ugly log. A multi-line
//! secret is also registered line by line (logs are line-based, so the whole
//! value never appears on one line); of those pieces only the ones of at
//! least [`MIN_PIECE_LEN`] characters are registered, so a lone `}` or `-----`
//! line of a JSON/PEM secret does not garble every log line.
//! Matches are replaced leftmost first, and the longest secret wins at a
//! given position.

use std::borrow::Cow;

/// The replacement text for a masked secret.
pub const MASK: &str = "***";

/// Minimum length of a single line of a multi-line secret to be masked on its own.
pub const MIN_PIECE_LEN: usize = 4;

/// Replaces known secret values in text with `***`.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Distinct secrets, longest first.
    secrets: Vec<String>,
}

impl Masker {
    /// Builds a masker for the given secret values (empty values are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            all.push(secret.to_string());
            if secret.contains('\n') {
                for piece in secret.split('\n') {
                    let piece = piece.trim_end_matches('\r');
                    if piece.trim().chars().count() >= MIN_PIECE_LEN {
                        all.push(piece.to_string());
                    }
                }
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Masker { secrets: all }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Returns `text` with every occurrence of every secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Secrets are valid UTF-8, so they can only match at a char
            // boundary: slicing `text` at `i` below is always valid.
            match self
                .secrets
                .iter()
                .find(|s| bytes[i..].starts_with(s.as_bytes()))
            {
                Some(secret) => {
                    out.push_str(&text[last..i]);
                    out.push_str(MASK);
                    i += secret.len();
                    last = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = Masker::new(["abcd", "abcdef", ""]);
        assert_eq!(
            m.mask("x abcdef y abcd z abcdefabcd"),
            "x *** y *** z ******"
        );
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_secrets_are_masked_too() {
        let m = Masker::new(["pw"]);
        assert_eq!(m.mask("pwd pw"), "***d ***");
    }

    #[test]
    fn overlapping_and_unicode() {
        let m = Masker::new(["ééé", "aa"]);
        assert_eq!(m.mask("aaa ééééé"), "***a ***éé");
        let m = Masker::new(["日本"]);
        assert_eq!(m.mask("こんにちは日本語"), "こんにちは***語");
    }

    #[test]
    fn multiline_secret_is_masked_line_by_line() {
        let key = "-----BEGIN KEY-----\nMIIBsecretbody\n}\n-----END KEY-----";
        let m = Masker::new([key]);
        assert_eq!(m.mask("MIIBsecretbody"), "***");
        assert_eq!(m.mask("a } b"), "a } b");
        assert_eq!(m.mask("-----END KEY-----"), "***");
    }

    #[test]
    fn empty_masker_borrows() {
        let m = Masker::new(Vec::<String>::new());
        assert!(m.is_empty());
        assert!(matches!(m.mask("abc"), Cow::Borrowed(_)));
    }
}
