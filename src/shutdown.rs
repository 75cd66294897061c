//! The agent's stop signal, shared by every long-running task (sources, the API server, the
//! notifier). `app` owns the `watch::Sender<bool>`; tasks hold receivers and wait on
//! [`stopped`] inside their `select!`. Invariant: once true, the signal never turns false; a
//! dropped sender counts as stopped so no task outlives the agent.

/// Resolves when `shutdown` turns true (or its sender is gone). Cancel-safe: it may lose a
/// `select!` and be called again without missing the signal.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
