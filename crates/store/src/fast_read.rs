//! The read on every authenticated request, for SQLite, on the caller's
//! thread.
//!
//! sqlx's SQLite driver hands each statement to a worker thread per
//! connection and waits for the answer; on a small machine those thread
//! handoffs cost several times the query itself (profiled: most CPU time in
//! the kernel's context switching). Session lookup is a primary-key read
//! that takes microseconds, so it runs here, synchronously, on read-only
//! connections. WAL mode means readers never wait for the writer. Every
//! other statement still goes through sqlx.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rampart_core::model::{Account, Session};
use rampart_core::{AccountId, Email, SessionId, StoreError, Timestamp};
use rampart_crypto::SecretString;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::sql::SESSION_BY_TOKEN;

const KEEP: usize = 8;

/// The file a `sqlite:` URL names, read exactly as sqlx reads it
/// (percent-decoding included); `None` for other URLs and in-memory
/// databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains("mode=memory") || url.contains(":memory:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
        return None;
    }
    Some(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn paths_are_read_as_sqlx_reads_them() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a%20b/r.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("/tmp/a b/r.db")
        );
        assert_eq!(
            sqlite_path("sqlite://data/r.db").unwrap(),
            std::path::PathBuf::from("data/r.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_none());
        assert!(sqlite_path("sqlite://x.db?mode=memory").is_none());
        assert!(sqlite_path("postgres://h/db").is_none());
    }
}

#[derive(Debug)]
pub(crate) struct FastRead {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

fn err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

impl FastRead {
    /// For a `sqlite:` URL naming a file; `None` for in-memory databases.
    pub(crate) fn for_url(url: &str) -> Option<FastRead> {
        Some(FastRead {
            path: sqlite_path(url)?,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Closes the connections; later reads fail as the pool's would.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        c.busy_timeout(Duration::from_secs(2)).map_err(err)?;
        Ok(c)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("store closed".to_owned()));
        }
        let conn = match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(_) => None,
        };
        let conn = match conn {
            Some(c) => c,
            None => self.connect()?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < KEEP && !self.closed.load(Ordering::SeqCst) {
                idle.push(conn);
            }
        }
        out
    }

    pub(crate) fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Session, Account)>, StoreError> {
        self.with(|c| {
            // Columns by position, in SESSION_BY_TOKEN's order.
            let mut stmt = c.prepare_cached(SESSION_BY_TOKEN).map_err(err)?;
            let row = stmt
                .query_row([token_hash], |r| {
                    Ok((
                        Session {
                            id: SessionId(r.get(0)?),
                            account_id: AccountId(r.get(1)?),
                            token_hash: r.get(2)?,
                            created_at: Timestamp(r.get(3)?),
                            last_seen_at: Timestamp(r.get(4)?),
                            expires_at: Timestamp(r.get(5)?),
                            ip: r.get(6)?,
                            user_agent: r.get(7)?,
                            step_up_at: Timestamp(r.get(8)?),
                            last_ip: r.get(9)?,
                            last_user_agent: r.get(10)?,
                        },
                        (
                            r.get::<_, String>(11)?,
                            r.get::<_, String>(12)?,
                            r.get::<_, Option<String>>(13)?,
                            r.get::<_, String>(14)?,
                            r.get::<_, String>(15)?,
                            r.get::<_, i64>(16)?,
                            r.get::<_, i64>(17)?,
                        ),
                        rampart_core::model::Lifecycle {
                            email_verified_at: r.get::<_, Option<i64>>(18)?.map(Timestamp),
                            disabled_at: r.get::<_, Option<i64>>(19)?.map(Timestamp),
                            delete_after: r.get::<_, Option<i64>>(20)?.map(Timestamp),
                            last_sign_in_at: r.get::<_, Option<i64>>(21)?.map(Timestamp),
                            device_epoch: r.get::<_, i64>(22)?,
                        },
                    ))
                })
                .optional()
                .map_err(err)?;
            let Some((session, (id, email, display_name, hash, role, created, has_mfa), lifecycle)) = row
            else {
                return Ok(None);
            };
            let account = Account {
                id: AccountId(id),
                email: Email::from_stored(email),
                display_name,
                password_hash: SecretString::new(hash),
                role: rampart_core::Role::parse(&role)
                    .ok_or(StoreError::Corrupt("account role"))?,
                created_at: Timestamp(created),
                has_mfa: has_mfa != 0,
                lifecycle,
            };
            Ok(Some((session, account)))
        })
    }

    /// One record and its collection's revision (`DataStore::record`).
    pub(crate) fn record(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<(rampart_core::data::StoredRecord, i64)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(crate::data::RECORD_BY_ID).map_err(err)?;
            let row = stmt
                .query_row([collection, id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                        [
                            r.get::<_, String>(8)?,
                            r.get::<_, String>(9)?,
                            r.get::<_, String>(10)?,
                        ],
                        r.get::<_, i64>(11)?,
                    ))
                })
                .optional()
                .map_err(err)?;
            let Some((col, id, owner, created, updated, version, key, layout, json, rev)) = row
            else {
                return Ok(None);
            };
            let record = crate::data::record_of(
                col,
                id,
                owner,
                created,
                updated,
                version,
                key,
                layout,
                [&json[0], &json[1], &json[2]],
            )?;
            Ok(Some((record, rev)))
        })
    }
}
