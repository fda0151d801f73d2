//! Content-addressed step cache (Bazel-style action cache + CAS).
//!
//! The key of a step is a sha256 over: a version salt, the script text, the
//! shell, the working directory relative to the workspace root, the declared
//! output paths, the names and values of the declared env vars, and — for
//! every file matched by the input globs, in sorted path order — its relative
//! path, its executable bit and the sha256 of its content (a symlink
//! contributes its target). Input globs and output paths are relative to the
//! workspace root and may not leave it.
//!
//! On disk: `cas/<sha256>` holds file contents, `ac/<key>.json` one immutable
//! entry (files with mode and digest, the captured log lines, the step
//! outputs). Every restored byte is verified against its digest first; a
//! corrupt entry is a miss (and is dropped so the next run can save again).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exec::{LogLine, StepCommand, unique_temp_path};

/// Salt mixed into every key; bump it when the key recipe changes.
pub const CACHE_KEY_VERSION: &str = "pave-step-cache-v1";

/// A step's `cache:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// Globs of input files, relative to the workspace root.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Output files or directories, relative to the workspace root.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Names of env vars whose values are part of the key.
    #[serde(default)]
    pub env: Vec<String>,
}

/// Errors of the step cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An input glob is not a valid pattern.
    #[error("invalid input glob {pattern:?}: {reason}")]
    Pattern {
        /// The glob as written.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A path is absolute, contains `..`, or is otherwise unusable.
    #[error("path {0:?} must be relative to the workspace and stay inside it")]
    UnsafePath(String),
    /// A declared output does not exist after the step.
    #[error("declared cache output {0:?} does not exist")]
    MissingOutput(String),
    /// An output is neither a file, a directory nor a symlink.
    #[error("cache output {0:?} is not a regular file, directory or symlink")]
    UnsupportedFile(PathBuf),
    /// A key is not a 64-character hex digest.
    #[error("invalid cache key {0:?}")]
    InvalidKey(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError + use<> {
    let path = path.to_path_buf();
    move |source| CacheError::Io { op, path, source }
}

/// Checks that `p` is a relative path without `..` and returns it normalized.
pub(crate) fn safe_relative(p: &str) -> Result<PathBuf, CacheError> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(CacheError::UnsafePath(p.to_string())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(CacheError::UnsafePath(p.to_string()));
    }
    Ok(out)
}

/// What a directory walk found at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File { mode: u32, size: u64 },
    Symlink(PathBuf),
    Other,
}

pub(crate) fn node_of(path: &Path) -> io::Result<Node> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    Ok(if ft.is_dir() {
        Node::Dir
    } else if ft.is_file() {
        Node::File {
            mode: meta.permissions().mode() & 0o7777,
            size: meta.len(),
        }
    } else if ft.is_symlink() {
        Node::Symlink(fs::read_link(path)?)
    } else {
        Node::Other
    })
}

/// Every entry under `root` (not `root` itself), pre-order, siblings sorted
/// by name bytes; paths are relative to `root`. Symlinks are not followed.
pub(crate) fn walk(root: &Path) -> io::Result<Vec<(PathBuf, Node)>> {
    fn rec(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Node)>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let node = node_of(&root.join(&child))?;
            let is_dir = node == Node::Dir;
            out.push((child.clone(), node));
            if is_dir {
                rec(root, &child, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    rec(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// sha256 (hex) and length of everything `reader` yields.
pub(crate) fn hash_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&h.finalize()), total))
}

/// Copies `reader` into `writer`, returning the sha256 (hex) and length.
pub(crate) fn copy_hashing(
    mut reader: impl Read,
    mut writer: impl Write,
) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    writer.flush()?;
    Ok((hex(&h.finalize()), total))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

struct KeyHasher(Sha256);

impl KeyHasher {
    fn field(&mut self, tag: u8, bytes: &[u8]) {
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }
}

/// The files the input globs match: relative path → (kind+mode tag, digest).
fn input_files(
    workspace: &Path,
    patterns: &[String],
) -> Result<BTreeMap<String, String>, CacheError> {
    let mut files = BTreeMap::new();
    let ws = workspace
        .to_str()
        .ok_or_else(|| CacheError::UnsafePath(workspace.display().to_string()))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    for pattern in patterns {
        if Path::new(pattern).is_absolute() || pattern.split('/').any(|c| c == "..") {
            return Err(CacheError::UnsafePath(pattern.clone()));
        }
        let full = format!("{}/{}", glob::Pattern::escape(ws), pattern);
        let paths = glob::glob_with(&full, options).map_err(|e| CacheError::Pattern {
            pattern: pattern.clone(),
            reason: e.msg.to_string(),
        })?;
        for entry in paths {
            let path = entry.map_err(|e| CacheError::Io {
                op: "read input",
                path: e.path().to_path_buf(),
                source: io::Error::new(e.error().kind(), e.error().to_string()),
            })?;
            let rel = path
                .strip_prefix(workspace)
                .map_err(|_| CacheError::UnsafePath(path.display().to_string()))?
                .to_path_buf();
            add_input(workspace, &rel, &mut files)?;
        }
    }
    Ok(files)
}

