//! A fast reader for the plain subset of YAML that catalog files use.
//!
//! serde-saphyr reads ~5 MB/s on this class of machine, too slow for a
//! 10,000-entity import that must finish well under a second. Almost every
//! real `catalog-info.yaml`/`pave.yaml` is written in a tiny subset: block
//! mappings and sequences indented with spaces, single-line plain or simply
//! quoted scalars, one-line flow sequences of scalars, comments, `---`.
//! This module reads exactly that subset and returns `None` for anything else
//! (anchors, tags, block scalars, multi-line scalars, escapes, flow mappings,
//! tabs, CRs, unusual scalars such as `0x1F` or `1.5`, duplicate keys, deep
//! nesting ...), in which case the caller uses serde-saphyr. It never reports
//! errors itself, so every YAML error message comes from the real parser.
//!
//! Scalars are resolved as serde-saphyr does with `strict_booleans` (YAML 1.2
//! core schema); the subset only produces strings, `true`/`false` spellings,
//! null spellings and plain decimal integers. A differential proptest
//! (`tests/fast_yaml_diff.rs` via `__differential_check`) compares the two.

use crate::node::{Entry, Node, NodeKind, Pos};

/// Deepest nesting accepted here (below the general parser's limit, see `node::options`).
const MAX_DEPTH: usize = 30;

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// Parses all non-empty documents, or `None` when the input leaves the subset.
pub(crate) fn parse(src: &str) -> Option<Vec<Node>> {
    if !chars_ok(src) {
        return None;
    }
    let mut docs = Vec::new();
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (idx, text) in src.split('\n').enumerate() {
        let no = idx + 1;
        if let Some(rest) = text.strip_prefix("---")
            && (rest.is_empty() || rest.starts_with(' '))
        {
            let rest = rest.trim_start_matches(' ');
            if !(rest.is_empty() || rest.starts_with('#')) {
                return None;
            }
            if !lines.is_empty() {
                docs.push(parse_doc(&lines)?);
                lines.clear();
            }
            continue;
        }
        if text.starts_with("...") || text.starts_with('%') {
            return None;
        }
        let indent = text.len() - text.trim_start_matches(' ').len();
        let rest = &text[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        lines.push(Line { no, indent, text });
    }
    if !lines.is_empty() {
        docs.push(parse_doc(&lines)?);
    }
    Some(docs)
}

/// Only printable characters, LF line breaks, no tabs, no BOM.
fn chars_ok(src: &str) -> bool {
    let ascii_ok = src
        .bytes()
        .all(|b| b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if !ascii_ok {
        return false;
    }
    if src.is_ascii() {
        return true;
    }
    src.chars().all(|c| {
        !(('\u{80}'..='\u{9f}').contains(&c)
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            ))
    })
}

fn parse_doc(lines: &[Line<'_>]) -> Option<Node> {
    let mut p = Parser {
        lines,
        i: 0,
        depth: 0,
    };
    let first = lines.first()?;
    let root = p.map(first.indent)?;
    if p.i != lines.len() {
        return None;
    }
    Some(root)
}

struct Parser<'l, 'a> {
    lines: &'l [Line<'a>],
    i: usize,
    depth: usize,
}

fn column(text: &str, byte: usize) -> usize {
    match text.get(..byte) {
        Some(prefix) if prefix.is_ascii() => byte + 1,
        Some(prefix) => prefix.chars().count() + 1,
        None => 0,
    }
}

fn is_dash(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// A key at the start of `t`: a simple plain key or a one-line quoted one,
/// followed by `:` and a space or the end. Returns the key and the offset of `:`.
fn key(t: &str) -> Option<(String, usize)> {
    let b = t.as_bytes();
    let first = *b.first()?;
    let (k, colon) = if first == b'"' || first == b'\'' {
        quoted(t)?
    } else {
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b'$' || first == b'/') {
            return None;
        }
        let n = b.iter().position(|&c| {
            !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-' | b'$' | b'@'))
        })?;
        if is_special_word(&t[..n]) {
            return None;
        }
        (t[..n].to_string(), n)
    };
    if b.get(colon) != Some(&b':')
        || !(colon + 1 == b.len() || b[colon + 1] == b' ')
        || colon > 1000
    {
        return None;
    }
    Some((k, colon))
}

fn is_special_word(s: &str) -> bool {
    matches!(
        s,
        "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
    )
}

/// Skips spaces from `off`.
fn skip_spaces(text: &str, off: usize) -> usize {
    off + text[off..].len() - text[off..].trim_start_matches(' ').len()
}

/// True when nothing but an optional comment follows (a comment needs a space before it).
fn rest_is_blank(rest: &str) -> bool {
    if rest.is_empty() {
        return true;
    }
    if !rest.starts_with(' ') {
        return false;
    }
    let t = rest.trim_start_matches(' ');
    t.is_empty() || t.starts_with('#')
}

impl Parser<'_, '_> {
    fn next_indent(&self) -> Option<usize> {
        self.lines.get(self.i).map(|l| l.indent)
    }

    /// A block node starting on a later line at its indentation.
    fn block_on_next_line(&mut self, parent_indent: usize, null_pos: Pos) -> Option<Node> {
        match self.lines.get(self.i) {
            Some(next) if next.indent > parent_indent => {
                let col = next.indent;
                let t = &next.text[col..];
                if is_dash(t) {
                    self.seq(col)
                } else {
                    self.map(col)
                }
            }
            _ => Some(Node {
                kind: NodeKind::Null,
                pos: null_pos,
            }),
        }
    }

    /// A block mapping whose first key is on line `self.i` at byte `col`.
    fn map(&mut self, col: usize) -> Option<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let first = self.lines.get(self.i)?;
        let pos = Pos::new(first.no, column(first.text, col));
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let line = self.lines.get(self.i)?;
            let t = line.text.get(col..)?;
            let (key, colon) = key(t)?;
            if entries.iter().any(|e| e.key == key) {
                return None;
            }
            let key_pos = Pos::new(line.no, column(line.text, col));
            let colon = col + colon;
            let value_off = skip_spaces(line.text, colon + 1);
            let rest = &line.text[value_off..];
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.i += 1;
                let null_pos = Pos::new(line.no, column(line.text, colon));
                match self.lines.get(self.i) {
                    Some(next) if next.indent == col && is_dash(&next.text[col..]) => {
                        // An "indentless" sequence: the general parser places
                        // it after its first `- `, so do the same.
                        let content = skip_spaces(next.text, col + 1);
                        let at = if next.text[content..].is_empty()
                            || next.text[content..].starts_with('#')
                        {
                            next.text.len()
                        } else {
                            content
                        };
                        let pos = Pos::new(next.no, column(next.text, at));
                        let mut seq = self.seq(col)?;
                        seq.pos = pos;
                        seq
                    }
                    _ => self.block_on_next_line(col, null_pos)?,
                }
            } else {
                if is_dash(rest) {
                    return None;
                }
                let v = inline(line, value_off)?;
                self.i += 1;
                if self.next_indent().is_some_and(|ind| ind > col) {
                    return None;
                }
                v
            };
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
            match self.lines.get(self.i) {
                None => break,
                Some(next) if next.indent < col => break,
                Some(next) if next.indent == col && !is_dash(&next.text[col..]) => continue,
                Some(_) => return None,
            }
        }
        self.depth -= 1;
        Some(Node {
            kind: NodeKind::Map(entries),
            pos,
        })
    }

    /// A block sequence whose first `-` is on line `self.i` at byte `col`.
    fn seq(&mut self, col: usize) -> Option<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let first = self.lines.get(self.i)?;
        let pos = Pos::new(first.no, column(first.text, col));
        let mut items = Vec::new();
        loop {
            let line = self.lines.get(self.i)?;
            let content = skip_spaces(line.text, col + 1);
            let rest = &line.text[content..];
            let item = if rest.is_empty() || rest.starts_with('#') {
                self.i += 1;
                // The general parser places an empty item at the end of its line.
                let null_pos = Pos::new(line.no, column(line.text, line.text.len()));
                self.block_on_next_line(col, null_pos)?
            } else if is_dash(rest) {
                self.seq(content)?
            } else if key(rest).is_some() {
                self.map(content)?
            } else {
                let v = inline(line, content)?;
                self.i += 1;
                if self.next_indent().is_some_and(|ind| ind > col) {
                    return None;
                }
                v
            };
            items.push(item);
            match self.lines.get(self.i) {
                None => break,
                Some(next) if next.indent < col => break,
                Some(next) if next.indent == col => {
                    if !is_dash(&next.text[col..]) {
                        break;
                    }
                }
                Some(_) => return None,
            }
        }
        self.depth -= 1;
        Some(Node {
            kind: NodeKind::Seq(items),
            pos,
        })
    }
}

