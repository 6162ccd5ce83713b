//! The live stream's ids and catch-up, over real HTTP against a running hub fed by a gateway
//! stream over real gRPC: a client that reconnects with `Last-Event-ID` (or `?after=`) gets
//! exactly the events it missed, in order, then live ones; one that cannot be caught up
//! (another boot, too old, in the future, not an id) gets `reset`.

use std::path::Path;
use std::sync::Arc;

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::event::Body;
use gatehouse_proto::{DeviceKind, DoorEvent, DoorEventType};
use serde_json::Value;

mod common;

use common::{Link, WAIT, http};

const DOORS: [&str; 6] = ["door-1", "door-2", "door-3", "door-4", "door-5", "door-6"];

fn config(db: &Path, replay: u32) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "{}"
hub_id = "hub-test"

[tls]
plaintext = true

[[gateways]]
id = "gw-1"
estate = "estate-a"

[api]
stream_replay = {replay}

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
"#,
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path, replay: u32) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db, replay), Arc::new(ManualClock::new(1_750_000_000_000)))
        .await
        .expect("hub starts")
}

async fn connect(hub: &RunningHub) -> Link {
    let doors: Vec<(&str, DeviceKind)> = DOORS.iter().map(|d| (*d, DeviceKind::Door)).collect();
    Link::connect_kinds(hub, "gw-1", "estate-a", &doors).await
}

/// A forced door: an alarm (and what follows it) on the stream. Returns once committed,
/// which is after its stream events were published.
async fn force(link: &mut Link, device: &str) {
    let body = Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: "D1".into(),
        seconds: 0,
    });
    link.send(vec![(device, "main gate", body)]).await;
}

/// One SSE event as sent.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    event: String,
    id: String,
    data: String,
}

impl Frame {
    fn seq(&self) -> u64 {
        let (_, seq) = self.id.split_once('-').unwrap_or_else(|| panic!("id {:?}", self.id));
        seq.parse().expect("numeric seq")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A client of `GET /api/v1/stream`.
struct Client {
    response: reqwest::Response,
    buf: String,
}

impl Client {
    /// Opens the stream, with `Last-Event-ID: last_id` if given, at `path_query` (`""` or
    /// `"?after=..."`).
    async fn open(hub: &RunningHub, path_query: &str, last_id: Option<&str>) -> Client {
        let mut req = common::admin_client().get(format!("http://{}/api/v1/stream{path_query}", hub.http_addr()));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.expect("HTTP answers");
        assert_eq!(response.status(), 200);
        Client {
            response,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame {
                    event: String::new(),
                    id: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    let field = |name: &str| {
                        line.strip_prefix(name)
                            .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
                    };
                    if let Some(v) = field("event:") {
                        f.event = v;
                    } else if let Some(v) = field("id:") {
                        f.id = v;
                    } else if let Some(v) = field("data:") {
                        f.data.push_str(&v);
                    }
                }
                if f.event.is_empty() && f.data.is_empty() {
                    continue; // a keep-alive comment
                }
                return f;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("the stream sends within the wait")
                .expect("the stream is readable")
                .expect("the stream is open");
            self.buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The `hello` every stream starts with: (its id, its data).
    async fn hello(&mut self) -> (String, Value) {
        let f = self.next().await;
        assert_eq!(f.event, "hello", "{f:?}");
        (f.id.clone(), f.json())
    }

    /// Events until (and with) the one numbered `seq`.
    async fn until(&mut self, seq: u64) -> Vec<Frame> {
        let mut got = Vec::new();
        while got.last().is_none_or(|f: &Frame| f.seq() < seq) {
            got.push(self.next().await);
        }
        got
    }
}

/// The last published sequence number, as a fresh stream's `hello` says, and the boot.
async fn position(hub: &RunningHub) -> (i64, u64) {
    let (_, hello) = Client::open(hub, "", None).await.hello().await;
    (
        hello["boot"].as_i64().expect("boot"),
        hello["seq"].as_u64().expect("seq"),
    )
}

fn assert_consecutive(frames: &[Frame], boot: i64, from: u64) {
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.id, format!("{boot}-{}", from + i as u64), "{frames:#?}");
        assert_eq!(f.json()["type"], f.event, "the data's type is the event name: {f:?}");
    }
}

#[tokio::test]
async fn reconnecting_with_last_event_id_gets_exactly_the_missed_events_in_order_then_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db"), 10_000).await;
    let mut link = connect(&hub).await;

    // A reference client that stays connected throughout sees every event.
    let mut reference = Client::open(&hub, "", None).await;
    let (ref_hello_id, hello) = reference.hello().await;
    let boot = hello["boot"].as_i64().unwrap();
    assert_eq!(hello["hub"], "hub-test");
    let start_seq = hello["seq"].as_u64().unwrap();
    assert_eq!(ref_hello_id, format!("{boot}-{start_seq}"));

    let mut client = Client::open(&hub, "", None).await;
    client.hello().await;
    force(&mut link, "door-1").await;
    let (_, p1) = position(&hub).await;
    assert!(p1 > start_seq, "a forced door is published");
    let before = client.until(p1).await;
    assert_consecutive(&before, boot, start_seq + 1);
    let left_at = before.last().unwrap().id.clone();
    drop(client);

    force(&mut link, "door-2").await;
    force(&mut link, "door-3").await;
    let (_, p2) = position(&hub).await;
    assert!(p2 > p1);

    let mut client = Client::open(&hub, "", Some(&left_at)).await;
    let (hello_id, hello) = client.hello().await;
    assert_eq!(hello_id, left_at, "hello's id is where the stream goes on from");
    assert_eq!(hello["seq"].as_u64(), Some(p2));
    assert_eq!(hello["boot"].as_i64(), Some(boot));
    let missed = client.until(p2).await;
    assert_consecutive(&missed, boot, p1 + 1);

    let seen = reference.until(p2).await;
    assert_eq!(
        missed[..],
        seen[seen.len() - missed.len()..],
        "the same events as the live client's"
    );
    assert!(missed.iter().any(|f| f.event == "alarm" && f.data.contains("door-2")));
    assert!(missed.iter().any(|f| f.event == "alarm" && f.data.contains("door-3")));

    // Then live ones, without a gap or a repeat.
    force(&mut link, "door-4").await;
    let (_, p3) = position(&hub).await;
    let live = client.until(p3).await;
    assert_consecutive(&live, boot, p2 + 1);
    assert_eq!(live, reference.until(p3).await);
    hub.shutdown().await;
}

#[tokio::test]
async fn after_query_resumes_like_the_header_and_the_header_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db"), 10_000).await;
    let mut link = connect(&hub).await;
    force(&mut link, "door-1").await;
    let (boot, p1) = position(&hub).await;
    force(&mut link, "door-2").await;
    let (_, p2) = position(&hub).await;

