//! Running jobs for real (bash child processes in temp workspaces): step and
//! job outcomes, outputs, env, matrix, secrets, timeouts, the step cache,
//! JUnit reports and artifacts; and whole plans through the local scheduler.

use pave_model::parse_pave_yaml;
use pave_model::pipeline_spec::PipelineSpec;
use pave_pipeline::artifacts::ArtifactStore;
use pave_pipeline::cache::CacheStore;
use pave_pipeline::exec::{CancelSignal, LogLine, LogStream};
use pave_pipeline::expr::PaveContext;
use pave_pipeline::local::{LocalOptions, RunEvent, run_local};
use pave_pipeline::plan::{Outcome, PlannedJob, RunPlan, plan};
use pave_pipeline::runner::{CacheUse, JobContext, JobReport, RunEnv, StepStatus, run_job};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tmpdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("pave-runner-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pipeline(body: &str) -> (PipelineSpec, RunPlan) {
    let doc = format!("service: {{ name: s, owner: t }}\npipeline:\n{body}");
    let spec = parse_pave_yaml("pave.yaml", &doc)
        .unwrap_or_else(|e| panic!("{e}"))
        .pipeline
        .unwrap();
    let p = plan(&spec).unwrap();
    (spec, p)
}

fn ctx_for(spec: &PipelineSpec) -> JobContext {
    JobContext {
        pave: PaveContext {
            sha: "abc123".into(),
            git_ref: "refs/heads/main".into(),
            run_id: "run-1".into(),
            service: "s".into(),
        },
        env: spec.env.clone(),
        defaults: spec.defaults.clone(),
        ..JobContext::default()
    }
}

type Lines = Vec<(String, String, LogLine)>;

async fn run(job: &PlannedJob, ctx: &JobContext, ws: &Path, env: &RunEnv) -> (JobReport, Lines) {
    let mut lines: Lines = Vec::new();
    let report = run_job(job, ctx, ws, env, &mut lines, &CancelSignal::new()).await;
    (report, lines)
}

/// Runs the first job of a one-pipeline body in a fresh workspace.
async fn run_body(body: &str) -> (JobReport, Lines) {
    let (spec, p) = pipeline(body);
    let ws = tmpdir("ws");
    run(&p.jobs[0], &ctx_for(&spec), &ws, &RunEnv::default()).await
}

fn texts(lines: &Lines, step: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|(_, s, _)| s == step)
        .map(|(_, _, l)| l.text.clone())
        .collect()
}

fn statuses(r: &JobReport) -> Vec<StepStatus> {
    r.steps.iter().map(|s| s.status).collect()
}

#[tokio::test]
async fn failing_step_fails_job_and_skips_later_steps_unless_always_or_failure() {
    let (r, lines) = run_body(
        r#"  jobs:
    j:
      steps:
        - { name: one, run: echo one }
        - { name: boom, run: "echo about to fail; exit 3" }
        - { name: never, run: echo never }
        - { name: cleanup, if: always(), run: echo cleanup }
        - { name: on-failure, if: failure(), run: echo failed-before }
        - { name: on-success, if: success(), run: echo ok }
"#,
    )
    .await;
    use StepStatus::*;
    assert_eq!(
        statuses(&r),
        [Success, Failure, Skipped, Success, Success, Skipped]
    );
    assert_eq!(r.outcome, Outcome::Failure);
    assert_eq!(r.steps[1].exit_code, Some(3));
    assert!(
        r.steps[2]
            .message
            .as_deref()
            .unwrap()
            .contains("an earlier step failed: `boom`")
    );
    assert_eq!(texts(&lines, "one"), ["one"]);
    assert!(texts(&lines, "boom").contains(&"about to fail".to_string()));
    assert!(texts(&lines, "never").is_empty());
    assert_eq!(texts(&lines, "cleanup"), ["cleanup"]);
    assert_eq!(texts(&lines, "on-failure"), ["failed-before"]);
}

