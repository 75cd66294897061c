//! An in-memory runtime for tests: it records every call and plays scripted behaviour per
//! deployment — creates that fail with a given error, instances that exit after a delay with a
//! given code, instances that become reachable after a delay. "Reachable" is real: the
//! instance opens a TCP listener on 127.0.0.1 that answers HTTP, so tcp and http probes run
//! against a real socket.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::model::desired::DeploymentId;
use crate::model::manifest::RuntimeKind;
use crate::model::observed::{ObservedInstance, Phase};
use crate::model::time::Timestamp;
use crate::model::units::Duration;

use super::lease::{self, Decision, Holder, Liveness};
use super::{ExecOutput, InstanceSpec, Runtime, RuntimeError, RuntimeEvent, RuntimeFuture};

/// How instances of one deployment behave.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Errors returned by the next creates, one each, before creates succeed.
    pub create_errors: VecDeque<RuntimeError>,
    /// Every create fails with this (after `create_errors` are used up).
    pub always_fail_create: Option<RuntimeError>,
    /// The instance exits by itself this long after starting, with this exit code.
    pub exit_after: Option<(Duration, i64)>,
    /// The instance accepts connections this long after starting (`None`: never).
    pub reachable_after: Option<Duration>,
    /// The HTTP status its listener answers.
    pub http_status: u16,
    /// The exit code of commands run in it.
    pub exec_exit_code: i64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            create_errors: VecDeque::new(),
            always_fail_create: None,
            exit_after: None,
            reachable_after: Some(Duration::from_millis(0)),
            http_status: 200,
            exec_exit_code: 0,
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    List,
    Create(String),
    Start(String),
    Stop(String),
    Remove(String),
    Exec(String),
}

#[derive(Debug)]
enum State {
    Created,
    Running,
    /// `interrupted`: stopped by a simulated outage of the runtime, not by itself.
    Exited {
        exit_code: i64,
        interrupted: bool,
    },
}

#[derive(Debug)]
struct Instance {
    spec: InstanceSpec,
    state: State,
    started_at: Option<Timestamp>,
    port: Option<u16>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    instances: BTreeMap<String, Instance>,
    behaviours: BTreeMap<DeploymentId, Behaviour>,
    /// Who holds the node name (`claim`).
    lease: Option<Holder>,
    calls: Vec<Call>,
    unavailable: Option<String>,
}

/// The fake runtime; clones share state.
#[derive(Clone)]
pub struct FakeRuntime {
    kind: RuntimeKind,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl FakeRuntime {
    pub fn new(kind: RuntimeKind) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            kind,
            inner: Arc::default(),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can only come from a failing test; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Scripts the instances of `deployment`.
    pub fn behave(&self, deployment: &DeploymentId, behaviour: Behaviour) {
        self.lock().behaviours.insert(deployment.clone(), behaviour);
    }

    /// Makes `list` fail (or work again with `None`).
    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.lock().unavailable = reason.map(str::to_owned);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Names of instances that exist now.
    pub fn instance_names(&self) -> Vec<String> {
        self.lock()
            .instances
            .values()
            .map(|i| i.spec.name())
            .collect()
    }

    /// Kills an instance as if it crashed.
    pub fn crash(&self, runtime_id: &str, exit_code: i64) {
        exit(&self.inner, &self.events, runtime_id, exit_code, false);
    }

    /// Stops every running instance the way a runtime going away does (a daemon restart):
    /// exit code 143, reported as interrupted.
    pub fn outage(&self) {
        let running: Vec<String> = self
            .lock()
            .instances
            .iter()
            .filter(|(_, i)| matches!(i.state, State::Running))
            .map(|(id, _)| id.clone())
            .collect();
        for id in running {
            exit(&self.inner, &self.events, &id, 143, true);
        }
    }

    fn behaviour(inner: &Inner, deployment: &DeploymentId) -> Behaviour {
        inner
            .behaviours
            .get(deployment)
            .cloned()
            .unwrap_or_default()
    }

    fn start_instance(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let behaviour = {
            let instance = inner
                .instances
                .get(runtime_id)
                .ok_or_else(|| RuntimeError::NotFound(runtime_id.to_owned()))?;
            Self::behaviour(&inner, &instance.spec.deployment)
        };
        let instance = inner
            .instances
            .get_mut(runtime_id)
            .ok_or_else(|| RuntimeError::NotFound(runtime_id.to_owned()))?;
        instance.state = State::Running;
        instance.started_at = Some(crate::clock::now());
        if let Some(delay) = behaviour.reachable_after {
            instance.tasks.push(tokio::spawn(serve(
                self.inner.clone(),
                runtime_id.to_owned(),
                delay,
                behaviour.http_status,
            )));
        }
        if let Some((after, code)) = behaviour.exit_after {
            let (inner, events, id) = (
                self.inner.clone(),
                self.events.clone(),
                runtime_id.to_owned(),
            );
            instance.tasks.push(tokio::spawn(async move {
                tokio::time::sleep(after.to_std()).await;
                exit(&inner, &events, &id, code, false);
            }));
        }
        Ok(())
    }
}

/// Ends an instance: listener closed, state exited, a wake-up sent.
fn exit(
    inner: &Arc<Mutex<Inner>>,
    events: &broadcast::Sender<RuntimeEvent>,
    runtime_id: &str,
    exit_code: i64,
    interrupted: bool,
) {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(instance) = inner.instances.get_mut(runtime_id) {
        if matches!(instance.state, State::Running) {
            instance.state = State::Exited {
                exit_code,
                interrupted,
            };
            instance.port = None;
            // Aborting the task that runs this (an `exit_after` timer) is harmless: it is
            // about to finish anyway.
            for task in instance.tasks.drain(..) {
                task.abort();
            }
            let _ = events.send(RuntimeEvent {
                runtime_id: runtime_id.to_owned(),
                what: format!("die {exit_code}"),
            });
        }
    }
}

/// Opens the instance's listener after `delay` and answers every request with `status`.
async fn serve(inner: Arc<Mutex<Inner>>, runtime_id: String, delay: Duration, status: u16) {
    tokio::time::sleep(delay.to_std()).await;
    let Ok(listener) = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await else {
        return;
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    if let Some(instance) = inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .instances
        .get_mut(&runtime_id)
    {
        instance.port = Some(addr.port());
    }
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 {status} Fake\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        });
    }
}

