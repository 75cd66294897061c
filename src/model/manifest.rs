//! The wire format of a keel repository: what one manifest file may contain, as serde +
//! JSON Schema types. Ring-compatible (kemeter/ring's manifest reference), plus keel's
//! readiness fields and the Cloud Hypervisor `vm` block.
//!
//! Invariants: every struct denies unknown fields; every field has a `///` doc (schemars turns
//! them into the schema's descriptions); defaults live here, in serde, so `DesiredState` never
//! sees a missing value. Cross-field rules (a tcp check needs a port, …) are not expressed here:
//! `manifest::validate` checks them and reports every violation with its location.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::units::{Cpu, Duration, Memory};

/// One manifest file (or one document of a multi-document YAML file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "keel manifest")]
pub struct ManifestFile {
    /// Namespaces to declare. Optional: a namespace also exists as soon as a deployment names it.
    /// The map key is only a handle; the namespace is identified by its `name`.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceDecl>,
    /// Configuration files that `type: config` volumes mount. The map key is only a handle; a
    /// config is identified by (`namespace`, `name`).
    #[serde(default)]
    pub configs: BTreeMap<String, ConfigDecl>,
    /// Deployments to run. The map key is only a handle; a deployment is identified by
    /// (`namespace`, `name`), unique across the whole repository.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentDecl>,
}

/// A namespace: one Docker bridge network and one status roll-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    /// The namespace's name: lower-case letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// Free-form labels for the namespace.
    #[serde(default)]
    pub labels: Labels,
}

/// A set of named files that deployments mount with a `type: config` volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDecl {
    /// The config's name, unique within its namespace.
    pub name: String,
    /// The namespace of the deployments that may mount it.
    pub namespace: String,
    /// The files: a map of key → file content, or (as Ring writes it) a string holding a JSON
    /// object of key → content.
    pub data: ConfigData,
    /// Free-form labels for the config.
    #[serde(default)]
    pub labels: Labels,
}

/// A deployment declaration: what to run, how many, and how to tell that it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDecl {
    /// The deployment's name: lower-case letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// The namespace the deployment belongs to (same rules as `name`).
    pub namespace: String,
    /// Where it runs: `docker` (a container per replica) or `cloud-hypervisor` (a microVM per
    /// replica).
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// On `docker`, the image reference (`busybox:1.36`, `registry.example.com/app@sha256:…`).
    /// On `cloud-hypervisor`, the absolute path of a raw disk image; it may be omitted when the
    /// VM boots from an initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `worker` runs forever and is restarted; `job` runs to completion once; `cronjob` runs
    /// to completion on a `schedule`.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// When a `cronjob` runs: a cron expression of five fields (minute hour day-of-month month
    /// day-of-week), six with a leading seconds field, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`. Required for a cronjob, refused on other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = "*/15 * * * *", example = "0 3 * * *", example = "@hourly")]
    pub schedule: Option<String>,
    /// The IANA time zone a `cronjob`'s schedule is read in (`Europe/Paris`,
    /// `America/New_York`). Daylight saving as cron has it: a time skipped by the clock runs
    /// just after the gap, a time that happens twice runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_timezone", example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// What a `cronjob` does when a run is due while an earlier one still runs: `forbid`
    /// skips the new run (recorded, with an event), `allow` runs both, `replace` stops the
    /// running one and starts the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// How late after its due time a `cronjob`'s run may still start (`5m`); a run that could
    /// not start by then — the agent was down, say — is skipped and recorded. Without it a late
    /// run always starts; at most one missed run is ever caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = "5m")]
    pub starting_deadline: Option<Duration>,
    /// How many finished runs of a `cronjob` keep their instances (for `keel logs`); older
    /// ones are removed. Their records stay in `keel runs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
    /// How many instances to run (0 to 256).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The command and its arguments, replacing the image's default command (docker only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables: a plain value, or `{secretRef: NAME}` to read the host file
    /// `NAME` from the agent's secrets directory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, EnvValue>,
    /// Volumes to mount (docker only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Ports to publish on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Labels put on the container or VM (besides keel's own `keel.*` labels): a map, or a
    /// list of one-entry maps (`- traefik.enable: "true"`) as Ring's examples write them.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// CPU and memory limits and requests. On `cloud-hypervisor`, `limits.cpu` is the vCPU
    /// count (default 1) and `limits.memory` the VM's memory (default 256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Health checks: readiness checks gate `creating → running`; the others are liveness
    /// checks that fire `on_failure` once the deployment is running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// How long each new instance of a `worker` without readiness checks must keep running
    /// before the worker counts toward its revision's success, so that a commit goes green
    /// only once it serves and stays up (default: the agent's `stable_after`, itself `10s`).
    /// `0s` counts it as soon as it runs. With readiness checks, `min_healthy_time` decides
    /// instead; jobs are judged by their exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = "30s")]
    pub stable_after: Option<Duration>,
    /// Whether a revision that changes this deployment and then fails at run time is rolled
    /// back to the last good revision (default `true`). `false` keeps such a failure in place
    /// until a new commit fixes it — for the whole revision, since a revision is undone whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// Image handling (docker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DeploymentConfig>,
    /// Container networking (docker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// How the microVM boots (cloud-hypervisor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
}

