//! The password policy: what a new password must be, and every reason it
//! is refused. See `docs/adr/0001-password-policy.md`.

use std::collections::HashSet;
use std::sync::LazyLock;

use rampart_crypto::SecretString;
use rampart_proto::Violation;
use unicode_normalization::UnicodeNormalization;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// How many entries the built-in blocklist holds.
pub fn blocklist_len() -> usize {
    COMMON.len()
}

/// A named policy. `Default` follows the small-business practices list;
/// `Nist` follows NIST SP 800-63B rev. 4 (length over composition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyPreset {
    Default,
    Nist,
}

#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
    pub require_composition: bool,
    pub min_strength: u8,
}

impl PasswordPolicy {
    /// Lets through passwords `other` would refuse for length or strength
    /// (composition rules count for less than length; NIST drops them).
    pub fn weaker_than(&self, other: &Self) -> bool {
        self.min_chars < other.min_chars || self.min_strength < other.min_strength
    }

    pub fn preset(p: PolicyPreset) -> Self {
        match p {
            PolicyPreset::Default => Self {
                min_chars: 12,
                max_chars: 256,
                require_composition: true,
                min_strength: 3,
            },
            PolicyPreset::Nist => Self {
                min_chars: 15,
                max_chars: 256,
                require_composition: false,
                min_strength: 3,
            },
        }
    }
}

/// A password after Unicode NFKC normalisation: the form that is checked,
/// hashed and verified, so the same password typed on two keyboards matches.
pub fn normalize(password: &SecretString) -> SecretString {
    SecretString::new(password.expose_secret().nfkc().collect())
}

/// The outcome of a rejected password: every failed rule, plus advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub violations: Vec<Violation>,
    pub suggestions: Vec<String>,
}

fn v(code: &str, message: String) -> Violation {
    Violation {
        code: code.to_owned(),
        message,
        field: None,
    }
}

impl PasswordPolicy {
    /// Checks a normalised password. `email_local` and `display_name` are
    /// the account's own words, which the password may not contain.
    pub fn check(
        &self,
        normalized: &SecretString,
        email_local: &str,
        display_name: Option<&str>,
    ) -> Result<(), Rejection> {
        self.assess(normalized, email_local, display_name).1
    }

