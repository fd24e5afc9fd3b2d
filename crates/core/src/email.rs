//! Email addresses, parsed once at the edge into a normalised form so that
//! look-alike spellings of one address cannot create two accounts.
//!
//! Normalisation: Unicode NFC over the whole address, the domain converted
//! with IDNA (UTS #46) to lowercase ASCII, and the local part lowercased.
//! Lowercasing the local part is a deliberate choice: RFC 5321 lets it be
//! case-sensitive, but almost no provider treats it so, and two accounts
//! for `Bob@x` and `bob@x` would be a trap.

use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused. Carries no part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEmail;

impl Email {
    pub fn parse(input: &str) -> Result<Email, InvalidEmail> {
        if input.len() > 320 || input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidEmail);
        }
        let nfc: String = input.nfc().collect();
        let (local, domain) = nfc.rsplit_once('@').ok_or(InvalidEmail)?;
        if local.is_empty()
            || local.len() > 64
            || local.contains('@')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || local.chars().any(|c| "\"(),:;<>[\\]".contains(c))
        {
            return Err(InvalidEmail);
        }
        let ascii_domain = idna::domain_to_ascii_strict(domain).map_err(|_| InvalidEmail)?;
        if ascii_domain.is_empty()
            || !ascii_domain.contains('.')
            || ascii_domain.len() > 253
            || ascii_domain
                .split('.')
                .any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
        {
            return Err(InvalidEmail);
        }
        let normalised = format!("{}@{}", local.to_lowercase(), ascii_domain);
        if normalised.len() > 254 {
            return Err(InvalidEmail);
        }
        Ok(Email(normalised))
    }

    /// An address read back from storage, where only [`Email::parse`]
    /// output is ever written. Skips re-normalising on every request.
    pub fn from_stored(normalised: String) -> Email {
        Email(normalised)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`, for the "password contains your name" rule.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or("")
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_case_and_unicode_are_normalised() {
        let a = Email::parse("Alice@Example.COM").unwrap();
        assert_eq!(a.as_str(), "alice@example.com");
        let b = Email::parse("bob@BÜCHER.example").unwrap();
        assert_eq!(b.as_str(), "bob@xn--bcher-kva.example");
        // NFC: "é" precomposed and decomposed are one address.
        let c1 = Email::parse("caf\u{e9}@example.com").unwrap();
        let c2 = Email::parse("cafe\u{301}@example.com").unwrap();
        assert_eq!(c1, c2);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a\n@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
