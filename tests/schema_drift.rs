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

/// What an editor shows on hover is the field's own text: every property has a non-empty
/// description, soft-wrapped, and each branch of an optional field's `anyOf` carries it too
/// (yaml-language-server shows the branch a value matches).
#[test]
fn every_property_carries_its_own_soft_wrapped_text_on_every_branch() {
    let schema: serde_json::Value = serde_json::from_str(&manifest_schema_json()).unwrap();
    let mut problems = Vec::new();
    let mut defs: Vec<(&str, &serde_json::Value)> = vec![("(root)", &schema)];
    defs.extend(
        schema["$defs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v)),
    );
    for (def_name, def) in defs {
        for (prop, body) in def
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            let at = format!("{def_name}.{prop}");
            let Some(text) = body
                .get("description")
                .and_then(|d| d.as_str())
                .filter(|d| !d.trim().is_empty())
            else {
                problems.push(format!("{at}: no description"));
                continue;
            };
            if text.replace("\n\n", "").contains('\n') {
                problems.push(format!("{at}: a line break inside a paragraph"));
            }
            for branch in body
                .get("anyOf")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
            {
                if branch.get("description").and_then(|d| d.as_str()) != Some(text) {
                    problems.push(format!("{at}: a branch of anyOf without the field's text"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
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
