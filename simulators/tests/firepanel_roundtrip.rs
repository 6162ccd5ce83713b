//! The fire-panel simulators against a running gateway: DC-09 over TCP and UDP, plain and
//! encrypted, Contact ID and SIA DCS; and the Modbus zone-map panel.
use std::time::Duration;

use gatehouse_gateway::adapters::dc09::crypto::Key;
use gatehouse_proto::{FireEventType, event::Body};
use gatehouse_sim::firepanel::{
    dc09::{Answer, Dc09Panel, Format, PanelError, Transport},
    modbus::{FAULT, ZoneMapPanel},
};

#[tokio::test]
async fn simulated_panels_round_trip_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modbus = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let modbus_addr = modbus.local_addr().expect("addr");
    let zone_panel = ZoneMapPanel::new(8);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(zone_panel.clone().serve(modbus, stop.clone()));
    let text = format!(
        r#"
[gateway]
id = "gw-sim"
estate = "estate-a"
data_dir = "{}"
hubs = ["http://127.0.0.1:1"]
[uplink]
plaintext = true

[dc09]
listen = "127.0.0.1:0"
[[devices]]
id = "fp-cid"
kind = "fire_panel"
area = "a"
[devices.dc09]
account = "1234"
[[devices]]
id = "fp-sia-enc"
kind = "fire_panel"
area = "b"
[devices.dc09]
account = "ABCD"
key_hex = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
{}
"#,
        dir.path().display(),
        zone_panel.gateway_config("fp-modbus", "c", &modbus_addr.to_string())
    );
    let gw = gatehouse_gateway::start(gatehouse_gateway::config::Config::from_toml(&text).expect("config"))
        .await
        .expect("start");
    let addr = gw.dc09_addr.expect("dc09");
    let mut cid = Dc09Panel::new(addr, "1234", None, Transport::Tcp, Format::ContactId);
    assert_eq!(cid.fire_alarm(17).await.expect("sent"), Answer::Ack);
    assert_eq!(cid.fire_restore(17).await.expect("sent"), Answer::Ack);
    assert_eq!(cid.poll().await.expect("sent"), Answer::Ack);
    let key = Key::from_hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").expect("key");
    let mut sia = Dc09Panel::new(addr, "ABCD", Some(key), Transport::Udp, Format::SiaDcs);
    // A panel whose clock is 5 minutes slow: NAKed once, takes the receiver's time, ACKed.
    sia.set_clock_offset_ms(-300_000);
    assert_eq!(sia.trouble(3).await.expect("sent"), Answer::Ack);
    assert_eq!(sia.pump_failure(4).await.expect("sent"), Answer::Ack);
    let mut stranger = Dc09Panel::new(addr, "9999", None, Transport::Udp, Format::ContactId);
    assert!(matches!(stranger.fire_alarm(1).await, Err(PanelError::Refused { .. })));
    zone_panel.set(2, FAULT, true);
    zone_panel.fire(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = gw.outbox.read_after(0, 100).await.expect("outbox");
        let fires: Vec<(String, i32, String, String)> = events
            .iter()
            .filter_map(|e| match &e.body {
                Some(Body::Fire(f)) => Some((e.device_id.clone(), f.r#type, f.zone.clone(), f.raw_code.clone())),
                _ => None,
            })
            .collect();
        let want = vec![
            (
                "fp-cid".to_string(),
                FireEventType::FireAlarm as i32,
                "17".to_string(),
                "1110".to_string(),
            ),
            (
                "fp-cid".into(),
                FireEventType::FireAlarmRestore as i32,
                "17".into(),
                "3110".into(),
            ),
            (
                "fp-sia-enc".into(),
                FireEventType::Fault as i32,
                "3".into(),
                "FT".into(),
            ),
            (
                "fp-sia-enc".into(),
                FireEventType::Supervisory as i32,
                "4".into(),
                "FS".into(),
            ),
        ];
        let dc09: Vec<_> = fires.iter().filter(|f| f.0 != "fp-modbus").cloned().collect();
        let modbus: Vec<_> = fires
            .iter()
            .filter(|f| f.0 == "fp-modbus")
            .map(|f| (f.1, f.2.clone()))
            .collect();
        if dc09 == want
            && modbus.contains(&(FireEventType::Fault as i32, "2".into()))
            && modbus.contains(&(FireEventType::FireAlarm as i32, "5".into()))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dc09 {dc09:?} modbus {modbus:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    gw.shutdown().await;
}
