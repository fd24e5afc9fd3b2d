//! The TLS part of `scan url`: which protocol versions and suites a server
//! accepts, its key exchange, its certificate chain, OCSP stapling and
//! downgrade protection, then the findings and the SSL Labs-style grade.
//!
//! TLS 1.3 is probed with rustls (one handshake per suite). SSL 3.0 to
//! TLS 1.2 are probed with the hand-built ClientHello of [`hello`]: each
//! version is offered every known suite, the server's pick is noted and
//! removed, and the offer repeated until the server refuses, which lists
//! every suite it accepts at that version.

pub mod cert;
pub mod grade;
pub mod hello;
pub mod suites;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::report::{Finding, Progress, Severity};
use hello::{Answer, SSL3, TLS10, TLS11, TLS12};
use suites::{Cipher, Kx};

const TLS13: u16 = 0x0304;

/// One protocol version and whether the server accepts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Protocol {
    pub name: String,
    pub offered: bool,
}

/// One accepted suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedSuite {
    pub protocol: String,
    pub name: String,
    pub bits: u16,
    pub forward_secrecy: bool,
    pub aead: bool,
    /// `x25519`, `secp256r1`, `DH 2048`, `RSA` …
    pub key_exchange: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsReport {
    pub host: String,
    pub port: u16,
    pub protocols: Vec<Protocol>,
    pub suites: Vec<AcceptedSuite>,
    pub certificate: Option<cert::CertInfo>,
    pub ocsp_stapling: bool,
    /// `None` when there is nothing to downgrade to.
    pub fallback_scsv: Option<bool>,
    pub grade: grade::Grade,
    /// Probes without a verdict (silence, failed connections).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    #[serde(skip)]
    pub facts: grade::Facts,
}

pub fn version_name(v: u16) -> &'static str {
    match v {
        SSL3 => "SSL 3.0",
        TLS10 => "TLS 1.0",
        TLS11 => "TLS 1.1",
        TLS12 => "TLS 1.2",
        TLS13 => "TLS 1.3",
        _ => "unknown",
    }
}

fn group_name(g: u16) -> String {
    match g {
        29 => "x25519".to_owned(),
        30 => "x448".to_owned(),
        23 => "secp256r1".to_owned(),
        24 => "secp384r1".to_owned(),
        25 => "secp521r1".to_owned(),
        256..=260 => format!("ffdhe{}", grade::group_bits(g)),
        4588 => "X25519MLKEM768".to_owned(),
        _ => format!("group {g}"),
    }
}

/// Options of a TLS scan.
#[derive(Clone)]
pub struct TlsOptions {
    /// Extra trusted roots (`--ca-file`).
    pub roots: Arc<rustls::RootCertStore>,
    pub timeout: Duration,
}

