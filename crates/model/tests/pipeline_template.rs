//! Pipeline templates: parsing with located errors, and expansion of
//! `uses:` jobs (ids, needs, outputs, inputs, caller settings).

use pave_model::parse_pave_yaml;
use pave_model::pipeline_spec::PipelineSpec;
use pave_model::pipeline_template::{
    PipelineTemplate, check_version, expand_templates, parse_template, template_refs,
};
use pave_model::{SpecError, SpecErrors};

const T: &str = "rust-ci@1.2.0.yaml";

const RUST_CI: &str = r#"template: { name: rust-ci, version: 1.2.0, description: "Build and test" }
inputs:
  toolchain: { description: "rustup toolchain", default: stable }
  package:   { required: true }
  quick:     { default: false }
outputs:
  binary: ${{ jobs.build.outputs.path }}
jobs:
  build:
    outputs: { path: "${{ steps.b.outputs.path }}" }
    steps:
      - id: b
        run: "cargo +${{ inputs.toolchain }} build -p ${{ inputs.package }}"
  test:
    needs: build
    if: ${{ !inputs.quick }}
    steps:
      - run: "echo ${{ needs.build.outputs.path }} ${{ inputs.package == 'core' }}"
"#;

const ONE_JOB: &str = r#"template: { name: lint, version: 1.0.0 }
inputs:
  dir: { default: . }
outputs:
  report: ${{ jobs.lint.outputs.report }}
jobs:
  lint:
    outputs: { report: "${{ steps.l.outputs.report }}" }
    steps: [ { id: l, run: "lint ${{ inputs.dir }}" } ]
"#;

fn template(text: &str) -> PipelineTemplate {
    parse_template(T, text).unwrap_or_else(|e| panic!("{e}"))
}

fn template_errs(text: &str) -> Vec<SpecError> {
    match parse_template(T, text) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(SpecErrors(e)) => e,
    }
}

