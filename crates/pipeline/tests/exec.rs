//! Running steps as real child processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pave_pipeline::exec::{
    CancelSignal, ExecError, LogLine, LogStream, StepCommand, StepOutcome, parse_file_command,
    run_step,
};
use pave_pipeline::mask::Masker;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "pave-exec-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn texts(lines: &[LogLine], stream: LogStream) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.clone())
        .collect()
}

/// Alive = exists and is not a zombie waiting for its (new) parent to reap it.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits (generously) until none of the pids is alive; returns the survivors.
fn survivors(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn runs_script_streams_tagged_lines_and_reads_outputs() {
    let dir = TempDir::new("basic");
    let mut cmd = StepCommand::new(
        r#"echo "hello from $(basename "$PWD")"
echo "to stderr" >&2
printf 'no newline at end'
echo "greeting=hi $NAME" >> "$PAVE_OUTPUT"
{ echo "notes<<EOF"; echo "line 1"; echo "line=2"; echo "EOF"; } >> "$PAVE_OUTPUT"
echo "NEXT_VAR=1" >> "$PAVE_ENV"
"#,
        dir.path(),
    );
    cmd.env.insert("NAME".into(), "pave".into());
    let mut lines = Vec::new();
    let res = run_step(&cmd, &mut lines, &CancelSignal::new())
        .await
        .unwrap();
    assert_eq!(res.outcome, StepOutcome::Success, "{lines:?}");
    assert_eq!(res.exit_code, Some(0));
    let dirname = dir.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(
        texts(&lines, LogStream::Stdout),
        vec![
            format!("hello from {dirname}"),
            "no newline at end".to_string()
        ]
    );
    assert_eq!(texts(&lines, LogStream::Stderr), vec!["to stderr"]);
    assert_eq!(res.outputs["greeting"], "hi pave");
    assert_eq!(res.outputs["notes"], "line 1\nline=2");
    assert_eq!(res.env_updates["NEXT_VAR"], "1");
}

#[tokio::test]
async fn lines_are_delivered_live_not_at_the_end() {
    // The script blocks until the sink has seen its first line: this only
    // finishes if lines reach the sink while the process is still running.
    let dir = TempDir::new("live");
    let go = dir.path().join("go");
    let mut cmd = StepCommand::new(
        r#"echo ready
while [ ! -f "$GO" ]; do sleep 0.01; done
echo done"#,
        dir.path(),
    );
    cmd.env.insert("GO".into(), go.display().to_string());
    cmd.timeout = Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut sink = |line: LogLine| {
        if line.text == "ready" {
            std::fs::write(&go, b"").unwrap();
        }
        seen.push(line.text);
    };
    let res = run_step(&cmd, &mut sink, &CancelSignal::new())
        .await
        .unwrap();
    assert_eq!(res.outcome, StepOutcome::Success);
    assert_eq!(seen, vec!["ready", "done"]);
}

#[tokio::test]
async fn secrets_are_masked_before_the_sink_sees_them() {
    let dir = TempDir::new("mask");
    let mut cmd = StepCommand::new(
        r#"echo "token is $TOKEN"; echo "$TOKEN" >&2; echo "x${TOKEN}y${TOKEN}""#,
        dir.path(),
    );
    cmd.env.insert("TOKEN".into(), "s3cr3t-value".into());
    cmd.masker = Masker::new(["s3cr3t-value"]);
    let mut lines = Vec::new();
    run_step(&cmd, &mut lines, &CancelSignal::new())
        .await
        .unwrap();
    let all: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&"token is ***"));
    assert!(all.contains(&"***"));
    assert!(all.contains(&"x***y***"));
}

#[tokio::test]
async fn failing_script_reports_exit_code_and_bash_is_strict() {
    let dir = TempDir::new("fail");
    let mut lines = Vec::new();
    let res = run_step(
        &StepCommand::new("echo before\nfalse\necho after", dir.path()),
        &mut lines,
        &CancelSignal::new(),
    )
    .await
    .unwrap();
    assert_eq!(res.outcome, StepOutcome::Failure);
    assert_eq!(res.exit_code, Some(1));
    assert_eq!(texts(&lines, LogStream::Stdout), vec!["before"]);

    let res = run_step(
        &StepCommand::new("false | true\n", dir.path()),
        &mut Vec::new(),
        &CancelSignal::new(),
    )
    .await
    .unwrap();
    assert_eq!(res.exit_code, Some(1), "pipefail is on by default");

    let res = run_step(
        &StepCommand::new("exit 7", dir.path()),
        &mut Vec::new(),
        &CancelSignal::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (res.outcome, res.exit_code),
        (StepOutcome::Failure, Some(7))
    );
}

