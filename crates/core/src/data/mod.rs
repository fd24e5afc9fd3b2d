//! Protected data: collections, records, access rules, API keys, field
//! encryption with rotatable data keys, and the data-access trail. See
//! ADR 0007.

pub mod filter;
pub mod keys;
pub mod schema;
mod service;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::store::StoreError;
use crate::{AccountId, Timestamp};
pub use filter::Op;
pub use schema::{Action, CollectionSchema, FieldDef, FieldType};
pub use service::{
    AccessCheck, DataService, ListRequest, Mask, Page, Principal, RecordView, SchemaChange,
};

/// A collection as stored.
#[derive(Debug, Clone)]
pub struct Collection {
    pub name: String,
    pub schema: CollectionSchema,
    /// Bumped by every schema change.
    pub rev: i64,
    /// Bumped by the schema changes that change how values are stored
    /// (sensitivity, removed fields); records behind it are resealed.
    pub layout_rev: i64,
    /// The data key that seals new values.
    pub key_id: String,
    /// The key blind indexes and unique sensitive values are MACed with.
    pub index_key_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A record as stored: plain values, sealed values (field → ciphertext),
/// and blind indexes (field → MAC).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub collection: String,
    pub id: String,
    pub owner_id: Option<AccountId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
    /// The data key of the sealed values; `None` when there are none.
    pub key_id: Option<String>,
    pub layout_rev: i64,
    pub data: Map<String, Value>,
    pub sealed: Map<String, Value>,
    pub blind: Map<String, Value>,
}

/// A row of `record_unique`: the value (its canonical JSON, or its MAC
/// when sensitive) of a unique field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueEntry {
    pub field: String,
    pub value: String,
}

/// What a record write needs to hold besides the record.
#[derive(Debug, Clone, Default)]
pub struct WriteChecks {
    /// The schema revision the record was validated against.
    pub rev: i64,
    pub uniques: Vec<UniqueEntry>,
    /// (field, target collection, record id) that must exist.
    pub references: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// The schema changed since the record was validated: validate again.
    Stale,
    /// The stored version is not the expected one.
    VersionMismatch,
    NotFound,
    Duplicate(String),
    MissingReference(String),
}

/// A data key, wrapped by the master key.
#[derive(Debug, Clone)]
pub struct DataKey {
    pub id: String,
    /// `collection:<name>`, `index:<name>` or `system`.
    pub scope: String,
    pub wrapped: String,
    /// The id of the master key that wrapped it.
    pub master_id: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// What one API key may do in one collection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub collection: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    /// The public start of the key, shown in lists: `rk_<8 hex>`.
    pub prefix: String,
    pub name: String,
    /// SHA-256 of the whole key; the key itself is never stored.
    pub token_hash: String,
    pub scopes: Vec<Scope>,
    /// CIDR ranges; empty means any address.
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: AccountId,
    pub revoked_at: Option<Timestamp>,
}

/// Who touched data: an account or an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Account(AccountId),
    ApiKey(String),
}

