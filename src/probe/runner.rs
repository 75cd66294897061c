//! Schedules probes: one task per (instance, check), each on its own `interval`, reporting every
//! run over a channel. `sync` is given the probes wanted now; it starts the new ones and stops
//! those whose instance or check is gone. Dropping the runner stops every probe.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::model::desired::DeploymentId;
use crate::model::manifest::HealthCheck;
use crate::model::observed::ObservedInstance;
use crate::model::time::Timestamp;
use crate::runtime::Runtime;

use super::ProbeOutcome;

/// One probe to keep running.
#[derive(Clone)]
pub struct ProbeJob {
    pub deployment: DeploymentId,
    pub instance: ObservedInstance,
    pub check_index: u32,
    pub check: HealthCheck,
    pub runtime: Arc<dyn Runtime>,
}

/// One probe run.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub deployment: DeploymentId,
    pub runtime_id: String,
    pub check_index: u32,
    pub check: HealthCheck,
    pub started_at: Option<Timestamp>,
    pub outcome: ProbeOutcome,
    pub at: Timestamp,
}

pub struct Runner {
    reports: mpsc::UnboundedSender<ProbeReport>,
    running: HashMap<(String, u32), (HealthCheck, JoinHandle<()>)>,
    clock: Clock,
}

impl Runner {
    pub fn new(clock: Clock) -> (Self, mpsc::UnboundedReceiver<ProbeReport>) {
        let (reports, receiver) = mpsc::unbounded_channel();
        (
            Self {
                reports,
                running: HashMap::new(),
                clock,
            },
            receiver,
        )
    }

    /// Makes the running probes exactly `jobs`.
    pub fn sync(&mut self, jobs: Vec<ProbeJob>) {
        let wanted: HashMap<(String, u32), ProbeJob> = jobs
            .into_iter()
            .map(|j| ((j.instance.runtime_id.clone(), j.check_index), j))
            .collect();
        self.running.retain(|key, (check, task)| {
            let keep = wanted.get(key).is_some_and(|j| j.check == *check);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, job) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let check = job.check.clone();
            let task = tokio::spawn(probe_loop(job, self.reports.clone(), self.clock.clone()));
            self.running.insert(key, (check, task));
        }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}

async fn probe_loop(job: ProbeJob, reports: mpsc::UnboundedSender<ProbeReport>, clock: Clock) {
    let mut ticker = tokio::time::interval(
        job.check
            .interval
            .to_std()
            .max(std::time::Duration::from_millis(10)),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = super::run(&job.check, job.runtime.as_ref(), &job.instance).await;
        let report = ProbeReport {
            deployment: job.deployment.clone(),
            runtime_id: job.instance.runtime_id.clone(),
            check_index: job.check_index,
            check: job.check.clone(),
            started_at: job.instance.started_at,
            outcome,
            at: clock(),
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}
