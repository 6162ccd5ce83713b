//! Fire panels in their own protocols, for demos, load runs and end-to-end tests.
//!
//! - [`dc09`]: a panel's IP dialler reporting to a gateway's DC-09 receiver over TCP or UDP,
//!   plain or AES-encrypted, in Contact ID or SIA DCS, with NULL line polls; it answers
//!   NAKs by taking the receiver's clock, and retries unanswered frames with the same
//!   sequence number, as a real dialler does. Frames are built by the gateway's own
//!   `adapters::dc09::frame`, the one the receiver parses with.
//! - [`modbus`]: a panel's Modbus gateway module: one status word per zone (fire, pre-alarm,
//!   fault, disabled, active bits) and reset/silence command registers.
//!
//! (The MQTT profile fire panel is [`crate::devices`].)

pub mod dc09;
pub mod modbus;