impl Runtime for FakeRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(Call::List);
            if let Some(reason) = &inner.unavailable {
                return Err(RuntimeError::Unavailable(reason.clone()));
            }
            let listed = inner
                .instances
                .iter()
                .map(|(id, i)| ObservedInstance {
                    runtime: self.kind,
                    runtime_id: id.clone(),
                    deployment: i.spec.deployment.clone(),
                    generation: i.spec.generation,
                    ordinal: i.spec.ordinal,
                    run: i.spec.run,
                    template: i.spec.template.clone(),
                    phase: match i.state {
                        State::Created => Phase::Created,
                        State::Running => Phase::Running,
                        State::Exited { exit_code, .. } => Phase::Exited {
                            exit_code,
                            oom_killed: false,
                        },
                    },
                    ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    started_at: i.started_at,
                    interrupted: matches!(
                        i.state,
                        State::Exited {
                            interrupted: true,
                            ..
                        }
                    ),
                    last_output: None,
                })
                .collect();
            Ok(listed)
        })
    }

    fn create<'a>(&'a self, spec: &'a InstanceSpec) -> RuntimeFuture<'a, String> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(Call::Create(spec.name()));
            let mut behaviour = Self::behaviour(&inner, &spec.deployment);
            if let Some(error) = behaviour.create_errors.pop_front() {
                inner.behaviours.insert(spec.deployment.clone(), behaviour);
                return Err(error);
            }
            if let Some(error) = behaviour.always_fail_create {
                return Err(error);
            }
            // The fields the name is made of, compared without formatting one name per
            // instance (benchmarks create thousands).
            if inner.instances.values().any(|i| {
                (&i.spec.deployment, i.spec.generation, i.spec.ordinal)
                    == (&spec.deployment, spec.generation, spec.ordinal)
            }) {
                return Err(RuntimeError::CreateRejected(format!(
                    "name {} is already in use",
                    spec.name()
                )));
            }
            inner.next_id += 1;
            let id = format!("fake-{}", inner.next_id);
            let instance = Instance {
                spec: spec.clone(),
                state: State::Created,
                started_at: None,
                port: None,
                tasks: Vec::new(),
            };
            inner.instances.insert(id.clone(), instance);
            Ok(id)
        })
    }

    fn start<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.lock().calls.push(Call::Start(runtime_id.to_owned()));
            self.start_instance(runtime_id)
        })
    }

    fn stop<'a>(&'a self, runtime_id: &'a str, _grace: Duration) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            self.lock().calls.push(Call::Stop(runtime_id.to_owned()));
            exit(&self.inner, &self.events, runtime_id, 143, false);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(Call::Remove(runtime_id.to_owned()));
            let instance = inner
                .instances
                .remove(runtime_id)
                .ok_or_else(|| RuntimeError::NotFound(runtime_id.to_owned()))?;
            for task in instance.tasks {
                task.abort();
            }
            Ok(())
        })
    }

    fn exec<'a>(
        &'a self,
        runtime_id: &'a str,
        _command: &'a [String],
        _timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(Call::Exec(runtime_id.to_owned()));
            let instance = inner
                .instances
                .get(runtime_id)
                .ok_or_else(|| RuntimeError::NotFound(runtime_id.to_owned()))?;
            let exit_code = Self::behaviour(&inner, &instance.spec.deployment).exec_exit_code;
            Ok(ExecOutput {
                exit_code,
                output: String::new(),
            })
        })
    }

    fn logs(&self, runtime_id: &str, _options: super::LogOptions) -> super::LogStream {
        // The fake runs nothing: an instance's only output is the line that it exists.
        let known = self.lock().instances.contains_key(runtime_id);
        if !known {
            return super::no_logs(RuntimeError::NotFound(runtime_id.to_owned()));
        }
        let line = format!("fake instance {runtime_id}\n").into_bytes();
        Box::pin(futures_util::stream::once(async move { Ok(line) }))
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn claim<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.lock();
            let found = inner.lease.clone().or_else(|| Some(holder.clone()));
            let liveness = found.as_ref().map_or(Liveness::Unknown, Holder::liveness);
            match lease::decide(found, holder, liveness) {
                Decision::Held | Decision::TakeOver(_) => {
                    inner.lease = Some(holder.clone());
                    Ok(())
                }
                Decision::Refuse(other) => Err(RuntimeError::Held {
                    node: "fake".into(),
                    holder: other.describe(),
                    remedy: "stop the other agent".into(),
                }),
            }
        })
    }

    fn release<'a>(&'a self, holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.lock();
            if inner.lease.as_ref().is_some_and(|h| h.id == holder.id) {
                inner.lease = None;
            }
            Ok(())
        })
    }

    fn endpoint(&self, instance: &ObservedInstance, _port: u16) -> Option<SocketAddr> {
        let inner = self.lock();
        let port = inner.instances.get(&instance.runtime_id)?.port?;
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }
}
