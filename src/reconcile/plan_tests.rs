//! The planner's behaviours, one named case each (DESIGN.md §3.1): statuses and every
//! transition, the readiness gate, deadlines, crashes and the restart limit, retried and
//! terminal statuses, jobs, liveness actions, rolling updates, pruning and unknown runtimes.

use serde_json::json;

use super::fixtures::{at, ActionsExt, Boot, World};
use super::plan::{Action, WaitingOn};
use crate::model::event::EventKind;
use crate::model::observed::Phase;
use crate::model::status::{DeploymentStatus as S, Health, InstanceState};
use crate::model::units::Duration;

const RUNNING: Phase = Phase::Running;

fn exited(code: i64) -> Phase {
    Phase::Exited {
        exit_code: code,
        oom_killed: false,
    }
}

fn id(generation: u64, ordinal: u32) -> String {
    World::runtime_id(generation, ordinal)
}

fn http_readiness(min_healthy: &str) -> serde_json::Value {
    json!([{"type": "http", "url": "http://localhost:8080/", "readiness": true, "min_healthy_time": min_healthy}])
}

fn tcp_liveness(on_failure: &str) -> serde_json::Value {
    json!([{"type": "tcp", "port": 9000, "threshold": 3, "on_failure": on_failure}])
}

fn events(outcome: &super::plan::Outcome) -> Vec<EventKind> {
    outcome.events.iter().map(|e| e.kind).collect()
}

// ---- pending → creating → running -------------------------------------------------------

#[test]
fn pending_worker_creates_every_replica_and_moves_to_creating() {
    let (actions, out) = World::worker(json!({"replicas": 3})).pass();
    assert_eq!(actions.creates(), [0, 1, 2]);
    assert_eq!(out.memory.status, S::Creating);
    assert_eq!(out.status_change.unwrap().from, S::Pending);
}

// ---- success means stable ----------------------------------------------------------------

#[test]
fn a_worker_without_checks_is_stable_only_once_its_instances_ran_for_stable_after() {
    let mut w = World::worker(json!({"replicas": 2}))
        .status(S::Creating)
        .instance(0, RUNNING);
    w = w.now(4).instance(1, RUNNING);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Running, "running as soon as both run");
    assert!(!out.stable, "the newest has run 0 s of 10 s");
    assert_eq!(
        out.waiting_on,
        Some(WaitingOn::Stabilizing {
            until: at(14),
            needed: Duration::from_secs(10)
        })
    );
    assert_eq!(w.plan().wake_at, Some(at(14)), "woken when the newest has");
    let (_, out) = w.now(14).pass();
    assert!(out.stable);
    assert_eq!(out.waiting_on, None);
}

#[test]
fn the_deployments_stable_after_wins_and_zero_is_stable_at_once() {
    let w = World::worker(json!({"stable_after": "3s"}))
        .status(S::Running)
        .instance(0, RUNNING);
    assert!(!w.clone().now(2).pass().1.stable);
    assert!(w.clone().now(3).pass().1.stable);
    let w = World::worker(json!({"stable_after": "0s"}))
        .status(S::Creating)
        .instance(0, RUNNING);
    assert!(w.pass().1.stable);
}

#[test]
fn a_death_inside_the_window_starts_it_over_with_the_replacement() {
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, RUNNING);
    w.now = at(5);
    w.instances[0].phase = exited(1);
    let (_, out) = w.step(2);
    assert!(!out.stable, "its instance died before it was stable");
    assert_eq!(events(&out), [EventKind::InstanceDied]);
    w.step(0);
    let (_, out) = w.pass();
    assert!(!out.stable, "the replacement starts its own window");
}

#[test]
fn readiness_checks_decide_stability_for_a_gated_worker() {
    let w = World::worker(json!({"health_checks": http_readiness("2s"), "stable_after": "1h"}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0)
        .now(2);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Running);
    assert!(out.stable, "the gate already held it for min_healthy_time");
}

#[test]
fn jobs_are_judged_by_their_status_not_a_window() {
    let w = World::job(json!({}))
        .status(S::Running)
        .instance(0, exited(0));
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Completed);
    assert!(out.stable);
}

#[test]
fn zero_replicas_is_running_with_nothing_to_create() {
    let (actions, out) = World::worker(json!({"replicas": 0})).pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(out.health, Some(Health::Healthy));
}

#[test]
fn created_but_not_started_instance_is_started() {
    let w = World::worker(json!({}))
        .status(S::Creating)
        .instance(0, Phase::Created);
    let (actions, out) = w.pass();
    assert_eq!(actions.starts(), [id(1, 0)]);
    assert!(actions.creates().is_empty());
    assert_eq!(out.instances[0].state, InstanceState::Starting);
}

#[test]
fn worker_without_readiness_checks_runs_once_its_instances_run() {
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .instance(1, RUNNING);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(
        out.instances.iter().map(|i| i.state).collect::<Vec<_>>(),
        [InstanceState::Ready, InstanceState::Ready]
    );
}

#[test]
fn each_instance_remembers_since_when_its_readiness_checks_are_green() {
    let checks = json!([
        {"type": "http", "url": "http://localhost:8080/", "readiness": true},
        {"type": "tcp", "port": 9000, "readiness": true},
        {"type": "tcp", "port": 9001},
    ]);
    let w = World::worker(json!({"replicas": 2, "health_checks": checks}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, 3)
        .failing(&id(1, 0), 1, 1)
        .green(&id(1, 0), 2, 1)
        .remember(&id(1, 1), |m| {
            m.green.insert(0, at(2));
        })
        .now(20);
    let (_, out) = w.pass();
    let green = |rid: &str| out.memory.instances[rid].green.clone();
    assert_eq!(
        green(&id(1, 0)),
        std::collections::BTreeMap::from([(0, at(3))]),
        "a failing check forgets its time; a liveness check is not a readiness clock"
    );
    assert_eq!(
        green(&id(1, 1)),
        std::collections::BTreeMap::from([(0, at(2))]),
        "a check not reported since the agent started keeps what was remembered"
    );
}

#[test]
fn gate_holds_until_min_healthy_time() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0)
        .now(5);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Creating);
    assert_eq!(out.instances[0].state, InstanceState::Started);
    assert_eq!(
        out.waiting_on,
        Some(WaitingOn::Readiness {
            instance: id(1, 0),
            check: 0,
            green_for: Duration::from_secs(5),
            needed: Duration::from_secs(10)
        })
    );
}

