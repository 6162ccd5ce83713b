//! What a notification says, as stored in its row's `body` (JSON) and posted as-is to a
//! generic webhook: written once when it is queued ([`super::apply`]), rendered for each
//! channel at send time ([`super::message`]). A digest's body lists the notifications it
//! carries in `items`.

use serde::{Deserialize, Serialize};

use crate::roles::Lang;

/// The incident a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
    pub id: i64,
    pub estate: String,
    pub area: String,
    pub category: String,
    /// `P1` … `P4`.
    pub priority: String,
    pub title: String,
    pub state: String,
}

/// A notification's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationBody {
    pub notification_id: i64,
    /// `escalation`, `supervisor`, `response_target`, `flood`, `cover`, … or `digest`.
    pub kind: String,
    pub role: String,
    pub recipient: String,
    /// The estate's id.
    pub estate: String,
    /// The estate's name (`[[estates]] name`), for people.
    #[serde(default)]
    pub estate_name: Option<String>,
    /// What happened, in the hub's words (English; the channels render their own lines in the
    /// recipient's language around it).
    pub text: String,
    /// RFC 3339.
    pub created_at: String,
    pub hub: String,
    #[serde(default)]
    pub language: Lang,
    #[serde(default)]
    pub incident: Option<IncidentSummary>,
    /// The incident on the board (`<public_url>/#/incidents/<id>`).
    #[serde(default)]
    pub incident_url: Option<String>,
    /// The signed, expiring link with which the recipient acknowledges or says they are on
    /// their way (`<public_url>/n/<token>`).
    #[serde(default)]
    pub answer_url: Option<String>,
    /// RFC 3339: when `answer_url` stops working.
    #[serde(default)]
    pub answer_expires_at: Option<String>,
    /// Channels that take replies (SMS): `ACK <code>` acknowledges, `OMW <code>` says on my way.
    #[serde(default)]
    pub reply_code: Option<String>,
    /// A digest: the notifications it carries, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<NotificationBody>,
}

impl NotificationBody {
    /// The body of a stored row; `None` if it is not one (a row queued before this format).
    pub fn parse(json: &str) -> Option<NotificationBody> {
        serde_json::from_str(json).ok()
    }

    /// The incident's priority, if the notification is about one.
    pub fn priority(&self) -> Option<&str> {
        self.incident.as_ref().map(|i| i.priority.as_str())
    }
}
