//! The notifier in the real binary: a webhook receiver that is down while the agent is
//! killed with SIGKILL between attempts gets every notification once it is up (at least once,
//! the same `webhook-id` on a repeat); and, with Docker and a Git repository, a fake GitHub
//! sees `pending` then `success` only after the readiness-gated worker serves, and `failure`
//! naming the worker of a commit that crash-loops; a worker that dies a moment after each start
//! never turns its commit green; a bad commit is rolled back (the good generation serves again,
//! the bad commit `failure`, the good one still `success`, `revision.rolled_back` delivered), its
//! twin under another commit is quarantined, a fix applies; `[rollback] mode = "off"` keeps a
//! failure in place. No secret, token or signature appears in the log at `trace`, in the
//! database or in the API.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use support::binary::{request, wait_for};
use support::git::Repo;
use support::host::Host;
use support::receivers::{FakeForge, Forge, Receiver, REPOSITORY};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "forge-token-e2e-8a31";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every `/v1/*` answer an operator could read.
fn api_text(base: &str) -> String {
    [
        "/v1/deployments",
        "/v1/namespaces",
        "/v1/revisions",
        "/v1/source",
        "/v1/runtimes",
        "/v1/deliveries?limit=500",
        "/metrics",
    ]
    .iter()
    .map(|path| request(base, "GET", path, &[], b"").1)
    .collect()
}

