//! The agent's configuration: `keel.toml`, the only place (with the environment and flags
//! that later override it) where an operator grants power — bind-mount roots, the secrets
//! directory, the Docker socket. This module is the only reader of the environment.
//!
//! Unknown keys are errors naming the file, line and the nearest valid key; every path is
//! kept as written (relative paths are relative to the agent's working directory).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `keel.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This host's name: the owner label of everything the agent creates, and the commit
    /// status context `keel/<node>`. Default: the host name.
    #[serde(default = "default_node")]
    pub node: String,
    /// Where the agent keeps rendered config files, checkouts and (by default) its database.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where `secretRef: NAME` reads the file `NAME`.
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    #[serde(default)]
    pub docker: DockerConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// What to follow: a directory, or a Git URL (`https://…`, `ssh://…`, `git://…`, `file://…`).
    pub source: Option<String>,
    /// The branch to follow (default: the remote's HEAD).
    pub branch: Option<String>,
    /// A tag to follow instead of a branch.
    pub tag: Option<String>,
    /// A commit to pin (new commits are ignored).
    pub commit: Option<String>,
    /// Only manifests below this directory of the source.
    pub path: Option<String>,
    /// The SQLite database (default `<state_dir>/keel.db`).
    pub db: Option<PathBuf>,
    /// Where the API listens (default `127.0.0.1:7878`).
    pub listen: Option<String>,
    /// `human` (default) or `json`.
    pub log_format: Option<String>,
    /// How often a Git source asks the remote whether the ref moved (default `30s`).
    pub poll_interval: Option<String>,
    /// The longest the reconciler rests without a reason to look at the host (default `5m`):
    /// the safety net for a lost runtime event. Events, probe changes, new revisions and due
    /// timers wake it at once.
    pub resync: Option<String>,
    /// How long each new instance of a worker without readiness checks must keep running
    /// before the worker counts toward its revision's success (default `10s`; a deployment's
    /// own `stable_after` wins). `0s` counts it as soon as it runs.
    pub stable_after: Option<String>,
    #[serde(default)]
    pub git: GitConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub rollback: RollbackConfig,
    #[serde(default)]
    pub manifests: ManifestsConfig,
    /// Where this agent's API is reachable from outside (for commit-status links).
    pub public_url: Option<String>,
    /// `[[webhooks]]`: endpoints that receive signed notifications.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[forge]`: where commit statuses are posted (Git sources only).
    pub forge: Option<ForgeConfig>,
    #[serde(default)]
    pub notifier: NotifierConfig,
    #[serde(default)]
    pub cloud_hypervisor: CloudHypervisorConfig,
    /// `[variables]`: Ring's `$VAR`s in manifests; without it, `$` is taken literally.
    pub variables: Option<VariablesConfig>,
}

/// `[variables]`: where the values of `$VAR` / `${VAR}` in manifests come from. Never from the
/// repository, and never from the agent's environment unless a name is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariablesConfig {
    /// dotenv files (`NAME=value` lines), read in order (a later file wins).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Names taken from the agent's environment (they win over the files).
    #[serde(default)]
    pub from_env: Vec<String>,
}

/// `[cloud_hypervisor]`: the microVM runtime. It is enabled when its binary exists and
/// `/dev/kvm` is usable; otherwise its deployments hold, with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudHypervisorConfig {
    /// The `cloud-hypervisor` binary (default: found on PATH); `KEEL_CH_BINARY` overrides it.
    pub binary: Option<PathBuf>,
    /// Where each VM's directory (API socket, logs, disk copy) lives (default
    /// `<state_dir>/vms`).
    pub state_dir: Option<PathBuf>,
    /// The range each VM's /30 comes from (default `10.213.0.0/16`).
    pub network: Option<String>,
    /// A kernel for deployments whose `vm` block names none.
    pub kernel: Option<String>,
    pub initramfs: Option<String>,
    pub cmdline: Option<String>,
    pub firmware: Option<String>,
}

impl CloudHypervisorConfig {
    /// The boot defaults it sets, as a `vm` block would name them.
    pub fn boot(&self) -> crate::model::manifest::VmSpec {
        crate::model::manifest::VmSpec {
            kernel: self.kernel.clone(),
            firmware: self.firmware.clone(),
            initramfs: self.initramfs.clone(),
            cmdline: self.cmdline.clone(),
        }
    }
}

