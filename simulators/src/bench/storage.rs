//! Phase 2 of the bench: batched SQLite inserts of load rows through the hub's own
//! statement (`events::queries::insert_events`) and pragmas, the storage limit.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_hub::{config::DatabaseUrl, events, store};
use gatehouse_proto as pb;
use prost::Message as _;

/// Rows committed per second over `duration`, `rows_per_commit` to a transaction.
pub(super) async fn storage(path: &std::path::Path, rows_per_commit: usize, duration: Duration) -> anyhow::Result<f64> {
    let pool = store::open(&DatabaseUrl::Sqlite(format!("sqlite://{}", path.display())))
        .await
        .context("opening the storage bench database")?;
    let mut partitions = events::partitions::Partitions::load(&pool, 86_400_000).await?;
    let mut seq = 0i64;
    let mut stored = 0u64;
    let began = Instant::now();
    while began.elapsed() < duration {
        let now = pb::now_ms();
        let rows: Vec<events::queries::EventRow> = (0..rows_per_commit)
            .map(|_| {
                seq += 1;
                let gw = format!("gw-load-{}", seq % 1000);
                let event = pb::Event {
                    event_id: format!("{gw}-{seq}"),
                    seq: seq as u64,
                    gateway_id: gw.clone(),
                    estate_id: format!("load-{}", seq % 1000),
                    device_id: format!("{gw}-dev-0"),
                    device_kind: pb::DeviceKind::Door as i32,
                    area: "load".into(),
                    occurred_at_ms: now,
                    received_at_ms: now,
                    trace_context: Default::default(),
                    body: Some(pb::event::Body::Access(pb::AccessEvent {
                        door: "load-door".into(),
                        result: pb::AccessResult::Granted as i32,
                        credential: format!("{gw}-dev-0/{seq}"),
                        reason: String::new(),
                    })),
                };
                events::queries::EventRow {
                    payload: event.encode_to_vec(),
                    gateway_id: event.gateway_id,
                    seq,
                    event_id: event.event_id,
                    estate_id: event.estate_id,
                    device_id: event.device_id,
                    device_kind: "door",
                    area: event.area,
                    occurred_at_ms: now,
                    received_at_ms: now,
                    body_kind: "access",
                }
            })
            .collect();
        let mut tx = pool.begin().await?;
        let partition = partitions.partition_for(&mut tx, now).await?;
        stored += events::queries::insert_events(&mut tx, &partition, &rows, now).await?;
        tx.commit().await?;
    }
    let rate = stored as f64 / began.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}
