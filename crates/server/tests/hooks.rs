//! Push webhooks over real HTTP with real git repositories: GitHub
//! signatures (good, bad, missing), a GitHub-shaped push creating a run at
//! the pushed sha with the `pave.yaml` of that sha, duplicate deliveries,
//! ignored tag pushes and branch deletions, GitLab tokens, and a repository
//! registered by `file://` URL (fetched into the server's cache).

mod ci_common;
mod common;

use ci_common::{CiServer, apply, commit, repo_with, start};
use pave_server::api::hooks::hmac_sha256;
use pave_server::auth::{Role, hex};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;

fn pave_yaml(service: &str, job: &str) -> String {
    format!(
        "service: {{ name: {service}, owner: payments }}\npipeline:\n  jobs:\n    {job}:\n      steps: [ {{ run: echo hi }} ]\n"
    )
}

/// A push payload shaped like GitHub's (trimmed to the fields a receiver uses, plus some noise).
fn github_push(repo: &Path, git_ref: &str, before: &str, after: &str) -> Value {
    let url = format!("file://{}", repo.display());
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": after.bytes().all(|b| b == b'0'),
        "forced": false,
        "base_ref": null,
        "compare": "https://github.com/acme/hello/compare/abc...def",
        "commits": [{
            "id": after,
            "tree_id": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "distinct": true,
            "message": "Change the pipeline",
            "timestamp": "2026-01-05T10:00:00+01:00",
            "url": format!("https://github.com/acme/hello/commit/{after}"),
            "author": { "name": "Dev", "email": "dev@example.com", "username": "dev" },
            "committer": { "name": "Dev", "email": "dev@example.com", "username": "dev" },
            "added": [], "removed": [], "modified": ["pave.yaml"]
        }],
        "head_commit": { "id": after, "message": "Change the pipeline" },
        "repository": {
            "id": 123456,
            "node_id": "R_kgDOabc",
            "name": "hello",
            "full_name": "acme/hello",
            "private": true,
            "owner": { "name": "acme", "login": "acme", "id": 1 },
            "html_url": "https://github.com/acme/hello",
            "url": "https://github.com/acme/hello",
            "git_url": "git://github.com/acme/hello.git",
            "ssh_url": "git@github.com:acme/hello.git",
            "clone_url": format!("{url}.git/"),
            "default_branch": "main",
            "master_branch": "main"
        },
        "pusher": { "name": "dev", "email": "dev@example.com" },
        "sender": { "login": "dev", "id": 42, "type": "User" }
    })
}

