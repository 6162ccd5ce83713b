//! The outbox writer task: the one consumer of the adapters' queue (fed by
//! [`crate::adapters::EventSink`]). It commits many events to a transaction (group commit)
//! and tells each waiter after the commit; a failed write is retried, never dropped.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use gatehouse_proto as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Outbox;
use crate::health::Check;

/// One event handed to the writer, with whoever waits for its commit.
pub struct Append {
    pub event: pb::Event,
    /// Completed once the transaction holding the event has committed (or the event was shed
    /// from a full outbox: taken, like a reading dropped on arrival). Dropped unanswered when
    /// the writer stops first, so a waiter learns that the event was not stored.
    pub committed: Option<oneshot::Sender<()>>,
}

impl From<pb::Event> for Append {
    fn from(event: pb::Event) -> Self {
        Self { event, committed: None }
    }
}

/// Moves events from the adapters' queue into the outbox, many to a transaction (group
/// commit), and completes every waiter of a transaction after its commit. On a failed write
/// (disk full, I/O) it keeps the batch and retries: nothing is dropped, waiters keep
/// waiting, and the full queue pushes back on the adapters meanwhile. `check` (e.g.
/// `outbox.writer`) fails while writes fail, naming the error.
pub async fn run_writer(
    outbox: Outbox,
    mut rx: mpsc::Receiver<Append>,
    check: Option<Check>,
    shutdown: CancellationToken,
) {
    const MAX_BATCH: usize = 2_000;
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    let mut events: Vec<pb::Event> = Vec::with_capacity(MAX_BATCH);
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if batch.is_empty() {
            tokio::select! {
                n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
                _ = shutdown.cancelled() => break,
            }
            // The events move into `events` for the append; the waiters stay in `batch`.
            events.clear();
            events.extend(batch.iter_mut().map(|a| std::mem::take(&mut a.event)));
        }
        match outbox.append(&events).await {
            Ok(_) => {
                for a in batch.drain(..) {
                    if let Some(done) = a.committed {
                        let _ = done.send(());
                    }
                }
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        failed_for_s = since.elapsed().as_secs(),
                        "outbox writes succeed again; waiting events committed"
                    );
                }
                if let Some(c) = &check {
                    c.ok();
                }
            }
            Err(e) => {
                outbox.metrics.outbox_write_errors.fetch_add(1, Relaxed);
                failing_since.get_or_insert_with(std::time::Instant::now);
                tracing::error!(error = %e, pending = events.len(),
                    "outbox write failed (disk full? I/O error?); nothing is acknowledged to devices until it succeeds; retrying in 1 s");
                if let Some(c) = &check {
                    c.fail(format!("outbox writes fail: {e}"));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    // Drain what the adapters already handed over before stopping.
    rx.close();
    if !batch.is_empty() {
        finish(&outbox, &events, batch.drain(..)).await;
    }
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        events.clear();
        events.extend(batch.iter_mut().map(|a| std::mem::take(&mut a.event)));
        finish(&outbox, &events, batch.drain(..)).await;
    }
}

/// One last append at shutdown; waiters are told only when it committed.
async fn finish(outbox: &Outbox, events: &[pb::Event], waiters: impl Iterator<Item = Append>) {
    match outbox.append(events).await {
        Ok(_) => {
            for a in waiters {
                if let Some(done) = a.committed {
                    let _ = done.send(());
                }
            }
        }
        Err(e) => tracing::error!(error = %e, lost = events.len(), "outbox write failed during shutdown"),
    }
}
