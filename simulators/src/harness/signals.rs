//! SIGTERM stops a run like Ctrl-C does, so its children are dropped (killed and reaped)
//! instead of orphaned.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on SIGTERM.
#[cfg(unix)]
pub(crate) fn spawn_sigterm_listener(stop: CancellationToken) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
    }
}

#[cfg(not(unix))]
pub(crate) fn spawn_sigterm_listener(_stop: CancellationToken) {}
