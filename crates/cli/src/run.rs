//! The commands' bodies: start-up order, wiring and shutdown.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use axum_extra::extract::cookie::Key;
use marketlink_core::{Clock as _, SystemClock};
use marketlink_engine::{
    Engine, Providers,
    worker::{self, WorkerSettings},
};
use marketlink_store::{Store, StoreOptions, redact_url};
use marketlink_web::{App, AppState, WebSettings};
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::{Config, LogConfig, LogFormat},
    sandbox,
};

pub fn init_tracing(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(log.format, std::io::stdout))
        .try_init();
    if result.is_err() {
        eprintln!("marketlink: a tracing subscriber was already installed");
    }
}

/// The formatting layer for `[log] format`, writing to `writer`.
fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        // Every enclosing span's fields, so lines logged deep inside a request still carry
        // the `http` span's `request_id`.
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().with_writer(writer).boxed(),
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        checkpoint_interval: std::time::Duration::from_millis(config.database.sqlite_checkpoint_ms),
        ..StoreOptions::default()
    };
    Store::connect(&config.database.url, &options)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&config.database.url)))
}

pub async fn migrate(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let pending = store.pending_migrations().await?;
    if pending.is_empty() {
        println!("database is up to date");
    } else if dry_run {
        println!("{} migration(s) would be applied:", pending.len());
        for name in &pending {
            println!("  {name}");
        }
    } else {
        store.migrate().await.context("migration failed")?;
        println!("applied {} migration(s):", pending.len());
        for name in &pending {
            println!("  {name}");
        }
    }
    store.close().await;
    Ok(())
}

/// The engine for a one-off command (no workers, no server).
async fn command_engine(config: &Config) -> anyhow::Result<Engine> {
    let store = open_store(config).await?;
    let pending = store.pending_migrations().await?;
    anyhow::ensure!(
        pending.is_empty(),
        "the database is missing {} migration(s); run `marketlink migrate`",
        pending.len()
    );
    let clock: Arc<dyn marketlink_core::Clock> = Arc::new(SystemClock);
    let providers = providers(config, clock.clone()).await?;
    Ok(Engine::new(
        store,
        providers,
        clock,
        Arc::new(config.catalog.clone()),
        config.changes.clone(),
    )
    .with_metering(config.metering.settings())
    .with_webhooks(config.webhooks.clone()))
}

/// `marketlink meter flush`: sends every closed hour now, as the worker would.
pub async fn meter_flush(config: Config) -> anyhow::Result<()> {
    let engine = command_engine(&config).await?;
    let run = engine.flush_usage().await.context("usage flush failed")?;
    println!(
        "claimed {} hour(s) in {} call(s): {} delivered, {} retrying, {} mismatched, {} dead, {} skipped; {} zero hour(s) created",
        run.claimed,
        run.calls,
        run.delivered,
        run.retried,
        run.mismatched,
        run.dead,
        run.skipped,
        run.zero_created
    );
    engine.store.close().await;
    Ok(())
}

/// `marketlink reconcile [--dry-run]`: compares with the marketplaces, prints the drift and
/// what was repaired.
pub async fn reconcile(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let report = reconcile_once(&config, dry_run).await?;
    for (marketplace, reason) in &report.skipped {
        println!("{marketplace}: not surveyed: {reason}");
    }
    for item in &report.items {
        let (label, detail) = match &item.action {
            marketlink_engine::reconcile::Action::Repaired(d) => ("repaired", d),
            marketlink_engine::reconcile::Action::WouldRepair(d) => ("would repair", d),
            marketlink_engine::reconcile::Action::ReportOnly(d) => ("left alone", d),
            marketlink_engine::reconcile::Action::Failed(d) => ("repair failed", d),
        };
        println!(
            "{} {}: {}; {label}: {detail}",
            item.marketplace,
            item.external_id,
            drift_text(&item.drift)
        );
    }
    println!(
        "{} subscription(s) surveyed, {} drift(s): {} repaired, {} left alone{}, {} failed",
        report.surveyed,
        report.items.len(),
        report.repaired,
        report.report_only,
        if dry_run { " (dry run)" } else { "" },
        report.failed
    );
    Ok(())
}

