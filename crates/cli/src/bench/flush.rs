//! `marketlink bench flush` (issue 22): hourly usage rows flushed to the AWS sandbox, against the
//! "wire floor" — the same records through the AWS SDK to the sandbox with no database —
//! measured in the same run. The goal is the ratio of the two times: at most 1.5. It runs on
//! SQLite and PostgreSQL in turn, each on a fresh database (`--backend`, `--database`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures_util::StreamExt;
use marketlink_core::{
    Clock, Marketplace, MarketplaceProvider, Quantity, Subscription, SubscriptionId, SystemClock,
    UsageRecord,
};
use marketlink_engine::{
    Engine,
    metering::{UsageInput, hour_floor},
};
use marketlink_sandbox::aws::AwsSandboxConfig;
use marketlink_store::{Store, StoreOptions};

use super::{
    Goal,
    databases::{Backend, Databases},
};
use crate::{
    config::{Config, demo_base},
    run, sandbox,
};

/// Buyer accounts are numbered from here (12 digits).
const FIRST_ACCOUNT: u64 = 100_000_000_000;
/// Closed hours per buyer.
const HOURS_PER_SUB: usize = 20;

/// `marketlink bench flush`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FlushRun {
    /// Hourly rows to flush (one sandbox buyer per 20).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// SQLite's checkpoint interval in milliseconds, when not the store's default.
    #[arg(long)]
    pub checkpoint_ms: Option<u64>,
    /// Also time the floor as resends.
    #[arg(long)]
    pub resend_floor: bool,
    #[command(flatten)]
    pub databases: Databases,
}

/// The flush on each backend in turn; prints the goals.
pub(super) async fn each_backend(args: FlushRun) -> anyhow::Result<()> {
    let settings = FlushBench {
        rows: args.rows,
        concurrency: args.concurrency,
        checkpoint: args.checkpoint_ms.map(Duration::from_millis),
        resend_floor: args.resend_floor,
    };
    for backend in args.databases.backends() {
        let database = args.databases.open(backend, "flush").await?;
        let goals = flush(&settings, backend, &database.url).await;
        database.remove().await?;
        for goal in goals? {
            goal.print();
        }
    }
    Ok(())
}

/// How the flush benchmark runs.
#[derive(Debug, Clone)]
pub struct FlushBench {
    /// Hourly rows to flush (one sandbox buyer per 20).
    pub rows: usize,
    /// Calls in flight (`[metering] concurrency`).
    pub concurrency: usize,
    /// SQLite's checkpoint interval, when not the store's default.
    pub checkpoint: Option<Duration>,
    /// Also time the floor as resends (the sandbox finds every record in its ledger).
    pub resend_floor: bool,
}

/// Flushes `settings.rows` hourly rows from the empty store at `url` (`backend` names it in
/// the output) and times the wire floor after it; returns the goals.
pub async fn flush(
    settings: &FlushBench,
    backend: Backend,
    url: &str,
) -> anyhow::Result<Vec<Goal>> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let aws = sandbox::start_aws(
        "127.0.0.1:0".parse()?,
        AwsSandboxConfig {
            subscribe_delay_ms: 3_600_000,
            ..AwsSandboxConfig::default()
        },
        &sandbox::VendorUrls::for_public_url("http://127.0.0.1:9"),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await?;
    let result = flush_to(settings, backend.as_str(), url, &aws).await;
    shutdown.cancel();
    result
}

