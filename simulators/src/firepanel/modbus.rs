//! A fire panel's Modbus gateway module: input registers hold one status word per zone,
//! holding registers take reset and silence.
//!
//! Bits of a zone word: [`FIRE`], [`PRE_ALARM`], [`FAULT`], [`DISABLED`], [`ACTIVE`].
//! [`ZoneMapPanel::gateway_config`] prints the `[devices.modbus_fire]` table that reads it.

use std::{
    future::{Ready, ready},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::net::TcpListener;
use tokio_modbus::{ExceptionCode, Request, Response, server::Service, server::tcp::Server};
use tokio_util::sync::CancellationToken;

pub const FIRE: u16 = 1 << 0;
pub const PRE_ALARM: u16 = 1 << 1;
pub const FAULT: u16 = 1 << 2;
pub const DISABLED: u16 = 1 << 3;
pub const ACTIVE: u16 = 1 << 4;
/// Holding register: write 1 to reset the panel (every zone back to normal but
/// disablements).
pub const RESET_REGISTER: u16 = 100;
/// Holding register: write 1 to silence the sounders.
pub const SILENCE_REGISTER: u16 = 101;

#[derive(Debug, Default)]
struct State {
    zones: Vec<u16>,
    silenced: bool,
    resets: u32,
}

/// Cheap to clone; every clone is the same panel.
#[derive(Debug, Clone)]
pub struct ZoneMapPanel {
    state: Arc<Mutex<State>>,
}

impl ZoneMapPanel {
    /// A panel with `zones` zones (zone 1 is input register 0), all normal.
    pub fn new(zones: u16) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                zones: vec![0; usize::from(zones)],
                ..State::default()
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (`on`) or clears bits of zone `zone` (1-based).
    pub fn set(&self, zone: u16, bits: u16, on: bool) {
        let mut s = self.state();
        if let Some(w) = zone.checked_sub(1).and_then(|i| s.zones.get_mut(usize::from(i))) {
            if on {
                *w |= bits;
            } else {
                *w &= !bits;
            }
        }
        if on && bits & FIRE != 0 {
            s.silenced = false;
        }
    }

    pub fn fire(&self, zone: u16) {
        self.set(zone, FIRE, true);
    }

    pub fn zone_word(&self, zone: u16) -> u16 {
        let s = self.state();
        zone.checked_sub(1)
            .and_then(|i| s.zones.get(usize::from(i)).copied())
            .unwrap_or(0)
    }

    pub fn silenced(&self) -> bool {
        self.state().silenced
    }

    pub fn resets(&self) -> u32 {
        self.state().resets
    }

    /// Serves Modbus TCP on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let server = Server::new(listener);
        let on_connected = move |stream, _| {
            let service = self.clone();
            async move { Ok(Some((service, stream))) }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            r = server.serve(&on_connected, |e| tracing::debug!(error = %e, "fire panel modbus connection")) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "fire panel modbus server stopped");
                }
            }
        }
    }

    /// The gateway's `[[devices]]` entry for this panel at `address`.
    pub fn gateway_config(&self, device_id: &str, area: &str, address: &str) -> String {
        let zones = self.state().zones.len();
        format!(
            r#"[[devices]]
id = "{device_id}"
kind = "fire_panel"
area = "{area}"
[devices.modbus_fire]
address = "{address}"
unit = 1
poll_ms = 500
timeout_ms = 500
table = "input"
first_register = 0
zones = {zones}
first_zone = 1
bits = {{ fire = 0, pre_alarm = 1, fault = 2, disabled = 3, active = 4 }}
reset_register = {RESET_REGISTER}
silence_register = {SILENCE_REGISTER}
"#
        )
    }

    fn serve_request(&self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        let mut s = self.state();
        match req {
            Request::ReadInputRegisters(a, n) => {
                let (a, n) = (usize::from(a), usize::from(n));
                s.zones
                    .get(a..a + n)
                    .map(|w| Response::ReadInputRegisters(w.to_vec()))
                    .ok_or(ExceptionCode::IllegalDataAddress)
            }
            Request::WriteSingleRegister(RESET_REGISTER, v) => {
                if v == 1 {
                    s.resets += 1;
                    s.silenced = false;
                    for w in &mut s.zones {
                        *w &= DISABLED;
                    }
                }
                Ok(Response::WriteSingleRegister(RESET_REGISTER, v))
            }
            Request::WriteSingleRegister(SILENCE_REGISTER, v) => {
                if v == 1 {
                    s.silenced = true;
                }
                Ok(Response::WriteSingleRegister(SILENCE_REGISTER, v))
            }
            Request::WriteSingleRegister(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

impl Service for ZoneMapPanel {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.serve_request(req).map(Some))
    }
}
