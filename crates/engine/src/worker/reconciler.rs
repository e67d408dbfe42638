//! Periodic reconciliation with the marketplaces, by one replica per interval.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{Engine, reconcile::ReconcileSettings};

/// Reconciles every `interval`, the first time one interval after start-up.
pub(super) async fn run(
    engine: Arc<Engine>,
    interval: Duration,
    settings: ReconcileSettings,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {},
        }
        // The survey reads every subscription from the marketplaces, whose APIs throttle, so
        // only one replica reconciles each interval.
        if super::take_periodic(&engine, "reconcile", interval).await {
            reconcile_once(&engine, &settings).await;
        }
    }
}

async fn reconcile_once(engine: &Engine, settings: &ReconcileSettings) {
    match engine.reconcile(settings).await {
        Ok(report) => tracing::info!(
            surveyed = report.surveyed,
            drift = report.items.len(),
            repaired = report.repaired,
            report_only = report.report_only,
            failed = report.failed,
            "reconciled with the marketplaces"
        ),
        Err(error) => tracing::error!(error = ?error, "reconciliation failed"),
    }
}
