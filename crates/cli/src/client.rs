//! A small client for the Pave API that turns error bodies into readable errors.

use crate::config::Target;
use anyhow::{Result, anyhow};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// An error answered by the server, with its JSON error body.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
    pub details: Value,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiFailure {}

/// The API client. Cheap to clone (connections are shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    /// A client for `target` with a request timeout.
    pub fn new(target: Target, timeout: Duration) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Client { http, target })
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.target.server
    }

    /// GET a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    /// POST JSON, read JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// PUT JSON, read JSON.
    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// The bearer token, for requests this client does not model (raw uploads).
    pub fn token(&self) -> Option<&str> {
        self.target.token.as_deref()
    }

    /// DELETE; expects no body back.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<(), Value>(Method::DELETE, path, None)
            .await
            .map(|_| ())
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let url = format!("{}{}", self.target.server, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.target.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the Pave server at {} — is `pave up` running? (set PAVE_SERVER or run `pave login`)",
                    self.target.server
                )
            } else if e.is_timeout() {
                anyhow!("the Pave server at {} did not answer in time", self.target.server)
            } else {
                anyhow!("request to {url} failed: {e}")
            }
        })?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                return Ok(serde_json::from_value(Value::Null)?);
            }
            return Ok(serde_json::from_slice(&bytes)?);
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let error = &body["error"];
        let mut failure = ApiFailure {
            status,
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            details: error["details"].clone(),
        };
        if status == StatusCode::UNAUTHORIZED && self.target.token.is_none() {
            failure.message = format!(
                "{} — no token found: set PAVE_TOKEN, run `pave login`, or run from the directory where `pave up` wrote .pave/",
                failure.message
            );
        }
        Err(failure.into())
    }
}
