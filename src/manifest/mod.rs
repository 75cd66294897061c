//! PURE: the files of one revision → `DesiredState`, or every diagnostic at once.
//!
//! Input is a list of `SnapshotEntry` (path + bytes, or a source's refusal); output is
//! `Loaded` (the state plus warnings) or the full sorted list of diagnostics. A revision is
//! atomic: one error anywhere rejects all of it. No I/O, no clock: the same bytes always give
//! the same answer, which is what lets `keel validate` in CI predict what the agent will do.

mod de;
mod parse;
pub mod schema;
pub mod validate;
pub mod vars;
pub mod yaml;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::desired::{
    ConfigId, DeploymentId, DesiredConfig, DesiredDeployment, DesiredState, Origin,
};
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::model::manifest::{DeploymentDecl, Protocol, VmSpec, VolumeKind};
use crate::model::snapshot::{Rejection, SizeLimits, SnapshotEntry};

use parse::{Entry, ParsedFile};
use validate::{Finding, Seg};
pub use yaml::YamlLimits;

/// What the operator configured that loading a revision depends on: the bounds on the work one
/// revision may cause, and the microVM boot defaults a VM deployment may rely on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub size: SizeLimits,
    pub yaml: YamlLimits,
    /// `[cloud_hypervisor]` kernel, initramfs, cmdline and firmware: what a deployment without
    /// its own boot in `vm` boots (`VmSpec::over`).
    pub vm_defaults: VmSpec,
    /// The operator's `$VAR`s (`[variables]`); `None`: no substitution, `$` is taken literally.
    pub variables: Option<vars::Variables>,
}

/// A valid revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub state: DesiredState,
    pub warnings: Vec<Diagnostic>,
}

/// Loads a revision: `Ok` when no diagnostic is an error, else every diagnostic, sorted.
pub fn load(entries: &[SnapshotEntry], limits: &Limits) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for entry in entries {
        match entry {
            SnapshotEntry::Rejected { path, reason } => {
                diagnostics.push(parse::file_error(path, rejection_message(reason)));
            }
            SnapshotEntry::File { path, bytes } => {
                let size = bytes.len() as u64;
                total = total.saturating_add(size);
                if size > limits.size.max_file_bytes {
                    diagnostics.push(parse::file_error(
                        path,
                        rejection_message(&Rejection::FileTooLarge {
                            size,
                            limit: limits.size.max_file_bytes,
                        }),
                    ));
                } else if total > limits.size.max_revision_bytes {
                    diagnostics.push(parse::file_error(
                        path,
                        rejection_message(&Rejection::RevisionTooLarge {
                            limit: limits.size.max_revision_bytes,
                        }),
                    ));
                } else {
                    files.push(parse::parse_file(
                        path,
                        bytes,
                        limits.yaml,
                        limits.variables.as_ref(),
                        &mut diagnostics,
                    ));
                }
            }
        }
    }
    let state = assemble(&files, &limits.vm_defaults, &mut diagnostics);
    diagnostics.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(diagnostics)
    } else {
        Ok(Loaded {
            state,
            warnings: diagnostics,
        })
    }
}

fn rejection_message(reason: &Rejection) -> String {
    match reason {
        Rejection::SymlinkEscapesRoot { target } => {
            format!("symbolic link points outside the repository (to {target}); only links within the repository are followed")
        }
        Rejection::FileTooLarge { size, limit } => {
            format!("file is {size} bytes, over the limit of {limit} bytes per file")
        }
        Rejection::RevisionTooLarge { limit } => {
            format!(
                "the revision's manifests exceed {limit} bytes in total; this file was not read"
            )
        }
        Rejection::Unreadable { message } => format!("cannot read file: {message}"),
        Rejection::BadIgnorePattern { line, message } => {
            format!("line {line}: invalid pattern: {message}")
        }
        Rejection::NameNotUtf8 => "the file name is not valid UTF-8 (shown escaped); rename it: a manifest keel cannot name would silently drop what it declares".to_owned(),
        Rejection::NotARegularFile { kind } => {
            format!("{kind}, not a regular file: it is not read (reading one can block forever); remove it or rename it without a manifest extension")
        }
    }
}

