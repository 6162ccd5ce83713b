//! Notifications: the outbox (rows queued with the decision that caused them, claimed and
//! recorded through the writer), the deliverer that sends them; the live stream's events
//! are [`crate::stream`]'s.
//!
//! The shell ([`apply`]) queues rows in the writer's transaction; the deliverer
//! ([`deliverer`]) claims them through a [`DeliveryDesk`] (the writer), sends each one on its
//! channel and reports the outcome back the same way; [`tls`] says which roots an https
//! webhook trusts. Every statement on `notifications` is
//! in [`queries`].

pub mod apply;
pub mod deliverer;
pub mod outbox;
pub mod queries;
pub mod tls;

pub use crate::stream::StreamEvent;
pub use deliverer::{DelivererConfig, WebhookAttempts, WebhookResult, run_deliverer, signature};
pub use outbox::{Delivery, DeliveryDesk, DeliveryOutcome, NotifyConfig, backoff_ms};
