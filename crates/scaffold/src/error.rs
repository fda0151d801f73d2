//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;

/// A located problem in a template file (`template.yaml` or a skeleton file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file, as the template names it (e.g. `python-http/template.yaml`).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parameter answer that breaks the template's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name.
    pub parameter: String,
    /// The schema rule that failed (`required`, `type`, `enum`, `pattern`,
    /// `minLength`, `maxLength`, `minimum`, `maximum`, `unknown`).
    pub rule: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parameter `{}` ({}): {}",
            self.parameter, self.rule, self.message
        )
    }
}

/// Everything that can go wrong loading, validating or rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// `template.yaml` is malformed or invalid (all problems found).
    #[error("invalid template:\n{}", join(.0))]
    Manifest(Vec<Located>),
    /// Answers that break the parameter schema (all problems found).
    #[error("invalid parameters:\n{}", join(.0))]
    Params(Vec<ParamError>),
    /// A skeleton file or path that does not render.
    #[error("template does not render: {0}")]
    Render(Located),
    /// The destination exists and is not empty, and `force` was not given.
    #[error("{} exists and is not empty (use --force to render into it anyway)", .0.display())]
    DestinationNotEmpty(PathBuf),
    /// A file system error, with the path it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that could not be read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A lock file that cannot be read.
    #[error("{}: invalid template lock: {message}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ScaffoldError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ScaffoldError {
        ScaffoldError::Io {
            path: path.into(),
            source,
        }
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}
