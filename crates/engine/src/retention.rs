//! Retention (issue 21): finished rows older than their kind's retention are deleted in small
//! batches by one replica per interval, so tables stay bounded over years. The defaults keep
//! what a billing dispute needs: 13 months of usage and of the audit log.

use std::{collections::BTreeMap, time::Duration};

use marketlink_store::{Prunable, StoreError};
use serde::{Deserialize, Serialize};

use crate::Engine;

/// `[retention]`: how long each kind of row is kept, in days (0 keeps it forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Reported usage events, settled hourly totals (delivered or skipped) with their tags,
    /// and hours refused at the marketplace's cap. Never shorter than 7 days: the marketplaces
    /// accept late usage for hours (AWS 6, Microsoft 24), and the usage API's idempotency keys
    /// must outlive that window.
    pub usage_days: u32,
    /// Marketplace notifications applied, and outbound jobs done (marketplace calls, vendor
    /// webhooks: a delivered webhook can be replayed from /admin/webhooks while it is kept).
    pub messages_days: u32,
    /// The audit log.
    pub audit_days: u32,
    /// How often the pruning runs, in seconds.
    pub interval_secs: u64,
    /// Rows deleted per statement; each statement is short, so requests never wait long.
    pub batch: u32,
    /// Pause between two batches, in milliseconds, so pruning yields to live traffic.
    pub pause_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            usage_days: 400,
            messages_days: 90,
            audit_days: 400,
            interval_secs: 3600,
            batch: 500,
            pause_ms: 20,
        }
    }
}

/// The shortest usage retention accepted.
pub const MIN_USAGE_DAYS: u32 = 7;

impl RetentionSettings {
    /// A sentence naming what is wrong, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.usage_days != 0 && self.usage_days < MIN_USAGE_DAYS {
            return Some(format!(
                "retention.usage_days must be 0 (keep forever) or at least {MIN_USAGE_DAYS}: \
                 usage keys must outlive the marketplaces' window for late usage"
            ));
        }
        if self.batch == 0 || self.interval_secs == 0 {
            return Some("retention.batch and retention.interval_secs must be above 0".into());
        }
        None
    }

    fn days(&self, what: Prunable) -> u32 {
        match what {
            Prunable::UsageEvents | Prunable::UsageHours | Prunable::CappedHours => self.usage_days,
            Prunable::InboxMessages | Prunable::OutboxJobs => self.messages_days,
            Prunable::AuditEntries => self.audit_days,
        }
    }
}

/// What one pruning run deleted, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: BTreeMap<&'static str, u64>,
    /// A table still had rows to delete when the run's batch budget ran out; the next run
    /// goes on.
    pub unfinished: bool,
}

/// Batches one run may take per table, so a first run over years of rows still ends.
const MAX_BATCHES_PER_TABLE: u32 = 2000;

impl Engine {
    /// Deletes every finished row past its retention, batch by batch.
    pub async fn prune_expired(
        &self,
        settings: &RetentionSettings,
    ) -> Result<PruneReport, StoreError> {
        let now = self.clock.now();
        let mut report = PruneReport::default();
        for what in Prunable::ALL {
            let days = settings.days(what);
            if days == 0 {
                continue;
            }
            let cutoff = now - time::Duration::days(i64::from(days));
            let mut total = 0;
            let mut batches = 0;
            loop {
                let deleted = self.store.prune(what, cutoff, settings.batch).await?;
                total += deleted;
                batches += 1;
                if deleted < u64::from(settings.batch) {
                    break;
                }
                if batches == MAX_BATCHES_PER_TABLE {
                    report.unfinished = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(settings.pause_ms)).await;
            }
            if total > 0 {
                metrics::counter!("marketlink_retention_deleted_rows_total", "table" => what.as_str())
                    .increment(total);
            }
            report.deleted.insert(what.as_str(), total);
        }
        Ok(report)
    }
}
