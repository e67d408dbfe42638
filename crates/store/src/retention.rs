//! Retention: what has served its purpose is deleted in small batches, so tables stay bounded
//! over years without a long lock. Each batch is one statement that picks its rows with a
//! bounded sub-select along an existing index (or the primary key), so a batch touches at
//! most `limit` rows and no request waits long behind it.
//!
//! Only finished rows go: usage hours delivered or skipped (never open, sending, mismatched or
//! dead: those still need us or an operator), queue messages done (never pending or
//! dead-lettered), and usage events already folded into their hours.

use time::OffsetDateTime;

use crate::{Store, StoreError, millis, on_pool};

/// What a retention batch deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prunable {
    /// Reported usage events of hours before the cutoff, once folded into their hours.
    UsageEvents,
    /// Hourly totals before the cutoff that were delivered or skipped, with their tags.
    UsageHours,
    /// Hours that were refused at the marketplace's cap, before the cutoff.
    CappedHours,
    /// Inbound marketplace messages applied before the cutoff.
    InboxMessages,
    /// Outbound jobs (marketplace calls, vendor webhooks) done before the cutoff.
    OutboxJobs,
    /// Audit entries written before the cutoff.
    AuditEntries,
}

impl Prunable {
    pub const ALL: [Prunable; 6] = [
        Self::UsageEvents,
        Self::UsageHours,
        Self::CappedHours,
        Self::InboxMessages,
        Self::OutboxJobs,
        Self::AuditEntries,
    ];

    /// The name used in logs, metrics and the operations guide.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsageEvents => "usage_events",
            Self::UsageHours => "usage_hours",
            Self::CappedHours => "usage_capped_hours",
            Self::InboxMessages => "inbox_messages",
            Self::OutboxJobs => "outbox_jobs",
            Self::AuditEntries => "audit_log",
        }
    }
}

/// Events: in `seq` order (the primary key), oldest first, never past the fold's watermark,
/// and never the newest event of all. SQLite numbers a new row one past the largest `seq`
/// present: with the table emptied, new events would be numbered below the watermark and
/// never folded.
const USAGE_EVENTS: &str = "DELETE FROM usage_events WHERE seq IN (SELECT seq FROM usage_events \
    WHERE hour < $1 AND seq <= (SELECT folded_through FROM usage_fold WHERE id = 1) \
    AND seq < (SELECT MAX(seq) FROM usage_events) ORDER BY seq LIMIT $2)";
/// Along `usage_hours_due (state, hour, id)`.
const SETTLED_HOURS: &str = "SELECT id FROM usage_hours WHERE state IN ('delivered', 'skipped') \
    AND hour < $1 ORDER BY state, hour LIMIT $2";
const CAPPED_HOURS: &str = "DELETE FROM usage_capped_hours WHERE (subscription_id, dimension, \
    hour) IN (SELECT subscription_id, dimension, hour FROM usage_capped_hours WHERE hour < $1 \
    LIMIT $2)";
/// Along `*_due (state, next_attempt_at)`: a done message's last attempt is when it finished.
const INBOX: &str = "DELETE FROM inbox_messages WHERE id IN (SELECT id FROM inbox_messages \
    WHERE state = 'done' AND next_attempt_at < $1 AND updated_at < $1 \
    ORDER BY next_attempt_at LIMIT $2)";
const OUTBOX: &str = "DELETE FROM outbox_jobs WHERE id IN (SELECT id FROM outbox_jobs \
    WHERE state = 'done' AND next_attempt_at < $1 AND updated_at < $1 \
    ORDER BY next_attempt_at LIMIT $2)";
/// Along the primary key: audit ids are UUIDv7, in time order.
const AUDIT: &str = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
    WHERE at < $1 ORDER BY id LIMIT $2)";

impl Prunable {
    /// The one statement deleting a batch (settled hours take two: see `prune_settled_hours`).
    fn statement(self) -> Option<&'static str> {
        match self {
            Self::UsageEvents => Some(USAGE_EVENTS),
            Self::CappedHours => Some(CAPPED_HOURS),
            Self::InboxMessages => Some(INBOX),
            Self::OutboxJobs => Some(OUTBOX),
            Self::AuditEntries => Some(AUDIT),
            Self::UsageHours => None,
        }
    }
}

impl Store {
    /// Deletes up to `limit` rows of `what` from before `cutoff`; returns how many went. Call
    /// it again while it returns `limit`.
    pub async fn prune(
        &self,
        what: Prunable,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let (cutoff, limit) = (millis(cutoff), i64::from(limit));
        let Some(sql) = what.statement() else {
            return self.prune_settled_hours(cutoff, limit).await;
        };
        let _turn = self.write_turn().await;
        let deleted = on_pool!(self, |pool| {
            sqlx::query(sql)
                .bind(cutoff)
                .bind(limit)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }

    /// Settled hours and their tags, in one transaction: the tags first (they reference the
    /// hour), then the hours that no longer have any.
    async fn prune_settled_hours(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
        let tags =
            format!("DELETE FROM usage_allocations WHERE usage_hour_id IN ({SETTLED_HOURS})");
        let hours = format!(
            "DELETE FROM usage_hours WHERE id IN ({SETTLED_HOURS}) AND NOT EXISTS \
             (SELECT 1 FROM usage_allocations a WHERE a.usage_hour_id = usage_hours.id)"
        );
        let _turn = self.write_turn().await;
        let deleted = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&tags)
                .bind(cutoff)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query(&hours)
                .bind(cutoff)
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            deleted
        });
        Ok(deleted)
    }
}
