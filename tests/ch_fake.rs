//! The Cloud Hypervisor runtime on the fake VMM (`keel-fake-vmm`), in the default run: a VMM
//! process per instance, distinct /30s and taps, removal ends the process and leaves no file
//! behind, a crashed VMM is an exited instance, a missing kernel is `failed`, too much memory is
//! `insufficient_resources`, a restarted runtime adopts running VMs without booting a second
//! one, and through the controller a job whose guest powers off is `completed` while a worker
//! whose VMM keeps dying ends in `crash_loop_back_off`, and a bad revision of microVMs is rolled
//! back to the good one.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::model::desired::{DeploymentId, InstanceSpec};
use keel::model::observed::Phase;
use keel::model::status::DeploymentStatus;
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::cloud_hypervisor::{CloudHypervisorRuntime, Settings};
use keel::runtime::lease::Holder;
use keel::runtime::{Runtime, RuntimeError};
use keel::store::Store;
use support::{desired, revision};

struct Rig {
    dir: tempfile::TempDir,
    kernel: PathBuf,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"a kernel").unwrap();
        std::fs::create_dir(dir.path().join("vms")).unwrap();
        Self { dir, kernel }
    }

    fn vms(&self) -> PathBuf {
        self.dir.path().join("vms")
    }

    fn settings(&self, owner: &str) -> Settings {
        Settings {
            binary: PathBuf::from(env!("CARGO_BIN_EXE_keel-fake-vmm")),
            state_dir: self.vms(),
            network: "10.213.0.0/16".parse().unwrap(),
            owner: owner.to_owned(),
            boot: keel::model::manifest::VmSpec {
                kernel: Some(self.kernel.display().to_string()),
                initramfs: None,
                cmdline: Some("console=ttyS0".into()),
                firmware: None,
            },
        }
    }

    fn runtime(&self) -> CloudHypervisorRuntime {
        CloudHypervisorRuntime::new(self.settings("node-a"))
    }

    /// Test controls for every VMM started from now on.
    fn control(&self, lines: &str) {
        std::fs::write(self.vms().join("fake-vmm.env"), lines).unwrap();
    }
}

fn spec(ordinal: u32, extra: serde_json::Value) -> InstanceSpec {
    let mut decl =
        serde_json::json!({"name": "vm", "namespace": "demo", "runtime": "cloud-hypervisor"});
    if let (Some(decl), serde_json::Value::Object(extra)) = (decl.as_object_mut(), extra) {
        decl.extend(extra);
    }
    InstanceSpec {
        deployment: DeploymentId::new("demo", "vm"),
        generation: 1,
        ordinal,
        run: None,
        template: "t1".into(),
        spec: serde_json::from_value(decl).unwrap(),
        mounted_configs: Default::default(),
    }
}

