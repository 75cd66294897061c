//! Helpers shared by the integration tests: building desired states from manifest text and
//! naming revisions. (Each test binary includes what it uses.)
#![allow(dead_code)]

use keel::manifest::{self, Limits};
use keel::model::desired::DesiredState;
use keel::model::snapshot::SnapshotEntry;
use keel::model::stored::NewRevision;
use keel::model::time::Timestamp;

/// Loads manifest files given as (path, text); panics with the diagnostics when invalid.
pub fn desired(files: &[(&str, &str)]) -> DesiredState {
    let entries: Vec<_> = files
        .iter()
        .map(|(path, text)| SnapshotEntry::File {
            path: (*path).to_owned(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    match manifest::load(&entries, &Limits::default()) {
        Ok(loaded) => loaded.state,
        Err(diags) => panic!("invalid test manifests: {diags:#?}"),
    }
}

/// A docker deployment `name` in `namespace` with `extra` lines (indented four spaces).
pub fn deployment(namespace: &str, name: &str, extra: &str) -> String {
    format!(
        "deployments:\n  {name}:\n    name: {name}\n    namespace: {namespace}\n    image: busybox:1.36\n{extra}"
    )
}

pub fn revision(id: &str) -> NewRevision {
    NewRevision {
        source: "test".into(),
        id: id.into(),
        message: Some(format!("commit {id}")),
        author: Some("Tester <t@example.com>".into()),
    }
}

/// Controller settings with short timers (backoff 10–40 ms, no drain), resting at most
/// `resync` between passes: for tests on the in-memory runtime.
pub fn fast_controller(
    resync: keel::model::units::Duration,
) -> keel::reconcile::controller::Config {
    use keel::model::units::Duration;
    keel::reconcile::controller::Config {
        resync,
        policy: keel::reconcile::plan::Policy {
            max_restart_count: 5,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            rollout_deadline: Duration::from_secs(30),
            drain: Duration::from_millis(0),
            stop_grace: Duration::from_secs(1),
            // Success at once: these tests are about other things than stabilization.
            stable_after: Duration::from_millis(0),
            rollback: keel::reconcile::rollback::Mode::On,
        },
        limits: keel::reconcile::executor::Limits {
            call_timeout: Duration::from_secs(5),
            concurrency: 8,
        },
    }
}

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + seconds * 1000)
}
pub mod api;
pub mod binary;
pub mod docker;
pub mod git;
pub mod host;
pub mod receivers;
pub mod registry;
pub mod schema;
