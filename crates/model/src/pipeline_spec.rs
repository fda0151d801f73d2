//! The `pipeline` section of `pave.yaml`: GitHub Actions' workflow shape
//! (`env`, `jobs.<id>.{needs, if, steps[].run, strategy.matrix, ...}`) plus
//! Pave's additions (step `cache`, step `junit`, job `artifacts`, job
//! `uses: template@version` with `with:`).
//!
//! Parsing goes through the same position-aware tree as the rest of
//! `pave.yaml` (see [`crate::parse::parse_pave_yaml`]); this module holds the
//! types, the checks that need the whole pipeline (job references, cycles,
//! expressions and the contexts they name), and matrix expansion. Every error
//! it reports carries the file, line and column.

use crate::error::SpecError;
use crate::node::{Node, NodeKind, Pos};
use crate::pipeline_expr::{self, CONTEXTS};
use crate::suggest::did_you_mean;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// GitHub's default job timeout, in minutes.
pub const DEFAULT_TIMEOUT_MINUTES: u32 = 360;
/// Most job instances one matrix may expand to (GitHub's limit).
pub const MAX_MATRIX_JOBS: usize = 256;

// ------------------------------------------------------------------- types

/// A string-keyed map that keeps YAML order (job order matters for display
/// and for stable plans). Serialized as a JSON/YAML mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = a.next_key::<String>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = a.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

/// A key GitHub workflows carry that Pave accepts and ignores
/// (`runs-on`, `permissions`, `concurrency`). Never serialized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d)?;
        Ok(Ignored)
    }
}

/// `continue-on-error`: a boolean, or an expression (GitHub's
/// `continue-on-error: ${{ matrix.experimental }}`), which may use only the
/// `matrix` context and is resolved when the run is planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BoolOrExpr {
    Bool(bool),
    Expr(String),
}

impl Default for BoolOrExpr {
    fn default() -> Self {
        BoolOrExpr::Bool(false)
    }
}

impl BoolOrExpr {
    /// True only for a literal `true` (an unresolved expression is false).
    pub fn is_true(&self) -> bool {
        matches!(self, BoolOrExpr::Bool(true))
    }

    fn is_false(&self) -> bool {
        matches!(self, BoolOrExpr::Bool(false))
    }
}

impl<'de> Deserialize<'de> for BoolOrExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BoolOrExpr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a `${{ }}` expression")
            }
            fn visit_bool<E>(self, b: bool) -> Result<BoolOrExpr, E> {
                Ok(BoolOrExpr::Bool(b))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BoolOrExpr, E> {
                match s.trim() {
                    "true" => Ok(BoolOrExpr::Bool(true)),
                    "false" => Ok(BoolOrExpr::Bool(false)),
                    t if t.contains("${{") => Ok(BoolOrExpr::Expr(s.to_string())),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Top-level `pipeline:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// GitHub's triggers, kept opaque (used by later trigger work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Value>,
    /// Accepted and ignored (GitHub token permissions).
    #[serde(default, skip_serializing)]
    pub permissions: Ignored,
    /// Accepted and ignored (GitHub concurrency groups).
    #[serde(default, skip_serializing)]
    pub concurrency: Ignored,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Jobs by id, in file order.
    pub jobs: OrderedMap<JobSpec>,
}

/// `defaults:` (pipeline or job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunDefaults>,
}

/// `defaults.run:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
}

/// `jobs.<id>:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Job ids this job waits for (`needs: build` or `needs: [build, lint]`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub needs: Vec<String>,
    /// `if:`; absent means `success()`.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub env: BTreeMap<String, String>,
    /// Job outputs: name → expression (usually `${{ steps.<id>.outputs.<name> }}`).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSpec>,
    #[serde(default = "default_timeout", deserialize_with = "minutes")]
    pub timeout_minutes: u32,
    #[serde(default, skip_serializing_if = "BoolOrExpr::is_false")]
    pub continue_on_error: BoolOrExpr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Pave: files uploaded to the artifact store when the job succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactSpec>,
    /// Accepted and ignored: GitHub workflows always have it.
    #[serde(default, skip_serializing)]
    pub runs_on: Ignored,
    /// Accepted and ignored (GitHub token permissions).
    #[serde(default, skip_serializing)]
    pub permissions: Ignored,
    /// Pave: a reusable pipeline template, `name@version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Parameters for `uses:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, Value>,
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_MINUTES
}

fn yes() -> bool {
    true
}

/// `jobs.<id>.strategy:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// Cancel the other instances of the matrix when one fails (default true).
    #[serde(default = "yes")]
    pub fail_fast: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// One matrix combination: keys and values in axis order, then keys added by `include`.
pub type Combination = Vec<(String, Value)>;

/// `strategy.matrix:` — axes (in file order) plus `include` and `exclude`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub axes: Vec<(String, Vec<Value>)>,
    pub include: Vec<Map<String, Value>>,
    pub exclude: Vec<Map<String, Value>>,
}