fn record(vms: &Path, instance: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(vms.join(instance).join("instance.json")).unwrap(),
    )
    .unwrap()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_get_their_own_vmm_network_and_files_and_leave_nothing_behind() {
    let rig = Rig::new();
    let runtime = rig.runtime();
    let mut names = Vec::new();
    for ordinal in [0, 1] {
        let name = runtime
            .create(&spec(ordinal, serde_json::json!({})))
            .await
            .unwrap();
        runtime.start(&name).await.unwrap();
        names.push(name);
    }
    let listed = runtime.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|i| i.phase == Phase::Running),
        "{listed:?}"
    );
    let ips: BTreeSet<String> = listed.iter().map(|i| i.ip.unwrap().to_string()).collect();
    assert_eq!(ips.len(), 2, "distinct /30s");
    assert!(ips.iter().all(|ip| ip.starts_with("10.213.")));
    let taps: BTreeSet<String> = names
        .iter()
        .map(|n| record(&rig.vms(), n)["tap"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(taps.len(), 2, "distinct taps");

    let pid = record(&rig.vms(), &names[0])["pid"].as_u64().unwrap();
    assert!(alive(pid));
    runtime.remove(&names[0]).await.unwrap();
    assert!(!alive(pid), "the VMM process is gone");
    assert!(
        !rig.vms().join(&names[0]).exists(),
        "socket, logs and record are gone"
    );
    let left = runtime.list().await.unwrap();
    assert_eq!(left.len(), 1);
    runtime.remove(&names[1]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_vmm_is_an_exited_instance_and_a_restarted_runtime_adopts_running_ones() {
    let rig = Rig::new();
    let runtime = rig.runtime();
    let crashed = runtime
        .create(&spec(0, serde_json::json!({})))
        .await
        .unwrap();
    runtime.start(&crashed).await.unwrap();
    let running = runtime
        .create(&spec(1, serde_json::json!({})))
        .await
        .unwrap();
    runtime.start(&running).await.unwrap();
    let pid = record(&rig.vms(), &crashed)["pid"].as_u64().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(5);
    loop {
        let listed = runtime.list().await.unwrap();
        let phase = listed
            .iter()
            .find(|i| i.runtime_id == crashed)
            .unwrap()
            .phase;
        if matches!(phase, Phase::Exited { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed VMM still looks alive"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }

    // A new runtime over the same directory (an agent restart): the running VM is adopted.
    let running_pid = record(&rig.vms(), &running)["pid"].as_u64().unwrap();
    let again = rig.runtime();
    let listed = again.list().await.unwrap();
    let adopted = listed.iter().find(|i| i.runtime_id == running).unwrap();
    assert_eq!(adopted.phase, Phase::Running);
    assert_eq!(
        record(&rig.vms(), &running)["pid"].as_u64(),
        Some(running_pid),
        "no second boot"
    );
    // Another node's agent sees none of them.
    let other = CloudHypervisorRuntime::new(rig.settings("node-b"));
    assert!(other.list().await.unwrap().is_empty());
    again.remove(&running).await.unwrap();
    again.remove(&crashed).await.unwrap();
    assert!(!alive(running_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_kernel_fails_and_too_much_memory_is_refused_before_any_vmm_starts() {
    let rig = Rig::new();
    let runtime = rig.runtime();
    let missing = spec(
        0,
        serde_json::json!({"vm": {"kernel": "/nonexistent/vmlinux"}}),
    );
    let error = runtime.create(&missing).await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::MissingFile { path, .. } if path == "/nonexistent/vmlinux"),
        "{error:?}"
    );
    assert_eq!(error.status(), DeploymentStatus::Failed);
    let huge = spec(
        0,
        serde_json::json!({"resources": {"limits": {"memory": "64Ti"}}}),
    );
    let error = runtime.create(&huge).await.unwrap_err();
    assert_eq!(
        error.status(),
        DeploymentStatus::InsufficientResources,
        "{error}"
    );
    assert!(
        runtime.list().await.unwrap().is_empty(),
        "no VMM was started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_per_node_name_on_a_vm_state_directory() {
    let rig = Rig::new();
    let runtime = rig.runtime();
    let me = Holder::current(keel::clock::now());
    runtime.claim(&me).await.unwrap();
    runtime.claim(&me).await.unwrap();
    let other = Holder::current(keel::clock::now());
    let refused = rig.runtime().claim(&other).await.unwrap_err();
    assert!(matches!(refused, RuntimeError::Held { .. }), "{refused}");
    runtime.release(&me).await.unwrap();
    rig.runtime().claim(&other).await.unwrap();
}

// ---- through the controller ------------------------------------------------------------------

fn manifest(name: &str, kernel: &Path, extra: &str) -> String {
    let initramfs = kernel.with_file_name("initramfs.cpio");
    std::fs::write(&initramfs, b"an initramfs").unwrap();
    format!(
        "deployments:\n  {name}:\n    name: {name}\n    namespace: demo\n    runtime: cloud-hypervisor\n    vm:\n      kernel: {}\n      initramfs: {}\n{extra}",
        kernel.display(),
        initramfs.display()
    )
}

async fn until_status(
    controller: &mut Controller,
    store: &Store,
    name: &str,
    wanted: DeploymentStatus,
) {
    let reader = store.reader().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        controller.pass().await.unwrap();
        let status =
            reader.stored_state().unwrap().deployments[&DeploymentId::new("demo", name)].status;
        if status == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {status}, not {wanted}"
        );
        tokio::time::sleep(StdDuration::from_millis(30)).await;
    }
}

fn controller(rig: &Rig, store: &Arc<Store>) -> Controller {
    let mut config = Config {
        resync: Duration::from_millis(50),
        ..Config::default()
    };
    config.policy.backoff_base = Duration::from_millis(10);
    config.policy.backoff_max = Duration::from_millis(20);
    let runtime: Arc<dyn Runtime> = Arc::new(rig.runtime());
    Controller::new(store.clone(), vec![runtime], config, keel::clock::system()).unwrap()
}

/// Runs `manifest` (deployment `name`) through the controller on the fake VMM with `control`,
/// until `name` is `wanted`; the store, for what the test checks next.
async fn run_until(
    control: &str,
    name: &str,
    extra: &str,
    wanted: DeploymentStatus,
) -> (Rig, Arc<Store>) {
    let rig = Rig::new();
    rig.control(control);
    let store = Arc::new(Store::open(&rig.dir.path().join("keel.db")).unwrap());
    let text = manifest(name, &rig.kernel, extra);
    keel::ingest::apply_revision(
        &store,
        revision("r1"),
        desired(&[("app.yaml", &text)]),
        keel::clock::now(),
    )
    .unwrap();
    let mut controller = controller(&rig, &store);
    until_status(&mut controller, &store, name, wanted).await;
    (rig, store)
}

fn stored(store: &Store, name: &str) -> keel::model::stored::StoredDeployment {
    store.reader().unwrap().stored_state().unwrap().deployments[&DeploymentId::new("demo", name)]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_guest_powers_off_completes() {
    let (_rig, store) = run_until(
        "KEEL_FAKE_VMM_POWEROFF_MS=200\n",
        "batch",
        "    kind: job\n",
        DeploymentStatus::Completed,
    )
    .await;
    assert_eq!(stored(&store, "batch").restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_jobs_runs_are_microvms_whose_power_off_completes_each_run() {
    let (rig, store) = run_until(
        "KEEL_FAKE_VMM_POWEROFF_MS=200\n",
        "tick",
        "    kind: cronjob\n    schedule: \"*/2 * * * * *\"\n",
        DeploymentStatus::Completed,
    )
    .await;
    let id = DeploymentId::new("demo", "tick");
    let runs = store
        .reader()
        .unwrap()
        .runs_page(&id, 10, None)
        .unwrap()
        .unwrap();
    let (run, _) = runs
        .iter()
        .find(|(r, _)| r.outcome == keel::model::run::RunOutcome::Completed)
        .expect("a completed run");
    assert_eq!(run.exit_code, Some(0), "a clean power-off");
    let names: Vec<String> = std::fs::read_dir(rig.vms())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.contains(&format!("-r{}-", run.run))),
        "a run's VM is named after its run: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_vmm_keeps_dying_ends_in_crash_loop_back_off() {
    let (_rig, store) = run_until(
        "KEEL_FAKE_VMM_CRASH_MS=50\n",
        "web",
        "",
        DeploymentStatus::CrashLoopBackOff,
    )
    .await;
    assert_eq!(stored(&store, "web").restart_count, 5);
    let events = store
        .reader()
        .unwrap()
        .events(&DeploymentId::new("demo", "web"), 50)
        .unwrap();
    let death = events
        .iter()
        .find(|e| e.kind == keel::model::event::EventKind::InstanceDied)
        .unwrap();
    assert!(
        death
            .message
            .contains("last output: fake guest: booted | fake guest: kernel panic"),
        "{}",
        death.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_boots_its_own_copy_of_the_disk_and_the_base_is_never_written() {
    let rig = Rig::new();
    let base = rig.dir.path().join("base.raw");
    std::fs::write(&base, vec![7u8; 4096]).unwrap();
    let runtime = rig.runtime();
    let image = serde_json::json!({"image": base.display().to_string()});
    let name = runtime.create(&spec(0, image)).await.unwrap();
    runtime.start(&name).await.unwrap();
    let copy = rig.vms().join(&name).join("disk.raw");
    assert_eq!(std::fs::read(&copy).unwrap(), vec![7u8; 4096]);
    std::fs::write(&copy, b"written by the guest").unwrap();
    assert_eq!(
        std::fs::read(&base).unwrap(),
        vec![7u8; 4096],
        "the base is untouched"
    );
    runtime.remove(&name).await.unwrap();
    assert!(!copy.exists(), "the copy goes with its instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_vmm_that_ended_tells_a_clean_power_off_from_a_death() {
    for (control, expected) in [
        ("KEEL_FAKE_VMM_POWEROFF_MS=100\n", 0),
        ("KEEL_FAKE_VMM_CRASH_MS=100\n", -1),
    ] {
        let rig = Rig::new();
        rig.control(control);
        let first = rig.runtime();
        let name = first.create(&spec(0, serde_json::json!({}))).await.unwrap();
        first.start(&name).await.unwrap();
        tokio::time::sleep(StdDuration::from_millis(600)).await;
        // A later agent, which did not start (and cannot reap) that VMM.
        let later = rig.runtime();
        let listed = later.list().await.unwrap();
        assert_eq!(
            listed[0].phase,
            Phase::Exited {
                exit_code: expected,
                oom_killed: false
            },
            "{control}"
        );
        later.remove(&name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vms_logs_are_its_serial_console_tailed_then_followed_until_it_is_removed() {
    use futures_util::StreamExt;
    use keel::runtime::LogOptions;
    let rig = Rig::new();
    let runtime = rig.runtime();
    let name = runtime
        .create(&spec(0, serde_json::json!({})))
        .await
        .unwrap();
    runtime.start(&name).await.unwrap();
    let serial = rig.vms().join(&name).join("serial.log");
    std::fs::write(&serial, "boot\nstarted sshd\nready\n").unwrap();

    let tail = LogOptions {
        tail: Some(2),
        ..LogOptions::default()
    };
    let chunks: Vec<Vec<u8>> = runtime
        .logs(&name, tail)
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(chunks.concat(), b"started sshd\nready\n");

    let follow = LogOptions {
        follow: true,
        tail: Some(1),
        ..LogOptions::default()
    };
    let mut followed = runtime.logs(&name, follow);
    assert_eq!(followed.next().await.unwrap().unwrap(), b"ready\n");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&serial)
        .unwrap();
    std::io::Write::write_all(&mut file, b"printed later\n").unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), followed.next())
        .await
        .expect("the appended line within the poll period");
    assert_eq!(next.unwrap().unwrap(), b"printed later\n");

    runtime.remove(&name).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), followed.next())
        .await
        .expect("the stream ends with the VM");
    assert!(ended.is_none());
}

/// Runs passes until `done` holds (30 s at most).
async fn pass_until(controller: &mut Controller, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while !done() {
        controller.pass().await.unwrap();
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(30)).await;
    }
}

/// A bad revision on Cloud Hypervisor is rolled back like any: its VMs keep dying, the host
/// returns to the good revision, whose VM runs again, and nothing of the bad one is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_revision_of_microvms_is_rolled_back_to_the_good_one() {
    use keel::model::status::RevisionState;
    let rig = Rig::new();
    let store = Arc::new(Store::open(&rig.dir.path().join("keel.db")).unwrap());
    let mut config = Config {
        resync: Duration::from_millis(50),
        ..Config::default()
    };
    config.policy.backoff_base = Duration::from_millis(10);
    config.policy.backoff_max = Duration::from_millis(20);
    config.policy.stable_after = Duration::from_millis(300);
    let runtime: Arc<dyn Runtime> = Arc::new(rig.runtime());
    let mut controller =
        Controller::new(store.clone(), vec![runtime], config, keel::clock::system()).unwrap();
    let reader = store.reader().unwrap();
    let apply = |sha: &str, text: &str| {
        keel::ingest::apply_revision(
            &store,
            revision(sha),
            desired(&[("app.yaml", text)]),
            keel::clock::now(),
        )
        .unwrap();
    };
    let state = |sha: &str| reader.revision(sha).unwrap().map(|r| r.state);
    apply("good", &manifest("web", &rig.kernel, ""));
    pass_until(&mut controller, "the good revision to succeed", || {
        state("good") == Some(RevisionState::Succeeded)
    })
    .await;
    let good = stored(&store, "web");

    // From now on every VMM that starts dies: the bad revision's VMs.
    rig.control("KEEL_FAKE_VMM_CRASH_MS=50\n");
    let bad = manifest("web", &rig.kernel, "    labels:\n      version: \"2\"\n");
    apply("bad", &bad);
    pass_until(
        &mut controller,
        "the bad revision to be rolled back",
        || state("bad") == Some(RevisionState::RolledBack),
    )
    .await;
    // The world is as it was: the restore's VMs boot.
    rig.control("");
    pass_until(&mut controller, "the restore to succeed", || {
        reader
            .revisions(1)
            .unwrap()
            .first()
            .is_some_and(|r| r.restores.is_some() && r.state == RevisionState::Succeeded)
    })
    .await;
    let web = stored(&store, "web");
    assert_eq!(web.spec_hash, good.spec_hash, "the good spec runs again");
    assert_eq!(web.status, DeploymentStatus::Running);
    let instances = reader.instances(&DeploymentId::new("demo", "web")).unwrap();
    assert_eq!(
        instances.len(),
        1,
        "one VM, of the restored generation: {instances:?}"
    );
    assert_eq!(instances[0].generation, web.generation);
}
