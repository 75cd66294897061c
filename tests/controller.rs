//! The controller end to end on an in-memory runtime and a real SQLite store: a revision
//! converges and succeeds, a crash-looping worker reaches `crash_loop_back_off`, a controller
//! restarted mid-rollout carries on without duplicates, and the outbox tells every status
//! transition exactly once, in order.

mod support;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::clock;
use keel::model::desired::DeploymentId;
use keel::model::event::{EventKind, NotificationKind};
use keel::model::manifest::RuntimeKind;
use keel::model::status::{DeploymentStatus, RevisionState};
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::{Behaviour, Call, FakeRuntime};
use keel::runtime::Runtime;
use keel::store::{Store, StoreReader};
use support::{deployment, desired, revision};

fn config() -> Config {
    support::fast_controller(Duration::from_millis(50))
}

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
    Rig {
        _dir: dir,
        store,
        reader,
        fake: FakeRuntime::new(RuntimeKind::Docker),
    }
}

impl Rig {
    fn controller(&self) -> Controller {
        let runtime: Arc<dyn Runtime> = Arc::new(self.fake.clone());
        Controller::new(self.store.clone(), vec![runtime], config(), clock::system()).unwrap()
    }

    fn status(&self, name: &str) -> DeploymentStatus {
        self.reader.stored_state().unwrap().deployments[&id(name)].status
    }

