//! The SQLite store against real database files: migrations, refusing foreign files and newer
//! schemas, applying revisions (create, update, prune, no-op, invalid, superseded), and
//! atomicity when the writer is killed in the middle of a transaction.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use keel::model::desired::DeploymentId;
use keel::model::diagnostic::{Diagnostic, Severity};
use keel::model::event::{EventKind, NotificationKind};
use keel::model::memory::InstanceMemory;
use keel::model::plan::{DecidedOn, Outcome, PlannedEvent, StatusChange};
use keel::model::status::{DeploymentStatus, InstanceState, RevisionState};
use keel::model::stored::{ProbeResult, StoredInstance};
use keel::model::time::Timestamp;
use keel::store::{Store, StoreError, StoreReader, PROBE_RESULTS_RETAINED, SCHEMA_VERSION};
use support::{at, deployment, desired, revision};

fn web(extra: &str) -> String {
    deployment("demo", "web", extra)
}

fn id(name: &str) -> DeploymentId {
    DeploymentId::new("demo", name)
}

/// Records one reconcile pass of `demo/<name>` through the store's API: the deployment's
/// current memory and nothing else, as edited by `edit`.
fn record_pass(store: &Store, name: &str, now: Timestamp, edit: impl FnOnce(&mut Outcome)) {
    let reader = store.reader().unwrap();
    let memory = reader.memories().unwrap()[&id(name)].clone();
    let mut outcome = Outcome {
        decided_on: DecidedOn::of(&reader.deployment(&id(name)).unwrap().unwrap()),
        stable: true,
        memory,
        status_change: None,
        events: Vec::new(),
        runs: Vec::new(),
        health: None,
        ready: 0,
        desired: 1,
        waiting_on: None,
        instances: Vec::new(),
    };
    edit(&mut outcome);
    store
        .record_pass(vec![(id(name), outcome)], None, Vec::new(), Vec::new(), now)
        .unwrap();
}

/// A pass that counted the unexpected deaths `reasons`.
fn record_deaths(store: &Store, name: &str, reasons: &[&str], now: Timestamp) {
    record_pass(store, name, now, |outcome| {
        outcome.memory.restart_count += reasons.len() as u32;
        for reason in reasons {
            outcome.events.push(PlannedEvent {
                kind: EventKind::InstanceDied,
                message: (*reason).to_owned(),
                notify: None,
            });
        }
    });
}

fn user_version(path: &Path) -> u32 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn migrating_an_empty_file_then_reopening_keeps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    std::fs::write(&path, b"").unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    drop(Store::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let reader = StoreReader::open(&path).unwrap();
    assert!(reader.stored_state().unwrap().deployments.is_empty());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_keel_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path)
        .err()
        .expect("a newer schema must be refused");
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer keel"), "{err}");
    assert!(StoreReader::open_existing(&path).is_err());
    assert_eq!(user_version(&path), 99);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was modified"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_by_name_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let junk = "these are my notes, not a database\n".repeat(50);
    std::fs::write(&path, &junk).unwrap();
    let err = Store::open(&path).err().expect("junk must be refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(StoreReader::open_existing(&path).is_err());
    assert!(
        std::fs::read_to_string(&path).unwrap() == junk,
        "the file was modified"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "side files were created: {names:?}");
}

#[test]
fn a_missing_database_is_an_empty_state_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    assert!(StoreReader::open_existing(&path).unwrap().is_none());
    assert!(!path.exists());
}

fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.db")).unwrap();
    (dir, store)
}

