//! The Prometheus source: an instant PromQL query against a Prometheus
//! server's HTTP API (`GET {address}/api/v1/query?query=...`) and a success
//! condition every returned series must satisfy.
//!
//! - A vector with several series passes only if each series satisfies the
//!   condition (aggregate in PromQL, e.g. `sum(...)`, to judge a total); the
//!   result reports the worst series. A scalar is one value.
//! - NaN values (e.g. `0/0` with no traffic) are no data and are skipped.
//! - No series, only NaN, an unreachable server, a timeout, an error answer
//!   or a range vector are not a verdict on the release: Running while the
//!   window is open, Inconclusive at its end, with the reason in the detail.
//! - A violated condition fails at once, also mid-window: the query is the
//!   user's own judgement (smooth it in PromQL, e.g. `rate(x[1m])`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use super::condition::Condition;
use super::thresholds::undecided;
use super::types::{CheckResult, Outcome};

/// How long one query may take before the check gives up on it.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One series of an instant query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels (empty for a scalar).
    pub labels: BTreeMap<String, String>,
    /// Its value; may be NaN or infinite, as Prometheus reports them.
    pub value: f64,
}

impl Series {
    /// The labels as Prometheus prints them: `{job="api", instance="a:1"}`.
    pub fn label_text(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}{k}={v:?}");
        }
        out.push('}');
        out
    }
}

/// Why a query gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The address is not an http(s) URL.
    #[error(
        "`{address}` is not a Prometheus address (expected e.g. http://127.0.0.1:9090): {reason}"
    )]
    Address { address: String, reason: String },
    /// The server did not answer in time.
    #[error("Prometheus at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// The server could not be reached or the answer could not be read.
    #[error("could not query Prometheus at {address}: {source}")]
    Http {
        address: String,
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus refused the query (bad PromQL, timeout on its side, ...).
    #[error("Prometheus rejected the query ({error_type}): {message}")]
    Query { error_type: String, message: String },
    /// The answer was not Prometheus' JSON.
    #[error("unexpected answer from Prometheus (HTTP {status}): {body}")]
    Malformed { status: u16, body: String },
    /// The query returned something other than an instant vector or scalar.
    #[error(
        "the query returned a {0}; use an instant vector or a scalar (e.g. wrap a range in rate())"
    )]
    Unsupported(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Runs an instant query and returns its series.
pub async fn query(
    address: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Vec<Series>, PrometheusError> {
    let address_error = |reason: String| PrometheusError::Address {
        address: address.to_string(),
        reason,
    };
    let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", address.trim_end_matches('/')))
        .map_err(|e| address_error(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(address_error(format!("scheme `{}`", url.scheme())));
    }
    url.query_pairs_mut().append_pair("query", promql);

    let http = |source: reqwest::Error| {
        if source.is_timeout() {
            PrometheusError::Timeout {
                address: address.to_string(),
                timeout,
            }
        } else {
            PrometheusError::Http {
                address: address.to_string(),
                source,
            }
        }
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(http)?;
    let response = client.get(url).send().await.map_err(http)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(http)?;
    let malformed = || PrometheusError::Malformed {
        status,
        body: body.chars().take(200).collect(),
    };
    // Prometheus answers errors (400, 422, 503) with the same JSON envelope.
    let envelope: Envelope = serde_json::from_str(&body).map_err(|_| malformed())?;
    if envelope.status != "success" {
        return Err(PrometheusError::Query {
            error_type: envelope.error_type.unwrap_or_else(|| "error".into()),
            message: envelope.error.unwrap_or_else(|| format!("HTTP {status}")),
        });
    }
    let data = envelope.data.ok_or_else(malformed)?;
    match data.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> =
                serde_json::from_value(data.result).map_err(|_| malformed())?;
            items
                .into_iter()
                .map(|item| {
                    let value = parse_value(&item.value.1).ok_or_else(malformed)?;
                    Ok(Series {
                        labels: item.metric,
                        value,
                    })
                })
                .collect()
        }
        "scalar" => {
            let (_, text): (f64, String) =
                serde_json::from_value(data.result).map_err(|_| malformed())?;
            let value = parse_value(&text).ok_or_else(malformed)?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                value,
            }])
        }
        other => Err(PrometheusError::Unsupported(other.to_string())),
    }
}

/// Prometheus writes sample values as strings, including `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// Runs a Prometheus check once.
pub(super) async fn check(
    address: &str,
    promql: &str,
    success: &Condition,
    window_complete: bool,
) -> CheckResult {
    let result = |outcome, value, detail| CheckResult {
        check: format!("prometheus `{promql}` {success}"),
        outcome,
        value,
        threshold: Some(success.threshold),
        detail,
    };
    let not_yet = undecided(window_complete);
    let series = match query(address, promql, QUERY_TIMEOUT).await {
        Ok(series) => series,
        Err(e) => {
            tracing::warn!(%address, error = %e, "prometheus analysis query failed");
            return result(not_yet, None, e.to_string());
        }
    };
    if series.is_empty() {
        return result(
            not_yet,
            None,
            "the query returned no series (no data yet, or its labels match nothing)".into(),
        );
    }
    let with_data: Vec<&Series> = series.iter().filter(|s| !s.value.is_nan()).collect();
    if with_data.is_empty() {
        return result(
            not_yet,
            None,
            format!(
                "all {} series are NaN (no traffic to divide by?)",
                series.len()
            ),
        );
    }
    let values: Vec<f64> = with_data.iter().map(|s| s.value).collect();
    let Some(worst) = success.worst(&values) else {
        return result(not_yet, None, "no values".into());
    };
    let count = with_data.len();
    if !success.holds(worst) {
        let culprit = with_data
            .iter()
            .find(|s| s.value.to_bits() == worst.to_bits())
            .map(|s| s.label_text())
            .unwrap_or_default();
        let failing = values.iter().filter(|v| !success.holds(**v)).count();
        let detail = format!(
            "series {culprit} = {worst}, which is not {success} ({failing} of {count} series fail)"
        );
        return result(Outcome::Fail, Some(worst), detail);
    }
    let detail = if count == 1 {
        format!("value {worst} satisfies {success}")
    } else {
        format!("all {count} series satisfy {success} (worst {worst})")
    };
    let outcome = if window_complete {
        Outcome::Pass
    } else {
        Outcome::Running
    };
    result(outcome, Some(worst), detail)
}
