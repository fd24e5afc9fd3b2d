//! The queries. One text per statement, the same for both dialects, with
//! every value bound as a parameter.

use std::time::Duration;

use async_trait::async_trait;
use rampart_core::events::{EventFilter, EventKind, Outcome, SecurityEvent};
use rampart_core::model::{Account, OneTimeKind, Role, Session};
use rampart_core::{
    AccountId, Email, EventId, LoginAttempt, SessionId, Settle, Store, StoreError, Timestamp,
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
}

impl SqlStore {
    pub(crate) fn new(
        pool: AnyPool,
        dialect: Dialect,
        fast: Option<crate::fast_read::FastRead>,
    ) -> Self {
        Self {
            pool,
            dialect,
            fast: fast.map(std::sync::Arc::new),
        }
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
        Some(c) => c
            .parse::<i64>()
            .map(|n| matches!(n & 0xff, 5 | 6))
            .unwrap_or(false),
        None => false,
    }
}

fn backend(e: sqlx::Error) -> StoreError {
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
// assembled at compile time: no SQL text is built at run time.
macro_rules! account_cols {
    () => {
        "a.id AS a_id, a.email AS a_email, a.display_name AS a_display_name, \
         a.password_hash AS a_password_hash, a.role AS a_role, a.created_at AS a_created_at"
    };
}

macro_rules! session_cols {
    () => {
        "s.id, s.account_id, s.token_hash, s.created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent"
    };
}

/// The session and its account by token hash. Shared with `fast_read`.
pub(crate) const SESSION_BY_TOKEN: &str = concat!(
    "SELECT ",
    session_cols!(),
    ", ",
    account_cols!(),
    " FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1"
);

fn account_from(row: &AnyRow) -> Result<Account, StoreError> {
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
    })
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
    })
}

fn event_from(row: &AnyRow) -> Result<SecurityEvent, StoreError> {
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

fn insert_account_query(
    a: &Account,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "INSERT INTO accounts (id, email, display_name, password_hash, role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.id.as_str())
    .bind(a.email.as_str())
    .bind(a.display_name.as_deref())
    .bind(a.password_hash.expose_secret())
    .bind(a.role.as_str())
    .bind(a.created_at.millis())
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
        insert_account_query(a)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
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
        insert_account_query(a)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
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

    async fn insert_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO security_events (id, at, kind, outcome, reason, account_id, ip, user_agent, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.id.as_str())
        .bind(e.at.millis())
        .bind(e.kind.as_str())
        .bind(e.outcome.as_str())
        .bind(e.reason.as_deref())
        .bind(e.account_id.as_ref().map(AccountId::as_str))
        .bind(e.ip.as_deref())
        .bind(e.user_agent.as_deref())
        .bind(e.request_id.as_deref())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn events(&self, f: &EventFilter) -> Result<Vec<SecurityEvent>, StoreError> {
        let (cursor_at, cursor_id) = match &f.cursor {
            Some((at, id)) => (Some(at.millis()), Some(id.as_str())),
            None => (None, None),
        };
        sqlx::query(
            "SELECT id, at, kind, outcome, reason, account_id, ip, user_agent, request_id \
             FROM security_events \
             WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) \
               AND (CAST($2 AS TEXT) IS NULL OR account_id = $2) \
               AND (CAST($3 AS TEXT) IS NULL OR ip = $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR at >= $4) \
               AND (CAST($5 AS BIGINT) IS NULL OR at < $5) \
               AND (CAST($6 AS BIGINT) IS NULL OR at < $6 OR (at = $6 AND id < $7)) \
             ORDER BY at DESC, id DESC LIMIT $8",
        )
        .bind(f.kind.map(EventKind::as_str))
        .bind(f.account_id.as_ref().map(AccountId::as_str))
        .bind(f.ip.as_deref())
        .bind(f.since.map(Timestamp::millis))
        .bind(f.until.map(Timestamp::millis))
        .bind(cursor_at)
        .bind(cursor_id)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(event_from)
        .collect()
    }
}
