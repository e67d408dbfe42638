use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule or a concurrent change refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Usage that would take an hour past the most its marketplace takes for one hour
    /// (`NewUsageEvent::hour_cap`): the batch was not stored.
    #[error("usage of `{dimension}` for the hour starting {hour} would take the hour past its cap")]
    HourCapExceeded {
        subscription_id: uuid::Uuid,
        dimension: String,
        hour: time::OffsetDateTime,
        /// Accepted for the hour before this batch.
        accepted_micros: i64,
        /// What this batch adds to it.
        adding_micros: i64,
        cap_micros: i64,
    },
    /// A domain rule refused the change (for example an illegal state transition).
    #[error(transparent)]
    Domain(#[from] marketlink_core::IllegalTransition),
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// This backend does not do what was asked; the message says what does.
    #[error("{0}")]
    Unsupported(String),
    /// A stored value could not be read back into a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The cause is in the message (not a `source`, which would print it twice in a chain):
    /// a warning logged with `%error` must say what failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database's applied migrations do not fit this build's (an edited migration, a gap).
    #[error("the database's migrations do not fit this build: {0}")]
    Schema(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Self::NotFound("row"),
            other => Self::Database(other),
        }
    }
}

impl StoreError {
    /// The database could not be reached or did not answer in time (a full pool, a lost
    /// connection): nothing about the request is wrong, and trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        ) || self.is_disk_full()
    }

    /// The database's disk is full (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`): the
    /// write was not made, and will be once the operator frees space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            // SQLite's codes are numbers (13, or an extended code whose low byte is 13);
            // PostgreSQL's are five-character SQLSTATEs.
            Self::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                code == "53100" || code.parse::<u32>().is_ok_and(|n| n & 0xff == 13)
            }),
            _ => false,
        }
    }

    /// Maps a unique-constraint violation to [`StoreError::Conflict`] with a readable message.
    pub(crate) fn on_unique(error: sqlx::Error, message: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(message()),
            _ => Self::from(error),
        }
    }

    /// The database could not do the work, for a reason described in words (e.g. the group
    /// commit a batch was part of failed): reported like any database error.
    pub fn unavailable(message: String) -> Self {
        Self::Database(sqlx::Error::Io(std::io::Error::other(message)))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::*;

    /// SQLite out of room, as on a full disk (`max_page_count` caps the database's size): a
    /// retry may succeed once space is freed, and the message says why.
    #[tokio::test]
    async fn a_full_database_is_unavailable_and_says_so() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        conn.execute("PRAGMA max_page_count = 8; CREATE TABLE t (b BLOB)")
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO t VALUES (zeroblob(1000000))")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let error = StoreError::from(refused);
        assert!(error.is_disk_full() && error.is_unavailable(), "{error:?}");
        assert!(error.to_string().contains("full"), "{error}");
        assert!(!StoreError::Corrupt("x".into()).is_disk_full());
    }
}
