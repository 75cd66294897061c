//! The Git source (git2: `poll` blocks; `run` drives it on a blocking thread). Keeps a bare clone in the
//! agent's state directory and follows a branch (default: the remote's HEAD), a tag, or a
//! pinned commit, optionally below a sub-path. Each poll first asks the remote where the ref
//! points (cheap: no objects move) and fetches only when it moved; force-pushes are followed.
//! Credentials come from the agent config: an SSH key checked against a known_hosts file (an
//! unknown host key is refused, never accepted silently), or an HTTPS token — never logged.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use git2::{
    Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks, Repository, TreeWalkMode,
};
use tokio::sync::Notify;

use crate::model::snapshot::{escaped_name, Rejection, SizeLimits, SnapshotEntry};
use crate::model::stored::NewRevision;

use super::select::{Selector, IGNORE_FILE};
use super::{Snapshot, SourceError};

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// The remote's default branch (its HEAD).
    DefaultBranch,
    Branch(String),
    Tag(String),
    /// A fixed commit: new commits are ignored.
    Commit(String),
}

/// How to reach the repository.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ssh_key", &self.ssh_key)
            .field("known_hosts", &self.known_hosts)
            .field("token", &self.token.as_ref().map(|_| "[hidden]"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct GitSpec {
    pub url: String,
    pub reference: GitRef,
    /// Only manifests below this directory of the repository.
    pub path: Option<String>,
    /// Where the bare clone lives.
    pub checkout: PathBuf,
    pub credentials: Credentials,
    pub limits: SizeLimits,
}

pub struct GitSource {
    spec: GitSpec,
    repo: Repository,
    last: Option<Oid>,
    /// How many fetches ran (the cheap check is not one).
    pub fetches: u64,
    every: crate::model::units::Duration,
    check_now: Arc<Notify>,
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> SourceError {
    let what = what.into();
    move |source| SourceError::Git { what, source }
}

impl GitSource {
    pub fn open(spec: GitSpec) -> Result<Self, SourceError> {
        std::fs::create_dir_all(&spec.checkout).map_err(|source| SourceError::Io {
            path: spec.checkout.display().to_string(),
            source,
        })?;
        let repo = match Repository::open_bare(&spec.checkout) {
            Ok(repo) => repo,
            Err(_) => Repository::init_bare(&spec.checkout)
                .map_err(git(format!("cannot create {}", spec.checkout.display())))?,
        };
        Ok(Self {
            spec,
            repo,
            last: None,
            fetches: 0,
            every: crate::model::units::Duration::from_secs(60),
            check_now: Arc::new(Notify::new()),
        })
    }

    /// Checks the remote every `every`, and at once whenever `check_now` is notified (a push
    /// receiver does that).
    pub fn polling(self, every: crate::model::units::Duration, check_now: Arc<Notify>) -> Self {
        Self {
            every,
            check_now,
            ..self
        }
    }

    /// Polls until `shutdown`: a snapshot when the followed ref moved, `Unchanged` when it did
    /// not, `Failed` (then retries with backoff from 1 s up to the poll interval) when the
    /// remote cannot be read.
    pub async fn run(self, tx: super::Events, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (every, check_now) = (self.every, self.check_now.clone());
        let mut source = self;
        let mut failures = 0u32;
        loop {
            let polled = tokio::task::spawn_blocking(move || {
                let result = source.poll();
                (source, result)
            })
            .await;
            let Ok((returned, result)) = polled else {
                return;
            };
            source = returned;
            let (event, wait) = match result {
                Ok(Some(snapshot)) => (super::SourceEvent::Snapshot(snapshot), every),
                Ok(None) => (super::SourceEvent::Unchanged, every),
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let base = crate::model::units::Duration::from_secs(1);
                    let wait = crate::model::backoff::delay(failures, base, every);
                    (super::SourceEvent::Failed(error), wait)
                }
            };
            if !matches!(event, super::SourceEvent::Failed(_)) {
                failures = 0;
            }
            if tx.send(event).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.to_std()) => {}
                _ = check_now.notified() => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    /// The source's name in revisions: the URL and what is followed.
    pub fn name(&self) -> String {
        let what = match &self.spec.reference {
            GitRef::DefaultBranch => String::new(),
            GitRef::Branch(b) => format!("#{b}"),
            GitRef::Tag(t) => format!("#tag:{t}"),
            GitRef::Commit(c) => format!("@{c}"),
        };
        let path = self
            .spec
            .path
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        format!("{}{what}{path}", self.spec.url)
    }

    /// A new snapshot when the followed ref moved since the last one, `None` when it did not.
    pub fn poll(&mut self) -> Result<Option<Snapshot>, SourceError> {
        let target = match &self.spec.reference {
            GitRef::Commit(sha) => {
                Oid::from_str(sha).map_err(git(format!("{sha:?} is not a commit id")))?
            }
            GitRef::DefaultBranch | GitRef::Branch(_) | GitRef::Tag(_) => self.remote_target()?,
        };
        if self.last == Some(target) {
            return Ok(None);
        }
        if self.repo.find_commit(target).is_err() {
            self.fetch()?;
        }
        let snapshot = self.read(target)?;
        self.last = Some(target);
        Ok(Some(snapshot))
    }

    fn callbacks(&self) -> RemoteCallbacks<'static> {
        let credentials = self.spec.credentials.clone();
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, username, allowed| {
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(key) = &credentials.ssh_key {
                    return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(token) = &credentials.token {
                    return Cred::userpass_plaintext("x-access-token", token);
                }
            }
            Err(git2::Error::from_str(
                "the remote asks for credentials the agent config does not provide",
            ))
        });
        let known_hosts = self.spec.credentials.known_hosts.clone();
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey().and_then(|k| k.hostkey()) else {
                // TLS certificates: libgit2 already verified them against the system roots.
                return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
            };
            match &known_hosts {
                Some(file) if host_key_known(file, host, hostkey) => {
                    Ok(git2::CertificateCheckStatus::CertificateOk)
                }
                Some(file) => Err(git2::Error::from_str(&format!(
                    "the host key of {host} is not in {}",
                    file.display()
                ))),
                None => Err(git2::Error::from_str(&format!(
                    "refusing the unknown host key of {host}: set git.known_hosts"
                ))),
            }
        });
        callbacks
    }

    /// Where the followed ref points on the remote, without fetching objects.
    fn remote_target(&self) -> Result<Oid, SourceError> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.spec.url)
            .map_err(git("bad remote URL"))?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
            .map_err(git(format!("cannot reach {}", self.spec.url)))?;
        let heads = connection
            .list()
            .map_err(git("cannot list the remote's refs"))?;
        let wanted = self.ref_name(heads.iter().map(|h| (h.name(), h.symref_target())));
        let peeled = format!("{wanted}^{{}}");
        heads
            .iter()
            .find(|h| h.name() == peeled)
            .or_else(|| heads.iter().find(|h| h.name() == wanted))
            .map(|h| h.oid())
            .ok_or_else(|| SourceError::Config(format!("{} has no {wanted}", self.spec.url)))
    }

    /// The full name of the followed ref, given the remote's refs (for the default branch).
    fn ref_name<'a>(&self, mut heads: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
        match &self.spec.reference {
            GitRef::Branch(b) => format!("refs/heads/{b}"),
            GitRef::Tag(t) => format!("refs/tags/{t}"),
            GitRef::Commit(c) => c.clone(),
            GitRef::DefaultBranch => heads
                .find(|(name, _)| *name == "HEAD")
                .and_then(|(_, target)| target.map(str::to_owned))
                .unwrap_or_else(|| "HEAD".to_owned()),
        }
    }

    fn fetch(&mut self) -> Result<(), SourceError> {
        self.fetches += 1;
        let refspecs: Vec<String> = match &self.spec.reference {
            GitRef::Branch(b) => vec![format!("+refs/heads/{b}:refs/keel/{b}")],
            GitRef::Tag(t) => vec![format!("+refs/tags/{t}:refs/keel/tags/{t}")],
            GitRef::DefaultBranch => vec!["+HEAD:refs/keel/HEAD".to_owned()],
            GitRef::Commit(_) => vec![
                "+refs/heads/*:refs/keel/heads/*".to_owned(),
                "+refs/tags/*:refs/keel/tags/*".to_owned(),
            ],
        };
        let shallow = !matches!(self.spec.reference, GitRef::Commit(_));
        let mut remote = self
            .repo
            .remote_anonymous(&self.spec.url)
            .map_err(git("bad remote URL"))?;
        let attempt = |remote: &mut git2::Remote<'_>, depth: Option<i32>| {
            let mut options = FetchOptions::new();
            options.remote_callbacks(self.callbacks());
            if let Some(depth) = depth {
                options.depth(depth);
            }
            remote.fetch(&refspecs, Some(&mut options), None)
        };
        // Shallow where the transport supports it; a full fetch otherwise.
        let fetched = if shallow {
            attempt(&mut remote, Some(1)).or_else(|_| attempt(&mut remote, None))
        } else {
            attempt(&mut remote, None)
        };
        fetched.map_err(git(format!("cannot fetch from {}", self.spec.url)))
    }

    fn read(&self, target: Oid) -> Result<Snapshot, SourceError> {
        let commit = self
            .repo
            .find_commit(target)
            .map_err(git(format!("commit {target} is not in the repository")))?;
        let mut tree = commit
            .tree()
            .map_err(git("cannot read the commit's tree"))?;
        if let Some(path) = self.spec.path.as_deref().filter(|p| !p.is_empty()) {
            let entry = tree
                .get_path(std::path::Path::new(path))
                .map_err(git(format!("the commit has no directory {path}")))?;
            tree = self
                .repo
                .find_tree(entry.id())
                .map_err(git(format!("{path} is not a directory")))?;
        }
        let entries = TreeReader {
            repo: &self.repo,
            limits: self.spec.limits,
        }
        .read(&tree)?;
        let revision = NewRevision {
            source: self.name(),
            id: target.to_string(),
            message: commit.message().map(|m| m.trim_end().to_owned()),
            author: Some(format!(
                "{} <{}>",
                commit.author().name().unwrap_or("?"),
                commit.author().email().unwrap_or("?")
            )),
        };
        Ok(Snapshot { revision, entries })
    }
}

