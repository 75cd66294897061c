//! PURE: one reconcile pass decided, around `plan`. Given what the store holds (targets,
//! memory, the open revision, what the last pass persisted), what the runtimes and probes
//! report, the policy and `now`, `decide` returns everything the controller then does without
//! a choice of its own: the runtime actions, the outcomes to persist (only those that changed),
//! the open revision's new state, the probes that should be running, the deployments that are
//! gone and can be purged, and when the next pass is due by the clock alone.
//!
//! Invariants: a deployment with work in flight (`held`) is neither planned nor persisted; the
//! revision settles from the same outcomes that are persisted in the same transaction; an
//! outcome equal to the last persisted one is not written again unless it carries a status
//! change or events.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::desired::DeploymentId;
use crate::model::manifest::{HealthCheck, RuntimeKind};
use crate::model::memory::Memory;
use crate::model::observed::{ObservedInstance, Phase, RuntimeObservation};
use crate::model::plan::{Action, DecidedOn, Outcome, RevisionMove, WaitingOn};
use crate::model::status::{DeploymentStatus, RevisionState};
use crate::model::stored::{live_instances, RevisionRecord, StoredState};
use crate::model::time::Timestamp;
use crate::model::units::Duration;

use super::plan::{earliest, plan, Observed, PlanInput, Policy, Target};
use super::{rollback, views};

/// Everything one pass decides from.
#[derive(Debug, Clone, Copy)]
pub struct DecideInput<'a> {
    pub stored: &'a StoredState,
    pub memory: &'a BTreeMap<DeploymentId, Memory>,
    pub observed: &'a Observed,
    pub policy: &'a Policy,
    pub now: Timestamp,
    /// Deployments with work in flight: left alone this pass.
    pub held: &'a BTreeSet<DeploymentId>,
    /// The newest revision still queued or applying.
    pub open_revision: Option<&'a RevisionRecord>,
    /// The newest revision that succeeded (what a failed one is rolled back to).
    pub last_good: Option<&'a RevisionRecord>,
    /// The outcomes the previous passes persisted, by deployment.
    pub last: &'a BTreeMap<DeploymentId, Outcome>,
}

/// One probe that should be running.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub deployment: DeploymentId,
    pub runtime: RuntimeKind,
    pub instance: ObservedInstance,
    pub check_index: u32,
    pub check: HealthCheck,
}

/// What a pass does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// In the order to run them, per deployment.
    pub actions: Vec<Action>,
    /// Outcomes that differ from the last persisted ones (or carry a change or events).
    pub persist: Vec<(DeploymentId, Outcome)>,
    /// What becomes of the open revision, when it moved.
    pub revision: Option<RevisionMove>,
    pub probes: Vec<ProbeTarget>,
    /// Every outcome of the pass (what `last` is next time).
    pub outcomes: BTreeMap<DeploymentId, Outcome>,
    /// When the next pass is due by the clock alone (`Plan::wake_at`).
    pub wake_at: Option<Timestamp>,
    /// Deployments that are gone — out of the revision, `deleted`, no instance left in any
    /// runtime: their rows are purged (their events kept for a while).
    /// Each with the row it was decided on: a row a revision changed meanwhile is kept.
    pub purge: Vec<(DeploymentId, DecidedOn)>,
}

/// Decides one pass.
pub fn decide(input: &DecideInput<'_>) -> Decision {
    let targets = targets(input.stored, input.held);
    let planned = plan(&PlanInput {
        desired: &targets,
        observed: input.observed,
        memory: input.memory,
        policy: input.policy,
        now: input.now,
        held: input.held,
    });
    Decision {
        revision: input.open_revision.and_then(|open| {
            let change = revision_change(input.stored, open, &planned.outcomes)?;
            Some(settle(input, open, change, &planned.outcomes))
        }),
        persist: changed(&planned.outcomes, input.last),
        probes: probe_targets(input.stored, input.observed),
        purge: gone(input.stored, input.observed, &planned.outcomes),
        wake_at: earliest(planned.wake_at, recheck(input.observed, input.now)),
        actions: planned.actions,
        outcomes: planned.outcomes,
    }
}

