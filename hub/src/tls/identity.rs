//! A gateway's identity in its client certificate: one SAN URI
//! `urn:gatehouse:gateway:<estate>:<gateway>` binds the gateway id AND its estate. The estate
//! id may not contain `:` (the gateway id may); ids are at most 128 bytes, no control
//! characters. A certificate with no such URI, or with two, names no gateway.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The prefix of the SAN URI that names a gateway.
pub const URI_PREFIX: &str = "urn:gatehouse:gateway:";

/// Which gateway of which estate a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayIdentity {
    pub estate: String,
    pub gateway: String,
}

/// Why a certificate names no gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not a parsable X.509 certificate: {0}")]
    Parse(String),
    #[error("no SAN URI {URI_PREFIX}<estate>:<gateway>")]
    Missing,
    #[error("more than one gateway identity in the certificate")]
    Ambiguous,
    #[error("malformed gateway identity {0:?}")]
    Malformed(String),
}

impl GatewayIdentity {
    pub fn new(estate: impl Into<String>, gateway: impl Into<String>) -> GatewayIdentity {
        GatewayIdentity {
            estate: estate.into(),
            gateway: gateway.into(),
        }
    }

    /// The SAN URI of this identity.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}:{}", self.estate, self.gateway)
    }

    /// Parses a SAN URI; `None` when it is not a gateway identity at all.
    pub fn from_uri(uri: &str) -> Option<Result<GatewayIdentity, IdentityError>> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let bad = || IdentityError::Malformed(uri.to_owned());
        let parsed = rest
            .split_once(':')
            .filter(|(e, g)| valid(e) && valid(g))
            .map(|(e, g)| GatewayIdentity::new(e, g))
            .ok_or_else(bad);
        Some(parsed)
    }

    /// The identity in a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<GatewayIdentity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        let mut found = None;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name
                    && let Some(parsed) = GatewayIdentity::from_uri(uri)
                {
                    if found.is_some() {
                        return Err(IdentityError::Ambiguous);
                    }
                    found = Some(parsed?);
                }
            }
        }
        found.ok_or(IdentityError::Missing)
    }
}

impl std::fmt::Display for GatewayIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gateway {:?} of estate {:?}", self.gateway, self.estate)
    }
}

fn valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
}

/// The serial number of a DER certificate (big-endian bytes, no sign padding).
pub fn serial_of_der(der: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    Ok(strip_sign(cert.raw_serial()))
}

/// The serial number of the first certificate in a PEM text.
pub fn serial_of_pem(pem: &str) -> Result<Vec<u8>, IdentityError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| IdentityError::Parse(e.to_string()))?;
    serial_of_der(&der)
}

/// Serials compare without the DER sign byte (a leading 0x00 before a high bit).
pub fn strip_sign(raw: &[u8]) -> Vec<u8> {
    match raw {
        [0, rest @ ..] if !rest.is_empty() => rest.to_vec(),
        _ => raw.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips_and_refuses_malformed_identities() {
        let id = GatewayIdentity::new("estate-a", "gw:1");
        assert_eq!(GatewayIdentity::from_uri(&id.uri()), Some(Ok(id)));
        assert_eq!(GatewayIdentity::from_uri("https://example.org"), None);
        for bad in [
            "urn:gatehouse:gateway:",
            "urn:gatehouse:gateway:estate",
            "urn:gatehouse:gateway::gw",
        ] {
            assert!(matches!(GatewayIdentity::from_uri(bad), Some(Err(_))), "{bad}");
        }
    }
}