impl Serialize for Matrix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let extra = usize::from(!self.include.is_empty()) + usize::from(!self.exclude.is_empty());
        let mut m = s.serialize_map(Some(self.axes.len() + extra))?;
        for (k, v) in &self.axes {
            m.serialize_entry(k, v)?;
        }
        if !self.include.is_empty() {
            m.serialize_entry("include", &self.include)?;
        }
        if !self.exclude.is_empty() {
            m.serialize_entry("exclude", &self.exclude)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Matrix;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of axis names to lists of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Matrix, A::Error> {
                let mut m = Matrix::default();
                while let Some(k) = a.next_key::<String>()? {
                    match k.as_str() {
                        "include" => m.include = a.next_value()?,
                        "exclude" => m.exclude = a.next_value()?,
                        _ => {
                            let values: Vec<Value> = a.next_value()?;
                            m.axes.push((k, values));
                        }
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

impl Matrix {
    /// Every key a combination may have: the axes, then keys `include` adds.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.axes.iter().map(|(k, _)| k.clone()).collect();
        for inc in &self.include {
            for k in inc.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    }

    /// Expands the matrix as GitHub does: the cartesian product of the axes
    /// (first axis varies slowest), minus combinations that `exclude` matches
    /// (a partial match suffices), then each `include` entry is merged into
    /// every original combination whose axis values it does not change (keys
    /// it adds may overwrite keys added by an earlier `include`), or, when it
    /// fits none, appended as a combination of its own.
    pub fn expand(&self) -> Result<Vec<Combination>, String> {
        let mut product: usize = 1;
        for (k, vals) in &self.axes {
            if vals.is_empty() {
                return Err(format!("matrix axis `{k}` is an empty list"));
            }
            product = product.saturating_mul(vals.len());
        }
        if product > MAX_MATRIX_JOBS * 64 {
            return Err(format!(
                "the matrix has {product} combinations; at most {MAX_MATRIX_JOBS} jobs are allowed"
            ));
        }
        let mut combos: Vec<Combination> = if self.axes.is_empty() {
            Vec::new()
        } else {
            vec![Vec::new()]
        };
        for (k, vals) in &self.axes {
            let mut next = Vec::with_capacity(combos.len() * vals.len());
            for c in &combos {
                for v in vals {
                    let mut c2 = c.clone();
                    c2.push((k.clone(), v.clone()));
                    next.push(c2);
                }
            }
            combos = next;
        }
        let get =
            |c: &Combination, k: &str| c.iter().find(|(ck, _)| ck == k).map(|(_, v)| v.clone());
        combos.retain(|c| {
            !self
                .exclude
                .iter()
                .any(|ex| !ex.is_empty() && ex.iter().all(|(k, v)| get(c, k).as_ref() == Some(v)))
        });
        let axis_keys: Vec<&str> = self.axes.iter().map(|(k, _)| k.as_str()).collect();
        let originals = combos.len();
        for inc in &self.include {
            let mut matched = false;
            for c in combos.iter_mut().take(originals) {
                let fits = inc.iter().all(|(k, v)| {
                    !axis_keys.contains(&k.as_str()) || get(c, k).as_ref() == Some(v)
                });
                if fits {
                    matched = true;
                    for (k, v) in inc {
                        match c.iter_mut().find(|(ck, _)| ck == k) {
                            Some(slot) => slot.1 = v.clone(),
                            None => c.push((k.clone(), v.clone())),
                        }
                    }
                }
            }
            if !matched {
                let mut c: Combination = Vec::new();
                // Keep axis order first, then the rest in the entry's order.
                for k in &axis_keys {
                    if let Some(v) = inc.get(*k) {
                        c.push(((*k).to_string(), v.clone()));
                    }
                }
                for (k, v) in inc {
                    if !axis_keys.contains(&k.as_str()) {
                        c.push((k.clone(), v.clone()));
                    }
                }
                combos.push(c);
            }
        }
        if combos.len() > MAX_MATRIX_JOBS {
            return Err(format!(
                "the matrix expands to {} jobs; at most {MAX_MATRIX_JOBS} are allowed",
                combos.len()
            ));
        }
        Ok(combos)
    }
}

/// `jobs.<id>.artifacts[]` (Pave).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub name: String,
    pub path: String,
}

/// `steps[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `if:`; absent means `success()`.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The command (required; validation reports a step without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BoolOrExpr::is_false")]
    pub continue_on_error: BoolOrExpr,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_minutes"
    )]
    pub timeout_minutes: Option<u32>,
    /// Pave: the step cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Pave: a glob of JUnit XML reports to ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junit: Option<String>,
}

