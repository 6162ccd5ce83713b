//! The embedded rumqttd broker that devices connect to.
//!
//! rumqttd traps handled here (see CRATES.md): the default router admits zero connections;
//! `Broker::start` blocks, so it runs on its own thread; a failed bind is only logged by
//! rumqttd, so we probe the port before reporting the broker started. rumqttd has no stop:
//! its threads live as long as the process.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use rumqttd::{
    Broker, Config, ConnectionSettings, RouterConfig, ServerSettings,
    local::{LinkRx, LinkTx},
};

use crate::config::MqttSection;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("taking the broker's local link: {0}")]
    Link(String),
    #[error("starting the broker thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("binding the MQTT listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the MQTT broker did not start listening on {0} (port in use?)")]
    NotListening(SocketAddr),
}

/// Starts the broker on `section.listen` and returns the gateway's in-process link.
pub async fn start(section: &MqttSection) -> Result<(LinkTx, LinkRx), BrokerError> {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Larger than our own limit, so an oversized payload reaches the translator and is
        // rejected and counted there instead of the broker silently dropping the client.
        max_payload_size: (section.max_payload_bytes * 4).max(256 * 1024),
        max_inflight_count: 100,
        // Seam for device credentials: a later version sets `external_auth` here.
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "gatehouse-devices-v4".into(),
        listen: section.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: section.max_connections,
            max_outgoing_packet_count: 200,
            // Every publish stays in the router's in-memory commit log until its segment is
            // evicted, whether or not the gateway's link has read it: under steady traffic
            // the log fills to `size × count` of topic and payload bytes and stays resident
            // (measured: ~1.7 MiB of RSS per MiB held, as the retained publishes are slices
            // of the connections' read buffers). The log also bounds the backlog: the link
            // reads each publish and appends it to the outbox in turn (publish → gateway p99
            // ≤ 4 ms at 5,000 events/s); a link that fell more than the whole log behind
            // would jump to the oldest retained publish (rumqttd logs "jumping to head") and
            // skip the evicted ones, already PUBACKed to the devices. 4 × 512 KiB holds
            // ~13,000 device-profile events (~160 bytes of topic and payload each): an outbox
            // stall of ~2.6 s at 5,000 events/s, ~13 s at 1,000/s. 8 × 1 MiB held 4× that
            // for ~10 MiB more resident memory at steady state (docs/PERFORMANCE.md).
            max_segment_size: 512 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("devices".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    // Bind once ourselves: rumqttd only logs a failed bind, and a probe could then reach
    // whatever else holds the port.
    std::net::TcpListener::bind(section.listen).map_err(|source| BrokerError::Bind {
        addr: section.listen,
        source,
    })?;
    let mut broker = Broker::new(config);
    let link = broker
        .link("gatehouse-gateway")
        .map_err(|e| BrokerError::Link(e.to_string()))?;
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "embedded MQTT broker stopped");
        }
    })?;
    wait_listening(section.listen).await?;
    Ok(link)
}

async fn wait_listening(addr: SocketAddr) -> Result<(), BrokerError> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BrokerError::NotListening(addr))
}
