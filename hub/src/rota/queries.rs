//! Every SQL statement of the rota: the `rota_*` tables (and the reads of `alarms` and
//! `incidents` a handover sheet lists). The shell ([`super::shell`]) calls the writes inside
//! the writer's transaction; the API calls the reads on the pool. Each function is one
//! statement with typed parameters, so a port to another database changes this file only.
//!
//! Invariant: the only place in the rota that holds SQL; only the writer calls the writes.

use serde_json::Value;

use super::coverage::GapState;
use super::handover::{HandoverRow, SheetAlarm, SheetIncident, SheetNote};
use super::model::Slot;
use super::state::{Absence, Assignment};
use crate::store::{Conn, Context, Pool, StoreError};

mod reports;
pub use reports::*;

fn q<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<T, StoreError> {
    r.context(|| what.to_owned())
}

// ---- loading the live state (at start) -----------------------------------------------------

type AssignmentTuple = (i64, String, String, String, i64, i64, i64, String, String);

fn assignment(r: AssignmentTuple) -> Assignment {
    let (id, estate, post, shift, shift_start, start, end, guard, source) = r;
    Assignment {
        id,
        estate,
        post,
        shift,
        shift_start,
        start,
        end,
        guard,
        source,
    }
}

/// Active assignments that end after `since`.
pub async fn active_assignments(pool: &Pool, since: i64) -> Result<Vec<Assignment>, StoreError> {
    let rows: Vec<AssignmentTuple> = q(
        sqlx::query_as(
            "SELECT id, estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, source \
             FROM rota_assignments WHERE status = 'active' AND end_ms > $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await,
        "loading rota assignments",
    )?;
    Ok(rows.into_iter().map(assignment).collect())
}

/// Who is on which post: (guard, post, since).
pub async fn presence(pool: &Pool) -> Result<Vec<(String, String, i64)>, StoreError> {
    q(
        sqlx::query_as("SELECT guard_id, post_id, since_ms FROM rota_presence")
            .fetch_all(pool)
            .await,
        "loading presence",
    )
}

/// Absences that end after `since`.
pub async fn absences(pool: &Pool, since: i64) -> Result<Vec<Absence>, StoreError> {
    let rows: Vec<(i64, String, i64, i64, String)> = q(
        sqlx::query_as("SELECT id, guard_id, start_ms, end_ms, reason FROM rota_absences WHERE end_ms > $1")
            .bind(since)
            .fetch_all(pool)
            .await,
        "loading absences",
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, guard, start, end, reason)| Absence {
            id,
            guard,
            start,
            end,
            reason,
        })
        .collect())
}

/// The open gaps of the ledger: (post, its state).
pub async fn open_gaps(pool: &Pool) -> Result<Vec<(String, GapState)>, StoreError> {
    let rows: Vec<(String, i64, i64, Option<i64>)> = q(
        sqlx::query_as(
            "SELECT post_id, shift_start_ms, opened_at_ms, alarm_at_ms FROM rota_gaps WHERE closed_at_ms IS NULL",
        )
        .fetch_all(pool)
        .await,
        "loading open gaps",
    )?;
    Ok(rows
        .into_iter()
        .map(|(post, shift_start, opened_at, alarm)| {
            (
                post,
                GapState {
                    shift_start,
                    opened_at,
                    alarmed: alarm.is_some(),
                },
            )
        })
        .collect())
}

/// Post → the shift start of its latest handover sheet.
pub async fn last_handovers(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    q(
        sqlx::query_as("SELECT post_id, MAX(shift_start_ms) FROM rota_handovers GROUP BY post_id")
            .fetch_all(pool)
            .await,
        "loading handovers",
    )
}

/// A patrol tour still running. (Its stored checkpoint order is not read back: a tour's
/// order is replanned from its seed.)
#[derive(sqlx::FromRow)]
pub struct RunningTour {
    pub id: i64,
    #[sqlx(rename = "route_id")]
    pub route: String,
    #[sqlx(rename = "started_at_ms")]
    pub started_at: i64,
    #[sqlx(rename = "guard_id")]
    pub guard: Option<String>,
}

pub async fn running_tours(pool: &Pool) -> Result<Vec<RunningTour>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, route_id, started_at_ms, checkpoints, guard_id FROM rota_patrol_tours WHERE status = 'running'",
        )
        .fetch_all(pool)
        .await,
        "loading patrol tours",
    )
}

