//! Gatehouse device simulators and the one-command demo.
//!
//! - [`mqtt_device`], [`devices`]: door controllers, intercoms and fire panels speaking the
//!   MQTT device profile v1 to a gateway's embedded broker.
//! - [`firepanel`]: fire panels over SIA DC-09 (plain/encrypted, Contact ID/SIA DCS) and
//!   Modbus zone maps.
//! - [`pumproom`]: a water-pump room as a Modbus TCP server with a small physical model and
//!   fault injection.
//! - [`scenario`]: simulated estates wired to a hub; [`demo`] tells a story with three.
//! - [`inbox`]: the demo's facility inbox, a DingTalk custom robot's receiving end.
//! - [`load`]: a load run against a hub and gateway processes, with its figures.
//! - [`bench`](mod@bench): the transport and storage limits beside the hub's real ingest.
//! - [`modbus_load`]: one gateway polling many simulated Modbus servers, with its CPU cost.
//! - [`harness`]: what those three share (child processes, `/proc` figures, reports); no
//!   mode imports another; [`cli`]: the command-line values every subcommand parses alike.

pub mod bench;
pub mod cli;
pub mod credentials;
pub mod demo;
pub mod devices;
pub mod firepanel;
pub mod harness;
pub mod inbox;
pub mod load;
pub mod modbus_load;
pub mod mqtt_device;
pub mod mqtt_login;
pub mod net;
pub mod operator;
pub mod pumproom;
pub mod scenario;
