//! The SQL of protected data (ADR 0007). Fixed statements, except the
//! list query, which is assembled from constant fragments chosen by a
//! typed filter ([`QExpr`]); every value and JSON path in it is a bound
//! parameter.

use async_trait::async_trait;
use rampart_core::audit::PendingEvent;
use rampart_core::data::{
    ApiKey, Collection, CollectionSchema, DataEventFilter, DataKey, DataStore, ListQuery, Op,
    QExpr, QValue, SchemaUpdate, Scope, StoredDataEvent, StoredRecord, Target, UniqueEntry,
    WriteChecks, WriteOutcome,
};
use rampart_core::{AccountId, StoreError, Timestamp};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::sql::{backend, SqlStore};
use crate::Dialect;

fn get_err(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn json_map(s: &str, what: &'static str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str(s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Corrupt(what)),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Maps, vectors and derived structs always serialise.
    serde_json::to_string(v).unwrap_or_else(|_| unreachable!("serialisable value"))
}

macro_rules! record_cols {
    () => {
        "r.collection, r.id, r.owner_id, r.created_at, r.updated_at, r.version, r.key_id, \
         r.layout_rev, r.data, r.sealed, r.blind"
    };
}

fn record_from(row: &AnyRow) -> Result<StoredRecord, StoreError> {
    let data: String = row.try_get("data").map_err(get_err)?;
    let sealed: String = row.try_get("sealed").map_err(get_err)?;
    let blind: String = row.try_get("blind").map_err(get_err)?;
    Ok(StoredRecord {
        collection: row.try_get("collection").map_err(get_err)?,
        id: row.try_get("id").map_err(get_err)?,
        owner_id: row
            .try_get::<Option<String>, _>("owner_id")
            .map_err(get_err)?
            .map(AccountId),
        created_at: Timestamp(row.try_get("created_at").map_err(get_err)?),
        updated_at: Timestamp(row.try_get("updated_at").map_err(get_err)?),
        version: row.try_get("version").map_err(get_err)?,
        key_id: row.try_get("key_id").map_err(get_err)?,
        layout_rev: row.try_get("layout_rev").map_err(get_err)?,
        data: json_map(&data, "record data")?,
        sealed: json_map(&sealed, "record sealed values")?,
        blind: json_map(&blind, "record blind index")?,
    })
}

fn collection_from(row: &AnyRow) -> Result<Collection, StoreError> {
    let schema: String = row.try_get("schema").map_err(get_err)?;
    let schema: CollectionSchema =
        serde_json::from_str(&schema).map_err(|_| StoreError::Corrupt("collection schema"))?;
    Ok(Collection {
        name: row.try_get("name").map_err(get_err)?,
        schema,
        rev: row.try_get("rev").map_err(get_err)?,
        layout_rev: row.try_get("layout_rev").map_err(get_err)?,
        key_id: row.try_get("key_id").map_err(get_err)?,
        index_key_id: row.try_get("index_key_id").map_err(get_err)?,
        created_at: Timestamp(row.try_get("created_at").map_err(get_err)?),
        updated_at: Timestamp(row.try_get("updated_at").map_err(get_err)?),
    })
}

fn key_from(row: &AnyRow) -> Result<DataKey, StoreError> {
    Ok(DataKey {
        id: row.try_get("id").map_err(get_err)?,
        scope: row.try_get("scope").map_err(get_err)?,
        wrapped: row.try_get("wrapped").map_err(get_err)?,
        master_id: row.try_get("master_id").map_err(get_err)?,
        created_at: Timestamp(row.try_get("created_at").map_err(get_err)?),
        retired_at: row
            .try_get::<Option<i64>, _>("retired_at")
            .map_err(get_err)?
            .map(Timestamp),
    })
}

fn api_key_from(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let scopes: String = row.try_get("scopes").map_err(get_err)?;
    let ips: String = row.try_get("allowed_ips").map_err(get_err)?;
    Ok(ApiKey {
        id: row.try_get("id").map_err(get_err)?,
        prefix: row.try_get("prefix").map_err(get_err)?,
        name: row.try_get("name").map_err(get_err)?,
        token_hash: row.try_get("token_hash").map_err(get_err)?,
        scopes: serde_json::from_str::<Vec<Scope>>(&scopes)
            .map_err(|_| StoreError::Corrupt("api key scopes"))?,
        allowed_ips: serde_json::from_str(&ips).map_err(|_| StoreError::Corrupt("api key ips"))?,
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(get_err)?
            .map(Timestamp),
        created_at: Timestamp(row.try_get("created_at").map_err(get_err)?),
        created_by: AccountId(row.try_get("created_by").map_err(get_err)?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(get_err)?
            .map(Timestamp),
    })
}

/// One record and its collection's revision. Shared with `fast_read`,
/// which reads the columns by position.
pub(crate) const RECORD_BY_ID: &str = concat!(
    "SELECT ",
    record_cols!(),
    ", c.rev AS c_rev FROM records r JOIN collections c ON c.name = r.collection \
     WHERE r.collection = $1 AND r.id = $2"
);

/// A record from its stored parts (JSON text as stored).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_of(
    collection: String,
    id: String,
    owner_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    version: i64,
    key_id: Option<String>,
    layout_rev: i64,
    json: [&str; 3],
) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        collection,
        id,
        owner_id: owner_id.map(AccountId),
        created_at: Timestamp(created_at),
        updated_at: Timestamp(updated_at),
        version,
        key_id,
        layout_rev,
        data: json_map(json[0], "record data")?,
        sealed: json_map(json[1], "record sealed values")?,
        blind: json_map(json[2], "record blind index")?,
    })
}

