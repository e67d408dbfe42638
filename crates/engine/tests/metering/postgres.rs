//! Two flushers on one PostgreSQL database.

use std::{
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use marketlink_core::{ManualClock, Marketplace};
use marketlink_engine::{Engine, Providers};
use marketlink_store::{Store, StoreOptions};
use time::Duration;
use uuid::Uuid;

use crate::{
    fake::Counting,
    harness::{T0, engine_on, input, postgres_store, subscription},
};

#[tokio::test]
async fn two_flushers_on_postgres_never_send_a_record_twice() {
    let Some((store, name)) = postgres_store().await else {
        return;
    };
    let now = T0 + Duration::hours(23);
    let clock = ManualClock::new(now);
    // Both replicas' providers write to one ledger, as the marketplace would see it.
    let slow = Arc::new(Counting {
        marketplace: Marketplace::AWS,
        sent: Mutex::default(),
        batches: Mutex::default(),
        failures: Mutex::default(),
        outcomes: Mutex::default(),
        // Slow enough (8 batches, 0.4 s) that the second flusher starts while the first still
        // works, even on a loaded CI machine: the test is about the two overlapping.
        delay: StdDuration::from_millis(50),
        max_batch: 25,
        whole_units: false,
    });
    let small = |mut e: Engine| {
        e.metering.claim_limit = 40;
        e
    };
    let a = small(engine_on(
        store.clone(),
        &clock,
        Providers::new().with(slow.clone()),
    ));
    let b_store = Store::connect(
        &format!(
            "{}/{name}",
            std::env::var("MARKETLINK_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
                .rsplit_once('/')
                .unwrap()
                .0
        ),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let b = small(engine_on(
        b_store,
        &clock,
        Providers::new().with(slow.clone()),
    ));
    let mut events = Vec::new();
    for c in 0..10 {
        let sub = subscription(&store, Marketplace::AWS, &format!("cust-{c}")).await;
        for i in 0..20 {
            events.push(input(sub.id, "api_calls", "1", T0 + Duration::hours(i)));
        }
    }
    a.ingest_usage(&events, None).await.unwrap();
    let (ra, rb) = tokio::join!(a.flush_usage(), b.flush_usage());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 200, "{ra:?} {rb:?}");
    assert!(
        ra.claimed > 0 && rb.claimed > 0,
        "both replicas worked: {ra:?} {rb:?}"
    );
    let sent = slow.sent();
    let mut ids: Vec<Uuid> = sent.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (sent.len(), ids.len()),
        (200, 200),
        "a record was sent twice"
    );
    assert!(slow.batches.lock().unwrap().iter().all(|n| *n <= 25));
    let backlog = store.usage_backlog(now).await.unwrap();
    assert_eq!(backlog.by_state.get("delivered"), Some(&200));
    store.close().await;
    a.store.close().await;
    b.store.close().await;
    if std::env::var("MARKETLINK_TEST_NO_DESTROY").as_deref() != Ok("1") {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}
