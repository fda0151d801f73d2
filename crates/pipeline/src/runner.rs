//! Running one planned job: its steps in order in a prepared workspace, with
//! layered env, `if:` decisions, timeouts, the step cache, JUnit reports, job
//! outputs and artifacts. Used by `pave run` (through [`crate::local`]) and by
//! agents; the caller prepares the workspace and collects the report.
//!
//! Env precedence for a step's process, lowest first: Pave's built-ins
//! (`CI`, `PAVE`, `PAVE_*`, except those listed last), pipeline `env`, job
//! `env`, `$PAVE_ENV` updates of earlier steps, step `env`; then `PAVE_SHA`,
//! `PAVE_REF`, `PAVE_RUN_ID`, `PAVE_JOB` and `PAVE_WORKSPACE`, which cannot
//! be overridden. Secrets reach a step's environment only through its `env:`
//! (`TOKEN: ${{ secrets.TOKEN }}`) and are masked in every log line, message
//! and output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pave_model::pipeline_spec::{Defaults, StepSpec};
use serde::{Deserialize, Serialize};

use crate::artifacts::{Artifact, ArtifactStore};
use crate::cache::{self, CacheLookup, CacheStore};
use crate::exec::{self, CancelSignal, LogLine, LogStream, StepCommand, StepOutcome, StepResult};
use crate::expr::{Contexts, NeedContext, PaveContext, Status, StepContext, interpolate};
use crate::junit::{TestCaseResult, TestStatus, collect_reports};
use crate::mask::Masker;
use crate::plan::{self, Decision, Outcome, PlannedJob};

/// Step outputs whose name starts with this carry `$PAVE_ENV` updates
/// through the step cache (which stores outputs, not env); never shown.
const CACHED_ENV_PREFIX: &str = "\u{0}pave-env:";

/// Everything a job needs from the run around it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobContext {
    /// The `pave` context: sha, ref, run id, service.
    pub pave: PaveContext,
    /// The pipeline's `env` (unresolved; interpolated by the runner).
    pub env: BTreeMap<String, String>,
    /// The pipeline's `defaults`.
    pub defaults: Option<Defaults>,
    /// `needs.<job>` for each job this job needs directly.
    pub needs: BTreeMap<String, NeedContext>,
    /// Secrets by name: `secrets.NAME` in expressions, masked everywhere.
    /// Serialized (an agent receives them with its job); never log a context.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Test ids (`classname::name`) quarantined for the service: they still
    /// run and are reported, but a `junit:` step whose only failing test
    /// cases are quarantined does not fail.
    #[serde(default)]
    pub quarantined: BTreeSet<String>,
}

/// The machine-side environment of a job: stores and limits.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// The step cache; `None` disables `cache:` (every step runs).
    pub cache: Option<CacheStore>,
    /// Where `artifacts:` go; `None` fails a job that declares artifacts.
    pub artifacts: Option<ArtifactStore>,
    /// Whether steps inherit this process's environment (true for `pave run`).
    pub inherit_env: bool,
    /// Grace between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace: Duration,
    /// A cap on any job's duration on top of its `timeout-minutes` (e.g. a lease).
    pub max_job_duration: Option<Duration>,
}

impl Default for RunEnv {
    fn default() -> Self {
        RunEnv {
            cache: None,
            artifacts: None,
            inherit_env: true,
            kill_grace: Duration::from_secs(5),
            max_job_duration: None,
        }
    }
}

/// How a step ended, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Success,
    Failure,
    Skipped,
    Cancelled,
    TimedOut,
}

impl StepStatus {
    /// The outcome the planner's rules see (a timeout is a failure).
    pub fn outcome(self) -> Outcome {
        match self {
            StepStatus::Success => Outcome::Success,
            StepStatus::Failure | StepStatus::TimedOut => Outcome::Failure,
            StepStatus::Skipped => Outcome::Skipped,
            StepStatus::Cancelled => Outcome::Cancelled,
        }
    }

    /// `success`, `failure`, `skipped`, `cancelled`, `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Success => "success",
            StepStatus::Failure => "failure",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::TimedOut => "timed_out",
        }
    }
}