fn deliveries(base: &str, state: &str) -> Vec<Value> {
    support::binary::get_json(base, &format!("/v1/deliveries?state={state}&limit=500"))
        .and_then(|page| page["deliveries"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_no_webhook_and_repeats_only_with_the_same_id() {
    let host = Host::new();
    let receiver = Receiver::start(SECRET).await;
    receiver.set_down(true);
    let extra = format!(
        "[[webhooks]]\nurl = {:?}\nsecret = {SECRET:?}\n\n[notifier]\nretry_schedule = [\"200ms\"]\nretry_every = \"300ms\"\n",
        receiver.url
    );
    let config = host.config_with("agent", &host.node(), &extra);
    let manifest = |version: u32| {
        format!(
            "deployments:\n{}",
            host.deployment(
                "web",
                &format!("    replicas: 0\n    environment:\n      VERSION: \"{version}\"\n")
            )
        )
    };
    host.write("app.yaml", &manifest(1));
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "trace");
    let base = agent.base.clone();
    wait_for("attempts on the down receiver", 60, || {
        deliveries(&base, "pending")
            .iter()
            .any(|d| d["attempts"].as_u64().unwrap_or(0) >= 1)
    });
    agent.kill9();

    // While the agent is away: a new revision, and the receiver comes back.
    host.write("app.yaml", &manifest(2));
    receiver.set_down(false);
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "trace");
    let base = agent.base.clone();
    wait_for("every delivery delivered", 60, || {
        let pending = deliveries(&base, "pending");
        let delivered = deliveries(&base, "delivered");
        pending.is_empty()
            && delivered.len() >= 4
            && agent
                .get("/v1/revisions?limit=1")
                .is_some_and(|r| r[0]["state"] == "succeeded")
    });
    wait_for("the last notifications to go out", 30, || {
        deliveries(&base, "pending").is_empty()
    });
    let delivered: BTreeSet<String> = deliveries(&base, "delivered")
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let received = receiver.received();
    let received_ids: BTreeSet<String> = received.iter().map(|r| r.id.clone()).collect();
    assert_eq!(received_ids, delivered, "nothing lost, nothing unknown");
    assert!(deliveries(&base, "dead").is_empty());
    assert_eq!(receiver.rejected(), Vec::<String>::new());
    let kinds: Vec<&str> = received.iter().map(|r| r.kind.as_str()).collect();
    assert!(kinds.contains(&"revision.status_changed"), "{kinds:?}");

    // Nothing secret anywhere an operator (or an attacker with the files) could read.
    let api = api_text(&base);
    let log_path = agent.log.clone();
    assert!(agent.terminate().success());
    let mut files = vec![std::fs::read(&log_path).unwrap()];
    let db = host.db("agent");
    files.push(std::fs::read(&db).unwrap_or_default());
    files.push(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    files.push(api.into_bytes());
    let secret_key = SECRET.trim_start_matches("whsec_");
    for file in &files {
        assert!(!contains(file, secret_key), "the webhook secret leaked");
        for r in &received {
            let signature = r.signature.trim_start_matches("v1,");
            assert!(!contains(file, signature), "a signature leaked");
        }
    }
}

/// The agent's config for `host`: `top` keys, then commit statuses on `forge` (its token in a
/// file), then `tables`.
fn forge_config(host: &Host, forge: &FakeForge, top: &str, tables: &str) -> std::path::PathBuf {
    let token_file = host.dir.path().join("forge.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let extra = format!(
        "poll_interval = \"1s\"\n{top}\n[forge]\nkind = \"github\"\napi_url = {:?}\nrepository = {REPOSITORY:?}\ntoken_file = {:?}\n\n{tables}",
        forge.api_url, token_file
    );
    host.config_with("agent", &host.node(), &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_follow_the_readiness_gate_and_name_a_crash_loop() {
    let host = Host::new();
    let forge = FakeForge::start(Forge::Github, TOKEN).await;
    let config = forge_config(&host, &forge, "public_url = \"https://keel.example\"\n", "");
    let gated = "    command: [sh, -c, \"sleep 2; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: 1s}\n";
    let repo = Repo::new();
    repo.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", gated)),
    );
    let first = repo.commit("a readiness-gated worker");
    let agent = host.start_on("agent", &repo.url(), &config, "trace");
    let web = format!("/v1/deployments/{}/web", host.ns.0);
    let posted = |sha: &str| -> Vec<(String, String)> {
        forge
            .posted()
            .into_iter()
            .filter(|p| p.sha == sha)
            .map(|p| (p.state, p.description))
            .collect()
    };
    wait_for("success on the first commit", 120, || {
        posted(&first).iter().any(|(state, _)| state == "success")
    });
    assert_eq!(
        posted(&first),
        [
            (
                "pending".to_owned(),
                "applying: 0/1 deployments at their goal".to_owned()
            ),
            ("success".to_owned(), "1/1 deployments running".to_owned())
        ]
    );
    // The worker became ready (its `ready` status change) before success was posted.
    let events = agent.get(&format!("{web}/events?limit=100")).unwrap();
    let ready_at = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "ready")
        .and_then(|e| e["time"].as_str())
        .and_then(keel::model::time::parse_rfc3339)
        .expect("a ready event");
    let success = forge
        .posted()
        .into_iter()
        .find(|p| p.sha == first && p.state == "success")
        .unwrap();
    assert!(
        success.wall_ms >= ready_at.millis(),
        "success before the gate opened"
    );
    assert_eq!(success.context, format!("keel/{}", host.node()));

    // A commit whose worker crash-loops: failure, naming it.
    let crashing = "    command: [sh, -c, \"exit 1\"]\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, readiness: true, min_healthy_time: 1s}\n";
    repo.write(
        "web.yaml",
        &format!("deployments:\n{}", host.deployment("web", crashing)),
    );
    let second = repo.commit("a worker that crash-loops");
    wait_for("failure on the second commit", 180, || {
        posted(&second).iter().any(|(state, _)| state == "failure")
    });
    let failure = posted(&second).pop().unwrap();
    assert_eq!(
        failure,
        (
            "failure".to_owned(),
            format!(
                "rolled back to {}: {}/web: crash_loop_back_off after 5 restarts",
                &first[..12],
                host.ns.0
            )
        )
    );
    assert_eq!(forge.rejected(), Vec::<String>::new());

    // The token appears nowhere.
    let api = api_text(&agent.base);
    let log_path = agent.log.clone();
    assert!(agent.terminate().success());
    assert!(
        !contains(&std::fs::read(&log_path).unwrap(), TOKEN),
        "the log holds the token"
    );
    let db = host.db("agent");
    assert!(
        !contains(&std::fs::read(&db).unwrap(), TOKEN),
        "the database holds the token"
    );
    assert!(!contains(
        &std::fs::read(db.with_extension("db-wal")).unwrap_or_default(),
        TOKEN
    ));
    assert!(!api.contains(TOKEN), "the API shows the token");
}

/// A worker that crashes a moment after it starts: `running` for an instant, every time, but
/// never up for its stabilization window — so its commit ends `failure`, never `success`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_crashes_after_a_moment_never_turns_its_commit_green() {
    let host = Host::new();
    let forge = FakeForge::start(Forge::Github, TOKEN).await;
    // The default window, said explicitly.
    let config = forge_config(&host, &forge, "stable_after = \"10s\"\n", "");
    let repo = Repo::new();
    repo.write(
        "boom.yaml",
        &format!(
            "deployments:\n{}",
            host.deployment("boom", "    command: [sh, -c, \"sleep 0.3; exit 1\"]\n")
        ),
    );
    let sha = repo.commit("a worker that dies after 0.3 s");
    let _agent = host.start_on("agent", &repo.url(), &config, "info");
    let posted = || -> Vec<(String, String)> {
        forge
            .posted()
            .into_iter()
            .filter(|p| p.sha == sha)
            .map(|p| (p.state, p.description))
            .collect()
    };
    wait_for("the commit's verdict", 180, || {
        posted().iter().any(|(state, _)| state != "pending")
    });
    let states: Vec<String> = posted().into_iter().map(|(state, _)| state).collect();
    assert!(
        !states.iter().any(|s| s == "success"),
        "a commit that broke the host went green: {states:?}"
    );
    assert_eq!(
        posted().pop().unwrap(),
        (
            "failure".to_owned(),
            format!("{}/boom: crash_loop_back_off after 5 restarts", host.ns.0)
        )
    );
}

/// GETs `/` of `ip:8080` over HTTP/1.0: the body when it answers 200.
fn serves(ip: &str) -> Option<String> {
    use std::io::{Read, Write};
    let address: std::net::SocketAddr = format!("{ip}:8080").parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.")
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .flatten()
        .filter(|_| text.contains(" 200 "))
}

/// A good commit serves; a bad one (its command exits) is rolled back — the good generation
/// serves again, the bad commit is `failure` naming the deployment, the good one keeps its
/// `success`, `revision.rolled_back` is delivered; the same manifests under a new commit are
/// not applied and get their status at once; a fixing commit is applied normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_commit_is_rolled_back_and_its_twin_is_not_applied() {
    let host = Host::new();
    let forge = FakeForge::start(Forge::Github, TOKEN).await;
    let receiver = Receiver::start(SECRET).await;
    let webhook = format!(
        "[[webhooks]]\nurl = {:?}\nsecret = {SECRET:?}\n",
        receiver.url
    );
    let config = forge_config(&host, &forge, "", &webhook);
    let serving = |version: &str| {
        format!("    command: [sh, -c, \"mkdir -p /www; echo {version} > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n    health_checks:\n      - {{type: http, url: \"http://localhost:8080/\", interval: 200ms, timeout: 1s, readiness: true, min_healthy_time: 1s}}\n")
    };
    let repo = Repo::new();
    let web = |extra: &str| format!("deployments:\n{}", host.deployment("web", extra));
    repo.write("web.yaml", &web(&serving("v1")));
    let good = repo.commit("web v1");
    let agent = host.start_on("agent", &repo.url(), &config, "info");
    let state = |sha: &str| {
        agent
            .get(&format!("/v1/revisions/{sha}"))
            .and_then(|r| r["state"].as_str().map(str::to_owned))
    };
    wait_for("the good commit to succeed", 120, || {
        state(&good).as_deref() == Some("succeeded")
    });

    // The bad commit: the new command exits at once.
    let bad_web = web("    command: [sh, -c, \"exit 3\"]\n    health_checks:\n      - {type: http, url: \"http://localhost:8080/\", interval: 200ms, readiness: true, min_healthy_time: 1s}\n");
    repo.write("web.yaml", &bad_web);
    let bad = repo.commit("web that cannot start");
    wait_for("the bad commit to be rolled back", 180, || {
        state(&bad).as_deref() == Some("rolled_back")
    });
    let detail = format!("/v1/deployments/{}/web", host.ns.0);
    wait_for("the good generation to serve again", 120, || {
        agent.get(&detail).is_some_and(|d| {
            d["status"] == "running"
                && d["ips"].as_array().is_some_and(|ips| {
                    ips.iter()
                        .filter_map(|ip| ip.as_str())
                        .any(|ip| serves(ip).is_some_and(|b| b.trim() == "v1"))
                })
        })
    });
    let posted = |sha: &str| -> Vec<(String, String)> {
        forge
            .posted()
            .into_iter()
            .filter(|p| p.sha == sha)
            .map(|p| (p.state, p.description))
            .collect()
    };
    wait_for("the bad commit's failure", 60, || {
        posted(&bad).iter().any(|(state, _)| state == "failure")
    });
    let (_, description) = posted(&bad).pop().unwrap();
    assert!(
        description.starts_with(&format!(
            "rolled back to {}: {}/web",
            &good[..12],
            host.ns.0
        )),
        "{description}"
    );
    assert_eq!(
        posted(&good).last().map(|(state, _)| state.as_str()),
        Some("success"),
        "the good commit keeps its success: {:?}",
        posted(&good)
    );
    wait_for("revision.rolled_back to be delivered", 60, || {
        receiver.received().iter().any(|r| {
            r.kind == "revision.rolled_back"
                && r.body["data"]["revision"] == bad.as_str()
                && r.body["data"]["restored"] == good.as_str()
        })
    });

    // The same manifests under another commit: not applied, a failure status at once.
    repo.write("notes.txt", "an unrelated file");
    let twin = repo.commit("an unrelated change on top of the bad manifests");
    wait_for("the twin to be quarantined", 60, || {
        state(&twin).as_deref() == Some("quarantined")
    });
    wait_for("the twin's failure", 60, || {
        posted(&twin)
            .iter()
            .any(|(state, description)| state == "failure" && description.contains(&bad[..12]))
    });
    assert_eq!(
        agent.get(&detail).unwrap()["status"],
        "running",
        "nothing of it applied"
    );

    // A fixing commit is applied normally.
    repo.write("web.yaml", &web(&serving("v2")));
    let fix = repo.commit("web v2");
    wait_for("the fix to succeed", 120, || {
        state(&fix).as_deref() == Some("succeeded")
    });
    assert_eq!(forge.rejected(), Vec::<String>::new());
}