/// A running tour's scans: (position, scanned at).
pub async fn tour_scan_times(pool: &Pool, tour: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    q(
        sqlx::query_as("SELECT position, scanned_at_ms FROM rota_patrol_scans WHERE tour_id = $1")
            .bind(tour)
            .fetch_all(pool)
            .await,
        "loading patrol scans",
    )
}

/// Route → when its last tour started.
pub async fn last_tour_starts(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
    q(
        sqlx::query_as("SELECT route_id, MAX(started_at_ms) FROM rota_patrol_tours GROUP BY route_id")
            .fetch_all(pool)
            .await,
        "loading patrol tours",
    )
}

// ---- audit -----------------------------------------------------------------------------------

pub async fn audit(conn: &mut Conn, at: i64, actor: &str, action: &str, detail: &Value) -> Result<(), StoreError> {
    q(
        sqlx::query("INSERT INTO rota_audit (at_ms, actor, action, detail) VALUES ($1, $2, $3, $4)")
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(detail.to_string())
            .execute(&mut *conn)
            .await,
        "writing the rota audit",
    )?;
    Ok(())
}

// ---- presence and attendance -----------------------------------------------------------------

/// Puts a guard on a post (replacing where they were).
pub async fn set_presence(conn: &mut Conn, guard: &str, post: &str, since: i64) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "INSERT INTO rota_presence (guard_id, post_id, since_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (guard_id) DO UPDATE SET post_id = excluded.post_id, since_ms = excluded.since_ms",
        )
        .bind(guard)
        .bind(post)
        .bind(since)
        .execute(&mut *conn)
        .await,
        "recording presence",
    )?;
    Ok(())
}

pub async fn clear_presence(conn: &mut Conn, guard: &str) -> Result<(), StoreError> {
    q(
        sqlx::query("DELETE FROM rota_presence WHERE guard_id = $1")
            .bind(guard)
            .execute(&mut *conn)
            .await,
        "removing presence",
    )?;
    Ok(())
}

/// One line of the presence log.
pub struct PresenceChange<'a> {
    pub guard: &'a str,
    pub post: &'a str,
    pub estate: &'a str,
    /// `on`, `off` or `pulled`.
    pub change: &'a str,
    /// `badge`, `api` or `incident`.
    pub via: &'a str,
    pub at: i64,
    pub incident: Option<i64>,
    pub actor: Option<&'a str>,
}

pub async fn log_presence(conn: &mut Conn, c: &PresenceChange<'_>) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "INSERT INTO rota_presence_log (guard_id, post_id, estate_id, change, via, at_ms, incident_id, actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.guard)
        .bind(c.post)
        .bind(c.estate)
        .bind(c.change)
        .bind(c.via)
        .bind(c.at)
        .bind(c.incident)
        .bind(c.actor)
        .execute(&mut *conn)
        .await,
        "logging presence",
    )?;
    Ok(())
}

/// Did the guard clock on at the post in `[from, to)` already?
pub async fn clocked_on_between(
    conn: &mut Conn,
    guard: &str,
    post: &str,
    from: i64,
    to: i64,
) -> Result<bool, StoreError> {
    let before: Option<i64> = q(
        sqlx::query_scalar(
            "SELECT id FROM rota_presence_log WHERE guard_id = $1 AND post_id = $2 AND change = 'on' AND at_ms >= $3 AND at_ms < $4 LIMIT 1",
        )
        .bind(guard)
        .bind(post)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *conn)
        .await,
        "reading earlier clock-ons",
    )?;
    Ok(before.is_some())
}

/// A late clock-in or an early clock-out.
pub struct AttendanceRecord<'a> {
    pub guard: &'a str,
    pub post: &'a str,
    pub estate: &'a str,
    pub shift_start: i64,
    /// `late` or `early`.
    pub kind: &'a str,
    pub minutes: i64,
    pub at: i64,
}

pub async fn record_attendance(conn: &mut Conn, r: &AttendanceRecord<'_>) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "INSERT INTO rota_attendance (guard_id, post_id, estate_id, shift_start_ms, kind, minutes, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.guard)
        .bind(r.post)
        .bind(r.estate)
        .bind(r.shift_start)
        .bind(r.kind)
        .bind(r.minutes)
        .bind(r.at)
        .execute(&mut *conn)
        .await,
        "recording attendance",
    )?;
    Ok(())
}

