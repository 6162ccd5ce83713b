//! Devices in their own protocols raise the right alarms at the hub, end to end: a fire
//! panel over SIA DC-09 (Contact ID), a fire panel behind a Modbus gateway module, and a
//! door controller publishing its vendor's JSON (uhppoted-mqtt).

mod common;

use std::time::Duration;

use common::{eventually, find_alarm, hub};
use gatehouse_sim::{
    firepanel::{
        dc09::{Answer, Dc09Panel, Format, Transport},
        modbus::ZoneMapPanel,
    },
    mqtt_device::MqttDevice,
    mqtt_login,
    net::free_local_addr,
    scenario::EstateSpec,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc09_modbus_and_vendor_json_devices_raise_their_alarms_at_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-c", "Maple Heights")];
    let h = hub(dir.path(), &estates).await;

    let zone_panel = ZoneMapPanel::new(16);
    let modbus = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let modbus_addr = modbus.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(zone_panel.clone().serve(modbus, stop.clone()));

    let mqtt = free_local_addr().expect("port");
    let uhppoted = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/vendor/uhppoted-mqtt.toml"
    ))
    .expect("shipped mapping");
    let config = format!(
        r#"[gateway]
id = "gw-estate-c"
estate = "estate-c"
data_dir = "{data}"
hubs = ["http://{hub}"]

[uplink]
plaintext = true

[mqtt]
listen = "{mqtt}"

[dc09]
listen = "127.0.0.1:0"

[[devices]]
id = "fire-panel-dc09"
kind = "fire_panel"
area = "fire-control-room"
[devices.dc09]
account = "1234"
key = "estate-c-panel01"

[[devices]]
id = "door-controller-east"
kind = "door"
area = "east-gate"
mqtt_password_hash = "{hash}"
[devices.vendor]
mapping = "uhppoted-mqtt"
topic = "uhppoted/gateway/events"
device_key = "405419896"

{modbus_panel}
{uhppoted}
"#,
        data = dir.path().join("gw").display(),
        hub = h.hub.grpc_addr(),
        hash = mqtt_login::test_password_hash(),
        modbus_panel = zone_panel.gateway_config("fire-panel-modbus", "block-5", &modbus_addr.to_string()),
    );
    let gateway = gatehouse_gateway::start(gatehouse_gateway::config::Config::from_toml(&config).expect("config"))
        .await
        .expect("gateway");

    // DC-09, encrypted Contact ID: 1110 on zone 17, then its 3110 restore.
    let key = gatehouse_gateway::adapters::dc09::crypto::Key::from_text("estate-c-panel01").expect("key");
    let mut panel = Dc09Panel::new(
        gateway.dc09_addr.expect("dc09 bound"),
        "1234",
        Some(key),
        Transport::Tcp,
        Format::ContactId,
    );
    assert_eq!(panel.fire_alarm(17).await.expect("sent"), Answer::Ack);
    let fire = eventually("a P1 fire alarm for zone 17", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| {
            a["device"] == "fire-panel-dc09" && a["condition"] == "fire_alarm:17"
        })
    })
    .await;
    assert_eq!(fire["priority"], "P1");
    assert_eq!(fire["active"], true);
    assert_eq!(fire["area"], "fire-control-room");
    assert_eq!(panel.fire_restore(17).await.expect("sent"), Answer::Ack);
    eventually("the 3110 restore to clear it", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| a["id"] == fire["id"] && a["active"] == false)
    })
    .await;

    // Modbus zone map: zone 5 goes to fire.
    zone_panel.fire(5);
    let modbus_fire = eventually("a P1 fire alarm from the Modbus panel", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| {
            a["device"] == "fire-panel-modbus" && a["condition"] == "fire_alarm:5"
        })
    })
    .await;
    assert_eq!(modbus_fire["priority"], "P1");

    // Vendor JSON: uhppoted-mqtt's event record for a door forced open (reason 38).
    // uhppoted-mqtt logs in as the door controller it publishes for (its status and will
    // go to that door's topics).
    let controller = MqttDevice::connect(mqtt, "door-controller-east", Some(mqtt_login::TEST_PASSWORD));
    let payload = json!({"message": {"event": {
        "device-id": 405419896, "event-id": 73, "event-type": 3, "access-granted": false,
        "door-id": 2, "direction": 1, "card-number": 0, "timestamp": "2026-11-26 02:47:00 CST",
        "event-reason": 38, "event-reason-text": "forced open"
    }}});
    controller
        .publish_raw("uhppoted/gateway/events".into(), payload.to_string().into_bytes())
        .await
        .expect("publish");
    let forced = eventually(
        "a P2 forced-door alarm from the vendor JSON",
        Duration::from_secs(20),
        || {
            find_alarm(&h.base, |a| {
                a["device"] == "door-controller-east" && a["condition"] == "door_forced:2"
            })
        },
    )
    .await;
    assert_eq!(forced["priority"], "P2");
    assert_eq!(forced["area"], "east-gate");
    stop.cancel();
    gateway.shutdown().await;
}
