//! Located parsing of `pave.yaml`'s `deploy` section into [`DeploySpec`].
//!
//! Hand-walked rather than derived: strategies are written either as a bare
//! name (`strategy: rolling`) or as a one-key mapping with options
//! (`strategy: { canary: { steps: [...] } }`), canary steps are one-key
//! mappings, and every mistake must point at its own line and column with
//! what was expected there. Errors are collected, not stopped at the first.

use crate::deploy_spec::*;
use crate::error::SpecError;
use crate::node::{Entry, Node, NodeKind, Pos};
use crate::suggest::did_you_mean;
use crate::units::{parse_duration, parse_fraction};
use std::time::Duration;

const STRATEGIES: &[&str] = &["rolling", "blue-green", "canary"];
const STEP_KINDS: &[&str] = &["weight", "pause", "analysis"];
/// Measured intervals a baseline comparison needs in one analysis window
/// (the judge wants 5 complete ones; the first and last are partial).
const MIN_COMPARE_INTERVALS: u32 = 7;
const CHECK_KINDS: &[&str] = &["error-rate", "latency", "compare-baseline", "prometheus"];

/// Parses and validates the `deploy:` value at `key_pos`.
pub(crate) fn parse_deploy(
    file: &str,
    node: &Node,
    key_pos: Pos,
) -> Result<DeploySpec, Vec<SpecError>> {
    let mut w = Walker {
        file,
        errs: Vec::new(),
    };
    let spec = w.deploy(node, key_pos);
    match spec {
        Some(spec) if w.errs.is_empty() => Ok(spec),
        _ => Err(w.errs),
    }
}

struct Walker<'f> {
    file: &'f str,
    errs: Vec<SpecError>,
}

