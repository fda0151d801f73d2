//! One tick of one deployment: look at what is true now, take at most one
//! decision, and commit it (state, log lines, events) in one transaction.

use std::time::Duration;

use pave_model::deploy_spec::{AnalysisSpec, CanaryStep, CheckSpec, OnInconclusive, Strategy};
use pave_store::{DeploymentRow, NewEvent, NewLogEntry, StoreError, Transition};
use serde_json::{Value, json};

use super::metrics_input;
use super::phase::{Command, Phase, Stage, now_ms};
use super::routes::{all_to, instances_of, retire, split, stable_and_new};
use super::{ControllerConfig, DeploymentSpec, preview_host_for};
use crate::analysis::{Observation, Outcome, Verdict, evaluate};
use crate::runtime::{HealthSpec, InstanceId, InstanceSpec, unpack_artifact};

type Result<T> = std::result::Result<T, StoreError>;

/// Blue-green preview analysis length (the spec names checks, not a window).
const PREVIEW_ANALYSIS: Duration = Duration::from_secs(20);

/// Everything one tick needs about its deployment.
struct Ctx<'a> {
    cfg: &'a ControllerConfig,
    d: &'a DeploymentRow,
    spec: DeploymentSpec,
    now: u64,
}

impl Ctx<'_> {
    fn service(&self) -> &str {
        &self.spec.service
    }

    fn strategy(&self) -> Strategy {
        if self.d.kind == "rollback" {
            // A rollback restores a known-good release as fast as possible.
            return Strategy::Rolling;
        }
        self.spec.deploy.strategy_for(&self.d.env)
    }

    fn instance_id(&self, index: u32) -> InstanceId {
        InstanceId::new(self.service(), &self.d.env, &self.d.id, index)
    }

    fn new_ids(&self) -> Vec<InstanceId> {
        (0..self.spec.deploy.replicas)
            .map(|i| self.instance_id(i))
            .collect()
    }

    /// Commits `status` + `phase` with log lines and events.
    async fn save(
        &self,
        status: &str,
        ph: &Phase,
        log: Vec<NewLogEntry>,
        events: Vec<NewEvent>,
        stable: bool,
        reason: Option<String>,
    ) -> Result<()> {
        let t = Transition {
            status: status.to_string(),
            phase: ph.to_json(),
            reason,
            log,
            events,
            make_stable: stable,
        };
        self.cfg
            .store
            .transition_deployment(&self.d.id, self.d.version, t)
            .await?;
        Ok(())
    }

    /// A CDEvents service event for this deployment.
    fn event(&self, kind: &str, extra: Value) -> NewEvent {
        let mut payload = json!({
            "deployment": self.d.id,
            "service": self.service(),
            "environment": self.d.env,
            "artifact": { "digest": self.d.digest, "name": self.d.artifact },
            "sha": self.d.sha,
            "run_id": self.d.run_id,
            "number": self.d.number,
            "strategy": self.d.strategy,
        });
        if let (Some(obj), Value::Object(more)) = (payload.as_object_mut(), extra) {
            obj.extend(more);
        }
        NewEvent {
            event_type: format!("dev.cdevents.service.{kind}.0.2.0"),
            subject: format!("service:{}/{}", self.d.env, self.service()),
            actor: self.d.actor.clone(),
            payload,
        }
    }

    /// Starts replica `index` of the new release unless it already runs.
    async fn ensure_instance(&self, index: u32) -> std::result::Result<(), String> {
        let id = self.instance_id(index);
        if self.cfg.runtime.get(&id).is_some() {
            return Ok(());
        }
        let workdir = self.cfg.releases_dir.join(&self.d.id);
        if !workdir.is_dir() {
            let blob = (self.cfg.blobs)(&self.d.digest).ok_or_else(|| {
                format!("artifact {} is not stored on this server", self.d.digest)
            })?;
            let tmp = self.cfg.releases_dir.join(format!(".{}.tmp", self.d.id));
            let _ = std::fs::remove_dir_all(&tmp);
            unpack_artifact(&blob, &tmp)
                .map_err(|e| format!("could not unpack {}: {e}", self.d.digest))?;
            std::fs::rename(&tmp, &workdir)
                .map_err(|e| format!("could not place the release: {e}"))?;
        }
        let mut env_vars = self.spec.deploy.env.clone();
        if let Some(key) = &self.cfg.secret_key
            && let Ok(secrets) = self.cfg.store.secret_values(key, &self.d.service_key).await
        {
            env_vars.extend(secrets);
        }
        let h = &self.spec.deploy.health;
        let spec = InstanceSpec {
            service: self.service().to_string(),
            env: self.d.env.clone(),
            release: self.d.id.clone(),
            index,
            command: self.spec.deploy.run.clone(),
            workdir,
            env_vars,
            health: HealthSpec {
                path: h.path.clone(),
                interval: h.interval,
                timeout: h.timeout,
            },
        };
        self.cfg
            .runtime
            .start(spec)
            .await
            .map(|_| ())
            .map_err(|e| format!("could not start instance {index}: {e}"))
    }

    fn healthy(&self, index: u32) -> bool {
        self.cfg.runtime.is_healthy(&self.instance_id(index))
    }

    fn past_deadline(&self, ph: &Phase) -> bool {
        self.now.saturating_sub(ph.since_ms) > self.spec.deploy.health.deadline.as_millis() as u64
    }
}

