//! Periodic jobs shared by replicas (ADR 0007): each interval's run goes to one replica.

use time::{Duration, OffsetDateTime};

use crate::{Store, StoreError, millis, on_pool};

impl Store {
    /// Takes this interval's run of the periodic job `name`: true when it was due (or never
    /// ran) and this caller moved its next run to `now + interval`; false when another
    /// replica already took it. One statement, so two replicas asking at once cannot both get
    /// it. A run that dies leaves nothing behind: the job is due again one interval on.
    pub async fn take_periodic_run(
        &self,
        name: &str,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<bool, StoreError> {
        let taken = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO periodic_runs (name, next_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET next_at = excluded.next_at \
                 WHERE periodic_runs.next_at <= $3",
            )
            .bind(name)
            .bind(millis(now + interval))
            .bind(millis(now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }
}
