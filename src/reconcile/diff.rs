//! PURE: desired state of a revision × stored state → what applying the revision changes, per
//! deployment: `create`, `update` (with the changed field paths), `delete`, or `unchanged`.
//!
//! Invariants: equal `spec_hash` ⇒ `unchanged`, whatever the files looked like; only
//! deployments keel stored can be deleted, and one already pruned is not deleted again; a
//! pruned deployment that comes back is a `create` (a new life, a new generation).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::desired::{DeploymentId, DesiredState};
pub use crate::model::diff::{Action, Plan, PlanCounts, PlanItem};
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

/// Compares a revision with the store's rows: the summaries decide create, delete and
/// unchanged (by spec hash); `previous` is asked for the stored canonical document of each
/// updated deployment only, so an unchanged deployment's spec is never read.
pub fn diff_with<E>(
    desired: &DesiredState,
    stored: &[StoredSummary],
    mut previous: impl FnMut(&DeploymentId) -> Result<Option<Value>, E>,
) -> Result<Plan, E> {
    let by_id: BTreeMap<&DeploymentId, &StoredSummary> =
        stored.iter().map(|s| (&s.id, s)).collect();
    let mut items = Vec::new();
    for (id, want) in &desired.deployments {
        let action = match by_id.get(id) {
            None => Action::Create,
            Some(have) if !have.in_revision => Action::Create,
            Some(have) if have.spec_hash == want.spec_hash => Action::Unchanged,
            Some(_) => Action::Update {
                changed: match previous(id)? {
                    Some(old) => changed_paths(&old, &want.canonical()),
                    None => Vec::new(),
                },
            },
        };
        items.push(PlanItem {
            id: id.clone(),
            action,
        });
    }
    for have in stored {
        if have.in_revision && !desired.deployments.contains_key(&have.id) {
            items.push(PlanItem {
                id: have.id.clone(),
                action: Action::Delete,
            });
        }
    }
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Plan { items })
}

/// The leaf paths where two canonical documents differ, in document order.
fn changed_paths(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(old_spec), Some(new_spec)) = (old.get("spec"), new.get("spec")) {
        walk(old_spec, new_spec, String::new(), &mut out);
    }
    let empty = serde_json::Map::new();
    let configs = |v: &Value| {
        v.get("mounted_configs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (old_configs, new_configs) = (configs(old), configs(new));
    let names: std::collections::BTreeSet<&String> =
        old_configs.keys().chain(new_configs.keys()).collect();
    for name in names {
        if old_configs.get(name) != new_configs.get(name) {
            out.push(format!("configs.{name}"));
        }
    }
    out
}

fn walk(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, child, out),
                    _ => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(path),
    }
}
