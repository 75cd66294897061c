//! Sources against real repositories and directories: Git over file:// and `git daemon` on
//! 127.0.0.1 (new commits, force-pushes, pins, tags, sub-paths, unreachable remotes, the cheap
//! check), and the directory watcher (one debounced revision per edit, add and delete).

mod support;

use std::time::{Duration, Instant};

use keel::model::snapshot::{Rejection, SizeLimits, SnapshotEntry};
use keel::source::git::{Credentials, GitRef, GitSource, GitSpec};
use keel::source::SourceEvent;
use support::git::{Daemon, Repo};

fn source(url: String, reference: GitRef, path: Option<&str>) -> (tempfile::TempDir, GitSource) {
    let checkout = tempfile::tempdir().unwrap();
    let spec = GitSpec {
        url,
        reference,
        path: path.map(str::to_owned),
        checkout: checkout.path().join("clone"),
        credentials: Credentials::default(),
        limits: SizeLimits::default(),
    };
    (checkout, GitSource::open(spec).unwrap())
}

fn paths(entries: &[SnapshotEntry]) -> Vec<&str> {
    entries.iter().map(SnapshotEntry::path).collect()
}

const WEB: &str = "deployments:\n  web: {name: web, namespace: demo, image: busybox}\n";

#[test]
fn each_new_commit_is_one_snapshot_and_an_unmoved_ref_fetches_nothing() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let first = repo.commit("add web");
    let (_c, mut git) = source(repo.url(), GitRef::Branch("main".into()), None);
    let snap = git.poll().unwrap().expect("a first snapshot");
    assert_eq!(snap.revision.id, first);
    assert_eq!(snap.revision.message.as_deref(), Some("add web"));
    assert_eq!(
        snap.revision.author.as_deref(),
        Some("Dev <dev@example.com>")
    );
    assert_eq!(paths(&snap.entries), ["web.yaml"]);
    assert_eq!(git.fetches, 1);
    for _ in 0..3 {
        assert!(git.poll().unwrap().is_none());
    }
    assert_eq!(
        git.fetches, 1,
        "the cheap check fetched although nothing moved"
    );
    repo.write("api.yaml", &WEB.replace("web", "api"));
    let second = repo.commit("add api");
    let snap = git.poll().unwrap().expect("a second snapshot");
    assert_eq!(snap.revision.id, second);
    assert_eq!(paths(&snap.entries), ["api.yaml", "web.yaml"]);
    assert_eq!(git.fetches, 2);
}

#[test]
fn the_default_branch_is_the_remote_head() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let head = repo.commit("first");
    let (_c, mut git) = source(repo.url(), GitRef::DefaultBranch, None);
    assert_eq!(git.poll().unwrap().unwrap().revision.id, head);
}

#[test]
fn a_force_push_that_rewrites_history_is_followed() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let base = repo.commit("base");
    repo.write("api.yaml", WEB);
    repo.commit("to be rewritten");
    let (_c, mut git) = source(repo.url(), GitRef::Branch("main".into()), None);
    git.poll().unwrap().unwrap();
    repo.git(&["reset", "-q", "--hard", &base]);
    repo.write("other.yaml", WEB.replace("web", "other").as_str());
    let rewritten = repo.commit("rewritten");
    let snap = git.poll().unwrap().expect("the rewritten branch");
    assert_eq!(snap.revision.id, rewritten);
    assert_eq!(paths(&snap.entries), ["other.yaml", "web.yaml"]);
}

#[test]
fn a_pinned_commit_ignores_new_commits() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let pinned = repo.commit("pinned");
    repo.write("api.yaml", WEB);
    repo.commit("later");
    let (_c, mut git) = source(repo.url(), GitRef::Commit(pinned.clone()), None);
    let snap = git.poll().unwrap().unwrap();
    assert_eq!(
        (snap.revision.id.as_str(), paths(&snap.entries)),
        (pinned.as_str(), vec!["web.yaml"])
    );
    repo.write("more.yaml", WEB);
    repo.commit("even later");
    assert!(git.poll().unwrap().is_none());
}

#[test]
fn a_tag_is_followed() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let tagged = repo.commit("v1");
    repo.git(&["tag", "-a", "v1", "-m", "release 1"]);
    repo.write("api.yaml", WEB);
    repo.commit("after the tag");
    let (_c, mut git) = source(repo.url(), GitRef::Tag("v1".into()), None);
    assert_eq!(git.poll().unwrap().unwrap().revision.id, tagged);
}

