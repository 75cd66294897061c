//! Turns an `InstanceSpec` into Docker's container-create body: image, command, environment
//! (secrets resolved from the agent's secrets directory), labels, ports, resources, network and
//! mounts. File work (reading secrets, rendering configs, checking bind paths) happens here,
//! before anything is created, so a bad reference fails as `config_error` with no container.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};

use crate::model::manifest::{EnvValue, NetworkMode, Permission, Protocol, Volume, VolumeKind};
use crate::runtime::{labels, InstanceSpec, RuntimeError};

use super::Settings;

/// The bridge network of a namespace on node `node`: `keel-<node>-<namespace>`. Per node, so
/// that agents sharing one daemon never use, or remove, each other's.
pub fn network_name(node: &str, namespace: &str) -> String {
    format!("keel-{}-{namespace}", node_slug(node))
}

/// The container name of `spec` on node `node`: `keel-<node>-<namespace>-<name>-<generation>-…`,
/// unique per node (two agents on one daemon may run the same deployment).
pub fn container_name(node: &str, spec: &InstanceSpec) -> String {
    let name = spec.name();
    let rest = name.strip_prefix("keel-").unwrap_or(&name);
    format!("keel-{}-{rest}", node_slug(node))
}

/// `node` as it can appear in a Docker object's name: characters a name cannot hold replaced
/// by `-`, and then a short hash of the original added, so two node names never share one.
pub fn node_slug(node: &str) -> String {
    let clean: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == node && !clean.is_empty() {
        return clean;
    }
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(node.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{clean}-{hash}")
}

/// The create body for `spec`.
pub fn container(
    spec: &InstanceSpec,
    settings: &Settings,
) -> Result<ContainerCreateBody, RuntimeError> {
    let d = &spec.spec;
    let image = d
        .image
        .clone()
        .ok_or_else(|| RuntimeError::Config("a docker deployment needs an image".into()))?;
    let mut all_labels: HashMap<String, String> = d.labels.0.clone().into_iter().collect();
    all_labels.extend(labels::for_instance(spec));
    all_labels.insert(labels::OWNER.to_owned(), settings.owner.clone());
    let (exposed, bindings) = ports(spec);
    let host_network = d.network.as_ref().map(|n| n.mode) == Some(NetworkMode::Host);
    let host_config = HostConfig {
        memory: limit(
            d.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.memory)
                .map(|m| m.bytes()),
        ),
        memory_reservation: limit(
            d.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.memory)
                .map(|m| m.bytes()),
        ),
        nano_cpus: limit(
            d.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.cpu)
                .map(|c| c.millicores() * 1_000_000),
        ),
        network_mode: Some(if host_network {
            "host".to_owned()
        } else {
            network_name(&settings.owner, &spec.deployment.namespace)
        }),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: Some(mounts(spec, settings)?),
        privileged: privileged(spec, settings)?,
        ..HostConfig::default()
    };
    Ok(ContainerCreateBody {
        image: Some(image),
        user: user(spec),
        cmd: (!d.command.is_empty()).then(|| d.command.clone()),
        env: Some(environment(spec, settings)?),
        labels: Some(all_labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    })
}

fn user_config(spec: &InstanceSpec) -> Option<&crate::model::manifest::UserConfig> {
    spec.spec.config.as_ref()?.user.as_ref()
}

/// Docker's `User`: `id` or `id:group` (validation refuses a group without an id).
fn user(spec: &InstanceSpec) -> Option<String> {
    let user = user_config(spec)?;
    match (user.id, user.group) {
        (Some(id), Some(group)) => Some(format!("{id}:{group}")),
        (Some(id), None) => Some(id.to_string()),
        (None, Some(_) | None) => None,
    }
}

/// `privileged: true`, only where the operator allows it.
fn privileged(spec: &InstanceSpec, settings: &Settings) -> Result<Option<bool>, RuntimeError> {
    match user_config(spec).and_then(|u| u.privileged) {
        Some(true) if !settings.allow_privileged => Err(RuntimeError::Config(
            "privileged containers are not allowed on this host; the operator can allow them with allow_privileged = true under [docker] in keel.toml".into(),
        )),
        Some(true) => Ok(Some(true)),
        Some(false) | None => Ok(None),
    }
}

