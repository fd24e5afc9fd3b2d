//! Connection idleness, measured in requests rather than bytes.
//!
//! Two clocks decide when a connection is closed:
//! - the *head deadline*: a request head must be complete within the header
//!   read timeout of its first byte (slowloris), and a new connection must
//!   start its first request within the same time;
//! - the *idle timeout*: a keep-alive connection with no request in flight
//!   and none started or finished for this long is closed.
//!
//! hyper has one setting for both (its header read timeout also runs while a
//! keep-alive connection waits for its next request), which made every
//! keep-alive connection close after 10 s and widened the race in which a
//! client reuses a connection the server is closing. So the clocks live
//! here: [`Counted`] tells the activity when bytes arrive, the service
//! wrapper tells it when requests start and finish, and a watchdog drops the
//! connection when either clock runs out. hyper's own timeout stays as a
//! backstop above both.
//!
//! Bytes are not a measure of activity on their own: hyper answers HTTP/2
//! PINGs by itself, so a client could keep a silent connection open forever
//! with a PING a minute. Over HTTP/2 (which has no heads to time) only the
//! idle clock runs.
//!
//! [`Counted`] is also the connection's own voice on HTTP/1 (`wire`): it
//! turns the bare answers hyper's parser writes (400, 414, 431) into
//! problem+json, and answers 408 when a head misses its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::wire::{Answer, Voice};

#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<Inner>,
}

/// No head is being read.
const NO_HEAD: u64 = u64::MAX;

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds since `start` of the last request start or finish.
    last: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether any request has started on this connection.
    served: AtomicBool,
    /// Whether the connection is set up (TLS handshake done) and waits for
    /// requests.
    ready: AtomicBool,
    /// Milliseconds since `start` when bytes of a head arrived on an idle
    /// connection, or `NO_HEAD`.
    head_from: AtomicU64,
    /// Wakes the watchdog when a head starts, so it can shorten its sleep.
    head_started: Notify,
    /// Responses the service has produced (hyper writes them next).
    responses: AtomicU64,
    /// Set when a head missed its deadline: the reader answers 408.
    head_late: AtomicBool,
    /// The connection's reader, woken to answer a late head.
    reader: AtomicWaker,
    /// Milliseconds since `start` of the last write of response bytes, or
    /// `NEVER`.
    last_write: AtomicU64,
    /// A write was offered and not yet flushed.
    unflushed: AtomicBool,
}

/// Nothing written yet.
const NEVER: u64 = u64::MAX;

