//! The Docker runtime, on bollard. One bridge network `keel-<node>-<namespace>` per namespace
//! (created on demand, removed with the node's last container of it), containers named
//! `keel-<node>-<namespace>-<name>-<generation>-<ordinal>` and labelled for adoption — names
//! carry the node, so agents of several nodes share one daemon without colliding. Images follow
//! the pull policy; host memory is checked before anything is created. Observation goes
//! through a cache (`cache.rs`): listed and inspected in full at the start, after the event
//! stream broke and every 5 minutes; in between a listing re-inspects only the containers an
//! event or one of keel's own verbs named, so a quiet host costs the daemon nothing.

mod auth;
mod build;
mod cache;
pub mod errors;
mod events;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::model::desired::DeploymentId;
use crate::model::manifest::{PullPolicy, RuntimeKind};
use crate::model::observed::{ObservedInstance, Phase};
use crate::model::time::Timestamp;
use crate::model::units::Duration;

use super::lease::{self, Decision, Holder, Liveness};
use super::{labels, ExecOutput, InstanceSpec, Runtime, RuntimeError, RuntimeEvent, RuntimeFuture};
use errors::Operation;

pub use build::{container_name, network_name};

/// What the agent config says about Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `unix:///var/run/docker.sock`; `None`: `DOCKER_HOST` or the default socket.
    pub socket: Option<String>,
    /// Host paths a manifest may bind-mount (and everything below them).
    pub bind_allow: Vec<PathBuf>,
    /// Where `secretRef: NAME` finds the file `NAME`.
    pub secrets_dir: PathBuf,
    /// Where rendered config and secret files live.
    pub state_dir: PathBuf,
    /// This agent's owner label (`keel.owner`); it lists and removes only containers with it.
    pub owner: String,
    /// Whether a manifest may run a privileged container (`[docker] allow_privileged`).
    pub allow_privileged: bool,
    /// The agent user's Docker config file, when `[docker] use_host_auth` lets pulls use it.
    pub host_auth: Option<PathBuf>,
}

pub struct DockerRuntime {
    docker: Docker,
    settings: Settings,
    /// Pulls under way, shown by the API as `building` instances.
    pulls: super::PullBoard,
    events: broadcast::Sender<RuntimeEvent>,
    /// Held shared while a container is created or started on a namespace network, and
    /// exclusively while an unused network is removed, so a network never vanishes under a
    /// container that is about to use it.
    networks: tokio::sync::RwLock<()>,
    /// Docker does not refuse a second network of the same name: creation is serialized.
    network_create: tokio::sync::Mutex<()>,
    /// The daemon's recent outages, kept by the event follower.
    outages: Arc<Mutex<events::Outages>>,
    /// What the daemon last said about keel's containers, kept current by the event follower
    /// and keel's own verbs: a listing reads the daemon only for what changed.
    cache: Arc<Mutex<cache::Cache>>,
    /// Requests made to observe (listings and inspections), for metrics and tests.
    reads: AtomicU64,
}

impl DockerRuntime {
    /// Connects (lazily: nothing is sent until the first call) and starts following events.
    pub fn connect(settings: Settings) -> Result<Self, RuntimeError> {
        let docker = match &settings.socket {
            Some(socket) => {
                let path = socket.strip_prefix("unix://").unwrap_or(socket);
                Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            }
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| errors::unreachable(&e.to_string()))?;
        let (events, _) = broadcast::channel(1024);
        let outages = Arc::new(Mutex::new(events::Outages::default()));
        let cache = Arc::new(Mutex::new(cache::Cache::default()));
        events::follow(
            docker.clone(),
            events.clone(),
            settings.owner.clone(),
            outages.clone(),
            cache.clone(),
        );
        Ok(Self {
            docker,
            settings,
            pulls: super::PullBoard::default(),
            events,
            networks: tokio::sync::RwLock::new(()),
            network_create: tokio::sync::Mutex::new(()),
            outages,
            cache,
            reads: AtomicU64::new(0),
        })
    }

