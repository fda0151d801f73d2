//! Pipeline runs over real HTTP: triggering (422 with positions for a bad
//! pipeline, nothing queued), the agent protocol (claim, heartbeat, logs,
//! complete), `if:` on needs outputs and failures, lease loss (409 on late
//! reports), long-poll wake-up, cancellation and team scoping.

mod common;

use common::TestServer;
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

const PAVE_YAML: &str = "\
service: { name: hello, owner: payments }
pipeline:
  env: { GREETING: hi }
  jobs:
    build:
      outputs: { ship: '${{ steps.v.outputs.ship }}' }
      steps:
        - { id: v, run: echo ship=yes >> $PAVE_OUTPUT }
    test:
      needs: build
      steps: [ { run: 'true' } ]
    deploy:
      needs: [build, test]
      if: needs.build.outputs.ship == 'yes'
      steps: [ { run: ./deploy.sh } ]
    notify:
      needs: test
      if: failure()
      steps: [ { run: ./page-someone.sh } ]
";

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    role: Role,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", server.url);
    let client = common::http();
    let mut req = match method {
        "post" => client.post(&url),
        _ => client.get(&url),
    }
    .bearer_auth(&server.tokens[&role]);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    send(server, "post", path, Role::Developer, Some(body)).await
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    send(server, "get", path, Role::Viewer, None).await
}

/// A server with service `hello` (team `payments`) registered.
async fn server_with_service() -> TestServer {
    let server = common::start().await;
    let (status, body) = post(
        &server,
        "/api/v1/apply",
        json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
}

async fn trigger(server: &TestServer, yaml: &str) -> (StatusCode, Value) {
    post(
        server,
        "/api/v1/services/hello/runs",
        json!({ "ref": "refs/heads/main", "sha": SHA, "pave_yaml": yaml }),
    )
    .await
}

async fn claim(server: &TestServer, agent: &str, wait: u64, lease: u64) -> (StatusCode, Value) {
    send(
        server,
        "post",
        "/api/v1/agents/claim",
        Role::Agent,
        Some(json!({ "agent": agent, "wait_seconds": wait, "lease_seconds": lease })),
    )
    .await
}

async fn complete(
    server: &TestServer,
    job: &Value,
    outcome: &str,
    outputs: Value,
) -> (StatusCode, Value) {
    post(
        server,
        &format!("/api/v1/jobs/{}/complete", job["job_id"].as_str().unwrap()),
        json!({
            "lease_token": job["lease_token"],
            "outcome": outcome,
            "outputs": outputs,
            "result": { "steps": [{ "name": "step 1", "outcome": outcome, "duration_ms": 12 }] },
        }),
    )
    .await
}

fn job_state(run: &Value, key: &str) -> (String, String) {
    let job = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == key)
        .unwrap_or_else(|| panic!("no job {key} in {run}"));
    (
        job["status"].as_str().unwrap_or_default().to_string(),
        job["outcome"].as_str().unwrap_or_default().to_string(),
    )
}

