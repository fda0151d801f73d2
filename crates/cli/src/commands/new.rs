//! `pave new <template> <name>`: a new service repository from a golden path.
//!
//! Order matters for "nothing half-created": the name and every parameter
//! are checked before anything is written; rendering is atomic (pave-scaffold
//! renders beside the destination and renames); a failing post-create
//! command or git step removes the directory it created. Registration comes
//! last and never removes the repository.

use super::templates::load_template;
use crate::client::{ApiFailure, Client};
use crate::config;
use crate::output;
use anyhow::{Context, Result, anyhow, bail};
use pave_scaffold::{RenderOptions, Template, TemplateLock};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Options of `pave new`.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  pave new python-http hello --owner platform
  pave new ./my-template billing --param tier=gold --dir services/billing

Exit status: 0 when the repository was created (and registered, when a server
is configured); 1 when nothing was created; 2 when the repository was created
but could not be registered (the message says what to do).")]
pub struct NewArgs {
    /// Template: a built-in name (`pave templates`) or a template directory.
    pub template: String,
    /// Service name (catalog name rule: letters and digits joined by single - _ .).
    pub name: String,
    /// A template parameter (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Owning team (the template's `owner` parameter).
    #[arg(long, value_name = "TEAM")]
    pub owner: Option<String>,
    /// Where to create the repository (default: ./<name>).
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Render into a directory that is not empty.
    #[arg(long)]
    pub force: bool,
    /// Only register the service; do not run its first pipeline and deploy it to dev.
    #[arg(long)]
    pub no_ship: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Creates the repository, commits it and registers it when a server is configured.
pub async fn run(args: NewArgs, server: Option<String>, token: Option<String>) -> Result<ExitCode> {
    if let Err(rule) = pave_model::entity_name_rule(&args.name) {
        bail!("invalid service name `{}`: {rule}", args.name);
    }
    let template = load_template(&args.template)?;
    let answers = answers(&template, &args)?;
    let dest = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let existed = dest.exists();
    let report = template.render(&answers, &dest, RenderOptions { force: args.force })?;
    let commit = match finish_repo(&template, &dest) {
        Ok(c) => c,
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_dir_all(&dest);
            }
            return Err(e.context(format!("creating {}", dest.display())));
        }
    };
    let owner = report.lock.answers.get("owner").and_then(Value::as_str);
    let (server_for_ship, token_for_ship) = (server.clone(), token.clone());
    let registration = register(owner, &dest, server, token).await;
    let (registered, apply, problem) = match registration {
        Ok(Some(v)) => (true, Some(v), None),
        Ok(None) => (false, None, None),
        Err(e) => (false, None, Some(format!("{e:#}"))),
    };
    // Registered on a server: run the first pipeline and put it in dev, so
    // the new service answers before the user has touched it.
    let shipped = if registered && !args.no_ship {
        Some(
            ship(
                &args.name,
                &dest,
                args.json,
                server_for_ship,
                token_for_ship,
            )
            .await?,
        )
    } else {
        None
    };
    let cd = format!("cd {}", dest.display());
    let next = if shipped == Some(true) {
        format!("{cd} && pave promote {} --to staging --wait", args.name)
    } else if registered {
        format!("{cd} && pave trigger {}", args.name)
    } else if problem.is_some() {
        format!("{cd} && pave apply -f pave.yaml")
    } else {
        format!("{cd} && python3 run_tests.py   # then `pave apply -f pave.yaml` against a server")
    };
    if args.json {
        output::json(&json!({
            "template": template.name(),
            "version": template.version().to_string(),
            "source": report.lock.source,
            "dir": dest.display().to_string(),
            "files": report.files,
            "answers": report.lock.answers,
            "commit": commit,
            "registered": registered,
            "shipped_to_dev": shipped,
            "apply": apply,
            "problem": problem,
            "next": next,
        }))?;
    } else {
        println!(
            "Created {} from {} {} in {} ({} files, commit {})",
            args.name,
            template.name(),
            template.version(),
            dest.display(),
            report.files.len(),
            &commit[..commit.len().min(12)]
        );
        println!("  wrote {}", TemplateLock::PATH);
        for cmd in &template.manifest.post_create {
            println!("  ran   {cmd}");
        }
        match (&apply, &problem) {
            (Some(_), _) => println!(
                "  registered {} in the catalog (owner {})",
                args.name,
                report
                    .lock
                    .answers
                    .get("owner")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
            (None, Some(p)) => eprintln!("warning: not registered: {p}"),
            (None, None) => println!("  no server configured: not registered in a catalog"),
        }
        println!("Next: {next}");
    }
    Ok(if problem.is_some() || shipped == Some(false) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The answers: `--param`s, then the positional name and `--owner`.
fn answers(template: &Template, args: &NewArgs) -> Result<pave_scaffold::Answers> {
    let mut answers = template.parse_params(&args.params)?;
    for (key, value) in [("name", Some(&args.name)), ("owner", args.owner.as_ref())] {
        let Some(value) = value else { continue };
        if template.manifest.parameter(key).is_none() {
            if key == "owner" {
                bail!("template `{}` has no `owner` parameter", template.name());
            }
            continue;
        }
        match answers.get(key) {
            Some(Value::String(v)) if v != value => {
                bail!("--param {key}={v} contradicts the {key} given as `{value}`")
            }
            _ => {
                answers.insert(key.to_string(), Value::String(value.clone()));
            }
        }
    }
    let validated = template.validate_answers(&answers);
    if let Err(pave_scaffold::ScaffoldError::Params(errs)) = &validated
        && errs
            .iter()
            .any(|e| e.parameter == "owner" && e.rule == "required")
    {
        return Err(
            anyhow!(validated.unwrap_err()).context("pass the owning team with --owner TEAM")
        );
    }
    Ok(validated?)
}

/// Post-create commands, then `git init -b main` and the first commit; the commit id.
fn finish_repo(template: &Template, dest: &Path) -> Result<String> {
    for cmd in &template.manifest.post_create {
        let status = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(dest)
            .status()
            .with_context(|| format!("running post-create command `{cmd}`"))?;
        if !status.success() {
            bail!("post-create command `{cmd}` failed ({status})");
        }
    }
    git(dest, &["init", "-q", "-b", "main"])?;
    git(dest, &["add", "-A"])?;
    let mut identity = Vec::new();
    if git(dest, &["config", "user.name"]).is_err() {
        identity.extend(["-c", "user.name=Pave"]);
    }
    if git(dest, &["config", "user.email"]).is_err() {
        identity.extend(["-c", "user.email=pave@localhost"]);
    }
    let message = format!(
        "Create from template {} {}",
        template.name(),
        template.version()
    );
    let mut commit = identity;
    commit.extend(["commit", "-q", "-m", &message]);
    git(dest, &commit)?;
    git(dest, &["rev-parse", "HEAD"])
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `pave apply -f pave.yaml` in the new repo when a server is configured;
/// `None` without one. The owner team must exist first.
async fn register(
    owner: Option<&str>,
    dest: &Path,
    server: Option<String>,
    token: Option<String>,
) -> Result<Option<Value>> {
    let Some(target) = config::resolve_configured(server, token)? else {
        return Ok(None);
    };
    let client = Client::new(target, Duration::from_secs(120))?;
    if let Some(owner) = owner {
        let team: Result<Value> = client.get(&format!("/api/v1/teams/{owner}")).await;
        if let Err(e) = team {
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.status.as_u16() == 404)
            {
                bail!(
                    "team `{owner}` does not exist on {}; the repository is kept. Create the team \
                     (a Backstage Group, e.g. `apiVersion: backstage.io/v1alpha1`, `kind: Group`, \
                     `metadata: {{ name: {owner} }}`, `spec: {{ type: team, children: [] }}` in \
                     team.yaml; `pave apply -f team.yaml`), then `pave apply -f {}`",
                    client.server(),
                    dest.join("pave.yaml").display()
                );
            }
            return Err(e);
        }
    }
    let result = super::apply::send(&client, &[dest.join("pave.yaml")], false).await?;
    Ok(Some(result))
}

/// Runs `pave trigger <name> --wait` and `pave deploy <name> --env dev --wait`
/// in the new repository (the same server and token); true when both succeed.
async fn ship(
    name: &str,
    repo: &std::path::Path,
    json: bool,
    server: Option<String>,
    token: Option<String>,
) -> Result<bool> {
    let exe = std::env::current_exe().context("finding the pave binary")?;
    let target = config::resolve_configured(server, token)?;
    for args in [
        vec!["trigger", name, "--wait"],
        vec!["deploy", name, "--env", "dev", "--wait"],
    ] {
        if !json {
            println!("  $ pave {}", args.join(" "));
        }
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.current_dir(repo).args(&args);
        if let Some(t) = &target {
            cmd.env("PAVE_SERVER", &t.server);
            if let Some(token) = &t.token {
                cmd.env("PAVE_TOKEN", token);
            }
        }
        if json {
            // Keep stdout for the one JSON document; progress goes to stderr.
            cmd.stdout(std::process::Stdio::null());
        }
        let status = cmd
            .status()
            .await
            .with_context(|| format!("running pave {}", args.join(" ")))?;
        if !status.success() {
            eprintln!(
                "warning: `pave {}` failed; the service is registered, fix it and run that again",
                args.join(" ")
            );
            return Ok(false);
        }
    }
    Ok(true)
}
