//! `pave run` end to end: the real binary in real git repositories, running
//! a GitHub-Actions-shaped pipeline (build with an artifact, tests writing
//! JUnit XML, lint in parallel), the step cache across runs, failures and
//! their dependents, and bad YAML.

mod common;

use common::{pave_cmd, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

/// A git repository with `files`, committed.
fn repo(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch_dir(tag).join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["config", "user.name", "Pave Test"]);
    git(&dir, &["config", "user.email", "test@pave.invalid"]);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "init"]);
    dir
}

fn pave_run(dir: &Path, extra: &[&str]) -> Output {
    let cache = dir.parent().unwrap().join("cache");
    pave_cmd(dir)
        .arg("run")
        .arg("--cache-dir")
        .arg(&cache)
        .args(extra)
        .output()
        .expect("pave run")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The summary table row of `job`/`step`, as whitespace-split cells.
fn row(stdout: &str, job: &str, step: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('['))
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| {
            cells.first().map(String::as_str) == Some(job)
                && cells.get(1).map(String::as_str) == Some(step)
        })
        .unwrap_or_else(|| panic!("no row {job} {step} in:\n{stdout}"))
}

const GREEN: &str = r#"service: { name: hello, owner: payments }
pipeline:
  name: CI
  on: [push]
  env: { APP: hello }
  jobs:
    build:
      runs-on: ubuntu-latest
      steps:
        - name: package
          cache: { inputs: ["src/**"], outputs: [dist] }
          run: |
            echo "packaging $APP"
            mkdir -p dist
            tar -cf - src | gzip -n > dist/app.tar.gz
      artifacts:
        - { name: app, path: dist/app.tar.gz }
    test:
      needs: build
      steps:
        - name: unit
          junit: "reports/*.xml"
          run: python3 run_tests.py
        - name: workspace
          run: |
            test ! -e ignored.txt
            cat untracked.txt
    lint:
      steps:
        - { name: lint, run: 'echo "lint ok"; echo "lint warning" >&2' }
"#;

const RUN_TESTS: &str = r#"import sys, unittest
from xml.sax.saxutils import quoteattr

