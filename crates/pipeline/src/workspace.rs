//! Clean job workspaces for local runs: a copy of the source tree in a fresh
//! temporary directory. In a git repository the copy holds exactly the files
//! `git ls-files --cached --others --exclude-standard` lists (tracked files as
//! they are on disk, plus untracked files that are not ignored), so
//! uncommitted work is tested and ignored files (build output, `.env`) are not.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files (relative paths) that make up the source tree at `root`.
pub fn source_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    if let Some(files) = git_files(root) {
        return Ok(files);
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// `git ls-files` output, or `None` when `root` is not in a git work tree.
fn git_files(root: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::str::from_utf8(p).ok().map(PathBuf::from))
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// Every file and symlink under `dir` except `.git`, relative to the walk root.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        let rel = rel.join(&name);
        if kind.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// Copies `files` (relative to `root`) into `dest`, keeping modes and
/// symlinks. Files listed but missing (deleted, not yet committed) and
/// directories (submodules) are skipped. Returns the number copied.
pub fn copy_files(root: &Path, files: &[PathBuf], dest: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dest)?;
    let mut n = 0;
    for rel in files {
        let src = root.join(rel);
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &target)?;
        } else if meta.is_file() {
            std::fs::copy(&src, &target)?;
        } else {
            continue;
        }
        n += 1;
    }
    Ok(n)
}

/// A fresh, empty directory for a job (removed by [`remove`]).
pub fn fresh_dir(run_dir: &Path, job_key: &str, index: usize) -> io::Result<PathBuf> {
    let slug: String = job_key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let dir = run_dir.join(format!("{index:03}-{slug}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes a workspace, ignoring errors (it lives under the temp dir).
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