/// Advances `d` by at most one decision.
pub(super) async fn drive(cfg: &ControllerConfig, d: DeploymentRow) -> Result<()> {
    let mut ph = Phase::from_json(&d.phase);
    let spec: DeploymentSpec = match serde_json::from_value(d.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            let t = Transition {
                status: "failed".into(),
                phase: d.phase.clone(),
                reason: Some(format!("stored deployment spec is unreadable: {e}")),
                ..Transition::default()
            };
            cfg.store.transition_deployment(&d.id, d.version, t).await?;
            return Ok(());
        }
    };
    let cx = Ctx {
        cfg,
        d: &d,
        spec,
        now: now_ms(),
    };

    if let Some(cmd) = ph.command.take() {
        return command(&cx, ph, cmd).await;
    }
    if d.status == "paused" {
        return Ok(());
    }
    match ph.stage {
        Stage::Start => start(&cx, ph).await,
        Stage::WaitHealthy => wait_healthy(&cx, ph).await,
        Stage::Rolling => rolling(&cx, ph).await,
        Stage::Preview => preview(&cx, ph).await,
        Stage::Steps => steps(&cx, ph).await,
        Stage::Finish => finish(&cx, ph).await,
    }
}

async fn command(cx: &Ctx<'_>, mut ph: Phase, cmd: Command) -> Result<()> {
    match cmd {
        Command::Abort { actor } => {
            let reason = format!("aborted by {actor}");
            rollback(cx, ph, "aborted", reason, Value::Null).await
        }
        Command::Pause { actor } => {
            let log = vec![NewLogEntry::new(
                "decision",
                format!("paused by {actor}"),
                Value::Null,
            )];
            cx.save(
                "paused",
                &ph,
                log,
                vec![],
                false,
                Some(format!("paused by {actor}")),
            )
            .await
        }
        Command::Resume { actor } => {
            // Resuming ends a `pause: {}` step; an interrupted analysis starts its window again.
            if ph.stage == Stage::Steps
                && matches!(
                    canary_steps(cx).get(ph.step),
                    Some(CanaryStep::Pause { duration: None })
                )
            {
                ph.skip_step = true;
            }
            ph.analysis_since_ms = None;
            let log = vec![NewLogEntry::new(
                "decision",
                format!("resumed by {actor}"),
                Value::Null,
            )];
            cx.save("progressing", &ph, log, vec![], false, None).await
        }
        Command::PromoteStep { actor } => {
            ph.skip_step = true;
            let log = vec![NewLogEntry::new(
                "decision",
                format!("step {} promoted by {actor}", ph.step),
                Value::Null,
            )];
            cx.save("progressing", &ph, log, vec![], false, None).await
        }
    }
}

