//! Real microVMs on the real Cloud Hypervisor in `../shared/ch/` (software KVM here: about
//! 100 s per boot, one VM at a time). The test creates a network namespace, and runs the
//! controller with the Cloud Hypervisor runtime inside it (this test binary again, through
//! `ip netns exec`), so that the taps and all guest traffic stay in that namespace; it removes
//! the namespace at the end, even on failure.
//!
//! Inside: a readiness-gated worker (tcp probe on port 80) becomes `running` and its address
//! answers HTTP; its VMM killed with SIGKILL is a crash, counted, and a new VM boots; removing
//! it leaves no VMM, tap or socket; a `job=1` guest powers off and the job is `completed`; a
//! cron job's run is a microVM whose power-off completes the run, and dropping the cron job
//! leaves no VMM.
//!
//! `#[ignore]`d in the default run (minutes of boots); `.ci/run` runs it alone with
//! `--ignored` when `/dev/kvm` and the harness exist — and then it fails loudly.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use keel::model::desired::DeploymentId;
use keel::model::status::DeploymentStatus;
use keel::model::units::Duration;
use keel::reconcile::controller::{Config, Controller};
use keel::runtime::cloud_hypervisor::{CloudHypervisorRuntime, Settings};
use keel::runtime::Runtime;
use keel::store::Store;
use support::{desired, revision};

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/ch")
}