async fn flush_to(
    settings: &FlushBench,
    backend: &str,
    url: &str,
    aws: &sandbox::RunningAws,
) -> anyhow::Result<Vec<Goal>> {
    let rows = settings.rows;
    let addr = aws.base_url.trim_start_matches("http://").parse()?;
    let mut config = Config::load_over(Some(&demo_base(addr)), None)?;
    config.azure = None;
    config.metering.concurrency = settings.concurrency;
    config.metering.settle_secs = 0;
    let mut options = StoreOptions::default();
    if let Some(interval) = settings.checkpoint {
        options.checkpoint_interval = interval;
    }
    let store = Store::connect(url, &options).await?;
    store.migrate().await?;
    let providers = run::providers(&config, Arc::new(SystemClock)).await?;
    let provider = providers
        .get(&Marketplace::AWS)
        .cloned()
        .context("no AWS provider")?;
    let mut engine = Engine::new(
        store.clone(),
        providers,
        Arc::new(SystemClock),
        Arc::new(config.catalog.clone()),
        config.changes.clone(),
    )
    .with_metering(config.metering.settings());
    let subscriptions = super::seed::aws_subscribed(
        &aws.sandbox,
        &store,
        FIRST_ACCOUNT,
        rows.div_ceil(HOURS_PER_SUB),
        None,
        SystemClock.now(),
    )
    .await?
    .subscriptions;
    let inputs = usage(&subscriptions, rows);
    for chunk in inputs.chunks(5_000) {
        engine.ingest_usage(chunk, None).await?;
    }
    // Folded before the flush is timed (ADR 0010: in production each claim folds what arrived
    // since the last one, so a backlog is folded as it builds up).
    let started = Instant::now();
    let folded = store.usage_fold().await?;
    println!(
        "fold ({backend}): {rows} events into {folded} hourly rows in {:.2?}",
        started.elapsed()
    );
    analyse_without_autovacuum(backend, url).await?;
    engine.metering.claim_limit = 5_000;
    let flushed = timed_flush(&engine, backend, rows).await?;
    anyhow::ensure!(
        aws.sandbox.metered_records().len() == rows,
        "the sandbox holds {} records, not {rows}",
        aws.sandbox.metered_records().len()
    );
    store.close().await;
    let records = records_of(&subscriptions, &inputs)?;
    if settings.resend_floor {
        wire_floor(&provider, &records, settings.concurrency, "resent").await?;
    }
    // The sandbox forgets what the flush delivered, so the floor's records cost it what the
    // flush's did: each is stored, not just found.
    aws.sandbox.forget_metered_records();
    let floor = wire_floor(&provider, &records, settings.concurrency, "first delivery").await?;
    Ok(goals(backend, rows, flushed, floor))
}

/// A database in service has its statistics kept by autovacuum (on by default), which analyses
/// a table within a minute of a bulk write like the fold's. A server with `autovacuum = off`
/// (the project's test server) leaves the planner guessing for every statement of the flush,
/// and its guesses read every open hour for each claim (docs/performance.md, "Usage flush"):
/// a configuration no operator runs. On such a server this analyses the database once the
/// fold is done, untimed, and says so (as `marketlink bench day` stands in for autovacuum).
async fn analyse_without_autovacuum(backend: &str, url: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    if !url.starts_with("postgres") {
        return Ok(());
    }
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let setting: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&mut conn)
        .await?;
    if setting != "on" {
        let started = Instant::now();
        conn.execute("ANALYZE").await?;
        println!(
            "analyze ({backend}): autovacuum is off on this server; ANALYZE after the fold, as \
             autovacuum would, in {:.2?} (not timed)",
            started.elapsed()
        );
    }
    conn.close().await?;
    Ok(())
}

async fn timed_flush(engine: &Engine, backend: &str, rows: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let cpu = cpu_time();
    let run = engine.flush_usage().await?;
    let elapsed = started.elapsed();
    println!(
        "flush ({backend}): {rows} hourly rows to the AWS sandbox over loopback HTTP in {elapsed:.2?} ({:.0} rows/s, {} calls, {} delivered, {} zero rows created; {})",
        rows as f64 / elapsed.as_secs_f64(),
        run.calls,
        run.delivered,
        run.zero_created,
        cpu_used(cpu, elapsed)
    );
    anyhow::ensure!(
        run.delivered == rows + run.zero_created as usize,
        "{} of {rows} rows delivered",
        run.delivered
    );
    Ok(elapsed)
}

