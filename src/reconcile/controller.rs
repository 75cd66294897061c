//! Effectful: the reconcile loop. Level-triggered — every pass recomputes from the store's
//! targets and memory, the runtimes' listings and the health-check states: observe → decide
//! (pure: `decide::decide`) → persist (one transaction) → execute (in the background) → keep
//! the decided probes running. The loop only does I/O; every choice is in `decide`. It runs a
//! pass when something may have changed — a new revision, a runtime event, an executor
//! finishing, a probe result that flips a check — or when the last pass said a decision comes
//! due by the clock (`Decision::wake_at`: a backoff ending, `min_healthy_time` reached, a
//! deadline). Otherwise it rests; a slow resync (default 5m) is the safety net for a lost
//! wake-up. A probe result that flips nothing starts no pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::RwLock;

use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::model::desired::DeploymentId;
use crate::model::manifest::RuntimeKind;
use crate::model::observed::{CheckState, RuntimeObservation, RuntimeState};
use crate::model::plan::{Action, DecidedOn, Outcome};
use crate::model::stored::ProbeResult;
use crate::model::time::Timestamp;
use crate::model::units::Duration;
use crate::probe::runner::{ProbeJob, ProbeReport, Runner};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{Recorded, Store, StoreError, StoreReader};

use super::decide::{decide, DecideInput, Decision, ProbeTarget};
use super::executor::{Executor, Limits, Runtimes};
use super::mirror::Mirror;
use super::plan::{Observed, Policy};
use super::readiness;

/// How soon a pass that failed (the store was busy, say) is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// What the controller last saw of each runtime, shared with the API.
pub type RuntimeBoard = Arc<RwLock<BTreeMap<RuntimeKind, RuntimeState>>>;

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
    /// The longest the loop rests without a reason to look (the safety net for a lost event).
    pub resync: Duration,
    pub policy: Policy,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            policy: Policy::default(),
            limits: Limits {
                call_timeout: Duration::from_secs(120),
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
    /// When the next pass is due by the clock alone.
    pub wake_at: Option<Timestamp>,
    /// Deployment rows the pass read from the store (only those written since the last pass,
    /// but for the first pass and the resync).
    pub rows_read: u64,
}

