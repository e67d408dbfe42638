//! The durable inbox (what marketplaces told us) and outbox (what we must tell them).
//!
//! Both are tables of items with a state, an attempt count and a lease. A worker claims due
//! items by setting a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas never claim the
//! same row; SQLite serialises writers, so one `UPDATE … RETURNING` is atomic), does the work,
//! then completes, reschedules or buries the item, presenting its lease id. A worker whose
//! lease expired (it crashed or stalled) can no longer complete: the item is someone else's.

use marketlink_core::AuthenticatedMessage;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Backend, Store, StoreError, from_millis, millis, on_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting for its next attempt (or leased by a worker right now).
    Pending,
    Done,
    /// Gave up; kept with its last error for an operator to inspect and requeue.
    Dead,
}

impl QueueState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "pending" => Ok(Self::Pending),
            "done" => Ok(Self::Done),
            "dead" => Ok(Self::Dead),
            other => Err(StoreError::Corrupt(format!(
                "unknown queue state `{other}`"
            ))),
        }
    }
}

/// One inbox message or outbox job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    pub id: Uuid,
    pub marketplace: String,
    pub kind: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub state: QueueState,
    /// Claims so far, including the current one.
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Present while claimed: the token that proves this worker still holds the item.
    pub lease_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: Uuid,
    marketplace: String,
    kind: String,
    dedup_key: String,
    payload: Json<serde_json::Value>,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    lease_id: Option<Uuid>,
    next_attempt_at: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<QueueRow> for QueueItem {
    type Error = StoreError;
    fn try_from(row: QueueRow) -> Result<Self, Self::Error> {
        Ok(QueueItem {
            id: row.id,
            marketplace: row.marketplace,
            kind: row.kind,
            dedup_key: row.dedup_key,
            payload: row.payload.0,
            state: QueueState::parse(&row.state)?,
            attempts: row.attempts,
            last_error: row.last_error,
            lease_id: row.lease_id,
            next_attempt_at: from_millis(row.next_attempt_at)?,
            created_at: from_millis(row.created_at)?,
            updated_at: from_millis(row.updated_at)?,
        })
    }
}

const COLUMNS: &str = "id, marketplace, kind, dedup_key, payload, state, attempts, last_error, \
    lease_id, next_attempt_at, created_at, updated_at";

/// Whether an insert created a row or found the same key already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    Inserted(Uuid),
    Duplicate(Uuid),
}

impl InboxInsert {
    pub fn id(self) -> Uuid {
        match self {
            Self::Inserted(id) | Self::Duplicate(id) => id,
        }
    }
}

/// A job for the outbox. `dedup_key` makes enqueueing idempotent per `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub marketplace: String,
    pub kind: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    /// When it may first run (now, or later for a scheduled job).
    pub run_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Inbox,
    Outbox,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Inbox => "inbox_messages",
            Self::Outbox => "outbox_jobs",
        }
    }

    fn dedup_columns(self) -> &'static str {
        match self {
            Self::Inbox => "marketplace, dedup_key",
            Self::Outbox => "kind, dedup_key",
        }
    }
}

impl Store {
    /// Stores an authenticated marketplace message once; a second copy (same marketplace and
    /// key) is reported as a duplicate and not stored again.
    pub async fn inbox_insert(
        &self,
        message: &AuthenticatedMessage,
        now: OffsetDateTime,
    ) -> Result<InboxInsert, StoreError> {
        self.insert_item(
            Table::Inbox,
            &NewJob {
                marketplace: message.marketplace.to_string(),
                kind: message.kind.clone(),
                dedup_key: message.dedup_key.clone(),
                payload: serde_json::to_value(message)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                run_at: now,
            },
            now,
        )
        .await
    }

    /// Adds a job to the outbox once per (kind, dedup key).
    pub async fn outbox_enqueue(
        &self,
        job: &NewJob,
        now: OffsetDateTime,
    ) -> Result<InboxInsert, StoreError> {
        self.insert_item(Table::Outbox, job, now).await
    }

    pub async fn inbox_claim(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        self.claim(Table::Inbox, now, lease, limit, None).await
    }

    /// Claims due outbox jobs, optionally only of one kind.
    pub async fn outbox_claim(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        kind: Option<&str>,
    ) -> Result<Vec<QueueItem>, StoreError> {
        self.claim(Table::Outbox, now, lease, limit, kind).await
    }

    pub async fn inbox_complete(
        &self,
        item: &QueueItem,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(Table::Inbox, item, QueueState::Done, None, now, now)
            .await
    }

    pub async fn outbox_complete(
        &self,
        item: &QueueItem,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(Table::Outbox, item, QueueState::Done, None, now, now)
            .await
    }

    /// Releases the item to be tried again at `retry_at`, remembering why it failed.
    pub async fn inbox_retry(
        &self,
        item: &QueueItem,
        error: &str,
        retry_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(
            Table::Inbox,
            item,
            QueueState::Pending,
            Some(error),
            retry_at,
            now,
        )
        .await
    }

    pub async fn outbox_retry(
        &self,
        item: &QueueItem,
        error: &str,
        retry_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(
            Table::Outbox,
            item,
            QueueState::Pending,
            Some(error),
            retry_at,
            now,
        )
        .await
    }

    /// Gives up on the item; it stays visible with its error until requeued.
    pub async fn inbox_bury(
        &self,
        item: &QueueItem,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(Table::Inbox, item, QueueState::Dead, Some(error), now, now)
            .await
    }

    pub async fn outbox_bury(
        &self,
        item: &QueueItem,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.finish(Table::Outbox, item, QueueState::Dead, Some(error), now, now)
            .await
    }

