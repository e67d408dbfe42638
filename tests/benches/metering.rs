//! Metering benchmarks (ADR 0005). `cargo bench -p marketlink-e2e --bench metering [-- WHICH]`
//! with WHICH among `ingest`, `api`, `flush` (all by default). PostgreSQL is taken from
//! `MARKETLINK_TEST_POSTGRES_URL` (default the local test server). Ingest runs one client, then
//! four at once, each against plain sqlx. Flush settings: `BENCH_FLUSH_ROWS` (default
//! 1,000,000), `BENCH_FLUSH_BACKEND` (`sqlite`, `postgres` or `sqlite,postgres`, the default),
//! `BENCH_FLUSH_CONCURRENCY` (calls in flight, default 64), `BENCH_CHECKPOINT_MS` (SQLite
//! checkpoint interval), `BENCH_FLUSH_RESEND_FLOOR=1` (also time the floor as resends); after
//! the flush the same records go through the AWS SDK to the sandbox again with no database
//! ("wire floor"), and the goal is the ratio of the two times (metering/flush.rs).
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
};
use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, ProductId, Quantity, Subscription, SubscriptionId,
    SystemClock,
};
use marketlink_engine::{Engine, metering::UsageInput};
use marketlink_store::{Store, StoreOptions};
use raw::raw_insert;
use time::Duration;

#[path = "metering/api.rs"]
mod api;
#[path = "metering/flush.rs"]
mod flush;
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
            flush::bench_flush(&dir).await;
        }
    });
}
