//! Revisions that land while a reconcile pass waits for its runtime: whatever the interleaving,
//! a pass's outcome lands only on the generation it was decided on. Real SQLite, the in-memory
//! runtime wrapped so that a revision is applied in the middle of a pass's listing (the moment
//! a pass awaits the runtime between reading its rows and recording what it decided), and
//! random schedules of such revisions between ordinary passes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use keel::clock;
use keel::model::desired::InstanceSpec;
use keel::model::manifest::RuntimeKind;
use keel::model::observed::{ObservedInstance, Phase};
use keel::model::status::{DeploymentStatus, RevisionState};
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::FakeRuntime;
use keel::runtime::{
    lease, ExecOutput, LogOptions, LogStream, Runtime, RuntimeEvent, RuntimeFuture,
};
use keel::store::Store;
use proptest::prelude::*;
use support::{deployment, desired, revision};

type Hook = Box<dyn FnOnce() + Send>;

/// The fake runtime, with a hook run once at the end of the next listing.
#[derive(Clone)]
struct Interleaved {
    fake: FakeRuntime,
    during_list: Arc<Mutex<Option<Hook>>>,
}

impl Runtime for Interleaved {
    fn kind(&self) -> RuntimeKind {
        self.fake.kind()
    }
    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>> {
        Box::pin(async move {
            let listed = self.fake.list().await;
            let hook = self.during_list.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            listed
        })
    }
    fn create<'a>(&'a self, spec: &'a InstanceSpec) -> RuntimeFuture<'a, String> {
        self.fake.create(spec)
    }
    fn start<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        self.fake.start(runtime_id)
    }
    fn stop<'a>(&'a self, runtime_id: &'a str, grace: Duration) -> RuntimeFuture<'a, ()> {
        self.fake.stop(runtime_id, grace)
    }
    fn remove<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        self.fake.remove(runtime_id)
    }
    fn exec<'a>(
        &'a self,
        runtime_id: &'a str,
        command: &'a [String],
        timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput> {
        self.fake.exec(runtime_id, command, timeout)
    }
    fn logs(&self, runtime_id: &str, options: LogOptions) -> LogStream {
        self.fake.logs(runtime_id, options)
    }
    fn events(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        self.fake.events()
    }
    fn claim<'a>(&'a self, holder: &'a lease::Holder) -> RuntimeFuture<'a, ()> {
        self.fake.claim(holder)
    }
    fn release<'a>(&'a self, holder: &'a lease::Holder) -> RuntimeFuture<'a, ()> {
        self.fake.release(holder)
    }
}

/// Passes run only when the test says: the resync never comes due.
fn config() -> Config {
    support::fast_controller(Duration::from_secs(300))
}

/// What a revision does to the two workers `a` and `b`.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// A new spec for `a` (a new generation).
    Edit,
    /// `a` scaled to 1 or 2 replicas.
    Scale,
    /// `b` removed from, or declared again in, the repository.
    Toggle,
}

/// The repository as the changes so far left it.
#[derive(Debug, Clone)]
struct Repo {
    version: u32,
    replicas: u32,
    with_b: bool,
    revisions: u32,
}

impl Repo {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Edit => self.version += 1,
            Change::Scale => self.replicas = 3 - self.replicas,
            Change::Toggle => self.with_b = !self.with_b,
        }
        self.revisions += 1;
    }

    fn files(&self) -> Vec<(String, String)> {
        let a = format!(
            "    replicas: {}\n    environment:\n      VERSION: \"{}\"\n",
            self.replicas, self.version
        );
        let mut files = vec![("a.yaml".to_owned(), deployment("demo", "a", &a))];
        if self.with_b {
            files.push(("b.yaml".to_owned(), deployment("demo", "b", "")));
        }
        files
    }

    fn store(&self, store: &Store) {
        let files = self.files();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        keel::ingest::apply_revision(
            store,
            revision(&format!("r{}", self.revisions)),
            desired(&refs),
            clock::now(),
        )
        .unwrap();
    }
}

/// The promise, checked after every pass: a deployment reads `running` only while instances of
/// its current spec run, and the open revision reads `succeeded` only when each of its
/// deployments does.
async fn check(store: &Store, fake: &FakeRuntime, step: usize) {
    let reader = store.reader().unwrap();
    let listed = fake.list().await.unwrap();
    let state = reader.stored_state().unwrap();
    for d in state.deployments.values() {
        if d.status != DeploymentStatus::Running || !d.in_revision {
            continue;
        }
        let current = listed
            .iter()
            // Current: of this spec (a change of replicas alone keeps the instances).
            .filter(|i| i.deployment == d.id && i.template == d.template)
            .filter(|i| i.phase == Phase::Running)
            .count();
        assert!(
            current >= d.spec.replicas as usize,
            "step {step}: {} reads running at generation {} with {current} of its instances: {listed:#?}",
            d.id,
            d.generation
        );
        assert_eq!(d.restart_count, 0, "step {step}: {}", d.id);
    }
    let latest = &reader.revisions(1).unwrap()[0];
    if latest.state == RevisionState::Succeeded {
        for d in state.deployments.values().filter(|d| d.in_revision) {
            assert_eq!(
                d.status,
                DeploymentStatus::Running,
                "step {step}: revision {} succeeded before {}",
                latest.id,
                d.id
            );
        }
    }
}

