//! Planning (matrix expansion, DAG, order) and the outcome rules: which jobs
//! and steps run, and the run's outcome, in every combination.

use pave_model::parse_pave_yaml;
use pave_model::pipeline_spec::{BoolOrExpr, PipelineSpec, StepSpec};
use pave_pipeline::expr::{Contexts, NeedContext, PaveContext, Status};
use pave_pipeline::plan::{
    Decision, Outcome, PlanError, PlannedJob, RunPlan, aggregate_outcomes, job_conclusion,
    job_outcome_from_steps, job_should_run, plan, run_outcome, step_should_run,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use Outcome::{Cancelled, Failure, Skipped, Success};

/// Shared with the model tests (one GitHub workflow fixture for both).
const GHA: &str = include_str!("../../model/tests/fixtures/gha_workflow_pave.yaml");

fn pipeline(body: &str) -> PipelineSpec {
    let doc = format!("service: {{ name: s, owner: t }}\npipeline:\n{body}");
    parse_pave_yaml("pave.yaml", &doc)
        .unwrap_or_else(|e| panic!("{e}"))
        .pipeline
        .unwrap()
}

fn keys(p: &RunPlan) -> Vec<&str> {
    p.jobs.iter().map(|j| j.key.as_str()).collect()
}

// -------------------------------------------------------------- planning

#[test]
fn github_workflow_plans() {
    let spec = parse_pave_yaml("pave.yaml", GHA).unwrap().pipeline.unwrap();
    let p = plan(&spec).unwrap();
    assert_eq!(
        keys(&p),
        [
            "lint",
            "test (os=ubuntu-latest, python=3.11)",
            "test (os=ubuntu-latest, python=3.12)",
            "test (os=macos-latest, python=3.12)",
            "test (os=ubuntu-latest, python=3.13, experimental=true)",
            "build",
            "deploy-notice",
        ]
    );
    let t = &p.jobs[1];
    assert_eq!(t.job_id, "test");
    assert_eq!(t.name, "Test 3.11 on ubuntu-latest");
    assert_eq!(t.needs, ["lint"]);
    assert_eq!(t.depends_on, ["lint"]);
    assert_eq!(t.matrix["os"], json!("ubuntu-latest"));
    assert_eq!(t.fail_fast_group, None, "fail-fast: false");
    assert_eq!(t.max_parallel, Some(2));
    // continue-on-error: ${{ matrix.experimental == true }} resolved per instance.
    assert_eq!(t.spec.continue_on_error, BoolOrExpr::Bool(false));
    assert_eq!(p.jobs[4].spec.continue_on_error, BoolOrExpr::Bool(true));

    let build = p.get("build").unwrap();
    assert_eq!(build.depends_on.len(), 4, "every test instance");
    assert_eq!(build.ancestors, ["lint", "test"]);
    let notice = p.get("deploy-notice").unwrap();
    assert_eq!(notice.depends_on, ["build"]);
    assert_eq!(notice.ancestors, ["lint", "test", "build"]);
    assert_eq!(notice.name, "deploy-notice");

    // Stored in the database and shipped to agents.
    let back: RunPlan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn order_is_topological_and_keeps_file_order_among_ready_jobs() {
    let spec = pipeline(
        "  jobs:
    deploy: { needs: [build, docs], steps: [ { run: d } ] }
    build: { needs: test, steps: [ { run: b } ] }
    docs: { steps: [ { run: o } ] }
    test: { steps: [ { run: t } ] }
",
    );
    let p = plan(&spec).unwrap();
    assert_eq!(keys(&p), ["docs", "test", "build", "deploy"]);
    let deploy = p.get("deploy").unwrap();
    assert_eq!(deploy.depends_on, ["docs", "build"]);
    assert_eq!(deploy.ancestors, ["docs", "test", "build"]);
}

#[test]
fn matrix_instances_get_keys_names_and_fail_fast_groups() {
    let spec = pipeline(
        "  jobs:
    test:
      name: Tests
      strategy:
        max-parallel: 1
        matrix:
          py: ['3.11', 3.12]
          os: [linux]
          include: [ { os: linux, py: '3.11', extra: { a: 1 } } ]
      steps:
        - run: t
          continue-on-error: ${{ matrix.py == 3.12 }}
    after: { needs: test, steps: [ { run: a } ] }
",
    );
    let p = plan(&spec).unwrap();
    assert_eq!(
        keys(&p),
        [
            "test (py=3.11, os=linux, extra={\"a\":1})",
            "test (py=3.12, os=linux)",
            "after"
        ]
    );
    assert_eq!(p.jobs[1].name, "Tests (py=3.12, os=linux)");
    assert_eq!(p.jobs[0].fail_fast_group.as_deref(), Some("test"));
    assert_eq!(p.jobs[0].max_parallel, Some(1));
    assert!(!p.jobs[0].spec.steps[0].continue_on_error.is_true());
    assert!(p.jobs[1].spec.steps[0].continue_on_error.is_true());
    assert_eq!(
        p.fail_fast_siblings("test (py=3.12, os=linux)"),
        ["test (py=3.11, os=linux, extra={\"a\":1})"]
    );
    assert!(p.fail_fast_siblings("after").is_empty());
}

fn raw(v: Value) -> PipelineSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn plan_errors() {
    let cyc = raw(json!({"jobs": {
        "a": {"needs": "b", "steps": [{"run": "x"}]},
        "b": {"needs": ["c"], "steps": [{"run": "x"}]},
        "c": {"needs": ["a"], "steps": [{"run": "x"}]},
        "d": {"steps": [{"run": "x"}]},
    }}));
    let e = plan(&cyc).unwrap_err();
    assert_eq!(
        e,
        PlanError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(e.to_string(), "`needs` forms a cycle: a -> b -> c -> a");

    let unknown = raw(json!({"jobs": {"a": {"needs": "zz", "steps": [{"run": "x"}]}}}));
    assert_eq!(
        plan(&unknown).unwrap_err().to_string(),
        "job `a` needs `zz`, which is not a job in this pipeline"
    );
    assert_eq!(
        plan(&raw(json!({"jobs": {}}))).unwrap_err(),
        PlanError::NoJobs
    );
    let empty_axis =
        raw(json!({"jobs": {"a": {"strategy": {"matrix": {"x": []}}, "steps": [{"run": "x"}]}}}));
    assert!(matches!(plan(&empty_axis), Err(PlanError::Matrix { .. })));
}

// ------------------------------------------------------- job outcome rules

/// What each job does when it runs.
type Script<'a> = &'a [(&'a str, Outcome)];

/// Runs the scheduler's decision loop over a plan: each job instance, in
/// plan order, runs (with its scripted outcome), is skipped, or fails on its
/// `if:`. Returns every instance's outcome and the run's outcome.
fn simulate(
    spec: &PipelineSpec,
    script: Script<'_>,
    cancelled: bool,
) -> (Vec<(String, Outcome)>, Outcome) {
    let p = plan(spec).unwrap();
    let mut done: Vec<(String, Outcome)> = Vec::new();
    let mut with_jobs: Vec<(PlannedJob, Outcome)> = Vec::new();
    for job in &p.jobs {
        let results = p.conclusions_by_job(&done);
        let needs: BTreeMap<String, NeedContext> = job
            .needs
            .iter()
            .map(|n| {
                let result = results
                    .iter()
                    .find(|(id, _)| id == n)
                    .map_or(Skipped, |(_, o)| *o);
                (
                    n.clone(),
                    NeedContext {
                        result,
                        outputs: BTreeMap::new(),
                    },
                )
            })
            .collect();
        let ctx = Contexts::for_job(
            PaveContext::default(),
            job.matrix.clone(),
            needs,
            BTreeMap::new(),
        )
        .to_value();
        let outcome = match job_should_run(job, &results, &ctx, cancelled) {
            Decision::Run if cancelled => Cancelled,
            Decision::Run => script
                .iter()
                .find(|(k, _)| *k == job.key)
                .map_or(Success, |(_, o)| *o),
            Decision::Skip(_) => Skipped,
            Decision::Fail(_) => Failure,
        };
        done.push((job.key.clone(), outcome));
        with_jobs.push((job.clone(), outcome));
    }
    (done, run_outcome(&with_jobs))
}

/// a -> b -> c with the given `if:` for b and c and continue-on-error for a.
fn chain(a_coe: bool, b_if: &str, c_if: &str) -> PipelineSpec {
    let cond = |c: &str| if c.is_empty() { Value::Null } else { json!(c) };
    raw(json!({"jobs": {
        "a": {"continue-on-error": a_coe, "steps": [{"run": "a"}]},
        "b": {"needs": "a", "if": cond(b_if), "steps": [{"run": "b"}]},
        "c": {"needs": "b", "if": cond(c_if), "steps": [{"run": "c"}]},
    }}))
}

#[test]
fn job_outcome_table() {
    struct Case {
        what: &'static str,
        a_coe: bool,
        b_if: &'static str,
        c_if: &'static str,
        script: &'static [(&'static str, Outcome)],
        cancelled: bool,
        want: [Outcome; 3],
        run: Outcome,
    }
    let cases = [
        Case {
            what: "all succeed",
            a_coe: false,
            b_if: "",
            c_if: "",
            script: &[],
            cancelled: false,
            want: [Success, Success, Success],
            run: Success,
        },
        Case {
            what: "a fails: dependents skipped",
            a_coe: false,
            b_if: "",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Skipped, Skipped],
            run: Failure,
        },
        Case {
            what: "b fails: c skipped",
            a_coe: false,
            b_if: "",
            c_if: "",
            script: &[("b", Failure)],
            cancelled: false,
            want: [Success, Failure, Skipped],
            run: Failure,
        },
        Case {
            what: "a fails, b always(): b runs, c (default) skipped",
            a_coe: false,
            b_if: "always()",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Success, Skipped],
            run: Failure,
        },
        Case {
            what: "a fails, b failure(): b runs",
            a_coe: false,
            b_if: "failure()",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Success, Skipped],
            run: Failure,
        },
        Case {
            what: "a fails, c failure() sees the ancestor's failure through skipped b",
            a_coe: false,
            b_if: "",
            c_if: "failure()",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Skipped, Success],
            run: Failure,
        },
        Case {
            what: "a fails, c always()",
            a_coe: false,
            b_if: "",
            c_if: "always()",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Skipped, Success],
            run: Failure,
        },
        Case {
            what: "a succeeds, b failure(): skipped, c skipped",
            a_coe: false,
            b_if: "failure()",
            c_if: "",
            script: &[],
            cancelled: false,
            want: [Success, Skipped, Skipped],
            run: Success,
        },
        Case {
            what: "a fails with continue-on-error: run succeeds",
            a_coe: true,
            b_if: "",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Success, Success],
            run: Success,
        },
        Case {
            what: "a fails with continue-on-error, b failure(): skipped",
            a_coe: true,
            b_if: "failure()",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Skipped, Skipped],
            run: Success,
        },
        Case {
            what: "b if false: c skipped too",
            a_coe: false,
            b_if: "false",
            c_if: "",
            script: &[],
            cancelled: false,
            want: [Success, Skipped, Skipped],
            run: Success,
        },
        Case {
            what: "b if false, c always()",
            a_coe: false,
            b_if: "false",
            c_if: "always()",
            script: &[],
            cancelled: false,
            want: [Success, Skipped, Success],
            run: Success,
        },
        Case {
            what: "needs.a.result without a status function keeps the implicit success()",
            a_coe: false,
            b_if: "needs.a.result == 'failure'",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Skipped, Skipped],
            run: Failure,
        },
        Case {
            what: "always() && needs.a.result == 'failure'",
            a_coe: false,
            b_if: "always() && needs.a.result == 'failure'",
            c_if: "",
            script: &[("a", Failure)],
            cancelled: false,
            want: [Failure, Success, Skipped],
            run: Failure,
        },
        Case {
            what: "b fails, c failure() && !cancelled()",
            a_coe: false,
            b_if: "",
            c_if: "failure() && !cancelled()",
            script: &[("b", Failure)],
            cancelled: false,
            want: [Success, Failure, Success],
            run: Failure,
        },
        Case {
            what: "a and c fail: failure wins",
            a_coe: false,
            b_if: "always()",
            c_if: "always()",
            script: &[("a", Failure), ("b", Cancelled)],
            cancelled: false,
            want: [Failure, Cancelled, Success],
            run: Failure,
        },
        Case {
            what: "b cancelled: c skipped, run cancelled",
            a_coe: false,
            b_if: "",
            c_if: "",
            script: &[("b", Cancelled)],
            cancelled: false,
            want: [Success, Cancelled, Skipped],
            run: Cancelled,
        },
        Case {
            what: "run cancelled: only always() runs",
            a_coe: false,
            b_if: "always()",
            c_if: "",
            script: &[],
            cancelled: true,
            want: [Skipped, Cancelled, Skipped],
            run: Cancelled,
        },
        Case {
            what: "run cancelled: cancelled() runs",
            a_coe: false,
            b_if: "",
            c_if: "cancelled()",
            script: &[],
            cancelled: true,
            want: [Skipped, Skipped, Cancelled],
            run: Cancelled,
        },
        Case {
            what: "every job skipped",
            a_coe: false,
            b_if: "",
            c_if: "",
            script: &[],
            cancelled: true,
            want: [Skipped, Skipped, Skipped],
            run: Skipped,
        },
        Case {
            what: "an if that cannot be evaluated fails the job",
            a_coe: false,
            b_if: "fromJSON('{')",
            c_if: "",
            script: &[],
            cancelled: false,
            want: [Success, Failure, Skipped],
            run: Failure,
        },
    ];
    for c in &cases {
        let (outcomes, run) = simulate(&chain(c.a_coe, c.b_if, c.c_if), c.script, c.cancelled);
        let got: Vec<Outcome> = outcomes.iter().map(|(_, o)| *o).collect();
        assert_eq!(got, c.want, "{}", c.what);
        assert_eq!(run, c.run, "{}: run outcome", c.what);
    }
}