/// A step's `cache:` (Pave).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Globs of input files whose content is part of the key.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Paths restored on a hit.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Names of environment variables whose values are part of the key.
    #[serde(default)]
    pub env: Vec<String>,
}

// ------------------------------------------------------ serde field helpers

/// A scalar read as text: strings, numbers and booleans (`FOO: 1` → `"1"`),
/// `null` → `""`, as GitHub does for `env` values.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m: Option<BTreeMap<String, Scalar>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a job id or a list of job ids")
        }
        fn visit_str<E>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(vec![s.to_string()])
        }
        fn visit_unit<E>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = a.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

struct Minutes(u32);

impl<'de> Deserialize<'de> for Minutes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Minutes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of minutes (1 or more)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Minutes, E> {
                match u32::try_from(n) {
                    Ok(m) if m > 0 => Ok(Minutes(m)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(n), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Minutes, E> {
                Err(E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        d.deserialize_any(V)
    }
}

fn minutes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Minutes::deserialize(d).map(|m| m.0)
}

fn opt_minutes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<Minutes>::deserialize(d)?.map(|m| m.0))
}

// -------------------------------------------------------------- validation

/// A step in a path into the YAML tree.
#[derive(Clone, Copy)]
enum P<'a> {
    K(&'a str),
    I(usize),
}

