//! The portal's deployment pages over real HTTP, with deployments written
//! through the store as the controller writes them: the list and its
//! filters, a deployment's header, escaped log and analysis values, the
//! live block that stops refreshing once the deployment ends, and "Running
//! where" on the service page.

mod common;

use common::TestServer;
use pave_server::auth::Role;
use pave_store::{NewDeployment, NewLogEntry, Transition};
use reqwest::StatusCode;
use serde_json::json;

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

async fn apply_hello(server: &TestServer) {
    let response = common::http()
        .post(format!("{}/api/v1/apply", server.url))
        .bearer_auth(&server.tokens[&Role::Developer])
        .json(&json!({ "files": [{ "path": "pave.yaml", "content": "service: { name: hello, owner: payments }\n" }] }))
        .send()
        .await
        .expect("apply");
    assert_eq!(response.status(), StatusCode::OK);
}

fn new_deployment(env: &str, strategy: &str, digest_byte: &str) -> NewDeployment {
    NewDeployment {
        service_key: "component:default/hello".into(),
        env: env.into(),
        kind: "deploy".into(),
        digest: format!("sha256:{}", digest_byte.repeat(32)),
        artifact: "app".into(),
        run_id: None,
        sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        strategy: strategy.into(),
        spec: json!({}),
        previous_id: None,
        actor: "user:test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pages_show_the_list_the_log_with_analysis_values_and_where_it_runs() {
    let server = common::start().await;
    let (status, html) = page(&server, "/deployments").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>Deployments</h1>"), "{html}");
    assert!(html.contains("No deployments yet"), "{html}");

    apply_hello(&server).await;
    let (status, html) = page(&server, "/services/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h2>Running where</h2>"), "{html}");
    assert!(html.contains("Not deployed anywhere yet"), "{html}");

    // dev: a release that became stable.
    let dev = server
        .store
        .create_deployment(&new_deployment("dev", "rolling", "ab"))
        .await
        .expect("create dev");
    server
        .store
        .transition_deployment(
            &dev.id,
            dev.version,
            Transition {
                status: "succeeded".into(),
                phase: json!({ "weight": 100 }),
                log: vec![NewLogEntry::new(
                    "decision",
                    "now stable in dev",
                    json!(null),
                )],
                make_stable: true,
                ..Transition::default()
            },
        )
        .await
        .expect("dev succeeded");

    // prod: a canary in flight, with a step, an analysis sample and a hostile message.
    let prod = server
        .store
        .create_deployment(&new_deployment("prod", "canary", "cd"))
        .await
        .expect("create prod");
    let verdict = json!({ "outcome": "running", "checks": [
        { "check": "error-rate <= 2%", "outcome": "running", "value": 0.25, "threshold": 0.02,
          "detail": "5 of 20 canary requests (25%) were 5xx so far" }
    ]});
    server
        .store
        .append_deployment_log(
            &prod.id,
            &[
                NewLogEntry::new("step", "canary at 20% of traffic", json!({ "weight": 20 })),
                NewLogEntry::new("analysis", "analysis running", verdict.clone()),
                NewLogEntry::new("note", "<script>alert(1)</script>", json!(null)),
            ],
        )
        .await
        .expect("log");

    let (status, html) = page(&server, "/deployments").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("href=\"/deployments/{}\"", prod.id)),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/deployments/{}\"", dev.id)),
        "{html}"
    );
    assert!(html.contains("sha256:cdcdcdcdcdcd<"), "{html}");
    let (_, filtered) = page(&server, "/deployments?service=hello&env=dev").await;
    assert!(
        filtered.contains(&dev.id) && !filtered.contains(&prod.id),
        "{filtered}"
    );
    let (status, _) = page(&server, "/deployments?service=Not%20A%20Name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, html) = page(&server, &format!("/deployments/{}", prod.id)).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "hello #1 → prod",
        "dst dst-pending",
        "canary at 20% of traffic",
        "error-rate &lt;= 2%",
        "value 0.25, limit 0.02",
        "5 of 20 canary requests (25%) were 5xx so far",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        // This server runs no controller, so there is no traffic to chart.
        "No traffic through the edge proxy",
    ] {
        assert!(html.contains(needle), "`{needle}` missing from:\n{html}");
    }
    assert!(!html.contains("<script>alert(1)"), "{html}");
    let live = format!("data-live=\"/deployments/{}/state\"", prod.id);
    assert!(html.contains(&live), "{html}");

    // The live block alone; once the canary is rolled back it stops asking for more.
    let (status, block) = page(&server, &format!("/deployments/{}/state", prod.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(block.starts_with("<div id=\"deploy-state\""), "{block}");
    assert!(!block.contains("<html"), "{block}");
    server
        .store
        .transition_deployment(
            &prod.id,
            prod.version,
            Transition {
                status: "rolled_back".into(),
                phase: json!({ "weight": 0 }),
                reason: Some("analysis fail: error-rate <= 2%".into()),
                log: vec![NewLogEntry::new(
                    "decision",
                    "rolled back: analysis fail",
                    json!({ "verdict": verdict, "ms_since_first_traffic": 4200 }),
                )],
                ..Transition::default()
            },
        )
        .await
        .expect("rolled back");
    let (_, block) = page(&server, &format!("/deployments/{}/state", prod.id)).await;
    assert!(!block.contains("data-live"), "{block}");
    assert!(block.contains("dst dst-rolled_back"), "{block}");
    assert!(
        block.contains("analysis fail: error-rate &lt;= 2%"),
        "{block}"
    );
    assert!(
        block.contains("decided 4.2s after the new release first took traffic"),
        "{block}"
    );

    // The service page: dev runs the stable release; both deployments are listed.
    let (_, html) = page(&server, "/services/hello").await;
    assert!(!html.contains("Not deployed anywhere yet"), "{html}");
    assert!(html.contains("sha256:abababababab"), "{html}");
    assert!(html.contains("0123456789ab"), "{html}");
    assert!(html.contains("hello.dev.localhost"), "{html}");
    assert!(
        html.contains(&format!("/deployments/{}", prod.id)),
        "{html}"
    );
    assert!(
        html.contains("href=\"/deployments?service=hello\""),
        "{html}"
    );

    let (status, html) = page(&server, "/deployments/01NOSUCHDEPLOYMENT").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("no deployment `01NOSUCHDEPLOYMENT`"),
        "{html}"
    );
}
