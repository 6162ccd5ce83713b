//! Incidents: categories and where an alarm goes ([`model`]), procedures ([`procedures`]),
//! the workflow ([`workflow`]), all pure; and every SQL statement on incidents
//! ([`queries`]). The engine (`engine/incidents.rs`, `engine/workflow.rs`) applies the
//! decisions inside the writer's transaction.

pub mod apply;
pub mod model;
pub mod procedures;
pub mod queries;
pub mod workflow;

pub use model::*;
pub use procedures::*;
pub use workflow::*;