fn default_replicas() -> u32 {
    1
}

fn default_timezone() -> Option<String> {
    Some("UTC".to_owned())
}

/// What a cron job does when a run is due while an earlier run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Skip the new run (recorded as skipped, with an event).
    #[default]
    Forbid,
    /// Start the new run beside the running one.
    Allow,
    /// Stop the running one (recorded as failed, replaced) and start the new one.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// How many finished runs of a cron job keep their instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Runs that completed (every instance exited 0).
    #[serde(default = "default_successful_history")]
    pub successful: u32,
    /// Runs that failed.
    #[serde(default = "default_failed_history")]
    pub failed: u32,
}

impl Default for History {
    fn default() -> Self {
        Self {
            successful: default_successful_history(),
            failed: default_failed_history(),
        }
    }
}

fn default_successful_history() -> u32 {
    3
}

fn default_failed_history() -> u32 {
    1
}

impl DeploymentDecl {
    /// A cron job's concurrency (default `forbid`).
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency.unwrap_or_default()
    }

    /// A cron job's history (default 3 successful, 1 failed).
    pub fn history(&self) -> History {
        self.history.unwrap_or_default()
    }
}

/// A microVM's memory when `resources.limits.memory` is not set.
pub const DEFAULT_VM_MEMORY: Memory = Memory::from_mebibytes(256);

impl DeploymentDecl {
    /// The vCPU count of a microVM: `resources.limits.cpu` rounded down, at least 1 (default 1).
    pub fn vm_vcpus(&self) -> u32 {
        let millis = self
            .limits()
            .and_then(|l| l.cpu)
            .map_or(1000, Cpu::millicores);
        u32::try_from(millis / 1000).unwrap_or(u32::MAX).max(1)
    }

    /// The memory of a microVM: `resources.limits.memory` (default 256Mi).
    pub fn vm_memory(&self) -> Memory {
        self.limits()
            .and_then(|l| l.memory)
            .unwrap_or(DEFAULT_VM_MEMORY)
    }

    fn limits(&self) -> Option<&ResourceAmounts> {
        self.resources.as_ref().and_then(|r| r.limits.as_ref())
    }
}

