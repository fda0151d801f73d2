//! `pave run`: run the repository's pipeline on this machine with the same
//! engine agents use, streaming each step's output live, then print a summary.
//! With a server configured, the run is also recorded there (see
//! `run_record`): logs, results, tests and artifacts, marked as run locally.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use pave_pipeline::artifacts::ArtifactStore;
use pave_pipeline::cache::CacheStore;
use pave_pipeline::exec::{CancelSignal, LogStream};
use pave_pipeline::expr::PaveContext;
use pave_pipeline::local::{self, LocalOptions, RunEvent, RunReport};
use pave_pipeline::plan::Outcome;
use pave_pipeline::runner::{CacheUse, JobReport, StepStatus, fmt_duration, test_totals};

use super::run_record::{self, RecordRequest};
use crate::output;

/// Help text about what a job's workspace contains.
pub const AFTER_HELP: &str = "\
Each job runs in a clean temporary copy of the repository. In a git repository
the copy holds the files `git ls-files --cached --others --exclude-standard`
lists: tracked files as they are on disk (uncommitted changes included) and
untracked files that are not ignored; ignored files (build output, .env) are not
copied. Outside git, everything but .git is copied.

With a server configured (--server/PAVE_SERVER, `pave login`, or a .pave/
directory of `pave up` here or above), the run is also recorded there: it shows
in `pave runs`, the portal and test reports, marked as run locally (and as dirty
when the tree has uncommitted changes). If the server cannot be reached, `pave
run` warns once and runs locally; --no-record skips recording.

Steps with `cache:` are restored from the step cache when their command, named
env and input files are unchanged; the cache and artifacts live in --cache-dir,
else $PAVE_CACHE_DIR, $XDG_CACHE_HOME/pave or ~/.cache/pave.";

/// `pave run` flags.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The pave.yaml to run (default: pave.yaml at the repository root).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Run only this job (and the jobs it needs); repeatable.
    #[arg(long = "job", value_name = "ID")]
    pub jobs: Vec<String>,
    /// Ignore the step cache: run every step and save nothing.
    #[arg(long)]
    pub no_cache: bool,
    /// Where the step cache and artifacts live.
    #[arg(long, value_name = "DIR", env = "PAVE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the run report as JSON instead of the summary (logs go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Pass a secret: its value is read from the environment variable NAME,
    /// available as `secrets.NAME` and masked in all output; repeatable.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Most jobs running at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Keep the jobs' temporary workspaces (each job's path is printed when it starts).
    #[arg(long)]
    pub keep_workspaces: bool,
    /// Find `uses:` pipeline templates as DIR/<name>@<version>.yaml first
    /// (else they are fetched from the configured server).
    #[arg(long, value_name = "DIR", env = "PAVE_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Do not record the run on the configured server.
    #[arg(long)]
    pub no_record: bool,
    /// Lease of the recorded jobs on the server: a run whose `pave run`
    /// stops heartbeating ends failed this long after.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "PAVE_RUN_LEASE_SECONDS",
        default_value_t = 30,
        hide = true
    )]
    pub lease_seconds: u64,
}

