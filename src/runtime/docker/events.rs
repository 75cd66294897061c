//! Follows the daemon's container events for keel's containers (`die`, `oom`, `kill`, `start`,
//! `destroy`) and turns each into a wake-up. Reconnects after the daemon goes away, asking for
//! what happened `since` the last event seen — and even if some are lost, the controller's
//! tick and listing still converge. It runs for the life of the process.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::runtime::{labels, RuntimeEvent};

/// Spawns the follower; it ends when nobody listens any more.
pub fn follow(docker: Docker, events: broadcast::Sender<RuntimeEvent>, owner: String) {
    tokio::spawn(async move {
        let mut since: Option<i64> = None;
        loop {
            let filters = HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                (
                    "label".to_owned(),
                    vec![
                        format!("{}=true", labels::MANAGED),
                        format!("{}={owner}", labels::OWNER),
                    ],
                ),
                (
                    "event".to_owned(),
                    ["die", "oom", "kill", "start", "destroy"]
                        .map(str::to_owned)
                        .to_vec(),
                ),
            ]);
            let options = EventsOptions {
                since: since.map(|s| s.to_string()),
                filters: Some(filters),
                ..Default::default()
            };
            let mut stream = docker.events(Some(options));
            while let Some(item) = stream.next().await {
                let Ok(message) = item else { break };
                since = message.time.or(since);
                let runtime_id = message.actor.and_then(|a| a.id).unwrap_or_default();
                let what = message.action.unwrap_or_default();
                // No receiver yet is fine: the controller subscribes when it starts.
                let _ = events.send(RuntimeEvent { runtime_id, what });
            }
            tracing::debug!(?since, "docker event stream ended; reconnecting");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}
