//! Pipelines on the server: `pave trigger --wait` runs on the in-process
//! agent; a separate `pave agent` killed with SIGKILL mid-job loses its lease
//! and another agent finishes the job exactly once; a server killed with
//! SIGKILL mid-run resumes the run after a restart.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A service repository with `pipeline` as its pave.yaml pipeline, committed.
fn service_repo(dir: &Path, name: &str, pipeline: &str) -> std::path::PathBuf {
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

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "command failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("json output")
}

const GREEN: &str = "  jobs:
    build:
      steps:
        - name: package
          run: mkdir -p dist && tar -czf dist/app.tar.gz src && echo built
      artifacts:
        - { name: app, path: dist/app.tar.gz }
    test:
      needs: build
      steps:
        - run: grep -q hello src/app.txt && echo tested
";

#[test]
fn trigger_wait_runs_on_the_in_process_agent() {
    let dir = scratch_dir("trigger");
    let repo = service_repo(&dir, "hello", GREEN);
    let pave = Pave::start(&dir, &[]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let run = pave.cli(&["trigger", "hello", "--wait"]);
    let (out, err) = (stdout(&run), stderr(&run));
    assert!(run.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("[build › package] built"), "{out}");
    assert!(out.contains("[test › "), "{out}");
    assert!(out.contains("run #1 success"), "{out}");

    // A failing pipeline makes --wait exit non-zero, and the dependent is skipped.
    write(
        &repo.join("pave.yaml"),
        "service:\n  name: hello\n  owner: platform\npipeline:\n  jobs:\n    build:\n      steps:\n        - run: exit 3\n    test:\n      needs: build\n      steps:\n        - run: echo never\n",
    );
    git(&repo, &["commit", "-q", "-am", "break it"]);
    let run = pave.cli(&["trigger", "hello", "--wait"]);
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    assert!(stdout(&run).contains("run #2 failure"), "{}", stdout(&run));
    let runs = json(&pave.cli(&["runs", "hello", "--json"]));
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
}

/// A `pave agent` child process, killed and reaped when dropped.
struct Agent(Child);

impl Agent {
    /// SIGKILL, as a crash would.
    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(dir: &Path, pave: &Pave, name: &str) -> Agent {
    Agent(
        pave_cmd(dir)
            .args([
                "agent",
                "--name",
                name,
                "--capacity",
                "1",
                "--lease-seconds",
                "3",
            ])
            .args(["--work-dir", &dir.join(name).display().to_string()])
            .env("PAVE_SERVER", &pave.url)
            .env("PAVE_TOKEN", pave.agent_token(name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    )
}

fn run_detail(pave: &Pave, id: &str) -> Value {
    match common::http_get_auth(&pave.url, &format!("/api/v1/runs/{id}"), Some(&pave.token)) {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_agent_loses_its_job_to_another_which_finishes_it_once() {
    let dir = scratch_dir("killagent");
    let repo = service_repo(
        &dir,
        "slow",
        "  jobs:\n    work:\n      steps:\n        - run: sleep 4 && echo finished\n",
    );
    let pave = Pave::start(&dir, &["--agent-capacity", "0"]);
    assert!(
        pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()])
            .status
            .success()
    );
    let first = start_agent(&dir, &pave, "first");
    let triggered = pave.cli(&["trigger", "slow"]);
    assert!(triggered.status.success(), "{}", stderr(&triggered));
    let id = stdout(&triggered).trim().to_string();
    wait_for(
        "the first agent to start the job",
        Duration::from_secs(30),
        || run_detail(&pave, &id)["jobs"][0]["status"] == "running",
    );
    first.kill9();

    let second = start_agent(&dir, &pave, "second");
    wait_for("the run to finish", Duration::from_secs(60), || {
        run_detail(&pave, &id)["status"] == "finished"
    });
    let run = run_detail(&pave, &id);
    drop(second);
    assert_eq!(run["outcome"], "success", "{run}");
    let job = &run["jobs"][0];
    assert_eq!(job["attempt"], 2, "re-run after the lease expired: {job}");
    assert_eq!(job["agent"], "second");
    let finished = json(&pave.cli(&["audit", "log", "--json", "--limit", "1000"]));
    let completions = finished
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.contains("taskrun.finished"))
        })
        .count();
    assert_eq!(completions, 1, "the job finished exactly once");
}

#[test]
fn a_killed_server_resumes_the_run_after_restart() {
    let dir = scratch_dir("killserver");
    let repo = service_repo(
        &dir,
        "steady",
        "  jobs:\n    one:\n      steps:\n        - run: sleep 2 && echo one\n    two:\n      needs: one\n      steps:\n        - run: echo two\n",
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let listen = format!("127.0.0.1:{port}");
    let args = ["--agent-capacity", "0", "--listen", listen.as_str()];
    let pave = Pave::start_with(&dir, &args);
    assert!(
        pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()])
            .status
            .success()
    );
    let agent = start_agent(&dir, &pave, "steady-agent");
    let triggered = pave.cli(&["trigger", "steady"]);
    let id = stdout(&triggered).trim().to_string();
    wait_for("job one to start", Duration::from_secs(30), || {
        run_detail(&pave, &id)["jobs"][0]["status"] == "running"
    });
    let (token, url) = (pave.token.clone(), pave.url.clone());
    pave.kill();

    let pave = Pave::start_with(&dir, &args);
    assert_eq!((pave.token.clone(), pave.url.clone()), (token, url));
    wait_for(
        "the run to finish after the restart",
        Duration::from_secs(60),
        || run_detail(&pave, &id)["status"] == "finished",
    );
    drop(agent);
    let run = run_detail(&pave, &id);
    assert_eq!(run["outcome"], "success", "{run}");
    let verify = pave.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn an_agent_with_a_human_token_stops_with_a_clear_error() {
    let dir = scratch_dir("humanagent");
    let pave = Pave::start(&dir, &["--agent-capacity", "0"]);
    let out = pave_cmd(&dir)
        .args(["agent", "--name", "human", "--work-dir"])
        .arg(dir.join("human"))
        .env("PAVE_SERVER", &pave.url)
        .env("PAVE_TOKEN", &pave.token)
        .output()
        .expect("pave agent");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pave token create --role agent"), "{err}");
    assert!(err.contains("only agent tokens may claim jobs"), "{err}");
}

#[test]
fn pave_up_replaces_an_in_process_agent_token_that_is_not_an_agent_token() {
    let dir = scratch_dir("agenttoken");
    let pave = Pave::start(&dir, &[]);
    // As `pave up` wrote it before the agent role existed: a developer token.
    let created = json(&pave.cli(&[
        "token",
        "create",
        "--role",
        "developer",
        "--name",
        "old-agent",
        "--json",
    ]));
    let old_id = created["id"].as_str().expect("id").to_string();
    let (stopped, _) = pave.stop("TERM");
    assert!(stopped);
    write(
        &dir.join(".pave/agent-token"),
        &format!("{}\n", created["secret"].as_str().expect("secret")),
    );

    let pave = Pave::start(&dir, &[]);
    let tokens = json(&pave.cli(&["token", "list", "--json"]));
    let tokens = tokens.as_array().expect("tokens");
    let old = tokens
        .iter()
        .find(|t| t["id"] == old_id)
        .expect("old token");
    assert!(old["revoked_at"].is_string(), "{old}");
    // A new agent-role token replaced it in the file.
    let replacement = tokens.iter().find(|t| {
        t["role"] == "agent"
            && t["revoked_at"].is_null()
            && t["created_at"].as_str() > old["created_at"].as_str()
    });
    assert!(replacement.is_some(), "{tokens:?}");
    // And the in-process agent (with the new token) runs jobs.
    let repo = service_repo(
        &dir,
        "fresh",
        "  jobs:\n    one:\n      steps:\n        - run: echo ran\n",
    );
    assert!(
        pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()])
            .status
            .success()
    );
    let run = pave.cli(&["trigger", "fresh", "--wait"]);
    assert!(run.status.success(), "{}", stderr(&run));
}
