//! Test builders for the planner: a `World` holds one deployment's target, memory and
//! observations; `plan()` runs one pass; `step()` also applies the plan the way a perfect
//! runtime would, so multi-pass scenarios (rollouts, crash loops) read as a few lines.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::desired::{template_hash, DeploymentId};
use crate::model::manifest::{DeploymentDecl, RuntimeKind};
use crate::model::memory::{Failure, InstanceMemory, Memory};
use crate::model::observed::{CheckState, ObservedInstance, Phase, RuntimeObservation};
use crate::model::status::DeploymentStatus;
use crate::model::time::Timestamp;

use super::plan::{plan, Action, Observed, Outcome, Plan, PlanInput, Policy, Target};

/// The epoch of every scenario.
pub const T0: i64 = 1_800_000_000_000;

pub fn at(secs: i64) -> Timestamp {
    Timestamp(T0 + secs * 1000)
}

/// How the simulated runtime treats what `step` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Runs, and every check is green from creation on.
    Healthy,
    /// Runs, but no check is ever green.
    NeverReady,
}

#[derive(Debug, Clone)]
pub struct World {
    pub id: DeploymentId,
    pub spec: DeploymentDecl,
    pub generation: u64,
    pub template: String,
    pub declared: bool,
    pub memory: Memory,
    pub instances: Vec<ObservedInstance>,
    pub checks: BTreeMap<(String, u32), CheckState>,
    pub runtime: Option<RuntimeObservation>,
    pub policy: Policy,
    pub now: Timestamp,
    pub boot: Boot,
    /// Deployments the pass must leave alone.
    pub held: std::collections::BTreeSet<DeploymentId>,
    /// Runtime ids of instances that existed at a previous template.
    pub old_template: String,
    /// When set, a second runtime (Cloud Hypervisor) is enabled and lists these.
    pub elsewhere: Option<Vec<ObservedInstance>>,
    /// How a cron job's run `n` behaves in the simulated runtime: it exits after so many
    /// seconds with that code.
    pub run_behaviour: fn(u64) -> (i64, i64),
}

impl World {
    /// A worker `demo/web` built from `fields` merged over a minimal docker spec.
    pub fn worker(fields: Value) -> Self {
        Self::build(json!({"kind": "worker"}), fields)
    }

    /// A job `demo/web`.
    pub fn job(fields: Value) -> Self {
        Self::build(json!({"kind": "job"}), fields)
    }

    fn build(kind: Value, fields: Value) -> Self {
        let mut base = json!({"name": "web", "namespace": "demo", "image": "busybox:1.36"});
        merge(&mut base, kind);
        merge(&mut base, fields);
        let spec: DeploymentDecl = serde_json::from_value(base).expect("fixture spec");
        let template = template_hash(&spec, &BTreeMap::new());
        Self {
            id: DeploymentId::new("demo", "web"),
            spec,
            generation: 1,
            template,
            declared: true,
            memory: Memory::fresh(DeploymentStatus::Pending, at(0), 0, at(0)),
            instances: Vec::new(),
            checks: BTreeMap::new(),
            runtime: None,
            policy: Policy::default(),
            now: at(0),
            boot: Boot::Healthy,
            held: std::collections::BTreeSet::new(),
            old_template: "previous-template".to_owned(),
            elsewhere: None,
            run_behaviour: |_| (10, 0),
        }
    }

    /// A cron job `demo/web`, every minute unless `fields` say otherwise.
    pub fn cronjob(fields: Value) -> Self {
        Self::build(json!({"kind": "cronjob", "schedule": "* * * * *"}), fields)
    }

    /// The runtime id of cron job run `run`'s instance `ordinal`.
    pub fn run_instance_id(generation: u64, run: u64, ordinal: u32) -> String {
        format!("web-{generation}-r{run}-{ordinal}")
    }

    /// Moves the clock to `to`; run instances whose time is up exit as `run_behaviour` says.
    pub fn advance(&mut self, to: Timestamp) {
        self.now = to;
        for instance in &mut self.instances {
            let (Some(run), Phase::Running, Some(started)) =
                (instance.run, instance.phase, instance.started_at)
            else {
                continue;
            };
            let (secs, code) = (self.run_behaviour)(run);
            if started.0 + secs * 1000 <= to.0 {
                instance.phase = Phase::Exited {
                    exit_code: code,
                    oom_killed: false,
                };
            }
        }
    }