#[tokio::test]
async fn continue_on_error_keeps_the_job_green() {
    let (r, _) = run_body(
        r#"  jobs:
    j:
      steps:
        - { name: flaky, run: exit 1, continue-on-error: true }
        - { name: after, run: echo after }
"#,
    )
    .await;
    assert_eq!(statuses(&r), [StepStatus::Failure, StepStatus::Success]);
    assert_eq!(r.steps[0].conclusion, Outcome::Success);
    assert_eq!(r.outcome, Outcome::Success);
}

#[tokio::test]
async fn outputs_env_file_builtins_and_env_layers() {
    let (r, lines) = run_body(
        r#"  env: { A: pipe, B: pipe, GREETING: "hi ${{ pave.sha }}" }
  jobs:
    j:
      env: { B: job, C: job }
      outputs: { version: "${{ steps.meta.outputs.version }}", missing: "x${{ steps.meta.outputs.nope }}" }
      steps:
        - id: meta
          name: meta
          run: |
            echo "version=1.2.3" >> "$PAVE_OUTPUT"
            echo "FROM_FILE=set-by-step" >> "$PAVE_ENV"
        - name: use
          env: { C: step }
          run: |
            echo "v=${{ steps.meta.outputs.version }} outcome=${{ steps.meta.outcome }}"
            echo "layers=$A/$B/$C ctx=${{ env.B }}"
            echo "file=$FROM_FILE greeting=$GREETING"
            echo "ci=$CI pave=$PAVE sha=$PAVE_SHA ref=$PAVE_REF run=$PAVE_RUN_ID job=$PAVE_JOB"
            test "$PAVE_WORKSPACE" = "$PWD" && echo ws-ok
"#,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Success, "{lines:?}");
    assert_eq!(
        texts(&lines, "use"),
        [
            "v=1.2.3 outcome=success",
            "layers=pipe/job/step ctx=job",
            "file=set-by-step greeting=hi abc123",
            "ci=true pave=true sha=abc123 ref=refs/heads/main run=run-1 job=j",
            "ws-ok",
        ]
    );
    assert_eq!(r.outputs["version"], "1.2.3");
    assert_eq!(r.outputs["missing"], "x");
}

#[tokio::test]
async fn working_directory_and_defaults() {
    let (spec, p) = pipeline(
        r#"  defaults: { run: { working-directory: sub } }
  jobs:
    j:
      steps:
        - { name: where, run: "basename $PWD" }
        - { name: here, working-directory: ., run: "ls" }
        - { name: escape, working-directory: ../.., run: "pwd" }
"#,
    );
    let ws = tmpdir("wd");
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(ws.join("marker"), "").unwrap();
    let (r, lines) = run(&p.jobs[0], &ctx_for(&spec), &ws, &RunEnv::default()).await;
    assert_eq!(texts(&lines, "where"), ["sub"]);
    assert!(texts(&lines, "here").contains(&"marker".to_string()));
    assert_eq!(r.steps[2].status, StepStatus::Failure);
    assert!(r.steps[2].message.as_deref().unwrap().contains("inside"));
}

#[tokio::test]
async fn matrix_values_reach_run() {
    let (spec, p) = pipeline(
        r#"  jobs:
    t:
      strategy: { matrix: { py: ["3.11", "3.12"] } }
      steps:
        - { name: show, run: "echo py=${{ matrix.py }}" }
"#,
    );
    let ws = tmpdir("matrix");
    let (r, lines) = run(&p.jobs[1], &ctx_for(&spec), &ws, &RunEnv::default()).await;
    assert_eq!(r.key, "t (py=3.12)");
    assert_eq!(texts(&lines, "show"), ["py=3.12"]);
}

#[tokio::test]
async fn secrets_are_masked_and_only_injected_when_asked() {
    let (spec, p) = pipeline(
        r#"  jobs:
    j:
      outputs: { leak: "${{ steps.s.outputs.t }}" }
      steps:
        - id: s
          name: with
          env: { TOKEN: "${{ secrets.TOKEN }}" }
          run: |
            echo "token=$TOKEN"
            echo "again ${{ secrets.TOKEN }}" >&2
            echo "t=$TOKEN" >> "$PAVE_OUTPUT"
        - { name: without, run: 'echo "[${TOKEN:-unset}]"' }
"#,
    );
    let mut ctx = ctx_for(&spec);
    ctx.secrets.insert("TOKEN".into(), "s3cr3t-value".into());
    let ws = tmpdir("secret");
    let (r, lines) = run(&p.jobs[0], &ctx, &ws, &RunEnv::default()).await;
    assert_eq!(r.outcome, Outcome::Success);
    for (_, _, l) in &lines {
        assert!(!l.text.contains("s3cr3t"), "leaked: {l:?}");
    }
    assert_eq!(texts(&lines, "with"), ["token=***", "again ***"]);
    let stderr: Vec<_> = lines
        .iter()
        .filter(|(_, _, l)| l.stream == LogStream::Stderr)
        .collect();
    assert_eq!(stderr.len(), 1);
    assert_eq!(texts(&lines, "without"), ["[unset]"]);
    assert_eq!(r.outputs["leak"], "***");
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("s3cr3t"));
}