fn add_input(
    workspace: &Path,
    rel: &Path,
    files: &mut BTreeMap<String, String>,
) -> Result<(), CacheError> {
    let full = workspace.join(rel);
    let node = node_of(&full).map_err(io_err("read input", &full))?;
    match node {
        Node::File { mode, .. } => {
            let f = fs::File::open(&full).map_err(io_err("read input", &full))?;
            let (digest, _) = hash_reader(f).map_err(io_err("read input", &full))?;
            let x = if mode & 0o111 != 0 { "x" } else { "-" };
            files.insert(rel_string(rel), format!("f{x}:{digest}"));
        }
        Node::Symlink(target) => {
            files.insert(rel_string(rel), format!("l:{}", target.to_string_lossy()));
        }
        Node::Dir => {
            for (child, node) in walk(&full).map_err(io_err("read input", &full))? {
                if node != Node::Dir {
                    add_input(workspace, &rel.join(child), files)?;
                }
            }
        }
        Node::Other => {}
    }
    Ok(())
}

/// Computes the cache key (64 hex chars) of a step run in `workspace`.
pub fn cache_key(
    workspace: &Path,
    cmd: &StepCommand,
    spec: &CacheSpec,
) -> Result<String, CacheError> {
    let mut h = KeyHasher(Sha256::new());
    h.field(0, CACHE_KEY_VERSION.as_bytes());
    h.field(1, cmd.script.as_bytes());
    h.field(2, cmd.shell.as_deref().unwrap_or("").as_bytes());
    let wd = cmd
        .working_dir
        .strip_prefix(workspace)
        .unwrap_or(&cmd.working_dir);
    h.field(3, rel_string(wd).as_bytes());
    let mut outputs: Vec<String> = spec
        .outputs
        .iter()
        .map(|o| safe_relative(o).map(|p| rel_string(&p)))
        .collect::<Result<_, _>>()?;
    outputs.sort();
    outputs.dedup();
    for o in &outputs {
        h.field(4, o.as_bytes());
    }
    let mut names: Vec<&String> = spec.env.iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        h.field(5, name.as_bytes());
        let value = cmd.env.get(name).cloned().or_else(|| {
            if cmd.inherit_env {
                std::env::var(name).ok()
            } else {
                None
            }
        });
        match value {
            Some(v) => h.field(6, v.as_bytes()),
            None => h.field(7, b""),
        }
    }
    for (path, digest) in input_files(workspace, &spec.inputs)? {
        h.field(8, path.as_bytes());
        h.field(9, digest.as_bytes());
    }
    Ok(hex(&h.0.finalize()))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Entry {
    File {
        path: String,
        mode: u32,
        digest: String,
        size: u64,
    },
    Dir {
        path: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    key: String,
    entries: Vec<Entry>,
    log: Vec<LogLine>,
    outputs: BTreeMap<String, String>,
}

/// What a cache hit restored and what to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheHit {
    /// The log lines of the original run, to replay.
    pub log: Vec<LogLine>,
    /// The step outputs of the original run.
    pub outputs: BTreeMap<String, String>,
    /// Number of files restored.
    pub files: usize,
    /// Total bytes restored.
    pub bytes: u64,
}

/// The result of a cache lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheLookup {
    /// Outputs restored into the workspace; skip the step.
    Hit(CacheHit),
    /// No entry for this key.
    Miss,
    /// An entry existed but failed verification; it was dropped. Treat as a miss.
    Corrupt(String),
}

/// Summary of a saved entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedEntry {
    /// Number of files stored.
    pub files: usize,
    /// Total bytes of the stored files.
    pub bytes: u64,
    /// False when an entry for the key already existed (entries are immutable).
    pub created: bool,
}

/// A step cache on the local disk.
#[derive(Clone, Debug)]
pub struct CacheStore {
    root: PathBuf,
}

impl CacheStore {
    /// Opens (creating if needed) a cache rooted at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = dir.into();
        for sub in ["ac", "cas", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(CacheStore { root })
    }

    fn manifest_path(&self, key: &str) -> PathBuf {
        self.root.join("ac").join(format!("{key}.json"))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("cas").join(digest)
    }