/// POSTs a GitHub delivery, signed with `secret` unless `None`.
async fn deliver(
    server: &CiServer,
    event: &str,
    delivery: &str,
    payload: &Value,
    secret: Option<&str>,
) -> (StatusCode, Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/github", server.url))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("user-agent", "GitHub-Hookshot/abc123");
    if let Some(secret) = secret {
        let sig = format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &body)));
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn runs_of(server: &CiServer, service: &str) -> Vec<Value> {
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/v1/services/{service}/runs"),
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_signed_github_push_runs_the_pipeline_of_the_pushed_commit_once() {
    let server = start().await;
    let repo = server.dir.join("hello");
    let first = repo_with(&repo, &pave_yaml("hello", "build"));
    apply(
        &server,
        &pave_yaml("hello", "build"),
        repo.to_str().unwrap(),
    )
    .await;
    // The pushed commit changes the pipeline: the run must use this version.
    let second = commit(&repo, &pave_yaml("hello", "compile"), "rename the job");
    let secret = server.webhook_secret();
    let payload = github_push(&repo, "refs/heads/main", &first, &second);

    let (status, body) = deliver(&server, "push", "d-1", &payload, Some(&secret)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["services"], json!(["hello"]));
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
    let run_id = body["runs"][0].as_str().unwrap();
    let (status, run) = server
        .call("GET", &format!("/api/v1/runs/{run_id}"), Role::Viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["sha"], second);
    assert_eq!(run["ref"], "refs/heads/main");
    assert_eq!(run["trigger"], "push");
    assert_eq!(run["actor"], "webhook:github(dev)");
    assert_eq!(
        run["jobs"][0]["key"], "compile",
        "pave.yaml read at the pushed sha"
    );
    assert_eq!(run["jobs"][0]["status"], "queued");

    // The same delivery again creates nothing.
    let (status, again) = deliver(&server, "push", "d-1", &payload, Some(&secret)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["runs"], json!([]));
    assert_eq!(runs_of(&server, "hello").await.len(), 1);

    // A new delivery of another push does.
    let third = commit(&repo, &pave_yaml("hello", "build"), "back");
    let (status, body) = deliver(
        &server,
        "push",
        "d-2",
        &github_push(&repo, "refs/heads/main", &second, &third),
        Some(&secret),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let runs = runs_of(&server, "hello").await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["sha"], third);
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_deliveries_are_401_and_change_nothing() {
    let server = start().await;
    let repo = server.dir.join("hello");
    let sha = repo_with(&repo, &pave_yaml("hello", "build"));
    apply(
        &server,
        &pave_yaml("hello", "build"),
        repo.to_str().unwrap(),
    )
    .await;
    let payload = github_push(&repo, "refs/heads/main", &"0".repeat(40), &sha);
    let head = server.store.head_seq().await.unwrap();

    let (status, body) = deliver(&server, "push", "x-1", &payload, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = deliver(&server, "push", "x-2", &payload, Some("not-the-secret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed body, different body sent.
    let body = serde_json::to_vec(&payload).unwrap();
    let sig = format!(
        "sha256={}",
        hex(&hmac_sha256(server.webhook_secret().as_bytes(), &body))
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/github", server.url))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sig)
        .body([body.as_slice(), b" "].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A bearer token does not stand in for a signature.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/github", server.url))
        .bearer_auth(server.token(Role::Admin))
        .header("x-github-event", "push")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    assert!(runs_of(&server, "hello").await.is_empty(), "nothing queued");
    assert_eq!(server.store.head_seq().await.unwrap(), head, "no event");
    // The rejected delivery ids were not recorded: a valid one with the same id works.
    let (status, body) = deliver(
        &server,
        "push",
        "x-1",
        &payload,
        Some(&server.webhook_secret()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
}

#[tokio::test]
async fn ping_tags_deletions_and_unknown_repositories_start_nothing() {
    let server = start().await;
    let repo = server.dir.join("hello");
    let sha = repo_with(&repo, &pave_yaml("hello", "build"));
    apply(
        &server,
        &pave_yaml("hello", "build"),
        repo.to_str().unwrap(),
    )
    .await;
    let secret = server.webhook_secret();

    let (status, _) = deliver(
        &server,
        "ping",
        "p-1",
        &json!({ "zen": "Keep it logically awesome." }),
        Some(&secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = deliver(
        &server,
        "push",
        "t-1",
        &github_push(&repo, "refs/tags/v1.0.0", &"0".repeat(40), &sha),
        Some(&secret),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body["ignored"].as_str().unwrap().contains("tag"), "{body}");
    let (status, body) = deliver(
        &server,
        "push",
        "del-1",
        &github_push(&repo, "refs/heads/feature", &sha, &"0".repeat(40)),
        Some(&secret),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        body["ignored"].as_str().unwrap().contains("deleted"),
        "{body}"
    );
    let other = server.dir.join("other");
    let other_sha = repo_with(&other, &pave_yaml("other", "build"));
    let (status, body) = deliver(
        &server,
        "push",
        "o-1",
        &github_push(&other, "refs/heads/main", &"0".repeat(40), &other_sha),
        Some(&secret),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["runs"], json!([]));
    assert!(
        body["ignored"].as_str().unwrap().contains("no service"),
        "{body}"
    );
    let (status, body) = deliver(&server, "issues", "i-1", &json!({}), Some(&secret)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body["ignored"].is_string());
    assert!(runs_of(&server, "hello").await.is_empty());
}

#[tokio::test]
async fn an_invalid_pipeline_at_the_pushed_sha_queues_nothing_and_says_why() {
    let server = start().await;
    let repo = server.dir.join("hello");
    let first = repo_with(&repo, &pave_yaml("hello", "build"));
    apply(
        &server,
        &pave_yaml("hello", "build"),
        repo.to_str().unwrap(),
    )
    .await;
    let broken = commit(
        &repo,
        "service: { name: hello, owner: payments }\npipeline:\n  jobs:\n    a: { needs: b, steps: [ { run: x } ] }\n    b: { needs: a, steps: [ { run: y } ] }\n",
        "cycle",
    );
    let (status, body) = deliver(
        &server,
        "push",
        "bad-1",
        &github_push(&repo, "refs/heads/main", &first, &broken),
        Some(&server.webhook_secret()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["runs"], json!([]));
    assert_eq!(body["errors"][0]["service"], "hello");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{body}"
    );
    assert!(runs_of(&server, "hello").await.is_empty());
}

#[tokio::test]
async fn gitlab_push_hooks_need_the_token() {
    let server = start().await;
    let repo = server.dir.join("hello");
    let sha = repo_with(&repo, &pave_yaml("hello", "build"));
    // Registered by URL: the server fetches the commit into its cache.
    let url = format!("file://{}", repo.display());
    apply(&server, &pave_yaml("hello", "build"), &url).await;
    let payload = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "ref": "refs/heads/main",
        "checkout_sha": sha,
        "user_username": "dev",
        "project": {
            "id": 15,
            "name": "hello",
            "web_url": "https://gitlab.example.com/acme/hello",
            "git_ssh_url": "git@gitlab.example.com:acme/hello.git",
            "git_http_url": format!("{url}.git"),
            "path_with_namespace": "acme/hello",
            "default_branch": "main"
        },
        "commits": [],
        "total_commits_count": 1
    });
    let send = |token: Option<String>, uuid: &'static str| {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/v1/hooks/gitlab", server.url))
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-event-uuid", uuid)
            .json(&payload);
        if let Some(token) = token {
            req = req.header("x-gitlab-token", token);
        }
        req.send()
    };
    assert_eq!(
        send(None, "u-1").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Some("wrong".into()), "u-1").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(runs_of(&server, "hello").await.is_empty());
    let resp = send(Some(server.webhook_secret()), "u-1").await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
    let resp = send(Some(server.webhook_secret()), "u-1").await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["duplicate"], true);
    let runs = runs_of(&server, "hello").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["sha"], sha);
    assert_eq!(runs[0]["actor"], "webhook:gitlab(dev)");
    // Fetched into the data dir's cache.
    assert!(
        server
            .data
            .join("repo-cache")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}
