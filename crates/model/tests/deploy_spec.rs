//! The `deploy` section of pave.yaml: the issue's example parses into typed
//! strategies, and every mistake is located with what was expected.

use pave_model::deploy_spec::*;
use pave_model::parse_pave_yaml;
use std::time::Duration;

const HEAD: &str = "service: { name: hello, owner: payments }\n";

fn deploy(yaml: &str) -> DeploySpec {
    let text = format!("{HEAD}{yaml}");
    match parse_pave_yaml("pave.yaml", &text) {
        Ok(doc) => doc.deploy.expect("deploy section"),
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// The errors as `line:column: message` strings.
fn errors(yaml: &str) -> Vec<String> {
    let text = format!("{HEAD}{yaml}");
    match parse_pave_yaml("pave.yaml", &text) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()
        }
    }
}

#[test]
fn the_issue_example_parses() {
    let d = deploy(
        "deploy:
  run: python3 app.py
  health: { path: /healthz }
  replicas: 2
  environments:
    dev:     { strategy: rolling }
    staging: { strategy: blue-green }
    prod:
      strategy:
        canary:
          steps:
            - weight: 20
            - analysis: { duration: 20s }
            - weight: 50
            - pause: 10s
            - pause: {}
            - weight: 100
          analysis:
            checks:
              - error-rate: { max: 1% }
              - latency: { quantile: p95, max: 300ms }
              - compare-baseline: { metrics: [error-rate, latency], confidence: 0.98 }
",
    );
    assert_eq!(d.run, "python3 app.py");
    assert_eq!(d.replicas, 2);
    assert_eq!(d.health.path, "/healthz");
    assert_eq!(d.strategy_for("dev"), Strategy::Rolling);
    assert!(matches!(d.strategy_for("staging"), Strategy::BlueGreen(_)));
    let Strategy::Canary(c) = d.strategy_for("prod") else {
        panic!("prod is a canary")
    };
    assert_eq!(
        c.steps,
        vec![
            CanaryStep::Weight { weight: 20 },
            CanaryStep::Analysis {
                duration: Duration::from_secs(20),
                checks: None
            },
            CanaryStep::Weight { weight: 50 },
            CanaryStep::Pause {
                duration: Some(Duration::from_secs(10))
            },
            CanaryStep::Pause { duration: None },
            CanaryStep::Weight { weight: 100 },
        ]
    );
    assert_eq!(
        c.analysis.checks,
        vec![
            CheckSpec::ErrorRate { max: 0.01 },
            CheckSpec::Latency {
                quantile: Quantile::P95,
                max: Duration::from_millis(300)
            },
            CheckSpec::CompareBaseline {
                metrics: vec![Metric::ErrorRate, Metric::Latency],
                confidence: 0.98
            },
        ]
    );
    // The typed spec survives a JSON round trip (it is stored with each deployment).
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<DeploySpec>(&json).unwrap(), d);
}

#[test]
fn defaults_when_omitted() {
    let d = deploy("deploy: { run: ./server }\n");
    assert_eq!(d.replicas, 1);
    assert_eq!(d.health, HealthSpec::default());
    assert_eq!(d.strategy_for("prod"), Strategy::Rolling);
    let d = deploy(
        "deploy:\n  run: ./server\n  environments:\n    prod: { strategy: { canary: { steps: [ { weight: 100 } ] } } }\n",
    );
    let Strategy::Canary(c) = d.strategy_for("prod") else {
        panic!()
    };
    assert_eq!(c.analysis.checks, default_checks());
}

#[test]
fn missing_run_is_located() {
    let e = errors("deploy:\n  health: { path: /healthz }\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("3:3: missing required field `run`"),
        "{e:?}"
    );
}

#[test]
fn unknown_strategy_suggests() {
    let e = errors("deploy:\n  run: x\n  environments:\n    prod: { strategy: canery }\n");
    assert_eq!(
        e,
        vec![
            "5:23: unknown strategy `canery` in `deploy.environments.prod.strategy`; did you mean `canary`?"
        ]
    );
    let e = errors(
        "deploy:\n  run: x\n  environments:\n    prod:\n      strategy:\n        bluegreen: {}\n",
    );
    assert!(
        e[0].starts_with("7:9: unknown strategy `bluegreen`")
            && e[0].ends_with("did you mean `blue-green`?"),
        "{e:?}"
    );
}

#[test]
fn weights_must_increase_to_100() {
    let e = errors(
        "deploy:\n  run: x\n  environments:\n    prod:\n      strategy:\n        canary:\n          steps: [ { weight: 50 }, { weight: 20 }, { weight: 100 } ]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("canary weights must increase: step 1 sets 20% after 50%"),
        "{e:?}"
    );
    let e = errors(
        "deploy:\n  run: x\n  environments:\n    prod:\n      strategy:\n        canary:\n          steps:\n            - weight: 20\n            - weight: 50\n",
    );
    assert_eq!(
        e,
        vec!["10:23: the last canary weight is 50%; weights must increase to 100"]
    );
    let e = errors(
        "deploy:\n  run: x\n  environments:\n    prod: { strategy: { canary: { steps: [ { weight: 120 } ] } } }\n",
    );
    assert!(
        e[0].contains("must be a whole number from 1 to 100, found 120"),
        "{e:?}"
    );
}

#[test]
fn bad_units_and_fields_are_located() {
    let e = errors(
        "deploy:
  run: x
  helth: { path: /healthz }
  env: { PORT: '9000' }
  environments:
    prod:
      strategy:
        canary:
          steps:
            - weight: 10
            - pause: 10
            - analysis: { duration: 20 }
            - wait: 1s
            - weight: 100
          analysis:
            checks:
              - error-rate: { max: 150% }
              - latency: { quantile: p90, max: 1s }
              - prometheus: { address: 'http://x', query: up, success: 'ok' }
              - apdex: {}
",
    );
    let expect = [
        "4:3: unknown field `helth` in `deploy`; did you mean `health`?",
        "5:10: `deploy.env.PORT` is set by Pave",
        "12:22: `deploy.environments.prod.strategy.canary.steps[1].pause` needs a unit",
        "13:37: `deploy.environments.prod.strategy.canary.steps[2].analysis.duration` needs a unit",
        "14:15: unknown step `wait`",
        "18:36: `deploy.environments.prod.strategy.canary.analysis.checks[0].error-rate.max`: `150%` must be between",
        "19:38: `deploy.environments.prod.strategy.canary.analysis.checks[1].latency.quantile` must be p50, p95 or p99",
        "20:72: `deploy.environments.prod.strategy.canary.analysis.checks[2].prometheus.success` is `ok`, not a condition",
        "21:17: unknown check `apdex`",
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (got, want) in e.iter().zip(expect) {
        assert!(got.starts_with(want), "got {got}\nwant {want}\nall {e:#?}");
    }
}