fn canary_steps(cx: &Ctx<'_>) -> Vec<CanaryStep> {
    match cx.strategy() {
        Strategy::Canary(c) => c.steps,
        _ => Vec::new(),
    }
}

async fn start(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    let stable = cx
        .cfg
        .store
        .env_releases(Some(&cx.d.service_key))
        .await?
        .into_iter()
        .find(|r| r.env == cx.d.env && r.deployment_id != cx.d.id);
    ph.stable_id = stable.map(|r| r.deployment_id);
    ph.stable_replicas = ph.stable_id.as_deref().map_or(0, |id| {
        instances_of(cx.cfg, cx.service(), &cx.d.env, id).len() as u32
    });
    ph.since_ms = cx.now;
    let strategy = cx.strategy();
    let to_start: Vec<u32> = match strategy {
        Strategy::Rolling => vec![0],
        _ => (0..cx.spec.deploy.replicas).collect(),
    };
    for i in to_start {
        if let Err(why) = cx.ensure_instance(i).await {
            return fail(cx, ph, why).await;
        }
    }
    ph.stage = match strategy {
        Strategy::Rolling => Stage::Rolling,
        _ => Stage::WaitHealthy,
    };
    let msg = match &ph.stable_id {
        Some(s) => format!(
            "starting {} instance(s) of the new release beside stable {s}",
            cx.spec.deploy.replicas
        ),
        None => format!(
            "starting {} instance(s); no stable release in {} yet",
            cx.spec.deploy.replicas, cx.d.env
        ),
    };
    cx.save(
        "progressing",
        &ph,
        vec![NewLogEntry::new("step", msg, Value::Null)],
        vec![],
        false,
        None,
    )
    .await
}

async fn wait_healthy(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    let n = cx.spec.deploy.replicas;
    for i in 0..n {
        if let Err(why) = cx.ensure_instance(i).await {
            return fail(cx, ph, why).await;
        }
    }
    if !(0..n).all(|i| cx.healthy(i)) {
        if cx.past_deadline(&ph) {
            let why = format!(
                "the new release did not become healthy on {} within {}s",
                cx.spec.deploy.health.path,
                cx.spec.deploy.health.deadline.as_secs()
            );
            return fail(cx, ph, why).await;
        }
        return Ok(());
    }
    ph.since_ms = cx.now;
    let healthy = NewLogEntry::new("step", format!("{n} new instance(s) healthy"), Value::Null);
    if ph.stable_id.is_none() {
        // First release in this environment: nothing to compare against.
        ph.stage = Stage::Finish;
        ph.weight = 100;
        all_to(cx.cfg, cx.service(), &cx.d.env, &cx.d.id);
        return cx
            .save("progressing", &ph, vec![healthy], vec![], false, None)
            .await;
    }
    match cx.strategy() {
        Strategy::BlueGreen(bg) => {
            let host = preview_host_for(cx.service(), &cx.d.env);
            let inst = instances_of(cx.cfg, cx.service(), &cx.d.env, &cx.d.id)
                .iter()
                .map(|i| i.addr)
                .collect();
            split(
                cx.cfg,
                &host,
                cx.service(),
                &cx.d.env,
                None,
                Some((&cx.d.id, inst)),
                100,
            );
            ph.stage = Stage::Preview;
            ph.analysis_since_ms = bg.analysis.as_ref().map(|_| cx.now);
            let note = NewLogEntry::new(
                "step",
                format!("preview up at http://{host}/"),
                json!({ "host": host }),
            );
            cx.save("progressing", &ph, vec![healthy, note], vec![], false, None)
                .await
        }
        _ => {
            ph.stage = Stage::Steps;
            ph.step = 0;
            cx.save("progressing", &ph, vec![healthy], vec![], false, None)
                .await
        }
    }
}

