//! Metering benchmarks (ADR 0005). `cargo bench -p marketlink-e2e --bench metering [-- WHICH]`
//! with WHICH among `ingest`, `api`, `flush` (all by default). PostgreSQL is taken from
//! `MARKETLINK_TEST_POSTGRES_URL` (default the local test server). Ingest runs one client, then
//! four at once, each against plain sqlx. Flush settings: `BENCH_FLUSH_ROWS` (default
//! 1,000,000), `BENCH_FLUSH_BACKEND` (`sqlite` or `postgres`), `BENCH_FLUSH_CONCURRENCY` (calls
//! in flight, default 64), `BENCH_CHECKPOINT_MS` (SQLite checkpoint interval); after the flush
//! the same records go through the AWS SDK to the sandbox again with no database ("wire floor").
//! The usage is folded into hourly rows (ADR 0010) before the flush is timed, and the fold's
//! own time is printed. Sizes for a smoke run (`scripts/bench quick`): `BENCH_INGEST_EVENTS`
//! (default 200,000) and the usage API's (metering/api.rs: `BENCH_API_RATES`, default
//! `1000,5000`, and `BENCH_API_SECONDS`, default 10). Each goal is also printed as a
//! `report` line (`marketlink_cli::bench::Goal`), which `scripts/bench` gathers into one table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};

use futures_util::StreamExt;
use marketlink_cli::{
    bench::Goal,
    config::{Config, demo_base},
    run, sandbox,
};
use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, ProductId, Quantity, Subscription, SubscriptionId,
    SystemClock, UsageRecord,
};
use marketlink_engine::{
    Engine,
    metering::{UsageInput, hour_floor},
};
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use marketlink_store::{Store, StoreOptions};
use raw::raw_insert;
use time::Duration;

#[path = "metering/api.rs"]
mod api;
#[path = "metering/raw.rs"]
mod raw;

const CLASSIC: &str = "mlsandboxclassic0000000001";
const KEY: &str = "bench-usage-key-0123456789";

/// `name` from the environment, else `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn open(backend: &str, dir: &tempfile::TempDir) -> (Store, String) {
    let url = if backend == "sqlite" {
        format!(
            "sqlite:{}",
            dir.path()
                .join(format!("bench-{}.db", uuid::Uuid::now_v7().simple()))
                .display()
        )
    } else {
        marketlink_e2e::fresh_postgres_database().await
    };
    let mut options = StoreOptions::default();
    if let Some(ms) = std::env::var("BENCH_CHECKPOINT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.checkpoint_interval = StdDuration::from_millis(ms);
    }
    let store = Store::connect(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    (store, url)
}

fn config() -> Config {
    let mut config =
        Config::load_over(Some(&demo_base("127.0.0.1:9".parse().unwrap())), None).unwrap();
    config.azure = None;
    config.metering.api_keys = vec![serde_json::from_value(serde_json::json!(KEY)).unwrap()];
    config
}

fn engine(store: Store, config: &Config, providers: marketlink_engine::Providers) -> Engine {
    Engine::new(
        store,
        providers,
        Arc::new(SystemClock),
        Arc::new(config.catalog.clone()),
        config.changes.clone(),
    )
    .with_metering(config.metering.settings())
}

async fn active_subscription(store: &Store, customer: &str) -> Subscription {
    let mut sub = Subscription::pending(
        ExternalRef {
            marketplace: Marketplace::AWS,
            external_id: ExternalRef::aws_classic_id(customer, CLASSIC),
            product_code: CLASSIC.into(),
            customer_id: customer.into(),
            customer_account_id: None,
            license_arn: None,
        },
        SystemClock.now(),
    );
    sub.product_id = Some(ProductId::new("analytics"));
    let sub = store.upsert_subscription(&sub).await.unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, SystemClock.now())
        .await
        .unwrap();
    store.get_subscription(sub.id).await.unwrap()
}

fn events(subs: &[SubscriptionId], n: usize, key_prefix: &str) -> Vec<UsageInput> {
    let now = SystemClock.now();
    (0..n)
        .map(|i| UsageInput {
            subscription_id: Some(subs[i % subs.len()]),
            tenant_id: None,
            product: None,
            dimension: "api_calls".into(),
            quantity: Quantity::from_units(1 + (i % 7) as u32),
            timestamp: now - Duration::minutes((i % 600) as i64),
            idempotency_key: Some(format!("{key_prefix}-{i}")),
            allocations: vec![],
        })
        .collect()
}

