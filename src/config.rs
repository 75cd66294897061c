//! The agent's configuration: `keel.toml`, the only place (with the environment and flags
//! that later override it) where an operator grants power — bind-mount roots, the secrets
//! directory, the Docker socket. This module is the only reader of the environment.
//!
//! Unknown keys are errors naming the file, line and the nearest valid key; every path is
//! kept as written (relative paths are relative to the agent's working directory).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::docker::Settings as DockerSettings;

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

    /// The Docker runtime's settings.
    pub fn docker_settings(&self) -> DockerSettings {
        DockerSettings {
            socket: self.docker.socket.clone(),
            bind_allow: self.docker.bind_allow.clone(),
            secrets_dir: self.secrets_dir.clone(),
            state_dir: self.state_dir.clone(),
            owner: self.node.clone(),
        }
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
