//! Structured JSON logs on stdout, one object per line. Human-facing
//! messages (the start banner, warnings) go to stderr.
//!
//! Lines are handed to a writer thread, so a request never waits on the
//! stdout write; the channel is bounded and blocks when full rather than
//! dropping lines (a security log that silently loses lines under load is
//! worse than a slower one).

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber. Keep the guard alive until exit: dropping it
/// flushes what is still queued.
pub fn init(level: &str) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_new(format!("{level},sqlx=warn,hyper=warn,rustls=error"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .ok()
        .map(|_| guard)
}
