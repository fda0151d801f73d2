//! The pipeline template registry over HTTP: publish (201/200/409/422 with
//! located errors), list, show (404 naming the published versions), and runs
//! planned with their templates (an unknown version queues nothing).

mod ci_common;
mod common;

use ci_common::{CiServer, start};
use pave_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TEMPLATE: &str = r#"template: { name: greet, version: 1.0.0 }
inputs:
  who: { required: true }
outputs:
  msg: ${{ jobs.say.outputs.msg }}
jobs:
  say:
    outputs: { msg: "${{ steps.s.outputs.msg }}" }
    steps: [ { id: s, run: "echo hi ${{ inputs.who }}" } ]
  check:
    needs: say
    steps: [ { run: "echo ${{ needs.say.outputs.msg }}" } ]
"#;

fn pave_yaml(version: &str) -> String {
    format!(
        "service: {{ name: hello, owner: payments }}\npipeline:\n  jobs:\n    greet: {{ uses: greet@{version}, with: {{ who: you }} }}\n    after:\n      needs: greet\n      steps: [ {{ run: \"echo ${{{{ needs.greet.outputs.msg }}}}\" }} ]\n"
    )
}

async fn publish(server: &CiServer, body: &str, role: Role) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/pipeline-templates", server.url))
        .bearer_auth(server.token(role))
        .header("content-type", "application/yaml")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn publish_is_validated_and_versions_are_immutable() {
    let server = start().await;
    let head = server.store.head_seq().await.unwrap();

    // Invalid: an undeclared input, located in the document.
    let bad = TEMPLATE.replace("inputs.who", "inputs.whom");
    let (status, body) = publish(&server, &bad, Role::Developer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let e = &body["error"]["details"]["errors"][0];
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(9), Some(28)),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("`inputs.whom` is not a declared input"),
        "{e}"
    );
    assert_eq!(server.store.head_seq().await.unwrap(), head);

    // Not valid YAML text at all.
    let (status, _) = publish(&server, "template: [", Role::Developer).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Viewers cannot publish.
    let (status, _) = publish(&server, TEMPLATE, Role::Viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = publish(&server, TEMPLATE, Role::Developer).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], true);
    assert_eq!(body["name"], "greet");
    let (status, body) = publish(&server, TEMPLATE, Role::Developer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    let changed = TEMPLATE.replace("echo hi", "echo hello");
    let (status, body) = publish(&server, &changed, Role::Developer).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("immutable"),
        "{body}"
    );
    assert_eq!(server.store.head_seq().await.unwrap(), head + 1);

    let (status, list) = server
        .call("GET", "/api/v1/pipeline-templates", Role::Viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (status, shown) = server
        .call(
            "GET",
            "/api/v1/pipeline-templates/greet/1.0.0",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["body"], TEMPLATE);
    assert_eq!(shown["jobs"], json!(["say", "check"]));
    let (status, missing) = server
        .call(
            "GET",
            "/api/v1/pipeline-templates/greet/2.0.0",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("published versions of `greet`: 1.0.0"),
        "{missing}"
    );
}

#[tokio::test]
async fn runs_are_planned_with_their_templates() {
    let server = start().await;
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/apply",
            Role::Developer,
            Some(json!({ "files": [{ "path": "pave.yaml", "content": pave_yaml("1.0.0") }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = |version: &str| json!({ "sha": "0123456789abcdef0123456789abcdef01234567", "pave_yaml": pave_yaml(version) });

    // Unknown template: 422 located at `uses:`, nothing queued.
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/services/hello/runs",
            Role::Developer,
            Some(run("1.0.0")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let e = &body["error"]["details"]["errors"][0];
    assert_eq!(e["line"], 4, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("`greet@1.0.0` is registered"),
        "{e}"
    );
    assert_eq!(
        server
            .store
            .list_runs("component:default/hello", None)
            .await
            .unwrap()
            .len(),
        0
    );

    let (status, _) = publish(&server, TEMPLATE, Role::Developer).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/services/hello/runs",
            Role::Developer,
            Some(run("9.9.9")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("published versions of `greet`: 1.0.0"),
        "{body}"
    );

    let (status, body) = server
        .call(
            "POST",
            "/api/v1/services/hello/runs",
            Role::Developer,
            Some(run("1.0.0")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jobs = body["jobs"].as_array().expect("jobs");
    let wiring: Vec<(String, Value)> = jobs
        .iter()
        .map(|j| (j["key"].as_str().unwrap().to_string(), j["needs"].clone()))
        .collect();
    assert_eq!(
        wiring,
        [
            ("greet-say".to_string(), json!([])),
            ("greet-check".to_string(), json!(["greet-say"])),
            ("after".to_string(), json!(["greet-say", "greet-check"])),
        ]
    );
}
