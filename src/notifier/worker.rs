//! Effectful: the delivery worker. One task fans the outbox out whenever the store signals a
//! commit (so the first attempt follows a change at once, with no polling delay) and prunes
//! finished deliveries hourly; one task per endpoint sends that endpoint's deliveries in
//! order, each attempt recorded in the store before the next — a crash between two attempts
//! repeats at most the one in flight, with the same id. A dead endpoint only ever waits on
//! itself.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::model::delivery::{Attempt, CommitState, CommitStatus, Delivery};
use crate::model::time::Timestamp;
use crate::store::{Store, StoreError};

use super::fanout::fan_out;
use super::webhook::Verdict;
use super::{forge, webhook, Settings, WebhookEndpoint, FORGE_ENDPOINT};

/// Why the notifier cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("store")]
    Store(#[from] StoreError),
}

/// Where an endpoint's deliveries go.
#[derive(Clone)]
enum Target {
    Webhook(WebhookEndpoint),
    Forge,
}

/// What to write after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Attempt(Attempt),
    /// 410 Gone: disable the endpoint, dead-letter what it had.
    Disable {
        reason: String,
    },
}

/// PURE: what a verdict on `delivery`'s attempt at `now` writes.
pub fn record(
    verdict: &Verdict,
    delivery: &Delivery,
    settings: &Settings,
    now: Timestamp,
) -> Record {
    let policy = &settings.retry;
    let attempt = match verdict {
        Verdict::Delivered { status } => Attempt::Delivered { status: *status },
        Verdict::Gone { reason } => {
            return Record::Disable {
                reason: reason.clone(),
            }
        }
        Verdict::Refused { status, error } => Attempt::Dead {
            status: (*status != 0).then_some(*status),
            error: error.clone(),
        },
        Verdict::Retry {
            status,
            retry_after: Some(after),
            error,
        } => {
            // The endpoint said when: honour it, without using up a step of the schedule —
            // but never past the delivery's deadline.
            let next_at = Timestamp(now.0.saturating_add(secs_to_millis(*after)));
            let deadline = delivery.created_at.0.saturating_add(
                i64::try_from(policy.give_up_after.as_millis()).unwrap_or(i64::MAX),
            );
            if next_at.0 > deadline {
                Attempt::Dead {
                    status: *status,
                    error: error.clone(),
                }
            } else {
                Attempt::Retry {
                    next_at,
                    status: *status,
                    error: error.clone(),
                    counted: false,
                }
            }
        }
        Verdict::Retry {
            status,
            retry_after: None,
            error,
        } => {
            let failures = delivery.attempts.saturating_add(1);
            match policy.next_attempt(&delivery.id, failures, delivery.created_at, now) {
                Some(next_at) => Attempt::Retry {
                    next_at,
                    status: *status,
                    error: error.clone(),
                    counted: true,
                },
                None => Attempt::Dead {
                    status: *status,
                    error: error.clone(),
                },
            }
        }
    };
    Record::Attempt(attempt)
}

