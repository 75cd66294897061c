//! Gitea and Forgejo: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` (`api_url` ends in
//! `/api/v1`) with `Authorization: token …`; states `pending`, `success`, `error`, `failure`
//! (and `warning`, which keel does not use).

use crate::model::delivery::CommitStatus;
use crate::notifier::ForgeSettings;

use super::{repos_statuses, Request};

/// Gitea uses GitHub's words for the states keel posts.
pub use super::github::state;

pub fn request(forge: &ForgeSettings, status: &CommitStatus) -> Request {
    let headers = vec![("authorization".into(), format!("token {}", forge.token))];
    repos_statuses(forge, status, state(status.state), headers)
}
