//! The connection's own answers on HTTP/1, for refusals made before any
//! request reaches the router: hyper's parser answers a malformed request
//! line (400), a target too long (414) or too many or too large headers
//! (431) with an empty body, and a head that misses its deadline gets no
//! answer from hyper at all. [`Voice`] puts problem+json with a stable
//! `code` in their place, so every refusal has the one format.
//!
//! How hyper's own answers are told apart from the service's: every
//! response of the service's carries the security headers
//! (`x-content-type-options` among them), and hyper's bare answers carry
//! none. A write is taken for hyper's own only when it starts with a whole
//! response head (status line to blank line) without that header, and
//! every response the service has produced (`Activity::responses`, counted
//! before hyper writes it) already had its head written (counted once the
//! write is accepted, so a write hyper retries is not counted twice).
//! Informational heads (`100 Continue`) are let through uncounted. A
//! service head is never replaced; at worst, when hyper's answer shares a
//! write with the end of an earlier response, it goes out bare.

use std::io;
use std::net::IpAddr;
use std::task::{Context, Poll};

use rampart_proto::Problem;
use tokio::io::AsyncWrite;

use crate::middleware::SECURITY_HEADERS;

/// A refusal the connection makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// hyper's parser refused the head with this status.
    Parser(u16),
    /// A head did not arrive within the header read timeout.
    LateHead,
}

/// The connection's own voice: see the module docs.
#[derive(Debug)]
pub struct Voice {
    header_count: usize,
    header_bytes: usize,
    peer: Option<IpAddr>,
    /// Response heads of the service's seen so far.
    heads: u64,
    /// Our answer and how much of it is written.
    out: Vec<u8>,
    written: usize,
    /// Whether the connection has answered; nothing of hyper's follows.
    spoken: bool,
}

impl Voice {
    pub fn new(header_count: usize, header_bytes: usize, peer: Option<IpAddr>) -> Self {
        Self {
            header_count,
            header_bytes,
            peer,
            heads: 0,
            out: Vec::new(),
            written: 0,
            spoken: false,
        }
    }

    /// Whether the connection has given its own answer.
    pub fn spoken(&self) -> bool {
        self.spoken
    }

