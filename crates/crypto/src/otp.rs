//! One-time codes: TOTP (RFC 6238, through `totp-rs`), random numeric codes
//! for email and SMS, and recovery codes.

use totp_rs::{Algorithm, TOTP};

use crate::{constant_time_eq, Entropy, SecretBytes, SecretString};

/// RFC 6238 as every authenticator app implements it.
pub const TOTP_DIGITS: usize = 6;
pub const TOTP_STEP_SECS: u64 = 30;
/// 160 bits, the RFC 4226 recommendation.
pub const TOTP_SECRET_BYTES: usize = 20;

/// A fresh TOTP secret.
pub fn totp_secret(entropy: &dyn Entropy) -> SecretBytes {
    let mut b = vec![0u8; TOTP_SECRET_BYTES];
    entropy.fill(&mut b);
    SecretBytes::new(b)
}

fn totp(secret: &SecretBytes, issuer: &str, account: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        TOTP_DIGITS,
        1,
        TOTP_STEP_SECS,
        secret.expose_secret().to_vec(),
        Some(issuer.to_owned()),
        account.to_owned(),
    )
    .ok()
}

/// The secret in base32, as typed into an app by hand.
pub fn totp_base32(secret: &SecretBytes) -> SecretString {
    SecretString::new(
        totp(secret, "x", "x")
            .map(|t| t.get_secret_base32())
            .unwrap_or_default(),
    )
}

/// The `otpauth://totp/...` URI that QR codes carry; `None` when the
/// account name cannot appear in one (it contains a colon).
pub fn totp_uri(secret: &SecretBytes, issuer: &str, account: &str) -> Option<SecretString> {
    totp(secret, issuer, account).map(|t| SecretString::new(t.get_url()))
}

/// The time step `code` belongs to, if it is the code of the current step
/// or of the one just before or after (clock drift); compared in constant
/// time. The caller refuses a step that was already used.
pub fn totp_step_of(secret: &SecretBytes, unix_secs: u64, code: &str) -> Option<u64> {
    let t = totp(secret, "x", "x")?;
    let step = unix_secs / TOTP_STEP_SECS;
    let mut found = None;
    for s in [step.saturating_sub(1), step, step + 1] {
        let expected = t.generate(s * TOTP_STEP_SECS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// A uniformly random code of `digits` decimal digits.
pub fn random_digits(entropy: &dyn Entropy, digits: u32) -> SecretString {
    let modulus = 10u32.pow(digits.min(9));
    // Rejection sampling: only the largest multiple of `modulus` below 2^32
    // maps evenly.
    let limit = u32::MAX - (u32::MAX % modulus);
    loop {
        let mut b = [0u8; 4];
        entropy.fill(&mut b);
        let n = u32::from_le_bytes(b);
        if n < limit {
            return SecretString::new(format!("{:0width$}", n % modulus, width = digits as usize));
        }
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A recovery code: 16 Crockford base32 characters (80 bits) in groups of
/// four, e.g. `7K2D-QX9M-4TNB-H0WE`.
pub fn recovery_code(entropy: &dyn Entropy) -> SecretString {
    let mut b = [0u8; 10];
    entropy.fill(&mut b);
    let mut bits: u128 = 0;
    for x in b {
        bits = (bits << 8) | u128::from(x);
    }
    let mut out = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let idx = ((bits >> (75 - 5 * i)) & 31) as usize;
        out.push(CROCKFORD[idx] as char);
    }
    SecretString::new(out)
}

/// The canonical form of a typed recovery code: separators and case
/// ignored, and the letters Crockford base32 reads as digits mapped.
/// `None` when it cannot be one.
pub fn normalize_recovery_code(typed: &str) -> Option<SecretString> {
    let mut out = String::with_capacity(19);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CROCKFORD.contains(&(c as u8)) {
            return None;
        }
        if out.len() == 4 || out.len() == 9 || out.len() == 14 {
            out.push('-');
        }
        out.push(c);
    }
    (out.len() == 19).then(|| SecretString::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsEntropy;

    /// The code for a Unix time.
    fn totp_code(secret: &SecretBytes, unix_secs: u64) -> String {
        totp(secret, "x", "x")
            .map(|t| t.generate(unix_secs))
            .unwrap_or_default()
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed, last six digits.
        let seed = SecretBytes::new(b"12345678901234567890".to_vec());
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(totp_code(&seed, t), code);
        }
    }

    #[test]
    fn steps_either_side_are_accepted_and_no_further() {
        let s = totp_secret(&OsEntropy);
        let now = 1_800_000_015;
        let step = now / 30;
        assert_eq!(totp_step_of(&s, now, &totp_code(&s, now)), Some(step));
        assert_eq!(
            totp_step_of(&s, now, &totp_code(&s, now - 30)),
            Some(step - 1)
        );
        assert_eq!(
            totp_step_of(&s, now, &totp_code(&s, now + 30)),
            Some(step + 1)
        );
        assert_eq!(totp_step_of(&s, now, &totp_code(&s, now - 60)), None);
        assert_eq!(totp_step_of(&s, now, &totp_code(&s, now + 60)), None);
        assert_eq!(totp_step_of(&s, now, "12345"), None);
    }

    #[test]
    fn uri_and_base32_carry_the_secret() {
        let s = SecretBytes::new(b"12345678901234567890".to_vec());
        assert_eq!(
            totp_base32(&s).expose_secret(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let uri = totp_uri(&s, "Rampart", "a@example.com").unwrap();
        assert!(uri
            .expose_secret()
            .starts_with("otpauth://totp/Rampart:a%40example.com?"));
        assert!(uri
            .expose_secret()
            .contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
    }

    #[test]
    fn random_codes_have_the_right_shape() {
        for _ in 0..200 {
            let c = random_digits(&OsEntropy, 6);
            assert_eq!(c.expose_secret().len(), 6);
            assert!(c.expose_secret().bytes().all(|b| b.is_ascii_digit()));
        }
        let r = recovery_code(&OsEntropy);
        assert_eq!(r.expose_secret().len(), 19);
        assert_eq!(
            normalize_recovery_code(&r.expose_secret().to_lowercase().replace('-', " ")).unwrap(),
            r
        );
        assert_eq!(
            normalize_recovery_code("oIl0-0000-0000-0000")
                .unwrap()
                .expose_secret(),
            "0110-0000-0000-0000"
        );
        assert!(normalize_recovery_code("0000-0000-0000-000U").is_none());
        assert!(normalize_recovery_code("0000-0000-0000").is_none());
        assert!(normalize_recovery_code("é000-0000-0000-0000").is_none());
    }
}
