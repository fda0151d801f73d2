//! Finding and rewriting context references (`inputs.x`, `needs.a.outputs.b`)
//! inside expression text, without evaluating anything.
//!
//! Why a scanner of its own rather than the expression parser: expansion must
//! change a reference in place and leave every other character of the user's
//! text as written (spacing, quoting, the text around `${{ }}`), and the
//! parser's tree does not keep source offsets. The scanner follows the
//! parser's lexical rules where it matters: single-quoted strings (with `''`
//! as an escaped quote) are skipped, identifiers are `[A-Za-z_][A-Za-z0-9_-]*`,
//! and a reference is a chain of identifiers joined by `.`.

/// One reference found in expression text: its byte range and its segments
/// (`needs.build.outputs.path` → `["needs", "build", "outputs", "path"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub start: usize,
    pub end: usize,
    pub segs: Vec<String>,
}

/// A `${{ }}` region: the outer range (with the braces) and the inner one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub outer: (usize, usize),
    pub inner: (usize, usize),
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Skips a single-quoted string starting at `i` (the quote); returns the
/// offset after it (the end of text when it is not closed).
fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    i
}

/// The `${{ }}` regions of a template string, in order. An unclosed `${{`
/// ends the scan (validation reports it).
pub(crate) fn regions(text: &str) -> Vec<Region> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("${{") {
        let open = from + found;
        let inner_start = open + 3;
        let mut i = inner_start;
        let mut close = None;
        while i < bytes.len() {
            match bytes[i] {
                b'\'' => i = skip_string(bytes, i),
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    close = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let Some(close) = close else { break };
        out.push(Region {
            outer: (open, close + 2),
            inner: (inner_start, close),
        });
        from = close + 2;
    }
    out
}

/// The expression ranges of `text`: the insides of its `${{ }}`, or, for a
/// bare condition (an `if:` without `${{`), the whole text.
pub(crate) fn expr_ranges(text: &str, condition: bool) -> Vec<(usize, usize)> {
    if condition && !text.contains("${{") {
        return vec![(0, text.len())];
    }
    regions(text).into_iter().map(|r| r.inner).collect()
}

/// Every reference chain within `text[range]`.
pub(crate) fn refs_in(text: &str, range: (usize, usize)) -> Vec<Ref> {
    let bytes = text.as_bytes();
    let (mut i, end) = range;
    let mut out = Vec::new();
    while i < end {
        let b = bytes[i];
        if b == b'\'' {
            i = skip_string(bytes, i).min(end);
            continue;
        }
        let after_dot = i > 0 && bytes[i - 1] == b'.';
        let inside_word = i > 0 && is_ident_char(bytes[i - 1]);
        if !is_ident_start(b) || after_dot || inside_word {
            i += 1;
            continue;
        }
        let start = i;
        let mut segs = Vec::new();
        loop {
            let s = i;
            while i < end && is_ident_char(bytes[i]) {
                i += 1;
            }
            segs.push(text[s..i].to_string());
            if i + 1 < end && bytes[i] == b'.' && is_ident_start(bytes[i + 1]) {
                i += 1;
            } else {
                break;
            }
        }
        // A function call (`contains(...)`) is not a reference.
        let mut j = i;
        while j < end && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if segs.len() == 1 && j < end && bytes[j] == b'(' {
            continue;
        }
        out.push(Ref {
            start,
            end: i,
            segs,
        });
    }
    out
}

/// Every reference in the expressions of `text`.
pub(crate) fn all_refs(text: &str, condition: bool) -> Vec<Ref> {
    expr_ranges(text, condition)
        .into_iter()
        .flat_map(|r| refs_in(text, r))
        .collect()
}

/// Answers, for a reference chain, how many leading segments to replace and
/// with what (`None` keeps it).
pub(crate) type Rewriter<'a> = dyn FnMut(&[String]) -> Option<(usize, String)> + 'a;

/// Rewrites references in the expressions of `text`: `f` gets each chain and
/// answers how many leading segments to replace and with what (or `None` to
/// keep it). Everything else is kept byte for byte.
pub(crate) fn rewrite(text: &str, condition: bool, f: &mut Rewriter<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in expr_ranges(text, condition) {
        out.push_str(&text[last..range.0]);
        out.push_str(&rewrite_range(text, range, f));
        last = range.1;
    }
    out.push_str(&text[last..]);
    out
}

/// [`rewrite`] within `text[range]`; returns the rewritten range only.
pub(crate) fn rewrite_range(text: &str, range: (usize, usize), f: &mut Rewriter<'_>) -> String {
    let mut out = String::new();
    let mut last = range.0;
    for r in refs_in(text, range) {
        let Some((n, replacement)) = f(&r.segs) else {
            continue;
        };
        // The end of the first `n` segments (joined by single dots).
        let n = n.clamp(1, r.segs.len());
        let len: usize = r.segs[..n].iter().map(String::len).sum::<usize>() + (n - 1);
        out.push_str(&text[last..r.start]);
        out.push_str(&replacement);
        last = r.start + len;
    }
    out.push_str(&text[last..range.1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(text: &str, condition: bool) -> Vec<String> {
        all_refs(text, condition)
            .into_iter()
            .map(|r| r.segs.join("."))
            .collect()
    }

    #[test]
    fn finds_chains_outside_strings_and_calls() {
        assert_eq!(
            chains(
                "a ${{ inputs.x }} b ${{ 'inputs.y' == needs.a-b.outputs.z }}",
                false
            ),
            ["inputs.x", "needs.a-b.outputs.z"]
        );
        assert_eq!(
            chains("contains(inputs.list, 'x') && success()", true),
            ["inputs.list"]
        );
        assert_eq!(chains("inputs.x", false), Vec::<String>::new());
        assert_eq!(chains("${{ 'it''s }}' }} ${{ env.A }}", false), ["env.A"]);
    }

    #[test]
    fn rewrites_in_place() {
        let out = rewrite(
            "run ${{ needs.b.outputs.o }} and ${{needs.b.result}}",
            false,
            &mut |s| (s[0] == "needs" && s.len() >= 2).then(|| (2, "needs.x-b".to_string())),
        );
        assert_eq!(
            out,
            "run ${{ needs.x-b.outputs.o }} and ${{needs.x-b.result}}"
        );
    }
}
