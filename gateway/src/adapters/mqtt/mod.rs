//! MQTT device profile v1 (docs/design.md, MQTT device profile): door controllers,
//! intercoms and fire panels publish to the gateway's own MQTT server (`shell.rs`, which
//! states its contract: a PUBACK follows the outbox commit); each publish is translated by
//! the intake (`intake.rs`) and handed to the outbox, and commands go out to the devices'
//! command topics.
//!
//! - [`codec`], [`translate`], [`vendor`], [`limits`], [`acl`]: pure (the wire boundary, payloads,
//!   vendor JSON, connection caps, topic rights). [`auth`]: who a client is (passwords,
//!   the verified-secret cache, failed-login backoff); `tls.rs`: TLS and client certificates.
//! - `shell.rs` (accept loop), `connection.rs` (one client), `shared.rs`, `sessions.rs`:
//!   the I/O.
//! - `intake.rs`: publish → event or rejection; commands awaiting their results.

pub mod acl;
pub mod auth;
pub mod codec;
pub mod config;
mod connection;
mod intake;
pub mod limits;
mod sessions;
mod shared;
mod shell;
mod tls;
pub mod translate;
pub mod vendor;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::{FutureExt, future::BoxFuture};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::shell::ServerError;
use self::{config::MqttSection, intake::Intake, sessions::Sessions, vendor::VendorRouter};
use super::{Adapter, AdapterContext, AdapterError, AdapterKind, RunningAdapter};

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// The MQTT adapter: the server, the intake of profile and vendor topics, and one command
/// channel for every MQTT device.
pub struct MqttAdapter {
    pub section: MqttSection,
    /// The vendor JSON topics (see [`vendor`]); empty when no device publishes vendor JSON.
    pub vendors: VendorRouter,
    /// The configured MQTT devices: their client ids always have room to connect, and
    /// their commands come to this adapter.
    pub devices: HashSet<String>,
    /// Device id → argon2 PHC string of its MQTT password (`[[devices]] mqtt_password_hash`).
    pub passwords: HashMap<String, String>,
}

impl Adapter for MqttAdapter {
    fn start(
        self: Box<Self>,
        ctx: AdapterContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<RunningAdapter, AdapterError>> {
        async move {
            let MqttAdapter {
                section,
                vendors,
                devices,
                passwords,
            } = *self;
            let intake = Arc::new(Intake::new(ctx, section.max_payload_bytes, vendors));
            let sessions = Sessions::default();
            let commands: Vec<String> = devices.iter().cloned().collect();
            let (addr, mut tasks) = shell::start(
                intake.clone(),
                section,
                sessions.clone(),
                devices,
                passwords,
                shutdown.clone(),
            )
            .await
            .map_err(MqttError::from)?;
            let (cmd_tx, cmd_rx) = mpsc::channel(256);
            tasks.push(intake::run_commands(intake, sessions, cmd_rx, shutdown).boxed());
            Ok(RunningAdapter {
                kind: AdapterKind::Mqtt,
                listen_addr: Some(addr),
                commands: commands.into_iter().map(|id| (id, cmd_tx.clone())).collect(),
                tasks,
            })
        }
        .boxed()
    }
}
