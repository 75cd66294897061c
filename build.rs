//! Records which commit the binary is built from, as `KEEL_BUILD` (`keel version`, the agent's
//! first log line and `GET /v1/version` show it): `$KEEL_BUILD` when the builder sets it (a
//! container build has no `.git`), else the short commit of the Git checkout this crate is the
//! root of, else `unknown` (a tarball, or a crate inside someone else's repository).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KEEL_BUILD");
    if let Some(pinned) = std::env::var("KEEL_BUILD")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        println!("cargo:rustc-env=KEEL_BUILD={}", pinned.trim());
        return;
    }
    let ours = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| same(Path::new(&top), Path::new(env!("CARGO_MANIFEST_DIR"))));
    let commit = ours
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten();
    println!(
        "cargo:rustc-env=KEEL_BUILD={}",
        commit.as_deref().unwrap_or("unknown")
    );
    if ours {
        watch_head();
    }
}

/// Builds again when HEAD moves: a checkout changes HEAD, a commit the branch it names (a
/// loose ref, or `packed-refs` after a `git gc`). Only existing paths: cargo reruns a build
/// script on every build for a missing one.
fn watch_head() {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    paths.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in paths
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
    {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn same(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    real(a) == real(b)
}

/// A git command's first line of output, run in the crate's directory.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (output.status.success() && !line.is_empty()).then_some(line)
}
