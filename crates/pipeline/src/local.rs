//! Running a whole plan on this machine (`pave run`): a DAG scheduler that
//! starts each job instance as soon as everything it depends on has
//! finished and its `if:` allows, up to a number of jobs at once (and a
//! matrix's `max-parallel`), each in a clean copy of the source tree (see
//! [`crate::workspace`]). `fail-fast` cancels the other instances of a
//! failed matrix; cancelling the run's [`CancelSignal`] (Ctrl-C) stops every
//! running job and skips the rest, and the run ends `cancelled`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pave_model::pipeline_spec::PipelineSpec;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::exec::{CancelSignal, LogLine};
use crate::expr::{Contexts, NeedContext, PaveContext, Status};
use crate::plan::{self, Decision, Outcome, PlannedJob, RunPlan};
use crate::runner::{JobContext, JobReport, JobSink, RunEnv, StepReport, run_job};
use crate::workspace;

/// How to run a plan locally.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The source tree copied into each job's workspace.
    pub source: PathBuf,
    /// Most jobs running at once (at least 1).
    pub parallelism: usize,
    /// The `pave` context (sha, ref, run id, service).
    pub pave: PaveContext,
    /// Secrets by name, for `secrets.NAME`; masked in all output.
    pub secrets: BTreeMap<String, String>,
    /// Stores and limits for the jobs.
    pub run_env: RunEnv,
    /// Keep job workspaces after the run (for debugging) instead of deleting them.
    pub keep_workspaces: bool,
}

impl LocalOptions {
    /// Options for `source` with one job per available core and no stores.
    pub fn new(source: impl Into<PathBuf>) -> LocalOptions {
        LocalOptions {
            source: source.into(),
            parallelism: default_parallelism(),
            pave: PaveContext::default(),
            secrets: BTreeMap::new(),
            run_env: RunEnv::default(),
            keep_workspaces: false,
        }
    }
}

/// The number of available cores (1 when unknown).
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Progress of a local run, delivered live and in order per job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// A job instance got its workspace and starts its steps.
    JobStarted { job: String, workspace: PathBuf },
    /// A step starts.
    StepStarted { job: String, step: String },
    /// One masked log line of a step.
    Line {
        job: String,
        step: String,
        line: LogLine,
    },
    /// A step concluded (or was skipped).
    StepFinished { job: String, step: StepReport },
    /// A job instance concluded, ran or not (skipped, cancelled).
    JobFinished { report: JobReport },
}

/// Receives [`RunEvent`]s.
pub trait RunSink {
    /// Called for each event, on the scheduler's task.
    fn event(&mut self, event: RunEvent);
}

impl<F: FnMut(RunEvent)> RunSink for F {
    fn event(&mut self, event: RunEvent) {
        self(event)
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// Every job instance of the plan, in plan order.
    pub jobs: Vec<JobReport>,
}

/// Keeps the jobs named in `ids` (job ids) and everything they need,
/// transitively; an unknown id is an error naming the jobs there are.
pub fn select_jobs(plan: &RunPlan, ids: &[String]) -> Result<RunPlan, String> {
    if ids.is_empty() {
        return Ok(plan.clone());
    }
    let mut keep: Vec<&str> = Vec::new();
    for id in ids {
        let Some(job) = plan.jobs.iter().find(|j| &j.job_id == id) else {
            let mut known: Vec<&str> = plan.jobs.iter().map(|j| j.job_id.as_str()).collect();
            known.dedup();
            return Err(format!(
                "no job `{id}` in the pipeline (jobs: {})",
                known.join(", ")
            ));
        };
        keep.push(&job.job_id);
        keep.extend(job.ancestors.iter().map(String::as_str));
    }
    Ok(RunPlan {
        jobs: plan
            .jobs
            .iter()
            .filter(|j| keep.contains(&j.job_id.as_str()))
            .cloned()
            .collect(),
    })
}

/// Forwards a job's progress to the scheduler.
struct ChannelSink(mpsc::UnboundedSender<RunEvent>);

impl JobSink for ChannelSink {
    fn line(&mut self, job: &str, step: &str, line: &LogLine) {
        let _ = self.0.send(RunEvent::Line {
            job: job.to_string(),
            step: step.to_string(),
            line: line.clone(),
        });
    }
    fn step_started(&mut self, job: &str, step: &str) {
        let _ = self.0.send(RunEvent::StepStarted {
            job: job.to_string(),
            step: step.to_string(),
        });
    }
    fn step_finished(&mut self, job: &str, step: &StepReport) {
        let _ = self.0.send(RunEvent::StepFinished {
            job: job.to_string(),
            step: step.clone(),
        });
    }
}

enum State {
    Pending,
    Running(CancelSignal),
    Done,
}

struct Scheduler<'a, S: RunSink> {
    spec: &'a PipelineSpec,
    plan: &'a RunPlan,
    opts: &'a LocalOptions,
    sink: &'a mut S,
    files: Arc<Vec<PathBuf>>,
    run_dir: PathBuf,
    states: Vec<State>,
    reports: Vec<Option<JobReport>>,
    tasks: JoinSet<(usize, JobReport)>,
    task_ids: HashMap<tokio::task::Id, usize>,
    tx: mpsc::UnboundedSender<RunEvent>,
    rx: mpsc::UnboundedReceiver<RunEvent>,
    cancelled: bool,
}