#[test]
fn applying_a_revision_creates_pending_deployments_with_events_and_notifications() {
    let (_dir, store) = open_store();
    let state = desired(&[
        ("a.yaml", &web("    replicas: 2\n")),
        ("b.yaml", &deployment("demo", "api", "")),
    ]);
    let applied = keel::ingest::apply_revision(&store, revision("r1"), state, at(0)).unwrap();
    assert!(!applied.no_op);
    assert_eq!(applied.revision.state, RevisionState::Applying);
    let reader = store.reader().unwrap();
    let stored = reader.stored_state().unwrap();
    let row = &stored.deployments[&id("web")];
    assert_eq!(
        (row.generation, row.status, row.restart_count),
        (1, DeploymentStatus::Pending, 0)
    );
    assert_eq!(row.spec.replicas, 2);
    assert_eq!(row.revision, "r1");
    let events = reader.events(&id("web"), 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].revision.as_deref()),
        (EventKind::Created, Some("r1"))
    );
    let outbox = reader.outbox().unwrap();
    let kinds: Vec<_> = outbox.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            NotificationKind::RevisionStatusChanged,
            NotificationKind::DeploymentStatusChanged,
            NotificationKind::DeploymentStatusChanged
        ]
    );
    let web_note = outbox.iter().find(|r| r.payload["name"] == "web").unwrap();
    assert_eq!(web_note.payload["old_status"], serde_json::Value::Null);
    assert_eq!(web_note.payload["new_status"], "pending");
    assert_eq!(web_note.payload["revision"], "r1");
    assert!(outbox
        .iter()
        .all(|r| r.delivered_at.is_none() && r.target.is_none()));
}

#[test]
fn applying_the_same_revision_twice_changes_nothing_the_second_time() {
    let (_dir, store) = open_store();
    let files = [("a.yaml", web(""))];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    keel::ingest::apply_revision(&store, revision("r1"), desired(&files), at(0)).unwrap();
    let reader = store.reader().unwrap();
    let before = (
        reader.stored_state().unwrap(),
        reader.outbox().unwrap(),
        reader.revisions(10).unwrap(),
        reader.events(&id("web"), 10).unwrap(),
    );
    let again =
        keel::ingest::apply_revision(&store, revision("r1"), desired(&files), at(60)).unwrap();
    assert!(again.no_op);
    let after = (
        reader.stored_state().unwrap(),
        reader.outbox().unwrap(),
        reader.revisions(10).unwrap(),
        reader.events(&id("web"), 10).unwrap(),
    );
    assert_eq!(before, after);
}

#[test]
fn a_new_revision_with_the_same_spec_touches_no_deployment() {
    let (_dir, store) = open_store();
    let text = web("");
    keel::ingest::apply_revision(&store, revision("r1"), desired(&[("a.yaml", &text)]), at(0))
        .unwrap();
    let reader = store.reader().unwrap();
    let before = reader.stored_state().unwrap();
    let applied = keel::ingest::apply_revision(
        &store,
        revision("r2"),
        desired(&[("moved/b.yaml", &text)]),
        at(10),
    )
    .unwrap();
    assert!(!applied.no_op, "a new commit is still recorded");
    assert_eq!(reader.stored_state().unwrap(), before);
    assert_eq!(reader.events(&id("web"), 10).unwrap().len(), 1);
}

#[test]
fn an_update_bumps_generation_resets_restarts_and_leaves_a_terminal_status() {
    let (_dir, store) = open_store();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web(""))]),
        at(0),
    )
    .unwrap();
    record_deaths(&store, "web", &["exit code 1"; 5], at(1));
    record_pass(&store, "web", at(2), |outcome| {
        outcome.status_change = Some(StatusChange {
            from: outcome.memory.status,
            to: DeploymentStatus::CrashLoopBackOff,
            reason: "max_restarts",
            message: "died 5 times".into(),
        });
        outcome.memory.status = DeploymentStatus::CrashLoopBackOff;
    });
    let reader = store.reader().unwrap();
    assert_eq!(
        reader.stored_state().unwrap().deployments[&id("web")].restart_count,
        5
    );

    let applied = keel::ingest::apply_revision(
        &store,
        revision("r2"),
        desired(&[("a.yaml", &web("    replicas: 3\n"))]),
        at(10),
    )
    .unwrap();
    assert_eq!(applied.plan.counts().update, 1);
    let row = reader.stored_state().unwrap().deployments[&id("web")].clone();
    assert_eq!(
        (
            row.generation,
            row.status,
            row.restart_count,
            row.spec.replicas
        ),
        (2, DeploymentStatus::Pending, 0, 3)
    );
    assert_eq!(row.status_since, at(10));
    let events = reader.events(&id("web"), 10).unwrap();
    assert_eq!(events[0].kind, EventKind::Updated);
    assert_eq!(events[0].message, "spec changed in revision r2: replicas");
    let last = reader.outbox().unwrap().pop().unwrap();
    assert_eq!(last.kind, NotificationKind::DeploymentStatusChanged);
    assert_eq!(
        (
            last.payload["old_status"].as_str(),
            last.payload["new_status"].as_str()
        ),
        (Some("crash_loop_back_off"), Some("pending"))
    );
    assert_eq!(last.payload["generation"], 2);
}

