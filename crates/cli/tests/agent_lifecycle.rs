//! Agents end to end, with the real binary: a job's workspace is a git
//! checkout at the run's commit; a graceful stop of `pave up` (and SIGTERM
//! to `pave agent`) stops the running step's processes and hands the job
//! back at once; a failed matrix leg cancels its siblings (fail-fast) and
//! `max-parallel` holds back the rest.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// A committed service repository whose pave.yaml has `pipeline`.
fn service_repo(dir: &Path, name: &str, pipeline: &str) -> PathBuf {
    let repo = dir.join(name);
    write(
        &repo.join("pave.yaml"),
        &format!("service:\n  name: {name}\n  owner: platform\npipeline:\n{pipeline}"),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    repo
}

fn apply(pave: &Pave, repo: &Path) {
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
}

fn trigger(pave: &Pave, service: &str) -> String {
    let triggered = pave.cli(&["trigger", service]);
    assert!(triggered.status.success(), "{}", stderr(&triggered));
    stdout(&triggered).trim().to_string()
}

fn run_detail(pave: &Pave, id: &str) -> Value {
    match common::http_get_auth(&pave.url, &format!("/api/v1/runs/{id}"), Some(&pave.token)) {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn job<'a>(run: &'a Value, key: &str) -> &'a Value {
    run["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["key"] == key))
        .unwrap_or(&Value::Null)
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid a step wrote to `file`, once it has.
fn wait_for_pid(file: &Path) -> i32 {
    let mut pid = None;
    wait_for(
        &format!("the step to write {}", file.display()),
        Duration::from_secs(60),
        || {
            pid = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        },
    );
    pid.unwrap_or_default()
}

/// Whether a process is alive (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

/// Sends SIGTERM and waits (bounded) for the exit; true when it exited 0.
fn terminate(child: &mut Child, what: &str) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A step that records its pid in `pid_file` and then sleeps for ten
/// minutes, unless `done_file` exists (a later attempt finishes at once).
fn long_step(pid_file: &Path, done_file: &Path) -> String {
    format!(
        "  jobs:\n    work:\n      steps:\n        - run: if [ -e '{done}' ]; then echo second attempt; else touch '{done}'; echo $$ > '{pid}'; exec sleep 600; fi\n",
        done = done_file.display(),
        pid = pid_file.display(),
    )
}

#[test]
fn a_job_workspace_is_a_clean_git_checkout_at_the_runs_commit() {
    let dir = scratch_dir("gitws");
    let step = "test -z \"$(git status --porcelain)\" && echo \"head=$(git rev-parse HEAD)\" && echo \"describe=$(git describe --tags)\" && touch junk";
    let repo = service_repo(
        &dir,
        "gitws",
        &format!(
            "  jobs:\n    one:\n      steps:\n        - run: '{step}'\n    two:\n      needs: one\n      steps:\n        - run: '{step}'\n"
        ),
    );
    git(&repo, &["tag", "v1.2.0"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let pave = Pave::start(&dir, &[]);
    apply(&pave, &repo);
    let run = pave.cli(&["trigger", "gitws", "--wait"]);
    let out = stdout(&run);
    assert!(run.status.success(), "{out}\n{}", stderr(&run));
    assert_eq!(
        out.matches(&format!("head={sha}")).count(),
        2,
        "each job sees the run's commit: {out}"
    );
    assert_eq!(out.matches("describe=v1.2.0").count(), 2, "{out}");
    assert!(out.contains("success"), "{out}");
}

#[test]
fn a_graceful_stop_of_pave_up_stops_the_step_and_requeues_its_job() {
    let dir = scratch_dir("upstop");
    let (pid_file, done_file) = (dir.join("step.pid"), dir.join("step.done"));
    let repo = service_repo(&dir, "longjob", &long_step(&pid_file, &done_file));
    let mut pave = Pave::start(&dir, &["--agent-capacity", "1"]);
    apply(&pave, &repo);
    let id = trigger(&pave, "longjob");
    let pid = wait_for_pid(&pid_file);
    assert!(alive(pid));

    assert!(terminate(&mut pave.child, "pave up"), "pave up exits 0");
    assert!(!alive(pid), "the step's process {pid} outlived the server");
    drop(pave);

    // Without an agent, the job is seen as it was left: handed back, not
    // held under a lease that would have to run out first.
    let pave = Pave::start(&dir, &["--agent-capacity", "0"]);
    let run = run_detail(&pave, &id);
    let work = job(&run, "work");
    assert_eq!(work["status"], "queued", "{run}");
    assert_eq!(work["attempt"], 1, "{run}");
    assert_eq!(run["status"], "running", "{run}");
}

#[test]
fn sigterm_to_pave_agent_stops_the_step_and_another_agent_finishes_the_job() {
    let dir = scratch_dir("agentstop");
    let (pid_file, done_file) = (dir.join("step.pid"), dir.join("step.done"));
    let repo = service_repo(&dir, "handback", &long_step(&pid_file, &done_file));
    let pave = Pave::start(&dir, &["--agent-capacity", "0"]);
    apply(&pave, &repo);
    let token = pave.agent_token("handback");
    let agent = |name: &str| {
        pave_cmd(&dir)
            .args(["agent", "--name", name, "--capacity", "2"])
            .args(["--work-dir", &dir.join(name).display().to_string()])
            .env("PAVE_SERVER", &pave.url)
            .env("PAVE_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent")
    };
    let mut first = agent("first");
    let id = trigger(&pave, "handback");
    let pid = wait_for_pid(&pid_file);

    assert!(terminate(&mut first, "pave agent"), "the agent exits 0");
    assert!(!alive(pid), "the step's process {pid} outlived its agent");
    let run = run_detail(&pave, &id);
    assert_eq!(job(&run, "work")["status"], "queued", "{run}");

    let mut second = agent("second");
    wait_for("the run to finish", Duration::from_secs(60), || {
        run_detail(&pave, &id)["status"] == "finished"
    });
    let _ = second.kill();
    let _ = second.wait();
    let run = run_detail(&pave, &id);
    assert_eq!(run["outcome"], "success", "{run}");
    let work = job(&run, "work");
    assert_eq!(
        (work["attempt"].clone(), work["agent"].clone()),
        (2.into(), "second".into())
    );
}

#[test]
fn a_failed_matrix_leg_cancels_its_siblings_and_max_parallel_holds_the_rest() {
    let dir = scratch_dir("failfast");
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).expect("pid dir");
    // Leg 1 fails once leg 2 is running; leg 2 would sleep for minutes.
    let step = format!(
        "if [ ${{{{ matrix.n }}}} = 1 ]; then while [ ! -e {p}/2 ]; do sleep 0.1; done; exit 1; fi; echo $$ > {p}/${{{{ matrix.n }}}}; exec sleep 300",
        p = pids.display()
    );
    let repo = service_repo(
        &dir,
        "matrix",
        &format!(
            "  jobs:\n    test:\n      strategy:\n        max-parallel: 2\n        matrix:\n          n: [1, 2, 3]\n      steps:\n        - run: '{step}'\n    after:\n      needs: test\n      steps:\n        - run: echo never\n"
        ),
    );
    let pave = Pave::start(&dir, &["--agent-capacity", "3"]);
    apply(&pave, &repo);
    let id = trigger(&pave, "matrix");
    let leg2 = wait_for_pid(&pids.join("2"));
    wait_for("the run to finish", Duration::from_secs(90), || {
        run_detail(&pave, &id)["status"] == "finished"
    });
    let run = run_detail(&pave, &id);
    assert_eq!(run["outcome"], "failure", "{run}");
    assert_eq!(job(&run, "test (n=1)")["outcome"], "failure", "{run}");
    let running = job(&run, "test (n=2)");
    assert_eq!(running["outcome"], "cancelled", "{run}");
    assert_eq!(running["attempt"], 1, "{run}");
    let held_back = job(&run, "test (n=3)");
    assert_eq!(held_back["outcome"], "cancelled", "{run}");
    assert_eq!(
        held_back["attempt"], 0,
        "max-parallel kept it from starting: {run}"
    );
    assert!(
        held_back["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fail-fast")),
        "{run}"
    );
    assert_eq!(job(&run, "after")["status"], "skipped", "{run}");
    assert!(!pids.join("3").exists(), "leg 3 never ran");
    assert!(
        !alive(leg2),
        "the cancelled leg's process {leg2} was stopped"
    );
}
