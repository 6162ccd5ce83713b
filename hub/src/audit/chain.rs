//! The hash chain, pure: a row's hash, and the walk that checks a log row by row and names
//! the first row that breaks it (edited, deleted or reordered).
//!
//! A row's hash is the SHA-256 (hex) of its canonical encoding: the JSON array
//! `["gatehouse-audit-v1", seq, at_ms, actor, role, source|null, action, target, detail,
//! prev_hash]`. A JSON array of numbers and strings has one encoding (serde_json escapes
//! strings one way), and `detail` is hashed as the text stored, never re-serialized, so the
//! hash does not depend on how a JSON library orders object keys. `seq` is part of it, so a
//! row moved to another position no longer matches; `prev_hash` is part of it, so a row
//! deleted or edited breaks its successor's link.
//!
//! What a chain without a key cannot see: someone who can write the database AND recompute
//! every hash after the row they edit, or who deletes the newest rows. The verify command's
//! head hash, kept elsewhere (a ticket, a log shipper), closes both.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the encoding, so a later change of it cannot collide with this one.
const VERSION: &str = "gatehouse-audit-v1";

/// The stored fields of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainRow {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    pub source: Option<String>,
    pub action: String,
    pub target: String,
    /// The JSON text as stored.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash row `r` must carry if it stood at position `seq`.
pub fn hash_at(r: &ChainRow, seq: i64) -> String {
    let encoded = serde_json::json!([
        VERSION,
        seq,
        r.at_ms,
        r.actor,
        r.role,
        r.source,
        r.action,
        r.target,
        r.detail,
        r.prev_hash
    ])
    .to_string();
    hex::encode(Sha256::digest(encoded.as_bytes()))
}

/// The hash a row carries when it was written: over its own `seq` and `prev_hash`.
pub fn hash(r: &ChainRow) -> String {
    hash_at(r, r.seq)
}

/// What is wrong at the first bad row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum Problem {
    /// The row's content no longer matches its hash (or, when its hash was recomputed, its
    /// successor's link).
    Edited,
    /// Rows `from..=to` are missing.
    Deleted { from: i64, to: i64 },
    /// The row here was written at position `written_as`.
    Reordered { written_as: i64 },
    /// The link to the previous row is wrong in a way none of the above explains.
    Broken,
}

/// The first row that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    #[serde(flatten)]
    pub problem: Problem,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            Problem::Edited => write!(f, "row {} was edited", self.seq),
            Problem::Deleted { from, to } if from == to => write!(f, "row {from} was deleted"),
            Problem::Deleted { from, to } => write!(f, "rows {from} to {to} were deleted"),
            Problem::Reordered { written_as } => {
                write!(f, "row {} was reordered (it was written as row {written_as})", self.seq)
            }
            Problem::Broken => write!(f, "row {} does not link to the row before it", self.seq),
        }
    }
}

/// A row's step through the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Fine,
    /// The row is bad; to say how, [`Walk::classify`] needs the position of the row whose
    /// hash equals this row's `prev_hash` (a look-up only on this rare path).
    Suspect,
}

/// Walks the rows in `seq` order.
#[derive(Debug, Clone)]
pub struct Walk {
    expected_seq: i64,
    prev_hash: String,
    rows: u64,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            expected_seq: 1,
            prev_hash: GENESIS.to_owned(),
            rows: 0,
        }
    }
}

impl Walk {
    /// Rows checked and found fine so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The hash of the last good row (the head, once the walk is done).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }

    pub fn step(&mut self, r: &ChainRow) -> Step {
        if r.seq == self.expected_seq && r.prev_hash == self.prev_hash && hash(r) == r.hash {
            self.expected_seq += 1;
            self.prev_hash = r.hash.clone();
            self.rows += 1;
            Step::Fine
        } else {
            Step::Suspect
        }
    }

    /// Why the suspect row `r` is bad. `origin`: the position at which the row whose hash
    /// is `r`'s `prev_hash` was written (`Some(0)` for [`GENESIS`]; see [`written_seq`]),
    /// if any row has that hash.
    pub fn classify(&self, r: &ChainRow, origin: Option<i64>) -> Break {
        let at = |seq, problem| Break { seq, problem };
        if hash(r) != r.hash {
            return match written_seq(r, origin) {
                Some(w) if w != r.seq => at(r.seq, Problem::Reordered { written_as: w }),
                _ => at(r.seq, Problem::Edited),
            };
        }
        if r.seq > self.expected_seq && origin.is_none_or(|q| q + 1 == r.seq) {
            let (from, to) = (self.expected_seq, r.seq - 1);
            return at(r.seq, Problem::Deleted { from, to });
        }
        if r.seq == self.expected_seq && origin.is_none() && self.expected_seq > 1 {
            // Intact itself, but linked to a row that no longer exists where its
            // predecessor stands: the predecessor was edited and re-hashed.
            return at(self.expected_seq - 1, Problem::Edited);
        }
        at(r.seq, Problem::Broken)
    }
}

