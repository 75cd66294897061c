//! The JSON Schema of the manifest format, generated from `model::manifest` by schemars.
//! `schemas/manifest.schema.json` is this output, checked in; `tests/schema_drift.rs` fails
//! when the two differ.

use crate::model::manifest::ManifestFile;

/// Where editors find the schema, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/manifest.schema.json";

/// The schema as pretty-printed JSON with a trailing newline — byte-for-byte the checked-in file.
pub fn manifest_schema_json() -> String {
    let mut schema = schemars::schema_for!(ManifestFile).to_value();
    for_editors(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a JSON Schema is plain JSON"); // invariant: serde_json::Value always serializes
    text.push('\n');
    text
}

/// What editors show on hover, made the field's own: descriptions soft-wrapped (an editor
/// renders each line break as a new paragraph), and an optional field's text, default and
/// examples repeated on each branch of its `anyOf` — yaml-language-server shows the branch a
/// value matches, which would otherwise be the referenced type's generic text. A property
/// without examples of its own takes its type's.
fn for_editors(schema: &mut serde_json::Value) {
    let examples: std::collections::BTreeMap<String, serde_json::Value> = schema
        .get("$defs")
        .and_then(|d| d.as_object())
        .into_iter()
        .flatten()
        .filter_map(|(name, def)| Some((format!("#/$defs/{name}"), def.get("examples")?.clone())))
        .collect();
    soft_wrap(schema);
    own_texts(schema, &examples);
}

fn soft_wrap(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v) {
                    ("description", serde_json::Value::String(text)) => {
                        *text = text
                            .split("\n\n")
                            .map(|paragraph| {
                                paragraph
                                    .split('\n')
                                    .map(str::trim)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    (_, v) => soft_wrap(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(soft_wrap),
        _ => {}
    }
}

fn own_texts(
    value: &mut serde_json::Value,
    examples: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(properties)) = map.get_mut("properties") {
                for property in properties.values_mut() {
                    own_property_text(property, examples);
                }
            }
            for v in map.values_mut() {
                own_texts(v, examples);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| own_texts(v, examples)),
        _ => {}
    }
}

fn own_property_text(
    property: &mut serde_json::Value,
    examples: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    let Some(map) = property.as_object_mut() else {
        return;
    };
    let reference = map
        .get("$ref")
        .and_then(|r| r.as_str())
        .map(str::to_owned)
        .or_else(|| {
            map.get("anyOf")?
                .as_array()?
                .iter()
                .find_map(|b| b.get("$ref")?.as_str().map(str::to_owned))
        });
    if !map.contains_key("examples") {
        if let Some(found) = reference.as_ref().and_then(|r| examples.get(r)) {
            map.insert("examples".to_owned(), found.clone());
        }
    }
    let own: Vec<(String, serde_json::Value)> = ["description", "default", "examples"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), map.get(k)?.clone())))
        .collect();
    if let Some(serde_json::Value::Array(branches)) = map.get_mut("anyOf") {
        for branch in branches.iter_mut().filter_map(|b| b.as_object_mut()) {
            // A `null` branch takes the text only: the default and examples are the type's.
            let typed = branch.contains_key("$ref");
            for (key, value) in own.iter().filter(|(k, _)| typed || k == "description") {
                branch.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
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
