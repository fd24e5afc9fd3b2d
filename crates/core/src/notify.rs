//! Messages to account owners: sign-in codes and security notices. The
//! domain only sees [`Notifier`]; `rampart-notify` implements it over SMTP,
//! an HTTPS webhook for SMS gateways, and a development file.

use async_trait::async_trait;
use rampart_crypto::SecretString;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// One message. The body may hold a one-time code, so it is a secret: it
/// never appears in `Debug` output or logs.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Channel,
    /// An email address or an E.164 phone number.
    pub to: String,
    /// Email subject; SMS messages have none.
    pub subject: String,
    pub body: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// This deployment cannot send on that channel (not configured).
    #[error("no {0} delivery is configured")]
    Unavailable(&'static str),
    /// The relay or gateway refused or could not be reached. For the log
    /// only; it never holds the message body.
    #[error("delivery failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Whether messages on `channel` can be delivered at all.
    fn supports(&self, channel: Channel) -> bool;
    /// Delivers the message, or says why it could not.
    async fn send(&self, message: &Message) -> Result<(), NotifyError>;
}

/// Masks an address for display: `a***@example.com`, `+44*******89`.
pub fn mask(to: &str) -> String {
    if let Some((local, domain)) = to.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = to.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_a_hint() {
        assert_eq!(mask("alice@example.com"), "a***@example.com");
        assert_eq!(mask("+447700900123"), "+44********23");
        assert_eq!(mask("+1234"), "*****");
    }

    #[test]
    fn a_message_body_never_shows_in_debug() {
        let m = Message {
            channel: Channel::Sms,
            to: "+447700900123".to_owned(),
            subject: String::new(),
            body: SecretString::from("code 493817"),
        };
        assert!(!format!("{m:?}").contains("493817"));
    }
}
