//! keel's in-process benchmarks: the loader, the diff, the planner and a reconcile pass with
//! nothing to do, at 100 / 1k / 10k generated deployments. Every figure is printed beside a
//! baseline measured in the same run on the same machine — parsing the same bytes as bare YAML
//! for the loader, the 1k case for the scaling ones — so the ratios mean something on a
//! shared 2-core machine where absolute times drift. (A saved-baseline tool such as criterion
//! compares against an earlier run instead, which is what drifts.)
//!
//! Run: `cargo bench --bench keel` (add `-- quick` for fewer samples, and `loader`, `plan` or
//! `pass` to run only those sections). Results and how to
//! read them: `docs/benchmarks.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::manifest::{self, Limits};
use keel::model::desired::DesiredState;
use keel::model::manifest::RuntimeKind;
use keel::model::observed::{ObservedInstance, Phase, RuntimeObservation};
use keel::model::snapshot::SnapshotEntry;
use keel::model::stored::{NewRevision, StoredState};
use keel::model::time::Timestamp;
use keel::reconcile::controller::{Config, Controller};
use keel::reconcile::decide::{decide, DecideInput};
use keel::reconcile::plan::{Observed, Policy};
use keel::runtime::fake::{Behaviour, FakeRuntime};
use keel::runtime::Runtime;
use keel::store::Store;

/// Deployments per generated file (a repository of many small files, as operators write them).
const PER_FILE: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let quick = args.iter().any(|a| a == "quick");
    let samples = if quick { 5 } else { 15 };
    // Any other argument picks sections by name: loader, plan, pass.
    let picked: Vec<&String> = args.iter().filter(|a| *a != "quick").collect();
    let run = |name: &str| picked.is_empty() || picked.iter().any(|p| *p == name);
    println!("keel benchmarks ({samples} samples each; median, then the ratio to the baseline)\n");
    if run("loader") {
        loader(samples);
    }
    if run("plan") {
        diff_and_plan(samples);
    }
    if !run("pass") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(quiet_pass(samples));
}

/// One generated repository: `n` deployments in files of `PER_FILE`, `changed` of them with a
/// different image, and with `checks` every tenth with a readiness check.
fn repository(n: usize, changed: usize, checks: bool) -> Vec<SnapshotEntry> {
    let mut files = Vec::new();
    for file in 0..n.div_ceil(PER_FILE) {
        let mut text = String::from("deployments:\n");
        for i in file * PER_FILE..((file + 1) * PER_FILE).min(n) {
            let image = if i < changed {
                "busybox:1.37"
            } else {
                "busybox:1.36"
            };
            text.push_str(&format!(
                "  app{i}:\n    name: app{i}\n    namespace: ns{}\n    image: {image}\n    replicas: 2\n    command: [sleep, \"3600\"]\n    environment:\n      MODE: production\n      INDEX: \"{i}\"\n    resources:\n      limits: {{cpu: \"0.5\", memory: 128Mi}}\n",
                i % 20
            ));
            if checks && i % 10 == 0 {
                text.push_str("    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", readiness: true, min_healthy_time: 5s}\n");
            }
        }
        files.push(SnapshotEntry::File {
            path: format!("apps/{file:04}.yaml"),
            bytes: text.into_bytes(),
        });
    }
    files
}

fn load(entries: &[SnapshotEntry]) -> DesiredState {
    match manifest::load(entries, &Limits::default()) {
        Ok(loaded) => loaded.state,
        Err(diagnostics) => panic!("generated manifests are invalid: {diagnostics:#?}"),
    }
}

/// The median of `samples` runs of `f` (after one warm-up run).
fn median(samples: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn row(what: &str, time: Duration, baseline: Duration, note: &str) {
    let ratio = time.as_secs_f64() / baseline.as_secs_f64().max(1e-9);
    println!(
        "  {what:<46} {:>10.3} ms   ×{ratio:<7.2} {note}",
        time.as_secs_f64() * 1e3
    );
}

fn loader(samples: usize) {
    println!(
        "loader: bytes → validated desired state (baseline: the same bytes parsed as bare YAML)"
    );
    for n in [100, 1_000, 10_000] {
        let entries = repository(n, 0, true);
        let bytes: usize = entries
            .iter()
            .map(|e| match e {
                SnapshotEntry::File { bytes, .. } => bytes.len(),
                _ => 0,
            })
            .sum();
        let yaml = median(samples, || {
            for entry in &entries {
                if let SnapshotEntry::File { bytes, .. } = entry {
                    let text = std::str::from_utf8(bytes).unwrap_or_default();
                    black_box(yaml_rust2::YamlLoader::load_from_str(text).ok());
                }
            }
        });
        let keel = median(samples, || {
            black_box(load(&entries));
        });
        let mb_s = bytes as f64 / 1e6 / keel.as_secs_f64();
        let per_s = n as f64 / keel.as_secs_f64();
        row(
            &format!("load {n} deployments ({:.1} MB)", bytes as f64 / 1e6),
            keel,
            yaml,
            &format!("{mb_s:.1} MB/s, {per_s:.0} deployments/s"),
        );
    }
    println!();
}

/// The store as it holds `desired` after it was applied.
fn stored(desired: &DesiredState) -> (tempfile::TempDir, Arc<Store>, StoredState) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(Store::open(&dir.path().join("keel.db")).expect("a store"));
    keel::ingest::apply_revision(&store, revision("r1"), desired.clone(), keel::clock::now())
        .expect("applied");
    let state = store
        .reader()
        .and_then(|r| r.stored_state())
        .expect("read back");
    (dir, store, state)
}

