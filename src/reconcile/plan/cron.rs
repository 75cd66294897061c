//! PURE: a cron job's pass — the planner's rules for `kind: cronjob`, over the same `Pass` as
//! workers and jobs. From the schedule, `now` and what the cron memory says is under way, it
//! decides which due time starts a run, which is skipped (and why), which runs finished and
//! how, which finished runs' instances are kept for their logs, the deployment's status and
//! when the loop must wake for the next due time.
//!
//! Rules: each due time is decided once (`CronMemory::last_due`), and a generation owes
//! nothing from before it was stored (a schedule change or a resume starts afresh); of several
//! missed ones (the agent was down) only the latest may still start — the others are recorded
//! as one skipped run — and only within `starting_deadline` of its due time; `concurrency`
//! says what a due time does while a run is under way (`forbid` skips it, `allow` starts beside
//! it, `replace` stops the running one, recorded failed). A run is `completed` when as many
//! instances as it started exited 0, `failed` as soon as one did not (its siblings are
//! stopped), one vanished, or an action for it failed. The status is `running` while a run is
//! under way, else the last finished run's (`completed`/`failed`), across spec changes too; a
//! skipped run leaves it as it was. History keeps instances by their run's recorded outcome.
//! `replicas: 0` suspends the schedule. Nothing here reads a clock.

use std::collections::BTreeSet;

use crate::model::event::EventKind;
use crate::model::manifest::Concurrency;
use crate::model::memory::CronMemory;
use crate::model::observed::{ObservedInstance, Phase};
use crate::model::run::{Run, RunOutcome};
use crate::model::schedule::Schedule;
use crate::model::status::{DeploymentStatus, InstanceState};
use crate::model::time::Timestamp;

use super::{last_output, Goal, Pass, WaitingOn};

impl<'a> Pass<'a> {
    /// A cron job's pass.
    pub(super) fn run_cron(&mut self) {
        self.forget_vanished();
        if matches!(self.goal(), Goal::Gone) {
            self.tear_down_cron();
            return;
        }
        let schedule = match self.cron_schedule() {
            Ok(schedule) => schedule,
            Err(message) => {
                self.set_status(DeploymentStatus::ConfigError, "bad_schedule", message);
                return;
            }
        };
        let failure = self.mem.last_failure.take().map(|f| f.message);
        if let Some(message) = &failure {
            self.event(EventKind::ActionFailed, message.clone(), None);
        }
        self.finish_runs(failure);
        self.start_created_runs();
        self.remove_strays();
        if self.replicas() > 0 {
            self.schedule_runs(&schedule);
        }
        self.prune_history();
        self.mark_finished_instances();
        self.settle_cron_status();
        self.mem.cron.next_due = match self.replicas() {
            0 => None,
            _ => schedule.next_after(self.now),
        };
        if self.mem.cron.active.is_empty() {
            self.waiting_on = Some(match self.mem.cron.next_due {
                Some(at) => WaitingOn::NextRun { at },
                None => WaitingOn::Suspended,
            });
        }
        self.resume_stops();
    }

    /// A deployment that is not (or no longer) a cron job: runs under way end, run instances
    /// go (stopped on purpose, so never counted as deaths by the new kind's rules) and the
    /// schedule is forgotten; the run numbering is kept, should it become one again.
    pub(super) fn leave_cron(&mut self) {
        let under_way: Vec<u64> = self.mem.cron.active.keys().copied().collect();
        for n in under_way {
            let reason = format!("the deployment is now a {}", self.spec().kind);
            self.end_run(n, RunOutcome::Failed, None, Some(reason));
        }
        self.remove_all(|i| i.run.is_some());
        self.mem.cron = CronMemory {
            last_run: self.mem.cron.last_run,
            ..CronMemory::default()
        };
    }

    /// When the loop must look again by the clock alone: the next due time.
    pub(super) fn cron_due(&self) -> Option<Timestamp> {
        self.mem.cron.next_due.filter(|at| *at > self.now)
    }

    fn cron_schedule(&self) -> Result<Schedule, String> {
        let expression = self.spec().schedule.as_deref().unwrap_or_default();
        Schedule::parse(expression, self.spec().timezone.as_deref()).map_err(|e| e.to_string())
    }

