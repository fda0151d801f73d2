//! `pave deploy`, `promote`, `rollback`, `abort`, `pause`, `resume`,
//! `deployments`, `deployment`, `env` and `pave service logs`: releases on
//! the server's promotion path.

mod args;
mod follow;

pub use args::*;

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::client::{ApiFailure, Client};
use crate::output::{self, or_dash, table};
use anyhow::{Result, anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Statuses of a deployment still in flight.
const IN_FLIGHT: [&str; 3] = ["pending", "progressing", "paused"];

/// Starts a deployment and reports (or follows) it.
pub async fn deploy(
    args: DeployArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    let body = json!({
        "service": args.service,
        "env": args.env,
        "artifact": args.artifact,
        "run": args.run,
        "artifact_name": args.artifact_name,
    });
    let created: Value = client.post("/api/v1/deployments", &body).await?;
    started(&client, created, args.wait, args.json).await
}

/// Promotes to the next environment, or advances the canary in flight one step.
pub async fn promote(
    args: PromoteArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    if !args.step && args.to.is_none() {
        bail!(
            "say where to: `pave promote {} --to ENV`, or `--env ENV --step` to advance a canary",
            args.service
        );
    }
    let client = client(server, token, QUICK)?;
    if args.step {
        let env = args.env.as_deref().unwrap_or_default();
        let id = in_flight(&client, &args.service, env).await?;
        return steer(&client, &id, "promote-step", args.json, args.wait).await;
    }
    let to = args.to.unwrap_or_default();
    let created: Value = client
        .post(
            "/api/v1/promotions",
            &json!({ "service": args.service, "to": to }),
        )
        .await?;
    started(&client, created, args.wait, args.json).await
}

/// Rolls an environment back to its previous good release.
pub async fn rollback(
    args: RollbackArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    let created: Value = client
        .post(
            "/api/v1/rollbacks",
            &json!({ "service": args.service, "env": args.env }),
        )
        .await?;
    started(&client, created, args.wait, args.json).await
}

/// `abort`, `pause` or `resume` of a deployment named by id or service + env.
pub async fn control(
    action: &str,
    args: ControlArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    let id = match &args.env {
        Some(env) => in_flight(&client, &args.target, env).await?,
        None => args.target.clone(),
    };
    steer(&client, &id, action, args.json, false).await
}

/// Sends a control action and prints the deployment as it now is.
async fn steer(
    client: &Client,
    id: &str,
    action: &str,
    json_out: bool,
    wait: bool,
) -> Result<ExitCode> {
    let path = format!("/api/v1/deployments/{}/{action}", urlencode(id));
    let d: Value = match client.post(&path, &json!({})).await {
        Err(e) if is_status(&e, StatusCode::NOT_FOUND) => {
            let message = e
                .downcast_ref::<ApiFailure>()
                .map_or_else(|| e.to_string(), |f| f.message.clone());
            bail!(
                "{message}\n  hint: to name the deployment by service, add --env: `pave {action} <service> --env ENV`"
            )
        }
        other => other?,
    };
    if wait {
        return follow::follow(client, id, json_out).await;
    }
    if json_out {
        output::json(&d)?;
    } else {
        println!(
            "{} {} #{} in {} (now {}); follow it with `pave deployment -f {id}`",
            verb(action),
            str_of(&d, "service"),
            d["number"].as_i64().unwrap_or(0),
            str_of(&d, "env"),
            follow::status_line(&d)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The controller acts on its next tick, so this says what was asked.
fn verb(action: &str) -> &str {
    match action {
        "abort" => "Asked to abort",
        "pause" => "Asked to pause",
        "resume" => "Asked to resume",
        _ => "Asked to advance",
    }
}

fn is_status(e: &anyhow::Error, status: StatusCode) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.status == status)
}

/// The id of the deployment of `service` to `env` that is still in flight.
async fn in_flight(client: &Client, service: &str, env: &str) -> Result<String> {
    let list: Vec<Value> = client
        .get(&format!(
            "/api/v1/deployments?service={}&env={}&limit=20",
            urlencode(service),
            urlencode(env)
        ))
        .await?;
    list.iter()
        .find(|d| IN_FLIGHT.contains(&d["status"].as_str().unwrap_or("")))
        .and_then(|d| d["id"].as_str().map(str::to_string))
        .ok_or_else(|| {
            let last = list.first().map(|d| {
                format!(
                    " (the latest, #{}, {})",
                    d["number"].as_i64().unwrap_or(0),
                    str_of(d, "status")
                )
            });
            anyhow!(
                "no deployment of {service} to {env} is in flight{}",
                last.unwrap_or_default()
            )
        })
}

/// After a create: print the new deployment, or follow it with `--wait`.
async fn started(client: &Client, d: Value, wait: bool, json_out: bool) -> Result<ExitCode> {
    let id = str_of(&d, "id").to_string();
    if json_out && !wait {
        output::json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} #{} of {} to {}: {} ({}, {}) — {id}",
        match d["kind"].as_str() {
            Some("promote") => "Promotion",
            Some("rollback") => "Rollback",
            _ => "Deployment",
        },
        d["number"].as_i64().unwrap_or(0),
        str_of(&d, "service"),
        str_of(&d, "env"),
        follow::short_digest(str_of(&d, "digest")),
        str_of(&d, "artifact"),
        str_of(&d, "strategy"),
    );
    if !wait {
        println!("{id}");
        eprintln!("Follow it with `pave deployment -f {id}` or the portal's /deployments/{id}.");
        return Ok(ExitCode::SUCCESS);
    }
    follow::follow(client, &id, json_out).await
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// Lists deployments, newest first.
pub async fn list(
    args: ListArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let mut path = format!("/api/v1/deployments?limit={}", args.limit);
    if let Some(s) = &args.service {
        path.push_str(&format!("&service={}", urlencode(s)));
    }
    if let Some(e) = &args.env {
        path.push_str(&format!("&env={}", urlencode(e)));
    }
    let list: Vec<Value> = client(server, token, QUICK)?.get(&path).await?;
    if args.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("No deployments yet. Start one with `pave deploy <service> --env <env>`.");
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                format!("#{}", d["number"].as_i64().unwrap_or(0)),
                or_dash(d["service"].as_str()),
                or_dash(d["env"].as_str()),
                or_dash(d["kind"].as_str()),
                or_dash(d["strategy"].as_str()),
                or_dash(d["status"].as_str()),
                format!("{}%", d["weight"].as_u64().unwrap_or(0)),
                follow::short_digest(str_of(d, "digest")).to_string(),
                follow::age(d["created_at"].as_str(), now),
                or_dash(d["id"].as_str()),
            ]
        })
        .collect();
    table(
        &[
            "#", "SERVICE", "ENV", "KIND", "STRATEGY", "STATUS", "WEIGHT", "DIGEST", "AGE", "ID",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Shows one deployment: its header, then its whole log.
pub async fn show(
    args: ShowArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    let detail: Value = client
        .get(&format!("/api/v1/deployments/{}", urlencode(&args.id)))
        .await?;
    if args.follow {
        if !args.json {
            follow::print_header(&detail["deployment"]);
            println!();
        }
        return follow::follow(&client, &args.id, args.json).await;
    }
    if args.json {
        output::json(&detail)?;
        return Ok(ExitCode::SUCCESS);
    }
    follow::print_header(&detail["deployment"]);
    println!();
    for line in detail["log"].as_array().into_iter().flatten() {
        follow::print_line(line, true);
    }
    Ok(ExitCode::SUCCESS)
}

/// `pave env list|create`.
pub async fn env(
    cmd: EnvCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    match cmd {
        EnvCommand::List(flag) => {
            let list: Vec<Value> = client.get("/api/v1/environments").await?;
            if flag.json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|e| {
                    vec![
                        e["position"].as_i64().unwrap_or(0).to_string(),
                        or_dash(e["name"].as_str()),
                        or_dash(e["runtime"].as_str()),
                        or_dash(e["description"].as_str().filter(|d| !d.is_empty())),
                    ]
                })
                .collect();
            table(&["#", "NAME", "RUNTIME", "DESCRIPTION"], &rows);
        }
        EnvCommand::Create(args) => {
            let e: Value = client
                .post(
                    "/api/v1/environments",
                    &json!({ "name": args.name, "description": args.description, "after": args.after }),
                )
                .await?;
            if args.json {
                output::json(&e)?;
            } else {
                println!(
                    "Environment {} created at position {} of the promotion path",
                    str_of(&e, "name"),
                    e["position"].as_i64().unwrap_or(0)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pave service logs`: the latest output of a service's instances in one environment.
pub async fn service_logs(
    args: ServiceLogsArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let lines: Vec<Value> = client(server, token, QUICK)?
        .get(&format!(
            "/api/v1/services/{}/logs?env={}&lines={}",
            urlencode(&args.service),
            urlencode(&args.env),
            args.lines
        ))
        .await?;
    if args.json {
        output::json(&lines)?;
    } else if lines.is_empty() {
        eprintln!(
            "No output from {} in {} (is it deployed there? `pave deployments --service {}`)",
            args.service, args.env, args.service
        );
    } else {
        for l in &lines {
            println!(
                "[{}] {}",
                str_of(l, "instance"),
                l["line"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
