//! Operator commands to devices (`POST /devices/{id}/commands`): which actions each device
//! kind takes ([`model`], pure), the `commands` table ([`queries`], its only writer) and the
//! shell that records and settles them in the writer's transaction ([`apply`]).
//!
//! A command's life: refused at the HTTP edge if its kind cannot take it; recorded as
//! `sent` (with a `command_deadline` timer) in the writer's transaction; only after that
//! commit sent down the gateway's link; then settled once — `ok` or `failed` by the
//! gateway's result (in the transaction that stores it), `gateway_offline` if the gateway
//! had no stream, `timed_out` when its timer fires first.

pub mod apply;
pub mod model;
pub mod queries;

pub use model::CommandState;
pub use queries::{CommandRow, NewCommand};