/// Whether `file` (OpenSSH known_hosts: `host[,host] type base64`) lists `key` for `host`.
fn host_key_known(file: &std::path::Path, host: &str, key: &[u8]) -> bool {
    use base64::Engine;
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|line| {
            let mut fields = line.split_whitespace();
            let (Some(hosts), Some(_kind), Some(encoded)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            let host_matches = hosts
                .split(',')
                .any(|h| h == host || h.trim_start_matches('[').split(']').next() == Some(host));
            host_matches
                && base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .is_ok_and(|k| k == key)
        })
}

/// Reads a tree into snapshot entries with the same selection and limits as a directory.
struct TreeReader<'r> {
    repo: &'r Repository,
    limits: SizeLimits,
}

const SYMLINK: i32 = 0o120000;

impl TreeReader<'_> {
    fn read(&self, root: &git2::Tree<'_>) -> Result<Vec<SnapshotEntry>, SourceError> {
        let mut entries = Vec::new();
        let selector = match root
            .get_name(IGNORE_FILE)
            .and_then(|e| self.repo.find_blob(e.id()).ok())
        {
            Some(blob) => {
                let (selector, problems) =
                    Selector::from_ignore_file(&String::from_utf8_lossy(blob.content()));
                entries.extend(problems.into_iter().map(|reason| SnapshotEntry::Rejected {
                    path: IGNORE_FILE.to_owned(),
                    reason,
                }));
                selector
            }
            None => Selector::empty(),
        };
        let mut files: Vec<(String, Oid, i32)> = Vec::new();
        let mut skipped_dirs: HashSet<String> = HashSet::new();
        root.walk(TreeWalkMode::PreOrder, |dir, entry| {
            let name = std::str::from_utf8(entry.name_bytes()).ok();
            let shown = name.map_or_else(|| escaped_name(entry.name_bytes()), str::to_owned);
            let path = format!("{dir}{shown}");
            if skipped_dirs.iter().any(|s| dir.starts_with(s.as_str())) {
                return git2::TreeWalkResult::Skip;
            }
            let is_tree = entry.kind() == Some(git2::ObjectType::Tree);
            let wanted = match is_tree {
                true => selector.enters_dir(&path),
                false => selector.takes_file(&path),
            };
            if !wanted {
                if is_tree {
                    skipped_dirs.insert(format!("{path}/"));
                }
                return git2::TreeWalkResult::Skip;
            }
            if name.is_none() {
                // Never entered: what it holds could not be named either.
                entries.push(SnapshotEntry::Rejected {
                    path,
                    reason: Rejection::NameNotUtf8,
                });
                return git2::TreeWalkResult::Skip;
            }
            if !is_tree {
                files.push((path, entry.id(), entry.filemode()));
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(git("cannot walk the tree"))?;
        files.sort();
        let mut total = 0u64;
        for (path, id, mode) in files {
            let entry = if mode == SYMLINK {
                self.follow(root, &path, id)
            } else {
                self.blob(path, id, &mut total)
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    fn blob(&self, path: String, id: Oid, total: &mut u64) -> SnapshotEntry {
        let blob = match self.repo.find_blob(id) {
            Ok(blob) => blob,
            Err(e) => {
                return SnapshotEntry::Rejected {
                    path,
                    reason: Rejection::Unreadable {
                        message: e.message().to_owned(),
                    },
                }
            }
        };
        let size = blob.size() as u64;
        if size > self.limits.max_file_bytes {
            return SnapshotEntry::Rejected {
                path,
                reason: Rejection::FileTooLarge {
                    size,
                    limit: self.limits.max_file_bytes,
                },
            };
        }
        if total.saturating_add(size) > self.limits.max_revision_bytes {
            return SnapshotEntry::Rejected {
                path,
                reason: Rejection::RevisionTooLarge {
                    limit: self.limits.max_revision_bytes,
                },
            };
        }
        *total += size;
        SnapshotEntry::File {
            path,
            bytes: blob.content().to_vec(),
        }
    }

    /// A symlink inside the tree is read as its target file; one that leaves the tree is refused.
    fn follow(&self, root: &git2::Tree<'_>, path: &str, id: Oid) -> SnapshotEntry {
        let target = self
            .repo
            .find_blob(id)
            .map(|b| String::from_utf8_lossy(b.content()).into_owned())
            .unwrap_or_default();
        let escape = || SnapshotEntry::Rejected {
            path: path.to_owned(),
            reason: Rejection::SymlinkEscapesRoot {
                target: target.clone(),
            },
        };
        if target.starts_with('/') {
            return escape();
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return escape();
                    }
                }
                other => parts.push(other),
            }
        }
        let resolved = parts.join("/");
        match root.get_path(std::path::Path::new(&resolved)) {
            Ok(entry) if entry.filemode() != SYMLINK => {
                self.blob(path.to_owned(), entry.id(), &mut 0)
            }
            Ok(_) | Err(_) => SnapshotEntry::Rejected {
                path: path.to_owned(),
                reason: Rejection::Unreadable {
                    message: format!(
                        "symbolic link to {target}, which is not a file of the revision"
                    ),
                },
            },
        }
    }
}
