//! SQLite's WAL is copied back into the database file by the store's background task, not by
//! whichever commit crosses SQLite's threshold (ADR 0008).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use marketlink_core::Tenant;
use marketlink_store::{Store, StoreOptions};
use time::macros::datetime;

#[tokio::test]
async fn commits_leave_the_wal_to_the_background_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.db");
    let store = Store::connect(
        &format!("sqlite:{}", file.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    // Let a checkpoint take the migrations in.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = std::fs::metadata(&file).unwrap().len();

    // Well past SQLite's automatic threshold of 1,000 pages (4 MB).
    let at = datetime!(2026-11-26 00:00 UTC);
    let tenants: Vec<Tenant> = (0..40_000)
        .map(|i| {
            Tenant::new(
                &format!("Tenant number {i} with a long enough name to fill pages"),
                Some("A company whose name also takes some room on the page"),
                &format!("ops-{i}@tenant.example"),
                at,
            )
            .unwrap()
        })
        .collect();
    store.insert_tenants_bulk(&tenants).await.unwrap();
    let wal = dir.path().join("c.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 4 * 1024 * 1024);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        before,
        "the committing connection checkpointed the WAL itself"
    );

    // Within a couple of seconds the background task has copied the pages over.
    let mut grown = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if std::fs::metadata(&file).unwrap().len() > before + 4 * 1024 * 1024 {
            grown = true;
            break;
        }
    }
    assert!(
        grown,
        "no background checkpoint copied the WAL into the database"
    );
    store.close().await;
}
