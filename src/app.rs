//! The composition root of `keel agent`: builds the store, the runtimes, the controller, the
//! API (with the push receivers), the source and its ingest, connects them, and runs until
//! SIGTERM/SIGINT. Wiring only: behaviour lives in the parts. The only module that names
//! concrete adapters, and the one that turns `config`'s plain settings into theirs. `anyhow`
//! is allowed here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::sync::{mpsc, watch, Notify};

use crate::api::dto::SourceDto;
use crate::api::hooks::{HookSecrets, Hooks};
use crate::api::serve::ServeLimits;
use crate::api::{self, Access, ApiState, SourceStatus};
use crate::clock;
use crate::config::{AgentConfig, AgentSettings, ForgeChoice, GitReference, SourceKind};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::model::manifest::RuntimeKind;
use crate::notifier::worker::Notifier;
use crate::notifier::{
    ForgeKind, ForgeSettings as NotifierForge, RetryPolicy, Settings as NotifierSettings,
    WebhookEndpoint,
};
use crate::reconcile::controller::{Config as ControllerConfig, Controller};
use crate::runtime::cloud_hypervisor::net::Network;
use crate::runtime::cloud_hypervisor::{CloudHypervisorRuntime, Settings as ChSettings};
use crate::runtime::disabled::Disabled;
use crate::runtime::docker::{DockerRuntime, Settings as DockerSettings};
use crate::runtime::lease::Holder;
use crate::runtime::{Runtime, RuntimeError};
use crate::source::dir::DirSource;
use crate::source::git::{Credentials, GitRef, GitSource, GitSpec};
use crate::source::SourceEvent;
use crate::store::Store;

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    settings: AgentSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state_dir = settings.config.state_dir.clone();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    if let Some(parent) = settings.db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = Arc::new(Store::open(&settings.db)?);
    let metrics = Arc::new(Metrics::default());
    let status: SourceStatus = Arc::new(RwLock::new(SourceDto {
        source: Some(source_label(&settings)),
        ..SourceDto::default()
    }));
    let access = Access {
        tokens: settings.config.api.tokens.clone(),
        admin_tokens: settings.config.api.admin_tokens.clone(),
        public_metrics: settings.config.api.public_metrics,
    };
    let api_state = ApiState::new(settings.db.clone(), access, metrics.clone(), status.clone());
    api_state.cache_under(store.writes());
    api_state.write_with(store.clone());
    let docker: Arc<dyn Runtime> = Arc::new(
        DockerRuntime::connect(docker_settings(&settings.config))?
            .with_pull_board(api_state.pulls.clone()),
    );
    let (vms, vms_disabled) = cloud_hypervisor(&settings)?;
    let runtimes = vec![docker, vms];
    // The first line of the log: what this agent is and what it runs.
    let enabled = match &vms_disabled {
        None => "docker, cloud-hypervisor".to_owned(),
        Some(reason) => {
            format!("docker (cloud-hypervisor disabled: {reason}; its deployments hold)")
        }
    };
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        build = %env!("KEEL_BUILD"),
        source = %source_label(&settings),
        node = %settings.config.node,
        db = %settings.db.display(),
        runtimes = %enabled,
        "keel agent starting"
    );
    api_state.serve_logs_from(&runtimes);
    // One agent per node name and runtime: everything is owned by that name. Another live
    // holder stops the start here; a runtime that does not answer yet is claimed in the
    // background, before the first pass.
    let holder = Holder::current(clock::now());
    let pending = claim(&runtimes, &holder, &settings.config.node).await?;
    if let Some(error) = &pending {
        tracing::warn!(%error, "cannot take the node name yet; reconciling starts once the runtime answers");
    }
    let mut controller_config = ControllerConfig {
        resync: settings.resync,
        ..ControllerConfig::default()
    };
    controller_config.policy.stable_after = settings.stable_after;
    controller_config.policy.rollback = match settings.config.rollback.mode {
        crate::config::RollbackSetting::On => crate::reconcile::rollback::Mode::On,
        crate::config::RollbackSetting::Off => crate::reconcile::rollback::Mode::Off,
    };
    let controller = Controller::new(
        store.clone(),
        runtimes.clone(),
        controller_config,
        clock::system(),
    )?
    .with_metrics(metrics.clone())
    .with_runtime_board(api_state.runtimes.clone());
    api_state.wake_with(controller.waker());
    let ingest = Ingest {
        store: store.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
        wake: controller.waker(),
        limits: settings.limits.clone(),
        clock: clock::system(),
    };

    let (stop, stopped) = watch::channel(false);
    let fetch_now = Arc::new(Notify::new());
    let branch = Arc::new(RwLock::new(match &settings.source {
        SourceKind::Git {
            reference: GitReference::Branch(b),
            ..
        } => Some(b.clone()),
        SourceKind::Git { .. } | SourceKind::Directory(_) => None,
    }));
    let hooks = Arc::new(Hooks {
        secrets: hook_secrets(&settings),
        branch,
        fetch: fetch_now.clone(),
        clock: clock::system(),
    });
    let app = api::router(api_state).merge(api::hooks::router(hooks));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, db = %settings.db.display(), source = %source_label(&settings), "keel agent started");

    let mut controller_task = {
        let (runtimes, holder, node) = (
            runtimes.clone(),
            holder.clone(),
            settings.config.node.clone(),
        );
        let stopped = stopped.clone();
        tokio::spawn(async move {
            if pending.is_some()
                && !claim_when_available(&runtimes, &holder, &node, stopped.clone()).await?
            {
                return Ok(());
            }
            controller.run(stopped).await.map_err(anyhow::Error::from)
        })
    };
    let (events, received) = mpsc::channel(4);
    let source_task = match settings.source.clone() {
        SourceKind::Directory(dir) => {
            let root = source_root(&dir, settings.source_path.as_deref());
            let label = root.display().to_string();
            let source = DirSource::new(root, ingest.limits.size, label);
            tokio::spawn(source.run(events, stopped.clone()))
        }
        SourceKind::Git { url, reference } => {
            let spec = GitSpec {
                checkout: state_dir.join("git").join(short_hash(&url)),
                url,
                reference: git_ref(reference),
                path: settings.source_path.clone(),
                credentials: Credentials {
                    ssh_key: settings.config.git.ssh_key.clone(),
                    known_hosts: settings.config.git.known_hosts.clone(),
                    token: settings.git_token.clone(),
                },
                limits: ingest.limits.size,
            };
            match GitSource::open(spec) {
                Ok(source) => {
                    let source = source.polling(settings.poll_interval, fetch_now);
                    tokio::spawn(source.run(events, stopped.clone()))
                }
                // Reported like any failed read: the API shows it, the agent keeps serving.
                Err(error) => tokio::spawn(async move {
                    let _ = events.send(SourceEvent::Failed(error)).await;
                }),
            }
        }
    };
    let ingest_task = tokio::spawn(ingest.run(received));
    let notifier = Notifier::new(
        store.clone(),
        notifier_settings(&settings),
        clock::system(),
        metrics.clone(),
    )?;
    let notifier_task = tokio::spawn(notifier.run(stopped.clone()));
    let server_task = tokio::spawn(api::serve::serve(
        listener,
        app,
        ServeLimits::default(),
        stopped.clone(),
    ));

    let ended_early = tokio::select! {
        _ = shutdown => None,
        ended = &mut controller_task => Some(ended),
    };
    if ended_early.is_none() {
        tracing::info!("shutting down: no new revisions; containers keep running and are adopted on the next start");
    }
    // The same orderly stop either way, so that a failed controller still lets the ingest
    // finish what it holds, the notifier stop between deliveries and the node name go back.
    // A Git poll in flight is abandoned; the ingest finishes what it holds and ends with it.
    source_task.abort();
    let _ = ingest_task.await;
    let _ = stop.send(true);
    let controlled = match ended_early {
        Some(Ok(Err(error))) => Err(error),
        Some(Ok(Ok(()))) => Err(anyhow::anyhow!("the controller stopped")),
        Some(Err(join)) => Err(anyhow::Error::from(join).context("the controller task failed")),
        None => controller_task
            .await
            .context("the controller task failed")
            .and_then(|ended| ended),
    };
    let served = server_task.await.context("the API task failed");
    let _ = notifier_task.await;
    for runtime in &runtimes {
        if let Err(error) = runtime.release(&holder).await {
            tracing::warn!(runtime = %runtime.kind(), %error, "cannot give the node name back; the next agent on this host takes it over");
        }
    }
    controlled?;
    served?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signals() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn source_label(settings: &AgentSettings) -> String {
    let base = match &settings.source {
        SourceKind::Directory(dir) => dir.display().to_string(),
        SourceKind::Git { url, .. } => url.clone(),
    };
    match &settings.source_path {
        Some(path) => format!("{base} ({path})"),
        None => base,
    }
}

