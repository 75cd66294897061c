//! The cron job rules of the planner, over a fake clock: a simulated loop plans, applies the
//! actions as a perfect runtime would, lets each run's instances exit when their time is up,
//! and jumps to the planner's next wake-up — days of schedule in milliseconds, and a proof
//! that the loop needs no tick to meet a due time.

use std::collections::BTreeMap;

use serde_json::json;

use super::fixtures::{at, ActionsExt, World};
use super::plan::{Action, WaitingOn};
use crate::model::event::EventKind;
use crate::model::memory::Failure;
use crate::model::observed::Phase;
use crate::model::run::{Run, RunOutcome};
use crate::model::status::DeploymentStatus as S;
use crate::model::time::{parse_rfc3339, Timestamp};

/// A loop over one cron job: every run it recorded, how many passes it took, and the most
/// instances that ran at once.
struct Sim {
    w: World,
    runs: BTreeMap<u64, Run>,
    passes: usize,
    most_live: usize,
    events: Vec<EventKind>,
}

impl Sim {
    fn new(w: World) -> Self {
        Self {
            w,
            runs: BTreeMap::new(),
            passes: 0,
            most_live: 0,
            events: Vec::new(),
        }
    }

    /// One pass at the current time: the plan's actions applied, its runs recorded.
    fn pass(&mut self) -> (Vec<Action>, Option<Timestamp>) {
        let mut plan = self.w.plan();
        let outcome = plan.outcomes.remove(&self.w.id).expect("an outcome");
        self.passes += 1;
        for run in &outcome.runs {
            self.runs.insert(run.run, run.clone());
        }
        self.events.extend(outcome.events.iter().map(|e| e.kind));
        self.w.memory = outcome.memory;
        for action in &plan.actions {
            self.w.apply(action);
        }
        let live = self
            .w
            .instances
            .iter()
            .filter(|i| i.phase == Phase::Running)
            .count();
        self.most_live = self.most_live.max(live);
        (plan.actions, plan.wake_at)
    }

    /// Runs the loop until `end`: after each pass, the clock jumps to the planner's wake-up
    /// or the next instance exit, whichever comes first.
    fn until(&mut self, end: Timestamp) {
        loop {
            let (_, wake) = self.pass();
            let next = [wake, self.w.next_exit()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => self.w.advance(t),
                Some(_) | None => {
                    self.w.advance(end);
                    return;
                }
            }
        }
    }

    fn outcomes(&self) -> Vec<RunOutcome> {
        self.runs.values().map(|r| r.outcome).collect()
    }
}

fn utc(text: &str) -> Timestamp {
    parse_rfc3339(text).expect("an RFC 3339 time")
}

/// A cron job whose schedule starts at `start` (when it was stored), the clock there.
fn starting_at(mut w: World, start: Timestamp) -> World {
    w.now = start;
    w.memory.generation_since = start;
    w.memory.status_since = start;
    w
}

#[test]
fn an_every_minute_schedule_runs_once_a_minute_for_an_hour_waking_only_when_due() {
    let mut sim = Sim::new(World::cronjob(json!({})));
    sim.until(at(3615));
    let runs: Vec<&Run> = sim.runs.values().collect();
    assert_eq!(runs.len(), 60);
    for (i, run) in runs.iter().enumerate() {
        let due = at(60 * (i as i64 + 1));
        assert_eq!(
            (run.run, run.due_at, run.started_at, run.outcome),
            (i as u64 + 1, due, Some(due), RunOutcome::Completed),
            "run {}",
            i + 1
        );
        assert_eq!(
            run.finished_at,
            Some(due.plus(crate::model::units::Duration::from_secs(10)))
        );
    }
    // The first pass, then one at each due time and one at each exit: no tick in between.
    assert_eq!(sim.passes, 1 + 60 + 60);
    assert_eq!(sim.w.memory.status, S::Completed);
    assert_eq!(sim.w.memory.cron.next_due, Some(at(3660)));
}