/// ADR 0005's 1M rows in < 10 s (as a rate), and issue 22's flush within 1.5× the wire
/// floor measured in the same run.
fn goals(backend: &str, rows: usize, flush: Duration, floor: Duration) -> Vec<Goal> {
    let ratio = flush.as_secs_f64() / floor.as_secs_f64();
    println!(
        "flush/wire floor ({backend}): {ratio:.2} ({:.1} µs per row over the floor)",
        (flush.as_secs_f64() - floor.as_secs_f64()) * 1e6 / rows as f64
    );
    vec![
        Goal::at_least(
            format!("flush {backend} ({rows} rows)"),
            rows as f64 / flush.as_secs_f64(),
            100_000.0,
            "rows/s",
        ),
        Goal::at_most(
            format!("flush/wire floor ({} rows, {backend})", count(rows)),
            ratio,
            1.5,
            "×",
        ),
    ]
}

/// `1M`, `300k`, `2500`.
fn count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Usage arrives hour by hour, as it does in production (a backlog builds up while the flusher
/// is down): each hour's totals are written together.
fn usage(subscriptions: &[Subscription], rows: usize) -> Vec<UsageInput> {
    let now = SystemClock.now();
    let mut inputs = Vec::with_capacity(rows);
    for h in (0..HOURS_PER_SUB).rev() {
        for sub in subscriptions {
            if inputs.len() == rows {
                return inputs;
            }
            inputs.push(UsageInput {
                subscription_id: Some(sub.id),
                tenant_id: None,
                product: None,
                dimension: "api_calls".into(),
                quantity: Quantity::from_units(1 + h as u32),
                timestamp: hour_floor(now) - time::Duration::hours(2 + h as i64),
                idempotency_key: None,
                allocations: vec![],
            });
        }
    }
    inputs
}

/// The records the flush sent: one per hourly total.
fn records_of(
    subscriptions: &[Subscription],
    inputs: &[UsageInput],
) -> anyhow::Result<Vec<UsageRecord>> {
    let by_id: HashMap<SubscriptionId, &Subscription> =
        subscriptions.iter().map(|s| (s.id, s)).collect();
    inputs
        .iter()
        .map(|e| {
            let sub = e
                .subscription_id
                .and_then(|id| by_id.get(&id))
                .context("usage of an unknown subscription")?;
            Ok(UsageRecord {
                id: uuid::Uuid::now_v7(),
                subscription: sub.external.clone(),
                plan_id: None,
                dimension: e.dimension.clone(),
                hour: hour_floor(e.timestamp),
                quantity: e.quantity,
                allocations: vec![],
            })
        })
        .collect()
}

/// The marketplace side of a flush alone: the same records, in batches of 25 with the flush's
/// concurrency, through the AWS provider (the real SDK) to the sandbox, with no database.
async fn wire_floor(
    provider: &Arc<dyn MarketplaceProvider>,
    records: &[UsageRecord],
    concurrency: usize,
    kind: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let cpu = cpu_time();
    let outcomes: Vec<usize> = futures_util::stream::iter(records.chunks(25))
        .map(|batch| async move { provider.report_usage(batch).await.map(|o| o.len()) })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let elapsed = started.elapsed();
    let accepted: usize = outcomes.iter().sum();
    anyhow::ensure!(accepted == records.len(), "{accepted} outcomes");
    println!(
        "flush wire floor ({kind}): the same {} records through the AWS SDK to the sandbox, no database: {elapsed:.2?} ({:.0} records/s; {})",
        records.len(),
        records.len() as f64 / elapsed.as_secs_f64(),
        cpu_used(cpu, elapsed)
    );
    Ok(elapsed)
}

/// CPU time this process has used so far. SQLite, the sandbox and the SDK all run in this
/// process, so it tells how many cores a step kept busy (PostgreSQL's server is not counted).
fn cpu_time() -> Duration {
    super::process::cpu_time("/proc/self/stat")
}

/// "CPU 12.3 s, 1.9 cores": the CPU used since `since` over `elapsed`.
fn cpu_used(since: Duration, elapsed: Duration) -> String {
    let cpu = cpu_time().saturating_sub(since);
    format!(
        "CPU {:.1} s, {:.2} cores",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / elapsed.as_secs_f64()
    )
}