/// A store with the first revision (workers `a` and `b`), the wrapped runtime and a controller.
struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    fake: FakeRuntime,
    runtime: Interleaved,
    repo: Repo,
    controller: Controller,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("keel.db")).unwrap());
    let fake = FakeRuntime::new(RuntimeKind::Docker);
    let runtime = Interleaved {
        fake: fake.clone(),
        during_list: Arc::default(),
    };
    let repo = Repo {
        version: 0,
        replicas: 1,
        with_b: true,
        revisions: 0,
    };
    repo.store(&store);
    let boxed: Arc<dyn Runtime> = Arc::new(runtime.clone());
    let controller =
        Controller::new(store.clone(), vec![boxed], config(), clock::system()).unwrap();
    Setup {
        _dir: dir,
        store,
        fake,
        runtime,
        repo,
        controller,
    }
}

/// Runs `schedule`: each step is one pass, with the change (if any) stored while that pass
/// lists the runtime. Ends with quiet passes until everything converges.
async fn run(schedule: Vec<Option<Change>>) {
    let Setup {
        _dir,
        store,
        fake,
        runtime,
        mut repo,
        mut controller,
    } = setup();
    for (step, change) in schedule.into_iter().enumerate() {
        if let Some(change) = change {
            repo.apply(change);
            let (store, repo) = (store.clone(), repo.clone());
            *runtime.during_list.lock().unwrap() = Some(Box::new(move || repo.store(&store)));
        }
        controller.pass().await.unwrap();
        check(&store, &fake, step).await;
        // Lets the executor carry the pass's actions out.
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    for step in 0..400 {
        controller.pass().await.unwrap();
        check(&store, &fake, 1000 + step).await;
        let reader = store.reader().unwrap();
        if reader.revisions(1).unwrap()[0].state == RevisionState::Succeeded {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    panic!("the last revision never succeeded");
}

fn change() -> impl Strategy<Value = Option<Change>> {
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(Change::Edit)),
        1 => Just(Some(Change::Scale)),
        1 => Just(Some(Change::Toggle)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_outcome_of_one_generation_lands_on_the_next(schedule in prop::collection::vec(change(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(schedule));
    }
}

/// The case the fault suite found, spelled out: a pass that sees generation 1 come up decides
/// `running`; generation 2 is stored while it lists; `running` must not be written onto 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_decided_running_does_not_write_it_onto_a_revision_stored_meanwhile() {
    run(vec![
        None,
        None,
        Some(Change::Edit),
        None,
        Some(Change::Edit),
    ])
    .await;
    let schedule: Vec<Option<Change>> = (0..6).flat_map(|_| [None, Some(Change::Edit)]).collect();
    run(schedule).await;
}

/// A pass that decides to tear a deployment down while a revision declares it again: its
/// decision is stale, so it neither writes nor acts — the instance the new revision keeps is
/// not stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_decision_does_not_act() {
    let Setup {
        _dir,
        store,
        fake,
        runtime,
        mut repo,
        mut controller,
    } = setup();
    let reader = store.reader().unwrap();
    for _ in 0..100 {
        controller.pass().await.unwrap();
        if reader.revisions(1).unwrap()[0].state == RevisionState::Succeeded {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let b_instances = || {
        fake.instance_names()
            .into_iter()
            .filter(|n| n.contains("-b-"))
            .count()
    };
    assert_eq!(b_instances(), 1);
    // b leaves the repository; while the next pass lists, it comes back unchanged.
    repo.apply(Change::Toggle);
    repo.store(&store);
    repo.apply(Change::Toggle);
    let (again, back) = (store.clone(), repo.clone());
    *runtime.during_list.lock().unwrap() = Some(Box::new(move || back.store(&again)));
    let calls_before = fake.calls().len();
    controller.pass().await.unwrap();
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    let stops: Vec<_> = fake.calls()[calls_before..]
        .iter()
        .filter(|c| {
            matches!(
                c,
                keel::runtime::fake::Call::Stop(_) | keel::runtime::fake::Call::Remove(_)
            )
        })
        .cloned()
        .collect();
    assert!(stops.is_empty(), "the stale tear-down acted: {stops:?}");
    assert_eq!(b_instances(), 1, "b's instance is still there");
    let b = &reader.stored_state().unwrap().deployments
        [&keel::model::desired::DeploymentId::new("demo", "b")];
    assert!(b.in_revision);
    assert_ne!(
        b.status,
        DeploymentStatus::Deleted,
        "the stale `deleted` was not written"
    );
}