impl Walker<'_> {
    fn err(&mut self, pos: Pos, message: String, expected: &str) {
        self.errs
            .push(SpecError::new(self.file, pos.line, pos.column, message).expected(expected));
    }

    /// The entries of a mapping with only `allowed` keys; unknown keys are reported.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
        expected: &str,
    ) -> Option<&'n [Entry]> {
        let Some(entries) = node.entries() else {
            self.err(
                node.pos,
                format!("`{path}` must be a mapping, found {}", node.type_name()),
                expected,
            );
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                let mut m = format!("unknown field `{}` in `{path}`", e.key);
                if let Some(s) = did_you_mean(&e.key, allowed) {
                    m.push_str(&format!("; did you mean `{s}`?"));
                }
                self.err(e.key_pos, m, &format!("one of: {}", allowed.join(", ")));
            }
        }
        Some(entries)
    }

    fn string(&mut self, node: &Node, path: &str, expected: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            NodeKind::Str(_) => {
                self.err(node.pos, format!("`{path}` must not be empty"), expected);
                None
            }
            NodeKind::Num(n) => Some(n.to_string()),
            _ => {
                self.err(
                    node.pos,
                    format!("`{path}` must be a string, found {}", node.type_name()),
                    expected,
                );
                None
            }
        }
    }

    fn integer(
        &mut self,
        node: &Node,
        path: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        match &node.kind {
            NodeKind::Num(n) => match n.as_u64() {
                Some(v) if range.contains(&v) => Some(v),
                _ => {
                    self.err(
                        node.pos,
                        format!("`{path}` must be {expected}, found {n}"),
                        &expected,
                    );
                    None
                }
            },
            _ => {
                self.err(
                    node.pos,
                    format!("`{path}` must be {expected}, found {}", node.type_name()),
                    &expected,
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        const EXPECTED: &str = "a duration such as `300ms`, `20s`, `5m`";
        match &node.kind {
            NodeKind::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(why) => {
                    self.err(node.pos, format!("`{path}`: {why}"), EXPECTED);
                    None
                }
            },
            NodeKind::Num(n) => {
                self.err(
                    node.pos,
                    format!("`{path}` needs a unit: write `{n}s` or `{n}ms`"),
                    EXPECTED,
                );
                None
            }
            _ => {
                self.err(
                    node.pos,
                    format!("`{path}` must be a duration, found {}", node.type_name()),
                    EXPECTED,
                );
                None
            }
        }
    }

    fn fraction(&mut self, node: &Node, path: &str) -> Option<f64> {
        const EXPECTED: &str = "a percentage such as `1%` or a fraction such as `0.01`";
        let text = match &node.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Num(n) => n.to_string(),
            _ => {
                self.err(
                    node.pos,
                    format!("`{path}` must be a percentage, found {}", node.type_name()),
                    EXPECTED,
                );
                return None;
            }
        };
        match parse_fraction(&text) {
            Ok(f) => Some(f),
            Err(why) => {
                self.err(node.pos, format!("`{path}`: {why}"), EXPECTED);
                None
            }
        }
    }

    fn deploy(&mut self, node: &Node, key_pos: Pos) -> Option<DeploySpec> {
        const KEYS: &[&str] = &["run", "health", "replicas", "env", "environments"];
        let entries = self.map(
            node,
            "deploy",
            KEYS,
            "a mapping with `run` (and optionally `health`, `replicas`, `env`, `environments`)",
        )?;
        let get = |k: &str| entries.iter().find(|e| e.key == k);
        let run = match get("run") {
            Some(e) => self.string(
                &e.value,
                "deploy.run",
                "the command that starts one instance, e.g. `python3 app.py`",
            ),
            None => {
                let pos = if node.pos.line == 0 {
                    key_pos
                } else {
                    node.pos
                };
                self.err(pos, "missing required field `run` in `deploy`: Pave needs the command that starts your service".into(), "`run: <command>` (Pave sets PORT)");
                None
            }
        };
        let health = get("health").map_or(Some(HealthSpec::default()), |e| self.health(&e.value));
        let replicas = get("replicas").map_or(Some(1), |e| {
            self.integer(&e.value, "deploy.replicas", 1..=16)
        });
        let env = get("env").map_or(Some(Vec::new()), |e| self.env_vars(&e.value));
        let environments =
            get("environments").map_or(Some(Vec::new()), |e| self.environments(&e.value));
        Some(DeploySpec {
            run: run?,
            health: health?,
            replicas: replicas? as u32,
            env: env?,
            environments: environments?,
        })
    }

    fn health(&mut self, node: &Node) -> Option<HealthSpec> {
        const KEYS: &[&str] = &["path", "interval", "timeout", "deadline"];
        let entries = self.map(
            node,
            "deploy.health",
            KEYS,
            "a mapping with `path` (and optionally `interval`, `timeout`, `deadline`)",
        )?;
        let mut h = HealthSpec::default();
        let mut ok = true;
        for e in entries {
            let path = format!("deploy.health.{}", e.key);
            match e.key.as_str() {
                "path" => match self.string(&e.value, &path, "an HTTP path such as `/healthz`") {
                    Some(p) if p.starts_with('/') => h.path = p,
                    Some(p) => {
                        self.err(
                            e.value.pos,
                            format!("`{path}` must start with `/`, found `{p}`"),
                            "an HTTP path such as `/healthz`",
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                "interval" => {
                    ok &= self
                        .duration(&e.value, &path)
                        .map(|d| h.interval = d)
                        .is_some()
                }
                "timeout" => {
                    ok &= self
                        .duration(&e.value, &path)
                        .map(|d| h.timeout = d)
                        .is_some()
                }
                "deadline" => {
                    ok &= self
                        .duration(&e.value, &path)
                        .map(|d| h.deadline = d)
                        .is_some()
                }
                _ => ok = false,
            }
        }
        ok.then_some(h)
    }

    fn env_vars(&mut self, node: &Node) -> Option<Vec<(String, String)>> {
        let entries = self.map_any(node, "deploy.env", "a mapping of NAME: value")?;
        let mut out = Vec::new();
        let mut ok = true;
        for e in entries {
            let valid = !e.key.is_empty()
                && e.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !e.key.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                self.err(
                    e.key_pos,
                    format!("`{}` is not a valid environment variable name", e.key),
                    "letters, digits and `_`, not starting with a digit",
                );
                ok = false;
                continue;
            }
            if matches!(
                e.key.as_str(),
                "PORT" | "PAVE_SERVICE" | "PAVE_ENV" | "PAVE_RELEASE"
            ) {
                self.err(e.key_pos, format!("`deploy.env.{}` is set by Pave for every instance and cannot be overridden", e.key), "another variable name");
                ok = false;
                continue;
            }
            match &e.value.kind {
                NodeKind::Str(s) => out.push((e.key.clone(), s.clone())),
                NodeKind::Num(n) => out.push((e.key.clone(), n.to_string())),
                NodeKind::Bool(b) => out.push((e.key.clone(), b.to_string())),
                _ => {
                    self.err(
                        e.value.pos,
                        format!(
                            "`deploy.env.{}` must be a string, found {}",
                            e.key,
                            e.value.type_name()
                        ),
                        "a string",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A mapping with any keys.
    fn map_any<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n [Entry]> {
        match node.entries() {
            Some(e) => Some(e),
            None => {
                self.err(
                    node.pos,
                    format!("`{path}` must be a mapping, found {}", node.type_name()),
                    expected,
                );
                None
            }
        }
    }

    fn environments(&mut self, node: &Node) -> Option<Vec<EnvironmentDeploy>> {
        let entries = self.map_any(
            node,
            "deploy.environments",
            "a mapping of environment name to `{ strategy: ... }`",
        )?;
        let mut out = Vec::new();
        let mut ok = true;
        for e in entries {
            if let Err(rule) = crate::entity_name_rule(&e.key) {
                self.err(
                    e.key_pos,
                    format!("invalid environment name `{}`: must be {rule}", e.key),
                    rule,
                );
                ok = false;
                continue;
            }
            let path = format!("deploy.environments.{}", e.key);
            let strategy = match &e.value.kind {
                NodeKind::Null => Some(Strategy::Rolling),
                _ => {
                    let Some(fields) = self.map(
                        &e.value,
                        &path,
                        &["strategy"],
                        "`{ strategy: rolling | blue-green | canary }`",
                    ) else {
                        ok = false;
                        continue;
                    };
                    match fields.iter().find(|f| f.key == "strategy") {
                        Some(f) => self.strategy(&f.value, &format!("{path}.strategy")),
                        None => Some(Strategy::Rolling),
                    }
                }
            };
            match strategy {
                Some(strategy) => out.push(EnvironmentDeploy {
                    name: e.key.clone(),
                    strategy,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The one key of a one-key mapping (`{ canary: {...} }`), checked against `kinds`.
    fn one_key<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        kinds: &[&str],
        what: &str,
    ) -> Option<&'n Entry> {
        let expected = format!("one of: {}", kinds.join(", "));
        let entries = match node.entries() {
            Some(e) if e.len() == 1 => e,
            Some(e) => {
                self.err(
                    node.pos,
                    format!(
                        "`{path}` must have exactly one {what} key, found {}",
                        e.len()
                    ),
                    &expected,
                );
                return None;
            }
            None => {
                self.err(
                    node.pos,
                    format!(
                        "`{path}` must be a {what} name or a one-key mapping, found {}",
                        node.type_name()
                    ),
                    &expected,
                );
                return None;
            }
        };
        let e = &entries[0];
        if !kinds.contains(&e.key.as_str()) {
            let mut m = format!("unknown {what} `{}` in `{path}`", e.key);
            if let Some(s) = did_you_mean(&e.key, kinds) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            self.err(e.key_pos, m, &expected);
            return None;
        }
        Some(e)
    }

    fn strategy(&mut self, node: &Node, path: &str) -> Option<Strategy> {
        if let NodeKind::Str(name) = &node.kind {
            return match name.as_str() {
                "rolling" => Some(Strategy::Rolling),
                "blue-green" => Some(Strategy::BlueGreen(BlueGreenSpec::default())),
                "canary" => {
                    self.err(node.pos, format!("`{path}: canary` needs its steps"), "`canary: { steps: [ { weight: 20 }, { analysis: { duration: 30s } }, { weight: 100 } ] }`");
                    None
                }
                other => {
                    let mut m = format!("unknown strategy `{other}` in `{path}`");
                    if let Some(s) = did_you_mean(other, STRATEGIES) {
                        m.push_str(&format!("; did you mean `{s}`?"));
                    }
                    self.err(node.pos, m, "one of: rolling, blue-green, canary");
                    None
                }
            };
        }
        let e = self.one_key(node, path, STRATEGIES, "strategy")?;
        let inner = format!("{path}.{}", e.key);
        match e.key.as_str() {
            "rolling" => {
                if !matches!(e.value.kind, NodeKind::Null) {
                    self.map(&e.value, &inner, &[], "no options (`rolling: {}`)")?;
                }
                Some(Strategy::Rolling)
            }
            "blue-green" => self.blue_green(&e.value, &inner).map(Strategy::BlueGreen),
            _ => self.canary(&e.value, &inner).map(Strategy::Canary),
        }
    }

    fn blue_green(&mut self, node: &Node, path: &str) -> Option<BlueGreenSpec> {
        let mut spec = BlueGreenSpec::default();
        if matches!(node.kind, NodeKind::Null) {
            return Some(spec);
        }
        let entries = self.map(
            node,
            path,
            &["analysis", "keep-old-for"],
            "a mapping with optional `analysis` and `keep-old-for`",
        )?;
        let mut ok = true;
        for e in entries {
            let p = format!("{path}.{}", e.key);
            match e.key.as_str() {
                "analysis" => match self.analysis(&e.value, &p) {
                    Some(a) => spec.analysis = Some(a),
                    None => ok = false,
                },
                "keep-old-for" => {
                    ok &= self
                        .duration(&e.value, &p)
                        .map(|d| spec.keep_old_for = d)
                        .is_some()
                }
                _ => ok = false,
            }
        }
        ok.then_some(spec)
    }

    fn canary(&mut self, node: &Node, path: &str) -> Option<CanarySpec> {
        const KEYS: &[&str] = &["steps", "analysis", "background-analysis"];
        let entries = self.map(
            node,
            path,
            KEYS,
            "a mapping with `steps` (and optionally `analysis`, `background-analysis`)",
        )?;
        let get = |k: &str| entries.iter().find(|e| e.key == k);
        let analysis = get("analysis").map_or(Some(AnalysisSpec::default()), |e| {
            self.analysis(&e.value, &format!("{path}.analysis"))
        });
        let background = match get("background-analysis") {
            None => Some(false),
            Some(e) => match e.value.kind {
                NodeKind::Bool(b) => Some(b),
                _ => {
                    self.err(
                        e.value.pos,
                        format!("`{path}.background-analysis` must be true or false"),
                        "a boolean",
                    );
                    None
                }
            },
        };
        let steps = match get("steps") {
            Some(e) => self.canary_steps(&e.value, &format!("{path}.steps")),
            None => {
                self.err(
                    node.pos,
                    format!("missing required field `steps` in `{path}`"),
                    "`steps: [ { weight: 20 }, { analysis: { duration: 30s } }, { weight: 100 } ]`",
                );
                None
            }
        };
        let (steps, analysis) = (steps?, analysis?);
        // A baseline comparison needs enough measured intervals to say
        // anything; a shorter window could only ever end inconclusive.
        if let Some(e) = get("steps")
            && let NodeKind::Seq(items) = &e.value.kind
        {
            for (i, step) in steps.iter().enumerate() {
                let CanaryStep::Analysis { duration, checks } = step else {
                    continue;
                };
                let compares = checks
                    .as_deref()
                    .unwrap_or(&analysis.checks)
                    .iter()
                    .any(|c| matches!(c, CheckSpec::CompareBaseline { .. }));
                let needed = analysis.interval * MIN_COMPARE_INTERVALS;
                if compares && *duration < needed {
                    let pos = items.get(i).map_or(e.value.pos, |n| n.pos);
                    self.err(
                        pos,
                        format!(
                            "analysis step {i} lasts {}, too short for compare-baseline: it needs at least {MIN_COMPARE_INTERVALS} intervals of {} ({})",
                            crate::units::format_duration(*duration),
                            crate::units::format_duration(analysis.interval),
                            crate::units::format_duration(needed),
                        ),
                        "a longer `duration`, or checks without compare-baseline",
                    );
                    return None;
                }
            }
        }
        Some(CanarySpec {
            steps,
            analysis,
            background_analysis: background?,
        })
    }

    fn canary_steps(&mut self, node: &Node, path: &str) -> Option<Vec<CanaryStep>> {
        const EXPECTED: &str =
            "a list of steps: `- weight: 20`, `- pause: 10s`, `- analysis: { duration: 30s }`";
        let NodeKind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("`{path}` must be a list, found {}", node.type_name()),
                EXPECTED,
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        let mut last_weight: Option<(u32, Pos)> = None;
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(e) = self.one_key(item, &p, STEP_KINDS, "step") else {
                ok = false;
                continue;
            };
            let inner = format!("{p}.{}", e.key);
            let step = match e.key.as_str() {
                "weight" => self.integer(&e.value, &inner, 1..=100).and_then(|w| {
                    let w = w as u32;
                    if let Some((prev, _)) = last_weight
                        && w <= prev
                    {
                        self.err(
                            e.value.pos,
                            format!(
                                "canary weights must increase: step {i} sets {w}% after {prev}%"
                            ),
                            "a weight above the previous one, ending at 100",
                        );
                        return None;
                    }
                    last_weight = Some((w, e.value.pos));
                    Some(CanaryStep::Weight { weight: w })
                }),
                "pause" => match &e.value.kind {
                    NodeKind::Map(m) if m.is_empty() => Some(CanaryStep::Pause { duration: None }),
                    _ => self
                        .duration(&e.value, &inner)
                        .map(|d| CanaryStep::Pause { duration: Some(d) }),
                },
                _ => self.analysis_step(&e.value, &inner),
            };
            match step {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        if ok {
            match last_weight {
                None => {
                    self.err(node.pos, format!("`{path}` has no `weight` step; a canary must end by sending 100% of traffic to the new release"), "a last weight step of 100");
                    ok = false;
                }
                Some((w, pos)) if w != 100 => {
                    self.err(
                        pos,
                        format!("the last canary weight is {w}%; weights must increase to 100"),
                        "a last weight step of 100",
                    );
                    ok = false;
                }
                _ => {}
            }
        }
        ok.then_some(out)
    }

    fn analysis_step(&mut self, node: &Node, path: &str) -> Option<CanaryStep> {
        let entries = self.map(
            node,
            path,
            &["duration", "checks"],
            "`{ duration: 30s }` (and optionally `checks`)",
        )?;
        let get = |k: &str| entries.iter().find(|e| e.key == k);
        let duration = match get("duration") {
            Some(e) => self.duration(&e.value, &format!("{path}.duration")),
            None => {
                self.err(
                    node.pos,
                    format!("missing required field `duration` in `{path}`"),
                    "`duration: 30s`",
                );
                None
            }
        };
        let checks = match get("checks") {
            Some(e) => self.checks(&e.value, &format!("{path}.checks")).map(Some),
            None => Some(None),
        };
        Some(CanaryStep::Analysis {
            duration: duration?,
            checks: checks?,
        })
    }

    fn analysis(&mut self, node: &Node, path: &str) -> Option<AnalysisSpec> {
        const KEYS: &[&str] = &["checks", "interval", "min-requests", "on-inconclusive"];
        let entries = self.map(node, path, KEYS, "a mapping with `checks` (and optionally `interval`, `min-requests`, `on-inconclusive`)")?;
        let mut spec = AnalysisSpec::default();
        let mut ok = true;
        for e in entries {
            let p = format!("{path}.{}", e.key);
            match e.key.as_str() {
                "checks" => ok &= self.checks(&e.value, &p).map(|c| spec.checks = c).is_some(),
                "interval" => {
                    ok &= self
                        .duration(&e.value, &p)
                        .map(|d| spec.interval = d)
                        .is_some()
                }
                "min-requests" => {
                    ok &= self
                        .integer(&e.value, &p, 1..=1_000_000)
                        .map(|n| spec.min_requests = n)
                        .is_some()
                }
                "on-inconclusive" => {
                    let v = match e.value.as_str() {
                        Some("pause") => Some(OnInconclusive::Pause),
                        Some("rollback") => Some(OnInconclusive::Rollback),
                        Some("continue") => Some(OnInconclusive::Continue),
                        _ => None,
                    };
                    match v {
                        Some(v) => spec.on_inconclusive = v,
                        None => {
                            self.err(
                                e.value.pos,
                                format!("`{p}` must be pause, rollback or continue"),
                                "one of: pause, rollback, continue",
                            );
                            ok = false;
                        }
                    }
                }
                _ => ok = false,
            }
        }
        ok.then_some(spec)
    }

    fn checks(&mut self, node: &Node, path: &str) -> Option<Vec<CheckSpec>> {
        const EXPECTED: &str = "a list such as `- error-rate: { max: 1% }`";
        let NodeKind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("`{path}` must be a list, found {}", node.type_name()),
                EXPECTED,
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let check = self.one_key(item, &p, CHECK_KINDS, "check").and_then(|e| {
                let inner = format!("{p}.{}", e.key);
                self.check(e, &inner)
            });
            match check {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn check(&mut self, e: &Entry, path: &str) -> Option<CheckSpec> {
        match e.key.as_str() {
            "error-rate" => {
                let f = self.map(&e.value, path, &["max"], "`{ max: 1% }`")?;
                let Some(max) = f.iter().find(|x| x.key == "max") else {
                    self.err(
                        e.value.pos,
                        format!("missing required field `max` in `{path}`"),
                        "`max: 1%`",
                    );
                    return None;
                };
                let max = self.fraction(&max.value, &format!("{path}.max"))?;
                Some(CheckSpec::ErrorRate { max })
            }
            "latency" => {
                let f = self.map(
                    &e.value,
                    path,
                    &["quantile", "max"],
                    "`{ quantile: p95, max: 300ms }`",
                )?;
                let quantile = match f.iter().find(|x| x.key == "quantile") {
                    None => Some(Quantile::P95),
                    Some(q) => match q.value.as_str() {
                        Some("p50") => Some(Quantile::P50),
                        Some("p95") => Some(Quantile::P95),
                        Some("p99") => Some(Quantile::P99),
                        _ => {
                            self.err(
                                q.value.pos,
                                format!("`{path}.quantile` must be p50, p95 or p99"),
                                "one of: p50, p95, p99",
                            );
                            None
                        }
                    },
                };
                let max = match f.iter().find(|x| x.key == "max") {
                    Some(m) => self.duration(&m.value, &format!("{path}.max")),
                    None => {
                        self.err(
                            e.value.pos,
                            format!("missing required field `max` in `{path}`"),
                            "`max: 300ms`",
                        );
                        None
                    }
                };
                Some(CheckSpec::Latency {
                    quantile: quantile?,
                    max: max?,
                })
            }
            "compare-baseline" => {
                let f = self.map(
                    &e.value,
                    path,
                    &["metrics", "confidence"],
                    "`{ metrics: [error-rate, latency], confidence: 0.98 }`",
                )?;
                let mut metrics = vec![Metric::ErrorRate, Metric::Latency];
                let mut confidence = 0.98;
                let mut ok = true;
                for x in f {
                    let p = format!("{path}.{}", x.key);
                    match (x.key.as_str(), &x.value.kind) {
                        ("metrics", NodeKind::Seq(items)) => {
                            metrics.clear();
                            for m in items {
                                match m.as_str() {
                                    Some("error-rate") => metrics.push(Metric::ErrorRate),
                                    Some("latency") => metrics.push(Metric::Latency),
                                    _ => {
                                        self.err(
                                            m.pos,
                                            format!("`{p}` lists an unknown metric"),
                                            "error-rate, latency",
                                        );
                                        ok = false;
                                    }
                                }
                            }
                        }
                        ("confidence", NodeKind::Num(n)) => match n.as_f64() {
                            Some(c) if c > 0.5 && c < 1.0 => confidence = c,
                            _ => {
                                self.err(
                                    x.value.pos,
                                    format!("`{p}` must be between 0.5 and 1 (e.g. 0.98)"),
                                    "a number such as 0.98",
                                );
                                ok = false;
                            }
                        },
                        _ => {
                            self.err(
                                x.value.pos,
                                format!("`{p}` has the wrong type ({})", x.value.type_name()),
                                "metrics: a list; confidence: a number",
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(CheckSpec::CompareBaseline {
                    metrics,
                    confidence,
                })
            }
            _ => {
                let f = self.map(
                    &e.value,
                    path,
                    &["address", "query", "success"],
                    "`{ address: http://127.0.0.1:9090, query: <PromQL>, success: '< 0.05' }`",
                )?;
                let mut field = |k: &str, expected: &str| match f.iter().find(|x| x.key == k) {
                    Some(x) => self.string(&x.value, &format!("{path}.{k}"), expected),
                    None => {
                        self.err(
                            e.value.pos,
                            format!("missing required field `{k}` in `{path}`"),
                            expected,
                        );
                        None
                    }
                };
                let address = field(
                    "address",
                    "the Prometheus base URL, e.g. http://127.0.0.1:9090",
                );
                let query = field("query", "a PromQL query");
                let success = field("success", "a condition such as `< 0.05`");
                let success = success?;
                if !valid_condition(&success) {
                    let pos = f
                        .iter()
                        .find(|x| x.key == "success")
                        .map_or(e.value.pos, |x| x.value.pos);
                    self.err(
                        pos,
                        format!("`{path}.success` is `{success}`, not a condition"),
                        "an operator (<, <=, >, >=, ==) and a number, e.g. `< 0.05`",
                    );
                    return None;
                }
                Some(CheckSpec::Prometheus {
                    address: address?,
                    query: query?,
                    success,
                })
            }
        }
    }
}

/// True for `<op> <number>` with op one of `<`, `<=`, `>`, `>=`, `==`.
fn valid_condition(text: &str) -> bool {
    let t = text.trim();
    let rest = ["<=", ">=", "==", "<", ">"]
        .iter()
        .find_map(|op| t.strip_prefix(op));
    rest.is_some_and(|n| n.trim().parse::<f64>().is_ok_and(f64::is_finite))
}