/// Runs `pave run`; `server`/`token` are the global flags (recording).
pub async fn run(
    args: RunArgs,
    server: Option<String>,
    token: Option<String>,
) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = git(&cwd, &["rev-parse", "--show-toplevel"])
        .map(PathBuf::from)
        .unwrap_or_else(|| cwd.clone());
    let (path, shown) = match &args.file {
        Some(f) => (cwd.join(f), f.display().to_string()),
        None => (
            root.join("pave.yaml"),
            display_relative(&root.join("pave.yaml"), &cwd),
        ),
    };
    let content = std::fs::read_to_string(&path).with_context(|| format!("cannot read {shown}"))?;
    let doc = match pave_model::parse_pave_yaml(&shown, &content) {
        Ok(doc) => doc,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "error: {shown} has {} problem(s); nothing was run",
                errors.0.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let Some(spec) = doc.pipeline else {
        bail!(
            "{shown} has no `pipeline:` section; add one (pipeline.jobs.<id>.steps[].run) to use `pave run`"
        );
    };
    let spec = super::pipeline_templates::expand_for_local_run(
        &shown,
        &content,
        &spec,
        args.templates.as_deref(),
        server.clone(),
        token.clone(),
    )
    .await?;
    let plan = pave_pipeline::plan::plan(&spec)
        .with_context(|| format!("{shown}: cannot plan the pipeline"))?;
    let plan = local::select_jobs(&plan, &args.jobs).map_err(anyhow::Error::msg)?;

    let mut secrets = BTreeMap::new();
    for name in &args.secrets {
        let value = std::env::var(name).with_context(|| {
            format!("--secret {name}: set the environment variable {name} to the secret's value")
        })?;
        secrets.insert(name.clone(), value);
    }
    let cache_dir = match args.cache_dir.clone() {
        Some(d) => d,
        None => default_cache_dir()?,
    };
    let cache = if args.no_cache {
        None
    } else {
        Some(CacheStore::open(cache_dir.join("steps")).context("cannot open the step cache")?)
    };
    let artifacts = ArtifactStore::open(cache_dir.join("artifacts"))
        .context("cannot open the artifact store")?;
    let uploads = artifacts.clone();

    let sha = git(&root, &["rev-parse", "HEAD"]).unwrap_or_else(|| "local".into());
    let git_ref = git(&root, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_else(|| "local".into());
    let run_id = format!(
        "local-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    );
    let mut opts = LocalOptions::new(&root);
    if let Some(n) = args.parallel {
        opts.parallelism = n.max(1);
    }
    opts.pave = PaveContext {
        sha,
        git_ref,
        run_id,
        service: doc.service.entity.metadata.name.clone(),
    };
    opts.secrets = secrets;
    opts.run_env.cache = cache;
    opts.run_env.artifacts = Some(artifacts);
    opts.keep_workspaces = args.keep_workspaces;

    let cancel = CancelSignal::new();
    let recorder = match (
        args.no_record,
        crate::config::resolve_configured(server, token)?,
    ) {
        (false, Some(target)) => {
            let request = RecordRequest {
                service: opts.pave.service.clone(),
                namespace: Some(doc.service.entity.metadata.namespace.clone())
                    .filter(|ns| ns != "default"),
                git_ref: opts.pave.git_ref.clone(),
                sha: opts.pave.sha.clone(),
                dirty: git(&root, &["status", "--porcelain"]).is_some(),
                file: shown.clone(),
                pave_yaml: content.clone(),
                jobs: args.jobs.clone(),
                host: host_name(),
                lease_seconds: args.lease_seconds.clamp(2, 600),
            };
            let keys: Vec<String> = plan.jobs.iter().map(|j| j.key.clone()).collect();
            run_record::start(target, request, &keys, uploads, cancel.clone()).await
        }
        _ => None,
    };
    if let Some(r) = &recorder {
        opts.pave.run_id = r.run_id.clone();
        eprintln!(
            "pave: recording as run #{} of {} ({})",
            r.number, opts.pave.service, r.run_id
        );
    }
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("pave: cancelling the run (Ctrl-C)…");
            on_signal.cancel();
        }
    });
    let mut printer = Printer {
        to_stderr: args.json,
        show_workspaces: args.keep_workspaces,
    };
    let mut on_event = |e: RunEvent| {
        if let Some(r) = &recorder {
            r.event(&e);
        }
        printer.event(e)
    };
    let report = local::run_local(&spec, &plan, &opts, &mut on_event, &cancel).await;
    if let Some(r) = recorder {
        let number = r.number;
        if let Some(recorded) = r.finish().await {
            let local = report.outcome.to_string();
            if recorded == local {
                eprintln!("pave: recorded as run #{number} ({recorded})");
            } else {
                eprintln!(
                    "pave: warning: the server recorded run #{number} as {recorded}, locally it is {local}"
                );
            }
        }
    }
    if args.json {
        output::json(&report)?;
    } else {
        summary(&report);
    }
    Ok(match report.outcome {
        Outcome::Success | Outcome::Skipped => ExitCode::SUCCESS,
        Outcome::Failure => ExitCode::FAILURE,
        Outcome::Cancelled => ExitCode::from(130),
    })
}

/// This machine's name, shown as the recorded jobs' agent.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 100 && !h.chars().any(char::is_control))
        .unwrap_or_else(|| "localhost".into())
}

/// Output of a git command in `dir`, trimmed; `None` on any failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn display_relative(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// `$XDG_CACHE_HOME/pave`, else `~/.cache/pave`.
fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("pave"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("pave")),
        None => bail!("cannot find a cache directory: set --cache-dir or PAVE_CACHE_DIR"),
    }
}

/// Prints live progress, one prefixed line at a time.
struct Printer {
    to_stderr: bool,
    show_workspaces: bool,
}

