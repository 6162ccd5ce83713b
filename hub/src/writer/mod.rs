//! The ingest writer: one task that owns every write to the database.
//!
//! Stream handlers and the HTTP API send it requests on a bounded channel. It takes
//! everything queued (group commit, bounded by [`MAX_GROUP_EVENTS`]) and, in ONE
//! transaction, stores the new events, advances each gateway's `last_seq`, and applies the
//! rule engine's alarm changes with their history. Only after the commit does it answer the
//! waiting requests, so an Ack sent on their answer means "the events and their alarm
//! consequences are durable". A one-second tick in the same task runs on-delay timers.
//!
//! If a transaction fails, nothing of it is kept, every request in it gets an error, the
//! in-memory state (sequence numbers, active alarms) is reloaded from the database, and the
//! gateways involved are refused until they say Hello again, so no later batch can be
//! acknowledged past events that were lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_proto::{CommandResult, DeviceInfo, Event, event::Body};
use prost::Message as _;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::alarms::AlarmJson;
use crate::alarms::queries::{self as alarm_queries, Cause};
use crate::alarms::rules::{ActiveAlarm, AlarmChange, RuleState};
use crate::clock::Clock;
use crate::config::{IngestConfig, PointRuleConfig};
use crate::engine::{Engine, Op, OpError};
use crate::events::queries::{self as events, EventRow};
use crate::metrics::{Metrics, RejectKind};
use crate::notify::{Delivery, DeliveryDesk, DeliveryOutcome, StreamEvent};
use crate::store::{self, Pool, StoreError};

/// Most events committed in one transaction (more stay queued for the next).
pub const MAX_GROUP_EVENTS: usize = 5_000;
/// Most requests taken into one transaction.
const MAX_GROUP_REQUESTS: usize = 1_024;
/// Requests that can wait for the writer before senders are held back.
const QUEUE_DEPTH: usize = 1_024;

/// Why the writer could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriterError {
    #[error("the ingest writer has stopped")]
    Stopped,
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("gateway {0} must reconnect: an earlier batch of its stream failed to commit")]
    MustReconnect(String),
    #[error("{0}")]
    Rejected(Rejected),
}

/// A batch refused for its sequence numbers: nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {first_seq}..={last_seq} refused ({}): {detail}", kind.as_str())]
pub struct Rejected {
    pub kind: RejectKind,
    pub first_seq: u64,
    pub last_seq: u64,
    pub detail: String,
}

/// Checks a batch's sequence numbers (sorted) against the gateway's last stored one: none
/// above the ceiling, and no step between consecutive new numbers larger than the gap.
/// Pure, so the rule is table-tested.
pub fn check_seqs(events: &[Event], last: i64, limits: &IngestConfig) -> Result<(), Rejected> {
    let first_seq = events.first().map_or(0, |e| e.seq);
    let last_seq = events.last().map_or(0, |e| e.seq);
    let reject = |kind, detail: String| Rejected {
        kind,
        first_seq,
        last_seq,
        detail,
    };
    if last_seq > limits.max_seq {
        return Err(reject(
            RejectKind::SeqCeiling,
            format!(
                "seq {last_seq} is above the hub's ceiling {} (ingest.max_seq)",
                limits.max_seq
            ),
        ));
    }
    let mut prev = u64::try_from(last).unwrap_or(0);
    for e in events {
        if e.seq <= prev {
            continue;
        }
        if e.seq - prev > limits.max_seq_gap {
            return Err(reject(
                RejectKind::SeqGap,
                format!(
                    "seq {} jumps {} past {prev}, more than ingest.max_seq_gap ({})",
                    e.seq,
                    e.seq - prev,
                    limits.max_seq_gap
                ),
            ));
        }
        prev = e.seq;
    }
    Ok(())
}

/// Why an acknowledgement was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    #[error("alarm {0} not found")]
    NotFound(i64),
    #[error("alarm {0} is already acknowledged")]
    AlreadyAcknowledged(i64),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// Why an operator action was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Refused(#[from] OpError),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// What became of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: usize,
    pub duplicates: usize,
}

/// What a gateway says it holds (Hello, Heartbeat): the highest sequence number its outbox
/// committed and how many events the hub has not acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    pub last_seq: u64,
    pub pending: u64,
}

