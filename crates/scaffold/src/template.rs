//! A loaded template: its manifest, where it came from, and its skeleton.

use crate::error::ScaffoldError;
use crate::lock::TemplateLock;
use crate::manifest::{Manifest, Version, parse_manifest};
use crate::params::{self, Answers};
use serde::Serialize;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Where a template came from; recorded in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// Embedded in the binary: `builtin:<name>`.
    Builtin(String),
    /// A directory on disk.
    Dir(PathBuf),
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::Builtin(n) => write!(f, "builtin:{n}"),
            TemplateSource::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One file of a skeleton (or of a rendered tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    /// Path relative to `skeleton/` (or to the output root), `/`-separated.
    pub path: String,
    /// Raw bytes.
    pub contents: Vec<u8>,
    /// The exec bit (the only mode bit that is carried over).
    pub executable: bool,
}

/// What `pave templates` lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSummary {
    /// Template name.
    pub name: String,
    /// Human title.
    pub title: String,
    /// What it makes.
    pub description: String,
    /// Its version.
    pub version: Version,
    /// `builtin:<name>` or a path.
    pub source: String,
}

/// A template ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    /// The parsed `template.yaml`.
    pub manifest: Manifest,
    /// Where it came from.
    pub source: TemplateSource,
    /// Skeleton files sorted by path.
    skeleton: Vec<TemplateFile>,
}

impl Template {
    /// Builds a template from its `template.yaml` text and skeleton files.
    pub fn from_parts(
        source: TemplateSource,
        manifest_yaml: &str,
        mut skeleton: Vec<TemplateFile>,
    ) -> Result<Template, ScaffoldError> {
        let file = Self::label(&source, "template.yaml");
        let manifest = parse_manifest(&file, manifest_yaml)?;
        skeleton.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Template {
            manifest,
            source,
            skeleton,
        })
    }

    /// Loads a template directory: `template.yaml` and `skeleton/**`.
    /// Symbolic links in the skeleton are refused.
    pub fn load_dir(path: &Path) -> Result<Template, ScaffoldError> {
        let manifest_path = path.join("template.yaml");
        let yaml =
            fs::read_to_string(&manifest_path).map_err(|e| ScaffoldError::io(&manifest_path, e))?;
        let mut skeleton = Vec::new();
        let root = path.join("skeleton");
        if root.is_dir() {
            read_tree(&root, "", &mut skeleton)?;
        }
        Template::from_parts(TemplateSource::Dir(path.to_path_buf()), &yaml, skeleton)
    }

    /// How errors name a file of this template.
    pub(crate) fn label(source: &TemplateSource, inner: &str) -> String {
        match source {
            TemplateSource::Builtin(n) => format!("builtin:{n}/{inner}"),
            TemplateSource::Dir(p) => p.join(inner).display().to_string(),
        }
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The template's version.
    pub fn version(&self) -> Version {
        self.manifest.version
    }

    /// The skeleton files, sorted by path.
    pub fn skeleton(&self) -> &[TemplateFile] {
        &self.skeleton
    }

    /// Name, title, description, version and source.
    pub fn summary(&self) -> TemplateSummary {
        TemplateSummary {
            name: self.manifest.name.clone(),
            title: self.manifest.title.clone(),
            description: self.manifest.description.clone(),
            version: self.manifest.version,
            source: self.source.to_string(),
        }
    }

    /// Parses `k=v` strings into typed answers (see [`params::parse_param_args`]).
    pub fn parse_params(&self, args: &[String]) -> Result<Answers, ScaffoldError> {
        params::parse_param_args(&self.manifest, args)
    }

    /// Validates answers against the schema and fills in defaults.
    pub fn validate_answers(&self, answers: &Answers) -> Result<Answers, ScaffoldError> {
        params::validate(&self.manifest, answers)
    }

    /// The lock file for a service made from this template with `answers`
    /// (give the validated answers, defaults included).
    pub fn lock(&self, answers: &Answers) -> TemplateLock {
        TemplateLock {
            template: self.manifest.name.clone(),
            version: self.manifest.version.to_string(),
            source: self.source.to_string(),
            answers: answers.clone(),
        }
    }
}

/// Reads `dir` recursively into `out`, paths prefixed with `prefix`.
fn read_tree(dir: &Path, prefix: &str, out: &mut Vec<TemplateFile>) -> Result<(), ScaffoldError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| ScaffoldError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ScaffoldError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(|e| ScaffoldError::io(&path, e))?;
        if meta.is_dir() {
            read_tree(&path, &rel, out)?;
        } else if meta.is_file() {
            let contents = fs::read(&path).map_err(|e| ScaffoldError::io(&path, e))?;
            out.push(TemplateFile {
                path: rel,
                contents,
                executable: is_executable(&meta),
            });
        } else {
            return Err(ScaffoldError::io(
                &path,
                std::io::Error::other(
                    "only regular files and directories are allowed in a skeleton",
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}
