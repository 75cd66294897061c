//! Properties of the planner over generated worlds and random rollouts: converged means no
//! actions; an unlistable runtime means no create or remove; a rollout never runs more than
//! `replicas + 1` instances; a serving instance of the old generation is stopped only while a
//! new one is ready.

use proptest::prelude::*;
use serde_json::json;

use super::fixtures::{ActionsExt, World};
use super::plan::Action;
use crate::model::observed::Phase;
use crate::model::status::DeploymentStatus as S;

fn checks(readiness: bool) -> serde_json::Value {
    if readiness {
        json!([{"type": "http", "url": "http://localhost:8080/", "readiness": true, "min_healthy_time": "5s"}])
    } else {
        json!([])
    }
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Created),
        Just(Phase::Running),
        (0i64..3, any::<bool>()).prop_map(|(exit_code, oom_killed)| Phase::Exited {
            exit_code,
            oom_killed
        }),
    ]
}

fn status() -> impl Strategy<Value = S> {
    proptest::sample::select(S::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_converged_deployment_plans_no_actions(replicas in 0u32..6, readiness in any::<bool>(), age in 5i64..10_000) {
        let mut w = World::worker(json!({"replicas": replicas, "health_checks": checks(readiness)})).status(S::Running);
        for ordinal in 0..replicas {
            w = w.instance(ordinal, Phase::Running).green(&World::runtime_id(1, ordinal), 0, 0);
        }
        let (actions, out) = w.now(age).pass();
        prop_assert!(actions.is_empty(), "{actions:?}");
        prop_assert_eq!(out.status_change, None);
    }

    #[test]
    fn an_unlistable_runtime_gets_no_create_and_no_remove(
        replicas in 0u32..6,
        st in status(),
        phases in proptest::collection::vec(phase(), 0..6),
        declared in any::<bool>(),
    ) {
        let mut w = World::worker(json!({"replicas": replicas})).status(st);
        for (ordinal, p) in phases.into_iter().enumerate() {
            w = w.instance(ordinal as u32, p);
        }
        if !declared {
            w = w.pruned();
        }
        let (actions, _) = w.unavailable().pass();
        prop_assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn rollouts_stay_within_surge_and_stop_old_only_behind_a_ready_new(
        replicas in 1u32..5,
        boots in proptest::collection::vec(any::<bool>(), 64),
        crashes in proptest::collection::vec(proptest::option::weighted(0.1, 0usize..8), 64),
        waits in proptest::collection::vec(1i64..20, 64),
    ) {
        let mut w = World::worker(json!({"replicas": replicas, "health_checks": checks(true)})).status(S::Running);
        for ordinal in 0..replicas {
            w = w.instance(ordinal, Phase::Running).green(&World::runtime_id(1, ordinal), 0, 0);
        }
        let mut w = w.now(100).new_spec(json!({"image": "busybox:1.37"}));
        let mut boots = boots.into_iter();
        for (crash, wait) in crashes.into_iter().zip(waits) {
            if let Some(victim) = crash.and_then(|i| w.instances.get(i).map(|i| i.runtime_id.clone())) {
                if let Some(i) = w.instances.iter_mut().find(|i| i.runtime_id == victim) {
                    i.phase = Phase::Exited { exit_code: 1, oom_killed: false };
                }
            }
            let ready_new = w.instances.iter().filter(|i| i.generation == w.generation && is_ready(&w, &i.runtime_id)).count();
            let (actions, out) = w.pass();
            let failing_rollout = out.memory.status == S::Failed;
            for action in &actions {
                if let Action::Remove { runtime_id, stop: Some(_), .. } = action {
                    let old = w.instances.iter().any(|i| i.runtime_id == *runtime_id && i.generation < w.generation);
                    if old && is_ready(&w, runtime_id) && !failing_rollout {
                        prop_assert!(ready_new > 0, "stopped serving {runtime_id} with no new instance ready");
                    }
                }
            }
            let created = actions.creates();
            w.step(wait);
            for ordinal in created {
                if !boots.next().unwrap_or(true) {
                    w.checks.remove(&(World::runtime_id(w.generation, ordinal), 0));
                }
            }
            let live = w.instances.iter().filter(|i| !matches!(i.phase, Phase::Exited { .. })).count();
            prop_assert!(live <= replicas as usize + 1, "{live} live instances for {replicas} replicas");
        }
    }
}

fn is_ready(w: &World, runtime_id: &str) -> bool {
    w.checks
        .get(&(runtime_id.to_owned(), 0))
        .and_then(|c| c.green_since)
        .is_some_and(|g| w.now.0 - g.0 >= 5000)
}
