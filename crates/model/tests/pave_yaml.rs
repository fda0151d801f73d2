//! `pave.yaml` parsing: the entity it yields and every class of error.

use pave_model::{Kind, SpecError, parse_file};

fn err(content: &str) -> Vec<SpecError> {
    parse_file("svc/pave.yaml", content)
        .expect_err("should fail")
        .0
}

fn one_err(content: &str) -> SpecError {
    let errs = err(content);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn minimal_service_becomes_a_component_with_defaults() {
    let parsed = parse_file(
        "svc/pave.yaml",
        "service:\n  name: hello\n  owner: payments\n",
    )
    .unwrap();
    assert_eq!(parsed.len(), 1);
    let p = &parsed[0];
    assert_eq!((p.file.as_str(), p.line, p.column), ("svc/pave.yaml", 1, 1));
    let e = &p.entity;
    assert_eq!(e.api_version, "backstage.io/v1alpha1");
    assert_eq!(e.kind, Kind::Component);
    assert_eq!(e.metadata.name, "hello");
    assert_eq!(e.metadata.namespace, "default");
    assert_eq!(
        e.metadata
            .annotations
            .get("pave.dev/source")
            .map(String::as_str),
        Some("pave.yaml")
    );
    let spec = serde_json::Value::Object(e.spec.clone());
    assert_eq!(
        spec,
        serde_json::json!({"type": "service", "lifecycle": "production", "owner": "payments"})
    );
}

#[test]
fn full_service_keeps_identity_and_ignores_pipeline_and_deploy() {
    let content = "\
# The service
service:
  name: hello
  owner: group:default/payments
  system: checkout
  lifecycle: experimental
  type: website
  description: Says hello
  tags: [python, web]
  links:
    - url: https://dash.example/hello
      title: Dashboard
  dependsOn: [resource:db, greeter]
  providesApis: [hello-api]
  consumesApis:
    - time-api
pipeline:
  jobs:
    test: { steps: [ { run: python3 -m unittest } ] }
deploy:
  run: python3 app.py
  health: { path: /healthz }
";
    let parsed = parse_file("pave.yml", content).unwrap();
    let e = &parsed[0].entity;
    assert_eq!((parsed[0].line, parsed[0].column), (2, 1));
    assert_eq!(e.metadata.description.as_deref(), Some("Says hello"));
    assert_eq!(e.metadata.tags, vec!["python", "web"]);
    assert_eq!(e.metadata.links[0].url, "https://dash.example/hello");
    assert_eq!(e.metadata.links[0].title.as_deref(), Some("Dashboard"));
    assert_eq!(
        serde_json::Value::Object(e.spec.clone()),
        serde_json::json!({
            "type": "website",
            "lifecycle": "experimental",
            "owner": "group:default/payments",
            "system": "checkout",
            "dependsOn": ["resource:db", "greeter"],
            "providesApis": ["hello-api"],
            "consumesApis": ["time-api"],
        })
    );
    assert!(e.extra.is_empty() && e.metadata.extra.is_empty());
}

#[test]
fn unknown_field_names_the_section_and_suggests() {
    let e = one_err("service:\n  name: hello\n  ownr: payments\n");
    assert_eq!((e.file.as_str(), e.line, e.column), ("svc/pave.yaml", 3, 3));
    assert_eq!(
        e.message,
        "unknown field `ownr` in `service`; did you mean `owner`?"
    );
    let expected = e.expected.unwrap();
    assert!(
        expected.starts_with("one of: name, owner, system, lifecycle"),
        "{expected}"
    );

    let e = one_err("service:\n  name: hello\n  owner: p\n  lifecyle: production\n");
    assert_eq!((e.line, e.column), (4, 3));
    assert!(
        e.message.ends_with("did you mean `lifecycle`?"),
        "{}",
        e.message
    );

    let e = one_err("service:\n  name: hello\n  owner: p\n  zzzzzzzzz: 1\n");
    assert_eq!(e.message, "unknown field `zzzzzzzzz` in `service`");

    let e = one_err("servce:\n  name: hello\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert_eq!(
        e.message,
        "unknown field `servce` at the top level; did you mean `service`?"
    );
}

#[test]
fn missing_required_field_points_at_the_section() {
    let e = one_err("# header\n\nservice:\n  name: hello\n  tags: [a]\n");
    assert_eq!((e.line, e.column), (3, 1));
    assert_eq!(e.message, "missing required field `owner` in `service`");
    assert_eq!(e.expected.as_deref(), Some("a `owner` field"));

    let e = one_err("deploy:\n  run: x\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert_eq!(
        e.message,
        "missing required field `service` at the top level"
    );
}

#[test]
fn wrong_types_are_located_at_the_value() {
    let e = one_err("service:\n  name: hello\n  owner: [a, b]\n");
    assert_eq!((e.line, e.column), (3, 10));
    assert_eq!(
        e.message,
        "`service.owner` must be a string, found a sequence"
    );

    let e = one_err("service:\n  name: hello\n  owner: a\n  tags: python\n");
    assert_eq!((e.line, e.column), (4, 9));
    assert!(
        e.message.starts_with("`service.tags` must be a sequence"),
        "{}",
        e.message
    );

    let e = one_err("service: hello\n");
    assert_eq!((e.line, e.column), (1, 10));
    assert_eq!(e.message, "`service` must be a mapping, found a string");

    let e = one_err("- a\n- b\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.starts_with("expected a mapping"), "{}", e.message);
}

#[test]
fn malformed_yaml_reports_the_parser_location() {
    let e = one_err("service:\n  name: hello\n  owner: [a, b\n");
    assert_eq!(e.file, "svc/pave.yaml");
    assert!(e.line >= 3 && e.column > 0, "{e}");
    assert!(!e.message.is_empty());

    let e = one_err("service:\n  name: a\n  name: b\n  owner: c\n");
    assert_eq!((e.line, e.column), (3, 3));
    assert!(e.message.contains("duplicate"), "{}", e.message);

    let e = one_err("service:\n\tname: a\n");
    assert!(e.line >= 1 && e.column > 0, "{e}");
}

#[test]
fn invalid_names_and_references_are_all_reported_at_their_values() {
    let content = "\
service:
  name: hello world
  owner: 'group:'
  system: a//b
  dependsOn:
    - fine
    - bad name
  providesApis: [ok, 'api:x/y/z']
  consumesApis: ['thing:x']
";
    let errs = err(content);
    let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        vec![(2, 9), (3, 10), (4, 11), (7, 7), (8, 22), (9, 18)],
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .message
            .contains("invalid name `hello world` in `service.name`")
    );
    assert!(
        errs[0].message.contains("1-63 characters of [a-zA-Z0-9]"),
        "names the rule"
    );
    assert!(
        errs[1].message.contains("`service.owner`"),
        "{}",
        errs[1].message
    );
    assert!(
        errs[3].message.contains("`service.dependsOn[1]`"),
        "{}",
        errs[3].message
    );
    assert!(
        errs[3].message.contains("1-63 characters"),
        "{}",
        errs[3].message
    );
    assert!(
        errs[5].message.contains("unknown kind `thing`"),
        "{}",
        errs[5].message
    );
    assert!(
        errs.iter()
            .all(|e| e.file == "svc/pave.yaml" && e.expected.is_some())
    );
}

#[test]
fn multiple_documents_and_empty_files_are_rejected() {
    let e = one_err("service: {name: a, owner: b}\n---\nservice: {name: c, owner: d}\n");
    assert_eq!((e.line, e.column), (3, 1));
    assert!(e.message.contains("single YAML document"));

    let e = one_err("# nothing here\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert_eq!(e.message, "pave.yaml is empty");
}

#[test]
fn display_format_names_file_line_column_and_expectation() {
    let e = one_err("service:\n  name: hello\n  ownr: payments\n");
    let shown = e.to_string();
    assert!(
        shown.starts_with("svc/pave.yaml:3:3: unknown field `ownr` in `service`; did you mean `owner`? (expected one of: name, owner,"),
        "{shown}"
    );
}
