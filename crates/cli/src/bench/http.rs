//! `marketlink bench http`: the entitlement check over HTTP under load (issue 22), against
//! `/healthz` on the same server in the same run.
//!
//! The server is a child `marketlink serve` (this very binary) over a seeded store, with its
//! logging and middleware as deployed: a server in this process would share its runtime and
//! allocator with the load generator, and `perf` could not tell their costs apart. The load
//! generator (`load.rs`) still shares the machine's cores, as wrk on the same host did.
//!
//! Goals: a closed loop over `--connections` keeps ≥ 90 % of `/healthz`'s requests per second
//! (median round of each, sides alternating), and an open loop at `--rate` checks per second
//! answers 99 % within 1 ms, counted from when each request was due.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::body::Body;
use hyper::{Request, StatusCode, header};
use marketlink_core::{Catalog, ProductId, TenantId};
use marketlink_web::limits::{Rate, RateLimits};
use serde::Serialize;

use super::{
    Goal, catalog,
    load::{self, Latencies, Requests, Throughput},
    startup::{Seed, expected_reason, seed},
};

/// The sizes of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpRun {
    /// Subscriptions to seed (two per tenant).
    #[arg(long, default_value_t = 100_000)]
    pub subscriptions: usize,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of closed loop per side and round.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Rounds of closed loop (the median round of each side counts).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Checks per second of the open loop.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Seconds of open loop.
    #[arg(long, default_value_t = 5.0)]
    pub rate_seconds: f64,
    /// Database to fill (a fresh temporary SQLite file when unset). It must be empty.
    #[arg(long)]
    pub database: Option<String>,
}

/// Issue 22: the check keeps this share of `/healthz`'s throughput.
const SHARE: f64 = 0.90;
/// Issue 22: p99 of the check at the open loop's rate.
const P99_LIMIT: Duration = Duration::from_millis(1);

pub(super) async fn http(run: HttpRun) -> anyhow::Result<()> {
    anyhow::ensure!(run.subscriptions >= 2, "seed at least 2 subscriptions");
    anyhow::ensure!(run.rounds >= 1, "run at least one round");
    let dir = tempfile::tempdir()?;
    let url = run
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("http.db").display()));
    let seed = Arc::new(seed(&url, run.subscriptions).await?);
    let server = Server::start(dir.path(), &url).await?;
    let addr = server.addr;
    let health: Arc<dyn Requests> = Arc::new(Health { addr });
    let checks: Arc<dyn Requests> = Arc::new(Checks {
        addr,
        seed: seed.clone(),
    });
    let seconds = Duration::from_secs_f64(run.seconds);
    // Warm both paths (connections, allocator, caches) before timing.
    load::closed_loop(addr, run.connections, seconds / 2, health.clone()).await?;
    load::closed_loop(addr, run.connections, seconds / 2, checks.clone()).await?;

    let mut rounds = Vec::with_capacity(run.rounds);
    for round in 0..run.rounds {
        // Alternate which side goes first, so a drift in the machine's load hits both.
        let order = if round % 2 == 0 {
            [&health, &checks]
        } else {
            [&checks, &health]
        };
        let mut side = [None, None];
        for (slot, requests) in order.into_iter().enumerate() {
            let cpu = server.cpu()?;
            let measured =
                load::closed_loop(addr, run.connections, seconds, requests.clone()).await?;
            side[slot] = Some(Side {
                measured,
                server_cpu: server.cpu()?.saturating_sub(cpu),
            });
        }
        let [first, second] = side.map(|s| s.context("both sides ran"));
        let (first, second) = (first?, second?);
        rounds.push(if round % 2 == 0 {
            (first, second)
        } else {
            (second, first)
        });
    }
    let open = load::open_loop(
        addr,
        run.connections,
        run.rate,
        Duration::from_secs_f64(run.rate_seconds),
        checks.clone(),
    )
    .await?;
    let open_health = load::open_loop(
        addr,
        run.connections,
        run.rate,
        Duration::from_secs_f64(run.rate_seconds),
        health.clone(),
    )
    .await?;
    drop(server);
    report(&run, &url, &rounds, &open, &open_health);
    Ok(())
}