/// Probes `addr` (the server named `host`). Findings go to `out`; the
/// grade is finished by [`finish_grade`] once HSTS is known.
pub async fn scan(
    addr: SocketAddr,
    host: &str,
    opts: &TlsOptions,
    now: OffsetDateTime,
    progress: &dyn Progress,
    out: &mut Vec<Finding>,
) -> std::io::Result<TlsReport> {
    let target = format!("{host}:{}", addr.port());
    let sni = Some(host);
    let mut accepted: Vec<(u16, u16, String)> = Vec::new(); // version, suite, kx
    let mut chain: Vec<Vec<u8>> = Vec::new();
    let mut stapled = false;
    let mut versions = Vec::new();
    let mut kx_bits: Vec<u32> = Vec::new();
    let mut dh_bits: Vec<u32> = Vec::new();
    let mut reachable = false;
    // Probes that got no verdict (silence, a failed connection): the
    // report says so instead of counting them as refusals.
    let mut incomplete: Vec<String> = Vec::new();

    // TLS 1.3, one suite at a time.
    progress.step("TLS 1.3", 0, 5);
    let provider = rustls::crypto::ring::default_provider();
    for suite in provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
    {
        let mut p = provider.clone();
        p.cipher_suites = vec![*suite];
        match rustls_probe(addr, host, p, opts.timeout).await {
            Ok(Probe13::Accepted(seen)) => {
                reachable = true;
                if chain.is_empty() {
                    chain = seen.chain;
                }
                stapled |= seen.stapled;
                let id = u16::from(suite.suite());
                let group = seen
                    .group
                    .map(group_name)
                    .unwrap_or_else(|| "ECDHE".to_owned());
                if let Some(g) = seen.group {
                    kx_bits.push(grade::group_bits(g));
                }
                accepted.push((TLS13, id, group));
                if !versions.contains(&TLS13) {
                    versions.push(TLS13);
                }
            }
            Ok(Probe13::Refused) => reachable = true,
            Ok(Probe13::Silent) => {
                reachable = true;
                incomplete.push(format!(
                    "TLS 1.3 ({}): no answer within {} s",
                    suites::tls13(u16::from(suite.suite())).map_or("a suite", |s| s.0),
                    opts.timeout.as_secs()
                ));
            }
            Err(e) => {
                if !reachable {
                    return Err(e);
                }
                incomplete.push(format!("TLS 1.3: connection failed ({})", e.kind()));
            }
        }
    }

    // SSL 3.0 … TLS 1.2 by hand.
    for (i, version) in [SSL3, TLS10, TLS11, TLS12].into_iter().enumerate() {
        progress.step(version_name(version), i as u64 + 1, 5);
        let mut offer: Vec<u16> = suites::SUITES.iter().map(|s| s.id).collect();
        while !offer.is_empty() {
            let answer = match hello::probe(addr, sni, version, &offer, opts.timeout).await {
                Ok(a) => a,
                Err(e) if !reachable => return Err(e),
                Err(e) => {
                    incomplete.push(format!(
                        "{}: connection failed ({}); its suites may be incomplete",
                        version_name(version),
                        e.kind()
                    ));
                    break;
                }
            };
            reachable = true;
            let h = match answer {
                Answer::Accepted(h) => h,
                Answer::Refused(_) => break,
                Answer::Silent => {
                    incomplete.push(format!(
                        "{}: no answer within {} s; its suites may be incomplete",
                        version_name(version),
                        opts.timeout.as_secs()
                    ));
                    break;
                }
            };
            if h.version != version || !offer.contains(&h.suite) {
                break;
            }
            offer.retain(|s| *s != h.suite);
            if !versions.contains(&version) {
                versions.push(version);
            }
            if chain.is_empty() && !h.certs.is_empty() {
                chain = h.certs.clone();
            }
            stapled |= h.stapled;
            let Some(suite) = suites::by_id(h.suite) else {
                break;
            };
            let kx = match suite.kx {
                Kx::Ecdhe => {
                    let g = h.group.unwrap_or(0);
                    kx_bits.push(grade::group_bits(g));
                    group_name(g)
                }
                Kx::Dhe => {
                    let b = h.dh_bits.unwrap_or(0);
                    kx_bits.push(b);
                    dh_bits.push(b);
                    format!("DH {b}")
                }
                Kx::Export => {
                    kx_bits.push(512);
                    "export".to_owned()
                }
                Kx::Anon => {
                    kx_bits.push(0);
                    "anonymous".to_owned()
                }
                Kx::Rsa => "RSA".to_owned(),
            };
            accepted.push((version, h.suite, kx));
        }
    }
    progress.step("certificate", 5, 5);

    // Downgrade protection matters when a client can be pushed below
    // TLS 1.2 (TLS 1.3 protects 1.2 itself): offer the second-highest
    // version with the fallback signal; a protected server refuses.
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    let fallback_scsv = if sorted.len() >= 2 && sorted[0] < TLS12 {
        let lower = sorted[sorted.len() - 2].min(TLS12);
        let mut offer: Vec<u16> = suites::SUITES.iter().map(|s| s.id).collect();
        offer.push(hello::FALLBACK_SCSV);
        match hello::probe(addr, sni, lower, &offer, opts.timeout).await {
            Ok(Answer::Accepted(h)) if h.version == lower => Some(false),
            Ok(Answer::Refused(_)) | Ok(Answer::Accepted(_)) => Some(true),
            Ok(Answer::Silent) | Err(_) => {
                incomplete.push("downgrade protection: no verdict".to_owned());
                None
            }
        }
    } else {
        None
    };

    let certificate = cert::analyse(&chain, Some(host), &opts.roots, now);
    let cert_key_bits = certificate
        .as_ref()
        .map_or(0, |c| grade::key_bits(&c.key_type, c.key_bits));
    // The certificate's key counts as key exchange (SSL Labs): static RSA
    // key exchange is exactly as strong, and ephemeral exchanges are
    // authenticated by it.
    if cert_key_bits > 0 {
        kx_bits.push(cert_key_bits);
    }

    let suite_rows: Vec<AcceptedSuite> = accepted
        .iter()
        .map(|(v, id, kx)| match suites::by_id(*id) {
            Some(s) if *v != TLS13 => AcceptedSuite {
                protocol: version_name(*v).to_owned(),
                name: s.name.to_owned(),
                bits: s.bits,
                forward_secrecy: s.forward_secret(),
                aead: s.aead(),
                key_exchange: kx.clone(),
            },
            _ => {
                let (name, bits) = suites::tls13(*id).unwrap_or(("TLS 1.3 suite", 128));
                AcceptedSuite {
                    protocol: "TLS 1.3".to_owned(),
                    name: name.to_owned(),
                    bits,
                    forward_secrecy: true,
                    aead: true,
                    key_exchange: kx.clone(),
                }
            }
        })
        .collect();
    let legacy_suites: Vec<&suites::Suite> = accepted
        .iter()
        .filter(|(v, _, _)| *v != TLS13)
        .filter_map(|(_, id, _)| suites::by_id(*id))
        .collect();

    let trusted = certificate.as_ref().is_some_and(|c| {
        c.trusted && c.name_matches != Some(false) && c.days_left >= 0 && !c.not_yet_valid
    });
    let facts = grade::Facts {
        versions: versions.clone(),
        cipher_bits: suite_rows.iter().map(|s| s.bits).collect(),
        weakest_kx_bits: kx_bits.iter().copied().min().unwrap_or(0),
        export: legacy_suites.iter().any(|s| s.kx == Kx::Export),
        anonymous_or_null: legacy_suites
            .iter()
            .any(|s| s.kx == Kx::Anon || s.cipher == Cipher::Null),
        rc4: legacy_suites.iter().any(|s| s.cipher == Cipher::Rc4),
        block64: legacy_suites.iter().any(|s| s.block64()),
        forward_secrecy: suite_rows.iter().any(|s| s.forward_secrecy),
        aead: suite_rows.iter().any(|s| s.aead),
        cert_key_bits,
        trusted,
        downgradable: fallback_scsv == Some(false),
        hsts_max_age: None,
    };

    protocol_findings(
        &target,
        &versions,
        &legacy_suites,
        &facts,
        dh_bits.iter().copied().filter(|b| *b > 0).min(),
        out,
    );
    if let Some(c) = &certificate {
        cert::findings(c, &target, cert::Context::Remote, out);
        if c.trusted && !stapled {
            out.push(Finding::new(
                "tls.no_ocsp_stapling",
                Severity::Info,
                &target,
                "No OCSP response is stapled",
                "Clients must ask the CA whether the certificate was revoked (slower, and it tells the CA who visits), or do not check at all.",
                "Turn on OCSP stapling (nginx: ssl_stapling on; ssl_stapling_verify on;).",
            ));
        }
    } else if !versions.is_empty() {
        out.push(Finding::new(
            "tls.no_certificate",
            Severity::Critical,
            &target,
            "The server sent no usable certificate",
            "Without a certificate the client cannot know whom it talks to.",
            "Configure a certificate and key for this server.",
        ));
    }
    if fallback_scsv == Some(false) {
        out.push(Finding::new(
            "tls.no_fallback_scsv",
            Severity::Warning,
            &target,
            "The server does not refuse protocol downgrades (TLS_FALLBACK_SCSV)",
            "An attacker can make a client retry with an older, weaker protocol version.",
            "Update the TLS library (OpenSSL 1.0.1j+ supports it) or offer only TLS 1.2 and 1.3.",
        ));
    }

    let protocols = [SSL3, TLS10, TLS11, TLS12, TLS13]
        .into_iter()
        .map(|v| Protocol {
            name: version_name(v).to_owned(),
            offered: versions.contains(&v),
        })
        .collect();
    let mut report = TlsReport {
        host: host.to_owned(),
        port: addr.port(),
        protocols,
        suites: suite_rows,
        certificate,
        ocsp_stapling: stapled,
        fallback_scsv,
        grade: grade::Grade::default(),
        incomplete,
        facts,
    };
    finish_grade(&mut report, None);
    Ok(report)
}

