//! Online backups of the embedded SQLite database (docs/operations.md, "Backup and restore").
//!
//! `VACUUM INTO` copies the database as of one read transaction: with WAL, writers go on while
//! it runs and the copy holds every transaction committed before it began, none after. A plain
//! file copy of a live database may catch a page half-written or miss the WAL's pages.
//! PostgreSQL has its own tools (`pg_dump`, PITR); the store does not imitate them.

use std::path::{Path, PathBuf};

use crate::{Pool, Store, StoreError};

/// What [`Store::backup_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration the copy holds: a restore needs a binary at least this recent.
    pub schema_version: i64,
}

impl Store {
    /// Writes a consistent copy of the SQLite database to `output` while the service keeps
    /// serving, then checks the copy (`PRAGMA quick_check`). Refuses an existing `output`
    /// (a backup never overwrites another), and PostgreSQL, whose backups are `pg_dump`'s.
    pub async fn backup_to(&self, output: &Path) -> Result<BackupReport, StoreError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StoreError::Unsupported(
                "a PostgreSQL database is backed up with PostgreSQL's own tools: \
                 `pg_dump -Fc` (restore with `pg_restore`) or continuous archiving for \
                 point-in-time recovery; see docs/operations.md, \"Backup and restore\""
                    .into(),
            ));
        };
        if output.exists() {
            return Err(StoreError::Conflict(format!(
                "{} already exists; a backup never overwrites a file",
                output.display()
            )));
        }
        let target = output.to_str().ok_or_else(|| {
            StoreError::Config(format!("{} is not a UTF-8 path", output.display()))
        })?;
        let schema_version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await
                .map_err(|e| {
                    StoreError::Config(format!("not a marketlink database (no migrations): {e}"))
                })?;
        let schema_version = schema_version.ok_or_else(|| {
            StoreError::Config("not a marketlink database (no migrations applied)".into())
        })?;
        // SQLite itself refuses a non-empty target, so a file appearing since the check above
        // is not overwritten either.
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(pool)
            .await?;
        check_copy(target).await?;
        let bytes = std::fs::metadata(output)
            .map_err(|e| StoreError::Config(format!("reading {}: {e}", output.display())))?
            .len();
        Ok(BackupReport {
            path: output.to_owned(),
            bytes,
            schema_version,
        })
    }
}

/// Opens the copy read-only and lets SQLite check its pages and indexes.
async fn check_copy(target: &str) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};
    let mut conn = SqliteConnectOptions::new()
        .filename(target)
        .read_only(true)
        .connect()
        .await?;
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "the backup at {target} failed SQLite's check: {verdict}"
        )))
    }
}