#[test]
fn gate_opens_once_green_for_min_healthy_time() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0)
        .now(10);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(out.instances[0].state, InstanceState::Ready);
    assert_eq!(out.waiting_on, None);
}

#[test]
fn gate_needs_the_longest_min_healthy_time_across_checks() {
    let checks = json!([
        {"type": "http", "url": "http://localhost:8080/", "readiness": true, "min_healthy_time": "5s"},
        {"type": "tcp", "port": 8080, "readiness": true, "min_healthy_time": "20s"}
    ]);
    let w = World::worker(json!({"health_checks": checks}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0)
        .green(&id(1, 0), 1, 0)
        .now(10);
    let (_, out) = w.pass();
    assert_eq!(
        out.memory.status,
        S::Creating,
        "check 0 is green long enough for itself but not for the max"
    );
    assert!(matches!(
        out.waiting_on,
        Some(WaitingOn::Readiness { check: 0, .. })
    ));
    assert_eq!(w.now(20).pass().1.memory.status, S::Running);
}

#[test]
fn default_min_healthy_time_is_ten_seconds() {
    let checks = json!([{"type": "tcp", "port": 80, "readiness": true}]);
    let w = World::worker(json!({"health_checks": checks}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0);
    assert_eq!(w.clone().now(9).pass().1.memory.status, S::Creating);
    assert_eq!(w.now(10).pass().1.memory.status, S::Running);
}

#[test]
fn a_flap_resets_the_gate() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, 1)
        .now(60);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Creating);
    assert!(
        matches!(out.waiting_on, Some(WaitingOn::Readiness { green_for, .. }) if green_for.as_millis() == 0)
    );
}

#[test]
fn gate_waits_for_every_instance() {
    let w = World::worker(json!({"replicas": 2, "health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, 0)
        .green(&id(1, 1), 0, 8)
        .now(10);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Creating);
    assert!(
        matches!(out.waiting_on, Some(WaitingOn::Readiness { ref instance, .. }) if *instance == id(1, 1))
    );
    assert_eq!(out.health, Some(Health::Degraded));
}

#[test]
fn failing_readiness_probes_only_record_while_creating() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, 50)
        .now(30);
    let (actions, out) = w.pass();
    assert!(
        actions.is_empty(),
        "no on_failure while creating: {actions:?}"
    );
    assert!(out.events.is_empty());
}

#[test]
fn readiness_deadline_fails_a_deployment_still_creating() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .status_since(0)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, 5)
        .now(600);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Failed);
    assert_eq!(
        out.status_change.as_ref().unwrap().reason,
        "readiness_deadline_exceeded"
    );
    assert_eq!(events(&out), [EventKind::ReadinessDeadlineExceeded]);
}

#[test]
fn readiness_deadline_not_yet_reached_keeps_creating() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .status_since(0)
        .instance(0, RUNNING)
        .now(599);
    assert_eq!(w.pass().1.memory.status, S::Creating);
}

#[test]
fn readiness_deadline_is_configurable() {
    let mut w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .now(31);
    w.policy.rollout_deadline = Duration::from_secs(30);
    assert_eq!(w.pass().1.memory.status, S::Failed);
}

