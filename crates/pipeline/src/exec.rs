//! Running one step: a script run by a shell as a child process in its own
//! process group, with live line-by-line logs (secrets masked), a timeout and
//! cancellation that kill the whole process tree, and `$PAVE_OUTPUT` /
//! `$PAVE_ENV` files parsed like GitHub Actions' `$GITHUB_OUTPUT` /
//! `$GITHUB_ENV`.
//!
//! When the shell exits, whatever it left running in its process group
//! (background jobs) is terminated too, so a step never leaks processes.
//! Processes that leave the group on purpose (`setsid`, double-fork daemons
//! that change group) are out of reach, as in every CI runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{mpsc, watch};

use crate::mask::Masker;

/// The default shell, as in GitHub Actions for `bash`.
pub const DEFAULT_SHELL: &str = "bash --noprofile --norc -eo pipefail {0}";

/// Default grace period between SIGTERM and SIGKILL (Buildkite/GitHub use 10 s).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Default step timeout: GitHub's job default of 360 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(360 * 60);

/// Longest line delivered as one; longer output is split into several lines.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
    /// A message from Pave itself (timeouts, cache hits, ...).
    System,
}

/// One line of step output (without its line terminator), already masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Where the line came from.
    pub stream: LogStream,
    /// The text, with secrets replaced by `***`.
    pub text: String,
}

/// Receives log lines live, as the step produces them.
pub trait LogSink {
    /// Called once per line, in arrival order.
    fn line(&mut self, line: LogLine);
}

impl<F: FnMut(LogLine)> LogSink for F {
    fn line(&mut self, line: LogLine) {
        self(line)
    }
}

impl LogSink for Vec<LogLine> {
    fn line(&mut self, line: LogLine) {
        self.push(line)
    }
}

/// A cloneable cancellation flag; cancelling stops every step watching it.
#[derive(Clone, Debug)]
pub struct CancelSignal(Arc<watch::Sender<bool>>);

impl Default for CancelSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelSignal {
    /// A fresh, not-cancelled signal.
    pub fn new() -> Self {
        CancelSignal(Arc::new(watch::Sender::new(false)))
    }

