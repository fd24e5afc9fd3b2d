//! Local stand-ins for what is outside the machine: an SMTP server that
//! keeps what it receives (TLS from the first byte, or STARTTLS), and an
//! HTTPS endpoint that records webhook posts. Both speak the real protocol
//! over real TLS on 127.0.0.1; Rampart reaches them through its real
//! notifiers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A certificate for `localhost`, written as PEM files in `dir`; returns
/// (cert path, TLS acceptor).
pub fn tls_for_localhost(dir: &Path, name: &str) -> (PathBuf, tokio_rustls::TlsAcceptor) {
    let pair = rampart_crypto::generate_self_signed(
        std::time::SystemTime::now(),
        &rampart_crypto::OsEntropy,
    )
    .unwrap();
    let cert_path = dir.join(format!("{name}-cert.pem"));
    std::fs::write(&cert_path, &pair.cert_pem).unwrap();
    let certs = rustls_pemfile_certs(pair.cert_pem.as_bytes());
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(pair.key_pem.expose_secret().as_bytes())
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (cert_path, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// The user name of `AUTH PLAIN`, when the client authenticated.
    pub user: Option<String>,
    /// True when the message was sent inside TLS.
    pub tls: bool,
}

pub struct SmtpSink {
    pub port: u16,
    pub cert: PathBuf,
    pub mail: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts the server. With `implicit_tls`, TLS starts at once (port 465
    /// style); otherwise it offers STARTTLS and refuses mail before it.
    pub async fn start(dir: &Path, implicit_tls: bool) -> SmtpSink {
        let (cert, acceptor) = tls_for_localhost(dir, "smtp");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mail = Arc::new(Mutex::new(Vec::new()));
        let store = mail.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    if implicit_tls {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = session(Box::new(tls), true, None, store, true).await;
                        }
                    } else {
                        let _ = session(Box::new(tcp), false, Some(acceptor), store, true).await;
                    }
                });
            }
        });
        SmtpSink { port, cert, mail }
    }

    /// Waits (up to 10 s) for a message to `to`, and returns the newest.
    pub async fn wait_for(&self, to: &str, count: usize) -> Mail {
        for _ in 0..500 {
            let got: Vec<Mail> = self
                .mail
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.to.iter().any(|t| t.contains(to)))
                .cloned()
                .collect();
            if got.len() >= count {
                return got[count - 1].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no mail #{count} to {to} within 10 s");
    }

    pub fn count_to(&self, to: &str) -> usize {
        self.mail
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .count()
    }
}

/// The six-digit code in a message body.
pub fn code_in(text: &str) -> String {
    let at = text.find("code is ").expect("a code in the message") + "code is ".len();
    text[at..at + 6].to_owned()
}

type Store = Arc<Mutex<Vec<Mail>>>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One SMTP conversation; `starttls` upgrades it when the client asks.
fn session(
    stream: Box<dyn Io>,
    tls: bool,
    starttls: Option<tokio_rustls::TlsAcceptor>,
    store: Store,
    greet: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> {
    Box::pin(async move {
        let mut io = BufReader::new(stream);
        // The greeting comes once, before any upgrade; after STARTTLS the
        // client says EHLO again.
        if greet {
            io.get_mut().write_all(b"220 sink ESMTP\r\n").await?;
        }
        let (mut from, mut to, mut user) = (String::new(), Vec::new(), None);
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_owned();
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                if !tls && starttls.is_some() {
                    b"250-sink\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                } else {
                    b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
                }
            } else if upper == "STARTTLS" && !tls {
                let Some(acceptor) = starttls.clone() else {
                    io.get_mut().write_all(b"502 no\r\n").await?;
                    continue;
                };
                io.get_mut().write_all(b"220 go ahead\r\n").await?;
                let inner = io.into_inner();
                let upgraded = acceptor.accept(inner).await?;
                return session(Box::new(upgraded), true, None, store, false).await;
            } else if let Some(b64) = cmd.strip_prefix("AUTH PLAIN ") {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default();
                let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                user = parts
                    .get(1)
                    .map(|u| String::from_utf8_lossy(u).into_owned());
                b"235 ok\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                if !tls {
                    b"530 must issue STARTTLS first\r\n"
                } else {
                    from = cmd[10..].trim().to_owned();
                    b"250 ok\r\n"
                }
            } else if upper.starts_with("RCPT TO:") {
                to.push(cmd[8..].trim().to_owned());
                b"250 ok\r\n"
            } else if upper == "DATA" {
                io.get_mut().write_all(b"354 go\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if io.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                store.lock().unwrap().push(Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                    user: user.clone(),
                    tls,
                });
                b"250 queued\r\n"
            } else if upper == "QUIT" {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else if upper == "RSET" || upper == "NOOP" {
                b"250 ok\r\n"
            } else {
                b"502 unknown\r\n"
            };
            io.get_mut().write_all(reply).await?;
        }
    })
}

/// One webhook post as the receiver got it.
#[derive(Debug, Clone)]
pub struct Post {
    pub body: Vec<u8>,
    pub signature: Option<String>,
}

/// An HTTPS endpoint on 127.0.0.1 that records every POST to `/sms` and
/// `/alerts`.
pub struct WebhookSink {
    pub url: String,
    pub cert: PathBuf,
    pub posts: Arc<Mutex<Vec<Post>>>,
    pub port: u16,
}

impl WebhookSink {
    pub async fn start(dir: &Path) -> WebhookSink {
        Self::start_on(dir, 0).await
    }

    /// The receiver on `port` (0: any free one).
    pub async fn start_on(dir: &Path, port: u16) -> WebhookSink {
        let (cert, acceptor) = tls_for_localhost(dir, "webhook");
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let store = posts.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let store = store.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let signature = req
                                    .headers()
                                    .get("x-rampart-signature")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                let ok = req.method() == hyper::Method::POST
                                    && ["/sms", "/alerts"].contains(&req.uri().path());
                                let body =
                                    req.into_body().collect().await.unwrap().to_bytes().to_vec();
                                if ok {
                                    store.lock().unwrap().push(Post { body, signature });
                                }
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(if ok { 200 } else { 404 })
                                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        WebhookSink {
            url: format!("https://localhost:{port}/sms"),
            cert,
            posts,
            port,
        }
    }

    pub async fn wait_for(&self, count: usize) -> Post {
        for _ in 0..500 {
            if let Some(p) = self.posts.lock().unwrap().get(count - 1) {
                return p.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no webhook post #{count} within 10 s");
    }
}
