//! End-to-end benchmarks of the real `keel` binary against the real Docker daemon, each figure
//! beside a baseline measured in the same run: Docker's own create + start of the same
//! container (through the Engine API) for latencies, `/healthz` of the same server for API
//! throughput, the agent paused (SIGSTOP) for the daemon's idle CPU.
//!
//! Run: `cargo bench --bench e2e` (needs a Docker daemon and busybox-static, like the tests;
//! `-- quick` for shorter windows). Results and how to read them: `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use keel::model::time::{parse_rfc3339, Timestamp};
use serde_json::Value;
use support::binary::{get_json, AgentProcess};
use support::docker::IMAGE;
use support::host::Host;

const SLEEPER: &str = "    command: [sleep, \"3600\"]\n";
/// A worker behind a readiness gate: httpd probed over TCP every 100 ms.
const GATED: &str = "    command: [httpd, -f, -p, \"8080\"]\n    health_checks:\n      - {type: tcp, port: 8080, interval: 100ms, readiness: true, min_healthy_time: 1s}\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "quick");
    // `memory [deployments=N] [revisions=N]` or `reconciling [deployments=N]`: only that
    // figure, at the size asked.
    let number = |key: &str, default: usize| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let memory_only = args.iter().any(|a| a == "memory");
    // `rollback`: only the rollback figure (each sample waits for a restart budget).
    let rollback_only = args.iter().any(|a| a == "rollback");
    let samples = if quick { 3 } else { 7 };
    let window = Duration::from_secs(if quick { 10 } else { 30 });
    let host = Host::new();
    let node = format!("bench-{}", host.ns.0);
    let receiver = Receiver::start();
    // Success after 1 s up (a rolled-back worker must not count as stable at once).
    let webhook = format!(
        "stable_after = \"1s\"\n[[webhooks]]\nurl = \"{}\"\nsecret = \"whsec_{}\"\n",
        receiver.url,
        base64_of(b"benchmark-webhook-secret")
    );
    let config = host.config_with("agent", &node, &webhook);
    let agent = host.start_on("agent", host.repo().to_str().unwrap_or(""), &config, "warn");
    wait("the API", 30, || api_up(&agent));
    println!("keel end-to-end benchmarks ({samples} samples; median; ratio to the baseline)\n");
    if args.iter().any(|a| a == "reconciling") {
        let many = number("deployments", 1000);
        zero_replicas(&host, &agent, many);
        api_while_reconciling(&host, &agent, window, many);
        return;
    }
    // `idle [deployments=N]`: the idle cost at that size only.
    if args.iter().any(|a| a == "idle") {
        let many = number("deployments", 10_000);
        zero_replicas(&host, &agent, many);
        idle(&agent, window * 2, &format!("{many} deployments"));
        return;
    }
    if memory_only {
        let many = number("deployments", 1000);
        zero_replicas(&host, &agent, many);
        memory(&host, &agent, many, number("revisions", 5));
        return;
    }

    let create_start = docker_create_start(&host, &node, samples);
    println!("baseline: Docker's own create + start of the same container: {create_start:.3} s\n");
    if rollback_only {
        rollback(&host, &agent, samples.min(3), create_start);
        return;
    }
    latencies(&host, &agent, samples, create_start);
    crash(&host, &agent, samples, create_start);
    // Idle first without health checks: 20 plain workers.
    let idle_window = window * 2;
    for i in 0..samples {
        let _ = std::fs::remove_file(host.repo().join(format!("gated{i}.yaml")));
    }
    let workers = 20;
    for i in samples..workers {
        host.write(
            &format!("plain{i}.yaml"),
            &format!(
                "deployments:\n{}",
                host.deployment(&format!("plain{i}"), SLEEPER)
            ),
        );
    }
    settled(&host, &agent, workers);
    idle(&agent, idle_window, "20 workers");
    api(&host, &agent, window, &format!("{workers} deployments"));
    // Then 20 more, each probed every 100 ms: the probes are the operator's, not the daemon's.
    for i in 0..workers {
        host.write(
            &format!("gated{i}.yaml"),
            &format!(
                "deployments:\n{}",
                host.deployment(&format!("gated{i}"), GATED)
            ),
        );
    }
    settled(&host, &agent, 2 * workers);
    idle(
        &agent,
        idle_window,
        "20 workers and 20 readiness-gated workers (tcp probes every 100 ms)",
    );
    for i in 0..workers {
        let _ = std::fs::remove_file(host.repo().join(format!("gated{i}.yaml")));
    }
    // Their removals' notifications go out before the delivery window opens.
    settled(&host, &agent, workers);
    std::thread::sleep(Duration::from_secs(5));
    let many = 1000;
    let delivered_before = receiver.count();
    zero_replicas(&host, &agent, many);
    deliveries(&receiver, delivered_before, window);
    idle(&agent, idle_window, "1,000 deployments");
    api(&host, &agent, window, &format!("{many} deployments"));
    api_while_reconciling(&host, &agent, window, many);
    memory(&host, &agent, many, 5);
    zero_replicas(&host, &agent, 10 * many);
    idle(&agent, idle_window, "10,000 deployments");
    drop(agent);
    push_receiver(samples);
}

