//! Effectful: the reconcile loop. Level-triggered — every pass recomputes from the store's
//! targets and memory, the runtimes' listings and the health-check states: observe → plan
//! (pure) → persist (one transaction) → execute (in the background) → keep the right probes
//! running. A tick (default 2s) drives it; new revisions, runtime events, executor completions
//! and probe results that flip a check only wake it early.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::model::desired::{template_hash, DeploymentId, SpecHash};
use crate::model::manifest::RuntimeKind;
use crate::model::observed::{CheckState, Phase, RuntimeObservation};
use crate::model::status::{DeploymentStatus, RevisionState};
use crate::model::stored::{ProbeResult, StoredState};
use crate::model::units::Duration;
use crate::probe::runner::{ProbeJob, ProbeReport, Runner};
use crate::runtime::{InstanceSpec, Runtime};
use crate::store::{Store, StoreError, StoreReader};

use super::executor::{Executor, Job, Limits, Step};
use super::plan::{plan, Action, Observed, Outcome, PlanInput, Policy, Target};
use super::{readiness, views};

/// Why the loop could not run a pass.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("store")]
    Store(#[from] StoreError),
    #[error("a store task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The loop's settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub tick: Duration,
    pub policy: Policy,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(2),
            policy: Policy::default(),
            limits: Limits {
                call_timeout: Duration::from_secs(120),
                stop_grace: Duration::from_secs(10),
                drain: Duration::from_secs(2),
                concurrency: 8,
            },
        }
    }
}

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub actions: usize,
    pub persisted: usize,
}

