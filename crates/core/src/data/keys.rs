//! The key hierarchy: the master key wraps data keys; data keys seal
//! values and make blind indexes. Unwrapped data keys are cached in
//! memory by id; a key another node made is fetched and unwrapped on
//! first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rampart_crypto::{Entropy, Keyring, SecretBytes};

use super::{DataKey, DataStore};
use crate::{Error, Timestamp};

pub const SYSTEM_SCOPE: &str = "system";
/// The master key of a database from before data keys, kept (wrapped) to
/// open what it sealed and check the MACs it made.
pub const LEGACY_SCOPE: &str = "system-legacy";
/// The audit trail's key (see [`KeyManager::audit_secret`]).
pub const AUDIT_SCOPE: &str = "audit";
/// The secret of Rampart's own backup recipient (see
/// [`KeyManager::backup_check_secret`]).
pub const BACKUP_CHECK_SCOPE: &str = "backup-check";

fn wrap_context(id: &str, scope: &str) -> String {
    format!("data_key:{id}:{scope}")
}

/// Holds the master keyring and the unwrapped data keys.
pub struct KeyManager {
    master: RwLock<Arc<Keyring>>,
    /// Reads the master key again (its file may have been replaced by
    /// `rampart keys rotate --master` while this process ran).
    reload: Box<dyn Fn() -> Option<SecretBytes> + Send + Sync>,
    cache: RwLock<HashMap<String, Arc<Keyring>>>,
    store: Arc<dyn DataStore>,
    entropy: Arc<dyn Entropy>,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager").finish_non_exhaustive()
    }
}

impl KeyManager {
    pub fn new(
        master: &SecretBytes,
        reload: Box<dyn Fn() -> Option<SecretBytes> + Send + Sync>,
        store: Arc<dyn DataStore>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, Error> {
        let master = Keyring::new(master, &[]).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self {
            master: RwLock::new(Arc::new(master)),
            reload,
            cache: RwLock::new(HashMap::new()),
            store,
            entropy,
        })
    }

    /// The id of the master key in use (derived from it; reveals nothing).
    pub fn master_id(&self) -> String {
        self.master().current_key_id().to_owned()
    }

    /// A MAC of `text` under the master key in use: what proves a thing
    /// was made by this deployment (a backup's manifest), checkable with
    /// the master key alone.
    pub fn master_mac(&self, context: &str, text: &str) -> String {
        self.master().mac(context, text)
    }

    fn master(&self) -> Arc<Keyring> {
        self.master
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A new data key for `scope`, wrapped and ready to store, and cached.
    /// First makes sure the master key in memory is still the database's
    /// (it is re-read if the key was rotated meanwhile), so a new key is
    /// never wrapped with a retired master.
    pub async fn generate(&self, scope: &str, now: Timestamp) -> Result<DataKey, Error> {
        self.current_master().await?;
        Ok(self.fresh(scope, now))
    }

    fn fresh(&self, scope: &str, now: Timestamp) -> DataKey {
        let mut bytes = vec![0u8; 32];
        self.entropy.fill(&mut bytes);
        self.make(SecretBytes::new(bytes), scope, now)
    }

    async fn current_master(&self) -> Result<(), Error> {
        let Some(k) = self.store.data_keys().await?.into_iter().next() else {
            return Ok(());
        };
        if self.unwrap_key(&self.master(), &k).is_ok() {
            return Ok(());
        }
        let reloaded = (self.reload)()
            .and_then(|m| Keyring::new(&m, &[]).ok())
            .filter(|m| self.unwrap_key(m, &k).is_ok())
            .ok_or(Error::MasterKeyMismatch)?;
        tracing::info!("the master key was rotated; using the new one");
        *self.master.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(reloaded);
        Ok(())
    }

    fn make(&self, bytes: SecretBytes, scope: &str, now: Timestamp) -> DataKey {
        let ring = Keyring::new(&bytes, &[]).unwrap_or_else(|_| unreachable!("32-byte key"));
        let id = ring.current_key_id().to_owned();
        let wrapped = self.master().seal(
            self.entropy.as_ref(),
            &wrap_context(&id, scope),
            bytes.expose_secret(),
        );
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Arc::new(ring));
        DataKey {
            id,
            scope: scope.to_owned(),
            wrapped,
            master_id: self.master_id(),
            created_at: now,
            retired_at: None,
        }
    }

    fn unwrap_key(&self, master: &Keyring, k: &DataKey) -> Result<SecretBytes, Error> {
        master
            .open(&wrap_context(&k.id, &k.scope), &k.wrapped)
            .map_err(|_| Error::MasterKeyMismatch)
    }

