//! Test equipment, not part of the product: a stand-in for `cloud-hypervisor` that keel's fast
//! test suite starts instead of the real hypervisor. Same command line (`--api-socket
//! path=<socket>`), same REST routes, methods, JSON field names and status codes for the subset
//! keel uses, and the same state machine (no VM → `Created` → `Running`; `vm.shutdown` back to
//! `Created`; `vmm.shutdown` answers 200, removes the socket and exits 0), and its error bodies
//! (a JSON array of messages, e.g. `["Error from API","The VM could not boot","Cannot open
//! kernel file",…]`): like the real one, `vm.create` accepts a missing kernel and `vm.boot`
//! refuses it. Stricter than the real server in one way, on purpose: unknown fields in
//! `vm.create` are refused (the real one ignores them), so a misspelt field in keel fails here.
//!
//! Test controls (`NAME=value` lines in `fake-vmm.env`, one directory above the socket's):
//! `KEEL_FAKE_VMM_POWEROFF_MS` — the "guest" powers off that long
//! after boot (the process exits 0, as Cloud Hypervisor does); `KEEL_FAKE_VMM_CRASH_MS` — the
//! process dies (exit 1) that long after boot; `KEEL_FAKE_VMM_REFUSE_BOOT` — `vm.boot` answers
//! 500 with that message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The part of `VmConfig` keel sends; anything else is refused, as the real server does.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct VmConfig {
    cpus: Value,
    memory: Value,
    payload: Payload,
    #[serde(default)]
    disks: Vec<Disk>,
    #[serde(default)]
    net: Vec<Value>,
    serial: Value,
    console: Value,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    firmware: Option<String>,
    kernel: Option<String>,
    cmdline: Option<String>,
    initramfs: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    path: String,
    #[serde(default)]
    readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VmState {
    Created,
    Running,
}

struct Vmm {
    socket: PathBuf,
    vm: Option<(VmConfig, VmState)>,
}

type Shared = Arc<Mutex<Vmm>>;

/// A test control: a `NAME=value` line of `fake-vmm.env` in the directory above the socket's
/// (the runtime's state directory, where a test writes it before any VMM starts).
fn control(socket: &Path, name: &str) -> Option<String> {
    let file = socket.parent()?.parent()?.join("fake-vmm.env");
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
}

fn control_ms(socket: &Path, name: &str) -> Option<u64> {
    control(socket, name).and_then(|v| v.parse().ok())
}

/// An error the way Cloud Hypervisor writes it: a JSON array of messages, outermost first.
fn error(status: StatusCode, messages: &[&str]) -> Response {
    (status, Json(json!(messages))).into_response()
}

async fn ping() -> Json<Value> {
    Json(
        json!({"build_version": "v54.0.0-fake", "version": "54.0.0", "pid": std::process::id(), "features": ["kvm"]}),
    )
}

async fn create(State(vmm): State<Shared>, body: String) -> Response {
    let config: VmConfig = match serde_json::from_str(&body) {
        Ok(config) => config,
        Err(e) => {
            let e = e.to_string();
            return error(StatusCode::BAD_REQUEST, &["Failed to deserialize JSON", &e]);
        }
    };
    let mut vmm = vmm.lock().unwrap_or_else(|p| p.into_inner());
    if vmm.vm.is_some() {
        let messages = [
            "Error from API",
            "The VM could not be created",
            "VM is already created",
        ];
        return error(StatusCode::INTERNAL_SERVER_ERROR, &messages);
    }
    vmm.vm = Some((config, VmState::Created));
    StatusCode::NO_CONTENT.into_response()
}