#[test]
fn converged_running_worker_plans_nothing() {
    let w = World::worker(json!({"replicas": 2, "health_checks": http_readiness("5s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, 0)
        .green(&id(1, 1), 0, 0)
        .now(100);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.status_change, None);
    assert!(out.events.is_empty());
    assert_eq!(out.health, Some(Health::Healthy));
}

#[test]
fn running_worker_with_an_unready_instance_stays_running_but_degraded() {
    let w = World::worker(json!({"replicas": 2, "health_checks": http_readiness("5s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, 0)
        .failing(&id(1, 1), 0, 1)
        .now(100);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(out.health, Some(Health::Degraded));
}

#[test]
fn no_ready_instance_is_unhealthy() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, 1);
    assert_eq!(w.pass().1.health, Some(Health::Unhealthy));
}

#[test]
fn health_is_unknown_until_the_first_probe_reports() {
    // As right after an agent restart: everything runs, nothing was probed yet.
    let w = World::worker(json!({"replicas": 2, "health_checks": http_readiness("5s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, -60);
    let (actions, out) = w.pass();
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(out.memory.status, S::Running, "no status moves on unknown");
    assert_eq!(out.health, None, "unknown, not unhealthy");
    assert_eq!(out.waiting_on, Some(WaitingOn::FirstProbe { instances: 1 }));
}

#[test]
fn scale_up_of_a_running_worker_adds_instances_without_replacing() {
    let w = World::worker(json!({"replicas": 3}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING);
    let (actions, out) = w.pass();
    assert_eq!(actions.creates(), [2]);
    assert!(actions.removes().is_empty());
    assert_eq!(out.memory.status, S::Running);
}

#[test]
fn an_instance_still_being_stopped_keeps_its_name() {
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .remember(&id(1, 0), |m| m.stopping = true);
    let (actions, _) = w.pass();
    assert_eq!(
        actions.creates(),
        [2],
        "ordinal 0 is still in use by the instance being stopped"
    );
}

#[test]
fn scale_down_removes_the_highest_ordinals_first() {
    let w = World::worker(json!({"replicas": 1}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .instance(2, RUNNING);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 2), true), (id(1, 1), true)]);
    assert_eq!(events(&out), [EventKind::Scaled]);
}

#[test]
fn scale_down_removes_unready_instances_first() {
    let w = World::worker(json!({"replicas": 1, "health_checks": http_readiness("1s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .failing(&id(1, 0), 0, 1)
        .green(&id(1, 1), 0, 0)
        .now(10);
    assert_eq!(w.pass().0.removes(), [(id(1, 0), true)]);
}

// ---- crashes and the restart counter ----------------------------------------------------

#[test]
fn unexpected_exit_counts_a_restart_and_replaces_after_backoff() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, exited(1))
        .now(10);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), false)]);
    assert!(
        actions.creates().is_empty(),
        "the replacement waits for the backoff"
    );
    assert_eq!(out.memory.restart_count, 1);
    assert_eq!(
        out.memory.status,
        S::Running,
        "a death does not move a running worker"
    );
    assert_eq!(events(&out), [EventKind::InstanceDied]);
    assert_eq!(out.instances[0].state, InstanceState::Error);
    assert_eq!(
        out.instances[0].reason.as_deref(),
        Some("exited with code 1")
    );
}

#[test]
fn replacement_is_created_once_the_backoff_passed() {
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, exited(1))
        .now(10);
    w.step(1);
    let (actions, _) = w.pass();
    assert_eq!(actions.creates(), [0]);
}

#[test]
fn backoff_doubles_with_each_restart() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .restarts(3)
        .instance(0, exited(1))
        .now(10);
    let (_, out) = w.pass();
    assert_eq!(out.memory.retry.unwrap().next_at, at(10 + 8));
}

#[test]
fn the_same_exit_is_never_counted_twice() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .restarts(1)
        .instance(0, exited(1))
        .remember(&id(1, 0), |m| m.counted = true);
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 1);
    assert!(out.events.is_empty());
    assert_eq!(actions.removes(), [(id(1, 0), false)], "removal is retried");
}

#[test]
fn an_instance_keel_stopped_is_not_a_crash() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, exited(137))
        .remember(&id(1, 0), |m| m.stopping = true);
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 0);
    assert!(out.events.is_empty());
    assert_eq!(actions.removes(), [(id(1, 0), false)]);
    assert_eq!(actions.creates(), [0], "replaced without backoff");
}

#[test]
fn oom_kill_is_a_crash_with_its_reason() {
    let w = World::worker(json!({})).status(S::Running).instance(
        0,
        Phase::Exited {
            exit_code: 137,
            oom_killed: true,
        },
    );
    let (_, out) = w.pass();
    assert_eq!(out.memory.restart_count, 1);
    assert_eq!(
        out.instances[0].reason.as_deref(),
        Some("was killed: out of memory (exit code 137)")
    );
}

#[test]
fn fifth_death_moves_a_worker_to_crash_loop_back_off() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .restarts(4)
        .instance(0, exited(2));
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 5);
    assert_eq!(out.memory.status, S::CrashLoopBackOff);
    assert_eq!(out.status_change.unwrap().reason, "max_restart_count");
    assert!(actions.creates().is_empty());
}

#[test]
fn crash_loop_back_off_is_sticky() {
    let w = World::worker(json!({}))
        .status(S::CrashLoopBackOff)
        .restarts(5)
        .now(3600);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::CrashLoopBackOff);
}

#[test]
fn max_restart_count_is_configurable() {
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .restarts(1)
        .instance(0, exited(2));
    w.policy.max_restart_count = 2;
    assert_eq!(w.pass().1.memory.status, S::CrashLoopBackOff);
}

#[test]
fn a_crash_while_creating_keeps_creating() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, exited(1));
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Creating);
    assert_eq!(out.memory.restart_count, 1);
    assert!(matches!(out.waiting_on, Some(WaitingOn::Backoff { .. })));
}

// ---- retried and terminal statuses ------------------------------------------------------

#[test]
fn a_failed_create_moves_to_its_retried_status_with_a_backoff() {
    let w = World::worker(json!({}))
        .status(S::Creating)
        .failure(S::ImagePullBackOff, "pull access denied for busybox")
        .now(5);
    let (actions, out) = w.pass();
    assert_eq!(out.memory.status, S::ImagePullBackOff);
    assert_eq!(
        out.memory.restart_count, 0,
        "the first failure is not a re-attempt"
    );
    assert_eq!(out.memory.retry.as_ref().unwrap().next_at, at(6));
    assert!(actions.creates().is_empty());
    assert_eq!(events(&out), [EventKind::ActionFailed]);
    assert_eq!(
        out.waiting_on,
        Some(WaitingOn::Backoff {
            until: at(6),
            reason: Some("pull access denied for busybox".to_owned())
        })
    );
}

#[test]
fn every_retried_status_comes_from_its_failure() {
    for status in [
        S::ImagePullBackOff,
        S::CreateContainerError,
        S::NetworkError,
        S::ConfigError,
        S::FileSystemError,
        S::Error,
    ] {
        let (_, out) = World::worker(json!({})).failure(status, "boom").pass();
        assert_eq!(out.memory.status, status);
    }
}

#[test]
fn a_retried_status_waits_for_its_backoff() {
    let mut w = World::worker(json!({}))
        .failure(S::NetworkError, "no network")
        .now(5);
    w.step(0);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::NetworkError);
}

