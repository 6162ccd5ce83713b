//! The single writer: one task that owns every write to the database.
//!
//! Invariant: nothing else writes. Everything that changes stored state (event batches,
//! Hellos, operator actions, delivery outcomes, the timers' tick) is a request
//! on its channel, applied in the writer's transaction by the [`Engine`] and the domains'
//! `queries.rs`; stream events are published only after the commit.
//!
//! `handle.rs` is the mailbox and its answers, `seqs.rs` the pure sequence rule, `watch.rs` the
//! stall watch, `trace.rs` the spans; this file is the loop and the transaction.
//!
//! Stream handlers and the HTTP API send it requests on a bounded channel. It takes
//! everything queued (group commit, bounded by [`MAX_GROUP_EVENTS`]) and, in ONE
//! transaction, stores the new events, advances each gateway's `last_seq`, and applies the
//! rule engine's alarm changes with their history. Only after the commit does it answer the
//! waiting requests, so an Ack sent on their answer means "the events and their alarm
//! consequences are durable". A one-second tick in the same task runs on-delay timers.
//!
//! On one of several hubs (`cluster`), each transaction first renews this hub's writer lease
//! WHERE its holder and epoch are still this hub's ([`crate::cluster::queries::fence`]); if
//! they are not, the transaction rolls back and the writer stops: another hub writes now.
//!
//! If a transaction fails, nothing of it is kept, every request in it gets an error, the
//! in-memory state (sequence numbers, active alarms) is reloaded from the database, and the
//! gateways involved are refused until they say Hello again, so no later batch can be
//! acknowledged past events that were lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::alarms::queries::{self as alarm_queries, Cause};
use crate::alarms::rules::{ActiveAlarm, AlarmChange, RuleState};
use crate::audit::apply as audit;
use crate::clock::Clock;
use crate::cluster::Fence;
use crate::config::{IngestConfig, PointRuleConfig};
use crate::engine::Engine;
use crate::events::partitions::Partitions;
use crate::events::queries::{self as events, EventRow};
use crate::events::retention::RetentionSettings;
use crate::metrics::Metrics;
use crate::store::{Pool, StoreError};
use crate::stream::Feed;

/// How long the stream outbox keeps a commit's events for the other hubs' relays (they read
/// them within a second; the rest is slack for a hub catching up after a pause).
const OUTBOX_KEEP_MS: i64 = 5 * 60 * 1000;
/// How often the writer purges the outbox.
const OUTBOX_PURGE_EVERY_MS: i64 = 60 * 1000;

/// Most events committed in one transaction (more stay queued for the next).
pub const MAX_GROUP_EVENTS: usize = 5_000;
/// Most requests taken into one transaction.
const MAX_GROUP_REQUESTS: usize = 1_024;
/// Requests that can wait for the writer before senders are held back.
const QUEUE_DEPTH: usize = 1_024;

mod handle;
mod seqs;
mod trace;
mod watch;

pub use handle::{AckError, ActionError, HelloRecord, Holds, IngestOutcome, WriterError, WriterHandle};
pub use seqs::{Rejected, check_seqs};

use handle::{Answer, Request};
use trace::{alarm_span, trace_span};
use watch::Watch;

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
    stream: Arc<Feed>,
    wake: Arc<Notify>,
    /// Trace spans of this transaction's events (only when OpenTelemetry export is on);
    /// they end once it has committed or failed.
    traced: Vec<tracing::Span>,
    limits: IngestConfig,
    watch: HashMap<String, Watch>,
    /// Rejections logged per gateway, at most one a minute each.
    rejection_logged: HashMap<String, Instant>,
    retention: RetentionSettings,
    /// The writer lease every transaction is fenced with (several hubs on PostgreSQL).
    fence: Option<Fence>,
    /// The lease was taken over: this writer stops and writes nothing more.
    fenced: bool,
    /// When the stream outbox was last purged (several hubs), on the decision clock.
    outbox_purged_at: i64,
    /// The event store's partitions (reloaded with the rest after a failed transaction).
    partitions: Partitions,
}

