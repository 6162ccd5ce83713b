//! Latency figures from HDR histograms, and max/mean summaries, as reports print and
//! serialise them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency the histograms hold (one hour); larger values are counted as this.
pub(crate) const LATENCY_MAX_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }

    /// From a histogram of microseconds, in milliseconds (fractions kept in the mean only).
    pub(crate) fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us.div_ceil(1000);
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    pub(crate) fn of(values: impl Iterator<Item = u64>) -> Self {
        let (mut max, mut sum, mut n) = (0, 0u64, 0u64);
        for v in values {
            max = max.max(v);
            sum += v;
            n += 1;
        }
        Self {
            max,
            mean: if n == 0 { 0.0 } else { sum as f64 / n as f64 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_keeps_large_values() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MS, 3).unwrap();
        h.saturating_record(0);
        h.saturating_record(9_000);
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 2);
        assert!((8_990..=9_010).contains(&l.max), "max {}", l.max);
    }
}
