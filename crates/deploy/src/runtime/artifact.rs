//! Unpacking a release artifact into an instance's working directory.
//!
//! Archives are unpacked with the system `tar` (no archive crate to build),
//! but only after listing them: a member whose path, or a link whose target,
//! would land outside `dest` rejects the whole archive before anything is
//! written. Device files and fifos are rejected too.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::spec::RuntimeError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tar,
    TarGz,
    SingleFile,
}

/// Unpacks `blob` into `dest` (created if missing): `.tar.gz`, `.tgz` and
/// `.tar` (or content that looks like one, as blobs stored by digest have no
/// extension) are extracted; anything else is copied in as one file under its
/// own name, keeping its mode (and so its exec bit).
pub fn unpack_artifact(blob: &Path, dest: &Path) -> Result<(), RuntimeError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::ArtifactIo { path, source }
    };
    let meta = std::fs::metadata(blob).map_err(io_err(blob))?;
    if !meta.is_file() {
        return Err(artifact_err(blob, "not a regular file"));
    }
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    match detect(blob)? {
        Kind::SingleFile => {
            let name = blob
                .file_name()
                .ok_or_else(|| artifact_err(blob, "has no file name"))?;
            std::fs::copy(blob, dest.join(name)).map_err(io_err(blob))?;
            Ok(())
        }
        kind => {
            check_members(blob, kind)?;
            let out = tar(kind, blob)
                .arg("-x")
                .arg("--no-same-owner")
                .arg("-C")
                .arg(dest)
                .output()
                .map_err(io_err(blob))?;
            if !out.status.success() {
                return Err(artifact_err(
                    blob,
                    &format!(
                        "tar failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            Ok(())
        }
    }
}

fn artifact_err(path: &Path, reason: &str) -> RuntimeError {
    RuntimeError::Artifact {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn tar(kind: Kind, blob: &Path) -> Command {
    let mut cmd = Command::new("tar");
    if kind == Kind::TarGz {
        cmd.arg("-z");
    }
    cmd.arg("-f").arg(blob);
    cmd
}

/// By extension first, then by content (gzip magic, or `ustar` at 257).
fn detect(blob: &Path) -> Result<Kind, RuntimeError> {
    let name = blob
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return Ok(Kind::TarGz);
    }
    if name.ends_with(".tar") {
        return Ok(Kind::Tar);
    }
    let mut head = [0u8; 262];
    let mut file = std::fs::File::open(blob).map_err(|source| RuntimeError::ArtifactIo {
        path: blob.to_path_buf(),
        source,
    })?;
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(source) => {
                return Err(RuntimeError::ArtifactIo {
                    path: blob.to_path_buf(),
                    source,
                });
            }
        }
    }
    if got >= 2 && head[..2] == [0x1f, 0x8b] {
        // A gzip that lists as a tar is a tarball; a plain gzip is a file.
        let listed = tar(Kind::TarGz, blob).arg("-t").output();
        if matches!(listed, Ok(o) if o.status.success()) {
            return Ok(Kind::TarGz);
        }
    } else if got >= 262 && &head[257..262] == b"ustar" {
        return Ok(Kind::Tar);
    }
    Ok(Kind::SingleFile)
}

/// Lists the archive and rejects it if any member could escape `dest`.
fn check_members(blob: &Path, kind: Kind) -> Result<(), RuntimeError> {
    let list = |verbose: bool| -> Result<Vec<String>, RuntimeError> {
        let out = tar(kind, blob)
            .arg(if verbose { "-tv" } else { "-t" })
            .output()
            .map_err(|source| RuntimeError::ArtifactIo {
                path: blob.to_path_buf(),
                source,
            })?;
        if !out.status.success() {
            return Err(artifact_err(
                blob,
                &format!(
                    "not a readable archive: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    };
    let names = list(false)?;
    // GNU tar escapes newlines in names, so both listings line up entry by entry.
    let details = list(true)?;
    if names.len() != details.len() {
        return Err(artifact_err(blob, "archive listing is ambiguous"));
    }
    for (name, detail) in names.iter().zip(&details) {
        if escapes(Path::new(""), name) {
            return Err(artifact_err(
                blob,
                &format!("member {name:?} would be written outside the destination"),
            ));
        }
        match detail.chars().next() {
            Some('l') => {
                let target = detail
                    .rsplit_once(" -> ")
                    .map(|(_, t)| t)
                    .ok_or_else(|| artifact_err(blob, "unreadable symlink entry"))?;
                // A symlink's target is relative to the link's own directory.
                let base = Path::new(name.trim_end_matches('/'))
                    .parent()
                    .unwrap_or(Path::new(""));
                if escapes(base, target) {
                    return Err(artifact_err(
                        blob,
                        &format!("symlink {name:?} points outside the destination ({target:?})"),
                    ));
                }
            }
            Some('h') => {
                let target = detail
                    .rsplit_once(" link to ")
                    .map(|(_, t)| t)
                    .ok_or_else(|| artifact_err(blob, "unreadable hard link entry"))?;
                if escapes(Path::new(""), target) {
                    return Err(artifact_err(
                        blob,
                        &format!("hard link {name:?} points outside the destination ({target:?})"),
                    ));
                }
            }
            Some('-' | 'd') => {}
            _ => {
                return Err(artifact_err(
                    blob,
                    &format!("member {name:?} is not a file, directory or link"),
                ));
            }
        }
    }
    Ok(())
}

/// True when `path`, taken relative to `base` (itself relative to the
/// destination root), is absolute or climbs above the root.
fn escapes(base: &Path, path: &str) -> bool {
    let mut depth: Vec<PathBuf> = Vec::new();
    for c in base.components().chain(Path::new(path).components()) {
        match c {
            Component::Normal(p) => depth.push(PathBuf::from(p)),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::escapes;
    use std::path::Path;

    #[test]
    fn escaping_paths() {
        let root = Path::new("");
        assert!(!escapes(root, "app/bin/run"));
        assert!(!escapes(root, "./a/../b"));
        assert!(escapes(root, "../x"));
        assert!(escapes(root, "a/../../x"));
        assert!(escapes(root, "/etc/passwd"));
        assert!(!escapes(Path::new("lib"), "../lib64/x.so"));
        assert!(escapes(Path::new("lib"), "../../x"));
    }
}
