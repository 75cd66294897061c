//! The composition root of `keel agent`: builds the store, the runtimes, the controller, the
//! API (with the push receivers) and the source, connects them, and runs until SIGTERM/SIGINT.
//! The only module that names concrete adapters. `anyhow` is allowed here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::sync::{mpsc, watch, Notify};

use crate::api::dto::SourceDto;
use crate::api::hooks::{HookSecrets, Hooks};
use crate::api::{self, Access, ApiState, SourceStatus};
use crate::clock;
use crate::config::{AgentSettings, SourceKind};
use crate::manifest::{self, Limits};
use crate::metrics::Metrics;
use crate::reconcile::controller::{Config as ControllerConfig, Controller};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::Runtime;
use crate::source::git::{Credentials, GitSource, GitSpec};
use crate::source::{self, Snapshot, SourceError};
use crate::store::Store;

/// Everything the source side needs to hand over a revision.
#[derive(Clone)]
struct Intake {
    store: Arc<Store>,
    status: SourceStatus,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    limits: Limits,
}

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
    let docker: Arc<dyn Runtime> =
        Arc::new(DockerRuntime::connect(settings.config.docker_settings())?);
    let controller_config = ControllerConfig {
        tick: settings.tick,
        ..ControllerConfig::default()
    };
    let controller = Controller::new(
        store.clone(),
        vec![docker],
        controller_config,
        clock::system(),
    )?
    .with_metrics(metrics.clone());
    let intake = Intake {
        store: store.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
        wake: controller.waker(),
        limits: Limits::default(),
    };

    let (stop, stopped) = watch::channel(false);
    let fetch_now = Arc::new(Notify::new());
    let branch = Arc::new(RwLock::new(match &settings.source {
        SourceKind::Git {
            reference: crate::source::git::GitRef::Branch(b),
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
    let access = Access {
        tokens: settings.config.api.tokens.clone(),
        public_metrics: settings.config.api.public_metrics,
    };
    let api_state = ApiState::new(settings.db.clone(), access, metrics.clone(), status.clone());
    let app = api::router(api_state).merge(api::hooks::router(hooks));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, db = %settings.db.display(), source = %source_label(&settings), "keel agent started");

    let controller_task = tokio::spawn(controller.run(stopped.clone()));
    let source_task = match settings.source.clone() {
        SourceKind::Directory(dir) => tokio::spawn(run_directory(
            source_root(&dir, settings.source_path.as_deref()),
            intake,
        )),
        SourceKind::Git { url, reference } => {
            let spec = GitSpec {
                checkout: state_dir.join("git").join(short_hash(&url)),
                url,
                reference,
                path: settings.source_path.clone(),
                credentials: Credentials {
                    ssh_key: settings.config.git.ssh_key.clone(),
                    known_hosts: settings.config.git.known_hosts.clone(),
                    token: settings.git_token.clone(),
                },
                limits: intake.limits.size,
            };
            tokio::spawn(run_git(spec, settings.poll_interval, fetch_now, intake))
        }
    };
    let mut api_stopped = stopped.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = api_stopped.changed().await;
    });
    let server_task = tokio::spawn(async move { server.await });

    shutdown.await;
    tracing::info!("shutting down: no new revisions; containers keep running and are adopted on the next start");
    source_task.abort();
    let _ = stop.send(true);
    controller_task
        .await
        .context("the controller task failed")??;
    server_task.await.context("the API task failed")??;
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

async fn run_directory(root: PathBuf, intake: Intake) {
    let (tx, mut rx) = mpsc::channel(4);
    let label = root.display().to_string();
    let watcher = tokio::spawn(source::dir::watch(
        root,
        intake.limits.size,
        label,
        std::time::Duration::from_millis(150),
        tx,
    ));
    while let Some(snapshot) = rx.recv().await {
        intake.take(snapshot).await;
    }
    if let Ok(Err(error)) = watcher.await {
        intake.failed(&error);
    }
}

async fn run_git(
    spec: GitSpec,
    every: crate::model::units::Duration,
    fetch_now: Arc<Notify>,
    intake: Intake,
) {
    let mut source = match GitSource::open(spec) {
        Ok(source) => source,
        Err(error) => return intake.failed(&error),
    };
    let mut failures = 0u32;
    loop {
        let polled = tokio::task::spawn_blocking(move || {
            let result = source.poll();
            (source, result)
        })
        .await;
        let Ok((returned, result)) = polled else {
            return;
        };
        source = returned;
        intake
            .metrics
            .source_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = match result {
            Ok(Some(snapshot)) => {
                failures = 0;
                intake.take(Ok(snapshot)).await;
                every.to_std()
            }
            Ok(None) => {
                failures = 0;
                intake.touch();
                every.to_std()
            }
            Err(error) => {
                failures += 1;
                intake.failed(&error);
                let base = crate::model::units::Duration::from_secs(1);
                crate::reconcile::backoff::delay(failures, base, every).to_std()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = fetch_now.notified() => {}
        }
    }
}

impl Intake {
    /// Validates and applies a snapshot (or records it invalid), then wakes the controller.
    async fn take(&self, snapshot: Result<Snapshot, SourceError>) {
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(error) => return self.failed(&error),
        };
        let (store, limits) = (self.store.clone(), self.limits);
        let id = snapshot.revision.id.clone();
        let applied = tokio::task::spawn_blocking(move || apply(&store, snapshot, &limits)).await;
        match applied {
            Ok(Ok(())) => {
                let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
                status.last_revision = Some(id);
                status.last_fetch_at = Some(clock::now().to_rfc3339());
                status.last_error = None;
                drop(status);
                self.wake.notify_one();
            }
            Ok(Err(error)) => {
                tracing::error!(revision = %id, error = %error, "cannot record the revision")
            }
            Err(error) => tracing::error!(revision = %id, error = %error, "the apply task failed"),
        }
    }

    fn touch(&self) {
        let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
        status.last_fetch_at = Some(clock::now().to_rfc3339());
        status.last_error = None;
    }

    fn failed(&self, error: &SourceError) {
        let message = format!("{error:#}");
        let chained = std::iter::successors(std::error::Error::source(error), |e| e.source())
            .map(ToString::to_string)
            .fold(message, |all, cause| format!("{all}: {cause}"));
        tracing::warn!(error = %chained, "the source failed; the last good revision keeps running");
        self.metrics
            .source_fetch_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
        status.last_error = Some(chained);
        status.fetch_errors += 1;
        status.last_fetch_at = Some(clock::now().to_rfc3339());
    }
}

/// Loads a snapshot and writes it to the store: applied when valid, recorded `invalid` (with
/// every diagnostic, changing nothing) when not.
fn apply(
    store: &Store,
    snapshot: Snapshot,
    limits: &Limits,
) -> Result<(), crate::store::StoreError> {
    let now = clock::now();
    match manifest::load(&snapshot.entries, limits) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!(revision = %snapshot.revision.id, "{warning}");
            }
            let applied = store.apply_revision(snapshot.revision, loaded.state, now)?;
            if !applied.no_op {
                let c = applied.plan.counts();
                tracing::info!(revision = %applied.revision.id, create = c.create, update = c.update, delete = c.delete, "revision applied");
            }
            Ok(())
        }
        Err(diagnostics) => {
            let latest = store.reader()?.revisions(1)?.pop();
            if latest.is_some_and(|r| r.id == snapshot.revision.id) {
                return Ok(());
            }
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            tracing::warn!(revision = %snapshot.revision.id, errors, first = %diagnostics.first().map(ToString::to_string).unwrap_or_default(), "revision invalid; the last good revision keeps running");
            store
                .record_invalid(snapshot.revision, diagnostics, now)
                .map(|_| ())
        }
    }
}
