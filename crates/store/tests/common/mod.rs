//! What every store test file shares: a fresh SQLite file and a fresh
//! PostgreSQL schema per test.

pub async fn postgres_url() -> Option<String> {
    let base = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = match sqlx::PgPool::connect(&base).await {
        Ok(p) => p,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at {base} is required under CI=true: {e}");
            }
            eprintln!("\n!!! SKIPPING PostgreSQL store test: no server at {base} ({e}) !!!\n");
            return None;
        }
    };
    let schema = format!("s_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    Some(format!("{base}?options=-c%20search_path%3D{schema}"))
}

/// Runs `body` against SQLite, then PostgreSQL when reachable.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                let store = open(&url).await.unwrap();
                ($body)(store, url).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(url) = postgres_url().await else {
                    return;
                };
                let store = open(&url).await.unwrap();
                ($body)(store, url).await;
            }
        }
    };
}

/// The keys every test trail uses (an attacker holding the master key
/// would hold these).
pub fn keys() -> rampart_crypto::audit::AuditKeys {
    rampart_crypto::audit::AuditKeys::derive(
        &rampart_crypto::SecretBytes::new(vec![9; 32]),
        rampart_core::audit::KEY_NAME,
    )
    .unwrap()
}

/// A writer of the chain `<node>-cli` on `store`.
pub async fn trail(
    store: &rampart_store::SqlStore,
    node: &str,
) -> (rampart_core::audit::Audit, tokio::task::JoinHandle<()>) {
    rampart_core::audit::Audit::start(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(keys()),
        node,
        rampart_core::audit::WriterMode::Command,
        None,
        std::sync::Arc::new(rampart_core::ManualClock::new(rampart_core::Timestamp(
            1_000,
        ))),
    )
    .await
    .unwrap()
}
