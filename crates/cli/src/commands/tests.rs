//! `pave tests flaky|quarantine|unquarantine|list`: test results recorded
//! by the server, flaky tests and the test quarantine.

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::output::{self, or_dash, table};
use anyhow::Result;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Test subcommands.
#[derive(clap::Subcommand)]
pub enum TestsCommand {
    /// List flaky tests: passed and failed on the same commit, or passed on retry.
    Flaky {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Look back this many days (default 30).
        #[arg(long)]
        days: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Quarantine a test: it still runs and is recorded, but no longer fails its job.
    Quarantine {
        /// The service.
        service: String,
        /// The test id (`classname::name`, as `pave tests flaky` shows it).
        test_id: String,
        /// Why (kept with the quarantine and in the event log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release a quarantined test: its failures fail the job again.
    Unquarantine {
        /// The service.
        service: String,
        /// The quarantined test id.
        test_id: String,
    },
    /// List a run's test results.
    List {
        /// The run id.
        run: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List a service's quarantined tests.
    Quarantined {
        /// The service.
        service: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a tests subcommand.
pub async fn run(
    cmd: TestsCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    match cmd {
        TestsCommand::Flaky {
            service,
            days,
            json,
        } => {
            let mut query = Vec::new();
            if let Some(s) = &service {
                query.push(format!("service={}", urlencode(s)));
            }
            if let Some(d) = days {
                query.push(format!("days={d}"));
            }
            let path = if query.is_empty() {
                "/api/v1/tests/flaky".to_string()
            } else {
                format!("/api/v1/tests/flaky?{}", query.join("&"))
            };
            let list: Vec<Value> = client.get(&path).await?;
            if json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("No flaky tests.");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = list.iter().map(flaky_row).collect();
            table(
                &[
                    "SERVICE",
                    "TEST",
                    "FLAKE RATE",
                    "LAST SEEN",
                    "EVIDENCE RUNS",
                    "QUARANTINED",
                ],
                &rows,
            );
        }
        TestsCommand::Quarantine {
            service,
            test_id,
            reason,
        } => {
            let added: Value = client
                .post(
                    &format!("/api/v1/services/{}/tests/quarantine", urlencode(&service)),
                    &json!({ "test_id": test_id, "reason": reason }),
                )
                .await?;
            println!(
                "Quarantined {} of {}: it still runs, but its failures no longer fail the job.",
                added["test_id"].as_str().unwrap_or(&test_id),
                service
            );
        }
        TestsCommand::Unquarantine { service, test_id } => {
            client
                .delete(&format!(
                    "/api/v1/services/{}/tests/quarantine?test_id={}",
                    urlencode(&service),
                    urlencode(&test_id)
                ))
                .await?;
            println!("Released {test_id} of {service}: its failures fail the job again.");
        }
        TestsCommand::List { run, json } => {
            let page: Value = client
                .get(&format!("/api/v1/runs/{}/tests", urlencode(&run)))
                .await?;
            if json {
                output::json(&page)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = page["tests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let mut status = or_dash(t["status"].as_str());
                    if t["flaky_reruns"].as_i64().unwrap_or(0) > 0 {
                        status.push_str(" (retried)");
                    }
                    if t["quarantined"].as_bool() == Some(true) {
                        status.push_str(" [quarantined]");
                    }
                    vec![
                        or_dash(t["job"].as_str()),
                        or_dash(t["test_id"].as_str()),
                        status,
                        format!("{}ms", t["duration_ms"].as_i64().unwrap_or(0)),
                        first_line(t["message"].as_str()),
                    ]
                })
                .collect();
            table(&["JOB", "TEST", "STATUS", "DURATION", "MESSAGE"], &rows);
            let totals = &page["totals"];
            println!(
                "{} tests: {} passed, {} failed, {} errors, {} skipped ({} passed on retry)",
                totals["tests"].as_u64().unwrap_or(0),
                totals["passed"].as_u64().unwrap_or(0),
                totals["failed"].as_u64().unwrap_or(0),
                totals["errors"].as_u64().unwrap_or(0),
                totals["skipped"].as_u64().unwrap_or(0),
                totals["flaky"].as_u64().unwrap_or(0),
            );
        }
        TestsCommand::Quarantined { service, json } => {
            let list: Vec<Value> = client
                .get(&format!(
                    "/api/v1/services/{}/tests/quarantine",
                    urlencode(&service)
                ))
                .await?;
            if json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|q| {
                    vec![
                        or_dash(q["test_id"].as_str()),
                        or_dash(q["reason"].as_str().filter(|r| !r.is_empty())),
                        or_dash(q["actor"].as_str()),
                        or_dash(q["time"].as_str()),
                    ]
                })
                .collect();
            table(&["TEST", "REASON", "BY", "SINCE"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of the flaky table.
fn flaky_row(t: &Value) -> Vec<String> {
    let runs: Vec<&str> = t["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["run_id"].as_str())
        .collect();
    let mut evidence = runs.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if runs.len() > 3 {
        evidence.push_str(&format!(" +{}", runs.len() - 3));
    }
    vec![
        or_dash(t["service"].as_str()),
        or_dash(t["test_id"].as_str()),
        format!(
            "{:.0}% ({}/{})",
            t["flake_rate"].as_f64().unwrap_or(0.0) * 100.0,
            t["failing"].as_u64().unwrap_or(0),
            t["observations"].as_u64().unwrap_or(0)
        ),
        or_dash(t["last_seen"].as_str()),
        if evidence.is_empty() {
            "-".into()
        } else {
            evidence
        },
        if t["quarantined"].as_bool() == Some(true) {
            "yes".into()
        } else {
            "no".into()
        },
    ]
}

/// The first line of a message, cut to 60 characters, or `-`.
fn first_line(message: Option<&str>) -> String {
    let Some(line) = message.and_then(|m| m.lines().find(|l| !l.trim().is_empty())) else {
        return "-".into();
    };
    let line = line.trim();
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(59).collect::<String>())
    } else {
        line.to_string()
    }
}
