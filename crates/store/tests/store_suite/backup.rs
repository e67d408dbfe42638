//! `Store::backup_to`: an online SQLite backup (`VACUUM INTO`), taken while writes go on, holds
//! what was committed before it and nothing after; PostgreSQL is sent to `pg_dump`.

use marketlink_store::{Store, StoreError, StoreOptions};

use crate::tenant;

#[tokio::test]
async fn sqlite_backup_while_writing_is_consistent_and_never_overwrites() {
    let db = crate::common::sqlite().await;
    let store = &db.store;
    let before = tenant("Before the backup");
    store.create_tenant(&before).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("backup.db");

    // Writers keep going while the copy is taken, as `serve` would.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .create_tenant(&tenant(&format!("During {i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let report = store.backup_to(&output).await.unwrap();
    writer.await.unwrap();
    let after = tenant("After the backup");
    store.create_tenant(&after).await.unwrap();
    assert!(report.bytes > 0 && report.schema_version > 0, "{report:?}");
    assert_eq!(report.bytes, std::fs::metadata(&output).unwrap().len());

    let copy = Store::connect(
        &format!("sqlite:{}", output.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(copy.pending_migrations().await.unwrap().is_empty());
    assert_eq!(copy.get_tenant(before.id).await.unwrap().name, before.name);
    assert!(
        matches!(
            copy.get_tenant(after.id).await,
            Err(StoreError::NotFound(_))
        ),
        "the backup holds a tenant created after it"
    );
    copy.close().await;

    // A second backup to the same file is refused and leaves the first one as it was.
    let first = std::fs::read(&output).unwrap();
    let refused = store.backup_to(&output).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(m) if m.contains("already exists")),
        "{refused}"
    );
    assert_eq!(std::fs::read(&output).unwrap(), first);
    db.destroy().await;
}

#[tokio::test]
async fn postgres_backup_points_at_pg_dump() {
    let Some(db) = crate::common::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("backup.db");
    let refused = db.store.backup_to(&output).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unsupported(m) if m.contains("pg_dump -Fc")),
        "{refused}"
    );
    assert!(!output.exists());
    db.destroy().await;
}
