//! What applying a revision changes, per deployment — the output of `reconcile::diff`, handed
//! to the store, which only persists it: `create`, `update` (with the changed field paths),
//! `delete`, or `unchanged`.

use serde::Serialize;

use super::desired::DeploymentId;

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
