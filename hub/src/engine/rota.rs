//! Applies the rota's effects (alarms through the book, notifications, coverage events), access
//! events and rota operator actions; never sleeps, sends, or writes outside the transaction
//! it is given.

use tracing::info;

use crate::alarms::apply::Followup;
use crate::alarms::queries::{self as alarm_q, Cause};
use crate::alarms::rules::RuleState;
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

impl Engine {
    /// An `access` event: the rota's presence and patrol scans.
    pub(super) async fn rota_access(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        event: &gatehouse_proto::Event,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.rota.as_mut() {
            r.access(conn, event, now).await?;
            self.rota_effects(conn, rules, now).await?;
        }
        Ok(())
    }

    /// Applies what the rota decided: alarms through the book (and on to incidents),
    /// notifications through the outbox, coverage changes on the stream.
    pub(super) async fn rota_effects(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(r) = self.rota.as_mut() else { return Ok(()) };
        for e in r.take_effects() {
            match e {
                crate::rota::RotaEffect::Raise(a) => {
                    let cause = Cause {
                        note: Some("rota"),
                        ..Default::default()
                    };
                    let (id, what) = alarm_q::activate(conn, &a, now, &cause).await?;
                    if a.latched {
                        // Latched: the acknowledgement clears it, as for a forced door.
                        rules.restore_active(
                            a.key.clone(),
                            crate::alarms::rules::ActiveAlarm {
                                latched: true,
                                value: None,
                            },
                        );
                    }
                    info!(alarm = id, estate = %a.key.estate, condition = %a.key.condition, "rota alarm");
                    crate::alarms::apply::publish_alarm(&mut self.out, id, what.as_str(), &a);
                    self.follow(conn, crate::alarms::apply::raised(id, what), now).await?;
                }
                crate::rota::RotaEffect::Clear { key, note } => {
                    let cause = Cause {
                        note: Some(&note),
                        ..Default::default()
                    };
                    if let Some(id) = alarm_q::clear(conn, &key, now, &cause).await? {
                        crate::alarms::apply::publish_cleared(&mut self.out, id, &key);
                        self.follow(conn, Some(Followup::Cleared(id)), now).await?;
                    }
                }
                crate::rota::RotaEffect::Notify {
                    estate,
                    role,
                    recipients,
                    kind,
                    text,
                } => {
                    self.notify
                        .queue(conn, &mut self.out, None, &estate, role, &recipients, kind, &text, now)
                        .await?;
                }
                crate::rota::RotaEffect::Publish { id, change, data } => self.out.push("coverage", id, change, data),
            }
        }
        Ok(())
    }

    /// `Op::Rota`: a rota action, then what the rota decided (alarms, notifications).
    pub(super) async fn rota_op(
        &mut self,
        conn: &mut Conn,
        rules: &mut RuleState,
        op: crate::rota::RotaOp,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(r) = self.rota.as_mut() else {
            return Ok(Err(OpError::NotFound("no rota is configured ([[posts]])".into())));
        };
        let result = r.op(conn, op, now).await?;
        self.rota_effects(conn, rules, now).await?;
        Ok(result)
    }
}