fn api_up(agent: &AgentProcess) -> bool {
    support::binary::request(&agent.base, "GET", "/healthz", &[], b"").0 == 200
}

fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now() -> Timestamp {
    keel::clock::now()
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    (to.0 - from.0) as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Docker's own create + start of the container keel would run, on keel's network for the
/// namespace, through the Engine API (curl on the socket: no CLI in the measurement).
fn docker_create_start(host: &Host, node: &str, samples: usize) -> f64 {
    let network = keel::runtime::docker::network_name(node, &host.ns.0);
    if docker(&["network", "inspect", "-f", "{{.Name}}", &network]).is_empty() {
        docker(&[
            "network",
            "create",
            "--label",
            &format!("keel.namespace={}", host.ns.0),
            &network,
        ]);
    }
    let body = serde_json::json!({
        "Image": IMAGE,
        "Cmd": ["sleep", "3600"],
        "Labels": {"keel.namespace": host.ns.0},
        "HostConfig": {"NetworkMode": network},
    })
    .to_string();
    let times = (0..samples)
        .map(|i| {
            let name = format!("{}-baseline-{i}", host.ns.0);
            let start = Instant::now();
            let created = engine("POST", &format!("/containers/create?name={name}"), &body);
            let id = serde_json::from_str::<Value>(&created).expect("created")["Id"]
                .as_str()
                .expect("an id")
                .to_owned();
            engine("POST", &format!("/containers/{id}/start"), "");
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// One request to the Engine API on its Unix socket.
fn engine(method: &str, path: &str, body: &str) -> String {
    let mut stream =
        std::os::unix::net::UnixStream::connect("/var/run/docker.sock").expect("docker.sock");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.contains(" 20"), "{method} {path}: {head}");
    // Chunked or not, the JSON object is between the first '{' and the last '}'.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_owned(),
        _ => String::new(),
    }
}

fn deployment_detail(agent: &AgentProcess, host: &Host, name: &str) -> Option<Value> {
    agent.get(&format!("/v1/deployments/{}/{name}", host.ns.0))
}

/// The time the newest revision was recorded.
fn newest_revision(agent: &AgentProcess) -> Option<(String, Timestamp)> {
    let list = agent.get("/v1/revisions?limit=1")?;
    let newest = list.as_array()?.first()?.clone();
    Some((
        newest["id"].as_str()?.to_owned(),
        parse_rfc3339(newest["received_at"].as_str()?)?,
    ))
}

/// A file written → revision recorded → worker running, for a plain worker and one behind a
/// readiness check.
fn latencies(host: &Host, agent: &AgentProcess, samples: usize, create_start: f64) {
    let gated_checks = GATED;
    for (label, extra, gate) in [
        ("plain worker", SLEEPER, 0.0),
        ("readiness-gated worker", gated_checks, 1.0),
    ] {
        let mut detect = Vec::new();
        let mut run = Vec::new();
        for i in 0..samples {
            let name = format!("{}{i}", if gate > 0.0 { "gated" } else { "plain" });
            let before = newest_revision(agent).map(|(id, _)| id);
            let written = now();
            host.write(
                &format!("{name}.yaml"),
                &format!("deployments:\n{}", host.deployment(&name, extra)),
            );
            let mut recorded = None;
            wait("the revision", 60, || {
                recorded = newest_revision(agent).filter(|(id, _)| Some(id) != before.as_ref());
                recorded.is_some()
            });
            let (_, recorded) = recorded.expect("recorded");
            let mut since = None;
            wait(&format!("{name} to run"), 120, || {
                since = deployment_detail(agent, host, &name)
                    .filter(|d| d["status"] == "running")
                    .and_then(|d| parse_rfc3339(d["status_since"].as_str()?));
                since.is_some()
            });
            detect.push(secs(written, recorded));
            run.push(secs(recorded, since.expect("running")) - gate);
        }
        let (detect, run) = (median(detect), median(run));
        println!("{label}:");
        println!("  file written → revision recorded (directory watcher)   {detect:>7.3} s");
        println!(
            "  revision recorded → running{}      {run:>7.3} s   ×{:.2} of create+start",
            if gate > 0.0 {
                " (minus min_healthy_time)"
            } else {
                "                          "
            },
            run / create_start
        );
    }
    println!();
}

/// A bad revision rolled back: the failing deployment's terminal status recorded (the
/// rollback is decided and applied in that same transaction) → the last good generation's
/// instance started again.
fn rollback(host: &Host, agent: &AgentProcess, samples: usize, create_start: f64) {
    let mut back = Vec::new();
    for i in 0..samples {
        let name = format!("rb{i}");
        let good = format!("{SLEEPER}    environment:\n      SAMPLE: \"{i}\"\n");
        host.write(
            "rb.yaml",
            &format!("deployments:\n{}", host.deployment(&name, &good)),
        );
        // This sample's own good revision (not the previous sample's restore).
        wait("the good revision", 120, || {
            let running =
                deployment_detail(agent, host, &name).is_some_and(|d| d["status"] == "running");
            running
                && agent
                    .get("/v1/revisions?limit=1")
                    .is_some_and(|r| r[0]["state"] == "succeeded" && r[0]["restores"].is_null())
        });
        let bad = "    command: [sh, -c, \"exit 3\"]\n";
        host.write(
            "rb.yaml",
            &format!("deployments:\n{}", host.deployment(&name, bad)),
        );
        let mut restored = None;
        wait("the rollback to serve the good generation", 300, || {
            restored = restored_after_terminal(agent, host, &name);
            restored.is_some()
        });
        back.push(restored.expect("restored"));
    }
    let back = median(back);
    println!("rollback: terminal status → last good generation running  {back:>7.3} s   ×{:.2} of create+start\n", back / create_start);
    let _ = std::fs::remove_file(host.repo().join("rb.yaml"));
}

/// Seconds from the rollback (recorded in the same transaction as the failing deployment's
/// terminal status) to `name` running again on the restored spec, once the restore succeeded.
fn restored_after_terminal(agent: &AgentProcess, host: &Host, name: &str) -> Option<f64> {
    let list = agent.get("/v1/revisions?limit=5")?;
    let list = list.as_array()?;
    let newest = list.first()?;
    if newest["restores"].is_null() || newest["state"] != "succeeded" {
        return None;
    }
    let rolled_back = list.iter().find(|r| r["state"] == "rolled_back")?;
    let terminal = parse_rfc3339(rolled_back["state_since"].as_str()?)?;
    let detail = deployment_detail(agent, host, name)?;
    let running = parse_rfc3339(detail["status_since"].as_str()?)?;
    (detail["status"] == "running").then(|| secs(terminal, running))
}

/// `docker kill` → the replacement running, minus the crash backoff (1 s on a first death).
fn crash(host: &Host, agent: &AgentProcess, samples: usize, create_start: f64) {
    let mut replace = Vec::new();
    for i in 0..samples {
        let name = format!("plain{i}");
        let Some(detail) = deployment_detail(agent, host, &name) else {
            continue;
        };
        let Some(victim) = detail["instances"][0]["id"].as_str().map(str::to_owned) else {
            continue;
        };
        let killed = now();
        docker(&["kill", &victim]);
        let mut started = None;
        wait("the replacement", 60, || {
            started = deployment_detail(agent, host, &name).and_then(|d| {
                let fresh = d["instances"]
                    .as_array()?
                    .iter()
                    .find(|i| i["id"].as_str() != Some(victim.as_str()) && i["state"] != "error")?;
                parse_rfc3339(fresh["started_at"].as_str()?)
            });
            started.is_some()
        });
        replace.push(secs(killed, started.expect("started")) - 1.0);
    }
    if !replace.is_empty() {
        let replace = median(replace);
        println!("crash → replacement started, minus the 1 s backoff        {replace:>7.3} s   ×{:.2} of create+start\n", replace / create_start);
    }
}

/// CPU seconds (user + system) a process used so far.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn dockerd_pid() -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-o", "-x", "dockerd"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Agent and daemon CPU over `window` with every deployment running and nothing changing,
/// against the daemon's CPU over a window with the agent paused between two running ones
/// (the daemon's own background work drifts; bracketing evens it out).
fn idle(agent: &AgentProcess, window: Duration, label: &str) {
    let pid = agent.child.id();
    let daemon = dockerd_pid();
    let daemon_cpu = || daemon.map_or(0.0, cpu);
    // Let what the last change started finish first: removals, network pruning, and the
    // notifications of its status changes (30k at 10k deployments).
    wait("the outbox to drain", 600, || {
        let (_, metrics) = support::binary::request(&agent.base, "GET", "/metrics", &[], b"");
        metrics.lines().any(|l| l == "keel_outbox_depth 0")
    });
    std::thread::sleep(Duration::from_secs(5));
    let percent = |used: f64| used / window.as_secs_f64() * 100.0;
    let measure = |paused: bool| {
        let signal = if paused { "-STOP" } else { "-CONT" };
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .ok();
        let (a0, d0) = (cpu(pid), daemon_cpu());
        std::thread::sleep(window);
        (cpu(pid) - a0, daemon_cpu() - d0)
    };
    let (agent_1, running_1) = measure(false);
    let (_, paused) = measure(true);
    let (agent_2, running_2) = measure(false);
    let running = (running_1 + running_2) / 2.0;
    let agent_used = (agent_1 + agent_2) / 2.0;
    println!("idle, {label}, windows of {} s:", window.as_secs());
    println!(
        "  agent CPU                                                 {:>6.2} % of a core",
        percent(agent_used)
    );
    println!(
        "  dockerd CPU, agent running / agent paused                 {:>6.2} % / {:.2} % (added: {:+.2} points)\n",
        percent(running),
        percent(paused),
        percent(running - paused)
    );
}

/// Requests per second and p50/p99 latency from `connections` keep-alive connections over
/// `window`.
fn load(base: &str, path: &str, connections: usize, window: Duration) -> (f64, f64, f64) {
    let address = base.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + window;
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let (address, path) = (address.clone(), path.to_owned());
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).expect("connect");
                stream.set_nodelay(true).ok();
                let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
                let mut latencies = Vec::new();
                let mut buffer = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let start = Instant::now();
                    stream.write_all(request.as_bytes()).expect("write");
                    read_response(&mut stream, &mut buffer);
                    latencies.push(start.elapsed().as_secs_f64());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    all.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    (
        all.len() as f64 / window.as_secs_f64(),
        pick(0.5) * 1e3,
        pick(0.99) * 1e3,
    )
}

/// Reads one HTTP/1.1 message (head, then `Content-Length` bytes) into the front of
/// `buffer`, keeping what follows it; its length, or `None` when the peer closed.
fn read_message(stream: &mut std::net::TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 65536];
    let mut fill = |buffer: &mut Vec<u8>| match stream.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    };
    let end = loop {
        match buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => break end,
            None => fill(buffer)?,
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < end + 4 + length {
        fill(buffer)?;
    }
    Some(end + 4 + length)
}

