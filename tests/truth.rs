//! "Never lie", part two, on the real `keel` binary and the real Docker daemon: each defect an
//! operator's bad day found, as that operator would meet it. A special file or a name that is
//! not UTF-8 in the repository, a job removed from it, an agent restarted beside gated
//! workers, a missing image, two agents of different nodes on one daemon, hostile requests to
//! the API and the receivers, and two replicas on one host port. Each test has its own
//! namespace, node name, state directory and port, and removes what it created.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::binary::{request, wait_for, AgentProcess};
use support::host::Host;

/// Exits at once on SIGTERM, so stops take no grace period.
const PLAIN: &str = "    command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n";

fn detail(agent: &AgentProcess, host: &Host, name: &str) -> Option<Value> {
    agent.get(&format!("/v1/deployments/{}/{name}", host.ns.0))
}

fn status(agent: &AgentProcess, host: &Host, name: &str) -> Option<String> {
    detail(agent, host, name).and_then(|d| d["status"].as_str().map(str::to_owned))
}

fn latest_revision(agent: &AgentProcess) -> Option<Value> {
    agent
        .get("/v1/revisions?limit=1")
        .and_then(|r| r.as_array()?.first().cloned())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The ids of this namespace's running containers.
fn running(host: &Host) -> Vec<String> {
    let filter = format!("label=keel.namespace={}", host.ns.0);
    let out = docker(&["ps", "-q", "--filter", &filter]);
    out.lines().map(str::to_owned).collect()
}

/// `keel validate` on the host's repository.
fn validate(host: &Host) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("validate")
        .arg(host.repo())
        .output()
        .unwrap()
}

// ---- a repository cannot stall the agent -----------------------------------------------------

#[test]
fn a_fifo_or_a_name_that_is_not_utf8_is_a_diagnostic_and_the_agent_keeps_working() {
    let host = Host::new();
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", PLAIN)),
    );
    let agent = host.start();
    wait_for("web to run", 90, || {
        status(&agent, &host, "web").as_deref() == Some("running")
    });

    // A named pipe with a manifest's name: never opened, reported, the rest untouched.
    let fifo = host.repo().join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    wait_for("the revision with the FIFO to be invalid", 30, || {
        latest_revision(&agent).is_some_and(|r| {
            r["state"] == "invalid"
                && r["diagnostics"].as_array().is_some_and(|d| {
                    d.iter().any(|d| {
                        d["file"] == "fifo.yaml"
                            && d["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("named pipe"))
                    })
                })
        })
    });
    // The API and the reconcile loop keep answering while it is there.
    for _ in 0..5 {
        let asked = Instant::now();
        let (code, _) = request(&agent.base, "GET", "/healthz", &[], b"");
        assert_eq!(code, 200);
        assert!(asked.elapsed() < Duration::from_secs(2), "slow /healthz");
    }
    let before = running(&host);
    assert_eq!(before.len(), 1);
    docker(&["kill", &before[0]]);
    wait_for("the killed worker to be replaced", 60, || {
        let now = running(&host);
        now.len() == 1 && now != before
    });

    // A manifest whose name is not UTF-8: invalid, named escaped — never silently skipped.
    std::fs::remove_file(&fifo).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.yaml");
    std::fs::write(
        host.repo().join(name),
        format!(
            "deployments:\n{}",
            host.deployment("other", "    replica: 2\n")
        ),
    )
    .unwrap();
    wait_for("the revision with the bad name to be invalid", 30, || {
        latest_revision(&agent).is_some_and(|r| {
            r["state"] == "invalid"
                && r["diagnostics"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["file"] == "bad\\xff.yaml"))
        })
    });
    let validate = validate(&host);
    let text = String::from_utf8_lossy(&validate.stdout);
    assert_eq!(validate.status.code(), Some(1), "{text}");
    assert!(text.contains("bad\\xff.yaml"), "{text}");
    assert!(text.contains("not valid UTF-8"), "{text}");

    std::fs::remove_file(host.repo().join(name)).unwrap();
    wait_for("a clean tree to succeed again", 60, || {
        latest_revision(&agent).is_some_and(|r| r["state"] == "succeeded")
    });
}

// ---- what leaves the repository leaves the host ----------------------------------------------

#[test]
fn a_job_removed_from_the_repository_leaves_no_container_and_its_row_is_purged() {
    let host = Host::new();
    let job = host.deployment("once", "    kind: job\n    command: [sh, -c, \"exit 0\"]\n");
    let web = host.deployment("web", PLAIN);
    host.write("app.yaml", &format!("deployments:\n{job}{web}"));
    let agent = host.start();
    wait_for("the job to complete", 90, || {
        status(&agent, &host, "once").as_deref() == Some("completed")
    });
    assert_eq!(
        host.containers().len(),
        2,
        "the job's exited container and web's"
    );

    host.write("app.yaml", &format!("deployments:\n{web}"));
    wait_for("the job's container to be removed", 30, || {
        host.containers().iter().all(|(name, _)| name != "once")
    });
    wait_for("the job's row to be purged", 30, || {
        detail(&agent, &host, "once").is_none()
    });
    assert_eq!(host.containers().len(), 1);
}

