//! Reusable pipeline templates end to end, with the real binary: publish two
//! versions, run a pipeline that `uses:` v1 on the server's agent and with
//! `pave run` (from the server, and offline from --templates), then v2; v1
//! keeps working; a changed 1.0.0 is refused; an unknown version queues nothing.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// Version `version` of template `greet`: two jobs (`say`, then `check`),
/// an output `msg`, a required input `who` and a defaulted `greeting`.
fn greet(version: &str, tag: &str) -> String {
    format!(
        r#"template: {{ name: greet, version: {version}, description: "Say hello" }}
inputs:
  who: {{ required: true, description: "whom to greet" }}
  greeting: {{ default: hello }}
outputs:
  msg: ${{{{ jobs.say.outputs.msg }}}}
jobs:
  say:
    outputs: {{ msg: "${{{{ steps.s.outputs.msg }}}}" }}
    steps:
      - id: s
        run: echo "{tag} ${{{{ inputs.greeting }}}} ${{{{ inputs.who }}}}" && echo "msg={tag}-${{{{ inputs.who }}}}" >> "$PAVE_OUTPUT"
  check:
    needs: say
    steps:
      - run: echo "checked ${{{{ needs.say.outputs.msg }}}}"
"#
    )
}

fn pave_yaml(version: &str) -> String {
    format!(
        r#"service:
  name: hello
  owner: platform
pipeline:
  jobs:
    greet:
      uses: greet@{version}
      with: {{ who: world }}
    after:
      needs: greet
      steps:
        - run: echo "after ${{{{ needs.greet.outputs.msg }}}}"
"#
    )
}

fn commit_pipeline(repo: &Path, version: &str) {
    write(&repo.join("pave.yaml"), &pave_yaml(version));
    git(repo, &["add", "."]);
    git(
        repo,
        &["commit", "-q", "-m", &format!("use greet@{version}")],
    );
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    format!("{}{}", stdout(out), stderr(out))
}

