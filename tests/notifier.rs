//! The notifier against local receivers (axum on 127.0.0.1:0) and a real store: every webhook
//! verifies with an independently written Standard Webhooks check; endpoints are independent
//! and in order; a receiver that was down gets everything once it is up; 410 disables an
//! endpoint, 429 waits for Retry-After; and, with a controller on the fake runtime, each
//! forge (GitHub, Gitea, GitLab fakes) gets each commit status exactly once per change, success
//! only after the readiness gate opened, through rate limits and server errors.

mod support;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::clock;
use keel::model::desired::DeploymentId;
use keel::model::manifest::RuntimeKind;
use keel::model::units::Duration;
use keel::notifier::worker::Notifier;
use keel::notifier::{ForgeKind, ForgeSettings, RetryPolicy, Settings, WebhookEndpoint};
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::fake::{Behaviour, FakeRuntime};
use keel::runtime::Runtime;
use keel::store::{Store, StoreReader};
use support::receivers::{verify, FakeForge, Forge, Receiver, REPOSITORY};
use support::{deployment, desired, revision};
use tokio::sync::watch;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "forge-token-5c1d";

fn settings(webhooks: Vec<WebhookEndpoint>, forge: Option<ForgeSettings>) -> Settings {
    Settings {
        node: "host-1".into(),
        public_url: Some("https://keel.example".into()),
        webhooks,
        forge,
        retry: RetryPolicy {
            schedule: vec![Duration::from_millis(100), Duration::from_millis(200)],
            every: Duration::from_millis(300),
            give_up_after: Duration::from_secs(120),
        },
        retention: Duration::from_secs(3600),
        attempt_timeout: Duration::from_secs(5),
    }
}

