//! Prometheus metrics in the text exposition format (0.0.4), served on a
//! listener of their own (`metrics_listen`, by default 127.0.0.1:9464):
//! requests by route group and status, latency histograms, logins by
//! outcome, blocks, the audit trail (events written and queued, the age of
//! the newest checkpoint, the last verification).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::guard::Group;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What the HTTP layer counts.
#[derive(Default)]
pub struct HttpMetrics {
    /// (group, status) → requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl HttpMetrics {
    pub fn observe(&self, path: &str, status: u16, took: Duration) {
        let group = Group::of(path).as_str();
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((group, status))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(group).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }
}

/// The audit trail's and the guard's figures at the moment of a scrape.
#[derive(Debug, Clone, Default)]
pub struct TrailFigures {
    pub events_written: u64,
    pub queued: u64,
    /// (action, outcome) → events written by this process.
    pub by_action: BTreeMap<(String, String), u64>,
    pub checkpoint_age_secs: Option<f64>,
    pub checkpoint_size: u64,
    /// 1 passed, 0 failed; `None` before the first verification.
    pub verified_ok: Option<bool>,
    pub verified_at_secs: Option<f64>,
    pub verified_events: u64,
    pub blocks_in_force: u64,
}

/// Everything `/metrics` shows.
pub struct Metrics {
    pub http: Arc<HttpMetrics>,
    pub trail: Box<dyn Fn() -> TrailFigures + Send + Sync>,
    pub scrapes: AtomicU64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn render(&self) -> String {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        family(
            &mut out,
            "rampart_http_requests_total",
            "counter",
            "HTTP requests answered, by route group and status.",
        );
        for ((group, status), n) in self
            .http
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "rampart_http_requests_total{{group=\"{group}\",status=\"{status}\"}} {n}"
            );
        }
        family(
            &mut out,
            "rampart_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its answer, by route group.",
        );
        for (group, h) in self
            .http
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "rampart_http_request_duration_seconds_bucket{{group=\"{group}\",le=\"{b}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "rampart_http_request_duration_seconds_bucket{{group=\"{group}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "rampart_http_request_duration_seconds_sum{{group=\"{group}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "rampart_http_request_duration_seconds_count{{group=\"{group}\"}} {}",
                h.count
            );
        }
        let t = (self.trail)();
        family(
            &mut out,
            "rampart_logins_total",
            "counter",
            "Sign-ins by outcome (passwords; second factors are rampart_events_total).",
        );
        for outcome in ["success", "failure"] {
            let action = if outcome == "success" {
                "login_success"
            } else {
                "login_failure"
            };
            let n: u64 = t
                .by_action
                .iter()
                .filter(|((a, _), _)| a == action)
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(out, "rampart_logins_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(
            &mut out,
            "rampart_events_total",
            "counter",
            "Audit events written by this process, by action and outcome.",
        );
        for ((action, outcome), n) in &t.by_action {
            let _ = writeln!(
                out,
                "rampart_events_total{{action=\"{}\",outcome=\"{}\"}} {n}",
                label(action),
                label(outcome)
            );
        }
        let blocks_added: u64 = t
            .by_action
            .iter()
            .filter(|((a, _), _)| a == "block_added")
            .map(|(_, n)| n)
            .sum();
        family(
            &mut out,
            "rampart_blocks_added_total",
            "counter",
            "Address blocks added (automatic and by administrators).",
        );
        let _ = writeln!(out, "rampart_blocks_added_total {blocks_added}");
        family(
            &mut out,
            "rampart_blocks_in_force",
            "gauge",
            "Address blocks in force now.",
        );
        let _ = writeln!(out, "rampart_blocks_in_force {}", t.blocks_in_force);
        family(
            &mut out,
            "rampart_audit_events_written_total",
            "counter",
            "Events committed to the audit trail by this process.",
        );
        let _ = writeln!(
            out,
            "rampart_audit_events_written_total {}",
            t.events_written
        );
        family(
            &mut out,
            "rampart_audit_queue_depth",
            "gauge",
            "Events waiting for the audit writer.",
        );
        let _ = writeln!(out, "rampart_audit_queue_depth {}", t.queued);
        family(
            &mut out,
            "rampart_audit_checkpoint_age_seconds",
            "gauge",
            "Seconds since this node's newest signed checkpoint (heartbeat: at most 300).",
        );
        if let Some(a) = t.checkpoint_age_secs {
            let _ = writeln!(out, "rampart_audit_checkpoint_age_seconds {a}");
        }
        family(
            &mut out,
            "rampart_audit_checkpoint_size",
            "gauge",
            "Events covered by this node's newest checkpoint.",
        );
        let _ = writeln!(out, "rampart_audit_checkpoint_size {}", t.checkpoint_size);
        family(
            &mut out,
            "rampart_audit_verify_ok",
            "gauge",
            "1 when the last verification of the trail passed, 0 when it found a break.",
        );
        if let Some(ok) = t.verified_ok {
            let _ = writeln!(out, "rampart_audit_verify_ok {}", u8::from(ok));
        }
        family(
            &mut out,
            "rampart_audit_verify_timestamp_seconds",
            "gauge",
            "When the trail was last verified (Unix time).",
        );
        if let Some(at) = t.verified_at_secs {
            let _ = writeln!(out, "rampart_audit_verify_timestamp_seconds {at}");
        }
        family(
            &mut out,
            "rampart_audit_verified_events",
            "gauge",
            "Events the last verification checked.",
        );
        let _ = writeln!(out, "rampart_audit_verified_events {}", t.verified_events);
        out
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
}
