//! The queue poller: takes messages from the marketplaces' queues (AWS SQS) into the inbox.

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
        let taken = tokio::select! {
            () = shutdown.cancelled() => break,
            taken = engine.pull_once(settings.pull_batch) => taken,
        };
        if taken > 0 {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.pull_interval) => {},
        }
    }
}