// A macro, like the column lists in `sql.rs`: every statement stays one
// `&'static str` assembled at compile time.
macro_rules! collection_cols {
    () => {
        "name, schema, rev, layout_rev, key_id, index_key_id, created_at, updated_at"
    };
}

/// Record inserts waiting for the SQLite group commit.
pub(crate) type Inserter = tokio::sync::mpsc::Sender<InsertJob>;

pub(crate) struct InsertJob {
    record: StoredRecord,
    checks: WriteChecks,
    event: Option<PendingEvent>,
    reply: tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

/// At most this many inserts share one transaction.
const GROUP: usize = 256;

/// SQLite's group commit: whatever inserts are waiting go into one
/// transaction, each checked as if alone (a refused one is deleted again,
/// which cascades to its unique entries), then one commit, one fsync. As
/// durable as before: no insert is answered before its commit.
async fn run_inserts(pool: sqlx::AnyPool, mut rx: tokio::sync::mpsc::Receiver<InsertJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        match insert_group(&pool, &jobs).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let text = e.to_string();
                let transient = matches!(e, StoreError::Unavailable(_));
                for job in jobs {
                    let _ = job.reply.send(Err(if transient {
                        StoreError::Unavailable(text.clone())
                    } else {
                        StoreError::Backend(text.clone())
                    }));
                }
            }
        }
    }
}

async fn insert_group(
    pool: &sqlx::AnyPool,
    jobs: &[InsertJob],
) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let mut heads: std::collections::HashMap<&str, Option<(i64, String)>> = Default::default();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let r = &job.record;
        // The insert first: the write lock, taken at once.
        match insert_record_row(&mut tx, r).await {
            Ok(()) => {}
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                out.push(WriteOutcome::NotFound);
                continue;
            }
            Err(e) => return Err(backend(e)),
        }
        if !heads.contains_key(r.collection.as_str()) {
            let row = sqlx::query("SELECT rev, key_id FROM collections WHERE name = $1")
                .bind(&r.collection)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            let head = match row {
                Some(row) => Some((
                    row.try_get::<i64, _>("rev").map_err(get_err)?,
                    row.try_get::<String, _>("key_id").map_err(get_err)?,
                )),
                None => None,
            };
            heads.insert(&r.collection, head);
        }
        let refused = match unique_and_references(&mut tx, r, &job.checks).await? {
            Some(refused) => Some(refused),
            None => match heads.get(r.collection.as_str()).cloned().flatten() {
                None => Some(WriteOutcome::NotFound),
                Some((rev, key))
                    if rev != job.checks.rev || r.key_id.as_ref().is_some_and(|k| *k != key) =>
                {
                    Some(WriteOutcome::Stale)
                }
                Some(_) => None,
            },
        };
        match refused {
            None => {
                if let Some(e) = &job.event {
                    crate::audit::insert_pending(&mut tx, e).await?;
                }
                out.push(WriteOutcome::Done)
            }
            Some(outcome) => {
                sqlx::query("DELETE FROM records WHERE collection = $1 AND id = $2")
                    .bind(&r.collection)
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                out.push(outcome);
            }
        }
    }
    tx.commit().await.map_err(backend)?;
    Ok(out)
}

