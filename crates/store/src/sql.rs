//! The queries. One text per statement, the same for both dialects, with
//! every value bound as a parameter.

use std::time::Duration;

use async_trait::async_trait;
use rampart_core::events::{EventKind, Outcome, SecurityEvent};
use rampart_core::model::{
    Account, Challenge, ChallengePurpose, Factor, FactorKind, OneTimeKind, PendingLogin, Role,
    Session,
};
use rampart_core::{
    AccountId, Confirmed, Email, EventId, FactorId, FactorRemoval, IpBlock, LoginAttempt,
    SessionId, Settle, Store, StoreError, Timestamp,
};
use rampart_crypto::SecretString;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::Dialect;

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite files only: the per-request session read, on the caller's thread.
    fast: Option<std::sync::Arc<crate::fast_read::FastRead>>,
    /// SQLite only: record inserts, committed in groups (see `data.rs`).
    pub(crate) inserts: std::sync::Arc<std::sync::OnceLock<crate::data::Inserter>>,
    /// SQLite files only: the audit writer's appends, on a connection of
    /// their own (see `audit.rs`).
    pub(crate) appender: Option<std::sync::Arc<crate::audit::Appender>>,
}

impl SqlStore {
    pub(crate) fn new(
        pool: AnyPool,
        dialect: Dialect,
        fast: Option<crate::fast_read::FastRead>,
    ) -> Self {
        let appender = fast
            .as_ref()
            .map(|f| std::sync::Arc::new(crate::audit::Appender::new(f.path().to_owned())));
        Self {
            pool,
            dialect,
            fast: fast.map(std::sync::Arc::new),
            inserts: Default::default(),
            appender,
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// SQLite files only: reads on the caller's thread (see `fast_read`).
    pub(crate) fn fast(&self) -> Option<&crate::fast_read::FastRead> {
        self.fast.as_deref()
    }

    /// The pool, for tests and tools that inspect stored rows.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// SQLite BUSY/LOCKED (primary code, whatever the extended code), and
/// PostgreSQL's "too many connections" and "cannot connect now".
fn is_transient(code: Option<&str>) -> bool {
    match code {
        Some("53300" | "57P03") => true,
        // Any other PostgreSQL SQLSTATE (always five characters); SQLite's
        // extended result codes have at most four digits.
        Some(c) if c.len() == 5 => false,
        Some(c) => c
            .parse::<i64>()
            .map(|n| matches!(n & 0xff, 5 | 6))
            .unwrap_or(false),
        None => false,
    }
}

/// `($1, …, $w), ($w+1, …)`: `rows` groups of `width` numbered
/// placeholders, what a multi-row `INSERT … VALUES` binds.
pub(crate) fn placeholders(rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        // SQLITE_BUSY / SQLITE_LOCKED, and PostgreSQL's "too many connections"
        // and "cannot connect now": transient, worth a retry.
        sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

// Column lists as macros so that every statement is one `&'static str`
// assembled at compile time. (The two searches that pick among optional
// filters, records in `data.rs` and accounts in `lifecycle.rs`, join fixed
// fragments at run time; every value is still bound.)
macro_rules! account_cols {
    () => {
        "a.id AS a_id, a.email AS a_email, a.display_name AS a_display_name, \
         a.password_hash AS a_password_hash, a.role AS a_role, a.created_at AS a_created_at, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM mfa_factors f \
              WHERE f.account_id = a.id AND f.confirmed_at IS NOT NULL) THEN 1 ELSE 0 END AS BIGINT) AS a_has_mfa, \
         a.email_verified_at AS a_email_verified_at, a.disabled_at AS a_disabled_at, \
         a.delete_after AS a_delete_after, a.last_sign_in_at AS a_last_sign_in_at, \
         a.device_epoch AS a_device_epoch"
    };
}

macro_rules! session_cols {
    () => {
        "s.id, s.account_id, s.token_hash, s.created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent, s.step_up_at, \
         COALESCE(s.last_ip, s.ip) AS last_ip, COALESCE(s.last_user_agent, s.user_agent) AS last_user_agent"
    };
}

/// Whether an incident in force keeps out the holder of something
/// (a session, an API key) made at `$made` for account `$owner` whose role
/// is `$role` (ADR 0014): every lookup asks, so a lockdown holds on every
/// node at once, whatever a concurrent sign-in did.
macro_rules! kept_out_by_incident {
    ($owner:literal, $made:literal, $role:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM incidents i WHERE i.lifted_at IS NULL AND (",
            "(i.scope = 'deployment' AND (",
            $role,
            " <> 'admin' OR (",
            $made,
            " < i.started_at AND ",
            $owner,
            " <> COALESCE(i.break_glass, '')))) OR ",
            "(i.scope = 'accounts' AND EXISTS (SELECT 1 FROM incident_accounts x ",
            "WHERE x.incident_id = i.id AND x.account_id = ",
            $owner,
            "))))"
        )
    };
}
pub(crate) use account_cols;
pub(crate) use kept_out_by_incident;

/// The session and its account by token hash, unless an incident keeps
/// the account out. Shared with `fast_read`.
pub(crate) const SESSION_BY_TOKEN: &str = concat!(
    "SELECT ",
    session_cols!(),
    ", ",
    account_cols!(),
    " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1 AND a.disabled_at IS NULL AND NOT ",
    kept_out_by_incident!("s.account_id", "s.created_at", "a.role")
);

pub(crate) fn account_from(row: &AnyRow) -> Result<Account, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    let email: String = row.try_get("a_email").map_err(get)?;
    let role: String = row.try_get("a_role").map_err(get)?;
    Ok(Account {
        id: AccountId(row.try_get("a_id").map_err(get)?),
        email: Email::from_stored(email),
        display_name: row.try_get("a_display_name").map_err(get)?,
        password_hash: SecretString::new(row.try_get("a_password_hash").map_err(get)?),
        role: Role::parse(&role).ok_or(StoreError::Corrupt("account role"))?,
        created_at: Timestamp(row.try_get("a_created_at").map_err(get)?),
        has_mfa: row.try_get::<i64, _>("a_has_mfa").map_err(get)? != 0,
        lifecycle: rampart_core::model::Lifecycle {
            email_verified_at: opt_time(row, "a_email_verified_at")?,
            disabled_at: opt_time(row, "a_disabled_at")?,
            delete_after: opt_time(row, "a_delete_after")?,
            last_sign_in_at: opt_time(row, "a_last_sign_in_at")?,
            device_epoch: row.try_get("a_device_epoch").map_err(get)?,
        },
    })
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row
        .try_get::<Option<i64>, _>(col)
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .map(Timestamp))
}

fn session_from(row: &AnyRow) -> Result<Session, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    Ok(Session {
        id: SessionId(row.try_get("id").map_err(get)?),
        account_id: AccountId(row.try_get("account_id").map_err(get)?),
        token_hash: row.try_get("token_hash").map_err(get)?,
        created_at: Timestamp(row.try_get("created_at").map_err(get)?),
        last_seen_at: Timestamp(row.try_get("last_seen_at").map_err(get)?),
        expires_at: Timestamp(row.try_get("expires_at").map_err(get)?),
        ip: row.try_get("ip").map_err(get)?,
        user_agent: row.try_get("user_agent").map_err(get)?,
        step_up_at: Timestamp(row.try_get("step_up_at").map_err(get)?),
        last_ip: row.try_get("last_ip").map_err(get)?,
        last_user_agent: row.try_get("last_user_agent").map_err(get)?,
    })
}

macro_rules! factor_cols {
    () => {
        "id, account_id, kind, name, sealed, created_at, confirmed_at, last_used_at, last_step, credential_hash"
    };
}

fn factor_from(row: &AnyRow) -> Result<Factor, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    let kind: String = row.try_get("kind").map_err(get)?;
    Ok(Factor {
        id: FactorId(row.try_get("id").map_err(get)?),
        account_id: AccountId(row.try_get("account_id").map_err(get)?),
        kind: FactorKind::parse(&kind).ok_or(StoreError::Corrupt("factor kind"))?,
        name: row.try_get("name").map_err(get)?,
        sealed: row.try_get("sealed").map_err(get)?,
        created_at: Timestamp(row.try_get("created_at").map_err(get)?),
        confirmed_at: row
            .try_get::<Option<i64>, _>("confirmed_at")
            .map_err(get)?
            .map(Timestamp),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")
            .map_err(get)?
            .map(Timestamp),
        last_step: row.try_get("last_step").map_err(get)?,
        credential_hash: row.try_get("credential_hash").map_err(get)?,
    })
}

