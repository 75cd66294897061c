//! One file's bytes → its declarations, each kept with the YAML tree it came from so that
//! later checks can still point at a line. Every problem becomes a `Diagnostic`; a bad
//! declaration is dropped but its siblings are still read, so one run reports them all.

use std::collections::HashSet;

use crate::model::diagnostic::{Diagnostic, Severity};
use crate::model::manifest::{ConfigDecl, DeploymentDecl, NamespaceDecl};

use super::de::{from_node, DeError, DeErrorKind};
use super::validate::{self, Finding, Seg};
use super::vars::{self, Variables};
use super::yaml::{self, Document, NodeId, NodeKind, YamlLimits};

/// The three top-level sections of a manifest file.
pub const SECTIONS: &[&str] = &["namespaces", "configs", "deployments"];

/// A declaration and where it lives.
pub struct Entry<T> {
    /// Index into `ParsedFile::docs`.
    pub doc: usize,
    /// The value node of the declaration.
    pub node: NodeId,
    /// `[section, key]`: the path of the declaration in its file.
    pub base: Vec<Seg>,
    pub value: T,
}

/// Everything read from one file.
pub struct ParsedFile {
    pub path: String,
    pub docs: Vec<Document>,
    pub namespaces: Vec<Entry<NamespaceDecl>>,
    pub configs: Vec<Entry<ConfigDecl>>,
    pub deployments: Vec<Entry<DeploymentDecl>>,
}

impl ParsedFile {
    /// A diagnostic at `at` below the declaration `entry`.
    pub fn diagnostic<T>(&self, entry: &Entry<T>, finding: Finding) -> Diagnostic {
        let doc = &self.docs[entry.doc];
        let node = locate(doc, entry.node, &finding.at);
        let mark = doc.node(node).mark;
        let mut path = entry.base.clone();
        path.extend(finding.at);
        Diagnostic {
            file: self.path.clone(),
            line: Some(mark.line),
            column: Some(mark.column),
            path: render_path(&path),
            severity: finding.severity,
            message: finding.message,
        }
    }

    /// The line a declaration starts on.
    pub fn line_of<T>(&self, entry: &Entry<T>) -> u32 {
        self.docs[entry.doc].node(entry.node).mark.line
    }
}

/// Parses `bytes` as the manifest file `path` (`.json` files hold one document, YAML files any
/// number), appending its problems to `out`.
pub fn parse_file(
    path: &str,
    bytes: &[u8],
    limits: YamlLimits,
    variables: Option<&Variables>,
    out: &mut Vec<Diagnostic>,
) -> ParsedFile {
    let mut file = ParsedFile {
        path: path.to_owned(),
        docs: Vec::new(),
        namespaces: Vec::new(),
        configs: Vec::new(),
        deployments: Vec::new(),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.strip_prefix('\u{feff}').unwrap_or(text),
        Err(e) => {
            out.push(file_error(
                path,
                format!(
                    "not valid UTF-8 (first bad byte at offset {})",
                    e.valid_up_to()
                ),
            ));
            return file;
        }
    };
    file.docs = match yaml::parse(text, limits) {
        Ok(docs) => docs,
        Err(e) => {
            let mark = e.mark();
            out.push(Diagnostic {
                file: path.to_owned(),
                line: Some(mark.line),
                column: Some(mark.column),
                path: String::new(),
                severity: Severity::Error,
                message: e.to_string(),
            });
            return file;
        }
    };
    if path.ends_with(".json") && file.docs.len() > 1 {
        out.push(file_error(
            path,
            "a .json file holds exactly one document".to_owned(),
        ));
        return file;
    }
    if let Some(variables) = variables {
        for doc in &mut file.docs {
            substitute(path, doc, variables, out);
        }
    }
    for index in 0..file.docs.len() {
        read_document(&mut file, index, out);
    }
    file
}

/// Expands the operator's variables in the deployments of `doc` (see `vars`), reporting each
/// undefined one where it is used.
fn substitute(path: &str, doc: &mut Document, variables: &Variables, out: &mut Vec<Diagnostic>) {
    let root = doc.root();
    let Some((_, deployments)) = doc.get(root, "deployments") else {
        return;
    };
    let decls: Vec<NodeId> = match &doc.node(deployments).kind {
        NodeKind::Map(entries) => entries.iter().map(|(_, v)| *v).collect(),
        NodeKind::Scalar(_) | NodeKind::Seq(_) => return,
    };
    // A declaration or a list an alias shares is expanded once: its slots then hold their
    // expanded values, which must not be expanded again.
    let mut seen = std::collections::HashSet::new();
    for decl in decls {
        let slots: Vec<vars::Slot> = vars::substituted_slots(doc, decl)
            .into_iter()
            .filter(|s| seen.insert((s.parent, s.slot)))
            .collect();
        for slot in slots {
            let Some(scalar) = doc.child(slot.parent, slot.slot) else {
                continue;
            };
            let Some(text) = doc.scalar_text(scalar) else {
                continue;
            };
            match vars::expand(text, variables) {
                Ok(expanded) if expanded == text => {}
                Ok(expanded) => doc.replace_with_string(slot.parent, slot.slot, expanded),
                Err(problem) => {
                    let message = match problem {
                        vars::Problem::Undefined(name) => format!("undefined variable {name}: define it in a file of [variables] in the agent's keel.toml (keel validate --vars FILE), or write $$ for a literal $"),
                        vars::Problem::Unclosed => "\"${\" without its closing \"}\"; write $$ for a literal $".to_owned(),
                        vars::Problem::NotAName(name) => format!("\"${{{name}}}\" is not a variable: a name is letters, digits and _, not starting with a digit; write $$ for a literal $"),
                    };
                    let mark = doc.node(scalar).mark;
                    out.push(Diagnostic {
                        file: path.to_owned(),
                        line: Some(mark.line),
                        column: Some(mark.column),
                        path: render_path(&path_to(doc, root, scalar).unwrap_or_default()),
                        severity: Severity::Error,
                        message,
                    });
                }
            }
        }
    }
}