#[test]
fn the_status_is_running_during_a_run_then_the_last_runs_outcome() {
    let mut w = World::cronjob(json!({}));
    w.run_behaviour = |n| (10, if n == 2 { 3 } else { 0 });
    let mut sim = Sim::new(w);
    let (_, wake) = sim.pass();
    assert_eq!(sim.w.memory.status, S::Pending, "nothing due yet");
    assert_eq!(wake, Some(at(60)));
    sim.w.advance(at(60));
    let (actions, _) = sim.pass();
    assert_eq!(actions.creates(), [0]);
    assert_eq!(sim.w.memory.status, S::Running);
    sim.until(at(75));
    assert_eq!(sim.w.memory.status, S::Completed);
    sim.until(at(135));
    assert_eq!(sim.w.memory.status, S::Failed, "run 2 exited 3");
    assert_eq!(sim.runs[&2].exit_code, Some(3));
    sim.until(at(195));
    assert_eq!(
        sim.w.memory.status,
        S::Completed,
        "a failed run does not stop the schedule"
    );
    assert_eq!(
        sim.outcomes(),
        [
            RunOutcome::Completed,
            RunOutcome::Failed,
            RunOutcome::Completed
        ]
    );
}

#[test]
fn a_new_cronjob_owes_nothing_from_before_it_was_stored() {
    let w = starting_at(World::cronjob(json!({"schedule": "0 * * * *"})), at(1800));
    let mut sim = Sim::new(w);
    let (actions, wake) = sim.pass();
    assert!(actions.is_empty(), "the 00:00 run was before it existed");
    assert_eq!(wake, Some(at(3600)));
    assert_eq!(
        sim.w.memory.cron.next_due,
        Some(at(3600)),
        "shown as next_run_at"
    );
}

#[test]
fn a_time_skipped_by_spring_forward_runs_once_just_after_the_gap() {
    // Paris moves from 02:00 CET to 03:00 CEST on 2027-03-28: 02:30 does not exist that day.
    let w = World::cronjob(json!({"schedule": "30 2 * * *", "timezone": "Europe/Paris"}));
    let mut sim = Sim::new(starting_at(w, utc("2027-03-26T00:00:00Z")));
    sim.until(utc("2027-03-30T00:00:00Z"));
    let due: Vec<Timestamp> = sim.runs.values().map(|r| r.due_at).collect();
    assert_eq!(
        due,
        [
            utc("2027-03-26T01:30:00Z"),
            utc("2027-03-27T01:30:00Z"),
            utc("2027-03-28T01:00:00Z"),
            utc("2027-03-29T00:30:00Z"),
        ],
        "02:30 CET, 02:30 CET, 03:00 CEST (just after the gap), 02:30 CEST"
    );
    assert!(sim.outcomes().iter().all(|o| *o == RunOutcome::Completed));
}

#[test]
fn a_time_repeated_by_fall_back_runs_once() {
    // Paris moves from 03:00 CEST back to 02:00 CET on 2027-10-31: 02:30 happens twice.
    let w = World::cronjob(json!({"schedule": "30 2 * * *", "timezone": "Europe/Paris"}));
    let mut sim = Sim::new(starting_at(w, utc("2027-10-30T00:00:00Z")));
    sim.until(utc("2027-11-02T00:00:00Z"));
    let due: Vec<Timestamp> = sim.runs.values().map(|r| r.due_at).collect();
    assert_eq!(
        due,
        [
            utc("2027-10-30T00:30:00Z"),
            utc("2027-10-31T00:30:00Z"),
            utc("2027-11-01T01:30:00Z"),
        ],
        "the first 02:30 of the 31st only"
    );
}

/// Runs of 150 s on an every-minute schedule.
fn long_runs(concurrency: &str) -> Sim {
    let mut w = World::cronjob(json!({"concurrency": concurrency}));
    w.run_behaviour = |_| (150, 0);
    Sim::new(w)
}

