//! Kill -9 the server in the middle of a canary, twice (while paused at a
//! step, and during analysis under load): each time the restarted server
//! adopts the running instances instead of starting new ones, restores the
//! traffic split, and carries the deployment on to the end; nothing is
//! orphaned and the event log verifies.

mod common;
mod deploy_support;

use common::{Pave, scratch_dir, stderr};
use deploy_support::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const DEPLOY: &str = "deploy:
  run: python3 app.py
  health: { path: /healthz, interval: 200ms, deadline: 20s }
  environments:
    prod:
      strategy:
        canary:
          steps:
            - weight: 30
            - pause: {}
            - weight: 60
            - analysis: { duration: 10s }
            - weight: 100
          analysis:
            min-requests: 20
";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (instance id, pid) of every instance record.
fn instances(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join(".pave/runtime/instances")) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let id = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".json")
            .to_string();
        out.push((id, v["pid"].as_u64().unwrap_or(0)));
    }
    out.sort();
    out
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn detail(pave: &Pave, id: &str) -> Value {
    api(pave, "GET", &format!("/api/v1/deployments/{id}"), None).1
}

#[test]
fn a_killed_server_resumes_the_canary_and_adopts_its_instances() {
    let dir = scratch_dir("deploy-restart");
    let repo = service_repo(&dir, DEPLOY);
    let _cleanup = Instances(dir.clone());
    let edge_port = free_port().to_string();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let args = ["--listen", "127.0.0.1:0", "--edge-listen", &edge_addr];
    let pave = Pave::start_with(&dir, &args);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let v1 = build(&pave);
    let first = deploy(&pave, "prod", &v1);
    assert_eq!(
        wait_done(&pave, &first, Duration::from_secs(60))["deployment"]["status"],
        "succeeded"
    );
    let v2 = release(&pave, &repo, r#"{"version": "v2", "delay_ms": 5}"#);
    let d = deploy(&pave, "prod", &v2);
    let paused = wait_status(&pave, &d, "paused", Duration::from_secs(60));
    assert_eq!(paused["deployment"]["weight"], 30);
    let before = instances(&dir);
    assert_eq!(
        before.len(),
        2,
        "one stable and one canary instance: {before:?}"
    );

    // Crash 1: while paused at `pause: {}`.
    pave.kill();
    assert!(
        before.iter().all(|(_, pid)| alive(*pid)),
        "instances outlive the server"
    );
    let pave = Pave::start_with(&dir, &args);
    let after = detail(&pave, &d);
    assert_eq!(after["deployment"]["status"], "paused");
    assert_eq!(after["deployment"]["step"], paused["deployment"]["step"]);
    // Adopted, not duplicated: the same processes serve, split 70/30 again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(instances(&dir), before);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (code, body) = answer(&pave, "prod").expect("prod answers after restart");
        assert_eq!(code, 200, "{body}");
        seen.insert(
            body.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["v1", "v2"]);

    // Resume; crash 2 in the middle of the analysis, with load running across it.
    let load = Load::start(
        &edge_addr,
        "hello.prod.localhost",
        4,
        Duration::from_millis(5),
    );
    let (code, body) = api(
        &pave,
        "POST",
        &format!("/api/v1/deployments/{d}/resume"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    wait_for("the analysis step", Duration::from_secs(60), || {
        detail(&pave, &d)["log"].as_array().is_some_and(|l| {
            l.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("analysing"))
            })
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    pave.kill();
    let pave = Pave::start_with(&dir, &args);
    let done = wait_done(&pave, &d, Duration::from_secs(90));
    let (ok, app_errors, failed) = load.finish();
    assert_eq!(done["deployment"]["status"], "succeeded", "{done:#}");
    assert!(ok > 100 && app_errors == 0, "ok {ok}, 5xx {app_errors}");
    // While the server was down the proxy was down too: those requests got no answer.
    let _ = failed;

    // The stable release's instances are retired; only the new release runs.
    wait_for("the old instances to stop", Duration::from_secs(30), || {
        instances(&dir).len() == 1
    });
    let old: Vec<u64> = before
        .iter()
        .filter(|(id, _)| !id.contains(&d))
        .map(|(_, p)| *p)
        .collect();
    wait_for("the old process to exit", Duration::from_secs(30), || {
        old.iter().all(|p| !alive(*p))
    });
    assert!(answer(&pave, "prod").expect("prod").1.starts_with("v2"));
    let verify = pave.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));

    // Crash 3: the server and its instances die (a reboot): the live release comes back.
    pave.kill();
    for (_, pid) in instances(&dir) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .status();
    }
    wait_for("the instances to die", Duration::from_secs(10), || {
        instances(&dir).iter().all(|(_, p)| !alive(*p))
    });
    let pave = Pave::start_with(&dir, &args);
    wait_for("prod to answer again", Duration::from_secs(60), || {
        answer(&pave, "prod").is_some_and(|(c, b)| c == 200 && b.starts_with("v2"))
    });
    pave.stop("TERM");
}
