//! `.pave/template.lock`: which template, version and answers made a repo
//! (JSON, keys sorted, so it diffs well and upgrades can re-render).

use crate::error::ScaffoldError;
use crate::manifest::Version;
use crate::params::Answers;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// The lock file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateLock {
    /// Template name.
    pub template: String,
    /// Template version (`MAJOR.MINOR.PATCH`).
    pub version: String,
    /// `builtin:<name>` or the template directory.
    pub source: String,
    /// The answers, defaults included.
    pub answers: Answers,
}

impl TemplateLock {
    /// Where the lock lives in a repository.
    pub const PATH: &'static str = ".pave/template.lock";

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The recorded version, parsed.
    pub fn version(&self) -> Result<Version, String> {
        self.version.parse()
    }

    /// Reads `<repo>/.pave/template.lock`.
    pub fn read(repo: &Path) -> Result<TemplateLock, ScaffoldError> {
        let path = repo.join(Self::PATH);
        let text = fs::read_to_string(&path).map_err(|e| ScaffoldError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| ScaffoldError::Lock {
            path,
            message: e.to_string(),
        })
    }

    /// Writes `<repo>/.pave/template.lock`.
    pub fn write(&self, repo: &Path) -> Result<(), ScaffoldError> {
        let path = repo.join(Self::PATH);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| ScaffoldError::io(dir, e))?;
        }
        fs::write(&path, self.to_json()).map_err(|e| ScaffoldError::io(&path, e))
    }
}
