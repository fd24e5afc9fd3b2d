//! Certificates: what a chain says (names, dates, key, signature), whether
//! it is trusted (webpki, against Mozilla's roots from `webpki-roots` plus
//! any `--ca-file`), and the findings that follow. Shared by `scan url` (the
//! chain a server sends) and `scan self` (the certificate file on disk).

use std::sync::Arc;

use ::time::OffsetDateTime;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use crate::report::{Finding, Severity};

/// Warn this many days (or fewer) before a certificate ends.
pub const WARN_DAYS: i64 = 30;
/// An error this many days (or fewer) before.
pub const ERROR_DAYS: i64 = 7;

/// The leaf certificate, as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and addresses it is valid for.
    pub names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after` (negative once it has passed).
    pub days_left: i64,
    /// `not_before` is still ahead: clients refuse it as they refuse an
    /// expired one.
    #[serde(default)]
    pub not_yet_valid: bool,
    /// `RSA`, `EC`, `Ed25519`, …
    pub key_type: String,
    pub key_bits: u32,
    pub signature: String,
    pub self_signed: bool,
    /// Chains to a trusted root (Mozilla's, or `--ca-file`).
    pub trusted: bool,
    pub trust_error: Option<String>,
    /// Valid for the name scanned; `None` when no name was given.
    pub name_matches: Option<bool>,
    pub chain_length: usize,
}

/// Roots to trust: Mozilla's, plus extra ones (DER).
pub fn roots(extra: &[CertificateDer<'static>]) -> Arc<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        let _ = store.add(c.clone());
    }
    Arc::new(store)
}

/// Reads the leaf of `chain` (DER, leaf first). `None` when the leaf is not
/// a certificate at all.
pub fn analyse(
    chain: &[Vec<u8>],
    host: Option<&str>,
    roots: &Arc<rustls::RootCertStore>,
    now: OffsetDateTime,
) -> Option<CertInfo> {
    let leaf_der = chain.first()?;
    let (_, leaf) = parse_x509_certificate(leaf_der).ok()?;
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let days_left = (not_after - now.unix_timestamp()).div_euclid(86_400);
    let (key_type, key_bits) = key_of(&leaf);
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let self_signed = leaf.subject().as_raw() == leaf.issuer().as_raw();
    let name_matches = host.map(|h| name_valid(leaf_der, h));

    // Trust is judged as of a moment inside the validity period, so that an
    // expired certificate is reported as expired, not also as untrusted.
    // (A certificate whose validity is shorter than that, or reversed, is
    // judged at `now`: a server controls these dates.)
    let (lo, hi) = (not_before.saturating_add(1), not_after.saturating_sub(1));
    let at = if lo <= hi {
        now.unix_timestamp().clamp(lo, hi)
    } else {
        now.unix_timestamp()
    }
    .max(0);
    let (trusted, trust_error) = trust(chain, host, roots, at as u64);
    Some(CertInfo {
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        names,
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        days_left,
        not_yet_valid: now.unix_timestamp() < not_before,
        key_type,
        key_bits,
        signature: signature_name(&leaf),
        self_signed,
        trusted,
        trust_error,
        name_matches,
        chain_length: chain.len(),
    })
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn key_of(cert: &X509Certificate<'_>) -> (String, u32) {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(k)) => ("RSA".to_owned(), k.key_size() as u32),
        Ok(PublicKey::EC(p)) => ("EC".to_owned(), p.key_size() as u32),
        Ok(PublicKey::DSA(y)) => ("DSA".to_owned(), (y.len() * 8) as u32),
        _ => {
            let oid = cert.public_key().algorithm.algorithm.to_id_string();
            match oid.as_str() {
                "1.3.101.112" => ("Ed25519".to_owned(), 256),
                "1.3.101.113" => ("Ed448".to_owned(), 456),
                _ => (oid, 0),
            }
        }
    }
}

fn signature_name(cert: &X509Certificate<'_>) -> String {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        "1.3.101.112" => "Ed25519",
        _ => return oid,
    }
    .to_owned()
}

fn weak_signature(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("sha1") || n.contains("md5") || n.contains("md2")
}

fn name_valid(leaf: &[u8], host: &str) -> bool {
    let der = CertificateDer::from(leaf);
    let Ok(ee) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

fn trust(
    chain: &[Vec<u8>],
    host: Option<&str>,
    roots: &Arc<rustls::RootCertStore>,
    at: u64,
) -> (bool, Option<String>) {
    let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build() else {
        return (false, Some("no trusted roots".to_owned()));
    };
    let leaf = CertificateDer::from(chain[0].clone());
    let rest: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    // The name is checked on its own (`name_matches`); a chain valid for
    // another name is still a trusted chain.
    let name = host
        .and_then(|h| ServerName::try_from(h.to_owned()).ok())
        .unwrap_or_else(|| ServerName::try_from("invalid.invalid").expect("a valid DNS name"));
    match verifier.verify_server_cert(
        &leaf,
        &rest,
        &name,
        &[],
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
    ) {
        Ok(_) => (true, None),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
        | Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext { .. },
        )) => (true, None),
        Err(rustls::Error::InvalidCertificate(e)) => (false, Some(format!("{e:?}"))),
        Err(e) => (false, Some(e.to_string())),
    }
}

/// Where a certificate is judged: a server someone visits, or this
/// deployment's own certificate file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `scan url`: every trust problem is an error.
    Remote,
    /// `scan self`: a self-signed certificate is expected on a loopback
    /// address (development), a warning elsewhere.
    Own { production: bool },
}

/// The findings for one certificate.
pub fn findings(c: &CertInfo, target: &str, ctx: Context, out: &mut Vec<Finding>) {
    let renew = match ctx {
        Context::Own { .. } => "Renew it: with the generated certificate, restart or wait for the automatic renewal; with your own (tls_cert/tls_key), replace the files (Rampart reloads them within 2 s or on SIGHUP); with [tls] acme, the tls.certificate_issued events say why renewals fail (names not resolving here, port 443 or 80 not reaching this server, the CA unreachable).",
        Context::Remote => "Renew the certificate (with ACME/Let's Encrypt, check that renewal runs: certbot renew --dry-run) and reload the server.",
    };
    if c.days_left < 0 {
        out.push(Finding::new(
            "tls.cert_expired",
            Severity::Critical,
            target,
            format!("The certificate expired on {}", c.not_after),
            "Browsers and API clients refuse the connection, or users learn to click through warnings, which is what an attacker in the middle needs.",
            renew,
        ));
    } else if c.not_yet_valid {
        out.push(Finding::new(
            "tls.cert_not_yet_valid",
            Severity::Critical,
            target,
            format!("The certificate is not valid until {}", c.not_before),
            "Clients refuse it until then, as they refuse an expired one; a date in the future usually means a wrong clock where it was issued.",
            "Check the clock of the machine that issued it (and this server's), then issue the certificate again.",
        ));
    } else if c.days_left <= WARN_DAYS {
        out.push(Finding::new(
            "tls.cert_expiring",
            if c.days_left <= ERROR_DAYS {
                Severity::Error
            } else {
                Severity::Warning
            },
            target,
            format!(
                "The certificate expires in {} days ({})",
                c.days_left, c.not_after
            ),
            "When it expires every client refuses the connection.",
            renew,
        ));
    }
    match ctx {
        Context::Own { production } if c.self_signed => out.push(Finding::new(
            "tls.cert_self_signed",
            if production { Severity::Error } else { Severity::Warning },
            target,
            "The certificate is self-signed",
            if production {
                "Clients cannot tell this server from an impostor: they must trust this exact certificate, or they skip verification, which an attacker in the middle exploits."
            } else {
                "Fine for a local set-up (clients use --cacert with this file); a server others reach needs a certificate from a public CA."
            },
            "Let Rampart obtain and renew a certificate from Let's Encrypt: [tls] acme = { domains = [\"api.example.com\"], contact = \"mailto:you@example.com\" } (README, \"Going to production\"); or set tls_cert and tls_key to a certificate from a public CA.",
        )),
        Context::Remote if !c.trusted => out.push(Finding::new(
            "tls.cert_untrusted",
            Severity::Error,
            target,
            if c.self_signed {
                "The certificate is self-signed, so no client trusts it".to_owned()
            } else {
                format!(
                    "The certificate chain is not trusted ({})",
                    c.trust_error.as_deref().unwrap_or("unknown issuer")
                )
            },
            "Clients either refuse the connection or are told to skip verification, which lets anyone in the middle read and change the traffic.",
            "Install a certificate from a public CA with its full chain (leaf then intermediates); for an internal CA, pass it with --ca-file to check against it.",
        )),
        _ => {}
    }
    if c.name_matches == Some(false) {
        out.push(Finding::new(
            "tls.cert_name_mismatch",
            Severity::Error,
            target,
            format!(
                "The certificate is not valid for this name (it names: {})",
                if c.names.is_empty() { "nothing".to_owned() } else { c.names.join(", ") }
            ),
            "Clients refuse the connection, or are told to skip the check, which lets an impostor in.",
            "Issue the certificate for every name clients use (subject alternative names).",
        ));
    }
    let weak_key = match c.key_type.as_str() {
        "RSA" | "DSA" => c.key_bits < 2048,
        "EC" => c.key_bits < 256,
        _ => false,
    };
    if weak_key {
        out.push(Finding::new(
            "tls.cert_weak_key",
            if c.key_bits < 1024 && c.key_type != "EC" { Severity::Critical } else { Severity::Error },
            target,
            format!("The certificate's key is {} {} bits", c.key_type, c.key_bits),
            "Keys this short can be factored or are refused by current clients (RSA needs at least 2048 bits, EC at least 256).",
            "Issue a new certificate with an RSA 2048+ or ECDSA P-256 key.",
        ));
    }
    if weak_signature(&c.signature) {
        out.push(Finding::new(
            "tls.cert_weak_signature",
            Severity::Error,
            target,
            format!("The certificate is signed with {}", c.signature),
            "SHA-1 and MD5 signatures can be forged (chosen-prefix collisions); browsers reject them.",
            "Reissue the certificate with a SHA-256 signature.",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_reversed_validity_period_is_judged_not_panicked_on() {
        let roots = roots(&[]);
        let now = OffsetDateTime::now_utc();
        let c = analyse(
            &[cert((2030, 1, 2), (2030, 1, 1))],
            Some("a.test"),
            &roots,
            now,
        )
        .unwrap();
        assert!(!c.trusted);
        let c = analyse(
            &[cert((2020, 1, 1), (2020, 1, 1))],
            Some("a.test"),
            &roots,
            now,
        )
        .unwrap();
        assert!(c.days_left < 0);
    }

    fn expiry_findings(now: OffsetDateTime) -> Vec<(String, Severity)> {
        let c = analyse(
            &[cert((2030, 1, 1), (2031, 1, 1))],
            Some("a.test"),
            &roots(&[]),
            now,
        )
        .unwrap();
        let mut out = Vec::new();
        findings(&c, "t", Context::Remote, &mut out);
        out.into_iter()
            .filter(|f| f.check != "tls.cert_untrusted")
            .map(|f| (f.check, f.severity))
            .collect()
    }

    #[test]
    fn expiry_warns_at_30_days_and_is_an_error_at_7() {
        let end = ::time::macros::datetime!(2031-01-01 00:00 UTC);
        let at = |days: i64| expiry_findings(end - ::time::Duration::days(days));
        let expiring = |s| vec![("tls.cert_expiring".to_owned(), s)];
        assert!(at(31).is_empty());
        assert_eq!(at(30), expiring(Severity::Warning));
        assert_eq!(at(8), expiring(Severity::Warning));
        assert_eq!(at(7), expiring(Severity::Error));
        assert_eq!(at(0), expiring(Severity::Error));
        assert_eq!(
            expiry_findings(end + ::time::Duration::seconds(1)),
            vec![("tls.cert_expired".to_owned(), Severity::Critical)]
        );
    }

    #[test]
    fn a_certificate_not_valid_yet_is_critical_and_untrusted() {
        let start = ::time::macros::datetime!(2030-01-01 00:00 UTC);
        assert_eq!(
            expiry_findings(start - ::time::Duration::seconds(1)),
            vec![("tls.cert_not_yet_valid".to_owned(), Severity::Critical)]
        );
        assert!(expiry_findings(start).is_empty());
        // Trusted by its roots, it still does not count as trusted before
        // its time.
        let der = cert((2030, 1, 1), (2031, 1, 1));
        let trusting = roots(&[CertificateDer::from(der.clone())]);
        let c = analyse(
            &[der],
            Some("a.test"),
            &trusting,
            start - ::time::Duration::days(1),
        )
        .unwrap();
        assert!(c.not_yet_valid);
    }

    #[test]
    fn names_keys_and_self_signing_are_read() {
        let roots = roots(&[]);
        let now = OffsetDateTime::now_utc();
        let c = analyse(
            &[cert((2020, 1, 1), (2090, 1, 1))],
            Some("b.test"),
            &roots,
            now,
        )
        .unwrap();
        assert_eq!(c.names, vec!["a.test".to_owned()]);
        assert_eq!((c.key_type.as_str(), c.key_bits), ("EC", 256));
        assert!(c.self_signed && !c.trusted);
        assert_eq!(c.name_matches, Some(false));
        let mut out = Vec::new();
        findings(&c, "t", Context::Remote, &mut out);
        let checks: Vec<&str> = out.iter().map(|f| f.check.as_str()).collect();
        assert_eq!(checks, vec!["tls.cert_untrusted", "tls.cert_name_mismatch"]);
        let mut out = Vec::new();
        findings(&c, "t", Context::Own { production: false }, &mut out);
        assert_eq!(out[0].severity, Severity::Warning);
        let mut out = Vec::new();
        findings(&c, "t", Context::Own { production: true }, &mut out);
        assert_eq!(out[0].severity, Severity::Error);
    }
}