#[test]
fn matrix_failures_propagate_through_aggregation() {
    let spec = raw(json!({"jobs": {
        "test": {"strategy": {"matrix": {"n": [1, 2]}}, "steps": [{"run": "t"}]},
        "build": {"needs": "test", "steps": [{"run": "b"}]},
        "report": {"needs": "test", "if": "always()", "steps": [{"run": "r"}]},
    }}));
    let (outcomes, run) = simulate(&spec, &[("test (n=2)", Failure)], false);
    assert_eq!(
        outcomes,
        [
            ("test (n=1)".to_string(), Success),
            ("test (n=2)".to_string(), Failure),
            ("build".to_string(), Skipped),
            ("report".to_string(), Success),
        ]
    );
    assert_eq!(run, Failure);

    let p = plan(&spec).unwrap();
    let c = p.conclusions_by_job(&[
        ("test (n=1)".into(), Cancelled),
        ("test (n=2)".into(), Failure),
    ]);
    assert_eq!(c, [("test".to_string(), Failure)]);
    assert_eq!(aggregate_outcomes([Success, Skipped]), Success);
    assert_eq!(aggregate_outcomes([Skipped, Cancelled, Success]), Cancelled);
    assert_eq!(aggregate_outcomes([]), Skipped);
    let mut coe = p.jobs[0].clone();
    coe.spec.continue_on_error = BoolOrExpr::Bool(true);
    assert_eq!(job_conclusion(&coe, Failure), Success);
    assert_eq!(job_conclusion(&coe, Cancelled), Cancelled);
    assert_eq!(run_outcome(&[]), Success);
}

