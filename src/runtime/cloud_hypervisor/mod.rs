//! The Cloud Hypervisor runtime, being built (issue "Cloud Hypervisor runtime"): one
//! `cloud-hypervisor --api-socket` process per instance, driven over its REST API. What is
//! here so far is the pure core the adapter will stand on, each part table-tested:
//! - `net`: each instance's /30 of the configured range and its tap name (stable, collision
//!   checked);
//! - `api`: the API types keel sends and reads, and the `vm.create` body of an instance;
//! - `errors`: the VMM's refusals classified into runtime errors (and so statuses);
//! - `client`: HTTP/1.1 to a VMM's API socket;
//! - `runtime`: `CloudHypervisorRuntime`, the `Runtime` itself (a VMM process per instance,
//!   supervised, adopted after a restart), tested on the fake VMM (`src/bin/keel-fake-vmm.rs`).
//!
//! Not yet done: the agent does not enable this runtime (no `[cloud_hypervisor]` settings, no
//! wiring in `app`), `keel validate` does not refuse command probes for microVMs, and the
//! real-VM boots in a network namespace are not tested. Until then a `cloud-hypervisor`
//! deployment holds with "runtime cloud-hypervisor is not enabled on this host".

pub mod api;
pub mod client;
pub mod errors;
pub mod net;
mod runtime;

pub use runtime::{CloudHypervisorRuntime, Settings};