fn challenge_from(purpose: ChallengePurpose, row: &AnyRow) -> Result<Challenge, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    let tries: i64 = row.try_get("tries").map_err(get)?;
    Ok(Challenge {
        purpose,
        bound: row.try_get("bound").map_err(get)?,
        account_id: AccountId(row.try_get("account_id").map_err(get)?),
        factor_id: row
            .try_get::<Option<String>, _>("factor_id")
            .map_err(get)?
            .map(FactorId),
        state: row.try_get("state").map_err(get)?,
        tries: u32::try_from(tries).unwrap_or(u32::MAX),
        expires_at: Timestamp(row.try_get("expires_at").map_err(get)?),
    })
}

fn pending_from(row: &AnyRow) -> Result<PendingLogin, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    let failures: i64 = row.try_get("failures").map_err(get)?;
    Ok(PendingLogin {
        token_hash: row.try_get("token_hash").map_err(get)?,
        account_id: AccountId(row.try_get("account_id").map_err(get)?),
        password_fp: row.try_get("password_fp").map_err(get)?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        expires_at: Timestamp(row.try_get("expires_at").map_err(get)?),
    })
}

pub(crate) fn event_from(row: &AnyRow) -> Result<SecurityEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Backend(e.to_string());
    let kind: String = row.try_get("kind").map_err(get)?;
    let outcome: String = row.try_get("outcome").map_err(get)?;
    let account: Option<String> = row.try_get("account_id").map_err(get)?;
    Ok(SecurityEvent {
        id: EventId(row.try_get("id").map_err(get)?),
        at: Timestamp(row.try_get("at").map_err(get)?),
        kind: EventKind::parse(&kind).ok_or(StoreError::Corrupt("event kind"))?,
        outcome: Outcome::parse(&outcome).ok_or(StoreError::Corrupt("event outcome"))?,
        reason: row.try_get("reason").map_err(get)?,
        account_id: account.map(AccountId),
        ip: row.try_get("ip").map_err(get)?,
        user_agent: row.try_get("user_agent").map_err(get)?,
        request_id: row.try_get("request_id").map_err(get)?,
    })
}

