//! The portal's CI pages over real HTTP: a service's runs, the run page (job
//! graph, steps, cache hits, artifacts, tests, escaped log) before and after
//! the jobs finish, and the log as Server-Sent Events (lines with their seq
//! as id, `Last-Event-ID` resume, `end` once the run is over).

mod common;

use common::TestServer;
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";

const PAVE_YAML: &str = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    build:
      steps: [ { name: compile, run: make } ]
    lint:
      steps: [ { run: make lint } ]
    test:
      needs: [build, lint]
      steps: [ { run: make test } ]
";

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    post_as(server, path, Role::Developer, body).await
}

async fn post_as(server: &TestServer, path: &str, role: Role, body: Value) -> (StatusCode, Value) {
    let response = common::http()
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.tokens[&role])
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A portal page, fetched without signing in.
async fn page(server: &TestServer, path: &str) -> (StatusCode, String) {
    let response = common::http()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

async fn claim(server: &TestServer) -> Value {
    let (status, job) = post_as(
        server,
        "/api/v1/agents/claim",
        Role::Agent,
        json!({ "agent": "agent-7", "wait_seconds": 0 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

async fn log(server: &TestServer, job: &Value, lines: Value) {
    let (status, body) = post(
        server,
        &format!("/api/v1/jobs/{}/logs", job["job_id"].as_str().unwrap()),
        json!({ "lease_token": job["lease_token"], "lines": lines }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn complete(server: &TestServer, job: &Value, outcome: &str, result: Value) {
    let (status, body) = post(
        server,
        &format!("/api/v1/jobs/{}/complete", job["job_id"].as_str().unwrap()),
        json!({ "lease_token": job["lease_token"], "outcome": outcome, "result": result }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// One parsed SSE event.
#[derive(Debug, Default, Clone)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads an SSE response until `until` holds for the events so far (or 20 s pass).
async fn read_events(
    mut response: reqwest::Response,
    until: impl Fn(&[Sse]) -> bool,
) -> (Vec<Sse>, reqwest::Response) {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !until(&events) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no more events; so far {events:?}"))
            .expect("read stream");
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Sse::default();
            let mut fields = 0;
            for line in block.lines() {
                if let Some((name, value)) = line.split_once(':') {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = Some(value.to_string()),
                        "data" => event.data.push_str(value),
                        _ => continue,
                    }
                    fields += 1;
                }
            }
            if fields > 0 {
                events.push(event);
            }
        }
    }
    (events, response)
}

fn texts(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.is_none() && !e.data.is_empty())
        .map(|e| {
            let line: Value = serde_json::from_str(&e.data).expect("line json");
            line["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pages_show_jobs_steps_and_the_escaped_log_and_the_stream_follows_it() {
    let server = common::start().await;
    let (status, body) = post(
        &server,
        "/api/v1/apply",
        json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // No runs yet: the service page says so.
    let (status, html) = page(&server, "/services/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h2>Runs</h2>"), "{html}");
    assert!(html.contains("No runs yet"), "{html}");

    let (status, run) = post(
        &server,
        "/api/v1/services/hello/runs",
        json!({ "ref": "refs/heads/main", "sha": SHA, "pave_yaml": PAVE_YAML }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    let run_path = format!("/runs/{run_id}");

    // Listed on the service page and the run list, linking to the run.
    for path in ["/services/hello", "/services/hello/runs"] {
        let (status, html) = page(&server, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(html.contains(&format!("href=\"{run_path}\"")), "{html}");
        assert!(html.contains(">#1<"), "{html}");
        assert!(html.contains("fedcba987654<"), "short sha: {html}");
        assert!(html.contains(">queued<"), "{html}");
    }

    // A queued run with no results yet renders, with the live script.
    let (status, html) = page(&server, &run_path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("hello #1"), "{html}");
    assert!(
        html.contains("Stage 2"),
        "test needs build and lint: {html}"
    );
    assert!(html.contains("needs build, lint"), "{html}");
    assert!(html.contains("No output yet."), "{html}");
    assert!(html.contains("new EventSource"), "{html}");

    // The build job runs and logs, including a line that is markup.
    let mut build = claim(&server).await;
    if build["key"] != "build" {
        let lint = build;
        build = claim(&server).await;
        complete(&server, &lint, "success", json!({})).await;
    } else {
        let lint = claim(&server).await;
        complete(&server, &lint, "success", json!({})).await;
    }
    assert_eq!(build["key"], "build");
    log(
        &server,
        &build,
        json!([
            { "step": "compile", "stream": "stdout", "text": "cc -o app main.c" },
            { "step": "compile", "stream": "stderr", "text": "<script>alert('x')</script> & more" },
        ]),
    )
    .await;
    let (_, html) = page(&server, &run_path).await;
    assert!(
        html.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; more"),
        "escaped log line: {html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("cc -o app main.c"), "{html}");
    assert!(html.contains("/stream?after=2"), "{html}");

    // The public portal stream replays the log and then waits.
    let stream = common::http()
        .get(format!("{}{run_path}/stream", server.url))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let (events, stream) = read_events(stream, |e| texts(e).len() >= 2).await;
    assert_eq!(
        texts(&events),
        ["cc -o app main.c", "<script>alert('x')</script> & more"]
    );
    let ids: Vec<_> = events.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids, ["1", "2"]);

    // The API stream needs a viewer and resumes after Last-Event-ID.
    let url = format!("{}/api/v1/runs/{run_id}/logs/stream", server.url);
    let anonymous = common::http().get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let missing = common::http()
        .get(format!(
            "{}/api/v1/runs/01AAAAAAAAAAAAAAAAAAAAAAAA/logs/stream",
            server.url
        ))
        .bearer_auth(&server.tokens[&Role::Viewer])
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let resumed = common::http()
        .get(&url)
        .bearer_auth(&server.tokens[&Role::Viewer])
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("request");
    assert_eq!(resumed.status(), StatusCode::OK);
    let (resumed_events, resumed) = read_events(resumed, |e| !texts(e).is_empty()).await;
    assert_eq!(
        texts(&resumed_events),
        ["<script>alert('x')</script> & more"]
    );

    // More lines arrive live; then the run finishes and both streams end.
    log(
        &server,
        &build,
        json!([{ "step": "compile", "stream": "stdout", "text": "linked" }]),
    )
    .await;
    let (more, stream) = read_events(stream, |e| !texts(e).is_empty()).await;
    assert_eq!(texts(&more), ["linked"]);
    complete(
        &server,
        &build,
        "success",
        json!({
            "steps": [{ "index": 0, "label": "compile", "status": "success", "conclusion": "success",
                        "duration_ms": 1234, "exit_code": 0, "cache": "hit" }],
            "artifacts": [{ "name": "app<1>", "digest": format!("sha256:{}", "ab".repeat(32)),
                            "size": 2048, "media_type": "application/octet-stream" }],
        }),
    )
    .await;
    let test = claim(&server).await;
    assert_eq!(test["key"], "test");
    log(
        &server,
        &test,
        json!([{ "step": "make test", "stream": "stdout", "text": "2 tests" }]),
    )
    .await;
    complete(
        &server,
        &test,
        "failure",
        json!({
            "steps": [{ "label": "make test", "status": "failure", "duration_ms": 61000, "exit_code": 2, "cache": "miss" }],
            "tests": [
                { "suite": "s", "classname": "pkg.Adder", "name": "adds", "status": "passed", "duration_ms": 1, "flaky_reruns": 0 },
                { "suite": "s", "classname": "pkg.Adder", "name": "overflows", "status": "failed",
                  "message": "expected <1> got 2", "duration_ms": 1, "flaky_reruns": 0 },
            ],
        }),
    )
    .await;
    let (rest, _) = read_events(stream, |e| e.iter().any(|e| e.event.is_some())).await;
    assert_eq!(texts(&rest), ["2 tests"]);
    let end = rest.last().expect("end event");
    assert_eq!(end.event.as_deref(), Some("end"));
    let end: Value = serde_json::from_str(&end.data).expect("end json");
    assert_eq!(end, json!({ "status": "finished", "outcome": "failure" }));
    let (resumed_rest, _) = read_events(resumed, |e| e.iter().any(|e| e.event.is_some())).await;
    assert_eq!(texts(&resumed_rest), ["linked", "2 tests"]);

    // A stream opened after the end replays and ends at once.
    let late = common::http()
        .get(format!("{}{run_path}/stream?after=3", server.url))
        .send()
        .await
        .expect("stream");
    let (late, _) = read_events(late, |_| false).await;
    assert_eq!(texts(&late), ["2 tests"]);
    assert_eq!(late.last().and_then(|e| e.event.as_deref()), Some("end"));

    // The finished run page: statuses, steps, cache, artifacts, tests; no live script.
    let (status, html) = page(&server, &run_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("new EventSource"), "{html}");
    for want in [
        "st st-failure",
        "st st-success",
        "1.2 s",
        "1m 01s",
        "cache-hit",
        ">miss<",
        "app&lt;1&gt;",
        "sha256:abababababab",
        "2.0 KiB",
        "2 tests: ",
        "pkg.Adder::overflows",
        "expected &lt;1&gt; got 2",
        "exit 2",
        "linked",
    ] {
        assert!(html.contains(want), "missing {want:?} in {html}");
    }
    let (_, html) = page(&server, "/services/hello").await;
    assert!(html.contains(">failure<"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runs_and_services_answer_404_pages() {
    let server = common::start().await;
    for path in [
        "/runs/01AAAAAAAAAAAAAAAAAAAAAAAA",
        "/services/nope/runs",
        "/runs/01AAAAAAAAAAAAAAAAAAAAAAAA/stream",
    ] {
        let (status, _) = page(&server, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = page(&server, "/services/Bad%20Name/runs").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = page(&server, "/runs/x/stream?after=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