#[test]
fn skip_reasons_say_why() {
    let spec = chain(false, "", "");
    let p = plan(&spec).unwrap();
    let ctx = json!({});
    let b = p.get("b").unwrap();
    let r = |results: &[(&str, Outcome)], cancelled: bool| {
        let results: Vec<(String, Outcome)> =
            results.iter().map(|(k, o)| (k.to_string(), *o)).collect();
        job_should_run(b, &results, &ctx, cancelled)
    };
    assert_eq!(r(&[("a", Success)], false), Decision::Run);
    assert_eq!(
        r(&[("a", Failure)], false),
        Decision::Skip("needed job `a` failed".into())
    );
    assert_eq!(
        r(&[("a", Skipped)], false),
        Decision::Skip("needed job `a` was skipped".into())
    );
    assert_eq!(
        r(&[], false),
        Decision::Skip("needed job `a` was skipped".into())
    );
    assert_eq!(
        r(&[("a", Success)], true),
        Decision::Skip("the run was cancelled".into())
    );
    let mut b2 = b.clone();
    b2.spec.condition = Some("${{ 1 == 2 }}".into());
    assert_eq!(
        job_should_run(&b2, &[("a".into(), Success)], &ctx, false),
        Decision::Skip("`if: ${{ 1 == 2 }}` is false".into())
    );
}