#[test]
fn a_vanished_deployment_is_pruned_once_and_can_come_back() {
    let (_dir, store) = open_store();
    let web_text = web("");
    let api_text = deployment("demo", "api", "");
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web_text), ("b.yaml", &api_text)]),
        at(0),
    )
    .unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r2"),
        desired(&[("a.yaml", &web_text)]),
        at(10),
    )
    .unwrap();
    let reader = store.reader().unwrap();
    let api = reader.stored_state().unwrap().deployments[&id("api")].clone();
    assert_eq!(
        (api.status, api.in_revision),
        (DeploymentStatus::Deleted, false)
    );
    assert_eq!(reader.events(&id("api"), 1).unwrap()[0].reason, "pruned");

    let applied = keel::ingest::apply_revision(
        &store,
        revision("r3"),
        desired(&[("a.yaml", &web_text)]),
        at(20),
    )
    .unwrap();
    assert!(!applied.plan.has_changes());
    assert_eq!(
        reader.events(&id("api"), 10).unwrap().len(),
        2,
        "pruned twice"
    );

    keel::ingest::apply_revision(
        &store,
        revision("r4"),
        desired(&[("a.yaml", &web_text), ("b.yaml", &api_text)]),
        at(30),
    )
    .unwrap();
    let api = reader.stored_state().unwrap().deployments[&id("api")].clone();
    assert_eq!(
        (api.status, api.in_revision, api.generation),
        (DeploymentStatus::Pending, true, 2)
    );
}

#[test]
fn an_invalid_revision_changes_no_deployment_and_keeps_its_diagnostics() {
    let (_dir, store) = open_store();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web(""))]),
        at(0),
    )
    .unwrap();
    let reader = store.reader().unwrap();
    let before = reader.stored_state().unwrap();
    let diagnostics = vec![Diagnostic {
        file: "a.yaml".into(),
        line: Some(6),
        column: Some(5),
        path: "deployments.web.replica".into(),
        severity: Severity::Error,
        message: "unknown field \"replica\", did you mean \"replicas\"?".into(),
    }];
    let record = store
        .record_invalid(revision("r2"), diagnostics.clone(), at(10))
        .unwrap();
    assert_eq!(record.state, RevisionState::Invalid);
    assert_eq!(reader.stored_state().unwrap(), before);
    let revisions = reader.revisions(10).unwrap();
    assert_eq!(revisions[0].diagnostics, diagnostics);
    assert_eq!(revisions[0].message.as_deref(), Some("commit r2"));
    assert_eq!(
        revisions[1].state,
        RevisionState::Applying,
        "an invalid revision supersedes nothing"
    );
    let last = reader.outbox().unwrap().pop().unwrap();
    assert_eq!(
        (last.kind, last.payload["new_state"].as_str()),
        (NotificationKind::RevisionStatusChanged, Some("invalid"))
    );
}

#[test]
fn a_revision_arriving_while_another_applies_supersedes_it() {
    let (_dir, store) = open_store();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web(""))]),
        at(0),
    )
    .unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r2"),
        desired(&[("a.yaml", &web("    replicas: 2\n"))]),
        at(5),
    )
    .unwrap();
    let reader = store.reader().unwrap();
    let revisions = reader.revisions(10).unwrap();
    assert_eq!(
        (revisions[0].id.as_str(), revisions[0].state),
        ("r2", RevisionState::Applying)
    );
    assert_eq!(
        (revisions[1].id.as_str(), revisions[1].state),
        ("r1", RevisionState::Superseded)
    );
    assert_eq!(revisions[1].superseded_by.as_deref(), Some("r2"));
    assert_eq!(revisions[1].state_since, at(5));
    let superseded = reader
        .outbox()
        .unwrap()
        .into_iter()
        .find(|r| r.payload["new_state"] == "superseded")
        .expect("a revision.status_changed notification for r1");
    assert_eq!(superseded.payload["revision"], "r1");
    assert_eq!(superseded.payload["old_state"], "applying");
    assert_eq!(superseded.payload["superseded_by"], "r2");
}