fn endpoint(receiver: &Receiver) -> WebhookEndpoint {
    WebhookEndpoint {
        url: receiver.url.clone(),
        secret: SECRET.into(),
        events: None,
        headers: [("X-Team".to_owned(), "ops".to_owned())].into(),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    reader: StoreReader,
    stop: watch::Sender<bool>,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("keel.db")).unwrap());
        let reader = store.reader().unwrap();
        let (stop, _) = watch::channel(false);
        Self {
            _dir: dir,
            store,
            reader,
            stop,
        }
    }

    fn notifier(&self, settings: Settings) {
        let notifier = Notifier::new(
            self.store.clone(),
            settings,
            clock::system(),
            Arc::default(),
        )
        .unwrap();
        tokio::spawn(notifier.run(self.stop.subscribe()));
    }

    fn apply(&self, id: &str, files: &[(&str, &str)]) {
        keel::ingest::apply_revision(&self.store, revision(id), desired(files), clock::now())
            .unwrap();
    }

    /// The outbox's notification types, oldest first.
    fn notifications(&self) -> Vec<String> {
        self.reader
            .outbox()
            .unwrap()
            .iter()
            .map(|r| r.kind.as_str().to_owned())
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[test]
fn the_tests_verifier_can_fail() {
    let body = br#"{"type":"revision.status_changed"}"#;
    let now = 1_800_000_000;
    let signature = keel::notifier::webhook::sign(SECRET, "msg_1", now, body).unwrap();
    let ts = now.to_string();
    assert_eq!(verify(SECRET, "msg_1", &ts, &signature, body, now), Ok(()));
    let tampered = br#"{"type":"revision.status_changed "}"#;
    assert!(verify(SECRET, "msg_1", &ts, &signature, tampered, now).is_err());
    let wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(verify(wrong, "msg_1", &ts, &signature, body, now).is_err());
    assert!(verify(SECRET, "msg_1", &ts, &signature, body, now + 600).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_verifies_and_arrives_in_order_while_another_endpoint_is_down() {
    let up = Receiver::start(SECRET).await;
    let down = Receiver::start(SECRET).await;
    down.set_down(true);
    let rig = Rig::new();
    rig.notifier(settings(vec![endpoint(&up), endpoint(&down)], None));
    for (i, replicas) in [1, 2, 3].into_iter().enumerate() {
        let extra = format!("    replicas: {replicas}\n");
        rig.apply(
            &format!("r{i}"),
            &[("web.yaml", &deployment("demo", "web", &extra))],
        );
    }
    let expected = rig.notifications();
    assert!(expected.len() >= 6, "{expected:?}");
    until("the up endpoint to get everything", 10, || {
        up.received().len() == expected.len()
    })
    .await;
    let kinds: Vec<String> = up.received().iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, expected, "in the order the changes happened");
    assert!(down.received().is_empty());
    assert_eq!(
        up.rejected(),
        Vec::<String>::new(),
        "every signature verified"
    );

    // The down endpoint comes back: everything arrives, in order, once (per webhook-id).
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    down.set_down(false);
    until("the recovered endpoint to get everything", 20, || {
        down.received().len() >= expected.len()
    })
    .await;
    let received = down.received();
    let kinds: Vec<String> = received.iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, expected);
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), received.len(), "no duplicate");
    // The body is the envelope, and a status change says what receivers need.
    let status = received
        .iter()
        .find(|r| r.kind == "deployment.status_changed")
        .unwrap();
    for field in [
        "namespace",
        "name",
        "kind",
        "runtime",
        "new_status",
        "reason",
        "restart_count",
        "generation",
        "revision",
        "ready",
        "desired",
    ] {
        assert!(
            status.body["data"].get(field).is_some(),
            "{field} missing from {}",
            status.body
        );
    }
    assert!(status.body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_an_endpoint_and_retry_after_is_honoured() {
    let gone = Receiver::start(SECRET).await;
    gone.script(&[(410, None)]);
    let busy = Receiver::start(SECRET).await;
    busy.script(&[(429, Some(1))]);
    let rig = Rig::new();
    rig.notifier(settings(vec![endpoint(&gone), endpoint(&busy)], None));
    let started = Instant::now();
    rig.apply("r1", &[("web.yaml", &deployment("demo", "web", ""))]);
    let expected = rig.notifications().len();
    until("the busy endpoint to get everything", 10, || {
        busy.received().len() == expected
    })
    .await;
    assert!(
        busy.received()[0].at.duration_since(started) >= StdDuration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    rig.apply(
        "r2",
        &[("web.yaml", &deployment("demo", "web", "    replicas: 2\n"))],
    );
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert!(
        gone.received().is_empty(),
        "a disabled endpoint gets nothing"
    );
    let disabled = rig.reader.disabled_endpoints().unwrap();
    let key = format!("webhook:{}", gone.url);
    assert!(disabled[&key].1.contains("410"), "{disabled:?}");
    let dead = rig
        .reader
        .deliveries(&keel::store::DeliveryFilter {
            state: Some(keel::model::delivery::DeliveryState::Dead),
            endpoint: Some(key),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(!dead.is_empty());
    assert!(dead
        .iter()
        .all(|d| d.last_error.as_deref().is_some_and(|e| e.contains("410"))));
    let tried: Vec<_> = dead.iter().filter(|d| d.attempts > 0).collect();
    assert_eq!(
        tried.len(),
        1,
        "the delivery that got the 410 was tried once: {dead:?}"
    );
    assert_eq!(tried[0].last_status, Some(410));
    assert!(tried[0].last_attempt_at.is_some());
}

// ---- commit statuses -----------------------------------------------------------------------

const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";
const SHA3: &str = "3333333333333333333333333333333333333333";
const SHA4: &str = "4444444444444444444444444444444444444444";
const SHA5: &str = "5555555555555555555555555555555555555555";

const GATED: &str = "    health_checks:\n      - {type: tcp, port: 8080, interval: 100ms, readiness: true, min_healthy_time: 1s}\n";

fn forge_settings(forge: &FakeForge) -> ForgeSettings {
    ForgeSettings {
        kind: match forge.kind {
            Forge::Github => ForgeKind::Github,
            Forge::Gitea => ForgeKind::Gitea,
            Forge::Gitlab => ForgeKind::Gitlab,
        },
        api_url: forge.api_url.clone(),
        repository: REPOSITORY.into(),
        token: TOKEN.into(),
        per_deployment_contexts: false,
    }
}

/// The states posted for `sha`, in order.
fn states(forge: &FakeForge, sha: &str) -> Vec<String> {
    forge
        .posted()
        .iter()
        .filter(|p| p.sha == sha)
        .map(|p| p.state.clone())
        .collect()
}

async fn a_revisions_whole_life_on(kind: Forge) {
    let forge = FakeForge::start(kind, TOKEN).await;
    // A rate limit and a server error on the way: delayed, never dropped, never doubled.
    let reset = (clock::now().millis() / 1000 + 1).to_string();
    forge.script(&[
        (
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", reset.as_str()),
            ],
            "rate limited",
        ),
        (500, &[], "oops"),
    ]);
    let rig = Rig::new();
    rig.notifier(settings(Vec::new(), Some(forge_settings(&forge))));
    let fake = FakeRuntime::new(RuntimeKind::Docker);
    let id = |n: &str| DeploymentId::new("demo", n);
    fake.behave(
        &id("web"),
        Behaviour {
            reachable_after: Some(Duration::from_millis(300)),
            ..Behaviour::default()
        },
    );
    fake.behave(
        &id("bad"),
        Behaviour {
            exit_after: Some((Duration::from_millis(20), 1)),
            ..Behaviour::default()
        },
    );
    let mut config = Config {
        resync: Duration::from_millis(50),
        ..Config::default()
    };
    config.policy.backoff_base = Duration::from_millis(5);
    config.policy.backoff_max = Duration::from_millis(10);
    let runtime: Arc<dyn Runtime> = Arc::new(fake);
    let mut controller =
        Controller::new(rig.store.clone(), vec![runtime], config, clock::system()).unwrap();

    // 1. A readiness-gated worker: pending, then success once it is ready — not before.
    rig.apply(SHA1, &[("web.yaml", &deployment("demo", "web", GATED))]);
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let mut ready_at = None;
    while states(&forge, SHA1).last().map(String::as_str) != Some("success") {
        assert!(
            Instant::now() < deadline,
            "no success: {:?}",
            forge.posted()
        );
        controller.pass().await.unwrap();
        let status = rig.reader.stored_state().unwrap().deployments[&id("web")].status;
        if ready_at.is_none() && status.as_str() == "running" {
            ready_at = Some(Instant::now());
        }
        tokio::time::sleep(StdDuration::from_millis(30)).await;
    }
    let running = match kind {
        Forge::Gitlab => "running",
        Forge::Github | Forge::Gitea => "pending",
    };
    assert_eq!(states(&forge, SHA1), [running, "success"]);
    let success = forge
        .posted()
        .into_iter()
        .find(|p| p.state == "success")
        .unwrap();
    assert!(
        ready_at.is_some_and(|r| success.at >= r),
        "success before the gate opened"
    );
    assert_eq!(success.context, "keel/host-1");
    assert_eq!(success.description, "1/1 deployments running");
    assert_eq!(
        success.target_url.as_deref(),
        Some(format!("https://keel.example/v1/revisions/{SHA1}").as_str())
    );

    // 2. A worker that crash-loops: failure, naming it.
    rig.apply(
        SHA2,
        &[
            ("web.yaml", &deployment("demo", "web", GATED)),
            // Behind a readiness gate it can never pass: it dies within 20 ms.
            ("bad.yaml", &deployment("demo", "bad", GATED)),
        ],
    );
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let failed = match kind {
        Forge::Gitlab => "failed",
        Forge::Github | Forge::Gitea => "failure",
    };
    while states(&forge, SHA2).last().map(String::as_str) != Some(failed) {
        assert!(
            Instant::now() < deadline,
            "no failure: {:?}",
            forge.posted()
        );
        controller.pass().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let failure = forge
        .posted()
        .into_iter()
        .rev()
        .find(|p| p.sha == SHA2)
        .unwrap();
    // Rolled back (the default): the first commit runs again, the failure names why.
    assert_eq!(
        failure.description,
        format!(
            "rolled back to {}: demo/bad: crash_loop_back_off after 5 restarts",
            &SHA1[..12]
        )
    );
    assert_eq!(states(&forge, SHA2), [running, failed]);

    // 3. An invalid commit: error (GitLab: failed), naming the problem.
    let diagnostics = vec![keel::model::diagnostic::Diagnostic {
        file: "apps/web.yaml".into(),
        line: Some(12),
        column: Some(5),
        path: "deployments.web.replica".into(),
        severity: keel::model::diagnostic::Severity::Error,
        message: "unknown field \"replica\"".into(),
    }];
    rig.store
        .record_invalid(revision(SHA3), diagnostics, clock::now())
        .unwrap();
    let invalid = match kind {
        Forge::Gitlab => "failed",
        Forge::Github | Forge::Gitea => "error",
    };
    until("the invalid commit's status", 10, || {
        states(&forge, SHA3) == [invalid]
    })
    .await;
    let posted = forge.posted().into_iter().find(|p| p.sha == SHA3).unwrap();
    assert_eq!(
        posted.description,
        "invalid: apps/web.yaml:12: deployments.web.replica: unknown field \"replica\""
    );

    // 4. A commit superseded before it settled.
    rig.apply(
        SHA4,
        &[("web.yaml", &deployment("demo", "web", "    replicas: 2\n"))],
    );
    rig.apply(
        SHA5,
        &[("web.yaml", &deployment("demo", "web", "    replicas: 3\n"))],
    );
    let canceled = match kind {
        Forge::Gitlab => "canceled",
        Forge::Github | Forge::Gitea => "error",
    };
    until("the superseded commit's status", 10, || {
        states(&forge, SHA4).last().map(String::as_str) == Some(canceled)
    })
    .await;
    let superseded = forge
        .posted()
        .into_iter()
        .rev()
        .find(|p| p.sha == SHA4)
        .unwrap();
    assert_eq!(
        superseded.description,
        format!("superseded by {}", &SHA5[..12])
    );

    // Nothing more is posted while nothing changes, and nothing was refused.
    for _ in 0..10 {
        controller.pass().await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let before = forge.posted().len();
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(forge.posted().len(), before, "posted per tick");
    assert_eq!(forge.rejected(), Vec::<String>::new());
    let mut seen = std::collections::BTreeSet::new();
    for p in forge.posted() {
        assert!(
            seen.insert((p.sha.clone(), p.state.clone(), p.description.clone())),
            "posted twice: {p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_gets_each_status_once_per_change_and_success_only_behind_the_gate() {
    a_revisions_whole_life_on(Forge::Github).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_gets_each_status_once_per_change_and_success_only_behind_the_gate() {
    a_revisions_whole_life_on(Forge::Gitea).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_gets_each_status_once_per_change_and_success_only_behind_the_gate() {
    a_revisions_whole_life_on(Forge::Gitlab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_status_is_recorded_and_not_retried() {
    let forge = FakeForge::start(Forge::Github, TOKEN).await;
    forge.script(&[(422, &[], "{\"message\":\"Validation Failed\"}")]);
    let rig = Rig::new();
    rig.notifier(settings(Vec::new(), Some(forge_settings(&forge))));
    rig.apply(SHA1, &[("web.yaml", &deployment("demo", "web", ""))]);
    let dead = || {
        rig.reader
            .deliveries(&keel::store::DeliveryFilter {
                state: Some(keel::model::delivery::DeliveryState::Dead),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
    };
    until("the refused status to be dead", 10, || !dead().is_empty()).await;
    assert_eq!(dead()[0].last_status, Some(422));
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert_eq!(forge.requests(), 1, "a 422 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlabs_same_state_refusal_counts_as_done() {
    let forge = FakeForge::start(Forge::Gitlab, TOKEN).await;
    forge.script(&[(
        400,
        &[],
        "{\"message\":\"Cannot transition status via :run from :running\"}",
    )]);
    let rig = Rig::new();
    rig.notifier(settings(Vec::new(), Some(forge_settings(&forge))));
    rig.apply(SHA1, &[("web.yaml", &deployment("demo", "web", ""))]);
    let delivered = || {
        rig.reader
            .deliveries(&keel::store::DeliveryFilter {
                state: Some(keel::model::delivery::DeliveryState::Delivered),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
    };
    until("the status to count as delivered", 10, || {
        !delivered().is_empty()
    })
    .await;
    assert_eq!(delivered()[0].last_status, Some(400));
    assert_eq!(forge.requests(), 1, "not retried");
}
