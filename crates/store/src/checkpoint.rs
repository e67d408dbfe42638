//! SQLite WAL checkpoints off the request path (ADR 0008).
//!
//! By default the connection whose commit pushes the WAL past 1,000 pages copies it back into
//! the database file and syncs it, inside that commit: a request that happened to commit then
//! waited milliseconds, which was the usage API's p99. Automatic checkpoints are off instead
//! and this task runs a passive checkpoint every `[database] sqlite_checkpoint_ms` (250 ms by
//! default), beside readers and writers, which it never blocks. Its `fsync` still slows the
//! disk for a moment; measured with the usage API at 1,000 requests a second, a checkpoint
//! every second let WAL grow enough that each sync stalled requests for ~10 ms (p99
//! 1.3–6.9 ms), every quarter second kept p99 at 1.4–2.0 ms, and none at all gave 0.8 ms.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::{task::JoinHandle, time::MissedTickBehavior};

/// The checkpointing task; stops when the last handle to the store is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer(JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn spawn(pool: SqlitePool, interval: Duration) -> Checkpointer {
    let interval = interval.max(Duration::from_millis(10));
    Checkpointer(tokio::spawn(async move {
        // The first checkpoint after one interval: a short command (`migrate`, `doctor`)
        // has nothing to checkpoint; closing the pool checkpoints anyway.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => {}
                // The store was closed while the checkpoint waited for a connection.
                Err(_) if pool.is_closed() => return,
                Err(error) => {
                    tracing::warn!(%error, "SQLite WAL checkpoint failed; retrying at the next tick");
                }
            }
        }
    }))
}
