//! A small JSON Schema (2020-12) checker for the subset schemars emits: `$ref` into the
//! document, `type` (single or list), `properties`, `required`, `additionalProperties`,
//! `items`, `enum`, `const`, `oneOf`, `anyOf`, `allOf`. Enough to prove that responses match
//! the OpenAPI document; not a general validator.
#![allow(dead_code)]

use serde_json::Value;

/// Every mismatch of `value` against `schema`, with its JSON path.
pub fn check(document: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(document, schema, value, "$", &mut errors);
    errors
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(
                document,
                document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}")),
            )
        }
        None => schema,
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type {other}"),
    }
}

fn walk(document: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = resolve(document, schema);
    if schema == &Value::Bool(true) {
        return;
    }
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !kinds.iter().any(|k| type_matches(k, value)) {
            errors.push(format!("{path}: expected {kinds:?}, found {value}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{path}: {value} is not one of {options:?}"));
        }
    }
    if let Some(expected) = schema.get("const") {
        if expected != value {
            errors.push(format!("{path}: expected {expected}, found {value}"));
        }
    }
    for (key, need_all) in [("oneOf", false), ("anyOf", false), ("allOf", true)] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let results: Vec<Vec<String>> =
                options.iter().map(|o| check(document, o, value)).collect();
            let ok = if need_all {
                results.iter().all(Vec::is_empty)
            } else {
                results.iter().any(Vec::is_empty)
            };
            if !ok {
                errors.push(format!("{path}: does not match {key}: {results:?}"));
            }
        }
    }
    if let (Some(object), true) = (
        value.as_object(),
        schema.get("properties").is_some()
            || schema.get("required").is_some()
            || schema.get("additionalProperties").is_some(),
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                errors.push(format!("{path}: missing required {name}"));
            }
        }
        for (name, item) in object {
            let child = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => walk(document, sub, item, &child, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{child}: not allowed")),
                    Some(sub @ Value::Object(_)) => walk(document, sub, item, &child, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            walk(document, items, item, &format!("{path}[{i}]"), errors);
        }
    }
}

/// Checks every queued notification of the store `reader` reads, as the notifier would send
/// it, against its webhook's schema in the OpenAPI document; the types seen.
pub fn outbox_matches_webhook_schemas(
    reader: &keel::store::StoreReader,
) -> std::collections::BTreeSet<String> {
    let doc = keel::api::openapi::document();
    let mut seen = std::collections::BTreeSet::new();
    for row in reader.outbox().unwrap() {
        let body = serde_json::json!({
            "type": row.kind.as_str(),
            "timestamp": row.created_at.to_rfc3339(),
            "data": row.payload,
        });
        let schema = &doc["webhooks"][row.kind.as_str()]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        let errors = check(&doc, schema, &body);
        assert!(errors.is_empty(), "{}: {errors:?}\n{body}", row.kind);
        seen.insert(row.kind.as_str().to_owned());
    }
    seen
}
