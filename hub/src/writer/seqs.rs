//! The sequence rule, pure so it is table-tested: a batch is refused whole (a
//! [`Rejected`]) when a number is above the ceiling or jumps past the allowed gap.

use gatehouse_proto::Event;

use crate::config::IngestConfig;
use crate::metrics::RejectKind;

/// A batch refused for its sequence numbers: nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {first_seq}..={last_seq} refused ({}): {detail}", kind.as_str())]
pub struct Rejected {
    pub kind: RejectKind,
    pub first_seq: u64,
    pub last_seq: u64,
    pub detail: String,
}

/// Checks a batch's sequence numbers (sorted) against the gateway's last stored one: none
/// above the ceiling, and no step between consecutive new numbers larger than the gap.
/// Pure, so the rule is table-tested.
pub fn check_seqs(events: &[Event], last: i64, limits: &IngestConfig) -> Result<(), Rejected> {
    let first_seq = events.first().map_or(0, |e| e.seq);
    let last_seq = events.last().map_or(0, |e| e.seq);
    let reject = |kind, detail: String| Rejected {
        kind,
        first_seq,
        last_seq,
        detail,
    };
    if last_seq > limits.max_seq {
        return Err(reject(
            RejectKind::SeqCeiling,
            format!(
                "seq {last_seq} is above the hub's ceiling {} (ingest.max_seq)",
                limits.max_seq
            ),
        ));
    }
    let mut prev = u64::try_from(last).unwrap_or(0);
    for e in events {
        if e.seq <= prev {
            continue;
        }
        if e.seq - prev > limits.max_seq_gap {
            return Err(reject(
                RejectKind::SeqGap,
                format!(
                    "seq {} jumps {} past {prev}, more than ingest.max_seq_gap ({})",
                    e.seq,
                    e.seq - prev,
                    limits.max_seq_gap
                ),
            ));
        }
        prev = e.seq;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[u64]) -> Vec<Event> {
        seqs.iter()
            .map(|s| Event {
                seq: *s,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn sequence_numbers_are_refused_above_the_ceiling_or_past_the_gap_and_gaps_within_it_pass() {
        let limits = IngestConfig {
            max_seq_gap: 1_000,
            max_seq: 1 << 53,
            ..Default::default()
        };
        let cases: &[(&[u64], i64, Option<RejectKind>)] = &[
            (&[4, 5, 6], 3, None),
            // Duplicates and a shed gap inside the bound are fine.
            (&[2, 3, 900, 1_900], 3, None),
            (&[(1 << 63) - 1], 3, Some(RejectKind::SeqCeiling)),
            (&[u64::MAX], 0, Some(RejectKind::SeqCeiling)),
            (&[(1 << 53) + 1], 1 << 53, Some(RejectKind::SeqCeiling)),
            (&[1_005], 3, Some(RejectKind::SeqGap)),
            // A jump inside the batch counts too.
            (&[4, 2_000], 3, Some(RejectKind::SeqGap)),
            (&[1_001], 0, Some(RejectKind::SeqGap)),
        ];
        for (seqs, last, want) in cases {
            let got = check_seqs(&batch(seqs), *last, &limits).err().map(|r| r.kind);
            assert_eq!(got, *want, "seqs {seqs:?} after {last}");
        }
        let r = check_seqs(&batch(&[4, 2_000]), 3, &limits).unwrap_err();
        assert_eq!(
            (r.first_seq, r.last_seq),
            (4, 2_000),
            "the rejection names the batch's range"
        );
    }
}
