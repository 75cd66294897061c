//! The layering rules of DESIGN.md §2, checked by reading the source: the pure layers import no
//! I/O; the store depends only on the model; runtimes know nothing of policy, storage or
//! outputs; only `config` reads the environment; only `app` names concrete adapters; `config`
//! imports no adapter; only `cli`/`main`/`app` use anyhow; every module starts with a `//!`
//! doc.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The files of a module directory (or the one file `sub` names), with their text.
fn files_under(sub: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let root = src().join(sub);
    if root.is_file() {
        files.push(root);
    } else {
        rust_files(&root, &mut files);
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The text without comment lines (docs may name what the code must not use).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn pure_layers_do_no_io() {
    let forbidden = [
        "std::fs",
        "std::net::Tcp",
        "std::process",
        "tokio",
        "rusqlite",
        "bollard",
        "reqwest",
        "git2",
        "notify::",
        "std::env",
        "SystemTime::now",
        "Instant::now",
    ];
    for layer in ["model", "manifest"] {
        for (path, text) in files_under(layer) {
            let text = code(&text);
            for word in forbidden {
                assert!(
                    !text.contains(word),
                    "{} uses {word}: {layer} must stay pure",
                    path.display()
                );
            }
        }
    }
}

/// The top-level modules a file reaches through `crate::` paths (`crate::model::x` → `model`).
fn crate_modules(text: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !modules.contains(&name) {
            modules.push(name);
        }
    }
    modules
}

/// Fails when a file under `layer` reaches a top-level module outside `allowed`.
fn imports_only(layer: &str, allowed: &[&str]) {
    for (path, text) in files_under(layer) {
        for module in crate_modules(&code(&text)) {
            assert!(
                allowed.contains(&module.as_str()),
                "{} imports crate::{module}; {layer} may only use {allowed:?}",
                path.display()
            );
        }
    }
}

#[test]
fn the_store_depends_only_on_the_model() {
    imports_only("store", &["model", "store"]);
}

#[test]
fn config_produces_plain_settings_and_names_no_adapter() {
    // `manifest` lends the "did you mean" suggestion for unknown keys.
    imports_only("config.rs", &["model", "manifest", "config"]);
}

/// One exception, declared where clap parses: `--api` falls back to `KEEL_API` (clap's `env`
/// attribute shows it in `--help`). Any other variable is read by `config`.
#[test]
fn only_config_reads_the_environment() {
    for (path, text) in files_under("") {
        if path == src().join("config.rs") {
            continue;
        }
        let text = code(&text);
        for word in ["std::env::var", "env::var(", "env::vars", "env::var_os"] {
            assert!(
                !text.contains(word),
                "{} reads the environment ({word}); only config.rs does",
                path.display()
            );
        }
        let declared: Vec<&str> = text
            .match_indices("env = \"")
            .map(|(at, _)| text[at..].split('"').nth(1).unwrap_or_default())
            .collect();
        assert!(
            declared.iter().all(|name| *name == "KEEL_API"),
            "{} has clap read {declared:?}; only KEEL_API is read by clap, the rest by config.rs",
            path.display()
        );
    }
}

#[test]
fn only_app_names_concrete_adapters() {
    // Each adapter type, and the files that may name it: its own module, and the composition
    // root.
    let adapters = [
        ("DockerRuntime", "runtime/docker"),
        ("FakeRuntime", "runtime/fake.rs"),
        ("GitSource", "source/git.rs"),
        ("DirSource", "source/dir.rs"),
        ("CloudHypervisorRuntime", "runtime/cloud_hypervisor"),
    ];
    for (path, text) in files_under("") {
        if path == src().join("app.rs") {
            continue;
        }
        let text = code(&text);
        for (adapter, home) in adapters {
            if path.starts_with(src().join(home)) {
                continue;
            }
            assert!(
                !text.contains(adapter),
                "{} names the adapter {adapter}; only app.rs wires adapters",
                path.display()
            );
        }
    }
}

#[test]
fn only_the_store_has_sql() {
    for (path, text) in files_under("") {
        if path.starts_with(src().join("store")) {
            continue;
        }
        let text = code(&text);
        for word in ["rusqlite", "SELECT ", "INSERT INTO", "UPDATE "] {
            assert!(
                !text.contains(word),
                "{} contains {word:?}: SQL belongs in src/store",
                path.display()
            );
        }
    }
}

#[test]
fn pure_reconcile_files_import_only_the_model() {
    for (path, text) in files_under("reconcile") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if ["executor.rs", "controller.rs", "mirror.rs"].contains(&name.as_str()) {
            continue;
        }
        let text = code(&text);
        for line in text.lines().filter(|l| l.contains("crate::")) {
            assert!(
                line.contains("crate::model"),
                "{} imports beyond model: {line}",
                path.display()
            );
        }
        for word in [
            "std::fs",
            "tokio",
            "std::time::SystemTime",
            "Instant::now",
            "rand",
        ] {
            assert!(
                !text.contains(word),
                "{} uses {word}: the planner is pure",
                path.display()
            );
        }
    }
}

#[test]
fn runtimes_know_nothing_of_policy_storage_or_outputs() {
    for (path, text) in files_under("runtime") {
        let text = code(&text);
        for layer in [
            "crate::reconcile",
            "crate::store",
            "crate::api",
            "crate::notifier",
        ] {
            assert!(!text.contains(layer), "{} imports {layer}", path.display());
        }
    }
}

#[test]
fn probes_decide_nothing() {
    for (path, text) in files_under("probe") {
        let text = code(&text);
        for layer in ["crate::reconcile", "crate::store"] {
            assert!(!text.contains(layer), "{} imports {layer}", path.display());
        }
    }
}

#[test]
fn anyhow_only_at_the_edges() {
    for (path, text) in files_under("") {
        let name = path.file_name().unwrap().to_string_lossy();
        let in_cli = path.starts_with(src().join("cli"));
        if in_cli || ["main.rs", "cli.rs", "app.rs"].contains(&name.as_ref()) {
            continue;
        }
        assert!(
            !code(&text).contains("anyhow"),
            "{} uses anyhow; use the layer's thiserror enum",
            path.display()
        );
    }
}

#[test]
fn sources_never_parse_yaml() {
    for (path, text) in files_under("source") {
        let text = code(&text);
        assert!(
            !text.contains("yaml_rust2") && !text.contains("manifest::"),
            "{} parses manifests",
            path.display()
        );
    }
}

#[test]
fn every_module_has_a_doc_header() {
    for (path, text) in files_under("") {
        assert!(
            text.trim_start().starts_with("//!"),
            "{} lacks a //! module doc",
            path.display()
        );
    }
}