#[tokio::test]
async fn job_timeout_kills_the_step_and_fails_the_job() {
    let (spec, p) = pipeline(
        r#"  jobs:
    j:
      steps:
        - { name: slow, run: "echo start; sleep 30 & wait" }
        - { name: next, run: echo next }
        - { name: always, if: always(), run: echo always }
"#,
    );
    let ws = tmpdir("timeout");
    let env = RunEnv {
        max_job_duration: Some(Duration::from_millis(800)),
        kill_grace: Duration::from_millis(200),
        ..RunEnv::default()
    };
    let t = Instant::now();
    let (r, lines) = run(&p.jobs[0], &ctx_for(&spec), &ws, &env).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        statuses(&r),
        [
            StepStatus::TimedOut,
            StepStatus::Skipped,
            StepStatus::Skipped
        ]
    );
    assert_eq!(r.outcome, Outcome::Failure);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("exceeded its timeout")
    );
    assert!(
        texts(&lines, "slow")
            .iter()
            .any(|l| l.contains("timed out"))
    );
}

const CACHED: &str = r#"  jobs:
    build:
      steps:
        - id: build
          name: build
          cache: { inputs: ["src/*.txt"], outputs: [out] }
          run: |
            echo "building from $(cat src/a.txt)"
            echo run >> "$COUNTER"
            mkdir -p out && tr a-z A-Z < src/a.txt > out/result.txt
            echo "size=$(wc -c < out/result.txt | tr -d ' ')" >> "$PAVE_OUTPUT"
            echo "BUILT=yes" >> "$PAVE_ENV"
        - { name: use, run: 'echo "result=$(cat out/result.txt) size=${{ steps.build.outputs.size }} built=$BUILT"' }
"#;

#[tokio::test]
async fn cache_miss_then_hit_restores_outputs_log_and_step_outputs() {
    let (spec, p) = pipeline(CACHED);
    let cache_dir = tmpdir("cache");
    let counter = cache_dir.join("counter");
    let env = RunEnv {
        cache: Some(CacheStore::open(cache_dir.join("store")).unwrap()),
        ..RunEnv::default()
    };
    let mut ctx = ctx_for(&spec);
    ctx.env
        .insert("COUNTER".into(), counter.to_string_lossy().into());
    let fresh = |content: &str| {
        let ws = tmpdir("cachews");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(ws.join("src/a.txt"), content).unwrap();
        ws
    };

    let (r1, l1) = run(&p.jobs[0], &ctx, &fresh("hello"), &env).await;
    assert_eq!(r1.outcome, Outcome::Success, "{l1:?}");
    assert_eq!(r1.steps[0].cache, CacheUse::Miss);
    assert_eq!(r1.steps[1].cache, CacheUse::None);
    assert!(texts(&l1, "build")[0].starts_with("cache miss "));

    let (r2, l2) = run(&p.jobs[0], &ctx, &fresh("hello"), &env).await;
    assert_eq!(r2.steps[0].cache, CacheUse::Hit);
    assert_eq!(r2.steps[0].status, StepStatus::Success);
    let b = texts(&l2, "build");
    assert!(
        b[0].starts_with("cache hit ") && b[0].ends_with("restored 1 files"),
        "{b:?}"
    );
    assert!(
        b.contains(&"building from hello".to_string()),
        "log replayed: {b:?}"
    );
    assert_eq!(texts(&l2, "use"), ["result=HELLO size=5 built=yes"]);
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\n");

    // A changed input misses.
    let (r3, _) = run(&p.jobs[0], &ctx, &fresh("bye"), &env).await;
    assert_eq!(r3.steps[0].cache, CacheUse::Miss);
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\nrun\n");

    // A failed step is not saved.
    let (spec, p) = pipeline(
        r#"  jobs:
    j:
      steps:
        - { name: fails, cache: { inputs: [], outputs: [] }, run: "echo x; exit 1" }
"#,
    );
    let ws = tmpdir("cachefail");
    let (a, _) = run(&p.jobs[0], &ctx_for(&spec), &ws, &env).await;
    let (b, _) = run(&p.jobs[0], &ctx_for(&spec), &ws, &env).await;
    assert_eq!(a.steps[0].cache, CacheUse::Miss);
    assert_eq!(b.steps[0].cache, CacheUse::Miss);
    assert_eq!(b.outcome, Outcome::Failure);
}