/// `[rollback] mode = "off"`: a failed revision stays failed and nothing is restored.
#[test]
fn with_rollback_off_a_failed_revision_stays_in_place() {
    let host = Host::new();
    let config = host.config_with(
        "agent",
        &host.node(),
        "stable_after = \"2s\"\n[rollback]\nmode = \"off\"\n",
    );
    let web = |command: &str| {
        format!(
            "deployments:\n{}",
            host.deployment("web", &format!("    command: [sh, -c, \"{command}\"]\n"))
        )
    };
    host.write("web.yaml", &web("sleep 3600"));
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    let latest = || {
        agent
            .get("/v1/revisions?limit=1")
            .and_then(|r| r[0]["state"].as_str().map(str::to_owned))
    };
    wait_for("the first revision to succeed", 90, || {
        latest().as_deref() == Some("succeeded")
    });
    host.write("web.yaml", &web("exit 3"));
    wait_for("the second revision to fail", 120, || {
        latest().as_deref() == Some("failed")
    });
    let detail = agent
        .get(&format!("/v1/deployments/{}/web", host.ns.0))
        .unwrap();
    assert_eq!(detail["status"], "crash_loop_back_off", "{detail}");
    assert_eq!(detail["generation"], 2, "nothing restored: {detail}");
}

/// `keel retry` applies a rolled-back revision's desired state again — with an admin token;
/// a token that may only read is refused (403), and nothing changes.
#[test]
fn keel_retry_lifts_a_quarantine_with_an_admin_token_only() {
    const READ: &str = "read-token-5b1e";
    const ADMIN: &str = "admin-token-9c4d";
    let host = Host::new();
    let extra =
        format!("stable_after = \"2s\"\n[api]\ntokens = [{READ:?}]\nadmin_tokens = [{ADMIN:?}]\n");
    let config = host.config_with("agent", &host.node(), &extra);
    let worker = |name: &str, command: &str| {
        host.deployment(name, &format!("    command: [sh, -c, \"{command}\"]\n"))
    };
    host.write(
        "web.yaml",
        &format!("deployments:\n{}", worker("web", "sleep 3600")),
    );
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    let auth = [("Authorization", format!("Bearer {READ}"))];
    let revisions = || -> Vec<Value> {
        let (_, body) = request(&agent.base, "GET", "/v1/revisions?limit=10", &auth, b"");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let latest_state = || {
        revisions()
            .first()
            .and_then(|r| r["state"].as_str().map(str::to_owned))
    };
    wait_for("the first revision to succeed", 90, || {
        latest_state().as_deref() == Some("succeeded")
    });
    host.write(
        "boom.yaml",
        &format!("deployments:\n{}", worker("boom", "exit 3")),
    );
    wait_for("the bad revision to be rolled back", 120, || {
        revisions().iter().any(|r| r["state"] == "rolled_back")
    });
    let bad = revisions()
        .into_iter()
        .find(|r| r["state"] == "rolled_back")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retry = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["retry", &bad, "--api", &agent.base])
            .env("KEEL_TOKEN", token)
            .output()
            .unwrap()
    };
    let refused = retry(READ);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("403") || said.contains("Forbidden"), "{said}");
    assert_eq!(
        revisions().first().unwrap()["restores"],
        bad.as_str(),
        "nothing changed"
    );

    let retried = retry(ADMIN);
    let out = String::from_utf8_lossy(&retried.stdout);
    assert_eq!(
        retried.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert!(out.contains("applied again"), "{out}");
    let newest = revisions().into_iter().next().unwrap();
    assert_eq!(
        newest["id"],
        bad.as_str(),
        "the state is applied again under its sha"
    );
    assert!(
        newest["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("retried by the admin token ")),
        "{newest}"
    );
    assert!(
        !newest.to_string().contains(ADMIN),
        "never the token itself"
    );
}