#[test]
fn a_retried_status_holds_while_it_reattempts_and_gives_way_once_the_instance_exists() {
    let mut w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .failure(S::ConfigError, "secret db-password missing")
        .now(5);
    w.step(2);
    let (actions, out) = w.pass();
    assert_eq!(actions.creates(), [0]);
    assert_eq!(
        out.memory.status,
        S::ConfigError,
        "a re-attempt is not news"
    );
    assert_eq!(out.status_change, None);
    assert!(
        !matches!(out.waiting_on, Some(WaitingOn::Backoff { .. })),
        "no back-off to a time already past while it re-attempts: {:?}",
        out.waiting_on
    );
    w.step(0);
    let (_, out) = w.pass();
    assert_eq!(
        out.memory.status,
        S::Creating,
        "the instance exists: the cause is gone"
    );
    assert_eq!(
        out.status_change.unwrap().message,
        "the retried action went through; creating instances"
    );
}

#[test]
fn a_retried_status_gives_way_when_the_instance_was_made_and_then_crashed() {
    let mut w = World::worker(json!({}))
        .failure(S::ImagePullBackOff, "registry down")
        .now(5);
    w.step(2);
    // The re-attempt pulled and started; the application died before the next pass.
    w.step(0);
    w.instances[0].phase = exited(1);
    let (_, out) = w.pass();
    assert_eq!(
        out.memory.status,
        S::Creating,
        "the pull went through: a crash is not an image_pull_back_off"
    );
    assert_eq!(events(&out), [EventKind::InstanceDied]);
}

#[test]
fn a_retried_status_in_back_off_says_until_when_and_why() {
    let mut w = World::worker(json!({}))
        .failure(S::ConfigError, "secret db-password missing")
        .now(5);
    w.step(0);
    let (_, out) = w.pass();
    assert!(
        matches!(&out.waiting_on, Some(WaitingOn::Backoff { reason: Some(r), until }) if r == "secret db-password missing" && *until > w.now),
        "{:?}",
        out.waiting_on
    );
}

#[test]
fn a_pull_that_keeps_failing_stays_image_pull_back_off_until_its_budget_is_spent() {
    let mut w = World::worker(json!({}));
    let mut statuses = Vec::new();
    for _ in 0..20 {
        // Every create is refused: the executor reports the failed pull.
        let (actions, out) = w.pass();
        w.memory = out.memory.clone();
        statuses.push(out.memory.status);
        if out.memory.status == S::CrashLoopBackOff {
            break;
        }
        if !actions.creates().is_empty() {
            w = w.failure(S::ImagePullBackOff, "manifest unknown");
        }
        if let Some(next) = out.memory.retry.as_ref().map(|r| r.next_at) {
            w.now = next.max(w.now);
        }
    }
    let changes: Vec<S> = statuses
        .windows(2)
        .filter(|p| p[0] != p[1])
        .map(|p| p[1])
        .collect();
    assert_eq!(
        changes,
        [S::ImagePullBackOff, S::CrashLoopBackOff],
        "one change into the back-off, none back to creating between attempts: {statuses:?}"
    );
}

#[test]
fn a_failed_reattempt_bumps_the_restart_counter_and_doubles_the_wait() {
    let mut w = World::worker(json!({}))
        .failure(S::ConfigError, "secret missing")
        .now(5);
    w.step(2);
    let (actions, reattempt) = w.pass();
    assert_eq!(actions.creates(), [0]);
    w.memory = reattempt.memory;
    let (_, out) = w.failure(S::ConfigError, "still missing").pass();
    assert_eq!(out.memory.restart_count, 1);
    assert_eq!(out.memory.status, S::ConfigError);
    assert_eq!(out.memory.retry.unwrap().next_at, at(7 + 2));
}

#[test]
fn a_retried_status_returns_to_running_once_the_cause_is_gone() {
    let mut w = World::worker(json!({}))
        .failure(S::ImagePullBackOff, "registry down")
        .now(5);
    w.step(2);
    w.step(1);
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(out.memory.retry, None);
}

#[test]
fn failed_reattempts_reach_crash_loop_back_off() {
    let mut w = World::worker(json!({}))
        .status(S::ImagePullBackOff)
        .restarts(4)
        .failure(S::ImagePullBackOff, "denied");
    w.memory.retry = Some(crate::model::memory::Retry {
        attempts: 5,
        next_at: at(0),
        reason: None,
    });
    let (_, out) = w.pass();
    assert_eq!(out.memory.restart_count, 5);
    assert_eq!(out.memory.status, S::CrashLoopBackOff);
}

#[test]
fn insufficient_resources_is_terminal() {
    let mut w =
        World::worker(json!({})).failure(S::InsufficientResources, "requested 64Gi, 2Gi available");
    let (_, out) = w.step(3600);
    assert_eq!(out.memory.status, S::InsufficientResources);
    let (actions, out) = w.pass();
    assert!(actions.is_empty(), "terminal statuses are not re-attempted");
    assert_eq!(out.memory.status, S::InsufficientResources);
}

#[test]
fn a_failed_deployment_keeps_what_runs_and_starts_nothing() {
    let w = World::worker(json!({"replicas": 3}))
        .status(S::Failed)
        .instance(0, RUNNING)
        .now(9999);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Failed);
}

#[test]
fn a_new_spec_leaves_a_terminal_status() {
    let w = World::worker(json!({}))
        .status(S::CrashLoopBackOff)
        .restarts(5)
        .new_spec(json!({"image": "busybox:1.37"}));
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 0);
    assert_eq!(actions.creates(), [0]);
    assert_eq!(out.memory.status, S::Creating);
}

// ---- jobs -------------------------------------------------------------------------------

#[test]
fn job_skips_the_readiness_gate() {
    let w = World::job(json!({"health_checks": http_readiness("30s")}))
        .status(S::Creating)
        .instance(0, RUNNING);
    assert_eq!(w.pass().1.memory.status, S::Running);
}