#[test]
fn forbid_skips_a_run_due_while_the_previous_one_still_runs() {
    let mut sim = long_runs("forbid");
    sim.until(at(300));
    assert_eq!(
        sim.outcomes(),
        [
            RunOutcome::Completed, // 60–210
            RunOutcome::Skipped,   // due 120: run 1 runs
            RunOutcome::Skipped,   // due 180: run 1 runs
            RunOutcome::Running,   // 240–390
            RunOutcome::Skipped,   // due 300: run 4 runs
        ]
    );
    assert_eq!(
        sim.runs[&2].reason.as_deref(),
        Some("run 1 still running (concurrency: forbid)")
    );
    assert_eq!(sim.runs[&2].started_at, None);
    assert_eq!(sim.most_live, 1);
    assert!(sim.events.contains(&EventKind::RunSkipped));
}

#[test]
fn allow_starts_a_run_beside_the_one_still_running() {
    let mut sim = long_runs("allow");
    sim.until(at(300));
    let started: Vec<Option<Timestamp>> = sim.runs.values().map(|r| r.started_at).collect();
    assert_eq!(
        started,
        [
            Some(at(60)),
            Some(at(120)),
            Some(at(180)),
            Some(at(240)),
            Some(at(300))
        ]
    );
    assert_eq!(sim.most_live, 3, "150 s runs every 60 s overlap three deep");
    assert_eq!(sim.w.memory.status, S::Running);
}

#[test]
fn replace_stops_the_running_run_and_starts_the_new_one() {
    let mut sim = long_runs("replace");
    sim.until(at(119));
    sim.w.advance(at(120));
    let (actions, _) = sim.pass();
    assert_eq!(
        actions.removes(),
        [(World::run_instance_id(1, 1, 0), true)],
        "run 1's instance is stopped"
    );
    assert_eq!(actions.creates(), [0], "run 2's is created");
    sim.until(at(300));
    assert_eq!(
        sim.outcomes(),
        [
            RunOutcome::Failed,
            RunOutcome::Failed,
            RunOutcome::Failed,
            RunOutcome::Failed,
            RunOutcome::Running
        ]
    );
    assert_eq!(
        sim.runs[&1].reason.as_deref(),
        Some("replaced by run 2 (concurrency: replace)")
    );
    assert_eq!(sim.most_live, 1);
}

/// An hourly job that ran at 00:00, whose agent was down until `back` (seconds).
fn back_after_downtime(back: i64) -> Sim {
    let mut w = World::cronjob(json!({"schedule": "0 * * * *", "starting_deadline": "10m"}));
    w.memory.cron.last_due = Some(at(0));
    w.memory.cron.last_run = 1;
    Sim::new(w.now(back))
}

#[test]
fn after_downtime_across_two_due_times_one_catch_up_run_starts_within_the_deadline() {
    let mut sim = back_after_downtime(7200 + 5 * 60);
    let (actions, _) = sim.pass();
    assert_eq!(actions.creates(), [0], "one catch-up run");
    let runs: Vec<(u64, Timestamp, RunOutcome)> = sim
        .runs
        .values()
        .map(|r| (r.run, r.due_at, r.outcome))
        .collect();
    assert_eq!(
        runs,
        [
            (2, at(3600), RunOutcome::Skipped),
            (3, at(7200), RunOutcome::Running)
        ]
    );
    assert!(sim.runs[&2]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("missed"));
}

#[test]
fn after_downtime_past_the_deadline_no_run_starts() {
    let mut sim = back_after_downtime(7200 + 15 * 60);
    let (actions, wake) = sim.pass();
    assert!(actions.creates().is_empty(), "past the 10m deadline");
    assert_eq!(sim.outcomes(), [RunOutcome::Skipped, RunOutcome::Skipped]);
    assert!(sim.runs[&3]
        .reason
        .as_deref()
        .unwrap()
        .contains("starting deadline (10m)"));
    assert_eq!(wake, Some(at(10800)), "the next hour still runs");
}

