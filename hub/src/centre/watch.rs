//! The watch streams: a snapshot, then each committed change.
//!
//! The watcher subscribes to the writer's broadcast *before* reading the snapshot, so a
//! change committed meanwhile is sent after it (perhaps twice: every change is the object
//! as it stands, read again, so a repeat is harmless) and none falls between. Each stream
//! has its own task and a small bounded queue to its client; a slow client makes only its
//! own task wait, never the writer, whose broadcast ring bounds what is kept for it. When
//! the ring ran past a watcher (`Lagged`) it gets a fresh snapshot instead of silently
//! missing changes.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use gatehouse_proto::{
    AlarmChange, AlarmUpdate, IncidentChange, IncidentUpdate, SnapshotComplete, SnapshotStart, alarm_update,
    incident_update,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::debug;

use super::convert;
use crate::alarms::StateFilter;
use crate::alarms::queries::{AlarmFilter, find_alarm, list_alarms};
use crate::incidents::queries::{IncidentFilter, list_incidents};
use crate::incidents::{IncidentState, queries as incident_q};
use crate::privacy::View;
use crate::store::{Context, Pool, StoreError};
use crate::stream::Stamped;

/// Updates queued to one client before its task waits for it.
const QUEUE: usize = 64;

/// What one kind of watch reads and how its updates look.
pub trait Watch: Send + Sync + 'static {
    type Update: Send + 'static;
    /// The live stream's event type this watch follows.
    const KIND: &'static str;
    /// The watched set now.
    fn snapshot(&self) -> impl Future<Output = Result<Vec<Self::Update>, StoreError>> + Send;
    /// Object `id` after `change`, or None when it is none of this watcher's business.
    fn change(&self, id: i64, change: &str) -> impl Future<Output = Result<Option<Self::Update>, StoreError>> + Send;
    fn start(reason: &str, missed: u64) -> Self::Update;
    fn complete(count: u64) -> Self::Update;
}

/// Runs `watch` for one client; `rx` must have been subscribed before this is called.
pub fn spawn<W: Watch>(
    watch: W,
    rx: broadcast::Receiver<Arc<Stamped>>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<W::Update, Status>> {
    let (tx, out) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let end = tokio::select! {
            end = run(&watch, rx, &tx) => end,
            _ = shutdown.cancelled() => End::Status(Status::unavailable("the hub is shutting down")),
        };
        match end {
            End::Gone => debug!(kind = W::KIND, "watcher went away"),
            End::Status(status) => {
                let _ = tx.send(Err(status)).await;
            }
        }
    });
    ReceiverStream::new(out)
}

enum End {
    /// The client went away.
    Gone,
    Status(Status),
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> Self {
        End::Status(convert::store(e))
    }
}

async fn send<U>(tx: &mpsc::Sender<Result<U, Status>>, update: U) -> Result<(), End> {
    tx.send(Ok(update)).await.map_err(|_| End::Gone)
}

async fn snapshot<W: Watch>(
    watch: &W,
    tx: &mpsc::Sender<Result<W::Update, Status>>,
    reason: &str,
    missed: u64,
) -> Result<(), End> {
    let items = watch.snapshot().await?;
    let count = items.len() as u64;
    send(tx, W::start(reason, missed)).await?;
    for item in items {
        send(tx, item).await?;
    }
    send(tx, W::complete(count)).await
}

