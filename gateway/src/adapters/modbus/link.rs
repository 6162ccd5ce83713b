//! One Modbus TCP connection with the protocol's failure rules: connect on demand, a
//! timeout on every request, and the connection dropped (and counted) after a timeout or a
//! transport error, since a late reply would answer the next request. Used by the point
//! poller and the fire-panel zone poller.

use std::{sync::Arc, sync::atomic::Ordering::Relaxed, time::Duration};

use tokio::{net::TcpStream, time};
use tokio_modbus::{
    ExceptionCode, Request, Response, Slave,
    client::{Client, Context, tcp::attach_slave},
};
use tracing::debug;

use crate::metrics::{Metrics, ModbusFailure};

pub struct Link {
    device: String,
    address: String,
    unit: u8,
    timeout: Duration,
    conn: Option<Context>,
    metrics: Arc<Metrics>,
}

impl Link {
    pub fn new(device: &str, address: &str, unit: u8, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            device: device.to_string(),
            address: address.to_string(),
            unit,
            timeout,
            conn: None,
            metrics,
        }
    }

    /// Sends one request, opening the connection first if needed. `Err` means no answer
    /// (connection, transport or timeout; the connection is dropped), `Ok(Err)` the
    /// device's exception.
    pub async fn call(&mut self, request: Request<'static>) -> Result<Result<Response, ExceptionCode>, String> {
        self.ensure_connected().await?;
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        self.metrics.modbus_requests.fetch_add(1, Relaxed);
        let what = format!("{request:?}");
        match time::timeout(self.timeout, conn.call(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.metrics.modbus_failure(ModbusFailure::Transport);
                self.drop_connection();
                Err(format!("{what}: {e}"))
            }
            Err(_) => {
                self.metrics.modbus_failure(ModbusFailure::Timeout);
                self.drop_connection();
                Err(format!("{what}: no answer within {} ms", self.timeout.as_millis()))
            }
        }
    }

    pub async fn ensure_connected(&mut self) -> Result<(), String> {
        if self.conn.is_some() {
            return Ok(());
        }
        let address = &self.address;
        let stream = match time::timeout(self.timeout, TcpStream::connect(address.as_str())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.metrics.modbus_failure(ModbusFailure::Connect);
                return Err(format!("connecting to {address}: {e}"));
            }
            Err(_) => {
                self.metrics.modbus_failure(ModbusFailure::Connect);
                return Err(format!(
                    "connecting to {address}: no answer within {} ms",
                    self.timeout.as_millis()
                ));
            }
        };
        // Requests are small and answered one at a time: Nagle would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(device = %self.device, error = %e, "TCP_NODELAY not set");
        }
        self.conn = Some(attach_slave(stream, Slave(self.unit)));
        Ok(())
    }

    /// Drops the connection (the stream is out of step); counted as a reconnect.
    pub fn drop_connection(&mut self) {
        if self.conn.take().is_some() {
            self.metrics.modbus_reconnects.fetch_add(1, Relaxed);
        }
    }
}
