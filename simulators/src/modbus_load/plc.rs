//! The simulated Modbus TCP servers: one loopback listener per device over its own
//! register block, every block drifting once a second so report-by-exception has work.

use std::{
    future::{Ready, ready},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_modbus::{ExceptionCode, Request, Response, server::Service, server::tcp::Server};
use tokio_util::sync::CancellationToken;

use super::{
    ModbusLoadOptions,
    points::{F32_DEADBAND, Kind, PointSpec, Table},
};

/// One server's registers.
#[derive(Debug, Default)]
struct Registers {
    holding: Vec<u16>,
    input: Vec<u16>,
    discrete: Vec<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registers {
    fn new(layout: &[PointSpec], seed: usize) -> Self {
        let mut r = Registers::default();
        for (i, p) in layout.iter().enumerate() {
            let v = (seed * 7 + i) as f64;
            match p.kind {
                Kind::U16 => r.set_u16(p, 1000 + (v as u16 % 1000)),
                Kind::F32 => r.set_f32(p, 20.0 + (v % 50.0) as f32),
                Kind::Bit => r.set_bit(p, i % 2 == 0),
            }
        }
        r
    }

    fn words(&mut self, table: Table) -> &mut Vec<u16> {
        match table {
            Table::Input => &mut self.input,
            _ => &mut self.holding,
        }
    }

    fn set_u16(&mut self, p: &PointSpec, v: u16) {
        let words = self.words(p.table);
        let a = usize::from(p.address);
        if words.len() <= a {
            words.resize(a + 1, 0);
        }
        words[a] = v;
    }

    fn get_u16(&mut self, p: &PointSpec) -> u16 {
        self.words(p.table).get(usize::from(p.address)).copied().unwrap_or(0)
    }

    fn set_f32(&mut self, p: &PointSpec, v: f32) {
        let bits = v.to_bits();
        let words = self.words(p.table);
        let a = usize::from(p.address);
        if words.len() <= a + 1 {
            words.resize(a + 2, 0);
        }
        words[a] = (bits >> 16) as u16;
        words[a + 1] = bits as u16;
    }

    fn get_f32(&mut self, p: &PointSpec) -> f32 {
        let words = self.words(p.table);
        let a = usize::from(p.address);
        match (words.get(a), words.get(a + 1)) {
            (Some(&hi), Some(&lo)) => f32::from_bits((u32::from(hi) << 16) | u32::from(lo)),
            _ => 0.0,
        }
    }

    fn set_bit(&mut self, p: &PointSpec, on: bool) {
        let a = usize::from(p.address);
        if self.discrete.len() <= a {
            self.discrete.resize(a + 1, false);
        }
        self.discrete[a] = on;
    }

    /// One second of drift: each point moves beyond its deadband with probability
    /// `change`; the floats also jitter inside their deadband every time.
    fn drift(&mut self, layout: &[PointSpec], change: f64, rng: &mut fastrand::Rng) {
        for p in layout {
            let moves = rng.f64() < change;
            match p.kind {
                Kind::U16 if moves => {
                    let v = self.get_u16(p);
                    let step = rng.u16(1..=5);
                    let v = if rng.bool() {
                        v.saturating_add(step)
                    } else {
                        v.saturating_sub(step)
                    };
                    self.set_u16(p, v);
                }
                Kind::F32 => {
                    let v = self.get_f32(p);
                    let jitter = (rng.f32() - 0.5) * (F32_DEADBAND as f32) * 0.4;
                    let step = if moves {
                        let s = F32_DEADBAND as f32 * (2.0 + rng.f32() * 4.0);
                        if rng.bool() { s } else { -s }
                    } else {
                        0.0
                    };
                    self.set_f32(p, v + step + jitter);
                }
                Kind::Bit if moves => {
                    let a = usize::from(p.address);
                    let on = self.discrete.get(a).copied().unwrap_or(false);
                    self.set_bit(p, !on);
                }
                _ => {}
            }
        }
    }

    fn answer(&self, request: Request<'_>) -> Result<Response, ExceptionCode> {
        fn range<T: Copy>(table: &[T], address: u16, count: u16, max: u16) -> Result<Vec<T>, ExceptionCode> {
            if count == 0 || count > max {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let start = usize::from(address);
            table
                .get(start..start + usize::from(count))
                .map(<[T]>::to_vec)
                .ok_or(ExceptionCode::IllegalDataAddress)
        }
        match request {
            Request::ReadHoldingRegisters(a, n) => Ok(Response::ReadHoldingRegisters(range(&self.holding, a, n, 125)?)),
            Request::ReadInputRegisters(a, n) => Ok(Response::ReadInputRegisters(range(&self.input, a, n, 125)?)),
            Request::ReadDiscreteInputs(a, n) => Ok(Response::ReadDiscreteInputs(range(&self.discrete, a, n, 2000)?)),
            Request::ReadCoils(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

#[derive(Clone)]
struct PlcService(Arc<Mutex<Registers>>);

impl Service for PlcService {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(lock(&self.0).answer(request).map(Some))
    }
}

/// Binds one loopback listener per device and serves them until `stop`; returns their
/// addresses.
pub(super) async fn start_servers(
    opts: &ModbusLoadOptions,
    layout: &Arc<Vec<PointSpec>>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(opts.devices);
    let mut blocks = Vec::with_capacity(opts.devices);
    for d in 0..opts.devices {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding simulated Modbus server {d} (raise `ulimit -n`?)"))?;
        addrs.push(listener.local_addr()?);
        let block = Arc::new(Mutex::new(Registers::new(layout, d)));
        blocks.push(Arc::clone(&block));
        let service = PlcService(block);
        let stop = stop.clone();
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream, _peer| {
                let service = service.clone();
                async move { Ok(Some((service, stream))) }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                r = server.serve(&on_connected, |e| tracing::debug!(error = %e, "simulated modbus connection")) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "a simulated Modbus server stopped");
                    }
                }
            }
        });
    }
    // The drift: once a second, every block.
    let layout = Arc::clone(layout);
    let change = opts.change;
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(0x6A7E);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    for b in &blocks {
                        lock(b).drift(&layout, change, &mut rng);
                    }
                }
            }
        }
    });
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus_load::points::layout;

    #[test]
    fn registers_answer_the_layout_and_drift() {
        let l = layout(30);
        let mut r = Registers::new(&l, 3);
        let Ok(Response::ReadHoldingRegisters(before)) = r.answer(Request::ReadHoldingRegisters(0, 20)) else {
            panic!("holding registers 0+20 answer");
        };
        assert!(r.answer(Request::ReadHoldingRegisters(0, 21)).is_err());
        assert!(matches!(
            r.answer(Request::ReadDiscreteInputs(0, 8)),
            Ok(Response::ReadDiscreteInputs(b)) if b.len() == 8
        ));
        let mut rng = fastrand::Rng::with_seed(1);
        r.drift(&l, 1.0, &mut rng);
        let Ok(Response::ReadHoldingRegisters(after)) = r.answer(Request::ReadHoldingRegisters(0, 20)) else {
            panic!("holding registers 0+20 answer");
        };
        assert_ne!(before, after);
    }
}
