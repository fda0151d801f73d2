//! The `pipeline` section of `pave.yaml`: GitHub Actions' shape, located
//! errors for every class of problem, matrix expansion and expressions.

use pave_model::pipeline_expr::{
    self, ExprError, Status, eval_condition, evaluate, interpolate, parse, parse_condition,
    parse_template,
};
use pave_model::pipeline_spec::{BoolOrExpr, Matrix, PipelineSpec};
use pave_model::{SpecError, parse_file, parse_pave_yaml};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const GHA: &str = include_str!("fixtures/gha_workflow_pave.yaml");
const F: &str = "svc/pave.yaml";

/// `service:` header (2 lines) + `pipeline:` (line 3) + `body` from line 4.
fn doc(body: &str) -> String {
    format!("service: {{ name: hello, owner: payments }}\n# pipeline below\npipeline:\n{body}")
}

fn errs(body: &str) -> Vec<SpecError> {
    match parse_pave_yaml(F, &doc(body)) {
        Ok(_) => panic!("should fail:\n{body}"),
        Err(e) => e.0,
    }
}

fn one(body: &str) -> SpecError {
    let e = errs(body);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

fn at(e: &SpecError) -> (usize, usize) {
    assert_eq!(e.file, F);
    (e.line, e.column)
}

fn ok(body: &str) -> PipelineSpec {
    parse_pave_yaml(F, &doc(body))
        .unwrap_or_else(|e| panic!("{e}"))
        .pipeline
        .expect("pipeline")
}

// ------------------------------------------------------------ valid input

#[test]
fn github_workflow_with_run_steps_parses() {
    let doc = parse_pave_yaml("pave.yaml", GHA).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc.service.entity.metadata.name, "hello");
    assert!(doc.deploy.is_none());
    let p = doc.pipeline.expect("pipeline");
    assert_eq!(p.name.as_deref(), Some("CI"));
    assert_eq!(p.on.as_ref().unwrap()["push"]["branches"], json!(["main"]));
    assert_eq!(p.env["RETRIES"], "3", "numbers in env read as text");
    let d = p.defaults.as_ref().unwrap().run.as_ref().unwrap();
    assert_eq!(d.working_directory.as_deref(), Some("app"));
    let ids: Vec<&str> = p.jobs.keys().collect();
    assert_eq!(
        ids,
        ["lint", "test", "build", "deploy-notice"],
        "file order"
    );

    let lint = p.jobs.get("lint").unwrap();
    assert_eq!(lint.timeout_minutes, 10);
    let test = p.jobs.get("test").unwrap();
    assert_eq!(test.needs, ["lint"], "`needs: lint` is one job");
    assert_eq!(test.timeout_minutes, 360, "GitHub's default");
    assert_eq!(
        test.continue_on_error,
        BoolOrExpr::Expr("${{ matrix.experimental == true }}".into())
    );
    let s = test.strategy.as_ref().unwrap();
    assert!(!s.fail_fast);
    assert_eq!(s.max_parallel, Some(2));
    let m = s.matrix.as_ref().unwrap();
    let axes: Vec<&str> = m.axes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(axes, ["os", "python"]);
    assert_eq!(m.exclude.len(), 1);
    assert_eq!(test.steps.len(), 3);
    assert_eq!(test.steps[1].junit.as_deref(), Some("reports/*.xml"));
    let cache = test.steps[1].cache.as_ref().unwrap();
    assert_eq!(cache.outputs, [".venv"]);
    assert_eq!(cache.env, ["PY"]);
    assert_eq!(test.steps[2].condition.as_deref(), Some("failure()"));

    let build = p.jobs.get("build").unwrap();
    assert_eq!(build.artifacts[0].name, "app");
    assert_eq!(build.steps[1].timeout_minutes, Some(5));
    assert!(build.steps[1].continue_on_error.is_true());
    assert_eq!(build.outputs["version"], "${{ steps.ver.outputs.version }}");

    // Serializable (stored and shipped to agents) and back.
    let json = serde_json::to_string(&p).unwrap();
    let back: PipelineSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn parse_file_still_yields_the_component() {
    let parsed = parse_file("pave.yaml", GHA).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].entity.metadata.name, "hello");
    assert_eq!((parsed[0].line, parsed[0].column), (2, 1));
}