/// The runtime that runs a deployment's instances.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// A Docker container per instance.
    #[default]
    Docker,
    /// A Cloud Hypervisor microVM per instance.
    CloudHypervisor,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::CloudHypervisor => "cloud-hypervisor",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = super::status::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [RuntimeKind::Docker, RuntimeKind::CloudHypervisor]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| super::status::UnknownValue {
                kind: "runtime",
                value: s.to_owned(),
                valid: &["docker", "cloud-hypervisor"],
            })
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a deployment serves forever or runs once.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// A long-running service, restarted when it dies.
    #[default]
    Worker,
    /// A one-shot task: exit 0 is `completed`, anything else `failed`.
    Job,
    /// A task run on a `schedule`: each run is `running` until it exits, then `completed`
    /// (exit 0) or `failed`.
    #[serde(rename = "cronjob")]
    CronJob,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Worker => "worker",
            WorkloadKind::Job => "job",
            WorkloadKind::CronJob => "cronjob",
        }
    }

    /// Whether its instances run to completion (jobs and cron jobs' runs).
    pub fn runs_to_completion(self) -> bool {
        match self {
            WorkloadKind::Worker => false,
            WorkloadKind::Job | WorkloadKind::CronJob => true,
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = super::status::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            WorkloadKind::Worker,
            WorkloadKind::Job,
            WorkloadKind::CronJob,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| super::status::UnknownValue {
            kind: "kind",
            value: s.to_owned(),
            valid: &["worker", "job", "cronjob"],
        })
    }
}

/// An environment variable's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// A literal value (numbers and booleans are taken as written).
    Plain(String),
    /// A value read at start time from the agent's secrets directory; never stored or logged.
    Secret(SecretRef),
}

/// A reference to a host-side secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's name: the file of that name in the agent's secrets directory.
    #[serde(rename = "secretRef")]
    pub secret_ref: String,
}

/// The newtype name through which a type asks keel's YAML reader for a scalar's text exactly as
/// written (`VERSION: 1.10` stays `"1.10"`, not the float 1.1). Other deserializers (serde_json
/// reading a stored spec) see an ordinary newtype and hand over their own values.
pub const RAW_TEXT_NEWTYPE: &str = "$keel::raw_text";

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or {secretRef: NAME}")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<EnvValue, D::Error> {
                d.deserialize_any(EnvVisitor)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue::Plain(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                SecretRef::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(EnvValue::Secret)
            }
        }
        deserializer.deserialize_newtype_struct(RAW_TEXT_NEWTYPE, EnvVisitor)
    }
}

/// Labels: a map of key → value. Ring's examples write them as a list of one-entry maps
/// (`- traefik.enable: "true"`); a list of `key=value` strings and one `key=value,key=value`
/// string are read too. Every form is read into the same map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(transparent)]
#[serde(transparent)]
pub struct Labels(#[schemars(schema_with = "labels_schema")] pub BTreeMap<String, String>);

impl Labels {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A map of key → value, or (as Ring writes them) a list of one-entry maps such as `- traefik.enable: \"true\"`; a list of \"key=value\" strings is read too.",
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            {"type": "array", "items": {"anyOf": [
                {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {"type": ["string", "number", "boolean"]}},
                {"type": "string", "pattern": "^[^=]+=.*$"}
            ]}},
            {"type": "string"}
        ]
    })
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of labels, or a list of one-entry maps or \"key=value\" strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Labels, E> {
                v.split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(split_label)
                    .collect::<Result<_, E>>()
                    .map(Labels)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Labels, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(LabelItem(k, v)) = seq.next_element::<LabelItem>()? {
                    out.insert(k, v);
                }
                Ok(Labels(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.insert(k, v);
                }
                Ok(Labels(out))
            }
        }
        deserializer.deserialize_any(LabelsVisitor)
    }
}

/// `key=value` → (key, value), both trimmed.
fn split_label<E: de::Error>(pair: &str) -> Result<(String, String), E> {
    match pair.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(E::custom(format!(
            "label {pair:?} is not of the form key=value"
        ))),
    }
}

/// One entry of a label list: a one-entry map (`- key: value`, Ring's form) or `"key=value"`.
struct LabelItem(String, String);

impl<'de> Deserialize<'de> for LabelItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = LabelItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a one-entry map (- key: value) or a \"key=value\" string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelItem, E> {
                split_label(v).map(|(k, value)| LabelItem(k, value))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelItem, A::Error> {
                let Some((k, v)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom(
                        "an empty map in a label list; write - key: value",
                    ));
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a label list entry holds one label (- key: value); put the others in entries of their own",
                    ));
                }
                Ok(LabelItem(k, v))
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// A config's files, key → content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ConfigData(#[schemars(schema_with = "config_data_schema")] pub BTreeMap<String, String>);