#[test]
fn history_keeps_the_instances_of_exactly_the_configured_runs() {
    let mut w = World::cronjob(json!({"history": {"successful": 2, "failed": 1}}));
    w.run_behaviour = |n| (10, if n % 2 == 1 { 1 } else { 0 });
    let mut sim = Sim::new(w);
    sim.until(at(60 * 10 + 30));
    assert_eq!(sim.runs.len(), 10);
    let mut kept: Vec<u64> = sim.w.instances.iter().filter_map(|i| i.run).collect();
    kept.sort_unstable();
    assert_eq!(
        kept,
        [8, 9, 10],
        "the newest failed run (9) and the two newest completed ones (8, 10)"
    );
    let defaults = Sim::new(World::cronjob(json!({})));
    let mut defaults = defaults;
    defaults.w.run_behaviour = |n| (10, if n == 1 { 1 } else { 0 });
    defaults.until(at(60 * 6 + 30));
    let mut kept: Vec<u64> = defaults.w.instances.iter().filter_map(|i| i.run).collect();
    kept.sort_unstable();
    assert_eq!(
        kept,
        [1, 4, 5, 6],
        "by default the last failed and 3 completed"
    );
}

#[test]
fn a_run_whose_instances_could_not_be_created_fails_with_the_cause() {
    let mut sim = Sim::new(World::cronjob(json!({})));
    sim.w.advance(at(60));
    let (actions, _) = sim.pass();
    assert_eq!(actions.creates(), [0]);
    // The create failed: no instance exists, the executor reported why.
    sim.w.instances.clear();
    sim.w.memory.last_failure = Some(Failure {
        status: S::ImagePullBackOff,
        message: "pull access denied for busybox:nope".into(),
        at: at(60),
    });
    sim.w.advance(at(61));
    sim.pass();
    assert_eq!(sim.runs[&1].outcome, RunOutcome::Failed);
    assert_eq!(
        sim.runs[&1].reason.as_deref(),
        Some("pull access denied for busybox:nope")
    );
    assert_eq!(sim.w.memory.status, S::Failed);
    assert_eq!(sim.w.memory.cron.next_due, Some(at(120)), "and goes on");
}

#[test]
fn zero_replicas_suspends_the_schedule() {
    let mut sim = Sim::new(World::cronjob(json!({"replicas": 0})));
    sim.until(at(600));
    assert!(sim.runs.is_empty());
    let (_, wake) = sim.pass();
    assert_eq!(wake, None, "nothing to wake for");
    let mut plan = sim.w.plan();
    let outcome = plan.outcomes.remove(&sim.w.id).unwrap();
    assert_eq!(outcome.waiting_on, Some(WaitingOn::Suspended));
}

#[test]
fn a_cronjob_removed_from_the_revision_removes_every_instance_kept_for_history() {
    let mut sim = Sim::new(World::cronjob(json!({})));
    sim.until(at(200));
    assert_eq!(sim.w.instances.len(), 3, "three completed runs kept");
    sim.w.declared = false;
    let (actions, _) = sim.pass();
    assert_eq!(actions.removes().len(), 3);
    assert_eq!(sim.w.memory.status, S::Deleted);
    assert_eq!(sim.w.memory.cron.next_due, None);
}

#[test]
fn a_cronjob_that_becomes_a_worker_ends_its_runs_and_forgets_its_schedule() {
    let mut w = World::cronjob(json!({}));
    w.run_behaviour = |_| (600, 0);
    let mut sim = Sim::new(w);
    sim.until(at(90));
    assert_eq!(sim.w.memory.cron.active.len(), 1, "run 1 is under way");
    sim.w = sim
        .w
        .clone()
        .new_spec(json!({"kind": "worker", "schedule": null}));
    let (actions, wake) = sim.pass();
    assert_eq!(sim.runs[&1].outcome, RunOutcome::Failed);
    assert_eq!(
        sim.runs[&1].reason.as_deref(),
        Some("the deployment is now a worker")
    );
    assert_eq!(
        (sim.w.memory.cron.next_due, sim.w.memory.cron.active.len()),
        (None, 0),
        "no next_run_at, nothing under way"
    );
    assert_eq!(sim.w.memory.cron.last_run, 1, "numbering is kept");
    assert_eq!(actions.creates(), [0], "the worker starts");
    assert_ne!(wake, Some(at(120)), "no schedule to wake for");
}