/// Where row `r` was written: its own position if it matches its hash there, else the
/// position after its predecessor's (`origin`, as in [`Walk::classify`]) if it matches
/// there (the row was moved), else unknown (the row was edited).
pub fn written_seq(r: &ChainRow, origin: Option<i64>) -> Option<i64> {
    if hash(r) == r.hash {
        return Some(r.seq);
    }
    origin.map(|q| q + 1).filter(|w| hash_at(r, *w) == r.hash)
}

/// The position `r`'s predecessor was written at, from the trail of predecessors looked up
/// by hash (`trail[0]` is `r`'s predecessor, each next one the one before it, ending on the
/// first that matches its own hash) and `base`, the position of the row before the trail's
/// last (`Some(0)` when that is [`GENESIS`], else `None`).
pub fn fold_origin(base: Option<i64>, trail: &[ChainRow]) -> Option<i64> {
    trail.iter().rev().fold(base, |q, o| written_seq(o, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = ChainRow {
                    seq,
                    at_ms: 1_000 * seq,
                    actor: format!("user{seq}"),
                    role: "operator".into(),
                    source: Some("127.0.0.1".into()),
                    action: "alarm.acknowledge".into(),
                    target: format!("alarm:{seq}"),
                    detail: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = hash(&r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    /// The position `r`'s predecessor was written at, looked up as the shell does.
    fn origin(rows: &[ChainRow], r: &ChainRow) -> Option<i64> {
        let mut trail = Vec::new();
        let mut prev = r.prev_hash.clone();
        let base = loop {
            if prev == GENESIS {
                break Some(0);
            }
            let Some(o) = rows.iter().find(|o| o.hash == prev) else {
                break None;
            };
            let intact = hash(o) == o.hash;
            prev = o.prev_hash.clone();
            trail.push(o.clone());
            if intact {
                break None;
            }
        };
        fold_origin(base, &trail)
    }

    /// Walks `rows` as the shell does: the first suspect row is classified.
    fn verify(rows: &[ChainRow]) -> Result<u64, Break> {
        let mut walk = Walk::default();
        for r in rows {
            if walk.step(r) == Step::Suspect {
                return Err(walk.classify(r, origin(rows, r)));
            }
        }
        Ok(walk.rows())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn an_edited_row_is_named() {
        let mut rows = chain(5);
        rows[2].actor = "mallory".into();
        assert_eq!(verify(&rows).unwrap_err().to_string(), "row 3 was edited");
        // Re-hashed by the editor: its successor's link gives it away.
        rows[2].hash = hash(&rows[2]);
        assert_eq!(
            verify(&rows).unwrap_err(),
            Break {
                seq: 3,
                problem: Problem::Edited
            }
        );
    }

    #[test]
    fn deleted_rows_are_named() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows).unwrap_err().to_string(), "row 2 was deleted");
        let mut rows = chain(5);
        rows.drain(0..2);
        assert_eq!(verify(&rows).unwrap_err().to_string(), "rows 1 to 2 were deleted");
    }

    #[test]
    fn swapped_rows_are_named() {
        // Positions swapped (seq values exchanged, rows read back in seq order).
        let mut rows = chain(5);
        rows.swap(1, 3);
        rows[1].seq = 2;
        rows[3].seq = 4;
        assert_eq!(
            verify(&rows).unwrap_err(),
            Break {
                seq: 2,
                problem: Problem::Reordered { written_as: 4 }
            }
        );
        // Adjacent rows too.
        let mut rows = chain(5);
        rows.swap(2, 3);
        rows[2].seq = 3;
        rows[3].seq = 4;
        assert_eq!(
            verify(&rows).unwrap_err().to_string(),
            "row 3 was reordered (it was written as row 4)"
        );
    }

    #[test]
    fn the_hash_covers_every_field() {
        let r = &chain(1)[0];
        let h = hash(r);
        let variants = [
            ChainRow { at_ms: 1, ..r.clone() },
            ChainRow {
                role: "admin".into(),
                ..r.clone()
            },
            ChainRow {
                source: None,
                ..r.clone()
            },
            ChainRow {
                action: "x".into(),
                ..r.clone()
            },
            ChainRow {
                target: "x".into(),
                ..r.clone()
            },
            ChainRow {
                detail: "{ }".into(),
                ..r.clone()
            },
            ChainRow {
                prev_hash: "1".into(),
                ..r.clone()
            },
        ];
        for v in variants {
            assert_ne!(hash(&v), h, "{v:?}");
        }
        assert_ne!(hash_at(r, 2), h);
    }
}
