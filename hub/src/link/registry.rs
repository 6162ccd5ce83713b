//! The gateways connected now: one downlink sender per gateway, so the API can send them
//! commands; a newer stream of the same gateway replaces (and cancels) the older one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse_proto::{Command, Downlink, downlink};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::DownlinkSender;
use crate::tls::server::Revoked;

/// Why a downlink message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("gateway {0} is not connected")]
    NotConnected(String),
    #[error("the stream of gateway {0} closed")]
    Closed(String),
}

/// One gateway's current stream.
pub(super) struct Registration {
    pub conn_id: u64,
    pub tx: DownlinkSender,
    pub cancel: CancellationToken,
    /// The serial of its client certificate (TLS only).
    pub serial: Option<Vec<u8>>,
    /// Set when a CRL reload revoked that certificate, before `cancel`.
    pub revoked: Arc<AtomicBool>,
}

/// The gateways connected now, and a way to send them downlink messages.
#[derive(Clone, Default)]
pub struct LinkRegistry {
    links: Arc<Mutex<HashMap<String, Registration>>>,
    next_conn: Arc<AtomicU64>,
}

impl std::fmt::Debug for LinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRegistry")
            .field("connected", &self.connected())
            .finish()
    }
}

impl LinkRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registration>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids of the gateways with an open stream, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn connected_count(&self) -> usize {
        self.lock().len()
    }

    pub fn is_connected(&self, gateway_id: &str) -> bool {
        self.lock().contains_key(gateway_id)
    }

    /// Sends a command down to a connected gateway.
    pub async fn send_command(&self, gateway_id: &str, command: Command) -> Result<(), LinkError> {
        let tx = self
            .lock()
            .get(gateway_id)
            .map(|l| l.tx.clone())
            .ok_or_else(|| LinkError::NotConnected(gateway_id.to_owned()))?;
        tx.send(Ok(Downlink {
            msg: Some(downlink::Msg::Command(command)),
        }))
        .await
        .map_err(|_| LinkError::Closed(gateway_id.to_owned()))
    }

    /// A number for a new stream of any gateway.
    pub(super) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes a stream the gateway's current one (commands go to it), ending any older one.
    /// Called only once its Welcome is queued: the gateway must read Welcome first, so no
    /// command may be queued on the stream before it.
    pub(super) fn register(&self, gateway_id: &str, link: Registration) {
        let old = self.lock().insert(gateway_id.to_owned(), link);
        if let Some(old) = old {
            info!(gateway = %gateway_id, "a new stream replaces the gateway's older one");
            old.cancel.cancel();
        }
    }

    /// Ends the streams whose client certificate `revoked` lists; returns their gateways.
    pub fn cut_revoked(&self, revoked: &Revoked) -> Vec<String> {
        let mut cut = Vec::new();
        for (gateway, link) in self.lock().iter() {
            if link.serial.as_ref().is_some_and(|s| revoked.contains(s)) {
                link.revoked.store(true, Ordering::Relaxed);
                link.cancel.cancel();
                cut.push(gateway.clone());
            }
        }
        cut
    }

    /// Ends every stream (this hub lost the writer lease): the gateways go to another hub.
    pub fn cut_all(&self) -> usize {
        let links = self.lock();
        for link in links.values() {
            link.cancel.cancel();
        }
        links.len()
    }

    /// Removes a stream if it is still the gateway's current one.
    pub(super) fn unregister(&self, gateway_id: &str, conn_id: u64) -> bool {
        let mut links = self.lock();
        if links.get(gateway_id).is_some_and(|l| l.conn_id == conn_id) {
            links.remove(gateway_id);
            true
        } else {
            false
        }
    }
}