#[test]
fn a_run_completes_when_as_many_instances_as_it_started_exited_0_whatever_replicas_says_now() {
    let mut w = World::cronjob(json!({}));
    w.run_behaviour = |_| (30, 0);
    let mut sim = Sim::new(w);
    sim.until(at(70));
    assert_eq!(sim.w.memory.cron.active.len(), 1);
    sim.w = sim.w.clone().new_spec(json!({"replicas": 2}));
    sim.until(at(95));
    assert_eq!(
        sim.runs[&1].outcome,
        RunOutcome::Completed,
        "its one instance exited 0"
    );
    assert_eq!(
        sim.w.memory.status,
        S::Completed,
        "the spec change does not forget how the last run ended"
    );
}

#[test]
fn a_run_fails_when_one_of_its_instances_could_not_be_created_and_its_siblings_stop() {
    let mut sim = Sim::new(World::cronjob(json!({"replicas": 2})));
    sim.w.advance(at(60));
    let (actions, _) = sim.pass();
    assert_eq!(actions.creates(), [0, 1]);
    // The second create failed: the executor stops at the first failure of a deployment.
    sim.w.instances.retain(|i| i.ordinal == 0);
    sim.w.memory.last_failure = Some(Failure {
        status: S::InsufficientResources,
        message: "not enough memory for 2 instances".into(),
        at: at(60),
    });
    sim.w.advance(at(61));
    let (actions, _) = sim.pass();
    assert_eq!(sim.runs[&1].outcome, RunOutcome::Failed);
    assert_eq!(
        sim.runs[&1].reason.as_deref(),
        Some("not enough memory for 2 instances")
    );
    assert_eq!(
        actions.removes(),
        [(World::run_instance_id(1, 1, 0), true)],
        "the instance that did start is stopped"
    );
    assert!(sim.events.contains(&EventKind::ActionFailed));
}

#[test]
fn a_run_fails_when_one_of_its_instances_vanishes() {
    let mut w = World::cronjob(json!({"replicas": 2}));
    w.run_behaviour = |_| (30, 0);
    let mut sim = Sim::new(w);
    sim.until(at(65));
    sim.w.instances.retain(|i| i.ordinal == 0);
    sim.pass();
    assert_eq!(sim.runs[&1].outcome, RunOutcome::Failed);
    assert_eq!(
        sim.runs[&1].reason.as_deref(),
        Some("1 of its 2 instances are gone (removed outside keel?)")
    );
}

#[test]
fn an_instance_that_cannot_start_fails_its_run_instead_of_being_started_again() {
    let mut sim = Sim::new(World::cronjob(json!({})));
    sim.w.advance(at(60));
    sim.pass();
    for instance in &mut sim.w.instances {
        instance.phase = Phase::Created;
    }
    let (actions, _) = sim.pass();
    assert_eq!(
        actions.starts().len(),
        1,
        "created but not started: started"
    );
    // The start failed: it is still only created, and the executor said why.
    for instance in &mut sim.w.instances {
        instance.phase = Phase::Created;
    }
    sim.w.memory.last_failure = Some(Failure {
        status: S::CreateContainerError,
        message: "cannot start: no such file /app".into(),
        at: at(61),
    });
    let (actions, _) = sim.pass();
    assert!(actions.starts().is_empty(), "not again");
    assert_eq!(actions.removes().len(), 1);
    assert_eq!(sim.runs[&1].outcome, RunOutcome::Failed);
}