fn source_root(dir: &Path, path: Option<&str>) -> PathBuf {
    match path {
        Some(p) => dir.join(p),
        None => dir.to_owned(),
    }
}

fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hook_secrets(settings: &AgentSettings) -> HookSecrets {
    let h = &settings.config.hooks;
    HookSecrets {
        github: h.github.clone(),
        gitlab: h.gitlab.clone(),
        gitea: h.gitea.clone(),
        generic: h.generic.clone(),
    }
}

/// Claims the node name on every runtime: `Some(error)` when one does not answer yet, an
/// error when another agent that may be alive holds it.
async fn claim(
    runtimes: &[Arc<dyn Runtime>],
    holder: &Holder,
    node: &str,
) -> anyhow::Result<Option<RuntimeError>> {
    for runtime in runtimes {
        match runtime.claim(holder).await {
            Ok(()) => {}
            Err(error @ RuntimeError::Held { .. }) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot start: the node name {node:?} is taken on the {} runtime",
                        runtime.kind()
                    )
                })
            }
            Err(error) => return Ok(Some(error)),
        }
    }
    Ok(None)
}

/// Retries `claim` every 2 s until every runtime answers (`true`) or the agent stops.
async fn claim_when_available(
    runtimes: &[Arc<dyn Runtime>],
    holder: &Holder,
    node: &str,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    loop {
        if claim(runtimes, holder, node).await?.is_none() {
            tracing::info!("took the node name; reconciling starts");
            return Ok(true);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stopped.changed() => return Ok(false),
        }
    }
}

