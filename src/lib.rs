//! keel — a declarative GitOps agent for one host.
//!
//! ```text
//!  Git remote / directory
//!         │  (poll with a cheap remote-ref check · push-webhook receiver · inotify)
//!         ▼
//!  source ──SourceEvent──▶ ingest: manifest::load ──DesiredState | Vec<Diagnostic>
//!                                 │  diff(desired, stored) on a reader   [PURE]
//!                                 ▼
//!                      store (SQLite, one writer; depends only on `model`)
//!                      revision row · deployments upserted · outbox rows
//!                                 │
//!         ┌───────────────────────┘
//!         ▼
//!  reconcile::controller  (level-triggered: wake-ups from ingest, runtime events, probes, due timers; slow resync)
//!    observe → decide(&DecideInput) [PURE, wraps plan] → store (status + events + outbox, one
//!    tx) → executor (runs each complete action on the runtime it names)
//!         │                                      │
//!         ▼                                      ▼
//!  runtime::{docker, cloud_hypervisor}     notifier (webhooks, commit statuses) · api (read-only)
//! ```
//!
//! Layering (checked by `tests/architecture.rs`): `model` and `manifest` are pure (no I/O
//! crates); the pure `reconcile` files import only `model`; `store` imports only `model`;
//! `runtime` never imports `reconcile`, `store`, `api` or `notifier`; `source` reads files but
//! never parses YAML; only `config` reads the environment; only `app` names concrete adapters;
//! only `cli`/`main`/`app` use `anyhow`.
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
pub mod notifier;
pub mod probe;
pub mod reconcile;
pub mod runtime;
pub mod shutdown;
pub mod source;
pub mod store;
