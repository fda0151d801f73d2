//! Parameter answers: parsing `k=v` strings by the schema's types, and
//! validation against the schema with defaults filled in.

use crate::error::{ParamError, ScaffoldError};
use crate::manifest::{Manifest, ParamType, Parameter};
use pave_model::suggest::did_you_mean;
use serde_json::{Number, Value};
use std::collections::BTreeMap;

/// Answers by parameter name.
pub type Answers = BTreeMap<String, Value>;

fn perr(param: &str, rule: &'static str, message: String) -> ParamError {
    ParamError {
        parameter: param.to_string(),
        rule,
        message,
    }
}

/// Turns `k=v` strings into answers, coercing each value to its parameter's
/// type (`--param port=8080` becomes a number for an integer parameter).
/// Unknown names and values of the wrong type are reported together.
pub fn parse_param_args(manifest: &Manifest, args: &[String]) -> Result<Answers, ScaffoldError> {
    let mut answers = Answers::new();
    let mut errs = Vec::new();
    for arg in args {
        let Some((k, v)) = arg.split_once('=') else {
            errs.push(perr(arg, "syntax", format!("`{arg}` is not key=value")));
            continue;
        };
        let k = k.trim();
        match manifest.parameter(k) {
            None => errs.push(unknown(manifest, k)),
            Some(p) => match coerce(p, v) {
                Ok(value) => {
                    answers.insert(k.to_string(), value);
                }
                Err(e) => errs.push(e),
            },
        }
    }
    if errs.is_empty() {
        Ok(answers)
    } else {
        Err(ScaffoldError::Params(errs))
    }
}

fn unknown(manifest: &Manifest, name: &str) -> ParamError {
    let names: Vec<&str> = manifest
        .parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut m = format!("the template has no parameter `{name}`");
    match did_you_mean(name, &names) {
        Some(s) => m.push_str(&format!("; did you mean `{s}`?")),
        None => m.push_str(&format!(" (it has: {})", names.join(", "))),
    }
    perr(name, "unknown", m)
}

/// Coerces a command-line string to `param`'s type.
pub fn coerce(param: &Parameter, raw: &str) -> Result<Value, ParamError> {
    let bad = |what: &str| perr(&param.name, "type", format!("`{raw}` is not {what}"));
    match param.ty {
        ParamType::String => Ok(Value::String(raw.to_string())),
        ParamType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| bad("an integer")),
        ParamType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("a number")),
        ParamType::Boolean => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("a boolean (true or false)")),
        },
    }
}

/// Checks answers against the schema: unknown names, missing required
/// parameters, then each value's rules. Returns the answers with defaults
/// filled in; every problem is reported, each naming the parameter and rule.
pub fn validate(manifest: &Manifest, answers: &Answers) -> Result<Answers, ScaffoldError> {
    let mut errs = Vec::new();
    for name in answers.keys() {
        if manifest.parameter(name).is_none() {
            errs.push(unknown(manifest, name));
        }
    }
    let mut out = Answers::new();
    for p in &manifest.parameters {
        match answers.get(&p.name).or(p.default.as_ref()) {
            Some(v) => match check(p, v) {
                Ok(()) => {
                    out.insert(p.name.clone(), v.clone());
                }
                Err(e) => errs.push(e),
            },
            None if p.required => errs.push(perr(
                &p.name,
                "required",
                format!(
                    "is required{}",
                    p.description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            )),
            None => {}
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ScaffoldError::Params(errs))
    }
}

/// Checks one value against one parameter's rules.
pub fn check(p: &Parameter, v: &Value) -> Result<(), ParamError> {
    let name = &p.name;
    let type_ok = match p.ty {
        ParamType::String => v.is_string(),
        ParamType::Integer => v.is_i64() || v.is_u64(),
        ParamType::Number => v.is_number(),
        ParamType::Boolean => v.is_boolean(),
    };
    if !type_ok {
        return Err(perr(
            name,
            "type",
            format!("{v} is not a {}", p.ty.as_str()),
        ));
    }
    if let Some(allowed) = &p.allowed
        && !allowed.iter().any(|a| a == v || numbers_equal(a, v))
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(perr(
            name,
            "enum",
            format!("{v} is not one of {}", list.join(", ")),
        ));
    }
    if let Value::String(s) = v {
        let len = s.chars().count() as u64;
        if let Some(min) = p.min_length
            && len < min
        {
            return Err(perr(
                name,
                "minLength",
                format!("`{s}` is {len} characters, at least {min} needed"),
            ));
        }
        if let Some(max) = p.max_length
            && len > max
        {
            return Err(perr(
                name,
                "maxLength",
                format!("`{s}` is {len} characters, at most {max} allowed"),
            ));
        }
        if let Some(pattern) = &p.pattern {
            let re = regex_lite::Regex::new(pattern).map_err(|e| {
                perr(
                    name,
                    "pattern",
                    format!("the template's pattern is invalid: {e}"),
                )
            })?;
            if !re.is_match(s) {
                return Err(perr(
                    name,
                    "pattern",
                    format!("`{s}` does not match {pattern}"),
                ));
            }
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = p.minimum
            && n < min
        {
            return Err(perr(
                name,
                "minimum",
                format!("{v} is below the minimum {min}"),
            ));
        }
        if let Some(max) = p.maximum
            && n > max
        {
            return Err(perr(
                name,
                "maximum",
                format!("{v} is above the maximum {max}"),
            ));
        }
    }
    Ok(())
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}