async fn run<W: Watch>(
    watch: &W,
    mut rx: broadcast::Receiver<Arc<Stamped>>,
    tx: &mpsc::Sender<Result<W::Update, Status>>,
) -> End {
    let result: Result<(), End> = async {
        snapshot(watch, tx, "connected", 0).await?;
        loop {
            let event = tokio::select! {
                _ = tx.closed() => return Err(End::Gone),
                event = rx.recv() => event,
            };
            match event {
                Ok(ev) if ev.event.kind == W::KIND => {
                    if let Some(update) = watch.change(ev.event.id, &ev.event.change).await? {
                        send(tx, update).await?;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    snapshot(watch, tx, "lagged", missed).await?;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(End::Status(Status::unavailable("the hub's writer has stopped")));
                }
            }
        }
    }
    .await;
    match result {
        Ok(()) => End::Gone,
        Err(end) => end,
    }
}

/// `WatchAlarms`: standing alarms (`AlarmRow::stands`).
pub struct Alarms {
    pub pool: Pool,
    pub estate: Option<String>,
    /// Residents' personal data as the watcher's role may see it.
    pub view: View,
    /// The estates the caller may see (None: all).
    pub visible: Option<Arc<HashSet<String>>>,
}

fn hidden(visible: &Option<Arc<HashSet<String>>>, estate: &str) -> bool {
    visible.as_ref().is_some_and(|v| !v.contains(estate))
}

impl Watch for Alarms {
    type Update = AlarmUpdate;
    const KIND: &'static str = "alarm";

    async fn snapshot(&self) -> Result<Vec<AlarmUpdate>, StoreError> {
        let filter = AlarmFilter {
            estate: self.estate.clone(),
            state: Some(StateFilter::Standing),
            limit: i64::MAX,
            ..AlarmFilter::default()
        };
        let rows = list_alarms(&self.pool, &filter).await?;
        // Oldest change first: the order they came to stand as they do.
        Ok(rows
            .iter()
            .rev()
            .filter(|r| !hidden(&self.visible, &r.estate_id))
            .map(|r| AlarmUpdate {
                update: Some(alarm_update::Update::Snapshot(convert::alarm(r, &self.view))),
            })
            .collect())
    }

    async fn change(&self, id: i64, change: &str) -> Result<Option<AlarmUpdate>, StoreError> {
        let Some(row) = find_alarm(&self.pool, id).await? else {
            return Ok(None);
        };
        if self.estate.as_ref().is_some_and(|e| *e != row.estate_id) || hidden(&self.visible, &row.estate_id) {
            return Ok(None);
        }
        Ok(Some(AlarmUpdate {
            update: Some(alarm_update::Update::Change(AlarmChange {
                change: change.to_owned(),
                alarm: Some(convert::alarm(&row, &self.view)),
                removed: !row.stands(),
            })),
        }))
    }

    fn start(reason: &str, missed: u64) -> AlarmUpdate {
        AlarmUpdate {
            update: Some(alarm_update::Update::SnapshotStart(SnapshotStart {
                reason: reason.into(),
                missed,
            })),
        }
    }

    fn complete(count: u64) -> AlarmUpdate {
        AlarmUpdate {
            update: Some(alarm_update::Update::SnapshotComplete(SnapshotComplete { count })),
        }
    }
}

/// `WatchIncidents`: open incidents (not closed, not a false alarm).
pub struct Incidents {
    pub pool: Pool,
    pub estate: Option<String>,
    /// The estates the caller may see (None: all).
    pub visible: Option<Arc<HashSet<String>>>,
    pub response_target_ms: i64,
}

impl Incidents {
    /// The incident with its procedure, as the command centre shows it.
    pub async fn read(
        pool: &Pool,
        id: i64,
        response_target_ms: i64,
    ) -> Result<Option<(gatehouse_proto::Incident, bool)>, StoreError> {
        let mut conn = pool.acquire().await.context(|| format!("reading incident {id}"))?;
        let Some(row) = incident_q::get_incident(&mut conn, id).await? else {
            return Ok(None);
        };
        let steps = incident_q::incident_steps(&mut conn, id).await?;
        let open = IncidentState::parse(&row.state).is_none_or(|s| !s.is_terminal());
        Ok(Some((convert::incident(&row, &steps, response_target_ms), open)))
    }
}

impl Watch for Incidents {
    type Update = IncidentUpdate;
    const KIND: &'static str = "incident";

    async fn snapshot(&self) -> Result<Vec<IncidentUpdate>, StoreError> {
        let filter = IncidentFilter {
            estate: self.estate.clone(),
            open: Some(true),
            limit: i64::MAX,
            ..IncidentFilter::default()
        };
        let rows = list_incidents(&self.pool, &filter).await?;
        let mut conn = self.pool.acquire().await.context(|| "reading procedures".into())?;
        let mut items = Vec::with_capacity(rows.len());
        // Oldest first, like the alarms.
        for row in rows.iter().rev().filter(|r| !hidden(&self.visible, &r.estate_id)) {
            let steps = incident_q::incident_steps(&mut conn, row.id).await?;
            items.push(IncidentUpdate {
                update: Some(incident_update::Update::Snapshot(convert::incident(
                    row,
                    &steps,
                    self.response_target_ms,
                ))),
            });
        }
        Ok(items)
    }

    async fn change(&self, id: i64, change: &str) -> Result<Option<IncidentUpdate>, StoreError> {
        let Some((incident, open)) = Self::read(&self.pool, id, self.response_target_ms).await? else {
            return Ok(None);
        };
        if self.estate.as_ref().is_some_and(|e| *e != incident.estate_id) || hidden(&self.visible, &incident.estate_id)
        {
            return Ok(None);
        }
        Ok(Some(IncidentUpdate {
            update: Some(incident_update::Update::Change(IncidentChange {
                change: change.to_owned(),
                incident: Some(incident),
                removed: !open,
            })),
        }))
    }

    fn start(reason: &str, missed: u64) -> IncidentUpdate {
        IncidentUpdate {
            update: Some(incident_update::Update::SnapshotStart(SnapshotStart {
                reason: reason.into(),
                missed,
            })),
        }
    }

    fn complete(count: u64) -> IncidentUpdate {
        IncidentUpdate {
            update: Some(incident_update::Update::SnapshotComplete(SnapshotComplete { count })),
        }
    }
}
