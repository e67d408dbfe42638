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
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use marketlink_core::{Clock, SystemClock};
use marketlink_sandbox::aws::AwsSandboxConfig;
use tokio_util::sync::CancellationToken;

use super::Goal;
use crate::{config::demo_base, sandbox};

/// Issue 22's ceiling on the server's resident memory.
const RSS_LIMIT_MB: f64 = 200.0;
/// The usage API key of the demo configuration the server runs on.
const USAGE_KEY: &str = "demo-usage-key-0123";

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
    let database = seed::fresh_database(&args.postgres).await?;
    let outcome = run(&args, &database).await;
    if !args.keep_database {
        seed::drop_database(&args.postgres, &database).await?;
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
    let mut server = Server::spawn(dir.path(), args, database, port, demo_base(aws_addr))?;
    let rss = watch::Watch::start(server.pid(), &url);
    let ready = server.ready(&url, false).await;
    let ready = ready.with_context(|| server.log_tail())?;
    rss.phase("index load");
    let warm = server.ready(&url, true).await;
    let warm = warm.with_context(|| server.log_tail())?;
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

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `marketlink serve` as a child process.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn spawn(
        dir: &Path,
        args: &DayArgs,
        database: &str,
        port: u16,
        demo: String,
    ) -> anyhow::Result<Self> {
        let config = dir.join("marketlink.toml");
        std::fs::write(&config, server_config(demo))?;
        let log = dir.join("server.log");
        let child = Command::new(std::env::current_exe()?)
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("MARKETLINK_CONFIG")
            .env("RUST_LOG", "warn")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("MARKETLINK_SERVER__BIND", format!("127.0.0.1:{port}"))
            .env(
                "MARKETLINK_SERVER__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("MARKETLINK_SERVER__SESSION_SECRET", "s".repeat(64))
            .env("MARKETLINK_DATABASE__URL", database)
            .env("MARKETLINK_DATABASE__MIGRATE_ON_START", "true")
            .env(
                "MARKETLINK_METERING__FLUSH_INTERVAL_SECS",
                args.flush_interval.to_string(),
            )
            .env("MARKETLINK_METERING__SETTLE_SECS", args.settle.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning marketlink serve")?;
        Ok(Self { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` 200, and with `warm` for the entitlement index to have loaded
    /// every subscription (ADR 0022); how long it took.
    async fn ready(&mut self, url: &str, warm: bool) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < Duration::from_secs(120) {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("marketlink serve exited: {status}");
            }
            if let Ok(answer) = client.get(format!("{url}/readyz")).send().await
                && answer.status().is_success()
                && let Ok(state) = answer.json::<serde_json::Value>().await
                && (!warm || state["entitlements"] == "warm")
            {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("marketlink serve not ready within 120 s")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The demo configuration plus what a deployment of one product's traffic needs: the usage
/// API's rate limit above the clients' request rate.
fn server_config(mut demo: String) -> String {
    demo.push_str("\n[rate_limits]\napi = { per_minute = 6000000, burst = 100000 }\n");
    demo
}
