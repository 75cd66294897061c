//! Follows the daemon's container events for keel's containers (`die`, `oom`, `kill`, `start`,
//! `destroy`): each marks its container for re-inspection in the observation cache and wakes
//! the controller; the stream breaking invalidates the cache. Reconnects after the daemon goes away, asking for
//! what happened `since` the last event seen — and even if some are lost, the controller's
//! resync and listing still converge. It runs for the life of the process.
//!
//! It also keeps the daemon's outages (`Outages`): the event stream breaking is how keel learns
//! that the daemon is going away (it closes its API before stopping containers), and the first
//! answer to a ping afterwards ends the outage. A container that finished during an outage
//! was stopped by the daemon, not by itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::model::time::Timestamp;
use crate::runtime::{labels, RuntimeEvent};

/// How long before the stream broke a container may have finished and still count as stopped
/// by the outage (the stream and the containers' stops are not ordered exactly).
const MARGIN_MS: i64 = 2_000;
/// Outages remembered (older ones no longer explain anything).
const KEPT: usize = 16;

/// The daemon's recent outages.
#[derive(Debug, Default)]
pub struct Outages {
    down_since: Option<Timestamp>,
    past: VecDeque<(Timestamp, Timestamp)>,
}

impl Outages {
    /// The daemon went away at `at`; true when it was up until now.
    pub fn went_down(&mut self, at: Timestamp) -> bool {
        if self.down_since.is_some() {
            return false;
        }
        self.down_since = Some(at);
        true
    }

    /// The daemon answers again at `at`; the outage's start, when there was one.
    pub fn came_back(&mut self, at: Timestamp) -> Option<Timestamp> {
        let since = self.down_since.take()?;
        if self.past.len() == KEPT {
            self.past.pop_front();
        }
        self.past.push_back((since, at));
        Some(since)
    }

    /// Whether a container that finished at `finished` was stopped by an outage.
    pub fn covers(&self, finished: Timestamp) -> bool {
        let within = |since: Timestamp, until: Option<Timestamp>| {
            finished.0 >= since.0.saturating_sub(MARGIN_MS) && until.is_none_or(|u| finished <= u)
        };
        self.down_since.is_some_and(|since| within(since, None))
            || self
                .past
                .iter()
                .any(|(since, until)| within(*since, Some(*until)))
    }
}

/// Spawns the follower; it ends when nobody listens any more.
pub fn follow(
    docker: Docker,
    events: broadcast::Sender<RuntimeEvent>,
    owner: String,
    outages: Arc<Mutex<Outages>>,
    cache: Arc<Mutex<super::cache::Cache>>,
) {
    tokio::spawn(async move {
        // From the agent's start: an event between the first listing and the stream's
        // start is replayed, not lost.
        let mut since: Option<i64> = Some(crate::clock::now().0.div_euclid(1000));
        loop {
            let options = EventsOptions {
                since: since.map(|s| s.to_string()),
                filters: Some(filters(&owner)),
                ..Default::default()
            };
            let mut stream = docker.events(Some(options));
            while let Some(item) = stream.next().await {
                let Ok(message) = item else { break };
                since = message.time.or(since);
                let runtime_id = message.actor.and_then(|a| a.id).unwrap_or_default();
                let what = message.action.unwrap_or_default();
                lock(&cache).mark(&runtime_id);
                // No receiver yet is fine: the controller subscribes when it starts.
                let _ = events.send(RuntimeEvent { runtime_id, what });
            }
            lock(&cache).invalidate();
            let went_down = lock(&outages).went_down(crate::clock::now());
            if went_down {
                // The controller logs the outage (once) when its listing fails.
                tracing::debug!("docker event stream broke: the daemon is going away");
                // A wake-up, so the controller looks (and holds) now.
                let _ = events.send(RuntimeEvent {
                    runtime_id: String::new(),
                    what: "daemon_unreachable".to_owned(),
                });
            }
            wait_until_it_answers(&docker).await;
            if let Some(down) = lock(&outages).came_back(crate::clock::now()) {
                let away = crate::clock::now().0.saturating_sub(down.0) / 1000;
                tracing::debug!(away_secs = away, "the Docker daemon answers again");
                // The controller rests between passes: tell it to look now.
                let _ = events.send(RuntimeEvent {
                    runtime_id: String::new(),
                    what: "daemon_reachable".to_owned(),
                });
            }
        }
    });
}

fn filters(owner: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([
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
    ])
}

async fn wait_until_it_answers(docker: &Docker) {
    loop {
        if docker.ping().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    #[test]
    fn a_container_that_finished_during_an_outage_was_stopped_by_it() {
        let mut outages = Outages::default();
        assert!(outages.went_down(t(100)));
        assert!(!outages.went_down(t(101)), "one outage, logged once");
        assert!(outages.covers(t(105)), "still down");
        assert_eq!(outages.came_back(t(130)), Some(t(100)));
        assert_eq!(outages.came_back(t(131)), None);
        let cases = [
            ("long_before", t(50), false),
            ("just_before_the_stream_broke", t(99), true),
            ("while_away", t(120), true),
            ("as_it_came_back", t(130), true),
            ("after", t(140), false),
        ];
        for (name, finished, covered) in cases {
            assert_eq!(outages.covers(finished), covered, "{name}");
        }
    }

    #[test]
    fn only_recent_outages_are_kept() {
        let mut outages = Outages::default();
        for i in 0..(KEPT as i64 + 4) {
            outages.went_down(t(i * 100));
            outages.came_back(t(i * 100 + 10));
        }
        assert_eq!(outages.past.len(), KEPT);
        assert!(!outages.covers(t(5)), "the oldest ones are forgotten");
        assert!(outages.covers(t((KEPT as i64 + 3) * 100 + 5)));
    }
}
