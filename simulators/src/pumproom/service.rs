//! The Modbus face of the pump room: requests against the register map, with the injected
//! fault applied first.

use std::{
    future::{Future, ready},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio_modbus::{ExceptionCode, Request, Response, server::Service};

use super::model::Model;

/// How the simulated device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Requests are read and never answered (the gateway's timeout fires).
    NoAnswer,
    /// Each answer is sent after this delay.
    LateAnswer(Duration),
    /// Every request is answered with this exception.
    Exception(ExceptionCode),
}

/// State shared by the handle, the model task and every connection.
pub(super) struct Shared {
    pub model: Mutex<Model>,
    pub fault: Mutex<Fault>,
}

/// A poisoned lock only means a panic elsewhere mid-update; the model is still usable,
/// and a simulator that stops answering would hide the real failure.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone)]
pub(super) struct PumpService {
    pub shared: Arc<Shared>,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl Service for PumpService {
    type Request = Request<'static>;
    /// `None` sends nothing back: that is how [`Fault::NoAnswer`] plays a dead device.
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let fault = *lock(&self.shared.fault);
        match fault {
            Fault::None => Box::pin(ready(answer(&mut lock(&self.shared.model), request).map(Some))),
            // Dropping the request rather than returning a future that never resolves:
            // the client sees the same silence, but the connection task still ends when
            // the client gives up and closes, instead of leaking one per reconnect.
            Fault::NoAnswer => Box::pin(ready(Ok(None))),
            Fault::LateAnswer(delay) => {
                let shared = Arc::clone(&self.shared);
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    answer(&mut lock(&shared.model), request).map(Some)
                })
            }
            Fault::Exception(code) => Box::pin(ready(Err(code))),
        }
    }
}

/// Reads the `count` entries at `address`, or the exception a real device would send.
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

fn write_coil(model: &mut Model, address: u16, on: bool) -> Result<(), ExceptionCode> {
    match address {
        0 => model.pump1_enabled = on,
        1 => {
            if on {
                model.reset();
            }
        }
        _ => return Err(ExceptionCode::IllegalDataAddress),
    }
    Ok(())
}

/// Serves one request. Holding registers are measurements: writing them is refused as an
/// illegal address, as many real devices do for read-only registers.
pub(super) fn answer(model: &mut Model, request: Request<'_>) -> Result<Response, ExceptionCode> {
    match request {
        Request::ReadHoldingRegisters(a, n) => Ok(Response::ReadHoldingRegisters(range(&model.holding(), a, n, 125)?)),
        Request::ReadInputRegisters(a, n) => Ok(Response::ReadInputRegisters(range::<u16>(&[], a, n, 125)?)),
        Request::ReadCoils(a, n) => Ok(Response::ReadCoils(range(&model.coils(), a, n, 2000)?)),
        Request::ReadDiscreteInputs(a, n) => Ok(Response::ReadDiscreteInputs(range(&model.discrete(), a, n, 2000)?)),
        Request::WriteSingleCoil(a, on) => {
            write_coil(model, a, on)?;
            Ok(Response::WriteSingleCoil(a, on))
        }
        Request::WriteMultipleCoils(a, values) => {
            let count = u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
            // Check the whole range first so a refused write changes nothing.
            range(&model.coils(), a, count, 1968)?;
            for (i, on) in values.iter().enumerate() {
                write_coil(model, a + i as u16, *on)?;
            }
            Ok(Response::WriteMultipleCoils(a, count))
        }
        Request::WriteSingleRegister(..)
        | Request::WriteMultipleRegisters(..)
        | Request::MaskWriteRegister(..)
        | Request::ReadWriteMultipleRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn model() -> Model {
        Model::new(Duration::from_secs(8), 7)
    }

    #[test]
    fn invalid_addresses_and_counts_are_exceptions_not_panics() {
        let mut m = model();
        let cases = [
            (Request::ReadHoldingRegisters(6, 2), ExceptionCode::IllegalDataAddress),
            (
                Request::ReadHoldingRegisters(65_535, 125),
                ExceptionCode::IllegalDataAddress,
            ),
            (Request::ReadHoldingRegisters(0, 0), ExceptionCode::IllegalDataValue),
            (Request::ReadHoldingRegisters(0, 126), ExceptionCode::IllegalDataValue),
            (Request::ReadInputRegisters(0, 1), ExceptionCode::IllegalDataAddress),
            (Request::ReadCoils(2, 1), ExceptionCode::IllegalDataAddress),
            (Request::ReadDiscreteInputs(0, 5), ExceptionCode::IllegalDataAddress),
            (Request::WriteSingleCoil(2, true), ExceptionCode::IllegalDataAddress),
            (Request::WriteSingleRegister(0, 1), ExceptionCode::IllegalDataAddress),
            (
                Request::WriteMultipleCoils(1, Cow::Owned(vec![true, true])),
                ExceptionCode::IllegalDataAddress,
            ),
            (Request::ReportServerId, ExceptionCode::IllegalFunction),
        ];
        for (request, expected) in cases {
            let shown = format!("{request:?}");
            assert_eq!(answer(&mut m, request), Err(expected), "{shown}");
        }
    }

    #[test]
    fn fault_reset_coil_clears_faults_and_enable_coil_stops_the_duty_pump() {
        let mut m = model();
        m.trip(1);
        assert_eq!(
            answer(&mut m, Request::ReadDiscreteInputs(0, 1)),
            Ok(Response::ReadDiscreteInputs(vec![true]))
        );
        assert_eq!(
            answer(&mut m, Request::WriteSingleCoil(1, true)),
            Ok(Response::WriteSingleCoil(1, true))
        );
        assert_eq!(
            answer(&mut m, Request::ReadDiscreteInputs(0, 2)),
            Ok(Response::ReadDiscreteInputs(vec![false, false]))
        );
        answer(&mut m, Request::WriteSingleCoil(0, false)).unwrap();
        m.step(Duration::from_millis(100));
        assert!(!m.pumps[0].running);
        assert_eq!(
            answer(&mut m, Request::ReadCoils(0, 2)),
            Ok(Response::ReadCoils(vec![false, false]))
        );
    }
}
