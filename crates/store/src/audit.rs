//! The audit trail's SQL: the only code that writes `audit_events` and
//! `audit_checkpoints` (and empties the tables of older releases once).
//! Events are only ever inserted; nothing here updates or deletes one.

use async_trait::async_trait;
use rampart_core::audit::{
    net_keys, AuditStore, Chained, CheckpointRow, Event, EventQuery, PendingEvent, MAX_ACTIONS,
};
use rampart_core::data::{DataEventFilter, StoredDataEvent};
use rampart_core::events::SecurityEvent;
use rampart_core::{StoreError, Timestamp};
use rampart_crypto::audit::{Hash, HASH_SIZE};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{backend, SqlStore};

const COLUMNS: &str = "node, seq, at, action, category, outcome, severity, reason, user_id, \
                       source_ip, user_agent, request_id, rule, object, fields, link, tree";
/// What a read of events selects: `COLUMNS` and the derived `ip_key`.
const READ: &str = "node, seq, at, action, category, outcome, severity, reason, user_id, \
                    source_ip, user_agent, request_id, rule, object, fields, link, tree, ip_key";
/// The columns written: `COLUMNS` and the derived `ip_key`.
const PER_ROW: usize = 18;
/// Rows per INSERT statement (17 bound values each).
const ROWS_PER_INSERT: usize = 64;

