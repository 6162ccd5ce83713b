//! `[tls]` (the gRPC listener's TLS) and `[[gateways]]` (the gateways the hub accepts).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, check_id, invalid};
use crate::tls::{GatewayIdentity, TlsPaths};

/// `[tls]`: the gRPC port's TLS. Either `cert`, `key`, `client_ca` (and usually `crl`), or
/// `plaintext = true`, which is accepted only on a loopback `hub.grpc_listen`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Serve gRPC without TLS (development and tests; loopback only).
    #[serde(default)]
    pub plaintext: bool,
    /// The hub's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// The hub's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The CA(s) gateways' client certificates must chain to (PEM).
    pub client_ca: Option<PathBuf>,
    /// The client CA's revocation list (PEM or DER), reloaded when the file changes.
    pub crl: Option<PathBuf>,
    /// How often the CRL file's modification time is checked.
    #[serde(default = "default_crl_poll_s")]
    pub crl_poll_s: u32,
}

fn default_crl_poll_s() -> u32 {
    3
}

/// `[[gateways]]`: a gateway the hub accepts, and the estate it belongs to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub id: String,
    pub estate: String,
}

impl GatewayEntry {
    pub fn identity(&self) -> GatewayIdentity {
        GatewayIdentity::new(&self.estate, &self.id)
    }
}

/// The listener's TLS as the hub starts it.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Explicitly configured, on loopback only.
    Plaintext,
    Tls {
        paths: TlsPaths,
        crl_poll_s: u32,
    },
}

impl TlsSection {
    /// What `[tls]` asks for, checked against where the gRPC port listens.
    pub fn mode(section: Option<&TlsSection>, grpc_listen: SocketAddr) -> Result<TlsMode, ConfigError> {
        let Some(tls) = section else {
            return Err(invalid(
                "tls",
                "missing: set tls.cert, tls.key and tls.client_ca (and tls.crl) — `gatehouse-hub certs` mints a \
                 development set — or tls.plaintext = true for a loopback hub.grpc_listen (development only)",
            ));
        };
        if tls.plaintext {
            if !grpc_listen.ip().is_loopback() {
                return Err(invalid(
                    "tls.plaintext",
                    format!(
                        "plaintext is allowed only on a loopback address, and hub.grpc_listen is {grpc_listen}: \
                         configure tls.cert, tls.key and tls.client_ca instead"
                    ),
                ));
            }
            if tls.cert.is_some() || tls.key.is_some() || tls.client_ca.is_some() || tls.crl.is_some() {
                return Err(invalid(
                    "tls.plaintext",
                    "plaintext = true together with TLS files: say one or the other",
                ));
            }
            return Ok(TlsMode::Plaintext);
        }
        let need = |key: &str, value: &Option<PathBuf>| {
            value.clone().ok_or_else(|| {
                invalid(
                    format!("tls.{key}"),
                    "missing (TLS needs cert, key and client_ca; plaintext needs tls.plaintext = true on loopback)",
                )
            })
        };
        if tls.crl_poll_s == 0 {
            return Err(invalid("tls.crl_poll_s", "must be at least 1"));
        }
        Ok(TlsMode::Tls {
            paths: TlsPaths {
                cert: need("cert", &tls.cert)?,
                key: need("key", &tls.key)?,
                client_ca: need("client_ca", &tls.client_ca)?,
                crl: tls.crl.clone(),
            },
            crl_poll_s: tls.crl_poll_s,
        })
    }
}

/// Each gateway once, in an estate the hub serves; estate ids of gateways hold no `:` (the
/// certificate's identity URI separates estate and gateway with it).
pub fn validate_gateways(gateways: &[GatewayEntry], estates: &HashSet<&str>) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, g) in gateways.iter().enumerate() {
        check_id(&format!("gateways[{i}].id"), &g.id)?;
        check_id(&format!("gateways[{i}].estate"), &g.estate)?;
        if !estates.contains(g.estate.as_str()) {
            return Err(invalid(
                format!("gateways[{i}].estate"),
                format!("estate {:?} is not in [[estates]]", g.estate),
            ));
        }
        if g.estate.contains(':') {
            return Err(invalid(format!("gateways[{i}].estate"), "must not contain ':'"));
        }
        if !seen.insert(g.id.as_str()) {
            return Err(invalid(
                format!("gateways[{i}].id"),
                format!("gateway {:?} is listed twice", g.id),
            ));
        }
    }
    Ok(())
}
