//! The loss check: every stored load event read back from the hub's database and counted
//! against the devices' ledgers — lost, duplicated, unexpected — with the latencies of the
//! first copy of each. Reads only.

use std::collections::HashMap;

use anyhow::Context as _;
use gatehouse_proto::{self as pb, event::Body};
use hdrhistogram::Histogram;
use prost::Message as _;
use sqlx::sqlite::SqlitePool;

use crate::harness::{latency::LATENCY_MAX_MS, tally::Tally};

/// Stored load events: the body kinds the load devices produce (intercom `call_answered`,
/// door `access`).
pub(super) const COUNT_LOAD_EVENTS: &str = "SELECT COUNT(*) FROM events WHERE body_kind IN ('intercom', 'access')";
const READ_LOAD_EVENTS: &str = "SELECT device_id, occurred_at_ms, received_at_ms, ingested_at_ms, payload \
     FROM events WHERE body_kind IN ('intercom', 'access')";

/// What the hub stored, against what the devices sent.
pub(super) struct Analysis {
    pub(super) stored: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) unexpected: u64,
    pub(super) span_s: f64,
    pub(super) e2e: Histogram<u64>,
    pub(super) to_gateway: Histogram<u64>,
    pub(super) to_hub: Histogram<u64>,
}

/// Reads every stored load event and checks it against what was sent.
pub(super) async fn analyse(db: &SqlitePool, tallies: &[Tally]) -> anyhow::Result<Analysis> {
    // Per device: how many stored copies of each sequence number.
    let mut copies: HashMap<&str, Vec<u32>> = tallies
        .iter()
        .map(|t| (t.device.as_str(), vec![0u32; t.next as usize]))
        .collect();
    // Fixed bounds: an auto-resizing histogram silently clamps `saturating_record` at its
    // current (tiny) top.
    let histogram = || Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS, 3).context("creating a histogram");
    let (mut e2e, mut to_gateway, mut to_hub) = (histogram()?, histogram()?, histogram()?);
    let (mut stored, mut unexpected) = (0u64, 0u64);
    let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);

    let rows: Vec<(String, i64, i64, i64, Vec<u8>)> = sqlx::query_as(READ_LOAD_EVENTS)
        .fetch_all(db)
        .await
        .context("reading the stored load events")?;
    for (device, occurred, received, ingested, payload) in rows {
        stored += 1;
        let tag = match pb::Event::decode(payload.as_slice()) {
            Ok(event) => match event.body {
                Some(Body::Intercom(i)) => i.call_id,
                Some(Body::Access(a)) => a.credential,
                _ => String::new(),
            },
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "a stored payload does not decode");
                String::new()
            }
        };
        let seq = tag
            .rsplit_once('/')
            .filter(|(d, _)| *d == device)
            .and_then(|(_, n)| n.parse::<usize>().ok());
        let Some(slot) = seq.and_then(|n| copies.get_mut(device.as_str())?.get_mut(n)) else {
            unexpected += 1;
            continue;
        };
        *slot += 1;
        if *slot > 1 {
            continue;
        }
        first_ms = first_ms.min(occurred);
        last_ms = last_ms.max(ingested);
        let ms = |from: i64, to: i64| u64::try_from(to - from).unwrap_or(0);
        e2e.saturating_record(ms(occurred, ingested));
        to_gateway.saturating_record(ms(occurred, received));
        to_hub.saturating_record(ms(received, ingested));
    }

    let (mut lost, mut duplicated) = (0u64, 0u64);
    for t in tallies {
        let Some(c) = copies.get(t.device.as_str()) else {
            continue;
        };
        for (n, &k) in c.iter().enumerate() {
            if k == 0 && !t.failed.contains(&(n as u64)) {
                lost += 1;
            }
            duplicated += u64::from(k.saturating_sub(1));
        }
    }
    Ok(Analysis {
        stored,
        lost,
        duplicated,
        unexpected,
        span_s: if last_ms >= first_ms {
            (last_ms - first_ms) as f64 / 1000.0
        } else {
            0.0
        },
        e2e,
        to_gateway,
        to_hub,
    })
}