async fn insert_record_row(
    tx: &mut Transaction<'_, Any>,
    r: &StoredRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO records (collection, id, owner_id, created_at, updated_at, version, key_id, \
         layout_rev, data, sealed, blind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&r.collection)
    .bind(&r.id)
    .bind(r.owner_id.as_ref().map(AccountId::as_str))
    .bind(r.created_at.millis())
    .bind(r.updated_at.millis())
    .bind(r.version)
    .bind(r.key_id.as_deref())
    .bind(r.layout_rev)
    .bind(to_json(&r.data))
    .bind(to_json(&r.sealed))
    .bind(to_json(&r.blind))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Why a conditional write of a record touched nothing: it is gone, or
/// its version is not the expected one.
async fn missing_or_changed(
    tx: &mut Transaction<'_, Any>,
    collection: &str,
    id: &str,
) -> Result<WriteOutcome, StoreError> {
    let exists = sqlx::query("SELECT 1 AS one FROM records WHERE collection = $1 AND id = $2")
        .bind(collection)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .is_some();
    Ok(if exists {
        WriteOutcome::VersionMismatch
    } else {
        WriteOutcome::NotFound
    })
}

/// The unique entries and references of a record being written; the
/// first refusal, if any.
async fn unique_and_references(
    tx: &mut Transaction<'_, Any>,
    r: &StoredRecord,
    checks: &WriteChecks,
) -> Result<Option<WriteOutcome>, StoreError> {
    for u in &checks.uniques {
        let n = sqlx::query(
            "INSERT INTO record_unique (collection, field, value, record_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&r.collection)
        .bind(&u.field)
        .bind(&u.value)
        .bind(&r.id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if n == 0 {
            return Ok(Some(WriteOutcome::Duplicate(u.field.clone())));
        }
    }
    for (field, target, id) in &checks.references {
        let found = sqlx::query("SELECT 1 AS one FROM records WHERE collection = $1 AND id = $2")
            .bind(target)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        if found.is_none() {
            return Ok(Some(WriteOutcome::MissingReference(field.clone())));
        }
    }
    Ok(None)
}

/// A bound value of the list query.
enum Arg {
    Int(i64),
    Float(f64),
    Text(String),
}

impl SqlStore {
    /// Inserts a data key, only while the master fingerprint is the key's
    /// (set on first use): a key wrapped with a master that was rotated
    /// meanwhile is refused with `StaleMaster`.
    async fn insert_key(
        &self,
        tx: &mut Transaction<'_, Any>,
        k: &DataKey,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO master_fingerprint (id, key_id) VALUES (1, $1) ON CONFLICT DO NOTHING",
        )
        .bind(&k.master_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        let sql = match self.dialect() {
            Dialect::Sqlite => "SELECT key_id FROM master_fingerprint WHERE id = 1",
            Dialect::Postgres => "SELECT key_id FROM master_fingerprint WHERE id = 1 FOR SHARE",
        };
        let current: String = sqlx::query(sql)
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?
            .try_get("key_id")
            .map_err(get_err)?;
        if current != k.master_id {
            return Err(StoreError::StaleMaster);
        }
        sqlx::query(
            "INSERT INTO data_keys (id, scope, wrapped, master_id, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.id)
        .bind(&k.scope)
        .bind(&k.wrapped)
        .bind(&k.master_id)
        .bind(k.created_at.millis())
        .bind(k.retired_at.map(Timestamp::millis))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// The schema revision and current data key, read under a share lock
    /// on PostgreSQL so that a schema change or key rotation (which hold the
    /// row for update) waits for this write, or this write for it.
    async fn head_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        collection: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "SELECT rev, key_id FROM collections WHERE name = $1",
            Dialect::Postgres => "SELECT rev, key_id FROM collections WHERE name = $1 FOR SHARE",
        };
        let row = sqlx::query(sql)
            .bind(collection)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok((
                r.try_get::<i64, _>("rev").map_err(get_err)?,
                r.try_get::<String, _>("key_id").map_err(get_err)?,
            ))
        })
        .transpose()
    }

    /// Unique entries, references and the schema revision, inside a record
    /// write's transaction. `Some(outcome)` when the write must not stand.
    async fn write_checks_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        r: &StoredRecord,
        checks: &WriteChecks,
    ) -> Result<Option<WriteOutcome>, StoreError> {
        if let Some(refused) = unique_and_references(tx, r, checks).await? {
            return Ok(Some(refused));
        }
        // Sealed with a key that is no longer current (a rotation landed
        // since the values were sealed): seal again, or the rotation's
        // pass could miss this record.
        match self.head_in(tx, &r.collection).await? {
            None => Ok(Some(WriteOutcome::NotFound)),
            Some((rev, key))
                if rev != checks.rev || r.key_id.as_ref().is_some_and(|k| *k != key) =>
            {
                Ok(Some(WriteOutcome::Stale))
            }
            Some(_) => Ok(None),
        }
    }

    /// A target as an SQL expression, with its JSON path bound.
    fn target_sql(&self, t: &Target, sql: &mut String, args: &mut Vec<Arg>) {
        let (column, field) = match t {
            Target::Id => return sql.push_str("r.id"),
            Target::Owner => return sql.push_str("r.owner_id"),
            Target::CreatedAt => return sql.push_str("r.created_at"),
            Target::UpdatedAt => return sql.push_str("r.updated_at"),
            Target::Data(f) => ("r.data", f),
            Target::Blind(f) => ("r.blind", f),
        };
        match self.dialect() {
            Dialect::Sqlite => {
                // Field names are [a-z0-9_]; the path is still a parameter.
                args.push(Arg::Text(format!("$.\"{field}\"")));
                sql.push_str(&format!("json_extract({column}, ${})", args.len()));
            }
            Dialect::Postgres => {
                args.push(Arg::Text(field.clone()));
                let arrow = if matches!(t, Target::Blind(_)) {
                    "->>"
                } else {
                    "->"
                };
                sql.push_str(&format!(
                    "(CAST({column} AS JSONB) {arrow} ${})",
                    args.len()
                ));
            }
        }
    }

    /// A compared value as a parameter. On PostgreSQL a value compared with
    /// a JSONB field is bound as JSON text and cast.
    fn value_sql(&self, t: &Target, v: &QValue, sql: &mut String, args: &mut Vec<Arg>) {
        let jsonb = self.dialect() == Dialect::Postgres && matches!(t, Target::Data(_));
        let arg = if jsonb {
            Arg::Text(match v {
                QValue::Null => "null".to_owned(),
                QValue::Bool(b) => b.to_string(),
                QValue::Int(i) => i.to_string(),
                QValue::Float(f) => Value::from(*f).to_string(),
                QValue::Text(s) => Value::String(s.clone()).to_string(),
            })
        } else {
            match v {
                QValue::Null => Arg::Text(String::new()),
                QValue::Bool(b) => Arg::Int(i64::from(*b)),
                QValue::Int(i) => Arg::Int(*i),
                QValue::Float(f) => Arg::Float(*f),
                QValue::Text(s) => Arg::Text(s.clone()),
            }
        };
        args.push(arg);
        if jsonb {
            sql.push_str(&format!("CAST(${} AS JSONB)", args.len()));
        } else {
            sql.push_str(&format!("${}", args.len()));
        }
    }

    fn expr_sql(&self, e: &QExpr, sql: &mut String, args: &mut Vec<Arg>) {
        match e {
            QExpr::And(v) | QExpr::Or(v) => {
                let join = if matches!(e, QExpr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                sql.push('(');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(join);
                    }
                    self.expr_sql(x, sql, args);
                }
                sql.push(')');
            }
            QExpr::Cmp { target, op, values } => {
                sql.push('(');
                let first = values.first().unwrap_or(&QValue::Null);
                match op {
                    Op::Eq | Op::Ne if *first == QValue::Null => {
                        self.target_sql(target, sql, args);
                        sql.push_str(if *op == Op::Eq {
                            " IS NULL"
                        } else {
                            " IS NOT NULL"
                        });
                    }
                    Op::Ne => {
                        // Not equal includes records without the field.
                        self.target_sql(target, sql, args);
                        sql.push_str(" IS NULL OR ");
                        self.target_sql(target, sql, args);
                        sql.push_str(" <> ");
                        self.value_sql(target, first, sql, args);
                    }
                    Op::In => {
                        self.target_sql(target, sql, args);
                        sql.push_str(" IN (");
                        for (i, v) in values.iter().enumerate() {
                            if i > 0 {
                                sql.push_str(", ");
                            }
                            self.value_sql(target, v, sql, args);
                        }
                        sql.push(')');
                    }
                    Op::Contains => {
                        let QValue::Text(needle) = first else {
                            sql.push_str("1 = 0)");
                            return;
                        };
                        let field = match target {
                            Target::Data(f) => f,
                            _ => {
                                sql.push_str("1 = 0)");
                                return;
                            }
                        };
                        match self.dialect() {
                            Dialect::Sqlite => {
                                args.push(Arg::Text(format!("$.\"{field}\"")));
                                sql.push_str(&format!(
                                    "instr(json_extract(r.data, ${}), ",
                                    args.len()
                                ));
                            }
                            Dialect::Postgres => {
                                args.push(Arg::Text(field.clone()));
                                sql.push_str(&format!(
                                    "strpos(CAST(r.data AS JSONB) ->> ${}, ",
                                    args.len()
                                ));
                            }
                        }
                        args.push(Arg::Text(needle.clone()));
                        sql.push_str(&format!("${}) > 0", args.len()));
                    }
                    Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                        self.target_sql(target, sql, args);
                        sql.push_str(match op {
                            Op::Eq => " = ",
                            Op::Lt => " < ",
                            Op::Le => " <= ",
                            Op::Gt => " > ",
                            _ => " >= ",
                        });
                        self.value_sql(target, first, sql, args);
                    }
                }
                sql.push(')');
            }
        }
    }
}

