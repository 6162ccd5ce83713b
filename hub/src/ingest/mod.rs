//! Ingest: the gRPC link that gateways stream events over ([`grpc`]) and the single writer
//! task that stores them and applies their alarm consequences ([`writer`]).

pub mod grpc;
pub mod writer;

pub use grpc::{LinkError, LinkRegistry};
pub use writer::{AckError, ActionError, IngestOutcome, WriterError, WriterHandle};
