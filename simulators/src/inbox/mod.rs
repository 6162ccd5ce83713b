//! The demo's facility inbox: a local stand-in for a DingTalk group with a custom robot
//! ([`dingtalk`]). The hub posts to `POST /robot/send?access_token=…&timestamp=…&sign=…`; the
//! inbox checks the token, the timestamp and the signature and answers as DingTalk does
//! (`{"errcode":0,"errmsg":"ok"}`, or `310000` "sign not match"). Every readable message is
//! kept — a badly signed one too, marked `signature_verified: false`, so the demo shows it —
//! and `GET /` lists them as JSON, newest last. Plain HTTP on loopback.

pub mod dingtalk;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, RawQuery, State, rejection::BytesRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use dingtalk::RobotKeys;

/// Messages kept; older ones are dropped first.
pub const MAX_MESSAGES: usize = 1_000;
/// The largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// One message the robot received.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InboxMessage {
    /// The robot platform (`dingtalk`).
    pub channel: &'static str,
    pub signature_verified: bool,
    /// RFC 3339, UTC.
    pub received_at: String,
    pub msgtype: String,
    pub title: Option<String>,
    pub text: String,
    /// Why the signature did not verify (never the secret or the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl InboxMessage {
    /// The first non-empty line of its text, for one-line displays.
    pub fn first_line(&self) -> &str {
        self.text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
    }
}

struct Shared {
    keys: RobotKeys,
    store: Mutex<Store>,
    /// The number of messages ever stored, for waiters.
    total: watch::Sender<u64>,
}

#[derive(Default)]
struct Store {
    list: VecDeque<InboxMessage>,
    /// Messages ever stored (the list keeps the last [`MAX_MESSAGES`]).
    total: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic elsewhere while holding the lock leaves a consistent list: keep serving it.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, m: InboxMessage) {
        let total = {
            let mut store = self.lock();
            if store.list.len() >= MAX_MESSAGES {
                store.list.pop_front();
            }
            store.list.push_back(m);
            store.total += 1;
            store.total
        };
        self.total.send_replace(total);
    }

    fn snapshot(&self) -> Vec<InboxMessage> {
        self.lock().list.iter().cloned().collect()
    }

    /// The messages stored after the first `seen` ever stored (those still kept), and the
    /// total now.
    fn since(&self, seen: u64) -> (u64, Vec<InboxMessage>) {
        let store = self.lock();
        let new = usize::try_from(store.total.saturating_sub(seen)).unwrap_or(usize::MAX);
        let skip = store.list.len().saturating_sub(new);
        (store.total, store.list.iter().skip(skip).cloned().collect())
    }
}

/// A running inbox.
pub struct Inbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Inbox {
    /// Serves on `listen` (`127.0.0.1:0` for a port chosen now) a robot set up with `keys`.
    pub async fn start(listen: SocketAddr, keys: RobotKeys) -> std::io::Result<Inbox> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keys,
            store: Mutex::new(Store::default()),
            total: watch::channel(0).0,
        });
        let app = Router::new()
            .route("/", get(list))
            .route("/robot/send", post(receive))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!("facility inbox stopped: {e}");
            }
        });
        Ok(Inbox { addr, shared, stop })
    }

    /// Starts on a loopback port chosen now, with a random access token and `SEC…` secret.
    pub async fn start_random() -> anyhow::Result<Inbox> {
        Inbox::start_random_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// [`Inbox::start_random`] on `listen`.
    pub async fn start_random_at(listen: SocketAddr) -> anyhow::Result<Inbox> {
        let keys = RobotKeys {
            access_token: random_hex(32)?,
            secret: format!("SEC{}", random_hex(32)?),
        };
        Ok(Inbox::start(listen, keys).await?)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where people read the messages (`GET`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The robot's webhook URL, as DingTalk shows it (it carries the access token: a secret).
    pub fn robot_url(&self) -> String {
        format!(
            "http://{}/robot/send?access_token={}",
            self.addr, self.shared.keys.access_token
        )
    }

    /// The robot's `SEC…` signing secret.
    pub fn secret(&self) -> &str {
        &self.shared.keys.secret
    }

    /// Every message kept, oldest first.
    pub fn messages(&self) -> Vec<InboxMessage> {
        self.shared.snapshot()
    }

    /// The first kept message that `want` accepts, waiting up to `timeout` for one to come.
    pub async fn wait_for(&self, timeout: Duration, want: impl Fn(&InboxMessage) -> bool) -> Option<InboxMessage> {
        let mut changed = self.shared.total.subscribe();
        let found = async {
            loop {
                changed.borrow_and_update();
                if let Some(m) = self.shared.snapshot().into_iter().find(|m| want(m)) {
                    return Some(m);
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, found).await.ok().flatten()
    }

    /// Waits for messages after the first `seen` ever received; returns them (those still
    /// kept) with the new total. Start with `seen` = 0.
    pub async fn next(&self, seen: u64) -> (u64, Vec<InboxMessage>) {
        let mut changed = self.shared.total.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we borrow it.
        let _ = changed.wait_for(|&total| total > seen).await;
        self.shared.since(seen)
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn answer(status: StatusCode, errcode: i64, errmsg: &str) -> Response {
    (status, Json(json!({ "errcode": errcode, "errmsg": errmsg }))).into_response()
}

async fn list(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({ "messages": shared.snapshot() }))
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return answer(e.status(), dingtalk::ERR_JSON, &e.body_text()),
    };
    let content = match dingtalk::parse_body(&body) {
        Ok(c) => c,
        Err(why) => return answer(StatusCode::BAD_REQUEST, dingtalk::ERR_JSON, &why),
    };
    let (mut token, mut timestamp, mut sign) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "access_token" => token = Some(v.into_owned()),
            "timestamp" => timestamp = Some(v.into_owned()),
            "sign" => sign = Some(v.into_owned()),
            _ => {}
        }
    }
    let now = chrono::Utc::now();
    let verdict = dingtalk::verify(
        &shared.keys,
        token.as_deref(),
        timestamp.as_deref(),
        sign.as_deref(),
        now.timestamp_millis(),
    );
    shared.store(InboxMessage {
        channel: "dingtalk",
        signature_verified: verdict.is_ok(),
        received_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        msgtype: content.msgtype,
        title: content.title,
        text: content.text,
        refused: verdict.as_ref().err().map(|r| r.errmsg()),
    });
    // DingTalk answers its errors with HTTP 200 and the code in the body.
    match verdict {
        Ok(()) => answer(StatusCode::OK, 0, "ok"),
        Err(r) => answer(StatusCode::OK, r.errcode(), &r.errmsg()),
    }
}
