//! Alarms: the model ([`model`]), the rule engine that turns events into alarm changes
//! ([`rules`], pure), the alarm book's ISA-18.2 decisions ([`book`], pure), and every SQL
//! statement on alarms ([`queries`]). The engine (`engine/alarms.rs`) applies the changes
//! inside the writer's transaction.

pub mod apply;
pub mod book;
pub mod model;
pub mod queries;
pub mod rules;

pub use model::*;
