//! Notifications: the outbox (rows queued with the decision that caused them, claimed and
//! recorded through the writer), the deliverer that sends them; the live stream's events
//! are [`crate::stream`]'s.
//!
//! The shell ([`apply`]) queues rows in the writer's transaction; the deliverer
//! ([`deliverer`]) claims them through a [`DeliveryDesk`] (the writer) — paced per recipient
//! by [`pacing`]: digests and quiet hours — sends each one on its
//! channel and reports the outcome back the same way; [`tls`] says which roots an https
//! webhook trusts. A row's channel is an [`address::Address`]; its body a
//! [`body::NotificationBody`], rendered for people by [`message`] and sent by the deliverer
//! (log, webhooks) or [`channels`] (chat robots, e-mail, SMS); [`answer`] signs the links and
//! SMS reply codes with which people answer a page; `[notify]` is [`config`]. Every statement on `notifications` is
//! in [`queries`].

pub mod address;
pub mod answer;
pub mod apply;
pub mod body;
pub mod channels;
pub mod config;
pub mod deliverer;
pub mod message;
pub mod outbox;
pub mod pacing;
pub mod queries;
pub mod tls;

pub use crate::stream::StreamEvent;
pub use config::NotifyConfig;
pub use deliverer::{ChannelAttempts, DelivererConfig, run_deliverer, signature};
pub use outbox::{Delivery, DeliveryDesk, DeliveryOutcome, WebhookAttempts, WebhookResult, backoff_ms};
