//! Registry credentials for a pull, in the order the manifest reference gives: the deployment's
//! `config.image_pull_secret` (a Docker `config.json` in the agent's secrets directory, like
//! Kubernetes' `imagePullSecrets`), then its `config.server` + `username` + `password`
//! (`{secretRef}`), then — when the operator sets `[docker] use_host_auth` — the agent user's
//! own `~/.docker/config.json`. Only `auths` entries are read: credential helpers
//! (`credsStore`, `credHelpers`) are not run. Nothing here logs or returns a password in an
//! error message.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use bollard::auth::DockerCredentials;

use super::build::read_secret;
use crate::model::manifest::{DeploymentConfig, EnvValue};
use crate::runtime::RuntimeError;

/// Docker Hub's names, as image references and config files write them.
const DOCKER_HUB: &str = "index.docker.io";

/// The registry host (with its port) an image reference pulls from.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => normalize(first),
        Some(_) | None => DOCKER_HUB.to_owned(),
    }
}

/// A config file's key (`https://registry.example.com/v1/`, `registry.example.com`, …) as a
/// host: no scheme, no path, Docker Hub's aliases folded into one.
fn normalize(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// One `auths` entry of a Docker config file.
#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(serde::Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

/// The credentials a Docker config file (`config.json`) holds for `registry`; `Err` names what
/// is wrong with the file, never its content.
pub fn from_config_json(text: &str, registry: &str) -> Result<Option<DockerCredentials>, String> {
    let file: DockerConfigFile = serde_json::from_str(text)
        .map_err(|e| format!("not a Docker config file ({})", category(&e)))?;
    let Some((key, entry)) = file
        .auths
        .iter()
        .find(|(key, _)| normalize(key) == registry)
    else {
        return Ok(None);
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| format!("the auth of {key} is not base64 of user:password"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| format!("the auth of {key} is not base64 of user:password"))?;
            (user.to_owned(), pass.to_owned())
        }
        (None, Some(user), Some(pass)) => (user.clone(), pass.clone()),
        // An entry a credential helper fills (`credsStore`): nothing here to use.
        (None, _, _) => return Ok(None),
    };
    Ok(Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(key.clone()),
        ..DockerCredentials::default()
    }))
}

/// What kind of JSON error it is, without its message (which could quote the content).
fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected structure",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

/// Where the credentials of one pull come from (see the module doc).
pub struct Sources<'a> {
    pub config: Option<&'a DeploymentConfig>,
    pub secrets_dir: &'a Path,
    /// The agent user's Docker config file, when `[docker] use_host_auth` is set.
    pub host_auth: Option<&'a Path>,
}

/// The credentials for pulling `image`, or `None` for an anonymous pull.
pub fn credentials(
    image: &str,
    from: &Sources<'_>,
) -> Result<Option<DockerCredentials>, RuntimeError> {
    let registry = registry_of(image);
    let config = from.config;
    if let Some(name) = config.and_then(|c| c.image_pull_secret.as_deref()) {
        let text = read_secret(from.secrets_dir, name, "image pull secret")?;
        return from_config_json(&text, &registry)
            .map_err(|why| RuntimeError::Config(format!("image pull secret {name}: {why}")));
    }
    if let Some(c) = config.filter(|c| c.username.is_some()) {
        // The daemon sends credentials to the image's registry: never a password meant for
        // another one.
        if let Some(server) = c.server.as_deref().filter(|s| normalize(s) != registry) {
            return Err(RuntimeError::Config(format!(
                "config.server {server} is not the registry of image {image} ({registry}): the credentials would go to another registry"
            )));
        }
        let password = match &c.password {
            Some(EnvValue::Secret(s)) => read_secret(from.secrets_dir, &s.secret_ref, "secret")?,
            // Validation refuses a plain-text password; a stored spec never holds one.
            Some(EnvValue::Plain(_)) | None => {
                return Err(RuntimeError::Config(
                    "config.password must be {secretRef: NAME}".to_owned(),
                ))
            }
        };
        return Ok(Some(DockerCredentials {
            username: c.username.clone(),
            password: Some(password),
            serveraddress: Some(c.server.clone().unwrap_or(registry)),
            ..DockerCredentials::default()
        }));
    }
    let Some(path) = from.host_auth else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => from_config_json(&text, &registry).map_err(|why| {
            RuntimeError::Config(format!(
                "{} ([docker] use_host_auth): {why}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::Config(format!(
            "cannot read {} ([docker] use_host_auth): {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources<'a>(config: &'a DeploymentConfig, secrets_dir: &'a Path) -> Sources<'a> {
        Sources {
            config: Some(config),
            secrets_dir,
            host_auth: None,
        }
    }

    #[test]
    fn credentials_never_go_to_another_registry_and_secret_names_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret").unwrap();
        let config = |server: Option<&str>, secret: &str| DeploymentConfig {
            server: server.map(str::to_owned),
            username: Some("robot".into()),
            password: Some(EnvValue::Secret(crate::model::manifest::SecretRef {
                secret_ref: secret.into(),
            })),
            ..DeploymentConfig::default()
        };
        let elsewhere = config(Some("registry.corp"), "pw");
        let refused = credentials("shop/api:1", &sources(&elsewhere, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("not the registry of image") && !refused.contains("s3cret"),
            "{refused}"
        );
        let same = config(Some("https://registry.corp/v2/"), "pw");
        let creds = credentials("registry.corp/shop/api:1", &sources(&same, dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(creds.password.as_deref(), Some("s3cret"));
        for escape in ["../pw", "/etc/shadow", ".hidden"] {
            let outside = config(None, escape);
            assert!(
                credentials("registry.corp/a", &sources(&outside, dir.path())).is_err(),
                "{escape}"
            );
        }
    }

    #[test]
    fn the_registry_of_an_image() {
        for (image, registry) in [
            ("busybox:1.36", "index.docker.io"),
            ("library/busybox", "index.docker.io"),
            ("docker.io/library/busybox", "index.docker.io"),
            ("registry.example.com/shop/api:1.4", "registry.example.com"),
            ("127.0.0.1:5000/keel/busybox", "127.0.0.1:5000"),
            ("localhost/app", "localhost"),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn config_json_entries_by_registry_with_either_form_of_auth() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"username": "u", "password": "p"}}}},
               "credsStore": "desktop"}}"#
        );
        let hub = from_config_json(&text, "index.docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_deref(), hub.password.as_deref()),
            (Some("robot"), Some("s3cret"))
        );
        let local = from_config_json(&text, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.username.as_deref(), Some("u"));
        assert!(from_config_json(&text, "ghcr.io").unwrap().is_none());
        let broken =
            from_config_json(r#"{"auths": {"x.io": {"auth": "%%"}}}"#, "x.io").unwrap_err();
        assert!(!broken.contains("%%"), "{broken}");
        let garbage = from_config_json("password=hunter2", "x.io").unwrap_err();
        assert!(!garbage.contains("hunter2"), "{garbage}");
    }
}
