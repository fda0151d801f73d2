//! `pave audit log|verify`.

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::output::{self, table};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// Audit subcommands.
#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Read the event log, oldest first.
    Log {
        /// Only events since this time: RFC 3339 (`2026-11-21T10:00:00Z`) or an age (`90s`, `15m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Only events about this subject, e.g. `component:default/hello`.
        #[arg(long)]
        subject: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the whole hash chain; exits 1 naming the first entry that does not verify.
    Verify {
        /// Verify a database directly instead of asking the server (e.g. `sqlite://.pave/pave.db`).
        #[arg(long)]
        database: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an audit subcommand.
pub async fn run(
    cmd: AuditCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Log {
            since,
            subject,
            limit,
            json,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(since) = since {
                query.push(format!("since={}", urlencode(&parse_since(&since)?)));
            }
            if let Some(subject) = subject {
                query.push(format!("subject={}", urlencode(&subject)));
            }
            let events: Vec<Value> = client(server, token, QUICK)?
                .get(&format!("/api/v1/audit/events?{}", query.join("&")))
                .await?;
            if json {
                output::json(&events)?;
            } else if events.is_empty() {
                println!("No events.");
            } else {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| {
                        vec![
                            e["seq"].as_i64().unwrap_or(0).to_string(),
                            e["time"].as_str().unwrap_or("").to_string(),
                            e["type"].as_str().unwrap_or("").to_string(),
                            e["subject"].as_str().unwrap_or("").to_string(),
                            e["actor"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                table(&["SEQ", "TIME", "TYPE", "SUBJECT", "ACTOR"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { database, json } => {
            let report: Value = match database {
                Some(url) => {
                    let store = pave_store::Store::open(&url)
                        .await
                        .with_context(|| format!("opening {url}"))?;
                    let report = store.verify_chain().await?;
                    store.close().await;
                    serde_json::to_value(report)?
                }
                None => {
                    client(server, token, Duration::from_secs(600))?
                        .get("/api/v1/audit/verify")
                        .await?
                }
            };
            let ok = report["ok"].as_bool().unwrap_or(false);
            if json {
                output::json(&report)?;
            } else if ok {
                println!(
                    "OK: {} events verified; head #{} {}",
                    report["checked"].as_i64().unwrap_or(0),
                    report["head_seq"].as_i64().unwrap_or(0),
                    report["head_hash"].as_str().unwrap_or("")
                );
            } else {
                let f = &report["failure"];
                eprintln!(
                    "TAMPERED: entry #{}{} does not verify: {}",
                    f["seq"].as_i64().unwrap_or(0),
                    f["id"]
                        .as_str()
                        .map(|id| format!(" (id {id})"))
                        .unwrap_or_default(),
                    f["reason"].as_str().unwrap_or("unknown reason")
                );
                eprintln!(
                    "  the chain verifies up to #{} ({} entries checked)",
                    report["head_seq"].as_i64().unwrap_or(0),
                    report["checked"].as_i64().unwrap_or(0)
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// RFC 3339 as is, or an age like `15m` turned into a time.
fn parse_since(s: &str) -> Result<String> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_string());
    }
    let (number, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = number
        .parse()
        .with_context(|| format!("--since `{s}`: expected RFC 3339 or an age like 15m, 2h, 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("--since `{s}`: unknown unit `{unit}` (use s, m, h or d)"),
    };
    let t = chrono::Utc::now() - chrono::Duration::seconds(seconds);
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_accepts_times_and_ages() {
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z").unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert!(parse_since("15m").unwrap().ends_with('Z'));
        assert!(parse_since("7d").is_ok());
        assert!(parse_since("7w").is_err());
        assert!(parse_since("soon").is_err());
    }
}