/// The planner's targets: every stored deployment without work in flight.
pub fn targets<'a>(stored: &'a StoredState, held: &BTreeSet<DeploymentId>) -> Vec<Target<'a>> {
    stored
        .deployments
        .values()
        .filter(|d| !held.contains(&d.id))
        .map(|d| Target {
            id: &d.id,
            row: &d.uuid,
            spec: &d.spec,
            mounted_configs: &d.mounted_configs,
            generation: d.generation,
            template: &d.template,
            declared: d.in_revision,
        })
        .collect()
}

/// The outcomes worth writing: new or different, or carrying a status change or events.
pub fn changed(
    outcomes: &BTreeMap<DeploymentId, Outcome>,
    last: &BTreeMap<DeploymentId, Outcome>,
) -> Vec<(DeploymentId, Outcome)> {
    outcomes
        .iter()
        .filter(|(id, outcome)| {
            last.get(*id) != Some(*outcome)
                || outcome.status_change.is_some()
                || !outcome.events.is_empty()
                || !outcome.runs.is_empty()
        })
        .map(|(id, outcome)| (id.clone(), outcome.clone()))
        .collect()
}

/// How soon a runtime that did not answer is asked again: its deployments hold until it does,
/// so this is not left to the resync. (A disabled one changes nothing by being asked.)
pub const UNANSWERED_RECHECK: Duration = Duration::from_secs(2);

/// When to look again because a runtime did not answer.
fn recheck(observed: &Observed, now: Timestamp) -> Option<Timestamp> {
    let unanswered = observed.runtimes.values().any(|o| match o {
        RuntimeObservation::Unavailable { .. } => true,
        RuntimeObservation::Listed(_) | RuntimeObservation::Disabled { .. } => false,
    });
    unanswered.then(|| now.plus(UNANSWERED_RECHECK))
}

/// Deployments to purge: out of the revision, `deleted` by this pass's outcome, and without
/// any instance — exited ones included, whose removal is still to come. Nothing is purged
/// while a runtime does not answer: an instance there is unknown, not absent.
pub fn gone(
    stored: &StoredState,
    observed: &Observed,
    outcomes: &BTreeMap<DeploymentId, Outcome>,
) -> Vec<(DeploymentId, DecidedOn)> {
    // A disabled runtime holds nothing here; one that did not answer may.
    let all_listed = observed.runtimes.values().all(|o| match o {
        RuntimeObservation::Listed(_) | RuntimeObservation::Disabled { .. } => true,
        RuntimeObservation::Unavailable { .. } => false,
    });
    if !all_listed {
        return Vec::new();
    }
    outcomes
        .iter()
        .filter(|(id, outcome)| {
            let pruned = stored.deployments.get(*id).is_some_and(|d| !d.in_revision);
            pruned
                && outcome.memory.status == DeploymentStatus::Deleted
                && outcome.instances.is_empty()
        })
        .map(|(id, outcome)| (id.clone(), outcome.decided_on.clone()))
        .collect()
}

/// The open revision's state from its deployments (this pass's outcome where there is one,
/// else what the store holds), when it differs from the recorded one.
pub fn revision_change(
    stored: &StoredState,
    open: &RevisionRecord,
    outcomes: &BTreeMap<DeploymentId, Outcome>,
) -> Option<(i64, RevisionState)> {
    // A restore runs no job (see `store::rollback`): a job the failed revision ran is not
    // part of what the restore must reach.
    let restoring = open.restores.is_some();
    let goals: Vec<views::Goal> = stored
        .deployments
        .values()
        .filter(|d| d.in_revision || d.revision == open.id)
        .filter(|d| !(restoring && d.spec.kind == crate::model::manifest::WorkloadKind::Job))
        .map(|d| {
            let outcome = outcomes.get(&d.id);
            views::Goal {
                kind: d.spec.kind,
                status: outcome.map_or(d.status, |o| o.memory.status),
                declared: d.in_revision,
                live_instances: outcome.map_or(d.live, |o| live_instances(&o.instances)),
                stable: outcome.is_some_and(|o| o.stable),
                changed: d.revision == open.id,
                scheduled: outcome.is_some_and(|o| {
                    !o.memory.cron.active.is_empty()
                        || matches!(
                            o.waiting_on,
                            Some(WaitingOn::NextRun { .. } | WaitingOn::Suspended)
                        )
                }),
            }
        })
        .collect();
    let state = views::revision_state(&goals);
    (state != open.state).then_some((open.seq, state))
}