fn config_data_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A map of key → file content, or a string holding a JSON object of key → content.",
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "string"}
        ]
    })
}

impl<'de> Deserialize<'de> for ConfigData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = ConfigData;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of key → content or a JSON object string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigData, E> {
                serde_json::from_str(v).map(ConfigData).map_err(|e| {
                    E::custom(format!(
                        "data is a string but not a JSON object of key → content: {e}"
                    ))
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigData, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.insert(k, v);
                }
                Ok(ConfigData(out))
            }
        }
        deserializer.deserialize_any(DataVisitor)
    }
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// `bind` (a host path, only below paths the agent config allows), `volume` (a named Docker
    /// volume), `config` (one key of a config, read-only) or `secret` (a host secret file,
    /// read-only, mode 0400).
    #[serde(rename = "type")]
    pub kind: VolumeKind,
    /// The host path (`bind`), volume name (`volume`), config name (`config`) or secret name
    /// (`secret`).
    pub source: String,
    /// The absolute path inside the container.
    pub destination: String,
    /// For `config`: which key of the config's data to mount as the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The volume driver (default `local`). Ring requires it on every volume: `local` is
    /// accepted on every type (on `bind`, `config` and `secret` it changes nothing); `nfs` is
    /// not supported; another Docker volume plugin applies to `volume` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// `rw` (default) or `ro`. `config` and `secret` volumes are always read-only: `ro` is
    /// accepted there (Ring requires the field), `rw` is an error.
    #[serde(default, serialize_with = "serialize_permission")]
    pub permission: Option<Permission>,
}

impl Volume {
    /// The permission it is mounted with: `config` and `secret` are read-only whatever is
    /// written; otherwise what is written, read-write by default.
    pub fn effective_permission(&self) -> Permission {
        match self.kind {
            VolumeKind::Config | VolumeKind::Secret => Permission::Ro,
            VolumeKind::Bind | VolumeKind::Volume => self.permission.unwrap_or_default(),
        }
    }
}

/// Writes the permission always (`rw` when unset), as keel always has: the canonical document,
/// and so every spec hash, stays what it was.
fn serialize_permission<S: serde::Serializer>(
    permission: &Option<Permission>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    permission.unwrap_or_default().serialize(serializer)
}

/// What a volume mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A host path.
    Bind,
    /// A named Docker volume.
    Volume,
    /// One key of a config declared in the repository.
    Config,
    /// A file from the agent's secrets directory.
    Secret,
}

impl VolumeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Bind => "bind",
            VolumeKind::Volume => "volume",
            VolumeKind::Config => "config",
            VolumeKind::Secret => "secret",
        }
    }
}

/// Read-write or read-only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read-write.
    #[default]
    Rw,
    /// Read-only.
    Ro,
}

/// A port of the instance, optionally published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The host port (1 to 65535), unique per (`host_ip`, `protocol`) within a deployment.
    pub published: u32,
    /// The port inside the container (1 to 65535).
    pub target: u32,
    /// The host address to bind (default all addresses, `0.0.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Resource limits and requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Hard caps: the container's limits, or the VM's vCPUs and memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
    /// What the instance needs: checked against the host's free memory before anything is
    /// created (docker's memory reservation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
}

