//! PURE: a cron job's pass — the planner's rules for `kind: cronjob`, over the same `Pass` as
//! workers and jobs. From the schedule, `now` and what the cron memory says is under way, it
//! decides which due time starts a run, which is skipped (and why), which runs finished and
//! how, which finished runs' instances are kept for their logs, the deployment's status and
//! when the loop must wake for the next due time.
//!
//! Rules: each due time is decided once (`CronMemory::last_due`); of several missed ones (the
//! agent was down) only the latest may still start — the others are recorded as one skipped
//! run — and only within `starting_deadline` of its due time; `concurrency` says what a due
//! time does while a run is under way (`forbid` skips it, `allow` starts beside it, `replace`
//! stops the running one, recorded failed). A run is `completed` when every instance exited
//! 0, `failed` as soon as one did not (its siblings are stopped), vanished or could not be
//! created. The status is `running` while a run is under way, else the last finished run's
//! (`completed`/`failed`); a skipped run leaves it as it was. `replicas: 0` suspends the
//! schedule. Nothing here reads a clock.

use std::collections::BTreeSet;

use crate::model::event::EventKind;
use crate::model::manifest::Concurrency;
use crate::model::observed::{ObservedInstance, Phase};
use crate::model::run::{Run, RunOutcome};
use crate::model::schedule::Schedule;
use crate::model::status::{DeploymentStatus, InstanceState};
use crate::model::time::Timestamp;

use super::{exit_reason, last_output, Goal, Pass, WaitingOn};

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
        let failure = self.mem.last_failure.take();
        self.start_created_runs();
        self.finish_runs(failure.map(|f| f.message));
        self.remove_strays();
        if self.replicas() > 0 {
            self.schedule_runs(&schedule);
        }
        self.prune_history();
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
    /// failed (a create: the image could not be pulled, say) — a run with no instance failed
    /// with it.
    fn finish_runs(&mut self, failure: Option<String>) {
        let active: Vec<u64> = self.mem.cron.active.keys().copied().collect();
        for n in active {
            let instances = self.instances_of_run(n);
            let failed = instances.iter().find(|i| {
                matches!(i.phase, Phase::Exited { exit_code, oom_killed } if exit_code != 0 || oom_killed)
            });
            let exited_ok = instances
                .iter()
                .filter(|i| {
                    i.phase
                        == (Phase::Exited {
                            exit_code: 0,
                            oom_killed: false,
                        })
                })
                .count();
            if let Some(instance) = failed {
                let Phase::Exited {
                    exit_code,
                    oom_killed,
                } = instance.phase
                else {
                    continue;
                };
                let reason = format!(
                    "instance {} {}{}",
                    instance.runtime_id,
                    exit_reason(exit_code, oom_killed),
                    last_output(instance)
                );
                for sibling in instances.iter().filter(|i| i.phase != instance.phase) {
                    if !matches!(sibling.phase, Phase::Exited { .. }) {
                        self.remove(sibling, true);
                    }
                }
                self.end_run(n, RunOutcome::Failed, Some(exit_code), Some(reason));
            } else if instances.is_empty() {
                let reason = failure
                    .clone()
                    .unwrap_or_else(|| "its instances are gone (removed outside keel?)".to_owned());
                self.end_run(n, RunOutcome::Failed, None, Some(reason));
            } else if exited_ok >= self.replicas() as usize && exited_ok == instances.len() {
                self.end_run(n, RunOutcome::Completed, Some(0), None);
            }
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
        self.runs.push(run);
    }

    /// Instances of no run under way and of no finished run (a job's, before the kind
    /// changed; one whose run's record was lost): removed.
    fn remove_strays(&mut self) {
        let strays: Vec<&ObservedInstance> = self
            .instances
            .iter()
            .copied()
            .filter(|i| i.run.is_none())
            .collect();
        for instance in strays {
            let running = !matches!(instance.phase, Phase::Exited { .. });
            self.remove(instance, running);
        }
    }

    /// The due times since the last one decided: the latest may start (or is skipped); older
    /// ones were missed and are recorded as one skipped run.
    fn schedule_runs(&mut self, schedule: &Schedule) {
        let from = self.mem.cron.last_due.unwrap_or(self.mem.generation_since);
        let Some(latest) = schedule.latest_until(self.now).filter(|t| *t > from) else {
            return;
        };
        self.mem.cron.last_due = Some(latest);
        if let Some(first) = schedule.next_after(from).filter(|t| *t < latest) {
            let last = schedule
                .latest_until(Timestamp(latest.0 - 1))
                .unwrap_or(first);
            let reason = match first == last {
                true => format!("missed: it was due at {first} and could not start then (was the agent down?)"),
                false => format!("missed: the runs due from {first} to {last} could not start then (was the agent down?)"),
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
                    for instance in self.instances_of_run(n) {
                        if !matches!(instance.phase, Phase::Exited { .. }) {
                            self.remove(instance, true);
                        }
                    }
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
    /// `history.failed` failed ones; removes those of older finished runs.
    fn prune_history(&mut self) {
        let history = self.spec().history();
        let mut finished: Vec<(u64, bool)> = Vec::new();
        for instance in self.instances.iter().copied() {
            let Some(n) = instance.run else { continue };
            if self.mem.cron.active.contains_key(&n) || finished.iter().any(|(r, _)| *r == n) {
                continue;
            }
            let failed = self.instances_of_run(n).iter().any(|i| match i.phase {
                Phase::Exited {
                    exit_code,
                    oom_killed,
                } => exit_code != 0 || oom_killed,
                Phase::Created | Phase::Running => true,
            });
            finished.push((n, failed));
        }
        finished.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let (mut kept_ok, mut kept_failed) = (0u32, 0u32);
        for (n, failed) in finished {
            let keep = match failed {
                false if kept_ok < history.successful => {
                    kept_ok += 1;
                    true
                }
                true if kept_failed < history.failed => {
                    kept_failed += 1;
                    true
                }
                false | true => false,
            };
            if !keep {
                for instance in self.instances_of_run(n) {
                    let running = !matches!(instance.phase, Phase::Exited { .. });
                    self.remove(instance, running);
                }
            }
        }
    }

    /// `running` while a run is under way; else the outcome of the run that finished last.
    fn settle_cron_status(&mut self) {
        if let Some(n) = self.mem.cron.active.keys().next_back().copied() {
            self.set_status(
                DeploymentStatus::Running,
                "run_started",
                format!("run {n} is running"),
            );
            return;
        }
        let last = self
            .runs
            .iter()
            .rev()
            .find(|r| matches!(r.outcome, RunOutcome::Completed | RunOutcome::Failed))
            .map(|r| (r.run, r.outcome, r.reason.clone()));
        match last {
            Some((n, RunOutcome::Completed, _)) => self.set_status(
                DeploymentStatus::Completed,
                "run_completed",
                format!("run {n} completed"),
            ),
            Some((n, RunOutcome::Failed, reason)) => self.set_status(
                DeploymentStatus::Failed,
                "run_failed",
                format!("run {n} failed: {}", reason.unwrap_or_default()),
            ),
            Some((_, RunOutcome::Running | RunOutcome::Skipped, _)) | None => {}
        }
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
        for instance in self.instances.clone() {
            let running = !matches!(instance.phase, Phase::Exited { .. });
            self.remove(instance, running);
        }
        self.mem.cron.next_due = None;
        let message = match self.target.declared {
            true => "stopped".to_owned(),
            false => "removed from the revision".to_owned(),
        };
        self.set_status(DeploymentStatus::Deleted, "deleted", message);
        self.mem.retry = None;
    }
}
