//! Restarting the Docker daemon under a running agent: keel holds while the daemon is gone,
//! reconnects (listing and events) when it is back, and its workers (one plain, one behind a
//! readiness gate) end up `running` again — with no restart counted and no duplicate.
//!
//! This test stops and starts `dockerd` itself, which would break every other Docker test
//! running beside it, so it is `#[ignore]`d in the default run and `.ci/run` runs it on its own
//! afterwards (`cargo test --test docker_daemon -- --ignored`). It needs root, like dockerd.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use keel::model::status::DeploymentStatus as S;
use support::docker::Agent;

fn daemon_answers() -> bool {
    Command::new("docker")
        .args(["info"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_for(answering: bool, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while daemon_answers() != answering {
        assert!(
            Instant::now() < deadline,
            "dockerd did not {} within {secs}s",
            if answering { "come back" } else { "stop" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn restart_dockerd() {
    let stopped = Command::new("sh")
        .args(["-c", "kill -TERM $(pidof dockerd)"])
        .status()
        .unwrap();
    assert!(
        stopped.success(),
        "cannot signal dockerd (this test needs root and a dockerd without systemd)"
    );
    wait_for(false, 60);
    // Also wait for the process to be gone, so that the new one can take the socket.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Command::new("pidof")
        .arg("dockerd")
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "dockerd did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::env::temp_dir().join("keel-test-dockerd.log");
    let start = format!("setsid nohup dockerd > {} 2>&1 &", log.display());
    assert!(Command::new("sh")
        .args(["-c", &start])
        .status()
        .unwrap()
        .success());
    wait_for(true, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts dockerd; .ci/run runs it alone with --ignored"]
async fn a_worker_survives_a_daemon_restart() {
    let agent = Agent::new();
    let gated = "    command: [sh, -c, \"mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    replicas: 2\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: 1s}\n";
    agent.apply(
        "r1",
        &[
            (
                "web.yaml",
                &agent.deployment("web", "    command: [sleep, \"3600\"]\n"),
            ),
            ("api.yaml", &agent.deployment("api", gated)),
        ],
    );
    let mut controller = agent.controller();
    let all_running = |a: &Agent| {
        a.status("web") == Some(S::Running)
            && a.status("api") == Some(S::Running)
            && a.ns.containers().len() == 3
    };
    agent
        .until(&mut controller, 60, "web and api to run", all_running)
        .await;

    let restart = tokio::task::spawn_blocking(restart_dockerd);
    // Passes keep running while the daemon is away: they must hold, never fail.
    while !restart.is_finished() {
        controller.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    restart.await.unwrap();
    agent
        .until(
            &mut controller,
            120,
            "web and api to run again after the restart, without duplicates",
            all_running,
        )
        .await;
    let state = agent.reader.stored_state().unwrap();
    for name in ["web", "api"] {
        assert_eq!(
            state.deployments[&agent.id(name)].restart_count,
            0,
            "{name}: a daemon restart is not a crash"
        );
    }
}
