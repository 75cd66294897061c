//! PURE: Ring's `$VAR` / `${VAR}` in a revision, from the operator's variables (`[variables]`
//! in keel.toml, `keel validate --vars`), never from the repository. Applied to the YAML trees
//! after parsing and before decoding, to the fields Ring substitutes — a deployment's `name`,
//! `namespace`, `image`, `command` and plain `environment` values (never a `secretRef`) — so
//! each use keeps its own file, line and column for diagnostics.
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
            out.push_str(lookup(&braced[..end], vars)?);
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

/// The scalars of one deployment declaration (the map `decl`) that Ring substitutes.
pub fn substituted_scalars(doc: &Document, decl: NodeId) -> Vec<NodeId> {
    let mut out = Vec::new();
    for field in ["name", "namespace", "image"] {
        if let Some((_, value)) = doc.get(decl, field) {
            out.push(value);
        }
    }
    if let Some((_, command)) = doc.get(decl, "command") {
        match &doc.node(command).kind {
            NodeKind::Seq(items) => out.extend(items.iter().copied()),
            NodeKind::Scalar(_) => out.push(command),
            NodeKind::Map(_) => {}
        }
    }
    if let Some((_, environment)) = doc.get(decl, "environment") {
        if let NodeKind::Map(entries) = &doc.node(environment).kind {
            // A map value is a `{secretRef}`: never substituted.
            out.extend(entries.iter().map(|(_, v)| *v));
        }
    }
    out.retain(|id| matches!(doc.node(*id).kind, NodeKind::Scalar(_)));
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
