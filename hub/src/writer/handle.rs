//! The writer's mailbox: [`WriterHandle`], the requests it carries, and the answers and
//! errors its callers (the gRPC link, the HTTP API, the deliverer) get back after the commit.

use std::sync::{Arc, RwLock};

use gatehouse_proto::{CommandResult, DeviceInfo, Event};
use tokio::sync::{mpsc, oneshot};

use super::seqs::Rejected;
use crate::alarms::AlarmJson;
use crate::audit::{Actor, AuditEntry};
use crate::engine::{Op, OpError};
use crate::notify::{Delivery, DeliveryDesk, DeliveryOutcome};

/// Why the writer could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriterError {
    #[error("the ingest writer has stopped")]
    Stopped,
    /// This hub does not hold the writer lease (`cluster`): another hub writes.
    #[error("standby hub; try another")]
    Standby,
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("gateway {0} must reconnect: an earlier batch of its stream failed to commit")]
    MustReconnect(String),
    #[error("{0}")]
    Rejected(Rejected),
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

pub(super) type Reply<T> = oneshot::Sender<Result<T, WriterError>>;

pub(super) enum Request {
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
        actor: Actor,
        alarm_id: i64,
        operator: String,
        note: Option<String>,
        reply: oneshot::Sender<Result<AlarmJson, AckError>>,
    },
    /// Run the timers now (tests, after advancing a manual clock).
    Tick(oneshot::Sender<()>),
    Op(Actor, Op, oneshot::Sender<Result<i64, ActionError>>),
    /// An audit row for an action with no writer op of its own (sign-in, users, tokens).
    Audit(Actor, AuditEntry, Reply<i64>),
    Claim(i64, Reply<Vec<Delivery>>),
    Delivered(DeliveryOutcome),
    /// Sign-in state: sessions, users, API tokens.
    Auth(crate::auth::queries::AuthWrite, Reply<u64>),
}

impl Request {
    pub(super) fn events(&self) -> usize {
        match self {
            Request::Ingest { events, .. } => events.len(),
            _ => 0,
        }
    }
}

/// A cheap, cloneable handle for sending work to the writer. Every clone sees the same
/// mailbox slot: on several hubs (`cluster`) the slot is empty while this hub is a standby
/// ([`WriterError::Standby`]) and filled with [`WriterHandle::install`] when it becomes active.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    pub(super) tx: Arc<RwLock<Option<mpsc::Sender<Request>>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl WriterHandle {
    pub(super) fn new(tx: mpsc::Sender<Request>) -> WriterHandle {
        WriterHandle {
            tx: Arc::new(RwLock::new(Some(tx))),
        }
    }

    /// A handle with no writer behind it yet: every request is answered
    /// [`WriterError::Standby`] until [`WriterHandle::install`].
    pub fn standby() -> WriterHandle {
        WriterHandle {
            tx: Arc::new(RwLock::new(None)),
        }
    }

    /// Points this handle (and every clone of it) at the writer behind `started`.
    pub fn install(&self, started: &WriterHandle) {
        let tx = started.sender();
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = tx;
    }

    /// Empties the slot: from now on every request is answered [`WriterError::Standby`].
    pub fn clear(&self) {
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn sender(&self) -> Option<mpsc::Sender<Request>> {
        self.tx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn send(&self, request: Request) -> Result<(), WriterError> {
        let tx = self.sender().ok_or(WriterError::Standby)?;
        tx.send(request).await.map_err(|_| WriterError::Stopped)
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

    /// Carries out an operator action by `actor`; answers with the alarm or incident id
    /// after the commit. The action's audit row is written in the same transaction.
    pub async fn op(&self, actor: &Actor, op: Op) -> Result<i64, ActionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Op(actor.clone(), op, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// Writes sign-in state (a session, a user, an API token); answers after the commit
    /// with what [`crate::auth::queries::AuthWrite`] says for the variant.
    pub async fn auth(&self, write: crate::auth::queries::AuthWrite) -> Result<u64, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Auth(write, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// Appends an audit row for an action that has no writer op of its own — a login, a
    /// failed login, a logout, a user or token change (see `AuditEntry::login` & co.) —
    /// and answers its `seq` once committed.
    pub async fn audit(&self, actor: Actor, entry: AuditEntry) -> Result<i64, WriterError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Audit(actor, entry, reply)).await?;
        rx.await.map_err(|_| WriterError::Stopped)?
    }

    /// `actor` acknowledges alarm `alarm_id`; answers with the alarm after the commit.
    pub async fn acknowledge(
        &self,
        actor: &Actor,
        alarm_id: i64,
        operator: String,
        note: Option<String>,
    ) -> Result<AlarmJson, AckError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Acknowledge {
            actor: actor.clone(),
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
pub(super) enum Answer {
    Hello(Reply<u64>, u64),
    Ingest(Reply<IngestOutcome>, IngestOutcome, String),
    Refused(Reply<IngestOutcome>, String),
    Rejected(Reply<IngestOutcome>, Rejected),
    Ack(oneshot::Sender<Result<AlarmJson, AckError>>, Result<i64, AckError>),
    Tick(oneshot::Sender<()>),
    Op(oneshot::Sender<Result<i64, ActionError>>, Result<i64, OpError>),
    Claim(Reply<Vec<Delivery>>, Vec<Delivery>),
    Auth(Reply<u64>, u64),
    Audit(Reply<i64>, i64),
}
