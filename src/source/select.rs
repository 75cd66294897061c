//! Which paths of a repository are manifests: `.yaml`, `.yml` and `.json` files, not below a
//! dot-directory, not matched by the root's `.keelignore` (gitignore syntax). Shared by every
//! source so that a directory and a Git tree with the same content select the same files.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::model::snapshot::Rejection;

/// The name of the ignore file at the repository root.
pub const IGNORE_FILE: &str = ".keelignore";

/// Decides, from a root-relative `/`-separated path, whether it belongs to the revision.
pub struct Selector {
    ignore: Gitignore,
}

impl Selector {
    /// A selector with no ignore patterns.
    pub fn empty() -> Self {
        Self {
            ignore: Gitignore::empty(),
        }
    }

    /// Builds a selector from the content of `.keelignore`, with the problems of bad lines
    /// (the good lines still apply).
    pub fn from_ignore_file(text: &str) -> (Self, Vec<Rejection>) {
        let mut builder = GitignoreBuilder::new("");
        let mut problems = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if let Err(e) = builder.add_line(None, line) {
                problems.push(Rejection::BadIgnorePattern {
                    line: u32::try_from(index + 1).unwrap_or(u32::MAX),
                    message: e.to_string(),
                });
            }
        }
        let ignore = builder.build().unwrap_or_else(|e| {
            problems.push(Rejection::BadIgnorePattern {
                line: 0,
                message: e.to_string(),
            });
            Gitignore::empty()
        });
        (Self { ignore }, problems)
    }

    /// Whether the walk should enter directory `path`.
    pub fn enters_dir(&self, path: &str) -> bool {
        !is_hidden(path) && !self.ignore.matched(path, true).is_ignore()
    }

    /// Whether file `path` is a manifest of the revision.
    pub fn takes_file(&self, path: &str) -> bool {
        is_manifest_name(path)
            && !is_hidden(path)
            && !self
                .ignore
                .matched_path_or_any_parents(path, false)
                .is_ignore()
    }
}

/// Whether the name has a manifest extension.
pub fn is_manifest_name(path: &str) -> bool {
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Whether the last component of `path` starts with a dot.
fn is_hidden(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_file_patterns_and_dotfiles_are_skipped() {
        let (sel, problems) =
            Selector::from_ignore_file("# drafts\ndrafts/\n*.tmpl.yaml\n!keep.tmpl.yaml\n");
        assert!(problems.is_empty());
        assert!(sel.takes_file("apps/web.yaml"));
        assert!(sel.takes_file("apps/web.json"));
        assert!(!sel.takes_file("apps/README.md"));
        assert!(!sel.takes_file("apps/.hidden.yaml"));
        assert!(!sel.takes_file("apps/x.tmpl.yaml"));
        assert!(sel.takes_file("apps/keep.tmpl.yaml"));
        assert!(!sel.enters_dir("drafts"));
        assert!(!sel.takes_file("drafts/x.yaml"));
        assert!(!sel.enters_dir(".git"));
        assert!(sel.enters_dir("apps"));
    }
}