class Calc(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(1 + 1, 2)
    def test_subtracts(self):
        self.assertEqual(3 - 1, 2)

result = unittest.TestResult()
suite = unittest.defaultTestLoader.loadTestsFromTestCase(Calc)
suite.run(result)
failed = {t.id(): m for t, m in result.failures + result.errors}
import os
os.makedirs("reports", exist_ok=True)
with open("reports/unit.xml", "w") as f:
    f.write('<testsuite name="calc" tests="%d">\n' % suite.countTestCases())
    for t in unittest.defaultTestLoader.loadTestsFromTestCase(Calc):
        name = t.id().split(".")[-1]
        f.write('  <testcase classname="Calc" name=%s>' % quoteattr(name))
        if t.id() in failed:
            f.write('<failure message="failed"/>')
        f.write('</testcase>\n')
    f.write('</testsuite>\n')
print("ran %d tests" % result.testsRun, file=sys.stderr)
sys.exit(0 if result.wasSuccessful() else 1)
"#;

#[test]
fn green_pipeline_streams_summarizes_and_caches() {
    let dir = repo(
        "run-green",
        &[
            ("pave.yaml", GREEN),
            ("run_tests.py", RUN_TESTS),
            ("src/main.py", "print('hi')\n"),
            (".gitignore", "ignored.txt\n"),
        ],
    );
    std::fs::write(dir.join("ignored.txt"), "secret local file").unwrap();
    std::fs::write(dir.join("untracked.txt"), "untracked is tested").unwrap();

    let out = pave_run(&dir, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Live, prefixed output, stdout and stderr lines alike.
    assert!(
        stdout.contains("[build › package] packaging hello\n"),
        "{stdout}"
    );
    assert!(stdout.contains("[lint › lint] lint ok\n"));
    assert!(stdout.contains("[lint › lint] lint warning\n"));
    assert!(stdout.contains("[test › unit] ran 2 tests\n"));
    assert!(stdout.contains("[test › workspace] untracked is tested\n"));
    // test starts only after build finished.
    let build_done = stdout.find("[build] success").unwrap();
    let test_started = stdout.find("[test] started").unwrap();
    assert!(build_done < test_started);
    // Summary.
    assert!(
        stdout.contains("JOB    STEP       STATUS   DURATION  CACHE"),
        "{stdout}"
    );
    let r = row(&stdout, "build", "package");
    assert_eq!((r[2].as_str(), r[4].as_str()), ("success", "miss"));
    assert_eq!(row(&stdout, "lint", "lint")[4], "-");
    let art = stdout
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(art.contains("sha256:") && art.ends_with("build"), "{art}");
    assert!(stdout.contains("Tests: 2 passed, 0 failed, 0 skipped"));
    assert!(stdout.contains("succeeded"));

    // Second run: the packaging step is restored from the cache.
    let out2 = pave_run(&dir, &[]);
    let (stdout2, stderr2) = text(&out2);
    assert!(out2.status.success(), "{stdout2}\n{stderr2}");
    assert!(
        stdout2.contains("[build › package] ▸ cache hit "),
        "{stdout2}"
    );
    assert!(
        stdout2.contains("[build › package] packaging hello\n"),
        "log replayed"
    );
    let r = row(&stdout2, "build", "package");
    assert_eq!((r[2].as_str(), r[4].as_str()), ("success", "hit"));
    // Same bytes, same digest.
    let art2 = stdout2.lines().find(|l| l.starts_with("app ")).unwrap();
    assert_eq!(art, art2);

    // --job runs a job and what it needs, and --json prints the report.
    let out3 = pave_run(&dir, &["--job", "test", "--json"]);
    let (stdout3, stderr3) = text(&out3);
    assert!(out3.status.success(), "{stderr3}");
    let report: serde_json::Value = serde_json::from_str(&stdout3).expect("json report");
    assert_eq!(report["outcome"], "success");
    let keys: Vec<&str> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["build", "test"]);
    assert_eq!(report["jobs"][0]["steps"][0]["cache"], "hit");
    assert_eq!(report["jobs"][1]["tests"].as_array().unwrap().len(), 2);
    assert!(
        stderr3.contains("[test › unit] ran 2 tests"),
        "logs on stderr"
    );
}

#[test]
fn failing_job_fails_the_run_and_skips_dependents_but_not_always() {
    let dir = repo(
        "run-fail",
        &[(
            "pave.yaml",
            r#"service: { name: hello, owner: payments }
pipeline:
  jobs:
    test:
      steps:
        - { name: unit, run: 'echo "1 test failed" >&2; exit 2' }
    deploy:
      needs: test
      steps: [ { name: ship, run: touch /tmp/should-not-exist } ]
    notify:
      needs: [test]
      if: always()
      steps: [ { name: tell, run: 'echo "test was ${{ needs.test.result }}"' } ]
"#,
        )],
    );
    let out = pave_run(&dir, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("[test › unit] 1 test failed"));
    assert!(stdout.contains("[test › unit] ▸ failure (exit code 2)"));
    assert!(
        stdout.contains("[deploy] skipped: needed job `test` failed"),
        "{stdout}"
    );
    assert!(stdout.contains("[notify › tell] test was failure"));
    assert_eq!(row(&stdout, "test", "unit")[2], "failure");
    assert_eq!(row(&stdout, "deploy", "-")[2], "skipped");
    assert_eq!(row(&stdout, "notify", "tell")[2], "success");
    assert!(stdout.contains("failed in"));
}

#[test]
fn bad_pave_yaml_reports_located_errors_and_runs_nothing() {
    let dir = repo(
        "run-bad",
        &[(
            "pave.yaml",
            r#"service: { name: hello, owner: payments }
pipeline:
  jobs:
    build:
      steps:
        - run: touch ran.txt
    test:
      needs: biuld
      steps:
        - run: echo ${{ steps.nope.outputs.x }}
"#,
        )],
    );
    let out = pave_run(&dir, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("pave.yaml:8:14: "), "{stderr}");
    assert!(stderr.contains("biuld"), "{stderr}");
    assert!(stderr.contains("pave.yaml:10:"), "every error: {stderr}");
    assert!(stderr.contains("nothing was run"));
    assert!(!stdout.contains('['), "{stdout}");
    assert!(!dir.join("ran.txt").exists());

    // No pipeline at all: a clear error.
    std::fs::write(
        dir.join("pave.yaml"),
        "service: { name: hello, owner: payments }\n",
    )
    .unwrap();
    let out = pave_run(&dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no `pipeline:` section"),
        "{}",
        text(&out).1
    );
}
