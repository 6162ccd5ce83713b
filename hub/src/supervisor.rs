//! Starts and stops what only the writing hub runs: the writer (with its engine) and the
//! notification deliverer. A single hub (SQLite) starts them once; one of several hubs on
//! PostgreSQL (see [`crate::cluster`]) starts them each time it takes the writer lease, and
//! stops them, cutting its gateways' streams, when the lease is taken over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cluster::{self, Fence, Role};
use crate::link::LinkRegistry;
use crate::metrics::Metrics;
use crate::store::{Pool, StoreError};
use crate::writer::{Writer, WriterHandle, WriterParts};
use crate::{Clock, HubConfig, alarms, api, engine, events, notify, roles, rota};

/// How often a standby tries the lease.
const POLL: Duration = Duration::from_secs(1);
/// How long each stage of a stop may take.
const GRACE: Duration = Duration::from_secs(10);

/// What the writer and the deliverer are made of; kept to make them again after a takeover.
pub(crate) struct Activation {
    pub pool: Pool,
    pub config: Arc<HubConfig>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub stream: Arc<crate::stream::Feed>,
    pub rota: Option<Arc<rota::RotaShared>>,
    pub answers: Arc<api::answer::AnswerKeys>,
    pub http_addr: SocketAddr,
    pub deliverer: notify::DelivererConfig,
    /// The slot every request of the servers goes through.
    pub writer: WriterHandle,
    pub links: LinkRegistry,
    pub role: Arc<Role>,
    /// Where this hub serves HTTP for the other hubs (`cluster.advertise_http`).
    pub advertise_http: String,
}

/// The writer and deliverer running now.
struct Active {
    writer_task: JoinHandle<()>,
    writer_stop: CancellationToken,
    deliverer_task: JoinHandle<()>,
    deliverer_stop: CancellationToken,
}