fn revision(id: &str) -> NewRevision {
    NewRevision {
        source: "bench".into(),
        id: id.into(),
        message: None,
        author: None,
    }
}

/// Every stored deployment running its replicas, ready.
fn running(state: &StoredState) -> Observed {
    let mut instances = Vec::new();
    for d in state.deployments.values() {
        for ordinal in 0..d.spec.replicas {
            instances.push(ObservedInstance {
                runtime: RuntimeKind::Docker,
                runtime_id: format!("{}-{ordinal}", d.uuid),
                deployment: d.id.clone(),
                generation: d.generation,
                ordinal,
                run: None,
                template: d.template.clone(),
                phase: Phase::Running,
                ip: None,
                started_at: Some(Timestamp(0)),
                interrupted: false,
                last_output: None,
            });
        }
    }
    Observed {
        runtimes: BTreeMap::from([(RuntimeKind::Docker, RuntimeObservation::Listed(instances))]),
        checks: BTreeMap::new(),
    }
}

fn diff_and_plan(samples: usize) {
    println!("diff (reading the store as ingest does) and plan (baseline: the same operation at 1k deployments)");
    let mut base_diff = Duration::ZERO;
    let mut base_plan = Duration::ZERO;
    for n in [1_000, 10_000] {
        let desired = load(&repository(n, 0, false));
        let one_percent = load(&repository(n, n / 100, false));
        let (_dir, store, state) = stored(&desired);
        // What ingest does: the rows' summaries, and the stored spec of each updated one.
        let reader = store.reader().expect("a reader");
        let diff_against_store = |want: &keel::model::desired::DesiredState| {
            let summaries = reader.summaries().expect("summaries");
            black_box(
                keel::reconcile::diff::diff_with(want, &summaries, |id| reader.canonical(id))
                    .expect("diff"),
            );
        };
        let unchanged = median(samples, || diff_against_store(&desired));
        let changed = median(samples, || diff_against_store(&one_percent));
        if n == 1_000 {
            base_diff = unchanged;
        }
        row(&format!("diff {n}, unchanged"), unchanged, base_diff, "");
        row(&format!("diff {n}, 1 % changed"), changed, base_diff, "");

        let observed = running(&state);
        let memory = BTreeMap::new();
        let held = BTreeSet::new();
        let last = BTreeMap::new();
        let policy = Policy::default();
        let decide_on = |stored: &StoredState| {
            black_box(decide(&DecideInput {
                stored,
                memory: &memory,
                observed: &observed,
                policy: &policy,
                now: keel::clock::now(),
                held: &held,
                open_revision: None,
                last_good: None,
                last: &last,
            }));
        };
        let plan = median(samples, || decide_on(&state));
        if n == 1_000 {
            base_plan = plan;
        }
        row(
            &format!("plan {n}, all running"),
            plan,
            base_plan,
            "(target: < 1 s at 10k)",
        );
        // The same host after a revision that changed 1 %: those roll out.
        let (_dir2, store2, _) = stored(&desired);
        keel::ingest::apply_revision(
            &store2,
            revision("r2"),
            one_percent.clone(),
            keel::clock::now(),
        )
        .expect("applied");
        let moved = store2
            .reader()
            .and_then(|r| r.stored_state())
            .expect("read back");
        let rollout = median(samples, || decide_on(&moved));
        row(
            &format!("plan {n}, 1 % changed (rolling out)"),
            rollout,
            base_plan,
            "",
        );
    }
    println!();
}

/// A reconcile pass on a converged host with nothing to do, through the real store and the
/// in-memory runtime (baseline: the 1k pass).
async fn quiet_pass(samples: usize) {
    println!(
        "a reconcile pass with nothing changed (real SQLite, in-memory runtime; baseline: 1k)"
    );
    let mut base = Duration::ZERO;
    for n in [1_000, 10_000] {
        let desired = load(&repository(n, 0, false));
        let (_dir, store, _) = stored(&desired);
        let reader = store.reader().expect("a reader");
        let read_all = median(samples, || {
            black_box(reader.stored_state().expect("read"));
        });
        let read_memory = median(samples, || {
            black_box(reader.memories().expect("read"));
        });
        let fake = FakeRuntime::new(RuntimeKind::Docker);
        // No listener per instance: nothing probes them here, and 20k sockets are noise.
        for id in desired.deployments.keys() {
            let silent = Behaviour {
                reachable_after: None,
                ..Behaviour::default()
            };
            fake.behave(id, silent);
        }
        let fake: Arc<dyn Runtime> = Arc::new(fake);
        let mut controller =
            Controller::new(store, vec![fake], Config::default(), keel::clock::system())
                .expect("a controller");
        // Converge: create, start, settle.
        for _ in 0..50 {
            let summary = controller.pass().await.expect("a pass");
            if summary.actions == 0 && summary.persisted == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut times = Vec::new();
        for _ in 0..samples {
            let start = Instant::now();
            let summary = controller.pass().await.expect("a pass");
            times.push(start.elapsed());
            assert_eq!(summary.actions, 0, "the host had converged");
        }
        times.sort();
        let pass = times[times.len() / 2];
        if n == 1_000 {
            base = pass;
        }
        row(&format!("quiet pass {n}"), pass, base, "");
        row(
            &format!("  of which reading every deployment {n}"),
            read_all,
            base,
            "",
        );
        row(
            &format!("  of which reading every memory {n}"),
            read_memory,
            base,
            "",
        );
    }
    println!();
}
