//! `pave secret set|list|delete`: a service's pipeline secrets.
//!
//! Values are read from stdin or an environment variable (never from the
//! command line, where they would land in shell history and `ps`), sent to
//! the server once, and never printed.

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::output::{self, or_dash, table};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

/// Secret subcommands.
#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Set (create or replace) a secret; the value is read from stdin, or from --from-env.
    ///
    /// Steps see it only where their `env:` maps it, e.g.
    /// `env: { TOKEN: ${{ secrets.TOKEN }} }`; it is masked as *** in every log line.
    Set {
        /// The service.
        service: String,
        /// The secret's name: [A-Z_][A-Z0-9_]*.
        name: String,
        /// Read the value from this environment variable instead of stdin.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
        /// The service's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// List a service's secrets: names and update times, never values.
    List {
        /// The service.
        service: String,
        /// The service's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Delete {
        /// The service.
        service: String,
        /// The secret's name.
        name: String,
        /// The service's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

/// Runs a secret subcommand.
pub async fn run(
    cmd: SecretCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    match cmd {
        SecretCommand::Set {
            service,
            name,
            from_env,
            namespace,
        } => {
            pave_store::secrets::check_secret_name(&name).map_err(|rule| anyhow!("{rule}"))?;
            let value = read_value(&name, from_env.as_deref())?;
            let _: Value = client
                .put(
                    &format!(
                        "/api/v1/services/{}/secrets/{}?namespace={}",
                        urlencode(&service),
                        urlencode(&name),
                        urlencode(&namespace)
                    ),
                    &json!({ "value": value }),
                )
                .await?;
            eprintln!("Secret {name} of {service} set.");
        }
        SecretCommand::List {
            service,
            namespace,
            json,
        } => {
            let list: Vec<Value> = client
                .get(&format!(
                    "/api/v1/services/{}/secrets?namespace={}",
                    urlencode(&service),
                    urlencode(&namespace)
                ))
                .await?;
            if json {
                output::json(&list)?;
            } else if list.is_empty() {
                eprintln!(
                    "{service} has no secrets. Add one with `pave secret set {service} NAME`."
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            or_dash(s["name"].as_str()),
                            or_dash(s["updated_at"].as_str()),
                            or_dash(s["updated_by"].as_str()),
                        ]
                    })
                    .collect();
                table(&["NAME", "UPDATED", "BY"], &rows);
            }
        }
        SecretCommand::Delete {
            service,
            name,
            namespace,
        } => {
            client
                .delete(&format!(
                    "/api/v1/services/{}/secrets/{}?namespace={}",
                    urlencode(&service),
                    urlencode(&name),
                    urlencode(&namespace)
                ))
                .await?;
            eprintln!("Secret {name} of {service} deleted.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The value from `$VAR`, else stdin (one trailing newline dropped, so
/// `echo value | pave secret set ...` stores `value`).
fn read_value(name: &str, from_env: Option<&str>) -> Result<String> {
    let value = match from_env {
        Some(var) => std::env::var(var)
            .map_err(|_| anyhow!("environment variable {var} is not set (or not UTF-8)"))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("Enter the value of {name}, then Ctrl-D:");
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .context("reading the secret value from stdin")?;
            if let Some(stripped) = text.strip_suffix('\n') {
                text.truncate(stripped.strip_suffix('\r').unwrap_or(stripped).len());
            }
            text
        }
    };
    if value.is_empty() {
        bail!("the value of {name} is empty; nothing was stored");
    }
    Ok(value)
}
