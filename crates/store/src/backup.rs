//! What backups need of the database (ADR 0013): the sentinel, the
//! snapshot, and the row counts a restore is checked against.
//!
//! Table and column names are identifiers, which SQL cannot bind: these
//! are the only statements of the crate assembled at run time. A table
//! name comes from [`TABLES`], this crate's own list (a test holds it
//! equal to what the migrations create), never from a database or a file;
//! a column name comes from the database's catalog of such a table, must
//! be a plain lower-case identifier, and must be the same in the source
//! and the target. Every value is bound.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::TryStreamExt;
use rampart_core::{StoreError, Timestamp};
use sqlx::any::AnyTypeInfoKind;
use sqlx::{Row, TypeInfo as _, ValueRef as _};

use crate::dialect::Dialect;
use crate::sql::{backend, SqlStore};

/// Every table the migrations create (at [`crate::SCHEMA_VERSION`]).
pub const TABLES: &[&str] = &[
    "accounts",
    "sessions",
    "one_time_tokens",
    "security_events",
    "login_failures",
    "mfa_factors",
    "mfa_challenges",
    "mfa_pending_logins",
    "send_counts",
    "recovery_codes",
    "key_checks",
    "collections",
    "data_keys",
    "master_fingerprint",
    "records",
    "record_unique",
    "api_keys",
    "account_roles",
    "data_events",
    "master_kdf",
    "ip_blocks",
    "rate_buckets",
    "unlock_tokens",
    "scan_reports",
    "audit_events",
    "audit_checkpoints",
    "audit_pending",
    "audit_cursors",
    "audit_retired",
    "alerts",
    "alert_deliveries",
    "backup_sentinels",
    "incidents",
    "incident_accounts",
    "password_resets",
    "drills",
    "email_tokens",
    "acme_accounts",
    "acme_certificates",
    "acme_challenges",
    "acme_orders",
];

/// Sentinels kept.
const SENTINELS_KEPT: i64 = 100;

impl SqlStore {
    /// Commits the sentinel `value` (and forgets all but the newest
    /// hundred), before a snapshot begins.
    pub async fn write_backup_sentinel(
        &self,
        value: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO backup_sentinels (value, created_at) VALUES ($1, $2)")
            .bind(value)
            .bind(at.millis())
            .execute(self.pool())
            .await
            .map_err(backend)?;
        sqlx::query(
            "DELETE FROM backup_sentinels WHERE value NOT IN \
             (SELECT value FROM backup_sentinels ORDER BY created_at DESC, value LIMIT $1)",
        )
        .bind(SENTINELS_KEPT)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Whether the sentinel `value` is in this database.
    pub async fn has_backup_sentinel(&self, value: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM backup_sentinels WHERE value = $1")
                .bind(value)
                .fetch_optional(self.pool())
                .await
                .map_err(backend)?
                .is_some(),
        )
    }

