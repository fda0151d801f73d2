//! API behaviour over real HTTP: apply is all-or-nothing, errors have one
//! shape, team-scoped tokens stay in their lane, secrets never leak.

mod common;

use pave_server::auth::Role;
use pave_store::{EntityFilter, EventQuery};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CATALOG: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: checkout
spec:
  owner: payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
  description: The <b>ledger</b> & friends
  x-custom: kept
spec:
  type: service
  lifecycle: production
  owner: payments
  system: checkout
  dependsOn: [component:billing]
";

async fn apply(server: &common::TestServer, token: &str, files: Value) -> (StatusCode, Value) {
    let response = common::http()
        .post(format!("{}/api/v1/apply", server.url))
        .bearer_auth(token)
        .json(&json!({ "files": files }))
        .send()
        .await
        .expect("apply");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &common::TestServer, path: &str, role: Role) -> (StatusCode, Value) {
    let response = common::http()
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.tokens[&role])
        .send()
        .await
        .expect("get");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn event_count(server: &common::TestServer) -> usize {
    server
        .store
        .list_events(&EventQuery {
            limit: Some(10_000),
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .len()
}

#[tokio::test]
async fn apply_registers_entities_with_relations_both_ways() {
    let server = common::start().await;
    let admin = server.tokens[&Role::Admin].clone();
    let (status, body) = apply(
        &server,
        &admin,
        json!([{ "path": "catalog-info.yaml", "content": CATALOG }]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"].as_array().map(Vec::len), Some(3));

    let (status, service) = get(&server, "/api/v1/services/ledger", Role::Viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(service["owner"], "payments");
    assert_eq!(service["system"], "checkout");
    assert_eq!(
        service["relations"]["ownedBy"],
        json!(["group:default/payments"])
    );
    assert_eq!(
        service["relations"]["partOf"],
        json!(["system:default/checkout"])
    );
    assert_eq!(
        service["relations"]["dependsOn"],
        json!(["component:default/billing"])
    );
    assert_eq!(service["document"]["metadata"]["x-custom"], "kept");

    let (_, team) = get(&server, "/api/v1/teams/payments", Role::Viewer).await;
    assert_eq!(team["services"], 1);
    let owner_of = team["relations"]["ownerOf"].as_array().expect("ownerOf");
    assert!(
        owner_of.contains(&json!("component:default/ledger")),
        "{team}"
    );

    // Applying the same thing again changes nothing and appends no events.
    let before = event_count(&server).await;
    let (_, again) = apply(
        &server,
        &admin,
        json!([{ "path": "catalog-info.yaml", "content": CATALOG }]),
    )
    .await;
    assert_eq!(again["unchanged"].as_array().map(Vec::len), Some(3));
    assert_eq!(event_count(&server).await, before);
}

#[tokio::test]
async fn one_bad_file_stores_nothing_and_names_file_line_column() {
    let server = common::start().await;
    let admin = server.tokens[&Role::Admin].clone();
    let before = event_count(&server).await;
    let bad = "service:\n  name: hello\n  ownr: payments\n";
    let (status, body) = apply(
        &server,
        &admin,
        json!([
            { "path": "catalog-info.yaml", "content": CATALOG },
            { "path": "svc/pave.yaml", "content": bad },
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_spec");
    let first = &body["error"]["details"]["errors"][0];
    assert_eq!(first["file"], "svc/pave.yaml");
    assert_eq!(first["line"], 3);
    assert_eq!(first["column"], 3);
    let message = first["message"].as_str().unwrap_or("");
    assert!(
        message.contains("ownr") && message.contains("owner"),
        "{message}"
    );

    let stored = server
        .store
        .list_entities(&EntityFilter::default())
        .await
        .expect("list");
    assert!(stored.is_empty(), "nothing may be stored: {stored:?}");
    assert_eq!(event_count(&server).await, before);
}

#[tokio::test]
async fn unreadable_and_misshapen_bodies_get_the_error_shape() {
    let server = common::start().await;
    let client = common::http();
    let admin = &server.tokens[&Role::Admin];
    for (body, want) in [
        ("{not json", StatusCode::BAD_REQUEST),
        ("{\"files\": 3}", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "{\"files\": [], \"surprise\": 1}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("{\"files\": []}", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let response = client
            .post(format!("{}/api/v1/apply", server.url))
            .bearer_auth(admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), want, "body {body}");
        let json: Value = response.json().await.expect("json error");
        assert!(
            json["error"]["code"].is_string() && json["error"]["message"].is_string(),
            "{json}"
        );
    }
    let response = client
        .post(format!("{}/api/v1/tokens", server.url))
        .bearer_auth(admin)
        .body("role=admin")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = get(&server, "/api/v1/no/such/route", Role::Viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn team_scoped_developer_changes_only_its_team() {
    let server = common::start().await;
    let admin = server.tokens[&Role::Admin].clone();
    apply(
        &server,
        &admin,
        json!([{ "path": "catalog-info.yaml", "content": CATALOG }]),
    )
    .await;
    let dev = common::make_token(&server.store, Role::Developer, Some("search")).await;

    let mine = "service:\n  name: indexer\n  owner: search\n";
    let (status, body) = apply(
        &server,
        &dev,
        json!([{ "path": "pave.yaml", "content": mine }]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["implied_teams"], json!(["search"]));

    // Taking over another team's service is refused, and nothing else in the batch lands.
    let theirs = "service:\n  name: ledger\n  owner: search\n";
    let other = "service:\n  name: crawler\n  owner: search\n";
    let before = event_count(&server).await;
    let (status, body) = apply(
        &server,
        &dev,
        json!([{ "path": "a/pave.yaml", "content": other }, { "path": "b/pave.yaml", "content": theirs }]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ledger"),
        "{body}"
    );
    assert_eq!(event_count(&server).await, before);
    let (status, _) = get(&server, "/api/v1/services/crawler", Role::Viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deleting another team's entity is refused too.
    let response = common::http()
        .delete(format!(
            "{}/api/v1/entities/component/default/ledger",
            server.url
        ))
        .bearer_auth(&dev)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn token_secrets_are_shown_once_and_never_stored_or_logged() {
    let server = common::start().await;
    let client = common::http();
    let admin = &server.tokens[&Role::Admin];
    let created: Value = client
        .post(format!("{}/api/v1/tokens", server.url))
        .bearer_auth(admin)
        .json(&json!({ "name": "ci-bot", "role": "viewer" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("pave_") && secret.len() == 69);

    let me: Value = client
        .get(format!("{}/api/v1/whoami", server.url))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "ci-bot");

    let list = client
        .get(format!("{}/api/v1/tokens", server.url))
        .bearer_auth(admin)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    let events = serde_json::to_string(
        &server
            .store
            .list_events(&EventQuery {
                limit: Some(10_000),
                ..EventQuery::default()
            })
            .await
            .expect("events"),
    )
    .expect("json");
    let hash = pave_server::auth::hash_secret(&secret);
    for haystack in [&list, &events] {
        assert!(
            !haystack.contains(&secret) && !haystack.contains(&hash),
            "secret leaked"
        );
    }

    // Revoked: stops working at once.
    let id = created["id"].as_str().expect("id");
    let status = client
        .delete(format!("{}/api/v1/tokens/{id}", server.url))
        .bearer_auth(admin)
        .send()
        .await
        .expect("revoke")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let status = client
        .get(format!("{}/api/v1/whoami", server.url))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("whoami")
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn portal_shows_the_catalog_escaped_and_signs_in_with_a_token() {
    let server = common::start().await;
    let admin = server.tokens[&Role::Admin].clone();
    apply(
        &server,
        &admin,
        json!([{ "path": "catalog-info.yaml", "content": CATALOG }]),
    )
    .await;
    let client = common::http();
    let list = client
        .get(format!("{}/", server.url))
        .send()
        .await
        .expect("portal")
        .text()
        .await
        .expect("html");
    assert!(list.contains("href=\"/services/ledger\""), "{list}");
    assert!(
        list.contains("The &lt;b&gt;ledger&lt;/b&gt; &amp; friends"),
        "description must be escaped"
    );
    let page = client
        .get(format!("{}/services/ledger", server.url))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("html");
    assert!(
        page.contains("href=\"/teams/payments\"") && page.contains("system:default/checkout"),
        "{page}"
    );
    let team = client
        .get(format!("{}/teams/payments", server.url))
        .send()
        .await
        .expect("team")
        .text()
        .await
        .expect("html");
    assert!(team.contains("ledger"));
    let missing = client
        .get(format!("{}/services/nope", server.url))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let bad = client
        .post(format!("{}/login", server.url))
        .form(&[("token", "pave_wrong")])
        .send()
        .await
        .expect("login");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let ok = client
        .post(format!("{}/login", server.url))
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().expect("pair").to_string();
    let signed_in = client
        .get(format!("{}/", server.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(signed_in.contains("Signed in"), "{signed_in}");
    // The session also authenticates API calls from the portal.
    let me = client
        .get(format!("{}/api/v1/whoami", server.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("whoami");
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn cached_lists_see_every_change() {
    let server = common::start().await;
    let admin = server.tokens[&Role::Admin].clone();
    let (_, empty) = get(&server, "/api/v1/services", Role::Viewer).await;
    assert_eq!(empty, json!([]));
    apply(
        &server,
        &admin,
        json!([{ "path": "catalog-info.yaml", "content": CATALOG }]),
    )
    .await;
    let (_, one) = get(&server, "/api/v1/services", Role::Viewer).await;
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    let (_, teams) = get(&server, "/api/v1/teams", Role::Viewer).await;
    assert_eq!(teams[0]["services"], 1);
    // A write that bypasses this server (another server on the same database) is seen too.
    server
        .store
        .delete_entity("component:default/ledger", "system")
        .await
        .expect("delete");
    let (_, none) = get(&server, "/api/v1/services", Role::Viewer).await;
    assert_eq!(none, json!([]));
    let (_, teams) = get(&server, "/api/v1/teams", Role::Viewer).await;
    assert_eq!(teams[0]["services"], 0);
}
