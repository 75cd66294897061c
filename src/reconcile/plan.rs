//! PURE: the reconciler's one decision function. `plan` takes what should run (the stored
//! targets), what runs (runtime listings and health-check states), what the reconciler
//! remembers, the policy and `now`, and returns the runtime actions to take and, per
//! deployment, its next memory, status, health, instance states, events and what it waits on.
//!
//! Every rule of DESIGN.md §3.1 lives here, and nowhere else: the readiness gate, readiness and
//! rollout deadlines, liveness actions, the restart counter and its limit, retry backoff,
//! terminal stickiness, job outcomes, rolling updates. No I/O, no clock, no randomness: the
//! same input always gives the same plan.
//!
//! Invariants: a runtime that could not be listed gets no create and no remove; an instance
//! keel stopped on purpose, or that its runtime stopped while going away, is never counted as a
//! crash; no death is counted twice, and deaths seen in one pass are one incident for the
//! restart budget; an instance keel began to stop is stopped again until it is gone (a stop
//! survives an agent killed before it happened); during a rolling update at most
//! `replicas + 1` instances live and an old instance is stopped only when enough new ones are
//! ready to keep `replicas` ready.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::desired::{DeploymentId, InstanceSpec};
use crate::model::event::{EventKind, NotificationKind};
use crate::model::manifest::{ConfigData, DeploymentDecl, OnFailure, RuntimeKind, WorkloadKind};
use crate::model::memory::{InstanceMemory, Memory, Retry};
use crate::model::observed::{CheckState, ObservedInstance, Phase, RuntimeObservation};
pub use crate::model::plan::{
    Action, DecidedOn, InstanceView, Outcome, Plan, PlannedEvent, StatusChange, Stop, WaitingOn,
};
use crate::model::status::{DeploymentStatus, InstanceState, StatusClass};
use crate::model::time::Timestamp;
use crate::model::units::Duration;

use crate::model::backoff;

use super::{readiness, views};

mod cron;

/// The knobs of the lifecycle rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Deaths (and failed re-attempts) before `crash_loop_back_off` (workers) or `failed` (jobs).
    pub max_restart_count: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a deployment may stay `creating`, or a rolling update may take.
    pub rollout_deadline: Duration,
    /// How long a running instance keeps serving after it is marked stopping (see `Stop`).
    pub drain: Duration,
    /// How long a graceful stop may take before the runtime kills the instance.
    pub stop_grace: Duration,
    /// How long each new instance of a worker without readiness checks must run before the
    /// worker counts toward its revision's success (a deployment's `stable_after` wins).
    pub stable_after: Duration,
    /// Whether a revision that fails at run time is rolled back (see `rollback`).
    pub rollback: super::rollback::Mode,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_restart_count: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            rollout_deadline: Duration::from_secs(600),
            drain: Duration::from_secs(2),
            stop_grace: Duration::from_secs(10),
            stable_after: Duration::from_secs(10),
            rollback: super::rollback::Mode::On,
        }
    }
}

/// What should run for one deployment, as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub id: &'a DeploymentId,
    /// The stored row's id.
    pub row: &'a str,
    pub spec: &'a DeploymentDecl,
    /// The content of the configs its `type: config` volumes mount.
    pub mounted_configs: &'a BTreeMap<String, ConfigData>,
    pub generation: u64,
    /// `model::desired::template_hash` of the spec: instances with another template are old.
    pub template: &'a str,
    /// Whether the latest revision declares it (false once pruned).
    pub declared: bool,
}

/// Everything the host reports.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// One entry per runtime enabled on this host; a runtime without an entry is not enabled.
    pub runtimes: BTreeMap<RuntimeKind, RuntimeObservation>,
    /// Health-check states by (runtime id, check index).
    pub checks: BTreeMap<(String, u32), CheckState>,
}

/// The whole input of a pass.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub desired: &'a [Target<'a>],
    pub observed: &'a Observed,
    pub memory: &'a BTreeMap<DeploymentId, Memory>,
    pub policy: &'a Policy,
    pub now: Timestamp,
    /// Deployments left alone this pass (their previous actions are still running): no
    /// decision, and their instances are theirs, not orphans.
    pub held: &'a BTreeSet<DeploymentId>,
}

/// Decides one pass.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut by_deployment: BTreeMap<&DeploymentId, Vec<&ObservedInstance>> = BTreeMap::new();
    for observation in input.observed.runtimes.values() {
        match observation {
            RuntimeObservation::Listed(instances) => {
                for instance in instances {
                    by_deployment
                        .entry(&instance.deployment)
                        .or_default()
                        .push(instance);
                }
            }
            RuntimeObservation::Unavailable { .. } | RuntimeObservation::Disabled { .. } => {}
        }
    }
    let mut result = Plan::default();
    for target in input.desired {
        let instances = by_deployment.remove(target.id).unwrap_or_default();
        let (actions, outcome, due) = plan_deployment(input, target, instances);
        result.actions.extend(actions);
        result.outcomes.insert(target.id.clone(), outcome);
        result.wake_at = earliest(result.wake_at, due);
    }
    // Instances labelled for a deployment the store does not know: owned by keel, wanted by
    // nobody. Only listed runtimes reach here, so an unknown listing removes nothing.
    for (deployment, instances) in by_deployment {
        if input.held.contains(deployment) {
            continue;
        }
        for instance in instances {
            let running = !instance.phase.exited();
            result
                .actions
                .push(removal(instance, running, input.policy));
        }
    }
    result
}