/// A gateway's Hello as the writer records it.
#[derive(Debug, Clone)]
pub struct HelloRecord {
    pub gateway_id: String,
    pub estate_id: String,
    pub software_version: String,
    pub devices: Vec<DeviceInfo>,
    /// Identifies this stream, so a late "disconnected" of a replaced stream is ignored.
    pub conn_id: u64,
    pub holds: Holds,
}

type Reply<T> = oneshot::Sender<Result<T, WriterError>>;

enum Request {
    Hello(HelloRecord, Reply<u64>),
    Ingest {
        gateway_id: String,
        events: Vec<Event>,
        reply: Reply<IngestOutcome>,
    },
    Seen {
        gateway_id: String,
        at_ms: i64,
        holds: Holds,
    },
    Disconnected {
        gateway_id: String,
        conn_id: u64,
    },
    CommandResult {
        gateway_id: String,
        result: CommandResult,
    },
    Acknowledge {
        alarm_id: i64,
        operator: String,
        note: Option<String>,
        reply: oneshot::Sender<Result<AlarmJson, AckError>>,
    },
    /// Run the timers now (tests, after advancing a manual clock).
    Tick(oneshot::Sender<()>),
    Op(Op, oneshot::Sender<Result<i64, ActionError>>),
    Claim(i64, Reply<Vec<Delivery>>),
    Delivered(DeliveryOutcome),
}

impl Request {
    fn events(&self) -> usize {
        match self {
            Request::Ingest { events, .. } => events.len(),
            _ => 0,
        }
    }
}

/// A cheap, cloneable handle for sending work to the writer.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl WriterHandle {
    async fn send(&self, request: Request) -> Result<(), WriterError> {
        self.tx.send(request).await.map_err(|_| WriterError::Stopped)
    }

    /// Records a Hello; returns the gateway's durably stored last sequence number.
    pub async fn hello(&self, hello: HelloRecord) -> Result<u64, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Hello(hello, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// Queues a batch (events already checked to belong to `gateway_id`). The returned
    /// receiver answers once the batch is committed; queueing waits while the writer is full.
    pub async fn ingest(
        &self,
        gateway_id: String,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<Result<IngestOutcome, WriterError>>, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Ingest {
            gateway_id,
            events,
            reply,
        })
        .await?;
        Ok(rx)
    }

    /// The gateway was heard from (heartbeat); written with the next transaction.
    pub async fn seen(&self, gateway_id: String, at_ms: i64, holds: Holds) -> Result<(), WriterError> {
        self.send(Request::Seen {
            gateway_id,
            at_ms,
            holds,
        })
        .await
    }

    /// A gateway's stream ended.
    pub async fn disconnected(&self, gateway_id: String, conn_id: u64) -> Result<(), WriterError> {
        self.send(Request::Disconnected { gateway_id, conn_id }).await
    }

    pub async fn command_result(&self, gateway_id: String, result: CommandResult) -> Result<(), WriterError> {
        self.send(Request::CommandResult { gateway_id, result }).await
    }

    /// Runs the writer's timers now (on-delays, escalation, shelving, response targets,
    /// flood end, silent gateways) and returns after that transaction committed.
    pub async fn tick_now(&self) -> Result<(), WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Tick(reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)
    }

    /// Carries out an operator action; answers with the alarm or incident id after the commit.
    pub async fn op(&self, op: Op) -> Result<i64, ActionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Op(op, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// An operator acknowledges alarm `alarm_id`; answers with the alarm after the commit.
    pub async fn acknowledge(
        &self,
        alarm_id: i64,
        operator: String,
        note: Option<String>,
    ) -> Result<AlarmJson, AckError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Acknowledge {
            alarm_id,
            operator,
            note,
            reply,
        })
        .await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }
}

/// The deliverer claims due notifications and records their outcomes through the writer.
impl DeliveryDesk for WriterHandle {
    type Error = WriterError;