/// Reads one response.
fn read_response(stream: &mut std::net::TcpStream, buffer: &mut Vec<u8>) {
    buffer.clear();
    read_message(stream, buffer).expect("the API closed the connection");
}

fn api(host: &Host, agent: &AgentProcess, window: Duration, label: &str) {
    let window = window / 3;
    println!(
        "status API, {label} ({} s per figure; baseline: /healthz of the same server):",
        window.as_secs()
    );
    let one = format!("/v1/deployments/{}/plain0", host.ns.0);
    for connections in [1, 32] {
        let (base_rps, _, _) = load(&agent.base, "/healthz", connections, window);
        for (what, path) in [
            ("GET /v1/deployments", "/v1/deployments"),
            ("GET one deployment", one.as_str()),
        ] {
            let (rps, p50, p99) = load(&agent.base, path, connections, window);
            println!(
                "  {what:<22} {connections:>2} conn  {rps:>9.0} req/s ×{:.2}   p50 {p50:.2} ms  p99 {p99:.2} ms",
                rps / base_rps
            );
        }
    }
    println!();
}

/// Adds deployments with no replicas (statuses and API rows, no containers) up to `total`.
fn zero_replicas(host: &Host, agent: &AgentProcess, total: usize) {
    write_zero_replicas(host, total, "1");
    settled(host, agent, total);
}

