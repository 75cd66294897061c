//! The Cloud Hypervisor `Runtime`: one VMM process per instance, each in its own directory
//! below the state directory (`<vms>/<instance>/`: `api.sock`, `instance.json`, `serial.log`,
//! `vmm.log`, `disk.raw`). The directory is the record: listing reads it back, so an agent
//! that restarts adopts the VMMs still running (ping + `vm.info`) and never boots a second VM
//! for one instance.
//!
//! Supervision: a VMM this process started is waited on by a task of its own — always reaped,
//! its exit code kept, its exit a wake-up. Stopping escalates: `vm.shutdown` (within the
//! grace), `vmm.shutdown`, then SIGKILL. Removing an instance also removes its tap, disk copy,
//! logs and socket.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::desired::DeploymentId;
use crate::model::manifest::{RuntimeKind, VmSpec};
use crate::model::observed::{ObservedInstance, Phase};
use crate::model::time::Timestamp;
use crate::model::units::Duration;
use crate::runtime::lease::{self, Decision, Holder, Liveness};
use crate::runtime::{
    ExecOutput, InstanceSpec, Runtime, RuntimeError, RuntimeEvent, RuntimeFuture,
};

use super::api::{self, Boot, Files, VmInfo, VmState};
use super::client::{Client, ClientError};
use super::errors::{classify, Operation};
use super::net::{tap_name, Network};

/// What the agent configuration says about Cloud Hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub binary: PathBuf,
    /// Where instance directories live.
    pub state_dir: PathBuf,
    pub network: Network,
    /// This agent's node name: it lists and removes only its own instances.
    pub owner: String,
    /// The operator's boot defaults, which a deployment's `vm` block overrides.
    pub boot: VmSpec,
}

/// One instance's record, `instance.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    owner: String,
    namespace: String,
    name: String,
    generation: u64,
    ordinal: u32,
    #[serde(default)]
    run: Option<u64>,
    template: String,
    slot: u32,
    tap: String,
    guest_ip: String,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    started_at: Option<i64>,
}

pub struct CloudHypervisorRuntime {
    settings: Settings,
    events: broadcast::Sender<RuntimeEvent>,
    /// Exit codes of the VMMs this process started and reaped, by instance.
    exits: Arc<Mutex<HashMap<String, i32>>>,
}

