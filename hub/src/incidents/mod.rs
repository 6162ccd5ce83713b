//! Incidents: categories, the workflow and procedures, where an alarm goes ([`model`], pure),
//! and every SQL statement on incidents ([`queries`]). The engine (`engine/incidents.rs`,
//! `engine/workflow.rs`) applies the decisions inside the writer's transaction.

pub mod model;
pub mod queries;

pub use model::*;