#[test]
fn environment_values_round_trip_through_the_store_as_written() {
    let (_dir, store) = open_store();
    let text = web("    environment:\n      VERSION: 1.10\n      PORT: 8080\n      TOKEN: {secretRef: api-token}\n");
    let state = desired(&[("a.yaml", &text)]);
    let hash = state.deployments[&id("web")].spec_hash.clone();
    keel::ingest::apply_revision(&store, revision("r1"), state.clone(), at(0)).unwrap();
    let row = store.reader().unwrap().stored_state().unwrap().deployments[&id("web")].clone();
    assert_eq!(row.spec, state.deployments[&id("web")].spec);
    assert_eq!(row.spec_hash, hash);
    let env = serde_json::to_value(&row.spec.environment).unwrap();
    assert_eq!(
        env,
        serde_json::json!({"PORT": "8080", "TOKEN": {"secretRef": "api-token"}, "VERSION": "1.10"})
    );
}

#[test]
fn instances_probes_and_restart_history_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(&path).unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web(""))]),
        at(0),
    )
    .unwrap();
    record_deaths(&store, "web", &["exit code 137 (OOM)"], at(3));
    let instance = StoredInstance {
        runtime_id: "c0ffee".into(),
        ordinal: 0,
        generation: 1,
        state: InstanceState::Ready,
        reason: None,
        ip: Some("172.18.0.2".into()),
        started_at: Some(at(1)),
        exit_code: None,
        oom_killed: false,
    };
    record_pass(&store, "web", at(2), |outcome| {
        outcome.instances = vec![instance.clone()];
        outcome
            .memory
            .instances
            .insert("c0ffee".into(), InstanceMemory::new(InstanceState::Ready));
    });
    let results = (0..(PROBE_RESULTS_RETAINED + 10))
        .map(|i| {
            let result = ProbeResult {
                instance: "c0ffee".into(),
                check_index: 0,
                ok: i % 2 == 0,
                latency_ms: Some(3),
                message: format!("run {i}"),
                time: at(i64::from(i)),
            };
            (id("web"), result)
        })
        .collect();
    store.record_probes(results).unwrap();
    drop(store);

    let reader = StoreReader::open(&path).unwrap();
    assert_eq!(reader.instances(&id("web")).unwrap(), vec![instance]);
    let recent = reader.probe_results(&id("web"), 1000).unwrap();
    assert_eq!(
        recent.len() as u32,
        PROBE_RESULTS_RETAINED,
        "retention is bounded"
    );
    assert_eq!(
        recent[0].message,
        format!("run {}", PROBE_RESULTS_RETAINED + 9)
    );
    let restarts = reader.restarts(&id("web"), 10).unwrap();
    assert_eq!(restarts, vec![(at(3), 1, "exit code 137 (OOM)".to_owned())]);
    assert_eq!(
        reader.stored_state().unwrap().deployments[&id("web")].restart_count,
        1,
        "the counter survives a reopen"
    );
}

