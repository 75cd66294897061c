//! Sources turn "what the repository holds now" into snapshots: which files make up a revision,
//! their bytes, and the revision's identity (commit SHA, or a content hash for a directory).
//! They never parse YAML (that is `manifest`'s job) and decide nothing about deployments.
//!
//! Every source has one shape: `run(self, tx, shutdown)` sends `SourceEvent`s until `shutdown`
//! turns true or the receiver goes away (`ingest` is that receiver). How a source notices a
//! change — inotify for a directory, a cheap remote-ref check with backoff on failure for Git —
//! stays inside it.

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

/// What a source reports.
#[derive(Debug)]
pub enum SourceEvent {
    /// A revision whose content differs from the previous one.
    Snapshot(Snapshot),
    /// The source was checked and holds the revision already sent.
    Unchanged,
    /// The source could not be read; the last good revision keeps running.
    Failed(SourceError),
}

/// Where a source sends its events.
pub type Events = tokio::sync::mpsc::Sender<SourceEvent>;

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
    #[error("reading {path} took longer than {after:?}; still waiting for that read (a file that blocks, a hung mount?)")]
    ReadTimedOut {
        path: String,
        after: std::time::Duration,
    },
}