    let mut client = Client::open(&hub, &format!("?after={boot}-{p1}"), None).await;
    let (id, _) = client.hello().await;
    assert_eq!(id, format!("{boot}-{p1}"));
    let missed = client.until(p2).await;
    assert_consecutive(&missed, boot, p1 + 1);

    // An EventSource keeps its URL and sends the newer id as the header: the header wins.
    let mut client = Client::open(&hub, &format!("?after={boot}-{p1}"), Some(&format!("{boot}-{p2}"))).await;
    let (id, _) = client.hello().await;
    assert_eq!(id, format!("{boot}-{p2}"));
    force(&mut link, "door-3").await;
    let next = client.next().await;
    assert_eq!(next.seq(), p2 + 1, "no replay, no reset: {next:?}");

    // A malformed ?after= is the caller's mistake: 400 with the API's error body.
    for bad in ["garbage", "1-", "-1", "1-2-3", "x-1"] {
        let (status, body) = http(&hub, "GET", &format!("/api/v1/stream?after={bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    // An empty one is no position at all.
    let mut client = Client::open(&hub, "?after=", None).await;
    let (id, hello) = client.hello().await;
    assert_eq!(id, format!("{boot}-{}", hello["seq"]));
    hub.shutdown().await;
}

/// Opens with `Last-Event-ID: id` and expects `hello` then `reset` with `reason`; both carry
/// the current position, so the next reconnect resumes from there.
async fn expect_reset(hub: &RunningHub, id: &str, reason: &str) {
    let (boot, last) = position(hub).await;
    let mut client = Client::open(hub, "", Some(id)).await;
    let (hello_id, _) = client.hello().await;
    let reset = client.next().await;
    assert_eq!(reset.event, "reset", "{id}: {reset:?}");
    assert_eq!(reset.json()["reason"], reason, "{id}");
    assert_eq!(hello_id, format!("{boot}-{last}"));
    assert_eq!(reset.id, format!("{boot}-{last}"));
}

#[tokio::test]
async fn ids_that_cannot_be_caught_up_get_hello_then_reset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let hub = start(&db, 2).await;
    let mut link = connect(&hub).await;
    for door in ["door-1", "door-2", "door-3"] {
        force(&mut link, door).await;
    }
    let (boot, last) = position(&hub).await;
    assert!(last > 3, "each forced door publishes at least one event");

    expect_reset(&hub, &format!("{boot}-{}", last + 1), "future").await;
    expect_reset(&hub, &format!("{boot}-0"), "too_old").await;
    expect_reset(&hub, &format!("{boot}-{}", last - 3), "too_old").await;
    expect_reset(&hub, &format!("{}-{last}", boot + 1), "other_boot").await;
    for bad in [
        "garbage",
        "17",
        "-3",
        format!("{boot}-{last}-1").as_str(),
        format!("{boot}- {last}").as_str(),
    ] {
        expect_reset(&hub, bad, "malformed").await;
    }

    // The ring (2 events) still holds the last two.
    let mut client = Client::open(&hub, "", Some(&format!("{boot}-{}", last - 2))).await;
    client.hello().await;
    assert_consecutive(&client.until(last).await, boot, last - 1);

    // A restarted hub is another boot: its numbers start again, so an old id means nothing.
    drop(link);
    hub.shutdown().await;
    let hub = start(&db, 2).await;
    let (boot2, last2) = position(&hub).await;
    assert_ne!(boot2, boot);
    assert_eq!(last2, 0);
    expect_reset(&hub, &format!("{boot}-{last}"), "other_boot").await;
    expect_reset(&hub, &format!("{boot}-0"), "other_boot").await;
    hub.shutdown().await;
}