    /// Runs passes until `done` holds (or panics after `secs`).
    async fn until(
        &self,
        controller: &mut Controller,
        secs: u64,
        what: &str,
        done: impl Fn(&Rig) -> bool,
    ) {
        let deadline = Instant::now() + StdDuration::from_secs(secs);
        loop {
            controller.pass().await.unwrap();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; statuses: {:?}",
                self.statuses()
            );
            tokio::time::sleep(StdDuration::from_millis(30)).await;
        }
    }

    fn statuses(&self) -> Vec<(String, DeploymentStatus, u32)> {
        self.reader
            .stored_state()
            .unwrap()
            .deployments
            .values()
            .map(|d| (d.id.to_string(), d.status, d.restart_count))
            .collect()
    }

    /// The (old, new) status pairs notified for deployment `name`, in order.
    fn transitions(&self, name: &str) -> Vec<(Option<String>, String)> {
        self.reader
            .outbox()
            .unwrap()
            .into_iter()
            .filter(|r| {
                r.kind == NotificationKind::DeploymentStatusChanged && r.payload["name"] == name
            })
            .map(|r| {
                (
                    r.payload["old_status"].as_str().map(str::to_owned),
                    r.payload["new_status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn id(name: &str) -> DeploymentId {
    DeploymentId::new("demo", name)
}

/// Every notified transition starts where the previous one ended, and none is a no-op.
fn assert_one_row_per_transition(transitions: &[(Option<String>, String)]) {
    assert_eq!(transitions[0].0, None, "{transitions:?}");
    for pair in transitions.windows(2) {
        assert_eq!(
            pair[0].1.as_str(),
            pair[1].0.as_deref().unwrap_or(""),
            "{transitions:?}"
        );
    }
    for (old, new) in transitions {
        assert_ne!(old.as_deref(), Some(new.as_str()), "{transitions:?}");
    }
}

const WEB_CHECKS: &str = "    replicas: 2\n    health_checks:\n      - type: http\n        url: http://localhost:8080/\n        interval: 50ms\n        timeout: 1s\n        readiness: true\n        min_healthy_time: 200ms\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_converges_to_running_and_the_revision_succeeds() {
    let rig = rig();
    rig.fake.behave(
        &id("migrate"),
        Behaviour {
            exit_after: Some((Duration::from_millis(100), 0)),
            ..Behaviour::default()
        },
    );
    let web = deployment("demo", "web", WEB_CHECKS);
    let job = deployment("demo", "migrate", "    kind: job\n");
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &web), ("job.yaml", &job)]),
        clock::now(),
    )
    .unwrap();
    let mut controller = rig.controller();
    rig.until(&mut controller, 20, "the revision to succeed", |r| {
        r.reader.revisions(1).unwrap()[0].state == RevisionState::Succeeded
    })
    .await;

    assert_eq!(rig.status("web"), DeploymentStatus::Running);
    assert_eq!(rig.status("migrate"), DeploymentStatus::Completed);
    let web_transitions = rig.transitions("web");
    assert_eq!(
        web_transitions,
        [
            (None, "pending".into()),
            (Some("pending".into()), "creating".into()),
            (Some("creating".into()), "running".into())
        ]
    );
    assert_one_row_per_transition(&rig.transitions("migrate"));
    let instances = rig.reader.instances(&id("web")).unwrap();
    assert_eq!(instances.len(), 2);
    assert!(
        instances
            .iter()
            .all(|i| i.state == keel::model::status::InstanceState::Ready),
        "{instances:?}"
    );
    let revision_notes: Vec<_> = rig
        .reader
        .outbox()
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == NotificationKind::RevisionStatusChanged)
        .map(|r| r.payload["new_state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(revision_notes, ["applying", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_worker_reaches_crash_loop_back_off() {
    let rig = rig();
    rig.fake.behave(
        &id("flaky"),
        // Never ready, so the revision cannot succeed before the worker gives up.
        Behaviour {
            exit_after: Some((Duration::from_millis(30), 1)),
            reachable_after: None,
            ..Behaviour::default()
        },
    );
    let flaky = deployment(
        "demo",
        "flaky",
        "    health_checks:\n      - {type: tcp, port: 80, interval: 50ms, readiness: true}\n",
    );
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("a.yaml", &flaky)]),
        clock::now(),
    )
    .unwrap();
    let mut controller = rig.controller();
    rig.until(&mut controller, 20, "crash_loop_back_off", |r| {
        r.status("flaky") == DeploymentStatus::CrashLoopBackOff
    })
    .await;

    let row = rig.reader.stored_state().unwrap().deployments[&id("flaky")].clone();
    assert_eq!(row.restart_count, 5);
    let died: Vec<_> = rig
        .reader
        .events(&id("flaky"), 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::InstanceDied)
        .collect();
    assert_eq!(died.len(), 5, "{died:?}");
    assert!(died
        .iter()
        .all(|e| e.message.contains("exited with code 1")));
    let transitions = rig.transitions("flaky");
    assert_one_row_per_transition(&transitions);
    assert_eq!(transitions.last().unwrap().1, "crash_loop_back_off");
    rig.until(&mut controller, 10, "the revision to fail", |r| {
        r.reader.revisions(1).unwrap()[0].state == RevisionState::Failed
    })
    .await;

    // Terminal: nothing is created any more.
    let creates = rig
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count();
    for _ in 0..5 {
        controller.pass().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        rig.fake
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Create(_)))
            .count(),
        creates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_mid_rollout_carries_on_without_duplicates() {
    let rig = rig();
    let web = deployment("demo", "web", WEB_CHECKS);
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &web)]),
        clock::now(),
    )
    .unwrap();
    let mut controller = rig.controller();
    rig.until(&mut controller, 20, "web to run", |r| {
        r.status("web") == DeploymentStatus::Running
    })
    .await;

    // A death before the rollout, so that there is a counter to keep.
    let first = rig.reader.instances(&id("web")).unwrap()[0]
        .runtime_id
        .clone();
    rig.fake.crash(&first, 9);
    rig.until(&mut controller, 20, "the death to be counted", |r| {
        r.reader.stored_state().unwrap().deployments[&id("web")].restart_count == 1
    })
    .await;
    rig.until(&mut controller, 20, "web to run again", |r| {
        r.status("web") == DeploymentStatus::Running && r.fake.instance_names().len() == 2
    })
    .await;

    let v2 = web.replace("busybox:1.36", "busybox:1.37");
    keel::ingest::apply_revision(
        &rig.store,
        revision("r2"),
        desired(&[("web.yaml", &v2)]),
        clock::now(),
    )
    .unwrap();
    rig.until(&mut controller, 20, "the rollout to start", |r| {
        r.fake
            .instance_names()
            .iter()
            .any(|n| n.contains("-web-2-"))
    })
    .await;
    drop(controller);

    let mut controller = rig.controller();
    rig.until(&mut controller, 30, "the rollout to finish", |r| {
        r.status("web") == DeploymentStatus::Running
            && r.fake
                .instance_names()
                .iter()
                .all(|n| n.contains("-web-2-"))
    })
    .await;
    let mut names = rig.fake.instance_names();
    names.sort();
    assert_eq!(names, ["keel-demo-web-2-0", "keel-demo-web-2-1"]);
    let creates_of_gen2: Vec<_> = rig
        .fake
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Create(name) if name.contains("-web-2-")))
        .collect();
    assert_eq!(
        creates_of_gen2.len(),
        2,
        "duplicate creates: {creates_of_gen2:?}"
    );
    let row = rig.reader.stored_state().unwrap().deployments[&id("web")].clone();
    assert_eq!(
        (row.generation, row.restart_count),
        (2, 0),
        "a new spec resets the counter"
    );
    assert_one_row_per_transition(&rig.transitions("web"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_runtime_holds_and_recovers() {
    let rig = rig();
    let web = deployment("demo", "web", "");
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &web)]),
        clock::now(),
    )
    .unwrap();
    rig.fake.set_unavailable(Some("daemon not answering"));
    let mut controller = rig.controller();
    for _ in 0..3 {
        controller.pass().await.unwrap();
    }
    assert!(!rig
        .fake
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Create(_) | Call::Remove(_))));
    assert_eq!(rig.status("web"), DeploymentStatus::Pending);
    rig.fake.set_unavailable(None);
    rig.until(&mut controller, 20, "web to run", |r| {
        r.status("web") == DeploymentStatus::Running
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_create_is_retried_until_the_cause_clears() {
    let rig = rig();
    let errors = (0..2)
        .map(|_| keel::runtime::RuntimeError::ImagePull {
            image: "busybox:1.36".into(),
            message: "registry unreachable".into(),
        })
        .collect();
    rig.fake.behave(
        &id("web"),
        Behaviour {
            create_errors: errors,
            ..Behaviour::default()
        },
    );
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &deployment("demo", "web", ""))]),
        clock::now(),
    )
    .unwrap();
    let mut controller = rig.controller();
    rig.until(&mut controller, 20, "web to run", |r| {
        r.status("web") == DeploymentStatus::Running
    })
    .await;
    let transitions: Vec<String> = rig
        .transitions("web")
        .into_iter()
        .map(|(_, new)| new)
        .collect();
    assert!(
        transitions.contains(&"image_pull_back_off".to_owned()),
        "{transitions:?}"
    );
    assert_one_row_per_transition(&rig.transitions("web"));
    let row = rig.reader.stored_state().unwrap().deployments[&id("web")].clone();
    assert_eq!(row.restart_count, 1, "the failed re-attempt counts");
}