/// One side of a round: its throughput and the server's CPU time meanwhile.
#[derive(Debug, Clone, Copy)]
struct Side {
    measured: Throughput,
    server_cpu: Duration,
}

impl Side {
    /// The server's CPU per answered request.
    fn cpu_per_request(&self) -> Duration {
        self.server_cpu
            .checked_div(u32::try_from(self.measured.requests.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn report(run: &HttpRun, url: &str, rounds: &[(Side, Side)], open: &Latencies, base: &Latencies) {
    println!("HTTP entitlement check benchmark (child `marketlink serve`)");
    println!("  store:            {}", marketlink_store::redact_url(url));
    println!("  subscriptions:    {}", run.subscriptions);
    println!(
        "  closed loop:      {} connections, {} rounds of {:.1} s per side",
        run.connections, run.rounds, run.seconds
    );
    for (i, (health, check)) in rounds.iter().enumerate() {
        println!(
            "  round {}:          /healthz {:.0}/s ({:.1?} server CPU each), check {:.0}/s ({:.1?} each): {:.1} %",
            i + 1,
            health.measured.rate(),
            health.cpu_per_request(),
            check.measured.rate(),
            check.cpu_per_request(),
            100.0 * check.measured.rate() / health.measured.rate()
        );
    }
    let health = median(rounds.iter().map(|(h, _)| h.measured.rate()).collect());
    let check = median(rounds.iter().map(|(_, c)| c.measured.rate()).collect());
    println!(
        "  median:           /healthz {health:.0}/s, check {check:.0}/s: {:.1} % (goal ≥ {:.0} %)",
        100.0 * check / health,
        SHARE * 100.0
    );
    for (label, run_) in [("check", open), ("/healthz", base)] {
        println!(
            "  open loop {label:<9} {} at {}/s ({:.0}/s answered): p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}; generator late p99 {:.2?}",
            run_.latencies.len(),
            run.rate,
            run_.rate(),
            run_.quantile(0.50),
            run_.quantile(0.99),
            run_.quantile(0.999),
            run_.latencies.last().copied().unwrap_or_default(),
            load::quantile(&run_.dispatch_lateness, 0.99),
        );
    }
    throughput_goal(run, rounds, (health, check)).print();
    Goal::at_most(
        format!("entitlement check over HTTP p99 at {} req/s", run.rate),
        open.quantile(0.99).as_secs_f64() * 1e3,
        P99_LIMIT.as_secs_f64() * 1e3,
        "ms",
    )
    .print();
}

/// The throughput goal over the server's CPU time: requests per CPU-second of each side's
/// median round. Requests per second on a shared machine swing by ±40 % from one side to the
/// next with other processes' load; the server's CPU per request is what the server spends.
/// Without a CPU reading (not Linux) the rates over wall time (`wall`) count.
fn throughput_goal(run: &HttpRun, rounds: &[(Side, Side)], wall: (f64, f64)) -> Goal {
    let per_cpu = |side: &Side| {
        let cpu = side.cpu_per_request().as_secs_f64();
        (cpu > 0.0).then(|| 1.0 / cpu)
    };
    let sides: Option<(Vec<f64>, Vec<f64>)> = rounds
        .iter()
        .map(|(h, c)| per_cpu(h).zip(per_cpu(c)))
        .collect::<Option<Vec<(f64, f64)>>>()
        .map(|pairs| pairs.into_iter().unzip());
    let name = format!(
        "entitlement check over HTTP ({} connections)",
        run.connections
    );
    let Some((health, check)) = sides else {
        return Goal::at_least(name, wall.1, SHARE * wall.0, "req/s");
    };
    let (health, check) = (median(health), median(check));
    println!(
        "  per server CPU:   /healthz {health:.0}/CPU-s, check {check:.0}/CPU-s: {:.1} % (the figure)",
        100.0 * check / health
    );
    Goal::at_least(name, check, SHARE * health, "req/CPU-s")
}

/// `GET /healthz`, which must answer `{"status":"ok"}`.
struct Health {
    addr: SocketAddr,
}

impl Requests for Health {
    fn request(&self, _: u64) -> Request<Body> {
        get(self.addr, "/healthz", None)
    }

    fn check(&self, i: u64, status: StatusCode, body: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            status == StatusCode::OK && body == br#"{"status":"ok"}"#,
            "/healthz #{i} answered {status}: {}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }
}

/// `GET /api/v1/check` of "dashboards" (in every plan) for a seeded subscription picked by
/// the request number, whose answer must carry the reason its seeded status gives.
struct Checks {
    addr: SocketAddr,
    seed: Arc<Seed>,
}

impl Checks {
    /// The seeded subscription request `i` asks about: spread over all of them.
    fn row(&self, i: u64) -> usize {
        // splitmix64: cheap, and consecutive requests land far apart.
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % self.seed.rows.len() as u64) as usize
    }

    fn subject(&self, row: usize) -> (Option<TenantId>, Option<&ProductId>) {
        let row = &self.seed.rows[row];
        (row.tenant_id, row.product_id.as_ref())
    }
}

impl Requests for Checks {
    fn request(&self, i: u64) -> Request<Body> {
        let (tenant, product) = self.subject(self.row(i));
        let path = format!(
            "/api/v1/check?tenant={}&product={}&feature=dashboards",
            tenant.map(|t| t.to_string()).unwrap_or_default(),
            product.map(ProductId::as_str).unwrap_or_default()
        );
        get(self.addr, &path, Some(&self.seed.key))
    }

    fn check(&self, i: u64, status: StatusCode, body: &[u8]) -> anyhow::Result<()> {
        let row = self.row(i);
        let expected = format!(r#""reason":"{}""#, expected_reason(row));
        anyhow::ensure!(
            status == StatusCode::OK
                && body
                    .windows(expected.len())
                    .any(|w| w == expected.as_bytes()),
            "check #{i} (subscription {row}) answered {status}, expected {expected}: {}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }
}

fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path).header(header::HOST, addr.to_string());
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    // Only a malformed path or header fails here, and both are built above from valid parts.
    request.body(Body::empty()).unwrap_or_default()
}

/// The configuration the child server reads: the seeded store, the bench catalog, and an API
/// rate limit no run reaches (the limiter still runs), since one key sends all the checks.
#[derive(Serialize)]
struct ChildConfig {
    server: ChildServer,
    database: ChildDatabase,
    rate_limits: RateLimits,
    catalog: Catalog,
}

#[derive(Serialize)]
struct ChildServer {
    bind: SocketAddr,
    public_url: String,
}

#[derive(Serialize)]
struct ChildDatabase {
    url: String,
}

/// A child `marketlink serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(dir: &Path, url: &str) -> anyhow::Result<Self> {
        // A port free now; nothing else on this host is expected to take it before the child.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = ChildConfig {
            server: ChildServer {
                bind: addr,
                public_url: format!("http://{addr}"),
            },
            database: ChildDatabase {
                url: url.to_owned(),
            },
            rate_limits: RateLimits {
                api: Rate {
                    per_minute: u32::MAX,
                    burst: u32::MAX,
                },
                ..RateLimits::default()
            },
            catalog: catalog(),
        };
        let path = dir.join("http-bench.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting `marketlink serve`")?;
        let server = Self { child, addr };
        server.until_warm(dir).await?;
        Ok(server)
    }

    /// Waits until `/readyz` says the entitlement index is warm: the figures are for checks
    /// answered from memory, as a server runs once started.
    async fn until_warm(&self, dir: &Path) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = http
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                && let Ok(state) = response.json::<serde_json::Value>().await
                && state["entitlements"] == "warm"
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(600) {
                let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                anyhow::bail!("the server was not warm within 10 minutes: {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The child's CPU time so far (user + system), from `/proc`; zero elsewhere.
    fn cpu(&self) -> anyhow::Result<Duration> {
        Ok(super::process::cpu_of(self.child.id()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SQLite's write-ahead log and PostgreSQL both survive a kill; nothing is written here.
        if let Err(error) = self.child.kill() {
            tracing::warn!(%error, "cannot stop the benchmark's server");
        }
        let _status = self.child.wait();
    }
}
