//! The schema's migrations: applying them, and reading what the database has applied.
//!
//! In a rolling upgrade the next release migrates the database while this one still serves;
//! a replica of this release that restarts then finds migrations newer than any it knows.
//! sqlx's migrator refuses that ("previously applied but is missing"), which would keep every
//! old replica down once it restarts. Since a release's migrations only add (expand, then
//! contract in a later release; docs/operations.md, "Upgrades"), this build serves on over a
//! newer schema, provided everything it knows is applied exactly as it knows it.

use std::collections::HashMap;

use sqlx::migrate::{Migration, Migrator};

use crate::{Backend, Store, StoreError, on_pool, online};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// A row of sqlx's `_sqlx_migrations` table.
#[derive(Debug, sqlx::FromRow)]
struct Applied {
    version: i64,
    description: String,
    checksum: Vec<u8>,
    success: bool,
}

impl Store {
    fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Every migration the database records, oldest first; none before the first migration.
    async fn applied(&self) -> Result<Vec<Applied>, StoreError> {
        let exists = match self.backend() {
            Backend::Sqlite => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')"
            }
            Backend::Postgres => "SELECT to_regclass('_sqlx_migrations') IS NOT NULL",
        };
        on_pool!(self, |pool| {
            let table_exists: bool = sqlx::query_scalar(exists).fetch_one(pool).await?;
            if !table_exists {
                return Ok(Vec::new());
            }
            Ok(sqlx::query_as::<_, Applied>(
                "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Applies pending migrations for this backend. Safe to run on every start and from
    /// several replicas (sqlx takes an advisory lock on PostgreSQL).
    ///
    /// When the database already carries migrations newer than this build's newest (a newer
    /// release applied them), nothing is applied: the start goes on with a warning naming
    /// them, provided every migration this build knows is applied, completely, with the same
    /// checksum. Anything else (an edited migration, an unknown one older than this build's
    /// newest, a gap) is refused as sqlx refuses it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.migrator();
        let applied = self.applied().await?;
        let newer = newer_than(migrator, &applied);
        if newer.is_empty() {
            on_pool!(self, |pool| migrator.run(pool).await?);
            return Ok(());
        }
        behind_but_intact(migrator, &applied)?;
        let names: Vec<String> = newer.iter().map(|a| applied_name(a)).collect();
        tracing::warn!(
            newer = %names.join(", "),
            "the database has migrations newer than this build, applied by a newer release; \
             serving on the schema they extend (a rolling upgrade: upgrade this replica)"
        );
        Ok(())
    }

    /// Migrations known to this build that the database has not applied yet.
    async fn pending(&self) -> Result<Vec<&'static Migration>, StoreError> {
        let applied = self.applied().await?;
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.iter().any(|a| a.success && a.version == m.version))
            .collect())
    }

    /// The migrations not applied yet, by name (`<version>_<description>`).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .pending()
            .await?
            .into_iter()
            .map(migration_name)
            .collect())
    }

    /// The migrations not applied yet, each with what makes it unsafe to apply while the
    /// previous release still serves (none: online-safe).
    pub async fn pending_migration_hazards(
        &self,
    ) -> Result<Vec<(String, Vec<online::Hazard>)>, StoreError> {
        Ok(self
            .pending()
            .await?
            .into_iter()
            .map(|m| (migration_name(m), online::online_hazards(&m.sql)))
            .collect())
    }

    /// Applied migrations newer than every migration this build knows, by name: a newer
    /// release migrated the database (during a rolling upgrade, expected; after it, this
    /// binary is out of date).
    pub async fn newer_migrations(&self) -> Result<Vec<String>, StoreError> {
        let applied = self.applied().await?;
        Ok(newer_than(self.migrator(), &applied)
            .into_iter()
            .map(applied_name)
            .collect())
    }
}

fn newer_than<'a>(migrator: &Migrator, applied: &'a [Applied]) -> Vec<&'a Applied> {
    let newest_known = migrator.iter().map(|m| m.version).max().unwrap_or(i64::MIN);
    applied
        .iter()
        .filter(|a| a.version > newest_known)
        .collect()
}

/// Over a database ahead of this build: refuses unless every migration this build knows is
/// applied, completely and unchanged, and every unknown one is newer than all of them.
fn behind_but_intact(migrator: &Migrator, applied: &[Applied]) -> Result<(), StoreError> {
    let known: HashMap<i64, &Migration> = migrator.iter().map(|m| (m.version, m)).collect();
    let newest_known = known.keys().copied().max().unwrap_or(i64::MIN);
    for a in applied {
        let name = applied_name(a);
        if !a.success {
            return Err(StoreError::Schema(format!(
                "migration {name} is only partly applied; repair it with the release that owns it"
            )));
        }
        match known.get(&a.version) {
            Some(m) if *m.checksum != *a.checksum => {
                return Err(StoreError::Schema(format!(
                    "migration {name} was applied with other contents than this build's (checksum differs)"
                )));
            }
            None if a.version < newest_known => {
                return Err(StoreError::Schema(format!(
                    "migration {name} was applied but this build does not know it, and it is older than this build's newest"
                )));
            }
            _ => {}
        }
    }
    if let Some(missing) = migrator
        .iter()
        .find(|m| !applied.iter().any(|a| a.version == m.version))
    {
        return Err(StoreError::Schema(format!(
            "migration {} of this build is not applied, yet newer ones are: the database was migrated by another line of releases",
            migration_name(missing)
        )));
    }
    Ok(())
}

fn migration_name(migration: &Migration) -> String {
    format!("{}_{}", migration.version, migration.description)
}

fn applied_name(applied: &Applied) -> String {
    format!("{}_{}", applied.version, applied.description)
}
