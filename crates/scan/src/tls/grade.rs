//! The grade, by the SSL Labs method (SSL Server Rating Guide): protocol
//! support 30%, key exchange 30%, cipher strength 40%, each the average of
//! the best and the worst offered; then the caps SSL Labs has added since
//! (TLS 1.0/1.1, no forward secrecy, no AEAD → B; RC4, 64-bit block
//! ciphers, no TLS 1.2 → C; export, anonymous or NULL suites, keys under
//! 1024 bits → F), `A-` without downgrade protection, `A+` for an `A`
//! with HSTS of at least six months, and `T` when the certificate is not
//! trusted (with the grade it would have otherwise).

use serde::{Deserialize, Serialize};

/// HSTS this long lifts an A to A+ (SSL Labs' `LONG_MAX_AGE`, 180 days).
pub const HSTS_A_PLUS_SECS: u64 = 15_552_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Grade {
    /// `A+` … `F`, or `T` when the certificate is not trusted.
    pub grade: String,
    /// The grade if trust problems are set aside.
    pub if_trusted: String,
    /// 0–100, before caps.
    pub score: u32,
    pub protocol_score: u32,
    pub key_exchange_score: u32,
    pub cipher_score: u32,
    /// Why the grade is lower than the score alone gives.
    pub caps: Vec<String>,
}

/// What the grade is computed from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Protocol versions offered: 0x0300 SSL 3.0 … 0x0304 TLS 1.3.
    pub versions: Vec<u16>,
    /// Cipher strength in bits of every suite accepted.
    pub cipher_bits: Vec<u16>,
    /// The weakest key exchange, in RSA-equivalent bits (0: anonymous).
    pub weakest_kx_bits: u32,
    pub export: bool,
    pub anonymous_or_null: bool,
    pub rc4: bool,
    pub block64: bool,
    pub forward_secrecy: bool,
    pub aead: bool,
    /// The certificate's key in RSA-equivalent bits ([`key_bits`]).
    pub cert_key_bits: u32,
    /// The certificate is trusted, valid for the name and in date.
    pub trusted: bool,
    /// Offers TLS < 1.3 at more than one version and lets a client be
    /// downgraded (no TLS_FALLBACK_SCSV).
    pub downgradable: bool,
    pub hsts_max_age: Option<u64>,
}

fn protocol_points(v: u16) -> u32 {
    match v {
        0x0300 => 80,
        0x0301 => 90,
        0x0302 => 95,
        0x0303 | 0x0304 => 100,
        _ => 0,
    }
}

fn kx_points(bits: u32) -> u32 {
    match bits {
        0 => 0,
        1..=511 => 20,
        512..=1023 => 40,
        1024..=2047 => 80,
        2048..=4095 => 90,
        _ => 100,
    }
}

fn cipher_points(bits: u16) -> u32 {
    match bits {
        0 => 0,
        1..=127 => 20,
        128..=255 => 80,
        _ => 100,
    }
}

fn letter(score: u32) -> &'static str {
    match score {
        80.. => "A",
        65..=79 => "B",
        50..=64 => "C",
        35..=49 => "D",
        20..=34 => "E",
        _ => "F",
    }
}

const ORDER: [&str; 7] = ["A+", "A", "A-", "B", "C", "D", "E"];

fn rank(g: &str) -> usize {
    ORDER.iter().position(|x| *x == g).unwrap_or(ORDER.len())
}

fn cap(current: &mut &'static str, at: &'static str, why: &str, caps: &mut Vec<String>) {
    if rank(at) > rank(current) {
        *current = at;
    }
    caps.push(format!("{why} (capped at {at})"));
}

/// RSA-equivalent strength of a certificate key (NIST SP 800-57).
pub fn key_bits(key_type: &str, bits: u32) -> u32 {
    match key_type {
        "EC" | "Ed25519" | "Ed448" => match bits {
            0..=223 => 1024,
            224..=255 => 2048,
            256..=383 => 3072,
            384..=511 => 7680,
            _ => 15360,
        },
        _ => bits,
    }
}

/// RSA-equivalent strength of a named group (NIST SP 800-57).
pub fn group_bits(group: u16) -> u32 {
    match group {
        23 | 29 => 3072, // secp256r1, x25519
        24 | 30 => 7680, // secp384r1, x448
        25 => 15360,     // secp521r1
        256 => 2048,     // ffdhe2048 (RFC 7919)
        257 => 3072,     // ffdhe3072
        258 => 4096,     // ffdhe4096
        259 => 6144,     // ffdhe6144
        260 => 8192,     // ffdhe8192
        4588 => 3072,    // X25519MLKEM768: at least its x25519 half
        _ => 1024,
    }
}