async fn boot(State(vmm): State<Shared>) -> Response {
    let could_not = |why: &str| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["Error from API", "The VM could not boot", why],
        )
    };
    let mut guard = vmm.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(message) = control(&guard.socket, "KEEL_FAKE_VMM_REFUSE_BOOT") {
        return could_not(&message);
    }
    match guard.vm.as_mut() {
        None => return could_not("VM is not created"),
        Some((config, state @ VmState::Created)) => {
            if let Some(what) = missing_file(config) {
                let messages = [
                    "Error from API",
                    "The VM could not boot",
                    what,
                    "No such file or directory (os error 2)",
                ];
                return error(StatusCode::INTERNAL_SERVER_ERROR, &messages);
            }
            *state = VmState::Running;
            serial(config, "fake guest: booted");
        }
        Some((_, VmState::Running)) => return could_not("VM is already booted"),
    }
    let socket = guard.socket.clone();
    let serial_file = guard
        .vm
        .as_ref()
        .and_then(|(config, _)| config.serial["file"].as_str().map(PathBuf::from));
    drop(guard);
    if let Some(ms) = control_ms(&socket, "KEEL_FAKE_VMM_POWEROFF_MS") {
        exit_after(ms, 0, socket.clone());
    }
    if let Some(ms) = control_ms(&socket, "KEEL_FAKE_VMM_CRASH_MS") {
        if let Some(file) = serial_file {
            append(&file, "fake guest: kernel panic (a test crash)");
        }
        exit_after(ms, 1, socket);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Writes a line to the VM's serial console, when it goes to a file.
fn serial(config: &VmConfig, line: &str) {
    if let Some(file) = config.serial["file"].as_str() {
        append(Path::new(file), line);
    }
}

fn append(file: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The first boot file that does not exist, in the words Cloud Hypervisor uses.
fn missing_file(config: &VmConfig) -> Option<&'static str> {
    let payload = &config.payload;
    let files = [
        ("Cannot open kernel file", payload.kernel.clone()),
        ("Cannot open firmware file", payload.firmware.clone()),
        ("Cannot open initramfs file", payload.initramfs.clone()),
    ];
    let disks = config
        .disks
        .iter()
        .map(|d| ("Cannot open disk path", Some(d.path.clone())));
    files
        .into_iter()
        .chain(disks)
        .find(|(_, path)| path.as_ref().is_some_and(|p| !Path::new(p).exists()))
        .map(|(what, _)| what)
}

/// The guest powers off (0) or the VMM dies (1): the process ends, like the real one.
fn exit_after(ms: u64, code: i32, socket: PathBuf) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        if code == 0 {
            let _ = std::fs::remove_file(&socket);
        }
        std::process::exit(code);
    });
}

async fn info(State(vmm): State<Shared>) -> Response {
    let vmm = vmm.lock().unwrap_or_else(|p| p.into_inner());
    match &vmm.vm {
        None => error(
            StatusCode::NOT_FOUND,
            &[
                "Error from API",
                "The VM info is not available",
                "VM is not created",
            ],
        ),
        Some((config, state)) => {
            let state = match state {
                VmState::Created => "Created",
                VmState::Running => "Running",
            };
            Json(json!({"config": config, "state": state, "memory_actual_size": config.memory["size"]}))
                .into_response()
        }
    }
}

async fn shutdown(State(vmm): State<Shared>) -> Response {
    let mut vmm = vmm.lock().unwrap_or_else(|p| p.into_inner());
    match vmm.vm.as_mut() {
        Some((_, state @ VmState::Running)) => {
            *state = VmState::Created;
            StatusCode::NO_CONTENT.into_response()
        }
        Some((_, VmState::Created)) | None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[
                "Error from API",
                "The VM could not shutdown",
                "VM is not running",
            ],
        ),
    }
}

async fn delete(State(vmm): State<Shared>) -> Response {
    vmm.lock().unwrap_or_else(|p| p.into_inner()).vm = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn vmm_shutdown(State(vmm): State<Shared>) -> Response {
    let socket = vmm.lock().unwrap_or_else(|p| p.into_inner()).socket.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    });
    StatusCode::OK.into_response()
}

/// `--api-socket path=<p>` (or `--api-socket <p>`).
fn socket_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--api-socket")?;
    let value = args.get(at + 1)?;
    let path = value
        .split(',')
        .find_map(|part| part.strip_prefix("path="))
        .unwrap_or(value);
    Some(PathBuf::from(path))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(socket) = socket_from_args() else {
        eprintln!("usage: keel-fake-vmm --api-socket path=<socket>");
        std::process::exit(2);
    };
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot bind {}: {e}", socket.display());
            std::process::exit(1);
        }
    };
    let state: Shared = Arc::new(Mutex::new(Vmm { socket, vm: None }));
    let app = Router::new()
        .route("/api/v1/vmm.ping", get(ping))
        .route("/api/v1/vm.create", put(create))
        .route("/api/v1/vm.boot", put(boot))
        .route("/api/v1/vm.info", get(info))
        .route("/api/v1/vm.shutdown", put(shutdown))
        .route("/api/v1/vm.delete", put(delete))
        .route("/api/v1/vmm.shutdown", put(vmm_shutdown))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("serving failed: {e}");
        std::process::exit(1);
    }
}
