//! Incidents: categories and where an alarm goes ([`model`]), procedures ([`procedures`]),
//! the workflow ([`workflow`]), all pure; every SQL statement on incidents ([`queries`]);
//! and the shell that applies the decisions inside the writer's transaction ([`apply`]).

pub mod apply;
pub mod model;
pub mod procedures;
pub mod queries;
pub mod workflow;

pub use model::*;
pub use procedures::*;
pub use workflow::*;
