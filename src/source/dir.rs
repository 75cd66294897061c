//! Reads a directory tree into snapshot entries: the manifests the selector takes, in path
//! order, with their bytes. Refuses (as entries, so they become diagnostics) symbolic links
//! that resolve outside the root, files over the size limit, and everything past the
//! revision's total size limit. A symlinked directory inside the root is entered once.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::model::snapshot::{Rejection, SizeLimits, SnapshotEntry};

use super::select::{self, Selector, IGNORE_FILE};
use super::SourceError;

/// Reads the manifests below `root`.
pub fn read_entries(root: &Path, limits: SizeLimits) -> Result<Vec<SnapshotEntry>, SourceError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SourceError::Io { path, source }
    };
    let canonical_root = fs::canonicalize(root).map_err(io(root))?;
    if !canonical_root.is_dir() {
        return Err(SourceError::NotADirectory {
            path: root.display().to_string(),
        });
    }
    let mut walk = Walk {
        root: canonical_root.clone(),
        limits,
        selector: Selector::empty(),
        entries: Vec::new(),
        total: 0,
        visited: HashSet::from([canonical_root.clone()]),
    };
    let ignore_path = canonical_root.join(IGNORE_FILE);
    if ignore_path.is_file() {
        let text = fs::read_to_string(&ignore_path).map_err(io(&ignore_path))?;
        let (selector, problems) = Selector::from_ignore_file(&text);
        walk.selector = selector;
        walk.entries
            .extend(problems.into_iter().map(|reason| SnapshotEntry::Rejected {
                path: IGNORE_FILE.to_owned(),
                reason,
            }));
    }
    let mut stack = vec![(canonical_root, String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children = walk.children(&dir, &rel)?;
        // Reverse so that popping visits directories in name order.
        children.reverse();
        stack.extend(children);
    }
    Ok(walk.entries)
}

struct Walk {
    root: PathBuf,
    limits: SizeLimits,
    selector: Selector,
    entries: Vec<SnapshotEntry>,
    total: u64,
    visited: HashSet<PathBuf>,
}

impl Walk {
    /// Reads the files of `dir` and returns its subdirectories to visit.
    fn children(&mut self, dir: &Path, rel: &str) -> Result<Vec<(PathBuf, String)>, SourceError> {
        let io = |source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = dir.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let resolved = if meta.file_type().is_symlink() {
                match self.resolve_link(&path, &rel_path) {
                    Some(resolved) => resolved,
                    None => continue,
                }
            } else {
                path
            };
            if resolved.is_dir() {
                if self.selector.enters_dir(&rel_path) && self.visited.insert(resolved.clone()) {
                    subdirs.push((resolved, rel_path));
                }
            } else if self.selector.takes_file(&rel_path) {
                self.read_file(&resolved, rel_path);
            }
        }
        Ok(subdirs)
    }

    /// The target of a symlink inside the root; a link leaving the root is recorded as refused
    /// when it would have mattered (a directory, or a manifest name).
    fn resolve_link(&mut self, link: &Path, rel_path: &str) -> Option<PathBuf> {
        let target = match fs::canonicalize(link) {
            Ok(target) => target,
            Err(e) => {
                if select::is_manifest_name(rel_path) {
                    self.reject(
                        rel_path.to_owned(),
                        Rejection::Unreadable {
                            message: format!("broken symbolic link: {e}"),
                        },
                    );
                }
                return None;
            }
        };
        if target.starts_with(&self.root) {
            return Some(target);
        }
        if target.is_dir() || select::is_manifest_name(rel_path) {
            let target = fs::read_link(link).unwrap_or(target);
            self.reject(
                rel_path.to_owned(),
                Rejection::SymlinkEscapesRoot {
                    target: target.display().to_string(),
                },
            );
        }
        None
    }

    fn read_file(&mut self, path: &Path, rel_path: String) {
        let size = match fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) => {
                return self.reject(
                    rel_path,
                    Rejection::Unreadable {
                        message: e.to_string(),
                    },
                )
            }
        };
        if size > self.limits.max_file_bytes {
            return self.reject(
                rel_path,
                Rejection::FileTooLarge {
                    size,
                    limit: self.limits.max_file_bytes,
                },
            );
        }
        if self.total.saturating_add(size) > self.limits.max_revision_bytes {
            return self.reject(
                rel_path,
                Rejection::RevisionTooLarge {
                    limit: self.limits.max_revision_bytes,
                },
            );
        }
        match fs::read(path) {
            Ok(bytes) => {
                self.total += bytes.len() as u64;
                self.entries.push(SnapshotEntry::File {
                    path: rel_path,
                    bytes,
                });
            }
            Err(e) => self.reject(
                rel_path,
                Rejection::Unreadable {
                    message: e.to_string(),
                },
            ),
        }
    }

    fn reject(&mut self, path: String, reason: Rejection) {
        self.entries.push(SnapshotEntry::Rejected { path, reason });
    }
}

