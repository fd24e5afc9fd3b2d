//! A self-signed certificate for first start, so HTTPS works with no config.
//!
//! It lives [`SELF_SIGNED_LIFETIME`] (Mozilla's "modern" profile asks for
//! at most 90 days) and is replaced by a new one [`RENEW_BEFORE`] its end,
//! at start and while the server runs.

use std::time::{Duration, SystemTime};

use crate::{CryptoError, Entropy, SecretString};

/// How long a generated certificate is valid.
pub const SELF_SIGNED_LIFETIME: Duration = Duration::from_secs(89 * 24 * 3600);
/// A generated certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

const COMMON_NAME: &str = "Rampart local certificate";

/// A generated certificate and its private key, both PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: SecretString,
}

/// Generates an ECDSA P-256 self-signed certificate for localhost,
/// 127.0.0.1 and ::1, valid from `now` for [`SELF_SIGNED_LIFETIME`].
pub fn generate_self_signed(
    now: SystemTime,
    entropy: &dyn Entropy,
) -> Result<SelfSigned, CryptoError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut params = rcgen::CertificateParams::new(names).map_err(|_| CryptoError::Certificate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, COMMON_NAME);
    params.not_before = now.into();
    params.not_after = (now + SELF_SIGNED_LIFETIME).into();
    // RFC 5280: a positive serial of at most 20 octets.
    let mut serial = [0u8; 16];
    entropy.fill(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    signed_by_itself(params)
}

/// `params` self-signed with a fresh ECDSA P-256 key.
fn signed_by_itself(params: rcgen::CertificateParams) -> Result<SelfSigned, CryptoError> {
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

/// A TLS-ALPN-01 challenge certificate for `name` (RFC 8737): self-signed,
/// with a fresh key, carrying the critical acmeIdentifier extension that
/// holds `digest` (the SHA-256 of the key authorization).
pub fn acme_challenge_certificate(name: &str, digest: &[u8]) -> Result<SelfSigned, CryptoError> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|_| CryptoError::Certificate)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    signed_by_itself(params)
}

/// A certificate signing request for an ACME order, and its new key.
pub struct CertificateRequest {
    /// The request (DER), naming every name as a subject alternative name.
    pub csr_der: Vec<u8>,
    /// The certificate's private key (PEM, PKCS#8).
    pub key_pem: SecretString,
}

/// A new ECDSA P-256 key and a request for a certificate naming `names`.
pub fn certificate_request(names: &[String]) -> Result<CertificateRequest, CryptoError> {
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|_| CryptoError::Certificate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|_| CryptoError::Certificate)?;
    let csr = params
        .serialize_request(&key)
        .map_err(|_| CryptoError::Certificate)?;
    Ok(CertificateRequest {
        csr_der: csr.der().to_vec(),
        key_pem: SecretString::new(key.serialize_pem()),
    })
}

/// When the first certificate in `cert_pem` starts and stops being valid.
pub fn certificate_validity(cert_pem: &str) -> Result<(SystemTime, SystemTime), CryptoError> {
    let params = rcgen::CertificateParams::from_ca_cert_pem(cert_pem)
        .map_err(|_| CryptoError::Certificate)?;
    Ok((params.not_before.into(), params.not_after.into()))
}

/// [`certificate_validity`] of a DER certificate (the one in service).
pub fn certificate_validity_der(der: &[u8]) -> Result<(SystemTime, SystemTime), CryptoError> {
    let der = rustls_pki_types::CertificateDer::from(der);
    let params =
        rcgen::CertificateParams::from_ca_cert_der(&der).map_err(|_| CryptoError::Certificate)?;
    Ok((params.not_before.into(), params.not_after.into()))
}

/// When the first certificate in `cert_pem` stops being valid.
pub fn certificate_not_after(cert_pem: &str) -> Result<SystemTime, CryptoError> {
    certificate_validity(cert_pem).map(|(_, not_after)| not_after)
}

/// True when `cert_pem` is a certificate this module generated and it ends
/// within [`RENEW_BEFORE`] of `now`. Anything else (an operator's own
/// certificate put in its place, an unreadable file) is never replaced.
pub fn self_signed_due(cert_pem: &str, now: SystemTime) -> bool {
    let Ok(params) = rcgen::CertificateParams::from_ca_cert_pem(cert_pem) else {
        return false;
    };
    let ours = match params.distinguished_name.get(&rcgen::DnType::CommonName) {
        Some(rcgen::DnValue::Utf8String(cn)) => cn == COMMON_NAME,
        Some(rcgen::DnValue::PrintableString(cn)) => cn.as_str() == COMMON_NAME,
        _ => false,
    };
    let end: SystemTime = params.not_after.into();
    ours && end < now + RENEW_BEFORE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    #[test]
    fn lives_at_most_90_days_with_a_positive_serial() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ss = generate_self_signed(now, &OsEntropy).unwrap();
        let params = rcgen::CertificateParams::from_ca_cert_pem(&ss.cert_pem).unwrap();
        let start: SystemTime = params.not_before.into();
        let end: SystemTime = params.not_after.into();
        assert_eq!(start, now);
        assert!(end.duration_since(start).unwrap() <= Duration::from_secs(90 * 24 * 3600));
        let serial = params.serial_number.unwrap();
        let bytes = serial.as_ref();
        assert!(!bytes.is_empty() && bytes[0] & 0x80 == 0 && bytes[0] != 0);
    }

    #[test]
    fn a_challenge_certificate_carries_the_digest_in_a_critical_acme_identifier() {
        let digest = [7u8; 32];
        let c = acme_challenge_certificate("a.example.test", &digest).unwrap();
        let der =
            <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
                c.cert_pem.as_bytes(),
            )
            .unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31: an OCTET STRING of the digest.
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let names: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, vec!["DNSName(a.example.test)"]);
    }

    #[test]
    fn a_request_names_every_name_and_its_key_stays_secret() {
        let names = vec!["a.example.test".to_owned(), "b.example.test".to_owned()];
        let r = certificate_request(&names).unwrap();
        use x509_parser::prelude::FromDer;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&r.csr_der)
                .unwrap();
        csr.verify_signature().unwrap();
        let text = format!(
            "{:?}",
            csr.requested_extensions().map(|e| e.collect::<Vec<_>>())
        );
        assert!(text.contains("a.example.test") && text.contains("b.example.test"));
        assert!(!format!("{:?}", r.key_pem).contains("PRIVATE KEY"));
    }

    #[test]
    fn renewal_is_due_in_the_last_30_days_of_our_own_certificate_only() {
        let born = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ss = generate_self_signed(born, &OsEntropy).unwrap();
        let day = Duration::from_secs(24 * 3600);
        assert!(!self_signed_due(&ss.cert_pem, born));
        assert!(!self_signed_due(&ss.cert_pem, born + 58 * day));
        assert!(self_signed_due(&ss.cert_pem, born + 60 * day));
        assert!(self_signed_due(&ss.cert_pem, born + 100 * day));
        // An operator's certificate at the same path is theirs to renew.
        let mut theirs = rcgen::CertificateParams::new(vec!["example.test".to_owned()]).unwrap();
        theirs
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example.test");
        theirs.not_before = born.into();
        theirs.not_after = (born + 40 * day).into();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = theirs.self_signed(&key).unwrap().pem();
        assert!(!self_signed_due(&pem, born + 39 * day));
        assert!(!self_signed_due("not a certificate", born + 100 * day));
    }
}
