//! `DataService`: the rules of protected data. Every record operation
//! passes here: access decision, schema check, sealing and unsealing,
//! the data-access event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use rampart_crypto::{sha256_hex, Entropy, Keyring, SecretString};
use serde_json::{Map, Value};

use super::filter::{self, Expr, Op};
use super::keys::KeyManager;
use super::schema::{
    self, normalise_datetime, printable_name, valid_record_id, Action, CollectionSchema, FieldDef,
    FieldProblem, FieldType, Patterns, OWNER,
};
use super::{
    Actor, ApiKey, Collection, DataEvent, DataEventFilter, DataStore, ListQuery, QExpr, QValue,
    SchemaUpdate, Scope, StoredDataEvent, StoredRecord, Target, UniqueEntry, WriteChecks,
    WriteOutcome,
};
use crate::events::{EventKind, Outcome};
use crate::{Account, AccountId, AuthService, Error, RequestMeta, Role, Timestamp};

const MAX_LIMIT: u32 = 100;
const DEFAULT_LIMIT: u32 = 20;
const RESEAL_BATCH: u32 = 200;
const MAX_IDS_PER_EVENT: usize = 100;
const MAX_API_KEY_NAME: usize = 100;
const MAX_SCOPES: usize = 64;
const MAX_RANGES: usize = 32;
const MAX_ROLES: usize = 16;
/// Writes retried this often when a schema change lands between the check
/// and the write.
const STALE_RETRIES: usize = 3;

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    Account(Account),
    ApiKey(ApiKey),
}

impl Principal {
    fn actor(&self) -> Actor {
        match self {
            Principal::Account(a) => Actor::Account(a.id.clone()),
            Principal::ApiKey(k) => Actor::ApiKey(k.id.clone()),
        }
    }
}

/// What an access rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCheck {
    /// Every record of the collection.
    All,
    /// Only the caller's own records (or, for `create`, records it will own).
    Own,
    Denied,
}

/// A record as the caller may see it.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub id: String,
    pub owner: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Leave sensitive fields out (the console's record browser).
    pub masked: bool,
}

#[derive(Debug)]
pub struct Page {
    pub records: Vec<RecordView>,
    pub next_cursor: Option<String>,
}

/// The result of a schema change.
#[derive(Debug)]
pub struct SchemaChange {
    pub collection: Collection,
    /// Records that will be rewritten in the background.
    pub resealing: u64,
}

/// A collection with what checking a record needs, cached by revision.
struct Compiled {
    collection: Collection,
    patterns: Patterns,
}

pub struct DataService {
    store: Arc<dyn DataStore>,
    auth: Arc<AuthService>,
    keys: Arc<KeyManager>,
    cache: RwLock<HashMap<String, Arc<Compiled>>>,
    /// Whether allowed reads and lists are recorded (`[audit] data_reads`).
    read_events: bool,
}

impl std::fmt::Debug for DataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataService").finish_non_exhaustive()
    }
}

fn ctx_value(collection: &str, id: &str, field: &str) -> String {
    format!("rec:{collection}:{id}:{field}")
}

fn ctx_blind(collection: &str, field: &str) -> String {
    format!("bi:{collection}:{field}")
}

/// The text a blind index or unique entry is made of: the canonical JSON
/// of the value, with emails compared without regard to case.
fn canonical(def: &FieldDef, v: &Value) -> String {
    match (def.ty, v) {
        (FieldType::Email, Value::String(s)) => Value::String(s.to_lowercase()).to_string(),
        // 1 and 1.0 are one number.
        (FieldType::Number, Value::Number(n)) => {
            n.as_f64().map(|f| f.to_string()).unwrap_or_default()
        }
        _ => v.to_string(),
    }
}

impl DataService {
    /// The service; its events go to the audit trail of `auth`.
    pub fn new(store: Arc<dyn DataStore>, auth: Arc<AuthService>, keys: Arc<KeyManager>) -> Self {
        Self {
            store,
            auth,
            keys,
            cache: RwLock::new(HashMap::new()),
            read_events: true,
        }
    }

    /// Turns the events of allowed reads and lists off (writes, refusals
    /// and denials are always recorded).
    pub fn without_read_events(mut self) -> Self {
        self.read_events = false;
        self
    }

