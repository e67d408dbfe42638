//! `marketlink backup --output FILE`: a consistent copy of the SQLite database while `serve`
//! runs. The store does the work; PostgreSQL is refused with a pointer to `pg_dump`.

use std::path::Path;

use anyhow::Context;

use super::database::open_store;
use crate::config::Config;

pub async fn backup(config: Config, output: &Path) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let written = store.backup_to(output).await;
    store.close().await;
    let report = written.context("backup failed")?;
    println!(
        "backup written to {} ({} bytes, schema {}); restore it with `serve` stopped \
         (docs/operations.md, \"Backup and restore\")",
        report.path.display(),
        report.bytes,
        report.schema_version
    );
    Ok(())
}