fn json(out: &Output) -> Value {
    ok(out);
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn runs(pave: &Pave) -> usize {
    json(&pave.cli(&["runs", "hello", "--json"]))
        .as_array()
        .map_or(0, Vec::len)
}

fn write_template(dir: &Path, file: &str, text: &str) -> String {
    let path: PathBuf = dir.join(file);
    write(&path, text);
    path.display().to_string()
}

#[test]
fn templates_are_published_versioned_and_used_by_server_and_local_runs() {
    let dir = scratch_dir("pipeline-templates");
    let repo = dir.join("hello");
    write(&repo.join("src/app.txt"), "hello\n");
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_pipeline(&repo, "1.0.0");
    let pave = Pave::start(&dir, &[]);
    ok(&pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]));

    // Before publishing: the run is refused, naming the template, and nothing is queued.
    let refused = pave.cli(&["trigger", "hello", "--wait"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("greet@1.0.0") && err.contains("is registered"),
        "{err}"
    );
    assert_eq!(runs(&pave), 0);

    // Publish v1 (twice: the second is a no-op) and v2.
    let v1 = write_template(&dir, "greet-1.yaml", &greet("1.0.0", "v1"));
    let v2 = write_template(&dir, "greet-2.yaml", &greet("2.0.0", "v2"));
    let out = ok(&pave.cli(&["pipeline-template", "publish", "-f", &v1]));
    assert!(
        out.contains("Published pipeline template greet@1.0.0"),
        "{out}"
    );
    let out = ok(&pave.cli(&["pipeline-template", "publish", "-f", &v1]));
    assert!(out.contains("already published with this content"), "{out}");

    // v1 on the server's agent: template jobs, their outputs wired to `after`.
    let out = ok(&pave.cli(&["trigger", "hello", "--wait"]));
    assert!(out.contains("v1 hello world"), "{out}");
    assert!(out.contains("checked v1-world"), "{out}");
    assert!(out.contains("after v1-world"), "{out}");
    assert!(out.contains("run #1 success"), "{out}");

    // v1 with `pave run`, templates from the server (found through .pave/).
    let local = pave_cmd(&repo)
        .args([
            "run",
            "--no-cache",
            "--server",
            &pave.url,
            "--token",
            &pave.token,
        ])
        .output()
        .expect("pave run");
    let out = ok(&local);
    assert!(
        out.contains("v1 hello world") && out.contains("after v1-world"),
        "{out}"
    );
    // ... and recorded there, planned with the same template.
    assert!(
        out.contains("pave: recording as run #2") && !out.contains("not recording"),
        "{out}"
    );

    ok(&pave.cli(&["pipeline-template", "publish", "-f", &v2]));
    let list = json(&pave.cli(&["pipeline-template", "list", "--json"]));
    let versions: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["version"].as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);
    let shown = json(&pave.cli(&["pipeline-template", "show", "greet@1.0.0", "--json"]));
    assert_eq!(shown["jobs"], serde_json::json!(["say", "check"]));
    assert_eq!(shown["inputs"][0]["name"], "who");
    assert_eq!(shown["inputs"][0]["required"], true);
    assert_eq!(shown["outputs"][0]["job"], "say");
    let text = ok(&pave.cli(&["pipeline-template", "show", "greet@2.0.0"]));
    assert!(
        text.contains("greet@2.0.0") && text.contains("who"),
        "{text}"
    );

    // A changed 1.0.0 is refused; 1.0.0 stays as it was.
    let changed = write_template(&dir, "greet-1-changed.yaml", &greet("1.0.0", "CHANGED"));
    let refused = pave.cli(&["pipeline-template", "publish", "-f", &changed]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("greet@1.0.0") && err.contains("immutable"),
        "{err}"
    );
    let shown = json(&pave.cli(&["pipeline-template", "show", "greet@1.0.0", "--json"]));
    assert!(
        shown["body"].as_str().unwrap_or("").contains("v1"),
        "{shown}"
    );

    // v1 still works after v2 exists; v2 differs.
    let out = ok(&pave.cli(&["trigger", "hello", "--wait"]));
    assert!(
        out.contains("after v1-world") && !out.contains("v2"),
        "{out}"
    );
    commit_pipeline(&repo, "2.0.0");
    let out = ok(&pave.cli(&["trigger", "hello", "--wait"]));
    assert!(
        out.contains("v2 hello world") && out.contains("after v2-world"),
        "{out}"
    );

    // An unknown version: refused with the known versions, nothing queued.
    let before = runs(&pave);
    commit_pipeline(&repo, "9.9.9");
    let refused = pave.cli(&["trigger", "hello"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("greet@9.9.9") && err.contains("1.0.0, 2.0.0"),
        "{err}"
    );
    assert_eq!(runs(&pave), before);

    // `pave run` offline: --templates DIR, with no server to ask.
    commit_pipeline(&repo, "1.0.0");
    let templates = dir.join("templates");
    write(&templates.join("greet@1.0.0.yaml"), &greet("1.0.0", "v1"));
    let offline = pave_cmd(&repo)
        .args(["run", "--no-cache", "--server", "http://127.0.0.1:9"])
        .arg("--templates")
        .arg(&templates)
        .output()
        .expect("pave run");
    let out = ok(&offline);
    assert!(
        out.contains("v1 hello world") && out.contains("after v1-world"),
        "{out}"
    );

    // No local file and no server: a clear error, nothing run.
    commit_pipeline(&repo, "2.0.0");
    let failed = pave_cmd(&repo)
        .args(["run", "--server", "http://127.0.0.1:9"])
        .arg("--templates")
        .arg(&templates)
        .output()
        .expect("pave run");
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(
        err.contains("greet@2.0.0") && err.contains("--templates") && !err.contains("v2 hello"),
        "{err}"
    );
}