/// `[cloud_hypervisor]` resolved: the binary found (or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudHypervisorSettings {
    pub binary: Result<PathBuf, String>,
    pub state_dir: PathBuf,
    pub network: String,
    /// The boot of VM deployments whose `vm` block names none (`VmSpec::over`).
    pub boot: crate::model::manifest::VmSpec,
}

/// One `[[webhooks]]` endpoint.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// `whsec_<base64>` (or `secret_file`).
    pub secret: Option<String>,
    /// A file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// Notification types to send (default: all).
    pub events: Option<Vec<String>>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// `[forge]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeConfig {
    /// `github`, `gitea` or `gitlab`.
    pub kind: String,
    /// e.g. `https://api.github.com`, `https://gitea.example/api/v1`, `https://gitlab.example/api/v4`.
    pub api_url: String,
    /// `owner/name` (GitLab: or the numeric project id).
    pub repository: String,
    /// A file holding the token (or `token_env`).
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the token.
    pub token_env: Option<String>,
    /// Also one commit status per deployment, `keel/<node>/<namespace>/<name>`.
    #[serde(default)]
    pub per_deployment_contexts: bool,
}

impl std::fmt::Debug for ForgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeConfig")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// `[notifier]`: delivery retries and retention.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Waits after the first failures (default `["5s", "30s", "2m", "10m", "30m", "1h"]`).
    pub retry_schedule: Option<Vec<String>>,
    /// The wait after every later failure (default `2h`).
    pub retry_every: Option<String>,
    /// Dead-letter a delivery this long after it was created (default `24h`).
    pub give_up_after: Option<String>,
    /// Keep delivered and dead deliveries this long (default `168h`, 7 days).
    pub retention: Option<String>,
    /// The timeout of one attempt (default `10s`).
    pub attempt_timeout: Option<String>,
}

/// A webhook endpoint with its secret read.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub events: Option<Vec<crate::model::event::NotificationKind>>,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The forge with its token read.
#[derive(Clone, PartialEq, Eq)]
pub struct ForgeSettings {
    pub kind: ForgeChoice,
    pub api_url: String,
    pub repository: String,
    pub token: String,
    pub per_deployment_contexts: bool,
}

impl std::fmt::Debug for WebhookSettings {
    // The secret never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ForgeSettings {
    // The token never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeSettings")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// The forges `[forge] kind` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeChoice {
    Github,
    Gitea,
    Gitlab,
}

/// Retries and retention, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub retry_schedule: Vec<crate::model::units::Duration>,
    pub retry_every: crate::model::units::Duration,
    pub give_up_after: crate::model::units::Duration,
    pub retention: crate::model::units::Duration,
    pub attempt_timeout: crate::model::units::Duration,
}

/// `[manifests]`: how much one revision may ask of the loader (unset: keel's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestsConfig {
    /// Largest manifest file, in bytes (default 1 MiB).
    pub max_file_bytes: Option<u64>,
    /// Largest total size of a revision's manifests, in bytes (default 64 MiB).
    pub max_revision_bytes: Option<u64>,
    /// Most YAML nodes one document may hold, as written (default 2,000,000).
    pub max_document_nodes: Option<u64>,
    /// Most nodes aliases may add to one document when expanded (default 100,000).
    pub max_alias_nodes: Option<u64>,
}

/// `[git]`: credentials for the source repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// A private key for `ssh://` remotes.
    pub ssh_key: Option<PathBuf>,
    /// OpenSSH known_hosts checked for `ssh://` remotes (required with them).
    pub known_hosts: Option<PathBuf>,
    /// A file holding an HTTPS token (or set `KEEL_GIT_TOKEN`).
    pub token_file: Option<PathBuf>,
}

/// `[rollback]`: what becomes of a revision that fails at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// `on` (default): the host returns to the last good revision and the failed one's desired
    /// state is quarantined; `off`: the failure stays in place until a new commit fixes it.
    #[serde(default)]
    pub mode: RollbackSetting,
}

/// See `RollbackConfig::mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackSetting {
    #[default]
    On,
    Off,
}

/// `[hooks]`: the push receivers' secrets.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub gitea: Option<String>,
    /// Standard Webhooks secret, `whsec_<base64>`.
    pub generic: Option<String>,
}

impl std::fmt::Debug for HooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HooksConfig { [secrets hidden] }")
    }
}

/// `[api]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer tokens that may read the API; none: the API is open (bind it to loopback).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Bearer tokens that may also make an operator's change (clear a cron job's failed runs,
    /// `keel clear-runs`); they read as well. None: the API changes nothing.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Keep `/metrics` open even when tokens are set (for a scraper without one).
    #[serde(default)]
    pub public_metrics: bool,
}

