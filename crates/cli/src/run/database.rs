//! Opening the configured database and bringing its schema up to date.

use anyhow::Context;
use marketlink_store::{Store, StoreOptions, redact_url};

use crate::config::Config;

pub(super) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        checkpoint_interval: std::time::Duration::from_millis(config.database.sqlite_checkpoint_ms),
        ..StoreOptions::default()
    };
    Store::connect(&config.database.url, &options)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&config.database.url)))
}

/// Refuses to go on with a schema older than this binary.
pub(super) async fn ensure_migrated(store: &Store) -> anyhow::Result<()> {
    let pending = store.pending_migrations().await?;
    anyhow::ensure!(
        pending.is_empty(),
        "the database is missing {} migration(s); run `marketlink migrate`",
        pending.len()
    );
    Ok(())
}

/// `marketlink migrate [--dry-run]`: applies (or lists) the pending migrations.
pub async fn migrate(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let pending = store.pending_migrations().await?;
    let newer = store.newer_migrations().await?;
    if !newer.is_empty() {
        // A newer release migrated the database: nothing of this build's is left to apply.
        println!(
            "the database is ahead of this build: {} newer migration(s) applied by a newer release:",
            newer.len()
        );
        for name in &newer {
            println!("  {name}");
        }
    }
    if pending.is_empty() {
        println!("database is up to date");
    } else if dry_run {
        print_dry_run(&store.pending_migration_hazards().await?);
    } else {
        store.migrate().await.context("migration failed")?;
        println!("applied {} migration(s):", pending.len());
        for name in &pending {
            println!("  {name}");
        }
    }
    store.close().await;
    Ok(())
}

/// The migrations a run would apply, each saying whether it is safe while the previous
/// release still serves (docs/operations.md, "Upgrades").
fn print_dry_run(pending: &[(String, Vec<marketlink_store::online::Hazard>)]) {
    println!("{} migration(s) would be applied:", pending.len());
    for (name, hazards) in pending {
        if hazards.is_empty() {
            println!("  {name}: online-safe");
            continue;
        }
        println!("  {name}: NOT online-safe: stop the previous release before applying it");
        for hazard in hazards {
            println!("      {}: {}", hazard.reason, hazard.statement);
        }
    }
    let offline = pending.iter().filter(|(_, h)| !h.is_empty()).count();
    if offline == 0 {
        println!("all online-safe: the previous release may keep serving while they apply");
    } else {
        println!("{offline} not online-safe: upgrade with the previous release stopped");
    }
}
