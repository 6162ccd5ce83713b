//! Escalation: roles, policies, the planner and the per-timer decision ([`policy`], pure),
//! and every SQL statement on the durable timers ([`queries`]). The engine
//! (`engine/escalation.rs`) plans, claims and fires them inside the writer's transaction.

pub mod policy;
pub mod queries;

pub use policy::*;