async fn rolling(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    let n = cx.spec.deploy.replicas;
    let i = ph.step as u32;
    if i >= n {
        ph.stage = Stage::Finish;
        ph.weight = 100;
        return cx
            .save("progressing", &ph, vec![], vec![], false, None)
            .await;
    }
    if let Err(why) = cx.ensure_instance(i).await {
        return fail(cx, ph, why).await;
    }
    if !cx.healthy(i) {
        if cx.past_deadline(&ph) {
            let why = format!(
                "instance {i} of the new release did not become healthy on {} within {}s",
                cx.spec.deploy.health.path,
                cx.spec.deploy.health.deadline.as_secs()
            );
            return fail(cx, ph, why).await;
        }
        return Ok(());
    }
    // Instance i is healthy: give the new release its share, retire old instance i.
    let weight = (100 * (i + 1)).div_ceil(n).min(100);
    let stable = ph.stable_id.clone();
    let old = stable
        .as_deref()
        .map(|s| instances_of(cx.cfg, cx.service(), &cx.d.env, s))
        .unwrap_or_default();
    let retiring: Vec<InstanceId> = old
        .iter()
        .filter(|o| o.spec.index == i || (i + 1 == n))
        .map(|o| o.id.clone())
        .collect();
    let remaining: Vec<_> = old
        .iter()
        .filter(|o| !retiring.contains(&o.id))
        .map(|o| o.addr)
        .collect();
    let new_addrs: Vec<_> = instances_of(cx.cfg, cx.service(), &cx.d.env, &cx.d.id)
        .iter()
        .map(|x| x.addr)
        .collect();
    let host = super::host_for(cx.service(), &cx.d.env);
    split(
        cx.cfg,
        &host,
        cx.service(),
        &cx.d.env,
        stable.as_deref().map(|s| (s, remaining)),
        Some((&cx.d.id, new_addrs)),
        weight,
    );
    retire(cx.cfg, retiring, cx.cfg.drain);
    ph.step += 1;
    ph.weight = weight;
    ph.since_ms = cx.now;
    ph.first_traffic_ms.get_or_insert(cx.now);
    let log = vec![NewLogEntry::new(
        "step",
        format!("instance {i} replaced; new release at {weight}%"),
        json!({ "weight": weight }),
    )];
    cx.save("progressing", &ph, log, vec![], false, None).await
}

async fn preview(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    let Strategy::BlueGreen(bg) = cx.strategy() else {
        ph.stage = Stage::Finish;
        return cx
            .save("progressing", &ph, vec![], vec![], false, None)
            .await;
    };
    if let (Some(analysis), Some(since), false) = (&bg.analysis, ph.analysis_since_ms, ph.skip_step)
    {
        let complete = ph.skip_step || cx.now >= since + PREVIEW_ANALYSIS.as_millis() as u64;
        let verdict = judge(cx, &ph, analysis, None, since, complete).await;
        match decide(cx, &mut ph, analysis, &verdict, complete).await? {
            Decision::Wait => return Ok(()),
            Decision::Done => return Ok(()),
            Decision::Next => {}
        }
    }
    // Switch all traffic at once; keep the old release warm for an instant rollback.
    cx.cfg
        .routes
        .remove(&preview_host_for(cx.service(), &cx.d.env));
    all_to(cx.cfg, cx.service(), &cx.d.env, &cx.d.id);
    ph.weight = 100;
    ph.first_traffic_ms.get_or_insert(cx.now);
    ph.keep_previous_until_ms = Some(cx.now + bg.keep_old_for.as_millis() as u64);
    ph.stage = Stage::Finish;
    ph.skip_step = false;
    let log = vec![NewLogEntry::new(
        "step",
        format!(
            "switched 100% of traffic to the new release; previous release kept warm for {}s",
            bg.keep_old_for.as_secs()
        ),
        json!({ "weight": 100 }),
    )];
    cx.save("progressing", &ph, log, vec![], false, None).await
}