    /// Requests cancellation (idempotent).
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once cancellation is requested.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Everything needed to run one step.
#[derive(Clone, Debug)]
pub struct StepCommand {
    /// The script, already interpolated.
    pub script: String,
    /// `bash`, `sh`, `python`/`python3`, or a custom template containing `{0}`;
    /// `None` means [`DEFAULT_SHELL`].
    pub shell: Option<String>,
    /// The directory the script runs in (must exist).
    pub working_dir: PathBuf,
    /// Environment variables for the step (on top of the inherited ones if `inherit_env`).
    pub env: BTreeMap<String, String>,
    /// Whether the child inherits this process's environment (default true).
    pub inherit_env: bool,
    /// Wall-clock limit; on expiry the process tree is terminated.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when terminating the tree.
    pub kill_grace: Duration,
    /// Secrets masked in every log line.
    pub masker: Masker,
}

impl StepCommand {
    /// A step with default shell, timeout, grace, inherited env and no secrets.
    pub fn new(script: impl Into<String>, working_dir: impl Into<PathBuf>) -> Self {
        StepCommand {
            script: script.into(),
            shell: None,
            working_dir: working_dir.into(),
            env: BTreeMap::new(),
            inherit_env: true,
            timeout: DEFAULT_TIMEOUT,
            kill_grace: DEFAULT_KILL_GRACE,
            masker: Masker::default(),
        }
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Exit code 0 and well-formed output files.
    Success,
    /// Non-zero exit, death by signal, or a malformed `$PAVE_OUTPUT`/`$PAVE_ENV`.
    Failure,
    /// The timeout expired and the process tree was killed.
    TimedOut,
    /// Cancelled through the [`CancelSignal`]; the process tree was killed.
    Cancelled,
}

/// The result of running a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// The shell's exit code; `None` when it died from a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the shell, if any.
    pub signal: Option<i32>,
    /// The overall outcome.
    pub outcome: StepOutcome,
    /// Wall-clock time from spawn to the end of the process tree.
    pub duration: Duration,
    /// Outputs written to `$PAVE_OUTPUT`.
    pub outputs: BTreeMap<String, String>,
    /// Variables written to `$PAVE_ENV` (for later steps of the job).
    pub env_updates: BTreeMap<String, String>,
}

/// Errors that prevent a step from being run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The shell template is unusable.
    #[error("invalid shell {shell:?}: {reason}")]
    InvalidShell {
        /// The shell as given.
        shell: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The working directory does not exist or is not a directory.
    #[error("working directory {0} does not exist or is not a directory")]
    WorkingDir(PathBuf),
    /// The shell program could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Preparing the step's temporary files failed.
    #[error("cannot prepare step files in {path}: {source}")]
    TempFiles {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A malformed `$PAVE_OUTPUT`/`$PAVE_ENV` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct FileCommandError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Resolves a shell name or template into argv, with `{0}` replaced by `script`.
pub fn shell_argv(shell: Option<&str>, script: &Path) -> Result<Vec<String>, ExecError> {
    let template = match shell.map(str::trim) {
        None | Some("") | Some("bash") => DEFAULT_SHELL.to_string(),
        Some("sh") => "sh -e {0}".to_string(),
        Some("python") | Some("python3") => "python3 {0}".to_string(),
        Some(custom) => custom.to_string(),
    };
    let script = script.to_str().ok_or_else(|| ExecError::InvalidShell {
        shell: template.clone(),
        reason: "script path is not UTF-8".into(),
    })?;
    let mut argv: Vec<String> = template.split_whitespace().map(str::to_string).collect();
    if !template.contains("{0}") {
        // A bare program name (`zsh`, `node`): pass the script as the last argument.
        argv.push("{0}".into());
    }
    for arg in &mut argv {
        *arg = arg.replace("{0}", script);
    }
    if argv.is_empty() || argv[0] == script {
        return Err(ExecError::InvalidShell {
            shell: template,
            reason: "no program before {0}".into(),
        });
    }
    Ok(argv)
}

/// Parses a `$GITHUB_OUTPUT`-style file: `name=value` and `name<<DELIM` ... `DELIM`.
pub fn parse_file_command(text: &str) -> Result<BTreeMap<String, String>, FileCommandError> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let lineno = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                check_name(name, lineno)?;
                out.insert(name.to_string(), line[e + 1..].to_string());
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delim = &line[h + 2..];
                check_name(name, lineno)?;
                if delim.is_empty() {
                    return Err(FileCommandError {
                        line: lineno,
                        reason: format!("empty delimiter for {name:?}"),
                    });
                }
                let start = i;
                let end = lines[start..]
                    .iter()
                    .position(|l| *l == delim)
                    .map(|p| start + p)
                    .ok_or_else(|| FileCommandError {
                        line: lineno,
                        reason: format!("delimiter {delim:?} for {name:?} is never closed"),
                    })?;
                out.insert(name.to_string(), lines[start..end].join("\n"));
                i = end + 1;
            }
            _ => {
                return Err(FileCommandError {
                    line: lineno,
                    reason: "expected NAME=VALUE or NAME<<DELIMITER".into(),
                });
            }
        }
    }
    Ok(out)
}

fn check_name(name: &str, line: usize) -> Result<(), FileCommandError> {
    if name.trim().is_empty() {
        return Err(FileCommandError {
            line,
            reason: "empty name".into(),
        });
    }
    Ok(())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique path under the system temp dir: `<prefix>-<pid>-<nanos>-<n>`.
pub(crate) fn unique_temp_path(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()))
}

/// Removes a directory tree when dropped.
struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Chunk {
    Line(LogStream, Vec<u8>),
}

