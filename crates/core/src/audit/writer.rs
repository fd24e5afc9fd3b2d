//! The one writer: a task that owns its node's chain head, takes events
//! from one bounded queue, and commits them in batches (group commit).

use std::sync::Arc;
use std::time::Duration;

use rampart_crypto::audit::{
    frontier_indexes, leaf_hash, locate, AuditKeys, Frontier, Link, GENESIS,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{origin, AuditStore, Category, Chained, CheckpointRow, Event, Severity, Witness};
use crate::{Clock, Error, StoreError, Timestamp};

/// Events waiting for the writer. Past this, recording waits for room.
pub const QUEUE: usize = 16_384;
/// Most events in one commit.
const BATCH: usize = 4_096;
/// How long a batch nobody waits for gathers more events before its
/// commit: a read's event is durable within this and one commit.
pub const LINGER: Duration = Duration::from_millis(5);
/// A checkpoint this often while events flow (and at every flush and
/// stop). More often would grow the witness and `audit_checkpoints` by a
/// line a second on a busy server; the issue asks for ten seconds at most.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
/// How often the writer looks for pending events and due checkpoints.
const TICK: Duration = Duration::from_secs(1);
/// And at least this often when idle, so a gap in logging shows.
pub const HEARTBEAT: Duration = Duration::from_secs(300);

/// What the writing process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMode {
    /// `rampart serve`: records its start and stop, says when the last run
    /// ended uncleanly, and chains events of older releases once.
    Server,
    /// A command (`rampart keys rotate`, …): writes its events to its own
    /// chain (`<node>-cli`), and takes turns with other commands on it.
    Command,
}

enum Msg {
    Event(Box<Event>, Option<oneshot::Sender<u64>>),
    /// Events were committed with writes (`audit_pending`): chain them.
    Pending,
    /// Answered once everything before it is committed and checkpointed.
    Flush(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// What the writer has done, for metrics.
#[derive(Debug)]
pub struct AuditStats {
    /// The newest checkpoint, for whoever passes checkpoints on (a remote
    /// witness).
    pub checkpoints: tokio::sync::watch::Sender<Option<CheckpointRow>>,
    pub written: std::sync::atomic::AtomicU64,
    /// Size and time (Unix ms) of the newest checkpoint.
    pub checkpoint_size: std::sync::atomic::AtomicU64,
    pub checkpoint_at_ms: std::sync::atomic::AtomicI64,
    /// (action, outcome) → events written.
    pub by_action: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Every committed batch, in order, for whoever watches the trail as
    /// it is written (detection). A watcher that falls behind is told how
    /// many batches it missed and reads them from the store.
    pub committed: tokio::sync::broadcast::Sender<Arc<[super::Chained]>>,
}

/// Committed batches a watcher may fall behind by before it must read
/// from the store.
pub const WATCH_BATCHES: usize = 1_024;

impl Default for AuditStats {
    fn default() -> Self {
        Self {
            checkpoints: tokio::sync::watch::channel(None).0,
            written: Default::default(),
            checkpoint_size: Default::default(),
            checkpoint_at_ms: Default::default(),
            by_action: Default::default(),
            committed: tokio::sync::broadcast::channel(WATCH_BATCHES).0,
        }
    }
}

impl AuditStats {
    fn note(&self, events: &[super::Chained]) {
        use std::sync::atomic::Ordering;
        self.written
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut m = self.by_action.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            // Only actions the trail knows, so a label set stays small.
            if super::known_action(&e.action) {
                *m.entry((e.action.clone(), e.outcome.clone())).or_default() += 1;
            }
        }
    }
}

/// The handle every part of Rampart records through. Cloning is cheap.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    node: Arc<str>,
    stats: Arc<AuditStats>,
    keys: Arc<AuditKeys>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("node", &self.node).finish()
    }
}