    /// Leases up to `limit` due notifications to the deliverer.
    async fn claim_deliveries(&self, limit: i64) -> Result<Vec<Delivery>, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Claim(limit, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// Records how a delivery went.
    async fn delivery_result(&self, outcome: DeliveryOutcome) -> Result<(), WriterError> {
        self.send(Request::Delivered(outcome)).await
    }
}

/// Answers held until the transaction commits.
enum Answer {
    Hello(Reply<u64>, u64),
    Ingest(Reply<IngestOutcome>, IngestOutcome, String),
    Refused(Reply<IngestOutcome>, String),
    Rejected(Reply<IngestOutcome>, Rejected),
    Ack(oneshot::Sender<Result<AlarmJson, AckError>>, Result<i64, AckError>),
    Tick(oneshot::Sender<()>),
    Op(oneshot::Sender<Result<i64, ActionError>>, Result<i64, OpError>),
    Claim(Reply<Vec<Delivery>>, Vec<Delivery>),
}

/// The progress watch of one gateway: is it connected, holding events the hub has not
/// stored, while the stored sequence stands still?
#[derive(Debug, Clone)]
struct Watch {
    estate: String,
    holds: Holds,
    /// When the stored sequence last advanced, or the gateway last had nothing pending. A
    /// reconnect does not move it, so a gateway that reconnects in a loop still stalls.
    progress_at: i64,
    stalled: bool,
    /// When its stream last ended. A gateway back after a real absence (longer than half
    /// `stall_after_s`) gets a fresh start; one reconnecting in a loop does not.
    disconnected_at: Option<i64>,
}

/// The writer task's state.
pub struct Writer {
    pool: Pool,
    metrics: Arc<Metrics>,
    rules: RuleState,
    last_seq: HashMap<String, i64>,
    current_conn: HashMap<String, u64>,
    /// Gateways whose batch failed to commit: refused until their next Hello.
    must_reconnect: HashSet<String>,
    /// Last-seen times not yet written.
    seen: HashMap<String, i64>,
    clock: Arc<dyn Clock>,
    engine: Engine,
    stream: broadcast::Sender<StreamEvent>,
    wake: Arc<Notify>,
    /// Trace spans of this transaction's events (only when OpenTelemetry export is on);
    /// they end once it has committed or failed.
    traced: Vec<tracing::Span>,
    limits: IngestConfig,
    watch: HashMap<String, Watch>,
    /// Rejections logged per gateway, at most one a minute each.
    rejection_logged: HashMap<String, Instant>,
}

/// What the writer needs besides the pool.
pub struct WriterParts {
    pub rules: Vec<PointRuleConfig>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub engine: Engine,
    pub stream: broadcast::Sender<StreamEvent>,
    pub wake: Arc<Notify>,
    pub ingest: IngestConfig,
}

impl Writer {
    /// Loads sequence numbers and active alarms, and starts the writer task.
    pub async fn start(
        pool: Pool,
        parts: WriterParts,
        stop: CancellationToken,
    ) -> Result<(WriterHandle, tokio::task::JoinHandle<()>), StoreError> {
        let mut writer = Writer {
            pool,
            metrics: parts.metrics,
            rules: RuleState::new(parts.rules),
            last_seq: HashMap::new(),
            current_conn: HashMap::new(),
            must_reconnect: HashSet::new(),
            seen: HashMap::new(),
            clock: parts.clock,
            engine: parts.engine,
            stream: parts.stream,
            wake: parts.wake,
            traced: Vec::new(),
            limits: parts.ingest,
            watch: HashMap::new(),
            rejection_logged: HashMap::new(),
        };
        writer.reload().await?;
        writer.metrics.committed_now();
        let now = writer.clock.now_ms();
        writer.engine.restore(&writer.pool, now).await?;
        info!(
            gateways = writer.last_seq.len(),
            active_alarms = writer.rules.active_count(),
            "ingest writer loaded its state"
        );
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(writer.run(rx, stop));
        Ok((WriterHandle { tx }, task))
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        self.last_seq = events::gateway_seqs(&self.pool).await?.into_iter().collect();
        self.rules.forget_alarms();
        for row in alarm_queries::active_alarms(&self.pool).await? {
            self.rules.restore_active(
                row.key(),
                ActiveAlarm {
                    latched: row.latched,
                    value: row.value,
                },
            );
        }
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(m) => Some(m),
                    None => break,
                },
                _ = ticker.tick() => None,
                _ = stop.cancelled() => break,
            };
            let mut timers = first.is_none();
            let mut group = Vec::new();
            let mut events = 0;
            if let Some(m) = first {
                events += m.events();
                timers |= matches!(m, Request::Tick(_));
                group.push(m);
            }
            while events < MAX_GROUP_EVENTS && group.len() < MAX_GROUP_REQUESTS {
                match rx.try_recv() {
                    Ok(m) => {
                        events += m.events();
                        timers |= matches!(m, Request::Tick(_));
                        group.push(m);
                    }
                    Err(_) => break,
                }
            }
            self.process(group, timers).await;
        }
        // Stopping: finish what is already queued, then end.
        rx.close();
        loop {
            let mut group = Vec::new();
            while group.len() < MAX_GROUP_REQUESTS {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            if group.is_empty() {
                break;
            }
            self.process(group, false).await;
        }
        if !self.seen.is_empty() {
            self.process(Vec::new(), false).await;
        }
        info!("ingest writer stopped");
    }

    /// One transaction for a group of requests (and the timers due now).
    async fn process(&mut self, group: Vec<Request>, timers: bool) {
        let now = self.clock.now_ms();
        let due = self.rules.tick(now);
        if group.is_empty() && due.is_empty() && self.seen.is_empty() && !timers {
            return;
        }
        let started = Instant::now();
        // The stall flags mirror alarms: a failed transaction must take them back too.
        let stalled_before: HashSet<String> = self
            .watch
            .iter()
            .filter(|(_, w)| w.stalled)
            .map(|(g, _)| g.clone())
            .collect();
        let mut answers = Vec::with_capacity(group.len());
        let mut involved = HashSet::new();
        let result = self
            .transaction(group, due, timers, now, &mut answers, &mut involved)
            .await;
        match result {
            Ok(changes) => {
                for span in self.traced.drain(..) {
                    span.record("committed", true);
                }
                let (events, wake) = self.engine.take_published();
                for e in events {
                    // Nobody listening is fine.
                    let _ = self.stream.send(e);
                }
                if wake {
                    self.wake.notify_one();
                }
                self.metrics.observe_commit(started.elapsed());
                self.metrics.committed_now();
                self.metrics
                    .set_stalled(self.watch.iter().map(|(g, w)| (g.clone(), w.stalled)).collect());
                self.metrics
                    .alarm_changes
                    .fetch_add(changes as u64, std::sync::atomic::Ordering::Relaxed);
                for answer in answers {
                    self.answer(answer);
                }
            }
            Err(e) => {
                self.metrics
                    .commit_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                error!(error = %e, gateways = ?involved, "ingest transaction failed; nothing of it was stored");
                let message = e.to_string();
                for answer in answers {
                    match answer {
                        Answer::Hello(r, _) => {
                            let _ = r.send(Err(WriterError::Commit(message.clone())));
                        }
                        Answer::Ingest(r, _, _) => {
                            let _ = r.send(Err(WriterError::Commit(message.clone())));
                        }
                        Answer::Refused(r, g) => {
                            let _ = r.send(Err(WriterError::MustReconnect(g)));
                        }
                        Answer::Rejected(r, _) => {
                            let _ = r.send(Err(WriterError::Commit(message.clone())));
                        }
                        Answer::Ack(r, _) => {
                            let _ = r.send(Err(AckError::Writer(WriterError::Commit(message.clone()))));
                        }
                        Answer::Tick(r) => {
                            let _ = r.send(());
                        }
                        Answer::Op(r, _) => {
                            let _ = r.send(Err(ActionError::Writer(WriterError::Commit(message.clone()))));
                        }
                        Answer::Claim(r, _) => {
                            let _ = r.send(Err(WriterError::Commit(message.clone())));
                        }
                    }
                }
                self.engine.discard();
                for span in self.traced.drain(..) {
                    span.record("committed", false);
                }
                self.must_reconnect.extend(involved);
                for (g, w) in self.watch.iter_mut() {
                    w.stalled = stalled_before.contains(g);
                }
                self.seen.clear();
                if let Err(e) = self.reload().await {
                    error!(error = %e, "cannot reload the ingest writer's state after a failed transaction");
                }
            }
        }
    }

    fn answer(&mut self, answer: Answer) {
        match answer {
            Answer::Hello(r, last_seq) => {
                let _ = r.send(Ok(last_seq));
            }
            Answer::Ingest(r, outcome, _gateway) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.metrics.events_ingested.fetch_add(outcome.stored as u64, Relaxed);
                self.metrics
                    .duplicates_dropped
                    .fetch_add(outcome.duplicates as u64, Relaxed);
                self.metrics.batches_committed.fetch_add(1, Relaxed);
                let _ = r.send(Ok(outcome));
            }
            Answer::Refused(r, gateway) => {
                let _ = r.send(Err(WriterError::MustReconnect(gateway)));
            }
            Answer::Rejected(r, rejected) => {
                let _ = r.send(Err(WriterError::Rejected(rejected)));
            }
            Answer::Tick(r) => {
                let _ = r.send(());
            }
            Answer::Op(r, result) => {
                let _ = r.send(result.map_err(ActionError::Refused));
            }
            Answer::Claim(r, deliveries) => {
                let _ = r.send(Ok(deliveries));
            }
            Answer::Ack(r, result) => {
                // Read back after the commit so the answer shows the stored alarm.
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    let reply = match result {
                        Ok(id) => match alarm_queries::find_alarm(&pool, id).await {
                            Ok(Some(row)) => Ok(row.to_json()),
                            Ok(None) => Err(AckError::NotFound(id)),
                            Err(e) => Err(AckError::Writer(WriterError::Commit(e.to_string()))),
                        },
                        Err(e) => Err(e),
                    };
                    let _ = r.send(reply);
                });
            }
        }
    }

    /// Applies a group in one transaction. Returns the number of alarm changes.
    async fn transaction(
        &mut self,
        group: Vec<Request>,
        due: Vec<AlarmChange>,
        timers: bool,
        now: i64,
        answers: &mut Vec<Answer>,
        involved: &mut HashSet<String>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|source| StoreError::Query {
            what: "starting the ingest transaction".into(),
            source,
        })?;
        let mut rows: Vec<EventRow> = Vec::new();
        let mut progress: HashMap<String, i64> = HashMap::new();
        let mut advanced: HashSet<String> = HashSet::new();
        let mut changes = 0usize;

        for request in group {
            match request {
                Request::Hello(hello, reply) => {
                    let stored = events::gateway_hello(
                        &mut tx,
                        &hello.gateway_id,
                        &hello.estate_id,
                        &hello.software_version,
                        &hello.devices,
                        now,
                    )
                    .await?;
                    // Events of this group (an older stream's) are committed with the Hello.
                    let last = self.last_seq.get(&hello.gateway_id).copied().unwrap_or(0).max(stored);
                    self.last_seq.insert(hello.gateway_id.clone(), last);
                    self.current_conn.insert(hello.gateway_id.clone(), hello.conn_id);
                    self.must_reconnect.remove(&hello.gateway_id);
                    // A Hello alone is not a sign of life: a gateway reconnecting in a loop
                    // without delivering must still fall silent (or stalled).
                    self.engine.hello(&hello.gateway_id, &hello.estate_id, now);
                    self.observe_holds(&mut tx, &hello.gateway_id, Some(&hello.estate_id), hello.holds, now)
                        .await?;
                    involved.insert(hello.gateway_id.clone());
                    answers.push(Answer::Hello(reply, u64::try_from(last).unwrap_or(0)));
                }
                Request::Ingest {
                    gateway_id,
                    mut events,
                    reply,
                } => {
                    if self.must_reconnect.contains(&gateway_id) {
                        answers.push(Answer::Refused(reply, gateway_id));
                        continue;
                    }
                    involved.insert(gateway_id.clone());
                    events.sort_by_key(|e| e.seq);
                    let mut last = self.last_seq.get(&gateway_id).copied().unwrap_or(0);
                    let before = last;
                    if let Err(rejected) = check_seqs(&events, last, &self.limits) {
                        self.reject(&mut tx, &gateway_id, &rejected, now).await?;
                        // Later batches of this stream would build on the refused one.
                        self.must_reconnect.insert(gateway_id.clone());
                        answers.push(Answer::Rejected(reply, rejected));
                        continue;
                    }
                    self.engine.heard(&mut tx, &gateway_id, None, now).await?;
                    let mut outcome = IngestOutcome::default();
                    for event in events {
                        let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
                        if seq <= last {
                            outcome.duplicates += 1;
                            continue;
                        }
                        last = seq;
                        outcome.stored += 1;
                        // Vehicle entries, a guard's badge at a post or checkpoint (the rota).
                        self.engine.on_event(&mut tx, &mut self.rules, &event, now).await?;
                        // The event's trace goes on here (OpenTelemetry export on, and the
                        // event carries a context): ingest until commit, one child per alarm change.
                        let span = trace_span(&event);
                        for change in self.rules.evaluate(&event, now) {
                            let cause = Cause {
                                event: Some((&gateway_id, seq)),
                                ..Default::default()
                            };
                            let alarm = alarm_span(&span, &change);
                            self.engine
                                .apply_change(&mut tx, &change, now, &cause)
                                .instrument(alarm)
                                .await?;
                            changes += 1;
                        }
                        if !span.is_none() {
                            self.traced.push(span);
                        }
                        rows.push(event_row(event, seq));
                    }
                    if outcome.duplicates > 0 {
                        debug!(gateway = %gateway_id, duplicates = outcome.duplicates, "dropped duplicate events");
                    }
                    self.last_seq.insert(gateway_id.clone(), last);
                    progress.insert(gateway_id.clone(), last);
                    if last > before {
                        advanced.insert(gateway_id.clone());
                    }
                    answers.push(Answer::Ingest(reply, outcome, gateway_id));
                }
                Request::Seen {
                    gateway_id,
                    at_ms,
                    holds,
                } => {
                    self.engine.heard(&mut tx, &gateway_id, None, now).await?;
                    self.observe_holds(&mut tx, &gateway_id, None, holds, now).await?;
                    self.seen.insert(gateway_id, at_ms);
                }
                Request::Disconnected { gateway_id, conn_id } => {
                    if self.current_conn.get(&gateway_id) == Some(&conn_id) {
                        self.current_conn.remove(&gateway_id);
                        if let Some(w) = self.watch.get_mut(&gateway_id) {
                            w.disconnected_at = Some(now);
                        }
                        self.seen.remove(&gateway_id);
                        events::gateway_disconnected(&mut tx, &gateway_id, now).await?;
                    }
                }
                Request::CommandResult { gateway_id, result } => {
                    events::command_result(&mut tx, &gateway_id, &result, now).await?;
                }
                Request::Acknowledge {
                    alarm_id,
                    operator,
                    note,
                    reply,
                } => {
                    let result = match alarm_queries::get_alarm(&mut tx, alarm_id).await? {
                        None => Err(AckError::NotFound(alarm_id)),
                        Some(row) if row.acknowledged => Err(AckError::AlreadyAcknowledged(alarm_id)),
                        Some(row) => {
                            let key = row.key();
                            for change in self.rules.acknowledge(&key, row.latched, &operator, note.clone()) {
                                let cause = Cause {
                                    actor: Some(&operator),
                                    note: note.as_deref(),
                                    ..Default::default()
                                };
                                self.engine.apply_change(&mut tx, &change, now, &cause).await?;
                                changes += 1;
                            }
                            info!(alarm = alarm_id, operator = %operator, latched = row.latched, "alarm acknowledged");
                            Ok(alarm_id)
                        }
                    };
                    answers.push(Answer::Ack(reply, result));
                }
                Request::Tick(reply) => answers.push(Answer::Tick(reply)),
                Request::Op(op, reply) => {
                    let result = self.engine.op(&mut tx, &mut self.rules, op, now).await?;
                    answers.push(Answer::Op(reply, result));
                }
                Request::Claim(limit, reply) => {
                    let deliveries = self.engine.claim_deliveries(&mut tx, limit, now).await?;
                    answers.push(Answer::Claim(reply, deliveries));
                }
                Request::Delivered(outcome) => {
                    self.engine.delivery_result(&mut tx, &outcome, now).await?;
                }
            }
        }

        for change in &due {
            let cause = Cause {
                note: Some("on-delay elapsed"),
                ..Default::default()
            };
            self.engine.apply_change(&mut tx, change, now, &cause).await?;
            changes += 1;
        }
        for gateway in &advanced {
            self.progressed(&mut tx, gateway, now).await?;
        }
        if timers {
            self.engine.tick(&mut tx, &mut self.rules, now).await?;
            self.find_stalled(&mut tx, now).await?;
        }

        if !rows.is_empty() {
            // `ingested_at_ms`: when the rows are written, the last step before COMMIT (not
            // when the transaction began), so publish → ingested measures up to the commit.
            events::insert_events(&mut tx, &rows, self.clock.now_ms().max(now)).await?;
        }
        for (gateway, seen_at) in self.seen.drain() {
            if !progress.contains_key(&gateway) {
                events::gateway_progress(&mut tx, &gateway, None, seen_at).await?;
            }
        }
        for (gateway, last) in &progress {
            events::gateway_progress(&mut tx, gateway, Some(*last), now).await?;
        }
        tx.commit().await.map_err(|source| StoreError::Query {
            what: "committing the ingest transaction".into(),
            source,
        })?;
        Ok(changes)
    }
}