fn get(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn seq_i64(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit sequence number"))
}

fn tree_hex(tree: &[Hash]) -> String {
    let mut s = String::with_capacity(tree.len() * HASH_SIZE * 2);
    for h in tree {
        s.push_str(&hex::encode(h.0));
    }
    s
}

fn tree_from(hexed: &str) -> Result<Vec<Hash>, StoreError> {
    let bytes = hex::decode(hexed).map_err(|_| StoreError::Corrupt("audit tree hashes"))?;
    if bytes.len() % HASH_SIZE != 0 {
        return Err(StoreError::Corrupt("audit tree hashes"));
    }
    Ok(bytes
        .chunks(HASH_SIZE)
        .map(|c| {
            let mut h = [0u8; HASH_SIZE];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect())
}

fn chained_from(row: &AnyRow) -> Result<Chained, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(get)?;
    let severity: i64 = row.try_get("severity").map_err(get)?;
    let link: String = row.try_get("link").map_err(get)?;
    let tree: String = row.try_get("tree").map_err(get)?;
    // A link that is not 32 bytes of hex reads as all zeros: verification
    // then names the event, instead of the read failing.
    let mut l = [0u8; 32];
    if let Ok(b) = hex::decode(&link) {
        if b.len() == 32 {
            l.copy_from_slice(&b);
        }
    }
    Ok(Chained {
        node: row.try_get("node").map_err(get)?,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("audit sequence number"))?,
        at: Timestamp(row.try_get("at").map_err(get)?),
        action: row.try_get("action").map_err(get)?,
        category: row.try_get("category").map_err(get)?,
        outcome: row.try_get("outcome").map_err(get)?,
        severity: u8::try_from(severity).unwrap_or(u8::MAX),
        reason: row.try_get("reason").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        source_ip: row.try_get("source_ip").map_err(get)?,
        user_agent: row.try_get("user_agent").map_err(get)?,
        request_id: row.try_get("request_id").map_err(get)?,
        rule: row.try_get("rule").map_err(get)?,
        object: row.try_get("object").map_err(get)?,
        fields: row.try_get("fields").map_err(get)?,
        link: l,
        tree: tree_from(&tree).unwrap_or_default(),
        ip_key: row.try_get("ip_key").map_err(get)?,
    })
}

/// `%text%` for LIKE, with the wildcards in `text` taken literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A value bound to a search.
enum Arg {
    Text(String),
    Int(i64),
}

/// The conditions of an [`EventQuery`]: only the filters it gives, each a
/// fixed fragment with its values bound (`$1`, `$2`, … in order), so the
/// database can use the index that fits.
fn filter_sql(q: &EventQuery) -> Result<(String, Vec<Arg>), StoreError> {
    if q.actions.len() > MAX_ACTIONS {
        return Err(StoreError::Backend(format!(
            "at most {MAX_ACTIONS} actions per search"
        )));
    }
    let mut sql = String::from("1 = 1");
    let mut args: Vec<Arg> = Vec::new();
    let push = |sql: &mut String, args: &mut Vec<Arg>, fragment: &str, values: Vec<Arg>| {
        let mut f = fragment.to_owned();
        for (i, v) in values.into_iter().enumerate() {
            args.push(v);
            f = f.replacen(
                &format!("${{{i}}}"),
                &format!("${}", args.len()),
                usize::MAX,
            );
        }
        sql.push_str(" AND ");
        sql.push_str(&f);
    };
    if !q.actions.is_empty() {
        let marks: Vec<String> = (0..q.actions.len()).map(|i| format!("${{{i}}}")).collect();
        push(
            &mut sql,
            &mut args,
            &format!("action IN ({})", marks.join(", ")),
            q.actions.iter().cloned().map(Arg::Text).collect(),
        );
    }
    // A fixed fragment: the drill mark as the fields' JSON holds it, a
    // key followed by its colon. Field names are the code's own, and a
    // value holding the same text is serialised with its quotes escaped
    // (`\"labels.drill\":`), so no input can look like the mark.
    match q.drills {
        Some(true) => push(
            &mut sql,
            &mut args,
            "fields LIKE '%\"labels.drill\":%'",
            vec![],
        ),
        Some(false) => push(
            &mut sql,
            &mut args,
            "fields NOT LIKE '%\"labels.drill\":%'",
            vec![],
        ),
        None => {}
    }
    match q.data_access {
        Some(true) => push(&mut sql, &mut args, "action LIKE 'data.%'", vec![]),
        Some(false) => push(&mut sql, &mut args, "action NOT LIKE 'data.%'", vec![]),
        None => {}
    }
    // Equality on one column each: an index on it serves.
    for (fragment, value) in [
        ("category = ${0}", q.category.map(|c| c.as_str().to_owned())),
        ("outcome = ${0}", q.outcome.clone()),
        ("user_id = ${0}", q.user_id.clone()),
        ("rule = ${0}", q.rule.clone()),
        ("object = ${0}", q.object.clone()),
    ] {
        if let Some(v) = value {
            push(&mut sql, &mut args, fragment, vec![Arg::Text(v)]);
        }
    }
    if let Some(n) = &q.source_net {
        let (lo, hi) = net_keys(n);
        push(
            &mut sql,
            &mut args,
            "ip_key >= ${0} AND ip_key <= ${1}",
            vec![Arg::Text(lo), Arg::Text(hi)],
        );
    }
    if let Some(sev) = q.min_severity {
        push(
            &mut sql,
            &mut args,
            "severity >= ${0}",
            vec![Arg::Int(i64::from(sev.number()))],
        );
    }
    if let Some(t) = &q.text {
        push(
            &mut sql,
            &mut args,
            "(action LIKE ${0} ESCAPE '\\' OR reason LIKE ${0} ESCAPE '\\' \
             OR rule LIKE ${0} ESCAPE '\\' OR object LIKE ${0} ESCAPE '\\' \
             OR user_id LIKE ${0} ESCAPE '\\' OR user_agent LIKE ${0} ESCAPE '\\' \
             OR request_id LIKE ${0} ESCAPE '\\' OR fields LIKE ${0} ESCAPE '\\')",
            vec![Arg::Text(like_pattern(t))],
        );
    }
    if let Some(t) = q.since {
        push(
            &mut sql,
            &mut args,
            "at >= ${0}",
            vec![Arg::Int(t.millis())],
        );
    }
    if let Some(t) = q.until {
        push(&mut sql, &mut args, "at < ${0}", vec![Arg::Int(t.millis())]);
    }
    if let Some((at, node, seq)) = &q.cursor {
        push(
            &mut sql,
            &mut args,
            "(at < ${0} OR (at = ${0} AND (node < ${1} OR (node = ${1} AND seq < ${2}))))",
            vec![
                Arg::Int(at.millis()),
                Arg::Text(node.clone()),
                Arg::Int(seq_i64(*seq)?),
            ],
        );
    }
    Ok((sql, args))
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        query = match a {
            Arg::Text(t) => query.bind(t),
            Arg::Int(i) => query.bind(i),
        };
    }
    query
}

