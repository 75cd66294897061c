//! Effectful: carries out a pass's actions on the runtimes. Each deployment's actions run in
//! order (removes, then starts, then creates) in their own task, beside every other
//! deployment's, under a concurrency bound and a per-call timeout — one slow runtime call never
//! holds up the others. A deployment with work in flight is left out of the next passes until
//! it finishes. Failures of create and start are recorded in the store for the planner to turn
//! into a status; a failed removal is retried by the next pass, which still sees the instance.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::model::desired::DeploymentId;
use crate::model::memory::Failure;
use crate::model::units::Duration;
use crate::runtime::{InstanceSpec, Runtime, RuntimeError};
use crate::store::Store;

/// One runtime call of a job.
#[derive(Debug, Clone)]
pub enum Step {
    Create(Box<InstanceSpec>),
    Start(String),
    Remove {
        runtime_id: String,
        stop_first: bool,
    },
}

/// The work of one deployment in one pass.
pub struct Job {
    pub deployment: DeploymentId,
    pub runtime: Arc<dyn Runtime>,
    pub steps: Vec<Step>,
}

/// Timeouts and bounds of runtime calls.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub call_timeout: Duration,
    pub stop_grace: Duration,
    /// How long a running instance keeps serving after the pass that marked it stopping was
    /// persisted, so that clients following keel's instance list move away first.
    pub drain: Duration,
    pub concurrency: usize,
}

#[derive(Clone)]
pub struct Executor {
    store: Arc<Store>,
    limits: Limits,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<BTreeSet<DeploymentId>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    done: Arc<Notify>,
    clock: Clock,
}

impl Executor {
    /// `done` is notified whenever a job finishes.
    pub fn new(store: Arc<Store>, limits: Limits, done: Arc<Notify>, clock: Clock) -> Self {
        Self {
            store,
            limits,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            in_flight: Arc::default(),
            tasks: Arc::default(),
            done,
            clock,
        }
    }

    /// Deployments with a job still running.
    pub fn busy(&self) -> BTreeSet<DeploymentId> {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts a job in the background.
    pub fn spawn(&self, mut job: Job) {
        job.steps.sort_by_key(|s| match s {
            Step::Remove { .. } => 0,
            Step::Start(_) => 1,
            Step::Create(_) => 2,
        });
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.deployment.clone());
        let this = self.clone();
        let task = tokio::spawn(async move {
            let deployment = job.deployment.clone();
            if let Ok(_permit) = this.permits.clone().acquire_owned().await {
                this.run(job).await;
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

    async fn run(&self, job: Job) {
        let runtime = job.runtime.as_ref();
        for step in &job.steps {
            let result = match step {
                Step::Remove {
                    runtime_id,
                    stop_first,
                } => self.remove(runtime, runtime_id, *stop_first).await,
                Step::Start(runtime_id) => self.call("start", runtime.start(runtime_id)).await,
                Step::Create(spec) => self.create(runtime, spec).await,
            };
            match (result, step) {
                (Ok(()), _) => {}
                (Err(error), Step::Remove { runtime_id, .. }) => {
                    tracing::warn!(deployment = %job.deployment, instance = %runtime_id, %error, "removing an instance failed; the next pass retries");
                }
                (Err(error), Step::Start(_) | Step::Create(_)) => {
                    tracing::warn!(deployment = %job.deployment, %error, "runtime action failed");
                    self.report(&job.deployment, &error).await;
                    return;
                }
            }
        }
    }

    async fn create(&self, runtime: &dyn Runtime, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let runtime_id = self.call("create", runtime.create(spec)).await?;
        self.call("start", runtime.start(&runtime_id)).await
    }

    async fn remove(
        &self,
        runtime: &dyn Runtime,
        runtime_id: &str,
        stop_first: bool,
    ) -> Result<(), RuntimeError> {
        if stop_first {
            tokio::time::sleep(self.limits.drain.to_std()).await;
            self.call("stop", runtime.stop(runtime_id, self.limits.stop_grace))
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

    async fn report(&self, deployment: &DeploymentId, error: &RuntimeError) {
        let failure = Failure {
            status: error.status(),
            message: error.to_string(),
            at: (self.clock)(),
        };
        let (store, id) = (self.store.clone(), deployment.clone());
        let saved = tokio::task::spawn_blocking(move || store.record_failure(id, failure)).await;
        if let Ok(Err(e)) = saved {
            tracing::error!(deployment = %deployment, error = %e, "cannot record a runtime failure");
        }
    }
}
