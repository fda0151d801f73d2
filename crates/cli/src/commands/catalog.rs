//! `pave services`, `pave service` (and `pave service set-repo`, `pave service logs`), `pave teams`, `pave team`.

use super::{QUICK, client};
use crate::output::{self, or_dash, table};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Options of list commands.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of show commands.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// Name.
    pub name: String,
    /// Namespace (default `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pave service NAME` or `pave service set-repo ...`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
    /// The service to show.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Namespace (default `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands of `pave service`.
#[derive(clap::Subcommand)]
pub enum ServiceCommand {
    /// Change the repository the service builds from (agents, `pave trigger`).
    SetRepo(SetRepoArgs),
    /// Print the latest output of the service's running instances in an environment.
    Logs(super::deployments::ServiceLogsArgs),
}

/// `pave service set-repo` flags.
#[derive(clap::Args)]
pub struct SetRepoArgs {
    /// The service.
    pub service: String,
    /// Clone URL (https://, ssh://, git@host:path) or a local repository path.
    pub repository: String,
    /// Directory (or file) of the service's pave.yaml inside the repository.
    #[arg(long, value_name = "SUBDIR")]
    pub path: Option<String>,
    /// Branch that runs default to (without it, a previous one is dropped).
    #[arg(long)]
    pub branch: Option<String>,
    /// Namespace (default `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn query(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|ns| format!("?namespace={}", urlencode(ns)))
        .unwrap_or_default()
}

/// Percent-encodes a path segment or query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str()
}

/// Lists services.
pub async fn services(
    args: ListArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let list: Vec<Value> = client(server, token, QUICK)?
        .get(&format!("/api/v1/services{}", query(&args.namespace)))
        .await?;
    if args.json {
        output::json(&list)?;
    } else if list.is_empty() {
        println!("No services yet. Register some with `pave apply -f <dir>`.");
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|v| {
                vec![
                    or_dash(s(v, "name")),
                    or_dash(s(v, "owner")),
                    or_dash(s(v, "system")),
                    or_dash(s(v, "lifecycle")),
                    or_dash(s(v, "type")),
                ]
            })
            .collect();
        table(&["NAME", "OWNER", "SYSTEM", "LIFECYCLE", "TYPE"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_relations(v: &Value) {
    if let Some(relations) = v["relations"].as_object()
        && !relations.is_empty()
    {
        println!("relations:");
        for (rel, targets) in relations {
            let targets: Vec<&str> = targets
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("  {rel:<14} {}", targets.join(", "));
        }
    }
}

/// Shows one service, or runs a `pave service` subcommand.
pub async fn service(
    args: ServiceArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    match args.command {
        Some(ServiceCommand::SetRepo(set)) => return set_repo(set, server, token).await,
        Some(ServiceCommand::Logs(logs)) => {
            return super::deployments::service_logs(logs, server, token).await;
        }
        None => {}
    }
    let Some(name) = args.name else {
        bail!("name the service: `pave service <name>`");
    };
    let v: Value = client(server, token, QUICK)?
        .get(&format!(
            "/api/v1/services/{}{}",
            urlencode(&name),
            query(&args.namespace)
        ))
        .await?;
    if args.json {
        output::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", or_dash(s(&v, "name")));
    if let Some(d) = s(&v, "description") {
        println!("  {d}");
    }
    for (label, key) in [
        ("owner", "owner"),
        ("system", "system"),
        ("lifecycle", "lifecycle"),
        ("type", "type"),
        ("defined in", "origin"),
        ("repository", "repository"),
    ] {
        println!("{label:<11} {}", or_dash(s(&v, key)));
    }
    let annotations = &v["document"]["metadata"]["annotations"];
    if v["repository"].is_string() {
        for (label, key) in [
            ("  path", "pave.dev/repository-path"),
            ("  branch", "pave.dev/default-branch"),
        ] {
            println!("{label:<11} {}", or_dash(annotations[key].as_str()));
        }
    }
    if let Some(links) = v["links"].as_array()
        && !links.is_empty()
    {
        println!("links:");
        for l in links {
            println!("  {} {}", or_dash(s(l, "title")), or_dash(s(l, "url")));
        }
    }
    print_relations(&v);
    Ok(ExitCode::SUCCESS)
}

/// Lists teams.
pub async fn teams(
    args: ListArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let list: Vec<Value> = client(server, token, QUICK)?
        .get(&format!("/api/v1/teams{}", query(&args.namespace)))
        .await?;
    if args.json {
        output::json(&list)?;
    } else if list.is_empty() {
        println!("No teams yet.");
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|v| {
                vec![
                    or_dash(s(v, "name")),
                    or_dash(s(v, "type")),
                    or_dash(s(v, "parent")),
                    v["services"].as_u64().unwrap_or(0).to_string(),
                    or_dash(s(v, "title")),
                ]
            })
            .collect();
        table(&["NAME", "TYPE", "PARENT", "SERVICES", "TITLE"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows one team.
pub async fn team(
    args: ShowArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let v: Value = client(server, token, QUICK)?
        .get(&format!(
            "/api/v1/teams/{}{}",
            urlencode(&args.name),
            query(&args.namespace)
        ))
        .await?;
    if args.json {
        output::json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", or_dash(s(&v, "name")));
    for (label, key) in [("type", "type"), ("parent", "parent"), ("title", "title")] {
        println!("{label:<8} {}", or_dash(s(&v, key)));
    }
    let services: Vec<&str> = v["services_owned"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    println!(
        "services ({}): {}",
        services.len(),
        if services.is_empty() {
            "-".to_string()
        } else {
            services.join(", ")
        }
    );
    print_relations(&v);
    Ok(ExitCode::SUCCESS)
}

/// `pave service set-repo`: points a service at another repository.
async fn set_repo(
    args: SetRepoArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    // A local path is sent absolute: agents and the server resolve it, not this shell.
    let local = std::path::Path::new(&args.repository);
    let url = if !args.repository.contains("://") && local.exists() {
        std::fs::canonicalize(local)
            .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", args.repository))?
            .display()
            .to_string()
    } else {
        args.repository.clone()
    };
    let v: Value = client(server, token, QUICK)?
        .put(
            &format!(
                "/api/v1/services/{}/repository{}",
                urlencode(&args.service),
                query(&args.namespace)
            ),
            &json!({ "url": url, "path": args.path, "default_branch": args.branch }),
        )
        .await?;
    if args.json {
        output::json(&v)?;
    } else if v["changed"].as_bool() == Some(false) {
        println!("{} already builds from {url}", args.service);
    } else {
        println!(
            "{} now builds from {} ({}{})",
            args.service,
            or_dash(s(&v, "url")),
            or_dash(s(&v, "path")),
            s(&v, "default_branch")
                .map(|b| format!(", branch {b}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
