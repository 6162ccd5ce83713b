//! A notification rendered for people (pure): the title, the labelled facts (estate,
//! priority, what happened, where, the incident's state) and the links, in the recipient's
//! language, in the forms channels need — plain text, Markdown, HTML and one short SMS text.
//! Each chat robot builds its own payload from a [`Message`] (see `channels::robots`).

use super::body::NotificationBody;
use crate::roles::Lang;

/// A notification as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub language: Lang,
    /// One line: priority, estate, what happened.
    pub title: String,
    /// Labelled facts in the recipient's language (label, value).
    pub facts: Vec<(String, String)>,
    /// Plain text: the title, the facts, the links (e-mail's text part, generic use).
    pub text: String,
    /// Markdown (robots that take it).
    pub markdown: String,
    /// HTML (e-mail), every value escaped.
    pub html: String,
    /// The shortest form (SMS): the title, the links, the reply hint.
    pub short: String,
    /// The incident on the board.
    pub incident_url: Option<String>,
    /// The answer link (acknowledge / on my way).
    pub answer_url: Option<String>,
    /// `Reply ACK <code> …` where the channel takes replies.
    pub reply_hint: Option<String>,
}

/// Renders a body in its `language`.
pub fn render(body: &NotificationBody) -> Message {
    // A first, plain rendering: the channels' work replaces it with the localized one.
    let title = body.text.clone();
    let mut text = title.clone();
    for url in [&body.incident_url, &body.answer_url].into_iter().flatten() {
        text.push('\n');
        text.push_str(url);
    }
    Message {
        language: body.language,
        title: title.clone(),
        facts: Vec::new(),
        markdown: text.clone(),
        html: text.clone(),
        short: text.clone(),
        text,
        incident_url: body.incident_url.clone(),
        answer_url: body.answer_url.clone(),
        reply_hint: None,
    }
}