// ---- health across a restart of the agent ---------------------------------------------------

#[test]
fn health_is_never_unhealthy_across_an_agent_restart_while_the_instances_serve() {
    let host = Host::new();
    let gated = "    replicas: 2\n    command: [sh, -c, \"mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: 4s}\n";
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", gated)),
    );
    let mut agent = host.start();
    wait_for("web to be healthy", 90, || {
        detail(&agent, &host, "web").is_some_and(|d| d["health"] == "healthy")
    });
    for restart in 0..2 {
        agent.kill9();
        agent = host.start();
        samples_stay_healthy(&host, &agent, restart);
    }
}

/// Samples the deployment every 50 ms for 6 s after a restart: health is `null` (waiting for a
/// first probe) or `healthy`, never `unhealthy`, and healthy again well before
/// `min_healthy_time` (4 s) would allow from scratch.
fn samples_stay_healthy(host: &Host, agent: &AgentProcess, restart: u32) {
    let started = Instant::now();
    let mut healthy_at = None;
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        if let Some(d) = detail(agent, host, "web") {
            let health = d["health"].as_str().unwrap_or("null").to_owned();
            assert_ne!(
                health, "unhealthy",
                "restart {restart}: unhealthy while both instances serve: {d}"
            );
            if health == "healthy" && healthy_at.is_none() {
                healthy_at = Some(started.elapsed());
            }
            seen.push(health);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let healthy_at = healthy_at.unwrap_or_else(|| panic!("never healthy again: {seen:?}"));
    assert!(
        healthy_at < Duration::from_secs(3),
        "restart {restart}: healthy only after {healthy_at:?}: the gate started over"
    );
}

// ---- a missing image -------------------------------------------------------------------------

/// The status changes recorded for deployment `name`, oldest first (from the outbox, written
/// in the same transaction as each change).
fn status_changes(host: &Host, name: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(host.db("agent")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT payload FROM outbox WHERE kind = 'deployment.status_changed' ORDER BY created_at, rowid",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| serde_json::from_str::<Value>(&r.unwrap()).unwrap());
    rows.filter(|p| p["name"] == name)
        .map(|p| p["new_status"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_missing_image_enters_image_pull_back_off_once_and_stays_there_while_it_retries() {
    let host = Host::new();
    // A registry address nothing listens on: every pull fails at once, and stays local.
    let missing = format!(
        "  ghost:\n    name: ghost\n    namespace: {}\n    image: 127.0.0.1:9/keel-missing/{}:nope\n",
        host.ns.0, host.ns.0
    );
    host.write("ghost.yaml", &format!("deployments:\n{missing}"));
    let agent = host.start();
    wait_for("the pull to fail", 60, || {
        status(&agent, &host, "ghost").as_deref() == Some("image_pull_back_off")
    });
    // Retries back off 1 s, 2 s, 4 s …: a few of them happen in this window.
    std::thread::sleep(Duration::from_secs(8));
    let d = detail(&agent, &host, "ghost").unwrap();
    let changes = status_changes(&host, "ghost");
    let into_pull = changes
        .iter()
        .filter(|s| *s == "image_pull_back_off")
        .count();
    assert_eq!(into_pull, 1, "one change into the back-off: {changes:?}");
    assert!(
        !changes
            .iter()
            .skip_while(|s| *s != "image_pull_back_off")
            .any(|s| s == "creating"),
        "no flip back to creating between attempts: {changes:?}"
    );
    // The first failure enters the back-off; each failed re-attempt counts one restart.
    let attempts = d["restart_count"].as_u64().unwrap_or(0) + 1;
    assert!(attempts >= 3, "it kept retrying: {attempts} attempts; {d}");
    assert_eq!(d["waiting_on"]["kind"], "backoff", "{d}");
    assert!(
        d["waiting_on"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("keel-missing")),
        "the last attempt's reason: {d}"
    );
}

// ---- two nodes on one daemon -----------------------------------------------------------------

#[test]
fn two_agents_of_different_nodes_run_the_same_deployment_on_one_daemon() {
    let host = Host::new();
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", PLAIN)),
    );
    let (node_a, node_b) = (format!("a-{}", host.ns.0), format!("b-{}", host.ns.0));
    let a = host.start_as("a", &node_a, "info");
    let b = host.start_as("b", &node_b, "info");
    for agent in [&a, &b] {
        wait_for("web to run under each agent", 90, || {
            status(agent, &host, "web").as_deref() == Some("running")
        });
    }
    let ns = &host.ns.0;
    assert_eq!(
        named(&host, &["ps"], "{{.Names}}"),
        [
            format!("keel-{node_a}-{ns}-web-1-0 {node_a}"),
            format!("keel-{node_b}-{ns}-web-1-0 {node_b}"),
        ],
        "one container per node, named after it"
    );
    assert_eq!(
        named(&host, &["network", "ls"], "{{.Name}}"),
        [
            format!("keel-{node_a}-{ns} {node_a}"),
            format!("keel-{node_b}-{ns} {node_b}"),
        ],
        "one network per node, labelled with its owner"
    );
    // Each agent's restart count stays 0: neither collided with the other.
    for agent in [&a, &b] {
        let d = detail(agent, &host, "web").unwrap();
        assert_eq!(d["restart_count"], 0, "{d}");
    }
}

/// `<name> <owner>` of each of the namespace's objects `command` lists (`ps`, `network ls`),
/// sorted; `name` is the object's name in Docker's format.
fn named(host: &Host, command: &[&str], name: &str) -> Vec<String> {
    let filter = format!("label=keel.namespace={}", host.ns.0);
    let format = format!("{name} {{{{.Label \"keel.owner\"}}}}");
    let mut args = command.to_vec();
    args.extend(["--filter", &filter, "--format", &format]);
    let mut lines: Vec<String> = docker(&args).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

// ---- the API answers every error with a problem ------------------------------------------------

const SECRET: &str = "truth-hook-secret";

fn github_push(agent: &AgentProcess, body: &[u8]) -> (u16, String) {
    support::binary::github_push(&agent.base, SECRET, body)
}

/// A raw exchange on a fresh connection: what the server wrote back.
fn raw(agent: &AgentProcess, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let address = agent.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

fn assert_problem(what: &str, status: u16, answer: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {answer}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{what}: {answer}"
    );
    let problem: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: not a JSON body ({e}): {answer}"));
    assert_eq!(problem["status"], status, "{what}: {problem}");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}"
    );
}

#[test]
fn bad_pushes_bad_limits_and_bare_http_errors_are_answered_with_problems() {
    let host = Host::new();
    let config = host.config_with(
        "agent",
        &host.node(),
        &format!("[hooks]\ngithub = \"{SECRET}\"\n"),
    );
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    wait_for("the agent to answer", 30, || {
        request(&agent.base, "GET", "/healthz", &[], b"").0 == 200
    });

    for body in [&b"{not json"[..], b"", b"[]", b"\"main\""] {
        let (code, text) = github_push(&agent, body);
        assert_eq!(code, 400, "{body:?}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], 400, "{problem}");
        assert!(!text.contains("\"fetch\""), "nothing fetched: {text}");
    }
    let (code, text) = github_push(&agent, br#"{"ref":"refs/heads/main"}"#);
    assert_eq!(code, 202, "{text}");

    for limit in ["0", "5001", "-1"] {
        let (code, text) = request(
            &agent.base,
            "GET",
            &format!("/v1/deployments?limit={limit}"),
            &[],
            b"",
        );
        assert_eq!(code, 400, "limit={limit}: {text}");
        assert!(text.contains("between 1 and 5000"), "{text}");
    }
    let (code, _) = request(&agent.base, "GET", "/v1/revisions?limit=501", &[], b"");
    assert_eq!(code, 400);

    let address = agent.base.trim_start_matches("http://").to_owned();
    let method = raw(
        &agent,
        format!("DELETE /v1/deployments HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_problem("405", 405, &method);
    assert!(
        method.to_ascii_lowercase().contains("\r\nallow: "),
        "the methods it takes: {method}"
    );
    let huge_header = format!(
        "GET /v1/deployments HTTP/1.1\r\nHost: {address}\r\nX-Big: {}\r\n\r\n",
        "x".repeat(600 * 1024)
    );
    assert_problem("431", 431, &raw(&agent, huge_header.as_bytes()));
    assert_problem("400", 400, &raw(&agent, b"NOT HTTP AT ALL\r\n\r\n"));
}

// ---- one host port, one instance ---------------------------------------------------------------

#[test]
fn two_replicas_on_one_host_port_are_refused_before_anything_runs() {
    let host = Host::new();
    host.write(
        "web.yaml",
        &format!(
            "deployments:\n{}",
            host.deployment(
                "web",
                "    replicas: 2\n    ports:\n      - published: 18080\n        target: 80\n"
            )
        ),
    );
    let validate = validate(&host);
    let text = String::from_utf8_lossy(&validate.stdout);
    assert_eq!(validate.status.code(), Some(1), "{text}");
    assert!(
        text.contains("web.yaml:8:20: deployments.web.ports[0].published: host port 18080 can be bound by one instance per host"),
        "{text}"
    );
    let agent = host.start();
    wait_for("the revision to be invalid", 30, || {
        latest_revision(&agent).is_some_and(|r| r["state"] == "invalid")
    });
    assert!(host.containers().is_empty(), "nothing ran");
}
