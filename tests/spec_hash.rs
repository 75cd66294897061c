//! `spec_hash` fingerprints what a deployment means: reordering keys, reformatting, comments,
//! moving the declaration to another file or writing a default out do not change it; changing
//! any value (or the content of a config it mounts) does.

use keel::manifest::{self, Limits};
use keel::model::desired::{DeploymentId, SpecHash};
use keel::model::snapshot::SnapshotEntry;

fn hash_of(files: &[(&str, &str)]) -> SpecHash {
    let entries: Vec<_> = files
        .iter()
        .map(|(path, text)| SnapshotEntry::File {
            path: (*path).to_owned(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    let loaded = manifest::load(&entries, &Limits::default()).unwrap_or_else(|d| panic!("{d:#?}"));
    loaded.state.deployments[&DeploymentId::new("demo", "web")]
        .spec_hash
        .clone()
}

const BASE: &str = "\
deployments:
  web:
    name: web
    namespace: demo
    image: busybox:1.36
    replicas: 2
    environment:
      A: one
      B: two
    health_checks:
      - type: http
        url: http://localhost:8080/
        readiness: true
";

const CONFIG: &str =
    "configs:\n  c:\n    name: site\n    namespace: demo\n    data:\n      index.html: hello\n";

#[test]
fn reordered_keys_hash_the_same() {
    let reordered = "\
deployments:
  web:
    health_checks:
      - readiness: true
        url: http://localhost:8080/
        type: http
    environment:
      B: two
      A: one
    replicas: 2
    image: busybox:1.36
    namespace: demo
    name: web
";
    assert_eq!(
        hash_of(&[("a.yaml", BASE)]),
        hash_of(&[("a.yaml", reordered)])
    );
}

#[test]
fn formatting_comments_and_quoting_hash_the_same() {
    let reformatted = "\
# the web tier
deployments:
  web: {name: \"web\", namespace: 'demo', image: \"busybox:1.36\", replicas: 2,  # two of them
        environment: {A: one, B: \"two\"},
        health_checks: [{type: http, url: \"http://localhost:8080/\", readiness: yes_please_no}]}
"
    .replace("yes_please_no", "true");
    assert_eq!(
        hash_of(&[("a.yaml", BASE)]),
        hash_of(&[("a.yaml", &reformatted)])
    );
}

#[test]
fn json_and_yaml_of_the_same_spec_hash_the_same() {
    let json = r#"{"deployments": {"web": {"name": "web", "namespace": "demo", "image": "busybox:1.36",
        "replicas": 2, "environment": {"A": "one", "B": "two"},
        "health_checks": [{"type": "http", "url": "http://localhost:8080/", "readiness": true}]}}}"#;
    assert_eq!(hash_of(&[("a.yaml", BASE)]), hash_of(&[("a.json", json)]));
}

#[test]
fn moving_to_another_file_hashes_the_same() {
    let other = "deployments:\n  api:\n    name: api\n    namespace: demo\n    image: busybox\n";
    assert_eq!(
        hash_of(&[("apps/a.yaml", BASE), ("apps/b.yaml", other)]),
        hash_of(&[("apps/b.yaml", BASE), ("z/deeper/a.yaml", other)]),
    );
    // A different handle (the map key) is not part of the identity or the spec either.
    assert_eq!(
        hash_of(&[("a.yaml", BASE)]),
        hash_of(&[("a.yaml", &BASE.replace("  web:", "  frontend:"))])
    );
}

#[test]
fn writing_defaults_out_hashes_the_same() {
    let explicit = BASE.replace(
        "        readiness: true\n",
        "        readiness: true\n        interval: 10000ms\n        timeout: 5s\n        threshold: 3\n        on_failure: restart\n        min_healthy_time: 10s\n",
    ) + "    kind: worker\n    runtime: docker\n    config:\n      image_pull_policy: IfNotPresent\n    network:\n      mode: bridge\n";
    assert_eq!(
        hash_of(&[("a.yaml", BASE)]),
        hash_of(&[("a.yaml", &explicit)])
    );
}

#[test]
fn changing_any_value_changes_the_hash() {
    let base = hash_of(&[("a.yaml", BASE)]);
    for (from, to) in [
        ("busybox:1.36", "busybox:1.37"),
        ("replicas: 2", "replicas: 3"),
        ("A: one", "A: uno"),
        ("url: http://localhost:8080/", "url: http://localhost:8081/"),
        ("readiness: true", "readiness: false"),
    ] {
        let changed = BASE.replace(from, to);
        assert_ne!(
            base,
            hash_of(&[("a.yaml", &changed)]),
            "{from} → {to} kept the hash"
        );
    }
}

#[test]
fn changing_a_mounted_config_changes_the_hash() {
    let mounting = BASE.to_owned()
        + "    volumes:\n      - type: config\n        source: site\n        key: index.html\n        destination: /www/index.html\n";
    let before = hash_of(&[("c.yaml", CONFIG), ("a.yaml", &mounting)]);
    let edited = CONFIG.replace("hello", "hello, world");
    assert_ne!(
        before,
        hash_of(&[("c.yaml", &edited), ("a.yaml", &mounting)])
    );
}

#[test]
fn the_hash_is_sha256_hex() {
    let hash = hash_of(&[("a.yaml", BASE)]);
    assert_eq!(hash.as_str().len(), 64);
    assert!(hash
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn ring_volume_fields_that_change_nothing_hash_the_same() {
    let with = |fields: &str| {
        BASE.to_owned()
            + "    volumes:\n      - type: secret\n        source: db\n        destination: /run/db\n"
            + fields
            + "      - type: bind\n        source: /srv\n        destination: /srv\n"
            + &fields.replace("permission: ro", "permission: rw")
    };
    let plain = hash_of(&[("a.yaml", &with(""))]);
    let ring = hash_of(&[(
        "a.yaml",
        &with("        driver: local\n        permission: ro\n"),
    )]);
    assert_eq!(
        plain, ring,
        "driver: local and the default permission mean nothing more"
    );
}

/// A spec written before `permission` became optional keeps its hash: the canonical document
/// still writes `"permission": "rw"` for a volume that does not say (no upgrade rolls anything).
#[test]
fn an_unset_volume_permission_is_still_written_as_rw() {
    let text = BASE.replace("replicas: 2", "replicas: 1")
        + "    volumes:\n      - {type: volume, source: data, destination: /data}\n";
    let entries = vec![SnapshotEntry::File {
        path: "a.yaml".into(),
        bytes: text.into_bytes(),
    }];
    let loaded = manifest::load(&entries, &Limits::default()).unwrap();
    let canonical = loaded.state.deployments[&DeploymentId::new("demo", "web")].canonical();
    assert_eq!(canonical["spec"]["volumes"][0]["permission"], "rw");
}