/// A snapshot of the directory `root`, identified by a hash of its selected content.
pub fn snapshot(
    root: &Path,
    limits: SizeLimits,
    source: &str,
) -> Result<super::Snapshot, SourceError> {
    let entries = read_entries(root, limits)?;
    let revision = crate::model::stored::NewRevision {
        source: source.to_owned(),
        id: content_id(&entries),
        message: None,
        author: None,
    };
    Ok(super::Snapshot { revision, entries })
}

/// SHA-256 over every entry's path and content (or refusal), in order.
pub fn content_id(entries: &[SnapshotEntry]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for entry in entries {
        hash.update(entry.path().as_bytes());
        hash.update([0]);
        match entry {
            SnapshotEntry::File { bytes, .. } => hash.update(bytes),
            SnapshotEntry::Rejected { reason, .. } => hash.update(format!("{reason:?}").as_bytes()),
        }
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A watched directory.
#[derive(Debug, Clone)]
pub struct DirSource {
    pub root: PathBuf,
    pub limits: SizeLimits,
    /// The source's name in revisions.
    pub label: String,
    /// How long the tree must stay quiet after a change before it is read.
    pub quiet: std::time::Duration,
}

impl DirSource {
    /// Sends a snapshot now and after every change below `root` (debounced by `quiet`),
    /// skipping changes that leave the selected content as it was. A root that cannot be
    /// watched or read (missing, out of file descriptors, …) is reported as `Failed` and tried
    /// again with backoff (1 s doubling to 30 s) until a snapshot succeeds — never left until
    /// the next change, which may not come. Ends on `shutdown` or when the receiver is dropped.
    pub async fn run(self, tx: super::Events, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last = None;
        let mut failures = 0u32;
        loop {
            let error = tokio::select! {
                result = self.watch(&tx, &mut last, &mut failures) => match result {
                    Ok(()) => return,
                    Err(error) => error,
                },
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            };
            failures = failures.saturating_add(1);
            last = None;
            if tx.send(super::SourceEvent::Failed(error)).await.is_err() {
                return;
            }
            let wait = crate::model::backoff::delay(failures, RETRY_BASE, RETRY_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait.to_std()) => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Watches and reads until the receiver goes away (`Ok`) or the root cannot be watched or
    /// read (`Err`: the caller backs off and starts over with a new watch, so a root that was
    /// removed and made again is followed too).
    async fn watch(
        &self,
        tx: &super::Events,
        last: &mut Option<String>,
        failures: &mut u32,
    ) -> Result<(), SourceError> {
        use notify::Watcher;
        let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let watch_error = |source| SourceError::Watch {
            path: self.root.display().to_string(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Errors say the watch itself may have missed something: look again.
                if event.as_ref().map_or(true, |e| changes_content(&e.kind)) {
                    let _ = changed.send(());
                }
            })
            .map_err(watch_error)?;
        watcher
            .watch(&self.root, notify::RecursiveMode::Recursive)
            .map_err(watch_error)?;
        loop {
            let snap = snapshot(&self.root, self.limits, &self.label)?;
            *failures = 0;
            let event = if last.as_deref() == Some(snap.revision.id.as_str()) {
                // Touched but the same content: nothing downstream runs.
                super::SourceEvent::Unchanged
            } else {
                *last = Some(snap.revision.id.clone());
                super::SourceEvent::Snapshot(snap)
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
            // Wait for a change, then for `quiet` without one.
            if changes.recv().await.is_none() {
                return Ok(());
            }
            while let Ok(Some(())) = tokio::time::timeout(self.quiet, changes.recv()).await {}
        }
    }
}

/// PURE: whether a watch event can change what the tree holds. Opening, reading and closing
/// a file unwritten — which reading the tree itself does — cannot, nor can metadata changes;
/// reacting to them re-read the tree several times a second, forever.
pub fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    use notify::EventKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(
            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any | ModifyKind::Other,
        ) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(
            AccessKind::Any
            | AccessKind::Read
            | AccessKind::Open(_)
            | AccessKind::Close(
                AccessMode::Any | AccessMode::Execute | AccessMode::Read | AccessMode::Other,
            )
            | AccessKind::Other,
        ) => false,
    }
}

/// The first wait after a failed read, doubling up to `RETRY_MAX`.
const RETRY_BASE: crate::model::units::Duration = crate::model::units::Duration::from_secs(1);
const RETRY_MAX: crate::model::units::Duration = crate::model::units::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::changes_content;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
        RenameMode,
    };
    use notify::EventKind;

    #[test]
    fn only_events_that_can_change_content_count() {
        let cases = [
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Remove(RemoveKind::File), true),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                true,
            ),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), true),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                true,
            ),
            (EventKind::Access(AccessKind::Open(AccessMode::Read)), false),
            (EventKind::Access(AccessKind::Read), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
                false,
            ),
        ];
        for (kind, expected) in cases {
            assert_eq!(changes_content(&kind), expected, "{kind:?}");
        }
    }
}
