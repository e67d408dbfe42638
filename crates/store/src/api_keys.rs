//! API keys, the audit log, and hourly counts of each key's use.

use marketlink_core::{ApiKey, Scope, TenantId};
use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, millis, on_pool};

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    name: String,
    prefix: String,
    secret_hash: String,
    scopes: String,
    tenant_id: Option<Uuid>,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl KeyRow {
    fn into_key(self) -> Result<(ApiKey, String), StoreError> {
        let scopes = self
            .scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Scope>().map_err(StoreError::Corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            ApiKey {
                id: self.id,
                name: self.name,
                prefix: self.prefix,
                scopes,
                tenant_id: self.tenant_id.map(TenantId),
                created_at: from_millis(self.created_at)?,
                revoked_at: self.revoked_at.map(from_millis).transpose()?,
            },
            self.secret_hash,
        ))
    }
}

const KEY_COLUMNS: &str =
    "id, name, prefix, secret_hash, scopes, tenant_id, created_at, revoked_at";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: Uuid,
    /// `key:<prefix>`, `user:<email>`, `cli`, `admin:<name>`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl AuditEntry {
    /// A new line of the log, with a fresh time-ordered id.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: Option<String>,
        detail: serde_json::Value,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            actor: actor.into(),
            action: action.into(),
            target,
            detail,
            at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    actor: String,
    action: String,
    target: Option<String>,
    detail: Json<serde_json::Value>,
    at: i64,
}

impl Store {
    /// Stores a new key with the SHA-256 (hex) of its secret.
    pub async fn create_api_key(&self, key: &ApiKey, secret_hash: &str) -> Result<(), StoreError> {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, tenant_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(key.id)
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(secret_hash)
            .bind(scopes.join(","))
            .bind(key.tenant_id.map(|t| t.0))
            .bind(millis(key.created_at))
            .execute(pool)
            .await
            .map_err(|e| StoreError::on_unique(e, || "key prefix collision; try again".into()))?;
        });
        Ok(())
    }

    /// The key with this prefix and its secret hash, revoked or not.
    pub async fn find_api_key(&self, prefix: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let row: Option<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
            ))
            .bind(prefix)
            .fetch_optional(pool)
            .await?
        });
        row.map(KeyRow::into_key).transpose()
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|row| row.into_key().map(|(key, _)| key))
            .collect()
    }

    /// Revokes by id or prefix; revoking twice is harmless.
    pub async fn revoke_api_key(
        &self,
        id_or_prefix: &str,
        now: OffsetDateTime,
    ) -> Result<ApiKey, StoreError> {
        let by_id = id_or_prefix.parse::<Uuid>().ok();
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE prefix = $2 OR id = $3",
            )
            .bind(millis(now))
            .bind(id_or_prefix)
            .bind(by_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        let row: KeyRow = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1 OR id = $2"
            ))
            .bind(id_or_prefix)
            .bind(by_id)
            .fetch_one(pool)
            .await?
        });
        Ok(row.into_key()?.0)
    }

    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO audit_log (id, actor, action, target, detail, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(entry.id)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(Json(&entry.detail))
            .bind(millis(entry.at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The audit log, newest first, optionally for one actor.
    pub async fn audit_log(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, actor, action, target, detail, at FROM audit_log \
                 WHERE ($1 IS NULL OR actor = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(actor)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.id,
                    actor: row.actor,
                    action: row.action,
                    target: row.target,
                    detail: row.detail.0,
                    at: from_millis(row.at)?,
                })
            })
            .collect()
    }

    /// Adds API calls to each key's hourly counters (flushed in batches from memory).
    pub async fn record_key_use(
        &self,
        counts: &[(Uuid, String, i64, i64)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (key, action, hour, calls) in counts {
                sqlx::query(
                    "INSERT INTO api_key_use (key_id, action, hour, calls) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key_id, action, hour) DO UPDATE SET calls = api_key_use.calls + excluded.calls",
                )
                .bind(key)
                .bind(action)
                .bind(hour)
                .bind(calls)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(millis(now))
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Calls per action for a key, summed over all hours.
    pub async fn key_use(&self, key: Uuid) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT action, CAST(SUM(calls) AS BIGINT) FROM api_key_use WHERE key_id = $1 \
                 GROUP BY action ORDER BY action",
            )
            .bind(key)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
