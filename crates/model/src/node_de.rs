//! A serde `Deserializer` over [`Node`] whose errors keep the position and
//! path of the node being read, so typed sections (`pave.yaml`) get located,
//! collectable errors from serde's own derive (unknown fields, missing fields,
//! wrong types) without hand-written field lists.

use crate::node::{Entry, Node, NodeKind, Pos};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::fmt;

/// One segment of the path to a node: a mapping key or a sequence index.
#[derive(Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The path from the document root, as a linked list on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Option<Seg<'a>>,
}

impl<'a> Path<'a> {
    /// The document root.
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        seg: None,
    };

    fn child(&'a self, seg: Seg<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Some(seg),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            if let Some(s) = p.seg {
                segs.push(s);
            }
            cur = p.parent;
        }
        let mut out = String::new();
        for s in segs.iter().rev() {
            match s {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// What went wrong while deserializing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeErrorKind {
    Custom(String),
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    InvalidType {
        found: String,
        expected: String,
    },
}

/// A deserialization error with the position and path (dotted, e.g.
/// `service.links[0]`) of the mapping or value concerned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub kind: DeErrorKind,
    pub pos: Option<Pos>,
    pub path: String,
}

impl DeError {
    fn at(mut self, pos: Pos, path: &Path<'_>) -> DeError {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = path.render();
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::Custom(m) => f.write_str(m),
            DeErrorKind::UnknownField { field, .. } => write!(f, "unknown field `{field}`"),
            DeErrorKind::MissingField(field) => write!(f, "missing required field `{field}`"),
            DeErrorKind::InvalidType { found, expected } => {
                write!(f, "expected {expected}, found {found}")
            }
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            kind: DeErrorKind::Custom(msg.to_string()),
            pos: None,
            path: String::new(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            kind: DeErrorKind::UnknownField {
                field: field.to_string(),
                expected,
            },
            pos: None,
            path: String::new(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            kind: DeErrorKind::MissingField(field),
            pos: None,
            path: String::new(),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError {
            kind: DeErrorKind::InvalidType {
                found: unexp.to_string(),
                expected: exp.to_string(),
            },
            pos: None,
            path: String::new(),
        }
    }
}

/// Deserializes `T` from `node`; `anchor` is where errors about the node as a
/// whole (e.g. a missing field) are reported.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(
    node: &Node,
    anchor: Pos,
) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        anchor,
        path: &Path::ROOT,
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    /// Where to report problems with this node as a whole: the key that
    /// introduced it, or the node itself for the root and sequence items.
    anchor: Pos,
    path: &'a Path<'a>,
}

fn found(node: &Node) -> String {
    node.type_name().to_string()
}

impl<'a> NodeDe<'a> {
    fn invalid<T>(&self, exp: &dyn de::Expected) -> Result<T, DeError> {
        Err(DeError {
            kind: DeErrorKind::InvalidType {
                found: found(self.node),
                expected: exp.to_string(),
            },
            pos: None,
            path: String::new(),
        }
        .at(self.node.pos, self.path))
    }

    fn visit_entries<'de, V: Visitor<'de>>(
        &self,
        entries: &'a [Entry],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let access = MapAcc {
            entries: entries.iter(),
            current: None,
            path: self.path,
        };
        visitor
            .visit_map(access)
            .map_err(|e| e.at(self.anchor, self.path))
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Num(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqAcc {
                items: items.iter().enumerate(),
                path: self.path,
            }),
            NodeKind::Map(entries) => return self.visit_entries(entries, visitor),
        };
        r.map_err(|e: DeError| e.at(self.node.pos, self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => visitor
                .visit_none()
                .map_err(|e: DeError| e.at(self.node.pos, self.path)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Plain integers and booleans read as their text, as a YAML parser
        // deserializing into a string would (`name: 2024`).
        let r = match &self.node.kind {
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Num(n) if !n.is_f64() => visitor.visit_str(&n.to_string()),
            NodeKind::Bool(b) => visitor.visit_str(if *b { "true" } else { "false" }),
            _ => return self.invalid(&visitor),
        };
        r.map_err(|e: DeError| e.at(self.node.pos, self.path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(items) => visitor
                .visit_seq(SeqAcc {
                    items: items.iter().enumerate(),
                    path: self.path,
                })
                .map_err(|e| e.at(self.node.pos, self.path)),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(entries) => self.visit_entries(entries, visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.node.pos, self.path)),
            _ => self.invalid(&visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct identifier
    }
}

struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a Path<'a>,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let path = self.path.child(Seg::Index(i));
                seed.deserialize(NodeDe {
                    node,
                    anchor: node.pos,
                    path: &path,
                })
                .map(Some)
            }
        }
    }
}

struct MapAcc<'a> {
    entries: std::slice::Iter<'a, Entry>,
    current: Option<&'a Entry>,
    path: &'a Path<'a>,
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some(entry) => {
                self.current = Some(entry);
                let key: de::value::StrDeserializer<'_, DeError> =
                    entry.key.as_str().into_deserializer();
                seed.deserialize(key)
                    .map(Some)
                    .map_err(|e| e.at(entry.key_pos, self.path))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.current.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let path = self.path.child(Seg::Key(&entry.key));
        seed.deserialize(NodeDe {
            node: &entry.value,
            anchor: entry.key_pos,
            path: &path,
        })
    }
}
