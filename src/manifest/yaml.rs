//! Text → positioned YAML trees, with hard bounds on nesting depth and alias expansion.
//!
//! Built on yaml-rust2's event parser (serde_yaml is archived and exposes no node positions).
//! Aliases are never copied: an alias points at the anchored node, so the tree is a DAG, and
//! each node knows how many nodes it stands for once expanded. A "billion laughs" document is
//! refused as soon as the expansion passes the limit — in time and memory linear in its text.
//! Scalars keep their source text; plain scalars are resolved with the YAML 1.2 core schema.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    fn from_marker(m: &Marker) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Mark {
            line: clamp(m.line()),
            column: clamp(m.col().saturating_add(1)),
        }
    }
}

/// Index of a node in its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(usize);

/// A node: its content and where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
    /// How many nodes this one stands for with aliases expanded (saturating).
    expanded: u64,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<NodeId>),
    Map(Vec<(NodeId, NodeId)>),
}

/// A scalar's source text and its resolved type.
#[derive(Debug, Clone)]
pub struct Scalar {
    pub text: String,
    pub value: ScalarValue,
}

/// A scalar resolved with the YAML 1.2 core schema (quoted and block scalars are strings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarValue {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 but within u64.
    UInt(u64),
    Float(f64),
    Str,
}

/// One YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    nodes: Vec<Node>,
    root: NodeId,
}

impl Document {
    pub fn root(&self) -> NodeId {
        self.root
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// The value of key `key` in mapping `map`, with the key node.
    pub fn get(&self, map: NodeId, key: &str) -> Option<(NodeId, NodeId)> {
        match &self.node(map).kind {
            NodeKind::Map(entries) => entries
                .iter()
                .copied()
                .find(|(k, _)| self.scalar_text(*k) == Some(key)),
            NodeKind::Scalar(_) | NodeKind::Seq(_) => None,
        }
    }

    /// The `index`th item of sequence `seq`.
    pub fn item(&self, seq: NodeId, index: usize) -> Option<NodeId> {
        match &self.node(seq).kind {
            NodeKind::Seq(items) => items.get(index).copied(),
            NodeKind::Scalar(_) | NodeKind::Map(_) => None,
        }
    }

    /// The value at `slot` of the map or sequence `parent`.
    pub fn child(&self, parent: NodeId, slot: usize) -> Option<NodeId> {
        match &self.node(parent).kind {
            NodeKind::Map(entries) => entries.get(slot).map(|(_, v)| *v),
            NodeKind::Seq(items) => items.get(slot).copied(),
            NodeKind::Scalar(_) => None,
        }
    }

    /// Puts the string `text` at `slot` of `parent` as a scalar of its own, at the position of
    /// the value it replaces: the node that was there, which an alias may share with other
    /// places, stays as it was.
    pub fn replace_with_string(&mut self, parent: NodeId, slot: usize, text: String) {
        let Some(old) = self.child(parent, slot) else {
            return;
        };
        let node = Node {
            kind: NodeKind::Scalar(Scalar {
                text,
                value: ScalarValue::Str,
            }),
            mark: self.node(old).mark,
            expanded: 1,
        };
        let id = NodeId(self.nodes.len());
        self.nodes.push(node);
        match &mut self.nodes[parent.0].kind {
            NodeKind::Map(entries) => entries[slot].1 = id,
            NodeKind::Seq(items) => items[slot] = id,
            NodeKind::Scalar(_) => {}
        }
    }

    pub fn scalar_text(&self, id: NodeId) -> Option<&str> {
        match &self.node(id).kind {
            NodeKind::Scalar(s) => Some(&s.text),
            NodeKind::Seq(_) | NodeKind::Map(_) => None,
        }
    }

    pub fn is_null(&self, id: NodeId) -> bool {
        matches!(&self.node(id).kind, NodeKind::Scalar(s) if s.value == ScalarValue::Null)
    }
}

/// Bounds on what one file may ask of the parser. Size and aliases are counted apart: a large
/// document without aliases is only large, and an alias bomb is refused however small its
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// Deepest nesting of collections.
    pub max_depth: usize,
    /// Most nodes (scalars, sequences, maps) one document may hold, as written
    /// (`max_document_nodes`).
    pub max_document_nodes: u64,
    /// Most nodes aliases may add to one document when expanded (`max_alias_nodes`).
    pub max_alias_nodes: u64,
}