/// Waits until the namespace holds `total` deployments, every one of them running (counted
/// by `/v1/namespaces`, which is not paged).
fn settled(host: &Host, agent: &AgentProcess, total: usize) {
    wait("every deployment to run", 900, || {
        get_json(&agent.base, "/v1/namespaces")
            .and_then(|l| {
                let ns = l
                    .as_array()?
                    .iter()
                    .find(|n| n["name"] == host.ns.0.as_str())?
                    .clone();
                let running = ns["by_status"]["running"].as_u64().unwrap_or(0) as usize;
                Some(ns["deployments"].as_u64()? as usize == total && running == total)
            })
            .unwrap_or(false)
    });
}

/// Deployments with no replicas, in files of 500 (the loader's per-file size limit is 1 MiB),
/// so that the namespace holds `total` deployments with the ones other files declare.
fn write_zero_replicas(host: &Host, total: usize, version: &str) {
    let zero = |name: &std::ffi::OsStr| name.to_string_lossy().starts_with("zero-");
    let others = host.repo().read_dir().map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| !zero(&e.file_name())))
            .count()
    });
    let wanted = total.saturating_sub(others);
    for (file, start) in (0..wanted).step_by(500).enumerate() {
        let mut text = String::from("deployments:\n");
        for i in start..(start + 500).min(wanted) {
            text.push_str(&host.deployment(
                &format!("idle{i}"),
                &format!("    replicas: 0\n    environment:\n      VERSION: \"{version}\"\n"),
            ));
        }
        host.write(&format!("zero-{file:03}.yaml"), &text);
    }
}