// ------------------------------------------------------ step outcome rules

fn step(cond: Option<&str>, coe: bool) -> StepSpec {
    StepSpec {
        run: Some("x".into()),
        condition: cond.map(str::to_string),
        continue_on_error: BoolOrExpr::Bool(coe),
        ..StepSpec::default()
    }
}

/// Runs steps in order with scripted outcomes for those that run.
fn run_steps(steps: &[(StepSpec, Outcome)], cancelled: bool) -> (Vec<Outcome>, Outcome) {
    let ctx = json!({"env": {"X": "1"}});
    let mut done: Vec<(&StepSpec, Outcome)> = Vec::new();
    for (s, scripted) in steps {
        let o = match step_should_run(s, &done, &ctx, cancelled) {
            Decision::Run => *scripted,
            Decision::Skip(_) => Skipped,
            Decision::Fail(_) => Failure,
        };
        done.push((s, o));
    }
    let job = job_outcome_from_steps(&done);
    (done.iter().map(|(_, o)| *o).collect(), job)
}

#[test]
fn step_outcome_table() {
    type Case = (
        &'static str,
        Vec<(StepSpec, Outcome)>,
        bool,
        Vec<Outcome>,
        Outcome,
    );
    let cases: Vec<Case> = vec![
        (
            "all succeed",
            vec![(step(None, false), Success), (step(None, false), Success)],
            false,
            vec![Success, Success],
            Success,
        ),
        (
            "a failing step skips later steps except failure()/always()",
            vec![
                (step(None, false), Failure),
                (step(None, false), Success),
                (step(Some("failure()"), false), Success),
                (step(Some("always()"), false), Success),
                (step(Some("success()"), false), Success),
                (step(Some("env.X == 1"), false), Success),
            ],
            false,
            vec![Failure, Skipped, Success, Success, Skipped, Skipped],
            Failure,
        ),
        (
            "continue-on-error: later steps run, job succeeds",
            vec![
                (step(None, true), Failure),
                (step(None, false), Success),
                (step(Some("failure()"), false), Success),
            ],
            false,
            vec![Failure, Success, Skipped],
            Success,
        ),
        (
            "a failure() step that fails keeps the job failed",
            vec![
                (step(None, false), Failure),
                (step(Some("failure()"), false), Failure),
            ],
            false,
            vec![Failure, Failure],
            Failure,
        ),
        (
            "a later failure after continue-on-error fails the job",
            vec![(step(None, true), Failure), (step(None, false), Failure)],
            false,
            vec![Failure, Failure],
            Failure,
        ),
        (
            "if false: skipped, job succeeds",
            vec![(step(Some("false"), false), Success)],
            false,
            vec![Skipped],
            Success,
        ),
        (
            "cancelled: only always()/cancelled() steps run",
            vec![
                (step(None, false), Success),
                (step(Some("always()"), false), Success),
                (step(Some("cancelled()"), false), Cancelled),
            ],
            true,
            vec![Skipped, Success, Cancelled],
            Cancelled,
        ),
        (
            "a cancelled step: later default steps skipped",
            vec![
                (step(None, false), Cancelled),
                (step(None, false), Success),
                (step(Some("always()"), false), Success),
            ],
            false,
            vec![Cancelled, Skipped, Success],
            Cancelled,
        ),
        (
            "bad if fails the step",
            vec![(step(Some("fromJSON('x')"), false), Success)],
            false,
            vec![Failure],
            Failure,
        ),
    ];
    for (what, steps, cancelled, want, job) in cases {
        let (got, got_job) = run_steps(&steps, cancelled);
        assert_eq!(got, want, "{what}");
        assert_eq!(got_job, job, "{what}: job outcome");
    }
}