#[test]
fn the_sub_path_is_honoured_with_its_own_keelignore() {
    let repo = Repo::new();
    repo.write("apps/web.yaml", WEB)
        .write("apps/drafts/wip.yaml", "broken: [")
        .write("apps/.keelignore", "drafts/\n")
        .write("other/api.yaml", WEB)
        .write("apps/README.md", "# not a manifest");
    repo.commit("layout");
    let (_c, mut git) = source(repo.url(), GitRef::Branch("main".into()), Some("apps"));
    assert_eq!(paths(&git.poll().unwrap().unwrap().entries), ["web.yaml"]);
}

#[test]
fn symlinks_inside_are_followed_and_escaping_ones_refused() {
    let repo = Repo::new();
    repo.write("shared/web.txt", WEB)
        .symlink("shared/web.txt", "web.yaml")
        .symlink("../../etc/passwd", "escape.yaml");
    repo.commit("links");
    let (_c, mut git) = source(repo.url(), GitRef::Branch("main".into()), None);
    let entries = git.poll().unwrap().unwrap().entries;
    assert!(entries.iter().any(|e| matches!(e, SnapshotEntry::File { path, bytes } if path == "web.yaml" && bytes == WEB.as_bytes())), "{entries:?}");
    assert!(entries.iter().any(|e| matches!(e, SnapshotEntry::Rejected { path, reason: Rejection::SymlinkEscapesRoot { .. } } if path == "escape.yaml")));
}

#[test]
fn git_daemon_on_loopback_serves_and_an_unreachable_remote_is_an_error() {
    let base = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    let head = repo.commit("served");
    let served = base.path().join("ops.git");
    std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(repo.path())
        .arg(&served)
        .status()
        .unwrap();
    let daemon = Daemon::serve(base.path());
    let url = format!("git://127.0.0.1:{}/ops.git", daemon.port);
    let (_c, mut git) = source(url, GitRef::Branch("main".into()), None);
    assert_eq!(git.poll().unwrap().unwrap().revision.id, head);
    drop(daemon);
    let error = git.poll().unwrap_err();
    assert!(error.to_string().contains("cannot reach"), "{error}");

    let (_c, mut missing) = source(
        "file:///nonexistent/keel/repo".into(),
        GitRef::DefaultBranch,
        None,
    );
    assert!(missing.poll().is_err());
}

/// A change made to the watched directory.
type Change = Box<dyn Fn(&std::path::Path)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_directory_change_is_one_revision_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let (tx, mut events) = tokio::sync::mpsc::channel(16);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let source = keel::source::dir::DirSource::new(
        dir.path().to_owned(),
        SizeLimits::default(),
        "dir".into(),
    );
    let watcher = tokio::spawn(source.run(tx, shutdown));
    // Snapshots only: a directory source has nothing else to say while it can read the tree.
    let (snapshots_tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let snapshot = match event {
                SourceEvent::Snapshot(snapshot) => Ok(snapshot),
                SourceEvent::Failed(error) => Err(error),
                SourceEvent::Unchanged => continue,
            };
            if snapshots_tx.send(snapshot).await.is_err() {
                return;
            }
        }
    });
    let first = rx.recv().await.unwrap().unwrap();
    assert_eq!(paths(&first.entries), ["web.yaml"]);
    let mut last_id = first.revision.id;
    let changes: Vec<(&str, Change)> = vec![
        (
            "edit",
            Box::new(|d| {
                std::fs::write(d.join("web.yaml"), WEB.replace("busybox", "busybox:1.36")).unwrap()
            }),
        ),
        (
            "add",
            Box::new(|d| std::fs::write(d.join("api.yaml"), WEB.replace("web", "api")).unwrap()),
        ),
        (
            "delete",
            Box::new(|d| std::fs::remove_file(d.join("api.yaml")).unwrap()),
        ),
    ];
    for (what, change) in changes {
        let started = Instant::now();
        change(dir.path());
        let snap = tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: no revision within 1s"))
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "{what}");
        assert_ne!(snap.revision.id, last_id, "{what}");
        last_id = snap.revision.id;
        assert!(
            tokio::time::timeout(Duration::from_millis(400), rx.recv())
                .await
                .is_err(),
            "{what} produced a second revision"
        );
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the directory source stops on shutdown")
        .unwrap();
}

