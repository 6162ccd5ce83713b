//! What gateways deliver: event rows, each gateway's sequence and progress, device
//! registries, command results and the vehicle-entry count. All of its SQL is in
//! [`queries`]; the single writer calls it inside its transaction.

pub mod queries;