fn io<'a>(what: &str, path: &'a Path) -> impl Fn(std::io::Error) -> RuntimeError + 'a {
    let what = what.to_owned();
    move |e| RuntimeError::FileSystem {
        path: path.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

impl CloudHypervisorRuntime {
    pub fn new(settings: Settings) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            settings,
            events,
            exits: Arc::default(),
        }
    }

    fn dir(&self, instance: &str) -> PathBuf {
        self.settings.state_dir.join(instance)
    }

    fn client(&self, instance: &str) -> Client {
        Client::new(&self.dir(instance).join("api.sock"))
    }

    fn read_record(&self, instance: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.dir(instance).join("instance.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_record(&self, instance: &str, record: &Record) -> Result<(), RuntimeError> {
        let path = self.dir(instance).join("instance.json");
        let text =
            serde_json::to_string_pretty(record).map_err(|e| RuntimeError::Other(e.to_string()))?;
        std::fs::write(&path, text).map_err(io("cannot write the instance record", &path))
    }

    /// Every instance directory this agent owns, with its record.
    fn records(&self) -> Vec<(String, Record)> {
        let Ok(entries) = std::fs::read_dir(&self.settings.state_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| self.read_record(&name).map(|r| (name, r)))
            .filter(|(_, r)| r.owner == self.settings.owner)
            .collect()
    }

    /// How the instance boots: the deployment's `vm` block over the operator's defaults
    /// (`VmSpec::over`, the rule validation judges by).
    fn boot(&self, spec: &InstanceSpec) -> Result<Boot, RuntimeError> {
        let vm = spec
            .spec
            .vm
            .clone()
            .unwrap_or_default()
            .over(&self.settings.boot);
        let boot = match (vm.kernel, vm.firmware) {
            (Some(kernel), _) => Boot::Kernel {
                kernel,
                initramfs: vm.initramfs,
                cmdline: vm.cmdline.unwrap_or_default(),
            },
            (None, Some(firmware)) => Boot::Firmware { firmware },
            (None, None) => {
                return Err(RuntimeError::Config(
                    "no kernel or firmware: set vm.kernel (or vm.firmware) in the manifest, or [cloud_hypervisor] kernel in keel.toml".to_owned(),
                ))
            }
        };
        let files = match &boot {
            Boot::Kernel {
                kernel, initramfs, ..
            } => vec![
                ("kernel", Some(kernel.clone())),
                ("initramfs", initramfs.clone()),
            ],
            Boot::Firmware { firmware } => vec![("firmware", Some(firmware.clone()))],
        };
        let image = spec.spec.image.clone().filter(|i| i.starts_with('/'));
        for (what, path) in files.into_iter().chain([("disk image", image)]) {
            if let Some(path) = path.filter(|p| !Path::new(p).exists()) {
                return Err(RuntimeError::MissingFile { what, path });
            }
        }
        Ok(boot)
    }

    /// The VM's memory must fit in the host's before anything starts.
    fn check_memory(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let wanted = spec
            .spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.memory)
            .map_or(api::DEFAULT_MEMORY, |m| m.bytes());
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map_or(u64::MAX, |kib| kib.saturating_mul(1024));
        if wanted > total {
            return Err(RuntimeError::InsufficientResources {
                requested: crate::model::units::Memory::from_bytes(wanted).to_string(),
                available: crate::model::units::Memory::from_bytes(total).to_string(),
            });
        }
        Ok(())
    }

    /// Starts the VMM of `instance` and supervises it.
    async fn spawn(&self, instance: &str) -> Result<u32, RuntimeError> {
        let dir = self.dir(instance);
        let socket = dir.join("api.sock");
        let log = std::fs::File::create(dir.join("vmm.log"))
            .map_err(io("cannot create the VMM log", &dir))?;
        let mut child = tokio::process::Command::new(&self.settings.binary)
            .arg("--api-socket")
            .arg(format!("path={}", socket.display()))
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(io("cannot open the VMM log", &dir))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| {
                RuntimeError::Config(format!(
                    "cannot start {}: {e}",
                    self.settings.binary.display()
                ))
            })?;
        let pid = child.id().unwrap_or(0);
        let (exits, events, name) = (self.exits.clone(), self.events.clone(), instance.to_owned());
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
            exits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), code);
            let _ = events.send(RuntimeEvent {
                runtime_id: name,
                what: format!("vmm exited {code}"),
            });
        });
        for _ in 0..200 {
            if self
                .client(instance)
                .get::<api::VmmPingResponse>("vmm.ping")
                .await
                .is_ok()
            {
                return Ok(pid);
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
        kill(pid);
        Err(RuntimeError::Other(format!(
            "the VMM of {instance} did not open its API socket"
        )))
    }

    fn observe(&self, name: &str, record: &Record, state: Option<VmState>) -> ObservedInstance {
        let phase = match state {
            Some(VmState::Running | VmState::Paused | VmState::BreakPoint) => Phase::Running,
            Some(VmState::Created | VmState::Shutdown) => Phase::Created,
            None => Phase::Exited {
                exit_code: self.exit_code(name),
                oom_killed: false,
            },
        };
        ObservedInstance {
            runtime: RuntimeKind::CloudHypervisor,
            runtime_id: name.to_owned(),
            deployment: DeploymentId::new(record.namespace.clone(), record.name.clone()),
            generation: record.generation,
            ordinal: record.ordinal,
            run: record.run,
            template: record.template.clone(),
            phase,
            ip: record.guest_ip.parse().ok(),
            started_at: record.started_at.map(Timestamp),
            interrupted: false,
            last_output: match phase {
                Phase::Exited { .. } => serial_tail(&self.dir(name).join("serial.log")),
                Phase::Created | Phase::Running => None,
            },
        }
    }

    /// How a VMM that is gone ended: its exit code when this process reaped it; otherwise (it
    /// was adopted from an earlier agent) a VMM that exits cleanly — the guest powered off, or
    /// `vmm.shutdown` — removes its API socket, while one that dies leaves it behind.
    fn exit_code(&self, name: &str) -> i64 {
        let reaped = self
            .exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        match reaped {
            Some(code) => i64::from(code),
            None if self.dir(name).join("api.sock").exists() => -1,
            None => 0,
        }
    }

    /// The VM's state, or `None` when its VMM is gone.
    async fn state(&self, name: &str) -> Option<VmState> {
        match self.client(name).get::<VmInfo>("vm.info").await {
            Ok(info) => Some(info.state),
            Err(ClientError::Refused { .. } | ClientError::Malformed(_)) => Some(VmState::Created),
            Err(ClientError::Unreachable { .. }) => None,
        }
    }

    async fn shut_down(&self, name: &str, grace: Duration) {
        let client = self.client(name);
        let grace = grace.to_std().max(StdDuration::from_millis(100));
        let _ = tokio::time::timeout(grace, client.put("vm.shutdown", None::<&()>)).await;
        let _ = tokio::time::timeout(
            StdDuration::from_secs(2),
            client.put("vmm.shutdown", None::<&()>),
        )
        .await;
        let pid = self.read_record(name).and_then(|r| r.pid);
        for _ in 0..40 {
            if pid.is_none_or(|p| !alive(p)) {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        if let Some(pid) = pid {
            kill(pid);
        }
    }

    /// Publishes `draft` as the lease at `path`, taking over a lease whose agent is gone.
    /// Two rounds: a dead agent's lease is removed, then claimed again.
    fn publish_lease(
        &self,
        draft: &Path,
        path: &Path,
        holder: &Holder,
    ) -> Result<(), RuntimeError> {
        for _ in 0..2 {
            let _ = std::fs::hard_link(draft, path);
            let found = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .and_then(|labels| Holder::from_labels(&labels));
            let liveness = found.as_ref().map_or(Liveness::Unknown, Holder::liveness);
            match lease::decide(found, holder, liveness) {
                Decision::Held => return Ok(()),
                Decision::TakeOver(_) => {
                    let _ = std::fs::remove_file(path);
                }
                Decision::Refuse(other) => {
                    return Err(RuntimeError::Held {
                        node: self.settings.owner.clone(),
                        holder: other.describe(),
                        remedy: format!(
                            "stop that agent, or give this one another `node`; if it is gone for good, remove {}",
                            path.display()
                        ),
                    })
                }
            }
        }
        Err(RuntimeError::Held {
            node: self.settings.owner.clone(),
            holder: "another agent starting at the same time".to_owned(),
            remedy: "start one agent per node name".to_owned(),
        })
    }
}

/// A serial log larger than this is cut down to its last `SERIAL_KEPT` bytes.
const SERIAL_CAP: u64 = 1 << 20;
const SERIAL_KEPT: usize = 64 << 10;

/// Keeps a serial log within `SERIAL_CAP` on disk: its tail is rewritten at the start and the
/// rest freed. The VMM keeps writing at its own offset, so the file becomes sparse — its
/// apparent size grows, the disk it uses does not.
fn cap_serial(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let used = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
    if used <= SERIAL_CAP {
        return;
    }
    let Some(tail) = read_tail(path, SERIAL_KEPT) else {
        return;
    };
    let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.write_all(&tail);
}

fn read_tail(path: &Path, bytes: usize) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(u64::try_from(bytes).unwrap_or(u64::MAX));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    // A sparse gap reads as zeros: they are not output.
    tail.retain(|b| *b != 0);
    Some(tail)
}

/// How often a followed serial log is looked at for new output.
const SERIAL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Reads a VM's serial log for `logs`: what is there (its last `tail` lines), then, when
/// following, what is appended, until the VM's directory is gone. The log has no times, so
/// `since` does not apply.
struct SerialReader {
    path: PathBuf,
    dir: PathBuf,
    /// How far the log has been read; `None` before the first read.
    offset: Option<usize>,
    options: crate::runtime::LogOptions,
}

impl SerialReader {
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            let path = self.path.clone();
            let content = tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let from = match self.offset {
                None => tail_start(&content, self.options.tail),
                // Shorter than read: cut down by `cap_serial`, read again from its start.
                Some(offset) if content.len() < offset => 0,
                Some(offset) => offset,
            };
            self.offset = Some(content.len());
            if from < content.len() {
                return Some(content[from..].to_vec());
            }
            if !self.options.follow || !self.dir.exists() {
                return None;
            }
            tokio::time::sleep(SERIAL_POLL).await;
        }
    }
}