async fn bench_ingest(dir: &tempfile::TempDir) {
    let n = env_or("BENCH_INGEST_EVENTS", 200_000) as usize;
    const BATCH: usize = 1_000;
    const CLIENTS: usize = 4;
    for backend in ["sqlite", "postgres"] {
        let (store, url) = open(backend, dir).await;
        let config = config();
        let subs: Vec<SubscriptionId> = {
            let mut v = Vec::new();
            for c in 0..100 {
                v.push(active_subscription(&store, &format!("bench-{c}")).await.id);
            }
            v
        };
        let engine = engine(store.clone(), &config, marketlink_engine::Providers::new());
        // One client sending batch after batch, then several at once (the API's group commit
        // puts batches that wait together into one transaction); each against plain sqlx
        // writing the same rows with as many clients (one connection on SQLite: one writer).
        for (clients, prefix) in [(1, "evt"), (CLIENTS, "evt-concurrent")] {
            let inputs = events(&subs, n, prefix);
            let started = Instant::now();
            futures_util::stream::iter(inputs.chunks(BATCH))
                .for_each_concurrent(clients, |chunk| {
                    let engine = &engine;
                    async move {
                        engine.ingest_usage(chunk, None).await.unwrap();
                    }
                })
                .await;
            let ours = n as f64 / started.elapsed().as_secs_f64();
            let raw_rate = raw_insert(&url, &inputs, BATCH, false, clients).await;
            let keyed_rate = raw_insert(&url, &inputs, BATCH, true, clients).await;
            println!(
                "ingest {backend}, {clients} client(s): {n} events in batches of {BATCH}: {ours:.0} events/s; raw sqlx insert {raw_rate:.0} rows/s; ratio {:.0}% (raw with the idempotency key's unique index: {keyed_rate:.0} rows/s, ratio {:.0}%)",
                100.0 * ours / raw_rate,
                100.0 * ours / keyed_rate
            );
            // ADR 0005: ≥ 100k events/s, and ≥ 50 % of the raw insert with the key's index
            // (ADR 0010: no design keeping the key reaches 50 % of the one without it).
            let name = format!("ingest {backend}, {clients} client(s)");
            Goal::at_least(&name, ours, 100_000.0, "events/s").print();
            Goal::at_least(
                format!("{name}, share of raw keyed insert"),
                100.0 * ours / keyed_rate,
                50.0,
                "%",
            )
            .print();
        }
        store.close().await;
        if backend == "postgres" {
            marketlink_e2e::drop_postgres_database(&url).await;
        }
    }
}

async fn bench_flush(dir: &tempfile::TempDir) {
    let rows = env_or("BENCH_FLUSH_ROWS", 1_000_000) as usize;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let aws = sandbox::start_aws(
        "127.0.0.1:0".parse().unwrap(),
        AwsSandboxConfig {
            subscribe_delay_ms: 3_600_000,
            ..AwsSandboxConfig::default()
        },
        &sandbox::VendorUrls::for_public_url("http://127.0.0.1:9"),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let addr = aws.base_url.trim_start_matches("http://").parse().unwrap();
    let mut config = Config::load_over(Some(&demo_base(addr)), None).unwrap();
    config.azure = None;
    config.metering.concurrency = env_or("BENCH_FLUSH_CONCURRENCY", 64) as usize;
    config.metering.settle_secs = 0;
    let backend = std::env::var("BENCH_FLUSH_BACKEND").unwrap_or_else(|_| "sqlite".into());
    let (store, url) = open(&backend, dir).await;
    // 20 closed hours per buyer.
    let hours_per_sub = 20;
    let buyers = rows.div_ceil(hours_per_sub);
    let now = SystemClock.now();
    let providers = run::providers(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    let aws_provider = providers.get(&Marketplace::AWS).unwrap().clone();
    let engine_ = engine(store.clone(), &config, providers);
    let mut subscriptions = Vec::with_capacity(buyers);
    for b in 0..buyers {
        let purchase = aws
            .sandbox
            .purchase(
                CLASSIC,
                OfferKind::Subscription,
                &format!("{:012}", 100_000_000_000u64 + b as u64),
            )
            .unwrap();
        aws.sandbox
            .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
        subscriptions.push(active_subscription(&store, &purchase.customer_identifier).await);
    }
    // Usage arrives hour by hour, as it does in production (a backlog builds up while the
    // flusher is down): each hour's totals are written together.
    let mut inputs = Vec::with_capacity(rows);
    'hours: for h in (0..hours_per_sub).rev() {
        for sub in &subscriptions {
            if inputs.len() == rows {
                break 'hours;
            }
            inputs.push(UsageInput {
                subscription_id: Some(sub.id),
                tenant_id: None,
                product: None,
                dimension: "api_calls".into(),
                quantity: Quantity::from_units(1 + h as u32),
                timestamp: hour_floor(now) - Duration::hours(2 + h as i64),
                idempotency_key: None,
                allocations: vec![],
            });
        }
    }
    for chunk in inputs.chunks(5_000) {
        engine_.ingest_usage(chunk, None).await.unwrap();
    }
    // The rows are aggregated before the flush is timed (ADR 0010: in production each claim
    // folds what arrived since the last one, so a backlog is folded as it builds up).
    let started = Instant::now();
    let folded = store.usage_fold().await.unwrap();
    println!(
        "fold ({backend}): {rows} events into {folded} hourly rows in {:.2?}",
        started.elapsed()
    );
    let mut engine_ = engine_;
    engine_.metering.claim_limit = 5_000;
    let started = Instant::now();
    let cpu = cpu_time();
    let run = engine_.flush_usage().await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "flush ({backend}): {rows} hourly rows to the AWS sandbox over loopback HTTP in {elapsed:.2?} ({:.0} rows/s, {} calls, {} delivered, {} zero rows created; {})",
        rows as f64 / elapsed.as_secs_f64(),
        run.calls,
        run.delivered,
        run.zero_created,
        cpu_used(cpu, elapsed)
    );
    // ADR 0005: 1M rows in < 10 s, a rate whatever the size.
    Goal::at_least(
        format!("flush {backend} ({rows} rows)"),
        rows as f64 / elapsed.as_secs_f64(),
        100_000.0,
        "rows/s",
    )
    .print();
    assert_eq!(run.delivered, rows + run.zero_created as usize);
    assert_eq!(aws.sandbox.metered_records().len(), run.delivered);
    wire_floor(
        aws_provider,
        &subscriptions,
        &inputs,
        config.metering.concurrency,
    )
    .await;
    shutdown.cancel();
    store.close().await;
    if backend == "postgres" {
        marketlink_e2e::drop_postgres_database(&url).await;
    }
}

