//! `[database]`: which database, how many connections, when to migrate.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:marketlink.db` (embedded, created when missing) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// SQLite only: milliseconds between background WAL checkpoints (ADR 0008). Shorter keeps
    /// request latency tails low under steady writes; longer does less I/O in bulk work.
    pub sqlite_checkpoint_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:marketlink.db".into(),
            max_connections: 10,
            migrate_on_start: true,
            sqlite_checkpoint_ms: 250,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseConfig")
            .field("url", &marketlink_store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_checkpoint_ms", &self.sqlite_checkpoint_ms)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl DatabaseConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let db = &self.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError::BadValue {
                key: "database.url",
                message: format!(
                    "`{}` must start with `sqlite:` or `postgres://`",
                    marketlink_store::redact_url(db)
                ),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::BadValue {
                key: "database.max_connections",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
