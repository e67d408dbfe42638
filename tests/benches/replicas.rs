//! How many replicas one PostgreSQL serves (issue 22, docs/scaling.md).
//! `cargo bench -p marketlink-e2e --bench replicas`.
//!
//! For each replica count (`BENCH_REPLICAS`, default `1,2,4`) on a fresh PostgreSQL database
//! seeded with `BENCH_REPLICA_SUBSCRIPTIONS` active subscriptions (default 100,000): that many
//! `marketlink serve` processes (the binary cargo built next to this benchmark, or
//! `MARKETLINK_BIN`) start on one database, then three phases of `BENCH_REPLICA_SECONDS` each
//! (default 10), once every index is warm and `BENCH_REPLICA_SETTLE_SECS` (10) have passed:
//! - **idle**: nothing is sent; what the replicas' background work (index follow-ups, inbox,
//!   outbox and flush polls, key revocations) costs the database;
//! - **usage**: `BENCH_REPLICA_CLIENTS` clients (default 16) post batches of 10 events back to
//!   back, spread over the replicas; every answer must be 202;
//! - **checks**: the same clients ask entitlement checks back to back; every answer must allow.
//!
//! Per phase it prints the database's transactions/s (`pg_stat_database`), the CPU used by
//! the replicas and by the database's own backends (from `/proc`, as a share of one core), the
//! connections the replicas hold, and the rate and latency the clients saw. All of it runs on
//! one machine, so the replicas, the database and the clients share its cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use marketlink_cli::{bench::process::cpu_of, config::demo_base, sandbox};
use marketlink_core::{
    Clock, ExternalRef, Marketplace, PlanId, ProductId, Scope, Subscription, SubscriptionId,
    SubscriptionStatus, SystemClock, Tenant,
};
use marketlink_sandbox::aws::AwsSandboxConfig;
use marketlink_store::{Store, StoreOptions};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

#[allow(dead_code)] // the soak's fleet; the balancer and kills are not used here
#[path = "../soak/fleet.rs"]
mod fleet;

const PRODUCT_CODE: &str = "mlsandboxclassic0000000001";
const BATCH: usize = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeded database: its subscriptions (with their tenants) and a key for both APIs.
struct Seed {
    url: String,
    rows: Vec<(SubscriptionId, marketlink_core::TenantId)>,
    key: String,
}

async fn seed(subscriptions: usize) -> Seed {
    let url = marketlink_e2e::fresh_postgres_database().await;
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let now = SystemClock.now();
    let tenants: Vec<Tenant> = (0..subscriptions)
        .map(|i| {
            Tenant::new(
                &format!("Tenant {i}"),
                None,
                &format!("t{i}@bench.example"),
                now,
            )
            .unwrap()
        })
        .collect();
    let subs: Vec<Subscription> = tenants
        .iter()
        .enumerate()
        .map(|(i, tenant)| {
            let customer = format!("replica-bench-{i}");
            let mut s = Subscription::pending(
                ExternalRef {
                    marketplace: Marketplace::AWS,
                    external_id: ExternalRef::aws_classic_id(&customer, PRODUCT_CODE),
                    product_code: PRODUCT_CODE.into(),
                    customer_id: customer,
                    customer_account_id: None,
                    license_arn: None,
                },
                now,
            );
            s.tenant_id = Some(tenant.id);
            s.product_id = Some(ProductId::new("analytics"));
            // The demo catalog's plan with the `api_calls` dimension and every feature.
            s.plan_id = Some(PlanId::new("pro"));
            s.status = SubscriptionStatus::Active;
            s
        })
        .collect();
    store.insert_tenants_bulk(&tenants).await.unwrap();
    store.insert_subscriptions_bulk(&subs).await.unwrap();
    let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
        "replicas bench",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        None,
        now,
    );
    store.create_api_key(&key, &hash).await.unwrap();
    store.close().await;
    // As a database in service would be: analysed, so autovacuum does not run during a phase.
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    Seed {
        url,
        rows: subs.iter().map(|s| (s.id, s.tenant_id.unwrap())).collect(),
        key: plaintext,
    }
}

/// Every replica's settings beyond the demo configuration: the seeded database, and rate
/// limits out of the way (one client address sends everything here).
fn fleet(
    dir: &std::path::Path,
    replicas: usize,
    aws: std::net::SocketAddr,
    url: &str,
) -> fleet::Fleet {
    let roomy = "{ per_minute = 6000000, burst = 1000000 }";
    let mut config = demo_base(aws);
    config.push_str(&format!("\n[rate_limits]\napi = {roomy}\n"));
    let env = vec![
        ("MARKETLINK_DATABASE__URL".to_owned(), url.to_owned()),
        (
            "MARKETLINK_SERVER__SESSION_SECRET".to_owned(),
            "s".repeat(64),
        ),
    ];
    fleet::Fleet::new(dir, replicas, &config, env)
}