#[test]
fn design_example_parses() {
    let p = ok("  jobs:
    test:  { steps: [ { run: python3 -m unittest, junit: \"reports/*.xml\" } ] }
    build: { needs: [test], steps: [ { run: ./package.sh } ], artifacts: [ { name: app, path: dist/app.tar.gz } ] }
");
    assert_eq!(p.jobs.len(), 2);
    assert_eq!(p.jobs.get("build").unwrap().needs, ["test"]);
}

#[test]
fn templates_and_with_are_accepted() {
    let p = ok("  jobs:
    lint:
      uses: python-lint@2
      with: { paths: [src, tests], strict: true }
");
    let lint = p.jobs.get("lint").unwrap();
    assert_eq!(lint.uses.as_deref(), Some("python-lint@2"));
    assert_eq!(lint.with["strict"], json!(true));
}

// --------------------------------------------------- rejected GitHub keys

#[test]
fn step_uses_of_github_actions_is_rejected_clearly() {
    let e = errs(
        "  jobs:
    test:
      steps:
        - uses: actions/checkout@v4
        - uses: actions/setup-python@v5
          with: { python-version: '3.12' }
        - run: make test
",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(at(&e[0]), (7, 11));
    assert!(
        e[0].message.contains("is not needed")
            && e[0].message.contains("checks the repository out"),
        "{}",
        e[0].message
    );
    assert_eq!(at(&e[1]), (8, 11));
    assert_eq!(
        e[1].message,
        "in `pipeline.jobs.test.steps[1]`: `uses:` of GitHub actions is not supported in steps; write the commands as `run:`"
    );
}

#[test]
fn services_and_container_are_rejected_clearly() {
    let e = errs(
        "  jobs:
    test:
      container: python:3.12
      services:
        db: { image: postgres }
      steps: [ { run: make test } ]
",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(at(&e[0]), (6, 7));
    assert!(
        e[0].message.contains("`container:` is not supported"),
        "{}",
        e[0].message
    );
    assert_eq!(at(&e[1]), (7, 7));
    assert!(
        e[1].message.contains("`services:`) are not supported"),
        "{}",
        e[1].message
    );
}

// ------------------------------------------------ shape errors (serde path)

#[test]
fn unknown_fields_suggest_the_right_key() {
    let e = one("  jobs:
    test:
      need: lint
      steps: [ { run: x } ]
    lint: { steps: [ { run: y } ] }
");
    assert_eq!(at(&e), (6, 7));
    assert_eq!(
        e.message,
        "unknown field `need` in `pipeline.jobs.test`; did you mean `needs`?"
    );
    assert!(e.expected.unwrap().contains("timeout-minutes"));

    let e = one("  jobs:\n    test:\n      timeout_minutes: 5\n      steps: [ { run: x } ]\n");
    assert_eq!(at(&e), (6, 7));
    assert!(
        e.message.ends_with("did you mean `timeout-minutes`?"),
        "{}",
        e.message
    );

    let e = one("  jobs:\n    test:\n      steps:\n        - rn: make\n");
    assert_eq!(at(&e), (7, 11));
    assert_eq!(
        e.message,
        "unknown field `rn` in `pipeline.jobs.test.steps[0]`; did you mean `run`?"
    );

    let e = one("  jbos:\n    test: { steps: [ { run: x } ] }\n");
    assert_eq!(at(&e), (4, 3));
    assert!(e.message.contains("did you mean `jobs`?"), "{}", e.message);
}

#[test]
fn wrong_types_are_located_at_the_value() {
    let e = one("  jobs:\n    test:\n      timeout-minutes: soon\n      steps: [ { run: x } ]\n");
    assert_eq!(at(&e), (6, 24));
    assert!(
        e.message.contains("a whole number of minutes"),
        "{}",
        e.message
    );

    // Mappings are located at their key.
    let e = one("  jobs:\n    test:\n      needs: { a: 1 }\n      steps: [ { run: x } ]\n");
    assert_eq!(at(&e), (6, 7));
    assert!(
        e.message.contains("a job id or a list of job ids"),
        "{}",
        e.message
    );

    let e = one(
        "  jobs:\n    test:\n      strategy: { matrix: { os: linux } }\n      steps: [ { run: x } ]\n",
    );
    assert_eq!(at(&e), (6, 33));
    assert!(
        e.message
            .starts_with("`pipeline.jobs.test.strategy.matrix.os` must be a sequence"),
        "{}",
        e.message
    );

    let e =
        one("  jobs:\n    test:\n      continue-on-error: maybe\n      steps: [ { run: x } ]\n");
    assert_eq!(at(&e), (6, 26));
    assert!(
        e.message.contains("a boolean or a `${{ }}` expression"),
        "{}",
        e.message
    );

    let e = one("  jobs: [a, b]\n");
    assert_eq!(at(&e), (4, 9));
    assert_eq!(
        e.message,
        "`pipeline.jobs` must be a mapping, found a sequence"
    );

    let e = one("  name: x\n");
    assert_eq!(at(&e), (3, 1));
    assert_eq!(e.message, "missing required field `jobs` in `pipeline`");
}

// --------------------------------------------------------- validation

#[test]
fn a_pipeline_needs_jobs_with_valid_ids() {
    let e = one("  jobs: {}\n");
    assert_eq!(at(&e), (4, 9));
    assert!(e.message.contains("at least one job"), "{}", e.message);

    let e = one("  jobs:\n    1build: { steps: [ { run: x } ] }\n");
    assert_eq!(at(&e), (5, 5));
    assert!(
        e.message.starts_with("invalid job id `1build`"),
        "{}",
        e.message
    );

    let e = one("  jobs:\n    build: {}\n");
    assert_eq!(at(&e), (5, 5));
    assert_eq!(e.message, "job `build` has no steps");
}

#[test]
fn needs_must_name_jobs() {
    let e = one("  jobs:
    build: { steps: [ { run: x } ] }
    test:
      needs: [biuld]
      steps: [ { run: y } ]
");
    assert_eq!(at(&e), (7, 15));
    assert_eq!(
        e.message,
        "`pipeline.jobs.test.needs` names `biuld`, which is not a job in this pipeline; did you mean `build`?"
    );
    assert_eq!(e.expected.as_deref(), Some("one of: build, test"));

    let e = one(
        "  jobs:\n    build: { steps: [ { run: x } ] }\n    test: { needs: nope, steps: [ { run: y } ] }\n",
    );
    assert_eq!(at(&e), (6, 20));
}

#[test]
fn cycles_are_named() {
    let e = one("  jobs:
    build:
      needs: test
      steps: [ { run: x } ]
    test:
      needs: [lint, build]
      steps: [ { run: y } ]
    lint: { steps: [ { run: z } ] }
");
    assert_eq!(at(&e), (6, 14));
    assert_eq!(e.message, "`needs` forms a cycle: build -> test -> build");

    let e = one("  jobs:
    a: { needs: c, steps: [ { run: x } ] }
    b: { needs: a, steps: [ { run: x } ] }
    c: { needs: b, steps: [ { run: x } ] }
");
    assert_eq!(e.message, "`needs` forms a cycle: a -> c -> b -> a");
    assert_eq!(at(&e), (5, 17));

    let e = one("  jobs:\n    a: { needs: [a], steps: [ { run: x } ] }\n");
    assert_eq!(e.message, "`needs` forms a cycle: a -> a");
}

#[test]
fn steps_are_checked() {
    let e = errs(
        "  jobs:
    test:
      steps:
        - id: unit
          run: make unit
        - id: unit
          run: make again
        - name: nothing to do
",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(at(&e[0]), (9, 15));
    assert_eq!(
        e[0].message,
        "duplicate step id `unit` in job `test`; step ids must be unique within a job"
    );
    assert_eq!(at(&e[1]), (11, 11));
    assert_eq!(
        e[1].message,
        "`pipeline.jobs.test.steps[2]` has no `run`; every step runs a command"
    );
}

#[test]
fn matrices_are_checked() {
    let e = errs(
        "  jobs:
    test:
      strategy:
        matrix:
          os: []
          python: ['3.12']
          exclude:
            - pyhton: '3.12'
      steps: [ { run: x } ]
",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(at(&e[0]), (8, 15));
    assert!(e[0].message.contains("matrix axis `os`") && e[0].message.contains("empty list"));
    assert_eq!(at(&e[1]), (11, 15));
    assert!(
        e[1].message.contains("did you mean `python`?"),
        "{}",
        e[1].message
    );

    let e =
        one("  jobs:\n    test:\n      strategy: { matrix: {} }\n      steps: [ { run: x } ]\n");
    assert!(e.message.contains("has no values"), "{}", e.message);

    let big = (0..9)
        .map(|i| format!("a{i}: [1, 2]"))
        .collect::<Vec<_>>()
        .join(", ");
    let e = one(&format!(
        "  jobs:\n    test:\n      strategy: {{ matrix: {{ {big} }} }}\n      steps: [ {{ run: x }} ]\n"
    ));
    assert!(e.message.contains("512 jobs; at most 256"), "{}", e.message);
}

#[test]
fn uses_and_with_are_checked() {
    let e = one("  jobs:\n    lint: { uses: python-lint }\n");
    assert_eq!(at(&e), (5, 19));
    assert!(e.message.contains("explicit version"), "{}", e.message);

    let e = one("  jobs:\n    lint: { with: { a: 1 }, steps: [ { run: x } ] }\n");
    assert!(
        e.message.contains("only meaningful with `uses"),
        "{}",
        e.message
    );
}

// -------------------------------------------------------- expressions

#[test]
fn unknown_context_is_named() {
    let e = one("  jobs:
    build:
      steps:
        - run: echo ${{ github.sha }}
");
    assert_eq!(at(&e), (7, 16));
    assert_eq!(
        e.message,
        "in `pipeline.jobs.build.steps[0].run`: unknown context `github`; Pave's contexts are env, matrix, needs, steps, pave, secrets, job, runner (for `github.sha` use `pave.sha`)"
    );

    let e = one(
        "  jobs:\n    build:\n      if: github.event_name == 'push'\n      steps: [ { run: x } ]\n",
    );
    assert_eq!(at(&e), (6, 11));
    assert!(
        e.message.contains("unknown context `github`"),
        "{}",
        e.message
    );
}

#[test]
fn context_references_are_checked_against_the_pipeline() {
    let body = "  env:
    TOP: ${{ matrix.os }}
  jobs:
    build:
      outputs:
        v: ${{ steps.ver.outputs.v }}
        w: ${{ steps.nope.outputs.v }}
      steps:
        - run: echo ${{ steps.later.outputs.x }}
        - id: later
          run: echo ${{ pave.commit }}
        - id: ver
          run: echo ${{ steps.later.outputs.x }} ${{ steps.later.status }}
    test:
      needs: build
      env:
        A: ${{ needs.build.outputs.v }}
        B: ${{ needs.build.outputs.x }}
        C: ${{ needs.lint.outputs.v }}
        D: ${{ matrix.os }}
        E: ${{ steps.ver.outputs.v }}
      steps:
        - run: echo ${{ secrets.TOKEN }} ${{ env.ANY }} ${{ runner.os }} ${{ job.status }} ${{ needs.build.result }}
";
    let e = errs(body);
    let got: Vec<((usize, usize), &str)> = e.iter().map(|e| (at(e), e.message.as_str())).collect();
    let expect_fragments = [
        (
            (5, 10),
            "the `matrix` context is only available inside jobs",
        ),
        (
            (10, 12),
            "`steps.nope`: no earlier step in this job has `id: nope`",
        ),
        (
            (12, 16),
            "`steps.later`: no earlier step in this job has `id: later`",
        ),
        (
            (14, 16),
            "`pave.commit` is not defined; `pave` has sha, ref, run_id, service",
        ),
        (
            (16, 16),
            "`steps.later.status` is not defined; `steps.later` has outputs, outcome, conclusion",
        ),
        (
            (21, 12),
            "`needs.build.outputs.x`: job `build` has no output `x` (its outputs: v, w)",
        ),
        (
            (22, 12),
            "`needs.lint`: `lint` is not in this job's `needs` (build)",
        ),
        (
            (23, 12),
            "`matrix` is used but this job has no `strategy.matrix`",
        ),
        (
            (24, 12),
            "the `steps` context is only available in steps and in job `outputs`",
        ),
    ];
    assert_eq!(got.len(), expect_fragments.len(), "{got:#?}");
    for ((pos, msg), (want_pos, want)) in got.iter().zip(expect_fragments) {
        assert_eq!(*pos, want_pos, "{msg}");
        assert!(msg.contains(want), "{msg}\n  wants: {want}");
    }
}

#[test]
fn matrix_keys_are_checked() {
    let e = errs(
        "  jobs:
    test:
      strategy:
        matrix:
          python: ['3.12']
          include: [ { os: linux } ]
      continue-on-error: ${{ matrix.os == 'linux' && env.X }}
      steps:
        - run: echo ${{ matrix.python }} ${{ matrix.os }} ${{ matrix.pyhton }}
",
    );
    // `env` in continue-on-error is rejected; `matrix.pyhton` gets a suggestion.
    let e2 = errs(
        "  jobs:
    test:
      strategy:
        matrix:
          python: ['3.12']
      steps:
        - run: echo ${{ matrix.pyhton }}
",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].message
            .contains("`continue-on-error` can only use the `matrix` context, found `env`"),
        "{}",
        e[0].message
    );
    assert_eq!(at(&e[0]), (10, 26));
    assert_eq!(at(&e[1]), (12, 16));
    assert!(
        e[1].message
            .contains("`matrix.pyhton` is not a key of this job's matrix (keys: python, os)"),
        "{}",
        e[1].message
    );
    assert_eq!(e2.len(), 1, "{e2:#?}");
    assert!(
        e2[0].message.ends_with("did you mean `python`?"),
        "{}",
        e2[0].message
    );
}

#[test]
fn syntax_errors_in_expressions_are_located() {
    let e = one("  jobs:\n    build:\n      steps:\n        - run: echo ${{ 1 == }}\n");
    assert_eq!(at(&e), (7, 16));
    assert!(
        e.message.starts_with(
            "invalid expression in `pipeline.jobs.build.steps[0].run`: expected a value after `==`"
        ),
        "{}",
        e.message
    );

    let e = one("  jobs:\n    build:\n      steps:\n        - run: echo ${{ hashFiles('x') }}\n");
    assert!(
        e.message.contains("unknown function `hashFiles`"),
        "{}",
        e.message
    );

    let e = one("  jobs:\n    build:\n      steps:\n        - run: echo ${{ env.A\n");
    assert!(e.message.contains("not closed"), "{}", e.message);

    let e = one(
        "  jobs:\n    build:\n      if: ${{ success() }} && true\n      steps: [ { run: x } ]\n",
    );
    assert_eq!(at(&e), (6, 11));
    assert!(e.message.contains("mixes text"), "{}", e.message);
}

#[test]
fn all_errors_are_reported_together_in_order() {
    let e = errs(
        "  jobs:
    build:
      needs: [nope]
      steps:
        - run: echo ${{ github.ref }}
        - name: no run
",
    );
    let pos: Vec<(usize, usize)> = e.iter().map(at).collect();
    assert_eq!(pos, [(6, 15), (8, 16), (9, 11)], "{e:#?}");
}

// ------------------------------------------------------------- matrices

/// From JSON text, so that axis order is kept (`json!` sorts keys).
fn matrix(v: &str) -> Matrix {
    serde_json::from_str(v).unwrap()
}

fn combos(m: &Matrix) -> Vec<Value> {
    m.expand()
        .unwrap()
        .into_iter()
        .map(|c| Value::Object(c.into_iter().collect::<Map<String, Value>>()))
        .collect()
}

#[test]
fn matrix_include_follows_github_docs() {
    // https://docs.github.com/en/actions/using-jobs/using-a-matrix-for-your-jobs#example-expanding-configurations
    let m = matrix(
        r#"{
        "fruit": ["apple", "pear"],
        "animal": ["cat", "dog"],
        "include": [
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"}
        ]
    }"#,
    );
    assert_eq!(
        combos(&m),
        vec![
            json!({"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"}),
            json!({"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"}),
            json!({"fruit": "pear", "animal": "cat", "color": "pink"}),
            json!({"fruit": "pear", "animal": "dog", "color": "green"}),
            json!({"fruit": "banana"}),
            json!({"fruit": "banana", "animal": "cat"}),
        ]
    );
    // Axis order is kept in each combination (first axis first).
    let first = &m.expand().unwrap()[0];
    let keys: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["fruit", "animal", "color", "shape"]);
}

#[test]
fn matrix_exclude_is_a_partial_match_applied_before_include() {
    // https://docs.github.com/en/actions/using-jobs/using-a-matrix-for-your-jobs#excluding-matrix-configurations
    let m = matrix(
        r#"{
        "os": ["macos-latest", "windows-latest"],
        "version": [12, 14, 16],
        "environment": ["staging", "production"],
        "exclude": [
            {"os": "macos-latest", "version": 12, "environment": "production"},
            {"os": "windows-latest", "version": 16}
        ]
    }"#,
    );
    let c = combos(&m);
    assert_eq!(c.len(), 12 - 1 - 2);
    assert!(!c.contains(&json!({"os": "windows-latest", "version": 16, "environment": "staging"})));

    // An include that re-adds an excluded combination creates it anew.
    let m = matrix(
        r#"{"os": ["linux", "mac"], "exclude": [{"os": "mac"}], "include": [{"os": "mac", "experimental": true}]}"#,
    );
    assert_eq!(
        combos(&m),
        vec![
            json!({"os": "linux"}),
            json!({"os": "mac", "experimental": true})
        ]
    );

    // Include-only matrices.
    let m = matrix(r#"{"include": [{"a": 1}, {"a": 2, "b": "x"}]}"#);
    assert_eq!(combos(&m), vec![json!({"a": 1}), json!({"a": 2, "b": "x"})]);
}

// ---------------------------------------------------------- expressions

fn ctx() -> Value {
    json!({
        "env": {"NAME": "World", "EMPTY": "", "NUM": "42", "Mixed": "x"},
        "matrix": {"os": "Linux", "py": 3.11, "list": ["a", "b"], "experimental": true},
        "needs": {"build": {"result": "success", "outputs": {"version": "1.2.3", "json": "{\"a\": [1, 2]}"}}},
        "steps": {"ver": {"outputs": {"v": "7"}, "outcome": "failure", "conclusion": "success"}},
        "pave": {"sha": "abc123", "ref": "refs/heads/main", "run_id": "42", "service": "hello"},
        "secrets": {"TOKEN": "s3cret"},
    })
}

fn ev(src: &str) -> Value {
    evaluate(
        &parse(src).unwrap_or_else(|e| panic!("{src}: {e}")),
        &ctx(),
        Status::OK,
    )
    .unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn expression_evaluation_table() {
    let table: &[(&str, Value)] = &[
        // literals
        ("'it''s'", json!("it's")),
        ("42", json!(42)),
        ("-9.5", json!(-9.5)),
        ("0xff", json!(255)),
        ("1e3", json!(1000)),
        ("true", json!(true)),
        ("NULL", Value::Null),
        // contexts, members, indexes
        ("env.NAME", json!("World")),
        ("env['NAME']", json!("World")),
        ("env.name", json!("World")),
        ("ENV.mixed", json!("x")),
        ("env.MISSING", Value::Null),
        ("matrix.list[1]", json!("b")),
        ("matrix.list[5]", Value::Null),
        ("needs.build.outputs.version", json!("1.2.3")),
        ("steps.ver.outputs['v']", json!("7")),
        ("pave.sha", json!("abc123")),
        ("github.sha", Value::Null),
        ("fromJSON(needs.build.outputs.json).a[1]", json!(2)),
        // operators and coercions
        ("!env.EMPTY", json!(true)),
        ("!!env.NAME", json!(true)),
        ("env.NAME == 'world'", json!(true)),
        ("env.NAME != 'world'", json!(false)),
        ("env.NUM == 42", json!(true)),
        ("'0x2A' == 42", json!(true)),
        ("null == 0", json!(true)),
        ("null == ''", json!(true)),
        ("null == null", json!(true)),
        ("null == false", json!(true)),
        ("'' == 0", json!(true)),
        ("true == 1", json!(true)),
        ("false == '0'", json!(true)),
        ("'abc' == 0", json!(false)),
        ("'abc' != 0", json!(true)),
        ("matrix.list == matrix.list", json!(false)),
        ("1 < 2", json!(true)),
        ("'a' < 'B'", json!(true)),
        ("'10' > 9", json!(true)),
        ("2 <= 2", json!(true)),
        ("3 >= 4", json!(false)),
        ("'abc' < 1", json!(false)),
        ("null < 1", json!(true)),
        ("env.NAME && env.NUM", json!("42")),
        ("env.EMPTY && env.NUM", json!("")),
        ("env.EMPTY || 'default'", json!("default")),
        ("env.NAME || 'default'", json!("World")),
        ("1 == 1 && 2 == 3 || 'x' == 'x'", json!(true)),
        ("!(1 == 1) || false", json!(false)),
        ("matrix.os == 'linux' && matrix.experimental", json!(true)),
        // functions
        ("contains('Hello World', 'world')", json!(true)),
        ("contains(matrix.list, 'B')", json!(true)),
        ("contains(matrix.list, 'c')", json!(false)),
        ("startsWith(pave.ref, 'REFS/heads')", json!(true)),
        ("endsWith(pave.ref, '/main')", json!(true)),
        ("format('{0}-{1}', env.NAME, 3)", json!("World-3")),
        ("format('{{0}} {0}', 'x')", json!("{0} x")),
        ("join(matrix.list)", json!("a,b")),
        ("join(matrix.list, ' | ')", json!("a | b")),
        ("join('single', '-')", json!("single")),
        ("toJSON(matrix.list)", json!("[\n  \"a\",\n  \"b\"\n]")),
        ("fromJSON('{\"x\": true}').x", json!(true)),
        ("fromJSON('[1,2]')[0]", json!(1)),
        ("SUCCESS()", json!(true)),
        ("failure()", json!(false)),
        ("always()", json!(true)),
        ("cancelled()", json!(false)),
    ];
    for (src, want) in table {
        assert_eq!(&ev(src), want, "{src}");
    }
}

#[test]
fn status_functions_follow_the_status() {
    let failed = Status {
        success: false,
        failure: true,
        cancelled: false,
    };
    let cancelled = Status {
        success: false,
        failure: false,
        cancelled: true,
    };
    let c = ctx();
    let cases: &[(&str, Status, bool)] = &[
        ("", Status::OK, true),
        ("", failed, false),
        ("success()", failed, false),
        ("failure()", failed, true),
        ("always()", failed, true),
        ("always()", cancelled, true),
        ("cancelled()", cancelled, true),
        ("!cancelled()", failed, true),
        // No status function: implicit `success() && (...)`.
        ("env.NAME == 'World'", Status::OK, true),
        ("env.NAME == 'World'", failed, false),
        ("${{ env.NAME == 'World' }}", Status::OK, true),
        ("  ${{ failure() && env.NUM == 42 }} ", failed, true),
        ("true", cancelled, false),
    ];
    for (cond, status, want) in cases {
        assert_eq!(
            eval_condition(cond, &c, *status).unwrap(),
            *want,
            "{cond} with {status:?}"
        );
    }
}

#[test]
fn interpolation_writes_values_as_github_does() {
    let c = ctx();
    let r = |s: &str| interpolate(s, &c, Status::OK).unwrap();
    assert_eq!(r("Hello ${{ env.NAME }}!"), "Hello World!");
    assert_eq!(r("[${{ env.MISSING }}]"), "[]");
    assert_eq!(r("${{ matrix.experimental }} ${{ 1 == 2 }}"), "true false");
    assert_eq!(r("py${{ matrix.py }}"), "py3.11");
    assert_eq!(r("${{ 3 }}/${{ 0.5 }}"), "3/0.5");
    assert_eq!(r("${{ matrix.list }}"), "[\n  \"a\",\n  \"b\"\n]");
    assert_eq!(
        r("no expressions $HOME {{ x }}"),
        "no expressions $HOME {{ x }}"
    );
    assert_eq!(r("${{ '}}' }}"), "}}", "`}}` inside a string literal");
    assert_eq!(r("${{ format('{0}', 'a') }}${{env.NAME}}"), "aWorld");
    let t = parse_template("a ${{ env.X }} b").unwrap();
    assert_eq!(t.segments.len(), 3);
    assert!(parse_template("plain").unwrap().is_literal());
}

#[test]
fn expression_errors() {
    let bad = [
        ("", "empty expression"),
        ("1 ==", "expected a value after `==`"),
        ("(1", "expected `)`"),
        ("a.", "expected a property name"),
        ("'open", "not closed"),
        ("a = b", "unexpected character `=`"),
        ("foo(1)", "unknown function `foo`"),
        ("contains(1)", "`contains()` takes 2 argument(s), found 1"),
        ("success(1)", "takes 0 argument(s)"),
        ("1 2", "expected an operator or the end"),
        ("0xZZ", "invalid number"),
        ("a[1", "expected `]`"),
    ];
    for (src, want) in bad {
        let e: ExprError = parse(src).expect_err(src);
        assert!(e.message.contains(want), "{src}: {e}");
    }
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(
        parse(&deep)
            .unwrap_err()
            .message
            .contains("nested too deeply")
    );
    let long = vec!["a"; 2000].join(" && ");
    assert!(parse(&long).unwrap_err().message.contains("too long"));

    let c = ctx();
    let run = |s: &str| evaluate(&parse(s).unwrap(), &c, Status::OK);
    assert!(
        run("fromJSON('{nope')")
            .unwrap_err()
            .message
            .contains("not valid JSON")
    );
    assert!(
        run("format('{1}', 'a')")
            .unwrap_err()
            .message
            .contains("missing argument")
    );
    assert!(
        run("format('{x}', 'a')")
            .unwrap_err()
            .message
            .contains("not an argument index")
    );
    assert!(parse_condition("${{ a }} ${{ b }}").is_err());
}

#[test]
fn context_refs_and_status_detection() {
    let e = parse("needs.build.outputs['v'] == matrix[env.KEY] && steps.a.outcome").unwrap();
    assert_eq!(
        e.context_refs(),
        vec![
            vec!["needs", "build", "outputs", "v"],
            vec!["env", "KEY"],
            vec!["matrix"],
            vec!["steps", "a", "outcome"],
        ]
    );
    assert!(!e.uses_status_function());
    assert!(parse("!cancelled() && x").unwrap().uses_status_function());
    assert!(pipeline_expr::truthy(&json!([])));
    assert!(!pipeline_expr::truthy(&json!(0)));
}

// ------------------------------------------------------------ no panics

fn expr_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(
                &[
                    "env",
                    "matrix",
                    ".",
                    "[",
                    "]",
                    "(",
                    ")",
                    "'",
                    "''",
                    "'x'",
                    "==",
                    "!=",
                    "<",
                    "<=",
                    ">",
                    ">=",
                    "&&",
                    "||",
                    "!",
                    ",",
                    "1",
                    "-2.5",
                    "0x1F",
                    "1e",
                    "true",
                    "null",
                    "success()",
                    "contains(",
                    "format(",
                    "'{0}'",
                    "fromJSON(",
                    "toJSON(",
                    "join(",
                    "${{",
                    "}}",
                    " ",
                    "\u{e9}",
                    "-",
                    "*",
                ][..]
            )
            .prop_map(str::to_string),
            "[ -~]{0,4}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn expressions_never_panic(src in expr_soup()) {
        let c = ctx();
        for status in [Status::OK, Status { success: false, failure: true, cancelled: true }] {
            if let Ok(e) = parse(&src) {
                let _ = evaluate(&e, &c, status);
                let _ = e.context_refs();
            }
            let _ = interpolate(&src, &c, status);
            let _ = eval_condition(&src, &c, status);
        }
    }

    #[test]
    fn pipelines_never_panic_and_errors_are_located(
        needs in prop::sample::select(&["a", "[a]", "[b, c]", "nope", "[a, a]", "{x: 1}", "''"][..]),
        run in expr_soup(),
        cond in expr_soup(),
        axis in prop::sample::select(&["[]", "[1, 2]", "x", "[{a: 1}]", "{}"][..]),
    ) {
        let yaml = format!(
            "service: {{ name: s, owner: t }}\npipeline:\n  jobs:\n    a:\n      strategy: {{ matrix: {{ k: {axis} }} }}\n      steps:\n        - run: {run:?}\n          if: {cond:?}\n    b:\n      needs: {needs}\n      steps: [ {{ run: x }} ]\n    c: {{ needs: b, steps: [ {{ id: s, run: y }} ] }}\n"
        );
        match parse_pave_yaml(F, &yaml) {
            Ok(doc) => prop_assert!(doc.pipeline.is_some()),
            Err(errs) => {
                prop_assert!(!errs.0.is_empty());
                for e in errs.0 {
                    prop_assert_eq!(&e.file, F);
                    prop_assert!(e.line >= 1 && e.column >= 1, "{}", e);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}
