//! The deployment commands without a full deployment: their help and
//! argument rules, `pave env list|create` against a live `pave up`, the
//! server's clear refusal to deploy a service with no green run (nothing
//! created), and addressing by service + env when nothing is in flight.

mod common;

use common::{Pave, pave_cmd, scratch_dir, stderr, stdout, write};
use serde_json::Value;

/// `pave up` on free ports for both the API and the edge proxy, so these
/// tests can run next to others.
fn start(tag: &str) -> Pave {
    let dir = scratch_dir(tag);
    Pave::start(&dir, &["--edge-listen", "127.0.0.1:0"])
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn env_names(pave: &Pave) -> Vec<String> {
    let list = json_of(&pave.cli(&["env", "list", "--json"]));
    list.as_array()
        .expect("an array")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn help_texts_teach_the_commands_and_bad_arguments_are_refused() {
    let dir = scratch_dir("deploy-help");
    let help = pave_cmd(&dir)
        .args(["deploy", "--help"])
        .output()
        .expect("run");
    assert!(help.status.success(), "{}", stderr(&help));
    let text = stdout(&help);
    for needle in [
        "--wait",
        "--artifact",
        "--run",
        "pave deploy hello --env dev --wait",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let top = stdout(&pave_cmd(&dir).arg("--help").output().expect("run"));
    for command in [
        "deploy",
        "promote",
        "rollback",
        "abort",
        "pause",
        "resume",
        "deployments",
        "env",
    ] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(command)),
            "`{command}` missing from pave --help:\n{top}"
        );
    }
    let promote = stdout(
        &pave_cmd(&dir)
            .args(["promote", "--help"])
            .output()
            .expect("run"),
    );
    assert!(
        promote.contains("--step") && promote.contains("pave promote hello --to staging"),
        "{promote}"
    );

    // --to and --step are two different commands; clap refuses both at once.
    let both = pave_cmd(&dir)
        .args([
            "promote", "hello", "--to", "prod", "--step", "--env", "prod",
        ])
        .output()
        .expect("run");
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    // Neither: a sentence saying what to write, before any server is needed.
    let neither = pave_cmd(&dir)
        .args(["promote", "hello"])
        .output()
        .expect("run");
    assert_eq!(neither.status.code(), Some(1));
    assert!(
        stderr(&neither).contains("pave promote hello --to ENV"),
        "{}",
        stderr(&neither)
    );
    // --artifact and --run name the same thing two ways.
    let twice = pave_cmd(&dir)
        .args([
            "deploy",
            "hello",
            "--env",
            "dev",
            "--artifact",
            "sha256:00",
            "--run",
            "r1",
        ])
        .output()
        .expect("run");
    assert_eq!(twice.status.code(), Some(2), "{}", stderr(&twice));
}

#[test]
fn env_list_shows_the_promotion_path_and_create_inserts_in_order() {
    let pave = start("deploy-env");
    assert_eq!(env_names(&pave), ["dev", "staging", "prod"]);
    let first = &json_of(&pave.cli(&["env", "list", "--json"]))[0];
    assert_eq!(first["position"], 1);
    assert_eq!(first["runtime"], "process");

    let created = pave.cli(&[
        "env",
        "create",
        "qa",
        "--after",
        "dev",
        "--description",
        "manual QA",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&created).contains("qa"), "{}", stdout(&created));
    let at_end = json_of(&pave.cli(&["env", "create", "perf", "--json"]));
    assert_eq!(at_end["name"], "perf");
    assert_eq!(env_names(&pave), ["dev", "qa", "staging", "prod", "perf"]);
    let table = stdout(&pave.cli(&["env", "list"]));
    assert!(table.contains("manual QA"), "{table}");

    // A name already on the path is refused and the path stays as it was.
    let again = pave.cli(&["env", "create", "qa"]);
    assert!(!again.status.success());
    assert!(stderr(&again).starts_with("error: "), "{}", stderr(&again));
    let unknown_after = pave.cli(&["env", "create", "uat", "--after", "nowhere"]);
    assert!(!unknown_after.status.success());
    assert_eq!(env_names(&pave), ["dev", "qa", "staging", "prod", "perf"]);
}

#[test]
fn deploying_a_service_without_a_green_run_says_why_and_creates_nothing() {
    let pave = start("deploy-nogreen");
    let file = pave.dir.join("hello/pave.yaml");
    write(&file, "service:\n  name: hello\n  owner: platform\n");
    let applied = pave.cli(&["apply", "-f", &file.display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let out = pave.cli(&["deploy", "hello", "--env", "dev", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: `hello` has no successful run of its default branch"),
        "{err}"
    );
    assert!(err.contains("pave trigger hello"), "{err}");

    let unknown_env = pave.cli(&["deploy", "hello", "--env", "moon"]);
    assert_eq!(unknown_env.status.code(), Some(1));
    assert!(
        stderr(&unknown_env).contains("no environment `moon`"),
        "{}",
        stderr(&unknown_env)
    );

    let list = json_of(&pave.cli(&["deployments", "--service", "hello", "--json"]));
    assert_eq!(list, serde_json::json!([]));
    assert!(stdout(&pave.cli(&["deployments"])).contains("No deployments yet"));

    // Addressing by service + env finds nothing in flight and says so.
    let abort = pave.cli(&["abort", "hello", "--env", "dev"]);
    assert_eq!(abort.status.code(), Some(1));
    assert!(
        stderr(&abort).contains("no deployment of hello to dev is in flight"),
        "{}",
        stderr(&abort)
    );
    let step = pave.cli(&["promote", "hello", "--env", "prod", "--step"]);
    assert_eq!(step.status.code(), Some(1));
    assert!(stderr(&step).contains("in flight"), "{}", stderr(&step));
    let by_id = pave.cli(&["pause", "01NOSUCHDEPLOYMENT"]);
    assert_eq!(by_id.status.code(), Some(1));
    assert!(stderr(&by_id).contains("--env"), "{}", stderr(&by_id));

    let show = pave.cli(&["deployment", "01NOSUCHDEPLOYMENT"]);
    assert_eq!(show.status.code(), Some(1));
    assert!(
        stderr(&show).contains("no deployment `01NOSUCHDEPLOYMENT`"),
        "{}",
        stderr(&show)
    );
}

#[test]
fn service_logs_is_a_subcommand_and_service_name_still_shows_the_service() {
    let pave = start("deploy-svclogs");
    let file = pave.dir.join("hello/pave.yaml");
    write(&file, "service:\n  name: hello\n  owner: platform\n");
    let applied = pave.cli(&["apply", "-f", &file.display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let shown = pave.cli(&["service", "hello"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).starts_with("hello\n"), "{}", stdout(&shown));

    // Nothing deployed: no lines, exit 0, and a hint on stderr.
    let logs = json_of(&pave.cli(&["service", "logs", "hello", "--env", "dev", "--json"]));
    assert_eq!(logs, serde_json::json!([]));
    let text = pave.cli(&["service", "logs", "hello", "--env", "dev", "--lines", "5"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stderr(&text).contains("No output from hello in dev"),
        "{}",
        stderr(&text)
    );
    let missing = pave.cli(&["service", "logs", "nobody", "--env", "dev"]);
    assert_eq!(missing.status.code(), Some(1));
}