impl std::fmt::Debug for ApiConfig {
    // Tokens are credentials: never in logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .field(
                "admin_tokens",
                &format_args!("[{} hidden]", self.admin_tokens.len()),
            )
            .field("public_metrics", &self.public_metrics)
            .finish()
    }
}

/// `[docker]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock`; default: `DOCKER_HOST`, else the default socket.
    pub socket: Option<String>,
    /// Host paths a manifest may bind-mount (and everything below them). Default: none.
    #[serde(default)]
    pub bind_allow: Vec<PathBuf>,
    /// Whether a manifest's `config.user.privileged: true` may run. Default: false — a
    /// repository writer must not be able to take the host.
    #[serde(default)]
    pub allow_privileged: bool,
    /// Whether pulls may use the agent user's own Docker credentials (`auths` of
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) when a deployment names
    /// none. Default: false.
    #[serde(default)]
    pub use_host_auth: bool,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The variables of dotenv `files` (in order, a later file winning), then of the agent's
/// environment for the names in `from_env` (a listed name that is not set is an error).
pub fn read_variables(
    files: &[PathBuf],
    from_env: &[String],
) -> Result<crate::manifest::vars::Variables, ConfigError> {
    let mut variables = crate::manifest::vars::Variables::new();
    for file in files {
        variables.extend(read_dotenv(file)?);
    }
    for name in from_env {
        let value = std::env::var(name).map_err(|_| ConfigError::Invalid {
            path: "keel.toml".to_owned(),
            line: 1,
            column: 1,
            message: format!(
                "[variables] from_env lists {name}, which is not set in the agent's environment"
            ),
        })?;
        variables.insert(name.clone(), value);
    }
    Ok(variables)
}

/// A dotenv file: `NAME=value` lines (an optional `export ` before the name); blank lines and
/// lines starting with `#` are skipped; a value in double quotes takes `\n`, `\"` and `\\`
/// escapes, one in single quotes is taken as written, an unquoted one is trimmed.
pub fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            line: index + 1,
            column: 1,
            message,
        };
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(invalid(format!("expected NAME=value, got {line:?}")));
        };
        let name = name.trim();
        if !crate::manifest::vars::is_name(name) {
            return Err(invalid(format!("{name:?} is not a variable name (letters, digits and _, not starting with a digit)")));
        }
        out.push((
            name.to_owned(),
            dotenv_value(value.trim()).map_err(invalid)?,
        ));
    }
    Ok(out)
}

fn dotenv_value(raw: &str) -> Result<String, String> {
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_owned)
            .ok_or_else(|| "a value opened with ' must end with '".to_owned());
    }
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(raw.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "a value opened with \" must end with \"".to_owned())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    Ok(out)
}

/// The agent user's Docker config file: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json` (`None` without either variable).
pub fn host_docker_config() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("DOCKER_CONFIG")
        .map(|dir| PathBuf::from(dir).join("config.json"))
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")))
}

/// The API token for the CLI, from `KEEL_TOKEN`.
pub fn api_token_from_env() -> Option<String> {
    std::env::var("KEEL_TOKEN").ok().filter(|t| !t.is_empty())
}

/// Whether the user asked for no colours (`NO_COLOR` set and not empty; no-color.org).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel".to_owned())
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("keel-state")
}

fn default_secrets_dir() -> PathBuf {
    PathBuf::from("/etc/keel/secrets")
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node: default_node(),
            state_dir: default_state_dir(),
            secrets_dir: default_secrets_dir(),
            docker: DockerConfig::default(),
            api: ApiConfig::default(),
            source: None,
            branch: None,
            tag: None,
            commit: None,
            path: None,
            db: None,
            listen: None,
            log_format: None,
            poll_interval: None,
            resync: None,
            stable_after: None,
            git: GitConfig::default(),
            hooks: HooksConfig::default(),
            rollback: RollbackConfig::default(),
            manifests: ManifestsConfig::default(),
            public_url: None,
            webhooks: Vec::new(),
            forge: None,
            notifier: NotifierConfig::default(),
            cloud_hypervisor: CloudHypervisorConfig::default(),
            variables: None,
        }
    }
}