pub struct Controller {
    store: Arc<Store>,
    reader: StoreReader,
    runtimes: Arc<Runtimes>,
    config: Config,
    clock: Clock,
    checks: BTreeMap<(String, u32), CheckState>,
    probes: Runner,
    reports: mpsc::UnboundedReceiver<ProbeReport>,
    executor: Executor,
    wake: Arc<Notify>,
    last: BTreeMap<DeploymentId, Outcome>,
    mirror: Mirror,
    metrics: Arc<crate::metrics::Metrics>,
    board: RuntimeBoard,
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
        let runtimes: Arc<Runtimes> =
            Arc::new(runtimes.into_iter().map(|r| (r.kind(), r)).collect());
        let executor = Executor::new(
            store.clone(),
            runtimes.clone(),
            config.limits,
            wake.clone(),
            clock.clone(),
        );
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
            last: BTreeMap::new(),
            mirror: Mirror::default(),
            metrics: Arc::default(),
            board: RuntimeBoard::default(),
        })
    }

    /// Records pass durations and probe outcomes into `metrics` (shared with the API).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes each runtime's availability into `board` (shared with the API).
    pub fn with_runtime_board(mut self, board: RuntimeBoard) -> Self {
        self.board = board;
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
            let wake_at = match self.pass().await {
                Ok(summary) => summary.wake_at,
                Err(error) => {
                    tracing::error!(error = %error, "reconcile pass failed; retrying shortly");
                    Some((self.clock)().plus(RETRY_AFTER_FAILURE))
                }
            };
            if !self.rest(wake_at, &mut shutdown).await {
                return Ok(());
            }
        }
    }

    /// Waits for a reason to run the next pass: a wake-up, a probe result that flips a check,
    /// `wake_at`, or the resync period. False when the agent is stopping.
    async fn rest(
        &mut self,
        wake_at: Option<Timestamp>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let resync = self.config.resync.to_std();
        let sleep = match wake_at {
            Some(at) => {
                let ms = u64::try_from(at.0.saturating_sub((self.clock)().0)).unwrap_or(0);
                std::time::Duration::from_millis(ms).min(resync)
            }
            None => resync,
        };
        let deadline = tokio::time::Instant::now() + sleep;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                _ = self.wake.notified() => return true,
                Some(report) = self.reports.recv() => {
                    if self.fold(report) {
                        return true;
                    }
                }
                () = crate::shutdown::stopped(shutdown) => return false,
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
        // Busy first: a deployment without a job now gets none until this pass starts one
        // (jobs only start from passes), and what a finished job wrote is read below; one
        // with a job is held.
        let busy = self.executor.busy();
        // The open revision before the rows: if a revision lands in between, the one read
        // here is superseded and settling it writes nothing.
        let open_revision = self.reader.open_revision()?;
        // Only a revision that may fail needs what it would be rolled back to.
        let last_good = match open_revision {
            Some(_) => self.reader.last_good_revision()?,
            None => None,
        };
        let rows_before = self.mirror.rows_read();
        self.mirror.refresh(&self.reader, now, self.config.resync)?;
        if let Some(seen) = self.mirror.seen() {
            self.store.consumed_changes(seen);
        }
        let observed = self.observe().await;
        self.track_runtimes(&observed, now);
        let decision = decide(&DecideInput {
            stored: self.mirror.stored(),
            memory: self.mirror.memory(),
            observed: &observed,
            policy: &self.config.policy,
            now,
            held: &busy,
            open_revision: open_revision.as_ref(),
            last_good: last_good.as_ref(),
            last: &self.last,
        });
        let Decision {
            actions,
            persist,
            revision,
            probes,
            outcomes,
            wake_at,
            purge,
        } = decision;
        let persisted = persist.len();
        // Logged once written (a stale one is not): only status changes, rare, are kept.
        let changes: Vec<_> = persist
            .iter()
            .filter(|(_, o)| o.status_change.is_some())
            .cloned()
            .collect();
        let acting = acting(&actions, &persist, &outcomes);
        let written = (persist, revision, purge.clone(), acting);
        let recorded = record(self.store.clone(), written, now).await?;
        log_status_changes(
            changes
                .iter()
                .filter(|(id, _)| !recorded.stale.contains(id)),
        );
        for id in &recorded.purged {
            tracing::info!(deployment = %id, "{id}: gone from the host and the repository; purged");
        }
        self.last.extend(outcomes);
        // A stale outcome was not written: the next pass decides on the new row and writes.
        for id in purge.iter().map(|(id, _)| id).chain(&recorded.stale) {
            self.last.remove(id);
        }
        if recorded.rolled_back {
            // The restore's deployments wait on nothing else (the one that failed is held).
            self.wake.notify_one();
        }
        if !recorded.stale.is_empty() {
            tracing::debug!(
                stale = recorded.stale.len(),
                "a revision changed deployments during the pass; deciding again"
            );
            self.wake.notify_one();
        }
        let actions: Vec<Action> = actions
            .into_iter()
            .filter(|a| !recorded.stale.contains(a.deployment()))
            .collect();
        let summary = PassSummary {
            actions: actions.len(),
            persisted,
            wake_at,
            rows_read: self.mirror.rows_read() - rows_before,
        };
        self.execute(actions);
        self.sync_probes(probes);
        Ok(summary)
    }

    /// Folds a probe report into the check states; true when it flipped the check (or was its
    /// first result).
    fn fold(&mut self, report: ProbeReport) -> bool {
        self.metrics.observe_probe(report.outcome.ok);
        let key = (report.runtime_id.clone(), report.check_index);
        // A check's first result always counts as a flip: until it, the instance is
        // unprobed and its health unknown.
        let (first, before) = match self.checks.get(&key) {
            Some(state) => (false, state.clone()),
            None => (true, self.remembered(&report)),
        };
        let after = readiness::record(
            &before,
            &report.check,
            report.started_at,
            report.outcome.ok,
            report.at,
            &report.outcome.message,
        );
        let flipped = first || readiness::flipped(&before, &after, &report.check);
        self.checks.insert(key, after);
        flipped
    }

    /// Where a check starts when this agent sees its first result: green since the time the
    /// store remembers for that instance (see `readiness::resume`), else nothing known.
    fn remembered(&self, report: &ProbeReport) -> CheckState {
        self.mirror
            .memory()
            .get(&report.deployment)
            .and_then(|m| m.instances.get(&report.runtime_id))
            .and_then(|i| i.green.get(&report.check_index))
            .map(|since| readiness::resume(*since, report.started_at))
            .unwrap_or_default()
    }

    async fn observe(&mut self) -> Observed {
        let mut runtimes = BTreeMap::new();
        for (kind, runtime) in self.runtimes.iter() {
            let listing =
                tokio::time::timeout(self.config.limits.call_timeout.to_std(), runtime.list())
                    .await;
            let observation = match listing {
                Ok(Ok(instances)) => RuntimeObservation::Listed(instances),
                Ok(Err(RuntimeError::Disabled(reason))) => RuntimeObservation::Disabled { reason },
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
                RuntimeObservation::Unavailable { .. } | RuntimeObservation::Disabled { .. } => {
                    Vec::new()
                }
            })
            .collect();
        self.checks.retain(|(id, _), _| live.contains(id));
        Observed {
            runtimes,
            checks: self.checks.clone(),
        }
    }

    /// Publishes each runtime's availability (see the free `track_runtimes`).
    fn track_runtimes(&self, observed: &Observed, now: Timestamp) {
        let mut board = self.board.write().unwrap_or_else(|p| p.into_inner());
        track_runtimes(&mut board, observed, now);
    }

    /// Hands each deployment's actions, in their planned order, to the executor, with the row
    /// they were decided on (an instance of no known deployment: none).
    fn execute(&self, actions: Vec<Action>) {
        let mut by_deployment: BTreeMap<DeploymentId, Vec<Action>> = BTreeMap::new();
        for action in actions {
            by_deployment
                .entry(action.deployment().clone())
                .or_default()
                .push(action);
        }
        for (deployment, actions) in by_deployment {
            let decided_on = self
                .last
                .get(&deployment)
                .map(|o| o.decided_on.clone())
                .unwrap_or_default();
            self.executor.spawn(deployment, decided_on, actions);
        }
    }

    fn sync_probes(&mut self, probes: Vec<ProbeTarget>) {
        let jobs = probes
            .into_iter()
            .filter_map(|p| {
                let runtime: Arc<dyn Runtime> = self.runtimes.get(&p.runtime)?.clone();
                Some(ProbeJob {
                    deployment: p.deployment,
                    instance: p.instance,
                    check_index: p.check_index,
                    check: p.check,
                    runtime,
                })
            })
            .collect();
        self.probes.sync(jobs);
    }
}