/// Computes the grade, now that HSTS is known.
pub fn finish_grade(report: &mut TlsReport, hsts_max_age: Option<u64>) {
    report.facts.hsts_max_age = hsts_max_age;
    report.grade = grade::compute(&report.facts);
}

fn protocol_findings(
    target: &str,
    versions: &[u16],
    legacy: &[&suites::Suite],
    facts: &grade::Facts,
    dh_weakest: Option<u32>,
    out: &mut Vec<Finding>,
) {
    let disable = "Offer only TLS 1.2 and 1.3 (nginx: ssl_protocols TLSv1.2 TLSv1.3; Apache: SSLProtocol -all +TLSv1.2 +TLSv1.3).";
    if versions.contains(&SSL3) {
        out.push(Finding::new(
            "tls.protocol_ssl3",
            Severity::Critical,
            target,
            "SSL 3.0 is offered",
            "SSL 3.0 is broken (POODLE): an attacker in the middle can decrypt parts of the traffic, such as session cookies.",
            disable,
        ));
    }
    for (v, check) in [(TLS10, "tls.protocol_tls10"), (TLS11, "tls.protocol_tls11")] {
        if versions.contains(&v) {
            out.push(Finding::new(
                check,
                Severity::Error,
                target,
                format!("{} is offered", version_name(v)),
                "TLS 1.0 and 1.1 were deprecated in 2021 (RFC 8996): they rely on SHA-1 and CBC constructions with known attacks (BEAST, Lucky13), and PCI DSS forbids them.",
                disable,
            ));
        }
    }
    if !versions.is_empty() && !versions.iter().any(|v| *v >= TLS12) {
        out.push(Finding::new(
            "tls.no_modern_protocol",
            Severity::Error,
            target,
            "Neither TLS 1.2 nor TLS 1.3 is offered",
            "Current clients refuse older versions, and everything older has known attacks.",
            disable,
        ));
    } else if !versions.is_empty() && !versions.contains(&TLS13) {
        out.push(Finding::new(
            "tls.no_tls13",
            Severity::Info,
            target,
            "TLS 1.3 is not offered",
            "TLS 1.3 is faster (one round trip) and removes every legacy construction.",
            "Enable TLS 1.3 (nginx: ssl_protocols TLSv1.2 TLSv1.3; with OpenSSL 1.1.1 or later).",
        ));
    }
    let names = |f: &dyn Fn(&suites::Suite) -> bool| -> Vec<&'static str> {
        let mut v: Vec<&'static str> = legacy.iter().filter(|s| f(s)).map(|s| s.name).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let fix_suites = "Offer only ECDHE suites with AES-GCM or ChaCha20-Poly1305 (Mozilla's 'intermediate' configuration: ssl-config.mozilla.org).";
    let insecure = names(&suites::Suite::insecure);
    if !insecure.is_empty() {
        out.push(Finding::new(
            "tls.suite_insecure",
            Severity::Critical,
            target,
            format!("Export, anonymous or unencrypted suites are accepted: {}", insecure.join(", ")),
            "These suites give no secrecy or no authentication: an attacker in the middle reads or impersonates at will (FREAK, Logjam).",
            fix_suites,
        ));
    }
    let weak = names(&suites::Suite::weak);
    if !weak.is_empty() {
        out.push(Finding::new(
            "tls.suite_weak",
            Severity::Error,
            target,
            format!("Weak ciphers are accepted: {}", weak.join(", ")),
            "RC4 has practical plaintext-recovery attacks; 3DES, DES and IDEA have 64-bit blocks (Sweet32) or short keys.",
            fix_suites,
        ));
    }
    if !facts.forward_secrecy && !versions.is_empty() {
        out.push(Finding::new(
            "tls.no_forward_secrecy",
            Severity::Error,
            target,
            "No suite has forward secrecy",
            "Whoever obtains the server's private key later can decrypt every recorded session.",
            fix_suites,
        ));
    } else {
        let static_rsa = names(&|s| s.kx == Kx::Rsa);
        if !static_rsa.is_empty() {
            out.push(Finding::new(
                "tls.suite_no_forward_secrecy",
                Severity::Warning,
                target,
                format!("Suites without forward secrecy are accepted: {}", static_rsa.join(", ")),
                "A client that picks one of these can have its sessions decrypted by whoever obtains the server's key later.",
                fix_suites,
            ));
        }
    }
    if !facts.aead && !versions.is_empty() {
        out.push(Finding::new(
            "tls.no_aead",
            Severity::Warning,
            target,
            "No AEAD suite (AES-GCM, ChaCha20-Poly1305) is accepted",
            "CBC suites have a history of padding-oracle attacks (Lucky13, POODLE TLS).",
            fix_suites,
        ));
    }
    if let Some(bits) = dh_weakest.filter(|b| *b < 2048) {
        out.push(Finding::new(
            "tls.dh_weak",
            if bits < 1024 { Severity::Critical } else { Severity::Warning },
            target,
            format!("The weakest key exchange is {bits}-bit"),
            "Diffie-Hellman groups under 2048 bits are within reach of well-funded attackers (Logjam).",
            "Use ECDHE, or DH groups of at least 2048 bits (RFC 7919 ffdhe2048).",
        ));
    }
}

