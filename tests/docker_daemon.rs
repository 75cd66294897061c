//! Restarting the Docker daemon under a running agent: keel holds while the daemon is gone,
//! reconnects (listing and events) when it is back, and the worker ends up `running` again.
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
    agent.apply(
        "r1",
        &[(
            "web.yaml",
            &agent.deployment("web", "    command: [sleep, \"3600\"]\n"),
        )],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
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
            "web to run again after the restart",
            |a| a.status("web") == Some(S::Running) && a.ns.containers().len() == 1,
        )
        .await;
}