#[test]
fn job_exit_zero_completes() {
    let w = World::job(json!({}))
        .status(S::Running)
        .instance(0, exited(0));
    let (actions, out) = w.pass();
    assert_eq!(out.memory.status, S::Completed);
    assert!(
        actions.is_empty(),
        "a finished job instance is kept for its logs"
    );
    assert_eq!(out.health, None);
}

#[test]
fn job_nonzero_exit_fails() {
    let w = World::job(json!({}))
        .status(S::Running)
        .instance(0, exited(3));
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Failed);
    assert_eq!(
        out.status_change.unwrap().message,
        "job instance web-1-0 exited with code 3"
    );
}

#[test]
fn job_killed_by_oom_fails() {
    let w = World::job(json!({})).status(S::Running).instance(
        0,
        Phase::Exited {
            exit_code: 137,
            oom_killed: true,
        },
    );
    assert_eq!(w.pass().1.memory.status, S::Failed);
}

#[test]
fn completed_job_is_never_run_again() {
    let mut w = World::job(json!({}))
        .status(S::Running)
        .instance(0, exited(0));
    w.step(60);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Completed);
}

#[test]
fn job_waits_for_every_replica_to_complete() {
    let w = World::job(json!({"replicas": 2}))
        .status(S::Running)
        .instance(0, exited(0))
        .instance(1, RUNNING);
    assert_eq!(w.pass().1.memory.status, S::Running);
}

#[test]
fn job_failing_to_start_fails_at_max_restart_count() {
    let mut w = World::job(json!({}))
        .status(S::Error)
        .restarts(4)
        .failure(S::Error, "exec format error");
    w.memory.retry = Some(crate::model::memory::Retry {
        attempts: 5,
        next_at: at(0),
        reason: None,
    });
    assert_eq!(w.pass().1.memory.status, S::Failed);
}

// ---- liveness ---------------------------------------------------------------------------

fn live_worker(on_failure: &str, failures: u32) -> World {
    World::worker(json!({"health_checks": tcp_liveness(on_failure)}))
        .status(S::Running)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, failures)
}

#[test]
fn liveness_is_not_evaluated_while_creating() {
    let w = live_worker("restart", 10).status(S::Creating);
    let (actions, out) = w.pass();
    assert!(actions.removes().is_empty());
    assert!(out.events.is_empty());
}

#[test]
fn liveness_below_threshold_does_nothing() {
    let (actions, out) = live_worker("restart", 2).pass();
    assert!(actions.is_empty());
    assert!(out.events.is_empty());
}

#[test]
fn liveness_restart_replaces_the_instance_and_counts_toward_the_budget() {
    let (actions, out) = live_worker("restart", 3).pass();
    assert_eq!(actions.removes(), [(id(1, 0), true)]);
    assert_eq!(
        out.memory.restart_count, 1,
        "a forced replacement is a restart"
    );
    assert_eq!(
        out.memory.status,
        S::Running,
        "liveness never moves the status"
    );
    assert_eq!(events(&out), [EventKind::HealthCheckFailed]);
    assert!(out.memory.instances[&id(1, 0)].stopping);
    assert_eq!(
        out.instances[0].state,
        InstanceState::Stopping,
        "no longer counted as serving, but still running"
    );
}

#[test]
fn liveness_stop_marks_the_deployment_deleted_and_removes_it() {
    let (actions, out) = live_worker("stop", 3).pass();
    assert_eq!(out.memory.status, S::Deleted);
    assert_eq!(out.status_change.unwrap().reason, "liveness_stop");
    assert_eq!(actions.removes(), [(id(1, 0), true)]);
    assert_eq!(out.health, None);
}

#[test]
fn a_stopped_deployment_stays_stopped() {
    let w = World::worker(json!({})).status(S::Deleted).now(600);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Deleted);
}

#[test]
fn liveness_alert_only_records_an_event() {
    let (actions, out) = live_worker("alert", 3).pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(events(&out), [EventKind::HealthCheckFailed]);
    assert_eq!(
        out.events[0].notify,
        Some(crate::model::event::NotificationKind::DeploymentHealthCheckFailed)
    );
}

#[test]
fn liveness_fires_once_per_failure_streak() {
    let mut w = live_worker("alert", 3);
    w.step(10);
    let w = w.failing(&id(1, 0), 0, 4);
    let (_, out) = w.pass();
    assert!(out.events.is_empty(), "the same streak fired already");
}

#[test]
fn liveness_can_fire_again_after_recovering() {
    let mut w = live_worker("alert", 3);
    w.step(10);
    let mut w = w.green(&id(1, 0), 0, 10);
    w.step(10);
    let w = w.failing(&id(1, 0), 0, 3);
    assert_eq!(events(&w.pass().1), [EventKind::HealthCheckFailed]);
}

// ---- rolling updates --------------------------------------------------------------------

fn rolled(replicas: u32) -> World {
    let mut w = World::worker(json!({"replicas": replicas, "health_checks": http_readiness("5s")}))
        .status(S::Running);
    for ordinal in 0..replicas {
        w = w.instance(ordinal, RUNNING).green(&id(1, ordinal), 0, 0);
    }
    w.now(100).new_spec(json!({"image": "busybox:1.37"}))
}

#[test]
fn rollout_starts_one_new_instance_beside_the_old() {
    let (actions, out) = rolled(3).pass();
    assert_eq!(actions.creates(), [0]);
    assert!(actions.removes().is_empty());
    assert_eq!(out.memory.status, S::Creating);
    assert_eq!(
        out.waiting_on,
        Some(WaitingOn::Rollout { ready: 0, total: 3 })
    );
}

#[test]
fn rollout_waits_for_readiness_before_stopping_old() {
    let mut w = rolled(3);
    w.boot = Boot::NeverReady;
    w.step(10);
    let (actions, _) = w.pass();
    assert!(
        actions.is_empty(),
        "nothing moves until the new instance is ready: {actions:?}"
    );
}