/// What the database and the processes had done at one moment.
struct Sample {
    at: Instant,
    transactions: i64,
    replica_cpu: Duration,
    database_cpu: Duration,
    connections: i64,
}

async fn sample(admin: &mut PgConnection, database: &str, replicas: &[u32]) -> Sample {
    let (transactions,): (i64,) = sqlx::query_as(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
    )
    .bind(database)
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    let backends: Vec<(i32,)> = sqlx::query_as(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
    )
    .bind(database)
    .fetch_all(&mut *admin)
    .await
    .unwrap();
    Sample {
        at: Instant::now(),
        transactions,
        replica_cpu: replicas.iter().map(|&pid| cpu_of(pid)).sum(),
        database_cpu: backends.iter().map(|&(pid,)| cpu_of(pid as u32)).sum(),
        // Less the admin connection asking.
        connections: backends.len() as i64 - 1,
    }
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    transactions_per_sec: f64,
    replica_cores: f64,
    database_cores: f64,
    connections: i64,
    /// Requests and items (events or checks) per second, latencies (sorted).
    requests_per_sec: f64,
    items_per_sec: f64,
    latencies: Vec<Duration>,
}

fn phase(name: &'static str, before: &Sample, after: &Sample, client: ClientRun) -> Phase {
    let secs = (after.at - before.at).as_secs_f64();
    let items = client.latencies.len() * client.items_per_request;
    Phase {
        name,
        transactions_per_sec: (after.transactions - before.transactions) as f64 / secs,
        replica_cores: (after.replica_cpu.saturating_sub(before.replica_cpu)).as_secs_f64() / secs,
        database_cores: (after.database_cpu.saturating_sub(before.database_cpu)).as_secs_f64()
            / secs,
        connections: after.connections,
        requests_per_sec: client.latencies.len() as f64 / secs,
        items_per_sec: items as f64 / secs,
        latencies: client.latencies,
    }
}

/// What the clients saw in one phase.
struct ClientRun {
    latencies: Vec<Duration>,
    items_per_request: usize,
}

#[derive(Clone, Copy)]
enum Load {
    Idle,
    Usage,
    Checks,
}

/// `clients` tasks sending `load` back to back for `seconds`, client `c` to replica
/// `c % ports.len()`; every answer is asserted.
async fn drive(
    load: Load,
    seed: &Arc<Seed>,
    ports: &[u16],
    clients: usize,
    seconds: u64,
) -> ClientRun {
    let stop = Instant::now() + Duration::from_secs(seconds);
    if matches!(load, Load::Idle) {
        tokio::time::sleep_until(stop.into()).await;
        return ClientRun {
            latencies: vec![],
            items_per_request: 0,
        };
    }
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, seed) = (http.clone(), seed.clone());
        let base = format!("http://127.0.0.1:{}", ports[c % ports.len()]);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0usize;
            while Instant::now() < stop {
                let started = Instant::now();
                match load {
                    Load::Usage => post_usage(&http, &base, &seed, c, n).await,
                    _ => check(&http, &base, &seed).await,
                }
                latencies.push(started.elapsed());
                n += 1;
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    latencies.sort_unstable();
    let items_per_request = if matches!(load, Load::Usage) {
        BATCH
    } else {
        1
    };
    ClientRun {
        latencies,
        items_per_request,
    }
}

async fn post_usage(http: &reqwest::Client, base: &str, seed: &Seed, client: usize, n: usize) {
    let now = SystemClock
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let events: Vec<_> = (0..BATCH)
        .map(|i| {
            let (sub, _) = seed.rows[fastrand::usize(..seed.rows.len())];
            serde_json::json!({"subscription_id": sub.to_string(), "dimension": "api_calls",
                "quantity": 1, "timestamp": now, "idempotency_key": format!("r{client}-{n}-{i}")})
        })
        .collect();
    let response = http
        .post(format!("{base}/api/v1/usage"))
        .bearer_auth(&seed.key)
        .json(&events)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        status.as_u16(),
        202,
        "usage: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn check(http: &reqwest::Client, base: &str, seed: &Seed) {
    let (_, tenant) = seed.rows[fastrand::usize(..seed.rows.len())];
    let response = http
        .get(format!(
            "{base}/api/v1/check?tenant={tenant}&product=analytics&feature=exports"
        ))
        .bearer_auth(&seed.key)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "check: {}",
        response.status()
    );
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["allowed"], true, "check: {answer}");
}

