//! Printing a deployment (header, log lines, analysis checks) and following
//! one live until it ends.

use crate::client::Client;
use crate::commands::catalog::urlencode;
use crate::output;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// How often `--wait` asks for new log lines.
const POLL: Duration = Duration::from_millis(300);

/// Statuses a deployment never leaves.
const FINAL: [&str; 4] = ["succeeded", "failed", "rolled_back", "aborted"];

/// Prints a deployment's log lines as they arrive until it ends; exit 0 only
/// if it succeeded. With `json_out`, lines go to stderr and the final detail
/// to stdout as JSON.
pub async fn follow(client: &Client, id: &str, json_out: bool) -> Result<ExitCode> {
    let mut after = 0i64;
    let mut last_status = String::new();
    loop {
        let page: Value = client
            .get(&format!(
                "/api/v1/deployments/{}?after={after}",
                urlencode(id)
            ))
            .await?;
        for line in page["log"].as_array().into_iter().flatten() {
            after = after.max(line["seq"].as_i64().unwrap_or(after));
            if json_out {
                eprint!("{}", render_line(line, false));
            } else {
                print!("{}", render_line(line, false));
            }
        }
        let d = &page["deployment"];
        let status = d["status"].as_str().unwrap_or("").to_string();
        if status == "paused" && last_status != "paused" {
            eprintln!(
                "  (paused: `pave resume {id}` goes on, `pave promote {} --env {} --step` skips the step, `pave abort {id}` rolls back)",
                d["service"].as_str().unwrap_or("<service>"),
                d["env"].as_str().unwrap_or("<env>")
            );
        }
        last_status = status;
        // The server reads the deployment before its log, so once the status
        // is final this page already holds every line.
        if FINAL.contains(&last_status.as_str()) {
            if json_out {
                let full: Value = client
                    .get(&format!("/api/v1/deployments/{}", urlencode(id)))
                    .await?;
                output::json(&full)?;
            }
            eprintln!("{}", summary(d));
            return Ok(if last_status == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `deployment #3 of hello to prod succeeded` (with the reason when it did not).
fn summary(d: &Value) -> String {
    let mut s = format!(
        "deployment #{} of {} to {} {}",
        d["number"].as_i64().unwrap_or(0),
        d["service"].as_str().unwrap_or("?"),
        d["env"].as_str().unwrap_or("?"),
        d["status"].as_str().unwrap_or("?").replace('_', " ")
    );
    if let Some(reason) = d["reason"].as_str() {
        s.push_str(&format!(": {reason}"));
    }
    s
}

/// `progressing at step 2 (canary, 20% of traffic)`-style status of a deployment.
pub fn status_line(d: &Value) -> String {
    let mut s = d["status"].as_str().unwrap_or("?").replace('_', " ");
    let stage = d["stage"].as_str().unwrap_or("");
    if !stage.is_empty() && !FINAL.contains(&d["status"].as_str().unwrap_or("")) {
        s.push_str(&format!(" ({stage}"));
        if stage == "steps" {
            s.push_str(&format!(" {}", d["step"].as_u64().unwrap_or(0) + 1));
        }
        s.push_str(&format!(", {}% new)", d["weight"].as_u64().unwrap_or(0)));
    }
    if let Some(reason) = current_reason(d) {
        s.push_str(&format!(" — {reason}"));
    }
    s
}

/// The reason while it still says why the deployment is where it is: the
/// server keeps the last reason after a resume, so a progressing
/// deployment's reason is stale.
fn current_reason(d: &Value) -> Option<&str> {
    let status = d["status"].as_str().unwrap_or("");
    (status == "paused" || FINAL.contains(&status))
        .then(|| d["reason"].as_str())
        .flatten()
}

/// The header of `pave deployment`.
pub fn print_header(d: &Value) {
    let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
    println!(
        "Deployment #{} of {} to {}  ({})",
        d["number"].as_i64().unwrap_or(0),
        s("service"),
        s("env"),
        s("id")
    );
    let rows = [
        ("status", status_line(d)),
        ("kind", s("kind")),
        ("strategy", s("strategy")),
        (
            "weight",
            format!("{}% on the new release", d["weight"].as_u64().unwrap_or(0)),
        ),
        ("artifact", format!("{} {}", s("artifact"), s("digest"))),
        (
            "from",
            match (d["run_id"].as_str(), d["sha"].as_str()) {
                (Some(run), Some(sha)) => format!("run {run} at {}", sha.get(..12).unwrap_or(sha)),
                (Some(run), None) => format!("run {run}"),
                _ => "-".to_string(),
            },
        ),
        ("by", s("actor")),
        ("created", s("created_at")),
        ("finished", s("finished_at")),
    ];
    for (label, value) in rows {
        println!("  {label:<9} {value}");
    }
}

/// Prints one log line (see [`render_line`]).
pub fn print_line(line: &Value, detailed: bool) {
    print!("{}", render_line(line, detailed));
}

/// One log line: `12:00:03  analysis  message`, then for analysis lines one
/// line per check (with the measured value and limit when `detailed`), and
/// for a rollback decision how long after first traffic it came.
pub fn render_line(line: &Value, detailed: bool) -> String {
    let kind = line["kind"].as_str().unwrap_or("note");
    let data = &line["data"];
    let verdict = if data["checks"].is_array() {
        Some(data)
    } else if data["verdict"]["checks"].is_array() {
        Some(&data["verdict"])
    } else {
        None
    };
    // An analysis line's message is the verdict's reason, which repeats the
    // checks listed below it: the outcome alone heads them.
    let message = match verdict {
        Some(v) if kind == "analysis" => {
            format!("analysis {}", v["outcome"].as_str().unwrap_or("?"))
        }
        _ => line["message"].as_str().unwrap_or("").to_string(),
    };
    let mut out = format!("{}  {kind:<8}  {message}\n", clock(line["time"].as_str()));
    if let Some(v) = verdict
        && (kind == "analysis" || detailed)
    {
        for c in v["checks"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "            {} {}: {}",
                mark(c["outcome"].as_str().unwrap_or("")),
                c["check"].as_str().unwrap_or("?"),
                c["detail"].as_str().unwrap_or("")
            ));
            if detailed {
                out.push_str(&format!(
                    " [value {}, limit {}]",
                    number(&c["value"]),
                    number(&c["threshold"])
                ));
            }
            out.push('\n');
        }
    }
    if let Some(ms) = data["ms_since_first_traffic"].as_u64() {
        out.push_str(&format!(
            "            decided {:.1}s after the new release first took traffic\n",
            ms as f64 / 1000.0
        ));
    }
    out
}

/// A check outcome as one readable word with a mark.
fn mark(outcome: &str) -> String {
    match outcome {
        "pass" => "✓ pass".to_string(),
        "fail" => "✗ FAIL".to_string(),
        "inconclusive" => "? inconclusive".to_string(),
        other => format!("… {other}"),
    }
}

/// A measured value with four significant digits, or `-`.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x != 0.0 && (x.abs() < 0.001 || x.abs() >= 1e6) => format!("{x:.3e}"),
        Some(x) => {
            let s = format!("{x:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None => "-".to_string(),
    }
}

fn parse_time(t: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `HH:MM:SS` of an RFC 3339 time (UTC), or the text as given.
fn clock(t: Option<&str>) -> String {
    parse_time(t)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| t.unwrap_or("--:--:--").to_string())
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time.
pub fn age(t: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = parse_time(t) else {
        return "-".to_string();
    };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `sha256:4f2a9c1b2d3e` — the algorithm and the first 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    let cut = digest.find(':').map_or(12, |i| i + 1 + 12);
    digest.get(..cut).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_analysis_line_lists_each_check_with_its_numbers() {
        let line = json!({
            "seq": 4, "time": "2026-01-02T03:04:05.000Z", "kind": "analysis",
            "message": "analysis fail: error-rate <= 1%: 9 of 40 were 5xx",
            "data": { "outcome": "fail", "checks": [
                { "check": "error-rate <= 1%", "outcome": "fail", "value": 0.225, "threshold": 0.01, "detail": "9 of 40 canary requests (22.5%) were 5xx" },
                { "check": "latency p95 <= 500ms", "outcome": "running", "value": null, "threshold": 0.5, "detail": "not enough data" }
            ]}
        });
        let text = render_line(&line, true);
        assert!(
            text.starts_with("03:04:05  analysis  analysis fail"),
            "{text}"
        );
        assert!(
            text.contains("✗ FAIL error-rate <= 1%: 9 of 40 canary requests (22.5%) were 5xx [value 0.225, limit 0.01]"),
            "{text}"
        );
        assert!(
            text.contains("… running latency p95 <= 500ms: not enough data [value -, limit 0.5]"),
            "{text}"
        );
    }

    #[test]
    fn a_rollback_decision_says_how_fast_it_came() {
        let line = json!({
            "seq": 9, "time": "2026-01-02T03:04:05Z", "kind": "decision",
            "message": "rolled back: analysis fail",
            "data": { "verdict": { "outcome": "fail", "checks": [] }, "ms_since_first_traffic": 4200 }
        });
        assert!(
            render_line(&line, false)
                .contains("decided 4.2s after the new release first took traffic")
        );
    }

    #[test]
    fn a_stale_reason_is_left_out_of_the_status() {
        let mut d = json!({ "status": "paused", "stage": "steps", "step": 1, "weight": 20,
                            "reason": "waiting at a `pause: {}` step" });
        assert_eq!(
            status_line(&d),
            "paused (steps 2, 20% new) — waiting at a `pause: {}` step"
        );
        d["status"] = json!("progressing");
        assert_eq!(status_line(&d), "progressing (steps 2, 20% new)");
        d["status"] = json!("rolled_back");
        assert_eq!(
            status_line(&d),
            "rolled back — waiting at a `pause: {}` step"
        );
    }

    #[test]
    fn digests_and_ages_shorten() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
        assert_eq!(short_digest("xyz"), "xyz");
        let now = Utc::now();
        let then = (now - chrono::Duration::seconds(125)).to_rfc3339();
        assert_eq!(age(Some(&then), now), "2m");
        assert_eq!(age(Some("garbage"), now), "-");
    }
}
