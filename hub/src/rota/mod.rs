//! The rota (issue 4): live coverage of every post from the events the hub already sees,
//! cover proposals, patrols, handovers and the weekly plan.
//!
//! Pure cores (no I/O; the time is an argument):
//! - [`model`] — configuration, validation, time zones, shift instances;
//! - [`coverage`] — the ledger step: required against present, the grace period;
//! - [`fit`] — hard rules and soft costs; [`hungarian`] — the assignment solver;
//! - [`proposals`] — open gaps → jointly solved cover; [`plan`] — the weekly local search,
//!   reproducible from its seed and move budget;
//! - [`patrol`] — tours; [`handover`] — the sheet; [`csv`]; [`bulk`] — imports and published
//!   plans as slices of slot changes; [`synth`] — synthetic regions (tests, benchmark).
//!
//! State: [`state`] — `Live`, the working state; [`shared`] — [`RotaShared`], the committed
//! state readers see; [`resolver`] — "who is on duty at this post now" for escalation.
//!
//! The shell: [`shell`] — [`RotaShell`], called by the engine in the writer's transaction;
//! it persists what the cores decide and hands the alarm book [`RotaEffect`]s (raise, clear,
//! notify, publish). [`queries`] holds every SQL statement of the rota.

pub mod bulk;
pub mod coverage;
pub mod csv;
pub mod fit;
pub mod handover;
pub mod hungarian;
pub mod model;
pub mod patrol;
pub mod plan;
pub mod proposals;
pub mod queries;
pub mod resolver;
pub mod shared;
pub mod shell;
pub mod state;
pub mod synth;

pub use shared::RotaShared;
pub use shell::{RotaEffect, RotaOp, RotaShell};