    /// The keyring of data key `id`.
    pub async fn ring(&self, id: &str) -> Result<Arc<Keyring>, Error> {
        if let Some(r) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(r.clone());
        }
        let k = self
            .store
            .data_key(id)
            .await?
            .ok_or_else(|| Error::Internal(format!("data key {id} is not in the database")))?;
        let bytes = match self.unwrap_key(&self.master(), &k) {
            Ok(b) => b,
            Err(_) => {
                self.current_master().await?;
                self.unwrap_key(&self.master(), &k)?
            }
        };
        let ring = Arc::new(Keyring::new(&bytes, &[]).map_err(|e| Error::Internal(e.to_string()))?);
        if ring.current_key_id() != k.id {
            return Err(Error::Internal(format!(
                "data key {id} does not match its id"
            )));
        }
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.id.clone(), ring.clone());
        Ok(ring)
    }

    /// Unwraps every data key, so a wrong master key is found at start
    /// rather than at the first read.
    pub async fn verify_all(&self) -> Result<usize, Error> {
        let keys = self.store.data_keys().await?;
        for k in &keys {
            self.ring(&k.id).await?;
        }
        Ok(keys.len())
    }

    /// The keyring of second-factor secrets: the `system` data key, created
    /// on first use, and the `system-legacy` key if there is one. A
    /// database that already holds values sealed directly with the master
    /// key (`legacy`) gets a random system key *and* the master key's bytes
    /// as `system-legacy`: old values still open and old MACs still verify,
    /// new ones use the random key, and `AuthService::reseal_factors`
    /// moves the sealed secrets over, so a later master rotation protects
    /// them too.
    pub async fn system_ring(
        &self,
        master: &SecretBytes,
        legacy: bool,
        now: Timestamp,
    ) -> Result<Keyring, Error> {
        let find = |keys: &[DataKey], scope: &str| keys.iter().find(|k| k.scope == scope).cloned();
        let keys = self.store.data_keys().await?;
        if find(&keys, SYSTEM_SCOPE).is_none() {
            if legacy {
                let old = self.make(
                    SecretBytes::new(master.expose_secret().to_vec()),
                    LEGACY_SCOPE,
                    now,
                );
                match self.store.insert_data_key(&old).await {
                    Ok(()) | Err(crate::StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let k = self.fresh(SYSTEM_SCOPE, now);
            match self.store.insert_data_key(&k).await {
                // Another node made it first: theirs is read below.
                Ok(()) | Err(crate::StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let keys = self.store.data_keys().await?;
        let system = find(&keys, SYSTEM_SCOPE)
            .ok_or_else(|| Error::Internal("system key vanished".into()))?;
        let current = self.unwrap_key(&self.master(), &system)?;
        let older = match find(&keys, LEGACY_SCOPE) {
            Some(k) => vec![self.unwrap_key(&self.master(), &k)?],
            None => Vec::new(),
        };
        Keyring::new(&current, &older).map_err(|e| Error::Internal(e.to_string()))
    }

    /// The audit trail's secret: a data key of scope `audit`, made once,
    /// while the trail is empty (`create`); missing later, it is an error.
    pub async fn audit_secret(&self, now: Timestamp, create: bool) -> Result<SecretBytes, Error> {
        self.singleton(AUDIT_SCOPE, now, create).await?.ok_or_else(|| {
            Error::Internal(
                "the audit key (the data key of scope `audit`) is missing, but the trail holds events: \
                 restore the data_keys table from a backup. A new key would leave every signed checkpoint uncheckable."
                    .into(),
            )
        })
    }

    /// The secret behind Rampart's own backup recipient (ADR 0013): every
    /// backup sealed to the configured recipients is sealed to it too, so
    /// the server can restore and check each one without holding the
    /// operator's identity. A data key like any other: wrapped by the
    /// master key, made on first use, re-wrapped when the master rotates.
    pub async fn backup_check_secret(&self, now: Timestamp) -> Result<SecretBytes, Error> {
        self.singleton(BACKUP_CHECK_SCOPE, now, true)
            .await?
            .ok_or_else(|| Error::Internal("the backup check key vanished".into()))
    }

    /// The one data key of `scope`, unwrapped; made first when `create`.
    async fn singleton(
        &self,
        scope: &str,
        now: Timestamp,
        create: bool,
    ) -> Result<Option<SecretBytes>, Error> {
        let find = |keys: Vec<DataKey>| keys.into_iter().find(|k| k.scope == scope);
        let k = match find(self.store.data_keys().await?) {
            Some(k) => k,
            None if !create => return Ok(None),
            None => {
                let k = self.generate(scope, now).await?;
                match self.store.insert_data_key(&k).await {
                    // Another node made it first: theirs is read below.
                    Ok(()) | Err(crate::StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
                find(self.store.data_keys().await?)
                    .ok_or_else(|| Error::Internal(format!("the {scope} key vanished")))?
            }
        };
        self.unwrap_key(&self.master(), &k).map(Some)
    }

    /// Re-wraps every data key under `new_master`, in one transaction that
    /// also moves the master fingerprint, so no key can be added wrapped
    /// with the old master meanwhile. Returns how many keys were re-wrapped.
    pub async fn rewrap_all(&self, new_master: &SecretBytes) -> Result<usize, Error> {
        let new = Keyring::new(new_master, &[]).map_err(|e| Error::Internal(e.to_string()))?;
        let old = self.master();
        let entropy = self.entropy.clone();
        let rewrap = |k: &DataKey| -> Option<String> {
            let bytes = self.unwrap_key(&old, k).ok()?;
            Some(new.seal(
                entropy.as_ref(),
                &wrap_context(&k.id, &k.scope),
                bytes.expose_secret(),
            ))
        };
        let n = self
            .store
            .rewrap_data_keys(old.current_key_id(), new.current_key_id(), &rewrap)
            .await?;
        *self.master.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(n)
    }
}