/// The notifier's settings. A directory source has no commits: forge settings are then
/// ignored, with one warning.
fn notifier_settings(settings: &AgentSettings) -> NotifierSettings {
    let forge = match (&settings.source, &settings.forge) {
        (SourceKind::Directory(_), Some(_)) => {
            tracing::warn!(
                "[forge] is ignored: a directory source has no commits to post statuses on"
            );
            None
        }
        (SourceKind::Directory(_), None) | (SourceKind::Git { .. }, None) => None,
        (SourceKind::Git { .. }, Some(forge)) => Some(NotifierForge {
            kind: match forge.kind {
                ForgeChoice::Github => ForgeKind::Github,
                ForgeChoice::Gitea => ForgeKind::Gitea,
                ForgeChoice::Gitlab => ForgeKind::Gitlab,
            },
            api_url: forge.api_url.clone(),
            repository: forge.repository.clone(),
            token: forge.token.clone(),
            per_deployment_contexts: forge.per_deployment_contexts,
        }),
    };
    let delivery = &settings.delivery;
    NotifierSettings {
        node: settings.config.node.clone(),
        public_url: settings.config.public_url.clone(),
        webhooks: settings
            .webhooks
            .iter()
            .map(|w| WebhookEndpoint {
                url: w.url.clone(),
                secret: w.secret.clone(),
                events: w.events.as_ref().map(|e| e.iter().copied().collect()),
                headers: w.headers.clone(),
            })
            .collect(),
        forge,
        retry: RetryPolicy {
            schedule: delivery.retry_schedule.clone(),
            every: delivery.retry_every,
            give_up_after: delivery.give_up_after,
        },
        retention: delivery.retention,
        attempt_timeout: delivery.attempt_timeout,
    }
}

/// The Cloud Hypervisor runtime when this host can run it (its binary exists and `/dev/kvm`
/// opens read-write); otherwise a disabled one, so that its deployments hold with the reason.
fn cloud_hypervisor(
    settings: &AgentSettings,
) -> anyhow::Result<(Arc<dyn Runtime>, Option<String>)> {
    let ch = &settings.cloud_hypervisor;
    let network: Network = ch
        .network
        .parse()
        .with_context(|| "[cloud_hypervisor] network".to_owned())?;
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm is not usable: {e}"));
    let binary = match (ch.binary.clone(), kvm) {
        (Ok(binary), Ok(())) => binary,
        (Err(reason), _) | (Ok(_), Err(reason)) => {
            let disabled = Disabled::new(RuntimeKind::CloudHypervisor, reason.clone());
            return Ok((Arc::new(disabled), Some(reason)));
        }
    };
    std::fs::create_dir_all(&ch.state_dir)
        .with_context(|| format!("cannot create {}", ch.state_dir.display()))?;
    let runtime = CloudHypervisorRuntime::new(ChSettings {
        binary,
        state_dir: ch.state_dir.clone(),
        network,
        owner: settings.config.node.clone(),
        boot: ch.boot.clone(),
    });
    Ok((Arc::new(runtime), None))
}

/// The Docker adapter's settings, from the agent's.
fn docker_settings(config: &AgentConfig) -> DockerSettings {
    DockerSettings {
        socket: config.docker.socket.clone(),
        bind_allow: config.docker.bind_allow.clone(),
        secrets_dir: config.secrets_dir.clone(),
        state_dir: config.state_dir.clone(),
        owner: config.node.clone(),
        allow_privileged: config.docker.allow_privileged,
        host_auth: config
            .docker
            .use_host_auth
            .then(crate::config::host_docker_config)
            .flatten(),
    }
}

fn git_ref(reference: GitReference) -> GitRef {
    match reference {
        GitReference::DefaultBranch => GitRef::DefaultBranch,
        GitReference::Branch(b) => GitRef::Branch(b),
        GitReference::Tag(t) => GitRef::Tag(t),
        GitReference::Commit(c) => GitRef::Commit(c),
    }
}