/// Runs per-declaration and revision-wide checks and builds the state (meaningful only when
/// no error was pushed).
fn assemble(files: &[ParsedFile], vm_defaults: &VmSpec, out: &mut Vec<Diagnostic>) -> DesiredState {
    let mut state = DesiredState::default();
    add_namespaces(files, &mut state, out);
    add_configs(files, &mut state, out);
    add_deployments(files, vm_defaults, &mut state, out);
    state
}

fn add_namespaces(files: &[ParsedFile], state: &mut DesiredState, out: &mut Vec<Diagnostic>) {
    let mut first_seen: BTreeMap<&str, Origin> = BTreeMap::new();
    for file in files {
        for entry in &file.namespaces {
            push_findings(file, entry, validate::namespace(&entry.value), out);
            let name = entry.value.name.as_str();
            if let Some(first) = first_seen.get(name) {
                let message = format!("namespace {name:?} is also declared at {first}");
                out.push(file.diagnostic(entry, finding(Severity::Warning, &["name"], message)));
                continue;
            }
            first_seen.insert(name, origin(file, entry));
            state
                .namespaces
                .insert(name.to_owned(), entry.value.labels.clone());
        }
    }
}

fn add_configs(files: &[ParsedFile], state: &mut DesiredState, out: &mut Vec<Diagnostic>) {
    for file in files {
        for entry in &file.configs {
            push_findings(file, entry, validate::config(&entry.value), out);
            let id = ConfigId::new(&entry.value.namespace, &entry.value.name);
            if let Some(first) = state.configs.get(&id) {
                let message = format!("config {id} is also declared at {}", first.origin);
                out.push(file.diagnostic(entry, finding(Severity::Error, &["name"], message)));
                continue;
            }
            state.namespaces.entry(id.namespace.clone()).or_default();
            let config = DesiredConfig {
                id: id.clone(),
                data: entry.value.data.clone(),
                labels: entry.value.labels.clone(),
                origin: origin(file, entry),
            };
            state.configs.insert(id, config);
        }
    }
}

fn add_deployments(
    files: &[ParsedFile],
    vm_defaults: &VmSpec,
    state: &mut DesiredState,
    out: &mut Vec<Diagnostic>,
) {
    let mut host_ports = HostPorts::default();
    for file in files {
        for entry in &file.deployments {
            let decl = &entry.value;
            push_findings(file, entry, validate::deployment(decl, vm_defaults), out);
            let id = DeploymentId::new(&decl.namespace, &decl.name);
            if let Some(first) = state.deployments.get(&id) {
                let message = format!("deployment {id} is also declared at {}", first.origin);
                out.push(file.diagnostic(entry, finding(Severity::Error, &["name"], message)));
                continue;
            }
            config_references(file, entry, &state.configs, out);
            host_ports.claim(file, entry, &id, out);
            state.namespaces.entry(id.namespace.clone()).or_default();
            let desired = DesiredDeployment::new(decl.clone(), &state.configs, origin(file, entry));
            state.deployments.insert(id, desired);
        }
    }
}

/// A host port: (address, `None` for all; protocol; port).
type HostPort = (Option<IpAddr>, Protocol, u32);

/// Who publishes a host port: the deployment, the index in its `ports`, where it is declared.
type PortOwner = (DeploymentId, usize, Origin);

/// Host ports already published in the revision.
#[derive(Default)]
struct HostPorts(BTreeMap<HostPort, PortOwner>);

