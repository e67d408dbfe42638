//! `marketlink bench`: performance figures that can be compared run to run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use marketlink_core::{
    Catalog, Clock, ExternalRef, Listing, Marketplace, Plan, PlanId, Product, ProductId,
    Subscription, SubscriptionStatus, SystemClock, Tenant,
};
use marketlink_engine::entitlements::EntitlementIndex;
use marketlink_store::{Store, StoreOptions};

mod api;
mod child;
mod databases;
mod day;
mod flush;
mod http;
mod ingest;
pub mod load;
pub mod process;
pub mod report;
mod seed;
mod startup;
mod verify;

pub use report::Goal;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Entitlement checks against an index loaded from a store with many subscriptions.
    Entitlements {
        /// Subscriptions to load (two per tenant).
        #[arg(long, default_value_t = 1_000_000)]
        subscriptions: usize,
        /// Checks to time.
        #[arg(long, default_value_t = 200_000)]
        checks: usize,
        /// Database to fill (a fresh temporary SQLite file when unset). It must be empty.
        #[arg(long)]
        database: Option<String>,
    },
    /// Inbound message verification (SNS signatures, webhook JWTs) through the providers,
    /// against raw RSA verification with the same crate in the same run.
    Verify {
        /// Distinct signed messages of each kind.
        #[arg(long, default_value_t = 2_000)]
        messages: usize,
        /// Times every message is checked by each side (the median round counts).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// A day's usage at scale on PostgreSQL: `marketlink serve` as a child process, usage
    /// posted over HTTP and flushed to the AWS sandbox; its memory and backlog (issue 22).
    Day(day::DayArgs),
    /// Start-up over a store with many subscriptions: time to `/readyz` 200, to the first
    /// correct entitlement answer over HTTP, and to a warm index (issue 22).
    Startup {
        /// Subscriptions to seed (two per tenant).
        #[arg(long, default_value_t = 1_000_000)]
        subscriptions: usize,
        /// Database to fill (a fresh temporary SQLite file when unset). It must be empty:
        /// for PostgreSQL, `createdb` one first.
        #[arg(long)]
        database: Option<String>,
    },
    /// The entitlement check over HTTP under load, against `/healthz` on the same server:
    /// a closed loop for throughput, an open loop at a fixed rate for latency (issue 22).
    Http(http::HttpRun),
    /// Usage flush of many hourly rows to the AWS sandbox, against the same records through
    /// the AWS SDK with no database ("wire floor"), in the same run (issue 22).
    Flush(flush::FlushRun),
    /// The usage API (`POST /api/v1/usage`, one event) under an open loop at fixed rates,
    /// against a child `marketlink serve`; every 202 checked to be one stored event (issue 22).
    Api(api::ApiRun),
    /// Usage ingest through the engine in batches, one client then four, against a raw sqlx
    /// insert of the same rows in the same run (ADR 0005).
    Ingest(ingest::IngestRun),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Entitlements {
            subscriptions,
            checks,
            database,
        } => entitlements(subscriptions, checks, database).await,
        BenchCommand::Verify { messages, rounds } => {
            for goal in verify::verify(messages, rounds).await? {
                goal.print();
            }
            Ok(())
        }
        BenchCommand::Day(args) => day::day(args).await,
        BenchCommand::Startup {
            subscriptions,
            database,
        } => startup::startup(subscriptions, database).await,
        BenchCommand::Http(run) => http::http(run).await,
        BenchCommand::Flush(run) => flush::each_backend(run).await,
        BenchCommand::Api(run) => api::api(run).await,
        BenchCommand::Ingest(run) => ingest::ingest(run).await,
    }
}

fn catalog() -> Catalog {
    let plan = |id: &str, features: &[&str]| Plan {
        id: PlanId::new(id),
        name: None,
        features: features.iter().map(|f| f.to_string()).collect(),
        dimensions: vec![],
    };
    Catalog {
        products: ["analytics", "reports"]
            .iter()
            .enumerate()
            .map(|(i, id)| Product {
                id: ProductId::new(*id),
                name: id.to_string(),
                listings: vec![Listing {
                    marketplace: Marketplace::AWS,
                    product_code: format!("bench-product-{i}"),
                    listing_url: Some("https://marketplace.example".into()),
                }],
                plans: vec![
                    plan("basic", &["dashboards"]),
                    plan("pro", &["dashboards", "exports"]),
                ],
            })
            .collect(),
    }
}

/// Percentile of sorted durations.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn entitlements(
    subscriptions: usize,
    checks: usize,
    database: Option<String>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url =
        database.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let now = SystemClock.now();
    let Seeded {
        store,
        tenants,
        took: seeded,
        ..
    } = seeded(&url, subscriptions, now).await?;

    let index = Arc::new(EntitlementIndex::new(Arc::new(catalog())));
    let started = Instant::now();
    let loaded = index.sync(&store).await?;
    let load = started.elapsed();
    anyhow::ensure!(
        loaded == subscriptions,
        "loaded {loaded} of {subscriptions}"
    );

    let run = time_checks(&index, &tenants, checks, now);
    println!("entitlement check benchmark");
    println!("  store:            {}", marketlink_store::redact_url(&url));
    println!(
        "  subscriptions:    {subscriptions} ({} tenants)",
        tenants.len()
    );
    println!("  seed:             {seeded:.2?}");
    println!(
        "  index load:       {:.2?} ({:.0} subscriptions/s)",
        load,
        subscriptions as f64 / load.as_secs_f64()
    );
    run.print(checks, subscriptions);
    store.close().await;
    Ok(())
}