/// What the writer needs besides the pool.
pub struct WriterParts {
    pub rules: Vec<PointRuleConfig>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub engine: Engine,
    pub stream: Arc<Feed>,
    pub wake: Arc<Notify>,
    pub ingest: IngestConfig,
    pub retention: RetentionSettings,
    /// `Some` on one of several hubs: the lease it holds (`cluster`).
    pub fence: Option<Fence>,
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
            partitions: Partitions::new(Vec::new(), parts.retention.partition_ms()),
            retention: parts.retention,
            fence: parts.fence,
            fenced: false,
            outbox_purged_at: 0,
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
        Ok((WriterHandle::new(tx), task))
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        self.last_seq = events::gateway_seqs(&self.pool).await?.into_iter().collect();
        self.partitions = Partitions::load(&self.pool, self.retention.partition_ms()).await?;
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
        // The ticker wakes an idle writer; under a steady stream of requests the biased
        // select would never pick it, so the timers also run once their second is up.
        let mut timers_due = Instant::now() + Duration::from_secs(1);
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
            if Instant::now() >= timers_due {
                timers = true;
            }
            if timers {
                timers_due = Instant::now() + Duration::from_secs(1);
            }
            self.process(group, timers).await;
            if self.fenced {
                // Another hub writes now: nothing queued here may be written.
                info!("ingest writer stopped: the writer lease was taken over");
                return;
            }
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
            if group.is_empty() || self.fenced {
                break;
            }
            self.process(group, false).await;
        }
        if !self.seen.is_empty() && !self.fenced {
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
                // Stamped with the next sequence numbers, in commit order (one writer).
                self.stream.publish(events);
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
                self.fenced |= matches!(e, StoreError::Fenced { .. });
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
                        Answer::Auth(r, _) => {
                            let _ = r.send(Err(WriterError::Commit(message.clone())));
                        }
                        Answer::Audit(r, _) => {
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
                if self.fenced {
                    return;
                }
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
            Answer::Auth(r, answer) => {
                let _ = r.send(Ok(answer));
            }
            Answer::Audit(r, seq) => {
                let _ = r.send(Ok(seq));
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
        // First: the lease is still ours, and stays ours until COMMIT (its row is locked).
        if let Some(f) = &self.fence {
            crate::cluster::queries::fence(&mut tx, &f.holder, f.epoch, f.ttl_ms).await?;
        }
        let mut rows: Vec<EventRow> = Vec::new();
        let mut progress: HashMap<String, i64> = HashMap::new();
        let mut advanced: HashSet<String> = HashSet::new();
        let mut changes = 0usize;
        let mut purged = 0u64;
        let mut purges: Vec<(&'static str, u64, Duration)> = Vec::new();

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
                        rows.push(crate::events::row(event, seq));
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
                    self.engine.command_result(&mut tx, &gateway_id, &result, now).await?;
                }
                Request::Acknowledge {
                    actor,
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
                            let entry = crate::engine::ack_audit(alarm_id, &actor, &operator, note.as_deref());
                            audit::record(&mut tx, &actor, &entry, now).await?;
                            Ok(alarm_id)
                        }
                    };
                    answers.push(Answer::Ack(reply, result));
                }
                Request::Tick(reply) => answers.push(Answer::Tick(reply)),
                Request::Op(actor, op, reply) => {
                    let result = self.engine.op(&mut tx, &mut self.rules, &actor, op, now).await?;
                    answers.push(Answer::Op(reply, result));
                }
                Request::Audit(actor, entry, reply) => {
                    let seq = audit::record(&mut tx, &actor, &entry, now).await?;
                    answers.push(Answer::Audit(reply, seq));
                }
                Request::Claim(limit, reply) => {
                    let deliveries = self.engine.claim_deliveries(&mut tx, limit, now).await?;
                    answers.push(Answer::Claim(reply, deliveries));
                }
                Request::Delivered(outcome) => {
                    self.engine.delivery_result(&mut tx, &outcome, now).await?;
                }
                Request::Auth(write, reply) => {
                    let answer = crate::auth::queries::apply(&mut tx, &write, now).await?;
                    answers.push(Answer::Auth(reply, answer));
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
            // The next partition ahead; retention drops whole partitions (a table drop
            // keeps this transaction short), at most two a tick, and deletes the other
            // histories a small batch a tick.
            self.partitions.ensure(&mut tx, now).await?;
            let began = Instant::now();
            let cutoff = self.retention.events_cutoff(now);
            let dropped = self.partitions.drop_expired(&mut tx, cutoff, 2).await?;
            if let Some(rows) = dropped {
                purged = rows;
                purges.push(("events", rows, began.elapsed()));
            }
            purges.extend(crate::events::purge::histories(&mut tx, &self.retention, now).await?);
        }

        if !rows.is_empty() {
            // `ingested_at_ms`: when the rows are written, the last step before COMMIT (not
            // when the transaction began), so publish → ingested measures up to the commit.
            let ingested = self.clock.now_ms().max(now);
            self.partitions.ensure(&mut tx, ingested).await?;
            let partition = self.partitions.partition_for(&mut tx, ingested).await?;
            // Only rows above each gateway's stored mark, read under its row's lock: the
            // mark is raised below in this same transaction.
            let gateways: Vec<&str> = progress.keys().map(String::as_str).collect();
            let marks: HashMap<String, i64> = events::gateway_marks(&mut tx, &gateways).await?.into_iter().collect();
            let before = rows.len();
            rows.retain(|r| r.seq > marks.get(&r.gateway_id).copied().unwrap_or(0));
            if rows.len() < before {
                warn!(
                    dropped = before - rows.len(),
                    "events at or below their gateway's stored mark were not stored"
                );
            }
            events::insert_events(&mut tx, &partition, &rows, ingested).await?;
        }
        // Every gateway's mark and last-seen time in one statement (those only heard from
        // keep their mark: 0 never raises it).
        let seen: Vec<(String, i64)> = self
            .seen
            .drain()
            .filter(|(gateway, _)| !progress.contains_key(gateway))
            .collect();
        let marks: Vec<events::Progress<'_>> = progress
            .iter()
            .map(|(gateway, last)| events::Progress {
                gateway,
                last_seq: *last,
                last_seen_ms: now,
            })
            .chain(seen.iter().map(|(gateway, seen_at)| events::Progress {
                gateway,
                last_seq: 0,
                last_seen_ms: *seen_at,
            }))
            .collect();
        events::raise_marks(&mut tx, &marks).await?;
        if let Some(f) = &self.fence {
            // The other hubs' live streams: this commit's events, committed with it.
            let pending = self.engine.pending_published();
            if !pending.is_empty() {
                let events = serde_json::to_string(pending).map_err(|e| StoreError::Query {
                    what: "writing the stream events as JSON".into(),
                    source: sqlx::Error::Encode(Box::new(e)),
                })?;
                crate::cluster::queries::outbox_append(&mut tx, &f.holder, f.epoch, now, &events).await?;
            }
            if timers && now - self.outbox_purged_at >= OUTBOX_PURGE_EVERY_MS {
                crate::cluster::queries::outbox_purge(&mut tx, now - OUTBOX_KEEP_MS).await?;
                self.outbox_purged_at = now;
            }
        }
        tx.commit().await.map_err(|source| StoreError::Query {
            what: "committing the ingest transaction".into(),
            source,
        })?;
        // Counted once committed: a rolled-back purge deleted nothing.
        self.metrics
            .events_purged
            .fetch_add(purged, std::sync::atomic::Ordering::Relaxed);
        for (history, rows, took) in purges {
            self.metrics.observe_purge(history, rows, took);
        }
        Ok(changes)
    }
}