/// How the open revision moves to `change`: a failure is rolled back when the policy and the
/// revision allow it (see `rollback::verdict`).
fn settle(
    input: &DecideInput<'_>,
    open: &RevisionRecord,
    (seq, state): (i64, RevisionState),
    outcomes: &BTreeMap<DeploymentId, Outcome>,
) -> RevisionMove {
    if state != RevisionState::Failed || !failed_in_its_own_change(input.stored, open, outcomes) {
        return RevisionMove::Settle { seq, state };
    }
    let opted_out = input
        .stored
        .deployments
        .values()
        .find(|d| d.revision == open.id && d.spec.rollback == Some(false))
        .map(|d| &d.id);
    match rollback::verdict(open, input.last_good, input.policy.rollback, opted_out) {
        rollback::Verdict::RollBack { restore } => RevisionMove::RollBack { seq, restore },
        rollback::Verdict::Keep(_) => RevisionMove::Settle { seq, state },
    }
}

/// Whether a deployment the open revision changed is in a terminal failure (this pass's
/// outcome, else the store's status): only then is the revision to blame — and rolled back —
/// rather than one of the deployments it left as they were.
fn failed_in_its_own_change(
    stored: &StoredState,
    open: &RevisionRecord,
    outcomes: &BTreeMap<DeploymentId, Outcome>,
) -> bool {
    stored
        .deployments
        .values()
        .filter(|d| d.revision == open.id)
        .any(|d| {
            let status = outcomes.get(&d.id).map_or(d.status, |o| o.memory.status);
            status.class_for(d.spec.kind) == crate::model::status::StatusClass::Terminal
        })
}

