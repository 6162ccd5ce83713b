//! Scraping a child's Prometheus `/metrics`, and the hub's writer figures read from it.

use std::collections::HashMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct HubFigures {
    pub events_ingested: Option<u64>,
    pub duplicates_dropped: Option<u64>,
    pub batches_committed: Option<u64>,
    pub commits: Option<u64>,
    /// Mean writer transaction time.
    pub commit_mean_ms: Option<f64>,
}

/// Prometheus text from `http://addr/metrics`, as name (with labels) → value; `None` if the
/// scrape failed.
pub(crate) async fn scrape(client: &reqwest::Client, addr: &str) -> Option<HashMap<String, f64>> {
    let text = match client.get(format!("{addr}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.ok()?,
        Ok(r) => {
            tracing::warn!(%addr, status = %r.status(), "metrics scrape refused");
            return None;
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "metrics scrape failed");
            return None;
        }
    };
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// The hub's writer figures from a scrape of its `/metrics` (all unknown without one).
pub(crate) fn hub_figures(m: Option<&HashMap<String, f64>>) -> HubFigures {
    let hget = |name: &str| m.and_then(|m| m.get(name).copied());
    HubFigures {
        events_ingested: hget("gatehouse_hub_events_ingested_total").map(|v| v as u64),
        duplicates_dropped: hget("gatehouse_hub_duplicates_dropped_total").map(|v| v as u64),
        batches_committed: hget("gatehouse_hub_batches_committed_total").map(|v| v as u64),
        commits: hget("gatehouse_hub_commit_seconds_count").map(|v| v as u64),
        commit_mean_ms: match (
            hget("gatehouse_hub_commit_seconds_sum"),
            hget("gatehouse_hub_commit_seconds_count"),
        ) {
            (Some(sum), Some(n)) if n > 0.0 => Some(sum / n * 1000.0),
            _ => None,
        },
    }
}
