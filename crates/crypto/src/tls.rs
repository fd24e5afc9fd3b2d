//! A self-signed certificate for first start, so HTTPS works with no config.

use crate::{CryptoError, SecretString};

/// A generated certificate and its private key, both PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: SecretString,
}

/// Generates an ECDSA P-256 self-signed certificate for localhost,
/// 127.0.0.1 and ::1, valid for one year.
pub fn generate_self_signed() -> Result<SelfSigned, CryptoError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut params = rcgen::CertificateParams::new(names).map_err(|_| CryptoError::Certificate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Rampart local certificate");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|_| CryptoError::Certificate)?;
    let cert = params
        .self_signed(&key)
        .map_err(|_| CryptoError::Certificate)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: SecretString::new(key.serialize_pem()),
    })
}
