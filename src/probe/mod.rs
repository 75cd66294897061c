//! Running health checks: tcp connect, http GET, command via `Runtime::exec`. Probes report
//! facts (ok, latency, message) and decide nothing; `reconcile::readiness` folds them into
//! check states and the planner acts on those.

mod exec;
mod http;
pub mod runner;
mod tcp;

use std::time::Instant;

use crate::model::manifest::{CheckKind, HealthCheck};
use crate::model::observed::ObservedInstance;
use crate::runtime::Runtime;

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub latency_ms: u64,
    pub message: String,
}

/// Runs `check` once against `instance`, within the check's timeout.
pub async fn run(
    check: &HealthCheck,
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
) -> ProbeOutcome {
    let started = Instant::now();
    let attempt = async {
        match check.kind {
            CheckKind::Tcp => tcp::probe(check, runtime, instance).await,
            CheckKind::Http => http::probe(check, runtime, instance).await,
            CheckKind::Command => exec::probe(check, runtime, instance).await,
        }
    };
    let result = tokio::time::timeout(check.timeout.to_std(), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}", check.timeout)));
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(message) => ProbeOutcome {
            ok: true,
            latency_ms,
            message,
        },
        Err(message) => ProbeOutcome {
            ok: false,
            latency_ms,
            message,
        },
    }
}

/// The instance's address for `port`, or why there is none.
fn endpoint(
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
    port: u32,
) -> Result<std::net::SocketAddr, String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
    runtime
        .endpoint(instance, port)
        .ok_or_else(|| format!("instance {} has no address yet", instance.runtime_id))
}
