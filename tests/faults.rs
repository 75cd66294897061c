//! The fault suite: the real `keel` binary on the real Docker daemon through an operator's bad
//! day. SIGKILL during convergence and rolling updates, SIGKILL with edits landing 0–4 s after
//! each restart (no status recorded for a generation before one of its containers exists), a
//! second agent with the same node name, a secret at `--log trace`, and fifty alternating good
//! and broken revisions (a FIFO and a name that is not UTF-8 among the broken). Each test
//! has its own namespace, node name, state directory and port, and removes what it created.
//! (The daemon-restart fault lives in `docker_daemon.rs`, run alone by `.ci/run`.)

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::binary::{wait_for, AgentProcess};
use support::host::Host;

fn deployments(agent: &AgentProcess, ns: &str) -> Vec<Value> {
    agent
        .get(&format!("/v1/deployments?namespace={ns}"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

// ---- kill -9 during convergence and rolling updates ----------------------------------------

const WORKERS: usize = 10;

/// Exits at once on SIGTERM, so stops take no grace period.
const PLAIN: &str = "    command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n";
const GATED: &str = "    command: [sh, -c, \"mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: 500ms}\n";

fn replicas(worker: usize) -> u32 {
    if worker % 3 == 0 {
        2
    } else {
        1
    }
}

/// The repository at `versions`: worker i plain or readiness-gated, 1 or 2 replicas.
fn ten_workers(host: &Host, versions: &[u32]) -> String {
    let mut text = String::from("deployments:\n");
    for (i, version) in versions.iter().enumerate() {
        let body = if i % 2 == 0 { PLAIN } else { GATED };
        let extra = format!(
            "{body}    replicas: {}\n    environment:\n      VERSION: \"{version}\"\n",
            replicas(i)
        );
        text.push_str(&host.deployment(&format!("w{i}"), &extra));
    }
    text
}

#[test]
fn kill_nine_during_rollouts_leaves_exactly_the_desired_containers() {
    let host = Host::new();
    let mut versions = vec![0u32; WORKERS];
    for round in 0..20u32 {
        // A third of the workers change in each round: a rolling update for each of them.
        for (i, version) in versions.iter_mut().enumerate() {
            if (i as u32 + round) % 3 == 0 {
                *version = round + 1;
            }
        }
        host.write("workers.yaml", &ten_workers(&host, &versions));
        let agent = host.start();
        let delay = 300 + u64::from(round * 373 % 2200);
        std::thread::sleep(Duration::from_millis(delay));
        agent.kill9();
    }

    let agent = host.start();
    let desired: u32 = (0..WORKERS).map(replicas).sum();
    wait_for("every worker running, nothing else", 180, || {
        let list = deployments(&agent, &host.ns.0);
        list.len() == WORKERS
            && list.iter().all(|d| d["status"] == "running")
            && host.containers().len() == desired as usize
    });
    wait_for("the last revision to succeed", 60, || {
        agent
            .get("/v1/revisions?limit=1")
            .is_some_and(|r| r[0]["state"] == "succeeded")
    });
    let list = deployments(&agent, &host.ns.0);
    let mut expected: Vec<(String, u64)> = Vec::new();
    for d in &list {
        assert_eq!(d["restart_count"], 0, "a killed agent is not a crash: {d}");
        let name = d["name"].as_str().unwrap().to_owned();
        let generation = d["generation"].as_u64().unwrap();
        let worker: usize = name[1..].parse().unwrap();
        for _ in 0..replicas(worker) {
            expected.push((name.clone(), generation));
        }
    }
    expected.sort();
    assert_eq!(
        host.containers(),
        expected,
        "exactly the desired containers: none orphaned, none duplicated, no old generation"
    );
    assert!(agent.terminate().success());
    let conn = rusqlite::Connection::open(host.db("agent")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// Every container create of namespace `ns`, as `docker events` tells it while the test runs:
/// (time in ms, deployment name, generation).
struct Creates(std::process::Child, tempfile::NamedTempFile);

impl Creates {
    fn follow(ns: &str) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("label=keel.namespace={ns}"),
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--format",
                "{{.TimeNano}} {{index .Actor.Attributes \"keel.name\"}} {{index .Actor.Attributes \"keel.generation\"}}",
            ])
            .stdout(file.reopen().unwrap())
            .spawn()
            .unwrap();
        Self(child, file)
    }

    fn read(&self) -> Vec<(i64, String, u64)> {
        std::fs::read_to_string(self.1.path())
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(' ');
                let nanos: i64 = parts.next()?.parse().ok()?;
                let name = parts.next()?.to_owned();
                Some((nanos / 1_000_000, name, parts.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Creates {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every `running` recorded for a deployment, from the outbox (written in the status change's
/// own transaction): (time in ms, name, generation).
fn recorded_running(db: &Path) -> Vec<(i64, String, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT created_at, payload FROM outbox WHERE kind = 'deployment.status_changed'")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    rows.map(Result::unwrap)
        .filter_map(|(at, payload)| {
            let p: Value = serde_json::from_str(&payload).ok()?;
            (p["new_status"] == "running").then(|| {
                let name = p["name"].as_str().unwrap_or("").to_owned();
                (at, name, p["generation"].as_u64().unwrap_or(0))
            })
        })
        .collect()
}

#[test]
fn kill_nine_with_edits_after_each_restart_never_reports_a_generation_before_it_exists() {
    let host = Host::new();
    let creates = Creates::follow(&host.ns.0);
    let mut versions = vec![0u32; WORKERS];
    host.write("workers.yaml", &ten_workers(&host, &versions));
    for round in 0..12u32 {
        let agent = host.start();
        // The edit lands 0–4 s after the restart, while the agent adopts and converges.
        std::thread::sleep(Duration::from_millis(u64::from(round * 331 % 4000)));
        for (i, version) in versions.iter_mut().enumerate() {
            if (i as u32 + round) % 3 == 0 {
                *version = round + 1;
            }
        }
        host.write("workers.yaml", &ten_workers(&host, &versions));
        std::thread::sleep(Duration::from_millis(200 + u64::from(round * 577 % 1800)));
        agent.kill9();
    }
    let agent = host.start();
    wait_for("the last revision to succeed", 180, || {
        agent.get("/v1/revisions?limit=1").is_some_and(|r| {
            r[0]["state"] == "succeeded"
                && deployments(&agent, &host.ns.0)
                    .iter()
                    .all(|d| d["status"] == "running")
        })
    });
    assert!(agent.terminate().success());
    std::thread::sleep(Duration::from_millis(500));
    let created = creates.read();
    assert!(!created.is_empty(), "docker events saw the creates");
    for (at, name, generation) in recorded_running(&host.db("agent")) {
        let first = created
            .iter()
            .filter(|(_, n, g)| *n == name && *g == generation)
            .map(|(t, _, _)| *t)
            .min();
        assert!(
            first.is_some_and(|t| t <= at),
            "{name} recorded running at generation {generation} at {at}, before any of its containers existed (first create: {first:?})"
        );
    }
}

// ---- two agents, one node name ------------------------------------------------------------

/// A host whose agent runs one plain worker, `web`.
fn one_running_worker() -> (Host, AgentProcess) {
    let host = Host::new();
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", PLAIN)),
    );
    let agent = host.start();
    wait_for("web to run", 90, || {
        agent
            .get(&format!("/v1/deployments/{}/web", host.ns.0))
            .is_some_and(|d| d["status"] == "running")
    });
    (host, agent)
}

#[test]
fn a_second_agent_with_the_same_node_name_refuses_and_removes_nothing() {
    let (host, first) = one_running_worker();
    let before = host.containers();

    // Another agent, with another database (it knows nothing), on the same node name.
    let mut second = host.start_as("second", &host.node(), "info");
    let mut status = None;
    wait_for("the second agent to refuse", 30, || {
        status = second.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success());
    let log = second.log_text();
    assert!(log.contains("is already held"), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.child.id())),
        "the message names the holder: {log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(host.containers(), before, "nothing was removed");
    assert!(first
        .get(&format!("/v1/deployments/{}/web", host.ns.0))
        .is_some_and(|d| d["status"] == "running"));

    // Once the first one is gone (SIGTERM gives the name back), the second one starts.
    assert!(first.terminate().success());
    let second = host.start_as("second", &host.node(), "info");
    wait_for("the second agent to adopt web", 90, || {
        second
            .get(&format!("/v1/deployments/{}/web", host.ns.0))
            .is_some_and(|d| d["status"] == "running")
            && host.containers().len() == 1
    });
}

#[test]
fn the_lease_of_a_killed_agent_is_taken_over_on_this_host() {
    let (host, first) = one_running_worker();
    first.kill9();
    let second = host.start_as("second", &host.node(), "info");
    wait_for("the next agent to take over", 90, || {
        second
            .get(&format!("/v1/deployments/{}/web", host.ns.0))
            .is_some_and(|d| d["status"] == "running")
    });
    assert!(second.log_text().contains("taking over the node lease"));
}

// ---- secrets --------------------------------------------------------------------------------

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn read_if_exists(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn a_secret_never_reaches_the_log_at_trace_the_database_or_the_api() {
    let host = Host::new();
    let marker = format!("secret-marker-{}", host.ns.0);
    std::fs::write(host.secrets().join("api-token"), &marker).unwrap();
    let extra = format!(
        "{PLAIN}    environment:\n      TOKEN: {{secretRef: api-token}}\n      PLAIN: visible\n"
    );
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", &extra)),
    );
    let agent = host.start_as("agent", &host.node(), "trace");
    let web = format!("/v1/deployments/{}/web", host.ns.0);
    wait_for("web to run", 90, || {
        agent.get(&web).is_some_and(|d| d["status"] == "running")
    });
    // The secret did reach the container (so the test would see a leak).
    let env = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=keel.namespace={}", host.ns.0),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&env.stdout).trim().to_owned();
    let inspect = Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Env}}", &id])
        .output()
        .unwrap();
    assert!(contains(&inspect.stdout, &marker), "the container got it");

    for path in [
        "/v1/deployments",
        web.as_str(),
        &format!("{web}/events"),
        "/v1/namespaces",
        "/v1/revisions",
        "/v1/source",
        "/v1/runtimes",
        "/metrics",
        "/openapi.json",
    ] {
        let (_, body) = support::binary::request(&agent.base, "GET", path, &[], b"");
        assert!(!body.contains(&marker), "{path} shows the secret");
    }
    let log_path = agent.log.clone();
    assert!(agent.terminate().success());
    let log = read_if_exists(&log_path);
    assert!(
        contains(&log, "keel agent started"),
        "the log was written: {}",
        String::from_utf8_lossy(&log)
    );
    assert!(
        !contains(&log, &marker),
        "the log at trace holds the secret"
    );
    let db = host.db("agent");
    assert!(!contains(&read_if_exists(&db), &marker), "keel.db holds it");
    let wal = db.with_extension("db-wal");
    assert!(
        !contains(&read_if_exists(&wal), &marker),
        "the WAL holds it"
    );
}

// ---- fifty alternating revisions ------------------------------------------------------------

fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text
}

/// How a broken entry of the repository is made.
enum Made {
    Bytes(Vec<u8>),
    /// A symbolic link out of the repository.
    Escape,
    /// A named pipe: reading it would block forever.
    Fifo,
}

/// The broken entry of invalid revision `k`: its file name (bytes: one is not UTF-8), the name
/// diagnostics show for it, and how it is made.
fn broken(host: &Host, k: usize) -> (Vec<u8>, String, Made) {
    let named = |name: &str, made: Made| (name.as_bytes().to_vec(), name.to_owned(), made);
    match k % 10 {
        0 => named(
            "syntax.yaml",
            Made::Bytes(b"deployments: [unclosed\n".to_vec()),
        ),
        1 => named(
            "typo.yaml",
            Made::Bytes(
                format!(
                    "deployments:\n{}",
                    host.deployment("typo", "    replica: 2\n")
                )
                .into_bytes(),
            ),
        ),
        2 => named("bomb.yaml", Made::Bytes(billion_laughs().into_bytes())),
        3 => named("huge.yaml", Made::Bytes(vec![b'#'; 2 << 20])),
        4 => named("escape.yaml", Made::Escape),
        5 => {
            let mut text = String::from("deployments:\n");
            for i in 0..10_000 {
                text.push_str(&format!(
                    "  b{i}: {{name: b{i}, namespace: {}, image: busybox:1.36, replicas: 0}}\n",
                    host.ns.0
                ));
            }
            text.push_str(&format!(
                "  last: {{name: last, namespace: {}, image: busybox:1.36, replica: 0}}\n",
                host.ns.0
            ));
            named("big.yaml", Made::Bytes(text.into_bytes()))
        }
        6 => named(
            "garbage.yaml",
            Made::Bytes((0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
        ),
        7 => named(
            "deep.yaml",
            Made::Bytes(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
        ),
        8 => named("pipe.yaml", Made::Fifo),
        _ => (
            b"bad\xff.yaml".to_vec(),
            "bad\\xff.yaml".to_owned(),
            Made::Bytes(format!("deployments:\n{}", host.deployment("web", "")).into_bytes()),
        ),
    }
}

/// Makes the broken entry at `path`.
fn make(path: &Path, made: Made) {
    match made {
        Made::Bytes(bytes) => std::fs::write(path, bytes).unwrap(),
        Made::Escape => std::os::unix::fs::symlink("/etc/passwd", path).unwrap(),
        Made::Fifo => assert!(Command::new("mkfifo").arg(path).status().unwrap().success()),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn fifty_alternating_revisions_apply_the_good_and_nothing_of_the_bad() {
    let host = Host::new();
    let app = |version: usize| {
        format!(
            "deployments:\n{}",
            host.deployment(
                "web",
                &format!("    replicas: 0\n    environment:\n      VERSION: \"{version}\"\n")
            )
        )
    };
    host.write("app.yaml", &app(0));
    let agent = host.start();
    let web = format!("/v1/deployments/{}/web", host.ns.0);
    let generation = || agent.get(&web).and_then(|d| d["generation"].as_u64());
    wait_for("the first revision", 60, || generation() == Some(1));
    let mut max_rss = rss_kib(agent.child.id());
    let mut expected_generation = 1;
    for k in 0..50 {
        if k % 2 == 0 {
            let (file, name, made) = broken(&host, k / 2);
            let path = host
                .repo()
                .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&file));
            make(&path, made);
            let name = name.as_str();
            wait_for(&format!("revision {k} ({name}) to be invalid"), 60, || {
                agent.get("/v1/revisions?limit=1").is_some_and(|r| {
                    r[0]["state"] == "invalid"
                        && r[0]["diagnostics"]
                            .as_array()
                            .is_some_and(|d| d.iter().any(|d| d["file"] == name))
                })
            });
            assert_eq!(generation(), Some(expected_generation), "{name} applied");
            assert_eq!(deployments(&agent, &host.ns.0).len(), 1, "{name} applied");
            std::fs::remove_file(&path).unwrap();
        } else {
            expected_generation += 1;
            host.write("app.yaml", &app(k));
            wait_for(&format!("revision {k} to apply"), 60, || {
                generation() == Some(expected_generation)
                    && agent
                        .get("/v1/revisions?limit=1")
                        .is_some_and(|r| r[0]["state"] == "succeeded")
            });
        }
        max_rss = max_rss.max(rss_kib(agent.child.id()));
    }
    println!("fifty revisions: agent RSS at most {} MiB", max_rss / 1024);
    assert!(max_rss < 512 * 1024, "RSS {} KiB", max_rss);
    assert!(host.containers().is_empty());
}

// ---- kill -9 during a rollback ---------------------------------------------------------------

/// A bad revision is rolled back while the agent is killed every 0–3 s, before, during and
/// after the rollback: the host ends on the good revision — exactly its containers — with the
/// bad revision `rolled_back` and its desired state still quarantined, nothing duplicated.
#[test]
fn kill_nine_during_a_rollback_converges_to_the_last_good_revision() {
    let host = Host::new();
    let config = host.config_with("agent", &host.node(), "stable_after = \"1s\"\n");
    let repo = host.repo();
    let start = || host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    let latest = |agent: &AgentProcess| {
        agent
            .get("/v1/revisions?limit=1")
            .and_then(|r| r.as_array()?.first().cloned())
    };
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", PLAIN)),
    );
    let agent = start();
    wait_for("the good revision to succeed", 90, || {
        latest(&agent).is_some_and(|r| r["state"] == "succeeded")
    });
    let good = latest(&agent).unwrap()["id"].as_str().unwrap().to_owned();
    agent.kill9();

    // The bad revision: web changes, boom dies at once.
    let web2 = format!("{PLAIN}    environment:\n      VERSION: \"2\"\n");
    host.write(
        "web.yaml",
        &format!(
            "deployments:\n{}{}",
            host.deployment("web", &web2),
            host.deployment("boom", "    command: [sh, -c, \"exit 3\"]\n")
        ),
    );
    let db = host.db("agent");
    let rolled_back = || {
        rusqlite::Connection::open(&db)
            .ok()
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM revisions WHERE state = 'rolled_back'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
            })
            .unwrap_or(0)
    };
    let mut round = 0u64;
    let mut after = 0;
    // Kill until the rollback happened and three more rounds went by in its convergence.
    while after < 3 {
        let agent = start();
        std::thread::sleep(Duration::from_millis(round * 787 % 3000));
        agent.kill9();
        round += 1;
        if rolled_back() > 0 {
            after += 1;
        }
        assert!(round < 60, "no rollback after {round} kills");
    }

    let agent = start();
    let revisions = || {
        agent
            .get("/v1/revisions?limit=50")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
    };
    // Each start reads the directory again: its bad content is recorded quarantined, once.
    let restored = || {
        revisions().iter().any(|r| {
            r["state"] == "succeeded" && r["id"] == good.as_str() && !r["restores"].is_null()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !restored() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore did not succeed: {:#?}",
            revisions()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        revisions()
            .iter()
            .filter(|r| r["state"] == "quarantined")
            .count()
            <= 1,
        "the same content is recorded quarantined once: {:#?}",
        revisions()
    );
    assert_eq!(rolled_back(), 1, "rolled back once, never again");
    assert_eq!(
        host.containers(),
        vec![("web".to_owned(), 3)],
        "exactly the good revision's containers: web (restored as generation 3), no boom"
    );
    let web = agent
        .get(&format!("/v1/deployments/{}/web", host.ns.0))
        .unwrap();
    assert_eq!(web["status"], "running");
    assert_eq!(web["restart_count"], 0, "{web}");
    assert!(agent.terminate().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let quarantined: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM quarantine WHERE lifted_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(quarantined, 1, "the bad desired state is still quarantined");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
