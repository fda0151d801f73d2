//! `pave run` recorded on a live `pave up` (the real binary, real git): the
//! run shows over the API with its logs, test results and uploaded artifact
//! while the in-process agent runs and never claims it; a `pave run` killed
//! mid-job leaves a run that ends failed after its lease (not re-queued);
//! an unreachable server only costs a warning.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A committed service repository under `dir` (so `pave run` there finds `dir/.pave`).
fn service_repo(dir: &Path, name: &str, pipeline: &str) -> PathBuf {
    let repo = dir.join(name);
    write(
        &repo.join("pave.yaml"),
        &format!("service:\n  name: {name}\n  owner: platform\npipeline:\n{pipeline}"),
    );
    write(&repo.join("src/app.txt"), "hello\n");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    repo
}

const PIPELINE: &str = r#"  jobs:
    build:
      steps:
        - name: package
          run: mkdir -p dist && printf 'app-bytes' > dist/app.bin && echo "built on this machine"
      artifacts:
        - { name: app, path: dist/app.bin }
    test:
      needs: build
      steps:
        - name: unit
          junit: "reports/*.xml"
          run: |
            mkdir -p reports
            printf '<testsuite name="calc"><testcase classname="Calc" name="adds"/><testcase classname="Calc" name="divides"/></testsuite>' > reports/unit.xml
            echo "tested"
"#;

