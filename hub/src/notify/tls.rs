//! Outgoing TLS for webhooks: which certificate authorities an `https://` channel trusts, and
//! the HTTP clients built from them.
//!
//! Every https webhook trusts the system's roots (reqwest's `rustls-tls-native-roots`) plus,
//! when configured, the certificates of a CA file: `notify.ca_file` for every channel, or the
//! channel's own `ca_file` (`[[roster]]`) instead. CA files are read once, at start, and a file
//! that cannot be read or holds no valid certificate stops the hub with an error naming it —
//! never a webhook that fails later for a reason nobody sees.
//!
//! One crypto provider in the build: rustls on ring ([`install_ring_provider`]). Nothing in the
//! workspace enables aws-lc; installing ring as the process default at start means no rustls
//! user (reqwest, tonic, tokio-rustls) ever has to choose one, so none can panic choosing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a CA file or a webhook client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("CA file {path} is not PEM certificates: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("CA file {path} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)")]
    Empty { path: PathBuf },
    #[error("CA file {path}: certificate {index} is not a usable trust anchor: {detail}")]
    Anchor {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Installs rustls' ring provider as the process default, once; a second call (or one made
/// after another part of the hub installed it) changes nothing.
pub fn install_ring_provider() {
    // `Err` only means a default is already installed; the build has no other provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a CA file (PEM), each checked to be a trust anchor rustls accepts.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty { path: path.to_owned() });
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| TlsSetupError::Anchor {
            path: path.to_owned(),
            index: i + 1,
            detail: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// What each webhook channel trusts beyond the system's roots.
#[derive(Debug, Clone, Default)]
pub struct WebhookTrust {
    /// `notify.ca_file`: for every https channel without its own.
    pub default_ca: Option<PathBuf>,
    /// Channel URL → its own CA file (`[[roster]] ca_file`).
    pub per_channel: HashMap<String, PathBuf>,
}

/// The HTTP clients webhooks are sent with: one per distinct trust.
#[derive(Debug, Clone)]
pub struct WebhookClients {
    default: reqwest::Client,
    per_channel: HashMap<String, reqwest::Client>,
}

impl WebhookClients {
    /// Reads every CA file of `trust` and builds the clients (`timeout`: one request's).
    pub fn build(trust: &WebhookTrust, timeout: Duration) -> Result<WebhookClients, TlsSetupError> {
        install_ring_provider();
        let default_certs = match &trust.default_ca {
            Some(p) => load_ca_file(p)?,
            None => Vec::new(),
        };
        let default = client(&default_certs, timeout)?;
        // Channels sharing a file share a client (and its connection pool).
        let mut by_file: HashMap<&Path, reqwest::Client> = HashMap::new();
        let mut per_channel = HashMap::new();
        for (channel, path) in &trust.per_channel {
            let c = match by_file.get(path.as_path()) {
                Some(c) => c.clone(),
                None => {
                    let c = client(&load_ca_file(path)?, timeout)?;
                    by_file.insert(path, c.clone());
                    c
                }
            };
            per_channel.insert(channel.clone(), c);
        }
        Ok(WebhookClients { default, per_channel })
    }

    /// The client for `channel`.
    pub fn for_channel(&self, channel: &str) -> &reqwest::Client {
        self.per_channel.get(channel).unwrap_or(&self.default)
    }
}

/// A client trusting the system's roots plus, when given, the certificates of `ca_file` (read
/// now, so a wrong file stops the start): for channels with a trust of their own (robots).
pub fn client_with_ca(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, TlsSetupError> {
    install_ring_provider();
    let certs = match ca_file {
        Some(p) => load_ca_file(p)?,
        None => Vec::new(),
    };
    client(&certs, timeout)
}

fn client(extra_roots: &[CertificateDer<'static>], timeout: Duration) -> Result<reqwest::Client, TlsSetupError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        // A webhook that redirects could send the signed body anywhere.
        .redirect(reqwest::redirect::Policy::none())
        .use_rustls_tls();
    for cert in extra_roots {
        let cert = reqwest::Certificate::from_der(cert.as_ref()).map_err(|e| TlsSetupError::Client(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| TlsSetupError::Client(error_chain(&e)))
}

/// `e` and its causes, `: `-separated: reqwest's own text says only "error sending request";
/// the reason (a certificate not trusted, a refused connection) is in the causes.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Whether a failed send failed in the TLS handshake (certificate not trusted, wrong name,
/// protocol alert), as opposed to an unreachable host or a timeout.
pub fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    // rustls' error arrives wrapped in an `io::Error`, whose `source()` skips it.
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && is_tls_failure(inner)
    {
        return true;
    }
    e.source().is_some_and(is_tls_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_garbage_ca_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load_ca_file(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot read CA file") && e.contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = load_ca_file(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_file(&garbage).unwrap_err().to_string();
        assert!(e.contains("not a usable trust anchor"), "{e}");
    }

    #[test]
    fn a_minted_ca_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        assert_eq!(load_ca_file(&path).unwrap().len(), 1);
        let clients = WebhookClients::build(
            &WebhookTrust {
                default_ca: None,
                per_channel: HashMap::from([("https://a/h".to_owned(), path)]),
            },
            Duration::from_secs(1),
        );
        assert!(clients.is_ok());
    }
}
