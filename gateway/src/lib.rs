//! Gatehouse site gateway: translates what an estate's devices say into canonical events,
//! stores them in its outbox and forwards them to the hub; carries commands back down.
//!
//! Gateways translate; the hub decides: no alarm rule lives here.

pub mod adapters;
pub mod config;
pub mod gateway;
pub mod health;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod registry;
pub mod telemetry;
pub mod uplink;

pub use gateway::{RunningGateway, StartError, start};