#[tokio::test]
async fn junit_reports_are_collected_even_when_the_step_fails() {
    let (r, lines) = run_body(
        r#"  jobs:
    t:
      steps:
        - name: test
          junit: "reports/*.xml"
          run: |
            mkdir -p reports
            cat > reports/unit.xml <<'EOF'
            <testsuite name="unit" tests="3">
              <testcase classname="calc" name="adds" time="0.01"/>
              <testcase classname="calc" name="divides"><failure message="boom">trace</failure></testcase>
              <testcase classname="calc" name="later"><skipped/></testcase>
            </testsuite>
            EOF
            echo "<testsuite><testcase" > reports/broken.xml
            exit 1
"#,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failure);
    let names: Vec<_> = r.tests.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["adds", "divides", "later"]);
    let log = texts(&lines, "test");
    assert!(
        log.iter()
            .any(|l| l.contains("warning: junit: cannot read reports/broken.xml")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "junit: 3 tests, 1 failed"));
}

#[tokio::test]
async fn artifacts_are_stored_with_a_stable_digest() {
    let (spec, p) = pipeline(
        r#"  jobs:
    build:
      artifacts: [ { name: app, path: dist } ]
      steps:
        - { name: pack, run: "mkdir -p dist/bin && echo hello > dist/bin/app && chmod +x dist/bin/app" }
"#,
    );
    let store_dir = tmpdir("artifacts");
    let env = RunEnv {
        artifacts: Some(ArtifactStore::open(&store_dir).unwrap()),
        ..RunEnv::default()
    };
    let (a, _) = run(&p.jobs[0], &ctx_for(&spec), &tmpdir("art1"), &env).await;
    std::thread::sleep(Duration::from_millis(1100)); // different mtimes
    let (b, _) = run(&p.jobs[0], &ctx_for(&spec), &tmpdir("art2"), &env).await;
    assert_eq!(a.outcome, Outcome::Success);
    assert_eq!(a.artifacts.len(), 1);
    assert_eq!(a.artifacts[0].name, "app");
    assert!(a.artifacts[0].digest.starts_with("sha256:"));
    assert_eq!(a.artifacts[0].digest, b.artifacts[0].digest);

    let (spec, p) = pipeline(
        r#"  jobs:
    build:
      artifacts: [ { name: app, path: dist/app.tar.gz } ]
      steps:
        - { name: forgot, run: "true" }
"#,
    );
    let (r, lines) = run(&p.jobs[0], &ctx_for(&spec), &tmpdir("art3"), &env).await;
    assert_eq!(r.outcome, Outcome::Failure);
    let msg = r.message.unwrap();
    assert!(
        msg.contains("artifact `app`: dist/app.tar.gz does not exist"),
        "{msg}"
    );
    assert!(texts(&lines, "artifacts").contains(&msg));
}

// ------------------------------------------------------------- local runs