fn pipeline(body: &str) -> (String, PipelineSpec) {
    let text = format!("service: {{ name: app, owner: team }}\npipeline:\n{body}");
    let doc = parse_pave_yaml("pave.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    (text, doc.pipeline.expect("pipeline"))
}

fn expand(body: &str) -> Result<PipelineSpec, Vec<SpecError>> {
    let (text, spec) = pipeline(body);
    let mut resolve = |name: &str, version: &str| match (name, version) {
        ("rust-ci", "1.2.0") => Ok(template(RUST_CI)),
        ("lint", "1.0.0") => Ok(template(ONE_JOB)),
        _ => Err(format!(
            "no pipeline template `{name}@{version}` is registered"
        )),
    };
    expand_templates("pave.yaml", &text, &spec, &mut resolve).map_err(|e| e.0)
}

#[test]
fn a_template_parses_with_inputs_and_outputs() {
    let t = template(RUST_CI);
    assert_eq!(t.key(), "rust-ci@1.2.0");
    assert_eq!(t.description.as_deref(), Some("Build and test"));
    assert_eq!(t.job_ids, ["build", "test"]);
    assert!(t.input("package").is_some_and(|i| i.required));
    assert_eq!(t.output("binary").map(|o| o.job.as_str()), Some("build"));
}

#[test]
fn versions_must_be_explicit() {
    for ok in ["1.2.0", "0.0.1", "10.20.30-rc.1"] {
        assert!(check_version(ok).is_ok(), "{ok}");
    }
    for bad in ["1", "1.2", "v1.2.0", "1.2.x", "latest", "1.2.0-", ""] {
        assert!(check_version(bad).is_err(), "{bad}");
    }
    let e = template_errs(&RUST_CI.replace("version: 1.2.0", "version: latest"));
    assert_eq!((e[0].line, e[0].column), (1, 37), "{e:?}");
    assert!(
        e[0].message.contains("must be explicit"),
        "{}",
        e[0].message
    );
}

#[test]
fn an_undeclared_input_is_named_where_it_is_used() {
    let e = template_errs(&RUST_CI.replace("-p ${{ inputs.package }}", "-p ${{ inputs.pakage }}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 13);
    assert!(
        e[0].message
            .contains("`inputs.pakage` is not a declared input")
            && e[0].message.contains("did you mean `package`?"),
        "{}",
        e[0].message
    );
}

#[test]
fn template_jobs_are_validated_as_a_pipeline() {
    // A needs typo, reported with the template's own path (no `pipeline.`).
    let e = template_errs(&RUST_CI.replace("needs: build", "needs: biuld"));
    assert!(
        e[0].message.contains("`jobs.test.needs` names `biuld`")
            && e[0].message.contains("did you mean `build`?"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, 15);
    // Unknown top-level key.
    let e = template_errs(&format!("{RUST_CI}outptus: {{}}\n"));
    assert!(
        e[0].message.contains("unknown field `outptus`"),
        "{}",
        e[0].message
    );
    // An output that is not a job output.
    let e = template_errs(&RUST_CI.replace("jobs.build.outputs.path", "jobs.build.outputs.pth"));
    assert!(
        e[0].message.contains("job `build` has no output `pth`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, 7);
    // Nested templates are rejected.
    let e =
        template_errs("template: { name: n, version: 1.0.0 }\njobs:\n  a: { uses: other@1.0.0 }\n");
    assert!(
        e[0].message.contains("cannot use another template"),
        "{e:?}"
    );
    // Missing jobs.
    let e = template_errs("template: { name: n, version: 1.0.0 }\n");
    assert!(
        e[0].message.contains("missing required field `jobs`"),
        "{e:?}"
    );
}

#[test]
fn a_multi_job_template_expands_with_prefixed_ids_and_wired_needs() {
    let spec = expand(
        r#"  jobs:
    setup: { steps: [ { run: ./setup } ] }
    ci:
      uses: rust-ci@1.2.0
      needs: setup
      if: github_event_ok() || true
      env: { A: caller, RUSTFLAGS: "-D warnings" }
      with: { package: core }
    ship:
      needs: ci
      steps: [ { run: "ship ${{ needs.ci.outputs.binary }}" } ]
"#
        .replace("github_event_ok() || true", "success()")
        .as_str(),
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let ids: Vec<&str> = spec.jobs.keys().collect();
    assert_eq!(ids, ["setup", "ci-build", "ci-test", "ship"]);
    let build = spec.jobs.get("ci-build").unwrap();
    assert_eq!(build.needs, ["setup"]);
    assert_eq!(build.condition.as_deref(), Some("success()"));
    assert_eq!(build.env.get("A").map(String::as_str), Some("caller"));
    assert_eq!(
        build.steps[0].run.as_deref(),
        Some("cargo +stable build -p core")
    );
    let test = spec.jobs.get("ci-test").unwrap();
    assert_eq!(test.needs, ["ci-build", "setup"]);
    assert_eq!(test.condition.as_deref(), Some("${{ !false }}"));
    assert_eq!(
        test.steps[0].run.as_deref(),
        Some("echo ${{ needs.ci-build.outputs.path }} ${{ 'core' == 'core' }}")
    );
    let ship = spec.jobs.get("ship").unwrap();
    assert_eq!(ship.needs, ["ci-build", "ci-test"]);
    assert_eq!(
        ship.steps[0].run.as_deref(),
        Some("ship ${{ needs.ci-build.outputs.path }}")
    );
    assert_eq!(
        template_refs(
            &pipeline("  jobs:\n    ci: { uses: rust-ci@1.2.0, with: { package: x } }\n").1
        ),
        [("rust-ci".to_string(), "1.2.0".to_string())]
    );
}

#[test]
fn a_one_job_template_keeps_the_caller_id_and_caller_settings() {
    let spec = expand(
        r#"  jobs:
    lint:
      name: Lint it
      uses: lint@1.0.0
      strategy: { matrix: { dir: [src, tests] } }
      with: { dir: "${{ matrix.dir }}" }
    after:
      needs: lint
      if: needs.lint.result == 'success'
      steps: [ { run: "cat ${{ needs.lint.outputs.report }}" } ]
"#,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let ids: Vec<&str> = spec.jobs.keys().collect();
    assert_eq!(ids, ["lint", "after"]);
    let lint = spec.jobs.get("lint").unwrap();
    assert_eq!(lint.name.as_deref(), Some("Lint it"));
    assert_eq!(lint.steps[0].run.as_deref(), Some("lint ${{ matrix.dir }}"));
    assert!(lint.strategy.is_some());
    assert!(lint.uses.is_none());
    let after = spec.jobs.get("after").unwrap();
    assert_eq!(after.needs, ["lint"]);
    assert_eq!(
        after.steps[0].run.as_deref(),
        Some("cat ${{ needs.lint.outputs.report }}")
    );
}

#[test]
fn caller_mistakes_are_located_in_the_callers_file() {
    // Missing required input: at `with:` (line 5 here) or `uses:`.
    let e = expand("  jobs:\n    ci:\n      uses: rust-ci@1.2.0\n").unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        (e[0].file.as_str(), e[0].line, e[0].column),
        ("pave.yaml", 5, 13)
    );
    assert!(
        e[0].message.contains("requires input `package`"),
        "{}",
        e[0].message
    );

    // Unknown `with:` key, with did-you-mean, at the key.
    let e = expand("  jobs:\n    ci:\n      uses: rust-ci@1.2.0\n      with: { package: a, toolchian: beta }\n").unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].line, e[0].column), (6, 27));
    assert!(
        e[0].message.contains("has no input `toolchian`")
            && e[0].message.contains("did you mean `toolchain`?"),
        "{}",
        e[0].message
    );

    // Unknown template or version.
    let e = expand("  jobs:\n    ci: { uses: rust-ci@9.9.9 }\n").unwrap_err();
    assert!(
        e[0].message.contains("`rust-ci@9.9.9` is registered"),
        "{}",
        e[0].message
    );
    assert_eq!((e[0].line, e[0].column), (4, 17));

    // Not an explicit version.
    let e = expand("  jobs:\n    ci: { uses: rust-ci@1 }\n").unwrap_err();
    assert!(
        e[0].message.contains("explicit version"),
        "{}",
        e[0].message
    );

    // An output the template does not declare.
    let e = expand(
        "  jobs:\n    ci: { uses: rust-ci@1.2.0, with: { package: a } }\n    next: { needs: ci, steps: [ { run: \"${{ needs.ci.outputs.binry }}\" } ] }\n",
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("has no output `binry`")
            && e[0].message.contains("did you mean `binary`?"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, 5);

    // `needs.ci.result` of a multi-job template is ambiguous.
    let e = expand(
        "  jobs:\n    ci: { uses: rust-ci@1.2.0, with: { package: a } }\n    next: { needs: ci, if: \"needs.ci.result == 'success'\", steps: [ { run: x } ] }\n",
    )
    .unwrap_err();
    assert!(e[0].message.contains("ambiguous"), "{}", e[0].message);

    // Ids that clash after expansion.
    let e = expand(
        "  jobs:\n    ci-build: { steps: [ { run: x } ] }\n    ci: { uses: rust-ci@1.2.0, with: { package: a } }\n",
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("two jobs with id `ci-build`"),
        "{}",
        e[0].message
    );
}

#[test]
fn a_pipeline_without_uses_is_unchanged() {
    let (text, spec) = pipeline("  jobs:\n    a: { steps: [ { run: x } ] }\n");
    let mut never = |_: &str, _: &str| -> Result<PipelineTemplate, String> { panic!("no lookups") };
    let out = expand_templates("pave.yaml", &text, &spec, &mut never).unwrap();
    assert_eq!(out, spec);
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any edit of a valid template parses or fails with located errors,
        /// and expanding whatever parses never panics.
        #[test]
        fn edited_templates_never_panic(
            at in 0usize..RUST_CI.len(),
            cut in 0usize..12,
            insert in "[ -~\n]{0,12}",
        ) {
            let mut text = RUST_CI.to_string();
            let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let end = (at + cut).min(text.len());
            let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
            text.replace_range(at..end, &insert);
            match parse_template(T, &text) {
                Err(SpecErrors(errs)) => prop_assert!(!errs.is_empty()),
                Ok(t) => {
                    let (caller, spec) = pipeline(
                        "  jobs:\n    ci: { uses: rust-ci@1.2.0, with: { package: \"a'b ${{ pave.sha }}\" } }\n    next: { needs: ci, steps: [ { run: \"${{ needs.ci.outputs.binary }}\" } ] }\n",
                    );
                    let mut resolve = |_: &str, _: &str| Ok(t.clone());
                    let _ = expand_templates("pave.yaml", &caller, &spec, &mut resolve);
                }
            }
        }
    }
}
