//! A database ahead of this build: a newer release applied its migrations during a rolling
//! upgrade, and a replica of this build restarts (docs/operations.md, "Upgrades").

use marketlink_store::{Backend, StoreError};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::common::TestDb;

const NEWER: i64 = 29991231000000;
const FIRST: i64 = 20261125000001;

/// Runs `migrator` on the test database over its own connection.
async fn run(db: &TestDb, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::Connection;
    match db.store.backend() {
        Backend::Sqlite => {
            let mut raw = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            migrator.run(&mut raw).await
        }
        Backend::Postgres => {
            let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
            migrator.run(&mut raw).await
        }
    }
}

/// One statement on the test database over its own connection.
async fn execute(db: &TestDb, sql: &str, checksum: Vec<u8>, version: i64) {
    use sqlx::Connection;
    match db.store.backend() {
        Backend::Sqlite => {
            let mut raw = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let q = sqlx::query(sql).bind(checksum).bind(version);
            q.execute(&mut raw).await.unwrap();
        }
        Backend::Postgres => {
            let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let q = sqlx::query(sql).bind(checksum).bind(version);
            q.execute(&mut raw).await.unwrap();
        }
    }
}

/// This build's migrations, read from the tree, plus `extra`.
async fn these_and(db: &TestDb, extra: Option<Migration>) -> Migrator {
    let dialect = match db.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let mut migrator = Migrator::new(std::path::Path::new(&format!("../../migrations/{dialect}")))
        .await
        .unwrap();
    if let Some(extra) = extra {
        migrator.migrations.to_mut().push(extra);
    }
    migrator
}

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        sql.into(),
        false,
    )
}

fn schema_error(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Schema(message)) => message,
        other => panic!("expected a refusal naming the migration, got {other:?}"),
    }
}

async fn a_newer_schema_is_served_on_and_a_changed_one_refused(db: &TestDb) {
    let store = &db.store;
    // A newer release's migrator (this build's migrations and one more) ran first.
    let newer = migration(
        NEWER,
        "from a newer release",
        "CREATE TABLE later_things (id BIGINT)",
    );
    run(db, &these_and(db, Some(newer)).await).await.unwrap();
    // sqlx's own migrator, as this build ran it before, refuses to start.
    let refused = run(db, &these_and(db, None).await).await.unwrap_err();
    assert!(
        refused.to_string().contains(&NEWER.to_string()),
        "{refused}"
    );

    store.migrate().await.expect("a newer schema is served on");
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert_eq!(
        store.newer_migrations().await.unwrap(),
        vec![format!("{NEWER}_from a newer release")]
    );

    // A migration of this build applied with other contents: refused, named.
    let update = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2";
    execute(db, update, vec![0], FIRST).await;
    let message = schema_error(store.migrate().await);
    assert!(
        message.contains(&FIRST.to_string()) && message.contains("checksum"),
        "{message}"
    );
    let known = these_and(db, None).await;
    let original = known.iter().find(|m| m.version == FIRST).unwrap();
    execute(db, update, original.checksum.to_vec(), FIRST).await;
    store.migrate().await.unwrap();

    // An unknown migration older than this build's newest: not a newer release's; refused.
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES ($2, 'from elsewhere', TRUE, $1, 0)";
    execute(db, insert, vec![1], FIRST + 1_000).await;
    let message = schema_error(store.migrate().await);
    assert!(message.contains("from elsewhere"), "{message}");
}

#[tokio::test]
async fn a_newer_schema_on_sqlite() {
    let db = crate::common::sqlite_unmigrated().await;
    a_newer_schema_is_served_on_and_a_changed_one_refused(&db).await;
    db.destroy().await;
}

#[tokio::test]
async fn a_newer_schema_on_postgres() {
    if let Some(db) = crate::common::postgres_unmigrated().await {
        a_newer_schema_is_served_on_and_a_changed_one_refused(&db).await;
        db.destroy().await;
    }
}
