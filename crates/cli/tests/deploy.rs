//! Deployments end to end, with real traffic through the edge proxy: a
//! service goes dev (rolling) → staging (blue-green) → prod (canary with
//! analysis); a healthy release is promoted with no failed request; a
//! release with 10% 5xx and one 3× slower are rolled back on their own; a
//! release that never becomes healthy fails and the stable one keeps
//! serving.

mod common;
mod deploy_support;

use common::{Pave, scratch_dir, stderr};
use deploy_support::*;
use std::time::Duration;

const DEPLOY: &str = "deploy:
  run: python3 app.py
  health: { path: /healthz, interval: 200ms, deadline: 20s }
  environments:
    dev: { strategy: rolling }
    staging:
      strategy:
        blue-green: { keep-old-for: 30s }
    prod:
      strategy:
        canary:
          steps:
            - weight: 20
            - analysis: { duration: 8s }
            - weight: 50
            - analysis: { duration: 8s }
            - weight: 100
          analysis:
            min-requests: 20
            checks:
              - error-rate: { max: 2% }
              - compare-baseline: { metrics: [error-rate, latency], confidence: 0.98 }
";

fn setup(dir: &std::path::Path) -> (Pave, std::path::PathBuf) {
    let repo = service_repo(dir, DEPLOY);
    let pave = Pave::start(dir, &[]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    (pave, repo)
}

fn status(detail: &serde_json::Value) -> &str {
    detail["deployment"]["status"].as_str().unwrap_or_default()
}

#[test]
fn a_release_goes_dev_staging_prod_and_a_bad_one_rolls_back_on_its_own() {
    let dir = scratch_dir("deploy-path");
    // Declared first so it drops last: the server must be gone before its instances are killed.
    let _instances = Instances(dir.clone());
    let (pave, repo) = setup(&dir);
    let minute = Duration::from_secs(90);

    // v1 everywhere through the CLI: `pave deploy` takes the newest green run of the
    // default branch; the first deployment to each environment goes straight to 100%.
    let _v1 = build(&pave);
    let out = pave.cli(&["deploy", "hello", "--env", "dev", "--wait"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        common::stdout(&out),
        stderr(&out)
    );
    let (code, body) = answer(&pave, "dev").expect("dev answers");
    assert_eq!(code, 200);
    assert!(body.starts_with("v1 release"), "{body}");
    for env in ["staging", "prod"] {
        let out = pave.cli(&["promote", "hello", "--to", env, "--wait"]);
        assert!(
            out.status.success(),
            "{env}: {}\n{}",
            common::stdout(&out),
            stderr(&out)
        );
    }
    assert!(answer(&pave, "prod").expect("prod").1.starts_with("v1"));

    // v2 (healthy) through every strategy under load: no request fails.
    let v2 = release(&pave, &repo, r#"{"version": "v2", "delay_ms": 5}"#);
    for (env, step) in [
        ("dev", None),
        ("staging", Some("staging")),
        ("prod", Some("prod")),
    ] {
        let load = Load::start(
            &edge(&pave),
            &format!("hello.{env}.localhost"),
            4,
            Duration::from_millis(5),
        );
        let d = match step {
            None => deploy(&pave, env, &v2),
            Some(to) => promote(&pave, to),
        };
        let detail = wait_done(&pave, &d, minute);
        std::thread::sleep(Duration::from_millis(500));
        let (ok, app_errors, failed) = load.finish();
        assert_eq!(status(&detail), "succeeded", "{env}: {detail:#}");
        assert!(ok > 100, "{env}: too little load to judge ({ok})");
        assert_eq!(
            (app_errors, failed),
            (0, 0),
            "{env}: requests failed during the switch"
        );
        assert!(answer(&pave, env).expect(env).1.starts_with("v2"), "{env}");
    }

    // v3 answers 10% 5xx: fine in dev (rolling has no analysis), rolled back in prod's canary.
    let v3 = release(
        &pave,
        &repo,
        r#"{"version": "v3", "delay_ms": 5, "errors_percent": 10}"#,
    );
    let d = deploy(&pave, "dev", &v3);
    assert_eq!(status(&wait_done(&pave, &d, minute)), "succeeded");
    let d = promote(&pave, "staging");
    assert_eq!(status(&wait_done(&pave, &d, minute)), "succeeded");
    let load = Load::start(
        &edge(&pave),
        "hello.prod.localhost",
        4,
        Duration::from_millis(5),
    );
    let out = pave.cli(&["promote", "hello", "--to", "prod", "--wait"]);
    let (ok, app_errors, failed) = load.finish();
    let text = common::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--wait fails on a rollback: {text}\n{}",
        stderr(&out)
    );
    assert!(text.contains("rolled back"), "{text}");
    let listed: serde_json::Value = serde_json::from_slice(
        &pave
            .cli(&[
                "deployments",
                "--service",
                "hello",
                "--env",
                "prod",
                "--json",
            ])
            .stdout,
    )
    .expect("deployments json");
    let d = listed[0]["id"].as_str().expect("id").to_string();
    let detail = wait_done(&pave, &d, minute);
    assert_eq!(status(&detail), "rolled_back", "{detail:#}");
    let reason = detail["deployment"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("error-rate"),
        "the decision names the check: {reason}"
    );
    assert!(
        app_errors > 0 && ok > app_errors * 10,
        "ok {ok}, 5xx {app_errors}"
    );
    assert_eq!(failed, 0);
    // Traffic is back on v2 and the canary is gone.
    assert!(answer(&pave, "prod").expect("prod").1.starts_with("v2"));
    let (_, releases) = api(&pave, "GET", "/api/v1/services/hello/releases", None);
    let prod = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["env"] == "prod")
        .unwrap()
        .clone();
    assert_ne!(prod["deployment_id"].as_str(), Some(d.as_str()));

    // The decision is in the log with the values behind it, and in the event log.
    let log = detail["log"].as_array().unwrap();
    let decision = log
        .iter()
        .rev()
        .find(|l| l["kind"] == "decision")
        .expect("a decision");
    assert!(
        decision["message"]
            .as_str()
            .unwrap()
            .starts_with("rolled back"),
        "{decision}"
    );
    let verify = pave.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let events = pave.cli(&["audit", "log", "--json"]);
    let text = String::from_utf8_lossy(&events.stdout);
    for t in ["service.deployed", "service.upgraded", "service.rolledback"] {
        assert!(text.contains(t), "missing {t} event");
    }
}

#[test]
fn a_slower_canary_is_rolled_back_and_an_unhealthy_release_fails_in_time() {
    let dir = scratch_dir("deploy-slow");
    // Declared first so it drops last: the server must be gone before its instances are killed.
    let _instances = Instances(dir.clone());
    let (pave, repo) = setup(&dir);
    let minute = Duration::from_secs(90);
    // The baseline: 20 ms per request, straight to prod (the first release there).
    let base = release(&pave, &repo, r#"{"version": "v1", "delay_ms": 20}"#);
    let d = deploy(&pave, "prod", &base);
    assert_eq!(status(&wait_done(&pave, &d, minute)), "succeeded");

    // 3× slower at p95 (60 ms per request) under load.
    let load = Load::start(
        &edge(&pave),
        "hello.prod.localhost",
        4,
        Duration::from_millis(5),
    );
    let slow = release(&pave, &repo, r#"{"version": "v2", "delay_ms": 60}"#);
    let d = deploy(&pave, "prod", &slow);
    let detail = wait_done(&pave, &d, minute);
    let (_, _, failed) = load.finish();
    assert_eq!(status(&detail), "rolled_back", "{detail:#}");
    assert!(
        detail["deployment"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("latency"),
        "{detail:#}"
    );
    assert_eq!(failed, 0);

    // Bad input starts nothing: an artifact no run produced, an unknown environment, a second
    // deployment while one is in flight.
    let head = api(&pave, "GET", "/api/v1/deployments?service=hello", None).1;
    let missing = serde_json::json!({"service": "hello", "env": "prod", "artifact": format!("sha256:{}", "0".repeat(64))});
    let (code, body) = api(&pave, "POST", "/api/v1/deployments", Some(missing));
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no successful run"),
        "{body}"
    );
    let (code, body) = api(
        &pave,
        "POST",
        "/api/v1/deployments",
        Some(serde_json::json!({"service": "hello", "env": "qa", "run": base})),
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no environment `qa`"),
        "{body}"
    );
    assert_eq!(
        api(&pave, "GET", "/api/v1/deployments?service=hello", None).1,
        head
    );

    // Never healthy: fails within its deadline; the stable release keeps answering.
    let sick = release(&pave, &repo, r#"{"version": "v9", "unhealthy": true}"#);
    let d = deploy(&pave, "prod", &sick);
    let (code, body) = api(
        &pave,
        "POST",
        "/api/v1/deployments",
        Some(serde_json::json!({"service": "hello", "env": "prod", "run": sick})),
    );
    assert_eq!(code, 409, "one at a time: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pave abort"),
        "{body}"
    );
    let detail = wait_done(&pave, &d, minute);
    assert_eq!(status(&detail), "failed", "{detail:#}");
    assert!(
        detail["deployment"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not become healthy"),
        "{detail:#}"
    );
    assert!(answer(&pave, "prod").expect("prod").1.starts_with("v1"));
}
