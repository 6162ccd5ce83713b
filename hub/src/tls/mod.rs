//! TLS between gateways and the hub (issue 12 §1).
//!
//! - [`identity`]: a gateway's identity in its certificate (SAN URI
//!   `urn:gatehouse:gateway:<estate>:<gateway>`), certificate serials.
//! - [`server`]: the listener's rustls settings (hub certificate, client CA, CRL) and their
//!   reload when the CRL file changes.
//! - [`accept`]: the TLS handshake of each admitted gRPC connection, with its timeout.
//! - [`mint`]: a development PKI with rcgen (`gatehouse-hub certs`, the demo, the tests).
//!
//! Invariant: one crypto provider, ring, passed explicitly (never a process default).

pub mod accept;
pub mod identity;
pub mod mint;
pub mod server;

pub use identity::GatewayIdentity;
pub use server::{TlsError, TlsPaths, TlsState};