#[tokio::test]
async fn other_shells() {
    let dir = TempDir::new("shells");
    for (shell, script, expect) in [
        ("sh", "echo from-sh", "from-sh"),
        (
            "python",
            "import os\nprint('py', os.getcwd() != '')",
            "py True",
        ),
        ("bash {0}", "echo template", "template"),
    ] {
        let mut cmd = StepCommand::new(script, dir.path());
        cmd.shell = Some(shell.to_string());
        let mut lines = Vec::new();
        let res = run_step(&cmd, &mut lines, &CancelSignal::new())
            .await
            .unwrap();
        assert_eq!(res.outcome, StepOutcome::Success, "{shell}: {lines:?}");
        assert_eq!(texts(&lines, LogStream::Stdout), vec![expect], "{shell}");
    }
}

#[tokio::test]
async fn setup_errors_are_errors_not_panics() {
    let dir = TempDir::new("errors");
    let cmd = StepCommand::new("true", dir.path().join("missing"));
    assert!(matches!(
        run_step(&cmd, &mut Vec::new(), &CancelSignal::new()).await,
        Err(ExecError::WorkingDir(_))
    ));
    let mut cmd = StepCommand::new("true", dir.path());
    cmd.shell = Some("/nonexistent/shell {0}".into());
    assert!(matches!(
        run_step(&cmd, &mut Vec::new(), &CancelSignal::new()).await,
        Err(ExecError::Spawn { .. })
    ));
}

#[tokio::test]
async fn malformed_output_file_fails_the_step() {
    let dir = TempDir::new("badout");
    let mut lines = Vec::new();
    let res = run_step(
        &StepCommand::new(
            "echo 'ok=1' >> $PAVE_OUTPUT; echo 'garbage' >> $PAVE_OUTPUT",
            dir.path(),
        ),
        &mut lines,
        &CancelSignal::new(),
    )
    .await
    .unwrap();
    assert_eq!(res.outcome, StepOutcome::Failure);
    assert_eq!(res.exit_code, Some(0));
    let sys = texts(&lines, LogStream::System);
    assert!(
        sys.iter()
            .any(|l| l.contains("PAVE_OUTPUT") && l.contains("line 2"))
    );
}

