//! The account lifecycle (ADR 0015): mailed links, deletion, disabling
//! and administrators' searches. Every statement is fixed text with bound
//! values; a search picks among fixed fragments.

use async_trait::async_trait;
use rampart_core::lifecycle::{
    AccountQuery, AccountSort, AccountStatus, EmailToken, Guarded, LifecycleStore, SortKey,
    TokenPurpose,
};
use rampart_core::{Account, AccountId, StoreError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::dialect::Dialect;
use crate::incident::end_sign_ins;
use crate::sql::{account_cols, account_from, backend, SqlStore};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

fn get(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn purpose_of(s: &str) -> Option<TokenPurpose> {
    [
        TokenPurpose::Verify,
        TokenPurpose::Change,
        TokenPurpose::Undo,
    ]
    .into_iter()
    .find(|p| p.as_str() == s)
}

fn token_from(r: &AnyRow) -> Result<EmailToken, StoreError> {
    let purpose: String = r.try_get("purpose").map_err(get)?;
    Ok(EmailToken {
        token_hash: r.try_get("token_hash").map_err(get)?,
        purpose: purpose_of(&purpose).ok_or(StoreError::Corrupt("email token purpose"))?,
        account: AccountId(r.try_get("account_id").map_err(get)?),
        email: r.try_get("email").map_err(get)?,
        code_mac: r.try_get("code_mac").map_err(get)?,
        created_at: Timestamp(r.try_get("created_at").map_err(get)?),
        expires_at: Timestamp(r.try_get("expires_at").map_err(get)?),
    })
}

const TOKEN_COLS: &str = "token_hash, purpose, account_id, email, code_mac, created_at, expires_at";

async fn insert_token(tx: &mut Tx<'_>, t: &EmailToken) -> Result<(), StoreError> {
    // A new link replaces the account's earlier one of its purpose, but an
    // undo link never goes: each restores the address it was sent to.
    if t.purpose != TokenPurpose::Undo {
        sqlx::query("DELETE FROM email_tokens WHERE account_id = $1 AND purpose = $2")
            .bind(t.account.as_str())
            .bind(t.purpose.as_str())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, purpose, account_id, email, code_mac, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.token_hash.as_str())
    .bind(t.purpose.as_str())
    .bind(t.account.as_str())
    .bind(t.email.as_str())
    .bind(t.code_mac.as_deref())
    .bind(t.created_at.millis())
    .bind(t.expires_at.millis())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Ends the account's pending address changes and voids its device tokens
/// (raises its epoch), in `tx`.
pub(crate) async fn end_links(tx: &mut Tx<'_>, account: &AccountId) -> Result<(), StoreError> {
    for q in [
        "DELETE FROM email_tokens WHERE account_id = $1 AND purpose = 'change'",
        "UPDATE accounts SET device_epoch = device_epoch + 1 WHERE id = $1",
    ] {
        sqlx::query(q)
            .bind(account.as_str())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// Stores a reset code (its SHA-256) for the account, in `tx`.
pub(crate) async fn insert_reset_code(
    tx: &mut Tx<'_>,
    account: &AccountId,
    token_hash: &str,
    reason: &str,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO password_resets (token_hash, account_id, expires_at, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(account.as_str())
    .bind(expires_at.millis())
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Spends a link: true for the one caller that deletes it.
async fn spend(
    tx: &mut Tx<'_>,
    token_hash: &str,
    purpose: TokenPurpose,
    at: Timestamp,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM email_tokens WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .bind(at.millis())
    .execute(&mut **tx)
    .await
    .map_err(backend)?
    .rows_affected()
        == 1)
}

impl SqlStore {
    /// Serialises the writes that could remove the last administrator:
    /// PostgreSQL locks the administrators' rows and the account's own (at
    /// READ COMMITTED two such writes would each see the other's
    /// administrator in force), in id order, as a lockdown locks accounts;
    /// SQLite has one writer at a time, taken by the first write.
    async fn lock_admins(&self, tx: &mut Tx<'_>, account: &AccountId) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            sqlx::query(
                "SELECT id FROM accounts WHERE role = 'admin' OR id = $1 ORDER BY id FOR UPDATE",
            )
            .bind(account.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(backend)?;
        }
        Ok(())
    }

    /// The account's role, if it exists.
    async fn role_in(tx: &mut Tx<'_>, account: &AccountId) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT role FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
            .map(|r| r.try_get::<String, _>(0).map_err(get))
            .transpose()
    }

    /// Whether an administrator is in force (enabled, not being deleted).
    async fn admin_in_force(tx: &mut Tx<'_>) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT id FROM accounts WHERE role = 'admin' AND disabled_at IS NULL AND delete_after IS NULL LIMIT 1",
        )
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .is_some())
    }

    /// Makes `change` to the account in a transaction that is rolled
    /// back when it leaves no administrator in force (checked for changes
    /// that take an administrator out).
    async fn guarded(
        &self,
        account: &AccountId,
        change: Change<'_>,
    ) -> Result<Guarded, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.lock_admins(&mut tx, account).await?;
        let id = account.as_str();
        // Writes come first: on SQLite a transaction that read before its
        // first write may find the write lock taken and fail at once
        // (SQLITE_BUSY) instead of waiting for it.
        let (role, takes_out) = match change {
            Change::Deletion(at) | Change::Disabled(at) => {
                let q = if matches!(change, Change::Deletion(_)) {
                    "UPDATE accounts SET delete_after = $2 WHERE id = $1"
                } else {
                    "UPDATE accounts SET disabled_at = $2 WHERE id = $1"
                };
                let n = sqlx::query(q)
                    .bind(id)
                    .bind(at.map(|t| t.millis()))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                let role = if n == 1 {
                    Self::role_in(&mut tx, account).await?
                } else {
                    None
                };
                if role.is_some() && at.is_some() {
                    end_sign_ins(&mut tx, account).await?;
                }
                (role, at.is_some())
            }
            Change::Delete(owner_deletes, now, due_only) => {
                if due_only {
                    // The sweep's deletion: only if it is still due (a
                    // sign-in may have cancelled it since it was listed).
                    let due = sqlx::query(
                        "UPDATE accounts SET delete_after = delete_after WHERE id = $1 \
                         AND delete_after IS NOT NULL AND delete_after <= $2",
                    )
                    .bind(id)
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                    if due == 0 {
                        tx.rollback().await.map_err(backend)?;
                        return Ok(Guarded::NotFound);
                    }
                }
                for c in owner_deletes {
                    sqlx::query("DELETE FROM records WHERE collection = $1 AND owner_id = $2")
                        .bind(c.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                sqlx::query("UPDATE records SET owner_id = NULL WHERE owner_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE created_by = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                let role = Self::role_in(&mut tx, account).await?;
                // Sessions, factors, codes, challenges, roles and links go
                // with it (ON DELETE CASCADE).
                sqlx::query("DELETE FROM accounts WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                (role, true)
            }
        };
        let Some(role) = role else {
            tx.rollback().await.map_err(backend)?;
            return Ok(Guarded::NotFound);
        };
        if takes_out && role == "admin" && !Self::admin_in_force(&mut tx).await? {
            tx.rollback().await.map_err(backend)?;
            return Ok(Guarded::LastAdmin);
        }
        tx.commit().await.map_err(backend)?;
        Ok(Guarded::Done)
    }
}

/// A write that may take an account out of force.
#[derive(Clone, Copy)]
enum Change<'a> {
    /// Schedules (or cancels) a deletion.
    Deletion(Option<Timestamp>),
    /// Disables (or enables).
    Disabled(Option<Timestamp>),
    /// Deletes now, with the records of these collections; with `true`,
    /// only if its scheduled deletion is due.
    Delete(&'a [String], Timestamp, bool),
}

/// A value bound to a search.
enum Bind {
    Text(String),
    Int(i64),
}

#[async_trait]
impl LifecycleStore for SqlStore {
    async fn put_email_token(&self, token: &EmailToken) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        insert_token(&mut tx, token).await?;
        tx.commit().await.map_err(backend)
    }

    async fn email_token(
        &self,
        purpose: TokenPurpose,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM email_tokens WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3"
        ))
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now.millis())
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn email_code(
        &self,
        purpose: TokenPurpose,
        account: &AccountId,
        now: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM email_tokens WHERE account_id = $1 AND purpose = $2 \
             AND expires_at > $3 AND code_mac IS NOT NULL ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(account.as_str())
        .bind(purpose.as_str())
        .bind(now.millis())
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn email_reserved(
        &self,
        email: &str,
        except: &AccountId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 FROM email_tokens WHERE email = $1 AND purpose = 'undo' AND expires_at > $2 \
             AND account_id <> $3 LIMIT 1",
        )
        .bind(email)
        .bind(now.millis())
        .bind(except.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .is_some())
    }

    async fn finish_verification(
        &self,
        token_hash: &str,
        account: &AccountId,
        email: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        if !spend(&mut tx, token_hash, TokenPurpose::Verify, at).await? {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        let marked = sqlx::query(
            "UPDATE accounts SET email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $1 AND email = $2",
        )
        .bind(account.as_str())
        .bind(email)
        .bind(at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if marked != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn finish_email_change(
        &self,
        token_hash: &str,
        from: &str,
        to: &str,
        at: Timestamp,
        undo: &EmailToken,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        if !spend(&mut tx, token_hash, TokenPurpose::Change, at).await? {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        let moved = sqlx::query(
            "UPDATE accounts SET email = $3, email_verified_at = $4 WHERE id = $1 AND email = $2",
        )
        .bind(undo.account.as_str())
        .bind(from)
        .bind(to)
        .bind(at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if moved != 1 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        // An address another account's undo link holds is not free.
        let held = sqlx::query(
            "SELECT 1 FROM email_tokens WHERE email = $1 AND purpose = 'undo' AND expires_at > $2 \
             AND account_id <> $3 LIMIT 1",
        )
        .bind(to)
        .bind(at.millis())
        .bind(undo.account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if held.is_some() {
            tx.rollback().await.map_err(backend)?;
            return Err(StoreError::Conflict);
        }
        // Links for the old address (a pending verification) are void.
        sqlx::query("DELETE FROM email_tokens WHERE account_id = $1 AND purpose = 'verify'")
            .bind(undo.account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_token(&mut tx, undo).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn finish_email_undo(
        &self,
        token_hash: &str,
        unusable_hash: &str,
        at: Timestamp,
    ) -> Result<Option<EmailToken>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // Spent and read in one statement (the write first, see `guarded`).
        let Some(row) = sqlx::query(
            "DELETE FROM email_tokens WHERE token_hash = $1 AND purpose = 'undo' AND expires_at > $2 \
             RETURNING token_hash, purpose, account_id, email, code_mac, created_at, expires_at",
        )
        .bind(token_hash)
        .bind(at.millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        else {
            tx.rollback().await.map_err(backend)?;
            return Ok(None);
        };
        let t = token_from(&row)?;
        // The address comes back; the password stops working (whoever
        // changed the address may know it).
        sqlx::query(
            "UPDATE accounts SET email = $2, email_verified_at = $3, password_hash = $4 WHERE id = $1",
        )
        .bind(t.account.as_str())
        .bind(t.email.as_str())
        .bind(at.millis())
        .bind(unusable_hash)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Pending changes are void, and so are the undo links of changes
        // asked for since this one: whoever made those cannot undo this
        // undo. Older undo links stay, so the earliest always wins.
        sqlx::query(
            "DELETE FROM email_tokens WHERE account_id = $1 \
             AND (purpose = 'change' OR (purpose = 'undo' AND created_at >= $2))",
        )
        .bind(t.account.as_str())
        .bind(t.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        end_sign_ins(&mut tx, &t.account).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(t))
    }

    async fn insert_password_reset(
        &self,
        account: &AccountId,
        token_hash: &str,
        reason: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // Only the account's earlier codes sent for the same reason: a
        // stranger's forgotten-password request must not void the code an
        // administrator or an incident sent.
        sqlx::query("DELETE FROM password_resets WHERE account_id = $1 AND reason = $2")
            .bind(account.as_str())
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_reset_code(&mut tx, account, token_hash, reason, expires_at).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_deletion(
        &self,
        account: &AccountId,
        at: Option<Timestamp>,
    ) -> Result<Guarded, StoreError> {
        self.guarded(account, Change::Deletion(at)).await
    }

    async fn deletions_due(&self, now: Timestamp) -> Result<Vec<AccountId>, StoreError> {
        sqlx::query(
            "SELECT id FROM accounts WHERE delete_after IS NOT NULL AND delete_after <= $1 ORDER BY delete_after LIMIT 1000",
        )
        .bind(now.millis())
        .fetch_all(self.pool())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| r.try_get::<String, _>(0).map(AccountId).map_err(get))
        .collect()
    }

    async fn delete_account(
        &self,
        account: &AccountId,
        owner_deletes: &[String],
        now: Timestamp,
        due_only: bool,
    ) -> Result<Guarded, StoreError> {
        self.guarded(account, Change::Delete(owner_deletes, now, due_only))
            .await
    }

    async fn set_disabled(
        &self,
        account: &AccountId,
        at: Option<Timestamp>,
    ) -> Result<Guarded, StoreError> {
        self.guarded(account, Change::Disabled(at)).await
    }

    async fn end_sessions(&self, account: &AccountId) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        sqlx::query("DELETE FROM mfa_pending_logins WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        end_links(&mut tx, account).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn note_sign_in(&self, account: &AccountId, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET last_sign_in_at = $2 WHERE id = $1")
            .bind(account.as_str())
            .bind(at.millis())
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn purge_expired_links(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut n = 0;
        for q in [
            "DELETE FROM email_tokens WHERE expires_at <= $1",
            "DELETE FROM password_resets WHERE expires_at <= $1",
        ] {
            n += sqlx::query(q)
                .bind(now.millis())
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected();
        }
        Ok(n)
    }

    async fn search_accounts(&self, q: &AccountQuery) -> Result<Vec<Account>, StoreError> {
        let mut sql = String::from(concat!(
            "SELECT ",
            account_cols!(),
            " FROM accounts a WHERE 1 = 1"
        ));
        let mut binds: Vec<Bind> = Vec::new();
        let param = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some(prefix) = &q.email_prefix {
            let escaped: String = prefix
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            let p = param(Bind::Text(format!("{escaped}%")), &mut binds);
            sql.push_str(&format!(" AND a.email LIKE {p} ESCAPE '\\'"));
        }
        if let Some(role) = q.role {
            let p = param(Bind::Text(role.as_str().to_owned()), &mut binds);
            sql.push_str(&format!(" AND a.role = {p}"));
        }
        sql.push_str(match q.status {
            None => "",
            Some(AccountStatus::Active) => " AND a.disabled_at IS NULL AND a.delete_after IS NULL",
            Some(AccountStatus::Disabled) => " AND a.disabled_at IS NOT NULL",
            Some(AccountStatus::Unverified) => " AND a.email_verified_at IS NULL",
            Some(AccountStatus::Deleting) => " AND a.delete_after IS NOT NULL",
        });
        if let Some(has) = q.has_mfa {
            sql.push_str(if has {
                " AND EXISTS"
            } else {
                " AND NOT EXISTS"
            });
            sql.push_str(
                " (SELECT 1 FROM mfa_factors f WHERE f.account_id = a.id AND f.confirmed_at IS NOT NULL)",
            );
        }
        if let Some(t) = q.signed_in_before {
            let p = param(Bind::Int(t.millis()), &mut binds);
            sql.push_str(&format!(" AND a.last_sign_in_at < {p}"));
        }
        if let Some(t) = q.signed_in_after {
            let p = param(Bind::Int(t.millis()), &mut binds);
            sql.push_str(&format!(" AND a.last_sign_in_at > {p}"));
        }
        let key = match q.sort {
            AccountSort::Email => "a.email",
            AccountSort::CreatedAt => "a.created_at",
            AccountSort::LastSignIn => "COALESCE(a.last_sign_in_at, 0)",
        };
        let (cmp, dir) = if q.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some((k, id)) = &q.after {
            let pk = param(
                match k {
                    SortKey::Text(t) => Bind::Text(t.clone()),
                    SortKey::Time(n) => Bind::Int(*n),
                },
                &mut binds,
            );
            let pid = param(Bind::Text(id.as_str().to_owned()), &mut binds);
            sql.push_str(&format!(" AND ({key}, a.id) {cmp} ({pk}, {pid})"));
        }
        let pl = param(Bind::Int(i64::from(q.limit)), &mut binds);
        sql.push_str(&format!(" ORDER BY {key} {dir}, a.id {dir} LIMIT {pl}"));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Text(t) => query.bind(t),
                Bind::Int(n) => query.bind(n),
            };
        }
        query
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(account_from)
            .collect()
    }
}