/// What a pass writes: outcomes, the open revision's new state, purges, and the decisions of
/// deployments that act without an outcome to write.
type Written = (
    Vec<(DeploymentId, Outcome)>,
    Option<crate::model::plan::RevisionMove>,
    Vec<(DeploymentId, DecidedOn)>,
    Vec<(DeploymentId, DecidedOn)>,
);

/// Writes what the pass decided, in one transaction (see `Store::record_pass`), when there is
/// anything to write or check.
async fn record(
    store: Arc<Store>,
    (persist, revision, purge, acting): Written,
    now: Timestamp,
) -> Result<Recorded, ControllerError> {
    if persist.is_empty() && revision.is_none() && purge.is_empty() && acting.is_empty() {
        return Ok(Recorded::default());
    }
    let recorded = tokio::task::spawn_blocking(move || {
        store.record_pass(persist, revision, purge, acting, now)
    })
    .await??;
    Ok(recorded)
}

/// The deployments with actions whose decision is not among `persist`: their rows are checked
/// with the pass's record all the same, so that a stale decision does not act.
fn acting(
    actions: &[Action],
    persist: &[(DeploymentId, Outcome)],
    outcomes: &BTreeMap<DeploymentId, Outcome>,
) -> Vec<(DeploymentId, DecidedOn)> {
    let written: std::collections::BTreeSet<&DeploymentId> =
        persist.iter().map(|(id, _)| id).collect();
    let mut acting: BTreeMap<DeploymentId, DecidedOn> = BTreeMap::new();
    for id in actions.iter().map(Action::deployment) {
        if let (false, Some(outcome)) = (written.contains(id), outcomes.get(id)) {
            acting.insert(id.clone(), outcome.decided_on.clone());
        }
    }
    acting.into_iter().collect()
}

