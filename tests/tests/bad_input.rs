//! Bad input gets a clear error or counter, and the path keeps serving.

mod common;

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use common::{eventually, find_alarm, hub};
use gatehouse_gateway::metrics::{ModbusFailure, MqttDenial, RejectReason};
use gatehouse_sim::{
    pumproom::{ExceptionCode, Fault},
    scenario::{EstateSpec, start_estate},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_mistyped_and_oversized_publishes_are_counted_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    let door = &estate.door.0;
    let m = &estate.gateway.metrics;

    let ev = "gatehouse/v1/door-main-gate/event".to_string();
    door.publish_raw(ev.clone(), b"{\"type\": \"door_forced\", ".to_vec())
        .await
        .expect("publish");
    door.publish_raw(
        "gatehouse/v1/no-such-door/event".into(),
        br#"{"type":"door_forced","door":"x"}"#.to_vec(),
    )
    .await
    .expect("publish");
    door.publish_raw(
        ev.clone(),
        br#"{"type":"door_held_open","door":"D1","seconds":"long"}"#.to_vec(),
    )
    .await
    .expect("publish");
    door.publish_raw(ev.clone(), br#"{"type":"self_destruct"}"#.to_vec())
        .await
        .expect("publish");
    let mut big = br#"{"type":"door_forced","door":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 20 * 1024));
    big.extend(br#""}"#);
    door.publish_raw(ev.clone(), big).await.expect("publish");

    // A publish under another device id is refused by the door's topic rights before any
    // translation (so never `unknown_device`, which only anonymous test clients reach).
    eventually("every rejection to be counted", Duration::from_secs(20), || async {
        RejectReason::ALL
            .iter()
            .filter(|r| !matches!(r, RejectReason::BadTopic | RejectReason::UnknownDevice))
            .all(|r| m.rejected(*r) == 1)
            .then_some(())
            .filter(|()| m.mqtt_denials(MqttDenial::PublishNotOwn) == 1)
    })
    .await;
    assert_eq!(m.rejected(RejectReason::UnknownDevice), 0);

    // The same session still gets a good event through to an alarm.
    estate.door.forced("main-gate-east").await.expect("publish");
    eventually("the good event's alarm", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| a["condition"] == "door_forced:main-gate-east")
    })
    .await;
    assert_eq!(
        find_alarm(&h.base, |a| a["device"] == "no-such-door").await,
        None,
        "nothing from the unknown device reached the hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_device_that_stops_answering_raises_one_offline_alarm_and_clears_it_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-b", "Lakeview Court")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    let m = &estate.gateway.metrics;
    eventually("the first readings", Duration::from_secs(20), || async {
        (m.uplink_acked.load(Relaxed) > 0).then_some(())
    })
    .await;

    estate
        .pump_room
        .set_fault(Fault::Exception(ExceptionCode::ServerDeviceFailure));
    eventually("a counted Modbus exception", Duration::from_secs(10), || async {
        (m.modbus_failures(ModbusFailure::Exception) > 0).then_some(())
    })
    .await;

    estate.pump_room.set_fault(Fault::NoAnswer);
    let offline = eventually("a P4 offline alarm for the pump room", Duration::from_secs(30), || {
        find_alarm(&h.base, |a| {
            a["device"] == "pump-room-1" && a["condition"] == "offline" && a["active"] == true
        })
    })
    .await;
    assert_eq!(offline["priority"], "P4");
    assert!(
        m.modbus_failures(ModbusFailure::Timeout) > 0,
        "the silence was seen as timeouts"
    );
    // Several more polls fail; the alarm is still the one alarm, raised once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = find_alarm(&h.base, |a| a["id"] == offline["id"])
        .await
        .expect("still listed");
    assert_eq!(again["activations"], 1, "one offline report, not one per poll");

    estate.pump_room.set_fault(Fault::None);
    eventually("the offline alarm to clear", Duration::from_secs(40), || {
        find_alarm(&h.base, |a| a["id"] == offline["id"] && a["active"] == false)
    })
    .await;
}