    /// Publishes the pulls under way into `board` (shared with the API).
    pub fn with_pull_board(mut self, board: super::PullBoard) -> Self {
        self.pulls = board;
        self
    }

    /// The pulls under way.
    pub fn pulls(&self) -> super::PullBoard {
        self.pulls.clone()
    }

    /// How many requests observing the daemon has made so far (listings and inspections).
    /// With the cache warm, a listing with nothing changed makes none.
    pub fn observation_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, cache::Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists every owned container and inspects each: the cache's complete refill.
    async fn list_all(&self) -> Result<(), RuntimeError> {
        let at = tokio::time::Instant::now();
        self.cache().begin_listing();
        let filters = HashMap::from([("label".to_owned(), self.owned())]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(Self::fail(Operation::Other, ""))?;
        let mut all = BTreeMap::new();
        for id in containers.into_iter().filter_map(|c| c.id) {
            if let Some(entry) = self.inspect(&id).await? {
                all.insert(id, entry);
            }
        }
        self.cache().replace(all, at);
        Ok(())
    }

    /// Re-inspects only the containers named since the last listing. On a failure the ids
    /// not yet done stay marked for the next listing.
    async fn refresh(&self) -> Result<(), RuntimeError> {
        let dirty = self.cache().take_dirty();
        let mut pending = dirty.iter();
        while let Some(id) = pending.next() {
            match self.inspect(id).await {
                Ok(entry) => self.cache().update(id, entry),
                Err(error) => {
                    let mut cache = self.cache();
                    cache.mark(id);
                    pending.for_each(|rest| cache.mark(rest));
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    fn fail(op: Operation, image: &str) -> impl Fn(bollard::errors::Error) -> RuntimeError + '_ {
        move |e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => errors::classify(op, status_code, &message, image),
            other => errors::unreachable(&other.to_string()),
        }
    }

    async fn ensure_image(
        &self,
        spec: &InstanceSpec,
        image: &str,
        policy: PullPolicy,
    ) -> Result<(), RuntimeError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => false,
            Err(e) => return Err(Self::fail(Operation::InspectImage, image)(e)),
        };
        match (policy, present) {
            (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => Ok(()),
            (PullPolicy::Never, false) => Err(RuntimeError::ImagePull {
                image: image.to_owned(),
                message: "the image is not present and image_pull_policy is Never".to_owned(),
            }),
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => {
                self.pull(spec, image).await
            }
        }
    }

    /// Pulls `image` with the credentials `spec` and the operator give (`auth`).
    async fn pull(&self, spec: &InstanceSpec, image: &str) -> Result<(), RuntimeError> {
        let credentials = auth::credentials(
            image,
            &auth::Sources {
                config: spec.spec.config.as_ref(),
                secrets_dir: &self.settings.secrets_dir,
                host_auth: self.settings.host_auth.as_deref(),
            },
        )?;
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..CreateImageOptions::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        let _shown = Pulling::start(&self.pulls, spec, image);
        while let Some(step) = progress.next().await {
            let step = match step {
                Ok(step) => step,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(RuntimeError::ImagePull {
                        image: image.to_owned(),
                        message: error,
                    })
                }
                Err(e) => return Err(Self::fail(Operation::Pull, image)(e)),
            };
            if let Some(message) = step.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::ImagePull {
                    image: image.to_owned(),
                    message,
                });
            }
            let detail = step.progress_detail.unwrap_or_default();
            Pulling::record(&self.pulls, spec, |p| {
                p.record(
                    step.id.as_deref(),
                    step.status.as_deref().unwrap_or_default(),
                    detail.current,
                    detail.total,
                )
            });
        }
        Ok(())
    }

    /// The host's memory as the daemon sees it.
    async fn check_memory(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let resources = spec.spec.resources.as_ref();
        let wanted = resources
            .and_then(|r| {
                r.requests
                    .as_ref()
                    .and_then(|q| q.memory)
                    .or(r.limits.as_ref().and_then(|l| l.memory))
            })
            .map(|m| m.bytes());
        let Some(wanted) = wanted else { return Ok(()) };
        let info = self
            .docker
            .info()
            .await
            .map_err(Self::fail(Operation::Other, ""))?;
        let total = info
            .mem_total
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(u64::MAX);
        if wanted > total {
            return Err(RuntimeError::InsufficientResources {
                requested: crate::model::units::Memory::from_bytes(wanted).to_string(),
                available: crate::model::units::Memory::from_bytes(total).to_string(),
            });
        }
        Ok(())
    }

    async fn ensure_network(&self, namespace: &str) -> Result<(), RuntimeError> {
        let name = network_name(&self.settings.owner, namespace);
        let _serialized = self.network_create.lock().await;
        if self
            .docker
            .inspect_network(
                &name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        let request = bollard::models::NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".to_owned()),
            labels: Some(HashMap::from([
                (labels::MANAGED.to_owned(), "true".to_owned()),
                (labels::NAMESPACE.to_owned(), namespace.to_owned()),
                (labels::OWNER.to_owned(), self.settings.owner.clone()),
            ])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Another create won the race.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(Self::fail(Operation::CreateNetwork, "")(e)),
        }
    }

    /// Containers made before network names carried the node sit on `keel-<namespace>`: each
    /// joins its namespace's `keel-<node>-<namespace>` too, so that it and every instance
    /// created from now on reach each other. Best effort, once per start: a container that
    /// cannot join is logged and keeps its old network (its replacement gets the new one).
    async fn join_node_networks(&self) {
        let filters = HashMap::from([("label".to_owned(), self.owned())]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let Ok(containers) = self.docker.list_containers(Some(options)).await else {
            return;
        };
        for container in containers {
            let Some((id, namespace)) = legacy_member(&container, &self.settings.owner) else {
                continue;
            };
            if let Err(error) = self.join(&id, &namespace).await {
                tracing::warn!(container = %id, %error, "cannot join a container made by an older keel to its node's network");
            }
        }
    }

    /// Connects container `id` to the node's network of `namespace`.
    async fn join(&self, id: &str, namespace: &str) -> Result<(), RuntimeError> {
        let _in_use = self.networks.read().await;
        self.ensure_network(namespace).await?;
        let request = bollard::models::NetworkConnectRequest {
            container: id.to_owned(),
            endpoint_config: None,
        };
        let network = network_name(&self.settings.owner, namespace);
        self.docker
            .connect_network(&network, request)
            .await
            .map_err(Self::fail(Operation::CreateNetwork, ""))
    }

    /// The label filters of what this agent owns.
    fn owned(&self) -> Vec<String> {
        vec![
            format!("{}=true", labels::MANAGED),
            format!("{}={}", labels::OWNER, self.settings.owner),
        ]
    }

    /// The namespace of a container on a namespace bridge (`None` with host networking).
    async fn bridge_namespace(&self, runtime_id: &str) -> Option<String> {
        let c = self
            .docker
            .inspect_container(runtime_id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let host = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("host");
        if host {
            return None;
        }
        c.config?.labels?.get(labels::NAMESPACE).cloned()
    }

    async fn create_container(
        &self,
        spec: &InstanceSpec,
        body: &bollard::models::ContainerCreateBody,
    ) -> Result<String, bollard::errors::Error> {
        let options = CreateContainerOptions {
            name: Some(container_name(&self.settings.owner, spec)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body.clone())
            .await?;
        self.cache().mark(&created.id);
        Ok(created.id)
    }

    async fn start_container(&self, runtime_id: &str) -> Result<(), bollard::errors::Error> {
        self.docker
            .start_container(runtime_id, None::<StartContainerOptions>)
            .await
    }

    /// Removes the namespace network when no keel container uses it any more.
    async fn prune_network(&self, namespace: &str) {
        let _exclusive = self.networks.write().await;
        let mut owned = self.owned();
        owned.push(format!("{}={namespace}", labels::NAMESPACE));
        let filters = HashMap::from([("label".to_owned(), owned)]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        if let Ok(containers) = self.docker.list_containers(Some(options)).await {
            if containers.is_empty() {
                // And the name an older keel gave it, which the daemon refuses to remove
                // while any container still uses it.
                let legacy = format!("keel-{namespace}");
                for network in [network_name(&self.settings.owner, namespace), legacy] {
                    let _ = self.docker.remove_network(&network).await;
                }
            }
        }
    }

    /// A container's labels and its phase, IP (127.0.0.1 with host networking), start and
    /// finish times; `None` when it is gone or is not this agent's.
    async fn inspect(&self, id: &str) -> Result<Option<cache::Entry>, RuntimeError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let inspected = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(Self::fail(Operation::Other, ""));
        let Some(response) = present(inspected)? else {
            return Ok(None);
        };
        let labels = response
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let owner = labels.get(labels::OWNER).map(String::as_str);
        if owner != Some(self.settings.owner.as_str()) {
            return Ok(None);
        }
        let state = response.state.unwrap_or_default();
        let host_network = response
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("host");
        let started_at = state
            .started_at
            .as_deref()
            .and_then(crate::model::time::parse_rfc3339);
        let finished_at = state
            .finished_at
            .as_deref()
            .filter(|f| !f.starts_with("0001-"))
            .and_then(crate::model::time::parse_rfc3339);
        let phase = if state.running.unwrap_or(false) {
            Phase::Running
        } else if state
            .started_at
            .as_deref()
            .is_some_and(|s| !s.starts_with("0001-"))
        {
            Phase::Exited {
                exit_code: state.exit_code.unwrap_or(-1),
                oom_killed: state.oom_killed.unwrap_or(false),
            }
        } else {
            Phase::Created
        };
        let ip = response
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| {
                nets.values()
                    .find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty()))
            })
            .and_then(|ip| ip.parse().ok())
            .or_else(|| host_network.then_some(std::net::IpAddr::from([127, 0, 0, 1])));
        let last_output = match phase {
            Phase::Exited { .. } => self.evidence_once(id, finished_at, &labels).await,
            Phase::Created | Phase::Running => None,
        };
        let inspection = Inspection {
            phase,
            ip,
            started_at,
            finished_at,
            last_output,
        };
        Ok(Some((labels, inspection)))
    }
}

