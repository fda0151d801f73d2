//! End to end with the real binary: `pave up`, `pave apply` of a folder, the
//! portal, tokens, the audit trail (and tampering), graceful shutdown and restart.

mod common;

use common::{Pave, http_get, scratch_dir, stderr, stdout, write, write_catalog};
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "command failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn apply_a_catalog_folder_then_read_it_everywhere() {
    let dir = scratch_dir("catalog");
    write_catalog(&dir);
    let pave = Pave::start(&dir, &[]);

    let applied = pave.cli(&["apply", "-f", "catalog"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let text = stdout(&applied);
    assert!(
        text.contains("Applied 6 entities from 3 files: 6 created"),
        "{text}"
    );

    let services = json(&pave.cli(&["services", "--json"]));
    let names: Vec<&str> = services
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["hello", "ledger"]);

    let hello = json(&pave.cli(&["service", "hello", "--json"]));
    assert_eq!(hello["owner"], "platform");
    assert_eq!(
        hello["relations"]["dependsOn"],
        serde_json::json!(["component:default/ledger"])
    );
    assert_eq!(
        hello["relations"]["consumesApi"],
        serde_json::json!(["api:default/ledger-api"])
    );
    let ledger = json(&pave.cli(&["service", "ledger", "--json"]));
    assert_eq!(
        ledger["relations"]["dependencyOf"],
        serde_json::json!(["component:default/hello"])
    );
    assert_eq!(
        ledger["relations"]["apiConsumedBy"],
        Value::Null,
        "apiConsumedBy belongs to the API"
    );

    let teams = stdout(&pave.cli(&["teams"]));
    assert!(
        teams.contains("payments") && teams.contains("platform"),
        "{teams}"
    );
    let shown = stdout(&pave.cli(&["service", "ledger"]));
    assert!(
        shown.contains("owner       payments") && shown.contains("Runbook"),
        "{shown}"
    );

    let (status, page) = http_get(&pave.url, "/").expect("portal");
    assert_eq!(status, 200);
    assert!(
        page.contains("/services/hello") && page.contains("/services/ledger"),
        "{page}"
    );
    let (status, page) = http_get(&pave.url, "/teams/payments").expect("team page");
    assert_eq!(status, 200);
    assert!(page.contains("ledger"));

    // Re-applying is idempotent.
    let again = stdout(&pave.cli(&["apply", "-f", "catalog"]));
    assert!(
        again.contains("0 created, 0 updated, 6 unchanged"),
        "{again}"
    );

    let log = json(&pave.cli(&[
        "audit",
        "log",
        "--subject",
        "component:default/hello",
        "--json",
    ]));
    assert_eq!(log.as_array().map(Vec::len), Some(1));
    assert_eq!(
        log[0]["actor"].as_str().map(|a| a.starts_with("token:")),
        Some(true)
    );
    let verify = pave.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).starts_with("OK: "), "{}", stdout(&verify));
}