/// Runs every job of `plan` (a plan of `spec`) on this machine.
pub async fn run_local(
    spec: &PipelineSpec,
    plan: &RunPlan,
    opts: &LocalOptions,
    sink: &mut impl RunSink,
    cancel: &CancelSignal,
) -> RunReport {
    let started = Instant::now();
    let source = opts.source.clone();
    let files = tokio::task::spawn_blocking(move || workspace::source_files(&source)).await;
    let files = match files {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(e)) => Err(format!(
            "cannot list the source files in {}: {e}",
            opts.source.display()
        )),
        Err(e) => Err(format!("cannot list the source files: {e}")),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        spec,
        plan,
        opts,
        sink,
        files: Arc::new(files.as_ref().cloned().unwrap_or_default()),
        run_dir: crate::exec::unique_temp_path("pave-run"),
        states: plan.jobs.iter().map(|_| State::Pending).collect(),
        reports: plan.jobs.iter().map(|_| None).collect(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        tx,
        rx,
        cancelled: false,
    };
    if let Err(msg) = files {
        for i in 0..plan.jobs.len() {
            s.conclude(i, JobReport::not_run(&plan.jobs[i], Outcome::Failure, &msg));
        }
    }
    s.run(cancel).await;
    if !opts.keep_workspaces {
        workspace::remove(&s.run_dir);
    }
    let jobs: Vec<JobReport> = s.reports.into_iter().flatten().collect();
    let pairs: Vec<(PlannedJob, Outcome)> = plan
        .jobs
        .iter()
        .zip(&jobs)
        .map(|(j, r)| (j.clone(), r.outcome))
        .collect();
    let outcome = if s.cancelled {
        Outcome::Cancelled
    } else {
        plan::run_outcome(&pairs)
    };
    RunReport {
        run_id: opts.pave.run_id.clone(),
        sha: opts.pave.sha.clone(),
        git_ref: opts.pave.git_ref.clone(),
        outcome,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        jobs,
    }
}

