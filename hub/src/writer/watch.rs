//! The stall watch: a gateway connected and holding events the hub has not stored, whose
//! stored sequence stands still for `ingest.stall_after_s`, raises `gateway_stalled`
//! (through the engine); progress clears it. Also the refusal of a batch (counted, logged at
//! most once a minute per gateway, alarmed).

use std::time::{Duration, Instant};

use tracing::warn;

use super::Writer;
use super::handle::Holds;
use super::seqs::Rejected;
use crate::store::{self, StoreError};

/// The progress watch of one gateway: is it connected, holding events the hub has not
/// stored, while the stored sequence stands still?
#[derive(Debug, Clone)]
pub(super) struct Watch {
    pub(super) estate: String,
    pub(super) holds: Holds,
    /// When the stored sequence last advanced, or the gateway last had nothing pending. A
    /// reconnect does not move it, so a gateway that reconnects in a loop still stalls.
    pub(super) progress_at: i64,
    pub(super) stalled: bool,
    /// When its stream last ended. A gateway back after a real absence (longer than half
    /// `stall_after_s`) gets a fresh start; one reconnecting in a loop does not.
    pub(super) disconnected_at: Option<i64>,
}

impl Writer {
    /// Records what a gateway says it holds; caught up (nothing pending, or nothing the hub
    /// has not stored) counts as progress.
    pub(super) async fn observe_holds(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        estate: Option<&str>,
        holds: Holds,
        now: i64,
    ) -> Result<(), StoreError> {
        let stored = u64::try_from(self.last_seq.get(gateway).copied().unwrap_or(0)).unwrap_or(0);
        let w = match (self.watch.get_mut(gateway), estate) {
            (Some(w), _) => w,
            (None, Some(estate)) => self.watch.entry(gateway.to_owned()).or_insert(Watch {
                estate: estate.to_owned(),
                holds,
                progress_at: now,
                stalled: false,
                disconnected_at: None,
            }),
            (None, None) => return Ok(()),
        };
        if let Some(estate) = estate {
            // A Hello: only an absence longer than a reconnect loop's backoff restarts the clock.
            estate.clone_into(&mut w.estate);
            let absence = i64::from(self.limits.stall_after_s) * 500;
            if w.disconnected_at.take().is_some_and(|t| now - t >= absence) {
                w.progress_at = now;
            }
        }
        w.holds = holds;
        if holds.pending == 0 || holds.last_seq <= stored {
            self.progressed(conn, gateway, now).await?;
        }
        Ok(())
    }

    /// The gateway's stored sequence advanced (or it has nothing to send): clears a stall.
    pub(super) async fn progressed(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(w) = self.watch.get_mut(gateway) else {
            return Ok(());
        };
        w.progress_at = now;
        if w.stalled {
            w.stalled = false;
            let estate = w.estate.clone();
            self.engine.gateway_progressing(conn, gateway, &estate, now).await?;
        }
        Ok(())
    }

    /// Raises `gateway_stalled` for every connected gateway that holds events the hub has
    /// not stored and whose stored sequence has stood still for `ingest.stall_after_s`.
    pub(super) async fn find_stalled(&mut self, conn: &mut store::Conn, now: i64) -> Result<(), StoreError> {
        let after_ms = i64::from(self.limits.stall_after_s) * 1000;
        let stalled: Vec<(String, String, Holds, u64)> = self
            .watch
            .iter()
            .filter(|(g, w)| {
                // Connected, or gone so briefly that it is reconnecting in a loop.
                let present =
                    self.current_conn.contains_key(*g) || w.disconnected_at.is_some_and(|t| now - t < after_ms / 2);
                !w.stalled && present && now - w.progress_at >= after_ms
            })
            .filter_map(|(g, w)| {
                let stored = u64::try_from(self.last_seq.get(g).copied().unwrap_or(0)).unwrap_or(0);
                (w.holds.pending > 0 && w.holds.last_seq > stored)
                    .then(|| (g.clone(), w.estate.clone(), w.holds, stored))
            })
            .collect();
        for (gateway, estate, holds, stored) in stalled {
            let message = format!(
                "Gateway {gateway} connected but making no progress: it holds {} events (up to seq {}), the hub has stored up to {stored}, nothing new for {} s",
                holds.pending, holds.last_seq, self.limits.stall_after_s
            );
            self.stall(conn, &gateway, &estate, &message, now).await?;
        }
        Ok(())
    }

    pub(super) async fn stall(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        estate: &str,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.watch.get_mut(gateway) {
            w.stalled = true;
        }
        self.engine.gateway_stalled(conn, gateway, estate, message, now).await
    }

    /// Counts, logs (once a minute per gateway) and alarms a refused batch.
    pub(super) async fn reject(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        rejected: &Rejected,
        now: i64,
    ) -> Result<(), StoreError> {
        self.metrics.batch_rejected(rejected.kind);
        let quiet = self
            .rejection_logged
            .get(gateway)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if !quiet {
            if self.rejection_logged.len() > 10_000 {
                self.rejection_logged.clear();
            }
            self.rejection_logged.insert(gateway.to_owned(), Instant::now());
            warn!(gateway, first_seq = rejected.first_seq, last_seq = rejected.last_seq, reason = rejected.kind.as_str(), detail = %rejected.detail,
                "gateway batch refused; its stored sequence is unchanged (logged at most once a minute per gateway)");
        }
        let Some(estate) = self.watch.get(gateway).map(|w| w.estate.clone()) else {
            return Ok(());
        };
        let message = format!("Gateway {gateway}: a batch was refused and nothing of it stored: {rejected}");
        self.stall(conn, gateway, &estate, &message, now).await
    }
}