impl Printer {
    fn print(&self, text: &str) {
        if self.to_stderr {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{text}");
        } else {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
    }

    fn event(&mut self, event: RunEvent) {
        match event {
            RunEvent::JobStarted { job, workspace } if self.show_workspaces => {
                self.print(&format!("[{job}] started in {}", workspace.display()))
            }
            RunEvent::JobStarted { job, .. } => self.print(&format!("[{job}] started")),
            RunEvent::StepStarted { .. } => {}
            RunEvent::Line { job, step, line } => {
                let mark = if line.stream == LogStream::System {
                    "▸ "
                } else {
                    ""
                };
                self.print(&format!("[{job} › {step}] {mark}{}", line.text));
            }
            RunEvent::StepFinished { job, step } => match step.status {
                StepStatus::Success => {}
                StepStatus::Skipped => self.print(&format!(
                    "[{job} › {}] ▸ skipped: {}",
                    step.label,
                    step.message.as_deref().unwrap_or("")
                )),
                other => self.print(&format!(
                    "[{job} › {}] ▸ {}{}",
                    step.label,
                    other.as_str(),
                    step.exit_code
                        .filter(|c| *c != 0)
                        .map(|c| format!(" (exit code {c})"))
                        .unwrap_or_default()
                )),
            },
            RunEvent::JobFinished { report } => {
                let mut line = format!("[{}] {}", report.key, report.outcome);
                if let Some(m) = &report.message {
                    line.push_str(&format!(": {m}"));
                }
                if !report.steps.is_empty() {
                    line.push_str(&format!(
                        " in {}",
                        fmt_duration(std::time::Duration::from_millis(report.duration_ms))
                    ));
                }
                self.print(&line);
            }
        }
    }
}

fn step_rows(job: &JobReport) -> Vec<Vec<String>> {
    if job.steps.is_empty() {
        return vec![vec![
            job.key.clone(),
            "-".into(),
            job.outcome.to_string(),
            "-".into(),
            "-".into(),
        ]];
    }
    job.steps
        .iter()
        .map(|s| {
            let duration = if s.status == StepStatus::Skipped {
                "-".to_string()
            } else {
                fmt_duration(std::time::Duration::from_millis(s.duration_ms))
            };
            let cache = match s.cache {
                CacheUse::Hit => "hit",
                CacheUse::Miss => "miss",
                CacheUse::None => "-",
            };
            vec![
                job.key.clone(),
                s.label.clone(),
                s.status.as_str().to_string(),
                duration,
                cache.to_string(),
            ]
        })
        .collect()
}

/// The summary after a run: steps, artifacts, tests, the verdict.
fn summary(report: &RunReport) {
    println!();
    let rows: Vec<Vec<String>> = report.jobs.iter().flat_map(step_rows).collect();
    output::table(&["JOB", "STEP", "STATUS", "DURATION", "CACHE"], &rows);
    for job in &report.jobs {
        if job.outcome == Outcome::Failure
            && let Some(m) = &job.message
        {
            println!("{}: {m}", job.key);
        }
    }
    let artifacts: Vec<Vec<String>> = report
        .jobs
        .iter()
        .flat_map(|j| {
            j.artifacts.iter().map(|a| {
                vec![
                    a.name.clone(),
                    a.digest.clone(),
                    a.size.to_string(),
                    j.key.clone(),
                ]
            })
        })
        .collect();
    if !artifacts.is_empty() {
        println!();
        output::table(&["ARTIFACT", "DIGEST", "SIZE", "JOB"], &artifacts);
    }
    let cases: Vec<_> = report.jobs.iter().flat_map(|j| j.tests.iter()).collect();
    if !cases.is_empty() {
        let (passed, failed, skipped) = test_totals(cases.iter().copied());
        println!();
        println!("Tests: {passed} passed, {failed} failed, {skipped} skipped");
        for c in cases.iter().filter(|c| c.status.is_failure()) {
            match &c.message {
                Some(m) => println!("  FAILED {}: {m}", c.test_id()),
                None => println!("  FAILED {}", c.test_id()),
            }
        }
    }
    let verdict = match report.outcome {
        Outcome::Success => "succeeded",
        Outcome::Failure => "failed",
        Outcome::Cancelled => "was cancelled",
        Outcome::Skipped => "skipped every job",
    };
    println!();
    println!(
        "Run {} {verdict} in {} (sha {}, {})",
        report.run_id,
        fmt_duration(std::time::Duration::from_millis(report.duration_ms)),
        report.sha.get(..12).unwrap_or(&report.sha),
        report.git_ref
    );
}
