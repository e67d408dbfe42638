//! The flusher worker starts when usage becomes due, not only every `flush_interval`: when
//! ingest stores usage for a closed hour, and when the next hour closes. Each test sets an
//! interval of an hour, so only the wake-up under test can send the usage within its wait.

use std::{
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};

use marketlink_core::{Clock, ManualClock, Marketplace, UsageRecord};
use marketlink_engine::{
    ChangePolicy, Engine, Providers,
    worker::{self, WorkerSettings},
};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use crate::{
    fake::Counting,
    harness::{T0, catalog, input, settings, sqlite_store, subscription},
};

/// A clock that runs in real time from `start`.
struct Running {
    start: OffsetDateTime,
    since: Instant,
}

impl Clock for Running {
    fn now(&self) -> OffsetDateTime {
        self.start + self.since.elapsed()
    }
}

/// An engine on a fresh SQLite database whose flusher runs at most hourly.
async fn engine(clock: Arc<dyn Clock>, provider: Arc<Counting>) -> (Engine, tempfile::TempDir) {
    let (store, dir) = sqlite_store().await;
    let mut metering = settings();
    metering.flush_interval = StdDuration::from_secs(3600);
    let engine = Engine::new(
        store,
        Providers::new().with(provider),
        clock,
        Arc::new(catalog()),
        ChangePolicy::default(),
    )
    .with_metering(metering);
    (engine, dir)
}

/// Waits up to 10 s for the marketplace to hold a record of `hour`.
async fn sent_within(provider: &Counting, hour: OffsetDateTime) -> Option<UsageRecord> {
    let started = Instant::now();
    while started.elapsed() < StdDuration::from_secs(10) {
        if let Some(record) = provider.sent().into_iter().find(|r| r.hour == hour) {
            return Some(record);
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    None
}

/// Usage stored for an hour that has closed wakes the flusher at once.
#[tokio::test]
async fn usage_for_a_closed_hour_wakes_the_flusher() {
    let provider = Counting::new(Marketplace::AZURE);
    // 12:10: hours through 11:00 are closed; the next closes at 13:05.
    let clock = ManualClock::new(T0 + Duration::minutes(130));
    let (engine, _dir) = engine(Arc::new(clock), provider.clone()).await;
    let sub = subscription(&engine.store, Marketplace::AZURE, "wake").await;
    let engine = Arc::new(engine);
    engine
        .ingest_usage(&[input(sub.id, "api_calls", "1", T0)], None)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let workers = worker::spawn(engine.clone(), WorkerSettings::default(), shutdown.clone());
    // The first runs (at start, and the one the usage above woke) send 10:00.
    assert!(sent_within(&provider, T0).await.is_some());
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let later = T0 + Duration::hours(1);
    engine
        .ingest_usage(&[input(sub.id, "api_calls", "2", later)], None)
        .await
        .unwrap();
    let record = sent_within(&provider, later).await;
    assert_eq!(
        record.map(|r| r.quantity.to_string()),
        Some("2".to_owned()),
        "11:00 was not sent within 10 s of its usage"
    );
    shutdown.cancel();
    worker::join(workers).await;
}

/// Usage for an hour still open is sent when that hour closes (its end plus the settle
/// delay), not an interval after the run before.
#[tokio::test]
async fn the_flusher_runs_when_the_next_hour_closes() {
    let provider = Counting::new(Marketplace::AZURE);
    // Three seconds before 11:00 closes (12:05 with a settle delay of 5 minutes).
    let closes = T0 + Duration::hours(2) + Duration::minutes(5);
    let clock = Arc::new(Running {
        start: closes - Duration::seconds(3),
        since: Instant::now(),
    });
    let (engine, _dir) = engine(clock.clone(), provider.clone()).await;
    let sub = subscription(&engine.store, Marketplace::AZURE, "close").await;
    let hour = T0 + Duration::hours(1);
    // Not due yet, so it wakes nothing.
    engine
        .ingest_usage(&[input(sub.id, "api_calls", "3", hour)], None)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let workers = worker::spawn(
        Arc::new(engine),
        WorkerSettings::default(),
        shutdown.clone(),
    );
    let record = sent_within(&provider, hour).await;
    let sent_at = clock.now();
    assert_eq!(
        record.map(|r| r.quantity.to_string()),
        Some("3".to_owned()),
        "11:00 was not sent within 10 s of closing"
    );
    assert!(sent_at >= closes, "sent at {sent_at}, before it closed");
    shutdown.cancel();
    worker::join(workers).await;
}