impl Writer {
    /// Records what a gateway says it holds; caught up (nothing pending, or nothing the hub
    /// has not stored) counts as progress.
    async fn observe_holds(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        estate: Option<&str>,
        holds: Holds,
        now: i64,
    ) -> Result<(), StoreError> {
        let stored = u64::try_from(self.last_seq.get(gateway).copied().unwrap_or(0)).unwrap_or(0);
        let w = match (self.watch.get_mut(gateway), estate) {
            (Some(w), _) => w,
            (None, Some(estate)) => self.watch.entry(gateway.to_owned()).or_insert(Watch {
                estate: estate.to_owned(),
                holds,
                progress_at: now,
                stalled: false,
                disconnected_at: None,
            }),
            (None, None) => return Ok(()),
        };
        if let Some(estate) = estate {
            // A Hello: only an absence longer than a reconnect loop's backoff restarts the clock.
            estate.clone_into(&mut w.estate);
            let absence = i64::from(self.limits.stall_after_s) * 500;
            if w.disconnected_at.take().is_some_and(|t| now - t >= absence) {
                w.progress_at = now;
            }
        }
        w.holds = holds;
        if holds.pending == 0 || holds.last_seq <= stored {
            self.progressed(conn, gateway, now).await?;
        }
        Ok(())
    }

