//! A clean workspace: the service's repository at the exact commit.

use anyhow::{Context, Result, bail};
use std::path::Path;
use tokio::process::Command;

async fn git(args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
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

/// Clones `repository` into `workspace` (which must not exist) and checks out `sha`.
pub async fn checkout(repository: &str, sha: &str, workspace: &Path) -> Result<()> {
    let target = workspace.to_string_lossy().into_owned();
    git(
        &["clone", "--quiet", "--no-checkout", repository, &target],
        None,
    )
    .await?;
    git(&["checkout", "--quiet", "--detach", sha], Some(workspace))
        .await
        .with_context(|| format!("commit {sha} is not in {repository}"))?;
    Ok(())
}
