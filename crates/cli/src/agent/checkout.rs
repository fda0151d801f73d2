//! A clean workspace: the service's repository at the exact commit.
//!
//! Cloning per job costs tens of milliseconds even for a tiny repository, so
//! the agent keeps one bare mirror per repository (fetching only when a
//! commit is missing) and one extracted tree per commit; a job's workspace is
//! a fresh copy of that tree. Workspaces hold the files of the commit, not
//! its `.git` history (`PAVE_SHA` names the commit).

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::process::Command;
use tokio::sync::Mutex;

/// Serializes mirror updates and tree extraction within one agent.
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
    }
    if !have(mirror.clone()).await {
        bail!("commit {sha} is not in {repository}");
    }
    Ok(mirror)
}

/// The extracted files of `sha`, shared read-only by the jobs of that commit.
async fn tree(cache: &Path, repository: &str, sha: &str) -> Result<PathBuf> {
    let _guard = PREPARE.lock().await;
    let tree = cache
        .join("trees")
        .join(format!("{}-{sha}", short_hash(repository)));
    if tree.is_dir() {
        return Ok(tree);
    }
    let mirror = mirror(cache, repository, sha).await?;
    let staging = cache
        .join("trees")
        .join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let archive = git(&["archive", "--format=tar", sha], Some(&mirror)).await?;
    unpack(&archive, &staging).await?;
    std::fs::rename(&staging, &tree).with_context(|| format!("publishing {}", tree.display()))?;
    Ok(tree)
}

async fn unpack(archive: &[u8], into: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running tar")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(archive).await?;
    }
    if !child.wait().await?.success() {
        bail!("unpacking the commit's files failed");
    }
    Ok(())
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

/// Fills `workspace` (which must not exist) with the files of `sha` in `repository`.
pub async fn checkout(cache: &Path, repository: &str, sha: &str, workspace: &Path) -> Result<()> {
    let tree = tree(cache, repository, sha).await?;
    let workspace = workspace.to_path_buf();
    tokio::task::spawn_blocking(move || copy_tree(&tree, &workspace))
        .await
        .context("copying the workspace")??;
    Ok(())
}
