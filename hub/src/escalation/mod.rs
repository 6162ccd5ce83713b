//! Escalation: policies, the planner and the per-timer decision ([`policy`], pure), roles
//! and who holds them ([`roles`]), and every SQL statement on the durable timers
//! ([`queries`]). The engine (`engine/escalation.rs`) plans, claims and fires them inside
//! the writer's transaction.

pub mod policy;
pub mod queries;
pub mod roles;

pub use policy::*;
pub use roles::*;