/// `INSERT … VALUES ($1, …, $17), ($18, …)` for `rows` rows: a fixed
/// fragment repeated, every value bound.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_events ({COLUMNS}, ip_key) VALUES {}",
        crate::sql::placeholders(rows, PER_ROW)
    )
}

impl SqlStore {
    async fn insert_chained<'c, E>(&self, conn: E, events: &[Chained]) -> Result<(), StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let sql = insert_sql(events.len());
        let mut q = sqlx::query(&sql);
        for e in events {
            q = q
                .bind(e.node.as_str())
                .bind(seq_i64(e.seq)?)
                .bind(e.at.millis())
                .bind(e.action.as_str())
                .bind(e.category.as_str())
                .bind(e.outcome.as_str())
                .bind(i64::from(e.severity))
                .bind(e.reason.as_deref())
                .bind(e.user_id.as_deref())
                .bind(e.source_ip.as_deref())
                .bind(e.user_agent.as_deref())
                .bind(e.request_id.as_deref())
                .bind(e.rule.as_deref())
                .bind(e.object.as_deref())
                .bind(e.fields.as_str())
                .bind(hex::encode(e.link))
                .bind(tree_hex(&e.tree))
                .bind(ip_key_of(e));
        }
        q.execute(conn).await.map_err(backend)?;
        Ok(())
    }

    async fn append_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        events: &[Chained],
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            self.insert_chained(&mut **tx, chunk).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_head(&self, node: &str) -> Result<Option<Chained>, StoreError> {
        sqlx::query(&format!(
            "SELECT {READ} FROM audit_events WHERE node = $1 ORDER BY seq DESC LIMIT 1"
        ))
        .bind(node)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(chained_from)
        .transpose()
    }

    async fn audit_trees(
        &self,
        node: &str,
        seqs: &[u64],
    ) -> Result<Vec<(u64, Vec<Hash>)>, StoreError> {
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let row = sqlx::query("SELECT tree FROM audit_events WHERE node = $1 AND seq = $2")
                .bind(node)
                .bind(seq_i64(*seq)?)
                .fetch_optional(self.pool())
                .await
                .map_err(backend)?;
            if let Some(r) = row {
                let t: String = r.try_get("tree").map_err(get)?;
                out.push((*seq, tree_from(&t)?));
            }
        }
        Ok(out)
    }

    async fn append_audit(
        &self,
        node: &str,
        events: &[Chained],
        consumed: &[i64],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(a) = &self.appender {
            // SQLite: on the appender's own connection, off the runtime's
            // threads (the commit waits for an fsync).
            let (a, node, events, consumed) = (
                a.clone(),
                node.to_owned(),
                events.to_vec(),
                consumed.to_vec(),
            );
            return tokio::task::spawn_blocking(move || a.append(&node, &events, &consumed))
                .await
                .map_err(|e| StoreError::Backend(format!("audit append: {e}")))?;
        }
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.append_in(&mut tx, events).await?;
        for id in consumed {
            let n = sqlx::query("DELETE FROM audit_pending WHERE node = $1 AND id = $2")
                .bind(node)
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            if n != 1 {
                // Chained by another writer meanwhile: nothing is written.
                return Err(StoreError::Conflict);
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn pending_events(
        &self,
        node: &str,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        sqlx::query("SELECT id, body FROM audit_pending WHERE node = $1 ORDER BY id LIMIT $2")
            .bind(node)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                let id: i64 = r.try_get("id").map_err(get)?;
                let body: String = r.try_get("body").map_err(get)?;
                Ok((id, body))
            })
            .collect()
    }

    async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (node, size, at, note) VALUES ($1, $2, $3, $4)")
            .bind(c.node.as_str())
            .bind(seq_i64(c.size)?)
            .bind(c.at.millis())
            .bind(c.note.as_str())
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn audit_checkpoints(
        &self,
        node: &str,
        after: (u64, i64),
        limit: u32,
    ) -> Result<Vec<CheckpointRow>, StoreError> {
        sqlx::query(
            "SELECT node, size, at, note FROM audit_checkpoints \
             WHERE node = $1 AND (size > $2 OR (size = $2 AND at > $3)) \
             ORDER BY size, at LIMIT $4",
        )
        .bind(node)
        .bind(i64::try_from(after.0).unwrap_or(i64::MAX))
        .bind(after.1)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(checkpoint_from)
        .collect()
    }

    async fn latest_checkpoint(&self, node: &str) -> Result<Option<CheckpointRow>, StoreError> {
        sqlx::query(
            "SELECT node, size, at, note FROM audit_checkpoints \
             WHERE node = $1 ORDER BY size DESC, at DESC LIMIT 1",
        )
        .bind(node)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(checkpoint_from)
        .transpose()
    }

    async fn audit_range(
        &self,
        node: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Chained>, StoreError> {
        sqlx::query(&format!(
            "SELECT {READ} FROM audit_events WHERE node = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
        ))
        .bind(node)
        .bind(seq_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(chained_from)
        .collect()
    }

    async fn audit_nodes(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT DISTINCT node FROM audit_events UNION SELECT DISTINCT node FROM audit_checkpoints \
             UNION SELECT DISTINCT node FROM audit_retired",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| r.try_get("node").map_err(get))
        .collect()
    }

    async fn search_events(&self, q: &EventQuery) -> Result<Vec<Chained>, StoreError> {
        let (filter, mut args) = filter_sql(q)?;
        args.push(Arg::Int(i64::from(q.limit)));
        let sql = format!(
            "SELECT {READ} FROM audit_events WHERE {filter} \
             ORDER BY at DESC, node DESC, seq DESC LIMIT ${}",
            args.len()
        );
        bind_all(sqlx::query(&sql), args)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(chained_from)
            .collect()
    }

    async fn count_events(
        &self,
        q: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<(Timestamp, u64)>, StoreError> {
        if bucket_ms <= 0 {
            return Err(StoreError::Backend(
                "a bucket must be longer than 0 ms".into(),
            ));
        }
        let q = EventQuery {
            cursor: None,
            ..q.clone()
        };
        let (filter, mut args) = filter_sql(&q)?;
        args.push(Arg::Int(bucket_ms));
        let n = args.len();
        let sql = format!(
            "SELECT (at / ${n}) * ${n} AS bucket, COUNT(*) AS n FROM audit_events \
             WHERE {filter} GROUP BY (at / ${n}) * ${n} ORDER BY bucket"
        );
        bind_all(sqlx::query(&sql), args)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                let b: i64 = r.try_get("bucket").map_err(get)?;
                let n: i64 = r.try_get("n").map_err(get)?;
                Ok((Timestamp(b), n.max(0) as u64))
            })
            .collect()
    }

    async fn audit_first_since(
        &self,
        node: &str,
        at: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(seq) AS seq FROM audit_events WHERE node = $1 AND at >= $2")
                .bind(node)
                .bind(at.millis())
                .fetch_one(self.pool())
                .await
                .map_err(backend)?;
        let seq: Option<i64> = row.try_get("seq").map_err(get)?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()))
    }

    async fn retire_events(
        &self,
        node: &str,
        first: u64,
        last: u64,
        note: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO audit_retired (node, last_seq, note) VALUES ($1, $2, $3)")
            .bind(node)
            .bind(seq_i64(last)?)
            .bind(note)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // The one deletion of events: a whole range, with its record.
        let n = sqlx::query("DELETE FROM audit_events WHERE node = $1 AND seq >= $2 AND seq <= $3")
            .bind(node)
            .bind(seq_i64(first)?)
            .bind(seq_i64(last)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn latest_retirement(&self, node: &str) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT note FROM audit_retired WHERE node = $1 ORDER BY last_seq DESC LIMIT 1")
            .bind(node)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .map(|r| r.try_get("note").map_err(get))
            .transpose()
    }

    async fn stream_cursor(&self, name: &str, chain: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT next_seq FROM audit_cursors WHERE name = $1 AND node = $2")
            .bind(name)
            .bind(chain)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?;
        match row {
            None => Ok(0),
            Some(r) => {
                let n: i64 = r.try_get("next_seq").map_err(get)?;
                Ok(n.max(0) as u64)
            }
        }
    }

    async fn set_stream_cursor(
        &self,
        name: &str,
        chain: &str,
        next: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_cursors (name, node, next_seq) VALUES ($1, $2, $3) \
             ON CONFLICT (name, node) DO UPDATE SET next_seq = excluded.next_seq",
        )
        .bind(name)
        .bind(chain)
        .bind(seq_i64(next)?)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn legacy_events(&self) -> Result<Vec<Event>, StoreError> {
        // Dropped once imported.
        if !self.legacy_tables_exist().await? {
            return Ok(Vec::new());
        }
        let mut out: Vec<Event> = self
            .legacy_security_events()
            .await?
            .into_iter()
            .map(|e| e.to_audit())
            .collect();
        out.extend(
            self.legacy_data_events()
                .await?
                .into_iter()
                .map(|e| e.to_audit()),
        );
        out.sort_by_key(|e| e.at);
        Ok(out)
    }

    async fn import_legacy(&self, events: &[Chained]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.append_in(&mut tx, events).await?;
        // Dropped, not emptied: a row written there later is never chained.
        for t in [
            "DROP TABLE IF EXISTS security_events",
            "DROP TABLE IF EXISTS data_events",
        ] {
            sqlx::query(t).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }
}

/// The audit writer's appends on SQLite, through rusqlite on a connection
/// of their own: sqlx's driver hands every statement to a worker thread,
/// which cost the writer two thirds of its time (`bench/run audit`). The
/// statement is the same fixed, fully bound INSERT. Busy waits give way to
/// other writers (the pool's connections) as SQLite's lock decides.
pub(crate) struct Appender {
    path: std::path::PathBuf,
    conn: std::sync::Mutex<Option<rusqlite::Connection>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

impl Appender {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        Self {
            path,
            conn: std::sync::Mutex::new(None),
        }
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_err)?;
        c.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite_err)?;
        // As the pool's connections (dialect.rs): durable at commit.
        c.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite_err)?;
        Ok(c)
    }

    fn append(&self, node: &str, events: &[Chained], consumed: &[i64]) -> Result<(), StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Backend("audit appender poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let conn = guard
            .as_mut()
            .ok_or(StoreError::Backend("no connection".into()))?;
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sqlite_err)?;
            {
                let sql = format!(
                    "INSERT INTO audit_events ({COLUMNS}, ip_key) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                );
                let mut st = tx.prepare_cached(&sql).map_err(sqlite_err)?;
                for e in events {
                    st.execute(rusqlite::params![
                        e.node,
                        seq_i64(e.seq)?,
                        e.at.millis(),
                        e.action,
                        e.category,
                        e.outcome,
                        i64::from(e.severity),
                        e.reason,
                        e.user_id,
                        e.source_ip,
                        e.user_agent,
                        e.request_id,
                        e.rule,
                        e.object,
                        e.fields,
                        hex::encode(e.link),
                        tree_hex(&e.tree),
                        ip_key_of(e),
                    ])
                    .map_err(sqlite_err)?;
                }
                let mut del = tx
                    .prepare_cached("DELETE FROM audit_pending WHERE node = ?1 AND id = ?2")
                    .map_err(sqlite_err)?;
                for id in consumed {
                    if del
                        .execute(rusqlite::params![node, id])
                        .map_err(sqlite_err)?
                        != 1
                    {
                        return Err(StoreError::Conflict);
                    }
                }
            }
            tx.commit().map_err(sqlite_err)
        })();
        if matches!(result, Err(StoreError::Backend(_))) {
            // A broken connection is opened again next time.
            *guard = None;
        }
        result
    }
}

