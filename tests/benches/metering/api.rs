//! The usage API under an open loop (issue 22): `POST /api/v1/usage` of one event, at a fixed
//! rate over keep-alive connections, each request timed from when it was due
//! (`marketlink_cli::bench::load`), on SQLite and PostgreSQL. Goal: p99 < 2 ms at every rate.
//! Sizes: `BENCH_API_RATES` (requests/s, comma-separated, default `1000,5000`; `BENCH_API_RATE`
//! names a single one), `BENCH_API_SECONDS` (default 10) and `BENCH_API_CONNECTIONS` (64).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use marketlink_cli::bench::{
    Goal,
    load::{self, Requests},
};
use marketlink_core::{Clock, SubscriptionId, SystemClock};
use marketlink_store::Store;

use super::{KEY, active_subscription, config, engine, env_or, open};

/// Issue 22's limit on the usage API's p99.
const P99_LIMIT_MS: f64 = 2.0;

/// The rates to run, from the environment.
fn rates() -> Vec<u64> {
    if let Ok(one) = std::env::var("BENCH_API_RATE") {
        return vec![one.parse().expect("BENCH_API_RATE is a number")];
    }
    std::env::var("BENCH_API_RATES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|r| r.trim().parse().expect("BENCH_API_RATES lists numbers"))
        .collect()
}

/// Every rate on SQLite then PostgreSQL, each on a fresh store and server.
pub(super) async fn bench_api(dir: &tempfile::TempDir) {
    let seconds = env_or("BENCH_API_SECONDS", 10);
    let connections = env_or("BENCH_API_CONNECTIONS", 64) as usize;
    for rate in rates() {
        for backend in ["sqlite", "postgres"] {
            let (store, url) = open(backend, dir).await;
            let sub = active_subscription(&store, "api-bench").await;
            let addr = serve(store.clone()).await;
            let timestamp = SystemClock
                .now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let usage = |phase: &'static str| {
                Arc::new(Usage {
                    addr,
                    phase,
                    subscription: sub.id,
                    timestamp: timestamp.clone(),
                })
            };
            // Warm the connections, the pool and the writer before timing.
            let warm = load::closed_loop(
                addr,
                connections,
                StdDuration::from_millis(300),
                usage("warm"),
            )
            .await
            .unwrap();
            let started = Instant::now();
            let run = load::open_loop(
                addr,
                connections,
                rate,
                StdDuration::from_secs(seconds),
                usage("run"),
            )
            .await
            .unwrap();
            let stored = stored_events(&url).await;
            let answered = warm.requests + run.latencies.len() as u64;
            assert_eq!(stored, answered, "every 202 is a stored event, once");
            println!(
                "api: POST /api/v1/usage (1 event, {backend}) at {rate}/s for {seconds} s, {connections} connections, open loop: {} answered in {:.1?}, p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, max {:.2?}; generator late p99 {:.2?}; {stored} events stored",
                run.latencies.len(),
                started.elapsed(),
                run.quantile(0.50),
                run.quantile(0.99),
                run.quantile(0.999),
                run.latencies.last().copied().unwrap_or_default(),
                load::quantile(&run.dispatch_lateness, 0.99),
            );
            Goal::at_most(
                format!("usage API p99 at {rate} req/s ({backend})"),
                run.quantile(0.99).as_secs_f64() * 1e3,
                P99_LIMIT_MS,
                "ms",
            )
            .print();
            store.close().await;
            if backend == "postgres" {
                marketlink_e2e::drop_postgres_database(&url).await;
            }
        }
    }
}

/// The usage API (and the rest of the router) on `store`, in this process, on a port of its own.
async fn serve(store: Store) -> SocketAddr {
    let config = config();
    let engine = Arc::new(engine(store, &config, marketlink_engine::Providers::new()));
    let state = marketlink_web::AppState::new(marketlink_web::App {
        engine,
        keys: Default::default(),
        sign_in_attempts: Default::default(),
        settings: marketlink_web::WebSettings::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let router = marketlink_web::router(state);
        marketlink_web::serve(
            listener,
            router,
            std::future::pending(),
            marketlink_web::ServeOptions {
                grace: StdDuration::from_secs(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    addr
}

/// Rows in `usage_events`, read with plain sqlx: every 202 must be one.
async fn stored_events(url: &str) -> u64 {
    let sql = "SELECT COUNT(*) FROM usage_events";
    let count: i64 = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let count = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let count = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    };
    count as u64
}

/// One event per request, each with its own idempotency key, which must be answered 202 with
/// `accepted: 1`.
struct Usage {
    addr: SocketAddr,
    /// Part of every idempotency key, so the warm-up's keys differ from the run's.
    phase: &'static str,
    subscription: SubscriptionId,
    timestamp: String,
}

impl Requests for Usage {
    fn request(&self, i: u64) -> Request<Body> {
        let body = format!(
            r#"{{"subscription_id":"{}","dimension":"api_calls","quantity":1,"timestamp":"{}","idempotency_key":"api-{}-{i}"}}"#,
            self.subscription, self.timestamp, self.phase
        );
        Request::post("/api/v1/usage")
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    fn check(&self, i: u64, status: StatusCode, body: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            status == StatusCode::ACCEPTED && body.starts_with(br#"{"accepted":1,"#),
            "usage #{i} answered {status}: {}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }
}