/// One reconciliation run with the configured marketplaces, as `marketlink reconcile` does it.
pub async fn reconcile_once(
    config: &Config,
    dry_run: bool,
) -> anyhow::Result<marketlink_engine::reconcile::ReconcileReport> {
    let engine = command_engine(config).await?;
    let report = engine
        .reconcile(&config.reconcile.settings(dry_run))
        .await
        .context("reconciliation failed");
    engine.store.close().await;
    report
}

fn drift_text(drift: &marketlink_engine::reconcile::Drift) -> String {
    use marketlink_engine::reconcile::Drift;
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    match drift {
        Drift::StatusMismatch { ours, theirs } => {
            format!("status: ours {ours}, the marketplace's {theirs}")
        }
        Drift::PlanMismatch { ours, theirs } => format!(
            "plan: ours {}, the marketplace's {theirs}",
            or_none(ours.as_ref().map(ToString::to_string))
        ),
        Drift::QuantityMismatch { ours, theirs } => format!(
            "quantity: ours {}, the marketplace's {theirs}",
            or_none(ours.map(|q| q.to_string()))
        ),
        Drift::EntitlementsDiffer { ours, theirs } => {
            format!("entitlements differ: ours {ours}, the marketplace's {theirs}")
        }
        Drift::UnknownToUs { theirs } => format!(
            "we never saw it (the marketplace says {})",
            or_none(theirs.map(|s| s.to_string()))
        ),
        Drift::StuckPending { since } => format!("pending since {since}: activation stuck"),
    }
}