impl Default for YamlLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_document_nodes: 2_000_000,
            max_alias_nodes: 100_000,
        }
    }
}

/// Why a YAML text could not become trees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {message}")]
    Syntax { mark: Mark, message: String },
    #[error("nesting deeper than {limit} levels")]
    TooDeep { mark: Mark, limit: usize },
    #[error("aliases expand to more than {limit} nodes (max_alias_nodes; an alias bomb such as \"billion laughs\"?); write the values out or use fewer aliases")]
    AliasExpansion { mark: Mark, limit: u64 },
    #[error("the document has more than {limit} nodes (max_document_nodes); split it into several files")]
    TooManyNodes { mark: Mark, limit: u64 },
    #[error("alias to an unknown or enclosing anchor")]
    BadAlias { mark: Mark },
    #[error("duplicate key {key:?} (first at line {first_line})")]
    DuplicateKey {
        mark: Mark,
        key: String,
        first_line: u32,
    },
}

impl YamlError {
    pub fn mark(&self) -> Mark {
        match self {
            YamlError::Syntax { mark, .. }
            | YamlError::TooDeep { mark, .. }
            | YamlError::AliasExpansion { mark, .. }
            | YamlError::TooManyNodes { mark, .. }
            | YamlError::BadAlias { mark }
            | YamlError::DuplicateKey { mark, .. } => *mark,
        }
    }
}

/// An open collection while its children are being read.
enum Open {
    Seq {
        start: Mark,
        anchor: usize,
        items: Vec<NodeId>,
    },
    Map {
        start: Mark,
        anchor: usize,
        entries: Vec<(NodeId, NodeId)>,
        pending_key: Option<NodeId>,
    },
}

struct Builder {
    limits: YamlLimits,
    /// Nodes aliases added to the current document so far.
    aliased: u64,
    nodes: Vec<Node>,
    anchors: Vec<(usize, NodeId)>,
    stack: Vec<Open>,
    docs: Vec<Document>,
}

/// Parses every document of `text`.
pub fn parse(text: &str, limits: YamlLimits) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        limits,
        aliased: 0,
        nodes: Vec::new(),
        anchors: Vec::new(),
        stack: Vec::new(),
        docs: Vec::new(),
    };
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError::Syntax {
            mark: Mark::from_marker(e.marker()),
            message: e.info().to_owned(),
        })?;
        let mark = Mark::from_marker(&marker);
        match event {
            Event::StreamEnd => return Ok(b.docs),
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => b.anchors.clear(),
            Event::Alias(anchor) => b.alias(anchor, mark)?,
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve(&text, style, tag.as_ref().map(|t| t.suffix.as_str()));
                b.finish(NodeKind::Scalar(Scalar { text, value }), mark, anchor)?;
            }
            Event::SequenceStart(anchor, _) => b.open(
                Open::Seq {
                    start: mark,
                    anchor,
                    items: Vec::new(),
                },
                mark,
            )?,
            Event::MappingStart(anchor, _) => b.open(
                Open::Map {
                    start: mark,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                },
                mark,
            )?,
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
        }
    }
}

