//! The validated desired state of one revision: every deployment with defaults applied,
//! normalized, and fingerprinted by `spec_hash`.
//!
//! Invariant: `spec_hash` depends only on what the deployment means — not on key order,
//! comments, whitespace, quoting, the file it is declared in, or whether a default was written
//! out (`interval: 10s` and no `interval` hash the same). It also covers the content of the
//! configs the deployment mounts, so editing a mounted config rolls the deployment.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{
    ConfigData, DeploymentConfig, DeploymentDecl, Labels, Network, Resources, VolumeKind,
    DEFAULT_MIN_HEALTHY_TIME,
};
use super::units::Duration;

/// A deployment's identity: (namespace, name), unique across a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeploymentId {
    pub namespace: String,
    pub name: String,
}

impl DeploymentId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A config's identity: (namespace, name).
pub type ConfigId = DeploymentId;

/// Where a declaration was written, for messages ("declared at apps/web.yaml:3").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The SHA-256 of a deployment's canonical JSON, as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecHash(String);

impl SpecHash {
    /// Wraps a hash read back from storage.
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell specs apart in names and logs.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One deployment as it should run.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredDeployment {
    pub id: DeploymentId,
    pub spec: DeploymentDecl,
    /// The content of the configs its `type: config` volumes mount, by config name.
    pub mounted_configs: BTreeMap<String, ConfigData>,
    pub spec_hash: SpecHash,
    pub origin: Origin,
}

/// A config's files and where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConfig {
    pub id: ConfigId,
    pub data: ConfigData,
    pub labels: Labels,
    pub origin: Origin,
}

/// Everything a valid revision asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    /// Every namespace: declared ones and those named by a deployment or config.
    pub namespaces: BTreeMap<String, Labels>,
    pub configs: BTreeMap<ConfigId, DesiredConfig>,
    pub deployments: BTreeMap<DeploymentId, DesiredDeployment>,
}

impl DesiredState {
    /// A fingerprint of what the state runs: every deployment's identity and spec hash (the
    /// configs it mounts are in that hash). Two revisions with the same fingerprint run the
    /// same thing, whatever their files, commit or author — what a quarantine remembers.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for (id, deployment) in &self.deployments {
            hash.update(format!("{id}={}\n", deployment.spec_hash.as_str()).as_bytes());
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl DesiredDeployment {
    /// Normalizes `spec` and fingerprints it together with the configs it mounts.
    pub fn new(
        spec: DeploymentDecl,
        configs: &BTreeMap<ConfigId, DesiredConfig>,
        origin: Origin,
    ) -> Self {
        let spec = normalize(spec);
        let id = DeploymentId::new(&spec.namespace, &spec.name);
        let mounted_configs: BTreeMap<String, ConfigData> = spec
            .volumes
            .iter()
            .filter(|v| v.kind == VolumeKind::Config)
            .filter_map(|v| {
                let config = configs.get(&ConfigId::new(&spec.namespace, &v.source))?;
                Some((v.source.clone(), config.data.clone()))
            })
            .collect();
        let spec_hash = spec_hash(&canonical_json(&spec, &mounted_configs));
        Self {
            id,
            spec,
            mounted_configs,
            spec_hash,
            origin,
        }
    }

    /// The canonical document that `spec_hash` fingerprints and the store keeps.
    pub fn canonical(&self) -> serde_json::Value {
        canonical_json(&self.spec, &self.mounted_configs)
    }
}

/// `{"spec": …, "mounted_configs": {name: data}}`. Struct fields serialize in declaration order
/// and every map is a BTreeMap, so the text of this value is canonical for a normalized spec.
pub fn canonical_json(
    spec: &DeploymentDecl,
    mounted_configs: &BTreeMap<String, ConfigData>,
) -> serde_json::Value {
    serde_json::json!({ "spec": spec, "mounted_configs": mounted_configs })
}

/// Writes defaults one way only, so that equal meanings serialize (and hash) equally.
fn normalize(mut spec: DeploymentDecl) -> DeploymentDecl {
    for volume in &mut spec.volumes {
        volume.permission = Some(volume.effective_permission());
        // `driver: local` means nothing but on a named volume (Ring writes it on every one).
        if volume.kind != VolumeKind::Volume && volume.driver.as_deref() == Some("local") {
            volume.driver = None;
        }
    }
    for check in &mut spec.health_checks {
        if check.readiness && check.min_healthy_time.is_none() {
            check.min_healthy_time = Some(DEFAULT_MIN_HEALTHY_TIME);
        }
        if check.start_period == Some(Duration::from_millis(0)) {
            check.start_period = None;
        }
    }
    if spec.config == Some(DeploymentConfig::default()) {
        spec.config = None;
    }
    if spec.network == Some(Network::default()) {
        spec.network = None;
    }
    if let Some(resources) = &spec.resources {
        let empty_amounts = |a: &Option<_>| a.as_ref().is_none_or(|a| *a == Default::default());
        if empty_amounts(&resources.limits) && empty_amounts(&resources.requests) {
            spec.resources = None;
        }
    }
    if spec.resources == Some(Resources::default()) {
        spec.resources = None;
    }
    spec
}

/// Everything an adapter needs to create one instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceSpec {
    pub deployment: DeploymentId,
    pub generation: u64,
    pub ordinal: u32,
    /// The cron job run it belongs to (`None` for workers and jobs).
    pub run: Option<u64>,
    /// The template hash, put on the instance as a label.
    pub template: String,
    pub spec: DeploymentDecl,
    /// The content of the configs its `type: config` volumes mount, by config name.
    pub mounted_configs: BTreeMap<String, ConfigData>,
}

impl InstanceSpec {
    /// `keel-<namespace>-<name>-<generation>-<ordinal>` (`…-<generation>-r<run>-<ordinal>` for
    /// a cron job's run): unique per live instance of one node (a runtime shared by several
    /// nodes puts the node in its own names, as Docker's `container_name` does).
    pub fn name(&self) -> String {
        let run = self.run.map(|r| format!("r{r}-")).unwrap_or_default();
        format!(
            "keel-{}-{}-{}-{run}{}",
            self.deployment.namespace, self.deployment.name, self.generation, self.ordinal
        )
    }
}

/// The fingerprint of what one instance runs: the canonical document without `replicas`, so a
/// change of `replicas` alone scales the deployment instead of replacing its instances.
pub fn template_hash(
    spec: &DeploymentDecl,
    mounted_configs: &BTreeMap<String, ConfigData>,
) -> String {
    let mut canonical = canonical_json(spec, mounted_configs);
    if let Some(spec) = canonical
        .get_mut("spec")
        .and_then(serde_json::Value::as_object_mut)
    {
        // Neither changes what one instance runs: how many run, when the revision counts
        // them stable, whether a failure is rolled back.
        for field in ["replicas", "stable_after", "rollback"] {
            spec.remove(field);
        }
    }
    spec_hash(&canonical).0
}

fn spec_hash(canonical: &serde_json::Value) -> SpecHash {
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    SpecHash(digest.iter().map(|b| format!("{b:02x}")).collect())
}
