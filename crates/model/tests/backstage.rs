//! Backstage descriptor files: kinds, required fields, references, documents, extras.

use pave_model::{Kind, SpecError, parse_file};
use serde_json::json;

const F: &str = "team/catalog-info.yaml";

fn err(content: &str) -> Vec<SpecError> {
    parse_file(F, content).expect_err("should fail").0
}

fn one_err(content: &str) -> SpecError {
    let errs = err(content);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

fn doc(kind: &str, spec: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: thing\nspec:\n{spec}"
    )
}

#[test]
fn all_eight_kinds_accept_minimal_specs() {
    let cases = [
        (
            "Component",
            "  type: service\n  lifecycle: production\n  owner: team-a\n",
            Kind::Component,
        ),
        (
            "API",
            "  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition: 'openapi: 3.0.0'\n",
            Kind::Api,
        ),
        (
            "Resource",
            "  type: database\n  owner: team-a\n",
            Kind::Resource,
        ),
        ("System", "  owner: team-a\n", Kind::System),
        ("Domain", "  owner: team-a\n", Kind::Domain),
        ("Group", "  type: team\n  children: []\n", Kind::Group),
        ("User", "  memberOf: []\n", Kind::User),
        (
            "Location",
            "  target: ./other/catalog-info.yaml\n",
            Kind::Location,
        ),
    ];
    for (name, spec, kind) in cases {
        let parsed = parse_file(F, &doc(name, spec)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].entity.kind, kind);
        assert_eq!(parsed[0].entity.metadata.name, "thing");
        assert_eq!(parsed[0].entity.metadata.namespace, "default");
    }
    let targets = doc("Location", "  targets: [a.yaml, b.yaml]\n");
    assert!(parse_file(F, &targets).is_ok());
    let placeholder = doc(
        "API",
        "  type: openapi\n  lifecycle: production\n  owner: team-a\n  definition:\n    $text: ./openapi.yaml\n",
    );
    assert!(parse_file(F, &placeholder).is_ok());
}

#[test]
fn missing_spec_fields_are_named_per_kind_at_the_spec_key() {
    let errs = err(&doc("Component", "  type: service\n"));
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        vec![
            "missing required field `spec.lifecycle` for kind Component",
            "missing required field `spec.owner` for kind Component",
        ]
    );
    assert!(errs.iter().all(|e| (e.line, e.column) == (5, 1)));

    let e = one_err(&doc(
        "API",
        "  type: openapi\n  lifecycle: production\n  owner: team-a\n",
    ));
    assert_eq!(
        e.message,
        "missing required field `spec.definition` for kind API"
    );
    let e = one_err(&doc("Group", "  type: team\n"));
    assert_eq!(
        e.message,
        "missing required field `spec.children` for kind Group"
    );
    let e = one_err(&doc("User", "  profile: {}\n"));
    assert_eq!(
        e.message,
        "missing required field `spec.memberOf` for kind User"
    );
    let e = one_err(&doc("Location", "  type: url\n"));
    assert!(
        e.message.contains("`spec.target` or `spec.targets`"),
        "{}",
        e.message
    );

    // No `spec` at all: reported at the document start.
    let errs = err(
        "\n# a system\napiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: s\n",
    );
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (3, 1));
    assert_eq!(
        errs[0].message,
        "missing required field `spec.owner` for kind System"
    );
}

#[test]
fn missing_and_invalid_envelope_fields() {
    let errs = err("kind: Component\nspec: {}\n");
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert!(
        msgs.contains(&"missing required field `apiVersion`"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"missing required field `metadata`"),
        "{msgs:?}"
    );

    let e = one_err("apiVersion: v1\nkind: Domain\nmetadata:\n  name: d\nspec:\n  owner: x\n");
    assert_eq!((e.line, e.column), (1, 13));
    assert_eq!(e.message, "unsupported apiVersion `v1`");

    let e = one_err(
        "apiVersion: backstage.io/v1beta1\nkind: Domain\nmetadata:\n  namespace: x\nspec:\n  owner: x\n",
    );
    assert_eq!((e.line, e.column), (3, 1));
    assert_eq!(e.message, "missing required field `metadata.name`");

    let e = one_err(
        "apiVersion: backstage.io/v1alpha1\nkind: Domain\nmetadata:\n  name: -bad-\nspec:\n  owner: x\n",
    );
    assert_eq!((e.line, e.column), (4, 9));
    assert!(
        e.message
            .starts_with("invalid name `-bad-` in `metadata.name`: must be 1-63 characters"),
        "{}",
        e.message
    );

    let e = one_err(
        "apiVersion: backstage.io/v1alpha1\nkind: Domain\nmetadata:\n  name: d\n  namespace: 'a b'\nspec:\n  owner: x\n",
    );
    assert_eq!((e.line, e.column), (5, 14));
    assert!(e.message.contains("`metadata.namespace`"));
}