    pub async fn inbox_list(
        &self,
        state: QueueState,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        self.list(Table::Inbox, state, limit).await
    }

    pub async fn outbox_list(
        &self,
        state: QueueState,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        self.list(Table::Outbox, state, limit).await
    }

    /// Puts a dead inbox message back in line (an operator fixed the cause).
    pub async fn inbox_requeue(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        self.requeue(Table::Inbox, id, now).await
    }

    pub async fn outbox_requeue(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        self.requeue(Table::Outbox, id, now).await
    }

    /// Sends a finished or dead outbox job again (an operator replays a webhook). The job
    /// keeps its id, so a receiver that saw it already can tell.
    pub async fn outbox_replay(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox_jobs SET state = 'pending', next_attempt_at = $1, updated_at = $1, \
                 attempts = 0, lease_id = NULL, locked_until = NULL \
                 WHERE id = $2 AND state IN ('done', 'dead')",
            )
            .bind(millis(now))
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound("finished outbox job"));
        }
        Ok(())
    }

    /// Pending items and the age of the oldest, for metrics and readiness.
    pub async fn inbox_backlog(
        &self,
        now: OffsetDateTime,
    ) -> Result<(i64, Option<time::Duration>), StoreError> {
        let (count, oldest): (i64, Option<i64>) = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM inbox_messages WHERE state = 'pending'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok((
            count,
            oldest.map(|ms| time::Duration::milliseconds(millis(now) - ms)),
        ))
    }

    /// Outbox jobs per kind and state (`pending` or `dead`), for metrics.
    pub async fn outbox_backlog(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, state, COUNT(*) FROM outbox_jobs WHERE state <> 'done' \
                 GROUP BY kind, state ORDER BY kind, state",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    async fn insert_item(
        &self,
        table: Table,
        job: &NewJob,
        now: OffsetDateTime,
    ) -> Result<InboxInsert, StoreError> {
        let id = Uuid::now_v7();
        let insert = format!(
            "INSERT INTO {t} (id, marketplace, kind, dedup_key, payload, state, attempts, \
             next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $7) \
             ON CONFLICT ({dedup}) DO NOTHING",
            t = table.name(),
            dedup = table.dedup_columns(),
        );
        let select = format!(
            "SELECT id FROM {t} WHERE {key} = $1 AND dedup_key = $2",
            t = table.name(),
            key = match table {
                Table::Inbox => "marketplace",
                Table::Outbox => "kind",
            },
        );
        let key_owner = match table {
            Table::Inbox => &job.marketplace,
            Table::Outbox => &job.kind,
        };
        let (inserted, existing): (u64, Uuid) = on_pool!(self, |pool| {
            let inserted = sqlx::query(&insert)
                .bind(id)
                .bind(&job.marketplace)
                .bind(&job.kind)
                .bind(&job.dedup_key)
                .bind(Json(&job.payload))
                .bind(millis(job.run_at))
                .bind(millis(now))
                .execute(pool)
                .await?
                .rows_affected();
            let existing: Uuid = sqlx::query_scalar(&select)
                .bind(key_owner)
                .bind(&job.dedup_key)
                .fetch_one(pool)
                .await?;
            (inserted, existing)
        });
        Ok(if inserted == 1 {
            InboxInsert::Inserted(existing)
        } else {
            InboxInsert::Duplicate(existing)
        })
    }

    async fn claim(
        &self,
        table: Table,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        kind: Option<&str>,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE {t} SET lease_id = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM {t} WHERE state = 'pending' AND next_attempt_at <= $3 \
               AND (locked_until IS NULL OR locked_until <= $3) AND ($4 IS NULL OR kind = $4) \
               ORDER BY next_attempt_at, id LIMIT $5 {lock}) \
             RETURNING {COLUMNS}",
            t = table.name(),
        );
        let lease_id = Uuid::now_v7();
        let rows: Vec<QueueRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(lease_id)
                .bind(millis(now + lease))
                .bind(millis(now))
                .bind(kind)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        let mut items = rows
            .into_iter()
            .map(QueueItem::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by_key(|item| (item.next_attempt_at, item.id));
        Ok(items)
    }

    async fn finish(
        &self,
        table: Table,
        item: &QueueItem,
        state: QueueState,
        error: Option<&str>,
        next_attempt_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let lease_id = item
            .lease_id
            .ok_or_else(|| StoreError::Conflict(format!("{} was not claimed", item.id)))?;
        let sql = format!(
            "UPDATE {t} SET state = $1, last_error = $2, next_attempt_at = $3, updated_at = $4, \
             lease_id = NULL, locked_until = NULL WHERE id = $5 AND lease_id = $6",
            t = table.name(),
        );
        let updated = on_pool!(self, |pool| {
            sqlx::query(&sql)
                .bind(state.as_str())
                .bind(error)
                .bind(millis(next_attempt_at))
                .bind(millis(now))
                .bind(item.id)
                .bind(lease_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "lease on {} expired and was taken over",
                item.id
            )));
        }
        Ok(())
    }

    async fn list(
        &self,
        table: Table,
        state: QueueState,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {t} WHERE state = $1 ORDER BY id DESC LIMIT $2",
            t = table.name()
        );
        let rows: Vec<QueueRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(state.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(QueueItem::try_from).collect()
    }

    async fn requeue(&self, table: Table, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {t} SET state = 'pending', next_attempt_at = $1, updated_at = $1, \
             lease_id = NULL, locked_until = NULL WHERE id = $2 AND state = 'dead'",
            t = table.name()
        );
        let updated = on_pool!(self, |pool| {
            sqlx::query(&sql)
                .bind(millis(now))
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound("dead item"));
        }
        Ok(())
    }
}