/// Records each runtime's availability in `board`; an outage is logged once when it starts and
/// once when it ends, never per pass.
fn track_runtimes(
    board: &mut BTreeMap<RuntimeKind, RuntimeState>,
    observed: &Observed,
    now: Timestamp,
) {
    for (kind, observation) in &observed.runtimes {
        let previous = board.get(kind);
        let next = RuntimeState::after(previous, observation, now);
        let was_available = previous.is_none_or(|p| p.available);
        match (was_available, next.available) {
            (true, false) => {
                let reason = next.reason.as_deref().unwrap_or_default();
                tracing::warn!(runtime = %kind, reason, "runtime unavailable; its deployments hold until it answers");
            }
            (false, true) => {
                let away = previous.map_or(0, |p| now.0.saturating_sub(p.since.0) / 1000);
                tracing::info!(runtime = %kind, away_secs = away, "runtime available again");
            }
            (true, true) | (false, false) => {}
        }
        board.insert(*kind, next);
    }
}

/// One line per status change: the operator's view of what happened, never per tick.
fn log_status_changes<'a>(persist: impl IntoIterator<Item = &'a (DeploymentId, Outcome)>) {
    for (id, outcome) in persist {
        if let Some(change) = &outcome.status_change {
            tracing::info!(
                deployment = %id,
                from = %change.from,
                to = %change.to,
                reason = change.reason,
                "{id}: {} → {} ({})",
                change.from,
                change.to,
                change.message
            );
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.executor.abort_all();
    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::memory::Memory;
    use crate::model::plan::StatusChange;
    use crate::model::status::DeploymentStatus;
    use crate::model::time::Timestamp;

    /// A log sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn outcome(change: Option<(DeploymentStatus, DeploymentStatus)>) -> Outcome {
        Outcome {
            decided_on: Default::default(),
            stable: true,
            memory: Memory::fresh(DeploymentStatus::Running, Timestamp(0), 0, Timestamp(0)),
            status_change: change.map(|(from, to)| StatusChange {
                from,
                to,
                reason: "ready",
                message: "1 instances ready".into(),
            }),
            events: Vec::new(),
            runs: Vec::new(),
            health: None,
            ready: 1,
            desired: 1,
            waiting_on: None,
            instances: Vec::new(),
        }
    }

    fn capture(f: impl FnOnce()) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn a_runtime_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
        let listed = RuntimeObservation::Listed(Vec::new());
        let down = RuntimeObservation::Unavailable {
            reason: "connection refused".into(),
        };
        let passes = [&listed, &down, &down, &down, &listed, &listed];
        let mut board = BTreeMap::new();
        let log = capture(|| {
            for (i, observation) in passes.into_iter().enumerate() {
                let observed = Observed {
                    runtimes: BTreeMap::from([(RuntimeKind::Docker, observation.clone())]),
                    checks: BTreeMap::new(),
                };
                track_runtimes(&mut board, &observed, Timestamp(i as i64 * 1000));
            }
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("connection refused"),
            "{log}"
        );
        assert!(
            lines[1].contains("available again") && lines[1].contains("away_secs=3"),
            "{log}"
        );
        let state = &board[&RuntimeKind::Docker];
        assert!(state.available);
        assert_eq!(state.since, Timestamp(4000), "available since it came back");
    }

    #[test]
    fn a_status_change_is_one_info_line_and_nothing_else_is_logged() {
        let persist = vec![
            (
                DeploymentId::new("demo", "web"),
                outcome(Some((
                    DeploymentStatus::Creating,
                    DeploymentStatus::Running,
                ))),
            ),
            (DeploymentId::new("demo", "api"), outcome(None)),
        ];
        let log = capture(|| log_status_changes(&persist));
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].contains("INFO"), "{log}");
        assert!(
            lines[0].contains("demo/web: creating → running (1 instances ready)"),
            "{log}"
        );
    }
}
