//! What applying a revision changes, per deployment — `create`, `update` (with the changed
//! field paths), `delete`, or `unchanged` — and the PURE comparison that finds it (`diff_with`),
//! here in the model so that the store can diff a restored state inside its own transaction.
//! The store only persists a plan; `reconcile::diff` diffs the controller's copy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::desired::{DeploymentId, DesiredState};
use super::stored::StoredSummary;

/// What applying a revision does to one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// New (or back after being pruned).
    Create,
    /// The spec changed: a new generation. `changed` lists the field paths, e.g. `image`,
    /// `health_checks[0].url`, `configs.site` (a mounted config's content).
    Update { changed: Vec<String> },
    /// No longer in the revision: prune it.
    Delete,
    /// Same spec hash: nothing to do.
    Unchanged,
}

/// One deployment's line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    #[serde(flatten)]
    pub id: DeploymentId,
    #[serde(flatten)]
    pub action: Action,
}

/// The plan of a revision, in (namespace, name) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
}

/// How many deployments each action touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanCounts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
}

impl Plan {
    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        for item in &self.items {
            match item.action {
                Action::Create => c.create += 1,
                Action::Update { .. } => c.update += 1,
                Action::Delete => c.delete += 1,
                Action::Unchanged => c.unchanged += 1,
            }
        }
        c
    }

    pub fn has_changes(&self) -> bool {
        let c = self.counts();
        c.create + c.update + c.delete > 0
    }
}

impl Plan {
    /// This plan as a rollback applies it: a rollback never runs a job — a job the restored
    /// state would create or change is left as it ended (its run cannot be undone, and running
    /// the good one again is no undo either). Returns the plan and those jobs
    /// (`namespace/name`).
    pub fn without_reruns(mut self, restored: &DesiredState) -> (Self, Vec<String>) {
        let mut kept = Vec::new();
        self.items.retain(|item| {
            let runs_a_job = match item.action {
                Action::Create | Action::Update { .. } => restored
                    .deployments
                    .get(&item.id)
                    .is_some_and(|d| d.spec.kind == super::manifest::WorkloadKind::Job),
                Action::Delete | Action::Unchanged => false,
            };
            if runs_a_job {
                kept.push(item.id.to_string());
            }
            !runs_a_job
        });
        (self, kept)
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

#[cfg(test)]
mod rerun_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::desired::{DesiredDeployment, Origin};

    fn desired(name: &str, kind: &str) -> DesiredDeployment {
        let spec = serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "demo", "image": "busybox:1.36", "kind": kind,
        }))
        .unwrap();
        let origin = Origin {
            file: "a.yaml".into(),
            line: 1,
        };
        DesiredDeployment::new(spec, &BTreeMap::new(), origin)
    }

    #[test]
    fn a_rollback_creates_changes_or_runs_no_job_and_names_the_ones_it_leaves() {
        let mut restored = DesiredState::default();
        for d in [
            desired("web", "worker"),
            desired("migrate", "job"),
            desired("seed", "job"),
        ] {
            restored.deployments.insert(d.id.clone(), d);
        }
        let item = |name: &str, action: Action| PlanItem {
            id: DeploymentId::new("demo", name),
            action,
        };
        let plan = Plan {
            items: vec![
                item(
                    "web",
                    Action::Update {
                        changed: vec!["image".into()],
                    },
                ),
                item(
                    "migrate",
                    Action::Update {
                        changed: vec!["image".into()],
                    },
                ),
                item("seed", Action::Create),
                item("new-job", Action::Delete),
            ],
        };
        let (plan, kept) = plan.without_reruns(&restored);
        let ids: Vec<String> = plan.items.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(
            ids,
            ["demo/web", "demo/new-job"],
            "workers restored, what it added removed"
        );
        assert_eq!(kept, ["demo/migrate", "demo/seed"]);
    }
}