#[test]
fn rollout_stops_one_old_instance_when_a_new_one_is_ready() {
    let mut w = rolled(3);
    w.step(6);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 2), true)]);
    assert_eq!(actions.creates(), [1]);
    assert_eq!(events(&out), [EventKind::RollingUpdate]);
}

/// Instances whose every check has been green for `needed` seconds.
fn ready_count(w: &World, needed: i64) -> usize {
    w.instances
        .iter()
        .filter(|i| {
            let state = w.checks.get(&(i.runtime_id.clone(), 0));
            state
                .and_then(|c| c.green_since)
                .is_some_and(|g| w.now.0 - g.0 >= needed * 1000)
        })
        .count()
}

#[test]
fn rolling_update_of_three_never_drops_below_three_ready_nor_exceeds_four() {
    let mut w = rolled(3);
    for _ in 0..40 {
        w.step(2);
        assert!(
            w.instances.len() <= 4,
            "{} instances live",
            w.instances.len()
        );
        assert!(
            ready_count(&w, 5) >= 3,
            "only {} ready at {}",
            ready_count(&w, 5),
            w.now.0 - super::fixtures::T0
        );
    }
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Running);
    assert!(w.instances.iter().all(|i| i.generation == 2));
    assert_eq!(w.instances.len(), 3);
}

#[test]
fn failed_rollout_keeps_the_old_generation_serving() {
    let mut w = rolled(2);
    w.boot = Boot::NeverReady;
    w.step(600);
    let (actions, out) = w.pass();
    assert_eq!(out.memory.status, S::Failed);
    assert_eq!(out.status_change.as_ref().unwrap().reason, "rollout_failed");
    assert_eq!(events(&out), [EventKind::RolloutFailed]);
    assert_eq!(
        actions.removes(),
        [(id(2, 0), true)],
        "only the new generation is stopped"
    );
    w.step(10);
    let (actions, _) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(w.instances.iter().filter(|i| i.generation == 1).count(), 2);
}

#[test]
fn rollout_without_health_checks_replaces_immediately() {
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .new_spec(json!({"image": "busybox:1.37"}));
    let (actions, _) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), true), (id(1, 1), true)]);
    assert_eq!(actions.creates(), [0, 1]);
}

#[test]
fn rollout_with_a_published_port_replaces_one_at_a_time_without_overlap() {
    let mut w = World::worker(json!({"replicas": 2, "ports": [{"published": 8080, "target": 80}], "health_checks": http_readiness("2s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .instance(1, RUNNING)
        .green(&id(1, 0), 0, 0)
        .green(&id(1, 1), 0, 0)
        .now(100)
        .new_spec(json!({"image": "busybox:1.37"}));
    let (actions, out) = w.step(3);
    assert_eq!(
        actions.removes(),
        [(id(1, 1), true)],
        "stop first: the port cannot be shared"
    );
    assert!(actions.creates().is_empty());
    assert!(out
        .events
        .iter()
        .any(|e| e.message.contains("one at a time")));
    for _ in 0..20 {
        w.step(3);
        assert!(
            w.instances.len() <= 2,
            "instances overlapped on the host port"
        );
    }
    assert!(w.instances.iter().all(|i| i.generation == 2) && w.instances.len() == 2);
}

#[test]
fn a_crash_of_the_previous_generation_is_counted_and_not_replaced() {
    let w = World::worker(json!({"health_checks": http_readiness("5s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .old_instance(0, 0, exited(1));
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(World::runtime_id(0, 0), false)]);
    assert!(actions.creates().is_empty());
    assert_eq!(out.memory.restart_count, 1);
}

#[test]
fn an_unready_old_instance_is_replaced_first() {
    let w = rolled(2).failing(&id(1, 0), 0, 1);
    let (actions, _) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), true)]);
    assert_eq!(actions.creates(), [0]);
}

#[test]
fn changing_only_replicas_scales_without_a_rollout() {
    let w = World::worker(json!({"replicas": 1, "health_checks": http_readiness("1s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 0)
        .now(10);
    let mut w2 = w.clone().new_spec(json!({"replicas": 2}));
    w2.old_template = "unused".into();
    assert_eq!(
        w2.template, w.template,
        "replicas are not part of the template"
    );
    let (actions, _) = w2.pass();
    assert_eq!(actions.creates(), [1]);
    assert!(actions.removes().is_empty());
}

// ---- pruning, unknown runtimes, orphans --------------------------------------------------

#[test]
fn pruned_deployment_removes_every_instance_and_is_deleted() {
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Deleted)
        .pruned()
        .instance(0, RUNNING)
        .instance(1, Phase::Created);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), true), (id(1, 1), true)]);
    assert_eq!(out.memory.status, S::Deleted);
    assert_eq!(out.desired, 0);
}

#[test]
fn a_pruned_job_removes_its_exited_instances_too() {
    for (name, status) in [("completed", S::Completed), ("failed", S::Failed)] {
        let w = World::job(json!({"replicas": 2}))
            .status(status)
            .pruned()
            .instance(0, exited(0))
            .instance(1, exited(if status == S::Failed { 1 } else { 0 }));
        let (actions, out) = w.pass();
        assert_eq!(
            actions.removes(),
            [(id(1, 0), false), (id(1, 1), false)],
            "{name}: nothing of a job gone from the repository stays behind"
        );
        assert_eq!(out.memory.status, S::Deleted, "{name}");
    }
}

#[test]
fn a_pruned_worker_removes_an_exited_instance_without_stopping_it() {
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Running)
        .pruned()
        .instance(0, RUNNING)
        .instance(1, exited(137))
        .remember(&id(1, 1), |m| m.counted = true);
    let (actions, _) = w.pass();
    let mut removes = actions.removes();
    removes.sort();
    assert_eq!(removes, [(id(1, 0), true), (id(1, 1), false)]);
}

