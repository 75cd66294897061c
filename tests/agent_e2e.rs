//! The real `keel` binary end to end: an agent following a Git repository (file://) runs a
//! Docker worker; a pushed commit that changes the image tag rolls it to generation 2; a
//! broken commit is reported `invalid` and changes nothing; pushes reach it through the signed
//! GitHub receiver; SIGTERM ends it cleanly.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::binary::{free_port, get_json, push_hook, request, wait_for};
use support::docker::{ensure_image, Namespace, IMAGE};
use support::git::Repo;

const SECRET: &str = "hook-secret-e2e";

struct Agent {
    child: Child,
    base: String,
    _state: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn manifest(ns: &str, image: &str, extra: &str) -> String {
    format!("deployments:\n  web:\n    name: web\n    namespace: {ns}\n    image: {image}\n    command: [sleep, \"3600\"]\n{extra}")
}

fn start(repo: &Repo, ns: &Namespace) -> Agent {
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("keel.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"e2e-{}\"\nstate_dir = \"{}\"\npoll_interval = \"1h\"\nstable_after = \"0s\"\n[hooks]\ngithub = \"{SECRET}\"\n",
            ns.0,
            state.path().join("state").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(state.path().join("agent.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "agent",
            "--source",
            &repo.url(),
            "--branch",
            "main",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--db")
        .arg(state.path().join("keel.db"))
        .arg("--config")
        .arg(&config)
        .env_remove("KEEL_SOURCE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Agent {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _state: state,
    }
}

#[test]
fn an_agent_follows_pushes_rolls_a_worker_and_ignores_a_broken_commit() {
    ensure_image();
    let ns = Namespace::new();
    let repo = Repo::new();
    repo.write("web.yaml", &manifest(&ns.0, IMAGE, ""));
    repo.commit("web on the test image");
    let agent = start(&repo, &ns);
    let web = format!("/v1/deployments/{}/web", ns.0);
    let state = |agent: &Agent| {
        get_json(&agent.base, &web).map(|d| {
            (
                d["status"].as_str().unwrap_or("").to_owned(),
                d["generation"].as_u64().unwrap_or(0),
            )
        })
    };
    wait_for("generation 1 to run", 90, || {
        state(&agent) == Some(("running".into(), 1))
    });

    // A commit that changes the image tag, announced by a signed push.
    repo.write("web.yaml", &manifest(&ns.0, "busybox:1.36", ""));
    let second = repo.commit("move to busybox:1.36");
    assert_eq!(push_hook(&agent.base, "main", SECRET).0, 202);
    wait_for("generation 2 to run", 90, || {
        state(&agent) == Some(("running".into(), 2))
    });
    let revision = get_json(&agent.base, &format!("/v1/revisions/{second}")).unwrap();
    assert_eq!(revision["message"], "move to busybox:1.36");
    wait_for("the revision to succeed", 60, || {
        get_json(&agent.base, &format!("/v1/revisions/{second}"))
            .is_some_and(|r| r["state"] == "succeeded")
    });
    let containers = ns.containers();
    assert_eq!(containers.len(), 1);

    // Receivers refuse bad signatures, oversized bodies, and ignore other branches.
    assert_eq!(push_hook(&agent.base, "main", "wrong-secret").0, 401);
    let (status, body) = push_hook(&agent.base, "feature", SECRET);
    assert_eq!(status, 202);
    assert!(body.contains("\"fetch\":false"), "{body}");
    let huge = vec![b'x'; (1 << 20) + 1];
    assert_eq!(
        request(
            &agent.base,
            "POST",
            "/v1/hooks/github",
            &[("X-Hub-Signature-256", "sha256=00".into())],
            &huge
        )
        .0,
        413
    );

    // A broken commit: recorded invalid, nothing changes.
    repo.write(
        "web.yaml",
        &manifest(&ns.0, "busybox:1.36", "    replica: 2\n"),
    );
    let broken = repo.commit("typo");
    assert_eq!(push_hook(&agent.base, "main", SECRET).0, 202);
    wait_for("the broken revision to be invalid", 60, || {
        get_json(&agent.base, &format!("/v1/revisions/{broken}"))
            .is_some_and(|r| r["state"] == "invalid")
    });
    let invalid = get_json(&agent.base, &format!("/v1/revisions/{broken}")).unwrap();
    assert_eq!(invalid["diagnostics"][0]["path"], "deployments.web.replica");
    assert_eq!(state(&agent), Some(("running".into(), 2)));
    assert_eq!(
        ns.containers(),
        containers,
        "the worker was touched by an invalid revision"
    );

    // The remote goes away: the error shows in the API, the last good revision keeps running.
    let moved = repo.path().with_extension("gone");
    std::fs::rename(repo.path(), &moved).unwrap();
    assert_eq!(push_hook(&agent.base, "main", SECRET).0, 202);
    wait_for("the source error to show", 60, || {
        get_json(&agent.base, "/v1/source").is_some_and(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot reach"))
        })
    });
    assert_eq!(state(&agent), Some(("running".into(), 2)));
    std::fs::rename(&moved, repo.path()).unwrap();

    // SIGTERM: a clean exit, and the worker keeps running.
    let mut agent = agent;
    Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        ns.containers(),
        containers,
        "stopping the agent stopped its containers"
    );
}
