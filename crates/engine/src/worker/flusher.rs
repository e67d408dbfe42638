//! The usage flusher: sends what is due, at least every `flush_interval`, and as soon as more
//! becomes due. Usage is due when ingest stores it for a closed hour (the engine's
//! `usage_due` wakes the flusher) or when the next hour closes (its end plus the settle
//! delay; the flusher sleeps until then when that comes before the interval). So no usage
//! waits for an interval that began before it was due.
//!
//! One run at a time: a wake-up during a run is kept (`Notify` holds one permit) and starts
//! one more run right after it, however many came. A run zero-fills first unless one did for
//! the same closed hours less than an interval ago: under steady ingest the runs follow each
//! other, and each would read every subscription's cursor again for nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::Engine;

pub(super) async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let interval = engine.metering.flush_interval;
    // The closed hour the last zero-fill went through, and when it ran.
    let mut zero_filled: Option<(OffsetDateTime, Instant)> = None;
    loop {
        let through = engine.closed_through(engine.clock.now());
        let filled = zero_filled.is_some_and(|(t, at)| t == through && at.elapsed() < interval);
        let started = Instant::now();
        // Not raced against shutdown: a flush in hand finishes its bookkeeping.
        let result = if filled {
            engine.send_due_usage().await
        } else {
            engine.flush_usage().await
        };
        match result {
            Ok(run) => {
                if !filled {
                    zero_filled = Some((through, started));
                }
                if run.claimed > 0 || run.zero_created > 0 {
                    tracing::info!(?run, "usage flushed");
                }
            }
            Err(error) => tracing::error!(error = ?error, "usage flush failed"),
        }
        let pause = until_next_run(&engine, engine.clock.now());
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = engine.usage_due.notified() => {},
            () = tokio::time::sleep(pause) => {},
        }
    }
}

/// How long to sleep after a run at `now`: until the next hour closes, at most the interval.
fn until_next_run(engine: &Engine, now: OffsetDateTime) -> Duration {
    let interval = engine.metering.flush_interval;
    let closes = engine.next_hour_closes(now) - now;
    Duration::try_from(closes).map_or(interval, |closes| closes.min(interval))
}

#[cfg(test)]
mod tests {
    use marketlink_core::{Catalog, ManualClock};
    use marketlink_store::Store;
    use time::macros::datetime;

    use super::*;
    use crate::{ChangePolicy, Providers, metering::MeteringSettings};

    async fn engine_with(interval_secs: u64, settle_secs: i64) -> (Engine, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("f.db").display());
        let store = Store::connect(&url, &Default::default()).await.unwrap();
        let engine = Engine::new(
            store,
            Providers::new(),
            Arc::new(ManualClock::new(datetime!(2026-12-07 10:00 UTC))),
            Arc::new(Catalog::default()),
            ChangePolicy::default(),
        )
        .with_metering(MeteringSettings {
            flush_interval: Duration::from_secs(interval_secs),
            settle: time::Duration::seconds(settle_secs),
            ..MeteringSettings::default()
        });
        (engine, dir)
    }

    #[tokio::test]
    async fn the_next_run_comes_when_the_next_hour_closes_or_after_the_interval() {
        let (engine, _dir) = engine_with(60, 300).await;
        // 10:04:30: the 09:00 hour closes at 10:05, in 30 s.
        let at = |t| until_next_run(&engine, t);
        assert_eq!(
            at(datetime!(2026-12-07 10:04:30 UTC)),
            Duration::from_secs(30)
        );
        // Just after it closed: the next (10:00) closes at 11:05, so the interval.
        assert_eq!(
            at(datetime!(2026-12-07 10:05:00 UTC)),
            Duration::from_secs(60)
        );
        assert_eq!(
            at(datetime!(2026-12-07 11:04:59.5 UTC)),
            Duration::from_millis(500)
        );
        let (engine, _dir) = engine_with(3600, 0).await;
        assert_eq!(
            until_next_run(&engine, datetime!(2026-12-07 10:59:00 UTC)),
            Duration::from_secs(60)
        );
    }
}