    /// When the next running run instance exits by `run_behaviour`.
    pub fn next_exit(&self) -> Option<Timestamp> {
        self.instances
            .iter()
            .filter(|i| i.phase == Phase::Running)
            .filter_map(|i| {
                let run = i.run?;
                let started = i.started_at?;
                Some(Timestamp(started.0 + (self.run_behaviour)(run).0 * 1000))
            })
            .min()
    }

    pub fn status(mut self, status: DeploymentStatus) -> Self {
        self.memory.status = status;
        self
    }

    pub fn status_since(mut self, secs: i64) -> Self {
        self.memory.status_since = at(secs);
        self
    }

    pub fn restarts(mut self, count: u32) -> Self {
        self.memory.restart_count = count;
        self
    }

    pub fn now(mut self, secs: i64) -> Self {
        self.now = at(secs);
        self
    }

    pub fn runtime_id(generation: u64, ordinal: u32) -> String {
        format!("web-{generation}-{ordinal}")
    }

    /// An instance of the current template.
    pub fn instance(mut self, ordinal: u32, phase: Phase) -> Self {
        let template = self.template.clone();
        self.push(self.generation, ordinal, phase, template);
        self
    }

    /// An instance of a previous generation (another template).
    pub fn old_instance(mut self, generation: u64, ordinal: u32, phase: Phase) -> Self {
        let template = self.old_template.clone();
        self.push(generation, ordinal, phase, template);
        self
    }

    fn push(&mut self, generation: u64, ordinal: u32, phase: Phase, template: String) {
        self.instances.push(ObservedInstance {
            runtime: RuntimeKind::Docker,
            runtime_id: Self::runtime_id(generation, ordinal),
            deployment: self.id.clone(),
            generation,
            ordinal,
            run: None,
            template,
            phase,
            ip: None,
            started_at: Some(self.now),
            interrupted: false,
            last_output: None,
        });
    }

    /// Check `check` of instance `runtime_id` green since `secs`.
    pub fn green(mut self, runtime_id: &str, check: u32, secs: i64) -> Self {
        self.checks.insert(
            (runtime_id.to_owned(), check),
            CheckState {
                consecutive_failures: 0,
                green_since: Some(at(secs)),
                last_message: None,
            },
        );
        self
    }

    /// Check `check` of instance `runtime_id` failing `failures` times in a row.
    pub fn failing(mut self, runtime_id: &str, check: u32, failures: u32) -> Self {
        self.checks.insert(
            (runtime_id.to_owned(), check),
            CheckState {
                consecutive_failures: failures,
                green_since: None,
                last_message: Some("connection refused".into()),
            },
        );
        self
    }

    pub fn remember(mut self, runtime_id: &str, edit: impl FnOnce(&mut InstanceMemory)) -> Self {
        let entry = self
            .memory
            .instances
            .entry(runtime_id.to_owned())
            .or_insert_with(|| InstanceMemory::new(crate::model::status::InstanceState::Started));
        edit(entry);
        self
    }

    /// An action failure reported by the executor since the last pass.
    pub fn failure(mut self, status: DeploymentStatus, message: &str) -> Self {
        self.memory.last_failure = Some(Failure {
            status,
            message: message.to_owned(),
            at: self.now,
        });
        self
    }

    pub fn unavailable(mut self) -> Self {
        self.runtime = Some(RuntimeObservation::Unavailable {
            reason: "daemon not answering".into(),
        });
        self
    }

    pub fn pruned(mut self) -> Self {
        self.declared = false;
        self
    }

    /// A new spec: the next generation, reset to pending the way the store does it.
    pub fn new_spec(mut self, fields: Value) -> Self {
        let mut value = serde_json::to_value(&self.spec).expect("spec serializes");
        merge(&mut value, fields);
        self.spec = serde_json::from_value(value).expect("fixture spec");
        self.old_template = self.template.clone();
        self.template = template_hash(&self.spec, &BTreeMap::new());
        self.generation += 1;
        self.memory.status = DeploymentStatus::Pending;
        self.memory.status_since = self.now;
        self.memory.generation_since = self.now;
        self.memory.restart_count = 0;
        self.memory.retry = None;
        self
    }

