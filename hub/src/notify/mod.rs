//! Notifications: the outbox (rows queued with the decision that caused them, claimed and
//! recorded through the writer), the deliverer that sends them, and the live stream.
//!
//! The engine queues rows (`engine/notify.rs`) in the writer's transaction; the deliverer
//! ([`deliverer`]) claims them through a [`DeliveryDesk`] (the writer), sends each one on its
//! channel and reports the outcome back the same way. Every statement on `notifications` is
//! in [`queries`].

pub mod deliverer;
pub mod outbox;
pub mod queries;
pub mod stream;

pub use deliverer::{DelivererConfig, run_deliverer, signature};
pub use outbox::{Delivery, DeliveryDesk, DeliveryOutcome, NotifyConfig, backoff_ms};
pub use stream::StreamEvent;
