//! A bad commit heals itself, end to end on the in-memory runtime and a real SQLite store: a
//! revision that fails at run time is rolled back whole to the last good one (an updated
//! deployment restored, a created one removed), its desired state is quarantined — the same
//! manifests under another commit are not applied — a fixing commit is applied normally, a
//! failing restore is not rolled back again, and `[rollback] mode = "off"` keeps the failure.

mod support;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::clock;
use keel::manifest::Limits;
use keel::model::desired::DeploymentId;
use keel::model::event::NotificationKind;
use keel::model::manifest::RuntimeKind;
use keel::model::snapshot::SnapshotEntry;
use keel::model::status::{DeploymentStatus, RevisionState};
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::{Behaviour, FakeRuntime};
use keel::runtime::Runtime;
use keel::source::Snapshot;
use keel::store::{Store, StoreReader};
use support::{deployment, revision};

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    reader: StoreReader,
    fake: FakeRuntime,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("keel.db")).unwrap());
    let reader = store.reader().unwrap();
    let fake = FakeRuntime::new(RuntimeKind::Docker);
    // `boom` dies 20 ms after every start.
    fake.behave(
        &id("boom"),
        Behaviour {
            exit_after: Some((Duration::from_millis(20), 1)),
            ..Behaviour::default()
        },
    );
    Rig {
        _dir: dir,
        store,
        reader,
        fake,
    }
}

fn id(name: &str) -> DeploymentId {
    DeploymentId::new("demo", name)
}

fn web(version: &str) -> String {
    deployment(
        "demo",
        "web",
        &format!("    environment:\n      VERSION: \"{version}\"\n"),
    )
}

fn boom() -> String {
    deployment("demo", "boom", "")
}

impl Rig {
    fn controller(&self, config: Config) -> Controller {
        let runtime: Arc<dyn Runtime> = Arc::new(self.fake.clone());
        Controller::new(self.store.clone(), vec![runtime], config, clock::system()).unwrap()
    }

    /// Ingests commit `sha` holding `files`, as a source would hand it over.
    fn push(&self, sha: &str, files: &[(&str, &str)]) -> keel::ingest::Ingested {
        let entries = files
            .iter()
            .map(|(path, text)| SnapshotEntry::File {
                path: (*path).to_owned(),
                bytes: text.as_bytes().to_vec(),
            })
            .collect();
        let snapshot = Snapshot {
            revision: revision(sha),
            entries,
        };
        keel::ingest::ingest(&self.store, snapshot, &Limits::default(), clock::now()).unwrap()
    }

    fn state(&self, sha: &str) -> Option<RevisionState> {
        self.reader.revision(sha).unwrap().map(|r| r.state)
    }

    fn latest(&self) -> keel::model::stored::RevisionRecord {
        self.reader.revisions(1).unwrap().remove(0)
    }

    fn row(&self, name: &str) -> Option<keel::model::stored::StoredDeployment> {
        self.reader.deployment(&id(name)).unwrap()
    }

