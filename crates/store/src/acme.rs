//! Certificates obtained by ACME (ADR 0016): fixed statements, bound values.

use std::time::Duration;

use async_trait::async_trait;
use rampart_core::acme::{AcmeStore, PendingChallenge, SealedAccount, StoredCertificate};
use rampart_core::{StoreError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{backend, SqlStore};

fn cert_from(r: &AnyRow) -> Result<StoredCertificate, StoreError> {
    let corrupt = |_| StoreError::Corrupt("acme_certificates");
    Ok(StoredCertificate {
        directory: r.try_get("directory").map_err(corrupt)?,
        names: r.try_get("names").map_err(corrupt)?,
        chain_pem: r.try_get("chain_pem").map_err(corrupt)?,
        key_sealed: r.try_get("key_sealed").map_err(corrupt)?,
        not_before: Timestamp(r.try_get("not_before").map_err(corrupt)?),
        not_after: Timestamp(r.try_get("not_after").map_err(corrupt)?),
        renew_at: Timestamp(r.try_get("renew_at").map_err(corrupt)?),
        issued_at: Timestamp(r.try_get("issued_at").map_err(corrupt)?),
    })
}

#[async_trait]
impl AcmeStore for SqlStore {
    async fn acme_account(&self, directory: &str) -> Result<Option<SealedAccount>, StoreError> {
        let corrupt = |_| StoreError::Corrupt("acme_accounts");
        sqlx::query("SELECT credentials, created_at FROM acme_accounts WHERE directory = $1")
            .bind(directory)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .map(|r| {
                Ok(SealedAccount {
                    directory: directory.to_owned(),
                    credentials_sealed: r.try_get("credentials").map_err(corrupt)?,
                    created_at: Timestamp(r.try_get("created_at").map_err(corrupt)?),
                })
            })
            .transpose()
    }

    async fn insert_acme_account(&self, a: &SealedAccount) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3)",
        )
        .bind(&a.directory)
        .bind(&a.credentials_sealed)
        .bind(a.created_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn acme_certificate(
        &self,
        directory: &str,
        names: &str,
    ) -> Result<Option<StoredCertificate>, StoreError> {
        sqlx::query(
            "SELECT directory, names, chain_pem, key_sealed, not_before, not_after, renew_at, issued_at \
             FROM acme_certificates WHERE directory = $1 AND names = $2",
        )
        .bind(directory)
        .bind(names)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .map(|r| cert_from(&r))
        .transpose()
    }

    async fn put_acme_certificate(&self, c: &StoredCertificate) -> Result<bool, StoreError> {
        // One statement: the insert, or the update when the stored
        // certificate is older, so two nodes never interleave.
        let done = sqlx::query(
            "INSERT INTO acme_certificates \
             (directory, names, chain_pem, key_sealed, not_before, not_after, renew_at, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (directory, names) DO UPDATE SET \
             chain_pem = excluded.chain_pem, key_sealed = excluded.key_sealed, \
             not_before = excluded.not_before, not_after = excluded.not_after, \
             renew_at = excluded.renew_at, issued_at = excluded.issued_at \
             WHERE acme_certificates.not_after < excluded.not_after \
             OR (acme_certificates.not_after = excluded.not_after \
                 AND acme_certificates.issued_at < excluded.issued_at)",
        )
        .bind(&c.directory)
        .bind(&c.names)
        .bind(&c.chain_pem)
        .bind(&c.key_sealed)
        .bind(c.not_before.millis())
        .bind(c.not_after.millis())
        .bind(c.renew_at.millis())
        .bind(c.issued_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_acme_order(
        &self,
        directory: &str,
        names: &str,
        now: Timestamp,
        hold: Duration,
    ) -> Result<Option<u32>, StoreError> {
        sqlx::query(
            "INSERT INTO acme_orders (directory, names, failures, next_try_at) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (directory, names) DO NOTHING",
        )
        .bind(directory)
        .bind(names)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        let until = now.plus(hold).millis();
        let row = sqlx::query(
            "UPDATE acme_orders SET next_try_at = $3 \
             WHERE directory = $1 AND names = $2 AND next_try_at <= $4 RETURNING failures",
        )
        .bind(directory)
        .bind(names)
        .bind(until)
        .bind(now.millis())
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?;
        row.map(|r| {
            let n: i64 = r
                .try_get("failures")
                .map_err(|_| StoreError::Corrupt("acme_orders"))?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .transpose()
    }

    async fn end_acme_order(
        &self,
        directory: &str,
        names: &str,
        failures: u32,
        next_try_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE acme_orders SET failures = $3, next_try_at = $4 WHERE directory = $1 AND names = $2",
        )
        .bind(directory)
        .bind(names)
        .bind(i64::from(failures))
        .bind(next_try_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn acme_order_failures(&self, directory: &str, names: &str) -> Result<u32, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT failures FROM acme_orders WHERE directory = $1 AND names = $2",
        )
        .bind(directory)
        .bind(names)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    async fn other_acme_certificate(
        &self,
        directory: &str,
        names: &str,
    ) -> Result<Option<StoredCertificate>, StoreError> {
        sqlx::query(
            "SELECT directory, names, chain_pem, key_sealed, not_before, not_after, renew_at, issued_at \
             FROM acme_certificates WHERE directory = $1 AND names <> $2 \
             ORDER BY not_after DESC, names LIMIT 1",
        )
        .bind(directory)
        .bind(names)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .map(|r| cert_from(&r))
        .transpose()
    }

    async fn delete_other_acme_certificates(
        &self,
        directory: &str,
        names: &str,
        before: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM acme_certificates WHERE directory = $1 AND names <> $2 AND not_after < $3",
        )
        .bind(directory)
        .bind(names)
        .bind(before.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn delete_acme_certificate(
        &self,
        directory: &str,
        names: &str,
        issued_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM acme_certificates WHERE directory = $1 AND names = $2 AND issued_at = $3",
        )
        .bind(directory)
        .bind(names)
        .bind(issued_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn put_acme_challenge(&self, c: &PendingChallenge) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO acme_challenges (token, kind, name, response, expires_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (token) DO UPDATE SET kind = excluded.kind, name = excluded.name, \
             response = excluded.response, expires_at = excluded.expires_at",
        )
        .bind(&c.token)
        .bind(&c.kind)
        .bind(&c.name)
        .bind(&c.response_sealed)
        .bind(c.expires_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn acme_challenges(&self, now: Timestamp) -> Result<Vec<PendingChallenge>, StoreError> {
        // Read every 2 s by every node, and almost always empty: a read,
        // and a write only when something has expired.
        let corrupt = |_| StoreError::Corrupt("acme_challenges");
        let all = sqlx::query(
            "SELECT token, kind, name, response, expires_at FROM acme_challenges ORDER BY token",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| {
            Ok(PendingChallenge {
                token: r.try_get("token").map_err(corrupt)?,
                kind: r.try_get("kind").map_err(corrupt)?,
                name: r.try_get("name").map_err(corrupt)?,
                response_sealed: r.try_get("response").map_err(corrupt)?,
                expires_at: Timestamp(r.try_get("expires_at").map_err(corrupt)?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        if all.iter().any(|c| c.expires_at <= now) {
            sqlx::query("DELETE FROM acme_challenges WHERE expires_at <= $1")
                .bind(now.millis())
                .execute(self.pool())
                .await
                .map_err(backend)?;
        }
        Ok(all.into_iter().filter(|c| c.expires_at > now).collect())
    }

    async fn delete_acme_challenge(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM acme_challenges WHERE token = $1")
            .bind(token)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
