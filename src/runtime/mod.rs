//! The runtime boundary: narrow verbs over containers and microVMs, no policy. Adapters
//! (`docker`, `cloud_hypervisor`, and the in-memory `fake` for tests) list what keel owns,
//! create, start, stop, remove, exec, and signal wake-ups; `reconcile::plan` decides when.
//!
//! Errors classify themselves into the deployment statuses of DESIGN.md §3.1 in one pure
//! function (`RuntimeError::status`), so the planner never parses error strings.
//! This module never imports `reconcile`, `store`, `api` or `notifier`.

pub mod cloud_hypervisor;
pub mod disabled;
pub mod docker;
pub mod fake;
pub mod labels;
pub mod lease;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::broadcast;

pub use crate::model::desired::InstanceSpec;
use crate::model::manifest::RuntimeKind;
use crate::model::observed::ObservedInstance;
use crate::model::status::DeploymentStatus;
use crate::model::units::Duration;

/// A boxed future of a runtime call.
pub type RuntimeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RuntimeError>> + Send + 'a>>;

/// The result of a command run inside an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// The first bytes of its combined output, for probe messages.
    pub output: String,
}

/// A hint that something changed (an instance died, started, vanished). Only a wake-up: the
/// controller confirms by listing, so a lost event costs latency, never correctness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub runtime_id: String,
    pub what: String,
}

/// The image pulls under way, per deployment (one entry per instance waiting for its image):
/// written by the runtime that pulls, read by the API, which shows each as a `building`
/// instance.
pub type PullBoard = std::sync::Arc<
    std::sync::RwLock<
        std::collections::BTreeMap<
            crate::model::desired::DeploymentId,
            Vec<crate::model::observed::PullProgress>,
        >,
    >,
>;

/// Which part of an instance's output to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Go on with what it prints next, until it ends or the reader goes away.
    pub follow: bool,
    /// Only what it printed from then on (where the runtime keeps times).
    pub since: Option<crate::model::time::Timestamp>,
    /// Only the last lines (of what `since` selects).
    pub tail: Option<u32>,
}

/// An instance's output, in chunks as it arrives.
pub type LogStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, RuntimeError>> + Send>>;

/// A stream of one error (what `logs` returns when there is nothing to read).
pub fn no_logs(error: RuntimeError) -> LogStream {
    Box::pin(futures_util::stream::once(async move { Err(error) }))
}

/// The verbs of a runtime.
pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    /// Every instance carrying keel's ownership labels.
    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>>;
    /// Creates (without starting) an instance; returns its runtime id.
    fn create<'a>(&'a self, spec: &'a InstanceSpec) -> RuntimeFuture<'a, String>;
    fn start<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()>;
    /// Stops gracefully, killing after `grace`.
    fn stop<'a>(&'a self, runtime_id: &'a str, grace: Duration) -> RuntimeFuture<'a, ()>;
    /// Removes a stopped instance (and whatever it alone used).
    fn remove<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()>;
    /// Runs a command inside a running instance (command probes).
    fn exec<'a>(
        &'a self,
        runtime_id: &'a str,
        command: &'a [String],
        timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput>;
    /// What the instance prints (a container's stdout and stderr, a VM's serial console).
    fn logs(&self, runtime_id: &str, options: LogOptions) -> LogStream;
    /// Wake-ups.
    fn events(&self) -> broadcast::Receiver<RuntimeEvent>;
    /// Takes this agent's node name on the runtime for `holder`, exclusively (see `lease`):
    /// `Held` when another agent that may be alive has it.
    fn claim<'a>(&'a self, holder: &'a lease::Holder) -> RuntimeFuture<'a, ()>;
    /// Gives the node name back (on a clean shutdown), if `holder` still has it.
    fn release<'a>(&'a self, holder: &'a lease::Holder) -> RuntimeFuture<'a, ()>;
    /// Where a probe reaches `port` of an instance (its IP and that port, unless the runtime
    /// maps ports elsewhere).
    fn endpoint(&self, instance: &ObservedInstance, port: u16) -> Option<SocketAddr> {
        instance.ip.map(|ip| SocketAddr::new(ip, port))
    }
}

