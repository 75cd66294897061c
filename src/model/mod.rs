//! Domain types only: the manifest wire format, the validated desired state, diagnostics and
//! snapshots. No tokio, no I/O — every other layer speaks in these types.

pub mod desired;
pub mod diagnostic;
pub mod manifest;
pub mod snapshot;
pub mod units;