#[test]
fn kinds_are_case_sensitive_with_suggestions() {
    let e = one_err(&doc("component", "  type: s\n  lifecycle: l\n  owner: o\n"));
    assert_eq!((e.line, e.column), (2, 7));
    assert_eq!(
        e.message,
        "unknown kind `component`; did you mean `Component`?"
    );
    assert!(
        e.expected
            .unwrap()
            .starts_with("one of: Component, API, Resource")
    );
    let e = one_err(&doc("Compnent", "  owner: o\n"));
    assert_eq!(
        e.message,
        "unknown kind `Compnent`; did you mean `Component`?"
    );
    let e = one_err(&doc("Api", "  owner: o\n"));
    assert_eq!(e.message, "unknown kind `Api`; did you mean `API`?");
    let e = one_err(&doc("Template", "  owner: o\n"));
    assert_eq!(e.message, "unknown kind `Template`");
}

#[test]
fn malformed_references_and_wrong_types_are_located() {
    let content = doc(
        "Component",
        "  type: service\n  lifecycle: production\n  owner: [a, b]\n  system: 'bad system'\n  dependsOn:\n    - resource:db\n    - 'nope:x'\n    - 42\n  providesApis: api-1\n",
    );
    let errs = err(&content);
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(
        got[0],
        (
            8,
            10,
            "`spec.owner` must be a string entity reference, found a sequence"
        )
    );
    assert_eq!((got[1].0, got[1].1), (9, 11));
    assert!(
        got[1]
            .2
            .starts_with("invalid entity reference `bad system` in `spec.system`: invalid name"),
        "{}",
        got[1].2
    );
    assert!(got[1].2.contains("1-63 characters"), "names the rule");
    assert_eq!((got[2].0, got[2].1), (12, 7));
    assert!(got[2].2.contains("`spec.dependsOn[1]`") && got[2].2.contains("unknown kind `nope`"));
    assert_eq!(
        got[3],
        (
            13,
            7,
            "`spec.dependsOn[2]` must be a string entity reference, found a number"
        )
    );
    assert_eq!(
        got[4],
        (
            14,
            17,
            "`spec.providesApis` must be a sequence of entity references, found a string"
        )
    );

    let e = one_err(&doc(
        "Group",
        "  type: team\n  children: [a]\n  parent: 'x/y/z'\n",
    ));
    assert!(e.message.contains("`spec.parent`"), "{}", e.message);
    let e = one_err(&doc("User", "  memberOf: [ok, 'bad!']\n"));
    assert_eq!((e.line, e.column), (6, 18));
    let e = one_err(&doc(
        "Group",
        "  type: team\n  children: [a]\n  members: [u, 'user:']\n",
    ));
    assert!(e.message.contains("`spec.members[1]`"), "{}", e.message);
}

#[test]
fn metadata_types_are_checked() {
    let content = "apiVersion: backstage.io/v1alpha1\nkind: Domain\nmetadata:\n  name: d\n  tags: [a, 1]\n  labels:\n    team: [x]\n  links:\n    - title: no url\nspec:\n  owner: x\n";
    let errs = err(content);
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, 13, "`metadata.tags[1]` must be a string, found a number"),
            (
                7,
                11,
                "`metadata.labels.team` must be a string, found a sequence"
            ),
            (9, 7, "missing required field `metadata.links[0].url`"),
        ]
    );
}