fn limit(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn ports(spec: &InstanceSpec) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.spec.ports {
        let proto = match port.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let key = format!("{}/{proto}", port.target);
        exposed.push(key.clone());
        let binding = PortBinding {
            host_ip: port.host_ip.clone(),
            host_port: Some(port.published.to_string()),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    (exposed, bindings)
}

/// `NAME=value` pairs, secrets read from the secrets directory.
fn environment(spec: &InstanceSpec, settings: &Settings) -> Result<Vec<String>, RuntimeError> {
    spec.spec
        .environment
        .iter()
        .map(|(name, value)| match value {
            EnvValue::Plain(v) => Ok(format!("{name}={v}")),
            EnvValue::Secret(s) => read_secret(&settings.secrets_dir, &s.secret_ref, "secret")
                .map(|v| format!("{name}={v}")),
        })
        .collect()
}

/// The bytes of `name` in the agent's secrets directory `dir`: a plain file name only
/// (validation allows no other; a stored spec is checked again here). `what` names it in the
/// error ("secret", "image pull secret").
fn secret_bytes(dir: &Path, name: &str, what: &str) -> Result<Vec<u8>, RuntimeError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(RuntimeError::Config(format!(
            "{what} {name:?} is not a plain file name in the agent's secrets directory"
        )));
    }
    std::fs::read(dir.join(name)).map_err(|e| {
        RuntimeError::Config(format!(
            "{what} {name:?} cannot be read from {}: {}",
            dir.display(),
            e.kind()
        ))
    })
}

/// A secret as text, without the line break a file written by hand ends with.
pub(super) fn read_secret(dir: &Path, name: &str, what: &str) -> Result<String, RuntimeError> {
    let text = String::from_utf8(secret_bytes(dir, name, what)?)
        .map_err(|_| RuntimeError::Config(format!("{what} {name:?} is not UTF-8 text")))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn mounts(spec: &InstanceSpec, settings: &Settings) -> Result<Vec<Mount>, RuntimeError> {
    spec.spec
        .volumes
        .iter()
        .map(|v| mount(spec, settings, v))
        .collect()
}

fn mount(spec: &InstanceSpec, settings: &Settings, v: &Volume) -> Result<Mount, RuntimeError> {
    let read_only = Some(v.effective_permission() == Permission::Ro);
    let bind = |source: PathBuf, read_only: Option<bool>| Mount {
        target: Some(v.destination.clone()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only,
        ..Mount::default()
    };
    match v.kind {
        VolumeKind::Bind => Ok(bind(allowed_bind(settings, &v.source)?, read_only)),
        VolumeKind::Volume => Ok(Mount {
            target: Some(v.destination.clone()),
            source: Some(v.source.clone()),
            typ: Some(MountType::VOLUME),
            read_only,
            ..Mount::default()
        }),
        VolumeKind::Config => Ok(bind(render_config(spec, settings, v)?, Some(true))),
        VolumeKind::Secret => Ok(bind(copy_secret(spec, settings, &v.source)?, Some(true))),
    }
}

/// A bind source must exist and resolve below a path the agent config allows.
fn allowed_bind(settings: &Settings, source: &str) -> Result<PathBuf, RuntimeError> {
    let resolved = std::fs::canonicalize(source).map_err(|e| {
        RuntimeError::Config(format!("bind source {source} cannot be used: {}", e.kind()))
    })?;
    let allowed = settings
        .bind_allow
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .any(|prefix| resolved.starts_with(prefix));
    if !allowed {
        return Err(RuntimeError::Config(format!(
            "bind source {source} is not below a path allowed by the agent config (docker.bind_allow)"
        )));
    }
    Ok(resolved)
}

/// Writes one key of a config to `<state>/configs/<namespace>/<name>/<template>/<key>`.
fn render_config(
    spec: &InstanceSpec,
    settings: &Settings,
    v: &Volume,
) -> Result<PathBuf, RuntimeError> {
    let key = v.key.as_deref().unwrap_or_default();
    let data = spec
        .mounted_configs
        .get(&v.source)
        .and_then(|c| c.0.get(key))
        .ok_or_else(|| {
            RuntimeError::Config(format!(
                "config {}/{} has no key {key:?}",
                spec.deployment.namespace, v.source
            ))
        })?;
    let dir = instance_dir(spec, settings).join("configs").join(&v.source);
    write_file(&dir.join(key), data.as_bytes(), 0o444)
}

/// Copies a secret to `<state>/…/secrets/<name>` with mode 0400.
fn copy_secret(
    spec: &InstanceSpec,
    settings: &Settings,
    name: &str,
) -> Result<PathBuf, RuntimeError> {
    let bytes = secret_bytes(&settings.secrets_dir, name, "secret")?;
    write_file(
        &instance_dir(spec, settings).join("secrets").join(name),
        &bytes,
        0o400,
    )
}

fn instance_dir(spec: &InstanceSpec, settings: &Settings) -> PathBuf {
    settings
        .state_dir
        .join("docker")
        .join(&spec.deployment.namespace)
        .join(&spec.deployment.name)
        .join(&spec.template[..spec.template.len().min(16)])
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, RuntimeError> {
    let fs_error = |e: std::io::Error| RuntimeError::FileSystem {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fs_error)?;
    }
    if path.exists() {
        // Read-only files from an earlier instance of the same template: replace them.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::write(path, bytes).map_err(fs_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fs_error)?;
    // Docker wants absolute mount sources; the state directory may be relative.
    std::path::absolute(path).map_err(fs_error)
}