/// A one-line value (plain or quoted scalar, flow sequence, `{}`) at byte
/// `off`; the rest of the line must be blank or a comment.
fn inline(line: &Line<'_>, off: usize) -> Option<Node> {
    let s = &line.text[off..];
    let pos = Pos::new(line.no, column(line.text, off));
    let (kind, used) = match s.as_bytes().first()? {
        b'"' | b'\'' => {
            let (v, used) = quoted(s)?;
            (NodeKind::Str(v), used)
        }
        b'[' => flow_seq(line, off)?,
        b'{' => {
            let after = skip_spaces(s, 1);
            if s.as_bytes().get(after) != Some(&b'}') {
                return None;
            }
            (NodeKind::Map(Vec::new()), after + 1)
        }
        _ => {
            let end = s.find(" #").unwrap_or(s.len());
            let text = s[..end].trim_end_matches(' ');
            if text.contains(": ") || text.ends_with(':') {
                return None;
            }
            (plain(text)?, s.len())
        }
    };
    if !rest_is_blank(&s[used..]) {
        return None;
    }
    Some(Node { kind, pos })
}

/// A single-line quoted scalar without escapes; returns the value and the bytes used.
fn quoted(s: &str) -> Option<(String, usize)> {
    let q = *s.as_bytes().first()?;
    if q == b'"' {
        let end = s[1..].find('"')? + 1;
        let body = &s[1..end];
        if body.contains('\\') {
            return None;
        }
        return Some((body.to_string(), end + 1));
    }
    let mut out = String::new();
    let mut i = 1;
    loop {
        let rel = s[i..].find('\'')?;
        out.push_str(&s[i..i + rel]);
        let at = i + rel;
        if s.as_bytes().get(at + 1) == Some(&b'\'') {
            out.push('\'');
            i = at + 2;
        } else {
            return Some((out, at + 1));
        }
    }
}

