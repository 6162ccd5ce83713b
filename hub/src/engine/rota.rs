//! The rota's chain: access events, the tick and rota operator actions go to the rota shell
//! (`rota/shell/`), and what it decides ([`crate::rota::RotaEffect`]s) goes on to the alarm
//! shell (and through `flow.rs` to incidents), the notification shell and the stream.

use crate::alarms::apply as alarms;
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
                    let then = alarms::rota_raise(conn, &mut self.out, rules, &a, now).await?;
                    self.follow(conn, then, now).await?;
                }
                crate::rota::RotaEffect::Clear { key, note } => {
                    let then = alarms::rota_clear(conn, &mut self.out, &key, &note, now).await?;
                    self.follow(conn, then, now).await?;
                }
                crate::rota::RotaEffect::Notify {
                    estate,
                    role,
                    recipients,
                    kind,
                    text,
                } => {
                    self.notify
                        .queue(
                            conn,
                            &mut self.out,
                            None,
                            &estate,
                            role,
                            &recipients,
                            kind,
                            None,
                            &text,
                            now,
                        )
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
