//! `pave deploy`, `promote`, `rollback`, `abort`, `pause`, `resume`,
//! `deployments`, `deployment`, `env` and `pave service logs`: releases on
//! the server's promotion path.

mod follow;

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::client::{ApiFailure, Client};
use crate::output::{self, or_dash, table};
use anyhow::{Result, anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::ExitCode;

const DEPLOY_HELP: &str = "\
Deploys the artifact of the service's newest green run of its default branch
unless --artifact or --run names another. The server answers at once; the
deploy controller then rolls it out with the environment's strategy (rolling,
blue-green or canary with analysis) from the service's pave.yaml.

Examples:
  pave deploy hello --env dev --wait
  pave deploy hello --env staging --run 01J9Z3K7Q2 --artifact-name app
  pave deploy hello --env prod --artifact sha256:4f2a…  --json";

const PROMOTE_HELP: &str = "\
--to ENV deploys to ENV exactly the digest live in the environment before it on
the promotion path (`pave env list`). --env ENV --step ends the current pause or
analysis step of the canary in flight in ENV and goes on to the next step.

Examples:
  pave promote hello --to staging --wait
  pave promote hello --env prod --step";

const ADDRESS_HELP: &str = "\
Name a deployment by its id, or by service and environment (the one in flight).

Examples:
  pave abort 01J9Z4M2S8XQ6B0T7V5K3N1C9D
  pave abort hello --env prod";

/// Options of `pave deploy`.
#[derive(clap::Args)]
#[command(after_help = DEPLOY_HELP)]
pub struct DeployArgs {
    /// The service to deploy.
    pub service: String,
    /// Environment to deploy to (see `pave env list`).
    #[arg(long)]
    pub env: String,
    /// Deploy this artifact digest (`sha256:<hex>`) from one of the service's green runs.
    #[arg(long, conflicts_with = "run")]
    pub artifact: Option<String>,
    /// Deploy the artifact of this successful run.
    #[arg(long)]
    pub run: Option<String>,
    /// Which of the run's artifacts, when it produced several.
    #[arg(long)]
    pub artifact_name: Option<String>,
    /// Follow the rollout live; exit 0 if it succeeds, 1 if it fails, is rolled back or aborted.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave promote`.
#[derive(clap::Args)]
#[command(after_help = PROMOTE_HELP)]
pub struct PromoteArgs {
    /// The service.
    pub service: String,
    /// Environment to promote into; the source is the one before it.
    #[arg(long, conflicts_with_all = ["step", "env"])]
    pub to: Option<String>,
    /// With --step: the environment whose in-flight canary to advance.
    #[arg(long, requires = "step")]
    pub env: Option<String>,
    /// End the current pause or analysis step of the deployment in flight.
    #[arg(long, requires = "env")]
    pub step: bool,
    /// Follow the rollout live; exit 0 if it succeeds, 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave rollback`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pave rollback hello --env prod --wait")]
pub struct RollbackArgs {
    /// The service.
    pub service: String,
    /// Environment to roll back to its previous good release.
    #[arg(long)]
    pub env: String,
    /// Follow the rollback live; exit 0 if it succeeds, 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave abort`, `pave pause` and `pave resume`.
#[derive(clap::Args)]
#[command(after_help = ADDRESS_HELP)]
pub struct ControlArgs {
    /// A deployment id, or a service name when --env is given.
    pub target: String,
    /// The environment whose in-flight deployment of the service to steer.
    #[arg(long)]
    pub env: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave deployments`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pave deployments\n  pave deployments --service hello --env prod --json"
)]
pub struct ListArgs {
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this environment.
    #[arg(long)]
    pub env: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave deployment`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pave deployment 01J9Z4M2S8XQ6B0T7V5K3N1C9D\n  pave deployment -f 01J9Z4M2S8XQ6B0T7V5K3N1C9D   # follow until it ends"
)]
pub struct ShowArgs {
    /// The deployment id (from `pave deployments`).
    pub id: String,
    /// Keep printing new log lines until the deployment ends (exit 0 only if it succeeded).
    #[arg(short, long)]
    pub follow: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pave env` subcommands.
#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// List the environments in promotion order.
    #[command(after_help = "Example:\n  pave env list --json")]
    List(super::JsonFlag),
    /// Add an environment to the promotion path (admin).
    #[command(
        after_help = "Examples:\n  pave env create qa --after dev --description \"manual QA\"\n  pave env create prod"
    )]
    Create(EnvCreateArgs),
}

/// Options of `pave env create`.
#[derive(clap::Args)]
pub struct EnvCreateArgs {
    /// Name of the new environment.
    pub name: String,
    /// What it is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Place it right after this environment (default: at the end).
    #[arg(long)]
    pub after: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave service logs`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pave service logs hello --env dev --lines 50")]
pub struct ServiceLogsArgs {
    /// The service.
    pub service: String,
    /// The environment whose instances to read.
    #[arg(long)]
    pub env: String,
    /// The last N lines.
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

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
