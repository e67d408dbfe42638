//! The flush benchmark (issue 22) on each backend: `marketlink bench flush`
//! (crates/cli/src/bench/flush.rs) against a fresh SQLite file and a fresh PostgreSQL database.
//! The goal is the flush time over the "wire floor" measured in the same run: at most 1.5.

use std::time::Duration as StdDuration;

use marketlink_cli::bench::flush::{FlushBench, flush};

use super::env_or;

/// The flush on each backend named by `BENCH_FLUSH_BACKEND` (`sqlite`, `postgres`, or both
/// separated by a comma; both by default).
pub async fn bench_flush(dir: &tempfile::TempDir) {
    let settings = FlushBench {
        rows: env_or("BENCH_FLUSH_ROWS", 1_000_000) as usize,
        concurrency: env_or("BENCH_FLUSH_CONCURRENCY", 64) as usize,
        checkpoint: std::env::var("BENCH_CHECKPOINT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(StdDuration::from_millis),
        resend_floor: env_or("BENCH_FLUSH_RESEND_FLOOR", 0) == 1,
    };
    let backends =
        std::env::var("BENCH_FLUSH_BACKEND").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let url = if backend == "postgres" {
            marketlink_e2e::fresh_postgres_database().await
        } else {
            format!(
                "sqlite:{}",
                dir.path()
                    .join(format!("flush-{}.db", uuid::Uuid::now_v7().simple()))
                    .display()
            )
        };
        for goal in flush(&settings, backend, &url).await.unwrap() {
            goal.print();
        }
        if backend == "postgres" {
            marketlink_e2e::drop_postgres_database(&url).await;
        }
    }
}