/// An amount of CPU and memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    /// CPU: cores (`"0.5"`, `"2"`) or millicores (`"500m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory: `"256Mi"`, `"1Gi"`, `"512M"` or bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// A health check. `readiness: true` makes it gate `creating → running`; otherwise it is a
/// liveness check that starts once the deployment is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `tcp` (connect to `port`), `http` (GET `url`, 2xx is healthy, redirects are not) or
    /// `command` (run `command` inside the instance, exit 0 is healthy).
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// For `tcp`: the instance's port to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// For `http`: the URL to GET; `localhost` means the instance (rewritten to its IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `command`: the command to run in the instance, as one shell string or a list of
    /// arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<ProbeCommand>,
    /// Time between two runs of the check (default `10s`).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long one run may take before it counts as a failure (default `5s`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Consecutive failures before `on_failure` fires (default 3).
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// What a liveness failure does: `restart` the instance (default), `stop` the deployment
    /// (status `deleted`), or `alert` (an event only).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// When true, the deployment stays `creating` until this check has been green for
    /// `min_healthy_time` on every instance.
    #[serde(default)]
    pub readiness: bool,
    /// How long a readiness check must stay green before the instance counts as ready
    /// (default `10s`; the longest across checks wins). Only meaningful with `readiness: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<Duration>,
    /// Grace period after the instance starts during which failures are not counted
    /// (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_threshold() -> u32 {
    3
}

/// The default `min_healthy_time` of a readiness check.
pub const DEFAULT_MIN_HEALTHY_TIME: Duration = Duration::from_secs(10);

/// How a health check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A TCP connect to `port`.
    Tcp,
    /// An HTTP GET of `url`.
    Http,
    /// A command run inside the instance.
    Command,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Command => "command",
        }
    }
}

/// What a failing liveness check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Replace the failing instance.
    #[default]
    Restart,
    /// Stop the deployment (status `deleted`).
    Stop,
    /// Record an event and notify; change nothing.
    Alert,
}

/// A probe command: one shell string (run with `sh -c`) or an argument list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProbeCommand {
    /// A shell command line, run with `sh -c`.
    Shell(String),
    /// A program and its arguments, run as is.
    Args(Vec<String>),
}

/// Image handling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// `IfNotPresent` (default): pull only when the image is missing; `Always`: pull before
    /// every create; `Never`: use the local image or fail with `image_pull_back_off`.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Who the container's process runs as (Ring's `config.user`), and whether it is
    /// privileged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserConfig>,
    /// A private registry's credentials as a Docker `config.json`: the name of that file in the
    /// agent's secrets directory (Kubernetes' `imagePullSecrets`). Used before every other
    /// source; not with `username`/`password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// The registry the credentials are for (Ring's `config.server`); default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The registry user, with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The registry password, as `{secretRef: NAME}` (a file in the agent's secrets
    /// directory): a password written in Git is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<EnvValue>,
    /// Ring's opt-in to the host's Docker credentials. keel takes them for every deployment
    /// when the operator sets `use_host_auth = true` under `[docker]` in keel.toml, so this field
    /// changes nothing (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_host_auth: Option<bool>,
}

/// The container's user, as Ring writes it: numeric ids, and `privileged`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user id the process runs as (Docker's `--user <id>`); the image's user when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The group id, with `id` (Docker's `--user <id>:<group>`); a group alone is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Runs the container privileged (every device and capability of the host). Refused unless
    /// the operator sets `allow_privileged = true` under `[docker]` in keel.toml: a repository
    /// writer must not be able to take the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
}

/// When to pull an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull before every create.
    Always,
    /// Pull only when the image is not present locally.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Container networking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `bridge` (default: the namespace's own network) or `host` (the host's network stack;
    /// no `ports`, one replica).
    #[serde(default)]
    pub mode: NetworkMode,
}

/// A container network mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The namespace's bridge network.
    #[default]
    Bridge,
    /// The host's network stack.
    Host,
}

/// How a Cloud Hypervisor microVM boots: a `kernel` (with optional `initramfs` and `cmdline`)
/// or a `firmware`. The disk is `image`; vCPUs and memory come from `resources.limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Absolute host path of the guest kernel (direct kernel boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Absolute host path of a firmware (e.g. hypervisor-fw) that boots the disk image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// Absolute host path of an initramfs, with `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
    /// The kernel command line, with `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

impl VmSpec {
    /// Whether the block names how to boot (a kernel or a firmware).
    pub fn names_boot(&self) -> bool {
        self.kernel.is_some() || self.firmware.is_some()
    }

