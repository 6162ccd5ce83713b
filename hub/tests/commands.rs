//! Operator commands to devices through a running hub: real HTTP in, a gateway's stream
//! played by hand over real gRPC, real SQLite, a manual clock for the deadline.

use std::path::Path;

use gatehouse_hub::{ManualClock, RunningHub};
use gatehouse_proto::{CommandResult, DeviceKind, Downlink, downlink};
use serde_json::{Value, json};

mod common;

use common::{Link, WAIT, get, http};

const GW: &str = "gw-1";
const ESTATE: &str = "estate-a";
const T0: i64 = 1_750_000_000_000;

async fn start(db: &Path, clock: &ManualClock) -> RunningHub {
    common::start_at(common::config(db, common::ESTATE_A), clock).await
}

async fn connect(hub: &RunningHub) -> Link {
    Link::connect_kinds(
        hub,
        GW,
        ESTATE,
        &[
            ("door-1", DeviceKind::Door),
            ("panel-1", DeviceKind::FirePanel),
            ("plc-1", DeviceKind::Modbus),
        ],
    )
    .await
}

async fn command(hub: &RunningHub, device: &str, body: Value) -> (u16, Value) {
    http(hub, "POST", &format!("/api/v1/devices/{device}/commands"), Some(body)).await
}

/// The next downlink message must be a command.
async fn received(link: &mut Link) -> gatehouse_proto::Command {
    match link.next().await {
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Command(c)),
        })) => c,
        other => panic!("expected a Command, got {other:?}"),
    }
}

