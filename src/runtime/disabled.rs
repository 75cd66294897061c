//! A runtime this host cannot run (its binary is missing, `/dev/kvm` is not usable, …),
//! registered so that its deployments hold — listed as unavailable, with the reason in their
//! `waiting_on` and in `GET /v1/runtimes` — instead of failing, and nothing else is touched.

use tokio::sync::broadcast;

use crate::model::manifest::RuntimeKind;
use crate::model::observed::ObservedInstance;
use crate::model::units::Duration;

use super::lease::Holder;
use super::{ExecOutput, InstanceSpec, Runtime, RuntimeError, RuntimeEvent, RuntimeFuture};

pub struct Disabled {
    kind: RuntimeKind,
    reason: String,
    events: broadcast::Sender<RuntimeEvent>,
}

impl Disabled {
    pub fn new(kind: RuntimeKind, reason: String) -> Self {
        let (events, _) = broadcast::channel(1);
        Self {
            kind,
            reason,
            events,
        }
    }

    fn refuse<T>(&self) -> Result<T, RuntimeError> {
        Err(RuntimeError::NotEnabled(self.kind))
    }
}

impl Runtime for Disabled {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn list(&self) -> RuntimeFuture<'_, Vec<ObservedInstance>> {
        Box::pin(async move { Err(RuntimeError::Disabled(self.reason.clone())) })
    }

    fn create<'a>(&'a self, _spec: &'a InstanceSpec) -> RuntimeFuture<'a, String> {
        Box::pin(async move { self.refuse() })
    }

    fn start<'a>(&'a self, _runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move { self.refuse() })
    }

    fn stop<'a>(&'a self, _runtime_id: &'a str, _grace: Duration) -> RuntimeFuture<'a, ()> {
        Box::pin(async move { self.refuse() })
    }

    fn remove<'a>(&'a self, _runtime_id: &'a str) -> RuntimeFuture<'a, ()> {
        Box::pin(async move { self.refuse() })
    }

    fn exec<'a>(
        &'a self,
        _runtime_id: &'a str,
        _command: &'a [String],
        _timeout: Duration,
    ) -> RuntimeFuture<'a, ExecOutput> {
        Box::pin(async move { self.refuse() })
    }

    fn logs(&self, _runtime_id: &str, _options: super::LogOptions) -> super::LogStream {
        super::no_logs(RuntimeError::NotEnabled(self.kind))
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn claim<'a>(&'a self, _holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        // Nothing runs here, so there is nothing to hold.
        Box::pin(async move { Ok(()) })
    }

    fn release<'a>(&'a self, _holder: &'a Holder) -> RuntimeFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
}
