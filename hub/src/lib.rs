//! Gatehouse hub: ingests events from every estate's gateway, decides alarms, and serves
//! operators.
//!
//! Data flows through the modules in this order: [`link`] (the gRPC stream of each gateway)
//! → [`writer`] (the single writer: one transaction per group of requests) → [`engine`]
//! (dispatches each request to the domains' shells in that transaction; `engine/flow.rs`
//! says what follows what) → the domains, each a folder with its pure decisions, its shell
//! `apply.rs` (applies them in the writer's transaction) and its `queries.rs` (every SQL
//! statement of the domain): [`events`] (event rows, gateways and their liveness),
//! [`alarms`] (rules, the alarm book), [`incidents`] (workflow, procedures, routing),
//! [`escalation`] (policies, durable timers), [`notify`] (the notification outbox, its
//! deliverer), [`rota`] (its shell in `rota/shell/`) → [`api`] (HTTP). Shared leaves:
//! [`stream`] (the live stream's events, published after the commit), [`roles`] (who holds
//! a role), [`error`](mod@error). The operators' front doors, [`api`] (HTTP) and [`centre`]
//! (the gRPC command centre), share their actions' checks and writer calls in [`actions`].
//! Several hubs on one PostgreSQL: [`cluster`] (a leaf: the fenced writer lease, the hub's
//! role) and `supervisor` (starts the writer and the deliverer while this hub holds the
//! lease; a SQLite hub is the only one and always holds them).
//! [`store`] is the database plumbing (pool, migrations, errors),
//! [`clock`] gives every decision its time, [`config`] the configuration file, [`metrics`]
//! the counters, [`net`] the listeners' limits.
//!
//! Invariant: an `Ack{through_seq}` is sent only after the events up to `through_seq` and
//! their alarm consequences are committed in one transaction.

pub mod actions;
pub mod alarms;
pub mod api;
pub mod audit;
pub mod auth;
pub mod centre;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod escalation;
pub mod events;
pub mod incidents;
pub mod link;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod privacy;
pub mod roles;
pub mod rota;
pub mod store;
pub mod stream;
mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_proto::gateway_link_server::GatewayLinkServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, HubConfig};
pub use link::{LinkError, LinkRegistry};

use link::LinkService;
use metrics::Metrics;
use store::StoreError;
use writer::WriterHandle;

/// How long a graceful shutdown waits for each server before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Each webhook channel's signing secret (URL → secret) and the default one, from the file or
/// the environment (`*_env`), read at start: a variable that is not set stops the start.
fn webhook_secrets(
    config: &HubConfig,
) -> Result<(std::collections::HashMap<String, String>, Option<String>), notify::channels::ChannelSetupError> {
    use notify::config::{Secret, resolve_secret};
    let resolve = |key: &str, value: Option<&String>, env: Option<&String>| {
        resolve_secret(key, value.map(Secret::new).as_ref(), env.map(String::as_str))
            .map(|s| s.map(|s| s.expose().to_owned()))
            .map_err(|detail| notify::channels::ChannelSetupError::Invalid {
                key: key.to_owned(),
                detail,
            })
    };
    let n = &config.notify;
    let default = resolve(
        "notify.webhook_secret",
        n.webhook_secret.as_ref(),
        n.webhook_secret_env.as_ref(),
    )?;
    if default.as_deref().is_some_and(|s| s.len() < 16) {
        return Err(notify::channels::ChannelSetupError::Invalid {
            key: "notify.webhook_secret_env".into(),
            detail: "the secret must be at least 16 characters".into(),
        });
    }
    let mut secrets = std::collections::HashMap::new();
    for (i, r) in config.roster.iter().enumerate() {
        if !r.channel.starts_with("http://") && !r.channel.starts_with("https://") {
            continue;
        }
        let own = resolve(&format!("roster[{i}].secret"), r.secret.as_ref(), r.secret_env.as_ref())?;
        if let Some(secret) = own.or_else(|| default.clone()) {
            secrets.insert(r.channel.clone(), secret);
        }
    }
    Ok((secrets, default))
}

