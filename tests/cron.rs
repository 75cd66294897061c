//! Cron jobs on the real Docker daemon: a job every two seconds whose runs alternate failing
//! and completing (a named volume carries a flag from one run to the next) shows each run's
//! outcome, the deployment's status, and its namespace in `warning` after a failed run and
//! back to `running` after the next success; `keel clear-runs` (the real binary) clears a
//! failure with an admin token and is refused without one.

mod support;

use std::process::Command;
use std::sync::Arc;

use keel::api::client::get;
use keel::api::{Access, ApiState};
use keel::model::status::DeploymentStatus as S;
use serde_json::Value;
use support::docker::Agent;

const READ: &str = "cron-read-token-3a1f";
const ADMIN: &str = "cron-admin-token-9c4b";

/// The namespace's status as the API shows it.
async fn namespace_status(base: &str, namespace: &str) -> String {
    let reply = get(base, "/v1/namespaces", Some(READ)).await.unwrap();
    let all: Value = serde_json::from_str(&reply.body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == namespace)
        .map(|n| n["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The cron job's runs as the API shows them, oldest first: (run, outcome, exit code).
async fn runs(base: &str, id: &str) -> Vec<(u64, String, Option<i64>)> {
    let reply = get(base, &format!("/v1/deployments/{id}/runs"), Some(READ))
        .await
        .unwrap();
    let page: Value = serde_json::from_str(&reply.body).unwrap();
    let mut runs: Vec<(u64, String, Option<i64>)> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["exit_code"].as_i64(),
            )
        })
        .collect();
    runs.reverse();
    runs
}

/// The runs that ran (not skipped — a slow first pass may find a due time already missed), in
/// order: (outcome, exit code).
fn ran(runs: Vec<(u64, String, Option<i64>)>) -> Vec<(String, Option<i64>)> {
    runs.into_iter()
        .filter(|(_, outcome, _)| outcome != "skipped")
        .map(|(_, outcome, code)| (outcome, code))
        .collect()
}

/// `keel clear-runs ID` with `token` in KEEL_TOKEN.
async fn clear_runs(base: &str, id: &str, token: Option<&str>) -> std::process::Output {
    let (base, id, token) = (base.to_owned(), id.to_owned(), token.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .args(["clear-runs", &id, "--api", &base])
            .env_remove("KEEL_TOKEN");
        if let Some(token) = token {
            command.env("KEEL_TOKEN", token);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_alternating_failure_and_success_move_the_namespace_and_clearing_ends_a_warning() {
    let agent = Agent::new();
    let ns = agent.ns.0.clone();
    let volume = format!("{ns}-flag");
    // No flag: fail and leave one; a flag: take it and succeed. Runs 1, 3, 5… fail.
    let job = format!(
        "    kind: cronjob\n    schedule: \"*/2 * * * * *\"\n    history: {{successful: 1, failed: 1}}\n    command: [sh, -c, \"if [ -f /flag/set ]; then rm /flag/set; exit 0; else touch /flag/set; exit 1; fi\"]\n    volumes:\n      - {{type: volume, source: {volume}, destination: /flag}}\n"
    );
    let web = "    command: [sleep, \"3600\"]\n";
    agent.apply(
        "r1",
        &[
            ("job.yaml", &agent.deployment("tick", &job)),
            ("web.yaml", &agent.deployment("web", web)),
        ],
    );
    let state = ApiState::new(
        agent.path("keel.db"),
        Access {
            tokens: vec![READ.into()],
            admin_tokens: vec![ADMIN.into()],
            public_metrics: false,
        },
        Arc::default(),
        Arc::default(),
    );
    state.cache_under(agent.store.writes());
    state.write_with(agent.store.clone());
    let base = support::api::serve(state).await;
    let id = format!("{ns}/tick");
    let mut controller = agent.controller();

    // Run 1 fails: the job is `failed`, its namespace (with a running worker) `warning`.
    agent
        .until(&mut controller, 60, "run 1 to fail", |a| {
            a.status("tick") == Some(S::Failed) && a.status("web") == Some(S::Running)
        })
        .await;
    assert_eq!(namespace_status(&base, &ns).await, "warning");
    let first = ran(runs(&base, &id).await);
    assert_eq!(first[0], ("failed".to_owned(), Some(1)), "{first:?}");

    // The next run completes: the failure is made good.
    agent
        .until(&mut controller, 60, "a run to complete", |a| {
            a.status("tick") == Some(S::Completed)
        })
        .await;
    assert_eq!(namespace_status(&base, &ns).await, "running");
    let so_far = ran(runs(&base, &id).await);
    assert_eq!(so_far[1], ("completed".to_owned(), Some(0)), "{so_far:?}");

    // The one after fails again; with no more passes (the schedule held still), clear it.
    agent
        .until(&mut controller, 60, "run 3 to fail", |a| {
            a.status("tick") == Some(S::Failed)
        })
        .await;
    assert_eq!(namespace_status(&base, &ns).await, "warning");
    let anonymous = clear_runs(&base, &id, None).await;
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("401"));
    let reader = clear_runs(&base, &id, Some(READ)).await;
    assert_eq!(reader.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reader.stderr).contains("403"));
    assert_eq!(namespace_status(&base, &ns).await, "warning", "still");
    let admin = clear_runs(&base, &id, Some(ADMIN)).await;
    assert_eq!(
        admin.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    assert!(String::from_utf8_lossy(&admin.stdout).starts_with("cleared 1 failed run"));
    assert_eq!(namespace_status(&base, &ns).await, "running");
    let events = agent.reader.events(&agent.id("tick"), 50).unwrap();
    assert!(events.iter().any(|e| e.kind.as_str() == "runs_cleared"));

    // The runs that ran alternate, failing first (a skipped one leaves the flag as it was).
    let all = ran(runs(&base, &id).await);
    for (i, run) in all.iter().enumerate() {
        let expected = match i % 2 {
            0 => ("failed".to_owned(), Some(1)),
            _ => ("completed".to_owned(), Some(0)),
        };
        assert_eq!(*run, expected, "run {}: {all:?}", i + 1);
    }
    let table = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_keel"))
                .args(["runs", &id, "-o", "wide", "--api", &base])
                .env("KEEL_TOKEN", READ)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "RUN",
            "OUTCOME",
            "DUE",
            "STARTED",
            "TOOK",
            "EXIT",
            "REASON",
            "GENERATION",
            "CLEARED"
        ]
    );
    assert!(
        table.contains(" failed ") && table.contains(" completed "),
        "{table}"
    );
    // What went out: a status change per run transition, and a `job.run_finished` per run.
    let outbox = agent.reader.outbox().unwrap();
    let about_tick = |kind: &str| -> Vec<Value> {
        outbox
            .iter()
            .filter(|r| r.kind.as_str() == kind && r.payload["name"] == "tick")
            .map(|r| r.payload.clone())
            .collect()
    };
    let moves: std::collections::BTreeSet<String> = about_tick("deployment.status_changed")
        .iter()
        .map(|p| p["new_status"].as_str().unwrap().to_owned())
        .collect();
    for status in ["running", "failed", "completed"] {
        assert!(moves.contains(status), "{moves:?}");
    }
    let finished = about_tick("job.run_finished");
    assert!(finished
        .iter()
        .any(|p| p["outcome"] == "failed" && p["exit_code"] == 1));
    assert!(finished
        .iter()
        .any(|p| p["outcome"] == "completed" && p["exit_code"] == 0));
}
