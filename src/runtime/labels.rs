//! The ownership labels every runtime object carries, so that a restarted agent adopts what it
//! finds and removes only what it owns (DESIGN.md §5).

use std::collections::BTreeMap;

use super::InstanceSpec;

pub const MANAGED: &str = "keel.managed";
pub const DEPLOYMENT: &str = "keel.deployment";
pub const NAMESPACE: &str = "keel.namespace";
pub const NAME: &str = "keel.name";
pub const GENERATION: &str = "keel.generation";
pub const ORDINAL: &str = "keel.ordinal";
/// The cron job run an instance belongs to (only on a cron job's instances).
pub const RUN: &str = "keel.run";
pub const SPEC_HASH: &str = "keel.spec_hash";
pub const INSTANCE: &str = "keel.instance";
/// Which agent owns the object: several agents (or test runs) can share one daemon, and each
/// lists, adopts and removes only its own.
pub const OWNER: &str = "keel.owner";
/// The names (never the values) of the secrets an instance was given, comma-separated: what
/// it prints is cleaned of their values before keel keeps any of it.
pub const SECRETS: &str = "keel.secrets";

/// The labels of one instance (the user's labels are added by the adapter, never overriding
/// these).
pub fn for_instance(spec: &InstanceSpec) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (DEPLOYMENT.to_owned(), spec.deployment.to_string()),
        (NAMESPACE.to_owned(), spec.deployment.namespace.clone()),
        (NAME.to_owned(), spec.deployment.name.clone()),
        (GENERATION.to_owned(), spec.generation.to_string()),
        (ORDINAL.to_owned(), spec.ordinal.to_string()),
        (SPEC_HASH.to_owned(), spec.template.clone()),
        (INSTANCE.to_owned(), spec.name()),
    ]);
    if let Some(run) = spec.run {
        labels.insert(RUN.to_owned(), run.to_string());
    }
    let secrets = secret_names(spec);
    if !secrets.is_empty() {
        labels.insert(SECRETS.to_owned(), secrets.join(","));
    }
    labels
}

/// The secrets directory's files an instance is given: environment `secretRef`s and secret
/// volumes.
pub fn secret_names(spec: &InstanceSpec) -> Vec<String> {
    use crate::model::manifest::{EnvValue, VolumeKind};
    let from_env = spec.spec.environment.values().filter_map(|v| match v {
        EnvValue::Secret(s) => Some(s.secret_ref.clone()),
        EnvValue::Plain(_) => None,
    });
    let from_volumes = spec
        .spec
        .volumes
        .iter()
        .filter(|v| v.kind == VolumeKind::Secret)
        .map(|v| v.source.clone());
    let mut names: Vec<String> = from_env.chain(from_volumes).collect();
    names.sort();
    names.dedup();
    names
}