fn ip_key_of(e: &Chained) -> Option<String> {
    rampart_core::audit::ip_key_of(e.source_ip.as_deref())
}

/// Puts an event in the pending table, in the caller's transaction (the
/// write it is about).
pub(crate) async fn insert_pending(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &PendingEvent,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_pending (node, body) VALUES ($1, $2)")
        .bind(e.node.as_str())
        .bind(e.body.as_str())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

impl SqlStore {
    /// Data-access events, newest first, read from the trail.
    pub(crate) async fn trail_data_events(
        &self,
        f: &DataEventFilter,
    ) -> Result<Vec<StoredDataEvent>, StoreError> {
        // A data event's user is `key:<id>` for an API key, the account id
        // otherwise: an actor filter names either.
        let key_actor = f.actor.as_deref().map(|a| format!("key:{a}"));
        sqlx::query(&format!(
            "SELECT {READ} FROM audit_events \
             WHERE category = 'database' AND action LIKE 'data.%' \
               AND (CAST($1 AS TEXT) IS NULL OR object = $1) \
               AND (CAST($2 AS TEXT) IS NULL OR user_id = $2 OR user_id = $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR at >= $4) \
             ORDER BY at DESC, node DESC, seq DESC LIMIT $5"
        ))
        .bind(f.collection.as_deref())
        .bind(f.actor.as_deref())
        .bind(key_actor.as_deref())
        .bind(f.since.map(Timestamp::millis))
        .bind(i64::from(f.limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(chained_from)
        .filter_map(|c| c.map(|c| StoredDataEvent::from_chained(&c)).transpose())
        .collect()
    }

    async fn legacy_tables_exist(&self) -> Result<bool, StoreError> {
        let sql = match self.dialect() {
            crate::Dialect::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'security_events'"
            }
            crate::Dialect::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'security_events'"
            }
        };
        let n: i64 = sqlx::query(sql)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?
            .try_get("n")
            .map_err(get)?;
        Ok(n > 0)
    }

    async fn legacy_security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        sqlx::query(
            "SELECT id, at, kind, outcome, reason, account_id, ip, user_agent, request_id \
             FROM security_events ORDER BY at, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(crate::sql::event_from)
        .collect()
    }

    async fn legacy_data_events(&self) -> Result<Vec<StoredDataEvent>, StoreError> {
        sqlx::query(
            "SELECT at, actor_kind, actor_id, collection, action, record_ids, count, outcome, \
             sensitive, ip, request_id FROM data_events ORDER BY at",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| {
            let ids: String = r.try_get("record_ids").map_err(get)?;
            Ok(StoredDataEvent {
                at: Timestamp(r.try_get("at").map_err(get)?),
                actor_kind: r.try_get("actor_kind").map_err(get)?,
                actor_id: r.try_get("actor_id").map_err(get)?,
                collection: r.try_get("collection").map_err(get)?,
                action: r.try_get("action").map_err(get)?,
                record_ids: serde_json::from_str(&ids).unwrap_or_default(),
                count: r.try_get("count").map_err(get)?,
                outcome: r.try_get("outcome").map_err(get)?,
                sensitive: r.try_get::<i64, _>("sensitive").map_err(get)? != 0,
                ip: r.try_get("ip").map_err(get)?,
                request_id: r.try_get("request_id").map_err(get)?,
            })
        })
        .collect()
    }
}

fn checkpoint_from(row: &AnyRow) -> Result<CheckpointRow, StoreError> {
    let size: i64 = row.try_get("size").map_err(get)?;
    Ok(CheckpointRow {
        node: row.try_get("node").map_err(get)?,
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt("checkpoint size"))?,
        at: Timestamp(row.try_get("at").map_err(get)?),
        note: row.try_get("note").map_err(get)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_binds_every_value() {
        let sql = insert_sql(2);
        assert!(sql.ends_with("$35, $36)"), "{sql}");
        assert_eq!(sql.matches('$').count(), 36);
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }

    #[test]
    fn tree_hashes_round_trip() {
        let t = vec![Hash([1; 32]), Hash([2; 32])];
        assert_eq!(tree_from(&tree_hex(&t)).unwrap(), t);
        assert!(tree_from("abc").is_err());
    }
}
