//! One module per command group.

pub mod apply;
pub mod audit;
pub mod catalog;
pub mod demo;
pub mod deployments;
pub mod login;
pub mod new;
pub mod pipeline_templates;
pub mod pipelines;
pub mod run;
pub mod run_record;
pub mod secrets;
pub mod templates;
pub mod tests;
pub mod tokens;
pub mod up;
pub mod up_deploy;

use crate::client::{ApiFailure, Client};
use crate::config;
use std::time::Duration;

/// `--json` for commands that print data.
#[derive(clap::Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A client for the resolved server and token.
pub fn client(
    server: Option<String>,
    token: Option<String>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    Client::new(config::resolve(server, token)?, timeout)
}

/// The default request timeout for quick calls.
pub const QUICK: Duration = Duration::from_secs(30);

/// Prints an error the way a user can act on it.
pub fn report_error(e: &anyhow::Error) {
    if let Some(failure) = e.downcast_ref::<ApiFailure>() {
        eprintln!("error: {}", failure.message);
        if let Some(errors) = failure.details.get("errors").and_then(|v| v.as_array()) {
            if errors.len() > 1 {
                for spec in errors {
                    eprintln!("  {}", format_spec_error(spec));
                }
            } else if let Some(expected) = errors.first().and_then(|e| e["expected"].as_str()) {
                eprintln!("  expected: {expected}");
            }
        }
        return;
    }
    eprintln!("error: {e:#}");
}

/// `file:line:column: message (expected ...)` from a spec error in an API answer.
pub fn format_spec_error(spec: &serde_json::Value) -> String {
    let mut line = format!(
        "{}:{}:{}: {}",
        spec["file"].as_str().unwrap_or("?"),
        spec["line"].as_u64().unwrap_or(0),
        spec["column"].as_u64().unwrap_or(0),
        spec["message"].as_str().unwrap_or("")
    );
    if let Some(expected) = spec["expected"].as_str() {
        line.push_str(&format!(" (expected {expected})"));
    }
    line
}

/// `pave agent`: runs jobs for the configured server until stopped.
pub async fn agent(
    args: crate::agent::AgentArgs,
    server: Option<String>,
    token: Option<String>,
) -> anyhow::Result<std::process::ExitCode> {
    up::init_logging();
    let target = config::resolve(server, token)?;
    if target.token.is_none() {
        anyhow::bail!(
            "an agent needs an agent token (`pave token create --role agent`): --token or PAVE_TOKEN"
        );
    }
    let options = args.options();
    eprintln!(
        "Agent {} pulling jobs from {} (capacity {}, work dir {})",
        options.name,
        target.server,
        options.capacity,
        options.work_dir.display()
    );
    // SIGINT or SIGTERM: running steps are stopped and their jobs handed back.
    crate::agent::run(target, options, crate::agent::stop_signal()).await?;
    eprintln!("Agent stopped.");
    Ok(std::process::ExitCode::SUCCESS)
}
