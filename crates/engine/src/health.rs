//! Is the service ready, and how long are its queues: what readiness probes and the metrics
//! scrape ask the database.

use marketlink_store::{StoreError, UsageBacklog};
use time::{Duration, OffsetDateTime};

use crate::Engine;

/// Why the service cannot take traffic.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("database unreachable: {0}")]
    Unreachable(#[source] StoreError),
    /// Migrations this build expects but the database lacks.
    #[error("database is missing {0} migration(s)")]
    MissingMigrations(usize),
}

/// The shared queues' backlogs. Each is read on its own, so one failing read still lets the
/// others be reported.
#[derive(Debug)]
pub struct Backlogs {
    /// Marketplace messages waiting, and the age of the oldest.
    pub inbox: Result<(i64, Option<Duration>), StoreError>,
    /// Outbox jobs not done: `(kind, state, count)`.
    pub outbox: Result<Vec<(String, String, i64)>, StoreError>,
    /// Hourly usage totals, counted up to the last closed hour.
    pub usage: Result<UsageBacklog, StoreError>,
}

impl Engine {
    /// The database answers and carries every migration this build expects.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.ping().await.map_err(NotReady::Unreachable)?;
        let pending = self
            .store
            .pending_migrations()
            .await
            .map_err(NotReady::Unreachable)?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(NotReady::MissingMigrations(pending.len()))
        }
    }

    /// The queues' backlogs at `now`.
    pub async fn backlogs(&self, now: OffsetDateTime) -> Backlogs {
        Backlogs {
            inbox: self.store.inbox_backlog(now).await,
            outbox: self.store.outbox_backlog().await,
            usage: self.store.usage_backlog(self.closed_through(now)).await,
        }
    }
}