/// An error about a whole file (no position).
pub fn file_error(path: &str, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_owned(),
        line: None,
        column: None,
        path: String::new(),
        severity: Severity::Error,
        message,
    }
}

fn read_document(file: &mut ParsedFile, index: usize, out: &mut Vec<Diagnostic>) {
    let doc = &file.docs[index];
    let root = doc.root();
    let error_at = |node: NodeId, path: Vec<Seg>, message: String| Diagnostic {
        file: file.path.clone(),
        line: Some(doc.node(node).mark.line),
        column: Some(doc.node(node).mark.column),
        path: render_path(&path),
        severity: Severity::Error,
        message,
    };
    if doc.is_null(root) {
        return;
    }
    let NodeKind::Map(sections) = &doc.node(root).kind else {
        out.push(error_at(
            root,
            vec![],
            "a manifest must be a mapping with the keys namespaces, configs and deployments"
                .to_owned(),
        ));
        return;
    };
    let mut namespaces = Vec::new();
    let mut configs = Vec::new();
    let mut deployments = Vec::new();
    for &(key, value) in sections {
        let name = doc.scalar_text(key).unwrap_or("");
        let section: &'static str = match SECTIONS.iter().find(|s| **s == name) {
            Some(s) => s,
            None => {
                let err = DeError {
                    node: Some(key),
                    kind: DeErrorKind::UnknownField {
                        field: name.to_owned(),
                        expected: SECTIONS,
                    },
                };
                out.push(error_at(
                    key,
                    vec![Seg::Key(name.to_owned())],
                    err.to_string(),
                ));
                continue;
            }
        };
        if doc.is_null(value) {
            continue;
        }
        let NodeKind::Map(entries) = &doc.node(value).kind else {
            out.push(error_at(
                value,
                vec![Seg::Key(section.to_owned())],
                format!("{section} must be a mapping of handle → declaration"),
            ));
            continue;
        };
        for &(entry_key, entry_value) in entries {
            let Some(handle) = doc.scalar_text(entry_key) else {
                out.push(error_at(
                    entry_key,
                    vec![Seg::Key(section.to_owned())],
                    "a handle must be a plain string".to_owned(),
                ));
                continue;
            };
            let base = vec![Seg::Key(section.to_owned()), Seg::Key(handle.to_owned())];
            let schema_type = match section {
                "namespaces" => "NamespaceDecl",
                "configs" => "ConfigDecl",
                _ => "DeploymentDecl",
            };
            missing_fields(file, index, entry_value, &base, schema_type, out);
            match section {
                "namespaces" => namespaces.extend(decode(file, index, entry_value, base, out)),
                "configs" => configs.extend(decode(file, index, entry_value, base, out)),
                _ => deployments.extend(decode(file, index, entry_value, base, out)),
            }
        }
    }
    file.namespaces.extend(namespaces);
    file.configs.extend(configs);
    file.deployments.extend(deployments);
}

/// Reports every required field a declaration lacks, at once (serde stops at the first);
/// `decode` then leaves those out. A field with a misspelt key is the unknown field's error.
fn missing_fields(
    file: &ParsedFile,
    index: usize,
    node: NodeId,
    base: &[Seg],
    schema_type: &str,
    out: &mut Vec<Diagnostic>,
) {
    let doc = &file.docs[index];
    let NodeKind::Map(entries) = &doc.node(node).kind else {
        return;
    };
    let keys: Vec<&str> = entries
        .iter()
        .filter_map(|(k, _)| doc.scalar_text(*k))
        .collect();
    let absent = |field: &str| {
        !keys.contains(&field) && !keys.iter().any(|k| super::nearest(k, &[field]).is_some())
    };
    let mut missing: Vec<String> = super::schema::required_fields(schema_type)
        .iter()
        .filter(|field| absent(field))
        .map(|field| format!("missing required field {field:?}"))
        .collect();
    // A docker deployment's image is checked once it decodes; when it cannot (a field above is
    // missing), it is named here with the rest.
    let docker = doc
        .get(node, "runtime")
        .and_then(|(_, v)| doc.scalar_text(v))
        .is_none_or(|runtime| runtime == "docker");
    if schema_type == "DeploymentDecl" && !missing.is_empty() && docker && absent("image") {
        missing.push(validate::MISSING_IMAGE.to_owned());
    }
    let mark = doc.node(node).mark;
    for message in missing {
        out.push(Diagnostic {
            file: file.path.clone(),
            line: Some(mark.line),
            column: Some(mark.column),
            path: render_path(base),
            severity: Severity::Error,
            message,
        });
    }
}

