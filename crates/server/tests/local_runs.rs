//! Local runs over real HTTP (`POST /api/v1/runs/local`, what `pave run`
//! uses to record itself): jobs leased to the caller and never claimed by
//! agents, reported through the agent calls with a developer token; bad
//! input changes nothing; a lost caller's run ends failed. And
//! `PUT /api/v1/services/{name}/repository`.

mod common;

use common::{TestServer, make_token};
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

const PAVE_YAML: &str = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    test:
      steps: [ { run: 'true' } ]
    build:
      needs: test
      steps: [ { run: 'true' } ]
    lint:
      steps: [ { run: 'true' } ]
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
        "put" => client.put(&url),
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

fn token(server: &TestServer, role: Role) -> String {
    server.tokens[&role].clone()
}

async fn server_with_service() -> TestServer {
    let server = common::start().await;
    let dev = token(&server, Role::Developer);
    let (status, body) = call(
        &server,
        "post",
        "/api/v1/apply",
        &dev,
        Some(json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
}

fn local_body(extra: Value) -> Value {
    let mut body = json!({
        "service": "hello",
        "ref": "refs/heads/main",
        "sha": SHA,
        "dirty": true,
        "pave_yaml": PAVE_YAML,
        "host": "laptop",
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}

async fn run_count(server: &TestServer) -> usize {
    let (_, runs) = call(
        server,
        "get",
        "/api/v1/services/hello/runs",
        &token(server, Role::Viewer),
        None,
    )
    .await;
    runs.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_is_recorded_through_the_agent_calls_and_never_claimed() {
    let server = server_with_service().await;
    let dev = token(&server, Role::Developer);
    let (status, run) = call(
        &server,
        "post",
        "/api/v1/runs/local",
        &dev,
        Some(local_body(json!({ "jobs": ["build"] }))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["trigger"], "local");
    assert_eq!(run["executor"], "local");
    assert_eq!(run["dirty"], true);
    assert_eq!(run["status"], "running");
    let jobs = run["jobs"].as_array().expect("jobs").clone();
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j["key"].as_str()).collect();
    assert_eq!(
        keys,
        vec!["test", "build"],
        "--job build keeps what it needs"
    );
    assert!(jobs.iter().all(|j| j["agent"] == "local:laptop"));
    let run_id = run["id"].as_str().expect("id").to_string();

    // An agent polling meanwhile is never handed these jobs.
    let agent = token(&server, Role::Agent);
    let (status, claimed) = call(
        &server,
        "post",
        "/api/v1/agents/claim",
        &agent,
        Some(json!({ "agent": "a1", "wait_seconds": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{claimed}");

    let (test, build) = (&jobs[0], &jobs[1]);
    let job_path = |j: &Value| format!("/api/v1/jobs/{}", j["id"].as_str().unwrap());
    let (status, body) = call(
        &server,
        "post",
        &format!("{}/logs", job_path(test)),
        &dev,
        Some(json!({ "lease_token": test["lease_token"], "lines": [
            { "step": "1", "stream": "stdout", "text": "ran on my laptop" }
        ] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &server,
        "post",
        &format!("{}/heartbeat", job_path(build)),
        &dev,
        Some(json!({ "lease_token": build["lease_token"], "lease_seconds": 30 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A token is bound to its job.
    let (status, _) = call(
        &server,
        "post",
        &format!("{}/heartbeat", job_path(build)),
        &dev,
        Some(json!({ "lease_token": test["lease_token"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = call(
        &server,
        "post",
        &format!("{}/complete", job_path(test)),
        &dev,
        Some(json!({ "lease_token": test["lease_token"], "outcome": "success",
            "result": { "tests": [
                { "suite": "unit", "classname": "app", "name": "adds", "status": "passed" },
                { "suite": "unit", "classname": "app", "name": "divides", "status": "failed", "message": "boom" }
            ] } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &server,
        "post",
        &format!("{}/complete", job_path(build)),
        &dev,
        Some(json!({ "lease_token": build["lease_token"], "outcome": "failure" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["status"], "finished");
    assert_eq!(body["run"]["outcome"], "failure");

    let viewer = token(&server, Role::Viewer);
    let (_, detail) = call(
        &server,
        "get",
        &format!("/api/v1/runs/{run_id}"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(detail["outcome"], "failure", "{detail}");
    assert_eq!(detail["executor"], "local", "{detail}");
    assert_eq!(detail["dirty"], true, "{detail}");
    let (_, logs) = call(
        &server,
        "get",
        &format!("/api/v1/runs/{run_id}/logs"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(logs["lines"][0]["text"], "ran on my laptop", "{logs}");
    let (_, tests) = call(
        &server,
        "get",
        &format!("/api/v1/runs/{run_id}/tests"),
        &viewer,
        None,
    )
    .await;
    assert!(tests.to_string().contains("divides"), "{tests}");
    assert_eq!(run_count(&server).await, 1);

    // A second local run of the same commit where the test passes: flaky
    // detection sees local runs like any other.
    let (status, again) = call(
        &server,
        "post",
        "/api/v1/runs/local",
        &dev,
        Some(local_body(json!({ "jobs": ["test"] }))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let test = &again["jobs"][0];
    let (status, body) = call(
        &server,
        "post",
        &format!("{}/complete", job_path(test)),
        &dev,
        Some(
            json!({ "lease_token": test["lease_token"], "outcome": "success",
            "result": { "tests": [
                { "suite": "unit", "classname": "app", "name": "divides", "status": "passed" }
            ] } }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, flaky) = call(
        &server,
        "get",
        "/api/v1/tests/flaky?service=hello",
        &viewer,
        None,
    )
    .await;
    let ids: Vec<&str> = flaky
        .as_array()
        .expect("flaky list")
        .iter()
        .filter_map(|f| f["test_id"].as_str())
        .collect();
    assert_eq!(ids, ["app::divides"], "{flaky}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_local_runs_change_nothing() {
    let server = server_with_service().await;
    let dev = token(&server, Role::Developer);
    let other = "service: { name: other, owner: payments }\npipeline:\n  jobs:\n    a:\n      steps: [ { run: 'true' } ]\n";
    let cases = [
        (
            local_body(json!({ "service": "nope" })),
            StatusCode::NOT_FOUND,
        ),
        (
            local_body(json!({ "pave_yaml": other })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "jobs": ["deploy"] })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "lease_seconds": 0 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "sha": "" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "host": "a\nb" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "pave_yaml": "service: [" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            local_body(json!({ "service": "Bad Name!" })),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in cases {
        let (status, answer) = call(
            &server,
            "post",
            "/api/v1/runs/local",
            &dev,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    // A token scoped to another team may not record runs of this service.
    let scoped = make_token(&server.store, Role::Developer, Some("platform")).await;
    let (status, _) = call(
        &server,
        "post",
        "/api/v1/runs/local",
        &scoped,
        Some(local_body(json!({}))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(run_count(&server).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_whose_client_vanished_ends_failed() {
    let server = server_with_service().await;
    let dev = token(&server, Role::Developer);
    let (status, run) = call(
        &server,
        "post",
        "/api/v1/runs/local",
        &dev,
        Some(local_body(json!({ "jobs": ["lint"], "lease_seconds": 2 }))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_str().expect("id").to_string();
    let viewer = token(&server, Role::Viewer);
    let deadline = Instant::now() + Duration::from_secs(60);
    let detail = loop {
        let (_, detail) = call(&server, "get", &format!("/api/v1/runs/{id}"), &viewer, None).await;
        if detail["status"] == "finished" {
            break detail;
        }
        assert!(
            Instant::now() < deadline,
            "the lost run never ended: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(detail["outcome"], "failure", "{detail}");
    let job = &detail["jobs"][0];
    assert_eq!(job["attempt"], 1, "not re-queued: {job}");
    assert!(
        job["reason"]
            .as_str()
            .is_some_and(|r| r.contains("local runner lost")),
        "{job}"
    );
    // The vanished client's late report is refused.
    let (status, _) = call(
        &server,
        "post",
        &format!(
            "/api/v1/jobs/{}/complete",
            run["jobs"][0]["id"].as_str().unwrap()
        ),
        &dev,
        Some(json!({ "lease_token": run["jobs"][0]["lease_token"], "outcome": "success" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_can_be_pointed_at_another_repository() {
    let server = server_with_service().await;
    let dev = token(&server, Role::Developer);
    let path = "/api/v1/services/hello/repository";
    let (status, body) = call(
        &server,
        "put",
        path,
        &dev,
        Some(json!({ "url": "git@git.example:acme/hello.git", "path": "services/hello", "default_branch": "trunk" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(body["path"], "services/hello/pave.yaml");
    let (_, service) = call(&server, "get", "/api/v1/services/hello", &dev, None).await;
    assert_eq!(service["repository"], "git@git.example:acme/hello.git");
    let annotations = &service["document"]["metadata"]["annotations"];
    assert_eq!(
        annotations["pave.dev/repository-path"],
        "services/hello/pave.yaml"
    );
    assert_eq!(annotations["pave.dev/default-branch"], "trunk");
    let generation = service["generation"].clone();

    // The same again changes nothing.
    let (status, body) = call(
        &server,
        "put",
        path,
        &dev,
        Some(json!({ "url": "git@git.example:acme/hello.git", "path": "services/hello", "default_branch": "trunk" })),
    )
    .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (StatusCode::OK, json!(false))
    );

    // Bad input is refused and changes nothing.
    for bad in [
        json!({ "url": "--upload-pack=touch /tmp/x" }),
        json!({ "url": "relative/path" }),
        json!({ "url": "/srv/git/x", "path": "../../etc" }),
        json!({ "url": "/srv/git/x", "default_branch": "no spaces" }),
        json!({ "url": "/srv/git/x", "unknown": 1 }),
    ] {
        let (status, answer) = call(&server, "put", path, &dev, Some(bad.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad} -> {answer}"
        );
    }
    let (status, _) = call(
        &server,
        "put",
        "/api/v1/services/nope/repository",
        &dev,
        Some(json!({ "url": "/srv/git/x" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let scoped = make_token(&server.store, Role::Developer, Some("platform")).await;
    let (status, _) = call(
        &server,
        "put",
        path,
        &scoped,
        Some(json!({ "url": "/srv/git/x" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, service) = call(&server, "get", "/api/v1/services/hello", &dev, None).await;
    assert_eq!(service["generation"], generation);
    assert_eq!(service["repository"], "git@git.example:acme/hello.git");
}
