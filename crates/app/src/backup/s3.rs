//! Backups to an S3-compatible object store (ADR 0013): each checked
//! backup is uploaded once, with a conditional write (`If-None-Match: *`,
//! so nothing already there is overwritten) and, unless `lock_days = 0`,
//! an Object Lock retention date in compliance mode, so that whoever holds
//! these credentials (ransomware on this server included) cannot delete
//! or overwrite it before then. Rampart never deletes from the bucket:
//! its credentials need no delete permission, and a lifecycle rule on the
//! bucket expires old backups.
//!
//! Requests are signed with `rusty-s3` (SigV4, every header that matters
//! signed) and sent with `reqwest`; the signing time is the injected
//! clock's.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rampart_core::Timestamp;
use rampart_crypto::SecretString;
use rusty_s3::S3Action as _;

use crate::config::S3Settings;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// The longest wait for one upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// A bucket to upload backups to.
pub struct Target {
    bucket: rusty_s3::Bucket,
    credentials: rusty_s3::Credentials,
    prefix: String,
    lock_days: u32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .field("lock_days", &self.lock_days)
            .finish_non_exhaustive()
    }
}

/// An upload done.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The object's key.
    pub key: String,
    /// The version the bucket gave it (a versioned bucket's).
    pub version_id: Option<String>,
    /// Until when the object is locked.
    pub locked_until: Option<Timestamp>,
}

impl Target {
    /// Checks the settings (none of the messages holds the secret).
    pub fn new(s: &S3Settings, secret: &SecretString) -> std::result::Result<Target, String> {
        let endpoint = url::Url::parse(&s.endpoint)
            .map_err(|_| format!("endpoint {:?} is not a URL", s.endpoint))?;
        let loopback = match endpoint.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match endpoint.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err("endpoint must be https:// (http:// only to this machine)".into()),
            _ => return Err("endpoint must be an https:// URL".into()),
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(
                "endpoint must not hold credentials: use access_key_id and secret_access_key_file"
                    .into(),
            );
        }
        let name_ok = (3..=63).contains(&s.bucket.len())
            && s.bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !name_ok {
            return Err(format!("bucket {:?} is not an S3 bucket name", s.bucket));
        }
        if !s
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            || s.prefix.starts_with('/')
            || s.prefix.contains("..")
        {
            return Err(format!(
                "prefix {:?} may hold only letters, digits, `-`, `_`, `.` and `/`",
                s.prefix
            ));
        }
        if s.lock_days > 36_500 {
            return Err("lock_days is more than 100 years".into());
        }
        if s.access_key_id.expose_secret().trim().is_empty() {
            return Err("access_key_id is empty".into());
        }
        let style = if s.path_style {
            rusty_s3::UrlStyle::Path
        } else {
            rusty_s3::UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(endpoint, style, s.bucket.clone(), s.region.clone())
            .map_err(|e| format!("endpoint: {e}"))?;
        Ok(Target {
            bucket,
            credentials: rusty_s3::Credentials::new(
                s.access_key_id.expose_secret().to_owned(),
                secret.expose_secret().to_owned(),
            ),
            prefix: s.prefix.clone(),
            lock_days: s.lock_days,
        })
    }

    /// From the settings, with their secret.
    pub fn from_settings(s: &S3Settings) -> Result<Target> {
        let secret = s
            .secret_access_key
            .as_ref()
            .ok_or_else(|| anyhow!("[backup.s3] has no secret_access_key"))?;
        Target::new(s, secret).map_err(|e| anyhow!("[backup.s3] {e}"))
    }