    pub fn keys(&self) -> &Arc<KeyManager> {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn DataStore> {
        &self.store
    }

    fn now(&self) -> Timestamp {
        self.auth.clock().now()
    }

    fn entropy(&self) -> &dyn Entropy {
        self.auth.entropy().as_ref()
    }

    /// Waits until every data-access event handed over so far is written.
    pub async fn flush_events(&self) {
        self.auth.audit().flush().await
    }

    #[allow(clippy::too_many_arguments)]
    fn data_event(
        &self,
        p: &Principal,
        collection: &str,
        action: Action,
        ids: Vec<String>,
        count: u32,
        outcome: &'static str,
        sensitive: bool,
        meta: &RequestMeta,
    ) -> crate::audit::Event {
        let mut ids = ids;
        ids.truncate(MAX_IDS_PER_EVENT);
        DataEvent {
            at: self.now(),
            actor: p.actor(),
            collection: collection.to_owned(),
            action,
            record_ids: ids,
            count,
            outcome,
            sensitive,
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
        }
        .to_stored()
        .to_audit()
        .drill(meta.drill.as_deref())
    }

    /// The event of a write about to be made, to commit with it.
    fn write_event(
        &self,
        p: &Principal,
        collection: &str,
        action: Action,
        id: &str,
        sensitive: bool,
        meta: &RequestMeta,
    ) -> crate::audit::PendingEvent {
        let e = self.data_event(
            p,
            collection,
            action,
            vec![id.to_owned()],
            1,
            "allowed",
            sensitive,
            meta,
        );
        self.auth.audit().pending(&e)
    }

    /// A read's (or a refusal's) data-access event: durable within one
    /// commit of the audit writer. A full queue makes the request wait:
    /// events are never dropped.
    #[allow(clippy::too_many_arguments)]
    async fn event(
        &self,
        p: &Principal,
        collection: &str,
        action: Action,
        ids: Vec<String>,
        count: u32,
        outcome: &'static str,
        sensitive: bool,
        revealed: Option<&str>,
        meta: &RequestMeta,
    ) {
        // A reveal (one sensitive value shown on purpose) is recorded even
        // where ordinary reads are not.
        if !self.read_events
            && revealed.is_none()
            && outcome == "allowed"
            && matches!(action, Action::Read | Action::List)
        {
            return;
        }
        let mut event =
            self.data_event(p, collection, action, ids, count, outcome, sensitive, meta);
        if let Some(field) = revealed {
            event = event.field("data.revealed", field);
        }
        self.auth.audit().record(event).await;
    }

    /// A refused or failed operation's data-access event.
    async fn refused(
        &self,
        p: &Principal,
        collection: &str,
        action: Action,
        ids: Vec<String>,
        outcome: &'static str,
        meta: &RequestMeta,
    ) {
        self.event(p, collection, action, ids, 0, outcome, false, None, meta)
            .await
    }

    /// A denial: a data-access event and a security event.
    async fn denied(
        &self,
        p: &Principal,
        collection: &str,
        action: Action,
        ids: Vec<String>,
        meta: &RequestMeta,
    ) {
        self.refused(p, collection, action, ids, "denied", meta)
            .await;
        let account = match p {
            Principal::Account(a) => Some(a.id.clone()),
            Principal::ApiKey(_) => None,
        };
        let reason = match p {
            Principal::Account(_) => "collection_access",
            Principal::ApiKey(_) => "api_key_scope",
        };
        // Written off the request path, like the data-access event, so a
        // denied record is not told from a missing one by the time the
        // answer takes. Shutdown waits for it (`flush_notices`).
        let auth = self.auth.clone();
        let meta = meta.clone();
        let Ok(mut set) = self.auth.notices.lock() else {
            return;
        };
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            auth.record_event(
                EventKind::AccessDenied,
                Outcome::Failure,
                Some(reason),
                account.as_ref(),
                &meta,
            )
            .await;
        });
    }

    // ----- collections ---------------------------------------------------

    fn compiled(&self, c: Collection) -> Result<Arc<Compiled>, Error> {
        let patterns = Patterns::compile(&c.schema).map_err(Error::InvalidSchema)?;
        let entry = Arc::new(Compiled {
            collection: c,
            patterns,
        });
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.collection.name.clone(), entry.clone());
        Ok(entry)
    }

    fn cached(&self, name: &str, rev: i64) -> Option<Arc<Compiled>> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .filter(|c| c.collection.rev == rev)
            .cloned()
    }

    /// The collection as stored now.
    async fn load(&self, name: &str) -> Result<Arc<Compiled>, Error> {
        if !schema::valid_name(name) {
            return Err(Error::NotFound);
        }
        let c = self.store.collection(name).await?.ok_or(Error::NotFound)?;
        // A rotation changes the key, not the revision.
        if let Some(hit) = self
            .cached(name, c.rev)
            .filter(|h| h.collection.key_id == c.key_id)
        {
            return Ok(hit);
        }
        self.compiled(c)
    }

    /// The collection at revision `rev`, from the cache when it has it.
    async fn at_rev(&self, name: &str, rev: i64) -> Result<Arc<Compiled>, Error> {
        match self.cached(name, rev) {
            Some(c) => Ok(c),
            None => self.load(name).await,
        }
    }

    pub async fn collections(&self) -> Result<Vec<Collection>, Error> {
        Ok(self.store.collections().await?)
    }

    pub async fn collection(&self, name: &str) -> Result<Collection, Error> {
        Ok(self.load(name).await?.collection.clone())
    }

    async fn check_schema(&self, name: &str, s: &CollectionSchema) -> Result<(), Error> {
        if !schema::valid_name(name) {
            return Err(Error::InvalidSchema(vec![FieldProblem {
                field: String::new(),
                code: "invalid_collection_name",
                message: "collection names are 1-63 characters: a-z first, then a-z, 0-9 or _"
                    .into(),
            }]));
        }
        let mut problems = s.check();
        for target in s.references() {
            if target != name && self.store.collection(target).await?.is_none() {
                problems.push(FieldProblem {
                    field: String::new(),
                    code: "unknown_collection",
                    message: format!("a reference points to `{target}`, which does not exist"),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSchema(problems))
        }
    }

    pub async fn create_collection(
        &self,
        name: &str,
        s: CollectionSchema,
        by: Option<&AccountId>,
        meta: &RequestMeta,
    ) -> Result<Collection, Error> {
        self.check_schema(name, &s).await?;
        let now = self.now();
        let data_key = self
            .keys
            .generate(&format!("collection:{name}"), now)
            .await?;
        let index_key = self.keys.generate(&format!("index:{name}"), now).await?;
        let c = Collection {
            name: name.to_owned(),
            schema: s,
            rev: 1,
            layout_rev: 1,
            key_id: data_key.id.clone(),
            index_key_id: index_key.id.clone(),
            created_at: now,
            updated_at: now,
        };
        if !self
            .store
            .insert_collection(&c, &[data_key, index_key])
            .await?
        {
            return Err(Error::CollectionExists);
        }
        self.auth
            .record_event(
                EventKind::CollectionChanged,
                Outcome::Success,
                Some("created"),
                by,
                meta,
            )
            .await;
        Ok(c)
    }

    /// Replaces a collection's schema, refused when stored records
    /// violate it. Storage changes (a field newly sensitive, or no longer,
    /// or removed) are made by [`DataService::reseal`] afterwards.
    pub async fn update_collection(
        &self,
        name: &str,
        s: CollectionSchema,
        by: Option<&AccountId>,
        meta: &RequestMeta,
    ) -> Result<SchemaChange, Error> {
        self.check_schema(name, &s).await?;
        for _ in 0..STALE_RETRIES {
            let old = self.load(name).await?;
            let oldc = &old.collection;
            if oldc.schema == s {
                return Ok(SchemaChange {
                    collection: oldc.clone(),
                    resealing: 0,
                });
            }
            let layout_changed = oldc.schema.fields.iter().any(|(f, d)| {
                s.fields
                    .get(f)
                    .is_none_or(|n| n.sensitive != d.sensitive || n.searchable != d.searchable)
            });
            let new = Collection {
                schema: s.clone(),
                rev: oldc.rev + 1,
                layout_rev: oldc.layout_rev + i64::from(layout_changed),
                updated_at: self.now(),
                ..oldc.clone()
            };
            let patterns = Patterns::compile(&s).map_err(Error::InvalidSchema)?;
            // Unsealing needs the keys before the (synchronous) check runs.
            let rings = self.rings_for(oldc).await?;
            let index = self.keys.ring(&oldc.index_key_id).await?;
            let unique_changed = s.fields.iter().any(|(f, d)| {
                d.unique
                    && !oldc
                        .schema
                        .fields
                        .get(f)
                        .is_some_and(|o| o.unique && o.sensitive == d.sensitive)
            }) || oldc
                .schema
                .fields
                .iter()
                .any(|(f, d)| d.unique && !s.fields.get(f).is_some_and(|n| n.unique));
            let check = |r: &StoredRecord| -> bool {
                match unseal_all(&rings, r) {
                    Some(values) => s.check_record(&values, &patterns).is_ok(),
                    None => false,
                }
            };
            let uniques = |r: &StoredRecord| -> Vec<UniqueEntry> {
                match unseal_all(&rings, r) {
                    Some(values) => unique_entries(&new, &index, &values),
                    None => Vec::new(),
                }
            };
            let outcome = self
                .store
                .update_collection(
                    &new,
                    oldc.rev,
                    unique_changed.then_some(
                        &uniques as &(dyn Fn(&StoredRecord) -> Vec<UniqueEntry> + Send + Sync),
                    ),
                    &check,
                )
                .await?;
            match outcome {
                SchemaUpdate::Done => {
                    let resealing = if layout_changed {
                        self.store.record_count(name).await?
                    } else {
                        0
                    };
                    self.auth
                        .record_event(
                            EventKind::CollectionChanged,
                            Outcome::Success,
                            Some("schema_changed"),
                            by,
                            meta,
                        )
                        .await;
                    let c = self.compiled(new)?.collection.clone();
                    return Ok(SchemaChange {
                        collection: c,
                        resealing,
                    });
                }
                SchemaUpdate::Violated(n) => return Err(Error::SchemaViolated(n)),
                SchemaUpdate::Stale => continue,
            }
        }
        Err(Error::Unavailable(
            "the schema kept changing; try again".into(),
        ))
    }

    /// Deletes a collection. One with records is refused unless `purge`;
    /// one that others reference is refused.
    pub async fn delete_collection(
        &self,
        name: &str,
        purge: bool,
        by: &AccountId,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        self.load(name).await?;
        for other in self.store.collections().await? {
            if other.name != name && other.schema.references().contains(name) {
                return Err(Error::CollectionInUse(format!(
                    "`{}` has a reference field pointing here; change that schema first",
                    other.name
                )));
            }
        }
        let n = self.store.record_count(name).await?;
        if n > 0 && !purge {
            return Err(Error::CollectionInUse(format!(
                "it holds {n} records; delete them first or pass ?purge=true"
            )));
        }
        if !self.store.delete_collection(name).await? {
            return Err(Error::NotFound);
        }
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.auth
            .record_event(
                EventKind::CollectionChanged,
                Outcome::Success,
                Some("deleted"),
                Some(by),
                meta,
            )
            .await;
        Ok(())
    }

    // ----- access --------------------------------------------------------

    /// The caller's custom roles, read once per operation and only when
    /// one of the collection's grants (for an action or a field) names a
    /// role other than the built-in ones.
    async fn custom_roles(&self, p: &Principal, c: &Collection) -> Result<Vec<String>, Error> {
        let Principal::Account(a) = p else {
            return Ok(Vec::new());
        };
        let custom = |g: &String| g != OWNER && Role::parse(g).is_none();
        let named = Action::ALL
            .iter()
            .any(|act| c.schema.access.grants(*act).iter().any(custom))
            || c.schema
                .fields
                .values()
                .filter_map(|d| d.read.as_ref())
                .any(|g| g.iter().any(custom));
        if named {
            Ok(self.store.roles_of(&a.id).await?)
        } else {
            Ok(Vec::new())
        }
    }

    fn granted(a: &Account, custom: &[String], grants: &[String]) -> bool {
        grants
            .iter()
            .any(|g| g == a.role.as_str() || custom.iter().any(|r| r == g))
    }

    /// What the caller may do; `roles` from [`Self::custom_roles`].
    fn access(p: &Principal, c: &Collection, roles: &[String], action: Action) -> AccessCheck {
        match p {
            Principal::ApiKey(k) => {
                if k.scopes
                    .iter()
                    .any(|s| s.collection == c.name && s.actions.contains(&action))
                {
                    AccessCheck::All
                } else {
                    AccessCheck::Denied
                }
            }
            Principal::Account(a) => {
                let grants = c.schema.access.grants(action);
                if Self::granted(a, roles, grants) {
                    AccessCheck::All
                } else if grants.iter().any(|g| g == OWNER) {
                    AccessCheck::Own
                } else {
                    AccessCheck::Denied
                }
            }
        }
    }

    /// The fields the caller may see in a record it may read.
    fn visible_fields(p: &Principal, c: &Collection, roles: &[String]) -> Visibility {
        let mut v = Visibility::default();
        for (name, d) in &c.schema.fields {
            match (&d.read, p) {
                (None, _) => v.always.push(name.clone()),
                (Some(_), Principal::ApiKey(_)) => {}
                (Some(g), Principal::Account(a)) => {
                    if Self::granted(a, roles, g) {
                        v.always.push(name.clone());
                    } else if g.iter().any(|x| x == OWNER) {
                        v.owner_only.push(name.clone());
                    }
                }
            }
        }
        v
    }

    fn owns(p: &Principal, r: &StoredRecord) -> bool {
        match p {
            Principal::Account(a) => r.owner_id.as_ref() == Some(&a.id),
            Principal::ApiKey(_) => false,
        }
    }

    // ----- sealing -------------------------------------------------------

    async fn rings_for(&self, c: &Collection) -> Result<Rings, Error> {
        // Every key a record of this collection may name: the current one
        // and, during or after a rotation, the older ones.
        let mut rings = Rings::default();
        let scope = format!("collection:{}", c.name);
        for k in self.store.data_keys().await? {
            if k.scope == scope || k.id == c.key_id {
                rings.0.insert(k.id.clone(), self.keys.ring(&k.id).await?);
            }
        }
        Ok(rings)
    }

    async fn ring_for_record(&self, rings: &mut Rings, r: &StoredRecord) -> Result<(), Error> {
        if let Some(k) = &r.key_id {
            if !rings.0.contains_key(k) {
                rings.0.insert(k.clone(), self.keys.ring(k).await?);
            }
        }
        Ok(())
    }

    /// Splits checked values into plain, sealed and blind parts.
    fn seal(
        &self,
        c: &Collection,
        ring: &Keyring,
        index: &Keyring,
        id: &str,
        values: &Map<String, Value>,
    ) -> (Map<String, Value>, Map<String, Value>, Map<String, Value>) {
        let mut data = Map::new();
        let mut sealed = Map::new();
        let mut blind = Map::new();
        for (f, v) in values {
            let Some(def) = c.schema.fields.get(f) else {
                continue;
            };
            if def.sensitive {
                let plain = v.to_string();
                sealed.insert(
                    f.clone(),
                    Value::String(ring.seal(
                        self.entropy(),
                        &ctx_value(&c.name, id, f),
                        plain.as_bytes(),
                    )),
                );
                if def.searchable {
                    blind.insert(
                        f.clone(),
                        Value::String(index.mac(&ctx_blind(&c.name, f), &canonical(def, v))),
                    );
                }
            } else {
                data.insert(f.clone(), v.clone());
            }
        }
        (data, sealed, blind)
    }

    // ----- records -------------------------------------------------------

    fn view(
        c: &Collection,
        r: &StoredRecord,
        values: Map<String, Value>,
        vis: &Visibility,
        owns: bool,
    ) -> (RecordView, bool) {
        let mut data = Map::new();
        let mut sensitive = false;
        for (f, v) in values {
            if vis.shows(&f, owns) {
                sensitive |= c.schema.fields.get(&f).is_some_and(|d| d.sensitive);
                data.insert(f, v);
            }
        }
        (
            RecordView {
                id: r.id.clone(),
                owner: r.owner_id.as_ref().map(|a| a.0.clone()),
                created_at: r.created_at,
                updated_at: r.updated_at,
                version: r.version,
                data,
            },
            sensitive,
        )
    }

    /// The record's values, sealed ones opened, restricted to the current
    /// schema's fields.
    async fn values(
        &self,
        c: &Collection,
        rings: &mut Rings,
        r: &StoredRecord,
    ) -> Result<Map<String, Value>, Error> {
        self.ring_for_record(rings, r).await?;
        let all = unseal_all(rings, r).ok_or_else(|| {
            Error::Internal(format!(
                "record {} of {} does not decrypt (tampered or moved)",
                r.id, c.name
            ))
        })?;
        Ok(all
            .into_iter()
            .filter(|(f, _)| c.schema.fields.contains_key(f))
            .collect())
    }

    fn write_checks(c: &Collection, index: &Keyring, values: &Map<String, Value>) -> WriteChecks {
        let mut references = Vec::new();
        for (f, v) in values {
            if let (Some(def), Some(id)) = (c.schema.fields.get(f), v.as_str()) {
                if let (FieldType::Reference, Some(target)) = (def.ty, &def.collection) {
                    references.push((f.clone(), target.clone(), id.to_owned()));
                }
            }
        }
        WriteChecks {
            rev: c.rev,
            uniques: unique_entries(c, index, values),
            references,
        }
    }

    /// The first reference field naming a record the caller may not read;
    /// to the caller it is missing, so references cannot probe other
    /// collections.
    async fn unreadable_reference(
        &self,
        p: &Principal,
        checks: &WriteChecks,
    ) -> Result<Option<String>, Error> {
        for (field, target, id) in &checks.references {
            let target = match self.load(target).await {
                Ok(t) => t,
                Err(Error::NotFound) => return Ok(Some(field.clone())),
                Err(e) => return Err(e),
            };
            let roles = self.custom_roles(p, &target.collection).await?;
            let readable = match Self::access(p, &target.collection, &roles, Action::Read) {
                AccessCheck::Denied => false,
                AccessCheck::All => true,
                AccessCheck::Own => match self.store.record(&target.collection.name, id).await? {
                    Some((r, _)) => Self::owns(p, &r),
                    None => false,
                },
            };
            if !readable {
                return Ok(Some(field.clone()));
            }
        }
        Ok(None)
    }

    fn write_error(outcome: WriteOutcome) -> Error {
        match outcome {
            WriteOutcome::Duplicate(f) => Error::Duplicate(f),
            WriteOutcome::MissingReference(f) => Error::MissingReference(f),
            WriteOutcome::VersionMismatch => Error::VersionMismatch,
            WriteOutcome::NotFound => Error::NotFound,
            WriteOutcome::Stale | WriteOutcome::Done => {
                Error::Unavailable("the schema kept changing; try again".into())
            }
        }
    }

    fn body(input: &Value) -> Result<&Map<String, Value>, Error> {
        input.as_object().ok_or_else(|| {
            Error::InvalidRecord(vec![FieldProblem {
                field: String::new(),
                code: "not_an_object",
                message: "the record must be a JSON object of field values".into(),
            }])
        })
    }

    pub async fn create(
        &self,
        p: &Principal,
        collection: &str,
        input: &Value,
        meta: &RequestMeta,
    ) -> Result<RecordView, Error> {
        let input = Self::body(input)?;
        for attempt in 0..STALE_RETRIES {
            // The cached schema first: the insert's transaction re-reads the
            // revision and key, and a stale one comes back `Stale`.
            let cached = match attempt {
                0 => self
                    .cache
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(collection)
                    .cloned(),
                _ => None,
            };
            let cc = match cached {
                Some(c) => c,
                None => self.load(collection).await?,
            };
            let c = &cc.collection;
            let roles = self.custom_roles(p, c).await?;
            let access = Self::access(p, c, &roles, Action::Create);
            if access == AccessCheck::Denied {
                self.denied(p, collection, Action::Create, vec![], meta)
                    .await;
                return Err(Error::NotFound);
            }
            let values = match c.schema.check_record(input, &cc.patterns) {
                Ok(v) => v,
                Err(problems) => {
                    self.refused(p, collection, Action::Create, vec![], "invalid", meta)
                        .await;
                    return Err(Error::InvalidRecord(problems));
                }
            };
            let id = format!("rec_{}", crate::crypto_random_id(self.entropy()));
            let ring = self.keys.ring(&c.key_id).await?;
            let index = self.keys.ring(&c.index_key_id).await?;
            let (data, sealed, blind) = self.seal(c, &ring, &index, &id, &values);
            let now = self.now();
            let r = StoredRecord {
                collection: c.name.clone(),
                id: id.clone(),
                owner_id: match p {
                    Principal::Account(a) => Some(a.id.clone()),
                    Principal::ApiKey(_) => None,
                },
                created_at: now,
                updated_at: now,
                version: 1,
                key_id: (!sealed.is_empty()).then(|| c.key_id.clone()),
                layout_rev: c.layout_rev,
                data,
                sealed,
                blind,
            };
            let checks = Self::write_checks(c, &index, &values);
            if let Some(field) = self.unreadable_reference(p, &checks).await? {
                return Err(Error::MissingReference(field));
            }
            // The creator sees what it may read of what it wrote.
            let may_read = Self::access(p, c, &roles, Action::Read) != AccessCheck::Denied;
            let vis = Self::visible_fields(p, c, &roles);
            let (mut view, mut sensitive) = Self::view(c, &r, values.clone(), &vis, true);
            if !may_read {
                view.data.clear();
                sensitive = false;
            }
            let event = self.write_event(p, collection, Action::Create, &id, sensitive, meta);
            match self.store.insert_record(&r, &checks, Some(&event)).await? {
                WriteOutcome::Done => {
                    self.auth.audit().poke();
                    return Ok(view);
                }
                WriteOutcome::Stale => continue,
                other => {
                    self.refused(p, collection, Action::Create, vec![], "invalid", meta)
                        .await;
                    return Err(Self::write_error(other));
                }
            }
        }
        Err(Self::write_error(WriteOutcome::Stale))
    }

    /// Reads one record. A record the caller may not read is
    /// [`Error::NotFound`], exactly like a missing one.
    pub async fn read(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<RecordView, Error> {
        self.read_masked(p, collection, id, &Mask::None, meta).await
    }

    /// [`read`](Self::read), with sensitive fields left out as `mask`
    /// says. Revealing a field is always recorded, with the field's name,
    /// even where ordinary reads are not.
    pub async fn read_masked(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
        mask: &Mask,
        meta: &RequestMeta,
    ) -> Result<RecordView, Error> {
        if !schema::valid_name(collection) || !valid_record_id(id) {
            return Err(Error::NotFound);
        }
        let Some((r, rev)) = self.store.record(collection, id).await? else {
            // A missing collection or record; recorded only when the
            // collection exists (a probe of ids).
            self.refused(
                p,
                collection,
                Action::Read,
                vec![id.to_owned()],
                "not_found",
                meta,
            )
            .await;
            return Err(Error::NotFound);
        };
        let cc = self.at_rev(collection, rev).await?;
        let c = &cc.collection;
        let owns = Self::owns(p, &r);
        let roles = self.custom_roles(p, c).await?;
        let allowed = match Self::access(p, c, &roles, Action::Read) {
            AccessCheck::All => true,
            AccessCheck::Own => owns,
            AccessCheck::Denied => false,
        };
        if !allowed {
            self.denied(p, collection, Action::Read, vec![id.to_owned()], meta)
                .await;
            return Err(Error::NotFound);
        }
        let vis = Self::visible_fields(p, c, &roles);
        let revealed = match mask {
            Mask::Reveal(field) => Some(field.as_str()),
            _ => None,
        };
        if let Some(field) = revealed {
            // One answer for a field that is not sensitive, not there, or
            // not the caller's to read.
            if !c.schema.fields.get(field).is_some_and(|d| d.sensitive) || !vis.shows(field, owns) {
                return Err(Error::InvalidQuery(
                    "`field` must name a sensitive field of the collection that you may read"
                        .to_owned(),
                ));
            }
        }
        let mut rings = Rings::default();
        let values = self.values(c, &mut rings, &r).await?;
        let vis = mask.apply(vis, c);
        let (view, sensitive) = Self::view(c, &r, values, &vis, owns);
        self.event(
            p,
            collection,
            Action::Read,
            vec![id.to_owned()],
            1,
            "allowed",
            sensitive,
            revealed,
            meta,
        )
        .await;
        Ok(view)
    }

    /// Applies a partial update: fields given replace stored ones, `null`
    /// removes an optional field. `if_match` is the version the caller
    /// read; a different stored version is refused.
    pub async fn update(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
        patch: &Value,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<RecordView, Error> {
        let patch = Self::body(patch)?;
        if !schema::valid_name(collection) || !valid_record_id(id) {
            return Err(Error::NotFound);
        }
        for _ in 0..STALE_RETRIES {
            let cc = self.load(collection).await?;
            let c = &cc.collection;
            let Some((old, _)) = self.store.record(collection, id).await? else {
                self.refused(
                    p,
                    collection,
                    Action::Update,
                    vec![id.to_owned()],
                    "not_found",
                    meta,
                )
                .await;
                return Err(Error::NotFound);
            };
            let owns = Self::owns(p, &old);
            let roles = self.custom_roles(p, c).await?;
            let may_update = match Self::access(p, c, &roles, Action::Update) {
                AccessCheck::All => true,
                AccessCheck::Own => owns,
                AccessCheck::Denied => false,
            };
            if !may_update {
                self.denied(p, collection, Action::Update, vec![id.to_owned()], meta)
                    .await;
                return Err(Error::NotFound);
            }
            if if_match.is_some_and(|v| v != old.version) {
                return Err(Error::VersionMismatch);
            }
            let mut rings = Rings::default();
            let mut merged = self.values(c, &mut rings, &old).await?;
            // `null` stays in: the check drops it from an optional field
            // and refuses it for a required one.
            for (f, v) in patch {
                merged.insert(f.clone(), v.clone());
            }
            let values = match c.schema.check_record(&merged, &cc.patterns) {
                Ok(v) => v,
                Err(problems) => {
                    self.refused(
                        p,
                        collection,
                        Action::Update,
                        vec![id.to_owned()],
                        "invalid",
                        meta,
                    )
                    .await;
                    return Err(Error::InvalidRecord(problems));
                }
            };
            let ring = self.keys.ring(&c.key_id).await?;
            let index = self.keys.ring(&c.index_key_id).await?;
            let (data, sealed, blind) = self.seal(c, &ring, &index, id, &values);
            let r = StoredRecord {
                updated_at: self.now(),
                version: old.version + 1,
                key_id: (!sealed.is_empty()).then(|| c.key_id.clone()),
                layout_rev: c.layout_rev,
                data,
                sealed,
                blind,
                ..old.clone()
            };
            let checks = Self::write_checks(c, &index, &values);
            if let Some(field) = self.unreadable_reference(p, &checks).await? {
                return Err(Error::MissingReference(field));
            }
            // Updating is not reading: without read access the answer
            // holds only the system fields.
            let may_read = match Self::access(p, c, &roles, Action::Read) {
                AccessCheck::All => true,
                AccessCheck::Own => owns,
                AccessCheck::Denied => false,
            };
            let vis = Self::visible_fields(p, c, &roles);
            let (mut view, mut sensitive) = Self::view(c, &r, values.clone(), &vis, owns);
            if !may_read {
                view.data.clear();
                sensitive = false;
            }
            let event = self.write_event(p, collection, Action::Update, id, sensitive, meta);
            match self
                .store
                .update_record(&r, old.version, &checks, Some(&event))
                .await?
            {
                WriteOutcome::Done => {
                    self.auth.audit().poke();
                    return Ok(view);
                }
                WriteOutcome::Stale => continue,
                // Changed between our read and our write: without If-Match
                // that is a retry, with it the caller's version is stale.
                WriteOutcome::VersionMismatch if if_match.is_none() => continue,
                other => {
                    self.refused(
                        p,
                        collection,
                        Action::Update,
                        vec![id.to_owned()],
                        "invalid",
                        meta,
                    )
                    .await;
                    return Err(Self::write_error(other));
                }
            }
        }
        Err(Self::write_error(WriteOutcome::Stale))
    }

    pub async fn delete(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
        if_match: Option<i64>,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !schema::valid_name(collection) || !valid_record_id(id) {
            return Err(Error::NotFound);
        }
        let cc = self.load(collection).await?;
        let c = &cc.collection;
        let Some((old, _)) = self.store.record(collection, id).await? else {
            self.refused(
                p,
                collection,
                Action::Delete,
                vec![id.to_owned()],
                "not_found",
                meta,
            )
            .await;
            return Err(Error::NotFound);
        };
        let roles = self.custom_roles(p, c).await?;
        let allowed = match Self::access(p, c, &roles, Action::Delete) {
            AccessCheck::All => true,
            AccessCheck::Own => Self::owns(p, &old),
            AccessCheck::Denied => false,
        };
        if !allowed {
            self.denied(p, collection, Action::Delete, vec![id.to_owned()], meta)
                .await;
            return Err(Error::NotFound);
        }
        let expected = if_match.unwrap_or(old.version);
        let event = self.write_event(p, collection, Action::Delete, id, false, meta);
        match self
            .store
            .delete_record(collection, id, Some(expected), Some(&event))
            .await?
        {
            WriteOutcome::Done => {
                self.auth.audit().poke();
                Ok(())
            }
            other => Err(Self::write_error(other)),
        }
    }

    pub async fn list(
        &self,
        p: &Principal,
        collection: &str,
        req: &ListRequest,
        meta: &RequestMeta,
    ) -> Result<Page, Error> {
        let cc = self.load(collection).await?;
        let c = &cc.collection;
        let roles = self.custom_roles(p, c).await?;
        let owner = match Self::access(p, c, &roles, Action::List) {
            AccessCheck::All => None,
            AccessCheck::Own => match p {
                Principal::Account(a) => Some(a.id.clone()),
                Principal::ApiKey(_) => unreachable!("API keys are never owners"),
            },
            AccessCheck::Denied => {
                self.denied(p, collection, Action::List, vec![], meta).await;
                return Err(Error::NotFound);
            }
        };
        let vis = Self::visible_fields(p, c, &roles);
        let index = self.keys.ring(&c.index_key_id).await?;
        let filter = match &req.filter {
            Some(f) if !f.trim().is_empty() => {
                let e = filter::parse(f).map_err(|e| Error::InvalidFilter(e.to_string()))?;
                Some(typed(c, &vis, owner.is_none(), &index, &e)?)
            }
            _ => None,
        };
        let (sort, descending) = sort_target(c, &vis, owner.is_some(), req.sort.as_deref())?;
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::InvalidQuery(format!("limit is 1 to {MAX_LIMIT}")));
        }
        let offset = match req.cursor.as_deref() {
            Some(cur) if !cur.is_empty() => parse_cursor(cur)?,
            _ => 0,
        };
        let q = ListQuery {
            collection: c.name.clone(),
            owner,
            filter,
            sort,
            descending,
            // One more than asked, to know whether there is a next page.
            limit: limit + 1,
            offset,
        };
        let mut rows = self.store.list_records(&q).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut rings = Rings::default();
        let mut records = Vec::with_capacity(rows.len());
        let mut sensitive = false;
        let vis = if req.masked {
            Mask::Sensitive.apply(vis, c)
        } else {
            vis
        };
        for r in &rows {
            let owns = Self::owns(p, r);
            let values = self.values(c, &mut rings, r).await?;
            let (v, s) = Self::view(c, r, values, &vis, owns);
            sensitive |= s;
            records.push(v);
        }
        self.event(
            p,
            collection,
            Action::List,
            records.iter().map(|r| r.id.clone()).collect(),
            records.len() as u32,
            "allowed",
            sensitive,
            None,
            meta,
        )
        .await;
        Ok(Page {
            next_cursor: more.then(|| make_cursor(offset + limit as u64)),
            records,
        })
    }

    // ----- the account lifecycle (ADR 0015) ------------------------------
    //
    // Here rather than in `AuthService` because an account's records, and
    // which collections delete them with it, are this service's.

    /// Deletes an account now, with its records in the collections marked
    /// `owner_deletes` (the others lose their owner); `by` is for the trail.
    pub async fn delete_account(
        &self,
        id: &AccountId,
        by: &str,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        let owner_deletes = self.owner_deleting_collections().await?;
        self.auth.delete_account(id, &owner_deletes, by, meta).await
    }

    /// The owner closes their account: every session ends, and the account
    /// goes after the grace period (a sign-in meanwhile keeps it), or at
    /// once when there is none. When it goes, and whether it is gone.
    pub async fn close_account(
        &self,
        account: &crate::Account,
        meta: &RequestMeta,
    ) -> Result<(crate::Timestamp, bool), Error> {
        let at = self.auth.schedule_deletion(account, meta).await?;
        if !self.auth.config().accounts.deletion_grace.is_zero() {
            return Ok((at, false));
        }
        self.delete_account(&account.id, "owner_request", meta)
            .await?;
        Ok((at, true))
    }

    /// One account as an administrator sees it, with its custom roles.
    pub async fn account_detail(
        &self,
        id: &AccountId,
    ) -> Result<crate::lifecycle::AccountDetail, Error> {
        let roles = self.roles_of(id).await?;
        self.auth.account_detail(id, roles).await
    }

    /// Deletes the accounts whose grace period is over; how many went.
    pub async fn delete_due_accounts(&self) -> Result<u64, Error> {
        let owner_deletes = self.owner_deleting_collections().await?;
        self.auth.delete_due_accounts(&owner_deletes).await
    }

    /// Everything held about the account, its records decrypted for it
    /// (GDPR articles 15 and 20); recorded as `account.exported`.
    pub async fn export_account(
        &self,
        account: &crate::Account,
        meta: &RequestMeta,
    ) -> Result<crate::lifecycle::AccountExport, Error> {
        let roles = self.roles_of(&account.id).await?;
        let mut export = self.auth.export_account(account, roles).await?;
        export.records = self.owned_records(account, meta).await?;
        self.auth.exported(account, meta).await;
        Ok(export)
    }

    /// The collections whose records are deleted with their owner.
    pub async fn owner_deleting_collections(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .store
            .collections()
            .await?
            .into_iter()
            .filter(|c| c.schema.owner_deletes)
            .map(|c| c.name)
            .collect())
    }

    /// Every record the account owns, every field decrypted, by collection
    /// (for the owner's export); each collection read is a data event.
    async fn owned_records(
        &self,
        account: &crate::Account,
        meta: &RequestMeta,
    ) -> Result<std::collections::BTreeMap<String, Vec<Value>>, Error> {
        const PAGE: u32 = 500;
        let p = Principal::Account(account.clone());
        let mut out = std::collections::BTreeMap::new();
        for c in self.store.collections().await? {
            let mut rings = Rings::default();
            let mut records = Vec::new();
            let mut ids = Vec::new();
            let mut sensitive = false;
            let mut offset = 0;
            loop {
                let rows = self
                    .store
                    .list_records(&ListQuery {
                        collection: c.name.clone(),
                        owner: Some(account.id.clone()),
                        filter: None,
                        sort: Target::CreatedAt,
                        descending: false,
                        limit: PAGE,
                        offset,
                    })
                    .await?;
                for r in &rows {
                    let values = self.values(&c, &mut rings, r).await?;
                    sensitive |= r.sealed.keys().next().is_some();
                    ids.push(r.id.clone());
                    records.push(serde_json::json!({
                        "id": r.id,
                        "created_at": r.created_at.to_rfc3339(),
                        "updated_at": r.updated_at.to_rfc3339(),
                        "version": r.version,
                        "data": Value::Object(values),
                    }));
                }
                if rows.len() < PAGE as usize {
                    break;
                }
                offset += u64::from(PAGE);
            }
            if records.is_empty() {
                continue;
            }
            let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
            self.event(
                &p,
                &c.name,
                Action::List,
                ids,
                n,
                "allowed",
                sensitive,
                None,
                meta,
            )
            .await;
            out.insert(c.name, records);
        }
        Ok(out)
    }

    // ----- keys ----------------------------------------------------------

    /// Gives every collection a new data key. Values are re-encrypted by
    /// [`DataService::reseal`]. Returns the new key ids.
    pub async fn rotate_data_keys(&self) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        for c in self.store.collections().await? {
            let k = self
                .keys
                .generate(&format!("collection:{}", c.name), self.now())
                .await?;
            self.store.set_collection_key(&c.name, &k).await?;
            out.push((c.name.clone(), k.id.clone()));
        }
        Ok(out)
    }

    /// Brings every record of every collection to its collection's current
    /// key and layout, in batches; `progress(collection, done)` after each
    /// batch. Safe to run on several nodes at once and to interrupt.
    /// Returns how many records were rewritten.
    pub async fn reseal(&self, progress: &(dyn Fn(&str, u64) + Send + Sync)) -> Result<u64, Error> {
        let mut total = 0;
        for c in self.store.collections().await? {
            let name = c.name.clone();
            let mut rings = Rings::default();
            let mut done = 0u64;
            // Pages by id: a record that cannot be rewritten now is passed
            // over, never fetched again and again.
            let mut after = String::new();
            let mut target: Option<(String, i64)> = None;
            loop {
                // The collection as it is now, for every batch: a rotation
                // or schema change meanwhile restarts the pass with it.
                let Some(c) = self.store.collection(&name).await? else {
                    break;
                };
                if target.as_ref() != Some(&(c.key_id.clone(), c.layout_rev)) {
                    target = Some((c.key_id.clone(), c.layout_rev));
                    after.clear();
                }
                let ring = self.keys.ring(&c.key_id).await?;
                let index = self.keys.ring(&c.index_key_id).await?;
                let batch = self
                    .store
                    .stale_records(&c.name, &c.key_id, c.layout_rev, &after, RESEAL_BATCH)
                    .await?;
                let Some(last) = batch.last() else {
                    break;
                };
                after = last.id.clone();
                for old in batch {
                    self.ring_for_record(&mut rings, &old).await?;
                    let Some(all) = unseal_all(&rings, &old) else {
                        tracing::error!(collection = %c.name, record = %old.id, "record does not decrypt; left as is");
                        continue;
                    };
                    let values: Map<String, Value> = all
                        .into_iter()
                        .filter(|(f, _)| c.schema.fields.contains_key(f))
                        .collect();
                    let (data, sealed, blind) = self.seal(&c, &ring, &index, &old.id, &values);
                    let r = StoredRecord {
                        key_id: (!sealed.is_empty()).then(|| c.key_id.clone()),
                        layout_rev: c.layout_rev,
                        data,
                        sealed,
                        blind,
                        ..old.clone()
                    };
                    let uniques = unique_entries(&c, &index, &values);
                    // Refused when a user write changed the record (it used
                    // the current key) or the collection moved on (the
                    // next batch sees it).
                    if self
                        .store
                        .reseal_record(&r, &old, &uniques, &c.key_id)
                        .await?
                    {
                        done += 1;
                    }
                }
                progress(&c.name, done);
            }
            total += done;
        }
        let now = self.now();
        // Keys no collection uses any more, and that seal nothing (the store
        // checks that too), are retired.
        let current: std::collections::HashSet<String> = self
            .store
            .collections()
            .await?
            .into_iter()
            .map(|c| c.key_id)
            .collect();
        for k in self.store.data_keys().await? {
            if k.retired_at.is_none()
                && k.scope.starts_with("collection:")
                && !current.contains(&k.id)
            {
                self.store.retire_data_key(&k.id, now).await?;
            }
        }
        Ok(total)
    }

    // ----- API keys and roles ---------------------------------------------

    /// Creates an API key; the secret is returned once.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_api_key(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        allowed_ips: Vec<String>,
        expires_at: Option<Timestamp>,
        by: &AccountId,
        meta: &RequestMeta,
    ) -> Result<(ApiKey, SecretString), Error> {
        let bad = |m: &str| Error::InvalidApiKey(m.to_owned());
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_API_KEY_NAME
            || name.chars().any(char::is_control)
        {
            return Err(bad("name: 1-100 characters, no control characters"));
        }
        if scopes.is_empty() || scopes.len() > MAX_SCOPES {
            return Err(bad(
                "scopes: 1 to 64 entries, each a collection and its actions",
            ));
        }
        for s in &scopes {
            if s.actions.is_empty() {
                return Err(bad("each scope needs at least one action"));
            }
            if self.store.collection(&s.collection).await?.is_none() {
                return Err(Error::InvalidApiKey(format!(
                    "scope: there is no collection `{}`",
                    printable_name(&s.collection)
                )));
            }
        }
        if allowed_ips.len() > MAX_RANGES {
            return Err(bad("allowed_ips: at most 32 ranges"));
        }
        let mut ranges = Vec::new();
        for r in &allowed_ips {
            let net = parse_range(r).ok_or_else(|| {
                bad("allowed_ips: CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32")
            })?;
            ranges.push(net.to_string());
        }
        let now = self.now();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(bad("expires_at is in the past"));
        }
        let mut prefix = [0u8; 4];
        self.entropy().fill(&mut prefix);
        let prefix = format!("rk_{}", hex_lower(&prefix));
        let secret = rampart_crypto::random_token(self.entropy(), 32);
        let token = SecretString::new(format!("{prefix}_{}", secret.expose_secret()));
        let key = ApiKey {
            id: format!("key_{}", crate::crypto_random_id(self.entropy())),
            prefix,
            name: name.to_owned(),
            token_hash: sha256_hex(token.expose_secret().as_bytes()),
            scopes,
            allowed_ips: ranges,
            expires_at,
            created_at: now,
            created_by: by.clone(),
            revoked_at: None,
        };
        self.store.insert_api_key(&key).await?;
        self.auth
            .record_event(
                EventKind::ApiKeyCreated,
                Outcome::Success,
                None,
                Some(by),
                meta,
            )
            .await;
        Ok((key, token))
    }

    /// The key a request presents, if it is live and allowed from `ip`.
    pub async fn authenticate_api_key(
        &self,
        token: &SecretString,
        ip: Option<IpAddr>,
        meta: &RequestMeta,
    ) -> Result<ApiKey, Error> {
        let hash = sha256_hex(token.expose_secret().as_bytes());
        let key = self.store.api_key_by_hash(&hash).await?;
        let now = self.now();
        let Some(key) = key.filter(|k| {
            rampart_crypto::constant_time_eq(k.token_hash.as_bytes(), hash.as_bytes())
                && k.revoked_at.is_none()
                && k.expires_at.is_none_or(|e| now < e)
        }) else {
            self.auth
                .record_event(
                    EventKind::ApiKeyRefused,
                    Outcome::Failure,
                    Some("invalid_key"),
                    None,
                    meta,
                )
                .await;
            return Err(Error::ApiKeyInvalid);
        };
        if !key.allowed_ips.is_empty() {
            let inside = ip.is_some_and(|ip| {
                key.allowed_ips
                    .iter()
                    .filter_map(|r| parse_range(r))
                    .any(|n| n.contains(&ip))
            });
            if !inside {
                self.auth
                    .record_event(
                        EventKind::ApiKeyRefused,
                        Outcome::Failure,
                        Some("ip_not_allowed"),
                        None,
                        meta,
                    )
                    .await;
                return Err(Error::ApiKeyIpRefused);
            }
        }
        Ok(key)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, Error> {
        Ok(self.store.api_keys().await?)
    }

    pub async fn revoke_api_key(
        &self,
        id: &str,
        by: &AccountId,
        meta: &RequestMeta,
    ) -> Result<(), Error> {
        if !self.store.revoke_api_key(id, self.now()).await? {
            return Err(Error::NotFound);
        }
        self.auth
            .record_event(
                EventKind::ApiKeyRevoked,
                Outcome::Success,
                None,
                Some(by),
                meta,
            )
            .await;
        Ok(())
    }

    pub async fn roles_of(&self, account: &AccountId) -> Result<Vec<String>, Error> {
        Ok(self.store.roles_of(account).await?)
    }

    pub async fn set_roles(
        &self,
        account: &AccountId,
        roles: Vec<String>,
        by: &AccountId,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, Error> {
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        if roles.len() > MAX_ROLES
            || roles
                .iter()
                .any(|r| !schema::valid_role(r) || Role::parse(r).is_some())
        {
            return Err(Error::InvalidRole);
        }
        if !self.store.set_roles(account, &roles).await? {
            return Err(Error::NotFound);
        }
        // The actor is the user; the account whose roles changed is the
        // object, with its new roles.
        let event = EventKind::RolesChanged
            .event(self.now(), Outcome::Success)
            .user(Some(by.as_str()))
            .object(account.as_str())
            .meta(meta)
            .field("roles", roles.clone());
        self.auth.record_security(event).await;
        Ok(roles)
    }

    pub async fn data_events(&self, f: &DataEventFilter) -> Result<Vec<StoredDataEvent>, Error> {
        Ok(self.store.data_events(f).await?)
    }
}

/// Which sensitive fields a read leaves out (the console masks them until
/// a person reveals one, after a step-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// Every field the caller may read.
    None,
    /// No sensitive field.
    Sensitive,
    /// No sensitive field but this one.
    Reveal(String),
}

