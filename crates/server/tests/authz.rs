//! Walks every route of the OpenAPI document with no token, a wrong token and
//! each role, and checks the answer. A route added to the API without an
//! entry here, or without the `Auth<..>` extractor, makes this test fail.

mod common;

use pave_server::auth::Role;
use reqwest::StatusCode;

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
enum Access {
    Public,
    /// A human role at least this one (never an agent token).
    AtLeast(Role),
    /// Agent tokens only (claiming: the claim carries secrets).
    AgentOnly,
    /// Agent tokens, or developer and above (`pave run` reports its local
    /// jobs through the same calls).
    JobRunner,
    /// Authenticated by a webhook signature, never by a token: without a
    /// valid signature every caller, whatever its token, gets 401.
    Signed,
}
use Access::*;

/// The authorization table: every (method, path) of the API.
const TABLE: &[(&str, &str, Access)] = &[
    ("get", "/healthz", Public),
    ("get", "/readyz", Public),
    ("post", "/api/v1/apply", AtLeast(Role::Developer)),
    ("get", "/api/v1/services", AtLeast(Role::Viewer)),
    ("get", "/api/v1/services/{name}", AtLeast(Role::Viewer)),
    ("get", "/api/v1/teams", AtLeast(Role::Viewer)),
    ("get", "/api/v1/teams/{name}", AtLeast(Role::Viewer)),
    ("get", "/api/v1/entities", AtLeast(Role::Viewer)),
    (
        "get",
        "/api/v1/entities/{kind}/{namespace}/{name}",
        AtLeast(Role::Viewer),
    ),
    (
        "delete",
        "/api/v1/entities/{kind}/{namespace}/{name}",
        AtLeast(Role::Developer),
    ),
    ("post", "/api/v1/tokens", AtLeast(Role::Admin)),
    ("get", "/api/v1/tokens", AtLeast(Role::Admin)),
    ("delete", "/api/v1/tokens/{id}", AtLeast(Role::Admin)),
    ("get", "/api/v1/whoami", AtLeast(Role::Viewer)),
    ("get", "/api/v1/audit/events", AtLeast(Role::Viewer)),
    ("get", "/api/v1/audit/verify", AtLeast(Role::Viewer)),
    (
        "get",
        "/api/v1/services/{name}/secrets",
        AtLeast(Role::Viewer),
    ),
    (
        "put",
        "/api/v1/services/{name}/secrets/{secret}",
        AtLeast(Role::Developer),
    ),
    (
        "delete",
        "/api/v1/services/{name}/secrets/{secret}",
        AtLeast(Role::Developer),
    ),
    (
        "post",
        "/api/v1/pipeline-templates",
        AtLeast(Role::Developer),
    ),
    ("get", "/api/v1/pipeline-templates", AtLeast(Role::Viewer)),
    (
        "get",
        "/api/v1/pipeline-templates/{name}/{version}",
        AtLeast(Role::Viewer),
    ),
    ("post", "/api/v1/hooks/github", Signed),
    ("post", "/api/v1/hooks/gitlab", Signed),
    ("put", "/api/v1/artifacts/{digest}", JobRunner),
    ("get", "/api/v1/artifacts/{digest}", AtLeast(Role::Viewer)),
    ("get", "/api/v1/runs/{id}/artifacts", AtLeast(Role::Viewer)),
    (
        "post",
        "/api/v1/services/{name}/runs",
        AtLeast(Role::Developer),
    ),
    ("get", "/api/v1/services/{name}/runs", AtLeast(Role::Viewer)),
    ("get", "/api/v1/runs/{id}", AtLeast(Role::Viewer)),
    ("get", "/api/v1/runs/{id}/logs", AtLeast(Role::Viewer)),
    (
        "get",
        "/api/v1/runs/{id}/logs/stream",
        AtLeast(Role::Viewer),
    ),
    ("post", "/api/v1/runs/{id}/cancel", AtLeast(Role::Developer)),
    ("post", "/api/v1/agents/claim", AgentOnly),
    ("post", "/api/v1/jobs/{id}/heartbeat", JobRunner),
    ("post", "/api/v1/jobs/{id}/logs", JobRunner),
    ("post", "/api/v1/jobs/{id}/complete", JobRunner),
    ("post", "/api/v1/runs/local", AtLeast(Role::Developer)),
    (
        "put",
        "/api/v1/services/{name}/repository",
        AtLeast(Role::Developer),
    ),
    ("post", "/api/v1/jobs/{id}/release", JobRunner),
    ("get", "/api/v1/tests/flaky", AtLeast(Role::Viewer)),
    ("get", "/api/v1/runs/{id}/tests", AtLeast(Role::Viewer)),
    (
        "get",
        "/api/v1/services/{name}/tests/quarantine",
        AtLeast(Role::Viewer),
    ),
    (
        "post",
        "/api/v1/services/{name}/tests/quarantine",
        AtLeast(Role::Developer),
    ),
    (
        "delete",
        "/api/v1/services/{name}/tests/quarantine",
        AtLeast(Role::Developer),
    ),
    ("post", "/api/v1/deployments", AtLeast(Role::Developer)),
    ("get", "/api/v1/deployments", AtLeast(Role::Viewer)),
    ("get", "/api/v1/deployments/{id}", AtLeast(Role::Viewer)),
    (
        "post",
        "/api/v1/deployments/{id}/{action}",
        AtLeast(Role::Developer),
    ),
    (
        "get",
        "/api/v1/deployments/{id}/metrics",
        AtLeast(Role::Viewer),
    ),
    ("post", "/api/v1/promotions", AtLeast(Role::Developer)),
    ("post", "/api/v1/rollbacks", AtLeast(Role::Developer)),
    ("get", "/api/v1/environments", AtLeast(Role::Viewer)),
    ("post", "/api/v1/environments", AtLeast(Role::Admin)),
    (
        "get",
        "/api/v1/services/{name}/releases",
        AtLeast(Role::Viewer),
    ),
    ("get", "/api/v1/services/{name}/logs", AtLeast(Role::Viewer)),
    ("get", "/metrics", Public),
];

