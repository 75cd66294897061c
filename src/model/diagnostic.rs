//! A problem found in a revision's files: where it is (file, line, column, field path), how bad
//! it is, and what to do about it. Produced by `manifest`, stored with `invalid` revisions,
//! printed by `keel validate` and posted (the first few) as the forge's commit status.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a diagnostic rejects the revision.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The revision is rejected.
    Error,
    /// Worth fixing; the revision is still applied.
    Warning,
}

/// One problem, located. `line`/`column` are 1-based and absent for whole-file problems
/// (an oversized file, a symlink leaving the repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// Path of the file relative to the repository root, `/`-separated.
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// The field path inside the file, e.g. `deployments.web.ports[1].published`; empty for
    /// whole-file problems.
    pub path: String,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        match self.severity {
            Severity::Error => true,
            Severity::Warning => false,
        }
    }

    /// Orders diagnostics as a reader expects them: by file, then position, errors first.
    pub fn sort_key(&self) -> (&str, u32, u32, Severity) {
        (
            &self.file,
            self.line.unwrap_or(0),
            self.column.unwrap_or(0),
            self.severity,
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match self.severity {
            Severity::Error => {}
            Severity::Warning => f.write_str("warning: ")?,
        }
        f.write_str(&self.message)
    }
}
