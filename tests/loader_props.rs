//! The loader is total: arbitrary bytes, arbitrary YAML trees, and mutated real manifests
//! always give either a state or at least one error diagnostic — never a panic, never an
//! `Err` with nothing in it.

use keel::manifest::{self, Limits};
use keel::model::snapshot::SnapshotEntry;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// 300 per property in the default run; `KEEL_FUZZ_CASES` for a long campaign.
fn cases() -> u32 {
    std::env::var("KEEL_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300)
}

fn check(path: &str, bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let entries = [SnapshotEntry::File {
        path: path.to_owned(),
        bytes,
    }];
    match manifest::load(&entries, &Limits::default()) {
        Ok(loaded) => prop_assert!(loaded.warnings.iter().all(|d| !d.is_error())),
        Err(diags) => {
            prop_assert!(
                diags.iter().any(|d| d.is_error()),
                "rejected without an error: {diags:?}"
            );
            for d in &diags {
                prop_assert_eq!(&d.file, path);
                prop_assert!(!d.message.is_empty());
            }
        }
    }
    Ok(())
}

/// Words the manifest format knows, so random trees reach deep into the model.
const WORDS: &[&str] = &[
    "deployments",
    "namespaces",
    "configs",
    "name",
    "namespace",
    "image",
    "replicas",
    "kind",
    "job",
    "worker",
    "runtime",
    "docker",
    "cloud-hypervisor",
    "ports",
    "published",
    "target",
    "host_ip",
    "protocol",
    "udp",
    "health_checks",
    "type",
    "tcp",
    "http",
    "command",
    "url",
    "port",
    "interval",
    "timeout",
    "threshold",
    "readiness",
    "min_healthy_time",
    "volumes",
    "source",
    "destination",
    "key",
    "config",
    "secret",
    "bind",
    "volume",
    "environment",
    "secretRef",
    "labels",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "network",
    "mode",
    "host",
    "vm",
    "kernel",
    "firmware",
    "initramfs",
    "data",
    "web",
    "demo",
    "busybox:1.36",
    "10s",
    "500ms",
    "256Mi",
    "0.5",
    "http://localhost:80/",
    "/data",
    "on_failure",
    "restart",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..70000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Renders a tree as block-style YAML (JSON covers flow style).
fn block_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{}:", serde_json::to_string(k).unwrap()));
                nested(v, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&format!("{pad}-"));
                nested(v, indent, out);
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

fn nested(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block_yaml(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block_yaml(v, indent + 2, out);
        }
        scalar => out.push_str(&format!(" {scalar}\n")),
    }
}

const VALID: &str = include_str!("../examples-repo/apps/web.yaml");

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check("fuzz.yaml", bytes.clone())?;
        check("fuzz.json", bytes)?;
    }

    #[test]
    fn arbitrary_trees_never_panic(value in tree()) {
        check("tree.json", serde_json::to_vec(&value).unwrap())?;
        let mut yaml = String::new();
        block_yaml(&value, 0, &mut yaml);
        check("tree.yaml", yaml.into_bytes())?;
    }

    #[test]
    fn trees_under_a_deployment_never_panic(value in tree(), handle in word()) {
        let wrapped = serde_json::json!({"deployments": {handle: value}});
        check("wrapped.json", serde_json::to_vec(&wrapped).unwrap())?;
    }

    #[test]
    fn mutated_manifests_never_panic(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..3, any::<char>()), 1..8)
    ) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (at, op, ch) in edits {
            if text.is_empty() { break; }
            let i = at.index(text.len());
            match op {
                0 => { text.remove(i); }
                1 => text.insert(i, ch),
                _ => text[i] = ch,
            }
        }
        check("mutated.yaml", text.into_iter().collect::<String>().into_bytes())?;
    }
}