fn block_from(row: &AnyRow) -> Result<IpBlock, StoreError> {
    let corrupt = |_| StoreError::Corrupt("ip_blocks");
    let offence: i64 = row.try_get("offence").map_err(corrupt)?;
    Ok(IpBlock {
        id: row.try_get("id").map_err(corrupt)?,
        network: row.try_get("network").map_err(corrupt)?,
        reason: row.try_get("reason").map_err(corrupt)?,
        source: row.try_get("source").map_err(corrupt)?,
        created_at: Timestamp(row.try_get("created_at").map_err(corrupt)?),
        expires_at: Timestamp(row.try_get("expires_at").map_err(corrupt)?),
        offence: u32::try_from(offence).map_err(|_| StoreError::Corrupt("ip_blocks"))?,
    })
}

fn insert_account_query(
    a: &Account,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "INSERT INTO accounts (id, email, display_name, password_hash, role, created_at, email_verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(a.id.as_str())
    .bind(a.email.as_str())
    .bind(a.display_name.as_deref())
    .bind(a.password_hash.expose_secret())
    .bind(a.role.as_str())
    .bind(a.created_at.millis())
    .bind(a.lifecycle.email_verified_at.map(|t| t.millis()))
}

/// Inserts the account in `tx`, unless an unexpired undo link of another
/// account holds its address (ADR 0015): `Conflict`, as a taken address.
/// The insert comes first, so the check runs after any move of the address
/// that the insert had to wait for (SQLite's one writer; PostgreSQL's
/// unique index) and sees its undo link.
async fn insert_unheld(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    a: &Account,
) -> Result<(), StoreError> {
    insert_account_query(a)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    let held = sqlx::query(
        "SELECT 1 FROM email_tokens WHERE email = $1 AND purpose = 'undo' AND expires_at > $2 \
         AND account_id <> $3 LIMIT 1",
    )
    .bind(a.email.as_str())
    .bind(a.created_at.millis())
    .bind(a.id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    if held.is_some() {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(fast) = &self.fast {
            fast.close();
        }
        self.pool.close().await;
    }

    async fn insert_account(&self, a: &Account) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        insert_unheld(&mut tx, a).await?;
        tx.commit().await.map_err(backend)
    }

    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts a WHERE a.email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| account_from(&r))
        .transpose()
    }

    async fn account_by_id(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts a WHERE a.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| account_from(&r))
        .transpose()
    }

    async fn replace_password_hash(
        &self,
        id: &AccountId,
        expected: &str,
        phc: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        )
        .bind(phc)
        .bind(id.as_str())
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn change_password(
        &self,
        id: &AccountId,
        expected: &str,
        phc: &str,
        keep: &SessionId,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The session making the change must still exist (a revoked session
        // whose request was queued must not change anything), and the hash
        // must be the one just verified (no lost update).
        let alive = sqlx::query("SELECT 1 AS one FROM sessions WHERE id = $1 AND account_id = $2")
            .bind(keep.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let updated = sqlx::query(
            "UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        )
        .bind(phc)
        .bind(id.as_str())
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if alive.is_none() || updated.rows_affected() != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(None);
        }
        let r = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id <> $2")
            .bind(id.as_str())
            .bind(keep.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // A pending address change ends, and earlier device tokens stop
        // counting apart (ADR 0015).
        crate::lifecycle::end_links(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(r.rows_affected()))
    }

    async fn insert_account_with_token(
        &self,
        a: &Account,
        kind: OneTimeKind,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let spent = sqlx::query(
            "DELETE FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if spent.rows_affected() != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        insert_unheld(&mut tx, a).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn reserve_login_attempt(
        &self,
        key: &str,
        at: Timestamp,
        quiet_since: Timestamp,
        block_after: &(dyn Fn(u32) -> Option<Duration> + Send + Sync),
    ) -> Result<LoginAttempt, StoreError> {
        // The upsert is the transaction's first statement, so it takes the
        // write lock (SQLite) or the row lock (PostgreSQL) at once and holds
        // it until the block below is written.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row = sqlx::query(
            "INSERT INTO login_failures (key, failures, last_at, blocked_until) \
             VALUES ($1, 1, $2, 0) \
             ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN login_failures.last_at < $3 \
                             AND login_failures.blocked_until < $3 THEN 1 \
                        ELSE login_failures.failures + 1 END, \
             last_at = $2 \
             WHERE login_failures.blocked_until <= $2 \
             RETURNING failures",
        )
        .bind(key)
        .bind(at.millis())
        .bind(quiet_since.millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            tx.commit().await.map_err(backend)?;
            return Ok(LoginAttempt::Blocked);
        };
        let n: i64 = row.try_get("failures").map_err(backend)?;
        let failures = u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(block) = block_after(failures) {
            sqlx::query("UPDATE login_failures SET blocked_until = $2 WHERE key = $1")
                .bind(key)
                .bind(at.plus(block).millis())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(LoginAttempt::Allowed { failures })
    }

    async fn clear_login_failures(&self, key: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn settle_login_attempt(
        &self,
        key: &str,
        failures: u32,
        at: Timestamp,
        how: Settle,
    ) -> Result<bool, StoreError> {
        let sql = match how {
            Settle::Forget => {
                "DELETE FROM login_failures WHERE key = $1 AND failures = $2 AND last_at = $3"
            }
            Settle::Uncount => {
                "UPDATE login_failures SET failures = failures - 1 \
                 WHERE key = $1 AND failures = $2 AND last_at = $3"
            }
        };
        let r = sqlx::query(sql)
            .bind(key)
            .bind(i64::from(failures))
            .bind(at.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge_login_failures(&self, quiet_since: Timestamp) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM login_failures WHERE last_at < $1 AND blocked_until < $1")
            .bind(quiet_since.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn lock_login(
        &self,
        key: &str,
        until: Timestamp,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, last_at, blocked_until) VALUES ($1, 0, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at, blocked_until = \
             CASE WHEN excluded.blocked_until > login_failures.blocked_until \
             THEN excluded.blocked_until ELSE login_failures.blocked_until END",
        )
        .bind(key)
        .bind(at.millis())
        .bind(until.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn admin_exists(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        let n: i64 = row.try_get("n").map_err(backend)?;
        Ok(n > 0)
    }

    async fn insert_session(&self, s: &Session, password_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(self.dialect.insert_session_sql())
            .bind(s.id.as_str())
            .bind(s.account_id.as_str())
            .bind(s.token_hash.as_str())
            .bind(s.created_at.millis())
            .bind(s.last_seen_at.millis())
            .bind(s.expires_at.millis())
            .bind(s.ip.as_deref())
            .bind(s.user_agent.as_deref())
            .bind(password_hash)
            .bind(s.step_up_at.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Session, Account)>, StoreError> {
        if let Some(fast) = &self.fast {
            return fast.session_by_token_hash(token_hash);
        }
        let Some(row) = sqlx::query(SESSION_BY_TOKEN)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let session = session_from(&row)?;
        let account = account_from(&row)?;
        Ok(Some((session, account)))
    }

    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(at.millis())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn move_session(
        &self,
        id: &SessionId,
        from: (Option<&str>, Option<&str>),
        to: (Option<&str>, Option<&str>),
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET last_ip = $1, last_user_agent = $2 WHERE id = $3 \
             AND COALESCE(last_ip, ip, '') = $4 AND COALESCE(last_user_agent, user_agent, '') = $5",
        )
        .bind(to.0)
        .bind(to.1)
        .bind(id.as_str())
        .bind(from.0.unwrap_or(""))
        .bind(from.1.unwrap_or(""))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_session(
        &self,
        account: &AccountId,
        id: &SessionId,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE id = $1 AND account_id = $2")
            .bind(id.as_str())
            .bind(account.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn sessions_of(&self, account: &AccountId) -> Result<Vec<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions s WHERE s.account_id = $1 ORDER BY s.created_at DESC, s.id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(session_from)
        .collect()
    }

    async fn anchor_session(
        &self,
        id: &SessionId,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET ip = $1, user_agent = $2, last_ip = NULL, last_user_agent = NULL \
             WHERE id = $3",
        )
        .bind(ip)
        .bind(user_agent)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn session_places(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(AccountId, Option<String>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id, ip, user_agent FROM sessions WHERE expires_at > $1 \
             ORDER BY last_seen_at DESC, id LIMIT $2",
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    AccountId(r.try_get("account_id").map_err(backend)?),
                    r.try_get("ip").map_err(backend)?,
                    r.try_get("user_agent").map_err(backend)?,
                ))
            })
            .collect()
    }

    async fn delete_expired_sessions(
        &self,
        now: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now.millis())
            .bind(idle_before.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn replace_one_time_tokens(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM one_time_tokens WHERE kind = $1")
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, kind, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(expires_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn insert_one_time_token(
        &self,
        kind: OneTimeKind,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, kind, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn factors_of(&self, account: &AccountId) -> Result<Vec<Factor>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            factor_cols!(),
            " FROM mfa_factors WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(factor_from)
        .collect()
    }

    async fn insert_factor(&self, f: &Factor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_factors (id, account_id, kind, name, sealed, created_at, confirmed_at, last_used_at, last_step, credential_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id.as_str())
        .bind(f.account_id.as_str())
        .bind(f.kind.as_str())
        .bind(f.name.as_str())
        .bind(f.sealed.as_deref())
        .bind(f.created_at.millis())
        .bind(f.confirmed_at.map(Timestamp::millis))
        .bind(f.last_used_at.map(Timestamp::millis))
        .bind(f.last_step)
        .bind(f.credential_hash.as_deref())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn confirm_factor(
        &self,
        account: &AccountId,
        id: &FactorId,
        sealed: Option<&str>,
        now: Timestamp,
        keep: &SessionId,
    ) -> Result<Option<Confirmed>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Serialise enrolments of one account (see delete_factor), so only
        // one confirmation can be the first.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let before = sqlx::query(
            "SELECT COUNT(*) AS n FROM mfa_factors WHERE account_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(account.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let before: i64 = before.try_get("n").map_err(backend)?;
        // Only the factor as it was checked: a number re-pointed meanwhile
        // is not confirmed by a code sent to the old one.
        let row = sqlx::query(
            "UPDATE mfa_factors SET confirmed_at = $3 \
             WHERE id = $1 AND account_id = $2 AND confirmed_at IS NULL \
             AND COALESCE(sealed, '') = COALESCE(CAST($4 AS TEXT), '') RETURNING kind",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(now.millis())
        .bind(sealed)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(backend)?;
            return Ok(None);
        };
        let kind: String = row.try_get("kind").map_err(backend)?;
        let kind = FactorKind::parse(&kind).ok_or(StoreError::Corrupt("factor kind"))?;
        let mut replaced = 0;
        if kind.is_single() {
            sqlx::query(
                "DELETE FROM mfa_factors WHERE account_id = $1 AND kind = $2 AND id <> $3 \
                 AND confirmed_at IS NULL",
            )
            .bind(account.as_str())
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            replaced = sqlx::query(
                "DELETE FROM mfa_factors WHERE account_id = $1 AND kind = $2 AND id <> $3",
            )
            .bind(account.as_str())
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        }
        let first = before == 0;
        let mut sessions_ended = 0;
        if first {
            sessions_ended = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id <> $2")
                .bind(account.as_str())
                .bind(keep.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(Confirmed {
            replaced,
            first,
            sessions_ended,
        }))
    }

    async fn delete_factor(
        &self,
        account: &AccountId,
        id: &FactorId,
        keep_last: bool,
    ) -> Result<FactorRemoval, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // A no-op write to the account row: it takes SQLite's write lock or
        // PostgreSQL's row lock, so removals on one account run one at a
        // time and each sees the others' result.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let row = sqlx::query(
            "SELECT kind, confirmed_at, \
             (SELECT COUNT(*) FROM mfa_factors WHERE account_id = $2 AND confirmed_at IS NOT NULL) AS confirmed \
             FROM mfa_factors WHERE id = $1 AND account_id = $2",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(backend)?;
            return Ok(FactorRemoval::NotFound);
        };
        let kind: String = row.try_get("kind").map_err(backend)?;
        let kind = FactorKind::parse(&kind).ok_or(StoreError::Corrupt("factor kind"))?;
        let confirmed: Option<i64> = row.try_get("confirmed_at").map_err(backend)?;
        let count: i64 = row.try_get("confirmed").map_err(backend)?;
        if keep_last && confirmed.is_some() && count <= 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(FactorRemoval::LastFactor);
        }
        sqlx::query("DELETE FROM mfa_factors WHERE id = $1 AND account_id = $2")
            .bind(id.as_str())
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(FactorRemoval::Deleted(kind))
    }

    async fn accept_totp_step(
        &self,
        id: &FactorId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE mfa_factors SET last_step = $2, last_used_at = $3 \
             WHERE id = $1 AND last_step < $2",
        )
        .bind(id.as_str())
        .bind(step)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn factor_used(
        &self,
        id: &FactorId,
        now: Timestamp,
        sealed: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mfa_factors SET last_used_at = $2, sealed = COALESCE($3, sealed) WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(now.millis())
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn update_pending_factor(
        &self,
        id: &FactorId,
        name: &str,
        sealed: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mfa_factors SET name = $2, sealed = COALESCE($3, sealed) \
             WHERE id = $1 AND confirmed_at IS NULL",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn note_code_send(
        &self,
        id: &FactorId,
        now: Timestamp,
        min_gap: Duration,
        window: Duration,
        max: u32,
    ) -> Result<Option<Timestamp>, StoreError> {
        // One statement: a new window starts when the last one is over;
        // otherwise the send counts only while under both limits.
        let r = sqlx::query(
            "UPDATE mfa_factors SET \
             sends = CASE WHEN send_window <= $3 THEN 1 ELSE sends + 1 END, \
             send_window = CASE WHEN send_window <= $3 THEN $2 ELSE send_window END, \
             last_sent_at = $2 \
             WHERE id = $1 AND last_sent_at <= $4 AND (send_window <= $3 OR sends < $5)",
        )
        .bind(id.as_str())
        .bind(now.millis())
        .bind(now.minus(window).millis())
        .bind(now.minus(min_gap).millis())
        .bind(i64::from(max))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 1 {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT send_window, sends, last_sent_at FROM mfa_factors WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        let Some(row) = row else {
            return Ok(Some(now.plus(min_gap)));
        };
        let started: i64 = row.try_get("send_window").map_err(backend)?;
        let sends: i64 = row.try_get("sends").map_err(backend)?;
        let last: i64 = row.try_get("last_sent_at").map_err(backend)?;
        let gap_ends = Timestamp(last).plus(min_gap);
        let window_ends = Timestamp(started).plus(window);
        Ok(Some(if sends >= i64::from(max) && window_ends > now {
            window_ends.max(gap_ends)
        } else {
            gap_ends
        }))
    }

    async fn count_send(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        max: u32,
    ) -> Result<Option<Timestamp>, StoreError> {
        // One statement: a window that is over starts again at 1; otherwise
        // the send counts only while under the limit.
        let row = sqlx::query(
            "INSERT INTO send_counts (key, window_start, sends) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
             sends = CASE WHEN send_counts.window_start <= $3 THEN 1 ELSE send_counts.sends + 1 END, \
             window_start = CASE WHEN send_counts.window_start <= $3 THEN $2 ELSE send_counts.window_start END \
             WHERE send_counts.window_start <= $3 OR send_counts.sends < $4 \
             RETURNING sends",
        )
        .bind(key)
        .bind(now.millis())
        .bind(now.minus(window).millis())
        .bind(i64::from(max))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if row.is_some() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT window_start FROM send_counts WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let start: i64 = match row {
            Some(r) => r.try_get("window_start").map_err(backend)?,
            None => now.millis(),
        };
        Ok(Some(Timestamp(start).plus(window)))
    }

    async fn put_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_challenges (purpose, bound, account_id, factor_id, state, tries, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (purpose, bound) DO UPDATE SET account_id = $3, factor_id = $4, \
             state = $5, tries = $6, expires_at = $7",
        )
        .bind(c.purpose.as_str())
        .bind(c.bound.as_str())
        .bind(c.account_id.as_str())
        .bind(c.factor_id.as_ref().map(FactorId::as_str))
        .bind(c.state.as_str())
        .bind(i64::from(c.tries))
        .bind(c.expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        now: Timestamp,
    ) -> Result<Option<Challenge>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM mfa_challenges WHERE purpose = $1 AND bound = $2 \
             RETURNING bound, account_id, factor_id, state, tries, expires_at",
        )
        .bind(purpose.as_str())
        .bind(bound)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let c = challenge_from(purpose, &row)?;
        Ok((c.expires_at > now).then_some(c))
    }

    async fn try_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        now: Timestamp,
    ) -> Result<Option<Challenge>, StoreError> {
        let row = sqlx::query(
            "UPDATE mfa_challenges SET tries = tries + 1 \
             WHERE purpose = $1 AND bound = $2 AND expires_at > $3 \
             RETURNING bound, account_id, factor_id, state, tries, expires_at",
        )
        .bind(purpose.as_str())
        .bind(bound)
        .bind(now.millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| challenge_from(purpose, &r)).transpose()
    }

    async fn spend_challenge(
        &self,
        purpose: ChallengePurpose,
        bound: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "DELETE FROM mfa_challenges WHERE purpose = $1 AND bound = $2 AND state = $3",
        )
        .bind(purpose.as_str())
        .bind(bound)
        .bind(state)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_pending_login(&self, p: &PendingLogin) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_pending_logins (token_hash, account_id, password_fp, failures, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(p.token_hash.as_str())
        .bind(p.account_id.as_str())
        .bind(p.password_fp.as_str())
        .bind(i64::from(p.failures))
        .bind(p.expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn pending_login(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<PendingLogin>, StoreError> {
        sqlx::query(
            "SELECT token_hash, account_id, password_fp, failures, expires_at \
             FROM mfa_pending_logins WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now.millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .map(|r| pending_from(&r))
        .transpose()
    }

    async fn pending_login_failed(&self, token_hash: &str) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query(
            "UPDATE mfa_pending_logins SET failures = failures + 1 WHERE token_hash = $1 \
             RETURNING failures",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let n: i64 = row.try_get("failures").map_err(backend)?;
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn take_pending_login(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM mfa_pending_logins WHERE token_hash = $1 \
             RETURNING token_hash, account_id, password_fp, failures, expires_at",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let p = pending_from(&row)?;
        Ok((p.expires_at > now).then_some(p))
    }

    async fn void_pending_logins(&self, account: &AccountId) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let r = sqlx::query("DELETE FROM mfa_pending_logins WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "DELETE FROM mfa_challenges WHERE account_id = $1 AND purpose IN ('login_code', 'login_passkey')",
        )
        .bind(account.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn replace_recovery_codes(
        &self,
        account: &AccountId,
        macs: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for mac in macs {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_mac) VALUES ($1, $2)")
                .bind(account.as_str())
                .bind(mac.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn use_recovery_code(
        &self,
        account: &AccountId,
        mac: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE account_id = $1 AND code_mac = $2 AND used_at IS NULL",
        )
        .bind(account.as_str())
        .bind(mac)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, account: &AccountId) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let n: i64 = row.try_get("n").map_err(backend)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn set_step_up(&self, session: &SessionId, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET step_up_at = $2 WHERE id = $1")
            .bind(session.as_str())
            .bind(at.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn reset_mfa(&self, account: &AccountId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for sql in [
            "DELETE FROM mfa_factors WHERE account_id = $1",
            "DELETE FROM recovery_codes WHERE account_id = $1",
            "DELETE FROM mfa_challenges WHERE account_id = $1",
            "DELETE FROM mfa_pending_logins WHERE account_id = $1",
            "DELETE FROM sessions WHERE account_id = $1",
        ] {
            sqlx::query(sql)
                .bind(account.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn purge_mfa(&self, now: Timestamp, stale_before: Timestamp) -> Result<u64, StoreError> {
        let mut n = 0;
        for (sql, at) in [
            ("DELETE FROM mfa_challenges WHERE expires_at <= $1", now),
            (
                "DELETE FROM send_counts WHERE window_start <= $1",
                stale_before,
            ),
            ("DELETE FROM mfa_pending_logins WHERE expires_at <= $1", now),
            (
                "DELETE FROM mfa_factors WHERE confirmed_at IS NULL AND created_at <= $1",
                stale_before,
            ),
        ] {
            n += sqlx::query(sql)
                .bind(at.millis())
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        Ok(n)
    }

    async fn key_checks(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT sealed FROM key_checks")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.try_get("sealed").map_err(backend))
            .collect()
    }

    async fn sealed_factors(&self) -> Result<Vec<(FactorId, String, String)>, StoreError> {
        sqlx::query("SELECT id, kind, sealed FROM mfa_factors WHERE sealed IS NOT NULL")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok((
                    FactorId(r.try_get("id").map_err(backend)?),
                    r.try_get("kind").map_err(backend)?,
                    r.try_get("sealed").map_err(backend)?,
                ))
            })
            .collect()
    }

    async fn reseal_factor(&self, id: &FactorId, old: &str, new: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE mfa_factors SET sealed = $3 WHERE id = $1 AND sealed = $2")
            .bind(id.as_str())
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn reseal_key_check(
        &self,
        key_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE key_checks SET sealed = $3, key_id = $1 WHERE id = 1 AND sealed = $2",
        )
        .bind(key_id)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn add_first_key_check(
        &self,
        key_id: &str,
        sealed: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO key_checks (id, key_id, sealed, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(key_id)
        .bind(sealed)
        .bind(at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }

    async fn admin_posture(&self) -> Result<Vec<rampart_core::AdminPosture>, StoreError> {
        self.admin_posture_rows().await
    }

    async fn admin_session_addresses(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT s.ip FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE a.role = 'admin' AND s.ip IS NOT NULL AND s.expires_at > $1 \
             AND s.step_up_at <> $2 ORDER BY s.ip",
        )
        .bind(now.millis())
        .bind(rampart_core::auth::STEP_UP_HELD.millis())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("ip").map_err(backend))
            .collect()
    }

    async fn api_key_posture(
        &self,
        now: Timestamp,
    ) -> Result<Vec<rampart_core::ApiKeyPosture>, StoreError> {
        self.api_key_posture_rows(now).await
    }

    async fn insert_scan_report(&self, r: &rampart_core::ScanReportRow) -> Result<(), StoreError> {
        self.insert_scan_report_row(r).await
    }

    async fn latest_scan_reports(&self) -> Result<Vec<rampart_core::ScanReportRow>, StoreError> {
        self.latest_scan_report_rows().await
    }

    async fn recent_scan_reports(
        &self,
        kind: &str,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<rampart_core::ScanReportRow>, StoreError> {
        self.recent_scan_report_rows(kind, target, limit).await
    }

    async fn scan_report(
        &self,
        id: &str,
    ) -> Result<Option<rampart_core::ScanReportRow>, StoreError> {
        self.scan_report_row(id).await
    }

    async fn insert_block(&self, b: &IpBlock) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ip_blocks (id, network, reason, source, created_at, expires_at, offence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(b.id.as_str())
        .bind(b.network.as_str())
        .bind(b.reason.as_str())
        .bind(b.source.as_str())
        .bind(b.created_at.millis())
        .bind(b.expires_at.millis())
        .bind(i64::from(b.offence))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn active_blocks(&self, now: Timestamp, limit: u32) -> Result<Vec<IpBlock>, StoreError> {
        sqlx::query(
            "SELECT id, network, reason, source, created_at, expires_at, offence FROM ip_blocks \
             WHERE expires_at > $1 AND lifted_at IS NULL \
             ORDER BY CASE WHEN source LIKE 'auto:%' THEN 1 ELSE 0 END, created_at DESC, id DESC LIMIT $2",
        )
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(block_from)
        .collect()
    }

    async fn block_count(&self, network: &str, since: Timestamp) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ip_blocks WHERE network = $1 AND created_at >= $2 AND lifted_at IS NULL",
        )
        .bind(network)
        .bind(since.millis())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn take_rate_token(
        &self,
        key: &str,
        now: Timestamp,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let t = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        let tolerance = t.saturating_mul(i64::from(burst.max(1)) - 1);
        // GCRA in one statement: the request conforms when the bucket's
        // theoretical arrival time is no further ahead of now than the
        // tolerance; it then moves on by one interval.
        let taken = sqlx::query(
            "INSERT INTO rate_buckets (key, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (key) DO UPDATE SET \
             tat = (CASE WHEN rate_buckets.tat > $2 THEN rate_buckets.tat ELSE $2 END) + $3 \
             WHERE (CASE WHEN rate_buckets.tat > $2 THEN rate_buckets.tat ELSE $2 END) - $2 <= $4 \
             RETURNING tat",
        )
        .bind(key)
        .bind(now.millis())
        .bind(t)
        .bind(tolerance)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if taken.is_some() {
            return Ok(None);
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_buckets WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let wait = tat.unwrap_or(0) - now.millis() - tolerance;
        Ok(Some(Duration::from_millis(
            u64::try_from(wait).unwrap_or(0).max(1),
        )))
    }

    async fn insert_unlock_token(
        &self,
        token_hash: &str,
        account: &AccountId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM unlock_tokens WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO unlock_tokens (token_hash, account_id, expires_at, uses) VALUES ($1, $2, $3, 0)")
            .bind(token_hash)
            .bind(account.as_str())
            .bind(expires_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn use_unlock_token(
        &self,
        token_hash: &str,
        now: Timestamp,
        max_uses: u32,
    ) -> Result<Option<AccountId>, StoreError> {
        let account: Option<String> = sqlx::query_scalar(
            "UPDATE unlock_tokens SET uses = uses + 1 \
             WHERE token_hash = $1 AND expires_at > $2 AND uses < $3 RETURNING account_id",
        )
        .bind(token_hash)
        .bind(now.millis())
        .bind(i64::from(max_uses))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(account.map(AccountId))
    }

    async fn delete_unlock_tokens(&self, account: &AccountId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM unlock_tokens WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn purge_rate_buckets(&self, now: Timestamp) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM rate_buckets WHERE tat < $1")
            .bind(now.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn purge_blocks(&self, before: Timestamp) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM ip_blocks WHERE expires_at < $1 OR lifted_at < $1")
            .bind(before.millis())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn lift_block(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE ip_blocks SET lifted_at = $1 WHERE id = $2 AND lifted_at IS NULL AND expires_at > $1",
        )
        .bind(now.millis())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(r.rows_affected() == 1)
    }
}