    async fn until(&self, controller: &mut Controller, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + StdDuration::from_secs(20);
        loop {
            controller.pass().await.unwrap();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; revisions: {:?}",
                self.reader
                    .revisions(10)
                    .unwrap()
                    .iter()
                    .map(|r| (r.id.clone(), r.state, r.restores.clone()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }

    /// Pushes `files` as commit "good" and runs passes until it succeeded.
    async fn good(&self, controller: &mut Controller, files: &[(&str, &str)]) {
        self.push("good", files);
        self.until(controller, "the good revision to succeed", |r| {
            r.state("good") == Some(RevisionState::Succeeded)
        })
        .await;
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.reader
            .outbox()
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect()
    }
}

/// A worker counts as stable after 300 ms: `boom`, dying 20 ms after each start, never does.
fn config() -> Config {
    let mut config = support::fast_controller(Duration::from_millis(50));
    config.policy.stable_after = Duration::from_millis(300);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_revision_restores_the_last_good_one_and_its_state_is_quarantined() {
    let rig = rig();
    let mut controller = rig.controller(config());
    let (web1, web2) = (web("1"), web("2"));
    rig.good(&mut controller, &[("web.yaml", &web1)]).await;
    let good = rig.row("web").unwrap();

    // A bad commit: web changes, boom is new and crash-loops.
    rig.push("bad", &[("web.yaml", &web2), ("boom.yaml", &boom())]);
    rig.until(&mut controller, "the bad revision to be rolled back", |r| {
        r.state("bad") == Some(RevisionState::RolledBack)
    })
    .await;
    let bad = rig.reader.revision("bad").unwrap().unwrap();
    assert_eq!(bad.rolled_back_to.as_deref(), Some("good"));
    let restore = rig.latest();
    assert_eq!(
        (restore.id.as_str(), restore.restores.as_deref()),
        ("good", Some("bad"))
    );
    rig.until(&mut controller, "the restore to succeed", |r| {
        r.latest().state == RevisionState::Succeeded && r.row("boom").is_none()
    })
    .await;
    let web_row = rig.row("web").unwrap();
    assert_eq!(
        web_row.spec_hash, good.spec_hash,
        "web runs the good spec again"
    );
    assert!(
        web_row.generation > good.generation + 1,
        "restored as a new generation"
    );
    assert_eq!(web_row.status, DeploymentStatus::Running);
    assert!(
        rig.fake
            .instance_names()
            .iter()
            .all(|n| !n.contains("-boom-")),
        "what the bad revision created is gone: {:?}",
        rig.fake.instance_names()
    );
    let kinds = rig.kinds();
    assert!(
        kinds.contains(&NotificationKind::RevisionRolledBack),
        "{kinds:?}"
    );
    let told = rig.reader.events(&id("web"), 100).unwrap();
    assert!(
        told.iter()
            .any(|e| e.kind == keel::model::event::EventKind::RolledBack
                && e.message.contains("revision bad failed at run time")
                && e.message.contains("returning to revision good")),
        "an event on each deployment the bad revision changed: {told:?}"
    );

    // The same manifests under another commit: not applied, recorded at once.
    let ingested = rig.push("bad-again", &[("boom.yaml", &boom()), ("web.yaml", &web2)]);
    assert_eq!(
        ingested,
        keel::ingest::Ingested::Quarantined {
            identical_to: "bad".into()
        }
    );
    assert_eq!(rig.state("bad-again"), Some(RevisionState::Quarantined));
    assert!(rig.row("boom").is_none(), "nothing of it applied");
    assert!(rig.kinds().contains(&NotificationKind::RevisionQuarantined));
    // Nor when it arrives again (an agent restart): recorded once.
    rig.push("bad-again", &[("boom.yaml", &boom()), ("web.yaml", &web2)]);
    let quarantined = rig
        .reader
        .revisions(20)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == RevisionState::Quarantined)
        .count();
    assert_eq!(quarantined, 1);
    assert_eq!(
        rig.reader.rollback_counts().unwrap(),
        (1, 1, 1),
        "one rollback, one refused twin, one quarantined state"
    );

    // A fixing commit is applied normally.
    let web3 = web("3");
    rig.push("fix", &[("web.yaml", &web3)]);
    rig.until(&mut controller, "the fix to succeed", |r| {
        r.state("fix") == Some(RevisionState::Succeeded)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollback_stops_without_ping_pong() {
    let rig = rig();
    let mut controller = rig.controller(config());
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    // The world changes: from now on every web instance dies too, the good one's included.
    rig.fake.behave(
        &id("web"),
        Behaviour {
            exit_after: Some((Duration::from_millis(20), 1)),
            ..Behaviour::default()
        },
    );
    rig.push("bad", &[("web.yaml", &web("2")), ("boom.yaml", &boom())]);
    rig.until(&mut controller, "the bad revision to be rolled back", |r| {
        r.state("bad") == Some(RevisionState::RolledBack)
    })
    .await;
    rig.until(&mut controller, "the restore to fail", |r| {
        r.latest().restores.is_some() && r.latest().state == RevisionState::Failed
    })
    .await;
    for _ in 0..10 {
        controller.pass().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let revisions = rig.reader.revisions(20).unwrap();
    assert_eq!(
        revisions.len(),
        3,
        "good, bad, the failed restore — and nothing after: {revisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_off_keeps_the_failure_in_place() {
    let rig = rig();
    let mut config = config();
    config.policy.rollback = keel::reconcile::rollback::Mode::Off;
    let mut controller = rig.controller(config);
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    rig.push("bad", &[("web.yaml", &web("1")), ("boom.yaml", &boom())]);
    rig.until(&mut controller, "the bad revision to fail", |r| {
        r.state("bad") == Some(RevisionState::Failed)
    })
    .await;
    assert_eq!(rig.latest().id, "bad", "nothing restored");
    assert!(rig.row("boom").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_opts_out_keeps_its_revisions_failure() {
    let rig = rig();
    let mut controller = rig.controller(config());
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    let opted_out = deployment("demo", "boom", "    rollback: false\n");
    rig.push("bad", &[("web.yaml", &web("1")), ("boom.yaml", &opted_out)]);
    rig.until(&mut controller, "the bad revision to fail", |r| {
        r.state("bad") == Some(RevisionState::Failed)
    })
    .await;
    assert_eq!(rig.latest().id, "bad", "nothing restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_rolled_back_revision_are_not_rerun() {
    let rig = rig();
    let mut controller = rig.controller(config());
    let exits = |code| Behaviour {
        exit_after: Some((Duration::from_millis(10), code)),
        ..Behaviour::default()
    };
    rig.fake.behave(&id("migrate"), exits(0));
    let job = |version: &str| {
        deployment(
            "demo",
            "migrate",
            &format!("    kind: job\n    environment:\n      VERSION: \"{version}\"\n"),
        )
    };
    rig.good(
        &mut controller,
        &[("web.yaml", &web("1")), ("job.yaml", &job("1"))],
    )
    .await;
    // The next migration fails; the revision is rolled back, but no migration runs again.
    rig.fake.behave(&id("migrate"), exits(1));
    let job_creates = |r: &Rig| {
        r.fake
            .calls()
            .iter()
            .filter(
                |c| matches!(c, keel::runtime::fake::Call::Create(n) if n.contains("-migrate-")),
            )
            .count()
    };
    rig.push("bad", &[("web.yaml", &web("2")), ("job.yaml", &job("2"))]);
    rig.until(&mut controller, "the restore to succeed", |r| {
        r.state("bad") == Some(RevisionState::RolledBack)
            && r.latest().restores.is_some()
            && r.latest().state == RevisionState::Succeeded
    })
    .await;
    let migrate = rig.row("migrate").unwrap();
    assert_eq!(
        migrate.status,
        DeploymentStatus::Failed,
        "the failed run stays as it ended"
    );
    assert_eq!(
        migrate.revision, "bad",
        "not restored to the good job: it would run again"
    );
    let runs = job_creates(&rig);
    for _ in 0..5 {
        controller.pass().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        job_creates(&rig),
        runs,
        "no job instance created by the rollback"
    );
    let rolled_back = rig
        .reader
        .outbox()
        .unwrap()
        .into_iter()
        .find(|r| r.kind == NotificationKind::RevisionRolledBack)
        .unwrap();
    assert_eq!(
        rolled_back.payload["not_undone"],
        serde_json::json!(["demo/migrate"])
    );
}

/// The notifications a rollback and a quarantine write match their webhook schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_notifications_match_their_webhook_schemas() {
    let rig = rig();
    let mut controller = rig.controller(config());
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    rig.push("bad", &[("web.yaml", &web("1")), ("boom.yaml", &boom())]);
    rig.until(&mut controller, "the bad revision to be rolled back", |r| {
        r.state("bad") == Some(RevisionState::RolledBack)
    })
    .await;
    rig.push("again", &[("boom.yaml", &boom()), ("web.yaml", &web("1"))]);
    let seen = support::schema::outbox_matches_webhook_schemas(&rig.reader);
    assert!(seen.contains("revision.rolled_back"), "{seen:?}");
    assert!(seen.contains("revision.quarantined"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_retry_applies_the_quarantined_state_again_and_only_that() {
    let rig = rig();
    let mut controller = rig.controller(config());
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    rig.push("bad", &[("web.yaml", &web("2")), ("boom.yaml", &boom())]);
    rig.until(&mut controller, "the bad revision to be rolled back", |r| {
        r.state("bad") == Some(RevisionState::RolledBack)
    })
    .await;
    rig.push("twin", &[("web.yaml", &web("2")), ("boom.yaml", &boom())]);
    let retry = |sha: &str| {
        rig.store
            .retry_revision(sha.into(), "the admin token 0a1b2c3d".into(), clock::now())
            .unwrap()
    };
    assert_eq!(retry("nope"), keel::store::Retried::Unknown);
    assert!(
        matches!(retry("good"), keel::store::Retried::NotQuarantined(_)),
        "the good revision holds no quarantine"
    );
    // Through the twin that was quarantined: the rolled-back state, applied again.
    let keel::store::Retried::Applied(revision) = retry("twin") else {
        panic!("the twin's retry applies the quarantined state");
    };
    assert_eq!(revision.id, "twin");
    assert_eq!(
        revision.message.as_deref(),
        Some("retried by the admin token 0a1b2c3d")
    );
    assert!(
        rig.row("boom").is_some_and(|d| d.in_revision),
        "boom is back"
    );
    assert_eq!(
        rig.reader.rollback_counts().unwrap().2,
        0,
        "no state quarantined now"
    );
    assert_eq!(
        retry("bad"),
        keel::store::Retried::Outdated("twin".into()),
        "a revision was applied since: retrying the older one would not last"
    );
}

/// A revision is rolled back for what it changed, not for a deployment it left alone that
/// fails on its own: that revision is `failed`, and what it brought stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_the_revision_did_not_cause_does_not_roll_it_back() {
    let rig = rig();
    let mut controller = rig.controller(config());
    rig.good(&mut controller, &[("web.yaml", &web("1"))]).await;
    // web starts dying by itself.
    rig.fake.behave(
        &id("web"),
        Behaviour {
            exit_after: Some((Duration::from_millis(20), 1)),
            ..Behaviour::default()
        },
    );
    let running = rig.reader.instances(&id("web")).unwrap()[0]
        .runtime_id
        .clone();
    rig.fake.crash(&running, 1);
    rig.until(&mut controller, "web to crash-loop", |r| {
        r.row("web")
            .is_some_and(|d| d.status == DeploymentStatus::CrashLoopBackOff)
    })
    .await;
    let api = deployment("demo", "api", "");
    rig.push("next", &[("web.yaml", &web("1")), ("api.yaml", &api)]);
    rig.until(&mut controller, "the next revision to settle", |r| {
        r.state("next").is_some_and(|s| !s.is_open())
    })
    .await;
    assert_eq!(rig.state("next"), Some(RevisionState::Failed));
    assert_eq!(rig.latest().id, "next", "nothing restored");
    assert!(
        rig.row("api").is_some_and(|d| d.in_revision),
        "what it brought stays"
    );
}
