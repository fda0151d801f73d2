//! A clean workspace: a git checkout of the service's repository at the
//! exact commit (detached HEAD), so steps may run `git rev-parse HEAD`,
//! `git describe` or `git log`.
//!
//! Cloning per job costs tens of milliseconds and two processes, so the
//! agent keeps one bare mirror per repository (fetching only when a commit
//! is missing) and one snapshot per commit: a `git clone --shared` of the
//! mirror (objects borrowed through alternates, none copied) checked out
//! at the commit. A job's workspace is a fresh copy of that snapshot,
//! `.git` included, so every job starts clean and no git runs per job.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::process::Command;
use tokio::sync::Mutex;

/// Serializes mirror updates and snapshot creation within one agent.
static PREPARE: Mutex<()> = Mutex::const_new(());

async fn git(args: &[&str], dir: Option<&Path>) -> Result<Vec<u8>> {
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
    Ok(out.stdout)
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bare mirror of `repository`, up to date enough to hold `sha`.
async fn mirror(cache: &Path, repository: &str, sha: &str) -> Result<PathBuf> {
    let mirror = cache.join("repos").join(short_hash(repository));
    let have = |m: PathBuf| async move {
        git(&["cat-file", "-e", &format!("{sha}^{{commit}}")], Some(&m))
            .await
            .is_ok()
    };
    if mirror.join("HEAD").is_file() {
        if have(mirror.clone()).await {
            return Ok(mirror);
        }
        git(
            &[
                "fetch",
                "--quiet",
                repository,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(&mirror),
        )
        .await?;
        // A commit on no branch (e.g. a detached push) may need fetching by name.
        if !have(mirror.clone()).await {
            git(&["fetch", "--quiet", repository, sha], Some(&mirror)).await?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&mirror);
        if let Some(parent) = mirror.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let target = mirror.to_string_lossy().into_owned();
        git(&["clone", "--quiet", "--bare", repository, &target], None).await?;
        // Snapshots borrow the mirror's objects: never let git prune them.
        git(&["config", "gc.auto", "0"], Some(&mirror)).await?;
    }
    if !have(mirror.clone()).await {
        bail!("commit {sha} is not in {repository}");
    }
    Ok(mirror)
}

/// The checkout of `sha`, shared read-only by the jobs of that commit.
async fn snapshot(cache: &Path, repository: &str, sha: &str) -> Result<PathBuf> {
    let _guard = PREPARE.lock().await;
    // `git-` so snapshots made before they carried `.git` are not reused.
    let snapshot = cache
        .join("trees")
        .join(format!("git-{}-{sha}", short_hash(repository)));
    if snapshot.is_dir() {
        return Ok(snapshot);
    }
    let mirror = mirror(cache, repository, sha).await?;
    let staging = cache
        .join("trees")
        .join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // An empty template: no sample hooks to copy into every workspace.
    let template = cache.join("git-template");
    std::fs::create_dir_all(&template)?;
    let (mirror_arg, staging_arg) = (
        mirror.to_string_lossy().into_owned(),
        staging.to_string_lossy().into_owned(),
    );
    let template_arg = format!("--template={}", template.display());
    git(
        &[
            "clone",
            "--quiet",
            "--shared",
            "--no-checkout",
            &template_arg,
            &mirror_arg,
            &staging_arg,
        ],
        None,
    )
    .await?;
    git(
        &[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--detach",
            sha,
        ],
        Some(&staging),
    )
    .await?;
    // `origin` names the service's repository, as in a CI checkout.
    git(&["remote", "set-url", "origin", repository], Some(&staging)).await?;
    std::fs::rename(&staging, &snapshot)
        .with_context(|| format!("publishing {}", snapshot.display()))?;
    Ok(snapshot)
}

/// Copies a tree (files, directories, symlinks, modes) into `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Fills `workspace` (which must not exist) with a checkout of `sha` in
/// `repository`: its files and a `.git` with HEAD detached at `sha`.
pub async fn checkout(cache: &Path, repository: &str, sha: &str, workspace: &Path) -> Result<()> {
    // It becomes a git argument and a directory name: a commit id only.
    if !(4..=64).contains(&sha.len()) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{sha}` is not a commit id");
    }
    let snapshot = snapshot(cache, repository, sha).await?;
    let workspace = workspace.to_path_buf();
    tokio::task::spawn_blocking(move || copy_tree(&snapshot, &workspace))
        .await
        .context("copying the workspace")??;
    Ok(())
}
