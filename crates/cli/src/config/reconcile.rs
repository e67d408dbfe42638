//! `[reconcile]`: the periodic comparison with the marketplaces' own view.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// How often `serve` reconciles, in seconds; 0 turns the periodic run off.
    pub interval_secs: u64,
    /// A claimed subscription still pending after this long, while the marketplace waits for
    /// our activation, has its activation run again.
    pub stuck_after_secs: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            stuck_after_secs: 900,
        }
    }
}

impl ReconcileConfig {
    /// The engine's settings for a run.
    pub fn settings(&self, dry_run: bool) -> marketlink_engine::reconcile::ReconcileSettings {
        marketlink_engine::reconcile::ReconcileSettings {
            dry_run,
            stuck_after: time::Duration::seconds(
                i64::try_from(self.stuck_after_secs).unwrap_or(i64::MAX),
            ),
        }
    }

    /// The periodic run's interval; `None` when turned off.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_secs > 0).then(|| Duration::from_secs(self.interval_secs))
    }
}
