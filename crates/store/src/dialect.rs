//! What differs between SQLite and PostgreSQL: how to connect, the pragmas,
//! and which embedded migrations apply.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::SqlStore;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Whether the pool checks a connection before handing it out. For an
    /// embedded SQLite file that check is a pointless round trip to the
    /// connection's worker thread; for a server it catches dead sockets.
    fn test_before_acquire(self) -> bool {
        self == Dialect::Postgres
    }

    /// Inserts a session only while the account's password hash is the one
    /// just verified. PostgreSQL runs at READ COMMITTED, so the check must
    /// lock the account row (`FOR SHARE`) to wait for a concurrent password
    /// change; SQLite has one writer at a time and no such clause.
    pub(crate) fn insert_session_sql(self) -> &'static str {
        match self {
            Dialect::Sqlite => concat!(
                "INSERT INTO sessions (id, account_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent, step_up_at) ",
                "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $10 ",
                "WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND password_hash = $9)"
            ),
            Dialect::Postgres => concat!(
                "INSERT INTO sessions (id, account_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent, step_up_at) ",
                "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $10 ",
                "WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND password_hash = $9 FOR SHARE)"
            ),
        }
    }

    fn max_connections(self) -> u32 {
        match self {
            Dialect::Sqlite => 8,
            Dialect::Postgres => 16,
        }
    }
}

/// Why the database could not be opened. Messages never include the URL,
/// which may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database URL must start with sqlite: or postgres://")]
    UnknownScheme,
    #[error("the database URL is malformed")]
    BadUrl,
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(
        "this database was written by a newer Rampart (schema version {found}; this build knows up to {known}). \
         Run the newer version, or restore a backup made by this one."
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("applying database migrations failed: {0}")]
    Migrate(String),
    #[error("the database schema is version {found}, this build's is {known}; start `rampart serve` of this version first")]
    OtherSchema { found: i64, known: i64 },
}

/// Connects, applies this dialect's pragmas and pending migrations, and
/// refuses a database whose schema is newer than this build.
pub async fn open(url: &str) -> Result<SqlStore, OpenError> {
    let (pool, dialect) = connect(url).await?;
    migrate(&pool, dialect).await?;
    Ok(store(pool, dialect, url))
}

/// Connects without migrating anything, for tools that only look (`rampart
/// scan self`): refuses a database whose schema is not exactly this
/// build's, which a running older node would otherwise find changed.
pub async fn open_as_is(url: &str) -> Result<SqlStore, OpenError> {
    let (pool, dialect) = connect(url).await?;
    let found: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
    let found = found.unwrap_or(0);
    if found != SCHEMA_VERSION {
        pool.close().await;
        return Err(OpenError::OtherSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(store(pool, dialect, url))
}

fn store(pool: AnyPool, dialect: Dialect, url: &str) -> SqlStore {
    let fast = match dialect {
        Dialect::Sqlite => crate::fast_read::FastRead::for_url(url),
        Dialect::Postgres => None,
    };
    SqlStore::new(pool, dialect, fast)
}

async fn connect(url: &str) -> Result<(AnyPool, Dialect), OpenError> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of_url(url).ok_or(OpenError::UnknownScheme)?;
    let options = AnyConnectOptions::from_str(url)
        .map_err(|_| OpenError::BadUrl)?
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(2));
    let pool = AnyPoolOptions::new()
        .max_connections(dialect.max_connections())
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(dialect.test_before_acquire())
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                         PRAGMA secure_delete = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| OpenError::Connect(describe(&e)))?;
    Ok((pool, dialect))
}

/// Without migrating anything: the key checks of a database from before
/// data keys (none for a fresh database or one already migrated), so that
/// the master key can be checked before a start changes the database.
pub async fn legacy_key_checks(url: &str) -> Result<Vec<String>, OpenError> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url).map_err(|_| OpenError::BadUrl)?;
    let mut conn = options
        .connect()
        .await
        .map_err(|e| OpenError::Connect(describe(&e)))?;
    let migrated = sqlx::query("SELECT 1 AS one FROM data_keys LIMIT 1")
        .fetch_optional(&mut conn)
        .await
        .is_ok();
    let checks = if migrated {
        Vec::new()
    } else {
        // No such table on a fresh database: no checks.
        sqlx::query("SELECT sealed FROM key_checks")
            .fetch_all(&mut conn)
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.try_get::<String, _>("sealed").ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let _ = conn.close().await;
    Ok(checks)
}

async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<(), OpenError> {
    match dialect.migrator().run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(found)) => Err(OpenError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        }),
        Err(e) => Err(OpenError::Migrate(e.to_string())),
    }
}

/// A connection error without the URL or credentials.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.kind().to_string(),
        sqlx::Error::Tls(_) => "TLS handshake with the database failed".to_owned(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out".to_owned(),
        other => other.to_string(),
    }
}