impl<S: RunSink> Scheduler<'_, S> {
    async fn run(&mut self, cancel: &CancelSignal) {
        loop {
            self.start_ready();
            if self.states.iter().all(|s| matches!(s, State::Done)) {
                break;
            }
            tokio::select! {
                Some(ev) = self.rx.recv() => self.sink.event(ev),
                Some(done) = self.tasks.join_next() => {
                    self.forward_pending_events();
                    match done {
                        Ok((i, report)) => {
                            self.task_ids.retain(|_, j| *j != i);
                            self.finished(i, report);
                        }
                        Err(e) => {
                            // A panicking job task: its id says which job it ran.
                            let msg = format!("the job's task failed: {e}");
                            if let Some(i) = self.task_ids.remove(&e.id()) {
                                let report = JobReport::not_run(&self.plan.jobs[i], Outcome::Failure, msg);
                                self.finished(i, report);
                            }
                        }
                    }
                }
                _ = cancel.cancelled(), if !self.cancelled => self.cancel_all(),
            }
        }
        self.forward_pending_events();
    }

    fn forward_pending_events(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.sink.event(ev);
        }
    }

    fn cancel_all(&mut self) {
        self.cancelled = true;
        for st in &self.states {
            if let State::Running(c) = st {
                c.cancel();
            }
        }
        for i in 0..self.plan.jobs.len() {
            if matches!(self.states[i], State::Pending) {
                let r = JobReport::not_run(
                    &self.plan.jobs[i],
                    Outcome::Skipped,
                    "the run was cancelled",
                );
                self.conclude(i, r);
            }
        }
    }

    fn finished(&mut self, i: usize, report: JobReport) {
        let failed = report.outcome == Outcome::Failure;
        self.conclude(i, report);
        if !failed {
            return;
        }
        let key = self.plan.jobs[i].key.clone();
        for sibling in self.plan.fail_fast_siblings(&key) {
            let Some(j) = self.plan.jobs.iter().position(|p| p.key == sibling) else {
                continue;
            };
            match &self.states[j] {
                State::Running(c) => c.cancel(),
                State::Pending => {
                    let r = JobReport::not_run(
                        &self.plan.jobs[j],
                        Outcome::Cancelled,
                        format!("cancelled by fail-fast: `{key}` failed"),
                    );
                    self.conclude(j, r);
                }
                State::Done => {}
            }
        }
    }

    fn conclude(&mut self, i: usize, report: JobReport) {
        self.states[i] = State::Done;
        self.sink.event(RunEvent::JobFinished {
            report: report.clone(),
        });
        self.reports[i] = Some(report);
    }

    fn is_done(&self, key: &str) -> bool {
        self.plan
            .jobs
            .iter()
            .position(|j| j.key == key)
            .is_none_or(|i| matches!(self.states[i], State::Done))
    }

    fn finished_outcomes(&self) -> Vec<(String, Outcome)> {
        self.reports
            .iter()
            .flatten()
            .map(|r| (r.key.clone(), r.outcome))
            .collect()
    }

    /// `needs.<id>` for a job's direct needs: conclusion and merged outputs.
    fn needs_context(
        &self,
        job: &PlannedJob,
        results: &[(String, Outcome)],
    ) -> BTreeMap<String, NeedContext> {
        let mut needs = BTreeMap::new();
        for need in &job.needs {
            let result = results
                .iter()
                .find(|(id, _)| id == need)
                .map_or(Outcome::Skipped, |(_, o)| *o);
            let mut outputs = BTreeMap::new();
            for r in self.reports.iter().flatten().filter(|r| &r.job_id == need) {
                outputs.extend(r.outputs.clone());
            }
            needs.insert(need.clone(), NeedContext { result, outputs });
        }
        needs
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.states.len()).filter(|i| matches!(self.states[*i], State::Running(_)))
    }

    fn start_ready(&mut self) {
        for i in 0..self.plan.jobs.len() {
            if self.cancelled || !matches!(self.states[i], State::Pending) {
                continue;
            }
            let job = &self.plan.jobs[i];
            if !job.depends_on.iter().all(|k| self.is_done(k)) {
                continue;
            }
            let outcomes = self.finished_outcomes();
            let results = self.plan.conclusions_by_job(&outcomes);
            let needs = self.needs_context(job, &results);
            let mut ctx = Contexts::for_job(
                self.opts.pave.clone(),
                job.matrix.clone(),
                needs.clone(),
                self.opts.secrets.clone(),
            );
            let _ = ctx.push_env(&self.spec.env, Status::OK);
            match plan::job_should_run(job, &results, &ctx.to_value(), false) {
                Decision::Skip(reason) => {
                    let r = JobReport::not_run(job, Outcome::Skipped, reason);
                    self.conclude(i, r);
                }
                Decision::Fail(reason) => {
                    let r = JobReport::not_run(job, Outcome::Failure, reason);
                    self.conclude(i, r);
                }
                Decision::Run => {
                    let running = self.running().count();
                    if running >= self.opts.parallelism.max(1) {
                        continue;
                    }
                    if let Some(max) = job.max_parallel {
                        let same = self
                            .running()
                            .filter(|j| self.plan.jobs[*j].job_id == job.job_id)
                            .count();
                        if same >= max.max(1) as usize {
                            continue;
                        }
                    }
                    self.spawn(i, needs);
                }
            }
        }
    }

    fn spawn(&mut self, i: usize, needs: BTreeMap<String, NeedContext>) {
        let job = self.plan.jobs[i].clone();
        let ctx = JobContext {
            pave: self.opts.pave.clone(),
            env: self.spec.env.clone(),
            defaults: self.spec.defaults.clone(),
            needs,
            secrets: self.opts.secrets.clone(),
            quarantined: Default::default(),
        };
        let cancel = CancelSignal::new();
        self.states[i] = State::Running(cancel.clone());
        let env = self.opts.run_env.clone();
        let files = Arc::clone(&self.files);
        let source = self.opts.source.clone();
        let run_dir = self.run_dir.clone();
        let keep = self.opts.keep_workspaces;
        let tx = self.tx.clone();
        let handle = self.tasks.spawn(async move {
            let key = job.key.clone();
            let prepared =
                tokio::task::spawn_blocking(move || prepare(&source, &files, &run_dir, &key, i))
                    .await;
            let ws = match prepared {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    let msg = format!("cannot prepare the job's workspace: {e}");
                    return (i, JobReport::not_run(&job, Outcome::Failure, msg));
                }
                Err(e) => {
                    let msg = format!("cannot prepare the job's workspace: {e}");
                    return (i, JobReport::not_run(&job, Outcome::Failure, msg));
                }
            };
            let _ = tx.send(RunEvent::JobStarted {
                job: job.key.clone(),
                workspace: ws.clone(),
            });
            let mut sink = ChannelSink(tx);
            let report = run_job(&job, &ctx, &ws, &env, &mut sink, &cancel).await;
            if !keep {
                let _ = tokio::task::spawn_blocking(move || workspace::remove(&ws)).await;
            }
            (i, report)
        });
        self.task_ids.insert(handle.id(), i);
    }
}

fn prepare(
    source: &Path,
    files: &[PathBuf],
    run_dir: &Path,
    key: &str,
    index: usize,
) -> std::io::Result<PathBuf> {
    let dir = workspace::fresh_dir(run_dir, key, index)?;
    workspace::copy_files(source, files, &dir)?;
    Ok(dir)
}