// ---- the ledger's gaps -------------------------------------------------------------------------

/// A gap opened (`alarm_at`: already past its grace period).
pub struct NewGap<'a> {
    pub estate: &'a str,
    pub post: &'a str,
    pub shift_start: i64,
    pub required: u32,
    pub opened_at: i64,
    pub alarm_at: Option<i64>,
}

pub async fn open_gap(conn: &mut Conn, g: &NewGap<'_>) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "INSERT INTO rota_gaps (estate_id, post_id, shift_start_ms, required, opened_at_ms, alarm_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(g.estate)
        .bind(g.post)
        .bind(g.shift_start)
        .bind(i64::from(g.required))
        .bind(g.opened_at)
        .bind(g.alarm_at)
        .execute(&mut *conn)
        .await,
        "opening a gap",
    )?;
    Ok(())
}

/// The post's open gap raised its alarm at `at`.
pub async fn alarm_gap(conn: &mut Conn, post: &str, at: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_gaps SET alarm_at_ms = $1 WHERE post_id = $2 AND closed_at_ms IS NULL")
            .bind(at)
            .bind(post)
            .execute(&mut *conn)
            .await,
        "recording a gap's alarm",
    )?;
    Ok(())
}

pub async fn close_gap(conn: &mut Conn, post: &str, at: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_gaps SET closed_at_ms = $1 WHERE post_id = $2 AND closed_at_ms IS NULL")
            .bind(at)
            .bind(post)
            .execute(&mut *conn)
            .await,
        "closing a gap",
    )?;
    Ok(())
}

// ---- patrols -----------------------------------------------------------------------------------

/// Starts a tour (its checkpoint order is set right after, from its id); returns the id.
pub async fn start_tour(conn: &mut Conn, route: &str, estate: &str, started_at: i64) -> Result<i64, StoreError> {
    q(
        sqlx::query_scalar(
            "INSERT INTO rota_patrol_tours (route_id, estate_id, started_at_ms, checkpoints, status) \
             VALUES ($1, $2, $3, '[]', 'running') RETURNING id",
        )
        .bind(route)
        .bind(estate)
        .bind(started_at)
        .fetch_one(&mut *conn)
        .await,
        "starting a patrol tour",
    )
}

/// The tour's checkpoint order (a JSON array).
pub async fn set_tour_order(conn: &mut Conn, tour: i64, order_json: &str) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_patrol_tours SET checkpoints = $1 WHERE id = $2")
            .bind(order_json)
            .bind(tour)
            .execute(&mut *conn)
            .await,
        "starting a patrol tour",
    )?;
    Ok(())
}

/// Ends a tour with its outcome (`on_time`, `late`, `missed` …).
pub async fn end_tour(conn: &mut Conn, tour: i64, outcome: &str, at: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_patrol_tours SET status = $1, ended_at_ms = $2 WHERE id = $3")
            .bind(outcome)
            .bind(at)
            .bind(tour)
            .execute(&mut *conn)
            .await,
        "ending a patrol tour",
    )?;
    Ok(())
}

/// A checkpoint scanned on a tour.
pub struct ScanRecord<'a> {
    pub tour: i64,
    pub checkpoint: &'a str,
    pub position: i64,
    pub expected_at: i64,
    pub scanned_at: i64,
    pub guard: &'a str,
    pub late_min: i64,
}

/// Records a scan; the tour's guard is the first who scanned.
pub async fn record_scan(conn: &mut Conn, s: &ScanRecord<'_>) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "INSERT INTO rota_patrol_scans (tour_id, checkpoint, position, expected_at_ms, scanned_at_ms, guard_id, late_min) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.tour)
        .bind(s.checkpoint)
        .bind(s.position)
        .bind(s.expected_at)
        .bind(s.scanned_at)
        .bind(s.guard)
        .bind(s.late_min)
        .execute(&mut *conn)
        .await,
        "recording a patrol scan",
    )?;
    q(
        sqlx::query("UPDATE rota_patrol_tours SET guard_id = COALESCE(guard_id, $1) WHERE id = $2")
            .bind(s.guard)
            .bind(s.tour)
            .execute(&mut *conn)
            .await,
        "recording a patrol scan",
    )?;
    Ok(())
}