impl AgentConfig {
    /// What loading a revision depends on: keel's limits overridden by `[manifests]`, and the
    /// `[cloud_hypervisor]` boot defaults.
    pub fn manifest_limits(&self) -> Result<crate::manifest::Limits, ConfigError> {
        let mut limits = crate::manifest::Limits::default();
        let (config, size) = (&self.manifests, &mut limits.size);
        size.max_file_bytes = config.max_file_bytes.unwrap_or(size.max_file_bytes);
        size.max_revision_bytes = config.max_revision_bytes.unwrap_or(size.max_revision_bytes);
        let yaml = &mut limits.yaml;
        yaml.max_document_nodes = config.max_document_nodes.unwrap_or(yaml.max_document_nodes);
        yaml.max_alias_nodes = config.max_alias_nodes.unwrap_or(yaml.max_alias_nodes);
        limits.vm_defaults = self.cloud_hypervisor.boot();
        limits.variables = self
            .variables
            .as_ref()
            .map(|v| read_variables(&v.files, &v.from_env))
            .transpose()?;
        Ok(limits)
    }

    /// Reads `keel.toml`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses the text of a `keel.toml` named `path` (for messages).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: describe(e.message()),
            }
        })
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest name suggested.
fn describe(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.trim().to_owned();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.trim().to_owned();
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match crate::manifest::nearest(field, &names) {
        Some(best) => format!("unknown key {field:?}, did you mean {best:?}?"),
        None => format!(
            "unknown key {field:?}; expected one of: {}",
            names.join(", ")
        ),
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, str::len) + 1;
    (line, column)
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub source: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit: Option<String>,
    pub path: Option<String>,
    pub db: Option<PathBuf>,
    pub listen: Option<String>,
    pub log_format: Option<String>,
}

/// What the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Directory(PathBuf),
    Git {
        url: String,
        reference: GitReference,
    },
}

/// What a Git source follows (`--branch`, `--tag`, `--commit`, or none of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitReference {
    /// The remote's default branch (its HEAD).
    DefaultBranch,
    Branch(String),
    Tag(String),
    Commit(String),
}

/// Everything `keel agent` runs with, resolved from flags, then `KEEL_*`, then `keel.toml`,
/// then defaults.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub config: AgentConfig,
    pub source: SourceKind,
    pub source_path: Option<String>,
    pub db: PathBuf,
    pub listen: std::net::SocketAddr,
    pub log_json: bool,
    pub poll_interval: crate::model::units::Duration,
    pub resync: crate::model::units::Duration,
    pub stable_after: crate::model::units::Duration,
    pub git_token: Option<String>,
    pub webhooks: Vec<WebhookSettings>,
    pub forge: Option<ForgeSettings>,
    pub delivery: DeliverySettings,
    pub cloud_hypervisor: CloudHypervisorSettings,
    /// What loading a revision depends on (`AgentConfig::manifest_limits`), variables read.
    pub limits: crate::manifest::Limits,
}

/// Reads the `KEEL_*` variables of the agent.
pub fn env_flags() -> Flags {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Flags {
        config: var("KEEL_CONFIG").map(PathBuf::from),
        source: var("KEEL_SOURCE"),
        branch: var("KEEL_BRANCH"),
        tag: var("KEEL_TAG"),
        commit: var("KEEL_COMMIT"),
        path: var("KEEL_PATH"),
        db: var("KEEL_DB").map(PathBuf::from),
        listen: var("KEEL_LISTEN"),
        log_format: var("KEEL_LOG_FORMAT"),
    }
}