    /// [`check`](Self::check), with the strength estimate (0 to 4) beside
    /// the verdict: what a strength meter shows while a password is typed.
    pub fn assess(
        &self,
        normalized: &SecretString,
        email_local: &str,
        display_name: Option<&str>,
    ) -> (u8, Result<(), Rejection>) {
        let mut score = 0;
        let pw = normalized.expose_secret();
        let chars = pw.chars().count();
        let mut violations = Vec::new();
        let mut suggestions = Vec::new();

        if chars < self.min_chars {
            violations.push(v(
                "too_short",
                format!("Use at least {} characters.", self.min_chars),
            ));
        }
        if chars > self.max_chars {
            violations.push(v(
                "too_long",
                format!("Use at most {} characters.", self.max_chars),
            ));
        }
        if pw.chars().any(char::is_control) {
            violations.push(v(
                "control_characters",
                "Remove control characters such as tabs and line breaks.".to_owned(),
            ));
        }
        if self.require_composition {
            if !pw.chars().any(char::is_lowercase) {
                violations.push(v(
                    "missing_lowercase",
                    "Include at least one lowercase letter.".to_owned(),
                ));
            }
            if !pw.chars().any(char::is_uppercase) {
                violations.push(v(
                    "missing_uppercase",
                    "Include at least one uppercase letter.".to_owned(),
                ));
            }
            if !pw.chars().any(char::is_numeric) {
                violations.push(v("missing_digit", "Include at least one digit.".to_owned()));
            }
            if !pw.chars().any(|c| !c.is_alphanumeric()) {
                violations.push(v(
                    "missing_symbol",
                    "Include at least one symbol, such as ! or #.".to_owned(),
                ));
            }
        }
        let lower = pw.to_lowercase();
        if COMMON.contains(lower.as_str()) {
            violations.push(v(
                "common_password",
                "This password is on a list of common or breached passwords.".to_owned(),
            ));
        }
        let mut personal: Vec<String> = Vec::new();
        if email_local.chars().count() >= 3 {
            personal.push(email_local.to_lowercase());
        }
        if let Some(name) = display_name {
            let name = name.nfkc().collect::<String>().to_lowercase();
            if name.chars().count() >= 3 {
                personal.push(name.clone());
            }
            personal.extend(
                name.split_whitespace()
                    .filter(|w| w.chars().count() >= 4)
                    .map(str::to_owned),
            );
        }
        if personal.iter().any(|p| lower.contains(p.as_str())) {
            violations.push(v(
                "contains_personal_info",
                "Do not use your email name or display name in your password.".to_owned(),
            ));
        }
        // The strength estimate is quadratic in length; only run it on
        // passwords that passed the length bound.
        if chars <= self.max_chars && !pw.is_empty() {
            let inputs: Vec<&str> = personal.iter().map(String::as_str).collect();
            let estimate = zxcvbn::zxcvbn(pw, &inputs);
            score = u8::from(estimate.score());
            if score < self.min_strength {
                violations.push(v(
                    "too_guessable",
                    format!(
                        "This password is too easy to guess (strength {} of 4, {} needed).",
                        u8::from(estimate.score()),
                        self.min_strength
                    ),
                ));
                if let Some(fb) = estimate.feedback() {
                    if let Some(w) = fb.warning() {
                        suggestions.push(w.to_string());
                    }
                    suggestions.extend(fb.suggestions().iter().map(|s| s.to_string()));
                }
            }
        }
        if violations.is_empty() {
            (score, Ok(()))
        } else {
            if suggestions.is_empty() {
                suggestions.push(
                    "Use a long passphrase of several unrelated words, or a password manager."
                        .to_owned(),
                );
            }
            (
                score,
                Err(Rejection {
                    violations,
                    suggestions,
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_is_not_weaker_than_the_default() {
        let (default, nist) = (
            PasswordPolicy::preset(PolicyPreset::Default),
            PasswordPolicy::preset(PolicyPreset::Nist),
        );
        assert!(!nist.weaker_than(&default));
        assert!(!default.weaker_than(&default));
        let shorter = PasswordPolicy {
            min_chars: 8,
            ..default
        };
        assert!(shorter.weaker_than(&default));
    }

    fn codes(p: &PasswordPolicy, pw: &str, local: &str, name: Option<&str>) -> Vec<String> {
        match p.check(&normalize(&SecretString::from(pw)), local, name) {
            Ok(()) => vec![],
            Err(r) => r.violations.into_iter().map(|v| v.code).collect(),
        }
    }

    #[test]
    fn blocklist_is_large() {
        assert!(blocklist_len() >= 20_000);
    }

    #[test]
    fn strong_password_passes() {
        let p = PasswordPolicy::preset(PolicyPreset::Default);
        assert_eq!(
            codes(&p, "Quartz-Lantern-97-Ferry", "alice", None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_rule_is_reported() {
        let p = PasswordPolicy::preset(PolicyPreset::Default);
        let c = codes(&p, "short", "alice", None);
        for want in [
            "too_short",
            "missing_uppercase",
            "missing_digit",
            "missing_symbol",
            "too_guessable",
        ] {
            assert!(c.contains(&want.to_owned()), "{want} missing from {c:?}");
        }
        assert!(codes(&p, "QUARTZ-LANTERN-97-FERRY", "x", None)
            .contains(&"missing_lowercase".to_owned()));
        assert!(codes(&p, &"Aa1!".repeat(65), "x", None).contains(&"too_long".to_owned()));
        assert!(codes(&p, "baseball", "x", None).contains(&"common_password".to_owned()));
        assert!(codes(&p, "BaseBall", "x", None).contains(&"common_password".to_owned()));
        assert!(codes(&p, "Xq7!alicewonder#Z", "alicewonder", None)
            .contains(&"contains_personal_info".to_owned()));
        assert!(
            codes(&p, "Xq7!Margarethe-99#Z", "x", Some("Margarethe Smith"))
                .contains(&"contains_personal_info".to_owned())
        );
        assert!(codes(&p, "Password1234!", "x", None).contains(&"too_guessable".to_owned()));
    }

    #[test]
    fn length_is_counted_after_nfkc() {
        // Twelve fullwidth characters are twelve characters, not 36 bytes.
        let p = PasswordPolicy::preset(PolicyPreset::Nist);
        let pw = "ＡＢＣＤＥＦＧＨＩＪＫＬ";
        assert!(codes(&p, pw, "x", None).contains(&"too_short".to_owned()));
        assert_eq!(
            normalize(&SecretString::from(pw)).expose_secret(),
            "ABCDEFGHIJKL"
        );
    }

    #[test]
    fn nist_preset_drops_composition_but_keeps_blocklist_and_strength() {
        let p = PasswordPolicy::preset(PolicyPreset::Nist);
        assert_eq!(
            codes(&p, "plum orbit cactus violin", "x", None),
            Vec::<String>::new()
        );
        let c = codes(&p, "aaaaaaaaaaaaaaaa", "x", None);
        assert!(c.contains(&"too_guessable".to_owned()));
        assert!(!c.contains(&"missing_uppercase".to_owned()));
        assert!(codes(&p, "Quartz-9-Ferry", "x", None).contains(&"too_short".to_owned()));
    }
}