/// A patrol's findings and actions (each kept when not given); false if no such tour.
pub async fn record_findings(
    conn: &mut Conn,
    tour: i64,
    findings: Option<&str>,
    actions: Option<&str>,
    by: &str,
) -> Result<bool, StoreError> {
    let n = q(
        sqlx::query(
            "UPDATE rota_patrol_tours SET findings = COALESCE($1, findings), actions = COALESCE($2, actions), recorded_by = $3 WHERE id = $4",
        )
        .bind(findings)
        .bind(actions)
        .bind(by)
        .bind(tour)
        .execute(&mut *conn)
        .await,
        "recording a patrol's findings",
    )?
    .rows_affected();
    Ok(n > 0)
}

// ---- absences, notes -----------------------------------------------------------------------------

/// A reported absence (a sick call).
pub struct NewAbsence<'a> {
    pub guard: &'a str,
    pub start: i64,
    pub end: i64,
    pub reason: &'a str,
    pub reported_by: &'a str,
    pub at: i64,
}

/// Records an absence; returns its id.
pub async fn insert_absence(conn: &mut Conn, a: &NewAbsence<'_>) -> Result<i64, StoreError> {
    q(
        sqlx::query_scalar(
            "INSERT INTO rota_absences (guard_id, start_ms, end_ms, reason, reported_by, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(a.guard)
        .bind(a.start)
        .bind(a.end)
        .bind(a.reason)
        .bind(a.reported_by)
        .bind(a.at)
        .fetch_one(&mut *conn)
        .await,
        "recording an absence",
    )
}

/// A note for the post's next handover sheet; returns its id.
pub async fn insert_note(
    conn: &mut Conn,
    estate: &str,
    post: &str,
    text: &str,
    author: &str,
    at: i64,
) -> Result<i64, StoreError> {
    q(
        sqlx::query_scalar(
            "INSERT INTO rota_notes (estate_id, post_id, text, author, at_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(estate)
        .bind(post)
        .bind(text)
        .bind(author)
        .bind(at)
        .fetch_one(&mut *conn)
        .await,
        "adding a handover note",
    )
}

// ---- assignments -----------------------------------------------------------------------------------

/// The active assignments of a post's slots starting in `[from, to]`: (id, guard, shift start).
pub async fn slot_assignments(
    conn: &mut Conn,
    post: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, guard_id, shift_start_ms FROM rota_assignments \
             WHERE post_id = $1 AND shift_start_ms >= $2 AND shift_start_ms <= $3 AND status = 'active'",
        )
        .bind(post)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await,
        "reading the assignments of a bulk slice",
    )
}

/// A guard on `slot` for `[start, end)`; returns the id.
#[allow(clippy::too_many_arguments)]
pub async fn insert_assignment(
    conn: &mut Conn,
    slot: &Slot,
    guard: &str,
    start: i64,
    end: i64,
    source: &str,
    now: i64,
) -> Result<i64, StoreError> {
    q(
        sqlx::query_scalar(
            "INSERT INTO rota_assignments (estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, status, source, created_at_ms, changed_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9) RETURNING id",
        )
        .bind(&slot.estate)
        .bind(&slot.post)
        .bind(&slot.shift)
        .bind(slot.start_ms)
        .bind(start)
        .bind(end)
        .bind(guard)
        .bind(source)
        .bind(now)
        .fetch_one(&mut *conn)
        .await,
        "adding an assignment",
    )
}

/// `status`: `cancelled`, `absent` or `moved` (no longer active).
pub async fn set_assignment_status(conn: &mut Conn, id: i64, status: &str, now: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_assignments SET status = $1, changed_at_ms = $2 WHERE id = $3")
            .bind(status)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await,
        "changing an assignment",
    )?;
    Ok(())
}

