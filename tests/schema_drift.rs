//! `schemas/manifest.schema.json` must be exactly what `keel schema` prints, and every example
//! manifest must point its editor at that file with a path that resolves from its folder.

use std::path::{Path, PathBuf};

use keel::manifest::schema::{manifest_schema_json, SCHEMA_PATH};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_schema_matches_the_code() {
    let checked_in = std::fs::read_to_string(root().join(SCHEMA_PATH)).unwrap_or_default();
    assert!(
        checked_in == manifest_schema_json(),
        "{SCHEMA_PATH} is out of date with src/model/manifest.rs.\n\
         Regenerate it with:\n\n    cargo run -- schema > {SCHEMA_PATH}\n\nand commit the result."
    );
}

#[test]
fn schema_documents_every_property() {
    let schema: serde_json::Value = serde_json::from_str(&manifest_schema_json()).unwrap();
    let mut undocumented = Vec::new();
    for (def_name, def) in schema["$defs"].as_object().unwrap() {
        for (prop, body) in def
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            if body.get("description").is_none() {
                undocumented.push(format!("{def_name}.{prop}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "fields without a /// doc: {undocumented:?}"
    );
}

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            manifests(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_points_at_the_schema() {
    let mut files = Vec::new();
    manifests(&root().join("examples-repo"), &mut files);
    assert!(
        files.len() >= 5,
        "examples-repo has too few manifests: {files:?}"
    );
    let schema = std::fs::canonicalize(root().join(SCHEMA_PATH)).unwrap();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be the yaml-language-server $schema comment",
                    file.display()
                )
            });
        let target = std::fs::canonicalize(file.parent().unwrap().join(rel));
        assert_eq!(
            target.ok().as_ref(),
            Some(&schema),
            "{}: $schema path {rel} does not resolve to {SCHEMA_PATH}",
            file.display()
        );
    }
}
