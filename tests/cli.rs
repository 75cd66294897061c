//! The `keel` binary as an operator and a CI job use it: exit codes, text and JSON output.

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
        stdout(&out).contains("valid — 4 deployments"),
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
