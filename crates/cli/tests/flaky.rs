//! Flaky tests end to end: a service whose JUnit-reporting test fails on the
//! first run and passes on the second at the same commit is listed by
//! `pave tests flaky` with both runs as evidence; once quarantined, its
//! failure no longer fails the run but is still recorded as failed; once
//! released, it fails the run again.

mod common;

use common::{Pave, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        stdout(out),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// A test script that fails `app::flaky` whenever `marker` is absent (and
/// creates it), and passes it otherwise; `app::steady` always passes.
fn test_script(marker: &Path) -> String {
    let marker = marker.display();
    format!(
        r#"set -e
mkdir -p reports
if [ -e "{marker}" ]; then
  flaky='<testcase classname="app" name="flaky" time="0.01"/>'
  code=0
else
  : > "{marker}"
  flaky='<testcase classname="app" name="flaky" time="0.01"><failure message="first run fails">boom</failure></testcase>'
  code=1
fi
cat > reports/junit.xml <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="unit" tests="2">
<testcase classname="app" name="steady" time="0.01"/>
$flaky
</testsuite></testsuites>
EOF
echo "tests done: exit $code"
exit $code
"#
    )
}

const PIPELINE: &str = "  jobs:
    test:
      steps:
        - name: unit tests
          run: sh ./test.sh
          junit: reports/*.xml
";

#[test]
fn a_flaky_test_is_listed_and_quarantine_keeps_the_run_green() {
    let dir = scratch_dir("flaky");
    let marker = dir.join("flaky-marker");
    let repo = dir.join("hello");
    write(
        &repo.join("pave.yaml"),
        &format!("service:\n  name: hello\n  owner: platform\npipeline:\n{PIPELINE}"),
    );
    write(&repo.join("test.sh"), &test_script(&marker));
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);

    let pave = Pave::start(&dir, &[]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    // Same commit: fails, then passes.
    let first = pave.cli(&["trigger", "hello", "--wait"]);
    assert_eq!(first.status.code(), Some(1), "{}", stdout(&first));
    assert!(
        stdout(&first).contains("run #1 failure"),
        "{}",
        stdout(&first)
    );
    assert!(
        stdout(&first).contains("junit: 2 tests, 1 failed"),
        "{}",
        stdout(&first)
    );
    let second = pave.cli(&["trigger", "hello", "--wait"]);
    assert!(
        second.status.success(),
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    let runs = json(&pave.cli(&["runs", "hello", "--json"]));
    let id = |n: i64| -> String {
        runs.as_array()
            .expect("runs")
            .iter()
            .find(|r| r["number"] == n)
            .and_then(|r| r["id"].as_str())
            .expect("run id")
            .to_string()
    };
    let (run1, run2) = (id(1), id(2));
    let sha = runs[0]["sha"].as_str().expect("sha").to_string();

    let flaky = json(&pave.cli(&["tests", "flaky", "--json"]));
    let list = flaky.as_array().expect("flaky list");
    assert_eq!(list.len(), 1, "only app::flaky is flaky: {flaky}");
    let test = &list[0];
    assert_eq!(test["test_id"], "app::flaky");
    assert_eq!(test["service"], "hello");
    assert_eq!(test["quarantined"], false);
    assert_eq!(test["flake_rate"].as_f64(), Some(0.5));
    let evidence: Vec<(&str, &str, &str)> = test["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| {
            (
                e["run_id"].as_str().unwrap_or(""),
                e["sha"].as_str().unwrap_or(""),
                e["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        evidence,
        [
            (run1.as_str(), sha.as_str(), "failed"),
            (run2.as_str(), sha.as_str(), "passed")
        ]
    );
    let table = pave.cli(&["tests", "flaky", "--service", "hello"]);
    let text = stdout(&table);
    assert!(table.status.success(), "{}", stderr(&table));
    for want in [
        "SERVICE",
        "FLAKE RATE",
        "EVIDENCE RUNS",
        "QUARANTINED",
        "app::flaky",
        "50%",
        &run1,
    ] {
        assert!(text.contains(want), "missing {want}: {text}");
    }

    // Quarantined: the failure is recorded, but the run succeeds.
    let q = pave.cli(&[
        "tests",
        "quarantine",
        "hello",
        "app::flaky",
        "--reason",
        "flips on first run",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    let again = pave.cli(&["tests", "quarantine", "hello", "app::flaky"]);
    assert!(!again.status.success(), "a second quarantine is refused");
    std::fs::remove_file(&marker).expect("reset the marker");
    let third = pave.cli(&["trigger", "hello", "--wait"]);
    let out = stdout(&third);
    assert!(third.status.success(), "{out}{}", stderr(&third));
    assert!(
        out.contains("quarantined tests failed: app::flaky — not failing the job"),
        "{out}"
    );
    assert!(out.contains("run #3 success"), "{out}");
    let runs = json(&pave.cli(&["runs", "hello", "--json"]));
    let run3 = runs[0]["id"].as_str().expect("run 3").to_string();
    let tests = json(&pave.cli(&["tests", "list", &run3, "--json"]));
    let flaky_case = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["test_id"] == "app::flaky")
        .cloned()
        .expect("app::flaky recorded");
    assert_eq!(flaky_case["status"], "failed", "{tests}");
    assert_eq!(flaky_case["quarantined"], true);
    assert_eq!(tests["totals"]["failed"], 1);
    let listed = pave.cli(&["tests", "list", &run3]);
    assert!(
        stdout(&listed).contains("failed [quarantined]"),
        "{}",
        stdout(&listed)
    );
    let flaky = json(&pave.cli(&["tests", "flaky", "--json"]));
    assert_eq!(flaky[0]["quarantined"], true, "{flaky}");

    // Released: its failure fails the run again.
    let released = pave.cli(&["tests", "unquarantine", "hello", "app::flaky"]);
    assert!(released.status.success(), "{}", stderr(&released));
    std::fs::remove_file(&marker).expect("reset the marker");
    let fourth = pave.cli(&["trigger", "hello", "--wait"]);
    assert_eq!(fourth.status.code(), Some(1), "{}", stdout(&fourth));
    assert!(
        stdout(&fourth).contains("run #4 failure"),
        "{}",
        stdout(&fourth)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