    /// The instances of run `n`.
    fn instances_of_run(&self, n: u64) -> Vec<&'a ObservedInstance> {
        self.instances
            .iter()
            .copied()
            .filter(|i| i.run == Some(n))
            .collect()
    }

    /// Instances created but not started (an agent killed between the two) are started.
    fn start_created_runs(&mut self) {
        let active: BTreeSet<u64> = self.mem.cron.active.keys().copied().collect();
        let created: Vec<&ObservedInstance> = self
            .live()
            .into_iter()
            .filter(|i| i.phase == Phase::Created && i.run.is_some_and(|r| active.contains(&r)))
            .collect();
        for instance in created {
            self.actions.push(super::Action::Start {
                runtime: instance.runtime,
                deployment: self.target.id.clone(),
                runtime_id: instance.runtime_id.clone(),
            });
            self.instance_mem(&instance.runtime_id).state = InstanceState::Starting;
        }
    }

    /// Ends the runs under way whose instances say so. `failure`: an action of the last pass
    /// failed (a create or a start: the image could not be pulled, say); it ends every run
    /// still short of a running instance, with its message.
    fn finish_runs(&mut self, failure: Option<String>) {
        let active: Vec<(u64, u32)> = self
            .mem
            .cron
            .active
            .iter()
            .map(|(n, run)| (*n, run.instances.max(1)))
            .collect();
        for (n, expected) in active {
            let instances = self.instances_of_run(n);
            let failed = instances.iter().find(|i| i.phase.failed());
            let exited_ok = instances.iter().filter(|i| i.phase.succeeded()).count();
            let short = instances.len() < expected as usize
                || instances.iter().any(|i| i.phase == Phase::Created);
            let ended = match (failed, &failure) {
                (Some(instance), _) => {
                    let reason = format!(
                        "instance {} {}{}",
                        instance.runtime_id,
                        instance.phase.exit_reason().unwrap_or_default(),
                        last_output(instance)
                    );
                    Some((RunOutcome::Failed, instance.phase.exit_code(), reason))
                }
                (None, Some(message)) if short => Some((RunOutcome::Failed, None, message.clone())),
                (None, None) if instances.len() < expected as usize => {
                    let gone = expected as usize - instances.len();
                    let reason = format!(
                        "{gone} of its {expected} instances are gone (removed outside keel?)"
                    );
                    Some((RunOutcome::Failed, None, reason))
                }
                (None, Some(_) | None) if exited_ok >= expected as usize => {
                    Some((RunOutcome::Completed, Some(0), String::new()))
                }
                (None, Some(_) | None) => None,
            };
            let Some((outcome, exit_code, reason)) = ended else {
                continue;
            };
            if outcome == RunOutcome::Failed {
                self.stop_run(n);
            }
            let reason = Some(reason).filter(|r| !r.is_empty());
            self.end_run(n, outcome, exit_code, reason);
        }
    }

    /// Records run `n` as finished, with its event.
    fn end_run(
        &mut self,
        n: u64,
        outcome: RunOutcome,
        exit_code: Option<i64>,
        reason: Option<String>,
    ) {
        let Some(mut run) = self.mem.cron.active.remove(&n) else {
            return;
        };
        run.finished_at = Some(self.now);
        run.exit_code = exit_code;
        run.outcome = outcome;
        run.reason = reason;
        let message = match &run.reason {
            Some(reason) => format!("run {n} {outcome}: {reason}"),
            None => format!("run {n} {outcome}"),
        };
        self.event(EventKind::RunFinished, message, None);
        self.mem.cron.last_outcome = Some(outcome);
        self.mem
            .cron
            .finished
            .insert(n, outcome == RunOutcome::Completed);
        self.runs.push(run);
    }

    /// Instances of no run (a job's, before the kind changed): removed.
    fn remove_strays(&mut self) {
        self.remove_all(|i| i.run.is_none());
    }

    /// The due times since the last one decided (and since this generation was stored): the
    /// latest may start (or is skipped); older ones were missed and are recorded as one
    /// skipped run.
    fn schedule_runs(&mut self, schedule: &Schedule) {
        let generation = self.mem.generation_since;
        let from = self
            .mem
            .cron
            .last_due
            .map_or(generation, |last| last.max(generation));
        let Some((first, latest, missed)) = due_between(schedule, from, self.now) else {
            return;
        };
        self.mem.cron.last_due = Some(latest);
        if missed > 0 {
            let reason = match missed {
                1 => format!("missed: it was due at {first} and could not start then (the agent was not running, or its runtime did not answer)"),
                n => format!("missed: {n} runs due from {first} could not start then (the agent was not running, or its runtime did not answer)"),
            };
            self.skip_run(first, reason);
        }
        if let Some(deadline) = self.spec().starting_deadline {
            if self.now > latest.plus(deadline) {
                let reason =
                    format!("its starting deadline ({deadline}) had passed when it could start");
                self.skip_run(latest, reason);
                return;
            }
        }
        let under_way: Vec<u64> = self.mem.cron.active.keys().copied().collect();
        match (self.spec().concurrency(), under_way.is_empty()) {
            (Concurrency::Forbid, false) => {
                let runs: Vec<String> = under_way.iter().map(u64::to_string).collect();
                let reason = format!(
                    "run {} still running (concurrency: forbid)",
                    runs.join(", ")
                );
                self.skip_run(latest, reason);
            }
            (Concurrency::Replace, false) => {
                let next = self.mem.cron.last_run + 1;
                for n in under_way {
                    self.stop_run(n);
                    let reason = format!("replaced by run {next} (concurrency: replace)");
                    self.end_run(n, RunOutcome::Failed, None, Some(reason));
                }
                self.start_run(latest);
            }
            (Concurrency::Forbid | Concurrency::Replace | Concurrency::Allow, true)
            | (Concurrency::Allow, false) => self.start_run(latest),
        }
    }

    /// Records a run that never started.
    fn skip_run(&mut self, due_at: Timestamp, reason: String) {
        self.mem.cron.last_run += 1;
        let n = self.mem.cron.last_run;
        self.event(
            EventKind::RunSkipped,
            format!("run {n} (due at {due_at}) skipped: {reason}"),
            None,
        );
        self.runs.push(Run {
            run: n,
            generation: self.target.generation,
            due_at,
            started_at: None,
            finished_at: Some(self.now),
            exit_code: None,
            outcome: RunOutcome::Skipped,
            reason: Some(reason),
            instances: 0,
        });
    }

    /// Starts a run: its `replicas` instances are created.
    fn start_run(&mut self, due_at: Timestamp) {
        self.mem.cron.last_run += 1;
        let n = self.mem.cron.last_run;
        for ordinal in 0..self.replicas() {
            let instance = self.instance_spec(ordinal, Some(n));
            self.actions.push(super::Action::Create {
                runtime: self.spec().runtime,
                instance: Box::new(instance),
            });
        }
        let run = Run {
            run: n,
            generation: self.target.generation,
            due_at,
            started_at: Some(self.now),
            finished_at: None,
            exit_code: None,
            outcome: RunOutcome::Running,
            reason: None,
            instances: self.replicas(),
        };
        self.event(
            EventKind::RunStarted,
            format!("run {n} (due at {due_at}) started"),
            None,
        );
        self.runs.push(run.clone());
        self.mem.cron.active.insert(n, run);
    }

    /// Keeps the instances of the newest `history.successful` completed runs and the newest
    /// `history.failed` failed ones, judged by each run's recorded outcome; removes those of
    /// older finished runs, and stops any instance of a finished run that still runs.
    fn prune_history(&mut self) {
        let history = self.spec().history();
        let finished: BTreeSet<u64> = self
            .instances
            .iter()
            .filter_map(|i| i.run)
            .filter(|n| !self.mem.cron.active.contains_key(n))
            .collect();
        let (mut kept_ok, mut kept_failed) = (0u32, 0u32);
        for n in finished.into_iter().rev() {
            self.stop_run(n);
            let instances = self.instances_of_run(n);
            let going = instances.iter().all(|i| self.stopping(i));
            let completed = self.mem.cron.finished.get(&n).copied().unwrap_or(false);
            let keep = match (going, completed) {
                (true, _) => false,
                (false, true) if kept_ok < history.successful => {
                    kept_ok += 1;
                    true
                }
                (false, false) if kept_failed < history.failed => {
                    kept_failed += 1;
                    true
                }
                (false, true | false) => false,
            };
            if !keep {
                for instance in instances {
                    self.remove(instance, false);
                }
            }
        }
        let present: BTreeSet<u64> = self.instances.iter().filter_map(|i| i.run).collect();
        self.mem.cron.finished.retain(|n, _| present.contains(n));
    }

    /// Stops and removes the instances of run `n` that have not exited (those that were
    /// only created are just removed).
    fn stop_run(&mut self, n: u64) {
        for instance in self.instances_of_run(n) {
            if !instance.phase.exited() {
                self.remove(instance, instance.phase == Phase::Running);
            }
        }
    }

    /// Exited run instances read as what they are: stopped (exit 0) or in error, with why.
    fn mark_finished_instances(&mut self) {
        for instance in self.instances.clone() {
            let Some(reason) = instance.phase.exit_reason() else {
                continue;
            };
            if instance.run.is_none() || self.stopping(instance) {
                continue;
            }
            let m = self.instance_mem(&instance.runtime_id);
            (m.state, m.reason) = match instance.phase.succeeded() {
                true => (InstanceState::Stopped, Some("completed".to_owned())),
                false => (InstanceState::Error, Some(reason)),
            };
        }
    }

    /// `running` while a run is under way; else how the latest finished run ended (this pass,
    /// or before — a spec change does not forget it); `pending` before the first.
    fn settle_cron_status(&mut self) {
        let under_way: Vec<String> = self.mem.cron.active.keys().map(u64::to_string).collect();
        if !under_way.is_empty() {
            self.set_status(
                DeploymentStatus::Running,
                "run_started",
                format!("run {} running", under_way.join(", ")),
            );
            return;
        }
        let Some(outcome) = self.mem.cron.last_outcome else {
            return;
        };
        let this_pass = self
            .runs
            .iter()
            .rev()
            .find(|r| matches!(r.outcome, RunOutcome::Completed | RunOutcome::Failed));
        let (status, reason, message) = match (outcome, this_pass) {
            (RunOutcome::Failed, Some(run)) => (
                DeploymentStatus::Failed,
                "run_failed",
                format!(
                    "run {} failed: {}",
                    run.run,
                    run.reason.as_deref().unwrap_or_default()
                ),
            ),
            (RunOutcome::Failed, None) => (
                DeploymentStatus::Failed,
                "last_run",
                "as its last run ended".to_owned(),
            ),
            (RunOutcome::Completed | RunOutcome::Running | RunOutcome::Skipped, Some(run)) => (
                DeploymentStatus::Completed,
                "run_completed",
                format!("run {} completed", run.run),
            ),
            (RunOutcome::Completed | RunOutcome::Running | RunOutcome::Skipped, None) => (
                DeploymentStatus::Completed,
                "last_run",
                "as its last run ended".to_owned(),
            ),
        };
        self.set_status(status, reason, message);
    }

    /// Out of the revision: every instance goes, finished runs' included, and runs under way
    /// end failed.
    fn tear_down_cron(&mut self) {
        let under_way: Vec<u64> = self.mem.cron.active.keys().copied().collect();
        for n in under_way {
            self.end_run(
                n,
                RunOutcome::Failed,
                None,
                Some("stopped: the cron job was removed".to_owned()),
            );
        }
        self.remove_all(|_| true);
        self.mem.cron.next_due = None;
        let message = match self.target.declared {
            true => "stopped".to_owned(),
            false => "removed from the revision".to_owned(),
        };
        self.set_status(DeploymentStatus::Deleted, "deleted", message);
        self.mem.retry = None;
    }
}

/// The most due times counted one by one; past it (a frequent schedule after a long outage)
/// the latest is found directly.
const COUNTED: u32 = 1000;

/// The due times after `from` up to `now`: the first, the latest, and how many before the
/// latest were missed; `None` when none is due. Walked forward from `from`, the way the
/// schedule runs (a wall-clock time repeated by a daylight-saving change is due once).
fn due_between(
    schedule: &Schedule,
    from: Timestamp,
    now: Timestamp,
) -> Option<(Timestamp, Timestamp, u32)> {
    let first = schedule.next_after(from).filter(|t| *t <= now)?;
    let (mut latest, mut missed) = (first, 0u32);
    while let Some(next) = schedule.next_after(latest).filter(|t| *t <= now) {
        latest = next;
        missed += 1;
        if missed >= COUNTED {
            latest = schedule
                .latest_until(now)
                .filter(|t| *t > latest)
                .unwrap_or(latest);
            break;
        }
    }
    Some((first, latest, missed))
}
