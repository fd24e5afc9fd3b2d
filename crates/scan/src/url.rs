//! `scan url https://host[:port][/path]`: TLS, headers and exposure of any
//! web server, in that order, into one [`Report`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::exposure::{self, Answer, Fetch};
use crate::headers::{self, HttpAnswer, Observed};
use crate::report::{Progress, Report, ScanKind, Skipped};
use crate::tls;

/// The Origin the scanner sends, to see whether CORS reflects it.
pub const PROBE_ORIGIN: &str = "https://rampart-scan.invalid";

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot reach {0}")]
    Unreachable(String),
}

#[derive(Clone)]
pub struct UrlOptions {
    /// Extra roots to trust (`--ca-file`), DER.
    pub ca: Vec<CertificateDer<'static>>,
    pub timeout: Duration,
    /// Port of the plain-HTTP redirect check (default 80).
    pub http_port: u16,
    pub exposure: bool,
    /// Pause between exposure requests.
    pub pause: Duration,
}

impl Default for UrlOptions {
    fn default() -> Self {
        UrlOptions {
            ca: Vec::new(),
            timeout: Duration::from_secs(5),
            http_port: 80,
            exposure: true,
            pause: Duration::from_millis(100),
        }
    }
}

/// The parts of the URL scanned.
pub struct Target {
    pub url: url::Url,
    pub host: String,
    pub port: u16,
}