#[test]
fn bad_pave_yaml_names_file_line_column_and_stores_nothing() {
    let dir = scratch_dir("bad");
    write_catalog(&dir);
    write(
        &dir.join("catalog/broken/pave.yaml"),
        "service:\n  name: broken\n  ownr: platform\n",
    );
    let pave = Pave::start(&dir, &[]);
    let out = pave.cli(&["apply", "-f", "catalog"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("catalog/broken/pave.yaml:3:3"), "{err}");
    assert!(err.contains("did you mean `owner`"), "{err}");
    let services = json(&pave.cli(&["services", "--json"]));
    assert_eq!(services, serde_json::json!([]));

    let dry = pave.cli(&["apply", "-f", "catalog/checkout", "--dry-run"]);
    assert!(
        stdout(&dry).contains("Would apply 3 entities"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(
        json(&pave.cli(&["services", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn tokens_roles_and_login() {
    let dir = scratch_dir("tokens");
    write_catalog(&dir);
    let pave = Pave::start(&dir, &[]);
    let created = pave.cli(&["token", "create", "--role", "viewer", "--name", "reader"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = stdout(&created).trim().to_string();
    assert!(secret.starts_with("pave_"));

    // A viewer may read but not apply.
    let elsewhere = scratch_dir("elsewhere");
    let as_viewer = |args: &[&str]| {
        common::pave_cmd(&elsewhere)
            .env("PAVE_SERVER", &pave.url)
            .env("PAVE_TOKEN", &secret)
            .args(args)
            .output()
            .expect("run")
    };
    assert!(as_viewer(&["services"]).status.success());
    write(
        &elsewhere.join("pave.yaml"),
        "service:\n  name: sneaky\n  owner: platform\n",
    );
    let refused = as_viewer(&["apply", "-f", "pave.yaml"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("needs the developer role"),
        "{}",
        stderr(&refused)
    );

    // login saves credentials that work from any directory.
    let login = common::pave_cmd(&elsewhere)
        .args(["login", "--server", &pave.url, "--token", &secret])
        .output()
        .expect("login");
    assert!(login.status.success(), "{}", stderr(&login));
    let me = common::pave_cmd(&elsewhere)
        .args(["whoami", "--json"])
        .output()
        .expect("whoami");
    assert_eq!(json(&me)["role"], "viewer");

    let list = json(&pave.cli(&["token", "list", "--json"]));
    let reader = list
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["name"] == "reader")
        .expect("reader")
        .clone();
    assert!(!list.to_string().contains(&secret));
    let revoke = pave.cli(&["token", "revoke", reader["id"].as_str().expect("id")]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let me = common::pave_cmd(&elsewhere)
        .args(["whoami"])
        .output()
        .expect("whoami");
    assert_eq!(me.status.code(), Some(1));
}

#[test]
fn shutdown_is_graceful_and_restart_finds_everything() {
    let dir = scratch_dir("restart");
    write_catalog(&dir);
    let pave = Pave::start(&dir, &[]);
    assert!(pave.cli(&["apply", "-f", "catalog"]).status.success());
    let token = pave.token.clone();
    let events_before = json(&pave.cli(&["audit", "log", "--json", "--limit", "1000"]));
    let (ok, out) = pave.stop("TERM");
    assert!(ok, "SIGTERM should exit 0: {out}");
    assert!(out.contains("Pave stopped."), "{out}");

    let pave = Pave::start(&dir, &[]);
    assert_eq!(pave.token, token, "the admin token survives a restart");
    let services = json(&pave.cli(&["services", "--json"]));
    assert_eq!(services.as_array().map(Vec::len), Some(2));
    let events_after = json(&pave.cli(&["audit", "log", "--json", "--limit", "1000"]));
    assert_eq!(events_before, events_after);
    let (ok, _) = pave.stop("INT");
    assert!(ok, "SIGINT should exit 0");
}

#[test]
fn audit_verify_catches_a_tampered_database() {
    let dir = scratch_dir("tamper");
    write_catalog(&dir);
    let pave = Pave::start(&dir, &[]);
    assert!(pave.cli(&["apply", "-f", "catalog"]).status.success());
    assert!(pave.cli(&["audit", "verify"]).status.success());
    let (ok, _) = pave.stop("TERM");
    assert!(ok);

    // Edit one event's payload behind Pave's back.
    let db = dir.join(".pave/pave.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open sqlite");
        sqlx::query(r#"UPDATE events SET payload = '{"tampered":true}' WHERE seq = 4"#)
            .execute(&mut conn)
            .await
            .expect("tamper");
    });

    let offline = common::pave_cmd(&dir)
        .args([
            "audit",
            "verify",
            "--database",
            &format!("sqlite://{}", db.display()),
        ])
        .output()
        .expect("verify");
    assert_eq!(offline.status.code(), Some(1));
    assert!(
        stderr(&offline).contains("entry #4"),
        "{}",
        stderr(&offline)
    );

    let pave = Pave::start(&dir, &[]);
    let online = pave.cli(&["audit", "verify"]);
    assert_eq!(online.status.code(), Some(1));
    assert!(
        stderr(&online).contains("TAMPERED: entry #4"),
        "{}",
        stderr(&online)
    );
}

#[test]
fn apply_in_a_git_repository_registers_it_as_the_source() {
    let dir = scratch_dir("repo");
    let repo = dir.join("hello");
    write(
        &repo.join("pave.yaml"),
        "service:\n  name: hello\n  owner: platform\n",
    );
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://git.example/acme/hello.git",
    ]);
    let pave = Pave::start(&dir, &[]);
    let applied = pave.cli(&["apply", "-f", "hello/pave.yaml"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let hello = json(&pave.cli(&["service", "hello", "--json"]));
    assert_eq!(hello["repository"], "https://git.example/acme/hello.git");
    let annotations = &hello["document"]["metadata"]["annotations"];
    assert_eq!(annotations["pave.dev/repository-path"], "pave.yaml");
    assert_eq!(annotations["pave.dev/default-branch"], "main");
}
