//! Reading a file of a service's repository at a commit, on the server (for
//! push webhooks, which carry a sha but not the `pave.yaml` text).
//!
//! A local repository path is read in place with `git -C <path> show
//! <sha>:<file>`. Anything else (a URL) is fetched shallowly into a bare
//! cache repository under the data directory, one per URL, and read from
//! there. Only `http(s)://`, `ssh://`, `git://`, `file://` and scp-style
//! `user@host:path` sources are accepted, so no transport helper (`ext::`)
//! can run commands, and every git call has a timeout and no terminal
//! prompt.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Longest a git call may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest file read.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository, commit, ref or path is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// git failed (unreachable repository, unknown commit, missing file).
    #[error("{0}")]
    Git(String),
}

/// Serializes fetches into the cache (git's own locks would fail, not wait).
static FETCH_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The text of `path` at commit `sha` of `repository` (a local path or a
/// URL). `git_ref` is fetched when the server will not hand out a bare sha.
/// `cache` holds fetched repositories (created when needed).
pub async fn read_file_at(
    repository: &str,
    sha: &str,
    git_ref: &str,
    path: &str,
    cache: &Path,
) -> Result<String, RepoError> {
    check_sha(sha)?;
    check_path(path)?;
    let object = format!("{sha}:{path}");
    let local = Path::new(repository);
    if local.is_absolute() && local.is_dir() {
        return show(local, &object).await;
    }
    check_url(repository)?;
    let dir = cache_dir(cache, repository);
    let _guard = FETCH_LOCK.lock().await;
    if !dir.join("HEAD").is_file() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| RepoError::Git(format!("creating {}: {e}", dir.display())))?;
        git(&dir, &["init", "--quiet", "--bare"]).await?;
    }
    // Already fetched before (an earlier push, another service)?
    if let Ok(text) = show(&dir, &object).await {
        return Ok(text);
    }
    let by_sha = git(
        &dir,
        &["fetch", "--quiet", "--depth", "1", "--", repository, sha],
    )
    .await;
    if by_sha.is_err() {
        check_ref(git_ref)?;
        git(
            &dir,
            &[
                "fetch", "--quiet", "--depth", "1", "--", repository, git_ref,
            ],
        )
        .await?;
    }
    show(&dir, &object).await
}

/// `git show <object>` in `dir`, size-checked.
async fn show(dir: &Path, object: &str) -> Result<String, RepoError> {
    let text = git(dir, &["show", object]).await?;
    if text.len() > MAX_FILE_BYTES {
        return Err(RepoError::Invalid(format!(
            "{object} is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// Runs git in `dir` with a timeout; stdout as text, or stderr as the error.
async fn git(dir: &Path, args: &[&str]) -> Result<String, RepoError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| RepoError::Git(format!("git {} timed out", args.join(" "))))?
        .map_err(|e| RepoError::Git(format!("running git (is it installed?): {e}")))?;
    if !out.status.success() {
        return Err(RepoError::Git(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| RepoError::Invalid(format!("the output of git {} is not UTF-8", args[0])))
}

/// Where a URL's bare cache repository lives.
fn cache_dir(cache: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    cache.join(name)
}

fn check_sha(sha: &str) -> Result<(), RepoError> {
    if (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(RepoError::Invalid(format!(
            "`{}` is not a commit id (4-64 hex characters)",
            sha.escape_debug()
        )))
    }
}

fn check_ref(git_ref: &str) -> Result<(), RepoError> {
    let ok = git_ref.starts_with("refs/")
        && git_ref.len() <= 256
        && !git_ref.contains("..")
        && !git_ref
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RepoError::Invalid(format!(
            "`{}` is not a full ref name (refs/...)",
            git_ref.escape_debug()
        )))
    }
}

fn check_path(path: &str) -> Result<(), RepoError> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && !path.starts_with('-')
        && !path.split('/').any(|seg| seg == "..")
        && !path.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(RepoError::Invalid(format!(
            "`{}` is not a relative path inside the repository",
            path.escape_debug()
        )))
    }
}

/// Accepts the transports git is safe to run against on a server.
fn check_url(url: &str) -> Result<(), RepoError> {
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    let scp_like = !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'));
    let ok = !url.starts_with('-')
        && !url.contains("::")
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
        && (schemes.iter().any(|s| url.starts_with(s)) || scp_like);
    if ok {
        Ok(())
    } else {
        Err(RepoError::Invalid(format!(
            "repository `{}` is neither an absolute local path nor an http(s), ssh, git or file URL",
            url.escape_debug()
        )))
    }
}

/// A repository location in a comparable form: `file://` and trailing
/// slashes and `.git` removed, scp-style `git@host:path` as
/// `ssh://git@host/path`, and URLs (not local paths) lowercased, since
/// hosting services treat them case-insensitively.
pub fn normalize_location(location: &str) -> String {
    let mut s = location.trim().to_string();
    if let Some(path) = s.strip_prefix("file://") {
        s = path.to_string();
    }
    let is_url = s.contains("://");
    if !is_url
        && !s.starts_with('/')
        && let Some((host, path)) = s.split_once(':')
        && !host.is_empty()
        && !host.contains('/')
    {
        s = format!("ssh://{host}/{}", path.trim_start_matches('/'));
    }
    loop {
        let before = s.len();
        while s.len() > 1 && s.ends_with('/') {
            s.pop();
        }
        if let Some(stripped) = s.strip_suffix(".git") {
            s = stripped.to_string();
        }
        if s.len() == before {
            break;
        }
    }
    if s.contains("://") {
        s = s.to_lowercase();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_normalize() {
        let same = [
            "https://github.com/Acme/Hello.git",
            "https://github.com/acme/hello/",
            "https://github.com/acme/hello.git/",
        ];
        for s in same {
            assert_eq!(
                normalize_location(s),
                "https://github.com/acme/hello",
                "{s}"
            );
        }
        assert_eq!(
            normalize_location("git@github.com:acme/hello.git"),
            "ssh://git@github.com/acme/hello"
        );
        assert_eq!(
            normalize_location("ssh://git@github.com/acme/hello.git"),
            "ssh://git@github.com/acme/hello"
        );
        assert_eq!(normalize_location("file:///tmp/Repo/.git"), "/tmp/Repo");
        assert_eq!(normalize_location("/tmp/Repo/"), "/tmp/Repo");
    }

    #[test]
    fn inputs_are_checked() {
        assert!(check_sha("0123abcd").is_ok());
        assert!(check_sha("--upload-pack=x").is_err());
        assert!(check_ref("refs/heads/main").is_ok());
        assert!(check_ref("--exec").is_err());
        assert!(check_ref("refs/heads/a..b").is_err());
        assert!(check_path("ci/pave.yaml").is_ok());
        assert!(check_path("../x").is_err());
        assert!(check_path("-p").is_err());
        assert!(check_url("https://h/x").is_ok());
        assert!(check_url("git@h:x/y").is_ok());
        assert!(check_url("ext::sh -c touch% /tmp/pwned").is_err());
        assert!(check_url("-u").is_err());
        assert!(check_url("ext::sh").is_err());
        assert!(check_url("relative/dir").is_err());
    }
}