/// Whether the step cache was used for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheUse {
    /// Outputs restored; the command did not run.
    Hit,
    /// The command ran (and was saved if it succeeded).
    Miss,
    /// The step has no `cache:` or the cache is disabled.
    None,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// 0-based position in the job.
    pub index: usize,
    /// The step's name, or a label derived from its command.
    pub label: String,
    /// The step's `id:`.
    pub id: Option<String>,
    pub status: StepStatus,
    /// After `continue-on-error`.
    pub conclusion: Outcome,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub cache: CacheUse,
    /// Why it was skipped or could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One job instance's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The instance key in the plan.
    pub key: String,
    pub job_id: String,
    pub name: String,
    /// Before the job's `continue-on-error`.
    pub outcome: Outcome,
    /// Why the job was skipped or failed outside a step (timeout, artifacts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    /// The job's `outputs:`, evaluated after its steps.
    pub outputs: BTreeMap<String, String>,
    pub artifacts: Vec<Artifact>,
    /// Every test case from the steps' `junit:` reports.
    pub tests: Vec<TestCaseResult>,
}

impl JobReport {
    /// A report for a job that never ran (skipped, or cancelled before starting).
    pub fn not_run(job: &PlannedJob, outcome: Outcome, message: impl Into<String>) -> JobReport {
        JobReport {
            key: job.key.clone(),
            job_id: job.job_id.clone(),
            name: job.name.clone(),
            outcome,
            message: Some(message.into()),
            duration_ms: 0,
            steps: Vec::new(),
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
            tests: Vec::new(),
        }
    }
}

/// Receives a job's progress live.
pub trait JobSink {
    /// One log line of a step (already masked); `step` is the step's label.
    fn line(&mut self, job: &str, step: &str, line: &LogLine);
    /// A step is about to run.
    fn step_started(&mut self, _job: &str, _step: &str) {}
    /// A step concluded (also called for skipped steps).
    fn step_finished(&mut self, _job: &str, _step: &StepReport) {}
}

impl JobSink for Vec<(String, String, LogLine)> {
    fn line(&mut self, job: &str, step: &str, line: &LogLine) {
        self.push((job.to_string(), step.to_string(), line.clone()));
    }
}

/// A step's display label: its name, else the first line of its command.
pub fn step_display_label(step: &StepSpec, index: usize) -> String {
    if let Some(name) = &step.name {
        return name.clone();
    }
    match step
        .run
        .as_deref()
        .and_then(|r| r.lines().find(|l| !l.trim().is_empty()))
    {
        Some(first) => {
            let first = first.trim();
            if first.chars().count() > 40 {
                let cut: String = first.chars().take(39).collect();
                format!("{cut}…")
            } else {
                first.to_string()
            }
        }
        None => plan::step_label(step, index),
    }
}

/// Mutable state of a job in progress.
struct JobRun<'a, S: JobSink> {
    job: &'a PlannedJob,
    workspace: &'a Path,
    env: &'a RunEnv,
    sink: &'a mut S,
    cancel: &'a CancelSignal,
    masker: Masker,
    ctx: Contexts,
    /// Pipeline + job env, resolved.
    base_env: BTreeMap<String, String>,
    /// `$PAVE_ENV` updates so far.
    file_env: BTreeMap<String, String>,
    builtins: Vec<(String, String)>,
    defaults: [Option<Defaults>; 2],
    deadline: Instant,
    job_limit: Duration,
    timed_out: bool,
    /// The service's quarantined test ids.
    quarantined: &'a BTreeSet<String>,
    report: JobReport,
}