/// Every (running instance, health check) of a deployment that is not being deleted.
pub fn probe_targets(stored: &StoredState, observed: &Observed) -> Vec<ProbeTarget> {
    let mut probes = Vec::new();
    for (kind, observation) in &observed.runtimes {
        let instances = match observation {
            RuntimeObservation::Listed(instances) => instances,
            RuntimeObservation::Unavailable { .. } | RuntimeObservation::Disabled { .. } => {
                continue
            }
        };
        for instance in instances.iter().filter(|i| i.phase == Phase::Running) {
            let Some(d) = stored.deployments.get(&instance.deployment) else {
                continue;
            };
            if d.status == DeploymentStatus::Deleted {
                continue;
            }
            for (index, check) in d.spec.health_checks.iter().enumerate() {
                probes.push(ProbeTarget {
                    deployment: d.id.clone(),
                    runtime: *kind,
                    instance: instance.clone(),
                    check_index: u32::try_from(index).unwrap_or(u32::MAX),
                    check: check.clone(),
                });
            }
        }
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::desired::template_hash;
    use crate::model::manifest::DeploymentDecl;
    use crate::model::status::InstanceState;
    use crate::model::stored::{StoredDeployment, StoredInstance};
    use DeploymentStatus as S;

    fn spec(name: &str, fields: serde_json::Value) -> DeploymentDecl {
        let mut base = serde_json::json!({"name": name, "namespace": "demo", "image": "busybox"});
        if let (Some(base), serde_json::Value::Object(fields)) = (base.as_object_mut(), fields) {
            base.extend(fields);
        }
        serde_json::from_value(base).unwrap()
    }

    fn stored(name: &str, status: S, in_revision: bool, revision: &str) -> StoredDeployment {
        let spec = spec(name, serde_json::json!({}));
        StoredDeployment {
            uuid: format!("uuid-{name}"),
            id: DeploymentId::new("demo", name),
            template: template_hash(&spec, &BTreeMap::new()),
            spec,
            mounted_configs: BTreeMap::new(),
            spec_hash: crate::model::desired::SpecHash::from_hex("h".into()),
            generation: 1,
            status,
            status_since: Timestamp(0),
            restart_count: 0,
            revision: revision.into(),
            in_revision,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            next_run_at: None,
            health: None,
            ready: 0,
            desired: 1,
            live: 0,
            waiting_on: None,
        }
    }

    fn state(deployments: Vec<StoredDeployment>) -> StoredState {
        StoredState {
            deployments: deployments.into_iter().map(|d| (d.id.clone(), d)).collect(),
        }
    }

    fn open(id: &str) -> RevisionRecord {
        RevisionRecord {
            seq: 7,
            source: "test".into(),
            id: id.into(),
            message: None,
            author: None,
            received_at: Timestamp(0),
            state: RevisionState::Applying,
            state_since: Timestamp(0),
            diagnostics: Vec::new(),
            superseded_by: None,
            desired_hash: None,
            restores: None,
            rolled_back_to: None,
            identical_to: None,
        }
    }

    fn instance(runtime_id: &str, exit_code: Option<i64>) -> StoredInstance {
        StoredInstance {
            runtime_id: runtime_id.into(),
            ordinal: 0,
            generation: 1,
            state: InstanceState::Stopped,
            reason: None,
            ip: None,
            started_at: None,
            exit_code,
            oom_killed: false,
        }
    }

    fn outcome(status: S, instances: Vec<StoredInstance>) -> Outcome {
        Outcome {
            decided_on: Default::default(),
            stable: true,
            memory: Memory::fresh(status, Timestamp(0), 0, Timestamp(0)),
            status_change: None,
            events: Vec::new(),
            runs: Vec::new(),
            health: None,
            ready: 0,
            desired: 1,
            waiting_on: None,
            instances,
        }
    }

    type Outcomes = Vec<(&'static str, Outcome)>;

    fn outcomes(list: Outcomes) -> BTreeMap<DeploymentId, Outcome> {
        list.into_iter()
            .map(|(name, o)| (DeploymentId::new("demo", name), o))
            .collect()
    }

    #[test]
    fn the_open_revision_settles_from_this_pass_and_the_store() {
        let cases: Vec<(&str, Vec<StoredDeployment>, Outcomes, Option<RevisionState>)> = vec![
            (
                "every_declared_worker_running_this_pass_succeeds",
                vec![stored("web", S::Creating, true, "r2")],
                vec![("web", outcome(S::Running, vec![]))],
                Some(RevisionState::Succeeded),
            ),
            (
                "a_held_deployment_counts_with_its_stored_status",
                vec![
                    stored("web", S::Running, true, "r2"),
                    stored("api", S::Creating, true, "r2"),
                ],
                vec![("web", outcome(S::Running, vec![]))],
                None,
            ),
            (
                "a_pruned_deployment_still_tearing_down_keeps_it_applying",
                vec![
                    stored("web", S::Running, true, "r2"),
                    stored("old", S::Deleted, false, "r2"),
                ],
                vec![("old", outcome(S::Deleted, vec![instance("c1", None)]))],
                None,
            ),
            (
                "a_pruned_deployment_whose_instances_exited_is_done",
                vec![
                    stored("web", S::Running, true, "r2"),
                    stored("old", S::Deleted, false, "r2"),
                ],
                vec![
                    ("web", outcome(S::Running, vec![])),
                    ("old", outcome(S::Deleted, vec![instance("c1", Some(0))])),
                ],
                Some(RevisionState::Succeeded),
            ),
            (
                "a_deployment_pruned_by_an_older_revision_is_not_part_of_it",
                vec![
                    stored("web", S::Running, true, "r2"),
                    stored("gone", S::Deleted, false, "r1"),
                ],
                vec![
                    ("web", outcome(S::Running, vec![])),
                    ("gone", outcome(S::Deleted, vec![instance("c1", None)])),
                ],
                Some(RevisionState::Succeeded),
            ),
            (
                "a_terminal_failure_fails_it",
                vec![
                    stored("web", S::Running, true, "r2"),
                    stored("api", S::Creating, true, "r2"),
                ],
                vec![("api", outcome(S::CrashLoopBackOff, vec![]))],
                Some(RevisionState::Failed),
            ),
            (
                "a_held_worker_is_not_counted_stable",
                vec![stored("web", S::Running, true, "r2")],
                vec![],
                None,
            ),
            (
                "a_running_worker_not_stable_yet_keeps_it_applying",
                vec![stored("web", S::Creating, true, "r2")],
                vec![(
                    "web",
                    Outcome {
                        stable: false,
                        ..outcome(S::Running, vec![])
                    },
                )],
                None,
            ),
            (
                "no_change_of_state_writes_nothing",
                vec![stored("web", S::Creating, true, "r2")],
                vec![("web", outcome(S::Creating, vec![]))],
                None,
            ),
        ];
        for (name, deployments, list, expected) in cases {
            let change = revision_change(&state(deployments), &open("r2"), &outcomes(list));
            assert_eq!(change, expected.map(|s| (7, s)), "{name}");
        }
    }

    #[test]
    fn only_a_runtime_that_did_not_answer_is_asked_again_soon() {
        let now = Timestamp(1_000);
        let with = |observation| Observed {
            runtimes: BTreeMap::from([(RuntimeKind::Docker, observation)]),
            checks: BTreeMap::new(),
        };
        let cases = [
            ("listed", RuntimeObservation::Listed(Vec::new()), None),
            (
                "unanswered",
                RuntimeObservation::Unavailable {
                    reason: "connection refused".into(),
                },
                Some(now.plus(UNANSWERED_RECHECK)),
            ),
            (
                "disabled",
                RuntimeObservation::Disabled {
                    reason: "no /dev/kvm".into(),
                },
                None,
            ),
        ];
        for (name, observation, due) in cases {
            assert_eq!(recheck(&with(observation), now), due, "{name}");
        }
    }

    #[test]
    fn a_deployment_is_purged_once_it_is_deleted_and_no_instance_is_left() {
        let listed = |kind| (kind, RuntimeObservation::Listed(Vec::new()));
        let both = Observed {
            runtimes: BTreeMap::from([
                listed(RuntimeKind::Docker),
                listed(RuntimeKind::CloudHypervisor),
            ]),
            checks: BTreeMap::new(),
        };
        let mut one_away = both.clone();
        one_away.runtimes.insert(
            RuntimeKind::CloudHypervisor,
            RuntimeObservation::Unavailable {
                reason: "down".into(),
            },
        );
        let mut disabled = both.clone();
        disabled.runtimes.insert(
            RuntimeKind::CloudHypervisor,
            RuntimeObservation::Disabled {
                reason: "no /dev/kvm".into(),
            },
        );
        let cases: Vec<(&str, StoredDeployment, Outcome, &Observed, bool)> = vec![
            (
                "deleted_with_nothing_left_is_purged",
                stored("old", S::Deleted, false, "r2"),
                outcome(S::Deleted, vec![]),
                &both,
                true,
            ),
            (
                "a_running_instance_keeps_the_row",
                stored("old", S::Deleted, false, "r2"),
                outcome(S::Deleted, vec![instance("c1", None)]),
                &both,
                false,
            ),
            (
                "an_exited_instance_not_yet_removed_keeps_the_row",
                stored("old", S::Deleted, false, "r2"),
                outcome(S::Deleted, vec![instance("c1", Some(0))]),
                &both,
                false,
            ),
            (
                "a_runtime_that_cannot_be_listed_keeps_the_row",
                stored("old", S::Deleted, false, "r2"),
                outcome(S::Deleted, vec![]),
                &one_away,
                false,
            ),
            (
                "a_runtime_this_host_cannot_run_holds_nothing_and_keeps_nothing",
                stored("old", S::Deleted, false, "r2"),
                outcome(S::Deleted, vec![]),
                &disabled,
                true,
            ),
            (
                "stopped_by_liveness_but_still_declared_keeps_the_row",
                stored("old", S::Deleted, true, "r2"),
                outcome(S::Deleted, vec![]),
                &both,
                false,
            ),
            (
                "a_declared_deployment_is_never_purged",
                stored("old", S::Running, true, "r2"),
                outcome(S::Running, vec![]),
                &both,
                false,
            ),
        ];
        for (name, deployment, outcome, observed, purged) in cases {
            let purge = gone(
                &state(vec![deployment]),
                observed,
                &outcomes(vec![("old", outcome)]),
            );
            assert_eq!(!purge.is_empty(), purged, "{name}");
        }
    }

    #[test]
    fn only_outcomes_that_changed_or_carry_news_are_persisted() {
        let same = outcome(S::Running, vec![]);
        let mut moved = outcome(S::Running, vec![]);
        moved.ready = 1;
        let mut with_event = outcome(S::Running, vec![]);
        with_event.events.push(crate::model::plan::PlannedEvent {
            kind: crate::model::event::EventKind::Scaled,
            message: "scaled".into(),
            notify: None,
        });
        let mut with_change = outcome(S::Running, vec![]);
        with_change.status_change = Some(crate::model::plan::StatusChange {
            from: S::Creating,
            to: S::Running,
            reason: "ready",
            message: "1 instance ready".into(),
        });
        let last = outcomes(vec![
            ("same", same.clone()),
            ("moved", same.clone()),
            ("event", with_event.clone()),
            ("change", with_change.clone()),
        ]);
        let now = outcomes(vec![
            ("same", same),
            ("moved", moved),
            ("event", with_event),
            ("change", with_change),
            ("new", outcome(S::Pending, vec![])),
        ]);
        let persisted: Vec<String> = changed(&now, &last)
            .into_iter()
            .map(|(id, _)| id.name)
            .collect();
        assert_eq!(persisted, ["change", "event", "moved", "new"]);
    }

    fn observed_instance(name: &str, runtime: RuntimeKind, phase: Phase) -> ObservedInstance {
        ObservedInstance {
            runtime,
            runtime_id: format!("{name}-1-0"),
            deployment: DeploymentId::new("demo", name),
            generation: 1,
            ordinal: 0,
            run: None,
            template: "t".into(),
            phase,
            ip: None,
            started_at: None,
            interrupted: false,
            last_output: None,
        }
    }

    #[test]
    fn probes_run_for_each_check_of_running_instances_of_live_deployments() {
        let checks = serde_json::json!({"health_checks": [
            {"type": "tcp", "port": 80, "readiness": true},
            {"type": "command", "command": ["true"]}
        ]});
        let mut web = stored("web", S::Running, true, "r1");
        web.spec = spec("web", checks.clone());
        let mut old = stored("old", S::Deleted, false, "r1");
        old.spec = spec("old", checks.clone());
        let mut job = stored("job", S::Running, true, "r1");
        job.spec = spec("job", checks);
        let stored = state(vec![web, old, job]);
        let observed = Observed {
            runtimes: BTreeMap::from([
                (
                    RuntimeKind::Docker,
                    RuntimeObservation::Listed(vec![
                        observed_instance("old", RuntimeKind::Docker, Phase::Running),
                        observed_instance("ghost", RuntimeKind::Docker, Phase::Running),
                        observed_instance(
                            "job",
                            RuntimeKind::Docker,
                            Phase::Exited {
                                exit_code: 0,
                                oom_killed: false,
                            },
                        ),
                    ]),
                ),
                (
                    RuntimeKind::CloudHypervisor,
                    RuntimeObservation::Listed(vec![observed_instance(
                        "web",
                        RuntimeKind::CloudHypervisor,
                        Phase::Running,
                    )]),
                ),
            ]),
            checks: BTreeMap::new(),
        };
        let probes: Vec<(String, RuntimeKind, u32)> = probe_targets(&stored, &observed)
            .into_iter()
            .map(|p| (p.deployment.name, p.runtime, p.check_index))
            .collect();
        assert_eq!(
            probes,
            [
                ("web".to_owned(), RuntimeKind::CloudHypervisor, 0),
                ("web".to_owned(), RuntimeKind::CloudHypervisor, 1)
            ],
            "not a deleted deployment's, not an orphan's, not an exited instance's"
        );
        let unlisted = Observed {
            runtimes: BTreeMap::from([(
                RuntimeKind::CloudHypervisor,
                RuntimeObservation::Unavailable {
                    reason: "down".into(),
                },
            )]),
            checks: BTreeMap::new(),
        };
        assert_eq!(probe_targets(&stored, &unlisted), []);
    }

    #[test]
    fn held_deployments_are_neither_planned_nor_persisted() {
        let stored = state(vec![
            stored("web", S::Pending, true, "r1"),
            stored("busy", S::Pending, true, "r1"),
        ]);
        let observed = Observed {
            runtimes: BTreeMap::from([(RuntimeKind::Docker, RuntimeObservation::Listed(vec![]))]),
            checks: BTreeMap::new(),
        };
        let held = BTreeSet::from([DeploymentId::new("demo", "busy")]);
        let decision = decide(&DecideInput {
            stored: &stored,
            memory: &BTreeMap::new(),
            observed: &observed,
            policy: &Policy::default(),
            now: Timestamp(1),
            held: &held,
            open_revision: None,
            last_good: None,
            last: &BTreeMap::new(),
        });
        let planned: Vec<&str> = decision
            .actions
            .iter()
            .map(|a| a.deployment().name.as_str())
            .collect();
        assert_eq!(planned, ["web"]);
        let persisted: Vec<&str> = decision
            .persist
            .iter()
            .map(|(id, _)| id.name.as_str())
            .collect();
        assert_eq!(persisted, ["web"]);
        assert_eq!(decision.revision, None);
    }
}
