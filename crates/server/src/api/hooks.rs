//! Push webhooks from GitHub and GitLab.
//!
//! These routes take no token: a request is authenticated by the webhook
//! secret (GitHub: `X-Hub-Signature-256`, an HMAC-SHA256 of the raw body;
//! GitLab: `X-Gitlab-Token`, the secret itself), compared in constant time
//! before anything else is read. A missing or wrong signature answers 401
//! and changes nothing.
//!
//! A push to a branch starts a run (trigger `push`) of every service whose
//! `pave.dev/repository` is the pushed repository, at the pushed commit,
//! with the `pave.yaml` the server reads from the repository at that commit
//! (see `crate::repo`); the run is created by the same code as
//! `POST /services/{name}/runs`. Tag pushes and branch deletions are
//! acknowledged (202) and ignored with a reason. A delivery id seen before
//! (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) creates nothing new.

use super::apply::{REPOSITORY_ANNOTATION, REPOSITORY_PATH_ANNOTATION};
use super::runs::start_run;
use super::secrets::read_or_create_private;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, CiConfig};
use crate::views::annotation;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pave_store::EntityFilter;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The data-dir file holding the webhook secret when `PAVE_WEBHOOK_SECRET` is unset.
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";

/// What a webhook delivery did.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct HookResponse {
    /// Ids of the runs created.
    pub runs: Vec<String>,
    /// Names of the services whose repository was pushed.
    pub services: Vec<String>,
    /// Why nothing was done (tag push, deleted branch, duplicate delivery, ...).
    pub ignored: Option<String>,
    /// The delivery id was seen before: nothing new was created.
    pub duplicate: bool,
    /// Services whose run could not be created, with the reason.
    pub errors: Vec<HookError>,
}

/// A service whose run could not be started.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HookError {
    pub service: String,
    pub message: String,
}

/// A push, whichever host sent it.
struct Push {
    provider: &'static str,
    delivery: Option<String>,
    git_ref: String,
    sha: String,
    deleted: bool,
    /// Every location of the repository the payload names.
    urls: Vec<String>,
    actor: String,
}

/// HMAC-SHA256 (RFC 2104) over sha2; 20 lines instead of another crate.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// True when `header` is `sha256=<hex of HMAC-SHA256(secret, body)>`
/// (compared in constant time).
pub fn github_signature_ok(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(given) = decode_hex32(hex) else {
        return false;
    };
    let want = hmac_sha256(secret.as_bytes(), body);
    bool::from(want.ct_eq(&given))
}

/// True when `token` equals `secret`, compared in constant time (both are
/// hashed first, so not even the length leaks).
pub fn gitlab_token_ok(secret: &str, token: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    bool::from(a.ct_eq(&b))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The configuration, or 401: without a webhook secret nothing can be verified.
fn configured(state: &AppState) -> ApiResult<&CiConfig> {
    state.ci.as_deref().ok_or_else(|| {
        ApiError::unauthenticated(
            "this server has no webhook secret configured; no webhook is accepted",
        )
    })
}

/// Receive a GitHub webhook (`push`; `ping` answers 200).
///
/// Authenticated by `X-Hub-Signature-256` (HMAC-SHA256 of the body with the
/// webhook secret), not by a token.
#[utoipa::path(post, path = "/api/v1/hooks/github", tag = "hooks",
    request_body(content = Object, description = "GitHub webhook payload", content_type = "application/json"),
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC of the body>"),
           ("X-GitHub-Event" = String, Header, description = "push or ping"),
           ("X-GitHub-Delivery" = Option<String>, Header, description = "delivery id (deduplicated)")),
    responses((status = 200, description = "ping answered", body = HookResponse),
              (status = 202, description = "push handled: runs created, or ignored with a reason", body = HookResponse),
              (status = 401, description = "missing or wrong signature; nothing was done", body = crate::error::ErrorBody)))]