async fn steps(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    let Strategy::Canary(canary) = cx.strategy() else {
        ph.stage = Stage::Finish;
        return cx
            .save("progressing", &ph, vec![], vec![], false, None)
            .await;
    };
    // A crashed instance of either release is restarted by the runtime; one that vanished is started again.
    for i in 0..cx.spec.deploy.replicas {
        if let Err(why) = cx.ensure_instance(i).await {
            return fail(cx, ph, why).await;
        }
    }
    if canary.background_analysis && ph.weight > 0 && ph.weight < 100 {
        let since = ph.first_traffic_ms.unwrap_or(cx.now);
        let verdict = judge(cx, &ph, &canary.analysis, None, since, false).await;
        if verdict.outcome == Outcome::Fail {
            let reason = verdict.reason();
            return rollback(
                cx,
                ph,
                "rolled_back",
                reason,
                serde_json::to_value(&verdict).unwrap_or_default(),
            )
            .await;
        }
    }
    let Some(step) = canary.steps.get(ph.step).cloned() else {
        ph.stage = Stage::Finish;
        return cx
            .save("progressing", &ph, vec![], vec![], false, None)
            .await;
    };
    match step {
        CanaryStep::Weight { weight } => {
            stable_and_new(
                cx.cfg,
                cx.service(),
                &cx.d.env,
                ph.stable_id.as_deref(),
                &cx.d.id,
                weight,
            );
            ph.weight = weight;
            ph.first_traffic_ms.get_or_insert(cx.now);
            next_step(&mut ph, cx.now);
            let log = vec![NewLogEntry::new(
                "step",
                format!("canary at {weight}% of traffic"),
                json!({ "weight": weight }),
            )];
            cx.save("progressing", &ph, log, vec![], false, None).await
        }
        CanaryStep::Pause { duration: Some(d) } => {
            if ph.skip_step || cx.now >= ph.since_ms + d.as_millis() as u64 {
                next_step(&mut ph, cx.now);
                let log = vec![NewLogEntry::new(
                    "step",
                    format!("pause of {}s over", d.as_secs()),
                    Value::Null,
                )];
                return cx.save("progressing", &ph, log, vec![], false, None).await;
            }
            Ok(())
        }
        CanaryStep::Pause { duration: None } => {
            if ph.skip_step {
                next_step(&mut ph, cx.now);
                return cx
                    .save("progressing", &ph, vec![], vec![], false, None)
                    .await;
            }
            let log = vec![NewLogEntry::new(
                "decision",
                "paused until `pave resume` or `pave promote --step`",
                Value::Null,
            )];
            cx.save(
                "paused",
                &ph,
                log,
                vec![],
                false,
                Some("waiting at a `pause: {}` step".into()),
            )
            .await
        }
        CanaryStep::Analysis { duration, checks } => {
            if ph.skip_step {
                // `pave promote --step`: a human vouches for this step.
                next_step(&mut ph, cx.now);
                let log = vec![NewLogEntry::new(
                    "decision",
                    "analysis step skipped by `promote --step`",
                    Value::Null,
                )];
                return cx.save("progressing", &ph, log, vec![], false, None).await;
            }
            let Some(since) = ph.analysis_since_ms else {
                ph.analysis_since_ms = Some(cx.now);
                let log = vec![NewLogEntry::new(
                    "step",
                    format!("analysing the canary for {}s", duration.as_secs()),
                    Value::Null,
                )];
                return cx.save("progressing", &ph, log, vec![], false, None).await;
            };
            let complete = ph.skip_step || cx.now >= since + duration.as_millis() as u64;
            let verdict = judge(
                cx,
                &ph,
                &canary.analysis,
                checks.as_deref(),
                since,
                complete,
            )
            .await;
            match decide(cx, &mut ph, &canary.analysis, &verdict, complete).await? {
                Decision::Wait | Decision::Done => Ok(()),
                Decision::Next => {
                    next_step(&mut ph, cx.now);
                    let log = vec![NewLogEntry::new(
                        "analysis",
                        verdict.reason(),
                        serde_json::to_value(&verdict).unwrap_or_default(),
                    )];
                    cx.save("progressing", &ph, log, vec![], false, None).await
                }
            }
        }
    }
}