/// How long a TLS handshake or a request head may take before, under
/// pressure, the connection counts as stalled (see [`Activity::idle`]).
pub const STALL_GRACE: Duration = Duration::from_secs(2);

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// An HTTP/1 head had begun and was not complete in time: it is owed a
    /// 408.
    Head,
    /// Nothing had begun: a keep-alive connection waited too long for its
    /// next request, or a new one never started its first. Closed silently.
    Idle,
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
                served: AtomicBool::new(false),
                ready: AtomicBool::new(false),
                head_from: AtomicU64::new(NO_HEAD),
                head_started: Notify::new(),
                responses: AtomicU64::new(0),
                head_late: AtomicBool::new(false),
                reader: AtomicWaker::new(),
                last_write: AtomicU64::new(NEVER),
                unflushed: AtomicBool::new(false),
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
        self.inner.served.store(true, Ordering::SeqCst);
        self.inner.head_from.store(NO_HEAD, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    /// Bytes arrived from the client. On a connection with no request in
    /// flight they begin a head, which starts the head deadline.
    pub fn bytes_arrived(&self) {
        if self.inner.in_flight.load(Ordering::SeqCst) == 0
            && self.inner.head_from.load(Ordering::Relaxed) == NO_HEAD
        {
            let now = self.now_ms();
            let started = self.inner.head_from.compare_exchange(
                NO_HEAD,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            if started.is_ok() {
                self.inner.head_started.notify_one();
            }
        }
    }

    /// How long the connection has had nothing to do: no request in
    /// flight, none started or finished, no response bytes written (a long
    /// download is not idle).
    pub fn idle_for(&self) -> Duration {
        if self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let wrote = match self.inner.last_write.load(Ordering::Relaxed) {
            NEVER => 0,
            w => w,
        };
        let last = self.inner.last.load(Ordering::SeqCst).max(wrote);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// The connection is set up (its TLS handshake is done): from now on
    /// it waits for requests, and its waiting counts as idle.
    pub fn ready(&self) {
        self.touch();
        self.inner.ready.store(true, Ordering::SeqCst);
    }

    /// How long the connection has been of no use, for choosing one to
    /// close under pressure: the time it has waited for its next request;
    /// for one still in its TLS handshake, or with a head still arriving,
    /// the time past `STALL_GRACE` it has taken (a handshake or a head
    /// takes milliseconds; one that takes seconds is a stall, slowloris or
    /// a silent socket). `None` while a request is in flight, or within
    /// the grace.
    pub fn idle(&self) -> Option<Duration> {
        if self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = self.now_ms();
        let stalled_since = if !self.inner.ready.load(Ordering::SeqCst) {
            Some(0)
        } else {
            let head_from = self.inner.head_from.load(Ordering::SeqCst);
            (head_from != NO_HEAD).then_some(head_from)
        };
        match stalled_since {
            Some(from) => Duration::from_millis(now.saturating_sub(from))
                .checked_sub(STALL_GRACE)
                .filter(|d| !d.is_zero()),
            None => Some(self.idle_for()),
        }
    }

    /// Response bytes were written.
    pub fn wrote(&self) {
        self.inner
            .last_write
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether a response may still be going out: bytes written within
    /// `d`, or a write the stream has not flushed yet.
    pub fn writing(&self, d: Duration) -> bool {
        let last = self.inner.last_write.load(Ordering::Relaxed);
        self.inner.unflushed.load(Ordering::SeqCst)
            || (last != NEVER && self.now_ms().saturating_sub(last) < d.as_millis() as u64)
    }

    /// Responses the service has produced so far.
    pub fn responses(&self) -> u64 {
        self.inner.responses.load(Ordering::SeqCst)
    }

    /// Whether bytes of a head have arrived that no request has taken yet.
    pub fn head_arriving(&self) -> bool {
        self.inner.head_from.load(Ordering::SeqCst) != NO_HEAD
    }

    /// Asks the reader to answer 408 and end the connection (a head missed
    /// its deadline).
    pub fn answer_late_head(&self) {
        self.inner.head_late.store(true, Ordering::SeqCst);
        self.inner.reader.wake();
    }

    /// How much longer the connection may stay open, or `None` when it
    /// should be closed now.
    fn remaining(&self, clocks: Clocks) -> Option<Duration> {
        if self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            return Some(clocks.head.min(clocks.idle));
        }
        let now = self.now_ms();
        let idle_limit = if self.inner.served.load(Ordering::SeqCst) {
            clocks.idle
        } else {
            // A new connection gets the head deadline for its first request.
            clocks.head.min(clocks.idle)
        };
        let idle_left = idle_limit.checked_sub(self.idle_for())?;
        if idle_left.is_zero() {
            return None;
        }
        let head_from = self.inner.head_from.load(Ordering::SeqCst);
        if clocks.heads && head_from != NO_HEAD {
            let reading = Duration::from_millis(now.saturating_sub(head_from));
            let head_left = clocks.head.checked_sub(reading)?;
            if head_left.is_zero() {
                return None;
            }
            return Some(idle_left.min(head_left));
        }
        Some(idle_left)
    }

    /// Resolves once either clock has run out, with the clock that did.
    pub async fn expired(&self, clocks: Clocks) -> Expiry {
        while let Some(left) = self.remaining(clocks) {
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = self.inner.head_started.notified() => {}
            }
        }
        if clocks.heads && self.head_arriving() {
            Expiry::Head
        } else {
            Expiry::Idle
        }
    }

    /// Wraps a request future so the connection counts as busy while it
    /// runs, and its response is known to be the service's own.
    pub fn track<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        let guard = self.request();
        async move {
            let out = fut.await;
            guard.0.inner.responses.fetch_add(1, Ordering::SeqCst);
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

/// The limits the watchdog applies to one connection.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// Time from a head's first byte to its last; also the time a new
    /// connection has to start its first request.
    pub head: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle: Duration,
    /// Whether heads are timed (HTTP/1; HTTP/2 has no heads to time).
    pub heads: bool,
}

/// A stream that tells an [`Activity`] when bytes arrive, and on HTTP/1
/// speaks the connection's own answers (`wire::Voice`).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    activity: Activity,
    voice: Option<Voice>,
}

impl<S> Counted<S> {
    /// A stream whose bytes are left as they are (HTTP/2).
    pub fn new(inner: S, activity: Activity) -> Self {
        Self {
            inner,
            activity,
            voice: None,
        }
    }

    /// An HTTP/1 stream: hyper's bare refusals become problem+json, and a
    /// late head is answered 408.
    pub fn http1(inner: S, activity: Activity, voice: Voice) -> Self {
        Self {
            inner,
            activity,
            voice: Some(voice),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(voice) = &mut this.voice {
            if this.activity.inner.head_late.load(Ordering::SeqCst) {
                // Answer the late head, then end the connection: hyper sees
                // a read error and closes.
                voice.speak(Answer::LateHead);
                std::task::ready!(voice.poll_drain(&mut this.inner, cx))?;
                std::task::ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
            this.activity.inner.reader.register(cx.waker());
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Only HTTP/1 has heads: over HTTP/2 a PING or WINDOW_UPDATE is
        // no head, and must not make an idle connection look busy.
        if this.voice.is_some() && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let responses = this.activity.responses();
        this.activity.inner.unflushed.store(true, Ordering::SeqCst);
        // hyper answers by itself only when its parser refused a head, so
        // only while a head no request took is arriving.
        let refusing = this.activity.head_arriving();
        if let Some(voice) = &mut this.voice {
            if voice.spoken() || (refusing && voice.hears(buf, responses)) {
                // Ours goes out in place of hyper's, which is dropped.
                std::task::ready!(voice.poll_drain(&mut this.inner, cx))?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                this.activity.wrote();
                if let Some(voice) = &mut this.voice {
                    voice.wrote(buf, responses);
                }
            }
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.voice.is_some() {
            // Heads are looked at one buffer at a time.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.voice.is_none() && self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(voice) = &mut this.voice {
            std::task::ready!(voice.poll_drain(&mut this.inner, cx))?;
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.activity.inner.unflushed.store(false, Ordering::SeqCst);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(voice) = &mut this.voice {
            std::task::ready!(voice.poll_drain(&mut this.inner, cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clocks() -> Clocks {
        Clocks {
            head: Duration::from_millis(40),
            idle: Duration::from_millis(400),
            heads: true,
        }
    }

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

    #[tokio::test]
    async fn a_new_connection_has_the_head_deadline_to_start() {
        let a = Activity::new();
        assert!(a.remaining(clocks()).unwrap() <= Duration::from_millis(40));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.remaining(clocks()), None);
    }

    #[tokio::test]
    async fn keep_alive_waits_the_idle_timeout_not_the_head_deadline() {
        let a = Activity::new();
        drop(a.request());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let left = a
            .remaining(clocks())
            .expect("still open after the head deadline");
        assert!(left > Duration::from_millis(300), "{left:?}");
    }

    #[tokio::test]
    async fn a_head_started_on_an_idle_connection_must_finish_in_time() {
        let a = Activity::new();
        drop(a.request());
        a.bytes_arrived();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.remaining(clocks()), None, "slow head closed");
        // Over HTTP/2 there are no heads: only the idle clock runs.
        let h2 = Clocks {
            heads: false,
            ..clocks()
        };
        assert!(a.remaining(h2).is_some());
        // A request that starts ends the head.
        let _g = a.request();
        assert!(a.remaining(clocks()).is_some());
    }

    #[tokio::test]
    async fn the_watchdog_wakes_when_a_head_starts() {
        let a = Activity::new();
        drop(a.request());
        let watchdog = tokio::spawn({
            let a = a.clone();
            async move { a.expired(clocks()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.bytes_arrived();
        tokio::time::timeout(Duration::from_millis(300), watchdog)
            .await
            .expect("closed at the head deadline, not the idle timeout")
            .unwrap();
    }

    #[tokio::test]
    async fn bytes_of_a_request_in_flight_start_no_head() {
        let a = Activity::new();
        let g = a.request();
        a.bytes_arrived(); // its body
        drop(g);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(a.remaining(clocks()).is_some());
    }
}