/// Runs the three phases with `replicas` processes on a freshly seeded database.
async fn measure(replicas: usize, aws: std::net::SocketAddr, subscriptions: usize) -> Vec<Phase> {
    let seed = Arc::new(seed(subscriptions).await);
    let database = seed.url.rsplit_once('/').unwrap().1.to_owned();
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path(), replicas, aws, &seed.url);
    for index in 0..replicas {
        fleet.start(index).await;
    }
    let ports = fleet.ports();
    for port in &ports {
        wait_warm(*port).await;
    }
    // Start-up work (the first flush run creates every subscription's usage cursor) is not
    // the steady state: let it finish before measuring.
    tokio::time::sleep(Duration::from_secs(env_or("BENCH_REPLICA_SETTLE_SECS", 10))).await;
    let pids = fleet.pids();
    let (clients, seconds) = (
        env_or("BENCH_REPLICA_CLIENTS", 16) as usize,
        env_or("BENCH_REPLICA_SECONDS", 10),
    );
    let mut admin = PgConnection::connect(&marketlink_e2e::postgres_admin_url())
        .await
        .unwrap();
    let mut phases = Vec::new();
    for (name, load) in [
        ("idle", Load::Idle),
        ("usage", Load::Usage),
        ("checks", Load::Checks),
    ] {
        let before = sample(&mut admin, &database, &pids).await;
        let run = drive(load, &seed, &ports, clients, seconds).await;
        let after = sample(&mut admin, &database, &pids).await;
        phases.push(phase(name, &before, &after, run));
    }
    drop(fleet);
    admin.close().await.ok();
    marketlink_e2e::drop_postgres_database(&seed.url).await;
    phases
}

/// Waits until the replica on `port` has loaded its entitlement index (ADR 0022), so the
/// idle phase does not count the load.
async fn wait_warm(port: u16) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let answer = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if let Ok(response) = answer
            && let Ok(body) = response.json::<serde_json::Value>().await
            && body["entitlements"] == "warm"
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replica on port {port}: index not warm after 120 s");
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn print_table(results: &[(usize, Vec<Phase>)]) {
    println!(
        "| replicas | phase | DB transactions/s | replicas' CPU (cores) | DB backends' CPU (cores) | connections | requests/s | events or checks/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (replicas, phases) in results {
        for p in phases {
            println!(
                "| {replicas} | {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.0} | {:.2} | {:.2} |",
                p.name,
                p.transactions_per_sec,
                p.replica_cores,
                p.database_cores,
                p.connections,
                p.requests_per_sec,
                p.items_per_sec,
                pct(&p.latencies, 0.50),
                pct(&p.latencies, 0.99),
            );
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let counts: Vec<usize> = std::env::var("BENCH_REPLICAS")
            .unwrap_or_else(|_| "1,2,4".into())
            .split(',')
            .map(|n| n.trim().parse().expect("BENCH_REPLICAS: counts separated by commas"))
            .collect();
        let subscriptions = env_or("BENCH_REPLICA_SUBSCRIPTIONS", 100_000) as usize;
        let shutdown = CancellationToken::new();
        let vendor = sandbox::VendorUrls::for_public_url("http://127.0.0.1:9");
        let scenario = AwsSandboxConfig {
            // No buyer subscribes during the benchmark: the replicas only poll.
            subscribe_delay_ms: 3_600_000,
            ..AwsSandboxConfig::default()
        };
        let aws = sandbox::start_aws(
            "127.0.0.1:0".parse().unwrap(),
            scenario,
            &vendor,
            Arc::new(SystemClock),
            shutdown.clone(),
        )
        .await
        .expect("AWS sandbox");
        let aws_addr = aws.base_url.trim_start_matches("http://").parse().unwrap();
        let mut results = Vec::new();
        for replicas in counts {
            let started = Instant::now();
            let phases = measure(replicas, aws_addr, subscriptions).await;
            println!("replicas {replicas}: measured in {:.1?}", started.elapsed());
            results.push((replicas, phases));
        }
        println!(
            "replicas benchmark: {subscriptions} subscriptions, {} clients, {} s per phase, {} cores, load average {}",
            env_or("BENCH_REPLICA_CLIENTS", 16),
            env_or("BENCH_REPLICA_SECONDS", 10),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        print_table(&results);
        shutdown.cancel();
    });
}