/// Runs one job instance in `workspace` (which must already hold the
/// sources) and reports how it went. Never panics on user input: every
/// problem becomes a failed step or job with a message in the log.
pub async fn run_job(
    job: &PlannedJob,
    ctx: &JobContext,
    workspace: &Path,
    env: &RunEnv,
    sink: &mut impl JobSink,
    cancel: &CancelSignal,
) -> JobReport {
    let started = Instant::now();
    let masker = Masker::new(ctx.secrets.values());
    let mut contexts = Contexts::for_job(
        ctx.pave.clone(),
        job.matrix.clone(),
        ctx.needs.clone(),
        ctx.secrets.clone(),
    );
    let mut job_limit = Duration::from_secs(u64::from(job.spec.timeout_minutes) * 60);
    if let Some(max) = env.max_job_duration {
        job_limit = job_limit.min(max);
    }
    let ws = workspace.to_string_lossy().into_owned();
    let builtins = vec![
        ("PAVE_SHA".to_string(), ctx.pave.sha.clone()),
        ("PAVE_REF".to_string(), ctx.pave.git_ref.clone()),
        ("PAVE_RUN_ID".to_string(), ctx.pave.run_id.clone()),
        ("PAVE_JOB".to_string(), job.job_id.clone()),
        ("PAVE_WORKSPACE".to_string(), ws),
    ];
    let mut report = JobReport::not_run(job, Outcome::Success, "");
    report.message = None;
    let env_error = contexts
        .push_env(&ctx.env, Status::OK)
        .and_then(|_| contexts.push_env(&job.spec.env, Status::OK))
        .err();
    let base_env = contexts.env.clone();
    let mut run = JobRun {
        job,
        workspace,
        env,
        sink,
        cancel,
        masker,
        ctx: contexts,
        base_env,
        file_env: BTreeMap::new(),
        builtins,
        defaults: [job.spec.defaults.clone(), ctx.defaults.clone()],
        deadline: started + job_limit,
        job_limit,
        timed_out: false,
        quarantined: &ctx.quarantined,
        report,
    };
    if let Some(e) = env_error {
        let msg = format!("cannot resolve the job's env: {e}");
        run.system("setup", &msg);
        run.report.outcome = Outcome::Failure;
        run.report.message = Some(msg);
    } else {
        run.run_steps().await;
        run.finish().await;
    }
    run.report.duration_ms = millis(started.elapsed());
    run.report
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S: JobSink> JobRun<'_, S> {
    /// A message from Pave in the job's log.
    fn system(&mut self, step: &str, text: &str) {
        let line = LogLine {
            stream: LogStream::System,
            text: self.masker.mask(text).into_owned(),
        };
        self.sink.line(&self.job.key, step, &line);
    }

    fn status(&self) -> Status {
        let mut st = Status::OK;
        for s in &self.report.steps {
            match s.conclusion {
                Outcome::Failure => st.failure = true,
                Outcome::Cancelled => st.cancelled = true,
                _ => {}
            }
        }
        st.cancelled |= self.cancel.is_cancelled();
        st.success = !st.failure && !st.cancelled;
        st
    }

    async fn run_steps(&mut self) {
        let steps = self.job.spec.steps.clone();
        for (index, step) in steps.iter().enumerate() {
            let label = step_display_label(step, index);
            let decision = if self.timed_out {
                Decision::Skip(format!(
                    "the job exceeded its timeout of {}",
                    fmt_duration(self.job_limit)
                ))
            } else {
                let previous: Vec<(&StepSpec, Outcome)> = steps
                    .iter()
                    .zip(&self.report.steps)
                    .map(|(s, r)| (s, r.status.outcome()))
                    .collect();
                self.ctx.job_status = Some(plan::job_outcome_from_steps(&previous));
                let value = self.ctx.to_value();
                plan::step_should_run(step, &previous, &value, self.cancel.is_cancelled())
            };
            let mut report = StepReport {
                index,
                label: label.clone(),
                id: step.id.clone(),
                status: StepStatus::Skipped,
                conclusion: Outcome::Skipped,
                duration_ms: 0,
                exit_code: None,
                cache: CacheUse::None,
                message: None,
            };
            let mut outputs = BTreeMap::new();
            match decision {
                Decision::Skip(reason) => report.message = Some(reason),
                Decision::Fail(reason) => {
                    self.system(&label, &reason);
                    report.status = StepStatus::Failure;
                    report.message = Some(reason);
                }
                Decision::Run => {
                    self.sink.step_started(&self.job.key, &label);
                    let started = Instant::now();
                    outputs = self.run_one(step, &label, &mut report).await;
                    report.duration_ms = millis(started.elapsed());
                    if let Some(pattern) = &step.junit {
                        let first = self.report.tests.len();
                        self.collect_junit(&label, pattern);
                        self.forgive_quarantined(&label, first, &mut report);
                    }
                }
            }
            report.conclusion = plan::step_conclusion(step, report.status.outcome());
            if let Some(id) = &step.id {
                let outputs = outputs
                    .into_iter()
                    .map(|(k, v)| (k, self.masker.mask(&v).into_owned()))
                    .collect();
                self.ctx.steps.insert(
                    id.clone(),
                    StepContext {
                        outcome: report.status.outcome(),
                        conclusion: report.conclusion,
                        outputs,
                    },
                );
            }
            self.sink.step_finished(&self.job.key, &report);
            self.report.steps.push(report);
        }
    }

    /// Runs (or restores) one step; fills `report`; returns its outputs.
    async fn run_one(
        &mut self,
        step: &StepSpec,
        label: &str,
        report: &mut StepReport,
    ) -> BTreeMap<String, String> {
        let cmd = match self.prepare(step) {
            Ok(cmd) => cmd,
            Err(msg) => {
                self.system(label, &msg);
                report.status = StepStatus::Failure;
                report.message = Some(msg);
                return BTreeMap::new();
            }
        };
        let bounded_by_job = cmd.timeout >= self.deadline.saturating_duration_since(Instant::now());
        // The step cache: look up before running.
        let cache = match (&step.cache, &self.env.cache) {
            (Some(spec), Some(store)) => Some((to_cache_spec(spec), store.clone())),
            _ => None,
        };
        let mut key = None;
        if let Some((spec, store)) = &cache {
            report.cache = CacheUse::Miss;
            match cache::cache_key(self.workspace, &cmd, spec) {
                Ok(k) => {
                    if let Some(outputs) = self.try_restore(store, &k, label, report) {
                        return outputs;
                    }
                    key = Some(k);
                }
                Err(e) => {
                    let msg = format!("cache: {e}");
                    self.system(label, &msg);
                    report.status = StepStatus::Failure;
                    report.message = Some(msg);
                    return BTreeMap::new();
                }
            }
        }
        let mut captured: Vec<LogLine> = Vec::new();
        let result = {
            let (job_key, sink) = (&self.job.key, &mut *self.sink);
            let mut forward = |line: LogLine| {
                sink.line(job_key, label, &line);
                captured.push(line);
            };
            exec::run_step(&cmd, &mut forward, self.cancel).await
        };
        let result: StepResult = match result {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("cannot run the step: {e}");
                self.system(label, &msg);
                report.status = StepStatus::Failure;
                report.message = Some(msg);
                return BTreeMap::new();
            }
        };
        report.exit_code = result.exit_code;
        report.status = match result.outcome {
            StepOutcome::Success => StepStatus::Success,
            StepOutcome::Failure => StepStatus::Failure,
            StepOutcome::Cancelled => StepStatus::Cancelled,
            StepOutcome::TimedOut => StepStatus::TimedOut,
        };
        if result.outcome == StepOutcome::TimedOut && bounded_by_job {
            self.timed_out = true;
            let msg = format!(
                "the job exceeded its timeout of {}",
                fmt_duration(self.job_limit)
            );
            self.system(label, &msg);
            report.message = Some(msg.clone());
            self.report.message = Some(msg);
        }
        self.file_env.extend(result.env_updates.clone());
        if let (Some((spec, store)), Some(k), StepOutcome::Success) = (&cache, &key, result.outcome)
        {
            let mut stored = result.outputs.clone();
            for (name, value) in &result.env_updates {
                stored.insert(format!("{CACHED_ENV_PREFIX}{name}"), value.clone());
            }
            match store.save(k, self.workspace, &spec.outputs, &captured, &stored) {
                Ok(saved) => self.system(
                    label,
                    &format!("cache saved {}: {} files", short(k), saved.files),
                ),
                Err(e) => self.system(label, &format!("warning: cache not saved: {e}")),
            }
        }
        result.outputs
    }

    /// On a cache hit: replays the log, applies env updates, returns outputs.
    fn try_restore(
        &mut self,
        store: &CacheStore,
        key: &str,
        label: &str,
        report: &mut StepReport,
    ) -> Option<BTreeMap<String, String>> {
        match store.restore(key, self.workspace) {
            Ok(CacheLookup::Hit(hit)) => {
                self.system(
                    label,
                    &format!("cache hit {}: restored {} files", short(key), hit.files),
                );
                for line in &hit.log {
                    let line = LogLine {
                        stream: line.stream,
                        text: self.masker.mask(&line.text).into_owned(),
                    };
                    self.sink.line(&self.job.key, label, &line);
                }
                report.cache = CacheUse::Hit;
                report.status = StepStatus::Success;
                report.exit_code = Some(0);
                let mut outputs = BTreeMap::new();
                for (name, value) in hit.outputs {
                    match name.strip_prefix(CACHED_ENV_PREFIX) {
                        Some(var) => {
                            self.file_env.insert(var.to_string(), value);
                        }
                        None => {
                            outputs.insert(name, value);
                        }
                    }
                }
                Some(outputs)
            }
            Ok(CacheLookup::Miss) => {
                self.system(label, &format!("cache miss {}", short(key)));
                None
            }
            Ok(CacheLookup::Corrupt(reason)) => {
                self.system(
                    label,
                    &format!("cache entry {} was corrupt ({reason}); running", short(key)),
                );
                None
            }
            Err(e) => {
                self.system(
                    label,
                    &format!("warning: cache lookup failed: {e}; running"),
                );
                None
            }
        }
    }

    /// Builds the command for a step: env layers, interpolated script,
    /// shell, working directory and timeout.
    fn prepare(&self, step: &StepSpec) -> Result<StepCommand, String> {
        let status = self.status();
        let mut layered = self.ctx.clone();
        layered.env = self.base_env.clone();
        layered.env.extend(self.file_env.clone());
        layered
            .push_env(&step.env, status)
            .map_err(|e| format!("cannot resolve the step's env: {e}"))?;
        let value = layered.to_value();
        let run = step.run.as_deref().ok_or("the step has no `run:`")?;
        let script = interpolate(run, &value, status)
            .map_err(|e| format!("cannot interpolate `run:`: {e}"))?;
        let run_default = |f: fn(&pave_model::pipeline_spec::RunDefaults) -> Option<String>| {
            self.defaults
                .iter()
                .flatten()
                .find_map(|d| d.run.as_ref().and_then(f))
        };
        let shell = step
            .shell
            .clone()
            .or_else(|| run_default(|r| r.shell.clone()));
        let wd = step
            .working_directory
            .clone()
            .or_else(|| run_default(|r| r.working_directory.clone()));
        let working_dir = match wd {
            None => self.workspace.to_path_buf(),
            Some(wd) => {
                let wd = interpolate(&wd, &value, status)
                    .map_err(|e| format!("cannot interpolate `working-directory`: {e}"))?;
                self.workspace.join(workspace_relative(&wd)?)
            }
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("CI".into(), "true".into());
        env.insert("PAVE".into(), "true".into());
        env.extend(layered.env);
        env.extend(self.builtins.iter().cloned());
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let step_limit = step
            .timeout_minutes
            .map(|m| Duration::from_secs(u64::from(m) * 60))
            .unwrap_or(exec::DEFAULT_TIMEOUT);
        Ok(StepCommand {
            script,
            shell,
            working_dir,
            env,
            inherit_env: self.env.inherit_env,
            timeout: step_limit.min(remaining),
            kill_grace: self.env.kill_grace,
            masker: self.masker.clone(),
        })
    }

    /// Parses the reports a step's `junit:` glob matches into the job report.
    fn collect_junit(&mut self, label: &str, pattern: &str) {
        match collect_reports(self.workspace, pattern) {
            Ok(found) if found.is_empty() => {
                self.system(
                    label,
                    &format!("warning: junit: no file matches {pattern:?}"),
                );
            }
            Ok(found) => {
                let mut cases = 0;
                let mut failed = 0;
                for (path, parsed) in found {
                    match parsed {
                        Ok(r) => {
                            cases += r.cases.len();
                            failed += r.cases.iter().filter(|c| c.status.is_failure()).count();
                            self.report.tests.extend(r.cases);
                        }
                        Err(e) => self.system(
                            label,
                            &format!("warning: junit: cannot read {}: {e}", path.display()),
                        ),
                    }
                }
                self.system(label, &format!("junit: {cases} tests, {failed} failed"));
            }
            Err(e) => self.system(label, &format!("warning: junit: {e}")),
        }
    }

    /// A `junit:` step that exited non-zero (normally: not a timeout or
    /// cancel) counts as a success when its reports (the cases from index
    /// `first` on) have at least one failing case and every failing case is
    /// quarantined. The cases stay in the report as they are.
    fn forgive_quarantined(&mut self, label: &str, first: usize, report: &mut StepReport) {
        if report.status != StepStatus::Failure
            || report.exit_code.is_none_or(|c| c == 0)
            || self.quarantined.is_empty()
        {
            return;
        }
        let failing: Vec<String> = self.report.tests[first.min(self.report.tests.len())..]
            .iter()
            .filter(|c| c.status.is_failure())
            .map(TestCaseResult::test_id)
            .collect();
        if failing.is_empty() || !failing.iter().all(|id| self.quarantined.contains(id)) {
            return;
        }
        let mut names: Vec<&str> = failing.iter().map(String::as_str).collect();
        names.dedup();
        const SHOWN: usize = 20;
        let mut list = names
            .iter()
            .take(SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > SHOWN {
            list.push_str(&format!(" and {} more", names.len() - SHOWN));
        }
        let msg = format!("quarantined tests failed: {list} — not failing the job");
        self.system(label, &msg);
        report.status = StepStatus::Success;
        report.message = Some(msg);
    }

    /// Job outputs, then artifacts (when the job succeeded), then the outcome.
    async fn finish(&mut self) {
        let pairs: Vec<(&StepSpec, Outcome)> = self
            .job
            .spec
            .steps
            .iter()
            .zip(&self.report.steps)
            .map(|(s, r)| (s, r.status.outcome()))
            .collect();
        let mut outcome = plan::job_outcome_from_steps(&pairs);
        self.ctx.job_status = Some(outcome);
        let mut ctx = self.ctx.clone();
        ctx.env = self.base_env.clone();
        let value = ctx.to_value();
        for (name, expr) in &self.job.spec.outputs {
            match interpolate(expr, &value, self.status()) {
                Ok(v) => {
                    let v = self.masker.mask(&v).into_owned();
                    self.report.outputs.insert(name.clone(), v);
                }
                Err(e) => self.system("outputs", &format!("warning: output `{name}`: {e}")),
            }
        }
        if outcome == Outcome::Success
            && !self.job.spec.artifacts.is_empty()
            && let Err(msg) = self.upload_artifacts().await
        {
            self.system("artifacts", &msg);
            self.report.message = Some(msg);
            outcome = Outcome::Failure;
        }
        self.report.outcome = outcome;
    }

    async fn upload_artifacts(&mut self) -> Result<(), String> {
        let Some(store) = self.env.artifacts.clone() else {
            return Err("the job declares artifacts but no artifact store is configured".into());
        };
        for spec in self.job.spec.artifacts.clone() {
            let rel = workspace_relative(&spec.path)
                .map_err(|e| format!("artifact `{}`: {e}", spec.name))?;
            let path = self.workspace.join(rel);
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(format!(
                    "artifact `{}`: {} does not exist after the job's steps",
                    spec.name, spec.path
                ));
            }
            let (store2, name) = (store.clone(), spec.name.clone());
            let put = tokio::task::spawn_blocking(move || store2.put_path(&name, &path)).await;
            let artifact = match put {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => return Err(format!("artifact `{}`: {e}", spec.name)),
                Err(e) => return Err(format!("artifact `{}`: {e}", spec.name)),
            };
            self.system(
                "artifacts",
                &format!(
                    "artifact {} {} ({} bytes)",
                    artifact.name, artifact.digest, artifact.size
                ),
            );
            self.report.artifacts.push(artifact);
        }
        Ok(())
    }
}