    /// The gateway's stored sequence advanced (or it has nothing to send): clears a stall.
    async fn progressed(&mut self, conn: &mut store::Conn, gateway: &str, now: i64) -> Result<(), StoreError> {
        let Some(w) = self.watch.get_mut(gateway) else {
            return Ok(());
        };
        w.progress_at = now;
        if w.stalled {
            w.stalled = false;
            let estate = w.estate.clone();
            self.engine.gateway_progressing(conn, gateway, &estate, now).await?;
        }
        Ok(())
    }

    /// Raises `gateway_stalled` for every connected gateway that holds events the hub has
    /// not stored and whose stored sequence has stood still for `ingest.stall_after_s`.
    async fn find_stalled(&mut self, conn: &mut store::Conn, now: i64) -> Result<(), StoreError> {
        let after_ms = i64::from(self.limits.stall_after_s) * 1000;
        let stalled: Vec<(String, String, Holds, u64)> = self
            .watch
            .iter()
            .filter(|(g, w)| {
                // Connected, or gone so briefly that it is reconnecting in a loop.
                let present =
                    self.current_conn.contains_key(*g) || w.disconnected_at.is_some_and(|t| now - t < after_ms / 2);
                !w.stalled && present && now - w.progress_at >= after_ms
            })
            .filter_map(|(g, w)| {
                let stored = u64::try_from(self.last_seq.get(g).copied().unwrap_or(0)).unwrap_or(0);
                (w.holds.pending > 0 && w.holds.last_seq > stored)
                    .then(|| (g.clone(), w.estate.clone(), w.holds, stored))
            })
            .collect();
        for (gateway, estate, holds, stored) in stalled {
            let message = format!(
                "Gateway {gateway} connected but making no progress: it holds {} events (up to seq {}), the hub has stored up to {stored}, nothing new for {} s",
                holds.pending, holds.last_seq, self.limits.stall_after_s
            );
            self.stall(conn, &gateway, &estate, &message, now).await?;
        }
        Ok(())
    }