async fn read_lines<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
    stream: LogStream,
    tx: mpsc::Sender<Chunk>,
) {
    let mut buf = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = pending[start..start + pos].to_vec();
            start += pos + 1;
            if tx.send(Chunk::Line(stream, line)).await.is_err() {
                return;
            }
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE_BYTES {
            let rest = pending.split_off(MAX_LINE_BYTES);
            let line = std::mem::replace(&mut pending, rest);
            if tx.send(Chunk::Line(stream, line)).await.is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(Chunk::Line(stream, pending)).await;
    }
}

struct Pump<'a, S: LogSink> {
    rx: mpsc::Receiver<Chunk>,
    sink: &'a mut S,
    masker: &'a Masker,
    open: bool,
}

impl<S: LogSink> Pump<'_, S> {
    fn deliver(&mut self, chunk: Chunk) {
        let Chunk::Line(stream, mut bytes) = chunk;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = self.masker.mask(&text).into_owned();
        self.sink.line(LogLine { stream, text });
    }

    fn system(&mut self, text: String) {
        let text = self.masker.mask(&text).into_owned();
        self.sink.line(LogLine {
            stream: LogStream::System,
            text,
        });
    }

    /// Delivers lines while waiting for `fut`.
    async fn until<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            if !self.open {
                return fut.await;
            }
            tokio::select! {
                biased;
                chunk = self.rx.recv() => match chunk {
                    Some(c) => self.deliver(c),
                    None => self.open = false,
                },
                out = &mut fut => return out,
            }
        }
    }

    /// Delivers whatever is already queued, without waiting.
    fn drain_ready(&mut self) {
        while let Ok(chunk) = self.rx.try_recv() {
            self.deliver(chunk);
        }
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence/permission.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: sending a signal to a process group we created; errors (ESRCH) are fine.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Terminates every process in the group: SIGTERM, wait up to `grace`, SIGKILL.
/// Reaps the direct child along the way. Returns its exit status if seen.
async fn terminate_group(
    child: &mut tokio::process::Child,
    pgid: i32,
    grace: Duration,
    mut status: Option<ExitStatus>,
) -> Option<ExitStatus> {
    let reap = |child: &mut tokio::process::Child, status: &mut Option<ExitStatus>| {
        if status.is_none()
            && let Ok(Some(s)) = child.try_wait()
        {
            *status = Some(s);
        }
    };
    reap(child, &mut status);
    if !group_alive(pgid) {
        return status;
    }
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut wait = Duration::from_millis(1);
    loop {
        reap(child, &mut status);
        if !group_alive(pgid) {
            return status;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    }
    signal_group(pgid, libc::SIGKILL);
    if status.is_none() {
        status = child.wait().await.ok();
    }
    // Orphaned members are reaped by init; give it a moment so callers
    // observe a dead tree, without waiting forever on a non-reaping init.
    let deadline = Instant::now() + Duration::from_secs(2);
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    status
}

fn exit_parts(status: Option<ExitStatus>) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(s) => (s.code(), s.signal()),
        None => (None, None),
    }
}