/// Whether `role` may call a route with `access` (the rule the table states).
fn admits(access: Access, role: Role) -> bool {
    let human_rank = |r: Role| Role::ALL.iter().position(|x| *x == r);
    match access {
        Public => true,
        Signed => false,
        AgentOnly => role == Role::Agent,
        JobRunner => role == Role::Agent || admits(AtLeast(Role::Developer), role),
        AtLeast(required) => role != Role::Agent && human_rank(role) >= human_rank(required),
    }
}

fn concrete(path: &str) -> String {
    path.replace("{kind}", "component")
        .replace("{namespace}", "default")
        .replace("{name}", "does-not-exist")
        .replace("{id}", "01AAAAAAAAAAAAAAAAAAAAAAAA")
        .replace("{secret}", "DOES_NOT_EXIST")
        .replace(
            "{digest}",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
}

/// Every route in the served OpenAPI document, as (method, path).
fn documented_routes(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.push((method.to_string(), path.clone()));
            }
        }
    }
    routes
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> StatusCode {
    let url = format!("{base}{}", concrete(path));
    let mut req = match method {
        "get" => client.get(&url),
        "post" => client
            .post(&url)
            .header("content-type", "application/json")
            .body("{}"),
        "put" => client
            .put(&url)
            .header("content-type", "application/json")
            .body("{}"),
        "patch" => client
            .patch(&url)
            .header("content-type", "application/json")
            .body("{}"),
        "delete" => client.delete(&url),
        other => panic!("unexpected method {other}"),
    };
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request").status()
}

