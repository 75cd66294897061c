//! Sources turn "what the repository holds now" into snapshots: which files make up a revision,
//! their bytes, and the revision's identity (commit SHA, or a content hash for a directory).
//! They never parse YAML (that is `manifest`'s job) and decide nothing about deployments.

pub mod dir;
pub mod git;
pub mod select;

use crate::model::snapshot::SnapshotEntry;
use crate::model::stored::NewRevision;

/// One revision as a source saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: NewRevision,
    pub entries: Vec<SnapshotEntry>,
}

/// Why a source could not produce a snapshot at all (as opposed to refusing single files,
/// which become diagnostics).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {path}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
    #[error("git: {what}")]
    Git {
        what: String,
        #[source]
        source: git2::Error,
    },
    #[error("{0}")]
    Config(String),
}
