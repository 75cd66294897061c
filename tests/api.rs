//! The status API on 127.0.0.1:0 over a real store populated by the store API and a
//! controller on the fake runtime: every route's shape against the OpenAPI document, filters,
//! paging, problems, auth, metrics, secrets, and 200 concurrent clients.

mod support;

use keel::api::client::{get, Reply};
use keel::api::{openapi, Access, ROUTES};
use serde_json::Value;
use support::schema;

use support::api::{server, Server, SECRET, TOKEN};

async fn fetch(s: &Server, path: &str) -> Reply {
    get(&s.base, path, None).await.unwrap()
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.body))
}

/// The schema of `method GET path` for `status` in the document.
fn response_schema(doc: &Value, route: &str, status: u16, content_type: &str) -> Value {
    doc["paths"][route]["get"]["responses"][status.to_string()]["content"][content_type]["schema"]
        .clone()
}

/// Concrete requests for every route, with the route they exercise.
fn requests() -> Vec<(&'static str, &'static str)> {
    vec![
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
        ("/v1/deployments", "/v1/deployments"),
        (
            "/v1/deployments/{namespace}/{name}",
            "/v1/deployments/demo/web",
        ),
        (
            "/v1/deployments/{namespace}/{name}/events",
            "/v1/deployments/demo/web/events",
        ),
        (
            "/v1/deployments/{namespace}/{name}/logs",
            "/v1/deployments/demo/web/logs?tail=5",
        ),
        (
            "/v1/deployments/{namespace}/{name}/runs",
            "/v1/deployments/demo/web/runs",
        ),
        // A write: checked by `clearing_runs_takes_an_admin_token_and_ends_the_warning`.
        ("/v1/deployments/{namespace}/{name}/runs/clear", ""),
        ("/v1/namespaces", "/v1/namespaces"),
        ("/v1/revisions", "/v1/revisions"),
        ("/v1/revisions/{id}", "/v1/revisions/r1"),
        // A write: checked by `keel_retry_lifts_a_quarantine_with_an_admin_token_only` and
        // `an_admins_retry_applies_the_quarantined_state_again_and_only_that`.
        ("/v1/revisions/{id}/retry", ""),
        ("/v1/source", "/v1/source"),
        ("/v1/version", "/v1/version"),
        ("/v1/runtimes", "/v1/runtimes"),
        ("/v1/deliveries", "/v1/deliveries"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_answers_with_its_documented_shape() {
    let s = server(Access::default()).await;
    let doc = openapi::document();
    let routes: Vec<&str> = requests().iter().map(|(r, _)| *r).collect();
    assert_eq!(routes, ROUTES, "the test must exercise every route");
    for (route, path) in requests() {
        assert!(
            doc["paths"].get(route).is_some(),
            "{route} is not in the OpenAPI document"
        );
        if path.is_empty() {
            continue;
        }
        let reply = fetch(&s, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let content_type = reply.content_type.split(';').next().unwrap().to_owned();
        let schema = response_schema(&doc, route, 200, &content_type);
        assert!(
            !schema.is_null(),
            "{route} documents no 200 {content_type} response"
        );
        let value = if content_type == "application/json" {
            json(&reply)
        } else {
            Value::String(reply.body.clone())
        };
        let errors = schema::check(&doc, &schema, &value);
        assert!(
            errors.is_empty(),
            "{path} does not match its schema: {errors:#?}\n{}",
            reply.body
        );
    }
    let missing = fetch(&s, "/v1/deployments/demo/nope").await;
    let errors = schema::check(
        &doc,
        &response_schema(
            &doc,
            "/v1/deployments/{namespace}/{name}",
            404,
            "application/problem+json",
        ),
        &json(&missing),
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_carry_status_health_and_counts() {
    let s = server(Access::default()).await;
    let list = json(&fetch(&s, "/v1/deployments").await);
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "web")
        .unwrap();
    assert_eq!(web["status"], "running");
    assert_eq!(web["health"], "healthy");
    assert_eq!(
        (web["ready"].as_u64(), web["desired"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (
            web["kind"].as_str(),
            web["runtime"].as_str(),
            web["generation"].as_u64()
        ),
        (Some("worker"), Some("docker"), Some(1))
    );
    let detail = json(&fetch(&s, "/v1/deployments/demo/web").await);
    assert_eq!(detail["instances"].as_array().unwrap().len(), 2);
    assert!(detail["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["state"] == "ready"));
    assert_eq!(detail["spec_hash"].as_str().unwrap().len(), 64);
    let flaky = json(&fetch(&s, "/v1/deployments/other/flaky").await);
    assert_eq!(
        (flaky["status"].as_str(), flaky["restart_count"].as_u64()),
        (Some("crash_loop_back_off"), Some(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_filter_takes_one_or_several_and_rejects_unknown_ones() {
    let s = server(Access::default()).await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(json(&fetch(&s, "/v1/deployments?status=running").await)),
        ["web"]
    );
    let mut both = names(json(
        &fetch(&s, "/v1/deployments?status=running&status=completed").await,
    ));
    both.sort();
    assert_eq!(both, ["migrate", "web"]);
    assert_eq!(
        names(json(&fetch(&s, "/v1/deployments?namespace=other").await)),
        ["flaky"]
    );
    assert_eq!(
        names(json(&fetch(&s, "/v1/deployments?kind=job").await)),
        ["migrate"]
    );
    let cron = fetch(&s, "/v1/deployments?kind=cronjob").await;
    assert_eq!((cron.status, json(&cron)), (200, serde_json::json!([])));
    let unknown = fetch(&s, "/v1/deployments?kind=batch").await;
    assert_eq!(unknown.status, 400);
    assert!(json(&unknown)["detail"]
        .as_str()
        .unwrap()
        .contains("worker, job, cronjob"));
    let bad = fetch(&s, "/v1/deployments?status=crashloop").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.content_type, "application/problem+json");
    let problem = json(&bad);
    assert_eq!(problem["type"], "https://keel.dev/problems/bad-request");
    let detail = problem["detail"].as_str().unwrap();
    for status in keel::model::status::DeploymentStatus::ALL {
        assert!(detail.contains(status.as_str()), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_page_newest_first_with_a_cursor() {
    let s = server(Access::default()).await;
    let all = json(&fetch(&s, "/v1/deployments/other/flaky/events?limit=500").await);
    let total = all["events"].as_array().unwrap().len();
    assert!(total > 6, "{all}");
    assert_eq!(all["next_before"], Value::Null);
    let mut seen = Vec::new();
    let mut path = "/v1/deployments/other/flaky/events?limit=3".to_owned();
    loop {
        let page = json(&fetch(&s, &path).await);
        let ids: Vec<i64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] > w[1]),
            "not newest first: {ids:?}"
        );
        seen.extend(ids);
        match page["next_before"].as_i64() {
            Some(before) => {
                path = format!("/v1/deployments/other/flaky/events?limit=3&before={before}")
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), total);
    assert_eq!(
        fetch(&s, "/v1/deployments/other/flaky/events?limit=x")
            .await
            .status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_404_problems() {
    let s = server(Access::default()).await;
    for path in [
        "/v1/deployments/demo/nope",
        "/v1/deployments/demo/nope/events",
        "/v1/revisions/deadbeef",
        "/v2/nothing",
    ] {
        let reply = fetch(&s, path).await;
        assert_eq!(
            (reply.status, reply.content_type.as_str()),
            (404, "application/problem+json"),
            "{path}"
        );
        assert_eq!(json(&reply)["status"], 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_revisions() {
    let s = server(Access::default()).await;
    let namespaces = json(&fetch(&s, "/v1/namespaces").await);
    let find = |n: &str| {
        namespaces
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(find("demo")["status"], "running");
    assert_eq!(find("other")["status"], "error");
    assert_eq!(find("demo")["by_status"]["completed"], 1);
    let revisions = json(&fetch(&s, "/v1/revisions").await);
    assert_eq!(revisions[0]["id"], "r2");
    assert_eq!(revisions[0]["state"], "invalid");
    assert_eq!(
        revisions[0]["diagnostics"][0]["path"],
        "deployments.web.replica"
    );
    assert_eq!(
        revisions[1]["state"], "failed",
        "r1 has a crash-looping deployment"
    );
    let r1 = json(&fetch(&s, "/v1/revisions/r1").await);
    assert_eq!(r1["message"], "commit r1");
    assert_eq!(r1["deployments"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_v1_and_metrics_but_not_healthz() {
    let s = server(Access {
        tokens: vec!["other".into(), TOKEN.into()],
        admin_tokens: Vec::new(),
        public_metrics: false,
    })
    .await;
    for (route, path) in requests().into_iter().filter(|(_, path)| !path.is_empty()) {
        let anonymous = fetch(&s, path).await;
        let expected = if route == "/healthz" { 200 } else { 401 };
        assert_eq!(anonymous.status, expected, "{path}");
        let authorized = get(&s.base, path, Some(TOKEN)).await.unwrap();
        assert_eq!(authorized.status, 200, "{path}");
        assert_eq!(
            get(&s.base, path, Some("wrong")).await.unwrap().status,
            expected,
            "{path}"
        );
    }
    let s = server(Access {
        tokens: vec![TOKEN.into()],
        admin_tokens: Vec::new(),
        public_metrics: true,
    })
    .await;
    assert_eq!(fetch(&s, "/metrics").await.status, 200);
    assert_eq!(fetch(&s, "/v1/deployments").await.status, 401);
    // Any method, not only GET, needs the token (HEAD is answered by GET routes).
    for method in ["HEAD", "POST", "DELETE"] {
        let (status, _, _) = send(&s.base, method, "/v1/deployments/demo/web", &[]).await;
        assert_eq!(status, 401, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_exposition_format() {
    let s = server(Access::default()).await;
    let text = fetch(&s, "/metrics").await.body;
    let mut typed = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample {line:?}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad name {name}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels {line}"
            );
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {pair} in {line}"));
                assert!(
                    k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "{line}"
                );
                let _ = v;
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, suffix| {
                n.strip_suffix(suffix)
                    .filter(|base| typed.get(*base).is_some_and(|k| k == "histogram"))
                    .unwrap_or(n)
            });
        assert!(typed.contains_key(family), "{name} has no # TYPE");
    }
    for family in [
        "keel_deployments",
        "keel_instances",
        "keel_restarts",
        "keel_reconcile_pass_seconds",
        "keel_probe_results_total",
        "keel_revision_state",
        "keel_revision_age_seconds",
        "keel_rollbacks_total",
        "keel_quarantined_revisions_total",
        "keel_quarantined_states",
        "keel_source_fetch_errors_total",
        "keel_outbox_depth",
        "keel_outbox_deliveries_total",
    ] {
        assert!(typed.contains_key(family), "missing {family}");
    }
    assert!(
        text.contains("keel_deployments{namespace=\"demo\",status=\"running\"} 1"),
        "{text}"
    );
    assert!(text.contains("keel_reconcile_pass_seconds_bucket{le=\"+Inf\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_carries_a_secret_or_a_token() {
    let s = server(Access {
        tokens: vec![TOKEN.into()],
        admin_tokens: Vec::new(),
        public_metrics: false,
    })
    .await;
    for (_, path) in requests().into_iter().filter(|(_, path)| !path.is_empty()) {
        let reply = get(&s.base, path, Some(TOKEN)).await.unwrap();
        assert!(!reply.body.contains(SECRET), "{path} served the secret");
        assert!(!reply.body.contains(TOKEN), "{path} served the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_are_all_answered() {
    let s = server(Access::default()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut clients = Vec::new();
    for i in 0..200 {
        let base = s.base.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let path = if i % 2 == 0 {
                "/v1/deployments"
            } else {
                "/v1/deployments/demo/web"
            };
            // Bounded: at most 200 requests per client, and never past the deadline.
            for _ in 0..200 {
                if std::time::Instant::now() > deadline {
                    break;
                }
                match get(&base, path, None).await {
                    Ok(reply) if reply.status == 200 => ok += 1,
                    Ok(reply) => failed.push(format!("{}: {}", reply.status, reply.body)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total += ok;
    }
    assert!(total >= 200, "only {total} requests answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_tearing_down_a_deployment_is_stopping_until_its_instances_are_gone() {
    use keel::model::manifest::RuntimeKind;
    use keel::reconcile::controller::{Config, Controller};
    use keel::runtime::fake::FakeRuntime;
    use keel::runtime::Runtime;
    use keel::store::Store;
    use std::sync::{Arc, RwLock};
    use support::{deployment, desired, revision};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let web = deployment("teardown", "web", "");
    let api = deployment("teardown", "api", "");
    let apply = |rev: &str, files: &[(&str, &str)]| {
        keel::ingest::apply_revision(&store, revision(rev), desired(files), keel::clock::now())
            .unwrap()
    };
    apply("r1", &[("web.yaml", &web), ("api.yaml", &api)]);
    let mut config = Config::default();
    // The old instance keeps serving (and stays live) for a while after it is marked stopping.
    config.policy.drain = keel::model::units::Duration::from_secs(2);
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(RuntimeKind::Docker));
    let mut controller =
        Controller::new(store.clone(), vec![runtime], config, keel::clock::system()).unwrap();
    let reader = store.reader().unwrap();
    let status_of = |name: &str| {
        reader.stored_state().unwrap().deployments
            [&keel::model::desired::DeploymentId::new("teardown", name)]
            .clone()
    };
    for _ in 0..200 {
        controller.pass().await.unwrap();
        if status_of("web").status.as_str() == "running"
            && status_of("api").status.as_str() == "running"
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    apply("r2", &[("api.yaml", &api)]);
    controller.pass().await.unwrap();

    let source: keel::api::SourceStatus = Arc::new(RwLock::new(Default::default()));
    let state = keel::api::ApiState::new(db, Access::default(), Arc::default(), source);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Server {
        base: format!("http://{}", listener.local_addr().unwrap()),
        dir,
    };
    tokio::spawn(async move {
        axum::serve(listener, keel::api::router(state))
            .await
            .unwrap()
    });
    let namespace_status = |list: Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "teardown")
            .map(|n| n["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let during = namespace_status(json(&fetch(&s, "/v1/namespaces").await));
    assert_eq!(status_of("web").status.as_str(), "deleted");
    assert_eq!(
        during, "stopping",
        "web is deleted but its instance still runs"
    );

    let web_row = || {
        reader
            .stored_state()
            .unwrap()
            .deployments
            .contains_key(&keel::model::desired::DeploymentId::new("teardown", "web"))
    };
    for _ in 0..300 {
        controller.pass().await.unwrap();
        // Purged once its instance is gone.
        if !web_row() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = namespace_status(json(&fetch(&s, "/v1/namespaces").await));
    assert_eq!(after, "running", "nothing of web is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_show_whether_each_runtime_can_be_listed() {
    let s = server(Access::default()).await;
    let runtimes = json(&fetch(&s, "/v1/runtimes").await);
    assert_eq!(runtimes.as_array().unwrap().len(), 1, "{runtimes}");
    assert_eq!(runtimes[0]["runtime"], "docker");
    assert_eq!(runtimes[0]["available"], true);
    assert_eq!(runtimes[0]["reason"], Value::Null);
}

/// POSTs `body` to `path` over a plain HTTP/1.1 connection: (status, content type, body).
async fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading everything: a failed write is fine.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_refusals_are_problems_that_name_their_cause() {
    use keel::api::hooks::{router, HookSecrets, Hooks, MAX_BODY};
    use std::sync::{Arc, RwLock};
    let hooks = Arc::new(Hooks {
        secrets: HookSecrets {
            github: Some("hook-secret".into()),
            ..HookSecrets::default()
        },
        branch: Arc::new(RwLock::new(Some("main".into()))),
        fetch: Arc::default(),
        clock: keel::clock::system(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(hooks)).await.unwrap() });

    let body = br#"{"ref":"refs/heads/main"}"#;
    let (status, content_type, text) = post(
        &base,
        "/v1/hooks/github",
        &[
            ("X-Hub-Signature-256", "sha256=00"),
            ("X-GitHub-Event", "push"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("signature mismatch"),
        "{problem}"
    );
    assert!(!text.contains("bearer"), "not a token problem: {text}");

    let (status, content_type, text) =
        post(&base, "/v1/hooks/github", &[], &vec![b'x'; MAX_BODY + 1]).await;
    assert_eq!(status, 413);
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["status"], 413);
    assert!(
        problem["detail"].as_str().unwrap().contains("larger"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_leave_the_api_answering_and_are_cut_off() {
    use keel::api::serve::{serve, ServeLimits};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server(Access::default()).await;
    let state = keel::api::ApiState::new(
        s.dir.path().join("keel.db"),
        Access::default(),
        std::sync::Arc::default(),
        std::sync::Arc::default(),
    );
    let limits = ServeLimits {
        max_connections: 1100,
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, keel::api::router(state), limits, stopped));

    // 1,000 clients that start a request and never finish its head.
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /v1/deployments HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Meanwhile every real request is answered, promptly.
    let base = format!("http://{address}");
    let started = Instant::now();
    for _ in 0..20 {
        let reply = get(&base, "/v1/deployments", None).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The slow ones are cut off at the header timeout: the server closes them.
    let mut closed = 0;
    for stream in &mut slow {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, 1000, "every slow client was disconnected");

    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let waited = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(15), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(waited.elapsed() >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_type_is_described_and_real_payloads_match_their_schema() {
    let s = server(Access::default()).await;
    let doc = openapi::document();
    let described: Vec<&String> = doc["webhooks"].as_object().unwrap().keys().collect();
    let mut all: Vec<&str> = keel::model::event::NotificationKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    all.sort();
    assert_eq!(described, all);
    // The populated store's notifications, as the notifier would send them.
    let reader = keel::store::StoreReader::open(&s.dir.path().join("keel.db")).unwrap();
    let seen = schema::outbox_matches_webhook_schemas(&reader);
    assert!(seen.contains("deployment.status_changed") && seen.contains("revision.status_changed"));
}

/// GETs `path` with extra request headers over a plain HTTP/1.1 connection: (status, head,
/// body).
async fn get_with(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    send(base, "GET", path, headers).await
}

/// One request without a body: (status, head, body).
async fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_owned)
}

/// With the views cached under the store's write count (as the agent runs them): the list is
/// paged by a `Link` to the next page, an unchanged view answers its `ETag` with `304`, and a
/// write is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_views_page_answer_304_and_follow_every_write() {
    use keel::store::Store;
    use std::sync::{Arc, RwLock};
    use support::{deployment, desired, revision};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Store::open(&db).unwrap();
    let files: Vec<(String, String)> = (0..7)
        .map(|i| {
            (
                format!("d{i}.yaml"),
                deployment("paged", &format!("d{i}"), ""),
            )
        })
        .collect();
    let apply = |rev: &str, files: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        keel::ingest::apply_revision(&store, revision(rev), desired(&refs), keel::clock::now())
            .unwrap();
    };
    apply("r1", &files);
    let source: keel::api::SourceStatus = Arc::new(RwLock::new(Default::default()));
    let state = keel::api::ApiState::new(db, Access::default(), Arc::default(), source);
    state.cache_under(store.writes());
    let base = support::api::serve(state).await;

    let mut names = Vec::new();
    let mut next = Some("/v1/deployments?namespace=paged&limit=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let reply = get(&base, &path, None).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = json(&reply);
        names.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned()),
        );
        next = reply.next;
        pages += 1;
        if let Some(link) = &next {
            assert!(link.contains("namespace=paged"), "filters are kept: {link}");
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["d0", "d1", "d2", "d3", "d4", "d5", "d6"]);
    let bad = get(&base, "/v1/deployments?after=nonsense", None)
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);

    let path = "/v1/deployments/paged/d0";
    let (status, head, body) = get_with(&base, path, &[]).await;
    assert_eq!(status, 200, "{body}");
    let etag = header_value(&head, "etag").expect("an etag");
    let (status, head, body) = get_with(&base, path, &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""), "unchanged");
    assert_eq!(header_value(&head, "etag").as_deref(), Some(etag.as_str()));
    let (list_status, list_head, _) = get_with(&base, "/v1/deployments", &[]).await;
    assert_eq!(list_status, 200);
    let list_etag = header_value(&list_head, "etag").expect("the list has an etag");

    let mut changed = files.clone();
    changed[0].1 = deployment("paged", "d0", "    replicas: 2\n");
    apply("r2", &changed);
    let (status, head, body) = get_with(&base, path, &[("If-None-Match", &etag)]).await;
    assert_eq!(status, 200, "a write since: the view is rebuilt");
    assert_ne!(header_value(&head, "etag"), Some(etag));
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["generation"], 2, "{detail}");
    let (status, _, body) =
        get_with(&base, "/v1/deployments", &[("If-None-Match", &list_etag)]).await;
    assert_eq!(status, 200);
    let d0 = serde_json::from_str::<Value>(&body).unwrap()[0].clone();
    assert_eq!(
        (d0["name"].as_str(), d0["generation"].as_u64()),
        (Some("d0"), Some(2))
    );
}

/// Every `$ref` of `value`, anywhere.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Checks of the OpenAPI 3.1 rules a generator relies on, written from the specification,
/// independent of how the document is built: unique operationIds, every `$ref` resolving,
/// every path template parameter declared (and only those), and what generators want besides
/// (summary, tags that exist, problem+json 4xx answers, servers, license).
#[test]
fn the_openapi_document_follows_the_specifications_rules_generators_rely_on() {
    let doc = openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["license"]["name"].is_string(), "info.license");
    assert!(
        doc["servers"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "servers"
    );
    let tags: std::collections::BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let templated: std::collections::BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no operationId"));
            assert!(
                ids.insert(id.to_owned()),
                "{at}: operationId {id} is not unique"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: no summary"
            );
            let op_tags = op["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{at}: no tags"));
            assert!(!op_tags.is_empty(), "{at}: no tags");
            for tag in op_tags {
                assert!(
                    tags.contains(tag.as_str().unwrap()),
                    "{at}: tag {tag} is not declared"
                );
            }
            let declared: std::collections::BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .inspect(|p| {
                            assert_eq!(
                                p["required"], true,
                                "{at}: a path parameter must be required"
                            )
                        })
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, templated, "{at}: path parameters");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|c| c.starts_with('2')), "{at}: no 2xx");
            let public = op["security"].as_array().is_some_and(Vec::is_empty);
            if !public {
                assert!(responses.contains_key("401"), "{at}: no 401");
                for (code, r) in responses.iter().filter(|(c, _)| c.starts_with('4')) {
                    assert!(
                        r["content"]["application/problem+json"].is_object(),
                        "{at}: {code} is not problem+json"
                    );
                }
            }
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

/// A held request (`If-None-Match` + `wait`) answers at the write that changes its answer,
/// not at a write that leaves it as it was, and `304` when the wait runs out; the list and the
/// events hold the same way; a malformed wait is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_answers_when_its_answer_changes_or_304_when_the_wait_ends() {
    use keel::store::Store;
    use std::sync::{Arc, RwLock};
    use support::{deployment, desired, revision};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Store::open(&db).unwrap();
    let apply = |rev: &str, d0: &str, d1: &str| {
        let (a, b) = (deployment("held", "d0", d0), deployment("held", "d1", d1));
        let files = [("d0.yaml", a.as_str()), ("d1.yaml", b.as_str())];
        keel::ingest::apply_revision(&store, revision(rev), desired(&files), keel::clock::now())
            .unwrap();
    };
    apply("r1", "", "");
    let source: keel::api::SourceStatus = Arc::new(RwLock::new(Default::default()));
    let state = keel::api::ApiState::new(db, Access::default(), Arc::default(), source);
    state.cache_under(store.writes());
    let base = support::api::serve(state).await;
    let etag_of = |path: &'static str| {
        let base = base.clone();
        async move {
            let (status, head, body) = get_with(&base, path, &[]).await;
            assert_eq!(status, 200, "{path}: {body}");
            header_value(&head, "etag").expect("an etag")
        }
    };
    let hold = |path: String, etag: String| {
        let base = base.clone();
        tokio::spawn(async move { get_with(&base, &path, &[("If-None-Match", &etag)]).await })
    };

    let detail = "/v1/deployments/held/d0";
    let etag = etag_of(detail).await;
    let (status, _, body) = hold(format!("{detail}?wait=300ms"), etag.clone())
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (304, ""), "nothing changed");

    let held = hold(format!("{detail}?wait=30s"), etag.clone());
    let list_etag = etag_of("/v1/deployments?namespace=held").await;
    let held_list = hold(
        "/v1/deployments?namespace=held&wait=30s".to_owned(),
        list_etag,
    );
    // A page's tag covers the pages after it: d1 is on page 2 here.
    let page_etag = etag_of("/v1/deployments?namespace=held&limit=1").await;
    let held_page = hold(
        "/v1/deployments?namespace=held&limit=1&wait=30s".to_owned(),
        page_etag,
    );
    let events_etag = etag_of("/v1/deployments/held/d0/events").await;
    let held_events = hold(
        "/v1/deployments/held/d0/events?wait=30s".to_owned(),
        events_etag,
    );
    apply("r2", "", "    replicas: 2\n");
    let (status, _, body) = held_list.await.unwrap();
    assert_eq!(status, 200, "d1 changed, so did the list: {body}");
    let (status, _, body) = held_page.await.unwrap();
    assert_eq!(
        status, 200,
        "a change on page 2 is a new page 1 tag: {body}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "d0's detail did not change with d1");
    apply("r3", "    replicas: 3\n", "    replicas: 2\n");
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["generation"],
        2
    );
    let (status, _, body) = held_events.await.unwrap();
    assert_eq!(status, 200, "d0's update is an event: {body}");

    let (status, _, body) = get_with(&base, &format!("{detail}?wait=soon"), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("wait"), "{body}");
}

/// A cron job with a failed run makes its namespace fail until the run is cleared; clearing is
/// an operator's act: 401 without a token, 403 with a read token or when the agent has no admin
/// token, 400 for a deployment that is not a cron job, 200 with an admin token — then the run
/// shows when it was cleared, an event says so, and the namespace is back to running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_runs_takes_an_admin_token_and_ends_the_warning() {
    use keel::model::run::{Run, RunOutcome};
    use keel::store::Store;
    use std::sync::Arc;
    use support::{deployment, desired, revision};
    const READ: &str = "read-token-81c2";
    const ADMIN: &str = "admin-token-5d9e";

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let store = Arc::new(Store::open(&db).unwrap());
    let backup = deployment(
        "ops",
        "backup",
        "    kind: cronjob\n    schedule: \"@daily\"\n",
    );
    let web = deployment("demo", "web", "");
    let files = [("backup.yaml", backup.as_str()), ("web.yaml", web.as_str())];
    keel::ingest::apply_revision(&store, revision("r1"), desired(&files), keel::clock::now())
        .unwrap();
    let id = keel::model::desired::DeploymentId::new("ops", "backup");
    let mut memory = store.reader().unwrap().memories().unwrap()[&id].clone();
    memory.status = keel::model::status::DeploymentStatus::Failed;
    let now = keel::clock::now();
    let failed = Run {
        run: 1,
        generation: 1,
        due_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        exit_code: Some(1),
        outcome: RunOutcome::Failed,
        reason: Some("instance x exited with code 1".into()),
        instances: 1,
    };
    let row = store.reader().unwrap().deployment(&id).unwrap().unwrap();
    let outcome = keel::model::plan::Outcome {
        decided_on: keel::model::plan::DecidedOn::of(&row),
        stable: true,
        memory,
        status_change: Some(keel::model::plan::StatusChange {
            from: keel::model::status::DeploymentStatus::Pending,
            to: keel::model::status::DeploymentStatus::Failed,
            reason: "run_failed",
            message: "run 1 failed".into(),
        }),
        events: Vec::new(),
        runs: vec![failed],
        health: None,
        ready: 0,
        desired: 1,
        waiting_on: None,
        instances: Vec::new(),
    };
    store
        .record_pass(
            vec![(id.clone(), outcome)],
            None,
            Vec::new(),
            Vec::new(),
            now,
        )
        .unwrap();
    let seen =
        schema::outbox_matches_webhook_schemas(&keel::store::StoreReader::open(&db).unwrap());
    assert!(seen.contains("job.run_finished"), "{seen:?}");
    let finished = store.reader().unwrap().outbox().unwrap();
    let data = &finished
        .iter()
        .find(|r| r.kind.as_str() == "job.run_finished")
        .unwrap()
        .payload;
    assert_eq!(
        (
            &data["run"],
            &data["outcome"],
            &data["exit_code"],
            &data["duration_ms"]
        ),
        (
            &Value::from(1),
            &Value::from("failed"),
            &Value::from(1),
            &Value::from(0)
        ),
        "{data}"
    );

    let serve = |admin_tokens: Vec<String>| {
        let state = keel::api::ApiState::new(
            db.clone(),
            Access {
                tokens: vec![READ.into()],
                admin_tokens,
                public_metrics: false,
            },
            Arc::default(),
            Arc::default(),
        );
        state.cache_under(store.writes());
        state.write_with(store.clone());
        support::api::serve(state)
    };
    let base = serve(vec![ADMIN.into()]).await;
    let ops = |base: String| async move {
        let reply = get(&base, "/v1/namespaces", Some(READ)).await.unwrap();
        let namespaces: Value = serde_json::from_str(&reply.body).unwrap();
        namespaces
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "ops")
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(
        ops(base.clone()).await,
        "error",
        "its one deployment failed a run"
    );
    let runs = get(&base, "/v1/deployments/ops/backup/runs", Some(ADMIN))
        .await
        .unwrap();
    let page: Value = serde_json::from_str(&runs.body).unwrap();
    assert_eq!(page["runs"][0]["outcome"], "failed", "{page}");
    assert_eq!(page["runs"][0]["cleared_at"], Value::Null);

    let clear = "/v1/deployments/ops/backup/runs/clear";
    let post = keel::api::client::post;
    assert_eq!(post(&base, clear, None).await.unwrap().status, 401);
    let read_only = post(&base, clear, Some(READ)).await.unwrap();
    assert_eq!(read_only.status, 403, "{}", read_only.body);
    assert!(
        read_only.body.contains("admin_tokens"),
        "{}",
        read_only.body
    );
    let worker = post(&base, "/v1/deployments/demo/web/runs/clear", Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(worker.status, 400, "{}", worker.body);
    let unknown = post(&base, "/v1/deployments/ops/nope/runs/clear", Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let no_admin = serve(Vec::new()).await;
    let refused = post(&no_admin, clear, Some(READ)).await.unwrap();
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("set admin_tokens under [api]"),
        "{}",
        refused.body
    );

    let cleared = post(&base, clear, Some(ADMIN)).await.unwrap();
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(
        serde_json::from_str::<Value>(&cleared.body).unwrap()["cleared"],
        1
    );
    assert_eq!(
        ops(base.clone()).await,
        "running",
        "cleared: no longer a failure"
    );
    let page: Value = serde_json::from_str(
        &get(&base, "/v1/deployments/ops/backup/runs", Some(READ))
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(page["runs"][0]["cleared_at"].is_string(), "{page}");
    let events = get(&base, "/v1/deployments/ops/backup/events", Some(READ))
        .await
        .unwrap();
    assert!(events.body.contains("runs_cleared"), "{}", events.body);
    use sha2::Digest;
    let fingerprint: String = sha2::Sha256::digest(ADMIN.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        events.body.contains(&format!(
            "1 failed run(s) cleared by the admin token sha256:{fingerprint}"
        )),
        "which admin token acted: {}",
        events.body
    );
    assert!(!events.body.contains(ADMIN), "a token is never recorded");
}