/// One data access: a read, list, write or delete, allowed or denied.
#[derive(Debug, Clone)]
pub struct DataEvent {
    pub at: Timestamp,
    pub actor: Actor,
    pub collection: String,
    pub action: Action,
    /// The records touched (at most 100 ids are kept).
    pub record_ids: Vec<String>,
    pub count: u32,
    /// `allowed`, `denied`, `not_found` or `invalid`.
    pub outcome: &'static str,
    /// Whether decrypted sensitive values were returned.
    pub sensitive: bool,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// A query over data-access events, newest first.
#[derive(Debug, Clone, Default)]
pub struct DataEventFilter {
    pub collection: Option<String>,
    pub actor: Option<String>,
    pub since: Option<Timestamp>,
    pub limit: u32,
}

/// A stored data-access event.
#[derive(Debug, Clone)]
pub struct StoredDataEvent {
    pub at: Timestamp,
    pub actor_kind: String,
    pub actor_id: String,
    pub collection: String,
    pub action: String,
    pub record_ids: Vec<String>,
    pub count: i64,
    pub outcome: String,
    pub sensitive: bool,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// The trail's name for a data event's user: an account id, or
/// `key:<id>` for an API key.
pub fn actor_user_id(kind: &str, id: &str) -> String {
    if kind == "api_key" {
        format!("key:{id}")
    } else {
        id.to_owned()
    }
}

impl DataEvent {
    pub fn to_stored(&self) -> StoredDataEvent {
        let (kind, id) = match &self.actor {
            Actor::Account(a) => ("account", a.as_str().to_owned()),
            Actor::ApiKey(k) => ("api_key", k.clone()),
        };
        StoredDataEvent {
            at: self.at,
            actor_kind: kind.to_owned(),
            actor_id: id,
            collection: self.collection.clone(),
            action: self.action.as_str().to_owned(),
            record_ids: self.record_ids.clone(),
            count: i64::from(self.count),
            outcome: self.outcome.to_owned(),
            sensitive: self.sensitive,
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The prefix of data events' actions in the trail (`data.read`, …).
pub const DATA_ACTION_PREFIX: &str = "data.";

impl StoredDataEvent {
    /// The event in the audit trail's shape.
    pub fn to_audit(&self) -> crate::audit::Event {
        use crate::audit::{Category, Event, Severity, FAILURE, SUCCESS};
        let allowed = self.outcome == "allowed";
        Event::new(
            self.at,
            &format!("{DATA_ACTION_PREFIX}{}", self.action),
            Category::Database,
            if allowed { SUCCESS } else { FAILURE },
        )
        .severity(if allowed {
            Severity::Info
        } else {
            Severity::Low
        })
        .reason((!allowed).then_some(self.outcome.as_str()))
        .user(Some(&actor_user_id(&self.actor_kind, &self.actor_id)))
        .object(&self.collection)
        .meta(&crate::RequestMeta {
            ip: self.ip.clone(),
            user_agent: None,
            request_id: self.request_id.clone(),
            ..Default::default()
        })
        .field("data.record_ids", self.record_ids.clone())
        .field("data.count", self.count)
        .field("data.sensitive", self.sensitive)
        .field("data.outcome", self.outcome.clone())
        .field("actor.kind", self.actor_kind.clone())
        .field("actor.id", self.actor_id.clone())
    }

    /// A data event read back from the trail.
    pub fn from_chained(c: &crate::audit::Chained) -> Option<StoredDataEvent> {
        let action = c.action.strip_prefix(DATA_ACTION_PREFIX)?;
        let f = c.fields_map();
        let text = |k: &str| f.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Some(StoredDataEvent {
            at: c.at,
            actor_kind: text("actor.kind")?,
            actor_id: text("actor.id")?,
            collection: c.object.clone()?,
            action: action.to_owned(),
            record_ids: f
                .get("data.record_ids")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            count: f.get("data.count").and_then(|v| v.as_i64()).unwrap_or(0),
            outcome: text("data.outcome")?,
            sensitive: f
                .get("data.sensitive")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            ip: c.source_ip.clone(),
            request_id: c.request_id.clone(),
        })
    }
}

/// A value a filter compares with, typed for the database.
#[derive(Debug, Clone, PartialEq)]
pub enum QValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A plain field, in `data`.
    Data(String),
    /// A searchable sensitive field's blind index, in `blind`.
    Blind(String),
    Id,
    Owner,
    CreatedAt,
    UpdatedAt,
}

/// A filter checked against the schema, ready to compile.
#[derive(Debug, Clone, PartialEq)]
pub enum QExpr {
    And(Vec<QExpr>),
    Or(Vec<QExpr>),
    Cmp {
        target: Target,
        op: Op,
        values: Vec<QValue>,
    },
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub collection: String,
    /// Only this owner's records.
    pub owner: Option<AccountId>,
    pub filter: Option<QExpr>,
    pub sort: Target,
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
}

/// How a schema change went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaUpdate {
    Done,
    /// Someone else changed the schema first.
    Stale,
    /// This many records do not satisfy the new schema.
    Violated(u64),
}

/// Storage for protected data. Implemented by `rampart-store`.
#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    async fn collections(&self) -> Result<Vec<Collection>, StoreError>;
    async fn collection(&self, name: &str) -> Result<Option<Collection>, StoreError>;
    /// Inserts the collection and its keys; false when the name is taken.
    async fn insert_collection(&self, c: &Collection, keys: &[DataKey])
        -> Result<bool, StoreError>;
    /// Locks the collection, runs `check` on every record (false: it
    /// violates the new schema) and stores the new schema only if none
    /// failed and the revision is still `expected_rev`.
    async fn update_collection(
        &self,
        c: &Collection,
        expected_rev: i64,
        unique_rows: Option<&(dyn for<'r> Fn(&'r StoredRecord) -> Vec<UniqueEntry> + Send + Sync)>,
        check: &(dyn for<'r> Fn(&'r StoredRecord) -> bool + Send + Sync),
    ) -> Result<SchemaUpdate, StoreError>;
    /// Deletes the collection with its records. False when absent.
    async fn delete_collection(&self, name: &str) -> Result<bool, StoreError>;
    async fn record_count(&self, collection: &str) -> Result<u64, StoreError>;