    /// Looks at a write of hyper's, with `responses` the number of responses
    /// the service has produced. `true` when it is hyper's own bare answer,
    /// now replaced by ours (queued; drain it with [`Voice::poll_drain`]).
    pub fn hears(&mut self, buf: &[u8], responses: u64) -> bool {
        let Some(status) = head_status(buf) else {
            return false;
        };
        if (100..200).contains(&status) || self.heads < responses {
            return false;
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        if has_header(&buf[..end + 2], b"x-content-type-options:") {
            return false; // the service's: it carries the security headers
        }
        self.speak(Answer::Parser(status));
        true
    }

    /// Notes a write the stream accepted: a response head of the service's
    /// at its start is counted.
    pub fn wrote(&mut self, buf: &[u8], responses: u64) {
        if let Some(status) = head_status(buf) {
            if !(100..200).contains(&status) && self.heads < responses {
                self.heads += 1;
            }
        }
    }

    /// Queues `answer`, once.
    pub fn speak(&mut self, answer: Answer) {
        if self.spoken {
            return;
        }
        self.spoken = true;
        let problem = problem(answer, self.header_count, self.header_bytes);
        tracing::info!(
            ip = self.peer.map(|p| p.to_string()).as_deref().unwrap_or("-"),
            status = problem.status,
            code = %problem.code,
            "request refused before routing"
        );
        self.out = render(&problem);
        self.written = 0;
    }

    /// Writes what is queued.
    pub fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match std::pin::Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Whether `head` (lines ending in CRLF) has a header line starting with
/// `name` (lowercase, with its colon), as hyper writes names.
fn has_header(head: &[u8], name: &[u8]) -> bool {
    head.windows(name.len() + 2)
        .any(|w| w.starts_with(b"\r\n") && w[2..].eq_ignore_ascii_case(name))
}

/// The status of a response head at the start of `buf`.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn problem(answer: Answer, header_count: usize, header_bytes: usize) -> Problem {
    match answer {
        Answer::LateHead => Problem::new(
            408,
            "request_timeout",
            "Request timeout",
            "The request head took too long to arrive.",
        ),
        Answer::Parser(414) => Problem::new(
            414,
            "uri_too_long",
            "Request target too long",
            "The request's path and query are too long.",
        ),
        Answer::Parser(431) => Problem::new(
            431,
            "headers_too_large",
            "Request headers too large",
            format!("Send at most {header_count} headers and {header_bytes} bytes of headers."),
        ),
        Answer::Parser(_) => Problem::new(
            400,
            "malformed_request",
            "Malformed request",
            "The request is not valid HTTP/1.1.",
        ),
    }
}

/// A whole HTTP/1.1 response carrying `problem`, closing the connection.
fn render(problem: &Problem) -> Vec<u8> {
    // A Problem is strings and numbers: serialising it cannot fail.
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let reason = http::StatusCode::from_u16(problem.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        problem.status,
        body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice() -> Voice {
        Voice::new(64, 16384, None)
    }

    fn body_of(out: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(out).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hypers_own_answer_is_replaced_by_problem_json() {
        let mut v = voice();
        assert!(v.hears(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
            0
        ));
        let text = String::from_utf8(v.out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("content-type: application/problem+json\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.contains("x-content-type-options: nosniff\r\n"));
        let body = body_of(&v.out);
        assert_eq!(body["code"], "headers_too_large");
        assert_eq!(body["status"], 431);
        let (head, b) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", b.len())));
    }

    const OURS_200: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nx-content-type-options: nosniff\r\n\r\n{\"a\":1}";
    const OURS_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nx-content-type-options: nosniff\r\ncontent-length: 0\r\n\r\n";
    const BARE_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";

    /// A write hyper makes: looked at, then (when not ours) accepted.
    fn write(v: &mut Voice, buf: &[u8], responses: u64) -> bool {
        let replaced = v.hears(buf, responses);
        if !replaced {
            v.wrote(buf, responses);
        }
        replaced
    }

    #[test]
    fn the_services_responses_pass_untouched() {
        let mut v = voice();
        // Two responses produced, both heads written as they are.
        assert!(!write(&mut v, OURS_200, 1));
        assert!(!write(&mut v, b"{\"a\":1}", 1), "a body is not a head");
        assert!(!write(&mut v, OURS_400, 2));
        // An informational head while a request is in flight is not counted.
        assert!(!write(&mut v, b"HTTP/1.1 100 Continue\r\n\r\n", 2));
        // Then a head the service did not produce: hyper's.
        assert!(write(&mut v, BARE_400, 2));
        assert_eq!(body_of(&v.out)["code"], "malformed_request");
    }

    #[test]
    fn a_service_head_is_never_replaced() {
        // Retried after the stream was not ready: looked at twice, counted
        // once, replaced never.
        let mut v = voice();
        assert!(!v.hears(OURS_200, 1));
        assert!(!v.hears(OURS_200, 1));
        v.wrote(OURS_200, 1);
        assert!(!v.hears(OURS_400, 1), "carries the security headers");
        // Body bytes that happen to look like a bare head, while the
        // service's response is still counted as unwritten, are not taken
        // for hyper's either.
        let mut v = voice();
        assert!(!v.hears(BARE_400, 1));
        // A head not yet whole in the buffer is let through.
        let mut v = voice();
        assert!(!v.hears(b"HTTP/1.1 400 Bad Request\r\ncontent-le", 0));
    }

    #[test]
    fn each_parser_status_has_its_code() {
        for (status, code) in [
            (400, "malformed_request"),
            (414, "uri_too_long"),
            (431, "headers_too_large"),
        ] {
            let mut v = voice();
            assert!(v.hears(format!("HTTP/1.1 {status} X\r\n\r\n").as_bytes(), 0));
            let body = body_of(&v.out);
            assert_eq!(body["code"], code);
            assert_eq!(body["status"], status);
        }
        let mut v = voice();
        v.speak(Answer::LateHead);
        assert!(String::from_utf8_lossy(&v.out).starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert_eq!(body_of(&v.out)["code"], "request_timeout");
        // Only once.
        let before = v.out.clone();
        v.speak(Answer::Parser(400));
        assert_eq!(v.out, before);
    }
}
