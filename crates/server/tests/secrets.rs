//! Service secrets over HTTP: set/list/delete with roles and team scope,
//! values never in an answer or event (only in the claim of a job of the
//! service's run), and 503 on a server without CI configuration.

mod ci_common;
mod common;

use ci_common::{CiServer, all_events, start};
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

const VALUE: &str = "s3cr3t-Value-7f0c1d";
const PAVE_YAML: &str = "\
service: { name: hello, owner: payments }
pipeline:
  jobs:
    build:
      steps:
        - run: echo token is $TOKEN
          env: { TOKEN: '${{ secrets.API_TOKEN }}' }
";

async fn with_service() -> CiServer {
    let server = start().await;
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/apply",
            Role::Developer,
            Some(json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
}

fn set_path(name: &str) -> String {
    format!("/api/v1/services/hello/secrets/{name}")
}

#[tokio::test]
async fn set_list_delete_never_show_the_value() {
    let server = with_service().await;
    let (status, body) = server
        .call(
            "PUT",
            &set_path("API_TOKEN"),
            Role::Developer,
            Some(json!({ "value": VALUE })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "API_TOKEN");
    assert_eq!(body["service"], "hello");
    assert!(!body.to_string().contains(VALUE));

    let (status, text) = server
        .raw("/api/v1/services/hello/secrets", Role::Viewer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("API_TOKEN") && !text.contains(VALUE),
        "{text}"
    );
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(list[0]["updated_at"].is_string());

    // Every read endpoint that could show it does not.
    for path in ["/api/v1/services/hello", "/api/v1/audit/events?limit=1000"] {
        let (status, text) = server.raw(path, Role::Viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!text.contains(VALUE), "{path} leaks the value");
    }
    let events = all_events(&server).await;
    assert!(events.contains("dev.pave.secret.set.0.1.0") && !events.contains(VALUE));

    let (status, _) = server
        .call("DELETE", &set_path("API_TOKEN"), Role::Developer, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .call("DELETE", &set_path("API_TOKEN"), Role::Developer, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let events = all_events(&server).await;
    assert!(events.contains("dev.pave.secret.deleted.0.1.0") && !events.contains(VALUE));
}

#[tokio::test]
async fn rejected_writes_change_nothing_and_do_not_echo() {
    let server = with_service().await;
    let other = common::make_token(&server.store, Role::Developer, Some("search")).await;
    let head = server.store.head_seq().await.unwrap();
    // Viewer: 403.
    let (status, _) = server
        .call(
            "PUT",
            &set_path("API_TOKEN"),
            Role::Viewer,
            Some(json!({ "value": VALUE })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another team's scoped token: 403.
    let resp = reqwest::Client::new()
        .put(format!("{}{}", server.url, set_path("API_TOKEN")))
        .bearer_auth(&other)
        .json(&json!({ "value": VALUE }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Bad names and bodies: 422, never quoting the value.
    for name in ["lower", "1ABC", "A-B"] {
        let (status, body) = server
            .call(
                "PUT",
                &set_path(name),
                Role::Developer,
                Some(json!({ "value": VALUE })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(!body.to_string().contains(VALUE));
    }
    let (status, body) = server
        .call(
            "PUT",
            &set_path("NUM"),
            Role::Developer,
            Some(json!({ "value": 987654321 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.to_string().contains("987654321"), "{body}");
    let (status, _) = server
        .call(
            "PUT",
            "/api/v1/services/nope/secrets/API_TOKEN",
            Role::Developer,
            Some(json!({ "value": VALUE })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.store.head_seq().await.unwrap(), head, "no event");
    assert!(
        server
            .store
            .list_secrets("component:default/hello")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn only_the_claim_of_the_services_job_carries_values() {
    let server = with_service().await;
    server
        .call(
            "PUT",
            &set_path("API_TOKEN"),
            Role::Developer,
            Some(json!({ "value": VALUE })),
        )
        .await;
    let (status, run) = server
        .call(
            "POST",
            "/api/v1/services/hello/runs",
            Role::Developer,
            Some(json!({ "ref": "refs/heads/main", "sha": "0123456789abcdef0123456789abcdef01234567", "pave_yaml": PAVE_YAML })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert!(!run.to_string().contains(VALUE));
    let (status, claim) = server
        .call(
            "POST",
            "/api/v1/agents/claim",
            Role::Agent,
            Some(json!({ "agent": "a1", "wait_seconds": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claim}");
    assert_eq!(claim["secrets"]["API_TOKEN"], VALUE);
    // The agent's masked report and logs; nothing else shows the value.
    let job = claim["job_id"].as_str().unwrap();
    let token = claim["lease_token"].as_str().unwrap();
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/v1/jobs/{job}/logs"),
            Role::Developer,
            Some(json!({ "lease_token": token, "lines": [{ "step": "s", "stream": "stdout", "text": "token is ***" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = server
        .call(
            "POST",
            &format!("/api/v1/jobs/{job}/complete"),
            Role::Developer,
            Some(json!({ "lease_token": token, "outcome": "success" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let id = run["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/runs/{id}"),
        format!("/api/v1/runs/{id}/logs"),
        "/api/v1/services/hello/runs".into(),
    ] {
        let (status, text) = server.raw(&path, Role::Viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!text.contains(VALUE), "{path} leaks the value");
    }
    assert!(!all_events(&server).await.contains(VALUE));
}

#[tokio::test]
async fn a_server_without_ci_configuration_refuses_secrets() {
    let server = common::start().await;
    let client = common::http();
    let resp = client
        .post(format!("{}/api/v1/apply", server.url))
        .bearer_auth(&server.tokens[&Role::Developer])
        .json(&json!({ "files": [{ "path": "pave.yaml", "content": PAVE_YAML }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = client
        .put(format!("{}{}", server.url, set_path("API_TOKEN")))
        .bearer_auth(&server.tokens[&Role::Developer])
        .json(&json!({ "value": VALUE }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn key_files_are_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::scratch_dir("keys");
    let a = pave_server::state::CiConfig::from_data_dir(&dir).unwrap();
    let b = pave_server::state::CiConfig::from_data_dir(&dir).unwrap();
    assert_eq!(a.secret_key.id(), b.secret_key.id());
    assert_eq!(a.webhook_secret, b.webhook_secret);
    for file in ["secret-key", "webhook-secret"] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let (key, note) =
        pave_server::api::secrets::load_key(&dir, Some(format!(" {} ", "ab".repeat(32)))).unwrap();
    assert_eq!(key.to_hex(), "ab".repeat(32));
    assert!(note.contains("PAVE_SECRET_KEY"));
    let err =
        pave_server::api::secrets::load_key(&dir, Some("short-and-wrong".into())).unwrap_err();
    assert!(!err.contains("short-and-wrong"));
    let _ = std::fs::remove_dir_all(dir);
}
