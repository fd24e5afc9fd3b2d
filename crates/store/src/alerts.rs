//! Alerts and their deliveries (ADR 0012). Every statement is fixed text
//! with bound values; optional filters are `CAST($n AS …) IS NULL OR …`.

use async_trait::async_trait;
use rampart_core::alerts::{
    Alert, AlertQuery, AlertStatus, AlertStore, Delivery, ResponseRecord, MAX_EVIDENCE,
};
use rampart_core::{StoreError, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{backend, SqlStore};

// Column list as a macro, so every statement is one `&'static str`
// assembled at compile time.
macro_rules! cols {
    () => {
        "id, rule_id, title, level, group_key, status, count, first_at, last_at, \
         evidence, source_ip, account, responses, node, changed_by, changed_at"
    };
}

fn get(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn alert_from(r: &AnyRow) -> Result<Alert, StoreError> {
    let status: String = r.try_get("status").map_err(get)?;
    let evidence: String = r.try_get("evidence").map_err(get)?;
    let responses: String = r.try_get("responses").map_err(get)?;
    let count: i64 = r.try_get("count").map_err(get)?;
    Ok(Alert {
        id: r.try_get("id").map_err(get)?,
        rule_id: r.try_get("rule_id").map_err(get)?,
        title: r.try_get("title").map_err(get)?,
        level: r.try_get("level").map_err(get)?,
        group_key: r.try_get("group_key").map_err(get)?,
        status: AlertStatus::parse(&status).ok_or(StoreError::Corrupt("alert status"))?,
        count: count.max(0) as u64,
        first_at: Timestamp(r.try_get("first_at").map_err(get)?),
        last_at: Timestamp(r.try_get("last_at").map_err(get)?),
        evidence: serde_json::from_str(&evidence)
            .map_err(|_| StoreError::Corrupt("alert evidence"))?,
        source_ip: r.try_get("source_ip").map_err(get)?,
        account: r.try_get("account").map_err(get)?,
        responses: serde_json::from_str(&responses)
            .map_err(|_| StoreError::Corrupt("alert responses"))?,
        node: r.try_get("node").map_err(get)?,
        changed_by: r.try_get("changed_by").map_err(get)?,
        changed_at: r
            .try_get::<Option<i64>, _>("changed_at")
            .map_err(get)?
            .map(Timestamp),
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl SqlStore {
    async fn open_alert_of(&self, group_key: &str) -> Result<Option<Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM alerts WHERE group_key = $1 AND status <> 'resolved'"
        ))
        .bind(group_key)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?
        .as_ref()
        .map(alert_from)
        .transpose()
    }
}

#[async_trait]
impl AlertStore for SqlStore {
    async fn raise_alert(&self, a: &Alert) -> Result<(Alert, bool), StoreError> {
        // An unresolved alert of the group takes the firing; otherwise a
        // new one. The partial unique index makes the insert of a second
        // unresolved alert fail, and the loop adds to the first instead.
        for _ in 0..5 {
            if let Some(mut open) = self.open_alert_of(&a.group_key).await? {
                let mut evidence = open.evidence.clone();
                for e in &a.evidence {
                    if !evidence.contains(e) {
                        evidence.push(e.clone());
                    }
                }
                if evidence.len() > MAX_EVIDENCE {
                    evidence.drain(..evidence.len() - MAX_EVIDENCE);
                }
                let last = a.last_at.max(open.last_at);
                let done = sqlx::query(
                    "UPDATE alerts SET count = count + $1, last_at = $2, evidence = $3 \
                     WHERE id = $4 AND count = $5 AND status <> 'resolved'",
                )
                .bind(a.count as i64)
                .bind(last.millis())
                .bind(json(&evidence))
                .bind(open.id.as_str())
                .bind(open.count as i64)
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected();
                if done == 1 {
                    open.count += a.count;
                    open.last_at = last;
                    open.evidence = evidence;
                    return Ok((open, false));
                }
                continue;
            }
            let res = sqlx::query(concat!(
                "INSERT INTO alerts (",
                cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ))
            .bind(a.id.as_str())
            .bind(a.rule_id.as_str())
            .bind(a.title.as_str())
            .bind(a.level.as_str())
            .bind(a.group_key.as_str())
            .bind(a.status.as_str())
            .bind(a.count as i64)
            .bind(a.first_at.millis())
            .bind(a.last_at.millis())
            .bind(json(&a.evidence))
            .bind(a.source_ip.as_deref())
            .bind(a.account.as_deref())
            .bind(json(&a.responses))
            .bind(a.node.as_str())
            .bind(a.changed_by.as_deref())
            .bind(a.changed_at.map(|t| t.millis()))
            .execute(self.pool())
            .await
            .map_err(backend);
            match res {
                Ok(_) => return Ok((a.clone(), true)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(
            "an alert kept changing under concurrent writers".into(),
        ))
    }

    async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        sqlx::query(concat!("SELECT ", cols!(), " FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .as_ref()
            .map(alert_from)
            .transpose()
    }

    async fn alerts(&self, f: &AlertQuery) -> Result<Vec<Alert>, StoreError> {
        let q = concat!(
            "SELECT ",
            cols!(),
            " FROM alerts WHERE \
             (CAST($1 AS TEXT) IS NULL OR status = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR rule_id = $2) AND \
             (CAST($3 AS TEXT) IS NULL OR level = $3) AND \
             (CAST($4 AS BIGINT) IS NULL OR last_at >= $4) AND \
             (CAST($5 AS BIGINT) IS NULL OR last_at < $5) AND \
             (CAST($6 AS BIGINT) IS NULL OR last_at < $6 OR (last_at = $6 AND id < $7)) \
             ORDER BY last_at DESC, id DESC LIMIT $8"
        );
        let (cur_at, cur_id) = match &f.cursor {
            Some((t, id)) => (Some(t.millis()), id.clone()),
            None => (None, String::new()),
        };
        sqlx::query(q)
            .bind(f.status.map(AlertStatus::as_str))
            .bind(f.rule_id.as_deref())
            .bind(f.level.as_deref())
            .bind(f.since.map(|t| t.millis()))
            .bind(f.until.map(|t| t.millis()))
            .bind(cur_at)
            .bind(cur_id)
            .bind(i64::from(f.limit.clamp(1, 500)))
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(alert_from)
            .collect()
    }

    async fn set_alert_status(
        &self,
        id: &str,
        status: AlertStatus,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE alerts SET status = $1, changed_by = $2, changed_at = $3 \
             WHERE id = $4 AND status <> 'resolved'",
        )
        .bind(status.as_str())
        .bind(by)
        .bind(at.millis())
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn set_alert_responses(
        &self,
        id: &str,
        old: &[ResponseRecord],
        new: &[ResponseRecord],
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE alerts SET responses = $1 WHERE id = $2 AND responses = $3 AND status <> 'resolved'",
        )
        .bind(json(&new))
        .bind(id)
        .bind(json(&old))
        .execute(self.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn enqueue_deliveries(
        &self,
        alert_id: &str,
        items: &[(String, String)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        for (channel, body) in items {
            sqlx::query(
                "INSERT INTO alert_deliveries (alert_id, channel, body, attempts, next_at, created_at) \
                 VALUES ($1, $2, $3, 0, $4, $4)",
            )
            .bind(alert_id)
            .bind(channel.as_str())
            .bind(body.as_str())
            .bind(at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        max_attempts: u32,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, channel, body, attempts, next_at FROM alert_deliveries \
             WHERE delivered_at IS NULL AND next_at <= $1 AND attempts < $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(now.millis())
        .bind(i64::from(max_attempts))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let attempts: i64 = r.try_get("attempts").map_err(get)?;
                Ok(Delivery {
                    id: r.try_get("id").map_err(get)?,
                    alert_id: r.try_get("alert_id").map_err(get)?,
                    channel: r.try_get("channel").map_err(get)?,
                    body: r.try_get("body").map_err(get)?,
                    attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
                    next_at: Timestamp(r.try_get("next_at").map_err(get)?),
                })
            })
            .collect()
    }

    async fn claim_delivery(
        &self,
        d: &Delivery,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, next_at = $1 \
             WHERE id = $2 AND attempts = $3 AND next_at = $4 AND delivered_at IS NULL",
        )
        .bind(lease_until.millis())
        .bind(d.id)
        .bind(i64::from(d.attempts))
        .bind(d.next_at.millis())
        .execute(self.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn finish_delivery(
        &self,
        id: i64,
        delivered_at: Option<Timestamp>,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET delivered_at = $1, last_error = $2, \
             next_at = COALESCE(CAST($3 AS BIGINT), next_at) WHERE id = $4",
        )
        .bind(delivered_at.map(|t| t.millis()))
        .bind(error)
        .bind(retry_at.map(|t| t.millis()))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn purge_alerts(
        &self,
        resolved_before: Timestamp,
        any_before: Timestamp,
        deliveries_before: Timestamp,
        max_attempts: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let n = sqlx::query(
            "DELETE FROM alerts WHERE (status = 'resolved' AND last_at < $1) OR last_at < $2",
        )
        .bind(resolved_before.millis())
        .bind(any_before.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        sqlx::query(
            "DELETE FROM alert_deliveries WHERE alert_id NOT IN (SELECT id FROM alerts) \
             OR (created_at < $1 AND (delivered_at IS NOT NULL OR attempts >= $2))",
        )
        .bind(deliveries_before.millis())
        .bind(i64::from(max_attempts))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }
}