fn next_step(ph: &mut Phase, now: u64) {
    ph.step += 1;
    ph.since_ms = now;
    ph.skip_step = false;
    ph.analysis_since_ms = None;
}

/// What an analysis verdict leads to.
enum Decision {
    /// Keep measuring.
    Wait,
    /// Go on to the next step.
    Next,
    /// The deployment was rolled back or paused (already saved).
    Done,
}

async fn judge(
    cx: &Ctx<'_>,
    ph: &Phase,
    analysis: &AnalysisSpec,
    checks: Option<&[CheckSpec]>,
    since: u64,
    complete: bool,
) -> Verdict {
    let config = metrics_input::config(analysis, checks);
    let canary = metrics_input::samples(&cx.cfg.metrics, &cx.d.id, since, cx.now, config.interval);
    let baseline = ph
        .stable_id
        .as_deref()
        .map(|s| metrics_input::samples(&cx.cfg.metrics, s, since, cx.now, config.interval))
        .unwrap_or_default();
    evaluate(
        &config,
        &Observation {
            canary: &canary,
            baseline: &baseline,
            window_complete: complete,
        },
    )
    .await
}

async fn decide(
    cx: &Ctx<'_>,
    ph: &mut Phase,
    analysis: &AnalysisSpec,
    verdict: &Verdict,
    complete: bool,
) -> Result<Decision> {
    let data = serde_json::to_value(verdict).unwrap_or_default();
    match verdict.outcome {
        Outcome::Fail => {
            rollback(cx, ph.clone(), "rolled_back", verdict.reason(), data).await?;
            Ok(Decision::Done)
        }
        Outcome::Pass => Ok(Decision::Next),
        Outcome::Running if !complete => {
            // One sample line per second of analysis, for the deployment page's chart.
            let s = cx.now / 1000;
            if s > ph.last_logged_s {
                ph.last_logged_s = s;
                let log = vec![NewLogEntry::new("analysis", verdict.reason(), data)];
                cx.save("progressing", ph, log, vec![], false, None).await?;
                return Ok(Decision::Done);
            }
            Ok(Decision::Wait)
        }
        _ => match analysis.on_inconclusive {
            OnInconclusive::Continue => Ok(Decision::Next),
            OnInconclusive::Rollback => {
                rollback(cx, ph.clone(), "rolled_back", verdict.reason(), data).await?;
                Ok(Decision::Done)
            }
            OnInconclusive::Pause => {
                ph.analysis_since_ms = None;
                let log = vec![NewLogEntry::new(
                    "decision",
                    format!(
                        "{}; paused for a human: `pave resume` to analyse again, `pave promote --step` to go on, `pave abort` to roll back",
                        verdict.reason()
                    ),
                    data,
                )];
                cx.save(
                    "paused",
                    ph,
                    log,
                    vec![],
                    false,
                    Some("analysis inconclusive".into()),
                )
                .await?;
                Ok(Decision::Done)
            }
        },
    }
}

