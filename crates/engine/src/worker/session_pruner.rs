//! Deletes expired browser sessions, by one replica per interval.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::Engine;

/// Prunes every `interval`, the first time one interval after start-up. An expired session
/// opens nothing even before it is pruned (loading checks the expiry): pruning only keeps
/// the table small.
pub(super) async fn run(engine: Arc<Engine>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {},
        }
        if !super::take_periodic(&engine, "prune-sessions", interval).await {
            continue;
        }
        match engine.prune_sessions().await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "expired sessions pruned"),
            Err(error) => tracing::warn!(error = ?error, "cannot prune expired sessions"),
        }
    }
}