/// What a rustls handshake saw.
struct Seen {
    chain: Vec<Vec<u8>>,
    stapled: bool,
    group: Option<u16>,
}

/// A verifier that accepts any chain and keeps it: the scanner judges the
/// chain itself ([`cert`]); it sends nothing secret over these connections.
#[derive(Debug)]
pub struct Recorder {
    provider: Arc<CryptoProvider>,
    seen: Mutex<(Vec<Vec<u8>>, bool)>,
}

impl Recorder {
    pub fn new(provider: Arc<CryptoProvider>) -> Recorder {
        Recorder {
            provider,
            seen: Mutex::new((Vec::new(), false)),
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            s.0 = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.as_ref().to_vec())
                .collect();
            s.1 = !ocsp.is_empty();
        }
        Ok(ServerCertVerified::assertion())
    }

    // Handshake signatures are not checked: the probe trusts nothing it
    // learns over these connections, and a server whose key the crypto
    // provider refuses (RSA under 2048 bits) must still be seen for what
    // it offers. The key itself is judged by `cert`.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that records instead of verifying, for the
/// scanner's own connections (TLS probes and the HTTP checks).
pub fn recording_config(provider: CryptoProvider) -> Option<(rustls::ClientConfig, Arc<Recorder>)> {
    let provider = Arc::new(provider);
    let recorder = Arc::new(Recorder::new(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    Some((config, recorder))
}

enum Probe13 {
    Accepted(Seen),
    Refused,
    Silent,
}

async fn rustls_probe(
    addr: SocketAddr,
    host: &str,
    provider: CryptoProvider,
    timeout: Duration,
) -> std::io::Result<Probe13> {
    let Some((mut config, recorder)) = recording_config(provider) else {
        return Ok(Probe13::Refused);
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = hello::connect(addr, timeout).await?;
    let run = async {
        match connector.connect(name, tcp).await {
            Ok(tls) => {
                let (_, conn) = tls.get_ref();
                let group = conn
                    .negotiated_key_exchange_group()
                    .map(|g| u16::from(g.name()));
                let (chain, stapled) = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
                Ok(Probe13::Accepted(Seen {
                    chain,
                    stapled,
                    group,
                }))
            }
            Err(_) => Ok(Probe13::Refused),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Ok(Probe13::Silent))
}