pub async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<HookResponse>)> {
    let ci = configured(&state)?;
    let signature = header(&headers, "x-hub-signature-256")
        .ok_or_else(|| ApiError::unauthenticated("missing X-Hub-Signature-256"))?;
    if !github_signature_ok(&ci.webhook_secret, &body, signature) {
        return Err(ApiError::unauthenticated(
            "X-Hub-Signature-256 does not match the body and this server's webhook secret",
        ));
    }
    let event = header(&headers, "x-github-event").unwrap_or("");
    match event {
        "ping" => return Ok((StatusCode::OK, Json(HookResponse::default()))),
        "push" => {}
        other => return Ok(ignored(format!("event `{}` is not handled", clean(other)))),
    }
    let payload = parse(&body)?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let repo = &payload["repository"];
    let urls = ["clone_url", "ssh_url", "html_url", "git_url", "url"]
        .iter()
        .filter_map(|k| text(&repo[*k]))
        .collect();
    let push = Push {
        provider: "github",
        delivery: header(&headers, "x-github-delivery").map(str::to_string),
        git_ref: text(&payload["ref"]).unwrap_or_default(),
        sha: text(&payload["after"]).unwrap_or_default(),
        deleted: payload["deleted"].as_bool() == Some(true),
        urls,
        actor: text(&payload["pusher"]["name"])
            .or_else(|| text(&payload["sender"]["login"]))
            .unwrap_or_else(|| "unknown".into()),
    };
    handle_push(&state, ci, push).await
}

/// Receive a GitLab webhook (`Push Hook`).
///
/// Authenticated by `X-Gitlab-Token`, which must equal the webhook secret.
#[utoipa::path(post, path = "/api/v1/hooks/gitlab", tag = "hooks",
    request_body(content = Object, description = "GitLab webhook payload", content_type = "application/json"),
    params(("X-Gitlab-Token" = String, Header, description = "the webhook secret"),
           ("X-Gitlab-Event" = String, Header, description = "Push Hook"),
           ("X-Gitlab-Event-UUID" = Option<String>, Header, description = "delivery id (deduplicated)")),
    responses((status = 202, description = "push handled: runs created, or ignored with a reason", body = HookResponse),
              (status = 401, description = "missing or wrong token; nothing was done", body = crate::error::ErrorBody)))]
pub async fn gitlab(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<HookResponse>)> {
    let ci = configured(&state)?;
    let token = header(&headers, "x-gitlab-token")
        .ok_or_else(|| ApiError::unauthenticated("missing X-Gitlab-Token"))?;
    if !gitlab_token_ok(&ci.webhook_secret, token) {
        return Err(ApiError::unauthenticated(
            "X-Gitlab-Token is not this server's webhook secret",
        ));
    }
    match header(&headers, "x-gitlab-event").unwrap_or("") {
        "Push Hook" => {}
        "Tag Push Hook" => return Ok(ignored("tag pushes do not start runs".into())),
        other => return Ok(ignored(format!("event `{}` is not handled", clean(other)))),
    }
    let payload = parse(&body)?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut urls: Vec<String> = [
        "git_http_url",
        "git_ssh_url",
        "web_url",
        "http_url",
        "ssh_url",
    ]
    .iter()
    .filter_map(|k| text(&payload["project"][*k]))
    .collect();
    urls.extend(
        ["git_http_url", "git_ssh_url", "homepage", "url"]
            .iter()
            .filter_map(|k| text(&payload["repository"][*k])),
    );
    let sha = text(&payload["after"]).unwrap_or_default();
    let push = Push {
        provider: "gitlab",
        delivery: header(&headers, "x-gitlab-event-uuid").map(str::to_string),
        git_ref: text(&payload["ref"]).unwrap_or_default(),
        deleted: is_zero_sha(&sha),
        sha,
        urls,
        actor: text(&payload["user_username"])
            .or_else(|| text(&payload["user_name"]))
            .unwrap_or_else(|| "unknown".into()),
    };
    handle_push(&state, ci, push).await
}

fn parse(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the webhook payload is not JSON: {e}")))
}

fn ignored(reason: String) -> (StatusCode, Json<HookResponse>) {
    (
        StatusCode::ACCEPTED,
        Json(HookResponse {
            ignored: Some(reason),
            ..HookResponse::default()
        }),
    )
}