/// RSS of the agent after each of `revisions` revisions that change every one of `total`
/// deployments.
fn memory(host: &Host, agent: &AgentProcess, total: usize, revisions: usize) {
    let status = |field: &str| {
        std::fs::read_to_string(format!("/proc/{}/status", agent.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    // At rest: the allocator hands freed pages back within a second of the last pass.
    let at_rest = || {
        std::thread::sleep(Duration::from_secs(2));
        format!("{:.0}", status("VmRSS:"))
    };
    let mut figures = vec![at_rest()];
    for version in 2..=revisions + 1 {
        let before = newest_revision(agent).map(|(id, _)| id);
        write_zero_replicas(host, total, &version.to_string());
        wait("the revision", 60, || {
            newest_revision(agent).map(|(id, _)| id) != before
        });
        settled(host, agent, total);
        figures.push(at_rest());
    }
    println!(
        "agent RSS (MB) at rest with {total} deployments, then after each of {revisions} revisions changing all: {}; peak {:.0}\n",
        figures.join(" → "),
        status("VmHWM:")
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A webhook endpoint on 127.0.0.1 that answers 204 and notes when each delivery arrived.
struct Receiver {
    url: String,
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let noted = arrivals.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let noted = noted.clone();
                std::thread::spawn(move || serve_hooks(stream, &noted));
            }
        });
        Self { url, arrivals }
    }

    fn count(&self) -> usize {
        self.arrivals.lock().map_or(0, |a| a.len())
    }
}

/// Answers every request on one keep-alive connection with 204.
fn serve_hooks(mut stream: std::net::TcpStream, noted: &std::sync::Mutex<Vec<Instant>>) {
    let mut buffer = Vec::new();
    while let Some(length) = read_message(&mut stream, &mut buffer) {
        buffer.drain(..length);
        if let Ok(mut arrivals) = noted.lock() {
            arrivals.push(Instant::now());
        }
        if stream
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Signed webhook deliveries per second while a revision of `many` deployments settles.
fn deliveries(receiver: &Receiver, before: usize, window: Duration) {
    // The backlog drains after the statuses settle; give it a window to arrive.
    let deadline = Instant::now() + window;
    let mut last = receiver.count();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = receiver.count();
        if now == last && now > before {
            break;
        }
        last = now;
    }
    let arrivals = receiver
        .arrivals
        .lock()
        .map(|a| a[before.min(a.len())..].to_vec())
        .unwrap_or_default();
    if let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) {
        let span = last.duration_since(*first).as_secs_f64().max(1e-3);
        println!(
            "webhook deliveries (Standard Webhooks signing, one endpoint, in order): {} in {span:.2} s = {:.0} /s\n",
            arrivals.len(),
            arrivals.len() as f64 / span
        );
    }
}

/// A commit announced by a signed GitHub push → the revision recorded, for an agent on a Git
/// repository that otherwise polls once an hour.
fn push_receiver(samples: usize) {
    let host = Host::new();
    let repo = support::git::Repo::new();
    repo.write(
        "web.yaml",
        &format!(
            "deployments:\n{}",
            host.deployment("web", "    replicas: 0\n")
        ),
    );
    repo.commit("first");
    let secret = "bench-hook-secret";
    let extra = format!("poll_interval = \"1h\"\n[hooks]\ngithub = \"{secret}\"\n");
    let config = host.config_with("git", &format!("bench-git-{}", host.ns.0), &extra);
    let agent = host.start_on("git", &repo.url(), &config, "warn");
    wait("the first revision", 60, || {
        newest_revision(&agent).is_some()
    });
    let mut detect = Vec::new();
    for i in 0..samples {
        repo.write(
            "web.yaml",
            &format!(
                "deployments:\n{}",
                host.deployment(
                    "web",
                    &format!("    replicas: 0\n    environment: {{N: \"{i}\"}}\n")
                )
            ),
        );
        let sha = repo.commit(&format!("change {i}"));
        let pushed = now();
        let (status, _) = support::binary::push_hook(&agent.base, "main", secret);
        assert_eq!(status, 202, "the push hook");
        let mut recorded = None;
        wait("the pushed revision", 60, || {
            recorded = newest_revision(&agent).filter(|(id, _)| *id == sha);
            recorded.is_some()
        });
        detect.push(secs(pushed, recorded.expect("recorded").1));
    }
    println!("commit → revision recorded via the signed push receiver (Git source)  {:>6.3} s   (target ≤ 1 s)\n", median(detect));
}

/// The first page of 20 deployments from 32 connections while a revision that changes all of
/// `total` deployments is applied and settles (every write invalidates the rendered views).
fn api_while_reconciling(host: &Host, agent: &AgentProcess, window: Duration, total: usize) {
    let window = window / 3;
    let (base_rps, _, _) = load(&agent.base, "/healthz", 32, window);
    write_zero_replicas(host, total, "reconciling");
    let (rps, p50, p99) = load(&agent.base, "/v1/deployments?limit=20", 32, window);
    let revision = newest_revision(agent).map(|(id, _)| id).unwrap_or_default();
    settled(host, agent, total);
    println!(
        "status API while a revision changing {total} deployments is applied ({revision:.12}), 32 conn:\n  GET /v1/deployments?limit=20   {rps:>9.0} req/s ×{:.2}   p50 {p50:.2} ms  p99 {p99:.2} ms\n",
        rps / base_rps
    );
}