#[test]
fn file_command_format() {
    let parsed = parse_file_command("a=1\r\nb=x=y\n\nc<<END\n1\n\n3\nEND\nd=\ne<<=\n=\n").unwrap();
    let want: BTreeMap<String, String> = [
        ("a", "1"),
        ("b", "x=y"),
        ("c", "1\n\n3"),
        ("d", ""),
        ("e", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // `e<<=` : '=' comes after '<<', so it is a heredoc with delimiter "=".
    assert_eq!(parsed, want);
    assert_eq!(
        parse_file_command("x<<EOF\nunterminated").unwrap_err().line,
        1
    );
    assert_eq!(
        parse_file_command("ok=1\nnot a command").unwrap_err().line,
        2
    );
    assert_eq!(parse_file_command("=value").unwrap_err().line, 1);
}

/// Script that starts background work at several depths and records every pid.
const TREE_SCRIPT: &str = r#"
( sleep 300; echo never ) &
echo $! >> "$PIDS"
bash -c 'sleep 300 & echo $! >> "$PIDS"; sleep 300 & echo $! >> "$PIDS"; wait' &
echo $! >> "$PIDS"
bash -c 'trap "" TERM; echo $$ >> "$PIDS"; while true; do sleep 0.2; done' &
echo $! >> "$PIDS"
echo $$ >> "$PIDS"
# wait until every descendant has written its pid, then say so
while [ "$(wc -l < "$PIDS")" -lt 7 ]; do sleep 0.01; done
echo started
sleep 300
"#;

#[tokio::test]
async fn timeout_kills_the_whole_process_tree() {
    let dir = TempDir::new("timeout");
    let pids = dir.path().join("pids");
    let mut cmd = StepCommand::new(TREE_SCRIPT, dir.path());
    cmd.env.insert("PIDS".into(), pids.display().to_string());
    cmd.timeout = Duration::from_secs(2);
    cmd.kill_grace = Duration::from_millis(500);
    let t0 = Instant::now();
    let mut lines = Vec::new();
    let res = run_step(&cmd, &mut lines, &CancelSignal::new())
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(res.outcome, StepOutcome::TimedOut, "{lines:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(texts(&lines, LogStream::Stdout).contains(&"started".to_string()));
    assert!(!texts(&lines, LogStream::Stdout).contains(&"never".to_string()));
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 7, "{pids:?}");
    assert_eq!(survivors(&pids), Vec::<i32>::new());
}

#[tokio::test]
async fn cancel_kills_the_whole_process_tree() {
    let dir = TempDir::new("cancel");
    let pids = dir.path().join("pids");
    let mut cmd = StepCommand::new(TREE_SCRIPT, dir.path());
    cmd.env.insert("PIDS".into(), pids.display().to_string());
    cmd.timeout = Duration::from_secs(120);
    cmd.kill_grace = Duration::from_millis(300);
    let cancel = CancelSignal::new();
    let trigger = cancel.clone();
    let mut sink = |line: LogLine| {
        if line.text == "started" {
            trigger.cancel();
        }
    };
    let t0 = Instant::now();
    let res = run_step(&cmd, &mut sink, &cancel).await.unwrap();
    assert_eq!(res.outcome, StepOutcome::Cancelled);
    assert!(t0.elapsed() < Duration::from_secs(30));
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 7);
    assert_eq!(survivors(&pids), Vec::<i32>::new());
}

#[tokio::test]
async fn cancelled_before_start_does_not_spawn() {
    let dir = TempDir::new("precancel");
    let marker = dir.path().join("ran");
    let cancel = CancelSignal::new();
    cancel.cancel();
    let mut cmd = StepCommand::new("touch \"$MARK\"", dir.path());
    cmd.env.insert("MARK".into(), marker.display().to_string());
    let res = run_step(&cmd, &mut Vec::new(), &cancel).await.unwrap();
    assert_eq!(res.outcome, StepOutcome::Cancelled);
    assert!(!marker.exists());
}

#[tokio::test]
async fn background_leftovers_are_terminated_when_the_step_ends() {
    let dir = TempDir::new("leftover");
    let pidfile = dir.path().join("pid");
    let mut cmd = StepCommand::new("sleep 300 &\necho $! > \"$PIDF\"\necho bye", dir.path());
    cmd.env.insert("PIDF".into(), pidfile.display().to_string());
    cmd.kill_grace = Duration::from_secs(5);
    let t0 = Instant::now();
    let mut lines = Vec::new();
    let res = run_step(&cmd, &mut lines, &CancelSignal::new())
        .await
        .unwrap();
    assert_eq!(res.outcome, StepOutcome::Success);
    // `sleep` holds stdout open; the step must not wait for it.
    assert!(t0.elapsed() < Duration::from_secs(8));
    assert_eq!(survivors(&read_pids(&pidfile)), Vec::<i32>::new());
}

fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == me {
            out.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

#[tokio::test]
async fn no_zombies_are_left_behind() {
    let dir = TempDir::new("zombies");
    for script in ["true", "exit 3", "sleep 300 & true"] {
        run_step(
            &StepCommand::new(script, dir.path()),
            &mut Vec::new(),
            &CancelSignal::new(),
        )
        .await
        .unwrap();
    }
    // Other tests run concurrently in this process; allow their children to be reaped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !zombie_children().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(zombie_children(), Vec::<i32>::new());
}

/// Per-step overhead of `run_step` for `true`, against spawning the same shell
/// directly. Run with:
/// `cargo test --release -p pave-pipeline --test exec -- --ignored --nocapture step_overhead`
#[tokio::test]
#[ignore]
async fn step_overhead() {
    let dir = TempDir::new("overhead");
    const N: u32 = 100;
    let script = dir.path().join("script");
    std::fs::write(&script, "true").unwrap();
    // Warm-up.
    for _ in 0..5 {
        run_step(
            &StepCommand::new("true", dir.path()),
            &mut Vec::new(),
            &CancelSignal::new(),
        )
        .await
        .unwrap();
    }
    // Interleaved, so machine load affects both sides alike.
    let (mut bare, mut ours) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..N {
        let t0 = Instant::now();
        let status = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        bare += t0.elapsed();
        let t0 = Instant::now();
        let res = run_step(
            &StepCommand::new("true", dir.path()),
            &mut Vec::new(),
            &CancelSignal::new(),
        )
        .await
        .unwrap();
        assert_eq!(res.outcome, StepOutcome::Success);
        ours += t0.elapsed();
    }
    let (bare, ours) = (bare / N, ours / N);
    println!(
        "run_step(`true`) average over {N}: {ours:?}; bare bash spawn+wait: {bare:?}; ratio {:.2}; overhead {:?}",
        ours.as_secs_f64() / bare.as_secs_f64(),
        ours.saturating_sub(bare)
    );
}
