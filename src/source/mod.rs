//! Sources turn "what the repository holds now" into snapshot entries: which files make up a
//! revision, and their bytes. They never parse YAML (that is `manifest`'s job) and decide
//! nothing about deployments.

pub mod dir;
pub mod select;

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
}
