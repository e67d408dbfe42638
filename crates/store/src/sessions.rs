//! Browser sessions kept server-side (`web_sessions`): found by the SHA-256 of the id the
//! cookie carries, ended one at a time, all of a user's or an operator's at once, and pruned
//! once expired.

use marketlink_core::{TenantId, UserId};
use time::OffsetDateTime;

use crate::{Store, StoreError, from_millis, millis, on_pool};

/// A session as written: its data is opaque here (the web front end's JSON); the other
/// fields are what sessions are found and ended by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the session id; the id itself is never stored.
    pub id_hash: String,
    pub data: String,
    pub user_id: Option<UserId>,
    pub tenant_id: Option<TenantId>,
    /// The operator's email, lowercased.
    pub operator: Option<String>,
    pub started_at: OffsetDateTime,
    /// The idle expiry, never past the absolute one.
    pub expires_at: OffsetDateTime,
}

/// A live session as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub data: String,
    pub started_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    data: String,
    started_at: i64,
    expires_at: i64,
}

impl Store {
    /// The session whose id hashes to `id_hash`, unless it ended or expired by `now`.
    pub async fn live_session(
        &self,
        id_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredSession>, StoreError> {
        let row: Option<SessionRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT data, started_at, expires_at FROM web_sessions \
                 WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(millis(now))
            .fetch_optional(pool)
            .await?
        });
        row.map(|r| {
            Ok(StoredSession {
                data: r.data,
                started_at: from_millis(r.started_at)?,
                expires_at: from_millis(r.expires_at)?,
            })
        })
        .transpose()
    }

    /// Stores a new session; when it takes over from another (sign-in rotates the id), that
    /// one is deleted in the same transaction, so the old id never outlives the new one.
    pub async fn insert_session(
        &self,
        record: &SessionRecord,
        replaces: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if let Some(old) = replaces {
                sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO web_sessions (id_hash, data, user_id, tenant_id, operator, \
                 started_at, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&record.id_hash)
            .bind(&record.data)
            .bind(record.user_id.map(|u| u.0))
            .bind(record.tenant_id.map(|t| t.0))
            .bind(record.operator.as_deref())
            .bind(millis(record.started_at))
            .bind(millis(record.expires_at))
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Writes an existing session back. False when it is gone (ended elsewhere, or expired):
    /// an update never brings an ended session back.
    pub async fn update_session(
        &self,
        record: &SessionRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE web_sessions SET data = $2, user_id = $3, tenant_id = $4, \
                 operator = $5, expires_at = $6, updated_at = $7 \
                 WHERE id_hash = $1 AND expires_at > $7",
            )
            .bind(&record.id_hash)
            .bind(&record.data)
            .bind(record.user_id.map(|u| u.0))
            .bind(record.tenant_id.map(|t| t.0))
            .bind(record.operator.as_deref())
            .bind(millis(record.expires_at))
            .bind(millis(now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    /// Ends one session. False when there was none.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    /// Ends every session of `user`, on every device. Returns how many there were.
    pub async fn delete_user_sessions(&self, user: UserId) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
                .bind(user.0)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Ends every session of the operator with this email (any case).
    pub async fn delete_operator_sessions(&self, email: &str) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_sessions WHERE operator = $1")
                .bind(email.to_lowercase())
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Deletes up to `batch` sessions expired by `now`; returns how many. Small batches keep
    /// each statement short (SQLite has one writer), so callers loop until fewer come back.
    pub async fn prune_sessions(&self, now: OffsetDateTime, batch: u32) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM web_sessions WHERE id_hash IN \
                 (SELECT id_hash FROM web_sessions WHERE expires_at <= $1 LIMIT $2)",
            )
            .bind(millis(now))
            .bind(i64::from(batch))
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