#[test]
fn a_schedule_change_or_a_resume_owes_nothing_from_before_it() {
    // The scenarios start at 08:00 UTC. Daily at 09:00; at 10:30 it becomes hourly: 10:00 is
    // not owed.
    let daily = World::cronjob(json!({"schedule": "0 9 * * *"}));
    let mut sim = Sim::new(daily);
    sim.until(at(3600 + 30));
    assert_eq!(sim.runs.len(), 1);
    sim.w.advance(at(2 * 3600 + 1800));
    sim.w = sim.w.clone().new_spec(json!({"schedule": "0 * * * *"}));
    let (actions, wake) = sim.pass();
    assert!(actions.creates().is_empty(), "nothing owed");
    assert_eq!(sim.runs.len(), 1, "and nothing recorded as missed");
    assert_eq!(wake, Some(at(3 * 3600)));

    // Suspended for a day, then resumed: the day is not owed either.
    let mut sim = Sim::new(World::cronjob(json!({"replicas": 0})));
    sim.until(at(86_400));
    sim.w = sim.w.clone().new_spec(json!({"replicas": 1}));
    let (actions, wake) = sim.pass();
    assert!(actions.creates().is_empty() && sim.runs.is_empty());
    assert_eq!(wake, Some(at(86_460)));
}

#[test]
fn finished_run_instances_read_stopped_or_error_with_the_exit() {
    let mut w = World::cronjob(json!({}));
    w.run_behaviour = |n| (5, if n == 1 { 0 } else { 2 });
    let mut sim = Sim::new(w);
    sim.w.advance(at(60));
    sim.pass();
    sim.w.advance(at(61));
    sim.pass(); // observed while it runs
    sim.until(at(130));
    let mut plan = sim.w.plan();
    let outcome = plan.outcomes.remove(&sim.w.id).unwrap();
    let states: Vec<(String, crate::model::status::InstanceState, Option<String>)> = outcome
        .instances
        .iter()
        .map(|i| (i.runtime_id.clone(), i.state, i.reason.clone()))
        .collect();
    use crate::model::status::InstanceState as I;
    assert_eq!(
        states,
        [
            (
                World::run_instance_id(1, 1, 0),
                I::Stopped,
                Some("completed".into())
            ),
            (
                World::run_instance_id(1, 2, 0),
                I::Error,
                Some("exited with code 2".into())
            ),
        ]
    );
    assert_eq!(outcome.ready, 0, "a finished run's instance is not ready");
}

#[test]
fn a_pass_inside_the_repeated_hour_of_fall_back_starts_no_second_run() {
    let w = World::cronjob(json!({"schedule": "30 2 * * *", "timezone": "Europe/Paris"}));
    let mut sim = Sim::new(starting_at(w, utc("2027-10-31T00:00:00Z")));
    sim.until(utc("2027-10-31T00:45:00Z"));
    assert_eq!(sim.runs.len(), 1, "02:30 CEST ran");
    // 02:45 CET, after the clocks went back: 02:30 has come round again on the wall.
    sim.w.advance(utc("2027-10-31T01:45:00Z"));
    let (actions, wake) = sim.pass();
    assert!(actions.creates().is_empty());
    assert_eq!(sim.runs.len(), 1);
    assert_eq!(wake, Some(utc("2027-11-01T01:30:00Z")));
}

#[test]
fn the_starting_deadline_includes_its_last_instant() {
    let mut w = World::cronjob(json!({"schedule": "0 * * * *", "starting_deadline": "10m"}));
    w.memory.cron.last_due = Some(at(0));
    let mut sim = Sim::new(w.now(3600 + 600));
    let (actions, _) = sim.pass();
    assert_eq!(
        actions.creates(),
        [0],
        "10m after its due time it may still start"
    );
    let mut w = World::cronjob(json!({"schedule": "0 * * * *", "starting_deadline": "10m"}));
    w.memory.cron.last_due = Some(at(0));
    let mut late = Sim::new(w);
    late.w.now = Timestamp(at(3600 + 600).0 + 1);
    let (actions, _) = late.pass();
    assert!(
        actions.creates().is_empty(),
        "a millisecond later it may not"
    );
}
