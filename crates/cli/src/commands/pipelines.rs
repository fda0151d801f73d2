//! `pave trigger`, `pave runs`, `pave logs`, `pave cancel`: pipeline runs on the server.

use super::catalog::urlencode;
use super::{QUICK, client};
use crate::client::Client;
use crate::output::{self, or_dash, table};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `pave trigger`.
#[derive(clap::Args)]
pub struct TriggerArgs {
    /// The service whose pipeline to run.
    pub service: String,
    /// Branch, tag or commit to build (default: the repository's default branch).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// Follow the run live and exit non-zero unless it succeeds.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave runs`.
#[derive(clap::Args)]
pub struct RunsArgs {
    /// The service.
    pub service: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The run id.
    pub run: String,
    /// Keep following until the run finishes.
    #[arg(short, long)]
    pub follow: bool,
}

/// Options of `pave cancel`.
#[derive(clap::Args)]
pub struct CancelArgs {
    /// The run id.
    pub run: String,
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit and `pave.yaml` text of `git_ref` in `repository`.
async fn read_at_ref(
    repository: &str,
    git_ref: &str,
    path: &str,
) -> Result<(String, String, String)> {
    let local = Path::new(repository);
    if local.is_dir() {
        let sha = git(
            local,
            &["rev-parse", "--verify", &format!("{git_ref}^{{commit}}")],
        )
        .await
        .with_context(|| format!("`{git_ref}` is not a commit in {repository}"))?;
        let full = git(local, &["rev-parse", "--symbolic-full-name", git_ref])
            .await
            .unwrap_or_default();
        let text = git(local, &["show", &format!("{sha}:{path}")]).await?;
        return Ok((
            sha,
            if full.is_empty() {
                git_ref.to_string()
            } else {
                full
            },
            text,
        ));
    }
    let scratch = std::env::temp_dir().join(format!("pave-trigger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = async {
        git(&scratch, &["init", "--quiet", "--bare"]).await?;
        git(
            &scratch,
            &["fetch", "--quiet", "--depth", "1", repository, git_ref],
        )
        .await?;
        let sha = git(&scratch, &["rev-parse", "FETCH_HEAD"]).await?;
        let text = git(&scratch, &["show", &format!("{sha}:{path}")]).await?;
        Ok::<_, anyhow::Error>((sha, git_ref.to_string(), text))
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Starts a run of a service's pipeline at a ref.
pub async fn trigger(
    args: TriggerArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, Duration::from_secs(60))?;
    let service: Value = client
        .get(&format!("/api/v1/services/{}", urlencode(&args.service)))
        .await?;
    let repository = service["repository"].as_str().ok_or_else(|| {
        anyhow!(
            "service {} has no repository: run `pave apply -f pave.yaml` inside its git repository",
            args.service
        )
    })?;
    let annotations = &service["document"]["metadata"]["annotations"];
    let path = annotations["pave.dev/repository-path"]
        .as_str()
        .unwrap_or("pave.yaml");
    let git_ref = args
        .git_ref
        .clone()
        .or_else(|| {
            annotations["pave.dev/default-branch"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "HEAD".to_string());
    let (sha, full_ref, text) = read_at_ref(repository, &git_ref, path).await?;
    let run: Value = client
        .post(
            &format!("/api/v1/services/{}/runs", urlencode(&args.service)),
            &json!({ "ref": full_ref, "sha": sha, "pave_yaml": text, "file": path }),
        )
        .await?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if args.json && !args.wait {
        output::json(&run)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "Run #{} of {} queued: {} at {} ({})",
        run["number"].as_i64().unwrap_or(0),
        args.service,
        full_ref,
        &sha[..sha.len().min(12)],
        id
    );
    if !args.wait {
        println!("{id}");
        eprintln!("Follow it with `pave logs -f {id}`.");
        return Ok(ExitCode::SUCCESS);
    }
    follow(&client, &id, args.json).await
}

/// Prints a run's log from the start, following it until it finishes when asked,
/// then its summary; the exit code says whether it succeeded.
async fn follow(client: &Client, id: &str, json_out: bool) -> Result<ExitCode> {
    let mut after = 0i64;
    let mut names: HashMap<String, String> = HashMap::new();
    loop {
        let page: Value = client
            .get(&format!("/api/v1/runs/{id}/logs?after={after}&limit=5000"))
            .await?;
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        if lines
            .iter()
            .any(|l| !names.contains_key(l["job_id"].as_str().unwrap_or("")))
        {
            names = job_names(client, id).await?;
        }
        for line in &lines {
            let job = names
                .get(line["job_id"].as_str().unwrap_or(""))
                .map(String::as_str)
                .unwrap_or("?");
            let text = format!(
                "[{job} › {}] {}",
                line["step"].as_str().unwrap_or(""),
                line["text"].as_str().unwrap_or("")
            );
            if line["stream"] == "stderr" || json_out {
                eprintln!("{text}")
            } else {
                println!("{text}")
            }
        }
        after = page["last_seq"].as_i64().unwrap_or(after);
        if page["finished"].as_bool() == Some(true) && lines.is_empty() {
            break;
        }
        if lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let run: Value = client.get(&format!("/api/v1/runs/{id}")).await?;
    if json_out {
        output::json(&run)?;
    } else {
        print_jobs(&run);
    }
    Ok(if run["outcome"] == "success" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn job_names(client: &Client, id: &str) -> Result<HashMap<String, String>> {
    let run: Value = client.get(&format!("/api/v1/runs/{id}")).await?;
    Ok(run["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    (
                        j["id"].as_str().unwrap_or("").to_string(),
                        j["key"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn print_jobs(run: &Value) {
    let mut rows = Vec::new();
    for job in run["jobs"].as_array().into_iter().flatten() {
        let steps = job["result"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if steps.is_empty() {
            rows.push(vec![
                or_dash(job["key"].as_str()),
                "-".into(),
                or_dash(job["outcome"].as_str().or(job["status"].as_str())),
                "-".into(),
                "-".into(),
            ]);
        }
        for step in steps {
            rows.push(vec![
                or_dash(job["key"].as_str()),
                or_dash(step["label"].as_str()),
                or_dash(step["status"].as_str()),
                format!(
                    "{:.1}s",
                    step["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
                ),
                or_dash(step["cache"].as_str()),
            ]);
        }
    }
    println!();
    table(&["JOB", "STEP", "STATUS", "DURATION", "CACHE"], &rows);
    println!(
        "run #{} {}",
        run["number"].as_i64().unwrap_or(0),
        run["outcome"]
            .as_str()
            .unwrap_or(run["status"].as_str().unwrap_or("?"))
    );
}

/// Lists a service's runs.
pub async fn runs(
    args: RunsArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let list: Vec<Value> = client(server, token, QUICK)?
        .get(&format!(
            "/api/v1/services/{}/runs",
            urlencode(&args.service)
        ))
        .await?;
    if args.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                format!("#{}", r["number"].as_i64().unwrap_or(0)),
                or_dash(r["id"].as_str()),
                or_dash(r["ref"].as_str()),
                r["sha"]
                    .as_str()
                    .map(|s| s.chars().take(12).collect())
                    .unwrap_or_default(),
                or_dash(r["outcome"].as_str().or(r["status"].as_str())),
                or_dash(r["created_at"].as_str()),
            ]
        })
        .collect();
    table(&["RUN", "ID", "REF", "SHA", "STATUS", "CREATED"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Prints (and optionally follows) a run's log.
pub async fn logs(
    args: LogsArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let client = client(server, token, QUICK)?;
    if args.follow {
        return follow(&client, &args.run, false).await;
    }
    let page: Value = client
        .get(&format!(
            "/api/v1/runs/{}/logs?limit=10000",
            urlencode(&args.run)
        ))
        .await?;
    let names = job_names(&client, &args.run).await?;
    for line in page["lines"].as_array().into_iter().flatten() {
        let job = names
            .get(line["job_id"].as_str().unwrap_or(""))
            .map(String::as_str)
            .unwrap_or("?");
        println!(
            "[{job} › {}] {}",
            line["step"].as_str().unwrap_or(""),
            line["text"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Cancels a run.
pub async fn cancel(
    args: CancelArgs,
    server: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let run: Value = client(server, token, QUICK)?
        .post(
            &format!("/api/v1/runs/{}/cancel", urlencode(&args.run)),
            &json!({}),
        )
        .await?;
    println!(
        "Run {} {}",
        args.run,
        run["status"].as_str().unwrap_or("cancelling")
    );
    Ok(ExitCode::SUCCESS)
}
