//! Semantic rules of the manifest format: what serde's types cannot say. Pure functions over
//! the model; each violation is a `Finding` with a field path relative to the declaration, so
//! the caller can turn it into file:line:column.
//!
//! Rules that need the whole revision (duplicate identities, a config volume's config, host
//! ports shared by two deployments) are in `manifest::revision_checks`; everything here sees
//! one declaration at a time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::diagnostic::Severity;
use crate::model::manifest::{
    CheckKind, Concurrency, ConfigDecl, DeploymentDecl, EnvValue, HealthCheck, NamespaceDecl,
    NetworkMode, Permission, Port, RuntimeKind, VmSpec, Volume, VolumeKind, WorkloadKind,
};
use crate::model::schedule::{Schedule, ScheduleError};
use crate::model::time::Timestamp;

/// The most replicas one deployment may ask for.
pub const MAX_REPLICAS: u32 = 256;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A rule violation at a path relative to the declaration being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: Vec<Seg>,
    pub severity: Severity,
    pub message: String,
}

/// Builds `Finding`s under a path prefix.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

/// Makes a path from `"ports", 1, "published"`-like parts.
macro_rules! at {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

impl Report {
    fn error(&mut self, at: Vec<Seg>, message: impl Into<String>) {
        self.push(at, Severity::Error, message);
    }

    fn warning(&mut self, at: Vec<Seg>, message: impl Into<String>) {
        self.push(at, Severity::Warning, message);
    }

    fn push(&mut self, at: Vec<Seg>, severity: Severity, message: impl Into<String>) {
        self.findings.push(Finding {
            at,
            severity,
            message: message.into(),
        });
    }
}

/// Checks a DNS-label-like name (namespaces, deployments, configs).
pub fn check_name(value: &str) -> Result<(), String> {
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if value.is_empty() {
        Err("must not be empty".to_owned())
    } else if value.len() > 63 {
        Err(format!("{value:?} is longer than 63 characters"))
    } else if !ok_chars || value.starts_with('-') || value.ends_with('-') {
        Err(format!(
            "{value:?} is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    } else {
        Ok(())
    }
}

/// Checks a secret's name: a plain file name in the secrets directory.
pub fn check_secret_name(value: &str) -> Result<(), String> {
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if value.is_empty() || value.len() > 253 || !ok_chars || value.starts_with('.') {
        Err(format!(
            "{value:?} is not a valid secret name: use letters, digits, '.', '_' and '-', not starting with '.' (it names a file in the agent's secrets directory)"
        ))
    } else {
        Ok(())
    }
}

pub fn namespace(decl: &NamespaceDecl) -> Vec<Finding> {
    let mut r = Report::default();
    if let Err(e) = check_name(&decl.name) {
        r.error(at!["name"], e);
    }
    r.findings
}

pub fn config(decl: &ConfigDecl) -> Vec<Finding> {
    let mut r = Report::default();
    if let Err(e) = check_name(&decl.name) {
        r.error(at!["name"], e);
    }
    if let Err(e) = check_name(&decl.namespace) {
        r.error(at!["namespace"], e);
    }
    for key in decl.data.0.keys() {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            r.error(
                at!["data"],
                format!("config key {key:?} must be a plain file name (no '/')"),
            );
        }
    }
    r.findings
}

/// Every per-deployment rule.
/// A docker deployment without its image.
pub const MISSING_IMAGE: &str = "missing required field \"image\" (e.g. \"busybox:1.36\")";

pub fn deployment(d: &DeploymentDecl, vm_defaults: &VmSpec) -> Vec<Finding> {
    let mut r = Report::default();
    if let Err(e) = check_name(&d.name) {
        r.error(at!["name"], e);
    }
    if let Err(e) = check_name(&d.namespace) {
        r.error(at!["namespace"], e);
    }
    replicas(d, &mut r);
    runtime_fields(d, vm_defaults, &mut r);
    environment(d, &mut r);
    ports(d, &mut r);
    volumes(d, &mut r);
    for (i, check) in d.health_checks.iter().enumerate() {
        health_check(i, check, &mut r);
    }
    resources(d, &mut r);
    cron(d, &mut r);
    stable_after(d, &mut r);
    user(d, &mut r);
    registry_credentials(d, &mut r);
    r.findings
}

/// `stable_after` is a worker's: a job is judged by its exit code, and readiness checks
/// decide for a gated worker (`min_healthy_time`).
fn stable_after(d: &DeploymentDecl, r: &mut Report) {
    if d.stable_after.is_none() {
        return;
    }
    match d.kind {
        WorkloadKind::Worker if d.health_checks.iter().any(|c| c.readiness) => r.warning(
            at!["stable_after"],
            "not used: readiness checks decide when this worker counts as stable (min_healthy_time)",
        ),
        WorkloadKind::Worker => {}
        WorkloadKind::Job | WorkloadKind::CronJob => r.error(
            at!["stable_after"],
            format!(
                "stable_after applies to workers; a {} is judged by its exit code",
                d.kind.as_str()
            ),
        ),
    }
}

/// Ring's registry fields: a password only by reference, credentials from one source.
fn registry_credentials(d: &DeploymentDecl, r: &mut Report) {
    let Some(c) = d.config.as_ref() else {
        return;
    };
    if let Some(EnvValue::Secret(secret)) = &c.password {
        if let Err(e) = check_secret_name(&secret.secret_ref) {
            r.error(at!["config", "password", "secretRef"], e);
        }
    }
    if let Some(EnvValue::Plain(_)) = &c.password {
        r.error(
            at!["config", "password"],
            "a registry password must not be written in Git: put it in a file in the agent's secrets directory and write password: {secretRef: NAME}",
        );
    }
    match (c.username.is_some(), c.password.is_some()) {
        (true, false) => r.error(
            at!["config", "username"],
            "username needs password: {secretRef: NAME}",
        ),
        (false, true) => r.error(at!["config", "password"], "password needs username"),
        (true, true) | (false, false) => {}
    }
    if c.server.is_some() && c.username.is_none() && c.image_pull_secret.is_none() {
        r.error(
            at!["config", "server"],
            "server needs username and password (or use image_pull_secret)",
        );
    }
    if let Some(name) = &c.image_pull_secret {
        if c.username.is_some() {
            r.error(
                at!["config", "image_pull_secret"],
                "use either image_pull_secret or username/password, not both",
            );
        }
        if let Err(e) = check_secret_name(name) {
            r.error(at!["config", "image_pull_secret"], e);
        }
    }
    if c.use_host_auth.is_some() {
        r.warning(
            at!["config", "use_host_auth"],
            "keel uses the host's Docker credentials for every deployment when the agent's keel.toml sets use_host_auth = true under [docker]; this field changes nothing",
        );
    }
}

/// The most finished runs of one kind a cron job may keep the instances of.
pub const MAX_HISTORY: u32 = 100;

/// A cron job's schedule and its settings; on other kinds, none of them.
fn cron(d: &DeploymentDecl, r: &mut Report) {
    let fields = [
        ("schedule", d.schedule.is_some()),
        ("timezone", d.timezone.is_some()),
        ("concurrency", d.concurrency.is_some()),
        ("starting_deadline", d.starting_deadline.is_some()),
        ("history", d.history.is_some()),
    ];
    if d.kind != WorkloadKind::CronJob {
        for (field, present) in fields {
            if present {
                r.error(
                    at![field],
                    format!(
                        "\"{field}\" is only for kind: cronjob (this is a {})",
                        d.kind
                    ),
                );
            }
        }
        return;
    }
    match &d.schedule {
        None => r.error(
            at!["schedule"],
            "a cronjob needs a schedule, e.g. schedule: \"*/15 * * * *\" (minute hour day-of-month month day-of-week)",
        ),
        Some(expression) => match Schedule::parse(expression, d.timezone.as_deref()) {
            Ok(schedule) if schedule.next_after(Timestamp(0)).is_none() => r.error(
                at!["schedule"],
                format!("{expression:?} never comes (no date matches it)"),
            ),
            Ok(_) => {}
            Err(e @ ScheduleError::TimeZone(_)) => r.error(at!["timezone"], e.to_string()),
            Err(e @ ScheduleError::Expression { .. }) => r.error(at!["schedule"], e.to_string()),
        },
    }
    if d.starting_deadline.is_some_and(|t| t.as_millis() == 0) {
        r.error(
            at!["starting_deadline"],
            "starting_deadline must be longer than 0 (leave it out for no deadline)",
        );
    }
    let history = d.history();
    for (field, kept) in [
        ("successful", history.successful),
        ("failed", history.failed),
    ] {
        if kept > MAX_HISTORY {
            r.error(
                at!["history", field],
                format!("history.{field} keeps at most {MAX_HISTORY} runs, got {kept}"),
            );
        }
    }
    if !d.health_checks.is_empty() {
        r.error(
            at!["health_checks"],
            "a cronjob's runs have no health checks: each run is judged by its exit code",
        );
    }
}

/// Ring's `config.user`: a group only with a user id; `privileged` depends on the host (the
/// agent refuses it unless its config allows it), so it is flagged here, not refused.
fn user(d: &DeploymentDecl, r: &mut Report) {
    let Some(user) = d.config.as_ref().and_then(|c| c.user.as_ref()) else {
        return;
    };
    if user.group.is_some() && user.id.is_none() {
        r.error(
            at!["config", "user", "group"],
            "a group needs a user id: set config.user.id as well (the container runs as id:group)",
        );
    }
    if user.privileged == Some(true) {
        r.warning(
            at!["config", "user", "privileged"],
            "a privileged container runs only on hosts whose keel.toml sets allow_privileged = true under [docker]; elsewhere it is refused with config_error",
        );
    }
}

fn replicas(d: &DeploymentDecl, r: &mut Report) {
    if d.replicas > MAX_REPLICAS {
        r.error(
            at!["replicas"],
            format!(
                "replicas must be between 0 and {MAX_REPLICAS}, got {}",
                d.replicas
            ),
        );
    }
    match d.kind {
        WorkloadKind::Job if d.replicas > 1 => r.warning(
            at!["replicas"],
            format!(
                "a job with {} replicas runs {} copies of the same task; is that intended?",
                d.replicas, d.replicas
            ),
        ),
        WorkloadKind::CronJob if d.replicas > 1 => r.warning(
            at!["replicas"],
            format!(
                "each run of a cronjob with {} replicas runs {} copies of the same task; is that intended?",
                d.replicas, d.replicas
            ),
        ),
        WorkloadKind::Job | WorkloadKind::CronJob | WorkloadKind::Worker => {}
    }
    let host_network = d.network.as_ref().map(|n| n.mode) == Some(NetworkMode::Host);
    if host_network && d.replicas > 1 {
        r.error(
            at!["network", "mode"],
            format!(
                "host networking allows one replica (replicas: {}): several would fight over the same ports",
                d.replicas
            ),
        );
    }
    if host_network && !d.ports.is_empty() {
        r.error(
            at!["network", "mode"],
            "host networking cannot be combined with ports: the container already uses the host's ports",
        );
    }
}

/// Docker-only fields on cloud-hypervisor, `vm` on docker, and each runtime's image rules.
fn runtime_fields(d: &DeploymentDecl, vm_defaults: &VmSpec, r: &mut Report) {
    match d.runtime {
        RuntimeKind::Docker => {
            if d.vm.is_some() {
                r.error(at!["vm"], "\"vm\" is only for runtime: cloud-hypervisor");
            }
            match &d.image {
                None => r.error(at!["image"], MISSING_IMAGE),
                Some(image) => {
                    if let Err(e) = check_image_reference(image) {
                        r.error(at!["image"], e);
                    }
                }
            }
        }
        RuntimeKind::CloudHypervisor => {
            let docker_only = [
                ("command", !d.command.is_empty()),
                ("volumes", !d.volumes.is_empty()),
                ("network", d.network.is_some()),
                ("config", d.config.is_some()),
            ];
            for (field, present) in docker_only {
                if present {
                    r.error(
                        at![field],
                        format!("\"{field}\" is docker-only and not supported on runtime: cloud-hypervisor"),
                    );
                }
            }
            if let Some(image) = &d.image {
                if !image.starts_with('/') {
                    r.error(
                        at!["image"],
                        format!("on cloud-hypervisor, image is the absolute path of a raw disk image, got {image:?}"),
                    );
                }
            }
            vm(d.vm.as_ref(), vm_defaults, d.image.is_some(), r);
            for (i, check) in d.health_checks.iter().enumerate() {
                if check.kind == CheckKind::Command {
                    r.error(
                        at!["health_checks", i, "type"],
                        "command health checks cannot run inside a microVM: use tcp or http (they reach the guest's address)",
                    );
                }
            }
        }
    }
}

/// The boot of a VM deployment: its own `vm` block over the operator's defaults
/// (`VmSpec::over`, the rule the runtime boots by). Conflicts are the block's own; what is
/// missing is judged on the merged boot, and named with both places it can come from.
fn vm(own: Option<&VmSpec>, defaults: &VmSpec, has_disk: bool, r: &mut Report) {
    let empty = VmSpec::default();
    let own = own.unwrap_or(&empty);
    match (&own.kernel, &own.firmware) {
        (Some(_), Some(_)) => r.error(
            at!["vm", "firmware"],
            "set either \"kernel\" or \"firmware\", not both",
        ),
        (None, Some(_)) => {
            for (field, present) in [
                ("initramfs", own.initramfs.is_some()),
                ("cmdline", own.cmdline.is_some()),
            ] {
                if present {
                    r.error(
                        at!["vm", field],
                        format!("\"{field}\" needs \"kernel\"; a firmware boots the disk image"),
                    );
                }
            }
        }
        (Some(_) | None, None) => {}
    }
    let boot = own.over(defaults);
    match (&boot.kernel, &boot.firmware) {
        (None, None) => r.error(
            at!["vm"],
            "nothing to boot: set vm.kernel or vm.firmware in the manifest, or kernel or firmware under [cloud_hypervisor] in the agent's keel.toml (keel validate --config <keel.toml> reads it)",
        ),
        (None, Some(_)) if !has_disk => r.error(
            at!["vm"],
            "a firmware boot needs a disk: set \"image\" to a raw disk image path",
        ),
        (Some(_), _) if !has_disk && boot.initramfs.is_none() => r.error(
            at!["vm"],
            "set \"image\" (a raw disk) or \"vm.initramfs\": the VM has nothing to boot into",
        ),
        (None, Some(_)) | (Some(_), _) => {}
    }
    let paths = [
        ("kernel", &own.kernel),
        ("firmware", &own.firmware),
        ("initramfs", &own.initramfs),
    ];
    for (field, path) in paths {
        if let Some(path) = path {
            if !path.starts_with('/') {
                r.error(
                    at!["vm", field],
                    format!("must be an absolute host path, got {path:?}"),
                );
            }
        }
    }
}

fn environment(d: &DeploymentDecl, r: &mut Report) {
    for (name, value) in &d.environment {
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            r.error(
                at!["environment", name.as_str()],
                format!("{name:?} is not a valid environment variable name (letters, digits and '_', not starting with a digit)"),
            );
        }
        match value {
            EnvValue::Secret(secret) => {
                if let Err(e) = check_secret_name(&secret.secret_ref) {
                    r.error(at!["environment", name.as_str(), "secretRef"], e);
                }
            }
            EnvValue::Plain(_) => {}
        }
    }
}

fn ports(d: &DeploymentDecl, r: &mut Report) {
    let mut seen: BTreeMap<(Option<IpAddr>, _, u32), usize> = BTreeMap::new();
    for (i, port) in d.ports.iter().enumerate() {
        for (field, value) in [("published", port.published), ("target", port.target)] {
            if !(1..=65535).contains(&value) {
                r.error(
                    at!["ports", i, field],
                    format!("port must be between 1 and 65535, got {value}"),
                );
            }
        }
        let host_ip = match host_ip(port) {
            Ok(ip) => ip,
            Err(e) => {
                r.error(at!["ports", i, "host_ip"], e);
                continue;
            }
        };
        if let Some(first) = seen.insert((host_ip, port.protocol, port.published), i) {
            r.error(
                at!["ports", i, "published"],
                format!("port {} is already published by ports[{first}] on the same address and protocol", port.published),
            );
        }
    }
    host_exclusive_ports(d, r);
}

/// A published host port is one instance's per host: several replicas — or cron runs that
/// may overlap — on one host would fail at run time, every time.
fn host_exclusive_ports(d: &DeploymentDecl, r: &mut Report) {
    // A port out of range is reported as such already.
    let Some(port) = d.ports.iter().find(|p| (1..=65535).contains(&p.published)) else {
        return;
    };
    let index = d.ports.iter().position(|p| p == port).unwrap_or(0);
    if d.replicas > 1 {
        r.error(
            at!["ports", index, "published"],
            format!(
                "host port {} can be bound by one instance per host, but replicas: {} starts {} on this host; set replicas: 1, or drop `ports` (instances reach each other on the namespace's network without a host port)",
                port.published, d.replicas, d.replicas
            ),
        );
    }
    let overlapping = d.concurrency == Some(Concurrency::Allow);
    if d.kind == WorkloadKind::CronJob && overlapping {
        r.error(
            at!["concurrency"],
            format!(
                "runs that overlap would each bind host port {}; use concurrency: forbid or replace, or drop `ports`",
                port.published
            ),
        );
    }
}

/// The host address a port binds (`None` = every address).
pub fn host_ip(port: &Port) -> Result<Option<IpAddr>, String> {
    match port.host_ip.as_deref() {
        None => Ok(None),
        Some(text) => text
            .parse::<IpAddr>()
            .map(|ip| (!ip.is_unspecified()).then_some(ip))
            .map_err(|_| format!("{text:?} is not an IP address")),
    }
}

fn volumes(d: &DeploymentDecl, r: &mut Report) {
    for (i, v) in d.volumes.iter().enumerate() {
        if !v.destination.starts_with('/') {
            r.error(
                at!["volumes", i, "destination"],
                format!(
                    "must be an absolute path inside the container, got {:?}",
                    v.destination
                ),
            );
        }
        match v.kind {
            VolumeKind::Bind => {
                if !v.source.starts_with('/') {
                    r.error(
                        at!["volumes", i, "source"],
                        format!(
                            "a bind source must be an absolute host path, got {:?}",
                            v.source
                        ),
                    );
                }
            }
            VolumeKind::Volume => {
                if v.effective_permission() == Permission::Rw && d.replicas > 1 {
                    r.error(
                        at!["volumes", i],
                        format!(
                            "read-write named volume {:?} cannot be shared by {} replicas; use permission: ro or one replica",
                            v.source, d.replicas
                        ),
                    );
                }
            }
            VolumeKind::Config => {
                if v.key.as_deref().is_none_or(str::is_empty) {
                    r.error(
                        at!["volumes", i],
                        "a config volume needs \"key\": the config entry to mount as the file",
                    );
                }
            }
            VolumeKind::Secret => {
                if let Err(e) = check_secret_name(&v.source) {
                    r.error(at!["volumes", i, "source"], e);
                }
            }
        }
        volume_driver(i, v, r);
        let read_only_kind = matches!(v.kind, VolumeKind::Config | VolumeKind::Secret);
        if read_only_kind && v.permission == Some(Permission::Rw) {
            r.error(
                at!["volumes", i, "permission"],
                format!(
                    "{} volumes are always read-only; write permission: ro or leave it out",
                    v.kind.as_str()
                ),
            );
        }
    }
}

/// Ring's `driver` on any volume: `local` is a no-op where it means nothing (a warning), `nfs`
/// is refused, another Docker plugin applies to named volumes only.
fn volume_driver(i: usize, v: &Volume, r: &mut Report) {
    let Some(driver) = v.driver.as_deref() else {
        return;
    };
    let at = || at!["volumes", i, "driver"];
    match (driver, v.kind) {
        ("nfs", _) => r.error(
            at(),
            "driver nfs is not supported: keel mounts local storage only; mount the share on the host and use a bind volume below a path the agent allows",
        ),
        ("local", VolumeKind::Volume) => {}
        ("local", VolumeKind::Bind | VolumeKind::Config | VolumeKind::Secret) => r.warning(
            at(),
            format!(
                "driver: local has no effect on a {} volume (Ring requires the field; keel ignores it here)",
                v.kind.as_str()
            ),
        ),
        (_, VolumeKind::Volume) => {}
        (other, VolumeKind::Bind | VolumeKind::Config | VolumeKind::Secret) => r.error(
            at(),
            format!("driver {other:?} only applies to type: volume"),
        ),
    }
}

fn health_check(i: usize, c: &HealthCheck, r: &mut Report) {
    let needed = match c.kind {
        CheckKind::Tcp => "port",
        CheckKind::Http => "url",
        CheckKind::Command => "command",
    };
    let present = [
        ("port", c.port.is_some()),
        ("url", c.url.is_some()),
        ("command", c.command.is_some()),
    ];
    for (field, is_present) in present {
        if field == needed && !is_present {
            r.error(
                at!["health_checks", i],
                format!("{} check needs \"{field}\"", article(c.kind)),
            );
        } else if field != needed && is_present {
            r.error(
                at!["health_checks", i, field],
                format!(
                    "\"{field}\" does not apply to {} check (it uses \"{needed}\")",
                    article(c.kind)
                ),
            );
        }
    }
    if let Some(port) = c.port {
        if !(1..=65535).contains(&port) {
            r.error(
                at!["health_checks", i, "port"],
                format!("port must be between 1 and 65535, got {port}"),
            );
        }
    }
    if let Some(url) = &c.url {
        let rest = url.strip_prefix("http://");
        if url.starts_with("https://") {
            r.error(
                at!["health_checks", i, "url"],
                format!("{url:?}: https probes are not supported; probe the instance's plain http port (it is reached inside its own network)"),
            );
        } else if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            r.error(
                at!["health_checks", i, "url"],
                format!("{url:?} is not an http:// URL with a host"),
            );
        }
    }
    if c.interval.as_millis() == 0 {
        r.error(
            at!["health_checks", i, "interval"],
            "interval must be greater than 0",
        );
    }
    if c.timeout.as_millis() == 0 {
        r.error(
            at!["health_checks", i, "timeout"],
            "timeout must be greater than 0",
        );
    }
    if c.threshold == 0 {
        r.error(
            at!["health_checks", i, "threshold"],
            "threshold must be at least 1",
        );
    }
    if c.min_healthy_time.is_some() && !c.readiness {
        r.warning(
            at!["health_checks", i, "min_healthy_time"],
            "min_healthy_time only applies to readiness checks (set readiness: true); it is ignored here",
        );
    }
}

