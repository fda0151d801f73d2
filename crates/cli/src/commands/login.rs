//! `pave login`, `pave logout`, `pave whoami`.

use super::{JsonFlag, QUICK, client};
use crate::client::Client;
use crate::config::{self, Credentials, Target};
use crate::output;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::process::ExitCode;

/// Options of `pave login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// Read the token from standard input instead of --token / PAVE_TOKEN.
    #[arg(long)]
    pub token_stdin: bool,
}

/// Checks the token against the server, then saves both.
pub async fn login(
    args: LoginArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let token = if args.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the token from stdin")?;
        line.trim().to_string()
    } else {
        match token {
            Some(t) => t,
            None => bail!("give the token with --token, PAVE_TOKEN or --token-stdin"),
        }
    };
    let server = server
        .unwrap_or_else(|| config::DEFAULT_SERVER.to_string())
        .trim_end_matches('/')
        .to_string();
    let client = Client::new(
        Target {
            server: server.clone(),
            token: Some(token.clone()),
        },
        QUICK,
    )?;
    let me: Value = client.get("/api/v1/whoami").await?;
    let path = config::save_credentials(&Credentials {
        server: server.clone(),
        token,
    })?;
    println!(
        "Logged in to {server} as {} ({}). Saved to {}",
        me["name"].as_str().unwrap_or("?"),
        me["role"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes saved credentials.
pub fn logout() -> Result<ExitCode> {
    match config::credentials_path() {
        Some(path) if path.exists() => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!("Removed {}", path.display());
        }
        _ => println!("No saved credentials."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the calling token's identity.
pub async fn whoami(
    args: JsonFlag,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    let me: Value = client.get("/api/v1/whoami").await?;
    if args.json {
        output::json(&me)?;
    } else {
        println!(
            "{} — role {}{} — server {}",
            me["name"].as_str().unwrap_or("?"),
            me["role"].as_str().unwrap_or("?"),
            me["team"]
                .as_str()
                .map(|t| format!(", team {t}"))
                .unwrap_or_default(),
            client.server()
        );
    }
    Ok(ExitCode::SUCCESS)
}
