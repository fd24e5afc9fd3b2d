//! Alerts: what detection raises for a person (ADR 0012). One alert per
//! ongoing attack (its rule and group), with a count, its evidence (event
//! ids in the trail), the responses taken or withheld, and a status that
//! administrators move from open to acknowledged to resolved. Deliveries
//! (webhook, email) are persisted and retried, so none is lost over a
//! restart.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StoreError, Timestamp};

/// The actions of the events detection and alerts record.
pub const ACTIONS: [&str; 8] = [
    "alert.raised",
    "alert.acknowledged",
    "alert.resolved",
    "alert.confirmed",
    "alert.undone",
    "alert.delivery_failed",
    "detect.rules_loaded",
    "detect.rules_refused",
];

/// Most evidence ids kept on one alert (the newest).
pub const MAX_EVIDENCE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        [
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What became of one response a rule asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// `block_address`, `lock_account`, `revoke_sessions`,
    /// `require_step_up`.
    pub response: String,
    /// `done`, `withheld`, `awaiting_confirmation`, `failed`, `undone`.
    pub state: String,
    /// Why it was withheld or failed; what it did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// The address block it set, to lift on undo.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_id: Option<String>,
    /// Whom it is about: the address and account of the firing that asked
    /// for it (an alert groups firings, which may name different ones).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub account: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub rule_id: String,
    pub title: String,
    /// The rule's Sigma level: informational, low, medium, high, critical.
    pub level: String,
    /// The rule and its group: repeats with the same key add to this alert.
    pub group_key: String,
    pub status: AlertStatus,
    /// Firings grouped into it.
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// Events that made it fire, `node:seq`, oldest first.
    pub evidence: Vec<String>,
    pub source_ip: Option<String>,
    pub account: Option<String>,
    pub responses: Vec<ResponseRecord>,
    /// The node whose detector raised it.
    pub node: String,
    /// Who last changed its status (`admin:<id>`), and when.
    pub changed_by: Option<String>,
    pub changed_at: Option<Timestamp>,
}

/// A search over alerts, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Option<AlertStatus>,
    pub rule_id: Option<String>,
    pub level: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// The (last_at, id) of the last alert of the previous page.
    pub cursor: Option<(Timestamp, String)>,
}

/// One delivery of an alert to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: String,
    /// `webhook` or `email`.
    pub channel: String,
    pub body: String,
    pub attempts: u32,
    pub next_at: Timestamp,
}

/// The alert tables. Only `rampart-store` implements it.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Adds a firing to the unresolved alert of `alert.group_key`, or
    /// stores `alert` as a new one: the alert as stored now, and whether it
    /// is new. Adding sums the count, keeps the newest evidence and the
    /// latest time.
    async fn raise_alert(&self, alert: &Alert) -> Result<(Alert, bool), StoreError>;
    async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError>;
    async fn alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, StoreError>;
    /// Moves an alert to `status` unless it is already resolved; false when
    /// there is no such alert or it is resolved.
    async fn set_alert_status(
        &self,
        id: &str,
        status: AlertStatus,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Replaces an unresolved alert's responses if they are still `old`
    /// (two writers never lose each other's change); false otherwise.
    async fn set_alert_responses(
        &self,
        id: &str,
        old: &[ResponseRecord],
        new: &[ResponseRecord],
    ) -> Result<bool, StoreError>;
    /// Queues deliveries of `alert_id`: (channel, body) each.
    async fn enqueue_deliveries(
        &self,
        alert_id: &str,
        items: &[(String, String)],
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Deliveries due at `now` with fewer than `max_attempts`, oldest
    /// first.
    async fn due_deliveries(
        &self,
        now: Timestamp,
        max_attempts: u32,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Takes a delivery for one attempt (another node trying it at the
    /// same time does not get it): counts the attempt and leases it until
    /// `lease_until`. False when someone else took it.
    async fn claim_delivery(
        &self,
        d: &Delivery,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records an attempt's outcome: delivered, or the error and when to
    /// try again.
    async fn finish_delivery(
        &self,
        id: i64,
        delivered_at: Option<Timestamp>,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Deletes alerts resolved and last seen before `resolved_before`, any
    /// alert last seen before `any_before`, and deliveries made or given
    /// up (`max_attempts`) created before `deliveries_before`, with the
    /// deliveries of deleted alerts. (The trail keeps every alert's
    /// events.) How many alerts were deleted.
    async fn purge_alerts(
        &self,
        resolved_before: Timestamp,
        any_before: Timestamp,
        deliveries_before: Timestamp,
        max_attempts: u32,
    ) -> Result<u64, StoreError>;
}