/// `marketlink meter status`: hourly totals per state, the backlog and the dead letters.
pub async fn meter_status(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let clock = SystemClock;
    let settings = config.metering.settings();
    let now = marketlink_core::Clock::now(&clock);
    let closed =
        marketlink_engine::metering::hour_floor(now - settings.settle) - time::Duration::hours(1);
    let backlog = store.usage_backlog(closed).await?;
    println!("hourly usage totals by state:");
    if backlog.by_state.is_empty() {
        println!("  (none)");
    }
    for (state, count) in &backlog.by_state {
        println!("  {state:<10} {count}");
    }
    match backlog.oldest_due_hour {
        Some(oldest) => println!(
            "backlog: {} closed hour(s) waiting to be delivered, oldest {oldest}",
            backlog.due
        ),
        None => println!("backlog: nothing waiting"),
    }
    for (title, state) in [
        ("dead letters", marketlink_store::UsageHourState::Dead),
        (
            "quantity mismatches",
            marketlink_store::UsageHourState::Mismatch,
        ),
    ] {
        let rows = store.usage_hours_in(state, 20).await?;
        if rows.is_empty() {
            continue;
        }
        println!("{title} (newest 20):");
        for row in rows {
            println!(
                "  {} {} {} {} qty {} after {} attempt(s): {}",
                row.id,
                row.marketplace,
                row.hour,
                row.dimension,
                row.quantity,
                row.attempts,
                row.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    store.close().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

/// The marketplace providers the configuration asks for. Discovers the buyer sign-in
/// authority where one is configured (a network call).
pub async fn providers(
    config: &Config,
    clock: Arc<dyn marketlink_core::Clock>,
) -> anyhow::Result<Providers> {
    let mut providers = Providers::new();
    if let Some(aws) = &config.aws {
        let provider = marketlink_aws::AwsProvider::new(aws.clone(), clock.clone())
            .map_err(|e| anyhow::anyhow!("invalid [aws] configuration: {e}"))?;
        providers = providers.with(Arc::new(provider));
    }
    if let Some(azure) = &config.azure {
        let mut provider = marketlink_azure::AzureProvider::new(azure.clone(), clock.clone())
            .map_err(|e| anyhow::anyhow!("invalid [azure] configuration: {e}"))?;
        if let Some(sign_in) = &azure.sign_in {
            let mut sign_in = sign_in.clone();
            sign_in.redirect_uri.get_or_insert_with(|| {
                format!(
                    "{}/azure/signin/callback",
                    config.server.public_url.trim_end_matches('/')
                )
            });
            let entra = marketlink_azure::EntraSignIn::discover(&provider, &sign_in, clock)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot set up buyer sign-in ([azure.sign_in]): {e}")
                })?;
            provider = provider.with_buyer_sign_in(Arc::new(entra));
        }
        providers = providers.with(Arc::new(provider));
    }
    if providers.is_empty() {
        tracing::warn!("no marketplace is configured: add an [aws] or [azure] section");
    }
    Ok(providers)
}

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
    let store = open_store(&config).await?;
    if config.database.migrate_on_start {
        store.migrate().await.context("migration failed")?;
    } else {
        let pending = store.pending_migrations().await?;
        anyhow::ensure!(
            pending.is_empty(),
            "the database is missing {} migration(s); run `marketlink migrate`",
            pending.len()
        );
    }
    if config.server.metrics {
        // Before the workers start, so their first marketplace calls are counted.
        marketlink_web::metrics::install();
    }
    let clock: Arc<dyn marketlink_core::Clock> = Arc::new(SystemClock);
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            providers,
            clock.clone(),
            Arc::new(config.catalog.clone()),
            config.changes.clone(),
        )
        .with_metering(config.metering.settings())
        .with_webhooks(config.webhooks.clone()),
    );
    // The entitlement API answers from memory: load it before serving.
    let loaded = engine
        .entitlements
        .sync(&store)
        .await
        .context("cannot load subscriptions into the entitlement index")?;
    tracing::info!(subscriptions = loaded, "entitlement index loaded");
    let workers = worker::spawn(
        engine.clone(),
        WorkerSettings {
            reconcile_interval: config.reconcile.interval(),
            reconcile: config.reconcile.settings(false),
            ..WorkerSettings::default()
        },
        shutdown.clone(),
    );
    let state = AppState::new(App {
        store: store.clone(),
        clock,
        engine,
        keys: Default::default(),
        settings: WebSettings {
            session_key: match &config.server.session_secret {
                // SHA-512 spreads any long secret over exactly the 64 bytes a Key takes.
                Some(secret) => Key::from(&sha2::Sha512::digest(secret.expose().as_bytes())[..]),
                None => {
                    tracing::warn!(
                        "server.session_secret is not set: sessions end when the process restarts, and replicas cannot share them"
                    );
                    Key::generate()
                }
            },
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
            },
        },
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
        Duration::from_secs(config.server.shutdown_grace_secs),
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

fn spawn_signal_watch() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    shutdown
}