    fn tmp_path(&self) -> PathBuf {
        let name = unique_temp_path("x");
        self.root
            .join("tmp")
            .join(name.file_name().unwrap_or_default())
    }

    fn check_key(key: &str) -> Result<(), CacheError> {
        if is_hex_digest(key) {
            Ok(())
        } else {
            Err(CacheError::InvalidKey(key.to_string()))
        }
    }

    /// Whether an entry exists for `key` (without verifying it).
    pub fn contains(&self, key: &str) -> bool {
        is_hex_digest(key) && self.manifest_path(key).is_file()
    }

    /// Looks `key` up; on a hit, restores the outputs into `workspace` after
    /// verifying every blob against its digest.
    pub fn restore(&self, key: &str, workspace: &Path) -> Result<CacheLookup, CacheError> {
        Self::check_key(key)?;
        let mpath = self.manifest_path(key);
        let bytes = match fs::read(&mpath) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CacheLookup::Miss),
            Err(e) => return Err(io_err("read", &mpath)(e)),
        };
        let manifest = match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.version == 1 && m.key == key => m,
            Ok(_) => return Ok(self.drop_entry(key, None, "manifest does not match its key")),
            Err(e) => return Ok(self.drop_entry(key, None, &format!("unreadable manifest: {e}"))),
        };
        // Validate every path and digest before touching the workspace.
        for entry in &manifest.entries {
            let (path, digest) = match entry {
                Entry::File { path, digest, .. } => (path, Some(digest)),
                Entry::Dir { path } | Entry::Symlink { path, .. } => (path, None),
            };
            if safe_relative(path).is_err() || digest.is_some_and(|d| !is_hex_digest(d)) {
                return Ok(self.drop_entry(key, None, &format!("invalid entry {path:?}")));
            }
        }
        let ws_canon = workspace
            .canonicalize()
            .map_err(io_err("open workspace", workspace))?;
        // Phase 1: stage every file next to its destination, verifying digests.
        let mut staged: Vec<(PathBuf, PathBuf, u32)> = Vec::new();
        let cleanup = |staged: &[(PathBuf, PathBuf, u32)]| {
            for (tmp, _, _) in staged {
                let _ = fs::remove_file(tmp);
            }
        };
        let mut total = 0u64;
        for entry in &manifest.entries {
            let Entry::File {
                path,
                mode,
                digest,
                size,
            } = entry
            else {
                continue;
            };
            let dest = workspace.join(safe_relative(path)?);
            let parent = dest.parent().unwrap_or(workspace).to_path_buf();
            if let Err(e) = self.prepare_parent(&parent, &ws_canon) {
                cleanup(&staged);
                return Err(e);
            }
            let tmp = parent.join(format!(
                ".pave-restore-{}",
                unique_temp_path("r")
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ));
            let blob = match fs::File::open(self.blob_path(digest)) {
                Ok(f) => f,
                Err(_) => {
                    cleanup(&staged);
                    return Ok(self.drop_entry(key, None, &format!("blob {digest} is missing")));
                }
            };
            let out = match fs::File::create(&tmp) {
                Ok(f) => f,
                Err(e) => {
                    cleanup(&staged);
                    return Err(io_err("create", &tmp)(e));
                }
            };
            staged.push((tmp.clone(), dest, *mode));
            let (got, len) = match copy_hashing(blob, io::BufWriter::new(out)) {
                Ok(r) => r,
                Err(e) => {
                    cleanup(&staged);
                    return Err(io_err("restore", &tmp)(e));
                }
            };
            if &got != digest || len != *size {
                cleanup(&staged);
                return Ok(self.drop_entry(
                    key,
                    Some(digest),
                    &format!("blob {digest} for {path:?} failed verification"),
                ));
            }
            total += len;
        }
        // Phase 2: directories, then files into place, then symlinks.
        for entry in &manifest.entries {
            if let Entry::Dir { path } = entry {
                let dir = workspace.join(safe_relative(path)?);
                if let Err(e) = self.prepare_parent(&dir, &ws_canon) {
                    cleanup(&staged);
                    return Err(e);
                }
            }
        }
        let files = staged.len();
        for (i, (tmp, dest, mode)) in staged.iter().enumerate() {
            let res = fs::set_permissions(tmp, fs::Permissions::from_mode(*mode & 0o7777))
                .and_then(|_| fs::rename(tmp, dest));
            if let Err(e) = res {
                cleanup(&staged[i..]);
                return Err(io_err("restore", dest)(e));
            }
        }
        for entry in &manifest.entries {
            if let Entry::Symlink { path, target } = entry {
                let dest = workspace.join(safe_relative(path)?);
                let parent = dest.parent().unwrap_or(workspace).to_path_buf();
                self.prepare_parent(&parent, &ws_canon)?;
                if let Ok(m) = fs::symlink_metadata(&dest)
                    && !m.is_dir()
                {
                    fs::remove_file(&dest).map_err(io_err("replace", &dest))?;
                }
                std::os::unix::fs::symlink(target, &dest).map_err(io_err("symlink", &dest))?;
            }
        }
        Ok(CacheLookup::Hit(CacheHit {
            log: manifest.log,
            outputs: manifest.outputs,
            files,
            bytes: total,
        }))
    }

    /// Creates `dir` and checks it resolves inside the workspace (no symlink escape).
    fn prepare_parent(&self, dir: &Path, ws_canon: &Path) -> Result<(), CacheError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let canon = dir.canonicalize().map_err(io_err("resolve", dir))?;
        if !canon.starts_with(ws_canon) {
            return Err(CacheError::UnsafePath(dir.display().to_string()));
        }
        Ok(())
    }

    fn drop_entry(&self, key: &str, bad_blob: Option<&String>, reason: &str) -> CacheLookup {
        let _ = fs::remove_file(self.manifest_path(key));
        if let Some(d) = bad_blob {
            let _ = fs::remove_file(self.blob_path(d));
        }
        CacheLookup::Corrupt(reason.to_string())
    }

    /// Stores the declared `outputs` (files or directories under `workspace`),
    /// the log and the step outputs under `key`. Call only for successful steps.
    pub fn save(
        &self,
        key: &str,
        workspace: &Path,
        outputs: &[String],
        log: &[LogLine],
        step_outputs: &BTreeMap<String, String>,
    ) -> Result<SavedEntry, CacheError> {
        Self::check_key(key)?;
        let mut entries = Vec::new();
        let mut total = 0u64;
        let mut files = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for out in outputs {
            let rel = safe_relative(out)?;
            let full = workspace.join(&rel);
            let node = match node_of(&full) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(CacheError::MissingOutput(out.clone()));
                }
                Err(e) => return Err(io_err("read output", &full)(e)),
            };
            let mut nodes = vec![(rel.clone(), node.clone())];
            if node == Node::Dir {
                for (child, n) in walk(&full).map_err(io_err("read output", &full))? {
                    nodes.push((rel.join(child), n));
                }
            }
            for (path, node) in nodes {
                let p = rel_string(&path);
                if !seen.insert(p.clone()) {
                    continue;
                }
                let full = workspace.join(&path);
                match node {
                    Node::Dir => entries.push(Entry::Dir { path: p }),
                    Node::File { mode, .. } => {
                        let (digest, size) = self.put_blob(&full)?;
                        total += size;
                        files += 1;
                        entries.push(Entry::File {
                            path: p,
                            mode,
                            digest,
                            size,
                        });
                    }
                    Node::Symlink(target) => entries.push(Entry::Symlink {
                        path: p,
                        target: target.to_string_lossy().into_owned(),
                    }),
                    Node::Other => return Err(CacheError::UnsupportedFile(full)),
                }
            }
        }
        let manifest = Manifest {
            version: 1,
            key: key.to_string(),
            entries,
            log: log.to_vec(),
            outputs: step_outputs.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::Io {
            op: "encode manifest",
            path: self.manifest_path(key),
            source: io::Error::other(e),
        })?;
        let tmp = self.tmp_path();
        fs::write(&tmp, &json).map_err(io_err("write", &tmp))?;
        let dest = self.manifest_path(key);
        // hard_link never replaces an existing entry: first writer wins.
        let created = match fs::hard_link(&tmp, &dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("publish", &dest)(e));
            }
        };
        let _ = fs::remove_file(&tmp);
        Ok(SavedEntry {
            files,
            bytes: total,
            created,
        })
    }

    /// Copies a file into the CAS; returns (digest, size).
    fn put_blob(&self, src: &Path) -> Result<(String, u64), CacheError> {
        let tmp = self.tmp_path();
        let input = fs::File::open(src).map_err(io_err("read output", src))?;
        let out = fs::File::create(&tmp).map_err(io_err("write", &tmp))?;
        let (digest, size) = match copy_hashing(input, io::BufWriter::new(out)) {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("copy", src)(e));
            }
        };
        let dest = self.blob_path(&digest);
        let existing_ok = fs::File::open(&dest)
            .and_then(hash_reader)
            .is_ok_and(|(d, _)| d == digest);
        if existing_ok {
            let _ = fs::remove_file(&tmp);
        } else {
            // Missing or corrupt: (re)place it atomically.
            fs::rename(&tmp, &dest).map_err(io_err("store blob", &dest))?;
        }
        Ok((digest, size))
    }
}