/// The next snapshot (skipping failures and `Unchanged`), within `secs`; the failures seen.
async fn next_snapshot(
    events: &mut tokio::sync::mpsc::Receiver<SourceEvent>,
    secs: u64,
) -> (keel::source::Snapshot, usize) {
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(SourceEvent::Snapshot(snapshot))) => return (snapshot, failures),
            Ok(Some(SourceEvent::Failed(_))) => failures += 1,
            Ok(Some(SourceEvent::Unchanged)) => {}
            Ok(None) => panic!("the source ended"),
            Err(_) => panic!("no snapshot within {secs}s ({failures} failures)"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_cannot_be_read_is_retried_until_it_can() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("repo");
    let (tx, mut events) = tokio::sync::mpsc::channel(16);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let source =
        keel::source::dir::DirSource::new(root.clone(), SizeLimits::default(), "dir".into());
    tokio::spawn(source.run(tx, shutdown));
    // Missing at start: reported, then retried — no change under a watch will say it appeared.
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(SourceEvent::Failed(_))) => {}
        other => panic!("expected a failure first, got {other:?}"),
    }
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("web.yaml"), WEB).unwrap();
    let (first, _) = next_snapshot(&mut events, 10).await;
    assert_eq!(paths(&first.entries), ["web.yaml"]);

    // Removed and made again: the old watch died with the directory; a new one follows it.
    std::fs::remove_dir_all(&root).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("api.yaml"), WEB.replace("web", "api")).unwrap();
    let (second, failures) = next_snapshot(&mut events, 10).await;
    assert!(failures >= 1, "the missing directory was reported");
    assert_eq!(paths(&second.entries), ["api.yaml"]);
    std::fs::write(root.join("web.yaml"), WEB).unwrap();
    let (third, _) = next_snapshot(&mut events, 5).await;
    assert_eq!(
        paths(&third.entries),
        ["api.yaml", "web.yaml"],
        "watched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_directory_is_not_read_again_however_often_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let (tx, mut events) = tokio::sync::mpsc::channel(64);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let source = keel::source::dir::DirSource::new(
        dir.path().to_owned(),
        SizeLimits::default(),
        "dir".into(),
    );
    tokio::spawn(source.run(tx, shutdown));
    let (first, _) = next_snapshot(&mut events, 5).await;
    assert_eq!(paths(&first.entries), ["web.yaml"]);
    // Others read the files (an editor, a backup, `cat`): opens and reads, no writes.
    for _ in 0..20 {
        let _ = std::fs::read(dir.path().join("web.yaml")).unwrap();
        let _ = std::fs::read_dir(dir.path()).unwrap().count();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted, not timed: nothing at all came out of the source — no snapshot, no re-read.
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(_)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        events.recv(),
    )
    .await
    {
        seen += 1;
    }
    assert_eq!(seen, 0, "the source re-read an unchanged tree");
}

fn os(name: &[u8]) -> &std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)
}

fn rejected<'a>(entries: &'a [SnapshotEntry], path: &str) -> Option<&'a Rejection> {
    entries.iter().find_map(|e| match e {
        SnapshotEntry::Rejected { path: p, reason } if p == path => Some(reason),
        SnapshotEntry::Rejected { .. } | SnapshotEntry::File { .. } => None,
    })
}