    async fn stall(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        estate: &str,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.watch.get_mut(gateway) {
            w.stalled = true;
        }
        self.engine.gateway_stalled(conn, gateway, estate, message, now).await
    }

    /// Counts, logs (once a minute per gateway) and alarms a refused batch.
    async fn reject(
        &mut self,
        conn: &mut store::Conn,
        gateway: &str,
        rejected: &Rejected,
        now: i64,
    ) -> Result<(), StoreError> {
        self.metrics.batch_rejected(rejected.kind);
        let quiet = self
            .rejection_logged
            .get(gateway)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if !quiet {
            if self.rejection_logged.len() > 10_000 {
                self.rejection_logged.clear();
            }
            self.rejection_logged.insert(gateway.to_owned(), Instant::now());
            warn!(gateway, first_seq = rejected.first_seq, last_seq = rejected.last_seq, reason = rejected.kind.as_str(), detail = %rejected.detail,
                "gateway batch refused; its stored sequence is unchanged (logged at most once a minute per gateway)");
        }
        let Some(estate) = self.watch.get(gateway).map(|w| w.estate.clone()) else {
            return Ok(());
        };
        let message = format!("Gateway {gateway}: a batch was refused and nothing of it stored: {rejected}");
        self.stall(conn, gateway, &estate, &message, now).await
    }
}

