//! `pave pipeline-template publish|list|show`: the server's registry of
//! reusable pipeline templates; and how `pave run` finds the templates a
//! pipeline `uses:` (a local directory first, then the configured server).

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::client::ApiFailure;
use crate::config;
use crate::output::{self, or_dash, table};
use anyhow::{Context, Result, anyhow, bail};
use pave_model::pipeline_spec::PipelineSpec;
use pave_model::pipeline_template::{
    PipelineTemplate, expand_templates, parse_template, split_uses, template_refs,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Pipeline template subcommands.
#[derive(clap::Subcommand)]
pub enum PipelineTemplateCommand {
    /// Publish a template version (validated first; a published version never changes).
    ///
    /// The file's `template: { name, version }` names the version. Publishing
    /// the same content again changes nothing; other content for a published
    /// version is refused: publish a new version instead.
    Publish {
        /// The template file.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List published templates and their versions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one version: inputs, outputs, jobs and the document.
    Show {
        /// NAME@VERSION, e.g. rust-ci@1.2.0.
        template: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a pipeline-template subcommand.
pub async fn run(
    cmd: PipelineTemplateCommand,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    match cmd {
        PipelineTemplateCommand::Publish { file } => publish(&file, server, token).await,
        PipelineTemplateCommand::List { json } => {
            let list: Vec<Value> = client(server, token, QUICK)?
                .get("/api/v1/pipeline-templates")
                .await?;
            if json {
                output::json(&list)?;
            } else if list.is_empty() {
                eprintln!(
                    "No pipeline templates are published. Publish one with `pave pipeline-template publish -f FILE`."
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            or_dash(t["name"].as_str()),
                            or_dash(t["version"].as_str()),
                            or_dash(t["description"].as_str()),
                            or_dash(t["created_at"].as_str()),
                            or_dash(t["created_by"].as_str()),
                        ]
                    })
                    .collect();
                table(
                    &["NAME", "VERSION", "DESCRIPTION", "PUBLISHED", "BY"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PipelineTemplateCommand::Show { template, json } => {
            let Some((name, version)) = split_uses(&template) else {
                bail!("expected NAME@VERSION (e.g. rust-ci@1.2.0), found `{template}`");
            };
            let t: Value = client(server, token, QUICK)?
                .get(&template_path(name, version))
                .await?;
            if json {
                output::json(&t)?;
            } else {
                print_template(&t);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn template_path(name: &str, version: &str) -> String {
    format!(
        "/api/v1/pipeline-templates/{}/{}",
        urlencode(name),
        urlencode(version)
    )
}

fn print_template(t: &Value) {
    println!(
        "{}@{}  {}",
        or_dash(t["name"].as_str()),
        or_dash(t["version"].as_str()),
        t["description"].as_str().unwrap_or("")
    );
    println!(
        "digest {}  published {} by {}",
        or_dash(t["digest"].as_str()),
        or_dash(t["created_at"].as_str()),
        or_dash(t["created_by"].as_str())
    );
    let empty = Vec::new();
    let inputs = t["inputs"].as_array().unwrap_or(&empty);
    if !inputs.is_empty() {
        println!("\ninputs:");
        for i in inputs {
            let how = if i["required"].as_bool() == Some(true) {
                "required".to_string()
            } else {
                match &i["default"] {
                    Value::Null => "optional".to_string(),
                    Value::String(s) => format!("default {s:?}"),
                    other => format!("default {other}"),
                }
            };
            println!(
                "  {:<16} {:<20} {}",
                or_dash(i["name"].as_str()),
                how,
                i["description"].as_str().unwrap_or("")
            );
        }
    }
    let outputs = t["outputs"].as_array().unwrap_or(&empty);
    if !outputs.is_empty() {
        println!("\noutputs:");
        for o in outputs {
            println!(
                "  {:<16} jobs.{}.outputs.{}",
                or_dash(o["name"].as_str()),
                or_dash(o["job"].as_str()),
                or_dash(o["output"].as_str())
            );
        }
    }
    let jobs: Vec<&str> = t["jobs"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    println!("\njobs: {}\n", jobs.join(", "));
    print!("{}", t["body"].as_str().unwrap_or(""));
}

async fn publish(file: &Path, server: Option<String>, token: Option<String>) -> Result<ExitCode> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    // Checked here first so errors name the user's file.
    if let Err(errors) = parse_template(&shown, &text) {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        eprintln!(
            "error: {shown} has {} problem(s); nothing was published",
            errors.0.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let target = config::resolve(server, token)?;
    let http = reqwest::Client::builder().timeout(QUICK).build()?;
    let mut request = http
        .post(format!("{}/api/v1/pipeline-templates", target.server))
        .header("content-type", "application/yaml")
        .body(text);
    if let Some(t) = &target.token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.map_err(|e| {
        anyhow!(
            "cannot reach the Pave server at {}: {e} — is `pave up` running? (set PAVE_SERVER or run `pave login`)",
            target.server
        )
    })?;
    let status = response.status();
    let bytes = response.bytes().await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(ApiFailure {
            status,
            message: body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            details: body["error"]["details"].clone(),
        }
        .into());
    }
    let key = format!(
        "{}@{}",
        or_dash(body["name"].as_str()),
        or_dash(body["version"].as_str())
    );
    let digest = or_dash(body["digest"].as_str());
    if body["created"].as_bool() == Some(true) {
        eprintln!("Published pipeline template {key} ({digest}).");
    } else {
        eprintln!("{key} is already published with this content ({digest}); nothing changed.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Expands the `uses:` jobs of a pipeline for `pave run`: each
/// `name@version` from `DIR/name@version.yaml` (or `.yml`) when `dir` is
/// given and the file exists, else from the configured server.
pub async fn expand_for_local_run(
    file: &str,
    content: &str,
    spec: &PipelineSpec,
    dir: Option<&Path>,
    server: Option<String>,
    token: Option<String>,
) -> Result<PipelineSpec> {
    let refs = template_refs(spec);
    if refs.is_empty() {
        return Ok(spec.clone());
    }
    let mut found: BTreeMap<(String, String), std::result::Result<PipelineTemplate, String>> =
        BTreeMap::new();
    for (name, version) in refs {
        let t = resolve_one(&name, &version, dir, server.clone(), token.clone()).await;
        found.insert((name, version), t);
    }
    expand_templates(file, content, spec, &mut |name, version| {
        found
            .get(&(name.to_string(), version.to_string()))
            .cloned()
            .unwrap_or_else(|| Err(format!("pipeline template `{name}@{version}` not found")))
    })
    .map_err(|e| anyhow!("{e}"))
}

async fn resolve_one(
    name: &str,
    version: &str,
    dir: Option<&Path>,
    server: Option<String>,
    token: Option<String>,
) -> std::result::Result<PipelineTemplate, String> {
    let key = format!("{name}@{version}");
    // What was tried before the server, for the message when that fails too.
    let mut prefix = format!("pipeline template `{key}`: ");
    if let Some(dir) = dir {
        for ext in ["yaml", "yml"] {
            let path = dir.join(format!("{key}.{ext}"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let shown = path.display().to_string();
            let t = parse_template(&shown, &text).map_err(|e| e.to_string())?;
            if t.name != name || t.version != version {
                return Err(format!(
                    "{shown} declares template `{}`, not `{key}`",
                    t.key()
                ));
            }
            return Ok(t);
        }
        prefix = format!(
            "pipeline template `{key}` is not in {} (no {key}.yaml), and ",
            dir.display()
        );
    }
    let client = client(server, token, QUICK).map_err(|e| format!("{prefix}{e:#}"))?;
    match client.get::<Value>(&template_path(name, version)).await {
        Ok(t) => {
            let body = t["body"].as_str().unwrap_or_default();
            parse_template(&format!("{}:{key}", client.server()), body).map_err(|e| e.to_string())
        }
        Err(e) => Err(match e.downcast_ref::<ApiFailure>() {
            Some(f) if dir.is_none() => f.message.clone(),
            Some(f) => format!("{prefix}{}", f.message),
            None => format!(
                "{prefix}{e:#}; pass --templates DIR holding {key}.yaml to run without a server"
            ),
        }),
    }
}