async fn run_plan(body: &str, source: &Path) -> (pave_pipeline::local::RunReport, Vec<RunEvent>) {
    let (spec, p) = pipeline(body);
    let mut opts = LocalOptions::new(source);
    opts.parallelism = 4;
    let mut events = Vec::new();
    let report = run_local(
        &spec,
        &p,
        &opts,
        &mut |e| events.push(e),
        &CancelSignal::new(),
    )
    .await;
    (report, events)
}

fn outcome_of(r: &pave_pipeline::local::RunReport, key: &str) -> Outcome {
    r.jobs.iter().find(|j| j.key == key).unwrap().outcome
}

#[tokio::test]
async fn local_dag_needs_outputs_skips_and_always() {
    let src = tmpdir("src");
    std::fs::write(src.join("input.txt"), "from-source").unwrap();
    let (r, events) = run_plan(
        r#"  jobs:
    build:
      outputs: { v: "${{ steps.v.outputs.v }}" }
      steps:
        - { id: v, run: 'echo "v=$(cat input.txt)" >> "$PAVE_OUTPUT"; echo scribble > input.txt' }
    test:
      needs: build
      steps:
        - { name: check, run: 'echo "got ${{ needs.build.outputs.v }} $(cat input.txt)"; exit 1' }
    deploy:
      needs: test
      steps: [ { run: echo deploy } ]
    report:
      needs: [test]
      if: always()
      steps: [ { name: report, run: 'echo "test was ${{ needs.test.result }}"' } ]
"#,
        &src,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failure);
    assert_eq!(outcome_of(&r, "build"), Outcome::Success);
    assert_eq!(outcome_of(&r, "test"), Outcome::Failure);
    assert_eq!(outcome_of(&r, "deploy"), Outcome::Skipped);
    assert_eq!(outcome_of(&r, "report"), Outcome::Success);
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Line { job, line, .. } => Some(format!("{job}: {}", line.text)),
            _ => None,
        })
        .collect();
    // Each job has a clean copy: build's scribble is not seen by test.
    assert!(
        lines.contains(&"test: got from-source from-source".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"report: test was failure".to_string()));
    assert_eq!(
        std::fs::read_to_string(src.join("input.txt")).unwrap(),
        "from-source"
    );
    let skipped = r.jobs.iter().find(|j| j.key == "deploy").unwrap();
    assert!(
        skipped
            .message
            .as_deref()
            .unwrap()
            .contains("`test` failed")
    );
}

#[tokio::test]
async fn local_fail_fast_cancels_matrix_siblings() {
    let src = tmpdir("ff");
    let (r, _) = run_plan(
        r#"  jobs:
    t:
      strategy: { matrix: { n: [1, 2, 3] }, max-parallel: 2 }
      steps:
        - run: 'if [ "${{ matrix.n }}" = 1 ]; then exit 1; fi; sleep 20'
"#,
        &src,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failure);
    assert_eq!(outcome_of(&r, "t (n=1)"), Outcome::Failure);
    assert_eq!(outcome_of(&r, "t (n=2)"), Outcome::Cancelled);
    assert_eq!(outcome_of(&r, "t (n=3)"), Outcome::Cancelled);
    assert!(r.duration_ms < 15_000, "{}", r.duration_ms);
}

#[tokio::test]
async fn local_cancel_ends_the_run_cancelled() {
    let src = tmpdir("cancel");
    let (spec, p) = pipeline(
        r#"  jobs:
    a: { steps: [ { run: sleep 30 } ] }
    b: { needs: a, steps: [ { run: echo b } ] }
"#,
    );
    let mut opts = LocalOptions::new(&src);
    opts.run_env.kill_grace = Duration::from_millis(200);
    let cancel = CancelSignal::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c2.cancel();
    });
    let t = Instant::now();
    let r = run_local(&spec, &p, &opts, &mut |_e: RunEvent| {}, &cancel).await;
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert_eq!(outcome_of(&r, "a"), Outcome::Cancelled);
    assert_eq!(outcome_of(&r, "b"), Outcome::Skipped);
}