/// `hub.ingest` for a traced event, a child of the context it carries; `Span::none()` when
/// export is off or the event carries no context.
fn trace_span(event: &Event) -> tracing::Span {
    if !crate::telemetry::enabled() || event.trace_context.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(target: "gatehouse_hub::ingest", "hub.ingest",
        gateway = %event.gateway_id, seq = event.seq, device = %event.device_id, committed = tracing::field::Empty);
    crate::telemetry::set_parent(&span, &event.trace_context);
    span
}

/// `hub.alarm`, a child of an event's `hub.ingest` span, around one alarm change.
fn alarm_span(parent: &tracing::Span, change: &AlarmChange) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    let what = match change {
        AlarmChange::Activate(_) => "activate",
        AlarmChange::Value { .. } => "value",
        AlarmChange::Clear { .. } => "clear",
        AlarmChange::Acknowledge { .. } => "acknowledge",
    };
    let key = change.key();
    tracing::info_span!(target: "gatehouse_hub::alarms", parent: parent, "hub.alarm",
        change = what, estate = %key.estate, device = %key.device, condition = %key.condition)
}

fn event_row(event: Event, seq: i64) -> EventRow {
    let payload = event.encode_to_vec();
    let body_kind = match &event.body {
        Some(Body::Access(_)) => "access",
        Some(Body::Door(_)) => "door",
        Some(Body::Vehicle(_)) => "vehicle",
        Some(Body::Intercom(_)) => "intercom",
        Some(Body::Fire(_)) => "fire",
        Some(Body::Point(_)) => "point",
        Some(Body::Status(_)) => "status",
        None => "none",
    };
    EventRow {
        device_kind: events::device_kind_name(event.device_kind),
        gateway_id: event.gateway_id,
        seq,
        event_id: event.event_id,
        estate_id: event.estate_id,
        device_id: event.device_id,
        area: event.area,
        occurred_at_ms: event.occurred_at_ms,
        received_at_ms: event.received_at_ms,
        body_kind,
        payload,
    }
}