/// An instance keel owns in `runtime` for a deployment the store does not know.
async fn plant_orphan(runtime: &FakeRuntime, name: &str) -> String {
    let spec = keel::model::desired::InstanceSpec {
        deployment: id(name),
        generation: 1,
        ordinal: 0,
        run: None,
        template: "t".into(),
        spec: serde_json::from_value(
            serde_json::json!({"name": name, "namespace": "demo", "image": "busybox"}),
        )
        .unwrap(),
        mounted_configs: Default::default(),
    };
    let runtime_id = runtime.create(&spec).await.unwrap();
    runtime.start(&runtime_id).await.unwrap();
    runtime_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_is_removed_by_the_runtime_that_listed_it_and_no_other() {
    let rig = rig();
    let docker = rig.fake.clone();
    let vms = FakeRuntime::new(RuntimeKind::CloudHypervisor);
    let web = deployment("demo", "web", "");
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &web)]),
        clock::now(),
    )
    .unwrap();
    let orphan = plant_orphan(&vms, "ghost").await;
    let runtimes: Vec<Arc<dyn Runtime>> = vec![Arc::new(docker.clone()), Arc::new(vms.clone())];
    let mut controller =
        Controller::new(rig.store.clone(), runtimes, config(), clock::system()).unwrap();
    rig.until(&mut controller, 10, "the orphan removed", |_| {
        vms.instance_names().is_empty()
    })
    .await;
    rig.until(&mut controller, 10, "web running", |r| {
        r.status("web") == DeploymentStatus::Running
    })
    .await;
    assert!(
        vms.calls()
            .iter()
            .any(|c| matches!(c, Call::Remove(id) if *id == orphan)),
        "the second runtime removed its orphan"
    );
    let docker_removes: Vec<Call> = docker
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Stop(_) | Call::Remove(_)))
        .collect();
    assert_eq!(
        docker_removes,
        [],
        "the first runtime was asked to remove nothing"
    );
    assert_eq!(
        docker.instance_names().len(),
        1,
        "web runs on the first runtime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_outage_stops_instances_without_counting_crashes() {
    let rig = rig();
    let web = deployment("demo", "web", "    replicas: 3\n");
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &web)]),
        clock::now(),
    )
    .unwrap();
    let board = keel::reconcile::controller::RuntimeBoard::default();
    let mut controller = rig.controller().with_runtime_board(board.clone());
    rig.until(&mut controller, 10, "web running", |r| {
        r.status("web") == DeploymentStatus::Running
    })
    .await;
    // The runtime goes away (listing fails), stopping every instance; then it is back.
    rig.fake.set_unavailable(Some("daemon restarting"));
    rig.fake.outage();
    for _ in 0..5 {
        controller.pass().await.unwrap();
    }
    let down = board.read().unwrap()[&RuntimeKind::Docker].clone();
    assert!(!down.available);
    assert_eq!(
        down.reason.as_deref(),
        Some("the runtime is unavailable: daemon restarting")
    );
    rig.fake.set_unavailable(None);
    rig.until(&mut controller, 10, "web running again", |r| {
        r.status("web") == DeploymentStatus::Running
            && r.fake.instance_names().len() == 3
            && r.reader.instances(&id("web")).unwrap().len() == 3
    })
    .await;
    let row = rig.reader.stored_state().unwrap().deployments[&id("web")].clone();
    assert_eq!(row.restart_count, 0, "an outage is not a crash");
    let events: Vec<EventKind> = rig
        .reader
        .events(&id("web"), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(!events.contains(&EventKind::InstanceDied), "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|k| **k == EventKind::InstanceInterrupted)
            .count(),
        3
    );
    assert!(board.read().unwrap()[&RuntimeKind::Docker].available);
}

