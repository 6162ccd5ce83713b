//! Phase 4 of the bench: QoS 1 publishes through a broker to one subscriber.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use gatehouse_proto as pb;

pub(super) async fn embedded_broker() -> anyhow::Result<SocketAddr> {
    // The gateway serves MQTT as its intake only (a publish goes to the outbox, never to
    // other clients), so this publisher → subscriber leg has nothing to measure there; the
    // gateway's MQTT intake figures come from `gatehouse-sim load`.
    anyhow::bail!("the gateway's MQTT server forwards no publishes to subscribers (intake only)")
}

/// `clients` QoS 1 publishers of `messages` each, one subscriber; messages a second from
/// the first publish until the subscriber has them all (or 30 s).
pub(super) async fn mqtt_leg(broker: SocketAddr, clients: usize, messages: usize) -> anyhow::Result<f64> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let run = pb::now_ms();
    let received = Arc::new(AtomicU64::new(0));
    let mut options = MqttOptions::new(format!("bench-sub-{run}"), broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (sub, mut sub_loop) = AsyncClient::new(options, 10_000);
    let filter = format!("gatehouse-bench/{run}/#");
    sub.subscribe(&filter, QoS::AtLeastOnce).await?;
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let r = received.clone();
    let sub_task = tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    r.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed_rx)
        .await
        .context("the benchmark subscriber got no SUBACK")??;
    let payload = br#"{"type":"access","door":"load-door","result":"granted","credential":"bench/0"}"#.to_vec();
    let began = Instant::now();
    let mut pubs = Vec::new();
    for c in 0..clients {
        let mut options = MqttOptions::new(format!("bench-pub-{run}-{c}"), broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(10));
        options.set_inflight(100);
        let (client, mut event_loop) = AsyncClient::new(options, 1_000);
        let topic = format!("gatehouse-bench/{run}/{c}/event");
        let payload = payload.clone();
        pubs.push(tokio::spawn(async move {
            let driver = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
            for _ in 0..messages {
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            (client, driver)
        }));
    }
    let want = (clients * messages) as u64;
    let deadline = began + Duration::from_secs(30);
    while received.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = began.elapsed().as_secs_f64();
    let got = received.load(Relaxed);
    for p in pubs {
        if let Ok((client, driver)) = p.await {
            let _ = client.disconnect().await;
            driver.abort();
        }
    }
    sub_task.abort();
    if got < want {
        println!("  only {got} of {want} messages arrived within 30 s");
    }
    let rate = got as f64 / took;
    println!("  {broker}: {rate:.0} msgs/s");
    Ok(rate)
}
