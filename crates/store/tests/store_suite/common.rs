//! Test databases: a temporary SQLite file, or a fresh PostgreSQL database per test.
//!
//! PostgreSQL is reached at `MARKETLINK_TEST_POSTGRES_URL` (default: the CI server at
//! `postgres://postgres@127.0.0.1:5432/test`). Tests fail when it is unreachable, unless
//! `MARKETLINK_TEST_SKIP_POSTGRES=1` is set on a machine without PostgreSQL. Set
//! `MARKETLINK_TEST_NO_DESTROY=1` to keep the databases for debugging.

use marketlink_store::{Store, StoreOptions};
use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDb {
    pub store: Store,
    /// Where the database is, for tests that reach it without the store.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

pub async fn sqlite() -> TestDb {
    let db = sqlite_unmigrated().await;
    db.store.migrate().await.unwrap();
    db
}

/// A new SQLite database with no tables yet.
pub async fn sqlite_unmigrated() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    TestDb {
        store,
        url,
        cleanup: Cleanup::Sqlite(dir),
    }
}

/// `None` only when PostgreSQL tests are explicitly skipped.
pub async fn postgres() -> Option<TestDb> {
    let db = postgres_unmigrated().await?;
    db.store.migrate().await.unwrap();
    Some(db)
}

/// A new PostgreSQL database with no tables yet; `None` when PostgreSQL tests are skipped.
pub async fn postgres_unmigrated() -> Option<TestDb> {
    if std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        return None;
    }
    let admin_url =
        std::env::var("MARKETLINK_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.to_owned());
    let name = format!("marketlink_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {admin_url} is unreachable ({e}); start it or set \
             MARKETLINK_TEST_SKIP_POSTGRES=1"
        )
    });
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("bad PostgreSQL URL {admin_url}"),
    };
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    Some(TestDb {
        store,
        url,
        cleanup: Cleanup::Postgres { admin_url, name },
    })
}

impl TestDb {
    pub async fn destroy(self) {
        self.store.close().await;
        if std::env::var("MARKETLINK_TEST_NO_DESTROY").as_deref() == Ok("1") {
            if let Cleanup::Sqlite(dir) = self.cleanup {
                let _ = dir.keep();
            }
            return;
        }
        if let Cleanup::Postgres { admin_url, name } = self.cleanup {
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
}

/// Defines `mod <name> { sqlite(); postgres(); }` running the same story on both backends.
#[macro_export]
macro_rules! story {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::common::sqlite().await;
                super::$body(&db.store).await;
                db.destroy().await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::common::postgres().await {
                    super::$body(&db.store).await;
                    db.destroy().await;
                }
            }
        }
    };
}