impl AgentSettings {
    /// Merges flags over the environment over the file; every problem is reported at once.
    pub fn resolve(flags: Flags, env: Flags) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let config_path = flags.config.clone().or(env.config.clone());
        let mut config = match &config_path {
            Some(path) => AgentConfig::from_file(path).unwrap_or_else(|e| {
                problems.push(format!("{e:#}"));
                AgentConfig::default()
            }),
            None => AgentConfig::default(),
        };
        let pick =
            |flag: Option<String>, env: Option<String>, file: Option<String>| flag.or(env).or(file);
        config.source = pick(flags.source, env.source, config.source.take());
        config.branch = pick(flags.branch, env.branch, config.branch.take());
        config.tag = pick(flags.tag, env.tag, config.tag.take());
        config.commit = pick(flags.commit, env.commit, config.commit.take());
        config.path = pick(flags.path, env.path, config.path.take());
        config.db = flags.db.or(env.db).or(config.db.take());
        config.listen = pick(flags.listen, env.listen, config.listen.take());
        config.log_format = pick(flags.log_format, env.log_format, config.log_format.take());
        let settings = Self::validate(config, &mut problems);
        match (settings, problems.is_empty()) {
            (Some(settings), true) => Ok(settings),
            _ => Err(problems),
        }
    }

    fn validate(config: AgentConfig, problems: &mut Vec<String>) -> Option<Self> {
        let source = match config.source.as_deref() {
            None => {
                problems.push(
                    "no source: pass --source DIR|URL, set KEEL_SOURCE, or `source` in keel.toml"
                        .to_owned(),
                );
                None
            }
            Some(s) => source_kind(s, &config, problems),
        };
        let listen = config.listen.as_deref().unwrap_or("127.0.0.1:7878");
        let listen = listen
            .parse()
            .map_err(|_| {
                problems.push(format!(
                    "listen: {listen:?} is not an address like 127.0.0.1:7878"
                ))
            })
            .ok();
        let log_json = match config.log_format.as_deref().unwrap_or("human") {
            "human" => false,
            "json" => true,
            other => {
                problems.push(format!("log_format: {other:?} is neither human nor json"));
                false
            }
        };
        let poll_interval = duration(
            "poll_interval",
            config.poll_interval.as_deref(),
            "30s",
            problems,
        );
        let resync = duration("resync", config.resync.as_deref(), "5m", problems);
        let stable_after = duration(
            "stable_after",
            config.stable_after.as_deref(),
            "10s",
            problems,
        );
        let git_token = match &config.git.token_file {
            Some(file) => read_secret("git.token_file", file, problems),
            None => std::env::var("KEEL_GIT_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        let db = config
            .db
            .clone()
            .unwrap_or_else(|| config.state_dir.join("keel.db"));
        let webhooks = config
            .webhooks
            .iter()
            .enumerate()
            .filter_map(|(i, w)| webhook(i, w, problems))
            .collect();
        let forge = config.forge.as_ref().and_then(|f| forge(f, problems));
        let delivery = delivery(&config.notifier, problems);
        if let Some(url) = &config.public_url {
            if !is_http_url(url) {
                problems.push(format!("public_url: {url:?} is not an http(s) URL"));
            }
        }
        for (key, tokens) in [
            ("api.tokens", &config.api.tokens),
            ("api.admin_tokens", &config.api.admin_tokens),
        ] {
            if tokens.iter().any(|t| t.trim().is_empty()) {
                problems.push(format!(
                    "{key}: an empty token would let anyone in; remove it"
                ));
            }
        }
        let cloud_hypervisor = cloud_hypervisor(&config);
        let limits = config
            .manifest_limits()
            .map_err(|e| problems.push(format!("{e:#}")))
            .ok();
        Some(Self {
            limits: limits?,
            cloud_hypervisor,
            webhooks,
            forge,
            delivery: delivery?,
            source: source?,
            source_path: config.path.clone(),
            db,
            listen: listen?,
            log_json,
            poll_interval: poll_interval?,
            resync: resync?,
            stable_after: stable_after?,
            git_token,
            config,
        })
    }
}

/// `[cloud_hypervisor]`, with the binary looked up: `KEEL_CH_BINARY`, then `binary`, then
/// `cloud-hypervisor` on PATH.
fn cloud_hypervisor(config: &AgentConfig) -> CloudHypervisorSettings {
    let ch = &config.cloud_hypervisor;
    let chosen = std::env::var_os("KEEL_CH_BINARY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| ch.binary.clone());
    let binary = match chosen {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(format!("no cloud-hypervisor binary at {}", path.display())),
        None => std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("cloud-hypervisor"))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| {
                "no cloud-hypervisor binary on PATH (set [cloud_hypervisor] binary or KEEL_CH_BINARY)"
                    .to_owned()
            }),
    };
    CloudHypervisorSettings {
        binary,
        state_dir: ch
            .state_dir
            .clone()
            .unwrap_or_else(|| config.state_dir.join("vms")),
        network: ch
            .network
            .clone()
            .unwrap_or_else(|| "10.213.0.0/16".to_owned()),
        boot: ch.boot(),
    }
}

/// `[[webhooks]]` number `index`, with its secret read.
fn webhook(index: usize, w: &WebhookConfig, problems: &mut Vec<String>) -> Option<WebhookSettings> {
    let at = format!("webhooks[{index}]");
    if !is_http_url(&w.url) {
        problems.push(format!("{at}.url: not an http(s) URL"));
    }
    let secret = match (&w.secret, &w.secret_file) {
        (Some(secret), None) => Some(secret.trim().to_owned()),
        (None, Some(file)) => read_secret(&format!("{at}.secret_file"), file, problems),
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: set secret or secret_file, not both"));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{at}: a secret (whsec_<base64>) is required: secret or secret_file"
            ));
            None
        }
    };
    if let Some(secret) = &secret {
        if !secret.starts_with("whsec_") {
            problems.push(format!("{at}: the secret must look like whsec_<base64>"));
        }
    }
    let events = w.events.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|name| {
                name.parse()
                    .map_err(|e| problems.push(format!("{at}.events: {e}")))
                    .ok()
            })
            .collect()
    });
    Some(WebhookSettings {
        url: w.url.clone(),
        secret: secret?,
        events,
        headers: w.headers.clone(),
    })
}

