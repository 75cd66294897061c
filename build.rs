//! Records which commit the binary is built from, as `KEEL_BUILD` (`keel version`, the agent's
//! first log line and `GET /v1/version` show it): `$KEEL_BUILD` when the builder sets it (a
//! container build has no `.git`), else the checkout's short commit, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KEEL_BUILD");
    let build = std::env::var("KEEL_BUILD")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .or_else(commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KEEL_BUILD={}", build.trim());
    // Build again when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    // Only paths that exist: cargo reruns the script on every build for a missing one.
    for path in ["HEAD", "refs/heads"]
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
    {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

fn commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
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
