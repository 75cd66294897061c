//! Outbound deliveries as data: one per (notification, endpoint) — a signed webhook or a
//! commit status on the forge — with its attempts, and the commit statuses keel has posted.
//! The notifier decides and sends; the store keeps these so delivery survives restarts.

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

string_enum! {
    /// Where a delivery is in its life.
    DeliveryState {
        /// Waiting for its (next) attempt.
        Pending = "pending",
        /// The endpoint accepted it.
        Delivered = "delivered",
        /// Given up: the retry schedule ran out, the endpoint refused it for good, or the
        /// endpoint was disabled. The last error is kept.
        Dead = "dead",
    }
}

string_enum! {
    /// A commit status, before a forge's own words for it.
    CommitState {
        /// Queued.
        Pending = "pending",
        /// Being applied (GitLab shows `running`; GitHub and Gitea `pending`).
        Running = "running",
        /// Every deployment reached its goal.
        Success = "success",
        /// A deployment failed (crash loop, failed job, readiness deadline, …).
        Failure = "failure",
        /// Rejected before anything was applied (invalid manifests).
        Error = "error",
        /// A newer commit arrived first (GitLab `canceled`; GitHub and Gitea `error`).
        Canceled = "canceled",
    }
}

/// A delivery to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Stable across retries: the webhook's `webhook-id`.
    pub id: String,
    /// The outbox notification it delivers.
    pub notification: String,
    /// The endpoint's key (`webhook:<url>` or `forge`).
    pub endpoint: String,
    /// What to send: a webhook's exact body, or a commit status as JSON.
    pub body: String,
}

/// A delivery and its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub notification: String,
    pub endpoint: String,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    /// Try again at `next_at`; `counted`: whether it used up a step of the retry schedule
    /// (a rate limit does not).
    Retry {
        next_at: Timestamp,
        status: Option<u16>,
        error: String,
        counted: bool,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// A commit status for `(sha, context)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    pub sha: String,
    pub context: String,
    pub state: CommitState,
    /// At most 140 characters.
    pub description: String,
    pub target_url: Option<String>,
}
