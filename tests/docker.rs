//! The Docker runtime against the real daemon, driven by the real controller and store. Each
//! test owns a unique namespace (its containers and network are removed on drop, pass or
//! fail); the image is built offline from busybox-static.

mod support;

use keel::model::status::DeploymentStatus as S;
use support::docker::{exec, label, Agent};

const SLEEPER: &str = "    command: [sleep, \"3600\"]\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_delete() {
    let agent = Agent::new();
    let web = agent.deployment("web", SLEEPER);
    agent.apply("r1", &[("web.yaml", &web)]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    let ids = agent.ns.containers();
    assert_eq!(ids.len(), 1);
    assert_eq!(label(&ids[0], "keel.managed"), "true");
    assert_eq!(
        label(&ids[0], "keel.deployment"),
        format!("{}/web", agent.ns.0)
    );
    assert!(agent.ns.network_exists());

    agent.apply("r2", &[]);
    agent
        .until(&mut controller, 60, "web to be removed", |a| {
            // Deleted, then purged once its container is gone.
            a.status("web").is_none() && a.ns.containers().is_empty()
        })
        .await;
    assert!(
        !agent.ns.network_exists(),
        "the namespace network goes with its last container"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_one_to_three_to_one() {
    let agent = Agent::new();
    let mut controller = agent.controller();
    for (revision, replicas) in [("r1", 1), ("r2", 3), ("r3", 1)] {
        let web = agent.deployment("web", &format!("{SLEEPER}    replicas: {replicas}\n"));
        agent.apply(revision, &[("web.yaml", &web)]);
        agent
            .until(&mut controller, 60, &format!("{replicas} replicas"), |a| {
                a.status("web") == Some(S::Running) && a.ns.containers().len() == replicas
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_answers_from_the_host() {
    let agent = Agent::new();
    let port = free_port();
    let extra = format!(
        "    command: [sh, -c, \"echo hello-from-keel > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    ports:\n      - {{published: {port}, target: 8080, host_ip: 127.0.0.1}}\n"
    )
    .replace("echo", "mkdir -p /www; echo");
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", &extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(text) = http_get(&format!("127.0.0.1:{port}")) {
            body = text;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.contains("hello-from-keel"), "{body:?}");
}

fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_a_secret_reach_the_container_and_the_secret_nowhere_else() {
    let agent = Agent::new();
    let secret = "s3cr3t-value-8f2a";
    std::fs::write(
        agent.path("secrets").join("api-token"),
        format!("{secret}\n"),
    )
    .unwrap();
    let extra = "    command: [sleep, \"3600\"]\n    environment:\n      GREETING: hello\n      TOKEN: {secretRef: api-token}\n";
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    let id = &agent.ns.containers()[0];
    let env = exec(id, &["env"]);
    assert!(env.contains("GREETING=hello"), "{env}");
    assert!(env.contains(&format!("TOKEN={secret}")), "{env}");
    drop(controller);
    for file in ["keel.db", "keel.db-wal"] {
        let bytes = std::fs::read(agent.path(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret value reached {file}"
        );
    }
    let events = agent.reader.events(&agent.id("web"), 100).unwrap();
    assert!(events.iter().all(|e| !e.message.contains(secret)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_last_output_is_kept_with_its_death_and_its_secrets_hidden() {
    let agent = Agent::new();
    let secret = "printed-s3cr3t-4d1c";
    std::fs::write(agent.path("secrets").join("api-token"), secret).unwrap();
    // An application that prints its own environment, then dies.
    let extra = "    command: [sh, -c, \"echo starting; echo token is $TOKEN; echo giving up >&2; exit 4\"]\n    environment:\n      TOKEN: {secretRef: api-token}\n";
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "a death to be recorded", |a| {
            a.reader
                .events(&a.id("web"), 100)
                .unwrap()
                .iter()
                .any(|e| e.kind == keel::model::event::EventKind::InstanceDied)
        })
        .await;
    let died = agent
        .reader
        .events(&agent.id("web"), 100)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == keel::model::event::EventKind::InstanceDied)
        .unwrap();
    assert!(
        died.message.contains("exited with code 4"),
        "{}",
        died.message
    );
    for line in ["starting", "token is [secret]", "giving up"] {
        assert!(died.message.contains(line), "{line:?} in {}", died.message);
    }
    assert!(!died.message.contains(secret), "{}", died.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_a_config_error_naming_it() {
    let agent = Agent::new();
    let extra =
        "    command: [sleep, \"3600\"]\n    environment:\n      TOKEN: {secretRef: nope}\n";
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "config_error", |a| {
            a.status("web") == Some(S::ConfigError)
        })
        .await;
    assert!(agent.ns.containers().is_empty());
    let events = agent.reader.events(&agent.id("web"), 20).unwrap();
    assert!(
        events.iter().any(|e| e.message.contains("secret \"nope\"")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_are_read_only_when_asked_and_refused_outside_the_allow_list() {
    let agent = Agent::new();
    let allowed = agent.path("allowed");
    std::fs::write(allowed.join("data.txt"), "from the host").unwrap();
    let extra = format!(
        "    command: [sleep, \"3600\"]\n    volumes:\n      - {{type: bind, source: {}, destination: /data, permission: ro}}\n",
        allowed.display()
    );
    let outside = format!(
        "    command: [sleep, \"3600\"]\n    volumes:\n      - {{type: bind, source: {}, destination: /data}}\n",
        agent.path("state").display()
    );
    agent.apply(
        "r1",
        &[
            ("ok.yaml", &agent.deployment("ok", &extra)),
            ("bad.yaml", &agent.deployment("bad", &outside)),
        ],
    );
    let mut controller = agent.controller();
    agent
        .until(
            &mut controller,
            60,
            "ok to run and bad to be refused",
            |a| a.status("ok") == Some(S::Running) && a.status("bad") == Some(S::ConfigError),
        )
        .await;
    let id = &agent.ns.containers()[0];
    assert_eq!(exec(id, &["cat", "/data/data.txt"]), "from the host");
    let write = std::process::Command::new("docker")
        .args(["exec", id, "touch", "/data/new"])
        .output()
        .unwrap();
    assert!(
        !write.status.success(),
        "a read-only bind mount accepted a write"
    );
    let events = agent.reader.events(&agent.id("bad"), 20).unwrap();
    assert!(
        events.iter().any(|e| e.message.contains("bind_allow")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_is_mounted() {
    let agent = Agent::new();
    let config = format!(
        "configs:\n  site:\n    name: site\n    namespace: {}\n    data:\n      index.html: \"<h1>configured</h1>\"\n",
        agent.ns.0
    );
    let extra = "    command: [sleep, \"3600\"]\n    volumes:\n      - {type: config, source: site, key: index.html, destination: /www/index.html}\n";
    agent.apply(
        "r1",
        &[
            ("c.yaml", &config),
            ("web.yaml", &agent.deployment("web", extra)),
        ],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    assert_eq!(
        exec(&agent.ns.containers()[0], &["cat", "/www/index.html"]),
        "<h1>configured</h1>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_on_exit_zero_and_fail_with_the_exit_code() {
    let agent = Agent::new();
    let ok = agent.deployment("ok", "    kind: job\n    command: [sh, -c, \"exit 0\"]\n");
    let bad = agent.deployment("bad", "    kind: job\n    command: [sh, -c, \"exit 3\"]\n");
    agent.apply("r1", &[("ok.yaml", &ok), ("bad.yaml", &bad)]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "both jobs to end", |a| {
            a.status("ok") == Some(S::Completed) && a.status("bad") == Some(S::Failed)
        })
        .await;
    let events = agent.reader.events(&agent.id("bad"), 20).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("exited with code 3")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_ends_in_crash_loop_back_off_after_five_restarts() {
    let agent = Agent::new();
    agent.apply(
        "r1",
        &[(
            "web.yaml",
            &agent.deployment("web", "    command: [sh, -c, \"sleep 0.2; exit 1\"]\n"),
        )],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 90, "crash_loop_back_off", |a| {
            a.status("web") == Some(S::CrashLoopBackOff)
        })
        .await;
    assert_eq!(agent.restart_count("web"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_are_image_pull_back_off() {
    let agent = Agent::new();
    let never = agent
        .deployment("never", "    config: {image_pull_policy: Never}\n")
        .replace(support::docker::IMAGE, "keel-test/absent:never");
    let unreachable = agent
        .deployment("remote", "")
        .replace(support::docker::IMAGE, "127.0.0.1:1/keel/absent:latest");
    agent.apply(
        "r1",
        &[("never.yaml", &never), ("remote.yaml", &unreachable)],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "image_pull_back_off twice", |a| {
            a.status("never") == Some(S::ImagePullBackOff)
                && a.status("remote") == Some(S::ImagePullBackOff)
        })
        .await;
    assert!(agent.ns.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_request_larger_than_the_host_is_insufficient_resources() {
    let agent = Agent::new();
    let extra = "    command: [sleep, \"3600\"]\n    resources:\n      requests: {memory: 64Ti}\n      limits: {memory: 64Ti}\n";
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "insufficient_resources", |a| {
            a.status("web") == Some(S::InsufficientResources)
        })
        .await;
    assert!(agent.ns.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_taken_by_another_agent_is_a_create_container_error() {
    let first = Agent::new();
    let second = Agent::new();
    let port = free_port();
    let extra = format!("    command: [sleep, \"3600\"]\n    ports:\n      - {{published: {port}, target: 80, host_ip: 127.0.0.1}}\n");
    first.apply("r1", &[("a.yaml", &first.deployment("a", &extra))]);
    second.apply("r1", &[("b.yaml", &second.deployment("b", &extra))]);
    let mut c1 = first.controller();
    first
        .until(&mut c1, 60, "a to run", |a| {
            a.status("a") == Some(S::Running)
        })
        .await;
    let mut c2 = second.controller();
    second
        .until(&mut c2, 60, "b to be refused", |a| {
            a.status("b") == Some(S::CreateContainerError)
        })
        .await;
    assert_eq!(
        second.ns.containers(),
        Vec::<String>::new(),
        "a container that could not start is removed, not left `created`"
    );
    let instances = second.reader.instances(&second.id("b")).unwrap();
    assert!(
        instances
            .iter()
            .all(|i| i.state != keel::model::status::InstanceState::Starting),
        "nothing claims to be starting: {instances:?}"
    );
}

const LATE_HTTPD: &str = "    command: [sh, -c, \"sleep 3; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n";

fn readiness(min_healthy: &str) -> String {
    format!("    health_checks:\n      - {{type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: {min_healthy}}}\n")
}

/// When `name`'s status last changed for `reason` (e.g. `creating`, `ready`), from its events.
fn changed_at(agent: &Agent, name: &str, reason: &str) -> Option<i64> {
    agent
        .reader
        .events(&agent.id(name), 200)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == keel::model::event::EventKind::StatusChanged && e.reason == reason)
        .map(|e| e.time.millis())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_gate_holds_until_min_healthy_time() {
    let agent = Agent::new();
    let extra = format!("{LATE_HTTPD}{}", readiness("2s"));
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", &extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to be created", |a| {
            a.status("web") == Some(S::Creating) && !a.ns.containers().is_empty()
        })
        .await;
    let started = std::time::Instant::now();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(4500),
        "running after only {waited:?}: httpd needs 3s, then 2s green"
    );
    let creating = changed_at(&agent, "web", "creating").unwrap();
    let running = changed_at(&agent, "web", "ready").unwrap();
    assert!(
        running - creating >= 4500,
        "creating → running took {}ms",
        running - creating
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_never_ready_fails_at_the_readiness_deadline() {
    let agent = Agent::new();
    let extra = format!("    command: [sleep, \"3600\"]\n{}", readiness("1s"));
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", &extra))]);
    let mut config = support::docker::config();
    config.policy.rollout_deadline = keel::model::units::Duration::from_secs(3);
    let mut controller = agent.controller_with(config);
    agent
        .until(&mut controller, 60, "failed", |a| {
            a.status("web") == Some(S::Failed)
        })
        .await;
    let events = agent.reader.events(&agent.id("web"), 20).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == keel::model::event::EventKind::ReadinessDeadlineExceeded),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liveness_failure_with_restart_replaces_only_that_instance() {
    let agent = Agent::new();
    let extra = "    replicas: 2\n    command: [sh, -c, \"mkdir -p /tmp; touch /tmp/alive; exec sleep 3600\"]\n    health_checks:\n      - {type: command, command: \"test -f /tmp/alive\", interval: 200ms, threshold: 2, on_failure: restart}\n";
    agent.apply("r1", &[("web.yaml", &agent.deployment("web", extra))]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running) && a.ns.containers().len() == 2
        })
        .await;
    let before = agent.ns.containers();
    exec(&before[0], &["rm", "/tmp/alive"]);
    agent
        .until(
            &mut controller,
            60,
            "the sick instance to be replaced",
            |a| {
                let now = a.ns.containers();
                now.len() == 2 && !now.contains(&before[0]) && a.status("web") == Some(S::Running)
            },
        )
        .await;
    let events: Vec<String> = agent
        .reader
        .events(&agent.id("web"), 50)
        .unwrap()
        .iter()
        .map(|e| format!("{}: {}", e.kind, e.message))
        .collect();
    assert!(
        agent.ns.containers().contains(&before[1]),
        "the healthy instance was touched: {before:?} → {:?}; {events:#?}",
        agent.ns.containers()
    );
    assert_eq!(
        agent.restart_count("web"),
        1,
        "a liveness restart counts toward the restart budget, once"
    );
}

fn versioned_httpd(version: &str, replicas: u32) -> String {
    format!(
        "    replicas: {replicas}\n    environment: {{VERSION: {version}}}\n    command: [sh, -c, \"mkdir -p /www; echo $VERSION > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n{}",
        readiness("1s")
    )
}

/// GET http://ip:8080/ → the body's last line.
fn fetch(ip: &str) -> Result<String, String> {
    http_get(&format!("{ip}:8080"))
        .map_err(|e| e.to_string())
        .and_then(|text| {
            if text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200") {
                Ok(text.lines().last().unwrap_or_default().trim().to_owned())
            } else {
                Err(text.lines().next().unwrap_or_default().to_owned())
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_fails_a_client_and_runs_at_most_four_containers() {
    let agent = Agent::new();
    agent.apply(
        "r1",
        &[(
            "web.yaml",
            &agent.deployment("web", &versioned_httpd("v1", 3)),
        )],
    );
    let mut config = support::docker::config();
    config.policy.drain = keel::model::units::Duration::from_secs(1);
    let mut controller = agent.controller_with(config);
    agent
        .until(&mut controller, 90, "v1 to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(controller.run(shutdown));
    agent.apply(
        "r2",
        &[(
            "web.yaml",
            &agent.deployment("web", &versioned_httpd("v2", 3)),
        )],
    );
    let (mut served, mut failures, mut most) = (0, Vec::new(), 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ready: Vec<String> = agent
            .reader
            .instances(&agent.id("web"))
            .unwrap()
            .into_iter()
            .filter(|i| i.state == keel::model::status::InstanceState::Ready)
            .filter_map(|i| i.ip)
            .collect();
        most = most.max(agent.ns.containers().len());
        if let Some(ip) = ready.get(served % ready.len().max(1)) {
            match fetch(ip) {
                Ok(_) => served += 1,
                Err(e) => failures.push(format!("{ip}: {e}")),
            }
        }
        let bodies: Vec<String> = ready.iter().filter_map(|ip| fetch(ip).ok()).collect();
        if agent.status("web") == Some(S::Running)
            && bodies.len() == 3
            && bodies.iter().all(|b| b == "v2")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout did not finish; {failures:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The last old instance may still be draining.
    for _ in 0..100 {
        if agent.ns.containers().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        served + failures.len()
    );
    assert!(served > 20, "too few requests to mean anything: {served}");
    assert!(most <= 4, "{most} containers at once");
    assert_eq!(agent.ns.containers().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_adopts_containers_mid_rollout() {
    let agent = Agent::new();
    agent.apply(
        "r1",
        &[(
            "web.yaml",
            &agent.deployment("web", &versioned_httpd("v1", 3)),
        )],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 90, "v1 to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    agent.apply(
        "r2",
        &[(
            "web.yaml",
            &agent.deployment("web", &versioned_httpd("v2", 3)),
        )],
    );
    let generation = |id: &String| label(id, "keel.generation");
    agent
        .until(&mut controller, 90, "the rollout to be half-way", |a| {
            let ids = a.ns.containers();
            ids.iter().any(|id| generation(id) == "2") && ids.iter().any(|id| generation(id) == "1")
        })
        .await;
    drop(controller);
    let survivors: Vec<String> = agent
        .ns
        .containers()
        .into_iter()
        .filter(|id| generation(id) == "2")
        .collect();

    let mut controller = agent.controller();
    agent
        .until(&mut controller, 90, "the rollout to finish", |a| {
            a.status("web") == Some(S::Running)
                && a.ns.containers().iter().all(|id| generation(id) == "2")
        })
        .await;
    let now = agent.ns.containers();
    assert_eq!(now.len(), 3);
    for id in &survivors {
        assert!(
            now.contains(id),
            "container {id} of generation 2 was replaced after the restart"
        );
    }
    let mut names: Vec<String> = now.iter().map(|id| label(id, "keel.instance")).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "duplicate instances: {names:?}");
    assert_eq!(agent.restart_count("web"), 0);
}

fn inspect(id: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_labels_host_networking_and_named_volumes_reach_docker() {
    let agent = Agent::new();
    let volume = format!("{}-data", agent.ns.0);
    let limited = "    command: [sleep, \"3600\"]\n    labels: [tier=backend]\n    resources:\n      limits: {cpu: \"0.5\", memory: 64Mi}\n      requests: {memory: 32Mi}\n";
    let host = "    command: [sleep, \"3600\"]\n    network: {mode: host}\n";
    let stateful = format!("    command: [sleep, \"3600\"]\n    volumes:\n      - {{type: volume, source: {volume}, destination: /data}}\n");
    agent.apply(
        "r1",
        &[
            ("a.yaml", &agent.deployment("limited", limited)),
            ("b.yaml", &agent.deployment("host", host)),
            ("c.yaml", &agent.deployment("stateful", &stateful)),
        ],
    );
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "all three to run", |a| {
            ["limited", "host", "stateful"]
                .iter()
                .all(|n| a.status(n) == Some(S::Running))
        })
        .await;
    let by_name = |name: &str| {
        agent
            .ns
            .containers()
            .into_iter()
            .find(|id| label(id, "keel.name") == name)
            .unwrap()
    };
    let limited = by_name("limited");
    assert_eq!(
        inspect(
            &limited,
            "{{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}}"
        ),
        "67108864 33554432 500000000"
    );
    assert_eq!(label(&limited, "tier"), "backend");
    assert_eq!(
        inspect(&by_name("host"), "{{.HostConfig.NetworkMode}}"),
        "host"
    );
    let stateful = by_name("stateful");
    exec(&stateful, &["sh", "-c", "echo kept > /data/file"]);
    assert_eq!(
        inspect(&stateful, "{{range .Mounts}}{{.Name}}{{end}}"),
        volume
    );
}

/// The observation cache: a pass with nothing changed reads nothing from the daemon, and a
/// crash costs one inspection of the container the event names — not a listing of them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_pass_reads_nothing_from_the_daemon_and_a_crash_reads_one_container() {
    use keel::runtime::Runtime;
    let agent = Agent::new();
    let web = agent.deployment("web", &format!("{SLEEPER}    replicas: 3\n"));
    agent.apply("r1", &[("web.yaml", &web)]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "web to run", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    // The executor's own marks (create, start) are re-inspected by the next pass.
    controller.pass().await.unwrap();
    let quiet = agent.runtime.observation_reads();
    for _ in 0..5 {
        controller.pass().await.unwrap();
    }
    assert_eq!(
        agent.runtime.observation_reads(),
        quiet,
        "five passes with nothing changed"
    );

    let mut events = agent.runtime.events();
    let victim = agent.ns.containers()[0].clone();
    let killed = std::process::Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.what == "die" && event.runtime_id.starts_with(&victim) {
                return;
            }
        }
    })
    .await
    .expect("the die event of the killed container");
    let before = agent.runtime.observation_reads();
    let listed = agent.runtime.list().await.unwrap();
    assert_eq!(
        agent.runtime.observation_reads() - before,
        1,
        "only the killed container is inspected"
    );
    let dead = listed
        .iter()
        .find(|i| i.runtime_id.starts_with(&victim))
        .unwrap();
    assert!(
        matches!(dead.phase, keel::model::observed::Phase::Exited { .. }),
        "{dead:?}"
    );
    assert_eq!(listed.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_creates_the_namespace_network_missing_since_the_create() {
    use keel::runtime::Runtime;
    let agent = Agent::new();
    let spec = agent.instance_spec("web", serde_json::json!({}));
    // Docker accepts a create on a network that does not exist and refuses the start: keel
    // creates without looking the network up, so it may not exist yet; if it does, it is
    // removed by hand here, as an operator might.
    let id = agent.runtime.create(&spec).await.unwrap();
    if agent.ns.network_exists() {
        let removed = std::process::Command::new("docker")
            .arg("network")
            .arg("rm")
            .args(agent.ns.networks())
            .output()
            .unwrap();
        assert!(removed.status.success(), "{removed:?}");
    }
    assert!(!agent.ns.network_exists());

    agent.runtime.start(&id).await.unwrap();
    assert!(agent.ns.network_exists(), "the network is back");
    assert_eq!(inspect(&id, "{{.State.Status}}"), "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_user_sets_the_process_user_and_privileged_needs_the_operator() {
    let refusing = Agent::new();
    let web = refusing.deployment(
        "web",
        &format!("{SLEEPER}    config:\n      user:\n        id: 1234\n        group: 2345\n"),
    );
    let root = refusing.deployment(
        "root",
        &format!("{SLEEPER}    config:\n      user:\n        privileged: true\n"),
    );
    refusing.apply("r1", &[("web.yaml", &web), ("root.yaml", &root)]);
    let mut controller = refusing.controller();
    refusing
        .until(&mut controller, 60, "web running, root refused", |a| {
            a.status("web") == Some(S::Running) && a.status("root") == Some(S::ConfigError)
        })
        .await;
    let id = refusing.ns.containers()[0].clone();
    assert_eq!(exec(&id, &["id", "-u"]).trim(), "1234");
    assert_eq!(exec(&id, &["id", "-g"]).trim(), "2345");
    let events = refusing.reader.events(&refusing.id("root"), 20).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("allow_privileged = true under [docker]")),
        "{events:?}"
    );
    drop(controller);

    // Created privileged is what keel decides; whether it then starts is the daemon's matter
    // (a daemon without every capability, as in CI's sandbox, refuses to start it).
    use keel::runtime::Runtime;
    let allowing = Agent::allowing_privileged(true);
    let spec = allowing.instance_spec(
        "root",
        serde_json::json!({"config": {"user": {"privileged": true}}}),
    );
    let id = allowing.runtime.create(&spec).await.unwrap();
    assert_eq!(inspect(&id, "{{.HostConfig.Privileged}}"), "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_of_an_older_keel_joins_its_nodes_network_when_the_agent_starts() {
    use keel::runtime::Runtime;
    let agent = Agent::new();
    let owner = format!(
        "test-{}",
        agent.dir.path().file_name().unwrap().to_string_lossy()
    );
    // What an older keel left: a container on `keel-<namespace>`, no node in the name.
    let legacy = format!("keel-{}", agent.ns.0);
    let labels = [
        "keel.managed=true".to_owned(),
        format!("keel.namespace={}", agent.ns.0),
    ];
    let mut create = vec!["network", "create"];
    for label in &labels {
        create.extend(["--label", label.as_str()]);
    }
    create.push(&legacy);
    assert!(docker_ok(&create), "network create");
    let owned = format!("keel.owner={owner}");
    let mut run = vec![
        "run",
        "-d",
        "--network",
        legacy.as_str(),
        "--label",
        owned.as_str(),
    ];
    for label in &labels {
        run.extend(["--label", label.as_str()]);
    }
    run.extend([support::docker::IMAGE, "sleep", "3600"]);
    assert!(docker_ok(&run), "run");
    let id = agent.ns.containers()[0].clone();

    let holder = keel::runtime::lease::Holder::current(keel::clock::now());
    agent.runtime.claim(&holder).await.unwrap();
    let networks = inspect(
        &id,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    let node_network = keel::runtime::docker::network_name(&owner, &agent.ns.0);
    assert!(
        networks.split_whitespace().any(|n| n == node_network),
        "joined {node_network}: {networks}"
    );
    assert!(
        networks.split_whitespace().any(|n| n == legacy),
        "kept {legacy}: {networks}"
    );
    agent.runtime.release(&holder).await.unwrap();
}

fn docker_ok(args: &[&str]) -> bool {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}
