//! The CLI's views against a running API: tables, `-o json` (the API's JSON), and `keel wait`'s
//! exit codes — run as the real binary.

mod support;

use std::process::{Command, Output};
use std::sync::Arc;

use keel::api::client::get;
use keel::api::{Access, ApiState};
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
        admin_tokens: Vec::new(),
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
    let state = ApiState::new(db, Access::default(), Arc::default(), Arc::default());
    let base = support::api::serve(state).await;
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
    let base = support::api::serve(state).await;

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

/// The JSON a YAML text reads back as.
fn yaml_as_json(text: &str) -> serde_json::Value {
    use yaml_rust2::Yaml;
    fn json_of(y: &Yaml) -> serde_json::Value {
        match y {
            Yaml::Null => serde_json::Value::Null,
            Yaml::Boolean(b) => (*b).into(),
            Yaml::Integer(i) => (*i).into(),
            Yaml::Real(r) => serde_json::from_str(r).unwrap(),
            Yaml::String(s) => s.clone().into(),
            Yaml::Array(a) => serde_json::Value::Array(a.iter().map(json_of).collect()),
            Yaml::Hash(h) => serde_json::Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_owned(), json_of(v)))
                    .collect(),
            ),
            other => panic!("not JSON-like YAML: {other:?}"),
        }
    }
    let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
    assert_eq!(docs.len(), 1, "one document: {text}");
    json_of(&docs[0])
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_prints_yaml_equal_to_its_json_and_names() {
    let s = server(Access::default()).await;
    for view in [
        vec!["deployments"],
        vec!["deployments", "-n", "demo"],
        vec!["deployment", "demo/web"],
        vec!["deployment", "web", "-n", "demo"],
        vec!["events", "other/flaky"],
        vec!["revisions"],
        vec!["status"],
        vec!["deliveries"],
        vec!["version"],
    ] {
        let json_text =
            ok(&keel(args(&s.base, &[&view[..], &["-o", "json"]].concat()), None).await);
        let yaml_text =
            ok(&keel(args(&s.base, &[&view[..], &["-o", "yaml"]].concat()), None).await);
        let json: serde_json::Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(yaml_as_json(&yaml_text), json, "{view:?}:\n{yaml_text}");
        let wide = ok(&keel(args(&s.base, &[&view[..], &["-o", "wide"]].concat()), None).await);
        assert!(!wide.is_empty(), "{view:?}");
    }

    let names = ok(&keel(args(&s.base, &["deployments", "-o", "name"]), None).await);
    assert_eq!(names, "demo/migrate\ndemo/web\nother/flaky\n");
    let names = ok(&keel(
        args(&s.base, &["deployments", "-n", "other", "-o", "name"]),
        None,
    )
    .await);
    assert_eq!(names, "other/flaky\n");
    let all = ok(&keel(args(&s.base, &["deployments", "-A", "-o", "name"]), None).await);
    assert_eq!(all.lines().count(), 3, "-A is every namespace: {all}");
    let one = ok(&keel(
        args(&s.base, &["deployment", "demo/web", "-o", "name"]),
        None,
    )
    .await);
    assert_eq!(one, "demo/web\n");
    let namespaces = ok(&keel(args(&s.base, &["status", "-o", "name"]), None).await);
    assert_eq!(namespaces, "demo\nother\n");

    let wide = ok(&keel(args(&s.base, &["deployments", "-o", "wide"]), None).await);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[8..],
        ["RUNTIME", "IMAGE", "REVISION", "IPS"],
        "{wide}"
    );
    let web = wide.lines().find(|l| l.contains(" web ")).unwrap();
    let api: serde_json::Value = serde_json::from_str(
        &get(&s.base, "/v1/deployments/demo/web", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let image = api["image"].as_str().expect("the detail carries the image");
    assert!(web.contains(image) && web.contains(" r1 "), "{web}");
    let ips = api["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "two live instances, two addresses: {api}");
    assert!(web.contains(ips[0].as_str().unwrap()), "{web}");
    let detail = ok(&keel(
        args(&s.base, &["deployment", "demo/web", "-o", "wide"]),
        None,
    )
    .await);
    assert!(
        detail.contains(&format!("Image:       {image}")),
        "{detail}"
    );
    assert!(detail.contains("GENERATION"), "{detail}");

    let missing = keel(args(&s.base, &["deployment", "web"]), None).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("-n NAMESPACE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_one_json_array_oldest_first() {
    let s = server(Access::default()).await;
    let text = ok(&keel(
        args(&s.base, &["events", "other/flaky", "-o", "json"]),
        None,
    )
    .await);
    let events: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = events.as_array().expect("one JSON array");
    assert!(events.len() > 1, "{text}");
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let page: serde_json::Value = serde_json::from_str(
        &get(&s.base, "/v1/deployments/other/flaky/events?limit=20", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let mut from_api = page["events"].as_array().unwrap().clone();
    from_api.reverse();
    assert_eq!(events, &from_api);
    let ids_text = ok(&keel(
        args(&s.base, &["events", "other/flaky", "-o", "name"]),
        None,
    )
    .await);
    assert_eq!(ids_text.lines().count(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_api_names_the_agent_when_api_is_not_given_and_version_asks_it() {
    let s = server(Access::default()).await;
    let out = tokio::task::spawn_blocking({
        let base = s.base.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_keel"))
                .args(["version", "-o", "json"])
                .env("KEEL_API", base)
                .env_remove("KEEL_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let versions: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(versions["agent"], versions["client"], "{versions}");
    assert_eq!(versions["client"]["version"], env!("CARGO_PKG_VERSION"));

    let unreachable = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["version"])
        .env("KEEL_API", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(stdout(&unreachable).starts_with("Client:  keel "));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("--client"));
    let client = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["version", "--client"])
        .env("KEEL_API", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(client.status.code(), Some(0));
}

#[test]
fn flags_live_on_the_commands_that_use_them() {
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .output()
            .unwrap()
    };
    for offline in [
        &["validate", ".", "--api", "http://127.0.0.1:1"][..],
        &["schema", "--api", "http://127.0.0.1:1"],
        &["plan", "--api", "http://127.0.0.1:1"],
    ] {
        let out = keel(offline);
        assert_eq!(out.status.code(), Some(2), "{offline:?} takes no --api");
        assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--api'"));
    }
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples-repo");
    for offline in [
        &["validate", examples, "-o", "json"][..],
        &[
            "plan",
            "--source",
            examples,
            "--db",
            "/nonexistent/keel.db",
            "-o",
            "json",
        ],
    ] {
        let out = keel(offline);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.code() != Some(1), "{offline:?}: {text}");
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{offline:?} -o json: {e}: {text}"));
    }
    let help = stdout(&keel(&["validate", "--help"]));
    assert!(
        !help.contains("--api") && help.contains("-o, --format"),
        "{help}"
    );
    assert!(stdout(&keel(&["deployments", "--help"])).contains("KEEL_API"));
}

#[test]
fn completion_scripts_are_valid_shell() {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    let script = ok(&out);
    assert!(script.contains("deployments") && script.contains("--watch"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.bash");
    std::fs::write(&path, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(ok(&out).contains("deployments"), "{shell}");
    }
}

/// Colours only on a terminal (run under `script`, which gives the command a pseudo-terminal),
/// and never with NO_COLOR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_only_on_a_terminal_and_never_with_no_color() {
    let s = server(Access::default()).await;
    let on_a_terminal = |no_color: bool| {
        let base = s.base.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new("script");
            command
                .args(["-qec"])
                .arg(format!(
                    "{} deployments --api {base}",
                    env!("CARGO_BIN_EXE_keel")
                ))
                .arg("/dev/null")
                .env_remove("NO_COLOR");
            if no_color {
                command.env("NO_COLOR", "1");
            }
            command.output().unwrap()
        })
    };
    let coloured = ok(&on_a_terminal(false).await.unwrap());
    assert!(coloured.contains("\x1b[32mrunning\x1b[0m"), "{coloured:?}");
    let plain = ok(&on_a_terminal(true).await.unwrap());
    assert!(
        plain.contains("running") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

/// A child `keel` whose stdout lines arrive on a channel as they are printed.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watching {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .env_remove("KEEL_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Takes what was printed so far (waiting up to `patience` for the first line).
    fn take(&mut self, patience: std::time::Duration) -> &[String] {
        if let Ok(line) = self.lines.recv_timeout(patience) {
            self.seen.push(line);
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Waits until what was printed satisfies `done`, failing after `patience`.
    fn until(&mut self, patience: std::time::Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = std::time::Instant::now() + patience;
        while !done(self.take(std::time::Duration::from_millis(100))) {
            assert!(std::time::Instant::now() < deadline, "{:?}", self.seen);
        }
    }

    /// Sends SIGINT (what Ctrl-C sends) and returns how it ended.
    fn interrupt(mut self) -> std::process::Output {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "still running after SIGINT"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.child.wait_with_output().unwrap()
    }
}

/// `--watch` prints again when a status changes (the API holds each request until then), and
/// Ctrl-C ends it with exit code 0 and nothing on stderr; `events --follow -o json` prints
/// JSON Lines, every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_change_and_ctrl_c_ends_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    keel::ingest::apply_revision(
        &store,
        support::revision("w1"),
        support::desired(&[("a.yaml", &support::deployment("watched", "web", ""))]),
        keel::clock::now(),
    )
    .unwrap();
    let state = ApiState::new(db, Access::default(), Arc::default(), Arc::default());
    state.cache_under(store.writes());
    // Counts the requests the watchers make: held, they make one per change, not one a second.
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = keel::api::router(state).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut list = Watching::start(&["deployments", "--watch", "-o", "json", "--api", &base]);
    let mut detail = Watching::start(&["deployment", "watched/web", "-w", "--api", &base]);
    let mut events = Watching::start(&[
        "events",
        "watched/web",
        "--follow",
        "-o",
        "json",
        "--api",
        &base,
    ]);
    let patience = std::time::Duration::from_secs(20);
    let first = list.take(patience).to_vec();
    let before: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(before[0]["status"], "pending", "{before}");
    detail.until(patience, |seen| {
        seen.iter().any(|l| l.starts_with("Status:      pending"))
    });

    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(RuntimeKind::Docker));
    let mut controller = Controller::new(
        store.clone(),
        vec![runtime],
        Config::default(),
        keel::clock::system(),
    )
    .unwrap();
    let reader = store.reader().unwrap();
    for _ in 0..100 {
        controller.pass().await.unwrap();
        let running = reader
            .stored_state()
            .unwrap()
            .deployments
            .values()
            .all(|d| d.status.as_str() == "running");
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let deadline = std::time::Instant::now() + patience;
    let running = |lines: &[String]| {
        lines.iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[0]["status"] == "running"
        })
    };
    while !running(list.take(std::time::Duration::from_millis(200))) {
        assert!(std::time::Instant::now() < deadline, "{:?}", list.seen);
    }
    while !detail
        .take(std::time::Duration::from_millis(200))
        .iter()
        .any(|l| l.starts_with("Status:      running"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", detail.seen);
    }
    let page: serde_json::Value = serde_json::from_str(
        &get(&base, "/v1/deployments/watched/web/events?limit=500", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let mut expected: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    expected.reverse();
    assert!(!expected.is_empty());
    let ids = |lines: &[String]| -> Vec<i64> {
        lines
            .iter()
            .map(|l| {
                let event: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(event.is_object(), "one event per line: {l}");
                event["id"].as_i64().unwrap()
            })
            .collect()
    };
    while ids(events.take(std::time::Duration::from_millis(200))) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} != {expected:?}",
            events.seen
        );
    }

    // Nothing changes now: each watcher waits in one held request.
    let before = asked.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let quiet = asked.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        quiet <= 3,
        "{quiet} requests in a quiet 3 s: the watchers poll"
    );

    for watching in [list, detail, events] {
        let ended = tokio::task::spawn_blocking(move || watching.interrupt())
            .await
            .unwrap();
        assert_eq!(ended.status.code(), Some(0), "Ctrl-C is a clean end");
        assert_eq!(String::from_utf8_lossy(&ended.stderr), "");
    }
}