/// Run by `killing_the_writer_mid_transaction_leaves_the_database_as_before` in a child
/// process: opens a transaction, writes a whole revision into it, says so, and waits to be
/// killed. Does nothing when run as an ordinary test.
#[test]
fn child_holds_a_transaction_open() {
    let Ok(path) = std::env::var("KEEL_TEST_HOLD_TX_DB") else {
        return;
    };
    let mut conn = keel::store::connect(
        Path::new(&path),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    // What applying a revision writes, left uncommitted: the revision, a new generation of a
    // deployment, its event and its notification.
    tx.execute_batch(
        "INSERT INTO revisions (source, id, received_at, state, state_since)
             VALUES ('test', 'r2', 100, 'applying', 100);
         UPDATE deployments SET generation = generation + 1, status = 'pending', spec_hash = 'r2',
             revision = 'r2' WHERE name = 'web';
         INSERT INTO events (deployment, namespace, name, time, kind, reason, message, revision)
             SELECT uuid, namespace, name, 100, 'updated', 'revision_applied', 'spec changed', 'r2'
             FROM deployments WHERE name = 'web';
         INSERT INTO outbox (id, kind, payload, created_at, next_attempt_at)
             VALUES ('n-r2', 'revision.status_changed', '{}', 100, 100);",
    )
    .unwrap();
    println!("HOLDING");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn killing_the_writer_mid_transaction_leaves_the_database_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(&path).unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[
            ("a.yaml", &web("")),
            ("b.yaml", &deployment("demo", "api", "")),
        ]),
        at(0),
    )
    .unwrap();
    drop(store);
    let snapshot = |path: &Path| {
        let reader = StoreReader::open(path).unwrap();
        (
            reader.stored_state().unwrap(),
            reader.revisions(100).unwrap(),
            reader.outbox().unwrap(),
            reader.events(&id("web"), 100).unwrap(),
        )
    };
    let before = snapshot(&path);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_a_transaction_open",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("KEEL_TEST_HOLD_TX_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let holding = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("HOLDING"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(holding, "the child never reached the open transaction");

    let store = Store::open(&path).unwrap();
    drop(store);
    assert_eq!(snapshot(&path), before);
}

#[test]
fn migrating_a_v1_database_backfills_template_hashes_and_live_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(&path).unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web("    replicas: 2\n"))]),
        at(0),
    )
    .unwrap();
    record_pass(&store, "web", at(1), |outcome| {
        outcome.instances = ["c0", "c1"]
            .iter()
            .map(|runtime_id| StoredInstance {
                runtime_id: (*runtime_id).into(),
                ordinal: 0,
                generation: 1,
                state: InstanceState::Ready,
                reason: None,
                ip: None,
                started_at: Some(at(1)),
                exit_code: None,
                oom_killed: false,
            })
            .collect();
    });
    drop(store);
    // Back to what a v1 keel wrote: no derived columns, no delivery tables.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE deployments DROP COLUMN template_hash;
         ALTER TABLE deployments DROP COLUMN live;
         DROP TABLE deliveries;
         DROP TABLE endpoints;
         DROP TABLE commit_statuses;
         DROP INDEX outbox_undistributed;
         DROP TABLE purged;
         DROP TABLE runs;
         ALTER TABLE deployments DROP COLUMN cron;
         ALTER TABLE deployments DROP COLUMN next_run_at;
         ALTER TABLE deployments DROP COLUMN image;
         ALTER TABLE instances DROP COLUMN green;
         DROP TABLE quarantined_specs;
         DROP TABLE quarantine;
         DROP TABLE good_mark;
         DROP TABLE good_state;
         DROP INDEX revisions_succeeded;
         ALTER TABLE revisions DROP COLUMN desired_hash;
         ALTER TABLE revisions DROP COLUMN restores;
         ALTER TABLE revisions DROP COLUMN rolled_back_to;
         ALTER TABLE revisions DROP COLUMN identical_to;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);

    drop(Store::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let row = StoreReader::open(&path)
        .unwrap()
        .stored_state()
        .unwrap()
        .deployments[&id("web")]
        .clone();
    assert_eq!(
        row.template,
        keel::model::desired::template_hash(&row.spec, &row.mounted_configs)
    );
    assert_eq!(row.live, 2);
    let summary = StoreReader::open(&path).unwrap().summaries().unwrap();
    assert_eq!(
        summary[0].image, row.spec.image,
        "v6 backfills the image column from the spec"
    );
    assert!(row.spec.image.is_some());
}