/// How many of an exited container's last lines keel keeps as evidence of how it ended, and
/// at most how many bytes of them (a line may be long).
const EVIDENCE_LINES: u32 = 50;
const EVIDENCE_BYTES: usize = 8 * 1024;

/// The end of `text`, at most `max` bytes, cut at a character boundary.
fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl DockerRuntime {
    /// `evidence` of container `id`'s exit at `finished_at`, read from its logs once: later
    /// inspections of the same exit (a resync, an event) reuse it.
    async fn evidence_once(
        &self,
        id: &str,
        finished_at: Option<Timestamp>,
        labels: &HashMap<String, String>,
    ) -> Option<String> {
        let kept = self.cache().evidence(id, finished_at);
        if let Some(output) = kept {
            return output;
        }
        let output = self.evidence(id, labels).await;
        self.cache().keep_evidence(id, finished_at, output.clone());
        output
    }

    /// The last lines an exited container printed, every value of the secrets it was given
    /// (its `keel.secrets` label names them) replaced by `[secret]`; read once, when it is
    /// inspected after its exit, so that the event of its death keeps them after it is
    /// removed. `None` when it printed nothing or the logs cannot be read.
    async fn evidence(&self, id: &str, labels: &HashMap<String, String>) -> Option<String> {
        let options = super::LogOptions {
            tail: Some(EVIDENCE_LINES),
            ..super::LogOptions::default()
        };
        let chunks: Vec<_> = super::Runtime::logs(self, id, options).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .collect();
        let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
        if text.is_empty() {
            return None;
        }
        let names: Vec<String> = labels
            .get(labels::SECRETS)
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let dir = self.settings.secrets_dir.clone();
        let values = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .filter_map(|name| build::read_secret(&dir, name, "secret").ok())
                .collect::<Vec<String>>()
        })
        .await
        .unwrap_or_default();
        let redacted = crate::model::observed::redact(&text, &values);
        Some(last_bytes(&redacted, EVIDENCE_BYTES).to_owned())
    }
}