#[test]
fn documents_report_their_own_start_lines() {
    let content = "\
# three entities
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: checkout
spec:
  owner: payments
---
---
# the empty document above is skipped
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
spec:
  type: team
  children: []
--- # a comment after the marker
apiVersion: backstage.io/v1alpha1
kind: User
metadata:
  name: ada
spec:
  memberOf: [payments]
";
    let parsed = parse_file(F, content).unwrap();
    let got: Vec<(Kind, usize, usize)> = parsed
        .iter()
        .map(|p| (p.entity.kind, p.line, p.column))
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::System, 2, 1),
            (Kind::Group, 11, 1),
            (Kind::User, 19, 1)
        ]
    );

    // Errors in later documents carry their own lines; all are collected.
    let broken = content
        .replace("  owner: payments\n", "")
        .replace("memberOf: [payments]", "memberOf: payments");
    let errs = err(&broken);
    let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(6, 1), (23, 13)], "{errs:#?}");
}

#[test]
fn extra_fields_are_kept_unchanged() {
    let content = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: web
  title: Web
  description: The web app
  labels: {tier: front}
  annotations:
    backstage.io/techdocs-ref: dir:.
  tags: [js]
  links:
    - url: https://a.example
      title: A
      type: dashboard
  uid: 1234-5678
  custom:
    nested: [1, 2.5, true, null, {deep: x}]
spec:
  type: website
  lifecycle: production
  owner: web-team
  profile:
    weird: ~
  x-flag: yes
relations:
  - type: ownedBy
    targetRef: group:default/web-team
status:
  items: []
";
    let parsed = parse_file(F, content).unwrap();
    let entity = &parsed[0].entity;
    assert_eq!(entity.metadata.title.as_deref(), Some("Web"));
    assert_eq!(
        entity.metadata.labels.get("tier").map(String::as_str),
        Some("front")
    );
    assert_eq!(
        entity.metadata.links[0].link_type.as_deref(),
        Some("dashboard")
    );
    let round_trip = serde_json::to_value(entity).unwrap();
    let expected = json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "title": "Web",
            "description": "The web app",
            "labels": {"tier": "front"},
            "annotations": {"backstage.io/techdocs-ref": "dir:."},
            "tags": ["js"],
            "links": [{"url": "https://a.example", "title": "A", "type": "dashboard"}],
            "uid": "1234-5678",
            "custom": {"nested": [1, 2.5, true, null, {"deep": "x"}]}
        },
        "spec": {
            "type": "website",
            "lifecycle": "production",
            "owner": "web-team",
            "profile": {"weird": null},
            "x-flag": "yes"
        },
        "relations": [{"type": "ownedBy", "targetRef": "group:default/web-team"}],
        "status": {"items": []}
    });
    assert_eq!(round_trip, expected);
    // And it reads back into the same entity.
    let back: pave_model::Entity = serde_json::from_value(round_trip).unwrap();
    assert_eq!(&back, entity);

    // Links with fields `Link` does not model are kept whole.
    let odd = content.replace(
        "      type: dashboard\n",
        "      type: dashboard\n      extra: 1\n",
    );
    let parsed = parse_file(F, &odd).unwrap();
    let m = &parsed[0].entity.metadata;
    assert!(m.links.is_empty());
    assert_eq!(
        m.extra["links"],
        json!([{"url": "https://a.example", "title": "A", "type": "dashboard", "extra": 1}])
    );
}

#[test]
fn yaml_outside_the_fast_subset_reads_the_same() {
    let plain = "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n  name: db\n  description: a b\nspec:\n  type: database\n  owner: team-a\n";
    let fancy = "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata: &m\n  name: db\n  description: >-\n    a\n    b\nspec: {type: database, owner: \"team\\u002da\"}\n";
    let a = parse_file(F, plain).unwrap();
    let b = parse_file(F, fancy).unwrap();
    assert_eq!(a[0].entity, b[0].entity);
    // CRLF line endings are fine too.
    let crlf = plain.replace('\n', "\r\n");
    assert_eq!(parse_file(F, &crlf).unwrap()[0].entity, a[0].entity);
}

#[test]
fn non_mapping_documents_and_bad_yaml() {
    let e = one_err("- a\n- b\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(
        e.message
            .starts_with("expected an entity descriptor mapping, found a sequence")
    );

    let e = one_err("apiVersion: backstage.io/v1alpha1\nkind: [\n");
    assert_eq!(e.file, F);
    assert!(e.line >= 2 && e.column >= 1, "{e}");

    assert_eq!(parse_file(F, "").unwrap().len(), 0);
    assert_eq!(parse_file(F, "# only a comment\n---\n").unwrap().len(), 0);
}
