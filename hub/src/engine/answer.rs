//! `Op::Answer`: a person answers a page — by its signed link or an SMS reply — and the hub
//! records it as them: on the row (the first answer only), on the incident's timeline, and
//! as the incident's acknowledgement if it had none (which stops the `not_acknowledged`
//! steps and starts the progress limit, `flow.rs`).

use serde_json::json;

use crate::incidents::apply as incidents;
use crate::notify::answer::{self, Answer, AnswerVia};
use crate::notify::queries as notify;
use crate::store::{Conn, StoreError};

use super::{Engine, OpError};

impl Engine {
    pub(super) async fn answer(
        &mut self,
        conn: &mut Conn,
        id: i64,
        answer: Answer,
        via: AnswerVia,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let Some(row) = notify::notification(&mut *conn, id).await? else {
            return Ok(Err(OpError::NotFound(format!("notification {id} not found"))));
        };
        let (Some(iid), Some(expires)) = (row.incident_id, row.link_expires_at_ms) else {
            return Ok(Err(OpError::NotFound(format!("notification {id} takes no answer"))));
        };
        if let Some(given) = &row.answer {
            return Ok(Err(OpError::Conflict(format!(
                "notification {id} was already answered ({given})"
            ))));
        }
        // Checked again here, at commit time: the request may have waited in the queue.
        if now >= expires {
            return Ok(Err(OpError::Unprocessable(format!(
                "the link of notification {id} has expired"
            ))));
        }
        if !notify::record_answer(conn, id, answer.as_str(), via.as_str(), now).await? {
            return Ok(Err(OpError::Conflict(format!(
                "notification {id} was already answered"
            ))));
        }
        let name = row.recipient.as_str();
        incidents::timeline(
            conn,
            iid,
            now,
            "answer",
            Some(name),
            &answer::timeline_text(name, answer, via),
            json!({"notification_id": id, "answer": answer.as_str(), "via": via.as_str()}),
        )
        .await?;
        let inc = incidents::incident(conn, iid).await?;
        if inc.acknowledged_at_ms.is_none() && inc.closed_at_ms.is_none() {
            self.acknowledge_incident(conn, &inc, name, now).await?;
        }
        self.out.push(
            "notification",
            id,
            "answered",
            json!({"incident_id": iid, "recipient": name, "answer": answer.as_str(), "via": via.as_str()}),
        );
        self.out.push(
            "incident",
            iid,
            "answered",
            json!({"by": name, "answer": answer.as_str(), "via": via.as_str(), "notification_id": id}),
        );
        Ok(Ok(iid))
    }
}