/// Marks a container in the cache when dropped: after a verb, however it ended (an error or
/// a timeout that dropped the call mid-way).
struct Mark<'a>(&'a DockerRuntime, &'a str);

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        self.0.cache().mark(self.1);
    }
}

/// What inspecting a container tells beyond its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inspection {
    phase: Phase,
    ip: Option<std::net::IpAddr>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// An exited container's last lines of output, secrets hidden (see `evidence`).
    last_output: Option<String>,
}

/// PURE: an inspection's answer. Unknown is not absent: a container that vanished before its
/// inspection (`NotFound`) is gone, but any other failure fails the whole listing, so the
/// planner holds instead of forgetting an instance that may still run.
fn present<T>(inspected: Result<T, RuntimeError>) -> Result<Option<T>, RuntimeError> {
    match inspected {
        Ok(found) => Ok(Some(found)),
        Err(RuntimeError::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// PURE: a container's labels and inspection → the observed instance. A container without
/// keel's complete labels is not an instance (`None`). An exited container that finished
/// during one of the daemon's `outages` was stopped by the daemon (`interrupted`), not by
/// itself.
fn observed(
    id: &str,
    label: &HashMap<String, String>,
    inspection: &Inspection,
    outages: &events::Outages,
) -> Option<ObservedInstance> {
    let labelled = || {
        Some((
            DeploymentId::new(label.get(labels::NAMESPACE)?, label.get(labels::NAME)?),
            label.get(labels::GENERATION)?.parse().ok()?,
            label.get(labels::ORDINAL)?.parse().ok()?,
            label.get(labels::SPEC_HASH)?.clone(),
        ))
    };
    let (deployment, generation, ordinal, template) = labelled()?;
    let run = match label.get(labels::RUN) {
        Some(run) => Some(run.parse().ok()?),
        None => None,
    };
    Some(ObservedInstance {
        runtime: RuntimeKind::Docker,
        runtime_id: id.to_owned(),
        deployment,
        generation,
        ordinal,
        run,
        template,
        phase: inspection.phase,
        ip: inspection.ip,
        started_at: inspection.started_at,
        interrupted: matches!(inspection.phase, Phase::Exited { .. })
            && inspection.finished_at.is_some_and(|f| outages.covers(f)),
        last_output: inspection.last_output.clone(),
    })
}

/// One instance's entry on the pull board, from the start of its pull to its end (whatever
/// the end: the guard removes it on drop).
struct Pulling<'a> {
    board: &'a super::PullBoard,
    deployment: DeploymentId,
    ordinal: u32,
}

impl<'a> Pulling<'a> {
    fn start(board: &'a super::PullBoard, spec: &InstanceSpec, image: &str) -> Self {
        let progress =
            crate::model::observed::PullProgress::new(image, spec.ordinal, spec.generation);
        let mut pulls = board.write().unwrap_or_else(|p| p.into_inner());
        pulls
            .entry(spec.deployment.clone())
            .or_default()
            .push(progress);
        Self {
            board,
            deployment: spec.deployment.clone(),
            ordinal: spec.ordinal,
        }
    }

    fn record(
        board: &super::PullBoard,
        spec: &InstanceSpec,
        update: impl FnOnce(&mut crate::model::observed::PullProgress),
    ) {
        let mut pulls = board.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pulls
            .get_mut(&spec.deployment)
            .and_then(|all| all.iter_mut().find(|p| p.ordinal == spec.ordinal))
        {
            update(p);
        }
    }
}

impl Drop for Pulling<'_> {
    fn drop(&mut self) {
        let mut pulls = self.board.write().unwrap_or_else(|p| p.into_inner());
        if let Some(all) = pulls.get_mut(&self.deployment) {
            all.retain(|p| p.ordinal != self.ordinal);
            if all.is_empty() {
                pulls.remove(&self.deployment);
            }
        }
    }
}

/// A refusal of the daemon that `why` (a pure rule of `errors`, by status and message) names.
fn refusal_is(e: &bollard::errors::Error, why: fn(u16, &str) -> bool) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => why(*status_code, message),
        _ => false,
    }
}

impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>> {
        Box::pin(async move {
            let complete = self.cache().needs_listing(tokio::time::Instant::now());
            match complete {
                true => self.list_all().await?,
                false => self.refresh().await?,
            }
            let cache = self.cache();
            let outages = self.outages.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for (id, (label, inspection)) in cache.containers() {
                out.extend(observed(id, label, inspection, &outages));
            }
            Ok(out)
        })
    }

    fn create<'a>(&'a self, spec: &'a InstanceSpec) -> RuntimeFuture<'a, String> {
        Box::pin(async move {
            self.check_memory(spec).await?;
            let body = build::container(spec, &self.settings)?;
            let image = body.image.clone().unwrap_or_default();
            let policy = spec
                .spec
                .config
                .as_ref()
                .map(|c| c.image_pull_policy)
                .unwrap_or_default();
            if policy == PullPolicy::Always {
                self.pull(spec, &image).await?;
            }
            // Optimistic, like Docker's own `run`: the create is tried first, and only a
            // create refused for a missing image or network pulls or creates it and tries
            // again (each cause once). The usual create is one request, not three. The
            // network lock is held around each request, never across a pull (a prune waiting
            // for it would stall every create and start behind the pull).
            let (mut pulled, mut networked) = (policy == PullPolicy::Always, false);
            loop {
                let refused = {
                    let _in_use = self.networks.read().await;
                    match self.create_container(spec, &body).await {
                        Ok(id) => return Ok(id),
                        Err(e) => e,
                    }
                };
                if !pulled && refusal_is(&refused, errors::missing_image) {
                    pulled = true;
                    self.ensure_image(spec, &image, policy).await?;
                } else if !networked && refusal_is(&refused, errors::missing_network) {
                    networked = true;
                    let _in_use = self.networks.read().await;
                    self.ensure_network(&spec.deployment.namespace).await?;
                } else {
                    return Err(Self::fail(Operation::CreateContainer, &image)(refused));
                }
            }
        })
    }

    fn start<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            // Held across the start: keel never prunes a network under a start. Its network is
            // not looked up first (create just ensured it); only a start refused because the
            // network went (removed by hand since) recreates it and tries once more.
            let _in_use = self.networks.read().await;
            // Marked whatever the answer: a failed start can still change the container.
            let _mark = Mark(self, runtime_id);
            match self.start_container(runtime_id).await {
                Err(e) if refusal_is(&e, errors::missing_network) => {
                    if let Some(namespace) = self.bridge_namespace(runtime_id).await {
                        self.ensure_network(&namespace).await?;
                    }
                    self.start_container(runtime_id).await
                }
                started => started,
            }
            .map_err(Self::fail(Operation::StartContainer, ""))
        })
    }

    fn stop<'a>(&'a self, runtime_id: &'a str, grace: Duration) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let t = i32::try_from(grace.as_millis() / 1000).unwrap_or(i32::MAX);
            let _mark = Mark(self, runtime_id);
            match self
                .docker
                .stop_container(
                    runtime_id,
                    Some(StopContainerOptions {
                        t: Some(t),
                        signal: None,
                    }),
                )
                .await
            {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                Err(e) => Err(Self::fail(Operation::Other, "")(e)),
            }
        })
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let namespace = self
                .docker
                .inspect_container(runtime_id, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|c| c.config?.labels?.get(labels::NAMESPACE).cloned());
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _mark = Mark(self, runtime_id);
            match self
                .docker
                .remove_container(runtime_id, Some(options))
                .await
            {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(Self::fail(Operation::Other, "")(e)),
            }
            if let Some(namespace) = namespace {
                self.prune_network(&namespace).await;
            }
            Ok(())
        })
    }

    fn exec<'a>(
        &'a self,
        runtime_id: &'a str,
        command: &'a [String],
        _timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput> {
        Box::pin(async move {
            let config = bollard::models::ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            };
            let fail = Self::fail(Operation::Other, "");
            let exec = self
                .docker
                .create_exec(runtime_id, config)
                .await
                .map_err(&fail)?;
            let mut output = String::new();
            if let bollard::exec::StartExecResults::Attached {
                output: mut stream, ..
            } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(&fail)?
            {
                while let Some(Ok(chunk)) = stream.next().await {
                    if output.len() < 4096 {
                        output.push_str(&chunk.to_string());
                    }
                }
            }
            // The output can end a moment before the daemon records the exit code.
            for _ in 0..100 {
                let inspected = self.docker.inspect_exec(&exec.id).await.map_err(&fail)?;
                if let (Some(false), Some(exit_code)) = (inspected.running, inspected.exit_code) {
                    return Ok(ExecOutput { exit_code, output });
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(RuntimeError::Other(format!(
                "exec in {runtime_id} did not report an exit code"
            )))
        })
    }

    fn logs(&self, runtime_id: &str, options: super::LogOptions) -> super::LogStream {
        let query = bollard::query_parameters::LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: options
                .since
                .map_or(0, |t| i32::try_from(t.0 / 1000).unwrap_or(0)),
            until: 0,
            timestamps: false,
            tail: options
                .tail
                .map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        Box::pin(
            self.docker
                .logs(runtime_id, Some(query))
                .map(|chunk| match chunk {
                    Ok(output) => Ok(output.into_bytes().to_vec()),
                    Err(e) => Err(Self::fail(Operation::Other, "")(e)),
                }),
        )
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn claim<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            // Two rounds: a lease left by a dead agent is removed, then claimed again.
            for _ in 0..2 {
                let found = self.create_lease(holder).await?;
                let liveness = found.as_ref().map_or(Liveness::Unknown, Holder::liveness);
                match lease::decide(found, holder, liveness) {
                    Decision::Held => {
                        self.join_node_networks().await;
                        return Ok(());
                    }
                    Decision::TakeOver(gone) => {
                        tracing::warn!(node = %self.settings.owner, previous = %gone.describe(), "taking over the node lease of an agent that is gone");
                        self.docker
                            .remove_volume(&self.lease_name(), None::<RemoveVolumeOptions>)
                            .await
                            .map_err(Self::fail(Operation::Other, ""))?;
                    }
                    Decision::Refuse(other) => return Err(self.held_by(&other)),
                }
            }
            Err(RuntimeError::Held {
                node: self.settings.owner.clone(),
                holder: "another agent starting at the same time".to_owned(),
                remedy: "start one agent per node name".to_owned(),
            })
        })
    }

    fn release<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let name = self.lease_name();
            let volume = match self.docker.inspect_volume(&name).await {
                Ok(volume) => volume,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => return Err(Self::fail(Operation::Other, "")(e)),
            };
            if Holder::from_labels(&volume.labels).is_some_and(|h| h.id == holder.id) {
                self.docker
                    .remove_volume(&name, None::<RemoveVolumeOptions>)
                    .await
                    .map_err(Self::fail(Operation::Other, ""))?;
            }
            Ok(())
        })
    }
}

