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

/// What the schema knows of each of its types, for messages in the user's words: the values an
/// enum takes, whether it is a mapping, and a mapping's required fields. Built once, from the
/// schema itself, so the words never drift from the types.
struct Words {
    values: std::collections::BTreeMap<String, Vec<String>>,
    mappings: std::collections::BTreeSet<String>,
    required: std::collections::BTreeMap<String, Vec<String>>,
}

fn words() -> &'static Words {
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let schema = serde_json::to_value(schemars::schema_for!(ManifestFile)).unwrap_or_default();
        let mut words = Words {
            values: Default::default(),
            mappings: Default::default(),
            required: Default::default(),
        };
        let defs = schema.get("$defs").and_then(|d| d.as_object());
        for (name, def) in defs.into_iter().flatten() {
            let consts: Vec<String> = def
                .get("oneOf")
                .or_else(|| def.get("anyOf"))
                .and_then(|v| v.as_array())
                .map(|variants| {
                    variants
                        .iter()
                        .filter_map(|v| v.get("const").and_then(|c| c.as_str()).map(str::to_owned))
                        .collect()
                })
                .or_else(|| {
                    def.get("enum").and_then(|e| e.as_array()).map(|values| {
                        values
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default();
            if !consts.is_empty() {
                words.values.insert(name.clone(), consts);
            }
            if def.get("type").and_then(|t| t.as_str()) == Some("object") {
                words.mappings.insert(name.clone());
            }
            if let Some(required) = def.get("required").and_then(|r| r.as_array()) {
                let fields = required
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect();
                words.required.insert(name.clone(), fields);
            }
        }
        words
    })
}

/// serde's name for an expected type (`enum WorkloadKind`, `struct Network`) in the user's
/// words (`one of worker, job`, `a mapping`); `None` for a name the schema does not know.
pub fn expected_words(serde_text: &str) -> Option<String> {
    let (kind, name) = serde_text.split_once(' ')?;
    let words = words();
    match kind {
        "enum" => words
            .values
            .get(name)
            .map(|values| format!("one of {}", values.join(", "))),
        "struct" => words
            .mappings
            .contains(name)
            .then(|| "a mapping".to_owned()),
        _ => None,
    }
}

/// The fields a declaration of schema type `name` must have.
pub fn required_fields(name: &str) -> &'static [String] {
    words().required.get(name).map_or(&[], Vec::as_slice)
}
