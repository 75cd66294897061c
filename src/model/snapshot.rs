//! What a source hands to the loader: the files of one revision as bytes, plus the entries it
//! refused to read (and why). Sources decide which files exist; the loader decides what they
//! mean — so a refused file becomes a diagnostic in the same list as a bad field.

/// One entry of a revision's file tree. Paths are relative to the repository root (or the
/// configured sub-path) and `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotEntry {
    /// A manifest file and its content.
    File { path: String, bytes: Vec<u8> },
    /// A manifest file the source did not read.
    Rejected { path: String, reason: Rejection },
}

impl SnapshotEntry {
    pub fn path(&self) -> &str {
        match self {
            SnapshotEntry::File { path, .. } | SnapshotEntry::Rejected { path, .. } => path,
        }
    }
}

/// Why a source refused an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A symbolic link whose target resolves outside the repository root.
    SymlinkEscapesRoot { target: String },
    /// The file is larger than the per-file limit.
    FileTooLarge { size: u64, limit: u64 },
    /// Reading this file would take the revision over its total size limit.
    RevisionTooLarge { limit: u64 },
    /// The file could not be read.
    Unreadable { message: String },
    /// A line of `.keelignore` is not a valid pattern.
    BadIgnorePattern { line: u32, message: String },
    /// The name is not valid UTF-8 (the entry's path shows it escaped, `\xff`).
    NameNotUtf8,
    /// Not a regular file (a named pipe, a socket, a device): never opened, since reading one
    /// can block forever or never end.
    NotARegularFile { kind: &'static str },
}

/// A file name that is not UTF-8, as shown in diagnostics: printable ASCII kept, every other
/// byte escaped (`bad\xff.yaml`).
pub fn escaped_name(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Size limits a source enforces while reading (the loader re-checks the per-file one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub max_file_bytes: u64,
    pub max_revision_bytes: u64,
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_revision_bytes: 64 << 20,
        }
    }
}
