//! keel's API client against the real Cloud Hypervisor in `../shared/ch/` (see its README):
//! the same routes, answers and state machine the fake VMM imitates. These need the harness,
//! so they are `#[ignore]`d in the default run; `.ci/run` runs them with `--ignored` whenever
//! `../shared/ch/bin/cloud-hypervisor` exists — and then they fail loudly, never skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel::runtime::cloud_hypervisor::api::{
    self, ConsoleConfig, ConsoleMode, CpusConfig, MemoryConfig, PayloadConfig, VmInfo,
    VmmPingResponse,
};
use keel::runtime::cloud_hypervisor::client::{Client, ClientError};

fn binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/ch/bin/cloud-hypervisor");
    assert!(
        path.exists(),
        "the Cloud Hypervisor harness is missing: {}",
        path.display()
    );
    path
}

struct Vmm {
    child: Child,
    client: Client,
    socket: PathBuf,
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Vmm {
    let socket = dir.join("api.sock");
    let child = Command::new(binary())
        .arg("--api-socket")
        .arg(format!("path={}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no API socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    Vmm {
        child,
        client: Client::new(&socket),
        socket,
    }
}

fn minimal(kernel: &str) -> api::VmConfig {
    let off = ConsoleConfig {
        mode: ConsoleMode::Off,
        file: None,
    };
    api::VmConfig {
        cpus: CpusConfig {
            boot_vcpus: 1,
            max_vcpus: 1,
        },
        memory: MemoryConfig { size: 256 << 20 },
        payload: PayloadConfig {
            firmware: None,
            kernel: Some(kernel.to_owned()),
            cmdline: Some("console=ttyS0".into()),
            initramfs: None,
        },
        disks: Vec::new(),
        net: Vec::new(),
        serial: off.clone(),
        console: off,
    }
}

#[tokio::test]
#[ignore = "needs ../shared/ch; .ci/run runs it with --ignored when the harness exists"]
async fn the_real_vmm_answers_as_the_client_and_the_fake_expect() {
    let dir = tempfile::tempdir().unwrap();
    let mut vmm = start(dir.path());
    let ping: VmmPingResponse = vmm.client.get("vmm.ping").await.unwrap();
    assert_eq!(ping.pid, Some(i64::from(vmm.child.id())));
    let info = vmm.client.get::<VmInfo>("vm.info").await.unwrap_err();
    assert!(
        matches!(&info, ClientError::Refused { status: 404, message } if message.contains("VM is not created")),
        "{info:?}"
    );
    let missing = dir.path().join("no-such-kernel").display().to_string();
    vmm.client
        .put("vm.create", Some(&minimal(&missing)))
        .await
        .unwrap();
    let shutdown = vmm
        .client
        .put("vm.shutdown", None::<&()>)
        .await
        .unwrap_err();
    assert!(
        matches!(&shutdown, ClientError::Refused { status: 500, message } if message.contains("VM is not running")),
        "{shutdown:?}"
    );
    let boot = vmm.client.put("vm.boot", None::<&()>).await.unwrap_err();
    assert!(
        matches!(&boot, ClientError::Refused { status: 500, message } if message.contains("Cannot open kernel file")),
        "{boot:?}"
    );
    vmm.client.put("vm.delete", None::<&()>).await.unwrap();
    vmm.client.put("vmm.shutdown", None::<&()>).await.unwrap();
    let status = vmm.child.wait().unwrap();
    assert!(status.success());
    assert!(!vmm.socket.exists(), "the socket is gone with the process");
}