/// The earlier of two optional due times.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Removes `instance` from the runtime that listed it, stopping it first when `stop_first`.
fn removal(instance: &ObservedInstance, stop_first: bool, policy: &Policy) -> Action {
    Action::Remove {
        runtime: instance.runtime,
        deployment: instance.deployment.clone(),
        runtime_id: instance.runtime_id.clone(),
        stop: stop_first.then_some(Stop {
            drain: policy.drain,
            grace: policy.stop_grace,
        }),
    }
}

fn plan_deployment<'a>(
    input: &'a PlanInput<'a>,
    target: &'a Target<'a>,
    instances: Vec<&'a ObservedInstance>,
) -> (Vec<Action>, Outcome, Option<Timestamp>) {
    let memory = input
        .memory
        .get(target.id)
        .cloned()
        .unwrap_or_else(|| Memory::fresh(DeploymentStatus::Pending, input.now, 0, input.now));
    let mut pass = Pass {
        target,
        checks: &input.observed.checks,
        policy: input.policy,
        now: input.now,
        before: memory.status,
        mem: memory,
        instances,
        actions: Vec::new(),
        events: Vec::new(),
        reason: None,
        waiting_on: None,
        incident_counted: false,
        runs: Vec::new(),
    };
    match input.observed.runtimes.get(&target.spec.runtime) {
        Some(RuntimeObservation::Listed(_)) => pass.run(),
        Some(
            RuntimeObservation::Unavailable { reason } | RuntimeObservation::Disabled { reason },
        ) => {
            pass.waiting_on = Some(WaitingOn::RuntimeUnavailable {
                reason: reason.clone(),
            });
        }
        None => pass.runtime_not_enabled(),
    }
    let due = pass.due();
    let (actions, outcome) = pass.finish();
    (actions, outcome, due)
}

/// One deployment's pass: the input, and the decisions accumulated so far.
struct Pass<'a> {
    target: &'a Target<'a>,
    checks: &'a BTreeMap<(String, u32), CheckState>,
    policy: &'a Policy,
    now: Timestamp,
    before: DeploymentStatus,
    mem: Memory,
    instances: Vec<&'a ObservedInstance>,
    actions: Vec<Action>,
    events: Vec<PlannedEvent>,
    reason: Option<(&'static str, String)>,
    waiting_on: Option<WaitingOn>,
    /// A death or liveness replacement was already counted this pass (one incident).
    incident_counted: bool,
    /// A cron job's runs that started, finished or were skipped this pass.
    runs: Vec<crate::model::run::Run>,
}

/// Where a deployment is headed this pass.
enum Goal {
    /// Nothing may run: pruned from the revision, or stopped by a liveness check.
    Gone,
    /// A terminal status: keep what runs, start nothing, until the spec changes.
    Hold,
    /// Converge to the spec.
    Run,
}

impl<'a> Pass<'a> {
    fn run(&mut self) {
        match self.spec().kind {
            WorkloadKind::CronJob => self.run_cron(),
            WorkloadKind::Worker | WorkloadKind::Job => self.run_workload(),
        }
    }

    /// A worker's or a job's pass.
    fn run_workload(&mut self) {
        self.leave_cron();
        self.forget_vanished();
        self.reap_exited();
        match self.goal() {
            Goal::Gone => self.tear_down(),
            Goal::Hold => {}
            Goal::Run => {
                self.absorb_failure();
                if self.goal_is_run() {
                    self.converge();
                    self.liveness();
                }
                if self.goal_is_run() {
                    self.settle_status();
                } else if matches!(self.goal(), Goal::Gone) {
                    self.tear_down();
                }
            }
        }
        // Last, so that an ordinal an unfinished stop still holds is not handed out again.
        self.resume_stops();
    }

    /// Instances keel began to stop in an earlier pass that still run — say the agent was
    /// killed between persisting the stop and doing it — are stopped and removed again.
    /// Removing is idempotent, so doing it twice is harmless; not doing it leaks them.
    fn resume_stops(&mut self) {
        let unfinished: Vec<&ObservedInstance> = self
            .instances
            .iter()
            .copied()
            .filter(|i| !i.phase.exited() && self.stopping(i))
            .collect();
        for instance in unfinished {
            self.remove(instance, true);
        }
    }

    fn goal(&self) -> Goal {
        if !self.target.declared || self.mem.status == DeploymentStatus::Deleted {
            return Goal::Gone;
        }
        match self.mem.status.class_for(self.spec().kind) {
            StatusClass::Terminal => Goal::Hold,
            StatusClass::Progressing | StatusClass::Settled | StatusClass::Retried => Goal::Run,
        }
    }

    /// When this deployment's decision next changes by the clock alone: its backoff ends, a
    /// green readiness check reaches `min_healthy_time`, or a readiness or rollout deadline
    /// passes. A candidate that turns out to change nothing costs one pass, so the deadlines
    /// are offered whenever the deployment converges rather than re-deriving when they apply.
    fn due(&self) -> Option<Timestamp> {
        if !self.goal_is_run() {
            return None;
        }
        if self.spec().kind == WorkloadKind::CronJob {
            return self.cron_due();
        }
        let deadline = self.policy.rollout_deadline;
        let mut due = vec![
            self.mem.status_since.plus(deadline),
            self.mem.generation_since.plus(deadline),
        ];
        due.extend(self.mem.retry.as_ref().map(|r| r.next_at));
        due.extend(self.stable_at());
        let needed = readiness::needed(&self.spec().health_checks);
        for instance in self.instances.iter().filter(|i| i.phase == Phase::Running) {
            for (index, check) in self.spec().health_checks.iter().enumerate() {
                let key = (
                    instance.runtime_id.clone(),
                    u32::try_from(index).unwrap_or(u32::MAX),
                );
                let green_since = self.checks.get(&key).and_then(|s| s.green_since);
                if let (true, Some(since)) = (check.readiness, green_since) {
                    due.push(since.plus(needed));
                }
            }
        }
        due.into_iter().filter(|at| *at > self.now).min()
    }