// ------------------------------------------------------------- contexts

#[test]
fn contexts_build_the_evaluation_object() {
    let mut needs = BTreeMap::new();
    needs.insert(
        "build".to_string(),
        NeedContext {
            result: Success,
            outputs: BTreeMap::from([("version".to_string(), "1.2".to_string())]),
        },
    );
    let pave = PaveContext {
        sha: "abc".into(),
        git_ref: "refs/heads/main".into(),
        run_id: "7".into(),
        service: "hello".into(),
    };
    let matrix = serde_json::from_value(json!({"os": "linux"})).unwrap();
    let mut c = Contexts::for_job(
        pave,
        matrix,
        needs,
        BTreeMap::from([("TOKEN".to_string(), "t".to_string())]),
    );
    c.push_env(
        &BTreeMap::from([(
            "A".to_string(),
            "${{ matrix.os }}-${{ pave.sha }}".to_string(),
        )]),
        Status::OK,
    )
    .unwrap();
    c.push_env(
        &BTreeMap::from([("B".to_string(), "${{ env.A }}!".to_string())]),
        Status::OK,
    )
    .unwrap();
    let v = c.to_value();
    assert_eq!(v["env"], json!({"A": "linux-abc", "B": "linux-abc!"}));
    assert_eq!(v["pave"]["ref"], json!("refs/heads/main"));
    assert_eq!(
        v["needs"]["build"],
        json!({"result": "success", "outputs": {"version": "1.2"}})
    );
    assert_eq!(v["job"]["status"], json!("success"));
    assert_eq!(v["secrets"]["TOKEN"], json!("t"));
    assert!(!v["runner"]["os"].as_str().unwrap().is_empty());
    let err = c
        .push_env(
            &BTreeMap::from([("C".to_string(), "${{ fromJSON('x') }}".to_string())]),
            Status::OK,
        )
        .unwrap_err();
    assert!(err.message.starts_with("env `C`:"), "{err}");
}
