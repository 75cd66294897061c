//! Reads a directory tree into snapshot entries: the manifests the selector takes, in path
//! order, with their bytes. Refuses (as entries, so they become diagnostics) symbolic links
//! that resolve outside the root, files over the size limit, and everything past the
//! revision's total size limit. A symlinked directory inside the root is entered once.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::model::snapshot::{escaped_name, Rejection, SizeLimits, SnapshotEntry};

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
    let ignore_kind = fs::metadata(&ignore_path)
        .ok()
        .map(|m| special_kind(&m.file_type()));
    if let Some(Some(kind)) = ignore_kind {
        walk.entries.push(SnapshotEntry::Rejected {
            path: IGNORE_FILE.to_owned(),
            reason: Rejection::NotARegularFile { kind },
        });
    } else if ignore_path.is_file() {
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
        for os_name in names {
            let path = dir.join(&os_name);
            let name = os_name.to_str().map(str::to_owned);
            let shown = name
                .clone()
                .unwrap_or_else(|| escaped_name(os_name.as_encoded_bytes()));
            let rel_path = if rel.is_empty() {
                shown
            } else {
                format!("{rel}/{shown}")
            };
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
            // Follows the link, never opens: a special file is told apart without reading it.
            let target = match fs::metadata(&resolved) {
                Ok(target) => target,
                Err(e) => {
                    if self.selector.takes_file(&rel_path) {
                        let message = e.to_string();
                        self.reject(rel_path, Rejection::Unreadable { message });
                    }
                    continue;
                }
            };
            let wanted = match target.is_dir() {
                true => self.selector.enters_dir(&rel_path),
                false => self.selector.takes_file(&rel_path),
            };
            if !wanted {
                continue;
            }
            if name.is_none() {
                self.reject(rel_path, Rejection::NameNotUtf8);
            } else if target.is_dir() {
                if self.visited.insert(resolved.clone()) {
                    subdirs.push((resolved, rel_path));
                }
            } else if let Some(kind) = special_kind(&target.file_type()) {
                self.reject(rel_path, Rejection::NotARegularFile { kind });
            } else {
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
        let refused = |message: String| Rejection::Unreadable { message };
        let (file, size) = match open_regular(path) {
            Ok(Ok(opened)) => opened,
            Ok(Err(kind)) => return self.reject(rel_path, Rejection::NotARegularFile { kind }),
            Err(e) => return self.reject(rel_path, refused(e.to_string())),
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
        // Never more than the limit, even from a file that grows while it is read.
        let mut bytes = Vec::new();
        match std::io::Read::read_to_end(
            &mut std::io::Read::take(file, self.limits.max_file_bytes.saturating_add(1)),
            &mut bytes,
        ) {
            Ok(_) if bytes.len() as u64 > self.limits.max_file_bytes => self.reject(
                rel_path,
                Rejection::FileTooLarge {
                    size: bytes.len() as u64,
                    limit: self.limits.max_file_bytes,
                },
            ),
            Ok(_) => {
                self.total += bytes.len() as u64;
                self.entries.push(SnapshotEntry::File {
                    path: rel_path,
                    bytes,
                });
            }
            Err(e) => self.reject(rel_path, refused(e.to_string())),
        }
    }

    fn reject(&mut self, path: String, reason: Rejection) {
        self.entries.push(SnapshotEntry::Rejected { path, reason });
    }
}

/// What kind of special file `file_type` is (`None` for a regular file or a directory).
fn special_kind(file_type: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else {
        None
    }
}

/// Opens `path` without blocking — a file swapped for a named pipe since it was looked at
/// does not hang the open — and reads its size; `Ok(Err(kind))` when it is no regular file.
fn open_regular(path: &Path) -> std::io::Result<Result<(fs::File, u64), &'static str>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(match special_kind(&meta.file_type()) {
        Some(kind) => Err(kind),
        None => Ok((file, meta.len())),
    })
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

/// How a directory source reads its tree: `snapshot`, unless a test substitutes one.
pub type ReadTree = fn(&Path, SizeLimits, &str) -> Result<super::Snapshot, SourceError>;

/// A watched directory.
#[derive(Debug, Clone)]
pub struct DirSource {
    pub root: PathBuf,
    pub limits: SizeLimits,
    /// The source's name in revisions.
    pub label: String,
    /// How long the tree must stay quiet after a change before it is read.
    pub quiet: std::time::Duration,
    /// How long one read of the tree may take before it is reported as failed (it goes on in
    /// its thread; no second read starts until it ends).
    pub read_timeout: std::time::Duration,
    pub read: ReadTree,
}

impl DirSource {
    /// A source over `root` with the default debounce (150 ms) and read bound (30 s).
    pub fn new(root: PathBuf, limits: SizeLimits, label: String) -> Self {
        Self {
            root,
            limits,
            label,
            quiet: std::time::Duration::from_millis(150),
            read_timeout: std::time::Duration::from_secs(30),
            read: snapshot,
        }
    }

    /// Sends a snapshot now and after every change below `root` (debounced by `quiet`),
    /// skipping changes that leave the selected content as it was. A root that cannot be
    /// watched or read (missing, out of file descriptors, a read that hangs, …) is reported as
    /// `Failed` and tried again with backoff (1 s doubling to 30 s) until a snapshot succeeds —
    /// never left until the next change, which may not come. The tree is read on a blocking
    /// thread, never on the async workers, so a read that hangs stalls nothing else. Ends on
    /// `shutdown` or when the receiver is dropped.
    pub async fn run(self, tx: super::Events, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last = None;
        let mut failures = 0u32;
        let mut reads = Reads::default();
        loop {
            let error = tokio::select! {
                result = self.watch(&tx, &mut last, &mut failures, &mut reads) => match result {
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
        reads: &mut Reads,
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
            let snap = reads.read(self).await?;
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

/// The one read of the tree that may be under way, on a blocking thread.
#[derive(Default)]
struct Reads {
    /// A read that outlived its time bound: waited for again rather than started anew.
    pending: Option<tokio::task::JoinHandle<Result<super::Snapshot, SourceError>>>,
}

impl Reads {
    /// The tree as it is now. A read that outlived its bound is waited for again (never a
    /// second thread beside it); once it ends, what it read is old — changes since may have
    /// gone unwatched — so the tree is read once more.
    async fn read(&mut self, source: &DirSource) -> Result<super::Snapshot, SourceError> {
        let mut late = self.pending.is_some();
        let mut handle = self.pending.take().unwrap_or_else(|| spawn_read(source));
        loop {
            match tokio::time::timeout(source.read_timeout, &mut handle).await {
                Ok(_) if late => {
                    late = false;
                    handle = spawn_read(source);
                }
                Ok(Ok(result)) => return result,
                Ok(Err(joined)) => {
                    return Err(SourceError::Io {
                        path: source.root.display().to_string(),
                        source: std::io::Error::other(joined.to_string()),
                    })
                }
                Err(_) => {
                    self.pending = Some(handle);
                    return Err(SourceError::ReadTimedOut {
                        path: source.root.display().to_string(),
                        after: source.read_timeout,
                    });
                }
            }
        }
    }
}

/// One read of `source`'s tree on a blocking thread.
fn spawn_read(source: &DirSource) -> tokio::task::JoinHandle<Result<super::Snapshot, SourceError>> {
    let (read, root, limits) = (source.read, source.root.clone(), source.limits);
    let label = source.label.clone();
    tokio::task::spawn_blocking(move || read(&root, limits, &label))
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