impl Builder {
    fn open(&mut self, open: Open, mark: Mark) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(YamlError::TooDeep {
                mark,
                limit: self.limits.max_depth,
            });
        }
        self.stack.push(open);
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(open) = self.stack.pop() else {
            // The parser balances start/end events; an unmatched end is ignored.
            return Ok(());
        };
        match open {
            Open::Seq {
                start,
                anchor,
                items,
            } => self.finish(NodeKind::Seq(items), start, anchor),
            Open::Map {
                start,
                anchor,
                entries,
                ..
            } => {
                self.check_duplicate_keys(&entries)?;
                // A block mapping's start event is reported after its first key; the mapping
                // starts where that key does.
                let first_key = entries.first().map(|(k, _)| self.nodes[k.0].mark);
                let start = first_key.map_or(start, |k| k.min(start));
                self.finish(NodeKind::Map(entries), start, anchor)
            }
        }
    }

    fn check_duplicate_keys(&self, entries: &[(NodeId, NodeId)]) -> Result<(), YamlError> {
        let mut seen: std::collections::HashMap<&str, Mark> = std::collections::HashMap::new();
        for (key, _) in entries {
            let node = &self.nodes[key.0];
            if let NodeKind::Scalar(s) = &node.kind {
                if let Some(first) = seen.insert(&s.text, node.mark) {
                    return Err(YamlError::DuplicateKey {
                        mark: node.mark,
                        key: s.text.clone(),
                        first_line: first.line,
                    });
                }
            }
        }
        Ok(())
    }

    fn alias(&mut self, anchor: usize, mark: Mark) -> Result<(), YamlError> {
        let target = self
            .anchors
            .iter()
            .rev()
            .find(|(a, _)| *a == anchor)
            .map(|(_, id)| *id)
            .ok_or(YamlError::BadAlias { mark })?;
        self.aliased = self.aliased.saturating_add(self.nodes[target.0].expanded);
        if self.aliased > self.limits.max_alias_nodes {
            return Err(YamlError::AliasExpansion {
                mark,
                limit: self.limits.max_alias_nodes,
            });
        }
        self.attach(target)
    }

    fn finish(&mut self, kind: NodeKind, mark: Mark, anchor: usize) -> Result<(), YamlError> {
        let children_expanded = match &kind {
            NodeKind::Scalar(_) => 0,
            NodeKind::Seq(items) => items
                .iter()
                .fold(0u64, |n, id| n.saturating_add(self.nodes[id.0].expanded)),
            NodeKind::Map(entries) => entries.iter().fold(0u64, |n, (k, v)| {
                n.saturating_add(self.nodes[k.0].expanded)
                    .saturating_add(self.nodes[v.0].expanded)
            }),
        };
        let id = NodeId(self.nodes.len());
        if self.nodes.len() as u64 >= self.limits.max_document_nodes {
            return Err(YamlError::TooManyNodes {
                mark,
                limit: self.limits.max_document_nodes,
            });
        }
        self.nodes.push(Node {
            kind,
            mark,
            expanded: children_expanded.saturating_add(1),
        });
        if anchor != 0 {
            self.anchors.push((anchor, id));
        }
        self.attach(id)
    }

    /// Adds a finished node (or an alias to one) to the open collection, or ends the document.
    fn attach(&mut self, id: NodeId) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.aliased = 0;
                self.docs.push(Document {
                    nodes: std::mem::take(&mut self.nodes),
                    root: id,
                });
            }
            Some(Open::Seq { items, .. }) => items.push(id),
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(id),
                Some(key) => entries.push((key, id)),
            },
        }
        Ok(())
    }
}

/// YAML 1.2 core schema resolution for plain scalars; explicit `!!str`/`!!int`/… tags win.
fn resolve(text: &str, style: TScalarStyle, tag: Option<&str>) -> ScalarValue {
    match tag {
        Some("str") => return ScalarValue::Str,
        Some("null") => return ScalarValue::Null,
        _ => {}
    }
    if style != TScalarStyle::Plain && tag.is_none() {
        return ScalarValue::Str;
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarValue::Null,
        "true" | "True" | "TRUE" => return ScalarValue::Bool(true),
        "false" | "False" | "FALSE" => return ScalarValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarValue::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(v) = resolve_int(text) {
        return v;
    }
    if looks_like_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return ScalarValue::Float(f);
        }
    }
    ScalarValue::Str
}