/// At most 100 characters, no control characters (for messages and actors).
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// Starts a run of every service of the pushed repository.
async fn handle_push(
    state: &AppState,
    ci: &CiConfig,
    push: Push,
) -> ApiResult<(StatusCode, Json<HookResponse>)> {
    if push.git_ref.starts_with("refs/tags/") {
        return Ok(ignored("tag pushes do not start runs".into()));
    }
    if !push.git_ref.starts_with("refs/heads/") {
        return Ok(ignored(format!(
            "`{}` is not a branch",
            clean(&push.git_ref)
        )));
    }
    if push.deleted || is_zero_sha(&push.sha) {
        return Ok(ignored(format!(
            "branch {} was deleted",
            clean(&push.git_ref)
        )));
    }
    let sha_ok =
        matches!(push.sha.len(), 40 | 64) && push.sha.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha_ok {
        return Err(ApiError::invalid(
            "invalid_body",
            "`after` must be the pushed commit's full sha",
        ));
    }
    let delivery = match &push.delivery {
        Some(id) if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) => {
            return Err(ApiError::bad_request("the delivery id header is malformed"));
        }
        other => other.clone(),
    };
    if let Some(id) = &delivery
        && !state.store.record_delivery(push.provider, id).await?
    {
        return Ok((
            StatusCode::ACCEPTED,
            Json(HookResponse {
                ignored: Some(format!("delivery {} was handled before", clean(id))),
                duplicate: true,
                ..HookResponse::default()
            }),
        ));
    }
    let result = start_runs(state, ci, &push).await;
    // Nothing created (an error, or every service failed): let a redelivery retry.
    let created = result.as_ref().is_ok_and(|r| !r.runs.is_empty());
    if let Some(id) = &delivery
        && !created
        && result.as_ref().map_or(true, |r| !r.errors.is_empty())
        && let Err(e) = state.store.forget_delivery(push.provider, id).await
    {
        tracing::warn!(error = %e, "could not forget a failed webhook delivery");
    }
    let mut response = result?;
    if response.services.is_empty() {
        response.ignored = Some("no service in the catalog uses this repository".into());
    }
    Ok((StatusCode::ACCEPTED, Json(response)))
}

async fn start_runs(state: &AppState, ci: &CiConfig, push: &Push) -> ApiResult<HookResponse> {
    let pushed: HashSet<String> = push
        .urls
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| crate::repo::normalize_location(u))
        .collect();
    let services = state
        .store
        .list_entities(&EntityFilter {
            kind: Some("Component".into()),
            ..EntityFilter::default()
        })
        .await?;
    let actor = format!("webhook:{}({})", push.provider, clean(&push.actor));
    let mut response = HookResponse::default();
    for row in services {
        let Some(repository) = annotation(&row, REPOSITORY_ANNOTATION) else {
            continue;
        };
        if !pushed.contains(&crate::repo::normalize_location(&repository)) {
            continue;
        }
        response.services.push(row.name.clone());
        let path =
            annotation(&row, REPOSITORY_PATH_ANNOTATION).unwrap_or_else(|| "pave.yaml".into());
        let text = match crate::repo::read_file_at(
            &repository,
            &push.sha,
            &push.git_ref,
            &path,
            &ci.repo_cache,
        )
        .await
        {
            Ok(text) => text,
            Err(e) => {
                response.errors.push(HookError {
                    service: row.name.clone(),
                    message: format!("reading {path} at {}: {e}", &push.sha),
                });
                continue;
            }
        };
        match start_run(
            state,
            &row,
            push.git_ref.clone(),
            push.sha.clone(),
            path,
            text,
            "push",
            actor.clone(),
        )
        .await
        {
            Ok(run) => response.runs.push(run.id),
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => response.errors.push(HookError {
                service: row.name.clone(),
                message: e.message,
            }),
        }
    }
    Ok(response)
}

/// The webhook secret: `PAVE_WEBHOOK_SECRET` when set, else
/// `DATA/webhook-secret`, created with a random secret (mode 0600) on first
/// start. Returns it and a line saying where it is.
pub fn load_webhook_secret(
    data_dir: &Path,
    env: Option<String>,
) -> Result<(String, String), String> {
    if let Some(secret) = env {
        return Ok((
            secret.trim().to_string(),
            "webhook secret from PAVE_WEBHOOK_SECRET".into(),
        ));
    }
    let path = data_dir.join(WEBHOOK_SECRET_FILE);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("OS random source failed: {e}"))?;
    let fresh = crate::auth::hex(&bytes);
    let (text, created) = read_or_create_private(&path, &format!("{fresh}\n"))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok((
        secret,
        format!(
            "webhook secret {} {} (give it to GitHub/GitLab; hooks at /api/v1/hooks/github|gitlab)",
            if created { "written to" } else { "in" },
            path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::auth::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            crate::auth::hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures() {
        let sig = format!("sha256={}", crate::auth::hex(&hmac_sha256(b"s", b"body")));
        assert!(github_signature_ok("s", b"body", &sig));
        assert!(!github_signature_ok("s", b"body!", &sig));
        assert!(!github_signature_ok("t", b"body", &sig));
        assert!(!github_signature_ok("s", b"body", "sha1=00"));
        assert!(!github_signature_ok("s", b"body", "sha256=zz"));
        assert!(gitlab_token_ok("s3cret", "s3cret"));
        assert!(!gitlab_token_ok("s3cret", "s3cre"));
    }
}
