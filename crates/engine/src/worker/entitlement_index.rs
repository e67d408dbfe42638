//! Keeps the in-memory entitlement index in step with the database (and other replicas). Its
//! first sync is the start-up load, made while the server already answers (ADR 0022).

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::Engine;

pub(super) async fn run(engine: Arc<Engine>, interval: Duration, shutdown: CancellationToken) {
    let started = std::time::Instant::now();
    let mut warm = engine.entitlements.is_warm();
    loop {
        // A long first load must not hold up shutdown; the watermark stays at the last page.
        let synced = tokio::select! {
            () = shutdown.cancelled() => break,
            synced = engine.entitlements.sync(&engine.store) => synced,
        };
        match synced {
            Ok(loaded) if !warm => {
                warm = true;
                tracing::info!(
                    subscriptions = loaded,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "entitlement index warm: checks are answered from memory"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = ?error, "entitlement index sync failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {},
        }
    }
}
