//! Ring's manifests, as Ring's reference and examples write them (`tests/fixtures/ring`): each
//! supported feature validates with keel's loader — against the fixtures' keel.toml, which
//! holds the boot defaults Ring takes from its server configuration — and with the JSON
//! Schema; each file of `tests/fixtures/ring-refused` is refused with its own message (its
//! first line).

mod support;

use std::path::{Path, PathBuf};

use keel::config::AgentConfig;
use keel::manifest::{self, Limits};
use keel::model::snapshot::SnapshotEntry;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ring")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(
    path: &Path,
    limits: &Limits,
) -> Result<manifest::Loaded, Vec<keel::model::diagnostic::Diagnostic>> {
    let entry = SnapshotEntry::File {
        path: path.file_name().unwrap().to_string_lossy().into_owned(),
        bytes: std::fs::read(path).unwrap(),
    };
    manifest::load(&[entry], limits)
}

/// YAML as JSON, for the schema check.
fn json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), json(v)))
                .collect(),
        ),
        Yaml::Array(items) => Value::Array(items.iter().map(json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::from(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

#[test]
fn every_ring_fixture_validates_with_keel_and_with_the_schema() {
    let limits = AgentConfig::from_file(&fixtures().join("keel.toml"))
        .unwrap()
        .manifest_limits()
        .unwrap();
    let schema: Value =
        serde_json::from_str(&keel::manifest::schema::manifest_schema_json()).unwrap();
    let files = yaml_files(&fixtures());
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        if let Err(diagnostics) = load(&path, &limits) {
            panic!("{} is refused: {diagnostics:#?}", path.display());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let document = json(&YamlLoader::load_from_str(&text).unwrap()[0]);
        let errors = support::schema::check(&schema, &schema, &document);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn the_microvm_fixture_needs_the_operators_boot_defaults() {
    let refused = load(&fixtures().join("microvm.yaml"), &Limits::default()).unwrap_err();
    let messages: Vec<String> = refused.iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("vm.kernel or vm.firmware in the manifest")
                && m.contains("[cloud_hypervisor]")),
        "{messages:#?}"
    );
}

#[test]
fn every_unsupported_ring_feature_is_refused_with_its_own_message() {
    let files = yaml_files(&fixtures().with_file_name("ring-refused"));
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .to_owned();
        let refused = match load(&path, &Limits::default()) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(diagnostics) => diagnostics,
        };
        let messages: Vec<String> = refused.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.contains(&expected)),
            "{}: expected {expected:?} in {messages:#?}",
            path.display()
        );
    }
}

#[test]
fn the_variables_fixture_takes_its_values_from_the_operators_file_not_the_repository() {
    let limits = AgentConfig::from_file(&fixtures().join("keel.toml"))
        .unwrap()
        .manifest_limits()
        .unwrap();
    let loaded = load(&fixtures().join("variables.yaml"), &limits).unwrap();
    let api = loaded
        .state
        .deployments
        .values()
        .next()
        .expect("one deployment");
    assert_eq!(api.id.name, "api-prod");
    assert_eq!(
        api.spec.image.as_deref(),
        Some("registry.example.com/shop/api:1.4.2")
    );
    assert_eq!(api.spec.command[2], "exec api --stage prod --home $HOME");
    let secret = serde_json::to_value(&api.spec.environment["DB_PASSWORD"]).unwrap();
    assert_eq!(secret["secretRef"], "api-db-password");
}

#[test]
fn keel_validate_accepts_the_ring_fixtures_as_one_repository_with_the_agents_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "validate",
            "tests/fixtures/ring",
            "--config",
            "tests/fixtures/ring/keel.toml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("valid —"), "{text}");
    // Refused one by one, each with its own message, by the binary too.
    for path in yaml_files(&fixtures().with_file_name("ring-refused")) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&path, dir.path().join("app.yaml")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["validate", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let first = std::fs::read_to_string(&path).unwrap();
        let expected = first.lines().next().unwrap().trim_start_matches("# ");
        assert_eq!(out.status.code(), Some(1), "{}: {text}", path.display());
        assert!(text.contains(expected), "{}: {text}", path.display());
    }
}