    fn goal_is_run(&self) -> bool {
        matches!(self.goal(), Goal::Run)
    }

    fn spec(&self) -> &'a DeploymentDecl {
        self.target.spec
    }

    fn replicas(&self) -> u32 {
        self.spec().replicas
    }

    fn set_status(&mut self, status: DeploymentStatus, reason: &'static str, message: String) {
        if self.mem.status != status {
            self.mem.status = status;
            self.mem.status_since = self.now;
            self.reason = Some((reason, message));
        }
    }

    fn event(&mut self, kind: EventKind, message: String, notify: Option<NotificationKind>) {
        self.events.push(PlannedEvent {
            kind,
            message,
            notify,
        });
    }

    fn instance_mem(&mut self, runtime_id: &str) -> &mut InstanceMemory {
        self.mem
            .instances
            .entry(runtime_id.to_owned())
            .or_insert_with(|| InstanceMemory::new(InstanceState::Created))
    }

    fn runtime_not_enabled(&mut self) {
        let message = format!(
            "runtime {} is not enabled on this host",
            self.spec().runtime
        );
        if self.target.declared {
            self.set_status(
                DeploymentStatus::Error,
                "runtime_not_enabled",
                message.clone(),
            );
        }
        self.waiting_on = Some(WaitingOn::RuntimeUnavailable { reason: message });
    }

    /// Drops memory of instances the runtime no longer lists.
    fn forget_vanished(&mut self) {
        let present: BTreeSet<&str> = self
            .instances
            .iter()
            .map(|i| i.runtime_id.as_str())
            .collect();
        self.mem
            .instances
            .retain(|id, _| present.contains(id.as_str()));
    }

    fn is_current(&self, instance: &ObservedInstance) -> bool {
        instance.template == self.target.template
    }

    /// Exited instances: intentional stops are cleaned up, job outcomes recorded, unexpected
    /// deaths counted once and cleaned up for replacement.
    fn reap_exited(&mut self) {
        let exited: Vec<&ObservedInstance> = self
            .instances
            .iter()
            .copied()
            .filter(|i| i.phase.exited())
            .collect();
        for instance in exited {
            let Some(reason) = instance.phase.exit_reason() else {
                continue;
            };
            let stopping = self.instance_mem(&instance.runtime_id).stopping;
            let is_job = self.spec().kind == WorkloadKind::Job && self.is_current(instance);
            let succeeded = instance.phase.succeeded();
            if stopping {
                let m = self.instance_mem(&instance.runtime_id);
                m.state = InstanceState::Stopped;
                self.remove(instance, false);
            } else if instance.interrupted && !(is_job && succeeded) {
                self.interrupted(instance, reason);
                self.remove(instance, false);
            } else if is_job {
                self.job_exit(instance, reason);
            } else {
                self.unexpected_death(instance, reason);
                self.remove(instance, false);
            }
        }
    }

    fn job_exit(&mut self, instance: &ObservedInstance, reason: String) {
        let m = self.instance_mem(&instance.runtime_id);
        let first_time = !m.counted;
        m.counted = true;
        if instance.phase.succeeded() {
            m.state = InstanceState::Stopped;
            m.reason = Some("completed".to_owned());
            return;
        }
        m.state = InstanceState::Error;
        m.reason = Some(reason.clone());
        if first_time && self.goal_is_run() {
            let message = format!(
                "job instance {} {reason}{}",
                instance.runtime_id,
                last_output(instance)
            );
            self.set_status(DeploymentStatus::Failed, "job_failed", message);
        }
    }

    /// An instance its runtime stopped while going away (a daemon stop or restart): not a
    /// crash, replaced without backoff.
    fn interrupted(&mut self, instance: &ObservedInstance, reason: String) {
        let m = self.instance_mem(&instance.runtime_id);
        let first_time = !m.counted;
        m.counted = true;
        m.state = InstanceState::Stopped;
        m.reason = Some(format!("stopped by its runtime going away ({reason})"));
        if first_time {
            let message = format!(
                "instance {} {reason} when its runtime went away; replacing it (not a crash)",
                instance.runtime_id
            );
            self.event(EventKind::InstanceInterrupted, message, None);
        }
    }

    fn unexpected_death(&mut self, instance: &ObservedInstance, reason: String) {
        let m = self.instance_mem(&instance.runtime_id);
        if m.counted {
            return;
        }
        m.counted = true;
        m.state = InstanceState::Error;
        m.reason = Some(reason.clone());
        let what = format!("instance {} {reason}", instance.runtime_id);
        let counted = self.count_restart(&what);
        let message = format!("{what} ({counted}){}", last_output(instance));
        self.event(EventKind::InstanceDied, message, None);
    }

    /// Counts one incident toward the restart budget — at most one per pass, however many
    /// instances died in it — backs off the replacement and applies the limit. Says how it
    /// was counted, for the event.
    fn count_restart(&mut self, what: &str) -> String {
        let max = self.policy.max_restart_count;
        if self.incident_counted {
            return format!(
                "same incident as restart {} of {max}",
                self.mem.restart_count
            );
        }
        self.incident_counted = true;
        self.mem.restart_count = self.mem.restart_count.saturating_add(1);
        let count = self.mem.restart_count;
        self.mem.retry = Some(Retry {
            attempts: count,
            next_at: backoff::next_attempt(
                self.now,
                count,
                self.policy.backoff_base,
                self.policy.backoff_max,
            ),
            reason: Some(what.to_owned()),
        });
        self.check_restart_limit(what.to_owned());
        format!("restart {count} of {max}")
    }

    /// At `max_restart_count`: workers → `crash_loop_back_off`, jobs → `failed`.
    fn check_restart_limit(&mut self, last: String) {
        if self.mem.restart_count < self.policy.max_restart_count || !self.goal_is_run() {
            return;
        }
        let message = format!("restarted {} times; last: {last}", self.mem.restart_count);
        match self.spec().kind {
            WorkloadKind::Worker => self.set_status(
                DeploymentStatus::CrashLoopBackOff,
                "max_restart_count",
                message,
            ),
            WorkloadKind::Job | WorkloadKind::CronJob => {
                self.set_status(DeploymentStatus::Failed, "max_restart_count", message)
            }
        }
    }

    fn remove(&mut self, instance: &ObservedInstance, stop_first: bool) {
        let already = self.actions.iter().any(|a| {
            matches!(a, Action::Remove { runtime_id, .. } if *runtime_id == instance.runtime_id)
        });
        if already {
            return;
        }
        self.instance_mem(&instance.runtime_id).stopping = true;
        self.actions
            .push(removal(instance, stop_first, self.policy));
    }

    fn live(&self) -> Vec<&'a ObservedInstance> {
        self.instances
            .iter()
            .copied()
            .filter(|i| !i.phase.exited() && !self.stopping(i))
            .collect()
    }

    /// Whether keel began to stop `instance` (its exit is not a death).
    fn stopping(&self, instance: &ObservedInstance) -> bool {
        self.mem
            .instances
            .get(&instance.runtime_id)
            .is_some_and(|m| m.stopping)
    }

    /// Removes every instance `which` picks, stopping those that still run.
    fn remove_all(&mut self, which: impl Fn(&ObservedInstance) -> bool) {
        let picked: Vec<&ObservedInstance> = self
            .instances
            .iter()
            .copied()
            .filter(|i| which(i))
            .collect();
        for instance in picked {
            let running = !instance.phase.exited();
            self.remove(instance, running);
        }
    }

    fn tear_down(&mut self) {
        // Exited instances too (a job's finished ones): nothing of a deployment that is gone
        // stays behind, and its row is purged once the runtime lists none.
        self.remove_all(|_| true);
        let message = if self.target.declared {
            "stopped".to_owned()
        } else {
            "removed from the revision".to_owned()
        };
        self.set_status(DeploymentStatus::Deleted, "deleted", message);
        self.mem.retry = None;
    }

    /// Turns the failure an action reported into a status.
    fn absorb_failure(&mut self) {
        let Some(failure) = self.mem.last_failure.take() else {
            return;
        };
        self.event(EventKind::ActionFailed, failure.message.clone(), None);
        match failure.status.class() {
            StatusClass::Terminal => {
                self.set_status(failure.status, "action_failed", failure.message)
            }
            StatusClass::Retried => {
                let attempts = self
                    .mem
                    .retry
                    .as_ref()
                    .map_or(0, |r| r.attempts)
                    .saturating_add(1);
                if attempts > 1 {
                    self.mem.restart_count = self.mem.restart_count.saturating_add(1);
                }
                self.mem.retry = Some(Retry {
                    attempts,
                    next_at: backoff::next_attempt(
                        self.now,
                        attempts,
                        self.policy.backoff_base,
                        self.policy.backoff_max,
                    ),
                    reason: Some(failure.message.clone()),
                });
                self.set_status(failure.status, "action_failed", failure.message.clone());
                self.check_restart_limit(failure.message);
            }
            // Executors report failure statuses only; anything else carries no decision.
            StatusClass::Progressing | StatusClass::Settled => {}
        }
    }

    /// Waiting to retry until `until`, with what the last attempt said.
    fn backoff(&self, until: Timestamp) -> WaitingOn {
        WaitingOn::Backoff {
            until,
            reason: self.mem.retry.as_ref().and_then(|r| r.reason.clone()),
        }
    }

    fn in_backoff(&self) -> Option<Timestamp> {
        self.mem
            .retry
            .as_ref()
            .map(|r| r.next_at)
            .filter(|at| *at > self.now)
    }

    fn converge(&mut self) {
        let live = self.live();
        let (current, old): (Vec<_>, Vec<_>) = live.into_iter().partition(|i| self.is_current(i));
        if self.in_backoff().is_none() {
            for instance in current.iter().filter(|i| i.phase == Phase::Created) {
                self.actions.push(Action::Start {
                    runtime: instance.runtime,
                    deployment: self.target.id.clone(),
                    runtime_id: instance.runtime_id.clone(),
                });
                self.instance_mem(&instance.runtime_id).state = InstanceState::Starting;
            }
        }
        if old.is_empty() {
            self.scale(&current);
        } else {
            self.rollout(&current, &old);
        }
    }

    /// Creates missing instances (after any backoff) and removes surplus ones.
    fn scale(&mut self, current: &[&'a ObservedInstance]) {
        let replicas = self.replicas() as usize;
        let done = match self.spec().kind {
            WorkloadKind::Job | WorkloadKind::CronJob => self.completed_job_instances(),
            WorkloadKind::Worker => 0,
        };
        let have = current.len() + done;
        if have < replicas {
            self.create(replicas - have, current);
        } else if current.len() > replicas.saturating_sub(done) {
            let surplus = current.len() - replicas.saturating_sub(done);
            let mut victims = current.to_vec();
            victims.sort_by_key(|i| (self.is_ready(i), std::cmp::Reverse(i.ordinal)));
            for instance in victims.into_iter().take(surplus) {
                self.remove(instance, true);
            }
            self.event(
                EventKind::Scaled,
                format!("scaled down to {replicas} instances"),
                None,
            );
        }
    }

    fn completed_job_instances(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| self.is_current(i) && i.phase.succeeded())
            .count()
    }

    fn create(&mut self, count: usize, current: &[&ObservedInstance]) {
        if let Some(until) = self.in_backoff() {
            self.waiting_on = Some(self.backoff(until));
            return;
        }
        // Names are `…-<generation>-<ordinal>`: an ordinal stays taken while any instance of this
        // generation still holds it, unless this very plan removes that instance first.
        let removed: BTreeSet<&str> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove { runtime_id, .. } => Some(runtime_id.as_str()),
                Action::Create { .. } | Action::Start { .. } => None,
            })
            .collect();
        let taken: BTreeSet<u32> = current
            .iter()
            .copied()
            .chain(
                self.instances
                    .iter()
                    .copied()
                    .filter(|i| i.generation == self.target.generation),
            )
            .filter(|i| !removed.contains(i.runtime_id.as_str()))
            .map(|i| i.ordinal)
            .collect();
        let ordinals: Vec<u32> = (0u32..)
            .filter(|o| !taken.contains(o))
            .take(count)
            .collect();
        for ordinal in ordinals {
            self.actions.push(Action::Create {
                runtime: self.spec().runtime,
                instance: Box::new(self.instance_spec(ordinal, None)),
            });
        }
    }

    /// What to create for one instance of the current generation (of cron job run `run`).
    fn instance_spec(&self, ordinal: u32, run: Option<u64>) -> InstanceSpec {
        InstanceSpec {
            deployment: self.target.id.clone(),
            generation: self.target.generation,
            ordinal,
            run,
            template: self.target.template.to_owned(),
            spec: self.spec().clone(),
            mounted_configs: self.target.mounted_configs.clone(),
        }
    }

    fn is_ready(&self, instance: &ObservedInstance) -> bool {
        self.readiness_of(instance).is_ok()
    }

    fn readiness_of(&self, instance: &ObservedInstance) -> Result<(), readiness::Waiting> {
        let not_started = readiness::Waiting {
            check: 0,
            green_for: Duration::from_millis(0),
            needed: readiness::needed(&self.spec().health_checks),
        };
        match instance.phase {
            Phase::Running => readiness::gate(
                &self.spec().health_checks,
                |check| {
                    self.checks
                        .get(&(instance.runtime_id.clone(), check))
                        .cloned()
                },
                self.now,
            ),
            Phase::Created | Phase::Exited { .. } => Err(not_started),
        }
    }

    /// Replaces the previous generation (`old`) with the current one.
    fn rollout(&mut self, current: &[&'a ObservedInstance], old: &[&'a ObservedInstance]) {
        let replicas = self.replicas() as usize;
        let current_ready = current.iter().filter(|i| self.is_ready(i)).count();
        self.waiting_on = Some(WaitingOn::Rollout {
            ready: u32::try_from(current_ready).unwrap_or(u32::MAX),
            total: self.replicas(),
        });
        if self.spec().health_checks.is_empty() || self.spec().kind == WorkloadKind::Job {
            // Nothing can tell when the new generation serves: replace at once.
            for instance in old {
                self.remove(instance, true);
            }
            self.scale(current);
            return;
        }
        if self.rollout_deadline_passed() && current_ready < replicas {
            return self.fail_rollout(current, old.len());
        }
        if self.spec().ports.is_empty() {
            self.surge_step(current, old, current_ready);
        } else {
            self.one_by_one_step(current, old, current_ready);
        }
    }

    fn rollout_deadline_passed(&self) -> bool {
        self.now >= self.mem.generation_since.plus(self.policy.rollout_deadline)
    }

    fn fail_rollout(&mut self, current: &[&'a ObservedInstance], old_count: usize) {
        for instance in current {
            self.remove(instance, true);
        }
        let message = format!(
            "generation {} was not ready within {}; {old_count} instances of the previous generation keep serving",
            self.target.generation, self.policy.rollout_deadline
        );
        self.event(
            EventKind::RolloutFailed,
            message.clone(),
            Some(NotificationKind::DeploymentRollingUpdate),
        );
        self.set_status(DeploymentStatus::Failed, "rollout_failed", message);
        self.waiting_on = None;
    }

    /// Surge 1: at most `replicas + 1` live; an old instance goes only when the ready count
    /// stays at `replicas` without it (or when it does not serve anyway).
    fn surge_step(
        &mut self,
        current: &[&'a ObservedInstance],
        old: &[&'a ObservedInstance],
        current_ready: usize,
    ) {
        let replicas = self.replicas() as usize;
        let (old_ready, old_unready): (Vec<_>, Vec<_>) =
            old.iter().copied().partition(|i| self.is_ready(i));
        for instance in &old_unready {
            self.remove(instance, true);
        }
        let mut old_serving = old_ready.len();
        if current_ready + old_serving > replicas {
            if let Some(victim) = old_ready.iter().max_by_key(|i| i.ordinal) {
                self.replace_old(victim, current_ready);
                old_serving -= 1;
            }
        }
        if current.len() < replicas && current.len() + old_serving < replicas + 1 {
            self.create(1, current);
        }
    }

    /// Published host ports cannot be shared: stop an old instance, then start a new one.
    fn one_by_one_step(
        &mut self,
        current: &[&'a ObservedInstance],
        old: &[&'a ObservedInstance],
        current_ready: usize,
    ) {
        let replicas = self.replicas() as usize;
        if current.len() > current_ready {
            return;
        }
        if current.len() < replicas && current.len() + old.len() < replicas {
            self.create(1, current);
        } else if let Some(victim) = old.iter().max_by_key(|i| i.ordinal) {
            self.replace_old(victim, current_ready);
            let port = self.spec().ports.first().map_or(0, |p| p.published);
            self.event(
                EventKind::RollingUpdate,
                format!("replacing instances one at a time: host port {port} cannot be shared by two generations"),
                None,
            );
        }
    }

    fn replace_old(&mut self, victim: &ObservedInstance, current_ready: usize) {
        self.remove(victim, true);
        let message = format!(
            "stopping {} of generation {} ({current_ready}/{} of generation {} ready)",
            victim.runtime_id,
            victim.generation,
            self.replicas(),
            self.target.generation
        );
        self.event(
            EventKind::RollingUpdate,
            message,
            Some(NotificationKind::DeploymentRollingUpdate),
        );
    }

    /// Liveness checks, once running: a failure streak at `threshold` fires `on_failure` once.
    fn liveness(&mut self) {
        if self.mem.status != DeploymentStatus::Running || self.spec().kind == WorkloadKind::Job {
            return;
        }
        for instance in self.live() {
            for (index, check) in self.spec().health_checks.iter().enumerate() {
                if check.readiness {
                    continue;
                }
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let state = self
                    .checks
                    .get(&(instance.runtime_id.clone(), index))
                    .cloned()
                    .unwrap_or_default();
                let failures = state.consecutive_failures;
                let m = self.instance_mem(&instance.runtime_id);
                if failures == 0 {
                    m.fired.remove(&index);
                } else if readiness::failing(&state, check) && m.fired.insert(index) {
                    self.fire(instance, index, check.on_failure, failures);
                }
            }
        }
    }

    fn fire(&mut self, instance: &ObservedInstance, index: u32, action: OnFailure, failures: u32) {
        let what = format!(
            "liveness check {index} of {} failed {failures} times",
            instance.runtime_id
        );
        let notify = Some(NotificationKind::DeploymentHealthCheckFailed);
        match action {
            OnFailure::Restart => {
                // A replacement keel forces counts like a crash: a worker that never stays
                // live reaches `crash_loop_back_off` instead of cycling forever.
                self.remove(instance, true);
                let counted = self.count_restart(&what);
                self.event(
                    EventKind::HealthCheckFailed,
                    format!("{what}: restarting the instance ({counted})"),
                    notify,
                );
            }
            OnFailure::Stop => {
                self.event(
                    EventKind::HealthCheckFailed,
                    format!("{what}: stopping the deployment"),
                    notify,
                );
                self.set_status(DeploymentStatus::Deleted, "liveness_stop", what);
            }
            OnFailure::Alert => self.event(EventKind::HealthCheckFailed, what, notify),
        }
    }

    /// Moves a converging deployment along pending → creating → running (or completed), and
    /// applies the readiness deadline.
    fn settle_status(&mut self) {
        let live = self.live();
        let current: Vec<_> = live
            .iter()
            .copied()
            .filter(|i| self.is_current(i))
            .collect();
        let old = live.len() - current.len();
        let creating = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Create { .. } | Action::Start { .. }));
        match self.spec().kind {
            WorkloadKind::Job | WorkloadKind::CronJob => self.settle_job(&current, creating),
            WorkloadKind::Worker => self.settle_worker(&current, old, creating),
        }
    }

    fn settle_job(&mut self, current: &[&ObservedInstance], creating: bool) {
        let replicas = self.replicas() as usize;
        if self.completed_job_instances() >= replicas {
            self.mem.retry = None;
            self.set_status(
                DeploymentStatus::Completed,
                "job_completed",
                "every instance exited 0".to_owned(),
            );
        } else if current.iter().any(|i| i.phase == Phase::Running) && !creating {
            self.set_status(
                DeploymentStatus::Running,
                "started",
                "job instances are running".to_owned(),
            );
        } else if self.mem.status.class() == StatusClass::Retried {
            self.hold_retried(creating);
        } else if creating || !current.is_empty() {
            self.leave_retry_for_creating();
        }
    }

    fn settle_worker(&mut self, current: &[&ObservedInstance], old: usize, creating: bool) {
        let replicas = self.replicas();
        let ready = current.iter().filter(|i| self.is_ready(i)).count();
        let all_ready =
            old == 0 && current.len() == replicas as usize && ready == replicas as usize;
        if all_ready && self.mem.last_failure.is_none() {
            self.mem.retry = None;
            let message = match readiness::has_readiness_checks(&self.spec().health_checks) {
                true => format!("{replicas} instances ready"),
                false => format!("{replicas} instances running"),
            };
            self.set_status(DeploymentStatus::Running, "ready", message);
            return;
        }
        match self.mem.status.class() {
            StatusClass::Progressing => {
                if creating || !current.is_empty() || old > 0 {
                    self.leave_retry_for_creating();
                }
                self.readiness_deadline(current, old);
            }
            StatusClass::Retried => self.hold_retried(creating),
            StatusClass::Settled | StatusClass::Terminal => {}
        }
        self.explain_wait(current);
    }

    /// A retried status holds while its action is attempted again — a re-attempt is not news,
    /// its outcome is — and gives way to `creating` once every instance it owed was made: one
    /// of the current spec that exited since (a crash after a good pull) counts, so the status
    /// never blames the action for what the instance did.
    fn hold_retried(&mut self, creating: bool) {
        let made = self.instances.iter().filter(|i| self.is_current(i)).count();
        if !creating && made >= self.replicas() as usize {
            return self.leave_retry_for_creating();
        }
        if let (None, Some(until)) = (&self.waiting_on, self.in_backoff()) {
            self.waiting_on = Some(self.backoff(until));
        }
    }

    fn leave_retry_for_creating(&mut self) {
        let retrying = self.mem.status.class() == StatusClass::Retried;
        let message = match (&self.mem.retry, retrying) {
            (Some(_), true) => "the retried action went through; creating instances".to_owned(),
            (Some(_), false) | (None, true) | (None, false) => "creating instances".to_owned(),
        };
        self.set_status(DeploymentStatus::Creating, "creating", message);
    }

    fn readiness_deadline(&mut self, current: &[&ObservedInstance], old: usize) {
        if old > 0 || self.mem.status != DeploymentStatus::Creating {
            return;
        }
        if self.now < self.mem.status_since.plus(self.policy.rollout_deadline) {
            return;
        }
        let ready = current.iter().filter(|i| self.is_ready(i)).count();
        let message = format!(
            "{ready} of {} instances ready after {}",
            self.replicas(),
            self.policy.rollout_deadline
        );
        self.event(EventKind::ReadinessDeadlineExceeded, message.clone(), None);
        self.set_status(
            DeploymentStatus::Failed,
            "readiness_deadline_exceeded",
            message,
        );
    }

    fn explain_wait(&mut self, current: &[&ObservedInstance]) {
        if self.waiting_on.is_some() || self.mem.status != DeploymentStatus::Creating {
            return;
        }
        let running = current.iter().filter(|i| i.phase == Phase::Running).count();
        for instance in current.iter().filter(|i| i.phase == Phase::Running) {
            if let Err(w) = self.readiness_of(instance) {
                self.waiting_on = Some(WaitingOn::Readiness {
                    instance: instance.runtime_id.clone(),
                    check: w.check,
                    green_for: w.green_for,
                    needed: w.needed,
                });
                return;
            }
        }
        self.waiting_on = Some(WaitingOn::Instances {
            running: u32::try_from(running).unwrap_or(u32::MAX),
            desired: self.replicas(),
        });
    }

    /// Derives instance states and health, and packs the outcome.
    fn finish(mut self) -> (Vec<Action>, Outcome) {
        let mut views = Vec::new();
        let mut ready = 0u32;
        for instance in self.instances.clone() {
            let state = self.instance_state(instance);
            if state == InstanceState::Ready {
                ready += 1;
            }
            self.remember_green(instance);
            let m = self.instance_mem(&instance.runtime_id);
            m.state = state;
            let (exit_code, oom_killed) = match instance.phase {
                Phase::Exited {
                    exit_code,
                    oom_killed,
                } => (Some(exit_code), oom_killed),
                Phase::Created | Phase::Running => (None, false),
            };
            views.push(InstanceView {
                runtime_id: instance.runtime_id.clone(),
                generation: instance.generation,
                ordinal: instance.ordinal,
                state,
                reason: m.reason.clone(),
                ip: instance.ip.map(|ip| ip.to_string()),
                started_at: instance.started_at,
                exit_code,
                oom_killed,
            });
        }
        let desired = if self.mem.status == DeploymentStatus::Deleted {
            0
        } else {
            self.replicas()
        };
        let unprobed = self.unprobed();
        let health = match unprobed {
            0 => views::health(self.spec().kind, self.mem.status, ready, desired),
            _ => {
                self.waiting_on.get_or_insert(WaitingOn::FirstProbe {
                    instances: unprobed,
                });
                None
            }
        };
        let stable = self.stable();
        if !stable && self.waiting_on.is_none() && self.mem.status == DeploymentStatus::Running {
            self.waiting_on = self.stabilizing();
        }
        let status_change = self.reason.take().map(|(reason, message)| StatusChange {
            from: self.before,
            to: self.mem.status,
            reason,
            message,
        });
        let outcome = Outcome {
            decided_on: DecidedOn {
                row: self.target.row.to_owned(),
                generation: self.target.generation,
                declared: self.target.declared,
            },
            memory: self.mem,
            stable,
            status_change: status_change.filter(|c| c.from != c.to),
            events: self.events,
            runs: self.runs,
            health,
            ready,
            desired,
            waiting_on: self.waiting_on,
            instances: views,
        };
        // The order to run them in; stable, so the rules' own order holds within a kind.
        self.actions.sort_by_key(Action::order);
        (self.actions, outcome)
    }

    fn instance_state(&self, instance: &ObservedInstance) -> InstanceState {
        let remembered = self.mem.instances.get(&instance.runtime_id);
        if remembered.is_some_and(|m| m.stopping) && !instance.phase.exited() {
            // Still running, but keel is stopping it: no longer counted as serving, even
            // before the stop happens — and not called stopped until the runtime says so.
            return InstanceState::Stopping;
        }
        if instance.phase == Phase::Running && self.liveness_failing(instance) {
            return InstanceState::Started;
        }
        match instance.phase {
            Phase::Exited { .. } => remembered.map_or(InstanceState::Stopped, |m| m.state),
            Phase::Created => remembered
                .filter(|m| m.state == InstanceState::Starting)
                .map_or(InstanceState::Created, |m| m.state),
            Phase::Running
                if self.spec().kind.runs_to_completion() || !self.is_current(instance) =>
            {
                if self.is_ready(instance) {
                    InstanceState::Ready
                } else {
                    InstanceState::Started
                }
            }
            Phase::Running if self.is_ready(instance) => InstanceState::Ready,
            Phase::Running => InstanceState::Started,
        }
    }
}

impl Pass<'_> {
    /// Whether one of the instance's liveness checks is failing (at its threshold): such an
    /// instance runs but is not counted ready, so the deployment is not `healthy`.
    fn liveness_failing(&self, instance: &ObservedInstance) -> bool {
        self.spec()
            .health_checks
            .iter()
            .enumerate()
            .filter(|(_, check)| !check.readiness)
            .any(|(index, check)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                self.checks
                    .get(&(instance.runtime_id.clone(), index))
                    .is_some_and(|state| readiness::failing(state, check))
            })
    }

    /// Keeps, in the instance's memory, since when each of its readiness checks has been green
    /// as this pass knows it (one not reported since the agent started keeps what was
    /// remembered): the store has it when an agent starts again.
    fn remember_green(&mut self, instance: &ObservedInstance) {
        let known: Vec<(u32, Option<Timestamp>)> = self
            .spec()
            .health_checks
            .iter()
            .enumerate()
            .filter(|(_, check)| check.readiness)
            .filter_map(|(index, _)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let state = self.checks.get(&(instance.runtime_id.clone(), index))?;
                Some((index, state.green_since))
            })
            .collect();
        let m = self.instance_mem(&instance.runtime_id);
        for (index, green_since) in known {
            match green_since {
                Some(since) => m.green.insert(index, since),
                None => m.green.remove(&index),
            };
        }
    }

    /// Whether the deployment counts toward its revision's success: a worker once `running`
    /// with all its replicas up, each for its stabilization window (see `stable_at`) — one
    /// that died inside it holds the revision back; a job or cron job by its status alone
    /// (its exit code decides).
    fn stable(&self) -> bool {
        match self.spec().kind {
            WorkloadKind::Worker => {
                let up = self
                    .live()
                    .into_iter()
                    .filter(|i| i.phase == Phase::Running && self.is_current(i))
                    .count();
                self.mem.status == DeploymentStatus::Running
                    && up >= self.replicas() as usize
                    && self.stable_at().is_none()
            }
            WorkloadKind::Job | WorkloadKind::CronJob => true,
        }
    }

    /// How long a new instance must run before it counts as stable: the deployment's
    /// `stable_after`, else the agent's; nothing when readiness checks decide.
    fn stability_window(&self) -> Option<Duration> {
        let spec = self.spec();
        let gated = readiness::has_readiness_checks(&spec.health_checks);
        let worker = spec.kind == WorkloadKind::Worker;
        (worker && !gated).then(|| spec.stable_after.unwrap_or(self.policy.stable_after))
    }

    /// When the last running instance of the current spec will have been up for the window
    /// (`None` once they all have, or when no window applies). A runtime that does not say
    /// when an instance started cannot hold the revision back on it.
    fn stable_at(&self) -> Option<Timestamp> {
        let window = self.stability_window()?;
        self.live()
            .into_iter()
            .filter(|i| i.phase == Phase::Running && self.is_current(i))
            .filter_map(|i| i.started_at.map(|at| at.plus(window)))
            .filter(|at| *at > self.now)
            .max()
    }

    /// What a running worker that is not stable yet waits for.
    fn stabilizing(&self) -> Option<WaitingOn> {
        Some(WaitingOn::Stabilizing {
            needed: self.stability_window()?,
            until: self.stable_at()?,
        })
    }

    /// Running, current instances with a readiness check that has not reported yet (as after
    /// an agent restart): until it does, whether they serve is unknown, not "no".
    fn unprobed(&self) -> u32 {
        let unprobed = self
            .live()
            .into_iter()
            .filter(|i| i.phase == Phase::Running && self.is_current(i))
            .filter(|i| {
                self.spec()
                    .health_checks
                    .iter()
                    .enumerate()
                    .filter(|(_, check)| check.readiness)
                    .any(|(index, _)| {
                        let index = u32::try_from(index).unwrap_or(u32::MAX);
                        !self.checks.contains_key(&(i.runtime_id.clone(), index))
                    })
            })
            .count();
        u32::try_from(unprobed).unwrap_or(u32::MAX)
    }
}

/// `; last output: …` with what the instance printed last, when its runtime kept it.
fn last_output(instance: &ObservedInstance) -> String {
    match instance.last_output.as_deref().map(str::trim) {
        Some(output) if !output.is_empty() => format!("; last output: {output}"),
        Some(_) | None => String::new(),
    }
}
