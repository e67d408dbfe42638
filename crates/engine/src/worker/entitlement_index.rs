//! Keeps the in-memory entitlement index in step with the database (and other replicas).

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::Engine;

pub(super) async fn run(engine: Arc<Engine>, interval: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(error) = engine.entitlements.sync(&engine.store).await {
            tracing::warn!(error = ?error, "entitlement index sync failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {},
        }
    }
}
