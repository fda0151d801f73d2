//! Test results over HTTP: agents' reports carry test cases that the run's
//! test list shows; a test that passed and failed on one commit (or passed
//! on retry) is listed as flaky with its evidence; quarantine is
//! team-scoped, refused requests change nothing, and claims carry the
//! service's quarantined test ids.

mod common;

use common::TestServer;
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

const PAVE_YAML: &str = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    test:
      steps: [ { run: ./test.sh, junit: 'reports/*.xml' } ]
";

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", server.url);
    let client = common::http();
    let mut req = match method {
        "post" => client.post(&url),
        "delete" => client.delete(&url),
        _ => client.get(&url),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn as_role(
    server: &TestServer,
    method: &str,
    path: &str,
    role: Role,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(server, method, path, &server.tokens[&role], body).await
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    as_role(server, "get", path, Role::Viewer, None).await
}

async fn server_with_service() -> TestServer {
    let server = common::start().await;
    let (status, body) = as_role(
        &server,
        "post",
        "/api/v1/apply",
        Role::Developer,
        Some(json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
}

fn case(name: &str, status: &str, flaky_reruns: u32) -> Value {
    json!({ "suite": "unit", "classname": "app", "name": name, "status": status,
            "duration_ms": 3, "message": if status == "passed" { Value::Null } else { json!("boom") },
            "flaky_reruns": flaky_reruns, "failed_reruns": 0 })
}

/// Triggers a run at `sha` and claims its job: (run id, claim).
async fn trigger_and_claim(server: &TestServer, sha: &str) -> (String, Value) {
    let (status, run) = as_role(
        server,
        "post",
        "/api/v1/services/hello/runs",
        Role::Developer,
        Some(json!({ "ref": "refs/heads/main", "sha": sha, "pave_yaml": PAVE_YAML })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let (status, claim) = as_role(
        server,
        "post",
        "/api/v1/agents/claim",
        Role::Agent,
        Some(json!({ "agent": "a1", "wait_seconds": 5 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{claim}");
    (run["id"].as_str().expect("run id").to_string(), claim)
}

async fn complete(server: &TestServer, claim: &Value, tests: Value) -> (StatusCode, Value) {
    as_role(
        server,
        "post",
        &format!(
            "/api/v1/jobs/{}/complete",
            claim["job_id"].as_str().expect("job id")
        ),
        Role::Developer,
        Some(json!({
            "lease_token": claim["lease_token"],
            "outcome": "success",
            "result": { "steps": [], "tests": tests },
        })),
    )
    .await
}

/// A run at `sha` whose one job reports `tests`: the run id.
async fn run_with(server: &TestServer, sha: &str, tests: Value) -> String {
    let (run, claim) = trigger_and_claim(server, sha).await;
    let (status, body) = complete(server, &claim, tests).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_tests_are_listed_with_their_evidence() {
    let server = server_with_service().await;
    let r1 = run_with(
        &server,
        SHA_A,
        json!([case("flips", "passed", 0), case("steady", "passed", 0)]),
    )
    .await;
    // A malformed report is refused (422) and the job keeps running.
    let (r2, claim) = trigger_and_claim(&server, SHA_A).await;
    let (status, body) = complete(&server, &claim, json!([{ "name": "x" }])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, run) = get(&server, &format!("/api/v1/runs/{r2}")).await;
    assert_eq!(run["jobs"][0]["status"], "running", "{run}");
    let (status, body) = complete(
        &server,
        &claim,
        json!([
            case("flips", "failed", 0),
            case("steady", "passed", 0),
            case("retried", "passed", 2)
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r3 = run_with(&server, SHA_B, json!([case("flips", "passed", 0)])).await;

    // The run's tests, with totals.
    let (status, tests) = get(&server, &format!("/api/v1/runs/{r2}/tests")).await;
    assert_eq!(status, StatusCode::OK, "{tests}");
    assert_eq!(
        tests["totals"],
        json!({ "tests": 3, "passed": 2, "failed": 1, "errors": 0, "skipped": 0, "flaky": 1 })
    );
    assert_eq!(tests["tests"][0]["test_id"], "app::flips");
    assert_eq!(tests["tests"][0]["status"], "failed");
    assert_eq!(tests["tests"][0]["message"], "boom");
    assert_eq!(tests["tests"][0]["job"], "test");
    assert_eq!(tests["sha"], SHA_A);
    let (status, _) = get(&server, "/api/v1/runs/01AAAAAAAAAAAAAAAAAAAAAAAA/tests").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Flaky: `flips` (pass and fail on SHA_A) and `retried` (passed on retry).
    let (status, flaky) = get(&server, "/api/v1/tests/flaky?service=hello").await;
    assert_eq!(status, StatusCode::OK, "{flaky}");
    let list = flaky.as_array().expect("array");
    let ids: Vec<&str> = list.iter().filter_map(|f| f["test_id"].as_str()).collect();
    assert_eq!(ids, ["app::retried", "app::flips"], "{flaky}");
    let flips = &list[1];
    assert_eq!(flips["service"], "hello");
    assert_eq!(
        (&flips["failing"], &flips["observations"]),
        (&json!(1), &json!(3))
    );
    assert!((flips["flake_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        flips["evidence"],
        json!([
            { "run_id": r1, "sha": SHA_A, "status": "passed", "time": flips["evidence"][0]["time"] },
            { "run_id": r2, "sha": SHA_A, "status": "failed", "time": flips["evidence"][1]["time"] },
        ])
    );
    assert_eq!(
        flips["reasons"],
        json!([{ "kind": "mixed_on_commit", "sha": SHA_A }])
    );
    assert_eq!(flips["last_seen"], flips["evidence"][1]["time"]);
    assert_eq!(flips["quarantined"], false);
    assert!(
        !flaky.to_string().contains(&r3),
        "a pass on another commit is not evidence"
    );
    assert_eq!(list[0]["reasons"], json!([{ "kind": "passed_on_retry" }]));
    assert_eq!(list[0]["evidence"][0]["status"], "passed_on_retry");

    // Every service; bad parameters and unknown services.
    let (_, all) = get(&server, "/api/v1/tests/flaky").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let (status, _) = get(&server, "/api/v1/tests/flaky?service=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&server, "/api/v1/tests/flaky?days=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_is_team_scoped_and_reaches_claims() {
    let server = server_with_service().await;
    let path = "/api/v1/services/hello/tests/quarantine";
    let other = common::make_token(&server.store, Role::Developer, Some("search")).await;
    let mine = common::make_token(&server.store, Role::Developer, Some("payments")).await;
    let body = json!({ "test_id": "app::flips", "reason": "flaky on CI" });

    // Refused requests change nothing.
    let (status, _) = as_role(&server, "post", path, Role::Viewer, Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&server, "post", path, &other, Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &server,
        "post",
        path,
        &mine,
        Some(json!({ "test_id": "  " })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &server,
        "post",
        path,
        &mine,
        Some(json!({ "test_id": "a", "extra": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &server,
        "post",
        "/api/v1/services/nope/tests/quarantine",
        &mine,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = get(&server, path).await;
    assert_eq!(listed, json!([]));

    let (status, added) = call(&server, "post", path, &mine, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["test_id"], "app::flips");
    assert_eq!(added["reason"], "flaky on CI");
    let (status, _) = call(&server, "post", path, &mine, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, listed) = get(&server, path).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["service"], "hello");

    // A claimed job of the service carries the quarantined ids.
    let (_, claim) = trigger_and_claim(&server, SHA_A).await;
    assert_eq!(claim["quarantined"], json!(["app::flips"]));
    let (status, _) = complete(&server, &claim, json!([case("flips", "failed", 0)])).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = trigger_and_claim(&server, SHA_A).await;
    complete(&server, &again, json!([case("flips", "passed", 0)])).await;
    let (_, flaky) = get(&server, "/api/v1/tests/flaky?service=hello").await;
    assert_eq!(flaky[0]["test_id"], "app::flips");
    assert_eq!(flaky[0]["quarantined"], true);

    // Release: no id or two different ids are refused; another team may not.
    let (status, _) = call(&server, "delete", path, &mine, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &server,
        "delete",
        &format!("{path}?test_id=app%3A%3Aflips"),
        &mine,
        Some(json!({ "test_id": "other" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &server,
        "delete",
        &format!("{path}?test_id=app%3A%3Aflips"),
        &other,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = get(&server, path).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let (status, _) = call(
        &server,
        "delete",
        &format!("{path}?test_id=app%3A%3Aflips"),
        &mine,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &server,
        "delete",
        path,
        &mine,
        Some(json!({ "test_id": "app::flips" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already released");
    let (_, listed) = get(&server, path).await;
    assert_eq!(listed, json!([]));

    // Quarantine again with a body-only DELETE to release.
    call(&server, "post", path, &mine, Some(body)).await;
    let (status, _) = call(
        &server,
        "delete",
        path,
        &mine,
        Some(json!({ "test_id": "app::flips" })),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (_, events) = as_role(
        &server,
        "get",
        "/api/v1/audit/events?limit=1000",
        Role::Viewer,
        None,
    )
    .await;
    let kinds: Vec<&str> = events
        .as_array()
        .or_else(|| events["events"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| e["type"].as_str().or(e["event_type"].as_str()))
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("dev.pave.test.quarantined"))
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("dev.pave.test.unquarantined"))
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("dev.cdevents.testsuiterun.finished"))
            .count(),
        2
    );
}