    /// This block over the operator's defaults (`[cloud_hypervisor]` in keel.toml, Ring's
    /// server-side boot files). A block that names its kernel or firmware boots exactly what it
    /// names — a default initramfs belongs to the default kernel, so nothing is mixed in. A
    /// block that names neither boots the defaults (a kernel before a firmware), its own
    /// `initramfs` and `cmdline` replacing the defaults' ones.
    pub fn over(&self, defaults: &VmSpec) -> VmSpec {
        if self.names_boot() {
            return self.clone();
        }
        VmSpec {
            kernel: defaults.kernel.clone(),
            firmware: defaults
                .kernel
                .is_none()
                .then(|| defaults.firmware.clone())
                .flatten(),
            initramfs: self
                .initramfs
                .clone()
                .or_else(|| defaults.initramfs.clone()),
            cmdline: self.cmdline.clone().or_else(|| defaults.cmdline.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(kernel: Option<&str>, firmware: Option<&str>, initramfs: Option<&str>) -> VmSpec {
        VmSpec {
            kernel: kernel.map(str::to_owned),
            firmware: firmware.map(str::to_owned),
            initramfs: initramfs.map(str::to_owned),
            cmdline: None,
        }
    }

    #[test]
    fn a_vm_block_boots_what_it_names_and_otherwise_the_operator_defaults() {
        let defaults = boot(Some("/d/kernel"), Some("/d/fw"), Some("/d/initrd"));
        // (behaviour, the deployment's block, the boot)
        let rows = [
            (
                "no boot of its own: the default kernel and initramfs",
                boot(None, None, None),
                boot(Some("/d/kernel"), None, Some("/d/initrd")),
            ),
            (
                "its own initramfs replaces the default one",
                boot(None, None, Some("/own/initrd")),
                boot(Some("/d/kernel"), None, Some("/own/initrd")),
            ),
            (
                "its own kernel comes without the default initramfs",
                boot(Some("/own/kernel"), None, None),
                boot(Some("/own/kernel"), None, None),
            ),
            (
                "its own firmware is not overridden by a default kernel",
                boot(None, Some("/own/fw"), None),
                boot(None, Some("/own/fw"), None),
            ),
        ];
        for (behaviour, own, expected) in rows {
            assert_eq!(own.over(&defaults), expected, "{behaviour}");
        }
        let firmware_only = boot(None, Some("/d/fw"), None);
        assert_eq!(
            boot(None, None, None).over(&firmware_only),
            firmware_only,
            "a default firmware"
        );
    }

    fn vm_with(limits: Option<ResourceAmounts>) -> DeploymentDecl {
        DeploymentDecl {
            name: "vm".into(),
            namespace: "demo".into(),
            runtime: RuntimeKind::CloudHypervisor,
            image: None,
            kind: WorkloadKind::Worker,
            schedule: None,
            timezone: None,
            concurrency: None,
            starting_deadline: None,
            history: None,
            replicas: 1,
            command: vec![],
            environment: BTreeMap::new(),
            volumes: vec![],
            ports: vec![],
            labels: Labels::default(),
            resources: limits.map(|l| Resources {
                limits: Some(l),
                requests: None,
            }),
            health_checks: vec![],
            stable_after: None,
            rollback: None,
            config: None,
            network: None,
            vm: None,
        }
    }

    #[test]
    fn vm_size_defaults_to_one_vcpu_and_256mi() {
        let d = vm_with(None);
        assert_eq!(d.vm_vcpus(), 1);
        assert_eq!(d.vm_memory(), Memory::from_mebibytes(256));
    }

    #[test]
    fn vm_size_comes_from_limits_rounded_down_to_whole_vcpus() {
        let d = vm_with(Some(ResourceAmounts {
            cpu: Some("2.5".parse().unwrap()),
            memory: Some("1Gi".parse().unwrap()),
        }));
        assert_eq!(d.vm_vcpus(), 2);
        assert_eq!(d.vm_memory().bytes(), 1 << 30);
        let small = vm_with(Some(ResourceAmounts {
            cpu: Some("500m".parse().unwrap()),
            memory: None,
        }));
        assert_eq!(small.vm_vcpus(), 1);
    }
}