    /// Uploads the backup at `path` under its file name, once.
    pub async fn upload(
        &self,
        client: &reqwest::Client,
        path: &Path,
        now: Timestamp,
    ) -> Result<Uploaded> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
        let key = format!("{}{name}", self.prefix);
        let (md5, len) = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || content_md5(&path)).await??
        };
        let locked_until = (self.lock_days > 0)
            .then(|| Timestamp(now.millis() + i64::from(self.lock_days) * 86_400_000));
        let mut put =
            rusty_s3::actions::PutObject::new(&self.bucket, Some(&self.credentials), &key);
        let headers = put.headers_mut();
        headers.insert("content-length", len.to_string());
        headers.insert("content-md5", md5.clone());
        headers.insert("if-none-match", "*");
        if let Some(until) = locked_until {
            headers.insert("x-amz-object-lock-mode", "COMPLIANCE");
            headers.insert(
                "x-amz-object-lock-retain-until-date",
                rfc3339_seconds(until),
            );
        }
        let signed_at = jiff::Timestamp::from_millisecond(now.millis())
            .map_err(|_| anyhow!("the clock is out of range"))?;
        let url = put.sign_with_time(SIGNED_FOR, &signed_at);
        let mut request = client
            .put(url)
            .timeout(UPLOAD_TIMEOUT)
            .header("content-length", len)
            .header("content-md5", md5)
            .header("if-none-match", "*");
        if let Some(until) = locked_until {
            request = request
                .header("x-amz-object-lock-mode", "COMPLIANCE")
                .header(
                    "x-amz-object-lock-retain-until-date",
                    rfc3339_seconds(until),
                );
        }
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let response = request
            .body(reqwest::Body::from(file))
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the bucket: {}", e.without_url()))?;
        let status = response.status();
        let version_id = response
            .headers()
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status.is_success() {
            return Ok(Uploaded {
                key,
                version_id,
                locked_until,
            });
        }
        let body = response.text().await.unwrap_or_default();
        let code = s3_error_code(&body).unwrap_or_default();
        match status.as_u16() {
            412 => bail!("{key} exists already in the bucket: nothing was overwritten"),
            _ => bail!(
                "the bucket refused the upload of {key}: HTTP {status}{}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            ),
        }
    }
}

/// `2026-12-07T03:00:00Z`: what S3 takes as a retention date.
fn rfc3339_seconds(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

/// The base64 MD5 of a file (what Object Lock uploads must carry) and its
/// length.
fn content_md5(path: &Path) -> Result<(String, u64)> {
    use base64::Engine;
    use md5::Digest;
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hash = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        len += n as u64;
    }
    Ok((
        base64::engine::general_purpose::STANDARD.encode(hash.finalize()),
        len,
    ))
}

/// The `<Code>` of an S3 error document (a fixed word, never a secret).
fn s3_error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    let code = &body[start..end];
    (code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric())).then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            bucket: "acme-backups".into(),
            region: "eu-west-1".into(),
            prefix: "rampart/".into(),
            access_key_id: SecretString::new("AKIAEXAMPLE".into()),
            secret_access_key: Some(SecretString::new("wJalrXUtnFEMI-secret".into())),
            secret_access_key_file: None,
            lock_days: 30,
            path_style: true,
        }
    }

    #[test]
    fn wrong_settings_are_refused_without_the_secret() {
        let secret = SecretString::new("wJalrXUtnFEMI-secret".into());
        assert!(Target::new(&settings(), &secret).is_ok());
        type Edit = Box<dyn Fn(&mut S3Settings)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|s| s.endpoint = "http://s3.example.com".into()),
                "https",
            ),
            (Box::new(|s| s.endpoint = "ftp://127.0.0.1".into()), "https"),
            (
                Box::new(|s| s.endpoint = "https://key:pw@s3.example.com".into()),
                "credentials",
            ),
            (Box::new(|s| s.bucket = "Not_A_Bucket".into()), "bucket"),
            (Box::new(|s| s.prefix = "../up".into()), "prefix"),
            (Box::new(|s| s.lock_days = 100_000), "100 years"),
            (
                Box::new(|s| s.access_key_id = SecretString::new(" ".into())),
                "access_key_id",
            ),
        ];
        for (edit, want) in cases {
            let mut s = settings();
            edit(&mut s);
            let e = Target::new(&s, &secret).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("wJalr"));
        }
        let mut s = settings();
        s.endpoint = "http://127.0.0.1:9000".into();
        assert!(
            Target::new(&s, &secret).is_ok(),
            "plain http to this machine"
        );
        let t = Target::new(&settings(), &secret).unwrap();
        assert!(!format!("{t:?}").contains("wJalr"));
        assert!(
            !format!("{:?}", settings()).contains("wJalr"),
            "the settings' Debug too"
        );
    }

    #[test]
    fn retention_dates_and_error_codes() {
        assert_eq!(
            rfc3339_seconds(Timestamp(1_767_236_400_123)),
            "2026-01-01T03:00:00Z"
        );
        assert_eq!(
            s3_error_code("<Error><Code>AccessDenied</Code><Message>x</Message></Error>")
                .as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(s3_error_code("<Code>a b</Code>"), None);
        assert_eq!(s3_error_code("nothing"), None);
    }
}
