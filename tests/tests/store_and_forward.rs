//! Store and forward: with the hub away, the gateway keeps everything; when the hub comes
//! back, everything arrives exactly once and in order per device.

mod common;

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use common::{eventually, intercom_call_id, stored_events};
use gatehouse_gateway::config::Config;
use gatehouse_sim::{
    mqtt_device::MqttDevice,
    mqtt_login,
    net::free_local_addr,
    scenario::{EstateSpec, start_hub_at},
};
use serde_json::json;

const DEVICES: usize = 4;
const PER_DEVICE: usize = 2_500;

fn gateway_config(dir: &std::path::Path, hub: std::net::SocketAddr, mqtt: std::net::SocketAddr) -> Config {
    gateway_config_with_hubs(dir, &[hub], mqtt)
}

fn gateway_config_with_hubs(
    dir: &std::path::Path,
    hubs: &[std::net::SocketAddr],
    mqtt: std::net::SocketAddr,
) -> Config {
    let hubs: Vec<String> = hubs.iter().map(|h| format!("\"http://{h}\"")).collect();
    let mut toml = format!(
        "[gateway]\nid = \"gw-estate-a\"\nestate = \"estate-a\"\ndata_dir = \"{}\"\nhubs = [{}]\n\n\
         [mqtt]\nlisten = \"{mqtt}\"\n\n[uplink]\nplaintext = true\nbackoff_max_ms = 500\n\n",
        dir.join("gw").display(),
        hubs.join(", ")
    );
    for d in 0..DEVICES {
        toml += &format!(
            "[[devices]]\nid = \"intercom-{d}\"\nkind = \"intercom\"\narea = \"block-{d}\"\n{}\n",
            mqtt_login::test_hash_line()
        );
    }
    Config::from_toml(&toml).expect("valid gateway configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_taken_while_the_hub_is_down_arrive_exactly_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub_grpc = free_local_addr().expect("port");
    let mqtt = free_local_addr().expect("port");
    let gateway = gatehouse_gateway::start(gateway_config(dir.path(), hub_grpc, mqtt))
        .await
        .expect("gateway");

    let devices: Vec<MqttDevice> = (0..DEVICES)
        .map(|d| MqttDevice::connect(mqtt, &format!("intercom-{d}"), Some(mqtt_login::TEST_PASSWORD)))
        .collect();
    let publishers = devices.into_iter().enumerate().map(|(d, dev)| {
        tokio::spawn(async move {
            for n in 0..PER_DEVICE {
                let call_id = format!("intercom-{d}/{n:05}");
                dev.event(json!({"type": "call_answered", "call_id": call_id}))
                    .await
                    .expect("publish");
            }
            dev
        })
    });
    let mut keep = Vec::new();
    for p in publishers {
        keep.push(p.await.expect("publisher"));
    }
    let total = (DEVICES * PER_DEVICE) as u64;
    eventually("the outbox to hold every event", Duration::from_secs(60), || async {
        (gateway.metrics.outbox_depth.load(Relaxed) >= total).then_some(())
    })
    .await;
    assert_eq!(
        gateway.metrics.uplink_acked.load(Relaxed),
        0,
        "no hub yet, nothing acknowledged"
    );

    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let hub = start_hub_at(
        hub_grpc,
        "127.0.0.1:0".parse().expect("addr"),
        &dir.path().join("hub"),
        &estates,
    )
    .await
    .expect("hub");
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        (gateway.metrics.outbox_depth.load(Relaxed) == 0).then_some(())
    })
    .await;

    let stored = stored_events(&dir.path().join("hub").join("hub.db"), "gw-estate-a").await;
    let calls: Vec<&str> = stored.iter().filter_map(intercom_call_id).collect();
    assert_eq!(calls.len(), DEVICES * PER_DEVICE, "every event arrived");
    let unique: std::collections::HashSet<&str> = calls.iter().copied().collect();
    assert_eq!(unique.len(), calls.len(), "no event arrived twice");
    for d in 0..DEVICES {
        let prefix = format!("intercom-{d}/");
        let order: Vec<&str> = calls.iter().copied().filter(|c| c.starts_with(&prefix)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "device {d}'s events are in the order it sent them");
        assert_eq!(order.len(), PER_DEVICE);
    }
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers only grow");
    drop(keep);
    gateway.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_first_hub_is_down_fails_over_to_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = free_local_addr().expect("port");
    let live = free_local_addr().expect("port");
    let mqtt = free_local_addr().expect("port");
    let estates = [EstateSpec::new("estate-a", "Riverside Gardens")];
    let hub = start_hub_at(
        live,
        "127.0.0.1:0".parse().expect("addr"),
        &dir.path().join("hub"),
        &estates,
    )
    .await
    .expect("hub");
    let gateway = gatehouse_gateway::start(gateway_config_with_hubs(dir.path(), &[dead, live], mqtt))
        .await
        .expect("gateway");
    let device = MqttDevice::connect(mqtt, "intercom-0", Some(mqtt_login::TEST_PASSWORD));
    device
        .event(json!({"type": "emergency_call", "from": "B1-0101"}))
        .await
        .expect("publish");
    eventually(
        "the event to be acknowledged by the second hub",
        Duration::from_secs(30),
        || async {
            (gateway.metrics.uplink_acked.load(Relaxed) >= 1 && gateway.metrics.outbox_depth.load(Relaxed) == 0)
                .then_some(())
        },
    )
    .await;
    let stored = stored_events(&dir.path().join("hub").join("hub.db"), "gw-estate-a").await;
    assert!(stored.iter().any(|e| matches!(&e.body, Some(gatehouse_proto::event::Body::Intercom(i)) if i.r#type == gatehouse_proto::IntercomEventType::EmergencyCall as i32)));
    gateway.shutdown().await;
    hub.shutdown().await;
}