impl Mask {
    fn apply(&self, mut vis: Visibility, c: &Collection) -> Visibility {
        if *self == Mask::None {
            return vis;
        }
        let keep = |f: &String| {
            !c.schema.fields.get(f).is_some_and(|d| d.sensitive)
                || matches!(self, Mask::Reveal(r) if r == f)
        };
        vis.always.retain(keep);
        vis.owner_only.retain(keep);
        vis
    }
}

/// Which fields a caller sees.
#[derive(Debug, Default)]
struct Visibility {
    always: Vec<String>,
    /// Shown only in records the caller owns.
    owner_only: Vec<String>,
}

impl Visibility {
    fn shows(&self, field: &str, owns: bool) -> bool {
        self.always.iter().any(|f| f == field)
            || (owns && self.owner_only.iter().any(|f| f == field))
    }

    /// Fields the caller can see in every record it can list (filters and
    /// sorts may use only these).
    fn everywhere(&self, field: &str, only_own: bool) -> bool {
        self.shows(field, only_own)
    }
}

#[derive(Default)]
struct Rings(HashMap<String, Arc<Keyring>>);

/// Every value of a record, sealed ones opened. `None` when a sealed
/// value does not open (tampered, moved, or its key is not at hand).
fn unseal_all(rings: &Rings, r: &StoredRecord) -> Option<Map<String, Value>> {
    let mut out = r.data.clone();
    if r.sealed.is_empty() {
        return Some(out);
    }
    let ring = rings.0.get(r.key_id.as_deref()?)?;
    for (f, v) in &r.sealed {
        let plain = ring
            .open(&ctx_value(&r.collection, &r.id, f), v.as_str()?)
            .ok()?;
        let value: Value = serde_json::from_slice(plain.expose_secret()).ok()?;
        out.insert(f.clone(), value);
    }
    Some(out)
}

