//! Commands travel hub → gateway → device (MQTT command topic, or a Modbus write) and their
//! results travel back up to the hub.

mod common;

use std::time::Duration;

use common::{eventually, hub};
use gatehouse_proto as pb;
use gatehouse_sim::scenario::{EstateSpec, start_estate};
use sqlx::{Row, sqlite::SqliteConnectOptions};

async fn result_of(db: &std::path::Path, command_id: &str) -> Option<(bool, String, String)> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.ok()?;
    let row = sqlx::query("SELECT ok, message, device_id FROM command_results WHERE command_id = $1")
        .bind(command_id)
        .fetch_optional(&mut conn)
        .await
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2)))
}

fn command(id: &str, device: &str, action: &str, args: &[(&str, &str)]) -> pb::Command {
    pb::Command {
        command_id: id.into(),
        device_id: device.into(),
        action: action.into(),
        arguments: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        deadline_ms: pb::now_ms() + 10_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_mqtt_and_modbus_devices_and_their_results_reach_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    let links = h.hub.links();
    eventually("the gateway's stream", Duration::from_secs(20), || async {
        links.is_connected("gw-estate-a").then_some(())
    })
    .await;
    // The door controller announces itself online once it listens for commands.
    eventually(
        "the door controller online at the hub",
        Duration::from_secs(20),
        || async {
            common::stored_events(&h.db, "gw-estate-a")
                .await
                .iter()
                .any(|e| {
                    e.device_id == "door-main-gate" && matches!(&e.body, Some(pb::event::Body::Status(s)) if s.online)
                })
                .then_some(())
        },
    )
    .await;

    // A door controller over MQTT: the simulated device answers on its result topic.
    links
        .send_command(
            "gw-estate-a",
            command("k-unlock", "door-main-gate", "unlock", &[("door", "main-gate-east")]),
        )
        .await
        .expect("send");
    let (ok, message, device) = eventually("the unlock result", Duration::from_secs(20), || {
        result_of(&h.db, "k-unlock")
    })
    .await;
    assert!(ok, "{message}");
    assert_eq!(message, "unlock done");
    assert_eq!(device, "door-main-gate");

    // A Modbus write: stopping the duty pump through its enable coil.
    assert!(estate.pump_room.pump(1).is_some_and(|p| p.running));
    links
        .send_command(
            "gw-estate-a",
            command(
                "k-write",
                "pump-room-1",
                "write",
                &[("point", "pump1_enable"), ("value", "false")],
            ),
        )
        .await
        .expect("send");
    let (ok, message, _) = eventually("the write result", Duration::from_secs(20), || {
        result_of(&h.db, "k-write")
    })
    .await;
    assert!(ok, "{message}");
    eventually("the duty pump to stop", Duration::from_secs(5), || async {
        estate.pump_room.pump(1).is_some_and(|p| !p.running).then_some(())
    })
    .await;

    // What cannot be done comes back as a failed result, not silence.
    links
        .send_command(
            "gw-estate-a",
            command(
                "k-bad",
                "pump-room-1",
                "write",
                &[("point", "outlet_pressure"), ("value", "1")],
            ),
        )
        .await
        .expect("send");
    links
        .send_command("gw-estate-a", command("k-nobody", "no-such-device", "unlock", &[]))
        .await
        .expect("send");
    let (ok, message, _) = eventually("the refused write", Duration::from_secs(20), || {
        result_of(&h.db, "k-bad")
    })
    .await;
    assert!(!ok && message.contains("writable"), "{message}");
    let (ok, message, _) = eventually("the unknown device's result", Duration::from_secs(20), || {
        result_of(&h.db, "k-nobody")
    })
    .await;
    assert!(!ok && message.contains("unknown device"), "{message}");
}

/// `POST /api/v1/devices/{device}/commands`: the status and the answer.
async fn operator_command(base: &str, device: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let url = format!("{base}/api/v1/devices/{device}/commands");
    let resp = common::client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `GET /api/v1/commands/{id}` once it has left `sent`.
async fn settled(base: &str, id: i64) -> serde_json::Value {
    eventually("the command's outcome", Duration::from_secs(20), || async move {
        let c: serde_json::Value = common::authed_get(format!("{base}/api/v1/commands/{id}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (c["state"] != "sent").then_some(c)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_commands_over_http_reach_the_door_and_the_pump_room_and_their_outcome_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    eventually(
        "the door controller online at the hub",
        Duration::from_secs(20),
        || async {
            common::stored_events(&h.db, "gw-estate-a")
                .await
                .iter()
                .any(|e| {
                    e.device_id == "door-main-gate" && matches!(&e.body, Some(pb::event::Body::Status(s)) if s.online)
                })
                .then_some(())
        },
    )
    .await;

    // A door controller over MQTT, through the real gateway; the simulated device answers.
    let (status, c) = operator_command(
        &h.base,
        "door-main-gate",
        serde_json::json!({"estate": "estate-a", "action": "unlock", "args": {"door": "main-gate-east"},
                           "operator": "op-li", "reason": "resident locked out"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let c = settled(&h.base, c["id"].as_i64().expect("an id")).await;
    assert_eq!(c["state"], "ok", "{c}");
    assert_eq!(c["detail"], "unlock done");

    // A Modbus write: stopping the duty pump through its enable coil.
    assert!(estate.pump_room.pump(1).is_some_and(|p| p.running));
    let (status, c) = operator_command(
        &h.base,
        "pump-room-1",
        serde_json::json!({"estate": "estate-a", "action": "write",
                           "args": {"point": "pump1_enable", "value": "false"}, "operator": "op-li"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    assert_eq!(settled(&h.base, c["id"].as_i64().expect("an id")).await["state"], "ok");
    eventually("the duty pump to stop", Duration::from_secs(5), || async {
        estate.pump_room.pump(1).is_some_and(|p| !p.running).then_some(())
    })
    .await;

    // The gateway's refusal comes back with its reason.
    let (status, c) = operator_command(
        &h.base,
        "pump-room-1",
        serde_json::json!({"estate": "estate-a", "action": "write",
                           "args": {"point": "outlet_pressure", "value": "1"}, "operator": "op-li"}),
    )
    .await;
    assert_eq!(status, 202, "{c}");
    let c = settled(&h.base, c["id"].as_i64().expect("an id")).await;
    assert_eq!(c["state"], "failed", "{c}");
    assert!(c["detail"].as_str().is_some_and(|d| d.contains("writable")), "{c}");

    // What the pump room's kind cannot take is refused at the hub.
    let (status, c) = operator_command(
        &h.base,
        "pump-room-1",
        serde_json::json!({"estate": "estate-a", "action": "unlock", "operator": "op-li"}),
    )
    .await;
    assert_eq!(status, 422, "{c}");
}
