//! Pulling from a real private registry (Debian's `docker-registry` on 127.0.0.1 with an
//! htpasswd user) with each source of credentials, in the manifest reference's order of
//! precedence, and a wrong password surfacing as `image_pull_back_off` with the registry's
//! message — never the password, in no status, event or log line.

mod support;

use keel::model::status::DeploymentStatus as S;
use support::docker::Agent;
use support::registry::Registry;

const SLEEPER: &str = "    command: [sleep, \"3600\"]\n";

fn worker(agent: &Agent, image: &str, config: &str) -> String {
    agent
        .deployment("web", &format!("{SLEEPER}    config:\n{config}"))
        .replace(support::docker::IMAGE, image)
}

async fn runs(agent: &Agent, files: &[(&str, &str)]) {
    agent.running("web", files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pull_secret_is_a_docker_config_file_in_the_secrets_directory() {
    let mut registry = Registry::start("robot", "pull-secret-pw");
    let image = registry.push("secret");
    let agent = Agent::new();
    std::fs::write(
        agent.path("secrets/regcred"),
        registry.config_json("pull-secret-pw"),
    )
    .unwrap();
    let web = worker(&agent, &image, "      image_pull_secret: regcred\n");
    runs(&agent, &[("web.yaml", &web)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_server_username_and_a_secret_password_pull() {
    let mut registry = Registry::start("robot", "ring-form-pw");
    let image = registry.push("ring");
    let agent = Agent::new();
    std::fs::write(agent.path("secrets/registry-password"), "ring-form-pw\n").unwrap();
    let web = worker(
        &agent,
        &image,
        &format!(
            "      server: {}\n      username: robot\n      password:\n        secretRef: registry-password\n",
            registry.addr
        ),
    );
    runs(&agent, &[("web.yaml", &web)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_credentials_pull_when_the_operator_allows_them() {
    let mut registry = Registry::start("robot", "host-auth-pw");
    let image = registry.push("host");
    let host_config = registry.path("host-docker-config.json");
    std::fs::write(&host_config, registry.config_json("host-auth-pw")).unwrap();

    let refusing = Agent::new();
    let web = worker(&refusing, &image, "      image_pull_policy: IfNotPresent\n");
    refusing.apply("r1", &[("web.yaml", &web)]);
    let mut controller = refusing.controller();
    refusing
        .until(
            &mut controller,
            60,
            "an anonymous pull to be refused",
            |a| a.status("web") == Some(S::ImagePullBackOff),
        )
        .await;
    drop(controller);

    let allowing = Agent::with_settings(|s| s.host_auth = Some(host_config.clone()));
    let web = worker(&allowing, &image, "      image_pull_policy: IfNotPresent\n");
    runs(&allowing, &[("web.yaml", &web)]).await;
}

/// A writer that keeps every log line the agent writes during the test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// One thread: the controller's tasks log where the capturing subscriber is installed.
#[tokio::test(flavor = "current_thread")]
async fn a_wrong_password_is_image_pull_back_off_with_the_registrys_message_and_never_the_password()
{
    let mut registry = Registry::start("robot", "the-right-pw");
    let image = registry.push("wrong");
    let agent = Agent::new();
    let wrong = "Wr0ng-Passw0rd-Never-Shown";
    std::fs::write(agent.path("secrets/registry-password"), wrong).unwrap();
    let web = worker(
        &agent,
        &image,
        "      username: robot\n      password:\n        secretRef: registry-password\n",
    );
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _installed = tracing::subscriber::set_default(subscriber);

    agent.apply("r1", &[("web.yaml", &web)]);
    let mut controller = agent.controller();
    agent
        .until(&mut controller, 60, "image_pull_back_off", |a| {
            a.status("web") == Some(S::ImagePullBackOff)
        })
        .await;

    let events = agent.reader.events(&agent.id("web"), 50).unwrap();
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("unauthorized") || m.contains("authentication required")),
        "the registry's own message is shown: {messages:#?}"
    );
    let row = agent.reader.deployment(&agent.id("web")).unwrap().unwrap();
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logged.is_empty(), "the agent logged the failure");
    for (what, text) in [
        ("events", messages.join("\n")),
        ("waiting_on", format!("{:?}", row.waiting_on)),
        ("log", logged),
        ("outbox", format!("{:?}", agent.reader.outbox().unwrap())),
    ] {
        assert!(
            !text.contains(wrong),
            "the password appears in the {what}: {text}"
        );
    }
}

/// `keel deployment NS/NAME` against `base`, as an operator runs it.
async fn keel_deployment(base: &str, id: &str) -> String {
    let (base, id) = (base.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["deployment", &id, "--api", &base])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_building_while_its_image_is_pulled() {
    let mut registry = Registry::start("robot", "building-pw");
    let image = registry.push("slow-pull");
    let agent = Agent::new();
    std::fs::write(
        agent.path("secrets/regcred"),
        registry.config_json("building-pw"),
    )
    .unwrap();
    let state = keel::api::ApiState::with_boards(
        agent.path("keel.db"),
        keel::api::Access::default(),
        Default::default(),
        Default::default(),
        Default::default(),
        agent.runtime.pulls(),
    );
    let base = support::api::serve(state).await;

    // The registry holds the pull for as long as it is paused.
    registry.pause();
    let web = worker(&agent, &image, "      image_pull_secret: regcred\n");
    agent.apply("r1", &[("web.yaml", &web)]);
    let mut controller = agent.controller();
    controller.pass().await.unwrap();
    let id = format!("{}/web", agent.ns.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let shown = loop {
        let shown = keel_deployment(&base, &id).await;
        if shown.contains(" building ") || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        shown.contains(" building ") && shown.contains(&format!("pulling {image}")),
        "{shown}"
    );

    registry.resume();
    agent
        .until(&mut controller, 60, "web to run once the pull ends", |a| {
            a.status("web") == Some(S::Running)
        })
        .await;
    let shown = keel_deployment(&base, &id).await;
    assert!(!shown.contains(" building "), "{shown}");
}