/// Runs one step to completion, streaming its output to `sink` as it is produced.
pub async fn run_step<S: LogSink>(
    cmd: &StepCommand,
    sink: &mut S,
    cancel: &CancelSignal,
) -> Result<StepResult, ExecError> {
    if !cmd.working_dir.is_dir() {
        return Err(ExecError::WorkingDir(cmd.working_dir.clone()));
    }
    if cancel.is_cancelled() {
        sink.line(LogLine {
            stream: LogStream::System,
            text: "step cancelled before it started".into(),
        });
        return Ok(StepResult {
            exit_code: None,
            signal: None,
            outcome: StepOutcome::Cancelled,
            duration: Duration::ZERO,
            outputs: BTreeMap::new(),
            env_updates: BTreeMap::new(),
        });
    }
    let dir = unique_temp_path("pave-step");
    let temp_err = |path: &Path, source| ExecError::TempFiles {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| temp_err(&dir, e))?;
    let _guard = TempDirGuard(dir.clone());
    let script_path = dir.join("script");
    let output_path = dir.join("output");
    let env_path = dir.join("env");
    std::fs::write(&script_path, cmd.script.as_bytes()).map_err(|e| temp_err(&script_path, e))?;
    std::fs::write(&output_path, b"").map_err(|e| temp_err(&output_path, e))?;
    std::fs::write(&env_path, b"").map_err(|e| temp_err(&env_path, e))?;

    let argv = shell_argv(cmd.shell.as_deref(), &script_path)?;
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(&cmd.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !cmd.inherit_env {
        command.env_clear();
    }
    command
        .envs(&cmd.env)
        .env("PAVE_OUTPUT", &output_path)
        .env("PAVE_ENV", &env_path);

    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        program: argv[0].clone(),
        source,
    })?;
    let pgid = match child.id() {
        Some(id) => id as i32,
        None => {
            // Already reaped: cannot happen right after spawn, but stay safe.
            let _ = child.wait().await;
            0
        }
    };

    let (tx, rx) = mpsc::channel(1024);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(out, LogStream::Stdout, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, LogStream::Stderr, tx.clone())));
    }
    drop(tx);
    let mut pump = Pump {
        rx,
        sink,
        masker: &cmd.masker,
        open: true,
    };

    #[derive(Clone, Copy)]
    enum End {
        Exited(Option<ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let end = pump
        .until(async {
            tokio::select! {
                status = child.wait() => End::Exited(status.ok()),
                _ = tokio::time::sleep(cmd.timeout) => End::TimedOut,
                _ = cancel.cancelled() => End::Cancelled,
            }
        })
        .await;

    let status = match end {
        End::Exited(status) => {
            if pgid > 0 {
                pump.until(terminate_group(&mut child, pgid, cmd.kill_grace, status))
                    .await
            } else {
                status
            }
        }
        End::TimedOut | End::Cancelled => {
            let what = if matches!(end, End::TimedOut) {
                format!("step timed out after {:?}; terminating", cmd.timeout)
            } else {
                "step cancelled; terminating".to_string()
            };
            pump.system(what);
            if pgid > 0 {
                pump.until(terminate_group(&mut child, pgid, cmd.kill_grace, None))
                    .await
            } else {
                None
            }
        }
    };
    // The group is gone, so the pipes are closed unless a process escaped the
    // group (setsid) while holding them; do not wait on those forever.
    let _ = pump
        .until(tokio::time::timeout(Duration::from_secs(2), async {
            for r in &mut readers {
                let _ = r.await;
            }
        }))
        .await;
    for r in &readers {
        r.abort();
    }
    pump.drain_ready();
    while let Some(chunk) = pump.rx.recv().await {
        pump.deliver(chunk);
    }
    let duration = started.elapsed();
    let (exit_code, signal) = exit_parts(status);

    let mut outcome = match end {
        End::TimedOut => StepOutcome::TimedOut,
        End::Cancelled => StepOutcome::Cancelled,
        End::Exited(_) if exit_code == Some(0) => StepOutcome::Success,
        End::Exited(_) => StepOutcome::Failure,
    };
    let mut outputs = BTreeMap::new();
    let mut env_updates = BTreeMap::new();
    for (path, target, label) in [
        (&output_path, &mut outputs, "PAVE_OUTPUT"),
        (&env_path, &mut env_updates, "PAVE_ENV"),
    ] {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => continue, // the script removed its own file: nothing written
        };
        match parse_file_command(&text) {
            Ok(map) => *target = map,
            Err(e) => {
                pump.system(format!("invalid ${label} file: {e}"));
                if outcome == StepOutcome::Success {
                    outcome = StepOutcome::Failure;
                }
            }
        }
    }
    if let Some(code) = exit_code
        && code != 0
        && outcome == StepOutcome::Failure
    {
        pump.system(format!("process exited with code {code}"));
    } else if let Some(sig) = signal
        && outcome == StepOutcome::Failure
    {
        pump.system(format!("process killed by signal {sig}"));
    }

    Ok(StepResult {
        exit_code,
        signal,
        outcome,
        duration,
        outputs,
        env_updates,
    })
}