#[async_trait]
impl DataStore for SqlStore {
    async fn collections(&self) -> Result<Vec<Collection>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            collection_cols!(),
            " FROM collections ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(collection_from)
        .collect()
    }

    async fn collection(&self, name: &str) -> Result<Option<Collection>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            collection_cols!(),
            " FROM collections WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(collection_from)
        .transpose()
    }

    async fn insert_collection(
        &self,
        c: &Collection,
        keys: &[DataKey],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query(
            "INSERT INTO collections (name, schema, rev, layout_rev, key_id, index_key_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&c.name)
        .bind(to_json(&c.schema))
        .bind(c.rev)
        .bind(c.layout_rev)
        .bind(&c.key_id)
        .bind(&c.index_key_id)
        .bind(c.created_at.millis())
        .bind(c.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for k in keys {
            self.insert_key(&mut tx, k).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn update_collection(
        &self,
        c: &Collection,
        expected_rev: i64,
        unique_rows: Option<&(dyn for<'r> Fn(&'r StoredRecord) -> Vec<UniqueEntry> + Send + Sync)>,
        check: &(dyn for<'r> Fn(&'r StoredRecord) -> bool + Send + Sync),
    ) -> Result<SchemaUpdate, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // First statement: the write lock (SQLite) or the row lock
        // (PostgreSQL), held while the records are checked.
        let n = sqlx::query("UPDATE collections SET rev = rev WHERE name = $1 AND rev = $2")
            .bind(&c.name)
            .bind(expected_rev)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if n == 0 {
            return Ok(SchemaUpdate::Stale);
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records r WHERE r.collection = $1"
        ))
        .bind(&c.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(record_from(row)?);
        }
        let violations = records.iter().filter(|r| !check(r)).count() as u64;
        if violations > 0 {
            return Ok(SchemaUpdate::Violated(violations));
        }
        if let Some(entries) = unique_rows {
            sqlx::query("DELETE FROM record_unique WHERE collection = $1")
                .bind(&c.name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let mut duplicates = 0u64;
            for r in &records {
                let mut dup = false;
                for u in entries(r) {
                    let n = sqlx::query(
                        "INSERT INTO record_unique (collection, field, value, record_id) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&c.name)
                    .bind(&u.field)
                    .bind(&u.value)
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                    dup |= n == 0;
                }
                duplicates += u64::from(dup);
            }
            if duplicates > 0 {
                return Ok(SchemaUpdate::Violated(duplicates));
            }
        }
        sqlx::query(
            "UPDATE collections SET schema = $2, rev = $3, layout_rev = $4, updated_at = $5 WHERE name = $1",
        )
        .bind(&c.name)
        .bind(to_json(&c.schema))
        .bind(c.rev)
        .bind(c.layout_rev)
        .bind(c.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(SchemaUpdate::Done)
    }

    async fn delete_collection(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query("DELETE FROM collections WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM record_unique WHERE collection = $1",
            "DELETE FROM records WHERE collection = $1",
        ] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        // Its keys go too: nothing is left for them to open.
        sqlx::query("DELETE FROM data_keys WHERE scope = $1 OR scope = $2")
            .bind(format!("collection:{name}"))
            .bind(format!("index:{name}"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn record_count(&self, collection: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM records WHERE collection = $1")
            .bind(collection)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
        Ok(row.try_get::<i64, _>("n").map_err(get_err)?.max(0) as u64)
    }

    async fn insert_record(
        &self,
        r: &StoredRecord,
        checks: &WriteChecks,
        event: Option<&PendingEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        if self.dialect() == Dialect::Sqlite {
            // SQLite has one writer: inserts waiting together share one
            // transaction and one fsync (`run_inserts`).
            let (reply, answer) = tokio::sync::oneshot::channel();
            let inserter = self.inserts.get_or_init(|| {
                let (tx, rx) = tokio::sync::mpsc::channel(4 * GROUP);
                tokio::spawn(run_inserts(self.pool().clone(), rx));
                tx
            });
            let job = InsertJob {
                record: r.clone(),
                checks: checks.clone(),
                event: event.cloned(),
                reply,
            };
            if inserter.send(job).await.is_err() {
                return Err(StoreError::Unavailable("the insert queue is closed".into()));
            }
            return answer
                .await
                .map_err(|_| StoreError::Unavailable("the insert queue is closed".into()))?;
        }
        let mut tx = self.pool().begin().await.map_err(backend)?;
        match insert_record_row(&mut tx, r).await {
            Ok(()) => {}
            // The collection was deleted meanwhile.
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Ok(WriteOutcome::NotFound)
            }
            Err(e) => return Err(backend(e)),
        }
        if let Some(refused) = self.write_checks_in(&mut tx, r, checks).await? {
            return Ok(refused);
        }
        if let Some(e) = event {
            crate::audit::insert_pending(&mut tx, e).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(WriteOutcome::Done)
    }

    async fn record(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<(StoredRecord, i64)>, StoreError> {
        if let Some(fast) = self.fast() {
            return fast.record(collection, id);
        }
        let row = sqlx::query(RECORD_BY_ID)
            .bind(collection)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((
                record_from(&row)?,
                row.try_get("c_rev").map_err(get_err)?,
            ))),
        }
    }

    async fn update_record(
        &self,
        r: &StoredRecord,
        expected_version: i64,
        checks: &WriteChecks,
        event: Option<&PendingEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query(
            "UPDATE records SET updated_at = $3, version = $4, key_id = $5, layout_rev = $6, \
             data = $7, sealed = $8, blind = $9 \
             WHERE collection = $1 AND id = $2 AND version = $10",
        )
        .bind(&r.collection)
        .bind(&r.id)
        .bind(r.updated_at.millis())
        .bind(r.version)
        .bind(r.key_id.as_deref())
        .bind(r.layout_rev)
        .bind(to_json(&r.data))
        .bind(to_json(&r.sealed))
        .bind(to_json(&r.blind))
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if n == 0 {
            return missing_or_changed(&mut tx, &r.collection, &r.id).await;
        }
        sqlx::query("DELETE FROM record_unique WHERE collection = $1 AND record_id = $2")
            .bind(&r.collection)
            .bind(&r.id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(refused) = self.write_checks_in(&mut tx, r, checks).await? {
            return Ok(refused);
        }
        if let Some(e) = event {
            crate::audit::insert_pending(&mut tx, e).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(WriteOutcome::Done)
    }

    async fn delete_record(
        &self,
        collection: &str,
        id: &str,
        expected_version: Option<i64>,
        event: Option<&PendingEvent>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query(
            "DELETE FROM records WHERE collection = $1 AND id = $2 \
             AND (CAST($3 AS BIGINT) IS NULL OR version = $3)",
        )
        .bind(collection)
        .bind(id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if n == 0 {
            return missing_or_changed(&mut tx, collection, id).await;
        }
        // Its unique entries go with it (ON DELETE CASCADE).
        if let Some(e) = event {
            crate::audit::insert_pending(&mut tx, e).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(WriteOutcome::Done)
    }

    async fn list_records(&self, q: &ListQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let mut sql = String::from(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records r WHERE r.collection = $1"
        ));
        // $1 is the collection; the rest are numbered as they are pushed.
        let mut args: Vec<Arg> = vec![Arg::Text(q.collection.clone())];
        if let Some(owner) = &q.owner {
            args.push(Arg::Text(owner.0.clone()));
            sql.push_str(&format!(" AND r.owner_id = ${}", args.len()));
        }
        if let Some(f) = &q.filter {
            sql.push_str(" AND ");
            self.expr_sql(f, &mut sql, &mut args);
        }
        sql.push_str(" ORDER BY ");
        self.target_sql(&q.sort, &mut sql, &mut args);
        sql.push_str(if q.descending { " DESC" } else { " ASC" });
        sql.push_str(", r.id ASC");
        args.push(Arg::Int(i64::from(q.limit)));
        sql.push_str(&format!(" LIMIT ${}", args.len()));
        args.push(Arg::Int(i64::try_from(q.offset).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" OFFSET ${}", args.len()));
        let mut query = sqlx::query(&sql);
        for a in args {
            query = match a {
                Arg::Int(i) => query.bind(i),
                Arg::Float(f) => query.bind(f),
                Arg::Text(s) => query.bind(s),
            };
        }
        let rows = query.fetch_all(self.pool()).await.map_err(backend)?;
        rows.iter().map(record_from).collect()
    }

    async fn stale_records(
        &self,
        collection: &str,
        key_id: &str,
        layout_rev: i64,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records r WHERE r.collection = $1 \
             AND ((r.key_id IS NOT NULL AND r.key_id <> $2) OR r.layout_rev < $3) \
             AND r.id > $4 ORDER BY r.id LIMIT $5"
        ))
        .bind(collection)
        .bind(key_id)
        .bind(layout_rev)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(record_from)
        .collect()
    }

    async fn reseal_record(
        &self,
        r: &StoredRecord,
        was: &StoredRecord,
        uniques: &[UniqueEntry],
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // Only while the record is as read and the collection still has
        // the key and layout this pass seals for: a pass that started
        // before a rotation or schema change cannot undo it.
        let n = sqlx::query(
            "UPDATE records SET key_id = $3, layout_rev = $4, data = $5, sealed = $6, blind = $7 \
             WHERE collection = $1 AND id = $2 AND version = $8 \
             AND key_id IS NOT DISTINCT FROM $9 AND layout_rev = $10 \
             AND EXISTS (SELECT 1 FROM collections c WHERE c.name = $1 AND c.key_id = $11 AND c.layout_rev = $4)",
        )
        .bind(&r.collection)
        .bind(&r.id)
        .bind(r.key_id.as_deref())
        .bind(r.layout_rev)
        .bind(to_json(&r.data))
        .bind(to_json(&r.sealed))
        .bind(to_json(&r.blind))
        .bind(was.version)
        .bind(was.key_id.as_deref())
        .bind(was.layout_rev)
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM record_unique WHERE collection = $1 AND record_id = $2")
            .bind(&r.collection)
            .bind(&r.id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for u in uniques {
            sqlx::query(
                "INSERT INTO record_unique (collection, field, value, record_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&r.collection)
            .bind(&u.field)
            .bind(&u.value)
            .bind(&r.id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn data_keys(&self) -> Result<Vec<DataKey>, StoreError> {
        sqlx::query("SELECT id, scope, wrapped, master_id, created_at, retired_at FROM data_keys ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn data_key(&self, id: &str) -> Result<Option<DataKey>, StoreError> {
        sqlx::query(
            "SELECT id, scope, wrapped, master_id, created_at, retired_at FROM data_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(key_from)
        .transpose()
    }

    async fn insert_data_key(&self, k: &DataKey) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.insert_key(&mut tx, k).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_collection_key(&self, collection: &str, key: &DataKey) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.insert_key(&mut tx, key).await?;
        sqlx::query("UPDATE collections SET key_id = $2 WHERE name = $1")
            .bind(collection)
            .bind(&key.id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn rewrap_data_keys(
        &self,
        old_master: &str,
        new_master: &str,
        rewrap: &(dyn for<'k> Fn(&'k DataKey) -> Option<String> + Send + Sync),
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // First statement: the lock every key insert waits on.
        let n =
            sqlx::query("UPDATE master_fingerprint SET key_id = $2 WHERE id = 1 AND key_id = $1")
                .bind(old_master)
                .bind(new_master)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        if n == 0 {
            return Err(StoreError::StaleMaster);
        }
        let keys = sqlx::query(
            "SELECT id, scope, wrapped, master_id, created_at, retired_at FROM data_keys",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?
        .iter()
        .map(key_from)
        .collect::<Result<Vec<_>, _>>()?;
        for k in &keys {
            let wrapped = rewrap(k).ok_or(StoreError::Corrupt("data key does not open"))?;
            sqlx::query("UPDATE data_keys SET wrapped = $2, master_id = $3 WHERE id = $1")
                .bind(&k.id)
                .bind(wrapped)
                .bind(new_master)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(keys.len())
    }

    async fn master_fingerprint(&self) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT key_id FROM master_fingerprint WHERE id = 1")
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .map(|r| r.try_get("key_id").map_err(get_err))
            .transpose()
    }

    async fn init_master_fingerprint(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO master_fingerprint (id, key_id) VALUES (1, $1) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn retire_data_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE data_keys SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM records WHERE key_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM collections WHERE key_id = $1 OR index_key_id = $1)",
        )
        .bind(id)
        .bind(at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn key_usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        sqlx::query(
            "SELECT key_id, COUNT(*) AS n FROM records WHERE key_id IS NOT NULL GROUP BY key_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("key_id").map_err(get_err)?,
                r.try_get::<i64, _>("n").map_err(get_err)?.max(0) as u64,
            ))
        })
        .collect()
    }

    async fn master_kdf(&self) -> Result<Option<(String, [u32; 3])>, StoreError> {
        let row = sqlx::query(
            "SELECT salt, memory_kib, iterations, parallelism FROM master_kdf WHERE id = 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        let n = |c: &str| -> Result<u32, StoreError> {
            u32::try_from(r.try_get::<i64, _>(c).map_err(get_err)?)
                .map_err(|_| StoreError::Corrupt("master kdf"))
        };
        Ok(Some((
            r.try_get("salt").map_err(get_err)?,
            [n("memory_kib")?, n("iterations")?, n("parallelism")?],
        )))
    }

    async fn set_master_kdf(&self, salt: &str, params: [u32; 3]) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO master_kdf (id, salt, memory_kib, iterations, parallelism) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(salt)
        .bind(i64::from(params[0]))
        .bind(i64::from(params[1]))
        .bind(i64::from(params[2]))
        .execute(self.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, prefix, name, token_hash, scopes, allowed_ips, expires_at, \
             created_at, created_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&k.id)
        .bind(&k.prefix)
        .bind(&k.name)
        .bind(&k.token_hash)
        .bind(to_json(&k.scopes))
        .bind(to_json(&k.allowed_ips))
        .bind(k.expires_at.map(Timestamp::millis))
        .bind(k.created_at.millis())
        .bind(k.created_by.as_str())
        .bind(k.revoked_at.map(Timestamp::millis))
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(
concat!(
            "SELECT k.id, k.prefix, k.name, k.token_hash, k.scopes, k.allowed_ips, k.expires_at, k.created_at, \
             k.created_by, k.revoked_at FROM api_keys k LEFT JOIN accounts a ON a.id = k.created_by \
             WHERE k.token_hash = $1 AND a.disabled_at IS NULL AND NOT ",
            crate::sql::kept_out_by_incident!("k.created_by", "k.created_at", "COALESCE(a.role, '')")
        ))
        .bind(hash)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(api_key_from)
        .transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query(
            "SELECT id, prefix, name, token_hash, scopes, allowed_ips, expires_at, created_at, \
             created_by, revoked_at FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(api_key_from)
        .collect()
    }

    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let n =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at.millis())
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected();
        Ok(n > 0)
    }

    async fn roles_of(&self, account: &AccountId) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT role FROM account_roles WHERE account_id = $1 ORDER BY role")
            .bind(account.as_str())
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.try_get("role").map_err(get_err))
            .collect()
    }

    async fn set_roles(&self, account: &AccountId, roles: &[String]) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM account_roles WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let exists = sqlx::query("SELECT 1 AS one FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some();
        if !exists {
            return Ok(false);
        }
        for r in roles {
            sqlx::query("INSERT INTO account_roles (account_id, role) VALUES ($1, $2)")
                .bind(account.as_str())
                .bind(r)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn data_events(&self, f: &DataEventFilter) -> Result<Vec<StoredDataEvent>, StoreError> {
        self.trail_data_events(f).await
    }
}
