//! `PUT /api/v1/services/{name}/repository`: change the repository a
//! service builds from (its `pave.dev/repository*` annotations, which
//! `pave apply` inside a git repository otherwise records).

use super::catalog::NamespaceQuery;
use super::runs::{authorize, service};
use crate::auth::{Auth, Developer};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use pave_store::ServiceRepository;
use serde::{Deserialize, Serialize};

/// The repository to build a service from.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRepositoryRequest {
    /// Clone URL (`https://…`, `ssh://…`, `git@host:path`) or absolute local path.
    pub url: String,
    /// Where `pave.yaml` is inside the repository: a relative directory
    /// (`services/api`) or file (`services/api/pave.yaml`); default the root.
    #[serde(default)]
    pub path: Option<String>,
    /// The branch runs default to; absent drops the previous one.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// The service's repository after the change.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RepositoryView {
    pub service: String,
    pub url: String,
    /// Path of `pave.yaml` inside the repository.
    pub path: String,
    pub default_branch: Option<String>,
    /// False when it already was exactly this (nothing was written).
    pub changed: bool,
    pub generation: i64,
}

/// Change the repository a service builds from.
#[utoipa::path(put, path = "/api/v1/services/{name}/repository", tag = "catalog",
    security(("bearer" = [])), request_body = SetRepositoryRequest,
    params(("name" = String, Path, description = "service name"), NamespaceQuery),
    responses((status = 200, body = RepositoryView),
              (status = 403, description = "the token may not act on this service's team", body = crate::error::ErrorBody),
              (status = 404, description = "no such service", body = crate::error::ErrorBody),
              (status = 422, description = "invalid url, path or branch; nothing changed", body = crate::error::ErrorBody)))]
pub async fn set_repository(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    ApiJson(req): ApiJson<SetRepositoryRequest>,
) -> ApiResult<Json<RepositoryView>> {
    let repo = validate(req)?;
    let row = service(&state, q.namespace.as_deref(), &name).await?;
    authorize(&auth.principal, &row)?;
    let (row, changed) = state
        .store
        .set_service_repository(&row.key, &repo, &auth.principal.actor())
        .await?;
    Ok(Json(RepositoryView {
        service: row.name,
        url: repo.url,
        path: repo.path,
        default_branch: repo.default_branch,
        changed,
        generation: row.generation,
    }))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_repository", message)
}

/// Checks the request and turns `path` into the `pave.yaml` path.
fn validate(req: SetRepositoryRequest) -> ApiResult<ServiceRepository> {
    let url = req.url.trim().to_string();
    if url.is_empty() || url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(invalid("url must be 1-2048 printable characters"));
    }
    // Agents and webhooks pass the url to `git`: never let it read as an option.
    if url.starts_with('-') {
        return Err(invalid("url must not start with `-`"));
    }
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, rest)| host.contains('@') && !host.contains('/') && !rest.is_empty());
    if !(url.contains("://") || scp_like || url.starts_with('/')) {
        return Err(invalid(format!(
            "`{url}` is neither a URL (https://, ssh://, git@host:path) nor an absolute path"
        )));
    }
    let dir = req.path.as_deref().unwrap_or("").trim().trim_matches('/');
    if dir.len() > 1024
        || dir.chars().any(char::is_control)
        || dir.split('/').any(|part| part == ".." || part == ".")
        || req
            .path
            .as_deref()
            .is_some_and(|p| p.trim().starts_with('/'))
    {
        return Err(invalid(
            "path must be a relative path inside the repository, without `.` or `..`",
        ));
    }
    let path = if dir.is_empty() {
        "pave.yaml".to_string()
    } else if dir.ends_with(".yaml") || dir.ends_with(".yml") {
        dir.to_string()
    } else {
        format!("{dir}/pave.yaml")
    };
    let default_branch = match req.default_branch.as_deref().map(str::trim) {
        None => None,
        Some(branch) if valid_branch(branch) => Some(branch.to_string()),
        Some(branch) => {
            return Err(invalid(format!("`{branch}` is not a valid branch name")));
        }
    };
    Ok(ServiceRepository {
        url,
        path,
        default_branch,
    })
}

/// A branch name git would accept (the rules of `git check-ref-format` that matter here).
fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str, path: Option<&str>, branch: Option<&str>) -> SetRepositoryRequest {
        SetRepositoryRequest {
            url: url.into(),
            path: path.map(str::to_string),
            default_branch: branch.map(str::to_string),
        }
    }

    #[test]
    fn accepts_urls_paths_and_branches() {
        let r = validate(req(
            "git@github.com:acme/api.git",
            Some("svc/api/"),
            Some("main"),
        ))
        .unwrap();
        assert_eq!(r.path, "svc/api/pave.yaml");
        assert_eq!(r.default_branch.as_deref(), Some("main"));
        let r = validate(req(
            "https://git.example/x.git",
            Some("deploy/pave.yml"),
            None,
        ))
        .unwrap();
        assert_eq!(r.path, "deploy/pave.yml");
        assert_eq!(
            validate(req("/srv/git/x", None, None)).unwrap().path,
            "pave.yaml"
        );
    }

    #[test]
    fn refuses_what_git_could_misread() {
        for bad in [
            req("--upload-pack=evil", None, None),
            req("relative/dir", None, None),
            req("", None, None),
            req("/srv/x", Some("../up"), None),
            req("/srv/x", Some("/abs"), None),
            req("/srv/x", None, Some("has space")),
            req("/srv/x", None, Some("-x")),
            req("/srv/x", None, Some("a..b")),
        ] {
            assert!(validate(bad).is_err());
        }
    }
}