#[test]
fn a_purged_deployments_events_stay_readable_until_the_retention_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.db")).unwrap();
    let (web_text, api_text) = (web(""), deployment("demo", "api", ""));
    let both = [("a.yaml", web_text.as_str()), ("b.yaml", api_text.as_str())];
    keel::ingest::apply_revision(&store, revision("r1"), desired(&both), at(0)).unwrap();
    keel::ingest::apply_revision(&store, revision("r2"), desired(&both[..1]), at(10)).unwrap();
    let api = DecidedOn::of(
        &store
            .reader()
            .unwrap()
            .deployment(&id("api"))
            .unwrap()
            .unwrap(),
    );
    store
        .record_pass(Vec::new(), None, vec![(id("api"), api)], Vec::new(), at(20))
        .unwrap();
    let reader = store.reader().unwrap();
    let state = reader.stored_state().unwrap();
    assert!(
        !state.deployments.contains_key(&id("api")),
        "the row is gone"
    );
    assert!(state.deployments.contains_key(&id("web")));
    let kept: Vec<String> = reader
        .events(&id("api"), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(kept.contains(&"pruned".to_owned()), "{kept:?}");

    let week = 7 * 24 * 3600;
    store
        .record_pass(Vec::new(), None, Vec::new(), Vec::new(), at(20 + week - 1))
        .unwrap();
    assert!(
        !reader.events(&id("api"), 10).unwrap().is_empty(),
        "within the retention"
    );
    store
        .record_pass(Vec::new(), None, Vec::new(), Vec::new(), at(21 + week))
        .unwrap();
    assert!(reader.events(&id("api"), 10).unwrap().is_empty(), "expired");
    assert!(
        !reader.events(&id("web"), 10).unwrap().is_empty(),
        "a live deployment keeps its events"
    );
}

#[test]
fn migrating_a_v3_database_keeps_every_event_under_its_deployment_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = Store::open(&path).unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &web(""))]),
        at(0),
    )
    .unwrap();
    let before = store.reader().unwrap().events(&id("web"), 10).unwrap();
    assert!(!before.is_empty());
    drop(store);
    // Back to what a v3 keel wrote: events hang off the row, no `purged` table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE events_v3 (
             seq        INTEGER PRIMARY KEY AUTOINCREMENT,
             deployment TEXT    NOT NULL REFERENCES deployments (uuid) ON DELETE CASCADE,
             time       INTEGER NOT NULL,
             kind       TEXT    NOT NULL,
             reason     TEXT    NOT NULL,
             message    TEXT    NOT NULL,
             revision   TEXT
         );
         INSERT INTO events_v3 SELECT seq, deployment, time, kind, reason, message, revision FROM events;
         DROP TABLE events;
         ALTER TABLE events_v3 RENAME TO events;
         CREATE INDEX events_by_deployment ON events (deployment, seq);
         DROP TABLE purged;
         DROP TABLE runs;
         ALTER TABLE deployments DROP COLUMN cron;
         ALTER TABLE deployments DROP COLUMN next_run_at;
         ALTER TABLE deployments DROP COLUMN image;
         ALTER TABLE instances DROP COLUMN green;
         DROP TABLE quarantined_specs;
         DROP TABLE quarantine;
         DROP TABLE good_mark;
         DROP TABLE good_state;
         DROP INDEX revisions_succeeded;
         ALTER TABLE revisions DROP COLUMN desired_hash;
         ALTER TABLE revisions DROP COLUMN restores;
         ALTER TABLE revisions DROP COLUMN rolled_back_to;
         ALTER TABLE revisions DROP COLUMN identical_to;
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);

    drop(Store::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let after = StoreReader::open(&path)
        .unwrap()
        .events(&id("web"), 10)
        .unwrap();
    assert_eq!(after, before);
}

