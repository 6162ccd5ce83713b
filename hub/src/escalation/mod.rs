//! Escalation: policies, the planner and the per-timer decision ([`policy`], pure), every
//! SQL statement on the durable timers ([`queries`]), and the shell that plans, claims and
//! fires them inside the writer's transaction ([`apply`]). Roles and who holds them are
//! [`crate::roles`]' (re-exported here), shared with the notifications and the rota.

pub mod apply;
pub mod policy;
pub mod queries;

pub use crate::roles::*;
pub use policy::*;
