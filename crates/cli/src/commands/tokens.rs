//! `pave token create|list|revoke`.

use super::{QUICK, client};
use crate::output::{self, or_dash, table};
use anyhow::Result;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Token subcommands.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once and stored only as a hash.
    Create {
        /// viewer (read), developer (change services, run and record pipelines), approver
        /// (approve releases), admin (everything but claiming jobs), agent (only claim and
        /// report jobs: for `pave agent`).
        #[arg(long, value_parser = ["viewer", "developer", "approver", "admin", "agent"])]
        role: String,
        /// Limit the token to one team's services.
        #[arg(long)]
        team: Option<String>,
        /// A label for the token (default: `<role>-token`).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; it stops working at once on this server.
    Revoke {
        /// The token id (from `pave token list`).
        id: String,
    },
}

/// Runs a token subcommand.
pub async fn run(
    cmd: TokenCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    match cmd {
        TokenCommand::Create {
            role,
            team,
            name,
            json,
        } => {
            let name = name.unwrap_or_else(|| format!("{role}-token"));
            let created: Value = client
                .post(
                    "/api/v1/tokens",
                    &json!({ "name": name, "role": role, "team": team }),
                )
                .await?;
            if json {
                output::json(&created)?;
            } else {
                println!("{}", created["secret"].as_str().unwrap_or(""));
                eprintln!(
                    "Created token {} ({}, role {}{}). The secret above is shown only this once.",
                    created["id"].as_str().unwrap_or("?"),
                    created["name"].as_str().unwrap_or("?"),
                    created["role"].as_str().unwrap_or("?"),
                    created["team"]
                        .as_str()
                        .map(|t| format!(", team {t}"))
                        .unwrap_or_default()
                );
            }
        }
        TokenCommand::List { json } => {
            let list: Vec<Value> = client.get("/api/v1/tokens").await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            or_dash(t["id"].as_str()),
                            or_dash(t["name"].as_str()),
                            or_dash(t["role"].as_str()),
                            or_dash(t["team"].as_str()),
                            or_dash(t["created_at"].as_str()),
                            t["revoked_at"]
                                .as_str()
                                .map(|r| format!("revoked {r}"))
                                .unwrap_or_else(|| "active".into()),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "ROLE", "TEAM", "CREATED", "STATUS"], &rows);
            }
        }
        TokenCommand::Revoke { id } => {
            client
                .delete(&format!(
                    "/api/v1/tokens/{}",
                    super::catalog::urlencode(&id)
                ))
                .await?;
            println!("Revoked token {id}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
