//! The hub's TLS server side: its certificate, the client CA that gateways' certificates
//! must chain to, and the CRL, reloaded when its file changes. Client certificates are
//! optional at the TLS level (a console authenticates by bearer token); GatewayLink requires
//! one (`link`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

use super::identity::strip_sign;

/// The files the TLS listener is built from (`[tls]`).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub crl: Option<PathBuf>,
}

/// Why the TLS setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key}: {path}: {message}")]
    File {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("tls: {0}")]
    Rustls(String),
}

fn file_error(key: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        key,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Serials (big-endian, no sign byte) revoked by the current CRL.
pub type Revoked = Arc<HashSet<Vec<u8>>>;

/// The live TLS settings: what new handshakes use, and what the CRL revokes.
#[derive(Debug)]
pub struct TlsState {
    paths: TlsPaths,
    config: RwLock<Arc<ServerConfig>>,
    revoked: RwLock<Revoked>,
    crl_modified: Mutex<Option<SystemTime>>,
}

impl TlsState {
    /// Reads every file; any error names the `[tls]` key and the path.
    pub fn load(paths: TlsPaths) -> Result<Arc<TlsState>, TlsError> {
        let crl_modified = paths.crl.as_deref().and_then(modified);
        let (config, revoked) = build(&paths)?;
        Ok(Arc::new(TlsState {
            paths,
            config: RwLock::new(config),
            revoked: RwLock::new(revoked),
            crl_modified: Mutex::new(crl_modified),
        }))
    }

    /// An acceptor with the current settings (a CRL reload applies to new handshakes).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Whether the current CRL revokes the certificate with this serial.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).contains(serial)
    }

    pub fn crl_path(&self) -> Option<&Path> {
        self.paths.crl.as_deref()
    }

    /// Rebuilds the settings if the CRL file changed since the last look. `Ok(Some)`: the
    /// new revoked serials; `Err`: the new CRL is unusable and the previous one stays.
    pub fn reload_if_changed(&self) -> Result<Option<Revoked>, TlsError> {
        let Some(crl) = self.paths.crl.as_deref() else {
            return Ok(None);
        };
        let now = modified(crl);
        {
            let mut last = self.crl_modified.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now {
                return Ok(None);
            }
            *last = now;
        }
        let (config, revoked) = build(&self.paths)?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = revoked.clone();
        Ok(Some(revoked))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn build(paths: &TlsPaths) -> Result<(Arc<ServerConfig>, Revoked), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(|e| file_error("cert", &paths.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("cert", &paths.cert, e))?;
    if certs.is_empty() {
        return Err(file_error("cert", &paths.cert, "no PEM certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| file_error("key", &paths.key, e))?;
    let mut roots = RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(&paths.client_ca).map_err(|e| file_error("client_ca", &paths.client_ca, e))?
    {
        let ca = ca.map_err(|e| file_error("client_ca", &paths.client_ca, e))?;
        roots
            .add(ca)
            .map_err(|e| file_error("client_ca", &paths.client_ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(
            "client_ca",
            &paths.client_ca,
            "no PEM certificate in the file",
        ));
    }
    let (crls, revoked) = match &paths.crl {
        Some(path) => read_crls(path)?,
        None => (Vec::new(), HashSet::new()),
    };
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        // A console has no client certificate; GatewayLink refuses a stream without one.
        .allow_unauthenticated();
    if !crls.is_empty() {
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Rustls(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| file_error("key", &paths.key, e))?;
    // tonic's clients insist on HTTP/2 by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), Arc::new(revoked)))
}

/// The CRLs of a PEM file (or one DER CRL), and the serials they revoke.
fn read_crls(path: &Path) -> Result<(Vec<CertificateRevocationListDer<'static>>, HashSet<Vec<u8>>), TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error("crl", path, e))?;
    let mut crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("crl", path, e))?;
    if crls.is_empty() {
        crls.push(CertificateRevocationListDer::from(bytes));
    }
    let mut revoked = HashSet::new();
    for crl in &crls {
        let (_, parsed) = CertificateRevocationList::from_der(crl).map_err(|e| file_error("crl", path, e))?;
        revoked.extend(parsed.iter_revoked_certificates().map(|r| strip_sign(r.raw_serial())));
    }
    Ok((crls, revoked))
}
