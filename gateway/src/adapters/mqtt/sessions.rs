//! The connected clients by client id, with what each subscribed to: where a command for a
//! device finds the connection to go out on, and where a takeover closes the older
//! connection of a client id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::acl::{self, Identity};

/// A message the gateway sends a client (a command).
pub(crate) struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
}

/// The connected clients by client id, with what each subscribed to.
#[derive(Clone, Default)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    identity: Identity,
    conn: u64,
    tx: mpsc::Sender<Outgoing>,
    close: CancellationToken,
    filters: Vec<(String, QoS)>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as `client_id` (the session key: the client id scoped
    /// to its device), closing any older connection of that key.
    pub(super) fn open(
        &self,
        client_id: &str,
        identity: Identity,
        conn: u64,
        tx: mpsc::Sender<Outgoing>,
        close: CancellationToken,
    ) {
        let old = self.lock().insert(
            client_id.to_string(),
            Session {
                identity,
                conn,
                tx,
                close,
                filters: Vec::new(),
            },
        );
        if let Some(old) = old {
            old.close.cancel();
        }
    }

    /// Forgets `client_id` if `conn` still holds it (a takeover may have replaced it).
    pub(super) fn close(&self, client_id: &str, conn: u64) {
        let mut s = self.lock();
        if s.get(client_id).is_some_and(|x| x.conn == conn) {
            s.remove(client_id);
        }
    }

    /// Whether `conn` still holds `client_id` (false once another connection took it over).
    pub(super) fn holds(&self, client_id: &str, conn: u64) -> bool {
        self.lock().get(client_id).is_some_and(|s| s.conn == conn)
    }

    pub(super) fn subscribe(&self, client_id: &str, conn: u64, filters: impl IntoIterator<Item = (String, QoS)>) {
        if let Some(s) = self.lock().get_mut(client_id).filter(|s| s.conn == conn) {
            for (f, q) in filters {
                s.filters.retain(|(g, _)| *g != f);
                s.filters.push((f, q));
            }
        }
    }

    pub(super) fn unsubscribe(&self, client_id: &str, conn: u64, filters: &[String]) {
        if let Some(s) = self.lock().get_mut(client_id).filter(|s| s.conn == conn) {
            s.filters.retain(|(g, _)| !filters.contains(g));
        }
    }

    /// Queues `payload` on `topic` to every session with a matching filter, at the highest
    /// QoS granted among its matching filters; returns how many sessions took it.
    pub(crate) fn deliver(&self, topic: &str, payload: Bytes) -> usize {
        let mut n = 0;
        for s in self.lock().values() {
            let qos = s
                .filters
                .iter()
                .filter(|(f, _)| acl::may_receive(&s.identity, topic, f))
                .map(|(_, q)| *q)
                .fold(None, |best: Option<QoS>, q| match best {
                    Some(b) if b >= q => Some(b),
                    _ => Some(q),
                });
            if let Some(qos) = qos {
                let out = Outgoing {
                    topic: topic.to_string(),
                    payload: payload.clone(),
                    qos,
                };
                if s.tx.try_send(out).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }
}
