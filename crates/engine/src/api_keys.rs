//! The vendor's API keys: create, list, revoke (each change audited), the lookup that
//! verifies a presented key, and the per-hour use counters.
//!
//! A tenant-bound caller sees and manages only keys bound to its own tenant; a vendor-wide
//! caller (or an operator) sees every key. Secrets are made and hashed by the caller: the
//! engine stores only the hash.

use marketlink_core::{ApiKey, TenantId};
use marketlink_store::StoreError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Engine, audit::Actor};

/// Whose keys a caller may see: `None` for a vendor-wide caller, else its own tenant's only.
pub fn key_visible(viewer: Option<TenantId>, key: &ApiKey) -> bool {
    match viewer {
        Some(own) => key.tenant_id == Some(own),
        None => true,
    }
}

fn detail(key: &ApiKey) -> serde_json::Value {
    serde_json::json!({ "name": key.name, "scopes": key.scopes, "tenant_id": key.tenant_id })
}

impl Engine {
    /// Every key `viewer` may see (see [`key_visible`]), revoked ones included.
    pub async fn api_keys(&self, viewer: Option<TenantId>) -> Result<Vec<ApiKey>, StoreError> {
        let keys = self.store.list_api_keys().await?;
        Ok(keys
            .into_iter()
            .filter(|key| key_visible(viewer, key))
            .collect())
    }

    /// Stores a new key (with the hash of its secret). `NotFound("tenant")` when it is bound
    /// to a tenant that does not exist.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        key: &ApiKey,
        secret_hash: &str,
    ) -> Result<(), StoreError> {
        if let Some(tenant) = key.tenant_id {
            self.store.get_tenant(tenant).await?;
        }
        self.store.create_api_key(key, secret_hash).await?;
        self.audit(actor, "api_key.create", Some(&key.prefix), detail(key))
            .await;
        Ok(())
    }

    /// Revokes the key with `prefix`, if `viewer` may see it (otherwise it looks missing:
    /// `NotFound("API key")`). Revoking twice is harmless.
    pub async fn revoke_api_key(
        &self,
        actor: &Actor,
        viewer: Option<TenantId>,
        prefix: &str,
    ) -> Result<ApiKey, StoreError> {
        // By prefix only (the store also takes ids): look first, so a tenant-bound caller
        // cannot learn of or touch another tenant's keys.
        let key = match self.store.find_api_key(prefix).await? {
            Some((key, _)) if key_visible(viewer, &key) => key,
            _ => return Err(StoreError::NotFound("API key")),
        };
        let revoked = self
            .store
            .revoke_api_key(&key.prefix, self.clock.now())
            .await?;
        self.audit(
            actor,
            "api_key.revoke",
            Some(&revoked.prefix),
            detail(&revoked),
        )
        .await;
        Ok(revoked)
    }

    /// The key with `prefix` and the stored hash of its secret, to verify a presented key.
    pub async fn api_key_for_verification(
        &self,
        prefix: &str,
    ) -> Result<Option<(ApiKey, String)>, StoreError> {
        self.store.find_api_key(prefix).await
    }

    /// Adds counted calls `(key, action, hour in ms, calls)` to the stored per-hour totals.
    pub async fn record_key_use(
        &self,
        counts: &[(Uuid, String, i64, i64)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.store.record_key_use(counts, now).await
    }
}