    /// Writes a consistent copy of this SQLite database to `dest` (which
    /// must not exist) while the server goes on writing: `VACUUM INTO`
    /// reads in one transaction.
    pub async fn snapshot_sqlite(&self, dest: &Path) -> Result<(), StoreError> {
        if self.dialect() != Dialect::Sqlite {
            return Err(StoreError::Backend(
                "a SQLite snapshot of a PostgreSQL database".into(),
            ));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Backend("the snapshot path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// The rows of every table of [`TABLES`] this database has (the
    /// legacy event tables are dropped once their events joined the
    /// trail).
    pub async fn table_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let present = self.catalog_tables().await?;
        let mut out = BTreeMap::new();
        for table in TABLES.iter().filter(|t| present.iter().any(|p| p == *t)) {
            // `table` is from TABLES, a constant (see the module's note).
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(self.pool())
                .await
                .map_err(backend)?
                .try_get("n")
                .map_err(backend)?;
            out.insert((*table).to_owned(), n.max(0) as u64);
        }
        Ok(out)
    }

    /// The tables this database has, by its own catalog.
    pub async fn catalog_tables(&self) -> Result<Vec<String>, StoreError> {
        let q = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
            }
            Dialect::Postgres => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name <> '_sqlx_migrations' ORDER BY table_name"
            }
        };
        sqlx::query(q)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.try_get::<String, _>("name").map_err(backend))
            .collect::<Result<Vec<_>, _>>()
            .map(|mut names| {
                // The same order whatever the database's collation.
                names.sort();
                names
            })
    }

    /// SQLite's own check of a database file's structure: `ok`, or what
    /// it found (the first ten problems).
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        if self.dialect() != Dialect::Sqlite {
            return Ok(vec!["ok".into()]);
        }
        sqlx::query("PRAGMA integrity_check(10)")
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.try_get::<String, _>(0).map_err(backend))
            .collect()
    }

    /// The columns of `table` (one of [`TABLES`]) and the kind of value
    /// each holds, in the order the table declares them.
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
        let q = match self.dialect() {
            Dialect::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Dialect::Postgres => {
                "SELECT CAST(column_name AS TEXT) AS name, CAST(data_type AS TEXT) AS type \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(q)
            .bind(table)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get("name").map_err(backend)?;
            let ty: String = r.try_get("type").map_err(backend)?;
            if !is_plain_identifier(&name) {
                return Err(StoreError::Backend(format!(
                    "table {table} has a column whose name is not a plain identifier"
                )));
            }
            out.push((name, Kind::of_declared(&ty)));
        }
        if out.is_empty() {
            return Err(StoreError::Backend(format!(
                "no table {table} in the database"
            )));
        }
        Ok(out)
    }

    /// Copies every row of every table of [`TABLES`] (that the source
    /// has) into `target`, which must be at the same schema version and
    /// hold no row: all of it read
    /// in one transaction (repeatable read on PostgreSQL, so the copy is
    /// one consistent moment while writers go on), all of it written in
    /// one, so a failure leaves the target as it was. `progress` hears the
    /// rows copied so far and the total. Returns the rows per table.
    pub async fn copy_rows_to(
        &self,
        target: &SqlStore,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let present = self.catalog_tables().await?;
        if let Some(t) = present.iter().find(|t| !TABLES.contains(&t.as_str())) {
            return Err(StoreError::Backend(format!(
                "the source database has a table this Rampart does not know ({t}): is it newer?"
            )));
        }
        let mut plan = Vec::with_capacity(TABLES.len());
        for table in TABLES.iter().filter(|t| present.iter().any(|p| p == *t)) {
            let from = self.columns(table).await?;
            let to = target.columns(table).await?;
            let mut names: Vec<&str> = from.iter().map(|(n, _)| n.as_str()).collect();
            let mut theirs: Vec<&str> = to.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            theirs.sort_unstable();
            if names != theirs {
                return Err(StoreError::Backend(format!(
                    "table {table} has other columns in the target database: are both at schema version {}?",
                    crate::SCHEMA_VERSION
                )));
            }
            plan.push((*table, to));
        }
        let mut source = self.pool().begin().await.map_err(backend)?;
        if self.dialect() == Dialect::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *source)
                .await
                .map_err(backend)?;
        }
        let mut counts = BTreeMap::new();
        for (table, _) in &plan {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&mut *source)
                .await
                .map_err(backend)?
                .try_get("n")
                .map_err(backend)?;
            counts.insert((*table).to_owned(), n.max(0) as u64);
        }
        let total: u64 = counts.values().sum();
        let mut sink = target.pool().begin().await.map_err(backend)?;
        for (table, _) in &plan {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&mut *sink)
                .await
                .map_err(backend)?
                .try_get("n")
                .map_err(backend)?;
            if n != 0 {
                return Err(StoreError::Backend(format!(
                    "the target database is not empty (table {table} has rows)"
                )));
            }
        }
        let mut done = 0u64;
        progress(done, total);
        for (table, columns) in &plan {
            let list = columns
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let per_statement = (BIND_LIMIT / columns.len()).max(1);
            let select = format!("SELECT {list} FROM {table}");
            let mut rows = sqlx::query(&select).fetch(&mut *source);
            let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_statement);
            while let Some(row) = rows.try_next().await.map_err(backend)? {
                let mut values = Vec::with_capacity(columns.len());
                for (i, (name, kind)) in columns.iter().enumerate() {
                    values.push(Value::read(&row, i, *kind).map_err(|why| {
                        StoreError::Backend(format!("table {table}, column {name}: {why}"))
                    })?);
                }
                batch.push(values);
                if batch.len() == per_statement {
                    insert_rows(&mut sink, table, &list, columns.len(), &batch).await?;
                    done += batch.len() as u64;
                    progress(done, total);
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                insert_rows(&mut sink, table, &list, columns.len(), &batch).await?;
                done += batch.len() as u64;
                progress(done, total);
            }
        }
        drop(source);
        if target.dialect() == Dialect::Postgres {
            reset_sequences(&mut sink, &plan).await?;
        }
        sink.commit().await.map_err(backend)?;
        Ok(counts)
    }
}

/// Values bound per statement: under SQLite's oldest limit (999).
const BIND_LIMIT: usize = 900;

fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

/// What a column holds, by its declared type: the migrations use
/// integers and text only, and the rest is here so a copy never guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bytes,
    Bool,
}

