//! PURE: outbox notifications → deliveries. Each notification becomes one delivery per
//! webhook endpoint that wants its type (the Standard Webhooks body, fixed here so that every
//! retry sends the same bytes) and, for revision (and optionally deployment) changes, a commit
//! status for the forge — only when (sha, context, state, description) differs from the last
//! one queued, so a status is posted once per change, never per tick. Delivery ids are derived
//! from (notification, endpoint): fanning the same notification out twice gives the same ids.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::model::delivery::{CommitState, CommitStatus, NewDelivery};
use crate::model::event::{Envelope, NotificationKind, RevisionChanged, StatusChanged};
use crate::model::stored::OutboxRow;

use super::{status, Settings, FORGE_ENDPOINT};

/// What fanning out a batch of notifications writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOut {
    /// The notifications handled (all of the batch).
    pub notifications: Vec<String>,
    pub deliveries: Vec<NewDelivery>,
    /// The commit statuses queued, to remember as the last ones.
    pub statuses: Vec<CommitStatus>,
}

/// The last commit status queued for (sha, context): its state and description.
pub type LastStatus<'a> = &'a dyn Fn(&str, &str) -> Option<(CommitState, String)>;

/// Fans `rows` out. `last` gives the last commit status queued for (sha, context);
/// `disabled` the endpoints that get nothing more.
pub fn fan_out(
    rows: &[OutboxRow],
    settings: &Settings,
    last: LastStatus<'_>,
    disabled: &BTreeSet<String>,
) -> FanOut {
    let mut out = FanOut::default();
    // Statuses queued by this batch count as the last ones for the rest of it.
    let mut queued: BTreeMap<(String, String), (CommitState, String)> = BTreeMap::new();
    for row in rows {
        out.notifications.push(row.id.clone());
        let body = envelope(row);
        for endpoint in &settings.webhooks {
            let key = endpoint.key();
            if endpoint.wants(row.kind) && !disabled.contains(&key) {
                out.deliveries.push(NewDelivery {
                    id: delivery_id(&row.id, &key),
                    notification: row.id.clone(),
                    endpoint: key,
                    body: body.clone(),
                });
            }
        }
        if disabled.contains(FORGE_ENDPOINT) {
            continue;
        }
        for commit_status in commit_statuses(row, settings) {
            let key = (commit_status.sha.clone(), commit_status.context.clone());
            let now = (commit_status.state, commit_status.description.clone());
            let before = queued.get(&key).cloned().or_else(|| last(&key.0, &key.1));
            if before.as_ref() == Some(&now) {
                continue;
            }
            queued.insert(key, now);
            out.deliveries.push(NewDelivery {
                id: delivery_id(
                    &row.id,
                    &format!("{FORGE_ENDPOINT}:{}", commit_status.context),
                ),
                notification: row.id.clone(),
                endpoint: FORGE_ENDPOINT.to_owned(),
                body: serde_json::to_string(&commit_status).unwrap_or_default(),
            });
            out.statuses.push(commit_status);
        }
    }
    out
}

/// The commit statuses a notification means, when a forge is configured.
fn commit_statuses(row: &OutboxRow, settings: &Settings) -> Vec<CommitStatus> {
    let Some(forge) = &settings.forge else {
        return Vec::new();
    };
    let public_url = settings.public_url.as_deref();
    match row.kind {
        NotificationKind::RevisionStatusChanged => {
            serde_json::from_value::<RevisionChanged>(row.payload.clone())
                .ok()
                .filter(status::is_posted)
                .map(|change| vec![status::for_revision(&change, &settings.node, public_url)])
                .unwrap_or_default()
        }
        NotificationKind::DeploymentStatusChanged if forge.per_deployment_contexts => {
            serde_json::from_value::<StatusChanged>(row.payload.clone())
                .ok()
                .and_then(|change| status::for_deployment(&change, &settings.node, public_url))
                .into_iter()
                .collect()
        }
        NotificationKind::DeploymentStatusChanged
        | NotificationKind::DeploymentHealthCheckFailed
        | NotificationKind::DeploymentRollingUpdate
        | NotificationKind::RevisionRolledBack
        | NotificationKind::RevisionQuarantined
        | NotificationKind::JobRunFinished => Vec::new(),
    }
}