#[test]
fn pruning_a_deployment_in_a_terminal_status_still_removes_it() {
    let w = World::worker(json!({}))
        .status(S::CrashLoopBackOff)
        .pruned()
        .instance(0, RUNNING);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes().len(), 1);
    assert_eq!(out.memory.status, S::Deleted);
}

#[test]
fn an_unlistable_runtime_holds_everything() {
    let w = World::worker(json!({"replicas": 3}))
        .status(S::Creating)
        .unavailable();
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Creating);
    assert!(matches!(
        out.waiting_on,
        Some(WaitingOn::RuntimeUnavailable { .. })
    ));
}

#[test]
fn an_unlistable_runtime_never_prunes() {
    let w = World::worker(json!({}))
        .status(S::Deleted)
        .pruned()
        .instance(0, RUNNING)
        .unavailable();
    assert!(w.pass().0.is_empty());
}

#[test]
fn a_runtime_not_enabled_on_this_host_is_an_error_with_the_reason() {
    let mut w = World::worker(
        json!({"runtime": "cloud-hypervisor", "image": null, "vm": {"kernel": "/k", "initramfs": "/i"}}),
    );
    w.runtime = None;
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Error);
    assert_eq!(
        out.status_change.unwrap().message,
        "runtime cloud-hypervisor is not enabled on this host"
    );
}

#[test]
fn instances_of_unknown_deployments_are_removed() {
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, RUNNING);
    let mut stray = w.instances[0].clone();
    stray.deployment = crate::model::desired::DeploymentId::new("demo", "ghost");
    stray.runtime_id = "ghost-1-0".into();
    w.instances.push(stray);
    let plan = w.plan();
    assert_eq!(
        plan.actions,
        [Action::Remove {
            runtime: crate::model::manifest::RuntimeKind::Docker,
            deployment: crate::model::desired::DeploymentId::new("demo", "ghost"),
            runtime_id: "ghost-1-0".into(),
            stop: Some(super::plan::Stop {
                drain: w.policy.drain,
                grace: w.policy.stop_grace
            })
        }]
    );
}

#[test]
fn instances_of_a_held_deployment_are_not_orphans() {
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, RUNNING);
    let mut other = w.instances[0].clone();
    other.deployment = crate::model::desired::DeploymentId::new("demo", "busy");
    other.runtime_id = "busy-1-0".into();
    w.instances.push(other);
    w.held
        .insert(crate::model::desired::DeploymentId::new("demo", "busy"));
    assert!(w.plan().actions.is_empty());
}

#[test]
fn instances_survive_a_restart_of_the_agent_by_adoption() {
    // Fresh memory (as after losing it) with instances already running: adopted, not recreated.
    let w = World::worker(json!({"replicas": 2}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .instance(1, RUNNING);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
}

#[test]
fn an_orphan_is_removed_by_the_runtime_that_listed_it() {
    use crate::model::manifest::RuntimeKind;
    let mut w = World::worker(json!({}))
        .status(S::Running)
        .instance(0, RUNNING);
    let mut stray = w.instances[0].clone();
    stray.runtime = RuntimeKind::CloudHypervisor;
    stray.deployment = crate::model::desired::DeploymentId::new("demo", "ghost");
    stray.runtime_id = "vm-ghost-1-0".into();
    w.elsewhere = Some(vec![stray]);
    let removes: Vec<(RuntimeKind, String)> = w
        .plan()
        .actions
        .iter()
        .map(|a| (a.runtime(), a.deployment().name.clone()))
        .collect();
    assert_eq!(
        removes,
        [(RuntimeKind::CloudHypervisor, "ghost".to_owned())]
    );
}

#[test]
fn a_deployment_moved_to_another_runtime_is_replaced_across_runtimes() {
    use crate::model::manifest::RuntimeKind;
    // Generation 1 ran on Docker; generation 2 asks for Cloud Hypervisor.
    let w = World::worker(json!({})).status(S::Running);
    let mut w = w.new_spec(json!({
        "runtime": "cloud-hypervisor", "image": null, "vm": {"kernel": "/k", "initramfs": "/i"}
    }));
    w = w.old_instance(1, 0, RUNNING);
    w.elsewhere = Some(Vec::new());
    let actions = w.plan().actions;
    let planned: Vec<(RuntimeKind, &str)> = actions
        .iter()
        .map(|a| match a {
            Action::Create { .. } => (a.runtime(), "create"),
            Action::Start { .. } => (a.runtime(), "start"),
            Action::Remove { .. } => (a.runtime(), "remove"),
        })
        .collect();
    assert_eq!(
        planned,
        [
            (RuntimeKind::Docker, "remove"),
            (RuntimeKind::CloudHypervisor, "create")
        ],
        "the old instance leaves the runtime it runs on, the new one is created on the new"
    );
}

#[test]
fn a_pass_lists_removes_then_starts_then_creates() {
    // A surge rollout step creates the new instance and removes an unready old one in the
    // same pass: the remove comes first, whatever order the rules found them in.
    let w = World::worker(json!({"replicas": 2, "health_checks": [
        {"type": "tcp", "port": 80, "readiness": true}
    ]}))
    .status(S::Running);
    let w = w
        .new_spec(json!({"image": "busybox:1.37"}))
        .old_instance(1, 0, RUNNING)
        .old_instance(1, 1, Phase::Created)
        .green("web-1-0", 0, -60);
    let actions = w.plan().actions;
    let order: Vec<u8> = actions.iter().map(Action::order).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "{actions:?}");
    assert!(
        !actions.creates().is_empty() && !actions.removes().is_empty(),
        "{actions:?}"
    );
}

// ---- never leak, never lie ----------------------------------------------------------------

#[test]
fn a_stop_left_unfinished_by_a_killed_agent_is_done_again() {
    // Generation 1 was being replaced; the agent died after persisting the stop and before
    // doing it. The new agent sees it still running.
    let w = World::worker(json!({}))
        .status(S::Running)
        .new_spec(json!({"image": "busybox:1.37"}))
        .status(S::Running)
        .instance(0, RUNNING)
        .old_instance(1, 0, RUNNING)
        .remember(&id(1, 0), |m| m.stopping = true);
    let (actions, out) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), true)], "{actions:?}");
    let old = out
        .instances
        .iter()
        .find(|i| i.runtime_id == id(1, 0))
        .unwrap();
    assert_eq!(old.state, InstanceState::Stopping, "it runs: not `stopped`");
}

