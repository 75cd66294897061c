//! The Cloud Hypervisor runtime: one `cloud-hypervisor --api-socket` process (VMM) per
//! instance, driven over its REST API. Its parts:
//! - `net` (PURE): each instance's /30 of the configured range and its tap name (stable across
//!   restarts, collision checked);
//! - `api` (PURE): the API types keel sends and reads, and the `vm.create` body of an instance;
//! - `errors` (PURE): the VMM's refusals classified into runtime errors (and so statuses);
//! - `client`: HTTP/1.1 to a VMM's API socket;
//! - `runtime`: `CloudHypervisorRuntime`, the `Runtime` itself — a supervised VMM per instance
//!   in its own directory, adopted after an agent restart, stopped by escalation, removed with
//!   its tap, disk copy, logs and socket.
//!
//! Policy stays in the planner: the adapter reports (a powered-off or dead VMM is an exited
//! instance, with its serial console's last lines), the planner decides. The agent enables
//! this runtime when the binary exists and `/dev/kvm` is usable (`app`); the fast tests run it
//! on a fake VMM (`src/bin/keel-fake-vmm.rs`), `.ci/run` also on the real one.

pub mod api;
pub mod client;
pub mod errors;
pub mod net;
mod runtime;

pub use runtime::{CloudHypervisorRuntime, Settings};
