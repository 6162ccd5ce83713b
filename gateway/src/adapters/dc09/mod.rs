//! SIA DC-09 receiver: fire panels (and their IP diallers) report to the gateway as to a
//! monitoring centre, over TCP and UDP on one port, plain or AES-encrypted, in Ademco
//! Contact ID (`ADM-CID`) or SIA DCS (`SIA-DCS`).
//!
//! - [`crc`], [`crypto`], [`frame`]: the wire format — pure parse and build (the simulator
//!   builds its frames with [`frame`] too).
//! - [`cid`], [`sia`]: the event tables onto canonical fire events (pure).
//! - [`receiver`]: the decisions — answer, events, duplicates, supervision (pure, clock in).
//! - [`server`]: the I/O shell: sockets, the outbox commit before the ACK, the supervision
//!   tick.

pub mod cid;
pub mod config;
pub mod conns;
pub mod crc;
pub mod crypto;
pub mod frame;
pub mod receiver;
mod server;
pub mod sia;

pub use server::{Dc09Error, start};
