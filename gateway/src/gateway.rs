//! Wires one gateway together: outbox, the configured adapters (started from one list,
//! their devices' command channels into one router), uplink and the gateway's own HTTP port.

use std::{net::SocketAddr, sync::Arc};

use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    adapters::{
        Adapter, AdapterContext, AdapterError, AdapterKind, CommandRouter, EventSink, dc09::Dc09Adapter,
        modbus::ModbusAdapter, modbus_fire::ModbusFireAdapter, mqtt::MqttAdapter, mqtt::vendor::VendorRouter,
    },
    config::Config,
    health::{Health, Severity},
    http,
    metrics::Metrics,
    outbox::{self, Outbox, OutboxError},
    registry::{DeviceKind, Registry},
    uplink::Uplink,
};

/// Events queued between the adapters and the outbox writer before adapters wait.
const SINK_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("binding the gateway HTTP port {addr}: {source}")]
    Http { addr: SocketAddr, source: std::io::Error },
}

/// A started gateway. Dropping it does not stop it; call [`RunningGateway::shutdown`].
pub struct RunningGateway {
    pub metrics: Arc<Metrics>,
    /// The checks behind `/healthz` and `/readyz`.
    pub health: Health,
    pub outbox: Outbox,
    pub mqtt_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// The DC-09 receiver's address (TCP and UDP), when `[dc09]` is configured.
    pub dc09_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningGateway {
    /// Stops intake (the MQTT server closes its connections), flushes what adapters handed
    /// over into the outbox, and closes the hub stream.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until a task ends on its own (which only happens on a fatal error).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// The configured adapters, in the order they start.
fn adapters(config: &Config) -> Vec<Box<dyn Adapter>> {
    let mut list: Vec<Box<dyn Adapter>> = Vec::new();
    if let Some(section) = &config.mqtt {
        list.push(Box::new(MqttAdapter {
            section: section.clone(),
            vendors: VendorRouter::from_config(config),
            devices: config
                .devices
                .iter()
                .filter(|d| d.speaks_mqtt())
                .map(|d| d.id.clone())
                .collect(),
            passwords: config
                .devices
                .iter()
                .filter(|d| d.speaks_mqtt())
                .filter_map(|d| Some((d.id.clone(), d.mqtt_password_hash.clone()?)))
                .collect(),
        }));
    }
    if let Some(section) = &config.dc09 {
        list.push(Box::new(Dc09Adapter {
            section: section.clone(),
            panels: config
                .devices
                .iter()
                .filter_map(|d| Some((d.id.clone(), d.dc09.clone()?)))
                .collect(),
        }));
    }
    let modbus: Vec<_> = config
        .devices
        .iter()
        .filter(|d| d.kind == DeviceKind::Modbus)
        .filter_map(|d| Some((d.id.clone(), d.modbus.clone()?)))
        .collect();
    if !modbus.is_empty() {
        list.push(Box::new(ModbusAdapter {
            section: config.modbus.clone(),
            devices: modbus,
        }));
    }
    let fire_panels: Vec<_> = config
        .devices
        .iter()
        .filter_map(|d| Some((d.id.clone(), d.modbus_fire.clone()?)))
        .collect();
    if !fire_panels.is_empty() {
        list.push(Box::new(ModbusFireAdapter {
            section: config.modbus.clone(),
            panels: fire_panels,
        }));
    }
    list
}

pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    let data_dir = &config.gateway.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let registry = Registry::from_config(&config);
    let outbox = Outbox::open(&data_dir.join("outbox.db"), config.outbox.max_events, metrics.clone()).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let (sink_tx, sink_rx) = mpsc::channel::<outbox::Append>(SINK_CAPACITY);
    let writer_check = health.register("outbox.writer", Severity::Live);
    tasks.spawn(outbox::run_writer(
        outbox.clone(),
        sink_rx,
        Some(writer_check),
        shutdown.clone(),
    ));
    let ctx = AdapterContext {
        registry: registry.clone(),
        sink: EventSink::to_writer(sink_tx).with_max_event_bytes(config.uplink.max_event_bytes, metrics.clone()),
        metrics: metrics.clone(),
        health: health.clone(),
    };

    let mut commands = CommandRouter::default();
    let mut mqtt_addr = None;
    let mut dc09_addr = None;
    for adapter in adapters(&config) {
        let running = adapter.start(ctx.clone(), shutdown.clone()).await?;
        match running.kind {
            AdapterKind::Mqtt => mqtt_addr = running.listen_addr,
            AdapterKind::Dc09 => dc09_addr = running.listen_addr,
            AdapterKind::Modbus | AdapterKind::ModbusFire => {}
        }
        for (device, tx) in running.commands {
            commands.insert(device, tx);
        }
        for task in running.tasks {
            tasks.spawn(task);
        }
    }

    let uplink = Uplink {
        registry,
        hubs: config.gateway.hubs.clone(),
        settings: config.uplink.clone(),
        outbox: outbox.clone(),
        commands,
        metrics: metrics.clone(),
        health: health.clone(),
    };
    tasks.spawn(uplink.run(shutdown.clone()));

    let mut http_addr = None;
    if let Some(addr) = config.gateway.http_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Http { addr, source })?;
        http_addr = listener.local_addr().ok();
        let limits = http::Limits {
            header_timeout: std::time::Duration::from_secs(config.gateway.http_header_timeout_s),
            max_connections: config.gateway.http_max_connections,
        };
        tasks.spawn(http::serve(
            listener,
            limits,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(gateway = %config.gateway.id, estate = %config.gateway.estate, devices = config.devices.len(), "gateway started");
    Ok(RunningGateway {
        metrics,
        health,
        outbox,
        mqtt_addr,
        http_addr,
        dc09_addr,
        shutdown,
        tasks,
    })
}
