//! The JSON Schema of the manifest format, generated from `model::manifest` by schemars.
//! `schemas/manifest.schema.json` is this output, checked in; `tests/schema_drift.rs` fails
//! when the two differ.

use crate::model::manifest::ManifestFile;

/// Where editors find the schema, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/manifest.schema.json";

/// The schema as pretty-printed JSON with a trailing newline — byte-for-byte the checked-in file.
pub fn manifest_schema_json() -> String {
    let schema = schemars::schema_for!(ManifestFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("a JSON Schema is plain JSON"); // invariant: serde_json::Value always serializes
    text.push('\n');
    text
}
