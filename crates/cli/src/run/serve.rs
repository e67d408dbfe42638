//! `marketlink serve`: start-up order (database, metrics, engine, workers (the entitlement
//! index loads in one of them), web state), serving, and shutdown in reverse.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use axum_extra::extract::cookie::Key;
use marketlink_core::{Clock, SystemClock};
use marketlink_engine::{
    Engine, Providers,
    worker::{self, WorkerSettings},
};
use marketlink_store::redact_url;
use marketlink_web::{App, AppState, WebSettings};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::{
    database::{ensure_migrated, open_store},
    signal::spawn_signal_watch,
    wiring::{engine, providers},
};
use crate::config::Config;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = spawn_signal_watch();
    let providers = providers(&config, Arc::new(SystemClock)).await?;
    serve_until(config, providers, shutdown, |_| {}).await
}

/// Runs the server until `shutdown` is cancelled; `on_listening` receives the bound address
/// (the port may have been chosen by the OS).
pub async fn serve_until(
    config: Config,
    providers: Providers,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    serve_on(config, providers, listener, shutdown, on_listening).await
}

/// Like [`serve_until`] on a listener the caller bound (tests bind port 0 first).
pub async fn serve_on(
    config: Config,
    providers: Providers,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    // Process-wide, like the memory it bounds; a second server in one process (tests) keeps
    // the first one's setting.
    marketlink_web::password::configure(
        config
            .server
            .password_hash_concurrency
            .unwrap_or_else(marketlink_web::password::default_concurrency),
        Duration::from_millis(config.server.password_queue_wait_ms),
    );
    let store = open_store(&config).await?;
    if config.database.migrate_on_start {
        store.migrate().await.context("migration failed")?;
    } else {
        ensure_migrated(&store).await?;
    }
    if config.server.metrics {
        // Before the workers start, so their first marketplace calls are counted.
        marketlink_web::metrics::install();
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Arc::new(engine(&config, store.clone(), providers, clock)?);
    // The entitlement index loads in the background (its worker's first sync): checks are
    // answered from the database until it is warm, so start-up time does not grow with the
    // number of subscriptions (ADR 0022).
    let workers = spawn_workers(&engine, &config, &shutdown);
    let state = AppState::new(App {
        engine,
        keys: Default::default(),
        sign_in_attempts: Default::default(),
        settings: web_settings(&config),
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, database = %redact_url(&config.database.url), "marketlink listening");
    on_listening(address);
    let key_use = tokio::spawn(marketlink_web::flush_key_use(
        state.clone(),
        shutdown.clone(),
    ));
    let stop = shutdown.clone();
    marketlink_web::serve(
        listener,
        marketlink_web::router(state),
        async move { stop.cancelled().await },
        marketlink_web::ServeOptions {
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
            max_connections: config.server.max_connections,
        },
    )
    .await
    .context("HTTP server failed")?;
    // The server has drained; stop the workers (they finish the item in hand) and wait.
    shutdown.cancel();
    worker::join(workers).await;
    let _ = key_use.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the engine's background workers; they stop when `shutdown` is cancelled.
fn spawn_workers(
    engine: &Arc<Engine>,
    config: &Config,
    shutdown: &CancellationToken,
) -> Vec<worker::Worker> {
    worker::spawn(
        engine.clone(),
        WorkerSettings {
            reconcile_interval: config.reconcile.interval(),
            reconcile: config.reconcile.settings(false),
            retention: config.retention.clone(),
            ..WorkerSettings::default()
        },
        shutdown.clone(),
    )
}

fn web_settings(config: &Config) -> WebSettings {
    WebSettings {
        session_key: session_key(config),
        secure_cookies: config.secure_cookies(),
        branding: config.branding.clone(),
        admins: config.admin.users.clone(),
        public_url: config.server.public_url.clone(),
        body_limit_bytes: config.server.body_limit_bytes,
        request_timeout: config.request_timeout(),
        metrics: marketlink_web::metrics::MetricsSettings {
            enabled: config.server.metrics,
            token: config
                .server
                .metrics_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            public: config.server.metrics_public,
        },
        rate_limits: config.rate_limits.clone(),
    }
}

/// The session cookie's key: from `server.session_secret`, else random for this process.
fn session_key(config: &Config) -> Key {
    match &config.server.session_secret {
        // SHA-512 spreads any long secret over exactly the 64 bytes a Key takes.
        Some(secret) => Key::from(&sha2::Sha512::digest(secret.expose().as_bytes())[..]),
        None => {
            tracing::warn!(
                "server.session_secret is not set: sessions end when the process restarts, and replicas cannot share them"
            );
            Key::generate()
        }
    }
}
