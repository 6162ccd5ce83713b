//! Modbus TCP adapter: polls plant devices (pumps, tanks, meters) by a configured point map
//! and reports their values by exception (DESIGN §4.3).
//!
//! - [`decode`]: registers ⇄ engineering values (pure).
//! - [`plan`]: which read requests cover a device's points (pure).
//! - [`report`]: report-by-exception and online/offline decisions (pure).
//! - [`link`]: one connection with timeouts and reconnects (I/O).
//! - [`poller`]: the per-device task that does the I/O around them.

pub mod config;
pub mod decode;
pub mod link;
pub mod plan;
mod poller;
pub mod report;

pub use poller::run_device;