/// A relative path that stays inside the workspace.
fn workspace_relative(p: &str) -> Result<PathBuf, String> {
    if p.trim().is_empty() || p.trim() == "." {
        return Ok(PathBuf::new());
    }
    cache::safe_relative(p).map_err(|e| e.to_string())
}

fn to_cache_spec(s: &pave_model::pipeline_spec::CacheSpec) -> cache::CacheSpec {
    cache::CacheSpec {
        inputs: s.inputs.clone(),
        outputs: s.outputs.clone(),
        env: s.env.clone(),
    }
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// `15ms`, `2.5s`, `12s`, `5m`, `2m 5s`, `1h 30m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        match s % 60 {
            0 => format!("{}m", s / 60),
            r => format!("{}m {r}s", s / 60),
        }
    } else {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    }
}

/// Counts of test cases by status: (passed, failed, skipped).
pub fn test_totals<'a>(
    cases: impl IntoIterator<Item = &'a TestCaseResult>,
) -> (usize, usize, usize) {
    let (mut p, mut f, mut s) = (0, 0, 0);
    for c in cases {
        match c.status {
            TestStatus::Passed => p += 1,
            TestStatus::Failed | TestStatus::Error => f += 1,
            TestStatus::Skipped => s += 1,
        }
    }
    (p, f, s)
}