/// A migrated store holding the benchmarks' subscriptions (two per tenant).
struct Seeded {
    store: Store,
    tenants: Vec<Tenant>,
    rows: Vec<Subscription>,
    /// How long the bulk inserts took.
    took: Duration,
}

/// Migrates the store at `url` and fills it with `subscriptions` made at `now`.
async fn seeded(
    url: &str,
    subscriptions: usize,
    now: time::OffsetDateTime,
) -> anyhow::Result<Seeded> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let tenants = tenants(subscriptions.div_ceil(2), now)?;
    let rows = subscriptions_of(&tenants, subscriptions, now);
    let started = Instant::now();
    store
        .insert_tenants_bulk(&tenants)
        .await
        .context("seeding tenants")?;
    store
        .insert_subscriptions_bulk(&rows)
        .await
        .context("seeding subscriptions")?;
    Ok(Seeded {
        store,
        tenants,
        rows,
        took: started.elapsed(),
    })
}

fn tenants(count: usize, now: time::OffsetDateTime) -> anyhow::Result<Vec<Tenant>> {
    let tenants = (0..count)
        .map(|i| {
            Tenant::new(
                &format!("Tenant {i}"),
                None,
                &format!("t{i}@bench.example"),
                now,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(tenants)
}

/// `count` subscriptions, two per tenant (one per product), in a mix of plans and statuses.
fn subscriptions_of(
    tenants: &[Tenant],
    count: usize,
    now: time::OffsetDateTime,
) -> Vec<Subscription> {
    (0..count)
        .map(|i| {
            let tenant = &tenants[i / 2];
            let product = i % 2;
            let mut s = Subscription::pending(
                ExternalRef {
                    marketplace: Marketplace::AWS,
                    external_id: format!("cust-{}/bench-product-{product}", i / 2),
                    product_code: format!("bench-product-{product}"),
                    customer_id: format!("cust-{}", i / 2),
                    customer_account_id: None,
                    license_arn: None,
                },
                now,
            );
            s.tenant_id = Some(tenant.id);
            s.product_id = Some(ProductId::new(if product == 0 {
                "analytics"
            } else {
                "reports"
            }));
            s.plan_id = Some(PlanId::new(if i % 3 == 0 { "pro" } else { "basic" }));
            s.quantity = Some(10);
            s.status = status_of(i);
            s
        })
        .collect()
}

/// The status of the `i`th seeded subscription: half active, the rest spread over the others.
fn status_of(i: usize) -> SubscriptionStatus {
    const STATUSES: [SubscriptionStatus; 6] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::Active,
        SubscriptionStatus::Active,
        SubscriptionStatus::Pending,
        SubscriptionStatus::Suspended,
        SubscriptionStatus::Cancelled,
    ];
    STATUSES[i % STATUSES.len()]
}

/// The timed checks: each one's latency (sorted), the whole run, how many were allowed.
struct CheckRun {
    timings: Vec<Duration>,
    total: Duration,
    allowed: usize,
}

fn time_checks(
    index: &EntitlementIndex,
    tenants: &[Tenant],
    checks: usize,
    now: time::OffsetDateTime,
) -> CheckRun {
    let features = ["dashboards", "exports", "missing"];
    let products = [ProductId::new("analytics"), ProductId::new("reports")];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut timings = Vec::with_capacity(checks);
    let mut allowed = 0usize;
    let started = Instant::now();
    for i in 0..checks {
        // xorshift: cheap, deterministic, spreads the tenants.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let tenant = tenants[(rng % tenants.len() as u64) as usize].id;
        let t0 = Instant::now();
        let decision = index.check(
            tenant,
            &products[i % 2],
            Some(features[i % 3]),
            Some(5),
            now,
        );
        timings.push(t0.elapsed());
        allowed += usize::from(decision.allowed);
    }
    let total = started.elapsed();
    timings.sort_unstable();
    CheckRun {
        timings,
        total,
        allowed,
    }
}

impl CheckRun {
    fn print(&self, checks: usize, subscriptions: usize) {
        let Self {
            timings,
            total,
            allowed,
        } = self;
        println!(
            "  checks:           {checks} in {:.2?} ({:.0}/s, {allowed} allowed)",
            total,
            checks as f64 / total.as_secs_f64()
        );
        println!(
            "  latency:          p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}",
            pct(timings, 0.50),
            pct(timings, 0.99),
            pct(timings, 0.999),
            timings.last().copied().unwrap_or_default()
        );
        let p99 = pct(timings, 0.99);
        println!(
            "  goal p99 < 1 ms:  {}",
            if p99 < Duration::from_millis(1) {
                "met"
            } else {
                "NOT met"
            }
        );
        Goal::at_most(
            format!("entitlement check p99 ({subscriptions} subscriptions)"),
            p99.as_secs_f64() * 1e3,
            1.0,
            "ms",
        )
        .print();
    }
}