pub fn parse_target(raw: &str) -> Result<Target, UrlError> {
    // The input is never echoed: it may hold a password.
    let mut url = url::Url::parse(raw).map_err(|_| {
        UrlError::Invalid("that is not a URL; give it as https://host[:port][/path]".to_owned())
    })?;
    if url.scheme() != "https" {
        return Err(UrlError::Invalid(format!(
            "only https:// URLs are scanned (got {}://); plain HTTP is checked for its redirect to HTTPS automatically",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Invalid(
            "give the URL without a user name or password: the scanner sends no credentials, and reports would keep them"
                .to_owned(),
        ));
    }
    url.set_fragment(None);
    let host = url
        .host_str()
        .ok_or_else(|| UrlError::Invalid("the URL has no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(443);
    Ok(Target { url, host, port })
}

impl Target {
    /// The URL as reports show it: without the query, which may carry a
    /// token.
    pub fn display(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        u.to_string()
    }
}

/// Scans one URL.
pub async fn scan(
    raw: &str,
    opts: &UrlOptions,
    now: OffsetDateTime,
    progress: &dyn Progress,
) -> Result<Report, UrlError> {
    let started = Instant::now();
    let t = parse_target(raw)?;
    let addr = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| UrlError::Unreachable(format!("{}: the name does not resolve", t.host)))?;
    let mut report = Report::new(ScanKind::Url, t.display(), now);
    let tls_opts = tls::TlsOptions {
        roots: tls::cert::roots(&opts.ca),
        timeout: opts.timeout,
    };
    let mut tls_report = tls::scan(
        addr,
        &t.host,
        &tls_opts,
        now,
        progress,
        &mut report.findings,
    )
    .await
    .map_err(|e| UrlError::Unreachable(format!("{}:{} ({})", t.host, t.port, e.kind())))?;

    let client = http_client(addr, &t.host, opts.timeout, true)
        .ok_or_else(|| UrlError::Invalid("cannot build an HTTPS client".to_owned()))?;
    progress.step("headers", 0, 1);
    match observe(&client, &t, addr, opts).await {
        Some(mut observed) => {
            observed.cert_invalid = !tls_report.facts.trusted;
            let http = headers::analyse(&observed, &mut report.findings);
            tls::finish_grade(&mut tls_report, http.hsts_max_age);
            report.http = Some(http);
        }
        None => report.skipped.push(Skipped {
            check: "http".to_owned(),
            reason: "no HTTP answer over TLS".to_owned(),
        }),
    }
    for note in &tls_report.incomplete {
        report.skipped.push(Skipped {
            check: "tls".to_owned(),
            reason: note.clone(),
        });
    }
    report.tls = Some(tls_report);

    if opts.exposure {
        let fetch = HttpFetch {
            client,
            base: t.url.clone(),
        };
        let target = format!("{}://{}", t.url.scheme(), t.url.authority());
        report.exposure = exposure::check(
            &fetch,
            &target,
            opts.pause,
            progress,
            &mut report.findings,
            &mut report.skipped,
        )
        .await;
    } else {
        report.skipped.push(Skipped {
            check: "exposure".to_owned(),
            reason: "turned off (--no-exposure)".to_owned(),
        });
    }
    report.finish(started.elapsed());
    Ok(report)
}

/// A client that connects to `addr` whatever the name resolves to, and
/// records the certificate instead of refusing it (the TLS part judges it).
fn http_client(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
    tls: bool,
) -> Option<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("rampart-scan/", env!("CARGO_PKG_VERSION")))
        .resolve(host, addr);
    if tls {
        let (config, _) = tls::recording_config(rustls::crypto::ring::default_provider())?;
        b = b.use_preconfigured_tls(config);
    }
    b.build().ok()
}

async fn read_capped(mut res: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

async fn observe(
    client: &reqwest::Client,
    t: &Target,
    addr: SocketAddr,
    opts: &UrlOptions,
) -> Option<Observed> {
    let res = client
        .get(t.url.clone())
        .header("origin", PROBE_ORIGIN)
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in res.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|e| {
                e.push('\n');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let set_cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let body_is_html = headers
        .get("content-type")
        .is_some_and(|c| c.to_ascii_lowercase().contains("text/html"));
    let body = read_capped(res, exposure::MAX_BODY).await;

    // Plain HTTP on the same host: does it redirect to HTTPS?
    let plain_addr = SocketAddr::new(addr.ip(), opts.http_port);
    let http = match http_client(plain_addr, &t.host, opts.timeout, false) {
        Some(c) => {
            // Only the origin and the path: never the query.
            let mut u = t.url.clone();
            u.set_query(None);
            let _ = u.set_scheme("http");
            let _ = u.set_port(Some(opts.http_port));
            match c.get(u).send().await {
                Ok(r) => {
                    let location = r
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .map(|l| l.to_owned());
                    let to = location.as_deref().and_then(|l| url::Url::parse(l).ok());
                    let https_host = to
                        .as_ref()
                        .filter(|u| u.scheme() == "https")
                        .and_then(|u| u.host_str().map(|h| h.to_owned()));
                    Some(HttpAnswer {
                        status: r.status().as_u16(),
                        same_host: https_host
                            .as_deref()
                            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                            == Some(t.host.as_str()),
                        https_host,
                        location,
                    })
                }
                Err(_) => None,
            }
        }
        None => None,
    };
    Some(Observed {
        url: t.display(),
        status,
        headers,
        set_cookies,
        body_is_html,
        body_head: String::from_utf8_lossy(&body).into_owned(),
        origin_sent: PROBE_ORIGIN.to_owned(),
        http,
        cert_invalid: false,
    })
}

struct HttpFetch {
    client: reqwest::Client,
    base: url::Url,
}

impl Fetch for HttpFetch {
    async fn get(&self, path: &str) -> Option<Answer> {
        let url = self.base.join(path).ok()?;
        let res = self.client.get(url).send().await.ok()?;
        let status = res.status().as_u16();
        let body = read_capped(res, exposure::MAX_BODY).await;
        Some(Answer { status, body })
    }
}

/// Roots from a PEM file, for `--ca-file`.
pub fn ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, UrlError> {
    crate::posture::read_chain(path)
        .map(|c| c.into_iter().map(CertificateDer::from).collect())
        .ok_or_else(|| UrlError::Invalid(format!("{} holds no PEM certificate", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_never_shows_its_query_or_credentials() {
        let t = parse_target("https://shop.example.test:8443/status?token=s3cret#top").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("shop.example.test", 8443));
        assert_eq!(t.display(), "https://shop.example.test:8443/status");
        let t = parse_target("https://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        for bad in ["https://u:p@h/", "https://u@h/", "http://h/", "not a url"] {
            let e = parse_target(bad).err().unwrap().to_string();
            assert!(!e.contains("u:p") && !e.contains(bad), "{e}");
        }
    }
}
