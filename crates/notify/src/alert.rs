//! Alert delivery by webhook: the alert as JSON, POSTed and signed like
//! the SMS webhook (`X-Rampart-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`), so a receiver can check it came from
//! this server and is fresh. `https://`, or `http://` to a loopback
//! address; no redirects.

use std::time::Duration;

use rampart_crypto::SecretString;

use crate::{sign, SIGNATURE_HEADER};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AlertWebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

pub struct AlertWebhook {
    client: reqwest::Client,
    url: url::Url,
    secret: SecretString,
}

impl std::fmt::Debug for AlertWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertWebhook")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl AlertWebhook {
    pub fn new(
        raw: &str,
        secret: SecretString,
        ca_pem: Option<&[u8]>,
    ) -> Result<AlertWebhook, AlertWebhookError> {
        let invalid = |m: &str| AlertWebhookError::Invalid(m.to_owned());
        let url = url::Url::parse(raw).map_err(|_| invalid("not a URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(invalid(
                "must be https:// (or http:// to this machine): alerts name addresses and accounts",
            )),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "must not carry credentials; the signature authenticates the sender",
            ));
        }
        if secret.expose_secret().len() < 32 {
            return Err(invalid(
                "the secret must be at least 32 characters (use `openssl rand -hex 32`)",
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if !loopback {
            builder = builder.https_only(true);
        }
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|_| invalid("the CA file is not a PEM certificate"))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(AlertWebhook {
            client: builder
                .build()
                .map_err(|e| AlertWebhookError::Invalid(format!("client: {e}")))?,
            url,
            secret,
        })
    }

    /// POSTs `body` signed at `unix_secs`; a 2xx answer is a delivery.
    pub async fn post(&self, body: &[u8], unix_secs: i64) -> Result<(), AlertWebhookError> {
        let res = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, unix_secs, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| AlertWebhookError::Failed(format!("webhook: {}", e.without_url())))?;
        if !res.status().is_success() {
            return Err(AlertWebhookError::Failed(format!(
                "webhook answered {}",
                res.status().as_u16()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::new("0123456789abcdef0123456789abcdef".into())
    }

    #[test]
    fn alerts_leave_only_over_tls_or_to_this_machine() {
        assert!(AlertWebhook::new("https://hooks.example.com/a", secret(), None).is_ok());
        for ok in [
            "http://127.0.0.1:9000/a",
            "http://localhost/a",
            "http://[::1]/a",
        ] {
            assert!(AlertWebhook::new(ok, secret(), None).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/a",
            "http://10.0.0.5/a",
            "ftp://127.0.0.1/a",
            "not a url",
        ] {
            assert!(AlertWebhook::new(bad, secret(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_in_the_url_and_short_secrets_are_refused_without_echo() {
        let e = AlertWebhook::new("https://user:hunter2@hooks.example.com/a", secret(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = AlertWebhook::new(
            "https://hooks.example.com/a",
            SecretString::new("short-secret".into()),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("32"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        // The secret never shows in the hook's Debug.
        let hook = AlertWebhook::new("https://hooks.example.com/a", secret(), None).unwrap();
        assert!(!format!("{hook:?}").contains("0123456789abcdef"));
    }
}
