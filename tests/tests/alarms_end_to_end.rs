//! Device → gateway → hub → alarm, with the real broker, real Modbus TCP, real gRPC and
//! real SQLite on loopback.

mod common;

use std::time::Duration;

use common::{eventually, find_alarm, hub};
use gatehouse_sim::scenario::{EstateSpec, start_estate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_forced_published_over_mqtt_is_listed_as_a_p2_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");

    estate.door.forced("main-gate-east").await.expect("publish");

    let alarm = eventually("a P2 door_forced alarm", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| a["condition"] == "door_forced:main-gate-east")
    })
    .await;
    assert_eq!(alarm["priority"], "P2");
    assert_eq!(alarm["category"], "security");
    assert_eq!(alarm["estate"], "estate-a");
    assert_eq!(alarm["device"], "door-main-gate");
    assert_eq!(alarm["area"], "main-gate", "the area comes from the gateway's registry");
    assert_eq!(alarm["active"], true);
    assert_eq!(alarm["acknowledged"], false);

    let p2 = common::alarms(&h.base, "priority=P2&estate=estate-a").await;
    assert!(
        p2.iter().any(|a| a["id"] == alarm["id"]),
        "the priority/estate filters find it"
    );
    let p1 = common::alarms(&h.base, "priority=P1").await;
    assert!(p1.is_empty(), "nothing else was raised: {p1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pump_trip_raises_p3_alarms_and_pressure_recovery_clears_the_low_pressure_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let estates = [EstateSpec::new("estate-b", "Lakeview Court")];
    let h = hub(dir.path(), &estates).await;
    let estate = start_estate(estates[0].clone(), h.hub.grpc_addr(), dir.path())
        .await
        .expect("estate");
    // Let the first full reading arrive so the trip is a change, not the initial state.
    eventually("the pump room's first readings", Duration::from_secs(20), || async {
        (estate
            .gateway
            .metrics
            .uplink_acked
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0)
        .then_some(())
    })
    .await;

    estate.pump_room.trip_pump(1);

    let fault = eventually("a P3 pump1_fault alarm", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| {
            a["condition"] == "point:pump1_fault:state" && a["active"] == true
        })
    })
    .await;
    assert_eq!(fault["priority"], "P3");
    assert_eq!(fault["category"], "plant");
    let low = eventually("an active low-pressure alarm", Duration::from_secs(20), || {
        find_alarm(&h.base, |a| {
            a["condition"] == "point:outlet_pressure:low" && a["active"] == true
        })
    })
    .await;
    assert_eq!(low["priority"], "P3");

    // The standby pump takes over and the pressure recovers past the limit and its deadband.
    let cleared = eventually("the low-pressure alarm to clear", Duration::from_secs(40), || {
        find_alarm(&h.base, |a| a["id"] == low["id"] && a["active"] == false)
    })
    .await;
    assert_eq!(cleared["acknowledged"], false, "clearing does not acknowledge");
    assert!(estate.pump_room.pressure() > 0.27, "the model's pressure recovered");
}