#[test]
fn an_unfinished_stop_is_resumed_even_for_a_deleted_deployment() {
    let w = World::worker(json!({}))
        .status(S::Deleted)
        .pruned()
        .instance(0, RUNNING)
        .remember(&id(1, 0), |m| m.stopping = true);
    let (actions, _) = w.pass();
    assert_eq!(actions.removes(), [(id(1, 0), true)]);
}

#[test]
fn deaths_in_one_pass_are_one_incident_for_the_budget() {
    let w = World::worker(json!({"replicas": 5}))
        .status(S::Running)
        .instance(0, exited(137))
        .instance(1, exited(137))
        .instance(2, exited(137))
        .instance(3, exited(137))
        .instance(4, exited(137));
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 1, "five deaths, one incident");
    assert_eq!(out.memory.status, S::Running, "not crash_loop_back_off");
    assert_eq!(events(&out), [EventKind::InstanceDied; 5]);
    assert_eq!(actions.removes().len(), 5);
}

#[test]
fn instances_stopped_by_their_runtime_going_away_are_replaced_without_counting() {
    let mut w = World::worker(json!({"replicas": 2}))
        .status(S::Running)
        .restarts(4)
        .instance(0, exited(143))
        .instance(1, exited(143));
    for instance in &mut w.instances {
        instance.interrupted = true;
    }
    let (actions, out) = w.pass();
    assert_eq!(out.memory.restart_count, 4, "not crashes");
    assert_eq!(out.memory.retry, None, "no backoff");
    assert_eq!(events(&out), [EventKind::InstanceInterrupted; 2]);
    assert_eq!(actions.removes().len(), 2);
    assert_eq!(actions.creates().len(), 2, "replaced at once");
}

#[test]
fn a_job_that_completed_before_an_outage_still_completed() {
    let mut w = World::job(json!({}))
        .status(S::Running)
        .instance(0, exited(0));
    w.instances[0].interrupted = true;
    let (_, out) = w.pass();
    assert_eq!(out.memory.status, S::Completed);
}

#[test]
fn a_liveness_check_that_never_passes_ends_in_crash_loop_back_off() {
    let mut w = live_worker("restart", 3);
    let mut last = S::Running;
    for _ in 0..20 {
        let (_, out) = w.step(120);
        last = out.memory.status;
        if last == S::CrashLoopBackOff {
            break;
        }
        // Every replacement fails its liveness check too.
        let ids: Vec<String> = w.instances.iter().map(|i| i.runtime_id.clone()).collect();
        for runtime_id in ids {
            w = w.failing(&runtime_id, 0, 3);
        }
    }
    assert_eq!(last, S::CrashLoopBackOff);
    assert_eq!(w.memory.restart_count, 5);
}

#[test]
fn a_worker_failing_its_liveness_check_is_not_healthy() {
    let w = World::worker(json!({"health_checks": tcp_liveness("alert")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .failing(&id(1, 0), 0, 3);
    let (_, out) = w.pass();
    assert_eq!(out.health, Some(Health::Unhealthy));
    assert_eq!(out.ready, 0);
    assert_eq!(out.instances[0].state, InstanceState::Started);
}

// ---- when the next pass is due (requeue_after) ------------------------------------------

#[test]
fn the_plan_wakes_when_a_crash_backoff_ends() {
    let w = World::worker(json!({}))
        .status(S::Running)
        .restarts(3)
        .instance(0, exited(1))
        .now(10);
    assert_eq!(w.plan().wake_at, Some(at(10 + 8)));
}

#[test]
fn the_plan_wakes_when_a_retried_status_may_try_again() {
    let w = World::worker(json!({})).failure(S::NetworkError, "no network");
    let (_, out) = w.pass();
    let retry_at = out.memory.retry.unwrap().next_at;
    assert!(retry_at > at(0));
    assert_eq!(w.plan().wake_at, Some(retry_at));
}

#[test]
fn the_plan_wakes_when_a_green_check_has_been_green_for_min_healthy_time() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Creating)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 5)
        .now(8);
    assert_eq!(w.plan().wake_at, Some(at(15)));
}

#[test]
fn the_plan_wakes_at_the_readiness_deadline_while_nothing_is_green() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Creating)
        .status_since(0)
        .instance(0, RUNNING)
        .now(30);
    assert_eq!(w.plan().wake_at, Some(at(600)));
}

#[test]
fn a_settled_deployment_asks_for_no_wake_up() {
    let w = World::worker(json!({"health_checks": http_readiness("10s")}))
        .status(S::Running)
        .instance(0, RUNNING)
        .green(&id(1, 0), 0, 5)
        .now(5000);
    let (actions, out) = w.pass();
    assert!(actions.is_empty());
    assert_eq!(out.memory.status, S::Running);
    assert_eq!(w.plan().wake_at, None);
}

#[test]
fn a_terminal_deployment_asks_for_no_wake_up() {
    let w = World::worker(json!({}))
        .status(S::CrashLoopBackOff)
        .status_since(10)
        .now(11);
    assert_eq!(w.plan().wake_at, None);
}
