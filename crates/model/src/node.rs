//! A YAML document tree that remembers where every node and key came from.
//!
//! Why a tree of our own rather than `serde_json::Value` plus a side index:
//! Backstage files keep unknown fields, so they must be read generically, yet
//! every missing/invalid field must be reported at a line and column. Each node
//! here carries its 1-based position (keys carry theirs too), so validation can
//! point at the offending value, or at the `spec:` key of a missing field,
//! without a second pass.
//!
//! Two front ends build it:
//! * [`crate::fast_yaml`], a strict line-based reader for the plain block-style
//!   subset that catalog files almost always use. It is ~5x faster than the
//!   general parser and gives up (returns `None`) on anything it does not fully
//!   understand, so it never decides what valid YAML means on its own.
//! * serde-saphyr (the general YAML 1.2 parser), through `Spanned<T>`, for
//!   everything else and for every error message about malformed YAML.
//!
//! A differential proptest checks that both produce identical trees.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A 1-based line/column position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    /// A position at `line`, `column`.
    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the value starts.
    pub pos: Pos,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null` or an empty value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(Number),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
}

/// A mapping entry: key text and position, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The entries when this node is a mapping.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(e) => Some(e),
            _ => None,
        }
    }

    /// The entry for `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// The string when this node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short description of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Num(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Converts into a JSON value (positions are dropped).
    pub fn into_value(self) -> Value {
        match self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(b),
            NodeKind::Num(n) => Value::Number(n),
            NodeKind::Str(s) => Value::String(s),
            NodeKind::Seq(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            NodeKind::Map(entries) => Value::Object(entries_into_map(entries)),
        }
    }
}

/// Converts mapping entries into a JSON object.
pub(crate) fn entries_into_map(entries: Vec<Entry>) -> Map<String, Value> {
    let mut map = Map::new();
    for e in entries {
        map.insert(e.key, e.value.into_value());
    }
    map
}

/// A malformed-YAML error from the general parser.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// Parses every non-empty document of `content` (empty and null documents are
/// skipped, as Backstage does).
pub fn parse_documents(content: &str) -> Result<Vec<Node>, YamlError> {
    if let Some(docs) = crate::fast_yaml::parse(content) {
        return Ok(docs);
    }
    parse_documents_general(content)
}

/// Parser options: YAML 1.2 booleans (Backstage reads YAML 1.2, where `yes`
/// and `on` are strings) and budgets sized for catalog files with thousands of
/// documents (the serde-saphyr defaults stop at 1,024 documents). Alias
/// limits keep their protective defaults; nesting is capped at 32 levels
/// (default 64) so that a hostile document cannot exhaust a 2 MiB thread
/// stack, even in a debug build (see `tests/no_panic.rs`).
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 50_000_000,
            max_events: 100_000_000,
            max_depth: 32,
        },
    }
}

/// The general path: serde-saphyr with spans.
pub(crate) fn parse_documents_general(content: &str) -> Result<Vec<Node>, YamlError> {
    let docs: Vec<Spanned<RawKind>> =
        serde_saphyr::from_multiple_with_options(content, options()).map_err(yaml_error)?;
    Ok(docs.into_iter().map(spanned_node).collect())
}

fn yaml_error(e: serde_saphyr::Error) -> YamlError {
    let inner = e.without_snippet();
    let (line, column) = match inner.location() {
        Some(l) => (to_usize(l.line()), to_usize(l.column())),
        None => (0, 0),
    };
    let mut message = inner.to_string();
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_string();
    }
    YamlError {
        pos: Pos::new(line, column),
        message,
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn spanned_pos<T>(s: &Spanned<T>) -> Pos {
    Pos::new(
        to_usize(s.referenced.line()),
        to_usize(s.referenced.column()),
    )
}

fn spanned_node(s: Spanned<RawKind>) -> Node {
    let pos = spanned_pos(&s);
    Node {
        kind: s.value.0,
        pos,
    }
}

/// A node's value as read through serde; children are `Spanned` so that
/// serde-saphyr records their positions.
struct RawKind(NodeKind);

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawKind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Num(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Num(v.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawKind, E> {
        match Number::from_f64(v) {
            Some(n) => Ok(RawKind(NodeKind::Num(n))),
            None => Err(E::custom("non-finite numbers are not supported")),
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Str(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Str(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Str(
            String::from_utf8_lossy(v).into_owned(),
        )))
    }

    fn visit_unit<E>(self) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Null))
    }

    fn visit_none<E>(self) -> Result<RawKind, E> {
        Ok(RawKind(NodeKind::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawKind, D::Error> {
        RawKind::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<RawKind, D::Error> {
        RawKind::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<RawKind>>()? {
            items.push(spanned_node(item));
        }
        Ok(RawKind(NodeKind::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = a.next_key::<Spanned<String>>()? {
            let value = a.next_value::<Spanned<RawKind>>()?;
            entries.push(Entry {
                key_pos: spanned_pos(&key),
                key: key.value,
                value: spanned_node(value),
            });
        }
        Ok(RawKind(NodeKind::Map(entries)))
    }
}