/// Deserializes one declaration. Each error is reported, then the map entry holding the bad
/// node is masked and decoding retried, so one pass finds every independent problem; the
/// partial value (when one results) still goes through the semantic checks. A declaration
/// that produced any error here is never applied: the error fails the whole revision.
fn decode<T: serde::de::DeserializeOwned>(
    file: &ParsedFile,
    index: usize,
    node: NodeId,
    base: Vec<Seg>,
    out: &mut Vec<Diagnostic>,
) -> Option<Entry<T>> {
    const MAX_ATTEMPTS: usize = 32;
    let doc = &file.docs[index];
    let mut masked = HashSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let err = match from_node::<T>(doc, node, &masked) {
            Ok(value) => {
                return Some(Entry {
                    doc: index,
                    node,
                    base,
                    value,
                })
            }
            Err(err) => err,
        };
        let at = err.node.unwrap_or(node);
        // A field missing from the declaration itself was reported by `missing_fields`.
        let reported = matches!(err.kind, DeErrorKind::MissingField(field) if at == node && doc.get(node, field).is_none());
        if !reported && !is_consequence_of_mask(doc, &err, at, &masked) {
            let mut path = base.clone();
            path.extend(path_to(doc, node, at).unwrap_or_default());
            let mark = doc.node(at).mark;
            out.push(Diagnostic {
                file: file.path.clone(),
                line: Some(mark.line),
                column: Some(mark.column),
                path: render_path(&path),
                severity: Severity::Error,
                message: err.to_string(),
            });
        }
        let innermost_entry = entry_keys_to(doc, node, at)
            .into_iter()
            .rev()
            .find(|key| !masked.contains(key));
        match innermost_entry {
            Some(key) => {
                masked.insert(key);
            }
            None => return None,
        }
    }
    None
}

/// A "missing field" error caused by masking that very field (or its misspelling) is not news.
fn is_consequence_of_mask(
    doc: &Document,
    err: &DeError,
    at: NodeId,
    masked: &HashSet<NodeId>,
) -> bool {
    let DeErrorKind::MissingField(field) = err.kind else {
        return false;
    };
    match &doc.node(at).kind {
        NodeKind::Map(entries) => entries
            .iter()
            .filter(|(k, _)| masked.contains(k))
            .filter_map(|(k, _)| doc.scalar_text(*k))
            // The masked key is the field itself, or a misspelling of it already reported.
            .any(|text| text == field || super::nearest(text, &[field]).is_some()),
        NodeKind::Scalar(_) | NodeKind::Seq(_) => false,
    }
}

/// The key nodes of the map entries on the way from `from` to `target`, outermost first.
fn entry_keys_to(doc: &Document, from: NodeId, target: NodeId) -> Vec<NodeId> {
    let mut stack = vec![(from, Vec::new())];
    while let Some((node, keys)) = stack.pop() {
        if node == target {
            return keys;
        }
        match &doc.node(node).kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => stack.extend(items.iter().map(|item| (*item, keys.clone()))),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    let mut with_key = keys.clone();
                    with_key.push(*k);
                    stack.push((*v, with_key.clone()));
                    stack.push((*k, with_key));
                }
            }
        }
    }
    Vec::new()
}

/// The node at `at` below `from`, or the deepest node of that path that exists.
fn locate(doc: &Document, from: NodeId, at: &[Seg]) -> NodeId {
    let mut node = from;
    for seg in at {
        let next = match seg {
            Seg::Key(key) => doc.get(node, key).map(|(_, value)| value),
            Seg::Index(i) => doc.item(node, *i),
        };
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    node
}

/// The field path from `from` down to `target` (a key node's path names its key).
fn path_to(doc: &Document, from: NodeId, target: NodeId) -> Option<Vec<Seg>> {
    let mut stack = vec![(from, Vec::new())];
    while let Some((node, path)) = stack.pop() {
        if node == target {
            return Some(path);
        }
        match &doc.node(node).kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    let mut p = path.clone();
                    p.push(Seg::Index(i));
                    stack.push((*item, p));
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries.iter().rev() {
                    let mut p = path.clone();
                    p.push(Seg::Key(doc.scalar_text(*k).unwrap_or("?").to_owned()));
                    stack.push((*v, p.clone()));
                    stack.push((*k, p));
                }
            }
        }
    }
    None
}

/// `deployments.web.ports[1].published`
pub fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}