/// Why the hub could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(String),
    #[error("webhooks: {0}")]
    WebhookTls(#[from] notify::tls::TlsSetupError),
    #[error("notification channels: {0}")]
    Channels(#[from] notify::channels::ChannelSetupError),
    #[error("cannot make the answer links' key: {0}")]
    Randomness(String),
    #[error("the {what} server failed: {message}")]
    Server { what: &'static str, message: String },
}

/// The answer links' key (`notify.link_secret[_env]`, at least 32 characters, else one made
/// at first start and kept in `hub_secrets`) and the SMS inbound token.
async fn answer_keys(config: &HubConfig, pool: &store::Pool, now: i64) -> Result<api::answer::AnswerKeys, HubError> {
    let n = &config.notify;
    let invalid = |key: &str, message: String| {
        HubError::Config(ConfigError::Invalid {
            key: key.into(),
            message,
        })
    };
    let configured = notify::config::resolve_secret(
        "notify.link_secret",
        n.link_secret.as_ref(),
        n.link_secret_env.as_deref(),
    )
    .map_err(|m| invalid("notify.link_secret", m))?;
    let link_key = match configured {
        Some(s) if s.expose().chars().count() < 32 => {
            return Err(invalid("notify.link_secret", "must be at least 32 characters".into()));
        }
        Some(s) => notify::answer::LinkKey::new(s.expose().as_bytes().to_vec()),
        None => {
            let mut fresh = [0u8; 32];
            getrandom::fill(&mut fresh).map_err(|e| HubError::Randomness(e.to_string()))?;
            let kept = notify::queries::answer_link_key(pool, &hex::encode(fresh), now).await?;
            notify::answer::LinkKey::new(hex::decode(&kept).unwrap_or_else(|_| kept.into_bytes()))
        }
    };
    let sms_inbound_token = match &n.sms {
        Some(sms) => notify::config::resolve_secret(
            "notify.sms.inbound_token",
            sms.inbound_token.as_ref(),
            sms.inbound_token_env.as_deref(),
        )
        .map_err(|m| invalid("notify.sms.inbound_token", m))?,
        None => None,
    };
    Ok(api::answer::AnswerKeys {
        link_key,
        sms_inbound_token,
    })
}

/// Asks a running hub to stop gracefully; [`RunningHub::wait`] then returns `Ok`.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// A hub that is listening. Dropping it does not stop it; call [`RunningHub::shutdown`].
#[derive(Debug)]
pub struct RunningHub {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    links: LinkRegistry,
    servers_stop: CancellationToken,
    requested: CancellationToken,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    http_task: JoinHandle<std::io::Result<()>>,
    /// Runs the writer and the deliverer (on several hubs: while this hub holds the lease).
    writer_task: JoinHandle<Result<(), String>>,
    writer_stop: CancellationToken,
    writer: WriterHandle,
    role: Arc<cluster::Role>,
}

/// Opens the database (migrating it), starts the ingest writer, binds both servers, and
/// returns once they are listening.
pub async fn start(config: HubConfig) -> Result<RunningHub, HubError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the clock every decision takes its time from (tests: a [`ManualClock`],
/// advanced by hand, then [`RunningHub::tick_now`]).
pub async fn start_with_clock(config: HubConfig, clock: Arc<dyn Clock>) -> Result<RunningHub, HubError> {
    config.validate()?;
    // Before anything uses TLS: ring becomes the process's one rustls provider, and the
    // webhooks' CA files are read now, so a bad one stops the start instead of a delivery.
    notify::tls::install_ring_provider();
    let clients = notify::tls::WebhookClients::build(
        &config.webhook_trust(),
        Duration::from_secs(u64::from(config.notify.timeout_s)),
    )?;
    let channels = Arc::new(notify::channels::Channels::build(
        &config.notify,
        Duration::from_secs(u64::from(config.notify.timeout_s)),
    )?);
    let (secrets, default_secret) = webhook_secrets(&config)?;
    warn_if_descriptors_below_caps(&config);
    // TLS files are read before anything else starts: a wrong path fails the start.
    let (tls, crl_poll) = match config.tls_mode()? {
        config::TlsMode::Plaintext => {
            warn!(grpc_listen = %config.hub.grpc_listen, "tls.plaintext = true: gateways connect without TLS (loopback only; development and tests)");
            (None, Duration::ZERO)
        }
        config::TlsMode::Tls { paths, crl_poll_s } => {
            if paths.crl.is_none() {
                warn!("tls.crl is not set: a gateway's certificate cannot be revoked until it expires");
            }
            (
                Some(tls::TlsState::load(paths)?),
                Duration::from_secs(u64::from(crl_poll_s)),
            )
        }
    };
    // Bound before the engine is made: links in notifications default to the HTTP address.
    let bind = |what: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| HubError::Bind { what, addr, source })
    };
    let grpc_listener = bind("gRPC", config.hub.grpc_listen).await?;
    let http_listener = bind("HTTP", config.hub.http_listen).await?;
    let local = |l: &TcpListener, what, addr| l.local_addr().map_err(|source| HubError::Bind { what, addr, source });
    let grpc_addr = local(&grpc_listener, "gRPC", config.hub.grpc_listen)?;
    let http_addr = local(&http_listener, "HTTP", config.hub.http_listen)?;
    let database = config.database_url()?;
    let pool = store::open(&database).await?;
    // Several hubs share a PostgreSQL database; a SQLite file has one writer, so one hub.
    let role = Arc::new(match database.backend() {
        store::Backend::Sqlite => cluster::Role::single(),
        store::Backend::Postgres => cluster::Role::standby(lease_holder(&config.hub.hub_id)?),
    });
    // The configured users, before the writer (the only writer from then on) starts.
    auth::queries::seed_users(&pool, &config.users, clock.now_ms()).await?;
    let authenticator = Arc::new(auth::Authenticator::new(
        pool.clone(),
        Arc::new(auth::TokenTable::new(&config.api_tokens)),
        clock.clone(),
        &config.auth,
    ));

    let metrics = Arc::new(Metrics::default());
    let stream = Arc::new(stream::Feed::new(config.api.stream_replay as usize, 4096));
    // The rota, when posts are configured: roles resolve to the guards on post now.
    let rota_model = Arc::new(config.rota_model()?);
    let rota = rota_model.enabled().then(|| rota::RotaShared::new(rota_model));
    // Before the writer starts: a key made now is kept by one INSERT, read back on every
    // later start, so links sent before a restart still work after it.
    let answers = Arc::new(answer_keys(&config, &pool, clock.now_ms()).await?);
    let writer = WriterHandle::standby();
    let links = LinkRegistry::default();
    let advertise_http = if role.is_clustered() {
        config
            .cluster
            .advertised_http(http_addr, std::env::var(cluster::ADVERTISE_ENV).ok())
            .map_err(|message| {
                HubError::Config(ConfigError::Invalid {
                    key: "cluster.advertise_http".into(),
                    message,
                })
            })?
    } else {
        String::new()
    };
    let activation = supervisor::Activation {
        pool: pool.clone(),
        config: Arc::new(config.clone()),
        clock: clock.clone(),
        metrics: metrics.clone(),
        stream: stream.clone(),
        rota: rota.clone(),
        answers: answers.clone(),
        http_addr,
        deliverer: notify::DelivererConfig {
            secrets,
            default_secret,
            clients,
            channels,
            poll: Duration::from_millis(250),
            attempts: metrics.webhooks.clone(),
            channel_attempts: metrics.notifications.clone(),
        },
        writer: writer.clone(),
        links: links.clone(),
        role: role.clone(),
        advertise_http: advertise_http.clone(),
    };
    let writer_stop = CancellationToken::new();
    let writer_task = if role.is_clustered() {
        activation.start_clustered(writer_stop.clone()).await?
    } else {
        activation.start_single(writer_stop.clone()).await?
    };

    let servers_stop = CancellationToken::new();
    telemetry::register(&metrics, &pool, servers_stop.child_token());
    // Several hubs: every hub's live stream carries the changes committed through the others.
    let relay = match &database {
        store::DatabaseUrl::Postgres(url) if role.is_clustered() => {
            let health = Arc::new(cluster::relay::RelayHealth::default());
            tokio::spawn(
                cluster::relay::Relay {
                    url: url.clone(),
                    pool: pool.clone(),
                    holder: role.holder().to_owned(),
                    feed: stream.clone(),
                    health: health.clone(),
                }
                .run(servers_stop.child_token()),
            );
            info!(advertise_http = %advertise_http, "several hubs: operators' changes on a standby are forwarded here while this hub is active");
            Some(health)
        }
        _ => None,
    };
    let forwarder = Arc::new(
        cluster::forward::Forwarder::new(role.clone(), config.limits.http.max_body_bytes).map_err(|e| {
            HubError::Server {
                what: "forwarding",
                message: e,
            }
        })?,
    );
    if role.is_clustered() {
        tokio::spawn(forwarder.clone().probe_active(servers_stop.child_token()));
    }

    // gRPC: GatewayLink, health, reflection (v1 and v1alpha).
    let link = LinkService {
        writer: writer.clone(),
        registry: links.clone(),
        estates: Arc::new(config.estates.iter().map(|e| e.id.clone()).collect::<HashSet<_>>()),
        gateways: Arc::new(
            config
                .gateways
                .iter()
                .map(|g| (g.id.clone(), g.estate.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        tls: tls.clone(),
        denied_log: Arc::new(net::limits::LogGate::new(Duration::from_secs(10))),
        hub_id: config.hub.hub_id.clone(),
        metrics: metrics.clone(),
        max_message_bytes: config.ingest.max_message_bytes,
        shutdown: servers_stop.child_token(),
        role: role.clone(),
    };
    let centre = centre::CentreService {
        pool: pool.clone(),
        writer: writer.clone(),
        links: links.clone(),
        estates: link.estates.clone(),
        estate_configs: Arc::new(config.estates.clone()),
        stream: stream.clone(),
        response_target_ms: i64::from(config.incidents.response_target_s) * 1000,
        shutdown: servers_stop.child_token(),
        auth: authenticator.clone(),
        role: role.clone(),
        forwarder: forwarder.clone(),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<GatewayLinkServer<LinkService>>().await;
    health_reporter
        .set_serving::<centre::CommandCentreServer<centre::CentreService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(gatehouse_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| HubError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| HubError::Reflection(e.to_string()))?;
    let g = &config.limits.grpc;
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let grpc_tracker = net::ConnTracker::new(
        net::Listener::Grpc,
        net::limits::Caps {
            max_connections: g.max_connections(config.estates.len()) as usize,
            max_per_source: g.max_connections_per_source as usize,
        },
        metrics.net.clone(),
    );
    let incoming = net::incoming::admitted(
        grpc_listener,
        grpc_tracker.clone(),
        net::incoming::AcceptOptions {
            tcp_keepalive: secs(g.tcp_keepalive_s),
            handshake_timeout: Some(secs(g.handshake_timeout_s)),
        },
    );
    // Streams per connection: refused with a reason and counted by `net::streams`, under
    // a higher HTTP/2 ceiling.
    let streams = net::streams::StreamCaps::new(g.max_concurrent_streams, metrics.net.clone());
    let router = tonic::transport::Server::builder()
        // Finds gateways that vanished without closing their connection.
        .http2_keepalive_interval(Some(secs(g.keepalive_interval_s)))
        .http2_keepalive_timeout(Some(secs(g.keepalive_timeout_s)))
        .max_concurrent_streams(Some(net::streams::h2_ceiling(g.max_concurrent_streams)))
        .add_service(streams.wrap(health_service))
        .add_service(streams.wrap(reflection_v1))
        .add_service(streams.wrap(reflection_v1alpha))
        .add_service(
            streams.wrap(
                GatewayLinkServer::new(link)
                    .max_decoding_message_size(usize::try_from(config.ingest.max_message_bytes).unwrap_or(usize::MAX)),
            ),
        )
        .add_service(streams.wrap(centre::CommandCentreServer::new(centre)));
    let grpc_task = match &tls {
        None => tokio::spawn(router.serve_with_incoming_shutdown(incoming, servers_stop.clone().cancelled_owned())),
        Some(tls) => {
            let handshaken = tls::accept::handshaken(
                incoming,
                tls.clone(),
                secs(g.handshake_timeout_s),
                grpc_tracker,
                servers_stop.child_token(),
            );
            tokio::spawn(crl_reloader(
                tls.clone(),
                crl_poll,
                links.clone(),
                metrics.clone(),
                servers_stop.child_token(),
            ));
            tokio::spawn(router.serve_with_incoming_shutdown(handshaken, servers_stop.clone().cancelled_owned()))
        }
    };

    // HTTP.
    let h = &config.limits.http;
    let http_tracker = net::ConnTracker::new(
        net::Listener::Http,
        net::limits::Caps {
            max_connections: h.max_connections as usize,
            max_per_source: h.max_connections_per_source as usize,
        },
        metrics.net.clone(),
    );
    let http_incoming = net::incoming::admitted(
        http_listener,
        http_tracker.clone(),
        net::incoming::AcceptOptions {
            tcp_keepalive: secs(g.tcp_keepalive_s),
            handshake_timeout: None,
        },
    );
    let header_timeout = secs(h.header_timeout_s);
    let limits = config.limits.http.clone();
    let app = api::router(api::AppState {
        pool,
        writer: writer.clone(),
        links: links.clone(),
        metrics: metrics.clone(),
        estates: Arc::new(config.estates.clone()),
        clock,
        stream,
        hub_id: config.hub.hub_id.clone(),
        response_target_ms: i64::from(config.incidents.response_target_s) * 1000,
        flood_start_above: config.alarms.flood_start_above,
        rota,
        writer_stall: Duration::from_secs(u64::from(config.ingest.writer_stall_s)),
        auth: authenticator,
        answers,
        role: role.clone(),
        relay,
        forwarder: forwarder.clone(),
    });
    let app = app.layer(axum::middleware::from_fn_with_state(
        forwarder,
        cluster::forward::forward_on_standby,
    ));
    let app = api::limits::apply(app, &limits, metrics);
    let http_task = tokio::spawn(net::http::serve(
        http_incoming,
        app,
        header_timeout,
        http_tracker,
        servers_stop.clone(),
    ));

    info!(%grpc_addr, %http_addr, hub_id = %config.hub.hub_id, estates = config.estates.len(), role = role.name(), "hub listening");
    Ok(RunningHub {
        grpc_addr,
        http_addr,
        links,
        servers_stop,
        requested: CancellationToken::new(),
        grpc_task,
        http_task,
        writer_task,
        writer_stop,
        writer,
        role,
    })
}

impl RunningHub {
    /// The bound gRPC address (the real port when the configuration said 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The connected gateways, and a way to send them commands.
    pub fn links(&self) -> LinkRegistry {
        self.links.clone()
    }

    /// Runs the writer's timers now (escalation steps, shelve expiry, response targets,
    /// on-delays, flood end, silent gateways) and returns once that has committed. With a
    /// [`ManualClock`], advance the clock first.
    pub async fn tick_now(&self) -> Result<(), writer::WriterError> {
        self.writer.tick_now().await
    }

    /// The writer's mailbox: e.g. `writer().audit(actor, entry)` for an audit row of an
    /// action that has no writer op of its own.
    pub fn writer(&self) -> writer::WriterHandle {
        self.writer.clone()
    }

    /// Active, standby or the only hub (several hubs on one PostgreSQL: `cluster`).
    pub fn role(&self) -> Arc<cluster::Role> {
        self.role.clone()
    }

    /// A handle that makes [`RunningHub::wait`] stop the hub gracefully (e.g. on a signal).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.requested.clone())
    }

    /// Stops gracefully: both servers (closing gateway streams after acknowledging what is
    /// committed), then the ingest writer after it has written what is queued.
    pub async fn shutdown(self) {
        let _ = self.stop(None).await;
    }

    /// Runs until a server fails (`Err`) or a [`ShutdownHandle`] asks to stop (`Ok`).
    pub async fn wait(mut self) -> Result<(), HubError> {
        let failure = tokio::select! {
            _ = self.requested.cancelled() => None,
            r = &mut self.grpc_task => Some(server_failure("gRPC", r.map(|r| r.map_err(|e| e.to_string())))),
            r = &mut self.http_task => Some(server_failure("HTTP", r.map(|r| r.map_err(|e| e.to_string())))),
            r = &mut self.writer_task => Some(server_failure("ingest writer", r)),
        };
        self.stop(failure).await
    }

    async fn stop(self, failure: Option<HubError>) -> Result<(), HubError> {
        if let Some(e) = &failure {
            error!(error = %e, "stopping the hub after a failure");
        } else {
            info!("hub shutting down");
        }
        self.servers_stop.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, finished(self.grpc_task))
            .await
            .is_err()
        {
            warn!("the gRPC server did not stop within {SHUTDOWN_GRACE:?}");
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, finished(self.http_task))
            .await
            .is_err()
        {
            warn!("the HTTP server did not stop within {SHUTDOWN_GRACE:?}");
        }
        // The deliverer, then the writer after what is queued (on several hubs: and the
        // lease is released, so a standby takes over at once).
        self.writer_stop.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE * 2, finished(self.writer_task))
            .await
            .is_err()
        {
            warn!("the ingest writer did not stop within {:?}", SHUTDOWN_GRACE * 2);
        }
        info!("hub stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// Polls the CRL file; after a change, new handshakes use the new list and the live streams
/// of certificates it revokes are cut.
async fn crl_reloader(
    tls: Arc<tls::TlsState>,
    every: Duration,
    links: LinkRegistry,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    if tls.crl_path().is_none() {
        return;
    }
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match tls.reload_if_changed() {
            Ok(None) => {}
            Ok(Some(revoked)) => {
                let cut = links.cut_revoked(&revoked);
                metrics
                    .streams_revoked
                    .fetch_add(cut.len() as u64, std::sync::atomic::Ordering::Relaxed);
                info!(revoked = revoked.len(), cut = ?cut, "CRL reloaded");
            }
            Err(e) => error!(error = %e, "the new CRL is unusable; the previous one stays in force"),
        }
    }
}

/// This process's name in the writer lease: the hub id, the process id and a random tag (two
/// hubs may share a configuration, and a restarted process must not pass for the old one).
fn lease_holder(hub_id: &str) -> Result<String, HubError> {
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| HubError::Randomness(e.to_string()))?;
    Ok(format!("{hub_id}/{}/{}", std::process::id(), hex::encode(tag)))
}

/// Descriptors kept for the database, the log, outgoing webhooks and the listeners.
const DESCRIPTOR_RESERVE: u64 = 128;

/// The caps only keep room per source if descriptors run out after them, not before.
fn warn_if_descriptors_below_caps(config: &HubConfig) {
    let caps = u64::from(config.limits.http.max_connections)
        + u64::from(config.limits.grpc.max_connections(config.estates.len()));
    match net::rlimit::nofile() {
        Ok((soft, _)) if soft < caps + DESCRIPTOR_RESERVE => warn!(
            descriptor_limit = soft,
            connection_caps = caps,
            "the descriptor limit is below limits.http.max_connections + limits.grpc.max_connections + {DESCRIPTOR_RESERVE}: \
             a flood would run out of descriptors before the caps refuse it; raise the limit or lower the caps"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the descriptor limit"),
    }
}

/// A task's end as a future of `()`; a task already awaited completes at once.
async fn finished<T>(task: JoinHandle<T>) {
    if !task.is_finished() {
        let _ = task.await;
    }
}

fn server_failure(what: &'static str, result: Result<Result<(), String>, tokio::task::JoinError>) -> HubError {
    let message = match result {
        Ok(Ok(())) => "stopped unexpectedly".to_owned(),
        Ok(Err(e)) => e,
        Err(e) => format!("task ended abnormally: {e}"),
    };
    HubError::Server { what, message }
}
