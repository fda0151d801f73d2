//! Parse + plan of a 10,000-entity import, timed. Run in release to see the
//! figure that matters: `cargo test --release -p pave-catalog --test import_perf -- --nocapture`.
//! Asserts correctness only; the time is printed.

use pave_catalog::plan_import;
use pave_model::parse_file;
use std::fmt::Write;

/// 100 Backstage files of 90 components + 10 groups each: 10,000 entities,
/// ~4.2 MB in all.
fn corpus() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut n = 0usize;
    for f in 0..100 {
        let mut s = String::new();
        for i in 0..90 {
            let id = n;
            n += 1;
            let _ = write!(
                s,
                "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-{id}\n  description: Service number {id} of the benchmark\n  tags: [python, web]\n  annotations:\n    github.com/project-slug: org/svc-{id}\n  links:\n    - url: https://example.com/svc-{id}\n      title: Dashboard\nspec:\n  type: service\n  lifecycle: production\n  owner: team-{}\n  system: sys-{}\n  dependsOn:\n    - component:svc-{}\n    - resource:db-{}\n  providesApis: [api-{id}]\n",
                id % 50,
                id % 20,
                (id + 1) % 9000,
                i % 30
            );
        }
        for g in 0..10 {
            let _ = write!(
                s,
                "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: group-{f}-{g}\nspec:\n  type: team\n  parent: org\n  children: []\n  members: [user-{f}-{g}]\n"
            );
        }
        files.push((format!("repos/r{f}/catalog-info.yaml"), s));
    }
    files
}

#[test]
fn parse_and_plan_10k_entities() {
    let files = corpus();
    // One warm-up run (a server process is warm), then the measured one.
    {
        let start = std::time::Instant::now();
        let mut parsed = Vec::new();
        for (name, content) in &files {
            parsed.extend(parse_file(name, content).expect("corpus parses"));
        }
        let t1 = start.elapsed();
        let plan = plan_import(parsed).expect("corpus plans");
        let t2 = start.elapsed();
        drop(plan);
        println!(
            "warm-up: parse {t1:?}, plan {:?}, dropping the plan {:?}",
            t2 - t1,
            start.elapsed() - t2
        );
    }
    let bytes: usize = files.iter().map(|(_, c)| c.len()).sum();
    let start = std::time::Instant::now();
    let mut parsed = Vec::new();
    for (name, content) in &files {
        parsed.extend(parse_file(name, content).expect("corpus parses"));
    }
    let parse_time = start.elapsed();
    let plan = plan_import(parsed).expect("corpus plans");
    let total = start.elapsed();
    println!(
        "parse+plan of {} entities ({:.1} MB): {:?} (parse {:?}, plan {:?})",
        plan.entities.len(),
        bytes as f64 / 1e6,
        total,
        parse_time,
        total - parse_time
    );
    assert_eq!(plan.entities.len(), 10_000);
    let first = &plan.entities[0];
    assert_eq!(first.entity_ref.to_string(), "component:default/svc-0");
    assert_eq!(
        first.owner.as_ref().map(ToString::to_string).as_deref(),
        Some("group:default/team-0")
    );
    // ownedBy, ownerOf, partOf, hasPart, 2 x dependsOn, 2 x dependencyOf, providesApi, apiProvidedBy
    assert_eq!(first.relations.len(), 10);
    // Input order is kept (the plan is built on several threads).
    for (i, e) in plan.entities.iter().enumerate() {
        let (file, within) = (i / 100, i % 100);
        let expected = if within < 90 {
            format!("svc-{}", file * 90 + within)
        } else {
            format!("group-{file}-{}", within - 90)
        };
        assert_eq!(e.entity_ref.name, expected);
    }
    let group = &plan.entities[90];
    assert_eq!(group.entity_ref.to_string(), "group:default/group-0-0");
    assert_eq!(group.relations.len(), 4);
}
