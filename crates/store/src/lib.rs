//! marketlink-store: persistence, and the only crate that speaks SQL.
//!
//! One [`Store`] with coarse, use-case-level methods over SQLite (the embedded default) or
//! PostgreSQL (production), chosen by the database URL. Each query is written once with `$N`
//! placeholders (both drivers accept them) and compiled for both backends by `on_pool!`;
//! where the dialects differ (row locking) each backend gets its own statement.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod aliases;
mod api_keys;
mod backup;
mod bind_lists;
mod bulk;
mod checkpoint;
mod error;
mod grants;
mod invites;
mod migrations;
mod onboarding;
pub mod online;
mod periodic;
mod queue;
mod retention;
mod rows;
mod sessions;
pub mod signup;
mod subscriptions;
mod tenants;
mod timeline;
mod usage;
mod users;
mod verification;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use crate::{
    admin::UsageHourSummary,
    aliases::LicenseChange,
    api_keys::AuditEntry,
    backup::BackupReport,
    error::StoreError,
    grants::{GrantPage, GrantRow},
    invites::Invite,
    onboarding::{OnboardingDecision, OnboardingRequest},
    queue::{InboxInsert, NewJob, QueueItem, QueueState},
    retention::Prunable,
    sessions::{SessionRecord, StoredSession},
    subscriptions::SubscriptionFilter,
    timeline::TimelineEntry,
    usage::{
        IngestOutcome, MAX_HOUR_MICROS, NewUsageEvent, UsageBacklog, UsageClaim, UsageHour,
        UsageHourState, UsageSettlement, UsageTarget,
    },
    verification::LinkUse,
};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Rows per multi-row INSERT. SQLite resolves each `$N` parameter by name, which grows
    /// with the statement's width, so it gets narrow statements; PostgreSQL wide ones.
    pub fn insert_rows(self) -> usize {
        match self {
            Backend::Sqlite => 50,
            Backend::Postgres => 1000,
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds; the body is compiled once per
/// backend, so queries stay written once while each driver keeps its native types.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite: how often the WAL is checkpointed in the background (ADR 0008).
    pub checkpoint_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_millis(250),
        }
    }
}

/// The database, shared by the web front end and the workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite only: WAL checkpoints in the background.
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// SQLite only: see [`Store::write_turn`].
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Store {
    /// Opens the database at `url`: `sqlite:path/to/file.db` (created when missing) or
    /// `postgres://user@host/db`. Does not run migrations; call [`Store::migrate`].
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("bad SQLite URL `{url}`: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Checkpoints run in the background (see `checkpoint`).
                .pragma("wal_autocheckpoint", "0")
                // Pages read through a memory map and a 16 MiB cache per connection rather than
                // a `pread` and copy each time past SQLite's 2 MiB default: the flush touches
                // usage rows all over the table.
                .pragma("mmap_size", "268435456")
                .pragma("cache_size", "-16384");
            // No ping before each use: a local file does not drop connections, and the ping
            // is a round trip to the connection's thread on every query.
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .after_release(|conn, _| Box::pin(reusable(conn)))
                .connect_with(connect)
                .await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::Config(format!(
                "database URL must start with `sqlite:` or `postgres://`, got `{}`",
                redact_url(url)
            )));
        };
        let (checkpointer, write_gate) = match &pool {
            Pool::Sqlite(pool) => (
                Some(Arc::new(checkpoint::spawn(
                    pool.clone(),
                    options.checkpoint_interval,
                ))),
                Some(Arc::default()),
            ),
            Pool::Postgres(_) => (None, None),
        };
        Ok(Self {
            pool,
            _checkpointer: checkpointer,
            write_gate,
        })
    }

    /// Waits for this process's turn to write, on SQLite. SQLite takes one writer at a time
    /// and makes the others poll for its lock, sleeping 1, 2, 5, 10 … ms in between; the busy
    /// write paths (usage ingest, claims, settlements, zero-filling) queue here instead, in order and
    /// without sleeping. PostgreSQL locks rows, not the database: no turn is taken.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes all connections, waiting for in-flight queries.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// Hides a password in a database URL before it reaches a log or an error message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms} out of range: {e}")))
}

/// Whether a SQLite connection going back to the pool may be reused. On a full disk SQLite
/// may roll a whole transaction back by itself; sqlx's `ROLLBACK` then fails and its count of
/// open transactions stays at one, so the connection's next "transaction" is a savepoint whose
/// rollback leaves SQLite's transaction open, holding an old snapshot: every later write on it
/// fails with "database is locked" and checkpoints stall. Such a connection is closed instead.
async fn reusable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::{Connection, TransactionManager, sqlite::SqliteTransactionManager};
    if SqliteTransactionManager::get_transaction_depth(conn) == 0 {
        return Ok(true);
    }
    // A dropped transaction's rollback may still be queued: the ping waits for it (only on
    // this rare path, so an ordinary release costs no extra round trip).
    conn.ping().await?;
    let depth = SqliteTransactionManager::get_transaction_depth(conn);
    if depth > 0 {
        tracing::warn!(
            depth,
            "closing a SQLite connection left inside a transaction"
        );
    }
    Ok(depth == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/marketlink"),
            "postgres://app:***@db:5432/marketlink"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite:data.db"), "sqlite:data.db");
    }

    #[test]
    fn millis_round_trip() {
        let t = time::macros::datetime!(2026-11-25 12:34:56.789 UTC);
        assert_eq!(from_millis(millis(t)).unwrap(), t);
    }
}
