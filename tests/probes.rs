//! Health-check probes against real sockets on 127.0.0.1: the fake runtime's instances answer
//! HTTP with a scripted status; a silent local listener tests timeouts.

use keel::model::desired::DeploymentId;
use keel::model::manifest::{HealthCheck, RuntimeKind};
use keel::model::observed::ObservedInstance;
use keel::probe;
use keel::runtime::fake::{Behaviour, FakeRuntime};
use keel::runtime::{InstanceSpec, Runtime};

fn check(json: serde_json::Value) -> HealthCheck {
    serde_json::from_value(json).unwrap()
}

/// A running fake instance of `demo/web` behaving as told, once it listens.
async fn instance(behaviour: Behaviour) -> (FakeRuntime, ObservedInstance) {
    let fake = FakeRuntime::new(RuntimeKind::Docker);
    let id = DeploymentId::new("demo", "web");
    let listens = behaviour.reachable_after.is_some();
    fake.behave(&id, behaviour);
    let spec = InstanceSpec {
        deployment: id,
        generation: 1,
        ordinal: 0,
        run: None,
        template: "t".into(),
        spec: serde_json::from_value(
            serde_json::json!({"name": "web", "namespace": "demo", "image": "busybox"}),
        )
        .unwrap(),
        mounted_configs: Default::default(),
    };
    let runtime_id = fake.create(&spec).await.unwrap();
    fake.start(&runtime_id).await.unwrap();
    let observed = fake.list().await.unwrap().remove(0);
    for _ in 0..100 {
        if !listens || fake.endpoint(&observed, 80).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (fake, observed)
}

#[tokio::test]
async fn http_2xx_is_healthy() {
    let (fake, i) = instance(Behaviour::default()).await;
    let out = probe::run(
        &check(serde_json::json!({"type": "http", "url": "http://localhost:8080/health"})),
        &fake,
        &i,
    )
    .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.message, "GET http://localhost:8080/health: 200");
}

#[tokio::test]
async fn http_redirect_is_a_failure() {
    let (fake, i) = instance(Behaviour {
        http_status: 302,
        ..Behaviour::default()
    })
    .await;
    let out = probe::run(
        &check(serde_json::json!({"type": "http", "url": "http://localhost/"})),
        &fake,
        &i,
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.message.contains("302 (redirects count as failures)"),
        "{}",
        out.message
    );
}

#[tokio::test]
async fn http_server_error_is_a_failure() {
    let (fake, i) = instance(Behaviour {
        http_status: 503,
        ..Behaviour::default()
    })
    .await;
    let out = probe::run(
        &check(serde_json::json!({"type": "http", "url": "http://localhost/"})),
        &fake,
        &i,
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.message, "GET http://localhost/: 503");
}

#[tokio::test]
async fn tcp_connects_when_the_instance_listens() {
    let (fake, i) = instance(Behaviour::default()).await;
    let out = probe::run(
        &check(serde_json::json!({"type": "tcp", "port": 9000})),
        &fake,
        &i,
    )
    .await;
    assert!(out.ok, "{out:?}");
}

#[tokio::test]
async fn an_instance_that_does_not_listen_fails_tcp_and_http() {
    let (fake, i) = instance(Behaviour {
        reachable_after: None,
        ..Behaviour::default()
    })
    .await;
    for c in [
        serde_json::json!({"type": "tcp", "port": 9000}),
        serde_json::json!({"type": "http", "url": "http://localhost/"}),
    ] {
        let out = probe::run(&check(c), &fake, &i).await;
        assert!(!out.ok);
        assert!(
            out.message.contains("has no address yet"),
            "{}",
            out.message
        );
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let (fake, i) = instance(Behaviour::default()).await;
    let url = format!("http://127.0.0.1:{port}/");
    let out = probe::run(
        &check(serde_json::json!({"type": "http", "url": url, "timeout": "200ms"})),
        &fake,
        &i,
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.message, "timed out after 200ms");
    server.abort();
}

#[tokio::test]
async fn command_probes_use_the_exit_code() {
    let command = serde_json::json!({"type": "command", "command": "test -f /ready"});
    let (fake, i) = instance(Behaviour::default()).await;
    assert!(probe::run(&check(command.clone()), &fake, &i).await.ok);
    let (fake, i) = instance(Behaviour {
        exec_exit_code: 1,
        ..Behaviour::default()
    })
    .await;
    let out = probe::run(&check(command), &fake, &i).await;
    assert!(!out.ok);
    assert_eq!(out.message, "exit code 1");
}