/// Removes the namespace when the test ends, however it ends.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
#[ignore = "boots real microVMs (minutes); .ci/run runs it with --ignored when /dev/kvm and ../shared/ch exist"]
fn real_microvms_serve_crash_and_complete_inside_a_namespace() {
    assert!(
        harness().join("bin/cloud-hypervisor").exists() && PathBuf::from("/dev/kvm").exists(),
        "the real-VM test needs ../shared/ch and /dev/kvm"
    );
    let name = format!("keelch{}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    let _namespace = Namespace(name.clone());
    assert!(Command::new("ip")
        .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let status = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inside_the_namespace",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("KEEL_CH_REAL_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success(), "the run inside the namespace failed");
}

/// The part that runs inside the namespace (does nothing as an ordinary test).
#[test]
fn inside_the_namespace() {
    if std::env::var("KEEL_CH_REAL_CHILD").is_err() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

const BOOT: StdDuration = StdDuration::from_secs(400);

async fn until(controller: &mut Controller, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOOT;
    loop {
        controller.pass().await.unwrap();
        if done() {
            println!("reached: {what}");
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
}

fn http_get(ip: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &format!("{ip}:80").parse().ok()?,
        StdDuration::from_secs(5),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(StdDuration::from_secs(10)))
        .ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Kills every VMM started below `vms` when the scenario ends, however it ends.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.0.display().to_string()])
            .status();
    }
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    let _reaper = Reaper(vms.clone());
    let guest = harness().join("guest");
    let cmdline = std::fs::read_to_string(guest.join("cmdline"))
        .unwrap()
        .trim()
        .to_owned();
    let settings = Settings {
        binary: harness().join("bin/cloud-hypervisor"),
        state_dir: vms.clone(),
        network: "10.213.0.0/16".parse().unwrap(),
        owner: format!("real-{}", std::process::id()),
        boot: keel::model::manifest::VmSpec {
            kernel: Some(guest.join("vmlinux").display().to_string()),
            initramfs: Some(guest.join("initramfs.cpio").display().to_string()),
            cmdline: Some(cmdline.clone()),
            firmware: None,
        },
    };
    let store = Arc::new(Store::open(&dir.path().join("keel.db")).unwrap());
    let runtime: Arc<dyn Runtime> = Arc::new(CloudHypervisorRuntime::new(settings));
    let config = Config {
        resync: Duration::from_secs(1),
        ..Config::default()
    };
    let mut controller =
        Controller::new(store.clone(), vec![runtime], config, keel::clock::system()).unwrap();
    let reader = store.reader().unwrap();
    let row = |name: &str| {
        reader.stored_state().unwrap().deployments[&DeploymentId::new("real", name)].clone()
    };
    let apply = |rev: &str, files: &[(&str, &str)]| {
        keel::ingest::apply_revision(&store, revision(rev), desired(files), keel::clock::now())
            .unwrap();
    };
    let no_vmm_left = || {
        let vmms = Command::new("pgrep")
            .args(["-f", &vms.display().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&vmms.stdout).trim().is_empty()
    };
    let kernel = guest.join("vmlinux").display().to_string();
    let initramfs = guest.join("initramfs.cpio").display().to_string();
    let web = format!(
        "deployments:\n  web:\n    name: web\n    namespace: real\n    runtime: cloud-hypervisor\n    vm:\n      kernel: {kernel}\n      initramfs: {initramfs}\n      cmdline: \"{cmdline}\"\n    health_checks:\n      - {{type: tcp, port: 80, interval: 2s, timeout: 2s, readiness: true, min_healthy_time: 2s}}\n"
    );
    apply("r1", &[("web.yaml", &web)]);

    // 1. The readiness-gated worker serves.
    until(&mut controller, "web running behind its tcp probe", || {
        row("web").status == DeploymentStatus::Running
    })
    .await;
    let instances = reader.instances(&DeploymentId::new("real", "web")).unwrap();
    let ip = instances[0].ip.clone().unwrap();
    let page = http_get(&ip).expect("the guest answers HTTP");
    assert!(page.contains("hello from cloud-hypervisor guest"), "{page}");

    // 2. Its VMM killed: a crash, counted, and a new VM boots.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vms.join(&instances[0].runtime_id).join("instance.json")).unwrap(),
    )
    .unwrap();
    let pid = record["pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    until(&mut controller, "the crash counted", || {
        row("web").restart_count == 1
    })
    .await;
    // The replacement takes the freed ordinal (the same instance name) in a new VMM process.
    let vmm_pid = |instance: &str| {
        std::fs::read_to_string(vms.join(instance).join("instance.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|r| r["pid"].as_u64())
            .map(|p| p.to_string())
    };
    until(&mut controller, "web running again on a new VM", || {
        let now = reader.instances(&DeploymentId::new("real", "web")).unwrap();
        row("web").status == DeploymentStatus::Running
            && now.len() == 1
            && now[0].state == keel::model::status::InstanceState::Ready
            && vmm_pid(&now[0].runtime_id).is_some_and(|p| p != pid)
    })
    .await;

    // 3. The worker leaves, a job=1 guest runs and powers off.
    let job = format!(
        "deployments:\n  batch:\n    name: batch\n    namespace: real\n    kind: job\n    runtime: cloud-hypervisor\n    vm:\n      kernel: {kernel}\n      initramfs: {initramfs}\n      cmdline: \"{cmdline} job=1\"\n"
    );
    apply("r2", &[("job.yaml", &job)]);
    until(&mut controller, "the job completed and web gone", || {
        row("batch").status == DeploymentStatus::Completed
            && reader
                .instances(&DeploymentId::new("real", "web"))
                .unwrap()
                .is_empty()
    })
    .await;
    assert_eq!(row("batch").restart_count, 0);
    // A VMM whose guest powered off removed its API socket (how an agent that adopted it, and
    // so cannot know its exit code, tells a clean end from a death).
    let job = reader
        .instances(&DeploymentId::new("real", "batch"))
        .unwrap();
    assert!(
        !vms.join(&job[0].runtime_id).join("api.sock").exists(),
        "the powered-off VMM left its socket"
    );

    // Nothing of web is left: no VMM, no tap, no socket.
    let leftovers: Vec<String> = std::fs::read_dir(&vms)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-web-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let web_tap = keel::runtime::cloud_hypervisor::net::tap_name(&instances[0].runtime_id);
    assert!(
        !links.contains(&web_tap),
        "web's tap {web_tap} is left behind: {links}"
    );
    assert!(
        no_vmm_left(),
        "a VMM is left behind (the job's powered off, web's was removed)"
    );

    // 4. A cron job: each run is a microVM; its guest powering off completes the run.
    let cron = format!(
        "deployments:\n  tick:\n    name: tick\n    namespace: real\n    kind: cronjob\n    schedule: \"* * * * *\"\n    runtime: cloud-hypervisor\n    vm:\n      kernel: {kernel}\n      initramfs: {initramfs}\n      cmdline: \"{cmdline} job=1\"\n"
    );
    apply("r3", &[("cron.yaml", &cron)]);
    let tick = DeploymentId::new("real", "tick");
    until(&mut controller, "a cron job's run completed", || {
        reader
            .runs_page(&tick, 10, None)
            .unwrap()
            .unwrap_or_default()
            .iter()
            .any(|(run, _)| run.outcome == keel::model::run::RunOutcome::Completed)
    })
    .await;
    assert_eq!(row("tick").status, DeploymentStatus::Completed);
    let runs = reader.runs_page(&tick, 10, None).unwrap().unwrap();
    let (run, _) = runs
        .iter()
        .find(|(run, _)| run.outcome == keel::model::run::RunOutcome::Completed)
        .unwrap();
    assert_eq!(run.exit_code, Some(0), "a clean power-off");
    // Gone with the revision that drops it: no VMM of its runs is left.
    apply("r4", &[]);
    until(&mut controller, "the cron job's VMs gone", || {
        reader.instances(&tick).unwrap().is_empty()
    })
    .await;
    assert!(no_vmm_left(), "a cron run's VMM is left behind");
}