/// `[forge]`, with its token read.
fn forge(f: &ForgeConfig, problems: &mut Vec<String>) -> Option<ForgeSettings> {
    let kind = match f.kind.as_str() {
        "github" => Some(ForgeChoice::Github),
        "gitea" | "forgejo" => Some(ForgeChoice::Gitea),
        "gitlab" => Some(ForgeChoice::Gitlab),
        other => {
            problems.push(format!(
                "forge.kind: {other:?} is not one of github, gitea, gitlab"
            ));
            None
        }
    };
    if !is_http_url(&f.api_url) {
        problems.push("forge.api_url: not an http(s) URL".to_owned());
    }
    if f.repository.is_empty() {
        problems.push("forge.repository: owner/name is required".to_owned());
    }
    let token = match (&f.token_file, &f.token_env) {
        (Some(file), None) => read_secret("forge.token_file", file, problems),
        (None, Some(name)) => {
            let token = std::env::var(name).ok().filter(|t| !t.is_empty());
            if token.is_none() {
                problems.push(format!("forge.token_env: {name} is not set"));
            }
            token
        }
        (Some(_), Some(_)) => {
            problems.push("forge: set token_file or token_env, not both".to_owned());
            None
        }
        (None, None) => {
            problems.push("forge: a token is required: token_file or token_env".to_owned());
            None
        }
    };
    Some(ForgeSettings {
        kind: kind?,
        api_url: f.api_url.clone(),
        repository: f.repository.clone(),
        token: token?,
        per_deployment_contexts: f.per_deployment_contexts,
    })
}

fn read_secret(key: &str, file: &Path, problems: &mut Vec<String>) -> Option<String> {
    std::fs::read_to_string(file)
        .map(|t| t.trim().to_owned())
        .map_err(|e| {
            problems.push(format!(
                "{key}: cannot read {}: {}",
                file.display(),
                e.kind()
            ))
        })
        .ok()
}

/// `value` (or `default` when unset) as a duration; a bad one becomes a problem naming `key`.
fn duration(
    key: &str,
    value: Option<&str>,
    default: &str,
    problems: &mut Vec<String>,
) -> Option<crate::model::units::Duration> {
    value
        .unwrap_or(default)
        .parse()
        .map_err(|e| problems.push(format!("{key}: {e}")))
        .ok()
}

/// An absolute `http://` or `https://` URL (what keel can post to).
fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `[notifier]`, parsed, with keel's defaults.
fn delivery(n: &NotifierConfig, problems: &mut Vec<String>) -> Option<DeliverySettings> {
    let mut parse = |key: &str, value: Option<&str>, default: &str| {
        duration(&format!("notifier.{key}"), value, default, problems)
    };
    let retry_every = parse("retry_every", n.retry_every.as_deref(), "2h");
    let give_up_after = parse("give_up_after", n.give_up_after.as_deref(), "24h");
    let retention = parse("retention", n.retention.as_deref(), "168h");
    let attempt_timeout = parse("attempt_timeout", n.attempt_timeout.as_deref(), "10s");
    let defaults = ["5s", "30s", "2m", "10m", "30m", "1h"]
        .map(str::to_owned)
        .to_vec();
    let schedule: Vec<_> = n
        .retry_schedule
        .as_ref()
        .unwrap_or(&defaults)
        .iter()
        .map(|step| parse("retry_schedule", Some(step), ""))
        .collect();
    Some(DeliverySettings {
        retry_schedule: schedule.into_iter().collect::<Option<_>>()?,
        retry_every: retry_every?,
        give_up_after: give_up_after?,
        retention: retention?,
        attempt_timeout: attempt_timeout?,
    })
}

