//! The open connections of one listener, adapted from `rampart_guard::conn`
//! (which decides; this module reaches the connections): admission at
//! accept, the per-address count behind trusted proxies, the closing of
//! idle connections under pressure, of connections whose requests are all
//! refused, and of everything at shutdown. Each connection's task drives
//! it with [`drive`], which turns a close request into hyper's graceful
//! shutdown (the response in flight finishes; HTTP/2 gets GOAWAY).

use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use rampart_guard::conn::{ConnId, ConnPolicy, ConnTable, Idle, Refusal, REFUSALS_BEFORE_CLOSE};
use tokio::sync::{watch, Notify};

use crate::idle::{Activity, Clocks, Expiry};

/// How long a late head's 408 may take to go out before the connection is
/// dropped.
const LATE_ANSWER_GRACE: Duration = Duration::from_secs(1);
/// How often the table looks for idle connections to close under pressure.
const REAP_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
struct Tracked {
    activity: Activity,
    close: Arc<Notify>,
}

impl Idle for Tracked {
    fn idle_for(&self) -> Option<Duration> {
        self.activity.idle()
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Connections {
    table: Mutex<ConnTable<Tracked>>,
    emptied: Notify,
}

impl Connections {
    pub fn new(policy: ConnPolicy) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(ConnTable::new(policy)),
            emptied: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, ConnTable<Tracked>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `client` (`None` for a trusted proxy, whose
    /// connections are counted per request), which may hold `share`
    /// connections (at most the policy's). When the server is full, the
    /// connection idle the longest is closed to make room.
    pub fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        share: usize,
        activity: &Activity,
    ) -> Result<ConnHandle, Refusal> {
        let close = Arc::new(Notify::new());
        let tracked = Tracked {
            activity: activity.clone(),
            close: close.clone(),
        };
        let admitted = self.table().admit(client, share, tracked)?;
        if let Some(victim) = admitted.evict {
            victim.close.notify_one();
        }
        Ok(ConnHandle {
            id: admitted.id,
            conns: self.clone(),
            close,
            refusals: AtomicU32::new(0),
        })
    }

    /// Connections open (not counting those being closed).
    pub fn open(&self) -> usize {
        self.table().open()
    }

    /// Closes the connections idle past the timeout for the present
    /// occupancy, every `REAP_EVERY`, until `shutdown`.
    pub async fn reap(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REAP_EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let due = self.table().reap();
            if !due.is_empty() {
                tracing::debug!(closed = due.len(), "idle connections closed under pressure");
            }
            for t in due {
                t.close.notify_one();
            }
        }
    }

    /// Resolves once every connection has ended.
    pub async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.table().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnHandle {
    id: ConnId,
    conns: Arc<Connections>,
    close: Arc<Notify>,
    refusals: AtomicU32,
}

impl ConnHandle {
    /// Counts this connection for `client` from now on (a trusted proxy's
    /// connection, carrying a request for the client it names). `false`
    /// when that client already holds its share.
    pub fn attribute(&self, client: IpAddr) -> bool {
        self.conns.table().attribute(self.id, client)
    }

    /// Asks the connection's task to close it once the response in flight
    /// is out; from now on it no longer counts toward `max_connections`.
    pub fn close(&self) {
        self.conns.table().mark_closing(self.id);
        self.close.notify_one();
    }

    /// What the connection's task waits on to close it.
    pub fn closer(&self) -> &Notify {
        &self.close
    }

    /// Notes a response's status: `true` when it is the last of
    /// `REFUSALS_BEFORE_CLOSE` refusals (429, 403) in a row, and the
    /// connection is to be closed after it.
    pub fn answered(&self, status: http::StatusCode) -> bool {
        if status == http::StatusCode::TOO_MANY_REQUESTS || status == http::StatusCode::FORBIDDEN {
            self.refusals.fetch_add(1, Ordering::Relaxed) + 1 >= REFUSALS_BEFORE_CLOSE
        } else {
            self.refusals.store(0, Ordering::Relaxed);
            false
        }
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let empty = {
            let mut t = self.conns.table();
            t.remove(self.id);
            t.is_empty()
        };
        if empty {
            self.conns.emptied.notify_waiters();
        }
    }
}

/// Drives a connection until it ends: closes it when either of its clocks
/// runs out (answering a late HTTP/1 head 408 first), and shuts it down
/// gracefully, within `grace`, when `close` is notified or the server
/// stops.
pub async fn drive<C: GracefulConnection>(
    conn: C,
    close: &Notify,
    activity: &Activity,
    clocks: Clocks,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        // Only polled while closing.
        let until = closing.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            _ = conn.as_mut() => return,
            why = activity.expired(clocks), if closing.is_none() => {
                // A 408 cannot go out in the middle of a response still
                // being written (a pipelined head behind a slow download):
                // then the connection is only closed.
                if why != Expiry::Head || activity.writing(LATE_ANSWER_GRACE) {
                    return;
                }
                activity.answer_late_head();
                closing = Some(tokio::time::Instant::now() + LATE_ANSWER_GRACE);
            }
            _ = close.notified(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + grace);
            }
            _ = shutdown.wait_for(|s| *s), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + grace);
            }
            _ = tokio::time::sleep_until(until), if closing.is_some() => return,
        }
    }
}
