//! End to end with the real binary: `pave secret set` (stdin and
//! --from-env), a pipeline that echoes the secret shows `***` in the logs
//! `pave trigger --wait` prints and the server keeps, the value is in no
//! event or API answer, and the run's artifacts were uploaded by the agent
//! and download by digest from the server.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

const VALUE: &str = "pa55-w0rd-e2e-91ab";
const OTHER: &str = "from-env-value-77c3";

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

fn get(pave: &Pave, path: &str) -> (u16, String) {
    common::http_get_auth(&pave.url, path, Some(&pave.token)).expect("http get")
}

#[test]
fn secrets_are_masked_end_to_end_and_artifacts_download_by_digest() {
    let dir = scratch_dir("secrets");
    let repo = dir.join("hello");
    write(
        &repo.join("pave.yaml"),
        "service:\n  name: hello\n  owner: platform\npipeline:\n  jobs:\n    build:\n      steps:\n        - name: use\n          run: echo \"token=$TOKEN other=$OTHER\" && printf '%s' \"$TOKEN\" | wc -c && mkdir -p dist && echo artifact-body > dist/out.txt\n          env:\n            TOKEN: ${{ secrets.API_TOKEN }}\n            OTHER: ${{ secrets.OTHER_TOKEN }}\n        - name: unmapped\n          run: echo \"unmapped=[$API_TOKEN]\"\n      artifacts:\n        - { name: out, path: dist/out.txt }\n",
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let pave = Pave::start(&dir, &[]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    // From stdin (a trailing newline is dropped) and from an env var.
    let mut child = pave_cmd(&dir)
        .args(["secret", "set", "hello", "API_TOKEN"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{VALUE}\n").as_bytes())
        .expect("write");
    let set = child.wait_with_output().expect("wait");
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(!stdout(&set).contains(VALUE) && !stderr(&set).contains(VALUE));
    let set = pave_cmd(&dir)
        .args([
            "secret",
            "set",
            "hello",
            "OTHER_TOKEN",
            "--from-env",
            "MY_VAR",
        ])
        .env("MY_VAR", OTHER)
        .output()
        .expect("run");
    assert!(set.status.success(), "{}", stderr(&set));
    let bad = pave.cli(&["secret", "set", "hello", "bad-name", "--from-env", "MY_VAR"]);
    assert!(!bad.status.success());

    let list = pave.cli(&["secret", "list", "hello"]);
    let out = stdout(&list);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        out.contains("API_TOKEN") && out.contains("OTHER_TOKEN"),
        "{out}"
    );
    assert!(!out.contains(VALUE) && !out.contains(OTHER));

    let run = pave.cli(&["trigger", "hello", "--wait", "--json"]);
    let (out, err) = (stdout(&run), stderr(&run));
    assert!(run.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("token=*** other=***"), "{err}");
    assert!(
        err.contains(&format!("{}", VALUE.len())),
        "the step saw the real value: {err}"
    );
    assert!(err.contains("unmapped=[]"), "only env: maps secrets: {err}");
    for text in [&out, &err] {
        assert!(!text.contains(VALUE) && !text.contains(OTHER));
    }
    let detail: Value = serde_json::from_str(&out).expect("run json");
    let run_id = detail["id"].as_str().expect("run id").to_string();

    // The server's log, answers and events never hold the values.
    for path in [
        format!("/api/v1/runs/{run_id}/logs?limit=10000"),
        format!("/api/v1/runs/{run_id}"),
        "/api/v1/audit/events?limit=10000".to_string(),
        "/api/v1/services/hello/secrets".to_string(),
        "/api/v1/services/hello".to_string(),
    ] {
        let (status, body) = get(&pave, &path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains(VALUE) && !body.contains(OTHER),
            "{path} leaks: {body}"
        );
    }
    let (_, logs) = get(&pave, &format!("/api/v1/runs/{run_id}/logs?limit=10000"));
    assert!(logs.contains("token=*** other=***"), "{logs}");

    // The artifact was uploaded by the agent and downloads by digest.
    let (status, body) = get(&pave, &format!("/api/v1/runs/{run_id}/artifacts"));
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list[0]["name"], "out", "{list}");
    assert_eq!(list[0]["stored"], true, "{list}");
    let download = list[0]["download"].as_str().expect("download path");
    let (status, blob) = get(&pave, download);
    assert_eq!(status, 200);
    assert_eq!(blob, "artifact-body\n");
    let (_, events) = get(&pave, "/api/v1/audit/events?limit=10000");
    assert!(
        events.contains("dev.cdevents.artifact.packaged.0.2.0"),
        "{events}"
    );

    let deleted = pave.cli(&["secret", "delete", "hello", "OTHER_TOKEN"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let list = pave.cli(&["secret", "list", "hello"]);
    assert!(!stdout(&list).contains("OTHER_TOKEN"));
    pave.stop("TERM");
    let _ = std::fs::remove_dir_all(&dir);
}
