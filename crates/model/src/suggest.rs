//! "Did you mean ...?" suggestions for misspelled keys.

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
///
/// Distance is Damerau-Levenshtein (optimal string alignment: insertions,
/// deletions, substitutions and adjacent transpositions, over characters);
/// a candidate qualifies at distance ≤ max(1, len/3) where len is `word`'s
/// length in characters. The nearest wins; ties go to the earlier candidate.
/// An exact match is not a suggestion.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w: Vec<char> = word.chars().collect();
    let limit = (w.len() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for &c in candidates {
        if c == word {
            continue;
        }
        let c_chars: Vec<char> = c.chars().collect();
        if c_chars.len().abs_diff(w.len()) > limit {
            continue;
        }
        let d = osa_distance(&w, &c_chars);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance between two character slices.
fn osa_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_candidates() {
        let fields = ["name", "owner", "system", "lifecycle", "type"];
        assert_eq!(did_you_mean("ownr", &fields), Some("owner"));
        assert_eq!(did_you_mean("lifecyle", &fields), Some("lifecycle"));
        assert_eq!(did_you_mean("lifecylce", &fields), Some("lifecycle"));
        assert_eq!(did_you_mean("sytsem", &fields), Some("system"));
        assert_eq!(did_you_mean("nmae", &fields), Some("name"));
        assert_eq!(did_you_mean("zzzzzz", &fields), None);
        assert_eq!(did_you_mean("owner", &fields), None);
        assert_eq!(did_you_mean("", &fields), None);
        assert_eq!(
            did_you_mean("component", &["Component", "API"]),
            Some("Component")
        );
    }

    #[test]
    fn distance() {
        let d = |a: &str, b: &str| {
            osa_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", "abc"), 0);
        assert_eq!(d("ab", "ba"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
    }
}