#[test]
fn a_name_that_is_not_utf8_is_refused_by_both_sources_never_skipped() {
    let repo = Repo::new();
    repo.write("web.yaml", WEB);
    std::fs::write(repo.path().join(os(b"bad\xff.yaml")), WEB).unwrap();
    std::fs::create_dir(repo.path().join(os(b"dir\xfe"))).unwrap();
    std::fs::write(repo.path().join(os(b"dir\xfe")).join("api.yaml"), WEB).unwrap();
    std::fs::write(repo.path().join(os(b"notes\xff.txt")), "not a manifest").unwrap();
    repo.commit("names");
    let (_c, mut git) = source(repo.url(), GitRef::Branch("main".into()), None);
    let from_git = git.poll().unwrap().unwrap().entries;
    let from_dir = keel::source::dir::read_entries(&repo.path(), SizeLimits::default()).unwrap();
    for (source, entries) in [("git", &from_git), ("dir", &from_dir)] {
        assert_eq!(
            rejected(entries, "bad\\xff.yaml"),
            Some(&Rejection::NameNotUtf8),
            "{source}: {entries:?}"
        );
        assert_eq!(
            rejected(entries, "dir\\xfe"),
            Some(&Rejection::NameNotUtf8),
            "{source}: a directory keel cannot name is refused, not entered: {entries:?}"
        );
        assert!(
            paths(entries).contains(&"web.yaml"),
            "{source}: {entries:?}"
        );
        assert!(
            !paths(entries).iter().any(|p| p.starts_with("notes")),
            "{source}: a file that is no manifest stays unselected: {entries:?}"
        );
    }
    let diagnostics = match keel::manifest::load(&from_dir, &keel::manifest::Limits::default()) {
        Ok(_) => panic!("a revision with such a name must be invalid"),
        Err(diagnostics) => diagnostics,
    };
    assert!(
        diagnostics
            .iter()
            .any(|d| d.file == "bad\\xff.yaml" && d.message.contains("not valid UTF-8")),
        "{diagnostics:?}"
    );
}

#[test]
fn special_files_are_refused_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("fifo.yaml", dir.path().join("link.yaml")).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock.yaml")).unwrap();
    // Were the pipe opened for reading, this would block forever: nobody writes to it.
    let entries = keel::source::dir::read_entries(dir.path(), SizeLimits::default()).unwrap();
    drop(socket);
    for (path, kind) in [
        ("fifo.yaml", "a named pipe (FIFO)"),
        ("link.yaml", "a named pipe (FIFO)"),
        ("sock.yaml", "a socket"),
    ] {
        assert_eq!(
            rejected(&entries, path),
            Some(&Rejection::NotARegularFile { kind }),
            "{path}: {entries:?}"
        );
    }
    assert!(paths(&entries).contains(&"web.yaml"));

    // A `.keelignore` that is a pipe is no selection to silently do without.
    let ignored = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(ignored.path().join(".keelignore"))
        .status()
        .unwrap()
        .success());
    let entries = keel::source::dir::read_entries(ignored.path(), SizeLimits::default()).unwrap();
    assert_eq!(
        rejected(&entries, ".keelignore"),
        Some(&Rejection::NotARegularFile {
            kind: "a named pipe (FIFO)"
        })
    );
}

/// Releases `hanging_read` (a `fn`, so its gate is a static).
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());
static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A read of the tree that blocks its thread until `GATE` opens (a hung mount, say).
fn hanging_read(
    root: &std::path::Path,
    limits: SizeLimits,
    label: &str,
) -> Result<keel::source::Snapshot, keel::source::SourceError> {
    READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut open = GATE.0.lock().unwrap();
    while !*open {
        open = GATE.1.wait(open).unwrap();
    }
    keel::source::dir::snapshot(root, limits, label)
}

#[test]
fn a_read_that_hangs_stalls_nothing_else() {
    // One worker thread: a read on it would stop the ticker below, and the time bound too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    runtime.block_on(async {
        let (tx, mut events) = tokio::sync::mpsc::channel(16);
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let source = keel::source::dir::DirSource {
            read_timeout: Duration::from_millis(200),
            read: hanging_read,
            ..keel::source::dir::DirSource::new(
                dir.path().to_owned(),
                SizeLimits::default(),
                "dir".into(),
            )
        };
        tokio::spawn(source.run(tx, shutdown));
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the hung read is reported")
            .unwrap();
        assert!(
            matches!(
                &first,
                SourceEvent::Failed(keel::source::SourceError::ReadTimedOut { .. })
            ),
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            ticks.load(std::sync::atomic::Ordering::SeqCst) >= 20,
            "the runtime kept running while the read hung"
        );
        assert_eq!(
            READS.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "no second read starts while the first hangs"
        );
        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        // Written while the read hung: the late read is old news, so the tree is read again.
        std::fs::write(dir.path().join("api.yaml"), WEB).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("a snapshot once the read ends")
                .unwrap();
            if let SourceEvent::Snapshot(snap) = event {
                assert_eq!(paths(&snap.entries), ["api.yaml", "web.yaml"]);
                break;
            }
            assert!(Instant::now() < deadline);
        }
        assert_eq!(READS.load(std::sync::atomic::Ordering::SeqCst), 2);
    });
}