/// The marketplace side of a flush alone: the same records, in batches of 25 with the flush's
/// concurrency, through the AWS provider (the real SDK) to the sandbox, with no database. They
/// were just delivered, so the sandbox answers from its de-duplication index, as it does for a
/// resend; its per-record work is the same lookup a first delivery makes before storing.
async fn wire_floor(
    provider: Arc<dyn marketlink_core::MarketplaceProvider>,
    subscriptions: &[Subscription],
    inputs: &[UsageInput],
    concurrency: usize,
) {
    let by_id: std::collections::HashMap<SubscriptionId, &Subscription> =
        subscriptions.iter().map(|s| (s.id, s)).collect();
    let records: Vec<UsageRecord> = inputs
        .iter()
        .map(|e| UsageRecord {
            id: uuid::Uuid::now_v7(),
            subscription: by_id[&e.subscription_id.unwrap()].external.clone(),
            plan_id: None,
            dimension: e.dimension.clone(),
            hour: hour_floor(e.timestamp),
            quantity: e.quantity,
            allocations: vec![],
        })
        .collect();
    let started = Instant::now();
    let cpu = cpu_time();
    let accepted: usize = futures_util::stream::iter(records.chunks(25))
        .map(|batch| {
            let provider = provider.clone();
            async move { provider.report_usage(batch).await.unwrap().len() }
        })
        .buffer_unordered(concurrency.max(1))
        .fold(0, |n, k| async move { n + k })
        .await;
    let elapsed = started.elapsed();
    assert_eq!(accepted, records.len());
    println!(
        "flush wire floor: the same {} records through the AWS SDK to the sandbox, no database: {elapsed:.2?} ({:.0} records/s; {})",
        records.len(),
        records.len() as f64 / elapsed.as_secs_f64(),
        cpu_used(cpu, elapsed)
    );
}

/// CPU time this process has used so far, all threads (user + system), from
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux's `USER_HZ`); zero elsewhere. SQLite,
/// the sandbox and the SDK all run in this process, so it tells how many cores a step kept
/// busy: a step needing more CPU seconds than cores × its goal cannot meet the goal here.
fn cpu_time() -> StdDuration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (in parentheses): utime and stime are the 12th and
            // 13th of them.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    StdDuration::from_millis(ticks * 10)
}

/// "CPU 12.3 s, 1.9 cores": the CPU used since `since` over `elapsed`.
fn cpu_used(since: StdDuration, elapsed: StdDuration) -> String {
    let cpu = cpu_time().saturating_sub(since);
    format!(
        "CPU {:.1} s, {:.2} cores",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / elapsed.as_secs_f64()
    )
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        if wants("ingest") {
            bench_ingest(&dir).await;
        }
        if wants("api") {
            api::bench_api(&dir).await;
        }
        if wants("flush") {
            bench_flush(&dir).await;
        }
    });
}