pub async fn demo(
    mut config: Config,
    data_dir: PathBuf,
    aws_bind: std::net::SocketAddr,
    azure_bind: std::net::SocketAddr,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    config.database.url = format!("sqlite:{}", data_dir.join("demo.db").display());
    config.database.migrate_on_start = true;
    let public_url = config.server.public_url.trim_end_matches('/').to_owned();
    let shutdown = spawn_signal_watch();
    let clock: Arc<dyn marketlink_core::Clock> = Arc::new(SystemClock);
    let vendor = sandbox::VendorUrls::for_public_url(&public_url);
    let aws = sandbox::start_aws(
        aws_bind,
        sandbox::aws_scenario(None)?,
        &vendor,
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let azure =
        sandbox::start_azure(azure_bind, sandbox::azure_scenario(None)?, &vendor, clock).await?;
    config.azure = Some(sandbox::azure_provider_config(&azure, &public_url));
    let aws_url = aws.base_url.clone();
    let azure_buyer = azure.buyer_page_url();
    let azure_url = azure.base_url.clone();
    let providers = providers(&config, Arc::new(SystemClock)).await?;
    let result = serve_until(config, providers, shutdown.clone(), move |address| {
        println!();
        println!(
            "marketlink demo is running (database: {}/demo.db)",
            data_dir.display()
        );
        println!("  service:        {public_url}  (listening on {address})");
        println!("  health:         {public_url}/healthz   readiness: {public_url}/readyz");
        println!("  AWS sandbox:    {aws_url}");
        println!("    buy as an AWS buyer:   {aws_url}/aws/buyer");
        println!("    agreements & actions:  {aws_url}/aws/buyer/agreements");
        println!("    every API call:        {aws_url}/aws/calls");
        println!(
            "  Microsoft sandbox: {azure_url}  (TLS with its own CA: {azure_url}/sandbox/ca.pem)"
        );
        println!("    buy as an Azure buyer: {azure_buyer}");
        println!("Press Ctrl-C to stop.");
    })
    .await;
    shutdown.cancel();
    let _ = aws.task.await;
    azure.shutdown().await;
    result
}

/// Arguments of `marketlink sandbox`.
pub struct SandboxArgs {
    pub aws_bind: std::net::SocketAddr,
    pub aws_scenario: Option<PathBuf>,
    pub azure_bind: std::net::SocketAddr,
    pub azure_scenario: Option<PathBuf>,
    pub vendor_url: String,
}

pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let shutdown = spawn_signal_watch();
    let vendor = sandbox::VendorUrls::for_public_url(&args.vendor_url);
    let clock: Arc<dyn marketlink_core::Clock> = Arc::new(SystemClock);
    let aws = sandbox::start_aws(
        args.aws_bind,
        sandbox::aws_scenario(args.aws_scenario.as_deref())?,
        &vendor,
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let azure = sandbox::start_azure(
        args.azure_bind,
        sandbox::azure_scenario(args.azure_scenario.as_deref())?,
        &vendor,
        clock,
    )
    .await?;
    println!("AWS Marketplace sandbox on {}", aws.base_url);
    println!("  buyer page:  {}/aws/buyer", aws.base_url);
    println!("  call log:    {}/aws/calls", aws.base_url);
    println!("  credentials: access key AKIASANDBOX, secret sandbox-secret, region us-east-1");
    println!("Microsoft marketplace sandbox on {}", azure.base_url);
    println!("  buyer page:  {}", azure.buyer_page_url());
    println!(
        "  CA certificate to trust: {}/sandbox/ca.pem",
        azure.base_url
    );
    println!("Press Ctrl-C to stop.");
    shutdown.cancelled().await;
    let _ = aws.task.await;
    azure.shutdown().await;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once.
    Create {
        /// What the key is for, e.g. "billing service".
        #[arg(long)]
        name: String,
        /// usage:write, entitlements:read or admin; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Limit the key to one tenant's data.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its prefix or id; it stops working within seconds.
    Revoke { key: String },
}

pub async fn api_key(config: Config, action: ApiKeyCommand) -> anyhow::Result<()> {
    use marketlink_core::Scope;
    use marketlink_store::AuditEntry;

    let store = open_store(&config).await?;
    store.migrate().await.context("migration failed")?;
    let now = SystemClock.now();
    match action {
        ApiKeyCommand::Create {
            name,
            scopes,
            tenant,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!(e))?;
            let tenant = match tenant {
                Some(raw) => {
                    let id: marketlink_core::TenantId = raw
                        .parse()
                        .map_err(|_| anyhow::anyhow!("`{raw}` is not a tenant id"))?;
                    store.get_tenant(id).await.context("no such tenant")?;
                    Some(id)
                }
                None => None,
            };
            let (key, plaintext, hash) =
                marketlink_web::api_auth::new_key(&name, scopes, tenant, now);
            store.create_api_key(&key, &hash).await?;
            store
                .audit(&AuditEntry::new(
                    "cli",
                    "api_key.create",
                    Some(key.prefix.clone()),
                    serde_json::json!({ "name": key.name, "scopes": key.scopes, "tenant_id": key.tenant_id }),
                    now,
                ))
                .await?;
            println!("{plaintext}");
            eprintln!(
                "Store this key now: it is not shown again. Prefix {}.",
                key.prefix
            );
        }
        ApiKeyCommand::List => {
            for key in store.list_api_keys().await? {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{}  {:<24} {:<40} {}{}",
                    key.prefix,
                    key.name,
                    scopes.join(","),
                    key.tenant_id
                        .map(|t| format!("tenant {t}"))
                        .unwrap_or_else(|| "all tenants".into()),
                    if key.revoked_at.is_some() {
                        "  REVOKED"
                    } else {
                        ""
                    }
                );
            }
        }
        ApiKeyCommand::Revoke { key } => {
            let revoked = store.revoke_api_key(&key, now).await?;
            store
                .audit(&AuditEntry::new(
                    "cli",
                    "api_key.revoke",
                    Some(revoked.prefix.clone()),
                    serde_json::json!({ "name": revoked.name }),
                    now,
                ))
                .await?;
            println!("revoked {} ({})", revoked.prefix, revoked.name);
        }
    }
    store.close().await;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Recent provisioning webhooks with their delivery state and last error.
    List {
        /// pending, done or dead.
        #[arg(long, default_value = "dead")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a delivered or given-up webhook again (same webhook-id).
    Replay { id: String },
}

pub async fn webhooks(config: Config, action: WebhookCommand) -> anyhow::Result<()> {
    use marketlink_store::QueueState;

    let store = open_store(&config).await?;
    store.migrate().await.context("migration failed")?;
    match action {
        WebhookCommand::List { state, limit } => {
            let state = match state.as_str() {
                "pending" => QueueState::Pending,
                "done" => QueueState::Done,
                "dead" => QueueState::Dead,
                other => anyhow::bail!("unknown state `{other}` (use pending, done or dead)"),
            };
            for job in store.outbox_list(state, limit).await? {
                if job.kind != marketlink_engine::webhooks::WEBHOOK_JOB {
                    continue;
                }
                println!(
                    "{}  {:<36} attempts {:<3} {}",
                    job.id,
                    job.payload["type"].as_str().unwrap_or("?"),
                    job.attempts,
                    job.last_error.as_deref().unwrap_or("")
                );
            }
        }
        WebhookCommand::Replay { id } => {
            let id: uuid::Uuid = id
                .parse()
                .map_err(|_| anyhow::anyhow!("`{id}` is not a webhook id"))?;
            store.outbox_replay(id, SystemClock.now()).await?;
            store
                .audit(&marketlink_store::AuditEntry::new(
                    "cli",
                    "webhook.replay",
                    Some(id.to_string()),
                    serde_json::json!({}),
                    SystemClock.now(),
                ))
                .await?;
            println!("webhook {id} queued again; a running server sends it within a second");
        }
    }
    store.close().await;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Read a password on standard input and print its Argon2id hash for `[admin] users`.
    HashPassword,
}

pub async fn admin(action: AdminCommand) -> anyhow::Result<()> {
    match action {
        AdminCommand::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            if let Err(message) = marketlink_web::password::check_strength(&password) {
                anyhow::bail!(message);
            }
            println!("{}", marketlink_web::password::hash(password).await?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(format, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("http", method = "GET", request_id = "req-42");
            let _request = request.enter();
            let inner = tracing::info_span!("apply", subscription = "s-1");
            let _inner = inner.enter();
            tracing::info!("deep inside the request");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn every_line_in_a_request_carries_its_request_id() {
        let json = lines_logged(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(line["fields"]["message"], "deep inside the request");
        assert_eq!(line["spans"][0]["request_id"], "req-42", "{json}");
        assert_eq!(line["span"]["subscription"], "s-1");
        // Without the terminal colour codes around field names.
        let mut text = String::new();
        let mut in_escape = false;
        for c in lines_logged(LogFormat::Pretty).chars() {
            match (in_escape, c) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, c) => text.push(c),
                (true, _) => {}
            }
        }
        assert!(text.contains("request_id=\"req-42\""), "{text}");
    }
}
