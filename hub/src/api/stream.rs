//! `GET /stream`: server-sent events of alarm, incident, notification and flood changes,
//! published by the writer after each commit.
//!
//! Every event has the SSE id `<boot>-<seq>` (`boot`: the hub's start in ms; `seq`: 1, 2, …
//! in commit order). The first event is `hello` `{"hub", "boot", "seq"}` (`seq`: the last
//! published). A client that reconnects names where it left off — the browser's automatic
//! `Last-Event-ID`, or `?after=<boot>-<seq>` — and, if the hub still holds every event since
//! (the last `api.stream_replay`), gets them after `hello`, then live ones. Otherwise (another
//! boot, too old, in the future, or an id that is not one of ours) `hello` is followed by
//! `reset` `{"reason"}`: re-read the lists. A client too slow to keep up gets `lagged` (with
//! how many it missed) and should re-read the lists too.
//!
//! `Last-Event-ID` wins over `?after=`: a browser's EventSource keeps the URL it was opened
//! with and sends the newer id as the header. A malformed header is a `reset`, never a 400,
//! since a browser resends whatever id it last got and would never recover from an error;
//! a malformed `?after=` is a 400, a mistake of the code that built the URL.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{ApiError, ApiQuery, AppState};
use crate::auth::Caller;
use crate::auth::objects::Object;
use crate::privacy::View;
use crate::stream::{Position, Resume, Stamped};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<String>,
}

pub async fn stream(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = resume(&headers, q.after.as_deref())?;
    // Residents' personal data in each event's data, as the caller's role may see it.
    let view = View::for_role(caller.principal.role.as_str());
    // A caller who does not see every estate gets the events of their estates only.
    let visible: Option<Arc<HashSet<String>>> = match caller.principal.scope {
        crate::auth::Scope::All => None,
        _ => Some(Arc::new(crate::api::enforce::visible_estates(
            &caller.principal,
            &state.estates,
        ))),
    };
    let feed = state.stream.clone();
    let boot = feed.boot();
    let sub = feed.subscribe(resume);
    let id = |seq: u64| Position { boot, seq }.to_string();
    let hello = |at: u64| {
        Event::default()
            .event("hello")
            .id(id(at))
            .data(json!({"hub": state.hub_id, "boot": boot, "seq": sub.last}).to_string())
    };
    // `hello`'s id is where the stream goes on from, so a connection lost during the replay
    // resumes from the last event it actually received.
    let first: Vec<Event> = match (&sub.replay, resume) {
        (Ok(events), Resume::After(p)) => {
            let mut first = vec![hello(p.seq)];
            for e in events {
                if shown(&state.pool, visible.as_deref(), e).await {
                    first.push(event(boot, e, &view));
                }
            }
            first
        }
        (Ok(_), _) => vec![hello(sub.last)],
        (Err(reason), _) => vec![
            hello(sub.last),
            Event::default()
                .event("reset")
                .id(id(sub.last))
                .data(json!({"reason": reason.as_str()}).to_string()),
        ],
    };
    let at = Arc::new(std::sync::atomic::AtomicU64::new(sub.last));
    let pool = state.pool.clone();
    let live = BroadcastStream::new(sub.rx).filter_map(move |r| {
        let (pool, visible, at) = (pool.clone(), visible.clone(), at.clone());
        async move {
            match r {
                Ok(e) => {
                    at.store(e.seq, std::sync::atomic::Ordering::Relaxed);
                    shown(&pool, visible.as_deref(), &e)
                        .await
                        .then(|| event(boot, &e, &view))
                }
                // The position stays at the last event delivered: a reconnect replays the gap
                // if the ring still holds it.
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(
                    Event::default()
                        .event("lagged")
                        .id(Position {
                            boot,
                            seq: at.load(std::sync::atomic::Ordering::Relaxed),
                        }
                        .to_string())
                        .data(n.to_string()),
                ),
            }
        }
    });
    Ok(Sse::new(stream::iter(first).chain(live).map(Ok)).keep_alive(KeepAlive::default()))
}

/// Where the client says it left off.
fn resume(headers: &HeaderMap, after: Option<&str>) -> Result<Resume, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        let v = v.to_str().map(str::trim).unwrap_or("\u{0}");
        if !v.is_empty() {
            return Ok(Position::parse(v).map_or(Resume::Malformed, Resume::After));
        }
    }
    match after.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Resume::Fresh),
        Some(s) => Position::parse(s)
            .map(Resume::After)
            .ok_or_else(|| ApiError::bad_request("invalid after", "expected <boot>-<seq>, as the stream's ids")),
    }
}

/// Whether an event is for a caller who sees `visible` (None: every estate). Its estate is
/// the one its data names, else that of the object it is about; an event of no estate
/// (a flood of the whole centre) goes to callers of every estate only.
async fn shown(pool: &crate::store::Pool, visible: Option<&HashSet<String>>, e: &Stamped) -> bool {
    let Some(visible) = visible else {
        return true;
    };
    if let Some(estate) = e.event.data.get("estate").and_then(serde_json::Value::as_str) {
        return visible.contains(estate);
    }
    let object = match e.event.kind {
        "alarm" => Object::Alarm,
        "incident" => Object::Incident,
        "notification" => Object::Notification,
        "command" => Object::Command,
        _ => return false,
    };
    matches!(crate::auth::objects::estate_of(pool, object, e.event.id).await, Ok(Some(estate)) if visible.contains(&estate))
}

fn event(boot: i64, e: &Arc<Stamped>, view: &View) -> Event {
    let mut body = serde_json::to_value(&e.event).unwrap_or_else(|_| json!({}));
    view.json(&mut body);
    Event::default()
        .event(e.event.kind)
        .id(Position { boot, seq: e.seq }.to_string())
        .data(body.to_string())
}
