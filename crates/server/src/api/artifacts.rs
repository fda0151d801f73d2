//! The artifact store over HTTP: upload a blob by its sha256 digest
//! (verified while streaming; write-once), download it, and list a run's
//! artifacts with their download paths.
//!
//! Blobs live in a `pave_pipeline::artifacts::ArtifactStore` under the data
//! directory. An upload streams into a temporary file on the same
//! filesystem while hashing, and only a body whose digest is the one named
//! in the path is hard-linked into place (read-only); an existing blob is
//! never replaced, so artifacts are immutable. The jobs that produced them
//! record name, digest and size in their report; `artifact.packaged`
//! events are appended when a job completes (see the store).

use super::secrets::ci;
use crate::auth::{Auth, JobRunner, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt as _};

/// Largest artifact accepted.
pub const MAX_ARTIFACT_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// A stored blob.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BlobView {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    /// False when the blob was already stored (the upload changed nothing).
    pub created: bool,
    /// Where to download it.
    pub download: String,
}

/// An artifact of a run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunArtifact {
    /// The job that produced it.
    pub job_id: String,
    /// The job's instance key.
    pub job: String,
    /// The name given in the pipeline.
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: Option<u64>,
    pub media_type: Option<String>,
    /// Where to download it.
    pub download: String,
    /// Whether the server holds the blob (the agent uploaded it).
    pub stored: bool,
}

/// `sha256:<64 lowercase hex>` from the path, or 400.
fn digest_hex(digest: &str) -> ApiResult<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            ApiError::bad_request("an artifact digest is `sha256:` and 64 lowercase hex characters")
        })
}

fn download_path(digest: &str) -> String {
    format!("/api/v1/artifacts/{digest}")
}

/// Upload an artifact blob by its digest.
///
/// The body is the blob. 201 when stored now, 200 when it was already
/// stored (blobs are immutable), 422 when the body does not hash to the
/// digest (nothing is stored).
#[utoipa::path(put, path = "/api/v1/artifacts/{digest}", tag = "artifacts",
    security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("digest" = String, Path, description = "sha256:<hex> of the body")),
    responses((status = 201, description = "stored", body = BlobView),
              (status = 200, description = "already stored", body = BlobView),
              (status = 422, description = "the body does not match the digest", body = crate::error::ErrorBody),
              (status = 503, description = "no artifact store configured", body = crate::error::ErrorBody)))]
pub async fn upload(
    _auth: Auth<JobRunner>,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobView>)> {
    let want = digest_hex(&digest)?.to_string();
    let ci = ci(&state)?;
    let tmp = ci.artifacts_tmp.join(format!(
        "upload-{}-{}",
        std::process::id(),
        random_suffix()?
    ));
    let received = receive(body, &tmp).await;
    let (actual, size) = match received {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if actual != want {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiError::invalid(
            "digest_mismatch",
            format!("the body hashes to sha256:{actual}, not {digest}; nothing was stored"),
        ));
    }
    let dest = ci
        .artifacts
        .blob_path(&digest)
        .map_err(ApiError::internal)?;
    let placed = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))?;
        std::fs::hard_link(&tmp, &dest)
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = match placed {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(ApiError::internal(format!("storing {digest}: {e}"))),
    };
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(BlobView {
            download: download_path(&digest),
            digest,
            size,
            created,
        }),
    ))
}

/// A unique suffix for temporary files.
fn random_suffix() -> ApiResult<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(crate::auth::hex(&bytes))
}

/// Streams the body into `tmp`, hashing; returns (hex digest, size).
async fn receive(body: Body, tmp: &std::path::Path) -> ApiResult<(String, u64)> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    loop {
        let chunk =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx))
                .await;
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_ARTIFACT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("artifacts may be at most {MAX_ARTIFACT_BYTES} bytes"),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", tmp.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", tmp.display())))?;
    Ok((crate::auth::hex(&hasher.finalize()), size))
}

/// Download an artifact blob (verified against its digest before sending).
#[utoipa::path(get, path = "/api/v1/artifacts/{digest}", tag = "artifacts",
    security(("bearer" = [])),
    params(("digest" = String, Path, description = "sha256:<hex>")),
    responses((status = 200, description = "the blob", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn download(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> ApiResult<Response> {
    digest_hex(&digest)?;
    let ci = ci(&state)?.clone();
    let d = digest.clone();
    let opened = tokio::task::spawn_blocking(move || ci.artifacts.open_blob(&d))
        .await
        .map_err(ApiError::internal)?;
    let file = match opened {
        Ok(f) => f,
        Err(pave_pipeline::artifacts::ArtifactError::NotFound(_)) => {
            return Err(ApiError::not_found(format!("no artifact {digest}")));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let size = file.metadata().map_err(ApiError::internal)?.len();
    let stream = FileStream {
        file: tokio::fs::File::from_std(file),
        buf: vec![0u8; 64 * 1024].into_boxed_slice(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::ETAG, format!("\"{digest}\"")),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_string(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A file as a stream of chunks.
struct FileStream {
    file: tokio::fs::File,
    buf: Box<[u8]>,
}

impl futures_core::Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut buf = tokio::io::ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled())))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A run's artifacts, from its jobs' reports, with download paths.
#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts", tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = [RunArtifact]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn run_artifacts(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RunArtifact>>> {
    if state.store.get_run(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    }
    let jobs = state.store.list_jobs(&id).await?;
    let mut out = Vec::new();
    for job in jobs {
        let Some(list) = job.result.get("artifacts").and_then(Value::as_array) else {
            continue;
        };
        for a in list {
            let (Some(name), Some(digest)) = (
                a.get("name").and_then(Value::as_str),
                a.get("digest").and_then(Value::as_str),
            ) else {
                continue;
            };
            if digest_hex(digest).is_err() {
                continue;
            }
            let stored = state
                .ci
                .as_ref()
                .is_some_and(|ci| ci.artifacts.contains(digest));
            out.push(RunArtifact {
                job_id: job.id.clone(),
                job: job.key.clone(),
                name: name.to_string(),
                digest: digest.to_string(),
                size: a.get("size").and_then(Value::as_u64),
                media_type: a
                    .get("media_type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                download: download_path(digest),
                stored,
            });
        }
    }
    Ok(Json(out))
}
