//! The CLI's views against a running API: tables, `-o json` (the API's JSON), and `keel wait`'s
//! exit codes — run as the real binary.

mod support;

use std::process::{Command, Output};
use std::sync::Arc;

use keel::api::client::get;
use keel::api::{router, Access, ApiState};
use keel::model::manifest::RuntimeKind;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::FakeRuntime;
use keel::runtime::Runtime;
use keel::store::Store;
use support::api::{server, TOKEN};

async fn keel(args: Vec<String>, token: Option<&str>) -> Output {
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command.args(&args).env_remove("KEEL_TOKEN");
        if let Some(token) = token {
            command.env("KEEL_TOKEN", token);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(base: &str, rest: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    all.extend(["--api".to_owned(), base.to_owned()]);
    all
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_print_a_table_and_json() {
    let s = server(Access::default()).await;
    let out = keel(args(&s.base, &["deployments"]), None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "KIND",
            "STATUS",
            "HEALTH",
            "READY",
            "RESTARTS",
            "AGE"
        ]
    );
    let web: Vec<&str> = text
        .lines()
        .find(|l| l.contains(" web "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &web[..7],
        ["demo", "web", "worker", "running", "healthy", "2/2", "0"]
    );
    assert!(!text.contains('\x1b'), "no colours when not on a terminal");

    let json = keel(
        args(
            &s.base,
            &["deployments", "-o", "json", "--status", "running"],
        ),
        None,
    )
    .await;
    let from_cli: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let from_api: serde_json::Value = serde_json::from_str(
        &get(&s.base, "/v1/deployments?status=running", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(from_cli, from_api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deployment_its_events_revisions_and_status() {
    let s = server(Access::default()).await;
    let detail = stdout(&keel(args(&s.base, &["deployment", "demo/web"]), None).await);
    assert!(detail.contains("Status:      running"), "{detail}");
    let header = detail.lines().find(|l| l.starts_with("INSTANCE")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["INSTANCE", "STATE", "IP", "AGE", "REASON"]
    );
    assert_eq!(
        detail.lines().filter(|l| l.contains(" ready ")).count(),
        2,
        "{detail}"
    );

    let events = stdout(&keel(args(&s.base, &["events", "other/flaky"]), None).await);
    assert!(events.contains("instance_died"), "{events}");
    let revisions = stdout(&keel(args(&s.base, &["revisions"]), None).await);
    assert!(
        revisions.lines().nth(1).unwrap().starts_with("r2") && revisions.contains("invalid"),
        "{revisions}"
    );
    let status = stdout(&keel(args(&s.base, &["status"]), None).await);
    assert!(status.contains("Revision:  r2 invalid"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["other", "error", "1"]),
        "{status}"
    );

    let missing = keel(args(&s.base, &["deployment", "demo/nope"]), None).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no deployment demo/nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_keel_token() {
    let s = server(Access {
        tokens: vec![TOKEN.into()],
        public_metrics: false,
    })
    .await;
    let refused = keel(args(&s.base, &["deployments"]), None).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        keel(args(&s.base, &["deployments"]), Some(TOKEN))
            .await
            .status
            .code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_1_for_failed_invalid_and_timeouts() {
    let s = server(Access::default()).await;
    for revision in ["r1", "r2"] {
        let out = keel(args(&s.base, &["wait", revision, "--timeout", "5s"]), None).await;
        assert_eq!(out.status.code(), Some(1), "{revision}");
    }
    let out = keel(
        args(
            &s.base,
            &["wait", "cafe", "--timeout", "1s", "--interval", "200ms"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gave up after 1s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_0_once_the_revision_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    keel::ingest::apply_revision(
        &store,
        support::revision("good"),
        support::desired(&[("a.yaml", &support::deployment("demo", "web", ""))]),
        keel::clock::now(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = ApiState::new(db, Access::default(), Arc::default(), Arc::default());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let waiting = tokio::spawn(keel(
        args(
            &base,
            &["wait", "good", "--timeout", "60s", "--interval", "100ms"],
        ),
        None,
    ));
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(RuntimeKind::Docker));
    let mut controller = Controller::new(
        store,
        vec![runtime],
        Config::default(),
        keel::clock::system(),
    )
    .unwrap();
    while !waiting.is_finished() {
        controller.pass().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = waiting.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("revision good: succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_list_what_went_out() {
    use keel::notifier::worker::Notifier;
    use keel::notifier::{RetryPolicy, Settings, WebhookEndpoint};
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = support::receivers::Receiver::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let settings = Settings {
        node: "h".into(),
        public_url: None,
        webhooks: vec![WebhookEndpoint {
            url: receiver.url.clone(),
            secret: SECRET.into(),
            events: None,
            headers: Default::default(),
        }],
        forge: None,
        retry: RetryPolicy::default(),
        retention: keel::model::units::Duration::from_secs(3600),
        attempt_timeout: keel::model::units::Duration::from_secs(5),
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let notifier = Notifier::new(
        store.clone(),
        settings,
        keel::clock::system(),
        Arc::default(),
    )
    .unwrap();
    tokio::spawn(notifier.run(stopped));
    keel::ingest::apply_revision(
        &store,
        support::revision("r1"),
        support::desired(&[("web.yaml", &support::deployment("demo", "web", ""))]),
        keel::clock::now(),
    )
    .unwrap();
    let expected = store.reader().unwrap().outbox().unwrap().len();
    for _ in 0..200 {
        if receiver.received().len() == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let state = keel::api::ApiState::new(db, Access::default(), Arc::default(), Arc::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, keel::api::router(state))
            .await
            .unwrap()
    });

    let out = keel(args(&base, &["deliveries"]), None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "ENDPOINT", "TYPE", "STATE", "ATTEMPTS", "AGE", "LAST", "ERROR"]
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" delivered ")).count(),
        expected,
        "{text}"
    );
    let json = stdout(
        &keel(
            args(&base, &["deliveries", "-o", "json", "--state", "dead"]),
            None,
        )
        .await,
    );
    let page: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["deliveries"], serde_json::json!([]));
    assert!(!text.contains(SECRET) && !json.contains(SECRET));
}