#[cfg(test)]
mod seq_tests {
    use super::*;

    fn batch(seqs: &[u64]) -> Vec<Event> {
        seqs.iter()
            .map(|s| Event {
                seq: *s,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn sequence_numbers_are_refused_above_the_ceiling_or_past_the_gap_and_gaps_within_it_pass() {
        let limits = IngestConfig {
            max_seq_gap: 1_000,
            max_seq: 1 << 53,
            ..Default::default()
        };
        let cases: &[(&[u64], i64, Option<RejectKind>)] = &[
            (&[4, 5, 6], 3, None),
            // Duplicates and a shed gap inside the bound are fine.
            (&[2, 3, 900, 1_900], 3, None),
            (&[(1 << 63) - 1], 3, Some(RejectKind::SeqCeiling)),
            (&[u64::MAX], 0, Some(RejectKind::SeqCeiling)),
            (&[(1 << 53) + 1], 1 << 53, Some(RejectKind::SeqCeiling)),
            (&[1_005], 3, Some(RejectKind::SeqGap)),
            // A jump inside the batch counts too.
            (&[4, 2_000], 3, Some(RejectKind::SeqGap)),
            (&[1_001], 0, Some(RejectKind::SeqGap)),
        ];
        for (seqs, last, want) in cases {
            let got = check_seqs(&batch(seqs), *last, &limits).err().map(|r| r.kind);
            assert_eq!(got, *want, "seqs {seqs:?} after {last}");
        }
        let r = check_seqs(&batch(&[4, 2_000]), 3, &limits).unwrap_err();
        assert_eq!(
            (r.first_seq, r.last_seq),
            (4, 2_000),
            "the rejection names the batch's range"
        );
    }
}
