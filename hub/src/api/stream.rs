//! `GET /stream`: server-sent events of alarm, incident, notification and flood changes,
//! published by the writer after each commit. The first event is `hello`; a client too slow
//! to keep up gets a `lagged` event (with how many it missed) and should re-read the lists.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt as _};
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::AppState;

pub async fn stream(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.stream.subscribe();
    let hello = Event::default()
        .event("hello")
        .data(json!({"hub": state.hub_id}).to_string());
    let changes = BroadcastStream::new(rx).map(|r| {
        Ok(match r {
            Ok(ev) => Event::default()
                .event(ev.kind)
                .data(serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into())),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
        })
    });
    Sse::new(stream::once(async move { Ok(hello) }).chain(changes)).keep_alive(KeepAlive::default())
}
