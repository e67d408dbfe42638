//! Pruning past retention, by one replica per interval.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{Engine, retention::RetentionSettings};

/// How often a replica asks whether this interval's run is still to be taken: often enough
/// that replicas restarted more often than the interval still prune.
const ASK_EVERY: Duration = Duration::from_secs(300);

pub(super) async fn run(
    engine: Arc<Engine>,
    settings: RetentionSettings,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(settings.interval_secs);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(ASK_EVERY.min(interval)) => {},
        }
        if super::take_periodic(&engine, "retention", interval).await {
            prune_once(&engine, &settings).await;
        }
    }
}

async fn prune_once(engine: &Engine, settings: &RetentionSettings) {
    match engine.prune_expired(settings).await {
        Ok(report) => tracing::info!(
            deleted = ?report.deleted,
            unfinished = report.unfinished,
            "pruned rows past their retention"
        ),
        // The next interval tries again; nothing is lost by waiting.
        Err(error) => tracing::error!(error = ?error, "retention pruning failed"),
    }
}
