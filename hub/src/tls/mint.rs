//! Minting a development PKI with rcgen: a CA, the hub's server certificate, one client
//! certificate per gateway (its identity in a SAN URI, [`super::identity`]) and the CRL.
//! `gatehouse-hub certs`, the demo, the simulators and the tests all mint through here.
//!
//! The CA's distinguished name is fixed ([`CA_NAME`]): a CRL is signed again later from the
//! CA's key alone (`certs revoke`), and its issuer name must equal the CA certificate's.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};

use super::identity::GatewayIdentity;

/// The common name of every CA minted here.
pub const CA_NAME: &str = "Gatehouse development CA";
/// Validity of minted certificates unless the caller says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Minted {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's serial number (big-endian bytes, as in the CRL).
    pub serial: Vec<u8>,
}

/// The development CA: its certificate, and the key that signs certificates and CRLs.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// What [`Ca::client`] puts into a certificate beyond the identity (tests mint bad ones).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clock skew) for `length`.
    pub fn from_now(length: Duration) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now.checked_sub(Duration::from_secs(3600)).unwrap_or(UNIX_EPOCH),
            not_after: now + length,
        }
    }
}

/// Seconds since the epoch (a time before it counts as the epoch).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// rcgen's time type from a `SystemTime`, without naming the `time` crate.
macro_rules! at {
    ($t:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + since_epoch($t)
    };
}

/// 16 random bytes, top bit clear (a positive serial, as RFC 5280 asks).
fn random_serial() -> Result<Vec<u8>, MintError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Random(e.to_string()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte: the DER integer stays 16 bytes
    Ok(bytes.to_vec())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

fn leaf_params(common_name: &str, validity: Validity) -> Result<CertificateParams, MintError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = at!(validity.not_before);
    params.not_after = at!(validity.not_after);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    Ok(params)
}

impl Ca {
    /// A new CA valid for `validity`.
    pub fn new(validity: Validity) -> Result<Ca, MintError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        params.not_before = at!(validity.not_before);
        params.not_after = at!(validity.not_after);
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// A CA minted earlier by [`Ca::new`] (its certificate and key, PEM).
    pub fn load(cert_pem: String, key_pem: &str) -> Result<Ca, MintError> {
        Ok(Ca {
            cert_pem,
            key: KeyPair::from_pem(key_pem)?,
        })
    }

    /// The CA key, PEM (keep it secret: it signs gateways' certificates).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::new(ca_params(), &self.key)
    }

    /// The hub's server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[String], validity: Validity) -> Result<Minted, MintError> {
        let mut params = leaf_params("gatehouse hub", validity)?;
        for name in names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|e| MintError::Invalid(format!("hub name {name:?}: {e}")))?,
                ),
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A gateway's client certificate: its identity in a SAN URI.
    pub fn client(&self, identity: &GatewayIdentity, validity: Validity) -> Result<Minted, MintError> {
        let mut params = leaf_params(&format!("gateway {}", identity.gateway), validity)?;
        let uri = identity.uri();
        params.subject_alt_names = vec![SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|e| MintError::Invalid(format!("identity {uri:?}: {e}")))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Minted, MintError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer())?;
        Ok(Minted {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: params.serial_number.map(|s| s.to_bytes()).unwrap_or_default(),
        })
    }

    /// A CRL revoking `serials`, valid for a year; `number` must grow with each new CRL.
    pub fn crl(&self, serials: &[Vec<u8>], number: u64) -> Result<String, MintError> {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: at!(now.checked_sub(Duration::from_secs(60)).unwrap_or(UNIX_EPOCH)),
            next_update: at!(now + Duration::from_secs(365 * 24 * 3600)),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: at!(now.checked_sub(Duration::from_secs(60)).unwrap_or(UNIX_EPOCH)),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer())?.pem()?)
    }
}

