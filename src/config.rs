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
    /// The reconcile tick (default `2s`).
    pub tick: Option<String>,
    #[serde(default)]
    pub git: GitConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub manifests: ManifestsConfig,
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
    /// Keep `/metrics` open even when tokens are set (for a scraper without one).
    #[serde(default)]
    pub public_metrics: bool,
}

impl std::fmt::Debug for ApiConfig {
    // Tokens are credentials: never in logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
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

/// The API token for the CLI, from `KEEL_TOKEN`.
pub fn api_token_from_env() -> Option<String> {
    std::env::var("KEEL_TOKEN").ok().filter(|t| !t.is_empty())
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
            tick: None,
            git: GitConfig::default(),
            hooks: HooksConfig::default(),
            manifests: ManifestsConfig::default(),
        }
    }
}

impl AgentConfig {
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
    pub tick: crate::model::units::Duration,
    pub git_token: Option<String>,
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
        let duration =
            |name: &str, value: Option<&str>, default: &str, problems: &mut Vec<String>| {
                value
                    .unwrap_or(default)
                    .parse::<crate::model::units::Duration>()
                    .map_err(|e| problems.push(format!("{name}: {e}")))
                    .ok()
            };
        let poll_interval = duration(
            "poll_interval",
            config.poll_interval.as_deref(),
            "30s",
            problems,
        );
        let tick = duration("tick", config.tick.as_deref(), "2s", problems);
        let git_token = match &config.git.token_file {
            Some(file) => std::fs::read_to_string(file)
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    problems.push(format!(
                        "git.token_file: cannot read {}: {}",
                        file.display(),
                        e.kind()
                    ))
                })
                .ok(),
            None => std::env::var("KEEL_GIT_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        let db = config
            .db
            .clone()
            .unwrap_or_else(|| config.state_dir.join("keel.db"));
        Some(Self {
            source: source?,
            source_path: config.path.clone(),
            db,
            listen: listen?,
            log_json,
            poll_interval: poll_interval?,
            tick: tick?,
            git_token,
            config,
        })
    }
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