impl Activation {
    /// Makes the engine, starts the writer (which loads its state from the database) and the
    /// deliverer, and points the servers' writer slot at them.
    async fn activate(&self, fence: Option<Fence>) -> Result<Active, StoreError> {
        let now = self.clock.now_ms();
        // No stream is open to this hub yet (a standby refuses them): none is connected.
        events::queries::mark_all_disconnected(&self.pool).await?;
        let roster = roles::StaticRoster::new(self.config.roster.clone());
        let resolver: Arc<dyn roles::RoleResolver> = match &self.rota {
            Some(r) => Arc::new(rota::resolver::RotaResolver {
                rota: r.clone(),
                fallback: roster,
            }),
            None => Arc::new(roster),
        };
        let mut engine = engine::Engine::new(
            alarms::book::BookState::new(self.config.thresholds()),
            Arc::new(engine::EngineConfig::from_config(
                &self.config,
                self.http_addr,
                self.answers.link_key.clone(),
            )),
            resolver,
        );
        if let Some(r) = &self.rota {
            engine = engine.with_rota(rota::RotaShell::restore(r.clone(), &self.pool, now).await?);
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        let writer_stop = CancellationToken::new();
        let (writer, writer_task) = Writer::start(
            self.pool.clone(),
            WriterParts {
                rules: self.config.rules.points.clone(),
                metrics: self.metrics.clone(),
                clock: self.clock.clone(),
                engine,
                stream: self.stream.clone(),
                wake: wake.clone(),
                ingest: self.config.ingest.clone(),
                retention: self.config.retention.clone(),
                fence,
            },
            writer_stop.clone(),
        )
        .await?;
        self.writer.install(&writer);
        let deliverer_stop = CancellationToken::new();
        let deliverer_task = tokio::spawn(notify::run_deliverer(
            writer,
            wake,
            self.deliverer.clone(),
            deliverer_stop.clone(),
        ));
        Ok(Active {
            writer_task,
            writer_stop,
            deliverer_task,
            deliverer_stop,
        })
    }

    /// A single hub: the writer and deliverer, started now (a failure stops the start).
    pub async fn start_single(self, stop: CancellationToken) -> Result<JoinHandle<Result<(), String>>, StoreError> {
        let mut active = self.activate(None).await?;
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {
                    active.stop().await;
                    Ok(())
                }
                r = &mut active.writer_task => Err(ended(r)),
            }
        }))
    }

    /// One of several hubs: a standby until it takes the lease, active until it loses it.
    /// A free lease is taken before this returns, so a hub that starts alone is active at once.
    pub async fn start_clustered(self, stop: CancellationToken) -> Result<JoinHandle<Result<(), String>>, StoreError> {
        cluster::queries::ensure(&self.pool).await?;
        let ttl_ms = self.ttl_ms();
        let holder = self.role.holder().to_owned();
        info!(holder = %holder, lease_s = self.config.cluster.lease_s, "several hubs on one database: the writer lease decides which is active");
        let first = match cluster::queries::acquire(&self.pool, &holder, &self.advertise_http, ttl_ms, 500).await? {
            Some(epoch) => {
                let active = self.activate(Some(self.fence(epoch))).await?;
                self.role.set_active(epoch);
                Some((epoch, active))
            }
            None => {
                self.role.set_writer_at(cluster::queries::active(&self.pool).await?);
                None
            }
        };
        Ok(tokio::spawn(async move {
            self.run_clustered(first, stop).await;
            Ok(())
        }))
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.config.cluster.ttl().as_millis()).unwrap_or(i64::MAX)
    }

    fn fence(&self, epoch: i64) -> Fence {
        Fence {
            holder: self.role.holder().to_owned(),
            epoch,
            ttl_ms: self.ttl_ms(),
        }
    }

    async fn run_clustered(self, mut first: Option<(i64, Active)>, stop: CancellationToken) {
        let holder = self.role.holder().to_owned();
        loop {
            let (epoch, mut active) = match first.take() {
                Some(taken) => taken,
                None => {
                    info!(holder = %holder, "standby: another hub holds the writer lease");
                    let epoch = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = self.wait_for_lease(&holder, self.ttl_ms()) => e,
                    };
                    match self.activate(Some(self.fence(epoch))).await {
                        Ok(a) => (epoch, a),
                        Err(e) => {
                            // The lease runs out by itself; another hub (or this one) takes it then.
                            error!(error = %e, epoch, "cannot start the writer after taking the lease");
                            tokio::time::sleep(POLL).await;
                            continue;
                        }
                    }
                }
            };
            self.role.set_active(epoch);
            info!(epoch, holder = %holder, "this hub holds the writer lease: active");
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = &mut active.writer_task => false,
            };
            if stopping {
                active.stop().await;
                if let Err(e) = cluster::queries::release(&self.pool, &holder, epoch).await {
                    warn!(error = %e, "cannot release the writer lease; it expires by itself");
                }
                return;
            }
            // The writer ended by itself: the lease was taken over (or the writer failed).
            self.writer.clear();
            self.role.set_standby();
            let cut = self.links.cut_all();
            active.stop().await;
            warn!(
                epoch,
                streams_cut = cut,
                "the writer lease was lost: this hub is a standby again"
            );
        }
    }

    /// Polls the lease every [`POLL`] until this hub holds it, noting meanwhile which hub
    /// does (where operators' changes are forwarded).
    async fn wait_for_lease(&self, holder: &str, ttl_ms: i64) -> i64 {
        loop {
            tokio::time::sleep(POLL).await;
            match cluster::queries::acquire(&self.pool, holder, &self.advertise_http, ttl_ms, 500).await {
                Ok(Some(epoch)) => {
                    self.role.set_writer_at(None);
                    return epoch;
                }
                Ok(None) => match cluster::queries::active(&self.pool).await {
                    Ok(active) => self.role.set_writer_at(active),
                    Err(e) => {
                        warn!(error = %e, "cannot read which hub holds the writer lease");
                        self.role.set_writer_at(None);
                    }
                },
                Err(e) => {
                    warn!(error = %e, "cannot try the writer lease");
                    self.role.set_writer_at(None);
                }
            }
        }
    }
}

impl Active {
    /// Stops the deliverer, then the writer (after it has written what is queued).
    async fn stop(self) {
        self.deliverer_stop.cancel();
        if tokio::time::timeout(GRACE, finished(self.deliverer_task))
            .await
            .is_err()
        {
            warn!("the notification deliverer did not stop within {GRACE:?}");
        }
        self.writer_stop.cancel();
        if tokio::time::timeout(GRACE, finished(self.writer_task)).await.is_err() {
            warn!("the ingest writer did not stop within {GRACE:?}");
        }
    }
}

fn ended(r: Result<(), tokio::task::JoinError>) -> String {
    match r {
        Ok(()) => "stopped unexpectedly".into(),
        Err(e) => format!("task ended abnormally: {e}"),
    }
}

/// A task's end as a future of `()`; a task already awaited completes at once.
async fn finished<T>(task: JoinHandle<T>) {
    if !task.is_finished() {
        let _ = task.await;
    }
}
