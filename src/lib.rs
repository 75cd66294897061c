//! keel — a declarative GitOps agent for one host.
//!
//! ```text
//!  Git remote / directory
//!         │  (poll with a cheap remote-ref check · push-webhook receiver · inotify)
//!         ▼
//!  source ──entries{path, bytes}──▶ manifest::load ──DesiredState | Vec<Diagnostic>
//!                                                  │
//!                                                  ▼
//!                                   store (SQLite, one writer)
//!                      revision row · plan = diff(desired, stored) · deployments upserted
//!                                                  │
//!         ┌────────────────────────────────────────┘
//!         ▼
//!  reconcile::controller  (level-triggered: tick + wake-ups from source, runtime events, probes)
//!    observe → plan(&PlanInput) [PURE] → executor → store (status + events + outbox, one tx)
//!         │                                      │
//!         ▼                                      ▼
//!  runtime::{docker, cloud_hypervisor}     notifier (webhooks, commit statuses) · api (read-only)
//! ```
//!
//! Layering: `model` and `manifest` are pure (no I/O crates); `source` reads files but never
//! parses YAML; only `cli`/`main` use `anyhow`.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod reconcile;
pub mod runtime;
pub mod source;
pub mod store;
