//! `keel logs` (the real binary) through the API's `…/logs` against a real container: the last
//! lines, then — with `--follow` — what the container prints after the command started.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use keel::runtime::Runtime;
use support::docker::Agent;

/// Prints `line-0`, `line-1`, … every 100 ms.
const COUNTER: &str =
    "    command: [sh, -c, \"i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done\"]\n";

/// The API over `agent`'s store, serving its containers' logs, bound to 127.0.0.1:0: the
/// listener and its base URL.
async fn api(agent: &Agent) -> (Arc<keel::api::ApiState>, tokio::net::TcpListener, String) {
    let state = keel::api::ApiState::new(
        agent.path("keel.db"),
        keel::api::Access::default(),
        Default::default(),
        Default::default(),
    );
    let runtime: Arc<dyn Runtime> = agent.runtime.clone();
    state.serve_logs_from(&[runtime]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (state, listener, base)
}

async fn serve(agent: &Agent) -> String {
    let (state, listener, base) = api(agent).await;
    tokio::spawn(async move { axum::serve(listener, keel::api::router(state)).await });
    base
}

fn number(line: &str) -> u64 {
    line.trim()
        .strip_prefix("line-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a counter line: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_logs_prints_the_tail_then_follows_what_the_container_prints_next() {
    let agent = Agent::new();
    let web = agent.deployment("web", COUNTER);
    let mut controller = agent.running("web", &[("web.yaml", &web)]).await;
    // A pass records the instance for the API to find.
    controller.pass().await.unwrap();
    let base = serve(&agent).await;
    let id = format!("{}/web", agent.ns.0);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let tail = {
        let (base, id) = (base.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_keel"))
                .args(["logs", &id, "--tail", "2", "--api", &base])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let text = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert!(
        tail.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(number(lines[1]), number(lines[0]) + 1);

    let followed = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["logs", &id, "--follow", "--tail", "1", "--api", &base])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = number(&lines.next().unwrap().unwrap());
        // Printed after the command started: the container's next lines, in order.
        let next: Vec<u64> = (0..3)
            .map(|_| number(&lines.next().unwrap().unwrap()))
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        (first, next)
    })
    .await
    .unwrap();
    let (first, next) = followed;
    assert_eq!(next, [first + 1, first + 2, first + 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_logs_of_an_unknown_deployment_says_so_and_exits_1() {
    let agent = Agent::new();
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", COUNTER))]);
    let base = serve(&agent).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["logs", "nowhere/none", "--api", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("no deployment nowhere/none"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_quiet_container_keeps_its_stream_past_the_idle_timeout() {
    let agent = Agent::new();
    // Quiet for longer than the listener's idle timeout between its lines.
    let quiet = "    command: [sh, -c, \"echo first; sleep 4; echo second; sleep 3600\"]\n";
    let web = agent.deployment("web", quiet);
    let mut controller = agent.running("web", &[("web.yaml", &web)]).await;
    controller.pass().await.unwrap();
    let (state, listener, base) = api(&agent).await;
    let limits = keel::api::serve::ServeLimits {
        idle_timeout: std::time::Duration::from_millis(300),
        ..keel::api::serve::ServeLimits::default()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(keel::api::serve::serve(
        listener,
        keel::api::router(state),
        limits,
        stopped,
    ));
    let id = format!("{}/web", agent.ns.0);
    let lines = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["logs", &id, "--follow", "--api", &base])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let read: Vec<String> = (0..2).map_while(|_| lines.next()?.ok()).collect();
        let _ = child.kill();
        let _ = child.wait();
        read
    })
    .await
    .unwrap();
    assert_eq!(lines, ["first", "second"]);
}
