//! Operator actions: [`Op`] dispatched to the file that applies it (`alarms.rs`,
//! `incidents.rs`, `workflow.rs`, `rota.rs`). `Ok(Err(_))` is a refusal ([`OpError`]):
//! nothing written.

use crate::alarms::rules::RuleState;
use crate::store::{Conn, StoreError};

use super::{Engine, Op, OpError};

impl Engine {
    /// Carries out an operator action. `Ok(Err(_))` is a refusal (nothing written).
    pub async fn op(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        op: Op,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        match op {
            Op::Shelve {
                alarm_id,
                minutes,
                reason,
                operator,
            } => self.shelve(conn, alarm_id, minutes, reason, operator, now).await,
            Op::OutOfService {
                alarm_id,
                on,
                reason,
                operator,
            } => self.out_of_service(conn, alarm_id, on, reason, operator, now).await,
            Op::Maintenance {
                estate,
                device,
                on,
                reason,
                operator,
                until_ms,
            } => {
                self.maintenance(conn, estate, device, on, reason, operator, until_ms, now)
                    .await
            }
            Op::Open {
                estate,
                area,
                category,
                priority,
                title,
                operator,
                note,
            } => {
                self.open_by_operator(conn, estate, area, category, priority, title, operator, note, now)
                    .await
            }
            Op::Transition {
                incident_id,
                to,
                actor,
                note,
                reason,
                override_by,
            } => {
                self.transition(conn, rules, incident_id, to, &actor, note, reason, override_by, now)
                    .await
            }
            Op::Step {
                incident_id,
                step,
                actor,
                note,
                skipped,
            } => self.step(conn, incident_id, &step, &actor, note, skipped, now).await,
            Op::Rota(op) => self.rota_op(conn, rules, op, now).await,
        }
    }
}
