//! Handovers: at each change of shift the tick writes the post's sheet (once: a restarted hub
//! does not write it twice) and attaches the notes left for the post; the incoming guard
//! acknowledges it; anyone may leave a note for the next sheet.

use serde_json::json;

use super::super::handover;
use super::super::model::{PostConfig, Slot};
use super::super::queries;
use super::{RotaShell, refused};
use crate::error::OpError;
use crate::store::{Conn, StoreError};

impl RotaShell {
    /// The shift `slot` of `post` started: its handover sheet.
    pub(super) async fn handover(
        &mut self,
        conn: &mut Conn,
        post: &PostConfig,
        slot: &Slot,
        now: i64,
    ) -> Result<(), StoreError> {
        self.live_mut().handed_over.insert(post.id.clone(), slot.start_ms);
        let outgoing: Vec<String> = self
            .cur
            .present_at(&post.id)
            .into_iter()
            .map(|(g, _)| g.to_owned())
            .collect();
        let incoming: Vec<String> = self
            .cur
            .assigned(&post.id, slot.start_ms)
            .into_iter()
            .map(|a| a.guard.clone())
            .collect();
        let alarms = queries::standing_alarms(conn, &post.estate).await?;
        let incidents = queries::open_incidents(conn, &post.estate).await?;
        let notes = queries::pending_notes(conn, &post.id).await?;
        let sheet = handover::sheet(post, slot, &outgoing, &incoming, &alarms, &incidents, &notes);
        let Some(id) = queries::insert_handover(conn, &post.estate, &post.id, slot.start_ms, now, &sheet).await? else {
            return Ok(());
        };
        for n in &notes {
            queries::attach_note(conn, n.id, id).await?;
        }
        self.publish(
            "handover",
            json!({"id": id, "estate": post.estate, "post": post.id, "shift": slot.shift}),
        );
        Ok(())
    }

    /// `RotaOp::HandoverAck`: the incoming guard acknowledges a sheet.
    pub(super) async fn acknowledge_handover(
        &mut self,
        conn: &mut Conn,
        id: i64,
        guard: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        match queries::handover_acked_by(conn, id).await? {
            None => return refused(OpError::NotFound(format!("handover {id} not found"))),
            Some(Some(by)) => {
                return refused(OpError::Conflict(format!("handover {id} was acknowledged by {by}")));
            }
            Some(None) => {}
        }
        queries::ack_handover(conn, id, guard, now).await?;
        Ok(Ok(id))
    }

    /// `RotaOp::Note`: a note for the post's next handover sheet.
    pub(super) async fn note(
        &mut self,
        conn: &mut Conn,
        post: &str,
        text: &str,
        author: &str,
        now: i64,
    ) -> Result<Result<i64, OpError>, StoreError> {
        let m = self.m();
        let Some(p) = m.post(post) else {
            return refused(OpError::NotFound(format!("post {post} not found")));
        };
        let id = queries::insert_note(conn, &p.estate, post, text, author, now).await?;
        Ok(Ok(id))
    }
}