impl Audit {
    /// Loads the chain head of `node` and starts its writer on the current
    /// runtime.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        keys: Arc<AuditKeys>,
        node: &str,
        mode: WriterMode,
        witness: Option<Witness>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Audit, JoinHandle<()>), Error> {
        if !super::node_name_ok(node) {
            return Err(Error::Internal(format!(
                "`{node}` cannot name an audit chain"
            )));
        }
        let node = match mode {
            WriterMode::Server => node.to_owned(),
            WriterMode::Command => format!("{node}-cli"),
        };
        let mut w = Writer {
            store,
            keys,
            origin: origin(&node),
            node: node.clone(),
            clock,
            witness,
            next: 0,
            link: GENESIS,
            frontier: Frontier::default(),
            last_checkpoint: None,
            witness_failing: false,
            mode,
            stats: Arc::default(),
            signed: std::time::Instant::now(),
        };
        w.load().await?;
        if mode == WriterMode::Server {
            w.start_server().await?;
        }
        // Events of writes acknowledged before a crash.
        w.drain_pending().await;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = w.stats.clone();
        let keys = w.keys.clone();
        let task = tokio::spawn(w.run(rx));
        Ok((
            Audit {
                tx,
                node: node.into(),
                stats,
                keys,
            },
            task,
        ))
    }

    /// The chain this handle writes to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// An event to commit with the write it is about (`audit_pending`).
    pub fn pending(&self, event: &Event) -> super::PendingEvent {
        super::PendingEvent::of(&self.node, event, &self.keys)
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Events waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Hands an event to the writer, waiting while the queue is full; it
    /// is durable within one commit (a few milliseconds).
    pub async fn record(&self, event: Event) {
        if self
            .tx
            .send(Msg::Event(Box::new(event), None))
            .await
            .is_err()
        {
            tracing::error!("the audit writer is gone; an event was not recorded");
        }
    }

    /// Records an event and waits until it is committed; its sequence
    /// number.
    pub async fn record_durable(&self, event: Event) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Event(Box::new(event), Some(tx)))
            .await
            .map_err(|_| Error::Internal("the audit writer is gone".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the audit writer is gone".into()))
    }

    /// Says that events were committed with writes, for the writer to chain
    /// soon. Never waits: when the queue is full the writer's next tick
    /// (within a second) chains them.
    pub fn poke(&self) {
        let _ = self.tx.try_send(Msg::Pending);
    }

    /// Waits until every event handed over so far is committed and covered
    /// by a signed checkpoint.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Records the stop (server mode), checkpoints and ends the writer.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The actions the trail writes about itself.
pub const STARTED: &str = "audit.started";
pub const STOPPED: &str = "audit.stopped";
pub const UNCLEAN_STOP: &str = "audit.unclean_stop";
pub const IMPORTED: &str = "audit.imported";
pub const WITNESS_FAILED: &str = "audit.witness_failed";
/// A verification's result (`rampart audit verify`, and the server's own).
pub const VERIFIED: &str = "audit.verified";
/// The actions above.
/// A pending event whose MAC did not hold (kept as this note).
pub const PENDING_UNREADABLE: &str = "audit.pending_unreadable";
/// Retention removed a range of old events (`retention`).
pub const RETIRED: &str = "audit.retired";
/// Retention refused to remove events that do not verify.
pub const RETENTION_REFUSED: &str = "audit.retention_refused";
pub const OWN_ACTIONS: [&str; 9] = [
    RETIRED,
    RETENTION_REFUSED,
    STARTED,
    STOPPED,
    UNCLEAN_STOP,
    IMPORTED,
    WITNESS_FAILED,
    VERIFIED,
    PENDING_UNREADABLE,
];
/// Pending events chained per commit.
const PENDING_BATCH: u32 = 2_048;

struct Writer {
    store: Arc<dyn AuditStore>,
    keys: Arc<AuditKeys>,
    node: String,
    origin: String,
    clock: Arc<dyn Clock>,
    witness: Option<Witness>,
    /// The next sequence number (the tree's size).
    next: u64,
    link: Link,
    frontier: Frontier,
    /// Size and time of the newest checkpoint.
    last_checkpoint: Option<(u64, Timestamp)>,
    witness_failing: bool,
    mode: WriterMode,
    stats: Arc<AuditStats>,
    /// When the newest checkpoint was signed, by the machine's clock (the
    /// cadence is the writer's own business, not the domain's time).
    signed: std::time::Instant,
}

/// What a batch becomes once chained, before it is committed.
struct Chain {
    events: Vec<Chained>,
    link: Link,
    frontier: Frontier,
}

fn backend(e: StoreError) -> Error {
    Error::Internal(format!("audit trail: {e}"))
}

impl Writer {
    /// Reads the head of the chain and the right edge of its tree.
    async fn load(&mut self) -> Result<(), Error> {
        let head = self.store.audit_head(&self.node).await.map_err(backend)?;
        match head {
            None => {
                self.next = 0;
                self.link = GENESIS;
                self.frontier = Frontier::default();
            }
            Some(h) => {
                // Far beyond any real chain: a row written to stop the
                // server (the tree's index arithmetic would overflow).
                if h.seq >= 1 << 48 {
                    return Err(Error::Internal(format!(
                        "audit trail: chain {} claims {} events; run `rampart audit verify`",
                        self.node, h.seq
                    )));
                }
                let size = h.seq + 1;
                let indexes = frontier_indexes(size);
                let found =
                    super::retention::stored_hashes(self.store.as_ref(), &self.node, &indexes)
                        .await?;
                let mut stored = Vec::with_capacity(indexes.len());
                for i in indexes {
                    let h = found.get(&i).ok_or_else(|| {
                        Error::Internal(format!(
                            "audit trail: chain {} lacks tree hashes near event {}; run `rampart audit verify`",
                            self.node,
                            locate(i).0
                        ))
                    })?;
                    stored.push((i, *h));
                }
                self.frontier = Frontier::from_stored(size, &stored)
                    .map_err(|e| Error::Internal(format!("audit trail: {e}")))?;
                self.next = size;
                self.link = h.link;
            }
        }
        self.last_checkpoint = self
            .store
            .latest_checkpoint(&self.node)
            .await
            .map_err(backend)?
            .map(|c| (c.size, c.at));
        Ok(())
    }

    async fn start_server(&mut self) -> Result<(), Error> {
        // The events of a release before the trail are chained once: by the
        // first writer of an empty chain, in the transaction that drops
        // their tables (so nothing written there later is ever chained).
        if self.next == 0 {
            let legacy = self.store.legacy_events().await.map_err(backend)?;
            let n = legacy.len();
            let mut all = legacy;
            if n > 0 {
                all.push(
                    Event::new(
                        self.clock.now(),
                        IMPORTED,
                        Category::Process,
                        super::SUCCESS,
                    )
                    .reason(Some("events of an earlier release, chained once"))
                    .field("count", n as u64),
                );
            }
            let chain = self.chain(&all);
            self.store
                .import_legacy(&chain.events)
                .await
                .map_err(backend)?;
            self.stats.note(&chain.events);
            self.adopt(chain);
            if n > 0 {
                tracing::info!(events = n, "chained the events of an earlier release");
            }
        }
        let head = self.store.audit_head(&self.node).await.map_err(backend)?;
        let mut first = Vec::new();
        if let Some(h) = head.filter(|h| h.action != STOPPED && h.action != IMPORTED) {
            // (An import is the chain's first commit, never an unclean stop.)
            tracing::warn!(
                last_seq = h.seq,
                "the last run did not stop cleanly; events after the last durable one may be missing"
            );
            first.push(
                Event::new(
                    self.clock.now(),
                    UNCLEAN_STOP,
                    Category::Process,
                    super::UNKNOWN,
                )
                .severity(Severity::High)
                .reason(Some(
                    "the previous run ended without stopping the audit trail",
                ))
                .field("audit.last_seq", h.seq)
                .field("audit.last_at", h.at.to_rfc3339()),
            );
        }
        first.push(Event::new(
            self.clock.now(),
            STARTED,
            Category::Process,
            super::SUCCESS,
        ));
        self.commit(first).await;
        self.checkpoint().await;
        Ok(())
    }

    /// Chains `events` after the head, without moving the head (a commit
    /// that fails is chained again from the same place).
    fn chain(&self, events: &[Event]) -> Chain {
        let mut link = self.link;
        let mut frontier = self.frontier.clone();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let seq = frontier.size();
            let mut c = Chained {
                node: self.node.clone(),
                seq,
                at: e.at,
                action: e.action.clone(),
                category: e.category.as_str().to_owned(),
                outcome: e.outcome.clone(),
                severity: e.severity.number(),
                reason: e.reason.clone(),
                user_id: e.user_id.clone(),
                source_ip: e.source_ip.clone(),
                user_agent: e.user_agent.clone(),
                request_id: e.request_id.clone(),
                rule: e.rule.clone(),
                object: e.object.clone(),
                fields: serde_json::to_string(&e.fields).unwrap_or_else(|_| "{}".into()),
                link: GENESIS,
                tree: Vec::new(),
                ip_key: None,
            };
            let bytes = c.canonical();
            c.link = self.keys.link(&link, &bytes);
            c.tree = frontier.append(leaf_hash(&bytes));
            link = c.link;
            out.push(c);
        }
        Chain {
            events: out,
            link,
            frontier,
        }
    }

    fn adopt(&mut self, c: Chain) {
        self.link = c.link;
        self.next = c.frontier.size();
        self.frontier = c.frontier;
    }

    /// Commits `events`, retrying until the database takes them: the queue
    /// is bounded, so meanwhile recorders wait rather than lose events.
    async fn commit(&mut self, events: Vec<Event>) -> Option<u64> {
        self.commit_consuming(events, &[]).await
    }

    /// Commits `events`, deleting the pending events they came from
    /// (`consumed`) in the same transaction. When those are gone (another
    /// writer chained them), nothing is written and `None` returned.
    async fn commit_consuming(&mut self, events: Vec<Event>, consumed: &[i64]) -> Option<u64> {
        if events.is_empty() {
            return None;
        }
        let mut tries: u64 = 0;
        loop {
            let chain = self.chain(&events);
            match self
                .store
                .append_audit(&self.node, &chain.events, consumed)
                .await
            {
                Ok(()) => {
                    let first = chain.events.first().map(|e| e.seq);
                    self.stats.note(&chain.events);
                    let Chain {
                        events,
                        link,
                        frontier,
                    } = chain;
                    if self.stats.committed.receiver_count() > 0 {
                        let _ = self.stats.committed.send(events.into());
                    }
                    self.adopt(Chain {
                        events: Vec::new(),
                        link,
                        frontier,
                    });
                    return first;
                }
                Err(StoreError::Conflict) => {
                    // Another writer of this chain (a second command)
                    // appended first: continue after its events. A server
                    // shares its chain with nobody: say so.
                    tries += 1;
                    if self.mode == WriterMode::Server {
                        tracing::error!(chain = %self.node, "another process appended to this node's chain: two nodes share a name, or the trail was written outside Rampart");
                    }
                    tokio::time::sleep(Duration::from_millis(10 * tries.min(100))).await;
                    if let Err(e) = self.load().await {
                        tracing::error!(error = %e, "audit chain head cannot be read; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    if !consumed.is_empty() {
                        return None;
                    }
                }
                Err(e) => {
                    tries += 1;
                    tracing::error!(error = %e, pending = events.len(), "audit events not written yet; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * tries.min(40))).await;
                }
            }
        }
    }

    /// Chains the events committed with writes, oldest first, until none
    /// is left.
    async fn drain_pending(&mut self) {
        loop {
            let rows = match self.store.pending_events(&self.node, PENDING_BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "pending audit events cannot be read yet");
                    return;
                }
            };
            if rows.is_empty() {
                return;
            }
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let events: Vec<Event> = rows
                .into_iter()
                .map(|(id, body)| {
                    super::PendingEvent::open(&self.node, &body, &self.keys).unwrap_or_else(|| {
                        // Not written by Rampart (or altered): kept as this
                        // note, never as the event it claims to be.
                        Event::new(
                            self.clock.now(),
                            PENDING_UNREADABLE,
                            Category::Process,
                            super::FAILURE,
                        )
                        .severity(Severity::Critical)
                        .reason(Some(
                            "a pending event's MAC does not hold: it was written or altered outside Rampart",
                        ))
                        .field("audit.pending_id", id)
                    })
                })
                .collect();
            self.commit_consuming(events, &ids).await;
        }
    }

    /// Signs and stores a checkpoint of the tree as it is, and hands it to
    /// the witness.
    async fn checkpoint(&mut self) {
        let size = self.frontier.size();
        if size == 0 {
            return;
        }
        let now = self.clock.now();
        let note =
            match self
                .keys
                .sign_checkpoint(&self.origin, size, &self.frontier.root(), now.millis())
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign an audit checkpoint");
                    return;
                }
            };
        let row = CheckpointRow {
            node: self.node.clone(),
            size,
            at: now,
            note,
        };
        let mut tries: u64 = 0;
        loop {
            match self.store.insert_checkpoint(&row).await {
                Ok(()) | Err(StoreError::Conflict) => break,
                Err(e) => {
                    tries += 1;
                    tracing::error!(error = %e, "audit checkpoint not written yet; retrying");
                    if tries > 20 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
            }
        }
        self.last_checkpoint = Some((size, now));
        self.signed = std::time::Instant::now();
        self.stats
            .checkpoint_size
            .store(size, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .checkpoint_at_ms
            .store(now.millis(), std::sync::atomic::Ordering::Relaxed);
        self.stats.checkpoints.send_replace(Some(row.clone()));
        if let Some(w) = &self.witness {
            match w.append(&row).await {
                Ok(()) => self.witness_failing = false,
                Err(e) => {
                    tracing::error!(error = %e, witness = %w.path(&self.node).display(), "the witness did not take a checkpoint");
                    if !self.witness_failing {
                        self.witness_failing = true;
                        let event =
                            Event::new(now, WITNESS_FAILED, Category::Process, super::FAILURE)
                                .severity(Severity::High)
                                .reason(Some(
                                    "a checkpoint could not be appended to the witness file",
                                ));
                        self.commit(vec![event]).await;
                    }
                }
            }
        }
    }

    /// On the tick: a checkpoint when events came and `CHECKPOINT_EVERY`
    /// has passed, or the heartbeat is due.
    async fn checkpoint_if_due(&mut self) {
        let size = self.frontier.size();
        match self.last_checkpoint {
            Some((s, _)) if s != size => {
                if self.signed.elapsed() >= CHECKPOINT_EVERY {
                    self.checkpoint().await
                }
            }
            _ => self.checkpoint_if_new().await,
        }
    }

    /// At a flush or stop: a checkpoint of whatever is not covered yet (and
    /// the heartbeat when due).
    async fn checkpoint_if_new(&mut self) {
        let size = self.frontier.size();
        match self.last_checkpoint {
            Some((s, _)) if s != size => self.checkpoint().await,
            None if size > 0 => self.checkpoint().await,
            Some((_, at))
                if self.clock.now().millis() - at.millis() >= HEARTBEAT.as_millis() as i64 =>
            {
                self.checkpoint().await
            }
            _ => {}
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                m = rx.recv() => m,
                _ = tick.tick() => {
                    self.drain_pending().await;
                    self.checkpoint_if_due().await;
                    continue;
                }
            };
            let Some(first) = first else {
                // Every handle is gone: end as a stop would.
                self.finish().await;
                return;
            };
            let mut events = Vec::new();
            let mut acks: Vec<(usize, oneshot::Sender<u64>)> = Vec::new();
            let mut flushes = Vec::new();
            let mut stop = None;
            let mut pending = false;
            // Whether someone waits for this batch (an acknowledgement, a
            // flush, a stop): then it is committed without lingering.
            let urgent = std::sync::atomic::AtomicBool::new(false);
            let mut take =
                |m: Msg, events: &mut Vec<Event>, acks: &mut Vec<(usize, oneshot::Sender<u64>)>| {
                    match m {
                        Msg::Event(e, ack) => {
                            if let Some(a) = ack {
                                acks.push((events.len(), a));
                                urgent.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            events.push(*e);
                        }
                        Msg::Pending => pending = true,
                        Msg::Flush(tx) => {
                            flushes.push(tx);
                            urgent.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        Msg::Stop(tx) => {
                            stop = Some(tx);
                            urgent.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                };
            take(first, &mut events, &mut acks);
            // Group commit: whatever queued meanwhile joins this batch; and
            // when nobody waits, what arrives within LINGER too, so a
            // stream of reads shares commits (and fsyncs) instead of paying
            // one each.
            let linger_until = tokio::time::Instant::now() + LINGER;
            while events.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => take(m, &mut events, &mut acks),
                    Err(_) if urgent.load(std::sync::atomic::Ordering::Relaxed) => break,
                    Err(_) => match tokio::time::timeout_at(linger_until, rx.recv()).await {
                        Ok(Some(m)) => take(m, &mut events, &mut acks),
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            if let Some(first_seq) = self.commit(events).await {
                for (i, a) in acks {
                    let _ = a.send(first_seq + i as u64);
                }
            }
            if pending || !flushes.is_empty() || stop.is_some() {
                self.drain_pending().await;
            }
            if !flushes.is_empty() {
                self.checkpoint_if_new().await;
                for f in flushes {
                    let _ = f.send(());
                }
            }
            if let Some(s) = stop {
                // Events still queued behind the stop are written first.
                let mut rest = Vec::new();
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Event(e, ack) = m {
                        rest.push((*e, ack));
                    }
                }
                let (events, acks): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
                if let Some(first_seq) = self.commit(events).await {
                    for (i, a) in acks.into_iter().enumerate() {
                        if let Some(a) = a {
                            let _ = a.send(first_seq + i as u64);
                        }
                    }
                }
                self.finish().await;
                let _ = s.send(());
                return;
            }
        }
    }

    async fn finish(&mut self) {
        self.drain_pending().await;
        if self.mode == WriterMode::Command {
            self.checkpoint_if_new().await;
            return;
        }
        let e = Event::new(self.clock.now(), STOPPED, Category::Process, super::SUCCESS);
        self.commit(vec![e]).await;
        self.checkpoint().await;
    }
}
