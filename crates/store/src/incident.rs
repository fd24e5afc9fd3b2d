//! Incidents, forced password resets and drills (ADR 0014). Every
//! statement is fixed text with bound values. The condition that keeps a
//! session or API key out while an incident is in force is in `sql.rs`
//! (`kept_out_by_incident!`), beside the lookups that use it.

use async_trait::async_trait;
use rampart_core::incident::{Ended, Incident, IncidentStore, Scope};
use rampart_core::{Account, AccountId, Role, StoreError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{backend, SqlStore};

macro_rules! cols {
    () => {
        "id, scope, reason, started_at, started_by, break_glass, record, lifted_at, lifted_by, lift_record"
    };
}

fn get(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn count(r: &AnyRow) -> Result<u64, StoreError> {
    Ok(r.try_get::<i64, _>(0).map_err(get)?.max(0) as u64)
}

/// Ends an account's sessions, pending sign-ins, reset codes and pending
/// address changes, and voids its device tokens (ADR 0015), in `tx`.
pub(crate) async fn end_sign_ins(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: &AccountId,
) -> Result<(), StoreError> {
    for q in [
        "DELETE FROM sessions WHERE account_id = $1",
        "DELETE FROM mfa_pending_logins WHERE account_id = $1",
        "DELETE FROM password_resets WHERE account_id = $1",
    ] {
        sqlx::query(q)
            .bind(account.as_str())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    crate::lifecycle::end_links(tx, account).await?;
    Ok(())
}

impl SqlStore {
    fn incident_from(r: &AnyRow) -> Result<Incident, StoreError> {
        let scope: String = r.try_get("scope").map_err(get)?;
        Ok(Incident {
            id: r.try_get("id").map_err(get)?,
            scope: Scope::parse(&scope).ok_or(StoreError::Corrupt("incident scope"))?,
            accounts: Vec::new(),
            reason: r.try_get("reason").map_err(get)?,
            started_at: Timestamp(r.try_get("started_at").map_err(get)?),
            started_by: r.try_get("started_by").map_err(get)?,
            break_glass: r
                .try_get::<Option<String>, _>("break_glass")
                .map_err(get)?
                .map(AccountId),
            record: r.try_get("record").map_err(get)?,
            lifted_at: r
                .try_get::<Option<i64>, _>("lifted_at")
                .map_err(get)?
                .map(Timestamp),
            lifted_by: r.try_get("lifted_by").map_err(get)?,
            lift_record: r.try_get("lift_record").map_err(get)?,
        })
    }

    /// The rows of `rows` as incidents, each with its accounts.
    async fn incidents_of(&self, rows: Vec<AnyRow>) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut i = Self::incident_from(r)?;
            if i.scope == Scope::Accounts {
                i.accounts = sqlx::query(
                    "SELECT account_id FROM incident_accounts WHERE incident_id = $1 ORDER BY account_id",
                )
                .bind(i.id.as_str())
                .fetch_all(self.pool())
                .await
                .map_err(backend)?
                .iter()
                .map(|r| r.try_get::<String, _>(0).map(AccountId).map_err(get))
                .collect::<Result<_, _>>()?;
            }
            out.push(i);
        }
        Ok(out)
    }
}

#[async_trait]
impl IncidentStore for SqlStore {
    async fn lockdown_reach(
        &self,
        scope: Scope,
        accounts: &[AccountId],
        break_glass: Option<&AccountId>,
    ) -> Result<Ended, StoreError> {
        let bg = break_glass.map(AccountId::as_str);
        let one = |q: &'static str, id: Option<&str>| {
            let q = sqlx::query(q).bind(id.map(str::to_owned));
            async move { count(&q.fetch_one(self.pool()).await.map_err(backend)?) }
        };
        match scope {
            Scope::Deployment => Ok(Ended {
                sessions: one(
                    "SELECT COUNT(*) FROM sessions WHERE account_id <> COALESCE($1, '')",
                    bg,
                )
                .await?,
                api_keys: one(
                    "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND created_by <> COALESCE($1, '')",
                    bg,
                )
                .await?,
                pending_sign_ins: one(
                    "SELECT COUNT(*) FROM mfa_pending_logins WHERE account_id <> COALESCE($1, '')",
                    bg,
                )
                .await?,
            }),
            Scope::Accounts => {
                let mut e = Ended::default();
                for a in accounts {
                    let a = Some(a.as_str());
                    e.sessions +=
                        one("SELECT COUNT(*) FROM sessions WHERE account_id = $1", a).await?;
                    e.api_keys += one(
                        "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND created_by = $1",
                        a,
                    )
                    .await?;
                    e.pending_sign_ins += one(
                        "SELECT COUNT(*) FROM mfa_pending_logins WHERE account_id = $1",
                        a,
                    )
                    .await?;
                }
                Ok(e)
            }
        }
    }

    async fn begin_incident(&self, i: &Incident) -> Result<Ended, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        sqlx::query(concat!(
            "INSERT INTO incidents (",
            cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL)"
        ))
        .bind(i.id.as_str())
        .bind(i.scope.as_str())
        .bind(i.reason.as_str())
        .bind(i.started_at.millis())
        .bind(i.started_by.as_str())
        .bind(i.break_glass.as_ref().map(|a| a.0.clone()))
        .bind(i.record.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for a in &i.accounts {
            sqlx::query("INSERT INTO incident_accounts (incident_id, account_id) VALUES ($1, $2)")
                .bind(i.id.as_str())
                .bind(a.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        // Deployment: everyone but the break-glass administrator ($1);
        // accounts: the incident's ($1). `$2` is the time keys end.
        let (who, sessions, keys, pending, links) = match i.scope {
            Scope::Deployment => (
                i.break_glass.as_ref().map(|a| a.0.clone()),
                "DELETE FROM sessions WHERE account_id <> COALESCE($1, '')",
                "UPDATE api_keys SET revoked_at = $2 WHERE revoked_at IS NULL \
                 AND created_by <> COALESCE($1, '')",
                "DELETE FROM mfa_pending_logins WHERE account_id <> COALESCE($1, '')",
                [
                    "DELETE FROM email_tokens WHERE purpose = 'change' AND account_id <> COALESCE($1, '')",
                    "UPDATE accounts SET device_epoch = device_epoch + 1 WHERE id <> COALESCE($1, '')",
                ],
            ),
            Scope::Accounts => (
                Some(i.id.clone()),
                "DELETE FROM sessions WHERE account_id IN \
                 (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
                "UPDATE api_keys SET revoked_at = $2 WHERE revoked_at IS NULL AND created_by IN \
                 (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
                "DELETE FROM mfa_pending_logins WHERE account_id IN \
                 (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
                [
                    "DELETE FROM email_tokens WHERE purpose = 'change' AND account_id IN \
                     (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
                    "UPDATE accounts SET device_epoch = device_epoch + 1 WHERE id IN \
                     (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
                ],
            ),
        };

        // Pending address changes end, and device tokens stop counting
        // apart (ADR 0015). Accounts first, in id order on PostgreSQL, as
        // the guarded account writes lock them (`lifecycle.rs`), so the
        // two never wait on each other in a circle.
        if self.dialect() == crate::Dialect::Postgres {
            sqlx::query("SELECT id FROM accounts ORDER BY id FOR UPDATE")
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        }
        for q in links {
            sqlx::query(q)
                .bind(who.clone())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let sessions = sqlx::query(sessions)
            .bind(who.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let api_keys = sqlx::query(keys)
            .bind(who.clone())
            .bind(i.started_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let pending_sign_ins = sqlx::query(pending)
            .bind(who)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let ended = Ended {
            sessions,
            api_keys,
            pending_sign_ins,
        };
        tx.commit().await.map_err(backend)?;
        Ok(ended)
    }

    async fn incidents_in_force(&self) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM incidents WHERE lifted_at IS NULL ORDER BY started_at, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        self.incidents_of(rows).await
    }

    async fn deployment_lockdown(&self) -> Result<Option<Incident>, StoreError> {
        // The partial unique index `incidents_one_lockdown` serves it.
        sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM incidents WHERE lifted_at IS NULL AND scope = 'deployment'"
        ))
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(Self::incident_from)
        .transpose()
    }

    async fn incidents_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM incidents WHERE started_at < $2 AND (lifted_at IS NULL OR lifted_at >= $1) \
             ORDER BY started_at, id"
        ))
        .bind(since.millis())
        .bind(until.millis())
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        self.incidents_of(rows).await
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let rows = sqlx::query(concat!("SELECT ", cols!(), " FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        Ok(self.incidents_of(rows).await?.into_iter().next())
    }

    async fn lift_incident(
        &self,
        incident: &Incident,
        at: Timestamp,
        by: &str,
        record: &str,
    ) -> Result<bool, StoreError> {
        let (id, started) = (incident.id.as_str(), incident.started_at.millis());
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let lifted = sqlx::query(
            "UPDATE incidents SET lifted_at = $2, lifted_by = $3, lift_record = $4 \
             WHERE id = $1 AND lifted_at IS NULL",
        )
        .bind(id)
        .bind(at.millis())
        .bind(by)
        .bind(record)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if lifted != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        // Whatever the incident kept out and that was made while it held
        // (only a sign-in racing its start can have made any) ends with
        // it, instead of coming back to life.
        if incident.scope == Scope::Deployment {
            sqlx::query(
                "DELETE FROM sessions WHERE created_at >= $1 AND account_id IN \
                 (SELECT id FROM accounts WHERE role <> 'admin')",
            )
            .bind(started)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "DELETE FROM mfa_pending_logins WHERE account_id IN \
                 (SELECT id FROM accounts WHERE role <> 'admin')",
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        } else {
            sqlx::query(
                "DELETE FROM sessions WHERE created_at >= $2 AND account_id IN \
                 (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
            )
            .bind(id)
            .bind(started)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "DELETE FROM mfa_pending_logins WHERE account_id IN \
                 (SELECT account_id FROM incident_accounts WHERE incident_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn sign_in_suspended(&self, account: &AccountId, role: Role) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FROM incidents i WHERE i.lifted_at IS NULL AND (\
             (i.scope = 'deployment' AND $2 <> 'admin') OR \
             (i.scope = 'accounts' AND EXISTS (SELECT 1 FROM incident_accounts x \
              WHERE x.incident_id = i.id AND x.account_id = $1)))",
        )
        .bind(account.as_str())
        .bind(role.as_str())
        .fetch_one(self.pool())
        .await
        .map_err(backend)?;
        Ok(count(&r)? > 0)
    }

    async fn all_accounts(&self) -> Result<Vec<Account>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            crate::sql::account_cols!(),
            " FROM accounts a ORDER BY a.email"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(crate::sql::account_from)
        .collect()
    }

    async fn force_password_reset(
        &self,
        account: &AccountId,
        unusable_hash: &str,
        token_hash: &str,
        reason: &str,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
            .bind(account.as_str())
            .bind(unusable_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        end_sign_ins(&mut tx, account).await?;
        crate::lifecycle::insert_reset_code(&mut tx, account, token_hash, reason, expires).await?;
        tx.commit().await.map_err(backend)
    }

    async fn password_reset_owner(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(AccountId, String)>, StoreError> {
        sqlx::query(
            "SELECT account_id, reason FROM password_resets WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now.millis())
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .map(|r| {
            Ok((
                AccountId(r.try_get::<String, _>(0).map_err(get)?),
                r.try_get::<String, _>(1).map_err(get)?,
            ))
        })
        .transpose()
    }

    async fn finish_password_reset(
        &self,
        token_hash: &str,
        account: &AccountId,
        new_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let spent = sqlx::query(
            "DELETE FROM password_resets WHERE token_hash = $1 AND account_id = $2 AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(account.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if spent != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        // The code came to the address: it is proven too.
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $1",
        )
        .bind(account.as_str())
        .bind(new_hash)
        .bind(now.millis())
        .execute(&mut *tx)
            .await
            .map_err(backend)?;
        end_sign_ins(&mut tx, account).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn begin_drill(
        &self,
        id: &str,
        token_hash: &str,
        at: Timestamp,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO drills (id, token_hash, started_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(token_hash)
        .bind(at.millis())
        .bind(expires.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn end_drill(&self, id: &str, at: Timestamp, report: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE drills SET ended_at = $2, report = $3 WHERE id = $1")
            .bind(id)
            .bind(at.millis())
            .bind(report)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn drills_in_force(&self, now: Timestamp) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query(
            "SELECT id, token_hash FROM drills WHERE ended_at IS NULL AND expires_at > $1 ORDER BY id",
        )
        .bind(now.millis())
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| Ok((r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?)))
        .collect()
    }

    async fn delete_drill_account(&self, account: &AccountId) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM accounts WHERE id = $1 AND role = 'member' AND email LIKE $2")
                .bind(account.as_str())
                .bind(format!("%@{}", rampart_core::incident::DRILL_DOMAIN))
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected()
                == 1,
        )
    }

    async fn last_drill(&self) -> Result<Option<(String, Timestamp, String)>, StoreError> {
        sqlx::query(
            "SELECT id, ended_at, report FROM drills WHERE ended_at IS NOT NULL AND report IS NOT NULL \
             AND report <> '' ORDER BY ended_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .map(|r| {
            Ok((
                r.try_get(0).map_err(get)?,
                Timestamp(r.try_get(1).map_err(get)?),
                r.try_get(2).map_err(get)?,
            ))
        })
        .transpose()
    }
}
