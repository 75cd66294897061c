//! The `keel` binary as an operator and a CI job use it: exit codes, text and JSON output.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run keel")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_accepts_the_examples_repo() {
    let out = keel(&["validate", "examples-repo"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("valid — 6 deployments"),
        "{}",
        stdout(&out)
    );
}

fn bad_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        "deployments:\n  web:\n    name: web\n    namespace: demo\n    image: busybox\n    replica: 2\n    kind: job\n    replicas: 2\n",
    )
    .unwrap();
    dir
}

#[test]
fn validate_reports_errors_with_locations_and_exits_1() {
    let dir = bad_repo();
    let out = keel(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("web.yaml:6:5: deployments.web.replica: unknown field \"replica\", did you mean \"replicas\"?"), "{text}");
    assert!(
        text.contains("web.yaml:8:15: deployments.web.replicas: warning: a job with 2 replicas"),
        "{text}"
    );
    assert!(text.contains("invalid — 1 error, 1 warning"), "{text}");
}

#[test]
fn validate_json_is_a_machine_readable_list() {
    let dir = bad_repo();
    let out = keel(&["validate", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        list[0],
        serde_json::json!({
            "file": "web.yaml", "line": 6, "column": 5, "path": "deployments.web.replica",
            "severity": "error", "message": "unknown field \"replica\", did you mean \"replicas\"?"
        })
    );
    assert_eq!(list[1]["severity"], "warning");
}

#[test]
fn validate_of_a_missing_directory_says_which() {
    let out = keel(&["validate", "/nonexistent/keel-repo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/keel-repo"), "{err}");
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let out = keel(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/manifest.schema.json"),
    )
    .unwrap();
    assert_eq!(out.stdout, checked_in);
}

#[test]
fn help_teaches_the_commands() {
    let out = keel(&["--help"]);
    let text = stdout(&out);
    for needle in ["validate", "schema", "GitOps"] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

mod plan {
    use super::*;
    use keel::store::Store;

    use crate::support;

    fn manifests(dir: &std::path::Path, files: &[(&str, String)]) {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn a_missing_database_plans_creates_exits_2_and_creates_nothing() {
        let db = tempfile::tempdir().unwrap();
        let db_path = db.path().join("keel.db");
        let out = keel(&[
            "plan",
            "--source",
            "examples-repo",
            "--db",
            db_path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        let text = stdout(&out);
        assert!(
            text.contains("+ create demo/web (docker, 2 replicas)\n"),
            "{text}"
        );
        assert!(
            text.contains("+ create demo/migrate (docker, job, 1 replica)\n"),
            "{text}"
        );
        assert!(
            text.contains("+ create demo/report (docker, cronjob */5 * * * *, 1 replica)\n"),
            "{text}"
        );
        assert!(
            text.contains("Plan: 6 to create, 0 to update, 0 to delete, 0 unchanged."),
            "{text}"
        );
        assert!(!db_path.exists(), "plan created the database");
    }

    #[test]
    fn updates_deletes_and_nothing_to_do() {
        let repo = tempfile::tempdir().unwrap();
        let db = tempfile::tempdir().unwrap();
        let db_path = db.path().join("keel.db");
        let web = support::deployment("demo", "web", "");
        let api = support::deployment("demo", "api", "");
        let old = support::deployment("demo", "old", "");
        let store = Store::open(&db_path).unwrap();
        keel::ingest::apply_revision(
            &store,
            support::revision("r1"),
            support::desired(&[("a.yaml", &web), ("b.yaml", &api), ("c.yaml", &old)]),
            support::at(0),
        )
        .unwrap();
        drop(store);

        let api_changed = api.replace("busybox:1.36", "busybox:1.37") + "    replicas: 2\n";
        manifests(
            repo.path(),
            &[("a.yaml", web.clone()), ("b.yaml", api_changed)],
        );
        let args = [
            "plan",
            "--source",
            repo.path().to_str().unwrap(),
            "--db",
            db_path.to_str().unwrap(),
        ];
        let out = keel(&args);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stdout(&out),
            "~ update demo/api: image, replicas\n- delete demo/old\nPlan: 0 to create, 1 to update, 1 to delete, 1 unchanged.\n"
        );

        let json = keel(&[&args[..], &["--format", "json"]].concat());
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(
            doc["counts"],
            serde_json::json!({"create": 0, "update": 1, "delete": 1, "unchanged": 1})
        );
        assert_eq!(
            doc["items"][0],
            serde_json::json!({"namespace": "demo", "name": "api", "action": "update", "changed": ["image", "replicas"]})
        );

        std::fs::remove_file(repo.path().join("b.yaml")).unwrap();
        manifests(repo.path(), &[("b.yaml", api), ("c.yaml", old)]);
        let out = keel(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert_eq!(stdout(&out), "No changes: 3 deployments up to date.\n");
    }

    #[test]
    fn invalid_manifests_exit_1_with_diagnostics() {
        let repo = tempfile::tempdir().unwrap();
        manifests(
            repo.path(),
            &[(
                "a.yaml",
                support::deployment("demo", "web", "    replica: 2\n"),
            )],
        );
        let out = keel(&[
            "plan",
            "--source",
            repo.path().to_str().unwrap(),
            "--db",
            "/nonexistent/keel.db",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        assert!(
            text.contains("a.yaml:6:5: deployments.web.replica: unknown field"),
            "{text}"
        );
        assert!(text.contains("nothing planned"), "{text}");
    }

    #[test]
    fn a_corrupt_database_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("keel.db");
        let junk = "not a database at all\n".repeat(100);
        std::fs::write(&db_path, &junk).unwrap();
        let out = keel(&[
            "plan",
            "--source",
            "examples-repo",
            "--db",
            db_path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(db_path.to_str().unwrap()) && err.contains("not a keel database"),
            "{err}"
        );
        assert!(std::fs::read_to_string(&db_path).unwrap() == junk);
    }
}

#[test]
fn a_redirected_agent_log_carries_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    // A socket path nothing listens on: the agent starts, its runtime stays unavailable.
    let socket = dir.path().join("docker.sock");
    std::fs::write(&socket, b"").unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"cli-log-test-{}\"\nstate_dir = {:?}\n\n[docker]\nsocket = {:?}\n",
            std::process::id(),
            dir.path().join("state"),
            socket
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--log", "debug", "agent", "--config"])
        .arg(&config)
        .arg("--source")
        .arg(&repo)
        .arg("--db")
        .arg(dir.path().join("keel.db"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let started = line.contains("keel agent started");
            if tx.send(line).is_err() || started {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        lines.push(line);
        if lines
            .last()
            .is_some_and(|l| l.contains("keel agent started"))
        {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("keel agent started")),
        "the agent did not start: {lines:?}"
    );
    let first_info = lines.iter().find(|l| l.contains(" INFO ")).unwrap();
    for field in [
        "keel agent starting",
        &format!("version={}", env!("CARGO_PKG_VERSION")),
        "source=",
        &format!("node=cli-log-test-{}", std::process::id()),
        "db=",
        "runtimes=docker",
    ] {
        assert!(
            first_info.contains(field),
            "{field:?} not in the first line: {first_info}"
        );
    }
    for line in &lines {
        assert!(
            !line.contains('\x1b'),
            "an escape code in a redirected log: {line:?}"
        );
    }
}

#[test]
fn validate_expands_variables_from_vars_files_and_names_an_undefined_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(
        repo.join("api.yaml"),
        "deployments:\n  api:\n    name: api\n    namespace: shop\n    image: \"${REGISTRY}/shop/api:$TAG\"\n    command: [sh, -c, \"echo $$HOME\"]\n",
    )
    .unwrap();
    let vars = dir.path().join("vars.env");
    std::fs::write(
        &vars,
        "# the registry\nREGISTRY=registry.example.com\nexport TAG=\"1.4\"\n",
    )
    .unwrap();
    let repo_arg = repo.to_str().unwrap();

    let expanded = keel(&["validate", repo_arg, "--vars", vars.to_str().unwrap()]);
    assert_eq!(expanded.status.code(), Some(0), "{}", stdout(&expanded));

    let literal = keel(&["validate", repo_arg]);
    let text = stdout(&literal);
    assert_eq!(literal.status.code(), Some(1), "{text}");
    assert!(
        text.contains("is not a valid image reference"),
        "without variables $ is taken literally: {text}"
    );

    std::fs::write(&vars, "REGISTRY=registry.example.com\n").unwrap();
    let undefined = keel(&["validate", repo_arg, "--vars", vars.to_str().unwrap()]);
    let text = stdout(&undefined);
    assert_eq!(undefined.status.code(), Some(1), "{text}");
    assert!(
        text.contains("api.yaml:5:12: deployments.api.image: undefined variable TAG"),
        "{text}"
    );
}

#[test]
fn validate_with_the_agents_config_boots_a_disk_only_microvm_from_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(
        repo.join("vm.yaml"),
        "deployments:\n  edge:\n    name: edge\n    namespace: demo\n    runtime: cloud-hypervisor\n    image: /var/lib/vm/edge.raw\n",
    )
    .unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        "[cloud_hypervisor]\nkernel = \"/var/lib/vm/vmlinux\"\n",
    )
    .unwrap();
    let repo_arg = repo.to_str().unwrap();

    let refused = keel(&["validate", repo_arg]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("or kernel or firmware under [cloud_hypervisor]"),
        "{}",
        stdout(&refused)
    );
    let accepted = keel(&["validate", repo_arg, "--config", config.to_str().unwrap()]);
    assert_eq!(accepted.status.code(), Some(0), "{}", stdout(&accepted));
}