/// A clock that starts at the wall-clock time and moves with tokio's (paused, virtual) time.
fn virtual_clock() -> (keel::clock::Clock, tokio::time::Instant) {
    let start = tokio::time::Instant::now();
    let wall = clock::now();
    let clock: keel::clock::Clock = Arc::new(move || {
        let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
        keel::model::time::Timestamp(wall.0 + elapsed)
    });
    (clock, start)
}

fn creates(fake: &FakeRuntime) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count()
}

/// With a resync of an hour, only the backoff's due time can start the second attempt; the
/// clock is virtual, so "when" is exact and nothing waits in real time.
#[tokio::test(start_paused = true)]
async fn the_loop_wakes_when_a_backoff_ends_not_at_the_resync() {
    let rig = rig();
    rig.fake.behave(
        &id("web"),
        Behaviour {
            create_errors: [keel::runtime::RuntimeError::Network("no bridge".into())].into(),
            ..Behaviour::default()
        },
    );
    let (clock, start) = virtual_clock();
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &deployment("demo", "web", ""))]),
        clock(),
    )
    .unwrap();
    let mut config = config();
    config.resync = Duration::from_secs(3600);
    config.policy.backoff_base = Duration::from_secs(3);
    config.policy.backoff_max = Duration::from_secs(60);
    let metrics = Arc::new(keel::metrics::Metrics::default());
    let runtime: Arc<dyn Runtime> = Arc::new(rig.fake.clone());
    let controller = Controller::new(rig.store.clone(), vec![runtime], config, clock)
        .unwrap()
        .with_metrics(metrics.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(stopped));

    let step = StdDuration::from_millis(50);
    while creates(&rig.fake) < 2 {
        assert!(
            start.elapsed() < StdDuration::from_secs(3600),
            "no second attempt before the resync: {:?}",
            rig.fake.calls()
        );
        tokio::time::sleep(step).await;
    }
    let second = start.elapsed();
    assert!(
        second >= StdDuration::from_secs(3) && second <= StdDuration::from_secs(3) + 2 * step,
        "the second attempt came {second:?} after the start, not when the 3s backoff ended"
    );
    while rig.status("web") != DeploymentStatus::Running {
        assert!(
            start.elapsed() < StdDuration::from_secs(60),
            "{:?}",
            rig.statuses()
        );
        tokio::time::sleep(step).await;
    }
    let passes = metrics.pass_histogram().count;
    // Nothing else happens for a virtual day: a resting loop runs no pass but the resyncs.
    tokio::time::sleep(StdDuration::from_secs(24 * 3600)).await;
    let idle = metrics.pass_histogram().count - passes;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert!(passes <= 8, "{passes} passes to fail, back off and run");
    assert!(
        idle <= 25,
        "{idle} passes in a quiet day with an hourly resync"
    );
}

