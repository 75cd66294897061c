//! Real-Docker test support: the offline busybox image, a unique namespace per test that is
//! cleaned up even when the test fails, and an agent rig (store + Docker runtime + controller).
//! Tests that use it fail loudly when no daemon answers — they never skip.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::model::desired::DeploymentId;
use keel::model::status::DeploymentStatus;
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::reconcile::executor::Limits;
use keel::reconcile::plan::Policy;
use keel::runtime::docker::{DockerRuntime, Settings};
use keel::runtime::Runtime;
use keel::store::{Store, StoreReader};

pub const IMAGE: &str = "keel-test/busybox:latest";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is required for these tests (.ci/run installs docker.io)")
}

/// Builds `keel-test/busybox:latest` (and tags `busybox:1.36`) from Debian's busybox-static,
/// without any registry, unless present.
pub fn ensure_image() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "no Docker daemon answers ({}); start dockerd or run .ci/run",
        String::from_utf8_lossy(&info.stderr).trim()
    );
    if !docker(&["image", "inspect", IMAGE]).status.success() {
        let context = tempfile::tempdir().unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("busybox-static is required (.ci/run installs it)");
        std::fs::copy(busybox, context.path().join("busybox")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let built = docker(&["build", "-q", "-t", IMAGE, context.path().to_str().unwrap()]);
        assert!(
            built.status.success(),
            "building the test image failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    if !docker(&["image", "inspect", "busybox:1.36"])
        .status
        .success()
    {
        assert!(docker(&["tag", IMAGE, "busybox:1.36"]).status.success());
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace of its own; everything labelled with it is removed on drop.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Namespace(format!("t{}-{n}-{:x}", std::process::id(), nanos % 0xfffff))
    }

    /// Ids of every container (running or not) of this namespace.
    pub fn containers(&self) -> Vec<String> {
        self.ids(&["ps", "-aq"])
    }

    /// Ids of the networks keel made for this namespace (one per node).
    pub fn networks(&self) -> Vec<String> {
        self.ids(&["network", "ls", "-q"])
    }

    /// The ids a listing `command` prints for the objects labelled with this namespace.
    fn ids(&self, command: &[&str]) -> Vec<String> {
        let filter = format!("label=keel.namespace={}", self.0);
        let mut args = command.to_vec();
        args.extend(["--filter", &filter]);
        String::from_utf8_lossy(&docker(&args).stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn network_exists(&self) -> bool {
        !self.networks().is_empty()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        for id in self.networks() {
            docker(&["network", "rm", &id]);
        }
        // Named volumes a test creates are named after its namespace.
        let out = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", self.0),
        ]);
        for name in String::from_utf8_lossy(&out.stdout).lines() {
            docker(&["volume", "rm", "-f", name]);
        }
    }
}

/// An agent against the real daemon: its own store, secrets and state directories.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub reader: StoreReader,
    pub runtime: Arc<DockerRuntime>,
    pub ns: Namespace,
}

pub fn config() -> Config {
    Config {
        resync: Duration::from_millis(200),
        policy: Policy {
            max_restart_count: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            rollout_deadline: Duration::from_secs(60),
            drain: Duration::from_millis(0),
            stop_grace: Duration::from_secs(1),
            // Success at once: these tests are about other things than stabilization.
            stable_after: Duration::from_millis(0),
            rollback: keel::reconcile::rollback::Mode::On,
        },
        limits: Limits {
            call_timeout: Duration::from_secs(60),
            concurrency: 8,
        },
    }
}

impl Agent {
    pub fn new() -> Self {
        Self::with_settings(|_| {})
    }

    /// An agent whose keel.toml sets `[docker] allow_privileged` as given.
    pub fn allowing_privileged(allow_privileged: bool) -> Self {
        Self::with_settings(|s| s.allow_privileged = allow_privileged)
    }

    /// An agent whose Docker settings `edit` changes (as keel.toml's `[docker]` would).
    pub fn with_settings(edit: impl FnOnce(&mut Settings)) -> Self {
        ensure_image();
        let dir = tempfile::tempdir().unwrap();
        for sub in ["secrets", "state", "allowed"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let store = Arc::new(Store::open(&dir.path().join("keel.db")).unwrap());
        let reader = store.reader().unwrap();
        let mut settings = Settings {
            socket: None,
            bind_allow: vec![dir.path().join("allowed")],
            secrets_dir: dir.path().join("secrets"),
            state_dir: dir.path().join("state"),
            owner: format!("test-{}", dir.path().file_name().unwrap().to_string_lossy()),
            allow_privileged: false,
            host_auth: None,
        };
        edit(&mut settings);
        let runtime = Arc::new(DockerRuntime::connect(settings).unwrap());
        Agent {
            dir,
            store,
            reader,
            runtime,
            ns: Namespace::new(),
        }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    pub fn controller(&self) -> Controller {
        self.controller_with(config())
    }

    pub fn controller_with(&self, config: Config) -> Controller {
        let runtime: Arc<dyn Runtime> = self.runtime.clone();
        Controller::new(
            self.store.clone(),
            vec![runtime],
            config,
            keel::clock::system(),
        )
        .unwrap()
    }

    /// Applies `files` as revision r1 and runs passes until deployment `name` is running; the
    /// controller, for more passes.
    pub async fn running(&self, name: &str, files: &[(&str, &str)]) -> Controller {
        self.apply("r1", files);
        let mut controller = self.controller();
        self.until(&mut controller, 60, &format!("{name} to run"), |a| {
            a.status(name) == Some(DeploymentStatus::Running)
        })
        .await;
        controller
    }

    /// The instance `ordinal` 0, generation 1, of deployment `name` in this agent's namespace,
    /// running the test image's `sleep 3600`, with `extra` fields of the manifest merged in.
    pub fn instance_spec(
        &self,
        name: &str,
        extra: serde_json::Value,
    ) -> keel::model::desired::InstanceSpec {
        let mut spec = serde_json::json!({
            "name": name, "namespace": self.ns.0, "image": IMAGE, "command": ["sleep", "3600"],
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        keel::model::desired::InstanceSpec {
            deployment: self.id(name),
            generation: 1,
            ordinal: 0,
            run: None,
            template: "t".into(),
            spec: serde_json::from_value(spec).unwrap(),
            mounted_configs: Default::default(),
        }
    }

    pub fn id(&self, name: &str) -> DeploymentId {
        DeploymentId::new(&self.ns.0, name)
    }

    /// A deployment of the test image in this agent's namespace.
    pub fn deployment(&self, name: &str, extra: &str) -> String {
        format!(
            "deployments:\n  {name}:\n    name: {name}\n    namespace: {ns}\n    image: {IMAGE}\n{extra}",
            ns = self.ns.0
        )
    }

    pub fn apply(&self, revision: &str, files: &[(&str, &str)]) {
        keel::ingest::apply_revision(
            &self.store,
            super::revision(revision),
            super::desired(files),
            keel::clock::now(),
        )
        .unwrap();
    }

    pub fn status(&self, name: &str) -> Option<DeploymentStatus> {
        self.reader
            .stored_state()
            .unwrap()
            .deployments
            .get(&self.id(name))
            .map(|d| d.status)
    }

    pub fn restart_count(&self, name: &str) -> u32 {
        self.reader.stored_state().unwrap().deployments[&self.id(name)].restart_count
    }

    /// Runs passes until `done` holds; panics with the statuses after `secs`.
    pub async fn until(
        &self,
        controller: &mut Controller,
        secs: u64,
        what: &str,
        done: impl Fn(&Agent) -> bool,
    ) {
        let deadline = Instant::now() + StdDuration::from_secs(secs);
        loop {
            controller.pass().await.unwrap();
            if done(self) {
                return;
            }
            if Instant::now() > deadline {
                let state: Vec<_> = self
                    .reader
                    .stored_state()
                    .unwrap()
                    .deployments
                    .values()
                    .map(|d| (d.id.name.clone(), d.status, d.restart_count))
                    .collect();
                let events: Vec<_> = self
                    .reader
                    .stored_state()
                    .unwrap()
                    .deployments
                    .keys()
                    .flat_map(|id| self.reader.events(id, 20).unwrap())
                    .map(|e| format!("{} {}: {}", e.deployment.name, e.kind, e.message))
                    .collect();
                panic!("timed out waiting for {what}; deployments {state:?}; events {events:#?}");
            }
            tokio::time::sleep(StdDuration::from_millis(150)).await;
        }
    }
}

/// `docker exec <id> <args…>` → stdout.
pub fn exec(id: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", id];
    all.extend_from_slice(args);
    let out = docker(&all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The label of a container.
pub fn label(id: &str, key: &str) -> String {
    let out = docker(&[
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        id,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