async fn finish(cx: &Ctx<'_>, mut ph: Phase) -> Result<()> {
    all_to(cx.cfg, cx.service(), &cx.d.env, &cx.d.id);
    if ph.keep_previous_until_ms.is_none()
        && let Some(stable) = ph.stable_id.as_deref()
    {
        let old = instances_of(cx.cfg, cx.service(), &cx.d.env, stable)
            .into_iter()
            .map(|i| i.id)
            .collect();
        retire(cx.cfg, old, cx.cfg.drain);
    }
    ph.weight = 100;
    let kind = match (cx.d.kind.as_str(), &ph.stable_id) {
        ("rollback", _) => "rolledback",
        (_, Some(_)) => "upgraded",
        (_, None) => "deployed",
    };
    let previous = ph.stable_id.clone();
    let event = cx.event(kind, json!({ "previous_deployment": previous }));
    let log = vec![NewLogEntry::new(
        "decision",
        format!("release {} is now stable in {}", cx.d.digest, cx.d.env),
        json!({ "weight": 100 }),
    )];
    cx.save(
        "succeeded",
        &ph,
        log,
        vec![event],
        true,
        Some("all traffic on the new release".into()),
    )
    .await
}

/// The new release failed before taking traffic: stop it; the stable release keeps serving.
async fn fail(cx: &Ctx<'_>, ph: Phase, why: String) -> Result<()> {
    restore_stable(cx, &ph);
    retire(cx.cfg, cx.new_ids(), Duration::ZERO);
    let log = vec![NewLogEntry::new(
        "decision",
        format!("failed: {why}"),
        Value::Null,
    )];
    cx.save("failed", &ph, log, vec![], false, Some(why)).await
}

/// All traffic back on the stable release at once, then stop the new one.
async fn rollback(
    cx: &Ctx<'_>,
    mut ph: Phase,
    status: &str,
    reason: String,
    data: Value,
) -> Result<()> {
    restore_stable(cx, &ph);
    retire(cx.cfg, cx.new_ids(), cx.cfg.drain);
    let detect_ms = ph.first_traffic_ms.map(|t| cx.now.saturating_sub(t));
    ph.weight = 0;
    let log = vec![NewLogEntry::new(
        "decision",
        format!(
            "{}: {reason}",
            if status == "aborted" {
                "aborted"
            } else {
                "rolled back"
            }
        ),
        json!({ "verdict": data, "ms_since_first_traffic": detect_ms }),
    )];
    let event = cx.event(
        "rolledback",
        json!({ "reason": reason, "automatic": status == "rolled_back" }),
    );
    cx.save(status, &ph, log, vec![event], false, Some(reason))
        .await
}

fn restore_stable(cx: &Ctx<'_>, ph: &Phase) {
    cx.cfg
        .routes
        .remove(&preview_host_for(cx.service(), &cx.d.env));
    match ph.stable_id.as_deref() {
        Some(stable) => all_to(cx.cfg, cx.service(), &cx.d.env, stable),
        None => cx
            .cfg
            .routes
            .remove(&super::host_for(cx.service(), &cx.d.env)),
    }
}

/// Starts the missing instances of a stable release (after a reboot, or
/// when they were killed while no server ran): the environment keeps
/// serving what `env_releases` says is live.
pub(super) async fn heal(cfg: &ControllerConfig, d: DeploymentRow) -> Result<()> {
    let Ok(spec) = serde_json::from_value::<DeploymentSpec>(d.spec.clone()) else {
        return Ok(());
    };
    let cx = Ctx {
        cfg,
        d: &d,
        spec,
        now: now_ms(),
    };
    let mut started = 0;
    for i in 0..cx.spec.deploy.replicas {
        if cfg.runtime.get(&cx.instance_id(i)).is_none() {
            match cx.ensure_instance(i).await {
                Ok(()) => started += 1,
                Err(why) => {
                    tracing::warn!(deployment = %d.id, error = %why, "could not restart a stable instance")
                }
            }
        }
    }
    if started > 0 {
        all_to(cfg, cx.service(), &d.env, &d.id);
        let msg = format!("restarted {started} missing instance(s) of the stable release");
        cfg.store
            .append_deployment_log(&d.id, &[NewLogEntry::new("instance", msg, Value::Null)])
            .await?;
    }
    Ok(())
}
