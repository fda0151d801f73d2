//! The artifact store over HTTP: upload by digest (verified; 201 new, 200
//! present, 422 mismatch with nothing stored), immutability on disk,
//! download, roles, and a run's artifact list and `artifact.packaged` events.

mod ci_common;
mod common;

use ci_common::{CiServer, all_events, start};
use pave_server::auth::{Role, hex};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

async fn put(server: &CiServer, digest: &str, body: Vec<u8>, role: Role) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .put(format!("{}/api/v1/artifacts/{digest}", server.url))
        .bearer_auth(server.token(role))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(server: &CiServer, digest: &str, role: Role) -> (StatusCode, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/artifacts/{digest}", server.url))
        .bearer_auth(server.token(role))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn uploads_are_verified_write_once_and_downloadable() {
    let server = start().await;
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = digest_of(&blob);

    let (status, body) = put(&server, &digest, blob.clone(), Role::Developer).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["digest"], digest);
    assert_eq!(body["size"], blob.len());
    assert_eq!(body["download"], format!("/api/v1/artifacts/{digest}"));
    let (status, body) = put(&server, &digest, blob.clone(), Role::Developer).await;
    assert_eq!(status, StatusCode::OK, "already present: {body}");
    assert_eq!(body["created"], false);

    let (status, got) = get(&server, &digest, Role::Viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, blob);

    // On disk: read-only, at its digest.
    use std::os::unix::fs::PermissionsExt;
    let path = server.ci.artifacts.blob_path(&digest).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );

    // A body that does not match its digest is refused and not stored.
    let other = b"something else".to_vec();
    let claimed = digest_of(b"what the client claims");
    let (status, body) = put(&server, &claimed, other, Role::Developer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "digest_mismatch");
    assert_eq!(
        get(&server, &claimed, Role::Viewer).await.0,
        StatusCode::NOT_FOUND
    );
    // Nor can a wrong body replace a stored blob.
    let (status, _) = put(&server, &digest, b"tampered".to_vec(), Role::Developer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&server, &digest, Role::Viewer).await.1, blob);
    // No temporary files left behind.
    assert_eq!(
        std::fs::read_dir(&server.ci.artifacts_tmp).unwrap().count(),
        0
    );

    // Roles and malformed digests.
    assert_eq!(
        put(&server, &digest_of(b"v"), b"v".to_vec(), Role::Viewer)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&server, &digest_of(b"v"), Role::Viewer).await.0,
        StatusCode::NOT_FOUND
    );
    for bad in [
        "sha256:abc",
        "md5:00",
        &digest.to_uppercase(),
        "sha256:..%2F..%2Fetc",
    ] {
        assert_eq!(
            put(&server, bad, b"v".to_vec(), Role::Developer).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
        assert_eq!(
            get(&server, bad, Role::Viewer).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let empty = digest_of(b"");
    assert_eq!(
        put(&server, &empty, Vec::new(), Role::Developer).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        get(&server, &empty, Role::Viewer).await,
        (StatusCode::OK, Vec::new())
    );
}

#[tokio::test]
async fn a_runs_artifacts_are_listed_with_download_paths_and_events() {
    let server = start().await;
    let yaml = "service: { name: hello, owner: payments }\npipeline:\n  jobs:\n    build:\n      steps: [ { run: echo hi > out.txt } ]\n      artifacts: [ { name: out, path: out.txt } ]\n";
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/apply",
            Role::Developer,
            Some(json!({ "files": [{ "path": "pave.yaml", "content": yaml }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, run) = server
        .call(
            "POST",
            "/api/v1/services/hello/runs",
            Role::Developer,
            Some(json!({ "ref": "refs/heads/main", "sha": "0123456789abcdef0123456789abcdef01234567", "pave_yaml": yaml })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let (_, claim) = server
        .call(
            "POST",
            "/api/v1/agents/claim",
            Role::Agent,
            Some(json!({ "agent": "a", "wait_seconds": 5 })),
        )
        .await;
    let blob = b"hi\n".to_vec();
    let digest = digest_of(&blob);
    assert_eq!(
        put(&server, &digest, blob.clone(), Role::Developer).await.0,
        StatusCode::CREATED
    );
    let missing = digest_of(b"never uploaded");
    let job = claim["job_id"].as_str().unwrap();
    let (status, done) = server
        .call(
            "POST",
            &format!("/api/v1/jobs/{job}/complete"),
            Role::Developer,
            Some(json!({
                "lease_token": claim["lease_token"],
                "outcome": "success",
                "result": { "artifacts": [
                    { "name": "out", "digest": digest, "size": 3, "media_type": "application/octet-stream" },
                    { "name": "lost", "digest": missing, "size": 14, "media_type": "application/octet-stream" }
                ] }
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, list) = server
        .call(
            "GET",
            &format!("/api/v1/runs/{run_id}/artifacts"),
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["name"], "out");
    assert_eq!(list[0]["job"], "build");
    assert_eq!(list[0]["digest"], digest);
    assert_eq!(list[0]["size"], 3);
    assert_eq!(list[0]["stored"], true);
    assert_eq!(list[1]["stored"], false);
    let download = list[0]["download"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}{download}", server.url))
        .bearer_auth(server.token(Role::Viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), blob);
    let events = all_events(&server).await;
    assert!(events.contains("dev.cdevents.artifact.packaged.0.2.0"));
    assert!(events.contains(&format!("pkg:generic/hello/out@{digest}")));
    let (status, _) = server
        .call(
            "GET",
            "/api/v1/runs/01AAAAAAAAAAAAAAAAAAAAAAAA/artifacts",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
