//! The `gatehouse.v1` contract (docs/design.md, gRPC): the canonical [`Event`](v1::Event) model and
//! the gRPC services, generated from `proto/gatehouse/v1/gatehouse.proto` without a system
//! `protoc`.

pub mod v1 {
    #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
    tonic::include_proto!("gatehouse.v1");

    /// The encoded `FileDescriptorSet`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gatehouse_descriptor.bin"));
}

pub use v1::*;

#[cfg(feature = "telemetry")]
pub mod telemetry;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
