//! Telling the outside world: signed webhooks (Standard Webhooks) to the endpoints of the
//! agent configuration, and commit statuses on the forge (GitHub, Gitea/Forgejo, GitLab).
//!
//! Data flow: the store's outbox (written in the same transaction as every change) →
//! `fanout` (PURE: one delivery per (notification, endpoint), commit statuses only when they
//! change) → the store's `deliveries` → `worker` (one task per endpoint: in order, with retries
//! on `schedule`, PURE) → `webhook` / `forge` (build the request and classify the answer,
//! PURE; send with reqwest).
//!
//! Invariants: at least once across restarts (a delivery is written before its first attempt
//! and marked only after an answer; its id — the `webhook-id` — never changes); endpoints are
//! independent (a dead one never delays another); per endpoint, deliveries go out in the order
//! the changes happened; endpoints come from the agent configuration, never from the
//! repository; no secret, token or signature is logged or stored.

pub mod fanout;
pub mod forge;
pub mod schedule;
pub mod status;
pub mod webhook;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::event::NotificationKind;
use crate::model::units::Duration;

pub use schedule::RetryPolicy;

/// Everything the notifier is configured with.
#[derive(Clone)]
pub struct Settings {
    /// This host's node name: commit-status contexts are `keel/<node>`.
    pub node: String,
    /// Where this agent's API is reachable from outside, for `target_url` links.
    pub public_url: Option<String>,
    pub webhooks: Vec<WebhookEndpoint>,
    /// Commit statuses; only for a Git source (a directory has no commits).
    pub forge: Option<ForgeSettings>,
    pub retry: RetryPolicy,
    /// How long delivered and dead deliveries are kept.
    pub retention: Duration,
    /// The timeout of one attempt.
    pub attempt_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("node", &self.node)
            .field("public_url", &self.public_url)
            .field("webhooks", &self.webhooks)
            .field("forge", &self.forge)
            .field("retry", &self.retry)
            .finish()
    }
}

/// One `[[webhooks]]` endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub url: String,
    /// `whsec_<base64>`.
    pub secret: String,
    /// The notification types it wants (`None`: all).
    pub events: Option<BTreeSet<NotificationKind>>,
    /// Extra headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
}

impl WebhookEndpoint {
    /// Its key in the store and the API: `webhook:` and the URL without credentials, query or
    /// fragment (which may hold tokens).
    pub fn key(&self) -> String {
        format!("webhook:{}", redacted_url(&self.url))
    }

    pub fn wants(&self, kind: NotificationKind) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.contains(&kind))
    }
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &redacted_url(&self.url))
            .field("secret", &"[hidden]")
            .field("events", &self.events)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The forges keel posts commit statuses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    Github,
    Gitea,
    Gitlab,
}

/// `[forge]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ForgeSettings {
    pub kind: ForgeKind,
    /// `https://api.github.com`, `https://gitea.example/api/v1`, `https://gitlab.example/api/v4`.
    pub api_url: String,
    /// `owner/name` (GitLab: also a numeric project id).
    pub repository: String,
    pub token: String,
    /// Also one context per deployment, `keel/<node>/<namespace>/<name>`.
    pub per_deployment_contexts: bool,
}

impl std::fmt::Debug for ForgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeSettings")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .field("token", &"[hidden]")
            .field("per_deployment_contexts", &self.per_deployment_contexts)
            .finish()
    }
}

/// The forge's endpoint key in the store.
pub const FORGE_ENDPOINT: &str = "forge";

/// `scheme://host[:port]/path` of a URL: no user info, no query, no fragment.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    match scheme {
        "" => format!("{host}{path}"),
        scheme => format!("{scheme}://{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_never_carry_credentials() {
        let cases = [
            (
                "https://ci.example/hooks/keel",
                "https://ci.example/hooks/keel",
            ),
            (
                "https://user:pw@ci.example/hook?token=abc#x",
                "https://ci.example/hook",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ];
        for (url, expected) in cases {
            assert_eq!(redacted_url(url), expected, "{url}");
        }
    }
}