/// The Standard Webhooks body of a notification.
fn envelope(row: &OutboxRow) -> String {
    let envelope = Envelope {
        kind: row.kind,
        timestamp: row.created_at.to_rfc3339(),
        data: row.payload.clone(),
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// `msg_` and 26 hex digits of a hash of (notification, endpoint).
fn delivery_id(notification: &str, endpoint: &str) -> String {
    let digest = Sha256::new()
        .chain_update(notification.as_bytes())
        .chain_update([0])
        .chain_update(endpoint.as_bytes())
        .finalize();
    let hex: String = digest.iter().take(13).map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::RevisionState;
    use crate::model::time::Timestamp;
    use crate::model::units::Duration;
    use crate::notifier::{ForgeKind, ForgeSettings, RetryPolicy, WebhookEndpoint};

    fn settings(forge: bool) -> Settings {
        Settings {
            node: "host-1".into(),
            public_url: None,
            webhooks: vec![
                WebhookEndpoint {
                    url: "https://a.example/hook".into(),
                    secret: "whsec_AAAA".into(),
                    events: None,
                    headers: BTreeMap::new(),
                },
                WebhookEndpoint {
                    url: "https://b.example/hook".into(),
                    secret: "whsec_BBBB".into(),
                    events: Some(BTreeSet::from([NotificationKind::RevisionStatusChanged])),
                    headers: BTreeMap::new(),
                },
            ],
            forge: forge.then(|| ForgeSettings {
                kind: ForgeKind::Github,
                api_url: "https://api.github.com".into(),
                repository: "ops/deploy".into(),
                token: "t".into(),
                per_deployment_contexts: false,
            }),
            retry: RetryPolicy::default(),
            retention: Duration::from_secs(7 * 86_400),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    fn revision_row(id: &str, state: RevisionState) -> OutboxRow {
        let change = RevisionChanged {
            source: "git".into(),
            revision: "abc123".into(),
            old_state: None,
            new_state: state,
            superseded_by: None,
            restores: None,
            rolled_back_to: None,
            identical_to: None,
            deployments: Vec::new(),
            diagnostics: Vec::new(),
        };
        row(
            id,
            NotificationKind::RevisionStatusChanged,
            serde_json::to_value(change).unwrap(),
        )
    }

    fn row(id: &str, kind: NotificationKind, payload: serde_json::Value) -> OutboxRow {
        OutboxRow {
            id: id.into(),
            kind,
            payload,
            target: None,
            attempts: 0,
            created_at: Timestamp(1_800_000_000_000),
            next_attempt_at: Timestamp(0),
            delivered_at: None,
            dead_at: None,
            last_error: None,
        }
    }

    fn endpoints(out: &FanOut) -> Vec<&str> {
        out.deliveries.iter().map(|d| d.endpoint.as_str()).collect()
    }

    #[test]
    fn each_endpoint_gets_the_types_it_wants_in_order() {
        let rows = [
            row(
                "n1",
                NotificationKind::DeploymentStatusChanged,
                serde_json::json!({}),
            ),
            revision_row("n2", RevisionState::Applying),
        ];
        let out = fan_out(&rows, &settings(false), &|_, _| None, &BTreeSet::new());
        assert_eq!(
            endpoints(&out),
            [
                "webhook:https://a.example/hook",
                "webhook:https://a.example/hook",
                "webhook:https://b.example/hook"
            ]
        );
        assert_eq!(out.notifications, ["n1", "n2"]);
        let body: serde_json::Value = serde_json::from_str(&out.deliveries[0].body).unwrap();
        assert_eq!(body["type"], "deployment.status_changed");
        assert_eq!(body["timestamp"], "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn ids_are_stable_and_distinct_per_endpoint() {
        let rows = [revision_row("n1", RevisionState::Applying)];
        let once = fan_out(&rows, &settings(false), &|_, _| None, &BTreeSet::new());
        let twice = fan_out(&rows, &settings(false), &|_, _| None, &BTreeSet::new());
        assert_eq!(once, twice);
        assert_ne!(once.deliveries[0].id, once.deliveries[1].id);
    }

    #[test]
    fn a_commit_status_is_queued_only_when_it_changes() {
        let rows = [
            revision_row("n1", RevisionState::Applying),
            revision_row("n2", RevisionState::Applying),
            revision_row("n3", RevisionState::Succeeded),
        ];
        let out = fan_out(&rows, &settings(true), &|_, _| None, &BTreeSet::new());
        let states: Vec<CommitState> = out.statuses.iter().map(|s| s.state).collect();
        assert_eq!(states, [CommitState::Running, CommitState::Success]);
        let already =
            |_: &str, _: &str| Some((CommitState::Success, "0/0 deployments running".to_owned()));
        let again = fan_out(&rows[2..], &settings(true), &already, &BTreeSet::new());
        assert!(
            again.statuses.is_empty(),
            "posted before: {:?}",
            again.statuses
        );
    }

    #[test]
    fn disabled_endpoints_get_nothing() {
        let rows = [revision_row("n1", RevisionState::Applying)];
        let disabled = BTreeSet::from(["webhook:https://a.example/hook".to_owned()]);
        let out = fan_out(&rows, &settings(false), &|_, _| None, &disabled);
        assert_eq!(endpoints(&out), ["webhook:https://b.example/hook"]);
    }
}