impl DockerRuntime {
    /// The lease volume of this agent's node name.
    fn lease_name(&self) -> String {
        lease_volume(&self.settings.owner)
    }

    /// Creates the lease volume with `holder`'s labels. Creation is idempotent and keeps the
    /// first creator's labels, so what comes back names whoever holds it now.
    async fn create_lease(&self, holder: &Holder) -> Result<Option<Holder>, RuntimeError> {
        let mut labels = holder.to_labels();
        labels.insert(labels::MANAGED.to_owned(), "true".to_owned());
        labels.insert(labels::OWNER.to_owned(), self.settings.owner.clone());
        let request = bollard::models::VolumeCreateRequest {
            name: Some(self.lease_name()),
            labels: Some(labels),
            ..Default::default()
        };
        let volume = self
            .docker
            .create_volume(request)
            .await
            .map_err(Self::fail(Operation::Other, ""))?;
        Ok(Holder::from_labels(&volume.labels))
    }

    fn held_by(&self, other: &Holder) -> RuntimeError {
        RuntimeError::Held {
            node: self.settings.owner.clone(),
            holder: other.describe(),
            remedy: format!(
                "stop that agent, or give this one another `node` in keel.toml; if that agent is gone for good, remove its lease: docker volume rm {}",
                self.lease_name()
            ),
        }
    }
}

