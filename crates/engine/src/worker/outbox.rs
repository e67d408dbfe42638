//! The outbox worker: runs queued jobs (activations), woken when one is queued.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::WorkerSettings;
use crate::Engine;

pub(super) async fn run(
    engine: Arc<Engine>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) {
    loop {
        match engine
            .process_outbox(settings.inbox_batch, &settings.backoff)
            .await
        {
            Ok(run) if run.done + run.retried + run.buried == settings.inbox_batch as usize => {
                // A full batch: there may be more right away.
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::error!(error = ?error, "outbox pass failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = engine.outbox_ready.notified() => {},
            () = tokio::time::sleep(settings.inbox_interval) => {},
        }
    }
}