fn unique_entries(
    c: &Collection,
    index: &Keyring,
    values: &Map<String, Value>,
) -> Vec<UniqueEntry> {
    values
        .iter()
        .filter_map(|(f, v)| {
            let def = c.schema.fields.get(f)?;
            if !def.unique {
                return None;
            }
            // A MAC for sensitive values, a hash for plain ones: bounded
            // in size whatever the value (PostgreSQL's index rows are).
            let value = if def.sensitive {
                index.mac(&format!("uq:{}:{f}", c.name), &canonical(def, v))
            } else {
                sha256_hex(canonical(def, v).as_bytes())
            };
            Some(UniqueEntry {
                field: f.clone(),
                value,
            })
        })
        .collect()
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_range(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

const CURSOR_PREFIX: &str = "o1.";

fn make_cursor(offset: u64) -> String {
    format!("{CURSOR_PREFIX}{offset}")
}

fn parse_cursor(s: &str) -> Result<u64, Error> {
    s.strip_prefix(CURSOR_PREFIX)
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n <= 1_000_000)
        .ok_or_else(|| {
            Error::InvalidQuery("cursor: pass back the next_cursor of the previous page".into())
        })
}

/// A system field usable in filters and sorts.
fn system_target(name: &str) -> Option<Target> {
    match name {
        "id" => Some(Target::Id),
        "owner" => Some(Target::Owner),
        "created_at" => Some(Target::CreatedAt),
        "updated_at" => Some(Target::UpdatedAt),
        _ => None,
    }
}

fn sort_target(
    c: &Collection,
    vis: &Visibility,
    only_own: bool,
    sort: Option<&str>,
) -> Result<(Target, bool), Error> {
    let Some(s) = sort.filter(|s| !s.is_empty()) else {
        return Ok((Target::CreatedAt, false));
    };
    let (name, desc) = match s.strip_prefix('-') {
        Some(n) => (n, true),
        None => (s, false),
    };
    if let Some(t) = system_target(name) {
        return Ok((t, desc));
    }
    let def = c
        .schema
        .fields
        .get(name)
        .filter(|_| vis.everywhere(name, only_own))
        .ok_or_else(|| Error::InvalidQuery(format!("sort: no field `{}`", printable_name(name))))?;
    if def.sensitive {
        return Err(Error::InvalidQuery(format!(
            "sort: `{name}` is encrypted and cannot be sorted on"
        )));
    }
    if !def.ty.ordered() {
        return Err(Error::InvalidQuery(format!(
            "sort: `{name}` cannot be sorted on"
        )));
    }
    Ok((Target::Data(name.to_owned()), desc))
}

/// Checks a parsed filter against the schema and the caller's view, and
/// types its values.
fn typed(
    c: &Collection,
    vis: &Visibility,
    all: bool,
    index: &Keyring,
    e: &Expr,
) -> Result<QExpr, Error> {
    let bad = |m: String| Error::InvalidFilter(m);
    match e {
        Expr::And(v) => Ok(QExpr::And(
            v.iter()
                .map(|x| typed(c, vis, all, index, x))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Or(v) => Ok(QExpr::Or(
            v.iter()
                .map(|x| typed(c, vis, all, index, x))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Cond(cond) => {
            let name = cond.field.as_str();
            let op = cond.op;
            if let Some(t) = system_target(name) {
                if op == Op::Contains {
                    return Err(bad(format!("`contains` does not apply to `{name}`")));
                }
                let values = cond
                    .values
                    .iter()
                    .map(|v| system_value(&t, v))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad(format!(
                            "`{name}` compares with {}",
                            match t {
                                Target::CreatedAt | Target::UpdatedAt =>
                                    "an RFC 3339 date-time string",
                                _ => "a string",
                            }
                        ))
                    })?;
                return Ok(QExpr::Cmp {
                    target: t,
                    op,
                    values,
                });
            }
            // A field the caller cannot see in every listed record is
            // unknown to it: filtering on it would reveal its values.
            let def = c
                .schema
                .fields
                .get(name)
                .filter(|_| vis.everywhere(name, !all))
                .ok_or_else(|| bad(format!("no field `{}`", printable_name(name))))?;
            if def.sensitive {
                if !def.searchable {
                    return Err(bad(format!(
                        "`{name}` is encrypted and not searchable; mark it searchable to allow exact matches"
                    )));
                }
                if !matches!(op, Op::Eq | Op::In) {
                    return Err(bad(format!(
                        "`{name}` is encrypted: only `=` and `in` apply (through its blind index)"
                    )));
                }
                let mut values = Vec::new();
                for v in &cond.values {
                    if v.is_null() {
                        return Err(bad(format!("`{name}`: compare with a value, not null")));
                    }
                    check_type(name, def, v)?;
                    // Every key that may have made a stored index: here one
                    // (the index key is not rotated with the data key).
                    values.push(QValue::Text(index.mac(
                        &ctx_blind(&c.name, name),
                        &canonical(def, &normalised(def, v)),
                    )));
                }
                return Ok(QExpr::Cmp {
                    target: Target::Blind(name.to_owned()),
                    op: if op == Op::Eq && values.len() == 1 {
                        Op::Eq
                    } else {
                        Op::In
                    },
                    values,
                });
            }
            if op.is_range() && !def.ty.ordered() {
                return Err(bad(format!("`{}` does not apply to `{name}`", op.as_str())));
            }
            if op == Op::Contains
                && def.ty != FieldType::Text
                && def.ty != FieldType::Email
                && def.ty != FieldType::Url
            {
                return Err(bad(format!(
                    "`contains` applies to text fields; `{name}` is not one"
                )));
            }
            if def.ty == FieldType::Json {
                return Err(bad(format!(
                    "`{name}` is a json field and cannot be filtered on"
                )));
            }
            let mut values = Vec::new();
            for v in &cond.values {
                if v.is_null() {
                    if !matches!(op, Op::Eq | Op::Ne) {
                        return Err(bad(format!("`{name}`: null compares only with = and !=")));
                    }
                    values.push(QValue::Null);
                    continue;
                }
                check_type(name, def, v)?;
                values.push(match normalised(def, v) {
                    Value::Bool(b) => QValue::Bool(b),
                    Value::Number(n) if def.ty == FieldType::Integer => {
                        QValue::Int(n.as_i64().unwrap_or_default())
                    }
                    Value::Number(n) => QValue::Float(n.as_f64().unwrap_or_default()),
                    Value::String(s) => QValue::Text(s),
                    _ => return Err(bad(format!("`{name}`: unsupported value"))),
                });
            }
            Ok(QExpr::Cmp {
                target: Target::Data(name.to_owned()),
                op,
                values,
            })
        }
    }
}

/// The value as the schema stores it (date-times in UTC).
fn normalised(def: &FieldDef, v: &Value) -> Value {
    match (def.ty, v) {
        (FieldType::Datetime, Value::String(s)) => normalise_datetime(s)
            .map(Value::String)
            .unwrap_or_else(|| v.clone()),
        _ => v.clone(),
    }
}

/// Types only: limits are for writes, a filter may ask for anything.
fn check_type(name: &str, def: &FieldDef, v: &Value) -> Result<(), Error> {
    let ok = match def.ty {
        FieldType::Integer => v.is_i64() || v.is_u64(),
        FieldType::Number => v.is_number(),
        FieldType::Boolean => v.is_boolean(),
        FieldType::Datetime => v.as_str().and_then(normalise_datetime).is_some(),
        FieldType::Json => false,
        _ => v.is_string(),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidFilter(format!(
            "`{name}` is {}: the value has the wrong type",
            match def.ty {
                FieldType::Integer => "an integer",
                FieldType::Number => "a number",
                FieldType::Boolean => "a boolean",
                FieldType::Datetime => "a date-time (RFC 3339 string)",
                _ => "text (a quoted string)",
            }
        )))
    }
}

fn system_value(t: &Target, v: &Value) -> Option<QValue> {
    let s = v.as_str()?;
    match t {
        Target::CreatedAt | Target::UpdatedAt => {
            Timestamp::parse_rfc3339(s).map(|t| QValue::Int(t.0))
        }
        _ => Some(QValue::Text(s.to_owned())),
    }
}
