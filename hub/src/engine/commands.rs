//! Commands to devices, as the engine carries them: recording one (with its deadline timer
//! and the incident's timeline line), a gateway's result, the gateway found offline, and
//! the deadline passing. The commands shell decides; this says what follows (the timer,
//! the timeline).

use serde_json::json;

use crate::commands::apply as commands;
use crate::commands::model::{self, CommandState};
use crate::commands::{CommandRow, NewCommand};
use crate::escalation::apply as escalation;
use crate::incidents::apply as incidents;
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

/// The timer kind that turns an unanswered command `timed_out`.
pub(super) const DEADLINE_TIMER: &str = "command_deadline";

impl Engine {
    /// Records a command (refused if its incident does not exist); returns its id.
    pub(super) async fn record_command(
        &mut self,
        conn: &mut Conn,
        c: NewCommand,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        if let Some(iid) = c.incident_id
            && crate::incidents::queries::get_incident(conn, iid).await?.is_none()
        {
            return Ok(Err(OpError::NotFound(format!("incident {iid}"))));
        }
        let row = commands::record(conn, &mut self.out, &c, now).await?;
        // The subject of a command's timer is the command (timers.alarm_id; no incident, so
        // closing the incident does not stop it).
        escalation::timer(
            conn,
            DEADLINE_TIMER,
            0,
            row.id,
            0,
            row.deadline_ms + model::RESULT_GRACE_MS,
        )
        .await?;
        self.command_timeline(conn, &row, now).await?;
        Ok(Ok(row.id))
    }

    /// The command could not be handed to its gateway.
    pub(super) async fn command_undelivered(
        &mut self,
        conn: &mut Conn,
        id: i64,
        detail: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        if let Some(row) = commands::settle(conn, &mut self.out, id, CommandState::GatewayOffline, detail, now).await? {
            self.command_timeline(conn, &row, now).await?;
        }
        Ok(Ok(id))
    }

    /// A gateway's command result (already stored in `command_results`) settles its command.
    pub async fn command_result(
        &mut self,
        conn: &mut Conn,
        gateway_id: &str,
        result: &gatehouse_proto::CommandResult,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(row) = commands::result(conn, &mut self.out, gateway_id, result, now).await? {
            self.command_timeline(conn, &row, now).await?;
        }
        Ok(())
    }

    /// A command's deadline timer fired: no result yet means `timed_out`.
    pub(super) async fn command_deadline(&mut self, conn: &mut Conn, id: i64, now: i64) -> Result<String, StoreError> {
        let detail = "no result from the gateway by the command's deadline";
        match commands::settle(conn, &mut self.out, id, CommandState::TimedOut, detail, now).await? {
            Some(row) => {
                self.command_timeline(conn, &row, now).await?;
                Ok("timed out".into())
            }
            None => Ok("settled before".into()),
        }
    }

    async fn command_timeline(&mut self, conn: &mut Conn, row: &CommandRow, now: i64) -> Result<(), StoreError> {
        let Some(iid) = row.incident_id else {
            return Ok(());
        };
        let actor = (row.state == "sent").then_some(row.operator.as_str());
        let data = json!({"command": row.id, "device": row.device_id, "action": row.action, "state": row.state});
        incidents::timeline(conn, iid, now, "command", actor, &commands::timeline_text(row), data).await?;
        // The incident's watchers see its timeline grow.
        self.out.push(
            "incident",
            iid,
            "command",
            json!({"command": row.id, "state": row.state}),
        );
        Ok(())
    }
}