/// The files of a development PKI in one directory (`gatehouse-hub certs --out DIR`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn hub_cert(&self) -> PathBuf {
        self.dir.join("hub.pem")
    }
    pub fn hub_key(&self) -> PathBuf {
        self.dir.join("hub.key")
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// The serials revoked so far (hex, one a line) and the CRL number, to sign the next CRL.
    fn revoked_list(&self) -> PathBuf {
        self.dir.join("revoked.txt")
    }
    pub fn gateway_cert(&self, gateway: &str) -> PathBuf {
        self.dir.join(format!("gateway-{gateway}.pem"))
    }
    pub fn gateway_key(&self, gateway: &str) -> PathBuf {
        self.dir.join(format!("gateway-{gateway}.key"))
    }
}

/// What [`mint_all`] writes.
#[derive(Debug, Clone)]
pub struct MintPlan {
    /// Extra names of the hub's certificate, beyond `localhost` and `127.0.0.1`.
    pub hub_names: Vec<String>,
    pub gateways: Vec<GatewayIdentity>,
    pub validity: Duration,
}

/// Mints a CA (kept if `dir` already has one), the hub's certificate, one per gateway and an
/// empty CRL (kept if present) into `dir`. Keys are written 0600.
pub fn mint_all(layout: &Layout, plan: &MintPlan) -> Result<(), MintError> {
    std::fs::create_dir_all(&layout.dir).map_err(|source| MintError::Io {
        path: layout.dir.clone(),
        source,
    })?;
    let validity = Validity::from_now(plan.validity);
    let ca = if layout.ca_cert().exists() && layout.ca_key().exists() {
        Ca::load(read(&layout.ca_cert())?, &read(&layout.ca_key())?)?
    } else {
        let ca = Ca::new(validity)?;
        write(&layout.ca_cert(), &ca.cert_pem, false)?;
        write(&layout.ca_key(), &ca.key_pem(), true)?;
        ca
    };
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(plan.hub_names.iter().cloned());
    let hub = ca.server(&names, validity)?;
    write(&layout.hub_cert(), &hub.cert_pem, false)?;
    write(&layout.hub_key(), &hub.key_pem, true)?;
    for identity in &plan.gateways {
        let gw = ca.client(identity, validity)?;
        write(&layout.gateway_cert(&identity.gateway), &gw.cert_pem, false)?;
        write(&layout.gateway_key(&identity.gateway), &gw.key_pem, true)?;
    }
    if !layout.crl().exists() {
        write(&layout.crl(), &ca.crl(&[], 1)?, false)?;
    }
    Ok(())
}

/// Adds the certificate at `cert` to the CRL of `layout` (signed by its CA key) and returns
/// its serial.
pub fn revoke(layout: &Layout, cert: &Path) -> Result<Vec<u8>, MintError> {
    let ca = Ca::load(read(&layout.ca_cert())?, &read(&layout.ca_key())?)?;
    let serial = super::identity::serial_of_pem(&read(cert)?)
        .map_err(|e| MintError::Invalid(format!("{}: {e}", cert.display())))?;
    let list_path = layout.revoked_list();
    let listed = match std::fs::read_to_string(&list_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(MintError::Io {
                path: list_path,
                source,
            });
        }
    };
    let mut serials: Vec<Vec<u8>> = listed
        .lines()
        .filter_map(|l| hex::decode(l.trim()).ok())
        .filter(|s| !s.is_empty())
        .collect();
    if !serials.contains(&serial) {
        serials.push(serial.clone());
    }
    let number = serials.len() as u64 + 1;
    write(&layout.crl(), &ca.crl(&serials, number)?, false)?;
    let text: String = serials.iter().map(|s| format!("{}\n", hex::encode(s))).collect();
    write(&list_path, &text, false)?;
    Ok(serial)
}

fn read(path: &Path) -> Result<String, MintError> {
    std::fs::read_to_string(path).map_err(|source| MintError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `text` to `path` through a temporary file and a rename (a hub polling the CRL
/// never reads half a file); `secret` files are 0600.
pub fn write(path: &Path, text: &str, secret: bool) -> Result<(), MintError> {
    let io = |source| MintError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}