fn render(path: &[P<'_>]) -> String {
    let mut out = String::from("pipeline");
    for p in path {
        match p {
            P::K(k) => {
                out.push('.');
                out.push_str(k);
            }
            P::I(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The rule for job and step ids.
const ID_RULE: &str = "a letter or `_`, then letters, digits, `-` or `_`";

fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Checker<'a> {
    file: &'a str,
    /// The `pipeline:` value node.
    root: &'a Node,
    /// Where to report when nothing closer is known (the `pipeline:` key).
    anchor: Pos,
    errs: Vec<SpecError>,
}

impl<'a> Checker<'a> {
    /// The deepest node along `path`.
    fn node(&self, path: &[P<'_>]) -> &'a Node {
        let mut cur = self.root;
        for p in path {
            let next = match (p, &cur.kind) {
                (P::K(k), NodeKind::Map(_)) => cur.entry(k).map(|e| &e.value),
                (P::I(i), NodeKind::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    fn pos(&self, path: &[P<'_>]) -> Pos {
        let n = self.node(path);
        if std::ptr::eq(n, self.root) && !path.is_empty() {
            self.anchor
        } else {
            n.pos
        }
    }

    /// The position of the last key of `path` (falls back to the value).
    fn key_pos(&self, path: &[P<'_>]) -> Pos {
        if let Some((P::K(k), parent)) = path.split_last() {
            let n = self.node(parent);
            if let Some(e) = n.entry(k) {
                return e.key_pos;
            }
        }
        self.pos(path)
    }

    fn push(&mut self, pos: Pos, message: String, expected: Option<String>) {
        let mut e = SpecError::new(self.file, pos.line, pos.column, message);
        e.expected = expected;
        self.errs.push(e);
    }
}

/// Reports GitHub keys Pave does not support, with what to do instead. Runs
/// before typed deserialization so that these get a clear message rather
/// than "unknown field".
pub(crate) fn reject_unsupported(file: &str, pipeline: &Node) -> Vec<SpecError> {
    let mut errs = Vec::new();
    let Some(jobs) = pipeline.entry("jobs").and_then(|e| e.value.entries()) else {
        return errs;
    };
    for job in jobs {
        let Some(fields) = job.value.entries() else {
            continue;
        };
        for f in fields {
            let what = match f.key.as_str() {
                "services" => {
                    "service containers (`services:`) are not supported; start what the tests need from a `run:` step (e.g. `docker run -d ...`) or use a shared test environment"
                }
                "container" => {
                    "`container:` is not supported: jobs run as processes in a checked-out workdir on the agent; run the container from a step if you need one"
                }
                _ => continue,
            };
            errs.push(
                SpecError::new(
                    file,
                    f.key_pos.line,
                    f.key_pos.column,
                    format!("in `pipeline.jobs.{}`: {what}", job.key),
                )
                .expected("steps with `run:`"),
            );
        }
        let Some(NodeKind::Seq(steps)) = job.value.entry("steps").map(|e| &e.value.kind) else {
            continue;
        };
        for (i, step) in steps.iter().enumerate() {
            let Some(uses) = step.entry("uses") else {
                continue;
            };
            let action = uses.value.as_str().unwrap_or("");
            let msg = if action.to_ascii_lowercase().starts_with("actions/checkout") {
                format!(
                    "`uses: {action}` is not needed: Pave checks the repository out into the job's workdir at the run's commit before the first step; remove this step"
                )
            } else {
                "`uses:` of GitHub actions is not supported in steps; write the commands as `run:`"
                    .to_string()
            };
            errs.push(
                SpecError::new(
                    file,
                    uses.key_pos.line,
                    uses.key_pos.column,
                    format!("in `pipeline.jobs.{}.steps[{i}]`: {msg}", job.key),
                )
                .expected("a `run:` command"),
            );
        }
    }
    errs
}

/// What an expression may name where it appears.
struct Scope<'s> {
    /// Keys of this job's matrix; `None` when there is no matrix here.
    matrix: Option<Vec<String>>,
    /// This job's `needs`; `None` outside jobs.
    needs: Option<&'s [String]>,
    /// Step ids visible here; `None` when the `steps` context is not available.
    steps: Option<Vec<&'s str>>,
    /// `continue-on-error` may only use `matrix`.
    only_matrix: bool,
}

/// Checks the pipeline as a whole; `node` is the `pipeline:` value and
/// `anchor` the `pipeline:` key. Returns every problem found.
pub(crate) fn validate(
    file: &str,
    spec: &PipelineSpec,
    node: &Node,
    anchor: Pos,
) -> Vec<SpecError> {
    let mut c = Checker {
        file,
        root: node,
        anchor,
        errs: Vec::new(),
    };
    let jobs = &spec.jobs;
    if jobs.is_empty() {
        let pos = c.pos(&[P::K("jobs")]);
        c.push(
            pos,
            "`pipeline.jobs` is empty; a pipeline needs at least one job".into(),
            Some("`jobs: { <id>: { steps: [ { run: ... } ] } }`".into()),
        );
    }
    let top_scope = Scope {
        matrix: None,
        needs: None,
        steps: None,
        only_matrix: false,
    };
    for (k, v) in &spec.env {
        c.template(v, &[P::K("env"), P::K(k)], &top_scope, spec);
    }
    let job_ids: Vec<&str> = jobs.keys().collect();
    for (id, job) in jobs.iter() {
        check_job(&mut c, spec, &job_ids, id, job);
    }
    check_cycles(&mut c, spec);
    c.errs.sort_by_key(|e| (e.line, e.column));
    c.errs
}

fn check_job(c: &mut Checker<'_>, spec: &PipelineSpec, job_ids: &[&str], id: &str, job: &JobSpec) {
    let jp = [P::K("jobs"), P::K(id)];
    if !valid_id(id) {
        let pos = c.key_pos(&jp);
        c.push(
            pos,
            format!("invalid job id `{id}` in `pipeline.jobs`: must be {ID_RULE}"),
            Some(ID_RULE.into()),
        );
    }
    // needs
    let needs_node = c.node(&[P::K("jobs"), P::K(id), P::K("needs")]);
    for (i, need) in job.needs.iter().enumerate() {
        let pos = match &needs_node.kind {
            NodeKind::Seq(items) => items.get(i).map_or(needs_node.pos, |n| n.pos),
            _ => needs_node.pos,
        };
        if !job_ids.contains(&need.as_str()) {
            let mut m = format!(
                "`pipeline.jobs.{id}.needs` names `{need}`, which is not a job in this pipeline"
            );
            if let Some(s) = did_you_mean(need, job_ids) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            c.push(pos, m, Some(format!("one of: {}", job_ids.join(", "))));
        } else if job.needs[..i].contains(need) {
            c.push(
                pos,
                format!("`pipeline.jobs.{id}.needs` lists `{need}` twice"),
                None,
            );
        }
    }
    // uses / steps
    match &job.uses {
        Some(uses) => {
            let ok = uses.split_once('@').is_some_and(|(n, v)| {
                !n.trim().is_empty() && !v.trim().is_empty() && !v.contains('@')
            });
            if !ok {
                let pos = c.pos(&[P::K("jobs"), P::K(id), P::K("uses")]);
                c.push(
                    pos,
                    format!("`pipeline.jobs.{id}.uses` must name a template and an explicit version, found `{uses}`"),
                    Some("`<template>@<version>`".into()),
                );
            }
            if !job.steps.is_empty() {
                let pos = c.key_pos(&[P::K("jobs"), P::K(id), P::K("steps")]);
                c.push(
                    pos,
                    format!("job `{id}` has both `uses` and `steps`; a job runs either a template or its own steps"),
                    None,
                );
            }
        }
        None => {
            if job.steps.is_empty() {
                let pos = c.key_pos(&jp);
                c.push(
                    pos,
                    format!("job `{id}` has no steps"),
                    Some("`steps: [ { run: <command> } ]` or `uses: <template>@<version>`".into()),
                );
            }
            if !job.with.is_empty() {
                let pos = c.key_pos(&[P::K("jobs"), P::K(id), P::K("with")]);
                c.push(
                    pos,
                    format!("`pipeline.jobs.{id}.with` is only meaningful with `uses: <template>@<version>`"),
                    None,
                );
            }
        }
    }
    // matrix
    let matrix_keys = job
        .strategy
        .as_ref()
        .and_then(|s| s.matrix.as_ref())
        .map(|m| check_matrix(c, id, m));
    if let Some(s) = &job.strategy
        && s.matrix.is_none()
    {
        let pos = c.key_pos(&[P::K("jobs"), P::K(id), P::K("strategy")]);
        c.push(
            pos,
            format!("`pipeline.jobs.{id}.strategy` has no `matrix`"),
            Some("`strategy: { matrix: { <axis>: [values] } }`".into()),
        );
    }
    // artifacts
    for (i, a) in job.artifacts.iter().enumerate() {
        let ap = [P::K("jobs"), P::K(id), P::K("artifacts"), P::I(i)];
        if a.name.trim().is_empty() || a.path.trim().is_empty() {
            let pos = c.pos(&ap);
            c.push(
                pos,
                format!("`{}` needs a non-empty `name` and `path`", render(&ap)),
                None,
            );
        } else if job.artifacts[..i].iter().any(|b| b.name == a.name) {
            let pos = c.pos(&[
                P::K("jobs"),
                P::K(id),
                P::K("artifacts"),
                P::I(i),
                P::K("name"),
            ]);
            c.push(
                pos,
                format!("job `{id}` declares artifact `{}` twice", a.name),
                None,
            );
        }
    }
    // steps
    let mut seen_ids: Vec<&str> = Vec::new();
    for (i, step) in job.steps.iter().enumerate() {
        let sp = [P::K("jobs"), P::K(id), P::K("steps"), P::I(i)];
        if let Some(sid) = &step.id {
            let pos = c.pos(&[P::K("jobs"), P::K(id), P::K("steps"), P::I(i), P::K("id")]);
            if !valid_id(sid) {
                c.push(
                    pos,
                    format!(
                        "invalid step id `{sid}` in `{}`: must be {ID_RULE}",
                        render(&sp)
                    ),
                    Some(ID_RULE.into()),
                );
            } else if seen_ids.contains(&sid.as_str()) {
                c.push(pos, format!("duplicate step id `{sid}` in job `{id}`; step ids must be unique within a job"), None);
            }
        }
        if step.run.is_none() {
            let pos = c.pos(&sp);
            c.push(
                pos,
                format!("`{}` has no `run`; every step runs a command", render(&sp)),
                Some("`run: <command>`".into()),
            );
        }
        let scope = Scope {
            matrix: matrix_keys.clone(),
            needs: Some(&job.needs),
            steps: Some(seen_ids.clone()),
            only_matrix: false,
        };
        let field =
            |name: &'static str| [P::K("jobs"), P::K(id), P::K("steps"), P::I(i), P::K(name)];
        if let Some(cond) = &step.condition {
            c.condition(cond, &field("if"), &scope, spec);
        }
        for (name, value) in [
            ("run", &step.run),
            ("name", &step.name),
            ("working-directory", &step.working_directory),
            ("shell", &step.shell),
            ("junit", &step.junit),
        ] {
            if let Some(v) = value {
                c.template(v, &field(name), &scope, spec);
            }
        }
        for (k, v) in &step.env {
            let p = [
                P::K("jobs"),
                P::K(id),
                P::K("steps"),
                P::I(i),
                P::K("env"),
                P::K(k),
            ];
            c.template(v, &p, &scope, spec);
        }
        if let BoolOrExpr::Expr(e) = &step.continue_on_error {
            let ms = Scope {
                matrix: matrix_keys.clone(),
                needs: None,
                steps: None,
                only_matrix: true,
            };
            c.template(e, &field("continue-on-error"), &ms, spec);
        }
        if let Some(sid) = &step.id {
            seen_ids.push(sid);
        }
    }
    // job-level expressions
    let scope = Scope {
        matrix: matrix_keys.clone(),
        needs: Some(&job.needs),
        steps: None,
        only_matrix: false,
    };
    let jf = |name: &'static str| [P::K("jobs"), P::K(id), P::K(name)];
    if let Some(cond) = &job.condition {
        c.condition(cond, &jf("if"), &scope, spec);
    }
    if let Some(name) = &job.name {
        c.template(name, &jf("name"), &scope, spec);
    }
    for (k, v) in &job.env {
        c.template(
            v,
            &[P::K("jobs"), P::K(id), P::K("env"), P::K(k)],
            &scope,
            spec,
        );
    }
    for (k, v) in &job.with {
        check_value_templates(
            c,
            v,
            &[P::K("jobs"), P::K(id), P::K("with"), P::K(k)],
            &scope,
            spec,
        );
    }
    if let BoolOrExpr::Expr(e) = &job.continue_on_error {
        let ms = Scope {
            matrix: matrix_keys.clone(),
            needs: None,
            steps: None,
            only_matrix: true,
        };
        c.template(e, &jf("continue-on-error"), &ms, spec);
    }
    let out_scope = Scope {
        matrix: matrix_keys,
        needs: Some(&job.needs),
        steps: Some(job.steps.iter().filter_map(|s| s.id.as_deref()).collect()),
        only_matrix: false,
    };
    for (k, v) in &job.outputs {
        c.template(
            v,
            &[P::K("jobs"), P::K(id), P::K("outputs"), P::K(k)],
            &out_scope,
            spec,
        );
    }
}

fn check_value_templates(
    c: &mut Checker<'_>,
    v: &Value,
    path: &[P<'_>],
    scope: &Scope<'_>,
    spec: &PipelineSpec,
) {
    match v {
        Value::String(s) => c.template(s, path, scope, spec),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut p = path.to_vec();
                p.push(P::I(i));
                check_value_templates(c, item, &p, scope, spec);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let mut p = path.to_vec();
                p.push(P::K(k));
                check_value_templates(c, item, &p, scope, spec);
            }
        }
        _ => {}
    }
}

/// Checks a matrix; returns its keys (axes and `include` keys).
fn check_matrix(c: &mut Checker<'_>, id: &str, m: &Matrix) -> Vec<String> {
    let mp = [P::K("jobs"), P::K(id), P::K("strategy"), P::K("matrix")];
    for (k, vals) in &m.axes {
        if vals.is_empty() {
            let pos = c.pos(&[
                P::K("jobs"),
                P::K(id),
                P::K("strategy"),
                P::K("matrix"),
                P::K(k),
            ]);
            c.push(
                pos,
                format!(
                    "matrix axis `{k}` in `pipeline.jobs.{id}.strategy.matrix` is an empty list"
                ),
                Some("a non-empty list of values".into()),
            );
        }
    }
    if m.axes.is_empty() && m.include.iter().all(Map::is_empty) {
        let pos = c.key_pos(&mp);
        c.push(
            pos,
            format!("`pipeline.jobs.{id}.strategy.matrix` has no values"),
            Some("`<axis>: [values]` or `include: [ {...} ]`".into()),
        );
        return m.keys();
    }
    let axis_keys: Vec<&str> = m.axes.iter().map(|(k, _)| k.as_str()).collect();
    for (i, ex) in m.exclude.iter().enumerate() {
        for k in ex.keys() {
            if !axis_keys.contains(&k.as_str()) {
                let ep = [
                    P::K("jobs"),
                    P::K(id),
                    P::K("strategy"),
                    P::K("matrix"),
                    P::K("exclude"),
                    P::I(i),
                ];
                let item = c.node(&ep);
                let pos = item.entry(k).map_or(item.pos, |e| e.key_pos);
                let mut msg = format!(
                    "`pipeline.jobs.{id}.strategy.matrix.exclude[{i}]` names `{k}`, which is not a matrix axis"
                );
                if let Some(s) = did_you_mean(k, &axis_keys) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                c.push(pos, msg, Some(format!("one of: {}", axis_keys.join(", "))));
            }
        }
    }
    if m.axes.iter().all(|(_, v)| !v.is_empty())
        && let Err(e) = m.expand()
    {
        let pos = c.key_pos(&mp);
        c.push(
            pos,
            format!("`pipeline.jobs.{id}.strategy.matrix`: {e}"),
            None,
        );
    }
    m.keys()
}

const NEEDS_FIELDS: [&str; 2] = ["outputs", "result"];
const STEPS_FIELDS: [&str; 3] = ["outputs", "outcome", "conclusion"];
const PAVE_FIELDS: [&str; 4] = ["sha", "ref", "run_id", "service"];
const JOB_FIELDS: [&str; 1] = ["status"];
const RUNNER_FIELDS: [&str; 4] = ["os", "arch", "name", "temp"];

fn suggest(word: &str, candidates: &[&str]) -> String {
    did_you_mean(word, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

fn check_field(ctx: &str, path: &[String], fields: &[&str]) -> Result<(), String> {
    match path.get(1) {
        Some(f) if !fields.contains(&f.as_str()) => Err(format!(
            "`{ctx}.{f}` is not defined; `{ctx}` has {}{}",
            fields.join(", "),
            suggest(f, fields)
        )),
        _ => Ok(()),
    }
}

/// Checks one context reference (its constant path) against the scope.
fn check_ref(path: &[String], scope: &Scope<'_>, spec: &PipelineSpec) -> Result<(), String> {
    let root = path[0].as_str();
    if !CONTEXTS.contains(&root) {
        let mut m = format!(
            "unknown context `{root}`; Pave's contexts are {}",
            CONTEXTS.join(", ")
        );
        if root == "github" {
            match path.get(1).map(String::as_str) {
                Some(f @ ("sha" | "ref" | "run_id")) => {
                    m.push_str(&format!(" (for `github.{f}` use `pave.{f}`)"));
                }
                Some("repository") => m.push_str(" (for the service name use `pave.service`)"),
                _ => {}
            }
        } else if root == "inputs" || root == "vars" {
            m.push_str(" (use `env` for values and `secrets` for secrets)");
        }
        return Err(m);
    }
    if scope.only_matrix && root != "matrix" {
        return Err(format!(
            "`continue-on-error` can only use the `matrix` context, found `{root}`"
        ));
    }
    match root {
        "matrix" => {
            let Some(keys) = &scope.matrix else {
                return Err(if scope.needs.is_some() {
                    "`matrix` is used but this job has no `strategy.matrix`".to_string()
                } else {
                    "the `matrix` context is only available inside jobs".to_string()
                });
            };
            if let Some(k) = path.get(1)
                && !keys.contains(k)
            {
                let ks: Vec<&str> = keys.iter().map(String::as_str).collect();
                return Err(format!(
                    "`matrix.{k}` is not a key of this job's matrix (keys: {}){}",
                    ks.join(", "),
                    suggest(k, &ks)
                ));
            }
            Ok(())
        }
        "needs" => {
            let Some(needs) = scope.needs else {
                return Err("the `needs` context is only available inside jobs".to_string());
            };
            let Some(j) = path.get(1) else { return Ok(()) };
            if !needs.contains(j) {
                let ns: Vec<&str> = needs.iter().map(String::as_str).collect();
                return Err(if ns.is_empty() {
                    format!(
                        "`needs.{j}`: this job has no `needs`; add `needs: [{j}]` to use its outputs"
                    )
                } else {
                    format!(
                        "`needs.{j}`: `{j}` is not in this job's `needs` ({}){}",
                        ns.join(", "),
                        suggest(j, &ns)
                    )
                });
            }
            check_field(&format!("needs.{j}"), &path[1..], &NEEDS_FIELDS)?;
            if path.get(2).map(String::as_str) == Some("outputs")
                && let Some(o) = path.get(3)
                && let Some(job) = spec.jobs.get(j)
                // A template's outputs are checked when it is expanded.
                && job.uses.is_none()
                && !job.outputs.contains_key(o)
            {
                let os: Vec<&str> = job.outputs.keys().map(String::as_str).collect();
                return Err(format!(
                    "`needs.{j}.outputs.{o}`: job `{j}` has no output `{o}`{}{}",
                    if os.is_empty() {
                        String::from(" (it declares no `outputs`)")
                    } else {
                        format!(" (its outputs: {})", os.join(", "))
                    },
                    suggest(o, &os)
                ));
            }
            Ok(())
        }
        "steps" => {
            let Some(steps) = &scope.steps else {
                return Err(
                    "the `steps` context is only available in steps and in job `outputs`"
                        .to_string(),
                );
            };
            let Some(s) = path.get(1) else { return Ok(()) };
            if !steps.contains(&s.as_str()) {
                return Err(format!(
                    "`steps.{s}`: no earlier step in this job has `id: {s}`{}",
                    suggest(s, steps)
                ));
            }
            check_field(&format!("steps.{s}"), &path[1..], &STEPS_FIELDS)
        }
        "pave" => check_field("pave", path, &PAVE_FIELDS),
        "job" => check_field("job", path, &JOB_FIELDS),
        "runner" => check_field("runner", path, &RUNNER_FIELDS),
        _ => Ok(()), // env, secrets: any name
    }
}

impl Checker<'_> {
    fn expr_refs(
        &mut self,
        exprs: Vec<&pipeline_expr::Expr>,
        path: &[P<'_>],
        scope: &Scope<'_>,
        spec: &PipelineSpec,
    ) {
        let mut reported = BTreeSet::new();
        for e in exprs {
            for r in e.context_refs() {
                if let Err(m) = check_ref(&r, scope, spec)
                    && reported.insert(m.clone())
                {
                    let pos = self.pos(path);
                    self.push(pos, format!("in `{}`: {m}", render(path)), None);
                }
            }
        }
    }

    fn template(&mut self, text: &str, path: &[P<'_>], scope: &Scope<'_>, spec: &PipelineSpec) {
        if !text.contains("${{") {
            return;
        }
        match pipeline_expr::parse_template(text) {
            Ok(t) => self.expr_refs(t.exprs().collect(), path, scope, spec),
            Err(e) => {
                let pos = self.pos(path);
                self.push(
                    pos,
                    format!("invalid expression in `{}`: {e}", render(path)),
                    Some("`${{ <expression> }}`".into()),
                );
            }
        }
    }

    fn condition(&mut self, text: &str, path: &[P<'_>], scope: &Scope<'_>, spec: &PipelineSpec) {
        match pipeline_expr::parse_condition(text) {
            Ok(e) => self.expr_refs(vec![&e], path, scope, spec),
            Err(e) => {
                let pos = self.pos(path);
                self.push(
                    pos,
                    format!("invalid condition in `{}`: {e}", render(path)),
                    Some("an expression such as `success() && matrix.os == 'linux'`".into()),
                );
            }
        }
    }
}

/// Finds cycles in `needs` and reports each once, naming it
/// (`build -> test -> build`) at the `needs:` of its first job in file order.
fn check_cycles(c: &mut Checker<'_>, spec: &PipelineSpec) {
    let ids: Vec<&str> = spec.jobs.keys().collect();
    let index = |id: &str| ids.iter().position(|j| *j == id);
    let edges: Vec<Vec<usize>> = spec
        .jobs
        .iter()
        .map(|(_, j)| j.needs.iter().filter_map(|n| index(n)).collect())
        .collect();
    for cycle in find_cycles(&edges) {
        let first = cycle[0];
        let mut names: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
        names.push(ids[first]);
        let id = ids[first];
        let needs_node = c.node(&[P::K("jobs"), P::K(id), P::K("needs")]);
        let next = ids[*cycle.get(1).unwrap_or(&first)];
        let pos = match &needs_node.kind {
            NodeKind::Seq(items) => spec
                .jobs
                .get(id)
                .and_then(|j| j.needs.iter().position(|n| n == next))
                .and_then(|i| items.get(i))
                .map_or(needs_node.pos, |n| n.pos),
            _ => needs_node.pos,
        };
        let pos = if std::ptr::eq(needs_node, c.root) {
            c.anchor
        } else {
            pos
        };
        c.push(
            pos,
            format!("`needs` forms a cycle: {}", names.join(" -> ")),
            Some("jobs whose `needs` form a DAG".into()),
        );
    }
}

/// Elementary cycles, one per strongly connected component that has one
/// (enough to name every cycle the user must break), each starting at its
/// lowest index and following edges in order.
pub(crate) fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut covered = vec![false; n];
    for start in 0..n {
        if covered[start] {
            continue;
        }
        // Depth-first search from `start` for a path back to `start`, over
        // nodes >= start (so each cycle is found from its lowest node).
        let mut path = vec![start];
        let mut iters = vec![0usize];
        let mut on_path = vec![false; n];
        let mut dead = vec![false; n];
        on_path[start] = true;
        let mut found = None;
        while let Some(&node) = path.last() {
            let k = iters.last().copied().unwrap_or(0);
            if let Some(&next) = edges[node].get(k) {
                if let Some(it) = iters.last_mut() {
                    *it += 1;
                }
                if next == start {
                    found = Some(path.clone());
                    break;
                }
                if next > start && !on_path[next] && !dead[next] {
                    on_path[next] = true;
                    path.push(next);
                    iters.push(0);
                }
            } else {
                on_path[node] = false;
                dead[node] = true;
                path.pop();
                iters.pop();
            }
        }
        if let Some(cycle) = found {
            for &i in &cycle {
                covered[i] = true;
            }
            out.push(cycle);
        }
    }
    out
}
