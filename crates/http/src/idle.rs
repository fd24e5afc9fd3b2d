//! Connection idleness, measured in requests rather than bytes.
//!
//! hyper's header read timeout covers HTTP/1 request heads only: not the
//! bytes hyper-util reads to tell HTTP/1 from HTTP/2, and not HTTP/2 at all.
//! Counting bytes would not do either: hyper answers HTTP/2 PINGs by
//! itself, so a client could keep a silent connection "active" forever with
//! a PING a minute. A connection is idle when no request is in flight and
//! none has started or finished for the idle timeout; the watchdog then
//! drops it. Before its first request, a connection is idle from the moment
//! it was accepted.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds since `start` of the last request start or finish.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

/// Held while a request is being handled; dropping it (also when the
/// request is cancelled) marks the request finished.
#[derive(Debug)]
pub struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                last: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.inner.last.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Marks a request started; the guard marks it finished.
    pub fn request(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    /// How long the connection has had nothing to do.
    pub fn idle_for(&self) -> Duration {
        if self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = self.inner.last.load(Ordering::SeqCst);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// Resolves once the connection has been idle for `limit`.
    pub async fn idle_beyond(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }

    /// Wraps a request future so the connection counts as busy while it runs.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        let guard = self.request();
        async move {
            let out = fut.await;
            drop(guard);
            out
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_while_a_request_runs_and_idle_after() {
        let a = Activity::new();
        let guard = a.request();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(guard);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(a.idle_for() >= Duration::from_millis(25));
    }
}
