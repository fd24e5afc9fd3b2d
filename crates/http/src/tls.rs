//! TLS settings and the certificate that can change under a running server.
//!
//! rustls only; TLS 1.3 only by default (Mozilla's "modern" profile),
//! TLS 1.2 when configured for older clients; AEAD suites with forward
//! secrecy only, in the server's order; ALPN h2 and http/1.1. The certificate and key are re-read when
//! their files change (polled) or on SIGHUP; a bad new pair is refused and
//! the old one stays in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::ring::{self, cipher_suite};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}")]
    Read(PathBuf),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no usable PEM private key")]
    BadKey(PathBuf),
    #[error("the private key does not match the certificate")]
    Mismatch,
    #[error("TLS configuration error: {0}")]
    Config(String),
}

/// The certificate in service, swappable without a restart.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(|_| TlsError::Read(cert_path.into()))?;
    let key_pem = std::fs::read(key_path).map_err(|_| TlsError::Read(key_path.into()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_path.into()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::BadKey(key_path.into()))?;
    let signing =
        ring::sign::any_supported_type(&key).map_err(|_| TlsError::BadKey(key_path.into()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| TlsError::Mismatch)?;
    Ok(ck)
}

impl CertStore {
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: ArcSwap::from_pointee(ck),
            seen: Mutex::new(mtime(cert_path).zip(mtime(key_path))),
        }))
    }

    /// Re-reads the pair. On failure the old certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(ck));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = mtime(&self.cert_path).zip(mtime(&self.key_path));
        }
        Ok(())
    }

    /// Reloads when either file's modification time changed. Returns true
    /// when a new certificate went into service.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = mtime(&self.cert_path).zip(mtime(&self.key_path));
        let changed = match self.seen.lock() {
            Ok(seen) => *seen != now,
            Err(_) => false,
        };
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// The leaf certificate in service (DER), for tests and status output.
    pub fn leaf_der(&self) -> Vec<u8> {
        self.current
            .load()
            .cert
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The oldest TLS version the server accepts (`tls_min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3: Mozilla's "intermediate" profile, for clients from
    /// before 2018 (Android 9 and older, Java 8, OpenSSL 1.0.2).
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only: Mozilla's "modern" profile.
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

/// The server's TLS configuration.
pub fn server_config(
    certs: Arc<CertStore>,
    min: TlsMinVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = ring::default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    // The order above wins over the client's: strongest suite first.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