    /// `event`, when given, is committed with the record (only when the
    /// outcome is `Done`).
    async fn insert_record(
        &self,
        r: &StoredRecord,
        checks: &WriteChecks,
        event: Option<&crate::audit::PendingEvent>,
    ) -> Result<WriteOutcome, StoreError>;
    async fn record(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<(StoredRecord, i64)>, StoreError>;
    /// Replaces the record's values if its version is `expected_version`;
    /// the stored version becomes `r.version`.
    async fn update_record(
        &self,
        r: &StoredRecord,
        expected_version: i64,
        checks: &WriteChecks,
        event: Option<&crate::audit::PendingEvent>,
    ) -> Result<WriteOutcome, StoreError>;
    async fn delete_record(
        &self,
        collection: &str,
        id: &str,
        expected_version: Option<i64>,
        event: Option<&crate::audit::PendingEvent>,
    ) -> Result<WriteOutcome, StoreError>;
    async fn list_records(&self, q: &ListQuery) -> Result<Vec<StoredRecord>, StoreError>;

    /// Records sealed with another key than `key_id` or stored under an
    /// older layout than `layout_rev`, with ids after `after`, by id.
    async fn stale_records(
        &self,
        collection: &str,
        key_id: &str,
        layout_rev: i64,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
    /// Rewrites a record's stored form if it is still as read (version,
    /// key, layout) and its collection's current key is still `key_id` and
    /// layout `r.layout_rev`. Does not change its version.
    async fn reseal_record(
        &self,
        r: &StoredRecord,
        was: &StoredRecord,
        uniques: &[UniqueEntry],
        key_id: &str,
    ) -> Result<bool, StoreError>;

    async fn data_keys(&self) -> Result<Vec<DataKey>, StoreError>;
    async fn data_key(&self, id: &str) -> Result<Option<DataKey>, StoreError>;
    async fn insert_data_key(&self, k: &DataKey) -> Result<(), StoreError>;
    /// Makes `key` the collection's current data key.
    async fn set_collection_key(&self, collection: &str, key: &DataKey) -> Result<(), StoreError>;
    /// In one transaction: moves the master fingerprint from `old_master`
    /// to `new_master` (refused with `StaleMaster` if it is not
    /// `old_master`), and replaces every data key's wrapping with
    /// `rewrap(key)`. Returns how many keys were re-wrapped.
    async fn rewrap_data_keys(
        &self,
        old_master: &str,
        new_master: &str,
        rewrap: &(dyn for<'k> Fn(&'k DataKey) -> Option<String> + Send + Sync),
    ) -> Result<usize, StoreError>;
    /// The id of the master key the data keys are wrapped with, if set.
    async fn master_fingerprint(&self) -> Result<Option<String>, StoreError>;
    /// Sets it when it is not set yet.
    async fn init_master_fingerprint(&self, id: &str) -> Result<(), StoreError>;
    /// Marks a data key retired if no record uses it.
    async fn retire_data_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// How many records each data key protects.
    async fn key_usage(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The salt (base64) and Argon2id cost of a master passphrase.
    async fn master_kdf(&self) -> Result<Option<(String, [u32; 3])>, StoreError>;
    /// Records them; false when a row exists (the first writer wins).
    async fn set_master_kdf(&self, salt: &str, params: [u32; 3]) -> Result<bool, StoreError>;

    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError>;
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;

    async fn roles_of(&self, account: &AccountId) -> Result<Vec<String>, StoreError>;
    async fn set_roles(&self, account: &AccountId, roles: &[String]) -> Result<bool, StoreError>;

    async fn data_events(&self, f: &DataEventFilter) -> Result<Vec<StoredDataEvent>, StoreError>;
}
