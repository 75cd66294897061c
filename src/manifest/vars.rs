//! PURE: Ring's `$VAR` / `${VAR}` in a revision, from the operator's variables (`[variables]`
//! in keel.toml, `keel validate --vars`), never from the repository. Applied to the YAML trees
//! after parsing and before decoding, to the fields Ring substitutes — a deployment's `name`,
//! `namespace`, `image`, `command` and plain `environment` values (never a `secretRef`) — so
//! each use keeps its own file, line and column for diagnostics. Each substituted value gets its
//! own node first: an alias shares its node with its other uses (a `secretRef` among them),
//! which must not change, and a value is expanded once, never again.
//!
//! Grammar: `$$` is a literal `$`; `${NAME}` and `$NAME` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) are
//! replaced; a `$` followed by anything else stays as written. An undefined name is an error
//! naming it; so is a `${` without its `}`.

use std::collections::BTreeMap;

use super::yaml::{Document, NodeId, NodeKind};

/// The operator's variables, by name.
pub type Variables = BTreeMap<String, String>;

/// Why one scalar could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Undefined(String),
    Unclosed,
    /// `${...}` around something that is not a variable name.
    NotAName(String),
}

/// `text` with every variable replaced, or the first problem found.
pub fn expand(text: &str, vars: &Variables) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or(Problem::Unclosed)?;
            let name = &braced[..end];
            if !is_name(name) {
                return Err(Problem::NotAName(name.to_owned()));
            }
            out.push_str(lookup(name, vars)?);
            rest = &braced[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(lookup(&after[..len], vars)?);
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(name: &str, vars: &'a Variables) -> Result<&'a str, Problem> {
    vars.get(name)
        .map(String::as_str)
        .ok_or_else(|| Problem::Undefined(name.to_owned()))
}

/// Whether `text` is a variable name: letters, digits and `_`, not starting with a digit.
pub fn is_name(text: &str) -> bool {
    !text.is_empty() && name_len(text) == text.len()
}

/// The length of the variable name at the start of `text` (0 when there is none).
fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Where a substituted value sits: slot `slot` of the map or sequence `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub parent: NodeId,
    pub slot: usize,
}

/// The slots of one deployment declaration (the map `decl`) that Ring substitutes, and the
/// containers they belong to (so that a container an alias shares is expanded once).
pub fn substituted_slots(doc: &Document, decl: NodeId) -> Vec<Slot> {
    let mut out = Vec::new();
    let NodeKind::Map(entries) = &doc.node(decl).kind else {
        return out;
    };
    for (index, (key, value)) in entries.iter().enumerate() {
        match doc.scalar_text(*key).unwrap_or_default() {
            "name" | "namespace" | "image" => out.push(Slot {
                parent: decl,
                slot: index,
            }),
            "command" => match &doc.node(*value).kind {
                NodeKind::Seq(items) => out.extend((0..items.len()).map(|slot| Slot {
                    parent: *value,
                    slot,
                })),
                NodeKind::Scalar(_) => out.push(Slot {
                    parent: decl,
                    slot: index,
                }),
                NodeKind::Map(_) => {}
            },
            "environment" => {
                // A map value is a `{secretRef}`: never substituted.
                if let NodeKind::Map(variables) = &doc.node(*value).kind {
                    out.extend((0..variables.len()).map(|slot| Slot {
                        parent: *value,
                        slot,
                    }));
                }
            }
            _ => {}
        }
    }
    out.retain(|s| {
        doc.child(s.parent, s.slot)
            .is_some_and(|id| matches!(doc.node(id).kind, NodeKind::Scalar(_)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_table() {
        let vars: Variables = [
            ("REGISTRY", "registry.example.com"),
            ("TAG", "1.4"),
            ("A_1", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // (behaviour, text, result)
        let rows: &[(&str, &str, Result<&str, Problem>)] = &[
            ("plain text is kept", "nginx:1.27", Ok("nginx:1.27")),
            (
                "braced",
                "${REGISTRY}/shop/api:${TAG}",
                Ok("registry.example.com/shop/api:1.4"),
            ),
            (
                "bare, ended by a non-name character",
                "$REGISTRY/api:$TAG",
                Ok("registry.example.com/api:1.4"),
            ),
            ("digits inside a name", "$A_1-b", Ok("x-b")),
            ("$$ is a literal dollar", "echo $$HOME", Ok("echo $HOME")),
            (
                "a dollar before a non-name stays",
                "costs 5$ or $5",
                Ok("costs 5$ or $5"),
            ),
            (
                "undefined, bare",
                "$HOME/x",
                Err(Problem::Undefined("HOME".into())),
            ),
            (
                "undefined, braced",
                "${NOPE}",
                Err(Problem::Undefined("NOPE".into())),
            ),
            ("unclosed brace", "${REGISTRY", Err(Problem::Unclosed)),
            (
                "an empty name",
                "${}",
                Err(Problem::NotAName(String::new())),
            ),
            ("not a name", "${A-B}", Err(Problem::NotAName("A-B".into()))),
        ];
        for (behaviour, text, expected) in rows {
            let got = expand(text, &vars);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                expected.clone(),
                "{behaviour}"
            );
        }
    }
}