#[cfg(test)]
mod quarantine_tests {
    use super::*;

    /// Runs one job whose step writes a JUnit report failing `failing` test
    /// names and then exits with `exit`; returns the report and log lines.
    async fn run_with(
        failing: &[&str],
        exit: i32,
        quarantined: &[&str],
    ) -> (JobReport, Vec<String>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ws = std::env::temp_dir().join(format!("pave-quarantine-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(&ws).unwrap();
        let mut cases = String::from(r#"<testcase classname="c" name="ok"/>"#);
        for name in failing {
            cases.push_str(&format!(
                r#"<testcase classname="c" name="{name}"><failure message="x"/></testcase>"#
            ));
        }
        std::fs::write(
            ws.join("r.xml"),
            format!("<testsuite name=\"s\">{cases}</testsuite>"),
        )
        .unwrap();
        let yaml = format!(
            "service: {{ name: s, owner: t }}\npipeline:\n  jobs:\n    test:\n      steps:\n        - {{ run: 'exit {exit}', junit: r.xml }}\n        - {{ run: 'true' }}\n"
        );
        let spec = pave_model::parse_pave_yaml("pave.yaml", &yaml)
            .unwrap()
            .pipeline
            .unwrap();
        let planned = plan::plan(&spec).unwrap();
        let ctx = JobContext {
            quarantined: quarantined.iter().map(|s| s.to_string()).collect(),
            ..JobContext::default()
        };
        let mut lines: Vec<(String, String, LogLine)> = Vec::new();
        let report = run_job(
            &planned.jobs[0],
            &ctx,
            &ws,
            &RunEnv::default(),
            &mut lines,
            &CancelSignal::new(),
        )
        .await;
        let _ = std::fs::remove_dir_all(&ws);
        (report, lines.into_iter().map(|(_, _, l)| l.text).collect())
    }

    #[tokio::test]
    async fn only_quarantined_failures_do_not_fail_the_step() {
        let (report, log) = run_with(&["a", "b"], 1, &["c::a", "c::b"]).await;
        assert_eq!(report.outcome, Outcome::Success, "{log:?}");
        assert_eq!(report.steps[0].status, StepStatus::Success);
        assert_eq!(
            report.steps[1].status,
            StepStatus::Success,
            "later steps run"
        );
        assert!(
            log.iter()
                .any(|l| l == "quarantined tests failed: c::a, c::b — not failing the job"),
            "{log:?}"
        );
        // Still recorded as failed.
        assert_eq!(
            report
                .tests
                .iter()
                .filter(|t| t.status.is_failure())
                .count(),
            2
        );

        // One failure not quarantined: the step fails.
        let (report, _) = run_with(&["a", "b"], 1, &["c::a"]).await;
        assert_eq!(report.outcome, Outcome::Failure);
        // No failing case at all (the command failed for another reason).
        let (report, _) = run_with(&[], 1, &["c::a"]).await;
        assert_eq!(report.outcome, Outcome::Failure);
        // Nothing quarantined.
        let (report, _) = run_with(&["a"], 1, &[]).await;
        assert_eq!(report.outcome, Outcome::Failure);
        // A passing step stays as it is.
        let (report, _) = run_with(&["a"], 0, &["c::a"]).await;
        assert_eq!(report.outcome, Outcome::Success);
        assert!(report.steps[0].message.is_none());
    }
}