/// Ends an assignment at `now` (its guard moved to cover elsewhere).
pub async fn end_assignment_for_cover(conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
    q(
        sqlx::query(
            "UPDATE rota_assignments SET end_ms = $1, changed_at_ms = $1, note = 'moved to cover' WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await,
        "shortening an assignment",
    )?;
    Ok(())
}

/// Active assignments overlapping `[from, to)` (of one estate, or all), at most 20,000.
pub async fn list_assignments(
    pool: &Pool,
    from: i64,
    to: i64,
    estate: Option<&str>,
) -> Result<Vec<Assignment>, StoreError> {
    let rows: Vec<AssignmentTuple> = q(
        sqlx::query_as(
            "SELECT id, estate_id, post_id, shift, shift_start_ms, start_ms, end_ms, guard_id, source FROM rota_assignments \
             WHERE status = 'active' AND end_ms > $1 AND start_ms < $2 AND ($3 IS NULL OR estate_id = $3) \
             ORDER BY shift_start_ms, post_id, guard_id LIMIT 20000",
        )
        .bind(from)
        .bind(to)
        .bind(estate)
        .fetch_all(pool)
        .await,
        "listing assignments",
    )?;
    Ok(rows.into_iter().map(assignment).collect())
}

// ---- handovers -----------------------------------------------------------------------------------------

pub async fn standing_alarms(conn: &mut Conn, estate: &str) -> Result<Vec<SheetAlarm>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, priority, category, area, message, active, acknowledged FROM alarms \
             WHERE estate_id = $1 AND (active = $2 OR acknowledged = $3) ORDER BY priority, id",
        )
        .bind(estate)
        .bind(true)
        .bind(false)
        .fetch_all(&mut *conn)
        .await,
        "reading open alarms for a handover",
    )
}

pub async fn open_incidents(conn: &mut Conn, estate: &str) -> Result<Vec<SheetIncident>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, title, state, priority, area FROM incidents WHERE estate_id = $1 \
             AND state NOT IN ('closed', 'false_alarm') ORDER BY id",
        )
        .bind(estate)
        .fetch_all(&mut *conn)
        .await,
        "reading open incidents for a handover",
    )
}

pub async fn pending_notes(conn: &mut Conn, post: &str) -> Result<Vec<SheetNote>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, text, author, at_ms FROM rota_notes WHERE post_id = $1 AND handover_id IS NULL ORDER BY id",
        )
        .bind(post)
        .fetch_all(&mut *conn)
        .await,
        "reading handover notes",
    )
}

/// Writes a sheet unless the post has one for that shift; returns its id when new.
pub async fn insert_handover(
    conn: &mut Conn,
    estate: &str,
    post: &str,
    shift_start: i64,
    now: i64,
    sheet: &Value,
) -> Result<Option<i64>, StoreError> {
    q(
        sqlx::query_scalar(
            "INSERT INTO rota_handovers (estate_id, post_id, shift_start_ms, created_at_ms, sheet) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (post_id, shift_start_ms) DO NOTHING RETURNING id",
        )
        .bind(estate)
        .bind(post)
        .bind(shift_start)
        .bind(now)
        .bind(sheet.to_string())
        .fetch_optional(&mut *conn)
        .await,
        "writing a handover sheet",
    )
}

/// The note is on that sheet now.
pub async fn attach_note(conn: &mut Conn, note: i64, handover: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_notes SET handover_id = $1 WHERE id = $2")
            .bind(handover)
            .bind(note)
            .execute(&mut *conn)
            .await,
        "attaching handover notes",
    )?;
    Ok(())
}

/// `None`: no such sheet; `Some(None)`: not acknowledged yet; `Some(Some(by))`.
pub async fn handover_acked_by(conn: &mut Conn, id: i64) -> Result<Option<Option<String>>, StoreError> {
    q(
        sqlx::query_scalar("SELECT acked_by FROM rota_handovers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await,
        "reading a handover",
    )
}

pub async fn ack_handover(conn: &mut Conn, id: i64, guard: &str, now: i64) -> Result<(), StoreError> {
    q(
        sqlx::query("UPDATE rota_handovers SET acked_by = $1, acked_at_ms = $2 WHERE id = $3")
            .bind(guard)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await,
        "acknowledging a handover",
    )?;
    Ok(())
}

/// Newest first; `unacknowledged` keeps the sheets nobody acknowledged.
pub async fn list_handovers(
    pool: &Pool,
    estate: Option<&str>,
    unacknowledged: bool,
    limit: i64,
) -> Result<Vec<HandoverRow>, StoreError> {
    q(
        sqlx::query_as(
            "SELECT id, estate_id, post_id, shift_start_ms, created_at_ms, sheet, acked_by, acked_at_ms FROM rota_handovers \
             WHERE ($1 IS NULL OR estate_id = $1) AND ($2 = FALSE OR acked_by IS NULL) ORDER BY id DESC LIMIT $3",
        )
        .bind(estate)
        .bind(unacknowledged)
        .bind(limit)
        .fetch_all(pool)
        .await,
        "listing handovers",
    )
}