fn resolve_int(text: &str) -> Option<ScalarValue> {
    let (radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (8, oct)
    } else {
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return match text.parse::<i64>() {
            Ok(v) => Some(ScalarValue::Int(v)),
            Err(_) => text
                .strip_prefix('+')
                .unwrap_or(text)
                .parse::<u64>()
                .ok()
                .map(ScalarValue::UInt),
        };
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .map(|v| i64::try_from(v).map_or(ScalarValue::UInt(v), ScalarValue::Int))
}

/// `[-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn looks_like_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = (!whole.is_empty() || !frac.is_empty()) && digits(whole) && digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Document {
        let mut docs = parse(text, YamlLimits::default()).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn scalars_resolve_with_the_core_schema() {
        let doc = one("[1, -2, 0x1F, 1.5, true, ~, '3', abc, 18446744073709551615, .inf, 1e3]");
        let NodeKind::Seq(items) = &doc.node(doc.root()).kind else {
            panic!("not a sequence")
        };
        let values: Vec<_> = items
            .iter()
            .map(|id| match &doc.node(*id).kind {
                NodeKind::Scalar(s) => s.value,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            vec![
                ScalarValue::Int(1),
                ScalarValue::Int(-2),
                ScalarValue::Int(31),
                ScalarValue::Float(1.5),
                ScalarValue::Bool(true),
                ScalarValue::Null,
                ScalarValue::Str,
                ScalarValue::Str,
                ScalarValue::UInt(u64::MAX),
                ScalarValue::Float(f64::INFINITY),
                ScalarValue::Float(1000.0),
            ]
        );
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = one("a:\n  b: [x, y]\n  c: 1\n");
        let (_, a) = doc.get(doc.root(), "a").unwrap();
        let (bk, b) = doc.get(a, "b").unwrap();
        assert_eq!(doc.node(bk).mark, Mark { line: 2, column: 3 });
        let y = doc.item(b, 1).unwrap();
        assert_eq!(
            doc.node(y).mark,
            Mark {
                line: 2,
                column: 10
            }
        );
    }

    #[test]
    fn aliases_share_nodes_and_count_their_expansion() {
        let doc = one("base: &b {x: 1, y: 2}\nother: *b\n");
        let (_, base) = doc.get(doc.root(), "base").unwrap();
        let (_, other) = doc.get(doc.root(), "other").unwrap();
        assert_eq!(base, other);
        assert_eq!(doc.node(doc.root()).expanded, 1 + 2 + 5 + 5);
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text, YamlLimits::default()).unwrap_err();
        assert!(matches!(err, YamlError::AliasExpansion { .. }), "{err:?}");
    }

    #[test]
    fn a_large_document_without_aliases_is_no_alias_bomb() {
        let text: String = (0..60_000).map(|i| format!("k{i}: [a, b]\n")).collect();
        let docs = parse(&text, YamlLimits::default()).unwrap();
        assert!(docs[0].node(docs[0].root()).expanded > 100_000);
    }

    #[test]
    fn document_size_and_alias_expansion_have_their_own_limits() {
        let limits = YamlLimits {
            max_document_nodes: 10,
            ..YamlLimits::default()
        };
        let err = parse("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n", limits).unwrap_err();
        assert!(
            matches!(err, YamlError::TooManyNodes { limit: 10, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_document_nodes"), "{err}");
        let limits = YamlLimits {
            max_alias_nodes: 5,
            ..YamlLimits::default()
        };
        let err = parse("a: &a [1, 2, 3]\nb: *a\nc: *a\n", limits).unwrap_err();
        assert!(
            matches!(err, YamlError::AliasExpansion { limit: 5, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_alias_nodes"), "{err}");
        assert!(
            parse("a: &a [1, 2, 3]\nb: *a\n", limits).is_ok(),
            "4 aliased nodes fit"
        );
        // The count starts again with each document.
        assert!(parse(
            "a: &a [1, 2, 3]\nb: *a\n---\na: &a [1, 2, 3]\nb: *a\n",
            limits
        )
        .is_ok());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse(&text, YamlLimits::default()).unwrap_err();
        assert!(
            matches!(err, YamlError::TooDeep { limit: 64, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let text: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let err = parse(&text, YamlLimits::default()).unwrap_err();
        assert!(
            matches!(err, YamlError::TooDeep { limit: 64, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\nb: 2\na: 3\n", YamlLimits::default()).unwrap_err();
        assert_eq!(
            err,
            YamlError::DuplicateKey {
                mark: Mark { line: 3, column: 1 },
                key: "a".into(),
                first_line: 1
            }
        );
    }

    #[test]
    fn multiple_documents_are_separate() {
        let docs = parse("a: 1\n---\nb: &x 2\n---\nc: 3\n", YamlLimits::default()).unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs[2].get(docs[2].root(), "c").is_some());
    }
}
