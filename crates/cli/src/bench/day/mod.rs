//! `marketlink bench day`: a day of usage at scale in bounded memory (issue 22).
//!
//! An operator's view: `marketlink serve` (this very binary) runs as a child process,
//! configured by a TOML file and `MARKETLINK_*` variables, on a fresh PostgreSQL database
//! seeded with many AWS subscriptions; the AWS sandbox runs in this process with the same
//! buyers, subscribed. Several client tasks post a day's volume of usage through the HTTP
//! usage API (batches, idempotency keys, retried until answered) for hours the marketplace
//! still accepts; the server folds it and flushes it to the sandbox while it arrives.
//!
//! Measured: the server's resident memory (`VmRSS` sampled, `VmHWM` at the end) against
//! 200 MB, and how long acknowledged usage waits, once its hour is settled, before the
//! marketplace holds it (the backlog's age) against the flush interval. At the end the
//! sandbox's ledger must hold exactly the units acknowledged, per subscription and hour.
//! docs/performance.md, "Day at scale", explains why the day is compressed this way.

mod load;
mod seed;
mod verdict;
mod watch;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use marketlink_core::{Clock, SystemClock};
use marketlink_sandbox::aws::AwsSandboxConfig;
use tokio_util::sync::CancellationToken;

use super::{
    Goal,
    child::{ChildServer, free_port},
    databases,
};
use crate::{config::demo_base, sandbox};

/// Issue 22's ceiling on the server's resident memory.
const RSS_LIMIT_MB: f64 = 200.0;

#[derive(Debug, Clone, clap::Args)]
pub struct DayArgs {
    /// AWS subscriptions (one buyer each) reporting usage.
    #[arg(long, default_value_t = 100_000)]
    pub subscriptions: usize,
    /// Usage events posted over the run (rounded down to whole hours per subscription).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// Closed hours before the start the usage is stamped in (AWS takes 6 hours back).
    #[arg(long, default_value_t = 4)]
    pub hours: usize,
    /// Events per request, at most (a request carries whole subscription-hours).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Client tasks posting at once.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// `[metering] flush_interval_secs` of the server.
    #[arg(long, default_value_t = 10)]
    pub flush_interval: u64,
    /// `[metering] settle_secs` of the server.
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
    /// PostgreSQL server to create the fresh database on (a URL of any of its databases).
    #[arg(
        long,
        env = "MARKETLINK_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres: String,
    /// Keep the database afterwards (for inspection).
    #[arg(long)]
    pub keep_database: bool,
}

pub(super) async fn day(args: DayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subscriptions > 0 && args.hours > 0 && args.hours <= 5 && args.clients > 0,
        "need subscriptions, 1 to 5 hours and clients"
    );
    let database = databases::fresh_database(&args.postgres, "day").await?;
    let outcome = run(&args, &database).await;
    if !args.keep_database {
        databases::drop_database(&args.postgres, &database).await?;
    }
    for goal in outcome? {
        goal.print();
    }
    Ok(())
}

async fn run(args: &DayArgs, database: &str) -> anyhow::Result<Vec<Goal>> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let aws = sandbox::start_aws(
        "127.0.0.1:0".parse()?,
        AwsSandboxConfig::default(),
        &sandbox::VendorUrls::for_public_url(&url),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await?;
    let started = Instant::now();
    let world = seed::seed(args, database, &aws.sandbox).await?;
    println!(
        "  seeded {} subscriptions in {:.1?}",
        args.subscriptions,
        started.elapsed()
    );
    let _vacuum = seed::autovacuum_stand_in(database, shutdown.clone()).await?;
    let aws_addr = aws.base_url.trim_start_matches("http://").parse()?;
    let mut server = ChildServer::spawn(
        dir.path(),
        &server_config(demo_base(aws_addr)),
        database,
        port,
        &[
            ("RUST_LOG", "warn".to_owned()),
            (
                "MARKETLINK_METERING__FLUSH_INTERVAL_SECS",
                args.flush_interval.to_string(),
            ),
            ("MARKETLINK_METERING__SETTLE_SECS", args.settle.to_string()),
        ],
    )?;
    let rss = watch::Watch::start(server.pid(), &url);
    let ready = server.ready(false).await?;
    rss.phase("index load");
    let warm = server.ready(true).await?;
    rss.phase("ingest");
    let plan = Arc::new(load::Plan::new(args, SystemClock.now()));
    let world = Arc::new(world);
    let posted = load::post_all(plan.clone(), world.clone(), &url, args.clients).await?;
    rss.phase("drain");
    let drained = verdict::wait_drained(&aws.sandbox, &url, &plan, args).await;
    let seen = rss.stop(server.pid()).await;
    server.stop();
    let verdict = verdict::Verdict::of(&aws.sandbox, &plan, &world, &posted);
    report(
        args,
        (ready, warm),
        &plan,
        &posted,
        &seen,
        drained,
        &verdict,
    )
}

/// Prints what was measured and returns the goals; an error when the ledger is wrong.
fn report(
    args: &DayArgs,
    (ready, warm): (Duration, Duration),
    plan: &load::Plan,
    posted: &load::Posted,
    seen: &watch::Seen,
    drained: Option<Duration>,
    verdict: &verdict::Verdict,
) -> anyhow::Result<Vec<Goal>> {
    println!("day at scale benchmark (PostgreSQL)");
    println!(
        "  usage:            {} events in {} requests for {} subscriptions × {} hours",
        plan.events(),
        posted.requests,
        args.subscriptions,
        args.hours
    );
    println!("  server ready:     {ready:.1?} after spawn; index warm {warm:.1?} later");
    println!(
        "  ingest:           {:.1?} ({:.0} events/s over HTTP, {} clients, {} resent)",
        posted.took,
        plan.events() as f64 / posted.took.as_secs_f64(),
        args.clients,
        posted.resent
    );
    match drained {
        Some(after) => println!("  drained:          {after:.1?} after the last answer"),
        None => println!("  drained:          NOT within the wait"),
    }
    seen.print();
    verdict.print(args.flush_interval);
    anyhow::ensure!(
        verdict.exact(),
        "the marketplace's ledger differs from the usage acknowledged"
    );
    anyhow::ensure!(drained.is_some(), "the usage was not all delivered");
    let size = format!(
        "{}k subscriptions, {} events",
        args.subscriptions / 1000,
        plan.events()
    );
    Ok(vec![
        Goal::at_most(
            format!("day: peak server RSS ({size})"),
            seen.peak_mb(),
            RSS_LIMIT_MB,
            "MB",
        ),
        Goal::at_most(
            format!("day: oldest settled usage unsent ({size})"),
            verdict.worst_wait.as_secs_f64(),
            args.flush_interval as f64,
            "s",
        ),
    ])
}

/// The demo configuration plus what a deployment of one product's traffic needs: the usage
/// API's rate limit above the clients' request rate.
fn server_config(mut demo: String) -> String {
    demo.push_str("\n[rate_limits]\napi = { per_minute = 6000000, burst = 100000 }\n");
    demo
}
