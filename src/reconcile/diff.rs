//! PURE: desired state of a revision × stored state → what applying the revision changes, per
//! deployment: `create`, `update` (with the changed field paths), `delete`, or `unchanged`.
//!
//! Invariants: equal `spec_hash` ⇒ `unchanged`, whatever the files looked like; only
//! deployments keel stored can be deleted, and one already pruned is not deleted again; a
//! pruned deployment that comes back is a `create` (a new life, a new generation).

use crate::model::desired::{DeploymentId, DesiredState};
pub use crate::model::diff::{diff_with, Action, Plan, PlanCounts, PlanItem};
use crate::model::stored::{StoredState, StoredSummary};

/// Compares a revision with the store's state held in memory.
pub fn diff(desired: &DesiredState, stored: &StoredState) -> Plan {
    let summaries: Vec<StoredSummary> = stored
        .deployments
        .values()
        .map(StoredSummary::from)
        .collect();
    let previous =
        |id: &DeploymentId| {
            Ok::<_, std::convert::Infallible>(stored.deployments.get(id).map(|have| {
                crate::model::desired::canonical_json(&have.spec, &have.mounted_configs)
            }))
        };
    match diff_with(desired, &summaries, previous) {
        Ok(plan) => plan,
        Err(never) => match never {},
    }
}