/// Resolves a plain scalar of the subset, or `None` when it is outside it.
fn plain(text: &str) -> Option<NodeKind> {
    let b = text.as_bytes();
    let first = *b.first()?;
    if first.is_ascii_alphabetic() || first == b'_' || first == b'/' || first == b'$' {
        return Some(match text {
            "null" | "Null" | "NULL" => NodeKind::Null,
            "true" | "True" | "TRUE" => NodeKind::Bool(true),
            "false" | "False" | "FALSE" => NodeKind::Bool(false),
            _ => NodeKind::Str(text.to_string()),
        });
    }
    if text == "~" {
        return Some(NodeKind::Null);
    }
    if first.is_ascii_digit()
        && b.iter().all(u8::is_ascii_digit)
        && (b.len() == 1 || first != b'0')
        && b.len() <= 18
    {
        let n: u64 = text.parse().ok()?;
        return Some(NodeKind::Num(n.into()));
    }
    None
}

/// A one-line flow sequence of scalars: `[a, "b", 3]`.
fn flow_seq(line: &Line<'_>, off: usize) -> Option<(NodeKind, usize)> {
    let s = &line.text[off..];
    let mut items = Vec::new();
    let mut i = skip_spaces(s, 1);
    if s.as_bytes().get(i) == Some(&b']') {
        return Some((NodeKind::Seq(items), i + 1));
    }
    loop {
        let item_pos = Pos::new(line.no, column(line.text, off + i));
        let rest = &s[i..];
        let (kind, used) = match rest.as_bytes().first()? {
            b'"' | b'\'' => {
                let (v, used) = quoted(rest)?;
                (NodeKind::Str(v), used)
            }
            _ => {
                let end = rest.find([',', ']'])?;
                let raw = &rest[..end];
                if raw.contains(['[', '{', '}', '#', '"', '\'']) || raw.contains(": ") {
                    return None;
                }
                let text = raw.trim_end_matches(' ');
                // `component:foo` is one scalar; `a:` or `a: b` would be a mapping.
                if text.ends_with(':') {
                    return None;
                }
                (plain(text)?, end)
            }
        };
        items.push(Node {
            kind,
            pos: item_pos,
        });
        i = skip_spaces(s, i + used);
        match s.as_bytes().get(i)? {
            b']' => return Some((NodeKind::Seq(items), i + 1)),
            b',' => {
                i = skip_spaces(s, i + 1);
                if matches!(s.as_bytes().get(i), None | Some(b']') | Some(b',')) {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Differential tests: wherever the fast reader accepts an input, the
    //! general parser must accept it too and build the identical tree,
    //! positions included.

    use super::parse;
    use crate::node::parse_documents_general;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum T {
        S(String),
        Seq(Vec<T>),
        Map(Vec<(String, T)>),
    }

    /// Scalars inside the fast subset (in some quoting), and ones outside it.
    const SAFE: &[&str] = &[
        "foo",
        "a-b",
        "svc-12",
        "true",
        "True",
        "FALSE",
        "null",
        "Null",
        "~",
        "yes",
        "on",
        "1",
        "0",
        "123",
        "component:default/x",
        "resource:db",
        "UPPER",
        "x y z",
        "$var",
        "/path",
        "_u",
        "é",
        "día-ñ",
        "a:b",
        "http://x/y#z",
        "it's",
        "a,b",
        "a#b",
        "",
        "inf",
        "nan",
        "x\"y",
        "a]",
        "18446744073709551615",
    ];
    const TRICKY: &[&str] = &[
        "99999999999999999999",
        "01",
        "1.5",
        "1e3",
        "0x1F",
        "0o7",
        "-1",
        "+1",
        "a: b",
        "a:",
        "a #b",
        " lead",
        "trail ",
        "[x]",
        "{y}",
        "*a",
        "&a",
        "!t",
        "|",
        ">",
        "'q'",
        "\"d\"",
        "-",
        "- x",
        "-x",
        "?",
        "? x",
        ":",
        "#",
        "@at",
        "%p",
        "`b`",
        ".nan",
        ".inf",
        "a\\b",
        "a}",
        "a, b",
        "--- x",
        "...",
        "<<",
        "off",
    ];
    const SAFE_KEYS: &[&str] = &[
        "name",
        "owner",
        "a",
        "b-c",
        "x.y/z",
        "github.com/project-slug",
        "_k",
        "$k",
        "spec",
        "ns_1",
        "A.B-C",
        "on",
    ];
    const TRICKY_KEYS: &[&str] = &[
        "true",
        "null",
        "Null",
        "1",
        "key with space",
        "k:v",
        "@k",
        "é",
        "a#",
        "-k",
        "?k",
        "<<",
    ];

    fn word(
        safe: &'static [&'static str],
        tricky: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        prop_oneof![
            40 => prop::sample::select(safe).prop_map(str::to_string),
            1 => prop::sample::select(tricky).prop_map(str::to_string),
        ]
    }

    fn tree() -> impl Strategy<Value = T> {
        let leaf = word(SAFE, TRICKY).prop_map(T::S);
        leaf.prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(T::Seq),
                prop::collection::vec((word(SAFE_KEYS, TRICKY_KEYS), inner), 0..5).prop_map(dedup),
            ]
        })
    }

    /// Mostly distinct keys (a duplicate now and then exercises the bail-out).
    fn dedup(mut entries: Vec<(String, T)>) -> T {
        if entries.len() % 4 != 3 {
            let mut seen = std::collections::HashSet::new();
            entries.retain(|(k, _)| seen.insert(k.clone()));
        }
        T::Map(entries)
    }

    fn root() -> impl Strategy<Value = T> {
        prop::collection::vec((word(SAFE_KEYS, TRICKY_KEYS), tree()), 1..6).prop_map(dedup)
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
    }

    fn scalar(s: &str, rng: &mut Rng) -> String {
        match rng.next() % 4 {
            0 => format!("'{}'", s.replace('\'', "''")),
            1 => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            _ => s.to_string(),
        }
    }

    fn trailer(rng: &mut Rng) -> &'static str {
        match rng.next() % 6 {
            0 => " # note",
            1 => "  ",
            _ => "",
        }
    }

    fn filler(out: &mut String, indent: usize, rng: &mut Rng) {
        if rng.one_in(8) {
            out.push('\n');
        }
        if rng.one_in(8) {
            out.push_str(&" ".repeat(indent));
            out.push_str("# comment: - [x]\n");
        }
    }

    fn render_map(
        entries: &[(String, T)],
        indent: usize,
        inline_first: bool,
        out: &mut String,
        rng: &mut Rng,
    ) {
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 || !inline_first {
                filler(out, indent, rng);
                out.push_str(&" ".repeat(indent));
            }
            out.push_str(&if rng.one_in(6) {
                scalar(k, rng)
            } else {
                k.clone()
            });
            out.push(':');
            render_after(v, indent, out, rng);
        }
    }

    fn render_after(v: &T, indent: usize, out: &mut String, rng: &mut Rng) {
        let step = if rng.one_in(3) { 4 } else { 2 };
        match v {
            T::S(s) => {
                out.push(' ');
                out.push_str(&scalar(s, rng));
                out.push_str(trailer(rng));
                out.push('\n');
            }
            T::Seq(items) if items.is_empty() => out.push_str(" []\n"),
            T::Seq(items) if items.iter().all(|t| matches!(t, T::S(_))) && rng.one_in(2) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|t| match t {
                        T::S(s) => scalar(s, rng),
                        _ => String::new(),
                    })
                    .collect();
                out.push_str(&format!(
                    " [{}]{}\n",
                    parts.join(if rng.one_in(2) { ", " } else { "," }),
                    trailer(rng)
                ));
            }
            T::Seq(items) => {
                out.push_str(trailer(rng));
                out.push('\n');
                let ind = if rng.one_in(3) { indent } else { indent + step };
                render_seq(items, ind, false, out, rng);
            }
            T::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
            T::Map(entries) => {
                out.push_str(trailer(rng));
                out.push('\n');
                render_map(entries, indent + step, false, out, rng);
            }
        }
    }

    fn render_seq(items: &[T], indent: usize, inline_first: bool, out: &mut String, rng: &mut Rng) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                filler(out, indent, rng);
                out.push_str(&" ".repeat(indent));
            }
            out.push('-');
            match item {
                T::Map(entries) if !entries.is_empty() && rng.one_in(2) => {
                    out.push(' ');
                    render_map(entries, indent + 2, true, out, rng);
                }
                T::Seq(inner) if !inner.is_empty() && rng.one_in(2) => {
                    out.push(' ');
                    render_seq(inner, indent + 2, true, out, rng);
                }
                other => render_after(other, indent, out, rng),
            }
        }
    }

    fn render(docs: &[T], seed: u64) -> String {
        let mut rng = Rng(seed | 1);
        let mut out = String::new();
        for (i, d) in docs.iter().enumerate() {
            if i > 0 || rng.one_in(3) {
                out.push_str(if rng.one_in(3) {
                    "--- # doc\n"
                } else {
                    "---\n"
                });
            }
            if let T::Map(entries) = d {
                render_map(entries, 0, false, &mut out, &mut rng);
            }
        }
        out
    }

    static ACCEPTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn check(text: &str) -> Result<bool, TestCaseError> {
        let n = SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 500 == 499 {
            println!(
                "fast path took {} of {}",
                ACCEPTED.load(std::sync::atomic::Ordering::Relaxed),
                n + 1
            );
        }
        if let Some(fast) = parse(text) {
            ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let general = parse_documents_general(text);
            prop_assert_eq!(Ok(fast), general, "input:\n{}", text);
            return Ok(true);
        }
        Ok(false)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn fast_reader_agrees_with_serde_saphyr(docs in prop::collection::vec(root(), 1..3), seed in any::<u64>()) {
            let text = render(&docs, seed);
            check(&text)?;
        }

        #[test]
        fn fast_reader_agrees_on_garbled_input(
            docs in prop::collection::vec(root(), 1..2),
            seed in any::<u64>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(&[" ", "  ", ":", "-", "\n", "#", "'", "\"", "[", "]", "", "---\n", "- ", "a: "][..])), 1..4),
        ) {
            let mut text = render(&docs, seed);
            for (at, ins) in edits {
                let mut cut = at.index(text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                // Replace one character (or insert at the end).
                let end = text[cut..].chars().next().map_or(cut, |c| cut + c.len_utf8());
                text.replace_range(cut..end, ins);
            }
            check(&text)?;
        }
    }

    #[test]
    fn typical_catalog_file_takes_the_fast_path() {
        let text = "# header\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-1\n  tags: [python, web]\n  annotations:\n    github.com/project-slug: org/svc-1\n  links:\n    - url: https://x.example/a#b\n      title: 'Docs'\nspec:\n  type: service\n  owner: \"team-a\"\n  dependsOn:\n  - component:svc-2\n  - resource:db\n---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: x}\n";
        // The flow mapping in the second document leaves the subset.
        assert!(parse(text).is_none());
        let text = text.replace(
            "metadata: {name: x}",
            "metadata:\n  name: x\nspec:\n  children: []\n",
        );
        let fast = parse(&text).expect("fast path");
        assert_eq!(Ok(fast), parse_documents_general(&text));
    }
}
