//! Spec errors that point at a file, line and column.

use serde::Serialize;

/// One problem in a user's file, located precisely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    /// The file as the user named it (e.g. `svc/pave.yaml`).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What was expected there, when that can be said (e.g. "one of: name, owner").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl SpecError {
    /// A new error at `file:line:column`.
    pub fn new(file: &str, line: usize, column: usize, message: impl Into<String>) -> SpecError {
        SpecError {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            expected: None,
        }
    }

    /// Adds what was expected.
    pub fn expected(mut self, expected: impl Into<String>) -> SpecError {
        self.expected = Some(expected.into());
        self
    }
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(expected) = &self.expected {
            write!(f, " (expected {expected})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Several spec errors, reported together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SpecErrors(pub Vec<SpecError>);

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> SpecErrors {
        SpecErrors(vec![e])
    }
}