pub fn compute(f: &Facts) -> Grade {
    if f.versions.is_empty() || f.cipher_bits.is_empty() {
        return Grade {
            grade: "F".to_owned(),
            if_trusted: "F".to_owned(),
            caps: vec!["no TLS handshake succeeded".to_owned()],
            ..Default::default()
        };
    }
    let best = f
        .versions
        .iter()
        .map(|v| protocol_points(*v))
        .max()
        .unwrap_or(0);
    let worst = f
        .versions
        .iter()
        .map(|v| protocol_points(*v))
        .min()
        .unwrap_or(0);
    let protocol_score = (best + worst) / 2;
    let key_exchange_score = if f.export {
        40.min(kx_points(f.weakest_kx_bits))
    } else {
        kx_points(f.weakest_kx_bits)
    };
    let strongest = f.cipher_bits.iter().copied().max().unwrap_or(0);
    let weakest = f.cipher_bits.iter().copied().min().unwrap_or(0);
    let cipher_score = (cipher_points(strongest) + cipher_points(weakest)) / 2;
    let score = (protocol_score * 30 + key_exchange_score * 30 + cipher_score * 40 + 50) / 100;

    let mut g = letter(score);
    let mut caps = Vec::new();
    if f.versions.contains(&0x0300) {
        cap(&mut g, "C", "SSL 3.0 offered (POODLE)", &mut caps);
    }
    if f.versions.contains(&0x0301) || f.versions.contains(&0x0302) {
        cap(&mut g, "B", "TLS 1.0 or 1.1 offered", &mut caps);
    }
    if !f.versions.iter().any(|v| *v >= 0x0303) {
        cap(&mut g, "C", "neither TLS 1.2 nor 1.3 offered", &mut caps);
    }
    if f.rc4 {
        cap(&mut g, "C", "RC4 suites offered", &mut caps);
    }
    if f.block64 {
        cap(
            &mut g,
            "C",
            "64-bit block ciphers (3DES, DES, IDEA) offered (Sweet32)",
            &mut caps,
        );
    }
    if !f.forward_secrecy {
        cap(&mut g, "B", "no forward secrecy", &mut caps);
    }
    if !f.aead {
        cap(&mut g, "B", "no AEAD suites", &mut caps);
    }
    if (1..2048).contains(&f.cert_key_bits) {
        cap(&mut g, "B", "certificate key under 2048 bits", &mut caps);
    }
    if (1..2048).contains(&f.weakest_kx_bits) && !f.export {
        cap(&mut g, "B", "key exchange under 2048 bits", &mut caps);
    }
    if f.export {
        cap(&mut g, "F", "export suites offered", &mut caps);
    }
    if f.anonymous_or_null {
        cap(&mut g, "F", "anonymous or NULL suites offered", &mut caps);
    }
    if (1..1024).contains(&f.cert_key_bits) || (1..1024).contains(&f.weakest_kx_bits) {
        cap(&mut g, "F", "keys under 1024 bits", &mut caps);
    }
    let mut grade = g.to_owned();
    if grade == "A" && f.downgradable {
        grade = "A-".to_owned();
        caps.push("no TLS_FALLBACK_SCSV: clients can be downgraded (A-)".to_owned());
    }
    if grade == "A" && f.hsts_max_age.is_some_and(|a| a >= HSTS_A_PLUS_SECS) {
        grade = "A+".to_owned();
    }
    Grade {
        grade: if f.trusted {
            grade.clone()
        } else {
            "T".to_owned()
        },
        if_trusted: grade,
        score,
        protocol_score,
        key_exchange_score,
        cipher_score,
        caps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern() -> Facts {
        Facts {
            versions: vec![0x0304],
            cipher_bits: vec![128, 256, 256],
            weakest_kx_bits: 3072,
            forward_secrecy: true,
            aead: true,
            // ECDSA P-256, in RSA-equivalent bits.
            cert_key_bits: 3072,
            trusted: true,
            hsts_max_age: Some(63_072_000),
            ..Default::default()
        }
    }

    #[test]
    fn finite_field_groups_have_their_own_sizes() {
        let bits: Vec<u32> = (256..=260).map(group_bits).collect();
        assert_eq!(bits, vec![2048, 3072, 4096, 6144, 8192]);
        assert_eq!(group_bits(4588), group_bits(29));
    }

    #[test]
    fn tls13_only_with_long_hsts_is_a_plus() {
        let g = compute(&modern());
        assert_eq!(
            (g.protocol_score, g.key_exchange_score, g.cipher_score),
            (100, 90, 90)
        );
        assert_eq!(g.score, 93);
        assert_eq!(g.grade, "A+");
        let mut f = modern();
        f.hsts_max_age = Some(86_400);
        assert_eq!(compute(&f).grade, "A");
    }

    #[test]
    fn untrusted_is_t_with_the_grade_it_would_have() {
        let mut f = modern();
        f.trusted = false;
        let g = compute(&f);
        assert_eq!((g.grade.as_str(), g.if_trusted.as_str()), ("T", "A+"));
    }

    #[test]
    fn old_protocols_and_weak_suites_cap_the_grade() {
        let mut f = modern();
        f.versions = vec![0x0301, 0x0302, 0x0303];
        let g = compute(&f);
        assert_eq!(g.grade, "B", "{:?}", g.caps);
        f.block64 = true;
        f.cipher_bits.push(112);
        assert_eq!(compute(&f).grade, "C");
        f.export = true;
        f.cipher_bits.push(40);
        assert_eq!(compute(&f).grade, "F");
    }

    #[test]
    fn no_forward_secrecy_or_aead_is_b_and_downgrade_is_a_minus() {
        let mut f = modern();
        f.forward_secrecy = false;
        assert_eq!(compute(&f).grade, "B");
        let mut f = modern();
        f.versions = vec![0x0303, 0x0304];
        f.downgradable = true;
        assert_eq!(compute(&f).grade, "A-");
    }

    #[test]
    fn weak_keys_lower_the_score_and_cap() {
        let mut f = modern();
        f.weakest_kx_bits = 1024;
        let g = compute(&f);
        assert_eq!(g.key_exchange_score, 80);
        assert_eq!(g.grade, "B");
        f.cert_key_bits = 512;
        assert_eq!(compute(&f).grade, "F");
    }
}