impl HostPorts {
    /// Records the deployment's published ports, reporting those another deployment has.
    fn claim(
        &mut self,
        file: &ParsedFile,
        entry: &Entry<DeploymentDecl>,
        id: &DeploymentId,
        out: &mut Vec<Diagnostic>,
    ) {
        for (i, port) in entry.value.ports.iter().enumerate() {
            let Ok(ip) = validate::host_ip(port) else {
                continue;
            };
            let key = (ip, port.protocol, port.published);
            match self.0.get(&key) {
                // Within one deployment, `validate::deployment` already reported it.
                Some((other, _, _)) if other == id => {}
                Some((other, j, other_origin)) => {
                    let message = format!(
                        "host port {} is also published by deployment {other} (ports[{j}], declared at {other_origin})",
                        port.published
                    );
                    let at = vec![
                        Seg::Key("ports".into()),
                        Seg::Index(i),
                        Seg::Key("published".into()),
                    ];
                    let severity = Severity::Error;
                    out.push(file.diagnostic(
                        entry,
                        Finding {
                            at,
                            severity,
                            message,
                        },
                    ));
                }
                None => {
                    self.0.insert(key, (id.clone(), i, origin(file, entry)));
                }
            }
        }
    }
}

/// A deployment's `type: config` volumes must name a config of its namespace, and a key of it.
fn config_references(
    file: &ParsedFile,
    entry: &Entry<DeploymentDecl>,
    configs: &BTreeMap<ConfigId, DesiredConfig>,
    out: &mut Vec<Diagnostic>,
) {
    for (i, volume) in entry.value.volumes.iter().enumerate() {
        if volume.kind != VolumeKind::Config {
            continue;
        }
        let id = ConfigId::new(&entry.value.namespace, &volume.source);
        let at = |field: &str| {
            vec![
                Seg::Key("volumes".into()),
                Seg::Index(i),
                Seg::Key(field.into()),
            ]
        };
        match configs.get(&id) {
            None => {
                let message = format!("config {id} is not declared in this revision");
                out.push(file.diagnostic(
                    entry,
                    Finding {
                        at: at("source"),
                        severity: Severity::Error,
                        message,
                    },
                ));
            }
            Some(config) => {
                let Some(key) = volume.key.as_deref().filter(|k| !k.is_empty()) else {
                    continue;
                };
                if !config.data.0.contains_key(key) {
                    let keys: Vec<&str> = config.data.0.keys().map(String::as_str).collect();
                    let hint = nearest(key, &keys)
                        .map(|k| format!(", did you mean {k:?}?"))
                        .unwrap_or_else(|| format!("; its keys: {}", keys.join(", ")));
                    let message = format!("config {id} has no key {key:?}{hint}");
                    out.push(file.diagnostic(
                        entry,
                        Finding {
                            at: at("key"),
                            severity: Severity::Error,
                            message,
                        },
                    ));
                }
            }
        }
    }
}

fn push_findings<T>(
    file: &ParsedFile,
    entry: &Entry<T>,
    findings: Vec<Finding>,
    out: &mut Vec<Diagnostic>,
) {
    out.extend(findings.into_iter().map(|f| file.diagnostic(entry, f)));
}

fn origin<T>(file: &ParsedFile, entry: &Entry<T>) -> Origin {
    Origin {
        file: file.path.clone(),
        line: file.line_of(entry),
    }
}

fn finding(severity: Severity, at: &[&str], message: String) -> Finding {
    Finding {
        at: at.iter().map(|s| Seg::Key((*s).to_owned())).collect(),
        severity,
        message,
    }
}

/// The candidate closest to `given` when it is close enough to be a plausible typo.
pub fn nearest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&given_lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (given.chars().count().max(c.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over chars where swapping two neighbours counts as one edit (optimal
/// string alignment), so `imgae` is one step from `image`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_plausible_typos_only() {
        let fields = ["name", "namespace", "replicas", "health_checks", "image"];
        assert_eq!(nearest("replica", &fields), Some("replicas"));
        assert_eq!(nearest("Replicas", &fields), Some("replicas"));
        assert_eq!(nearest("healthchecks", &fields), Some("health_checks"));
        assert_eq!(nearest("imgae", &fields), Some("image"));
        assert_eq!(nearest("volumes", &fields), None);
    }
}