/// Where the last `tail` lines of `content` start (0 without a tail).
fn tail_start(content: &[u8], tail: Option<u32>) -> usize {
    let Some(lines) = tail else {
        return 0;
    };
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    if lines == 0 {
        content.len()
    } else {
        0
    }
}

/// The last lines of a serial log (at most 5, 400 characters), for the event of a failure.
fn serial_tail(path: &Path) -> Option<String> {
    let tail = read_tail(path, 4096)?;
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines[lines.len().saturating_sub(5)..].join(" | ");
    let last: String = last
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!last.is_empty()).then_some(last)
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn kill(pid: u32) {
    if pid != 0 {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

impl Runtime for CloudHypervisorRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::CloudHypervisor
    }

    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (name, record) in self.records() {
                cap_serial(&self.dir(&name).join("serial.log"));
                let state = self.state(&name).await;
                out.push(self.observe(&name, &record, state));
            }
            Ok(out)
        })
    }

    fn create<'a>(&'a self, spec: &'a InstanceSpec) -> RuntimeFuture<'a, String> {
        Box::pin(async move {
            let boot = self.boot(spec)?;
            self.check_memory(spec)?;
            let name = spec.name();
            let taken: BTreeSet<u32> = self
                .records()
                .into_iter()
                .filter(|(n, _)| *n != name)
                .map(|(_, r)| r.slot)
                .collect();
            let lease = self.settings.network.choose(&name, &taken).ok_or_else(|| {
                RuntimeError::Network("no free /30 left in the Cloud Hypervisor network".into())
            })?;
            let dir = self.dir(&name);
            std::fs::create_dir_all(&dir)
                .map_err(io("cannot create the instance directory", &dir))?;
            let disk = match spec.spec.image.as_deref().filter(|i| i.starts_with('/')) {
                Some(image) => {
                    let copy = dir.join("disk.raw");
                    std::fs::copy(image, &copy).map_err(io("cannot copy the disk image", &copy))?;
                    Some(copy.display().to_string())
                }
                None => None,
            };
            let tap = tap_name(&name);
            let mut record = Record {
                owner: self.settings.owner.clone(),
                namespace: spec.deployment.namespace.clone(),
                name: spec.deployment.name.clone(),
                generation: spec.generation,
                ordinal: spec.ordinal,
                run: spec.run,
                template: spec.template.clone(),
                slot: lease.slot,
                tap: tap.clone(),
                guest_ip: lease.guest.to_string(),
                pid: None,
                started_at: None,
            };
            self.write_record(&name, &record)?;
            let pid = self.spawn(&name).await?;
            record.pid = Some(pid);
            self.write_record(&name, &record)?;
            let files = Files {
                disk,
                serial: dir.join("serial.log").display().to_string(),
            };
            let config = api::vm_config(spec, &boot, &lease, &tap, &files);
            if let Err(error) = self.client(&name).put("vm.create", Some(&config)).await {
                self.shut_down(&name, Duration::from_millis(0)).await;
                return Err(match error {
                    ClientError::Refused { status, message } => {
                        classify(Operation::Create, status, &message)
                    }
                    ClientError::Unreachable { .. } | ClientError::Malformed(_) => {
                        RuntimeError::Other(error.to_string())
                    }
                });
            }
            Ok(name)
        })
    }

    fn start<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.client(runtime_id)
                .put("vm.boot", None::<&()>)
                .await
                .map_err(|error| match error {
                    ClientError::Refused { status, message } => {
                        classify(Operation::Boot, status, &message)
                    }
                    ClientError::Unreachable { .. } => {
                        RuntimeError::NotFound(runtime_id.to_owned())
                    }
                    ClientError::Malformed(_) => RuntimeError::Other(error.to_string()),
                })?;
            if let Some(mut record) = self.read_record(runtime_id) {
                record.started_at = Some(crate::clock::now().0);
                self.write_record(runtime_id, &record)?;
            }
            Ok(())
        })
    }

    fn stop<'a>(&'a self, runtime_id: &'a str, grace: Duration) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.shut_down(runtime_id, grace).await;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let record = self.read_record(runtime_id);
            self.shut_down(runtime_id, Duration::from_millis(0)).await;
            if let Some(record) = record {
                // Cloud Hypervisor removes the tap it made when it exits; make sure.
                let _ = tokio::process::Command::new("ip")
                    .args(["link", "delete", &record.tap])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await;
            }
            let dir = self.dir(runtime_id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("cannot remove the instance directory", &dir)(e)),
            }
        })
    }

    fn exec<'a>(
        &'a self,
        _runtime_id: &'a str,
        _command: &'a [String],
        _timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput> {
        Box::pin(async move {
            Err(RuntimeError::Config(
                "command health checks cannot run inside a microVM; use tcp or http".to_owned(),
            ))
        })
    }

    fn logs(
        &self,
        runtime_id: &str,
        options: crate::runtime::LogOptions,
    ) -> crate::runtime::LogStream {
        let dir = self.dir(runtime_id);
        if !dir.exists() {
            return crate::runtime::no_logs(RuntimeError::NotFound(runtime_id.to_owned()));
        }
        let reader = SerialReader {
            path: dir.join("serial.log"),
            dir,
            offset: None,
            options,
        };
        Box::pin(futures_util::stream::unfold(
            reader,
            |mut reader| async move { reader.next_chunk().await.map(|chunk| (Ok(chunk), reader)) },
        ))
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn claim<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let path = self.settings.state_dir.join("lease.json");
            std::fs::create_dir_all(&self.settings.state_dir).map_err(io(
                "cannot create the VM state directory",
                &self.settings.state_dir,
            ))?;
            // Written aside, then published with `hard_link` (which fails when the lease
            // exists): another agent never reads a half-written lease and takes it over.
            let draft = self
                .settings
                .state_dir
                .join(format!("lease.{}.draft", std::process::id()));
            let labels = serde_json::to_vec(&holder.to_labels())
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            std::fs::write(&draft, labels).map_err(io("cannot write the node lease", &draft))?;
            let outcome = self.publish_lease(&draft, &path, holder);
            let _ = std::fs::remove_file(&draft);
            outcome
        })
    }

    fn release<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let path = self.settings.state_dir.join("lease.json");
            let ours = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .and_then(|labels| Holder::from_labels(&labels))
                .is_some_and(|h| h.id == holder.id);
            if ours {
                let _ = std::fs::remove_file(&path);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_tail_starts_at_its_last_lines() {
        let log = b"one\ntwo\nthree\n";
        // (tail, where it starts)
        for (tail, start) in [
            (None, 0),
            (Some(1), 8),
            (Some(2), 4),
            (Some(3), 0),
            (Some(9), 0),
            (Some(0), 14),
        ] {
            assert_eq!(tail_start(log, tail), start, "{tail:?}");
        }
        assert_eq!(tail_start(b"no newline at the end", Some(1)), 0);
    }

    #[test]
    fn the_serial_tail_is_the_last_lines_and_the_log_stays_small_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let mut text = String::new();
        for i in 0..150_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("Kernel panic - not syncing: VFS: Unable to mount root fs\n");
        std::fs::write(&log, &text).unwrap();
        assert_eq!(
            serial_tail(&log).unwrap(),
            "line 149996 | line 149997 | line 149998 | line 149999 | Kernel panic - not syncing: VFS: Unable to mount root fs"
        );
        cap_serial(&log);
        let meta = std::fs::metadata(&log).unwrap();
        assert!(meta.len() <= SERIAL_KEPT as u64, "{}", meta.len());
        assert!(serial_tail(&log)
            .unwrap()
            .ends_with("Unable to mount root fs"));
    }
}
