//! Effectful: carries out a pass's actions on the runtimes, exactly as planned. Each
//! deployment's actions run in the order the planner listed them, in their own task, beside
//! every other deployment's, under a concurrency bound and a per-call timeout — one slow
//! runtime call never holds up the others. Every action names its runtime and carries what it
//! needs (the instance to create, the drain and stop grace), so nothing here decides. A
//! deployment with work in flight is left out of the next passes until it finishes. Failures of
//! create and start are recorded in the store for the planner to turn into a status; a failed
//! removal is retried by the next pass, which still sees the instance.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::model::desired::{DeploymentId, InstanceSpec};
use crate::model::manifest::RuntimeKind;
use crate::model::memory::Failure;
use crate::model::plan::{Action, DecidedOn, Stop};
use crate::model::units::Duration;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::Store;

/// The runtimes actions go to, by kind.
pub type Runtimes = BTreeMap<RuntimeKind, Arc<dyn Runtime>>;

/// Timeouts and bounds of runtime calls.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub call_timeout: Duration,
    pub concurrency: usize,
}

#[derive(Clone)]
pub struct Executor {
    store: Arc<Store>,
    runtimes: Arc<Runtimes>,
    limits: Limits,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<BTreeSet<DeploymentId>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    done: Arc<Notify>,
    clock: Clock,
}

impl Executor {
    /// `done` is notified whenever a deployment's actions finish.
    pub fn new(
        store: Arc<Store>,
        runtimes: Arc<Runtimes>,
        limits: Limits,
        done: Arc<Notify>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            runtimes,
            limits,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            in_flight: Arc::default(),
            tasks: Arc::default(),
            done,
            clock,
        }
    }

    /// Deployments with actions still running.
    pub fn busy(&self) -> BTreeSet<DeploymentId> {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs one deployment's actions, in order, in the background; a failure is recorded onto
    /// the row `decided_on` names only (see `Store::record_failure`).
    pub fn spawn(&self, deployment: DeploymentId, decided_on: DecidedOn, actions: Vec<Action>) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(deployment.clone());
        let this = self.clone();
        let task = tokio::spawn(async move {
            if let Ok(_permit) = this.permits.clone().acquire_owned().await {
                this.run(&deployment, &decided_on, &actions).await;
            }
            this.in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&deployment);
            this.done.notify_one();
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Abandons every job in flight (the agent is going away; the next one adopts whatever
    /// the runtime holds).
    pub fn abort_all(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    async fn run(&self, deployment: &DeploymentId, decided_on: &DecidedOn, actions: &[Action]) {
        for action in actions {
            let result = match self.runtimes.get(&action.runtime()) {
                None => Err(RuntimeError::NotEnabled(action.runtime())),
                Some(runtime) => self.act(runtime.as_ref(), action).await,
            };
            let Err(error) = result else {
                continue;
            };
            match action {
                Action::Remove { runtime_id, .. } => {
                    tracing::warn!(deployment = %deployment, instance = %runtime_id, %error, "removing an instance failed; the next pass retries");
                }
                Action::Start { .. } | Action::Create { .. } => {
                    tracing::warn!(deployment = %deployment, %error, "runtime action failed");
                    self.report(deployment, decided_on, &error).await;
                    return;
                }
            }
        }
    }

    async fn act(&self, runtime: &dyn Runtime, action: &Action) -> Result<(), RuntimeError> {
        match action {
            Action::Create { instance, .. } => self.create(runtime, instance).await,
            Action::Start { runtime_id, .. } => self.call("start", runtime.start(runtime_id)).await,
            Action::Remove {
                runtime_id, stop, ..
            } => self.remove(runtime, runtime_id, *stop).await,
        }
    }

    /// Create and start, as one step: an instance that was created but cannot start (its
    /// port is taken, say) is removed again, so the next attempt starts from nothing and no
    /// `created` leftover lingers.
    async fn create(&self, runtime: &dyn Runtime, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let runtime_id = self.call("create", runtime.create(spec)).await?;
        let Err(error) = self.call("start", runtime.start(&runtime_id)).await else {
            return Ok(());
        };
        if let Err(cleanup) = self.call("remove", runtime.remove(&runtime_id)).await {
            tracing::warn!(deployment = %spec.deployment, instance = %runtime_id, error = %cleanup, "cannot remove an instance that failed to start; the next pass retries");
        }
        Err(error)
    }

    async fn remove(
        &self,
        runtime: &dyn Runtime,
        runtime_id: &str,
        stop: Option<Stop>,
    ) -> Result<(), RuntimeError> {
        if let Some(stop) = stop {
            tokio::time::sleep(stop.drain.to_std()).await;
            self.call("stop", runtime.stop(runtime_id, stop.grace))
                .await?;
        }
        self.call("remove", runtime.remove(runtime_id)).await
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let after = self.limits.call_timeout;
        tokio::time::timeout(after.to_std(), fut)
            .await
            .unwrap_or(Err(RuntimeError::Timeout { operation, after }))
    }

    async fn report(
        &self,
        deployment: &DeploymentId,
        decided_on: &DecidedOn,
        error: &RuntimeError,
    ) {
        let failure = Failure {
            status: error.status(),
            message: error.to_string(),
            at: (self.clock)(),
        };
        let (store, on) = (self.store.clone(), decided_on.clone());
        let saved = tokio::task::spawn_blocking(move || store.record_failure(on, failure)).await;
        if let Ok(Err(e)) = saved {
            tracing::error!(deployment = %deployment, error = %e, "cannot record a runtime failure");
        }
    }
}