/// Claims and completes jobs until none is runnable; `outcome_of(key)` decides.
async fn drive(
    server: &TestServer,
    outcome_of: impl Fn(&str) -> (&'static str, Value),
) -> Vec<String> {
    let mut keys = Vec::new();
    loop {
        let (status, job) = claim(server, "agent-1", 0, 30).await;
        if status == StatusCode::NO_CONTENT {
            return keys;
        }
        assert_eq!(status, StatusCode::OK, "{job}");
        let key = job["key"].as_str().unwrap().to_string();
        let (outcome, outputs) = outcome_of(&key);
        let (status, body) = complete(server, &job, outcome, outputs).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        keys.push(key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_a_pipeline_through_the_protocol() {
    let server = server_with_service().await;
    let (status, run) = trigger(&server, PAVE_YAML).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["service"], "hello");
    assert_eq!(run["number"], 1);
    assert_eq!(run["status"], "queued");
    assert_eq!(job_state(&run, "build").0, "queued");
    assert_eq!(job_state(&run, "test").0, "waiting");
    let run_id = run["id"].as_str().unwrap().to_string();

    let (status, build) = claim(&server, "agent-1", 0, 30).await;
    assert_eq!(status, StatusCode::OK, "{build}");
    assert_eq!(build["key"], "build");
    assert_eq!(build["attempt"], 1);
    assert_eq!(build["run_id"], json!(run_id));
    assert_eq!(build["pave"]["service"], "hello");
    assert_eq!(build["pave"]["sha"], SHA);
    assert_eq!(build["pave"]["ref"], "refs/heads/main");
    assert_eq!(build["pipeline"]["env"]["GREETING"], "hi");
    assert_eq!(build["job"]["job_id"], "build");
    assert!(build["job"]["spec"]["steps"].is_array());
    let job_path = format!("/api/v1/jobs/{}", build["job_id"].as_str().unwrap());

    let (status, beat) = post(
        &server,
        &format!("{job_path}/heartbeat"),
        json!({ "lease_token": build["lease_token"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{beat}");
    assert_eq!(beat["cancel_requested"], false);
    let (status, logged) = post(
        &server,
        &format!("{job_path}/logs"),
        json!({ "lease_token": build["lease_token"], "lines": [
            { "step": "v", "stream": "stdout", "text": "compiling" },
            { "step": "v", "stream": "stderr", "text": "warning: x" },
        ]}),
    )
    .await;
    assert_eq!(
        (status, logged["last_seq"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, _) = post(
        &server,
        &format!("{job_path}/logs"),
        json!({ "lease_token": build["lease_token"], "lines": [{ "stream": "bogus", "text": "x" }] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, done) = complete(&server, &build, "success", json!({ "ship": "yes" })).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["job"]["outcome"], "success");
    assert_eq!(done["run"]["status"], "running");

    let (status, test) = claim(&server, "agent-2", 0, 30).await;
    assert_eq!(
        (status, test["key"].clone()),
        (StatusCode::OK, json!("test"))
    );
    assert_eq!(test["needs"]["build"]["result"], "success");
    assert_eq!(test["needs"]["build"]["outputs"]["ship"], "yes");
    assert_eq!(
        complete(&server, &test, "success", json!({})).await.0,
        StatusCode::OK
    );

    // `deploy` runs (ship == 'yes'); `notify` (if: failure()) is skipped.
    let (status, deploy) = claim(&server, "agent-1", 0, 30).await;
    assert_eq!(
        (status, deploy["key"].clone()),
        (StatusCode::OK, json!("deploy"))
    );
    assert_eq!(
        complete(&server, &deploy, "success", json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        claim(&server, "agent-1", 0, 30).await.0,
        StatusCode::NO_CONTENT
    );

    let (status, run) = get(&server, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "finished");
    assert_eq!(run["outcome"], "success");
    assert_eq!(
        job_state(&run, "notify"),
        ("skipped".into(), "skipped".into())
    );
    let build_view = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "build")
        .unwrap();
    assert_eq!(build_view["result"]["steps"][0]["duration_ms"], 12);
    assert_eq!(build_view["agent"], "agent-1");

    let (status, logs) = get(&server, &format!("/api/v1/runs/{run_id}/logs?after=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(logs["lines"].as_array().unwrap().len(), 1);
    assert_eq!(logs["lines"][0]["text"], "warning: x");
    assert_eq!(logs["lines"][0]["stream"], "stderr");
    assert_eq!(
        (logs["last_seq"].clone(), logs["finished"].clone()),
        (json!(2), json!(true))
    );

    let (status, runs) = get(&server, "/api/v1/services/hello/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["outcome"], "success");

    let (_, events) = get(
        &server,
        &format!("/api/v1/audit/events?subject=run:{run_id}"),
    )
    .await;
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "dev.cdevents.pipelinerun.queued.0.2.0",
            "dev.cdevents.pipelinerun.started.0.2.0",
            "dev.cdevents.pipelinerun.finished.0.2.0"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_dependents_and_runs_failure_handlers() {
    let server = server_with_service().await;
    let (_, run) = trigger(&server, PAVE_YAML).await;
    let ran = drive(&server, |key| match key {
        "test" => ("failure", json!({})),
        _ => ("success", json!({ "ship": "yes" })),
    })
    .await;
    assert_eq!(ran, ["build", "test", "notify"]);
    let (_, run) = get(
        &server,
        &format!("/api/v1/runs/{}", run["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(run["outcome"], "failure");
    assert_eq!(
        job_state(&run, "deploy"),
        ("skipped".into(), "skipped".into())
    );
    let deploy = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "deploy")
        .unwrap();
    assert!(
        deploy["reason"].as_str().unwrap().contains("test"),
        "{deploy}"
    );

    // `if:` on needs outputs: ship=no skips deploy and the run succeeds.
    let (_, second) = trigger(&server, PAVE_YAML).await;
    assert_eq!(second["number"], 2);
    let ran = drive(&server, |_| ("success", json!({ "ship": "no" }))).await;
    assert_eq!(ran, ["build", "test"]);
    let (_, second) = get(
        &server,
        &format!("/api/v1/runs/{}", second["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(second["outcome"], "success");
    assert_eq!(job_state(&second, "deploy").0, "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agents_late_reports_are_refused() {
    let server = server_with_service().await;
    let (_, run) = trigger(&server, PAVE_YAML).await;
    let (_, first) = claim(&server, "agent-1", 0, 1).await;
    assert_eq!(first["key"], "build");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (status, second) = claim(&server, "agent-2", 0, 30).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["job_id"], first["job_id"]);
    assert_eq!(second["attempt"], 2);

    let job_path = format!("/api/v1/jobs/{}", first["job_id"].as_str().unwrap());
    let (status, body) = post(
        &server,
        &format!("{job_path}/heartbeat"),
        json!({ "lease_token": first["lease_token"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let lines = json!({ "lease_token": first["lease_token"], "lines": [{ "stream": "stdout", "text": "late" }] });
    assert_eq!(
        post(&server, &format!("{job_path}/logs"), lines).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        complete(&server, &first, "failure", json!({})).await.0,
        StatusCode::CONFLICT
    );

    assert_eq!(
        complete(&server, &second, "success", json!({ "ship": "yes" }))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = complete(&server, &second, "success", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a job never completes twice: {body}"
    );

    let (_, detail) = get(
        &server,
        &format!("/api/v1/runs/{}", run["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        job_state(&detail, "build"),
        ("finished".into(), "success".into())
    );
    let (_, events) = get(&server, "/api/v1/audit/events?limit=1000").await;
    let finished = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == "dev.cdevents.taskrun.finished.0.2.0"
                && e["payload"]["job_id"] == first["job_id"]
        })
        .count();
    assert_eq!(finished, 1);
    let (status, _) = post(
        &server,
        "/api/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA/heartbeat",
        json!({ "lease_token": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pipeline_is_located_and_queues_nothing() {
    let server = server_with_service().await;
    let cycle = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    build: { needs: test, steps: [ { run: x } ] }
    test: { needs: build, steps: [ { run: y } ] }
";
    let (status, body) = trigger(&server, cycle).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_spec");
    let e = &body["error"]["details"]["errors"][0];
    assert_eq!(e["file"], "pave.yaml");
    assert!(e["line"].as_u64().unwrap() >= 4, "{e}");
    assert!(e["column"].as_u64().unwrap() >= 1, "{e}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("cycle"),
        "{body}"
    );

    let unknown_context = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    build: { if: github.ref == 'main', steps: [ { run: x } ] }
";
    let (status, body) = post(
        &server,
        "/api/v1/services/hello/runs",
        json!({ "sha": SHA, "pave_yaml": unknown_context, "file": "svc/pave.yaml" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"]["errors"][0]["file"],
        "svc/pave.yaml"
    );
    assert_eq!(body["error"]["details"]["errors"][0]["line"], 4);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("github"),
        "{body}"
    );

    let (status, body) = trigger(
        &server,
        "service: { name: hello, owner: payments }\npipeline: [\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = trigger(&server, "service: { name: other, owner: payments }\npipeline: { jobs: { a: { steps: [ { run: x } ] } } }\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = trigger(&server, "service: { name: hello, owner: payments }\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = post(
        &server,
        "/api/v1/services/nope/runs",
        json!({ "sha": SHA, "pave_yaml": PAVE_YAML }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(
        &server,
        "/api/v1/services/hello/runs",
        json!({ "sha": "", "pave_yaml": PAVE_YAML }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing was queued.
    let (_, runs) = get(&server, "/api/v1/services/hello/runs").await;
    assert_eq!(runs, json!([]));
    assert_eq!(
        claim(&server, "agent-1", 0, 30).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_wakes_when_a_run_is_queued() {
    let server = server_with_service().await;
    let started = Instant::now();
    let (status, _) = claim(&server, "idle", 1, 30).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the wait"
    );

    let url = server.url.clone();
    let token = server.tokens[&Role::Agent].clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = common::http()
            .post(format!("{url}/api/v1/agents/claim"))
            .bearer_auth(token)
            .json(&json!({ "agent": "waiter", "wait_seconds": 20 }))
            .send()
            .await
            .expect("claim");
        (response.status(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trigger(&server, PAVE_YAML).await.0, StatusCode::CREATED);
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");

    let (status, _) = send(
        &server,
        "post",
        "/api/v1/agents/claim",
        Role::Agent,
        Some(json!({ "agent": "x", "wait_seconds": 31 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_tells_its_agents_to_stop() {
    let server = server_with_service().await;
    let (_, run) = trigger(&server, PAVE_YAML).await;
    let run_path = format!("/api/v1/runs/{}", run["id"].as_str().unwrap());
    let (_, build) = claim(&server, "agent-1", 0, 30).await;
    let (status, cancelled) = post(&server, &format!("{run_path}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (cancelled["status"].clone(), cancelled["outcome"].clone()),
        (json!("finished"), json!("cancelled"))
    );
    let (status, beat) = post(
        &server,
        &format!(
            "/api/v1/jobs/{}/heartbeat",
            build["job_id"].as_str().unwrap()
        ),
        json!({ "lease_token": build["lease_token"] }),
    )
    .await;
    assert_eq!(
        (status, beat["cancel_requested"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(
        complete(&server, &build, "cancelled", json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post(&server, &format!("{run_path}/cancel"), json!({}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (_, detail) = get(&server, &run_path).await;
    assert_eq!(
        job_state(&detail, "build"),
        ("finished".into(), "cancelled".into())
    );
    assert_eq!(
        job_state(&detail, "test"),
        ("skipped".into(), "cancelled".into())
    );
    assert_eq!(
        claim(&server, "agent-1", 0, 30).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_scoped_tokens_run_only_their_teams_services() {
    let server = server_with_service().await;
    let other = common::make_token(&server.store, Role::Developer, Some("search")).await;
    let mine = common::make_token(&server.store, Role::Developer, Some("payments")).await;
    let body = json!({ "sha": SHA, "pave_yaml": PAVE_YAML });
    let response = common::http()
        .post(format!("{}/api/v1/services/hello/runs", server.url))
        .bearer_auth(&other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, runs) = get(&server, "/api/v1/services/hello/runs").await;
    assert_eq!(runs, json!([]), "a refused trigger creates nothing");
    let response = common::http()
        .post(format!("{}/api/v1/services/hello/runs", server.url))
        .bearer_auth(&mine)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let run: Value = response.json().await.unwrap();
    let response = common::http()
        .post(format!(
            "{}/api/v1/runs/{}/cancel",
            server.url,
            run["id"].as_str().unwrap()
        ))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
