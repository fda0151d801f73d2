//! A Prometheus check's success condition: a comparison with a number, as
//! written in the spec (`< 0.05`, `<= 1`, `> 0`, `>= 0.99`, `== 0`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A comparison operator of a success condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
        }
    }
}

/// `value <op> threshold` must hold for the check to pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// How the value is compared.
    pub op: Comparison,
    /// What it is compared with.
    pub threshold: f64,
}

/// Why a success condition could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a success condition: {reason} (expected an operator and a number, e.g. `< 0.05`, `<= 1`, `> 0`, `>= 0.99`, `== 0`)"
)]
pub struct ConditionError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Condition {
    /// True when `value` satisfies the condition; NaN never does.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Comparison::Less => value < self.threshold,
            Comparison::LessOrEqual => value <= self.threshold,
            Comparison::Greater => value > self.threshold,
            Comparison::GreaterOrEqual => value >= self.threshold,
            Comparison::Equal => value == self.threshold,
        }
    }

    /// Of several values, the one furthest on the failing side (the largest
    /// for `<`/`<=`, the smallest for `>`/`>=`, the first unequal one for
    /// `==`): all values satisfy the condition exactly when this one does.
    pub fn worst(&self, values: &[f64]) -> Option<f64> {
        let it = values.iter().copied();
        match self.op {
            Comparison::Less | Comparison::LessOrEqual => it.reduce(f64::max),
            Comparison::Greater | Comparison::GreaterOrEqual => it.reduce(f64::min),
            Comparison::Equal => values
                .iter()
                .copied()
                .find(|v| !self.holds(*v))
                .or(values.first().copied()),
        }
    }
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ConditionError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let s = text.trim();
        // Two-character operators first, so `<=` is not read as `<` then `=1`.
        let ops = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("==", Comparison::Equal),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
        ];
        let Some((op, rest)) = ops
            .iter()
            .find_map(|(sym, op)| s.strip_prefix(sym).map(|rest| (*op, rest)))
        else {
            return Err(err("it does not start with <, <=, >, >= or =="));
        };
        let number = rest.trim();
        if number.is_empty() {
            return Err(err("the number is missing"));
        }
        let threshold: f64 = number
            .parse()
            .map_err(|_| err(&format!("`{number}` is not a number")))?;
        if !threshold.is_finite() {
            return Err(err("the number must be finite"));
        }
        Ok(Condition { op, threshold })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.threshold)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
