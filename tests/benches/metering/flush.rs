//! The flush benchmark (issue 22): hourly rows flushed to the AWS sandbox, against the "wire
//! floor" — the same records through the AWS SDK to the sandbox with no database — measured in
//! the same run, on each backend. The goal is the ratio of the two times: at most 1.5.

use std::{
    collections::HashMap,
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
    Clock, Marketplace, MarketplaceProvider, Quantity, Subscription, SubscriptionId, SystemClock,
    UsageRecord,
};
use marketlink_engine::metering::{UsageInput, hour_floor};
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use time::Duration;

use super::{CLASSIC, active_subscription, engine, env_or, open};

/// Closed hours per buyer.
const HOURS_PER_SUB: usize = 20;

/// The flush on each backend named by `BENCH_FLUSH_BACKEND` (`sqlite`, `postgres`, or both
/// separated by a comma; both by default).
pub async fn bench_flush(dir: &tempfile::TempDir) {
    let rows = env_or("BENCH_FLUSH_ROWS", 1_000_000) as usize;
    let backends =
        std::env::var("BENCH_FLUSH_BACKEND").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        flush_on(backend, rows, dir).await;
    }
}

async fn flush_on(backend: &str, rows: usize, dir: &tempfile::TempDir) {
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
    let (store, url) = open(backend, dir).await;
    let providers = run::providers(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    let aws_provider = providers.get(&Marketplace::AWS).unwrap().clone();
    let mut engine_ = engine(store.clone(), &config, providers);
    let subscriptions = buyers(&aws.sandbox, &store, rows.div_ceil(HOURS_PER_SUB)).await;
    let inputs = usage(&subscriptions, rows);
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
    assert_eq!(run.delivered, rows + run.zero_created as usize);
    assert_eq!(aws.sandbox.metered_records().len(), run.delivered);
    let records = records_of(&subscriptions, &inputs);
    let concurrency = config.metering.concurrency;
    if env_or("BENCH_FLUSH_RESEND_FLOOR", 0) == 1 {
        // For comparison: the sandbox finds every record in its ledger (a resend).
        wire_floor(&aws_provider, &records, concurrency, "resent").await;
    }
    // The sandbox forgets what the flush delivered, so the floor's records cost it what the
    // flush's did: each is stored, not just found.
    aws.sandbox.forget_metered_records();
    let floor = wire_floor(&aws_provider, &records, concurrency, "first delivery").await;
    assert_eq!(aws.sandbox.metered_records().len(), records.len());
    report(backend, rows, elapsed, floor);
    shutdown.cancel();
    store.close().await;
    if backend == "postgres" {
        marketlink_e2e::drop_postgres_database(&url).await;
    }
}

/// The goals: ADR 0005's 1M rows in < 10 s (as a rate), and issue 22's flush within 1.5× the
/// wire floor measured in the same run.
fn report(backend: &str, rows: usize, flush: StdDuration, floor: StdDuration) {
    let ratio = flush.as_secs_f64() / floor.as_secs_f64();
    println!(
        "flush/wire floor ({backend}): {ratio:.2} ({:.1} µs per row over the floor)",
        (flush.as_secs_f64() - floor.as_secs_f64()) * 1e6 / rows as f64
    );
    Goal::at_least(
        format!("flush {backend} ({rows} rows)"),
        rows as f64 / flush.as_secs_f64(),
        100_000.0,
        "rows/s",
    )
    .print();
    Goal::at_most(
        format!("flush/wire floor ({} rows, {backend})", count(rows)),
        ratio,
        1.5,
        "×",
    )
    .print();
}

/// `1M`, `300k`, `2000`.
fn count(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// `n` buyers subscribed in the sandbox and active in the store.
async fn buyers(
    sandbox: &marketlink_sandbox::aws::AwsSandbox,
    store: &marketlink_store::Store,
    n: usize,
) -> Vec<Subscription> {
    let mut subscriptions = Vec::with_capacity(n);
    for b in 0..n {
        let purchase = sandbox
            .purchase(
                CLASSIC,
                OfferKind::Subscription,
                &format!("{:012}", 100_000_000_000u64 + b as u64),
            )
            .unwrap();
        sandbox
            .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
        subscriptions.push(active_subscription(store, &purchase.customer_identifier).await);
    }
    subscriptions
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
                timestamp: hour_floor(now) - Duration::hours(2 + h as i64),
                idempotency_key: None,
                allocations: vec![],
            });
        }
    }
    inputs
}

/// The records the flush sent: one per hourly total.
fn records_of(subscriptions: &[Subscription], inputs: &[UsageInput]) -> Vec<UsageRecord> {
    let by_id: HashMap<SubscriptionId, &Subscription> =
        subscriptions.iter().map(|s| (s.id, s)).collect();
    inputs
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
        .collect()
}

/// The marketplace side of a flush alone: the same records, in batches of 25 with the flush's
/// concurrency, through the AWS provider (the real SDK) to the sandbox, with no database.
async fn wire_floor(
    provider: &Arc<dyn MarketplaceProvider>,
    records: &[UsageRecord],
    concurrency: usize,
    kind: &str,
) -> StdDuration {
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
        "flush wire floor ({kind}): the same {} records through the AWS SDK to the sandbox, no database: {elapsed:.2?} ({:.0} records/s; {})",
        records.len(),
        records.len() as f64 / elapsed.as_secs_f64(),
        cpu_used(cpu, elapsed)
    );
    elapsed
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