#[tokio::test]
async fn every_documented_route_is_in_the_table_and_enforced() {
    let server = common::start().await;
    let client = common::http();
    let doc: serde_json::Value = client
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let routes = documented_routes(&doc);
    assert!(
        routes.len() >= TABLE.len(),
        "the document lost routes: {routes:?}"
    );

    let mut failures = Vec::new();
    for (method, path) in &routes {
        let Some(&(_, _, access)) = TABLE.iter().find(|(m, p, _)| m == method && p == path) else {
            failures.push(format!(
                "{method} {path}: not in the authz table — decide who may call it and add it"
            ));
            continue;
        };
        let anonymous = call(&client, &server.url, method, path, None).await;
        let wrong = call(
            &client,
            &server.url,
            method,
            path,
            Some("pave_0000000000000000000000000000000000000000000000000000000000000000"),
        )
        .await;
        match access {
            Public => {
                if matches!(anonymous, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    failures.push(format!(
                        "{method} {path}: public route answered {anonymous} without a token"
                    ));
                }
            }
            Signed => {
                let mut statuses = vec![("no token", anonymous), ("a wrong token", wrong)];
                for role in Role::ALL {
                    let status = call(
                        &client,
                        &server.url,
                        method,
                        path,
                        Some(&server.tokens[&role]),
                    )
                    .await;
                    statuses.push((role.as_str(), status));
                }
                for (who, status) in statuses {
                    if status != StatusCode::UNAUTHORIZED {
                        failures.push(format!(
                            "{method} {path}: unsigned with {who} answered {status}, want 401"
                        ));
                    }
                }
            }
            AtLeast(_) | AgentOnly | JobRunner => {
                if anonymous != StatusCode::UNAUTHORIZED {
                    failures.push(format!(
                        "{method} {path}: no token answered {anonymous}, want 401"
                    ));
                }
                if wrong != StatusCode::UNAUTHORIZED {
                    failures.push(format!(
                        "{method} {path}: wrong token answered {wrong}, want 401"
                    ));
                }
                for role in Role::ALL {
                    let status = call(
                        &client,
                        &server.url,
                        method,
                        path,
                        Some(&server.tokens[&role]),
                    )
                    .await;
                    let allowed = admits(access, role);
                    let denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
                    if allowed && denied {
                        failures.push(format!(
                            "{method} {path}: {} was refused ({status})",
                            role.as_str()
                        ));
                    }
                    if !allowed && status != StatusCode::FORBIDDEN {
                        failures.push(format!(
                            "{method} {path}: {} answered {status}, want 403",
                            role.as_str()
                        ));
                    }
                }
            }
        }
    }
    for (method, path, _) in TABLE {
        if !routes.iter().any(|(m, p)| m == method && p == path) {
            failures.push(format!(
                "{method} {path}: in the table but not in the OpenAPI document"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "authorization failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let server = common::start().await;
    let served: serde_json::Value = common::http()
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let generated = serde_json::to_value(pave_server::openapi()).expect("serialize");
    assert_eq!(served, generated);
    assert_eq!(
        served["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
}

#[tokio::test]
async fn agent_tokens_only_claim_and_humans_never_do() {
    let server = common::start().await;
    let client = common::http();
    let agent = &server.tokens[&Role::Agent];
    for path in ["/api/v1/services", "/api/v1/whoami", "/api/v1/audit/events"] {
        let response = client
            .get(format!("{}{path}", server.url))
            .bearer_auth(agent)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("agent tokens may only claim")),
            "{body}"
        );
    }
    for role in [Role::Viewer, Role::Developer, Role::Approver, Role::Admin] {
        let response = client
            .post(format!("{}/api/v1/agents/claim", server.url))
            .bearer_auth(&server.tokens[&role])
            .json(&serde_json::json!({ "agent": "sneaky", "wait_seconds": 0 }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{role:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--role agent")),
            "{body}"
        );
    }
    // Refusals of humans say what the route needs.
    for (path, needs) in [
        (
            "/api/v1/apply",
            "needs the developer role; your token has viewer",
        ),
        (
            "/api/v1/jobs/01AAAAAAAAAAAAAAAAAAAAAAAA/heartbeat",
            "needs an agent token or the developer role; your token has viewer",
        ),
    ] {
        let response = client
            .post(format!("{}{path}", server.url))
            .bearer_auth(&server.tokens[&Role::Viewer])
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needs)),
            "{path}: {body}"
        );
    }
    let response = client
        .post(format!("{}/api/v1/agents/claim", server.url))
        .bearer_auth(agent)
        .json(&serde_json::json!({ "agent": "a1", "wait_seconds": 0 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}
