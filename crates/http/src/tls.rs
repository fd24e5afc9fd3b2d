//! TLS settings and the certificate that can change under a running server.
//!
//! rustls only; TLS 1.3 only by default (Mozilla's "modern" profile),
//! TLS 1.2 when configured for older clients; AEAD suites with forward
//! secrecy only, in the server's order; ALPN h2 and http/1.1. The certificate and key are re-read when
//! their files change (polled) or on SIGHUP; a bad new pair is refused and
//! the old one stays in service. A certificate obtained by ACME (ADR 0016)
//! is [installed](CertStore::install) instead, and the files are then no
//! longer read; the store also answers ACME's challenges (TLS-ALPN-01 in
//! the handshake, HTTP-01 on the redirect listener).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error("the certificate is obtained by ACME ([tls] acme); the files are not read")]
    Managed,
}

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate in service, swappable without a restart.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
    /// Set once a certificate was installed from memory (ACME).
    managed: AtomicBool,
    /// TLS-ALPN-01: the challenge certificate of each name being validated.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: the key authorization of each token being validated.
    tokens: Mutex<HashMap<String, String>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(|_| TlsError::Read(cert_path.into()))?;
    let key_pem = std::fs::read(key_path).map_err(|_| TlsError::Read(key_path.into()))?;
    parse(&cert_pem, &key_pem, cert_path, key_path)
}

/// A PEM chain and its private key, checked to belong together. The paths
/// only name the pair in errors.
fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let (certs, signing) = parts(cert_pem, key_pem, cert_path, key_path)?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| TlsError::Mismatch)?;
    Ok(ck)
}

type Parts = (
    Vec<CertificateDer<'static>>,
    Arc<dyn rustls::sign::SigningKey>,
);

fn parts(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Parts, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(cert_path.into()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::BadKey(key_path.into()))?;
    let signing =
        ring::sign::any_supported_type(&key).map_err(|_| TlsError::BadKey(key_path.into()))?;
    Ok((certs, signing))
}

/// A chain and key held in memory (ACME's), parsed like the files are.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    parse(
        cert_pem,
        key_pem,
        Path::new("the certificate"),
        Path::new("the key"),
    )
    .map(Arc::new)
}

/// A TLS-ALPN-01 challenge certificate and its key (RFC 8737). Its
/// critical acmeIdentifier extension is one webpki does not parse, so the
/// key is not matched against it (it was made with it a moment ago).
pub fn challenge_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let (certs, signing) = parts(
        cert_pem,
        key_pem,
        Path::new("the certificate"),
        Path::new("the key"),
    )?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

impl CertStore {
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: ArcSwap::from_pointee(ck),
            seen: Mutex::new(mtime(cert_path).zip(mtime(key_path))),
            managed: AtomicBool::new(false),
            alpn: Mutex::default(),
            tokens: Mutex::default(),
        }))
    }

    /// Puts a certificate held in memory (ACME's) in service. From then
    /// on the files are not read again (not on change, not on SIGHUP).
    pub fn install(&self, ck: Arc<CertifiedKey>) {
        self.managed.store(true, Ordering::SeqCst);
        self.current.store(ck);
    }

    /// Answers TLS-ALPN-01 for `name` with `ck` until [`Self::end_challenges`].
    pub fn offer_alpn_challenge(&self, name: &str, ck: Arc<CertifiedKey>) {
        if let Ok(mut m) = self.alpn.lock() {
            m.insert(name.to_ascii_lowercase(), ck);
        }
    }

    /// Answers HTTP-01 for `token` with `key_authorization`.
    pub fn offer_http_challenge(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    /// The key authorization for an HTTP-01 `token`, while it is offered.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(token).cloned()
    }

    /// Answers exactly these challenges (those of an order another node
    /// of the deployment is making, read from the database).
    pub fn replace_challenges(
        &self,
        alpn: HashMap<String, Arc<CertifiedKey>>,
        tokens: HashMap<String, String>,
    ) {
        if let Ok(mut m) = self.alpn.lock() {
            *m = alpn;
        }
        if let Ok(mut m) = self.tokens.lock() {
            *m = tokens;
        }
    }

    /// Stops answering every challenge.
    pub fn end_challenges(&self) {
        if let Ok(mut m) = self.alpn.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.tokens.lock() {
            m.clear();
        }
    }

    /// Re-reads the pair. On failure the old certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        if self.managed.load(Ordering::SeqCst) {
            return Err(TlsError::Managed);
        }
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
        if self.managed.load(Ordering::SeqCst) {
            return Ok(false);
        }
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
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A validation offers acme-tls/1 alone (RFC 8737 section 3); a
        // client offering it among others gets the ordinary certificate and
        // the protocol the server prefers.
        let acme = hello
            .alpn()
            .is_some_and(|offered| offered.eq([ACME_TLS_ALPN]));
        if acme {
            // Only the challenge certificate of a name being validated;
            // otherwise no certificate, and the handshake fails.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.alpn.lock().ok()?.get(&name).cloned();
        }
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
/// `acme`: also agree on acme-tls/1 (TLS-ALPN-01 validations).
pub fn server_config(
    certs: Arc<CertStore>,
    min: TlsMinVersion,
    acme: bool,
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
    if acme {
        // Last: only an ACME server validating a challenge offers it, and
        // such a connection is closed after the handshake.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}
