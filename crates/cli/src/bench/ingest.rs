//! `marketlink bench ingest` (ADR 0005, ADR 0010): usage ingest through the engine, the path
//! `POST /api/v1/usage` takes after parsing, against plain sqlx writing the same rows in the
//! same run. One client sends batch after batch, then four at once; each against a raw insert
//! with as many clients. Goals: ≥ 100k events/s, and ≥ 50 % of the raw insert with the
//! idempotency key's unique index (ADR 0010: no design keeping the key in the request reaches
//! 50 % of the insert without it, which is printed too).

mod raw;

use std::{sync::Arc, time::Instant};

use futures_util::{StreamExt, TryStreamExt};
use marketlink_core::{
    Clock, ExternalRef, Lifecycle, Marketplace, ProductId, Quantity, SubscriptionId, SystemClock,
};
use marketlink_engine::{Engine, Providers, metering::UsageInput};
use marketlink_store::{Store, StoreOptions};
use time::Duration;

use super::{
    Goal,
    databases::{self, Backend, Databases},
    seed::PRODUCT_CODE,
};
use crate::config::{Config, demo_base};

/// Events per call, as a product batches them.
const BATCH: usize = 1_000;
/// The concurrent run's clients.
const CLIENTS: usize = 4;
/// Subscriptions the events are spread over.
const SUBSCRIPTIONS: usize = 100;

/// The sizes of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestRun {
    /// Events written by each run (one client, then four at once), in batches of 1,000.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    #[command(flatten)]
    pub databases: Databases,
}

pub(super) async fn ingest(run: IngestRun) -> anyhow::Result<()> {
    anyhow::ensure!(run.events > 0, "ingest at least one event");
    for backend in run.databases.backends() {
        let database = run.databases.open(backend, "ingest").await?;
        let goals = on(backend, &database.url, run.events).await;
        database.remove().await?;
        for goal in goals? {
            goal.print();
        }
    }
    Ok(())
}

/// Both runs on the empty database at `url`; their goals.
async fn on(backend: Backend, url: &str, n: usize) -> anyhow::Result<Vec<Goal>> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let mut subs = Vec::with_capacity(SUBSCRIPTIONS);
    for c in 0..SUBSCRIPTIONS {
        subs.push(active_subscription(&store, &format!("bench-{c}")).await?);
    }
    let engine = engine(store.clone())?;
    let mut goals = Vec::new();
    // The keys of ADR 0005's and 0010's runs, so the index work is the same as in their
    // figures. `evt-%` counts the concurrent run's keys too, which are written after it.
    for (clients, prefix) in [(1, "evt"), (CLIENTS, "evt-concurrent")] {
        let inputs = events(&subs, n, prefix);
        let started = Instant::now();
        let accepted = futures_util::stream::iter(inputs.chunks(BATCH))
            .map(|chunk| engine.ingest_usage(chunk, None))
            .buffer_unordered(clients)
            .try_fold(0, |sum, outcome| async move { Ok(sum + outcome.accepted) })
            .await?;
        let ours = n as f64 / started.elapsed().as_secs_f64();
        // Every accepted event is in the ledger, once.
        let stored = databases::stored_events(url, prefix).await?;
        anyhow::ensure!(
            accepted == n && stored == n as u64,
            "{accepted} of {n} events accepted, {stored} stored"
        );
        let raw_rate = raw::raw_insert(url, &inputs, BATCH, false, clients).await?;
        let keyed_rate = raw::raw_insert(url, &inputs, BATCH, true, clients).await?;
        let backend = backend.as_str();
        println!(
            "ingest {backend}, {clients} client(s): {n} events in batches of {BATCH}: {ours:.0} events/s; raw sqlx insert {raw_rate:.0} rows/s; ratio {:.0}% (raw with the idempotency key's unique index: {keyed_rate:.0} rows/s, ratio {:.0}%)",
            100.0 * ours / raw_rate,
            100.0 * ours / keyed_rate
        );
        let name = format!("ingest {backend}, {clients} client(s)");
        goals.push(Goal::at_least(&name, ours, 100_000.0, "events/s"));
        goals.push(Goal::at_least(
            format!("{name}, share of raw keyed insert"),
            100.0 * ours / keyed_rate,
            50.0,
            "%",
        ));
    }
    // The engine's ingest writer holds connections of its own until it is dropped.
    drop(engine);
    store.close().await;
    Ok(goals)
}

/// The engine over `store` with the demo catalog (its "analytics" product meters
/// `api_calls`) and no marketplace: ingest calls none.
fn engine(store: Store) -> anyhow::Result<Engine> {
    let config = Config::load_over(Some(&demo_base("127.0.0.1:9".parse()?)), None)?;
    Ok(Engine::new(
        store,
        Providers::new(),
        Arc::new(SystemClock),
        Arc::new(config.catalog.clone()),
        config.changes.clone(),
    )
    .with_metering(config.metering.settings()))
}

/// An active AWS subscription to the demo's "analytics" product for `customer`.
async fn active_subscription(store: &Store, customer: &str) -> anyhow::Result<SubscriptionId> {
    let mut sub = marketlink_core::Subscription::pending(
        ExternalRef {
            marketplace: Marketplace::AWS,
            external_id: ExternalRef::aws_classic_id(customer, PRODUCT_CODE),
            product_code: PRODUCT_CODE.into(),
            customer_id: customer.into(),
            customer_account_id: None,
            license_arn: None,
        },
        SystemClock.now(),
    );
    sub.product_id = Some(ProductId::new("analytics"));
    let sub = store.upsert_subscription(&sub).await?;
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, SystemClock.now())
        .await?;
    Ok(sub.id)
}

/// `n` events over `subs`, spread over the last ten hours, each with its own idempotency key.
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
