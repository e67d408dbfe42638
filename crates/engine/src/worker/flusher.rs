//! The usage flusher: sends closed hours of metered usage every `flush_interval`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Engine;

pub(super) async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    loop {
        // Not raced against shutdown: a flush in hand finishes its bookkeeping.
        match engine.flush_usage().await {
            Ok(run) if run.claimed > 0 || run.zero_created > 0 => {
                tracing::info!(?run, "usage flushed");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(error = ?error, "usage flush failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(engine.metering.flush_interval) => {},
        }
    }
}
