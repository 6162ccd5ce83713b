//! The audit shell: [`record`] appends a row inside the writer's transaction; [`verify`]
//! walks the whole log over a (read-only) pool and names the first bad row.

use serde::Serialize;
use tracing::debug;

use super::chain::{self, Break, ChainRow, GENESIS, Step, Walk};
use super::queries;
use super::{Actor, AuditEntry};
use crate::store::{Conn, Pool, StoreError};

/// Rows read per page while verifying.
const PAGE: i64 = 2_000;
/// Most predecessors followed to say where a moved row was written.
const MAX_TRAIL: usize = 64;

/// Appends `entry` by `actor` at `now`, in the caller's transaction; answers its `seq`.
pub async fn record(conn: &mut Conn, actor: &Actor, entry: &AuditEntry, now: i64) -> Result<i64, StoreError> {
    let seq = queries::append(conn, actor, entry, now).await?;
    debug!(seq, actor = %actor.user, action = %entry.action, target = %entry.target, "audited");
    Ok(seq)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Rows found intact before the first bad one (all of them when intact).
    pub rows: u64,
    pub intact: bool,
    /// The hash of the last intact row (GENESIS for an empty log): kept elsewhere, it
    /// shows later that no row up to it was changed and none was cut off the end.
    pub head: String,
    /// The first bad row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<Break>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.first_bad {
            None => write!(f, "{} rows, chain intact (head {})", self.rows, self.head),
            Some(b) => write!(f, "chain broken: {b} (after {} intact rows)", self.rows),
        }
    }
}

/// Walks the log in `seq` order, page by page.
pub async fn verify(pool: &Pool) -> Result<Verdict, StoreError> {
    let mut walk = Walk::default();
    let mut after = 0;
    loop {
        let rows = queries::page(pool, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in &rows {
            if walk.step(r) == Step::Suspect {
                let origin = origin(pool, r).await?;
                return Ok(Verdict {
                    rows: walk.rows(),
                    intact: false,
                    head: walk.head().to_owned(),
                    first_bad: Some(walk.classify(r, origin)),
                });
            }
        }
    }
    Ok(Verdict {
        rows: walk.rows(),
        intact: true,
        head: walk.head().to_owned(),
        first_bad: None,
    })
}

/// Where `r`'s predecessor (the row whose hash is `r.prev_hash`) was written, following
/// predecessors until one that matches its own hash ([`chain::fold_origin`]).
async fn origin(pool: &Pool, r: &ChainRow) -> Result<Option<i64>, StoreError> {
    let mut trail = Vec::new();
    let mut prev = r.prev_hash.clone();
    let base = loop {
        if prev == GENESIS {
            break Some(0);
        }
        if trail.len() >= MAX_TRAIL {
            break None;
        }
        let Some(o) = queries::find_by_hash(pool, &prev).await? else {
            break None;
        };
        let intact = chain::hash(&o) == o.hash;
        prev = o.prev_hash.clone();
        trail.push(o);
        if intact {
            break None;
        }
    };
    Ok(chain::fold_origin(base, &trail))
}