#[test]
fn the_change_log_names_each_deployment_written_and_forgets_what_was_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.db")).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.latest_change().unwrap(), 0);
    let (a, b) = (deployment("demo", "a", ""), deployment("demo", "b", ""));
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("a.yaml", &a), ("b.yaml", &b)]),
        at(0),
    )
    .unwrap();
    let (seen, written) = reader.changes_since(0).unwrap().unwrap();
    assert_eq!(written.len(), 2, "both rows are named once");
    assert_eq!(seen, reader.latest_change().unwrap());

    // A status-only write by a pass names that deployment alone.
    record_pass(&store, "a", at(1), |outcome| outcome.ready = 1);
    let (newer, written) = reader.changes_since(seen).unwrap().unwrap();
    let uuid_a = reader.deployment(&id("a")).unwrap().unwrap().uuid;
    assert_eq!(written, std::slice::from_ref(&uuid_a));
    let (row, _) = reader.deployment_by_uuid(&uuid_a).unwrap().unwrap();
    assert_eq!(row.ready, 1);

    // In the order of their last write.
    record_pass(&store, "b", at(2), |outcome| outcome.ready = 2);
    record_pass(&store, "a", at(3), |outcome| outcome.ready = 2);
    let uuid_b = reader.deployment(&id("b")).unwrap().unwrap().uuid;
    let (newer, order) = reader.changes_since(newer).unwrap().unwrap();
    assert_eq!(order, [uuid_b, uuid_a.clone()]);

    // Consumed rows are trimmed by the next write; a reader that had not read them is told so.
    store.consumed_changes(newer);
    record_pass(&store, "b", at(2), |outcome| outcome.ready = 1);
    assert!(
        reader.changes_since(0).unwrap().is_none(),
        "rows were trimmed unread"
    );
    assert_eq!(reader.changes_since(newer).unwrap().unwrap().1.len(), 1);
}

/// A cron job's failed run counts until a newer run completes; a deployment that stopped
/// being a cron job has no runs that count.
#[test]
fn failed_runs_count_until_a_newer_run_completes_and_only_for_a_cronjob() {
    use keel::model::run::{Run, RunOutcome};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.db")).unwrap();
    let cron = "    kind: cronjob\n    schedule: \"@daily\"\n";
    let apply = |rev: &str, extra: &str| {
        keel::ingest::apply_revision(
            &store,
            revision(rev),
            desired(&[("web.yaml", &web(extra))]),
            at(0),
        )
        .unwrap();
    };
    apply("r1", cron);
    let run = |n: u64, outcome: RunOutcome| Run {
        run: n,
        generation: 1,
        due_at: at(n as i64),
        started_at: Some(at(n as i64)),
        finished_at: Some(at(n as i64)),
        exit_code: Some(0),
        outcome,
        reason: None,
        instances: 1,
    };
    let failing = || store.reader().unwrap().failing_runs().unwrap();
    record_pass(&store, "web", at(1), |o| {
        o.runs = vec![run(1, RunOutcome::Failed)]
    });
    assert!(failing().contains(&id("web")));
    record_pass(&store, "web", at(2), |o| {
        o.runs = vec![run(2, RunOutcome::Completed)]
    });
    assert!(failing().is_empty(), "made good by run 2");
    record_pass(&store, "web", at(3), |o| {
        o.runs = vec![run(3, RunOutcome::Failed)]
    });
    assert!(failing().contains(&id("web")));
    apply("r2", "");
    assert!(
        failing().is_empty(),
        "a worker now: its old runs do not count"
    );
}

#[test]
fn a_failure_of_an_older_generation_is_not_recorded_onto_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.db")).unwrap();
    let v1 = web("");
    keel::ingest::apply_revision(&store, revision("r1"), desired(&[("a.yaml", &v1)]), at(0))
        .unwrap();
    let reader = store.reader().unwrap();
    let first = DecidedOn::of(&reader.deployment(&id("web")).unwrap().unwrap());
    let v2 = web("    environment:\n      VERSION: \"2\"\n");
    keel::ingest::apply_revision(&store, revision("r2"), desired(&[("a.yaml", &v2)]), at(1))
        .unwrap();
    let failure = keel::model::memory::Failure {
        status: DeploymentStatus::ImagePullBackOff,
        message: "manifest unknown".into(),
        at: at(2),
    };
    store.record_failure(first, failure.clone()).unwrap();
    let last_failure = || reader.memories().unwrap()[&id("web")].last_failure.clone();
    assert_eq!(
        last_failure(),
        None,
        "generation 1's pull failed; generation 2 did not"
    );
    let second = DecidedOn::of(&reader.deployment(&id("web")).unwrap().unwrap());
    store.record_failure(second, failure.clone()).unwrap();
    assert_eq!(last_failure(), Some(failure));
}
