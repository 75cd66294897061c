//! A running API over a populated store, for the API and CLI tests: a running worker, a
//! completed job, a crash-looping worker and an invalid revision.
#![allow(dead_code)]

use std::sync::{Arc, RwLock};

use keel::api::dto::SourceDto;
use keel::api::{router, Access, ApiState};
use keel::model::manifest::RuntimeKind;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::{Behaviour, FakeRuntime};
use keel::runtime::Runtime;
use keel::store::Store;

use super::{deployment, desired, revision};

pub const SECRET: &str = "planted-secret-9b7c";
pub const TOKEN: &str = "api-token-3f1e";

pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
}

/// A populated store: a running worker, a completed job, a crash-looping worker, an invalid
/// revision after them; and the API over it.
pub async fn server(access: Access) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let fake = FakeRuntime::new(RuntimeKind::Docker);
    let id = |n: &str| keel::model::desired::DeploymentId::new("demo", n);
    fake.behave(
        &id("migrate"),
        Behaviour {
            exit_after: Some((keel::model::units::Duration::from_millis(50), 0)),
            ..Behaviour::default()
        },
    );
    fake.behave(
        &keel::model::desired::DeploymentId::new("other", "flaky"),
        Behaviour {
            exit_after: Some((keel::model::units::Duration::from_millis(20), 1)),
            ..Behaviour::default()
        },
    );
    let web = deployment(
        "demo",
        "web",
        "    replicas: 2\n    environment:\n      TOKEN: {secretRef: api-token}\n",
    );
    let job = deployment("demo", "migrate", "    kind: job\n");
    // Behind a readiness gate it never passes (it dies within 20 ms), so r1 cannot succeed in
    // the moment between a restart and the next death: it fails, deterministically.
    let flaky = deployment(
        "other",
        "flaky",
        "    health_checks:\n      - {type: tcp, port: 8080, interval: 100ms, readiness: true, min_healthy_time: 1s}\n",
    );
    std::fs::write(dir.path().join("api-token"), SECRET).unwrap();
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[
            ("web.yaml", &web),
            ("job.yaml", &job),
            ("flaky.yaml", &flaky),
        ]),
        keel::clock::now(),
    )
    .unwrap();
    let mut config = Config::default();
    config.policy.backoff_base = keel::model::units::Duration::from_millis(5);
    config.policy.backoff_max = keel::model::units::Duration::from_millis(10);
    let runtime: Arc<dyn Runtime> = Arc::new(fake);
    let logs_from = runtime.clone();
    let board = keel::reconcile::controller::RuntimeBoard::default();
    let mut controller =
        Controller::new(store.clone(), vec![runtime], config, keel::clock::system())
            .unwrap()
            .with_runtime_board(board.clone());
    let reader = store.reader().unwrap();
    for _ in 0..200 {
        controller.pass().await.unwrap();
        let state = reader.stored_state().unwrap();
        let settled = |n: &str, s: &str| {
            state
                .deployments
                .values()
                .any(|d| d.id.name == n && d.status.as_str() == s)
        };
        if settled("web", "running")
            && settled("migrate", "completed")
            && settled("flaky", "crash_loop_back_off")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(controller);
    let diagnostics = vec![keel::model::diagnostic::Diagnostic {
        file: "web.yaml".into(),
        line: Some(6),
        column: Some(5),
        path: "deployments.web.replica".into(),
        severity: keel::model::diagnostic::Severity::Error,
        message: "unknown field \"replica\"".into(),
    }];
    store
        .record_invalid(revision("r2"), diagnostics, keel::clock::now())
        .unwrap();
    let source: keel::api::SourceStatus = Arc::new(RwLock::new(SourceDto {
        source: Some("file:///repo".into()),
        ..SourceDto::default()
    }));
    let state = ApiState::with_runtimes(db, access, Arc::default(), source, board);
    state.serve_logs_from(&[logs_from]);
    let base = serve(state).await;
    Server { dir, base }
}

/// Serves the API of `state` on 127.0.0.1 (a free port) until the test ends: its base URL.
pub async fn serve(state: Arc<ApiState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    base
}