    pub fn plan(&self) -> Plan {
        let no_configs = BTreeMap::new();
        let targets = [Target {
            id: &self.id,
            row: "row-1",
            spec: &self.spec,
            mounted_configs: &no_configs,
            generation: self.generation,
            template: &self.template,
            declared: self.declared,
        }];
        let observation = self
            .runtime
            .clone()
            .unwrap_or_else(|| RuntimeObservation::Listed(self.instances.clone()));
        let mut runtimes = BTreeMap::from([(RuntimeKind::Docker, observation)]);
        if let Some(elsewhere) = &self.elsewhere {
            let listed = RuntimeObservation::Listed(elsewhere.clone());
            runtimes.insert(RuntimeKind::CloudHypervisor, listed);
        }
        let observed = Observed {
            runtimes,
            checks: self.checks.clone(),
        };
        let memory = BTreeMap::from([(self.id.clone(), self.memory.clone())]);
        plan(&PlanInput {
            desired: &targets,
            observed: &observed,
            memory: &memory,
            policy: &self.policy,
            now: self.now,
            held: &self.held,
        })
    }

    /// Plans one pass and returns (actions, outcome).
    pub fn pass(&self) -> (Vec<Action>, Outcome) {
        let mut plan = self.plan();
        let outcome = plan
            .outcomes
            .remove(&self.id)
            .expect("an outcome for the deployment");
        (plan.actions, outcome)
    }

    /// Plans, keeps the new memory, applies the actions as a perfect runtime would, then lets
    /// `secs` pass.
    pub fn step(&mut self, secs: i64) -> (Vec<Action>, Outcome) {
        let (actions, outcome) = self.pass();
        self.memory = outcome.memory.clone();
        for action in &actions {
            self.apply(action);
        }
        self.now = Timestamp(self.now.0 + secs * 1000);
        (actions, outcome)
    }

    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Create { instance, .. } if instance.run.is_some() => {
                let template = self.template.clone();
                self.push(
                    instance.generation,
                    instance.ordinal,
                    Phase::Running,
                    template,
                );
                if let Some(created) = self.instances.last_mut() {
                    created.run = instance.run;
                    created.runtime_id = Self::run_instance_id(
                        instance.generation,
                        instance.run.unwrap_or_default(),
                        instance.ordinal,
                    );
                }
            }
            Action::Create { instance, .. } => {
                let (generation, ordinal) = (instance.generation, instance.ordinal);
                let template = self.template.clone();
                self.push(generation, ordinal, Phase::Running, template);
                let id = Self::runtime_id(generation, ordinal);
                if self.boot == Boot::Healthy {
                    for check in 0..self.spec.health_checks.len() {
                        let state = CheckState {
                            consecutive_failures: 0,
                            green_since: Some(self.now),
                            last_message: None,
                        };
                        self.checks.insert((id.clone(), check as u32), state);
                    }
                }
            }
            Action::Start { runtime_id, .. } => {
                if let Some(i) = self
                    .instances
                    .iter_mut()
                    .find(|i| i.runtime_id == *runtime_id)
                {
                    i.phase = Phase::Running;
                }
            }
            Action::Remove { runtime_id, .. } => {
                self.instances.retain(|i| i.runtime_id != *runtime_id);
                self.checks.retain(|(id, _), _| id != runtime_id);
            }
        }
    }
}

fn merge(base: &mut Value, fields: Value) {
    if let (Value::Object(base), Value::Object(fields)) = (base, fields) {
        for (k, v) in fields {
            base.insert(k, v);
        }
    }
}

/// Shorthands over a pass's actions.
pub trait ActionsExt {
    fn creates(&self) -> Vec<u32>;
    fn removes(&self) -> Vec<(String, bool)>;
    fn starts(&self) -> Vec<String>;
}

impl ActionsExt for [Action] {
    fn creates(&self) -> Vec<u32> {
        self.iter()
            .filter_map(|a| match a {
                Action::Create { instance, .. } => Some(instance.ordinal),
                Action::Start { .. } | Action::Remove { .. } => None,
            })
            .collect()
    }

    fn removes(&self) -> Vec<(String, bool)> {
        self.iter()
            .filter_map(|a| match a {
                Action::Remove {
                    runtime_id, stop, ..
                } => Some((runtime_id.clone(), stop.is_some())),
                Action::Create { .. } | Action::Start { .. } => None,
            })
            .collect()
    }

    fn starts(&self) -> Vec<String> {
        self.iter()
            .filter_map(|a| match a {
                Action::Start { runtime_id, .. } => Some(runtime_id.clone()),
                Action::Create { .. } | Action::Remove { .. } => None,
            })
            .collect()
    }
}
