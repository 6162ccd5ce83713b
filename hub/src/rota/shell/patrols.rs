//! Patrols: the tick starts a route's tour when it is due (only while someone is on the
//! route's post), raises the missed alarm once a checkpoint is overdue and ends the tour
//! with its outcome; a badge at a checkpoint records the scan (the late alarm once per
//! tour); a guard records the findings. Patrol alarms are latched (cleared by acknowledgement).

use serde_json::json;
use tracing::warn;

use super::super::model::PatrolRouteConfig;
use super::super::patrol;
use super::super::queries::{self, ScanRecord};
use super::{RotaEffect, RotaShell, patrol_area, refused};
use crate::alarms::rules::Activation;
use crate::alarms::{AlarmKey, Category, Priority, rfc3339};
use crate::error::OpError;
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// A route at the tick: the running tour's deadlines, or a new tour when one is due.
    pub(super) async fn patrol_tick(
        &mut self,
        conn: &mut Conn,
        r: &PatrolRouteConfig,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(t) = self.cur.tours.get(&r.id).cloned() {
            let overdue = patrol::overdue(&t, r, now);
            if !overdue.is_empty() && !t.missed_alarmed {
                self.live_mut().tours.get_mut(&r.id).expect("running").missed_alarmed = true;
                let names: Vec<&str> = overdue.iter().map(|&i| t.order[i].as_str()).collect();
                self.effects.push(RotaEffect::Raise(Activation {
                    key: AlarmKey::new(&r.estate, &r.id, format!("patrol_missed:{}", r.id)),
                    gateway: "hub".into(),
                    area: patrol_area(&self.m(), r),
                    priority: Priority::P2,
                    category: Category::Security,
                    message: format!(
                        "Patrol {} missed checkpoint {} (tour #{} started {})",
                        r.id,
                        names.join(", "),
                        t.id,
                        rfc3339(t.start)
                    ),
                    latched: true,
                    value: None,
                    repeat: false,
                }));
                warn!(route = %r.id, tour = t.id, "patrol checkpoint missed");
            }
            if now >= t.ends_at(r) {
                let outcome = patrol::outcome(&t, r);
                queries::end_tour(conn, t.id, outcome, now).await?;
                self.live_mut().tours.remove(&r.id);
                self.publish("patrol_ended", json!({"route": r.id, "tour": t.id, "outcome": outcome}));
            }
            return Ok(());
        }
        let period = i64::from(r.period_min) * 60_000;
        let due = self.cur.last_tour.get(&r.id).map_or(now, |l| l + period);
        if now < due {
            return Ok(());
        }
        if let Some(post) = &r.post
            && self.cur.present_at(post).is_empty()
        {
            return Ok(());
        }
        let start = if now - due < period {
            due.max(now - 60_000).min(now)
        } else {
            now
        };
        let id = queries::start_tour(conn, &r.id, &r.estate, start).await?;
        let tour = patrol::Tour::plan(r, id, start);
        queries::set_tour_order(conn, id, &serde_json::to_string(&tour.order).unwrap_or_default()).await?;
        self.publish(
            "patrol_started",
            json!({"route": r.id, "tour": id, "order": tour.order}),
        );
        let live = self.live_mut();
        live.last_tour.insert(r.id.clone(), start);
        live.tours.insert(r.id.clone(), tour);
        Ok(())
    }

    /// A guard's badge at a checkpoint of route `ri`.
    pub(super) async fn scan(
        &mut self,
        conn: &mut Conn,
        ri: usize,
        checkpoint: &str,
        guard: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let m = self.m();
        let r = &m.routes[ri];
        let Some(mut t) = self.cur.tours.get(&r.id).cloned() else {
            return Ok(());
        };
        let outcome = patrol::scan(&mut t, r, checkpoint, now);
        let (index, late) = match outcome {
            patrol::Scan::Ignored => return Ok(()),
            patrol::Scan::OnTime { index } => (index, 0),
            patrol::Scan::Late { index, minutes } => (index, minutes),
        };
        t.guard.get_or_insert_with(|| guard.to_owned());
        let scan = ScanRecord {
            tour: t.id,
            checkpoint,
            position: index as i64,
            expected_at: t.expected[index],
            scanned_at: now,
            guard,
            late_min: late,
        };
        queries::record_scan(conn, &scan).await?;
        if late > 0 && !t.late_alarmed {
            t.late_alarmed = true;
            self.effects.push(RotaEffect::Raise(Activation {
                key: AlarmKey::new(&r.estate, &r.id, format!("patrol_late:{}", r.id)),
                gateway: "hub".into(),
                area: patrol_area(&m, r),
                priority: Priority::P3,
                category: Category::Security,
                message: format!(
                    "Patrol {} late at checkpoint {checkpoint} by {late} min (tour #{})",
                    r.id, t.id
                ),
                latched: true,
                value: None,
                repeat: false,
            }));
        }
        self.live_mut().tours.insert(r.id.clone(), t);
        Ok(())
    }

    /// `RotaOp::PatrolRecord`: a tour's findings and actions.
    pub(super) async fn record_patrol(
        &mut self,
        conn: &mut Conn,
        tour: i64,
        findings: Option<&str>,
        actions: Option<&str>,
        by: &str,
    ) -> Result<Result<i64, OpError>, StoreError> {
        if !queries::record_findings(conn, tour, findings, actions, by).await? {
            return refused(OpError::NotFound(format!("patrol tour {tour} not found")));
        }
        Ok(Ok(tour))
    }
}