fn api(pave: &Pave, path: &str) -> Value {
    match common::http_get_auth(&pave.url, path, Some(&pave.token)) {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        other => panic!("GET {path}: {other:?}"),
    }
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn apply(pave: &Pave, repo: &Path) {
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
}

#[test]
fn pave_run_records_its_run_on_the_server_and_agents_leave_it_alone() {
    let dir = scratch_dir("record");
    let repo = service_repo(&dir, "hello", PIPELINE);
    // The in-process agent runs (default capacity) all along.
    let pave = Pave::start(&dir, &[]);
    apply(&pave, &repo);
    write(&repo.join("src/app.txt"), "hello, uncommitted\n");

    let run = pave_cmd(&repo)
        .args(["run", "--cache-dir"])
        .arg(dir.join("cache"))
        .output()
        .expect("pave run");
    let (out, err) = (stdout(&run), stderr(&run));
    assert!(run.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("recorded as run #1 (success)"), "{err}");
    assert!(!err.contains("warning"), "{err}");

    let runs = api(&pave, "/api/v1/services/hello/runs");
    let list = runs.as_array().expect("runs");
    assert_eq!(list.len(), 1, "{runs}");
    assert_eq!(list[0]["trigger"], "local");
    let id = list[0]["id"].as_str().expect("id").to_string();
    let detail = api(&pave, &format!("/api/v1/runs/{id}"));
    assert_eq!(detail["status"], "finished", "{detail}");
    assert_eq!(detail["outcome"], "success", "{detail}");
    assert_eq!(detail["executor"], "local", "{detail}");
    assert_eq!(detail["dirty"], true, "uncommitted src/app.txt: {detail}");
    let head = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git");
    assert_eq!(detail["sha"], String::from_utf8_lossy(&head.stdout).trim());
    assert_eq!(detail["ref"], "refs/heads/main");
    for job in detail["jobs"].as_array().expect("jobs") {
        let agent = job["agent"].as_str().unwrap_or("");
        assert!(agent.starts_with("local:"), "claimed by {agent}: {job}");
        assert_eq!(job["attempt"], 1, "{job}");
        assert_eq!(job["outcome"], "success", "{job}");
    }

    let logs = api(&pave, &format!("/api/v1/runs/{id}/logs"));
    let text: Vec<&str> = logs["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(text.contains(&"built on this machine"), "{text:?}");
    assert!(text.contains(&"tested"), "{text:?}");

    let tests = api(&pave, &format!("/api/v1/runs/{id}/tests"));
    let tests = tests.to_string();
    assert!(
        tests.contains("adds") && tests.contains("divides"),
        "{tests}"
    );

    let artifacts = api(&pave, &format!("/api/v1/runs/{id}/artifacts"));
    let app = &artifacts[0];
    assert_eq!(app["name"], "app", "{artifacts}");
    assert_eq!(app["stored"], true, "{artifacts}");
    let download = app["download"].as_str().expect("download");
    let blob = common::http_get_auth(&pave.url, download, Some(&pave.token));
    assert_eq!(blob, Some((200, "app-bytes".to_string())));

    // The CLI lists it like any run; --no-record leaves the server alone.
    let listed = pave.cli(&["runs", "hello", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains(&id));
    let unrecorded = pave_cmd(&repo)
        .args(["run", "--no-record", "--cache-dir"])
        .arg(dir.join("cache"))
        .output()
        .expect("pave run");
    assert!(unrecorded.status.success(), "{}", stderr(&unrecorded));
    assert_eq!(
        api(&pave, "/api/v1/services/hello/runs")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A failing local run exits non-zero and is recorded as failed.
    write(
        &repo.join("pave.yaml"),
        "service:\n  name: hello\n  owner: platform\npipeline:\n  jobs:\n    build:\n      steps:\n        - run: echo broken && exit 3\n",
    );
    let failed = pave_cmd(&repo)
        .args(["run", "--cache-dir"])
        .arg(dir.join("cache"))
        .output()
        .expect("pave run");
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("recorded as run #2 (failure)"),
        "{}",
        stderr(&failed)
    );
    let runs = api(&pave, "/api/v1/services/hello/runs");
    assert_eq!(runs[0]["outcome"], "failure", "{runs}");
}

#[test]
fn a_killed_pave_run_leaves_a_run_that_ends_failed_after_its_lease() {
    let dir = scratch_dir("record-kill");
    let repo = service_repo(
        &dir,
        "slow",
        "  jobs:\n    work:\n      steps:\n        - run: echo started && sleep 20\n",
    );
    let pave = Pave::start(&dir, &[]);
    apply(&pave, &repo);
    let mut child = pave_cmd(&repo)
        .args(["run", "--lease-seconds", "3", "--cache-dir"])
        .arg(dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pave run");
    let mut id = String::new();
    wait_for("the run's first log line", Duration::from_secs(60), || {
        let runs = api(&pave, "/api/v1/services/slow/runs");
        let Some(found) = runs[0]["id"].as_str() else {
            return false;
        };
        id = found.to_string();
        let logs = api(&pave, &format!("/api/v1/runs/{id}/logs"));
        logs.to_string().contains("started")
    });
    let _ = child.kill();
    let _ = child.wait();

    wait_for("the lost run to end", Duration::from_secs(60), || {
        api(&pave, &format!("/api/v1/runs/{id}"))["status"] == "finished"
    });
    let detail = api(&pave, &format!("/api/v1/runs/{id}"));
    assert_eq!(detail["outcome"], "failure", "{detail}");
    let job = &detail["jobs"][0];
    assert_eq!(job["attempt"], 1, "re-queued: {job}");
    assert!(
        job["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("local:")),
        "{job}"
    );
    assert!(
        job["reason"]
            .as_str()
            .is_some_and(|r| r.contains("local runner lost")),
        "{job}"
    );
}

#[test]
fn an_unreachable_server_costs_one_warning_and_the_run_goes_on() {
    let dir = scratch_dir("record-down");
    let repo = service_repo(
        &dir,
        "alone",
        "  jobs:\n    one:\n      steps:\n        - run: echo fine\n",
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let run = pave_cmd(&repo)
        .args(["run", "--cache-dir"])
        .arg(dir.join("cache"))
        .env("PAVE_SERVER", format!("http://127.0.0.1:{port}"))
        .env("PAVE_TOKEN", "pave_unused")
        .output()
        .expect("pave run");
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("not recording this run"), "{err}");
    assert!(stdout(&run).contains("[one › "), "{}", stdout(&run));
}