/// "a tcp", "an http", "a command".
fn article(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Tcp => "a tcp",
        CheckKind::Http => "an http",
        CheckKind::Command => "a command",
    }
}

fn resources(d: &DeploymentDecl, r: &mut Report) {
    let Some(res) = &d.resources else { return };
    let (Some(limits), Some(requests)) = (&res.limits, &res.requests) else {
        return;
    };
    let pairs: [(&str, Option<u64>, Option<u64>); 2] = [
        (
            "cpu",
            requests.cpu.map(|c| c.millicores()),
            limits.cpu.map(|c| c.millicores()),
        ),
        (
            "memory",
            requests.memory.map(|m| m.bytes()),
            limits.memory.map(|m| m.bytes()),
        ),
    ];
    for (field, request, limit) in pairs {
        if let (Some(request), Some(limit)) = (request, limit) {
            if request > limit {
                r.error(
                    at!["resources", "requests", field],
                    format!("the {field} request is larger than its limit"),
                );
            }
        }
    }
}

/// Checks a Docker image reference: `[registry[:port]/]path[:tag][@algorithm:hex]`.
pub fn check_image_reference(image: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{image:?} is not a valid image reference: {why}"));
    if image.is_empty() {
        return bad("it is empty");
    }
    if image.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let valid = digest.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
        if !valid {
            return bad("the digest must look like sha256:<64 hex digits>");
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !tag.starts_with(['.', '-']);
        if !valid {
            return bad("the tag may hold letters, digits, '_', '.' and '-' (at most 128)");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let has_registry = parts.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    if has_registry {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        let port_ok = port.is_empty() || port.parse::<u16>().is_ok();
        if !host_ok || !port_ok || (first.contains(':') && port.is_empty()) {
            return bad("the registry host is malformed");
        }
        parts.remove(0);
    }
    for part in parts {
        if !valid_path_component(part) {
            return bad("repository names use lower-case letters, digits and single separators ('.', '_', '__' or '-') between them");
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "keel-test/busybox:latest",
            "library/nginx",
            "registry.example.com/team/app:v1.2.3",
            "localhost:5000/app",
            "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_app__x",
        ] {
            assert_eq!(check_image_reference(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "app@sha256:xyz",
            "-app",
            "app_",
            "reg:port/app",
        ] {
            assert!(check_image_reference(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("web-1").is_ok());
        for bad in ["", "Web", "web_1", "-web", "web-", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
