//! `pave apply -f <file|dir>...`: register teams and services.

use super::client;
use crate::client::Client;
use crate::output;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Options of `pave apply`.
#[derive(clap::Args)]
#[command(after_help = "\
Files: pave.yaml / pave.yml (a service's identity) and Backstage descriptors
(catalog-info.yaml and any YAML whose documents start with `apiVersion: backstage.io/...`).
A directory is searched recursively (hidden directories, node_modules and target are skipped).
The apply is all-or-nothing: one error anywhere and nothing is stored.")]
pub struct ApplyArgs {
    /// Files or directories to apply (repeatable).
    #[arg(short = 'f', long = "file", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Validate and show what would change, without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ApplyFile {
    path: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<Repository>,
}

/// The git repository a `pave.yaml` lives in: registered as the service's source.
#[derive(Serialize)]
struct Repository {
    url: String,
    path: String,
    default_branch: Option<String>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The repository holding `file` (its `origin` URL, else its absolute path), if any.
fn repository_of(file: &Path) -> Option<Repository> {
    let name = file.file_name()?.to_str()?;
    if name != "pave.yaml" && name != "pave.yml" {
        return None;
    }
    let absolute = std::fs::canonicalize(file).ok()?;
    let dir = absolute.parent()?;
    let root = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    let path = absolute
        .strip_prefix(&root)
        .ok()?
        .to_string_lossy()
        .into_owned();
    let url =
        git(&root, &["remote", "get-url", "origin"]).unwrap_or_else(|| root.display().to_string());
    let default_branch = git(
        &root,
        &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
    )
    .map(|b| b.trim_start_matches("origin/").to_string())
    .or_else(|| git(&root, &["symbolic-ref", "--short", "HEAD"]));
    Some(Repository {
        url,
        path,
        default_branch,
    })
}

#[derive(Serialize)]
struct ApplyRequest {
    files: Vec<ApplyFile>,
    dry_run: bool,
}

/// Collects the files and sends them in one all-or-nothing apply.
pub async fn run(
    args: ApplyArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let mut paths = Vec::new();
    for path in &args.files {
        collect(path, true, &mut paths)?;
    }
    if paths.is_empty() {
        bail!(
            "no pave.yaml or Backstage descriptor found under {}",
            display_list(&args.files)
        );
    }
    let client = client(server, token, Duration::from_secs(300))?;
    let result = send(&client, &paths, args.dry_run).await?;
    if args.json {
        output::json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = |key: &str| -> Vec<String> {
        result[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (created, updated, unchanged, implied) = (
        list("created"),
        list("updated"),
        list("unchanged"),
        list("implied_teams"),
    );
    let verb = if args.dry_run {
        "Would apply"
    } else {
        "Applied"
    };
    println!(
        "{verb} {} entities from {} files: {} created, {} updated, {} unchanged",
        created.len() + updated.len() + unchanged.len(),
        paths.len(),
        created.len(),
        updated.len(),
        unchanged.len()
    );
    const SHOWN: usize = 20;
    for (label, keys) in [("created", &created), ("updated", &updated)] {
        for key in keys.iter().take(SHOWN) {
            println!("  {label:<8} {key}");
        }
        if keys.len() > SHOWN {
            println!("  ... and {} more {label}", keys.len() - SHOWN);
        }
    }
    if !implied.is_empty() {
        println!(
            "  created owner teams named in pave.yaml: {}",
            implied.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends `paths` (files, as given) in one all-or-nothing apply; the API's answer.
pub async fn send(client: &Client, paths: &[PathBuf], dry_run: bool) -> Result<Value> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        files.push(ApplyFile {
            path: path.display().to_string(),
            content,
            repository: repository_of(path),
        });
    }
    client
        .post("/api/v1/apply", &ApplyRequest { files, dry_run })
        .await
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds `path` (a file, or a directory searched recursively) to `out`.
fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        if explicit || is_catalog_file(path)? {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if entry.is_dir() {
            if name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            collect(&entry, false, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            collect(&entry, false, out)?;
        }
    }
    Ok(())
}

/// In a directory walk: pave.yaml, or YAML that holds Backstage documents.
fn is_catalog_file(path: &Path) -> Result<bool> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "pave.yaml" || name == "pave.yml" {
        return Ok(true);
    }
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return Ok(false);
    }
    let content =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(content
        .lines()
        .any(|l| l.trim_start().starts_with("apiVersion:") && l.contains("backstage.io/")))
}
