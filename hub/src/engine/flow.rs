//! What follows what between the domains: the one place that says which shell is called
//! next. A raise goes through the alarm book (chattering, a flood and its notice,
//! suppression) to its incident, which plans escalation, which queues notifications; a
//! clear or an acknowledgement is noted on the incident.

use crate::alarms::apply::{self as alarms, Followup};
use crate::roles::Role;
use crate::store::{Conn, StoreError};

use super::Engine;

impl Engine {
    /// Carries an alarm change on into the incidents.
    pub(super) async fn follow(&mut self, conn: &mut Conn, then: Option<Followup>, now: i64) -> Result<(), StoreError> {
        match then {
            None => Ok(()),
            Some(Followup::Raised(id)) => self.raised(conn, id, now).await,
            Some(Followup::Cleared(id)) => self.on_alarm_note(conn, id, "cleared", now).await,
            Some(Followup::Acknowledged { alarm_id, operator }) => self.on_acked(conn, alarm_id, &operator, now).await,
        }
    }

    /// A raise or re-raise: the book (chattering, flood), the duty manager told of a flood,
    /// suppression, then the incident.
    async fn raised(&mut self, conn: &mut Conn, id: i64, now: i64) -> Result<(), StoreError> {
        let raise = self.alarms.raised(conn, &mut self.out, id, now).await?;
        if let Some(n) = raise.flood_started {
            let text = alarms::flood_notice(n);
            self.notify
                .to_role(
                    conn,
                    &mut self.out,
                    None,
                    &raise.row.estate_id,
                    Role::DutyManager,
                    "flood",
                    &text,
                    now,
                )
                .await?;
        }
        if alarms::held_back(conn, &mut self.out, &raise.row, now).await? {
            return Ok(());
        }
        self.route_alarm(conn, &raise.row, raise.chatter, now).await
    }
}