pub struct Controller {
    store: Arc<Store>,
    reader: StoreReader,
    runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>>,
    config: Config,
    clock: Clock,
    checks: BTreeMap<(String, u32), CheckState>,
    probes: Runner,
    reports: mpsc::UnboundedReceiver<ProbeReport>,
    executor: Executor,
    wake: Arc<Notify>,
    templates: HashMap<SpecHash, String>,
    last: HashMap<DeploymentId, Outcome>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Controller {
    pub fn new(
        store: Arc<Store>,
        runtimes: Vec<Arc<dyn Runtime>>,
        config: Config,
        clock: Clock,
    ) -> Result<Self, ControllerError> {
        let reader = store.reader()?;
        let wake = Arc::new(Notify::new());
        let (probes, reports) = Runner::new(clock.clone());
        let executor = Executor::new(store.clone(), config.limits, wake.clone(), clock.clone());
        let runtimes = runtimes.into_iter().map(|r| (r.kind(), r)).collect();
        Ok(Self {
            store,
            reader,
            runtimes,
            config,
            clock,
            checks: BTreeMap::new(),
            probes,
            reports,
            executor,
            wake,
            templates: HashMap::new(),
            last: HashMap::new(),
            metrics: Arc::default(),
        })
    }

    /// Records pass durations and probe outcomes into `metrics` (shared with the API).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Notify this to run a pass now (a new revision was applied, say).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs passes until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ControllerError> {
        for runtime in self.runtimes.values() {
            let (mut events, wake) = (runtime.events(), self.wake.clone());
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            wake.notify_one()
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        loop {
            if let Err(error) = self.pass().await {
                tracing::error!(error = %error, "reconcile pass failed; retrying on the next tick");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.tick.to_std()) => {}
                _ = self.wake.notified() => {}
                Some(report) = self.reports.recv() => {
                    if self.fold(report) {
                        continue;
                    }
                }
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    /// One observe → plan → persist → execute pass.
    pub async fn pass(&mut self) -> Result<PassSummary, ControllerError> {
        let started = std::time::Instant::now();
        let summary = self.pass_inner().await;
        self.metrics.observe_pass(started.elapsed());
        summary
    }

    async fn pass_inner(&mut self) -> Result<PassSummary, ControllerError> {
        let mut results = Vec::new();
        while let Ok(report) = self.reports.try_recv() {
            results.push(probe_result(&report));
            self.fold(report);
        }
        if !results.is_empty() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.record_probes(results)).await??;
        }
        let now = (self.clock)();
        let stored = self.reader.stored_state()?;
        let memory = self.reader.memories()?;
        // Busy first: a deployment without a job now gets none during the listing (jobs only
        // start from passes), so its observation is consistent; one with a job is held.
        let busy = self.executor.busy();
        let observed = self.observe().await;
        self.refresh_templates(&stored);
        let planned = {
            let targets = targets(&stored, &self.templates, &busy);
            plan(&PlanInput {
                desired: &targets,
                observed: &observed,
                memory: &memory,
                policy: &self.config.policy,
                now,
                held: &busy,
            })
        };
        let revision = self.revision_state(&stored, &planned.outcomes)?;
        let changed: Vec<(DeploymentId, Outcome)> = planned
            .outcomes
            .iter()
            .filter(|(id, outcome)| {
                self.last.get(*id) != Some(outcome)
                    || outcome.status_change.is_some()
                    || !outcome.events.is_empty()
            })
            .map(|(id, o)| (id.clone(), o.clone()))
            .collect();
        let persisted = changed.len();
        if persisted > 0 || revision.is_some() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.record_pass(changed, revision, now))
                .await??;
        }
        for (id, outcome) in &planned.outcomes {
            self.last.insert(id.clone(), outcome.clone());
        }
        let actions = planned.actions.len();
        self.execute(planned.actions, &stored);
        self.sync_probes(&stored, &observed);
        Ok(PassSummary { actions, persisted })
    }

    /// Folds a probe report into the check states; true when it flipped the check.
    fn fold(&mut self, report: ProbeReport) -> bool {
        self.metrics.observe_probe(report.outcome.ok);
        let key = (report.runtime_id.clone(), report.check_index);
        let before = self.checks.get(&key).cloned().unwrap_or_default();
        let after = readiness::record(
            &before,
            &report.check,
            report.started_at,
            report.outcome.ok,
            report.at,
            &report.outcome.message,
        );
        let flipped = before.green_since.is_some() != after.green_since.is_some()
            || (before.consecutive_failures < report.check.threshold)
                != (after.consecutive_failures < report.check.threshold);
        self.checks.insert(key, after);
        flipped
    }

    async fn observe(&mut self) -> Observed {
        let mut runtimes = BTreeMap::new();
        for (kind, runtime) in &self.runtimes {
            let listing =
                tokio::time::timeout(self.config.limits.call_timeout.to_std(), runtime.list())
                    .await;
            let observation = match listing {
                Ok(Ok(instances)) => RuntimeObservation::Listed(instances),
                Ok(Err(error)) => RuntimeObservation::Unavailable {
                    reason: error.to_string(),
                },
                Err(_) => RuntimeObservation::Unavailable {
                    reason: "listing timed out".to_owned(),
                },
            };
            runtimes.insert(*kind, observation);
        }
        let live: std::collections::BTreeSet<String> = runtimes
            .values()
            .flat_map(|o| match o {
                RuntimeObservation::Listed(instances) => {
                    instances.iter().map(|i| i.runtime_id.clone()).collect()
                }
                RuntimeObservation::Unavailable { .. } => Vec::new(),
            })
            .collect();
        self.checks.retain(|(id, _), _| live.contains(id));
        Observed {
            runtimes,
            checks: self.checks.clone(),
        }
    }

    /// Remembers the template hash of every stored spec (computed once per spec).
    fn refresh_templates(&mut self, stored: &StoredState) {
        for d in stored.deployments.values() {
            self.templates
                .entry(d.spec_hash.clone())
                .or_insert_with(|| template_hash(&d.spec, &d.mounted_configs));
        }
    }

    /// The open revision's state from its deployments, when it settles.
    fn revision_state(
        &self,
        stored: &StoredState,
        outcomes: &BTreeMap<DeploymentId, Outcome>,
    ) -> Result<Option<(i64, RevisionState)>, ControllerError> {
        let Some(open) = self.reader.open_revision()? else {
            return Ok(None);
        };
        let goals: Vec<views::Goal> = stored
            .deployments
            .values()
            .filter(|d| d.in_revision || d.revision == open.id)
            .map(|d| {
                let outcome = outcomes.get(&d.id);
                views::Goal {
                    kind: d.spec.kind,
                    status: outcome.map_or(d.status, |o| o.memory.status),
                    declared: d.in_revision,
                    live_instances: outcome.map_or(0, |o| {
                        u32::try_from(o.instances.iter().filter(|i| i.exit_code.is_none()).count())
                            .unwrap_or(u32::MAX)
                    }),
                }
            })
            .collect();
        let state = views::revision_state(&goals);
        Ok((state != open.state).then_some((open.seq, state)))
    }

    fn execute(&self, actions: Vec<Action>, stored: &StoredState) {
        let mut jobs: BTreeMap<DeploymentId, Vec<Step>> = BTreeMap::new();
        for action in actions {
            let deployment = action.deployment().clone();
            let step = match action {
                Action::Create {
                    deployment,
                    generation,
                    ordinal,
                } => {
                    let Some(d) = stored.deployments.get(&deployment) else {
                        continue;
                    };
                    Step::Create(Box::new(InstanceSpec {
                        deployment,
                        generation,
                        ordinal,
                        template: self
                            .templates
                            .get(&d.spec_hash)
                            .cloned()
                            .unwrap_or_default(),
                        spec: d.spec.clone(),
                        mounted_configs: d.mounted_configs.clone(),
                    }))
                }
                Action::Start { runtime_id, .. } => Step::Start(runtime_id),
                Action::Remove {
                    runtime_id,
                    stop_first,
                    ..
                } => Step::Remove {
                    runtime_id,
                    stop_first,
                },
            };
            jobs.entry(deployment).or_default().push(step);
        }
        for (deployment, steps) in jobs {
            let kind = stored.deployments.get(&deployment).map(|d| d.spec.runtime);
            let runtime = match kind {
                Some(kind) => self.runtimes.get(&kind).cloned(),
                // An orphan: it can only have come from a listed runtime; find the one that has it.
                None => self.runtimes.values().next().cloned(),
            };
            if let Some(runtime) = runtime {
                self.executor.spawn(Job {
                    deployment,
                    runtime,
                    steps,
                });
            }
        }
    }

    fn sync_probes(&mut self, stored: &StoredState, observed: &Observed) {
        let mut jobs = Vec::new();
        for (kind, observation) in &observed.runtimes {
            let (RuntimeObservation::Listed(instances), Some(runtime)) =
                (observation, self.runtimes.get(kind))
            else {
                continue;
            };
            for instance in instances.iter().filter(|i| i.phase == Phase::Running) {
                let Some(d) = stored.deployments.get(&instance.deployment) else {
                    continue;
                };
                if d.status == DeploymentStatus::Deleted {
                    continue;
                }
                for (index, check) in d.spec.health_checks.iter().enumerate() {
                    jobs.push(ProbeJob {
                        deployment: d.id.clone(),
                        instance: instance.clone(),
                        check_index: u32::try_from(index).unwrap_or(u32::MAX),
                        check: check.clone(),
                        runtime: runtime.clone(),
                    });
                }
            }
        }
        self.probes.sync(jobs);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.executor.abort_all();
    }
}

/// The planner's targets: every stored deployment without work in flight.
fn targets<'a>(
    stored: &'a StoredState,
    templates: &'a HashMap<SpecHash, String>,
    busy: &std::collections::BTreeSet<DeploymentId>,
) -> Vec<Target<'a>> {
    stored
        .deployments
        .values()
        .filter(|d| !busy.contains(&d.id))
        .map(|d| Target {
            id: &d.id,
            spec: &d.spec,
            generation: d.generation,
            template: templates.get(&d.spec_hash).map_or("", String::as_str),
            declared: d.in_revision,
        })
        .collect()
}

fn probe_result(report: &ProbeReport) -> (DeploymentId, ProbeResult) {
    (
        report.deployment.clone(),
        ProbeResult {
            instance: report.runtime_id.clone(),
            check_index: report.check_index,
            ok: report.outcome.ok,
            latency_ms: Some(report.outcome.latency_ms),
            message: report.outcome.message.clone(),
            time: report.at,
        },
    )
}