fn source_kind(
    source: &str,
    config: &AgentConfig,
    problems: &mut Vec<String>,
) -> Option<SourceKind> {
    let is_url = ["https://", "http://", "ssh://", "git://", "file://", "git@"]
        .iter()
        .any(|p| source.starts_with(p));
    let refs = [
        ("branch", &config.branch),
        ("tag", &config.tag),
        ("commit", &config.commit),
    ];
    let given: Vec<&str> = refs
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(n, _)| *n)
        .collect();
    if given.len() > 1 {
        problems.push(format!(
            "set only one of branch, tag and commit (got {})",
            given.join(", ")
        ));
    }
    if !is_url {
        if !given.is_empty() {
            problems.push(format!(
                "{} only applies to a Git source; {source:?} is a directory",
                given.join(", ")
            ));
        }
        return Some(SourceKind::Directory(PathBuf::from(source)));
    }
    let reference = match (&config.branch, &config.tag, &config.commit) {
        (Some(b), _, _) => GitReference::Branch(b.clone()),
        (None, Some(t), _) => GitReference::Tag(t.clone()),
        (None, None, Some(c)) => GitReference::Commit(c.clone()),
        (None, None, None) => GitReference::DefaultBranch,
    };
    Some(SourceKind::Git {
        url: source.to_owned(),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_files_read_as_operators_write_them_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vars.env");
        std::fs::write(
            &file,
            "# registry\n\nREGISTRY=registry.example.com\nexport TAG = 1.4 \nGREETING=\"hello\\nworld\"\nRAW='a $b \\n'\nEMPTY=\n",
        )
        .unwrap();
        let read = read_dotenv(&file).unwrap();
        let expected = [
            ("REGISTRY", "registry.example.com"),
            ("TAG", "1.4"),
            ("GREETING", "hello\nworld"),
            ("RAW", "a $b \\n"),
            ("EMPTY", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(read, expected);

        std::fs::write(&file, "OK=1\n1BAD=x\n").unwrap();
        let error = read_dotenv(&file).unwrap_err().to_string();
        assert!(error.ends_with(":2:1: \"1BAD\" is not a variable name (letters, digits and _, not starting with a digit)"), "{error}");
        std::fs::write(&file, "NOVALUE\n").unwrap();
        let error = read_dotenv(&file).unwrap_err().to_string();
        assert!(
            error.ends_with(":1:1: expected NAME=value, got \"NOVALUE\""),
            "{error}"
        );
    }

    #[test]
    fn variables_from_files_then_listed_environment_names() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.env"), dir.path().join("b.env"));
        std::fs::write(&first, "A=1\nB=1\n").unwrap();
        std::fs::write(&second, "B=2\n").unwrap();
        let vars = read_variables(&[first.clone(), second], &["PATH".to_owned()]).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "2", "a later file wins");
        assert!(
            !vars["PATH"].is_empty(),
            "a listed environment name is read"
        );
        assert_eq!(vars.len(), 3, "nothing else of the environment");
        let error = read_variables(&[first], &["KEEL_TEST_SURELY_UNSET_NAME".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("KEEL_TEST_SURELY_UNSET_NAME, which is not set"),
            "{error}"
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let config =
            AgentConfig::from_toml(include_str!("../docs/keel.toml"), "keel.toml").unwrap();
        assert_eq!(config.secrets_dir, PathBuf::from("/etc/keel/secrets"));
        assert_eq!(
            config.docker.socket.as_deref(),
            Some("unix:///var/run/docker.sock")
        );
        assert_eq!(config.docker.bind_allow, vec![PathBuf::from("/srv/keel")]);
    }

    #[test]
    fn api_tokens_never_show_in_debug_output() {
        let config =
            AgentConfig::from_toml("[api]\ntokens = [\"s3cret-token\"]\n", "keel.toml").unwrap();
        assert_eq!(config.api.tokens, ["s3cret-token"]);
        assert!(!format!("{config:?}").contains("s3cret-token"));
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keel.toml");
        std::fs::write(
            &file,
            "source = \"from-file\"\nlisten = \"127.0.0.1:1\"\npath = \"apps\"\n",
        )
        .unwrap();
        let env = Flags {
            source: Some("from-env".into()),
            listen: Some("127.0.0.1:2".into()),
            ..Flags::default()
        };
        let flags = Flags {
            config: Some(file),
            source: Some("from-flag".into()),
            ..Flags::default()
        };
        let s = AgentSettings::resolve(flags, env).unwrap();
        assert_eq!(s.source, SourceKind::Directory(PathBuf::from("from-flag")));
        assert_eq!(s.listen.to_string(), "127.0.0.1:2");
        assert_eq!(s.source_path.as_deref(), Some("apps"));
        assert_eq!(s.db, PathBuf::from("keel-state/keel.db"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let flags = Flags {
            listen: Some("nowhere".into()),
            log_format: Some("xml".into()),
            branch: Some("main".into()),
            ..Flags::default()
        };
        let problems = AgentSettings::resolve(flags, Flags::default()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("no source"));
        let flags = Flags {
            source: Some("repo".into()),
            listen: Some("nowhere".into()),
            log_format: Some("xml".into()),
            branch: Some("main".into()),
            ..Flags::default()
        };
        let problems = AgentSettings::resolve(flags, Flags::default()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("only applies to a Git source")));
    }

    /// Resolves `keel.toml` text with `--source repo`.
    #[test]
    fn an_empty_api_token_is_refused() {
        let problems =
            resolve_toml("[api]\ntokens = [\"ok\"]\nadmin_tokens = [\"\"]\n").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p == "api.admin_tokens: an empty token would let anyone in; remove it"),
            "{problems:?}"
        );
    }

    fn resolve_toml(text: &str) -> Result<AgentSettings, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.toml");
        std::fs::write(&path, text).unwrap();
        let flags = Flags {
            config: Some(path),
            source: Some("https://git.example/ops.git".into()),
            ..Flags::default()
        };
        AgentSettings::resolve(flags, Flags::default())
    }

    #[test]
    fn webhooks_and_the_forge_read_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("webhook.secret");
        std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let token = dir.path().join("forge.token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let text = format!(
            "public_url = \"https://keel.example\"\n[[webhooks]]\nurl = \"https://ci.example/hook\"\nsecret_file = {secret:?}\nevents = [\"revision.status_changed\"]\nheaders = {{ \"X-Team\" = \"ops\" }}\n[forge]\nkind = \"gitlab\"\napi_url = \"https://gitlab.example/api/v4\"\nrepository = \"ops/deploy\"\ntoken_file = {token:?}\n[notifier]\nretry_schedule = [\"1s\", \"2s\"]\n"
        );
        let s = resolve_toml(&text).unwrap();
        assert_eq!(s.webhooks.len(), 1);
        assert_eq!(
            s.webhooks[0].secret,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        assert_eq!(
            s.webhooks[0].events,
            Some(vec![
                crate::model::event::NotificationKind::RevisionStatusChanged
            ])
        );
        let forge = s.forge.clone().unwrap();
        assert_eq!(
            (forge.kind, forge.token.as_str()),
            (ForgeChoice::Gitlab, "t0ken")
        );
        assert_eq!(s.delivery.retry_schedule.len(), 2);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("whsec_") && !debug.contains("t0ken"),
            "{debug}"
        );
    }

    #[test]
    fn notifier_problems_are_reported_with_the_rest() {
        let text = "[[webhooks]]\nurl = \"ci.example/hook\"\nevents = [\"deployment.exploded\"]\n[forge]\nkind = \"bitbucket\"\napi_url = \"https://x\"\nrepository = \"a/b\"\ntoken_env = \"KEEL_TEST_NO_SUCH_TOKEN_VAR\"\n[notifier]\nretry_every = \"soon\"\n";
        let problems = resolve_toml(text).unwrap_err();
        for expected in [
            "webhooks[0].url",
            "webhooks[0]: a secret",
            "webhooks[0].events",
            "forge.kind",
            "forge.token_env",
            "notifier.retry_every",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected} missing from {problems:#?}"
            );
        }
    }

    #[test]
    fn git_urls_choose_what_to_follow() {
        let flags = Flags {
            source: Some("https://example.invalid/ops.git".into()),
            tag: Some("v1".into()),
            ..Flags::default()
        };
        let s = AgentSettings::resolve(flags, Flags::default()).unwrap();
        assert_eq!(
            s.source,
            SourceKind::Git {
                url: "https://example.invalid/ops.git".into(),
                reference: GitReference::Tag("v1".into())
            }
        );
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = AgentConfig::from_toml("", "keel.toml").unwrap();
        assert_eq!(config.state_dir, PathBuf::from("keel-state"));
        assert!(config.docker.bind_allow.is_empty());
        assert!(!config.node.is_empty());
    }

    #[test]
    fn unknown_keys_name_the_line_and_the_nearest_key() {
        let err = AgentConfig::from_toml(
            "secrets_dir = \"/s\"\n\n[docker]\nbind_alow = [\"/srv\"]\n",
            "/etc/keel/keel.toml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/keel/keel.toml:4:1: unknown key \"bind_alow\", did you mean \"bind_allow\"?"
        );
    }

    #[test]
    fn wrong_types_name_the_line() {
        let err =
            AgentConfig::from_toml("[docker]\nbind_allow = \"/srv\"\n", "keel.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("keel.toml:2:14: "), "{text}");
    }
}