/// Green results of a check that is already green change no decision: counted, they start no
/// pass (the resync is an hour, so every pass here had a reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_results_that_flip_nothing_start_no_pass() {
    let rig = rig();
    keel::ingest::apply_revision(
        &rig.store,
        revision("r1"),
        desired(&[("web.yaml", &deployment("demo", "web", WEB_CHECKS))]),
        clock::now(),
    )
    .unwrap();
    let mut config = config();
    config.resync = Duration::from_secs(3600);
    let metrics = Arc::new(keel::metrics::Metrics::default());
    let runtime: Arc<dyn Runtime> = Arc::new(rig.fake.clone());
    let controller = Controller::new(rig.store.clone(), vec![runtime], config, clock::system())
        .unwrap()
        .with_metrics(metrics.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(stopped));
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while rig.status("web") != DeploymentStatus::Running {
        assert!(Instant::now() < deadline, "{:?}", rig.statuses());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let probes = || keel::metrics::Metrics::get(&metrics.probes_ok);
    let (passes, seen) = (metrics.pass_histogram().count, probes());
    while probes() < seen + 40 {
        assert!(Instant::now() < deadline, "probes stopped at {}", probes());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let extra = metrics.pass_histogram().count - passes;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        extra, 0,
        "{extra} passes for 40 green results of green checks"
    );
}

/// A deployment deleted from Git keeps its row while an instance is left, then the row is
/// purged — a pass never reads it again — while its events stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_deployments_row_is_purged_once_its_instances_are_gone() {
    let rig = rig();
    let (web, api) = (deployment("demo", "web", ""), deployment("demo", "api", ""));
    let both = [("web.yaml", web.as_str()), ("api.yaml", api.as_str())];
    keel::ingest::apply_revision(&rig.store, revision("r1"), desired(&both), clock::now()).unwrap();
    let mut controller = rig.controller();
    rig.until(&mut controller, 20, "both to run", |r| {
        r.status("web") == DeploymentStatus::Running && r.status("api") == DeploymentStatus::Running
    })
    .await;
    keel::ingest::apply_revision(
        &rig.store,
        revision("r2"),
        desired(&both[..1]),
        clock::now(),
    )
    .unwrap();
    let rows = |r: &Rig| r.reader.stored_state().unwrap().deployments.len();
    assert_eq!(rows(&rig), 2, "deleted, but its instance still runs");
    rig.until(&mut controller, 20, "api's row to be purged", |r| {
        rows(r) == 1
    })
    .await;
    assert!(
        rig.fake
            .instance_names()
            .iter()
            .all(|n| !n.contains("-api-")),
        "purged only once its instance is gone: {:?}",
        rig.fake.instance_names()
    );
    let kinds: Vec<EventKind> = rig
        .reader
        .events(&id("api"), 50)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::Created), "{kinds:?}");
    assert_eq!(
        rig.reader.revisions(1).unwrap()[0].state,
        RevisionState::Succeeded
    );
    assert_eq!(rig.transitions("api").last().unwrap().1, "deleted");
}

/// Passes until one reads nothing and persists nothing (the pass's own writes are read back
/// once by the next pass).
async fn until_quiet(controller: &mut Controller) {
    for _ in 0..200 {
        let summary = controller.pass().await.unwrap();
        if summary.rows_read == 0 && summary.persisted == 0 {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    panic!("the controller never came to rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_rereads_only_the_deployments_written_since_the_last_pass() {
    let rig = rig();
    let files: Vec<(String, String)> = (0..30)
        .map(|i| {
            let name = format!("w{i}");
            (format!("{name}.yaml"), deployment("demo", &name, ""))
        })
        .collect();
    let load = |files: &[(String, String)]| {
        let pairs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        desired(&pairs)
    };
    keel::ingest::apply_revision(&rig.store, revision("r1"), load(&files), clock::now()).unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(rig.fake.clone());
    let quiet = Config {
        resync: Duration::from_secs(3600),
        ..config()
    };
    let mut controller =
        Controller::new(rig.store.clone(), vec![runtime], quiet, clock::system()).unwrap();
    let first = controller.pass().await.unwrap();
    assert_eq!(first.rows_read, 30, "the first pass reads every deployment");
    until_quiet(&mut controller).await;
    assert!(rig
        .statuses()
        .iter()
        .all(|(_, s, _)| *s == DeploymentStatus::Running));

    let mut changed = files.clone();
    changed[7].1 = deployment("demo", "w7", "    environment:\n      V: \"2\"\n");
    keel::ingest::apply_revision(&rig.store, revision("r2"), load(&changed), clock::now()).unwrap();
    let next = controller.pass().await.unwrap();
    assert_eq!(
        next.rows_read, 1,
        "only the deployment the revision changed is read"
    );
    until_quiet(&mut controller).await;
    assert!(rig
        .statuses()
        .iter()
        .all(|(_, s, _)| *s == DeploymentStatus::Running));
}
