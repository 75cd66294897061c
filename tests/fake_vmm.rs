//! The fake VMM the fast suite runs instead of Cloud Hypervisor, driven through keel's own API
//! client: the same routes, state machine and refusals as the real hypervisor (whose behaviour
//! `../shared/ch/README.md` records), so that tests on it mean something.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel::runtime::cloud_hypervisor::api::{self, Boot, Files, VmInfo, VmState, VmmPingResponse};
use keel::runtime::cloud_hypervisor::client::{Client, ClientError};
use keel::runtime::cloud_hypervisor::net::{tap_name, Network};

struct Vmm {
    child: Child,
    client: Client,
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a fake VMM with its socket in `<root>/vm/`, and test `controls` where it reads them
/// (`<root>/fake-vmm.env`).
fn start(root: &Path, controls: &[(&str, &str)]) -> Vmm {
    let dir = root.join("vm");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let lines: String = controls.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(root.join("fake-vmm.env"), lines).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_keel-fake-vmm"))
        .arg("--api-socket")
        .arg(format!("path={}", socket.display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the fake VMM did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Vmm {
        child,
        client: Client::new(&socket),
    }
}

fn config(dir: &Path, kernel: &Path) -> api::VmConfig {
    let spec = keel::model::desired::InstanceSpec {
        deployment: keel::model::desired::DeploymentId::new("demo", "vm"),
        generation: 1,
        ordinal: 0,
        run: None,
        template: "t".into(),
        spec: serde_json::from_value(serde_json::json!({
            "name": "vm", "namespace": "demo", "runtime": "cloud-hypervisor"
        }))
        .unwrap(),
        mounted_configs: Default::default(),
    };
    let boot = Boot::Kernel {
        kernel: kernel.display().to_string(),
        initramfs: None,
        cmdline: "console=ttyS0".into(),
    };
    let files = Files {
        disk: None,
        serial: dir.join("serial.log").display().to_string(),
    };
    api::vm_config(
        &spec,
        &boot,
        &Network::default().lease(0),
        &tap_name("x"),
        &files,
    )
}

#[tokio::test]
async fn the_fake_vmm_follows_the_real_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"kernel").unwrap();
    let mut vmm = start(dir.path(), &[]);
    let ping: VmmPingResponse = vmm.client.get("vmm.ping").await.unwrap();
    assert_eq!(ping.pid, Some(i64::from(vmm.child.id())));
    assert!(matches!(
        vmm.client.get::<VmInfo>("vm.info").await,
        Err(ClientError::Refused { status: 404, .. })
    ));
    vmm.client
        .put("vm.create", Some(&config(dir.path(), &kernel)))
        .await
        .unwrap();
    let info: VmInfo = vmm.client.get("vm.info").await.unwrap();
    assert_eq!(info.state, VmState::Created);
    vmm.client.put("vm.boot", None::<&()>).await.unwrap();
    let info: VmInfo = vmm.client.get("vm.info").await.unwrap();
    assert_eq!(info.state, VmState::Running);
    vmm.client.put("vm.shutdown", None::<&()>).await.unwrap();
    let info: VmInfo = vmm.client.get("vm.info").await.unwrap();
    assert_eq!(info.state, VmState::Created, "shut down, not gone");
    vmm.client.put("vm.delete", None::<&()>).await.unwrap();
    vmm.client.put("vmm.shutdown", None::<&()>).await.unwrap();
    let status = vmm.child.wait().unwrap();
    assert!(status.success());
    assert!(
        !dir.path().join("vm/api.sock").exists(),
        "no leftover socket"
    );
}

#[tokio::test]
async fn the_fake_vmm_refuses_what_the_real_one_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let vmm = start(dir.path(), &[]);
    let missing = dir.path().join("no-such-kernel");
    // As with the real hypervisor: create accepts it, boot refuses it.
    vmm.client
        .put("vm.create", Some(&config(dir.path(), &missing)))
        .await
        .unwrap();
    let refused = vmm.client.put("vm.boot", None::<&()>).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Refused { status: 500, message } if message.contains("Cannot open kernel file")),
        "{refused:?}"
    );
    let again = vmm
        .client
        .put("vm.create", Some(&config(dir.path(), &missing)))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, ClientError::Refused { status: 500, message } if message.contains("VM is already created")),
        "{again:?}"
    );
    let fresh = tempfile::tempdir().unwrap();
    let vmm = start(fresh.path(), &[]);
    let mut body = serde_json::to_value(config(dir.path(), &missing)).unwrap();
    body["cpus"]["cpu_count"] = serde_json::json!(1);
    body["bogus"] = serde_json::json!(true);
    let refused = vmm.client.put("vm.create", Some(&body)).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Refused { status: 400, message } if message.contains("Failed to deserialize JSON")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_guest_powering_off_ends_the_process_cleanly_and_a_crash_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"kernel").unwrap();
    for (env, success) in [
        ("KEEL_FAKE_VMM_POWEROFF_MS", true),
        ("KEEL_FAKE_VMM_CRASH_MS", false),
    ] {
        let run = tempfile::tempdir_in(dir.path()).unwrap();
        let mut vmm = start(run.path(), &[(env, "50")]);
        vmm.client
            .put("vm.create", Some(&config(run.path(), &kernel)))
            .await
            .unwrap();
        vmm.client.put("vm.boot", None::<&()>).await.unwrap();
        let status = vmm.child.wait().unwrap();
        assert_eq!(status.success(), success, "{env}");
    }
}