/// Why a runtime call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot get image {image}: {message}")]
    ImagePull { image: String, message: String },
    #[error("the runtime refused to create the instance: {0}")]
    CreateRejected(String),
    #[error("network setup failed: {0}")]
    Network(String),
    #[error("configuration problem: {0}")]
    Config(String),
    #[error("cannot write {path}: {message}")]
    FileSystem { path: String, message: String },
    /// A file the instance boots from does not exist: retrying will not make it appear.
    #[error("the {what} {path} does not exist")]
    MissingFile { what: &'static str, path: String },
    #[error("not enough memory: {requested} requested, {available} available")]
    InsufficientResources {
        requested: String,
        available: String,
    },
    #[error("runtime {0} is not enabled on this host")]
    NotEnabled(RuntimeKind),
    /// This host cannot run the runtime at all (and so nothing of it exists here).
    #[error("{0}")]
    Disabled(String),
    #[error("no instance {0}")]
    NotFound(String),
    #[error("the runtime is unavailable: {0}")]
    Unavailable(String),
    #[error("node {node:?} is already held on this runtime by {holder}; {remedy}")]
    Held {
        node: String,
        holder: String,
        remedy: String,
    },
    #[error("{operation} timed out after {after}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The deployment status this failure puts a deployment in (DESIGN.md §3.1).
    pub fn status(&self) -> DeploymentStatus {
        match self {
            RuntimeError::ImagePull { .. } => DeploymentStatus::ImagePullBackOff,
            RuntimeError::CreateRejected(_) => DeploymentStatus::CreateContainerError,
            RuntimeError::Network(_) => DeploymentStatus::NetworkError,
            RuntimeError::Config(_) => DeploymentStatus::ConfigError,
            RuntimeError::FileSystem { .. } => DeploymentStatus::FileSystemError,
            RuntimeError::InsufficientResources { .. } => DeploymentStatus::InsufficientResources,
            RuntimeError::MissingFile { .. } => DeploymentStatus::Failed,
            RuntimeError::NotEnabled(_)
            | RuntimeError::Disabled(_)
            | RuntimeError::NotFound(_)
            | RuntimeError::Unavailable(_)
            | RuntimeError::Held { .. }
            | RuntimeError::Timeout { .. }
            | RuntimeError::Other(_) => DeploymentStatus::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::desired::DeploymentId;
    use DeploymentStatus as S;

    #[test]
    fn errors_classify_into_deployment_statuses() {
        let cases = [
            (
                RuntimeError::ImagePull {
                    image: "busybox:9".into(),
                    message: "manifest unknown".into(),
                },
                S::ImagePullBackOff,
            ),
            (
                RuntimeError::CreateRejected("port is already allocated".into()),
                S::CreateContainerError,
            ),
            (
                RuntimeError::Network("cannot create network keel-demo".into()),
                S::NetworkError,
            ),
            (
                RuntimeError::Config("secret db-password not found".into()),
                S::ConfigError,
            ),
            (
                RuntimeError::FileSystem {
                    path: "/var/lib/keel/configs".into(),
                    message: "read-only".into(),
                },
                S::FileSystemError,
            ),
            (
                RuntimeError::InsufficientResources {
                    requested: "64Gi".into(),
                    available: "2Gi".into(),
                },
                S::InsufficientResources,
            ),
            (
                RuntimeError::MissingFile {
                    what: "kernel",
                    path: "/srv/vmlinux".into(),
                },
                S::Failed,
            ),
            (
                RuntimeError::NotEnabled(RuntimeKind::CloudHypervisor),
                S::Error,
            ),
            (RuntimeError::NotFound("abc".into()), S::Error),
            (
                RuntimeError::Unavailable("connection refused".into()),
                S::Error,
            ),
            (
                RuntimeError::Timeout {
                    operation: "create",
                    after: Duration::from_secs(30),
                },
                S::Error,
            ),
            (RuntimeError::Other("boom".into()), S::Error),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }

    #[test]
    fn instance_names_carry_namespace_name_generation_and_ordinal() {
        let spec = InstanceSpec {
            deployment: DeploymentId::new("demo", "web"),
            generation: 3,
            ordinal: 1,
            run: None,
            template: "t".into(),
            spec: serde_json::from_value(
                serde_json::json!({"name": "web", "namespace": "demo", "image": "busybox"}),
            )
            .unwrap(),
            mounted_configs: BTreeMap::new(),
        };
        assert_eq!(spec.name(), "keel-demo-web-3-1");
    }
}
