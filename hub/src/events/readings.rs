//! Pure: stored point and status events (encoded `gatehouse.v1.Event` payloads) → what the
//! board shows — the last reading of each point, a device's last status, and a point's
//! trend thinned to a bounded number of samples. No I/O; the rows come from
//! [`super::queries`].

use std::collections::BTreeMap;

use gatehouse_proto::event::Body;
use gatehouse_proto::{Event, Quality};
use prost::Message as _;

/// One decoded point reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub point: String,
    pub value: f64,
    pub unit: String,
    pub quality: &'static str,
    pub at_ms: i64,
}

/// The reading a payload carries; None when it is not a point reading or does not decode
/// (a row written by another version: skipped, never a failed answer).
pub fn reading(payload: &[u8], at_ms: i64) -> Option<Reading> {
    match Event::decode(payload).ok()?.body? {
        Body::Point(p) => Some(Reading {
            quality: quality_name(p.quality()),
            point: p.point,
            value: p.value,
            unit: p.unit,
            at_ms,
        }),
        _ => None,
    }
}

/// The `online` flag of a status payload; None when it is not a status event.
pub fn online(payload: &[u8]) -> Option<bool> {
    match Event::decode(payload).ok()?.body? {
        Body::Status(s) => Some(s.online),
        _ => None,
    }
}

pub fn quality_name(q: Quality) -> &'static str {
    match q {
        Quality::Good => "good",
        Quality::Bad => "bad",
        Quality::Uncertain => "uncertain",
        Quality::Unspecified => "unspecified",
    }
}

/// The newest reading of each point, from readings given newest first.
pub fn latest(newest_first: impl IntoIterator<Item = Reading>) -> BTreeMap<String, Reading> {
    let mut out = BTreeMap::new();
    for r in newest_first {
        out.entry(r.point.clone()).or_insert(r);
    }
    out
}

/// One point's trend: its unit (the newest reading's) and `(at_ms, value)` oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub unit: String,
    pub samples: Vec<(i64, f64)>,
}

/// Groups readings (oldest first) by point, keeping `only` if given, and thins each series
/// to at most `max` samples: the window `[from_ms, to_ms]` is cut into `max` equal buckets
/// and each keeps its last reading (a chart then shows where the value ended up, and a
/// step or a spike's end is never averaged away).
pub fn series(
    oldest_first: impl IntoIterator<Item = Reading>,
    only: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    max: usize,
) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for r in oldest_first {
        if only.is_some_and(|p| p != r.point) {
            continue;
        }
        let s = out.entry(r.point).or_default();
        s.unit = r.unit;
        s.samples.push((r.at_ms, r.value));
    }
    for s in out.values_mut() {
        s.samples = thin(&s.samples, from_ms, to_ms, max);
    }
    out
}

fn thin(samples: &[(i64, f64)], from_ms: i64, to_ms: i64, max: usize) -> Vec<(i64, f64)> {
    if samples.len() <= max || max == 0 {
        return samples.to_vec();
    }
    let span = i128::from(to_ms.saturating_sub(from_ms)).max(1) + 1;
    let bucket = |at: i64| -> i128 {
        let offset = i128::from(at.clamp(from_ms, to_ms)) - i128::from(from_ms);
        offset * max as i128 / span
    };
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(max);
    let mut current = None;
    for &(at, v) in samples {
        let b = bucket(at);
        if current == Some(b) {
            if let Some(last) = out.last_mut() {
                *last = (at, v);
            }
        } else {
            current = Some(b);
            out.push((at, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::{DeviceStatus, PointReading};

    fn r(point: &str, at_ms: i64, value: f64) -> Reading {
        Reading {
            point: point.into(),
            value,
            unit: "bar".into(),
            quality: "good",
            at_ms,
        }
    }

    #[test]
    fn decodes_points_and_statuses_and_skips_the_rest() {
        let point = Event {
            body: Some(Body::Point(PointReading {
                point: "pressure".into(),
                value: 2.5,
                unit: "bar".into(),
                quality: Quality::Uncertain as i32,
                refresh: false,
            })),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            reading(&point, 7),
            Some(Reading {
                point: "pressure".into(),
                value: 2.5,
                unit: "bar".into(),
                quality: "uncertain",
                at_ms: 7
            })
        );
        assert_eq!(online(&point), None);
        let status = Event {
            body: Some(Body::Status(DeviceStatus {
                online: false,
                reason: String::new(),
            })),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(online(&status), Some(false));
        assert_eq!(reading(&status, 1), None);
        assert_eq!(reading(b"\xff\xff\xff", 1), None);
        assert_eq!(online(b""), None);
    }

    #[test]
    fn latest_keeps_the_first_seen_of_each_point() {
        let l = latest([r("a", 3, 3.0), r("b", 2, 2.0), r("a", 1, 1.0)]);
        assert_eq!(l["a"].value, 3.0);
        assert_eq!(l["b"].value, 2.0);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn series_under_the_cap_are_untouched_and_filtered_by_point() {
        let s = series([r("a", 1, 1.0), r("b", 2, 2.0), r("a", 3, 3.0)], None, 0, 10, 720);
        assert_eq!(s["a"].samples, vec![(1, 1.0), (3, 3.0)]);
        let s = series([r("a", 1, 1.0), r("b", 2, 2.0)], Some("b"), 0, 10, 720);
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn thinning_keeps_the_last_value_of_each_bucket_in_order() {
        // 0..1000 ms, 10 buckets of 100 ms; a sample every 10 ms.
        let readings: Vec<Reading> = (0..=100).map(|i| r("a", i * 10, i as f64)).collect();
        let s = &series(readings, None, 0, 1000, 10)["a"].samples;
        assert!(s.len() <= 10, "{s:?}");
        assert!(s.windows(2).all(|w| w[0].0 < w[1].0));
        // The last sample of the window survives; each kept one ends its bucket.
        assert_eq!(s.last(), Some(&(1000, 100.0)));
        assert_eq!(s[0], (100, 10.0));
    }

    #[test]
    fn thinning_never_exceeds_the_cap_whatever_the_times() {
        for n in [721usize, 1_000, 5_000] {
            let readings: Vec<Reading> = (0..n as i64).map(|i| r("a", i * 7 % 3_600_000, 1.0)).collect();
            let mut readings = readings;
            readings.sort_by_key(|r| r.at_ms);
            let s = &series(readings, None, 0, 3_600_000, 720)["a"].samples;
            assert!(s.len() <= 720, "{n}: {}", s.len());
        }
    }
}