/// The id and namespace of `container` when it is on its namespace's network as an older keel
/// named it (`keel-<namespace>`) and not yet on the node's (`keel-<node>-<namespace>`).
fn legacy_member(
    container: &bollard::models::ContainerSummary,
    node: &str,
) -> Option<(String, String)> {
    let namespace = container.labels.as_ref()?.get(labels::NAMESPACE)?.clone();
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let legacy = networks.contains_key(&format!("keel-{namespace}"));
    let joined = networks.contains_key(&network_name(node, &namespace));
    let id = container.id.clone()?;
    (legacy && !joined).then_some((id, namespace))
}

/// `keel-lease-<node>` (see `node_slug`).
fn lease_volume(node: &str) -> String {
    format!("keel-lease-{}", build::node_slug(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keel_labels() -> HashMap<String, String> {
        HashMap::from([
            (labels::NAMESPACE.to_owned(), "demo".to_owned()),
            (labels::NAME.to_owned(), "web".to_owned()),
            (labels::GENERATION.to_owned(), "2".to_owned()),
            (labels::ORDINAL.to_owned(), "1".to_owned()),
            (labels::SPEC_HASH.to_owned(), "t".to_owned()),
        ])
    }

    fn running() -> Inspection {
        Inspection {
            phase: Phase::Running,
            ip: None,
            started_at: None,
            finished_at: None,
            last_output: None,
        }
    }

    fn exited_at(secs: i64) -> Inspection {
        Inspection {
            phase: Phase::Exited {
                exit_code: 143,
                oom_killed: false,
            },
            ip: None,
            started_at: None,
            finished_at: Some(Timestamp(secs * 1000)),
            last_output: None,
        }
    }

    #[test]
    fn a_container_that_finished_during_a_daemon_outage_was_interrupted() {
        let mut outages = events::Outages::default();
        outages.went_down(Timestamp(100_000));
        outages.came_back(Timestamp(130_000));
        let interrupted = |inspection| {
            observed("c1", &keel_labels(), &inspection, &outages)
                .unwrap()
                .interrupted
        };
        assert!(interrupted(exited_at(110)));
        assert!(!interrupted(exited_at(200)), "a later death is its own");
        assert!(!interrupted(running()));
    }

    #[test]
    fn an_inspected_container_is_an_instance_of_the_docker_runtime() {
        let instance = observed("c1", &keel_labels(), &running(), &Default::default()).unwrap();
        assert_eq!(
            (
                instance.runtime,
                instance.deployment,
                instance.generation,
                instance.ordinal
            ),
            (RuntimeKind::Docker, DeploymentId::new("demo", "web"), 2, 1)
        );
    }

    #[test]
    fn a_container_gone_before_its_inspection_is_absent() {
        let gone: Result<Inspection, _> =
            Err(RuntimeError::NotFound("no such container: c1".into()));
        assert_eq!(present(gone).unwrap(), None);
    }

    #[test]
    fn any_other_inspection_failure_fails_the_whole_listing() {
        for error in [
            RuntimeError::Other("500 internal server error".into()),
            RuntimeError::Unavailable("connection reset".into()),
            RuntimeError::Timeout {
                operation: "inspect",
                after: crate::model::units::Duration::from_secs(5),
            },
        ] {
            assert_eq!(
                present::<Inspection>(Err(error.clone())),
                Err(error),
                "an instance that may still run must not be forgotten"
            );
        }
    }

    #[test]
    fn a_container_without_complete_labels_is_not_an_instance() {
        let mut partial = keel_labels();
        partial.remove(labels::ORDINAL);
        assert_eq!(
            observed("c1", &partial, &running(), &Default::default()),
            None
        );
    }
}