impl Kind {
    fn of_declared(ty: &str) -> Kind {
        let ty = ty.to_ascii_lowercase();
        if ty.contains("int") {
            Kind::Int
        } else if ty.contains("bool") {
            Kind::Bool
        } else if ty.contains("real")
            || ty.contains("double")
            || ty.contains("float")
            || ty.contains("numeric")
        {
            Kind::Float
        } else if ty.contains("blob") || ty.contains("bytea") {
            Kind::Bytes
        } else {
            Kind::Text
        }
    }
}

/// One column's value, as the target's column expects it.
#[derive(Debug)]
enum Value {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

impl Value {
    /// Reads column `i` of `row` as `want`, refusing a value of another
    /// kind (SQLite lets a column hold anything; the target will not).
    fn read(row: &sqlx::any::AnyRow, i: usize, want: Kind) -> Result<Value, String> {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            return Ok(match want {
                Kind::Int => Value::Int(None),
                Kind::Float => Value::Float(None),
                Kind::Text => Value::Text(None),
                Kind::Bytes => Value::Bytes(None),
                Kind::Bool => Value::Bool(None),
            });
        }
        let got = raw.type_info().kind();
        let mismatch = || {
            format!(
                "holds a {} value where {want:?} is declared",
                raw.type_info().name()
            )
        };
        Ok(match (want, got) {
            (Kind::Int, k) if k.is_integer() => {
                Value::Int(Some(row.try_get(i).map_err(|e| e.to_string())?))
            }
            (Kind::Bool, AnyTypeInfoKind::Bool) => {
                Value::Bool(Some(row.try_get(i).map_err(|e| e.to_string())?))
            }
            (Kind::Bool, k) if k.is_integer() => Value::Bool(Some(
                row.try_get::<i64, _>(i).map_err(|e| e.to_string())? != 0,
            )),
            (Kind::Float, AnyTypeInfoKind::Real | AnyTypeInfoKind::Double) => {
                Value::Float(Some(row.try_get(i).map_err(|e| e.to_string())?))
            }
            (Kind::Float, k) if k.is_integer() => Value::Float(Some(
                row.try_get::<i64, _>(i).map_err(|e| e.to_string())? as f64,
            )),
            (Kind::Text, AnyTypeInfoKind::Text) => {
                Value::Text(Some(row.try_get(i).map_err(|e| e.to_string())?))
            }
            (Kind::Bytes, AnyTypeInfoKind::Blob) => {
                Value::Bytes(Some(row.try_get(i).map_err(|e| e.to_string())?))
            }
            _ => return Err(mismatch()),
        })
    }
}

async fn insert_rows(
    sink: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    list: &str,
    width: usize,
    rows: &[Vec<Value>],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {table} ({list}) VALUES {}",
        crate::sql::placeholders(rows.len(), width)
    );
    let mut q = sqlx::query(&sql);
    for row in rows {
        for v in row {
            q = match v {
                Value::Int(x) => q.bind(*x),
                Value::Float(x) => q.bind(*x),
                Value::Text(x) => q.bind(x.clone()),
                Value::Bytes(x) => q.bind(x.clone()),
                Value::Bool(x) => q.bind(*x),
            };
        }
    }
    q.execute(&mut **sink).await.map_err(backend)?;
    Ok(())
}

/// After rows were copied into PostgreSQL with their own ids, each serial
/// column's sequence continues after the largest.
async fn reset_sequences(
    sink: &mut sqlx::Transaction<'_, sqlx::Any>,
    plan: &[(&str, Vec<(String, Kind)>)],
) -> Result<(), StoreError> {
    for (table, columns) in plan {
        for (column, kind) in columns {
            if *kind != Kind::Int {
                continue;
            }
            let seq: Option<String> =
                sqlx::query("SELECT CAST(pg_get_serial_sequence($1, $2) AS TEXT) AS s")
                    .bind(*table)
                    .bind(column.as_str())
                    .fetch_one(&mut **sink)
                    .await
                    .map_err(backend)?
                    .try_get("s")
                    .map_err(backend)?;
            let Some(seq) = seq else { continue };
            let max: Option<i64> = sqlx::query(&format!("SELECT MAX({column}) AS m FROM {table}"))
                .fetch_one(&mut **sink)
                .await
                .map_err(backend)?
                .try_get("m")
                .map_err(backend)?;
            if let Some(max) = max {
                sqlx::query("SELECT CAST(setval(CAST($1 AS regclass), $2, true) AS BIGINT)")
                    .bind(seq)
                    .bind(max)
                    .fetch_one(&mut **sink)
                    .await
                    .map_err(backend)?;
            }
        }
    }
    Ok(())
}