/// Polls `GET /commands/{id}` until it leaves `sent` (the result goes through the writer).
async fn settled(hub: &RunningHub, id: i64) -> Value {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let c = get(hub, &format!("/api/v1/commands/{id}")).await;
        if c["state"] != "sent" || tokio::time::Instant::now() > until {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads the SSE stream until it holds `needle`.
async fn stream_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn unlock_reaches_the_gateway_and_its_answer_shows_in_get_and_on_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    let mut stream = common::admin_client()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    stream_until(&mut stream, &mut seen, "event: hello").await;

    let (status, c) = command(
        &hub,
        "door-1",
        json!({"estate": ESTATE, "action": "unlock", "args": {"door": "D1"}, "operator": "op-li", "reason": "resident locked out"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["state"], "sent");
    // Who asked is the caller (the test token), never the body's "operator".
    assert_eq!(c["operator"], "test-admin");
    assert_eq!(c["reason"], "resident locked out");

    let sent = received(&mut link).await;
    assert_eq!(sent.command_id, format!("cmd-{id}"));
    assert_eq!(sent.device_id, "door-1");
    assert_eq!(sent.action, "unlock");
    assert_eq!(sent.arguments.get("door").map(String::as_str), Some("D1"));
    assert_eq!(sent.deadline_ms, T0 + 10_000);

    link.command_result(CommandResult {
        command_id: sent.command_id,
        device_id: sent.device_id,
        ok: true,
        message: "unlock done".into(),
    })
    .await;
    let c = settled(&hub, id).await;
    assert_eq!(c["state"], "ok", "{c}");
    assert_eq!(c["detail"], "unlock done");
    assert!(c["finished_at"].is_string());

    stream_until(&mut stream, &mut seen, "\"change\":\"ok\"").await;
    // The stream's data is the command exactly as GET shows it.
    let line = seen
        .lines()
        .find(|l| l.starts_with("data:") && l.contains("\"change\":\"ok\""))
        .unwrap();
    let event: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(event["type"], "command");
    assert_eq!(event["id"], id);
    assert_eq!(event["data"], c);
    assert!(seen.contains("event: command"), "{seen}");

    // A late timer finds it settled.
    clock.advance_s(60);
    hub.tick_now().await.unwrap();
    assert_eq!(get(&hub, &format!("/api/v1/commands/{id}")).await["state"], "ok");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_refusal_by_the_device_is_kept_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    let (status, c) = command(
        &hub,
        "plc-1",
        json!({"estate": ESTATE, "action": "write", "args": {"point": "pump1_reset", "value": "1"}, "operator": "op-li"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let sent = received(&mut link).await;
    assert_eq!(sent.action, "write");
    link.command_result(CommandResult {
        command_id: sent.command_id,
        device_id: sent.device_id,
        ok: false,
        message: "point \"pump1_reset\" of device \"plc-1\" is not writable".into(),
    })
    .await;
    let c = settled(&hub, c["id"].as_i64().unwrap()).await;
    assert_eq!(c["state"], "failed");
    assert_eq!(c["detail"], "point \"pump1_reset\" of device \"plc-1\" is not writable");
    hub.shutdown().await;
}

#[tokio::test]
async fn what_a_device_cannot_take_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;

    for (device, body, want) in [
        (
            "door-1",
            json!({"estate": ESTATE, "action": "reset", "operator": "op", "reason": "test"}),
            422,
        ),
        (
            "panel-1",
            json!({"estate": ESTATE, "action": "unlock", "operator": "op", "reason": "test"}),
            422,
        ),
        (
            "plc-1",
            json!({"estate": ESTATE, "action": "write", "args": {"point": "p"}, "operator": "op"}),
            422,
        ),
        ("door-1", json!({"estate": ESTATE, "action": "unlock"}), 422),
        (
            "door-9",
            json!({"estate": ESTATE, "action": "unlock", "operator": "op", "reason": "test"}),
            404,
        ),
        (
            "door-1",
            json!({"estate": "estate-b", "action": "unlock", "operator": "op", "reason": "test"}),
            404,
        ),
        (
            "door-1",
            json!({"estate": ESTATE, "action": "unlock", "operator": "op", "reason": "test", "incident": 99}),
            404,
        ),
        (
            "door-1",
            json!({"estate": ESTATE, "action": "unlock", "operator": "op", "reason": "test", "colour": "red"}),
            400,
        ),
    ] {
        let (status, answer) = command(&hub, device, body.clone()).await;
        assert_eq!(status, want, "{device} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = command(
        &hub,
        "door-1",
        json!({"estate": ESTATE, "action": "reset", "operator": "op", "reason": "test"}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        answer["detail"].as_str().unwrap().contains("unlock, lock, release"),
        "{answer}"
    );
    let (status, _) = http(&hub, "GET", "/api/v1/commands/1", None).await;
    assert_eq!(status, 404, "nothing was recorded");

    // Nothing reached the gateway: the next thing it gets is the command that is allowed.
    let (status, c) = command(
        &hub,
        "panel-1",
        json!({"estate": ESTATE, "action": "silence", "operator": "op", "reason": "test"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let sent = received(&mut link).await;
    assert_eq!((sent.device_id.as_str(), sent.action.as_str()), ("panel-1", "silence"));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_gateway_without_a_stream_makes_the_command_gateway_offline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let link = connect(&hub).await;
    drop(link);
    let until = tokio::time::Instant::now() + WAIT;
    while hub.links().is_connected(GW) {
        assert!(tokio::time::Instant::now() < until, "the stream ends");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, c) = command(
        &hub,
        "door-1",
        json!({"estate": ESTATE, "action": "unlock", "operator": "op", "reason": "test"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    assert_eq!(c["state"], "gateway_offline");
    assert!(c["detail"].as_str().unwrap().contains("not connected"), "{c}");
    // Its timer later finds it settled.
    clock.advance_s(60);
    hub.tick_now().await.unwrap();
    assert_eq!(
        get(&hub, &format!("/api/v1/commands/{}", c["id"])).await["state"],
        "gateway_offline"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn no_answer_by_the_deadline_is_timed_out_and_a_late_answer_is_still_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    let (status, c) = command(
        &hub,
        "door-1",
        json!({"estate": ESTATE, "action": "release", "operator": "op", "reason": "test"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let id = c["id"].as_i64().unwrap();
    let sent = received(&mut link).await;

    clock.advance_s(14);
    hub.tick_now().await.unwrap();
    assert_eq!(
        get(&hub, &format!("/api/v1/commands/{id}")).await["state"],
        "sent",
        "within the grace"
    );
    clock.advance_s(1);
    hub.tick_now().await.unwrap();
    let c = get(&hub, &format!("/api/v1/commands/{id}")).await;
    assert_eq!(c["state"], "timed_out", "{c}");

    link.command_result(CommandResult {
        command_id: sent.command_id,
        device_id: sent.device_id,
        ok: true,
        message: "release done".into(),
    })
    .await;
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let c = get(&hub, &format!("/api/v1/commands/{id}")).await;
        if c["state"] == "ok" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "the late answer is kept: {c}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_command_for_an_incident_is_on_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock).await;
    let mut link = connect(&hub).await;
    let (status, incident) = http(
        &hub,
        "POST",
        "/api/v1/incidents",
        Some(json!({"estate": ESTATE, "category": "fire", "title": "smoke in block 3", "operator": "op-li"})),
    )
    .await;
    assert_eq!(status, 201, "{incident}");
    let iid = incident["id"].as_i64().unwrap();

    let (status, c) = command(
        &hub,
        "panel-1",
        json!({"estate": ESTATE, "action": "silence", "operator": "op-li", "reason": "false alarm confirmed", "incident": iid}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    assert_eq!(c["incident_id"], iid);
    let sent = received(&mut link).await;
    link.command_result(CommandResult {
        command_id: sent.command_id,
        device_id: sent.device_id,
        ok: true,
        message: "silence written to register 40010".into(),
    })
    .await;
    assert_eq!(settled(&hub, c["id"].as_i64().unwrap()).await["state"], "ok");

    // The estate's record of commands, and the incident's.
    for query in [
        format!("estate={ESTATE}"),
        format!("incident={iid}"),
        "device=panel-1".into(),
    ] {
        let listed = get(&hub, &format!("/api/v1/commands?{query}")).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{query}: {listed}");
        assert_eq!(listed[0]["reason"], "false alarm confirmed");
    }
    let listed = get(&hub, "/api/v1/commands?device=door-1").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    let detail = get(&hub, &format!("/api/v1/incidents/{iid}")).await;
    let timeline: Vec<String> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        timeline
            .iter()
            .any(|t| t == "command silence to panel-1 sent by test-admin: false alarm confirmed"),
        "{timeline:?}"
    );
    assert!(
        timeline
            .iter()
            .any(|t| t == "command silence to panel-1: ok (silence written to register 40010)"),
        "{timeline:?}"
    );
    hub.shutdown().await;
}
