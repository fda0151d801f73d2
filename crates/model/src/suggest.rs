//! "Did you mean ...?" suggestions for misspelled keys.

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let _ = (word, candidates);
    todo!("model helper")
}
