//! `pave new` end to end: a golden-path repository that is a git repo with
//! one commit and a lock file, whose tests pass and whose pave.yaml parses;
//! bad input refused before anything is written; registration on a live
//! server (and a clear message when the owner team is missing).

mod common;
mod deploy_support;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use std::path::Path;
use std::process::Command;

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pave_new_python_http_makes_a_repo_that_tests_green_and_parses() {
    let dir = scratch_dir("new-python-http");
    let out = pave_cmd(&dir)
        .args(["new", "python-http", "hello", "--owner", "platform"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Created hello from python-http 1.0.0"),
        "{text}"
    );
    assert!(text.contains("Next: cd hello"), "{text}");
    let repo = dir.join("hello");
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&repo, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(
        git(&repo, &["ls-files", ".pave/template.lock"]),
        ".pave/template.lock"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join(".pave/template.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["template"], "python-http");
    assert_eq!(lock["source"], "builtin:python-http");
    assert_eq!(lock["answers"]["owner"], "platform");

    let tests = Command::new("python3")
        .arg("run_tests.py")
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(
        tests.status.success(),
        "{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    assert!(repo.join("reports/junit.xml").is_file());
    let unittest = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(
        unittest.status.success(),
        "{}",
        String::from_utf8_lossy(&unittest.stderr)
    );
    assert_eq!(
        git(&repo, &["status", "--porcelain"]),
        "",
        "test output is ignored"
    );

    let yaml = std::fs::read_to_string(repo.join("pave.yaml")).unwrap();
    let doc = pave_model::parse_pave_yaml("pave.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc.service.entity.metadata.name, "hello");
    let pipeline = doc.pipeline.expect("pipeline");
    assert!(pipeline.jobs.contains_key("test") && pipeline.jobs.contains_key("package"));
    assert!(doc.deploy.is_some());

    // Its pipeline is green with `pave run` (tests with JUnit, then the package).
    let run = pave_cmd(&repo).arg("run").output().unwrap();
    assert!(run.status.success(), "{}{}", stdout(&run), stderr(&run));
    assert!(
        stdout(&run).contains("Tests: 4 passed, 0 failed"),
        "{}",
        stdout(&run)
    );

    // The same again elsewhere gives the same tree (apart from .git).
    let again = pave_cmd(&dir)
        .args([
            "new",
            "python-http",
            "hello",
            "--owner",
            "platform",
            "--dir",
            "second",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let v: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(v["registered"], false);
    for f in v["files"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        assert_eq!(
            std::fs::read(repo.join(f)).unwrap(),
            std::fs::read(dir.join("second").join(f)).unwrap(),
            "{f}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let dir = scratch_dir("new-bad-input");
    let run = |args: &[&str]| pave_cmd(&dir).args(args).output().unwrap();
    let bad_name = run(&["new", "python-http", "bad--name", "--owner", "platform"]);
    assert!(!bad_name.status.success());
    assert!(
        stderr(&bad_name).contains("invalid service name"),
        "{}",
        stderr(&bad_name)
    );
    let no_owner = run(&["new", "python-http", "svc"]);
    assert!(!no_owner.status.success());
    assert!(
        stderr(&no_owner).contains("--owner"),
        "{}",
        stderr(&no_owner)
    );
    let bad_param = run(&[
        "new",
        "python-http",
        "svc",
        "--owner",
        "platform",
        "--param",
        "descripton=x",
    ]);
    assert!(
        stderr(&bad_param).contains("did you mean `description`"),
        "{}",
        stderr(&bad_param)
    );
    let unknown = run(&["new", "no-such-template", "svc", "--owner", "platform"]);
    assert!(
        stderr(&unknown).contains("python-http"),
        "{}",
        stderr(&unknown)
    );
    assert!(!dir.join("svc").exists() && !dir.join("bad--name").exists());

    write(&dir.join("taken/notes.txt"), "mine");
    let taken = run(&[
        "new",
        "python-http",
        "svc",
        "--owner",
        "platform",
        "--dir",
        "taken",
    ]);
    assert!(!taken.status.success());
    assert!(stderr(&taken).contains("not empty"), "{}", stderr(&taken));
    assert_eq!(std::fs::read_dir(dir.join("taken")).unwrap().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_server_the_new_service_is_registered_with_its_owner_and_shipped_to_dev() {
    let dir = scratch_dir("new-server");
    // Declared first so it drops last: the instances die after the server.
    let _instances = deploy_support::Instances(dir.clone());
    let pave = Pave::start(&dir, &[]);
    write(
        &dir.join("teams.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: platform\nspec:\n  type: team\n  children: []\n",
    );
    let applied = pave.cli(&["apply", "-f", "teams.yaml"]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let made = pave.cli(&["new", "python-http", "hello", "--owner", "platform"]);
    assert!(made.status.success(), "{}{}", stdout(&made), stderr(&made));
    assert!(
        stdout(&made).contains("registered hello"),
        "{}",
        stdout(&made)
    );
    assert!(
        stdout(&made).contains("pave trigger hello"),
        "{}",
        stdout(&made)
    );
    // Its first pipeline ran and it answers in dev through the edge proxy.
    let said = format!("{}{}", stdout(&made), stderr(&made));
    assert!(said.contains("run #1 success"), "{said}");
    assert!(
        said.contains("deployment #1 of hello to dev succeeded"),
        "{said}"
    );
    let (code, body) = deploy_support::answer(&pave, "dev").expect("dev answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from hello"), "{body}");
    let services = pave.cli(&["services"]);
    assert!(stdout(&services).contains("hello"), "{}", stdout(&services));
    let service = pave.cli(&["service", "hello", "--json"]);
    assert!(
        stdout(&service).contains("platform"),
        "{}",
        stdout(&service)
    );

    // An owner team that does not exist: said so, repo kept, exit 2.
    let orphan = pave.cli(&["new", "python-http", "orphan", "--owner", "ghosts"]);
    assert_eq!(
        orphan.status.code(),
        Some(2),
        "{}{}",
        stdout(&orphan),
        stderr(&orphan)
    );
    assert!(
        stderr(&orphan).contains("team `ghosts` does not exist"),
        "{}",
        stderr(&orphan)
    );
    assert!(dir.join("orphan/.pave/template.lock").is_file());
    let services = pave.cli(&["services"]);
    assert!(
        !stdout(&services).contains("orphan"),
        "{}",
        stdout(&services)
    );
}