fn secs_to_millis(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The delivery worker.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<Store>,
    settings: Arc<Settings>,
    client: reqwest::Client,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(
        store: Arc<Store>,
        settings: Settings,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NotifierError> {
        let client = reqwest::Client::builder()
            .timeout(settings.attempt_timeout.to_std())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(NotifierError::Client)?;
        Ok(Self {
            store,
            settings: Arc::new(settings),
            client,
            clock,
            metrics,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut targets: Vec<(String, Target)> = self
            .settings
            .webhooks
            .iter()
            .map(|w| (w.key(), Target::Webhook(w.clone())))
            .collect();
        if self.settings.forge.is_some() {
            targets.push((FORGE_ENDPOINT.to_owned(), Target::Forge));
        }
        let mut wakes = Vec::new();
        for (key, target) in targets {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            let this = self.clone();
            tokio::spawn(this.endpoint(key, target, wake, shutdown.clone()));
        }
        self.distribute_loop(wakes, shutdown).await;
    }

    async fn distribute_loop(&self, wakes: Vec<Arc<Notify>>, mut shutdown: watch::Receiver<bool>) {
        let signal = self.store.outbox_signal();
        let mut prune_at = (self.clock)();
        loop {
            match self.distribute().await {
                Ok(true) => wakes.iter().for_each(|w| w.notify_one()),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "cannot fan notifications out; retrying on the next change")
                }
            }
            let now = (self.clock)();
            if now >= prune_at {
                self.prune(now).await;
                prune_at = Timestamp(now.0.saturating_add(3_600_000));
            }
            let until_prune = std::time::Duration::from_millis(
                u64::try_from(prune_at.0.saturating_sub(now.0)).unwrap_or(0),
            );
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(until_prune) => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Fans every undistributed notification out; true when it made deliveries.
    async fn distribute(&self) -> Result<bool, StoreError> {
        let this = self.clone();
        let made = tokio::task::spawn_blocking(move || -> Result<bool, StoreError> {
            let reader = this.store.reader()?;
            let mut made = false;
            loop {
                let rows = reader.undistributed(500)?;
                if rows.is_empty() {
                    return Ok(made);
                }
                let disabled: BTreeSet<String> = reader.disabled_endpoints()?.into_keys().collect();
                let last = |sha: &str, context: &str| -> Option<(CommitState, String)> {
                    let (state, description) = reader.commit_status(sha, context).ok()??;
                    Some((state.parse().ok()?, description))
                };
                let out = fan_out(&rows, &this.settings, &last, &disabled);
                made |= !out.deliveries.is_empty();
                this.store.distribute(
                    out.notifications,
                    out.deliveries,
                    out.statuses,
                    (this.clock)(),
                )?;
            }
        })
        .await;
        made.unwrap_or(Ok(false))
    }

    async fn prune(&self, now: Timestamp) {
        let retention = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp(now.0.saturating_sub(retention));
        let store = self.store.clone();
        let pruned = tokio::task::spawn_blocking(move || store.prune_deliveries(before)).await;
        if let Ok(Err(error)) = pruned {
            tracing::warn!(%error, "cannot prune old deliveries");
        }
    }

    /// Delivers `key`'s deliveries, in order, until shutdown.
    async fn endpoint(
        self,
        key: String,
        target: Target,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let reader = match self.store.reader() {
            Ok(reader) => Arc::new(Mutex::new(reader)),
            Err(error) => {
                tracing::error!(endpoint = %key, %error, "cannot read deliveries; this endpoint gets none");
                return;
            }
        };
        loop {
            let next = {
                let (reader, key) = (reader.clone(), key.clone());
                tokio::task::spawn_blocking(move || {
                    reader
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .next_delivery(&key)
                })
                .await
            };
            let wait = match next {
                Ok(Ok(Some(delivery))) => {
                    let now = (self.clock)();
                    if delivery.next_attempt_at <= now {
                        self.attempt(&key, &target, &delivery).await;
                        continue;
                    }
                    Some(delivery.next_attempt_at.0.saturating_sub(now.0))
                }
                Ok(Ok(None)) => None,
                Ok(Err(error)) => {
                    tracing::error!(endpoint = %key, %error, "cannot read deliveries");
                    Some(5_000)
                }
                Err(_) => return,
            };
            let sleep = async {
                match wait {
                    Some(ms) => {
                        let ms = u64::try_from(ms).unwrap_or(0);
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = wake.notified() => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    async fn attempt(&self, key: &str, target: &Target, delivery: &Delivery) {
        let now = (self.clock)();
        let verdict = match target {
            Target::Webhook(endpoint) => {
                webhook::send(
                    &self.client,
                    endpoint,
                    &delivery.id,
                    &delivery.body,
                    now.millis() / 1000,
                )
                .await
            }
            Target::Forge => self.post_status(delivery, now).await,
        };
        let decided = record(&verdict, delivery, &self.settings, (self.clock)());
        self.count(&decided);
        self.log(key, delivery, &decided);
        let (store, id, key) = (self.store.clone(), delivery.id.clone(), key.to_owned());
        let now = (self.clock)();
        let saved = tokio::task::spawn_blocking(move || match decided {
            Record::Attempt(attempt) => store.record_attempt(id, attempt, now),
            Record::Disable { reason } => store.disable_endpoint(key, id, reason, now),
        })
        .await;
        if let Ok(Err(error)) = saved {
            tracing::error!(delivery = %delivery.id, %error, "cannot record a delivery attempt; it will be repeated");
        }
    }

    async fn post_status(&self, delivery: &Delivery, now: Timestamp) -> Verdict {
        let Some(forge) = &self.settings.forge else {
            return Verdict::Refused {
                status: 0,
                error: "no forge is configured any more".to_owned(),
            };
        };
        match serde_json::from_str::<CommitStatus>(&delivery.body) {
            Ok(status) => forge::send(&self.client, forge, &status, now.millis() / 1000).await,
            Err(error) => Verdict::Refused {
                status: 0,
                error: format!("unreadable commit status: {error}"),
            },
        }
    }

    fn count(&self, decided: &Record) {
        use std::sync::atomic::Ordering::Relaxed;
        let counter = match decided {
            Record::Attempt(Attempt::Delivered { .. }) => &self.metrics.deliveries_ok,
            Record::Attempt(Attempt::Retry { .. }) => &self.metrics.deliveries_failed,
            Record::Attempt(Attempt::Dead { .. }) | Record::Disable { .. } => {
                &self.metrics.deliveries_dead
            }
        };
        counter.fetch_add(1, Relaxed);
    }

    fn log(&self, key: &str, delivery: &Delivery, decided: &Record) {
        match decided {
            Record::Attempt(Attempt::Delivered { status }) => {
                tracing::debug!(endpoint = %key, delivery = %delivery.id, status, "delivered")
            }
            Record::Attempt(Attempt::Retry { error, next_at, .. }) => {
                tracing::debug!(endpoint = %key, delivery = %delivery.id, %error, next_at = %next_at.to_rfc3339(), "delivery failed; will retry")
            }
            Record::Attempt(Attempt::Dead { error, .. }) => {
                tracing::warn!(endpoint = %key, delivery = %delivery.id, %error, "delivery given up")
            }
            Record::Disable { reason } => {
                tracing::warn!(endpoint = %key, %reason, "endpoint disabled: it answered 410 Gone")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::delivery::DeliveryState;
    use crate::model::units::Duration;
    use crate::notifier::RetryPolicy;

    fn settings() -> Settings {
        Settings {
            node: "h".into(),
            public_url: None,
            webhooks: Vec::new(),
            forge: None,
            retry: RetryPolicy {
                schedule: vec![Duration::from_secs(5)],
                every: Duration::from_secs(60),
                give_up_after: Duration::from_secs(600),
            },
            retention: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    fn delivery(attempts: u32) -> Delivery {
        Delivery {
            seq: 1,
            id: "msg_1".into(),
            notification: "n".into(),
            endpoint: "e".into(),
            body: "{}".into(),
            state: DeliveryState::Pending,
            attempts,
            created_at: Timestamp(0),
            next_attempt_at: Timestamp(0),
            last_attempt_at: None,
            finished_at: None,
            last_status: None,
            last_error: None,
        }
    }

    fn retry(after: Option<u64>) -> Verdict {
        Verdict::Retry {
            status: Some(503),
            retry_after: after,
            error: "503: busy".into(),
        }
    }

    #[test]
    fn verdicts_become_records() {
        let s = settings();
        let now = Timestamp(100_000);
        assert_eq!(
            record(&Verdict::Delivered { status: 200 }, &delivery(0), &s, now),
            Record::Attempt(Attempt::Delivered { status: 200 })
        );
        assert!(matches!(
            record(&retry(None), &delivery(0), &s, now),
            Record::Attempt(Attempt::Retry { counted: true, next_at, .. }) if next_at.0 >= 104_000 && next_at.0 <= 106_000
        ));
        assert_eq!(
            record(&retry(Some(30)), &delivery(3), &s, now),
            Record::Attempt(Attempt::Retry {
                next_at: Timestamp(130_000),
                status: Some(503),
                error: "503: busy".into(),
                counted: false
            }),
            "Retry-After is honoured and does not use up the schedule"
        );
        assert!(matches!(
            record(&retry(None), &delivery(9), &s, Timestamp(590_000)),
            Record::Attempt(Attempt::Dead { .. })
        ));
        assert!(matches!(
            record(&retry(Some(3600)), &delivery(0), &s, now),
            Record::Attempt(Attempt::Dead { .. })
        ));
        assert_eq!(
            record(
                &Verdict::Gone {
                    reason: "410 Gone: bye".into()
                },
                &delivery(0),
                &s,
                now
            ),
            Record::Disable {
                reason: "410 Gone: bye".into()
            }
        );
        assert!(matches!(
            record(
                &Verdict::Refused {
                    status: 422,
                    error: "422: no".into()
                },
                &delivery(0),
                &s,
                now
            ),
            Record::Attempt(Attempt::Dead {
                status: Some(422),
                ..
            })
        ));
    }
}
