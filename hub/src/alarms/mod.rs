//! Alarms: the model ([`model`]), the rule engine that turns events into alarm changes
//! ([`rules`], pure), the alarm book's ISA-18.2 decisions ([`book`], pure), every SQL
//! statement on alarms ([`queries`]), and the shell that applies the changes and the book's
//! decisions inside the writer's transaction ([`apply`]).

pub mod apply;
pub mod book;
pub mod model;
pub mod queries;
pub mod rules;

pub use model::*;
